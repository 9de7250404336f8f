//! The real `portcullis` binary: configuration errors, environment overrides, memory under a
//! 1 GiB upload, and graceful shutdown.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure report

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::header::COOKIE;

fn portcullis(dir: &std::path::Path, args: &[&str]) -> Command {
    let mut command = common::replicas::portcullis(args);
    command.current_dir(dir);
    command
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn check_config_names_the_bad_key_and_exits_64() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("lisen = '127.0.0.1:1'\n", "lisen"),
        (
            "[[apps]]\nname = 'a'\nupstream = 'whoami'\nskip_auth = [{ path = '/public' }]\n",
            "apps[0].skip_auth[0].path",
        ),
        ("[session]\nidle_timeout = 'soon'\n", "session.idle_timeout"),
        ("public_url = 'http://gw.example.com'\n", "cookie.secure"),
        ("listen = 'not an address'\n", "listen"),
    ];
    for (toml, key) in cases {
        std::fs::write(dir.path().join("bad.toml"), toml).unwrap();
        let out = portcullis(dir.path(), &["check-config", "--config", "bad.toml"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{toml}: {stderr}");
        assert!(stderr.contains(key), "{key} not named in: {stderr}");
    }
    let missing = portcullis(dir.path(), &["check-config", "--config", "nope.toml"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("nope.toml"));

    // `serve` refuses a bad config before binding any port.
    let port = free_port();
    std::fs::write(
        dir.path().join("bad.toml"),
        format!("listen = '127.0.0.1:{port}'\nbogus = 1\n"),
    )
    .unwrap();
    let out = portcullis(dir.path(), &["serve", "--config", "bad.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(std::net::TcpListener::bind(("127.0.0.1", port)).is_ok());

    // Defaults and a good file are accepted.
    let out = portcullis(dir.path(), &["check-config"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("built-in defaults"));
}

#[test]
fn environment_overrides_use_double_underscores_and_unknown_keys_fail() {
    let dir = tempfile::tempdir().unwrap();
    let out = portcullis(dir.path(), &["check-config"])
        .env("PORTCULLIS_LISTEN", "127.0.0.1:9999")
        .env("PORTCULLIS_SESSION__IDLE_TIMEOUT", "2h")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("listen 127.0.0.1:9999"));
    let out = portcullis(dir.path(), &["check-config"])
        .env("PORTCULLIS_SESION__IDLE_TIMEOUT", "2h")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("PORTCULLIS_SESION__IDLE_TIMEOUT: unknown key; did you mean \"session\"?"),
        "{stderr}"
    );
}

/// Kubernetes gives every pod in a namespace with a Service named `portcullis` its service links,
/// and wrappers set variables of their own: neither is configuration. A misspelt key still fails.
#[test]
fn kubernetes_service_links_and_wrapper_variables_are_not_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let out = portcullis(dir.path(), &["check-config"])
        .env("PORTCULLIS_PORT", "tcp://10.0.0.1:4180")
        .env("PORTCULLIS_PORT_4180_TCP", "tcp://10.0.0.1:4180")
        .env("PORTCULLIS_PORT_4180_TCP_ADDR", "10.0.0.1")
        .env("PORTCULLIS_PORT_4180_TCP_PORT", "4180")
        .env("PORTCULLIS_PORT_4180_TCP_PROTO", "tcp")
        .env("PORTCULLIS_SERVICE_HOST", "10.0.0.1")
        .env("PORTCULLIS_SERVICE_PORT", "4180")
        .env("PORTCULLIS_SERVICE_PORT_HTTP", "4180")
        .env("PORTCULLIS_BIN", "/usr/local/bin/portcullis")
        .env("PORTCULLIS_LISTEN", "127.0.0.1:9998")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("listen 127.0.0.1:9998"));
    let out = portcullis(dir.path(), &["check-config"])
        .env("PORTCULLIS_LISTN", "127.0.0.1:9998")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("PORTCULLIS_LISTN: unknown key; did you mean \"listen\"?"),
        "{stderr}"
    );
}

/// A running binary with its setup link, and its stderr lines after that.
struct Served {
    child: Child,
    base: String,
    setup_link: String,
    stderr: std::sync::mpsc::Receiver<String>,
}

fn serve(dir: &std::path::Path, extra: &str) -> Served {
    serve_logging(dir, "warn", extra)
}

fn serve_logging(dir: &std::path::Path, level: &str, extra: &str) -> Served {
    let port = free_port();
    std::fs::write(
        dir.join("portcullis.toml"),
        format!("listen = '127.0.0.1:{port}'\nlog = {{ level = '{level}' }}\nshutdown_grace = '10s'\n{extra}"),
    )
    .unwrap();
    let mut child = portcullis(dir, &["serve"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let setup_link = loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the binary prints a setup link");
        if line.contains("/.portcullis/setup?token=") {
            break line.trim().to_owned();
        }
    };
    Served {
        child,
        base: format!("http://127.0.0.1:{port}"),
        setup_link,
        stderr: rx,
    }
}

/// A configuration with one app, `app`, in front of `upstream`.
fn one_app(upstream: &str) -> String {
    format!("[[apps]]\nname = 'app'\nupstream = '{upstream}'\n")
}

/// A client that shows redirects (and the cookies set with them) instead of following them.
fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn admin_cookie(http: &reqwest::Client, served: &Served) -> String {
    let form = http.get(&served.setup_link).send().await.unwrap();
    let csrf_cookie = common::set_cookie_value(&form, "_portcullis_csrf").unwrap();
    let csrf = common::hidden_field(&form.text().await.unwrap(), "csrf");
    let token = served.setup_link.split("token=").nth(1).unwrap();
    let response = http
        .post(format!("{}/.portcullis/setup", served.base))
        .header(COOKIE, format!("_portcullis_csrf={csrf_cookie}"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("token", token),
            ("username", "admin"),
            ("password", common::ADMIN_PASSWORD),
            ("confirm", common::ADMIN_PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    common::set_cookie_value(&response, "_portcullis").unwrap()
}

fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap()
}

fn terminate(child: &Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gib_upload_streams_with_flat_memory() {
    let upstream = common::upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut served = serve(dir.path(), &one_app(&upstream.url()));
    let http = no_redirects();
    let cookie = admin_cookie(&http, &served).await;
    let before = peak_rss_kib(served.child.id());
    const CHUNK: usize = 1 << 20;
    let stream = futures_util::stream::iter(
        (0..1024).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![1u8; CHUNK]))),
    );
    let response = http
        .post(format!("{}/upload", served.base))
        .header(COOKIE, format!("_portcullis={cookie}"))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.unwrap(), (1024 * CHUNK).to_string());
    let after = peak_rss_kib(served.child.id());
    // Buffering even a tenth of the upload would add 100 MiB.
    assert!(
        after < before + 64 * 1024,
        "peak RSS grew from {before} KiB to {after} KiB during a 1 GiB upload"
    );
    terminate(&served.child);
    assert!(served.child.wait().unwrap().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_in_flight_streams_finish() {
    let upstream = common::upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut served = serve(dir.path(), &one_app(&upstream.url()));
    let http = no_redirects();
    let cookie = admin_cookie(&http, &served).await;
    // 10 chunks, 200 ms apart: still streaming when the signal arrives.
    let response = http
        .get(format!("{}/trickle/10", served.base))
        .header(COOKIE, format!("_portcullis={cookie}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let started = Instant::now();
    terminate(&served.child);
    let body = response.text().await.unwrap();
    assert_eq!(
        body.lines().count(),
        10,
        "the in-flight stream completes: {body}"
    );
    let status = tokio::task::spawn_blocking(move || served.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "exits once the stream is done"
    );
    // New connections are refused after shutdown.
    assert!(
        http.get(format!("{}/ping", served.base))
            .send()
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_lines_are_written_promptly() {
    let upstream = common::upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let served = serve_logging(dir.path(), "info", &one_app(&upstream.url()));
    let http = no_redirects();
    let cookie = admin_cookie(&http, &served).await;
    let response = http
        .get(format!("{}/logged/once", served.base))
        .header(COOKIE, format!("_portcullis={cookie}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // Lines are written in batches, but within a fraction of a second (with margin for CI).
    let deadline = Instant::now() + Duration::from_secs(2);
    let line = loop {
        let line = served
            .stderr
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the access log line is written within 2 s");
        if line.contains("portcullis::access") && line.contains("/logged/once") {
            break line;
        }
    };
    for expected in ["status=200", "user=\"admin\"", "app=app"] {
        assert!(line.contains(expected), "{expected} missing from {line}");
    }
    let mut child = served.child;
    terminate(&child);
    assert!(child.wait().unwrap().success());
}

/// Runs a CLI command in `dir` (sharing the server's portcullis.toml), with `stdin` as input.
fn cli(dir: &std::path::Path, args: &[&str], stdin: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = portcullis(dir, args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_manage_users_and_keys_from_the_cli_while_serving() {
    let upstream = common::upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut served = serve(dir.path(), &one_app(&upstream.url()));

    let added = cli(
        dir.path(),
        &[
            "user",
            "add",
            "deploy-bot",
            "--email",
            "bot@example.com",
            "--password-stdin",
        ],
        "bot-password-1\n",
    );
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );

    // Connected MCP clients: listed (none yet), and a grant that is not the user's is refused.
    let grants = cli(dir.path(), &["user", "grants", "deploy-bot"], "");
    assert!(
        grants.status.success(),
        "{}",
        String::from_utf8_lossy(&grants.stderr)
    );
    let listed = String::from_utf8(grants.stdout).unwrap();
    assert_eq!(listed.lines().count(), 1, "only the header: {listed}");
    assert!(listed.contains("last used (UTC)"));
    let missing = cli(
        dir.path(),
        &["user", "revoke-grant", "deploy-bot", "nope"],
        "",
    );
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("has no connected client"));
    let group = cli(
        dir.path(),
        &["user", "add-to-group", "deploy-bot", "deployers"],
        "",
    );
    assert!(group.status.success());
    let created = cli(
        dir.path(),
        &[
            "key",
            "create",
            "--user",
            "deploy-bot",
            "--name",
            "pipeline",
            "--app",
            "app",
        ],
        "",
    );
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let key = String::from_utf8(created.stdout).unwrap().trim().to_owned();
    assert!(key.starts_with("pcs_"), "{key}");
    let typo = cli(
        dir.path(),
        &[
            "key",
            "create",
            "--user",
            "deploy-bot",
            "--name",
            "x",
            "--app",
            "ap",
        ],
        "",
    );
    assert!(
        !typo.status.success(),
        "a key for an app that does not exist"
    );
    let said = String::from_utf8_lossy(&typo.stderr);
    assert!(
        said.contains("no app is called \"ap\"; a key can be limited to: app, portcullis-api"),
        "{said}"
    );
    let listed =
        String::from_utf8(cli(dir.path(), &["key", "list", "--user", "deploy-bot"], "").stdout)
            .unwrap();
    assert!(
        listed.contains("expires (UTC)") && listed.contains("last used (UTC)"),
        "{listed}"
    );
    assert!(
        listed.contains("pipeline") && listed.contains("never"),
        "{listed}"
    );
    let listed = String::from_utf8(cli(dir.path(), &["user", "list"], "").stdout).unwrap();
    assert!(
        listed.contains("deploy-bot") && listed.contains("deployers"),
        "{listed}"
    );

    let http = reqwest::Client::new();
    let call = || {
        http.get(format!("{}/deploy", served.base))
            .header("x-api-key", &key)
            .send()
    };
    let mut works = false;
    for _ in 0..20 {
        if call().await.unwrap().status() == StatusCode::OK {
            works = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        works,
        "the key made by the CLI works on the running server within a second"
    );

    let disabled = cli(dir.path(), &["user", "disable", "deploy-bot"], "");
    assert!(disabled.status.success());
    let started = Instant::now();
    let mut refused = false;
    while started.elapsed() < Duration::from_secs(1) {
        if call().await.unwrap().status() == StatusCode::UNAUTHORIZED {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        refused,
        "disabling in another process stops the key within one second"
    );

    // Passwords: the policy's refusal says why; a reset link is printed alone on stdout.
    let weak = cli(dir.path(), &["user", "passwd", "deploy-bot"], "password1\n");
    assert!(!weak.status.success());
    assert!(String::from_utf8_lossy(&weak.stderr).contains("most common"));
    let set = cli(
        dir.path(),
        &["user", "passwd", "deploy-bot", "--must-change"],
        "a new bot phrase\n",
    );
    assert!(
        set.status.success(),
        "{}",
        String::from_utf8_lossy(&set.stderr)
    );
    assert!(String::from_utf8_lossy(&set.stderr).contains("at their next sign-in"));
    let link = cli(dir.path(), &["user", "reset-link", "deploy-bot"], "");
    assert!(
        link.status.success(),
        "{}",
        String::from_utf8_lossy(&link.stderr)
    );
    let link = String::from_utf8(link.stdout).unwrap().trim().to_owned();
    let path = &link[link.find("/.portcullis/reset?token=").expect(&link)..];
    let form = http
        .get(format!("{}{path}", served.base))
        .send()
        .await
        .unwrap();
    assert_eq!(
        form.status(),
        StatusCode::OK,
        "the running server knows the CLI's link"
    );
    let too_long = cli(
        dir.path(),
        &["user", "reset-link", "deploy-bot", "--expires-in", "30d"],
        "",
    );
    assert!(String::from_utf8_lossy(&too_long.stderr).contains("5 minutes to 7 days"));
    let nobody = cli(dir.path(), &["user", "reset-link", "nobody"], "");
    assert!(!nobody.status.success());

    // Resetting second factors (a lost phone) needs --yes, and says what it removed.
    let unconfirmed = cli(dir.path(), &["user", "reset-factors", "deploy-bot"], "");
    assert!(!unconfirmed.status.success());
    assert!(String::from_utf8_lossy(&unconfirmed.stderr).contains("--yes"));
    let reset = cli(
        dir.path(),
        &["user", "reset-factors", "deploy-bot", "--yes"],
        "",
    );
    assert!(
        String::from_utf8_lossy(&reset.stderr).contains("removed 0 second factor(s) of deploy-bot"),
        "{}",
        String::from_utf8_lossy(&reset.stderr)
    );
    let nobody = cli(
        dir.path(),
        &["user", "reset-factors", "nobody", "--yes"],
        "",
    );
    assert!(!nobody.status.success());
    assert!(String::from_utf8_lossy(&nobody.stderr).contains("nobody"));

    // Editing and deleting: a bad email is named; deleting needs --yes.
    let bad = cli(
        dir.path(),
        &["user", "edit", "deploy-bot", "--email", "nope"],
        "",
    );
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--email"));
    let edited = cli(
        dir.path(),
        &[
            "user",
            "edit",
            "deploy-bot",
            "--username",
            "ci-bot",
            "--name",
            "CI bot",
        ],
        "",
    );
    assert!(
        edited.status.success(),
        "{}",
        String::from_utf8_lossy(&edited.stderr)
    );
    let listed = String::from_utf8(cli(dir.path(), &["user", "list"], "").stdout).unwrap();
    assert!(
        listed.contains("ci-bot") && !listed.contains("deploy-bot"),
        "{listed}"
    );
    let unconfirmed = cli(dir.path(), &["user", "delete", "ci-bot"], "");
    assert!(!unconfirmed.status.success());
    assert!(String::from_utf8_lossy(&unconfirmed.stderr).contains("--yes"));
    let deleted = cli(dir.path(), &["user", "delete", "ci-bot", "--yes"], "");
    assert!(
        deleted.status.success(),
        "{}",
        String::from_utf8_lossy(&deleted.stderr)
    );
    let listed = String::from_utf8(cli(dir.path(), &["user", "list"], "").stdout).unwrap();
    assert!(!listed.contains("ci-bot"), "{listed}");

    let unknown = cli(dir.path(), &["user", "disable", "nobody"], "");
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no user is called \"nobody\""));

    terminate(&served.child);
    assert!(served.child.wait().unwrap().success());
}
