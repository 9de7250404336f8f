//! [`AcmeStore`] for both databases.

use async_trait::async_trait;
use portcullis_core::Timestamp;

use super::SqlStore;
use crate::StoreError;
use crate::acme::AcmeStore;

#[async_trait]
impl AcmeStore for SqlStore {
    async fn acme_value(&self, name: &str) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar(&self.q("SELECT value FROM acme_state WHERE name = ?"))
                .bind(name)
                .fetch_optional(self.pool()?)
                .await?,
        )
    }

    async fn put_acme_value(
        &self,
        name: &str,
        value: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        sqlx::query(&self.q(
            "INSERT INTO acme_state (name, value, updated_at) VALUES (?, ?, ?) \
             ON CONFLICT (name) DO UPDATE SET value = excluded.value, \
             updated_at = excluded.updated_at",
        ))
        .bind(name)
        .bind(value)
        .bind(now.0)
        .execute(self.pool()?)
        .await?;
        Ok(())
    }

    async fn delete_acme_value(&self, name: &str) -> Result<(), StoreError> {
        sqlx::query(&self.q("DELETE FROM acme_state WHERE name = ?"))
            .bind(name)
            .execute(self.pool()?)
            .await?;
        Ok(())
    }

    async fn take_acme_lease(
        &self,
        name: &str,
        holder: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<bool, StoreError> {
        // One statement, so the database decides the race: the row is written only where it is
        // new, expired or already the holder's.
        let taken = sqlx::query(&self.q(
            "INSERT INTO acme_leases (name, holder, expires_at) VALUES (?, ?, ?) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, \
             expires_at = excluded.expires_at \
             WHERE acme_leases.expires_at <= ? OR acme_leases.holder = excluded.holder",
        ))
        .bind(name)
        .bind(holder)
        .bind(until.0)
        .bind(now.0)
        .execute(self.pool()?)
        .await?;
        Ok(taken.rows_affected() == 1)
    }

    async fn release_acme_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        sqlx::query(&self.q("DELETE FROM acme_leases WHERE name = ? AND holder = ?"))
            .bind(name)
            .bind(holder)
            .execute(self.pool()?)
            .await?;
        Ok(())
    }
}
