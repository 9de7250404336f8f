//! MCP servers as OAuth protected resources: the metadata (RFC 9728) that tells an MCP client,
//! from the `401` it got, which authorization server issues tokens for the server and with
//! which scopes.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::response::Response;
use http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use portcullis_core::{Failure, FailureKind};
use portcullis_http::respond;

use crate::state::AppState;

const METADATA_PATH: &str = "/.well-known/oauth-protected-resource";

/// `GET /.well-known/oauth-protected-resource[/<path>]`: the metadata of the MCP app mounted at
/// `<path>` on the request's host. Public and readable from any origin (browser-based MCP
/// clients fetch it too).
pub async fn protected_resource(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let suffix = uri.path().strip_prefix(METADATA_PATH).unwrap_or_default();
    let facts = state.client(peer, &headers);
    let host = facts
        .host
        .or_else(|| {
            headers
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        })
        .unwrap_or_default();
    let host = host
        .rsplit_once(':')
        .map_or(host.as_str(), |(h, _)| h)
        .to_ascii_lowercase();
    let mut response = match state.gateway.routes.mcp_app(&host, suffix) {
        Some(app) => {
            let Some(mcp) = &app.mcp else {
                return respond::failure(&Failure::internal("an MCP app without a resource"), false);
            };
            respond::json(
                StatusCode::OK,
                serde_json::json!({
                    "resource": mcp.resource,
                    "authorization_servers": [state.settings.public_url],
                    "scopes_supported": mcp.scopes,
                    "bearer_methods_supported": ["header"],
                    "resource_name": app.name,
                }),
            )
        }
        None => respond::failure(
            &Failure::new(
                FailureKind::NotFound,
                format!("No MCP server is configured at {suffix:?} on this host."),
            )
            .with_hint("the metadata of an MCP app at /mcp is at /.well-known/oauth-protected-resource/mcp"),
            false,
        ),
    };
    response.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    response
}
