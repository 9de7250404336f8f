//! Passwords through the API: your own (with the current one), a user's (admin), and one-time
//! reset links (admin).

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use portcullis_auth::directory::KeepSessions;
use portcullis_core::Failure;
use serde::Deserialize;

use super::caller::{ApiError, ApiResult, Caller, body};
use crate::passwords::{Refusal, check_current, reset_url};
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeOwnBody {
    current_password: String,
    new_password: String,
}

fn refused(refusal: Refusal) -> ApiError {
    match refusal {
        Refusal::Field(error) => ApiError(Failure::bad_request(format!(
            "{}: {}",
            error.field, error.message
        ))),
        Refusal::Failure(failure) => ApiError(failure),
    }
}

/// `POST /api/v1/me/password`: every other session of the caller ends (a key-authenticated
/// call ends them all).
pub async fn change_own(
    State(state): State<AppState>,
    who: Caller,
    parsed: Result<Json<ChangeOwnBody>, JsonRejection>,
) -> ApiResult<Response> {
    let change = body(parsed)?;
    let user = state.directory.user(&who.identity.username).await?;
    check_current(
        &state,
        &user,
        &change.current_password,
        who.actor.client_ip.as_deref(),
    )
    .await
    .map_err(refused)?;
    let names = [user.username.as_str(), user.email.as_deref().unwrap_or("")];
    let hash = state
        .local_login
        .hash_new(&change.new_password, &names)
        .await?;
    let keep = match &who.session {
        Some(id_hash) => KeepSessions::This(id_hash),
        None => KeepSessions::None,
    };
    state
        .directory
        .set_password(&user, Some(&hash), false, keep, &who.actor)
        .await?;
    state.apply_user_change(&user.id).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetBody {
    password: String,
    #[serde(default)]
    must_change: bool,
}

/// `PUT /api/v1/users/{username}/password` (admin): every session of the user ends.
pub async fn set(
    State(state): State<AppState>,
    who: Caller,
    Path(username): Path<String>,
    parsed: Result<Json<SetBody>, JsonRejection>,
) -> ApiResult<Response> {
    who.require_admin()?;
    let set = body(parsed)?;
    let user = state.directory.user(&username).await?;
    let names = [user.username.as_str(), user.email.as_deref().unwrap_or("")];
    let hash = state.local_login.hash_new(&set.password, &names).await?;
    state
        .directory
        .set_password(
            &user,
            Some(&hash),
            set.must_change,
            KeepSessions::None,
            &who.actor,
        )
        .await?;
    state.apply_user_change(&user.id).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /api/v1/users/{username}/reset-link` (admin): the link, shown once.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ResetLinkBody {
    /// Mail the link to the user's address (needs `[smtp]`) instead of returning it.
    #[serde(default)]
    send_email: bool,
}

/// `POST /api/v1/users/{username}/reset-link`, with an optional body `{"send_email": true}`.
pub async fn reset_link(
    State(state): State<AppState>,
    who: Caller,
    Path(username): Path<String>,
    raw: axum::body::Bytes,
) -> ApiResult<Response> {
    who.require_admin()?;
    let options: ResetLinkBody = if raw.iter().all(u8::is_ascii_whitespace) {
        ResetLinkBody::default()
    } else {
        serde_json::from_slice(&raw).map_err(|e| {
            ApiError(Failure::bad_request(format!(
                "the request body is not valid: {e}"
            )))
        })?
    };
    let user = state.directory.user(&username).await?;
    if options.send_email {
        crate::passwords::mail_route(&state, &user)?;
    }
    let issued = state
        .directory
        .issue_reset_link(&username, state.settings.reset_link_lifetime, &who.actor)
        .await?;
    if options.send_email {
        let to = crate::passwords::email_reset_link(&state, &user, &issued, &who.actor).await?;
        let body = serde_json::json!({ "sent_to": to, "expires_at": issued.expires_at.0 });
        return Ok((StatusCode::ACCEPTED, Json(body)).into_response());
    }
    let body = serde_json::json!({
        "url": reset_url(&state.settings.public_url, &issued.token),
        "expires_at": issued.expires_at.0,
    });
    Ok((StatusCode::CREATED, Json(body)).into_response())
}
