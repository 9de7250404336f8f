//! `/.portcullis/whoami`: the resolved identity with where each field came from, and for each app
//! the exact headers and assertion claims it receives — the GUID case shown plainly.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure report

mod common;

use common::fake_idp::{FakeIdp, KID};
use common::idp::free_port;
use common::{Harness, set_cookie_value};
use reqwest::header::{ACCEPT, COOKIE, LOCATION};
use serde_json::{Value, json};

const GUID: &str = "6f1c1f1e-8d3a-4c59-9f39-0a2f5e9a7c11";

const APP: &str = "[[apps]]\nname = 'chat'\nhost = 'chat.example.com'\nupstream = '{upstream}'\n\
                   identity_headers = { profile = 'openwebui', role_header = 'X-Forwarded-Role' }\n";

/// Signs in through the fake provider with these extra claims; returns the session cookie.
async fn sign_in(h: &Harness, idp: &FakeIdp, extra: Value) -> String {
    let start = h
        .http
        .get(h.url("/.portcullis/start/fake?rd=/"))
        .send()
        .await
        .unwrap();
    let flow_cookie = set_cookie_value(&start, "_portcullis_flow").unwrap();
    let url = reqwest::Url::parse(start.headers()[LOCATION].to_str().unwrap()).unwrap();
    let param = |name: &str| {
        url.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
            .unwrap()
    };
    let mut claims = idp.good_claims(&param("nonce"));
    claims["sub"] = json!(GUID);
    claims.as_object_mut().unwrap().remove("name");
    for (k, v) in extra.as_object().unwrap() {
        claims[k] = v.clone();
    }
    idp.answer_id_token(&idp.sign(&claims, KID)).await;
    let done = h
        .http
        .get(h.url(&format!("/oauth2/callback?code=c&state={}", param("state"))))
        .header(COOKIE, format!("_portcullis_flow={flow_cookie}"))
        .send()
        .await
        .unwrap();
    set_cookie_value(&done, "_portcullis").expect("signed in")
}

async fn whoami(h: &Harness, cookie: &str) -> Value {
    h.http
        .get(h.url("/.portcullis/whoami"))
        .header(COOKIE, format!("_portcullis={cookie}"))
        .header(ACCEPT, "application/json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn source<'a>(report: &'a Value, field: &str) -> (&'a str, &'a str) {
    let s = report["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["field"] == field)
        .unwrap();
    (
        s["from"].as_str().unwrap(),
        s["value"].as_str().unwrap_or("—"),
    )
}

#[tokio::test]
async fn whoami_shows_each_field_with_its_claim_and_what_each_app_receives() {
    let idp = FakeIdp::start().await;
    let h = Harness::start_at(free_port(), &format!("{}{APP}", idp.provider_toml())).await;
    let cookie = sign_in(
        &h,
        &idp,
        json!({ "given_name": "Ada", "family_name": "Lovelace" }),
    )
    .await;
    let report = whoami(&h, &cookie).await;

    assert_eq!(report["signed_in_with"], "provider fake");
    let (from, subject) = source(&report, "subject");
    assert_eq!(
        from,
        "directory user id (linked to the provider's claim sub)"
    );
    assert_ne!(
        subject, GUID,
        "apps see the directory's id, not the provider's"
    );
    assert_eq!(
        source(&report, "email"),
        ("claim email", "user1@example.com")
    );
    assert_eq!(
        source(&report, "name"),
        ("claim given_name + family_name", "Ada Lovelace")
    );
    assert!(report["name_warning"].is_null(), "{report}");
    assert!(report["session_expires_at"].as_i64().unwrap() > 0);

    let chat = &report["apps"][0];
    assert_eq!(chat["app"], "chat");
    assert_eq!(chat["headers"]["x-forwarded-email"], "user1@example.com");
    assert_eq!(
        chat["headers"]["x-forwarded-user"], "Ada Lovelace",
        "the name, never the subject"
    );
    assert_eq!(chat["headers"]["x-forwarded-role"], "user");
    let claims = &chat["assertion_claims"];
    assert_eq!(claims["sub"], subject);
    assert_eq!(claims["name"], "Ada Lovelace");
    assert_eq!(claims["aud"], "http://chat.example.com");
    assert!(claims["exp"].as_i64().unwrap() > claims["iat"].as_i64().unwrap());
    // Nothing secret: the assertion is shown as claims, never as a signed token.
    let text = report.to_string();
    assert!(!text.contains("eyJ"), "{text}");

    // The same report as a page for people.
    let page = h
        .http
        .get(h.url("/.portcullis/whoami"))
        .header(COOKIE, format!("_portcullis={cookie}"))
        .header(ACCEPT, "text/html")
        .header("sec-fetch-mode", "navigate")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Where each field came from"), "{page}");
    assert!(page.contains("claim given_name + family_name"), "{page}");
    assert!(page.contains("x-forwarded-user"), "{page}");
    h.running.shutdown().await;
}

/// A provider mapped to take the name from a claim that holds the subject (Cognito's
/// `cognito:username` is a UUID): whoami says so, next to the header that would carry it.
#[tokio::test]
async fn whoami_calls_out_a_guid_display_name() {
    let idp = FakeIdp::start().await;
    let provider = format!(
        "{}claims = {{ name = 'cognito:username' }}\n",
        idp.provider_toml()
    );
    let h = Harness::start_at(free_port(), &format!("{provider}{APP}")).await;
    let cookie = sign_in(&h, &idp, json!({ "cognito:username": GUID })).await;
    let report = whoami(&h, &cookie).await;
    assert_eq!(source(&report, "name"), ("claim cognito:username", GUID));
    assert!(
        report["name_warning"]
            .as_str()
            .is_some_and(|w| w.contains("opaque id")),
        "{report}"
    );
    assert_eq!(report["apps"][0]["headers"]["x-forwarded-user"], GUID);
    h.running.shutdown().await;
}

#[tokio::test]
async fn whoami_for_a_local_account_and_for_nobody() {
    let h = Harness::start(APP).await;
    let admin = h.setup_admin().await;
    let report = whoami(&h, &admin).await;
    assert_eq!(report["signed_in_with"], "local account");
    assert_eq!(source(&report, "name").0, "local account");
    assert_eq!(report["apps"][0]["headers"]["x-forwarded-role"], "admin");

    let anonymous = h
        .http
        .get(h.url("/.portcullis/whoami"))
        .header(ACCEPT, "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), reqwest::StatusCode::UNAUTHORIZED);
    h.running.shutdown().await;
}
