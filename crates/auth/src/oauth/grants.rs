//! Access tokens and the grants they are checked against, in memory.
//!
//! An access token is `pca_<grant id>.<expiry>.<tag>`: the tag (an HMAC under the token key,
//! which replicas share) makes it unforgeable, so checking one costs a MAC and a map lookup,
//! never a database read. What it may do is its grant's: every live grant is held here with its
//! user's identity, rebuilt whenever the change feed reports a grant or user change, so revoking
//! a grant or disabling its user ends every token of it (and the streams they opened) on every
//! replica within a poll. Nothing about an access token is stored.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use portcullis_core::user::UserStatus;
use portcullis_core::{Clock, Identity, Timestamp};
use portcullis_store::{Grant, Store, StoreError};

use crate::guards::StreamGuard;
use crate::seal::Sealer;
use crate::secret::constant_time_eq;

pub const ACCESS_TOKEN_PREFIX: &str = "pca_";
const TAG_LABEL: &str = "oauth access token v1";
/// `last_used_at` is written back at most this often per grant.
const TOUCH_INTERVAL: i64 = 60;

/// A grant whose tokens work right now.
#[derive(Debug)]
pub struct LiveGrant {
    pub id: String,
    /// The credential's name in assertions and logs (`grant:<id>`).
    pub sid: String,
    pub user_id: String,
    pub client_id: String,
    pub client_name: String,
    pub app: String,
    pub resource: String,
    pub scopes: Vec<String>,
    pub expires_at: Timestamp,
    pub identity: Arc<Identity>,
    /// Cancelled when the grant ends, closing streams opened with its tokens.
    pub cancel: StreamGuard,
    last_touched: AtomicI64,
}

impl LiveGrant {
    /// Whether the grant holds every scope in `needed`.
    pub fn has_scopes(&self, needed: &[String]) -> bool {
        needed.iter().all(|s| self.scopes.contains(s))
    }
}

/// What a bearer token turned out to be.
#[derive(Debug)]
pub enum GrantCheck {
    /// Not one of our access tokens.
    NotOurs,
    Valid(Arc<LiveGrant>),
    /// Ours, but it does not work: forged, expired, or its grant or user gone.
    Refused(&'static str),
}

pub struct GrantRing {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    sealer: Sealer,
    by_id: RwLock<HashMap<String, Arc<LiveGrant>>>,
    /// Grant ids of genuine tokens looked up in the store and not found: a revoked grant's
    /// tokens stay refused without a database read each time.
    gone: moka::sync::Cache<String, ()>,
}

impl GrantRing {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, sealer: Sealer) -> Self {
        GrantRing {
            store,
            clock,
            sealer,
            by_id: RwLock::new(HashMap::new()),
            gone: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(Duration::from_secs(60))
                .build(),
        }
    }

    /// Rebuilds the ring from the store; grants that are gone have their streams cancelled.
    pub async fn reload(&self) -> Result<(), StoreError> {
        let stored = self.store.live_grants(self.clock.now()).await?;
        let mut owners = HashMap::new();
        for grant in &stored {
            if !owners.contains_key(&grant.user_id) {
                let owner = self.store.user_by_id(&grant.user_id).await?;
                owners.insert(grant.user_id.clone(), owner);
            }
        }
        let previous = self.by_id.read().unwrap_or_else(|p| p.into_inner()).clone();
        let mut next = HashMap::new();
        for grant in stored {
            let Some(Some(owner)) = owners.get(&grant.user_id) else {
                continue;
            };
            if owner.status != UserStatus::Active {
                continue;
            }
            let kept = previous.get(&grant.id);
            let live = live(grant, Arc::new(owner.identity()), kept);
            next.insert(live.id.clone(), Arc::new(live));
        }
        for (id, gone) in &previous {
            if !next.contains_key(id) {
                gone.cancel.cancel();
            }
        }
        *self.by_id.write().unwrap_or_else(|p| p.into_inner()) = next;
        Ok(())
    }

    /// A new access token of `grant_id`, working for `lifetime`; with its lifetime in seconds.
    pub fn access_token(&self, grant_id: &str, lifetime: Duration) -> (String, u64) {
        let seconds = lifetime.as_secs();
        let expires = self.clock.now().0 + i64::try_from(seconds).unwrap_or(i64::MAX / 2);
        let body = format!("{grant_id}.{expires}");
        let tag = self.sealer.tag(TAG_LABEL, &body);
        (format!("{ACCESS_TOKEN_PREFIX}{body}.{tag}"), seconds)
    }

    /// Checks an access token: its tag and expiry, then its grant in memory. A genuine token
    /// whose grant this process has not loaded yet (made on another replica a moment ago) is
    /// looked up in the store once; nothing else reads the database.
    pub async fn check(&self, token: &str) -> GrantCheck {
        let Some(rest) = token.strip_prefix(ACCESS_TOKEN_PREFIX) else {
            return GrantCheck::NotOurs;
        };
        let Some((body, tag)) = rest.rsplit_once('.') else {
            return GrantCheck::Refused("malformed access token");
        };
        let Some((grant_id, expires)) = body.split_once('.') else {
            return GrantCheck::Refused("malformed access token");
        };
        if !constant_time_eq(self.sealer.tag(TAG_LABEL, body).as_bytes(), tag.as_bytes()) {
            return GrantCheck::Refused("access token not issued here");
        }
        let now = self.clock.now();
        if expires.parse::<i64>().map_or(true, |at| now.0 >= at) {
            return GrantCheck::Refused("expired access token");
        }
        let grant = match self.get(grant_id) {
            Some(grant) => grant,
            None => match self.load(grant_id).await {
                Some(grant) => grant,
                None => return GrantCheck::Refused("the grant was revoked or has ended"),
            },
        };
        if now >= grant.expires_at {
            return GrantCheck::Refused("the grant has ended");
        }
        self.touch(&grant, now);
        GrantCheck::Valid(grant)
    }

    /// A grant from the store, if it is live and its user active; remembered either way.
    async fn load(&self, id: &str) -> Option<Arc<LiveGrant>> {
        if self.gone.contains_key(id) {
            return None;
        }
        let found = match self.store.grant(id).await {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(error = %e, "could not look up a grant");
                return None;
            }
        };
        let owner = match &found {
            Some(grant) => self.store.user_by_id(&grant.user_id).await.ok().flatten(),
            None => None,
        };
        let (Some(grant), Some(owner)) = (found, owner) else {
            self.gone.insert(id.to_owned(), ());
            return None;
        };
        if owner.status != UserStatus::Active || self.clock.now() >= grant.expires_at {
            self.gone.insert(id.to_owned(), ());
            return None;
        }
        let live = Arc::new(live(grant, Arc::new(owner.identity()), None));
        self.by_id
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(live.id.clone())
            .or_insert(live.clone());
        Some(live)
    }

    /// The live grant with this id, if any.
    pub fn get(&self, id: &str) -> Option<Arc<LiveGrant>> {
        self.by_id
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// Records use off the request path, at most once a minute per grant.
    fn touch(&self, grant: &Arc<LiveGrant>, now: Timestamp) {
        let last = grant.last_touched.load(Ordering::Relaxed);
        if now.0 - last < TOUCH_INTERVAL
            || grant
                .last_touched
                .compare_exchange(last, now.0, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let (store, id) = (self.store.clone(), grant.id.clone());
        tokio::spawn(async move {
            if let Err(e) = store.touch_grant(&id, now).await {
                tracing::warn!(error = %e, "could not record a grant's use");
            }
        });
    }
}

fn live(grant: Grant, identity: Arc<Identity>, kept: Option<&Arc<LiveGrant>>) -> LiveGrant {
    LiveGrant {
        sid: format!("grant:{}", grant.id),
        cancel: kept.map(|k| k.cancel.clone()).unwrap_or_default(),
        last_touched: AtomicI64::new(
            kept.map(|k| k.last_touched.load(Ordering::Relaxed))
                .or(grant.last_used_at.map(|t| t.0))
                .unwrap_or(0),
        ),
        id: grant.id,
        user_id: grant.user_id,
        client_id: grant.client_id,
        client_name: grant.client_name,
        app: grant.app,
        resource: grant.resource,
        scopes: grant.scopes,
        expires_at: grant.expires_at,
        identity,
    }
}
