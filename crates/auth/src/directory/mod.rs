//! The directory's one writer. Every change to users, groups, memberships, identities and keys
//! comes through here — the CLI, the REST API, the admin UI, SCIM ([`scim`]), the setup link,
//! and sign-ins and refreshes from every identity source ([`sign_in`]) — and is audited with
//! who made it. Running processes learn of each change from the change feed, which database
//! triggers write in the same transaction, so no caller can forget to publish one.

use std::sync::Arc;
use std::time::Duration;

use portcullis_core::user::{User, UserStatus, validate_username};
use portcullis_core::{Clock, Email, Failure, FailureKind, Role};
use portcullis_store::{Conflict, LinkedIdentity, NewUser, Store, StoreError, StoredKey};

use crate::audit::{Actor, Audit, Entry};
use crate::keys;

#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error("no user is called {0:?}")]
    NoSuchUser(String),
    #[error("{0}")]
    Invalid(String),
    /// Something of the user's (a key, a grant) that is not there.
    #[error("{0}")]
    NotFound(String),
    /// Allowed to others, or in other circumstances, but not to this actor now.
    #[error("{0}")]
    Forbidden(String),
    /// The username or email belongs to someone else.
    #[error("{0}")]
    Taken(Conflict),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The one classification of directory failures; pages, JSON, SCIM errors render it.
impl From<DirectoryError> for Failure {
    fn from(e: DirectoryError) -> Self {
        match e {
            DirectoryError::NoSuchUser(_) => Failure::new(FailureKind::NotFound, e.to_string()),
            DirectoryError::Invalid(m) => Failure::bad_request(m),
            DirectoryError::NotFound(m) => Failure::new(FailureKind::NotFound, m),
            DirectoryError::Forbidden(m) => Failure::new(FailureKind::Forbidden, m),
            DirectoryError::Taken(conflict) => Failure::from(StoreError::Conflict(conflict)),
            DirectoryError::Store(s) => Failure::from(s),
        }
    }
}

mod grants;
mod passwords;
mod scim;
mod sign_in;
pub use passwords::{IssuedReset, KeepSessions};
pub use scim::{SCIM_ISSUER, SCIM_SOURCE, ScimGroup, ScimGroupChange, ScimUser};
pub use sign_in::{IdentitySource, LoginRefusal, Resolution};

/// A username or email that belongs to someone else is the caller's conflict to resolve.
fn taken(e: StoreError) -> DirectoryError {
    match e {
        StoreError::Conflict(conflict) => DirectoryError::Taken(conflict),
        other => other.into(),
    }
}

/// Group names travel in comma-separated headers, so they cannot hold a comma.
fn valid_group_name(name: &str) -> Result<(), DirectoryError> {
    if name.is_empty() || name.contains(',') || name.chars().any(char::is_control) {
        return Err(DirectoryError::Invalid(
            "a group name is non-empty and has no commas".into(),
        ));
    }
    Ok(())
}

/// The issuer under which pre-provisioned users' external ids are linked.
pub const EXTERNAL_ISSUER: &str = "external";

pub struct Directory {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    audit: Audit,
    /// The configured apps, which a key may be limited to (with the API scope); `None`
    /// accepts any name (tests that build a directory without a configuration).
    known_apps: Option<KnownApps>,
}

/// What the directory knows of the configured apps, for the keys it makes.
#[derive(Clone, Debug, Default)]
pub struct KnownApps {
    pub names: Vec<String>,
    /// The apps that need a second factor (`require_mfa`).
    pub need_mfa: Vec<String>,
    /// Portcullis's API needs one too (`mfa.required`).
    pub api_needs_mfa: bool,
}

/// A user to add by hand.
pub struct AddUser {
    pub username: String,
    /// Parsed where it entered (form, API body, CLI argument), so a bad one was refused there.
    pub email: Option<Email>,
    pub display_name: Option<String>,
    pub role: Role,
    pub password_hash: Option<String>,
}

impl AddUser {
    fn into_new_user(self) -> NewUser {
        NewUser {
            id: uuid::Uuid::new_v4().to_string(),
            username: self.username,
            email: self.email,
            display_name: self.display_name,
            role: self.role,
            status: UserStatus::Active,
            password_hash: self.password_hash,
        }
    }
}

/// What to do with dead letters of the provisioning outbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settle {
    /// Deliver them again (the running server picks them up within a second).
    Retry,
    /// Give up on them for good.
    Discard,
}

/// A new key: the secret (shown once) and what was stored.
pub struct CreatedKey {
    pub secret: String,
    pub stored: StoredKey,
}

impl Directory {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, audit: Audit) -> Self {
        Directory {
            store,
            clock,
            audit,
            known_apps: None,
        }
    }

    /// Refuses keys limited to an app that is not configured (such a key would work nowhere,
    /// and the typo would go unnoticed until something fails), and keys that reach an app
    /// needing a second factor unless their creator proved one.
    pub fn with_known_apps(mut self, apps: KnownApps) -> Self {
        self.known_apps = Some(apps);
        self
    }

    /// A key is a credential `require_mfa` does not ask again, so making one that reaches such
    /// an app takes what the app would have asked: a second factor.
    fn check_key_mfa(&self, wanted: &[String], actor: &Actor) -> Result<(), DirectoryError> {
        let Some(known) = &self.known_apps else {
            return Ok(());
        };
        let needs = |app: &str| {
            if app == crate::principal::API_SCOPE {
                known.api_needs_mfa
            } else {
                known.need_mfa.iter().any(|n| n == app)
            }
        };
        // No app named: the key reaches every app (not the API).
        let guarded = if wanted.is_empty() {
            known.need_mfa.first().cloned()
        } else {
            wanted.iter().find(|app| needs(app)).cloned()
        };
        match guarded {
            Some(app) if !actor.second_factor => Err(DirectoryError::Forbidden(format!(
                "a key that reaches \"{app}\", which needs a second factor, can only be made from a session signed in with one (sign in again with your authenticator app), or with the CLI"
            ))),
            _ => Ok(()),
        }
    }

    fn check_apps(&self, wanted: &[String]) -> Result<(), DirectoryError> {
        let Some(known) = &self.known_apps else {
            return Ok(());
        };
        let known = &known.names;
        let unknown = wanted
            .iter()
            .find(|app| app.as_str() != crate::principal::API_SCOPE && !known.contains(app));
        match unknown {
            None => Ok(()),
            Some(app) => {
                let mut names: Vec<&str> = known.iter().map(String::as_str).collect();
                names.push(crate::principal::API_SCOPE);
                Err(DirectoryError::Invalid(format!(
                    "no app is called {app:?}; a key can be limited to: {} ({} is Portcullis's own API)",
                    names.join(", "),
                    crate::principal::API_SCOPE
                )))
            }
        }
    }

    async fn find(&self, username: &str) -> Result<User, DirectoryError> {
        self.store
            .user_by_username(username)
            .await?
            .ok_or_else(|| DirectoryError::NoSuchUser(username.to_owned()))
    }

    /// Audits a change that was written. Every process applies it through the change feed,
    /// which database triggers write in the same transaction as the change itself.
    async fn audited(
        &self,
        action: &str,
        actor: &Actor,
        target: &str,
        reason: Option<&str>,
    ) -> Result<(), DirectoryError> {
        self.record(action, actor, target, reason).await;
        Ok(())
    }

    /// Writes one audit entry for a change made by `actor` to `target`.
    async fn record(&self, action: &str, actor: &Actor, target: &str, reason: Option<&str>) {
        self.audit
            .record(Entry {
                action,
                success: true,
                actor: Some(&actor.id),
                subject: Some(target),
                reason,
                client_ip: actor.client_ip.clone(),
            })
            .await;
    }

    /// Retries or discards one dead letter (`(sink, seq)`) or all of them, audited; returns how
    /// many. The admin UI, the API and the CLI all come through here.
    pub async fn settle_dead_letters(
        &self,
        which: Option<(&str, i64)>,
        settle: Settle,
        actor: &Actor,
    ) -> Result<u64, DirectoryError> {
        let now = self.clock.now();
        let (count, action) = match settle {
            Settle::Retry => (self.store.retry_dead(which, now).await?, "outbox_retried"),
            Settle::Discard => (
                self.store.discard_dead(which, now).await?,
                "outbox_discarded",
            ),
        };
        self.record(action, actor, &format!("{count} dead letter(s)"), None)
            .await;
        Ok(count)
    }

    pub async fn add_user(&self, new: AddUser, actor: &Actor) -> Result<User, DirectoryError> {
        validate_username(&new.username).map_err(DirectoryError::Invalid)?;
        let user = self
            .store
            .create_user(new.into_new_user(), self.clock.now())
            .await
            .map_err(taken)?;
        self.audited(
            "user_created",
            actor,
            &user.username,
            Some(user.role.as_str()),
        )
        .await?;
        Ok(user)
    }

    /// The first administrator, created only while there is none (the setup link); refused
    /// with [`Conflict::AdminExists`] once one exists, however many tabs raced for it.
    pub async fn add_first_admin(
        &self,
        mut new: AddUser,
        actor: &Actor,
    ) -> Result<User, DirectoryError> {
        validate_username(&new.username).map_err(DirectoryError::Invalid)?;
        new.role = Role::Admin;
        let user = self
            .store
            .create_first_admin(new.into_new_user(), self.clock.now())
            .await
            .map_err(taken)?;
        self.record("user_created", actor, &user.username, Some("first admin"))
            .await;
        Ok(user)
    }

    /// Pre-provisioning: the user keyed by `external_id` (e.g. a Cognito `sub`) or by email if
    /// one exists, else a new one. Calling it again with the same key changes nothing, so a
    /// sign-up hook that retries cannot create duplicates. Returns the user and whether it is new.
    pub async fn ensure_user(
        &self,
        new: AddUser,
        external_id: Option<&str>,
        actor: &Actor,
    ) -> Result<(User, bool), DirectoryError> {
        if let Some(external) = external_id
            && let Some(user) = self
                .store
                .user_by_identity(EXTERNAL_ISSUER, external)
                .await?
        {
            return Ok((user, false));
        }
        let existing = match &new.email {
            Some(email) => self.store.user_by_email(email).await?,
            None => None,
        };
        let (user, created) = match existing {
            Some(user) => (user, false),
            None => (self.add_user(new, actor).await?, true),
        };
        if let Some(external) = external_id {
            let link = LinkedIdentity {
                issuer: EXTERNAL_ISSUER.to_owned(),
                subject: external.to_owned(),
                user_id: user.id.clone(),
                provider: "api".to_owned(),
                email: user.email.clone(),
            };
            self.store.link_identity(&link, self.clock.now()).await?;
        }
        Ok((user, created))
    }

    /// Changes a user's username, email and display name (what the admin UI, the API, the CLI
    /// and SCIM edit), audited as `user_updated` when anything changed. A username or email
    /// that belongs to someone else is a conflict the caller shows.
    pub async fn edit_user(
        &self,
        user: &User,
        username: &str,
        email: Option<&Email>,
        display_name: Option<&str>,
        actor: &Actor,
    ) -> Result<bool, DirectoryError> {
        if user.username == username
            && user.email.as_ref() == email
            && user.display_name.as_deref() == display_name
        {
            return Ok(false);
        }
        if user.username != username {
            validate_username(username).map_err(DirectoryError::Invalid)?;
        }
        self.store
            .update_user(&user.id, username, email, display_name, self.clock.now())
            .await
            .map_err(taken)?;
        let renamed = (user.username != username).then(|| format!("was {}", user.username));
        self.record("user_updated", actor, username, renamed.as_deref())
            .await;
        Ok(true)
    }

    /// Deletes a user by name: their sessions, keys, memberships and identities end with them,
    /// provisioning sinks get the deletion, and the audit trail keeps what happened. Nobody
    /// deletes their own account (an admin locking themselves out by a slip).
    pub async fn delete_user_named(
        &self,
        username: &str,
        actor: &Actor,
    ) -> Result<(), DirectoryError> {
        let user = self.find(username).await?;
        if user.id == actor.id || actor.id.starts_with(&format!("{} ", user.id)) {
            return Err(DirectoryError::Invalid(
                "you cannot delete your own account; ask another administrator".into(),
            ));
        }
        self.delete_user(&user, actor).await
    }

    pub async fn find_users(
        &self,
        query: Option<&str>,
        offset: u32,
        limit: u32,
    ) -> Result<(Vec<User>, u64), DirectoryError> {
        Ok(self.store.find_users(query, offset, limit).await?)
    }

    /// Disabling ends the user's sessions, open streams and keys on every process.
    pub async fn set_status(
        &self,
        username: &str,
        status: UserStatus,
        actor: &Actor,
    ) -> Result<(), DirectoryError> {
        let user = self.find(username).await?;
        self.change_status(&user, username, status, actor).await
    }

    /// [`Self::set_status`] of a user already found (`username` is what the audit names them).
    async fn change_status(
        &self,
        user: &User,
        username: &str,
        status: UserStatus,
        actor: &Actor,
    ) -> Result<(), DirectoryError> {
        self.store
            .set_status(&user.id, status, self.clock.now())
            .await?;
        let action = if status == UserStatus::Active {
            "user_enabled"
        } else {
            "user_disabled"
        };
        self.audited(action, actor, username, Some(status.as_str()))
            .await
    }

    /// A demotion also ends the user's sessions; their keys carry the new role at once.
    pub async fn set_role(
        &self,
        username: &str,
        role: Role,
        actor: &Actor,
    ) -> Result<(), DirectoryError> {
        let user = self.find(username).await?;
        self.store
            .set_role(&user.id, role, self.clock.now())
            .await?;
        if user.role.is_demotion_to(role) {
            self.store.delete_user_sessions(&user.id).await?;
        }
        self.audited("role_changed", actor, username, Some(role.as_str()))
            .await
    }

    pub async fn add_to_group(
        &self,
        username: &str,
        group: &str,
        actor: &Actor,
    ) -> Result<(), DirectoryError> {
        valid_group_name(group)?;
        let user = self.find(username).await?;
        self.store
            .add_to_group(&user.id, group, self.clock.now())
            .await?;
        self.audited("group_added", actor, username, Some(group))
            .await
    }

    /// Creates an empty local group (to add members to later); audited as `group_created`.
    pub async fn create_group(&self, name: &str, actor: &Actor) -> Result<(), DirectoryError> {
        let name = name.trim();
        valid_group_name(name)?;
        if !self.store.create_group(name, self.clock.now()).await? {
            return Err(DirectoryError::Invalid(format!(
                "a group called {name:?} exists already"
            )));
        }
        self.audited("group_created", actor, name, None).await
    }

    /// Removes a hand-made membership (provider memberships follow the provider).
    pub async fn remove_from_group(
        &self,
        username: &str,
        group: &str,
        actor: &Actor,
    ) -> Result<(), DirectoryError> {
        let user = self.find(username).await?;
        if !self.store.remove_from_group(&user.id, group).await? {
            return Err(DirectoryError::Invalid(format!(
                "{username} has no hand-made membership of {group:?} (provider memberships follow the provider)"
            )));
        }
        self.audited("group_removed", actor, username, Some(group))
            .await
    }

    pub async fn create_key(
        &self,
        owner: &str,
        name: &str,
        allowed_apps: Vec<String>,
        lifetime: Option<Duration>,
        actor: &Actor,
    ) -> Result<CreatedKey, DirectoryError> {
        if name.trim().is_empty() {
            return Err(DirectoryError::Invalid(
                "a key needs a name (what uses it)".into(),
            ));
        }
        self.check_apps(&allowed_apps)?;
        self.check_key_mfa(&allowed_apps, actor)?;
        let owner = self.find(owner).await?;
        let (secret, hash) = keys::generate();
        let now = self.clock.now();
        let stored = StoredKey {
            id: uuid::Uuid::new_v4().to_string(),
            hash,
            name: name.trim().to_owned(),
            owner_id: owner.id.clone(),
            allowed_apps,
            expires_at: lifetime.map(|d| now.plus(d)),
            created_at: now,
            last_used_at: None,
            revoked_at: None,
        };
        self.store.create_key(&stored).await?;
        self.audited("key_created", actor, &owner.username, Some(&stored.name))
            .await?;
        Ok(CreatedKey { secret, stored })
    }

    pub async fn revoke_key(&self, id: &str, actor: &Actor) -> Result<(), DirectoryError> {
        if !self.store.revoke_key(id, self.clock.now()).await? {
            return Err(DirectoryError::Invalid(format!(
                "no active key has the id {id:?}"
            )));
        }
        self.audited("key_revoked", actor, id, None).await
    }

    pub async fn user(&self, username: &str) -> Result<User, DirectoryError> {
        self.find(username).await
    }

    pub async fn keys_of(&self, username: &str) -> Result<Vec<StoredKey>, DirectoryError> {
        let user = self.find(username).await?;
        Ok(self.store.keys_of(&user.id).await?)
    }
}
