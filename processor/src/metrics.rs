//! The processor's Prometheus metrics and the small HTTP server that exposes them.

use std::future::Future;

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

/// How far behind the newest record of the shard the last read was, in ms (labels `consumer`,
/// `shard_id`). Kinesis reports it per GetRecords; the embedded log from append times. 0 from
/// an instance that no longer holds the shard (its owner reports it). It keeps the figure of
/// the last good batch while a shard's batches fail: [`BATCH_FAILURES`] is what rises then.
pub const SHARD_MILLIS_BEHIND: &str = "shard_millis_behind";
/// Records of the embedded log deleted past `backend.stream_retention_hours` before this
/// processor read them: in no session and not in the lake. (Kinesis gives no such count: watch
/// [`SHARD_MILLIS_BEHIND`] against the stream's retention period.)
pub use retailmind_connectors::embedded::EXPIRED_UNREAD as STREAM_RECORDS_EXPIRED_UNREAD;
/// Batches of a shard that failed (labels `consumer`, `shard_id`, `retryable`). A retryable
/// failure is read again after the shard's backoff, from its checkpoint; another stops the
/// processor. Alert on its rate: a shard failing over and over is not read at all.
pub const BATCH_FAILURES: &str = "processor_batch_failures_total";
/// Records carried through to sessions and the lake and checkpointed.
pub const RECORDS_PROCESSED: &str = "processor_records_processed_total";
/// Events that reached the collector later than the allowed lateness: in the lake, in no
/// session.
pub const LATE_EVENTS: &str = "processor_late_events_total";
/// Events that fell within a session already holding `session_max_events`: in the lake, in no
/// session.
pub const SESSION_FULL_EVENTS: &str = "processor_session_full_events_total";
/// Stored sessions joined into an earlier one because late events closed the gap between them.
pub const SESSIONS_ABSORBED: &str = "processor_sessions_absorbed_total";
/// Lease rounds (the shard list and the lease table read, leases taken) that failed while this
/// instance held leases (label `consumer`): it reads those on and tries the round again half a
/// lease duration later. A rising rate means new shards and dead instances' leases wait.
pub const LEASE_ROUND_FAILURES: &str = "processor_lease_round_failures_total";
/// Shard leases this instance holds now.
pub const LEASES_HELD: &str = "processor_leases_held";
/// Events folded into the recommendation model (product views and purchases).
pub const MODEL_OBSERVATIONS: &str = "processor_model_observations_total";
/// Time to encode and store one model snapshot.
pub const MODEL_SAVE_SECONDS: &str = "processor_model_save_seconds";
/// Size of the last stored model snapshot.
pub const MODEL_SNAPSHOT_BYTES: &str = "processor_model_snapshot_bytes";
/// Model saves that failed (retried at the next interval).
pub const MODEL_SAVE_FAILURES: &str = "processor_model_save_failures_total";

/// `GET /metrics` (Prometheus text format) and `GET /healthz`.
pub fn router() -> Router {
    // Install the recorder before the first metric is recorded.
    retailmind_connectors::service::prometheus();
    Router::new()
        .route("/metrics", get(render))
        .route("/healthz", get(|| async { "ok" }))
}

async fn render() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        retailmind_connectors::service::prometheus().render(),
    )
}

/// Serves [`router`] on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router())
        .with_graceful_shutdown(shutdown)
        .await
}
