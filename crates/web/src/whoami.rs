//! Two views of identity.
//!
//! - The built-in `whoami` app: an upstream that shows exactly which headers it received through
//!   the gateway, so anyone can see what an app behind Portcullis gets. It listens on loopback.
//! - `/.portcullis/whoami`: the signed-in user's resolved identity and, for every app, the identity
//!   headers and assertion claims that app receives, with where each field came from.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode, header};
use portcullis_http::html::{escape, page_with_width};
use portcullis_http::respond::{self, html_response, is_browser_navigation};
use tokio::net::TcpListener;

use portcullis_auth::session::ActiveSession;
use portcullis_core::Identity;
use portcullis_core::session::Session;

use crate::sign_in::signed_in;
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

/// Where each identity field came from: the provider's claims at sign-in, or the local account.
fn field_sources(identity: &Identity, record: Option<&Session>) -> Vec<serde_json::Value> {
    let provider = record.and_then(|r| r.provider.as_ref());
    let claim_of = |field: &str| match provider {
        Some(p) => {
            let claim = p
                .claim_sources
                .iter()
                .find(|(f, _)| f == field)
                .map(|(_, c)| c.as_str());
            match (field, claim) {
                // The subject apps see is the directory's own id; the provider's is linked to it.
                ("subject", Some(claim)) => {
                    format!("directory user id (linked to the provider's claim {claim})")
                }
                ("subject", None) => "directory user id".to_owned(),
                (_, Some(claim)) => format!("claim {claim}"),
                (_, None) => "(not in the token)".to_owned(),
            }
        }
        None => "local account".to_owned(),
    };
    [
        ("subject", Some(identity.subject.clone())),
        ("username", Some(identity.username.clone())),
        ("email", identity.email.as_ref().map(|e| e.to_string())),
        ("name", Some(identity.display_name.clone())),
    ]
    .into_iter()
    .map(|(field, value)| serde_json::json!({ "field": field, "from": claim_of(field), "value": value }))
    .collect()
}

/// The origin an app is reached at: its own host, or Portcullis's public URL.
fn app_origin(public_url: &str, host: Option<&str>) -> String {
    let (scheme, rest) = public_url
        .split_once("://")
        .unwrap_or(("https", public_url));
    let authority = rest.split('/').next().unwrap_or_default();
    format!("{scheme}://{}", host.unwrap_or(authority))
}

/// What `/.portcullis/whoami` reports: identity with sources, session, and per app the headers
/// and assertion claims. Nothing secret is in it (the assertion is shown unsigned).
async fn report(state: &AppState, session: &ActiveSession) -> serde_json::Value {
    let identity = &session.identity;
    // Only this diagnostic page reads the session record; the request path never does.
    let record = state.store.session(&session.id_hash).await.ok().flatten();
    let now = state.clock.now().0;
    let apps: Vec<serde_json::Value> = state
        .gateway
        .routes
        .apps()
        .map(|app| {
            let sent: serde_json::Map<String, serde_json::Value> = app
                .identity_headers
                .values(identity)
                .map(|(name, value)| {
                    let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                    (name.as_str().to_owned(), value.into())
                })
                .collect();
            let denied = app.policy.evaluate(identity).err().map(|d| d.reason);
            let assertion = state.gateway.assertions.as_ref().map(|a| {
                let exp = now + i64::try_from(a.lifetime().as_secs()).unwrap_or(60);
                let audience = app_origin(&state.settings.public_url, app.host());
                a.claims(identity, &session.sid, &audience, now, exp)
            });
            serde_json::json!({ "app": app.name, "headers": sent, "denied": denied, "assertion_claims": assertion })
        })
        .collect();
    let signed_in_with = record
        .as_ref()
        .and_then(|r| r.provider.as_ref())
        .map_or_else(
            || "local account".to_owned(),
            |p| format!("provider {}", p.provider),
        );
    let warning = identity.name_looks_opaque().then_some(
        "the display name looks like an opaque id (the subject): people would see it as their name; map a real name claim for this provider",
    );
    serde_json::json!({
        "identity": identity.as_ref(),
        "signed_in_with": signed_in_with,
        "sources": field_sources(identity, record.as_ref()),
        "name_warning": warning,
        "session_expires_at": session.expires_at(state.sessions.policy()).0,
        // How the sign-in was proved (RFC 8176), and whether `require_mfa` apps take it.
        "amr": session.amr.as_ref(),
        "second_factor": session.mfa(),
        "apps": apps,
    })
}

fn text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "—".into(),
        other => other.to_string(),
    }
}

fn rows<'a>(pairs: impl Iterator<Item = (String, &'a serde_json::Value)>) -> String {
    pairs
        .map(|(k, v)| {
            format!(
                "<tr><th>{}</th><td>{}</td></tr>",
                escape(&k),
                escape(&text(v))
            )
        })
        .collect()
}

/// "pwd, otp, mfa (a second factor)" or "pwd (no second factor)".
fn proved_with(amr: &serde_json::Value, second_factor: bool) -> String {
    let methods: Vec<&str> = amr
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(serde_json::Value::as_str)
        .collect();
    let methods = if methods.is_empty() {
        "—".to_owned()
    } else {
        methods.join(", ")
    };
    let factor = if second_factor {
        "a second factor"
    } else {
        "no second factor"
    };
    format!("{methods} ({factor})")
}

fn html(identity: &Identity, body: &serde_json::Value) -> String {
    let empty = Vec::new();
    let list = |key: &str| body[key].as_array().unwrap_or(&empty).clone();
    let sources: String = list("sources")
        .iter()
        .map(|s| {
            format!(
                "<tr><th>{}</th><td>{}</td><td>{}</td></tr>",
                escape(&text(&s["field"])),
                escape(&text(&s["from"])),
                escape(&text(&s["value"]))
            )
        })
        .collect();
    let warning = body["name_warning"]
        .as_str()
        .map(|w| format!("<p class=\"error\">Warning: {}</p>", escape(w)))
        .unwrap_or_default();
    let apps: String = list("apps")
        .iter()
        .map(|app| {
            let headers = rows(app["headers"].as_object().into_iter().flatten().map(|(k, v)| (k.clone(), v)));
            let claims = rows(app["assertion_claims"].as_object().into_iter().flatten().map(|(k, v)| (k.clone(), v)));
            let denied = app["denied"]
                .as_str()
                .map(|d| format!("<p class=\"error\">Access denied: {}</p>", escape(d)))
                .unwrap_or_default();
            let claims = if claims.is_empty() {
                String::new()
            } else {
                format!("<h3>X-Portcullis-Assertion claims (signed per request)</h3><table>{claims}</table>")
            };
            format!("<h2>App {}</h2>{denied}<h3>Headers</h3><table>{headers}</table>{claims}", escape(&text(&app["app"])))
        })
        .collect();
    format!(
        "<h1>Signed in as {}</h1><p>Through {}; proved with: {}; groups: {}; role: {}; this session ends at the latest at {} UTC.</p>\
         {warning}<h2>Where each field came from</h2><table><tr><th>field</th><th>from</th><th>value</th></tr>{sources}</table>\
         {apps}<p><a href=\"/.portcullis/sign_out\">Sign out</a></p>",
        escape(&identity.display_name),
        escape(&text(&body["signed_in_with"])),
        escape(&proved_with(
            &body["amr"],
            body["second_factor"].as_bool().unwrap_or(false)
        )),
        escape(&identity.groups.join(", ")),
        escape(identity.role.as_str()),
        portcullis_core::Timestamp(body["session_expires_at"].as_i64().unwrap_or_default()).utc(),
    )
}

/// `/.portcullis/whoami` for the signed-in user.
pub async fn me(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let browser = is_browser_navigation(&headers, "/.portcullis/whoami");
    let session = match signed_in(&state, &headers).await {
        Ok(Some(session)) => session,
        Ok(None) => {
            return respond::sign_in_required(&http::Method::GET, "/.portcullis/whoami", browser);
        }
        Err(failure) => return respond::failure(&failure, browser),
    };
    let body = report(&state, &session).await;
    if !browser {
        return axum::Json(body).into_response();
    }
    let page = html(&session.identity, &body);
    html_response(StatusCode::OK, page_with_width("Who am I", &page, true))
}
