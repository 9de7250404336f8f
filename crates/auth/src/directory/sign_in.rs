//! From a verified identity's mapped claims (a provider sign-in or refresh, LDAP, a proxy in
//! front, another issuer's bearer token) to a directory user: the directory's own writes,
//! audited like every other.
//!
//! Users are keyed on (issuer, subject). A first sign-in creates the user (just in time), unless
//! the email belongs to an existing user: then the identity is linked only when the provider's
//! `link_by_email` is on and the email is verified; otherwise the sign-in is refused with a message
//! that says so. Provider groups are synced under the source `provider:<id>`, apart from local
//! memberships. With `admin_groups` set, the role follows the groups at every sign-in.

use portcullis_core::claims::MappedClaims;
use portcullis_core::config::ProviderConfig;
use portcullis_core::user::{User, UserStatus};
use portcullis_core::{Email, Role};
use portcullis_store::{Conflict, LinkedIdentity, NewUser, StoreError};

use super::Directory;
use crate::audit::Actor;

#[derive(Debug, thiserror::Error)]
pub enum LoginRefusal {
    #[error(
        "your email address {0} is not verified at the identity provider; verify it there and sign in again"
    )]
    UnverifiedEmail(Email),
    #[error(
        "an account with the email {0} already exists; an administrator must link it to this provider (link_by_email) before you can sign in this way"
    )]
    EmailTaken(Email),
    #[error("your account is disabled or awaiting approval")]
    NotActive,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where a verified identity comes from, and the rules for turning it into a user: a provider,
/// an outer proxy, another issuer's bearer tokens, PocketBase, LDAP.
#[derive(Clone, Debug)]
pub struct IdentitySource<'a> {
    /// What kind of source, for the audit trail's actor (`provider`, `ldap`, `proxy`, `bearer`).
    pub kind: &'static str,
    pub id: &'a str,
    pub link_by_email: bool,
    pub trust_unverified_email: bool,
    /// With groups here, the role follows them at every sign-in.
    pub admin_groups: &'a [String],
}

impl<'a> IdentitySource<'a> {
    pub fn of(provider: &'a ProviderConfig) -> Self {
        IdentitySource {
            kind: "provider",
            id: &provider.id,
            link_by_email: provider.link_by_email,
            trust_unverified_email: provider.trusts_unverified_email(),
            admin_groups: &provider.admin_groups,
        }
    }
}

/// How the user was found, for the audit trail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolution {
    Existing,
    Linked,
    Created,
}

impl Directory {
    /// The user behind a verified identity: found by (issuer, subject), linked by email when the
    /// source allows it, or created; then brought in line with the claims. Creating and linking
    /// are audited, and so is a role or group change the claims make.
    pub async fn resolve_identity(
        &self,
        source: &IdentitySource<'_>,
        issuer: &str,
        claims: &MappedClaims,
    ) -> Result<(User, Resolution), LoginRefusal> {
        let now = self.clock.now();
        if let Some(why) = &claims.rejected_email {
            tracing::warn!(source = %source.id, %why, "the email claim is not a valid address; it is ignored");
        }
        let email = claims
            .email
            .clone()
            .filter(|_| claims.email_verified || source.trust_unverified_email);
        if let (Some(unverified), None) = (&claims.email, &email) {
            return Err(LoginRefusal::UnverifiedEmail(unverified.clone()));
        }
        let (user, resolution) = match self.store.user_by_identity(issuer, &claims.subject).await? {
            Some(user) => (user, Resolution::Existing),
            None => match self.existing_by_email(email.as_ref()).await? {
                Some(user) if source.link_by_email => (user, Resolution::Linked),
                Some(user) => {
                    return Err(LoginRefusal::EmailTaken(email.or(user.email).ok_or_else(
                        || StoreError::Corrupt("a user found by email has none".into()),
                    )?));
                }
                None => (
                    self.create_for(source, claims, email.clone(), now).await?,
                    Resolution::Created,
                ),
            },
        };
        if user.status != UserStatus::Active {
            return Err(LoginRefusal::NotActive);
        }
        let link = LinkedIdentity {
            issuer: issuer.to_owned(),
            subject: claims.subject.clone(),
            user_id: user.id.clone(),
            provider: source.id.to_owned(),
            email: email.clone(),
        };
        self.store.link_identity(&link, now).await?;
        let actor = Actor::new(format!("{}:{}", source.kind, source.id), None);
        match resolution {
            Resolution::Created => {
                self.record("user_created", &actor, &user.username, Some(source.id))
                    .await;
            }
            Resolution::Linked => {
                self.record("identity_linked", &actor, &user.username, Some(issuer))
                    .await;
            }
            Resolution::Existing => {}
        }
        let fresh = self
            .apply_claims_to(&user, source, claims, email.as_ref(), &actor)
            .await?;
        Ok((fresh, resolution))
    }

    /// Brings the user's profile, the source's groups and (with `admin_groups`) the role in
    /// line with the claims; runs at every sign-in and at every token refresh. Returns the user
    /// as they are now.
    pub async fn apply_claims(
        &self,
        source: &IdentitySource<'_>,
        user_id: &str,
        claims: &MappedClaims,
        verified_email: Option<&Email>,
    ) -> Result<User, StoreError> {
        let user = self
            .store
            .user_by_id(user_id)
            .await?
            .ok_or_else(|| StoreError::Corrupt("user vanished".into()))?;
        let actor = Actor::new(format!("{}:{}", source.kind, source.id), None);
        self.apply_claims_to(&user, source, claims, verified_email, &actor)
            .await
    }

    async fn apply_claims_to(
        &self,
        before: &User,
        source: &IdentitySource<'_>,
        claims: &MappedClaims,
        verified_email: Option<&Email>,
        actor: &Actor,
    ) -> Result<User, StoreError> {
        let now = self.clock.now();
        let user_id = &before.id;
        self.store
            .update_profile(user_id, verified_email, claims.claimed_name(), now)
            .await?;
        let origin = format!("provider:{}", source.id);
        self.store
            .sync_groups(user_id, &origin, &claims.groups, now)
            .await?;
        if !source.admin_groups.is_empty() {
            let admin = claims
                .groups
                .iter()
                .any(|g| source.admin_groups.contains(g));
            self.store
                .set_role(user_id, if admin { Role::Admin } else { Role::User }, now)
                .await?;
        }
        let after = self
            .store
            .user_by_id(user_id)
            .await?
            .ok_or_else(|| StoreError::Corrupt("user vanished".into()))?;
        if after.role != before.role {
            self.record(
                "role_changed",
                actor,
                &after.username,
                Some(&format!(
                    "{} -> {} (admin_groups)",
                    before.role.as_str(),
                    after.role.as_str()
                )),
            )
            .await;
        }
        if after.groups != before.groups {
            let added: Vec<&str> = after
                .groups
                .iter()
                .filter(|g| !before.groups.contains(g))
                .map(String::as_str)
                .collect();
            let removed: Vec<&str> = before
                .groups
                .iter()
                .filter(|g| !after.groups.contains(g))
                .map(String::as_str)
                .collect();
            self.record(
                "groups_synced",
                actor,
                &after.username,
                Some(&format!(
                    "added [{}], removed [{}]",
                    added.join(", "),
                    removed.join(", ")
                )),
            )
            .await;
        }
        Ok(after)
    }

    async fn existing_by_email(&self, email: Option<&Email>) -> Result<Option<User>, StoreError> {
        match email {
            Some(email) => self.store.user_by_email(email).await,
            None => Ok(None),
        }
    }

    /// Creates the user; a username taken by someone else gets a numeric suffix.
    async fn create_for(
        &self,
        source: &IdentitySource<'_>,
        claims: &MappedClaims,
        email: Option<Email>,
        now: portcullis_core::Timestamp,
    ) -> Result<User, StoreError> {
        let base = claims.username.clone();
        for attempt in 0..20u32 {
            let username = if attempt == 0 {
                base.clone()
            } else {
                format!("{base}-{attempt}")
            };
            let new_user = NewUser {
                id: uuid::Uuid::new_v4().to_string(),
                username,
                email: email.clone(),
                display_name: Some(claims.display_name.clone()),
                role: Role::User,
                status: UserStatus::Active,
                password_hash: None,
            };
            match self.store.create_user(new_user, now).await {
                Err(StoreError::Conflict(Conflict::Username)) => continue,
                other => {
                    if let Ok(user) = &other {
                        tracing::info!(source = %source.id, user = %user.username, "user created at first sign-in");
                    }
                    return other;
                }
            }
        }
        Err(StoreError::Conflict(Conflict::Other(format!(
            "no free username near {base:?}"
        ))))
    }
}
