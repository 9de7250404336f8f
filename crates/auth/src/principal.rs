//! One authenticator for every surface.
//!
//! A request's credentials are read once ([`Presented`]: session cookies, a Portcullis API key,
//! another issuer's bearer token, the identity a proxy in front vouches for) and resolved by
//! [`Authenticator::authenticate`] into one [`Principal`]: who it is, through which credential,
//! and the stream guard that closes what it opens when that credential ends. The built-in proxy,
//! the forward-auth endpoints, the REST API, the admin and account pages, whoami and userinfo all
//! come here; which kinds of credential each surface accepts is decided in one place,
//! [`Surface::accepts`], and every refusal is one typed [`AuthError`], turned into an answer by
//! one `From<AuthError> for Failure`.

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;

use http::{HeaderMap, header};
use portcullis_core::{Failure, FailureKind, Identity};
use portcullis_http::cookies::{self, SESSION_COOKIE};
use portcullis_store::StoreError;

use crate::external::{ExternalAuth, ExternalError};
use crate::guards::StreamGuard;
use crate::keys::{KEY_PREFIX, KeyCheck, KeyRing, LiveKey};
use crate::oauth::{ACCESS_TOKEN_PREFIX, GrantCheck, GrantRing, LiveGrant};
use crate::session::{ActiveSession, SessionManager};

/// The app name an API key must be allowed for to call Portcullis's own API.
pub const API_SCOPE: &str = "portcullis-api";

/// The credentials one request presents, read once from its headers.
pub struct Presented<'r> {
    /// Every value of the session cookie (a browser may send several).
    pub cookies: Vec<&'r str>,
    /// Candidates for a Portcullis API key: `X-API-Key`, then a `Bearer` token that looks like one.
    pub keys: Vec<&'r str>,
    /// An access token Portcullis's authorization server issued (`Bearer pca_…`).
    pub access_token: Option<&'r str>,
    /// A `Bearer` token that is not Portcullis's: another issuer's, or the app's own.
    pub bearer: Option<&'r str>,
    /// The request's `Authorization` header carries a Portcullis key or access token: it must
    /// not reach an app (no token passthrough).
    pub own_token_in_authorization: bool,
    /// The socket peer, for identities a proxy in front vouches for (`None`: the surface takes
    /// no such identity, so the peer is not needed).
    pub peer: Option<IpAddr>,
    pub headers: &'r HeaderMap,
}

impl<'r> Presented<'r> {
    pub fn read(headers: &'r HeaderMap, peer: Option<IpAddr>) -> Self {
        let bearers: Vec<&str> = headers
            .get_all(header::AUTHORIZATION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(bearer_token)
            .collect();
        let key_bearer = bearers.iter().copied().find(|t| t.starts_with(KEY_PREFIX));
        let access_token = bearers
            .iter()
            .copied()
            .find(|t| t.starts_with(ACCESS_TOKEN_PREFIX));
        let keys = headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .into_iter()
            .chain(key_bearer)
            .collect();
        Presented {
            cookies: cookies::values(headers, SESSION_COOKIE).collect(),
            keys,
            bearer: bearers
                .into_iter()
                .find(|t| !t.starts_with(KEY_PREFIX) && !t.starts_with(ACCESS_TOKEN_PREFIX)),
            own_token_in_authorization: key_bearer.is_some() || access_token.is_some(),
            access_token,
            peer,
            headers,
        }
    }
}

/// The token of a `Bearer` credential; the scheme is case-insensitive (RFC 9110 §11.1).
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Which credential authenticated a request.
#[derive(Clone, Debug)]
pub enum Credential {
    Session(Arc<ActiveSession>),
    Key(Arc<LiveKey>),
    /// An OAuth access token of a grant to an MCP app.
    Grant(Arc<LiveGrant>),
    /// A proxy in front or another issuer's token vouched for the directory user.
    External,
}

/// Who a request is from.
#[derive(Clone, Debug)]
pub struct Principal {
    pub identity: Arc<Identity>,
    pub credential: Credential,
    /// Cancelled when the credential ends: streams and tunnels opened with it watch it.
    pub guard: StreamGuard,
}

impl Principal {
    /// The credential's public name for assertions and logs: a session's `sid`, `key:<id>`,
    /// or `external:<user id>`.
    pub fn sid(&self) -> Cow<'_, str> {
        match &self.credential {
            Credential::Session(session) => Cow::Borrowed(&session.sid),
            Credential::Key(key) => Cow::Borrowed(&key.sid),
            Credential::Grant(grant) => Cow::Borrowed(&grant.sid),
            Credential::External => Cow::Owned(format!("external:{}", self.identity.subject)),
        }
    }

    /// The session, when a session cookie authenticated the request.
    pub fn session(&self) -> Option<&Arc<ActiveSession>> {
        match &self.credential {
            Credential::Session(session) => Some(session),
            _ => None,
        }
    }

    /// Whether a `require_mfa` app admits this credential: a session proved with a second
    /// factor, or an API key (a credential issued deliberately, not a sign-in; creating one
    /// that reaches such an app takes a session with a second factor), or an OAuth grant
    /// (authorizing a client for such an app takes the same session). An identity another
    /// system vouches for says nothing about factors, so it does not.
    pub fn meets_mfa(&self) -> bool {
        match &self.credential {
            Credential::Session(session) => session.mfa(),
            Credential::Key(_) | Credential::Grant(_) => true,
            Credential::External => false,
        }
    }

    /// The audit actor's id: the user, with the key for key-authenticated calls.
    pub fn actor_id(&self) -> String {
        match &self.credential {
            Credential::Key(key) => format!("{} (key {})", key.owner_id, key.id),
            Credential::Grant(grant) => format!("{} (client {})", grant.user_id, grant.client_id),
            _ => self.identity.subject.clone(),
        }
    }
}

/// Where a request is authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Surface<'a> {
    /// An app behind Portcullis, through its own proxy or through forward-auth.
    App(&'a str),
    /// An MCP server behind Portcullis: MCP clients carry bearer tokens, never cookies, so a
    /// session (which a browser sends to any page that asks) is not accepted; OAuth access
    /// tokens of grants to this app are.
    Mcp(&'a str),
    /// Portcullis's REST API (`/api/v1`).
    Api,
    /// Portcullis's pages for people: admin, account, whoami, oauth2-proxy's userinfo.
    Pages,
}

/// What a surface accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Accepts<'a> {
    pub sessions: bool,
    /// Keys allowed for this app name (an unscoped key is allowed for every app, not the API).
    pub keys_for: Option<KeyScope<'a>>,
    /// Identities from a proxy in front and other issuers' bearer tokens.
    pub external: bool,
    /// OAuth access tokens of grants to this app.
    pub grants_for: Option<&'a str>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyScope<'a> {
    /// An app: keys for it, and keys for every app.
    App(&'a str),
    /// Portcullis's API: only keys that name it.
    Api,
}

impl<'a> Surface<'a> {
    /// The one table of which credentials each surface accepts (docs/architecture.md).
    pub fn accepts(self) -> Accepts<'a> {
        match self {
            Surface::App(app) => Accepts {
                sessions: true,
                keys_for: Some(KeyScope::App(app)),
                external: true,
                grants_for: None,
            },
            Surface::Mcp(app) => Accepts {
                sessions: false,
                keys_for: Some(KeyScope::App(app)),
                external: false,
                grants_for: Some(app),
            },
            Surface::Api => Accepts {
                sessions: true,
                keys_for: Some(KeyScope::Api),
                external: false,
                grants_for: None,
            },
            Surface::Pages => Accepts {
                sessions: true,
                keys_for: None,
                external: false,
                grants_for: None,
            },
        }
    }
}

/// Why a request was not authenticated, when it presented something that did not work.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("the API key was refused: {0}")]
    KeyRefused(&'static str),
    #[error("the access token was refused: {0}")]
    TokenRefused(&'static str),
    #[error("the access token is for another MCP server than \"{0}\"")]
    TokenForAnotherApp(String),
    #[error("the API key \"{key}\" may not be used for {target}")]
    KeyNotAllowed { key: String, target: String },
    #[error(transparent)]
    External(#[from] ExternalError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<AuthError> for Failure {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::KeyRefused(_) => Failure::new(FailureKind::Unauthenticated, format!("{e}."))
                .with_hint("check the key, or create a new one"),
            AuthError::TokenRefused(_) | AuthError::TokenForAnotherApp(_) => {
                Failure::new(FailureKind::Unauthenticated, format!("{e}."))
                    .with_hint("authorize the client again")
            }
            AuthError::KeyNotAllowed { .. } => Failure::new(
                FailureKind::Forbidden,
                format!("{}.", capitalised(&e.to_string())),
            )
            .with_hint("create a key for this app, or ask an administrator to widen this one"),
            AuthError::External(e) => Failure::from(e),
            AuthError::Store(e) => Failure::from(e),
        }
    }
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// Resolves presented credentials, for every surface the same way.
pub struct Authenticator {
    pub sessions: Arc<SessionManager>,
    pub keys: Arc<KeyRing>,
    /// OAuth grants to MCP apps, which access tokens are checked against.
    pub grants: Arc<GrantRing>,
    /// Identity from proxies in front and other issuers' tokens; `None` when none is configured.
    pub external: Option<Arc<ExternalAuth>>,
}

impl Authenticator {
    /// The principal behind the request for `surface`, or `None` when it presents nothing that
    /// surface accepts. An API key comes first, then an identity from outside, then the session
    /// cookie; a credential that is presented but refused is an error, never silently skipped
    /// (a refused key must not fall back to a cookie that happens to be there).
    pub async fn authenticate(
        &self,
        surface: Surface<'_>,
        presented: &Presented<'_>,
    ) -> Result<Option<Principal>, AuthError> {
        let accepts = surface.accepts();
        if let Some(app) = accepts.grants_for
            && let Some(token) = presented.access_token
        {
            return match self.grants.check(token).await {
                GrantCheck::Valid(grant) if grant.app == app => Ok(Some(Principal {
                    identity: grant.identity.clone(),
                    guard: grant.cancel.clone(),
                    credential: Credential::Grant(grant),
                })),
                GrantCheck::Valid(_) => Err(AuthError::TokenForAnotherApp(app.to_owned())),
                GrantCheck::Refused(reason) => Err(AuthError::TokenRefused(reason)),
                GrantCheck::NotOurs => Ok(None),
            };
        }
        if let Some(scope) = accepts.keys_for
            && let Some(key) = self.key(presented)?
        {
            let (allowed, target) = match scope {
                KeyScope::App(app) => (key.allows(app), format!("the app \"{app}\"")),
                KeyScope::Api => (
                    key.allowed_apps.iter().any(|a| a == API_SCOPE),
                    format!("Portcullis's API (create one with the app {API_SCOPE})"),
                ),
            };
            if !allowed {
                return Err(AuthError::KeyNotAllowed {
                    key: key.name.clone(),
                    target,
                });
            }
            return Ok(Some(Principal {
                identity: key.identity.clone(),
                guard: key.cancel.clone(),
                credential: Credential::Key(key),
            }));
        }
        if accepts.external
            && let Some(external) = &self.external
            && let Some(identity) = self.external_identity(external, presented).await?
        {
            return Ok(Some(Principal {
                guard: external.stream_guard(&identity.subject),
                identity,
                credential: Credential::External,
            }));
        }
        if accepts.sessions {
            for value in &presented.cookies {
                if let Some(session) = self.sessions.resolve(value).await? {
                    return Ok(Some(Principal {
                        identity: session.identity.clone(),
                        guard: self.sessions.stream_guard(&session),
                        credential: Credential::Session(session),
                    }));
                }
            }
        }
        Ok(None)
    }

    /// Brings every cache of credentials in line with a change to a user: the user's sessions
    /// take the new identity (or end, with their streams, when the user may no longer sign in),
    /// keys carry it, identities from outside are looked up again. The change feed calls this
    /// in every process; a writer may call it at once for its own process.
    pub async fn user_changed(&self, user_id: &str) -> Result<(), StoreError> {
        // Keys and grants first: by the time a disabled user's streams close, their keys and
        // tokens are refused too.
        self.keys.reload().await?;
        self.grants.reload().await?;
        self.identities_changed(user_id).await
    }

    /// [`Self::user_changed`] for a caller that has reloaded the keys itself, once for many
    /// users (the change feed, applying a batch).
    pub async fn identities_changed(&self, user_id: &str) -> Result<(), StoreError> {
        let active = self.sessions.user_changed(user_id).await?;
        if let Some(external) = &self.external {
            if active {
                external.user_changed(user_id);
            } else {
                external.user_ended(user_id);
            }
        }
        Ok(())
    }

    /// A Portcullis API key, if one was presented; a Portcullis key that does not work is
    /// refused outright rather than passed on.
    fn key(&self, presented: &Presented<'_>) -> Result<Option<Arc<LiveKey>>, AuthError> {
        for token in &presented.keys {
            match self.keys.check(token) {
                KeyCheck::NotAKey => continue,
                KeyCheck::Refused(reason) => return Err(AuthError::KeyRefused(reason)),
                KeyCheck::Valid(key) => return Ok(Some(key)),
            }
        }
        Ok(None)
    }

    /// An identity vouched for by a trusted proxy in front, or by another issuer's bearer
    /// token. A bearer token nobody here issued is the app's own and stays where it is.
    async fn external_identity(
        &self,
        external: &ExternalAuth,
        presented: &Presented<'_>,
    ) -> Result<Option<Arc<Identity>>, ExternalError> {
        if let Some(peer) = presented.peer
            && let Some(identity) = external.from_outer_proxy(peer, presented.headers).await?
        {
            return Ok(Some(identity));
        }
        match presented.bearer {
            Some(token) => external.from_bearer(token).await,
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_read_once_from_the_headers() {
        let mut headers = HeaderMap::new();
        headers.append("cookie", "a=1; _portcullis=one".parse().unwrap());
        headers.append("cookie", "_portcullis=two".parse().unwrap());
        headers.append("authorization", "bearer eyJ.app.token".parse().unwrap());
        headers.append("x-api-key", " pcs_fromheader ".parse().unwrap());
        let presented = Presented::read(&headers, None);
        assert_eq!(presented.cookies, ["one", "two"]);
        assert_eq!(presented.keys, ["pcs_fromheader"]);
        assert_eq!(presented.bearer, Some("eyJ.app.token"));
        assert!(!presented.own_token_in_authorization);

        let mut headers = HeaderMap::new();
        headers.append("authorization", "Bearer pcs_inauth".parse().unwrap());
        let presented = Presented::read(&headers, None);
        assert_eq!(presented.keys, ["pcs_inauth"]);
        assert_eq!(presented.bearer, None);
        assert!(presented.own_token_in_authorization);
    }

    #[test]
    fn each_surface_accepts_what_its_table_row_says() {
        assert_eq!(
            Surface::App("chat").accepts(),
            Accepts {
                sessions: true,
                keys_for: Some(KeyScope::App("chat")),
                external: true,
                grants_for: None,
            }
        );
        assert!(!Surface::Api.accepts().external);
        assert_eq!(Surface::Pages.accepts().keys_for, None);
    }
}
