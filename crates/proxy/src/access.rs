//! The access log: one line per request the gateway handled.
//!
//! The gateway hands each request's facts to an [`AccessLog`]. By default they become a
//! `tracing` event of target [`TARGET`], like every other log line; `portcullis serve` writing to
//! a file or collector installs a writer that formats the line itself: the `tracing` event was
//! about 4 % of the proxy's CPU samples under load, most of it recording eight fields through
//! type-erased visitors.

use std::net::IpAddr;
use std::time::Duration;

use http::Method;

/// The log target of access-log lines (`log.level = "info,portcullis::access=warn"` silences
/// them).
pub const TARGET: &str = "portcullis::access";

/// What the access log says about one request.
pub struct AccessEntry<'a> {
    pub method: &'a Method,
    pub host: &'a str,
    /// The canonical path; query strings are never logged (they may carry tokens).
    pub path: &'a str,
    pub app: &'a str,
    pub status: u16,
    /// `-` when nobody is signed in.
    pub user: &'a str,
    pub client: IpAddr,
    /// Until the response headers were ready.
    pub elapsed: Duration,
}

impl AccessEntry<'_> {
    /// The elapsed time in whole microseconds, the unit lines carry (`us`).
    pub fn micros(&self) -> u64 {
        u64::try_from(self.elapsed.as_micros()).unwrap_or(u64::MAX)
    }
}

/// Where access-log lines go.
pub trait AccessLog: Send + Sync {
    fn record(&self, entry: &AccessEntry<'_>);
}

/// Access-log lines as `tracing` events, formatted by whatever subscriber is installed.
pub struct TracingAccessLog;

impl AccessLog for TracingAccessLog {
    fn record(&self, e: &AccessEntry<'_>) {
        tracing::info!(
            target: TARGET,
            method = %e.method,
            host = %e.host,
            path = %e.path,
            app = %e.app,
            status = e.status,
            user = e.user,
            client = %e.client,
            us = e.micros(),
        );
    }
}
