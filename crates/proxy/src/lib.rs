//! The gateway's per-request pipeline.
//!
//! A request flows through named phases over one [`context::RequestContext`]:
//! `route → authenticate → authorize → rewrite → forward`, and is logged and counted at the end.
//! Each phase is a plain function in [`phases`]; failures are [`portcullis_core::Failure`]s that
//! [`respond`] turns into responses in one place.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod access;
pub mod body;
pub mod context;
pub mod forward_auth;
pub mod gateway;
pub mod hop;
pub mod identity_headers;
pub mod metrics;
pub mod phases;
pub mod routes;
pub mod tool_calls;
pub mod upstream;

pub use gateway::Gateway;
pub use metrics::Metrics;
pub use routes::{App, RouteTable};
