//! The local sign-in form.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Form;
use axum::extract::{ConnectInfo, Query, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use portcullis_auth::principal::{Presented, Surface};
use portcullis_auth::session::SessionOrigin;
use portcullis_auth::{ActiveSession, LoginError};
use portcullis_core::user::User;
use portcullis_core::{Failure, FailureKind};
use portcullis_http::cookies::{self, SESSION_COOKIE};
use portcullis_http::respond::{self, html_response};
use serde::Deserialize;

use crate::csrf;
use crate::pages::{self, SignInForm};
use crate::pending::{PendingSignIn, Step};
use crate::state::AppState;
use portcullis_auth::audit::Entry;
use portcullis_auth::devices::{DEVICE_COOKIE, DEVICE_LIFETIME, KnownDevices};

#[derive(Deserialize, Default)]
pub struct SignInQuery {
    #[serde(default)]
    rd: Option<String>,
    #[serde(default)]
    signed_out: Option<String>,
    #[serde(default)]
    password_changed: Option<String>,
    /// The gateway sent a signed-in session here for a second factor (`Challenge::StepUp`).
    #[serde(default)]
    mfa: Option<String>,
}

#[derive(Deserialize, Default)]
pub struct SignInBody {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    login: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    rd: Option<String>,
}

const WRONG_CREDENTIALS: &str = "Wrong username or password.";
/// How this form proves who someone is, for the audit trail.
const METHOD: &str = "local_password";
/// RFC 8176's `amr` value for a password.
pub const AMR_PASSWORD: &str = "pwd";

/// Who is signed in, for Portcullis's own pages: the session, or `Ok(None)` for nobody. Decided
/// by the one authenticator as for every surface; a store that cannot answer is an error the
/// page shows as such (503), never "not signed in".
pub async fn signed_in(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<Arc<ActiveSession>>, Failure> {
    let presented = Presented::read(headers, None);
    let principal = state
        .gateway
        .auth
        .authenticate(Surface::Pages, &presented)
        .await
        .map_err(Failure::from)?;
    Ok(principal.and_then(|p| p.session().cloned()))
}

pub fn user_agent(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(256).collect())
}

/// Starts a session for a user who just proved who they are: records the sign-in, sets the
/// cookie and sends the browser on to `return_to`.
pub async fn start_session(
    state: &AppState,
    user: &User,
    origin: SessionOrigin,
    method: &str,
    return_to: &str,
    status: StatusCode,
) -> Response {
    let client_ip = origin.client_ip.clone();
    let (token, _) = match state.sessions.create(user, origin).await {
        Ok(created) => created,
        Err(e) => return respond::failure(&Failure::from(e), true),
    };
    state.metrics.sign_in("success");
    state
        .audit
        .record(Entry {
            action: "sign_in",
            success: true,
            actor: Some(&user.id),
            subject: Some(&user.username),
            reason: Some(method),
            client_ip,
        })
        .await;
    let mut response = respond::redirect(status, return_to);
    set_session_cookie(state, &mut response, &token);
    // This browser is now known for this account: its next password checks get a lane of
    // their own while strangers flood the sign-in form (portcullis_auth::devices).
    let device = cookies::set_cookie(
        DEVICE_COOKIE,
        &known_devices(state).issue(&user.id),
        state.settings.cookie_secure,
        Some(DEVICE_LIFETIME.as_secs()),
    );
    cookies::append(response.headers_mut(), &device);
    response
}

/// Holds a refused attempt's answer for `local_auth.refusal_delay` (never past its
/// `Retry-After`): one attacker connection then makes one attempt per delay, and a sleeping
/// answer costs no CPU. The person told to retry loses nothing: they could not get in sooner.
async fn hold_refusal(state: &AppState, retry_after: std::time::Duration) {
    let delay = state.settings.refusal_delay.min(retry_after);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
}

fn known_devices(state: &AppState) -> KnownDevices {
    KnownDevices::new(state.sealer.clone(), state.clock.clone())
}

/// The account this browser signed in before, if its device cookie is genuine.
fn known_user(state: &AppState, headers: &HeaderMap) -> Option<String> {
    let devices = known_devices(state);
    cookies::values(headers, DEVICE_COOKIE).find_map(|value| devices.user_of(value))
}

/// Hands the browser the cookie of a new session.
pub fn set_session_cookie(state: &AppState, response: &mut Response, token: &str) {
    let cookie = cookies::with_domain(
        cookies::set_cookie(SESSION_COOKIE, token, state.settings.cookie_secure, None),
        state.settings.cookie_domain.as_deref(),
    );
    cookies::append(response.headers_mut(), &cookie);
}

/// The refusal of an attempt made too soon after too many failures, with `Retry-After`;
/// `message` has a `{}` for the seconds.
pub fn throttled(message: &str, retry_after: std::time::Duration) -> Response {
    retry_later(FailureKind::RateLimited, message, retry_after)
}

/// A refusal that says when to come back (`Retry-After`); `{}` in `message` becomes the seconds.
pub fn retry_later(kind: FailureKind, message: &str, retry_after: std::time::Duration) -> Response {
    let seconds = retry_after.as_secs().max(1);
    let failure = Failure::new(kind, message.replacen("{}", &seconds.to_string(), 1));
    let mut response = respond::failure(&failure, true);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

/// The sign-in page again, with `error` (a refused passkey, say).
pub(crate) fn form_with_error(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    return_to: &str,
    error: &str,
) -> Response {
    let form = SignInForm {
        providers: &[],
        local: true,
        csrf: "",
        return_to,
        login: "",
        error: Some(error),
        notice: None,
        setup_pending: false,
        passkey: None,
    };
    render(state, headers, status, form)
}

fn render(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    form: SignInForm<'_>,
) -> Response {
    let (token, set_cookie) = csrf::token_for_form(headers, state.settings.cookie_secure);
    let providers: Vec<(String, String)> = state
        .providers
        .all()
        .map(|p| (p.id().to_owned(), p.config.display_name().to_owned()))
        .collect();
    // A fresh challenge per page: a passkey may sign in without a password.
    let ceremony = state.factors.begin_passkey_assertion(&[]).ok();
    let form = SignInForm {
        csrf: &token,
        providers: &providers,
        local: state.settings.local_auth_enabled,
        setup_pending: state.setup.is_open(),
        passkey: ceremony.as_ref(),
        ..form
    };
    let mut response = html_response(status, pages::sign_in(&form));
    if let Some(cookie) = set_cookie {
        cookies::append(response.headers_mut(), &cookie);
    }
    response
}

pub async fn form(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<SignInQuery>,
) -> Response {
    let return_to = state.settings.return_target(query.rd.as_deref());
    // Already signed in: straight on, unless the way on needs a second factor the session was
    // not proved with (then this is the step-up). A store that cannot answer shows the form;
    // signing in then says it is unavailable.
    if let Ok(Some(me)) = signed_in(&state, &headers).await {
        let wants_factor =
            query.mfa.is_some() || crate::step_up::target_needs_mfa(&state, &headers, &return_to);
        if wants_factor && !me.mfa() {
            return crate::factors::step_up_page(&state, &headers, &me, &return_to).await;
        }
        return respond::redirect(StatusCode::FOUND, &return_to);
    }
    let notice = if query.password_changed.is_some() {
        Some("Your password has been changed. Sign in with the new one.")
    } else {
        query
            .signed_out
            .is_some()
            .then_some("You have been signed out.")
    };
    let form = SignInForm {
        providers: &[],
        local: true,
        csrf: "",
        return_to: &return_to,
        login: "",
        error: None,
        notice,
        setup_pending: false,
        passkey: None,
    };
    render(&state, &headers, StatusCode::OK, form)
}

pub async fn submit(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(body): Form<SignInBody>,
) -> Response {
    let return_to = state.settings.return_target(body.rd.as_deref());
    let retry = |status, error| {
        let form = SignInForm {
            providers: &[],
            local: true,
            csrf: "",
            return_to: &return_to,
            login: &body.login,
            error: Some(error),
            notice: None,
            setup_pending: false,
            passkey: None,
        };
        render(&state, &headers, status, form)
    };
    if !state.settings.local_auth_enabled {
        return respond::failure(
            &Failure::new(
                FailureKind::NotFound,
                "Password sign-in is turned off here.",
            )
            .with_hint("use one of the identity providers"),
            true,
        );
    }
    if !csrf::verify(&headers, &body.csrf) {
        return retry(
            StatusCode::FORBIDDEN,
            "This form expired. Please sign in again.",
        );
    }
    let client_ip = state.client(peer, &headers).client_ip.to_string();
    let outcome = state
        .local_login
        .authenticate(
            &body.login,
            &body.password,
            Some(&client_ip),
            known_user(&state, &headers).as_deref(),
        )
        .await;
    let audit_failure = |reason: &'static str| Entry {
        action: "sign_in",
        success: false,
        actor: None,
        subject: Some(body.login.as_str()),
        reason: Some(reason),
        client_ip: Some(client_ip.clone()),
    };
    let password_only = vec![AMR_PASSWORD.to_owned()];
    match outcome {
        Ok(user) => match state.factors.has_factor(&user.id).await {
            Ok(true) => {
                crate::factors::after_password(&state, &headers, &user, &return_to, METHOD).await
            }
            Ok(false) if user.must_change_password => {
                let pending = PendingSignIn::new(
                    Step::NewPassword,
                    &user.id,
                    &return_to,
                    (METHOD, &password_only),
                    state.clock.now(),
                );
                let sealed = pending.seal(&state.sealer);
                crate::passwords::must_change_page(&state, &headers, &sealed, StatusCode::OK, None)
            }
            Ok(false) => {
                let origin = SessionOrigin {
                    client_ip: Some(client_ip.clone()),
                    user_agent: user_agent(&headers),
                    amr: password_only,
                    ..SessionOrigin::default()
                };
                start_session(
                    &state,
                    &user,
                    origin,
                    METHOD,
                    &return_to,
                    StatusCode::SEE_OTHER,
                )
                .await
            }
            Err(e) => respond::failure(&Failure::from(e), true),
        },
        Err(LoginError::Rejected { reason }) => {
            state.metrics.sign_in("failure");
            state.audit.record(audit_failure(reason)).await;
            retry(StatusCode::UNAUTHORIZED, WRONG_CREDENTIALS)
        }
        Err(LoginError::Throttled { retry_after, first }) => {
            state.metrics.sign_in("throttled");
            hold_refusal(&state, retry_after).await;
            // Once per lock: every further refused attempt would be a row an attacker writes.
            if first {
                state.audit.record(audit_failure("throttled")).await;
            }
            throttled(
                "Too many failed sign-ins. Try again in {} seconds.",
                retry_after,
            )
        }
        // The hashing queue is full: refused without any work, and without an audit row per
        // attempt (an attacker would be writing them); the metric counts them.
        Err(LoginError::Busy { retry_after }) => {
            state.metrics.sign_in("busy");
            hold_refusal(&state, retry_after).await;
            retry_later(
                FailureKind::Busy,
                "Too many sign-ins are being checked right now. Try again in {} seconds.",
                retry_after,
            )
        }
        Err(LoginError::Unavailable(message)) => {
            state.metrics.sign_in("failure");
            state
                .audit
                .record(audit_failure("directory_unavailable"))
                .await;
            tracing::warn!(error = %message, "LDAP sign-in failed: the directory is unavailable");
            let failure = Failure::new(
                FailureKind::UpstreamUnavailable,
                "The sign-in directory cannot be reached right now.",
            )
            .with_hint(
                "try again in a moment; if it persists, tell the operator (the log says why)",
            );
            respond::failure(&failure, true)
        }
        Err(LoginError::Store(e)) => respond::failure(&Failure::from(e), true).into_response(),
    }
}
