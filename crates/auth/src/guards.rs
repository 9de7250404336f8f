//! Stream guards: a cancellation token per credential (a session's id hash, an external
//! identity's user id, an API key). Every stream opened with the credential watches its token;
//! ending the credential cancels it, which closes them all.
//!
//! The registry holds each token only weakly. Whatever still needs it holds a [`StreamGuard`]:
//! the cached session, an open stream or tunnel. Once the last of them is gone (the session
//! expired out of the cache and its streams closed), nothing can be left to cancel, and the
//! entry is dropped the next time the registry grows; so a long-running process keeps no state
//! for the sessions it has forgotten.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use tokio_util::sync::{
    CancellationToken, WaitForCancellationFuture, WaitForCancellationFutureOwned,
};

/// What a stream holds to learn that the credential that opened it has ended.
#[derive(Clone, Debug, Default)]
pub struct StreamGuard(Arc<CancellationToken>);

impl StreamGuard {
    /// Resolves when the credential ends.
    pub fn cancelled(&self) -> WaitForCancellationFuture<'_> {
        self.0.cancelled()
    }

    /// Resolves when the credential ends; for futures that must own what they wait on. The
    /// holder keeps the guard itself too, so the registry still finds it.
    pub fn cancelled_owned(&self) -> WaitForCancellationFutureOwned {
        CancellationToken::clone(&self.0).cancelled_owned()
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.is_cancelled()
    }

    /// Ends the streams watching this guard (an API key that is revoked).
    pub fn cancel(&self) {
        self.0.cancel();
    }
}

#[derive(Default)]
pub struct StreamGuards(Mutex<Registry>);

#[derive(Default)]
struct Registry {
    tokens: HashMap<String, Weak<CancellationToken>>,
    /// Dead entries are swept once the map has doubled since the last sweep: amortised O(1).
    swept_at: usize,
}

impl StreamGuards {
    /// The guard of `key`, made on first use (or again after every holder let go).
    pub fn guard(&self, key: &str) -> StreamGuard {
        let mut registry = self.lock();
        if let Some(token) = registry.tokens.get(key).and_then(Weak::upgrade) {
            return StreamGuard(token);
        }
        let token = Arc::new(CancellationToken::new());
        registry
            .tokens
            .insert(key.to_owned(), Arc::downgrade(&token));
        if registry.tokens.len() > 2 * registry.swept_at.max(512) {
            registry.tokens.retain(|_, weak| weak.strong_count() > 0);
            registry.swept_at = registry.tokens.len();
        }
        StreamGuard(token)
    }

    /// Closes every stream opened under `key`; a later `guard(key)` starts afresh.
    pub fn end(&self, key: &str) {
        let removed = self.lock().tokens.remove(key);
        if let Some(token) = removed.and_then(|weak| weak.upgrade()) {
            token.cancel();
        }
    }

    /// Entries whose guard something still holds (for tests and gauges).
    pub fn live(&self) -> usize {
        let mut registry = self.lock();
        registry.tokens.retain(|_, weak| weak.strong_count() > 0);
        registry.swept_at = registry.tokens.len();
        registry.tokens.len()
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        // The map holds no invariant a panic could break halfway.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ending_a_key_cancels_its_guards_only() {
        let guards = StreamGuards::default();
        let a = guards.guard("a");
        let a_again = guards.guard("a");
        let b = guards.guard("b");
        guards.end("a");
        assert!(a.is_cancelled() && a_again.is_cancelled());
        assert!(!b.is_cancelled());
        assert!(
            !guards.guard("a").is_cancelled(),
            "a new guard after the end"
        );
    }

    #[test]
    fn nothing_is_kept_for_guards_nobody_holds() {
        let guards = StreamGuards::default();
        let held = guards.guard("held");
        for i in 0..10_000 {
            drop(guards.guard(&format!("session-{i}")));
        }
        assert!(guards.lock().tokens.len() < 2_000, "swept as it grows");
        assert_eq!(guards.live(), 1);
        guards.end("held");
        assert!(held.is_cancelled());
        assert_eq!(guards.live(), 0);
    }
}
