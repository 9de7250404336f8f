//! Apps compiled from their configuration, by the same pass that checks them: regexes, methods,
//! header names and upstream URLs are parsed once, here, so what `check-config` accepted is
//! exactly what the route table runs, and building the route table cannot fail.

use std::collections::{BTreeMap, BTreeSet};

use http::{HeaderName, Method};
use regex::Regex;

use super::validate::{is_header_token, validate_headers};
use super::*;
use crate::identity::IdentityField;
use crate::path;
use crate::policy::AccessPolicy;
use crate::profile::HeaderProfileConfig;

/// Where an app is reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Upstream {
    /// The built-in header-echo app.
    Whoami,
    Http(UpstreamUrl),
}

/// A skip-auth rule, ready to match.
#[derive(Clone, Debug)]
pub struct CompiledRule {
    /// Empty: every method.
    pub methods: Vec<Method>,
    /// Anchored as a whole at the start of the canonical path.
    pub path: Regex,
}

impl CompiledRule {
    pub fn matches(&self, method: &Method, canonical_path: &str) -> bool {
        (self.methods.is_empty() || self.methods.contains(method))
            && self.path.is_match(canonical_path)
    }
}

/// One app as the gateway runs it.
#[derive(Clone, Debug)]
pub struct CompiledApp {
    pub name: String,
    /// Lower case; `None`: any host.
    pub host: Option<String>,
    pub prefix: String,
    pub upstream: Upstream,
    /// The headers it receives, by canonical name, and the field each carries.
    pub identity_headers: Vec<(HeaderName, IdentityField)>,
    /// Its names for Portcullis's roles, where they differ.
    pub role_values: BTreeMap<String, String>,
    pub policy: AccessPolicy,
    pub skip_auth: Vec<CompiledRule>,
    pub timeouts: TimeoutConfig,
    pub strip_authorization: bool,
    /// Protocols a client may switch to, lower case.
    pub upgrades: Vec<String>,
    /// A session needs a second factor here.
    pub require_mfa: bool,
    /// An MCP server (`kind = "mcp"`): what its OAuth protected resource is.
    pub mcp: Option<McpResource>,
    /// The built-in whoami app standing in because no app is configured: it never claims the
    /// paths Portcullis shares with apps.
    pub implicit: bool,
}

/// An MCP app as an OAuth protected resource (RFC 9728).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct McpResource {
    /// The canonical resource URL tokens are issued for (`https://gw.example.com/mcp`).
    pub resource: String,
    /// Where its protected resource metadata is (`…/.well-known/oauth-protected-resource/mcp`).
    pub metadata_url: String,
    pub scopes: Vec<String>,
    /// Browser origins that may call it: its own, Portcullis's, and the configured ones, each
    /// `scheme://host[:port]` in lower case.
    pub origins: Vec<String>,
    pub tools: crate::tools::ToolPolicy,
}

impl McpResource {
    fn with_tools(mut self, tools: crate::tools::ToolPolicy) -> Self {
        self.tools = tools;
        self
    }

    /// The resource of an app at `prefix` on `host` (or Portcullis's own), reached through
    /// Portcullis at `public_url`.
    fn of(
        public_url: &str,
        host: Option<&str>,
        prefix: &str,
        (scopes, allowed_origins): (&[String], &[String]),
    ) -> Self {
        let (scheme, rest) = public_url
            .split_once("://")
            .unwrap_or(("https", public_url));
        let authority = rest.split('/').next().unwrap_or(rest);
        let authority = match host {
            // The app's own host, on Portcullis's port.
            Some(host) => match authority.rsplit_once(':') {
                Some((_, port)) if port.bytes().all(|b| b.is_ascii_digit()) => {
                    format!("{host}:{port}")
                }
                _ => host.to_owned(),
            },
            None => authority.to_owned(),
        };
        let path = prefix.trim_end_matches('/');
        let origin = format!("{scheme}://{authority}");
        let own = format!("{scheme}://{}", rest.split('/').next().unwrap_or(rest));
        let mut origins = vec![origin.to_ascii_lowercase(), own.to_ascii_lowercase()];
        origins.extend(
            allowed_origins
                .iter()
                .map(|o| o.trim_end_matches('/').to_ascii_lowercase()),
        );
        origins.dedup();
        McpResource {
            origins,
            resource: format!("{origin}{path}"),
            metadata_url: format!("{origin}/.well-known/oauth-protected-resource{path}"),
            tools: crate::tools::ToolPolicy::default(),
            scopes: if scopes.is_empty() {
                vec!["mcp".to_owned()]
            } else {
                scopes.to_vec()
            },
        }
    }
}

/// What the gateway's routes are built from.
#[derive(Clone, Debug)]
pub struct CompiledRoutes {
    pub apps: Vec<CompiledApp>,
    /// Headers proxies in front vouch for identity with (`[[trusted_identity]]`): a client's
    /// copy must never reach an app.
    pub outer_identity_headers: Vec<HeaderName>,
}

/// Everything the configuration compiles into.
#[derive(Clone, Debug)]
pub struct Compiled {
    pub routes: CompiledRoutes,
}

/// The apps of `config` (the built-in whoami app when there are none), checked and compiled;
/// each problem goes to `push` with the key that caused it.
pub(super) fn compile(config: &Config, push: &mut impl FnMut(String, String)) -> CompiledRoutes {
    let mut names = BTreeSet::new();
    let mut routes = BTreeSet::new();
    let mut apps = Vec::new();
    for (i, app) in config.apps.iter().enumerate() {
        let key = |field: &str| format!("apps[{i}].{field}");
        if app.name.trim().is_empty() {
            push(key("name"), "must not be empty".into());
        } else if !names.insert(app.name.clone()) {
            push(
                key("name"),
                format!("{:?} is used by two apps; names must be unique", app.name),
            );
        }
        let route = (
            app.host.clone().map(|h| h.to_ascii_lowercase()),
            app.path_prefix.trim_end_matches('/').to_owned(),
        );
        if !routes.insert(route) {
            push(
                key("path_prefix"),
                "another app already matches the same host and path prefix".into(),
            );
        }
        if let Some(compiled) = compile_app(app, config, &key, push) {
            apps.push(compiled);
        }
    }
    if config.apps.is_empty() {
        apps.push(whoami_app(config));
    }
    CompiledRoutes {
        apps,
        outer_identity_headers: outer_identity_headers(config),
    }
}

/// The built-in whoami app at `/`, for a configuration without apps.
fn whoami_app(config: &Config) -> CompiledApp {
    CompiledApp {
        name: WHOAMI_UPSTREAM.into(),
        host: None,
        prefix: "/".into(),
        upstream: Upstream::Whoami,
        identity_headers: header_mappings(&HeaderProfileConfig::default()),
        role_values: BTreeMap::new(),
        policy: AccessPolicy::default(),
        skip_auth: Vec::new(),
        timeouts: TimeoutConfig::default(),
        strip_authorization: false,
        upgrades: vec!["websocket".into()],
        require_mfa: config.mfa.required,
        mcp: None,
        implicit: true,
    }
}

/// One app, or `None` when it has a problem (each one pushed).
fn compile_app(
    app: &AppConfig,
    config: &Config,
    key: &impl Fn(&str) -> String,
    push: &mut impl FnMut(String, String),
) -> Option<CompiledApp> {
    let mut ok = true;
    let mut fail = |k: String, message: String| {
        ok = false;
        push(k, message);
    };
    let upstream = if app.upstream == WHOAMI_UPSTREAM {
        Some(Upstream::Whoami)
    } else {
        parse_upstream(&app.upstream)
            .map_err(|e| fail(key("upstream"), e))
            .ok()
            .map(|mut url| {
                if let (UpstreamTransport::Tls(tls), Some(configured)) =
                    (&mut url.transport, &app.upstream_tls)
                {
                    *tls = configured.clone();
                }
                Upstream::Http(url)
            })
    };
    match path::canonicalize(&app.path_prefix) {
        Ok(canonical)
            if canonical.trim_end_matches('/') == app.path_prefix.trim_end_matches('/') =>
        {
            if RESERVED_PREFIXES
                .iter()
                .any(|r| path::has_prefix(&canonical, r))
            {
                fail(
                    key("path_prefix"),
                    format!("{canonical} is served by Portcullis itself"),
                );
            }
        }
        _ => fail(
            key("path_prefix"),
            format!(
                "{:?} must be a plain absolute path such as /chat",
                app.path_prefix
            ),
        ),
    }
    if let Some(host) = &app.host
        && (host.is_empty() || host.contains(['/', ' ', ':']))
    {
        fail(
            key("host"),
            format!("{host:?} must be a bare host name such as chat.example.com"),
        );
    }
    for role in &app.access.roles {
        if crate::Role::parse(role).is_none() {
            fail(
                key("access.roles"),
                format!("{role:?} is not a role (admin, user, pending)"),
            );
        }
    }
    validate_headers(&app.identity_headers, &key("identity_headers"), &mut fail);
    let skip_auth: Vec<CompiledRule> = app
        .skip_auth
        .iter()
        .enumerate()
        .filter_map(|(j, rule)| compile_rule(rule, &key(&format!("skip_auth[{j}]")), &mut fail))
        .collect();
    for protocol in &app.upgrades {
        if protocol.eq_ignore_ascii_case("h2c") {
            fail(
                key("upgrades"),
                "h2c cannot be allowed: requests inside an h2c tunnel would reach the app without any check".into(),
            );
        } else if !is_header_token(protocol) {
            fail(
                key("upgrades"),
                format!("{protocol:?} is not a protocol name such as websocket"),
            );
        }
    }
    if app.kind != AppKind::Mcp && !app.scopes.is_empty() {
        fail(
            key("scopes"),
            "only MCP apps (kind = \"mcp\") have token scopes".into(),
        );
    }
    if app.kind != AppKind::Mcp && (!app.tool_rules.is_empty() || app.audit_tool_arguments) {
        fail(
            key("tool_rules"),
            "only MCP apps (kind = \"mcp\") have tools".into(),
        );
    }
    for (i, rule) in app.tool_rules.iter().enumerate() {
        if let Err(problem) = crate::tools::check_rule(rule) {
            fail(format!("{}[{i}]", key("tool_rules")), problem);
        }
    }
    if app.kind != AppKind::Mcp && !app.allowed_origins.is_empty() {
        fail(
            key("allowed_origins"),
            "only MCP apps (kind = \"mcp\") check Origin; other apps decide for themselves".into(),
        );
    }
    for origin in &app.allowed_origins {
        let rest = origin
            .strip_prefix("https://")
            .or_else(|| origin.strip_prefix("http://"));
        if rest.is_none_or(|r| r.is_empty() || r.trim_end_matches('/').contains('/')) {
            fail(
                key("allowed_origins"),
                format!(
                    "{origin:?} is not an origin such as \"http://localhost:6274\" (scheme, host and port, no path)"
                ),
            );
        }
    }
    for scope in &app.scopes {
        if scope.is_empty()
            || !scope
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
        {
            fail(
                key("scopes"),
                format!("{scope:?} is not a scope (printable characters, no spaces or quotes)"),
            );
        }
    }
    let t = &app.timeouts;
    if t.connect.is_zero() || t.response_header.is_zero() || t.idle.is_zero() {
        fail(key("timeouts"), "timeouts must be longer than zero".into());
    }
    let upstream = upstream?;
    ok.then(|| CompiledApp {
        name: app.name.clone(),
        host: app.host.as_ref().map(|h| h.to_ascii_lowercase()),
        prefix: app.path_prefix.clone(),
        upstream,
        identity_headers: header_mappings(&app.identity_headers),
        role_values: app.identity_headers.role_values.clone(),
        policy: app.access.clone(),
        skip_auth,
        timeouts: app.timeouts.clone(),
        strip_authorization: app.strip_authorization,
        upgrades: app
            .upgrades
            .iter()
            .map(|p| p.to_ascii_lowercase())
            .collect(),
        require_mfa: app.require_mfa.unwrap_or(config.mfa.required),
        mcp: (app.kind == AppKind::Mcp).then(|| {
            McpResource::of(
                &config.public_url(),
                app.host.as_deref(),
                &app.path_prefix,
                (&app.scopes, &app.allowed_origins),
            )
            .with_tools(crate::tools::ToolPolicy {
                rules: app.tool_rules.clone(),
                audit_arguments: app.audit_tool_arguments,
            })
        }),
        implicit: false,
    })
}

fn compile_rule(
    rule: &SkipAuthRule,
    key: &str,
    fail: &mut impl FnMut(String, String),
) -> Option<CompiledRule> {
    let mut methods = Vec::new();
    let mut ok = true;
    for method in &rule.methods {
        match Method::from_bytes(method.as_bytes()) {
            Ok(m) if !method.is_empty() && method.bytes().all(|b| b.is_ascii_uppercase()) => {
                methods.push(m);
            }
            _ => {
                ok = false;
                fail(
                    format!("{key}.methods"),
                    format!("{method:?} must be an upper-case HTTP method"),
                );
            }
        }
    }
    if !rule.path.starts_with('^') {
        fail(
            format!("{key}.path"),
            format!(
                "{:?} must start with ^ so it cannot match in the middle of a path",
                rule.path
            ),
        );
        return None;
    }
    // Anchored as a whole: `^/public|/admin` must not match `/x/admin`.
    match Regex::new(&format!("^(?:{})", rule.path)) {
        Ok(path) => ok.then_some(CompiledRule { methods, path }),
        Err(e) => {
            fail(format!("{key}.path"), format!("invalid regex: {e}"));
            None
        }
    }
}

/// The profile's headers with canonical names (validation refused names that are not tokens).
fn header_mappings(profile: &HeaderProfileConfig) -> Vec<(HeaderName, IdentityField)> {
    profile
        .mappings()
        .into_iter()
        .filter_map(|(name, field)| {
            HeaderName::from_bytes(name.as_bytes())
                .ok()
                .map(|n| (n, field))
        })
        .collect()
}

/// The headers proxies in front use to vouch for identity.
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
