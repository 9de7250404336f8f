//! The second-factor step: after a correct password of an account with a factor (no session
//! until the code is right), and as a step-up where an app needs a second factor the session
//! was not proved with (the session is then replaced by one that was).

use std::net::SocketAddr;

use axum::Form;
use axum::extract::{ConnectInfo, State};
use axum::response::Response;
use http::{HeaderMap, StatusCode};
use portcullis_auth::ActiveSession;
use portcullis_auth::audit::Entry;
use portcullis_auth::factors::{AMR_OTP, AMR_PASSKEY, FactorError, Proof};
use portcullis_auth::session::SessionOrigin;
use portcullis_core::Failure;
use portcullis_core::session::AMR_MFA;
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
    /// A passkey's answer (JSON, filled in by the page's script) and its sealed challenge.
    #[serde(default)]
    pub credential: String,
    #[serde(default)]
    pub challenge: String,
}

const SIGN_IN_INTRO: &str = "Your password is right. Now your second factor: the code from your authenticator app, or your passkey.";
const STEP_UP_INTRO: &str = "This page needs a second factor. Give the code from your authenticator app, or use your passkey, to continue.";

/// The code page of `user_id`'s sign-in or step-up (with a passkey button when they have one),
/// with a double-submit CSRF token (the browser may have no session yet).
async fn code_page(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    (user_id, pending): (&str, &str),
    return_to: &str,
    error: Option<&FieldError>,
) -> Response {
    let (token, set_cookie) = csrf::token_for_form(headers, state.settings.cookie_secure);
    let passkeys = state.factors.passkeys_of(user_id).await.unwrap_or_default();
    let ceremony = if passkeys.is_empty() {
        None
    } else {
        state.factors.begin_passkey_assertion(&passkeys).ok()
    };
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
        passkey: ceremony.as_ref(),
    };
    let mut response = html_response(status, factor_pages::code_page(&form));
    if let Some(cookie) = set_cookie {
        cookies::append(response.headers_mut(), &cookie);
    }
    response
}

/// The step after a correct password of `user`, who has a factor: nothing is signed in yet.
pub async fn after_password(
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
        (&user.id, &pending.seal(&state.sealer)),
        return_to,
        None,
    )
    .await
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
        Ok(true) => {
            let user = (me.user_id.as_str(), "");
            code_page(state, headers, StatusCode::OK, user, return_to, None).await
        }
        Ok(false) => html_response(StatusCode::OK, factor_pages::enrol_needed_page(return_to)),
        Err(e) => respond::failure(&Failure::from(e), true),
    }
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
    let start_over = || respond::redirect(StatusCode::SEE_OTHER, "/.portcullis/sign_in");
    if !body.pending.is_empty() {
        let now = state.clock.now();
        return match PendingSignIn::open(&state.sealer, Step::SecondFactor, &body.pending, now) {
            Some(pending) => finish_sign_in(&state, &headers, pending, &body, client_ip).await,
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
    if !csrf::verify(&headers, &body.csrf) {
        let error = FieldError::new("code", "This form expired. Please try again.");
        let who = (user.id.as_str(), "");
        return code_page(
            &state,
            &headers,
            StatusCode::FORBIDDEN,
            who,
            &return_to,
            Some(&error),
        )
        .await;
    }
    match prove(&state, &user, &body, &client_ip).await {
        Ok(proof) => step_up(&state, &session, &user, &proof, client_ip, &return_to).await,
        Err(e) => match refused(&state, e, &user, client_ip).await {
            Ok((status, error)) => {
                let who = (user.id.as_str(), "");
                code_page(&state, &headers, status, who, &return_to, Some(&error)).await
            }
            Err(answer) => answer,
        },
    }
}

/// Checks the second factor a code form posted: a passkey's answer, or a code.
async fn prove(
    state: &AppState,
    user: &User,
    body: &CodeBody,
    client_ip: &str,
) -> Result<Proof, FactorError> {
    if body.credential.is_empty() {
        return state
            .factors
            .verify(user, &body.code, Some(client_ip))
            .await;
    }
    let (_, proof) = state
        .factors
        .verify_passkey(&body.challenge, &body.credential, Some(&user.id))
        .await?;
    Ok(proof)
}

pub(crate) async fn active_user(state: &AppState, user_id: &str) -> Result<Option<User>, Failure> {
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
    body: &CodeBody,
    client_ip: String,
) -> Response {
    let sealed = pending.seal(&state.sealer);
    let return_to = pending.return_to.clone();
    let user = match active_user(state, &pending.user_id).await {
        Ok(Some(user)) => user,
        Ok(None) => return respond::redirect(StatusCode::SEE_OTHER, "/.portcullis/sign_in"),
        Err(failure) => return respond::failure(&failure, true),
    };
    let who = (user.id.as_str(), sealed.as_str());
    if !csrf::verify(headers, &body.csrf) {
        let error = FieldError::new("code", "This form expired. Please try again.");
        return code_page(
            state,
            headers,
            StatusCode::FORBIDDEN,
            who,
            &return_to,
            Some(&error),
        )
        .await;
    }
    let proof = match prove(state, &user, body, &client_ip).await {
        Ok(proof) => proof,
        Err(e) => {
            return match refused(state, e, &user, client_ip).await {
                Ok((status, error)) => {
                    code_page(state, headers, status, who, &return_to, Some(&error)).await
                }
                Err(answer) => answer,
            };
        }
    };
    let mut amr = pending.amr.clone();
    amr.extend([proof_amr(&proof).to_owned(), AMR_MFA.to_owned()]);
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
        &return_to,
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

pub(crate) fn proof_name(proof: &Proof) -> &'static str {
    match proof {
        Proof::App { .. } => "authenticator_app",
        Proof::RecoveryCode { .. } => "recovery_code",
        Proof::Passkey { .. } => "passkey",
    }
}

/// The RFC 8176 method a proof adds to a session's `amr`.
pub(crate) fn proof_amr(proof: &Proof) -> &'static str {
    match proof {
        Proof::Passkey { .. } => AMR_PASSKEY,
        Proof::App { .. } | Proof::RecoveryCode { .. } => AMR_OTP,
    }
}

/// A factor refused: `Ok` with the status and the error to show the form again with, or the
/// answer itself (the throttle's, or a failure). Wrong codes and passkeys are audited like
/// wrong passwords; throttled attempts are not (each would be a row an attacker writes at will).
async fn refused(
    state: &AppState,
    e: FactorError,
    user: &User,
    client_ip: String,
) -> Result<(StatusCode, FieldError), Response> {
    let reason = match &e {
        FactorError::WrongCode => "wrong_code",
        FactorError::Passkey(why) => {
            tracing::info!(user = %user.username, reason = %why, "a passkey was refused");
            "passkey_refused"
        }
        FactorError::Throttled { retry_after } => {
            state.metrics.sign_in("throttled");
            return Err(throttled(
                "Too many wrong codes. Try again in {} seconds.",
                *retry_after,
            ));
        }
        _ => return Err(respond::failure(&Failure::from(e), true)),
    };
    state.metrics.sign_in("failure");
    state
        .audit
        .record(Entry {
            action: "second_factor",
            success: false,
            actor: None,
            subject: Some(&user.username),
            reason: Some(reason),
            client_ip: Some(client_ip),
        })
        .await;
    Ok((
        StatusCode::UNAUTHORIZED,
        FieldError::new("code", e.to_string()),
    ))
}
