//! Editing and deleting users through the API and the admin pages: validated fields, conflicts
//! named, values kept on an error, and a deletion that ends everything the user had.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure report

mod common;

use common::{Harness, call, hidden_field};
use portcullis_core::Role;
use reqwest::header::COOKIE;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

#[tokio::test]
async fn admins_edit_and_delete_users_through_the_api() {
    let h = Harness::start("[[apps]]\nname = 'chat'\nupstream = '{upstream}'\n").await;
    let admin = h.setup_admin().await;
    h.add_user(
        "hana",
        Some("hana@example.com"),
        Some("Hana H"),
        Role::User,
        &[],
    )
    .await;
    h.add_user("ivan", Some("ivan@example.com"), None, Role::User, &[])
        .await;
    let hana = h.sign_in("hana", "user-password-1").await.unwrap();
    let path = "/.portcullis/api/v1/users/hana";

    for (body, status, says) in [
        (
            json!({"email": "not-an-address"}),
            StatusCode::BAD_REQUEST,
            "email",
        ),
        (
            json!({"email": "ivan@example.com"}),
            StatusCode::CONFLICT,
            "email",
        ),
        (
            json!({"username": "ivan"}),
            StatusCode::CONFLICT,
            "username",
        ),
        (
            json!({"username": "has space"}),
            StatusCode::BAD_REQUEST,
            "username",
        ),
        (
            json!({"nickname": "x"}),
            StatusCode::BAD_REQUEST,
            "nickname",
        ),
    ] {
        let (got, answer) = call(&h, &admin, Method::PATCH, path, Some(body.clone())).await;
        assert_eq!(got, status, "{body}: {answer}");
        assert!(
            answer["message"].as_str().unwrap().contains(says),
            "{body}: {answer}"
        );
    }
    let (status, _) = call(
        &h,
        &hana,
        Method::PATCH,
        path,
        Some(json!({"display_name": "x"})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let (status, user) = call(
        &h,
        &admin,
        Method::PATCH,
        path,
        Some(json!({"username": "hana.h", "email": "hana.h@example.com", "display_name": ""})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{user}");
    assert_eq!(user["username"], "hana.h");
    assert_eq!(user["email"], "hana.h@example.com");
    assert!(
        user["display_name"].is_null(),
        "an empty display name removes it"
    );
    let echo = h.echo("/chat", &hana).await;
    assert_eq!(
        common::received(&echo, "x-forwarded-user"),
        ["hana.h"],
        "running sessions carry the new name at once"
    );

    let (status, answer) = call(
        &h,
        &admin,
        Method::DELETE,
        "/.portcullis/api/v1/users/admin",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("your own account"),
        "{answer}"
    );
    let (status, _) = call(
        &h,
        &admin,
        Method::DELETE,
        "/.portcullis/api/v1/users/hana.h",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = call(&h, &hana, Method::GET, "/.portcullis/api/v1/me", None).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the deleted user's session is gone"
    );
    let (status, _) = call(
        &h,
        &admin,
        Method::GET,
        "/.portcullis/api/v1/users/hana.h",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = call(
        &h,
        &admin,
        Method::DELETE,
        "/.portcullis/api/v1/users/hana.h",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (_, audit) = call(
        &h,
        &admin,
        Method::GET,
        "/.portcullis/api/v1/audit?limit=50",
        None,
    )
    .await;
    let actions: Vec<String> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{} {} {}",
                e["action"].as_str().unwrap(),
                e["subject"].as_str().unwrap_or(""),
                e["reason"].as_str().unwrap_or("")
            )
        })
        .collect();
    for expected in ["user_updated hana.h was hana", "user_deleted hana.h "] {
        assert!(
            actions.iter().any(|a| a.starts_with(expected)),
            "{expected} in {actions:?}"
        );
    }
}

#[tokio::test]
async fn the_admin_page_edits_a_profile_inline_and_confirms_a_deletion() {
    let h = Harness::start("").await;
    let admin = h.setup_admin().await;
    h.add_user("jo", Some("jo@example.com"), None, Role::User, &[])
        .await;
    let jo = h.sign_in("jo", "user-password-1").await.unwrap();
    let get = |path: &str| {
        h.http
            .get(h.url(path))
            .header(COOKIE, format!("_portcullis={admin}"))
            .send()
    };
    let page = get("/.portcullis/admin/users/jo")
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = hidden_field(&page, "csrf");
    let post = |path: &str, form: Vec<(&'static str, &str)>| {
        h.http
            .post(h.url(path))
            .header(COOKIE, format!("_portcullis={admin}"))
            .form(&form)
            .send()
    };

    let bad = post(
        "/.portcullis/admin/users/jo/profile",
        vec![
            ("csrf", &csrf),
            ("username", "jo"),
            ("email", "jo at example"),
            ("display_name", "Jo Kept"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let html = bad.text().await.unwrap();
    assert!(
        html.contains("id=\"profile_email-error\">This is not an email address"),
        "{html}"
    );
    assert!(
        html.contains("value=\"jo at example\"") && html.contains("value=\"Jo Kept\""),
        "what was typed is kept"
    );

    let taken = post(
        "/.portcullis/admin/users/jo/profile",
        vec![
            ("csrf", &csrf),
            ("username", "admin"),
            ("email", ""),
            ("display_name", ""),
        ],
    )
    .await
    .unwrap();
    assert_eq!(taken.status(), StatusCode::BAD_REQUEST);
    assert!(
        taken
            .text()
            .await
            .unwrap()
            .contains("id=\"profile_username-error\"")
    );

    let saved = post(
        "/.portcullis/admin/users/jo/profile",
        vec![
            ("csrf", &csrf),
            ("username", "joanna"),
            ("email", "joanna@example.com"),
            ("display_name", "Joanna"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(saved.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        saved.headers()["location"],
        "/.portcullis/admin/users/joanna?done=profile"
    );

    let confirm = get("/.portcullis/admin/users/joanna/delete").await.unwrap();
    assert_eq!(confirm.status(), StatusCode::OK);
    let html = confirm.text().await.unwrap();
    assert!(
        html.contains("Delete joanna?") && html.contains("cannot be undone"),
        "{html}"
    );
    let forged = post(
        "/.portcullis/admin/users/joanna/delete",
        vec![("csrf", "forged")],
    )
    .await
    .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let deleted = post(
        "/.portcullis/admin/users/joanna/delete",
        vec![("csrf", &csrf)],
    )
    .await
    .unwrap();
    assert_eq!(deleted.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        deleted.headers()["location"],
        "/.portcullis/admin/users?done=deleted"
    );
    let (status, _) = call(&h, &jo, Method::GET, "/.portcullis/api/v1/me", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let list = get("/.portcullis/admin/users?done=deleted")
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        list.contains("User deleted") && !list.contains("joanna"),
        "{list}"
    );
}

#[tokio::test]
async fn pages_say_what_is_going_on_and_have_a_way_out() {
    let h = Harness::start("").await;
    let sign_in_page = || async {
        h.http
            .get(h.url("/.portcullis/sign_in"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let before = sign_in_page().await;
    assert!(before.contains("Portcullis is not set up yet"), "{before}");
    assert!(
        before.contains("value=\"\" autofocus"),
        "the login field has the focus: {before}"
    );
    let admin = h.setup_admin().await;
    assert!(
        !sign_in_page().await.contains("not set up yet"),
        "said only while setup is pending"
    );

    h.add_user("kim", None, None, Role::User, &[]).await;
    let refused = h.sign_in("kim", "wrong password").await.unwrap_err();
    let html = refused.text().await.unwrap();
    assert!(
        html.contains("required autofocus aria-describedby=\"sign-in-error\""),
        "the password field is next: {html}"
    );

    let kim = h.sign_in("kim", "user-password-1").await.unwrap();
    let forbidden = h
        .http
        .get(h.url("/.portcullis/admin/users"))
        .header(COOKIE, format!("_portcullis={kim}"))
        .send()
        .await
        .unwrap();
    assert_eq!(forbidden.status(), StatusCode::FORBIDDEN);
    assert!(
        forbidden
            .text()
            .await
            .unwrap()
            .contains("Sign out and use another account")
    );
    for _ in 0..6 {
        let _ = h.sign_in("kim", "wrong password").await;
    }
    let throttled = h.sign_in("kim", "wrong password").await.unwrap_err();
    assert_eq!(throttled.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(throttled.text().await.unwrap().contains("Back to sign-in"));

    let account = h
        .http
        .get(h.url("/.portcullis/account"))
        .header(COOKIE, format!("_portcullis={kim}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(account.contains("No API keys yet."), "{account}");
    let user_page = h
        .http
        .get(h.url("/.portcullis/admin/users/kim"))
        .header(COOKIE, format!("_portcullis={admin}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        user_page.contains("No linked identities") && user_page.contains("No API keys."),
        "{user_page}"
    );
}

#[tokio::test]
async fn groups_are_created_and_deleted_on_the_groups_page() {
    let h = Harness::start("").await;
    let admin = h.setup_admin().await;
    h.add_user("lee", None, None, Role::User, &["ops"]).await;
    let lee = h.sign_in("lee", "user-password-1").await.unwrap();
    let get = |path: &str| {
        h.http
            .get(h.url(path))
            .header(COOKIE, format!("_portcullis={admin}"))
            .send()
    };
    let page = get("/.portcullis/admin/groups")
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = hidden_field(&page, "csrf");
    let create = |name: &'static str| {
        h.http
            .post(h.url("/.portcullis/admin/groups"))
            .header(COOKIE, format!("_portcullis={admin}"))
            .form(&[("csrf", csrf.as_str()), ("group_name", name)])
            .send()
    };
    let bad = create("a,b").await.unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let html = bad.text().await.unwrap();
    assert!(
        html.contains("id=\"group_name-error\">a group name is non-empty and has no commas"),
        "{html}"
    );
    assert!(html.contains("value=\"a,b\""), "what was typed is kept");
    let made = create("reviewers").await.unwrap();
    assert_eq!(made.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        made.headers()["location"],
        "/.portcullis/admin/groups/reviewers"
    );
    let again = create("reviewers").await.unwrap();
    assert!(again.text().await.unwrap().contains("exists already"));
    let empty = get("/.portcullis/admin/groups/reviewers")
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        empty.contains("No members.") && empty.contains("Delete this group…"),
        "{empty}"
    );

    let (_, me) = call(&h, &lee, Method::GET, "/.portcullis/api/v1/me", None).await;
    assert_eq!(me["identity"]["groups"], json!(["ops"]));
    let deleted = h
        .http
        .post(h.url("/.portcullis/admin/groups/ops/delete"))
        .header(COOKIE, format!("_portcullis={admin}"))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::SEE_OTHER);
    let (_, me) = call(&h, &lee, Method::GET, "/.portcullis/api/v1/me", None).await;
    assert_eq!(
        me["identity"]["groups"],
        json!([]),
        "the member's session loses the group at once"
    );
    let list = get("/.portcullis/admin/groups?done=deleted")
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        list.contains("Group deleted") && list.contains("reviewers") && !list.contains(">ops<"),
        "{list}"
    );
}

#[tokio::test]
async fn the_audit_log_is_filtered_by_user_action_and_time() {
    let h = Harness::start("").await;
    let admin = h.setup_admin().await;
    h.add_user("mia", None, None, Role::User, &[]).await;
    h.add_user("ned", None, None, Role::User, &[]).await;
    let _ = h.sign_in("mia", "user-password-1").await.unwrap();
    let _ = h.sign_in("ned", "wrong password").await;
    let (status, _) = call(
        &h,
        &admin,
        Method::PATCH,
        "/.portcullis/api/v1/users/ned",
        Some(json!({"role": "admin"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    let api = |query: &'static str| call(&h, &admin, Method::GET, query, None);
    let subjects = |body: &Value| -> Vec<String> {
        body["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                format!(
                    "{} {}",
                    e["action"].as_str().unwrap(),
                    e["subject"].as_str().unwrap_or("")
                )
            })
            .collect()
    };
    let (_, by_ned) = api("/.portcullis/api/v1/audit?user=ned").await;
    assert_eq!(
        subjects(&by_ned),
        ["role_changed ned", "sign_in ned"],
        "{by_ned}"
    );
    let (_, sign_ins) = api("/.portcullis/api/v1/audit?action=sign_in").await;
    assert!(
        subjects(&sign_ins)
            .iter()
            .all(|s| s.starts_with("sign_in ")),
        "{sign_ins}"
    );
    assert_eq!(subjects(&sign_ins).len(), 3, "admin, mia, ned: {sign_ins}");
    let (_, by_admin) = api("/.portcullis/api/v1/audit?user=admin&action=role_changed").await;
    assert_eq!(
        subjects(&by_admin),
        ["role_changed ned"],
        "the admin's own actions count as theirs"
    );
    let (_, future) = api("/.portcullis/api/v1/audit?since=4102444800").await;
    assert!(subjects(&future).is_empty());
    let (status, unknown) = api("/.portcullis/api/v1/audit?user=nobody").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{unknown}");

    let page = |query: &'static str| {
        let h = &h;
        let admin = admin.clone();
        async move {
            let response = h
                .http
                .get(h.url(&format!("/.portcullis/admin/audit{query}")))
                .header(COOKIE, format!("_portcullis={admin}"))
                .send()
                .await
                .unwrap();
            (response.status(), response.text().await.unwrap())
        }
    };
    let (status, html) = page("?user=mia&action=&since=&until=").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains("<td>mia</td>") && !html.contains("<td>ned</td>"),
        "{html}"
    );
    assert!(
        html.contains("id=\"user\" name=\"user\" type=\"text\" value=\"mia\""),
        "the filter stays filled in"
    );
    let (_, none) = page("?since=2100-01-01").await;
    assert!(none.contains("No entries match."), "{none}");
    let (status, bad) = page("?since=yesterday").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(bad.contains("is not a date like 2026-12-01"), "{bad}");
}
