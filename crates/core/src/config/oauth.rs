//! `[oauth]`: Portcullis as the OAuth 2.1 authorization server of its MCP apps, and the rules
//! for redirect URIs that registration and authorization share.

use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthConfig {
    /// How long an access token works (it is checked against its grant on every request, so
    /// revoking ends it at once; this only bounds a token copied elsewhere).
    #[serde(default = "default_access_token_lifetime", with = "humantime_serde")]
    pub access_token_lifetime: Duration,
    /// A grant unused (not refreshed) this long ends; each refresh moves it on.
    #[serde(default = "default_grant_lifetime", with = "humantime_serde")]
    pub grant_lifetime: Duration,
    /// Dynamic client registration (RFC 7591) at `/.portcullis/oauth/register`.
    #[serde(default = "yes")]
    pub dynamic_registration: bool,
    /// Registrations one client address may make per hour.
    #[serde(default = "default_registrations_per_hour")]
    pub registrations_per_hour: u32,
    /// A registered client unused this long is deleted (with no grant left).
    #[serde(default = "default_client_idle_lifetime", with = "humantime_serde")]
    pub client_idle_lifetime: Duration,
    /// Clients identified by the https URL of their metadata document (Client ID Metadata
    /// Documents, MCP 2025-11-25).
    #[serde(default = "yes")]
    pub client_metadata_documents: bool,
    /// Private networks metadata documents may be fetched from. By default only public
    /// addresses are: a client id must not make Portcullis reach inside the network.
    #[serde(default)]
    pub metadata_networks: Vec<IpNet>,
    /// Extra CA certificates (PEM) trusted when fetching metadata documents.
    #[serde(default)]
    pub metadata_ca_file: Option<PathBuf>,
    /// Clients registered by the operator.
    #[serde(default)]
    pub clients: Vec<OAuthClientConfig>,
}

impl Default for OAuthConfig {
    fn default() -> Self {
        OAuthConfig {
            access_token_lifetime: default_access_token_lifetime(),
            grant_lifetime: default_grant_lifetime(),
            dynamic_registration: true,
            registrations_per_hour: default_registrations_per_hour(),
            client_idle_lifetime: default_client_idle_lifetime(),
            client_metadata_documents: true,
            metadata_networks: Vec::new(),
            metadata_ca_file: None,
            clients: Vec::new(),
        }
    }
}

/// A client the operator registered.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthClientConfig {
    /// The `client_id` it presents.
    pub id: String,
    /// What the consent page calls it. Default: the id.
    #[serde(default)]
    pub name: Option<String>,
    pub redirect_uris: Vec<String>,
    /// A confidential client's secret; unset: a public client (PKCE only).
    #[serde(default)]
    pub secret: Option<String>,
}

impl OAuthClientConfig {
    pub fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.id)
    }
}

fn default_access_token_lifetime() -> Duration {
    Duration::from_secs(3600)
}

fn default_grant_lifetime() -> Duration {
    Duration::from_secs(30 * 24 * 3600)
}

fn default_client_idle_lifetime() -> Duration {
    Duration::from_secs(30 * 24 * 3600)
}

fn default_registrations_per_hour() -> u32 {
    20
}

fn yes() -> bool {
    true
}

/// Reports what is wrong with `[oauth]`.
pub(super) fn validate(oauth: &OAuthConfig, push: &mut impl FnMut(String, String)) {
    if oauth.access_token_lifetime < Duration::from_secs(60) {
        push(
            "oauth.access_token_lifetime".into(),
            "must be at least a minute (clients refresh before it ends)".into(),
        );
    }
    if oauth.grant_lifetime <= oauth.access_token_lifetime {
        push(
            "oauth.grant_lifetime".into(),
            "must be longer than access_token_lifetime, or no refresh could ever happen".into(),
        );
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, client) in oauth.clients.iter().enumerate() {
        let key = |field: &str| format!("oauth.clients[{i}].{field}");
        if client.id.trim().is_empty() || client.id.starts_with("https://") {
            push(
                key("id"),
                "must be a plain name (an https URL is a metadata document's client id)".into(),
            );
        }
        if !seen.insert(client.id.as_str()) {
            push(key("id"), format!("{:?} is used by two clients", client.id));
        }
        if client.redirect_uris.is_empty() {
            push(
                key("redirect_uris"),
                "needs at least one redirect URI".into(),
            );
        }
        for uri in &client.redirect_uris {
            if let Err(problem) = check_redirect_uri(uri) {
                push(key("redirect_uris"), problem);
            }
        }
        if client.secret.as_deref().is_some_and(|s| s.len() < 16) {
            push(
                key("secret"),
                "is shorter than 16 characters; use a long random secret".into(),
            );
        }
    }
}

/// Schemes a redirect URI may never have: they run or read something in the browser.
const FORBIDDEN_SCHEMES: &[&str] = &["javascript", "data", "file", "vbscript", "blob", "about"];

/// Whether `uri` may be registered as a redirect URI: absolute, no fragment; `https`, `http`
/// only to a loopback address (native apps, RFC 8252 §7.3), or a private-use scheme of a
/// native app (`vscode://…`, RFC 8252 §7.1).
pub fn check_redirect_uri(uri: &str) -> Result<(), String> {
    let Some((scheme, rest)) = uri.split_once(':') else {
        return Err(format!("{uri:?} is not an absolute URI"));
    };
    let scheme_lc = scheme.to_ascii_lowercase();
    if scheme.is_empty()
        || !scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    {
        return Err(format!("{uri:?} does not start with a URI scheme"));
    }
    if uri.contains('#') {
        return Err(format!(
            "{uri:?} has a fragment, which redirect URIs may not"
        ));
    }
    if !uri.is_ascii() || uri.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "{uri:?} contains spaces, control or non-ASCII characters (percent-encode them)"
        ));
    }
    if FORBIDDEN_SCHEMES.contains(&scheme_lc.as_str()) {
        return Err(format!(
            "{uri:?} uses the {scheme_lc}: scheme, which is never allowed"
        ));
    }
    match scheme_lc.as_str() {
        "https" => match authority_host(rest) {
            Some(host) if !host.is_empty() => Ok(()),
            _ => Err(format!("{uri:?} has no host")),
        },
        "http" => match authority_host(rest) {
            Some(host) if is_loopback_host(&host) => Ok(()),
            _ => Err(format!(
                "{uri:?} is plain http to a host other than this machine; use https (http is only for loopback redirects of native apps)"
            )),
        },
        _ => Ok(()),
    }
}

/// Whether a presented redirect URI is the registered one: exactly, except that a loopback
/// `http` redirect may use any port (native apps pick one when they start, RFC 8252 §7.3).
pub fn redirect_uri_matches(registered: &str, presented: &str) -> bool {
    if registered == presented {
        return true;
    }
    let (Some(r), Some(p)) = (loopback_parts(registered), loopback_parts(presented)) else {
        return false;
    };
    r == p
}

/// `(host, path and query)` of a loopback `http` URI, its port left out.
fn loopback_parts(uri: &str) -> Option<(String, String)> {
    let rest = uri.strip_prefix("http://")?;
    let (authority, path) = rest
        .find(['/', '?'])
        .map_or((rest, ""), |at| rest.split_at(at));
    if authority.contains('@') {
        return None;
    }
    let host = split_port(authority);
    let port = &authority[host.len()..];
    if !(port.is_empty() || port[1..].bytes().all(|b| b.is_ascii_digit())) {
        return None;
    }
    let host = host.to_ascii_lowercase();
    is_loopback_host(&host).then(|| {
        let path = if path.is_empty() { "/" } else { path };
        (host, path.to_owned())
    })
}

/// The host of `//host[:port]/…`, lower case.
fn authority_host(rest: &str) -> Option<String> {
    let authority = rest.strip_prefix("//")?;
    let authority = authority.split(['/', '?']).next().unwrap_or(authority);
    if authority.contains('@') {
        return None; // user info in a redirect URI only misleads
    }
    Some(split_port(authority).to_ascii_lowercase())
}

fn split_port(authority: &str) -> &str {
    if let Some(v6) = authority.strip_prefix('[') {
        return v6
            .split(']')
            .next()
            .map_or(authority, |h| &authority[..h.len() + 2]);
    }
    authority.split(':').next().unwrap_or(authority)
}

/// Whether a redirect host is this machine: `localhost`, `127.0.0.0/8` or `[::1]`.
pub fn is_loopback_host(host: &str) -> bool {
    host == "localhost"
        || host == "[::1]"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_uris_are_https_loopback_http_or_a_native_scheme() {
        for good in [
            "https://claude.ai/api/mcp/auth_callback",
            "http://127.0.0.1:33418/",
            "http://localhost/callback",
            "http://[::1]:8080/cb",
            "vscode://vscode.github-authentication/did-authenticate",
            "com.example.app:/oauth",
        ] {
            assert_eq!(check_redirect_uri(good), Ok(()), "{good}");
        }
        for bad in [
            "javascript:alert(1)",
            "JavaScript://x/%0aalert(1)",
            "data:text/html,x",
            "http://evil.example.com/cb",
            "http://127.0.0.1.evil.com/cb",
            "http://localhost@evil.com/",
            "https://x/cb#frag",
            "/relative",
            "https:///nohost",
            "https://x/a b",
            "https://exämple.com/cb",
        ] {
            assert!(check_redirect_uri(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn only_loopback_redirects_may_change_their_port() {
        assert!(redirect_uri_matches("https://a/cb", "https://a/cb"));
        assert!(!redirect_uri_matches("https://a/cb", "https://a/cb2"));
        assert!(!redirect_uri_matches("https://a/cb", "https://a:444/cb"));
        assert!(redirect_uri_matches(
            "http://127.0.0.1/callback",
            "http://127.0.0.1:51234/callback"
        ));
        assert!(redirect_uri_matches(
            "http://localhost:3000/callback",
            "http://localhost:4000/callback"
        ));
        assert!(!redirect_uri_matches(
            "http://localhost/callback",
            "http://localhost:4000/other"
        ));
        assert!(!redirect_uri_matches(
            "http://localhost/callback",
            "http://127.0.0.1/callback"
        ));
        assert!(!redirect_uri_matches(
            "http://127.0.0.1/cb",
            "http://127.0.0.1:80@evil.com/cb"
        ));
    }
}
