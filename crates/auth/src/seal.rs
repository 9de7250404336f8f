//! Sealing provider tokens for storage: XChaCha20-Poly1305 with a key from the configuration, so
//! a copy of the database does not hand out ID or refresh tokens. The same key, through a
//! labelled derivation, authenticates values Portcullis hands out and must recognise later
//! (session-bound CSRF tokens): replicas share it, so any replica recognises them.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use sha2::Sha256;

const NONCE_LEN: usize = 24;

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error(
        "the token key must be 32 bytes in base64url (generate one with `openssl rand -base64 32 | tr '+/' '-_' | tr -d =`)"
    )]
    BadKey,
    #[error("a sealed value could not be opened (wrong key or damaged data)")]
    Damaged,
}

#[derive(Clone)]
pub struct Sealer {
    cipher: XChaCha20Poly1305,
    /// Keys [`Sealer::tag`]; derived from the sealing key, never used to encrypt.
    mac_key: [u8; 32],
}

type HmacSha256 = Hmac<Sha256>;

impl Sealer {
    pub fn from_base64(key: &str) -> Result<Self, SealError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(key.trim().trim_end_matches('='))
            .map_err(|_| SealError::BadKey)?;
        if bytes.len() != 32 {
            return Err(SealError::BadKey);
        }
        let key_bytes = |b: &[u8]| -> [u8; 32] {
            let mut key = [0u8; 32];
            key.copy_from_slice(b);
            key
        };
        Ok(Sealer {
            cipher: XChaCha20Poly1305::new(Key::from_slice(&bytes)),
            mac_key: hmac_sha256(&key_bytes(&bytes), b"portcullis tag key v1"),
        })
    }

    /// An unforgeable tag of `value` for the purpose `label` (base64url, 43 characters): the
    /// same inputs give the same tag on every replica; different labels never collide.
    pub fn tag(&self, label: &str, value: &str) -> String {
        let mut data = Vec::with_capacity(label.len() + 1 + value.len());
        data.extend_from_slice(label.as_bytes());
        data.push(0);
        data.extend_from_slice(value.as_bytes());
        URL_SAFE_NO_PAD.encode(hmac_sha256(&self.mac_key, &data))
    }

    /// A new random key, base64url.
    pub fn generate_key() -> String {
        URL_SAFE_NO_PAD.encode(XChaCha20Poly1305::generate_key(&mut OsRng))
    }

    pub fn seal(&self, plaintext: &str) -> String {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        // Encryption with a valid key and nonce cannot fail for in-memory buffers.
        let ciphertext = self
            .cipher
            .encrypt(&nonce, plaintext.as_bytes())
            .unwrap_or_default();
        let mut out = nonce.to_vec();
        out.extend(ciphertext);
        URL_SAFE_NO_PAD.encode(out)
    }

    pub fn open(&self, sealed: &str) -> Result<String, SealError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(sealed)
            .map_err(|_| SealError::Damaged)?;
        if bytes.len() < NONCE_LEN {
            return Err(SealError::Damaged);
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let plain = self
            .cipher
            .decrypt(XNonce::from_slice(nonce), ciphertext)
            .map_err(|_| SealError::Damaged)?;
        String::from_utf8(plain).map_err(|_| SealError::Damaged)
    }
}

fn hmac_sha256(key: &[u8; 32], data: &[u8]) -> [u8; 32] {
    // HMAC pads a key shorter than SHA-256's 64-byte block with zeros, so padding it here is
    // the same MAC, through the infallible fixed-size constructor.
    let mut block = [0u8; 64];
    block[..32].copy_from_slice(key);
    let mut mac = <HmacSha256 as KeyInit>::new(&block.into());
    mac.update(data);
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper_detection() {
        let sealer = Sealer::from_base64(&Sealer::generate_key()).unwrap();
        let sealed = sealer.seal("eyJ.id.token");
        assert_ne!(sealed, "eyJ.id.token");
        assert_eq!(sealer.open(&sealed).unwrap(), "eyJ.id.token");
        let other = Sealer::from_base64(&Sealer::generate_key()).unwrap();
        assert!(other.open(&sealed).is_err());
        assert!(sealer.open("garbage").is_err());
        assert!(Sealer::from_base64("short").is_err());
    }

    #[test]
    fn tags_depend_on_key_label_and_value() {
        let key = Sealer::generate_key();
        let a = Sealer::from_base64(&key).unwrap();
        let b = Sealer::from_base64(&key).unwrap();
        let other = Sealer::from_base64(&Sealer::generate_key()).unwrap();
        assert_eq!(a.tag("csrf", "s1"), b.tag("csrf", "s1"), "replicas agree");
        assert_ne!(a.tag("csrf", "s1"), a.tag("csrf", "s2"));
        assert_ne!(a.tag("csrf", "s1"), a.tag("other", "s1"));
        assert_ne!(a.tag("csrf", "s1"), other.tag("csrf", "s1"));
        assert_eq!(a.tag("csrf", "s1").len(), 43);
    }
}
