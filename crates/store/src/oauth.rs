//! What the OAuth authorization server keeps: registered clients, authorization codes, grants
//! and refresh tokens (see the migration for why each is shaped as it is). A part of
//! [`crate::Store`] of its own, like [`crate::CredentialStore`].

use async_trait::async_trait;
use portcullis_core::Timestamp;

use crate::StoreError;

/// A client registered dynamically (RFC 7591).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OAuthClient {
    pub id: String,
    pub name: String,
    pub redirect_uris: Vec<String>,
    /// A confidential client's secret, as SHA-256; `None`: a public client (PKCE only).
    pub secret_hash: Option<String>,
    pub created_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
}

/// An authorization code, as issued at consent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthCode {
    pub code_hash: String,
    pub user_id: String,
    pub client_id: String,
    pub client_name: String,
    pub redirect_uri: String,
    /// The PKCE S256 challenge (base64url of SHA-256 of the verifier).
    pub code_challenge: String,
    pub app: String,
    pub resource: String,
    pub scopes: Vec<String>,
    pub expires_at: Timestamp,
}

/// What a user allowed one client at one MCP app.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub id: String,
    pub user_id: String,
    pub client_id: String,
    pub client_name: String,
    pub app: String,
    /// The canonical resource URL its tokens are for.
    pub resource: String,
    pub scopes: Vec<String>,
    pub created_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
    /// Unused this long, it ends; each refresh moves it on.
    pub expires_at: Timestamp,
}

/// What redeeming a code did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Redeemed {
    /// The grant and its first refresh token are stored (replacing the user's earlier grant to
    /// the same client at the same resource).
    Issued,
    /// The code was used before: the grant it became (if any) is deleted with it.
    Replayed,
}

/// What presenting a refresh token did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rotation {
    /// The new refresh token is stored; the presented one is rotated (it still works for the
    /// grace). The grant, with its new expiry.
    Rotated(Grant),
    /// Rotated longer ago than the grace: someone kept an old token. The grant is deleted.
    Reused,
    /// No such token, or its grant expired or is gone.
    Unknown,
}

#[async_trait]
pub trait OAuthStore {
    async fn insert_client(&self, client: &OAuthClient) -> Result<(), StoreError>;
    async fn client(&self, id: &str) -> Result<Option<OAuthClient>, StoreError>;
    async fn touch_client(&self, id: &str, now: Timestamp) -> Result<(), StoreError>;
    /// Deletes registered clients unused (and without a grant) since `before`; returns how many.
    async fn delete_idle_clients(&self, before: Timestamp) -> Result<u64, StoreError>;

    async fn insert_code(&self, code: &AuthCode) -> Result<(), StoreError>;
    /// The code, used or not (expiry is the caller's to check).
    async fn code(&self, code_hash: &str) -> Result<Option<AuthCode>, StoreError>;
    /// Spends the code for `grant`, with the grant's first refresh token, in one transaction;
    /// of two redemptions racing exactly one is `Issued`.
    async fn redeem_code(
        &self,
        code_hash: &str,
        grant: &Grant,
        refresh_hash: &str,
        now: Timestamp,
    ) -> Result<Redeemed, StoreError>;
    /// Rotates a refresh token to `new_hash`, moving its grant's expiry to `expires_at` (and
    /// narrowing its scopes to `narrow_to`, when given); the old token is honoured again for
    /// `grace` seconds after its first rotation.
    #[allow(clippy::too_many_arguments)]
    async fn rotate_refresh(
        &self,
        old_hash: &str,
        new_hash: &str,
        narrow_to: Option<&[String]>,
        grace: i64,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<Rotation, StoreError>;
    /// The grant a refresh token belongs to (to revoke it).
    async fn grant_of_refresh(&self, token_hash: &str) -> Result<Option<Grant>, StoreError>;
    async fn grant(&self, id: &str) -> Result<Option<Grant>, StoreError>;
    /// Grants not expired at `now`: what access tokens are checked against.
    async fn live_grants(&self, now: Timestamp) -> Result<Vec<Grant>, StoreError>;
    /// The user's grants, newest first.
    async fn grants_of(&self, user_id: &str) -> Result<Vec<Grant>, StoreError>;
    async fn delete_grant(&self, id: &str) -> Result<bool, StoreError>;
    async fn touch_grant(&self, id: &str, now: Timestamp) -> Result<(), StoreError>;
    /// Removes expired codes and grants, and refresh tokens rotated before `rotated_before`.
    async fn delete_expired_oauth(
        &self,
        now: Timestamp,
        rotated_before: Timestamp,
    ) -> Result<u64, StoreError>;
}
