//! MCP servers behind Portcullis (`kind = "mcp"`), the part MCP clients see first: a `401` that
//! says where the protected resource metadata is (never a redirect to a sign-in page), that
//! metadata served by Portcullis even with an app at `/`, bearer credentials only (a browser's
//! session cookie is not one), and no token passed through to the server.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure report

mod common;

use common::mcp::server_everything;
use common::{Harness, call, received};
use portcullis_core::Role;
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
    // Nor through oauth2-proxy's bare session check pinned to the MCP app (the described
    // forward-auth endpoints authenticate through the same phase as the proxy above).
    let pinned = h
        .http
        .get(h.url("/oauth2/auth?app=tools"))
        .header(COOKIE, format!("_portcullis={admin}"))
        .send()
        .await
        .unwrap();
    assert_eq!(pinned.status(), StatusCode::UNAUTHORIZED);

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

/// Runs the official SDK's client (tests/mcp/client.mjs) against `url`; what it reported.
async fn sdk_client(url: &str, token: Option<&str>) -> serde_json::Value {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/mcp/client.mjs");
    let mut command = tokio::process::Command::new("node");
    command.arg(script).arg(url);
    if let Some(token) = token {
        command.arg(token);
    }
    let out = command.output().await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("{e}: {text} {}", String::from_utf8_lossy(&out.stderr)))
}

#[tokio::test]
async fn the_official_sdk_uses_a_registry_mcp_server_through_portcullis() {
    let everything = server_everything().await;
    let h = Harness::start(&format!(
        "[[apps]]\nname = \"everything\"\npath_prefix = \"/mcp\"\nkind = \"mcp\"\n\
         upstream = \"http://127.0.0.1:{}\"\n",
        everything.port
    ))
    .await;
    let admin = h.setup_admin().await;
    h.add_user("agent", Some("agent@example.com"), None, Role::User, &[])
        .await;
    let (status, body) = call(
        &h,
        &admin,
        Method::POST,
        "/.portcullis/api/v1/users/agent/keys",
        Some(json!({"name": "sdk", "apps": ["everything"]})),
    )
    .await;
    assert!(status.is_success(), "{body}");
    let key = body["key"].as_str().unwrap().to_owned();
    let url = h.url("/mcp");

    let report = sdk_client(&url, Some(&key)).await;
    assert!(report.get("error").is_none(), "{report}");
    assert!(
        report["sessionId"].as_str().is_some_and(|s| !s.is_empty()),
        "Mcp-Session-Id passes: {report}"
    );
    let tools: Vec<&str> = report["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t.as_str())
        .collect();
    assert!(
        tools.contains(&"echo") && tools.contains(&"longRunningOperation"),
        "{tools:?}"
    );
    assert_eq!(report["echo"], "Echo: through the gate");
    // Four progress notifications over two seconds, each as it happened: the SSE response is
    // streamed event by event, not buffered until the result.
    let progress = report["progress"].as_array().unwrap();
    assert_eq!(progress.len(), 4, "{report}");
    let at = |i: usize| progress[i]["at"].as_i64().unwrap();
    assert!(
        at(3) - at(0) >= 1000,
        "the events arrived together: {progress:?}"
    );
    assert!(
        report["long"].as_str().unwrap().contains("completed"),
        "{report}"
    );

    // Without a credential the SDK sees the 401; a disabled user's key stops at once.
    let refused = sdk_client(&url, None).await;
    assert_eq!(refused["code"], 401, "{refused}");
    let (status, body) = call(
        &h,
        &admin,
        Method::PATCH,
        "/.portcullis/api/v1/users/agent",
        Some(json!({"status": "disabled"})),
    )
    .await;
    assert!(status.is_success(), "{body}");
    let disabled = sdk_client(&url, Some(&key)).await;
    assert_eq!(disabled["code"], 401, "{disabled}");
}

#[tokio::test]
async fn an_mcp_app_refuses_foreign_origins_and_answers_allowed_ones_with_cors() {
    let h = Harness::start(&APPS.replace(
        "scopes = [\"mcp:tools\"]",
        "scopes = [\"mcp:tools\"]\nallowed_origins = [\"http://localhost:6274\"]",
    ))
    .await;
    let admin = h.setup_admin().await;
    let (_, body) = call(
        &h,
        &admin,
        Method::POST,
        "/.portcullis/api/v1/me/keys",
        Some(json!({"name": "inspector", "apps": ["tools"]})),
    )
    .await;
    let key = body["key"].as_str().unwrap().to_owned();
    let post = |origin: &str| {
        h.http
            .post(h.url("/mcp"))
            .header("origin", origin)
            .header(AUTHORIZATION, format!("Bearer {key}"))
            .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
            .send()
    };

    // DNS rebinding: a page elsewhere, even with a good credential in hand, is refused.
    let foreign = post("http://evil.example").await.unwrap();
    assert_eq!(foreign.status(), StatusCode::FORBIDDEN);
    assert_eq!(h.upstream.hits(), 0);
    let preflight = |origin: &'static str| {
        h.http
            .request(Method::OPTIONS, h.url("/mcp"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, mcp-session-id",
            )
            .send()
    };
    assert_eq!(
        preflight("http://evil.example").await.unwrap().status(),
        StatusCode::FORBIDDEN
    );

    // An allowed browser-based client: its preflight is answered, and it may read the
    // challenge and the session id.
    let answered = preflight("http://localhost:6274").await.unwrap();
    assert_eq!(answered.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        answered.headers()["access-control-allow-origin"],
        "http://localhost:6274"
    );
    let allowed_headers = answered.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        allowed_headers.contains("Mcp-Session-Id") && allowed_headers.contains("Authorization")
    );
    let served = post("http://localhost:6274").await.unwrap();
    assert_eq!(served.status(), StatusCode::OK);
    assert_eq!(
        served.headers()["access-control-allow-origin"],
        "http://localhost:6274"
    );
    let exposed = served.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        exposed.contains("WWW-Authenticate") && exposed.contains("Mcp-Session-Id"),
        "{exposed}"
    );
    let challenged = h
        .http
        .get(h.url("/mcp"))
        .header("origin", "http://localhost:6274")
        .send()
        .await
        .unwrap();
    assert_eq!(challenged.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        challenged.headers()["access-control-allow-origin"],
        "http://localhost:6274"
    );
    // Portcullis's own origin (where its pages are) is allowed too.
    assert_eq!(post(&h.base).await.unwrap().status(), StatusCode::OK);
}
