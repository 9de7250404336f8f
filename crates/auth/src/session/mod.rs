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

mod active;
mod refresh;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use portcullis_core::session::{AMR_MFA, ProviderSession, Session, SessionPolicy};
use portcullis_core::user::{User, UserStatus};
use portcullis_core::{Clock, Timestamp};
use portcullis_store::{Store, StoreError};

use crate::guards::{StreamGuard, StreamGuards};
use crate::secret::{looks_like_token, random_token, token_hash};

pub use active::ActiveSession;
use refresh::{REFRESH_MARGIN, RefreshTask};
pub use refresh::{RefreshOutcome, RefreshRequest, Refresher};

/// How often a busy session's `last_seen` is written back to the store.
const TOUCH_INTERVAL: i64 = 60;
/// Unknown ids are remembered this long, so a replayed dead cookie costs no database reads.
const NEGATIVE_TTL: Duration = Duration::from_secs(30);

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
    /// Per session, a guard cancelled when the session ends: streams and tunnels opened with the
    /// session watch it and close. Kept apart from `live` so an eviction loses no open stream's
    /// guard; held weakly, so a forgotten session leaves nothing behind.
    stream_guards: Arc<StreamGuards>,
}

impl SessionCache {
    /// Forgets a session: refused from now on, its streams closed.
    fn forget(&self, id_hash: &str) {
        self.live.invalidate(id_hash);
        self.unknown.insert(id_hash.to_owned(), Cached::Unknown);
        self.stream_guards.end(id_hash);
    }

    /// The cached sessions of one user.
    fn sessions_of(&self, user_id: &str) -> Vec<Arc<ActiveSession>> {
        self.live
            .iter()
            .filter_map(|(_, cached)| match cached {
                Cached::Live(s) if s.user_id == user_id => Some(s),
                _ => None,
            })
            .collect()
    }

    /// Puts `updated` in place of `current`, unless the session was ended or replaced in the
    /// meantime (an ended session must never come back to life).
    fn replace(&self, current: &Arc<ActiveSession>, updated: ActiveSession) {
        let updated = Arc::new(updated);
        self.live
            .entry_by_ref(&current.id_hash)
            .and_compute_with(|entry| match entry.map(|e| e.into_value()) {
                Some(Cached::Live(cached)) if Arc::ptr_eq(&cached, current) => {
                    moka::ops::compute::Op::Put(Cached::Live(updated))
                }
                _ => moka::ops::compute::Op::Nop,
            });
    }
}

/// Brings this process's cached sessions of a user in line with the store: a user who is no
/// longer active loses every session (and every open stream); otherwise each cached session
/// takes the user's current identity in place, and sessions the store no longer has (ended
/// elsewhere, or by a demotion) are forgotten. When the store cannot be read, nothing changes
/// and the error says so: the change feed tries again.
async fn refresh_user(
    store: &dyn Store,
    cache: &SessionCache,
    user_id: &str,
) -> Result<bool, StoreError> {
    // The cached sessions are taken before the store is read: a session created meanwhile (the
    // user signing in again) is then either in the store's answer or not in this list, and is
    // never forgotten by mistake.
    let cached = cache.sessions_of(user_id);
    let user = store
        .user_by_id(user_id)
        .await?
        .filter(|u| u.status == UserStatus::Active);
    let Some(user) = user else {
        for id_hash in store.delete_user_sessions(user_id).await? {
            cache.forget(&id_hash);
        }
        for session in cached {
            cache.forget(&session.id_hash);
        }
        return Ok(false);
    };
    let remaining: HashSet<String> = store
        .sessions_of(user_id)
        .await?
        .into_iter()
        .map(|s| s.id_hash)
        .collect();
    let identity = Arc::new(user.identity());
    for session in cached {
        if !remaining.contains(&session.id_hash) {
            cache.forget(&session.id_hash);
        } else if session.identity != identity {
            // Only a real change swaps the identity: an unchanged one keeps its `Arc`, which
            // the assertion cache recognises (no re-signing for a change that changed nothing).
            cache.replace(&session, session.with_identity(identity.clone()));
        }
    }
    Ok(true)
}

/// Request facts recorded with a new session.
#[derive(Clone, Debug, Default)]
pub struct SessionOrigin {
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    /// The provider side of the sign-in, if it went through one.
    pub provider: Option<ProviderSession>,
    /// How the sign-in was proved (RFC 8176 values; see [`Session::amr`]).
    pub amr: Vec<String>,
}

impl SessionManager {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, policy: SessionPolicy) -> Self {
        Self::with_refusal_memory(store, clock, policy, NEGATIVE_TTL)
    }

    /// [`Self::new`] remembering refused ids for `refused_for` instead of `NEGATIVE_TTL` (tests
    /// that watch the memory drain).
    pub fn with_refusal_memory(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        policy: SessionPolicy,
        refused_for: Duration,
    ) -> Self {
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
                    .time_to_live(refused_for)
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

    /// A guard cancelled when this session ends, for streams opened with it.
    pub fn stream_guard(&self, active: &ActiveSession) -> StreamGuard {
        active
            .shared
            .guard
            .get_or_init(|| self.cache.stream_guards.guard(&active.id_hash))
            .clone()
    }

    /// Applies a change to a user (see [`refresh_user`]); returns whether the user may still
    /// sign in.
    pub async fn user_changed(&self, user_id: &str) -> Result<bool, StoreError> {
        refresh_user(&*self.store, &self.cache, user_id).await
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
            amr: origin.amr,
        };
        self.store.insert_session(&session).await?;
        let active = Arc::new(ActiveSession::new(&session, user));
        self.cache
            .live
            .insert(session.id_hash.clone(), Cached::Live(active.clone()));
        Ok((token, active))
    }

    /// Replaces the session `id_hash` of `user` with a new one that was also proved with
    /// `methods` (a second factor, say): a new id, so a cookie from before the step-up never
    /// carries its privileges (OWASP: renew the session id on privilege change). The provider
    /// side of the sign-in carries over; the old session ends (and with it, on every replica,
    /// whatever it had open).
    pub async fn step_up(
        &self,
        id_hash: &str,
        user: &User,
        methods: &[&str],
    ) -> Result<(String, Arc<ActiveSession>), StoreError> {
        let old =
            self.store.session(id_hash).await?.ok_or_else(|| {
                StoreError::Corrupt("the session to step up has ended".to_owned())
            })?;
        let mut amr = old.amr.clone();
        for method in methods.iter().chain([&AMR_MFA]) {
            if !amr.iter().any(|m| m == method) {
                amr.push((*method).to_owned());
            }
        }
        let origin = SessionOrigin {
            client_ip: old.client_ip,
            user_agent: old.user_agent,
            provider: old.provider,
            amr,
        };
        let created = self.create(user, origin).await?;
        self.end(id_hash).await?;
        Ok(created)
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
        let shared = &active.shared;
        shared.last_seen.fetch_max(now.0, Ordering::Relaxed);
        let persisted = shared.last_persisted.load(Ordering::Relaxed);
        if now.0 - persisted < TOUCH_INTERVAL {
            return;
        }
        // Only the request that wins the swap writes, off the request path.
        if shared
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
        let (Some(tokens), Some(refresher)) = (&active.shared.provider, &self.refresher) else {
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
        end_session(&*self.store, &self.cache, id_hash).await
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
        Ok(ended.len())
    }

    /// Deletes expired sessions from the store; run periodically.
    pub async fn sweep(&self) -> Result<u64, StoreError> {
        let now = self.clock.now();
        let created_before = Timestamp(now.0.saturating_sub(secs(self.policy.absolute)));
        let idle_before = Timestamp(now.0.saturating_sub(secs(self.policy.idle)));
        // Persist recent activity first so busy sessions are not swept as idle; drop expired
        // ones from memory (by this clock: the cache's own idle eviction runs on real time).
        for (_, cached) in self.cache.live.iter() {
            if let Cached::Live(active) = cached {
                let seen = active.last_seen();
                let shared = &active.shared;
                if seen.0 > shared.last_persisted.load(Ordering::Relaxed) {
                    self.store.touch_session(&active.id_hash, seen).await?;
                    shared.last_persisted.store(seen.0, Ordering::Relaxed);
                }
                if active.snapshot().check(&self.policy, now).is_err() {
                    self.cache.forget(&active.id_hash);
                }
            }
        }
        // Deleting them tells every process (the change feed's trigger).
        self.store
            .delete_expired_sessions(created_before, idle_before)
            .await
    }

    /// Sessions currently held in memory (for the `active sessions` gauge).
    pub fn cached_count(&self) -> u64 {
        self.cache.live.run_pending_tasks();
        self.cache.live.entry_count()
    }

    /// What this process holds per session: cached sessions, recently refused ids (kept for
    /// `NEGATIVE_TTL` at most), and stream guards something still holds. For tests and the
    /// long-running-process check: ended sessions must leave none of it behind.
    pub fn held(&self) -> (u64, u64, usize) {
        self.cache.live.run_pending_tasks();
        self.cache.unknown.run_pending_tasks();
        (
            self.cache.live.entry_count(),
            self.cache.unknown.entry_count(),
            self.cache.stream_guards.live(),
        )
    }
}

/// Ends one session: forgotten in memory first (so even if the store write fails, this process
/// refuses the cookie from now on), then deleted; the deletion announces it on the change feed
/// for the other processes (a database trigger).
async fn end_session(
    store: &dyn Store,
    cache: &SessionCache,
    id_hash: &str,
) -> Result<(), StoreError> {
    cache.forget(id_hash);
    store.delete_session(id_hash).await.map(drop)
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests;
