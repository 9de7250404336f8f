//! Two views of identity.
//!
//! - The built-in `whoami` app: an upstream that shows exactly which headers it received through
//!   the gateway, so anyone can see what an app behind Portcullis gets. It listens on loopback.
//! - `/.portcullis/whoami`: the signed-in user's resolved identity and, for every app, the identity
//!   headers that app receives.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode, header};
use portcullis_proxy::html::{escape, page_with_width};
use portcullis_proxy::respond::{self, html_response, is_browser_navigation};
use tokio::net::TcpListener;

use crate::sign_in::current_session;
use crate::state::AppState;

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json") && !a.contains("text/html"))
}

async fn echo(request: Request) -> Response {
    let headers: Vec<(String, String)> = request
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    if wants_json(request.headers()) {
        let body = serde_json::json!({
            "method": request.method().as_str(),
            "path": request.uri().path(),
            "query": request.uri().query(),
            "headers": headers,
        });
        return axum::Json(body).into_response();
    }
    let rows: String = headers
        .iter()
        .map(|(k, v)| format!("<tr><th>{}</th><td>{}</td></tr>", escape(k), escape(v)))
        .collect();
    let body = format!(
        "<h1>whoami</h1><p>This is the built-in test app. These are the headers it received from Portcullis \
         for <span class=\"code\">{} {}</span>.</p><table>{rows}</table>\
         <p class=\"hint\"><a href=\"/.portcullis/whoami\">Your identity</a> · <a href=\"/.portcullis/sign_out\">Sign out</a></p>",
        escape(request.method().as_str()),
        escape(request.uri().path()),
    );
    html_response(StatusCode::OK, page_with_width("whoami", &body, true))
}

/// Starts the built-in whoami app on an ephemeral loopback port and returns its address.
pub async fn spawn_upstream() -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let app = Router::new().fallback(echo);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the built-in whoami app stopped");
        }
    });
    Ok(addr)
}

/// `/.portcullis/whoami` for the signed-in user.
pub async fn me(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let browser = is_browser_navigation(&headers, "/.portcullis/whoami");
    let Some(session) = current_session(&state, &headers).await else {
        return respond::sign_in_required(&http::Method::GET, "/.portcullis/whoami", browser);
    };
    let identity = &session.identity;
    let apps: Vec<serde_json::Value> = state
        .gateway
        .routes
        .apps()
        .map(|app| {
            let sent: serde_json::Map<String, serde_json::Value> = app
                .identity_headers
                .iter()
                .filter_map(|(name, field)| {
                    app.header_value(identity, *field)
                        .map(|v| (name.as_str().to_owned(), v.into()))
                })
                .collect();
            let allowed = app.policy.evaluate(identity).err().map(|d| d.reason);
            serde_json::json!({ "app": app.name, "headers": sent, "denied": allowed })
        })
        .collect();
    let expires_at = session.expires_at(state.sessions.policy()).0;
    let body = serde_json::json!({ "identity": identity.as_ref(), "session_expires_at": expires_at, "apps": apps });
    if !browser {
        return axum::Json(body).into_response();
    }
    let pretty = serde_json::to_string_pretty(&body).unwrap_or_default();
    let html = format!(
        "<h1>Signed in as {}</h1><p>Your identity and the headers each app receives.</p>\
         <pre class=\"code\">{}</pre><p><a href=\"/.portcullis/sign_out\">Sign out</a></p>",
        escape(&identity.display_name),
        escape(&pretty)
    );
    html_response(StatusCode::OK, page_with_width("Who am I", &html, true))
}
