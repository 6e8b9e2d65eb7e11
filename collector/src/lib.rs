//! The collector: RetailMind's HTTP front door. It validates events with the shared schema and
//! appends them to the stream, answering only after the stream has them. It also serves product
//! recommendations (`GET /v1/recommendations`, see [`recs`]).

mod access;
mod body;
mod client_ip;
mod commerce;
pub mod config;
mod dedup;
mod error;
mod handlers;
mod ingest;
pub mod lambda;
mod metrics;
mod openapi;
pub mod recs;
mod router;
mod segment;
mod segment_spec;

pub use client_ip::PeerIp;
pub use config::{
    CollectorConfig, ConfigError, KeyKind, SegmentConfig, UnknownFields, WriteKeyConfig,
};
pub use error::CollectorError;
pub use ingest::{BatchResponse, RejectedEvent, RejectedField};
/// The OpenAPI document `/openapi.json` serves (`ApiDoc` alone lacks analytics.js's short paths).
pub use openapi::{document as openapi_document, ApiDoc};
pub use router::{router, AppState};
pub use segment::NO_PAGE_URL;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use retailmind_connectors::spool::SpoolingSink;
use retailmind_connectors::EventSink;

/// The stream and the dead letters, each behind a local spool of its own (replayed every
/// second) when `config.spool_dir` is set. The dead letters are spooled too: a batch with one
/// bad event whose good events were spooled would otherwise answer 503 for its letter alone,
/// and its retry elsewhere (or past the dedup window) would spool those events again.
pub fn spooled_edges(
    sink: Arc<dyn EventSink>,
    dead_letters: Arc<dyn EventSink>,
    config: &CollectorConfig,
) -> anyhow::Result<(Arc<dyn EventSink>, Arc<dyn EventSink>)> {
    let Some(dir) = &config.spool_dir else {
        return Ok((sink, dead_letters));
    };
    let spooled = |sink, dir: &std::path::Path| -> anyhow::Result<Arc<dyn EventSink>> {
        let spooling = Arc::new(
            SpoolingSink::new(sink, dir, config.spool_max_bytes)
                .with_context(|| format!("opening the spool in {}", dir.display()))?
                .spooling_after(Duration::from_secs(config.spool_after_secs)),
        );
        spooling.spawn_replayer(Duration::from_secs(1));
        Ok(spooling)
    };
    Ok((
        spooled(sink, dir)?,
        spooled(dead_letters, &dir.join(DEAD_LETTER_SPOOL))?,
    ))
}

/// The dead letters' spool, inside `spool_dir`.
pub const DEAD_LETTER_SPOOL: &str = "dead-letters";

/// Binds `config.listen` and serves until `shutdown` completes.
pub async fn serve(
    state: AppState,
    config: &CollectorConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    serve_on(listener, state, config, shutdown).await
}

/// Serves on an already bound listener (tests bind port 0 and read the address first).
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    state: AppState,
    config: &CollectorConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    tracing::info!(addr = %listener.local_addr()?, "collector listening");
    if state.access.is_open() {
        tracing::warn!("no write keys configured: accepting events from anyone (development mode)");
    }
    let app = router(state, config).into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}
