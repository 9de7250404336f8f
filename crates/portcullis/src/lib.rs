//! Wiring: configuration in, a running gateway out. The `portcullis` binary and the integration
//! tests both start Portcullis through [`serve::start`].

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod admin;
pub mod config;
pub mod doctor;
pub mod explain;
mod logging;
pub mod probe;
pub mod serve;
pub mod store_cmd;
