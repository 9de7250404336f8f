//! The proxy against a real upstream: identity headers cannot be forged, streams are never
//! buffered, upgrades tunnel, and failures of the app become clear 502/504 answers.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure report

mod common;

use std::time::Duration;

use common::{Harness, received};
use futures_util::{SinkExt, StreamExt};
use portcullis_core::Role;
use reqwest::StatusCode;
use reqwest::header::COOKIE;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const APP: &str = "[[apps]]\nname = 'app'\nupstream = '{upstream}'\n\
                   timeouts = { response_header = '1s', idle = '1s' }\n\
                   identity_headers = { profile = 'forwarded', custom = { 'X-Team-Login' = 'username' } }\n";

async fn signed_in(extra: &str) -> (Harness, String) {
    let h = Harness::start(extra).await;
    h.setup_admin().await;
    h.add_user(
        "erin",
        Some("erin@example.com"),
        Some("Erin E"),
        Role::User,
        &["staff", "ml"],
    )
    .await;
    let cookie = h.sign_in("erin", "user-password-1").await.unwrap();
    (h, cookie)
}

/// Sends raw HTTP/1.1 bytes and returns the whole response as text.
async fn raw(h: &Harness, request: String) -> String {
    let mut stream = tokio::net::TcpStream::connect(h.running.addr)
        .await
        .unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn spoofed_identity_headers_never_reach_the_app() {
    let (h, cookie) = signed_in(APP).await;
    let spoof = format!(
        "GET /spoof HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\nAccept: application/json\r\n\
         Cookie: _portcullis={cookie}; app_cookie=1\r\n\
         X-Forwarded-User: root\r\nx-forwarded-user: root2\r\nX-FORWARDED-EMAIL: root@evil\r\n\
         X-Forwarded-Groups: admins\r\nX-Forwarded-Groups:\r\nX-Forwarded-Preferred-Username: root\r\n\
         Remote-User: root\r\nX-Auth-Request-Email: root@evil\r\nX-Team-Login: root\r\n\
         X-Portcullis-Assertion: forged\r\nX-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: https\r\n\
         X-Forwarded-Host: evil.example\r\nX-Real-IP: 6.6.6.6\r\nForwarded: for=6.6.6.6\r\n\
         Authorization: Bearer app-token\r\n\r\n"
    );
    let response = raw(&h, spoof).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let body = &response[response.find("\r\n\r\n").unwrap() + 4..];
    let body = body.trim_start_matches(|c: char| c.is_ascii_hexdigit() || c == '\r' || c == '\n');
    let end = body.rfind('}').unwrap() + 1;
    let echo: serde_json::Value = serde_json::from_str(&body[..end]).unwrap();
    assert_eq!(received(&echo, "x-forwarded-user"), ["erin"]);
    assert_eq!(received(&echo, "x-forwarded-email"), ["erin@example.com"]);
    assert_eq!(received(&echo, "x-forwarded-groups"), ["ml,staff"]);
    assert_eq!(received(&echo, "x-forwarded-preferred-username"), ["erin"]);
    assert_eq!(received(&echo, "x-team-login"), ["erin"]);
    for gone in ["remote-user", "x-auth-request-email", "forwarded"] {
        assert!(received(&echo, gone).is_empty(), "{gone} must be stripped");
    }
    let assertion = received(&echo, "x-portcullis-assertion");
    assert_eq!(assertion.len(), 1, "only Portcullis's own assertion");
    assert_ne!(assertion[0], "forged");
    assert_eq!(
        received(&echo, "x-forwarded-for"),
        ["127.0.0.1"],
        "untrusted peers cannot claim addresses"
    );
    assert_eq!(received(&echo, "x-forwarded-proto"), ["http"]);
    assert_eq!(received(&echo, "x-forwarded-host"), ["gw.test"]);
    assert_eq!(received(&echo, "x-real-ip"), ["127.0.0.1"]);
    assert_eq!(
        received(&echo, "authorization"),
        ["Bearer app-token"],
        "Authorization passes untouched"
    );
    assert_eq!(received(&echo, "cookie"), ["app_cookie=1"]);
    h.running.shutdown().await;
}

#[tokio::test]
async fn forwarding_headers_are_believed_only_from_trusted_proxies() {
    let (h, cookie) = signed_in(&format!("trusted_proxies = ['127.0.0.1/32']\n{APP}")).await;
    let response = h
        .http
        .get(h.url("/x"))
        .header(COOKIE, format!("_portcullis={cookie}"))
        .header("accept", "application/json")
        .header("x-forwarded-for", "203.0.113.7")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "chat.example.com")
        .send()
        .await
        .unwrap();
    let echo: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        received(&echo, "x-forwarded-for"),
        ["203.0.113.7, 127.0.0.1"]
    );
    assert_eq!(received(&echo, "x-real-ip"), ["203.0.113.7"]);
    assert_eq!(received(&echo, "x-forwarded-proto"), ["https"]);
    assert_eq!(received(&echo, "x-forwarded-host"), ["chat.example.com"]);
    h.running.shutdown().await;
}

#[tokio::test]
async fn sse_events_arrive_one_by_one() {
    let (h, cookie) = signed_in(&APP.replace("idle = '1s'", "idle = '30s'")).await;
    let response = h
        .http
        .get(h.url("/sse"))
        .header(COOKIE, format!("_portcullis={cookie}"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut stream = response.bytes_stream();
    let mut seen = String::new();
    for i in 0..5 {
        // The upstream sends the next event only after the client has received the previous one,
        // so any buffering or coalescing in the gateway makes this loop time out.
        h.upstream.send_event(&format!("token-{i}"));
        let expected = format!("data: token-{i}\n\n");
        while !seen.contains(&expected) {
            let chunk = tokio::time::timeout(Duration::from_secs(5), stream.next())
                .await
                .unwrap_or_else(|_| panic!("event {i} did not arrive on its own; got {seen:?}"))
                .unwrap()
                .unwrap();
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
    h.running.shutdown().await;
}

#[tokio::test]
async fn websocket_echo_through_the_gateway_carries_identity() {
    let (h, cookie) = signed_in(APP).await;
    let mut request = format!("ws://{}/ws", h.running.addr)
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("cookie", format!("_portcullis={cookie}").parse().unwrap());
    request
        .headers_mut()
        .insert("x-forwarded-user", "mallory".parse().unwrap());
    let (mut socket, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    let hello = socket.next().await.unwrap().unwrap();
    assert_eq!(
        hello,
        Message::Text("hello erin".into()),
        "identity on the upgrade request, spoof stripped"
    );
    for i in 0..3 {
        socket
            .send(Message::Text(format!("m{i}").into()))
            .await
            .unwrap();
        assert_eq!(
            socket.next().await.unwrap().unwrap(),
            Message::Text(format!("echo:m{i}").into())
        );
    }
    socket
        .send(Message::Binary(vec![0u8, 1, 2, 255].into()))
        .await
        .unwrap();
    assert_eq!(
        socket.next().await.unwrap().unwrap(),
        Message::Binary(vec![0u8, 1, 2, 255].into())
    );
    socket.close(None).await.unwrap();

    // Without a session the upgrade is refused before reaching the app.
    let anonymous = format!("ws://{}/ws", h.running.addr)
        .into_client_request()
        .unwrap();
    let refused = tokio_tungstenite::connect_async(anonymous).await;
    assert!(refused.is_err());
    h.running.shutdown().await;
}

#[tokio::test]
async fn large_uploads_stream_through() {
    let (h, cookie) = signed_in(&APP.replace("idle = '1s'", "idle = '30s'")).await;
    const CHUNK: usize = 1 << 20;
    const CHUNKS: usize = 256; // 256 MiB here; the binary test checks memory stays flat.
    let stream = futures_util::stream::iter(
        (0..CHUNKS).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![7u8; CHUNK]))),
    );
    let response = h
        .http
        .post(h.url("/upload"))
        .header(COOKIE, format!("_portcullis={cookie}"))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.unwrap(), (CHUNK * CHUNKS).to_string());
    h.running.shutdown().await;
}

#[tokio::test]
async fn upstream_down_is_502_and_slow_headers_504() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let config =
        format!("{APP}[[apps]]\nname = 'dead'\npath_prefix = '/dead'\nupstream = '{dead}'\n");
    let (h, cookie) = signed_in(&config).await;
    let get = |path: &str, accept: &str| {
        h.http
            .get(h.url(path))
            .header(COOKIE, format!("_portcullis={cookie}"))
            .header("accept", accept)
            .send()
    };
    let down = get("/dead/x", "application/json").await.unwrap();
    assert_eq!(down.status(), StatusCode::BAD_GATEWAY);
    let body: serde_json::Value = down.json().await.unwrap();
    assert_eq!(body["error"], "upstream_unavailable");
    assert!(body["message"].as_str().unwrap().contains("\"dead\""));
    let page = get("/dead/x", "text/html").await.unwrap();
    assert_eq!(page.status(), StatusCode::BAD_GATEWAY);
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("The app is unreachable")
    );

    let slow = get("/slow-headers", "application/json").await.unwrap();
    assert_eq!(slow.status(), StatusCode::GATEWAY_TIMEOUT);
    let body: serde_json::Value = slow.json().await.unwrap();
    assert_eq!(body["error"], "upstream_timeout");
    h.running.shutdown().await;
}

#[tokio::test]
async fn idle_timeout_is_not_a_total_timeout() {
    let (h, cookie) = signed_in(APP).await;
    // 15 chunks 200 ms apart: 3 s in total, three times the 1 s idle timeout, never idle for 1 s.
    let long = h
        .http
        .get(h.url("/trickle/15"))
        .header(COOKIE, format!("_portcullis={cookie}"))
        .send()
        .await
        .unwrap();
    let text = long.text().await.unwrap();
    assert_eq!(text.lines().count(), 15, "{text}");

    // A stream that goes silent is cut after the idle timeout instead of hanging forever.
    let stalled = h
        .http
        .get(h.url("/stall"))
        .header(COOKIE, format!("_portcullis={cookie}"))
        .send()
        .await
        .unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(10), stalled.bytes()).await;
    assert!(
        matches!(outcome, Ok(Err(_))),
        "the stalled body must end with an error, got {outcome:?}"
    );
    h.running.shutdown().await;
}

#[tokio::test]
async fn skip_auth_cannot_be_stretched_to_other_paths() {
    let config = "[[apps]]\nname = 'app'\nupstream = '{upstream}'\nskip_auth = [{ methods = ['GET'], path = '^/public/' }]\n";
    let h = Harness::start(config).await;
    let status = |request: String| {
        let h = &h;
        async move {
            let response = raw(h, request).await;
            response.split(' ').nth(1).unwrap_or("none").to_owned()
        }
    };
    let get = |path: &str| {
        format!(
            "GET {path} HTTP/1.1\r\nHost: gw.test\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
        )
    };
    assert_eq!(status(get("/public/logo.png")).await, "200");
    assert_eq!(
        status(
            "POST /public/x HTTP/1.1\r\nHost: gw\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                .to_owned()
        )
        .await,
        "401"
    );
    for attempt in [
        "/public/../admin",
        "/public/%2e%2e/admin",
        "/public/%2E%2E/admin",
        "/public/..;/admin",
        "//public/../admin",
        "/public/./../admin",
        "/admin;/public/",
        "/admin?/public/",
        "/x/public/",
    ] {
        assert_eq!(
            status(get(attempt)).await,
            "401",
            "{attempt} must need a session"
        );
    }
    for refused in [
        "/public%2f..%2fadmin",
        "/public/..%5cadmin",
        "/../public/",
        "/public/%00/x",
    ] {
        assert_eq!(
            status(get(refused)).await,
            "400",
            "{refused} is ambiguous and must be refused"
        );
    }
    // What the app receives is the canonical path that was matched; a fragment is never part of
    // the path (the URI parser drops it), so the app sees exactly what was matched.
    let response = raw(&h, get("/public//a/./b")).await;
    assert!(response.contains("\"path\":\"/public/a/b\""), "{response}");
    let response = raw(&h, get("/public/x#/../../admin")).await;
    assert!(response.contains("\"path\":\"/public/x\""), "{response}");
    h.running.shutdown().await;
}

#[tokio::test]
async fn roles_reach_each_app_in_its_own_vocabulary() {
    let config = "[[apps]]\nname = 'grafana'\nupstream = '{upstream}'\n\
                  identity_headers = { profile = 'custom', role_header = 'X-WEBAUTH-ROLE', \
                  role_values = { admin = 'Admin', user = 'Viewer' }, custom = { 'X-WEBAUTH-USER' = 'username' } }\n";
    let h = Harness::start(config).await;
    let admin = h.setup_admin().await;
    h.add_user("lee", None, None, Role::User, &[]).await;
    h.add_user("max", None, None, Role::Pending, &[]).await;
    let lee = h.sign_in("lee", "user-password-1").await.unwrap();
    let max = h.sign_in("max", "user-password-1").await.unwrap();
    assert_eq!(
        received(&h.echo("/", &admin).await, "x-webauth-role"),
        ["Admin"]
    );
    assert_eq!(
        received(&h.echo("/", &lee).await, "x-webauth-role"),
        ["Viewer"]
    );
    assert_eq!(
        received(&h.echo("/", &max).await, "x-webauth-role"),
        ["pending"],
        "unmapped roles keep their name"
    );
    h.running.shutdown().await;
}
