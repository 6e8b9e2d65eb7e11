//! The processor's Prometheus metrics and the small HTTP server that exposes them.

use std::future::Future;

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

/// How far behind the newest record of the shard the last read was, in ms (labels `consumer`,
/// `shard_id`). Kinesis reports it per GetRecords; the embedded log from append times.
pub const SHARD_MILLIS_BEHIND: &str = "shard_millis_behind";
/// Records carried through to sessions and the lake and checkpointed.
pub const RECORDS_PROCESSED: &str = "processor_records_processed_total";
/// Shard leases this instance holds now.
pub const LEASES_HELD: &str = "processor_leases_held";

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
