//! Where the directory, sessions and the outbox live: embedded SQLite (the default) or PostgreSQL.

use std::time::Duration;

use serde::Deserialize;

use super::Config;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `postgres://user:password@host:5432/db` for PostgreSQL (several replicas may share it).
    /// Unset: SQLite in `data_dir/portcullis.db`.
    #[serde(default)]
    pub url: Option<String>,
    /// PostgreSQL connections per process.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// While the database cannot be reached, sessions this process already knows keep working for
    /// this long; then they are refused until it answers again (revocations made elsewhere could
    /// not be seen meanwhile).
    #[serde(default = "default_outage_grace", with = "humantime_serde")]
    pub outage_grace: Duration,
}

fn default_max_connections() -> u32 {
    16
}

fn default_outage_grace() -> Duration {
    Duration::from_secs(300)
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: None,
            max_connections: default_max_connections(),
            outage_grace: default_outage_grace(),
        }
    }
}

impl StoreConfig {
    /// The PostgreSQL URL, when one is configured.
    pub fn postgres_url(&self) -> Option<&str> {
        self.url.as_deref()
    }

    /// The URL without its password (or any query parameters, which may carry one), for
    /// messages and logs.
    pub fn redacted_url(&self) -> String {
        let Some(url) = &self.url else {
            return "sqlite (data_dir)".into();
        };
        let Some((scheme, rest)) = url.split_once("://") else {
            return "(not a URL)".into();
        };
        let rest = rest.split('?').next().unwrap_or_default();
        match rest.split_once('@') {
            Some((userinfo, host)) => {
                let user = userinfo.split(':').next().unwrap_or_default();
                format!("{scheme}://{user}@{host}")
            }
            None => format!("{scheme}://{rest}"),
        }
    }
}

/// Checks the store settings; problems are reported through `push(key, message)`.
pub(super) fn validate(config: &Config, push: &mut impl FnMut(String, String)) {
    let store = &config.store;
    if let Some(url) = &store.url {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            push(
                "store.url".into(),
                "must be a postgres:// URL (leave it unset for the embedded SQLite in data_dir)"
                    .into(),
            );
        }
        if config.token_key.is_none() {
            push(
                "token_key".into(),
                "must be set with a PostgreSQL store: every replica seals and opens the same provider tokens and signing keys \
                 (32 random bytes, base64url: openssl rand 32 | basenc --base64url)"
                    .into(),
            );
        }
    }
    if store.max_connections == 0 {
        push("store.max_connections".into(), "must be at least 1".into());
    }
    if store.outage_grace > Duration::from_secs(3600) {
        push(
            "store.outage_grace".into(),
            "at most 1h: during an outage revocations made elsewhere cannot be seen".into(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show() {
        let store = |url: &str| StoreConfig {
            url: Some(url.into()),
            ..StoreConfig::default()
        };
        assert_eq!(
            store("postgres://pcs:s3cret@db:5432/pcs?sslmode=require").redacted_url(),
            "postgres://pcs@db:5432/pcs"
        );
        assert_eq!(
            store("postgres://db/pcs?password=s3cret").redacted_url(),
            "postgres://db/pcs"
        );
    }
}
