//! CSRF protection for Portcullis's forms: a double-submit token. The form carries a hidden copy
//! of a random value that also sits in an HttpOnly cookie; a cross-site page can make the browser
//! send the cookie but cannot read it to fill in the field.

use http::HeaderMap;
use portcullis_auth::secret::{constant_time_eq, looks_like_token, random_token};
use portcullis_proxy::cookies::{self, CSRF_COOKIE};

/// The token to embed in a form, and a `Set-Cookie` value when a new one had to be minted.
pub fn token_for_form(headers: &HeaderMap, secure: bool) -> (String, Option<String>) {
    match cookies::first(headers, CSRF_COOKIE).filter(|t| looks_like_token(t)) {
        Some(existing) => (existing, None),
        None => {
            let token = random_token();
            let cookie = cookies::set_cookie(CSRF_COOKIE, &token, secure, None);
            (token, Some(cookie))
        }
    }
}

pub fn verify(headers: &HeaderMap, submitted: &str) -> bool {
    cookies::values(headers, CSRF_COOKIE).any(|cookie| {
        looks_like_token(cookie) && constant_time_eq(cookie.as_bytes(), submitted.as_bytes())
    })
}
