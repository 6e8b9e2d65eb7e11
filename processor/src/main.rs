//! `retailmind-processor`: runs the consume loop until Ctrl-C / SIGTERM.

use anyhow::Context;
use retailmind_connectors::{service, settings};
use retailmind_processor::{metrics, ProcessorConfig};

/// glibc's allocator was an eighth of the processor's CPU in the end-to-end benchmark
/// (`cargo bench -p retailmind-processor --bench sessionize`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    service::take_no_arguments(
        env!("CARGO_BIN_NAME"),
        env!("CARGO_PKG_VERSION"),
        "consumes the event stream into sessions and the lake until Ctrl-C or SIGTERM",
    )?;
    service::init_tracing();
    // First, so that a SIGTERM during start-up also stops the processor cleanly, also while
    // start-up waits on a backend.
    let mut shutdown = Box::pin(service::shutdown_signal());
    let config: ProcessorConfig =
        settings::load().context("reading the processor configuration")?;
    config
        .check()
        .context("checking the processor configuration")?;
    let start = async {
        let backend = retailmind_connectors::connect(&config.backend)
            .await
            .context("opening the backend")?;
        config
            .processor(backend)
            .await
            .context("opening the orders database")
    };
    let Some(processor) = service::unless_shut_down(&mut shutdown, start).await else {
        return Ok(());
    };
    let processor = processor?;
    tracing::info!(
        backend = ?config.backend,
        consumer = %config.consumer,
        instance_id = %processor.instance_id().await,
        "processor started"
    );
    if let Some(address) = &config.metrics_listen {
        // Metrics are for operators: a taken port is logged, not fatal to processing.
        match tokio::net::TcpListener::bind(address).await {
            Ok(listener) => {
                tracing::info!(%address, "serving /metrics");
                tokio::spawn(metrics::serve(listener, service::shutdown_signal()));
            }
            Err(e) => tracing::warn!(%address, error = %e, "cannot serve /metrics"),
        }
    }
    processor.run(shutdown).await.context("processing")?;
    tracing::info!("processor stopped");
    Ok(())
}
