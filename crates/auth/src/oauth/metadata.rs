//! Client ID Metadata Documents (MCP 2025-11-25, draft-ietf-oauth-client-id-metadata-document):
//! a client whose `client_id` is an https URL publishes its registration there.
//!
//! Fetching a URL a stranger chose is a server-side request forgery waiting to happen, so the
//! fetch is boxed in: https only, no redirects, a name that resolves only to public addresses
//! (checked in the resolver the connection itself uses, so DNS rebinding cannot swap in a private
//! one after the check) unless `oauth.metadata_networks` allows a private network, a few seconds
//! and a few kilobytes at most. Documents are cached for ten minutes, a bounded number of them.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use portcullis_core::config::OAuthConfig;
use serde::Deserialize;

use super::OAuthError;
use super::clients::{Client, ClientKind, Registration, check_registration};

const MAX_DOCUMENT_BYTES: usize = 5 * 1024;
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
const CACHE_TTL: Duration = Duration::from_secs(600);
const CACHE_ENTRIES: u64 = 1000;

pub struct MetadataDocuments {
    http: reqwest::Client,
    networks: Arc<Vec<IpNet>>,
    cache: moka::sync::Cache<String, Client>,
}

#[derive(Deserialize)]
struct Document {
    client_id: String,
    #[serde(flatten)]
    registration: Registration,
}

impl MetadataDocuments {
    pub fn new(config: &OAuthConfig) -> Result<Self, String> {
        let networks = Arc::new(config.metadata_networks.clone());
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(FETCH_TIMEOUT)
            .connect_timeout(FETCH_TIMEOUT)
            .https_only(true)
            .dns_resolver(Arc::new(PublicOnly {
                networks: networks.clone(),
            }));
        if let Some(path) = &config.metadata_ca_file {
            let pem = std::fs::read(path).map_err(|e| {
                format!(
                    "oauth.metadata_ca_file: cannot read {}: {e}",
                    path.display()
                )
            })?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("oauth.metadata_ca_file: {e}"))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        Ok(MetadataDocuments {
            http: builder
                .build()
                .map_err(|e| format!("building the metadata document client: {e}"))?,
            networks,
            cache: moka::sync::Cache::builder()
                .max_capacity(CACHE_ENTRIES)
                .time_to_live(CACHE_TTL)
                .build(),
        })
    }

    /// The client the document at `url` describes.
    pub async fn client(&self, url: &str) -> Result<Client, OAuthError> {
        if let Some(client) = self.cache.get(url) {
            return Ok(client);
        }
        let client = self.fetch(url).await?;
        self.cache.insert(url.to_owned(), client.clone());
        Ok(client)
    }

    async fn fetch(&self, url: &str) -> Result<Client, OAuthError> {
        let parsed = check_client_id_url(url)?;
        // An address in the URL is not resolved, so the resolver cannot check it: check here.
        if let Some(host) = parsed.host_str()
            && let Ok(ip) = host.trim_matches(['[', ']']).parse::<IpAddr>()
            && !allowed(ip, &self.networks)
        {
            return Err(refused(url, "its address is private or loopback"));
        }
        let mut response = self
            .http
            .get(parsed)
            .header(http::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| refused(url, &describe(&e)))?;
        if !response.status().is_success() {
            return Err(refused(
                url,
                &format!(
                    "it answered {} (redirects are not followed)",
                    response.status()
                ),
            ));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| refused(url, &describe(&e)))?
        {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_DOCUMENT_BYTES {
                return Err(refused(url, "the document is larger than 5 KiB"));
            }
        }
        let document: Document = serde_json::from_slice(&body)
            .map_err(|e| refused(url, &format!("it is not a client metadata document: {e}")))?;
        if document.client_id != url {
            return Err(refused(
                url,
                &format!(
                    "its client_id is {:?}, not the URL it was fetched from",
                    document.client_id
                ),
            ));
        }
        match document.registration.token_endpoint_auth_method.as_deref() {
            None | Some("none") => {}
            Some(other) => {
                return Err(refused(
                    url,
                    &format!(
                        "token_endpoint_auth_method {other:?}: a metadata document client cannot hold a shared secret, and only \"none\" (PKCE) is supported"
                    ),
                ));
            }
        }
        check_registration(&document.registration)?;
        let name = document
            .registration
            .client_name
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| parsed_host(url));
        Ok(Client {
            id: document.client_id,
            name,
            redirect_uris: document.registration.redirect_uris,
            secret_hash: None,
            kind: ClientKind::MetadataDocument,
        })
    }
}

/// A client id URL: https, with a path, without user info, fragment or dot segments.
fn check_client_id_url(url: &str) -> Result<reqwest::Url, OAuthError> {
    let parsed = reqwest::Url::parse(url).map_err(|e| refused(url, &e.to_string()))?;
    let raw_path = url
        .split_once("://")
        .map(|(_, rest)| rest.find('/').map_or("", |at| &rest[at..]))
        .unwrap_or_default();
    if parsed.scheme() != "https"
        || parsed.username() != ""
        || parsed.password().is_some()
        || parsed.fragment().is_some()
        || parsed.path() == "/"
        || raw_path.split(['/', '?']).any(|s| s == "." || s == "..")
        || parsed.as_str() != url
    {
        return Err(refused(
            url,
            "a client id URL must be https with a path, in normal form, without user info, fragment or dot segments",
        ));
    }
    Ok(parsed)
}

fn parsed_host(url: &str) -> String {
    reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_else(|| url.to_owned())
}

fn refused(url: &str, why: &str) -> OAuthError {
    OAuthError::invalid_client(format!(
        "the client metadata document at {url} cannot be used: {why}"
    ))
}

/// A fetch error without the URL reqwest repeats, with the resolver's reason if it refused.
fn describe(e: &reqwest::Error) -> String {
    let mut source: Option<&dyn std::error::Error> = Some(e);
    let mut last = e.to_string();
    while let Some(s) = source {
        last = s.to_string();
        source = s.source();
    }
    if e.is_timeout() {
        "it did not answer within 5 seconds".into()
    } else {
        last
    }
}

/// Whether a metadata document may be fetched from `ip`.
fn allowed(ip: IpAddr, networks: &[IpNet]) -> bool {
    is_public(ip) || networks.iter().any(|n| n.contains(&ip))
}

/// Public unicast addresses: not loopback, private, link-local, shared (CGNAT), unique local,
/// documentation, benchmarking, multicast, broadcast or unspecified; IPv4 inside IPv6 is judged
/// as the IPv4 address it carries.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_unspecified()
                || v4.is_multicast()
                || a == 0
                || a >= 240
                || (a == 100 && (64..128).contains(&b))
                || (a == 198 && (18..20).contains(&b))
                || (a == 192 && b == 0 && v4.octets()[2] == 0))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || first == 0x2001 && v6.segments()[1] == 0x0db8
                || first == 0x0064 && v6.segments()[1] == 0xff9b
                || v6.segments()[..6] == [0; 6])
        }
    }
}

/// Resolves names as the system does, then keeps only the addresses a metadata document may
/// come from; none left is an error that says why.
struct PublicOnly {
    networks: Arc<Vec<IpNet>>,
}

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let networks = self.networks.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let kept: Vec<SocketAddr> = found
                .iter()
                .copied()
                .filter(|a| allowed(a.ip(), &networks))
                .collect();
            if kept.is_empty() {
                let why: Box<dyn std::error::Error + Send + Sync> = if found.is_empty() {
                    format!("{host} does not resolve").into()
                } else {
                    format!(
                        "{host} resolves only to private or loopback addresses, which metadata documents may not come from (oauth.metadata_networks allows a network)"
                    )
                    .into()
                };
                return Err(why);
            }
            let addrs: reqwest::dns::Addrs = Box::new(kept.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_are_public() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in ["1.1.1.1", "93.184.216.34", "2606:4700:4700::1111"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
        let allowed_net: Vec<IpNet> = vec!["127.0.0.0/8".parse().unwrap()];
        assert!(allowed("127.0.0.1".parse().unwrap(), &allowed_net));
        assert!(!allowed("10.0.0.1".parse().unwrap(), &allowed_net));
    }

    #[test]
    fn client_id_urls_are_https_with_a_path_in_normal_form() {
        assert!(check_client_id_url("https://app.example.com/oauth/client.json").is_ok());
        for bad in [
            "http://app.example.com/client.json",
            "https://app.example.com/",
            "https://app.example.com",
            "https://user@app.example.com/c.json",
            "https://app.example.com/a/../c.json",
            "https://app.example.com/c.json#x",
            "https://APP.example.com/c.json",
        ] {
            assert!(check_client_id_url(bad).is_err(), "{bad}");
        }
    }
}
