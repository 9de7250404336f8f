//! The security regression suite: every way around the gate that was found in Portcullis or in
//! its peers' advisories, tried against every front that can stand before an app — Portcullis's
//! own proxy (over HTTP/1.1, and over HTTP/2 with its own TLS), Debian's nginx and Caddy running the exact blocks of docs/forward-auth.md, and the
//! Traefik stand-in running that page's Traefik blocks. docs/security.md lists each bug class
//! with the test here that guards it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure report

mod common;

use common::front::{self, CHAT_HOST, Front, Kind};
use common::idp::{Idp, free_port, provider_session};
use common::{Harness, received};
use portcullis_core::Role;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, COOKIE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Two apps: `chat` (staff only, with a public prefix and a POST-only hook) on its host, and a
/// catch-all `site` that admits anyone signed in: the lenient policy a confused `Host` would pick.
const CONFIG: &str = "trusted_proxies = ['127.0.0.1/32']\n\
     [[apps]]\nname = 'chat'\nhost = 'chat.example.com'\nupstream = '{upstream}'\n\
     identity_headers = { profile = 'forwarded' }\naccess = { groups = ['staff'] }\n\
     skip_auth = [{ path = '^/public/' }, { methods = ['POST'], path = '^/hook$' }]\n\
     [[apps]]\nname = 'site'\nupstream = '{upstream}'\n";

struct Users {
    /// In `staff`, with an email and a name.
    erin: String,
    /// In `staff`, with neither email nor display name: headers the answer lacks.
    nemo: String,
    /// Signed in, not in `staff`.
    olaf: String,
}

async fn portcullis(extra: &str) -> (Harness, Users) {
    let h = Harness::start_at(free_port(), &format!("{CONFIG}{extra}")).await;
    h.setup_admin().await;
    h.add_user(
        "erin",
        Some("erin@example.com"),
        Some("Erin E"),
        Role::User,
        &["staff"],
    )
    .await;
    h.add_user("nemo", None, None, Role::User, &["staff"]).await;
    h.add_user("olaf", Some("olaf@example.com"), None, Role::User, &[])
        .await;
    let users = Users {
        erin: h.sign_in("erin", "user-password-1").await.unwrap(),
        nemo: h.sign_in("nemo", "user-password-1").await.unwrap(),
        olaf: h.sign_in("olaf", "user-password-1").await.unwrap(),
    };
    (h, users)
}

async fn fronts(h: &Harness, kinds: &[Kind]) -> Vec<Front> {
    let mut out = Vec::new();
    for kind in kinds {
        out.push(front::start(*kind, h).await);
    }
    out
}

fn session(cookie: &str) -> String {
    format!("_portcullis={cookie}")
}

/// A header name with `_` and `.` read as `-`, lower case: how CGI, WSGI and PHP see it.
fn folded(name: &str) -> String {
    name.to_ascii_lowercase().replace(['_', '.'], "-")
}

/// Every (name, value) the app received whose name folds to `name`'s.
fn received_folded(echo: &serde_json::Value, name: &str) -> Vec<(String, String)> {
    echo["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|pair| {
            (
                pair[0].as_str().unwrap().to_owned(),
                pair[1].as_str().unwrap().to_owned(),
            )
        })
        .filter(|(n, _)| folded(n) == folded(name))
        .collect()
}

/// Every header name of every family Portcullis emits or reads, and the forwarding claims.
const IDENTITY_AND_FORWARDING: &[&str] = &[
    "X-Forwarded-User",
    "X-Forwarded-Email",
    "X-Forwarded-Groups",
    "X-Forwarded-Preferred-Username",
    "X-Forwarded-Access-Token",
    "X-Forwarded-Role",
    "X-Auth-Request-User",
    "X-Auth-Request-Email",
    "X-Auth-Request-Groups",
    "X-Auth-Request-Preferred-Username",
    "X-Auth-Request-Access-Token",
    "Remote-User",
    "Remote-Email",
    "Remote-Name",
    "Remote-Groups",
    "X-Portcullis-Assertion",
    "X-Portcullis-User",
    "X-Portcullis-Email",
    "X-Original-URL",
    "X-Original-Method",
    "X-Forwarded-Uri",
    "X-Forwarded-Method",
    "X-Forwarded-Prefix",
];

const FORGED: &str = "forged-by-client";

/// A request carrying a forged value under every identity and forwarding name, in the plain
/// spelling, twice in different case, and in the `_` and `.` spellings (except where a front
/// cannot remove them: see docs/forward-auth.md).
fn forged(kind: Kind, mut request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    for name in IDENTITY_AND_FORWARDING {
        request = request
            .header(*name, FORGED)
            .header(name.to_ascii_uppercase(), FORGED)
            .header(name.replace('-', "_"), FORGED);
        // Traefik has no way to remove dot spellings (docs/forward-auth.md says so and sends
        // apps that fold dots to another front).
        if kind != Kind::Traefik {
            request = request.header(name.replace('-', "."), FORGED);
        }
    }
    request
}

/// Checks that nothing the client forged reached the app, in any spelling, and that no
/// identity header arrived empty, repeated or as a proxy's unexpanded placeholder.
fn nothing_forged_arrived(kind: Kind, echo: &serde_json::Value) {
    for (name, value) in echo["headers"].as_array().unwrap().iter().map(|p| {
        (
            p[0].as_str().unwrap().to_owned(),
            p[1].as_str().unwrap().to_owned(),
        )
    }) {
        assert!(
            !value.contains(FORGED),
            "{kind:?}: the forged {name} reached the app: {echo}"
        );
        let is_identity = IDENTITY_AND_FORWARDING
            .iter()
            .any(|n| folded(n) == folded(&name));
        if is_identity {
            assert!(
                !value.is_empty() && !value.starts_with("{http."),
                "{kind:?}: {name} arrived as {value:?}"
            );
            assert!(
                !name.contains(['_', '.']),
                "{kind:?}: the alias {name} reached the app"
            );
        }
    }
    for name in IDENTITY_AND_FORWARDING {
        assert!(
            received_folded(echo, name).len() <= 1,
            "{kind:?}: {name} arrived more than once: {echo}"
        );
    }
}

#[tokio::test]
async fn forged_identity_headers_never_reach_the_app_in_any_spelling() {
    let (h, users) = portcullis("").await;
    for front in fronts(&h, &Kind::ALL).await {
        let client = front.client(&[]);
        // Signed in with a full identity, signed in without an email, and anonymous on a
        // skip-auth path (the answer then carries no identity at all).
        for (who, cookie, path) in [
            ("erin", Some(&users.erin), "/models"),
            ("nemo", Some(&users.nemo), "/models"),
            ("anonymous", None, "/public/x"),
        ] {
            let mut request = client
                .get(front.url(path))
                .header(ACCEPT, "application/json");
            if let Some(cookie) = cookie {
                request = request.header(COOKIE, session(cookie));
            }
            let response = forged(front.kind, request).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{:?} {who}", front.kind);
            let echo: serde_json::Value = response.json().await.unwrap();
            nothing_forged_arrived(front.kind, &echo);
            let user = received(&echo, "x-forwarded-user");
            let email = received(&echo, "x-forwarded-email");
            match who {
                "erin" => {
                    assert_eq!(user, ["erin"], "{:?}", front.kind);
                    assert_eq!(email, ["erin@example.com"], "{:?}", front.kind);
                    assert_eq!(received(&echo, "x-portcullis-assertion").len(), 1);
                }
                "nemo" => {
                    assert_eq!(user, ["nemo"], "{:?}", front.kind);
                    assert!(
                        email.is_empty(),
                        "{:?}: nemo has no email: {echo}",
                        front.kind
                    );
                }
                _ => {
                    for name in IDENTITY_AND_FORWARDING.iter().take(18) {
                        assert!(
                            received(&echo, name).is_empty(),
                            "{:?}: an anonymous request carried {name}: {echo}",
                            front.kind
                        );
                    }
                }
            }
        }
    }
    h.running.shutdown().await;
}

#[tokio::test]
async fn a_clients_description_of_its_request_is_never_believed() {
    let (h, users) = portcullis("").await;
    for front in fronts(&h, &Kind::ALL).await {
        let client = front.client(&[]);
        let before = h.upstream.hits();
        // Asking for /models while describing the public path, or the POST-only hook as a POST,
        // in each family, in each spelling.
        for (path, method) in [("/models", "GET"), ("/hook", "POST")] {
            let described = if path == "/hook" {
                "/hook"
            } else {
                "/public/x"
            };
            let mut request = client
                .get(front.url(path))
                .header(ACCEPT, "application/json");
            for (name, value) in [
                ("X-Original-URL", format!("http://{CHAT_HOST}{described}")),
                ("X-Original-Method", method.to_owned()),
                ("X-Forwarded-Uri", described.to_owned()),
                ("X-Forwarded-Method", method.to_owned()),
                ("X-Forwarded-Host", CHAT_HOST.to_owned()),
                ("X-Forwarded-Proto", "http".to_owned()),
            ] {
                request = request
                    .header(name, &value)
                    .header(name.replace('-', "_"), &value);
            }
            let response = request.send().await.unwrap();
            assert!(
                matches!(
                    response.status(),
                    StatusCode::UNAUTHORIZED | StatusCode::FOUND
                ),
                "{:?}: GET {path} described as {method} {described}: {}",
                front.kind,
                response.status()
            );
        }
        assert_eq!(
            h.upstream.hits(),
            before,
            "{:?}: nothing reached the app",
            front.kind
        );

        // The rules themselves work, so the refusals above are the descriptions' doing.
        let public = client.get(front.url("/public/x")).send().await.unwrap();
        assert_eq!(public.status(), StatusCode::OK, "{:?}", front.kind);
        let hook = client.post(front.url("/hook")).send().await.unwrap();
        assert_eq!(hook.status(), StatusCode::OK, "{:?}", front.kind);
        let signed_in = client
            .get(front.url("/hook"))
            .header(COOKIE, session(&users.erin))
            .send()
            .await
            .unwrap();
        assert_eq!(signed_in.status(), StatusCode::OK, "{:?}", front.kind);
    }

    // Portcullis's endpoints themselves, asked by a trusted proxy that passed the other
    // family through unchanged (as nginx does with X-Forwarded-*, Caddy with X-Original-*):
    // each reads only its own family, so the private path is what gets decided.
    let ask = |endpoint: &str| {
        h.http
            .get(h.url(endpoint))
            .header(ACCEPT, "application/json")
            .header("x-forwarded-method", "GET")
            .header("x-forwarded-proto", "http")
            .header("x-forwarded-host", CHAT_HOST)
    };
    let caddy_style = ask("/.portcullis/authz/forward-auth?app=chat")
        .header("x-forwarded-uri", "/models")
        .header("x-original-url", format!("http://{CHAT_HOST}/public/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(caddy_style.status(), StatusCode::UNAUTHORIZED);
    let nginx_style = ask("/.portcullis/authz/auth-request?app=chat")
        .header("x-forwarded-uri", "/public/x")
        .header("x-original-url", format!("http://{CHAT_HOST}/models"))
        .header("x-original-method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(nginx_style.status(), StatusCode::UNAUTHORIZED);
    let oauth2_style = ask("/oauth2/auth?app=chat")
        .header("x-forwarded-uri", "/models")
        .header("x-original-url", format!("http://{CHAT_HOST}/public/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(oauth2_style.status(), StatusCode::UNAUTHORIZED);
    h.running.shutdown().await;
}

#[tokio::test]
async fn the_clients_host_cannot_choose_which_apps_policy_applies() {
    let (h, users) = portcullis("").await;
    // The built-in proxy is not in this test: it serves the app it routed to, so the policy
    // that applies is always that of the app that answers.
    for front in fronts(&h, &Kind::FORWARD_AUTH).await {
        let client = front.client(&["anything-else.example"]);
        let before = h.upstream.hits();
        let own = client
            .get(front.url("/models"))
            .header(COOKIE, session(&users.olaf))
            .send()
            .await
            .unwrap();
        assert_eq!(own.status(), StatusCode::FORBIDDEN, "{:?}", front.kind);
        let other = client
            .get(front.url_for("anything-else.example", "/models"))
            .header(COOKIE, session(&users.olaf))
            .header(ACCEPT, "application/json")
            .send()
            .await
            .unwrap();
        // Refused by Portcullis (nginx: the pinned endpoint), or never routed by the proxy
        // (Caddy answers an unknown host with an empty 200, Traefik with 404): the app is not
        // reached either way.
        let status = other.status();
        let body = other.text().await.unwrap();
        assert!(
            !body.contains("\"headers\""),
            "{:?}: another Host was judged by the lenient app's policy ({status}): {body}",
            front.kind
        );
        assert_eq!(h.upstream.hits(), before, "{:?}", front.kind);
    }
    // And Portcullis itself refuses a description for another app than the pinned one, or for
    // no app, whichever proxy sent it.
    let describe = |host: &str, pin: &str| {
        h.http
            .get(h.url(&format!("/.portcullis/authz/forward-auth?app={pin}")))
            .header(COOKIE, session(&users.olaf))
            .header("x-forwarded-method", "GET")
            .header("x-forwarded-proto", "http")
            .header("x-forwarded-host", host)
            .header("x-forwarded-uri", "/models")
            .send()
    };
    assert_eq!(
        describe("anything-else.example", "chat")
            .await
            .unwrap()
            .status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        describe("anything-else.example", "site")
            .await
            .unwrap()
            .status(),
        StatusCode::OK,
        "pinned to the lenient app, its own policy applies"
    );
    let unknown = describe(CHAT_HOST, "nonexistent").await.unwrap();
    assert_eq!(unknown.status(), StatusCode::FORBIDDEN);
    assert!(unknown.text().await.unwrap().contains("not configured"));
    h.running.shutdown().await;
}

/// Sends `request` as it is and reads one answer: its status code and its whole text. The
/// answer ends where its `Content-Length` or last chunk says (the connection may stay open).
async fn raw(front: &Front, request: String) -> (u16, String) {
    let mut stream = front.connect().await;
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let read = async {
        let mut buf = [0u8; 8192];
        loop {
            if answer_complete(&out) {
                return;
            }
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), read).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let code = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, text)
}

fn answer_complete(bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(bytes);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    let head = head.to_ascii_lowercase();
    if head.starts_with("http/1.1 101") {
        return true;
    }
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    match length {
        Some(length) => body.len() >= length,
        None if head.contains("transfer-encoding: chunked") => body.ends_with("0\r\n\r\n"),
        None => false,
    }
}

#[tokio::test]
async fn only_websocket_is_ever_upgraded() {
    let (h, users) = portcullis("").await;
    // HTTP/2 has no Upgrade: its codec refuses connection-specific fields (RFC 9113 §8.2.2),
    // and Portcullis does not offer extended CONNECT (RFC 8441), so the built-in front is asked
    // over HTTP/1.1 only; an HTTP/2 CONNECT is refused in the test below.
    let kinds: Vec<Kind> = Kind::ALL
        .into_iter()
        .filter(|k| *k != Kind::BuiltinH2)
        .collect();
    for front in fronts(&h, &kinds).await {
        // h2c on a public path: the smuggling opener. The app must never be asked to switch.
        let (code, answer) = raw(
            &front,
            format!(
                "GET /public/x HTTP/1.1\r\nHost: {CHAT_HOST}:{}\r\nConnection: Upgrade, HTTP2-Settings\r\n\
                 Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nAccept: application/json\r\n\r\n",
                front.port
            ),
        )
        .await;
        assert_ne!(code, 101, "{:?}: {answer}", front.kind);
        if code == 200 {
            let lower = answer.to_ascii_lowercase();
            assert!(
                !lower.contains("h2c") && !lower.contains("http2-settings"),
                "{:?}: the upgrade reached the app: {answer}",
                front.kind
            );
        } else {
            assert!([400, 404].contains(&code), "{:?}: {answer}", front.kind);
        }
        if front.kind == Kind::Builtin {
            assert_eq!(
                code, 200,
                "the built-in proxy declines h2c and serves HTTP/1.1"
            );
        }

        // Any other protocol the app did not allow: refused before the app (nginx only ever
        // passes WebSocket on; Traefik is left out: it forwards Upgrade to the app unchecked,
        // which for protocols other than h2c only the app can refuse).
        if front.kind != Kind::Traefik {
            let (code, answer) = raw(
                &front,
                format!(
                    "GET /models HTTP/1.1\r\nHost: {CHAT_HOST}:{}\r\nCookie: {}\r\nConnection: Upgrade\r\n\
                     Upgrade: made-up/1\r\nAccept: application/json\r\n\r\n",
                    front.port,
                    session(&users.erin)
                ),
            )
            .await;
            assert_ne!(code, 101, "{:?}: {answer}", front.kind);
            assert!(
                code == 400 || !answer.to_ascii_lowercase().contains("made-up"),
                "{:?}: {answer}",
                front.kind
            );
        }
    }
    h.running.shutdown().await;
}

#[tokio::test]
async fn an_http2_connect_never_reaches_the_app() {
    let (h, users) = portcullis("").await;
    let front = front::start(Kind::BuiltinH2, &h).await;
    let before = h.upstream.hits();
    let cookie = session(&users.erin);
    for headers in [vec![], vec![("cookie", cookie.as_str())]] {
        let (code, answer) = front.h2_request("CONNECT", "", &headers).await;
        assert!(
            code == 0 || (400..500).contains(&code),
            "CONNECT {headers:?}: {code} {answer}"
        );
    }
    assert_eq!(h.upstream.hits(), before, "nothing reached the app");
    h.running.shutdown().await;
}

#[tokio::test]
async fn websocket_still_works_through_every_front_that_tunnels_it() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    let (h, users) = portcullis("").await;
    // The Traefik stand-in does not tunnel (real Traefik does, without asking Portcullis).
    for front in fronts(&h, &[Kind::Builtin, Kind::Nginx, Kind::Caddy]).await {
        let mut request = format!("ws://{CHAT_HOST}:{}/ws", front.port)
            .into_client_request()
            .unwrap();
        request
            .headers_mut()
            .insert("cookie", session(&users.erin).parse().unwrap());
        let stream = front.connect().await;
        let (mut socket, response) = tokio_tungstenite::client_async(request, stream)
            .await
            .unwrap_or_else(|e| panic!("{:?}: {e}", front.kind));
        assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
        assert_eq!(
            socket.next().await.unwrap().unwrap(),
            Message::Text("hello erin".into()),
            "{:?}",
            front.kind
        );
        socket.send(Message::Text("ping".into())).await.unwrap();
        assert_eq!(
            socket.next().await.unwrap().unwrap(),
            Message::Text("echo:ping".into())
        );
        socket.close(None).await.unwrap();
    }
    h.running.shutdown().await;
}

#[tokio::test]
async fn paths_queries_fragments_and_user_agents_cannot_open_a_private_path() {
    let (h, _users) = portcullis("").await;
    for front in fronts(&h, &Kind::ALL).await {
        for target in [
            "/models?x=/public/",
            "/models?/public/x",
            "/public/../models",
            "/public/%2e%2e/models",
            "/public/%2E%2E/models",
            "/public/..%2fmodels",
            "/public%2f..%2fmodels",
            "//public/../models",
            "/public/./../models",
            "/models#/public/x",
            "/models%23/public/x",
            "/./models",
        ] {
            let (code, answer) = if front.kind == Kind::BuiltinH2 {
                // `#` cannot be part of an HTTP/2 `:path` a client library builds; the
                // encoded `%23` case stands for it.
                if target.contains('#') {
                    continue;
                }
                front
                    .h2_request("GET", target, &[("accept", "application/json")])
                    .await
            } else {
                raw(
                    &front,
                    format!(
                        "GET {target} HTTP/1.1\r\nHost: {CHAT_HOST}:{}\r\nAccept: application/json\r\nConnection: close\r\n\r\n",
                        front.port
                    ),
                )
                .await
            };
            // Either refused, or what reached the app is a public path.
            if code == 200 {
                let path = answer
                    .split("\"path\":\"")
                    .nth(1)
                    .and_then(|rest| rest.split('"').next())
                    .unwrap_or("");
                assert!(
                    path.starts_with("/public/"),
                    "{:?}: {target} reached the app as {path}",
                    front.kind
                );
            } else {
                assert!(
                    [302, 400, 401, 403, 404].contains(&code),
                    "{:?}: {target}: {answer}",
                    front.kind
                );
            }
        }
        // oauth2-proxy once skipped authentication for health checkers' User-Agents.
        for agent in ["kube-probe/1.29", "GoogleHC/1.0", "ELB-HealthChecker/2.0"] {
            let response = front
                .client(&[])
                .get(front.url("/models"))
                .header("user-agent", agent)
                .header(ACCEPT, "application/json")
                .send()
                .await
                .unwrap();
            // nginx's block turns every 401 into its redirect to sign in.
            assert!(
                [StatusCode::UNAUTHORIZED, StatusCode::FOUND].contains(&response.status()),
                "{:?}: {agent}: {}",
                front.kind,
                response.status()
            );
        }
    }
    h.running.shutdown().await;
}

#[tokio::test]
async fn a_connection_header_cannot_strip_the_identity_or_smuggle_a_forgery() {
    let (h, users) = portcullis("").await;
    for front in fronts(&h, &Kind::ALL).await {
        let response = front
            .client(&[])
            .get(front.url("/models"))
            .header(COOKIE, session(&users.erin))
            .header(ACCEPT, "application/json")
            .header(
                "connection",
                "keep-alive, X-Forwarded-Email, X-Portcullis-Assertion, X-Forwarded-For",
            )
            .header("x-forwarded-email", FORGED)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{:?}", front.kind);
        let echo: serde_json::Value = response.json().await.unwrap();
        nothing_forged_arrived(front.kind, &echo);
        if matches!(front.kind, Kind::Builtin | Kind::Nginx) {
            // These set the identity after the client's hop-by-hop headers are gone. (Caddy and
            // Traefik drop what Connection names afterwards: the app then sees no identity
            // header, never a forged one; docs/forward-auth.md says so.)
            assert_eq!(
                received(&echo, "x-forwarded-email"),
                ["erin@example.com"],
                "{:?}",
                front.kind
            );
            assert_eq!(received(&echo, "x-portcullis-assertion").len(), 1);
        }
    }
    h.running.shutdown().await;
}

#[tokio::test]
async fn forwarding_claims_from_the_client_never_reach_the_app() {
    let (h, users) = portcullis("").await;
    for front in fronts(&h, &Kind::ALL).await {
        let response = front
            .client(&[])
            .get(front.url("/models"))
            .header(COOKIE, session(&users.erin))
            .header(ACCEPT, "application/json")
            .header("x-forwarded-prefix", "/forged-prefix")
            .header("x-forwarded-host", "forged.example")
            .header("x-forwarded-for", "203.0.113.66")
            .header("x-real-ip", "203.0.113.66")
            .header("forwarded", "for=203.0.113.66;host=forged.example")
            .header("x-forwarded-port", "6666")
            .send()
            .await
            .unwrap();
        let echo: serde_json::Value = response.json().await.unwrap();
        let text = echo.to_string();
        for forged in ["/forged-prefix", "forged.example", "203.0.113.66", "6666"] {
            assert!(
                !text.contains(forged),
                "{:?}: {forged} reached the app: {echo}",
                front.kind
            );
        }
    }
    h.running.shutdown().await;
}

#[tokio::test]
async fn a_multi_at_email_never_passes_a_domain_policy() {
    let port = free_port();
    let idp = Idp::start(&format!("http://127.0.0.1:{port}"), &[]);
    let config = format!(
        "trusted_proxies = ['127.0.0.1/32']\n\
         [[apps]]\nname = 'chat'\nhost = 'chat.example.com'\nupstream = '{{upstream}}'\n\
         access = {{ email_domains = ['example.test'] }}\n{}",
        idp.provider_toml("")
    );
    let h = Harness::start_at(port, &config).await;
    // mallory's provider says `alice@evil.example@example.test`, verified; tess is the control.
    let mallory = provider_session(&h, "mallory").await;
    let tess = provider_session(&h, "tess").await;
    let fronts = fronts(
        &h,
        &[Kind::Builtin, Kind::Nginx, Kind::Caddy, Kind::Traefik],
    )
    .await;
    for front in &fronts {
        let get = |cookie: &str| {
            front
                .client(&[])
                .get(front.url("/models"))
                .header(COOKIE, session(cookie))
                .header(ACCEPT, "application/json")
                .send()
        };
        assert_eq!(
            get(&tess).await.unwrap().status(),
            StatusCode::OK,
            "{:?}",
            front.kind
        );
        let refused = get(&mallory).await.unwrap();
        assert_eq!(refused.status(), StatusCode::FORBIDDEN, "{:?}", front.kind);
    }
    // oauth2-proxy's query rule, with and without a description.
    for path in [
        "/oauth2/auth?allowed_email_domains=example.test",
        "/oauth2/auth?allowed_emails=alice@evil.example@example.test",
    ] {
        let answer = h
            .http
            .get(h.url(path))
            .header(COOKIE, session(&mallory))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::FORBIDDEN, "{path}");
    }
    let control = h
        .http
        .get(h.url("/oauth2/auth?allowed_email_domains=EXAMPLE.test"))
        .header(COOKIE, session(&tess))
        .send()
        .await
        .unwrap();
    assert_eq!(control.status(), StatusCode::ACCEPTED);
    // The address was dropped, not kept in any form.
    let me: serde_json::Value = h
        .http
        .get(h.url("/oauth2/userinfo"))
        .header(COOKIE, session(&mallory))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(me["email"].is_null(), "{me}");
    h.running.shutdown().await;
}

#[tokio::test]
async fn sign_in_throttling_keys_on_the_address_a_trusted_proxy_saw() {
    let (h, _) = portcullis("").await;
    // Behind a trusted proxy (the harness's own client is on 127.0.0.1), the attacker varies
    // what it claims to the left of an entry that is not an address: the throttle's key is the
    // nearest trusted hop each time, so the attempts add up. (An address gets 4 × 5 free
    // attempts; each account here is tried once.)
    let mut last = StatusCode::OK;
    for i in 0..24 {
        let form = h
            .http
            .get(h.url("/.portcullis/sign_in"))
            .send()
            .await
            .unwrap();
        let csrf_cookie = common::set_cookie_value(&form, "_portcullis_csrf").unwrap();
        let csrf = common::hidden_field(&form.text().await.unwrap(), "csrf");
        let response = h
            .http
            .post(h.url("/.portcullis/sign_in"))
            .header(COOKIE, format!("_portcullis_csrf={csrf_cookie}"))
            .header("x-forwarded-for", format!("198.51.100.{i}, garbage-{i}"))
            .form(&[
                ("csrf", csrf.as_str()),
                ("login", format!("nobody-{i}").as_str()),
                ("password", "wrong"),
            ])
            .send()
            .await
            .unwrap();
        last = response.status();
    }
    assert_eq!(last, StatusCode::TOO_MANY_REQUESTS);
    h.running.shutdown().await;
}

/// Who may call an API route, as the OpenAPI document says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Audience {
    /// `security: []`: anyone.
    Public,
    /// `/api/v1/me…`: any signed-in user, about themselves.
    SelfService,
    /// Everything else: administrators.
    Admin,
}

/// The routes of the OpenAPI document with their method and audience, `{id}`-style parameters
/// filled in.
fn api_routes() -> Vec<(reqwest::Method, String, Audience)> {
    let openapi: serde_json::Value =
        serde_json::from_str(include_str!("../../web/src/api/openapi.json")).unwrap();
    let mut routes = Vec::new();
    for (path, operations) in openapi["paths"].as_object().unwrap() {
        for (method, operation) in operations.as_object().unwrap() {
            let Some(method) = ["get", "post", "put", "patch", "delete"]
                .contains(&method.as_str())
                .then(|| {
                    method
                        .to_ascii_uppercase()
                        .parse::<reqwest::Method>()
                        .unwrap()
                })
            else {
                continue; // `parameters` and other path-level keys
            };
            let concrete = path
                .split('/')
                .map(|segment| {
                    if segment.starts_with('{') {
                        "olaf"
                    } else {
                        segment
                    }
                })
                .collect::<Vec<_>>()
                .join("/");
            let audience = if operation["security"] == serde_json::json!([]) {
                Audience::Public
            } else if path.starts_with("/api/v1/me") {
                Audience::SelfService
            } else {
                Audience::Admin
            };
            routes.push((method, concrete, audience));
        }
    }
    routes
}

#[tokio::test]
async fn every_api_route_refuses_callers_who_may_not_use_it() {
    let (h, users) = portcullis("").await;
    let routes = api_routes();
    assert!(routes.len() > 10, "the OpenAPI document lists the API");
    for (method, path, audience) in &routes {
        let url = h.url(&format!("/.portcullis{path}"));
        let call = |cookie: Option<&str>| {
            let mut request = h
                .http
                .request(method.clone(), &url)
                .header(ACCEPT, "application/json")
                .json(&serde_json::json!({}));
            if let Some(cookie) = cookie {
                request = request.header(COOKIE, session(cookie));
            }
            request.send()
        };
        let anonymous = call(None).await.unwrap().status();
        let user = call(Some(&users.olaf)).await.unwrap().status();
        let refused = [StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN];
        match audience {
            Audience::Public => assert!(!refused.contains(&anonymous), "{method} {path}"),
            Audience::SelfService => {
                assert_eq!(
                    anonymous,
                    StatusCode::UNAUTHORIZED,
                    "anonymous {method} {path}"
                );
                assert!(
                    !refused.contains(&user),
                    "{method} {path} is self-service: {user}"
                );
            }
            Audience::Admin => {
                assert_eq!(
                    anonymous,
                    StatusCode::UNAUTHORIZED,
                    "anonymous {method} {path}"
                );
                assert_eq!(user, StatusCode::FORBIDDEN, "a non-admin {method} {path}");
            }
        }
    }
    h.running.shutdown().await;
}

#[tokio::test]
async fn userinfo_whoami_and_answers_never_carry_a_token() {
    let port = free_port();
    let idp = Idp::start(&format!("http://127.0.0.1:{port}"), &[]);
    let h = Harness::start_at(port, &idp.provider_toml("")).await;
    let alice = provider_session(&h, "alice").await;
    let info: serde_json::Value = h
        .http
        .get(h.url("/oauth2/userinfo"))
        .header(COOKIE, session(&alice))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut keys: Vec<&str> = info
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    assert_eq!(keys, ["email", "groups", "preferredUsername", "user"]);
    // A JWT (the provider's ID or access token, or our assertion) starts "eyJ…" twice.
    let looks_like_jwt = |text: &str| {
        text.split(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
            .any(|word| word.starts_with("eyJ") && word.matches('.').count() >= 2)
    };
    for path in [
        "/oauth2/userinfo",
        "/.portcullis/whoami",
        "/.portcullis/account",
    ] {
        let body = h
            .http
            .get(h.url(path))
            .header(COOKIE, session(&alice))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(!looks_like_jwt(&body), "{path} shows a token");
    }
    h.running.shutdown().await;
}

#[tokio::test]
async fn sign_in_through_a_provider_always_uses_pkce_s256() {
    let port = free_port();
    let idp = Idp::start(&format!("http://127.0.0.1:{port}"), &[]);
    let h = Harness::start_at(port, &idp.provider_toml("")).await;
    let start = h
        .http
        .get(h.url("/.portcullis/start/idp?rd=/"))
        .send()
        .await
        .unwrap();
    let location = reqwest::Url::parse(start.headers()["location"].to_str().unwrap()).unwrap();
    let query: std::collections::HashMap<_, _> = location.query_pairs().into_owned().collect();
    assert_eq!(query["code_challenge_method"], "S256");
    assert_eq!(query["code_challenge"].len(), 43);
    assert!(query["state"].len() >= 32 && query["nonce"].len() >= 32);
    h.running.shutdown().await;
}

#[tokio::test]
async fn portcullis_paths_never_reach_an_app_mounted_at_the_root() {
    let (h, users) = portcullis("").await;
    let before = h.upstream.hits();
    for path in [
        "/.portcullis/nonexistent",
        "/.portcullis/admin/../nonexistent",
        "/oauth2/nonexistent",
        "/%2eportcullis/nonexistent",
    ] {
        let response = h
            .http
            .get(h.url(path))
            .header(COOKIE, session(&users.erin))
            .header(ACCEPT, "application/json")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
    }
    assert_eq!(h.upstream.hits(), before);
    h.running.shutdown().await;
}

#[cfg(unix)]
#[tokio::test]
async fn the_data_folder_and_database_are_private() {
    use std::os::unix::fs::PermissionsExt;
    // The embedded store's own folder, whatever store this pass's harness uses.
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("nested/data");
    let store = portcullis_store::SqlStore::open(&data).await.unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("portcullis.db")), 0o600);
    for side in ["portcullis.db-wal", "portcullis.db-shm"] {
        let path = data.join(side);
        if path.exists() {
            assert_eq!(mode(&path), 0o600, "{side}");
        }
    }
    drop(store);
}

#[test]
fn check_config_decides_loopback_on_the_parsed_host() {
    let dir = tempfile::tempdir().unwrap();
    let load = |public_url: &str| {
        let file = dir.path().join("portcullis.toml");
        std::fs::write(&file, format!("public_url = '{public_url}'\n")).unwrap();
        portcullis::config::load(Some(&file)).map(|_| ())
    };
    // A name that merely starts with 127., or a loopback address in the userinfo, is a remote
    // host: plain http there would lose the Secure cookie.
    for remote in [
        "http://127.evil.example",
        "http://127.0.0.1.evil.example",
        "http://127.0.0.1@evil.example",
    ] {
        let refused = load(remote).unwrap_err().to_string();
        assert!(refused.contains("cookie.secure"), "{remote}: {refused}");
    }
    for local in [
        "http://127.0.0.1:4180",
        "http://localhost:4180",
        "http://[::1]:4180",
    ] {
        assert!(load(local).is_ok(), "{local}");
    }
}

/// An app that answers every request with `101 Switching Protocols` to `protocol`, with extra
/// hop-by-hop headers, then closes: for the checks of what the gateway passes on from a 101.
async fn switching_app(protocol: &'static str) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let answer = format!(
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: {protocol}\r\n\
                     Connection: Upgrade, X-Hop-Secret\r\nX-Hop-Secret: internal\r\n\
                     Keep-Alive: timeout=5\r\nProxy-Authenticate: Basic\r\n\
                     Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
                );
                let _ = stream.write_all(answer.as_bytes()).await;
                let _ = stream.read(&mut buf).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn an_apps_101_passes_only_the_switch_the_client_asked_for() {
    let websocket = switching_app("websocket").await;
    let other = switching_app("h2c").await;
    let h = Harness::start(&format!(
        "[[apps]]\nname = 'ws'\npath_prefix = '/ws'\nupstream = 'http://{websocket}'\n\
         skip_auth = [{{ path = '^/ws' }}]\n\
         [[apps]]\nname = 'liar'\npath_prefix = '/liar'\nupstream = 'http://{other}'\n\
         skip_auth = [{{ path = '^/liar' }}]\n"
    ))
    .await;
    let front = front::start(Kind::Builtin, &h).await;
    let upgrade = |path: &str| {
        format!(
            "GET {path} HTTP/1.1\r\nHost: gw\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
    };
    let (code, answer) = raw(&front, upgrade("/ws/x")).await;
    assert_eq!(code, 101, "{answer}");
    let lower = answer.to_ascii_lowercase();
    assert!(lower.contains("upgrade: websocket") && lower.contains("sec-websocket-accept"));
    for hop in ["x-hop-secret", "keep-alive", "proxy-authenticate"] {
        assert!(
            !lower.contains(hop),
            "{hop} passed on with the 101: {answer}"
        );
    }
    // The app switched to something else than the client asked for: not passed on.
    let (code, answer) = raw(&front, upgrade("/liar/x")).await;
    assert_eq!(code, 502, "{answer}");
    h.running.shutdown().await;
}
