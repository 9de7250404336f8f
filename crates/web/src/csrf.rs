//! CSRF protection for Portcullis's forms.
//!
//! - Signed in (account and admin pages): the token is a tag of the session, made with the
//!   server's key ([`Sealer::tag`]). Only that session's own token is accepted, so a token
//!   planted by a same-site attacker (a sibling subdomain can set cookies for the parent domain)
//!   is worthless, and every replica recognises it.
//! - Before there is a session (sign-in, setup): a double-submit token. The form carries a
//!   hidden copy of a random value that also sits in an HttpOnly cookie; a cross-site page can
//!   make the browser send the cookie but cannot read it to fill in the field.

use http::HeaderMap;
use portcullis_auth::ActiveSession;
use portcullis_auth::seal::Sealer;
use portcullis_auth::secret::{constant_time_eq, looks_like_token, random_token};
use portcullis_http::cookies::{self, CSRF_COOKIE};

/// A form that posts nothing but its CSRF token (revoke, end, delete, create a link).
#[derive(serde::Deserialize, Default)]
pub struct CsrfForm {
    #[serde(default)]
    pub csrf: String,
}

const SESSION_LABEL: &str = "csrf";

/// The token for the forms of a signed-in page.
pub fn session_token(sealer: &Sealer, session: &ActiveSession) -> String {
    sealer.tag(SESSION_LABEL, &session.id_hash)
}

/// Whether `submitted` is the token of exactly this session.
pub fn verify_session(sealer: &Sealer, session: &ActiveSession, submitted: &str) -> bool {
    constant_time_eq(
        session_token(sealer, session).as_bytes(),
        submitted.as_bytes(),
    )
}

/// The token to embed in a form before sign-in, and a `Set-Cookie` value when a new one had to
/// be minted.
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

/// Whether a pre-sign-in form's token matches its cookie.
pub fn verify(headers: &HeaderMap, submitted: &str) -> bool {
    cookies::values(headers, CSRF_COOKIE).any(|cookie| {
        looks_like_token(cookie) && constant_time_eq(cookie.as_bytes(), submitted.as_bytes())
    })
}
