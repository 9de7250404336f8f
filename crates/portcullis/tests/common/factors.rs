//! Driving second factors over HTTP like a browser: setting up an authenticator app on the
//! account page, and signing in with a password and a code. The codes come from the secret the
//! set-up page shows, computed as the app would.

use portcullis_auth::factors::totp::TotpSecret;
use portcullis_core::Timestamp;
use reqwest::StatusCode;
use reqwest::header::COOKIE;

use super::{hidden_field, set_cookie_value};

/// What setting up an authenticator app gave: its secret, the recovery codes shown once, and
/// the session cookie to use from now on (the set-up replaced a session without a second
/// factor).
pub struct Enrolled {
    pub secret: TotpSecret,
    pub recovery_codes: Vec<String>,
    pub cookie: String,
}

/// A form posted to `base` + `path` with `cookies`.
pub async fn post(
    http: &reqwest::Client,
    base: &str,
    cookies: &str,
    path: &str,
    form: &[(&str, &str)],
) -> reqwest::Response {
    http.post(format!("{base}{path}"))
        .header(COOKIE, cookies)
        .form(form)
        .send()
        .await
        .unwrap()
}

/// Sets up an authenticator app through the account pages, typing the code for `at`.
pub async fn enrol(http: &reqwest::Client, base: &str, cookie: &str, at: Timestamp) -> Enrolled {
    let response = http
        .get(format!("{base}/.portcullis/account/factors/totp"))
        .header(COOKIE, format!("_portcullis={cookie}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let page = response.text().await.unwrap();
    assert!(page.contains("<svg"), "the QR code is on the page");
    let marker = "id=\"totp-secret\">";
    let start = page.find(marker).unwrap() + marker.len();
    let end = page[start..].find('<').unwrap() + start;
    let secret = TotpSecret::from_base32(&page[start..end]).unwrap();
    let code = secret.code_at(at);
    let response = post(
        http,
        base,
        &format!("_portcullis={cookie}"),
        "/.portcullis/account/factors/totp",
        &[
            ("csrf", &hidden_field(&page, "csrf")),
            ("sealed", &hidden_field(&page, "sealed")),
            ("label", "Phone"),
            ("code", &code),
            ("rd", ""),
        ],
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let new_cookie = set_cookie_value(&response, "_portcullis").unwrap_or_else(|| cookie.into());
    let html = response.text().await.unwrap();
    assert!(html.contains("shown only now"), "{html}");
    let recovery_codes = html
        .split("<li>")
        .skip(1)
        .map(|item| item[..item.find("</li>").unwrap()].to_owned())
        .collect();
    Enrolled {
        secret,
        recovery_codes,
        cookie: new_cookie,
    }
}

/// The password step of the sign-in form for an account with a factor: the code page's HTML
/// (with its pending value) and the CSRF cookie.
pub async fn password_step(
    http: &reqwest::Client,
    base: &str,
    login: &str,
    password: &str,
) -> (String, String) {
    let form = http
        .get(format!("{base}/.portcullis/sign_in?rd=/after"))
        .send()
        .await
        .unwrap();
    let csrf_cookie = set_cookie_value(&form, "_portcullis_csrf").unwrap();
    let csrf = hidden_field(&form.text().await.unwrap(), "csrf");
    let response = post(
        http,
        base,
        &format!("_portcullis_csrf={csrf_cookie}"),
        "/.portcullis/sign_in",
        &[
            ("csrf", &csrf),
            ("login", login),
            ("password", password),
            ("rd", "/after"),
        ],
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK, "the code step follows");
    assert!(
        set_cookie_value(&response, "_portcullis").is_none(),
        "no session before the second factor"
    );
    (response.text().await.unwrap(), csrf_cookie)
}

/// Posts `code` to the code page `page` (with the session `session`, for a step-up).
pub async fn code_step(
    http: &reqwest::Client,
    base: &str,
    (page, csrf_cookie): (&str, &str),
    code: &str,
    session: Option<&str>,
) -> reqwest::Response {
    let mut cookies = format!("_portcullis_csrf={csrf_cookie}");
    if let Some(session) = session {
        cookies.push_str(&format!("; _portcullis={session}"));
    }
    post(
        http,
        base,
        &cookies,
        "/.portcullis/sign_in/factor",
        &[
            ("csrf", &hidden_field(page, "csrf")),
            ("pending", &hidden_field(page, "pending")),
            ("rd", &hidden_field(page, "rd")),
            ("code", code),
        ],
    )
    .await
}

/// Signs in with a password and a code; the session cookie, or the refusal's status.
pub async fn sign_in_with_code(
    http: &reqwest::Client,
    base: &str,
    (login, password): (&str, &str),
    code: &str,
) -> Result<String, StatusCode> {
    let (page, csrf_cookie) = password_step(http, base, login, password).await;
    let response = code_step(http, base, (&page, &csrf_cookie), code, None).await;
    match set_cookie_value(&response, "_portcullis") {
        Some(cookie) if response.status() == StatusCode::SEE_OTHER => {
            assert_eq!(response.headers()["location"], "/after");
            Ok(cookie)
        }
        _ => Err(response.status()),
    }
}
