//! Portcullis domain layer: types, policies and rules that every other layer shares.
//!
//! Nothing here performs I/O. Time comes from an injected [`clock::Clock`], configuration arrives
//! already parsed, and failures are described by [`error::Failure`] so that the edge layers can
//! turn them into responses in one place.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod claims;
pub mod clock;
pub mod config;
pub mod email;
pub mod error;
pub mod identity;
pub mod path;
pub mod policy;
pub mod profile;
pub mod session;
pub mod tools;
pub mod user;

pub use clock::{Clock, ManualClock, SystemClock, Timestamp};
pub use email::Email;
pub use error::{Failure, FailureKind};
pub use identity::{Identity, Role};
