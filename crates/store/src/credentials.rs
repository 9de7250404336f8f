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
    /// Uses the link: `Valid` at most once, however many replicas race for it.
    async fn use_reset(&self, token_hash: &str, now: Timestamp) -> Result<ResetLink, StoreError>;
    /// Ends every session of the user but `keep`; returns the ended sessions' id hashes.
    async fn delete_sessions_except(
        &self,
        user_id: &str,
        keep: &str,
    ) -> Result<Vec<String>, StoreError>;
}
