//! Test harness: a real Portcullis (in-process, real sockets, real SQLite file) in front of the
//! real upstream in `upstream.rs`, driven over HTTP like a browser or a script would.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod browser;
pub mod factors;
pub mod fake_idp;
pub mod front;
pub mod idp;
pub mod ldap;
pub mod mcp;
pub mod pebble;
pub mod pki;
pub mod replicas;
pub mod smtp;
pub mod traefik;
pub mod upstream;

use std::sync::Arc;

use portcullis::serve::{Running, start};
use portcullis_core::Role;
use portcullis_core::user::UserStatus;
use portcullis_proxy::access::TracingAccessLog;
use portcullis_store::NewUser;
use reqwest::StatusCode;
use reqwest::header::{COOKIE, SET_COOKIE};
use tempfile::TempDir;

pub use upstream::Upstream;

pub const ADMIN_PASSWORD: &str = "admin-password-1";

pub struct Harness {
    pub running: Running,
    pub base: String,
    pub upstream: Upstream,
    pub dir: TempDir,
    /// A client that never follows redirects, so tests see every hop.
    pub http: reqwest::Client,
}

/// The value of a cookie set by a response, if it set one.
pub fn set_cookie_value(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .filter_map(|pair| pair.split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.to_owned())
}

/// The `value` of the hidden input `name` in an HTML form.
pub fn hidden_field(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no field {name} in {html}"))
        + marker.len();
    let end = html[start..].find('"').unwrap() + start;
    html[start..end].to_owned()
}

/// With `PCS_TEST_POSTGRES_URL` set (the PostgreSQL pass of scripts/test), every
/// Portcullis a test starts gets a new database in that cluster; otherwise SQLite in its data_dir.
fn test_database() -> Option<String> {
    std::env::var(portcullis_store::TEST_DATABASE_VAR)
        .ok()
        .filter(|u| !u.is_empty())
}

/// The configuration that puts a test's Portcullis on its own PostgreSQL database in the
/// PostgreSQL pass: top-level keys (the token key replicas share) and the `[store]` table.
async fn store_config() -> (String, String) {
    match test_database() {
        Some(admin) => {
            let url = portcullis_store::SqlStore::fresh_postgres_database(&admin)
                .await
                .unwrap();
            (
                "token_key = \"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8\"\n".into(),
                format!("\n[store]\nurl = \"{url}\"\n"),
            )
        }
        None => (String::new(), String::new()),
    }
}

/// Signs in through the form of the Portcullis at `base`; returns the session cookie, or the
/// failing response.
pub async fn sign_in_at(
    http: &reqwest::Client,
    base: &str,
    login: &str,
    password: &str,
) -> Result<String, reqwest::Response> {
    let response = post_sign_in(http, base, login, password, "").await;
    match set_cookie_value(&response, "_portcullis") {
        Some(cookie) if response.status() == StatusCode::SEE_OTHER => Ok(cookie),
        _ => Err(response),
    }
}

/// Posts the sign-in form (with the CSRF pair of a fresh sign-in page) carrying `cookies`
/// (`name=value; …`, e.g. a device cookie) besides the CSRF cookie; the response as it came.
pub async fn post_sign_in(
    http: &reqwest::Client,
    base: &str,
    login: &str,
    password: &str,
    cookies: &str,
) -> reqwest::Response {
    let form = http
        .get(format!("{base}/.portcullis/sign_in?rd=/after"))
        .send()
        .await
        .unwrap();
    let csrf_cookie = set_cookie_value(&form, "_portcullis_csrf").unwrap();
    let csrf = hidden_field(&form.text().await.unwrap(), "csrf");
    let mut cookie = format!("_portcullis_csrf={csrf_cookie}");
    if !cookies.is_empty() {
        cookie.push_str("; ");
        cookie.push_str(cookies);
    }
    http.post(format!("{base}/.portcullis/sign_in"))
        .header(COOKIE, cookie)
        .form(&[
            ("csrf", csrf.as_str()),
            ("login", login),
            ("password", password),
            ("rd", "/after"),
        ])
        .send()
        .await
        .unwrap()
}

impl Harness {
    /// Starts Portcullis with `extra` TOML appended; `{upstream}` in it becomes the upstream URL.
    pub async fn start(extra: &str) -> Harness {
        let upstream = upstream::start().await;
        Self::start_with(upstream, extra).await
    }

    pub async fn start_with(upstream: Upstream, extra: &str) -> Harness {
        Self::start_full(upstream, 0, extra).await
    }

    /// Starts on a known port (with `public_url` to match), for providers that must know the
    /// callback URL before Portcullis starts.
    pub async fn start_at(port: u16, extra: &str) -> Harness {
        let upstream = upstream::start().await;
        let extra = format!("public_url = \"http://127.0.0.1:{port}\"\n{extra}");
        Self::start_full(upstream, port, &extra).await
    }

    /// Starts on a known port with `extra` as it is (its own `public_url`, if any).
    pub async fn start_on(port: u16, extra: &str) -> Harness {
        let upstream = upstream::start().await;
        Self::start_full(upstream, port, extra).await
    }

    /// Starts with `public_url` on `localhost` (browsers refuse an IP address as a passkey's
    /// relying party).
    pub async fn start_on_localhost(extra: &str) -> Harness {
        let upstream = upstream::start().await;
        let port = idp::free_port();
        let extra = format!("public_url = \"http://localhost:{port}\"\n{extra}");
        Self::start_full(upstream, port, &extra).await
    }

    /// Starts with an injected clock (for tests of expiry and give-up ages).
    pub async fn start_with_clock(extra: &str, clock: Arc<dyn portcullis_core::Clock>) -> Harness {
        let upstream = upstream::start().await;
        Self::start_clocked(upstream, 0, extra, clock).await
    }

    async fn start_full(upstream: Upstream, port: u16, extra: &str) -> Harness {
        Self::start_clocked(
            upstream,
            port,
            extra,
            Arc::new(portcullis_core::SystemClock),
        )
        .await
    }

    async fn start_clocked(
        upstream: Upstream,
        port: u16,
        extra: &str,
        clock: Arc<dyn portcullis_core::Clock>,
    ) -> Harness {
        // A real port (not 0), so that the default public_url — and every link and SCIM location
        // built from it — names the address the test actually talks to.
        let port = if port == 0 { idp::free_port() } else { port };
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("portcullis.toml");
        let (store_keys, store_table) = store_config().await;
        let toml = format!(
            "listen = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\nshutdown_grace = \"2s\"\n{store_keys}{}{store_table}",
            dir.path().join("data").display(),
            extra.replace("{upstream}", &upstream.url()),
        );
        std::fs::write(&config_path, toml).unwrap();
        let (config, _) =
            portcullis::config::load(Some(&config_path)).unwrap_or_else(|e| panic!("{e}"));
        let running = start(config, clock, Arc::new(TracingAccessLog))
            .await
            .unwrap();
        let base = format!("http://{}", running.addr);
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Harness {
            running,
            base,
            upstream,
            dir,
            http,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Follows the printed setup link like a person would and returns the new admin's cookie.
    pub async fn setup_admin(&self) -> String {
        let link = self
            .running
            .setup_link
            .clone()
            .expect("a setup link while no admin exists");
        let path_and_query = &link[link.find("/.portcullis/").unwrap()..];
        let token = link.split("token=").nth(1).unwrap().to_owned();
        let form = self
            .http
            .get(self.url(path_and_query))
            .send()
            .await
            .unwrap();
        assert_eq!(form.status(), StatusCode::OK);
        let csrf_cookie = set_cookie_value(&form, "_portcullis_csrf").unwrap();
        let html = form.text().await.unwrap();
        let csrf = hidden_field(&html, "csrf");
        let response = self
            .http
            .post(self.url("/.portcullis/setup"))
            .header(COOKIE, format!("_portcullis_csrf={csrf_cookie}"))
            .form(&[
                ("csrf", csrf.as_str()),
                ("token", token.as_str()),
                ("username", "admin"),
                ("display_name", "Ada Admin"),
                ("email", "admin@example.com"),
                ("password", ADMIN_PASSWORD),
                ("confirm", ADMIN_PASSWORD),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::SEE_OTHER,
            "setup should redirect"
        );
        set_cookie_value(&response, "_portcullis").expect("setup signs the admin in")
    }

    /// Signs in through the form; returns the session cookie, or the failing response.
    pub async fn sign_in(&self, login: &str, password: &str) -> Result<String, reqwest::Response> {
        sign_in_at(&self.http, &self.base, login, password).await
    }

    /// Adds a user straight to the directory.
    pub async fn add_user(
        &self,
        username: &str,
        email: Option<&str>,
        display_name: Option<&str>,
        role: Role,
        groups: &[&str],
    ) {
        let hash = portcullis_auth::password::hash_blocking("user-password-1").unwrap();
        let state = &self.running.state;
        let user = NewUser {
            id: uuid_like(username),
            username: username.into(),
            email: email.map(|e| e.parse().unwrap()),
            display_name: display_name.map(str::to_owned),
            role,
            status: UserStatus::Active,
            password_hash: Some(hash),
        };
        state
            .store
            .create_user(user, state.clock.now())
            .await
            .unwrap();
        for group in groups {
            state
                .store
                .add_to_group(&uuid_like(username), group, state.clock.now())
                .await
                .unwrap();
        }
    }

    /// GET `path` with a session cookie and JSON accept; returns the upstream's echo as JSON.
    pub async fn echo(&self, path: &str, cookie: &str) -> serde_json::Value {
        let response = self
            .http
            .get(self.url(path))
            .header(COOKIE, format!("_portcullis={cookie}"))
            .header("accept", "application/json")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        response.json().await.unwrap()
    }
}

/// A JSON call with a session cookie: the status and the body (JSON, or the text as a string).
pub async fn call(
    h: &Harness,
    cookie: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> (StatusCode, serde_json::Value) {
    let mut request = h
        .http
        .request(method, h.url(path))
        .header(COOKIE, format!("_portcullis={cookie}"));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    (status, body)
}

/// A stable fake UUID per username, so tests can recognise the subject.
pub fn uuid_like(username: &str) -> String {
    let mut n: u64 = 0xcbf29ce484222325;
    for b in username.bytes() {
        n = (n ^ u64::from(b)).wrapping_mul(0x100000001b3);
    }
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        n >> 32,
        (n >> 16) & 0xffff,
        n & 0xfff,
        (n >> 4) & 0xfff,
        n & 0xffffffffffff
    )
}

/// Every value of header `name` the upstream received, in order.
pub fn received(echo: &serde_json::Value, name: &str) -> Vec<String> {
    echo["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|pair| pair[0].as_str().unwrap().eq_ignore_ascii_case(name))
        .map(|pair| pair[1].as_str().unwrap().to_owned())
        .collect()
}
