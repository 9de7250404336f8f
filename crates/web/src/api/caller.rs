//! Who is calling the API, and whether they may.

use std::sync::Arc;

use axum::Json;
use axum::extract::FromRequestParts;
use axum::extract::rejection::JsonRejection;
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{HeaderMap, Method, header};
use portcullis_auth::audit::Actor;
use portcullis_auth::principal::{Presented, Surface};
use portcullis_core::{Failure, FailureKind, Identity, Role};
use portcullis_http::respond;
use serde::de::DeserializeOwned;

use crate::state::{AppState, ClientAddr};

/// An API error: a failure rendered as JSON.
pub struct ApiError(pub Failure);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        respond::failure(&self.0, false)
    }
}

impl From<Failure> for ApiError {
    fn from(f: Failure) -> Self {
        ApiError(f)
    }
}

impl From<portcullis_auth::directory::DirectoryError> for ApiError {
    fn from(e: portcullis_auth::directory::DirectoryError) -> Self {
        ApiError(Failure::from(e))
    }
}

impl From<portcullis_store::StoreError> for ApiError {
    fn from(e: portcullis_store::StoreError) -> Self {
        ApiError(Failure::from(e))
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// A JSON body, with a JSON error that says what is wrong when it is not valid.
pub fn body<T: DeserializeOwned>(parsed: Result<Json<T>, JsonRejection>) -> ApiResult<T> {
    parsed.map(|Json(value)| value).map_err(|e| {
        ApiError(Failure::bad_request(format!(
            "the request body is not valid: {}",
            e.body_text()
        )))
    })
}

/// The authenticated caller, extracted from the request (API key first, then the session cookie).
pub struct Caller {
    pub identity: Arc<Identity>,
    /// Audit actor: the user id (with the key for key-authenticated calls) and client address.
    pub actor: Actor,
    /// The id hash of the session the call came with; `None` for a key.
    pub session: Option<String>,
    /// `mfa.required`, and the session was not proved with a second factor: admin calls are
    /// refused.
    pub mfa_missing: bool,
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Self> {
        let Ok(ClientAddr(client_ip)) = ClientAddr::from_request_parts(parts, state).await;
        caller(state, &parts.method, &parts.headers, client_ip).await
    }
}

impl Caller {
    pub fn require_admin(&self) -> ApiResult<()> {
        if self.identity.role == Role::Admin && self.mfa_missing {
            Err(ApiError(
                Failure::new(
                    FailureKind::Forbidden,
                    "the admin API needs a session signed in with a second factor (mfa.required)",
                )
                .with_hint("sign in again with your authenticator app, or use an API key"),
            ))
        } else if self.identity.role == Role::Admin {
            Ok(())
        } else {
            Err(ApiError(Failure::new(
                FailureKind::Forbidden,
                "this needs the admin role",
            )))
        }
    }
}

fn unauthenticated(message: &str) -> ApiError {
    ApiError(
        Failure::new(FailureKind::Unauthenticated, message)
            .with_hint("sign in, or send an API key allowed for portcullis-api"),
    )
}

/// A state-changing request authenticated by cookie must come from this site: refuse what the
/// browser marks cross-site, and any `Origin` that is not this request's own.
fn same_origin(method: &Method, headers: &HeaderMap) -> bool {
    if method.is_safe() {
        return true;
    }
    let text = |name| {
        headers
            .get(name)
            .and_then(|v: &http::HeaderValue| v.to_str().ok())
    };
    if text("sec-fetch-site").is_some_and(|s| s == "cross-site") {
        return false;
    }
    match (text(header::ORIGIN.as_str()), text(header::HOST.as_str())) {
        (Some(origin), Some(host)) => origin
            .split_once("://")
            .is_some_and(|(_, rest)| rest == host),
        (Some(_), None) => false,
        (None, _) => true,
    }
}

async fn caller(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
    client_ip: Option<String>,
) -> ApiResult<Caller> {
    let presented = Presented::read(headers, None);
    let principal = state
        .gateway
        .auth
        .authenticate(Surface::Api, &presented)
        .await
        .map_err(|e| ApiError(Failure::from(e)))?
        .ok_or_else(|| unauthenticated("sign in first"))?;
    // A cookie is sent by the browser whoever made the page: a change made with one must come
    // from this site. (A key is sent only by whoever holds it.)
    if principal.session().is_some() && !same_origin(method, headers) {
        return Err(ApiError(Failure::new(
            FailureKind::Forbidden,
            "cross-site requests cannot change anything here",
        )));
    }
    // Keys are not asked for a second factor (see `Principal::meets_mfa`); sessions are, where
    // `mfa.required` covers Portcullis's own API.
    let session_mfa = principal.session().is_some_and(|s| s.mfa());
    let mfa_missing = state.settings.mfa_required && !principal.meets_mfa();
    Ok(Caller {
        mfa_missing,
        actor: Actor::new(principal.actor_id(), client_ip).with_second_factor(session_mfa),
        session: principal.session().map(|s| s.id_hash.clone()),
        identity: principal.identity,
    })
}
