//! Forward-auth against the real nginx and Caddy from Debian, configured with the exact snippets
//! in docs/forward-auth.md: unauthenticated browsers are sent to sign in, signed-in users reach
//! the app with their identity, and identity headers a client forges never reach the app.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure report

mod common;

use std::path::Path;
use std::time::Duration;

use common::idp::free_port;
use common::{Harness, received};
use portcullis_core::Role;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, COOKIE, LOCATION};
use tokio::process::{Child, Command};

const DOCS: &str = include_str!("../../../docs/forward-auth.md");

/// The fenced block of `language` in the forward-auth page.
fn snippet(language: &str) -> String {
    let start = DOCS
        .find(&format!("```{language}\n"))
        .unwrap_or_else(|| panic!("no {language} block in docs/forward-auth.md"))
        + language.len()
        + 4;
    let end = DOCS[start..].find("```").unwrap() + start;
    DOCS[start..end].to_owned()
}

fn config(extra_apps: &str) -> String {
    format!(
        "trusted_proxies = ['127.0.0.1/32']\n\
         [[apps]]\nname = 'chat'\nupstream = '{{upstream}}'\n\
         identity_headers = {{ profile = 'forwarded' }}\n\
         access = {{ groups = ['staff'] }}\n{extra_apps}"
    )
}

async fn portcullis() -> (Harness, String) {
    let h = Harness::start_at(free_port(), &config("")).await;
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
    let cookie = h.sign_in("erin", "user-password-1").await.unwrap();
    (h, cookie)
}

/// The docs' snippet with the example addresses replaced by this test's.
fn localise(text: &str, h: &Harness, listen_from: &str, listen_to: &str) -> String {
    text.replace("127.0.0.1:4180", &h.running.addr.to_string())
        .replace(
            "127.0.0.1:3000",
            h.upstream.url().trim_start_matches("http://"),
        )
        .replace(listen_from, listen_to)
}

async fn wait_for_port(port: u16, child: &mut Child, log: &Path) {
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "the proxy exited ({status}): {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the proxy did not listen on {port}");
}

async fn start_nginx(h: &Harness, dir: &Path) -> (Child, u16) {
    let port = free_port();
    let server = localise(
        &snippet("nginx"),
        h,
        "listen 8080;",
        &format!("listen 127.0.0.1:{port};"),
    );
    let conf = format!(
        "daemon off;\nmaster_process off;\npid {dir}/nginx.pid;\nerror_log {dir}/error.log warn;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n access_log off;\n client_body_temp_path {dir}/body;\n proxy_temp_path {dir}/proxy;\n\
         fastcgi_temp_path {dir}/fastcgi;\n uwsgi_temp_path {dir}/uwsgi;\n scgi_temp_path {dir}/scgi;\n\
         {server}\n}}\n",
        dir = dir.display()
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    let log = dir.join("error.log");
    let mut child = Command::new("/usr/sbin/nginx")
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&path)
        .stderr(std::fs::File::create(dir.join("stderr.log")).unwrap())
        .kill_on_drop(true)
        .spawn()
        .expect("nginx from Debian (scripts/install-test-deps installs it)");
    wait_for_port(port, &mut child, &dir.join("stderr.log")).await;
    let _ = log;
    (child, port)
}

async fn start_caddy(h: &Harness, dir: &Path) -> (Child, u16) {
    let port = free_port();
    let caddyfile = localise(
        &snippet("caddyfile"),
        h,
        ":8081 {",
        &format!("http://127.0.0.1:{port} {{"),
    );
    let path = dir.join("Caddyfile");
    std::fs::write(&path, caddyfile).unwrap();
    let log = dir.join("caddy.log");
    let mut child = Command::new("caddy")
        .args(["run", "--adapter", "caddyfile", "--config"])
        .arg(&path)
        .env("HOME", dir)
        .env("XDG_DATA_HOME", dir)
        .env("XDG_CONFIG_HOME", dir)
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(dir.join("caddy.err")).unwrap())
        .kill_on_drop(true)
        .spawn()
        .expect("caddy from Debian (scripts/install-test-deps installs it)");
    wait_for_port(port, &mut child, &dir.join("caddy.err")).await;
    (child, port)
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
async fn behaves_like_a_gateway(h: &Harness, cookie: &str, port: u16, sign_in_status: StatusCode) {
    let front = format!("http://127.0.0.1:{port}");
    let client = &h.http;

    // A browser without a session is sent to sign in, and back to where it was going.
    let mut anonymous = client
        .get(format!("{front}/models?x=1"))
        .header(ACCEPT, "text/html")
        .header("sec-fetch-mode", "navigate");
    for (name, value) in FORGED {
        anonymous = anonymous.header(*name, *value);
    }
    let anonymous = anonymous.send().await.unwrap();
    assert_eq!(anonymous.status(), sign_in_status);
    let location = anonymous.headers()[LOCATION].to_str().unwrap().to_owned();
    assert!(
        location.starts_with(&format!("{}/.portcullis/sign_in?rd=", h.base)),
        "{location}"
    );
    assert!(
        location.ends_with(&format!("rd=http%3A//127.0.0.1%3A{port}/models%3Fx%3D1")),
        "back to the original URL: {location}"
    );
    assert_eq!(h.upstream.hits(), 0, "nothing reached the app");

    // The sign-in page accepts that return URL: the app's host is Portcullis's own here.
    let rd = location.split_once("rd=").unwrap().1;
    let form = client
        .get(format!("{}/.portcullis/sign_in?rd={rd}", h.base))
        .send()
        .await
        .unwrap();
    let html = form.text().await.unwrap();
    assert!(
        html.contains(&format!("http://127.0.0.1:{port}/models?x=1")),
        "the form keeps the absolute return URL"
    );

    // Signed in: the app sees the identity, and none of the forged copies.
    let mut request = client
        .get(format!("{front}/models"))
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
    assert_eq!(received(&echo, "remote-user"), ["erin"]);
    assert_eq!(received(&echo, "remote-groups"), ["staff"]);
    for (name, value) in FORGED {
        assert!(
            !received(&echo, name).iter().any(|v| v == value),
            "the forged {name} reached the app: {echo}"
        );
    }
}

async fn denied_by_policy(h: &Harness, port: u16) {
    // olaf is not in `staff`: refused with 403 by every flavour.
    let olaf = h.sign_in("olaf", "user-password-1").await.unwrap();
    let response = h
        .http
        .get(format!("http://127.0.0.1:{port}/models"))
        .header(COOKIE, format!("_portcullis={olaf}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn nginx_auth_request_with_the_documented_config() {
    let (h, cookie) = portcullis().await;
    let dir = tempfile::tempdir().unwrap();
    let (_nginx, port) = start_nginx(&h, dir.path()).await;
    // nginx turns the 401 into the documented 302 to the sign-in page.
    behaves_like_a_gateway(&h, &cookie, port, StatusCode::FOUND).await;
    denied_by_policy(&h, port).await;
    h.running.shutdown().await;
}

#[tokio::test]
async fn caddy_forward_auth_with_the_documented_config() {
    let (h, cookie) = portcullis().await;
    let dir = tempfile::tempdir().unwrap();
    let (_caddy, port) = start_caddy(&h, dir.path()).await;
    behaves_like_a_gateway(&h, &cookie, port, StatusCode::FOUND).await;
    denied_by_policy(&h, port).await;
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
