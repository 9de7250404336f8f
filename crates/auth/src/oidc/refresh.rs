//! Refreshing provider tokens of provider-backed sessions (see [`crate::session::Refresher`]),
//! and re-reading the user's claims with the fresh access token, so group and role changes at the
//! provider apply without a new sign-in.

use std::sync::Arc;
use std::time::Duration;

use portcullis_core::Clock;
use portcullis_core::claims::map_claims;

use super::{OidcError, Provider, Providers};
use crate::directory::{Directory, IdentitySource};
use crate::seal::Sealer;
use crate::session::{RefreshOutcome, RefreshRequest, Refresher};

pub struct ProviderRefresher {
    providers: Arc<Providers>,
    sealer: Sealer,
    directory: Arc<Directory>,
    clock: Arc<dyn Clock>,
}

impl ProviderRefresher {
    pub fn new(
        providers: Arc<Providers>,
        sealer: Sealer,
        directory: Arc<Directory>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        ProviderRefresher {
            providers,
            sealer,
            directory,
            clock,
        }
    }

    /// Re-reads the user's claims and applies them. Returns whether anything was applied; a
    /// failure here never ends the session (the tokens themselves were renewed).
    async fn resync(
        &self,
        provider: &Provider,
        access_token: &str,
        request: &RefreshRequest<'_>,
    ) -> bool {
        let claims = match provider.current_claims(access_token).await {
            Ok(Some(claims)) => claims,
            Ok(None) => return false,
            Err(e) => {
                tracing::warn!(provider = provider.id(), error = %e, "could not re-read the user's claims");
                return false;
            }
        };
        if let Some(subject) = request.subject
            && claims.get("sub").and_then(|s| s.as_str()) != Some(subject)
        {
            tracing::warn!(
                provider = provider.id(),
                "userinfo describes a different user; ignored"
            );
            return false;
        }
        let Ok(mapped) = map_claims(&claims, &provider.config.mapping()) else {
            return false;
        };
        let email = mapped
            .email
            .as_ref()
            .filter(|_| mapped.email_verified || provider.config.trusts_unverified_email());
        match self
            .directory
            .apply_claims(
                &IdentitySource::of(&provider.config),
                request.user_id,
                &mapped,
                email,
            )
            .await
        {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(error = %e, "could not apply re-read claims");
                false
            }
        }
    }
}

#[async_trait::async_trait]
impl Refresher for ProviderRefresher {
    async fn refresh(&self, request: RefreshRequest<'_>) -> RefreshOutcome {
        let Some(provider) = self.providers.get(request.provider) else {
            return RefreshOutcome::Rejected("the provider is no longer configured".into());
        };
        let Ok(refresh_token) = self.sealer.open(request.refresh_token_enc) else {
            return RefreshOutcome::Rejected(
                "the stored refresh token cannot be read (token_key changed?)".into(),
            );
        };
        let tokens = match provider.refresh(&refresh_token).await {
            Ok(tokens) => tokens,
            Err(OidcError::Rejected(reason)) => return RefreshOutcome::Rejected(reason),
            Err(OidcError::Unavailable(reason)) => return RefreshOutcome::Unavailable(reason),
        };
        let identity_changed = self.resync(&provider, &tokens.access_token, &request).await;
        RefreshOutcome::Renewed {
            refresh_token_enc: tokens.refresh_token.as_deref().map(|t| self.sealer.seal(t)),
            access_expires_at: tokens
                .expires_in
                .map(|secs| self.clock.now().plus(Duration::from_secs(secs))),
            identity_changed,
        }
    }
}
