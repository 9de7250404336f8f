//! What proves who someone is, apart from their profile: local passwords and one-time reset
//! links (and, with second factors, their secrets). A part of [`crate::Store`] of its own, so the
//! directory's queries and the credentials' stay in files of their own size.

use async_trait::async_trait;
use portcullis_core::Timestamp;

use crate::StoreError;

/// A one-time password reset link, kept only as the SHA-256 hash of its token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PasswordReset {
    pub token_hash: String,
    pub user_id: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    /// Who made it (the audit actor's id).
    pub created_by: String,
}

/// What a reset link is, looked at or used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResetLink {
    /// Valid: the user it is for.
    Valid {
        user_id: String,
    },
    /// Used already (links work once).
    Used,
    Expired,
    /// No such link, or one cancelled by a later password change.
    Unknown,
}

/// A second factor of a user: an authenticator app (TOTP) or a passkey.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Factor {
    pub id: String,
    pub user_id: String,
    pub kind: FactorKind,
    /// What the user called it ("Phone").
    pub label: String,
    /// The secret (a passkey's credential), sealed with the token key.
    pub secret_enc: String,
    /// A passkey's credential id (base64url), by which a passwordless sign-in finds it.
    pub credential_id: Option<String>,
    /// TOTP: the last time step accepted; passkey: the last signature counter.
    pub last_step: i64,
    pub created_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FactorKind {
    /// A time-based one-time password app (RFC 6238).
    Totp,
    /// A WebAuthn credential (platform authenticator or security key).
    Passkey,
}

impl FactorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FactorKind::Totp => "totp",
            FactorKind::Passkey => "passkey",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "totp" => Some(FactorKind::Totp),
            "passkey" => Some(FactorKind::Passkey),
            _ => None,
        }
    }
}

#[async_trait]
pub trait CredentialStore {
    /// Sets the user's local password hash (`None` removes it) and whether it must be changed
    /// at the next sign-in. Reset links not used yet stop working: a new password supersedes
    /// them.
    async fn set_password(
        &self,
        user_id: &str,
        hash: Option<&str>,
        must_change: bool,
        now: Timestamp,
    ) -> Result<(), StoreError>;
    /// The user's password hash, by id.
    async fn password_hash(&self, user_id: &str) -> Result<Option<String>, StoreError>;
    async fn insert_reset(&self, reset: &PasswordReset) -> Result<(), StoreError>;
    /// The link's state, leaving it as it is (to show the form).
    async fn reset_link(&self, token_hash: &str, now: Timestamp) -> Result<ResetLink, StoreError>;
    /// Uses the link to set the password hash `password_hash`: `Valid` at most once, however
    /// many replicas race for it. The link is spent, the password set and the user's sessions
    /// ended in one transaction: a failure leaves all as it was (the link still works).
    async fn use_reset(
        &self,
        token_hash: &str,
        password_hash: &str,
        now: Timestamp,
    ) -> Result<ResetLink, StoreError>;
    /// Ends every session of the user but `keep`; returns the ended sessions' id hashes.
    async fn delete_sessions_except(
        &self,
        user_id: &str,
        keep: &str,
    ) -> Result<Vec<String>, StoreError>;

    /// The user's second factors, oldest first.
    async fn factors(&self, user_id: &str) -> Result<Vec<Factor>, StoreError>;
    async fn insert_factor(&self, factor: &Factor) -> Result<(), StoreError>;
    /// Removes one factor of the user; false when the user has no such factor. The last one
    /// takes the recovery codes with it: they stand in for factors, not on their own.
    async fn delete_factor(&self, user_id: &str, factor_id: &str) -> Result<bool, StoreError>;
    /// Removes every factor and recovery code of the user; returns how many factors went.
    async fn delete_factors(&self, user_id: &str) -> Result<u64, StoreError>;
    /// Accepts the TOTP time step `step` of a factor at most once: true only when it is later
    /// than every step accepted before (two replicas racing with one code: one wins).
    async fn use_totp_step(
        &self,
        factor_id: &str,
        step: i64,
        now: Timestamp,
    ) -> Result<bool, StoreError>;
    /// The passkey with this credential id, whoever's it is.
    async fn factor_by_credential(&self, credential_id: &str)
    -> Result<Option<Factor>, StoreError>;
    /// Records a passkey's use with signature counter `counter`: true when the counter grew
    /// (or the authenticator keeps none, sending 0), in the statement that checks it.
    async fn use_passkey_counter(
        &self,
        factor_id: &str,
        counter: i64,
        now: Timestamp,
    ) -> Result<bool, StoreError>;
    /// Replaces the user's recovery codes (hashes) with a new set.
    async fn replace_recovery_codes(
        &self,
        user_id: &str,
        code_hashes: &[String],
        now: Timestamp,
    ) -> Result<(), StoreError>;
    /// Uses one recovery code: true at most once per code.
    async fn use_recovery_code(
        &self,
        user_id: &str,
        code_hash: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError>;
    /// How many of the user's recovery codes are still unused.
    async fn recovery_codes_left(&self, user_id: &str) -> Result<u64, StoreError>;

    /// Counts one more failed sign-in under a throttle key at `now`, in one statement (two
    /// replicas counting at once both count); a count whose last failure is before
    /// `forget_before` starts again at one. Returns the count now.
    async fn count_failure(
        &self,
        key: &str,
        now: Timestamp,
        forget_before: Timestamp,
    ) -> Result<u32, StoreError>;
    /// The failures counted under each of `keys` that has any: the count and the last failure.
    async fn failures(&self, keys: &[&str]) -> Result<Vec<FailureCount>, StoreError>;
    /// Forgets a key's failures (after a success).
    async fn clear_failures(&self, key: &str) -> Result<(), StoreError>;
    /// Removes counts whose last failure is before `before`; returns how many.
    async fn delete_stale_failures(&self, before: Timestamp) -> Result<u64, StoreError>;
}

/// The failed sign-ins counted under one throttle key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailureCount {
    pub key: String,
    pub failures: u32,
    pub last_failure: Timestamp,
}
