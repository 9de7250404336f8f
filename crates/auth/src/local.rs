//! Sign-in with a local username (or email) and password.

use std::sync::Arc;
use std::time::Duration;

use portcullis_core::Failure;
use portcullis_core::user::{User, UserStatus};
use portcullis_store::{Store, StoreError};

use crate::directory::LoginRefusal;
use crate::ldap::{LdapError, LdapLogin};
use crate::password::{Lane, PasswordError, PasswordHasher, PasswordPolicy};
use crate::throttle::{AttemptKeys, LoginThrottle};

/// Why a sign-in failed. Callers show every `Rejected` the same way, so the response never says
/// whether the account exists; the reason is for the audit trail only.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("sign-in rejected: {reason}")]
    Rejected { reason: &'static str },
    /// Not tried: the account or address is locked. `first` says whether this is the first
    /// attempt refused in the lock (the only one worth an audit entry).
    #[error("too many attempts; retry in {} s", retry_after.as_secs())]
    Throttled { retry_after: Duration, first: bool },
    /// The LDAP directory could not be asked.
    #[error("{0}")]
    Unavailable(String),
    /// Not tried: too many passwords are being checked right now (see [`PasswordError::Busy`]).
    #[error("too many sign-ins are being checked; retry in {} s", retry_after.as_secs())]
    Busy { retry_after: Duration },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A hashing refusal as a sign-in refusal.
fn busy(e: PasswordError) -> LoginError {
    match e {
        PasswordError::Busy { retry_after } => LoginError::Busy { retry_after },
        other => LoginError::Unavailable(other.to_string()),
    }
}

pub struct LocalLogin {
    store: Arc<dyn Store>,
    hasher: PasswordHasher,
    policy: PasswordPolicy,
    throttle: LoginThrottle,
    /// Accounts without a local password are checked against the directory, when there is one.
    ldap: Option<Arc<LdapLogin>>,
}

impl LocalLogin {
    pub fn new(store: Arc<dyn Store>, hasher: PasswordHasher, throttle: LoginThrottle) -> Self {
        LocalLogin {
            store,
            hasher,
            policy: PasswordPolicy::default(),
            throttle,
            ldap: None,
        }
    }

    /// What new passwords must be (default: [`PasswordPolicy::default`]).
    pub fn with_policy(mut self, policy: PasswordPolicy) -> Self {
        self.policy = policy;
        self
    }

    pub fn policy(&self) -> &PasswordPolicy {
        &self.policy
    }

    /// The hash of a new password for the account known by `names` (username, email), after
    /// the policy's check; a refusal is a bad request that says what to choose instead.
    pub async fn hash_new(&self, password: &str, names: &[&str]) -> Result<String, Failure> {
        self.policy
            .check(password, names)
            .map_err(Failure::bad_request)?;
        self.hasher
            .hash(password)
            .await
            .map_err(|e| Failure::internal(e.to_string()))
    }

    /// Also signs in accounts from an LDAP directory (those without a local password), with the
    /// same form, the same throttling and the same generic error.
    pub fn with_ldap(mut self, ldap: Option<Arc<LdapLogin>>) -> Self {
        self.ldap = ldap;
        self
    }

    pub fn hasher(&self) -> &PasswordHasher {
        &self.hasher
    }

    pub fn throttle(&self) -> &LoginThrottle {
        &self.throttle
    }

    /// Checks a sign-in. `known_user`: the account the browser's device cookie vouches for
    /// ([`crate::devices`]); a check for that account may use the hashing slot kept for it.
    pub async fn authenticate(
        &self,
        login: &str,
        password: &str,
        client_ip: Option<&str>,
        known_user: Option<&str>,
    ) -> Result<User, LoginError> {
        let keys = AttemptKeys::new(login, client_ip);
        if let Err(refused) = self.throttle.check(&keys).await {
            return Err(LoginError::Throttled {
                retry_after: refused.retry_after,
                first: refused.first,
            });
        }
        let outcome = self
            .check_credentials(login.trim(), password, known_user)
            .await;
        match &outcome {
            Ok(_) => self.throttle.record_success(&keys).await,
            Err(LoginError::Rejected { .. }) => self.throttle.record_failure(&keys).await,
            Err(_) => {}
        }
        outcome
    }

    /// Checks that `password` is the current local password of `user`, throttled like a
    /// sign-in: a session left open must not become a way to guess the password.
    pub async fn check_current(
        &self,
        user: &User,
        password: &str,
        client_ip: Option<&str>,
    ) -> Result<(), LoginError> {
        let keys = AttemptKeys::new(&user.username, client_ip);
        if let Err(refused) = self.throttle.check(&keys).await {
            return Err(LoginError::Throttled {
                retry_after: refused.retry_after,
                first: refused.first,
            });
        }
        let hash = self.store.password_hash(&user.id).await?;
        if self
            .hasher
            .verify(hash.as_deref(), password)
            .await
            .map_err(busy)?
        {
            self.throttle.record_success(&keys).await;
            Ok(())
        } else {
            self.throttle.record_failure(&keys).await;
            Err(LoginError::Rejected {
                reason: "wrong_current_password",
            })
        }
    }

    async fn check_credentials(
        &self,
        login: &str,
        password: &str,
        known_user: Option<&str>,
    ) -> Result<User, LoginError> {
        if login.is_empty() || password.is_empty() {
            return Err(LoginError::Rejected {
                reason: "empty_credentials",
            });
        }
        let found = self.store.user_with_password(login).await?;
        let hash = found.as_ref().and_then(|(_, hash)| hash.as_deref());
        if let (None, Some(ldap)) = (hash, &self.ldap) {
            return ldap
                .authenticate(login, password)
                .await
                .map_err(|e| match e {
                    LdapError::Rejected(reason) => LoginError::Rejected { reason },
                    LdapError::Unavailable(message) => LoginError::Unavailable(message),
                    LdapError::Refused(LoginRefusal::Store(e)) => LoginError::Store(e),
                    LdapError::Refused(LoginRefusal::NotActive) => LoginError::Rejected {
                        reason: "account_not_active",
                    },
                    LdapError::Refused(_) => LoginError::Rejected {
                        reason: "ldap_identity_refused",
                    },
                });
        }
        // Always spend one verification, even for unknown accounts (timing must not tell).
        let lane = match (&found, known_user) {
            (Some((user, _)), Some(known)) if user.id == known => Lane::KnownDevice,
            _ => Lane::Anyone,
        };
        let password_ok = self
            .hasher
            .verify_in(lane, hash, password)
            .await
            .map_err(busy)?;
        match found {
            None => Err(LoginError::Rejected {
                reason: "unknown_account",
            }),
            Some((_, None)) => Err(LoginError::Rejected {
                reason: "no_local_password",
            }),
            Some(_) if !password_ok => Err(LoginError::Rejected {
                reason: "wrong_password",
            }),
            Some((user, _)) if user.status != UserStatus::Active => Err(LoginError::Rejected {
                reason: "account_not_active",
            }),
            Some((user, _)) => Ok(user),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_core::{Clock, ManualClock, Role, Timestamp};
    use portcullis_store::{NewUser, SqlStore};

    #[tokio::test]
    async fn generic_rejections_and_throttling() {
        let store: Arc<dyn Store> = Arc::new(SqlStore::throwaway().await.unwrap());
        let hasher = PasswordHasher::new(2).unwrap();
        let clock = ManualClock::at(Timestamp(0));
        for (id, status) in [
            ("alice", UserStatus::Active),
            ("dave", UserStatus::Disabled),
        ] {
            let user = NewUser {
                id: id.into(),
                username: id.into(),
                email: format!("{id}@example.com").parse().ok(),
                display_name: None,
                role: Role::User,
                status,
                password_hash: Some(hasher.hash("password-1").await.unwrap()),
            };
            store.create_user(user, clock.now()).await.unwrap();
        }
        let throttle = LoginThrottle::new(
            Arc::new(clock.clone()),
            3,
            Duration::from_secs(10),
            Duration::from_secs(60),
        );
        let login = LocalLogin::new(store, hasher, throttle);

        let ok = login
            .authenticate("ALICE@example.com", "password-1", Some("1.1.1.1"), None)
            .await;
        assert_eq!(ok.unwrap().id, "alice");
        for (who, password, reason) in [
            ("alice", "nope", "wrong_password"),
            ("nobody", "password-1", "unknown_account"),
            ("dave", "password-1", "account_not_active"),
            ("alice", "", "empty_credentials"),
        ] {
            match login
                .authenticate(who, password, Some("2.2.2.2"), None)
                .await
            {
                Err(LoginError::Rejected { reason: r }) => assert_eq!(r, reason, "{who}"),
                other => panic!("{who}: {other:?}"),
            }
        }
        for _ in 0..3 {
            let _ = login
                .authenticate("alice", "nope", Some("3.3.3.3"), None)
                .await;
        }
        let throttled = login
            .authenticate("alice", "password-1", Some("3.3.3.3"), None)
            .await;
        assert!(
            matches!(throttled, Err(LoginError::Throttled { .. })),
            "{throttled:?}"
        );
        clock.advance(Duration::from_secs(60));
        assert!(
            login
                .authenticate("alice", "password-1", Some("3.3.3.3"), None)
                .await
                .is_ok()
        );
    }
}
