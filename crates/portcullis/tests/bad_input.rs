//! Malformed input of every kind gets a clear answer, never a panic and never a way in.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure report

mod common;

use std::time::Duration;

use common::Harness;
use reqwest::StatusCode;
use reqwest::header::COOKIE;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn raw(h: &Harness, request: &[u8]) -> String {
    let mut stream = tokio::net::TcpStream::connect(h.running.addr)
        .await
        .unwrap();
    // A server that refuses a request before reading all of it may reset the connection while
    // it is still being written: what it answered, if anything, is still read below.
    let _ = stream.write_all(request).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn malformed_cookies_are_just_not_signed_in() {
    let h = Harness::start("").await;
    let valid = h.setup_admin().await;
    let long = "a".repeat(4000);
    let cookies = [
        "_portcullis=".to_owned(),
        "_portcullis=short".to_owned(),
        format!("_portcullis={long}"),
        "_portcullis=%00%ff".to_owned(),
        "_portcullis=\"quoted\"".to_owned(),
        ";;;=;=;_portcullis".to_owned(),
        format!("_portcullis={}", "A".repeat(43)),
        format!("_portcullis={}x", &valid[..42]),
    ];
    for cookie in &cookies {
        let response = h
            .http
            .get(h.url("/"))
            .header(COOKIE, cookie.as_str())
            .header("accept", "application/json")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{cookie}");
    }
    // Non-UTF-8 bytes in the Cookie header.
    let response = raw(&h, b"GET / HTTP/1.1\r\nHost: gw\r\nCookie: _portcullis=\xff\xfe\r\nAccept: application/json\r\nConnection: close\r\n\r\n").await;
    assert!(response.starts_with("HTTP/1.1 401"), "{response}");
    // A bad cookie next to a good one: the good one still works.
    let response = h
        .http
        .get(h.url("/"))
        .header(COOKIE, format!("_portcullis=garbage; _portcullis={valid}"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    h.running.shutdown().await;
}

#[tokio::test]
async fn oversized_and_broken_requests_are_refused_cleanly() {
    let h = Harness::start("").await;
    let huge = format!(
        "GET / HTTP/1.1\r\nHost: gw\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "x".repeat(100 * 1024)
    );
    // Refused with most of the request unread: the lingering close lets the 431 arrive every
    // time instead of a reset (which the kernel sends for unread data) destroying it.
    for attempt in 0..10 {
        let response = raw(&h, huge.as_bytes()).await;
        assert!(
            response.starts_with("HTTP/1.1 431"),
            "oversized headers, attempt {attempt}: {}",
            &response[..response.len().min(200)]
        );
    }

    let bad_host = raw(
        &h,
        b"GET / HTTP/1.1\r\nHost: evil.com/x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(bad_host.starts_with("HTTP/1.1 400"), "{bad_host}");
    let bad_path = raw(
        &h,
        b"GET /a/%zz HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        bad_path.starts_with("HTTP/1.1 400") && bad_path.contains("percent-escape"),
        "{bad_path}"
    );
    let garbage = raw(
        &h,
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n",
    )
    .await;
    assert!(
        garbage.is_empty() || garbage.starts_with("HTTP/1.1 400"),
        "{garbage}"
    );

    // Broken forms get the form back, not a crash or a session.
    let response = h
        .http
        .post(h.url("/.portcullis/sign_in"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("login=%ff%fe&password")
        .send()
        .await
        .unwrap();
    assert!(response.status().is_client_error(), "{}", response.status());
    assert!(common::set_cookie_value(&response, "_portcullis").is_none());

    // After all that the server is still fine.
    let ping = h.http.get(h.url("/ping")).send().await.unwrap();
    assert_eq!(ping.status(), StatusCode::OK);
    h.running.shutdown().await;
}

#[tokio::test]
async fn a_malformed_request_body_is_the_clients_fault() {
    let h = Harness::start(
        "[[apps]]\nname = 'up'\nupstream = '{upstream}'\nskip_auth = [{ path = '^/upload$' }]\n",
    )
    .await;
    // The app reads the body as it streams through; the broken chunk is the client's: 400, not
    // a 502 that blames the app.
    let chunked = raw(
        &h,
        b"POST /upload HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\nzz\r\n\r\n",
    )
    .await;
    assert!(chunked.starts_with("HTTP/1.1 400"), "{chunked}");
    assert!(chunked.contains("request body"), "{chunked}");
    // A well-formed one goes through.
    let fine = raw(
        &h,
        b"POST /upload HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    assert!(
        fine.starts_with("HTTP/1.1 200") && fine.ends_with('5'),
        "{fine}"
    );
    h.running.shutdown().await;
}

#[tokio::test]
async fn portcullis_paths_are_matched_after_canonicalisation() {
    let h = Harness::start("").await;
    for path in [
        "/x/../.portcullis/sign_in",
        "/%2eportcullis/sign_in",
        "//.portcullis//sign_in",
    ] {
        let response = h.http.get(h.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert!(
            response.text().await.unwrap().contains("<h1>Sign in</h1>"),
            "{path}"
        );
    }
    h.running.shutdown().await;
}

#[tokio::test]
async fn ready_and_metrics() {
    let h = Harness::start("").await;
    let cookie = h.setup_admin().await;
    let _ = h.echo("/", &cookie).await;
    let ready = h.http.get(h.url("/ready")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    let metrics = h
        .http
        .get(h.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for expected in [
        "portcullis_requests_total{app=\"whoami\",status=\"200\"} 1",
        "portcullis_request_duration_seconds_bucket{",
        "portcullis_active_sessions 1",
    ] {
        assert!(
            metrics.contains(expected),
            "{expected} missing from\n{metrics}"
        );
    }
    h.running.shutdown().await;
}
