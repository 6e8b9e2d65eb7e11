//! `retailmind-processor`: runs the consume loop until Ctrl-C / SIGTERM.

use anyhow::Context;
use retailmind_connectors::{service, settings};
use retailmind_processor::{Processor, ProcessorConfig};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    service::init_tracing();
    let config: ProcessorConfig =
        settings::load().context("reading the processor configuration")?;
    let backend = retailmind_connectors::connect(&config.backend)
        .await
        .context("opening the backend")?;
    tracing::info!(backend = ?config.backend, consumer = %config.consumer, "processor started");
    Processor::new(backend, &config)
        .run(service::shutdown_signal())
        .await
        .context("processing")?;
    tracing::info!("processor stopped");
    Ok(())
}
