//! Second factors over HTTP, as a browser and a script drive them: setting up an authenticator
//! app (QR page, first code, recovery codes shown once), the code step after the password,
//! codes and recovery codes working once, throttling, `require_mfa` apps and the step-up that
//! replaces the session, keys for such apps, removal with a current code, and the admin's
//! reset through the UI's API and `mfa.required` over Portcullis's own admin surface.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure report

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Harness, call, factors, hidden_field, set_cookie_value};
use portcullis_core::{Clock, ManualClock, Role, Timestamp};
use reqwest::header::{ACCEPT, COOKIE};
use reqwest::{Method, StatusCode};
use serde_json::json;

fn now() -> Timestamp {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    Timestamp(i64::try_from(secs).unwrap())
}

/// A page fetched with a session cookie: status, body, and the session cookie it set, if any.
async fn get(h: &Harness, cookie: &str, path: &str) -> (StatusCode, String, Option<String>) {
    let response = h
        .http
        .get(h.url(path))
        .header(COOKIE, format!("_portcullis={cookie}"))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let set = set_cookie_value(&response, "_portcullis");
    (status, response.text().await.unwrap(), set)
}

/// A form posted with `cookies`.
async fn post(h: &Harness, cookies: &str, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
    factors::post(&h.http, &h.base, cookies, path, form).await
}

async fn enrol(h: &Harness, cookie: &str, at: Timestamp) -> factors::Enrolled {
    factors::enrol(&h.http, &h.base, cookie, at).await
}

async fn password_step(h: &Harness, login: &str, password: &str) -> (String, String) {
    factors::password_step(&h.http, &h.base, login, password).await
}

async fn code_step(
    h: &Harness,
    page: &str,
    csrf_cookie: &str,
    code: &str,
    session: Option<&str>,
) -> reqwest::Response {
    factors::code_step(&h.http, &h.base, (page, csrf_cookie), code, session).await
}

async fn sign_in_with_code(h: &Harness, login: &str, code: &str) -> Result<String, StatusCode> {
    factors::sign_in_with_code(&h.http, &h.base, (login, "user-password-1"), code).await
}

async fn audit(h: &Harness, admin: &str) -> Vec<String> {
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
                "{} {} {}",
                e["action"].as_str().unwrap(),
                e["outcome"].as_str().unwrap(),
                e["reason"].as_str().unwrap_or("")
            )
        })
        .collect()
}

async fn signed_in(h: &Harness, cookie: &str) -> bool {
    call(h, cookie, Method::GET, "/.portcullis/api/v1/me", None)
        .await
        .0
        == StatusCode::OK
}

#[tokio::test]
async fn an_app_code_is_asked_after_the_password_and_each_code_works_once() {
    let clock = ManualClock::at(now());
    let h = Harness::start_with_clock("", Arc::new(clock.clone())).await;
    let admin = h.setup_admin().await;
    h.add_user("dana", Some("dana@example.com"), None, Role::User, &[])
        .await;
    let before = h.sign_in("dana", "user-password-1").await.unwrap();
    let other_browser = h.sign_in("dana", "user-password-1").await.unwrap();

    let enrolled = enrol(&h, &before, clock.now()).await;
    assert_eq!(enrolled.recovery_codes.len(), 10);
    assert_ne!(
        enrolled.cookie, before,
        "the setup proved a factor: a new session"
    );
    assert!(
        !signed_in(&h, &before).await,
        "the session from before is gone"
    );
    assert!(signed_in(&h, &enrolled.cookie).await);
    let (_, whoami) = call(
        &h,
        &enrolled.cookie,
        Method::GET,
        "/.portcullis/whoami",
        None,
    )
    .await;
    assert_eq!(whoami["second_factor"], true, "{whoami}");
    assert_eq!(whoami["amr"], json!(["pwd", "otp", "mfa"]));
    assert!(
        signed_in(&h, &other_browser).await,
        "other browsers stay signed in"
    );

    // The code that confirmed the app is spent.
    let spent = enrolled.secret.code_at(clock.now());
    assert_eq!(
        sign_in_with_code(&h, "dana", &spent).await,
        Err(StatusCode::UNAUTHORIZED)
    );
    clock.advance(Duration::from_secs(30));
    let next = enrolled.secret.code_at(clock.now());
    let session = sign_in_with_code(&h, "dana", &next).await.unwrap();
    assert!(signed_in(&h, &session).await);
    assert_eq!(
        sign_in_with_code(&h, "dana", &next).await,
        Err(StatusCode::UNAUTHORIZED),
        "a code is accepted once"
    );

    // A forged or foreign pending step starts over; it never signs anyone in.
    let (page, csrf_cookie) = password_step(&h, "dana", "user-password-1").await;
    let forged = page.replace(&hidden_field(&page, "pending"), "forged");
    clock.advance(Duration::from_secs(30));
    let fresh = enrolled.secret.code_at(clock.now());
    let response = code_step(&h, &forged, &csrf_cookie, &fresh, None).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()["location"], "/.portcullis/sign_in");
    assert!(set_cookie_value(&response, "_portcullis").is_none());
    // The password step's value does not open the new-password step either.
    let must_change = post(
        &h,
        &format!("_portcullis_csrf={csrf_cookie}"),
        "/.portcullis/sign_in/new_password",
        &[
            ("csrf", &hidden_field(&page, "csrf")),
            ("pending", &hidden_field(&page, "pending")),
            ("password", "a brand new phrase"),
            ("confirm", "a brand new phrase"),
        ],
    )
    .await;
    assert_eq!(must_change.status(), StatusCode::SEE_OTHER);
    assert!(set_cookie_value(&must_change, "_portcullis").is_none());

    // Recovery codes: each once, typed any way a person types them.
    let code = enrolled.recovery_codes[0].to_uppercase().replace('-', " ");
    let recovered = sign_in_with_code(&h, "dana", &code).await.unwrap();
    assert!(signed_in(&h, &recovered).await);
    assert_eq!(
        sign_in_with_code(&h, "dana", &enrolled.recovery_codes[0]).await,
        Err(StatusCode::UNAUTHORIZED)
    );

    // Wrong codes are throttled like wrong passwords, with Retry-After.
    let mut throttled = None;
    for _ in 0..8 {
        let (page, csrf_cookie) = password_step(&h, "dana", "user-password-1").await;
        let response = code_step(&h, &page, &csrf_cookie, "000000", None).await;
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            throttled = Some(response);
            break;
        }
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let html = response.text().await.unwrap();
        assert!(html.contains("not right"), "{html}");
        assert!(
            html.contains("aria-invalid=\"true\""),
            "the field is marked"
        );
    }
    let throttled = throttled.expect("wrong codes are throttled");
    assert!(throttled.headers().contains_key("retry-after"));

    // Minutes after signing in with the factor, that was the re-authentication: no code asked.
    let recovered_now = {
        let (_, account, _) = get(&h, &recovered, "/.portcullis/account").await;
        assert!(
            !account.contains("id=\"remove-code-"),
            "no code field: {account}"
        );
        let marker = "/.portcullis/account/factors/";
        let start = account.find(marker).unwrap() + marker.len();
        let id = account[start..start + account[start..].find('/').unwrap()].to_owned();
        post(
            &h,
            &format!("_portcullis={recovered}"),
            &format!("/.portcullis/account/factors/{id}/remove"),
            &[("csrf", &hidden_field(&account, "csrf"))],
        )
        .await
        .status()
    };
    assert_eq!(recovered_now, StatusCode::SEE_OTHER);
    let trail = audit(&h, &admin).await;
    for expected in [
        "factor_added success authenticator app \"Phone\"",
        "sign_in success local_password + authenticator_app",
        "sign_in success local_password + recovery_code",
        "recovery_code_used success 9 left",
        "second_factor failure wrong_code",
    ] {
        assert!(
            trail.iter().any(|e| e == expected),
            "{expected} in {trail:#?}"
        );
    }
    // Throttled attempts write nothing: an attacker must not fill the disk.
    let wrong = trail
        .iter()
        .filter(|e| e.starts_with("second_factor failure"))
        .count();
    assert!(wrong <= 8, "{wrong} rows for at most 8 attempts");
}

const APPS: &str = r#"
[[apps]]
name = "vault"
path_prefix = "/vault"
upstream = "{upstream}"
require_mfa = true

[[apps]]
name = "wiki"
path_prefix = "/"
upstream = "{upstream}"
"#;

#[tokio::test]
async fn require_mfa_apps_step_up_the_session_and_guard_keys_and_factor_changes() {
    let clock = ManualClock::at(now());
    let h = Harness::start_with_clock(APPS, Arc::new(clock.clone())).await;
    let admin = h.setup_admin().await;
    h.add_user("eve", Some("eve@example.com"), None, Role::User, &[])
        .await;
    let eve = h.sign_in("eve", "user-password-1").await.unwrap();

    // Without a second factor: the open app answers, the guarded one sends the browser to the
    // sign-in page (which asks for a factor) and tells a script why.
    assert_eq!(h.echo("/wiki/page", &eve).await["path"], "/wiki/page");
    let hits = h.upstream.hits();
    let browser = h
        .http
        .get(h.url("/vault/secret?x=1"))
        .header(COOKIE, format!("_portcullis={eve}"))
        .header(ACCEPT, "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(browser.status(), StatusCode::FOUND);
    let location = browser.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(
        location,
        "/.portcullis/sign_in?rd=/vault/secret%3Fx%3D1&mfa=1"
    );
    let script = h
        .http
        .get(h.url("/vault/secret"))
        .header(COOKIE, format!("_portcullis={eve}"))
        .header(ACCEPT, "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(script.status(), StatusCode::UNAUTHORIZED);
    let challenge = script.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        challenge.contains("insufficient_user_authentication"),
        "{challenge}"
    );
    assert_eq!(h.upstream.hits(), hits, "nothing reached the app");

    // The sign-in page, signed in without any factor: set one up (with or without `mfa=1`).
    for page in [location.as_str(), "/.portcullis/sign_in?rd=/vault/secret"] {
        let (status, html, _) = get(&h, &eve, page).await;
        assert_eq!(status, StatusCode::OK);
        assert!(html.contains("A second factor is needed"), "{page}: {html}");
        assert!(
            html.contains("/.portcullis/account/factors/totp?rd="),
            "{html}"
        );
    }
    // Pages that do not need one go straight on.
    let (status, _, _) = get(&h, &eve, "/.portcullis/sign_in?rd=/wiki").await;
    assert_eq!(status, StatusCode::FOUND);

    // Keys reaching the guarded app are made only with a second factor.
    let key = |cookie: String, apps: serde_json::Value| {
        let h = &h;
        async move {
            call(
                h,
                &cookie,
                Method::POST,
                "/.portcullis/api/v1/me/keys",
                Some(json!({"name": "cli", "apps": apps})),
            )
            .await
        }
    };
    let (status, body) = key(eve.clone(), json!(["vault"])).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("second factor"),
        "{body}"
    );
    let (status, _) = key(eve.clone(), json!([])).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a key for every app reaches the vault too"
    );
    let (status, body) = key(eve.clone(), json!(["wiki"])).await;
    assert!(status.is_success(), "{body}");

    // A second browser, signed in before the factor existed.
    let laptop = h.sign_in("eve", "user-password-1").await.unwrap();
    let enrolled = enrol(&h, &eve, clock.now()).await;
    let eve = enrolled.cookie;
    assert_eq!(h.echo("/vault/secret", &eve).await["path"], "/vault/secret");
    let (status, body) = key(eve.clone(), json!(["vault"])).await;
    assert!(status.is_success(), "{body}");

    // The laptop's session was proved with the password alone: the vault asks it to step up,
    // now with the code form.
    let form = h
        .http
        .get(h.url("/.portcullis/sign_in"))
        .send()
        .await
        .unwrap();
    let csrf_cookie = set_cookie_value(&form, "_portcullis_csrf").unwrap();
    let both = format!("_portcullis={laptop}; _portcullis_csrf={csrf_cookie}");
    let response = h
        .http
        .get(h.url(&location))
        .header(COOKIE, &both)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let page = response.text().await.unwrap();
    assert!(page.contains("Two-step verification"), "{page}");
    assert_eq!(
        hidden_field(&page, "pending"),
        "",
        "a step-up has no pending sign-in"
    );
    // Adding another factor from it would let a password alone add one: step up first.
    let (status, _, _) = get(&h, &laptop, "/.portcullis/account/factors/totp").await;
    assert_eq!(status, StatusCode::FOUND);
    clock.advance(Duration::from_secs(30));
    let code = enrolled.secret.code_at(clock.now());
    let stepped = code_step(&h, &page, &csrf_cookie, &code, Some(&laptop)).await;
    assert_eq!(stepped.status(), StatusCode::SEE_OTHER);
    assert_eq!(stepped.headers()["location"], "/vault/secret?x=1");
    let stepped_up = set_cookie_value(&stepped, "_portcullis").unwrap();
    assert_ne!(stepped_up, laptop);
    assert!(
        !signed_in(&h, &laptop).await,
        "the session id changes with its privileges"
    );
    assert_eq!(
        h.echo("/vault/secret", &stepped_up).await["path"],
        "/vault/secret"
    );

    // Ten minutes after proving it, removing the factor takes a current code: a wrong one is
    // refused on the account page.
    clock.advance(Duration::from_secs(11 * 60));
    let (_, account, _) = get(&h, &eve, "/.portcullis/account").await;
    let factor_id = {
        let marker = "/.portcullis/account/factors/";
        let start = account.find(marker).unwrap() + marker.len();
        let end = account[start..].find('/').unwrap() + start;
        account[start..end].to_owned()
    };
    let remove = format!("/.portcullis/account/factors/{factor_id}/remove");
    let csrf = hidden_field(&account, "csrf");
    let refused = post(
        &h,
        &format!("_portcullis={eve}"),
        &remove,
        &[("csrf", &csrf), ("code", "123456")],
    )
    .await;
    let status = refused.status();
    let html = refused.text().await.unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{remove}: {html}");
    assert!(html.contains("factor-error"));
    clock.advance(Duration::from_secs(30));
    let code = enrolled.secret.code_at(clock.now());
    let removed = post(
        &h,
        &format!("_portcullis={eve}"),
        &remove,
        &[("csrf", &csrf), ("code", &code)],
    )
    .await;
    assert_eq!(removed.status(), StatusCode::SEE_OTHER);
    let (_, body) = call(
        &h,
        &admin,
        Method::GET,
        "/.portcullis/api/v1/users/eve/factors",
        None,
    )
    .await;
    assert_eq!(body["factors"], json!([]));
    assert_eq!(
        body["recovery_codes_left"], 0,
        "the last factor takes the recovery codes"
    );
    let trail = audit(&h, &admin).await;
    assert!(
        trail
            .iter()
            .any(|e| e == "step_up success authenticator_app"),
        "{trail:#?}"
    );
    assert!(
        trail
            .iter()
            .any(|e| e == "factor_removed success \"Phone\""),
        "{trail:#?}"
    );
}

#[tokio::test]
async fn admins_reset_factors_and_mfa_required_covers_the_admin_surface() {
    let clock = ManualClock::at(now());
    let h = Harness::start_with_clock("[mfa]\nrequired = true\n", Arc::new(clock.clone())).await;
    let admin = h.setup_admin().await;
    // The first admin has no factor yet: the admin pages and API ask for one.
    let (status, _, _) = get(&h, &admin, "/.portcullis/admin/users").await;
    assert_eq!(status, StatusCode::FOUND);
    let (status, body) = call(&h, &admin, Method::GET, "/.portcullis/api/v1/users", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("second factor"),
        "{body}"
    );
    let admin = enrol(&h, &admin, clock.now()).await.cookie;
    let (status, _, _) = get(&h, &admin, "/.portcullis/admin/users").await;
    assert_eq!(status, StatusCode::OK);

    h.add_user("finn", Some("finn@example.com"), None, Role::User, &[])
        .await;
    let finn = h.sign_in("finn", "user-password-1").await.unwrap();
    clock.advance(Duration::from_secs(30));
    let finn = enrol(&h, &finn, clock.now()).await.cookie;
    let path = "/.portcullis/api/v1/users/finn/factors";
    let (status, body) = call(&h, &admin, Method::GET, path, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["factors"][0]["label"], "Phone");
    assert_eq!(body["factors"][0]["kind"], "totp");
    assert_eq!(body["recovery_codes_left"], 10);
    let finn_again = {
        clock.advance(Duration::from_secs(30));
        let (status, body) = call(&h, &finn, Method::DELETE, path, None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        let (status, body) = call(
            &h,
            &admin,
            Method::DELETE,
            "/.portcullis/api/v1/users/nobody/factors",
            None,
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        let (status, body) = call(&h, &admin, Method::DELETE, path, None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["removed"], 1);
        h.sign_in("finn", "user-password-1").await
    };
    assert!(
        finn_again.is_ok(),
        "after the reset the password alone signs in"
    );
    let trail = audit(&h, &admin).await;
    assert!(
        trail.iter().any(|e| e == "factors_reset success 1 removed"),
        "{trail:#?}"
    );
}

#[tokio::test]
async fn forged_passkey_answers_sign_nobody_in() {
    let h = Harness::start_on_localhost("").await;
    h.setup_admin().await;
    let form = h
        .http
        .get(h.url("/.portcullis/sign_in?rd=/after"))
        .send()
        .await
        .unwrap();
    let csrf_cookie = set_cookie_value(&form, "_portcullis_csrf").unwrap();
    let page = form.text().await.unwrap();
    assert!(page.contains("Sign in with a passkey"), "{page}");
    let challenge = {
        let marker = "name=\"challenge\" value=\"";
        let start = page.find(marker).unwrap() + marker.len();
        page[start..start + page[start..].find('"').unwrap()].to_owned()
    };
    let cookies = format!("_portcullis_csrf={csrf_cookie}");
    let forged = json!({
        "id": "Y2lk", "clientDataJSON": "e30", "authenticatorData": "AAAA", "signature": "AAAA"
    })
    .to_string();
    for (csrf, challenge, credential, status) in [
        (
            csrf_cookie.as_str(),
            challenge.as_str(),
            forged.as_str(),
            StatusCode::UNAUTHORIZED,
        ),
        (
            csrf_cookie.as_str(),
            "forged-challenge",
            forged.as_str(),
            StatusCode::UNAUTHORIZED,
        ),
        (
            csrf_cookie.as_str(),
            challenge.as_str(),
            "not json",
            StatusCode::UNAUTHORIZED,
        ),
        (
            "wrong",
            challenge.as_str(),
            forged.as_str(),
            StatusCode::FORBIDDEN,
        ),
    ] {
        let response = post(
            &h,
            &cookies,
            "/.portcullis/sign_in/passkey",
            &[
                ("csrf", csrf),
                ("challenge", challenge),
                ("credential", credential),
                ("rd", "/after"),
            ],
        )
        .await;
        assert_eq!(response.status(), status, "{credential} {challenge}");
        assert!(set_cookie_value(&response, "_portcullis").is_none());
        let html = response.text().await.unwrap();
        assert!(html.contains("Sign in"), "the sign-in page again: {html}");
    }
}
