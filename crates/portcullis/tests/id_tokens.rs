//! Every way an ID token can be wrong is refused with a clear page, and no session is created.
//! The tokens come from an in-process fake provider (failure injection); see `oidc.rs` for the
//! real provider.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure report

mod common;

use common::fake_idp::{FakeIdp, KID};
use common::idp::free_port;
use common::{Harness, set_cookie_value};
use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION};
use serde_json::json;

struct Flow {
    state: String,
    nonce: String,
    cookie: String,
}

async fn start_flow(h: &Harness) -> Flow {
    let response = h
        .http
        .get(h.url("/.portcullis/start/fake?rd=/"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FOUND);
    let cookie = set_cookie_value(&response, "_portcullis_flow").unwrap();
    let url = reqwest::Url::parse(response.headers()[LOCATION].to_str().unwrap()).unwrap();
    let param = |name: &str| {
        url.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
            .unwrap()
    };
    Flow {
        state: param("state"),
        nonce: param("nonce"),
        cookie,
    }
}

async fn finish(h: &Harness, flow: &Flow) -> (StatusCode, String, bool) {
    let response = h
        .http
        .get(h.url(&format!("/oauth2/callback?code=c&state={}", flow.state)))
        .header(COOKIE, format!("_portcullis_flow={}", flow.cookie))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    let signed_in = set_cookie_value(&response, "_portcullis").is_some();
    (response.status(), response.text().await.unwrap(), signed_in)
}

#[tokio::test]
async fn bad_id_tokens_are_refused() {
    let idp = FakeIdp::start().await;
    let h = Harness::start_at(free_port(), &idp.provider_toml()).await;

    // Control: a correct token signs the user in, so the refusals below are meaningful.
    let flow = start_flow(&h).await;
    idp.answer_id_token(&idp.sign(&idp.good_claims(&flow.nonce), KID))
        .await;
    let (status, _, signed_in) = finish(&h, &flow).await;
    assert_eq!((status, signed_in), (StatusCode::FOUND, true));

    type Forge = Box<dyn Fn(&FakeIdp, &str) -> String>;
    let cases: Vec<(&str, Forge, &str)> = vec![
        (
            "wrong nonce",
            Box::new(|idp, nonce| {
                let mut c = idp.good_claims(nonce);
                c["nonce"] = json!("someone-elses-nonce");
                idp.sign(&c, KID)
            }),
            "nonce does not match",
        ),
        (
            "wrong audience",
            Box::new(|idp, nonce| {
                let mut c = idp.good_claims(nonce);
                c["aud"] = json!("another-client");
                idp.sign(&c, KID)
            }),
            "failed verification",
        ),
        (
            "wrong issuer",
            Box::new(|idp, nonce| {
                let mut c = idp.good_claims(nonce);
                c["iss"] = json!("https://evil.example");
                idp.sign(&c, KID)
            }),
            "failed verification",
        ),
        (
            "expired",
            Box::new(|idp, nonce| {
                let mut c = idp.good_claims(nonce);
                c["exp"] = json!(c["iat"].as_u64().unwrap() - 3600);
                idp.sign(&c, KID)
            }),
            "has expired",
        ),
        (
            "issued in the future",
            Box::new(|idp, nonce| {
                let mut c = idp.good_claims(nonce);
                c["iat"] = json!(c["iat"].as_u64().unwrap() + 3600);
                idp.sign(&c, KID)
            }),
            "issued in the future",
        ),
        (
            "alg none",
            Box::new(|idp, nonce| idp.unsigned(&idp.good_claims(nonce))),
            "forbidden algorithm",
        ),
        (
            "HS256 with the client secret",
            Box::new(|idp, nonce| idp.sign_hs256(&idp.good_claims(nonce))),
            "not allowed to use",
        ),
        (
            "tampered payload",
            Box::new(|idp, nonce| idp.tampered(&idp.good_claims(nonce))),
            "failed verification",
        ),
        (
            "another client's azp",
            Box::new(|idp, nonce| {
                let mut c = idp.good_claims(nonce);
                c["aud"] = json!([common::fake_idp::CLIENT_ID, "other"]);
                c["azp"] = json!("other");
                idp.sign(&c, KID)
            }),
            "another client",
        ),
    ];
    for (name, forge, expected) in cases {
        let flow = start_flow(&h).await;
        idp.answer_id_token(&forge(&idp, &flow.nonce)).await;
        let (status, page, signed_in) = finish(&h, &flow).await;
        assert!(!signed_in, "{name}: no session");
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{name}: {page}");
        assert!(
            page.contains(expected),
            "{name}: expected {expected:?} in {page}"
        );
    }
    h.running.shutdown().await;
}

#[tokio::test]
async fn unknown_key_ids_refetch_keys_but_cannot_flood_the_provider() {
    let idp = FakeIdp::start().await;
    let h = Harness::start_at(free_port(), &idp.provider_toml()).await;
    for attempt in 0..3 {
        let flow = start_flow(&h).await;
        idp.answer_id_token(&idp.sign(
            &idp.good_claims(&flow.nonce),
            &format!("forged-kid-{attempt}"),
        ))
        .await;
        let (status, page, signed_in) = finish(&h, &flow).await;
        assert!(!signed_in);
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(
            page.contains("unknown key") || page.contains("publishes no key"),
            "{page}"
        );
    }
    assert_eq!(
        idp.jwks_fetches(),
        1,
        "three forged kids within the refetch interval cost one key fetch"
    );
    // The genuine key still works.
    let flow = start_flow(&h).await;
    idp.answer_id_token(&idp.sign(&idp.good_claims(&flow.nonce), KID))
        .await;
    assert!(finish(&h, &flow).await.2);
    h.running.shutdown().await;
}

#[tokio::test]
async fn garbage_from_the_token_endpoint_is_a_clear_error() {
    let idp = FakeIdp::start().await;
    let h = Harness::start_at(free_port(), &idp.provider_toml()).await;
    for (status, body, expected_status, expected) in [
        (
            200,
            "<html>not json</html>".to_owned(),
            StatusCode::BAD_GATEWAY,
            "unavailable right now",
        ),
        (
            500,
            "{}".to_owned(),
            StatusCode::BAD_GATEWAY,
            "unavailable right now",
        ),
        (
            400,
            json!({"error": "invalid_grant", "error_description": "code expired"}).to_string(),
            StatusCode::UNAUTHORIZED,
            "invalid_grant code expired",
        ),
        (
            200,
            json!({"access_token": "at", "token_type": "Bearer"}).to_string(),
            StatusCode::UNAUTHORIZED,
            "no ID token",
        ),
        (
            200,
            json!({"access_token": "at", "id_token": "a.b"}).to_string(),
            StatusCode::UNAUTHORIZED,
            "malformed",
        ),
    ] {
        let flow = start_flow(&h).await;
        idp.answer(status, body.clone()).await;
        let (got, page, signed_in) = finish(&h, &flow).await;
        assert!(!signed_in, "{body}");
        assert_eq!(got, expected_status, "{body}: {page}");
        assert!(
            page.contains(expected),
            "{body}: expected {expected:?} in {page}"
        );
    }
    h.running.shutdown().await;
}

#[tokio::test]
async fn cognito_sign_out_uses_its_own_logout_form() {
    let idp = FakeIdp::start().await;
    let port = free_port();
    let h = Harness::start_at(
        port,
        &format!("{}preset = 'cognito'\n", idp.provider_toml()),
    )
    .await;
    let flow = start_flow(&h).await;
    let mut claims = idp.good_claims(&flow.nonce);
    claims["email_verified"] = json!("true"); // as Cognito sends it
    claims["cognito:groups"] = json!(["chat-users"]);
    idp.answer_id_token(&idp.sign(&claims, KID)).await;
    let response = h
        .http
        .get(h.url(&format!("/oauth2/callback?code=c&state={}", flow.state)))
        .header(COOKIE, format!("_portcullis_flow={}", flow.cookie))
        .send()
        .await
        .unwrap();
    let session =
        set_cookie_value(&response, "_portcullis").expect("string \"true\" counts as verified");
    let out = h
        .http
        .get(h.url("/oauth2/sign_out"))
        .header(COOKIE, format!("_portcullis={session}"))
        .send()
        .await
        .unwrap();
    let location = out.headers()[LOCATION].to_str().unwrap();
    let expected = format!(
        "{}/logout?client_id=fake-client&logout_uri=http%3A%2F%2F127.0.0.1%3A{port}%2F.portcullis%2Fsigned_out",
        idp.issuer
    );
    assert_eq!(
        location, expected,
        "Cognito ignores id_token_hint and post_logout_redirect_uri"
    );
    h.running.shutdown().await;
}

/// Signs in through the fake provider with `extra` claims; the vault's answer to the session.
async fn vault_answer(h: &Harness, idp: &FakeIdp, extra: serde_json::Value) -> StatusCode {
    let flow = start_flow(h).await;
    let mut claims = idp.good_claims(&flow.nonce);
    for (k, v) in extra.as_object().unwrap() {
        claims[k] = v.clone();
    }
    idp.answer_id_token(&idp.sign(&claims, KID)).await;
    let response = h
        .http
        .get(h.url(&format!("/oauth2/callback?code=c&state={}", flow.state)))
        .header(COOKIE, format!("_portcullis_flow={}", flow.cookie))
        .send()
        .await
        .unwrap();
    let cookie = set_cookie_value(&response, "_portcullis").expect("signed in");
    h.http
        .get(h.url("/vault/x"))
        .header(COOKIE, format!("_portcullis={cookie}"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap()
        .status()
}

/// A provider's `amr`/`acr` meet `require_mfa` only where `mfa_amr`/`mfa_acr` trust them: with
/// them, an ID token saying `mfa` (or the trusted `acr`) opens the app; without, the same claim
/// is not believed and the session must step up.
#[tokio::test]
async fn provider_amr_and_acr_count_only_when_configured() {
    let idp = FakeIdp::start().await;
    let app = "[[apps]]\nname = 'vault'\nupstream = '{upstream}'\nrequire_mfa = true\n";
    let trusting = Harness::start_at(
        free_port(),
        &format!(
            "{app}{}mfa_amr = ['mfa']\nmfa_acr = ['gold']\n",
            idp.provider_toml()
        ),
    )
    .await;
    let plain = Harness::start_at(free_port(), &format!("{app}{}", idp.provider_toml())).await;

    assert_eq!(
        vault_answer(&trusting, &idp, json!({"amr": ["pwd", "mfa"]})).await,
        StatusCode::OK
    );
    assert_eq!(
        vault_answer(&trusting, &idp, json!({"acr": "gold"})).await,
        StatusCode::OK
    );
    assert_eq!(
        vault_answer(&trusting, &idp, json!({"amr": ["pwd"], "acr": "silver"})).await,
        StatusCode::UNAUTHORIZED,
        "neither a trusted amr nor a trusted acr"
    );
    assert_eq!(
        vault_answer(&plain, &idp, json!({"amr": ["pwd", "mfa"]})).await,
        StatusCode::UNAUTHORIZED,
        "an amr nobody configured is not believed"
    );
}
