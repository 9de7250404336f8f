//! The route table: which app a request belongs to, compiled once from the configuration.

use std::net::SocketAddr;
use std::sync::Arc;

use http::{HeaderName, HeaderValue, Method};
use portcullis_auth::principal::Surface;
use portcullis_core::config::McpResource;
use portcullis_core::config::{CompiledApp, CompiledRoutes, CompiledRule, TimeoutConfig, Upstream};
use portcullis_core::path::has_prefix;
use portcullis_core::policy::AccessPolicy;
use portcullis_core::profile::KNOWN_IDENTITY_HEADERS;

use crate::hop::DropList;
use crate::identity_headers::IdentityHeaders;
use crate::metrics::AppMetrics;
use crate::upstream;

/// One app behind the gateway, ready to serve.
pub struct App {
    pub name: String,
    /// The built-in whoami app that stands in when no app is configured: it never claims the
    /// paths Portcullis shares with apps.
    pub implicit: bool,
    host: Option<String>,
    prefix: String,
    pub authority: String,
    pub host_header: HeaderValue,
    pub base_path: String,
    /// The identity headers this app receives (its profile, custom names, role vocabulary).
    pub identity_headers: IdentityHeaders,
    pub policy: AccessPolicy,
    /// Sessions need a second factor here (`require_mfa`).
    pub require_mfa: bool,
    /// An MCP server: bearer tokens only, and a `401` that says where to get one.
    pub mcp: Option<McpResource>,
    pub skip_auth: Vec<CompiledRule>,
    /// Protocols a client may switch to, lower case (`websocket` unless configured).
    upgrades: Vec<String>,
    pub timeouts: TimeoutConfig,
    /// What to remove from requests: hop-by-hop, every identity header any app can receive,
    /// client forwarding claims, and `Authorization` when the app asks for it.
    pub request_drop: DropList,
    /// What to remove from responses: hop-by-hop headers.
    pub response_drop: DropList,
    /// Connections to the app, kept by the worker that owns this route table.
    pub upstream: upstream::Pool,
    pub metrics: AppMetrics,
}

impl App {
    /// Where this app's requests are authenticated: an MCP server takes bearer credentials
    /// only. Every path to an app (the built-in proxy, each forward-auth endpoint) asks this.
    pub fn surface(&self) -> Surface<'_> {
        if self.mcp.is_some() {
            Surface::Mcp(&self.name)
        } else {
            Surface::App(&self.name)
        }
    }

    /// The host this app is matched on, if any.
    pub fn host(&self) -> Option<&str> {
        self.host.as_deref()
    }

    /// Whether a client may switch this app's connection to `protocol` (case-insensitive).
    pub fn accepts_upgrade(&self, protocol: &str) -> bool {
        self.upgrades
            .iter()
            .any(|p| p.eq_ignore_ascii_case(protocol))
    }

    pub fn skips_auth(&self, method: &Method, canonical_path: &str) -> bool {
        self.skip_auth
            .iter()
            .any(|rule| rule.matches(method, canonical_path))
    }

    fn matches(&self, host: &str, path: &str) -> bool {
        self.host.as_deref().is_none_or(|h| h == host) && has_prefix(path, &self.prefix)
    }
}

pub struct RouteTable {
    /// Host-specific apps first, then longer prefixes first: the first match wins.
    apps: Vec<Arc<App>>,
}

/// Forwarding claims a client may not make; Portcullis sets its own.
const FORWARDING_HEADERS: &[&str] = &[
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-forwarded-uri",
    "x-forwarded-method",
    "x-original-url",
    "x-original-method",
    "x-real-ip",
    // Portcullis's own credential: checked here, never passed on.
    "x-api-key",
];

impl RouteTable {
    /// The route table of a compiled configuration; `whoami` is where the built-in whoami app
    /// listens, for apps whose upstream is `whoami` (without it, such an app answers 502).
    /// Cannot fail: the configuration's compilation parsed everything there was to parse.
    pub fn build(compiled: &CompiledRoutes, whoami: Option<SocketAddr>) -> Self {
        let identity = KNOWN_IDENTITY_HEADERS
            .iter()
            .map(|n| HeaderName::from_static(n))
            .chain(
                compiled
                    .apps
                    .iter()
                    .flat_map(|app| app.identity_headers.iter().map(|(name, _)| name.clone())),
            );
        let forwarding = FORWARDING_HEADERS
            .iter()
            .map(|n| HeaderName::from_static(n));
        let request_drop = DropList::hop_by_hop()
            .with(identity)
            .with(forwarding)
            .with(compiled.outer_identity_headers.iter().cloned());
        let mut apps: Vec<Arc<App>> = compiled
            .apps
            .iter()
            .map(|app| Arc::new(App::new(app, whoami, &request_drop)))
            .collect();
        apps.sort_by_key(|app| (app.host.is_none(), std::cmp::Reverse(app.prefix.len())));
        RouteTable { apps }
    }

    pub fn route(&self, host: &str, canonical_path: &str) -> Option<Arc<App>> {
        self.apps
            .iter()
            .find(|app| app.matches(host, canonical_path))
            .cloned()
    }

    /// The MCP app whose protected resource metadata is asked for at `host` with the path
    /// suffix `path` (`/mcp` for `/.well-known/oauth-protected-resource/mcp`; empty for an app at
    /// `/`): the app mounted exactly there, on that host or any.
    pub fn mcp_app(&self, host: &str, path: &str) -> Option<Arc<App>> {
        let path = path.trim_end_matches('/');
        self.apps
            .iter()
            .filter(|app| app.mcp.is_some())
            .find(|app| {
                app.host.as_deref().is_none_or(|h| h == host)
                    && app.prefix.trim_end_matches('/') == path
            })
            .cloned()
    }

    /// Whether a configured app (not the implicit whoami stand-in) serves this host and path.
    pub fn claims(&self, host: &str, canonical_path: &str) -> bool {
        self.route(host, canonical_path)
            .is_some_and(|app| !app.implicit)
    }

    pub fn apps(&self) -> impl Iterator<Item = &Arc<App>> {
        self.apps.iter()
    }
}

impl App {
    fn new(app: &CompiledApp, whoami: Option<SocketAddr>, request_drop: &DropList) -> Self {
        let (authority, base_path, host_header) = match &app.upstream {
            Upstream::Whoami => {
                // Not running (an offline tool's table): port 9 (discard) refuses, so a request
                // gets a clear 502 rather than someone else's answer.
                let addr = whoami.unwrap_or(SocketAddr::from(([127, 0, 0, 1], 9)));
                let authority = addr.to_string();
                // An IP address and port: always a valid header value.
                let host = HeaderValue::from_str(&authority)
                    .unwrap_or_else(|_| HeaderValue::from_static("127.0.0.1"));
                (authority, String::new(), host)
            }
            Upstream::Http(url) => (
                url.authority.clone(),
                url.base_path.clone(),
                url.host_header.clone(),
            ),
        };
        App {
            implicit: app.implicit,
            name: app.name.clone(),
            host: app.host.clone(),
            prefix: app.prefix.clone(),
            upstream: upstream::Pool::new(
                &authority,
                upstream::transport(&app.upstream, &authority),
                app.timeouts.connect,
            ),
            authority,
            host_header,
            base_path,
            identity_headers: IdentityHeaders::new(
                app.identity_headers.clone(),
                app.role_values.clone(),
            ),
            policy: app.policy.clone(),
            require_mfa: app.require_mfa,
            mcp: app.mcp.clone(),
            skip_auth: app.skip_auth.clone(),
            upgrades: app.upgrades.clone(),
            timeouts: app.timeouts.clone(),
            request_drop: if app.strip_authorization {
                request_drop.clone().with([http::header::AUTHORIZATION])
            } else {
                request_drop.clone()
            },
            response_drop: DropList::hop_by_hop(),
            metrics: AppMetrics::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(toml_text: &str) -> RouteTable {
        let config: portcullis_core::config::Config = toml::from_str(toml_text).unwrap();
        let compiled = config.compile().unwrap();
        RouteTable::build(&compiled.routes, Some("127.0.0.1:9".parse().unwrap()))
    }

    #[tokio::test]
    async fn host_and_longest_prefix_win() {
        let t = table(
            "[[apps]]\nname='root'\nupstream='http://127.0.0.1:1'\n\
             [[apps]]\nname='chat'\nupstream='http://127.0.0.1:2'\npath_prefix='/chat'\n\
             [[apps]]\nname='host'\nupstream='http://127.0.0.1:3'\nhost='n8n.example.com'\n",
        );
        let name = |host: &str, path: &str| {
            t.route(host, path)
                .map(|a| a.name.clone())
                .unwrap_or_default()
        };
        assert_eq!(name("x", "/"), "root");
        assert_eq!(name("x", "/chat/a"), "chat");
        assert_eq!(name("x", "/chatter"), "root");
        assert_eq!(name("n8n.example.com", "/chat"), "host");
    }

    #[tokio::test]
    async fn no_apps_means_whoami_everywhere() {
        let t = table("");
        let app = t.route("anything", "/x").unwrap();
        assert_eq!(app.name, "whoami");
        assert_eq!(app.authority, "127.0.0.1:9");
        for dropped in [
            "x-forwarded-email",
            "remote-user",
            "x-forwarded-for",
            "connection",
        ] {
            assert!(
                app.request_drop.contains(&HeaderName::from_static(dropped)),
                "{dropped}"
            );
        }
        assert!(!app.request_drop.contains(&http::header::AUTHORIZATION));
    }

    #[tokio::test]
    async fn skip_auth_rules_match_method_and_anchored_path() {
        let t = table(
            "[[apps]]\nname='a'\nupstream='whoami'\nskip_auth=[{methods=['GET'], path='^/public/'}]\n",
        );
        let app = t.route("h", "/").unwrap();
        assert!(app.skips_auth(&Method::GET, "/public/x"));
        assert!(!app.skips_auth(&Method::POST, "/public/x"));
        assert!(!app.skips_auth(&Method::GET, "/admin/public/x"));
    }

    #[tokio::test]
    async fn client_copies_of_every_apps_identity_headers_are_removed_for_every_app() {
        let t = table(
            "[[apps]]\nname='a'\nupstream='whoami'\nidentity_headers={profile='custom', custom={'X-Team-Login'='username'}}\n\
             [[apps]]\nname='b'\nupstream='whoami'\npath_prefix='/b'\n",
        );
        let b = t.route("h", "/b").unwrap();
        for dropped in [
            "x-team-login",
            "remote-user",
            "x-auth-request-email",
            "x-forwarded-for",
        ] {
            assert!(
                b.request_drop.contains(&HeaderName::from_static(dropped)),
                "{dropped}"
            );
        }
    }

    #[tokio::test]
    async fn an_alternative_in_a_skip_auth_rule_is_anchored_too() {
        let t = table(
            "[[apps]]\nname='a'\nupstream='whoami'\nskip_auth=[{path='^/health$|/public/'}]\n",
        );
        let app = t.route("h", "/").unwrap();
        assert!(app.skips_auth(&Method::GET, "/health"));
        assert!(app.skips_auth(&Method::GET, "/public/x"));
        assert!(!app.skips_auth(&Method::GET, "/admin/public/x"));
        assert!(!app.skips_auth(&Method::GET, "/x/health"));
    }
}
