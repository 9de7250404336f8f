//! Certificates and keys read from PEM files, for both TLS sides: the listener's certificate and
//! an https upstream's CA bundle and client certificate. Every failure names the file and what
//! to do, so `check-config` and a start that fails say the same thing.

use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, thiserror::Error)]
pub enum PemError {
    #[error("{}: cannot be read ({source}); check the path and that Portcullis may read it", path.display())]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: no PEM certificate in it (expected -----BEGIN CERTIFICATE-----)", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{}: no PEM private key in it (expected PKCS#8, PKCS#1 or SEC1: -----BEGIN … PRIVATE KEY-----)", path.display())]
    NoKey { path: PathBuf },
    #[error("{}: not valid PEM ({detail})", path.display())]
    Malformed { path: PathBuf, detail: String },
}

fn read(path: &Path) -> Result<Vec<u8>, PemError> {
    std::fs::read(path).map_err(|source| PemError::Unreadable {
        path: path.to_owned(),
        source,
    })
}

/// Every certificate in the file, in order (a chain: leaf first).
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let bytes = read(path)?;
    let certificates = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PemError::Malformed {
            path: path.to_owned(),
            detail: e.to_string(),
        })?;
    if certificates.is_empty() {
        return Err(PemError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certificates)
}

/// The first private key in the file.
pub fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, PemError> {
    let bytes = read(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => PemError::NoKey {
            path: path.to_owned(),
        },
        other => PemError::Malformed {
            path: path.to_owned(),
            detail: other.to_string(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_empty_and_wrong_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let message = certificates(&missing).unwrap_err().to_string();
        assert!(message.contains("missing.pem: cannot be read"), "{message}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not pem at all\n").unwrap();
        assert!(matches!(
            certificates(&empty),
            Err(PemError::NoCertificate { .. })
        ));
        assert!(matches!(private_key(&empty), Err(PemError::NoKey { .. })));
        let broken = dir.path().join("broken.pem");
        std::fs::write(
            &broken,
            "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        assert!(
            matches!(certificates(&broken), Err(PemError::Malformed { .. })),
            "{:?}",
            certificates(&broken)
        );
    }
}
