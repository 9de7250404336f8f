//! Applying the change feed: every process polls the store's `changes` and updates its caches,
//! so a user disabled or a key revoked anywhere (admin API, CLI, another replica) is enforced here
//! within one poll interval.

use std::sync::Arc;
use std::time::Duration;

use portcullis_core::user::UserStatus;
use portcullis_store::{ChangeKind, Store, StoreError};

use crate::assertion::Assertions;
use crate::external::ExternalAuth;
use crate::keys::KeyRing;
use crate::session::SessionManager;

pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

pub struct ChangeWatcher {
    store: Arc<dyn Store>,
    sessions: Arc<SessionManager>,
    keys: Arc<KeyRing>,
    assertions: Option<Arc<Assertions>>,
    external: Option<Arc<ExternalAuth>>,
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
            assertions: None,
            external: None,
            seen,
        })
    }

    /// Also drops cached external identities of changed users.
    pub fn with_external(mut self, external: Option<Arc<ExternalAuth>>) -> Self {
        self.external = external;
        self
    }

    /// Also reloads the assertion signing keys when they are rotated anywhere.
    pub fn with_assertions(mut self, assertions: Option<Arc<Assertions>>) -> Self {
        self.assertions = assertions;
        self
    }

    /// Applies every change since the last call. Keys are rebuilt before sessions are ended, so
    /// by the time a disabled user's streams close, their keys are refused too.
    pub async fn apply_pending(&mut self) -> Result<usize, StoreError> {
        let changes = self.store.changes_since(self.seen).await?;
        self.sessions.feed_read();
        if changes.is_empty() {
            return Ok(0);
        }
        // Any user change can affect keys (a disabled owner's keys stop), and every key change does.
        self.keys.reload().await?;
        for change in &changes {
            match change.kind {
                ChangeKind::User => {
                    if let Some(external) = &self.external {
                        let active = matches!(
                            self.store.user_by_id(&change.subject).await?,
                            Some(user) if user.status == UserStatus::Active
                        );
                        if active {
                            external.user_changed(&change.subject);
                        } else {
                            external.user_ended(&change.subject);
                        }
                    }
                    self.sessions.user_changed(&change.subject).await?;
                }
                ChangeKind::SigningKey => {
                    if let Some(assertions) = &self.assertions
                        && let Err(e) = assertions.reload().await
                    {
                        tracing::error!(error = %e, "could not load the rotated signing keys");
                    }
                }
                ChangeKind::Session => self.sessions.ended_elsewhere(&change.subject),
                ChangeKind::Key => {}
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
