//! TLS to an app: verified against the system's roots or a configured CA bundle, with the name
//! from the upstream URL (or `server_name`) in SNI and the certificate check, an optional client
//! certificate for mutual TLS, and — only when asked for — no verification at all.

use std::sync::Arc;

use portcullis_core::config::UpstreamTlsConfig;
use portcullis_http::pem;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_rustls::TlsConnector;

/// What a connection to one https app needs.
#[derive(Clone)]
pub struct UpstreamTls {
    pub connector: TlsConnector,
    pub server_name: ServerName<'static>,
}

impl std::fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

/// Reading the files or building the client failed; says which setting to fix.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamTlsError {
    #[error(transparent)]
    File(#[from] pem::PemError),
    #[error("{0:?} is not a name a certificate can be checked against")]
    ServerName(String),
    #[error(
        "no CA certificates found on this system; install the ca-certificates package or set upstream_tls.ca"
    )]
    NoSystemRoots,
    #[error("{}: a certificate in it cannot be a trust anchor ({detail})", path.display())]
    BadAnchor {
        path: std::path::PathBuf,
        detail: String,
    },
    #[error("the client certificate and key cannot be used together: {0}")]
    ClientIdentity(rustls::Error),
    #[error("TLS setup: {0}")]
    Setup(rustls::Error),
}

pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The TLS client for an app whose upstream host is `host` (without port).
pub fn client(config: &UpstreamTlsConfig, host: &str) -> Result<UpstreamTls, UpstreamTlsError> {
    let provider = provider();
    let name = config.server_name.as_deref().unwrap_or(host);
    let bare = name.trim_start_matches('[').trim_end_matches(']');
    let server_name = ServerName::try_from(bare.to_owned())
        .map_err(|_| UpstreamTlsError::ServerName(name.to_owned()))?;
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(UpstreamTlsError::Setup)?;
    let builder = if config.insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
    } else {
        builder.with_root_certificates(roots(config)?)
    };
    let mut tls = match (&config.client_cert, &config.client_key) {
        (Some(cert), Some(key)) => builder
            .with_client_auth_cert(pem::certificates(cert)?, pem::private_key(key)?)
            .map_err(UpstreamTlsError::ClientIdentity)?,
        _ => builder.with_no_client_auth(),
    };
    // The pool speaks HTTP/1.1 to apps; an app offered h2 would answer in a protocol it cannot read.
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(UpstreamTls {
        connector: TlsConnector::from(Arc::new(tls)),
        server_name,
    })
}

fn roots(config: &UpstreamTlsConfig) -> Result<RootCertStore, UpstreamTlsError> {
    let mut roots = RootCertStore::empty();
    match &config.ca {
        Some(path) => {
            for certificate in pem::certificates(path)? {
                roots
                    .add(certificate)
                    .map_err(|e| UpstreamTlsError::BadAnchor {
                        path: path.clone(),
                        detail: e.to_string(),
                    })?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(UpstreamTlsError::NoSystemRoots);
            }
        }
    }
    Ok(roots)
}

/// Why a TLS handshake with an app failed, in words for the 502 page and the log.
pub fn handshake_failure(error: &std::io::Error) -> String {
    use rustls::CertificateError as C;
    let rustls_error = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match rustls_error {
        Some(rustls::Error::InvalidCertificate(c)) => match c {
            C::NotValidForName | C::NotValidForNameContext { .. } => {
                "its certificate is not valid for the name Portcullis connects to (set upstream_tls.server_name if the app's certificate names another)".into()
            }
            C::UnknownIssuer => {
                "its certificate was not issued by a CA Portcullis trusts (set upstream_tls.ca to the CA that issued it)".into()
            }
            C::Expired | C::ExpiredContext { .. } => "its certificate has expired".into(),
            C::NotValidYet | C::NotValidYetContext { .. } => {
                "its certificate is not valid yet (check both clocks)".into()
            }
            C::Revoked => "its certificate has been revoked".into(),
            other => format!("its certificate was refused ({other:?})"),
        },
        Some(rustls::Error::AlertReceived(alert)) => format!(
            "the app refused the TLS handshake ({alert:?}); if it requires a client certificate, set upstream_tls.client_cert and client_key"
        ),
        Some(other) => format!("the TLS handshake failed ({other})"),
        None => format!("the TLS handshake failed ({error})"),
    }
}

/// `insecure_skip_verify`: any certificate, any name. Handshake signatures are still checked,
/// which keeps the session keys honest but proves nothing about who is at the other end.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
