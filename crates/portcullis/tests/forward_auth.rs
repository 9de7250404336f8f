//! Forward-auth against the real nginx and Caddy from Debian and the Traefik stand-in, configured
//! with the exact blocks of docs/forward-auth.md: unauthenticated browsers are sent to sign in,
//! signed-in users reach the app with their identity, and identity headers a client forges never
//! reach the app. The attacks are in `security.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure report

mod common;

use common::front::{self, CHAT_HOST, Front, Kind};
use common::idp::free_port;
use common::{Harness, received};
use portcullis_core::Role;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, COOKIE, LOCATION};

/// The forward-auth page's Portcullis configuration (one `chat` app on `chat.example.com`),
/// with this test's upstream and its proxies trusted; the app needs a second factor, so that
/// every proxy's handling of a step-up is checked too.
fn config() -> String {
    "trusted_proxies = ['127.0.0.1/32']\n\
     [[apps]]\nname = 'chat'\nhost = 'chat.example.com'\nupstream = '{upstream}'\n\
     identity_headers = { profile = 'forwarded' }\n\
     access = { groups = ['staff'] }\nrequire_mfa = true\n"
        .to_owned()
}

/// A session of `username` proved with a password and an authenticator app (how it was
/// proved is what the proxies are tested on here; tests/second_factors.rs proves the codes).
async fn session_with_second_factor(h: &Harness, username: &str) -> String {
    let state = &h.running.state;
    let user = state
        .store
        .user_by_username(username)
        .await
        .unwrap()
        .unwrap();
    let origin = portcullis_auth::session::SessionOrigin {
        amr: vec!["pwd".into(), "otp".into(), "mfa".into()],
        ..Default::default()
    };
    state.sessions.create(&user, origin).await.unwrap().0
}

async fn portcullis() -> (Harness, String) {
    let h = Harness::start_at(free_port(), &config()).await;
    h.setup_admin().await;
    h.add_user(
        "erin",
        Some("erin@example.com"),
        Some("Erin E"),
        Role::User,
        &["staff"],
    )
    .await;
    h.add_user("olaf", Some("olaf@example.com"), None, Role::User, &[])
        .await;
    h.add_user("mia", Some("mia@example.com"), None, Role::User, &["staff"])
        .await;
    let cookie = session_with_second_factor(&h, "erin").await;
    (h, cookie)
}

const FORGED: &[(&str, &str)] = &[
    ("X-Forwarded-User", "root"),
    ("X-Forwarded-Email", "root@evil.example"),
    ("X-Forwarded-Groups", "admins"),
    ("Remote-User", "root"),
    ("Remote-Groups", "admins"),
    ("X-Portcullis-Assertion", "forged"),
];

/// What every proxy in front must get right, whatever its configuration language.
async fn behaves_like_a_gateway(h: &Harness, cookie: &str, front: &Front) {
    let client = front.client(&[]);

    // A browser without a session is sent to sign in, and back to where it was going.
    let mut anonymous = client
        .get(front.url("/models?x=1"))
        .header(ACCEPT, "text/html")
        .header("sec-fetch-mode", "navigate");
    for (name, value) in FORGED {
        anonymous = anonymous.header(*name, *value);
    }
    let anonymous = anonymous.send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::FOUND, "{:?}", front.kind);
    let location = anonymous.headers()[LOCATION].to_str().unwrap().to_owned();
    assert!(
        location.starts_with(&format!("{}/.portcullis/sign_in?rd=", h.base)),
        "{location}"
    );
    let back = format!("http%3A//{CHAT_HOST}%3A{}/models%3Fx%3D1", front.port);
    assert!(
        location.ends_with(&format!("rd={back}")),
        "back to the original URL: {location}"
    );
    assert_eq!(h.upstream.hits(), 0, "nothing reached the app");

    // The sign-in page accepts that return URL: it is the app's host.
    let rd = location.split_once("rd=").unwrap().1;
    let form = h
        .http
        .get(format!("{}/.portcullis/sign_in?rd={rd}", h.base))
        .send()
        .await
        .unwrap();
    let html = form.text().await.unwrap();
    assert!(
        html.contains(&front.url("/models?x=1")),
        "the form keeps the absolute return URL"
    );

    // Signed in: the app sees the identity, and none of the forged copies.
    let mut request = client
        .get(front.url("/models"))
        .header(COOKIE, format!("_portcullis={cookie}"))
        .header(ACCEPT, "application/json");
    for (name, value) in FORGED {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let echo: serde_json::Value = response.json().await.unwrap();
    assert_eq!(received(&echo, "x-forwarded-user"), ["erin"]);
    assert_eq!(received(&echo, "x-forwarded-email"), ["erin@example.com"]);
    assert_eq!(received(&echo, "x-forwarded-groups"), ["staff"]);
    assert_eq!(received(&echo, "x-portcullis-assertion").len(), 1);
    if front.kind == Kind::Nginx {
        // The nginx block sets Authelia's names too.
        assert_eq!(received(&echo, "remote-user"), ["erin"]);
        assert_eq!(received(&echo, "remote-groups"), ["staff"]);
    }
    for (name, value) in FORGED {
        assert!(
            !received(&echo, name).iter().any(|v| v == value),
            "the forged {name} reached the app: {echo}"
        );
    }

    // mia may use the app, but signed in with her password alone: every flavour sends the
    // browser to the sign-in page, which asks for her second factor (`mfa=1`), and back.
    let hits = h.upstream.hits();
    let mia = h.sign_in("mia", "user-password-1").await.unwrap();
    let step_up = client
        .get(front.url("/models?x=1"))
        .header(COOKIE, format!("_portcullis={mia}"))
        .header(ACCEPT, "text/html")
        .header("sec-fetch-mode", "navigate")
        .send()
        .await
        .unwrap();
    assert_eq!(step_up.status(), StatusCode::FOUND, "{:?}", front.kind);
    let location = step_up.headers()[LOCATION].to_str().unwrap();
    assert_eq!(
        location,
        format!("{}/.portcullis/sign_in?rd={back}&mfa=1", h.base),
        "{:?}",
        front.kind
    );
    assert_eq!(h.upstream.hits(), hits, "nothing reached the app");

    // olaf is not in `staff`: refused with 403 by every flavour.
    let olaf = h.sign_in("olaf", "user-password-1").await.unwrap();
    let response = client
        .get(front.url("/models"))
        .header(COOKIE, format!("_portcullis={olaf}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn nginx_auth_request_with_the_documented_config() {
    let (h, cookie) = portcullis().await;
    // nginx turns the 401 into the documented 302 to the sign-in page.
    let nginx = front::start(Kind::Nginx, &h).await;
    behaves_like_a_gateway(&h, &cookie, &nginx).await;
    h.running.shutdown().await;
}

#[tokio::test]
async fn caddy_forward_auth_with_the_documented_config() {
    let (h, cookie) = portcullis().await;
    let caddy = front::start(Kind::Caddy, &h).await;
    behaves_like_a_gateway(&h, &cookie, &caddy).await;
    h.running.shutdown().await;
}

#[tokio::test]
async fn traefik_forward_auth_with_the_documented_config() {
    let (h, cookie) = portcullis().await;
    let traefik = front::start(Kind::Traefik, &h).await;
    behaves_like_a_gateway(&h, &cookie, &traefik).await;
    h.running.shutdown().await;
}

/// A request straight to Portcullis (bound here to 127.0.0.2, which is not a trusted proxy).
fn untrusted_client() -> reqwest::Client {
    reqwest::Client::builder()
        .local_address("127.0.0.2".parse::<std::net::IpAddr>().unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

#[tokio::test]
async fn forward_auth_answers_and_refusals() {
    let (h, cookie) = portcullis().await;
    let session = format!("_portcullis={cookie}");
    let describe = |path: &str| {
        h.http
            .get(h.url(path))
            .header("x-forwarded-method", "GET")
            .header("x-forwarded-proto", "https")
            .header("x-forwarded-host", "chat.example.com")
            .header("x-forwarded-uri", "/models")
    };

    // oauth2-proxy's /oauth2/auth: 202 with the identity, 401 without a session.
    let ok = describe("/oauth2/auth")
        .header(COOKIE, &session)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::ACCEPTED);
    assert_eq!(ok.headers()["x-auth-request-user"], "erin");
    assert_eq!(ok.headers()["x-auth-request-email"], "erin@example.com");
    assert_eq!(ok.headers()["remote-name"], "Erin E");
    let none = describe("/oauth2/auth").send().await.unwrap();
    assert_eq!(none.status(), StatusCode::UNAUTHORIZED);
    // Without a description it checks the session and the query's rules only.
    let bare = h
        .http
        .get(h.url("/oauth2/auth?allowed_groups=ml,ops"))
        .header(COOKIE, &session)
        .send()
        .await
        .unwrap();
    assert_eq!(
        bare.status(),
        StatusCode::FORBIDDEN,
        "erin is in neither group"
    );
    let bare = h
        .http
        .get(h.url("/oauth2/auth?allowed_email_domains=example.com"))
        .header(COOKIE, &session)
        .send()
        .await
        .unwrap();
    assert_eq!(bare.status(), StatusCode::ACCEPTED);

    // The forward-auth flavour: an API client gets 401 with JSON, not a redirect.
    let api = describe("/.portcullis/authz/forward-auth")
        .header(ACCEPT, "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), StatusCode::UNAUTHORIZED);
    let body: serde_json::Value = api.json().await.unwrap();
    assert!(
        body["sign_in_url"]
            .as_str()
            .unwrap()
            .ends_with("/.portcullis/sign_in?rd=https%3A//chat.example.com/models"),
        "{body}"
    );

    // The path is canonicalised before matching: an encoded traversal cannot escape a rule.
    let sneaky = h
        .http
        .get(h.url("/.portcullis/authz/auth-request"))
        .header(
            "x-original-url",
            "https://chat.example.com/a/%2e%2e/%2e%2e/etc",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        sneaky.status(),
        StatusCode::FORBIDDEN,
        "400 becomes 403 for nginx"
    );

    // From an address that is not a trusted proxy, a description is refused outright.
    let untrusted = untrusted_client();
    for path in [
        "/oauth2/auth",
        "/.portcullis/authz/forward-auth",
        "/.portcullis/authz/auth-request",
    ] {
        let spoofed = untrusted
            .get(h.url(path))
            .header(COOKIE, &session)
            .header("x-forwarded-uri", "/models")
            .header("x-forwarded-host", "chat.example.com")
            .send()
            .await
            .unwrap();
        assert_eq!(spoofed.status(), StatusCode::FORBIDDEN, "{path}");
        assert!(
            spoofed.text().await.unwrap().contains("trusted_proxies"),
            "{path}: the refusal says what to fix"
        );
    }

    // oauth2-proxy's userinfo.
    let info: serde_json::Value = h
        .http
        .get(h.url("/oauth2/userinfo"))
        .header(COOKIE, &session)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["user"], "erin");
    assert_eq!(info["email"], "erin@example.com");
    assert_eq!(info["groups"], serde_json::json!(["staff"]));
    let anonymous = h.http.get(h.url("/oauth2/userinfo")).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    h.running.shutdown().await;
}

/// The value of a counter in Portcullis's `/metrics`.
async fn counter(h: &Harness, name: &str) -> f64 {
    let text = h
        .http
        .get(h.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn the_documented_blocks_keep_their_connections_to_portcullis_alive() {
    let (h, cookie) = portcullis().await;
    for kind in [Kind::Nginx, Kind::Caddy, Kind::Traefik] {
        let front = front::start(kind, &h).await;
        let client = front.client(&[]);
        let before = counter(&h, "portcullis_connections_accepted_total").await;
        for _ in 0..30 {
            let response = client
                .get(front.url("/models"))
                .header(COOKIE, format!("_portcullis={cookie}"))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK);
        }
        // One connection per sub-request would be 30; a pool reuses a few (the /metrics read
        // itself is one).
        let opened = counter(&h, "portcullis_connections_accepted_total").await - before;
        assert!(
            opened <= 5.0,
            "{kind:?} opened {opened} connections for 30 requests"
        );
    }
    h.running.shutdown().await;
}
