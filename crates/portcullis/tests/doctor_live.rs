//! `portcullis doctor --live`: probes against the real oidc-provider, a running Portcullis, real
//! listeners (one on loopback only, one on every interface) and a stand-in for Open WebUI's
//! trusted-header sign-in (the real one is exercised by scripts/interop-openwebui).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure report

mod common;

use std::process::Command;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::routing::post;
use common::Harness;
use common::idp::{Idp, free_port};
use serde_json::{Value, json};
use tokio::sync::Mutex;

/// Runs doctor --live (JSON) in `dir` with its portcullis.toml; returns the exit code and report.
async fn doctor_live(dir: &std::path::Path, extra: &[&str]) -> (i32, Value) {
    let dir = dir.to_owned();
    let extra: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
    // The binary blocks on its probes: keep it off the runtime that serves the stand-ins.
    tokio::task::spawn_blocking(move || {
        let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args(["doctor", "--live", "--format", "json"])
            .args(&extra)
            .current_dir(&dir)
            .output()
            .unwrap();
        let report = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
        (out.status.code().unwrap(), report)
    })
    .await
    .unwrap()
}

fn rules(report: &Value) -> Vec<String> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["rule"].as_str().unwrap().to_owned())
        .collect()
}

fn finding<'a>(report: &'a Value, rule: &str) -> Vec<&'a Value> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["rule"] == rule)
        .collect()
}

fn passed(report: &Value) -> String {
    report["live_checks_passed"].to_string()
}

/// Open WebUI's trusted-header sign-in as integrations.md describes it (0.12.4, verified): a JSON
/// body is required (422), a missing email header is 400, unknown emails are created (the first
/// user admin, the others DEFAULT_USER_ROLE), a role header applies at every sign-in.
async fn openwebui_sign_in(
    email_header: &'static str,
    default_role: &'static str,
    role_header: Option<&'static str>,
) -> String {
    type Users = Arc<Mutex<Vec<Value>>>;
    let users: Users = Arc::new(Mutex::new(vec![
        json!({"email": "admin@example.com", "role": "admin"}),
    ]));
    let signin = move |State(users): State<Users>, headers: http::HeaderMap, body: String| async move {
        if serde_json::from_str::<Value>(&body).is_err() {
            return (
                http::StatusCode::UNPROCESSABLE_ENTITY,
                axum::Json(json!({"detail": "Field required"})),
            );
        }
        let Some(email) = headers.get(email_header).and_then(|v| v.to_str().ok()) else {
            return (
                http::StatusCode::BAD_REQUEST,
                axum::Json(
                    json!({"detail": "Your provider has not provided a trusted header. Please contact your administrator for assistance."}),
                ),
            );
        };
        let mut users = users.lock().await;
        let role = role_header
            .and_then(|h| headers.get(h))
            .and_then(|v| v.to_str().ok())
            .unwrap_or(default_role);
        let user = json!({"email": email.to_lowercase(), "name": headers.get("x-forwarded-user").and_then(|v| v.to_str().ok()), "role": role});
        users.push(user.clone());
        (http::StatusCode::OK, axum::Json(user))
    };
    let app = Router::new()
        .route("/api/v1/auths/signin", post(signin))
        .with_state(users);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

#[tokio::test]
async fn live_probes_find_what_only_the_network_can_tell() {
    // A running Portcullis with the real provider: discovery, keys and the public URL all pass.
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let idp = Idp::start(&base, &[]);
    let h = Harness::start_at(port, &idp.provider_toml("")).await;

    // One app listening on loopback only, one on every interface, one not listening at all.
    let private = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let exposed = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let serve = |l: tokio::net::TcpListener| {
        tokio::spawn(async move { axum::serve(l, Router::new()).await.unwrap() })
    };
    let (private_port, exposed_port) = (
        private.local_addr().unwrap().port(),
        exposed.local_addr().unwrap().port(),
    );
    serve(private);
    serve(exposed);
    let down_port = free_port();

    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "public_url = '{base}'\n{}\n\
         [[providers]]\nid = 'gone'\nissuer = 'http://127.0.0.1:{down_port}/idp'\nclient_id = 'c'\nclient_secret = 's'\n\
         [[apps]]\nname = 'private'\npath_prefix = '/p'\nupstream = 'http://127.0.0.1:{private_port}'\n\
         [[apps]]\nname = 'exposed'\npath_prefix = '/e'\nupstream = 'http://127.0.0.1:{exposed_port}'\n\
         [[apps]]\nname = 'down'\npath_prefix = '/d'\nupstream = 'http://127.0.0.1:{down_port}'\n",
        idp.provider_toml("")
    );
    std::fs::write(dir.path().join("portcullis.toml"), config).unwrap();
    let (code, report) = doctor_live(dir.path(), &[]).await;
    assert_eq!(code, 1, "errors found: {report:#}");
    let ok = passed(&report);
    assert!(
        ok.contains(&format!("discovery: issuer {}", idp.issuer)),
        "{ok}"
    );
    assert!(ok.contains("key(s)"), "{ok}");
    assert!(ok.contains("answers as Portcullis"), "{ok}");
    assert!(ok.contains("app private: not reachable on"), "{ok}");

    let provider = finding(&report, "LIVE-PROVIDER");
    assert_eq!(
        provider.len(),
        1,
        "only the provider that is gone: {report:#}"
    );
    assert!(provider[0]["source"].as_str().unwrap().contains("\"gone\""));
    let upstream = finding(&report, "LIVE-UPSTREAM");
    assert_eq!(upstream.len(), 1, "{report:#}");
    assert!(upstream[0]["source"].as_str().unwrap().contains("(down)"));
    let exposed = finding(&report, "LIVE-APP-EXPOSED");
    assert_eq!(exposed.len(), 1, "{report:#}");
    assert!(exposed[0]["source"].as_str().unwrap().contains("(exposed)"));
    assert!(
        !rules(&report).contains(&"LIVE-CALLBACK".to_owned()),
        "{report:#}"
    );

    // With Portcullis stopped, the public URL no longer answers.
    h.running.shutdown().await;
    let (_, report) = doctor_live(dir.path(), &[]).await;
    assert_eq!(finding(&report, "LIVE-CALLBACK").len(), 1, "{report:#}");
}

#[tokio::test]
async fn the_canary_reports_the_role_a_new_open_webui_user_gets() {
    let dir = tempfile::tempdir().unwrap();
    let write = |upstream: &str, role_header: &str| {
        std::fs::write(
            dir.path().join("portcullis.toml"),
            format!(
                "[[apps]]\nname = 'chat'\nupstream = '{upstream}'\nidentity_headers = {{ profile = 'openwebui'{role_header} }}\n"
            ),
        )
        .unwrap();
    };

    // Open WebUI's default: new users are pending — the canary sees it.
    write(
        &openwebui_sign_in("x-forwarded-email", "pending", None).await,
        "",
    );
    let (code, report) = doctor_live(dir.path(), &["--canary", "chat"]).await;
    assert_eq!(code, 1);
    let canary = finding(&report, "LIVE-CANARY");
    assert_eq!(canary.len(), 1, "{report:#}");
    assert!(
        canary[0]["why"]
            .as_str()
            .unwrap()
            .contains("got the role pending"),
        "{report:#}"
    );

    // With the role header on both sides, the canary signs in as a user.
    write(
        &openwebui_sign_in("x-forwarded-email", "pending", Some("x-forwarded-role")).await,
        ", role_header = 'X-Forwarded-Role'",
    );
    let (code, report) = doctor_live(dir.path(), &["--canary", "chat"]).await;
    assert_eq!(code, 0, "{report:#}");
    assert!(passed(&report).contains("got the role user"), "{report:#}");

    // Open WebUI waits for a header Portcullis does not send: its 400, reported as such.
    write(
        &openwebui_sign_in("x-auth-request-email", "user", None).await,
        "",
    );
    let (code, report) = doctor_live(dir.path(), &["--canary", "chat"]).await;
    assert_eq!(code, 1);
    let canary = finding(&report, "LIVE-CANARY");
    assert!(
        canary[0]["symptom"].as_str().unwrap().contains("400")
            && canary[0]["fix"]
                .as_str()
                .unwrap()
                .contains("WEBUI_AUTH_TRUSTED_EMAIL_HEADER"),
        "{report:#}"
    );

    let (_, report) = doctor_live(dir.path(), &["--canary", "nope"]).await;
    assert!(
        finding(&report, "LIVE-CANARY")[0]["why"]
            .as_str()
            .unwrap()
            .contains("no app is called"),
        "{report:#}"
    );
}

/// An `openwebui` sink whose `sk-` key Open WebUI refuses because its API keys are off: doctor
/// --live says so and names ENABLE_API_KEYS; a token it accepts passes. (The stand-in answers as
/// Open WebUI 0.12.4 does: 403 "Use of API key is not enabled in the environment.")
#[tokio::test]
async fn a_sink_key_open_webui_refuses_is_reported_with_the_setting_that_fixes_it() {
    async fn search(headers: http::HeaderMap) -> (http::StatusCode, String) {
        let token = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if token.starts_with("Bearer sk-") {
            (
                http::StatusCode::FORBIDDEN,
                "{\"detail\":\"Use of API key is not enabled in the environment.\"}".into(),
            )
        } else if token == "Bearer eyJ-admin-session" {
            (http::StatusCode::OK, "{\"users\":[],\"total\":0}".into())
        } else {
            (http::StatusCode::UNAUTHORIZED, "{}".into())
        }
    }
    let app = Router::new().route("/api/v1/users/", axum::routing::get(search));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("portcullis.toml"),
        format!(
            "[[apps]]\nname = 'chat'\nupstream = '{url}'\n\
             [[sinks]]\nid = 'keyed'\nkind = 'openwebui'\nurl = '{url}'\nadmin_token = 'sk-0123456789abcdef'\napp = 'chat'\n\
             [[sinks]]\nid = 'session'\nkind = 'openwebui'\nurl = '{url}'\nadmin_token = 'eyJ-admin-session'\napp = 'chat'\n"
        ),
    )
    .unwrap();
    let (code, report) = doctor_live(dir.path(), &[]).await;
    assert_eq!(code, 1, "{report:#}");
    let refused = finding(&report, "LIVE-OWUI-API-KEYS");
    assert_eq!(refused.len(), 1, "{report:#}");
    assert!(refused[0]["source"].as_str().unwrap().contains("(keyed)"));
    assert!(
        refused[0]["fix"]
            .as_str()
            .unwrap()
            .contains("ENABLE_API_KEYS=true"),
        "{report:#}"
    );
    assert!(
        passed(&report).contains("sink session: Open WebUI accepts the admin token"),
        "{report:#}"
    );
    assert!(finding(&report, "LIVE-SINK").is_empty(), "{report:#}");
}
