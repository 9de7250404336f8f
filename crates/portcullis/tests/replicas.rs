//! Several Portcullis processes sharing one real PostgreSQL behave as one: sessions, revocations,
//! sign-ins split across replicas, signing-key rotation, the outbox with a replica killed, and a
//! database outage in the middle of traffic.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure report

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use common::idp::{Idp, Person, free_port};
use common::replicas::{PgCluster, Replica, TOKEN_KEY, within};
use common::{factors, set_cookie_value, sign_in_at};
use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION};
use tokio::sync::Mutex;

const PASSWORD: &str = "correct horse battery";

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The configuration every replica shares: one database, one token key, one public URL.
fn shared(pg: &PgCluster, upstream: &str, public_url: &str, extra: &str) -> String {
    format!(
        "public_url = \"{public_url}\"\ntoken_key = \"{TOKEN_KEY}\"\n{extra}\n\
         [store]\nurl = \"{}\"\n\
         [[apps]]\nname = \"app\"\nupstream = \"{upstream}\"\n",
        pg.url
    )
}

async fn status_with(http: &reqwest::Client, base: &str, cookie: &str) -> StatusCode {
    http.get(format!("{base}/hello"))
        .header(COOKIE, format!("_portcullis={cookie}"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn sessions_revocations_and_keys_hold_across_replicas() {
    let pg = PgCluster::start();
    let upstream = common::upstream::start().await;
    let port_a = free_port();
    let config = shared(
        &pg,
        &upstream.url(),
        &format!("http://127.0.0.1:{port_a}"),
        "",
    );
    let a = Replica::start_on(port_a, &config).await;
    let b = Replica::start(&config).await;
    a.cli(
        &[
            "user",
            "add",
            "alice",
            "--email",
            "alice@example.com",
            "--password-stdin",
        ],
        Some(&format!("{PASSWORD}\n")),
    );
    let http = http();

    // A session made on A is valid on B (B has never seen it: it reads it from the database).
    let session = sign_in_at(&http, &a.base, "alice", PASSWORD).await.unwrap();
    assert_eq!(status_with(&http, &b.base, &session).await, StatusCode::OK);
    // Signing out on A is enforced on B within a second (B had it cached).
    let out = http
        .get(format!("{}/.portcullis/sign_out", a.base))
        .header(COOKIE, format!("_portcullis={session}"))
        .send()
        .await
        .unwrap();
    assert!(out.status().is_redirection());
    within("sign-out on A refused on B", Duration::from_secs(1), || {
        let http = http.clone();
        let (base, session) = (b.base.clone(), session.clone());
        async move { status_with(&http, &base, &session).await == StatusCode::UNAUTHORIZED }
    })
    .await;

    // Disabling the user (from the CLI, a third process) ends their sessions on both.
    let session = sign_in_at(&http, &b.base, "alice", PASSWORD).await.unwrap();
    assert_eq!(status_with(&http, &a.base, &session).await, StatusCode::OK);
    assert_eq!(status_with(&http, &b.base, &session).await, StatusCode::OK);
    a.cli(&["user", "disable", "alice"], None);
    for replica in [&a, &b] {
        within("disabled user refused", Duration::from_secs(1), || {
            let http = http.clone();
            let (base, session) = (replica.base.clone(), session.clone());
            async move { status_with(&http, &base, &session).await == StatusCode::UNAUTHORIZED }
        })
        .await;
    }
    a.cli(&["user", "enable", "alice"], None);

    // An API key revoked through A stops working on B within a second.
    let key = a
        .cli(&["key", "create", "--user", "alice", "--name", "ci"], None)
        .trim()
        .to_owned();
    let with_key = |base: String| {
        let (http, key) = (http.clone(), key.clone());
        async move {
            http.get(format!("{base}/hello"))
                .header("x-api-key", key)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    within("a new key works on B", Duration::from_secs(1), || {
        let f = with_key(b.base.clone());
        async move { f.await == StatusCode::OK }
    })
    .await;
    let keys = a.cli(&["key", "list", "--user", "alice"], None);
    let id = keys
        .lines()
        .find(|l| l.contains("ci"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_owned();
    a.cli(&["key", "revoke", &id], None);
    within("revoked key refused on B", Duration::from_secs(1), || {
        let f = with_key(b.base.clone());
        async move { f.await == StatusCode::UNAUTHORIZED }
    })
    .await;

    // Signing keys are shared, and a rotation is published by both.
    let kids = |base: String| {
        let http = http.clone();
        async move {
            let jwks: serde_json::Value = http
                .get(format!("{base}/.portcullis/jwks.json"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let mut kids: Vec<String> = jwks["keys"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| k["kid"].as_str().unwrap().to_owned())
                .collect();
            kids.sort();
            kids
        }
    };
    assert_eq!(kids(a.base.clone()).await, kids(b.base.clone()).await);
    let before = kids(a.base.clone()).await;
    a.cli(&["keys", "rotate"], None);
    for replica in [&a, &b] {
        within(
            "the rotated key is published",
            Duration::from_secs(1),
            || {
                let f = kids(replica.base.clone());
                let before = before.clone();
                async move { f.await.len() > before.len() }
            },
        )
        .await;
    }
    assert_eq!(kids(a.base.clone()).await, kids(b.base.clone()).await);
}

/// A sign-in through the real provider that starts on A and finishes on B (the load balancer
/// sent the callback elsewhere), and the session then works on both.
#[tokio::test]
async fn a_provider_sign_in_may_start_on_one_replica_and_finish_on_another() {
    let pg = PgCluster::start();
    let upstream = common::upstream::start().await;
    let port_a = free_port();
    let public = format!("http://127.0.0.1:{port_a}");
    let idp = Idp::start(&public, &[]);
    let config = format!(
        "{}{}",
        shared(&pg, &upstream.url(), &public, ""),
        idp.provider_toml("")
    );
    let a = Replica::start_on(port_a, &config).await;
    let b = Replica::start(&config).await;
    let http = http();

    let start = http
        .get(format!("{}/.portcullis/start/idp?rd=/hello", a.base))
        .send()
        .await
        .unwrap();
    let flow = set_cookie_value(&start, "_portcullis_flow").unwrap();
    let authorize = start.headers()[LOCATION].to_str().unwrap().to_owned();
    let back = Person::default()
        .sign_in_at_provider(&authorize, "alice")
        .await;
    let path = &back[back.find("/oauth2/callback").unwrap()..];
    let done = http
        .get(format!("{}{path}", b.base))
        .header(COOKIE, format!("_portcullis_flow={flow}"))
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), StatusCode::FOUND, "{:?}", done.text().await);
    let session = set_cookie_value(&done, "_portcullis").unwrap();
    assert_eq!(status_with(&http, &a.base, &session).await, StatusCode::OK);
    assert_eq!(status_with(&http, &b.base, &session).await, StatusCode::OK);
}

/// Two replicas work one outbox: every user reaches the webhook, none twice in the normal case,
/// and when one replica is killed mid-delivery the other finishes its work.
#[tokio::test]
async fn replicas_share_the_outbox_and_a_killed_one_loses_nothing() {
    type Seen = Arc<Mutex<HashMap<String, usize>>>;
    let seen: Seen = Arc::default();
    let receiver = {
        let seen = seen.clone();
        axum::Router::new().route(
            "/hook",
            axum::routing::post(move |body: axum::body::Bytes| {
                let seen = seen.clone();
                async move {
                    // Slow enough that deliveries are in flight when a replica dies.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    let event: serde_json::Value = serde_json::from_slice(&body).unwrap();
                    let user = event["data"]["user"]["username"]
                        .as_str()
                        .unwrap_or("?")
                        .to_owned();
                    *seen.lock().await.entry(user).or_default() += 1;
                    StatusCode::NO_CONTENT
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, receiver).await.unwrap() });

    let pg = PgCluster::start();
    let upstream = common::upstream::start().await;
    let extra = "[provisioning]\nlease = \"5s\"\nconcurrency = 4\n";
    let sink = format!(
        "[[sinks]]\nid = \"hook\"\nkind = \"webhook\"\nurl = \"{hook}\"\nsecret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\n"
    );
    let port_a = free_port();
    let config = format!(
        "{}{sink}",
        shared(
            &pg,
            &upstream.url(),
            &format!("http://127.0.0.1:{port_a}"),
            extra
        )
    );
    let mut a = Replica::start_on(port_a, &config).await;
    let b = Replica::start(&config).await;

    const USERS: usize = 60;
    for i in 0..USERS {
        a.cli(&["user", "add", &format!("user{i:02}")], None);
    }
    // Let both replicas work a while, then kill A in the middle of it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.kill();
    within("every user delivered", Duration::from_secs(30), || {
        let seen = seen.clone();
        async move { seen.lock().await.len() == USERS }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await; // a lease's length: any re-delivery lands
    let seen = seen.lock().await;
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    // At-least-once: only what A had in flight when it died may arrive twice (at most its
    // concurrency), never the rest.
    assert!(twice.len() <= 4, "delivered more than once: {twice:?}");
    drop(b);
}

/// PostgreSQL goes away during traffic: sessions this replica knows keep working, new sign-ins
/// get a clear 503, /ready says not ready; when it is back, everything resumes without a restart.
#[tokio::test]
async fn a_database_outage_keeps_known_sessions_and_recovers_without_a_restart() {
    let pg = PgCluster::start();
    let upstream = common::upstream::start().await;
    let port = free_port();
    let config = shared(
        &pg,
        &upstream.url(),
        &format!("http://127.0.0.1:{port}"),
        "",
    );
    let a = Replica::start_on(port, &config).await;
    a.cli(
        &["user", "add", "alice", "--password-stdin"],
        Some(&format!("{PASSWORD}\n")),
    );
    let http = http();
    let session = sign_in_at(&http, &a.base, "alice", PASSWORD).await.unwrap();
    assert_eq!(status_with(&http, &a.base, &session).await, StatusCode::OK);
    // A change to alice just before the outage: her cached session takes the new identity in
    // place, so it never needs the database again (it used to be dropped and reloaded: every
    // request then waited 5 s for the pool and got 503).
    a.cli(&["user", "add-to-group", "alice", "g1"], None);
    tokio::time::sleep(Duration::from_secs(1)).await;

    pg.stop();
    // Once the heartbeat has seen the database gone (within about a second), nothing on the
    // request path waits on it: `/ready` then answers 503 at once instead of after a timeout.
    within("the outage is noticed", Duration::from_secs(10), || {
        let (http, base) = (http.clone(), a.base.clone());
        async move {
            let started = std::time::Instant::now();
            let ready = http.get(format!("{base}/ready")).send().await;
            ready.is_ok_and(|r| r.status() == StatusCode::SERVICE_UNAVAILABLE)
                && started.elapsed() < Duration::from_millis(200)
        }
    })
    .await;
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        let started = std::time::Instant::now();
        assert_eq!(
            status_with(&http, &a.base, &session).await,
            StatusCode::OK,
            "a known session keeps working"
        );
        slowest = slowest.max(started.elapsed());
    }
    assert!(
        slowest < Duration::from_secs(1),
        "a request waited on the store: {slowest:?}"
    );
    let mut refusals = Vec::new();
    for _ in 0..5 {
        let started = std::time::Instant::now();
        let refused = sign_in_at(&http, &a.base, "alice", PASSWORD)
            .await
            .expect_err("no sign-in without the directory");
        refusals.push(started.elapsed());
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        let page = refused.text().await.unwrap();
        assert!(page.contains("unavailable"), "{page}");
    }
    refusals.sort();
    let median = refusals[refusals.len() / 2];
    eprintln!("known sessions: slowest {slowest:?}; new sign-ins refused in {refusals:?}");
    assert!(
        median < Duration::from_millis(100),
        "new sign-ins must fail fast, not wait for the pool: {refusals:?}"
    );

    pg.restart();
    within("ready again", Duration::from_secs(15), || {
        let http = http.clone();
        let base = a.base.clone();
        async move {
            http.get(format!("{base}/ready"))
                .send()
                .await
                .is_ok_and(|r| r.status() == StatusCode::OK)
        }
    })
    .await;
    let again = sign_in_at(&http, &a.base, "alice", PASSWORD).await.unwrap();
    assert_eq!(status_with(&http, &a.base, &again).await, StatusCode::OK);
    assert_eq!(status_with(&http, &a.base, &session).await, StatusCode::OK);
}

/// A SQLite deployment moves to PostgreSQL with `portcullis copy-store`: every row of every table
/// arrives (users, memberships, sessions, keys, flows, audit, the change feed, signing keys, the
/// outbox and its pending deliveries, second factors, OAuth clients, codes, grants and refresh
/// tokens, sign-in failure counts), and Portcullis on PostgreSQL carries on with them.
#[tokio::test]
async fn a_sqlite_deployment_moves_to_postgres_with_every_row() {
    let idp = common::fake_idp::FakeIdp::start().await;
    let upstream = common::upstream::start().await;
    // A sink nobody answers: its deliveries stay pending, and must survive the move.
    let config = format!(
        "public_url = \"http://127.0.0.1:{{port}}\"\n{}\
         [[apps]]\nname = \"app\"\nupstream = \"{}\"\n\
         [[sinks]]\nid = \"hook\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:9/hook\"\nsecret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\n",
        idp.provider_toml(),
        upstream.url()
    );
    let mut old = Replica::start(&config).await;
    old.cli(
        &[
            "user",
            "add",
            "alice",
            "--email",
            "alice@example.com",
            "--name",
            "Alice",
            "--password-stdin",
        ],
        Some(&format!("{PASSWORD}\n")),
    );
    old.cli(&["user", "add", "bob"], None);
    old.cli(&["user", "add-to-group", "alice", "staff"], None);
    old.cli(&["user", "disable", "bob"], None);
    old.cli(&["key", "create", "--user", "alice", "--name", "ci"], None);
    old.cli(&["keys", "rotate"], None);
    old.cli(&["user", "reset-link", "alice"], None);
    let http = http();
    let session = sign_in_at(&http, &old.base, "alice", PASSWORD)
        .await
        .unwrap();
    // An authenticator app with its recovery codes; the session it stepped up is the one kept.
    let enrolled = factors::enrol(&http, &old.base, &session, now()).await;
    let session = enrolled.cookie.clone();
    http.get(format!("{}/.portcullis/start/fake?rd=/", old.base))
        .send()
        .await
        .unwrap(); // an unfinished provider sign-in
    // A wrong password: a failure count for the throttle.
    assert!(
        sign_in_at(&http, &old.base, "mallory", "guess")
            .await
            .is_err()
    );
    tokio::time::sleep(Duration::from_millis(600)).await; // the outbox fans out
    let data_dir = old.dir().join("data");
    let token_key = std::fs::read_to_string(data_dir.join("token.key")).unwrap();
    old.kill(); // its data directory stays until `old` goes out of scope
    fill_oauth_tables(&data_dir).await;
    // An ACME certificate ordered on SQLite keeps serving after the move.
    {
        use portcullis_store::AcmeStore;
        let store = portcullis_store::SqlStore::open(&data_dir).await.unwrap();
        store
            .put_acme_value("certificate", "{\"sealed\":\"…\"}", now())
            .await
            .unwrap();
    }

    let pg = PgCluster::start();
    let target = portcullis_store::SqlStore::fresh_postgres_database(&pg.url)
        .await
        .unwrap();
    let config_path = tempfile::tempdir().unwrap();
    let path = config_path.path().join("portcullis.toml");
    std::fs::write(&path, format!("data_dir = \"{}\"\n", data_dir.display())).unwrap();
    let out = common::replicas::portcullis(&[
        "copy-store",
        "--to",
        &target,
        "--config",
        path.to_str().unwrap(),
    ])
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let source = portcullis_store::SqlStore::open(&data_dir)
        .await
        .unwrap()
        .dump()
        .await
        .unwrap();
    let copied = portcullis_store::SqlStore::postgres(&target, &Default::default(), false)
        .await
        .unwrap()
        .dump()
        .await
        .unwrap();
    for (table, rows) in &source {
        if *table != "identities" {
            assert!(!rows.is_empty(), "the fixture fills {table}");
        }
    }
    assert_eq!(source, copied, "every row of every table");
    let pending = portcullis_store::Value::Text("pending".into());
    assert!(
        source["deliveries"]
            .iter()
            .any(|row| row.contains(&pending)),
        "pending deliveries were among the rows moved"
    );

    // Portcullis on PostgreSQL with the same token key: the old session and password still work,
    // and the pending deliveries are still pending.
    let new = Replica::start(&format!(
        "token_key = \"{}\"\n{config}[store]\nurl = \"{target}\"\n",
        token_key.trim()
    ))
    .await;
    assert_eq!(
        status_with(&http, &new.base, &session).await,
        StatusCode::OK
    );
    // The factor moved too: the password alone no longer signs in; a recovery code does.
    let login = ("alice", PASSWORD);
    let code = &enrolled.recovery_codes[0];
    assert!(
        factors::sign_in_with_code(&http, &new.base, login, code)
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn migrate_lists_then_applies_pending_migrations() {
    let pg = PgCluster::start();
    let url = portcullis_store::SqlStore::fresh_postgres_database(&pg.url)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("portcullis.toml");
    std::fs::write(
        &path,
        format!("token_key = \"{TOKEN_KEY}\"\n[store]\nurl = \"{url}\"\n"),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--config", path.to_str().unwrap()]);
        let out = common::replicas::portcullis(&all).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    assert!(run(&["migrate", "--dry-run"]).contains("would apply 1 init"));
    assert!(
        run(&["migrate", "--dry-run"]).contains("would apply"),
        "a dry run changes nothing"
    );
    assert!(run(&["migrate"]).contains("applying 1 init"));
    assert!(run(&["migrate", "--dry-run"]).contains("up to date"));
}

/// Every writer's change reaches the other replica within a second, because the database's
/// triggers write the change feed, whoever writes: a SCIM PATCH that removes a member of
/// `admins`, a provider refresh that drops a group, and a role change through the API, each made
/// on A, are each enforced on B (which had the sessions cached with the old identity).
#[tokio::test]
async fn scim_provider_refresh_and_api_changes_on_one_replica_hold_on_the_other() {
    let pg = PgCluster::start();
    let upstream = common::upstream::start().await;
    let port_a = free_port();
    let public = format!("http://127.0.0.1:{port_a}");
    // A short-lived access token, so that A refreshes alice's provider session soon.
    let idp = Idp::start(&public, &[("ACCESS_TTL", "31")]);
    let scim_token = "scim-token-0123456789abcdefghijklmnopqrstuv";
    let config = format!(
        "public_url = \"{public}\"\ntoken_key = \"{TOKEN_KEY}\"\n\
         [scim]\ntoken = \"{scim_token}\"\n\
         [store]\nurl = \"{}\"\n\
         [[apps]]\nname = \"app\"\nupstream = \"{}\"\n\
         access = {{ groups = [\"admins\", \"ml\"], roles = [\"admin\"] }}\n{}",
        pg.url,
        upstream.url(),
        idp.provider_toml("scopes = ['openid', 'email', 'profile', 'groups', 'offline_access']\n")
    );
    let a = Replica::start_on(port_a, &config).await;
    let b = Replica::start(&config).await;
    let http = http();
    let on_b = |session: String| {
        let (http, base) = (http.clone(), b.base.clone());
        async move { status_with(&http, &base, &session).await }
    };

    // 1. SCIM on A takes sam out of `admins`.
    let sam_id = a
        .cli(
            &["user", "add", "sam", "--password-stdin"],
            Some(&format!("{PASSWORD}\n")),
        )
        .trim()
        .to_owned();
    let scim = |method: reqwest::Method, path: String, body: serde_json::Value| {
        let http = http.clone();
        let url = format!("{}/.portcullis/scim/v2{path}", a.base);
        async move {
            http.request(method, url)
                .bearer_auth(scim_token)
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    };
    let group = scim(
        reqwest::Method::POST,
        "/Groups".into(),
        serde_json::json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                           "displayName": "admins", "members": [{"value": sam_id}]}),
    )
    .await;
    assert_eq!(group.status(), StatusCode::CREATED);
    let group_id = group.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let sam = sign_in_at(&http, &a.base, "sam", PASSWORD).await.unwrap();
    assert_eq!(on_b(sam.clone()).await, StatusCode::OK);
    let removed = scim(
        reqwest::Method::PATCH,
        format!("/Groups/{group_id}"),
        serde_json::json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "Remove", "path": format!("members[value eq \"{sam_id}\"]")}]}),
    )
    .await;
    assert!(removed.status().is_success(), "{}", removed.status());
    let took = within("SCIM removal enforced on B", Duration::from_secs(1), || {
        let f = on_b(sam.clone());
        async move { f.await == StatusCode::FORBIDDEN }
    })
    .await;
    eprintln!("SCIM removal reached B after {took:?}");

    // 2. A refresh on A re-reads alice's groups from the provider, which dropped `ml`.
    let start = http
        .get(format!("{}/.portcullis/start/idp?rd=/hello", a.base))
        .send()
        .await
        .unwrap();
    let flow = set_cookie_value(&start, "_portcullis_flow").unwrap();
    let authorize = start.headers()[LOCATION].to_str().unwrap().to_owned();
    let back = Person::default()
        .sign_in_at_provider(&authorize, "alice")
        .await;
    let path = &back[back.find("/oauth2/callback").unwrap()..];
    let done = http
        .get(format!("{}{path}", a.base))
        .header(COOKIE, format!("_portcullis_flow={flow}"))
        .send()
        .await
        .unwrap();
    let alice = set_cookie_value(&done, "_portcullis").unwrap();
    assert_eq!(on_b(alice.clone()).await, StatusCode::OK, "alice is in ml");
    let changed = http
        .post(format!("{}/test/groups?sub=alice&set=staff", idp.issuer))
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), StatusCode::NO_CONTENT);
    // The access token is due for refresh 30 s before it expires: after 1 s here.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    within(
        "the refresh on A applied there",
        Duration::from_secs(10),
        || {
            let (http, base, alice) = (http.clone(), a.base.clone(), alice.clone());
            async move { status_with(&http, &base, &alice).await == StatusCode::FORBIDDEN }
        },
    )
    .await;
    let took = within(
        "the refreshed groups enforced on B",
        Duration::from_secs(1),
        || {
            let f = on_b(alice.clone());
            async move { f.await == StatusCode::FORBIDDEN }
        },
    )
    .await;
    eprintln!("the refreshed groups reached B after {took:?}");

    // 3. The API on A makes rita an admin; B lets her in without a new sign-in.
    a.cli(
        &["user", "add", "rita", "--password-stdin"],
        Some(&format!("{PASSWORD}\n")),
    );
    a.cli(&["user", "add", "root", "--role", "admin"], None);
    let key = a
        .cli(
            &[
                "key",
                "create",
                "--user",
                "root",
                "--name",
                "api",
                "--app",
                "portcullis-api",
            ],
            None,
        )
        .trim()
        .to_owned();
    let rita = sign_in_at(&http, &a.base, "rita", PASSWORD).await.unwrap();
    assert_eq!(on_b(rita.clone()).await, StatusCode::FORBIDDEN);
    // The key the CLI made reaches A's key ring through the change feed too.
    within("the new key works on A", Duration::from_secs(1), || {
        let (http, base, key) = (http.clone(), a.base.clone(), key.clone());
        async move {
            http.get(format!("{base}/.portcullis/api/v1/me"))
                .header("x-api-key", key)
                .send()
                .await
                .unwrap()
                .status()
                == StatusCode::OK
        }
    })
    .await;
    let promoted = http
        .patch(format!("{}/.portcullis/api/v1/users/rita", a.base))
        .header("x-api-key", &key)
        .json(&serde_json::json!({"role": "admin"}))
        .send()
        .await
        .unwrap();
    assert!(
        promoted.status().is_success(),
        "{}",
        promoted.text().await.unwrap()
    );
    let took = within(
        "the role change enforced on B",
        Duration::from_secs(1),
        || {
            let f = on_b(rita.clone());
            async move { f.await == StatusCode::OK }
        },
    )
    .await;
    eprintln!("the role change reached B after {took:?}");
}

/// Submits the reset form of `link` with `password` at `base`: the response's status.
async fn use_reset_link(
    http: &reqwest::Client,
    base: &str,
    link: &str,
    password: &str,
) -> (StatusCode, String) {
    let path = &link[link.find("/.portcullis/reset").unwrap()..];
    let form = http.get(format!("{base}{path}")).send().await.unwrap();
    let csrf_cookie = set_cookie_value(&form, "_portcullis_csrf").unwrap();
    let html = form.text().await.unwrap();
    let field = |name: &str| common::hidden_field(&html, name);
    let response = http
        .post(format!("{base}/.portcullis/reset"))
        .header(COOKIE, format!("_portcullis_csrf={csrf_cookie}"))
        .form(&[
            ("csrf", field("csrf")),
            ("token", field("token")),
            ("password", password.into()),
            ("confirm", password.into()),
        ])
        .send()
        .await
        .unwrap();
    (response.status(), response.text().await.unwrap())
}

#[tokio::test]
async fn a_reset_link_made_on_one_replica_works_once_on_any() {
    let pg = PgCluster::start();
    let upstream = common::upstream::start().await;
    let port_a = free_port();
    let config = shared(
        &pg,
        &upstream.url(),
        &format!("http://127.0.0.1:{port_a}"),
        "",
    );
    let a = Replica::start_on(port_a, &config).await;
    let b = Replica::start(&config).await;
    a.cli(
        &["user", "add", "alice", "--password-stdin"],
        Some(&format!("{PASSWORD}\n")),
    );
    let http = http();
    let on_a = sign_in_at(&http, &a.base, "alice", PASSWORD).await.unwrap();

    let link = a
        .cli(&["user", "reset-link", "alice"], None)
        .trim()
        .to_owned();
    let (status, _) = use_reset_link(&http, &b.base, &link, "chosen on replica b").await;
    assert_eq!(status, StatusCode::SEE_OTHER, "a link made on A works on B");
    let (status, page) = use_reset_link_again(&http, &a.base, &link).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "and only once, on A too");
    assert!(page.contains("used already"), "{page}");
    within(
        "the reset on B ends the session on A",
        Duration::from_secs(1),
        || {
            let http = http.clone();
            let (base, session) = (a.base.clone(), on_a.clone());
            async move { status_with(&http, &base, &session).await == StatusCode::UNAUTHORIZED }
        },
    )
    .await;
    assert!(
        sign_in_at(&http, &a.base, "alice", "chosen on replica b")
            .await
            .is_ok()
    );

    // Two tabs on two replicas racing with one link: exactly one sets its password.
    let link = a
        .cli(&["user", "reset-link", "alice"], None)
        .trim()
        .to_owned();
    let (one, two) = tokio::join!(
        use_reset_link(&http, &a.base, &link, "the phrase from a"),
        use_reset_link(&http, &b.base, &link, "the phrase from b"),
    );
    let winners = [one.0, two.0]
        .iter()
        .filter(|s| **s == StatusCode::SEE_OTHER)
        .count();
    assert_eq!(winners, 1, "{one:?} {two:?}");
}

/// A registered MCP client, a code it redeemed (the grant and refresh token it became) and one
/// still unused: the rows of the authorization server's tables, written straight to the store.
async fn fill_oauth_tables(data_dir: &std::path::Path) {
    use portcullis_store::{AuthCode, Grant, OAuthClient, OAuthStore, Redeemed, Store};
    let store = portcullis_store::SqlStore::open(data_dir).await.unwrap();
    let alice = store.user_by_username("alice").await.unwrap().unwrap();
    let now = now();
    let client = OAuthClient {
        id: "pcc_copied".into(),
        name: "Copied client".into(),
        redirect_uris: vec!["http://127.0.0.1/callback".into()],
        secret_hash: None,
        created_at: now,
        last_used_at: Some(now),
    };
    store.insert_client(&client).await.unwrap();
    let code = |hash: &str| AuthCode {
        code_hash: hash.into(),
        user_id: alice.id.clone(),
        client_id: client.id.clone(),
        client_name: client.name.clone(),
        redirect_uri: client.redirect_uris[0].clone(),
        code_challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into(),
        app: "app".into(),
        resource: "http://127.0.0.1/mcp".into(),
        scopes: vec!["mcp".into()],
        expires_at: portcullis_core::Timestamp(now.0 + 60),
    };
    store.insert_code(&code("redeemed")).await.unwrap();
    store.insert_code(&code("unused")).await.unwrap();
    let grant = Grant {
        id: "grant-copied".into(),
        user_id: alice.id.clone(),
        client_id: client.id.clone(),
        client_name: client.name.clone(),
        app: "app".into(),
        resource: "http://127.0.0.1/mcp".into(),
        scopes: vec!["mcp".into()],
        created_at: now,
        last_used_at: None,
        expires_at: portcullis_core::Timestamp(now.0 + 3600),
    };
    let redeemed = store
        .redeem_code("redeemed", &grant, "refresh-copied", now)
        .await
        .unwrap();
    assert_eq!(redeemed, Redeemed::Issued);
}

fn now() -> portcullis_core::Timestamp {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    portcullis_core::Timestamp(i64::try_from(secs).unwrap())
}

/// An authenticator app set up through replica A signs in on B at once; a code used on one is
/// refused on the other; a recovery code raced on both works on exactly one.
#[tokio::test]
async fn a_factor_set_up_on_one_replica_works_once_on_any() {
    let pg = PgCluster::start();
    let upstream = common::upstream::start().await;
    let port_a = free_port();
    let config = shared(
        &pg,
        &upstream.url(),
        &format!("http://127.0.0.1:{port_a}"),
        "",
    );
    let a = Replica::start_on(port_a, &config).await;
    let b = Replica::start(&config).await;
    a.cli(
        &["user", "add", "alice", "--password-stdin"],
        Some(&format!("{PASSWORD}\n")),
    );
    let http = http();
    let on_a = sign_in_at(&http, &a.base, "alice", PASSWORD).await.unwrap();
    let enrolled = factors::enrol(&http, &a.base, &on_a, now()).await;

    // The code of the next time step (an app a little ahead is accepted) works on B once…
    let next = enrolled.secret.code_at(now().plus(Duration::from_secs(30)));
    let login = ("alice", PASSWORD);
    let on_b = factors::sign_in_with_code(&http, &b.base, login, &next).await;
    assert!(on_b.is_ok(), "an app set up on A works on B: {on_b:?}");
    // …and not again on A.
    let again = factors::sign_in_with_code(&http, &a.base, login, &next).await;
    assert_eq!(again, Err(StatusCode::UNAUTHORIZED));

    // One recovery code, two tabs on two replicas: exactly one signs in.
    let code = &enrolled.recovery_codes[0];
    let (one, two) = tokio::join!(
        factors::sign_in_with_code(&http, &a.base, login, code),
        factors::sign_in_with_code(&http, &b.base, login, code),
    );
    assert_eq!(
        [one.is_ok(), two.is_ok()].iter().filter(|ok| **ok).count(),
        1,
        "{one:?} {two:?}"
    );

    // An admin's reset on B: A asks for no code any more.
    b.cli(&["user", "reset-factors", "alice", "--yes"], None);
    assert!(sign_in_at(&http, &a.base, "alice", PASSWORD).await.is_ok());
}

/// The link's form at `base` after it was used: its status and page.
async fn use_reset_link_again(
    http: &reqwest::Client,
    base: &str,
    link: &str,
) -> (StatusCode, String) {
    let path = &link[link.find("/.portcullis/reset").unwrap()..];
    let response = http.get(format!("{base}{path}")).send().await.unwrap();
    (response.status(), response.text().await.unwrap())
}

/// An MCP client authorized through replica A redeems its code on B, uses its token on both,
/// and a revocation on B stops it on A within a second.
#[tokio::test]
async fn an_oauth_grant_made_on_one_replica_works_and_ends_on_any() {
    let pg = PgCluster::start();
    let upstream = common::upstream::start().await;
    let port_a = free_port();
    let config = format!(
        "{}[[apps]]\nname = \"tools\"\npath_prefix = \"/mcp\"\nkind = \"mcp\"\nupstream = \"{}\"\n",
        shared(
            &pg,
            &upstream.url(),
            &format!("http://127.0.0.1:{port_a}"),
            ""
        ),
        upstream.url()
    );
    let a = Replica::start_on(port_a, &config).await;
    let b = Replica::start(&config).await;
    a.cli(
        &["user", "add", "alice", "--password-stdin"],
        Some(&format!("{PASSWORD}\n")),
    );
    let http = http();
    let cookie = sign_in_at(&http, &a.base, "alice", PASSWORD).await.unwrap();
    let registered: serde_json::Value = http
        .post(format!("{}/.portcullis/oauth/register", a.base))
        .json(&serde_json::json!({"client_name": "Replica client", "redirect_uris": ["http://127.0.0.1/cb"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let client_id = registered["client_id"].as_str().unwrap().to_owned();
    let verifier = "a-verifier-that-is-long-enough-for-pkce-0123456789";
    let query = [
        ("response_type", "code".to_owned()),
        ("client_id", client_id.clone()),
        ("redirect_uri", "http://127.0.0.1:4000/cb".to_owned()),
        ("code_challenge", portcullis_auth::oauth::s256(verifier)),
        ("code_challenge_method", "S256".to_owned()),
        ("resource", format!("{}/mcp", a.base)),
    ];
    let page = http
        .get(format!("{}/.portcullis/oauth/authorize", a.base))
        .query(&query)
        .header(COOKIE, format!("_portcullis={cookie}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut form: Vec<(&str, String)> = query.to_vec();
    form.push(("csrf", common::hidden_field(&page, "csrf")));
    form.push(("decision", "allow".to_owned()));
    let allowed = http
        .post(format!("{}/.portcullis/oauth/authorize", a.base))
        .header(COOKIE, format!("_portcullis={cookie}"))
        .form(&form)
        .send()
        .await
        .unwrap();
    let location = allowed.headers()[LOCATION].to_str().unwrap().to_owned();
    let code = location
        .split(['?', '&'])
        .find_map(|p| p.strip_prefix("code="))
        .unwrap()
        .to_owned();

    // The code, made on A, is redeemed on B; the token works on both at once.
    let tokens: serde_json::Value = http
        .post(format!("{}/.portcullis/oauth/token", b.base))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "http://127.0.0.1:4000/cb"),
            ("code_verifier", verifier),
            ("client_id", &client_id),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let mcp = |base: String| {
        let (http, access) = (http.clone(), access.clone());
        async move {
            http.post(format!("{base}/mcp"))
                .header("authorization", format!("Bearer {access}"))
                .json(&serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(
        mcp(a.base.clone()).await,
        StatusCode::OK,
        "on A, the moment it exists"
    );
    assert_eq!(mcp(b.base.clone()).await, StatusCode::OK);

    // Revoked on B: refused on A within a second.
    let revoked = http
        .post(format!("{}/.portcullis/oauth/revoke", b.base))
        .form(&[
            ("token", tokens["refresh_token"].as_str().unwrap()),
            ("client_id", &client_id),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), StatusCode::OK);
    within(
        "the revocation on B stops the token on A",
        Duration::from_secs(1),
        || {
            let check = mcp(a.base.clone());
            async move { check.await == StatusCode::UNAUTHORIZED }
        },
    )
    .await;
}

/// Sign-in throttling holds across replicas: failures on either count towards one lock, a lock
/// reached on A refuses on B (even the right password), a client address spraying accounts is
/// locked on both, and a flood of refused attempts on both writes only a handful of audit rows.
#[tokio::test]
async fn sign_in_limits_hold_across_replicas() {
    let pg = PgCluster::start();
    let upstream = common::upstream::start().await;
    let port_a = free_port();
    let config = shared(
        &pg,
        &upstream.url(),
        &format!("http://127.0.0.1:{port_a}"),
        // A short refusal delay: 200 refused attempts are made one after another below.
        "[local_auth]\nfree_attempts = 2\nbase_backoff = \"10min\"\nrefusal_delay = \"5ms\"\n",
    );
    let a = Replica::start_on(port_a, &config).await;
    let b = Replica::start(&config).await;
    for name in ["alice", "bob"] {
        a.cli(
            &["user", "add", name, "--password-stdin"],
            Some(&format!("{PASSWORD}\n")),
        );
    }
    let http = http();
    let status = |result: Result<String, reqwest::Response>| match result {
        Ok(_) => StatusCode::SEE_OTHER,
        Err(response) => response.status(),
    };
    // Two free failures, one on each replica; the third (on A) locks alice everywhere.
    for base in [&a.base, &b.base, &a.base] {
        assert_eq!(
            status(sign_in_at(&http, base, "alice", "wrong password 1").await),
            StatusCode::UNAUTHORIZED,
            "a wrong password is refused"
        );
    }
    assert_eq!(
        status(sign_in_at(&http, &b.base, "alice", PASSWORD).await),
        StatusCode::TOO_MANY_REQUESTS,
        "locked on B by failures counted on both"
    );
    assert_eq!(
        status(sign_in_at(&http, &a.base, "alice", PASSWORD).await),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        status(sign_in_at(&http, &b.base, "bob", PASSWORD).await),
        StatusCode::SEE_OTHER,
        "another account from the same address still signs in"
    );

    // One address spraying accounts: its 8 free failures are shared, not 8 per replica. It has
    // spent three on alice; six more, alternating, and the ninth failure locks it.
    for n in 0..6 {
        let base = if n % 2 == 0 { &a.base } else { &b.base };
        assert_eq!(
            status(sign_in_at(&http, base, &format!("nobody{n}"), "guess").await),
            StatusCode::UNAUTHORIZED
        );
    }
    for base in [&a.base, &b.base] {
        assert_eq!(
            status(sign_in_at(&http, base, "bob", PASSWORD).await),
            StatusCode::TOO_MANY_REQUESTS,
            "the address is locked on both replicas"
        );
    }

    // A flood of refused attempts on both replicas: a handful of audit rows, not one each.
    let store = portcullis_store::SqlStore::postgres(&pg.url, &Default::default(), false)
        .await
        .unwrap();
    let throttled_rows = || async {
        use portcullis_store::Store;
        store
            .recent_audit(10_000)
            .await
            .unwrap()
            .iter()
            .filter(|e| e.reason.as_deref() == Some("throttled"))
            .count()
    };
    let before = throttled_rows().await;
    for n in 0..200 {
        let base = if n % 2 == 0 { &a.base } else { &b.base };
        assert_eq!(
            status(sign_in_at(&http, base, "alice", "guess").await),
            StatusCode::TOO_MANY_REQUESTS
        );
    }
    let added = throttled_rows().await - before;
    assert!(added <= 2, "{added} audit rows for 200 refused attempts");
}
