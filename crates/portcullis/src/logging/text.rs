//! The plain-text line format for logs that go to a file or a collector:
//! `2026-11-24T03:49:09.312126Z  INFO portcullis::access: method=GET path=/ status=200 …`.
//!
//! The same layout as tracing-subscriber's default format, written without its colour
//! machinery (which runs even with colours off) and with the timestamp formatted by hand: together
//! they were a few percent of the proxy's CPU, spent on every access-log line. A person at a
//! terminal gets the default, coloured format instead.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::{Event, Level, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

pub struct PlainText;

impl<S, N> FormatEvent<S, N> for PlainText
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        // Records from the `log` crate (sqlx, …) arrive as events of target "log": their own
        // target and level are in the event, as the default format reads them too.
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        writer.write_str(&rfc3339_micros(SystemTime::now()))?;
        writer.write_str(level(meta.level()))?;
        writer.write_str(meta.target())?;
        writer.write_str(": ")?;
        ctx.format_fields(writer.by_ref(), event)?;
        writer.write_char('\n')
    }
}

/// The level between single spaces, right-aligned in five columns as the default format has it.
fn level(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => " ERROR ",
        Level::WARN => "  WARN ",
        Level::INFO => "  INFO ",
        Level::DEBUG => " DEBUG ",
        Level::TRACE => " TRACE ",
    }
}

/// `time` in UTC as `YYYY-MM-DDTHH:MM:SS.ffffffZ`. Times before 1970 (a clock gone badly wrong)
/// are written as the epoch.
pub(super) fn rfc3339_micros(time: SystemTime) -> String {
    let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since_epoch.as_secs();
    let (year, month, day) = civil_date(seconds / 86_400);
    let of_day = seconds % 86_400;
    let mut out = String::with_capacity(27);
    let mut push = |value: u64, digits: usize, then: char| {
        for shift in (0..digits).rev() {
            let digit = (value / 10u64.pow(shift as u32)) % 10;
            out.push(char::from(b'0' + digit as u8));
        }
        out.push(then);
    };
    push(year, 4, '-');
    push(month, 2, '-');
    push(day, 2, 'T');
    push(of_day / 3600, 2, ':');
    push(of_day / 60 % 60, 2, ':');
    push(of_day % 60, 2, '.');
    push(u64::from(since_epoch.subsec_micros()), 6, 'Z');
    out
}

/// The proleptic Gregorian date of a day counted from 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, for days on or after the epoch).
fn civil_date(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153; // March = 0
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(seconds: u64, micros: u32) -> String {
        rfc3339_micros(UNIX_EPOCH + Duration::new(seconds, micros * 1_000))
    }

    #[test]
    fn lines_have_the_default_layout_and_log_records_keep_their_target() {
        // Info lines wait in the buffer (warnings would go straight to stderr).
        let buffer = super::super::LogBuffer::default();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(buffer.clone())
            .event_format(PlainText)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(target: "portcullis::access", status = 200u16, user = "admin", path = %"/x");
            tracing_log::format_trace(
                &tracing_log::log::Record::builder()
                    .target("sqlx::query")
                    .level(tracing_log::log::Level::Info)
                    .args(format_args!("summary"))
                    .build(),
            )
            .unwrap();
        });
        let written = String::from_utf8(buffer.lock().clone()).unwrap();
        let lines: Vec<&str> = written.lines().collect();
        assert_eq!(lines.len(), 2, "{written}");
        // `2026-11-24T03:49:09.312126Z` is 27 characters.
        assert_eq!(
            &lines[0][27..],
            "  INFO portcullis::access: status=200 user=\"admin\" path=/x"
        );
        assert_eq!(&lines[1][27..], "  INFO sqlx::query: summary");
        assert!(lines.iter().all(|l| l.as_bytes()[26] == b'Z'), "{written}");
    }

    #[test]
    fn timestamps_match_the_calendar() {
        // Checked against `date -u -d @<seconds>`.
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(at(1_795_491_549, 312_126), "2026-11-24T03:39:09.312126Z");
        assert_eq!(at(951_782_400, 7), "2000-02-29T00:00:00.000007Z");
        assert_eq!(at(4_107_542_399, 999_999), "2100-02-28T23:59:59.999999Z");
        assert_eq!(
            rfc3339_micros(UNIX_EPOCH - Duration::from_secs(1)),
            "1970-01-01T00:00:00.000000Z"
        );
    }
}
