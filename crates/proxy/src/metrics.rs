//! Prometheus metrics, held in an explicit registry (no global recorder) and rendered by the
//! `/metrics` route.

use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub app: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AppLabels {
    pub app: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

type HistogramFamily = Family<AppLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 0.5 ms .. ~16 s
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub latency: HistogramFamily,
    pub sign_ins: Family<OutcomeLabels, Counter>,
    pub active_sessions: Gauge,
    /// Client connections accepted: against the request count, it shows whether the proxy in
    /// front keeps its connections to Portcullis alive.
    pub connections: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("portcullis");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency: HistogramFamily = Family::new_with_constructor(latency_histogram);
        let sign_ins = Family::<OutcomeLabels, Counter>::default();
        let active_sessions = Gauge::default();
        let connections = Counter::default();
        registry.register(
            "connections_accepted",
            "Client connections accepted",
            connections.clone(),
        );
        registry.register(
            "requests",
            "Requests handled, by app and status",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time until the response headers were ready, by app",
            latency.clone(),
        );
        registry.register("sign_ins", "Sign-in attempts by outcome", sign_ins.clone());
        registry.register(
            "active_sessions",
            "Sessions held in memory",
            active_sessions.clone(),
        );
        Metrics {
            registry,
            requests,
            latency,
            sign_ins,
            active_sessions,
            connections,
        }
    }

    /// Counts a request the gateway answered and observes its latency. `app` carries the
    /// handles for the app it was routed to; requests no app claimed are counted under `-`.
    pub fn request(&self, app: Option<(&str, &AppMetrics)>, status: u16, elapsed: Duration) {
        match app {
            Some((name, handles)) => handles.record(self, name, status, elapsed),
            None => {
                self.requests
                    .get_or_create(&RequestLabels {
                        app: "-".into(),
                        status,
                    })
                    .inc();
                self.latency
                    .get_or_create(&AppLabels { app: "-".into() })
                    .observe(elapsed.as_secs_f64());
            }
        }
    }

    pub fn sign_in(&self, outcome: &str) {
        self.sign_ins
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// For other parts (provisioning) to register their metrics before serving starts.
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// One app's metric handles, kept with the app (each worker has its own routes) so that a
/// request costs no label allocation or family lookup — only the first one per status does.
#[derive(Default)]
pub struct AppMetrics {
    latency: std::sync::OnceLock<Histogram>,
    by_status: Mutex<Vec<(u16, Counter)>>,
}

impl AppMetrics {
    fn record(&self, metrics: &Metrics, app: &str, status: u16, elapsed: Duration) {
        self.latency
            .get_or_init(|| {
                metrics
                    .latency
                    .get_or_create(&AppLabels {
                        app: app.to_owned(),
                    })
                    .clone()
            })
            .observe(elapsed.as_secs_f64());
        // The lock is this worker's own (routes are per worker): never contended.
        let mut by_status = self
            .by_status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, counter)) = by_status.iter().find(|(s, _)| *s == status) {
            counter.inc();
            return;
        }
        let counter = metrics
            .requests
            .get_or_create(&RequestLabels {
                app: app.to_owned(),
                status,
            })
            .clone();
        counter.inc();
        by_status.push((status, counter));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_handles_count_into_the_registered_families() {
        let metrics = Metrics::new();
        let handles = AppMetrics::default();
        for status in [200, 200, 404] {
            metrics.request(Some(("chat", &handles)), status, Duration::from_millis(2));
        }
        metrics.request(None, 502, Duration::from_millis(1));
        let text = metrics.render();
        assert!(
            text.contains(r#"portcullis_requests_total{app="chat",status="200"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"portcullis_requests_total{app="chat",status="404"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"portcullis_requests_total{app="-",status="502"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"portcullis_request_duration_seconds_count{app="chat"} 3"#),
            "{text}"
        );
    }
}
