//! Sign-out: ends the session server-side (so the cookie is dead even if a copy survives) and
//! clears the cookie. Served at `/.portcullis/sign_out` and oauth2-proxy's `/oauth2/sign_out`,
//! for GET (apps such as Open WebUI navigate there) and POST.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Query, State};
use axum::response::Response;
use http::{HeaderMap, Method, StatusCode};
use portcullis_core::session::Session;
use portcullis_proxy::cookies::{self, SESSION_COOKIE};
use portcullis_proxy::respond::{self, allowed_redirect, html_response};
use serde::Deserialize;

use crate::pages;
use crate::state::AppState;
use portcullis_auth::audit::Entry;

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
    let mut provider_logout = None;
    for value in cookies::values(&headers, SESSION_COOKIE) {
        if let Ok(Some(stored)) = state.sessions.stored(value).await
            && provider_logout.is_none()
        {
            provider_logout = provider_logout_url(&state, &stored).await;
        }
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
    // An explicit `rd` wins (it may chain to the provider's logout, as oauth2-proxy users do);
    // otherwise end the provider's session too, so it cannot sign the user straight back in.
    let explicit = query.rd.as_deref().map(|rd| {
        allowed_redirect(rd, &state.settings.allowed_redirect_hosts)
            .unwrap_or_else(|| "/".to_owned())
    });
    let target = explicit
        .or(provider_logout)
        .unwrap_or_else(|| SIGNED_OUT_PATH.to_owned());
    let status = if method == Method::GET {
        StatusCode::FOUND
    } else {
        StatusCode::SEE_OTHER
    };
    let mut response = respond::redirect(status, &target);
    let clear = cookies::with_domain(
        cookies::clear_cookie(SESSION_COOKIE, state.settings.cookie_secure),
        state.settings.cookie_domain.as_deref(),
    );
    cookies::append(response.headers_mut(), &clear);
    response
}

/// Where the provider should send the browser after its own sign-out.
pub const SIGNED_OUT_PATH: &str = "/.portcullis/signed_out";

async fn provider_logout_url(state: &AppState, stored: &Session) -> Option<String> {
    let link = stored.provider.as_ref()?;
    let provider = state.providers.get(&link.provider)?;
    let id_token = link
        .id_token_enc
        .as_deref()
        .and_then(|sealed| state.sealer.open(sealed).ok());
    let after = format!("{}{SIGNED_OUT_PATH}", state.settings.public_url);
    provider.logout_url(id_token.as_deref(), &after).await
}

/// `/.portcullis/signed_out`: where sign-out ends, locally or after the provider's logout.
pub async fn signed_out() -> Response {
    html_response(
        StatusCode::OK,
        pages::message(
            "You are signed out",
            "Your session has ended.",
            Some(("/.portcullis/sign_in", "Sign in again")),
        ),
    )
}
