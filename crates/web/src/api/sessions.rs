//! Sessions: listed and ended by admins for any user, and by everyone for themselves.

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};
use portcullis_auth::audit::Entry;
use portcullis_auth::secret::token_hash;
use portcullis_core::session::Session;
use portcullis_core::{Failure, FailureKind};
use portcullis_http::cookies::{self, SESSION_COOKIE};
use serde::Serialize;

use super::caller::{ApiError, ApiResult, Caller};
use crate::state::AppState;

#[derive(Serialize)]
pub struct SessionView {
    /// The SHA-256 of the cookie value: names the session without revealing it.
    id: String,
    created_at: i64,
    last_seen: i64,
    expires_at: i64,
    client_ip: Option<String>,
    user_agent: Option<String>,
    provider: Option<String>,
    current: bool,
}

pub fn views(state: &AppState, sessions: Vec<Session>, current: Option<&str>) -> Vec<SessionView> {
    let policy = state.sessions.policy();
    sessions
        .into_iter()
        .map(|s| SessionView {
            expires_at: s.expires_at(policy).0,
            current: current == Some(s.id_hash.as_str()),
            provider: s.provider.map(|p| p.provider),
            id: s.id_hash,
            created_at: s.created_at.0,
            last_seen: s.last_seen.0,
            client_ip: s.client_ip,
            user_agent: s.user_agent,
        })
        .collect()
}

/// The id of the session the request itself uses, if any.
fn current_id(headers: &HeaderMap) -> Option<String> {
    cookies::first(headers, SESSION_COOKIE).map(|c| token_hash(&c))
}

async fn record(state: &AppState, who: &Caller, subject: &str, reason: &str) {
    let entry = Entry {
        action: "session_revoked",
        success: true,
        actor: Some(&who.actor.id),
        subject: Some(subject),
        reason: Some(reason),
        client_ip: who.actor.client_ip.clone(),
    };
    state.audit.record(entry).await;
}

pub async fn list_for_user(
    State(state): State<AppState>,
    who: Caller,
    headers: HeaderMap,
    Path(username): Path<String>,
) -> ApiResult<Response> {
    who.require_admin()?;
    let user = state.directory.user(&username).await?;
    let sessions = state.store.sessions_of(&user.id).await?;
    Ok(Json(
        serde_json::json!({ "sessions": views(&state, sessions, current_id(&headers).as_deref()) }),
    )
    .into_response())
}

pub async fn end_all_for_user(
    State(state): State<AppState>,
    who: Caller,
    Path(username): Path<String>,
) -> ApiResult<Response> {
    who.require_admin()?;
    let user = state.directory.user(&username).await?;
    let ended = state.sessions.end_all_of(&user.id).await?;
    record(&state, &who, &username, &format!("all {ended} session(s)")).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn end_one(
    State(state): State<AppState>,
    who: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    who.require_admin()?;
    let Some(session) = state.store.session(&id).await? else {
        return Err(ApiError(Failure::new(
            FailureKind::NotFound,
            "no session has that id",
        )));
    };
    state.sessions.end_by_id(&id).await?;
    record(&state, &who, &session.user_id, "one session").await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn mine(
    State(state): State<AppState>,
    who: Caller,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let sessions = state.store.sessions_of(&who.identity.subject).await?;
    Ok(Json(
        serde_json::json!({ "sessions": views(&state, sessions, current_id(&headers).as_deref()) }),
    )
    .into_response())
}

pub async fn end_mine(
    State(state): State<AppState>,
    who: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let owned = state
        .store
        .session(&id)
        .await?
        .is_some_and(|s| s.user_id == who.identity.subject);
    if !owned {
        return Err(ApiError(Failure::new(
            FailureKind::NotFound,
            "you have no session with that id",
        )));
    }
    state.sessions.end_by_id(&id).await?;
    record(&state, &who, &who.identity.username, "own session").await;
    Ok(StatusCode::NO_CONTENT.into_response())
}
