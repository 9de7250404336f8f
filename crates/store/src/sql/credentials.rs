//! [`CredentialStore`] for both databases.

use async_trait::async_trait;
use portcullis_core::Timestamp;
use sqlx::Row;

use super::SqlStore;
use crate::StoreError;
use crate::credentials::{CredentialStore, PasswordReset, ResetLink};

#[async_trait]
impl CredentialStore for SqlStore {
    async fn set_password(
        &self,
        user_id: &str,
        hash: Option<&str>,
        must_change: bool,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool()?.begin().await?;
        let updated = sqlx::query(&self.q(
            "UPDATE users SET password_hash = ?, must_change_password = ?, updated_at = ? WHERE id = ?",
        ))
        .bind(hash)
        .bind(i64::from(must_change))
        .bind(now.0)
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::Corrupt(format!(
                "no user has the id {user_id:?}"
            )));
        }
        sqlx::query(&self.q("DELETE FROM password_resets WHERE user_id = ? AND used_at IS NULL"))
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn password_hash(&self, user_id: &str) -> Result<Option<String>, StoreError> {
        let hash: Option<Option<String>> =
            sqlx::query_scalar(&self.q("SELECT password_hash FROM users WHERE id = ?"))
                .bind(user_id)
                .fetch_optional(self.pool()?)
                .await?;
        Ok(hash.flatten())
    }

    async fn insert_reset(&self, reset: &PasswordReset) -> Result<(), StoreError> {
        sqlx::query(&self.q(
            "INSERT INTO password_resets (token_hash, user_id, created_at, expires_at, created_by) \
             VALUES (?, ?, ?, ?, ?)",
        ))
        .bind(&reset.token_hash)
        .bind(&reset.user_id)
        .bind(reset.created_at.0)
        .bind(reset.expires_at.0)
        .bind(&reset.created_by)
        .execute(self.pool()?)
        .await?;
        Ok(())
    }

    async fn reset_link(&self, token_hash: &str, now: Timestamp) -> Result<ResetLink, StoreError> {
        let row = sqlx::query(
            &self
                .q("SELECT user_id, expires_at, used_at FROM password_resets WHERE token_hash = ?"),
        )
        .bind(token_hash)
        .fetch_optional(self.pool()?)
        .await?;
        let Some(row) = row else {
            return Ok(ResetLink::Unknown);
        };
        let used_at: Option<i64> = row.try_get("used_at")?;
        let expires_at: i64 = row.try_get("expires_at")?;
        Ok(if used_at.is_some() {
            ResetLink::Used
        } else if expires_at <= now.0 {
            ResetLink::Expired
        } else {
            ResetLink::Valid {
                user_id: row.try_get("user_id")?,
            }
        })
    }

    async fn use_reset(&self, token_hash: &str, now: Timestamp) -> Result<ResetLink, StoreError> {
        // One statement checks and marks the link, so of two uses racing (on two replicas,
        // say) exactly one finds it unused.
        let used: Option<String> =
            sqlx::query_scalar(&self.q("UPDATE password_resets SET used_at = ?1 \
             WHERE token_hash = ?2 AND used_at IS NULL AND expires_at > ?1 RETURNING user_id"))
            .bind(now.0)
            .bind(token_hash)
            .fetch_optional(self.pool()?)
            .await?;
        match used {
            Some(user_id) => Ok(ResetLink::Valid { user_id }),
            None => match self.reset_link(token_hash, now).await? {
                // Valid a moment later cannot happen (nothing un-uses a link); say it was used.
                ResetLink::Valid { .. } => Ok(ResetLink::Used),
                other => Ok(other),
            },
        }
    }

    async fn delete_sessions_except(
        &self,
        user_id: &str,
        keep: &str,
    ) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            &self.q("DELETE FROM sessions WHERE user_id = ? AND id_hash <> ? RETURNING id_hash"),
        )
        .bind(user_id)
        .bind(keep)
        .fetch_all(self.pool()?)
        .await?;
        rows.iter()
            .map(|row| row.try_get("id_hash").map_err(StoreError::from))
            .collect()
    }
}
