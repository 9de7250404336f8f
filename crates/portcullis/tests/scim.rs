//! The SCIM server: the third-party checker (PyPI scim2-cli's `scim test`, pinned in
//! tests/scim/requirements.txt) against a running Portcullis, then the request sequences Entra ID
//! and Okta send, as recorded from their documentation and logs.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure report

mod common;

use std::path::Path;

use common::Harness;
use portcullis_auth::session::SessionOrigin;
use portcullis_core::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};

const TOKEN: &str = "scim-token-0123456789abcdefghijklmnopqrstuv";

fn config() -> String {
    format!("[scim]\ntoken = '{TOKEN}'\n")
}

struct Scim<'a> {
    h: &'a Harness,
}

impl Scim<'_> {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .h
            .http
            .request(method, self.h.url(&format!("/scim/v2{path}")))
            .bearer_auth(TOKEN);
        if let Some(body) = body {
            request = request
                .header("content-type", "application/scim+json")
                .body(body.to_string());
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

#[tokio::test]
async fn the_scim2_cli_compliance_checker_passes() {
    let h = Harness::start(&config()).await;
    let scim = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/scim-venv/bin/scim");
    let output = tokio::process::Command::new(&scim)
        .arg("--url")
        .arg(h.url("/scim/v2"))
        .args(["test"])
        .env("SCIM_CLI_HEADERS", format!("Authorization: Bearer {TOKEN}"))
        .output()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (scripts/install-test-deps installs it)",
                scim.display()
            )
        });
    let report = String::from_utf8_lossy(&output.stdout);
    let passed = report.lines().filter(|l| l.starts_with("SUCCESS")).count();
    let failed: Vec<&str> = report
        .lines()
        .filter(|l| l.starts_with("ERROR") || l.starts_with("CRITICAL"))
        .collect();
    assert!(
        failed.is_empty() && passed >= 60,
        "{passed} checks passed, failures: {failed:?}\n{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    h.running.shutdown().await;
}

#[tokio::test]
async fn entra_and_okta_provisioning_sequences() {
    let h = Harness::start(&config()).await;
    let scim = Scim { h: &h };
    use reqwest::Method as M;

    // No token, a wrong token: 401 with a SCIM error body.
    let anonymous = h.http.get(h.url("/scim/v2/Users")).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let body: Value = anonymous.json().await.unwrap();
    assert_eq!(
        body["schemas"][0],
        "urn:ietf:params:scim:api:messages:2.0:Error"
    );

    // Entra: look the user up, create them, then patch them its way.
    let (status, found) = scim
        .call(
            M::GET,
            "/Users?filter=userName%20eq%20%22ada%40example.com%22",
            None,
        )
        .await;
    assert_eq!(
        (status, found["totalResults"].as_u64()),
        (StatusCode::OK, Some(0))
    );
    let (status, ada) = scim
        .call(
            M::POST,
            "/Users",
            Some(json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "externalId": "8c2a1f0e-entra-object-id", "userName": "ada@example.com", "active": true,
                "displayName": "Ada Lovelace",
                "emails": [{"primary": true, "type": "work", "value": "ada@example.com"}],
                "name": {"formatted": "Ada Lovelace", "familyName": "Lovelace", "givenName": "Ada"},
            })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{ada}");
    let id = ada["id"].as_str().unwrap().to_owned();
    assert_eq!(
        ada["meta"]["location"],
        h.url(&format!("/scim/v2/Users/{id}")),
        "an absolute location at the address the client used"
    );
    let (status, again) = scim
        .call(
            M::POST,
            "/Users",
            Some(json!({"userName": "ada@example.com"})),
        )
        .await;
    assert_eq!(
        (status, again["scimType"].as_str()),
        (StatusCode::CONFLICT, Some("uniqueness"))
    );
    let (_, by_external) = scim
        .call(
            M::GET,
            "/Users?filter=externalId%20eq%20%228c2a1f0e-entra-object-id%22",
            None,
        )
        .await;
    assert_eq!(by_external["Resources"][0]["id"], id.as_str());
    let (status, patched) = scim
        .call(
            M::PATCH,
            &format!("/Users/{id}"),
            Some(json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [
                    {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "ada.l@example.com"},
                    {"op": "Replace", "path": "displayName", "value": "Ada King"},
                ],
            })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["emails"][0]["value"], "ada.l@example.com");
    assert_eq!(patched["displayName"], "Ada King");

    // Groups: created, members added, one removed the Entra way (a value array).
    h.add_user("bob", Some("bob@example.com"), None, Role::User, &[])
        .await;
    let bob = common::uuid_like("bob");
    let (status, listed) = scim
        .call(
            M::GET,
            "/Groups?filter=displayName%20eq%20%22Engineers%22&excludedAttributes=members",
            None,
        )
        .await;
    assert_eq!(
        (status, listed["totalResults"].as_u64()),
        (StatusCode::OK, Some(0))
    );
    let (status, group) = scim
        .call(
            M::POST,
            "/Groups",
            Some(json!({"displayName": "Engineers", "externalId": "g-1", "members": []})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{group}");
    let gid = group["id"].as_str().unwrap().to_owned();
    let (status, _) = scim
        .call(
            M::PATCH,
            &format!("/Groups/{gid}"),
            Some(json!({"Operations": [{"op": "Add", "path": "members", "value": [{"value": id}, {"value": bob}]}]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, group) = scim.call(M::GET, &format!("/Groups/{gid}"), None).await;
    assert_eq!(group["members"].as_array().unwrap().len(), 2);
    let (status, group) = scim
        .call(
            M::PATCH,
            &format!("/Groups/{gid}"),
            Some(json!({"Operations": [{"op": "Remove", "path": "members", "value": [{"value": bob}]}]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let members: Vec<&str> = group["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["value"].as_str().unwrap())
        .collect();
    assert_eq!(members, [id.as_str()], "bob removed, ada kept");
    assert!(
        group["members"][0]["$ref"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/scim/v2/Users/{id}"))
    );
    let (_, without) = scim
        .call(
            M::GET,
            &format!("/Groups/{gid}?excludedAttributes=members"),
            None,
        )
        .await;
    assert!(without.get("members").is_none());
    // The directory sees the SCIM membership.
    let (_, ada_now) = scim.call(M::GET, &format!("/Users/{id}"), None).await;
    assert_eq!(ada_now["groups"][0]["display"], "Engineers");

    // Entra deactivates with the string "False"; ada's session ends at once.
    let state = &h.running.state;
    let user = state.store.user_by_id(&id).await.unwrap().unwrap();
    let (cookie, _) = state
        .sessions
        .create(&user, SessionOrigin::default())
        .await
        .unwrap();
    let me = |cookie: String| {
        h.http
            .get(h.url("/.portcullis/api/v1/me"))
            .header("cookie", format!("_portcullis={cookie}"))
            .send()
    };
    assert_eq!(me(cookie.clone()).await.unwrap().status(), StatusCode::OK);
    let (status, _) = scim
        .call(
            M::PATCH,
            &format!("/Users/{id}"),
            Some(json!({"Operations": [{"op": "Replace", "path": "active", "value": "False"}]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, ada_now) = scim.call(M::GET, &format!("/Users/{id}"), None).await;
    assert_eq!(ada_now["active"], false);
    assert_eq!(
        me(cookie).await.unwrap().status(),
        StatusCode::UNAUTHORIZED,
        "deactivation ends the session"
    );

    // Okta: PUT for updates, and a path-less replace of active.
    let (status, okta) = scim
        .call(
            M::POST,
            "/Users",
            Some(json!({"userName": "otto@example.com", "name": {"givenName": "Otto", "familyName": "Okta"},
                        "emails": [{"primary": true, "value": "otto@example.com", "type": "work"}], "active": true})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{okta}");
    assert_eq!(okta["displayName"], "Otto Okta", "given + family name");
    let oid = okta["id"].as_str().unwrap().to_owned();
    let (status, put) = scim
        .call(
            M::PUT,
            &format!("/Users/{oid}"),
            Some(
                json!({"userName": "otto@example.com", "displayName": "Otto O.", "active": true,
                        "emails": [{"value": "otto@example.com", "primary": true}]}),
            ),
        )
        .await;
    assert_eq!(
        (status, put["displayName"].as_str()),
        (StatusCode::OK, Some("Otto O."))
    );
    let (status, off) = scim
        .call(
            M::PATCH,
            &format!("/Users/{oid}"),
            Some(
                json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                        "Operations": [{"op": "replace", "value": {"active": false}}]}),
            ),
        )
        .await;
    assert_eq!(
        (status, off["active"].as_bool()),
        (StatusCode::OK, Some(false))
    );

    // Bad input gets SCIM errors that say what is wrong.
    for (path, body, scim_type) in [
        (
            "/Users?filter=userName%20co%20%22a%22",
            None,
            "invalidFilter",
        ),
        (
            "/Users",
            Some(json!({"displayName": "no user name"})),
            "invalidValue",
        ),
        ("/Users", Some(json!({"userName": "x y"})), "invalidValue"),
    ] {
        let method = if body.is_some() { M::POST } else { M::GET };
        let (status, error) = scim.call(method, path, body).await;
        assert_eq!(
            (status, error["scimType"].as_str()),
            (StatusCode::BAD_REQUEST, Some(scim_type)),
            "{path}: {error}"
        );
    }
    let (status, _) = scim.call(M::GET, "/Users/no-such-id", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = scim.call(M::DELETE, &format!("/Users/{oid}"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = scim.call(M::GET, &format!("/Users/{oid}"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Every SCIM write is in the audit trail, by the SCIM client, like any other change.
    let trail: Vec<(String, String, String)> = state
        .store
        .audit_page(&Default::default(), 500)
        .await
        .unwrap()
        .into_iter()
        .filter(|(_, e)| e.actor.as_deref() == Some("scim"))
        .map(|(_, e)| {
            (
                e.action,
                e.subject.unwrap_or_default(),
                e.reason.unwrap_or_default(),
            )
        })
        .collect();
    for expected in [
        ("user_created", "ada@example.com", "user"),
        ("user_updated", "ada@example.com", ""),
        ("group_created", "Engineers", ""),
        ("group_added", "bob", "Engineers"),
        ("group_removed", "bob", "Engineers"),
        ("user_disabled", "ada@example.com", "disabled"),
        (
            "external_id_changed",
            "ada@example.com",
            "8c2a1f0e-entra-object-id",
        ),
        ("user_deleted", "otto@example.com", ""),
    ] {
        assert!(
            trail
                .iter()
                .any(|(a, s, r)| (a.as_str(), s.as_str(), r.as_str()) == expected),
            "{expected:?} is not in the SCIM audit trail: {trail:?}"
        );
    }
    h.running.shutdown().await;
}

/// The `scim` sink pushes users and memberships into another SCIM server — here a second, real
/// Portcullis playing the downstream app.
#[tokio::test]
async fn the_scim_sink_keeps_a_downstream_scim_app_in_step() {
    let downstream = Harness::start(&config()).await;
    let h = Harness::start(&format!(
        "[[sinks]]\nid = 'app'\nkind = 'scim'\nurl = '{}'\ntoken = '{TOKEN}'\n",
        downstream.url("/scim/v2")
    ))
    .await;
    h.add_user(
        "sam",
        Some("sam@example.com"),
        Some("Sam S"),
        Role::User,
        &["ops"],
    )
    .await;
    let sam = common::uuid_like("sam");
    let scim = Scim { h: &downstream };
    let remote = async || {
        let (_, found) = scim
            .call(
                reqwest::Method::GET,
                &format!("/Users?filter=externalId%20eq%20%22{sam}%22"),
                None,
            )
            .await;
        found["Resources"][0].clone()
    };
    let started = std::time::Instant::now();
    loop {
        let user = remote().await;
        if user["groups"][0]["display"] == "ops" {
            assert_eq!(user["userName"], "sam");
            assert_eq!(user["displayName"], "Sam S");
            assert_eq!(user["emails"][0]["value"], "sam@example.com");
            assert_eq!(user["active"], true);
            break;
        }
        assert!(
            started.elapsed().as_secs() < 30,
            "sam never arrived: {user}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    // Disabled here: deactivated there; out of the group here: out of it there.
    let actor = portcullis_auth::audit::Actor::new("test", None);
    let dir = &h.running.state.directory;
    dir.set_status("sam", portcullis_core::user::UserStatus::Disabled, &actor)
        .await
        .unwrap();
    h.running
        .state
        .store
        .set_membership(&sam, "ops", "local", false, h.running.state.clock.now())
        .await
        .unwrap();
    let started = std::time::Instant::now();
    loop {
        let user = remote().await;
        if user["active"] == false && user.get("groups").is_none() {
            break;
        }
        assert!(
            started.elapsed().as_secs() < 30,
            "sam was not updated: {user}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    h.running.shutdown().await;
    downstream.running.shutdown().await;
}
