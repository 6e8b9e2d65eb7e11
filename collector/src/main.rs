//! `retailmind-collector`: serves the collector until Ctrl-C / SIGTERM.

use anyhow::Context;
use retailmind_collector::{serve, AppState, CollectorConfig};

use retailmind_connectors::{service, settings};

/// Every event is decoded into a dozen small strings and encoded again: glibc's allocator was a
/// tenth of the request path's CPU (see `cargo xtask bench collector`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    service::take_no_arguments(
        env!("CARGO_BIN_NAME"),
        env!("CARGO_PKG_VERSION"),
        "serves the collector (HTTP ingestion, transactions, recommendations) until Ctrl-C or SIGTERM",
    )?;
    service::init_tracing();
    // First, so that a SIGTERM during start-up also stops the collector cleanly, also while
    // start-up waits on a backend.
    let mut shutdown = Box::pin(service::shutdown_signal());
    let config: CollectorConfig =
        settings::load().context("reading the collector configuration")?;
    config
        .check()
        .context("checking the collector configuration")?;
    let connecting = retailmind_connectors::connect(&config.backend);
    let Some(backend) = service::unless_shut_down(&mut shutdown, connecting).await else {
        return Ok(());
    };
    let backend = backend.context("opening the backend")?;
    let (sink, dead_letters) =
        retailmind_collector::spooled_edges(backend.sink, backend.dead_letters, &config)?;
    let state = AppState::new(sink, dead_letters, &config)
        .with_model_store(backend.models)
        .with_configured_commerce(&config, backend.sessions)
        .await
        .context("opening the orders database")?;
    serve(state, &config, shutdown).await
}
