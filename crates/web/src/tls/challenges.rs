//! The answers to an ACME CA's checks while an order runs, kept in memory so that answering
//! never waits on the database: the TLS-ALPN-01 certificate for a domain (RFC 8737) and the
//! HTTP-01 key authorization for a token (RFC 8555 §8.3). The ordering replica puts its own here
//! and publishes them in the store; the others copy them from there while it orders.

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};

use rcgen::{CertificateParams, CustomExtension, KeyPair};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;
use serde::{Deserialize, Serialize};

/// The ALPN protocol of TLS-ALPN-01: a handshake offering it is the CA's check, answered with the
/// challenge certificate and then closed.
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// What the CA is to be shown, as published in the store (plain data, no keys).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    /// Domain → key authorization, for TLS-ALPN-01.
    #[serde(default)]
    pub tls_alpn: BTreeMap<String, String>,
    /// Token → key authorization, for HTTP-01.
    #[serde(default)]
    pub http: BTreeMap<String, String>,
}

#[derive(Default)]
struct Answers {
    published: Published,
    certificates: BTreeMap<String, Arc<CertifiedKey>>,
}

/// The answers now served.
#[derive(Default)]
pub struct Challenges {
    answers: RwLock<Answers>,
}

impl std::fmt::Debug for Challenges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Challenges").finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the TLS-ALPN-01 certificate for {domain} could not be made: {detail}")]
pub struct ChallengeCertificateError {
    domain: String,
    detail: String,
}

impl Challenges {
    /// Serves exactly `published` from now on (building the TLS-ALPN-01 certificates that are
    /// new); unchanged answers keep their certificate.
    pub fn serve(&self, published: Published) -> Result<(), ChallengeCertificateError> {
        let mut certificates = BTreeMap::new();
        {
            let answers = self.answers.read().unwrap_or_else(PoisonError::into_inner);
            if answers.published == published {
                return Ok(());
            }
            for (domain, key_authorization) in &published.tls_alpn {
                let kept = answers
                    .published
                    .tls_alpn
                    .get(domain)
                    .filter(|old| *old == key_authorization)
                    .and_then(|_| answers.certificates.get(domain).cloned());
                let certificate = match kept {
                    Some(certificate) => certificate,
                    None => Arc::new(alpn_certificate(domain, key_authorization)?),
                };
                certificates.insert(domain.clone(), certificate);
            }
        }
        *self.answers.write().unwrap_or_else(PoisonError::into_inner) = Answers {
            published,
            certificates,
        };
        Ok(())
    }

    pub fn clear(&self) {
        *self.answers.write().unwrap_or_else(PoisonError::into_inner) = Answers::default();
    }

    /// The TLS-ALPN-01 certificate for `domain`, while its check runs.
    pub fn alpn_certificate(&self, domain: &str) -> Option<Arc<CertifiedKey>> {
        let answers = self.answers.read().unwrap_or_else(PoisonError::into_inner);
        answers
            .certificates
            .get(&domain.to_ascii_lowercase())
            .cloned()
    }

    /// The HTTP-01 key authorization for `token`, while its check runs.
    pub fn http_answer(&self, token: &str) -> Option<String> {
        let answers = self.answers.read().unwrap_or_else(PoisonError::into_inner);
        answers.published.http.get(token).cloned()
    }
}

/// The self-signed certificate RFC 8737 asks for: the domain as its only name, and the SHA-256
/// of the key authorization in the critical acmeIdentifier extension.
fn alpn_certificate(
    domain: &str,
    key_authorization: &str,
) -> Result<CertifiedKey, ChallengeCertificateError> {
    let failed = |detail: String| ChallengeCertificateError {
        domain: domain.to_owned(),
        detail,
    };
    let digest = ring::digest::digest(&ring::digest::SHA256, key_authorization.as_bytes());
    let mut params =
        CertificateParams::new(vec![domain.to_owned()]).map_err(|e| failed(e.to_string()))?;
    params.custom_extensions = vec![CustomExtension::new_acme_identifier(digest.as_ref())];
    let key = KeyPair::generate().map_err(|e| failed(e.to_string()))?;
    let certificate = params
        .self_signed(&key)
        .map_err(|e| failed(e.to_string()))?;
    let private = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    // Not `from_der`: its key check parses the certificate with webpki, which refuses the
    // critical acmeIdentifier extension it does not know.
    let signing = super::provider()
        .key_provider
        .load_private_key(private)
        .map_err(|e| failed(e.to_string()))?;
    Ok(CertifiedKey::new(vec![certificate.der().clone()], signing))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_served_until_cleared() {
        let challenges = Challenges::default();
        let mut published = Published::default();
        published
            .tls_alpn
            .insert("chat.example.com".into(), "token.thumb".into());
        published.http.insert("tok".into(), "tok.thumb".into());
        challenges.serve(published.clone()).unwrap();
        let first = challenges.alpn_certificate("Chat.Example.com").unwrap();
        assert_eq!(challenges.http_answer("tok").as_deref(), Some("tok.thumb"));
        assert!(challenges.alpn_certificate("other.example.com").is_none());
        assert!(challenges.http_answer("other").is_none());

        // The same answers again keep their certificate; a new key authorization makes another.
        challenges.serve(published.clone()).unwrap();
        assert!(Arc::ptr_eq(
            &first,
            &challenges.alpn_certificate("chat.example.com").unwrap()
        ));
        published
            .tls_alpn
            .insert("chat.example.com".into(), "token2.thumb".into());
        challenges.serve(published).unwrap();
        assert!(!Arc::ptr_eq(
            &first,
            &challenges.alpn_certificate("chat.example.com").unwrap()
        ));

        challenges.clear();
        assert!(challenges.alpn_certificate("chat.example.com").is_none());
        assert!(challenges.http_answer("tok").is_none());
    }
}
