//! MCP servers behind Portcullis (`kind = "mcp"`), the part MCP clients see first: a `401` that
//! says where the protected resource metadata is (never a redirect to a sign-in page), that
//! metadata served by Portcullis even with an app at `/`, bearer credentials only (a browser's
//! session cookie is not one), and no token passed through to the server.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure report

mod common;

use common::{Harness, call, received};
use reqwest::header::{ACCEPT, AUTHORIZATION, COOKIE, LOCATION, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode};
use serde_json::json;

const APPS: &str = r#"
[[apps]]
name = "tools"
path_prefix = "/mcp"
upstream = "{upstream}"
kind = "mcp"
scopes = ["mcp:tools"]

[[apps]]
name = "chat"
upstream = "{upstream}"
"#;

#[tokio::test]
async fn an_mcp_app_answers_401_with_its_metadata_and_takes_only_bearer_credentials() {
    let h = Harness::start(APPS).await;
    let admin = h.setup_admin().await;
    let metadata = format!("{}/.well-known/oauth-protected-resource/mcp", h.base);

    // A browser-looking request without credentials still gets the bearer challenge.
    let anonymous = h
        .http
        .get(h.url("/mcp"))
        .header(ACCEPT, "text/html")
        .header("sec-fetch-mode", "navigate")
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert!(
        anonymous.headers().get(LOCATION).is_none(),
        "never a redirect"
    );
    assert_eq!(
        anonymous.headers()[WWW_AUTHENTICATE],
        format!("Bearer resource_metadata=\"{metadata}\", scope=\"mcp:tools\"").as_str()
    );

    // A token that does not work here: invalid_token.
    let forged = h
        .http
        .post(h.url("/mcp"))
        .header(AUTHORIZATION, "Bearer not-a-token")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);
    let challenge = forged.headers()[WWW_AUTHENTICATE]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");

    // A signed-in browser's cookie is not a credential for an MCP server.
    let with_cookie = h
        .http
        .get(h.url("/mcp"))
        .header(COOKIE, format!("_portcullis={admin}"))
        .send()
        .await
        .unwrap();
    assert_eq!(with_cookie.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(h.upstream.hits(), 0, "nothing reached the MCP server");

    // A key for this app works, and never reaches the server; a key for another app does not.
    let key_for = |apps: serde_json::Value| {
        let (h, admin) = (&h, &admin);
        async move {
            let (status, body) = call(
                h,
                admin,
                Method::POST,
                "/.portcullis/api/v1/me/keys",
                Some(json!({"name": "claude-code", "apps": apps})),
            )
            .await;
            assert!(status.is_success(), "{body}");
            body["key"].as_str().unwrap().to_owned()
        }
    };
    let key = key_for(json!(["tools"])).await;
    let response = h
        .http
        .post(h.url("/mcp"))
        .header(AUTHORIZATION, format!("Bearer {key}"))
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let echo: serde_json::Value = response.json().await.unwrap();
    assert!(
        received(&echo, "authorization").is_empty(),
        "no token passthrough: {echo}"
    );
    assert_eq!(received(&echo, "x-portcullis-assertion").len(), 1);
    let other = key_for(json!(["chat"])).await;
    let refused = h
        .http
        .get(h.url("/mcp"))
        .header(AUTHORIZATION, format!("Bearer {other}"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let challenge = refused.headers()[WWW_AUTHENTICATE]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
}

#[tokio::test]
async fn protected_resource_metadata_is_portcullis_s_even_with_an_app_at_the_root() {
    let h = Harness::start(APPS).await;
    let response = h
        .http
        .get(h.url("/.well-known/oauth-protected-resource/mcp"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["access-control-allow-origin"], "*");
    let metadata: serde_json::Value = response.json().await.unwrap();
    assert_eq!(metadata["resource"], format!("{}/mcp", h.base));
    assert_eq!(metadata["authorization_servers"], json!([h.base]));
    assert_eq!(metadata["scopes_supported"], json!(["mcp:tools"]));
    assert_eq!(metadata["bearer_methods_supported"], json!(["header"]));
    for missing in [
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-protected-resource/chat",
    ] {
        let response = h.http.get(h.url(missing)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{missing}");
    }
    assert_eq!(
        h.upstream.hits(),
        0,
        "the app at / never saw the discovery requests"
    );
}
