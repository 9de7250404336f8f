//! Moving a deployment between stores (SQLite → PostgreSQL): every table, row for row, in one
//! transaction on the target, with the outbox triggers held off so the copy writes no events of
//! its own and pending deliveries keep their sequence numbers.

use crate::Conflict;
use std::collections::BTreeMap;

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::dialect::Dialect;
use crate::{SqlStore, StoreError};

#[derive(Clone, Copy)]
enum Kind {
    Text,
    Int,
}

use Kind::{Int, Text};

/// Every table, parents before children, with its columns; the first column(s) order the rows.
/// Not `acme_leases`: a lease belongs to a running process, and a moved deployment starts
/// without one.
const TABLES: &[(&str, &[(&str, Kind)])] = &[
    (
        "users",
        &[
            ("id", Text),
            ("username", Text),
            ("email", Text),
            ("display_name", Text),
            ("role", Text),
            ("status", Text),
            ("password_hash", Text),
            ("created_at", Int),
            ("updated_at", Int),
            ("last_seen_at", Int),
            ("must_change_password", Int),
        ],
    ),
    (
        "password_resets",
        &[
            ("token_hash", Text),
            ("user_id", Text),
            ("created_at", Int),
            ("expires_at", Int),
            ("created_by", Text),
            ("used_at", Int),
        ],
    ),
    (
        "factors",
        &[
            ("id", Text),
            ("user_id", Text),
            ("kind", Text),
            ("label", Text),
            ("secret_enc", Text),
            ("credential_id", Text),
            ("last_step", Int),
            ("created_at", Int),
            ("last_used_at", Int),
        ],
    ),
    (
        "recovery_codes",
        &[
            ("user_id", Text),
            ("code_hash", Text),
            ("created_at", Int),
            ("used_at", Int),
        ],
    ),
    (
        "groups",
        &[
            ("name", Text),
            ("created_at", Int),
            ("scim_id", Text),
            ("external_id", Text),
        ],
    ),
    (
        "group_members",
        &[("group_name", Text), ("user_id", Text), ("source", Text)],
    ),
    (
        "identities",
        &[
            ("issuer", Text),
            ("subject", Text),
            ("user_id", Text),
            ("provider", Text),
            ("email", Text),
            ("created_at", Int),
            ("last_seen", Int),
        ],
    ),
    (
        "sessions",
        &[
            ("id_hash", Text),
            ("user_id", Text),
            ("created_at", Int),
            ("last_seen", Int),
            ("client_ip", Text),
            ("user_agent", Text),
            ("provider", Text),
            ("id_token_enc", Text),
            ("provider_subject", Text),
            ("provider_sid", Text),
            ("refresh_token_enc", Text),
            ("access_expires_at", Int),
            ("claim_sources", Text),
            ("amr", Text),
        ],
    ),
    (
        "auth_flows",
        &[
            ("state_hash", Text),
            ("provider", Text),
            ("binding_hash", Text),
            ("nonce", Text),
            ("verifier", Text),
            ("return_to", Text),
            ("created_at", Int),
            ("completed_at", Int),
        ],
    ),
    (
        "api_keys",
        &[
            ("id", Text),
            ("hash", Text),
            ("name", Text),
            ("owner_id", Text),
            ("allowed_apps", Text),
            ("expires_at", Int),
            ("created_at", Int),
            ("last_used_at", Int),
            ("revoked_at", Int),
        ],
    ),
    (
        "audit",
        &[
            ("id", Int),
            ("at", Int),
            ("action", Text),
            ("outcome", Text),
            ("actor", Text),
            ("subject", Text),
            ("reason", Text),
            ("client_ip", Text),
        ],
    ),
    (
        "changes",
        &[("seq", Int), ("kind", Text), ("subject", Text), ("at", Int)],
    ),
    (
        "signing_keys",
        &[
            ("kid", Text),
            ("private_key_enc", Text),
            ("created_at", Int),
            ("retired_at", Int),
        ],
    ),
    (
        "outbox",
        &[("seq", Int), ("user_id", Text), ("kind", Text), ("at", Int)],
    ),
    (
        "deliveries",
        &[
            ("seq", Int),
            ("sink", Text),
            ("user_id", Text),
            ("kind", Text),
            ("state", Text),
            ("attempts", Int),
            ("created_at", Int),
            ("next_attempt_at", Int),
            ("last_error", Text),
            ("finished_at", Int),
        ],
    ),
    (
        "oauth_clients",
        &[
            ("id", Text),
            ("name", Text),
            ("redirect_uris", Text),
            ("secret_hash", Text),
            ("created_at", Int),
            ("last_used_at", Int),
        ],
    ),
    (
        "oauth_codes",
        &[
            ("code_hash", Text),
            ("user_id", Text),
            ("client_id", Text),
            ("client_name", Text),
            ("redirect_uri", Text),
            ("code_challenge", Text),
            ("app", Text),
            ("resource", Text),
            ("scopes", Text),
            ("expires_at", Int),
            ("used_at", Int),
            ("grant_id", Text),
        ],
    ),
    (
        "oauth_grants",
        &[
            ("id", Text),
            ("user_id", Text),
            ("client_id", Text),
            ("client_name", Text),
            ("app", Text),
            ("resource", Text),
            ("scopes", Text),
            ("created_at", Int),
            ("last_used_at", Int),
            ("expires_at", Int),
        ],
    ),
    (
        "sign_in_failures",
        &[
            ("throttle_key", Text),
            ("failures", Int),
            ("last_failure", Int),
        ],
    ),
    (
        "acme_state",
        &[("name", Text), ("value", Text), ("updated_at", Int)],
    ),
    (
        "oauth_refresh_tokens",
        &[
            ("token_hash", Text),
            ("grant_id", Text),
            ("created_at", Int),
            ("rotated_at", Int),
        ],
    ),
];

/// The copied rows are the events (outbox and change feed) already written: the triggers must
/// not write them again.
const HOLD_TRIGGERS: &[&str] = &[
    "ALTER TABLE users DISABLE TRIGGER outbox_user",
    "ALTER TABLE group_members DISABLE TRIGGER outbox_membership",
    "ALTER TABLE users DISABLE TRIGGER changes_user",
    "ALTER TABLE group_members DISABLE TRIGGER changes_membership",
    "ALTER TABLE sessions DISABLE TRIGGER changes_session",
    "ALTER TABLE api_keys DISABLE TRIGGER changes_key",
    "ALTER TABLE signing_keys DISABLE TRIGGER changes_signing_key",
    "ALTER TABLE oauth_grants DISABLE TRIGGER changes_grant",
];

/// Triggers back on, and numbering continues after the copied rows.
const RESUME_TRIGGERS_AND_SEQUENCES: &[&str] = &[
    "ALTER TABLE users ENABLE TRIGGER outbox_user",
    "ALTER TABLE group_members ENABLE TRIGGER outbox_membership",
    "ALTER TABLE users ENABLE TRIGGER changes_user",
    "ALTER TABLE group_members ENABLE TRIGGER changes_membership",
    "ALTER TABLE sessions ENABLE TRIGGER changes_session",
    "ALTER TABLE api_keys ENABLE TRIGGER changes_key",
    "ALTER TABLE signing_keys ENABLE TRIGGER changes_signing_key",
    "ALTER TABLE oauth_grants ENABLE TRIGGER changes_grant",
    "SELECT setval(pg_get_serial_sequence('audit', 'id'), coalesce((SELECT max(id) FROM audit), 0) + 1, false)",
    "SELECT setval(pg_get_serial_sequence('changes', 'seq'), coalesce((SELECT max(seq) FROM changes), 0) + 1, false)",
    "SELECT setval(pg_get_serial_sequence('outbox', 'seq'), coalesce((SELECT max(seq) FROM outbox), 0) + 1, false)",
];

/// One stored value, as both backends hold it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Null,
    Text(String),
    Int(i64),
}

/// Every row of every table, in key order: what a copy must preserve.
pub type Dump = BTreeMap<&'static str, Vec<Vec<Value>>>;

fn read(row: &AnyRow, name: &str, kind: Kind) -> Result<Value, StoreError> {
    Ok(match kind {
        Text => row
            .try_get::<Option<String>, _>(name)?
            .map_or(Value::Null, Value::Text),
        Int => row
            .try_get::<Option<i64>, _>(name)?
            .map_or(Value::Null, Value::Int),
    })
}

impl SqlStore {
    /// Every row of every table (for moving a deployment, and for checking that it moved whole).
    pub async fn dump(&self) -> Result<Dump, StoreError> {
        let mut dump = Dump::new();
        for (table, columns) in TABLES {
            let select: Vec<String> = columns
                .iter()
                .map(|(c, _)| self.dialect().read_column(table, c))
                .collect();
            let order: Vec<&str> = columns.iter().take(3).map(|(c, _)| *c).collect();
            let sql = format!(
                "SELECT {} FROM {table} ORDER BY {}",
                select.join(", "),
                order.join(", ")
            );
            let rows = sqlx::query(&sql).fetch_all(self.pool()?).await?;
            let mut values = Vec::with_capacity(rows.len());
            for row in &rows {
                values.push(
                    columns
                        .iter()
                        .map(|(c, kind)| read(row, c, *kind))
                        .collect::<Result<Vec<_>, _>>()?,
                );
            }
            dump.insert(table, values);
        }
        Ok(dump)
    }

    /// Copies everything in this store into `target`, which must be empty (freshly migrated).
    /// All or nothing: one transaction on the target. Returns the number of rows per table.
    pub async fn copy_into(
        &self,
        target: &SqlStore,
    ) -> Result<Vec<(&'static str, usize)>, StoreError> {
        let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
            .fetch_one(target.pool()?)
            .await?;
        if users > 0 {
            return Err(StoreError::Conflict(Conflict::State(
                "the target store already has users; copy into an empty, freshly migrated database"
                    .into(),
            )));
        }
        if target.dialect() != Dialect::Postgres {
            return Err(StoreError::Conflict(Conflict::State(
                "copies go into PostgreSQL (store.url); SQLite is where deployments start".into(),
            )));
        }
        let dump = self.dump().await?;
        let mut tx = target.pool()?.begin().await?;
        for statement in HOLD_TRIGGERS {
            sqlx::query(statement).execute(&mut *tx).await?;
        }
        let mut counts = Vec::new();
        for (table, columns) in TABLES {
            let rows = dump.get(table).map(Vec::as_slice).unwrap_or_default();
            let names: Vec<&str> = columns.iter().map(|(c, _)| *c).collect();
            let placeholders = vec!["?"; names.len()].join(", ");
            let sql = target
                .dialect()
                .sql(&format!(
                    "INSERT INTO {table} ({}) VALUES ({placeholders})",
                    names.join(", ")
                ))
                .into_owned();
            for row in rows {
                let mut query = sqlx::query(&sql);
                for (value, (_, kind)) in row.iter().zip(columns.iter()) {
                    // A NULL is bound with its column's type: PostgreSQL checks it.
                    query = match (value, kind) {
                        (Value::Null, Text) => query.bind(None::<String>),
                        (Value::Null, Int) => query.bind(None::<i64>),
                        (Value::Text(t), _) => query.bind(t.clone()),
                        (Value::Int(i), _) => query.bind(*i),
                    };
                }
                query.execute(&mut *tx).await?;
            }
            counts.push((*table, rows.len()));
        }
        for statement in RESUME_TRIGGERS_AND_SEQUENCES {
            sqlx::query(statement).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(counts)
    }
}
