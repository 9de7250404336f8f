//! Server-side sessions behind an in-memory cache.
//!
//! The cookie carries only a random id; the store keeps its SHA-256. Every live session a request
//! touches is held in memory with the identity it resolves to, so the per-request check is a hash
//! and a map lookup. The store is read only on a cache miss (first request after a restart or an
//! eviction) and written when a session starts, ends, or has been used for another
//! `TOUCH_INTERVAL` (so idle expiry survives a restart without a write per request).
//!
//! Revocation removes the cache entry in the same call that deletes the row, so a revoked session
//! is refused on its very next request.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use portcullis_core::session::{Expiry, Session, SessionPolicy};
use portcullis_core::user::{User, UserStatus};
use portcullis_core::{Clock, Identity, Timestamp};
use portcullis_store::{Store, StoreError};

use crate::secret::{looks_like_token, random_token, token_hash};

/// How often a busy session's `last_seen` is written back to the store.
const TOUCH_INTERVAL: i64 = 60;
/// Unknown ids are remembered this long, so a replayed dead cookie costs no database reads.
const NEGATIVE_TTL: Duration = Duration::from_secs(30);

/// A live session as the hot path sees it.
#[derive(Debug)]
pub struct ActiveSession {
    pub id_hash: String,
    pub user_id: String,
    pub identity: Arc<Identity>,
    pub created_at: Timestamp,
    last_seen: AtomicI64,
    last_persisted: AtomicI64,
}

impl ActiveSession {
    fn new(session: &Session, user: &User) -> Self {
        ActiveSession {
            id_hash: session.id_hash.clone(),
            user_id: session.user_id.clone(),
            identity: Arc::new(user.identity()),
            created_at: session.created_at,
            last_seen: AtomicI64::new(session.last_seen.0),
            last_persisted: AtomicI64::new(session.last_seen.0),
        }
    }

    pub fn last_seen(&self) -> Timestamp {
        Timestamp(self.last_seen.load(Ordering::Relaxed))
    }

    fn snapshot(&self) -> Session {
        Session {
            id_hash: self.id_hash.clone(),
            user_id: self.user_id.clone(),
            created_at: self.created_at,
            last_seen: self.last_seen(),
            client_ip: None,
            user_agent: None,
            provider: None,
            id_token_enc: None,
            provider_subject: None,
            provider_sid: None,
        }
    }

    pub fn expires_at(&self, policy: &SessionPolicy) -> Timestamp {
        self.snapshot().expires_at(policy)
    }
}

#[derive(Clone)]
enum Cached {
    Live(Arc<ActiveSession>),
    Unknown,
}

pub struct SessionManager {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    policy: SessionPolicy,
    live: moka::sync::Cache<String, Cached>,
    unknown: moka::sync::Cache<String, Cached>,
}

/// Request facts recorded with a new session.
#[derive(Clone, Debug, Default)]
pub struct SessionOrigin {
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    /// The provider signed in through, and its ID token encrypted (for RP-initiated logout).
    pub provider: Option<String>,
    pub id_token_enc: Option<String>,
    /// The provider's `sub` and `sid`, for back-channel logout.
    pub provider_subject: Option<String>,
    pub provider_sid: Option<String>,
}

impl SessionManager {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, policy: SessionPolicy) -> Self {
        SessionManager {
            store,
            clock,
            policy,
            live: moka::sync::Cache::builder()
                .max_capacity(1_000_000)
                .time_to_idle(policy.idle)
                .build(),
            unknown: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(NEGATIVE_TTL)
                .build(),
        }
    }

    pub fn policy(&self) -> &SessionPolicy {
        &self.policy
    }

    /// Starts a session for `user` and returns the cookie value (shown to nobody else, stored
    /// nowhere) with the cached session.
    pub async fn create(
        &self,
        user: &User,
        origin: SessionOrigin,
    ) -> Result<(String, Arc<ActiveSession>), StoreError> {
        let token = random_token();
        let now = self.clock.now();
        let session = Session {
            id_hash: token_hash(&token),
            user_id: user.id.clone(),
            created_at: now,
            last_seen: now,
            client_ip: origin.client_ip,
            user_agent: origin.user_agent,
            provider: origin.provider,
            id_token_enc: origin.id_token_enc,
            provider_subject: origin.provider_subject,
            provider_sid: origin.provider_sid,
        };
        self.store.insert_session(&session).await?;
        let active = Arc::new(ActiveSession::new(&session, user));
        self.live
            .insert(session.id_hash.clone(), Cached::Live(active.clone()));
        Ok((token, active))
    }

    /// The live session for a cookie value, or `None`. Malformed values never reach the store.
    pub async fn resolve(
        &self,
        cookie_value: &str,
    ) -> Result<Option<Arc<ActiveSession>>, StoreError> {
        if !looks_like_token(cookie_value) {
            return Ok(None);
        }
        let id_hash = token_hash(cookie_value);
        let cached = match self
            .live
            .get(&id_hash)
            .or_else(|| self.unknown.get(&id_hash))
        {
            Some(cached) => cached,
            None => self.load(&id_hash).await?,
        };
        let Cached::Live(active) = cached else {
            return Ok(None);
        };
        let now = self.clock.now();
        if let Err(expiry) = active.snapshot().check(&self.policy, now) {
            tracing::debug!(?expiry, "session expired");
            self.end(&id_hash).await?;
            return Ok(None);
        }
        self.touch(&active, now);
        Ok(Some(active))
    }

    async fn load(&self, id_hash: &str) -> Result<Cached, StoreError> {
        let loaded = match self.store.session(id_hash).await? {
            Some(session) => match self.store.user_by_id(&session.user_id).await? {
                Some(user) if user.status == UserStatus::Active => {
                    Cached::Live(Arc::new(ActiveSession::new(&session, &user)))
                }
                _ => Cached::Unknown,
            },
            None => Cached::Unknown,
        };
        match &loaded {
            Cached::Live(_) => self.live.insert(id_hash.to_owned(), loaded.clone()),
            Cached::Unknown => self.unknown.insert(id_hash.to_owned(), loaded.clone()),
        }
        Ok(loaded)
    }

    fn touch(&self, active: &Arc<ActiveSession>, now: Timestamp) {
        active.last_seen.fetch_max(now.0, Ordering::Relaxed);
        let persisted = active.last_persisted.load(Ordering::Relaxed);
        if now.0 - persisted < TOUCH_INTERVAL {
            return;
        }
        // Only the request that wins the swap writes, off the request path.
        if active
            .last_persisted
            .compare_exchange(persisted, now.0, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            let store = self.store.clone();
            let id_hash = active.id_hash.clone();
            tokio::spawn(async move {
                if let Err(e) = store.touch_session(&id_hash, now).await {
                    tracing::warn!(error = %e, "could not record session activity");
                }
            });
        }
    }

    /// The stored record behind a cookie value (provider, sealed ID token), for sign-out.
    pub async fn stored(&self, cookie_value: &str) -> Result<Option<Session>, StoreError> {
        if !looks_like_token(cookie_value) {
            return Ok(None);
        }
        self.store.session(&token_hash(cookie_value)).await
    }

    /// Ends the session behind a cookie value. Returns the ended session's user id, if any.
    pub async fn revoke(&self, cookie_value: &str) -> Result<Option<String>, StoreError> {
        if !looks_like_token(cookie_value) {
            return Ok(None);
        }
        let id_hash = token_hash(cookie_value);
        let user_id = match self.live.get(&id_hash) {
            Some(Cached::Live(active)) => Some(active.user_id.clone()),
            _ => self.store.session(&id_hash).await?.map(|s| s.user_id),
        };
        self.end(&id_hash).await?;
        Ok(user_id)
    }

    async fn end(&self, id_hash: &str) -> Result<(), StoreError> {
        // Forget the session in memory first: even if the store write fails, this process
        // refuses the cookie from now on.
        self.live.invalidate(id_hash);
        self.unknown.insert(id_hash.to_owned(), Cached::Unknown);
        self.store.delete_session(id_hash).await?;
        Ok(())
    }

    /// Ends the sessions a provider's back-channel logout names. Returns how many ended.
    pub async fn end_provider_sessions(
        &self,
        provider: &str,
        subject: Option<&str>,
        sid: Option<&str>,
    ) -> Result<usize, StoreError> {
        let ended = self
            .store
            .delete_provider_sessions(provider, subject, sid)
            .await?;
        for id_hash in &ended {
            self.live.invalidate(id_hash);
            self.unknown.insert(id_hash.clone(), Cached::Unknown);
        }
        Ok(ended.len())
    }

    /// Deletes expired sessions from the store; run periodically.
    pub async fn sweep(&self) -> Result<u64, StoreError> {
        let now = self.clock.now();
        let created_before = Timestamp(now.0.saturating_sub(secs(self.policy.absolute)));
        let idle_before = Timestamp(now.0.saturating_sub(secs(self.policy.idle)));
        // Persist recent activity first so busy sessions are not swept as idle.
        for (_, cached) in self.live.iter() {
            if let Cached::Live(active) = cached {
                let seen = active.last_seen();
                if seen.0 > active.last_persisted.load(Ordering::Relaxed) {
                    self.store.touch_session(&active.id_hash, seen).await?;
                    active.last_persisted.store(seen.0, Ordering::Relaxed);
                }
                if active.snapshot().check(&self.policy, now) == Err(Expiry::Absolute) {
                    self.live.invalidate(&active.id_hash);
                }
            }
        }
        self.store
            .delete_expired_sessions(created_before, idle_before)
            .await
    }

    /// Sessions currently held in memory (for the `active sessions` gauge).
    pub fn cached_count(&self) -> u64 {
        self.live.run_pending_tasks();
        self.live.entry_count()
    }
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_core::{ManualClock, Role};
    use portcullis_store::{NewUser, SqliteStore};

    async fn setup() -> (SessionManager, Arc<dyn Store>, ManualClock, User) {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().await.unwrap());
        let clock = ManualClock::at(Timestamp(1_000_000));
        let user = store
            .create_user(
                NewUser {
                    id: "u1".into(),
                    username: "alice".into(),
                    email: None,
                    display_name: Some("Alice".into()),
                    role: Role::User,
                    status: UserStatus::Active,
                    password_hash: None,
                },
                clock.now(),
            )
            .await
            .unwrap();
        let policy = SessionPolicy {
            idle: Duration::from_secs(600),
            absolute: Duration::from_secs(3600),
        };
        let manager = SessionManager::new(store.clone(), Arc::new(clock.clone()), policy);
        (manager, store, clock, user)
    }

    #[tokio::test]
    async fn create_resolve_revoke() {
        let (manager, store, _, user) = setup().await;
        let (token, _) = manager
            .create(&user, SessionOrigin::default())
            .await
            .unwrap();
        let active = manager.resolve(&token).await.unwrap().unwrap();
        assert_eq!(active.identity.display_name, "Alice");
        assert_eq!(manager.revoke(&token).await.unwrap().as_deref(), Some("u1"));
        assert!(manager.resolve(&token).await.unwrap().is_none());
        assert_eq!(store.count_sessions().await.unwrap(), 0);
    }

    #[tokio::test]
    async fn sessions_survive_a_restart_through_the_store() {
        let (manager, store, clock, user) = setup().await;
        let (token, _) = manager
            .create(&user, SessionOrigin::default())
            .await
            .unwrap();
        let fresh = SessionManager::new(store, Arc::new(clock), *manager.policy());
        assert!(fresh.resolve(&token).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn garbage_and_unknown_cookies_resolve_to_nothing() {
        let (manager, _, _, _) = setup().await;
        assert!(manager.resolve("").await.unwrap().is_none());
        assert!(
            manager
                .resolve("'; DROP TABLE sessions; --")
                .await
                .unwrap()
                .is_none()
        );
        assert!(manager.resolve(&random_token()).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn idle_and_absolute_expiry_end_the_session() {
        let (manager, store, clock, user) = setup().await;
        let (token, _) = manager
            .create(&user, SessionOrigin::default())
            .await
            .unwrap();
        clock.advance(Duration::from_secs(599));
        assert!(manager.resolve(&token).await.unwrap().is_some());
        clock.advance(Duration::from_secs(600));
        assert!(manager.resolve(&token).await.unwrap().is_none(), "idle");
        assert_eq!(store.count_sessions().await.unwrap(), 0);

        let (token, _) = manager
            .create(&user, SessionOrigin::default())
            .await
            .unwrap();
        for _ in 0..7 {
            clock.advance(Duration::from_secs(500));
            let alive = manager.resolve(&token).await.unwrap().is_some();
            assert!(alive);
        }
        clock.advance(Duration::from_secs(500));
        assert!(manager.resolve(&token).await.unwrap().is_none(), "absolute");
    }
}
