//! A sign-in that proved the password but is not finished: a second factor is owed, or the
//! account must choose a new password first. No session exists until it is; what the next form
//! needs is sealed with the server's key into a hidden field, so any replica can finish it and
//! nobody can forge one. Each step seals under a purpose of its own, so a value made for one
//! step never opens at another (a sign-in cannot skip its second factor).

use portcullis_auth::seal::Sealer;
use portcullis_core::Timestamp;
use serde::{Deserialize, Serialize};

/// How long the next step may take.
const LIFETIME: std::time::Duration = std::time::Duration::from_secs(600);
/// The step a sign-in waits at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    SecondFactor,
    NewPassword,
}

impl Step {
    /// Sealed values of other kinds (provider tokens, the other step) never open as this one.
    fn purpose(self) -> &'static str {
        match self {
            Step::SecondFactor => "pending-second-factor/v1",
            Step::NewPassword => "pending-sign-in/v1",
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct PendingSignIn {
    purpose: String,
    pub user_id: String,
    pub return_to: String,
    /// How the password was proved, for the session's audit entry.
    pub method: String,
    /// What was proved so far (RFC 8176 values), for the session.
    #[serde(default)]
    pub amr: Vec<String>,
    expires_at: i64,
}

impl PendingSignIn {
    pub fn new(
        step: Step,
        user_id: &str,
        return_to: &str,
        (method, amr): (&str, &[String]),
        now: Timestamp,
    ) -> Self {
        PendingSignIn {
            purpose: step.purpose().to_owned(),
            user_id: user_id.to_owned(),
            return_to: return_to.to_owned(),
            method: method.to_owned(),
            amr: amr.to_vec(),
            expires_at: now.plus(LIFETIME).0,
        }
    }

    /// The same sign-in, proved further: `method` and `amr` now say how.
    pub fn proved(self, method: String, amr: Vec<String>) -> Self {
        PendingSignIn {
            method,
            amr,
            ..self
        }
    }

    /// The same sign-in, waiting at `step` now.
    pub fn at(self, step: Step, now: Timestamp) -> Self {
        PendingSignIn {
            purpose: step.purpose().to_owned(),
            expires_at: now.plus(LIFETIME).0,
            ..self
        }
    }

    pub fn seal(&self, sealer: &Sealer) -> String {
        // Serialising a struct of strings and integers cannot fail.
        sealer.seal(&serde_json::to_string(self).unwrap_or_default())
    }

    /// The sign-in pending at `step` in `sealed`, if it is one of ours and has not expired.
    pub fn open(sealer: &Sealer, step: Step, sealed: &str, now: Timestamp) -> Option<Self> {
        let plain = sealer.open(sealed).ok()?;
        let pending: PendingSignIn = serde_json::from_str(&plain).ok()?;
        (pending.purpose == step.purpose() && now.0 < pending.expires_at).then_some(pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_only_its_own_unexpired_values() {
        let sealer = Sealer::from_base64(&Sealer::generate_key()).unwrap();
        let now = Timestamp(1_000);
        let pwd = ["pwd".to_owned()];
        let pending = PendingSignIn::new(
            Step::SecondFactor,
            "u1",
            "/app",
            ("local_password", &pwd),
            now,
        );
        let sealed = pending.seal(&sealer);
        let open = |step, sealed: &str, at| PendingSignIn::open(&sealer, step, sealed, at);
        let opened = open(Step::SecondFactor, &sealed, now).unwrap();
        assert_eq!(
            (opened.user_id.as_str(), opened.return_to.as_str()),
            ("u1", "/app")
        );
        assert_eq!(opened.amr, pwd);
        assert!(
            open(Step::NewPassword, &sealed, now).is_none(),
            "a pending second factor must not open as the next step"
        );
        assert!(open(Step::SecondFactor, &sealed, now.plus(LIFETIME)).is_none());
        assert!(open(Step::SecondFactor, "garbage", now).is_none());
        let other = sealer.seal("{\"purpose\":\"something else\"}");
        assert!(open(Step::SecondFactor, &other, now).is_none());
        let other_key = Sealer::from_base64(&Sealer::generate_key()).unwrap();
        assert!(PendingSignIn::open(&other_key, Step::SecondFactor, &sealed, now).is_none());
        let next = opened.at(Step::NewPassword, now).seal(&sealer);
        assert!(open(Step::NewPassword, &next, now).is_some());
        assert!(open(Step::SecondFactor, &next, now).is_none());
    }
}
