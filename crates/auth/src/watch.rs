//! Applying the change feed: every process polls the store's `changes` and updates its caches,
//! so a user disabled or a key revoked anywhere (admin API, CLI, another replica) is enforced here
//! within one poll interval.

use std::sync::Arc;
use std::time::Duration;

use portcullis_store::{ChangeKind, Store, StoreError};

use crate::keys::KeyRing;
use crate::session::SessionManager;

pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

pub struct ChangeWatcher {
    store: Arc<dyn Store>,
    sessions: Arc<SessionManager>,
    keys: Arc<KeyRing>,
    seen: i64,
}

impl ChangeWatcher {
    /// Starts from the newest change: the caches are built fresh at start-up.
    pub async fn new(
        store: Arc<dyn Store>,
        sessions: Arc<SessionManager>,
        keys: Arc<KeyRing>,
    ) -> Result<Self, StoreError> {
        let seen = store.latest_change().await?;
        Ok(ChangeWatcher {
            store,
            sessions,
            keys,
            seen,
        })
    }

    /// Applies every change since the last call.
    pub async fn apply_pending(&mut self) -> Result<usize, StoreError> {
        let changes = self.store.changes_since(self.seen).await?;
        let mut reload_keys = false;
        for change in &changes {
            match change.kind {
                ChangeKind::User => {
                    self.sessions.user_changed(&change.subject).await?;
                    // A disabled owner's keys stop; a renamed one's carry the new identity.
                    reload_keys = true;
                }
                ChangeKind::Key => reload_keys = true,
            }
            self.seen = change.seq;
        }
        if reload_keys {
            self.keys.reload().await?;
        }
        Ok(changes.len())
    }

    pub async fn run(mut self) {
        let mut interval = tokio::time::interval(POLL_INTERVAL);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            if let Err(e) = self.apply_pending().await {
                tracing::warn!(error = %e, "could not read the change feed; retrying");
            }
        }
    }
}
