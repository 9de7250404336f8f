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

    /// `Err(retry_after)` while any of the keys is locked.
    pub fn check(&self, keys: &AttemptKeys) -> Result<(), Duration> {
        let now = self.clock.now();
        let mut wait = 0i64;
        for (key, _) in keys.all() {
            if let Some(entry) = self.entries.get(key) {
                let failures = *entry.lock().unwrap_or_else(|p| p.into_inner());
                wait = wait.max(now.seconds_until(failures.locked_until));
            }
        }
        if wait > 0 {
            Err(Duration::from_secs(u64::try_from(wait).unwrap_or(0)))
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
        assert_eq!(throttle.check(&keys), Err(Duration::from_secs(1)));
        throttle.record_failure(&keys);
        assert_eq!(throttle.check(&keys), Err(Duration::from_secs(2)));
        for _ in 0..10 {
            throttle.record_failure(&keys);
        }
        assert_eq!(
            throttle.check(&keys),
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
