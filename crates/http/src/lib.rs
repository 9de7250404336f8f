//! The HTTP toolkit shared by Portcullis's edges: the gateway (`portcullis-proxy`), its own web
//! surface (`portcullis-web`) and the authenticator reading credentials (`portcullis-auth`).
//! Failures become answers here in one place ([`respond`]); pages share one chrome and one
//! escaping helper ([`html`]); cookies are named, read and kept from apps here ([`cookies`]);
//! and what is believed about the client (address, scheme, host) is decided here, from the
//! socket peer and the configured trusted proxies only ([`forwarded`]). Certificates and keys
//! for both TLS sides are read from PEM files in one place ([`pem`]).

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod cookies;
pub mod forwarded;
pub mod html;
pub mod pem;
pub mod respond;
