//! Provisioning metrics: queue depth, oldest pending age, deliveries by sink and outcome, dead
//! letters. Registered into the same Prometheus registry as the gateway's.

use portcullis_store::OutboxStats;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeliveryLabels {
    pub sink: String,
    pub outcome: String,
}

#[derive(Default)]
pub struct ProvisionMetrics {
    deliveries: Family<DeliveryLabels, Counter>,
    pending: Gauge,
    oldest_pending_seconds: Gauge,
    dead_letters: Gauge,
}

impl ProvisionMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "provisioning_deliveries",
            "Delivery attempts by sink and outcome (delivered, retry, dead)",
            self.deliveries.clone(),
        );
        registry.register(
            "provisioning_pending",
            "Deliveries waiting in the outbox",
            self.pending.clone(),
        );
        registry.register(
            "provisioning_oldest_pending_seconds",
            "Age of the oldest undelivered event",
            self.oldest_pending_seconds.clone(),
        );
        registry.register(
            "provisioning_dead_letters",
            "Deliveries given up on, waiting for an operator",
            self.dead_letters.clone(),
        );
    }

    pub fn delivered(&self, sink: &str, outcome: &str) {
        self.deliveries
            .get_or_create(&DeliveryLabels {
                sink: sink.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    pub fn observe(&self, stats: &OutboxStats, now: i64) {
        let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.pending.set(gauge(stats.pending));
        self.dead_letters.set(gauge(stats.dead));
        self.oldest_pending_seconds
            .set(stats.oldest_pending.map_or(0, |t| (now - t.0).max(0)));
    }
}
