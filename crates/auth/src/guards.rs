//! Stream guards: a cancellation token per credential (a session's id hash, an external
//! identity's user id). Every stream opened with the credential watches its token; ending the
//! credential cancels it, which closes them all.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use tokio_util::sync::CancellationToken;

#[derive(Default)]
pub struct StreamGuards(Mutex<HashMap<String, CancellationToken>>);

impl StreamGuards {
    /// The token of `key`, made on first use.
    pub fn token(&self, key: &str) -> CancellationToken {
        let mut tokens = self.lock();
        if let Some(token) = tokens.get(key) {
            return token.clone();
        }
        tokens.entry(key.to_owned()).or_default().clone()
    }

    /// Closes every stream opened under `key`; a later `token(key)` starts afresh.
    pub fn end(&self, key: &str) {
        if let Some(token) = self.lock().remove(key) {
            token.cancel();
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, CancellationToken>> {
        // The map holds no invariant a panic could break halfway.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ending_a_key_cancels_its_tokens_only() {
        let guards = StreamGuards::default();
        let a = guards.token("a");
        let a_again = guards.token("a");
        let b = guards.token("b");
        guards.end("a");
        assert!(a.is_cancelled() && a_again.is_cancelled());
        assert!(!b.is_cancelled());
        assert!(
            !guards.token("a").is_cancelled(),
            "a new token after the end"
        );
    }
}
