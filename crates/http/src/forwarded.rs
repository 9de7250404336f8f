//! Who the client is and how it reached us, believing `X-Forwarded-*` only from trusted proxies.
//!
//! The socket peer is the only fact we know for sure. When it is a configured trusted proxy, the
//! client address is found by walking `X-Forwarded-For` from the right and skipping trusted hops;
//! otherwise every forwarding header the client sent is ignored (and later replaced).

use std::net::{IpAddr, SocketAddr};

use http::HeaderMap;
use ipnet::IpNet;

#[derive(Clone, Debug, Default)]
pub struct TrustedProxies(Vec<IpNet>);

/// Marks a request that arrived over a TLS connection Portcullis terminated itself (a request
/// extension, set by the server; a client cannot send it). Without a trusted proxy's
/// `X-Forwarded-Proto`, it decides that the request is https.
#[derive(Clone, Copy, Debug)]
pub struct TlsConnection;

impl TrustedProxies {
    pub fn new(nets: Vec<IpNet>) -> Self {
        TrustedProxies(nets)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical_ip(ip);
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// Facts about the client, derived from the peer address and (if trusted) its headers.
    pub fn client_facts(&self, peer: SocketAddr, headers: &HeaderMap) -> ClientFacts {
        let peer_ip = canonical_ip(peer.ip());
        if !self.contains(peer_ip) {
            return ClientFacts {
                peer_ip,
                peer_trusted: false,
                client_ip: peer_ip,
                scheme: None,
                host: None,
                forwarded_for: None,
            };
        }
        let entries = header_list(headers, "x-forwarded-for");
        let client_ip = self.client_in_chain(&entries, peer_ip);
        let chain: Vec<IpAddr> = entries
            .iter()
            .filter_map(|s| s.parse::<IpAddr>().ok())
            .map(canonical_ip)
            .collect();
        let scheme = header_list(headers, "x-forwarded-proto")
            .into_iter()
            .next()
            .filter(|s| s == "http" || s == "https");
        let host = header_list(headers, "x-forwarded-host").into_iter().next();
        let forwarded_for = (!chain.is_empty()).then(|| {
            chain
                .iter()
                .map(IpAddr::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        });
        ClientFacts {
            peer_ip,
            peer_trusted: true,
            client_ip,
            scheme,
            host,
            forwarded_for,
        }
    }
}

impl TrustedProxies {
    /// The client address in an `X-Forwarded-For` chain a trusted peer sent: walking from the
    /// right (the hop nearest us), trusted proxies are skipped and the first other address is
    /// the client. An entry that is not an address (`unknown`, garbage) ends the walk at the
    /// nearest trusted hop: everything left of it is the client's own claim, so varying it
    /// must not change the address that throttling and logs key on.
    fn client_in_chain(&self, entries: &[String], peer_ip: IpAddr) -> IpAddr {
        let mut nearest = peer_ip;
        for entry in entries.iter().rev() {
            match entry.parse::<IpAddr>().map(canonical_ip) {
                Ok(ip) if self.contains(ip) => nearest = ip,
                Ok(ip) => return ip,
                Err(_) => return nearest,
            }
        }
        // Every hop is trusted: the leftmost is as far as we can see.
        nearest
    }
}

/// What we believe about the client of one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientFacts {
    /// The socket peer: the only address we know for sure, appended to `X-Forwarded-For`.
    pub peer_ip: IpAddr,
    pub peer_trusted: bool,
    pub client_ip: IpAddr,
    /// `X-Forwarded-Proto` from a trusted proxy.
    pub scheme: Option<String>,
    /// `X-Forwarded-Host` from a trusted proxy.
    pub host: Option<String>,
    /// The `X-Forwarded-For` chain from a trusted proxy, normalised.
    pub forwarded_for: Option<String>,
}

/// `host` of `host:port`; an IPv6 literal keeps its brackets.
pub fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_inclusive(']').next().unwrap_or(host);
    }
    host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host)
}

/// A `Host` value made only of what host names, IP literals and a port consist of: nothing
/// that could turn a URL built from it into another URL.
pub fn valid_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 255
        && host.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']' | b'_')
        })
}

/// IPv4-mapped IPv6 addresses (`::ffff:1.2.3.4`) compare as the IPv4 address they carry.
fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// All comma-separated values of every copy of a header, trimmed, empty ones dropped.
fn header_list(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn untrusted_peers_cannot_claim_anything() {
        let trusted = TrustedProxies::new(vec!["10.0.0.0/8".parse().unwrap()]);
        let facts = trusted.client_facts(
            "203.0.113.9:5000".parse().unwrap(),
            &headers(&[
                ("x-forwarded-for", "1.2.3.4"),
                ("x-forwarded-proto", "https"),
            ]),
        );
        assert!(!facts.peer_trusted);
        assert_eq!(facts.client_ip.to_string(), "203.0.113.9");
        assert_eq!(facts.scheme, None);
    }

    #[test]
    fn trusted_chain_is_walked_from_the_right() {
        let trusted = TrustedProxies::new(vec!["10.0.0.0/8".parse().unwrap()]);
        let facts = trusted.client_facts(
            "10.0.0.2:5000".parse().unwrap(),
            &headers(&[
                ("x-forwarded-for", "6.6.6.6, 198.51.100.7"),
                ("x-forwarded-for", "10.0.0.5"),
                ("x-forwarded-proto", "https"),
                ("x-forwarded-host", "chat.example.com"),
            ]),
        );
        assert_eq!(facts.client_ip.to_string(), "198.51.100.7");
        assert_eq!(facts.scheme.as_deref(), Some("https"));
        assert_eq!(facts.host.as_deref(), Some("chat.example.com"));
    }

    #[test]
    fn garbage_in_the_chain_cannot_move_the_client_address() {
        let trusted = TrustedProxies::new(vec!["10.0.0.0/8".parse().unwrap()]);
        let peer = "10.0.0.2:5000".parse().unwrap();
        let client = |xff: &str| {
            trusted
                .client_facts(peer, &headers(&[("x-forwarded-for", xff)]))
                .client_ip
                .to_string()
        };
        // An attacker behind a trusted proxy varies what it claims: the key stays the same.
        for claimed in ["1.2.3.4, unknown", "garbage", "::zz, 5.6.7.8, x"] {
            assert_eq!(
                client(&format!("{claimed}, 10.0.0.9")),
                "10.0.0.9",
                "{claimed}"
            );
        }
        assert_eq!(
            client("1.2.3.4, garbage, 198.51.100.7, 10.0.0.9"),
            "198.51.100.7"
        );
        assert_eq!(client("10.0.0.7, 10.0.0.9"), "10.0.0.7");
    }

    #[test]
    fn mapped_ipv6_peers_match_ipv4_ranges() {
        let trusted = TrustedProxies::new(vec!["127.0.0.1/32".parse().unwrap()]);
        assert!(trusted.contains("::ffff:127.0.0.1".parse().unwrap()));
    }
}
