//! The per-request context every phase reads and fills in.

use std::net::SocketAddr;
use std::sync::Arc;

use http::{HeaderMap, Method, Request, header};
use portcullis_auth::principal::Principal;
use portcullis_core::path::canonicalize;
use portcullis_core::{Failure, Identity};

use crate::routes::App;
use portcullis_http::forwarded::{
    ClientFacts, TlsConnection, TrustedProxies, strip_port, valid_host,
};
use portcullis_http::respond::is_browser_navigation;

pub struct RequestContext {
    pub method: Method,
    /// The canonical path: matched on and forwarded.
    pub path: String,
    pub query: Option<String>,
    /// Lower-case host the client asked for, without port.
    pub host: String,
    /// `Host` as the client sent it (with port), for `X-Forwarded-Host`.
    pub host_with_port: String,
    pub scheme: &'static str,
    pub client: ClientFacts,
    pub browser: bool,
    /// The protocol the client asks to switch to (WebSocket…), captured before hop-by-hop headers
    /// are stripped.
    pub upgrade: Option<http::HeaderValue>,
    pub app: Option<Arc<App>>,
    /// Who the request is from, once authenticated; `None` on a skip-auth route.
    pub principal: Option<Principal>,
    /// The request's `Authorization` header carried a Portcullis key: it must not reach the app.
    pub own_token_in_authorization: bool,
    /// An `Origin` an MCP app allows: echoed in its CORS headers.
    pub cors_origin: Option<http::HeaderValue>,
}

fn host_of(headers: &HeaderMap, uri: &http::Uri) -> Option<String> {
    headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| uri.authority().map(|a| a.to_string()))
}

/// The request to decide on: the one we received, or the one a forward-auth caller describes.
#[derive(Clone, Debug)]
pub struct Target {
    pub method: Method,
    /// The path as sent (canonicalised by [`RequestContext::describe`]).
    pub path: String,
    pub query: Option<String>,
    /// `Host` with port, if known.
    pub host: Option<String>,
    pub https: bool,
}

impl RequestContext {
    pub fn new<B>(
        req: &Request<B>,
        peer: SocketAddr,
        trusted: &TrustedProxies,
    ) -> Result<Self, Failure> {
        let headers = req.headers();
        let client = trusted.client_facts(peer, headers);
        let target = Target {
            method: req.method().clone(),
            path: req.uri().path().to_owned(),
            query: req.uri().query().map(str::to_owned),
            host: client.host.clone().or_else(|| host_of(headers, req.uri())),
            https: match client.scheme.as_deref() {
                Some(scheme) => scheme == "https",
                None => req.extensions().get::<TlsConnection>().is_some(),
            },
        };
        Self::describe(target, client, headers)
    }

    /// Checks and canonicalises a target into a fresh context.
    pub fn describe(
        target: Target,
        client: ClientFacts,
        headers: &HeaderMap,
    ) -> Result<Self, Failure> {
        let path = canonicalize(&target.path).map_err(|e| {
            Failure::bad_request(e.to_string())
                .with_hint("use a plain path without encoded slashes or '..' above the root")
        })?;
        let mut host_with_port = target.host.unwrap_or_default();
        if !host_with_port.is_empty() && !valid_host(&host_with_port) {
            return Err(Failure::bad_request(
                "the Host header is not a valid host name",
            ));
        }
        // `chat.example.com:443` over https is `chat.example.com`: one spelling per origin, so
        // return URLs and assertion audiences do not depend on how the port was written.
        let default_port = if target.https { ":443" } else { ":80" };
        if let Some(bare) = host_with_port.strip_suffix(default_port)
            && !bare.ends_with(':')
        {
            host_with_port.truncate(bare.len());
        }
        let host = strip_port(&host_with_port).to_ascii_lowercase();
        Ok(RequestContext {
            method: target.method,
            browser: is_browser_navigation(headers, &path),
            upgrade: crate::hop::requested_upgrade(headers),
            query: target.query,
            path,
            host,
            host_with_port,
            scheme: if target.https { "https" } else { "http" },
            client,
            app: None,
            principal: None,
            own_token_in_authorization: false,
            cors_origin: None,
        })
    }

    /// Path and query, for a return URL after sign-in.
    pub fn return_to(&self) -> String {
        match &self.query {
            Some(q) => format!("{}?{q}", self.path),
            None => self.path.clone(),
        }
    }

    /// Who the request is from, once authenticated.
    pub fn identity(&self) -> Option<&Arc<Identity>> {
        self.principal.as_ref().map(|p| &p.identity)
    }

    /// The origin the client addressed (`https://chat.example.com`): an assertion's audience.
    pub fn origin(&self) -> String {
        format!("{}://{}", self.scheme, self.host_with_port)
    }

    pub fn app_name(&self) -> &str {
        self.app.as_ref().map(|a| a.name.as_str()).unwrap_or("-")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_ports_are_not_part_of_the_origin() {
        let client = TrustedProxies::default()
            .client_facts("127.0.0.1:1".parse().unwrap(), &HeaderMap::new());
        let origin = |host: &str, https: bool| {
            let target = Target {
                method: Method::GET,
                path: "/".into(),
                query: None,
                host: Some(host.into()),
                https,
            };
            RequestContext::describe(target, client.clone(), &HeaderMap::new())
                .unwrap()
                .origin()
        };
        assert_eq!(
            origin("chat.example.com:443", true),
            "https://chat.example.com"
        );
        assert_eq!(
            origin("chat.example.com:80", false),
            "http://chat.example.com"
        );
        assert_eq!(
            origin("chat.example.com:80", true),
            "https://chat.example.com:80"
        );
        assert_eq!(origin("[::1]:443", true), "https://[::1]");
    }

    #[test]
    fn hosts_are_parsed_and_checked() {
        assert_eq!(strip_port("Chat.example.com:8443"), "Chat.example.com");
        assert_eq!(strip_port("[::1]:80"), "[::1]");
        assert!(valid_host("chat.example.com:8443"));
        assert!(!valid_host("evil.com/x"));
        assert!(!valid_host("a b"));
    }
}
