//! ID token verification (OpenID Connect Core §3.1.3.7).
//!
//! The signature is checked with the provider's key for the token's `kid`, only for algorithms on
//! the provider's allow-list (never `none`, never HMAC). Time claims are checked against the
//! injected clock, not the system time, so expiry is testable.

use std::str::FromStr;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use portcullis_core::Timestamp;
use serde_json::Value;

use super::OidcError;
use super::jwks::JwksCache;

/// Clock skew tolerated between Portcullis and the provider.
const LEEWAY_SECS: i64 = 60;

pub struct Expectations<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    pub nonce: &'a str,
    pub allowed_algorithms: &'a [String],
    pub now: Timestamp,
}

fn reject(reason: impl Into<String>) -> OidcError {
    OidcError::Rejected(reason.into())
}

pub async fn verify(
    token: &str,
    keys: &JwksCache,
    expect: &Expectations<'_>,
) -> Result<Value, OidcError> {
    let header = jsonwebtoken::decode_header(token).map_err(|e| {
        reject(format!(
            "the ID token is malformed or uses a forbidden algorithm: {e}"
        ))
    })?;
    let alg_name = format!("{:?}", header.alg);
    if !expect
        .allowed_algorithms
        .iter()
        .any(|a| Algorithm::from_str(a).ok() == Some(header.alg))
    {
        return Err(reject(format!(
            "the ID token is signed with {alg_name}, which this provider is not allowed to use"
        )));
    }
    let jwk = keys.key(header.kid.as_deref()).await?;
    let key = DecodingKey::from_jwk(&jwk)
        .map_err(|e| reject(format!("the provider's key cannot be used: {e}")))?;
    let mut validation = Validation::new(header.alg);
    validation.set_audience(&[expect.client_id]);
    validation.set_issuer(&[expect.issuer]);
    validation.set_required_spec_claims(&["iss", "aud", "exp", "sub"]);
    // Time is checked below against the injected clock.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    let data = jsonwebtoken::decode::<Value>(token, &key, &validation)
        .map_err(|e| reject(format!("the ID token failed verification: {e}")))?;
    let claims = data.claims;
    check_times(&claims, expect.now)?;
    check_azp(&claims, expect.client_id)?;
    if claims.get("nonce").and_then(Value::as_str) != Some(expect.nonce) {
        return Err(reject(
            "the ID token's nonce does not match this sign-in (a replayed or injected token)",
        ));
    }
    Ok(claims)
}

fn check_times(claims: &Value, now: Timestamp) -> Result<(), OidcError> {
    let exp = claims
        .get("exp")
        .and_then(Value::as_i64)
        .ok_or_else(|| reject("the ID token has no exp"))?;
    if now.0 > exp + LEEWAY_SECS {
        return Err(reject("the ID token has expired"));
    }
    let iat = claims
        .get("iat")
        .and_then(Value::as_i64)
        .ok_or_else(|| reject("the ID token has no iat"))?;
    if iat > now.0 + LEEWAY_SECS {
        return Err(reject(
            "the ID token was issued in the future (check the clocks)",
        ));
    }
    Ok(())
}

/// With several audiences, `azp` must name us (Core §3.1.3.7 items 4–5).
fn check_azp(claims: &Value, client_id: &str) -> Result<(), OidcError> {
    let several = claims
        .get("aud")
        .and_then(Value::as_array)
        .is_some_and(|a| a.len() > 1);
    match claims.get("azp").and_then(Value::as_str) {
        Some(azp) if azp != client_id => {
            Err(reject("the ID token was issued to another client (azp)"))
        }
        None if several => Err(reject("the ID token names several audiences but no azp")),
        _ => Ok(()),
    }
}
