//! Forward-auth: the `route → authenticate → authorize` phases for a request that another proxy
//! (nginx `auth_request`, Caddy `forward_auth`, Traefik `forwardAuth`) is about to serve itself.
//!
//! The proxy describes the original request in headers, each flavour in its own family
//! ([`description`]). A description is believed only from a configured trusted proxy: anyone else
//! could claim to be asking about a public path while reading a private one. An endpoint can be
//! pinned to one app (`?app=chat`), and then refuses descriptions that route anywhere else.

mod description;

use axum::body::Body;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Response, StatusCode};
use portcullis_core::policy::AccessPolicy;
use portcullis_core::{Failure, FailureKind, Identity};
use std::net::SocketAddr;
use std::sync::Arc;

use portcullis_auth::principal::{Presented, Surface};

use crate::context::RequestContext;
use crate::gateway::Gateway;
use crate::identity_headers::IdentityHeaders;
use crate::phases::{self, Stop};
use crate::routes::{App, RouteTable};
use portcullis_http::respond::{self, Challenge};

/// Which caller's conventions the answer follows, and which headers describe the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// `/oauth2/auth`: oauth2-proxy's answers (202 allowed, 401 no session, 403 denied).
    OAuth2Proxy,
    /// nginx `auth_request`: 200, 401 with the sign-in URL in `Location`, or 403. nginx turns any
    /// other status into a 500, so every refusal is one of these.
    AuthRequest,
    /// Caddy and Traefik: 200; a browser navigation that needs to sign in gets a 302 to the
    /// sign-in page, an API request a 401; other refusals keep their status.
    ForwardAuth,
}

/// What a forward-auth endpoint's query asks: the app it is pinned to (`?app=chat`), and
/// oauth2-proxy's extra requirements on top of the app's own policy (comma-separated lists).
#[derive(Debug, Default, serde::Deserialize)]
pub struct CheckQuery {
    /// Only this app may be described: a description that routes anywhere else is refused, so
    /// a client's `Host` cannot pick a more lenient app's policy.
    #[serde(default)]
    pub app: Option<String>,
    #[serde(default)]
    pub allowed_groups: Option<String>,
    #[serde(default)]
    pub allowed_emails: Option<String>,
    #[serde(default)]
    pub allowed_email_domains: Option<String>,
}

impl CheckQuery {
    fn policy(&self) -> AccessPolicy {
        let list = |v: &Option<String>| -> Vec<String> {
            v.as_deref()
                .unwrap_or("")
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        };
        AccessPolicy {
            users: list(&self.allowed_emails),
            groups: list(&self.allowed_groups),
            roles: Vec::new(),
            email_domains: list(&self.allowed_email_domains),
        }
    }

    /// The pinned app, which must exist: a pin naming nothing is a configuration error that
    /// must not quietly open every app.
    fn pinned<'t>(&self, routes: &'t RouteTable) -> Result<Option<&'t Arc<App>>, Failure> {
        let Some(name) = self.app.as_deref() else {
            return Ok(None);
        };
        routes
            .apps()
            .find(|app| !app.implicit && app.name == name)
            .map(Some)
            .ok_or_else(|| {
                Failure::new(
                    FailureKind::Forbidden,
                    format!("This forward-auth endpoint is pinned to the app \"{name}\", which is not configured."),
                )
                .with_hint("check the ?app= of the forward-auth URL in the proxy's configuration against [[apps]] in portcullis.toml")
            })
    }
}

/// A described request that routed to another app than the pinned one.
fn pin_mismatch(pinned: &App, routed: &App) -> Failure {
    Failure::new(
        FailureKind::Forbidden,
        format!(
            "This address belongs to the app \"{}\", but this forward-auth endpoint is pinned to \"{}\".",
            routed.name, pinned.name
        ),
    )
    .with_hint("the proxy in front must describe only requests for the pinned app; check its host matching")
}

/// Where nginx finds the sign-in URL of a 401 (`$upstream_http_x_portcullis_sign_in`).
const SIGN_IN_HEADER: HeaderName = HeaderName::from_static("x-portcullis-sign-in");

/// Where to send someone who must sign in: the sign-in page on Portcullis's public URL, with the
/// original URL to come back to.
fn sign_in_url(public_url: &str, challenge: Challenge, ctx: &RequestContext) -> String {
    let back = format!("{}://{}{}", ctx.scheme, ctx.host_with_port, ctx.return_to());
    format!(
        "{}{}",
        public_url.trim_end_matches('/'),
        respond::challenge_location(challenge, &back)
    )
}

impl Gateway {
    /// Answers a forward-auth request. `public_url` is where browsers reach Portcullis.
    pub async fn check(
        &self,
        headers: &HeaderMap,
        peer: SocketAddr,
        flavor: Flavor,
        query: &CheckQuery,
        public_url: &str,
    ) -> Response<Body> {
        let client = self.trusted.client_facts(peer, headers);
        let target = match description::described_target(flavor, headers, client.peer_trusted) {
            Ok(Some(target)) => target,
            Ok(None) if flavor == Flavor::OAuth2Proxy => {
                return self.check_session_only(headers, query, peer).await;
            }
            Ok(None) => {
                let expected = match flavor {
                    Flavor::AuthRequest => "X-Original-URL and X-Original-Method",
                    _ => "X-Forwarded-Method, -Proto, -Host and -Uri",
                };
                let failure = Failure::bad_request(
                    "this forward-auth request does not say which URL it is for",
                )
                .with_hint(format!(
                    "this endpoint reads {expected} (see docs/forward-auth.md)"
                ));
                return refusal(flavor, &failure);
            }
            Err(failure) => return refusal(flavor, &failure),
        };
        let mut ctx = match RequestContext::describe(target, client, headers) {
            Ok(ctx) => ctx,
            Err(failure) => return refusal(flavor, &failure),
        };
        let outcome = self.decide(&mut ctx, headers, query).await;
        match outcome {
            Ok(()) => {
                let mut response = allowed(flavor, &ctx);
                if let Some(value) = phases::assertion(&ctx, self.assertions.as_deref()) {
                    response
                        .headers_mut()
                        .insert(phases::ASSERTION_HEADER, value);
                }
                response
            }
            Err(Stop::SignIn) => challenge(flavor, Challenge::SignIn, &ctx, public_url),
            Err(Stop::StepUp) => challenge(flavor, Challenge::StepUp, &ctx, public_url),
            // An MCP app: the bearer challenge whatever the flavour (its clients follow no
            // redirect); the proxy in front passes the 401 and its WWW-Authenticate on.
            Err(Stop::Challenge(error)) => phases::challenge(&ctx, error),
            // The proxy in front answers the browser with this (and the origin, below).
            Err(Stop::Preflight) => phases::preflight(),
            Err(Stop::Fail(failure)) => refusal(flavor, &failure),
            Err(Stop::ToolRefused { id, why }) => crate::tool_calls::refusal(&id, &why),
        }
    }

    async fn decide(
        &self,
        ctx: &mut RequestContext,
        headers: &HeaderMap,
        query: &CheckQuery,
    ) -> Result<(), Stop> {
        let pinned = query.pinned(&self.routes)?;
        phases::route(&self.routes, ctx)?;
        if let (Some(pinned), Some(routed)) = (pinned, &ctx.app)
            && !Arc::ptr_eq(pinned, routed)
        {
            return Err(pin_mismatch(pinned, routed).into());
        }
        phases::admit_upgrade(ctx, phases::UpgradeMode::Refuse)?;
        phases::admit_origin(ctx, headers)?;
        phases::authenticate(&self.auth, ctx, headers).await?;
        phases::authorize(ctx)?;
        tool_rules_need_the_body(ctx)?;
        if let Some(identity) = ctx.identity() {
            extra_allows(query, identity)?;
        }
        Ok(())
    }

    /// oauth2-proxy's bare `/oauth2/auth`: is there a session, and does it pass the query's rules
    /// (and the pinned app's policy)? Pinned, it accepts what that app accepts; unpinned, a
    /// session only, like Portcullis's own pages.
    async fn check_session_only(
        &self,
        headers: &HeaderMap,
        query: &CheckQuery,
        peer: SocketAddr,
    ) -> Response<Body> {
        let pinned = match query.pinned(&self.routes) {
            Ok(pinned) => pinned,
            Err(failure) => return refusal(Flavor::OAuth2Proxy, &failure),
        };
        let surface = pinned.map_or(Surface::Pages, |app| app.surface());
        let presented = Presented::read(headers, Some(peer.ip()));
        let principal = match self.auth.authenticate(surface, &presented).await {
            Ok(Some(principal)) => principal,
            Ok(None) => return empty(StatusCode::UNAUTHORIZED),
            Err(e) => return refusal(Flavor::OAuth2Proxy, &Failure::from(e)),
        };
        let identity = &principal.identity;
        let decision = match pinned {
            Some(app) => phases::admits(app, &principal),
            None => Ok(()),
        }
        .and_then(|()| extra_allows(query, identity));
        match decision {
            Ok(()) => identity_response(
                StatusCode::ACCEPTED,
                identity,
                pinned.map(|app| app.as_ref()),
            ),
            Err(Stop::Fail(failure)) => refusal(Flavor::OAuth2Proxy, &failure),
            Err(Stop::SignIn | Stop::StepUp | Stop::Challenge(_)) => {
                empty(StatusCode::UNAUTHORIZED)
            }
            Err(Stop::Preflight) => phases::preflight(),
            Err(Stop::ToolRefused { id, why }) => crate::tool_calls::refusal(&id, &why),
        }
    }
}

/// A proxy in front asks about a request without its body, so the tool calls in it cannot be
/// checked: an MCP app with tool rules is reached only through the built-in proxy (deny unless
/// the rules could be applied).
fn tool_rules_need_the_body(ctx: &RequestContext) -> Result<(), Stop> {
    let Some(app) = &ctx.app else {
        return Ok(());
    };
    if app.mcp.as_ref().is_some_and(|m| !m.tools.rules.is_empty())
        && crate::tool_calls::carries_messages(&ctx.method)
    {
        return Err(Stop::Fail(
            Failure::new(
                portcullis_core::FailureKind::Forbidden,
                format!(
                    "The MCP app \"{}\" has tool rules, which forward-auth cannot apply (it never sees the request body).",
                    app.name
                ),
            )
            .with_hint("send this app's traffic through Portcullis's built-in proxy, or remove its tool_rules"),
        ));
    }
    Ok(())
}

/// Sends the client to sign in (or step up) on Portcullis's public URL, the way each flavour's
/// proxy passes it on.
fn challenge(
    flavor: Flavor,
    challenge: Challenge,
    ctx: &RequestContext,
    public_url: &str,
) -> Response<Body> {
    let location = sign_in_url(public_url, challenge, ctx);
    match flavor {
        Flavor::ForwardAuth if ctx.browser => respond::redirect(StatusCode::FOUND, &location),
        Flavor::ForwardAuth | Flavor::OAuth2Proxy => {
            respond::challenge_at(challenge, &ctx.method, &location, false)
        }
        Flavor::AuthRequest => {
            let mut response = respond::challenge_at(challenge, &ctx.method, &location, false);
            // `Location` for configurations written for Authelia; our own header for ours,
            // because nginx's default `proxy_redirect` rewrites a `Location` that starts with
            // the `proxy_pass` URL.
            if let Ok(value) = HeaderValue::from_str(&location) {
                let headers = response.headers_mut();
                headers.insert(header::LOCATION, value.clone());
                headers.insert(SIGN_IN_HEADER, value);
            }
            response
        }
    }
}

fn extra_allows(query: &CheckQuery, identity: &Identity) -> Result<(), Stop> {
    query.policy().evaluate(identity).map_err(|denial| {
        Stop::Fail(Failure::new(
            FailureKind::Forbidden,
            format!(
                "You are signed in as {}, but {}.",
                identity.username,
                denial.reason.replace("this app", "this address")
            ),
        ))
    })
}

fn allowed(flavor: Flavor, ctx: &RequestContext) -> Response<Body> {
    let status = if flavor == Flavor::OAuth2Proxy {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    match ctx.identity() {
        Some(identity) => identity_response(status, identity, ctx.app.as_deref()),
        // A skip-auth route: allowed, and nobody to describe.
        None => empty(status),
    }
}

/// The identity in every header family, then the app's own profile (which wins where a name is
/// shared: an `openwebui` app gets the display name in `X-Forwarded-User`, as it expects).
fn identity_response(status: StatusCode, identity: &Identity, app: Option<&App>) -> Response<Body> {
    let mut response = empty(status);
    let headers = response.headers_mut();
    let families = IdentityHeaders::families();
    let own = app.map(|app| &app.identity_headers);
    for (name, value) in families
        .values(identity)
        .chain(own.into_iter().flat_map(|h| h.values(identity)))
    {
        headers.insert(name.clone(), value);
    }
    response
}

fn empty(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A refusal in the caller's conventions. nginx only passes 401 and 403 on, so for it every
/// refusal that is not about signing in becomes 403 (5xx stay 5xx: they are our fault).
fn refusal(flavor: Flavor, failure: &Failure) -> Response<Body> {
    let mut response = respond::failure(failure, false);
    if flavor == Flavor::AuthRequest {
        let status = response.status();
        if status.is_client_error() && status != StatusCode::UNAUTHORIZED {
            *response.status_mut() = StatusCode::FORBIDDEN;
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_rules_are_comma_separated_lists() {
        let query = CheckQuery {
            allowed_groups: Some("ops, ml".into()),
            allowed_email_domains: Some("example.com".into()),
            ..CheckQuery::default()
        };
        let policy = query.policy();
        assert_eq!(policy.groups, vec!["ops", "ml"]);
        assert_eq!(policy.email_domains, vec!["example.com"]);
        assert!(!CheckQuery::default().policy().is_set());
    }
}
