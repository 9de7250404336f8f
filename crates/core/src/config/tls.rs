//! TLS on both sides: the listener's certificate (`[tls]`) and how https upstreams are verified
//! (`[apps.upstream_tls]`). Only the shape is checked here; the files are read and parsed by
//! the parts that use them (and by `check-config`, through the same code).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::Config;

/// Listening with TLS, from certificate and key files (PEM). The files are read again when they
/// change, so a renewal (certbot, cert-manager) needs no restart.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificate chain, leaf first (`fullchain.pem`).
    pub cert: PathBuf,
    /// Its private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
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
