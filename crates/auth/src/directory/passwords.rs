//! Local passwords: changed by their owner, set by an admin, or recovered with a one-time reset
//! link; and the admin's reset of second factors. Every change is audited and ends the sessions
//! it should (a password that leaked must not leave the thief signed in).

use std::time::Duration;

use portcullis_core::Timestamp;
use portcullis_core::user::User;
use portcullis_store::{PasswordReset, ResetLink};

use super::{Directory, DirectoryError};
use crate::audit::Actor;
use crate::secret::{random_token, token_hash};

/// Which sessions a password change leaves.
#[derive(Clone, Copy, Debug)]
pub enum KeepSessions<'a> {
    /// The owner changed it in this browser: that session stays, every other one ends.
    This(&'a str),
    /// Set by someone else, or recovered with a link: every session ends.
    None,
}

/// The shortest and longest a reset link may work (the configuration's bounds too).
pub const RESET_LIFETIMES: (Duration, Duration) =
    (Duration::from_secs(300), Duration::from_secs(7 * 86_400));

/// A reset link just made: the token (shown or sent once, stored only hashed) and its expiry.
pub struct IssuedReset {
    pub token: String,
    pub expires_at: Timestamp,
}

impl Directory {
    /// Sets the password hash of `user` (`None` removes the password) and whether it must be
    /// changed at the next sign-in. Unused reset links of the user stop working. Audited as
    /// `password_changed` when the owner did it, `password_set` otherwise.
    pub async fn set_password(
        &self,
        user: &User,
        hash: Option<&str>,
        must_change: bool,
        keep: KeepSessions<'_>,
        actor: &Actor,
    ) -> Result<(), DirectoryError> {
        self.store
            .set_password(&user.id, hash, must_change, self.clock.now())
            .await?;
        let keep = match keep {
            KeepSessions::This(id_hash) => id_hash,
            KeepSessions::None => "",
        };
        self.store.delete_sessions_except(&user.id, keep).await?;
        let action = if actor.id == user.id {
            "password_changed"
        } else {
            "password_set"
        };
        let reason = match (hash, must_change) {
            (None, _) => Some("removed"),
            (Some(_), true) => Some("must change at next sign-in"),
            (Some(_), false) => None,
        };
        self.audited(action, actor, &user.username, reason).await
    }

    /// Removes every second factor and recovery code of `user`: an admin's answer to a lost
    /// phone (audited `factors_reset`). Returns how many factors went.
    pub async fn reset_factors(&self, user: &User, actor: &Actor) -> Result<u64, DirectoryError> {
        let removed = self.store.delete_factors(&user.id).await?;
        let reason = format!("{removed} removed");
        self.audited("factors_reset", actor, &user.username, Some(&reason))
            .await?;
        Ok(removed)
    }

    /// Records that a reset link for `user` went out by mail to `to` (audited
    /// `password_reset_sent`; the link itself is never recorded).
    pub async fn reset_link_sent(&self, user: &User, to: &str, actor: &Actor) {
        self.record("password_reset_sent", actor, &user.username, Some(to))
            .await;
    }

    /// A one-time link for `username` to choose a new password, valid for `lifetime`.
    pub async fn issue_reset_link(
        &self,
        username: &str,
        lifetime: Duration,
        actor: &Actor,
    ) -> Result<IssuedReset, DirectoryError> {
        if !(RESET_LIFETIMES.0..=RESET_LIFETIMES.1).contains(&lifetime) {
            return Err(DirectoryError::Invalid(
                "a reset link works for 5 minutes to 7 days (it is as good as the password)".into(),
            ));
        }
        let user = self.find(username).await?;
        let token = random_token();
        let now = self.clock.now();
        let reset = PasswordReset {
            token_hash: token_hash(&token),
            user_id: user.id.clone(),
            created_at: now,
            expires_at: now.plus(lifetime),
            created_by: actor.id.clone(),
        };
        self.store.insert_reset(&reset).await?;
        self.audited("password_reset_issued", actor, &user.username, None)
            .await?;
        Ok(IssuedReset {
            token,
            expires_at: reset.expires_at,
        })
    }

    /// Whom a reset link is for, if it still works (it is not used by looking).
    pub async fn reset_link_user(
        &self,
        token: &str,
    ) -> Result<Result<User, ResetLink>, DirectoryError> {
        match self
            .store
            .reset_link(&token_hash(token), self.clock.now())
            .await?
        {
            ResetLink::Valid { user_id } => self.user_by_id(&user_id).await,
            other => Ok(Err(other)),
        }
    }

    /// Uses a reset link to set the password whose hash is `hash`: at most once, however many
    /// tabs or replicas try. Every session of the user ends, and the must-change flag clears.
    pub async fn use_reset_link(
        &self,
        token: &str,
        hash: &str,
        client_ip: Option<String>,
    ) -> Result<Result<User, ResetLink>, DirectoryError> {
        let used = self
            .store
            .use_reset(&token_hash(token), hash, self.clock.now())
            .await?;
        let ResetLink::Valid { user_id } = used else {
            return Ok(Err(used));
        };
        let user = match self.user_by_id(&user_id).await? {
            Ok(user) => user,
            Err(gone) => return Ok(Err(gone)),
        };
        let actor = Actor::new(user.id.clone(), client_ip);
        self.audited("password_reset_used", &actor, &user.username, None)
            .await?;
        Ok(Ok(user))
    }

    /// The user with `user_id`, or [`ResetLink::Unknown`] if they were deleted meanwhile.
    async fn user_by_id(&self, user_id: &str) -> Result<Result<User, ResetLink>, DirectoryError> {
        Ok(self
            .store
            .user_by_id(user_id)
            .await?
            .ok_or(ResetLink::Unknown))
    }
}
