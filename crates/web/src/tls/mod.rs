//! Listening with TLS: the certificate from PEM files, read again when they change (a renewal by
//! certbot or cert-manager needs no restart; a half-written or broken new pair keeps the old one
//! serving) or obtained over ACME ([`acme`]); TLS 1.2 and 1.3 only, HTTP/2 and HTTP/1.1 offered
//! by ALPN; and the plain-HTTP listener that only redirects to https ([`redirect`]).

pub mod acme;
pub mod challenges;
mod facts;
mod redirect;

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use http::HeaderValue;
use portcullis_core::config::TlsConfig;
use portcullis_http::pem::{self, PemError};
use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;

pub use challenges::{ACME_TLS_ALPN, Challenges};
pub use facts::{CertificateFacts, expired, humanize};
pub use redirect::redirect_to_https;

/// The certificate and key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ListenerTlsError {
    #[error(transparent)]
    File(#[from] PemError),
    #[error("{} and {}: {detail}", cert.display(), key.display())]
    Pair {
        cert: PathBuf,
        key: PathBuf,
        detail: String,
    },
    #[error("the TLS settings cannot be used: {0}")]
    Settings(String),
}

/// What serving one TLS connection needs: the acceptor (whose certificate reloads itself) and
/// the HSTS header, if configured.
#[derive(Clone)]
pub struct ListenerTls {
    pub acceptor: TlsAcceptor,
    pub hsts: Option<HeaderValue>,
}

/// The certificate the listener presents, swapped in place when its files change or ACME renews
/// it; none yet while the first ACME order runs (handshakes fail until then). A handshake that
/// offers only `acme-tls/1` is the CA's check and gets the challenge certificate instead.
#[derive(Debug, Default)]
pub struct CurrentCertificate {
    key: RwLock<Option<Arc<CertifiedKey>>>,
    pub challenges: Challenges,
}

impl ResolvesServerCert for CurrentCertificate {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // RFC 8737 §3: the CA offers `acme-tls/1` and nothing else.
        let checking = hello.alpn().is_some_and(|offered| {
            let offered: Vec<&[u8]> = offered.collect();
            offered == [ACME_TLS_ALPN]
        });
        if checking {
            return self.challenges.alpn_certificate(hello.server_name()?);
        }
        self.key
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads and checks a certificate chain and its key: both parse, and the key is the
/// certificate's.
pub fn load_pair(cert: &Path, key: &Path) -> Result<CertifiedKey, ListenerTlsError> {
    let chain = pem::certificates(cert)?;
    let private = pem::private_key(key)?;
    CertifiedKey::from_der(chain, private, &provider()).map_err(|e| ListenerTlsError::Pair {
        cert: cert.to_owned(),
        key: key.to_owned(),
        detail: match e {
            rustls::Error::InconsistentKeys(_) => {
                "the key is not the certificate's (is the certificate file the leaf first, and the key its own?)".into()
            }
            other => other.to_string(),
        },
    })
}

impl ListenerTls {
    /// The listener's TLS from its configuration, and the certificate it serves (watched for
    /// file changes, or filled in by ACME).
    pub fn load(config: &TlsConfig) -> Result<(Self, Arc<CurrentCertificate>), ListenerTlsError> {
        let current = Arc::new(CurrentCertificate::default());
        if let Some((cert, key)) = config.files() {
            current.install(load_pair(cert, key)?);
        }
        let mut server = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| ListenerTlsError::Settings(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(current.clone());
        server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        if config.acme.is_some() {
            // Last: rustls picks the first of these the client offers, so only a client that
            // offers nothing else (the CA) gets it.
            server.alpn_protocols.push(ACME_TLS_ALPN.to_vec());
        }
        let hsts = config
            .hsts
            .and_then(|age| HeaderValue::from_str(&format!("max-age={}", age.as_secs())).ok());
        Ok((
            ListenerTls {
                acceptor: TlsAcceptor::from(Arc::new(server)),
                hsts,
            },
            current,
        ))
    }
}

impl CurrentCertificate {
    /// Serves `certified` from the next handshake on.
    pub fn install(&self, certified: CertifiedKey) {
        *self.key.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(certified));
    }

    /// Checks the files every `every` and swaps in a new pair once both parse and match. A pair
    /// caught half-written fails the check and is tried again next time; the old one serves
    /// meanwhile.
    pub async fn watch(self: Arc<Self>, cert: PathBuf, key: PathBuf, every: Duration) {
        let mut seen = modified(&cert, &key);
        let mut ticks = tokio::time::interval(every);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            let now = modified(&cert, &key);
            if now == seen {
                continue;
            }
            match load_pair(&cert, &key) {
                Ok(certified) => {
                    self.install(certified);
                    seen = now;
                    tracing::info!(cert = %cert.display(), "the TLS certificate was reloaded");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the changed TLS certificate files cannot be used yet; the previous certificate keeps serving")
                }
            }
        }
    }

    /// The end-entity certificate now served (DER), for tests and diagnostics.
    pub fn leaf(&self) -> Option<Vec<u8>> {
        let key = self.key.read().unwrap_or_else(PoisonError::into_inner);
        key.as_ref()?.end_entity_cert().ok().map(|c| c.to_vec())
    }
}

fn modified(cert: &Path, key: &Path) -> (Option<SystemTime>, Option<SystemTime>) {
    let at = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    (at(cert), at(key))
}
