//! TLS on both sides: Portcullis listening with a certificate from files (HTTP/2 by ALPN, HTTP/1.1
//! for WebSocket, reload on change, the redirect listener), and https and Unix-socket upstreams
//! (a private CA, the wrong name refused with a 502 that says why, a client certificate).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure report

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::pki::Pki;
use common::{Harness, received, sign_in_at};
use futures_util::{SinkExt, StreamExt};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use portcullis_core::Role;
use reqwest::StatusCode;
use reqwest::header::COOKIE;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const APP: &str = "[[apps]]\nname = 'chat'\nupstream = '{upstream}'\n\
                   identity_headers = { profile = 'forwarded' }\n";

fn tls_table(cert: &std::path::Path, key: &std::path::Path, more: &str) -> String {
    format!(
        "[tls]\ncert = '{}'\nkey = '{}'\n{more}",
        cert.display(),
        key.display()
    )
}

/// Portcullis with TLS in front of the test upstream, a signed-in user, and a client that
/// trusts the test CA: (harness, https base, session cookie, client).
async fn tls_portcullis(pki: &Pki, more_tls: &str) -> (Harness, String, String, reqwest::Client) {
    let server = pki.server("portcullis", &["localhost", "127.0.0.1"]);
    let h = Harness::start(&format!(
        "{APP}{}",
        tls_table(&server.cert, &server.key, more_tls)
    ))
    .await;
    h.add_user(
        "erin",
        Some("erin@example.com"),
        Some("Erin E"),
        Role::User,
        &["staff"],
    )
    .await;
    let base = format!("https://localhost:{}", h.running.addr.port());
    let http = pki.http();
    let cookie = sign_in_at(&http, &base, "erin", "user-password-1")
        .await
        .unwrap_or_else(|r| panic!("sign-in over https failed: {}", r.status()));
    (h, base, cookie, http)
}

#[tokio::test]
async fn http2_by_alpn_carries_signed_in_requests_streams_and_uploads() {
    let pki = Pki::new("Portcullis test CA");
    let (h, base, cookie, http) = tls_portcullis(&pki, "hsts = '365d'\n").await;
    let session = format!("_portcullis={cookie}");

    // Identity headers set, forged ones gone, the scheme https — over HTTP/2.
    let response = http
        .get(format!("{base}/hello"))
        .header(COOKIE, &session)
        .header("x-forwarded-user", "mallory")
        .header("x_forwarded_user", "mallory")
        .header("x-forwarded-proto", "http")
        .send()
        .await
        .unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["strict-transport-security"],
        "max-age=31536000"
    );
    let echo: serde_json::Value = response.json().await.unwrap();
    assert_eq!(received(&echo, "x-forwarded-user"), ["erin"]);
    assert!(received(&echo, "x_forwarded_user").is_empty(), "{echo}");
    assert_eq!(received(&echo, "x-forwarded-proto"), ["https"]);
    assert_eq!(
        received(&echo, "x-forwarded-host"),
        [format!("localhost:{}", h.running.addr.port())]
    );

    // A browser without a session: sent to sign in.
    let response = http
        .get(format!("{base}/private"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert!(response.status().is_redirection(), "{}", response.status());
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.contains("/.portcullis/sign_in"), "{location}");

    // An encoded path cannot climb into Portcullis's own pages over HTTP/2 either.
    let response = http
        .get(format!("{base}/x/%2e%2e/.portcullis/whoami"))
        .send()
        .await
        .unwrap();
    assert_ne!(response.status(), StatusCode::OK);

    // SSE: each event arrives as it is sent.
    let mut events = http
        .get(format!("{base}/sse"))
        .header(COOKIE, &session)
        .send()
        .await
        .unwrap()
        .bytes_stream();
    for data in ["one", "two", "three"] {
        h.upstream.send_event(data);
        let chunk = tokio::time::timeout(Duration::from_secs(3), events.next())
            .await
            .unwrap_or_else(|_| panic!("event {data} did not arrive on its own"))
            .unwrap()
            .unwrap();
        let text = String::from_utf8_lossy(&chunk).into_owned();
        assert!(text.contains(&format!("data: {data}")), "{text:?}");
    }

    // An upload streams through (8 MiB in 64 KiB pieces).
    let pieces = futures_util::stream::iter(
        (0..128).map(|_| Ok::<_, Infallible>(Bytes::from(vec![7u8; 64 * 1024]))),
    );
    let response = http
        .post(format!("{base}/upload"))
        .header(COOKIE, &session)
        .body(reqwest::Body::wrap_stream(pieces))
        .send()
        .await
        .unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(
        response.text().await.unwrap(),
        (8 * 1024 * 1024).to_string()
    );
}

#[tokio::test]
async fn websocket_still_works_over_http11_on_the_tls_listener() {
    let pki = Pki::new("Portcullis test CA");
    let (h, _, cookie, _) = tls_portcullis(&pki, "").await;
    let connector = TlsConnector::from(Arc::new(pki.client_config(&[b"http/1.1"])));
    let tcp = tokio::net::TcpStream::connect(h.running.addr)
        .await
        .unwrap();
    let stream = connector
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    let mut request = format!("wss://localhost:{}/ws", h.running.addr.port())
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert(COOKIE, format!("_portcullis={cookie}").parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::client_async(request, stream)
        .await
        .unwrap();
    let hello = socket.next().await.unwrap().unwrap();
    assert_eq!(hello, Message::Text("hello erin".into()));
    socket.send(Message::Text("ping".into())).await.unwrap();
    assert_eq!(
        socket.next().await.unwrap().unwrap(),
        Message::Text("echo:ping".into())
    );
}

/// The certificate the listener at `addr` presents now.
async fn presented(pki: &Pki, addr: SocketAddr) -> Vec<u8> {
    let connector = TlsConnector::from(Arc::new(pki.client_config(&[b"http/1.1"])));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let stream = connector
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    stream.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

#[tokio::test]
async fn a_renewed_certificate_is_served_without_a_restart_and_a_broken_one_is_not() {
    let pki = Pki::new("Portcullis test CA");
    let first = pki.server("portcullis", &["localhost"]);
    let h = Harness::start(&format!(
        "{APP}{}",
        tls_table(&first.cert, &first.key, "reload_check = '1s'\n")
    ))
    .await;
    assert_eq!(presented(&pki, h.running.addr).await, first.der);

    // Half-written: the old pair keeps serving.
    std::fs::write(&first.cert, "-----BEGIN CERTIFICATE-----\n").unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(presented(&pki, h.running.addr).await, first.der);

    // Renewed in place (the same file names, as certbot's live/ links do).
    let renewed = pki.server("renewed", &["localhost"]);
    std::fs::copy(&renewed.key, &first.key).unwrap();
    std::fs::copy(&renewed.cert, &first.cert).unwrap();
    let mut served = Vec::new();
    for _ in 0..50 {
        served = presented(&pki, h.running.addr).await;
        if served == renewed.der {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        served, renewed.der,
        "the renewed certificate was not picked up"
    );
}

#[tokio::test]
async fn plain_http_is_only_redirected_to_https() {
    let pki = Pki::new("Portcullis test CA");
    let server = pki.server("portcullis", &["localhost"]);
    let plain_port = common::idp::free_port();
    let h = Harness::start(&format!(
        "{APP}{}",
        tls_table(
            &server.cert,
            &server.key,
            &format!("redirect_http = '127.0.0.1:{plain_port}'\n")
        )
    ))
    .await;
    let response = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("http://127.0.0.1:{plain_port}/chat/c/1?q=a%20b"))
        .header("host", "chat.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(
        response.headers()["location"],
        format!(
            "https://chat.example.com:{}/chat/c/1?q=a%20b",
            h.running.addr.port()
        )
        .as_str()
    );
    assert_eq!(
        h.upstream.hits(),
        0,
        "nothing reaches the app over plain http"
    );
}

#[tokio::test]
async fn a_request_naming_two_hosts_is_refused() {
    // HTTP/1.1 in absolute form: the URL's authority and the Host header differ.
    let h = Harness::start(APP).await;
    let mut socket = tokio::net::TcpStream::connect(h.running.addr)
        .await
        .unwrap();
    socket
        .write_all(
            b"GET http://other.example/ HTTP/1.1\r\nHost: chat.example.com\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
    let mut answer = String::new();
    socket.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("two different hosts"), "{answer}");
    assert_eq!(h.upstream.hits(), 0);
}

/// An https app with a certificate from `pki` for `app.internal`; `require_client` makes it
/// refuse connections without a client certificate from the same CA. It answers with what it
/// saw: whether a client certificate was presented, and the `Host`. Also returns how many TLS
/// handshakes it completed.
async fn https_app(pki: &Pki, require_client: bool) -> (SocketAddr, Arc<AtomicUsize>) {
    let issued = pki.server("app", &["app.internal"]);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for ca in common::pki::certificates(&pki.ca_file()) {
        roots.add(ca).unwrap();
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    );
    let verifier = if require_client {
        verifier.build().unwrap()
    } else {
        verifier.allow_unauthenticated().build().unwrap()
    };
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            common::pki::certificates(&issued.cert),
            common::pki::private_key(&issued.key),
        )
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handshakes = Arc::new(AtomicUsize::new(0));
    let counted = handshakes.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            let counted = counted.clone();
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(tcp).await else {
                    return;
                };
                counted.fetch_add(1, Ordering::SeqCst);
                let client_cert = stream.get_ref().1.peer_certificates().is_some();
                let sni = stream.get_ref().1.server_name().map(str::to_owned);
                let service = hyper::service::service_fn(
                    move |request: http::Request<hyper::body::Incoming>| {
                        let sni = sni.clone();
                        async move {
                            let body = serde_json::json!({
                                "client_cert": client_cert,
                                "sni": sni,
                                "host": request.headers().get("host").and_then(|v| v.to_str().ok()),
                            });
                            Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(
                                body.to_string(),
                            ))))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, handshakes)
}

fn https_apps(pki: &Pki, open: SocketAddr, mutual: SocketAddr) -> String {
    let ca = pki.ca_file().display().to_string();
    let client = pki.client("portcullis-client", "portcullis");
    let app = |name: &str, addr: SocketAddr, tls: String| {
        format!(
            "[[apps]]\nname = '{name}'\npath_prefix = '/{name}'\nupstream = 'https://{addr}'\n\
             skip_auth = [{{ path = '^/' }}]\nupstream_tls = {{ {tls} }}\n"
        )
    };
    [
        app(
            "good",
            open,
            format!("ca = '{ca}', server_name = 'app.internal'"),
        ),
        app(
            "wrongname",
            open,
            format!("ca = '{ca}', server_name = 'other.internal'"),
        ),
        app(
            "strangers",
            open,
            format!(
                "ca = '{}', server_name = 'app.internal'",
                ca_of_another_pki(pki.dir.path()).display()
            ),
        ),
        app(
            "mutual",
            mutual,
            format!(
                "ca = '{ca}', server_name = 'app.internal', client_cert = '{}', client_key = '{}'",
                client.cert.display(),
                client.key.display()
            ),
        ),
        app(
            "nocert",
            mutual,
            format!("ca = '{ca}', server_name = 'app.internal'"),
        ),
        app(
            "insecure",
            open,
            "insecure_skip_verify = true, server_name = 'app.internal'".into(),
        ),
    ]
    .concat()
}

/// The CA file (written into `dir`) of a CA that issued none of the certificates in play.
fn ca_of_another_pki(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("another-ca.pem");
    std::fs::write(&path, Pki::new("Another CA").ca_pem()).unwrap();
    path
}

#[tokio::test]
async fn https_upstreams_are_verified_and_a_failure_says_why() {
    let pki = Pki::new("Company CA");
    let (open, handshakes) = https_app(&pki, false).await;
    let (mutual, _) = https_app(&pki, true).await;
    let h = Harness::start(&https_apps(&pki, open, mutual)).await;

    let get = |path: &str| h.http.get(h.url(path)).send();
    let good: serde_json::Value = get("/good/x").await.unwrap().json().await.unwrap();
    assert_eq!(good["sni"], "app.internal", "{good}");
    assert_eq!(good["client_cert"], false);
    assert_eq!(
        good["host"],
        open.to_string(),
        "Host is the upstream's authority"
    );

    let wrong = get("/wrongname/x").await.unwrap();
    assert_eq!(wrong.status(), StatusCode::BAD_GATEWAY);
    let text = wrong.text().await.unwrap();
    assert!(text.contains("not valid for the name"), "{text}");

    let strangers = get("/strangers/x").await.unwrap();
    assert_eq!(strangers.status(), StatusCode::BAD_GATEWAY);
    let text = strangers.text().await.unwrap();
    assert!(
        text.contains("not issued by a CA Portcullis trusts"),
        "{text}"
    );

    let mutual_answer: serde_json::Value = get("/mutual/x").await.unwrap().json().await.unwrap();
    assert_eq!(mutual_answer["client_cert"], true, "{mutual_answer}");
    assert_eq!(
        get("/nocert/x").await.unwrap().status(),
        StatusCode::BAD_GATEWAY,
        "an app requiring a client certificate refuses one that shows none"
    );

    let insecure: serde_json::Value = get("/insecure/x").await.unwrap().json().await.unwrap();
    assert_eq!(insecure["sni"], "app.internal");

    // Connections are pooled like plain ones: many requests, few handshakes.
    let before = handshakes.load(Ordering::SeqCst);
    for _ in 0..20 {
        let answer = get("/good/y").await.unwrap();
        assert_eq!(answer.status(), StatusCode::OK);
        answer.bytes().await.unwrap();
    }
    let made = handshakes.load(Ordering::SeqCst) - before;
    assert!(
        made <= 2,
        "20 sequential requests made {made} TLS handshakes"
    );
}

#[tokio::test]
async fn a_unix_socket_upstream_is_reached_without_tcp() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("app.sock");
    let listener = tokio::net::UnixListener::bind(&socket).unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    |request: http::Request<hyper::body::Incoming>| async move {
                        let host = request
                            .headers()
                            .get("host")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned();
                        Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(format!(
                            "via unix, Host {host}, path {}",
                            request.uri().path()
                        )))))
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    let h = Harness::start(&format!(
        "[[apps]]\nname = 'local'\nupstream = 'unix:{}'\nskip_auth = [{{ path = '^/' }}]\n",
        socket.display()
    ))
    .await;
    let answer = h.http.get(h.url("/a/b")).send().await.unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(
        answer.text().await.unwrap(),
        "via unix, Host localhost, path /a/b"
    );
}

#[test]
fn check_config_reads_the_certificate_files_and_says_what_is_wrong() {
    let pki = Pki::new("Portcullis test CA");
    let server = pki.server("portcullis", &["localhost"]);
    let other = pki.server("other", &["localhost"]);
    let dir = tempfile::tempdir().unwrap();
    let load = |text: String| {
        let path = dir.path().join("portcullis.toml");
        std::fs::write(
            &path,
            format!("data_dir = '{}'\n{text}", dir.path().display()),
        )
        .unwrap();
        portcullis::config::load(Some(&path))
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    assert_eq!(load(tls_table(&server.cert, &server.key, "")), Ok(()));
    let missing = load(tls_table(&dir.path().join("nope.pem"), &server.key, "")).unwrap_err();
    assert!(missing.contains("nope.pem: cannot be read"), "{missing}");
    let mismatched = load(tls_table(&server.cert, &other.key, "")).unwrap_err();
    assert!(
        mismatched.contains("the key is not the certificate's"),
        "{mismatched}"
    );
    let no_ca = load(
        "[[apps]]\nname = 'llm'\nupstream = 'https://llm.internal'\nupstream_tls = { ca = '/nonexistent/ca.pem' }\n"
            .into(),
    )
    .unwrap_err();
    assert!(
        no_ca.contains("apps[0].upstream_tls: /nonexistent/ca.pem: cannot be read"),
        "{no_ca}"
    );
}
