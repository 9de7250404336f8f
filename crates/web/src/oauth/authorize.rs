//! `/.portcullis/oauth/authorize`: an MCP client asks a person for access to an MCP app.
//!
//! The request is checked first (client, redirect URI, PKCE, resource, scopes): until the client
//! and its redirect URI are known to belong together, a problem is shown here and nowhere else.
//! Then the person signs in (any way Portcullis offers; a second factor where the app needs
//! one), the app's access policy decides whether they may use it at all, and a consent page
//! names the client, where it sends them back to, and the app. Allowing posts the same request
//! back with a session-bound CSRF token; the code goes to the client's redirect URI with `state`
//! and `iss`.

use std::sync::Arc;

use axum::Form;
use axum::extract::{Query, State};
use axum::response::Response;
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use portcullis_auth::ActiveSession;
use portcullis_auth::audit::Entry;
use portcullis_auth::oauth::{AuthorizeError, AuthorizeParams, AuthorizeRequest, ClientKind};
use portcullis_core::{Failure, FailureKind};
use portcullis_http::html::{escape, page};
use portcullis_http::respond;
use serde::Deserialize;

use super::AUTHORIZE_PATH;
use crate::csrf;
use crate::state::{AppState, ClientAddr};

/// `GET`: checks the request and shows the consent page.
pub async fn form(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    uri: Uri,
    params: Result<Query<AuthorizeParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(params)) = params else {
        return local_error("The authorization request's parameters are not valid.");
    };
    let (request, session) = match admit(&state, &method, &headers, &uri, &params).await {
        Ok(admitted) => admitted,
        Err(response) => return response,
    };
    consent_page(&state, &request, &session, &params)
}

#[derive(Deserialize)]
pub struct Decision {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    decision: String,
    #[serde(flatten)]
    params: AuthorizeParams,
}

/// `POST`: the person's answer on the consent page.
pub async fn decide(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    uri: Uri,
    from: ClientAddr,
    form: Result<Form<Decision>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(decision)) = form else {
        return local_error("The consent form's fields are not valid.");
    };
    let (request, session) = match admit(&state, &method, &headers, &uri, &decision.params).await {
        Ok(admitted) => admitted,
        Err(response) => return response,
    };
    if !csrf::verify_session(&state.sealer, &session, &decision.csrf) {
        return respond::failure(
            &Failure::new(
                FailureKind::Forbidden,
                "This consent form expired or did not come from this site.",
            )
            .with_hint("start connecting the client again"),
            true,
        );
    }
    if decision.decision != "allow" {
        return redirect(&state.oauth.declined(&request));
    }
    match state.oauth.approve(&request, &session.user_id).await {
        Ok(location) => {
            let reason = format!(
                "client {} ({}) for {}",
                request.client.name, request.client.id, request.resource.app
            );
            state
                .audit
                .record(Entry {
                    action: "oauth_consent",
                    success: true,
                    actor: Some(&session.user_id),
                    subject: Some(&request.client.id),
                    reason: Some(&reason),
                    client_ip: from.0,
                })
                .await;
            redirect(&location)
        }
        Err(e) => local_error(&e.description),
    }
}

/// The checked request and the session allowed to answer it, or the response that stops it
/// (an error page, a redirect back to the client, or the way to sign in).
async fn admit(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
    uri: &Uri,
    params: &AuthorizeParams,
) -> Result<(AuthorizeRequest, Arc<ActiveSession>), Response> {
    let request = match state.oauth.check_authorize(params).await {
        Ok(request) => request,
        Err(AuthorizeError::Local(e)) => return Err(local_error(&e.description)),
        Err(AuthorizeError::Redirect(location)) => return Err(redirect(&location)),
    };
    // Coming back here after signing in: the same request, as a query (a POST's fields too).
    let query = serde_urlencoded::to_string(params).unwrap_or_default();
    let here = format!("{}?{query}", uri.path());
    let session = match crate::sign_in::signed_in(state, headers).await {
        Ok(Some(session)) => session,
        Ok(None) => return Err(respond::sign_in_required(method, &here, true)),
        Err(failure) => return Err(respond::failure(&failure, true)),
    };
    let Some(app) = state
        .gateway
        .routes
        .apps()
        .find(|a| a.name == request.resource.app)
        .cloned()
    else {
        return Err(local_error(
            "The MCP server of this request is not configured any more.",
        ));
    };
    if let Err(denial) = app.policy.evaluate(&session.identity) {
        let why = format!(
            "{} may not use {}: {}",
            session.identity.username, app.name, denial.reason
        );
        return Err(refused_page(&state.oauth.refused(&request, &why), &why));
    }
    if app.require_mfa && !session.mfa() {
        return Err(respond::step_up_required(method, &here, true));
    }
    Ok((request, session))
}

fn consent_page(
    state: &AppState,
    request: &AuthorizeRequest,
    session: &ActiveSession,
    params: &AuthorizeParams,
) -> Response {
    let client = &request.client;
    let redirect_host = redirect_host(&request.redirect_uri);
    let provenance = match client.kind {
        ClientKind::Configured => "registered by your administrator".to_owned(),
        ClientKind::Registered => {
            "registered by the client itself: the name is its own claim, not checked".to_owned()
        }
        ClientKind::MetadataDocument => {
            format!("published at {}", escape(&client.id))
        }
    };
    let warning = if client.loopback_only() {
        format!(
            "<p class=\"alert\" role=\"note\">This client sends you back to a program on your own computer ({}). \
             Any program on this computer could call itself \"{}\": allow it only if you just started connecting it.</p>",
            escape(&redirect_host),
            escape(&client.name)
        )
    } else {
        String::new()
    };
    let hidden: String = serde_urlencoded::to_string(params)
        .ok()
        .and_then(|q| serde_urlencoded::from_str::<Vec<(String, String)>>(&q).ok())
        .unwrap_or_default()
        .iter()
        .map(|(name, value)| {
            format!(
                "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                escape(name),
                escape(value)
            )
        })
        .collect();
    let scopes: String = request
        .scopes
        .iter()
        .map(|s| format!("<span class=\"badge\">{}</span> ", escape(s)))
        .collect();
    let body = format!(
        "<h1>Allow {client} to use {app}?</h1>\
         <p><strong>{client}</strong> ({provenance}) wants to use the MCP server <strong>{app}</strong> as \
         <strong>{user}</strong>, with the scopes {scopes}.</p>\
         <table><tr><th scope=\"row\">MCP server</th><td>{resource}</td></tr>\
         <tr><th scope=\"row\">Sends you back to</th><td>{redirect_host}</td></tr></table>\
         {warning}\
         <form method=\"post\" action=\"{AUTHORIZE_PATH}\">{hidden}\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <button type=\"submit\" name=\"decision\" value=\"allow\">Allow</button>\
         <button type=\"submit\" name=\"decision\" value=\"deny\" class=\"secondary\">Cancel</button></form>\
         <p class=\"hint\">You can disconnect it at any time on <a href=\"/.portcullis/account\">your account page</a>.</p>",
        client = escape(&client.name),
        app = escape(&request.resource.app),
        user = escape(&session.identity.username),
        resource = escape(&request.resource.resource),
        redirect_host = escape(&redirect_host),
        csrf = csrf::session_token(&state.sealer, session),
    );
    let mut response = respond::html_response(StatusCode::OK, page("Connect a client", &body));
    // Browsers check a form's redirect against `form-action` too: the client's redirect URI
    // must be allowed, or the answer could not reach it.
    let policy = format!(
        "default-src 'none'; script-src {}; style-src 'unsafe-inline'; form-action 'self' {}; frame-ancestors 'none'",
        portcullis_http::html::script_source(),
        form_target(&request.redirect_uri)
    );
    if let Ok(value) = HeaderValue::from_str(&policy) {
        response
            .headers_mut()
            .insert("content-security-policy", value);
    }
    response
}

/// The host (or, for a native app's scheme, the scheme) a redirect URI goes to.
fn redirect_host(uri: &str) -> String {
    match uri.split_once("://") {
        Some((_, rest)) => rest.split(['/', '?']).next().unwrap_or(rest).to_owned(),
        None => uri.split(':').next().unwrap_or(uri).to_owned() + ":",
    }
}

/// A CSP source for a redirect URI: its origin, or its scheme.
fn form_target(uri: &str) -> String {
    match uri.split_once("://") {
        Some((scheme, rest)) if matches!(scheme, "http" | "https") => {
            let authority = rest.split(['/', '?']).next().unwrap_or(rest);
            format!("{scheme}://{authority}")
        }
        _ => format!("{}:", uri.split(':').next().unwrap_or_default()),
    }
    .chars()
    .filter(|c| !c.is_whitespace() && *c != ';' && *c != ',')
    .collect()
}

fn redirect(location: &str) -> Response {
    let mut response = Response::new(axum::body::Body::empty());
    *response.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn local_error(description: &str) -> Response {
    respond::failure(
        &Failure::bad_request(format!(
            "This request to connect a client cannot be used: {description}"
        ))
        .with_hint("start connecting from the client again, or ask its maker"),
        true,
    )
}

/// The app's policy refused the person: said here, with the way back to the client.
fn refused_page(back: &str, why: &str) -> Response {
    let body = format!(
        "<h1>Access denied</h1><p>{}</p><p>Ask an administrator for access, or sign out and use another account.</p>\
         <p><a href=\"{}\">Return to the client</a></p>",
        escape(why),
        escape(back)
    );
    respond::html_response(StatusCode::FORBIDDEN, page("Access denied", &body))
}
