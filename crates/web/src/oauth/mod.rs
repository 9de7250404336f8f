//! Portcullis's OAuth authorization server over HTTP, for MCP clients: its metadata (RFC 8414),
//! authorization with consent ([`authorize`]), and the token, revocation and registration
//! endpoints ([`endpoints`]). MCP clients are often browser-based: everything but the consent
//! page is readable from any origin (no cookies are involved; credentials are in the request).

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::{get, post};
use http::{HeaderValue, StatusCode, header};
use portcullis_auth::oauth::OAuthError;
use portcullis_http::respond;

use crate::state::AppState;

mod authorize;
mod endpoints;

pub const AUTHORIZE_PATH: &str = "/.portcullis/oauth/authorize";
pub const TOKEN_PATH: &str = "/.portcullis/oauth/token";
pub const REGISTER_PATH: &str = "/.portcullis/oauth/register";
pub const REVOKE_PATH: &str = "/.portcullis/oauth/revoke";

pub fn routes() -> Router<AppState> {
    let metadata = get(metadata).options(preflight);
    Router::new()
        .route("/.well-known/oauth-authorization-server", metadata.clone())
        .route(
            "/.well-known/oauth-authorization-server/{*issuer_path}",
            metadata.clone(),
        )
        .route("/.well-known/openid-configuration", metadata)
        .route(AUTHORIZE_PATH, get(authorize::form).post(authorize::decide))
        .route(TOKEN_PATH, post(endpoints::token).options(preflight))
        .route(REGISTER_PATH, post(endpoints::register).options(preflight))
        .route(REVOKE_PATH, post(endpoints::revoke).options(preflight))
        // Where clients of MCP 2025-03-26 look when they find no metadata: the resource's
        // origin (served here unless a web app claims the path; see `server::is_oauth_fallback`).
        .route("/authorize", get(authorize::form).post(authorize::decide))
        .route("/token", post(endpoints::token).options(preflight))
        .route("/register", post(endpoints::register).options(preflight))
}

/// `GET /.well-known/oauth-authorization-server`: what the authorization server supports.
async fn metadata(State(state): State<AppState>) -> Response {
    let server = &state.oauth;
    let issuer = &server.issuer;
    let mut scopes: Vec<&str> = server
        .resources()
        .iter()
        .flat_map(|r| r.scopes.iter().map(String::as_str))
        .collect();
    scopes.sort_unstable();
    scopes.dedup();
    let auth_methods = ["none", "client_secret_post", "client_secret_basic"];
    let mut document = serde_json::json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}{AUTHORIZE_PATH}"),
        "token_endpoint": format!("{issuer}{TOKEN_PATH}"),
        "revocation_endpoint": format!("{issuer}{REVOKE_PATH}"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": auth_methods,
        "revocation_endpoint_auth_methods_supported": auth_methods,
        "scopes_supported": scopes,
        "client_id_metadata_document_supported": server.clients.metadata_documents_supported(),
        "authorization_response_iss_parameter_supported": true,
        "subject_types_supported": ["public"],
    });
    if server.clients.registration_enabled() {
        document["registration_endpoint"] = format!("{issuer}{REGISTER_PATH}").into();
    }
    readable_anywhere(respond::json(StatusCode::OK, document))
}

/// A browser's preflight for the token, registration and metadata endpoints.
async fn preflight() -> Response {
    let mut response = Response::new(axum::body::Body::empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, OPTIONS"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Authorization, Content-Type, MCP-Protocol-Version"),
    );
    headers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    readable_anywhere(response)
}

/// CORS for answers that carry nothing a cookie unlocked.
fn readable_anywhere(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    response
}

/// An OAuth error as JSON (RFC 6749 §5.2), never cached.
fn error_response(e: &OAuthError) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
    let mut response = respond::json(
        status,
        serde_json::json!({ "error": e.error, "error_description": e.description }),
    );
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"portcullis\""),
        );
    }
    response
        .headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    readable_anywhere(response)
}
