//! Background refresh of a provider-backed session's tokens: the request that notices the
//! access token is due never waits for the provider.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use portcullis_core::{Clock, Timestamp};
use portcullis_store::Store;

use super::active::ActiveSession;
use super::{SessionCache, end_session, refresh_user};

/// Refresh this long before the access token expires.
pub(super) const REFRESH_MARGIN: i64 = 30;
/// After a provider outage, wait this long before trying again.
const REFRESH_RETRY: i64 = 30;

/// The session whose provider tokens are due.
pub struct RefreshRequest<'a> {
    pub provider: &'a str,
    pub refresh_token_enc: &'a str,
    pub user_id: &'a str,
    /// The provider's `sub` for this session: re-synced claims must be about the same person.
    pub subject: Option<&'a str>,
}

/// What became of an attempt to refresh a session's provider tokens.
pub enum RefreshOutcome {
    Renewed {
        refresh_token_enc: Option<String>,
        access_expires_at: Option<Timestamp>,
        /// The user's profile, groups or role were re-read from the provider: cached identities
        /// are stale.
        identity_changed: bool,
    },
    /// The provider refused for good (revoked, expired, user disabled): the session ends.
    Rejected(String),
    /// The provider could not be asked; the session lives on and the refresh is retried later.
    Unavailable(String),
}

/// Refreshes provider tokens; implemented over the configured providers.
#[async_trait::async_trait]
pub trait Refresher: Send + Sync {
    async fn refresh(&self, request: RefreshRequest<'_>) -> RefreshOutcome;
}

/// One background refresh of a session's provider tokens.
pub(super) struct RefreshTask {
    pub(super) active: Arc<ActiveSession>,
    pub(super) refresher: Arc<dyn Refresher>,
    pub(super) store: Arc<dyn Store>,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) cache: SessionCache,
}

impl RefreshTask {
    pub(super) async fn run(self) {
        let Some(tokens) = &self.active.shared.provider else {
            return;
        };
        let current = tokens.refresh_token_enc.lock().await.clone();
        let outcome = match current {
            Some(sealed) => {
                let request = RefreshRequest {
                    provider: &tokens.provider,
                    refresh_token_enc: &sealed,
                    user_id: &self.active.user_id,
                    subject: tokens.subject.as_deref(),
                };
                self.refresher.refresh(request).await
            }
            None => RefreshOutcome::Rejected("no refresh token".into()),
        };
        let id_hash = &self.active.id_hash;
        match outcome {
            RefreshOutcome::Renewed {
                refresh_token_enc,
                access_expires_at,
                identity_changed,
            } => {
                if let Some(sealed) = &refresh_token_enc {
                    *tokens.refresh_token_enc.lock().await = Some(sealed.clone());
                }
                tokens.access_expires_at.store(
                    access_expires_at.map(|t| t.0).unwrap_or(0),
                    Ordering::Relaxed,
                );
                if let Err(e) = self
                    .store
                    .update_session_tokens(id_hash, refresh_token_enc.as_deref(), access_expires_at)
                    .await
                {
                    tracing::warn!(error = %e, "could not record refreshed tokens");
                }
                // Every process hears of the re-synced identity through the change feed; this
                // one applies it at once.
                if identity_changed
                    && let Err(e) =
                        refresh_user(&*self.store, &self.cache, &self.active.user_id).await
                {
                    tracing::warn!(error = %e, "could not apply the re-synced identity at once; the change feed will");
                }
            }
            RefreshOutcome::Rejected(reason) => {
                tracing::info!(provider = %tokens.provider, user = %self.active.identity.username, reason = %reason,
                    "the provider refused to refresh the session; it ends");
                if let Err(e) = end_session(&*self.store, &self.cache, id_hash).await {
                    tracing::warn!(error = %e, "could not end the session in the store");
                }
            }
            RefreshOutcome::Unavailable(reason) => {
                tracing::warn!(provider = %tokens.provider, reason = %reason, "could not refresh provider tokens; will retry");
                tokens
                    .not_before
                    .store(self.clock.now().0 + REFRESH_RETRY, Ordering::Relaxed);
            }
        }
        tokens.refreshing.store(false, Ordering::Release);
    }
}
