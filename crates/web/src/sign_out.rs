//! Sign-out: ends the session server-side (so the cookie is dead even if a copy survives) and
//! clears the cookie. Served at `/.portcullis/sign_out` and oauth2-proxy's `/oauth2/sign_out`,
//! for GET (apps such as Open WebUI navigate there) and POST.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Query, State};
use axum::response::Response;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use portcullis_proxy::cookies::{self, SESSION_COOKIE};
use portcullis_proxy::respond::{self, SIGN_IN_PATH, safe_return_path};
use serde::Deserialize;

use crate::audit::Entry;
use crate::state::AppState;

#[derive(Deserialize, Default)]
pub struct SignOutQuery {
    #[serde(default)]
    rd: Option<String>,
}

pub async fn sign_out(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    headers: HeaderMap,
    Query(query): Query<SignOutQuery>,
) -> Response {
    let client_ip = state.client(peer, &headers).client_ip.to_string();
    for value in cookies::values(&headers, SESSION_COOKIE) {
        match state.sessions.revoke(value).await {
            Ok(Some(user_id)) => {
                state
                    .audit
                    .record(Entry {
                        action: "sign_out",
                        success: true,
                        actor: Some(&user_id),
                        subject: Some(&user_id),
                        reason: None,
                        client_ip: Some(client_ip.clone()),
                    })
                    .await;
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "sign-out could not delete the stored session; it is refused in memory")
            }
        }
    }
    let target = match query.rd.as_deref() {
        Some(rd) => safe_return_path(rd),
        None => format!("{SIGN_IN_PATH}?signed_out=1"),
    };
    let status = if method == Method::GET {
        StatusCode::FOUND
    } else {
        StatusCode::SEE_OTHER
    };
    let mut response = respond::redirect(status, &target);
    let clear = cookies::clear_cookie(SESSION_COOKIE, state.settings.cookie_secure);
    if let Ok(value) = HeaderValue::from_str(&clear) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}
