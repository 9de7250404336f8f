//! `/api/v1/users/{username}/grants` and `/api/v1/me/grants`: the MCP clients a user connected
//! through OAuth, with their scopes and last use, and revoking them.

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use portcullis_store::Grant;
use serde::Serialize;

use super::caller::ApiResult;
use super::caller::Caller;
use crate::state::AppState;

#[derive(Serialize)]
pub struct GrantView {
    id: String,
    client_id: String,
    client_name: String,
    app: String,
    resource: String,
    scopes: Vec<String>,
    created_at: i64,
    last_used_at: Option<i64>,
    expires_at: i64,
}

impl From<Grant> for GrantView {
    fn from(g: Grant) -> Self {
        GrantView {
            id: g.id,
            client_id: g.client_id,
            client_name: g.client_name,
            app: g.app,
            resource: g.resource,
            scopes: g.scopes,
            created_at: g.created_at.0,
            last_used_at: g.last_used_at.map(|t| t.0),
            expires_at: g.expires_at.0,
        }
    }
}

async fn list(state: &AppState, username: &str) -> ApiResult<Response> {
    let grants: Vec<GrantView> = state
        .directory
        .grants_of(username)
        .await?
        .into_iter()
        .map(GrantView::from)
        .collect();
    Ok(Json(serde_json::json!({ "grants": grants })).into_response())
}

async fn revoke(state: &AppState, who: &Caller, username: &str, id: &str) -> ApiResult<Response> {
    state
        .directory
        .revoke_grant(username, id, &who.actor)
        .await?;
    state.apply_grant_change().await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn of_user(
    State(state): State<AppState>,
    who: Caller,
    Path(username): Path<String>,
) -> ApiResult<Response> {
    who.require_admin()?;
    list(&state, &username).await
}

pub async fn revoke_of_user(
    State(state): State<AppState>,
    who: Caller,
    Path((username, id)): Path<(String, String)>,
) -> ApiResult<Response> {
    who.require_admin()?;
    revoke(&state, &who, &username, &id).await
}

pub async fn mine(State(state): State<AppState>, who: Caller) -> ApiResult<Response> {
    let username = who.identity.username.clone();
    list(&state, &username).await
}

pub async fn revoke_mine(
    State(state): State<AppState>,
    who: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let username = who.identity.username.clone();
    revoke(&state, &who, &username, &id).await
}
