//! The configuration schema and its validation.
//!
//! Parsing (TOML + environment) happens in the binary; this module defines what a valid
//! configuration is. Unknown keys are rejected by serde; everything serde cannot check is checked
//! by [`Config::validate`], which reports every problem with the key that caused it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

use crate::claims::{ClaimMapping, Preset};
use crate::policy::AccessPolicy;
use crate::profile::HeaderProfileConfig;
use crate::session::SessionPolicy;

mod apps;
mod external;
mod oauth;
mod provisioning;
mod store;
mod tls;
mod validate;
pub use apps::{Compiled, CompiledApp, CompiledRoutes, CompiledRule, McpResource, Upstream};
pub use external::*;
pub use oauth::{
    OAuthClientConfig, OAuthConfig, check_redirect_uri, is_loopback_host, redirect_uri_matches,
};
pub use provisioning::*;
pub use store::*;
pub use tls::{
    AcmeChallenge, AcmeConfig, ExternalAccount, LETS_ENCRYPT, TlsConfig, UpstreamTlsConfig,
};
pub use validate::ConfigIssue;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:4180";
/// The `upstream` value that selects the built-in header-echo app.
pub const WHOAMI_UPSTREAM: &str = "whoami";
/// Paths Portcullis always serves itself; apps cannot claim them.
pub const RESERVED_PREFIXES: &[&str] = &["/.portcullis", "/oauth2"];

/// OAuth discovery documents (RFC 9728, RFC 8414): always Portcullis's, even where an app is
/// mounted at `/`, so MCP clients find the authorization server of every MCP app it guards.
pub const OAUTH_DISCOVERY_PREFIXES: &[&str] = &[
    "/.well-known/oauth-protected-resource",
    "/.well-known/oauth-authorization-server",
];

/// Where MCP clients of revision 2025-03-26 look for the authorization server when they find
/// no metadata: the MCP server's origin. Portcullis's unless a web app (not an MCP app, which
/// never serves them) claims them.
pub const OAUTH_FALLBACK_PATHS: &[&str] = &["/authorize", "/token", "/register"];

/// Paths Portcullis serves unless a configured app matches the request: apps such as Open WebUI
/// and n8n have their own `/api/v1`. Portcullis's API is always at `/.portcullis/api/v1` too.
pub const SHARED_PREFIXES: &[&str] = &["/api/v1", "/scim/v2", "/.well-known"];

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Listen with TLS (and HTTP/2) instead of plain HTTP.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
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
    /// Second factors (authenticator apps, recovery codes) and where they are required.
    #[serde(default)]
    pub mfa: MfaConfig,
    /// Where mail goes out (password reset links); unset: links are shown once instead.
    #[serde(default)]
    pub smtp: Option<SmtpConfig>,
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
    /// Portcullis as the OAuth authorization server of its MCP apps (docs/mcp.md).
    #[serde(default)]
    pub oauth: OAuthConfig,
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
    /// What signing out of a session made through this provider ends: `provider` (default) also
    /// ends the provider's session, so the next sign-in shows its login form again, then goes
    /// on to the sign-out's `rd`; `local` ends only Portcullis's session.
    #[serde(default)]
    pub sign_out: ProviderSignOut,
    /// A sign-in through this provider counts as multi-factor when its ID token's `amr` holds
    /// any of these values (e.g. `["mfa"]` for Entra, `["mfa", "otp", "hwk"]` for Keycloak).
    /// Unset, and without `mfa_acr`: it never does, and `require_mfa` apps ask for a
    /// Portcullis factor (step-up).
    #[serde(default)]
    pub mfa_amr: Vec<String>,
    /// The same for the ID token's `acr` (a value the provider only sends after a second
    /// factor, e.g. Keycloak's level-of-assurance names).
    #[serde(default)]
    pub mfa_acr: Vec<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderSignOut {
    #[default]
    Provider,
    Local,
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
    /// Argon2id hashing is deliberately expensive; this bounds how many run at once. Unset: half
    /// the machine's cores (at least one), so hashing never takes all of them.
    #[serde(default)]
    pub max_concurrent_hashes: Option<usize>,
    /// Sign-ins that may wait for a hashing slot (default: four per slot); beyond that they
    /// are refused at once with `503` and `Retry-After`.
    #[serde(default)]
    pub hash_queue: Option<usize>,
    /// How long a sign-in waits for a hashing slot before it is refused the same way.
    #[serde(default = "default_hash_queue_wait", with = "humantime_serde")]
    pub hash_queue_wait: Duration,
    /// The share of the machine's CPU that password hashing may use over time (0.1: a tenth of
    /// all cores); a burst of sign-ins after a quiet spell runs at full speed first. 1 turns
    /// the budget off, leaving only `max_concurrent_hashes`.
    #[serde(default = "default_hashing_cpu_share")]
    pub hashing_cpu_share: f64,
    /// How long a refused sign-in (throttled, or the queue full) is held before its answer: an
    /// attacker's connection then makes one attempt per delay instead of thousands a second,
    /// while a waiting answer costs no CPU.
    #[serde(default = "default_refusal_delay", with = "humantime_serde")]
    pub refusal_delay: Duration,
    /// Failed attempts (per account and per client address) before back-off starts.
    #[serde(default = "default_free_attempts")]
    pub free_attempts: u32,
    /// First back-off; it doubles with every further failure up to `max_backoff`.
    #[serde(default = "default_base_backoff", with = "humantime_serde")]
    pub base_backoff: Duration,
    #[serde(default = "default_max_backoff", with = "humantime_serde")]
    pub max_backoff: Duration,
    /// Shortest password accepted when one is chosen (8 at least).
    #[serde(default = "default_min_password_length")]
    pub min_password_length: usize,
    /// How long a password reset link works.
    #[serde(default = "default_reset_link_lifetime", with = "humantime_serde")]
    pub reset_link_lifetime: Duration,
}

fn default_min_password_length() -> usize {
    8
}

fn default_reset_link_lifetime() -> Duration {
    Duration::from_secs(3600)
}

impl Default for LocalAuthConfig {
    fn default() -> Self {
        LocalAuthConfig {
            enabled: true,
            max_concurrent_hashes: None,
            hash_queue: None,
            hash_queue_wait: default_hash_queue_wait(),
            hashing_cpu_share: default_hashing_cpu_share(),
            refusal_delay: default_refusal_delay(),
            free_attempts: default_free_attempts(),
            base_backoff: default_base_backoff(),
            max_backoff: default_max_backoff(),
            min_password_length: default_min_password_length(),
            reset_link_lifetime: default_reset_link_lifetime(),
        }
    }
}

/// An SMTP relay for mail Portcullis sends (password reset links).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    pub host: String,
    /// Default: 587 (`starttls`), 465 (`tls`), 25 (`none`).
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub security: SmtpSecurity,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// The sender, such as `Portcullis <auth@example.com>`.
    pub from: String,
    /// A PEM CA bundle the relay's certificate is checked against, besides the system's.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default = "default_smtp_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

/// How the connection to the relay is protected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    /// Plain connection upgraded with STARTTLS, which must succeed.
    #[default]
    Starttls,
    /// TLS from the first byte (SMTPS).
    Tls,
    /// No encryption: only for a relay on this host (links are as good as passwords).
    None,
}

impl SmtpConfig {
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(match self.security {
            SmtpSecurity::Starttls => 587,
            SmtpSecurity::Tls => 465,
            SmtpSecurity::None => 25,
        })
    }
}

fn default_smtp_timeout() -> Duration {
    Duration::from_secs(10)
}

/// Second factors.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MfaConfig {
    /// Every app (unless it sets `require_mfa = false`) and Portcullis's admin pages and API
    /// need a second factor in the session.
    #[serde(default)]
    pub required: bool,
    /// The name authenticator apps show above the account (the `issuer` of the `otpauth://`
    /// link).
    #[serde(default = "default_mfa_issuer")]
    pub issuer: String,
}

fn default_mfa_issuer() -> String {
    "Portcullis".into()
}

impl Default for MfaConfig {
    fn default() -> Self {
        MfaConfig {
            required: false,
            issuer: default_mfa_issuer(),
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
    /// `http://host:port` or `https://host:port` of the app, `unix:/run/app.sock` for one on
    /// this machine, or `whoami` for the built-in header-echo app.
    pub upstream: String,
    /// How an https upstream is verified (CA bundle, server name, client certificate).
    #[serde(default)]
    pub upstream_tls: Option<UpstreamTlsConfig>,
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
    /// Protocols a client may switch to (`Upgrade`) on this app's connections. Default: only
    /// `websocket`. `h2c` is never allowed: inside its tunnel requests would go unchecked.
    #[serde(default = "default_upgrades")]
    pub upgrades: Vec<String>,
    /// Sessions need a second factor for this app: a Portcullis factor, or a provider sign-in
    /// whose `amr`/`acr` says so. Unset: `mfa.required`. API keys are not sessions and are not
    /// asked (see docs/second-factors.md).
    #[serde(default)]
    pub require_mfa: Option<bool>,
    /// `web` (default): people in browsers, sent to sign in. `mcp`: an MCP server, reached by
    /// MCP clients with bearer tokens, answered `401` with where to get one (docs/mcp.md).
    #[serde(default)]
    pub kind: AppKind,
    /// The scopes an MCP app's tokens carry (default: `["mcp"]`); MCP apps only.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Browser origins (`http://localhost:6274`) besides the app's own and Portcullis's that may
    /// call an MCP app; a request with any other `Origin` is refused (DNS rebinding). MCP apps
    /// only.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Which `tools/call` each group may make (docs/mcp.md); none: every tool. MCP apps only.
    #[serde(default)]
    pub tool_rules: Vec<crate::tools::ToolRule>,
    /// Record each tool call's arguments in the audit trail too. MCP apps only.
    #[serde(default)]
    pub audit_tool_arguments: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AppKind {
    #[default]
    Web,
    Mcp,
}

fn default_upgrades() -> Vec<String> {
    vec!["websocket".into()]
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SkipAuthRule {
    /// Methods this rule applies to; empty means all.
    #[serde(default)]
    pub methods: Vec<String>,
    /// A regex over the canonical path (never the query). It must start with `^`, and it is
    /// matched from the start of the path even across `|` alternatives.
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
fn default_hashing_cpu_share() -> f64 {
    0.1
}

fn default_hash_queue_wait() -> Duration {
    Duration::from_secs(1)
}
fn default_refusal_delay() -> Duration {
    Duration::from_secs(1)
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
            tls: None,
            public_url: None,
            data_dir: default_data_dir(),
            trusted_proxies: Vec::new(),
            log: LogConfig::default(),
            cookie: CookieConfig::default(),
            session: SessionConfig::default(),
            local_auth: LocalAuthConfig::default(),
            mfa: MfaConfig::default(),
            smtp: None,
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
            oauth: OAuthConfig::default(),
        }
    }
}

/// How the connection to an app is made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UpstreamTransport {
    Tcp,
    /// TLS over TCP, verified as configured.
    Tls(UpstreamTlsConfig),
    /// A Unix socket on this machine.
    Unix(PathBuf),
}

/// A parsed `http://`, `https://` or `unix:` upstream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamUrl {
    pub transport: UpstreamTransport,
    /// `host:port` as it goes into the `Host` header and the connection (`localhost` for a
    /// Unix socket); the port is the scheme's default when the URL has none.
    pub authority: String,
    /// The same, ready to send as `Host`.
    pub host_header: http::HeaderValue,
    /// A path prefix the upstream expects (no trailing slash), often empty.
    pub base_path: String,
}

pub fn parse_upstream(s: &str) -> Result<UpstreamUrl, String> {
    if let Some(path) = s.strip_prefix("unix:") {
        if !path.starts_with('/') || path.len() < 2 {
            return Err(format!(
                "{s:?} must name a socket by its absolute path: unix:/run/app.sock"
            ));
        }
        return Ok(UpstreamUrl {
            transport: UpstreamTransport::Unix(PathBuf::from(path)),
            authority: "localhost".into(),
            host_header: http::HeaderValue::from_static("localhost"),
            base_path: String::new(),
        });
    }
    let (transport, default_port, rest) = if let Some(rest) = s.strip_prefix("http://") {
        (UpstreamTransport::Tcp, 80, rest)
    } else if let Some(rest) = s.strip_prefix("https://") {
        (
            UpstreamTransport::Tls(UpstreamTlsConfig::default()),
            443,
            rest,
        )
    } else {
        return Err(format!(
            "must be an http:// or https:// URL, unix:/path/to.sock or \"{WHOAMI_UPSTREAM}\", got {s:?}"
        ));
    };
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
    let host_header = http::HeaderValue::from_str(authority)
        .map_err(|_| format!("{s:?} has a host that cannot be sent in a Host header"))?;
    let has_port = matches!(authority.rsplit_once(':'), Some((_, port)) if !port.contains(']'));
    Ok(UpstreamUrl {
        transport,
        host_header,
        authority: if has_port {
            authority.to_owned()
        } else {
            format!("{authority}:{default_port}")
        },
        base_path: path.trim_end_matches('/').to_owned(),
    })
}

/// Whether a URL's host is this machine: `localhost`, or an IP literal in 127.0.0.0/8 or `::1`.
/// Decided on the parsed host only: `127.evil.example` is a name anyone can point anywhere, and
/// `http://127.0.0.1@evil.example/` is a URL for `evil.example`.
fn is_loopback_url(url: &str) -> bool {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match host_port.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or(""),
        None => host_port.rsplit_once(':').map_or(host_port, |(h, _)| h),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl Config {
    /// The public URL, derived from `listen` when not configured.
    pub fn public_url(&self) -> String {
        match &self.public_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None if self.tls.is_some() => format!("https://{}", self.listen),
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

#[cfg(test)]
mod tests {
    #[test]
    fn loopback_is_decided_on_the_parsed_host() {
        for yes in [
            "http://127.0.0.1:4180",
            "http://127.5.6.7/x",
            "http://localhost:3000",
            "http://LOCALHOST",
            "http://[::1]:8080/",
        ] {
            assert!(is_loopback_url(yes), "{yes}");
        }
        for no in [
            "http://127.evil.example",
            "http://127.0.0.1.evil.example/",
            "http://127.0.0.1@evil.example/",
            "http://localhost.evil.example",
            "http://[::2]/",
            "http://10.0.0.1",
        ] {
            assert!(!is_loopback_url(no), "{no}");
        }
    }

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
    fn mcp_apps_become_protected_resources() {
        let cfg = parse(
            "public_url = 'https://gw.example.com:8443'\n\
             [[apps]]\nname = 't'\npath_prefix = '/mcp/'\nupstream = 'http://127.0.0.1:9'\nkind = 'mcp'\n\
             [[apps]]\nname = 'h'\nhost = 'tools.example.com'\nupstream = 'http://127.0.0.1:9'\nkind = 'mcp'\nscopes = ['read', 'write']\n\
             [[apps]]\nname = 'w'\npath_prefix = '/web'\nupstream = 'http://127.0.0.1:9'\n",
        )
        .unwrap();
        let compiled = cfg.compile().unwrap();
        let mcp = |name: &str| {
            compiled
                .routes
                .apps
                .iter()
                .find(|a| a.name == name)
                .unwrap()
                .mcp
                .clone()
        };
        let t = mcp("t").unwrap();
        assert_eq!(t.resource, "https://gw.example.com:8443/mcp");
        assert_eq!(
            t.metadata_url,
            "https://gw.example.com:8443/.well-known/oauth-protected-resource/mcp"
        );
        assert_eq!(t.scopes, ["mcp"]);
        assert_eq!(t.origins, ["https://gw.example.com:8443"]);
        let h = mcp("h").unwrap();
        assert_eq!(h.resource, "https://tools.example.com:8443");
        assert_eq!(h.scopes, ["read", "write"]);
        assert!(mcp("w").is_none());
        let found = issues(
            "[[apps]]\nname = 'm'\nupstream = 'whoami'\nkind = 'mcp'\nallowed_origins = ['http://x/path', 'localhost:6274']",
        );
        assert_eq!(
            found
                .iter()
                .filter(|i| i.starts_with("apps[0].allowed_origins:"))
                .count(),
            2,
            "{found:?}"
        );
        let found =
            issues("[[apps]]\nname = 'w'\nupstream = 'whoami'\nallowed_origins = ['http://x']");
        assert!(
            found
                .iter()
                .any(|i| i.starts_with("apps[0].allowed_origins:")),
            "{found:?}"
        );
        let found = issues("[[apps]]\nname = 'w'\nupstream = 'whoami'\nscopes = ['x']");
        assert!(
            found.iter().any(|i| i.starts_with("apps[0].scopes:")),
            "{found:?}"
        );
        let found =
            issues("[[apps]]\nname = 'm'\nupstream = 'whoami'\nkind = 'mcp'\nscopes = ['a b']");
        assert!(
            found.iter().any(|i| i.starts_with("apps[0].scopes:")),
            "{found:?}"
        );
    }

    #[test]
    fn smtp_settings_are_checked() {
        let smtp = |rest: &str| issues(&format!("[smtp]\nhost = 'mail.example.com'\n{rest}"));
        assert!(smtp("from = 'auth@example.com'").is_empty());
        let found = smtp("from = 'auth@example.com'\nsecurity = 'none'");
        assert!(
            found
                .iter()
                .any(|i| i.starts_with("smtp.security:") && i.contains("clear text")),
            "{found:?}"
        );
        assert!(
            issues("[smtp]\nhost = '127.0.0.1'\nfrom = 'a@b.example'\nsecurity = 'none'")
                .is_empty()
        );
        let found = smtp("from = 'nobody'\nusername = 'u'");
        assert!(
            found.iter().any(|i| i.starts_with("smtp.from:")),
            "{found:?}"
        );
        assert!(
            found
                .iter()
                .any(|i| i.contains("username and password go together")),
            "{found:?}"
        );
        assert_eq!(
            parse("[smtp]\nhost='h'\nfrom='a@b'\nsecurity='tls'")
                .unwrap()
                .smtp
                .unwrap()
                .port(),
            465
        );
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
                transport: UpstreamTransport::Tcp,
                authority: "127.0.0.1:8080".into(),
                host_header: http::HeaderValue::from_static("127.0.0.1:8080"),
                base_path: "/base".into()
            })
        );
        assert!(parse_upstream("http://user:pw@host").is_err());
        let https = parse_upstream("https://litellm.internal").unwrap();
        assert_eq!(https.authority, "litellm.internal:443");
        assert_eq!(https.host_header, "litellm.internal");
        assert!(matches!(https.transport, UpstreamTransport::Tls(_)));
        assert_eq!(
            parse_upstream("http://[::1]").unwrap().authority,
            "[::1]:80"
        );
        let unix = parse_upstream("unix:/run/app.sock").unwrap();
        assert_eq!(
            unix.transport,
            UpstreamTransport::Unix("/run/app.sock".into())
        );
        assert_eq!(unix.host_header, "localhost");
        assert!(parse_upstream("unix:run/app.sock").is_err());
        assert!(parse_upstream("ftp://host").is_err());
    }
}
