//! TLS on both sides: the listener's certificate (`[tls]`) and how https upstreams are verified
//! (`[apps.upstream_tls]`). Only the shape is checked here; the files are read and parsed by
//! the parts that use them (and by `check-config`, through the same code).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::Config;

/// Listening with TLS, from certificate and key files (PEM) or with certificates obtained over
/// ACME. The files are read again when they change, so a renewal (certbot, cert-manager) needs
/// no restart.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificate chain, leaf first (`fullchain.pem`). With `key`; or `[tls.acme]`.
    #[serde(default)]
    pub cert: Option<PathBuf>,
    /// Its private key (PKCS#8, PKCS#1 or SEC1).
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// Certificates obtained and renewed automatically (RFC 8555), instead of files.
    #[serde(default)]
    pub acme: Option<AcmeConfig>,
    /// A plain-HTTP listener (`0.0.0.0:80`) that only redirects to https. Unset: none.
    #[serde(default)]
    pub redirect_http: Option<SocketAddr>,
    /// `Strict-Transport-Security: max-age=…` on every answer over TLS (`365d`). Unset: not sent,
    /// since browsers remember it for that long and it cannot be taken back.
    #[serde(default, with = "humantime_serde")]
    pub hsts: Option<Duration>,
    /// How often the certificate files are checked for a change.
    #[serde(default = "default_reload_check", with = "humantime_serde")]
    pub reload_check: Duration,
}

fn default_reload_check() -> Duration {
    Duration::from_secs(10)
}

impl TlsConfig {
    /// The certificate and key files, when the certificate comes from files.
    pub fn files(&self) -> Option<(&Path, &Path)> {
        Some((self.cert.as_deref()?, self.key.as_deref()?))
    }
}

/// Let's Encrypt's production directory: what `[tls.acme]` orders from unless told otherwise.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// Ordering certificates from an ACME CA. The account and certificates are kept in the store
/// (sealed with the token key), so replicas on PostgreSQL share them and only one orders.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcmeConfig {
    /// The names the certificate is for; each must reach this listener (TLS-ALPN-01, port 443)
    /// or the redirect listener (HTTP-01, port 80) from the internet.
    pub domains: Vec<String>,
    /// A contact address the CA may write to about expiry or problems.
    #[serde(default)]
    pub email: Option<String>,
    /// The CA's directory URL.
    #[serde(default = "default_directory")]
    pub directory: String,
    /// A CA certificate (PEM) the directory's https is verified against, for a private ACME CA.
    /// Unset: the system's roots.
    #[serde(default)]
    pub directory_ca: Option<PathBuf>,
    #[serde(default)]
    pub challenge: AcmeChallenge,
    /// External Account Binding, for CAs that require it (ZeroSSL, Google, most private CAs).
    #[serde(default)]
    pub eab: Option<ExternalAccount>,
    /// Renew when this little of the certificate's life is left. Unset: a third of its lifetime
    /// (30 days for Let's Encrypt's 90).
    #[serde(default, with = "humantime_serde")]
    pub renew_before: Option<Duration>,
}

fn default_directory() -> String {
    LETS_ENCRYPT.to_owned()
}

/// How the CA checks that the domains are ours.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub enum AcmeChallenge {
    /// A special certificate on the TLS listener itself (ALPN `acme-tls/1`): nothing but the
    /// https port needs to be reachable.
    #[default]
    #[serde(rename = "tls-alpn-01")]
    TlsAlpn01,
    /// A file on the plain-HTTP listener (`redirect_http`, which must then be set, on port 80).
    #[serde(rename = "http-01")]
    Http01,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalAccount {
    pub kid: String,
    /// The MAC key the CA gave with the key id, base64url.
    pub hmac_key: String,
}

/// How an `https://` upstream is verified, and the certificate Portcullis shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTlsConfig {
    /// CA certificates (PEM) the app's certificate must chain to. Unset: the system's roots.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// The name sent in SNI and checked in the app's certificate. Unset: the upstream's host.
    #[serde(default)]
    pub server_name: Option<String>,
    /// A client certificate chain (PEM) for apps that require mutual TLS, with `client_key`.
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    #[serde(default)]
    pub client_key: Option<PathBuf>,
    /// Accept any certificate. Anyone on the path can then read and change the traffic,
    /// identity headers included: check-config and doctor warn while it is on.
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

pub(super) fn validate(config: &Config, push: &mut impl FnMut(String, String)) {
    if let Some(tls) = &config.tls {
        certificate_source(config, tls, push);
        if tls.reload_check < Duration::from_secs(1) {
            push(
                "tls.reload_check".into(),
                "must be at least a second".into(),
            );
        }
        if tls.redirect_http == Some(config.listen) {
            push(
                "tls.redirect_http".into(),
                format!(
                    "{} is also `listen`; the redirect needs a port of its own (usually 80)",
                    config.listen
                ),
            );
        }
        if let Some(url) = &config.public_url
            && url.starts_with("http://")
        {
            push(
                "public_url".into(),
                format!("{url:?} is http, but Portcullis listens with TLS: use https://"),
            );
        }
    }
    for (i, app) in config.apps.iter().enumerate() {
        let key = |field: &str| format!("apps[{i}].upstream_tls.{field}");
        let Some(tls) = &app.upstream_tls else {
            continue;
        };
        if !app.upstream.starts_with("https://") {
            push(
                format!("apps[{i}].upstream_tls"),
                format!(
                    "applies to https:// upstreams only, and {:?} is not one",
                    app.upstream
                ),
            );
        }
        if tls.client_cert.is_some() != tls.client_key.is_some() {
            push(
                key(if tls.client_cert.is_some() {
                    "client_key"
                } else {
                    "client_cert"
                }),
                "client_cert and client_key go together: set both, or neither".into(),
            );
        }
        if let Some(name) = &tls.server_name
            && !is_server_name(name)
        {
            push(
                key("server_name"),
                format!("{name:?} is not a DNS name or IP address"),
            );
        }
        if tls.insecure_skip_verify && tls.ca.is_some() {
            push(
                key("insecure_skip_verify"),
                "with insecure_skip_verify the CA bundle is never used: remove one of them".into(),
            );
        }
    }
}

/// Exactly one of the files and ACME, and an ACME section that can work.
fn certificate_source(config: &Config, tls: &TlsConfig, push: &mut impl FnMut(String, String)) {
    match (&tls.cert, &tls.key, &tls.acme) {
        (Some(_), Some(_), None) => {}
        (None, None, Some(acme)) => validate_acme(config, tls, acme, push),
        (None, None, None) => push(
            "tls".into(),
            "needs a certificate: `cert` and `key` files, or a `[tls.acme]` section".into(),
        ),
        (_, _, Some(_)) => push(
            "tls.acme".into(),
            "the certificate comes either from `cert`/`key` files or from ACME: remove one".into(),
        ),
        (Some(_), None, None) => push(
            "tls.key".into(),
            "missing: the certificate's private key file".into(),
        ),
        (None, Some(_), None) => push(
            "tls.cert".into(),
            "missing: the certificate chain file the key belongs to".into(),
        ),
    }
}

fn validate_acme(
    config: &Config,
    tls: &TlsConfig,
    acme: &AcmeConfig,
    push: &mut impl FnMut(String, String),
) {
    if let Some(url) = &config.public_url
        && let Some(host) = url
            .split_once("://")
            .and_then(|(_, rest)| rest.split(['/', ':']).next())
        && !acme.domains.is_empty()
        && !acme.domains.iter().any(|d| d.eq_ignore_ascii_case(host))
    {
        push(
            "tls.acme.domains".into(),
            format!(
                "public_url's host {host} is not among them, so browsers would refuse the certificate there: add it"
            ),
        );
    }
    if acme.domains.is_empty() {
        push(
            "tls.acme.domains".into(),
            "names no domain: list the names clients use (\"chat.example.com\")".into(),
        );
    }
    for (i, domain) in acme.domains.iter().enumerate() {
        let at = format!("tls.acme.domains[{i}]");
        if domain.starts_with("*.") {
            push(
                at,
                format!(
                    "{domain:?} is a wildcard, which only the DNS-01 challenge can prove; list the names, or use certificate files"
                ),
            );
        } else if domain.parse::<std::net::IpAddr>().is_ok() || !is_server_name(domain) {
            push(at, format!("{domain:?} is not a DNS name"));
        } else if domain.bytes().any(|b| b.is_ascii_uppercase()) {
            push(at, format!("{domain:?}: write it in lower case"));
        }
    }
    if !acme.directory.starts_with("https://") {
        push(
            "tls.acme.directory".into(),
            format!("{:?} is not an https:// URL", acme.directory),
        );
    }
    if acme.challenge == AcmeChallenge::Http01 && tls.redirect_http.is_none() {
        push(
            "tls.acme.challenge".into(),
            "http-01 is answered on the plain-HTTP listener: set `tls.redirect_http` (port 80)"
                .into(),
        );
    }
    if let Some(email) = &acme.email
        && (!email.contains('@') || email.contains(char::is_whitespace))
    {
        push(
            "tls.acme.email".into(),
            format!("{email:?} is not an email address"),
        );
    }
    if let Some(eab) = &acme.eab {
        use base64::Engine;
        let key = eab.hmac_key.trim_end_matches('=');
        if base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(key)
            .is_err()
        {
            push(
                "tls.acme.eab.hmac_key".into(),
                "is not base64url (paste the MAC key exactly as the CA shows it)".into(),
            );
        }
    }
}

fn is_server_name(name: &str) -> bool {
    name.parse::<std::net::IpAddr>().is_ok()
        || (!name.is_empty()
            && name.len() <= 253
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issues(text: &str) -> Vec<String> {
        let config: Config = toml::from_str(text).unwrap();
        config.validate().iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_listener_certificate_is_accepted_and_its_mistakes_named() {
        let ok = "[tls]\ncert = 'c.pem'\nkey = 'k.pem'\n";
        assert!(issues(ok).is_empty(), "{:?}", issues(ok));
        let config: Config = toml::from_str(ok).unwrap();
        assert!(config.public_url().starts_with("https://"));
        let found = issues(
            "listen = '0.0.0.0:443'\npublic_url = 'http://gw.example.com'\n\
             [tls]\ncert = 'c.pem'\nkey = 'k.pem'\nredirect_http = '0.0.0.0:443'\n",
        );
        assert!(
            found.iter().any(|i| i.starts_with("tls.redirect_http:")),
            "{found:?}"
        );
        assert!(
            found.iter().any(|i| i.starts_with("public_url:")),
            "{found:?}"
        );
    }

    #[test]
    fn acme_is_one_certificate_source_and_its_mistakes_are_named() {
        let ok = "[tls]\n[tls.acme]\ndomains = ['chat.example.com']\nemail = 'ops@example.com'\n";
        assert!(issues(ok).is_empty(), "{:?}", issues(ok));
        let config: Config = toml::from_str(ok).unwrap();
        let acme = config.tls.unwrap().acme.unwrap();
        assert_eq!(acme.directory, LETS_ENCRYPT);
        assert_eq!(acme.challenge, AcmeChallenge::TlsAlpn01);

        let named = |text: &str, key: &str| {
            let found = issues(text);
            assert!(
                found.iter().any(|i| i.starts_with(&format!("{key}:"))),
                "{key} not in {found:?}"
            );
        };
        named("[tls]\n", "tls");
        named("[tls]\ncert = 'c.pem'\n", "tls.key");
        named(
            "[tls]\ncert = 'c.pem'\nkey = 'k.pem'\n[tls.acme]\ndomains = ['a.example.com']\n",
            "tls.acme",
        );
        named("[tls]\n[tls.acme]\ndomains = []\n", "tls.acme.domains");
        named(
            "[tls]\n[tls.acme]\ndomains = ['*.example.com']\n",
            "tls.acme.domains[0]",
        );
        named(
            "[tls]\n[tls.acme]\ndomains = ['a.example.com']\nchallenge = 'http-01'\n",
            "tls.acme.challenge",
        );
        named(
            "[tls]\n[tls.acme]\ndomains = ['a.example.com']\ndirectory = 'http://ca'\n",
            "tls.acme.directory",
        );
        named(
            "[tls]\n[tls.acme]\ndomains = ['a.example.com']\n[tls.acme.eab]\nkid = 'k'\nhmac_key = 'not base64!'\n",
            "tls.acme.eab.hmac_key",
        );
        named(
            "public_url = 'https://chat.example.com'\n[tls]\n[tls.acme]\ndomains = ['other.example.com']\n",
            "tls.acme.domains",
        );
        let http01 = "[tls]\nredirect_http = '0.0.0.0:80'\n[tls.acme]\ndomains = ['a.example.com']\nchallenge = 'http-01'\n";
        assert!(issues(http01).is_empty(), "{:?}", issues(http01));
    }

    #[test]
    fn upstream_tls_settings_are_checked() {
        let app = |upstream: &str, tls: &str| {
            format!("[[apps]]\nname = 'a'\nupstream = '{upstream}'\n[apps.upstream_tls]\n{tls}\n")
        };
        assert!(issues(&app("https://app.internal", "ca = 'ca.pem'")).is_empty());
        let found = issues(&app("http://app.internal", "ca = 'ca.pem'"));
        assert!(
            found.iter().any(|i| i.contains("https:// upstreams only")),
            "{found:?}"
        );
        let found = issues(&app("https://app.internal", "client_cert = 'c.pem'"));
        assert!(
            found
                .iter()
                .any(|i| i.starts_with("apps[0].upstream_tls.client_key:")),
            "{found:?}"
        );
        let found = issues(&app("https://app.internal", "server_name = 'no spaces'"));
        assert!(found.iter().any(|i| i.contains("server_name")), "{found:?}");
    }
}
