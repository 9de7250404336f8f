//! Applying the change feed: every process polls the store's `changes` and updates its caches,
//! so a user disabled or a key revoked anywhere (admin API, CLI, another replica) is enforced here
//! within one poll interval.

use std::sync::Arc;
use std::time::Duration;

use portcullis_store::{ChangeKind, Store, StoreError};

use crate::assertion::Assertions;
use crate::principal::Authenticator;

pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

pub struct ChangeWatcher {
    store: Arc<dyn Store>,
    auth: Arc<Authenticator>,
    assertions: Option<Arc<Assertions>>,
    seen: i64,
}

impl ChangeWatcher {
    /// Starts from the newest change: the caches are built fresh at start-up.
    pub async fn new(store: Arc<dyn Store>, auth: Arc<Authenticator>) -> Result<Self, StoreError> {
        let seen = store.latest_change().await?;
        Ok(ChangeWatcher {
            store,
            auth,
            assertions: None,
            seen,
        })
    }

    /// Also reloads the assertion signing keys when they are rotated anywhere.
    pub fn with_assertions(mut self, assertions: Option<Arc<Assertions>>) -> Self {
        self.assertions = assertions;
        self
    }

    /// Applies every change since the last call. A change that cannot be applied (the store
    /// went away meanwhile) stops the batch there: it is tried again on the next poll.
    pub async fn apply_pending(&mut self) -> Result<usize, StoreError> {
        let changes = self.store.changes_since(self.seen).await?;
        self.auth.sessions.feed_read();
        if changes.is_empty() {
            return Ok(0);
        }
        // Any user change can affect keys (a disabled owner's keys stop), and every key change
        // does: the ring is rebuilt once for the batch, before sessions end, so by the time a
        // disabled user's streams close their keys are refused too.
        if changes
            .iter()
            .any(|c| matches!(c.kind, ChangeKind::User | ChangeKind::Key))
        {
            self.auth.keys.reload().await?;
        }
        // Grants carry their user's identity too, and stop with a disabled user.
        if changes
            .iter()
            .any(|c| matches!(c.kind, ChangeKind::User | ChangeKind::Grant))
        {
            self.auth.grants.reload().await?;
        }
        for change in &changes {
            match change.kind {
                ChangeKind::User => self.auth.identities_changed(&change.subject).await?,
                ChangeKind::Key | ChangeKind::Grant => {}
                ChangeKind::SigningKey => {
                    if let Some(assertions) = &self.assertions
                        && let Err(e) = assertions.reload().await
                    {
                        tracing::error!(error = %e, "could not load the rotated signing keys");
                    }
                }
                ChangeKind::Session => self.auth.sessions.ended_elsewhere(&change.subject),
            }
            self.seen = change.seq;
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
