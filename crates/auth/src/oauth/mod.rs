//! Portcullis as the OAuth 2.1 authorization server of its MCP apps (MCP authorization,
//! revisions 2025-06-18 and 2025-11-25): the authorization code flow with PKCE S256 only,
//! resource indicators naming an MCP app (RFC 8707), rotating refresh tokens, and revocation.
//! Who may authorize is decided by the web layer (a session, the app's policy, consent); this
//! module checks requests and issues and redeems what they carry.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use portcullis_core::config::OAuthConfig;
use portcullis_core::user::UserStatus;
use portcullis_core::{Clock, Timestamp};
use portcullis_store::{AuthCode, Grant, Redeemed, Rotation, Store, StoreError};
use serde::Deserialize;
use sha2::{Digest, Sha256};

pub mod clients;
pub mod grants;
pub mod metadata;

pub use clients::{Client, ClientKind, Clients, Registered, Registration};
pub use grants::{ACCESS_TOKEN_PREFIX, GrantCheck, GrantRing, LiveGrant};

use crate::secret::{constant_time_eq, random_token, token_hash};

/// How long an authorization code works.
const CODE_LIFETIME: i64 = 60;
/// How long a refresh token still works after it was rotated: a client whose refresh answer was
/// lost may try it again.
const REFRESH_GRACE: i64 = 30;
const REFRESH_PREFIX: &str = "pcr_";

/// An OAuth error answer (RFC 6749 §5.2, RFC 7591 §3.2.2, RFC 8707 §2).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{error}: {description}")]
pub struct OAuthError {
    pub error: &'static str,
    pub description: String,
    pub status: u16,
}

impl OAuthError {
    pub fn new(error: &'static str, description: impl Into<String>) -> Self {
        OAuthError {
            error,
            description: description.into(),
            status: 400,
        }
    }

    pub fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    pub fn invalid_client(description: impl Into<String>) -> Self {
        OAuthError::new("invalid_client", description).with_status(401)
    }

    pub fn invalid_client_metadata(description: impl Into<String>) -> Self {
        OAuthError::new("invalid_client_metadata", description)
    }

    fn invalid_grant(description: impl Into<String>) -> Self {
        OAuthError::new("invalid_grant", description)
    }

    fn invalid_request(description: impl Into<String>) -> Self {
        OAuthError::new("invalid_request", description)
    }
}

impl From<StoreError> for OAuthError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "the authorization server could not reach the store");
        OAuthError::new(
            "temporarily_unavailable",
            "the directory is not reachable right now; try again shortly",
        )
        .with_status(503)
    }
}

/// An MCP app as a resource tokens are issued for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resource {
    pub app: String,
    /// The canonical resource URL.
    pub resource: String,
    pub scopes: Vec<String>,
}

/// The query of an authorization request, as sent.
#[derive(Clone, Debug, Default, Deserialize, serde::Serialize)]
pub struct AuthorizeParams {
    pub response_type: Option<String>,
    pub client_id: Option<String>,
    pub redirect_uri: Option<String>,
    pub state: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    pub scope: Option<String>,
    pub resource: Option<String>,
}

/// An authorization request that checked out.
#[derive(Clone, Debug)]
pub struct AuthorizeRequest {
    pub client: Client,
    /// As presented (a loopback redirect with its port); the token request must repeat it.
    pub redirect_uri: String,
    pub state: Option<String>,
    pub code_challenge: String,
    pub resource: Resource,
    pub scopes: Vec<String>,
}

/// Why an authorization request went no further.
#[derive(Debug)]
pub enum AuthorizeError {
    /// The client or its redirect URI is not known to be genuine: shown to the user here, never
    /// sent anywhere (RFC 6749 §4.1.2.1).
    Local(OAuthError),
    /// Sent back to the client at this URL (`error`, `state`, `iss`).
    Redirect(String),
}

/// The token endpoint's form (RFC 6749 §4.1.3, §6).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct TokenParams {
    pub grant_type: Option<String>,
    pub code: Option<String>,
    pub redirect_uri: Option<String>,
    pub code_verifier: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub refresh_token: Option<String>,
    pub scope: Option<String>,
    pub resource: Option<String>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
    pub refresh_token: String,
    pub scope: String,
}

/// What a token request was about, for the audit trail.
pub struct Issued {
    pub response: TokenResponse,
    pub grant: Grant,
}

pub struct AuthorizationServer {
    /// The issuer identifier: Portcullis's public URL.
    pub issuer: String,
    pub clients: Clients,
    pub grants: Arc<GrantRing>,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    resources: Vec<Resource>,
    access_token_lifetime: Duration,
    grant_lifetime: Duration,
    client_idle_lifetime: Duration,
}

impl AuthorizationServer {
    pub fn new(
        config: &OAuthConfig,
        issuer: String,
        clients: Clients,
        grants: Arc<GrantRing>,
        (store, clock): (Arc<dyn Store>, Arc<dyn Clock>),
        resources: Vec<Resource>,
    ) -> Self {
        AuthorizationServer {
            issuer,
            clients,
            grants,
            store,
            clock,
            resources,
            access_token_lifetime: config.access_token_lifetime,
            grant_lifetime: config.grant_lifetime,
            client_idle_lifetime: config.client_idle_lifetime,
        }
    }

    pub fn resources(&self) -> &[Resource] {
        &self.resources
    }

    /// Checks an authorization request. Until the client and its redirect URI are known, a
    /// problem is [`AuthorizeError::Local`]; after, it goes back to the client.
    pub async fn check_authorize(
        &self,
        p: &AuthorizeParams,
    ) -> Result<AuthorizeRequest, AuthorizeError> {
        let local = |d: &str| AuthorizeError::Local(OAuthError::invalid_request(d));
        let client_id = p
            .client_id
            .as_deref()
            .ok_or_else(|| local("client_id is missing"))?;
        let client = self
            .clients
            .find(client_id)
            .await
            .map_err(AuthorizeError::Local)?;
        let presented = p
            .redirect_uri
            .as_deref()
            .ok_or_else(|| local("redirect_uri is missing (it is required here)"))?;
        if client.redirect_uri(presented).is_none() {
            return Err(AuthorizeError::Local(OAuthError::invalid_request(format!(
                "the redirect_uri {presented:?} is not registered for the client \"{}\"",
                client.name
            ))));
        }
        let back = |error: &'static str, description: &str| {
            AuthorizeError::Redirect(self.error_redirect(
                presented,
                p.state.as_deref(),
                error,
                description,
            ))
        };
        if p.response_type.as_deref() != Some("code") {
            return Err(back(
                "unsupported_response_type",
                "only response_type=code is supported",
            ));
        }
        let code_challenge = match (
            p.code_challenge.as_deref(),
            p.code_challenge_method.as_deref(),
        ) {
            (Some(challenge), Some("S256"))
                if is_pkce_value(challenge) && challenge.len() == 43 =>
            {
                challenge.to_owned()
            }
            (Some(_), Some("S256")) => {
                return Err(back(
                    "invalid_request",
                    "code_challenge is not a base64url SHA-256",
                ));
            }
            (None, _) => {
                return Err(back(
                    "invalid_request",
                    "PKCE is required: send code_challenge with code_challenge_method=S256",
                ));
            }
            (Some(_), _) => {
                return Err(back(
                    "invalid_request",
                    "code_challenge_method must be S256 (plain is not accepted)",
                ));
            }
        };
        let resource = match p.resource.as_deref() {
            Some(named) => self.resource(named).ok_or_else(|| {
                back(
                    "invalid_target",
                    &format!("{named:?} is not an MCP server behind this Portcullis"),
                )
            })?,
            None => {
                return Err(back(
                    "invalid_target",
                    "resource is missing: name the MCP server the token is for (RFC 8707)",
                ));
            }
        };
        let scopes = match p.scope.as_deref().map(str::split_whitespace) {
            Some(asked) => {
                let asked: Vec<String> = asked.map(str::to_owned).collect();
                if let Some(unknown) = asked.iter().find(|s| !resource.scopes.contains(s)) {
                    return Err(back(
                        "invalid_scope",
                        &format!("{unknown:?} is not a scope of {}", resource.resource),
                    ));
                }
                if asked.is_empty() {
                    resource.scopes.clone()
                } else {
                    asked
                }
            }
            None => resource.scopes.clone(),
        };
        Ok(AuthorizeRequest {
            redirect_uri: presented.to_owned(),
            state: p.state.clone(),
            client,
            code_challenge,
            resource,
            scopes,
        })
    }

    /// The MCP app `named` (a resource URL, compared in normal form) stands for.
    pub fn resource(&self, named: &str) -> Option<Resource> {
        let wanted = normal_resource(named);
        self.resources
            .iter()
            .find(|r| normal_resource(&r.resource) == wanted)
            .cloned()
    }

    /// Issues a code for the signed-in `user_id`'s consent; the URL to send the browser to.
    pub async fn approve(
        &self,
        request: &AuthorizeRequest,
        user_id: &str,
    ) -> Result<String, OAuthError> {
        let code = random_token();
        let now = self.clock.now();
        self.store
            .insert_code(&AuthCode {
                code_hash: token_hash(&code),
                user_id: user_id.to_owned(),
                client_id: request.client.id.clone(),
                client_name: request.client.name.clone(),
                redirect_uri: request.redirect_uri.clone(),
                code_challenge: request.code_challenge.clone(),
                app: request.resource.app.clone(),
                resource: request.resource.resource.clone(),
                scopes: request.scopes.clone(),
                expires_at: Timestamp(now.0 + CODE_LIFETIME),
            })
            .await?;
        Ok(self.redirect(
            &request.redirect_uri,
            &[("code", Some(&code)), ("state", request.state.as_deref())],
        ))
    }

    /// Where a user who declined goes.
    pub fn declined(&self, request: &AuthorizeRequest) -> String {
        self.error_redirect(
            &request.redirect_uri,
            request.state.as_deref(),
            "access_denied",
            "the user did not allow access",
        )
    }

    /// Where a request refused by the app's policy goes.
    pub fn refused(&self, request: &AuthorizeRequest, why: &str) -> String {
        self.error_redirect(
            &request.redirect_uri,
            request.state.as_deref(),
            "access_denied",
            why,
        )
    }

    fn error_redirect(
        &self,
        redirect_uri: &str,
        state: Option<&str>,
        error: &str,
        description: &str,
    ) -> String {
        self.redirect(
            redirect_uri,
            &[
                ("error", Some(error)),
                ("error_description", Some(description)),
                ("state", state),
            ],
        )
    }

    /// `redirect_uri` with `params` and `iss` (RFC 9207) added to its query.
    fn redirect(&self, redirect_uri: &str, params: &[(&str, Option<&str>)]) -> String {
        let mut url = redirect_uri.to_owned();
        let mut separator = if url.contains('?') { '&' } else { '?' };
        for (name, value) in params
            .iter()
            .copied()
            .chain([("iss", Some(self.issuer.as_str()))])
        {
            if let Some(value) = value {
                url.push(separator);
                url.push_str(name);
                url.push('=');
                url.push_str(
                    &percent_encoding::utf8_percent_encode(value, QUERY_VALUE).to_string(),
                );
                separator = '&';
            }
        }
        url
    }

    /// The token endpoint: a code or a refresh token for tokens. `basic` is the client's
    /// `Authorization: Basic` credentials, if it sent them.
    pub async fn token(
        &self,
        p: &TokenParams,
        basic: Option<(String, String)>,
    ) -> Result<Issued, OAuthError> {
        let (client_id, secret) = match (&basic, &p.client_id) {
            (Some((id, secret)), Some(form_id)) if form_id != id => {
                return Err(OAuthError::invalid_client(format!(
                    "the client_id {form_id:?} is not the one in the Authorization header"
                )));
            }
            (Some((id, secret)), _) => (id.clone(), Some(secret.clone())),
            (None, Some(id)) => (id.clone(), p.client_secret.clone()),
            (None, None) => return Err(OAuthError::invalid_client("client_id is missing")),
        };
        let client = self.clients.find(&client_id).await?;
        client.authenticate(secret.as_deref())?;
        self.clients.used(&client).await;
        match p.grant_type.as_deref() {
            Some("authorization_code") => self.redeem(&client, p).await,
            Some("refresh_token") => self.refresh(&client, p).await,
            Some(other) => Err(OAuthError::new(
                "unsupported_grant_type",
                format!(
                    "grant_type {other:?} is not supported (authorization_code, refresh_token)"
                ),
            )),
            None => Err(OAuthError::invalid_request("grant_type is missing")),
        }
    }

    async fn redeem(&self, client: &Client, p: &TokenParams) -> Result<Issued, OAuthError> {
        let code = p
            .code
            .as_deref()
            .ok_or_else(|| OAuthError::invalid_request("code is missing"))?;
        let code_hash = token_hash(code);
        let now = self.clock.now();
        let Some(stored) = self.store.code(&code_hash).await? else {
            return Err(OAuthError::invalid_grant("unknown authorization code"));
        };
        if stored.client_id != client.id {
            return Err(OAuthError::invalid_grant(
                "the code was issued to another client",
            ));
        }
        if now >= stored.expires_at {
            return Err(OAuthError::invalid_grant(
                "the authorization code has expired",
            ));
        }
        if p.redirect_uri.as_deref() != Some(stored.redirect_uri.as_str()) {
            return Err(OAuthError::invalid_grant(
                "redirect_uri differs from the authorization request's",
            ));
        }
        let verifier = p
            .code_verifier
            .as_deref()
            .ok_or_else(|| OAuthError::invalid_grant("code_verifier is missing (PKCE)"))?;
        if !(43..=128).contains(&verifier.len())
            || !is_pkce_value(verifier)
            || !constant_time_eq(s256(verifier).as_bytes(), stored.code_challenge.as_bytes())
        {
            return Err(OAuthError::invalid_grant(
                "code_verifier does not match the code_challenge",
            ));
        }
        if let Some(resource) = p.resource.as_deref()
            && normal_resource(resource) != normal_resource(&stored.resource)
        {
            return Err(OAuthError::new(
                "invalid_target",
                "resource differs from the one the code was issued for",
            ));
        }
        self.active_user(&stored.user_id).await?;
        let grant = Grant {
            id: random_token(),
            user_id: stored.user_id,
            client_id: stored.client_id,
            client_name: stored.client_name,
            app: stored.app,
            resource: stored.resource,
            scopes: stored.scopes,
            created_at: now,
            last_used_at: Some(now),
            expires_at: self.grant_expiry(now),
        };
        let refresh = format!("{REFRESH_PREFIX}{}", random_token());
        match self
            .store
            .redeem_code(&code_hash, &grant, &token_hash(&refresh), now)
            .await?
        {
            Redeemed::Issued => {}
            Redeemed::Replayed => {
                self.grants_changed().await;
                return Err(OAuthError::invalid_grant(
                    "the authorization code was used already; the tokens it gave were revoked",
                ));
            }
        }
        self.grants_changed().await;
        Ok(self.issued(grant, refresh))
    }

    async fn refresh(&self, client: &Client, p: &TokenParams) -> Result<Issued, OAuthError> {
        let token = p
            .refresh_token
            .as_deref()
            .ok_or_else(|| OAuthError::invalid_request("refresh_token is missing"))?;
        let hash = token_hash(token);
        let Some(grant) = self.store.grant_of_refresh(&hash).await? else {
            return Err(OAuthError::invalid_grant(
                "unknown refresh token, or its grant was revoked or has ended",
            ));
        };
        if grant.client_id != client.id {
            return Err(OAuthError::invalid_grant(
                "the refresh token was issued to another client",
            ));
        }
        if let Some(resource) = p.resource.as_deref()
            && normal_resource(resource) != normal_resource(&grant.resource)
        {
            return Err(OAuthError::new(
                "invalid_target",
                "resource differs from the one the grant is for",
            ));
        }
        let narrow_to: Option<Vec<String>> = p
            .scope
            .as_deref()
            .map(|s| s.split_whitespace().map(str::to_owned).collect());
        if let Some(asked) = &narrow_to
            && let Some(wider) = asked.iter().find(|s| !grant.scopes.contains(s))
        {
            return Err(OAuthError::new(
                "invalid_scope",
                format!("{wider:?} was not granted; a refresh can only narrow the scopes"),
            ));
        }
        self.active_user(&grant.user_id).await?;
        let now = self.clock.now();
        let next = format!("{REFRESH_PREFIX}{}", random_token());
        let rotation = self
            .store
            .rotate_refresh(
                &hash,
                &token_hash(&next),
                narrow_to.as_deref(),
                REFRESH_GRACE,
                self.grant_expiry(now),
                now,
            )
            .await?;
        match rotation {
            Rotation::Rotated(grant) => {
                self.grants_changed().await;
                Ok(self.issued(grant, next))
            }
            Rotation::Reused => {
                self.grants_changed().await;
                Err(OAuthError::invalid_grant(
                    "the refresh token was used before and has been replaced; the grant was revoked to be safe: authorize again",
                ))
            }
            Rotation::Unknown => Err(OAuthError::invalid_grant(
                "unknown refresh token, or its grant was revoked or has ended",
            )),
        }
    }

    /// Token revocation (RFC 7009): a refresh or access token ends its whole grant. Unknown
    /// tokens are not an error (the RFC says so: the client's goal is reached).
    pub async fn revoke(
        &self,
        token: &str,
        client_id: Option<&str>,
        basic: Option<(String, String)>,
        secret: Option<&str>,
    ) -> Result<Option<Grant>, OAuthError> {
        let (client_id, secret) = match &basic {
            Some((id, s)) => (Some(id.as_str()), Some(s.as_str())),
            None => (client_id, secret),
        };
        let client_id =
            client_id.ok_or_else(|| OAuthError::invalid_client("client_id is missing"))?;
        let client = self.clients.find(client_id).await?;
        client.authenticate(secret)?;
        let grant = if token.starts_with(ACCESS_TOKEN_PREFIX) {
            match self.grants.check(token).await {
                GrantCheck::Valid(live) => self.store.grant(&live.id).await?,
                _ => None,
            }
        } else {
            self.store.grant_of_refresh(&token_hash(token)).await?
        };
        let Some(grant) = grant.filter(|g| g.client_id == client.id) else {
            return Ok(None);
        };
        self.store.delete_grant(&grant.id).await?;
        self.grants_changed().await;
        Ok(Some(grant))
    }

    /// Deletes what can no longer be used: expired codes and grants, refresh tokens rotated a
    /// day ago (long past their grace; kept that long to recognise reuse), and registered
    /// clients idle for `client_idle_lifetime` with no grant left. Returns how many rows went.
    pub async fn sweep(&self) -> Result<u64, StoreError> {
        let now = self.clock.now();
        let seconds = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2);
        let expired = self
            .store
            .delete_expired_oauth(now, Timestamp(now.0 - 86_400))
            .await?;
        let idle = self
            .store
            .delete_idle_clients(Timestamp(now.0 - seconds(self.client_idle_lifetime)))
            .await?;
        Ok(expired + idle)
    }

    async fn active_user(&self, user_id: &str) -> Result<(), OAuthError> {
        match self.store.user_by_id(user_id).await? {
            Some(user) if user.status == UserStatus::Active => Ok(()),
            _ => Err(OAuthError::invalid_grant(
                "the user may not sign in any more",
            )),
        }
    }

    fn grant_expiry(&self, now: Timestamp) -> Timestamp {
        Timestamp(now.0 + i64::try_from(self.grant_lifetime.as_secs()).unwrap_or(i64::MAX / 2))
    }

    fn issued(&self, grant: Grant, refresh_token: String) -> Issued {
        let (access_token, expires_in) = self
            .grants
            .access_token(&grant.id, self.access_token_lifetime);
        Issued {
            response: TokenResponse {
                access_token,
                token_type: "Bearer",
                expires_in,
                refresh_token,
                scope: grant.scopes.join(" "),
            },
            grant,
        }
    }

    /// Brings this process's grants up to date at once (others follow the change feed).
    async fn grants_changed(&self) {
        if let Err(e) = self.grants.reload().await {
            tracing::warn!(error = %e, "could not reload grants at once; the change feed will");
        }
    }
}

/// Characters escaped in a query value.
const QUERY_VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// PKCE's alphabet (RFC 7636 §4.1): unreserved characters.
fn is_pkce_value(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// The S256 challenge of a verifier.
pub fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// A resource URL in normal form: scheme and host in lower case, no trailing slash.
fn normal_resource(url: &str) -> String {
    let trimmed = url.trim_end_matches('/');
    match trimmed.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.find('/').map_or((rest, ""), |at| rest.split_at(at));
            format!(
                "{}://{}{path}",
                scheme.to_ascii_lowercase(),
                authority.to_ascii_lowercase()
            )
        }
        None => trimmed.to_owned(),
    }
}
