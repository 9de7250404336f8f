//! API keys for scripts, agents and CLIs.
//!
//! A key is `pcs_` followed by 32 random bytes (base64url): recognisable in logs and secret
//! scanners, and distinguishable from any other bearer token, which passes to the app untouched.
//! Only its SHA-256 is stored. Every key that can be used is held in memory with its owner's
//! identity, so checking a key costs a hash and a map lookup, never a database read; the ring is
//! rebuilt whenever the change feed reports a key or user change.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, RwLock};

use crate::guards::StreamGuard;
use portcullis_core::user::UserStatus;
use portcullis_core::{Clock, Identity, Timestamp};
use portcullis_store::{Store, StoreError};

use crate::audit::{Audit, Entry};
use crate::secret::{looks_like_token, random_token, token_hash};

pub const KEY_PREFIX: &str = "pcs_";
/// `last_used_at` is written back at most this often per key.
const TOUCH_INTERVAL: i64 = 60;

/// A new key and the hash to store. The key itself is shown once and kept nowhere.
pub fn generate() -> (String, String) {
    let key = format!("{KEY_PREFIX}{}", random_token());
    let hash = token_hash(&key);
    (key, hash)
}

/// A key that can be used right now.
#[derive(Debug)]
pub struct LiveKey {
    pub id: String,
    /// The credential's name in assertions (`key:<id>`).
    pub sid: String,
    pub name: String,
    pub owner_id: String,
    /// App names the key may reach; empty: every app.
    pub allowed_apps: Vec<String>,
    pub expires_at: Option<Timestamp>,
    pub identity: Arc<Identity>,
    /// Cancelled when the key stops working, closing streams opened with it.
    pub cancel: StreamGuard,
    last_touched: AtomicI64,
    /// Never used before: the first use is written to the audit trail.
    unused: AtomicBool,
}

impl LiveKey {
    pub fn allows(&self, app: &str) -> bool {
        self.allowed_apps.is_empty() || self.allowed_apps.iter().any(|a| a == app)
    }
}

/// What a bearer token or `X-API-Key` value turned out to be.
#[derive(Debug)]
pub enum KeyCheck {
    /// Not a Portcullis key: leave it to the app.
    NotAKey,
    Valid(Arc<LiveKey>),
    /// A Portcullis key that does not work: unknown, revoked, expired, or its owner disabled.
    Refused(&'static str),
}

pub struct KeyRing {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    audit: Audit,
    by_hash: RwLock<HashMap<String, Arc<LiveKey>>>,
}

impl KeyRing {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        KeyRing {
            audit: Audit::new(store.clone(), clock.clone()),
            store,
            clock,
            by_hash: RwLock::new(HashMap::new()),
        }
    }

    /// Rebuilds the ring from the store. Keys that are gone (revoked, owner disabled) have their
    /// streams cancelled.
    pub async fn reload(&self) -> Result<(), StoreError> {
        let stored = self.store.active_keys().await?;
        let mut owners = HashMap::new();
        for key in &stored {
            if !owners.contains_key(&key.owner_id) {
                let owner = self.store.user_by_id(&key.owner_id).await?;
                owners.insert(key.owner_id.clone(), owner);
            }
        }
        let previous = self
            .by_hash
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut next = HashMap::new();
        for key in stored {
            let Some(Some(owner)) = owners.get(&key.owner_id) else {
                continue;
            };
            if owner.status != UserStatus::Active {
                continue;
            }
            let kept = previous.get(&key.hash);
            let live = LiveKey {
                cancel: kept.map(|k| k.cancel.clone()).unwrap_or_default(),
                last_touched: AtomicI64::new(
                    kept.map(|k| k.last_touched.load(Ordering::Relaxed))
                        .unwrap_or(0),
                ),
                sid: format!("key:{}", key.id),
                id: key.id,
                name: key.name,
                owner_id: key.owner_id,
                allowed_apps: key.allowed_apps,
                expires_at: key.expires_at,
                identity: Arc::new(owner.identity()),
                unused: AtomicBool::new(
                    key.last_used_at.is_none()
                        && kept.is_none_or(|k| k.unused.load(Ordering::Relaxed)),
                ),
            };
            next.insert(key.hash, Arc::new(live));
        }
        for (hash, gone) in &previous {
            if !next.contains_key(hash) {
                gone.cancel.cancel();
            }
        }
        *self.by_hash.write().unwrap_or_else(|p| p.into_inner()) = next;
        Ok(())
    }

    pub fn check(&self, token: &str) -> KeyCheck {
        let Some(secret) = token.strip_prefix(KEY_PREFIX) else {
            return KeyCheck::NotAKey;
        };
        if !looks_like_token(secret) {
            return KeyCheck::Refused("malformed key");
        }
        let found = self
            .by_hash
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&token_hash(token))
            .cloned();
        let Some(key) = found else {
            return KeyCheck::Refused("unknown or revoked key");
        };
        let now = self.clock.now();
        if key.expires_at.is_some_and(|at| now >= at) {
            return KeyCheck::Refused("expired key");
        }
        self.touch(&key, now);
        KeyCheck::Valid(key)
    }

    /// Records use off the request path: `last_used_at` at most once a minute per key, and the
    /// first use ever in the audit trail.
    fn touch(&self, key: &Arc<LiveKey>, now: Timestamp) {
        if key.unused.swap(false, Ordering::Relaxed) {
            let (audit, store, key) = (self.audit.clone(), self.store.clone(), key.clone());
            key.last_touched.store(now.0, Ordering::Relaxed);
            tokio::spawn(async move {
                let _ = store.touch_key(&key.id, now).await;
                let entry = Entry {
                    action: "key_used_first",
                    success: true,
                    actor: Some(&key.owner_id),
                    subject: Some(&key.id),
                    reason: Some(&key.name),
                    client_ip: None,
                };
                audit.record(entry).await;
            });
            return;
        }
        let last = key.last_touched.load(Ordering::Relaxed);
        if now.0 - last < TOUCH_INTERVAL
            || key
                .last_touched
                .compare_exchange(last, now.0, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let (store, id) = (self.store.clone(), key.id.clone());
        tokio::spawn(async move {
            if let Err(e) = store.touch_key(&id, now).await {
                tracing::warn!(error = %e, "could not record key use");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_core::{ManualClock, Role};
    use portcullis_store::{NewUser, SqlStore, StoredKey};

    #[tokio::test]
    async fn keys_work_until_revoked_expired_or_their_owner_is_disabled() {
        let store: Arc<dyn Store> = Arc::new(SqlStore::throwaway().await.unwrap());
        let clock = ManualClock::at(Timestamp(1000));
        let owner = NewUser {
            id: "u".into(),
            username: "bot-owner".into(),
            email: None,
            display_name: None,
            role: Role::User,
            status: UserStatus::Active,
            password_hash: None,
        };
        store.create_user(owner, clock.now()).await.unwrap();
        let (key, hash) = generate();
        assert!(key.starts_with("pcs_") && key.len() == 4 + 43);
        let stored = StoredKey {
            id: "k".into(),
            hash,
            name: "ci".into(),
            owner_id: "u".into(),
            allowed_apps: vec!["chat".into()],
            expires_at: Some(Timestamp(2000)),
            created_at: clock.now(),
            last_used_at: None,
            revoked_at: None,
        };
        store.create_key(&stored).await.unwrap();
        let ring = KeyRing::new(store.clone(), Arc::new(clock.clone()));
        ring.reload().await.unwrap();

        assert!(matches!(ring.check("Bearer-ish-token"), KeyCheck::NotAKey));
        assert!(matches!(
            ring.check("eyJhbGciOi.jwt.token"),
            KeyCheck::NotAKey
        ));
        assert!(matches!(
            ring.check("pcs_short"),
            KeyCheck::Refused("malformed key")
        ));
        let KeyCheck::Valid(live) = ring.check(&key) else {
            panic!("valid key refused")
        };
        assert!(live.allows("chat") && !live.allows("admin"));
        assert_eq!(live.identity.username, "bot-owner");

        store
            .set_status("u", UserStatus::Disabled, clock.now())
            .await
            .unwrap();
        ring.reload().await.unwrap();
        assert!(matches!(ring.check(&key), KeyCheck::Refused(_)));
        assert!(
            live.cancel.is_cancelled(),
            "streams opened with the key are closed"
        );

        store
            .set_status("u", UserStatus::Active, clock.now())
            .await
            .unwrap();
        ring.reload().await.unwrap();
        assert!(matches!(ring.check(&key), KeyCheck::Valid(_)));
        clock.advance(std::time::Duration::from_secs(1000));
        assert!(matches!(ring.check(&key), KeyCheck::Refused("expired key")));
        store.revoke_key("k", clock.now()).await.unwrap();
        ring.reload().await.unwrap();
        assert!(matches!(
            ring.check(&key),
            KeyCheck::Refused("unknown or revoked key")
        ));
    }
}
