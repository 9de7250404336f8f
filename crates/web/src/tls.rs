//! Listening with TLS: the certificate from PEM files, read again when they change (a renewal by
//! certbot or cert-manager needs no restart; a half-written or broken new pair keeps the old one
//! serving), TLS 1.2 and 1.3 only, HTTP/2 and HTTP/1.1 offered by ALPN; and the plain-HTTP
//! listener that only redirects to https.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::TokioIo;
use portcullis_core::config::TlsConfig;
use portcullis_http::forwarded::{strip_port, valid_host};
use portcullis_http::pem::{self, PemError};
use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

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
}

/// What serving one TLS connection needs: the acceptor (whose certificate reloads itself) and
/// the HSTS header, if configured.
#[derive(Clone)]
pub struct ListenerTls {
    pub acceptor: TlsAcceptor,
    pub hsts: Option<HeaderValue>,
}

/// The certificate the listener presents, swapped in place when its files change.
#[derive(Debug)]
pub struct CurrentCertificate {
    files: (PathBuf, PathBuf),
    key: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for CurrentCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.key
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        )
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
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
    /// The listener's TLS from its configuration, and the certificate it serves (for watching).
    pub fn load(config: &TlsConfig) -> Result<(Self, Arc<CurrentCertificate>), ListenerTlsError> {
        let certified = load_pair(&config.cert, &config.key)?;
        let current = Arc::new(CurrentCertificate {
            files: (config.cert.clone(), config.key.clone()),
            key: RwLock::new(Arc::new(certified)),
        });
        let mut server = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| ListenerTlsError::Pair {
                cert: config.cert.clone(),
                key: config.key.clone(),
                detail: e.to_string(),
            })?
            .with_no_client_auth()
            .with_cert_resolver(current.clone());
        server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
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
    /// Checks the files every `every` and swaps in a new pair once both parse and match. A pair
    /// caught half-written fails the check and is tried again next time; the old one serves
    /// meanwhile.
    pub async fn watch(self: Arc<Self>, every: Duration) {
        let (cert, key) = &self.files;
        let mut seen = modified(cert, key);
        let mut ticks = tokio::time::interval(every);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            let now = modified(cert, key);
            if now == seen {
                continue;
            }
            match load_pair(cert, key) {
                Ok(certified) => {
                    *self.key.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(certified);
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
        key.end_entity_cert().ok().map(|c| c.to_vec())
    }
}

/// What a certificate says about itself: until when, and for which names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateFacts {
    pub not_after: SystemTime,
    /// DNS names and IP addresses of its subject alternative names, lower case.
    pub names: Vec<String>,
}

impl CertificateFacts {
    /// The facts of a pair's end-entity certificate, if it parses as X.509.
    pub fn of(certified: &CertifiedKey) -> Option<Self> {
        let der = certified.end_entity_cert().ok()?;
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let seconds = u64::try_from(cert.validity().not_after.timestamp()).unwrap_or(0);
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
            not_after: SystemTime::UNIX_EPOCH + Duration::from_secs(seconds),
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

fn modified(cert: &Path, key: &Path) -> (Option<SystemTime>, Option<SystemTime>) {
    let at = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    (at(cert), at(key))
}

/// Serves the plain-HTTP listener of `[tls] redirect_http`: every request is answered `308` to
/// the same host and path over https (on `https_port`). Nothing else is served on it.
pub async fn redirect_to_https(
    listener: TcpListener,
    https_port: u16,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed on the redirect listener");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => return,
        };
        let service = hyper::service::service_fn(move |request: Request<Incoming>| async move {
            Ok::<_, Infallible>(redirect(&request, https_port))
        });
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn redirect(request: &Request<Incoming>, https_port: u16) -> Response<Full<Bytes>> {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(|h| strip_port(h).to_owned())
        .filter(|h| valid_host(h));
    let Some(host) = host else {
        return plain(
            StatusCode::BAD_REQUEST,
            None,
            "This address needs a Host header.\n",
        );
    };
    let port = if https_port == 443 {
        String::new()
    } else {
        format!(":{https_port}")
    };
    let path = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .filter(|p| p.starts_with('/'))
        .unwrap_or("/");
    let location = format!("https://{host}{port}{path}");
    match HeaderValue::from_str(&location) {
        Ok(location) => plain(
            StatusCode::PERMANENT_REDIRECT,
            Some(location),
            "This site is served over https.\n",
        ),
        Err(_) => plain(
            StatusCode::BAD_REQUEST,
            None,
            "The request URL is not valid.\n",
        ),
    }
}

fn plain(
    status: StatusCode,
    location: Option<HeaderValue>,
    body: &'static str,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if let Some(location) = location {
        headers.insert(header::LOCATION, location);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_cover_one_label() {
        let facts = CertificateFacts {
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
