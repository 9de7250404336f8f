//! Time-based one-time passwords (RFC 6238, over RFC 4226's HOTP) with the parameters every
//! authenticator app understands: HMAC-SHA-1, six digits, thirty-second steps.

use data_encoding::BASE32_NOPAD;
use hmac::{Hmac, Mac};
use portcullis_core::Timestamp;
use rand::RngCore;
use sha1::Sha1;

use crate::secret::constant_time_eq;

const DIGITS: usize = 6;
/// Seconds per time step.
pub const STEP: i64 = 30;
/// Steps either side of now whose code is still accepted: a phone's clock a little off, or a
/// code typed just as it changed.
const WINDOW: i64 = 1;
/// RFC 4226 asks for at least 128 bits and recommends 160.
const SECRET_BYTES: usize = 20;

/// A TOTP shared secret.
#[derive(Clone, PartialEq, Eq)]
pub struct TotpSecret(Vec<u8>);

impl std::fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpSecret(…)")
    }
}

impl TotpSecret {
    pub fn generate() -> Self {
        let mut bytes = vec![0u8; SECRET_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        TotpSecret(bytes)
    }

    /// The secret as authenticator apps take it typed in: base32, upper case, no padding.
    pub fn base32(&self) -> String {
        BASE32_NOPAD.encode(&self.0)
    }

    /// Reads [`Self::base32`] back (spaces and case forgiven).
    pub fn from_base32(text: &str) -> Option<Self> {
        let clean: String = text
            .chars()
            .filter(|c| !c.is_whitespace())
            .map(|c| c.to_ascii_uppercase())
            .collect();
        let bytes = BASE32_NOPAD
            .decode(clean.trim_end_matches('=').as_bytes())
            .ok()?;
        (bytes.len() >= 16).then_some(TotpSecret(bytes))
    }

    /// The `otpauth://` link a QR code carries (Google Authenticator's key URI format).
    pub fn otpauth_uri(&self, issuer: &str, account: &str) -> String {
        let enc = |s: &str| {
            percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
        };
        format!(
            "otpauth://totp/{}:{}?secret={}&issuer={}&algorithm=SHA1&digits={DIGITS}&period={STEP}",
            enc(issuer),
            enc(account),
            self.base32(),
            enc(issuer)
        )
    }

    /// The code for one time step.
    fn code(&self, step: i64) -> String {
        let counter = u64::try_from(step).unwrap_or(0);
        hotp(&self.0, counter, DIGITS)
    }

    /// The time step `code` belongs to, if it is the code of a step within the window around
    /// `now` (the latest such step). Every candidate is compared, in constant time, so the
    /// answer's timing says nothing about which step or digit was wrong.
    pub fn matching_step(&self, code: &str, now: Timestamp) -> Option<i64> {
        let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
        if code.len() != DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let current = now.0.div_euclid(STEP);
        let mut found = None;
        for step in current - WINDOW..=current + WINDOW {
            if constant_time_eq(self.code(step).as_bytes(), code.as_bytes()) {
                found = Some(step);
            }
        }
        found
    }

    /// The code at `now` (tests and the CLI's self-check).
    pub fn code_at(&self, now: Timestamp) -> String {
        self.code(now.0.div_euclid(STEP))
    }
}

/// RFC 4226 §5.3: HMAC-SHA-1 of the counter, dynamically truncated to `digits` decimal digits.
fn hotp(key: &[u8], counter: u64, digits: usize) -> String {
    // An HMAC key may have any length: `new_from_slice` cannot fail for HMAC.
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(key) else {
        return String::new();
    };
    mac.update(&counter.to_be_bytes());
    let hash = mac.finalize().into_bytes();
    let offset = usize::from(hash[hash.len() - 1] & 0x0f);
    let binary = (u32::from(hash[offset]) & 0x7f) << 24
        | u32::from(hash[offset + 1]) << 16
        | u32::from(hash[offset + 2]) << 8
        | u32::from(hash[offset + 3]);
    let modulus = 10u32.pow(u32::try_from(digits).unwrap_or(6));
    format!("{:0digits$}", binary % modulus)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 Appendix B, SHA-1 rows (the eight-digit values).
    #[test]
    fn matches_the_rfc_6238_test_vectors() {
        let key = b"12345678901234567890";
        for (time, expected) in [
            (59, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ] {
            let counter = u64::try_from(time / STEP).unwrap();
            assert_eq!(hotp(key, counter, 8), expected, "T = {time}");
        }
        // RFC 4226 Appendix D: HOTP, six digits.
        assert_eq!(hotp(key, 0, 6), "755224");
        assert_eq!(hotp(key, 9, 6), "520489");
    }

    #[test]
    fn accepts_one_step_either_side_and_nothing_else() {
        let secret = TotpSecret(b"12345678901234567890".to_vec());
        let now = Timestamp(1_111_111_111);
        let step = now.0 / STEP;
        let code = secret.code_at(now);
        assert_eq!(secret.matching_step(&code, now), Some(step));
        assert_eq!(
            secret.matching_step(&code, Timestamp(now.0 + STEP)),
            Some(step)
        );
        assert_eq!(
            secret.matching_step(&code, Timestamp(now.0 - STEP)),
            Some(step)
        );
        assert_eq!(
            secret.matching_step(&code, Timestamp(now.0 + 2 * STEP)),
            None
        );
        let spaced = format!("{} {}", &code[..3], &code[3..]);
        assert_eq!(secret.matching_step(&spaced, now), Some(step));
        for bad in ["", "12345", "1234567", "abcdef", "12345a"] {
            assert_eq!(secret.matching_step(bad, now), None, "{bad:?}");
        }
    }

    #[test]
    fn secrets_round_trip_through_base32_and_the_uri() {
        let secret = TotpSecret::generate();
        let text = secret.base32();
        assert_eq!(text.len(), 32);
        assert_eq!(
            TotpSecret::from_base32(&text.to_lowercase()),
            Some(secret.clone())
        );
        assert_eq!(TotpSecret::from_base32("not base32!"), None);
        assert_eq!(
            TotpSecret::from_base32("AAAA"),
            None,
            "too short to be ours"
        );
        let uri = secret.otpauth_uri("Portcullis", "ana@example.com");
        assert!(
            uri.starts_with("otpauth://totp/Portcullis:ana%40example%2Ecom?secret="),
            "{uri}"
        );
        assert!(uri.contains("&issuer=Portcullis&"), "{uri}");
        assert!(
            !format!("{secret:?}").contains(&text),
            "Debug must not show the secret"
        );
    }
}
