//! The second-factor step: after a correct password of an account with a factor (no session
//! until the code is right), and as a step-up where an app needs a second factor the session
//! was not proved with (the session is then replaced by one that was).

use std::net::SocketAddr;

use axum::Form;
use axum::extract::{ConnectInfo, State};
use axum::response::Response;
use http::{HeaderMap, StatusCode, header};
use portcullis_auth::ActiveSession;
use portcullis_auth::audit::Entry;
use portcullis_auth::factors::{AMR_OTP, FactorError, Proof};
use portcullis_auth::session::SessionOrigin;
use portcullis_core::Failure;
use portcullis_core::config::SHARED_PREFIXES;
use portcullis_core::path;
use portcullis_core::user::{User, UserStatus};
use portcullis_http::cookies;
use portcullis_http::respond::{self, html_response};
use serde::Deserialize;

use crate::csrf;
use crate::factor_pages::{self, CodeForm};
use crate::pages::FieldError;
use crate::pending::{PendingSignIn, Step};
use crate::sign_in::{set_session_cookie, signed_in, start_session, throttled, user_agent};
use crate::state::AppState;

#[derive(Deserialize, Default)]
pub struct CodeBody {
    #[serde(default)]
    pub csrf: String,
    #[serde(default)]
    pending: String,
    #[serde(default)]
    rd: Option<String>,
    #[serde(default)]
    pub code: String,
}

const SIGN_IN_INTRO: &str = "Your password is right. Now the code from your authenticator app.";
const STEP_UP_INTRO: &str =
    "This page needs a second factor. Give the code from your authenticator app to continue.";

/// The code page, with a double-submit CSRF token (the browser may have no session yet).
fn code_page(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    pending: &str,
    return_to: &str,
    error: Option<&FieldError>,
) -> Response {
    let (token, set_cookie) = csrf::token_for_form(headers, state.settings.cookie_secure);
    let form = CodeForm {
        csrf: &token,
        pending,
        return_to,
        error,
        intro: if pending.is_empty() {
            STEP_UP_INTRO
        } else {
            SIGN_IN_INTRO
        },
    };
    let mut response = html_response(status, factor_pages::code_page(&form));
    if let Some(cookie) = set_cookie {
        cookies::append(response.headers_mut(), &cookie);
    }
    response
}

/// The step after a correct password of `user`, who has a factor: nothing is signed in yet.
pub fn after_password(
    state: &AppState,
    headers: &HeaderMap,
    user: &User,
    return_to: &str,
    method: &str,
) -> Response {
    let pending = PendingSignIn::new(
        Step::SecondFactor,
        &user.id,
        return_to,
        (method, &[crate::sign_in::AMR_PASSWORD.to_owned()]),
        state.clock.now(),
    );
    code_page(
        state,
        headers,
        StatusCode::OK,
        &pending.seal(&state.sealer),
        return_to,
        None,
    )
}

/// The sign-in page for someone signed in whose way on needs a factor the session lacks: the
/// code form, or (without any factor yet) the way to set one up.
pub async fn step_up_page(
    state: &AppState,
    headers: &HeaderMap,
    me: &ActiveSession,
    return_to: &str,
) -> Response {
    match state.factors.has_factor(&me.user_id).await {
        Ok(true) => code_page(state, headers, StatusCode::OK, "", return_to, None),
        Ok(false) => html_response(StatusCode::OK, factor_pages::enrol_needed_page(return_to)),
        Err(e) => respond::failure(&Failure::from(e), true),
    }
}

/// Whether going on to `return_to` (as the sign-in page got it) needs a second factor: the
/// app it routes to says `require_mfa`, or it is Portcullis's own admin surface under
/// `mfa.required`. The gateway decides the same from the same route table, so the two agree.
pub fn target_needs_mfa(state: &AppState, headers: &HeaderMap, return_to: &str) -> bool {
    let (host, rest) = match return_to
        .strip_prefix("https://")
        .or_else(|| return_to.strip_prefix("http://"))
    {
        Some(absolute) => {
            let (authority, rest) = absolute.split_at(absolute.find('/').unwrap_or(absolute.len()));
            (authority.to_owned(), rest.to_owned())
        }
        None => (
            headers
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned(),
            return_to.to_owned(),
        ),
    };
    let host = host
        .rsplit_once(':')
        .map_or(host.as_str(), |(h, _)| h)
        .to_ascii_lowercase();
    let raw_path = rest.split(['?', '#']).next().unwrap_or("/");
    let Ok(canonical) = path::canonicalize(if raw_path.is_empty() { "/" } else { raw_path }) else {
        return false;
    };
    let own = ["/.portcullis/admin", "/.portcullis/api"]
        .iter()
        .chain(SHARED_PREFIXES)
        .any(|prefix| path::has_prefix(&canonical, prefix));
    let routes = &state.gateway.routes;
    if own && !routes.claims(&host, &canonical) {
        return state.settings.mfa_required;
    }
    routes
        .route(&host, &canonical)
        .is_some_and(|app| app.require_mfa)
}

/// `POST /.portcullis/sign_in/factor`: the code of a pending sign-in, or of a step-up.
pub async fn submit(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(body): Form<CodeBody>,
) -> Response {
    let return_to = state.settings.return_target(body.rd.as_deref());
    let client_ip = state.client(peer, &headers).client_ip.to_string();
    let retry = |status, message: &str| {
        let error = FieldError::new("code", message);
        code_page(
            &state,
            &headers,
            status,
            &body.pending,
            &return_to,
            Some(&error),
        )
    };
    if !csrf::verify(&headers, &body.csrf) {
        return retry(
            StatusCode::FORBIDDEN,
            "This form expired. Please type the code again.",
        );
    }
    let start_over = || respond::redirect(StatusCode::SEE_OTHER, "/.portcullis/sign_in");
    if !body.pending.is_empty() {
        let now = state.clock.now();
        return match PendingSignIn::open(&state.sealer, Step::SecondFactor, &body.pending, now) {
            Some(pending) => finish_sign_in(&state, &headers, pending, &body.code, client_ip).await,
            None => start_over(),
        };
    }
    // A step-up: the code is for the signed-in session's account.
    let session = match signed_in(&state, &headers).await {
        Ok(Some(session)) => session,
        Ok(None) => return start_over(),
        Err(failure) => return respond::failure(&failure, true),
    };
    let user = match active_user(&state, &session.user_id).await {
        Ok(Some(user)) => user,
        Ok(None) => return start_over(),
        Err(failure) => return respond::failure(&failure, true),
    };
    match state
        .factors
        .verify(&user, &body.code, Some(&client_ip))
        .await
    {
        Ok(proof) => step_up(&state, &session, &user, &proof, client_ip, &return_to).await,
        Err(e) => refused(&state, e, &user, client_ip, retry).await,
    }
}

async fn active_user(state: &AppState, user_id: &str) -> Result<Option<User>, Failure> {
    Ok(state
        .store
        .user_by_id(user_id)
        .await
        .map_err(Failure::from)?
        .filter(|u| u.status == UserStatus::Active))
}

/// The code of a sign-in whose password was right: the session starts (or, for an account
/// that must change its password, that step comes next).
async fn finish_sign_in(
    state: &AppState,
    headers: &HeaderMap,
    pending: PendingSignIn,
    code: &str,
    client_ip: String,
) -> Response {
    let sealed = pending.seal(&state.sealer);
    let return_to = pending.return_to.clone();
    let retry = |status, message: &str| {
        let error = FieldError::new("code", message);
        code_page(state, headers, status, &sealed, &return_to, Some(&error))
    };
    let user = match active_user(state, &pending.user_id).await {
        Ok(Some(user)) => user,
        Ok(None) => return respond::redirect(StatusCode::SEE_OTHER, "/.portcullis/sign_in"),
        Err(failure) => return respond::failure(&failure, true),
    };
    let proof = match state.factors.verify(&user, code, Some(&client_ip)).await {
        Ok(proof) => proof,
        Err(e) => return refused(state, e, &user, client_ip, retry).await,
    };
    let mut amr = pending.amr.clone();
    amr.extend([
        AMR_OTP.to_owned(),
        portcullis_core::session::AMR_MFA.to_owned(),
    ]);
    let method = format!("{} + {}", pending.method, proof_name(&proof));
    if user.must_change_password {
        let next = pending
            .proved(method, amr)
            .at(Step::NewPassword, state.clock.now());
        let sealed = next.seal(&state.sealer);
        return crate::passwords::must_change_page(state, headers, &sealed, StatusCode::OK, None);
    }
    let origin = SessionOrigin {
        client_ip: Some(client_ip),
        user_agent: user_agent(headers),
        amr,
        ..SessionOrigin::default()
    };
    start_session(
        state,
        &user,
        origin,
        &method,
        &pending.return_to,
        StatusCode::SEE_OTHER,
    )
    .await
}

/// Replaces `session` with one proved with the second factor too, and goes on.
async fn step_up(
    state: &AppState,
    session: &ActiveSession,
    user: &User,
    proof: &Proof,
    client_ip: String,
    return_to: &str,
) -> Response {
    let (token, _) = match state
        .sessions
        .step_up(&session.id_hash, user, &[AMR_OTP])
        .await
    {
        Ok(created) => created,
        Err(e) => return respond::failure(&Failure::from(e), true),
    };
    state
        .audit
        .record(Entry {
            action: "step_up",
            success: true,
            actor: Some(&user.id),
            subject: Some(&user.username),
            reason: Some(proof_name(proof)),
            client_ip: Some(client_ip),
        })
        .await;
    let mut response = respond::redirect(StatusCode::SEE_OTHER, return_to);
    set_session_cookie(state, &mut response, &token);
    response
}

fn proof_name(proof: &Proof) -> &'static str {
    match proof {
        Proof::App { .. } => "authenticator_app",
        Proof::RecoveryCode { .. } => "recovery_code",
    }
}

/// A code refused: the form again with the reason, or the throttle's answer. Wrong codes are
/// audited like wrong passwords; throttled ones are not (each would be a row an attacker
/// writes at will).
async fn refused(
    state: &AppState,
    e: FactorError,
    user: &User,
    client_ip: String,
    retry: impl FnOnce(StatusCode, &str) -> Response,
) -> Response {
    match e {
        FactorError::WrongCode => {
            state.metrics.sign_in("failure");
            state
                .audit
                .record(Entry {
                    action: "second_factor",
                    success: false,
                    actor: None,
                    subject: Some(&user.username),
                    reason: Some("wrong_code"),
                    client_ip: Some(client_ip),
                })
                .await;
            retry(StatusCode::UNAUTHORIZED, &e.to_string())
        }
        FactorError::Throttled { retry_after } => {
            state.metrics.sign_in("throttled");
            throttled(
                "Too many wrong codes. Try again in {} seconds.",
                retry_after,
            )
        }
        other => respond::failure(&Failure::from(other), true),
    }
}
