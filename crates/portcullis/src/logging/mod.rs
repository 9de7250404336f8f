//! Logs for `portcullis serve`: text or JSON lines on stderr, written in batches.
//!
//! Writing every access-log line with its own system call cost the proxy several percent of its
//! CPU under load. Lines are collected in memory instead and written in one call every
//! [`FLUSH_INTERVAL`], or as soon as a batch grows large (like nginx's `access_log … buffer=
//! flush=`). Warnings and errors are written at once. The price: a process killed with SIGKILL
//! loses its last fraction of a second of lines.

use std::io::Write;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Context;
use portcullis_core::config::{Config, LogFormat};
use portcullis_proxy::access::{AccessLog, TracingAccessLog};
use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

mod access;
mod text;

use access::{AccessLines, Layout};

/// A batch is written once it reaches this size, whatever the time.
const BATCH_BYTES: usize = 64 * 1024;

/// How long a line may wait: short enough for a person following the log not to notice.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(50);

/// Log lines waiting to be written to stderr.
#[derive(Clone, Default)]
pub struct LogBuffer {
    pending: Arc<Mutex<Vec<u8>>>,
}

impl LogBuffer {
    /// Writes out every waiting line.
    pub fn flush(&self) {
        write_out(&mut self.lock());
    }

    /// Writes out the waiting lines every `interval`, for as long as the task runs.
    pub async fn flush_every(self, interval: Duration) {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            self.flush();
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<u8>> {
        // A thread that panicked while holding the lock left complete lines behind (lines are
        // appended whole): keep logging rather than lose them.
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Writes `pending` to stderr and empties it. A log that cannot be written is not worth failing
/// a request over, so errors are dropped (as `eprintln!` would panic instead).
fn write_out(pending: &mut Vec<u8>) {
    if pending.is_empty() {
        return;
    }
    let _ = std::io::stderr().lock().write_all(pending);
    pending.clear();
}

/// One event's line, on its way into the buffer.
pub struct Line<'a> {
    buffer: &'a LogBuffer,
    urgent: bool,
}

impl Write for Line<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let mut pending = self.buffer.lock();
        pending.extend_from_slice(bytes);
        if self.urgent || pending.len() >= BATCH_BYTES {
            write_out(&mut pending);
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogBuffer {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Line<'a> {
        Line {
            buffer: self,
            urgent: false,
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Line<'a> {
        Line {
            buffer: self,
            // Levels order by verbosity: WARN and ERROR are the ones at or below WARN.
            urgent: *meta.level() <= Level::WARN,
        }
    }
}

/// Starts logging as configured, into the buffer it returns (which the caller flushes, with
/// [`LogBuffer::flush_every`] while running and once more before exiting), with the access log
/// the gateway should write to.
pub fn init(config: &Config) -> anyhow::Result<(LogBuffer, Arc<dyn AccessLog>)> {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log.level)
        .with_context(|| format!("log.level {:?} is not a valid filter", config.log.level))?;
    // Colours only for a person at a terminal: log files and journald get plain text.
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let buffer = LogBuffer::default();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(terminal)
        .with_writer(buffer.clone());
    let (result, layout) = match config.log.format {
        LogFormat::Json => (
            builder.json().flatten_event(true).try_init(),
            Some(Layout::Json),
        ),
        LogFormat::Text if terminal => (builder.try_init(), None),
        LogFormat::Text => (
            builder.event_format(text::PlainText).try_init(),
            Some(Layout::Text),
        ),
    };
    result.map_err(|e| anyhow::anyhow!("could not start logging: {e}"))?;
    // Lines someone reads at a terminal, or none at all, can go the usual way.
    let enabled = tracing::enabled!(target: portcullis_proxy::access::TARGET, Level::INFO);
    let access: Arc<dyn AccessLog> = match layout {
        Some(layout) if enabled => Arc::new(AccessLines::new(buffer.clone(), layout)),
        _ => Arc::new(TracingAccessLog),
    };
    Ok((buffer, access))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_wait_until_flushed_unless_urgent_or_the_batch_is_full() {
        let buffer = LogBuffer::default();
        buffer.make_writer().write_all(b"info line\n").unwrap();
        assert_eq!(buffer.lock().as_slice(), b"info line\n");

        let mut urgent = Line {
            buffer: &buffer,
            urgent: true,
        };
        urgent.write_all(b"warning\n").unwrap();
        assert!(buffer.lock().is_empty(), "a warning writes out what waits");

        let big = vec![b'x'; BATCH_BYTES];
        buffer.make_writer().write_all(&big).unwrap();
        assert!(buffer.lock().is_empty(), "a full batch is written at once");

        buffer.make_writer().write_all(b"last\n").unwrap();
        buffer.flush();
        assert!(buffer.lock().is_empty());
    }
}
