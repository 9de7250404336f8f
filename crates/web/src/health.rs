//! `/ping` (the process is up), `/ready` (it can serve: the store answers) and `/metrics`.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::{ConnectInfo, State};
use axum::response::{IntoResponse, Response};
use http::{StatusCode, header};

use crate::state::AppState;

pub async fn ping() -> &'static str {
    "OK"
}

pub async fn ready(State(state): State<AppState>) -> Response {
    match tokio::time::timeout(Duration::from_secs(2), state.store.ping()).await {
        Ok(Ok(())) => (
            StatusCode::OK,
            axum::Json(serde_json::json!({ "status": "ready" })),
        )
            .into_response(),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "not ready: store unavailable");
            not_ready("the store is unavailable")
        }
        Err(_) => not_ready("the store did not answer within 2 s"),
    }
}

fn not_ready(reason: &str) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(serde_json::json!({ "status": "not_ready", "reason": reason })),
    )
        .into_response()
}

pub async fn metrics(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
) -> Response {
    let allowed = state
        .settings
        .metrics_allowed
        .iter()
        .any(|net| net.contains(&peer.ip()));
    if !allowed {
        return (
            StatusCode::FORBIDDEN,
            "metrics are readable only from the addresses in metrics_allowed\n",
        )
            .into_response();
    }
    let cached = i64::try_from(state.sessions.cached_count()).unwrap_or(i64::MAX);
    state.metrics.active_sessions.set(cached);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}
