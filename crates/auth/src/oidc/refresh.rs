//! Refreshing provider tokens of provider-backed sessions (see [`crate::session::Refresher`]).

use std::sync::Arc;
use std::time::Duration;

use portcullis_core::Clock;

use super::{OidcError, Providers};
use crate::seal::Sealer;
use crate::session::{RefreshOutcome, Refresher};

pub struct ProviderRefresher {
    providers: Arc<Providers>,
    sealer: Sealer,
    clock: Arc<dyn Clock>,
}

impl ProviderRefresher {
    pub fn new(providers: Arc<Providers>, sealer: Sealer, clock: Arc<dyn Clock>) -> Self {
        ProviderRefresher {
            providers,
            sealer,
            clock,
        }
    }
}

#[async_trait::async_trait]
impl Refresher for ProviderRefresher {
    async fn refresh(&self, provider: &str, refresh_token_enc: &str) -> RefreshOutcome {
        let Some(provider) = self.providers.get(provider) else {
            return RefreshOutcome::Rejected("the provider is no longer configured".into());
        };
        let Ok(refresh_token) = self.sealer.open(refresh_token_enc) else {
            return RefreshOutcome::Rejected(
                "the stored refresh token cannot be read (token_key changed?)".into(),
            );
        };
        match provider.refresh(&refresh_token).await {
            Ok(tokens) => RefreshOutcome::Renewed {
                refresh_token_enc: tokens.refresh_token.as_deref().map(|t| self.sealer.seal(t)),
                access_expires_at: tokens
                    .expires_in
                    .map(|secs| self.clock.now().plus(Duration::from_secs(secs))),
            },
            Err(OidcError::Rejected(reason)) => RefreshOutcome::Rejected(reason),
            Err(OidcError::Unavailable(reason)) => RefreshOutcome::Unavailable(reason),
        }
    }
}
