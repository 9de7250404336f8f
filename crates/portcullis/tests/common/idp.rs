//! A real OpenID provider for the tests: npm `oidc-provider` (tests/oidc-provider), started on
//! loopback, and a scripted person who signs in through its login and consent pages.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Idp {
    child: Child,
    pub issuer: String,
    pub port: u16,
}

impl Drop for Idp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn provider_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/oidc-provider")
}

impl Idp {
    /// Starts the provider for a Portcullis at `portcullis_base`. `extra_env` tunes it
    /// (`CONFORM=false` puts profile claims in the ID token, `ACCESS_TTL`, …).
    pub fn start(portcullis_base: &str, extra_env: &[(&str, &str)]) -> Idp {
        let dir = provider_dir();
        assert!(
            dir.join("node_modules/oidc-provider").is_dir(),
            "oidc-provider is not installed in {}: run scripts/install-test-deps",
            dir.display()
        );
        let port = free_port();
        let mut command = Command::new("node");
        command
            .arg("server.mjs")
            .current_dir(&dir)
            .env("PORT", port.to_string())
            .env("REDIRECT_URI", format!("{portcullis_base}/oauth2/callback"))
            .env(
                "POST_LOGOUT_URI",
                format!("{portcullis_base}/.portcullis/signed_out"),
            )
            .stdout(Stdio::piped())
            .stderr(if std::env::var_os("PCS_IDP_DEBUG").is_some() {
                Stdio::inherit()
            } else {
                Stdio::null()
            });
        for (k, v) in extra_env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("node must be installed");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let ready = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the provider starts");
        assert!(ready.starts_with("ready "), "{ready}");
        Idp {
            child,
            issuer: format!("http://127.0.0.1:{port}"),
            port,
        }
    }

    /// A `[[providers]]` entry for this provider; `extra` may override `scopes`.
    pub fn provider_toml(&self, extra: &str) -> String {
        let scopes = if extra.contains("scopes") {
            ""
        } else {
            "scopes = ['openid', 'email', 'profile', 'groups']\n"
        };
        format!(
            "[[providers]]\nid = 'idp'\nname = 'Test IdP'\nissuer = '{}'\nclient_id = 'portcullis'\n\
             client_secret = 'portcullis-test-secret'\n{scopes}{extra}",
            self.issuer
        )
    }
}

/// A person at the provider's pages: a cookie jar for the provider only, no automatic redirects.
pub struct Person {
    http: reqwest::Client,
}

impl Default for Person {
    fn default() -> Self {
        Person {
            http: reqwest::Client::builder()
                .cookie_store(true)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        }
    }
}

fn hidden_prompt(html: &str) -> Option<String> {
    let marker = "name=\"prompt\" value=\"";
    let start = html.find(marker)? + marker.len();
    Some(html[start..start + html[start..].find('"')?].to_owned())
}

impl Person {
    /// Follows `authorize_url` through the provider's login and consent pages as `login`, and
    /// returns the URL the provider finally redirects to (the callback, on success).
    pub async fn sign_in_at_provider(&self, authorize_url: &str, login: &str) -> String {
        let mut url = authorize_url.to_owned();
        for _ in 0..12 {
            let response = self.http.get(&url).send().await.unwrap();
            if response.status().is_redirection() {
                let next = response.headers()["location"].to_str().unwrap().to_owned();
                let next = absolute(&url, &next);
                if !next.contains("/auth") && !next.contains("/interaction/") {
                    return next;
                }
                url = next;
                continue;
            }
            let html = response.text().await.unwrap();
            let prompt =
                hidden_prompt(&html).unwrap_or_else(|| panic!("no prompt form at {url}: {html}"));
            let form: Vec<(&str, &str)> = match prompt.as_str() {
                "login" => vec![("prompt", "login"), ("login", login), ("password", "any")],
                _ => vec![("prompt", prompt.as_str())],
            };
            let posted = self.http.post(&url).form(&form).send().await.unwrap();
            assert!(
                posted.status().is_redirection(),
                "posting {prompt} at {url}: {}",
                posted.status()
            );
            url = absolute(&url, posted.headers()["location"].to_str().unwrap());
            if !url.contains("/auth") && !url.contains("/interaction/") {
                return url;
            }
        }
        panic!("the provider never redirected back");
    }

    /// What the provider asks of this person when `authorize_url` is opened: `Some("login")`
    /// when its own session is gone, `Some("consent")`, or `None` when it sends the browser
    /// straight back (its session is alive and consent was given).
    pub async fn prompt_at(&self, authorize_url: &str) -> Option<String> {
        let mut url = authorize_url.to_owned();
        for _ in 0..8 {
            let response = self.http.get(&url).send().await.unwrap();
            if !response.status().is_redirection() {
                return hidden_prompt(&response.text().await.unwrap());
            }
            let next = absolute(&url, response.headers()["location"].to_str().unwrap());
            if !next.contains("/auth") && !next.contains("/interaction/") {
                return None;
            }
            url = next;
        }
        panic!("the provider kept redirecting");
    }

    /// Confirms the provider's RP-initiated logout page and returns where it sends the browser.
    pub async fn confirm_logout(&self, end_session_url: &str) -> String {
        let page = self.http.get(end_session_url).send().await.unwrap();
        let html = page.text().await.unwrap();
        let action_start = html.find("action=\"").unwrap() + 8;
        let action = &html[action_start..action_start + html[action_start..].find('"').unwrap()];
        let xsrf_marker = "name=\"xsrf\" value=\"";
        let xsrf_start = html.find(xsrf_marker).unwrap() + xsrf_marker.len();
        let xsrf = &html[xsrf_start..xsrf_start + html[xsrf_start..].find('"').unwrap()];
        let response = self
            .http
            .post(absolute(end_session_url, action))
            .form(&[("xsrf", xsrf), ("logout", "yes")])
            .send()
            .await
            .unwrap();
        let mut next = absolute(
            end_session_url,
            response.headers()["location"].to_str().unwrap(),
        );
        // oidc-provider may pass through its own "logout success" hop first.
        for _ in 0..3 {
            if !next.starts_with(&end_session_url[..end_session_url.find("/session").unwrap()]) {
                break;
            }
            let hop = self.http.get(&next).send().await.unwrap();
            if !hop.status().is_redirection() {
                break;
            }
            next = absolute(&next, hop.headers()["location"].to_str().unwrap());
        }
        next
    }
}

fn absolute(base: &str, location: &str) -> String {
    reqwest::Url::parse(base)
        .unwrap()
        .join(location)
        .unwrap()
        .to_string()
}

/// Signs `login` in through the provider `idp` of the Portcullis `h` (start, the provider's
/// pages, the callback) and returns the session cookie.
pub async fn provider_session(h: &super::Harness, login: &str) -> String {
    let start = h
        .http
        .get(h.url("/.portcullis/start/idp?rd=/"))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), reqwest::StatusCode::FOUND);
    let flow = super::set_cookie_value(&start, "_portcullis_flow").unwrap();
    let authorize = start.headers()["location"].to_str().unwrap().to_owned();
    let back = Person::default()
        .sign_in_at_provider(&authorize, login)
        .await;
    let path = &back[back.find("/oauth2/callback").unwrap()..];
    let done = h
        .http
        .get(h.url(path))
        .header("cookie", format!("_portcullis_flow={flow}"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    super::set_cookie_value(&done, "_portcullis")
        .unwrap_or_else(|| panic!("{login} was not signed in: {}", done.status()))
}
