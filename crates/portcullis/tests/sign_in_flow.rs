//! The whole journey: setup link → admin → sign-in → proxied request with identity headers →
//! sign-out → the same cookie is refused.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure report

mod common;

use common::{ADMIN_PASSWORD, Harness, received};
use portcullis_core::Role;
use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION};

#[tokio::test]
async fn setup_sign_in_proxy_sign_out() {
    let h = Harness::start("[[apps]]\nname = 'app'\nupstream = '{upstream}'\nidentity_headers = { profile = 'openwebui', role_header = 'X-Forwarded-Role' }\n").await;

    // Before setup, nobody gets in; the setup link is the only way to create the admin.
    let before = h
        .http
        .get(h.url("/"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(before.status(), StatusCode::FOUND);
    assert_eq!(before.headers()[LOCATION], "/.portcullis/sign_in?rd=/");
    let bad_link = h
        .http
        .get(h.url("/.portcullis/setup?token=guess"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_link.status(), StatusCode::FORBIDDEN);

    let setup_cookie = h.setup_admin().await;
    let reused = h
        .http
        .get(
            h.running
                .setup_link
                .clone()
                .unwrap()
                .replace("http://127.0.0.1:0", &h.base),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        reused.status(),
        StatusCode::NOT_FOUND,
        "the setup link is one-time"
    );
    assert_eq!(h.echo("/", &setup_cookie).await["path"], "/");

    // A fresh sign-in with the form.
    let cookie = h
        .sign_in("admin", ADMIN_PASSWORD)
        .await
        .unwrap_or_else(|r| panic!("sign-in failed: {}", r.status()));
    let echo = h.echo("/chat/c/1?x=1", &cookie).await;
    assert_eq!(echo["path"], "/chat/c/1");
    assert_eq!(echo["query"], "x=1");
    assert_eq!(received(&echo, "x-forwarded-email"), ["admin@example.com"]);
    assert_eq!(
        received(&echo, "x-forwarded-user"),
        ["Ada Admin"],
        "the display name, never the subject"
    );
    assert_eq!(received(&echo, "x-forwarded-role"), ["admin"]);
    assert!(
        received(&echo, "x-forwarded-groups").is_empty(),
        "no groups: no empty header"
    );
    let cookies = received(&echo, "cookie");
    assert!(
        cookies.iter().all(|c| !c.contains("_portcullis")),
        "the session cookie never reaches the app: {cookies:?}"
    );

    // Sign-out ends the session server-side: the very same cookie is refused afterwards.
    let out = h
        .http
        .get(h.url("/oauth2/sign_out?rd=/bye"))
        .header(COOKIE, format!("_portcullis={cookie}"))
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::FOUND);
    assert_eq!(out.headers()[LOCATION], "/bye");
    assert!(common::set_cookie_value(&out, "_portcullis").is_some_and(|v| v.is_empty()));
    let after = h
        .http
        .get(h.url("/"))
        .header(COOKIE, format!("_portcullis={cookie}"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), StatusCode::UNAUTHORIZED);
    // The other session (from setup) is unaffected.
    assert_eq!(h.echo("/", &setup_cookie).await["path"], "/");

    let audit = h.running.state.store.recent_audit(10).await.unwrap();
    let actions: Vec<_> = audit
        .iter()
        .map(|e| (e.action.as_str(), e.reason.as_deref().unwrap_or("")))
        .collect();
    assert_eq!(
        actions,
        [
            ("sign_out", ""),
            ("sign_in", "local_password"),
            ("sign_in", "setup_link"),
            ("user_created", "first admin"),
        ]
    );
    h.running.shutdown().await;
}

#[tokio::test]
async fn wrong_passwords_get_one_generic_answer_and_back_off() {
    let h = Harness::start("[local_auth]\nfree_attempts = 2\nbase_backoff = '30s'\n").await;
    h.setup_admin().await;
    h.add_user("bob", Some("bob@example.com"), None, Role::User, &[])
        .await;
    let mut bodies = Vec::new();
    for (login, password) in [("bob", "wrong-password"), ("nobody", "wrong-password")] {
        let failed = h.sign_in(login, password).await.expect_err("must fail");
        assert_eq!(failed.status(), StatusCode::UNAUTHORIZED);
        let body = failed.text().await.unwrap();
        assert!(body.contains("Wrong username or password."));
        let csrf = common::hidden_field(&body, "csrf");
        bodies.push(body.replace(login, "LOGIN").replace(&csrf, "CSRF"));
    }
    assert_eq!(
        bodies[0], bodies[1],
        "the answer must not reveal whether the account exists"
    );
    // free_attempts = 2: the third failure starts the back-off, even for the right password.
    for _ in 0..2 {
        let _ = h.sign_in("bob", "wrong-password").await;
    }
    let throttled = h
        .sign_in("bob", "user-password-1")
        .await
        .expect_err("locked out");
    assert_eq!(throttled.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(throttled.headers().contains_key("retry-after"));
    let reasons: Vec<_> = h
        .running
        .state
        .store
        .recent_audit(10)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|e| e.reason)
        .collect();
    for reason in ["wrong_password", "unknown_account", "throttled"] {
        assert!(
            reasons.iter().any(|r| r == reason),
            "{reason} missing from {reasons:?}"
        );
    }
    h.running.shutdown().await;
}

/// A throttled attacker cannot fill the audit trail: however many attempts are refused during a
/// lock, one row says so (the throttle's own test counts 10,000).
#[tokio::test]
async fn throttled_attempts_write_one_audit_row_per_lock() {
    let h = Harness::start(
        "[local_auth]\nfree_attempts = 1\nbase_backoff = '10m'\nrefusal_delay = '300ms'\n",
    )
    .await;
    h.setup_admin().await;
    h.add_user("bob", Some("bob@example.com"), None, Role::User, &[])
        .await;
    let audit_rows = || async {
        h.running
            .state
            .store
            .recent_audit(100_000)
            .await
            .unwrap()
            .len()
    };
    for _ in 0..2 {
        let _ = h.sign_in("bob", "wrong-password").await;
    }
    let before = audit_rows().await;
    // A refused attempt is held for the refusal delay before its 429: an attacker's connection
    // makes one attempt per delay.
    let started = std::time::Instant::now();
    let held = h.sign_in("bob", "guess").await.unwrap_err();
    assert_eq!(held.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(started.elapsed() >= std::time::Duration::from_millis(300));
    let attempts = 2_000;
    let refused = futures_util::future::join_all((0..attempts).map(|_| h.sign_in("bob", "guess")))
        .await
        .into_iter()
        .filter(
            |r| matches!(r, Err(response) if response.status() == StatusCode::TOO_MANY_REQUESTS),
        )
        .count();
    assert_eq!(
        refused, attempts,
        "every attempt was refused by the throttle"
    );
    let written = audit_rows().await - before;
    assert!(
        written <= 2,
        "{written} audit rows for {attempts} throttled attempts"
    );
    h.running.shutdown().await;
}

#[tokio::test]
async fn unauthenticated_requests_get_redirects_or_401s() {
    let h = Harness::start("").await;
    let get = |path: &str, headers: &[(&str, &str)]| {
        let mut request = h.http.get(h.url(path));
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        request.send()
    };
    let nav = get("/chat?id=5", &[("accept", "text/html")]).await.unwrap();
    assert_eq!(nav.status(), StatusCode::FOUND);
    assert_eq!(
        nav.headers()[LOCATION],
        "/.portcullis/sign_in?rd=/chat%3Fid%3D5"
    );
    let post = h
        .http
        .post(h.url("/form"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), StatusCode::SEE_OTHER);
    for headers in [
        vec![("accept", "application/json")],
        vec![
            ("accept", "text/html"),
            ("x-requested-with", "XMLHttpRequest"),
        ],
        vec![("accept", "text/html"), ("sec-fetch-mode", "cors")],
    ] {
        let response = get("/chat", &headers).await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{headers:?}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"], "unauthenticated");
    }
    let api = get("/api/chats", &[("accept", "text/html")]).await.unwrap();
    assert_eq!(
        api.status(),
        StatusCode::UNAUTHORIZED,
        "an API route gets 401 even from a browser"
    );

    // Return URLs cannot point off-site.
    for evil in [
        "//evil.example/x",
        "https://evil.example",
        "/\\evil.example",
    ] {
        let form = get(
            &format!(
                "/.portcullis/sign_in?rd={}",
                evil.replace('/', "%2F").replace('\\', "%5C")
            ),
            &[],
        )
        .await
        .unwrap();
        let html = form.text().await.unwrap();
        assert_eq!(common::hidden_field(&html, "rd"), "/", "{evil}");
    }
    h.running.shutdown().await;
}

#[tokio::test]
async fn access_policies_deny_by_default_and_say_why() {
    let h = Harness::start(
        "[[apps]]\nname = 'ops'\npath_prefix = '/ops'\nupstream = '{upstream}'\naccess = { groups = ['ops'] }\n\
         [[apps]]\nname = 'all'\nupstream = '{upstream}'\n",
    )
    .await;
    h.setup_admin().await;
    h.add_user(
        "carol",
        Some("carol@example.com"),
        Some("Carol"),
        Role::User,
        &["ops"],
    )
    .await;
    h.add_user("dan", Some("dan@example.com"), None, Role::User, &["staff"])
        .await;
    let carol = h.sign_in("carol", "user-password-1").await.unwrap();
    let dan = h
        .sign_in("dan@example.com", "user-password-1")
        .await
        .unwrap();
    let echo = h.echo("/ops/x", &carol).await;
    assert_eq!(received(&echo, "x-forwarded-groups"), ["ops"]);
    let denied = h
        .http
        .get(h.url("/ops/x"))
        .header(COOKIE, format!("_portcullis={dan}"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), StatusCode::FORBIDDEN);
    let page = denied.text().await.unwrap();
    assert!(page.contains("this app admits only groups [ops]"), "{page}");
    assert_eq!(h.echo("/other", &dan).await["path"], "/other");
    h.running.shutdown().await;
}
