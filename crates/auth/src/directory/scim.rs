//! SCIM's writes: an identity provider (Entra, Okta) keeping users and groups in step, audited
//! with the SCIM client as the actor like every other directory change. SCIM owns only what it
//! wrote: the identity linked under the issuer `scim` and the memberships of the source `scim`;
//! hand-made and provider-synced memberships are never touched.

use portcullis_core::Email;
use portcullis_core::user::{User, UserStatus};
use portcullis_store::{LinkedIdentity, StoreError};

use super::{Directory, DirectoryError};
use crate::audit::Actor;

/// Memberships written through SCIM.
pub const SCIM_SOURCE: &str = "scim";
/// The issuer under which SCIM `externalId`s are linked to users.
pub const SCIM_ISSUER: &str = "scim";

/// A user as the SCIM client describes them.
pub struct ScimUser<'a> {
    pub username: &'a str,
    pub email: Option<&'a Email>,
    pub display_name: Option<&'a str>,
    pub active: bool,
    pub external_id: Option<&'a str>,
}

/// A group as SCIM knows it: by an id that survives renames.
#[derive(Clone, Debug)]
pub struct ScimGroup {
    pub name: String,
    pub id: String,
    pub external_id: Option<String>,
}

/// What a SCIM client wants a group to be.
pub struct ScimGroupChange<'a> {
    pub name: &'a str,
    pub external_id: Option<&'a str>,
    /// User ids; ids that are no users here are ignored (the rest still apply).
    pub members: &'a [String],
}

impl Directory {
    /// Brings `user` in line with what the SCIM client sent. Deactivation goes through the
    /// status, so it ends sessions and keys like any other.
    pub async fn save_scim_user(
        &self,
        user: &User,
        wanted: &ScimUser<'_>,
        actor: &Actor,
    ) -> Result<(), DirectoryError> {
        let now = self.clock.now();
        self.edit_user(
            user,
            wanted.username,
            wanted.email,
            wanted.display_name,
            actor,
        )
        .await?;
        if (user.status == UserStatus::Active) != wanted.active {
            let status = if wanted.active {
                UserStatus::Active
            } else {
                UserStatus::Disabled
            };
            self.change_status(user, wanted.username, status, actor)
                .await?;
        }
        let linked = self.scim_external_id(&user.id).await?;
        if linked.as_deref() != wanted.external_id {
            match wanted.external_id {
                None => self.store.unlink_identity(&user.id, SCIM_ISSUER).await?,
                Some(external) => {
                    let link = LinkedIdentity {
                        issuer: SCIM_ISSUER.into(),
                        subject: external.to_owned(),
                        user_id: user.id.clone(),
                        provider: "scim".into(),
                        email: wanted.email.cloned(),
                    };
                    self.store.link_identity(&link, now).await?;
                }
            }
            self.record(
                "external_id_changed",
                actor,
                wanted.username,
                wanted.external_id,
            )
            .await;
        }
        Ok(())
    }

    /// The `externalId` SCIM linked to the user, if any.
    pub async fn scim_external_id(&self, user_id: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .store
            .identities_of(user_id)
            .await?
            .into_iter()
            .find(|i| i.issuer == SCIM_ISSUER)
            .map(|i| i.subject))
    }

    /// Deletes the user with their sessions, memberships, identities and keys. They are
    /// disabled first, so every process ends their sessions and streams even while the delete
    /// itself is still on its way.
    pub async fn delete_user(&self, user: &User, actor: &Actor) -> Result<(), DirectoryError> {
        self.store
            .set_status(&user.id, UserStatus::Disabled, self.clock.now())
            .await?;
        self.store.delete_user(&user.id).await?;
        self.record("user_deleted", actor, &user.username, None)
            .await;
        Ok(())
    }

    /// Every group with its SCIM id; a group SCIM has not seen yet gets one now.
    pub async fn scim_groups(&self) -> Result<Vec<ScimGroup>, StoreError> {
        let mut all = Vec::new();
        for group in self.store.list_groups().await? {
            let id = match group.scim_id {
                Some(id) => id,
                None => {
                    let id = uuid::Uuid::new_v4().to_string();
                    self.store
                        .set_group_scim(&group.name, &id, group.external_id.as_deref())
                        .await?;
                    id
                }
            };
            all.push(ScimGroup {
                name: group.name,
                id,
                external_id: group.external_id,
            });
        }
        Ok(all)
    }

    /// The ids of the group's members through SCIM.
    pub async fn scim_members(&self, group: &str) -> Result<Vec<String>, StoreError> {
        Ok(self
            .store
            .group_members(group)
            .await?
            .into_iter()
            .filter(|(_, source)| source == SCIM_SOURCE)
            .map(|(user, _)| user.id)
            .collect())
    }

    /// Creates (`current` is `None`) or changes a group to be what the SCIM client wants.
    /// Returns the group and the ids of the users whose memberships changed.
    pub async fn save_scim_group(
        &self,
        current: Option<&ScimGroup>,
        wanted: &ScimGroupChange<'_>,
        actor: &Actor,
    ) -> Result<(ScimGroup, Vec<String>), DirectoryError> {
        let now = self.clock.now();
        let id = match current {
            Some(group) => {
                if group.name != wanted.name {
                    self.store
                        .rename_group(&group.name, wanted.name, now)
                        .await?;
                    self.record("group_renamed", actor, wanted.name, Some(&group.name))
                        .await;
                }
                group.id.clone()
            }
            None => {
                self.store.create_group(wanted.name, now).await?;
                self.record("group_created", actor, wanted.name, None).await;
                uuid::Uuid::new_v4().to_string()
            }
        };
        self.store
            .set_group_scim(wanted.name, &id, wanted.external_id)
            .await?;
        let existing = self.scim_members(wanted.name).await?;
        let mut changed = Vec::new();
        for user_id in wanted.members.iter().filter(|m| !existing.contains(m)) {
            let Some(user) = self.store.user_by_id(user_id).await? else {
                tracing::warn!(group = %wanted.name, member = %user_id, "SCIM: ignoring a member that is not a user");
                continue;
            };
            self.store
                .set_membership(user_id, wanted.name, SCIM_SOURCE, true, now)
                .await?;
            self.record("group_added", actor, &user.username, Some(wanted.name))
                .await;
            changed.push(user_id.clone());
        }
        for user_id in existing.iter().filter(|m| !wanted.members.contains(m)) {
            self.store
                .set_membership(user_id, wanted.name, SCIM_SOURCE, false, now)
                .await?;
            let username = self.store.user_by_id(user_id).await?.map(|u| u.username);
            self.record(
                "group_removed",
                actor,
                username.as_deref().unwrap_or(user_id),
                Some(wanted.name),
            )
            .await;
            changed.push(user_id.clone());
        }
        let group = ScimGroup {
            name: wanted.name.to_owned(),
            id,
            external_id: wanted.external_id.map(str::to_owned),
        };
        Ok((group, changed))
    }

    /// Deletes the group (every membership of it, whatever the source); returns the ids of its
    /// members, whose groups changed.
    pub async fn delete_group(
        &self,
        name: &str,
        actor: &Actor,
    ) -> Result<Vec<String>, DirectoryError> {
        let members: Vec<String> = self
            .store
            .group_members(name)
            .await?
            .into_iter()
            .map(|(user, _)| user.id)
            .collect();
        self.store.delete_group(name).await?;
        self.record("group_deleted", actor, name, None).await;
        Ok(members)
    }
}
