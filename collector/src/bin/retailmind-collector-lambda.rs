//! `retailmind-collector-lambda`: the collector as an AWS Lambda function behind API Gateway
//! (REST API or HTTP API proxy integration). Configured like the server, by `retailmind.toml` or
//! `RETAILMIND_*` environment variables; see `retailmind_collector::lambda` for the API Gateway
//! settings it expects.

use anyhow::Context;
use retailmind_collector::{lambda, AppState, CollectorConfig};
use retailmind_connectors::{service, settings, BackendConfig};

/// The allocator of the `retailmind-collector` binary: the same code, the same costs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    service::init_tracing();
    let config: CollectorConfig =
        settings::load().context("reading the collector configuration")?;
    config
        .check()
        .context("checking the collector configuration")?;
    if let BackendConfig::Embedded { data_dir, .. } = &config.backend {
        tracing::warn!(
            data_dir = %data_dir.display(),
            "embedded backend in Lambda: each instance has its own file, lost when the instance \
             goes; set RETAILMIND_BACKEND__KIND=aws"
        );
    }
    if let Some(dir) = &config.spool_dir {
        // A sandbox's disk goes with the sandbox, and a frozen one replays nothing: a spool
        // there would acknowledge events that may never reach the stream.
        tracing::warn!(
            spool_dir = %dir.display(),
            "spool_dir is not used in Lambda: an outage is answered 503 and the sender keeps \
             its events"
        );
    }
    let backend = retailmind_connectors::connect(&config.backend)
        .await
        .context("opening the backend")?;
    let state = AppState::new(backend.sink, backend.dead_letters, &config)
        .with_model_store(backend.models)
        .with_configured_commerce(&config, backend.sessions)
        .await
        .context("opening the orders database")?;
    lambda::run(state, &config).await
}
