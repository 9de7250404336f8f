//! A real browser for the tests: Debian's headless Chromium driven through chromedriver's
//! WebDriver protocol (W3C), spoken directly with reqwest.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};

const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::Client,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    /// Ends chromedriver and every Chromium process it started: they share its process group
    /// (killing chromedriver alone leaves the browser running, hundreds of them over a run).
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.driver.id())])
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Where screenshots go: under `target/`, never into the repository.
pub fn screenshot_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

impl Browser {
    pub async fn start() -> Browser {
        for tool in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
            assert!(
                std::path::Path::new(tool).exists(),
                "{tool} is missing: run scripts/install-test-deps (Debian packages chromium, chromium-driver)"
            );
        }
        let port = super::idp::free_port();
        let driver = Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            // Its own process group, with the browsers it starts: see `Drop`.
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        for _ in 0..100 {
            if http.get(format!("{base}/status")).send().await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        // The flags the machine notes prescribe for a closed network, plus a fresh profile.
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1000,800",
            &format!("--user-data-dir={}", profile.path().display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args}
        }}});
        let created: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = created["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("chromedriver did not start a session: {created}"))
            .to_owned();
        Browser {
            driver,
            base,
            session,
            http,
            _profile: profile,
        }
    }

    async fn command(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut request = self.http.request(method, url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response: Value = request.send().await.unwrap().json().await.unwrap();
        if let Some(error) = response["value"]["error"].as_str() {
            panic!(
                "webdriver {path}: {error}: {}",
                response["value"]["message"]
            );
        }
        response["value"].clone()
    }

    pub async fn goto(&self, url: &str) {
        self.command(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    pub async fn url(&self) -> String {
        self.command(reqwest::Method::GET, "/url", None)
            .await
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub async fn source(&self) -> String {
        self.command(reqwest::Method::GET, "/source", None)
            .await
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Waits (up to 10 s) until the page contains `text`: a click that submits a form may return
    /// before the next page has loaded.
    pub async fn wait_for_text(&self, text: &str) -> String {
        for _ in 0..100 {
            let source = self.source().await;
            if source.contains(text) {
                return source;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "{text:?} never appeared; the page is:\n{}",
            self.source().await
        );
    }

    /// Waits (up to 10 s) until the URL starts with `prefix`.
    pub async fn wait_for_url(&self, prefix: &str) -> String {
        for _ in 0..100 {
            let url = self.url().await;
            if url.starts_with(prefix) {
                return url;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("never reached {prefix}; at {}", self.url().await);
    }

    async fn element(&self, css: &str) -> String {
        let found = self
            .command(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        found[ELEMENT_KEY].as_str().unwrap().to_owned()
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css).await;
        self.command(
            reqwest::Method::POST,
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    pub async fn click(&self, css: &str) {
        let id = self.element(css).await;
        self.command(
            reqwest::Method::POST,
            &format!("/element/{id}/click"),
            Some(json!({})),
        )
        .await;
    }

    /// Resizes the window (the viewport follows), e.g. to a phone's 390 px width.
    pub async fn resize(&self, width: u32, height: u32) {
        self.command(
            reqwest::Method::POST,
            "/window/rect",
            Some(json!({ "width": width, "height": height })),
        )
        .await;
    }

    /// Makes pages see `prefers-color-scheme: dark` (or light), through Chromium's DevTools.
    pub async fn color_scheme(&self, scheme: &str) {
        self.command(
            reqwest::Method::POST,
            "/goog/cdp/execute",
            Some(json!({
                "cmd": "Emulation.setEmulatedMedia",
                "params": { "features": [{ "name": "prefers-color-scheme", "value": scheme }] }
            })),
        )
        .await;
    }

    /// Adds a virtual authenticator (WebDriver's WebAuthn extension): a platform passkey
    /// provider that holds discoverable credentials, verifies the user, and says yes at once.
    /// Returns its id.
    pub async fn add_virtual_authenticator(&self) -> String {
        let id = self
            .command(
                reqwest::Method::POST,
                "/webauthn/authenticator",
                Some(json!({
                    "protocol": "ctap2",
                    "transport": "internal",
                    "hasResidentKey": true,
                    "hasUserVerification": true,
                    "isUserVerified": true,
                    "automaticPresenceSimulation": true
                })),
            )
            .await;
        id.as_str().unwrap().to_owned()
    }

    /// The credentials a virtual authenticator holds.
    pub async fn credentials(&self, authenticator: &str) -> Vec<Value> {
        self.command(
            reqwest::Method::GET,
            &format!("/webauthn/authenticator/{authenticator}/credentials"),
            None,
        )
        .await
        .as_array()
        .cloned()
        .unwrap_or_default()
    }

    /// Runs `script` in the page and returns its value.
    pub async fn eval(&self, script: &str) -> Value {
        self.command(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({ "script": script, "args": [] })),
        )
        .await
    }

    /// The serious and critical accessibility violations axe-core finds on the current page, as
    /// `rule: element, …` lines (axe-core from tests/axe, installed by scripts/install-test-deps).
    pub async fn accessibility_violations(&self) -> Vec<String> {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/axe/node_modules/axe-core/axe.min.js"
        );
        let axe = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("{path}: {e}; scripts/install-test-deps installs axe-core"));
        // WebDriver's script runs outside the page's CSP (which allows no script at all), and a
        // returned promise is awaited.
        let script = format!(
            "{axe}\nreturn axe.run(document, {{ resultTypes: ['violations'] }}).then(r => r.violations\
             .filter(v => v.impact === 'serious' || v.impact === 'critical')\
             .map(v => v.id + ': ' + v.nodes.map(n => n.target.join(' ')).join(', ')));"
        );
        let found = self.eval(&script).await;
        found
            .as_array()
            .unwrap_or_else(|| panic!("axe-core did not run: {found}"))
            .iter()
            .map(|v| v.as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// Saves a PNG of the current page as `target/screenshots/<name>.png`.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let data = self
            .command(reqwest::Method::GET, "/screenshot", None)
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(data.as_str().unwrap())
            .unwrap();
        let path = screenshot_dir().join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }
}
