//! Turning outcomes into responses, in one place: failures into status codes with an HTML page or
//! a JSON body, and "please sign in" into a redirect for browsers or a 401 for API clients.

use axum::body::Body;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use portcullis_core::{Failure, FailureKind};

use crate::html;

pub const SIGN_IN_PATH: &str = "/.portcullis/sign_in";

/// Characters kept literally in a query-string value.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

pub fn status_of(kind: FailureKind) -> StatusCode {
    match kind {
        FailureKind::BadRequest => StatusCode::BAD_REQUEST,
        FailureKind::Unauthenticated => StatusCode::UNAUTHORIZED,
        FailureKind::Forbidden => StatusCode::FORBIDDEN,
        FailureKind::NotFound => StatusCode::NOT_FOUND,
        FailureKind::Conflict => StatusCode::CONFLICT,
        FailureKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        FailureKind::UpstreamUnavailable => StatusCode::BAD_GATEWAY,
        FailureKind::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
        FailureKind::StoreUnavailable | FailureKind::Busy => StatusCode::SERVICE_UNAVAILABLE,
        FailureKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// Whether the client is a browser navigating (it gets pages and redirects) rather than a script,
/// XHR/fetch call or API client (it gets JSON and 401s).
pub fn is_browser_navigation(headers: &HeaderMap, canonical_path: &str) -> bool {
    let get = |name: header::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    let accept = get(header::ACCEPT).to_ascii_lowercase();
    let fetch_mode = headers
        .get("sec-fetch-mode")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let api_signal = headers.contains_key("x-requested-with")
        || fetch_mode.eq_ignore_ascii_case("cors")
        || fetch_mode.eq_ignore_ascii_case("websocket")
        || (accept.contains("application/json") && !accept.contains("text/html"))
        || canonical_path == "/api"
        || canonical_path.starts_with("/api/");
    let navigation_signal =
        fetch_mode.eq_ignore_ascii_case("navigate") || accept.contains("text/html");
    navigation_signal && !api_signal
}

/// A JSON answer that no cache keeps.
pub fn json(status: StatusCode, value: serde_json::Value) -> Response<Body> {
    let mut response = Response::new(Body::from(value.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

pub fn html_response(status: StatusCode, page: String) -> Response<Body> {
    let mut response = Response::new(Body::from(page));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    // Page addresses can carry one-time tokens (reset links); no page hands its address on.
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    // No script runs but the passkey one, allowed by its hash (never inline code from a value).
    let policy = format!(
        "default-src 'none'; script-src {}; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
        crate::html::script_source()
    );
    if let Ok(value) = HeaderValue::from_str(&policy) {
        headers.insert("content-security-policy", value);
    }
    response
}

fn title_of(kind: FailureKind) -> &'static str {
    match kind {
        FailureKind::BadRequest => "Bad request",
        FailureKind::Unauthenticated => "Sign-in required",
        FailureKind::Forbidden => "Access denied",
        FailureKind::NotFound => "Not found",
        FailureKind::Conflict => "Already taken",
        FailureKind::RateLimited => "Too many attempts",
        FailureKind::UpstreamUnavailable => "The app is unreachable",
        FailureKind::UpstreamTimeout => "The app did not answer in time",
        FailureKind::StoreUnavailable | FailureKind::Busy => "Temporarily unavailable",
        FailureKind::Internal => "Something went wrong",
    }
}

/// The response for a failure: a JSON body for API clients, a page for browsers.
pub fn failure(f: &Failure, browser: bool) -> Response<Body> {
    let status = status_of(f.kind);
    if !browser {
        return json(
            status,
            serde_json::json!({ "error": f.code(), "message": f.message, "hint": f.hint }),
        );
    }
    let hint = f
        .hint
        .as_deref()
        .map(|h| format!("<p class=\"hint\">{}</p>", html::escape(&capitalised(h))))
        .unwrap_or_default();
    let body = format!(
        "<h1>{}</h1><p>{}</p>{hint}{ways}<p class=\"code\">HTTP {} · {}</p>",
        title_of(f.kind),
        html::escape(&f.message),
        status.as_u16(),
        f.code(),
        ways = ways_out(f.kind),
    );
    html_response(status, html::page(title_of(f.kind), &body))
}

/// Links on from an error page, so none is a dead end: refused access can sign in as someone
/// else; everything else can start again from the top.
fn ways_out(kind: FailureKind) -> &'static str {
    match kind {
        FailureKind::Forbidden => {
            "<p class=\"ways\"><a href=\"/\">Go to the start page</a> · <a href=\"/.portcullis/account\">My account</a> · \
             <a href=\"/.portcullis/sign_out\">Sign out and use another account</a></p>"
        }
        FailureKind::RateLimited | FailureKind::Unauthenticated => {
            "<p class=\"ways\"><a href=\"/.portcullis/sign_in\">Back to sign-in</a> · <a href=\"/\">Go to the start page</a></p>"
        }
        _ => "<p class=\"ways\"><a href=\"/\">Go to the start page</a></p>",
    }
}

/// A hint as a sentence on a page ("try again" → "Try again").
fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Where to send someone who must sign in before reaching `return_to` (a local path + query).
pub fn sign_in_location(return_to: &str) -> String {
    format!(
        "{SIGN_IN_PATH}?rd={}",
        utf8_percent_encode(return_to, QUERY_VALUE)
    )
}

/// [`sign_in_location`] for `challenge`: a step-up says so (`mfa=1`), so the sign-in page asks
/// for the second factor even where it cannot tell what `return_to` needs.
pub fn challenge_location(challenge: Challenge, return_to: &str) -> String {
    let location = sign_in_location(return_to);
    match challenge {
        Challenge::SignIn => location,
        Challenge::StepUp => format!("{location}&{STEP_UP_PARAM}=1"),
    }
}

/// The sign-in page's query parameter that asks for a second factor.
pub const STEP_UP_PARAM: &str = "mfa";

/// Why a request must go to the sign-in page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Challenge {
    /// Nobody is signed in.
    SignIn,
    /// Signed in, but the app needs a second factor the session was not proved with; the
    /// sign-in page asks for it.
    StepUp,
}

/// Browsers are redirected to sign in (302, or 303 after a non-GET so the browser follows with
/// GET); everyone else gets 401 with JSON that says where to sign in.
pub fn sign_in_required(method: &Method, return_to: &str, browser: bool) -> Response<Body> {
    challenge_at(
        Challenge::SignIn,
        method,
        &sign_in_location(return_to),
        browser,
    )
}

/// [`sign_in_required`] for a session that needs a second factor: the same sign-in page (which
/// asks for the factor), and for non-browsers RFC 9470's `insufficient_user_authentication`.
pub fn step_up_required(method: &Method, return_to: &str, browser: bool) -> Response<Body> {
    let location = challenge_location(Challenge::StepUp, return_to);
    challenge_at(Challenge::StepUp, method, &location, browser)
}

/// What was wrong with an MCP request's bearer token (RFC 6750 §3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BearerError {
    /// No token was sent.
    Missing,
    /// One was sent and does not work here.
    InvalidToken,
    /// It works, but lacks a scope the resource needs: `403`.
    InsufficientScope,
}

/// The `401` (or `403` for [`BearerError::InsufficientScope`]) of an OAuth protected resource
/// (RFC 6750 §3, RFC 9728 §5.1): where its metadata is and the scopes it takes. Never a
/// redirect: MCP clients do not follow one to a sign-in page.
pub fn bearer_challenge(
    metadata_url: &str,
    scopes: &[String],
    error: BearerError,
) -> Response<Body> {
    let (status, code, description) = match error {
        BearerError::Missing => (StatusCode::UNAUTHORIZED, "unauthenticated", ""),
        BearerError::InvalidToken => (
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "the access token is not valid for this resource",
        ),
        BearerError::InsufficientScope => (
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            "the access token lacks a scope this resource needs",
        ),
    };
    let mut challenge = format!(
        "Bearer resource_metadata=\"{metadata_url}\", scope=\"{}\"",
        scopes.join(" ")
    );
    if error != BearerError::Missing {
        challenge.push_str(&format!(
            ", error=\"{code}\", error_description=\"{description}\""
        ));
    }
    let mut response = json(
        status,
        serde_json::json!({
            "error": code,
            "message": "this MCP server needs an OAuth access token with its scopes (or a Portcullis API key for it)",
            "resource_metadata": metadata_url,
        }),
    );
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

/// [`sign_in_required`] with the sign-in URL already built (forward-auth points at Portcullis's
/// public URL from another host).
pub fn sign_in_required_at(method: &Method, location: &str, browser: bool) -> Response<Body> {
    challenge_at(Challenge::SignIn, method, location, browser)
}

/// Sends the client to `location` to sign in or step up: browsers by redirect, everyone else
/// with a 401 that says where and why.
pub fn challenge_at(
    challenge: Challenge,
    method: &Method,
    location: &str,
    browser: bool,
) -> Response<Body> {
    if !browser {
        let (error, message, www_authenticate) = match challenge {
            Challenge::SignIn => (
                "unauthenticated",
                "sign in first, or send an API key",
                "Bearer realm=\"portcullis\"",
            ),
            Challenge::StepUp => (
                "mfa_required",
                "this app needs a second factor: sign in again at sign_in_url and give one",
                "Bearer realm=\"portcullis\", error=\"insufficient_user_authentication\", error_description=\"a second factor is required\"",
            ),
        };
        let mut response = json(
            StatusCode::UNAUTHORIZED,
            serde_json::json!({
                "error": error,
                "message": message,
                "sign_in_url": location,
            }),
        );
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(www_authenticate),
        );
        return response;
    }
    redirect(
        if method == Method::GET || method == Method::HEAD {
            StatusCode::FOUND
        } else {
            StatusCode::SEE_OTHER
        },
        location,
    )
}

pub fn redirect(status: StatusCode, location: &str) -> Response<Body> {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A return URL that cannot lead off-site: a local absolute path, nothing else. Anything else
/// (`//evil`, `/\evil`, `https://evil`, control characters) becomes `/`.
pub fn safe_return_path(candidate: &str) -> String {
    let ok = candidate.starts_with('/')
        && !candidate.starts_with("//")
        && !candidate.starts_with("/\\")
        && !candidate.chars().any(|c| c.is_control() || c == '\\')
        && candidate.len() <= 4096;
    if ok {
        candidate.to_owned()
    } else {
        "/".to_owned()
    }
}

/// A redirect target for sign-out's `rd=`: a local path, or an absolute http(s) URL whose host is
/// on the allow-list (exactly, or as a subdomain of an entry written `.example.com`).
pub fn allowed_redirect(candidate: &str, allowed_hosts: &[String]) -> Option<String> {
    if candidate.starts_with('/') {
        let local = safe_return_path(candidate);
        return (local == candidate).then_some(local);
    }
    let rest = candidate
        .strip_prefix("https://")
        .or_else(|| candidate.strip_prefix("http://"))?;
    if candidate.chars().any(|c| c.is_control() || c == '\\') {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next()?;
    if authority.contains('@') {
        return None;
    }
    let host = authority
        .rsplit_once(':')
        .map(|(h, _)| h)
        .unwrap_or(authority)
        .to_ascii_lowercase();
    let allowed = portcullis_core::config::host_allowed(&host, allowed_hosts);
    allowed.then(|| candidate.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        m
    }

    #[test]
    fn browsers_and_scripts_are_told_apart() {
        let nav = [("accept", "text/html,application/xhtml+xml,*/*;q=0.8")];
        assert!(is_browser_navigation(&h(&nav), "/chat"));
        assert!(!is_browser_navigation(&h(&nav), "/api/chat"));
        assert!(!is_browser_navigation(
            &h(&[("accept", "application/json")]),
            "/"
        ));
        assert!(!is_browser_navigation(&h(&[("accept", "*/*")]), "/"));
        assert!(!is_browser_navigation(
            &h(&[nav[0], ("x-requested-with", "XMLHttpRequest")]),
            "/"
        ));
        assert!(!is_browser_navigation(
            &h(&[nav[0], ("sec-fetch-mode", "cors")]),
            "/"
        ));
        assert!(is_browser_navigation(
            &h(&[("sec-fetch-mode", "navigate")]),
            "/"
        ));
    }

    #[test]
    fn return_paths_stay_on_site() {
        assert_eq!(safe_return_path("/chat?x=1"), "/chat?x=1");
        for evil in [
            "//evil.example",
            "/\\evil.example",
            "https://evil.example",
            "javascript:alert(1)",
            "/a\r\nx",
            "",
        ] {
            assert_eq!(safe_return_path(evil), "/", "{evil:?}");
        }
    }

    #[test]
    fn sign_out_redirects_only_to_allowed_hosts() {
        let allowed = vec!["auth.example.com".to_owned(), ".corp.example".to_owned()];
        let cognito =
            "https://auth.example.com/logout?client_id=x&logout_uri=https%3A%2F%2Fchat.example.com";
        assert_eq!(
            allowed_redirect(cognito, &allowed).as_deref(),
            Some(cognito)
        );
        assert!(allowed_redirect("https://sso.corp.example/x", &allowed).is_some());
        assert!(allowed_redirect("/local", &allowed).is_some());
        for evil in [
            "https://evil.example/",
            "https://auth.example.com.evil.example/",
            "https://auth.example.com@evil.example/",
            "//evil.example",
            "javascript:alert(1)",
            "https://evilcorp.example/",
        ] {
            assert_eq!(allowed_redirect(evil, &allowed), None, "{evil}");
        }
    }

    #[test]
    fn sign_in_redirects_by_method() {
        assert_eq!(
            sign_in_required(&Method::GET, "/a?b=c", true).status(),
            StatusCode::FOUND
        );
        let post = sign_in_required(&Method::POST, "/a", true);
        assert_eq!(post.status(), StatusCode::SEE_OTHER);
        assert_eq!(
            post.headers()[header::LOCATION],
            "/.portcullis/sign_in?rd=/a"
        );
        assert_eq!(
            sign_in_location("/a?b=c&d"),
            "/.portcullis/sign_in?rd=/a%3Fb%3Dc%26d"
        );
        assert_eq!(
            sign_in_required(&Method::GET, "/", false).status(),
            StatusCode::UNAUTHORIZED
        );
    }
}
