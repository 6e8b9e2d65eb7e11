//! The collector: RetailMind's HTTP front door. It validates events with the shared schema and
//! appends them to the stream, answering only after the stream has them.

pub mod config;
mod error;
mod ingest;
mod router;

pub use config::CollectorConfig;
pub use error::CollectorError;
pub use ingest::{BatchResponse, RejectedEvent, RejectedField};
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
    axum::serve(listener, router(state, config))
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}
