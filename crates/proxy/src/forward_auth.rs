//! Forward-auth: the `route → authenticate → authorize` phases for a request that another proxy
//! (nginx `auth_request`, Caddy `forward_auth`, Traefik `forwardAuth`) is about to serve itself.
//!
//! The proxy describes the original request in headers (`X-Original-URL`/`X-Original-Method`, or
//! `X-Forwarded-Method/Proto/Host/Uri`). Those are believed only from a configured trusted proxy:
//! anyone else could claim to be asking about a public path while reading a private one.

use axum::body::Body;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode};
use portcullis_core::identity::IdentityField;
use portcullis_core::policy::AccessPolicy;
use portcullis_core::{Failure, FailureKind, Identity};
use std::net::SocketAddr;

use crate::context::{RequestContext, Target};
use crate::gateway::Gateway;
use crate::phases::{self, Stop};
use crate::respond;

/// Which caller's conventions the answer follows.
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

/// Extra requirements a caller may add in the query (oauth2-proxy's parameters), on top of the
/// app's own policy. Comma-separated lists.
#[derive(Debug, Default, serde::Deserialize)]
pub struct ExtraPolicy {
    #[serde(default)]
    pub allowed_groups: Option<String>,
    #[serde(default)]
    pub allowed_emails: Option<String>,
    #[serde(default)]
    pub allowed_email_domains: Option<String>,
}

impl ExtraPolicy {
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
}

/// Headers a proxy uses to describe the original request.
const ORIGINAL_HEADERS: &[&str] = &[
    "x-original-url",
    "x-original-method",
    "x-forwarded-method",
    "x-forwarded-uri",
];

/// Reads the original request from a trusted proxy's headers; `Ok(None)` when none were sent.
fn original_target(headers: &HeaderMap, peer_trusted: bool) -> Result<Option<Target>, Failure> {
    if !ORIGINAL_HEADERS.iter().any(|h| headers.contains_key(*h)) {
        return Ok(None);
    }
    if !peer_trusted {
        return Err(Failure::new(
            FailureKind::Forbidden,
            "This forward-auth request describes its original URL, but it does not come from a \
             trusted proxy, so the description is not believed.",
        )
        .with_hint("add the proxy's address to trusted_proxies in portcullis.toml"));
    }
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let bad = |what: &str| {
        Failure::bad_request(format!("the forward-auth header {what} is not valid"))
            .with_hint("check the proxy's forward-auth configuration against docs/forward-auth.md")
    };
    let method = match text("x-original-method").or_else(|| text("x-forwarded-method")) {
        Some(m) => {
            Method::from_bytes(m.trim().as_bytes()).map_err(|_| bad("X-Forwarded-Method"))?
        }
        None => Method::GET,
    };
    if let Some(url) = text("x-original-url") {
        let uri: http::Uri = url.trim().parse().map_err(|_| bad("X-Original-URL"))?;
        let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
            return Err(bad("X-Original-URL (it must be an absolute URL)"));
        };
        return Ok(Some(Target {
            method,
            path: uri.path().to_owned(),
            query: uri.query().map(str::to_owned),
            host: Some(authority.to_string()),
            https: scheme.eq_ignore_ascii_case("https"),
        }));
    }
    let uri: http::Uri = text("x-forwarded-uri")
        .unwrap_or("/")
        .trim()
        .parse()
        .map_err(|_| bad("X-Forwarded-Uri"))?;
    if uri.scheme().is_some() || !uri.path().starts_with('/') {
        return Err(bad("X-Forwarded-Uri (it must be a path)"));
    }
    Ok(Some(Target {
        method,
        path: uri.path().to_owned(),
        query: uri.query().map(str::to_owned),
        host: text("x-forwarded-host").map(|h| h.trim().to_owned()),
        https: text("x-forwarded-proto").is_some_and(|p| p.trim().eq_ignore_ascii_case("https")),
    }))
}

/// Where nginx finds the sign-in URL of a 401 (`$upstream_http_x_portcullis_sign_in`).
const SIGN_IN_HEADER: HeaderName = HeaderName::from_static("x-portcullis-sign-in");

/// Every header family an app behind forward-auth may read, oauth2-proxy's names first.
const IDENTITY_FAMILIES: &[(&str, IdentityField)] = &[
    ("x-auth-request-user", IdentityField::Username),
    ("x-auth-request-email", IdentityField::Email),
    ("x-auth-request-preferred-username", IdentityField::Username),
    ("x-auth-request-groups", IdentityField::Groups),
    ("x-forwarded-user", IdentityField::Username),
    ("x-forwarded-email", IdentityField::Email),
    ("x-forwarded-preferred-username", IdentityField::Username),
    ("x-forwarded-groups", IdentityField::Groups),
    ("remote-user", IdentityField::Username),
    ("remote-email", IdentityField::Email),
    ("remote-name", IdentityField::Name),
    ("remote-groups", IdentityField::Groups),
];

/// Where to send someone who must sign in: the sign-in page on Portcullis's public URL, with the
/// original URL to come back to.
fn sign_in_url(public_url: &str, ctx: &RequestContext) -> String {
    let back = format!("{}://{}{}", ctx.scheme, ctx.host_with_port, ctx.return_to());
    format!(
        "{}{}",
        public_url.trim_end_matches('/'),
        respond::sign_in_location(&back)
    )
}

impl Gateway {
    /// Answers a forward-auth request. `public_url` is where browsers reach Portcullis.
    pub async fn check(
        &self,
        headers: &HeaderMap,
        peer: SocketAddr,
        flavor: Flavor,
        extra: &ExtraPolicy,
        public_url: &str,
    ) -> Response<Body> {
        let client = self.trusted.client_facts(peer, headers);
        let target = match original_target(headers, client.peer_trusted) {
            Ok(Some(target)) => target,
            Ok(None) if flavor == Flavor::OAuth2Proxy => {
                return self.check_session_only(headers, extra).await;
            }
            Ok(None) => {
                let failure = Failure::bad_request(
                    "this forward-auth request does not say which URL it is for",
                )
                .with_hint("send X-Forwarded-Method/Proto/Host/Uri or X-Original-URL (see docs/forward-auth.md)");
                return refusal(flavor, &failure);
            }
            Err(failure) => return refusal(flavor, &failure),
        };
        let mut ctx = match RequestContext::describe(target, client, headers) {
            Ok(ctx) => ctx,
            Err(failure) => return refusal(flavor, &failure),
        };
        let outcome = self.decide(&mut ctx, headers, extra).await;
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
            Err(Stop::SignIn) => {
                let location = sign_in_url(public_url, &ctx);
                match flavor {
                    Flavor::ForwardAuth if ctx.browser => {
                        respond::redirect(StatusCode::FOUND, &location)
                    }
                    Flavor::ForwardAuth | Flavor::OAuth2Proxy => {
                        respond::sign_in_required_at(&ctx.method, &location, false)
                    }
                    Flavor::AuthRequest => {
                        let mut response =
                            respond::sign_in_required_at(&ctx.method, &location, false);
                        // `Location` for configurations written for Authelia; our own header
                        // for ours, because nginx's default `proxy_redirect` rewrites a
                        // `Location` that starts with the `proxy_pass` URL.
                        if let Ok(value) = HeaderValue::from_str(&location) {
                            let headers = response.headers_mut();
                            headers.insert(header::LOCATION, value.clone());
                            headers.insert(SIGN_IN_HEADER, value);
                        }
                        response
                    }
                }
            }
            Err(Stop::Fail(failure)) => refusal(flavor, &failure),
        }
    }

    async fn decide(
        &self,
        ctx: &mut RequestContext,
        headers: &HeaderMap,
        extra: &ExtraPolicy,
    ) -> Result<(), Stop> {
        phases::route(&self.routes, ctx)?;
        phases::authenticate(
            &self.sessions,
            &self.keys,
            self.external.as_deref(),
            ctx,
            headers,
        )
        .await?;
        phases::authorize(ctx)?;
        if let Some(identity) = &ctx.identity {
            extra_allows(extra, identity)?;
        }
        Ok(())
    }

    /// oauth2-proxy's bare `/oauth2/auth`: is there a session, and does it pass the query's rules?
    async fn check_session_only(&self, headers: &HeaderMap, extra: &ExtraPolicy) -> Response<Body> {
        for value in crate::cookies::values(headers, crate::cookies::SESSION_COOKIE) {
            match self.sessions.resolve(value).await {
                Ok(Some(session)) => {
                    return match extra_allows(extra, &session.identity) {
                        Ok(()) => identity_response(StatusCode::ACCEPTED, &session.identity, None),
                        Err(Stop::Fail(failure)) => refusal(Flavor::OAuth2Proxy, &failure),
                        Err(Stop::SignIn) => empty(StatusCode::UNAUTHORIZED),
                    };
                }
                Ok(None) => {}
                Err(e) => return refusal(Flavor::OAuth2Proxy, &Failure::from(e)),
            }
        }
        empty(StatusCode::UNAUTHORIZED)
    }
}

fn extra_allows(extra: &ExtraPolicy, identity: &Identity) -> Result<(), Stop> {
    extra.policy().evaluate(identity).map_err(|denial| {
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
    match &ctx.identity {
        Some(identity) => identity_response(status, identity, ctx.app.as_deref()),
        // A skip-auth route: allowed, and nobody to describe.
        None => empty(status),
    }
}

/// The identity in every header family, then the app's own profile (which wins where a name is
/// shared: an `openwebui` app gets the display name in `X-Forwarded-User`, as it expects).
fn identity_response(
    status: StatusCode,
    identity: &Identity,
    app: Option<&crate::App>,
) -> Response<Body> {
    let mut response = empty(status);
    let headers = response.headers_mut();
    for (name, field) in IDENTITY_FAMILIES {
        insert(
            headers,
            HeaderName::from_static(name),
            identity.field(*field),
        );
    }
    if let Some(app) = app {
        for (name, field) in &app.identity_headers {
            insert(headers, name.clone(), app.header_value(identity, *field));
        }
    }
    response
}

/// Never an empty header: an absent value is left out.
fn insert(headers: &mut HeaderMap, name: HeaderName, value: Option<String>) {
    if let Some(value) = value.filter(|v| !v.is_empty())
        && let Ok(value) = HeaderValue::from_str(&value)
    {
        headers.insert(name, value);
    }
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

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn the_original_request_is_believed_only_from_a_trusted_proxy() {
        let h = headers(&[
            ("x-forwarded-uri", "/admin"),
            ("x-forwarded-host", "app.example.com"),
        ]);
        let refused = original_target(&h, false).unwrap_err();
        assert_eq!(refused.kind, FailureKind::Forbidden);
        assert!(refused.message.contains("trusted proxy"));
        let target = original_target(&h, true).unwrap().unwrap();
        assert_eq!(target.path, "/admin");
        assert_eq!(target.host.as_deref(), Some("app.example.com"));
        assert!(original_target(&HeaderMap::new(), false).unwrap().is_none());
    }

    #[test]
    fn nginx_and_caddy_descriptions_are_read() {
        let nginx = headers(&[
            ("x-original-url", "https://app.example.com:8443/a/b?c=d"),
            ("x-original-method", "POST"),
        ]);
        let t = original_target(&nginx, true).unwrap().unwrap();
        assert_eq!(
            (
                t.method,
                t.path.as_str(),
                t.query.as_deref(),
                t.host.as_deref(),
                t.https
            ),
            (
                Method::POST,
                "/a/b",
                Some("c=d"),
                Some("app.example.com:8443"),
                true
            )
        );
        let caddy = headers(&[
            ("x-forwarded-method", "GET"),
            ("x-forwarded-uri", "/x/../y?z=1"),
            ("x-forwarded-proto", "http"),
            ("x-forwarded-host", "app.example.com"),
        ]);
        let t = original_target(&caddy, true).unwrap().unwrap();
        assert_eq!((t.path.as_str(), t.https), ("/x/../y", false));
        for bad in [
            ("x-original-url", "/relative"),
            ("x-forwarded-uri", "https://evil.example/"),
            ("x-forwarded-method", "GE T"),
        ] {
            assert!(original_target(&headers(&[bad]), true).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn query_rules_are_comma_separated_lists() {
        let extra = ExtraPolicy {
            allowed_groups: Some("ops, ml".into()),
            allowed_emails: None,
            allowed_email_domains: Some("example.com".into()),
        };
        let policy = extra.policy();
        assert_eq!(policy.groups, vec!["ops", "ml"]);
        assert_eq!(policy.email_domains, vec!["example.com"]);
        assert!(!ExtraPolicy::default().policy().is_set());
    }
}
