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

pub use client_ip::PeerIp;
pub use config::{CollectorConfig, ConfigError, KeyKind, UnknownFields, WriteKeyConfig};
pub use error::CollectorError;
pub use ingest::{BatchResponse, RejectedEvent, RejectedField};
pub use openapi::ApiDoc;
pub use router::{router, AppState};

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
