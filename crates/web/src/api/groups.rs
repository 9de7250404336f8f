//! Groups and memberships (admin).

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use portcullis_core::{Failure, FailureKind};

use super::caller::{ApiError, ApiResult, Caller};
use super::directory::UserView;
use crate::state::AppState;

pub async fn list(State(state): State<AppState>, who: Caller) -> ApiResult<Response> {
    who.require_admin()?;
    let groups: Vec<serde_json::Value> = state
        .store
        .list_groups()
        .await?
        .into_iter()
        .map(|g| serde_json::json!({ "name": g.name, "members": g.members }))
        .collect();
    Ok(Json(serde_json::json!({ "groups": groups })).into_response())
}

pub async fn members(
    State(state): State<AppState>,
    who: Caller,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    who.require_admin()?;
    let members = state.store.group_members(&name).await?;
    if members.is_empty()
        && !state
            .store
            .list_groups()
            .await?
            .iter()
            .any(|g| g.name == name)
    {
        return Err(ApiError(Failure::new(
            FailureKind::NotFound,
            format!("no group is called {name:?}"),
        )));
    }
    let members: Vec<serde_json::Value> = members
        .into_iter()
        .map(|(user, source)| serde_json::json!({ "user": UserView::from(user), "source": source }))
        .collect();
    Ok(Json(serde_json::json!({ "group": name, "members": members })).into_response())
}

pub async fn remove_member(
    State(state): State<AppState>,
    who: Caller,
    Path((username, group)): Path<(String, String)>,
) -> ApiResult<Response> {
    who.require_admin()?;
    state
        .directory
        .remove_from_group(&username, &group, &who.actor)
        .await?;
    let user = state.directory.user(&username).await?;
    state.apply_user_change(&user.id).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}
