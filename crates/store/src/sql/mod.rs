//! The store on SQL: SQLite (one file under `data_dir`, WAL mode) or PostgreSQL. This file opens
//! and migrates it; `queries.rs` holds the operations, `rows.rs` the row mapping.

use std::borrow::Cow;
use std::path::Path;
use std::time::Duration;

use portcullis_core::config::StoreConfig;
use sqlx::AnyPool;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;

use crate::dialect::Dialect;
use crate::{Store, StoreError};

mod acme;
mod credentials;
mod oauth;
mod private;
mod queries;
mod rows;

/// The PostgreSQL cluster tests create their databases in (see [`SqlStore::throwaway`]).
pub const TEST_DATABASE_VAR: &str = "PCS_TEST_POSTGRES_URL";

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");

/// The store on SQL: embedded SQLite (one file under `data_dir`, WAL mode) or PostgreSQL, through
/// sqlx's `Any` driver. The queries are shared; [`Dialect`] holds the differences.
pub struct SqlStore {
    pool: AnyPool,
    dialect: Dialect,
    /// Whether the database answered the last heartbeat (see [`Reachability`]).
    reachability: Reachability,
}

/// What the store knows about reaching its database. The change feed poll (every process with a
/// change watcher reads it every 250 ms) is the heartbeat: when it fails for want of a
/// connection, the database is known to be down, and every other query fails at once instead
/// of waiting for the pool's acquire timeout — a request during an outage must never hang. The
/// next successful poll (within a quarter of a second of recovery) lets queries through again.
/// A process without a watcher (the CLI) never marks it down and simply waits as it would.
#[derive(Default)]
struct Reachability {
    down: std::sync::atomic::AtomicBool,
}

impl Reachability {
    fn check(&self) -> Result<(), StoreError> {
        if self.down.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(StoreError::Unavailable(
                "the database did not answer the last heartbeat; not waiting on it".into(),
            ));
        }
        Ok(())
    }

    /// Learns from a heartbeat's outcome: unreachable only when it could not be worked with at
    /// all (a decoding problem says nothing about reachability).
    fn heard<T>(&self, outcome: &Result<T, StoreError>) {
        let down = matches!(outcome, Err(StoreError::Unavailable(_)));
        let was = self.down.swap(down, std::sync::atomic::Ordering::Relaxed);
        if down && !was {
            tracing::warn!(
                "the database is not answering; requests that need it fail at once until it does"
            );
        } else if was && !down {
            tracing::info!("the database answers again");
        }
    }
}

/// How many connections, and how long to wait for one: a database that does not answer fails a
/// request in seconds rather than holding it.
pub struct PoolSettings {
    pub max_connections: u32,
    pub acquire_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            max_connections: 8,
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

impl SqlStore {
    /// Opens (creating if needed) `portcullis.db` in `data_dir` and applies migrations.
    pub async fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let store = Self::open_unmigrated(data_dir).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Opens `portcullis.db` in `data_dir` as it is (for `portcullis migrate`).
    pub async fn open_unmigrated(data_dir: &Path) -> Result<Self, StoreError> {
        let database = data_dir.join("portcullis.db");
        private::prepare(data_dir, &database).map_err(|e| {
            StoreError::Unavailable(format!(
                "cannot create data_dir {}: {e}",
                data_dir.display()
            ))
        })?;
        let url = format!("sqlite://{}?mode=rwc", database.display());
        Self::connect(&url, Dialect::Sqlite, &PoolSettings::default(), true).await
    }

    /// The store a configuration names: PostgreSQL at `store.url`, else SQLite in `data_dir`.
    /// Pending migrations run first.
    pub async fn configured(store: &StoreConfig, data_dir: &Path) -> Result<Self, StoreError> {
        match store.postgres_url() {
            Some(url) => {
                let settings = PoolSettings {
                    max_connections: store.max_connections,
                    ..PoolSettings::default()
                };
                Self::postgres(url, &settings, true).await
            }
            None => Self::open(data_dir).await,
        }
    }

    /// An empty store for tests. With `PCS_TEST_POSTGRES_URL` set (scripts/test sets it
    /// for its PostgreSQL pass) it is a new database in that cluster, else SQLite in memory — so
    /// the same tests exercise both backends.
    pub async fn throwaway() -> Result<Self, StoreError> {
        match std::env::var(TEST_DATABASE_VAR) {
            Ok(admin_url) if !admin_url.is_empty() => {
                let url = Self::fresh_postgres_database(&admin_url).await?;
                Self::postgres(&url, &PoolSettings::default(), true).await
            }
            _ => Self::in_memory().await,
        }
    }

    /// Creates an empty database beside the one `admin_url` names and returns its URL.
    pub async fn fresh_postgres_database(admin_url: &str) -> Result<String, StoreError> {
        use sqlx::Connection;
        use std::hash::{BuildHasher, Hasher};
        sqlx::any::install_default_drivers();
        let name = format!(
            "pcs_{:016x}",
            std::collections::hash_map::RandomState::new()
                .build_hasher()
                .finish()
        );
        let mut admin = sqlx::AnyConnection::connect(admin_url).await?;
        sqlx::Executor::execute(&mut admin, format!("CREATE DATABASE {name}").as_str()).await?;
        admin.close().await?;
        let (base, query) = match admin_url.split_once('?') {
            Some((base, query)) => (base, format!("?{query}")),
            None => (admin_url, String::new()),
        };
        let server = base.rsplit_once('/').map_or(base, |(server, _)| server);
        Ok(format!("{server}/{name}{query}"))
    }

    /// A private in-memory SQLite database, for tests.
    pub async fn in_memory() -> Result<Self, StoreError> {
        let settings = PoolSettings {
            // An in-memory database exists per connection: keep exactly one.
            max_connections: 1,
            ..PoolSettings::default()
        };
        Self::connect("sqlite::memory:", Dialect::Sqlite, &settings, true).await
    }

    /// PostgreSQL at `url` (`postgres://user:password@host/db`). With `migrate`, pending
    /// migrations run first, under PostgreSQL's advisory lock, so replicas starting together
    /// take turns.
    pub async fn postgres(
        url: &str,
        settings: &PoolSettings,
        migrate: bool,
    ) -> Result<Self, StoreError> {
        Self::connect(url, Dialect::Postgres, settings, migrate).await
    }

    async fn connect(
        url: &str,
        dialect: Dialect,
        settings: &PoolSettings,
        migrate: bool,
    ) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let options: AnyConnectOptions = url
            .parse()
            .map_err(|e| StoreError::Unavailable(format!("the store URL is not valid: {e}")))?;
        let in_memory = url.contains(":memory:");
        let pool = AnyPoolOptions::new()
            .max_connections(settings.max_connections)
            .min_connections(u32::from(in_memory))
            .acquire_timeout(settings.acquire_timeout)
            .idle_timeout((!in_memory).then_some(Duration::from_secs(600)))
            .max_lifetime((!in_memory).then_some(Duration::from_secs(3600)))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    for statement in dialect.session_setup() {
                        sqlx::Executor::execute(&mut *conn, *statement).await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        let store = SqlStore {
            pool,
            dialect,
            reachability: Reachability::default(),
        };
        if migrate {
            store.migrate().await?;
        }
        Ok(store)
    }

    fn migrator(&self) -> &'static Migrator {
        match self.dialect {
            Dialect::Sqlite => &SQLITE_MIGRATIONS,
            Dialect::Postgres => &POSTGRES_MIGRATIONS,
        }
    }

    /// Applies pending migrations.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        self.migrator()
            .run(&self.pool)
            .await
            .map_err(|e| StoreError::Unavailable(format!("migration failed: {e}")))
    }

    /// The migrations not applied yet (version and description), for `portcullis migrate
    /// --dry-run`.
    pub async fn pending_migrations(&self) -> Result<Vec<(i64, String)>, StoreError> {
        // The database must answer; then a failing read means no migration table yet.
        self.ping().await?;
        let applied: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
                .fetch_all(&self.pool)
                .await
                .unwrap_or_default();
        Ok(self
            .migrator()
            .iter()
            .filter(|m| !applied.contains(&m.version))
            .map(|m| (m.version, m.description.to_string()))
            .collect())
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The pool, unless the database is known to be down (then at once an error, no waiting).
    pub(crate) fn pool(&self) -> Result<&AnyPool, StoreError> {
        self.reachability.check()?;
        Ok(&self.pool)
    }

    /// The pool for the heartbeat, which must try even while the database is known down.
    pub(crate) fn heartbeat_pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Records a heartbeat's outcome (see [`Reachability`]) and passes it on.
    pub(crate) fn heard<T>(&self, outcome: Result<T, StoreError>) -> Result<T, StoreError> {
        self.reachability.heard(&outcome);
        outcome
    }

    /// A statement in this store's dialect.
    fn q<'a>(&self, text: &'a str) -> Cow<'a, str> {
        self.dialect.sql(text)
    }
}

#[cfg(test)]
mod tests;
