//! `retailmind-collector`: serves the collector until Ctrl-C / SIGTERM.

use anyhow::Context;
use retailmind_collector::{serve, AppState, CollectorConfig};
use retailmind_connectors::{service, settings};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    service::init_tracing();
    let config: CollectorConfig =
        settings::load().context("reading the collector configuration")?;
    let backend = retailmind_connectors::connect(&config.backend)
        .await
        .context("opening the backend")?;
    let state = AppState::new(backend.sink, &config);
    serve(state, &config, service::shutdown_signal()).await
}
