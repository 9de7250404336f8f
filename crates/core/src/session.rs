//! Server-side sessions and their expiry rules.

use std::time::Duration;

use crate::Timestamp;

/// Expiry rules for every session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionPolicy {
    /// A session unused for this long ends.
    pub idle: Duration,
    /// A session ends this long after sign-in, however busy it is.
    pub absolute: Duration,
}

/// A stored session. The id is kept only as a SHA-256 hash, so a copy of the database does not
/// hand out live cookies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    pub id_hash: String,
    pub user_id: String,
    pub created_at: Timestamp,
    pub last_seen: Timestamp,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    /// The provider side of the sign-in (`None` for local accounts).
    pub provider: Option<ProviderSession>,
    /// How the sign-in was proved: RFC 8176 method values (`pwd`, `otp`, `mfa`, …), `mfa`
    /// whenever more than one factor was (or the provider said so).
    pub amr: Vec<String>,
}

/// The `amr` value a session carries when it was proved with more than one factor.
pub const AMR_MFA: &str = "mfa";

/// What Portcullis keeps about a sign-in through an identity provider.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderSession {
    pub provider: String,
    /// The provider's `sub` and `sid` for this sign-in, matched by back-channel logout.
    pub subject: Option<String>,
    pub sid: Option<String>,
    /// The ID token, encrypted, for RP-initiated logout (`id_token_hint`).
    pub id_token_enc: Option<String>,
    /// The refresh token, encrypted, and when the access token expires.
    pub refresh_token_enc: Option<String>,
    pub access_expires_at: Option<Timestamp>,
    /// Where each identity field came from at sign-in (`("name", "given_name + family_name")`).
    pub claim_sources: Vec<(String, String)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expiry {
    Idle,
    Absolute,
}

impl Session {
    pub fn expires_at(&self, policy: &SessionPolicy) -> Timestamp {
        let absolute = self.created_at.plus(policy.absolute);
        let idle = self.last_seen.plus(policy.idle);
        absolute.min(idle)
    }

    /// Whether the session is still usable at `now`, and if not, why.
    pub fn check(&self, policy: &SessionPolicy, now: Timestamp) -> Result<(), Expiry> {
        if now >= self.created_at.plus(policy.absolute) {
            return Err(Expiry::Absolute);
        }
        if now >= self.last_seen.plus(policy.idle) {
            return Err(Expiry::Idle);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_and_absolute_expiry() {
        let policy = SessionPolicy {
            idle: Duration::from_secs(60),
            absolute: Duration::from_secs(600),
        };
        let mut s = Session {
            id_hash: "h".into(),
            user_id: "u".into(),
            created_at: Timestamp(1000),
            last_seen: Timestamp(1000),
            client_ip: None,
            user_agent: None,
            provider: None,
            amr: Vec::new(),
        };
        assert_eq!(s.check(&policy, Timestamp(1059)), Ok(()));
        assert_eq!(s.check(&policy, Timestamp(1060)), Err(Expiry::Idle));
        s.last_seen = Timestamp(1590);
        assert_eq!(s.check(&policy, Timestamp(1599)), Ok(()));
        assert_eq!(s.check(&policy, Timestamp(1600)), Err(Expiry::Absolute));
        assert_eq!(s.expires_at(&policy), Timestamp(1600));
    }
}
