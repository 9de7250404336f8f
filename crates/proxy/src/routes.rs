//! The route table: which app a request belongs to, compiled once from the configuration.

use std::net::SocketAddr;
use std::sync::Arc;

use http::{HeaderName, HeaderValue, Method};
use portcullis_core::config::{
    AppConfig, Config, TimeoutConfig, TrustedIdentityKind, WHOAMI_UPSTREAM, parse_upstream,
};
use portcullis_core::path::has_prefix;
use portcullis_core::policy::AccessPolicy;
use portcullis_core::profile::{HeaderProfileConfig, headers_to_strip};
use regex::Regex;

use crate::hop::DropList;
use crate::identity_headers::IdentityHeaders;
use crate::metrics::AppMetrics;
use crate::upstream;

pub struct SkipAuthRule {
    methods: Vec<Method>,
    path: Regex,
}

impl SkipAuthRule {
    pub fn matches(&self, method: &Method, canonical_path: &str) -> bool {
        (self.methods.is_empty() || self.methods.contains(method))
            && self.path.is_match(canonical_path)
    }
}

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
    pub skip_auth: Vec<SkipAuthRule>,
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

/// A configuration the route table cannot be built from (validation should have caught it).
#[derive(Debug, thiserror::Error)]
#[error("app {app}: {message}")]
pub struct RouteError {
    pub app: String,
    pub message: String,
}

fn default_app() -> AppConfig {
    AppConfig {
        name: WHOAMI_UPSTREAM.into(),
        host: None,
        path_prefix: "/".into(),
        upstream: WHOAMI_UPSTREAM.into(),
        identity_headers: HeaderProfileConfig::default(),
        access: AccessPolicy::default(),
        skip_auth: Vec::new(),
        timeouts: TimeoutConfig::default(),
        strip_authorization: false,
        upgrades: vec!["websocket".into()],
    }
}

impl RouteTable {
    /// Compiles the apps of a validated configuration. With no apps configured, everything goes to
    /// the built-in whoami app at `whoami_addr`.
    pub fn build(config: &Config, whoami_addr: Option<SocketAddr>) -> Result<Self, RouteError> {
        let configured = if config.apps.is_empty() {
            vec![default_app()]
        } else {
            config.apps.clone()
        };
        let identity: Vec<HeaderName> =
            headers_to_strip(configured.iter().map(|a| &a.identity_headers))
                .into_iter()
                .filter_map(|name| HeaderName::from_bytes(name.as_bytes()).ok())
                .collect();
        let forwarding = FORWARDING_HEADERS
            .iter()
            .map(|n| HeaderName::from_static(n));
        let request_drop = DropList::hop_by_hop()
            .with(identity)
            .with(forwarding)
            .with(outer_identity_headers(config));
        let implicit = config.apps.is_empty();
        let mut apps = configured
            .iter()
            .map(|cfg| {
                compile(cfg, whoami_addr, &request_drop).map(|mut app| {
                    app.implicit = implicit;
                    Arc::new(app)
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        apps.sort_by_key(|app| (app.host.is_none(), std::cmp::Reverse(app.prefix.len())));
        Ok(RouteTable { apps })
    }

    pub fn route(&self, host: &str, canonical_path: &str) -> Option<Arc<App>> {
        self.apps
            .iter()
            .find(|app| app.matches(host, canonical_path))
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

/// The headers proxies in front use to vouch for identity: the app gets Portcullis's own identity
/// headers instead, and a client's forged copy never reaches it.
fn outer_identity_headers(config: &Config) -> Vec<HeaderName> {
    config
        .trusted_identity
        .iter()
        .flat_map(|t| {
            let own: &[&str] = match t.kind {
                TrustedIdentityKind::Header => &[],
                TrustedIdentityKind::AwsAlb => &[
                    "x-amzn-oidc-data",
                    "x-amzn-oidc-identity",
                    "x-amzn-oidc-accesstoken",
                ],
                TrustedIdentityKind::CloudflareAccess => &[
                    "cf-access-jwt-assertion",
                    "cf-access-authenticated-user-email",
                ],
                TrustedIdentityKind::GoogleIap => &[
                    "x-goog-iap-jwt-assertion",
                    "x-goog-authenticated-user-email",
                    "x-goog-authenticated-user-id",
                ],
            };
            own.iter()
                .map(|n| (*n).to_owned())
                .chain(
                    [
                        &t.user_header,
                        &t.email_header,
                        &t.name_header,
                        &t.groups_header,
                    ]
                    .into_iter()
                    .flatten()
                    .cloned(),
                )
                .collect::<Vec<_>>()
        })
        .filter_map(|name| HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()).ok())
        .collect()
}

fn compile(
    cfg: &AppConfig,
    whoami_addr: Option<SocketAddr>,
    request_drop: &DropList,
) -> Result<App, RouteError> {
    let fail = |message: String| RouteError {
        app: cfg.name.clone(),
        message,
    };
    let (authority, base_path) = if cfg.upstream == WHOAMI_UPSTREAM {
        let addr =
            whoami_addr.ok_or_else(|| fail("the built-in whoami app is not running".into()))?;
        (addr.to_string(), String::new())
    } else {
        let url = parse_upstream(&cfg.upstream).map_err(fail)?;
        (url.authority, url.base_path)
    };
    let host_header =
        HeaderValue::from_str(&authority).map_err(|e| fail(format!("upstream host: {e}")))?;
    let identity_headers = cfg
        .identity_headers
        .mappings()
        .into_iter()
        .map(|(name, field)| {
            HeaderName::from_bytes(name.as_bytes())
                .map(|n| (n, field))
                .map_err(|e| fail(format!("header {name}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let skip_auth = cfg
        .skip_auth
        .iter()
        .map(|rule| {
            // Anchored as a whole: `^/public|/admin` must not match `/x/admin`.
            let path = Regex::new(&format!("^(?:{})", rule.path))
                .map_err(|e| fail(format!("skip_auth {}: {e}", rule.path)))?;
            let methods = rule
                .methods
                .iter()
                .map(|m| {
                    Method::from_bytes(m.as_bytes()).map_err(|e| fail(format!("method {m}: {e}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(SkipAuthRule { methods, path })
        })
        .collect::<Result<Vec<_>, RouteError>>()?;
    let upstream = upstream::Pool::new(&authority, cfg.timeouts.connect);
    Ok(App {
        implicit: false,
        name: cfg.name.clone(),
        host: cfg.host.as_ref().map(|h| h.to_ascii_lowercase()),
        prefix: cfg.path_prefix.clone(),
        authority,
        host_header,
        base_path,
        identity_headers: IdentityHeaders::new(
            identity_headers,
            cfg.identity_headers.role_values.clone(),
        ),
        policy: cfg.access.clone(),
        skip_auth,
        upgrades: cfg
            .upgrades
            .iter()
            .map(|p| p.to_ascii_lowercase())
            .collect(),
        timeouts: cfg.timeouts.clone(),
        request_drop: if cfg.strip_authorization {
            request_drop.clone().with([http::header::AUTHORIZATION])
        } else {
            request_drop.clone()
        },
        response_drop: DropList::hop_by_hop(),
        upstream,
        metrics: AppMetrics::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(toml_text: &str) -> RouteTable {
        let config: Config = toml::from_str(toml_text).unwrap();
        assert!(config.validate().is_empty(), "{:?}", config.validate());
        RouteTable::build(&config, Some("127.0.0.1:9".parse().unwrap())).unwrap()
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
