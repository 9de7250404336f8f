//! Choosing a new password in the browser: with a one-time reset link, at a sign-in whose
//! account must change it, and on the account page (which asks for the current one). All three
//! check the same policy and write through the directory, which audits and ends sessions.

use std::net::SocketAddr;

use axum::Form;
use axum::extract::{ConnectInfo, Query, State};
use axum::response::Response;
use http::{HeaderMap, StatusCode};
use portcullis_auth::LoginError;
use portcullis_auth::audit::Actor;
use portcullis_auth::directory::KeepSessions;
use portcullis_core::user::{User, UserStatus};
use portcullis_core::{Failure, FailureKind};
use portcullis_http::cookies;
use portcullis_http::respond::{self, html_response};
use portcullis_store::ResetLink;
use serde::Deserialize;

use crate::csrf;
use crate::pages::{self, FieldError, NewPasswordForm};
use crate::pending::{PendingSignIn, Step};
use crate::sign_in::{start_session, user_agent};
use crate::state::AppState;
use portcullis_auth::session::SessionOrigin;

pub const RESET_PATH: &str = "/.portcullis/reset";
pub const MUST_CHANGE_PATH: &str = "/.portcullis/sign_in/new_password";

/// The address at which a reset link's token is used.
pub fn reset_url(public_url: &str, token: &str) -> String {
    format!(
        "{}{RESET_PATH}?token={token}",
        public_url.trim_end_matches('/')
    )
}

/// Where a reset link for `user` can be mailed: the relay and their address, or why it cannot
/// (asked before a link is made, so none is made that nobody receives).
pub fn mail_route<'a>(
    state: &'a AppState,
    user: &'a User,
) -> Result<(&'a crate::mail::Mailer, &'a portcullis_core::Email), Failure> {
    let Some(mailer) = state.mailer.as_deref() else {
        return Err(Failure::bad_request(
            "No [smtp] relay is configured, so links cannot be mailed.",
        )
        .with_hint("configure [smtp], or make the link and pass it on yourself"));
    };
    let Some(to) = &user.email else {
        return Err(Failure::bad_request(format!(
            "{} has no email address to send the link to.",
            user.username
        ))
        .with_hint("add one to the user, or make the link and pass it on yourself"));
    };
    Ok((mailer, to))
}

/// Mails a just-issued reset link to `user`'s address; returns the address. Audited
/// `password_reset_sent`.
pub async fn email_reset_link(
    state: &AppState,
    user: &User,
    issued: &portcullis_auth::directory::IssuedReset,
    actor: &Actor,
) -> Result<String, Failure> {
    let (mailer, to) = mail_route(state, user)?;
    let url = reset_url(&state.settings.public_url, &issued.token);
    let name = user.display_name.as_deref().unwrap_or(&user.username);
    mailer
        .send_reset_link(to, name, &url, issued.expires_at)
        .await?;
    state.directory.reset_link_sent(user, to, actor).await;
    Ok(to.to_string())
}

#[derive(Deserialize, Default)]
pub struct ResetQuery {
    #[serde(default)]
    token: String,
}

/// Every form here posts these; each uses the fields it needs.
#[derive(Deserialize, Default)]
pub struct NewPasswordBody {
    #[serde(default)]
    pub csrf: String,
    #[serde(default)]
    token: String,
    #[serde(default)]
    pending: String,
    #[serde(default)]
    pub current_password: String,
    #[serde(default)]
    pub password: String,
    #[serde(default)]
    pub confirm: String,
}

/// Why a new password was not taken: a field to correct, or a failure of the server's own.
pub enum Refusal {
    Field(FieldError),
    Failure(Failure),
}

/// The hash of the new password in `body` for `user`, once it is repeated correctly and the
/// policy accepts it.
pub async fn new_hash(
    state: &AppState,
    user: &User,
    body: &NewPasswordBody,
) -> Result<String, Refusal> {
    if body.password != body.confirm {
        return Err(Refusal::Field(FieldError::new(
            "confirm",
            "The two new passwords differ; type the same one twice.",
        )));
    }
    let names = [user.username.as_str(), user.email.as_deref().unwrap_or("")];
    state
        .local_login
        .hash_new(&body.password, &names)
        .await
        .map_err(|failure| match failure.kind {
            FailureKind::BadRequest => Refusal::Field(FieldError::new("password", failure.message)),
            _ => Refusal::Failure(failure),
        })
}

/// A page with the new-password form for someone not signed in, with a double-submit CSRF
/// token (minted if the browser has none yet).
fn page(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    (title, intro): (&str, &str),
    action: &str,
    carried: (&str, &str),
    error: Option<&FieldError>,
) -> Response {
    let (token, set_cookie) = csrf::token_for_form(headers, state.settings.cookie_secure);
    let hidden = [("csrf", token.as_str()), carried];
    let form = NewPasswordForm {
        action,
        hidden: &hidden,
        ask_current: false,
        min_length: state.local_login.policy().min_length(),
        error,
        button: "Set the new password",
    };
    let mut response = html_response(status, pages::new_password_page(title, intro, &form));
    if let Some(cookie) = set_cookie {
        cookies::append(response.headers_mut(), &cookie);
    }
    response
}

const RESET_TEXT: (&str, &str) = (
    "Choose a new password",
    "This link works once. After you set the password, every session of your account ends and you sign in with the new one.",
);

/// A link that does not work, said plainly, with the way on.
fn dead_link(state: ResetLink) -> Response {
    let text = match state {
        ResetLink::Used => "This reset link has been used already; each link works once.",
        ResetLink::Expired => "This reset link has expired.",
        _ => "This reset link is not valid (a later password change cancels earlier links).",
    };
    let failure = Failure::new(FailureKind::NotFound, text)
        .with_hint("ask your administrator for a new link, or sign in if you know your password");
    respond::failure(&failure, true)
}

pub async fn reset_form(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<ResetQuery>,
) -> Response {
    match state.directory.reset_link_user(query.token.trim()).await {
        Ok(Ok(_)) => page(
            &state,
            &headers,
            StatusCode::OK,
            RESET_TEXT,
            RESET_PATH,
            ("token", query.token.trim()),
            None,
        ),
        Ok(Err(dead)) => dead_link(dead),
        Err(e) => respond::failure(&Failure::from(e), true),
    }
}

pub async fn reset_submit(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(body): Form<NewPasswordBody>,
) -> Response {
    let token = body.token.trim();
    let retry = |status, error: FieldError| {
        page(
            &state,
            &headers,
            status,
            RESET_TEXT,
            RESET_PATH,
            ("token", token),
            Some(&error),
        )
    };
    if !csrf::verify(&headers, &body.csrf) {
        let expired = FieldError::new(
            "password",
            "This form expired; please type the new password again.",
        );
        return retry(StatusCode::FORBIDDEN, expired);
    }
    let user = match state.directory.reset_link_user(token).await {
        Ok(Ok(user)) => user,
        Ok(Err(dead)) => return dead_link(dead),
        Err(e) => return respond::failure(&Failure::from(e), true),
    };
    let hash = match new_hash(&state, &user, &body).await {
        Ok(hash) => hash,
        Err(Refusal::Field(error)) => return retry(StatusCode::BAD_REQUEST, error),
        Err(Refusal::Failure(failure)) => return respond::failure(&failure, true),
    };
    let client_ip = state.client(peer, &headers).client_ip.to_string();
    match state
        .directory
        .use_reset_link(token, &hash, Some(client_ip))
        .await
    {
        Ok(Ok(user)) => {
            state.apply_user_change(&user.id).await;
            respond::redirect(
                StatusCode::SEE_OTHER,
                "/.portcullis/sign_in?password_changed=1",
            )
        }
        // Another tab or replica used it between the check and now.
        Ok(Err(dead)) => dead_link(dead),
        Err(e) => respond::failure(&Failure::from(e), true),
    }
}

const MUST_CHANGE_TEXT: (&str, &str) = (
    "Choose a new password",
    "Your administrator asks you to choose a new password before you continue.",
);

/// The step after a correct password of an account that must change it: no session yet.
pub fn must_change_page(
    state: &AppState,
    headers: &HeaderMap,
    pending: &str,
    status: StatusCode,
    error: Option<&FieldError>,
) -> Response {
    page(
        state,
        headers,
        status,
        MUST_CHANGE_TEXT,
        MUST_CHANGE_PATH,
        ("pending", pending),
        error,
    )
}

pub async fn must_change_submit(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(body): Form<NewPasswordBody>,
) -> Response {
    let start_over = || respond::redirect(StatusCode::SEE_OTHER, "/.portcullis/sign_in");
    let now = state.clock.now();
    let Some(pending) = PendingSignIn::open(&state.sealer, Step::NewPassword, &body.pending, now)
    else {
        return start_over();
    };
    let retry = |status, error: FieldError| {
        must_change_page(&state, &headers, &body.pending, status, Some(&error))
    };
    if !csrf::verify(&headers, &body.csrf) {
        let expired = FieldError::new(
            "password",
            "This form expired; please type the new password again.",
        );
        return retry(StatusCode::FORBIDDEN, expired);
    }
    // Still owed: once changed (in another tab, say), the pending value is worth nothing.
    let user = match state.store.user_by_id(&pending.user_id).await {
        Ok(Some(user)) if user.must_change_password && user.status == UserStatus::Active => user,
        Ok(_) => return start_over(),
        Err(e) => return respond::failure(&Failure::from(e), true),
    };
    let hash = match new_hash(&state, &user, &body).await {
        Ok(hash) => hash,
        Err(Refusal::Field(error)) => return retry(StatusCode::BAD_REQUEST, error),
        Err(Refusal::Failure(failure)) => return respond::failure(&failure, true),
    };
    let client_ip = state.client(peer, &headers).client_ip.to_string();
    let actor = Actor::new(user.id.clone(), Some(client_ip.clone()));
    if let Err(e) = state
        .directory
        .set_password(&user, Some(&hash), false, KeepSessions::None, &actor)
        .await
    {
        return respond::failure(&Failure::from(e), true);
    }
    let origin = SessionOrigin {
        client_ip: Some(client_ip),
        user_agent: user_agent(&headers),
        amr: pending.amr.clone(),
        ..SessionOrigin::default()
    };
    start_session(
        &state,
        &user,
        origin,
        &pending.method,
        &pending.return_to,
        StatusCode::SEE_OTHER,
    )
    .await
}

/// What changing your own password refuses, as the field to correct (a wrong current password
/// counts as a failed sign-in for throttling).
pub async fn check_current(
    state: &AppState,
    user: &User,
    password: &str,
    client_ip: Option<&str>,
) -> Result<(), Refusal> {
    if !user.has_password {
        return Err(Refusal::Failure(
            Failure::bad_request("Your account has no Portcullis password to change.")
                .with_hint("you sign in through your identity provider; change it there"),
        ));
    }
    match state
        .local_login
        .check_current(user, password, client_ip)
        .await
    {
        Ok(()) => Ok(()),
        Err(LoginError::Rejected { .. }) => Err(Refusal::Field(FieldError::new(
            "current_password",
            "That is not your current password.",
        ))),
        Err(LoginError::Throttled { retry_after, .. }) => Err(Refusal::Failure(Failure::new(
            FailureKind::RateLimited,
            format!(
                "Too many wrong passwords. Try again in {} seconds.",
                retry_after.as_secs().max(1)
            ),
        ))),
        Err(LoginError::Busy { retry_after }) => Err(Refusal::Failure(Failure::new(
            FailureKind::Busy,
            format!(
                "Too many passwords are being checked right now. Try again in {} seconds.",
                retry_after.as_secs().max(1)
            ),
        ))),
        Err(LoginError::Unavailable(message)) => Err(Refusal::Failure(Failure::new(
            FailureKind::UpstreamUnavailable,
            message,
        ))),
        Err(LoginError::Store(e)) => Err(Refusal::Failure(Failure::from(e))),
    }
}
