//! API keys and user disabling, enforced on every request path: keys reach only their apps and
//! stop when revoked or expired; a disabled user's sessions, keys and open streams end at once.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure report

mod common;

use std::time::Duration;

use common::{Harness, received};
use futures_util::StreamExt;
use portcullis_auth::audit::Actor;
use portcullis_auth::directory::Directory;
use portcullis_core::Role;
use portcullis_core::user::UserStatus;
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, COOKIE};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const APPS: &str = "[[apps]]\nname = 'chat'\nupstream = '{upstream}'\n\
                    timeouts = { idle = '60s' }\n\
                    [[apps]]\nname = 'admin-tools'\npath_prefix = '/tools'\nupstream = '{upstream}'\n";

fn directory(h: &Harness) -> Directory {
    let state = &h.running.state;
    Directory::new(
        state.store.clone(),
        state.clock.clone(),
        state.audit.clone(),
    )
}

/// Polls until `check` holds, for at most `limit`.
async fn within<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

async fn status_with(h: &Harness, path: &str, header: (&str, String)) -> StatusCode {
    h.http
        .get(h.url(path))
        .header(header.0, header.1)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn api_keys_reach_their_apps_only_and_stop_when_revoked_or_expired() {
    let h = Harness::start(APPS).await;
    h.setup_admin().await;
    h.add_user(
        "robot-owner",
        Some("owner@example.com"),
        Some("Robot Owner"),
        Role::User,
        &["bots"],
    )
    .await;
    let dir = directory(&h);
    let key = dir
        .create_key(
            "robot-owner",
            "ci",
            vec!["chat".into()],
            None,
            &Actor::new("test", None),
        )
        .await
        .unwrap();

    // A new key reaches every process through the change feed within a second.
    let ready = within(Duration::from_secs(1), || async {
        status_with(&h, "/v1/models", ("x-api-key", key.secret.clone())).await == StatusCode::OK
    })
    .await;
    assert!(ready, "a new key works within a second");

    // As a bearer token and as X-API-Key; the app sees the owner, never the key.
    let through_bearer = h
        .http
        .get(h.url("/v1/models"))
        .header(AUTHORIZATION, format!("Bearer {}", key.secret))
        .send()
        .await
        .unwrap();
    assert_eq!(through_bearer.status(), StatusCode::OK);
    let echo: serde_json::Value = through_bearer.json().await.unwrap();
    assert_eq!(received(&echo, "x-forwarded-email"), ["owner@example.com"]);
    assert!(
        received(&echo, "authorization").is_empty(),
        "our key never reaches the app"
    );
    let through_header = h
        .http
        .get(h.url("/v1/models"))
        .header("x-api-key", &key.secret)
        .send()
        .await
        .unwrap();
    let echo: serde_json::Value = through_header.json().await.unwrap();
    assert_eq!(received(&echo, "x-forwarded-user"), ["robot-owner"]);
    assert!(received(&echo, "x-api-key").is_empty());

    // The scheme is case-insensitive, and with keys in both headers neither reaches the app.
    let lowercase = h
        .http
        .get(h.url("/v1/models"))
        .header(AUTHORIZATION, format!("bearer {}", key.secret))
        .send()
        .await
        .unwrap();
    let echo: serde_json::Value = lowercase.json().await.unwrap();
    assert_eq!(received(&echo, "x-forwarded-user"), ["robot-owner"]);
    assert!(received(&echo, "authorization").is_empty());
    let both = h
        .http
        .get(h.url("/v1/models"))
        .header("x-api-key", &key.secret)
        .header(AUTHORIZATION, format!("Bearer {}", key.secret))
        .send()
        .await
        .unwrap();
    let echo: serde_json::Value = both.json().await.unwrap();
    assert!(received(&echo, "authorization").is_empty() && received(&echo, "x-api-key").is_empty());

    // Refused on an app it was not made for.
    assert_eq!(
        status_with(&h, "/tools/x", ("x-api-key", key.secret.clone())).await,
        StatusCode::FORBIDDEN
    );

    // Someone else's bearer token is the app's business: it passes untouched (and grants nothing).
    let session = h.sign_in("robot-owner", "user-password-1").await.unwrap();
    let foreign = h
        .http
        .get(h.url("/api/chat"))
        .header(COOKIE, format!("_portcullis={session}"))
        .header(
            AUTHORIZATION,
            "Bearer eyJhbGciOiJIUzI1NiJ9.open-webui-token.sig",
        )
        .send()
        .await
        .unwrap();
    let echo: serde_json::Value = foreign.json().await.unwrap();
    assert_eq!(
        received(&echo, "authorization"),
        ["Bearer eyJhbGciOiJIUzI1NiJ9.open-webui-token.sig"]
    );
    let foreign_alone =
        status_with(&h, "/api/chat", ("authorization", "Bearer not-ours".into())).await;
    assert_eq!(
        foreign_alone,
        StatusCode::UNAUTHORIZED,
        "a foreign token is not a credential here"
    );

    // Revoked: refused within a second.
    dir.revoke_key(&key.stored.id, &Actor::new("test", None))
        .await
        .unwrap();
    let refused = within(Duration::from_secs(1), || async {
        status_with(&h, "/v1/models", ("x-api-key", key.secret.clone())).await
            == StatusCode::UNAUTHORIZED
    })
    .await;
    assert!(refused, "a revoked key stops within one second");

    // Expired: refused once its lifetime is over.
    let short = dir
        .create_key(
            "robot-owner",
            "short",
            vec![],
            // Timestamps have second precision: 3 s leaves at least 2 s in which the key works.
            Some(Duration::from_secs(3)),
            &Actor::new("test", None),
        )
        .await
        .unwrap();
    let works = within(Duration::from_secs(1), || async {
        status_with(&h, "/v1/models", ("x-api-key", short.secret.clone())).await == StatusCode::OK
    })
    .await;
    assert!(works, "a new key works within a second");
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        status_with(&h, "/v1/models", ("x-api-key", short.secret.clone())).await,
        StatusCode::UNAUTHORIZED
    );

    let actions: Vec<String> = h
        .running
        .state
        .store
        .recent_audit(20)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    let first_uses = actions.iter().filter(|a| *a == "key_used_first").count();
    assert_eq!(
        first_uses, 2,
        "each key's first use is audited once, however often it is used"
    );
    for expected in ["key_created", "key_revoked"] {
        assert!(
            actions.iter().any(|a| a == expected),
            "{expected} missing from {actions:?}"
        );
    }
    h.running.shutdown().await;
}

#[tokio::test]
async fn disabling_a_user_ends_sessions_keys_and_open_streams() {
    let h = Harness::start(APPS).await;
    h.setup_admin().await;
    h.add_user("mallory", Some("m@example.com"), None, Role::User, &[])
        .await;
    let session = h.sign_in("mallory", "user-password-1").await.unwrap();
    let dir = directory(&h);
    let key = dir
        .create_key("mallory", "script", vec![], None, &Actor::new("test", None))
        .await
        .unwrap();
    let key_works = within(Duration::from_secs(1), || async {
        status_with(&h, "/x", ("x-api-key", key.secret.clone())).await == StatusCode::OK
    })
    .await;
    assert!(key_works);

    // An open SSE stream and an open WebSocket.
    let sse = h
        .http
        .get(h.url("/sse"))
        .header(COOKIE, format!("_portcullis={session}"))
        .send()
        .await
        .unwrap();
    assert_eq!(sse.status(), StatusCode::OK);
    let mut sse = sse.bytes_stream();
    h.upstream.send_event("before");
    let first = tokio::time::timeout(Duration::from_secs(5), sse.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&first).contains("before"));
    let mut ws_request = format!("ws://{}/ws", h.running.addr)
        .into_client_request()
        .unwrap();
    ws_request
        .headers_mut()
        .insert("cookie", format!("_portcullis={session}").parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_request).await.unwrap();
    assert!(ws.next().await.unwrap().is_ok(), "the greeting arrives");

    dir.set_status("mallory", UserStatus::Disabled, &Actor::new("test", None))
        .await
        .unwrap();

    // The SSE stream and the WebSocket are closed within 5 seconds.
    let sse_closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match sse.next().await {
                None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(sse_closed.is_ok(), "the SSE stream must close within 5 s");
    let ws_closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) => return,
                Some(Ok(message)) if message.is_close() => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(ws_closed.is_ok(), "the WebSocket must close within 5 s");

    // And nothing new gets through: not the cookie, not the key.
    let cookie = status_with(&h, "/x", ("cookie", format!("_portcullis={session}"))).await;
    assert_eq!(cookie, StatusCode::UNAUTHORIZED);
    let by_key = status_with(&h, "/x", ("x-api-key", key.secret.clone())).await;
    assert_eq!(by_key, StatusCode::UNAUTHORIZED);
    assert_eq!(
        h.running.state.store.count_sessions().await.unwrap(),
        1,
        "only the admin's session is left"
    );
    h.running.shutdown().await;
}
