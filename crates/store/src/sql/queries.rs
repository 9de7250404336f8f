//! The [`Store`] operations, written once for both databases (see [`Dialect`](crate::Dialect)).

use async_trait::async_trait;
use portcullis_core::session::Session;
use portcullis_core::user::{User, UserStatus};
use portcullis_core::{Email, Role, Timestamp};
use sqlx::Row;

use super::SqlStore;
use super::rows::{
    delivery_from_row, flow_from_row, identity_from_row, key_from_row, session_from_row,
    user_from_row,
};
use crate::Conflict;
use crate::{
    AuditEvent, AuditFilter, AuthFlow, Change, ChangeKind, Delivery, GroupSummary, LinkedIdentity,
    NewUser, OutboxStats, Store, StoreError, StoredKey, StoredSigningKey,
};

/// How long the heartbeat (the change feed poll) waits for the database.
const HEARTBEAT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

impl SqlStore {
    /// The user whose `column` equals `value`; names (username, email) compare without case.
    async fn user_where(
        &self,
        column: &'static str,
        value: &str,
    ) -> Result<Option<(User, Option<String>)>, StoreError> {
        let param = if column == "id" {
            "?".to_owned()
        } else {
            self.dialect.nocase_param("?")
        };
        let sql = format!(
            "SELECT {} FROM users WHERE {column} = {param}",
            self.dialect.user_columns()
        );
        let row = sqlx::query(&self.q(&sql))
            .bind(value)
            .fetch_optional(self.pool()?)
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn insert_user(
        &self,
        user: NewUser,
        now: Timestamp,
        only_if_no_admin: bool,
    ) -> Result<User, StoreError> {
        let guard = if only_if_no_admin {
            "WHERE NOT EXISTS (SELECT 1 FROM users WHERE role = 'admin')"
        } else {
            ""
        };
        let sql = format!(
            "INSERT INTO users (id, username, email, display_name, role, status, password_hash, created_at, updated_at) \
             SELECT ?, ?, ?, ?, ?, ?, ?, ?, ? {guard}"
        );
        let result = sqlx::query(&self.q(&sql))
            .bind(&user.id)
            .bind(&user.username)
            .bind(user.email.as_deref())
            .bind(&user.display_name)
            .bind(user.role.as_str())
            .bind(user.status.as_str())
            .bind(&user.password_hash)
            .bind(now.0)
            .bind(now.0)
            .execute(self.pool()?)
            .await?;
        if result.rows_affected() == 0 {
            return Err(StoreError::Conflict(Conflict::AdminExists));
        }
        Ok(User {
            id: user.id,
            username: user.username,
            email: user.email,
            display_name: user.display_name,
            role: user.role,
            status: user.status,
            groups: Vec::new(),
            created_at: now,
            last_seen: None,
            has_password: user.password_hash.is_some(),
            must_change_password: false,
        })
    }

    /// Makes `user_id` a member of `group` (created if new) with this `source`, inside `tx`.
    async fn join_group(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        group: &str,
        user_id: &str,
        source: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        sqlx::query(
            &self.q("INSERT INTO groups (name, created_at) VALUES (?, ?) ON CONFLICT DO NOTHING"),
        )
        .bind(group)
        .bind(now.0)
        .execute(&mut **tx)
        .await?;
        sqlx::query(&self.q("INSERT INTO group_members (group_name, user_id, source) VALUES (?, ?, ?) ON CONFLICT DO NOTHING"))
            .bind(group)
            .bind(user_id)
            .bind(source)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// Advances a user's last-seen time (never moves it back).
    async fn user_seen(&self, user_id: &str, at: Timestamp) -> Result<(), StoreError> {
        sqlx::query(&self.q(&format!(
            "UPDATE users SET last_seen_at = {}(coalesce(last_seen_at, 0), ?) WHERE id = ?",
            self.dialect.greatest()
        )))
        .bind(at.0)
        .bind(user_id)
        .execute(self.pool()?)
        .await?;
        Ok(())
    }
}

#[async_trait]
impl Store for SqlStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query(&self.q("SELECT 1"))
            .execute(self.pool()?)
            .await?;
        Ok(())
    }

    async fn create_user(&self, user: NewUser, now: Timestamp) -> Result<User, StoreError> {
        self.insert_user(user, now, false).await
    }

    async fn create_first_admin(&self, user: NewUser, now: Timestamp) -> Result<User, StoreError> {
        self.insert_user(user, now, true).await
    }

    async fn user_by_id(&self, id: &str) -> Result<Option<User>, StoreError> {
        Ok(self.user_where("id", id).await?.map(|(u, _)| u))
    }

    async fn user_with_password(
        &self,
        login: &str,
    ) -> Result<Option<(User, Option<String>)>, StoreError> {
        if login.contains('@')
            && let Some(found) = self.user_where("email", login).await?
        {
            return Ok(Some(found));
        }
        self.user_where("username", login).await
    }

    async fn count_admins(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar(&self.q("SELECT count(*) FROM users WHERE role = 'admin'"))
            .fetch_one(self.pool()?)
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn user_by_username(&self, username: &str) -> Result<Option<User>, StoreError> {
        Ok(self.user_where("username", username).await?.map(|(u, _)| u))
    }

    async fn find_users(
        &self,
        query: Option<&str>,
        offset: u32,
        limit: u32,
    ) -> Result<(Vec<User>, u64), StoreError> {
        // LIKE with the wildcards escaped, so a search for "a_b" means exactly that.
        let pattern = query.map(|q| {
            let escaped = q
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            format!("%{escaped}%")
        });
        let p = self.dialect.nocase_param("?1");
        let filter = format!(
            "(?1 IS NULL OR username LIKE {p} ESCAPE '\\' OR email LIKE {p} ESCAPE '\\' \
             OR display_name LIKE {p} ESCAPE '\\')"
        );
        let columns = self.dialect.user_columns();
        let sql = format!(
            "SELECT {columns} FROM users WHERE {filter} ORDER BY username LIMIT ?2 OFFSET ?3"
        );
        let rows = sqlx::query(&self.q(&sql))
            .bind(&pattern)
            .bind(i64::from(limit))
            .bind(i64::from(offset))
            .fetch_all(self.pool()?)
            .await?;
        let users = rows
            .iter()
            .map(|r| user_from_row(r).map(|(u, _)| u))
            .collect::<Result<Vec<_>, _>>()?;
        let total: i64 = match &pattern {
            Some(_) => {
                sqlx::query_scalar(&self.q(&format!("SELECT count(*) FROM users WHERE {filter}")))
                    .bind(&pattern)
                    .fetch_one(self.pool()?)
                    .await?
            }
            None => {
                sqlx::query_scalar(&self.q("SELECT count(*) FROM users"))
                    .fetch_one(self.pool()?)
                    .await?
            }
        };
        Ok((users, u64::try_from(total).unwrap_or(0)))
    }

    async fn set_status(
        &self,
        user_id: &str,
        status: UserStatus,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        sqlx::query(&self.q("UPDATE users SET status = ?, updated_at = ? WHERE id = ?"))
            .bind(status.as_str())
            .bind(now.0)
            .bind(user_id)
            .execute(self.pool()?)
            .await?;
        Ok(())
    }

    async fn create_key(&self, k: &StoredKey) -> Result<(), StoreError> {
        sqlx::query(&self.q("INSERT INTO api_keys (id, hash, name, owner_id, allowed_apps, expires_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)"))
        .bind(&k.id)
        .bind(&k.hash)
        .bind(&k.name)
        .bind(&k.owner_id)
        .bind(k.allowed_apps.join("\n"))
        .bind(k.expires_at.map(|t| t.0))
        .bind(k.created_at.0)
        .execute(self.pool()?)
        .await?;
        Ok(())
    }

    async fn revoke_key(&self, id: &str, now: Timestamp) -> Result<bool, StoreError> {
        let r = sqlx::query(
            &self.q("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL"),
        )
        .bind(now.0)
        .bind(id)
        .execute(self.pool()?)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn active_keys(&self) -> Result<Vec<StoredKey>, StoreError> {
        let rows = sqlx::query(&self.q("SELECT * FROM api_keys WHERE revoked_at IS NULL"))
            .fetch_all(self.pool()?)
            .await?;
        rows.iter().map(key_from_row).collect()
    }

    async fn keys_of(&self, owner_id: &str) -> Result<Vec<StoredKey>, StoreError> {
        let rows =
            sqlx::query(&self.q("SELECT * FROM api_keys WHERE owner_id = ? ORDER BY created_at"))
                .bind(owner_id)
                .fetch_all(self.pool()?)
                .await?;
        rows.iter().map(key_from_row).collect()
    }

    async fn touch_key(&self, id: &str, now: Timestamp) -> Result<(), StoreError> {
        sqlx::query(&self.q("UPDATE api_keys SET last_used_at = ? WHERE id = ?"))
            .bind(now.0)
            .bind(id)
            .execute(self.pool()?)
            .await?;
        Ok(())
    }

    async fn update_user(
        &self,
        user_id: &str,
        username: &str,
        email: Option<&Email>,
        display_name: Option<&str>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        sqlx::query(&self.q("UPDATE users SET username = ?, email = ?, display_name = ?, updated_at = ? WHERE id = ?"))
        .bind(username)
        .bind(email.map(|e| e.as_str()))
        .bind(display_name)
        .bind(now.0)
        .bind(user_id)
        .execute(self.pool()?)
        .await?;
        Ok(())
    }

    async fn unlink_identity(&self, user_id: &str, issuer: &str) -> Result<(), StoreError> {
        sqlx::query(&self.q("DELETE FROM identities WHERE user_id = ? AND issuer = ?"))
            .bind(user_id)
            .bind(issuer)
            .execute(self.pool()?)
            .await?;
        Ok(())
    }

    async fn delete_user(&self, user_id: &str) -> Result<bool, StoreError> {
        let r = sqlx::query(&self.q("DELETE FROM users WHERE id = ?"))
            .bind(user_id)
            .execute(self.pool()?)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn create_group(&self, name: &str, now: Timestamp) -> Result<bool, StoreError> {
        let r = sqlx::query(
            &self.q("INSERT INTO groups (name, created_at) VALUES (?, ?) ON CONFLICT DO NOTHING"),
        )
        .bind(name)
        .bind(now.0)
        .execute(self.pool()?)
        .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn delete_group(&self, name: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool()?.begin().await?;
        // Row by row, so that the outbox triggers see every membership that goes.
        sqlx::query(&self.q("DELETE FROM group_members WHERE group_name = ?"))
            .bind(name)
            .execute(&mut *tx)
            .await?;
        let r = sqlx::query(&self.q("DELETE FROM groups WHERE name = ?"))
            .bind(name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(r.rows_affected() > 0)
    }

    async fn rename_group(&self, from: &str, to: &str, now: Timestamp) -> Result<(), StoreError> {
        let mut tx = self.pool()?.begin().await?;
        // The new row takes over the old one's ids (released first: they are unique).
        let ids: Option<(Option<String>, Option<String>)> =
            sqlx::query_as(&self.q("SELECT scim_id, external_id FROM groups WHERE name = ?"))
                .bind(from)
                .fetch_optional(&mut *tx)
                .await?;
        let (scim_id, external_id) = ids.unwrap_or_default();
        sqlx::query(&self.q("UPDATE groups SET scim_id = NULL WHERE name = ?"))
            .bind(from)
            .execute(&mut *tx)
            .await?;
        sqlx::query(&self.q("INSERT INTO groups (name, created_at, scim_id, external_id) VALUES (?, ?, ?, ?) \
             ON CONFLICT (name) DO UPDATE SET scim_id = excluded.scim_id, external_id = excluded.external_id"))
        .bind(to)
        .bind(now.0)
        .bind(scim_id)
        .bind(external_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(&self.q("INSERT INTO group_members (group_name, user_id, source) \
             SELECT ?, user_id, source FROM group_members WHERE group_name = ? ON CONFLICT DO NOTHING"))
        .bind(to)
        .bind(from)
        .execute(&mut *tx)
        .await?;
        sqlx::query(&self.q("DELETE FROM group_members WHERE group_name = ?"))
            .bind(from)
            .execute(&mut *tx)
            .await?;
        sqlx::query(&self.q("DELETE FROM groups WHERE name = ?"))
            .bind(from)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn set_group_scim(
        &self,
        name: &str,
        scim_id: &str,
        external_id: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            &self.q(
                "UPDATE groups SET scim_id = coalesce(scim_id, ?), external_id = ? WHERE name = ?",
            ),
        )
        .bind(scim_id)
        .bind(external_id)
        .bind(name)
        .execute(self.pool()?)
        .await?;
        Ok(())
    }

    async fn set_membership(
        &self,
        user_id: &str,
        group: &str,
        source: &str,
        member: bool,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool()?.begin().await?;
        if member {
            self.join_group(&mut tx, group, user_id, source, now)
                .await?;
        } else {
            sqlx::query(&self.q(
                "DELETE FROM group_members WHERE group_name = ? AND user_id = ? AND source = ?",
            ))
            .bind(group)
            .bind(user_id)
            .bind(source)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn fan_out(&self, sinks: &[String], now: Timestamp) -> Result<u64, StoreError> {
        let mut added = 0;
        for sink in sinks {
            let result = sqlx::query(&self.q(
                "INSERT INTO deliveries (seq, sink, user_id, kind, created_at, next_attempt_at) \
                 SELECT seq, ?1, user_id, kind, at, ?2 FROM outbox \
                 WHERE seq > (SELECT coalesce(max(seq), 0) FROM deliveries WHERE sink = ?1) \
                 ORDER BY seq LIMIT 10000 ON CONFLICT DO NOTHING",
            ))
            .bind(sink)
            .bind(now.0)
            .execute(self.pool()?)
            .await?;
            added += result.rows_affected();
        }
        Ok(added)
    }

    async fn claim_due_deliveries(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
    ) -> Result<Vec<Delivery>, StoreError> {
        // One statement: concurrent workers skip rows another holds (PostgreSQL) or wait their
        // turn (SQLite), and never take the same delivery twice.
        let sql = format!(
            "UPDATE deliveries SET next_attempt_at = ? WHERE (seq, sink) IN (\
               SELECT d.seq, d.sink FROM deliveries d WHERE d.state = 'pending' AND d.next_attempt_at <= ? \
               AND NOT EXISTS (SELECT 1 FROM deliveries e WHERE e.sink = d.sink AND e.user_id = d.user_id \
                               AND e.state = 'pending' AND e.seq < d.seq) \
               ORDER BY d.seq LIMIT ?{}) RETURNING *",
            self.dialect.skip_locked()
        );
        let rows = sqlx::query(&self.q(&sql))
            .bind(lease_until.0)
            .bind(now.0)
            .bind(i64::from(limit))
            .fetch_all(self.pool()?)
            .await?;
        let mut claimed = rows
            .iter()
            .map(delivery_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        claimed.sort_by_key(|d| d.seq);
        Ok(claimed)
    }

    async fn release_claims(
        &self,
        claims: &[(String, i64)],
        lease_until: Timestamp,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        let mut released = 0;
        for (sink, seq) in claims {
            released += sqlx::query(&self.q("UPDATE deliveries SET next_attempt_at = ? \
                 WHERE sink = ? AND seq = ? AND state = 'pending' AND next_attempt_at = ?"))
            .bind(now.0)
            .bind(sink)
            .bind(seq)
            .bind(lease_until.0)
            .execute(self.pool()?)
            .await?
            .rows_affected();
        }
        Ok(released)
    }

    async fn latest_pending_seq(
        &self,
        sink: &str,
        user_id: &str,
    ) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar(&self.q("SELECT max(seq) FROM deliveries WHERE sink = ? AND user_id = ? AND state IN ('pending', 'dead')"))
        .bind(sink)
        .bind(user_id)
        .fetch_one(self.pool()?)
        .await?)
    }

    async fn delivered(
        &self,
        sink: &str,
        user_id: &str,
        up_to_seq: i64,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        sqlx::query(&self.q(
            "UPDATE deliveries SET state = 'delivered', finished_at = ?, attempts = attempts + 1 \
             WHERE sink = ? AND user_id = ? AND state IN ('pending', 'dead') AND seq <= ?",
        ))
        .bind(now.0)
        .bind(sink)
        .bind(user_id)
        .bind(up_to_seq)
        .execute(self.pool()?)
        .await?;
        Ok(())
    }

    async fn delivery_failed(
        &self,
        sink: &str,
        seq: i64,
        error: &str,
        next_attempt_at: Timestamp,
        dead: bool,
    ) -> Result<(), StoreError> {
        sqlx::query(&self.q(
            "UPDATE deliveries SET attempts = attempts + 1, last_error = ?, next_attempt_at = ?, \
             state = CASE WHEN ? THEN 'dead' ELSE state END WHERE sink = ? AND seq = ?",
        ))
        .bind(error)
        .bind(next_attempt_at.0)
        .bind(dead)
        .bind(sink)
        .bind(seq)
        .execute(self.pool()?)
        .await?;
        Ok(())
    }

    async fn outbox_stats(&self) -> Result<OutboxStats, StoreError> {
        let row = sqlx::query(&self.q(
            "SELECT (SELECT count(*) FROM deliveries WHERE state = 'pending') AS pending, \
                    (SELECT min(created_at) FROM deliveries WHERE state = 'pending') AS oldest, \
                    (SELECT count(*) FROM deliveries WHERE state = 'dead') AS dead",
        ))
        .fetch_one(self.pool()?)
        .await?;
        let count = |name: &str| -> Result<u64, StoreError> {
            Ok(u64::try_from(row.try_get::<i64, _>(name)?).unwrap_or(0))
        };
        Ok(OutboxStats {
            pending: count("pending")?,
            oldest_pending: row.try_get::<Option<i64>, _>("oldest")?.map(Timestamp),
            dead: count("dead")?,
        })
    }

    async fn deliveries_of_user(&self, user_id: &str) -> Result<Vec<Delivery>, StoreError> {
        let rows = sqlx::query(&self.q("SELECT d.* FROM deliveries d WHERE d.user_id = ? \
             AND d.seq = (SELECT max(seq) FROM deliveries e WHERE e.user_id = d.user_id AND e.sink = d.sink) \
             ORDER BY d.sink"))
        .bind(user_id)
        .fetch_all(self.pool()?)
        .await?;
        rows.iter().map(delivery_from_row).collect()
    }

    async fn deliveries_in(&self, state: &str, limit: u32) -> Result<Vec<Delivery>, StoreError> {
        let rows =
            sqlx::query(&self.q("SELECT * FROM deliveries WHERE state = ? ORDER BY seq LIMIT ?"))
                .bind(state)
                .bind(i64::from(limit))
                .fetch_all(self.pool()?)
                .await?;
        rows.iter().map(delivery_from_row).collect()
    }

    async fn retry_dead(
        &self,
        which: Option<(&str, i64)>,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        let (sink, seq) = which.unzip();
        let result = sqlx::query(&self.q(
            "UPDATE deliveries SET state = 'pending', next_attempt_at = ?, attempts = 0, \
             created_at = ? WHERE state = 'dead' AND (? IS NULL OR (sink = ? AND seq = ?))",
        ))
        .bind(now.0)
        .bind(now.0)
        .bind(sink)
        .bind(sink)
        .bind(seq)
        .execute(self.pool()?)
        .await?;
        Ok(result.rows_affected())
    }

    async fn discard_dead(
        &self,
        which: Option<(&str, i64)>,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        let (sink, seq) = which.unzip();
        let result = sqlx::query(&self.q(
            "UPDATE deliveries SET state = 'discarded', finished_at = ? \
             WHERE state = 'dead' AND (? IS NULL OR (sink = ? AND seq = ?))",
        ))
        .bind(now.0)
        .bind(sink)
        .bind(sink)
        .bind(seq)
        .execute(self.pool()?)
        .await?;
        Ok(result.rows_affected())
    }

    async fn signing_keys(&self) -> Result<Vec<StoredSigningKey>, StoreError> {
        let rows = sqlx::query(&self.q("SELECT * FROM signing_keys ORDER BY created_at DESC, kid"))
            .fetch_all(self.pool()?)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(StoredSigningKey {
                    kid: row.try_get("kid")?,
                    private_key_enc: row.try_get("private_key_enc")?,
                    created_at: Timestamp(row.try_get("created_at")?),
                    retired_at: row.try_get::<Option<i64>, _>("retired_at")?.map(Timestamp),
                })
            })
            .collect()
    }

    async fn rotate_signing_key(&self, key: &StoredSigningKey) -> Result<(), StoreError> {
        let mut tx = self.pool()?.begin().await?;
        sqlx::query(&self.q("UPDATE signing_keys SET retired_at = ? WHERE retired_at IS NULL"))
            .bind(key.created_at.0)
            .execute(&mut *tx)
            .await?;
        sqlx::query(&self.q("INSERT INTO signing_keys (kid, private_key_enc, created_at, retired_at) VALUES (?, ?, ?, NULL)"))
        .bind(&key.kid)
        .bind(&key.private_key_enc)
        .bind(key.created_at.0)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn changes_since(&self, seq: i64) -> Result<Vec<Change>, StoreError> {
        // The heartbeat: tried even while the database is known down, and what tells the
        // others whether to wait on it.
        let sql =
            self.q("SELECT seq, kind, subject FROM changes WHERE seq > ? ORDER BY seq LIMIT 1000");
        let query = sqlx::query(&sql).bind(seq).fetch_all(self.heartbeat_pool());
        // A database that does not answer at all would hold this for the pool's whole acquire
        // timeout (it keeps retrying to connect); the heartbeat gives up sooner, so the outage is
        // known, and the request path stops waiting, within about a second.
        let rows = match tokio::time::timeout(HEARTBEAT_TIMEOUT, query).await {
            Ok(rows) => rows.map_err(StoreError::from),
            Err(_) => Err(StoreError::Unavailable(format!(
                "the database did not answer within {} s",
                HEARTBEAT_TIMEOUT.as_secs()
            ))),
        };
        let rows = self.heard(rows)?;
        rows.iter()
            .map(|row| {
                let kind: String = row.try_get("kind")?;
                Ok(Change {
                    seq: row.try_get("seq")?,
                    kind: ChangeKind::parse(&kind)
                        .ok_or_else(|| StoreError::Corrupt(format!("change kind {kind:?}")))?,
                    subject: row.try_get("subject")?,
                })
            })
            .collect()
    }

    async fn latest_change(&self) -> Result<i64, StoreError> {
        let seq: Option<i64> = sqlx::query_scalar(&self.q("SELECT max(seq) FROM changes"))
            .fetch_one(self.pool()?)
            .await?;
        Ok(seq.unwrap_or(0))
    }

    async fn delete_user_sessions(&self, user_id: &str) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(&self.q("DELETE FROM sessions WHERE user_id = ? RETURNING id_hash"))
            .bind(user_id)
            .fetch_all(self.pool()?)
            .await?;
        rows.iter().map(|r| Ok(r.try_get("id_hash")?)).collect()
    }

    async fn list_groups(&self) -> Result<Vec<GroupSummary>, StoreError> {
        let rows = sqlx::query(&self.q(
            "SELECT g.name AS name, g.scim_id AS scim_id, g.external_id AS external_id, \
             count(DISTINCT m.user_id) AS members FROM groups g \
             LEFT JOIN group_members m ON m.group_name = g.name GROUP BY g.name ORDER BY g.name",
        ))
        .fetch_all(self.pool()?)
        .await?;
        rows.iter()
            .map(|row| {
                let members: i64 = row.try_get("members")?;
                Ok(GroupSummary {
                    name: row.try_get("name")?,
                    members: u64::try_from(members).unwrap_or(0),
                    scim_id: row.try_get("scim_id")?,
                    external_id: row.try_get("external_id")?,
                })
            })
            .collect()
    }

    async fn group_members(&self, group: &str) -> Result<Vec<(User, String)>, StoreError> {
        let columns = self.dialect.user_columns();
        let sql = format!(
            "SELECT {columns}, m.source AS source FROM users JOIN group_members m ON m.user_id = users.id \
             WHERE m.group_name = ? ORDER BY users.username, m.source"
        );
        let rows = sqlx::query(&self.q(&sql))
            .bind(group)
            .fetch_all(self.pool()?)
            .await?;
        rows.iter()
            .map(|row| Ok((user_from_row(row)?.0, row.try_get("source")?)))
            .collect()
    }

    async fn remove_from_group(&self, user_id: &str, group: &str) -> Result<bool, StoreError> {
        let r = sqlx::query(&self.q(
            "DELETE FROM group_members WHERE user_id = ? AND group_name = ? AND source = 'local'",
        ))
        .bind(user_id)
        .bind(group)
        .execute(self.pool()?)
        .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn add_to_group(
        &self,
        user_id: &str,
        group: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool()?.begin().await?;
        sqlx::query(
            &self.q("INSERT INTO groups (name, created_at) VALUES (?, ?) ON CONFLICT DO NOTHING"),
        )
        .bind(group)
        .bind(now.0)
        .execute(&mut *tx)
        .await?;
        sqlx::query(&self.q("INSERT INTO group_members (group_name, user_id, source) VALUES (?, ?, 'local') ON CONFLICT DO NOTHING"))
            .bind(group)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<User>, StoreError> {
        Ok(self.user_where("email", email).await?.map(|(u, _)| u))
    }

    async fn user_by_identity(
        &self,
        issuer: &str,
        subject: &str,
    ) -> Result<Option<User>, StoreError> {
        let columns = self.dialect.user_columns();
        let sql = format!(
            "SELECT {columns} FROM users WHERE id = (SELECT user_id FROM identities WHERE issuer = ? AND subject = ?)"
        );
        let row = sqlx::query(&self.q(&sql))
            .bind(issuer)
            .bind(subject)
            .fetch_optional(self.pool()?)
            .await?;
        Ok(row.as_ref().map(user_from_row).transpose()?.map(|(u, _)| u))
    }

    async fn identities_of(&self, user_id: &str) -> Result<Vec<LinkedIdentity>, StoreError> {
        let rows =
            sqlx::query(&self.q("SELECT * FROM identities WHERE user_id = ? ORDER BY created_at"))
                .bind(user_id)
                .fetch_all(self.pool()?)
                .await?;
        rows.iter().map(identity_from_row).collect()
    }

    async fn link_identity(&self, i: &LinkedIdentity, now: Timestamp) -> Result<(), StoreError> {
        sqlx::query(&self.q("INSERT INTO identities (issuer, subject, user_id, provider, email, created_at, last_seen) \
             VALUES (?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (issuer, subject) DO UPDATE SET email = excluded.email, last_seen = excluded.last_seen"))
        .bind(&i.issuer)
        .bind(&i.subject)
        .bind(&i.user_id)
        .bind(&i.provider)
        .bind(i.email.as_deref())
        .bind(now.0)
        .bind(now.0)
        .execute(self.pool()?)
        .await?;
        Ok(())
    }

    async fn update_profile(
        &self,
        user_id: &str,
        email: Option<&Email>,
        display_name: Option<&str>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        sqlx::query(&self.q("UPDATE users SET email = coalesce(?, email), display_name = coalesce(?, display_name), updated_at = ? WHERE id = ?"))
            .bind(email.map(|e| e.as_str()))
            .bind(display_name)
            .bind(now.0)
            .bind(user_id)
            .execute(self.pool()?)
            .await?;
        Ok(())
    }

    async fn set_role(&self, user_id: &str, role: Role, now: Timestamp) -> Result<(), StoreError> {
        sqlx::query(&self.q("UPDATE users SET role = ?, updated_at = ? WHERE id = ?"))
            .bind(role.as_str())
            .bind(now.0)
            .bind(user_id)
            .execute(self.pool()?)
            .await?;
        Ok(())
    }

    async fn sync_groups(
        &self,
        user_id: &str,
        source: &str,
        groups: &[String],
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool()?.begin().await?;
        // Only real changes touch rows (and so write provisioning events): memberships that
        // stay are left alone, new ones are inserted, gone ones deleted.
        let wanted = serde_json::to_string(groups)
            .map_err(|e| StoreError::Corrupt(format!("group names: {e}")))?;
        sqlx::query(&self.q(&format!(
            "DELETE FROM group_members WHERE user_id = ? AND source = ? AND group_name NOT IN ({})",
            self.dialect.json_strings("?")
        )))
        .bind(user_id)
        .bind(source)
        .bind(&wanted)
        .execute(&mut *tx)
        .await?;
        for group in groups {
            self.join_group(&mut tx, group, user_id, source, now)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn insert_flow(&self, f: &AuthFlow) -> Result<(), StoreError> {
        sqlx::query(&self.q("INSERT INTO auth_flows (state_hash, provider, binding_hash, nonce, verifier, return_to, created_at, completed_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)"))
        .bind(&f.state_hash)
        .bind(&f.provider)
        .bind(&f.binding_hash)
        .bind(&f.nonce)
        .bind(&f.verifier)
        .bind(&f.return_to)
        .bind(f.created_at.0)
        .bind(f.completed_at.map(|t| t.0))
        .execute(self.pool()?)
        .await?;
        Ok(())
    }

    async fn flow(&self, state_hash: &str) -> Result<Option<AuthFlow>, StoreError> {
        let row = sqlx::query(&self.q("SELECT * FROM auth_flows WHERE state_hash = ?"))
            .bind(state_hash)
            .fetch_optional(self.pool()?)
            .await?;
        row.as_ref().map(flow_from_row).transpose()
    }

    async fn complete_flow(&self, state_hash: &str, now: Timestamp) -> Result<bool, StoreError> {
        let r = sqlx::query(&self.q(
            "UPDATE auth_flows SET completed_at = ? WHERE state_hash = ? AND completed_at IS NULL",
        ))
        .bind(now.0)
        .bind(state_hash)
        .execute(self.pool()?)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn count_flows(&self, binding_hash: &str, since: Timestamp) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar(&self.q("SELECT count(*) FROM auth_flows WHERE binding_hash = ? AND created_at >= ? AND completed_at IS NULL"))
        .bind(binding_hash)
        .bind(since.0)
        .fetch_one(self.pool()?)
        .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn delete_flows_before(&self, before: Timestamp) -> Result<u64, StoreError> {
        let r = sqlx::query(&self.q("DELETE FROM auth_flows WHERE created_at < ?"))
            .bind(before.0)
            .execute(self.pool()?)
            .await?;
        Ok(r.rows_affected())
    }

    async fn insert_session(&self, s: &Session) -> Result<(), StoreError> {
        let p = s.provider.as_ref();
        sqlx::query(&self.q("INSERT INTO sessions (id_hash, user_id, created_at, last_seen, client_ip, user_agent, provider, id_token_enc, \
             provider_subject, provider_sid, refresh_token_enc, access_expires_at, claim_sources, amr) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"))
        .bind(&s.id_hash)
        .bind(&s.user_id)
        .bind(s.created_at.0)
        .bind(s.last_seen.0)
        .bind(&s.client_ip)
        .bind(&s.user_agent)
        .bind(p.map(|p| &p.provider))
        .bind(p.and_then(|p| p.id_token_enc.as_ref()))
        .bind(p.and_then(|p| p.subject.as_ref()))
        .bind(p.and_then(|p| p.sid.as_ref()))
        .bind(p.and_then(|p| p.refresh_token_enc.as_ref()))
        .bind(p.and_then(|p| p.access_expires_at).map(|t| t.0))
        .bind(p.map(|p| serde_json::to_string(&p.claim_sources).unwrap_or_default()))
        .bind((!s.amr.is_empty()).then(|| s.amr.join(" ")))
        .execute(self.pool()?)
        .await?;
        self.user_seen(&s.user_id, s.last_seen).await
    }

    async fn session(&self, id_hash: &str) -> Result<Option<Session>, StoreError> {
        let row = sqlx::query(&self.q("SELECT * FROM sessions WHERE id_hash = ?"))
            .bind(id_hash)
            .fetch_optional(self.pool()?)
            .await?;
        row.as_ref().map(session_from_row).transpose()
    }

    async fn sessions_of(&self, user_id: &str) -> Result<Vec<Session>, StoreError> {
        let rows = sqlx::query(
            &self.q("SELECT * FROM sessions WHERE user_id = ? ORDER BY created_at DESC"),
        )
        .bind(user_id)
        .fetch_all(self.pool()?)
        .await?;
        rows.iter().map(session_from_row).collect()
    }

    async fn touch_session(&self, id_hash: &str, last_seen: Timestamp) -> Result<(), StoreError> {
        let mut tx = self.pool()?.begin().await?;
        sqlx::query(&self.q(&format!(
            "UPDATE sessions SET last_seen = {}(last_seen, ?) WHERE id_hash = ?",
            self.dialect.greatest()
        )))
        .bind(last_seen.0)
        .bind(id_hash)
        .execute(&mut *tx)
        .await?;
        sqlx::query(&self.q(&format!(
            "UPDATE users SET last_seen_at = {}(coalesce(last_seen_at, 0), ?) \
             WHERE id = (SELECT user_id FROM sessions WHERE id_hash = ?)",
            self.dialect.greatest()
        )))
        .bind(last_seen.0)
        .bind(id_hash)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn update_session_tokens(
        &self,
        id_hash: &str,
        refresh_token_enc: Option<&str>,
        access_expires_at: Option<Timestamp>,
    ) -> Result<(), StoreError> {
        // A provider that does not rotate refresh tokens sends none: keep the old one.
        sqlx::query(&self.q("UPDATE sessions SET refresh_token_enc = coalesce(?, refresh_token_enc), access_expires_at = ? WHERE id_hash = ?"))
        .bind(refresh_token_enc)
        .bind(access_expires_at.map(|t| t.0))
        .bind(id_hash)
        .execute(self.pool()?)
        .await?;
        Ok(())
    }

    async fn delete_session(&self, id_hash: &str) -> Result<bool, StoreError> {
        let r = sqlx::query(&self.q("DELETE FROM sessions WHERE id_hash = ?"))
            .bind(id_hash)
            .execute(self.pool()?)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn delete_provider_sessions(
        &self,
        provider: &str,
        subject: Option<&str>,
        sid: Option<&str>,
    ) -> Result<Vec<String>, StoreError> {
        // `sid` names one sign-in; without it, every session of the subject at that provider ends.
        let rows = match (sid, subject) {
            (Some(sid), _) => {
                sqlx::query(&self.q("DELETE FROM sessions WHERE provider = ? AND provider_sid = ? RETURNING id_hash"))
                    .bind(provider)
                    .bind(sid)
                    .fetch_all(self.pool()?)
                    .await?
            }
            (None, Some(subject)) => {
                sqlx::query(&self.q("DELETE FROM sessions WHERE provider = ? AND provider_subject = ? RETURNING id_hash"))
                    .bind(provider)
                    .bind(subject)
                    .fetch_all(self.pool()?)
                    .await?
            }
            (None, None) => Vec::new(),
        };
        rows.iter().map(|r| Ok(r.try_get("id_hash")?)).collect()
    }

    async fn delete_expired_sessions(
        &self,
        created_before: Timestamp,
        idle_before: Timestamp,
    ) -> Result<u64, StoreError> {
        let r = sqlx::query(&self.q("DELETE FROM sessions WHERE created_at < ? OR last_seen < ?"))
            .bind(created_before.0)
            .bind(idle_before.0)
            .execute(self.pool()?)
            .await?;
        Ok(r.rows_affected())
    }

    async fn count_sessions(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar(&self.q("SELECT count(*) FROM sessions"))
            .fetch_one(self.pool()?)
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn append_audit(&self, e: &AuditEvent) -> Result<(), StoreError> {
        sqlx::query(&self.q("INSERT INTO audit (at, action, outcome, actor, subject, reason, client_ip) VALUES (?, ?, ?, ?, ?, ?, ?)"))
        .bind(e.at.0)
        .bind(&e.action)
        .bind(&e.outcome)
        .bind(&e.actor)
        .bind(&e.subject)
        .bind(&e.reason)
        .bind(&e.client_ip)
        .execute(self.pool()?)
        .await?;
        Ok(())
    }

    async fn recent_audit(&self, limit: u32) -> Result<Vec<AuditEvent>, StoreError> {
        Ok(self
            .audit_page(&AuditFilter::default(), limit)
            .await?
            .into_iter()
            .map(|(_, e)| e)
            .collect())
    }

    async fn audit_page(
        &self,
        filter: &AuditFilter,
        limit: u32,
    ) -> Result<Vec<(i64, AuditEvent)>, StoreError> {
        // Only the conditions asked for are written: a `(? IS NULL OR id < ?)` would keep
        // SQLite off the primary-key index (measured: 3.7 ms instead of 0.2 ms for a deep page
        // of 100k).
        let mut conditions: Vec<&str> = Vec::new();
        if filter.before.is_some() {
            conditions.push("id < ?");
        }
        if filter.action.is_some() {
            conditions.push("action = ?");
        }
        if filter.user.is_some() {
            conditions.push("(actor = ? OR actor LIKE ? OR subject = ?)");
        }
        if filter.since.is_some() {
            conditions.push("at >= ?");
        }
        if filter.until.is_some() {
            conditions.push("at < ?");
        }
        let mut sql = String::from("SELECT * FROM audit");
        if !conditions.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&conditions.join(" AND "));
        }
        sql.push_str(" ORDER BY id DESC LIMIT ?");
        let sql = self.q(&sql);
        let mut query = sqlx::query(&sql);
        if let Some(before) = filter.before {
            query = query.bind(before);
        }
        if let Some(action) = &filter.action {
            query = query.bind(action);
        }
        if let Some((id, username)) = &filter.user {
            // Ids are UUIDs (no `%` or `_` of LIKE's own), so the prefix match is exact.
            query = query.bind(id).bind(format!("{id} (key %")).bind(username);
        }
        if let Some(since) = filter.since {
            query = query.bind(since.0);
        }
        if let Some(until) = filter.until {
            query = query.bind(until.0);
        }
        let rows = query.bind(i64::from(limit)).fetch_all(self.pool()?).await?;
        rows.iter()
            .map(|row| {
                let event = AuditEvent {
                    at: Timestamp(row.try_get("at")?),
                    action: row.try_get("action")?,
                    outcome: row.try_get("outcome")?,
                    actor: row.try_get("actor")?,
                    subject: row.try_get("subject")?,
                    reason: row.try_get("reason")?,
                    client_ip: row.try_get("client_ip")?,
                };
                Ok((row.try_get("id")?, event))
            })
            .collect()
    }
}
