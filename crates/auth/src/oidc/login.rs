//! From a provider's mapped claims to a directory user.
//!
//! Users are keyed on (issuer, subject). A first sign-in creates the user (just in time), unless
//! the email belongs to an existing user: then the identity is linked only when the provider's
//! `link_by_email` is on and the email is verified; otherwise the sign-in is refused with a message
//! that says so. Provider groups are synced under the source `provider:<id>`, apart from local
//! memberships. With `admin_groups` set, the role follows the groups at every sign-in.

use std::sync::Arc;

use portcullis_core::claims::MappedClaims;
use portcullis_core::config::ProviderConfig;
use portcullis_core::user::{User, UserStatus};
use portcullis_core::{Clock, Email, Role};
use portcullis_store::{Conflict, LinkedIdentity, NewUser, Store, StoreError};

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
/// an outer proxy, another issuer's bearer tokens, PocketBase.
#[derive(Clone, Debug)]
pub struct IdentitySource<'a> {
    pub id: &'a str,
    pub link_by_email: bool,
    pub trust_unverified_email: bool,
    /// With groups here, the role follows them at every sign-in.
    pub admin_groups: &'a [String],
}

impl<'a> IdentitySource<'a> {
    pub fn of(provider: &'a ProviderConfig) -> Self {
        IdentitySource {
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

pub async fn resolve_user(
    store: &Arc<dyn Store>,
    clock: &Arc<dyn Clock>,
    source: &IdentitySource<'_>,
    issuer: &str,
    claims: &MappedClaims,
) -> Result<(User, Resolution), LoginRefusal> {
    let now = clock.now();
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
    let (user, resolution) = match store.user_by_identity(issuer, &claims.subject).await? {
        Some(user) => (user, Resolution::Existing),
        None => match existing_by_email(store, email.as_deref()).await? {
            Some(user) if source.link_by_email => (user, Resolution::Linked),
            Some(user) => {
                return Err(LoginRefusal::EmailTaken(email.or(user.email).ok_or_else(
                    || StoreError::Corrupt("a user found by email has none".into()),
                )?));
            }
            None => (
                create(store, source, claims, email.clone(), now).await?,
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
    store.link_identity(&link, now).await?;
    apply_claims(store, clock, source, &user.id, claims, email.as_ref()).await?;
    let fresh = store
        .user_by_id(&user.id)
        .await?
        .ok_or_else(|| StoreError::Corrupt("user vanished".into()))?;
    Ok((fresh, resolution))
}

/// Brings the user's profile, provider groups and (with `admin_groups`) role in line with the
/// provider's claims. Runs at every sign-in and at every token refresh.
pub async fn apply_claims(
    store: &Arc<dyn Store>,
    clock: &Arc<dyn Clock>,
    source: &IdentitySource<'_>,
    user_id: &str,
    claims: &MappedClaims,
    verified_email: Option<&Email>,
) -> Result<(), StoreError> {
    let now = clock.now();
    store
        .update_profile(user_id, verified_email, claims.claimed_name(), now)
        .await?;
    let origin = format!("provider:{}", source.id);
    store
        .sync_groups(user_id, &origin, &claims.groups, now)
        .await?;
    if !source.admin_groups.is_empty() {
        let admin = claims
            .groups
            .iter()
            .any(|g| source.admin_groups.contains(g));
        store
            .set_role(user_id, if admin { Role::Admin } else { Role::User }, now)
            .await?;
    }
    Ok(())
}

async fn existing_by_email(
    store: &Arc<dyn Store>,
    email: Option<&str>,
) -> Result<Option<User>, StoreError> {
    match email {
        Some(email) => store.user_by_email(email).await,
        None => Ok(None),
    }
}

/// Creates the user; a username taken by someone else gets a numeric suffix.
async fn create(
    store: &Arc<dyn Store>,
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
        match store.create_user(new_user, now).await {
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
