//! What serde cannot check: every problem in a configuration, each tied to the key that caused
//! it, reported all at once ([`Config::validate`]).

use std::fmt;
use std::time::Duration;

use super::*;
use crate::profile::HeaderProfileConfig;

/// One problem in a configuration, tied to the key that caused it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigIssue {
    pub key: String,
    pub message: String,
}

impl ConfigIssue {
    /// Several issues on one line, for a message that must name them all.
    pub fn list(issues: &[ConfigIssue]) -> String {
        issues
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    }
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

impl Config {
    /// Every problem in the configuration; empty when it is valid.
    pub fn validate(&self) -> Vec<ConfigIssue> {
        self.compile().err().unwrap_or_default()
    }

    /// Checks the configuration and compiles what the running parts need (regexes, methods,
    /// header names, upstream URLs) in the same pass, so what was validated is exactly what
    /// runs: every problem at once, or the compiled parts.
    pub fn compile(&self) -> Result<Compiled, Vec<ConfigIssue>> {
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
        if self.local_auth.max_concurrent_hashes == Some(0) {
            push(
                "local_auth.max_concurrent_hashes".into(),
                "must be at least 1".into(),
            );
        }
        let share = self.local_auth.hashing_cpu_share;
        if !(share > 0.0 && share <= 1.0) {
            push(
                "local_auth.hashing_cpu_share".into(),
                format!(
                    "{share} is outside (0, 1]: it is the share of all cores hashing may use over time (0.1 by default; 1 for no budget)"
                ),
            );
        }
        if !(8..=256).contains(&self.local_auth.min_password_length) {
            push(
                "local_auth.min_password_length".into(),
                format!(
                    "{} is outside 8 to 256 (NIST SP 800-63B asks for at least 8)",
                    self.local_auth.min_password_length
                ),
            );
        }
        let lifetime = self.local_auth.reset_link_lifetime;
        if lifetime < Duration::from_secs(300) || lifetime > Duration::from_secs(7 * 86_400) {
            push(
                "local_auth.reset_link_lifetime".into(),
                "must be between 5m and 7d (a reset link is as good as the password)".into(),
            );
        }
        if let Some(smtp) = &self.smtp {
            let loopback = smtp.host.eq_ignore_ascii_case("localhost")
                || smtp
                    .host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if smtp.security == super::SmtpSecurity::None && !loopback {
                push(
                    "smtp.security".into(),
                    format!(
                        "\"none\" would send reset links to {} in clear text; use starttls or tls (\"none\" is only for a relay on this host)",
                        smtp.host
                    ),
                );
            }
            if !smtp.from.contains('@') {
                push(
                    "smtp.from".into(),
                    format!(
                        "{:?} is not an address such as \"Portcullis <auth@example.com>\"",
                        smtp.from
                    ),
                );
            }
            if smtp.username.is_some() != smtp.password.is_some() {
                push(
                    "smtp".into(),
                    "username and password go together: set both, or neither".into(),
                );
            }
        }
        let issuer = self.mfa.issuer.trim();
        if issuer.is_empty() || issuer.len() > 64 || issuer.contains(':') {
            push(
                "mfa.issuer".into(),
                "must be a short name without ':' (authenticator apps show it above the account)"
                    .into(),
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

        let routes = apps::compile(self, &mut push);
        external::validate(self, &mut push);
        provisioning::validate(self, &mut push);
        store::validate(self, &mut push);
        tls::validate(self, &mut push);
        oauth::validate(&self.oauth, &mut push);
        if issues.is_empty() {
            Ok(Compiled { routes })
        } else {
            Err(issues)
        }
    }
}

pub(super) fn is_header_token(name: &str) -> bool {
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

/// Ids (and other configured names used in URLs and metrics) are letters, digits, '-' and '_'.
pub(super) fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// What is wrong with a configured id, if anything: it must be [`valid_id`] and unique among
/// those `seen` so far (`duplicate` says how the clash is reported).
pub(super) fn id_problem(
    id: &str,
    seen: &mut std::collections::BTreeSet<String>,
    duplicate: &str,
) -> Option<String> {
    if !valid_id(id) {
        Some(format!("{id:?} must be letters, digits, '-' or '_'"))
    } else if !seen.insert(id.to_owned()) {
        Some(format!("{id:?} {duplicate}"))
    } else {
        None
    }
}

fn validate_providers(providers: &[ProviderConfig], push: &mut impl FnMut(String, String)) {
    let mut ids = std::collections::BTreeSet::new();
    for (i, p) in providers.iter().enumerate() {
        let key = |field: &str| format!("providers[{i}].{field}");
        if let Some(problem) = id_problem(&p.id, &mut ids, "is used by two providers") {
            push(key("id"), problem);
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

pub(super) fn validate_headers(
    cfg: &HeaderProfileConfig,
    key: &str,
    push: &mut impl FnMut(String, String),
) {
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
