//! Signed identity assertions, verified by an independent implementation (node `jose`, pinned in
//! tests/oidc-provider) that fetches the JWKS over HTTP, before and after a key rotation done with
//! the real `portcullis keys rotate` command.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure report

mod common;

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use common::{Harness, received};
use portcullis_core::Role;
use reqwest::StatusCode;
use reqwest::header::COOKIE;
use serde_json::Value;

const APP: &str =
    "trusted_proxies = ['127.0.0.1/32']\n[[apps]]\nname = 'chat'\nupstream = '{upstream}'\n";

/// Verifies `token` with jose; `at` shifts the verification time.
async fn jose(h: &Harness, audience: &str, token: &str, at: Option<u64>) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/oidc-provider/verify-assertion.mjs");
    let mut command = tokio::process::Command::new("node");
    command
        .arg(script)
        .arg(h.url("/.portcullis/jwks.json"))
        .arg(&h.base)
        .arg(audience)
        .arg(token);
    if let Some(at) = at {
        command.arg(at.to_string());
    }
    let output = command
        .output()
        .await
        .expect("node (scripts/install-test-deps)");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

async fn assertion_for(h: &Harness, cookie: &str) -> String {
    let echo = h.echo("/models", cookie).await;
    let values = received(&echo, "x-portcullis-assertion");
    assert_eq!(values.len(), 1, "exactly one assertion: {echo}");
    values[0].clone()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn assertions_verify_with_jose_before_and_after_a_rotation() {
    let h = Harness::start_at(common::idp::free_port(), APP).await;
    h.setup_admin().await;
    h.add_user(
        "erin",
        Some("erin@example.com"),
        Some("Erin E"),
        Role::User,
        &["staff"],
    )
    .await;
    let cookie = h.sign_in("erin", "user-password-1").await.unwrap();
    let origin = h.base.clone();

    let first = assertion_for(&h, &cookie).await;
    let verified = jose(&h, &origin, &first, None).await;
    assert_eq!(verified["ok"], true, "{verified}");
    let claims = &verified["claims"];
    assert_eq!(claims["sub"], common::uuid_like("erin"));
    assert_eq!(claims["email"], "erin@example.com");
    assert_eq!(claims["name"], "Erin E");
    assert_eq!(claims["groups"], serde_json::json!(["staff"]));
    assert_eq!(claims["aud"], origin.as_str());
    assert!(claims["sid"].as_str().unwrap().len() >= 32);
    assert!(claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap() <= 300);
    assert_eq!(
        assertion_for(&h, &cookie).await,
        first,
        "the next request reuses the same assertion"
    );

    // The bad cases, judged by jose: wrong audience, wrong issuer, expired, tampered, forged.
    let wrong_audience = jose(&h, "https://other.example.com", &first, None).await;
    assert_eq!(wrong_audience["code"], "ERR_JWT_CLAIM_VALIDATION_FAILED");
    let expired = jose(&h, &origin, &first, Some(now() + 400)).await;
    assert_eq!(expired["code"], "ERR_JWT_EXPIRED");
    let parts: Vec<&str> = first.split('.').collect();
    let mut payload: Value = serde_json::from_slice(&B64.decode(parts[1]).unwrap()).unwrap();
    payload["groups"] = serde_json::json!(["admins"]);
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        B64.encode(payload.to_string()),
        parts[2]
    );
    let refused = jose(&h, &origin, &tampered, None).await;
    assert_eq!(refused["code"], "ERR_JWS_SIGNATURE_VERIFICATION_FAILED");
    let unsigned = format!(
        "{}.{}.",
        B64.encode(r#"{"alg":"none"}"#),
        B64.encode(payload.to_string())
    );
    assert_eq!(jose(&h, &origin, &unsigned, None).await["ok"], false);

    // Rotate with the real command; the running process switches within a second.
    let config = h.dir.path().join("portcullis.toml");
    let rotated = tokio::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["keys", "rotate", "--config"])
        .arg(&config)
        .output()
        .await
        .unwrap();
    assert!(
        rotated.status.success(),
        "{}",
        String::from_utf8_lossy(&rotated.stderr)
    );
    let old_kid = verified["kid"].as_str().unwrap().to_owned();
    let mut after = String::new();
    for _ in 0..40 {
        after = assertion_for(&h, &cookie).await;
        if after != first {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let new = jose(&h, &origin, &after, None).await;
    assert_eq!(new["ok"], true, "{new}");
    assert_ne!(new["kid"], old_kid.as_str(), "signed with the new key");
    let old = jose(&h, &origin, &first, None).await;
    assert_eq!(old["ok"], true, "the old key is still published: {old}");

    // Forward-auth answers carry one too, addressed to the origin the proxy describes.
    let answer = h
        .http
        .get(h.url("/.portcullis/authz/forward-auth"))
        .header(COOKIE, format!("_portcullis={cookie}"))
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "chat.example.com")
        .header("x-forwarded-uri", "/models")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    let token = answer.headers()["x-portcullis-assertion"].to_str().unwrap();
    let verified = jose(&h, "https://chat.example.com", token, None).await;
    assert_eq!(verified["ok"], true, "{verified}");
    h.running.shutdown().await;
}
