//! Prometheus metrics, with names an operator reads without a glossary.

pub const EVENTS_ACCEPTED: &str = "collector_events_accepted_total";
pub const EVENTS_REJECTED: &str = "collector_events_rejected_total";
pub const BATCHES_DUPLICATE: &str = "collector_batches_duplicate_total";
/// Events dropped because an earlier batch already wrote their ids.
pub const EVENTS_DUPLICATE: &str = "collector_events_duplicate_total";
/// Request bodies refused as a whole (not a batch, too many events) and kept in the dead letters.
pub const BODIES_DEAD_LETTERED: &str = "collector_bodies_dead_lettered_total";
pub const REQUESTS_REFUSED: &str = "collector_requests_refused_total";
/// How far back the dedup memories reach now (label `of`: `batches` or `events`); below
/// `dedup_window_secs` their capacity cuts the window short at this load.
pub const DEDUP_MEMORY_SECONDS: &str = "collector_dedup_memory_seconds";
pub const SINK_APPEND_SECONDS: &str = "collector_sink_append_seconds";
pub const SINK_FAILURES: &str = "collector_sink_failures_total";
/// Writes to the dead letters that failed: the request was answered 503, and its sender sends
/// it again. `/readyz` leaves them out (an instance whose dead letters are down still takes
/// every batch without a rejected event), so alert on this rate.
pub const DEAD_LETTER_FAILURES: &str = "collector_dead_letter_failures_total";
/// Time to answer one recommendation request inside the server (label `placement`).
pub const RECOMMENDATION_SECONDS: &str = "collector_recommendation_seconds";
/// Recommendation answers (labels `placement`, `strategy`).
pub const RECOMMENDATIONS: &str = "collector_recommendations_total";
/// The stored model version being served.
pub const MODEL_VERSION: &str = "collector_model_version";
/// Polls of the model store that failed (the current model is kept).
pub const MODEL_RELOAD_FAILURES: &str = "collector_model_reload_failures_total";

/// Orders received (label `outcome`: `stored` or `replayed`).
pub const ORDERS: &str = "collector_orders_total";
/// Orders placed longer ago than the stream takes events (a backfill of history): stored and
/// exported, with no purchase event.
pub const ORDERS_WITHOUT_EVENT: &str = "collector_orders_without_event_total";
/// Order status changes (label `status`).
pub const ORDER_STATUS_CHANGES: &str = "collector_order_status_changes_total";

/// The process-wide recorder, shared with the other RetailMind services.
pub fn handle() -> metrics_exporter_prometheus::PrometheusHandle {
    retailmind_connectors::service::prometheus()
}
