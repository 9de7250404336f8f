//! AWS ALB's `x-amzn-oidc-data`: an ES256 JWT signed by the load balancer. Its key is not in a
//! JWK set: the PEM public key for the token's `kid` is fetched from the region's endpoint and
//! kept (ALB keys never change under a `kid`). ALB encodes the segments with base64 padding,
//! which strict JWT libraries refuse, so the token is checked here directly: the signature over
//! the segments exactly as sent, `signer` (the ALB's ARN) and the expiry.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;
use portcullis_core::Timestamp;
use serde_json::Value;

use super::ExternalError;
use super::jwt::LEEWAY_SECS;

pub struct AlbKeys {
    base_url: String,
    http: reqwest::Client,
    keys: moka::sync::Cache<String, Arc<VerifyingKey>>,
}

/// ALB's segments may carry padding and the standard alphabet; both spellings are accepted.
fn segment(text: &str) -> Result<Vec<u8>, ExternalError> {
    URL_SAFE_NO_PAD
        .decode(
            text.trim_end_matches('=')
                .replace('+', "-")
                .replace('/', "_"),
        )
        .map_err(|_| ExternalError::Rejected("the ALB token is not base64".into()))
}

fn json(text: &str) -> Result<Value, ExternalError> {
    serde_json::from_slice(&segment(text)?)
        .map_err(|_| ExternalError::Rejected("the ALB token is not JSON".into()))
}

impl AlbKeys {
    pub fn new(base_url: String, http: reqwest::Client) -> Self {
        AlbKeys {
            base_url: base_url.trim_end_matches('/').to_owned(),
            http,
            keys: moka::sync::Cache::builder().max_capacity(64).build(),
        }
    }

    async fn key(&self, kid: &str) -> Result<Arc<VerifyingKey>, ExternalError> {
        // A kid is a UUID; anything else must not become part of a URL.
        if kid.is_empty() || !kid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(ExternalError::Rejected(format!(
                "the ALB key id {kid:?} is not valid"
            )));
        }
        if let Some(key) = self.keys.get(kid) {
            return Ok(key);
        }
        let url = format!("{}/{kid}", self.base_url);
        let response = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| ExternalError::Unavailable(format!("fetching {url}: {e}")))?;
        if !response.status().is_success() {
            return Err(ExternalError::Rejected(format!(
                "no ALB key {kid} ({url} answered {})",
                response.status()
            )));
        }
        let pem = response
            .text()
            .await
            .map_err(|e| ExternalError::Unavailable(format!("reading {url}: {e}")))?;
        let key = VerifyingKey::from_public_key_pem(pem.trim()).map_err(|e| {
            ExternalError::Rejected(format!("the ALB key {kid} is not a P-256 key: {e}"))
        })?;
        let key = Arc::new(key);
        self.keys.insert(kid.to_owned(), key.clone());
        Ok(key)
    }

    /// Verifies the token and returns its claims.
    pub async fn verify(
        &self,
        token: &str,
        signer: Option<&str>,
        now: Timestamp,
    ) -> Result<Value, ExternalError> {
        let mut parts = token.trim().split('.');
        let (Some(head), Some(body), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(ExternalError::Rejected("the ALB token is not a JWT".into()));
        };
        let header = json(head)?;
        if header.get("alg").and_then(Value::as_str) != Some("ES256") {
            return Err(ExternalError::Rejected("the ALB token is not ES256".into()));
        }
        if let Some(expected) = signer
            && header.get("signer").and_then(Value::as_str) != Some(expected)
        {
            return Err(ExternalError::Rejected(
                "the ALB token was signed by another load balancer".into(),
            ));
        }
        let kid = header
            .get("kid")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let key = self.key(kid).await?;
        let signature = Signature::from_slice(&segment(signature)?)
            .map_err(|_| ExternalError::Rejected("the ALB signature is malformed".into()))?;
        key.verify(format!("{head}.{body}").as_bytes(), &signature)
            .map_err(|_| ExternalError::Rejected("the ALB signature does not verify".into()))?;
        let claims = json(body)?;
        let exp = header
            .get("exp")
            .or_else(|| claims.get("exp"))
            .and_then(Value::as_i64)
            .ok_or_else(|| ExternalError::Rejected("the ALB token has no expiry".into()))?;
        if now.0 > exp + LEEWAY_SECS {
            return Err(ExternalError::Rejected("the ALB token has expired".into()));
        }
        Ok(claims)
    }
}
