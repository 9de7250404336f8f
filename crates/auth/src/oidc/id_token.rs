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

/// Verifies the algorithm (allow-list), the signature, `iss` and `aud`; returns the claims.
async fn verified_claims(
    token: &str,
    keys: &JwksCache,
    expect: &Expectations<'_>,
    required: &[&str],
) -> Result<Value, OidcError> {
    let header = jsonwebtoken::decode_header(token).map_err(|e| {
        reject(format!(
            "the token is malformed or uses a forbidden algorithm: {e}"
        ))
    })?;
    let alg_name = format!("{:?}", header.alg);
    if !expect
        .allowed_algorithms
        .iter()
        .any(|a| Algorithm::from_str(a).ok() == Some(header.alg))
    {
        return Err(reject(format!(
            "the token is signed with {alg_name}, which this provider is not allowed to use"
        )));
    }
    let jwk = keys.key(header.kid.as_deref()).await?;
    let key = DecodingKey::from_jwk(&jwk)
        .map_err(|e| reject(format!("the provider's key cannot be used: {e}")))?;
    let mut validation = Validation::new(header.alg);
    validation.set_audience(&[expect.client_id]);
    validation.set_issuer(&[expect.issuer]);
    validation.set_required_spec_claims(required);
    // Time is checked by the callers against the injected clock.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .map(|data| data.claims)
        .map_err(|e| reject(format!("the token failed verification: {e}")))
}

/// Verifies an ID token (OpenID Connect Core §3.1.3.7).
pub async fn verify(
    token: &str,
    keys: &JwksCache,
    expect: &Expectations<'_>,
) -> Result<Value, OidcError> {
    let claims = verified_claims(token, keys, expect, &["iss", "aud", "exp", "sub"]).await?;
    check_times(&claims, expect.now)?;
    check_azp(&claims, expect.client_id)?;
    if claims.get("nonce").and_then(Value::as_str) != Some(expect.nonce) {
        return Err(reject(
            "the ID token's nonce does not match this sign-in (a replayed or injected token)",
        ));
    }
    Ok(claims)
}

/// Who a back-channel logout token signs out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogoutTarget {
    pub subject: Option<String>,
    pub sid: Option<String>,
}

const BACKCHANNEL_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// A logout token older than this is refused (a replay, or a badly wrong clock).
const LOGOUT_TOKEN_MAX_AGE: i64 = 300;

/// Verifies a back-channel logout token (OpenID Connect Back-Channel Logout 1.0 §2.6).
/// `expect.nonce` is ignored: a logout token must not carry one.
pub async fn verify_logout(
    token: &str,
    keys: &JwksCache,
    expect: &Expectations<'_>,
) -> Result<LogoutTarget, OidcError> {
    let claims = verified_claims(token, keys, expect, &["iss", "aud"]).await?;
    let iat = claims
        .get("iat")
        .and_then(Value::as_i64)
        .ok_or_else(|| reject("the logout token has no iat"))?;
    if iat < expect.now.0 - LOGOUT_TOKEN_MAX_AGE || iat > expect.now.0 + LEEWAY_SECS {
        return Err(reject("the logout token is too old or from the future"));
    }
    if let Some(exp) = claims.get("exp").and_then(Value::as_i64)
        && expect.now.0 > exp + LEEWAY_SECS
    {
        return Err(reject("the logout token has expired"));
    }
    let is_logout_event = claims
        .get("events")
        .and_then(|e| e.get(BACKCHANNEL_EVENT))
        .is_some_and(Value::is_object);
    if !is_logout_event {
        return Err(reject(
            "the token is not a back-channel logout token (events claim)",
        ));
    }
    if claims.get("nonce").is_some() {
        return Err(reject("a logout token must not carry a nonce"));
    }
    let text = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_owned);
    let target = LogoutTarget {
        subject: text("sub"),
        sid: text("sid"),
    };
    if target.subject.is_none() && target.sid.is_none() {
        return Err(reject("the logout token names neither sub nor sid"));
    }
    Ok(target)
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
