//! What a certificate says about itself (expiry, names), for check-config, doctor and renewal.

use std::path::Path;
use std::time::{Duration, SystemTime};

use rustls::sign::CertifiedKey;

/// What a certificate says about itself: until when, and for which names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateFacts {
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    /// DNS names and IP addresses of its subject alternative names, lower case.
    pub names: Vec<String>,
}

impl CertificateFacts {
    /// The facts of a pair's end-entity certificate, if it parses as X.509.
    pub fn of(certified: &CertifiedKey) -> Option<Self> {
        let der = certified.end_entity_cert().ok()?;
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let at = |t: x509_parser::time::ASN1Time| {
            SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(t.timestamp()).unwrap_or(0))
        };
        let names = match cert.subject_alternative_name() {
            Ok(Some(san)) => san
                .value
                .general_names
                .iter()
                .filter_map(|name| match name {
                    x509_parser::extensions::GeneralName::DNSName(dns) => {
                        Some(dns.to_ascii_lowercase())
                    }
                    x509_parser::extensions::GeneralName::IPAddress(bytes) => ip_text(bytes),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        Some(CertificateFacts {
            not_before: at(cert.validity().not_before),
            not_after: at(cert.validity().not_after),
            names,
        })
    }

    /// Whether `host` (lower case, no port) is one of its names, a `*.` wildcard counting for
    /// one label.
    pub fn covers(&self, host: &str) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        self.names.iter().any(|name| match name.strip_prefix("*.") {
            Some(parent) => host
                .split_once('.')
                .is_some_and(|(label, rest)| !label.is_empty() && rest == parent),
            None => name == host,
        })
    }
}

fn ip_text(bytes: &[u8]) -> Option<String> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes)
            .ok()
            .map(|b| std::net::Ipv4Addr::from(b).to_string()),
        16 => <[u8; 16]>::try_from(bytes)
            .ok()
            .map(|b| std::net::Ipv6Addr::from(b).to_string()),
        _ => None,
    }
}

/// What is wrong with a listener certificate at `now` that must stop a start: it has expired.
pub fn expired(cert: &Path, facts: &CertificateFacts, now: SystemTime) -> Option<String> {
    (facts.not_after <= now).then(|| {
        format!(
            "{}: the certificate expired {} ago; renew it (certbot renew, or your CA)",
            cert.display(),
            humanize(now.duration_since(facts.not_after).unwrap_or_default())
        )
    })
}

/// A duration in days, hours or minutes, for messages.
pub fn humanize(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        s if s >= 2 * 86_400 => format!("{} days", s / 86_400),
        s if s >= 7_200 => format!("{} hours", s / 3_600),
        s => format!("{} minutes", s / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_cover_one_label() {
        let facts = CertificateFacts {
            not_before: SystemTime::UNIX_EPOCH,
            not_after: SystemTime::UNIX_EPOCH,
            names: vec![
                "*.example.com".into(),
                "example.com".into(),
                "127.0.0.1".into(),
            ],
        };
        assert!(facts.covers("chat.example.com"));
        assert!(facts.covers("example.com"));
        assert!(facts.covers("127.0.0.1"));
        assert!(!facts.covers("a.b.example.com"));
        assert!(!facts.covers("evilexample.com"));
        assert!(expired(Path::new("c.pem"), &facts, SystemTime::now()).is_some());
    }
}
