//! OAuth grants as the directory shows them: which clients a user connected to which MCP apps,
//! and revoking them (by the user, or an admin). Revoking deletes the grant: its tokens stop on
//! every replica within a poll of the change feed, and in this process at once.

use portcullis_store::Grant;

use super::{Directory, DirectoryError};
use crate::audit::Actor;

impl Directory {
    /// The user's grants, newest first.
    pub async fn grants_of(&self, username: &str) -> Result<Vec<Grant>, DirectoryError> {
        let user = self.find(username).await?;
        Ok(self.store.grants_of(&user.id).await?)
    }

    /// Revokes the grant `id` of `username`; a grant of someone else is not found.
    pub async fn revoke_grant(
        &self,
        username: &str,
        id: &str,
        actor: &Actor,
    ) -> Result<Grant, DirectoryError> {
        let user = self.find(username).await?;
        let grant = self
            .store
            .grant(id)
            .await?
            .filter(|g| g.user_id == user.id)
            .ok_or_else(|| {
                DirectoryError::NotFound(format!("{username} has no connected client {id:?}"))
            })?;
        self.store.delete_grant(&grant.id).await?;
        let reason = format!("{} at {}", grant.client_name, grant.app);
        self.audited("oauth_grant_revoked", actor, &grant.id, Some(&reason))
            .await?;
        Ok(grant)
    }
}
