//! Provisioning that never loses a user.
//!
//! Every change to a user or their memberships writes an outbox event in the same transaction as
//! the change (database triggers, so no code path can forget). The [`Provisioner`] copies each
//! event into one delivery per sink and delivers it at least once, in order per user, with an
//! idempotency key; failures are retried with exponential back-off and jitter until the event is
//! older than the give-up age, then it becomes a dead letter that an operator can retry or
//! discard. Everything lives in the store, so a process killed at any point resumes where it was.
//! A sink being down never touches sign-in or `/ready`: delivery runs beside the request path.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod metrics;
pub mod openwebui;
pub mod scim;
pub mod sink;
pub mod webhook;

use std::sync::Arc;
use std::time::Duration;

use portcullis_core::config::{Config, ProvisioningConfig, SinkConfig, SinkKind};
use portcullis_core::policy::AccessPolicy;
use portcullis_core::{Clock, Timestamp};
use portcullis_store::{Delivery, Store, StoreError};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use metrics::ProvisionMetrics;
pub use sink::{Event, Sink, SinkError};

/// How often the worker looks for work when there is none.
const POLL: Duration = Duration::from_millis(500);
/// The most deliveries one round claims (see `claim_size`).
const BATCH: u32 = 200;

/// A sink with the app whose users it receives.
pub struct Target {
    pub sink: Arc<dyn Sink>,
    /// Only users this policy admits are delivered (a disabled or deleted user always is).
    pub policy: Option<AccessPolicy>,
}

pub struct Provisioner {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    targets: Vec<Target>,
    settings: ProvisioningConfig,
    metrics: Arc<ProvisionMetrics>,
}

/// Builds the sinks of a validated configuration.
pub fn targets(config: &Config, http: &reqwest::Client) -> Vec<Target> {
    config
        .sinks
        .iter()
        .map(|s| Target {
            sink: sink_for(s, http),
            policy: s.app.as_ref().and_then(|name| {
                config
                    .apps
                    .iter()
                    .find(|a| &a.name == name)
                    .map(|a| a.access.clone())
            }),
        })
        .collect()
}

fn sink_for(s: &SinkConfig, http: &reqwest::Client) -> Arc<dyn Sink> {
    match s.kind {
        SinkKind::Webhook => Arc::new(webhook::Webhook::new(
            &s.id,
            &s.url,
            s.secret.as_deref().unwrap_or_default(),
            http.clone(),
        )),
        SinkKind::Scim => Arc::new(scim::ScimSink::new(
            &s.id,
            &s.url,
            s.token.as_deref().unwrap_or_default(),
            http.clone(),
        )),
        SinkKind::Openwebui => Arc::new(openwebui::OpenWebUi::new(
            &s.id,
            &s.url,
            s.admin_token.as_deref().unwrap_or_default(),
            http.clone(),
        )),
    }
}

/// The delay before attempt `attempts + 1`: `base · 2^attempts`, capped, then scaled by a random
/// factor in [0.5, 1] so that many failed deliveries do not retry in lockstep.
pub fn backoff(settings: &ProvisioningConfig, attempts: u32, jitter: f64) -> Duration {
    let exponential = settings
        .retry_base
        .saturating_mul(2u32.saturating_pow(attempts.min(31)));
    exponential
        .min(settings.retry_max)
        .mul_f64(0.5 + jitter.clamp(0.0, 1.0) / 2.0)
}

impl Provisioner {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        targets: Vec<Target>,
        settings: ProvisioningConfig,
        metrics: Arc<ProvisionMetrics>,
    ) -> Self {
        Provisioner {
            store,
            clock,
            targets,
            settings,
            metrics,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// How many deliveries one round claims: as many as it delivers at once. Every claimed
    /// delivery starts at once, so a claim outlives its lease only if one delivery takes longer
    /// than the lease (the sinks' timeouts are shorter), and a killed process holds few.
    fn claim_size(&self) -> u32 {
        u32::try_from(self.settings.concurrency)
            .unwrap_or(BATCH)
            .clamp(1, BATCH)
    }

    /// Delivers until `stop` is cancelled; then lets the deliveries under way finish for up to
    /// `grace` and gives back the claims of those it cuts off, so that another replica takes
    /// them at once instead of after the lease.
    pub async fn run(self: Arc<Self>, stop: CancellationToken, grace: Duration) {
        while !stop.is_cancelled() {
            let wait = match self.round_until(&stop, grace).await {
                Ok(0) => POLL,
                Ok(_) => Duration::ZERO,
                Err(e) => {
                    tracing::warn!(error = %e, "provisioning: the store is unavailable; retrying");
                    POLL
                }
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = stop.cancelled() => {}
            }
        }
    }

    /// One round: fan new events out to the sinks, deliver what is due, refresh the gauges.
    /// Returns how many deliveries were attempted.
    pub async fn round(self: &Arc<Self>) -> Result<usize, StoreError> {
        self.round_until(&CancellationToken::new(), Duration::ZERO)
            .await
    }

    async fn round_until(
        self: &Arc<Self>,
        stop: &CancellationToken,
        grace: Duration,
    ) -> Result<usize, StoreError> {
        let sinks: Vec<String> = self
            .targets
            .iter()
            .map(|t| t.sink.id().to_owned())
            .collect();
        self.store.fan_out(&sinks, self.clock.now()).await?;
        let now = self.clock.now();
        let lease_until = now.plus(self.settings.lease);
        let due = self
            .store
            .claim_due_deliveries(now, lease_until, self.claim_size())
            .await?;
        let attempted = due.len();
        let claims: Vec<(String, i64)> = due.iter().map(|d| (d.sink.clone(), d.seq)).collect();
        let mut running = JoinSet::new();
        for delivery in due {
            while running.len() >= self.settings.concurrency {
                running.join_next().await;
            }
            let this = self.clone();
            running.spawn(async move { this.deliver(delivery).await });
        }
        let cut_off = async {
            stop.cancelled().await;
            tokio::time::sleep(grace).await;
        };
        tokio::pin!(cut_off);
        loop {
            tokio::select! {
                next = running.join_next() => if next.is_none() { break },
                () = &mut cut_off => {
                    running.abort_all();
                    while running.join_next().await.is_some() {}
                    // Only the unsettled ones still carry this lease: the rest are left alone.
                    let released = self
                        .store
                        .release_claims(&claims, lease_until, self.clock.now())
                        .await?;
                    tracing::info!(released, "provisioning: stopping; deliveries cut off are due again at once");
                    return Ok(attempted);
                }
            }
        }
        self.refresh_gauges().await?;
        Ok(attempted)
    }

    async fn refresh_gauges(&self) -> Result<(), StoreError> {
        let stats = self.store.outbox_stats().await?;
        let now = self.clock.now().0;
        self.metrics.observe(&stats, now);
        Ok(())
    }

    async fn deliver(&self, delivery: Delivery) {
        let Some(target) = self.targets.iter().find(|t| t.sink.id() == delivery.sink) else {
            return; // a sink removed from the configuration: its rows wait for it
        };
        // Read before the user's state: the state sent covers every event up to this one.
        let up_to = match self
            .store
            .latest_pending_seq(&delivery.sink, &delivery.user_id)
            .await
        {
            Ok(seq) => seq.unwrap_or(delivery.seq).max(delivery.seq),
            Err(_) => delivery.seq,
        };
        let outcome = match self.event(&delivery).await {
            Ok(Some(event)) => target.sink.deliver(&event).await,
            Ok(None) => Ok(()), // not for this sink's app
            Err(e) => Err(SinkError::Retry(format!("reading the user: {e}"))),
        };
        if let Err(e) = self.record(&delivery, target, up_to, outcome).await {
            tracing::warn!(error = %e, sink = %delivery.sink, seq = delivery.seq, "provisioning: could not record a delivery; it will be retried");
        }
    }

    /// The event for this delivery, or `None` when the user is not for this sink's app.
    async fn event(&self, delivery: &Delivery) -> Result<Option<Event>, StoreError> {
        let user = self.store.user_by_id(&delivery.user_id).await?;
        let target = self.targets.iter().find(|t| t.sink.id() == delivery.sink);
        if let (Some(policy), Some(user)) = (target.and_then(|t| t.policy.as_ref()), &user)
            && user.status == portcullis_core::user::UserStatus::Active
            && policy.evaluate(&user.identity()).is_err()
        {
            return Ok(None);
        }
        Ok(Some(Event {
            idempotency_key: format!("{}-{}", delivery.sink, delivery.seq),
            kind: delivery.kind.clone(),
            user_id: delivery.user_id.clone(),
            user,
            at: delivery.created_at.0,
        }))
    }

    async fn record(
        &self,
        delivery: &Delivery,
        target: &Target,
        up_to: i64,
        outcome: Result<(), SinkError>,
    ) -> Result<(), StoreError> {
        let now = self.clock.now();
        let sink = target.sink.id();
        match outcome {
            Ok(()) => {
                // The sink now has the user's state as of `up_to`: those events are covered.
                self.store
                    .delivered(sink, &delivery.user_id, up_to, now)
                    .await?;
                self.metrics.delivered(sink, "delivered");
            }
            Err(error) => {
                let age =
                    Duration::from_secs(u64::try_from(now.0 - delivery.created_at.0).unwrap_or(0));
                let dead =
                    matches!(error, SinkError::Permanent(_)) || age >= self.settings.give_up_after;
                let delay = backoff(&self.settings, delivery.attempts, rand::random::<f64>());
                let next = Timestamp(
                    now.0 + i64::try_from(delay.as_secs().max(1)).unwrap_or(i64::MAX / 2),
                );
                self.store
                    .delivery_failed(sink, delivery.seq, &error.to_string(), next, dead)
                    .await?;
                let outcome = if dead { "dead" } else { "retry" };
                self.metrics.delivered(sink, outcome);
                tracing::warn!(sink, seq = delivery.seq, user = %delivery.user_id, attempts = delivery.attempts + 1, outcome, error = %error, "provisioning: delivery failed");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter() {
        let settings = ProvisioningConfig {
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(3600),
            ..ProvisioningConfig::default()
        };
        assert_eq!(backoff(&settings, 0, 1.0), Duration::from_secs(1));
        assert_eq!(backoff(&settings, 3, 1.0), Duration::from_secs(8));
        assert_eq!(backoff(&settings, 3, 0.0), Duration::from_secs(4));
        assert_eq!(backoff(&settings, 40, 1.0), Duration::from_secs(3600));
    }
}
