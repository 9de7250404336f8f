//! GitHub sign-in (OAuth 2, no ID token) against an in-process stand-in for GitHub's token,
//! `/user` and `/user/emails` endpoints: the real GitHub cannot be reached from the test machines.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure report

mod common;

use axum::Router;
use axum::routing::{get, post};
use common::idp::free_port;
use common::{Harness, received, set_cookie_value};
use http::HeaderMap;
use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION};
use serde_json::json;

async fn fake_github() -> String {
    fn authorized(headers: &HeaderMap) -> bool {
        headers.get("authorization").and_then(|v| v.to_str().ok()) == Some("Bearer gho_test_token")
    }
    let app = Router::new()
        .route(
            "/login/oauth/access_token",
            post(|| async { axum::Json(json!({"access_token": "gho_test_token", "token_type": "bearer", "scope": "read:user,user:email"})) }),
        )
        .route(
            "/user",
            get(|headers: HeaderMap| async move {
                if !authorized(&headers) {
                    return Err(StatusCode::UNAUTHORIZED);
                }
                Ok(axum::Json(json!({"id": 583231, "login": "octocat", "name": null, "email": "public@example.com"})))
            }),
        )
        .route(
            "/user/emails",
            get(|headers: HeaderMap| async move {
                if !authorized(&headers) {
                    return Err(StatusCode::UNAUTHORIZED);
                }
                Ok(axum::Json(json!([
                    {"email": "unverified@example.com", "primary": false, "verified": false},
                    {"email": "octocat@github.example", "primary": true, "verified": true}
                ])))
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

#[tokio::test]
async fn github_sign_in_uses_the_primary_verified_email() {
    let github = fake_github().await;
    let config = format!(
        "[[apps]]\nname = 'chat'\nupstream = '{{upstream}}'\nidentity_headers = {{ profile = 'openwebui' }}\n\
         [[providers]]\nid = 'github'\npreset = 'github'\nclient_id = 'Iv1.test'\nclient_secret = 's'\n\
         endpoints = {{ authorization = '{github}/login/oauth/authorize', token = '{github}/login/oauth/access_token', \
         userinfo = '{github}/user' }}\n"
    );
    let h = Harness::start_at(free_port(), &config).await;
    let start = h
        .http
        .get(h.url("/.portcullis/start/github?rd=/x"))
        .send()
        .await
        .unwrap();
    let flow_cookie = set_cookie_value(&start, "_portcullis_flow").unwrap();
    let authorize = reqwest::Url::parse(start.headers()[LOCATION].to_str().unwrap()).unwrap();
    assert!(
        authorize
            .as_str()
            .starts_with(&format!("{github}/login/oauth/authorize?"))
    );
    let scope = authorize
        .query_pairs()
        .find(|(k, _)| k == "scope")
        .unwrap()
        .1
        .into_owned();
    assert_eq!(scope, "read:user user:email");
    let state = authorize
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned();

    let callback = h
        .http
        .get(h.url(&format!("/oauth2/callback?code=abc&state={state}")))
        .header(COOKIE, format!("_portcullis_flow={flow_cookie}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        callback.status(),
        StatusCode::FOUND,
        "{}",
        callback.text().await.unwrap_or_default()
    );
    assert_eq!(callback.headers()[LOCATION], "/x");
    let session = set_cookie_value(&callback, "_portcullis").unwrap();
    let echo = h.echo("/x", &session).await;
    assert_eq!(
        received(&echo, "x-forwarded-email"),
        ["octocat@github.example"],
        "primary verified, not the public one"
    );
    assert_eq!(
        received(&echo, "x-forwarded-user"),
        ["octocat"],
        "login as the name when GitHub has none"
    );
    let user = h
        .running
        .state
        .store
        .user_by_identity("https://github.com", "583231")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(user.username, "octocat");
    h.running.shutdown().await;
}
