//! Sign-in flows through a provider, kept server-side.
//!
//! Each flow has its own `state`, `nonce` and PKCE verifier, so several tabs can sign in at once.
//! A flow is bound to the browser that started it (a random cookie whose hash the flow records),
//! expires after `MAX_AGE`, and completes exactly once: a replayed callback finds it completed.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use portcullis_core::{Clock, Timestamp};
use portcullis_store::{AuthFlow, Store, StoreError};
use sha2::{Digest, Sha256};

use crate::secret::{constant_time_eq, random_token, token_hash};

/// How long a sign-in may take at the provider.
pub const MAX_AGE: Duration = Duration::from_secs(600);
/// Sign-ins one browser may have in progress at once.
pub const MAX_OPEN_PER_BROWSER: u64 = 20;

/// A flow ready to send to the provider.
pub struct StartedFlow {
    pub state: String,
    pub nonce: String,
    pub challenge: String,
}

#[derive(Debug)]
pub enum FlowOutcome {
    /// The flow is valid and now completed: go on with the code exchange.
    Fresh(AuthFlow),
    /// This flow was already completed (a reload or replayed callback).
    AlreadyCompleted {
        return_to: String,
    },
    Unknown,
    Expired,
    /// The callback arrived in a different browser than the one that started the flow.
    WrongBrowser,
}

#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    #[error(
        "too many sign-ins are in progress in this browser; finish or close some and try again"
    )]
    TooMany,
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct FlowManager {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
}

/// The S256 PKCE challenge for a verifier (RFC 7636 §4.2).
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

impl FlowManager {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        FlowManager { store, clock }
    }

    pub async fn start(
        &self,
        provider: &str,
        return_to: &str,
        binding: &str,
    ) -> Result<StartedFlow, FlowError> {
        let now = self.clock.now();
        let binding_hash = token_hash(binding);
        let since = Timestamp(now.0 - secs(MAX_AGE));
        if self.store.count_flows(&binding_hash, since).await? >= MAX_OPEN_PER_BROWSER {
            return Err(FlowError::TooMany);
        }
        let (state, nonce, verifier) = (random_token(), random_token(), random_token());
        let flow = AuthFlow {
            state_hash: token_hash(&state),
            provider: provider.to_owned(),
            binding_hash,
            nonce: nonce.clone(),
            verifier: verifier.clone(),
            return_to: return_to.to_owned(),
            created_at: now,
            completed_at: None,
        };
        self.store.insert_flow(&flow).await?;
        // Old flows are pruned as new ones start; no separate sweeper needed.
        self.store
            .delete_flows_before(Timestamp(now.0 - 2 * secs(MAX_AGE)))
            .await?;
        Ok(StartedFlow {
            state,
            nonce,
            challenge: pkce_challenge(&verifier),
        })
    }

    /// Checks a callback's `state` against the browser's binding cookie and completes the flow.
    pub async fn finish(
        &self,
        state: &str,
        binding: Option<&str>,
    ) -> Result<FlowOutcome, StoreError> {
        let state_hash = token_hash(state);
        let Some(flow) = self.store.flow(&state_hash).await? else {
            return Ok(FlowOutcome::Unknown);
        };
        let bound = binding.is_some_and(|b| {
            constant_time_eq(token_hash(b).as_bytes(), flow.binding_hash.as_bytes())
        });
        if !bound {
            return Ok(FlowOutcome::WrongBrowser);
        }
        if flow.completed_at.is_some() {
            return Ok(FlowOutcome::AlreadyCompleted {
                return_to: flow.return_to,
            });
        }
        if self.clock.now().0 > flow.created_at.0 + secs(MAX_AGE) {
            return Ok(FlowOutcome::Expired);
        }
        if !self
            .store
            .complete_flow(&state_hash, self.clock.now())
            .await?
        {
            return Ok(FlowOutcome::AlreadyCompleted {
                return_to: flow.return_to,
            });
        }
        Ok(FlowOutcome::Fresh(flow))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_core::ManualClock;
    use portcullis_store::SqlStore;

    #[test]
    fn pkce_matches_rfc7636_appendix_b() {
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[tokio::test]
    async fn flows_complete_once_in_the_browser_that_started_them() {
        let store: Arc<dyn Store> = Arc::new(SqlStore::throwaway().await.unwrap());
        let clock = ManualClock::at(Timestamp(1_000_000));
        let flows = FlowManager::new(store, Arc::new(clock.clone()));
        let a = flows.start("idp", "/a", "browser-1").await.unwrap();
        let b = flows.start("idp", "/b", "browser-1").await.unwrap();
        assert!(matches!(
            flows.finish(&a.state, Some("browser-2")).await.unwrap(),
            FlowOutcome::WrongBrowser
        ));
        assert!(matches!(
            flows.finish(&a.state, None).await.unwrap(),
            FlowOutcome::WrongBrowser
        ));
        assert!(
            matches!(flows.finish(&b.state, Some("browser-1")).await.unwrap(), FlowOutcome::Fresh(f) if f.return_to == "/b")
        );
        assert!(
            matches!(flows.finish(&a.state, Some("browser-1")).await.unwrap(), FlowOutcome::Fresh(f) if f.return_to == "/a")
        );
        assert!(matches!(
            flows.finish(&a.state, Some("browser-1")).await.unwrap(),
            FlowOutcome::AlreadyCompleted { return_to } if return_to == "/a"
        ));
        assert!(matches!(
            flows.finish("forged", Some("browser-1")).await.unwrap(),
            FlowOutcome::Unknown
        ));
        let late = flows.start("idp", "/c", "browser-1").await.unwrap();
        clock.advance(MAX_AGE + Duration::from_secs(1));
        assert!(matches!(
            flows.finish(&late.state, Some("browser-1")).await.unwrap(),
            FlowOutcome::Expired
        ));
    }

    #[tokio::test]
    async fn open_flows_per_browser_are_bounded() {
        let store: Arc<dyn Store> = Arc::new(SqlStore::throwaway().await.unwrap());
        let flows = FlowManager::new(store, Arc::new(ManualClock::at(Timestamp(1_000_000))));
        for _ in 0..MAX_OPEN_PER_BROWSER {
            flows.start("idp", "/", "b").await.unwrap();
        }
        assert!(matches!(
            flows.start("idp", "/", "b").await,
            Err(FlowError::TooMany)
        ));
        assert!(flows.start("idp", "/", "another-browser").await.is_ok());
    }
}
