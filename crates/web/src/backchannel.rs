//! Back-channel logout (OpenID Connect Back-Channel Logout 1.0): the provider POSTs a signed
//! `logout_token` to `/.portcullis/backchannel_logout/{provider}` when a user signs out there, and
//! the matching sessions end at once.

use axum::Form;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::{StatusCode, header};
use serde::Deserialize;

use crate::state::AppState;
use portcullis_auth::audit::Entry;

#[derive(Deserialize, Default)]
pub struct LogoutForm {
    #[serde(default)]
    logout_token: String,
}

/// §2.8: 400 with a JSON error for a token that fails validation; never cached.
fn error(description: &str) -> Response {
    let body = serde_json::json!({ "error": "invalid_request", "error_description": description });
    (
        StatusCode::BAD_REQUEST,
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(body),
    )
        .into_response()
}

pub async fn receive(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Form(form): Form<LogoutForm>,
) -> Response {
    let Some(provider) = state.providers.get(&id) else {
        return error("no such provider");
    };
    if form.logout_token.is_empty() {
        return error("logout_token is required");
    }
    let target = match provider.verify_logout_token(&form.logout_token).await {
        Ok(target) => target,
        Err(e) => {
            tracing::warn!(provider = %id, error = %e, "back-channel logout refused");
            return error(&e.to_string());
        }
    };
    match state
        .sessions
        .end_provider_sessions(&id, target.subject.as_deref(), target.sid.as_deref())
        .await
    {
        Ok(ended) => {
            let reason = format!("backchannel:{id}: {ended} session(s)");
            state
                .audit
                .record(Entry {
                    action: "sign_out",
                    success: true,
                    actor: Some(&format!("provider:{id}")),
                    subject: target.subject.as_deref(),
                    reason: Some(&reason),
                    client_ip: None,
                })
                .await;
            (StatusCode::OK, [(header::CACHE_CONTROL, "no-store")]).into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "back-channel logout could not end sessions");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::CACHE_CONTROL, "no-store")],
            )
                .into_response()
        }
    }
}
