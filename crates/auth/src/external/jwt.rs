//! Verifying a JWT from another issuer against its published keys: the algorithm allow-list,
//! the signature, `iss`, the audience (`aud`, or `client_id` for Cognito access tokens) and the
//! time claims, against the injected clock.

use std::str::FromStr;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use portcullis_core::Timestamp;
use serde_json::Value;

use super::ExternalError;
use crate::oidc::jwks::JwksCache;

/// Clock skew tolerated between Portcullis and the issuer.
pub const LEEWAY_SECS: i64 = 60;

pub struct Expect<'a> {
    pub issuer: &'a str,
    pub audiences: &'a [String],
    pub algorithms: &'a [String],
    pub now: Timestamp,
}

pub async fn verify(
    token: &str,
    keys: &JwksCache,
    expect: &Expect<'_>,
) -> Result<Value, ExternalError> {
    let header = jsonwebtoken::decode_header(token)
        .map_err(|e| ExternalError::Rejected(format!("the token is malformed: {e}")))?;
    if !expect
        .algorithms
        .iter()
        .any(|a| Algorithm::from_str(a).ok() == Some(header.alg))
    {
        return Err(ExternalError::Rejected(format!(
            "the token is signed with {:?}, which is not on this issuer's allow-list",
            header.alg
        )));
    }
    let jwk = keys.key(header.kid.as_deref()).await?;
    let key = DecodingKey::from_jwk(&jwk)
        .map_err(|e| ExternalError::Rejected(format!("the issuer's key cannot be used: {e}")))?;
    let mut validation = Validation::new(header.alg);
    validation.set_issuer(&[expect.issuer]);
    validation.set_required_spec_claims(&["iss", "exp", "sub"]);
    // Audience and time are checked below (Cognito access tokens carry `client_id`, not `aud`;
    // time follows the injected clock).
    validation.validate_aud = false;
    validation.validate_exp = false;
    validation.validate_nbf = false;
    let claims = jsonwebtoken::decode::<Value>(token, &key, &validation)
        .map(|data| data.claims)
        .map_err(|e| ExternalError::Rejected(format!("the token failed verification: {e}")))?;
    check_audience(&claims, expect.audiences)?;
    check_times(&claims, expect.now)?;
    Ok(claims)
}

pub fn check_audience(claims: &Value, accepted: &[String]) -> Result<(), ExternalError> {
    let mut presented: Vec<&str> = match claims.get("aud") {
        Some(Value::String(a)) => vec![a.as_str()],
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    presented.extend(claims.get("client_id").and_then(Value::as_str));
    if presented.iter().any(|a| accepted.iter().any(|ok| ok == a)) {
        Ok(())
    } else {
        Err(ExternalError::Rejected(format!(
            "the token is for {presented:?}, not for an accepted audience"
        )))
    }
}

pub fn check_times(claims: &Value, now: Timestamp) -> Result<(), ExternalError> {
    let exp = claims
        .get("exp")
        .and_then(Value::as_i64)
        .ok_or_else(|| ExternalError::Rejected("the token has no expiry".into()))?;
    if now.0 > exp + LEEWAY_SECS {
        return Err(ExternalError::Rejected("the token has expired".into()));
    }
    if let Some(nbf) = claims.get("nbf").and_then(Value::as_i64)
        && now.0 + LEEWAY_SECS < nbf
    {
        return Err(ExternalError::Rejected("the token is not valid yet".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audiences_match_aud_or_cognito_client_id() {
        let ok = vec!["app".to_owned()];
        assert!(check_audience(&serde_json::json!({"aud": "app"}), &ok).is_ok());
        assert!(check_audience(&serde_json::json!({"aud": ["x", "app"]}), &ok).is_ok());
        assert!(check_audience(&serde_json::json!({"client_id": "app"}), &ok).is_ok());
        assert!(check_audience(&serde_json::json!({"aud": "other"}), &ok).is_err());
        assert!(check_audience(&serde_json::json!({}), &ok).is_err());
    }

    #[test]
    fn expiry_and_not_before_allow_a_minute_of_skew() {
        let claims = serde_json::json!({"exp": 1000, "nbf": 900});
        assert!(check_times(&claims, Timestamp(1059)).is_ok());
        assert!(check_times(&claims, Timestamp(1061)).is_err());
        assert!(check_times(&claims, Timestamp(839)).is_err());
        assert!(check_times(&serde_json::json!({}), Timestamp(0)).is_err());
    }
}
