//! Time as a dependency, so expiry rules are testable without sleeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch. Second precision is all session and audit logic needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn plus(self, d: Duration) -> Timestamp {
        Timestamp(
            self.0
                .saturating_add(i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
        )
    }

    pub fn seconds_until(self, later: Timestamp) -> i64 {
        later.0.saturating_sub(self.0)
    }

    /// Midnight UTC of a `YYYY-MM-DD` date (what an HTML date input sends); `None` if it is not
    /// one.
    pub fn from_date(date: &str) -> Option<Timestamp> {
        let mut parts = date.trim().splitn(3, '-');
        let year: i64 = parts.next()?.parse().ok()?;
        let month: i64 = parts.next()?.parse().ok()?;
        let day: i64 = parts.next()?.parse().ok()?;
        if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
            return None;
        }
        // Days since 1970-01-01 from a civil date (Howard Hinnant's algorithm, the inverse of
        // the one in `utc`).
        let y = if month <= 2 { year - 1 } else { year };
        let era = y.div_euclid(400);
        let yoe = y.rem_euclid(400);
        let mp = if month > 2 { month - 3 } else { month + 9 };
        let doy = (153 * mp + 2) / 5 + day - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        let midnight = Timestamp(days * 86_400);
        // 2026-02-31 is not a date: it must read back as itself.
        midnight.utc().starts_with(date.trim()).then_some(midnight)
    }

    /// `YYYY-MM-DD HH:MM:SS` in UTC, for people reading logs and pages.
    pub fn utc(self) -> String {
        let days = self.0.div_euclid(86_400);
        let secs = self.0.rem_euclid(86_400);
        // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        format!(
            "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
            secs / 3600,
            secs % 3600 / 60,
            secs % 60
        )
    }
}

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}

#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Timestamp(i64::try_from(secs).unwrap_or(i64::MAX))
    }
}

/// A clock that only moves when told to. Cloning shares the same time.
#[derive(Clone, Debug, Default)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    pub fn at(start: Timestamp) -> Self {
        ManualClock(Arc::new(AtomicI64::new(start.0)))
    }

    pub fn advance(&self, d: Duration) {
        let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_read_back() {
        let t = Timestamp::from_date("2026-12-02").unwrap();
        assert_eq!(t.utc(), "2026-12-02 00:00:00");
        assert_eq!(Timestamp::from_date("1970-01-01"), Some(Timestamp(0)));
        assert_eq!(
            Timestamp::from_date("2024-02-29").unwrap().utc(),
            "2024-02-29 00:00:00"
        );
        for bad in ["2026-02-31", "2026-13-01", "yesterday", "", "2026-1"] {
            assert_eq!(Timestamp::from_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn utc_dates() {
        assert_eq!(Timestamp(0).utc(), "1970-01-01 00:00:00");
        assert_eq!(Timestamp(951_782_400).utc(), "2000-02-29 00:00:00");
        assert_eq!(Timestamp(1_795_462_514).utc(), "2026-11-23 19:35:14");
        assert_eq!(Timestamp(-1).utc(), "1969-12-31 23:59:59");
    }
}
