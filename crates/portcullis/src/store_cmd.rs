//! `portcullis migrate` and `portcullis copy-store`: the database's schema, and moving a
//! deployment from SQLite to PostgreSQL.

use std::process::ExitCode;

use portcullis_core::config::Config;
use portcullis_store::{PoolSettings, SqlStore};

#[derive(clap::Args)]
pub struct MigrateArgs {
    /// List the migrations that would run, and change nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(clap::Args)]
pub struct CopyStoreArgs {
    /// The PostgreSQL database to copy into (empty; it is migrated first).
    #[arg(long)]
    to: String,
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("could not start the async runtime: {e}"))
}

fn finish(result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("portcullis: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn unmigrated(config: &Config) -> Result<SqlStore, String> {
    let store = match config.store.postgres_url() {
        Some(url) => {
            let settings = PoolSettings {
                max_connections: 2,
                ..PoolSettings::default()
            };
            SqlStore::postgres(url, &settings, false).await
        }
        None => SqlStore::open_unmigrated(&config.data_dir).await,
    };
    store.map_err(|e| format!("opening the store ({}): {e}", config.store.redacted_url()))
}

/// Applies pending migrations (what `serve` does at start-up, under the same lock), or lists them.
pub fn migrate(config: &Config, args: MigrateArgs) -> ExitCode {
    finish(runtime().and_then(|rt| {
        rt.block_on(async {
            let store = unmigrated(config).await?;
            let pending = store
                .pending_migrations()
                .await
                .map_err(|e| e.to_string())?;
            if pending.is_empty() {
                println!("the store is up to date");
                return Ok(());
            }
            for (version, description) in &pending {
                let verb = if args.dry_run {
                    "would apply"
                } else {
                    "applying"
                };
                println!("{verb} {version} {description}");
            }
            if !args.dry_run {
                store.migrate().await.map_err(|e| e.to_string())?;
                println!("done");
            }
            Ok(())
        })
    }))
}

/// Copies the configured store (SQLite in data_dir) into an empty PostgreSQL database.
pub fn copy_store(config: &Config, args: CopyStoreArgs) -> ExitCode {
    finish(runtime().and_then(|rt| {
        rt.block_on(async {
            let source = crate::config::open_store_sql(config).await?;
            let target = SqlStore::postgres(&args.to, &PoolSettings::default(), true)
                .await
                .map_err(|e| format!("opening the target database: {e}"))?;
            let counts = source.copy_into(&target).await.map_err(|e| e.to_string())?;
            for (table, rows) in counts {
                println!("{table:14} {rows} rows");
            }
            println!(
                "copied; now set store.url to the target and token_key to this deployment's key \
                 (data_dir/token.key), then start Portcullis"
            );
            Ok(())
        })
    }))
}
