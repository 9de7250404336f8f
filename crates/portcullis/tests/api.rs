//! The admin and self-service REST API: authorisation, validation, paging, and effects.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure report

mod common;

use common::Harness;
use portcullis_core::Role;
use reqwest::header::COOKIE;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

struct Api<'a> {
    h: &'a Harness,
    cookie: Option<String>,
    key: Option<String>,
}

impl Api<'_> {
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self.h.http.request(method, self.h.url(path));
        if let Some(cookie) = &self.cookie {
            request = request.header(COOKIE, format!("_portcullis={cookie}"));
        }
        if let Some(key) = &self.key {
            request = request.header("x-api-key", key);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

#[tokio::test]
async fn admin_api_authorisation_validation_and_effects() {
    let h = Harness::start("[[apps]]\nname = 'chat'\nupstream = '{upstream}'\n").await;
    let admin = Api {
        h: &h,
        cookie: Some(h.setup_admin().await),
        key: None,
    };
    h.add_user(
        "carol",
        Some("carol@example.com"),
        Some("Carol C"),
        Role::User,
        &[],
    )
    .await;
    let carol_cookie = h.sign_in("carol", "user-password-1").await.unwrap();
    let carol = Api {
        h: &h,
        cookie: Some(carol_cookie.clone()),
        key: None,
    };
    let nobody = Api {
        h: &h,
        cookie: None,
        key: None,
    };

    // Authorisation: no session 401, non-admin 403, admin 200 — all JSON with a stable code.
    let (status, body) = nobody
        .call(Method::GET, "/.portcullis/api/v1/users", None)
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("unauthenticated"))
    );
    let (status, body) = carol
        .call(Method::GET, "/.portcullis/api/v1/users", None)
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden"))
    );
    for (method, path) in [
        (Method::POST, "/.portcullis/api/v1/users"),
        (Method::PATCH, "/.portcullis/api/v1/users/carol"),
        (Method::GET, "/.portcullis/api/v1/audit"),
    ] {
        let (status, _) = carol.call(method, path, Some(json!({}))).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
    }
    let (status, body) = admin
        .call(Method::GET, "/.portcullis/api/v1/nope", None)
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );

    // With an app at /, /api/v1 is the app's (Open WebUI and n8n have their own); Portcullis's
    // API stays at /.portcullis/api/v1.
    let echo = h
        .echo("/api/v1/chats", admin.cookie.as_deref().unwrap())
        .await;
    assert_eq!(echo["path"], "/api/v1/chats", "the app's own API: {echo}");

    // Create, with validation errors that say what is wrong.
    let (status, created) = admin
        .call(Method::POST, "/.portcullis/api/v1/users", Some(json!({"username": "dave", "email": "dave@example.com", "password": "dave-password-1"})))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(
        (created["username"].as_str(), created["role"].as_str()),
        (Some("dave"), Some("user"))
    );
    let (status, body) = admin
        .call(
            Method::POST,
            "/.portcullis/api/v1/users",
            Some(json!({"username": "dave"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"], "conflict");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("username is already taken")
    );
    for (bad, expected) in [
        (json!({"email": "x@y"}), "missing field `username`"),
        (json!({"username": "e e"}), "may contain only"),
        (json!({"username": "eve", "role": "root"}), "is not a role"),
        (
            json!({"username": "eve", "password": "short"}),
            "at least 8",
        ),
        (
            json!({"username": "eve", "colour": "blue"}),
            "unknown field `colour`",
        ),
    ] {
        let (status, body) = admin
            .call(Method::POST, "/.portcullis/api/v1/users", Some(bad.clone()))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert!(
            body["message"].as_str().unwrap().contains(expected),
            "{bad}: {body}"
        );
    }

    // Pre-provisioning is idempotent: keyed by external id, or by email.
    let signup =
        json!({"username": "fay", "email": "fay@example.com", "external_id": "cognito-sub-1"});
    let (status, first) = admin
        .call(
            Method::POST,
            "/.portcullis/api/v1/users",
            Some(signup.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let (status, again) = admin
        .call(Method::POST, "/.portcullis/api/v1/users", Some(signup))
        .await;
    assert_eq!(
        (status, &again["id"]),
        (StatusCode::OK, &first["id"]),
        "a retried hook"
    );
    let by_email = json!({"username": "fay2", "email": "FAY@example.com"});
    let (status, same) = admin
        .call(Method::POST, "/.portcullis/api/v1/users", Some(by_email))
        .await;
    assert_eq!(
        (status, &same["id"]),
        (StatusCode::OK, &first["id"]),
        "keyed by email"
    );
    let by_id = json!({"username": "other", "external_id": "cognito-sub-1"});
    let (status, same) = admin
        .call(Method::POST, "/.portcullis/api/v1/users", Some(by_id))
        .await;
    assert_eq!((status, &same["username"]), (StatusCode::OK, &json!("fay")));
    let dave_cookie = h.sign_in("dave", "dave-password-1").await.unwrap();

    // Paging and search.
    for i in 0..25 {
        admin
            .call(
                Method::POST,
                "/.portcullis/api/v1/users",
                Some(json!({"username": format!("bulk{i:02}")})),
            )
            .await;
    }
    let (_, page) = admin
        .call(
            Method::GET,
            "/.portcullis/api/v1/users?limit=10&offset=10",
            None,
        )
        .await;
    assert_eq!(
        page["total"], 29,
        "admin, carol, dave, fay and 25 bulk users"
    );
    assert_eq!(page["users"].as_array().unwrap().len(), 10);
    assert_eq!(page["users"][0]["username"], "bulk09");
    let (_, found) = admin
        .call(Method::GET, "/.portcullis/api/v1/users?q=CAROL", None)
        .await;
    assert_eq!(found["total"], 1);
    assert_eq!(found["users"][0]["display_name"], "Carol C");
    let (_, none) = admin
        .call(Method::GET, "/.portcullis/api/v1/users?q=bulk%25", None)
        .await;
    assert_eq!(none["total"], 0, "% is a literal character in searches");

    // Role, groups and status take effect at once.
    let (status, _) = admin
        .call(
            Method::POST,
            "/.portcullis/api/v1/users/dave/groups",
            Some(json!({"group": "ops"})),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, updated) = admin
        .call(
            Method::PATCH,
            "/.portcullis/api/v1/users/dave",
            Some(json!({"role": "admin"})),
        )
        .await;
    assert_eq!(
        (status, updated["role"].as_str()),
        (StatusCode::OK, Some("admin"))
    );
    let dave = Api {
        h: &h,
        cookie: Some(dave_cookie.clone()),
        key: None,
    };
    let (_, me) = dave.call(Method::GET, "/.portcullis/api/v1/me", None).await;
    assert_eq!(
        me["identity"]["role"], "admin",
        "the running session sees the new role"
    );
    assert_eq!(me["identity"]["groups"], json!(["ops"]));
    let (status, _) = admin
        .call(
            Method::PATCH,
            "/.portcullis/api/v1/users/dave",
            Some(json!({"role": "user"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = dave.call(Method::GET, "/.portcullis/api/v1/me", None).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "taking the admin role away ends the session at once"
    );
    let dave = Api {
        h: &h,
        cookie: Some(h.sign_in("dave", "dave-password-1").await.unwrap()),
        key: None,
    };
    let (_, me) = dave.call(Method::GET, "/.portcullis/api/v1/me", None).await;
    assert_eq!(me["identity"]["role"], "user", "signed in again as a user");
    let (status, _) = admin
        .call(
            Method::PATCH,
            "/.portcullis/api/v1/users/dave",
            Some(json!({"status": "disabled"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = dave.call(Method::GET, "/.portcullis/api/v1/me", None).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "disabling ends the session at once"
    );
    let (status, _) = admin
        .call(
            Method::PATCH,
            "/.portcullis/api/v1/users/nobody",
            Some(json!({"status": "disabled"})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Keys: issued by an admin for a user, shown once, revocable.
    let (status, issued) = admin
        .call(
            Method::POST,
            "/.portcullis/api/v1/users/carol/keys",
            Some(json!({"name": "laptop", "apps": ["chat"]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{issued}");
    let secret = issued["key"].as_str().unwrap().to_owned();
    let proxied = h
        .http
        .get(h.url("/models"))
        .header("x-api-key", &secret)
        .send()
        .await
        .unwrap();
    assert_eq!(
        proxied.status(),
        StatusCode::OK,
        "an API-created key works at once"
    );
    let (_, details) = admin
        .call(Method::GET, "/.portcullis/api/v1/users/carol", None)
        .await;
    assert_eq!(details["keys"][0]["name"], "laptop");
    assert!(details["keys"][0].get("key").is_none(), "never shown again");
    assert!(
        details["user"]["last_seen_at"].as_i64().unwrap() > 0,
        "signing in records when carol was last seen: {details}"
    );
    let (_, bulk) = admin
        .call(Method::GET, "/.portcullis/api/v1/users/bulk00", None)
        .await;
    assert!(
        bulk["user"]["last_seen_at"].is_null(),
        "bulk00 has never signed in: {bulk}"
    );
    let key_id = issued["details"]["id"].as_str().unwrap().to_owned();
    let (status, _) = admin
        .call(
            Method::DELETE,
            &format!("/.portcullis/api/v1/keys/{key_id}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let refused = h
        .http
        .get(h.url("/models"))
        .header("x-api-key", &secret)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);

    // Audit: pages and the JSON-lines export.
    let (_, first) = admin
        .call(Method::GET, "/.portcullis/api/v1/audit?limit=5", None)
        .await;
    assert_eq!(first["events"].as_array().unwrap().len(), 5);
    assert_eq!(first["events"][0]["action"], "key_revoked");
    assert_eq!(
        first["events"][0]["client_ip"], "127.0.0.1",
        "admin actions record where they came from"
    );
    let next = first["next_before"].as_i64().unwrap();
    let (_, second) = admin
        .call(
            Method::GET,
            &format!("/.portcullis/api/v1/audit?limit=5&before={next}"),
            None,
        )
        .await;
    assert!(second["events"][0]["id"].as_i64().unwrap() < next);
    let export = h
        .http
        .get(h.url("/.portcullis/api/v1/audit.jsonl"))
        .header(
            COOKIE,
            format!("_portcullis={}", admin.cookie.as_deref().unwrap()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(export.headers()["content-type"], "application/x-ndjson");
    let lines: Vec<Value> = export
        .text()
        .await
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines.len() > 30, "{}", lines.len());
    for action in [
        "user_created",
        "role_changed",
        "group_added",
        "user_disabled",
        "key_created",
        "sign_in",
    ] {
        assert!(
            lines.iter().any(|l| l["action"] == action),
            "{action} missing from the export"
        );
    }
    h.running.shutdown().await;
}

#[tokio::test]
async fn self_service_keys_and_csrf() {
    let h = Harness::start("[[apps]]\nname = 'chat'\nupstream = '{upstream}'\n").await;
    h.setup_admin().await;
    h.add_user("erin", Some("erin@example.com"), None, Role::User, &[])
        .await;
    let cookie = h.sign_in("erin", "user-password-1").await.unwrap();
    let erin = Api {
        h: &h,
        cookie: Some(cookie.clone()),
        key: None,
    };

    let (status, issued) = erin
        .call(
            Method::POST,
            "/.portcullis/api/v1/me/keys",
            Some(json!({"name": "cli", "apps": ["portcullis-api", "chat"]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{issued}");
    let by_key = Api {
        h: &h,
        cookie: None,
        key: issued["key"].as_str().map(str::to_owned),
    };
    let (status, me) = by_key
        .call(Method::GET, "/.portcullis/api/v1/me", None)
        .await;
    assert_eq!(
        (status, me["identity"]["username"].as_str()),
        (StatusCode::OK, Some("erin"))
    );
    let (status, _) = by_key
        .call(Method::GET, "/.portcullis/api/v1/users", None)
        .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a user's key is not an admin key"
    );

    let (status, typo) = erin
        .call(
            Method::POST,
            "/.portcullis/api/v1/me/keys",
            Some(json!({"name": "typo", "apps": ["caht"]})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{typo}");
    assert!(
        typo["message"]
            .as_str()
            .unwrap()
            .contains("no app is called \"caht\"; a key can be limited to: chat, portcullis-api"),
        "{typo}"
    );
    let (_, app_only) = erin
        .call(
            Method::POST,
            "/.portcullis/api/v1/me/keys",
            Some(json!({"name": "chat only", "apps": ["chat"]})),
        )
        .await;
    let not_scoped = Api {
        h: &h,
        cookie: None,
        key: app_only["key"].as_str().map(str::to_owned),
    };
    let (status, body) = not_scoped
        .call(Method::GET, "/.portcullis/api/v1/me", None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body["message"].as_str().unwrap().contains("portcullis-api"));

    let (_, listed) = erin
        .call(Method::GET, "/.portcullis/api/v1/me/keys", None)
        .await;
    assert_eq!(listed["keys"].as_array().unwrap().len(), 2);
    let id = listed["keys"][0]["id"].as_str().unwrap().to_owned();
    let (status, _) = erin
        .call(Method::DELETE, "/.portcullis/api/v1/me/keys/not-mine", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A cross-site page cannot use Erin's cookie to change anything.
    let forged = h
        .http
        .delete(h.url(&format!("/.portcullis/api/v1/me/keys/{id}")))
        .header(COOKIE, format!("_portcullis={cookie}"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let (status, _) = erin
        .call(
            Method::DELETE,
            &format!("/.portcullis/api/v1/me/keys/{id}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    h.running.shutdown().await;
}

#[tokio::test]
async fn the_openapi_document_describes_every_route() {
    let h = Harness::start("").await;
    let response = h
        .http
        .get(h.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "served without authentication"
    );
    let doc: Value = response.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let documented: Vec<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    // Every route the API serves (crates/web/src/api/mod.rs), with its methods.
    let served = [
        ("/api/v1/users", &["get", "post"][..]),
        ("/api/v1/users/{username}", &["get", "patch", "delete"]),
        ("/api/v1/users/{username}/groups", &["post"]),
        ("/api/v1/users/{username}/keys", &["post"]),
        ("/api/v1/keys/{id}", &["delete"]),
        ("/api/v1/audit", &["get"]),
        ("/api/v1/audit.jsonl", &["get"]),
        ("/api/v1/me", &["get"]),
        ("/api/v1/me/keys", &["get", "post"]),
        ("/api/v1/me/keys/{id}", &["delete"]),
        ("/api/v1/openapi.json", &["get"]),
        ("/api/v1/users/{username}/sessions", &["get", "delete"]),
        ("/api/v1/sessions/{id}", &["delete"]),
        ("/api/v1/me/sessions", &["get"]),
        ("/api/v1/me/sessions/{id}", &["delete"]),
        ("/api/v1/groups", &["get"]),
        ("/api/v1/groups/{name}", &["get"]),
        ("/api/v1/users/{username}/groups/{group}", &["delete"]),
        ("/api/v1/outbox", &["get"]),
        ("/api/v1/outbox/retry", &["post"]),
        ("/api/v1/outbox/discard", &["post"]),
        ("/api/v1/me/password", &["post"]),
        ("/api/v1/users/{username}/password", &["put"]),
        ("/api/v1/users/{username}/reset-link", &["post"]),
        ("/api/v1/users/{username}/factors", &["get", "delete"]),
        ("/api/v1/users/{username}/grants", &["get"]),
        ("/api/v1/users/{username}/grants/{id}", &["delete"]),
        ("/api/v1/me/grants", &["get"]),
        ("/api/v1/me/grants/{id}", &["delete"]),
    ];
    assert_eq!(documented.len(), served.len(), "{documented:?}");
    for (path, methods) in served {
        for method in methods {
            assert!(
                doc["paths"][path][method].is_object(),
                "{method} {path} is not documented"
            );
        }
    }
    h.running.shutdown().await;
}

#[tokio::test]
async fn admin_pages_need_an_admin_and_a_csrf_token() {
    let h = Harness::start("").await;
    let admin_cookie = h.setup_admin().await;
    h.add_user("gina", None, None, Role::User, &[]).await;
    let gina = h.sign_in("gina", "user-password-1").await.unwrap();
    let page = |cookie: Option<String>| {
        let mut request = h
            .http
            .get(h.url("/.portcullis/admin/users"))
            .header("accept", "text/html");
        if let Some(cookie) = cookie {
            request = request.header(COOKIE, format!("_portcullis={cookie}"));
        }
        request.send()
    };
    let anonymous = page(None).await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::FOUND);
    assert_eq!(
        anonymous.headers()["location"],
        "/.portcullis/sign_in?rd=/.portcullis/admin/users"
    );
    let not_admin = page(Some(gina.clone())).await.unwrap();
    assert_eq!(not_admin.status(), StatusCode::FORBIDDEN);
    assert!(
        not_admin
            .text()
            .await
            .unwrap()
            .contains("need the admin role")
    );
    assert_eq!(
        page(Some(admin_cookie.clone())).await.unwrap().status(),
        StatusCode::OK
    );

    // A form post without the CSRF token changes nothing.
    let forged = h
        .http
        .post(h.url("/.portcullis/admin/users/gina/status"))
        .header(COOKIE, format!("_portcullis={admin_cookie}"))
        .form(&[("status", "disabled")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let gina_now = h
        .running
        .state
        .store
        .user_by_username("gina")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(gina_now.status, portcullis_core::user::UserStatus::Active);

    // With the page's token, "End all sessions" ends Gina's session.
    let detail = h
        .http
        .get(h.url("/.portcullis/admin/users/gina"))
        .header(COOKIE, format!("_portcullis={admin_cookie}"))
        .send()
        .await
        .unwrap();
    assert!(
        common::set_cookie_value(&detail, "_portcullis_csrf").is_none(),
        "a signed-in page needs no CSRF cookie: its token is bound to the session"
    );
    let html = detail.text().await.unwrap();
    assert!(
        html.contains("<h2>Sessions</h2>") && html.contains("127.0.0.1"),
        "gina's session is listed"
    );
    let csrf = common::hidden_field(&html, "csrf");

    // The token of another session (another browser of the same admin, or one an attacker on a
    // sibling subdomain minted and planted as a cookie) is refused.
    let other_browser = h.sign_in("admin", common::ADMIN_PASSWORD).await.unwrap();
    let other_page = h
        .http
        .get(h.url("/.portcullis/admin/users/gina"))
        .header(COOKIE, format!("_portcullis={other_browser}"))
        .send()
        .await
        .unwrap();
    let other_csrf = common::hidden_field(&other_page.text().await.unwrap(), "csrf");
    assert_ne!(other_csrf, csrf);
    for planted in [
        other_csrf.as_str(),
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ] {
        let refused = h
            .http
            .post(h.url("/.portcullis/admin/users/gina/sessions/end-all"))
            .header(
                COOKIE,
                format!("_portcullis={admin_cookie}; _portcullis_csrf={planted}"),
            )
            .form(&[("csrf", planted)])
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), StatusCode::FORBIDDEN, "{planted}");
    }

    let ended = h
        .http
        .post(h.url("/.portcullis/admin/users/gina/sessions/end-all"))
        .header(COOKIE, format!("_portcullis={admin_cookie}"))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(ended.status(), StatusCode::SEE_OTHER);
    let gina_page = h
        .http
        .get(h.url("/anything"))
        .header(COOKIE, format!("_portcullis={gina}"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(gina_page.status(), StatusCode::UNAUTHORIZED);
    h.running.shutdown().await;
}

#[tokio::test]
async fn sessions_are_listed_and_ended_by_admins_and_by_their_owners() {
    let h = Harness::start("[[apps]]\nname = 'chat'\nupstream = '{upstream}'\n").await;
    let admin = Api {
        h: &h,
        cookie: Some(h.setup_admin().await),
        key: None,
    };
    h.add_user("hank", None, None, Role::User, &[]).await;
    let laptop = h.sign_in("hank", "user-password-1").await.unwrap();
    let phone = h.sign_in("hank", "user-password-1").await.unwrap();
    let tablet = h.sign_in("hank", "user-password-1").await.unwrap();
    let hank = Api {
        h: &h,
        cookie: Some(laptop.clone()),
        key: None,
    };

    let (status, listed) = admin
        .call(Method::GET, "/.portcullis/api/v1/users/hank/sessions", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed["sessions"].as_array().unwrap().len(), 3);

    // The owner sees their sessions, the current one marked, and ends another one.
    let (_, mine) = hank
        .call(Method::GET, "/.portcullis/api/v1/me/sessions", None)
        .await;
    let mine = mine["sessions"].as_array().unwrap().clone();
    let current: Vec<_> = mine.iter().filter(|s| s["current"] == true).collect();
    assert_eq!(current.len(), 1);
    let phone_id = portcullis_auth::secret::token_hash(&phone);
    let (status, _) = hank
        .call(
            Method::DELETE,
            &format!("/.portcullis/api/v1/me/sessions/{phone_id}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let phone_api = Api {
        h: &h,
        cookie: Some(phone),
        key: None,
    };
    assert_eq!(
        phone_api
            .call(Method::GET, "/.portcullis/api/v1/me", None)
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );

    // Nobody ends someone else's session through self-service.
    let admin_sessions = admin
        .call(Method::GET, "/.portcullis/api/v1/me/sessions", None)
        .await
        .1;
    let admin_id = admin_sessions["sessions"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _) = hank
        .call(
            Method::DELETE,
            &format!("/.portcullis/api/v1/me/sessions/{admin_id}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // An admin ends one, then all.
    let tablet_id = portcullis_auth::secret::token_hash(&tablet);
    assert_eq!(
        admin
            .call(
                Method::DELETE,
                &format!("/.portcullis/api/v1/sessions/{tablet_id}"),
                None
            )
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    let tablet_api = Api {
        h: &h,
        cookie: Some(tablet),
        key: None,
    };
    assert_eq!(
        tablet_api
            .call(Method::GET, "/.portcullis/api/v1/me", None)
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        admin
            .call(
                Method::DELETE,
                "/.portcullis/api/v1/users/hank/sessions",
                None
            )
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        hank.call(Method::GET, "/.portcullis/api/v1/me", None)
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        admin
            .call(Method::GET, "/.portcullis/api/v1/me", None)
            .await
            .0,
        StatusCode::OK,
        "the admin's own session is untouched"
    );
    let (_, after) = admin
        .call(Method::GET, "/.portcullis/api/v1/users/hank/sessions", None)
        .await;
    assert_eq!(after["sessions"], json!([]));
    h.running.shutdown().await;
}

#[tokio::test]
async fn the_account_page_shows_and_manages_ones_own_sessions_and_keys() {
    let h = Harness::start("[[apps]]\nname = 'chat'\nupstream = '{upstream}'\n").await;
    h.setup_admin().await;
    h.add_user(
        "ivy",
        Some("ivy@example.com"),
        Some("Ivy I"),
        Role::User,
        &["staff"],
    )
    .await;
    let old = h.sign_in("ivy", "user-password-1").await.unwrap();
    let current = h.sign_in("ivy", "user-password-1").await.unwrap();
    let get = || {
        h.http
            .get(h.url("/.portcullis/account"))
            .header(COOKIE, format!("_portcullis={current}"))
            .send()
    };
    let page = get().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("Ivy I") && html.contains("staff") && html.contains("this browser"),
        "{html}"
    );
    assert!(!html.contains(">Users<"), "no admin navigation for a user");
    let csrf = common::hidden_field(&html, "csrf");
    let cookies = format!("_portcullis={current}");
    let post = |path: String, form: Vec<(&'static str, String)>| {
        h.http
            .post(h.url(&path))
            .header(COOKIE, cookies.clone())
            .form(&form)
            .send()
    };

    // Create a key: shown once on the page.
    let created = post(
        "/.portcullis/account/keys".into(),
        vec![
            ("csrf", csrf.clone()),
            ("name", "laptop".into()),
            ("apps", "chat".into()),
            ("expires_days", "30".into()),
        ],
    )
    .await
    .unwrap();
    let html = created.text().await.unwrap();
    assert!(html.contains("Copy it now") && html.contains("pcs_"));
    let key = h
        .running
        .state
        .store
        .keys_of(&common::uuid_like("ivy"))
        .await
        .unwrap();
    assert_eq!(key.len(), 1);

    // End the other session; revoke the key.
    let old_id = portcullis_auth::secret::token_hash(&old);
    let ended = post(
        format!("/.portcullis/account/sessions/{old_id}/end"),
        vec![("csrf", csrf.clone())],
    )
    .await
    .unwrap();
    assert_eq!(ended.status(), StatusCode::SEE_OTHER);
    let old_status = h
        .http
        .get(h.url("/x"))
        .header(COOKIE, format!("_portcullis={old}"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(old_status.status(), StatusCode::UNAUTHORIZED);
    let revoked = post(
        format!("/.portcullis/account/keys/{}/revoke", key[0].id),
        vec![("csrf", csrf.clone())],
    )
    .await
    .unwrap();
    assert_eq!(revoked.status(), StatusCode::SEE_OTHER);
    assert!(
        h.running
            .state
            .store
            .active_keys()
            .await
            .unwrap()
            .is_empty()
    );

    // Without the token nothing happens.
    let forged = h
        .http
        .post(h.url(&format!(
            "/.portcullis/account/sessions/{}/end",
            portcullis_auth::secret::token_hash(&current)
        )))
        .header(COOKIE, format!("_portcullis={current}"))
        .form(&[("csrf", "guessed")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert_eq!(get().await.unwrap().status(), StatusCode::OK);
    h.running.shutdown().await;
}

#[tokio::test]
async fn groups_list_members_and_remove_hand_made_memberships() {
    let h = Harness::start("").await;
    let admin_cookie = h.setup_admin().await;
    let admin = Api {
        h: &h,
        cookie: Some(admin_cookie.clone()),
        key: None,
    };
    h.add_user("jo", None, Some("Jo J"), Role::User, &["ops", "ml"])
        .await;
    h.add_user("kim", None, None, Role::User, &["ops"]).await;
    // A membership synced from a provider, apart from the hand-made ones.
    let state = &h.running.state;
    state
        .store
        .sync_groups(
            &common::uuid_like("kim"),
            "provider:corp",
            &["ml".into()],
            state.clock.now(),
        )
        .await
        .unwrap();

    let (_, groups) = admin.call(Method::GET, "/api/v1/groups", None).await;
    assert_eq!(
        groups["groups"],
        json!([{"name": "ml", "members": 2}, {"name": "ops", "members": 2}])
    );
    let (_, ml) = admin.call(Method::GET, "/api/v1/groups/ml", None).await;
    let sources: Vec<(&str, &str)> = ml["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["user"]["username"].as_str().unwrap(),
                m["source"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(sources, [("jo", "local"), ("kim", "provider:corp")]);
    assert_eq!(
        admin.call(Method::GET, "/api/v1/groups/nope", None).await.0,
        StatusCode::NOT_FOUND
    );

    // Hand-made memberships can be removed; provider ones follow the provider.
    assert_eq!(
        admin
            .call(Method::DELETE, "/api/v1/users/jo/groups/ml", None)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    let (status, body) = admin
        .call(Method::DELETE, "/api/v1/users/kim/groups/ml", None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("provider memberships follow the provider")
    );

    // The group page lists members with their source.
    let page = h
        .http
        .get(h.url("/.portcullis/admin/groups/ml"))
        .header(COOKIE, format!("_portcullis={admin_cookie}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("provider:corp") && page.contains(">kim<") && !page.contains(">jo<"),
        "{page}"
    );
    h.running.shutdown().await;
}

#[tokio::test]
async fn the_outbox_is_for_admins() {
    let h = Harness::start("").await;
    let admin = Api {
        h: &h,
        cookie: Some(h.setup_admin().await),
        key: None,
    };
    h.add_user("lu", None, None, Role::User, &[]).await;
    let lu = Api {
        h: &h,
        cookie: Some(h.sign_in("lu", "user-password-1").await.unwrap()),
        key: None,
    };
    let anonymous = Api {
        h: &h,
        cookie: None,
        key: None,
    };
    for (method, path) in [
        (Method::GET, "/api/v1/outbox"),
        (Method::POST, "/api/v1/outbox/retry"),
        (Method::POST, "/api/v1/outbox/discard"),
    ] {
        let (status, _) = lu.call(method.clone(), path, Some(json!({}))).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
        let (status, _) = anonymous.call(method, path, Some(json!({}))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
    }
    let (status, listing) = admin.call(Method::GET, "/api/v1/outbox", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (
            listing["dead"].as_u64(),
            listing["deliveries"].as_array().map(Vec::len)
        ),
        (Some(0), Some(0))
    );
    let (status, _) = admin
        .call(Method::GET, "/api/v1/outbox?state=lost", None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, retried) = admin
        .call(Method::POST, "/api/v1/outbox/retry", Some(json!({})))
        .await;
    assert_eq!(
        (status, retried["count"].as_u64()),
        (StatusCode::OK, Some(0))
    );
    // Audited with who and from where, like every admin action.
    let audit = h.running.state.store.recent_audit(5).await.unwrap();
    let entry = audit
        .iter()
        .find(|e| e.action == "outbox_retried")
        .expect("the retry is audited");
    assert_eq!(entry.subject.as_deref(), Some("0 dead letter(s)"));
    assert_eq!(entry.client_ip.as_deref(), Some("127.0.0.1"));
    let (status, body) = admin
        .call(
            Method::POST,
            "/api/v1/outbox/discard",
            Some(json!({"sink": "hook"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    h.running.shutdown().await;
}

#[tokio::test]
async fn shared_paths_follow_the_host_routing_resolves() {
    // An app on its own host (seen through a trusted proxy's X-Forwarded-Host) gets its /api/v1.
    let h = Harness::start(
        "trusted_proxies = ['127.0.0.1/32']\n[[apps]]\nname = 'n8n'\nhost = 'n8n.example.com'\n\
         upstream = '{upstream}'\nskip_auth = [{ path = '^/api/v1/' }]\n",
    )
    .await;
    let theirs = h
        .http
        .get(h.url("/api/v1/workflows"))
        .header("x-forwarded-host", "n8n.example.com")
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(theirs.status(), StatusCode::OK);
    let echo: Value = theirs.json().await.unwrap();
    assert_eq!(echo["path"], "/api/v1/workflows");
    // Portcullis's own host: Portcullis's API.
    let ours = h.http.get(h.url("/api/v1/me")).send().await.unwrap();
    assert_eq!(ours.status(), StatusCode::UNAUTHORIZED);
    let body: Value = ours.json().await.unwrap();
    assert_eq!(body["error"], "unauthenticated");
    h.running.shutdown().await;
}
