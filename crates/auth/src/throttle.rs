//! Sign-in throttling with growing back-off, per account and per client address.
//!
//! After `free_attempts` failures a key is locked for `base`, then twice as long after each further
//! failure, up to `max`. Client addresses get four times as many free attempts as accounts, since
//! a whole office may share one address. A success clears the account's record.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use portcullis_core::{Clock, Timestamp};

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
    entries: moka::sync::Cache<String, Arc<Mutex<Failures>>>,
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

    fn all(&self) -> impl Iterator<Item = (&String, u32)> {
        std::iter::once((&self.account, 1)).chain(self.address.iter().map(|a| (a, 4)))
    }
}

impl LoginThrottle {
    pub fn new(clock: Arc<dyn Clock>, free_attempts: u32, base: Duration, max: Duration) -> Self {
        let entries = moka::sync::Cache::builder()
            .max_capacity(100_000)
            .time_to_idle(max.saturating_mul(2).max(Duration::from_secs(60)))
            .build();
        LoginThrottle {
            clock,
            free_attempts,
            base,
            max,
            entries,
        }
    }

    /// `Err` while any of the keys is locked: how long, and whether this is the first attempt
    /// refused in the lock (of any of the keys).
    pub fn check(&self, keys: &AttemptKeys) -> Result<(), Refusal> {
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

    pub fn record_failure(&self, keys: &AttemptKeys) {
        let now = self.clock.now();
        for (key, multiplier) in keys.all() {
            let entry = self
                .entries
                .get_with(key.clone(), || Arc::new(Mutex::new(Failures::default())));
            let mut failures = entry.lock().unwrap_or_else(|p| p.into_inner());
            failures.count = failures.count.saturating_add(1);
            let free = self.free_attempts.saturating_mul(multiplier);
            if failures.count > free {
                let doublings = (failures.count - free - 1).min(30);
                let lock = self.base.saturating_mul(1u32 << doublings).min(self.max);
                failures.locked_until = now.plus(lock);
                failures.refused = 0;
            }
        }
    }

    pub fn record_success(&self, keys: &AttemptKeys) {
        self.entries.invalidate(&keys.account);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_core::ManualClock;

    #[test]
    fn only_the_first_refusal_of_a_lock_is_worth_recording() {
        let clock = ManualClock::at(Timestamp(1000));
        let throttle = LoginThrottle::new(
            Arc::new(clock.clone()),
            1,
            Duration::from_secs(60),
            Duration::from_secs(600),
        );
        let keys = AttemptKeys::new("mallory-target", Some("10.9.9.9"));
        throttle.record_failure(&keys);
        throttle.record_failure(&keys);
        let refusals: Vec<bool> = (0..10_000)
            .map(|_| throttle.check(&keys).unwrap_err().first)
            .collect();
        assert_eq!(refusals.iter().filter(|first| **first).count(), 1);
        assert!(refusals[0]);
        // After the lock, the next failure locks again: one more first refusal.
        clock.advance(Duration::from_secs(61));
        assert_eq!(throttle.check(&keys), Ok(()));
        throttle.record_failure(&keys);
        assert!(throttle.check(&keys).unwrap_err().first);
        assert!(!throttle.check(&keys).unwrap_err().first);
    }

    #[test]
    fn back_off_grows_and_success_resets() {
        let clock = ManualClock::at(Timestamp(1000));
        let throttle = LoginThrottle::new(
            Arc::new(clock.clone()),
            2,
            Duration::from_secs(1),
            Duration::from_secs(8),
        );
        let keys = AttemptKeys::new("Alice", Some("10.0.0.1"));
        throttle.record_failure(&keys);
        throttle.record_failure(&keys);
        assert_eq!(throttle.check(&keys), Ok(()));
        throttle.record_failure(&keys);
        assert_eq!(
            throttle.check(&keys).map_err(|r| r.retry_after),
            Err(Duration::from_secs(1))
        );
        throttle.record_failure(&keys);
        assert_eq!(
            throttle.check(&keys).map_err(|r| r.retry_after),
            Err(Duration::from_secs(2))
        );
        for _ in 0..10 {
            throttle.record_failure(&keys);
        }
        assert_eq!(
            throttle.check(&keys).map_err(|r| r.retry_after),
            Err(Duration::from_secs(8)),
            "capped at max"
        );
        clock.advance(Duration::from_secs(8));
        assert_eq!(throttle.check(&keys), Ok(()));
        throttle.record_success(&keys);
        // The address keeps its own record: 14 failures exceed its 8 free attempts.
        throttle.record_failure(&AttemptKeys::new("bob", Some("10.0.0.1")));
        assert!(
            throttle
                .check(&AttemptKeys::new("carol", Some("10.0.0.1")))
                .is_err()
        );
        assert_eq!(
            throttle.check(&AttemptKeys::new("alice", Some("10.0.0.2"))),
            Ok(())
        );
    }
}
