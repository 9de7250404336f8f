//! Sign-in throttling with growing back-off, per account and per client address.
//!
//! After `free_attempts` failures a key is locked for `base`, then twice as long after each further
//! failure, up to `max`. Client addresses get four times as many free attempts as accounts, since
//! a whole office may share one address. A success clears the account's record.
//!
//! With a store ([`LoginThrottle::shared`]) the counts are kept there too, so every replica
//! applies the same back-off: an attacker gets no more free attempts for there being more
//! replicas, and cannot leave a lock behind by landing on another one. A lock this process
//! already knows is refused from memory alone (the refusal path must stay as cheap as a static
//! answer); the store is read only for an attempt memory would let through, and written only
//! for a failure — both of which cost a password hash anyway. If the store cannot be reached the
//! memory's counts still apply.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use portcullis_core::{Clock, Timestamp};
use portcullis_store::Store;

#[derive(Clone, Copy, Debug, Default)]
struct Failures {
    count: u32,
    locked_until: Timestamp,
    /// Attempts refused during the current lock.
    refused: u32,
}

/// Why an attempt was not even tried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub retry_after: Duration,
    /// The first attempt refused in this lock: worth an audit entry. The others are not, or an
    /// attacker would write a row per request at will (and fill the disk).
    pub first: bool,
}

pub struct LoginThrottle {
    clock: Arc<dyn Clock>,
    free_attempts: u32,
    base: Duration,
    max: Duration,
    /// How long a key's failures are remembered after its last one.
    memory: Duration,
    entries: moka::sync::Cache<String, Arc<Mutex<Failures>>>,
    /// Where every replica's counts meet, and the prefix that keeps this throttle's keys apart
    /// from another's (a wrong code must not count as a wrong password).
    shared: Option<(Arc<dyn Store>, &'static str)>,
}

/// The keys one sign-in attempt is throttled under.
pub struct AttemptKeys {
    account: String,
    address: Option<String>,
}

impl AttemptKeys {
    pub fn new(login: &str, client_ip: Option<&str>) -> Self {
        AttemptKeys {
            account: format!("account:{}", login.trim().to_lowercase()),
            address: client_ip.map(|ip| format!("address:{ip}")),
        }
    }

    /// Each key with how many times the free attempts it gets.
    fn all(&self) -> impl Iterator<Item = (&String, u32)> {
        std::iter::once((&self.account, 1)).chain(self.address.iter().map(|a| (a, 4)))
    }
}

impl LoginThrottle {
    pub fn new(clock: Arc<dyn Clock>, free_attempts: u32, base: Duration, max: Duration) -> Self {
        let memory = max.saturating_mul(2).max(Duration::from_secs(60));
        let entries = moka::sync::Cache::builder()
            .max_capacity(100_000)
            .time_to_idle(memory)
            .build();
        LoginThrottle {
            clock,
            free_attempts,
            base,
            max,
            memory,
            entries,
            shared: None,
        }
    }

    /// Keeps the counts in `store` too, under keys prefixed with `scope`, so that replicas
    /// share them.
    pub fn shared(mut self, store: Arc<dyn Store>, scope: &'static str) -> Self {
        self.shared = Some((store, scope));
        self
    }

    /// `Err` while any of the keys is locked: how long, and whether this is the first attempt
    /// refused in the lock (of any of the keys) by this process.
    pub async fn check(&self, keys: &AttemptKeys) -> Result<(), Refusal> {
        self.locked(keys)?;
        self.learn_from_store(keys).await;
        self.locked(keys)
    }

    /// The check against what this process knows.
    fn locked(&self, keys: &AttemptKeys) -> Result<(), Refusal> {
        let now = self.clock.now();
        let mut wait = 0i64;
        let mut first = false;
        for (key, _) in keys.all() {
            if let Some(entry) = self.entries.get(key) {
                let mut failures = entry.lock().unwrap_or_else(|p| p.into_inner());
                let left = now.seconds_until(failures.locked_until);
                if left > 0 {
                    failures.refused = failures.refused.saturating_add(1);
                    first |= failures.refused == 1;
                    wait = wait.max(left);
                }
            }
        }
        if wait > 0 {
            Err(Refusal {
                retry_after: Duration::from_secs(u64::try_from(wait).unwrap_or(0)),
                first,
            })
        } else {
            Ok(())
        }
    }

    /// Takes the other replicas' counts for these keys, where they are ahead of ours.
    async fn learn_from_store(&self, keys: &AttemptKeys) {
        let Some((store, scope)) = &self.shared else {
            return;
        };
        let names: Vec<String> = keys
            .all()
            .map(|(key, _)| format!("{scope}/{key}"))
            .collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let counts = match store.failures(&names).await {
            Ok(counts) => counts,
            Err(e) => {
                tracing::warn!(error = %e, "sign-in throttle: the store's counts could not be read; this process's own apply");
                return;
            }
        };
        for count in counts {
            let Some((key, multiplier)) = keys.all().find(|(key, _)| {
                count
                    .key
                    .strip_prefix(scope)
                    .and_then(|k| k.strip_prefix('/'))
                    == Some(key)
            }) else {
                continue;
            };
            let entry = self
                .entries
                .get_with(key.clone(), || Arc::new(Mutex::new(Failures::default())));
            let mut failures = entry.lock().unwrap_or_else(|p| p.into_inner());
            if count.failures > failures.count {
                self.set_count(
                    &mut failures,
                    count.failures,
                    multiplier,
                    count.last_failure,
                );
            }
        }
    }

    pub async fn record_failure(&self, keys: &AttemptKeys) {
        let now = self.clock.now();
        for (key, multiplier) in keys.all() {
            let counted = match &self.shared {
                Some((store, scope)) => store
                    .count_failure(
                        &format!("{scope}/{key}"),
                        now,
                        self.forgotten_before(now),
                    )
                    .await
                    .inspect_err(|e| tracing::warn!(error = %e, "sign-in throttle: a failure could not be counted in the store; counted in this process only"))
                    .ok(),
                None => None,
            };
            let entry = self
                .entries
                .get_with(key.clone(), || Arc::new(Mutex::new(Failures::default())));
            let mut failures = entry.lock().unwrap_or_else(|p| p.into_inner());
            let count = counted.unwrap_or_else(|| failures.count.saturating_add(1));
            self.set_count(&mut failures, count, multiplier, now);
        }
    }

    /// `count` failures, the last at `last`: locked from then on once past the free attempts.
    fn set_count(&self, failures: &mut Failures, count: u32, multiplier: u32, last: Timestamp) {
        failures.count = count;
        let free = self.free_attempts.saturating_mul(multiplier);
        if count > free {
            let doublings = (count - free - 1).min(30);
            let lock = self.base.saturating_mul(1u32 << doublings).min(self.max);
            let until = last.plus(lock);
            if until > failures.locked_until {
                failures.locked_until = until;
                failures.refused = 0;
            }
        }
    }

    pub async fn record_success(&self, keys: &AttemptKeys) {
        self.entries.invalidate(&keys.account);
        if let Some((store, scope)) = &self.shared
            && let Err(e) = store
                .clear_failures(&format!("{scope}/{}", keys.account))
                .await
        {
            tracing::warn!(error = %e, "sign-in throttle: a success could not clear the store's count");
        }
    }

    /// Forgets counts idle longer than the throttle remembers them (the sweeper calls this).
    pub async fn sweep(&self) -> Result<u64, portcullis_store::StoreError> {
        let Some((store, _)) = &self.shared else {
            return Ok(0);
        };
        store
            .delete_stale_failures(self.forgotten_before(self.clock.now()))
            .await
    }

    /// Failures last counted before this are forgotten.
    fn forgotten_before(&self, now: Timestamp) -> Timestamp {
        Timestamp(
            now.0
                .saturating_sub(i64::try_from(self.memory.as_secs()).unwrap_or(i64::MAX)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_core::ManualClock;

    fn throttle(clock: &ManualClock, free: u32, base: u64, max: u64) -> LoginThrottle {
        LoginThrottle::new(
            Arc::new(clock.clone()),
            free,
            Duration::from_secs(base),
            Duration::from_secs(max),
        )
    }

    #[tokio::test]
    async fn only_the_first_refusal_of_a_lock_is_worth_recording() {
        let clock = ManualClock::at(Timestamp(1000));
        let throttle = throttle(&clock, 1, 60, 600);
        let keys = AttemptKeys::new("mallory-target", Some("10.9.9.9"));
        throttle.record_failure(&keys).await;
        throttle.record_failure(&keys).await;
        let mut refusals = Vec::new();
        for _ in 0..10_000 {
            refusals.push(throttle.check(&keys).await.unwrap_err().first);
        }
        assert_eq!(refusals.iter().filter(|first| **first).count(), 1);
        assert!(refusals[0]);
        // After the lock, the next failure locks again: one more first refusal.
        clock.advance(Duration::from_secs(61));
        assert_eq!(throttle.check(&keys).await, Ok(()));
        throttle.record_failure(&keys).await;
        assert!(throttle.check(&keys).await.unwrap_err().first);
        assert!(!throttle.check(&keys).await.unwrap_err().first);
    }

    #[tokio::test]
    async fn back_off_grows_and_success_resets() {
        let clock = ManualClock::at(Timestamp(1000));
        let throttle = throttle(&clock, 2, 1, 8);
        let keys = AttemptKeys::new("Alice", Some("10.0.0.1"));
        let wait = |r: Result<(), Refusal>| r.map_err(|r| r.retry_after);
        throttle.record_failure(&keys).await;
        throttle.record_failure(&keys).await;
        assert_eq!(throttle.check(&keys).await, Ok(()));
        throttle.record_failure(&keys).await;
        assert_eq!(
            wait(throttle.check(&keys).await),
            Err(Duration::from_secs(1))
        );
        throttle.record_failure(&keys).await;
        assert_eq!(
            wait(throttle.check(&keys).await),
            Err(Duration::from_secs(2))
        );
        for _ in 0..10 {
            throttle.record_failure(&keys).await;
        }
        assert_eq!(
            wait(throttle.check(&keys).await),
            Err(Duration::from_secs(8)),
            "capped at max"
        );
        clock.advance(Duration::from_secs(8));
        assert_eq!(throttle.check(&keys).await, Ok(()));
        throttle.record_success(&keys).await;
        // The address keeps its own record: 14 failures exceed its 8 free attempts.
        throttle
            .record_failure(&AttemptKeys::new("bob", Some("10.0.0.1")))
            .await;
        assert!(
            throttle
                .check(&AttemptKeys::new("carol", Some("10.0.0.1")))
                .await
                .is_err()
        );
        assert_eq!(
            throttle
                .check(&AttemptKeys::new("alice", Some("10.0.0.2")))
                .await,
            Ok(())
        );
    }

    /// Two replicas on one store: failures on either count towards one lock, the lock holds on
    /// both, a success on one clears it for both, and another scope's keys stay apart.
    #[tokio::test]
    async fn replicas_sharing_a_store_share_the_counts() {
        let store: Arc<dyn Store> =
            Arc::new(portcullis_store::SqlStore::throwaway().await.unwrap());
        let clock = ManualClock::at(Timestamp(1000));
        let a = throttle(&clock, 2, 60, 600).shared(store.clone(), "password");
        let b = throttle(&clock, 2, 60, 600).shared(store.clone(), "password");
        let codes = throttle(&clock, 2, 60, 600).shared(store.clone(), "factor");
        let keys = AttemptKeys::new("alice", None);
        a.record_failure(&keys).await;
        b.record_failure(&keys).await;
        assert_eq!(a.check(&keys).await, Ok(()), "two failures are free");
        a.record_failure(&keys).await;
        let refused = b.check(&keys).await.unwrap_err();
        assert_eq!(refused.retry_after, Duration::from_secs(60));
        assert!(refused.first, "b audits its first refusal once");
        assert!(!b.check(&keys).await.unwrap_err().first);
        assert!(a.check(&keys).await.is_err());
        assert_eq!(codes.check(&keys).await, Ok(()), "another scope's count");
        // After the lock, a success on b clears the count for a too.
        clock.advance(Duration::from_secs(61));
        b.record_success(&keys).await;
        let fresh = throttle(&clock, 2, 60, 600).shared(store.clone(), "password");
        fresh.record_failure(&keys).await;
        assert_eq!(fresh.check(&keys).await, Ok(()), "counting from zero again");
        assert_eq!(a.sweep().await.unwrap(), 0, "nothing stale yet");
        clock.advance(Duration::from_secs(1201));
        assert_eq!(a.sweep().await.unwrap(), 1);
    }
}
