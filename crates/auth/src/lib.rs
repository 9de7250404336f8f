//! Ways an identity arrives. For now: local accounts (argon2id passwords with throttling), the
//! one-time setup link for the first admin, and server-side sessions with an in-memory cache so
//! the per-request check never queries the database.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod assertion;
pub mod audit;
pub mod devices;
pub mod directory;
pub mod external;
pub mod factors;
pub mod guards;
pub mod hash_pool;
pub mod keys;
pub mod ldap;
pub mod local;
pub mod oauth;
pub mod oidc;
pub mod password;
pub mod principal;
pub mod seal;
pub mod secret;
pub mod session;
pub mod setup;
pub mod throttle;
pub mod watch;

pub use local::{LocalLogin, LoginError};
pub use password::PasswordHasher;
pub use session::{ActiveSession, SessionManager};
pub use setup::SetupToken;
pub use throttle::LoginThrottle;
