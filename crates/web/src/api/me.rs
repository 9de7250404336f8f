//! Self-service: a signed-in user's own identity and API keys.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use portcullis_core::{Failure, FailureKind};

use super::caller::{ApiError, ApiResult, Caller, body};
use super::directory::{KeyView, NewKeyBody, issue_key};
use crate::state::AppState;

pub async fn me(who: Caller) -> ApiResult<Response> {
    Ok(Json(serde_json::json!({ "identity": who.identity.as_ref() })).into_response())
}

pub async fn keys(State(state): State<AppState>, who: Caller) -> ApiResult<Response> {
    let keys: Vec<KeyView> = state
        .directory
        .keys_of(&who.identity.username)
        .await?
        .into_iter()
        .map(KeyView::from)
        .collect();
    Ok(Json(serde_json::json!({ "keys": keys })).into_response())
}

pub async fn create_key(
    State(state): State<AppState>,
    who: Caller,
    parsed: Result<Json<NewKeyBody>, JsonRejection>,
) -> ApiResult<Response> {
    let username = who.identity.username.clone();
    issue_key(&state, &username, body(parsed)?, &who.actor).await
}

pub async fn revoke_key(
    State(state): State<AppState>,
    who: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let mine = state
        .directory
        .keys_of(&who.identity.username)
        .await?
        .into_iter()
        .any(|k| k.id == id);
    if !mine {
        return Err(ApiError(Failure::new(
            FailureKind::NotFound,
            "you have no key with that id",
        )));
    }
    state.directory.revoke_key(&id, &who.actor).await?;
    state.apply_key_change().await;
    Ok(StatusCode::NO_CONTENT.into_response())
}
