//! The configuration schema and its validation.
//!
//! Parsing (TOML + environment) happens in the binary; this module defines what a valid
//! configuration is. Unknown keys are rejected by serde; everything serde cannot check is checked
//! by [`Config::validate`], which reports every problem with the key that caused it.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use regex::Regex;
use serde::Deserialize;

use crate::claims::{ClaimMapping, Preset};
use crate::path;
use crate::policy::AccessPolicy;
use crate::profile::HeaderProfileConfig;
use crate::session::SessionPolicy;

mod external;
mod provisioning;
mod store;
pub use external::*;
pub use provisioning::*;
pub use store::*;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:4180";
/// The `upstream` value that selects the built-in header-echo app.
pub const WHOAMI_UPSTREAM: &str = "whoami";
/// Paths Portcullis always serves itself; apps cannot claim them.
pub const RESERVED_PREFIXES: &[&str] = &["/.portcullis", "/oauth2"];

/// Paths Portcullis serves unless a configured app matches the request: apps such as Open WebUI
/// and n8n have their own `/api/v1`. Portcullis's API is always at `/.portcullis/api/v1` too.
pub const SHARED_PREFIXES: &[&str] = &["/api/v1", "/scim/v2", "/.well-known"];

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The URL people use to reach Portcullis. Defaults to `http://` + `listen`.
    #[serde(default)]
    pub public_url: Option<String>,
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Addresses of proxies in front of Portcullis whose `X-Forwarded-*` headers are believed.
    #[serde(default)]
    pub trusted_proxies: Vec<IpNet>,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub cookie: CookieConfig,
    #[serde(default)]
    pub session: SessionConfig,
    #[serde(default)]
    pub local_auth: LocalAuthConfig,
    /// The signed identity assertion (`X-Portcullis-Assertion`) sent with each request.
    #[serde(default)]
    pub assertion: AssertionConfig,
    /// How long shutdown waits for in-flight requests (long streams included) before exiting.
    #[serde(default = "default_shutdown_grace", with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Client addresses allowed to read `/metrics` (default: loopback only).
    #[serde(default = "default_metrics_allowed")]
    pub metrics_allowed: Vec<IpNet>,
    /// Apps behind Portcullis. Without any, everything goes to the built-in `whoami` app.
    #[serde(default)]
    pub apps: Vec<AppConfig>,
    /// Hosts an absolute `rd=` after sign-in or sign-out may redirect to, e.g. `auth.example.com`
    /// for a Cognito logout URL. `.example.com` also allows its subdomains. Local paths, the
    /// apps' hosts and Portcullis's own host are always allowed.
    #[serde(default)]
    pub allowed_redirect_hosts: Vec<String>,
    /// Identity providers people can sign in through (OpenID Connect, or GitHub's OAuth).
    #[serde(default)]
    pub providers: Vec<ProviderConfig>,
    /// Identity established by a proxy in front of Portcullis (AWS ALB, Cloudflare Access, Google
    /// IAP, or a plain header from Tailscale or an existing oauth2-proxy).
    #[serde(default)]
    pub trusted_identity: Vec<TrustedIdentityConfig>,
    /// JWTs from other identity systems accepted as `Authorization: Bearer` (verified locally).
    #[serde(default)]
    pub bearer_tokens: Vec<BearerIssuerConfig>,
    /// PocketBase auth tokens accepted as `Authorization: Bearer` (verified by introspection).
    #[serde(default)]
    pub pocketbase: Vec<PocketBaseConfig>,
    /// Where directory changes are delivered (Open WebUI, webhooks).
    #[serde(default)]
    pub sinks: Vec<SinkConfig>,
    #[serde(default)]
    pub provisioning: ProvisioningConfig,
    /// The SCIM server for Entra ID and Okta; off unless a token is set.
    #[serde(default)]
    pub scim: Option<ScimConfig>,
    /// Sign-in against an LDAP directory, through the same form as local accounts.
    #[serde(default)]
    pub ldap: Option<LdapConfig>,
    /// Where the directory lives: SQLite in `data_dir` (default) or PostgreSQL.
    #[serde(default)]
    pub store: StoreConfig,
    /// Key (32 bytes, base64url) that encrypts provider tokens kept server-side. Unset: a key is
    /// generated on first start and kept in `data_dir/token.key`.
    #[serde(default)]
    pub token_key: Option<String>,
}

/// JWS algorithms an ID token may be signed with. `none` and HMAC (`HS*`, whose key is the
/// client secret) are never accepted.
pub const SUPPORTED_ID_TOKEN_ALGORITHMS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// Short name used in URLs and logs (`/.portcullis/start/<id>`): letters, digits, `-`, `_`.
    pub id: String,
    /// Label of the sign-in button. Default: the id.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub preset: Preset,
    /// The OpenID issuer; discovery is read from `<issuer>/.well-known/openid-configuration`.
    /// Not used by GitHub.
    #[serde(default)]
    pub issuer: Option<String>,
    pub client_id: String,
    pub client_secret: String,
    /// Default: `openid email profile` (GitHub: `read:user user:email`).
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    /// Which claim feeds which field; unset fields come from the preset.
    #[serde(default)]
    pub claims: ClaimMapping,
    /// Accept an email the provider does not mark verified. Default: false (Entra: true, since it
    /// never sends `email_verified` and its addresses are administered).
    #[serde(default)]
    pub allow_unverified_email: Option<bool>,
    /// Link a first sign-in through this provider to an existing user with the same verified email.
    #[serde(default)]
    pub link_by_email: bool,
    /// Members of any of these groups (from the provider's claims) get the admin role; when set,
    /// everyone else signing in through this provider gets the user role.
    #[serde(default)]
    pub admin_groups: Vec<String>,
    #[serde(default = "default_algorithms")]
    pub allowed_algorithms: Vec<String>,
    /// Endpoint overrides, for GitHub Enterprise or tests. OIDC providers use discovery.
    #[serde(default)]
    pub endpoints: EndpointOverrides,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointOverrides {
    pub authorization: Option<String>,
    pub token: Option<String>,
    pub userinfo: Option<String>,
    /// GitHub: the list of the user's addresses (`/user/emails`).
    pub emails: Option<String>,
}

impl ProviderConfig {
    pub fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.id)
    }

    pub fn mapping(&self) -> ClaimMapping {
        self.claims.over(&self.preset.defaults())
    }

    pub fn trusts_unverified_email(&self) -> bool {
        self.allow_unverified_email
            .unwrap_or(self.preset == Preset::Entra)
    }

    pub fn scopes(&self) -> Vec<String> {
        match (&self.scopes, self.preset) {
            (Some(scopes), _) => scopes.clone(),
            (None, Preset::Github) => vec!["read:user".into(), "user:email".into()],
            (None, _) => vec!["openid".into(), "email".into(), "profile".into()],
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    #[serde(default)]
    pub format: LogFormat,
    /// A tracing filter such as `info` or `portcullis=debug,info`.
    #[serde(default = "default_log_level")]
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: default_log_level(),
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CookieConfig {
    /// `Secure` attribute. Unset: on, which browsers accept over https and on loopback http.
    /// Set `false` only for plain-http development on a non-loopback address.
    #[serde(default)]
    pub secure: Option<bool>,
    /// `Domain` of the session cookie, e.g. `example.com` so that forward-auth for
    /// `chat.example.com` sees a session made on `auth.example.com`. Unset: this host only.
    #[serde(default)]
    pub domain: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionConfig {
    #[serde(default = "default_idle", with = "humantime_serde")]
    pub idle_timeout: Duration,
    #[serde(default = "default_absolute", with = "humantime_serde")]
    pub absolute_timeout: Duration,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            idle_timeout: default_idle(),
            absolute_timeout: default_absolute(),
        }
    }
}

impl SessionConfig {
    pub fn policy(&self) -> SessionPolicy {
        SessionPolicy {
            idle: self.idle_timeout,
            absolute: self.absolute_timeout,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssertionConfig {
    /// Send an ES256 JWT of the identity in `X-Portcullis-Assertion` to every app (and in
    /// forward-auth answers). Apps that do not read it are unaffected.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// How long an assertion is valid: at least 10 s, at most 5 min.
    #[serde(default = "default_assertion_lifetime", with = "humantime_serde")]
    pub lifetime: Duration,
}

impl Default for AssertionConfig {
    fn default() -> Self {
        AssertionConfig {
            enabled: true,
            lifetime: default_assertion_lifetime(),
        }
    }
}

fn default_assertion_lifetime() -> Duration {
    Duration::from_secs(300)
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalAuthConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Argon2id hashing is deliberately expensive; this bounds how many run at once.
    #[serde(default = "default_hash_concurrency")]
    pub max_concurrent_hashes: usize,
    /// Failed attempts (per account and per client address) before back-off starts.
    #[serde(default = "default_free_attempts")]
    pub free_attempts: u32,
    /// First back-off; it doubles with every further failure up to `max_backoff`.
    #[serde(default = "default_base_backoff", with = "humantime_serde")]
    pub base_backoff: Duration,
    #[serde(default = "default_max_backoff", with = "humantime_serde")]
    pub max_backoff: Duration,
}

impl Default for LocalAuthConfig {
    fn default() -> Self {
        LocalAuthConfig {
            enabled: true,
            max_concurrent_hashes: default_hash_concurrency(),
            free_attempts: default_free_attempts(),
            base_backoff: default_base_backoff(),
            max_backoff: default_max_backoff(),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    pub name: String,
    /// Match on the `Host` header (port ignored, case-insensitive). Unset: any host.
    #[serde(default)]
    pub host: Option<String>,
    /// Match on a path prefix at a segment boundary. The longest matching prefix wins.
    #[serde(default = "default_prefix")]
    pub path_prefix: String,
    /// `http://host:port` of the app, or `whoami` for the built-in header-echo app.
    pub upstream: String,
    #[serde(default)]
    pub identity_headers: HeaderProfileConfig,
    #[serde(default)]
    pub access: AccessPolicy,
    #[serde(default)]
    pub skip_auth: Vec<SkipAuthRule>,
    #[serde(default)]
    pub timeouts: TimeoutConfig,
    /// Remove the client's `Authorization` header before forwarding. Off: apps such as Open WebUI
    /// use it for their own tokens.
    #[serde(default)]
    pub strip_authorization: bool,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SkipAuthRule {
    /// Methods this rule applies to; empty means all.
    #[serde(default)]
    pub methods: Vec<String>,
    /// A regex over the canonical path. It must start with `^` so it cannot match mid-path.
    pub path: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeoutConfig {
    #[serde(default = "default_connect", with = "humantime_serde")]
    pub connect: Duration,
    /// Time allowed for the upstream to send response headers (504 after it).
    #[serde(default = "default_response_header", with = "humantime_serde")]
    pub response_header: Duration,
    /// Time allowed between two body chunks in either direction. Not a total limit: a stream that
    /// keeps sending lives as long as it likes.
    #[serde(default = "default_idle_stream", with = "humantime_serde")]
    pub idle: Duration,
}

impl Default for TimeoutConfig {
    fn default() -> Self {
        TimeoutConfig {
            connect: default_connect(),
            response_header: default_response_header(),
            idle: default_idle_stream(),
        }
    }
}

fn yes() -> bool {
    true
}
fn default_algorithms() -> Vec<String> {
    vec![
        "RS256".into(),
        "ES256".into(),
        "PS256".into(),
        "EdDSA".into(),
    ]
}
fn default_metrics_allowed() -> Vec<IpNet> {
    ["127.0.0.0/8", "::1/128"]
        .iter()
        .filter_map(|n| n.parse().ok())
        .collect()
}
fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 4180))
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("./portcullis-data")
}
fn default_log_level() -> String {
    "info".into()
}
fn default_shutdown_grace() -> Duration {
    Duration::from_secs(30)
}
fn default_idle() -> Duration {
    Duration::from_secs(24 * 3600)
}
fn default_absolute() -> Duration {
    Duration::from_secs(7 * 24 * 3600)
}
fn default_hash_concurrency() -> usize {
    4
}
fn default_free_attempts() -> u32 {
    5
}
fn default_base_backoff() -> Duration {
    Duration::from_secs(1)
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(15 * 60)
}
fn default_prefix() -> String {
    "/".into()
}
fn default_connect() -> Duration {
    Duration::from_secs(5)
}
fn default_response_header() -> Duration {
    Duration::from_secs(300)
}
fn default_idle_stream() -> Duration {
    Duration::from_secs(300)
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: default_listen(),
            public_url: None,
            data_dir: default_data_dir(),
            trusted_proxies: Vec::new(),
            log: LogConfig::default(),
            cookie: CookieConfig::default(),
            session: SessionConfig::default(),
            local_auth: LocalAuthConfig::default(),
            assertion: AssertionConfig::default(),
            shutdown_grace: default_shutdown_grace(),
            metrics_allowed: default_metrics_allowed(),
            apps: Vec::new(),
            providers: Vec::new(),
            trusted_identity: Vec::new(),
            bearer_tokens: Vec::new(),
            pocketbase: Vec::new(),
            ldap: None,
            sinks: Vec::new(),
            provisioning: ProvisioningConfig::default(),
            scim: None,
            token_key: None,
            allowed_redirect_hosts: Vec::new(),
            store: StoreConfig::default(),
        }
    }
}

/// One problem in a configuration, tied to the key that caused it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigIssue {
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// A parsed `http://` upstream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamUrl {
    /// `host:port` as it goes into the `Host` header and the connection.
    pub authority: String,
    /// A path prefix the upstream expects (no trailing slash), often empty.
    pub base_path: String,
}

pub fn parse_upstream(s: &str) -> Result<UpstreamUrl, String> {
    let rest = s.strip_prefix("http://").ok_or_else(|| {
        if s.starts_with("https://") {
            "https upstreams are not supported yet; reach the app over http on a private network or loopback".to_owned()
        } else {
            format!("must be an http:// URL or \"{WHOAMI_UPSTREAM}\", got {s:?}")
        }
    })?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if authority.is_empty() || authority.contains('@') {
        return Err(format!(
            "{s:?} has no usable host (credentials in URLs are not allowed)"
        ));
    }
    if path.contains('?') || path.contains('#') {
        return Err(format!("{s:?} must not have a query or fragment"));
    }
    Ok(UpstreamUrl {
        authority: authority.to_owned(),
        base_path: path.trim_end_matches('/').to_owned(),
    })
}

fn is_loopback_url(url: &str) -> bool {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let host = rest.split(['/', '?']).next().unwrap_or("");
    let host = if host.starts_with('[') {
        host.split(']')
            .next()
            .map(|h| h.trim_start_matches('['))
            .unwrap_or("")
    } else {
        host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host)
    };
    host == "localhost" || host == "::1" || host.starts_with("127.")
}

fn is_header_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Headers an identity profile must never overwrite: they mean something else to every app.
const PROTECTED_HEADERS: &[&str] = &[
    "authorization",
    "cookie",
    "host",
    "connection",
    "content-length",
    "content-type",
    "transfer-encoding",
    "upgrade",
    "te",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
];

impl Config {
    /// The public URL, derived from `listen` when not configured.
    pub fn public_url(&self) -> String {
        match &self.public_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("http://{}", self.listen),
        }
    }

    /// Every host a return URL may point at: the configured ones, each app's host, our own.
    pub fn redirect_hosts(&self) -> Vec<String> {
        let own = self.public_url();
        let own_host = own
            .split_once("://")
            .map(|(_, rest)| rest.split(['/', ':']).next().unwrap_or_default().to_owned());
        self.allowed_redirect_hosts
            .iter()
            .cloned()
            .chain(self.apps.iter().filter_map(|a| a.host.clone()))
            .chain(own_host)
            .collect()
    }

    pub fn cookie_secure(&self) -> bool {
        self.cookie.secure.unwrap_or(true)
    }

    /// Every problem in the configuration; empty when it is valid.
    pub fn validate(&self) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        let mut push = |key: String, message: String| issues.push(ConfigIssue { key, message });

        let public_url = self.public_url();
        if !(public_url.starts_with("http://") || public_url.starts_with("https://")) {
            push(
                "public_url".into(),
                format!("must start with http:// or https://, got {public_url:?}"),
            );
        }
        if self.cookie_secure()
            && public_url.starts_with("http://")
            && !is_loopback_url(&public_url)
        {
            push(
                "cookie.secure".into(),
                format!(
                    "public_url {public_url} is plain http on a non-loopback host, so browsers would drop the Secure session cookie; \
                     serve Portcullis over https, or set cookie.secure = false for plain-http development only"
                ),
            );
        }
        if let Some(domain) = &self.cookie.domain {
            let own_host = public_url
                .split_once("://")
                .map(|(_, rest)| {
                    rest.split(['/', ':'])
                        .next()
                        .unwrap_or_default()
                        .to_ascii_lowercase()
                })
                .unwrap_or_default();
            let domain_lc = domain.trim_start_matches('.').to_ascii_lowercase();
            let plain = !domain_lc.is_empty()
                && domain_lc
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
            if !plain {
                push(
                    "cookie.domain".into(),
                    format!("{domain:?} is not a domain name such as example.com"),
                );
            } else if own_host != domain_lc && !own_host.ends_with(&format!(".{domain_lc}")) {
                push(
                    "cookie.domain".into(),
                    format!(
                        "public_url's host {own_host} is not inside {domain_lc}, so browsers would refuse the session cookie; \
                         use a parent domain of {own_host}"
                    ),
                );
            }
        }
        let lifetime = self.assertion.lifetime;
        if lifetime < Duration::from_secs(10) || lifetime > Duration::from_secs(300) {
            push(
                "assertion.lifetime".into(),
                format!(
                    "{} s is outside 10s..5m: assertions are short-lived by design (every request carries a fresh one)",
                    lifetime.as_secs()
                ),
            );
        }
        for (i, net) in self.trusted_proxies.iter().enumerate() {
            if net.prefix_len() == 0 {
                push(
                    format!("trusted_proxies[{i}]"),
                    format!(
                        "{net} trusts every address, so anyone could spoof X-Forwarded-* headers; list your proxies' addresses"
                    ),
                );
            }
        }
        if self.session.idle_timeout.is_zero() || self.session.absolute_timeout.is_zero() {
            push(
                "session".into(),
                "idle_timeout and absolute_timeout must be longer than zero".into(),
            );
        }
        if self.local_auth.max_concurrent_hashes == 0 {
            push(
                "local_auth.max_concurrent_hashes".into(),
                "must be at least 1".into(),
            );
        }
        if tracing_filter_is_suspicious(&self.log.level) {
            push(
                "log.level".into(),
                format!(
                    "{:?} is not a valid log filter (try \"info\" or \"debug\")",
                    self.log.level
                ),
            );
        }

        validate_providers(&self.providers, &mut push);

        let mut names = std::collections::BTreeSet::new();
        let mut routes = std::collections::BTreeSet::new();
        for (i, app) in self.apps.iter().enumerate() {
            let key = |field: &str| format!("apps[{i}].{field}");
            if app.name.trim().is_empty() {
                push(key("name"), "must not be empty".into());
            } else if !names.insert(app.name.clone()) {
                push(
                    key("name"),
                    format!("{:?} is used by two apps; names must be unique", app.name),
                );
            }
            if app.upstream != WHOAMI_UPSTREAM
                && let Err(e) = parse_upstream(&app.upstream)
            {
                push(key("upstream"), e);
            }
            match path::canonicalize(&app.path_prefix) {
                Ok(canonical)
                    if canonical.trim_end_matches('/') == app.path_prefix.trim_end_matches('/') =>
                {
                    if RESERVED_PREFIXES
                        .iter()
                        .any(|r| path::has_prefix(&canonical, r))
                    {
                        push(
                            key("path_prefix"),
                            format!("{canonical} is served by Portcullis itself"),
                        );
                    }
                }
                _ => push(
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
                push(
                    key("host"),
                    format!("{host:?} must be a bare host name such as chat.example.com"),
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
            for role in &app.access.roles {
                if crate::Role::parse(role).is_none() {
                    push(
                        key("access.roles"),
                        format!("{role:?} is not a role (admin, user, pending)"),
                    );
                }
            }
            validate_headers(&app.identity_headers, &key("identity_headers"), &mut push);
            for (j, rule) in app.skip_auth.iter().enumerate() {
                let rule_key = key(&format!("skip_auth[{j}].path"));
                if !rule.path.starts_with('^') {
                    push(
                        rule_key,
                        format!(
                            "{:?} must start with ^ so it cannot match in the middle of a path",
                            rule.path
                        ),
                    );
                } else if let Err(e) = Regex::new(&rule.path) {
                    push(rule_key, format!("invalid regex: {e}"));
                }
                for method in &rule.methods {
                    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
                        push(
                            key(&format!("skip_auth[{j}].methods")),
                            format!("{method:?} must be an upper-case HTTP method"),
                        );
                    }
                }
            }
            let t = &app.timeouts;
            if t.connect.is_zero() || t.response_header.is_zero() || t.idle.is_zero() {
                push(key("timeouts"), "timeouts must be longer than zero".into());
            }
        }
        external::validate(self, &mut push);
        provisioning::validate(self, &mut push);
        store::validate(self, &mut push);
        issues
    }
}

/// Whether `host` (lower case) is one of `allowed`: an exact name, or `.example.com` for that
/// domain and its subdomains (the semantics of `allowed_redirect_hosts`).
pub fn host_allowed(host: &str, allowed: &[String]) -> bool {
    allowed.iter().any(|entry| {
        let entry = entry.to_ascii_lowercase();
        match entry.strip_prefix('.') {
            Some(suffix) => host == suffix || host.ends_with(&format!(".{suffix}")),
            None => host == entry,
        }
    })
}

/// Plain http is allowed for loopback issuers only (local development and tests).
pub(crate) fn is_secure_or_local(url: &str) -> bool {
    url.starts_with("https://") || (url.starts_with("http://") && is_loopback_url(url))
}

fn validate_providers(providers: &[ProviderConfig], push: &mut impl FnMut(String, String)) {
    let mut ids = std::collections::BTreeSet::new();
    for (i, p) in providers.iter().enumerate() {
        let key = |field: &str| format!("providers[{i}].{field}");
        if p.id.is_empty()
            || !p
                .id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            push(
                key("id"),
                format!("{:?} must be letters, digits, '-' or '_'", p.id),
            );
        } else if !ids.insert(p.id.clone()) {
            push(key("id"), format!("{:?} is used by two providers", p.id));
        }
        if p.client_id.is_empty() {
            push(key("client_id"), "must not be empty".into());
        }
        if p.client_secret.is_empty() {
            push(key("client_secret"), "must not be empty".into());
        }
        match (&p.issuer, p.preset) {
            (None, Preset::Github) => {}
            (None, _) => push(
                key("issuer"),
                "is required (the provider's OpenID issuer URL)".into(),
            ),
            (Some(issuer), _) if !is_secure_or_local(issuer) => push(
                key("issuer"),
                format!("{issuer:?} must be an https:// URL (plain http only on loopback)"),
            ),
            _ => {}
        }
        let e = &p.endpoints;
        for (name, url) in [
            ("authorization", &e.authorization),
            ("token", &e.token),
            ("userinfo", &e.userinfo),
            ("emails", &e.emails),
        ] {
            if let Some(url) = url
                && !is_secure_or_local(url)
            {
                push(
                    key(&format!("endpoints.{name}")),
                    format!("{url:?} must be an https:// URL"),
                );
            }
        }
        if p.allowed_algorithms.is_empty() {
            push(
                key("allowed_algorithms"),
                "must list at least one algorithm".into(),
            );
        }
        for alg in &p.allowed_algorithms {
            if !SUPPORTED_ID_TOKEN_ALGORITHMS.contains(&alg.as_str()) {
                push(
                    key("allowed_algorithms"),
                    format!(
                        "{alg:?} is not accepted; choose from {}",
                        SUPPORTED_ID_TOKEN_ALGORITHMS.join(", ")
                    ),
                );
            }
        }
    }
}

fn validate_headers(cfg: &HeaderProfileConfig, key: &str, push: &mut impl FnMut(String, String)) {
    for (role, value) in &cfg.role_values {
        let k = format!("{key}.role_values.{role}");
        if crate::Role::parse(role).is_none() {
            push(k, format!("{role:?} is not a role (admin, user, pending)"));
        } else if value.trim().is_empty() || value.chars().any(char::is_control) {
            push(
                k,
                "must be a non-empty value without control characters".into(),
            );
        }
    }
    let named = cfg
        .custom
        .keys()
        .map(|k| (format!("{key}.custom.{k}"), k.as_str()));
    let role = cfg
        .role_header
        .iter()
        .map(|r| (format!("{key}.role_header"), r.as_str()));
    for (k, name) in named.chain(role) {
        if !is_header_token(name) {
            push(k, format!("{name:?} is not a valid header name"));
        } else if PROTECTED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            push(
                k,
                format!("{name} means something else to the app; choose another header name"),
            );
        }
    }
}

/// Catches obviously broken filters; the binary parses the filter for real at start-up.
fn tracing_filter_is_suspicious(level: &str) -> bool {
    level.trim().is_empty() || level.contains(char::is_whitespace)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> Result<Config, String> {
        toml::from_str(toml_text).map_err(|e| e.to_string())
    }

    fn issues(toml_text: &str) -> Vec<String> {
        match parse(toml_text) {
            Ok(cfg) => cfg.validate().into_iter().map(|i| i.to_string()).collect(),
            Err(e) => vec![e],
        }
    }

    #[test]
    fn empty_config_is_valid_with_defaults() {
        let cfg = parse("").unwrap_or_default();
        assert_eq!(cfg.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(cfg.public_url(), "http://127.0.0.1:4180");
        assert!(cfg.validate().is_empty());
        assert!(cfg.cookie_secure());
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = parse("lisen = \"1.2.3.4:5\"").err().unwrap_or_default();
        assert!(err.contains("lisen"), "{err}");
        let err = parse("[[apps]]\nname='a'\nupstream='whoami'\nupsteam='x'")
            .err()
            .unwrap_or_default();
        assert!(err.contains("upsteam"), "{err}");
    }

    #[test]
    fn plain_http_public_url_needs_an_explicit_insecure_cookie() {
        let found = issues("public_url = 'http://gw.example.com'");
        assert!(
            found.iter().any(|i| i.starts_with("cookie.secure:")),
            "{found:?}"
        );
        assert!(
            issues("public_url = 'http://gw.example.com'\n[cookie]\nsecure = false").is_empty()
        );
        assert!(issues("public_url = 'https://gw.example.com'").is_empty());
    }

    #[test]
    fn app_problems_name_the_key() {
        let found = issues(
            "[[apps]]\nname = 'a'\nupstream = 'ftp://x'\npath_prefix = '/x/../y'\n\
             skip_auth = [{ path = '/public' }, { path = '^(' }]\n\
             identity_headers = { custom = { Authorization = 'email' }, role_values = { root = 'Admin' } }\n\
             access = { roles = ['root'] }",
        );
        for key in [
            "apps[0].upstream",
            "apps[0].path_prefix",
            "apps[0].skip_auth[0].path",
            "apps[0].skip_auth[1].path",
            "apps[0].identity_headers.custom.Authorization",
            "apps[0].identity_headers.role_values.root",
            "apps[0].access.roles",
        ] {
            assert!(
                found.iter().any(|i| i.starts_with(key)),
                "{key} missing from {found:?}"
            );
        }
    }

    #[test]
    fn reserved_prefixes_and_duplicates_are_refused() {
        let found = issues(
            "[[apps]]\nname='a'\nupstream='whoami'\npath_prefix='/oauth2'\n\
             [[apps]]\nname='a'\nupstream='whoami'\npath_prefix='/oauth2/'",
        );
        assert!(
            found.iter().any(|i| i.contains("served by Portcullis")),
            "{found:?}"
        );
        assert!(
            found.iter().any(|i| i.contains("used by two apps")),
            "{found:?}"
        );
        assert!(
            found
                .iter()
                .any(|i| i.contains("same host and path prefix")),
            "{found:?}"
        );
    }

    #[test]
    fn provider_problems_name_the_key() {
        let found = issues(
            "[[providers]]\nid = 'a b'\nclient_id = ''\nclient_secret = 's'\nissuer = 'http://idp.example.com'\n\
             allowed_algorithms = ['none', 'HS256']\n\
             [[providers]]\nid = 'gh'\npreset = 'github'\nclient_id = 'c'\nclient_secret = 's'\n\
             [[providers]]\nid = 'x'\nclient_id = 'c'\nclient_secret = 's'\n",
        );
        for key in [
            "providers[0].id",
            "providers[0].client_id",
            "providers[0].issuer",
            "providers[0].allowed_algorithms",
            "providers[2].issuer",
        ] {
            assert!(
                found.iter().any(|i| i.starts_with(key)),
                "{key} missing from {found:?}"
            );
        }
        assert!(
            !found.iter().any(|i| i.starts_with("providers[1]")),
            "{found:?}"
        );
        assert_eq!(
            found
                .iter()
                .filter(|i| i.contains("is not accepted"))
                .count(),
            2
        );
    }

    #[test]
    fn the_cookie_domain_must_contain_portcullis_itself() {
        let ok =
            issues("public_url = 'https://auth.example.com'\n[cookie]\ndomain = 'example.com'");
        assert!(ok.is_empty(), "{ok:?}");
        for bad in ["other.org", "example.com; Secure", ""] {
            let found = issues(&format!(
                "public_url = 'https://auth.example.com'\n[cookie]\ndomain = '{bad}'"
            ));
            assert!(
                found.iter().any(|i| i.starts_with("cookie.domain")),
                "{bad}: {found:?}"
            );
        }
    }

    #[test]
    fn trusting_everyone_is_refused() {
        let found = issues("trusted_proxies = ['0.0.0.0/0']");
        assert!(
            found.iter().any(|i| i.starts_with("trusted_proxies[0]")),
            "{found:?}"
        );
    }

    #[test]
    fn upstream_urls_parse() {
        assert_eq!(
            parse_upstream("http://127.0.0.1:8080/base/"),
            Ok(UpstreamUrl {
                authority: "127.0.0.1:8080".into(),
                base_path: "/base".into()
            })
        );
        assert!(parse_upstream("http://user:pw@host").is_err());
        assert!(parse_upstream("https://host").is_err());
    }
}
