//! A provider's signing keys. Fetched on first use, refetched when a token names an unknown `kid`
//! (key rotation) — but at most once per `min_refetch`, so tokens with forged `kid`s cannot make
//! Portcullis flood the provider.

use std::time::Duration;

use jsonwebtoken::jwk::{Jwk, JwkSet};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::OidcError;

pub struct JwksCache {
    uri: String,
    http: reqwest::Client,
    min_refetch: Duration,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    keys: Option<JwkSet>,
    fetched_at: Option<Instant>,
}

impl JwksCache {
    pub fn new(uri: String, http: reqwest::Client, min_refetch: Duration) -> Self {
        JwksCache {
            uri,
            http,
            min_refetch,
            state: Mutex::new(State::default()),
        }
    }

    /// The key for `kid` (or the only key when the token names none).
    pub async fn key(&self, kid: Option<&str>) -> Result<Jwk, OidcError> {
        let mut state = self.state.lock().await;
        if let Some(key) = state.keys.as_ref().and_then(|set| find(set, kid)) {
            return Ok(key);
        }
        let may_fetch = state
            .fetched_at
            .is_none_or(|at| at.elapsed() >= self.min_refetch);
        if !may_fetch {
            return Err(OidcError::Rejected(format!(
                "the token is signed with an unknown key {kid:?} (keys were refreshed moments ago)"
            )));
        }
        state.fetched_at = Some(Instant::now());
        let set = self.fetch().await?;
        let found = find(&set, kid);
        state.keys = Some(set);
        found.ok_or_else(|| OidcError::Rejected(format!("the provider publishes no key {kid:?}")))
    }

    /// Fetches the key set now (for `doctor --live`) and returns how many keys it has.
    pub async fn probe(&self) -> Result<usize, OidcError> {
        let set = self.fetch().await?;
        let count = set.keys.len();
        let mut state = self.state.lock().await;
        state.keys = Some(set);
        state.fetched_at = Some(Instant::now());
        Ok(count)
    }

    pub fn uri(&self) -> &str {
        &self.uri
    }

    async fn fetch(&self) -> Result<JwkSet, OidcError> {
        let response =
            self.http.get(&self.uri).send().await.map_err(|e| {
                OidcError::Unavailable(format!("fetching keys from {}: {e}", self.uri))
            })?;
        if !response.status().is_success() {
            return Err(OidcError::Unavailable(format!(
                "{} answered {}",
                self.uri,
                response.status()
            )));
        }
        response
            .json::<JwkSet>()
            .await
            .map_err(|e| OidcError::Unavailable(format!("{} is not a JWK set: {e}", self.uri)))
    }
}

fn find(set: &JwkSet, kid: Option<&str>) -> Option<Jwk> {
    match kid {
        Some(kid) => set.find(kid).cloned(),
        None if set.keys.len() == 1 => set.keys.first().cloned(),
        None => None,
    }
}
