//! The one-time setup link that lets the first person create the admin account.
//!
//! The token lives only in memory and is printed at start-up while no admin exists. Whoever holds
//! the link (the operator reading the logs) creates the admin; nobody becomes admin by merely
//! being the first visitor.

use std::sync::Mutex;

use crate::secret::{constant_time_eq, random_token, token_hash};

#[derive(Default)]
pub struct SetupToken {
    hash: Mutex<Option<String>>,
}

impl SetupToken {
    /// Issues a new token, replacing any earlier one, and returns it.
    pub fn issue(&self) -> String {
        let token = random_token();
        *self.hash.lock().unwrap_or_else(|p| p.into_inner()) = Some(token_hash(&token));
        token
    }

    pub fn is_open(&self) -> bool {
        self.hash
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    pub fn matches(&self, candidate: &str) -> bool {
        let guard = self.hash.lock().unwrap_or_else(|p| p.into_inner());
        guard
            .as_deref()
            .is_some_and(|hash| constant_time_eq(hash.as_bytes(), token_hash(candidate).as_bytes()))
    }

    /// Closes setup for good (the admin exists).
    pub fn close(&self) {
        *self.hash.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_works_until_closed() {
        let setup = SetupToken::default();
        assert!(!setup.matches(""));
        let token = setup.issue();
        assert!(setup.matches(&token));
        assert!(!setup.matches("guess"));
        setup.close();
        assert!(!setup.matches(&token));
        assert!(!setup.is_open());
    }
}
