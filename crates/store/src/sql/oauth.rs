//! [`OAuthStore`] for both databases.

use async_trait::async_trait;
use portcullis_core::Timestamp;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::SqlStore;
use crate::StoreError;
use crate::oauth::{AuthCode, Grant, OAuthClient, OAuthStore, Redeemed, Rotation};

/// Lists are kept space-separated: scopes cannot hold spaces (RFC 6749 §3.3), and redirect URIs
/// are validated URLs, which cannot either.
fn joined(items: &[String]) -> String {
    items.join(" ")
}

fn split(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_owned).collect()
}

fn client_from_row(row: &AnyRow) -> Result<OAuthClient, StoreError> {
    Ok(OAuthClient {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        redirect_uris: split(&row.try_get::<String, _>("redirect_uris")?),
        secret_hash: row.try_get("secret_hash")?,
        created_at: Timestamp(row.try_get("created_at")?),
        last_used_at: row
            .try_get::<Option<i64>, _>("last_used_at")?
            .map(Timestamp),
    })
}

fn code_from_row(row: &AnyRow) -> Result<AuthCode, StoreError> {
    Ok(AuthCode {
        code_hash: row.try_get("code_hash")?,
        user_id: row.try_get("user_id")?,
        client_id: row.try_get("client_id")?,
        client_name: row.try_get("client_name")?,
        redirect_uri: row.try_get("redirect_uri")?,
        code_challenge: row.try_get("code_challenge")?,
        app: row.try_get("app")?,
        resource: row.try_get("resource")?,
        scopes: split(&row.try_get::<String, _>("scopes")?),
        expires_at: Timestamp(row.try_get("expires_at")?),
    })
}

fn grant_from_row(row: &AnyRow) -> Result<Grant, StoreError> {
    Ok(Grant {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        client_id: row.try_get("client_id")?,
        client_name: row.try_get("client_name")?,
        app: row.try_get("app")?,
        resource: row.try_get("resource")?,
        scopes: split(&row.try_get::<String, _>("scopes")?),
        created_at: Timestamp(row.try_get("created_at")?),
        last_used_at: row
            .try_get::<Option<i64>, _>("last_used_at")?
            .map(Timestamp),
        expires_at: Timestamp(row.try_get("expires_at")?),
    })
}

#[async_trait]
impl OAuthStore for SqlStore {
    async fn insert_client(&self, c: &OAuthClient) -> Result<(), StoreError> {
        sqlx::query(&self.q(
            "INSERT INTO oauth_clients (id, name, redirect_uris, secret_hash, created_at) \
             VALUES (?, ?, ?, ?, ?)",
        ))
        .bind(&c.id)
        .bind(&c.name)
        .bind(joined(&c.redirect_uris))
        .bind(&c.secret_hash)
        .bind(c.created_at.0)
        .execute(self.pool()?)
        .await?;
        Ok(())
    }

    async fn client(&self, id: &str) -> Result<Option<OAuthClient>, StoreError> {
        let row = sqlx::query(&self.q("SELECT * FROM oauth_clients WHERE id = ?"))
            .bind(id)
            .fetch_optional(self.pool()?)
            .await?;
        row.as_ref().map(client_from_row).transpose()
    }

    async fn touch_client(&self, id: &str, now: Timestamp) -> Result<(), StoreError> {
        sqlx::query(&self.q("UPDATE oauth_clients SET last_used_at = ? WHERE id = ?"))
            .bind(now.0)
            .bind(id)
            .execute(self.pool()?)
            .await?;
        Ok(())
    }

    async fn delete_idle_clients(&self, before: Timestamp) -> Result<u64, StoreError> {
        let deleted = sqlx::query(&self.q(
            "DELETE FROM oauth_clients WHERE coalesce(last_used_at, created_at) < ? \
             AND NOT EXISTS (SELECT 1 FROM oauth_grants g WHERE g.client_id = oauth_clients.id)",
        ))
        .bind(before.0)
        .execute(self.pool()?)
        .await?;
        Ok(deleted.rows_affected())
    }

    async fn insert_code(&self, c: &AuthCode) -> Result<(), StoreError> {
        sqlx::query(&self.q(
            "INSERT INTO oauth_codes (code_hash, user_id, client_id, client_name, redirect_uri, \
             code_challenge, app, resource, scopes, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        ))
        .bind(&c.code_hash)
        .bind(&c.user_id)
        .bind(&c.client_id)
        .bind(&c.client_name)
        .bind(&c.redirect_uri)
        .bind(&c.code_challenge)
        .bind(&c.app)
        .bind(&c.resource)
        .bind(joined(&c.scopes))
        .bind(c.expires_at.0)
        .execute(self.pool()?)
        .await?;
        Ok(())
    }

    async fn code(&self, code_hash: &str) -> Result<Option<AuthCode>, StoreError> {
        let row = sqlx::query(&self.q("SELECT * FROM oauth_codes WHERE code_hash = ?"))
            .bind(code_hash)
            .fetch_optional(self.pool()?)
            .await?;
        row.as_ref().map(code_from_row).transpose()
    }

    async fn redeem_code(
        &self,
        code_hash: &str,
        g: &Grant,
        refresh_hash: &str,
        now: Timestamp,
    ) -> Result<Redeemed, StoreError> {
        let mut tx = self.pool()?.begin().await?;
        // One statement checks and spends the code: of two redemptions racing, one finds it
        // unused.
        let spent = sqlx::query(&self.q(
            "UPDATE oauth_codes SET used_at = ?, grant_id = ? WHERE code_hash = ? AND used_at IS NULL",
        ))
        .bind(now.0)
        .bind(&g.id)
        .bind(code_hash)
        .execute(&mut *tx)
        .await?;
        if spent.rows_affected() == 0 {
            let earlier: Option<Option<String>> =
                sqlx::query_scalar(&self.q("SELECT grant_id FROM oauth_codes WHERE code_hash = ?"))
                    .bind(code_hash)
                    .fetch_optional(&mut *tx)
                    .await?;
            if let Some(Some(grant_id)) = earlier {
                sqlx::query(&self.q("DELETE FROM oauth_grants WHERE id = ?"))
                    .bind(grant_id)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            return Ok(Redeemed::Replayed);
        }
        sqlx::query(
            &self
                .q("DELETE FROM oauth_grants WHERE user_id = ? AND client_id = ? AND resource = ?"),
        )
        .bind(&g.user_id)
        .bind(&g.client_id)
        .bind(&g.resource)
        .execute(&mut *tx)
        .await?;
        sqlx::query(&self.q(
            "INSERT INTO oauth_grants (id, user_id, client_id, client_name, app, resource, scopes, \
             created_at, last_used_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        ))
        .bind(&g.id)
        .bind(&g.user_id)
        .bind(&g.client_id)
        .bind(&g.client_name)
        .bind(&g.app)
        .bind(&g.resource)
        .bind(joined(&g.scopes))
        .bind(g.created_at.0)
        .bind(g.last_used_at.map(|t| t.0))
        .bind(g.expires_at.0)
        .execute(&mut *tx)
        .await?;
        insert_refresh(self, &mut tx, refresh_hash, &g.id, now).await?;
        tx.commit().await?;
        Ok(Redeemed::Issued)
    }

    async fn rotate_refresh(
        &self,
        old_hash: &str,
        new_hash: &str,
        narrow_to: Option<&[String]>,
        grace: i64,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<Rotation, StoreError> {
        let mut tx = self.pool()?.begin().await?;
        // Marking it rotated is the first write: it serialises two refreshes racing with one
        // token (the second then sees `rotated_at` and is judged by the grace).
        sqlx::query(&self.q(
            "UPDATE oauth_refresh_tokens SET rotated_at = ? WHERE token_hash = ? AND rotated_at IS NULL",
        ))
        .bind(now.0)
        .bind(old_hash)
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query(
            &self.q("SELECT t.rotated_at, g.* FROM oauth_refresh_tokens t \
             JOIN oauth_grants g ON g.id = t.grant_id WHERE t.token_hash = ?"),
        )
        .bind(old_hash)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            tx.rollback().await?;
            return Ok(Rotation::Unknown);
        };
        let mut grant = grant_from_row(&row)?;
        if grant.expires_at <= now {
            tx.rollback().await?;
            return Ok(Rotation::Unknown);
        }
        let rotated_at: Option<i64> = row.try_get("rotated_at")?;
        if rotated_at.is_some_and(|at| now.0 - at > grace) {
            sqlx::query(&self.q("DELETE FROM oauth_grants WHERE id = ?"))
                .bind(&grant.id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            return Ok(Rotation::Reused);
        }
        insert_refresh(self, &mut tx, new_hash, &grant.id, now).await?;
        if let Some(scopes) = narrow_to {
            grant.scopes.retain(|s| scopes.contains(s));
        }
        sqlx::query(&self.q(
            "UPDATE oauth_grants SET expires_at = ?, last_used_at = ?, scopes = ? WHERE id = ?",
        ))
        .bind(expires_at.0)
        .bind(now.0)
        .bind(joined(&grant.scopes))
        .bind(&grant.id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        grant.expires_at = expires_at;
        grant.last_used_at = Some(now);
        Ok(Rotation::Rotated(grant))
    }

    async fn grant_of_refresh(&self, token_hash: &str) -> Result<Option<Grant>, StoreError> {
        let row = sqlx::query(&self.q(
            "SELECT g.* FROM oauth_refresh_tokens t JOIN oauth_grants g ON g.id = t.grant_id \
             WHERE t.token_hash = ?",
        ))
        .bind(token_hash)
        .fetch_optional(self.pool()?)
        .await?;
        row.as_ref().map(grant_from_row).transpose()
    }

    async fn grant(&self, id: &str) -> Result<Option<Grant>, StoreError> {
        let row = sqlx::query(&self.q("SELECT * FROM oauth_grants WHERE id = ?"))
            .bind(id)
            .fetch_optional(self.pool()?)
            .await?;
        row.as_ref().map(grant_from_row).transpose()
    }

    async fn live_grants(&self, now: Timestamp) -> Result<Vec<Grant>, StoreError> {
        let rows = sqlx::query(&self.q("SELECT * FROM oauth_grants WHERE expires_at > ?"))
            .bind(now.0)
            .fetch_all(self.pool()?)
            .await?;
        rows.iter().map(grant_from_row).collect()
    }

    async fn grants_of(&self, user_id: &str) -> Result<Vec<Grant>, StoreError> {
        let rows = sqlx::query(
            &self.q("SELECT * FROM oauth_grants WHERE user_id = ? ORDER BY created_at DESC, id"),
        )
        .bind(user_id)
        .fetch_all(self.pool()?)
        .await?;
        rows.iter().map(grant_from_row).collect()
    }

    async fn delete_grant(&self, id: &str) -> Result<bool, StoreError> {
        let deleted = sqlx::query(&self.q("DELETE FROM oauth_grants WHERE id = ?"))
            .bind(id)
            .execute(self.pool()?)
            .await?;
        Ok(deleted.rows_affected() > 0)
    }

    async fn touch_grant(&self, id: &str, now: Timestamp) -> Result<(), StoreError> {
        sqlx::query(&self.q("UPDATE oauth_grants SET last_used_at = ? WHERE id = ?"))
            .bind(now.0)
            .bind(id)
            .execute(self.pool()?)
            .await?;
        Ok(())
    }

    async fn delete_expired_oauth(
        &self,
        now: Timestamp,
        rotated_before: Timestamp,
    ) -> Result<u64, StoreError> {
        let mut removed = 0;
        for (sql, at) in [
            ("DELETE FROM oauth_codes WHERE expires_at <= ?", now),
            ("DELETE FROM oauth_grants WHERE expires_at <= ?", now),
            (
                "DELETE FROM oauth_refresh_tokens WHERE rotated_at < ?",
                rotated_before,
            ),
        ] {
            let done = sqlx::query(&self.q(sql))
                .bind(at.0)
                .execute(self.pool()?)
                .await?;
            removed += done.rows_affected();
        }
        Ok(removed)
    }
}

async fn insert_refresh(
    store: &SqlStore,
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    token_hash: &str,
    grant_id: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    sqlx::query(
        &store.q(
            "INSERT INTO oauth_refresh_tokens (token_hash, grant_id, created_at) VALUES (?, ?, ?)",
        ),
    )
    .bind(token_hash)
    .bind(grant_id)
    .bind(now.0)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
