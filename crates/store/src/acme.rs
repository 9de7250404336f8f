//! What ordering certificates over ACME keeps: named values (the account, certificates, challenge
//! answers while an order runs) and the lease that makes one replica the one that orders. A part
//! of [`crate::Store`] of its own, like [`crate::OAuthStore`].

use async_trait::async_trait;
use portcullis_core::Timestamp;

use crate::StoreError;

#[async_trait]
pub trait AcmeStore {
    async fn acme_value(&self, name: &str) -> Result<Option<String>, StoreError>;
    /// Sets `name` to `value`, replacing what was there.
    async fn put_acme_value(
        &self,
        name: &str,
        value: &str,
        now: Timestamp,
    ) -> Result<(), StoreError>;
    async fn delete_acme_value(&self, name: &str) -> Result<(), StoreError>;
    /// Takes the lease `name` for `holder` until `until`, if it is free, expired at `now`, or
    /// already `holder`'s (then it is extended). Of several holders racing, one gets it.
    async fn take_acme_lease(
        &self,
        name: &str,
        holder: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<bool, StoreError>;
    /// Gives the lease up, if `holder` has it.
    async fn release_acme_lease(&self, name: &str, holder: &str) -> Result<(), StoreError>;
}
