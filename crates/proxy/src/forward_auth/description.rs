//! How a proxy in front describes the request it is about to serve, read per flavour.
//!
//! Each proxy sets (and overwrites) its own family of headers and passes every other header the
//! client sent through unchanged. So each endpoint reads **only** the family its proxy writes:
//!
//! - nginx `auth_request` (`/.portcullis/authz/auth-request`): `X-Original-URL` and
//!   `X-Original-Method`, which the documented block sets with `proxy_set_header`. A client's
//!   `X-Forwarded-Uri` reaches this endpoint untouched and is ignored.
//! - Caddy `forward_auth`, Traefik `forwardAuth` (`/.portcullis/authz/forward-auth`) and
//!   oauth2-proxy's `/oauth2/auth`: `X-Forwarded-Method`, `-Proto`, `-Host`, `-Uri`, which
//!   Caddy and Traefik overwrite on every request. A client's `X-Original-URL` is ignored.
//!
//! Reading the other family as a fallback was the bypass: through Caddy, a client's
//! `X-Original-URL: /public/x` described a request for `/echo`.

use http::{HeaderMap, Method};
use portcullis_core::{Failure, FailureKind};

use super::Flavor;
use crate::context::Target;

/// Headers whose presence means "this request describes another one". From a peer that is not a
/// trusted proxy, any of them gets the request refused, whichever flavour would read it.
const DESCRIBING: &[&str] = &[
    "x-original-url",
    "x-original-method",
    "x-forwarded-method",
    "x-forwarded-uri",
];

/// Reads the original request from a trusted proxy's headers, in `flavor`'s family only.
/// `Ok(None)` when the flavour's family describes nothing.
pub(super) fn described_target(
    flavor: Flavor,
    headers: &HeaderMap,
    peer_trusted: bool,
) -> Result<Option<Target>, Failure> {
    if !DESCRIBING.iter().any(|h| headers.contains_key(*h)) {
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
    match flavor {
        Flavor::AuthRequest => from_original_url(headers),
        Flavor::ForwardAuth => from_forwarded(headers, false),
        // oauth2-proxy reads the host from `Host` when `X-Forwarded-Host` is absent, and nginx
        // configurations written for it set `Host $host`.
        Flavor::OAuth2Proxy => from_forwarded(headers, true),
    }
}

/// The one value of a description header. Several copies are refused: a proxy sets one, so a
/// second can only come from the client.
fn single<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, Failure> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(bad(name, "it was sent more than once"));
    }
    first
        .to_str()
        .map(|v| Some(v.trim()))
        .map_err(|_| bad(name, "it is not plain text"))
}

fn bad(name: &str, why: &str) -> Failure {
    Failure::bad_request(format!(
        "the forward-auth header {name} is not valid: {why}"
    ))
    .with_hint("check the proxy's forward-auth configuration against docs/forward-auth.md")
}

fn method(headers: &HeaderMap, name: &str) -> Result<Method, Failure> {
    match single(headers, name)? {
        Some(m) => Method::from_bytes(m.as_bytes()).map_err(|_| bad(name, "not a method")),
        None => Ok(Method::GET),
    }
}

/// nginx: `X-Original-URL` (absolute) and `X-Original-Method`.
fn from_original_url(headers: &HeaderMap) -> Result<Option<Target>, Failure> {
    const URL: &str = "x-original-url";
    let Some(url) = single(headers, URL)? else {
        return Ok(None);
    };
    let uri: http::Uri = url.parse().map_err(|_| bad(URL, "not a URL"))?;
    let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
        return Err(bad(URL, "it must be an absolute URL"));
    };
    Ok(Some(Target {
        method: method(headers, "x-original-method")?,
        path: uri.path().to_owned(),
        query: uri.query().map(str::to_owned),
        host: Some(authority.to_string()),
        https: scheme.eq_ignore_ascii_case("https"),
    }))
}

/// Caddy, Traefik, oauth2-proxy: `X-Forwarded-Method/Proto/Host/Uri`.
fn from_forwarded(headers: &HeaderMap, host_fallback: bool) -> Result<Option<Target>, Failure> {
    const URI: &str = "x-forwarded-uri";
    let Some(text) = single(headers, URI)? else {
        return Ok(None);
    };
    let uri: http::Uri = text.parse().map_err(|_| bad(URI, "not a path"))?;
    if uri.scheme().is_some() || !uri.path().starts_with('/') {
        return Err(bad(URI, "it must be a path"));
    }
    let host = match single(headers, "x-forwarded-host")? {
        Some(host) => Some(host.to_owned()),
        None if host_fallback => single(headers, "host")?.map(str::to_owned),
        None => None,
    };
    let https = match single(headers, "x-forwarded-proto")? {
        None => false,
        Some(p) if p.eq_ignore_ascii_case("https") => true,
        Some(p) if p.eq_ignore_ascii_case("http") => false,
        Some(_) => return Err(bad("x-forwarded-proto", "neither http nor https")),
    };
    Ok(Some(Target {
        method: method(headers, "x-forwarded-method")?,
        path: uri.path().to_owned(),
        query: uri.query().map(str::to_owned),
        host,
        https,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderName;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn a_description_is_believed_only_from_a_trusted_proxy() {
        let h = headers(&[
            ("x-forwarded-uri", "/admin"),
            ("x-forwarded-host", "app.example.com"),
        ]);
        for flavor in [
            Flavor::ForwardAuth,
            Flavor::AuthRequest,
            Flavor::OAuth2Proxy,
        ] {
            let refused = described_target(flavor, &h, false).unwrap_err();
            assert_eq!(refused.kind, FailureKind::Forbidden);
            assert!(refused.message.contains("trusted proxy"));
            assert!(
                described_target(flavor, &HeaderMap::new(), false)
                    .unwrap()
                    .is_none()
            );
        }
        let target = described_target(Flavor::ForwardAuth, &h, true)
            .unwrap()
            .unwrap();
        assert_eq!(target.path, "/admin");
        assert_eq!(target.host.as_deref(), Some("app.example.com"));
    }

    #[test]
    fn nginx_reads_only_the_original_url() {
        let nginx = headers(&[
            ("x-original-url", "https://app.example.com:8443/a/b?c=d"),
            ("x-original-method", "POST"),
            // What a client sent through nginx untouched: ignored.
            ("x-forwarded-uri", "/public/x"),
            ("x-forwarded-method", "GET"),
            ("x-forwarded-host", "other.example.com"),
        ]);
        let t = described_target(Flavor::AuthRequest, &nginx, true)
            .unwrap()
            .unwrap();
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
        let only_forwarded = headers(&[("x-forwarded-uri", "/public/x")]);
        assert!(
            described_target(Flavor::AuthRequest, &only_forwarded, true)
                .unwrap()
                .is_none(),
            "nginx's endpoint never reads the X-Forwarded family"
        );
    }

    #[test]
    fn caddy_and_traefik_read_only_the_forwarded_family() {
        let caddy = headers(&[
            ("x-forwarded-method", "GET"),
            ("x-forwarded-uri", "/x/../y?z=1"),
            ("x-forwarded-proto", "http"),
            ("x-forwarded-host", "app.example.com"),
            // A client's copy, passed through by Caddy: ignored.
            ("x-original-url", "http://app.example.com/public/x"),
            ("x-original-method", "POST"),
        ]);
        let t = described_target(Flavor::ForwardAuth, &caddy, true)
            .unwrap()
            .unwrap();
        assert_eq!(
            (t.path.as_str(), t.method, t.https),
            ("/x/../y", Method::GET, false)
        );
        let only_original = headers(&[("x-original-url", "http://app.example.com/public/x")]);
        for flavor in [Flavor::ForwardAuth, Flavor::OAuth2Proxy] {
            assert!(
                described_target(flavor, &only_original, true)
                    .unwrap()
                    .is_none()
            );
        }
    }

    #[test]
    fn only_oauth2_proxy_falls_back_to_the_host_header() {
        let h = headers(&[("x-forwarded-uri", "/a"), ("host", "chat.example.com")]);
        let oauth2 = described_target(Flavor::OAuth2Proxy, &h, true)
            .unwrap()
            .unwrap();
        assert_eq!(oauth2.host.as_deref(), Some("chat.example.com"));
        let caddy = described_target(Flavor::ForwardAuth, &h, true)
            .unwrap()
            .unwrap();
        assert_eq!(caddy.host, None);
    }

    #[test]
    fn malformed_or_repeated_descriptions_are_refused() {
        for (flavor, bad) in [
            (Flavor::AuthRequest, vec![("x-original-url", "/relative")]),
            (
                Flavor::AuthRequest,
                vec![
                    ("x-original-url", "http://a.example/x"),
                    ("x-original-url", "http://b.example/y"),
                ],
            ),
            (
                Flavor::ForwardAuth,
                vec![("x-forwarded-uri", "https://evil.example/")],
            ),
            (
                Flavor::ForwardAuth,
                vec![("x-forwarded-uri", "/a"), ("x-forwarded-method", "GE T")],
            ),
            (
                Flavor::ForwardAuth,
                vec![("x-forwarded-uri", "/a"), ("x-forwarded-proto", "gopher")],
            ),
            (
                Flavor::ForwardAuth,
                vec![("x-forwarded-uri", "/a"), ("x-forwarded-uri", "/b")],
            ),
        ] {
            assert!(
                described_target(flavor, &headers(&bad), true).is_err(),
                "{bad:?}"
            );
        }
    }
}
