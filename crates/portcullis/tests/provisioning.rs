//! Provisioning never loses a user: a webhook sink that is down during 1,000 sign-ups gets every
//! one of them once it is back, even though the Portcullis process is killed (SIGKILL) in the
//! middle of delivering; dead letters after the give-up age (an injected clock, no waiting) are
//! delivered after `portcullis outbox retry`; signatures verify with the Standard Webhooks
//! reference library.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure report

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::routing::post;
use common::Harness;
use common::idp::free_port;
use portcullis_core::{ManualClock, Role, Timestamp};
use serde_json::{Value, json};
use tokio::sync::Mutex;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

#[derive(Default)]
struct Received {
    up: AtomicBool,
    delay_ms: AtomicU64,
    users: Mutex<HashSet<String>>,
    /// Every delivery as (webhook-id, webhook-timestamp, webhook-signature, body).
    raw: Mutex<Vec<(String, String, String, String)>>,
}

/// A webhook receiver that can be down (503) or slow.
async fn receiver() -> (String, Arc<Received>) {
    async fn receive(
        State(r): State<Arc<Received>>,
        headers: http::HeaderMap,
        body: String,
    ) -> http::StatusCode {
        if !r.up.load(Ordering::SeqCst) {
            return http::StatusCode::SERVICE_UNAVAILABLE;
        }
        tokio::time::sleep(Duration::from_millis(r.delay_ms.load(Ordering::SeqCst))).await;
        let text = |name: &str| headers[name].to_str().unwrap().to_owned();
        let event: Value = serde_json::from_str(&body).unwrap();
        if let Some(name) = event["data"]["user"]["username"].as_str() {
            r.users.lock().await.insert(name.to_owned());
        }
        r.raw.lock().await.push((
            text("webhook-id"),
            text("webhook-timestamp"),
            text("webhook-signature"),
            body,
        ));
        http::StatusCode::NO_CONTENT
    }
    let received = Arc::new(Received::default());
    let app = Router::new()
        .route("/hook", post(receive))
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, received)
}

fn sink_toml(url: &str) -> String {
    format!(
        "[[sinks]]\nid = 'hook'\nkind = 'webhook'\nurl = '{url}'\nsecret = '{SECRET}'\n\
         [provisioning]\nretry_base = '1s'\nretry_max = '2s'\nconcurrency = 8\nlease = '3s'\n"
    )
}

async fn wait_for(what: &str, timeout: Duration, mut done: impl AsyncFnMut() -> bool) {
    let started = Instant::now();
    while !done().await {
        assert!(started.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn cli(config: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn serve(config: &Path) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["serve", "--config"])
        .arg(config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// Starts `portcullis serve` with the configuration `write_config(port)` writes, on a free port,
/// and waits until it answers. A bare connect is not proof: the port was free when picked, but
/// another test's server (an upstream that answers 200 to anything) may take it before this one
/// binds; then this one exits, and it is started again on another port.
async fn serve_on_a_free_port(
    config: &Path,
    write_config: impl Fn(u16),
) -> (tokio::process::Child, u16) {
    let http = reqwest::Client::new();
    for _ in 0..5 {
        let port = free_port();
        write_config(port);
        let mut server = serve(config);
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(60) {
            if server.try_wait().ok().flatten().is_some() {
                break; // lost the port to another test
            }
            let ping = http
                .get(format!("http://127.0.0.1:{port}/ping"))
                .send()
                .await;
            if let Ok(response) = ping
                && response.text().await.is_ok_and(|body| body == "OK")
            {
                return (server, port);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    panic!("portcullis serve did not start on any of five free ports");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_outage_and_a_killed_process_lose_no_user() {
    let (url, received) = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("portcullis.toml");
    let write_config = |port: u16| {
        std::fs::write(
            &config,
            format!(
                "listen = '127.0.0.1:{port}'\ndata_dir = '{}'\n{}",
                dir.path().join("data").display(),
                sink_toml(&url)
            ),
        )
        .unwrap();
    };
    write_config(free_port());
    cli(&config, &["user", "add", "operator", "--role", "admin"]);
    let key = cli(
        &config,
        &[
            "key",
            "create",
            "--user",
            "operator",
            "--name",
            "load",
            "--app",
            "portcullis-api",
        ],
    )
    .trim()
    .to_owned();

    let (mut server, port) = serve_on_a_free_port(&config, write_config).await;
    // 1,000 sign-ups while the sink is down.
    let http = reqwest::Client::new();
    let api = format!("http://127.0.0.1:{port}/api/v1/users");
    let names: Vec<String> = (0..1000).map(|i| format!("signup{i:04}")).collect();
    for chunk in names.chunks(25) {
        let calls = chunk.iter().map(|name| {
            http.post(&api)
                .header("x-api-key", &key)
                .json(&json!({"username": name, "email": format!("{name}@example.com")}))
                .send()
        });
        for response in futures_util::future::join_all(calls).await {
            assert_eq!(response.unwrap().status(), reqwest::StatusCode::CREATED);
        }
    }
    assert!(received.users.lock().await.is_empty(), "the sink was down");

    // The sink comes back, slowly; the process is killed in the middle of delivering.
    received.delay_ms.store(5, Ordering::SeqCst);
    received.up.store(true, Ordering::SeqCst);
    wait_for(
        "the first deliveries",
        Duration::from_secs(30),
        async || received.users.lock().await.len() >= 100,
    )
    .await;
    server.start_kill().unwrap();
    server.wait().await.unwrap();
    let at_kill = received.users.lock().await.len();
    assert!(at_kill < 1001, "killed mid-delivery ({at_kill} delivered)");

    let _server = serve(&config);
    received.delay_ms.store(0, Ordering::SeqCst);
    wait_for(
        "every user at the sink",
        Duration::from_secs(60),
        async || received.users.lock().await.len() >= 1001,
    )
    .await;
    let users = received.users.lock().await;
    for name in &names {
        assert!(users.contains(name), "{name} was lost");
    }
    assert!(users.contains("operator"));
    drop(users);

    // Retries carry the same idempotency key, so a receiver can drop the duplicates the kill
    // may have caused.
    let raw = received.raw.lock().await;
    let ids: HashSet<&String> = raw.iter().map(|(id, ..)| id).collect();
    assert!(ids.len() >= 1001);
    let (id, timestamp, signature, body) = raw[0].clone();
    drop(raw);
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/oidc-provider/verify-webhook.mjs");
    let verify = |body: String| {
        let out = std::process::Command::new("node")
            .arg(&script)
            .args([SECRET, &id, &timestamp, &signature, &body])
            .output()
            .expect("node (scripts/install-test-deps)");
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let verified = verify(body.clone());
    assert_eq!(verified["ok"], true, "{verified}");
    assert!(
        verified["payload"]["type"]
            .as_str()
            .unwrap()
            .starts_with("user.")
    );
    let tampered = verify(body.replace("example.com", "evil.example"));
    assert_eq!(tampered["ok"], false, "a changed body fails verification");
}

#[tokio::test]
async fn dead_letters_after_the_give_up_age_then_retry_from_the_cli() {
    let (url, received) = receiver().await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let clock = ManualClock::at(Timestamp(now));
    let h = Harness::start_with_clock(&sink_toml(&url), Arc::new(clock.clone())).await;
    let store = h.running.state.store.clone();
    h.add_user("zoe", Some("zoe@example.com"), None, Role::User, &["ops"])
        .await;
    wait_for("a failed attempt", Duration::from_secs(60), async || {
        store
            .deliveries_in("pending", 10)
            .await
            .unwrap()
            .iter()
            .any(|d| d.attempts > 0)
    })
    .await;

    // A sink that is down touches neither readiness nor sign-in.
    let ready = h.http.get(h.url("/ready")).send().await.unwrap();
    assert_eq!(ready.status(), reqwest::StatusCode::OK);
    assert!(h.sign_in("zoe", "user-password-1").await.is_ok());

    clock.advance(Duration::from_secs(5 * 24 * 3600));
    wait_for("a dead letter", Duration::from_secs(60), async || {
        store.outbox_stats().await.unwrap().dead > 0
    })
    .await;
    // The gauge follows the store on the provisioner's next pass, a moment later.
    wait_for(
        "the dead-letter gauge",
        Duration::from_secs(10),
        async || {
            let metrics = h
                .http
                .get(h.url("/metrics"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            metrics.lines().any(|l| {
                l.starts_with("portcullis_provisioning_dead_letters ") && !l.ends_with(" 0")
            })
        },
    )
    .await;
    // The admin UI shows the dead letter, on the provisioning page and on zoe's page.
    let admin = h.setup_admin().await;
    for (page, shows) in [
        ("/.portcullis/admin/outbox", ">zoe<"),
        ("/.portcullis/admin/users/zoe", ">dead<"),
    ] {
        let html = h
            .http
            .get(h.url(page))
            .header("cookie", format!("_portcullis={admin}"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            html.contains("503") && html.contains(shows),
            "{page}: {html}"
        );
    }
    let config = h.dir.path().join("portcullis.toml");
    let listed = cli(&config, &["outbox", "list"]);
    assert!(
        listed.contains("hook") && listed.contains("503"),
        "{listed}"
    );

    received.up.store(true, Ordering::SeqCst);
    cli(&config, &["outbox", "retry", "--all"]);
    wait_for("zoe at the sink", Duration::from_secs(60), async || {
        received.users.lock().await.contains("zoe")
    })
    .await;
    wait_for("no dead letters", Duration::from_secs(60), async || {
        store.outbox_stats().await.unwrap().dead == 0
    })
    .await;
    h.running.shutdown().await;
}

/// A stand-in for Open WebUI's admin API as 0.12.4 has it (the real one needs ~7 GB: see
/// scripts/interop-openwebui and docs/apps/open-webui.md): `auths/add` (400 for an email it
/// already has), `users/?query=`, `users/{id}/update`, `users/{id}/sessions/revoke`.
async fn openwebui_stand_in() -> (String, Arc<Mutex<Vec<Value>>>) {
    type Users = Arc<Mutex<Vec<Value>>>;
    const ADMIN: &str = "Bearer owui-admin-key";
    fn authorised(headers: &http::HeaderMap) -> bool {
        headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(ADMIN)
    }
    async fn add(
        State(users): State<Users>,
        headers: http::HeaderMap,
        axum::Json(body): axum::Json<Value>,
    ) -> (http::StatusCode, String) {
        if !authorised(&headers) {
            return (http::StatusCode::UNAUTHORIZED, "{}".into());
        }
        let mut users = users.lock().await;
        if users.iter().any(|u| u["email"] == body["email"]) {
            return (
                http::StatusCode::BAD_REQUEST,
                "{\"detail\":\"Uh-oh! This email is already registered.\"}".into(),
            );
        }
        let mut user = body;
        user["id"] = json!(format!("owui-{}", users.len()));
        users.push(user);
        (
            http::StatusCode::OK,
            "{\"token\":\"secret-token-of-the-new-user\"}".into(),
        )
    }
    async fn search(
        State(users): State<Users>,
        headers: http::HeaderMap,
        axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
    ) -> (http::StatusCode, axum::Json<Value>) {
        if !authorised(&headers) {
            return (http::StatusCode::UNAUTHORIZED, axum::Json(json!({})));
        }
        let query = q.get("query").cloned().unwrap_or_default();
        let found: Vec<Value> = users
            .lock()
            .await
            .iter()
            .filter(|u| u["email"].as_str().is_some_and(|e| e.contains(&query)))
            .cloned()
            .collect();
        (
            http::StatusCode::OK,
            axum::Json(json!({"users": found, "total": found.len()})),
        )
    }
    async fn update(
        State(users): State<Users>,
        headers: http::HeaderMap,
        axum::extract::Path((id, action)): axum::extract::Path<(String, String)>,
        body: String,
    ) -> http::StatusCode {
        if !authorised(&headers) {
            return http::StatusCode::UNAUTHORIZED;
        }
        let mut users = users.lock().await;
        let Some(user) = users.iter_mut().find(|u| u["id"] == id.as_str()) else {
            return http::StatusCode::NOT_FOUND;
        };
        match action.as_str() {
            "update" => {
                // Open WebUI's UserUpdateForm requires name, email and profile_image_url.
                let change: Value = serde_json::from_str(&body).unwrap();
                if ["name", "email", "profile_image_url"]
                    .iter()
                    .any(|field| !change[field].is_string())
                {
                    return http::StatusCode::UNPROCESSABLE_ENTITY;
                }
                for field in ["name", "email", "profile_image_url", "role"] {
                    user[field] = change[field].clone();
                }
            }
            "revoke" => user["sessions_revoked"] = json!(true),
            _ => return http::StatusCode::NOT_FOUND,
        }
        http::StatusCode::OK
    }
    let created: Users = Arc::new(Mutex::new(Vec::new()));
    let app = Router::new()
        .route("/api/v1/auths/add", post(add))
        .route("/api/v1/users/", axum::routing::get(search))
        .route("/api/v1/users/{id}/{action}", post(update))
        .route(
            "/api/v1/users/{id}/sessions/revoke",
            post(
                |s: State<Users>,
                 h: http::HeaderMap,
                 axum::extract::Path(id): axum::extract::Path<String>| async move {
                    update(
                        s,
                        h,
                        axum::extract::Path((id, "revoke".to_owned())),
                        String::new(),
                    )
                    .await
                },
            ),
        )
        .with_state(created.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, created)
}

#[tokio::test]
async fn the_openwebui_sink_creates_users_with_their_role() {
    let (url, created) = openwebui_stand_in().await;
    let h = Harness::start(&format!(
        "[[apps]]\nname = 'chat'\nupstream = '{{upstream}}'\naccess = {{ groups = ['staff'] }}\n\
         [[sinks]]\nid = 'owui'\nkind = 'openwebui'\nurl = '{url}'\nadmin_token = 'owui-admin-key'\napp = 'chat'\n"
    ))
    .await;
    // Already in Open WebUI (as a user, named with the GUID an earlier oauth2-proxy setup sent):
    // "already registered" updates the role instead, and repairs the name.
    created.lock().await.push(json!({
        "id": "owui-old", "email": "old@example.com", "role": "user",
        "name": "3f2504e0-4f89-11d3-9a0c-0305e82c3301", "profile_image_url": "/user.png"
    }));
    h.add_user(
        "ann",
        Some("ann@example.com"),
        Some("Ann A"),
        Role::Admin,
        &["staff"],
    )
    .await;
    h.add_user(
        "old",
        Some("old@example.com"),
        Some("Olga Old"),
        Role::Admin,
        &["staff"],
    )
    .await;
    h.add_user(
        "pat",
        Some("pat@example.com"),
        None,
        Role::Pending,
        &["staff"],
    )
    .await;
    h.add_user("out", Some("out@example.com"), None, Role::User, &["other"])
        .await;
    let store = h.running.state.store.clone();
    let settled = async |names: &[&str]| {
        wait_for(
            "every user's delivery settled",
            Duration::from_secs(60),
            async || {
                for name in names {
                    let status = store
                        .deliveries_of_user(&common::uuid_like(name))
                        .await
                        .unwrap();
                    if status.is_empty() || status.iter().any(|d| d.state != "delivered") {
                        return false;
                    }
                }
                true
            },
        )
        .await;
    };
    settled(&["ann", "old", "pat", "out"]).await;
    let role_of = async |email: &str| {
        created
            .lock()
            .await
            .iter()
            .find(|u| u["email"] == email)
            .map(|u| u["role"].as_str().unwrap_or("").to_owned())
    };
    {
        let users = created.lock().await;
        let emails: Vec<&str> = users.iter().filter_map(|u| u["email"].as_str()).collect();
        assert_eq!(
            emails,
            ["old@example.com", "ann@example.com"],
            "pending and not-admitted users are not created"
        );
        let ann = &users[1];
        assert_eq!(
            (ann["name"].as_str(), ann["role"].as_str()),
            (Some("Ann A"), Some("admin"))
        );
        assert!(
            ann["password"].as_str().unwrap().len() >= 32,
            "a random password nobody knows"
        );
    }
    assert_eq!(
        role_of("old@example.com").await.as_deref(),
        Some("admin"),
        "the role follows"
    );
    {
        let users = created.lock().await;
        let old = users
            .iter()
            .find(|u| u["email"] == "old@example.com")
            .unwrap();
        assert_eq!(old["name"], "Olga Old", "the GUID name is repaired");
        assert_eq!(old["profile_image_url"], "/user.png", "the picture is kept");
    }

    // Disabled here: pending there, with their Open WebUI sessions revoked.
    let actor = portcullis_auth::audit::Actor::new("test", None);
    h.running
        .state
        .directory
        .set_status("ann", portcullis_core::user::UserStatus::Disabled, &actor)
        .await
        .unwrap();
    wait_for(
        "ann pending in Open WebUI",
        Duration::from_secs(60),
        async || role_of("ann@example.com").await.as_deref() == Some("pending"),
    )
    .await;
    wait_for(
        "ann's Open WebUI sessions revoked",
        Duration::from_secs(60),
        async || {
            created
                .lock()
                .await
                .iter()
                .any(|u| u["email"] == "ann@example.com" && u["sessions_revoked"] == true)
        },
    )
    .await;
    h.running.shutdown().await;
}

#[tokio::test]
async fn a_graceful_shutdown_gives_back_the_claims_of_deliveries_it_cuts_off() {
    // A sink that takes the request and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let arrived = Arc::new(AtomicU64::new(0));
    let counting = arrived.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            counting.fetch_add(1, Ordering::SeqCst);
            held.push(stream);
        }
    });
    let h = Harness::start(&format!(
        "[[sinks]]\nid = 'hook'\nkind = 'webhook'\nurl = '{url}'\nsecret = '{SECRET}'\n\
         [provisioning]\nlease = '10m'\n"
    ))
    .await;
    h.add_user("hana", Some("hana@example.com"), None, Role::User, &[])
        .await;
    wait_for(
        "the delivery to reach the sink",
        Duration::from_secs(10),
        async || arrived.load(Ordering::SeqCst) > 0,
    )
    .await;
    let store = h.running.state.store.clone();
    h.running.shutdown().await;

    // Due again now, not in ten minutes: another replica (here, a claim by hand) takes it.
    let now = Timestamp(
        i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs(),
        )
        .unwrap()
            + 1,
    );
    let due = store
        .claim_due_deliveries(now, Timestamp(now.0 + 60), 10)
        .await
        .unwrap();
    assert_eq!(due.len(), 1, "{due:?}");
    assert_eq!(due[0].kind, "user_created");
}
