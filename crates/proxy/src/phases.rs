//! The phases of the pipeline, each a plain function over the [`RequestContext`].
//!
//! `route → authenticate → authorize → rewrite → forward`. A phase either fills in the context
//! and lets the request continue, or stops it with a [`Stop`], which [`portcullis_http::respond`] turns into
//! the response.

use axum::body::Body;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response};

use portcullis_auth::assertion::Assertions;
use portcullis_auth::principal::{Authenticator, Credential, Presented, Principal};
use portcullis_core::{Failure, FailureKind};

use crate::context::RequestContext;
use crate::routes::{App, RouteTable};
use crate::upstream;
use portcullis_http::cookies;
use portcullis_http::respond::BearerError;

/// Why a request went no further.
#[derive(Debug)]
pub enum Stop {
    /// The client must sign in first.
    SignIn,
    /// Signed in, but the app needs a second factor the session was not proved with: the
    /// sign-in page asks for one (and replaces the session).
    StepUp,
    /// An MCP app without a usable bearer token: `401` with where to get one (RFC 9728), and
    /// `invalid_token` when one was sent; `403 insufficient_scope` for one without the scopes.
    Challenge(BearerError),
    /// A browser's CORS preflight for an MCP app, from an allowed origin: answered here.
    Preflight,
    /// The MCP app's tool rules refuse a tool call: a JSON-RPC error for its id.
    ToolRefused {
        id: serde_json::Value,
        why: String,
    },
    Fail(Failure),
}

impl From<Failure> for Stop {
    fn from(f: Failure) -> Self {
        Stop::Fail(f)
    }
}

/// Finds the app for the request.
pub fn route(table: &RouteTable, ctx: &mut RequestContext) -> Result<(), Stop> {
    let app = table.route(&ctx.host, &ctx.path).ok_or_else(|| {
        Failure::new(
            FailureKind::NotFound,
            "no app is configured for this address",
        )
        .with_hint("check the link, or ask the operator which address the app lives at")
    })?;
    ctx.app = Some(app);
    Ok(())
}

/// What [`admit_upgrade`] does with an upgrade the app does not accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpgradeMode {
    /// The built-in proxy decides what reaches the app: an `h2c` upgrade, which clients such as
    /// `curl --http2` offer on their own, is simply not performed and the request goes on as
    /// plain HTTP/1.1 (a server may ignore `Upgrade`, RFC 9110 §7.8).
    Decline,
    /// Forward-auth: the proxy in front forwards whatever the client asked for, so a request
    /// for an upgrade the app does not accept is refused outright.
    Refuse,
}

/// Admits the protocol switch a request asks for only when its app accepts that protocol
/// (`upgrades`, WebSocket by default). A tunnel is opaque: once an app switched to `h2c`, every
/// request inside it would reach the app unchecked, so `h2c` is never tunnelled.
pub fn admit_upgrade(ctx: &mut RequestContext, mode: UpgradeMode) -> Result<(), Stop> {
    let Some(requested) = ctx.upgrade.take() else {
        return Ok(());
    };
    let Some(app) = ctx.app.clone() else {
        return Err(Failure::internal("admit_upgrade ran before route").into());
    };
    let text = requested
        .to_str()
        .map_err(|_| Failure::bad_request("the Upgrade header is not plain text"))?;
    let mut admitted = Vec::new();
    for protocol in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let name = protocol.split('/').next().unwrap_or(protocol);
        let h2c = name.eq_ignore_ascii_case("h2c");
        if h2c && mode == UpgradeMode::Decline {
            continue;
        }
        if h2c || !app.accepts_upgrade(name) {
            return Err(upgrade_refused(&app.name, name, h2c).into());
        }
        admitted.push(protocol);
    }
    ctx.upgrade = match admitted.as_slice() {
        [] => None,
        [one] if *one == text => Some(requested),
        several => HeaderValue::from_str(&several.join(", ")).ok(),
    };
    Ok(())
}

fn upgrade_refused(app: &str, protocol: &str, h2c: bool) -> Failure {
    let failure = Failure::bad_request(format!(
        "The app \"{app}\" does not accept upgrades to \"{protocol}\"."
    ));
    if h2c {
        failure.with_hint(
            "Portcullis never passes h2c upgrades on: requests inside the tunnel would reach the app unchecked; use HTTP/1.1 or HTTP/2 to Portcullis itself",
        )
    } else {
        failure.with_hint(format!(
            "the operator can allow it with upgrades = [\"websocket\", \"{protocol}\"] on the app"
        ))
    }
}

/// MCP apps refuse a request whose `Origin` they do not allow: a web page the user visits must
/// not reach an MCP server through their browser (DNS rebinding, MCP's transport security). An
/// allowed origin is echoed back in CORS headers ([`cors`]); its preflight is answered here.
pub fn admit_origin(ctx: &mut RequestContext, headers: &HeaderMap) -> Result<(), Stop> {
    let Some(app) = ctx.app.clone() else {
        return Err(Failure::internal("admit_origin ran before route").into());
    };
    let (Some(mcp), Some(origin)) = (&app.mcp, headers.get(header::ORIGIN)) else {
        return Ok(());
    };
    let text = origin.to_str().unwrap_or_default().to_ascii_lowercase();
    if !mcp.origins.contains(&text) {
        return Err(Failure::new(
            FailureKind::Forbidden,
            format!(
                "Requests from the origin {text:?} may not reach the MCP server \"{}\".",
                app.name
            ),
        )
        .with_hint("the operator can allow a browser-based client's origin with allowed_origins on the app")
        .into());
    }
    ctx.cors_origin = Some(origin.clone());
    if ctx.method == http::Method::OPTIONS && headers.contains_key("access-control-request-method")
    {
        return Err(Stop::Preflight);
    }
    Ok(())
}

/// The CORS headers of a response to an allowed origin of an MCP app: the origin, and the
/// headers browser-based MCP clients must read (the challenge, the session id).
pub fn cors(ctx: &RequestContext, response: &mut Response<Body>) {
    let Some(origin) = &ctx.cors_origin else {
        return;
    };
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("WWW-Authenticate, Mcp-Session-Id, Mcp-Protocol-Version"),
    );
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
}

/// The answer to an allowed origin's preflight ([`cors`] adds the origin).
pub fn preflight() -> Response<Body> {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = http::StatusCode::NO_CONTENT;
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, DELETE, OPTIONS"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static(
            "Authorization, Content-Type, Accept, Mcp-Session-Id, Mcp-Protocol-Version, Last-Event-ID",
        ),
    );
    headers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    response
}

/// Establishes who the request is from — through the one [`Authenticator`], as every surface
/// does — unless a skip-auth rule opens the route.
pub async fn authenticate(
    auth: &Authenticator,
    ctx: &mut RequestContext,
    headers: &HeaderMap,
) -> Result<(), Stop> {
    let Some(app) = ctx.app.clone() else {
        return Err(Failure::internal("authenticate ran before route").into());
    };
    let presented = Presented::read(headers, Some(ctx.client.peer_ip));
    // Our key in `Authorization` never reaches the app, skip-auth route or not.
    ctx.own_token_in_authorization = presented.own_token_in_authorization;
    if app.skips_auth(&ctx.method, &ctx.path) {
        return Ok(());
    }
    if let Some(mcp) = &app.mcp {
        let sent = presented.bearer.is_some()
            || presented.access_token.is_some()
            || !presented.keys.is_empty();
        let principal = match auth.authenticate(app.surface(), &presented).await {
            Ok(Some(principal)) => principal,
            Ok(None) if sent => return Err(Stop::Challenge(BearerError::InvalidToken)),
            Ok(None) => return Err(Stop::Challenge(BearerError::Missing)),
            Err(e) => {
                return match Failure::from(e) {
                    // A token that does not work here is `invalid_token`; the store failing
                    // is not.
                    f if matches!(
                        f.kind,
                        FailureKind::Unauthenticated | FailureKind::Forbidden
                    ) =>
                    {
                        Err(Stop::Challenge(BearerError::InvalidToken))
                    }
                    f => Err(f.into()),
                };
            }
        };
        // The token's audience is the app's canonical resource URL (RFC 8707): a grant made
        // for what the app was before a configuration change is not this app's.
        if let Credential::Grant(grant) = &principal.credential {
            if grant.resource != mcp.resource {
                return Err(Stop::Challenge(BearerError::InvalidToken));
            }
            if !grant.has_scopes(&mcp.scopes) {
                return Err(Stop::Challenge(BearerError::InsufficientScope));
            }
        }
        ctx.principal = Some(principal);
        return Ok(());
    }
    match auth
        .authenticate(app.surface(), &presented)
        .await
        .map_err(Failure::from)?
    {
        Some(principal) => {
            ctx.principal = Some(principal);
            Ok(())
        }
        None => Err(Stop::SignIn),
    }
}

/// The `401` of an MCP app that did not get a usable token (see [`Stop::Challenge`]).
pub fn challenge(ctx: &RequestContext, error: BearerError) -> Response<Body> {
    match ctx.app.as_ref().and_then(|app| app.mcp.as_ref()) {
        Some(mcp) => {
            portcullis_http::respond::bearer_challenge(&mcp.metadata_url, &mcp.scopes, error)
        }
        None => portcullis_http::respond::failure(
            &Failure::new(FailureKind::Unauthenticated, "a bearer token is needed"),
            false,
        ),
    }
}

/// Applies the app's access policy to the signed-in principal.
pub fn authorize(ctx: &RequestContext) -> Result<(), Stop> {
    let (Some(app), Some(principal)) = (&ctx.app, &ctx.principal) else {
        return Ok(()); // a skip-auth route: nobody to authorize
    };
    admits(app, principal)
}

/// Whether `app` admits `principal`: its access policy, then its second-factor requirement
/// (who may come in is said first: stepping up would not help someone the policy refuses).
pub fn admits(app: &App, principal: &Principal) -> Result<(), Stop> {
    let identity = &principal.identity;
    app.policy.evaluate(identity).map_err(|denial| {
        Stop::Fail(
            Failure::new(
                FailureKind::Forbidden,
                format!(
                    "You are signed in as {}, but {}.",
                    identity.username, denial.reason
                ),
            )
            .with_hint("ask an administrator for access, or sign out and use another account"),
        )
    })?;
    if app.require_mfa && !principal.meets_mfa() {
        return Err(match principal.credential {
            Credential::Session(_) => Stop::StepUp,
            _ => Stop::Fail(
                Failure::new(
                    FailureKind::Forbidden,
                    format!(
                        "The app \"{}\" needs a second factor, which an identity vouched for by another system does not show.",
                        app.name
                    ),
                )
                .with_hint("sign in to Portcullis itself, with a second factor"),
            ),
        });
    }
    Ok(())
}

/// Makes the headers safe and truthful for the app: removes hop-by-hop headers, every client copy
/// of every identity header, Portcullis's cookies and the client's forwarding claims; then sets
/// the forwarding headers, the app's identity headers and the signed assertion from facts we
/// verified.
pub fn rewrite(ctx: &RequestContext, assertions: Option<&Assertions>, headers: &mut HeaderMap) {
    let Some(app) = &ctx.app else {
        return;
    };
    app.request_drop.apply(headers);
    cookies::strip_own(headers);
    if ctx.own_token_in_authorization {
        headers.remove(header::AUTHORIZATION);
    }
    // Most requests come straight from their client: its address is then formatted once for
    // both headers.
    let peer_ip = ctx.client.peer_ip.to_string();
    let real_ip = if ctx.client.client_ip == ctx.client.peer_ip {
        peer_ip.clone()
    } else {
        ctx.client.client_ip.to_string()
    };
    let forwarded_for = match &ctx.client.forwarded_for {
        Some(chain) => format!("{chain}, {peer_ip}"),
        None => peer_ip,
    };
    set(headers, X_FORWARDED_FOR, &forwarded_for);
    set(headers, X_FORWARDED_PROTO, ctx.scheme);
    set(headers, X_FORWARDED_HOST, &ctx.host_with_port);
    set(headers, X_REAL_IP, &real_ip);
    headers.insert(header::HOST, app.host_header.clone());
    if let Some(identity) = ctx.identity() {
        // Never empty, never several values: `values` skips empty ones and `insert` replaces.
        for (name, value) in app.identity_headers.values(identity) {
            headers.insert(name.clone(), value);
        }
        if let Some(value) = assertion(ctx, assertions) {
            headers.insert(ASSERTION_HEADER, value);
        }
    }
}

/// The header that carries the signed identity assertion.
pub const ASSERTION_HEADER: header::HeaderName =
    header::HeaderName::from_static("x-portcullis-assertion");

/// The signed assertion for the request's identity, app and origin, if assertions are on.
pub fn assertion(ctx: &RequestContext, assertions: Option<&Assertions>) -> Option<HeaderValue> {
    let (assertions, principal, app) = (assertions?, ctx.principal.as_ref()?, ctx.app.as_ref()?);
    assertions.assertion(
        &principal.identity,
        &principal.sid(),
        &app.name,
        &ctx.origin(),
    )
}

// Names as constants: a `&'static str` name is parsed again on every insert.
const X_FORWARDED_FOR: header::HeaderName = header::HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: header::HeaderName = header::HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: header::HeaderName = header::HeaderName::from_static("x-forwarded-host");
const X_REAL_IP: header::HeaderName = header::HeaderName::from_static("x-real-ip");

fn set(headers: &mut HeaderMap, name: header::HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
}

/// Sends the rewritten request to the app and streams its response back.
pub async fn forward(ctx: &RequestContext, req: Request<Body>) -> Result<Response<Body>, Stop> {
    let Some(app) = &ctx.app else {
        return Err(Failure::internal("forward ran before route").into());
    };
    // Origin form: the connection already goes to the app, and `Host` names it.
    let target = match &ctx.query {
        Some(q) => format!("{}{}?{q}", app.base_path, ctx.path),
        None => format!("{}{}", app.base_path, ctx.path),
    };
    let uri: http::Uri = target
        .parse()
        .map_err(|_| Failure::bad_request("the request URL cannot be forwarded"))?;
    let (mut parts, body) = req.into_parts();
    parts.uri = uri;
    parts.version = http::Version::HTTP_11;
    let request = Request::from_parts(parts, body);
    let guard = ctx.principal.as_ref().map(|p| p.guard.clone());
    Ok(upstream::send(app, request, ctx.upgrade.clone(), guard).await?)
}
