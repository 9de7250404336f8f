//! A user's second factors through the API (admin): what they have, and the reset for a lost
//! phone. Enrolling happens in the browser (it needs the authenticator app in hand).

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::caller::{ApiResult, Caller};
use crate::state::AppState;

#[derive(Serialize)]
struct FactorView {
    id: String,
    kind: &'static str,
    label: String,
    created_at: i64,
    last_used_at: Option<i64>,
}

/// `GET /api/v1/users/{username}/factors`
pub async fn list(
    State(state): State<AppState>,
    who: Caller,
    Path(username): Path<String>,
) -> ApiResult<Response> {
    who.require_admin()?;
    let user = state.directory.user(&username).await?;
    let summary = state.factors.summary(&user.id).await?;
    let factors: Vec<FactorView> = summary
        .factors
        .into_iter()
        .map(|f| FactorView {
            kind: f.kind.as_str(),
            id: f.id,
            label: f.label,
            created_at: f.created_at.0,
            last_used_at: f.last_used_at.map(|t| t.0),
        })
        .collect();
    Ok(Json(serde_json::json!({
        "factors": factors,
        "recovery_codes_left": summary.recovery_codes_left,
    }))
    .into_response())
}

/// `DELETE /api/v1/users/{username}/factors`: every factor and recovery code goes (audited
/// `factors_reset`).
pub async fn reset(
    State(state): State<AppState>,
    who: Caller,
    Path(username): Path<String>,
) -> ApiResult<Response> {
    who.require_admin()?;
    let user = state.directory.user(&username).await?;
    let removed = state.directory.reset_factors(&user, &who.actor).await?;
    Ok(Json(serde_json::json!({ "removed": removed })).into_response())
}
