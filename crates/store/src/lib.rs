//! Persistence. One [`Store`] trait; the embedded SQLite implementation is the default.
//!
//! The store is passed in as `Arc<dyn Store>`; nothing here is global. Timestamps come from the
//! caller's clock so the store never reads the time itself.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod acme;
mod copy;
mod credentials;
mod dialect;
mod error;
mod oauth;
mod sql;

use async_trait::async_trait;
use portcullis_core::session::Session;
use portcullis_core::user::{User, UserStatus};
use portcullis_core::{Email, Role, Timestamp};

pub use acme::AcmeStore;
pub use copy::{Dump, Value};
pub use credentials::{
    CredentialStore, Factor, FactorKind, FailureCount, PasswordReset, ResetLink,
};
pub use dialect::Dialect;
pub use error::{Conflict, StoreError};
pub use oauth::{AuthCode, Grant, OAuthClient, OAuthStore, Redeemed, Rotation};
pub use sql::{PoolSettings, SqlStore, TEST_DATABASE_VAR};

/// A user to create. The id is chosen by the caller.
#[derive(Clone, Debug)]
pub struct NewUser {
    pub id: String,
    pub username: String,
    pub email: Option<Email>,
    pub display_name: Option<String>,
    pub role: Role,
    pub status: UserStatus,
    pub password_hash: Option<String>,
}

/// A provider identity linked to a user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkedIdentity {
    pub issuer: String,
    pub subject: String,
    pub user_id: String,
    pub provider: String,
    pub email: Option<Email>,
}

/// A sign-in through a provider that has started and not yet expired.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthFlow {
    pub state_hash: String,
    pub provider: String,
    /// Hash of the browser-binding cookie: a callback from another browser is refused.
    pub binding_hash: String,
    pub nonce: String,
    pub verifier: String,
    pub return_to: String,
    pub created_at: Timestamp,
    pub completed_at: Option<Timestamp>,
}

/// An API key as stored (never the key itself).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredKey {
    pub id: String,
    pub hash: String,
    pub name: String,
    pub owner_id: String,
    pub allowed_apps: Vec<String>,
    pub expires_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
}

/// A group and how many people are in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupSummary {
    pub name: String,
    pub members: u64,
    /// The id SCIM knows the group by (assigned at its first SCIM use; survives renames).
    pub scim_id: Option<String>,
    pub external_id: Option<String>,
}

/// What changed, for processes that cache directory state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    /// A user's status, role, groups or profile changed.
    User,
    /// An API key was created or revoked.
    Key,
    /// The assertion signing keys were rotated.
    SigningKey,
    /// A session ended (signed out, ended by an admin or by the provider); the subject is its
    /// id hash. Other processes drop it from their caches.
    Session,
    /// An OAuth grant was made, changed or revoked: access tokens are checked against grants.
    Grant,
}

impl ChangeKind {
    /// The kinds as the change triggers write them.
    fn parse(s: &str) -> Option<Self> {
        match s {
            "user" => Some(ChangeKind::User),
            "key" => Some(ChangeKind::Key),
            "signing_key" => Some(ChangeKind::SigningKey),
            "session" => Some(ChangeKind::Session),
            "grant" => Some(ChangeKind::Grant),
            _ => None,
        }
    }
}

/// One delivery of a provisioning event to one sink.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub seq: i64,
    pub sink: String,
    pub user_id: String,
    /// `user_created`, `user_updated`, `user_disabled`, `user_enabled`, `role_changed`,
    /// `groups_changed`, `user_deleted`.
    pub kind: String,
    /// `pending`, `delivered`, `dead` or `discarded`.
    pub state: String,
    pub attempts: u32,
    pub created_at: Timestamp,
    pub next_attempt_at: Timestamp,
    pub last_error: Option<String>,
}

/// The outbox at a glance, for metrics and `/ready`-independent health.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OutboxStats {
    pub pending: u64,
    pub oldest_pending: Option<Timestamp>,
    pub dead: u64,
}

/// A key that signs identity assertions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredSigningKey {
    pub kid: String,
    /// The P-256 private scalar, sealed with the token key.
    pub private_key_enc: String,
    pub created_at: Timestamp,
    pub retired_at: Option<Timestamp>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub seq: i64,
    pub kind: ChangeKind,
    pub subject: String,
}

/// One audit record: an auth decision or directory change, who made it and from where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEvent {
    pub at: Timestamp,
    /// e.g. `sign_in`, `sign_out`, `user_created`.
    pub action: String,
    /// `success` or `failure`.
    pub outcome: String,
    pub actor: Option<String>,
    pub subject: Option<String>,
    pub reason: Option<String>,
    pub client_ip: Option<String>,
}

/// Which audit entries to list.
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    /// Only entries older than this id (the next page).
    pub before: Option<i64>,
    /// Only this action (`sign_in`, `user_deleted`…).
    pub action: Option<String>,
    /// Only entries by or about this user: `(id, username)` — the trail names actors by id
    /// (with ` (key …)` for key calls) and subjects by username.
    pub user: Option<(String, String)>,
    /// Only entries at or after this time.
    pub since: Option<Timestamp>,
    /// Only entries before this time.
    pub until: Option<Timestamp>,
}

#[async_trait]
pub trait Store: CredentialStore + OAuthStore + AcmeStore + Send + Sync + 'static {
    /// Cheap round trip, for `/ready`.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Creates a user; [`StoreError::Conflict`] when the username or email is taken.
    async fn create_user(&self, user: NewUser, now: Timestamp) -> Result<User, StoreError>;
    /// Creates the first admin, atomically refusing with [`StoreError::Conflict`] when any admin
    /// already exists (so two setup requests cannot both succeed).
    async fn create_first_admin(&self, user: NewUser, now: Timestamp) -> Result<User, StoreError>;
    async fn user_by_id(&self, id: &str) -> Result<Option<User>, StoreError>;
    /// Looks a user up by username or email (case-insensitive), with their password hash.
    async fn user_with_password(
        &self,
        login: &str,
    ) -> Result<Option<(User, Option<String>)>, StoreError>;
    async fn count_admins(&self) -> Result<u64, StoreError>;
    async fn user_by_username(&self, username: &str) -> Result<Option<User>, StoreError>;
    /// Users ordered by username, `limit` from `offset`; with a query, only those whose username,
    /// email or display name contains it (case-insensitive). Also returns how many match in all.
    async fn find_users(
        &self,
        query: Option<&str>,
        offset: u32,
        limit: u32,
    ) -> Result<(Vec<User>, u64), StoreError>;
    async fn set_status(
        &self,
        user_id: &str,
        status: UserStatus,
        now: Timestamp,
    ) -> Result<(), StoreError>;
    /// Every group with its member count, by name.
    async fn list_groups(&self) -> Result<Vec<GroupSummary>, StoreError>;
    /// The members of a group, each with where the membership comes from (`local` or
    /// `provider:<id>`), by username.
    async fn group_members(&self, group: &str) -> Result<Vec<(User, String)>, StoreError>;
    /// Removes a hand-made membership; returns whether there was one. Provider memberships are
    /// left to the provider's sync.
    async fn remove_from_group(&self, user_id: &str, group: &str) -> Result<bool, StoreError>;
    /// Adds a user to a local group, creating the group if needed. Idempotent.
    async fn add_to_group(
        &self,
        user_id: &str,
        group: &str,
        now: Timestamp,
    ) -> Result<(), StoreError>;

    async fn user_by_email(&self, email: &str) -> Result<Option<User>, StoreError>;
    /// The user a provider identity belongs to.
    async fn user_by_identity(
        &self,
        issuer: &str,
        subject: &str,
    ) -> Result<Option<User>, StoreError>;
    /// The provider identities linked to a user.
    async fn identities_of(&self, user_id: &str) -> Result<Vec<LinkedIdentity>, StoreError>;
    /// Links (or refreshes the link of) a provider identity to a user.
    async fn link_identity(
        &self,
        identity: &LinkedIdentity,
        now: Timestamp,
    ) -> Result<(), StoreError>;
    /// Updates the profile fields a provider asserts; a field it does not carry (`None`) is
    /// kept as it is.
    async fn update_profile(
        &self,
        user_id: &str,
        email: Option<&Email>,
        display_name: Option<&str>,
        now: Timestamp,
    ) -> Result<(), StoreError>;
    async fn set_role(&self, user_id: &str, role: Role, now: Timestamp) -> Result<(), StoreError>;
    /// Replaces the user's memberships from `source` (e.g. `provider:entra`) with `groups`,
    /// leaving memberships from other sources (hand-made ones included) alone.
    async fn sync_groups(
        &self,
        user_id: &str,
        source: &str,
        groups: &[String],
        now: Timestamp,
    ) -> Result<(), StoreError>;

    async fn insert_flow(&self, flow: &AuthFlow) -> Result<(), StoreError>;
    async fn flow(&self, state_hash: &str) -> Result<Option<AuthFlow>, StoreError>;
    /// Marks a flow completed; false when it already was (a replayed callback).
    async fn complete_flow(&self, state_hash: &str, now: Timestamp) -> Result<bool, StoreError>;
    /// Open flows of one browser started at or after `since`.
    async fn count_flows(&self, binding_hash: &str, since: Timestamp) -> Result<u64, StoreError>;
    async fn delete_flows_before(&self, before: Timestamp) -> Result<u64, StoreError>;

    async fn insert_session(&self, session: &Session) -> Result<(), StoreError>;
    async fn session(&self, id_hash: &str) -> Result<Option<Session>, StoreError>;
    /// A user's sessions, newest first.
    async fn sessions_of(&self, user_id: &str) -> Result<Vec<Session>, StoreError>;
    async fn touch_session(&self, id_hash: &str, last_seen: Timestamp) -> Result<(), StoreError>;
    /// Records refreshed provider tokens for a session.
    async fn update_session_tokens(
        &self,
        id_hash: &str,
        refresh_token_enc: Option<&str>,
        access_expires_at: Option<Timestamp>,
    ) -> Result<(), StoreError>;
    /// Returns whether a session was deleted.
    async fn delete_session(&self, id_hash: &str) -> Result<bool, StoreError>;
    /// Deletes the sessions a provider's back-channel logout names (by `sid`, or by `sub` when the
    /// token carries no `sid`) and returns their id hashes.
    async fn delete_provider_sessions(
        &self,
        provider: &str,
        subject: Option<&str>,
        sid: Option<&str>,
    ) -> Result<Vec<String>, StoreError>;
    /// Deletes sessions created before `created_before` or idle since before `idle_before`.
    async fn delete_expired_sessions(
        &self,
        created_before: Timestamp,
        idle_before: Timestamp,
    ) -> Result<u64, StoreError>;
    async fn count_sessions(&self) -> Result<u64, StoreError>;

    async fn create_key(&self, key: &StoredKey) -> Result<(), StoreError>;
    /// Returns whether a key was revoked (false: unknown or already revoked).
    async fn revoke_key(&self, id: &str, now: Timestamp) -> Result<bool, StoreError>;
    /// Keys not revoked (expired ones included: the caller decides at use time).
    async fn active_keys(&self) -> Result<Vec<StoredKey>, StoreError>;
    async fn keys_of(&self, owner_id: &str) -> Result<Vec<StoredKey>, StoreError>;
    async fn touch_key(&self, id: &str, now: Timestamp) -> Result<(), StoreError>;

    /// The change feed since `seq`, oldest first. Database triggers write it in the same
    /// transaction as each change (migrations `0009_change_triggers` / `0002_change_triggers`),
    /// so there is no method to write it: no code path can forget a change.
    async fn changes_since(&self, seq: i64) -> Result<Vec<Change>, StoreError>;
    async fn latest_change(&self) -> Result<i64, StoreError>;
    /// Deletes every session of a user; returns their id hashes.
    async fn delete_user_sessions(&self, user_id: &str) -> Result<Vec<String>, StoreError>;

    /// Changes a user's username, email and display name at once (SCIM replaces).
    async fn update_user(
        &self,
        user_id: &str,
        username: &str,
        email: Option<&Email>,
        display_name: Option<&str>,
        now: Timestamp,
    ) -> Result<(), StoreError>;
    /// Removes the user's linked identity of this issuer, if any.
    async fn unlink_identity(&self, user_id: &str, issuer: &str) -> Result<(), StoreError>;
    /// Deletes a user with their sessions, memberships, identities and keys.
    async fn delete_user(&self, user_id: &str) -> Result<bool, StoreError>;
    /// Creates a group; `false` when it already existed.
    async fn create_group(&self, name: &str, now: Timestamp) -> Result<bool, StoreError>;
    async fn delete_group(&self, name: &str) -> Result<bool, StoreError>;
    async fn rename_group(&self, from: &str, to: &str, now: Timestamp) -> Result<(), StoreError>;
    /// Sets a group's SCIM id (only if it has none) and external id.
    async fn set_group_scim(
        &self,
        name: &str,
        scim_id: &str,
        external_id: Option<&str>,
    ) -> Result<(), StoreError>;
    /// Adds or removes one membership of the given source (`local`, `scim`, `provider:<id>`).
    async fn set_membership(
        &self,
        user_id: &str,
        group: &str,
        source: &str,
        member: bool,
        now: Timestamp,
    ) -> Result<(), StoreError>;

    /// Copies new outbox events into `deliveries`, one row per sink, due at `now` (the worker's
    /// clock, not the database's); returns how many rows.
    async fn fan_out(&self, sinks: &[String], now: Timestamp) -> Result<u64, StoreError>;
    /// Takes pending deliveries that are due, the oldest per (sink, user) only, for the caller
    /// until `lease_until`: other workers (replicas) skip them meanwhile, and take them again after
    /// it if the caller died without settling them.
    async fn claim_due_deliveries(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
    ) -> Result<Vec<Delivery>, StoreError>;
    /// Gives back claims taken with `lease_until` that are still unsettled (a delivery cut off by
    /// a shutdown): due again at `now`, so another replica need not wait out the lease. A claim
    /// settled meanwhile, or taken over by another worker after its lease, is left alone.
    async fn release_claims(
        &self,
        claims: &[(String, i64)],
        lease_until: Timestamp,
        now: Timestamp,
    ) -> Result<u64, StoreError>;
    /// The newest undelivered (pending or dead) delivery of this user to this sink, read before
    /// the user's state, so that delivering that state covers every event up to it.
    async fn latest_pending_seq(
        &self,
        sink: &str,
        user_id: &str,
    ) -> Result<Option<i64>, StoreError>;
    /// Marks every pending or dead delivery of this user and sink up to `seq` delivered: the sink
    /// has the user's state as of then, which supersedes those events.
    async fn delivered(
        &self,
        sink: &str,
        user_id: &str,
        up_to_seq: i64,
        now: Timestamp,
    ) -> Result<(), StoreError>;
    /// Records a failed attempt: a retry at `next_attempt_at`, or dead when `dead`.
    async fn delivery_failed(
        &self,
        sink: &str,
        seq: i64,
        error: &str,
        next_attempt_at: Timestamp,
        dead: bool,
    ) -> Result<(), StoreError>;
    async fn outbox_stats(&self) -> Result<OutboxStats, StoreError>;
    /// The newest delivery of this user to each sink (their provisioning status).
    async fn deliveries_of_user(&self, user_id: &str) -> Result<Vec<Delivery>, StoreError>;
    /// Deliveries in a state (`dead`, `pending`…), oldest first.
    async fn deliveries_in(&self, state: &str, limit: u32) -> Result<Vec<Delivery>, StoreError>;
    /// Dead deliveries back to pending, due now (all, or one `(sink, seq)`); returns how many.
    async fn retry_dead(
        &self,
        which: Option<(&str, i64)>,
        now: Timestamp,
    ) -> Result<u64, StoreError>;
    /// Dead deliveries given up for good (all, or one); returns how many.
    async fn discard_dead(
        &self,
        which: Option<(&str, i64)>,
        now: Timestamp,
    ) -> Result<u64, StoreError>;

    /// Every signing key, newest first.
    async fn signing_keys(&self) -> Result<Vec<StoredSigningKey>, StoreError>;
    /// Adds a signing key and retires every other active one, at once (in one transaction).
    async fn rotate_signing_key(&self, key: &StoredSigningKey) -> Result<(), StoreError>;

    async fn append_audit(&self, event: &AuditEvent) -> Result<(), StoreError>;
    /// The newest events first.
    async fn recent_audit(&self, limit: u32) -> Result<Vec<AuditEvent>, StoreError>;
    /// A page of the audit trail, newest first, with each record's id, narrowed by `filter`;
    /// `filter.before` continues from the last id of the previous page.
    async fn audit_page(
        &self,
        filter: &AuditFilter,
        limit: u32,
    ) -> Result<Vec<(i64, AuditEvent)>, StoreError>;
}
