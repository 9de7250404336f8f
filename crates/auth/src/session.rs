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

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use portcullis_core::session::{Expiry, ProviderSession, Session, SessionPolicy};
use portcullis_core::user::{User, UserStatus};
use portcullis_core::{Clock, Identity, Timestamp};
use portcullis_store::{ChangeKind, Store, StoreError};
use tokio_util::sync::CancellationToken;

use crate::guards::StreamGuards;
use crate::secret::{looks_like_token, random_token, token_hash};

/// How often a busy session's `last_seen` is written back to the store.
const TOUCH_INTERVAL: i64 = 60;
/// Unknown ids are remembered this long, so a replayed dead cookie costs no database reads.
const NEGATIVE_TTL: Duration = Duration::from_secs(30);

/// A live session as the hot path sees it.
#[derive(Debug)]
pub struct ActiveSession {
    pub id_hash: String,
    /// A public name for the session (the `sid` of assertions): derived from the id hash, from
    /// which neither the cookie nor the id hash can be recovered.
    pub sid: String,
    pub user_id: String,
    pub identity: Arc<Identity>,
    pub created_at: Timestamp,
    last_seen: AtomicI64,
    last_persisted: AtomicI64,
    /// Provider-backed sessions keep their refresh state here (see [`Refresher`]).
    provider: Option<ProviderTokens>,
    /// This session's stream guard, once looked up (saves the shared map on later requests).
    guard: std::sync::OnceLock<CancellationToken>,
}

/// The refresh state of a provider-backed session.
#[derive(Debug)]
struct ProviderTokens {
    provider: String,
    subject: Option<String>,
    refresh_token_enc: tokio::sync::Mutex<Option<String>>,
    /// Unix seconds; 0 when the provider gave no expiry.
    access_expires_at: AtomicI64,
    /// No refresh is attempted before this (back-off after a provider outage).
    not_before: AtomicI64,
    refreshing: AtomicBool,
}

/// The session whose provider tokens are due.
pub struct RefreshRequest<'a> {
    pub provider: &'a str,
    pub refresh_token_enc: &'a str,
    pub user_id: &'a str,
    /// The provider's `sub` for this session: re-synced claims must be about the same person.
    pub subject: Option<&'a str>,
}

/// What became of an attempt to refresh a session's provider tokens.
pub enum RefreshOutcome {
    Renewed {
        refresh_token_enc: Option<String>,
        access_expires_at: Option<Timestamp>,
        /// The user's profile, groups or role were re-read from the provider: cached identities
        /// are stale.
        identity_changed: bool,
    },
    /// The provider refused for good (revoked, expired, user disabled): the session ends.
    Rejected(String),
    /// The provider could not be asked; the session lives on and the refresh is retried later.
    Unavailable(String),
}

/// Refreshes provider tokens; implemented over the configured providers.
#[async_trait::async_trait]
pub trait Refresher: Send + Sync {
    async fn refresh(&self, request: RefreshRequest<'_>) -> RefreshOutcome;
}

/// Refresh this long before the access token expires.
const REFRESH_MARGIN: i64 = 30;
/// After a provider outage, wait this long before trying again.
const REFRESH_RETRY: i64 = 30;

impl ActiveSession {
    fn new(session: &Session, user: &User) -> Self {
        let provider = session
            .provider
            .as_ref()
            .filter(|p| p.refresh_token_enc.is_some())
            .map(|p| ProviderTokens {
                provider: p.provider.clone(),
                subject: p.subject.clone(),
                refresh_token_enc: tokio::sync::Mutex::new(p.refresh_token_enc.clone()),
                access_expires_at: AtomicI64::new(p.access_expires_at.map(|t| t.0).unwrap_or(0)),
                not_before: AtomicI64::new(0),
                refreshing: AtomicBool::new(false),
            });
        ActiveSession {
            sid: token_hash(&format!("sid:{}", session.id_hash)),
            id_hash: session.id_hash.clone(),
            user_id: session.user_id.clone(),
            identity: Arc::new(user.identity()),
            created_at: session.created_at,
            last_seen: AtomicI64::new(session.last_seen.0),
            last_persisted: AtomicI64::new(session.last_seen.0),
            provider,
            guard: std::sync::OnceLock::new(),
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
    cache: SessionCache,
    refresher: Option<Arc<dyn Refresher>>,
    /// When the change feed was last read, where a change watcher keeps the caches current:
    /// cached sessions are trusted only while revocations made elsewhere can be seen, and for
    /// the outage grace after.
    feed: Option<FeedFreshness>,
}

/// How recently the change feed was read, in real (monotonic) time: the outage grace is about
/// the database being reachable, not about the domain clock sessions expire by.
struct FeedFreshness {
    started: std::time::Instant,
    read_ms: std::sync::atomic::AtomicU64,
    grace: Duration,
}

impl FeedFreshness {
    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn read(&self) {
        self.read_ms.fetch_max(self.elapsed_ms(), Ordering::Relaxed);
    }

    /// How long the feed has gone unread, when that is past the grace.
    fn stale_for(&self) -> Option<Duration> {
        let unread = Duration::from_millis(
            self.elapsed_ms()
                .saturating_sub(self.read_ms.load(Ordering::Relaxed)),
        );
        (unread > self.grace).then_some(unread)
    }
}

/// What this process knows about sessions, shared with background refreshes.
#[derive(Clone)]
struct SessionCache {
    live: moka::sync::Cache<String, Cached>,
    unknown: moka::sync::Cache<String, Cached>,
    /// Per session, a token cancelled when the session ends: streams and tunnels opened with the
    /// session watch it and close. Kept apart from `live` so an eviction loses no token.
    stream_guards: Arc<StreamGuards>,
}

impl SessionCache {
    /// Forgets a session: refused from now on, its streams closed.
    fn forget(&self, id_hash: &str) {
        self.live.invalidate(id_hash);
        self.unknown.insert(id_hash.to_owned(), Cached::Unknown);
        self.stream_guards.end(id_hash);
    }

    /// Id hashes of the cached sessions of one user.
    fn sessions_of(&self, user_id: &str) -> Vec<String> {
        self.live
            .iter()
            .filter(|(_, cached)| matches!(cached, Cached::Live(s) if s.user_id == user_id))
            .map(|(id_hash, _)| id_hash.as_ref().clone())
            .collect()
    }
}

/// Request facts recorded with a new session.
#[derive(Clone, Debug, Default)]
pub struct SessionOrigin {
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    /// The provider side of the sign-in, if it went through one.
    pub provider: Option<ProviderSession>,
}

impl SessionManager {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, policy: SessionPolicy) -> Self {
        SessionManager {
            store,
            clock,
            policy,
            cache: SessionCache {
                live: moka::sync::Cache::builder()
                    .max_capacity(1_000_000)
                    .time_to_idle(policy.idle)
                    .build(),
                unknown: moka::sync::Cache::builder()
                    .max_capacity(100_000)
                    .time_to_live(NEGATIVE_TTL)
                    .build(),
                stream_guards: Arc::default(),
            },
            refresher: None,
            feed: None,
        }
    }

    /// A change watcher keeps this manager's caches current (see `watch`): cached sessions then
    /// keep working only `grace` past its last successful read of the store.
    pub fn with_outage_grace(mut self, grace: Duration) -> Self {
        self.feed = Some(FeedFreshness {
            started: std::time::Instant::now(),
            read_ms: std::sync::atomic::AtomicU64::new(0),
            grace,
        });
        self
    }

    /// The change feed was read (by the change watcher): cached sessions are current.
    pub fn feed_read(&self) {
        if let Some(feed) = &self.feed {
            feed.read();
        }
    }

    /// A token cancelled when this session ends, for streams opened with it.
    pub fn stream_guard(&self, active: &ActiveSession) -> CancellationToken {
        active
            .guard
            .get_or_init(|| self.cache.stream_guards.token(&active.id_hash))
            .clone()
    }

    /// Applies a change to a user: a user who is no longer active loses every session (and every
    /// open stream); otherwise cached sessions reload the user's identity on their next request.
    pub async fn user_changed(&self, user_id: &str) -> Result<(), StoreError> {
        // The cached sessions are taken before the store is read: a session created meanwhile
        // (the user signing in again) is then either in the store's answer or not in this list,
        // and is never forgotten by mistake.
        let cached = self.cache.sessions_of(user_id);
        let active = matches!(self.store.user_by_id(user_id).await?, Some(u) if u.status == UserStatus::Active);
        let remaining: HashSet<String> = if active {
            let sessions = self.store.sessions_of(user_id).await?;
            sessions.into_iter().map(|s| s.id_hash).collect()
        } else {
            for id_hash in self.store.delete_user_sessions(user_id).await? {
                self.cache.forget(&id_hash);
            }
            HashSet::new()
        };
        // Sessions still in the store reload the identity on their next request; those gone
        // (ended here, elsewhere, or by a demotion) are forgotten, which also closes their streams.
        for id_hash in cached {
            if remaining.contains(&id_hash) {
                self.cache.live.invalidate(&id_hash);
            } else {
                self.cache.forget(&id_hash);
            }
        }
        Ok(())
    }

    /// Enables refreshing provider tokens of provider-backed sessions.
    pub fn with_refresher(mut self, refresher: Arc<dyn Refresher>) -> Self {
        self.refresher = Some(refresher);
        self
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
        };
        self.store.insert_session(&session).await?;
        let active = Arc::new(ActiveSession::new(&session, user));
        self.cache
            .live
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
            .cache
            .live
            .get(&id_hash)
            .or_else(|| self.cache.unknown.get(&id_hash))
        {
            Some(cached) => cached,
            None => self.load(&id_hash).await?,
        };
        let Cached::Live(active) = cached else {
            return Ok(None);
        };
        if let Some(unread) = self.feed.as_ref().and_then(FeedFreshness::stale_for) {
            // Revocations made elsewhere cannot be seen: stop trusting what this process cached.
            return Err(StoreError::Unavailable(format!(
                "the change feed has not been readable for {} s (store.outage_grace)",
                unread.as_secs()
            )));
        }
        let now = self.clock.now();
        if let Err(expiry) = active.snapshot().check(&self.policy, now) {
            tracing::debug!(?expiry, "session expired");
            self.end(&id_hash).await?;
            return Ok(None);
        }
        self.touch(&active, now);
        self.refresh_if_due(&active, now);
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
            Cached::Live(_) => self.cache.live.insert(id_hash.to_owned(), loaded.clone()),
            Cached::Unknown => self
                .cache
                .unknown
                .insert(id_hash.to_owned(), loaded.clone()),
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

    /// Starts a background refresh when the access token is about to expire. The request never
    /// waits for the provider; a refusal ends the session before its next request.
    fn refresh_if_due(&self, active: &Arc<ActiveSession>, now: Timestamp) {
        let (Some(tokens), Some(refresher)) = (&active.provider, &self.refresher) else {
            return;
        };
        let expires = tokens.access_expires_at.load(Ordering::Relaxed);
        if expires == 0
            || now.0 < expires - REFRESH_MARGIN
            || now.0 < tokens.not_before.load(Ordering::Relaxed)
        {
            return;
        }
        if tokens.refreshing.swap(true, Ordering::AcqRel) {
            return; // another request already started it
        }
        let task = RefreshTask {
            active: active.clone(),
            refresher: refresher.clone(),
            store: self.store.clone(),
            clock: self.clock.clone(),
            cache: self.cache.clone(),
        };
        tokio::spawn(task.run());
    }

    /// The stored record behind a cookie value (provider, sealed ID token), for sign-out.
    pub async fn stored(&self, cookie_value: &str) -> Result<Option<Session>, StoreError> {
        if !looks_like_token(cookie_value) {
            return Ok(None);
        }
        self.store.session(&token_hash(cookie_value)).await
    }

    /// Ends one session by its id hash (what the store and the admin pages know it by).
    pub async fn end_by_id(&self, id_hash: &str) -> Result<(), StoreError> {
        self.end(id_hash).await
    }

    /// Ends every session of a user (the user stays active).
    pub async fn end_all_of(&self, user_id: &str) -> Result<usize, StoreError> {
        let ended = self.store.delete_user_sessions(user_id).await?;
        for id_hash in &ended {
            self.cache.forget(id_hash);
        }
        self.announce_ended(&ended).await?;
        Ok(ended.len())
    }

    /// Ends the session behind a cookie value. Returns the ended session's user id, if any.
    pub async fn revoke(&self, cookie_value: &str) -> Result<Option<String>, StoreError> {
        if !looks_like_token(cookie_value) {
            return Ok(None);
        }
        let id_hash = token_hash(cookie_value);
        let user_id = match self.cache.live.get(&id_hash) {
            Some(Cached::Live(active)) => Some(active.user_id.clone()),
            _ => self.store.session(&id_hash).await?.map(|s| s.user_id),
        };
        self.end(&id_hash).await?;
        Ok(user_id)
    }

    async fn end(&self, id_hash: &str) -> Result<(), StoreError> {
        end_session(&*self.store, &self.cache, &*self.clock, id_hash).await
    }

    /// Tells the other processes (replicas, through the change feed) that sessions ended, so
    /// they drop them from their caches too.
    async fn announce_ended(&self, id_hashes: &[String]) -> Result<(), StoreError> {
        for id_hash in id_hashes {
            self.store
                .record_change(ChangeKind::Session, id_hash, self.clock.now())
                .await?;
        }
        Ok(())
    }

    /// A session ended in another process: refuse it here too, and close its streams.
    pub fn ended_elsewhere(&self, id_hash: &str) {
        self.cache.forget(id_hash);
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
            self.cache.forget(id_hash);
        }
        self.announce_ended(&ended).await?;
        Ok(ended.len())
    }

    /// Deletes expired sessions from the store; run periodically.
    pub async fn sweep(&self) -> Result<u64, StoreError> {
        let now = self.clock.now();
        let created_before = Timestamp(now.0.saturating_sub(secs(self.policy.absolute)));
        let idle_before = Timestamp(now.0.saturating_sub(secs(self.policy.idle)));
        // Persist recent activity first so busy sessions are not swept as idle.
        for (_, cached) in self.cache.live.iter() {
            if let Cached::Live(active) = cached {
                let seen = active.last_seen();
                if seen.0 > active.last_persisted.load(Ordering::Relaxed) {
                    self.store.touch_session(&active.id_hash, seen).await?;
                    active.last_persisted.store(seen.0, Ordering::Relaxed);
                }
                if active.snapshot().check(&self.policy, now) == Err(Expiry::Absolute) {
                    self.cache.live.invalidate(&active.id_hash);
                }
            }
        }
        self.store
            .delete_expired_sessions(created_before, idle_before)
            .await
    }

    /// Sessions currently held in memory (for the `active sessions` gauge).
    pub fn cached_count(&self) -> u64 {
        self.cache.live.run_pending_tasks();
        self.cache.live.entry_count()
    }
}

/// One background refresh of a session's provider tokens.
struct RefreshTask {
    active: Arc<ActiveSession>,
    refresher: Arc<dyn Refresher>,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    cache: SessionCache,
}

impl RefreshTask {
    async fn run(self) {
        let Some(tokens) = &self.active.provider else {
            return;
        };
        let current = tokens.refresh_token_enc.lock().await.clone();
        let outcome = match current {
            Some(sealed) => {
                let request = RefreshRequest {
                    provider: &tokens.provider,
                    refresh_token_enc: &sealed,
                    user_id: &self.active.user_id,
                    subject: tokens.subject.as_deref(),
                };
                self.refresher.refresh(request).await
            }
            None => RefreshOutcome::Rejected("no refresh token".into()),
        };
        let id_hash = &self.active.id_hash;
        match outcome {
            RefreshOutcome::Renewed {
                refresh_token_enc,
                access_expires_at,
                identity_changed,
            } => {
                if let Some(sealed) = &refresh_token_enc {
                    *tokens.refresh_token_enc.lock().await = Some(sealed.clone());
                }
                tokens.access_expires_at.store(
                    access_expires_at.map(|t| t.0).unwrap_or(0),
                    Ordering::Relaxed,
                );
                if let Err(e) = self
                    .store
                    .update_session_tokens(id_hash, refresh_token_enc.as_deref(), access_expires_at)
                    .await
                {
                    tracing::warn!(error = %e, "could not record refreshed tokens");
                }
                if identity_changed {
                    // The next request reloads the session with the re-synced identity.
                    self.cache.live.invalidate(id_hash);
                }
            }
            RefreshOutcome::Rejected(reason) => {
                tracing::info!(provider = %tokens.provider, user = %self.active.identity.username, reason = %reason,
                    "the provider refused to refresh the session; it ends");
                if let Err(e) = end_session(&*self.store, &self.cache, &*self.clock, id_hash).await
                {
                    tracing::warn!(error = %e, "could not end the session in the store");
                }
            }
            RefreshOutcome::Unavailable(reason) => {
                tracing::warn!(provider = %tokens.provider, reason = %reason, "could not refresh provider tokens; will retry");
                tokens
                    .not_before
                    .store(self.clock.now().0 + REFRESH_RETRY, Ordering::Relaxed);
            }
        }
        tokens.refreshing.store(false, Ordering::Release);
    }
}

/// Ends one session: forgotten in memory first (so even if the store write fails, this process
/// refuses the cookie from now on), deleted, and announced on the change feed for the others.
async fn end_session(
    store: &dyn Store,
    cache: &SessionCache,
    clock: &dyn Clock,
    id_hash: &str,
) -> Result<(), StoreError> {
    cache.forget(id_hash);
    store.delete_session(id_hash).await?;
    store
        .record_change(ChangeKind::Session, id_hash, clock.now())
        .await
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_core::{ManualClock, Role};
    use portcullis_store::{NewUser, SqlStore};

    async fn setup() -> (SessionManager, Arc<dyn Store>, ManualClock, User) {
        let store: Arc<dyn Store> = Arc::new(SqlStore::throwaway().await.unwrap());
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

    /// With a change watcher behind it, a cached session outlives an unreadable feed only for
    /// the grace; a read makes it current again.
    #[tokio::test]
    async fn cached_sessions_outlive_a_store_outage_only_for_the_grace() {
        let (manager, _, _, user) = setup().await;
        let manager = manager.with_outage_grace(Duration::from_millis(200));
        let (token, _) = manager
            .create(&user, SessionOrigin::default())
            .await
            .unwrap();
        manager.feed_read();
        assert!(manager.resolve(&token).await.unwrap().is_some());
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(matches!(
            manager.resolve(&token).await,
            Err(StoreError::Unavailable(_))
        ));
        manager.feed_read();
        assert!(manager.resolve(&token).await.unwrap().is_some());
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
