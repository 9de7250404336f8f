//! Signed identity assertions: a short-lived ES256 JWT an app can verify instead of trusting a
//! bare identity header.
//!
//! The signing keys live in the store (private keys sealed with the token key), so every process
//! signs with the same key and rotation on one is seen by all through the change feed. Retired
//! keys stay published at `/.well-known/jwks.json` until their last assertion has expired.
//!
//! Signing costs far more than the rest of the request path, so an assertion is reused for the
//! same credential, app and audience until it is close to expiry, and re-signed at once when the
//! identity behind it changes.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use http::HeaderValue;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use portcullis_core::{Clock, Identity, Timestamp};
use portcullis_store::{Store, StoreError, StoredSigningKey};
use sha2::{Digest, Sha256};

use crate::seal::Sealer;

/// The longest an assertion may live.
pub const MAX_LIFETIME: Duration = Duration::from_secs(300);
/// An assertion is re-signed when less than this is left of its life.
const REUSE_MARGIN: i64 = 60;

#[derive(Debug, thiserror::Error)]
pub enum AssertionError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("signing key {kid} cannot be read: {reason} (was the token key changed?)")]
    Unreadable { kid: String, reason: String },
}

/// One key, ready to sign, with its public half as a JWK.
struct Key {
    kid: String,
    signing: SigningKey,
    jwk: serde_json::Value,
    retired_at: Option<Timestamp>,
}

#[derive(Default)]
struct KeySet {
    /// Newest first; the first one not retired signs.
    keys: Vec<Key>,
}

impl KeySet {
    fn current(&self) -> Option<&Key> {
        self.keys.iter().find(|k| k.retired_at.is_none())
    }
}

/// A signed assertion kept for reuse.
struct Issued {
    identity: Arc<Identity>,
    sid: String,
    app: String,
    audience: String,
    kid: String,
    /// Ready to send: cloning a header value shares its bytes, and it is validated once.
    token: HeaderValue,
    expires_at: i64,
}

pub struct Assertions {
    store: Arc<dyn Store>,
    sealer: Arc<Sealer>,
    clock: Arc<dyn Clock>,
    issuer: String,
    lifetime: Duration,
    keys: RwLock<Arc<KeySet>>,
    issued: moka::sync::Cache<u64, Arc<Issued>>,
}

fn public_jwk(kid: &str, key: &SigningKey) -> serde_json::Value {
    let point = key.verifying_key().to_encoded_point(false);
    let coordinate = |c: Option<&p256::FieldBytes>| c.map(|b| B64.encode(b)).unwrap_or_default();
    serde_json::json!({
        "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": kid,
        "x": coordinate(point.x()), "y": coordinate(point.y()),
    })
}

/// The RFC 7638 thumbprint of a P-256 public key: a stable, content-derived key id.
fn thumbprint(key: &SigningKey) -> String {
    let jwk = public_jwk("", key);
    let canonical = format!(
        r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
        jwk["x"].as_str().unwrap_or_default(),
        jwk["y"].as_str().unwrap_or_default()
    );
    B64.encode(Sha256::digest(canonical.as_bytes()))
}

fn cache_key(sid: &str, app: &str, audience: &str) -> u64 {
    let mut h = DefaultHasher::new();
    (sid, app, audience).hash(&mut h);
    h.finish()
}

impl Assertions {
    /// Loads the signing keys, creating the first one if there is none.
    pub async fn load(
        store: Arc<dyn Store>,
        sealer: Arc<Sealer>,
        clock: Arc<dyn Clock>,
        issuer: String,
        lifetime: Duration,
    ) -> Result<Self, AssertionError> {
        let assertions = Assertions {
            store,
            sealer,
            clock,
            issuer,
            lifetime: lifetime.min(MAX_LIFETIME),
            keys: RwLock::new(Arc::new(KeySet::default())),
            issued: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(MAX_LIFETIME)
                .build(),
        };
        assertions.reload().await?;
        if assertions.key_set().current().is_none() {
            assertions.rotate().await?;
        }
        Ok(assertions)
    }

    fn key_set(&self) -> Arc<KeySet> {
        match self.keys.read() {
            Ok(keys) => keys.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Reads the keys from the store again (after a rotation anywhere).
    pub async fn reload(&self) -> Result<(), AssertionError> {
        let stored = self.store.signing_keys().await?;
        let keys = stored
            .into_iter()
            .map(|k| self.unseal(k))
            .collect::<Result<Vec<_>, _>>()?;
        let set = Arc::new(KeySet { keys });
        match self.keys.write() {
            Ok(mut keys) => *keys = set,
            Err(poisoned) => *poisoned.into_inner() = set,
        }
        Ok(())
    }

    fn unseal(&self, stored: StoredSigningKey) -> Result<Key, AssertionError> {
        let unreadable = |reason: String| AssertionError::Unreadable {
            kid: stored.kid.clone(),
            reason,
        };
        let encoded = self
            .sealer
            .open(&stored.private_key_enc)
            .map_err(|e| unreadable(e.to_string()))?;
        let bytes = B64.decode(encoded).map_err(|e| unreadable(e.to_string()))?;
        let signing = SigningKey::from_slice(&bytes).map_err(|e| unreadable(e.to_string()))?;
        Ok(Key {
            jwk: public_jwk(&stored.kid, &signing),
            kid: stored.kid,
            signing,
            retired_at: stored.retired_at,
        })
    }

    /// Makes a new signing key current; the old one stays published until its assertions expire.
    /// Returns the new key id.
    pub async fn rotate(&self) -> Result<String, AssertionError> {
        let signing = SigningKey::random(&mut rand::rngs::OsRng);
        let kid = thumbprint(&signing);
        let stored = StoredSigningKey {
            kid: kid.clone(),
            private_key_enc: self.sealer.seal(&B64.encode(signing.to_bytes())),
            created_at: self.clock.now(),
            retired_at: None,
        };
        self.store.rotate_signing_key(&stored).await?;
        self.reload().await?;
        Ok(kid)
    }

    /// The published keys: the current one and those retired less than an assertion's lifetime
    /// (plus a minute of clock skew) ago.
    pub fn jwks(&self) -> serde_json::Value {
        let now = self.clock.now().0;
        let window = i64::try_from(MAX_LIFETIME.as_secs()).unwrap_or(300) + REUSE_MARGIN;
        let set = self.key_set();
        let keys: Vec<&serde_json::Value> = set
            .keys
            .iter()
            .filter(|k| k.retired_at.is_none_or(|at| now - at.0 < window))
            .map(|k| &k.jwk)
            .collect();
        serde_json::json!({ "keys": keys })
    }

    /// An assertion of `identity` for `app`, addressed to `audience` (the app's origin). `sid`
    /// names the credential (session or key) so that each gets its own. `None` only when no key
    /// can sign, which `load` rules out.
    pub fn assertion(
        &self,
        identity: &Arc<Identity>,
        sid: &str,
        app: &str,
        audience: &str,
    ) -> Option<HeaderValue> {
        let now = self.clock.now().0;
        let keys = self.key_set();
        let key = keys.current()?;
        let slot = cache_key(sid, app, audience);
        if let Some(issued) = self.issued.get(&slot)
            && Arc::ptr_eq(&issued.identity, identity)
            && issued.kid == key.kid
            && issued.expires_at - now > REUSE_MARGIN
            && issued.sid == sid
            && issued.app == app
            && issued.audience == audience
        {
            return Some(issued.token.clone());
        }
        let expires_at = now + i64::try_from(self.lifetime.as_secs()).unwrap_or(300);
        // A JWS in compact form is base64url and dots: always a valid header value.
        let token =
            HeaderValue::from_str(&self.sign(key, identity, sid, audience, now, expires_at))
                .ok()?;
        self.issued.insert(
            slot,
            Arc::new(Issued {
                identity: identity.clone(),
                sid: sid.to_owned(),
                app: app.to_owned(),
                audience: audience.to_owned(),
                kid: key.kid.clone(),
                token: token.clone(),
                expires_at,
            }),
        );
        Some(token)
    }

    /// The claims an assertion carries (what whoami shows, unsigned).
    pub fn claims(
        &self,
        identity: &Identity,
        sid: &str,
        audience: &str,
        iat: i64,
        exp: i64,
    ) -> serde_json::Value {
        serde_json::json!({
            "iss": self.issuer,
            "aud": audience,
            "sub": identity.subject,
            "preferred_username": identity.username,
            "email": identity.email,
            "name": identity.display_name,
            "groups": identity.groups,
            "role": identity.role.as_str(),
            "sid": sid,
            "iat": iat,
            "nbf": iat,
            "exp": exp,
        })
    }

    /// How long each assertion is valid.
    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    fn sign(
        &self,
        key: &Key,
        identity: &Identity,
        sid: &str,
        audience: &str,
        iat: i64,
        exp: i64,
    ) -> String {
        let header = serde_json::json!({ "alg": "ES256", "typ": "JWT", "kid": key.kid });
        let claims = self.claims(identity, sid, audience, iat, exp);
        let signing_input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let signature: Signature = key.signing.sign(signing_input.as_bytes());
        format!("{signing_input}.{}", B64.encode(signature.to_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::VerifyingKey;
    use p256::ecdsa::signature::Verifier;
    use portcullis_core::{ManualClock, Role};
    use portcullis_store::SqlStore;

    fn identity(groups: &[&str]) -> Arc<Identity> {
        Arc::new(Identity {
            subject: "6f1c1f1e-8d3a-4c59-9f39-0a2f5e9a7c11".into(),
            username: "alice".into(),
            email: Some("alice@example.com".parse().unwrap()),
            display_name: "Alice A".into(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            role: Role::User,
        })
    }

    async fn assertions(clock: Arc<ManualClock>) -> Assertions {
        let store: Arc<dyn Store> = Arc::new(SqlStore::throwaway().await.unwrap());
        Assertions::load(
            store,
            Arc::new(Sealer::from_base64(&Sealer::generate_key()).unwrap()),
            clock,
            "https://auth.example.com".into(),
            Duration::from_secs(300),
        )
        .await
        .unwrap()
    }

    fn verify(token: &HeaderValue, jwks: &serde_json::Value) -> serde_json::Value {
        let (input, signature) = token.to_str().unwrap().rsplit_once('.').unwrap();
        let header: serde_json::Value =
            serde_json::from_slice(&B64.decode(input.split('.').next().unwrap()).unwrap()).unwrap();
        let jwk = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kid"] == header["kid"])
            .expect("the kid is published");
        let mut point = vec![4u8];
        point.extend(B64.decode(jwk["x"].as_str().unwrap()).unwrap());
        point.extend(B64.decode(jwk["y"].as_str().unwrap()).unwrap());
        let key = VerifyingKey::from_sec1_bytes(&point).unwrap();
        let signature = Signature::from_slice(&B64.decode(signature).unwrap()).unwrap();
        key.verify(input.as_bytes(), &signature).unwrap();
        serde_json::from_slice(&B64.decode(input.split('.').nth(1).unwrap()).unwrap()).unwrap()
    }

    #[tokio::test]
    async fn assertions_verify_and_are_reused_until_near_expiry() {
        let clock = Arc::new(ManualClock::at(Timestamp(1_000_000)));
        let a = assertions(clock.clone()).await;
        let alice = identity(&["staff"]);
        let first = a
            .assertion(&alice, "s1", "chat", "https://chat.example.com")
            .unwrap();
        let claims = verify(&first, &a.jwks());
        assert_eq!(claims["sub"], alice.subject);
        assert_eq!(claims["aud"], "https://chat.example.com");
        assert_eq!(claims["iss"], "https://auth.example.com");
        assert_eq!(
            claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
            300
        );
        assert_eq!(claims["groups"], serde_json::json!(["staff"]));

        let again = a
            .assertion(&alice, "s1", "chat", "https://chat.example.com")
            .unwrap();
        assert_eq!(
            first.as_bytes().as_ptr(),
            again.as_bytes().as_ptr(),
            "reused, not re-signed"
        );
        let other_app = a
            .assertion(&alice, "s1", "wiki", "https://wiki.example.com")
            .unwrap();
        assert_ne!(first, other_app);

        clock.advance(Duration::from_secs(241));
        let renewed = a
            .assertion(&alice, "s1", "chat", "https://chat.example.com")
            .unwrap();
        assert_ne!(first, renewed, "re-signed within a minute of expiry");

        let changed = identity(&["staff", "ml"]);
        let fresh = a
            .assertion(&changed, "s1", "chat", "https://chat.example.com")
            .unwrap();
        assert_eq!(
            verify(&fresh, &a.jwks())["groups"],
            serde_json::json!(["staff", "ml"])
        );
    }

    #[tokio::test]
    async fn rotation_keeps_the_old_key_published_until_its_assertions_expire() {
        let clock = Arc::new(ManualClock::at(Timestamp(1_000_000)));
        let a = assertions(clock.clone()).await;
        let alice = identity(&[]);
        let before = a.assertion(&alice, "s1", "chat", "https://c").unwrap();
        let old_kid = a.key_set().current().unwrap().kid.clone();
        let new_kid = a.rotate().await.unwrap();
        assert_ne!(old_kid, new_kid);
        let after = a.assertion(&alice, "s1", "chat", "https://c").unwrap();
        assert_ne!(before, after, "signed with the new key at once");
        verify(&before, &a.jwks());
        verify(&after, &a.jwks());
        clock.advance(MAX_LIFETIME + Duration::from_secs(61));
        let published = a.jwks();
        assert_eq!(published["keys"].as_array().unwrap().len(), 1);
        assert_eq!(published["keys"][0]["kid"], new_kid.as_str());
    }
}
