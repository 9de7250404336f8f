//! [`CredentialStore`] for both databases.

use async_trait::async_trait;
use portcullis_core::Timestamp;
use sqlx::Row;

use super::SqlStore;
use crate::StoreError;
use crate::credentials::{
    CredentialStore, Factor, FactorKind, FailureCount, PasswordReset, ResetLink,
};

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

    async fn use_reset(
        &self,
        token_hash: &str,
        password_hash: &str,
        now: Timestamp,
    ) -> Result<ResetLink, StoreError> {
        let mut tx = self.pool()?.begin().await?;
        // One statement checks and marks the link, so of two uses racing (on two replicas,
        // say) exactly one finds it unused.
        let used: Option<String> =
            sqlx::query_scalar(&self.q("UPDATE password_resets SET used_at = ?1 \
             WHERE token_hash = ?2 AND used_at IS NULL AND expires_at > ?1 RETURNING user_id"))
            .bind(now.0)
            .bind(token_hash)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(user_id) = used else {
            tx.rollback().await?;
            return match self.reset_link(token_hash, now).await? {
                // Valid a moment later cannot happen (nothing un-uses a link); say it was used.
                ResetLink::Valid { .. } => Ok(ResetLink::Used),
                other => Ok(other),
            };
        };
        sqlx::query(&self.q(
            "UPDATE users SET password_hash = ?, must_change_password = 0, updated_at = ? WHERE id = ?",
        ))
        .bind(password_hash)
        .bind(now.0)
        .bind(&user_id)
        .execute(&mut *tx)
        .await?;
        // The new password supersedes every other link of the user, and whoever was signed in
        // with the old one is signed out (the change feed's trigger tells every replica).
        sqlx::query(&self.q("DELETE FROM password_resets WHERE user_id = ? AND used_at IS NULL"))
            .bind(&user_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(&self.q("DELETE FROM sessions WHERE user_id = ?"))
            .bind(&user_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(ResetLink::Valid { user_id })
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

    async fn factors(&self, user_id: &str) -> Result<Vec<Factor>, StoreError> {
        let rows =
            sqlx::query(&self.q("SELECT * FROM factors WHERE user_id = ? ORDER BY created_at, id"))
                .bind(user_id)
                .fetch_all(self.pool()?)
                .await?;
        rows.iter().map(factor_from_row).collect()
    }

    async fn factor_by_credential(
        &self,
        credential_id: &str,
    ) -> Result<Option<Factor>, StoreError> {
        let row = sqlx::query(&self.q("SELECT * FROM factors WHERE credential_id = ?"))
            .bind(credential_id)
            .fetch_optional(self.pool()?)
            .await?;
        row.as_ref().map(factor_from_row).transpose()
    }

    async fn use_passkey_counter(
        &self,
        factor_id: &str,
        counter: i64,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let updated = sqlx::query(
            &self.q("UPDATE factors SET last_step = ?1, last_used_at = ?2 \
             WHERE id = ?3 AND (last_step < ?1 OR (?1 = 0 AND last_step = 0))"),
        )
        .bind(counter)
        .bind(now.0)
        .bind(factor_id)
        .execute(self.pool()?)
        .await?;
        Ok(updated.rows_affected() == 1)
    }

    async fn insert_factor(&self, f: &Factor) -> Result<(), StoreError> {
        sqlx::query(&self.q(
            "INSERT INTO factors (id, user_id, kind, label, secret_enc, credential_id, last_step, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        ))
        .bind(&f.id)
        .bind(&f.user_id)
        .bind(f.kind.as_str())
        .bind(&f.label)
        .bind(&f.secret_enc)
        .bind(&f.credential_id)
        .bind(f.last_step)
        .bind(f.created_at.0)
        .execute(self.pool()?)
        .await?;
        Ok(())
    }

    async fn delete_factor(&self, user_id: &str, factor_id: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool()?.begin().await?;
        let deleted = sqlx::query(&self.q("DELETE FROM factors WHERE user_id = ? AND id = ?"))
            .bind(user_id)
            .bind(factor_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query(&self.q("DELETE FROM recovery_codes WHERE user_id = ?1 \
             AND NOT EXISTS (SELECT 1 FROM factors WHERE user_id = ?1)"))
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(deleted > 0)
    }

    async fn delete_factors(&self, user_id: &str) -> Result<u64, StoreError> {
        let mut tx = self.pool()?.begin().await?;
        let deleted = sqlx::query(&self.q("DELETE FROM factors WHERE user_id = ?"))
            .bind(user_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query(&self.q("DELETE FROM recovery_codes WHERE user_id = ?"))
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(deleted)
    }

    async fn use_totp_step(
        &self,
        factor_id: &str,
        step: i64,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        // One statement checks and advances the step: of two uses racing, exactly one finds
        // the step still ahead of the last one.
        let updated = sqlx::query(&self.q(
            "UPDATE factors SET last_step = ?1, last_used_at = ?2 WHERE id = ?3 AND last_step < ?1",
        ))
        .bind(step)
        .bind(now.0)
        .bind(factor_id)
        .execute(self.pool()?)
        .await?;
        Ok(updated.rows_affected() == 1)
    }

    async fn replace_recovery_codes(
        &self,
        user_id: &str,
        code_hashes: &[String],
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool()?.begin().await?;
        sqlx::query(&self.q("DELETE FROM recovery_codes WHERE user_id = ?"))
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        for hash in code_hashes {
            sqlx::query(
                &self.q(
                    "INSERT INTO recovery_codes (user_id, code_hash, created_at) VALUES (?, ?, ?)",
                ),
            )
            .bind(user_id)
            .bind(hash)
            .bind(now.0)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn use_recovery_code(
        &self,
        user_id: &str,
        code_hash: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let updated = sqlx::query(&self.q("UPDATE recovery_codes SET used_at = ? \
             WHERE user_id = ? AND code_hash = ? AND used_at IS NULL"))
        .bind(now.0)
        .bind(user_id)
        .bind(code_hash)
        .execute(self.pool()?)
        .await?;
        Ok(updated.rows_affected() == 1)
    }

    async fn recovery_codes_left(&self, user_id: &str) -> Result<u64, StoreError> {
        let left: i64 = sqlx::query_scalar(
            &self.q("SELECT count(*) FROM recovery_codes WHERE user_id = ? AND used_at IS NULL"),
        )
        .bind(user_id)
        .fetch_one(self.pool()?)
        .await?;
        Ok(u64::try_from(left).unwrap_or(0))
    }

    async fn count_failure(
        &self,
        key: &str,
        now: Timestamp,
        forget_before: Timestamp,
    ) -> Result<u32, StoreError> {
        let failures: i64 = sqlx::query_scalar(&self.q(
            "INSERT INTO sign_in_failures (throttle_key, failures, last_failure) VALUES (?, 1, ?) \
             ON CONFLICT (throttle_key) DO UPDATE SET \
             failures = CASE WHEN sign_in_failures.last_failure < ? THEN 1 \
                        ELSE sign_in_failures.failures + 1 END, \
             last_failure = excluded.last_failure \
             RETURNING failures",
        ))
        .bind(key)
        .bind(now.0)
        .bind(forget_before.0)
        .fetch_one(self.pool()?)
        .await?;
        Ok(u32::try_from(failures).unwrap_or(u32::MAX))
    }

    async fn failures(&self, keys: &[&str]) -> Result<Vec<FailureCount>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let marks = vec!["?"; keys.len()].join(", ");
        let sql = format!(
            "SELECT throttle_key, failures, last_failure FROM sign_in_failures \
             WHERE throttle_key IN ({marks})"
        );
        let query = self.q(&sql);
        let mut select = sqlx::query(&query);
        for key in keys {
            select = select.bind(*key);
        }
        select
            .fetch_all(self.pool()?)
            .await?
            .iter()
            .map(|row| {
                Ok(FailureCount {
                    key: row.try_get("throttle_key")?,
                    failures: u32::try_from(row.try_get::<i64, _>("failures")?).unwrap_or(u32::MAX),
                    last_failure: Timestamp(row.try_get("last_failure")?),
                })
            })
            .collect()
    }

    async fn clear_failures(&self, key: &str) -> Result<(), StoreError> {
        sqlx::query(&self.q("DELETE FROM sign_in_failures WHERE throttle_key = ?"))
            .bind(key)
            .execute(self.pool()?)
            .await?;
        Ok(())
    }

    async fn delete_stale_failures(&self, before: Timestamp) -> Result<u64, StoreError> {
        let deleted = sqlx::query(&self.q("DELETE FROM sign_in_failures WHERE last_failure < ?"))
            .bind(before.0)
            .execute(self.pool()?)
            .await?;
        Ok(deleted.rows_affected())
    }
}

fn factor_from_row(row: &sqlx::any::AnyRow) -> Result<Factor, StoreError> {
    let kind: String = row.try_get("kind")?;
    Ok(Factor {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        kind: FactorKind::parse(&kind).ok_or_else(|| {
            StoreError::Corrupt(format!("a factor has the unknown kind {kind:?}"))
        })?,
        label: row.try_get("label")?,
        secret_enc: row.try_get("secret_enc")?,
        credential_id: row.try_get("credential_id")?,
        last_step: row.try_get("last_step")?,
        created_at: Timestamp(row.try_get("created_at")?),
        last_used_at: row
            .try_get::<Option<i64>, _>("last_used_at")?
            .map(Timestamp),
    })
}
