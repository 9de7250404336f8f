//! Portcullis's own HTTP surface and the server that hosts it together with the gateway.
//!
//! Requests for `/ping`, `/ready`, `/metrics`, `/.portcullis/*` and `/oauth2/sign_out` are
//! answered here; everything else goes through the gateway to an app.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod account;
mod account_factors;
mod admin;
mod api;
mod backchannel;
mod csrf;
mod factor_pages;
mod factors;
mod forward_auth;
mod grants_panel;
mod health;
mod key_forms;
mod linger;
pub mod mail;
mod mcp;
mod oauth;
mod oidc;
mod pages;
mod passkey_sign_in;
mod passwords;
mod pending;
mod scim;
mod server;
mod setup;
mod sign_in;
mod sign_out;
mod state;
mod step_up;
pub mod tls;
pub mod whoami;
mod workers;

pub use passwords::reset_url;
pub use portcullis_auth::audit::Audit;
pub use server::{router, serve};
pub use state::{AppState, WebSettings};
