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

pub const MIN_PASSWORD_LEN: usize = 8;
const MAX_PASSWORD_LEN: usize = 1024;

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

/// What is wrong with a new password, if anything.
pub fn check_new_password(password: &str) -> Result<(), String> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(format!(
            "a password needs at least {MIN_PASSWORD_LEN} characters"
        ));
    }
    if password.len() > MAX_PASSWORD_LEN {
        return Err(format!("a password has at most {MAX_PASSWORD_LEN} bytes"));
    }
    Ok(())
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
        assert!(check_new_password("short").is_err());
        assert!(check_new_password("long enough").is_ok());
    }
}
