//! Forward-auth endpoints for proxies that serve the app themselves, and oauth2-proxy's
//! `/oauth2/userinfo`, and the keys that verify assertions. The decisions are the gateway's (see `portcullis_proxy::forward_auth`).
//!
//! - `/oauth2/auth` — oauth2-proxy's answers: 202, 401, 403.
//! - `/.portcullis/authz/auth-request` — for nginx `auth_request`: 200, 401 + `Location`, 403.
//! - `/.portcullis/authz/forward-auth` — for Caddy and Traefik: 200, 302 to sign in for a browser,
//!   401 for an API client.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, Query, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};
use portcullis_proxy::forward_auth::{CheckQuery, Flavor};

use crate::sign_in::signed_in;
use crate::state::AppState;

async fn check(
    state: &AppState,
    headers: &HeaderMap,
    peer: SocketAddr,
    flavor: Flavor,
    query: &CheckQuery,
) -> Response {
    state
        .gateway
        .check(headers, peer, flavor, query, &state.settings.public_url)
        .await
}

pub async fn oauth2_auth(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(query): Query<CheckQuery>,
) -> Response {
    check(&state, &headers, peer, Flavor::OAuth2Proxy, &query).await
}

pub async fn auth_request(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(query): Query<CheckQuery>,
) -> Response {
    check(&state, &headers, peer, Flavor::AuthRequest, &query).await
}

pub async fn forward_auth(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(query): Query<CheckQuery>,
) -> Response {
    check(&state, &headers, peer, Flavor::ForwardAuth, &query).await
}

/// oauth2-proxy's `/oauth2/userinfo`: the signed-in user as JSON, or 401.
pub async fn userinfo(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let session = match signed_in(&state, &headers).await {
        Ok(Some(session)) => session,
        Ok(None) => return StatusCode::UNAUTHORIZED.into_response(),
        Err(failure) => return portcullis_http::respond::failure(&failure, false),
    };
    let identity = &session.identity;
    Json(serde_json::json!({
        "user": identity.username,
        "email": identity.email,
        "groups": identity.groups,
        "preferredUsername": identity.username,
    }))
    .into_response()
}

/// The public keys that verify identity assertions.
pub async fn jwks(State(state): State<AppState>) -> Response {
    match &state.gateway.assertions {
        Some(assertions) => {
            let mut response = Json(assertions.jwks()).into_response();
            // Short, so that a verifier that misses a rotated key fetches again soon.
            response.headers_mut().insert(
                http::header::CACHE_CONTROL,
                http::HeaderValue::from_static("public, max-age=60"),
            );
            response
        }
        None => portcullis_http::respond::failure(
            &portcullis_core::Failure::new(
                portcullis_core::FailureKind::NotFound,
                "identity assertions are turned off here",
            )
            .with_hint("set assertion.enabled = true in portcullis.toml"),
            false,
        ),
    }
}
