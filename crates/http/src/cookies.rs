//! Reading the session cookie, and keeping Portcullis's cookies away from apps.

use http::header::{COOKIE, HeaderMap, HeaderValue};

/// The cookie that carries the opaque session id.
pub const SESSION_COOKIE: &str = "_portcullis";

/// Double-submit token for Portcullis's own forms.
pub const CSRF_COOKIE: &str = "_portcullis_csrf";
/// Where to go once the provider's sign-out sends the browser back (see `sign_out`).
pub const AFTER_SIGN_OUT_COOKIE: &str = "_portcullis_after_sign_out";

/// Whether a cookie is one of Portcullis's own (`_portcullis`, `_portcullis_…`): never passed to
/// an app.
fn is_own(name: &str) -> bool {
    name == SESSION_COOKIE || name.starts_with("_portcullis_")
}

/// Every value sent for the cookie `name` (a browser may send several with different paths).
pub fn values<'a>(headers: &'a HeaderMap, name: &'a str) -> impl Iterator<Item = &'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.split_once('='))
        .filter(move |(n, _)| n.trim() == name)
        .map(|(_, v)| v.trim().trim_matches('"'))
}

/// The first value sent for the cookie `name`.
pub fn first(headers: &HeaderMap, name: &str) -> Option<String> {
    values(headers, name).next().map(str::to_owned)
}

/// Removes Portcullis's cookies from the `Cookie` header, keeping the app's own cookies intact.
pub fn strip_own(headers: &mut HeaderMap) {
    if !headers.contains_key(COOKIE) {
        return;
    }
    let kept: Vec<String> = headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .filter(|pair| {
            let name = pair.split_once('=').map(|(n, _)| n.trim()).unwrap_or(pair);
            !is_own(name)
        })
        .map(str::to_owned)
        .collect();
    headers.remove(COOKIE);
    if !kept.is_empty()
        && let Ok(value) = HeaderValue::from_str(&kept.join("; "))
    {
        headers.insert(COOKIE, value);
    }
}

/// A `Set-Cookie` value for Portcullis's cookies: HttpOnly, SameSite=Lax, Path=/.
pub fn set_cookie(name: &str, value: &str, secure: bool, max_age: Option<u64>) -> String {
    let mut out = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax");
    if secure {
        out.push_str("; Secure");
    }
    if let Some(age) = max_age {
        out.push_str(&format!("; Max-Age={age}"));
    }
    out
}

/// Adds a `Set-Cookie` header (built by [`set_cookie`] or [`clear_cookie`]) to a response.
pub fn append(headers: &mut HeaderMap, set_cookie_value: &str) {
    // Values built here never contain characters a header cannot carry; skip rather than panic.
    if let Ok(value) = HeaderValue::from_str(set_cookie_value) {
        headers.append(http::header::SET_COOKIE, value);
    }
}

pub fn clear_cookie(name: &str, secure: bool) -> String {
    set_cookie(name, "", secure, Some(0))
}

/// Scopes a cookie built by [`set_cookie`] or [`clear_cookie`] to a parent domain, so that apps
/// on sibling hosts behind forward-auth see the session.
pub fn with_domain(cookie: String, domain: Option<&str>) -> String {
    match domain {
        Some(domain) => format!("{cookie}; Domain={domain}"),
        None => cookie,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_cookies_never_reach_the_app() {
        let mut h = HeaderMap::new();
        h.append(
            COOKIE,
            "a=1; _portcullis=secret; token=jwt".parse().unwrap(),
        );
        h.append(COOKIE, "_portcullis_csrf=x".parse().unwrap());
        assert_eq!(first(&h, SESSION_COOKIE).as_deref(), Some("secret"));
        strip_own(&mut h);
        assert_eq!(h.get(COOKIE).unwrap(), "a=1; token=jwt");
        let mut only_ours = HeaderMap::new();
        only_ours.insert(COOKIE, "_portcullis=secret".parse().unwrap());
        strip_own(&mut only_ours);
        assert!(only_ours.get(COOKIE).is_none());
    }

    #[test]
    fn malformed_cookie_headers_are_tolerated() {
        let mut h = HeaderMap::new();
        h.append(COOKIE, HeaderValue::from_bytes(b"\xff\xfe=1").unwrap());
        h.append(COOKIE, ";;; =; _portcullis; x".parse().unwrap());
        assert_eq!(first(&h, SESSION_COOKIE), None);
    }

    #[test]
    fn cookie_attributes() {
        assert_eq!(
            set_cookie("_portcullis", "v", true, None),
            "_portcullis=v; Path=/; HttpOnly; SameSite=Lax; Secure"
        );
        assert!(clear_cookie("_portcullis", false).ends_with("Max-Age=0"));
    }
}
