//! The password lifecycle over HTTP: changing your own (API and account page), an admin
//! setting one with "must change at next sign-in", one-time reset links, and the policy's
//! refusals — each with the error a person can act on, the sessions it ends and its audit entry.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure report

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Harness, call, hidden_field, set_cookie_value};
use portcullis_core::{Clock, ManualClock, Role, Timestamp};
use reqwest::header::COOKIE;
use reqwest::{Method, StatusCode};
use serde_json::json;

/// Whether `cookie` is still a live session.
async fn signed_in(h: &Harness, cookie: &str) -> bool {
    call(h, cookie, Method::GET, "/.portcullis/api/v1/me", None)
        .await
        .0
        == StatusCode::OK
}

async fn audit_actions(h: &Harness, admin: &str) -> Vec<String> {
    let (_, body) = call(
        h,
        admin,
        Method::GET,
        "/.portcullis/api/v1/audit?limit=200",
        None,
    )
    .await;
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
}

#[tokio::test]
async fn people_change_their_own_password_and_other_sessions_end() {
    let h = Harness::start("").await;
    let admin = h.setup_admin().await;
    h.add_user("carol", Some("carol@example.com"), None, Role::User, &[])
        .await;
    let here = h.sign_in("carol", "user-password-1").await.unwrap();
    let elsewhere = h.sign_in("carol", "user-password-1").await.unwrap();
    let path = "/.portcullis/api/v1/me/password";

    let refusals = [
        (
            json!({"current_password": "wrong-one", "new_password": "a new phrase here"}),
            StatusCode::BAD_REQUEST,
            "not your current password",
        ),
        (
            json!({"current_password": "user-password-1", "new_password": "short"}),
            StatusCode::BAD_REQUEST,
            "at least 8 characters",
        ),
        (
            json!({"current_password": "user-password-1", "new_password": "Password123"}),
            StatusCode::BAD_REQUEST,
            "most common",
        ),
        (
            json!({"current_password": "user-password-1", "new_password": "carol@example.com"}),
            StatusCode::BAD_REQUEST,
            "username or email",
        ),
        (
            json!({"current_password": "user-password-1"}),
            StatusCode::BAD_REQUEST,
            "new_password",
        ),
    ];
    for (body, status, says) in refusals {
        let (got, answer) = call(&h, &here, Method::POST, path, Some(body.clone())).await;
        assert_eq!(got, status, "{body}: {answer}");
        assert!(
            answer["message"].as_str().unwrap().contains(says),
            "{body}: {answer}"
        );
    }
    assert!(
        signed_in(&h, &elsewhere).await,
        "refused changes end nothing"
    );

    let (status, answer) = call(
        &h,
        &here,
        Method::POST,
        path,
        Some(json!({"current_password": "user-password-1", "new_password": "tulips in the rain"})),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{answer}");
    assert!(
        signed_in(&h, &here).await,
        "the session that changed it stays"
    );
    assert!(!signed_in(&h, &elsewhere).await, "every other session ends");
    assert!(
        h.sign_in("carol", "user-password-1").await.is_err(),
        "the old password is gone"
    );
    assert!(h.sign_in("carol", "tulips in the rain").await.is_ok());
    assert!(
        audit_actions(&h, &admin)
            .await
            .contains(&"password_changed carol".to_owned())
    );

    // The account page's form: a wrong current password is shown next to the field, focused.
    let page = h
        .http
        .get(h.url("/.portcullis/account"))
        .header(COOKIE, format!("_portcullis={here}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = hidden_field(&page, "csrf");
    let change = |current: &'static str, password: &'static str, confirm: &'static str| {
        h.http
            .post(h.url("/.portcullis/account/password"))
            .header(COOKIE, format!("_portcullis={here}"))
            .form(&[
                ("csrf", csrf.as_str()),
                ("current_password", current),
                ("password", password),
                ("confirm", confirm),
            ])
            .send()
    };
    let wrong = change("nope", "another good phrase", "another good phrase")
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::BAD_REQUEST);
    let html = wrong.text().await.unwrap();
    assert!(
        html.contains("id=\"current_password-error\">That is not your current password."),
        "{html}"
    );
    assert!(html.contains("aria-invalid=\"true\" autofocus"), "{html}");
    let differ = change(
        "tulips in the rain",
        "another good phrase",
        "another good phrasE",
    )
    .await
    .unwrap();
    assert_eq!(differ.status(), StatusCode::BAD_REQUEST);
    let html = differ.text().await.unwrap();
    assert!(html.contains("The two new passwords differ"), "{html}");
    let changed = change(
        "tulips in the rain",
        "another good phrase",
        "another good phrase",
    )
    .await
    .unwrap();
    assert_eq!(changed.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        changed.headers()["location"],
        "/.portcullis/account?done=password"
    );
    assert!(h.sign_in("carol", "another good phrase").await.is_ok());
}

#[tokio::test]
async fn an_admin_sets_a_password_that_must_be_changed_at_the_next_sign_in() {
    let h = Harness::start("").await;
    let admin = h.setup_admin().await;
    h.add_user("dave", Some("dave@example.com"), None, Role::User, &[])
        .await;
    let dave = h.sign_in("dave", "user-password-1").await.unwrap();
    let path = "/.portcullis/api/v1/users/dave/password";

    let (status, answer) = call(
        &h,
        &dave,
        Method::PUT,
        path,
        Some(json!({"password": "a fine new phrase"})),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "only admins set others' passwords: {answer}"
    );
    let (status, answer) = call(
        &h,
        &admin,
        Method::PUT,
        path,
        Some(json!({"password": "12345678"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        answer["message"].as_str().unwrap().contains("most common"),
        "{answer}"
    );
    let (status, _) = call(
        &h,
        &admin,
        Method::PUT,
        "/.portcullis/api/v1/users/nobody/password",
        Some(json!({"password": "a fine new phrase"})),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, answer) = call(
        &h,
        &admin,
        Method::PUT,
        path,
        Some(json!({"password": "temporary phrase 1", "must_change": true})),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{answer}");
    assert!(
        !signed_in(&h, &dave).await,
        "setting someone's password ends their sessions"
    );
    let (_, user) = call(
        &h,
        &admin,
        Method::GET,
        "/.portcullis/api/v1/users/dave",
        None,
    )
    .await;
    assert_eq!(
        (
            user["user"]["has_password"].as_bool(),
            user["user"]["must_change_password"].as_bool()
        ),
        (Some(true), Some(true)),
        "{user}"
    );

    // Signing in with it gives no session: a new password comes first.
    let form = h
        .http
        .get(h.url("/.portcullis/sign_in"))
        .send()
        .await
        .unwrap();
    let csrf_cookie = set_cookie_value(&form, "_portcullis_csrf").unwrap();
    let csrf = hidden_field(&form.text().await.unwrap(), "csrf");
    let step = h
        .http
        .post(h.url("/.portcullis/sign_in"))
        .header(COOKIE, format!("_portcullis_csrf={csrf_cookie}"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("login", "dave"),
            ("password", "temporary phrase 1"),
            ("rd", "/after"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(step.status(), StatusCode::OK);
    assert!(
        set_cookie_value(&step, "_portcullis").is_none(),
        "no session before the new password"
    );
    let html = step.text().await.unwrap();
    assert!(
        html.contains("Your administrator asks you to choose a new password"),
        "{html}"
    );
    let pending = hidden_field(&html, "pending");
    let submit = |password: &'static str, confirm: &'static str, pending: String| {
        h.http
            .post(h.url("/.portcullis/sign_in/new_password"))
            .header(COOKIE, format!("_portcullis_csrf={csrf_cookie}"))
            .form(&[
                ("csrf", csrf.clone()),
                ("pending", pending),
                ("password", password.into()),
                ("confirm", confirm.into()),
            ])
            .send()
    };
    let weak = submit("dave@example.com", "dave@example.com", pending.clone())
        .await
        .unwrap();
    assert_eq!(weak.status(), StatusCode::BAD_REQUEST);
    assert!(
        weak.text()
            .await
            .unwrap()
            .contains("must not be your username or email")
    );
    let forged = submit("a brand new phrase", "a brand new phrase", "forged".into())
        .await
        .unwrap();
    assert_eq!(
        forged.status(),
        StatusCode::SEE_OTHER,
        "a forged step starts the sign-in over"
    );
    assert!(set_cookie_value(&forged, "_portcullis").is_none());
    let done = submit("a brand new phrase", "a brand new phrase", pending.clone())
        .await
        .unwrap();
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        done.headers()["location"],
        "/after",
        "on to where the sign-in was going"
    );
    let session =
        set_cookie_value(&done, "_portcullis").expect("a session once the password is new");
    assert!(signed_in(&h, &session).await);
    let again = submit("yet another phrase", "yet another phrase", pending)
        .await
        .unwrap();
    assert!(
        set_cookie_value(&again, "_portcullis").is_none(),
        "the step works once"
    );
    assert!(
        h.sign_in("dave", "a brand new phrase").await.is_ok(),
        "and no second change is asked for"
    );

    let actions = audit_actions(&h, &admin).await;
    for expected in ["password_set dave", "password_changed dave"] {
        assert!(
            actions.contains(&expected.to_owned()),
            "{expected} in {actions:?}"
        );
    }
}

fn now() -> Timestamp {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    Timestamp(i64::try_from(secs).unwrap())
}

#[tokio::test]
async fn reset_links_work_once_and_not_after_they_expire() {
    let clock = ManualClock::at(now());
    let h = Harness::start_with_clock(
        "[local_auth]\nreset_link_lifetime = '30m'\n",
        Arc::new(clock.clone()),
    )
    .await;
    let admin = h.setup_admin().await;
    h.add_user("erin", Some("erin@example.com"), None, Role::User, &[])
        .await;
    let erin = h.sign_in("erin", "user-password-1").await.unwrap();
    let issue = || {
        call(
            &h,
            &admin,
            Method::POST,
            "/.portcullis/api/v1/users/erin/reset-link",
            None,
        )
    };

    let (status, answer) = call(
        &h,
        &erin,
        Method::POST,
        "/.portcullis/api/v1/users/erin/reset-link",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    let (status, link) = issue().await;
    assert_eq!(status, StatusCode::CREATED, "{link}");
    let url = link["url"].as_str().unwrap().to_owned();
    assert!(
        url.starts_with(&format!("{}/.portcullis/reset?token=", h.base)),
        "{url}"
    );
    assert_eq!(link["expires_at"].as_i64(), Some(clock.now().0 + 1800));
    assert!(
        signed_in(&h, &erin).await,
        "a link changes nothing until it is used"
    );

    let form = h.http.get(&url).send().await.unwrap();
    assert_eq!(form.status(), StatusCode::OK);
    assert_eq!(
        form.headers()["referrer-policy"],
        "no-referrer",
        "the token never leaves in a Referer"
    );
    let csrf_cookie = set_cookie_value(&form, "_portcullis_csrf").unwrap();
    let html = form.text().await.unwrap();
    let csrf = hidden_field(&html, "csrf");
    let token = hidden_field(&html, "token");
    let submit = |token: String, password: &'static str, confirm: &'static str| {
        h.http
            .post(h.url("/.portcullis/reset"))
            .header(COOKIE, format!("_portcullis_csrf={csrf_cookie}"))
            .form(&[
                ("csrf", csrf.clone()),
                ("token", token),
                ("password", password.into()),
                ("confirm", confirm.into()),
            ])
            .send()
    };
    let differ = submit(token.clone(), "a recovered phrase", "a different phrase")
        .await
        .unwrap();
    assert_eq!(differ.status(), StatusCode::BAD_REQUEST);
    assert!(
        differ
            .text()
            .await
            .unwrap()
            .contains("id=\"confirm-error\"")
    );
    let weak = submit(token.clone(), "qwertyuiop", "qwertyuiop")
        .await
        .unwrap();
    assert_eq!(weak.status(), StatusCode::BAD_REQUEST);
    assert!(weak.text().await.unwrap().contains("most common"));

    let used = submit(token.clone(), "a recovered phrase", "a recovered phrase")
        .await
        .unwrap();
    assert_eq!(used.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        used.headers()["location"],
        "/.portcullis/sign_in?password_changed=1"
    );
    assert!(!signed_in(&h, &erin).await, "a reset ends every session");
    assert!(h.sign_in("erin", "a recovered phrase").await.is_ok());

    let reused = submit(token.clone(), "a third phrase here", "a third phrase here")
        .await
        .unwrap();
    assert_eq!(reused.status(), StatusCode::NOT_FOUND);
    assert!(reused.text().await.unwrap().contains("used already"));
    let again = h.http.get(&url).send().await.unwrap();
    assert!(again.text().await.unwrap().contains("used already"));
    assert!(h.sign_in("erin", "a third phrase here").await.is_err());
    let unknown = h
        .http
        .get(h.url("/.portcullis/reset?token=not-a-token"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    assert!(unknown.text().await.unwrap().contains("not valid"));

    let (_, late) = issue().await;
    clock.advance(Duration::from_secs(1801));
    let expired = h
        .http
        .get(late["url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(expired.status(), StatusCode::NOT_FOUND);
    assert!(expired.text().await.unwrap().contains("expired"));

    // A later password change cancels links not used yet.
    let (_, cancelled) = issue().await;
    let (status, _) = call(
        &h,
        &admin,
        Method::PUT,
        "/.portcullis/api/v1/users/erin/password",
        Some(json!({"password": "set by the admin"})),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let gone = h
        .http
        .get(cancelled["url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert!(gone.text().await.unwrap().contains("not valid"));

    let actions = audit_actions(&h, &admin).await;
    for expected in ["password_reset_issued erin", "password_reset_used erin"] {
        assert!(
            actions.contains(&expected.to_owned()),
            "{expected} in {actions:?}"
        );
    }
}

#[tokio::test]
async fn the_admin_page_sets_passwords_and_shows_a_reset_link_once() {
    let h = Harness::start("").await;
    let admin = h.setup_admin().await;
    h.add_user("frank", None, None, Role::User, &[]).await;
    let page = h
        .http
        .get(h.url("/.portcullis/admin/users/frank"))
        .header(COOKIE, format!("_portcullis={admin}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("Create reset link") && page.contains("valid for 1 hour"),
        "{page}"
    );
    let csrf = hidden_field(&page, "csrf");
    let post = |path: &str, form: Vec<(&'static str, String)>| {
        h.http
            .post(h.url(path))
            .header(COOKIE, format!("_portcullis={admin}"))
            .form(&form)
            .send()
    };
    let weak = post(
        "/.portcullis/admin/users/frank/password",
        vec![("csrf", csrf.clone()), ("new_password", "password1".into())],
    )
    .await
    .unwrap();
    assert_eq!(
        weak.status(),
        StatusCode::BAD_REQUEST,
        "an inline error, not a dead end"
    );
    let html = weak.text().await.unwrap();
    assert!(
        html.contains("id=\"new_password-error\"") && html.contains("<h1>frank</h1>"),
        "{html}"
    );

    let set = post(
        "/.portcullis/admin/users/frank/password",
        vec![
            ("csrf", csrf.clone()),
            ("new_password", "chosen by an admin".into()),
            ("must_change", "on".into()),
        ],
    )
    .await
    .unwrap();
    assert_eq!(set.status(), StatusCode::SEE_OTHER);
    let user = h
        .running
        .state
        .store
        .user_by_username("frank")
        .await
        .unwrap()
        .unwrap();
    assert!(user.has_password && user.must_change_password);

    let shown = post(
        "/.portcullis/admin/users/frank/reset-link",
        vec![("csrf", csrf.clone())],
    )
    .await
    .unwrap();
    assert_eq!(shown.status(), StatusCode::OK);
    let html = shown.text().await.unwrap();
    let start = html.find("id=\"reset-link\">").unwrap() + "id=\"reset-link\">".len();
    let link = &html[start..start + html[start..].find('<').unwrap()];
    assert!(
        link.starts_with(&format!("{}/.portcullis/reset?token=", h.base)),
        "{link}"
    );
    assert_eq!(
        h.http.get(link).send().await.unwrap().status(),
        StatusCode::OK
    );
    let forged = post(
        "/.portcullis/admin/users/frank/reset-link",
        vec![("csrf", "forged".into())],
    )
    .await
    .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
}

/// The link of a reset mail, as the message carries it (quoted-printable soft breaks undone).
fn link_in(message: &str) -> String {
    let text = message
        .replace("=\r\n", "")
        .replace("=\n", "")
        .replace("=3D", "=");
    let start = text.find("http://").expect("a link in the mail");
    text[start..].split_whitespace().next().unwrap().to_owned()
}

#[tokio::test]
async fn reset_links_are_mailed_through_a_real_smtp_server_with_starttls() {
    let smtp = common::smtp::SmtpServer::start(true).await;
    let h = Harness::start(&format!(
        "[smtp]\nhost = \"127.0.0.1\"\nport = {}\nfrom = \"Portcullis <auth@example.com>\"\nca_file = \"{}\"\n",
        smtp.port,
        smtp.ca_file.as_ref().unwrap().display()
    ))
    .await;
    let admin = h.setup_admin().await;
    h.add_user(
        "erin",
        Some("erin@example.com"),
        Some("Erin E"),
        Role::User,
        &[],
    )
    .await;
    h.add_user("nomail", None, None, Role::User, &[]).await;
    let send = json!({"send_email": true});
    let (status, body) = call(
        &h,
        &admin,
        Method::POST,
        "/.portcullis/api/v1/users/erin/reset-link",
        Some(send.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["sent_to"], "erin@example.com");
    assert!(
        body.get("url").is_none(),
        "a mailed link is not also returned"
    );
    let messages = smtp.messages();
    assert_eq!(messages.len(), 1);
    let message = &messages[0];
    assert!(
        message.contains("Subject: Choose a new password"),
        "{message}"
    );
    assert!(message.contains("erin@example.com"), "{message}");
    let link = link_in(message);
    let page = h.http.get(&link).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK, "{link}");
    assert!(page.text().await.unwrap().contains("Choose a new password"));

    // Nobody to send it to: said at once, and no link is made.
    let (status, body) = call(
        &h,
        &admin,
        Method::POST,
        "/.portcullis/api/v1/users/nomail/reset-link",
        Some(send.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("no email address")
    );
    let (status, body) = call(
        &h,
        &admin,
        Method::POST,
        "/.portcullis/api/v1/users/erin/reset-link",
        Some(json!({"send_by": "pigeon"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let trail = audit_actions(&h, &admin).await;
    assert!(
        trail.iter().any(|a| a == "password_reset_sent erin"),
        "{trail:?}"
    );
}

#[tokio::test]
async fn a_relay_without_starttls_is_refused_not_used_in_clear_text() {
    let smtp = common::smtp::SmtpServer::start(false).await;
    let h = Harness::start(&format!(
        "[smtp]\nhost = \"127.0.0.1\"\nport = {}\nfrom = \"auth@example.com\"\n",
        smtp.port
    ))
    .await;
    let admin = h.setup_admin().await;
    let (status, body) = call(
        &h,
        &admin,
        Method::POST,
        "/.portcullis/api/v1/users/admin/reset-link",
        Some(json!({"send_email": true})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("could not be sent through 127.0.0.1"),
        "{body}"
    );
    assert!(smtp.messages().is_empty(), "nothing went out in clear text");
}
