//! Prometheus metrics, with names an operator reads without a glossary.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

pub const EVENTS_ACCEPTED: &str = "collector_events_accepted_total";
pub const EVENTS_REJECTED: &str = "collector_events_rejected_total";
pub const BATCHES_DUPLICATE: &str = "collector_batches_duplicate_total";
/// Events dropped because an earlier batch already wrote their ids.
pub const EVENTS_DUPLICATE: &str = "collector_events_duplicate_total";
pub const REQUESTS_REFUSED: &str = "collector_requests_refused_total";
pub const SINK_APPEND_SECONDS: &str = "collector_sink_append_seconds";
pub const SINK_FAILURES: &str = "collector_sink_failures_total";

/// The process-wide recorder, installed on first use (several routers in one test process share
/// it).
pub fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Suffix("_seconds".into()),
                    &[
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                    ],
                )
                .expect("static bucket list is not empty")
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed by an embedding program; then ours
            // still renders what it recorded through this handle (nothing), which is harmless.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}
