//! One configured identity provider.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use portcullis_core::Clock;
use portcullis_core::claims::Preset;
use portcullis_core::config::ProviderConfig;
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::RwLock;

use super::OidcError;
use super::id_token::{self, Expectations};
use super::jwks::JwksCache;

/// Keys are refetched for an unknown `kid` at most this often.
const JWKS_MIN_REFETCH: Duration = Duration::from_secs(30);
/// Time allowed for any one call to a provider.
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(10);

/// The endpoints of a provider, from discovery (or fixed, for GitHub).
#[derive(Clone, Debug, Deserialize)]
pub struct Metadata {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    #[serde(default)]
    pub userinfo_endpoint: Option<String>,
    #[serde(default)]
    pub jwks_uri: Option<String>,
    #[serde(default)]
    pub end_session_endpoint: Option<String>,
}

/// What the token endpoint returned.
#[derive(Clone, Debug, Deserialize)]
pub struct Tokens {
    pub access_token: String,
    #[serde(default)]
    pub id_token: Option<String>,
    #[serde(default)]
    pub refresh_token: Option<String>,
    #[serde(default)]
    pub expires_in: Option<u64>,
}

struct Discovered {
    metadata: Metadata,
    jwks: Option<Arc<JwksCache>>,
}

impl Discovered {
    fn keys(&self) -> Result<&JwksCache, OidcError> {
        self.jwks
            .as_deref()
            .ok_or_else(|| OidcError::Rejected("the provider publishes no jwks_uri".into()))
    }
}

pub struct Provider {
    pub config: ProviderConfig,
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
    discovered: RwLock<Option<Arc<Discovered>>>,
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> OidcError {
    OidcError::Unavailable(format!("{what}: {e}"))
}

impl Provider {
    pub fn new(config: ProviderConfig, clock: Arc<dyn Clock>) -> Result<Self, OidcError> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(PROVIDER_TIMEOUT)
            .user_agent("portcullis")
            .build()
            .map_err(|e| unavailable("building the HTTP client", e))?;
        Ok(Provider {
            config,
            http,
            clock,
            discovered: RwLock::new(None),
        })
    }

    pub fn id(&self) -> &str {
        &self.config.id
    }

    fn is_github(&self) -> bool {
        self.config.preset == Preset::Github
    }

    /// The provider's endpoints; discovery runs on first use and is retried after a failure, so a
    /// provider that is down at start-up does not stop Portcullis.
    async fn discovered(&self) -> Result<Arc<Discovered>, OidcError> {
        if let Some(found) = self.discovered.read().await.as_ref() {
            return Ok(found.clone());
        }
        let metadata = if self.is_github() {
            self.github_metadata()
        } else {
            self.discover().await?
        };
        let jwks = metadata
            .jwks_uri
            .clone()
            .map(|uri| Arc::new(JwksCache::new(uri, self.http.clone(), JWKS_MIN_REFETCH)));
        let found = Arc::new(Discovered { metadata, jwks });
        *self.discovered.write().await = Some(found.clone());
        Ok(found)
    }

    /// Checks, now, that the provider answers: discovery (issuer included) and, when it has one,
    /// the key set. Returns what was checked, for `doctor --live`.
    pub async fn probe(&self) -> Result<Vec<String>, OidcError> {
        if self.is_github() {
            return Ok(vec![
                "GitHub has no discovery document or key set (OAuth only)".into(),
            ]);
        }
        let found = self.discovered().await?;
        let mut checked = vec![format!("discovery: issuer {}", found.metadata.issuer)];
        match &found.jwks {
            Some(jwks) => match jwks.probe().await? {
                0 => {
                    return Err(OidcError::Rejected(format!(
                        "{} publishes no keys, so no ID token can be verified",
                        jwks.uri()
                    )));
                }
                n => checked.push(format!("{}: {n} key(s)", jwks.uri())),
            },
            None => {
                return Err(OidcError::Rejected(
                    "the discovery document names no jwks_uri, so ID tokens cannot be verified"
                        .into(),
                ));
            }
        }
        Ok(checked)
    }

    pub async fn metadata(&self) -> Result<Metadata, OidcError> {
        Ok(self.discovered().await?.metadata.clone())
    }

    async fn discover(&self) -> Result<Metadata, OidcError> {
        let issuer = self.config.issuer.clone().unwrap_or_default();
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let response = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| unavailable(&url, e))?;
        if !response.status().is_success() {
            return Err(OidcError::Unavailable(format!(
                "{url} answered {}",
                response.status()
            )));
        }
        let mut metadata: Metadata = response
            .json()
            .await
            .map_err(|e| unavailable(&format!("{url} is not a discovery document"), e))?;
        if metadata.issuer.trim_end_matches('/') != issuer.trim_end_matches('/') {
            return Err(OidcError::Rejected(format!(
                "the discovery document names issuer {:?}, not the configured {issuer:?}",
                metadata.issuer
            )));
        }
        let o = &self.config.endpoints;
        if let Some(url) = &o.authorization {
            metadata.authorization_endpoint = url.clone();
        }
        if let Some(url) = &o.token {
            metadata.token_endpoint = url.clone();
        }
        if let Some(url) = &o.userinfo {
            metadata.userinfo_endpoint = Some(url.clone());
        }
        Ok(metadata)
    }

    fn github_metadata(&self) -> Metadata {
        let o = &self.config.endpoints;
        let or =
            |url: &Option<String>, default: &str| url.clone().unwrap_or_else(|| default.to_owned());
        Metadata {
            issuer: "https://github.com".into(),
            authorization_endpoint: or(
                &o.authorization,
                "https://github.com/login/oauth/authorize",
            ),
            token_endpoint: or(&o.token, "https://github.com/login/oauth/access_token"),
            userinfo_endpoint: Some(or(&o.userinfo, "https://api.github.com/user")),
            jwks_uri: None,
            end_session_endpoint: None,
        }
    }

    /// Where to send the browser to sign in.
    pub async fn authorization_url(
        &self,
        redirect_uri: &str,
        state: &str,
        nonce: &str,
        challenge: &str,
    ) -> Result<String, OidcError> {
        let metadata = self.metadata().await?;
        let scope = self.config.scopes().join(" ");
        let mut url = reqwest::Url::parse(&metadata.authorization_endpoint)
            .map_err(|e| OidcError::Rejected(format!("authorization endpoint: {e}")))?;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.config.client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("scope", &scope)
            .append_pair("state", state)
            .append_pair("nonce", nonce)
            .append_pair("code_challenge", challenge)
            .append_pair("code_challenge_method", "S256");
        // Providers issue refresh tokens for offline_access only after explicit consent.
        if self.config.scopes().iter().any(|s| s == "offline_access") {
            url.query_pairs_mut().append_pair("prompt", "consent");
        }
        Ok(url.into())
    }

    /// Exchanges the authorization code (with the PKCE verifier) for tokens.
    pub async fn exchange(
        &self,
        code: &str,
        verifier: &str,
        redirect_uri: &str,
    ) -> Result<Tokens, OidcError> {
        self.token_request(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", verifier),
        ])
        .await
    }

    /// New tokens for a refresh token. `Rejected` means the provider refused for good.
    pub async fn refresh(&self, refresh_token: &str) -> Result<Tokens, OidcError> {
        self.token_request(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ])
        .await
    }

    async fn token_request(&self, form: &[(&str, &str)]) -> Result<Tokens, OidcError> {
        let metadata = self.metadata().await?;
        let response = self
            .http
            .post(&metadata.token_endpoint)
            .basic_auth(&self.config.client_id, Some(&self.config.client_secret))
            .header("accept", "application/json")
            .form(form)
            .send()
            .await
            .map_err(|e| unavailable("token endpoint", e))?;
        let status = response.status();
        if status.is_server_error() {
            return Err(OidcError::Unavailable(format!(
                "token endpoint answered {status}"
            )));
        }
        let body: Value = response
            .json()
            .await
            .map_err(|e| unavailable("token endpoint answer", e))?;
        if !status.is_success() || body.get("error").is_some() {
            let error = body
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("unknown_error");
            let description = body
                .get("error_description")
                .and_then(Value::as_str)
                .unwrap_or("");
            return Err(OidcError::Rejected(format!(
                "the provider refused: {error} {description}"
            )));
        }
        serde_json::from_value(body)
            .map_err(|e| OidcError::Rejected(format!("token response: {e}")))
    }

    /// The person's claims: a verified ID token merged with userinfo (OIDC), or GitHub's user.
    pub async fn claims(&self, tokens: &Tokens, nonce: &str) -> Result<Value, OidcError> {
        if self.is_github() {
            return self.github_claims(&tokens.access_token).await;
        }
        let discovered = self.discovered().await?;
        let id_token = tokens.id_token.as_deref().ok_or_else(|| {
            OidcError::Rejected(
                "the provider returned no ID token (is the openid scope set?)".into(),
            )
        })?;
        let mut claims = id_token::verify(
            id_token,
            discovered.keys()?,
            &self.expectations(&discovered, nonce),
        )
        .await?;
        if let Some(endpoint) = &discovered.metadata.userinfo_endpoint {
            let userinfo = self.get_json(endpoint, &tokens.access_token).await?;
            if userinfo.get("sub") != claims.get("sub") {
                return Err(OidcError::Rejected(
                    "userinfo describes a different user than the ID token".into(),
                ));
            }
            merge_missing(&mut claims, userinfo);
        }
        Ok(claims)
    }

    /// How the provider says it proved the sign-in, for the session: its `amr` values (RFC
    /// 8176), with `mfa` added when they, or its `acr`, are ones `mfa_amr`/`mfa_acr` trust.
    /// Without those settings a provider sign-in never counts as multi-factor: providers
    /// send `amr` inconsistently, and trusting an unconfigured claim would let `require_mfa`
    /// be met by a provider that never asked for a second factor.
    pub fn amr(&self, claims: &Value) -> Vec<String> {
        let mut amr: Vec<String> = claims
            .get("amr")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .filter(|m| !m.is_empty() && m.len() <= 32 && m.bytes().all(|b| b.is_ascii_graphic()))
            .map(str::to_owned)
            .take(16)
            .collect();
        let acr = claims.get("acr").and_then(Value::as_str);
        let trusted_amr = amr.iter().any(|m| self.config.mfa_amr.contains(m));
        let trusted_acr = acr.is_some_and(|a| self.config.mfa_acr.iter().any(|t| t == a));
        let mfa = portcullis_core::session::AMR_MFA;
        amr.retain(|m| m != mfa);
        if trusted_amr || trusted_acr {
            amr.push(mfa.to_owned());
        }
        amr
    }

    /// The user's current claims for an access token: userinfo (OIDC) or GitHub's user; `None`
    /// for a provider without a userinfo endpoint.
    pub async fn current_claims(&self, access_token: &str) -> Result<Option<Value>, OidcError> {
        if self.is_github() {
            return self.github_claims(access_token).await.map(Some);
        }
        match self.metadata().await?.userinfo_endpoint {
            Some(endpoint) => self.get_json(&endpoint, access_token).await.map(Some),
            None => Ok(None),
        }
    }

    /// What a token from this provider must satisfy now.
    fn expectations<'a>(&'a self, discovered: &'a Discovered, nonce: &'a str) -> Expectations<'a> {
        Expectations {
            issuer: &discovered.metadata.issuer,
            client_id: &self.config.client_id,
            nonce,
            allowed_algorithms: &self.config.allowed_algorithms,
            now: self.clock.now(),
        }
    }

    /// Verifies a back-channel logout token from this provider.
    pub async fn verify_logout_token(
        &self,
        token: &str,
    ) -> Result<id_token::LogoutTarget, OidcError> {
        let discovered = self.discovered().await?;
        id_token::verify_logout(
            token,
            discovered.keys()?,
            &self.expectations(&discovered, ""),
        )
        .await
    }

    async fn get_json(&self, url: &str, access_token: &str) -> Result<Value, OidcError> {
        let response = self
            .http
            .get(url)
            .bearer_auth(access_token)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| unavailable(url, e))?;
        if !response.status().is_success() {
            return Err(OidcError::Unavailable(format!(
                "{url} answered {}",
                response.status()
            )));
        }
        response.json().await.map_err(|e| unavailable(url, e))
    }

    /// GitHub: `/user`, plus the primary verified address from `/user/emails`.
    async fn github_claims(&self, access_token: &str) -> Result<Value, OidcError> {
        let metadata = self.metadata().await?;
        let user_url = metadata.userinfo_endpoint.unwrap_or_default();
        let mut user = self.get_json(&user_url, access_token).await?;
        let emails_url = self
            .config
            .endpoints
            .emails
            .clone()
            .unwrap_or_else(|| format!("{user_url}/emails"));
        let emails = self.get_json(&emails_url, access_token).await?;
        let primary = emails.as_array().into_iter().flatten().find(|e| {
            e.get("primary").and_then(Value::as_bool) == Some(true)
                && e.get("verified").and_then(Value::as_bool) == Some(true)
        });
        if let (Some(obj), Some(primary)) = (user.as_object_mut(), primary) {
            obj.insert(
                "email".into(),
                primary.get("email").cloned().unwrap_or(Value::Null),
            );
            obj.insert("email_verified".into(), Value::Bool(true));
        } else if let Some(obj) = user.as_object_mut() {
            // A public profile address is not known to be verified.
            obj.insert("email_verified".into(), Value::Bool(false));
        }
        Ok(user)
    }

    /// Where to send the browser to end the provider's session too, if the provider supports it.
    /// Cognito ignores the standard parameters and wants `/logout?client_id=…&logout_uri=…`.
    pub async fn logout_url(
        &self,
        id_token: Option<&str>,
        post_logout_redirect: &str,
    ) -> Option<String> {
        let metadata = self.metadata().await.ok()?;
        if self.config.preset == Preset::Cognito {
            let authorize = reqwest::Url::parse(&metadata.authorization_endpoint).ok()?;
            let mut url = authorize.join("/logout").ok()?;
            url.query_pairs_mut()
                .append_pair("client_id", &self.config.client_id)
                .append_pair("logout_uri", post_logout_redirect);
            return Some(url.into());
        }
        let mut url = reqwest::Url::parse(metadata.end_session_endpoint.as_deref()?).ok()?;
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("client_id", &self.config.client_id);
            query.append_pair("post_logout_redirect_uri", post_logout_redirect);
            if let Some(token) = id_token {
                query.append_pair("id_token_hint", token);
            }
        }
        Some(url.into())
    }
}

/// Adds userinfo claims the ID token lacks; the ID token's own claims win.
fn merge_missing(claims: &mut Value, userinfo: Value) {
    if let (Some(target), Value::Object(extra)) = (claims.as_object_mut(), userinfo) {
        for (key, value) in extra {
            target.entry(key).or_insert(value);
        }
    }
}

/// All configured providers by id, in configuration order.
pub struct Providers {
    by_id: BTreeMap<String, Arc<Provider>>,
    order: Vec<String>,
}

impl Providers {
    pub fn new(configs: &[ProviderConfig], clock: Arc<dyn Clock>) -> Result<Self, OidcError> {
        let mut by_id = BTreeMap::new();
        let mut order = Vec::new();
        for config in configs {
            order.push(config.id.clone());
            by_id.insert(
                config.id.clone(),
                Arc::new(Provider::new(config.clone(), clock.clone())?),
            );
        }
        Ok(Providers { by_id, order })
    }

    pub fn get(&self, id: &str) -> Option<Arc<Provider>> {
        self.by_id.get(id).cloned()
    }

    pub fn all(&self) -> impl Iterator<Item = &Arc<Provider>> {
        self.order.iter().filter_map(|id| self.by_id.get(id))
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}
