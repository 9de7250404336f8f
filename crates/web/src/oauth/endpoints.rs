//! The token (RFC 6749 §3.2), revocation (RFC 7009) and registration (RFC 7591) endpoints.

use std::net::SocketAddr;

use axum::Form;
use axum::body::Bytes;
use axum::extract::rejection::FormRejection;
use axum::extract::{ConnectInfo, State};
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use portcullis_auth::audit::Entry;
use portcullis_auth::oauth::{OAuthError, Registration, TokenParams};
use portcullis_http::respond;
use serde::Deserialize;

use super::{error_response, readable_anywhere};
use crate::state::{AppState, ClientAddr};

/// `POST /.portcullis/oauth/token`.
pub async fn token(
    State(state): State<AppState>,
    from: ClientAddr,
    headers: HeaderMap,
    form: Result<Form<TokenParams>, FormRejection>,
) -> Response {
    let Ok(Form(params)) = form else {
        return error_response(&not_a_form());
    };
    let basic = match basic_credentials(&headers) {
        Ok(basic) => basic,
        Err(e) => return error_response(&e),
    };
    let grant_type = params.grant_type.clone().unwrap_or_default();
    match state.oauth.token(&params, basic).await {
        Ok(issued) => {
            if grant_type == "authorization_code" {
                let grant = &issued.grant;
                let reason = format!(
                    "client {} ({}) at {} with {}",
                    grant.client_name,
                    grant.client_id,
                    grant.app,
                    grant.scopes.join(" ")
                );
                state
                    .audit
                    .record(Entry {
                        action: "oauth_grant",
                        success: true,
                        actor: Some(&grant.user_id),
                        subject: Some(&grant.id),
                        reason: Some(&reason),
                        client_ip: from.0,
                    })
                    .await;
            }
            let mut response = respond::json(
                StatusCode::OK,
                serde_json::to_value(&issued.response).unwrap_or_default(),
            );
            response
                .headers_mut()
                .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
            readable_anywhere(response)
        }
        Err(e) => {
            // Replays and reuse revoke a grant: that is worth the audit trail.
            if e.error == "invalid_grant" && e.description.contains("revoked") {
                state
                    .audit
                    .record(Entry {
                        action: "oauth_token_replayed",
                        success: false,
                        actor: params.client_id.as_deref(),
                        subject: None,
                        reason: Some(&e.description),
                        client_ip: from.0,
                    })
                    .await;
            }
            error_response(&e)
        }
    }
}

#[derive(Deserialize, Default)]
pub struct RevokeForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    client_secret: Option<String>,
}

/// `POST /.portcullis/oauth/revoke`: ends the grant of a refresh or access token.
pub async fn revoke(
    State(state): State<AppState>,
    from: ClientAddr,
    headers: HeaderMap,
    form: Result<Form<RevokeForm>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return error_response(&not_a_form());
    };
    let basic = match basic_credentials(&headers) {
        Ok(basic) => basic,
        Err(e) => return error_response(&e),
    };
    if form.token.is_empty() {
        return error_response(&OAuthError::new("invalid_request", "token is missing"));
    }
    match state
        .oauth
        .revoke(
            &form.token,
            form.client_id.as_deref(),
            basic,
            form.client_secret.as_deref(),
        )
        .await
    {
        Ok(revoked) => {
            if let Some(grant) = revoked {
                state
                    .audit
                    .record(Entry {
                        action: "oauth_grant_revoked",
                        success: true,
                        actor: Some(&grant.client_id),
                        subject: Some(&grant.id),
                        reason: Some("revoked by the client"),
                        client_ip: from.0,
                    })
                    .await;
            }
            readable_anywhere(respond::json(StatusCode::OK, serde_json::json!({})))
        }
        Err(e) => error_response(&e),
    }
}

/// `POST /.portcullis/oauth/register`: dynamic client registration, rate-limited per address.
pub async fn register(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    const MAX_BODY: usize = 16 * 1024;
    if body.len() > MAX_BODY {
        return error_response(&OAuthError::invalid_client_metadata(
            "the registration request is larger than 16 KiB",
        ));
    }
    let request: Registration = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => {
            return error_response(&OAuthError::invalid_client_metadata(format!(
                "the body is not a JSON client registration: {e}"
            )));
        }
    };
    let client_ip = state.client(peer, &headers).client_ip;
    match state.oauth.clients.register(request, client_ip).await {
        Ok(registered) => {
            let client = &registered.client;
            state
                .audit
                .record(Entry {
                    action: "oauth_client_registered",
                    success: true,
                    actor: None,
                    subject: Some(&client.id),
                    reason: Some(&client.name),
                    client_ip: Some(client_ip.to_string()),
                })
                .await;
            let mut answer = serde_json::json!({
                "client_id": client.id,
                "client_id_issued_at": registered.issued_at.0,
                "client_name": client.name,
                "redirect_uris": client.redirect_uris,
                "grant_types": ["authorization_code", "refresh_token"],
                "response_types": ["code"],
                "token_endpoint_auth_method": registered.auth_method,
            });
            if let Some(secret) = &registered.secret {
                answer["client_secret"] = secret.clone().into();
                answer["client_secret_expires_at"] = 0.into();
            }
            readable_anywhere(respond::json(StatusCode::CREATED, answer))
        }
        Err(e) => error_response(&e),
    }
}

fn not_a_form() -> OAuthError {
    OAuthError::new(
        "invalid_request",
        "the body must be an application/x-www-form-urlencoded form",
    )
}

/// `Authorization: Basic` client credentials (RFC 6749 §2.3.1: each part form-urlencoded).
fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, OAuthError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let bad =
        || OAuthError::invalid_client("the Authorization header is not valid Basic credentials");
    let text = value.to_str().map_err(|_| bad())?;
    let Some((scheme, encoded)) = text.trim().split_once(' ') else {
        return Err(bad());
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(bad());
    }
    let decoded = STANDARD.decode(encoded.trim()).map_err(|_| bad())?;
    let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(bad)?;
    let unescape = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8()
            .map(|c| c.into_owned())
            .map_err(|_| bad())
    };
    Ok(Some((unescape(id)?, unescape(secret)?)))
}
