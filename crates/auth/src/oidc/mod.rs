//! Sign-in through OpenID Connect providers (and GitHub's plain OAuth 2).
//!
//! - [`provider`]: one configured provider — discovery, the authorization URL, the code exchange,
//!   claims from a verified ID token plus userinfo (or GitHub's `/user` and `/user/emails`), and
//!   the logout URL (with Cognito's special form).
//! - [`jwks`]: the provider's signing keys, refetched on an unknown `kid` at most once per interval.
//! - [`id_token`]: ID token verification (algorithm allow-list, signature, iss, aud, exp, iat,
//!   nonce) against the injected clock.
//! - [`flow`]: per-flow state (`state`, `nonce`, PKCE verifier) kept server-side, bound to the
//!   browser, bounded in number and age, completed exactly once.
//! - [`login`]: from mapped claims to a directory user (keyed on issuer + subject; optional
//!   linking by verified email; role rules; provider groups synced apart from local ones).

pub mod flow;
pub mod id_token;
pub mod jwks;
pub mod provider;
pub mod refresh;

pub use flow::{FlowManager, FlowOutcome};
pub use provider::{Provider, Providers};

/// What went wrong talking to a provider, classified for the response.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// The provider could not be reached or answered with an error: retry later.
    #[error("the identity provider is unavailable: {0}")]
    Unavailable(String),
    /// The provider's answer failed a check (signature, audience, nonce…): refuse the sign-in.
    #[error("the sign-in response was rejected: {0}")]
    Rejected(String),
}
