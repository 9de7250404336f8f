//! A sign-in that proved the password but is not finished: the account must choose a new
//! password first. No session exists until it is; what the next form needs is sealed with the
//! server's key into a hidden field, so any replica can finish it and nobody can forge one.

use portcullis_auth::seal::Sealer;
use portcullis_core::Timestamp;
use serde::{Deserialize, Serialize};

/// How long the next step may take.
const LIFETIME: std::time::Duration = std::time::Duration::from_secs(600);
/// Sealed values of other kinds (provider tokens) are never mistaken for this one.
const PURPOSE: &str = "pending-sign-in/v1";

#[derive(Debug, Serialize, Deserialize)]
pub struct PendingSignIn {
    purpose: String,
    pub user_id: String,
    pub return_to: String,
    /// How the password was proved, for the session's audit entry.
    pub method: String,
    expires_at: i64,
}

impl PendingSignIn {
    pub fn new(user_id: &str, return_to: &str, method: &str, now: Timestamp) -> Self {
        PendingSignIn {
            purpose: PURPOSE.to_owned(),
            user_id: user_id.to_owned(),
            return_to: return_to.to_owned(),
            method: method.to_owned(),
            expires_at: now.plus(LIFETIME).0,
        }
    }

    pub fn seal(&self, sealer: &Sealer) -> String {
        // Serialising a struct of strings and integers cannot fail.
        sealer.seal(&serde_json::to_string(self).unwrap_or_default())
    }

    /// The pending sign-in in `sealed`, if it is one of ours and has not expired.
    pub fn open(sealer: &Sealer, sealed: &str, now: Timestamp) -> Option<Self> {
        let plain = sealer.open(sealed).ok()?;
        let pending: PendingSignIn = serde_json::from_str(&plain).ok()?;
        (pending.purpose == PURPOSE && now.0 < pending.expires_at).then_some(pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_only_its_own_unexpired_values() {
        let sealer = Sealer::from_base64(&Sealer::generate_key()).unwrap();
        let now = Timestamp(1_000);
        let sealed = PendingSignIn::new("u1", "/app", "local_password", now).seal(&sealer);
        let opened = PendingSignIn::open(&sealer, &sealed, now).unwrap();
        assert_eq!(
            (opened.user_id.as_str(), opened.return_to.as_str()),
            ("u1", "/app")
        );
        assert!(PendingSignIn::open(&sealer, &sealed, now.plus(LIFETIME)).is_none());
        assert!(PendingSignIn::open(&sealer, "garbage", now).is_none());
        let other = sealer.seal("{\"purpose\":\"something else\"}");
        assert!(PendingSignIn::open(&sealer, &other, now).is_none());
        let other_key = Sealer::from_base64(&Sealer::generate_key()).unwrap();
        assert!(PendingSignIn::open(&other_key, &sealed, now).is_none());
    }
}
