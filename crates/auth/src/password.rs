//! Argon2id password hashing with a bound on concurrent work.
//!
//! Each hash costs tens of milliseconds of CPU and ~19 MiB of memory by design, so an attacker
//! posting many sign-ins could otherwise exhaust the machine. A semaphore bounds how many run at
//! once; the rest wait their turn.

use std::sync::Arc;

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use tokio::sync::Semaphore;

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("password hashing was interrupted")]
    Interrupted,
}

#[derive(Clone)]
pub struct PasswordHasher {
    permits: Arc<Semaphore>,
    /// A real hash of a random password, verified against when an account does not exist so the
    /// response time does not reveal which accounts exist.
    decoy: Arc<String>,
}

/// The shortest password any configuration may allow (NIST SP 800-63B's minimum).
pub const MIN_PASSWORD_LEN: usize = 8;
/// Longer inputs are refused before hashing, so nobody can make a sign-in hash megabytes.
const MAX_PASSWORD_LEN: usize = 1024;

/// Common passwords of eight characters or more, lower-cased (see data/README.md).
const COMMON_PASSWORDS: &str = include_str!("../data/common-passwords.txt");

pub fn hash_blocking(password: &str) -> Result<String, PasswordError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

fn verify_blocking(hash: &str, password: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// What a new password must be (NIST SP 800-63B): long enough, not a well-known one, not the
/// account's own name — and no composition rules, which make passwords worse, not stronger.
#[derive(Clone, Debug)]
pub struct PasswordPolicy {
    min_length: usize,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        PasswordPolicy {
            min_length: MIN_PASSWORD_LEN,
        }
    }
}

impl PasswordPolicy {
    /// A policy with a longer minimum (never shorter than [`MIN_PASSWORD_LEN`]).
    pub fn with_min_length(min_length: usize) -> Self {
        PasswordPolicy {
            min_length: min_length.max(MIN_PASSWORD_LEN),
        }
    }

    pub fn min_length(&self) -> usize {
        self.min_length
    }

    /// What is wrong with `password` as a new password for the account known by `names`
    /// (username, email, display name), as a sentence the person can act on.
    pub fn check(&self, password: &str, names: &[&str]) -> Result<(), String> {
        if password.chars().count() < self.min_length {
            return Err(format!(
                "A password needs at least {} characters; a few unrelated words make a good one.",
                self.min_length
            ));
        }
        if password.len() > MAX_PASSWORD_LEN {
            return Err(format!("A password has at most {MAX_PASSWORD_LEN} bytes."));
        }
        let lower = password.to_lowercase();
        if is_common(&lower) {
            return Err(
                "That password is on the list of the most common ones, which attackers try first; choose another."
                    .into(),
            );
        }
        let personal = names.iter().any(|name| {
            let name = name.trim().to_lowercase();
            !name.is_empty()
                && (lower == name || name.split('@').next().is_some_and(|local| lower == local))
        });
        if personal {
            return Err("A password must not be your username or email address.".into());
        }
        Ok(())
    }
}

/// Whether the lower-cased `password` is in the bundled list.
fn is_common(lower: &str) -> bool {
    let mut lines = COMMON_PASSWORDS.lines();
    // The list is small (11,611 lines, 120 kB) and checked only when a password is chosen, so
    // walking it is fine; no table is kept in memory between checks.
    lines.any(|common| common == lower)
}

impl PasswordHasher {
    pub fn new(max_concurrent: usize) -> Result<Self, PasswordError> {
        let decoy = hash_blocking(&crate::secret::random_token())?;
        Ok(PasswordHasher {
            permits: Arc::new(Semaphore::new(max_concurrent.max(1))),
            decoy: Arc::new(decoy),
        })
    }

    pub async fn hash(&self, password: &str) -> Result<String, PasswordError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| PasswordError::Interrupted)?;
        let password = password.to_owned();
        tokio::task::spawn_blocking(move || hash_blocking(&password))
            .await
            .map_err(|_| PasswordError::Interrupted)?
    }

    /// Verifies `password` against `hash`; with no hash (unknown account, or an account without
    /// a password) it spends the same effort on the decoy and returns false.
    pub async fn verify(&self, hash: Option<&str>, password: &str) -> bool {
        if password.is_empty() || password.len() > MAX_PASSWORD_LEN {
            return false;
        }
        let Ok(_permit) = self.permits.acquire().await else {
            return false;
        };
        let (hash, real) = match hash {
            Some(h) => (h.to_owned(), true),
            None => (self.decoy.as_ref().clone(), false),
        };
        let password = password.to_owned();
        let matched = tokio::task::spawn_blocking(move || verify_blocking(&hash, &password))
            .await
            .unwrap_or(false);
        matched && real
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hash_then_verify() {
        let hasher = PasswordHasher::new(2).unwrap();
        let hash = hasher.hash("correct horse").await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(hasher.verify(Some(&hash), "correct horse").await);
        assert!(!hasher.verify(Some(&hash), "wrong horse").await);
        assert!(!hasher.verify(Some(&hash), "").await);
        assert!(!hasher.verify(None, "correct horse").await);
        assert!(!hasher.verify(Some("not a hash"), "correct horse").await);
    }

    #[test]
    fn new_password_rules() {
        let policy = PasswordPolicy::default();
        let names = ["alice", "Alice.Smith@example.com"];
        let refused = |p: &str| policy.check(p, &names).unwrap_err();
        assert!(refused("short").contains("at least 8"));
        assert!(refused(&"x".repeat(1025)).contains("at most"));
        for common in [
            "password",
            "PASSWORD1",
            "12345678",
            "Iloveyou",
            "qwertyuiop",
        ] {
            assert!(refused(common).contains("most common"), "{common}");
        }
        assert!(refused("alice.smith@example.com").contains("username or email"));
        assert!(refused("ALICE.SMITH").contains("username or email"));
        assert!(policy.check("correct horse battery", &names).is_ok());
        // Composition is not a rule: a long lower-case phrase is fine.
        assert!(policy.check("tulips in the rain", &names).is_ok());

        let longer = PasswordPolicy::with_min_length(12);
        assert!(
            longer
                .check("eleven char", &[])
                .unwrap_err()
                .contains("at least 12")
        );
        assert_eq!(
            PasswordPolicy::with_min_length(4).min_length(),
            MIN_PASSWORD_LEN
        );
    }
}
