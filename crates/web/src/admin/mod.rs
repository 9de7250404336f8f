//! The admin UI: server-rendered pages, no JavaScript, a CSRF token on every form.
//!
//! Every page needs an admin session; others are sent to sign in (no session) or shown a 403
//! page. Changes go through the same [`portcullis_auth::directory::Directory`] operations as the
//! API and the CLI, so they are audited and take effect at once.

mod audit;
mod factors;
pub(crate) use audit::audit_filter;
mod groups;
mod outbox;
mod passwords;
mod profile;
mod user_changes;
mod user_page;
mod users;

use std::convert::Infallible;
use std::sync::Arc;

use axum::Router;
use axum::extract::FromRequestParts;
use axum::response::Response;
use axum::routing::{get, post};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use portcullis_auth::ActiveSession;
use portcullis_auth::audit::Actor;
use portcullis_auth::directory::DirectoryError;
use portcullis_core::{Failure, FailureKind, Role};
use portcullis_http::html::app_page;
use portcullis_http::respond::{self, html_response};

use crate::csrf;
use crate::sign_in::signed_in;
use crate::state::{AppState, ClientAddr};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/.portcullis/admin",
            get(|| async { respond::redirect(StatusCode::FOUND, "/.portcullis/admin/users") }),
        )
        .route(
            "/.portcullis/admin/users",
            get(users::list).post(users::create),
        )
        .route(
            "/.portcullis/admin/users/{username}",
            get(user_page::detail),
        )
        .route(
            "/.portcullis/admin/users/{username}/status",
            post(user_changes::set_status),
        )
        .route(
            "/.portcullis/admin/users/{username}/role",
            post(user_changes::set_role),
        )
        .route(
            "/.portcullis/admin/users/{username}/groups",
            post(user_changes::add_group),
        )
        .route(
            "/.portcullis/admin/users/{username}/profile",
            post(profile::save),
        )
        .route(
            "/.portcullis/admin/users/{username}/delete",
            get(profile::confirm).post(profile::delete),
        )
        .route(
            "/.portcullis/admin/users/{username}/password",
            post(passwords::set),
        )
        .route(
            "/.portcullis/admin/users/{username}/factors/reset",
            post(factors::reset),
        )
        .route(
            "/.portcullis/admin/users/{username}/reset-link",
            post(passwords::reset_link),
        )
        .route(
            "/.portcullis/admin/users/{username}/keys",
            post(user_changes::create_key),
        )
        .route(
            "/.portcullis/admin/users/{username}/keys/{id}/revoke",
            post(user_changes::revoke_key),
        )
        .route(
            "/.portcullis/admin/users/{username}/grants/{id}/revoke",
            post(user_changes::revoke_grant),
        )
        .route(
            "/.portcullis/admin/users/{username}/sessions/end-all",
            post(user_changes::end_all_sessions),
        )
        .route(
            "/.portcullis/admin/users/{username}/sessions/{id}/end",
            post(user_changes::end_session),
        )
        .route("/.portcullis/admin/audit", get(audit::list))
        .route("/.portcullis/admin/outbox", get(outbox::page))
        .route("/.portcullis/admin/outbox/retry", post(outbox::retry))
        .route("/.portcullis/admin/outbox/discard", post(outbox::discard))
        .route(
            "/.portcullis/admin/groups",
            get(groups::list).post(groups::create),
        )
        .route("/.portcullis/admin/groups/{name}", get(groups::detail))
        .route(
            "/.portcullis/admin/groups/{name}/delete",
            post(groups::delete),
        )
        .route(
            "/.portcullis/admin/users/{username}/groups/remove",
            post(groups::remove),
        )
}

/// The signed-in admin, or the response that turns everyone else away.
pub(crate) async fn admin(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
    here: &str,
) -> Result<Arc<ActiveSession>, Response> {
    let session = match signed_in(state, headers).await {
        Ok(Some(session)) => session,
        Ok(None) => return Err(respond::sign_in_required(method, here, true)),
        Err(failure) => return Err(respond::failure(&failure, true)),
    };
    if session.identity.role != Role::Admin {
        let failure = Failure::new(
            FailureKind::Forbidden,
            format!(
                "You are signed in as {}, and the admin pages need the admin role.",
                session.identity.username
            ),
        )
        .with_hint("ask an administrator if you need access");
        return Err(respond::failure(&failure, true));
    }
    if state.settings.mfa_required && !session.mfa() {
        return Err(respond::step_up_required(method, here, true));
    }
    Ok(session)
}

/// What the admin pages check on a form post: the session (cookie), the CSRF cookie, and the
/// client address the audit trail records.
pub(crate) struct FormPost {
    pub method: Method,
    pub headers: HeaderMap,
    pub from: ClientAddr,
}

impl FromRequestParts<AppState> for FormPost {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Infallible> {
        let Ok(from) = ClientAddr::from_request_parts(parts, state).await;
        Ok(FormPost {
            method: parts.method.clone(),
            headers: parts.headers.clone(),
            from,
        })
    }
}

/// An admin's form post that passed the session and CSRF checks: who posted, as the audit actor.
pub(crate) async fn admin_post(
    state: &AppState,
    post: &FormPost,
    here: &str,
    csrf: &str,
) -> Result<(Arc<ActiveSession>, Actor), Response> {
    let me = admin(state, &post.method, &post.headers, here).await?;
    if let Some(refused) = csrf_refusal(state, &me, csrf) {
        return Err(refused);
    }
    let actor = post.from.actor(&me.user_id).with_second_factor(me.mfa());
    Ok((me, actor))
}

/// The refusal for a signed-in form post whose CSRF token is not its session's, if it is not.
pub(crate) fn csrf_refusal(
    state: &AppState,
    session: &ActiveSession,
    submitted: &str,
) -> Option<Response> {
    (!csrf::verify_session(&state.sealer, session, submitted)).then(|| {
        respond::failure(
            &Failure::new(
                FailureKind::Forbidden,
                "This form expired or did not come from this site.",
            )
            .with_hint("reload the page and try again"),
            true,
        )
    })
}

/// A rendered admin page with its navigation.
pub(crate) struct Page<'a> {
    pub title: &'a str,
    pub section: &'a str,
    pub who: &'a str,
    /// Admins see the admin sections in the navigation.
    pub admin: bool,
}

impl Page<'_> {
    pub fn render(&self, status: StatusCode, body: &str) -> Response {
        let mut nav = vec![(
            "/.portcullis/account",
            "My account",
            self.section == "account",
        )];
        if self.admin {
            nav.push(("/.portcullis/admin/users", "Users", self.section == "users"));
            nav.push((
                "/.portcullis/admin/groups",
                "Groups",
                self.section == "groups",
            ));
            nav.push((
                "/.portcullis/admin/audit",
                "Audit log",
                self.section == "audit",
            ));
            nav.push((
                "/.portcullis/admin/outbox",
                "Provisioning",
                self.section == "outbox",
            ));
        }
        nav.push(("/.portcullis/whoami", "Who am I", false));
        html_response(status, app_page(self.title, &nav, self.who, body))
    }
}

/// The CSRF token for the forms of a page shown to `session`.
pub(crate) fn form_token(state: &AppState, session: &ActiveSession) -> String {
    csrf::session_token(&state.sealer, session)
}

/// A `?done=` notice after a redirect, restricted to known messages (never reflected text).
pub(crate) fn notice(done: Option<&str>) -> &'static str {
    match done {
        Some("created") => "User created.",
        Some("status") => {
            "Status changed. Sessions, keys and open streams of a disabled user have ended."
        }
        Some("role") => "Role changed.",
        Some("group") => "Added to the group.",
        Some("revoked") => "Key revoked.",
        Some("grant_revoked") => "Client disconnected; its access has ended.",
        Some("sessions") => "Sessions ended; their streams are closed.",
        Some("password") => "Password set; the user's sessions have ended.",
        Some("reset_sent") => "A one-time reset link was sent to the user's email address.",
        Some("factors") => {
            "Second factors reset: the user signs in with the password alone until they set up a new app."
        }
        Some("profile") => "Profile saved.",
        Some("deleted") => "User deleted; their sessions and keys have ended.",
        _ => "",
    }
}

/// A directory operation's failure as a page.
pub(crate) fn directory_failure(e: DirectoryError) -> Response {
    let failure = Failure::from(e);
    let failure = if failure.kind == FailureKind::BadRequest && failure.hint.is_none() {
        failure.with_hint("go back and correct the form")
    } else {
        failure
    };
    respond::failure(&failure, true)
}

pub(crate) fn location(status: StatusCode, to: &str) -> Response {
    let mut response = respond::redirect(status, to);
    response.headers_mut().insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    response
}
