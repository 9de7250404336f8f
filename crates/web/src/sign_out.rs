//! Sign-out: ends the session server-side (so the cookie is dead even if a copy survives) and
//! clears the cookie. Served at `/.portcullis/sign_out` and oauth2-proxy's `/oauth2/sign_out`,
//! for GET (apps such as Open WebUI navigate there) and POST.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Query, State};
use axum::response::Response;
use http::{HeaderMap, Method, StatusCode};
use percent_encoding::{NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use portcullis_core::config::ProviderSignOut;
use portcullis_core::session::Session;
use portcullis_http::cookies::{self, AFTER_SIGN_OUT_COOKIE, SESSION_COOKIE};
use portcullis_http::respond::{self, allowed_redirect, html_response};
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
    // A session made through a provider ends there too (unless the provider's `sign_out` is
    // `local`), or the provider would sign the user straight back in; an allowed `rd` is where
    // the browser goes afterwards. An `rd` that is itself the provider's logout (a hand-built
    // chain, as the seeds' Cognito setup has) is followed as it is.
    let rd = query.rd.as_deref().map(|rd| {
        allowed_redirect(rd, &state.settings.allowed_redirect_hosts)
            .unwrap_or_else(|| "/".to_owned())
    });
    let mut after = None;
    let target = match (provider_logout, rd) {
        (Some(logout), Some(rd)) if !same_endpoint(&logout, &rd) => {
            after = Some(rd);
            logout
        }
        (Some(_), Some(rd)) | (None, Some(rd)) => rd,
        (Some(logout), None) => logout,
        (None, None) => SIGNED_OUT_PATH.to_owned(),
    };
    let status = if method == Method::GET {
        StatusCode::FOUND
    } else {
        StatusCode::SEE_OTHER
    };
    let mut response = respond::redirect(status, &target);
    let secure = state.settings.cookie_secure;
    let clear = cookies::with_domain(
        cookies::clear_cookie(SESSION_COOKIE, secure),
        state.settings.cookie_domain.as_deref(),
    );
    cookies::append(response.headers_mut(), &clear);
    if let Some(after) = after {
        let value = utf8_percent_encode(&after, NON_ALPHANUMERIC).to_string();
        let cookie = cookies::set_cookie(
            AFTER_SIGN_OUT_COOKIE,
            &value,
            secure,
            Some(AFTER_SIGN_OUT_FOR),
        );
        cookies::append(response.headers_mut(), &cookie);
    }
    response
}

/// How long the way back from the provider's sign-out is remembered.
const AFTER_SIGN_OUT_FOR: u64 = 600;

/// Whether two URLs name the same endpoint (scheme, host, port and path; the query aside).
fn same_endpoint(a: &str, b: &str) -> bool {
    let endpoint = |url: &str| {
        let uri: http::Uri = url.parse().ok()?;
        let scheme = uri.scheme_str()?.to_ascii_lowercase();
        let port = uri
            .port_u16()
            .unwrap_or(if scheme == "https" { 443 } else { 80 });
        let host = uri.host()?.to_ascii_lowercase();
        Some((scheme, host, port, uri.path().to_owned()))
    };
    matches!((endpoint(a), endpoint(b)), (Some(x), Some(y)) if x == y)
}

/// Where the provider should send the browser after its own sign-out.
pub const SIGNED_OUT_PATH: &str = "/.portcullis/signed_out";

async fn provider_logout_url(state: &AppState, stored: &Session) -> Option<String> {
    let link = stored.provider.as_ref()?;
    let provider = state.providers.get(&link.provider)?;
    if provider.config.sign_out == ProviderSignOut::Local {
        return None;
    }
    let id_token = link
        .id_token_enc
        .as_deref()
        .and_then(|sealed| state.sealer.open(sealed).ok());
    let after = format!("{}{SIGNED_OUT_PATH}", state.settings.public_url);
    provider.logout_url(id_token.as_deref(), &after).await
}

/// `/.portcullis/signed_out`: where sign-out ends, locally or after the provider's logout; a
/// sign-out that was given an `rd` continues there (checked again against the allowed hosts).
pub async fn signed_out(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let after = cookies::first(&headers, AFTER_SIGN_OUT_COOKIE)
        .and_then(|value| {
            percent_decode_str(&value)
                .decode_utf8()
                .ok()
                .map(|v| v.into_owned())
        })
        .and_then(|rd| allowed_redirect(&rd, &state.settings.allowed_redirect_hosts));
    if let Some(rd) = after {
        let mut response = respond::redirect(StatusCode::FOUND, &rd);
        let clear = cookies::clear_cookie(AFTER_SIGN_OUT_COOKIE, state.settings.cookie_secure);
        cookies::append(response.headers_mut(), &clear);
        return response;
    }
    html_response(
        StatusCode::OK,
        pages::message(
            "You are signed out",
            "Your session has ended.",
            Some(("/.portcullis/sign_in", "Sign in again")),
        ),
    )
}
