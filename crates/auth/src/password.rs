//! Argon2id password hashing with a bound on concurrent work.
//!
//! Each hash costs tens of milliseconds of CPU and ~19 MiB of memory by design, so an attacker
//! posting many sign-ins could otherwise exhaust the machine and starve signed-in traffic. A
//! semaphore bounds how many run at once (by default half the cores: never all of them); a
//! bounded number may wait their turn for a bounded time, and the rest are refused at once with
//! [`PasswordError::Busy`] (a `503` with `Retry-After`), which costs no hashing at all.
//!
//! A flood could still keep the queue full forever, and a person would then keep being refused.
//! So a check for an account from a browser that signed that account in before
//! ([`Lane::KnownDevice`], see [`crate::devices`]) may also take one slot of its own, which
//! nobody else can: people coming back are never starved by strangers' attempts.

use std::sync::Arc;

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::sync::Semaphore;

use crate::hash_pool::{CpuBudget, HashPool, Slot};

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("password hashing was interrupted")]
    Interrupted,
    /// Every hashing slot is taken and the queue is full (or the wait ran out).
    #[error("too many sign-ins are being checked right now; retry in {} s", retry_after.as_secs())]
    Busy { retry_after: std::time::Duration },
}

/// How hashing work is bounded.
#[derive(Clone, Copy, Debug)]
pub struct HashingLimits {
    /// Hashes running at once.
    pub concurrent: usize,
    /// Requests that may wait for a slot; beyond that they are refused at once.
    pub queue: usize,
    /// How long one may wait before it is refused.
    pub wait: std::time::Duration,
    /// What hashing may use of the CPU over time (none: as much as its slots can).
    pub budget: Option<CpuBudget>,
}

impl HashingLimits {
    /// `concurrent` slots, a queue of four per slot, a one-second wait, no CPU budget.
    pub fn new(concurrent: usize) -> Self {
        HashingLimits {
            concurrent: concurrent.max(1),
            queue: concurrent.max(1) * 4,
            wait: std::time::Duration::from_secs(1),
            budget: None,
        }
    }
}

/// What `/metrics` shows of the hashing pool: how deep the queue is, how long hashes take, how
/// many were refused.
#[derive(Clone)]
struct HashingMetrics {
    /// Requests waiting for a slot now (also the queue bound's own count).
    waiting: Gauge,
    seconds: Histogram,
    refused: Counter,
}

impl Default for HashingMetrics {
    fn default() -> Self {
        HashingMetrics {
            waiting: Gauge::default(),
            // 4 ms .. ~4 s: one argon2id hash is tens of milliseconds on an idle core.
            seconds: Histogram::new(exponential_buckets(0.004, 2.0, 11)),
            refused: Counter::default(),
        }
    }
}

/// A place in the queue, given up when dropped — also when the request is cancelled while it
/// waits (its client went away): a count left behind would refuse everyone after it for good.
struct InQueue<'a> {
    waiting: &'a Gauge,
    /// How many were waiting before this one.
    ahead: usize,
}

impl<'a> InQueue<'a> {
    fn join(waiting: &'a Gauge) -> Self {
        let ahead = usize::try_from(waiting.inc()).unwrap_or(usize::MAX);
        InQueue { waiting, ahead }
    }
}

impl Drop for InQueue<'_> {
    fn drop(&mut self) {
        self.waiting.dec();
    }
}

/// Which slots a password check may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lane {
    /// The shared pool (and its queue): every attempt.
    Anyone,
    /// The shared pool or the slot kept for browsers that signed this account in before.
    KnownDevice,
}

#[derive(Clone)]
pub struct PasswordHasher {
    permits: Arc<Semaphore>,
    /// The one slot only [`Lane::KnownDevice`] may take.
    kept: Arc<Semaphore>,
    /// Where hashes run: a thread per slot, at a lower priority than the proxy.
    pool: HashPool,
    limits: HashingLimits,
    metrics: HashingMetrics,
    /// A real hash of a random password, verified against when an account does not exist so the
    /// response time does not reveal which accounts exist.
    decoy: Arc<String>,
}

/// The shortest password any configuration may allow (NIST SP 800-63B's minimum).
pub const MIN_PASSWORD_LEN: usize = 8;
/// Longer inputs are refused before hashing, so nobody can make a sign-in hash megabytes.
const MAX_PASSWORD_LEN: usize = 1024;

/// Common passwords of eight characters or more, lower-cased (see data/README.md).
const COMMON_PASSWORDS: &str = include_str!("../data/common-passwords.txt");

pub fn hash_blocking(password: &str) -> Result<String, PasswordError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

fn verify_blocking(hash: &str, password: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// What a new password must be (NIST SP 800-63B): long enough, not a well-known one, not the
/// account's own name — and no composition rules, which make passwords worse, not stronger.
#[derive(Clone, Debug)]
pub struct PasswordPolicy {
    min_length: usize,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        PasswordPolicy {
            min_length: MIN_PASSWORD_LEN,
        }
    }
}

impl PasswordPolicy {
    /// A policy with a longer minimum (never shorter than [`MIN_PASSWORD_LEN`]).
    pub fn with_min_length(min_length: usize) -> Self {
        PasswordPolicy {
            min_length: min_length.max(MIN_PASSWORD_LEN),
        }
    }

    pub fn min_length(&self) -> usize {
        self.min_length
    }

    /// What is wrong with `password` as a new password for the account known by `names`
    /// (username, email, display name), as a sentence the person can act on.
    pub fn check(&self, password: &str, names: &[&str]) -> Result<(), String> {
        if password.chars().count() < self.min_length {
            return Err(format!(
                "A password needs at least {} characters; a few unrelated words make a good one.",
                self.min_length
            ));
        }
        if password.len() > MAX_PASSWORD_LEN {
            return Err(format!("A password has at most {MAX_PASSWORD_LEN} bytes."));
        }
        let lower = password.to_lowercase();
        if is_common(&lower) {
            return Err(
                "That password is on the list of the most common ones, which attackers try first; choose another."
                    .into(),
            );
        }
        let personal = names.iter().any(|name| {
            let name = name.trim().to_lowercase();
            !name.is_empty()
                && (lower == name || name.split('@').next().is_some_and(|local| lower == local))
        });
        if personal {
            return Err("A password must not be your username or email address.".into());
        }
        Ok(())
    }
}

/// Whether the lower-cased `password` is in the bundled list.
fn is_common(lower: &str) -> bool {
    let mut lines = COMMON_PASSWORDS.lines();
    // The list is small (11,611 lines, 120 kB) and checked only when a password is chosen, so
    // walking it is fine; no table is kept in memory between checks.
    lines.any(|common| common == lower)
}

impl PasswordHasher {
    pub fn new(max_concurrent: usize) -> Result<Self, PasswordError> {
        Self::with_limits(HashingLimits::new(max_concurrent))
    }

    pub fn with_limits(limits: HashingLimits) -> Result<Self, PasswordError> {
        let decoy = hash_blocking(&crate::secret::random_token())?;
        Ok(PasswordHasher {
            permits: Arc::new(Semaphore::new(limits.concurrent.max(1))),
            kept: Arc::new(Semaphore::new(1)),
            // One thread per slot, and one for the kept slot: a hash never waits for a thread.
            pool: HashPool::new(limits.concurrent.max(1) + 1, limits.budget)
                .map_err(|e| PasswordError::Hash(format!("starting the hashing threads: {e}")))?,
            limits,
            metrics: HashingMetrics::default(),
            decoy: Arc::new(decoy),
        })
    }

    /// Requests waiting for a hashing slot right now.
    pub fn queued(&self) -> usize {
        usize::try_from(self.metrics.waiting.get()).unwrap_or(0)
    }

    /// Adds the pool's queue depth, hashing time and refusals to `/metrics`.
    pub fn register_metrics(&self, registry: &mut Registry) {
        registry.register(
            "password_hash_queue",
            "Sign-ins waiting for a password hashing slot",
            self.metrics.waiting.clone(),
        );
        registry.register(
            "password_hash_duration_seconds",
            "Time one password hash or verification took, once it had a slot",
            self.metrics.seconds.clone(),
        );
        registry.register(
            "password_hash_refused",
            "Password checks refused because every slot was taken and the queue was full",
            self.metrics.refused.clone(),
        );
    }

    /// A hashing slot: at once if one is free, after a bounded wait in a bounded queue, or
    /// [`PasswordError::Busy`]. A known device also waits for the kept slot, whichever frees
    /// first.
    /// Only the shared slots are paced to the CPU budget.
    async fn slot(&self, lane: Lane) -> Result<Slot, PasswordError> {
        if let Ok(permit) = self.permits.clone().try_acquire_owned() {
            return Ok(Slot::paced(permit));
        }
        let busy = || {
            self.metrics.refused.inc();
            PasswordError::Busy {
                retry_after: self.limits.wait.max(std::time::Duration::from_secs(1)),
            }
        };
        if lane == Lane::KnownDevice
            && let Ok(permit) = self.kept.clone().try_acquire_owned()
        {
            return Ok(Slot::unpaced(permit));
        }
        // A known device waits past a full queue: strangers filling it must not turn it away.
        // Its waits are bounded by the wait alone (only real sign-ins carry a device tag, and
        // its account's throttle stops a stream of wrong guesses before they get here).
        let place = InQueue::join(&self.metrics.waiting);
        if lane == Lane::Anyone && place.ahead >= self.limits.queue {
            return Err(busy());
        }
        let either = async {
            match lane {
                Lane::Anyone => self.permits.clone().acquire_owned().await.map(Slot::paced),
                Lane::KnownDevice => tokio::select! {
                    permit = self.permits.clone().acquire_owned() => permit.map(Slot::paced),
                    permit = self.kept.clone().acquire_owned() => permit.map(Slot::unpaced),
                },
            }
        };
        let waited = tokio::time::timeout(self.limits.wait, either).await;
        drop(place);
        match waited {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_)) => Err(PasswordError::Interrupted),
            Err(_) => Err(busy()),
        }
    }

    /// Runs one hash or verification on the hashing threads in `slot`, timed; `None` if it
    /// panicked.
    async fn timed<T: Send + 'static>(
        &self,
        slot: Slot,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        let started = std::time::Instant::now();
        let done = self.pool.run(slot, work).await;
        self.metrics
            .seconds
            .observe(started.elapsed().as_secs_f64());
        done
    }

    pub async fn hash(&self, password: &str) -> Result<String, PasswordError> {
        let slot = self.slot(Lane::Anyone).await?;
        let password = password.to_owned();
        self.timed(slot, move || hash_blocking(&password))
            .await
            .ok_or(PasswordError::Interrupted)?
    }

    /// Verifies `password` against `hash`; with no hash (unknown account, or an account without
    /// a password) it spends the same effort on the decoy and returns false. `Busy` when no
    /// hashing slot could be had.
    pub async fn verify(&self, hash: Option<&str>, password: &str) -> Result<bool, PasswordError> {
        self.verify_in(Lane::Anyone, hash, password).await
    }

    /// [`Self::verify`], with the slots `lane` may take.
    pub async fn verify_in(
        &self,
        lane: Lane,
        hash: Option<&str>,
        password: &str,
    ) -> Result<bool, PasswordError> {
        if password.is_empty() || password.len() > MAX_PASSWORD_LEN {
            return Ok(false);
        }
        let slot = match self.slot(lane).await {
            Ok(slot) => slot,
            Err(PasswordError::Interrupted) => return Ok(false),
            Err(e) => return Err(e),
        };
        let (hash, real) = match hash {
            Some(h) => (h.to_owned(), true),
            None => (self.decoy.as_ref().clone(), false),
        };
        let password = password.to_owned();
        let matched = self
            .timed(slot, move || verify_blocking(&hash, &password))
            .await
            .unwrap_or(false);
        Ok(matched && real)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hash_then_verify() {
        let hasher = PasswordHasher::new(2).unwrap();
        let hash = hasher.hash("correct horse").await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        let verify = |h: Option<&str>, p: &str| {
            let (hasher, h, p) = (hasher.clone(), h.map(str::to_owned), p.to_owned());
            async move { hasher.verify(h.as_deref(), &p).await.unwrap() }
        };
        assert!(verify(Some(&hash), "correct horse").await);
        assert!(!verify(Some(&hash), "wrong horse").await);
        assert!(!verify(Some(&hash), "").await);
        assert!(!verify(None, "correct horse").await);
        assert!(!verify(Some("not a hash"), "correct horse").await);
    }

    #[tokio::test]
    async fn a_full_queue_is_refused_at_once_and_a_freed_slot_serves_the_next() {
        let hasher = PasswordHasher::with_limits(HashingLimits {
            concurrent: 1,
            queue: 2,
            wait: std::time::Duration::from_secs(5),
            budget: None,
        })
        .unwrap();
        // One slot held, two waiting: the fourth is refused without waiting.
        let held = hasher.permits.clone().try_acquire_owned().unwrap();
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let hasher = hasher.clone();
                tokio::spawn(async move { hasher.verify(None, "guess-one").await })
            })
            .collect();
        while hasher.queued() < 2 {
            tokio::task::yield_now().await;
        }
        let started = std::time::Instant::now();
        let refused = hasher.verify(None, "guess-two").await;
        assert!(
            matches!(refused, Err(PasswordError::Busy { .. })),
            "{refused:?}"
        );
        assert!(
            started.elapsed() < std::time::Duration::from_secs(1),
            "refused at once"
        );
        drop(held);
        for waiter in waiters {
            assert!(
                !waiter.await.unwrap().unwrap(),
                "the queued ones were served (a decoy never matches)"
            );
        }
        assert_eq!(hasher.queued(), 0);

        // Waiters whose clients went away (their futures dropped) leave the queue. (The slot
        // comes back once its thread is done, a moment after the answer.)
        let held = hasher.permits.clone().acquire_owned().await.unwrap();
        let abandoned: Vec<_> = (0..2)
            .map(|_| {
                let hasher = hasher.clone();
                tokio::spawn(async move { hasher.verify(None, "guess-three").await })
            })
            .collect();
        while hasher.queued() < 2 {
            tokio::task::yield_now().await;
        }
        for waiter in &abandoned {
            waiter.abort();
        }
        for waiter in abandoned {
            assert!(waiter.await.unwrap_err().is_cancelled());
        }
        assert_eq!(hasher.queued(), 0, "cancelled waiters gave their places up");
        drop(held);

        // A wait that runs out is refused too.
        let short = PasswordHasher::with_limits(HashingLimits {
            concurrent: 1,
            queue: 1,
            wait: std::time::Duration::from_millis(50),
            budget: None,
        })
        .unwrap();
        let _held = short.permits.clone().try_acquire_owned().unwrap();
        assert!(matches!(
            short.verify(None, "guess").await,
            Err(PasswordError::Busy { .. })
        ));
    }

    #[test]
    fn new_password_rules() {
        let policy = PasswordPolicy::default();
        let names = ["alice", "Alice.Smith@example.com"];
        let refused = |p: &str| policy.check(p, &names).unwrap_err();
        assert!(refused("short").contains("at least 8"));
        assert!(refused(&"x".repeat(1025)).contains("at most"));
        for common in [
            "password",
            "PASSWORD1",
            "12345678",
            "Iloveyou",
            "qwertyuiop",
        ] {
            assert!(refused(common).contains("most common"), "{common}");
        }
        assert!(refused("alice.smith@example.com").contains("username or email"));
        assert!(refused("ALICE.SMITH").contains("username or email"));
        assert!(policy.check("correct horse battery", &names).is_ok());
        // Composition is not a rule: a long lower-case phrase is fine.
        assert!(policy.check("tulips in the rain", &names).is_ok());

        let longer = PasswordPolicy::with_min_length(12);
        assert!(
            longer
                .check("eleven char", &[])
                .unwrap_err()
                .contains("at least 12")
        );
        assert_eq!(
            PasswordPolicy::with_min_length(4).min_length(),
            MIN_PASSWORD_LEN
        );
    }
}
