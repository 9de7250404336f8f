//! The provisioning outbox for operators: what is waiting, what was given up on, and retrying or
//! discarding dead letters (the same operations as `portcullis outbox`).

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use portcullis_auth::directory::Settle;
use portcullis_store::Delivery;
use serde::Deserialize;

use super::caller::{ApiResult, Caller, body};
use crate::state::AppState;

#[derive(Deserialize)]
pub struct Listing {
    #[serde(default = "dead")]
    state: String,
    #[serde(default = "hundred")]
    limit: u32,
}

fn dead() -> String {
    "dead".into()
}
fn hundred() -> u32 {
    100
}

pub fn delivery_json(d: &Delivery) -> serde_json::Value {
    serde_json::json!({
        "sink": d.sink, "seq": d.seq, "user_id": d.user_id, "event": d.kind, "state": d.state,
        "attempts": d.attempts, "created_at": d.created_at.0,
        "next_attempt_at": d.next_attempt_at.0, "last_error": d.last_error,
    })
}

pub async fn list(
    State(state): State<AppState>,
    who: Caller,
    Query(listing): Query<Listing>,
) -> ApiResult<Response> {
    who.require_admin()?;
    if !["dead", "pending", "delivered", "discarded"].contains(&listing.state.as_str()) {
        return Err(portcullis_core::Failure::bad_request(
            "state is one of dead, pending, delivered, discarded",
        )
        .into());
    }
    let rows = state
        .store
        .deliveries_in(&listing.state, listing.limit.clamp(1, 1000))
        .await?;
    let stats = state.store.outbox_stats().await?;
    let now = state.clock.now().0;
    Ok(Json(serde_json::json!({
        "deliveries": rows.iter().map(delivery_json).collect::<Vec<_>>(),
        "pending": stats.pending,
        "dead": stats.dead,
        "oldest_pending_age_secs": stats.oldest_pending.map(|t| (now - t.0).max(0)),
    }))
    .into_response())
}

/// One dead letter (`sink` and `seq`), or all of them (an empty body).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Which {
    #[serde(default)]
    sink: Option<String>,
    #[serde(default)]
    seq: Option<i64>,
}

impl Which {
    fn pick(&self) -> ApiResult<Option<(&str, i64)>> {
        match (&self.sink, self.seq) {
            (Some(sink), Some(seq)) => Ok(Some((sink.as_str(), seq))),
            (None, None) => Ok(None),
            _ => Err(portcullis_core::Failure::bad_request(
                "name one dead letter with sink and seq, or send {} for all",
            )
            .into()),
        }
    }
}

/// Retries (or discards) one dead letter or all of them, audited.
async fn settle(
    state: &AppState,
    who: &Caller,
    parsed: Result<Json<Which>, JsonRejection>,
    settle: Settle,
) -> ApiResult<Response> {
    who.require_admin()?;
    let which = body(parsed)?;
    let count = state
        .directory
        .settle_dead_letters(which.pick()?, settle, &who.actor)
        .await?;
    Ok(Json(serde_json::json!({ "count": count })).into_response())
}

pub async fn retry(
    State(state): State<AppState>,
    who: Caller,
    parsed: Result<Json<Which>, JsonRejection>,
) -> ApiResult<Response> {
    settle(&state, &who, parsed, Settle::Retry).await
}

pub async fn discard(
    State(state): State<AppState>,
    who: Caller,
    parsed: Result<Json<Which>, JsonRejection>,
) -> ApiResult<Response> {
    settle(&state, &who, parsed, Settle::Discard).await
}
