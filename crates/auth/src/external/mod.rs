//! Identity that arrives with the request instead of through Portcullis's sign-in:
//!
//! - from a proxy in front ([`TrustedIdentityConfig`]): AWS ALB ([`alb`]), Cloudflare Access and
//!   Google IAP (JWTs against their published keys, [`jwt`]), or plain headers — believed only
//!   when the socket peer is one of the source's `from` addresses;
//! - as `Authorization: Bearer`: JWTs of configured issuers ([`jwt`]) and PocketBase tokens
//!   ([`pocketbase`]).
//!
//! A verified identity becomes a directory user exactly like a provider sign-in (keyed on issuer
//! and subject, created just in time). The result is cached per credential — never past the
//! token's expiry, at most a minute — so the request path does not hit the store, and dropped at
//! once when the user changes (disabled, new role…).

pub mod alb;
pub mod jwt;
pub mod pocketbase;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;
use portcullis_core::claims::{ClaimMapping, Preset, map_claims};
use portcullis_core::config::{
    BearerIssuerConfig, Config, TrustedIdentityConfig, TrustedIdentityKind,
};
use portcullis_core::{Clock, Failure, FailureKind, Identity, Timestamp};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::directory::{Directory, IdentitySource, LoginRefusal};
use crate::guards::{StreamGuard, StreamGuards};
use crate::oidc::OidcError;
use crate::oidc::jwks::JwksCache;
use alb::AlbKeys;
use pocketbase::PocketBase;

/// How often an unknown `kid` may make Portcullis fetch an issuer's keys again.
const KEY_REFETCH: Duration = Duration::from_secs(30);
/// The longest a verified credential is trusted without checking it again.
const MAX_TRUST_SECS: i64 = 60;

#[derive(Debug, thiserror::Error)]
pub enum ExternalError {
    /// The credential is not valid (forged, expired, wrong audience or issuer…).
    #[error("{0}")]
    Rejected(String),
    /// The system that vouches for it could not be reached.
    #[error("{0}")]
    Unavailable(String),
    /// Valid, but the user may not sign in (disabled, email taken…).
    #[error(transparent)]
    Refused(#[from] LoginRefusal),
}

impl From<OidcError> for ExternalError {
    fn from(e: OidcError) -> Self {
        match e {
            OidcError::Unavailable(m) => ExternalError::Unavailable(m),
            OidcError::Rejected(m) => ExternalError::Rejected(m),
        }
    }
}

impl From<ExternalError> for Failure {
    fn from(e: ExternalError) -> Self {
        match e {
            ExternalError::Rejected(m) => Failure::new(
                FailureKind::Unauthenticated,
                format!("The identity sent with this request was refused: {m}."),
            )
            .with_hint("sign in again at the identity provider in front, or get a new token"),
            ExternalError::Unavailable(m) => Failure::new(
                FailureKind::UpstreamUnavailable,
                format!("The identity sent with this request cannot be checked now: {m}."),
            )
            .with_hint("try again in a moment"),
            ExternalError::Refused(LoginRefusal::Store(e)) => Failure::from(e),
            ExternalError::Refused(refusal) => {
                Failure::new(FailureKind::Forbidden, format!("{refusal}."))
            }
        }
    }
}

/// How an outer proxy's identity is checked.
enum OuterCheck {
    Header,
    Alb(AlbKeys),
    Jwt {
        keys: JwksCache,
        issuer: String,
        audience: String,
        algorithms: Vec<String>,
    },
}

struct Outer {
    config: TrustedIdentityConfig,
    /// The header carrying the identity or token.
    header: String,
    check: OuterCheck,
}

struct Bearer {
    config: BearerIssuerConfig,
    keys: JwksCache,
    mapping: ClaimMapping,
}

/// A credential already verified and resolved.
struct Resolved {
    /// `Err` caches a refusal (PocketBase only), so bad tokens are not re-checked at once.
    identity: Result<Arc<Identity>, String>,
    user_id: String,
    until: i64,
}

pub struct ExternalAuth {
    directory: Arc<Directory>,
    clock: Arc<dyn Clock>,
    outer: Vec<Outer>,
    bearer: Vec<Bearer>,
    pocketbase: Vec<(PocketBase, bool)>,
    resolved: moka::sync::Cache<[u8; 32], Arc<Resolved>>,
    /// Per user, a token cancelled when the user is disabled or deleted: streams and tunnels
    /// opened with an external identity watch it and close, as session streams do.
    stream_guards: StreamGuards,
}

fn credential_key(parts: &[&str]) -> [u8; 32] {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    hash.finalize().into()
}

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

impl ExternalAuth {
    pub fn new(
        config: &Config,
        directory: Arc<Directory>,
        clock: Arc<dyn Clock>,
        http: reqwest::Client,
    ) -> Self {
        let outer = config
            .trusted_identity
            .iter()
            .map(|t| outer_source(t, &http))
            .collect();
        let bearer = config
            .bearer_tokens
            .iter()
            .map(|b| Bearer {
                keys: JwksCache::new(
                    b.jwks_url.clone().unwrap_or_else(|| {
                        format!("{}/.well-known/jwks.json", b.issuer.trim_end_matches('/'))
                    }),
                    http.clone(),
                    KEY_REFETCH,
                ),
                mapping: b.claims.over(&b.preset.defaults()),
                config: b.clone(),
            })
            .collect();
        let pocketbase = config
            .pocketbase
            .iter()
            .map(|p| {
                (
                    PocketBase::new(&p.id, &p.url, &p.collection, http.clone()),
                    p.link_by_email,
                )
            })
            .collect();
        ExternalAuth {
            directory,
            clock,
            outer,
            bearer,
            pocketbase,
            resolved: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(MAX_TRUST_SECS as u64))
                .support_invalidation_closures()
                .build(),
            stream_guards: StreamGuards::default(),
        }
    }

    /// A guard cancelled when this user's access ends, for streams opened with an external
    /// identity (whose subject is the directory user id).
    pub fn stream_guard(&self, user_id: &str) -> StreamGuard {
        self.stream_guards.guard(user_id)
    }

    /// The user may no longer sign in (disabled, deleted): close their open streams.
    pub fn user_ended(&self, user_id: &str) {
        self.user_changed(user_id);
        self.stream_guards.end(user_id);
    }

    pub fn is_empty(&self) -> bool {
        self.outer.is_empty() && self.bearer.is_empty() && self.pocketbase.is_empty()
    }

    /// Forgets every cached credential of this user (disabled, role or groups changed).
    pub fn user_changed(&self, user_id: &str) {
        let user_id = user_id.to_owned();
        if let Err(e) = self
            .resolved
            .invalidate_entries_if(move |_, resolved| resolved.user_id == user_id)
        {
            tracing::error!(error = %e, "could not drop cached external identities");
            self.resolved.invalidate_all();
        }
    }

    fn cached(&self, key: &[u8; 32]) -> Option<Result<Arc<Identity>, ExternalError>> {
        let resolved = self.resolved.get(key)?;
        (resolved.until > self.clock.now().0)
            .then(|| resolved.identity.clone().map_err(ExternalError::Rejected))
    }

    /// The identity a trusted proxy in front vouches for, if the socket peer is one and sent it.
    pub async fn from_outer_proxy(
        &self,
        peer: IpAddr,
        headers: &HeaderMap,
    ) -> Result<Option<Arc<Identity>>, ExternalError> {
        for source in &self.outer {
            if !source.config.from.iter().any(|net| net.contains(&peer)) {
                continue;
            }
            let Some(value) = header_text(headers, &source.header) else {
                continue;
            };
            let extra = |name: &Option<String>| {
                name.as_deref()
                    .and_then(|n| header_text(headers, n))
                    .unwrap_or("")
            };
            let c = &source.config;
            let key = credential_key(&[
                &c.id,
                value,
                extra(&c.email_header),
                extra(&c.name_header),
                extra(&c.groups_header),
            ]);
            if let Some(cached) = self.cached(&key) {
                return cached.map(Some);
            }
            let now = self.clock.now();
            let claims = source.verified_claims(value, headers, now).await?;
            let identity_source = IdentitySource {
                kind: "proxy",
                id: &c.id,
                link_by_email: false,
                trust_unverified_email: true,
                admin_groups: &[],
            };
            let issuer = format!("outer:{}", c.id);
            let (identity, user_id) = self
                .resolve(
                    &identity_source,
                    &issuer,
                    &claims,
                    &Preset::Generic.defaults(),
                )
                .await?;
            if !c.allowed_users.is_empty() && !allowed(&c.allowed_users, &identity) {
                return Err(ExternalError::Rejected(format!(
                    "{} is not among the users this proxy may sign in",
                    identity.username
                )));
            }
            let until = trust_until(&claims, now.0);
            self.remember(key, Ok(identity.clone()), user_id, until);
            return Ok(Some(identity));
        }
        Ok(None)
    }

    /// The identity behind a bearer token of a configured issuer or PocketBase; `None` for any
    /// other token (it belongs to the app and passes through untouched).
    pub async fn from_bearer(&self, token: &str) -> Result<Option<Arc<Identity>>, ExternalError> {
        if self.bearer.is_empty() && self.pocketbase.is_empty() {
            return Ok(None);
        }
        let Some(unverified) = unverified_claims(token) else {
            return Ok(None);
        };
        let issuer = unverified.get("iss").and_then(Value::as_str);
        if let Some(source) = self
            .bearer
            .iter()
            .find(|b| Some(b.config.issuer.as_str()) == issuer)
        {
            let key = credential_key(&[&source.config.id, token]);
            if let Some(cached) = self.cached(&key) {
                return cached.map(Some);
            }
            let now = self.clock.now();
            let expect = jwt::Expect {
                issuer: &source.config.issuer,
                audiences: &source.config.audiences,
                algorithms: &source.config.allowed_algorithms,
                now,
            };
            let claims = jwt::verify(token, &source.keys, &expect).await?;
            let identity_source = IdentitySource {
                kind: "bearer",
                id: &source.config.id,
                link_by_email: source.config.link_by_email,
                trust_unverified_email: false,
                admin_groups: &[],
            };
            let (identity, user_id) = self
                .resolve(
                    &identity_source,
                    &source.config.issuer,
                    &claims,
                    &source.mapping,
                )
                .await?;
            self.remember(
                key,
                Ok(identity.clone()),
                user_id,
                trust_until(&claims, now.0),
            );
            return Ok(Some(identity));
        }
        if !PocketBase::looks_like_ours(&unverified) {
            return Ok(None);
        }
        for (pocketbase, link_by_email) in &self.pocketbase {
            let key = credential_key(&[&pocketbase.id, token]);
            if let Some(cached) = self.cached(&key) {
                return cached.map(Some);
            }
            let now = self.clock.now();
            let introspected = match pocketbase.introspect(token, &unverified, now).await {
                Ok(found) => found,
                Err(ExternalError::Rejected(reason)) => {
                    let until = now.0 + pocketbase::REFUSAL_TTL.as_secs() as i64;
                    self.remember(key, Err(reason.clone()), String::new(), until);
                    continue;
                }
                Err(other) => return Err(other),
            };
            let identity_source = IdentitySource {
                kind: "pocketbase",
                id: &pocketbase.id,
                link_by_email: *link_by_email,
                trust_unverified_email: false,
                admin_groups: &[],
            };
            let (identity, user_id) = self
                .resolve(
                    &identity_source,
                    &pocketbase.issuer,
                    &introspected.claims,
                    &Preset::Generic.defaults(),
                )
                .await?;
            self.remember(key, Ok(identity.clone()), user_id, introspected.until);
            return Ok(Some(identity));
        }
        Err(ExternalError::Rejected(
            "no configured PocketBase accepts this token".into(),
        ))
    }

    fn remember(
        &self,
        key: [u8; 32],
        identity: Result<Arc<Identity>, String>,
        user_id: String,
        until: i64,
    ) {
        self.resolved.insert(
            key,
            Arc::new(Resolved {
                identity,
                user_id,
                until,
            }),
        );
    }

    async fn resolve(
        &self,
        source: &IdentitySource<'_>,
        issuer: &str,
        claims: &Value,
        mapping: &ClaimMapping,
    ) -> Result<(Arc<Identity>, String), ExternalError> {
        let mapped = map_claims(claims, mapping)
            .map_err(|e| ExternalError::Rejected(format!("the identity cannot be mapped: {e}")))?;
        let (user, _) = self
            .directory
            .resolve_identity(source, issuer, &mapped)
            .await?;
        Ok((Arc::new(user.identity()), user.id))
    }
}

impl Outer {
    /// The claims this proxy vouches for in `value` (its header), once checked.
    async fn verified_claims(
        &self,
        value: &str,
        headers: &HeaderMap,
        now: Timestamp,
    ) -> Result<Value, ExternalError> {
        let c = &self.config;
        let extra =
            |name: &Option<String>| header_text(headers, name.as_deref().unwrap_or_default());
        match &self.check {
            OuterCheck::Header => Ok(serde_json::json!({
                "sub": value,
                "preferred_username": value,
                "email": extra(&c.email_header),
                "email_verified": true,
                "name": extra(&c.name_header),
                "groups": extra(&c.groups_header)
                    .map(|g| g.split(',').map(str::trim).filter(|g| !g.is_empty()).collect::<Vec<_>>())
                    .unwrap_or_default(),
            })),
            OuterCheck::Alb(keys) => keys.verify(value, c.signer.as_deref(), now).await,
            OuterCheck::Jwt {
                keys,
                issuer,
                audience,
                algorithms,
            } => {
                let expect = jwt::Expect {
                    issuer,
                    audiences: std::slice::from_ref(audience),
                    algorithms,
                    now,
                };
                jwt::verify(value, keys, &expect).await
            }
        }
    }
}

fn outer_source(t: &TrustedIdentityConfig, http: &reqwest::Client) -> Outer {
    let jwks = |url: String| JwksCache::new(url, http.clone(), KEY_REFETCH);
    let audience = t.audience.clone().unwrap_or_default();
    let (header, check) = match t.kind {
        TrustedIdentityKind::Header => (
            t.user_header.clone().unwrap_or_default(),
            OuterCheck::Header,
        ),
        TrustedIdentityKind::AwsAlb => {
            let base = t.keys_url.clone().unwrap_or_else(|| {
                format!(
                    "https://public-keys.auth.elb.{}.amazonaws.com",
                    t.region.as_deref().unwrap_or_default()
                )
            });
            (
                "x-amzn-oidc-data".to_owned(),
                OuterCheck::Alb(AlbKeys::new(base, http.clone())),
            )
        }
        TrustedIdentityKind::CloudflareAccess => {
            let team = t.team_domain.clone().unwrap_or_default();
            let issuer = format!("https://{team}");
            let keys = t
                .keys_url
                .clone()
                .unwrap_or_else(|| format!("{issuer}/cdn-cgi/access/certs"));
            (
                "cf-access-jwt-assertion".to_owned(),
                OuterCheck::Jwt {
                    keys: jwks(keys),
                    issuer,
                    audience,
                    algorithms: vec!["RS256".into()],
                },
            )
        }
        TrustedIdentityKind::GoogleIap => {
            let keys = t
                .keys_url
                .clone()
                .unwrap_or_else(|| "https://www.gstatic.com/iap/verify/public_key-jwk".into());
            (
                "x-goog-iap-jwt-assertion".to_owned(),
                OuterCheck::Jwt {
                    keys: jwks(keys),
                    issuer: "https://cloud.google.com/iap".into(),
                    audience,
                    algorithms: vec!["ES256".into()],
                },
            )
        }
    };
    Outer {
        config: t.clone(),
        header: header.to_ascii_lowercase(),
        check,
    }
}

/// Trust a verified credential until its expiry, and at most a minute.
fn trust_until(claims: &Value, now: i64) -> i64 {
    let cap = now + MAX_TRUST_SECS;
    claims
        .get("exp")
        .and_then(Value::as_i64)
        .map_or(cap, |exp| exp.min(cap))
}

fn allowed(list: &[String], identity: &Identity) -> bool {
    list.iter().any(|entry| {
        entry.eq_ignore_ascii_case(&identity.username)
            || identity
                .email
                .as_deref()
                .is_some_and(|e| entry.eq_ignore_ascii_case(e))
    })
}

/// The claims of a JWT, read without any check, to decide who should verify it.
fn unverified_claims(token: &str) -> Option<Value> {
    let mut parts = token.split('.');
    let (_, Some(payload), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let bytes = base64::Engine::decode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        payload.trim_end_matches('='),
    )
    .ok()?;
    serde_json::from_slice(&bytes).ok()
}
