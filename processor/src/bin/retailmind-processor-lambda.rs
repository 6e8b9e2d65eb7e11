//! `retailmind-processor-lambda`: the processor behind a Kinesis event source mapping.

use retailmind_connectors::{service, settings};
use retailmind_processor::{lambda, ProcessorConfig};

/// The allocator of the `retailmind-processor` binary: the same code, the same costs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    service::init_tracing();
    let config: ProcessorConfig = settings::load()?;
    config.check()?;
    let backend = retailmind_connectors::connect(&config.backend).await?;
    lambda::run(config.processor(backend).await?).await
}
