//! PocketBase auth tokens, verified by asking PocketBase (`POST /api/collections/<c>/auth-refresh`
//! with the token): PocketBase signs its tokens with a secret only it knows. Answers are cached by
//! the SHA-256 of the token for at most a minute and never past the token's own expiry; refusals
//! are cached briefly, so a flood of bad tokens does not become a flood of requests to PocketBase.

use std::time::Duration;

use portcullis_core::Timestamp;
use serde_json::Value;

use super::ExternalError;

/// How long a refusal is remembered.
pub const REFUSAL_TTL: Duration = Duration::from_secs(10);
/// The longest an accepted token is trusted without asking again.
pub const ACCEPT_TTL: i64 = 60;

pub struct PocketBase {
    pub id: String,
    refresh_url: String,
    pub issuer: String,
    http: reqwest::Client,
}

/// A PocketBase user record, as claims for the identity mapping.
pub struct Introspected {
    pub claims: Value,
    /// Trust the answer until then (the token's `exp`, at most a minute away).
    pub until: i64,
}

impl PocketBase {
    pub fn new(id: &str, url: &str, collection: &str, http: reqwest::Client) -> Self {
        let base = url.trim_end_matches('/');
        PocketBase {
            id: id.to_owned(),
            refresh_url: format!("{base}/api/collections/{collection}/auth-refresh"),
            issuer: format!("pocketbase:{base}/{collection}"),
            http,
        }
    }

    /// Whether the token looks like one of this PocketBase's (a JWT with `type: auth`), read
    /// without verifying: only such tokens are sent to PocketBase.
    pub fn looks_like_ours(claims: &Value) -> bool {
        claims.get("type").and_then(Value::as_str) == Some("auth")
            && claims.get("collectionId").is_some()
    }

    pub async fn introspect(
        &self,
        token: &str,
        unverified: &Value,
        now: Timestamp,
    ) -> Result<Introspected, ExternalError> {
        let response = self
            .http
            .post(&self.refresh_url)
            .header(reqwest::header::AUTHORIZATION, token)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .map_err(|e| ExternalError::Unavailable(format!("asking PocketBase: {e}")))?;
        match response.status().as_u16() {
            200 => {}
            401 | 403 | 404 => {
                return Err(ExternalError::Rejected(
                    "PocketBase does not accept this token".into(),
                ));
            }
            other => {
                return Err(ExternalError::Unavailable(format!(
                    "PocketBase answered {other}"
                )));
            }
        }
        let body: Value = response.json().await.map_err(|e| {
            ExternalError::Unavailable(format!("PocketBase's answer is not JSON: {e}"))
        })?;
        let record = body
            .get("record")
            .filter(|r| r.get("id").and_then(Value::as_str).is_some())
            .ok_or_else(|| {
                ExternalError::Unavailable("PocketBase's answer has no record".into())
            })?;
        let text = |name: &str| {
            record
                .get(name)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        };
        let claims = serde_json::json!({
            "sub": text("id"),
            "email": text("email"),
            "email_verified": record.get("verified").and_then(Value::as_bool).unwrap_or(false),
            "name": text("name"),
            "preferred_username": text("username"),
        });
        let exp = unverified
            .get("exp")
            .and_then(Value::as_i64)
            .unwrap_or(now.0);
        Ok(Introspected {
            claims,
            until: exp.min(now.0 + ACCEPT_TTL),
        })
    }
}
