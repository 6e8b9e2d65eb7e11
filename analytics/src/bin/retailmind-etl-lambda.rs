//! `retailmind-etl-lambda`: the lake job as an AWS Lambda function, for an EventBridge schedule
//! (`rate(15 minutes)`, say). Each invocation is one run of `retailmind-etl run` (events ETL,
//! exports, deletions) and answers its report; a failed run fails the invocation, and the next
//! one repeats the work (the job is idempotent). Configuration from the function's
//! `RETAILMIND_*` environment, as for `retailmind-etl`.

use retailmind_analytics::config::EtlConfig;
use retailmind_analytics::job;
use retailmind_connectors::{service, settings};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    service::init_tracing();
    let config: EtlConfig = settings::load()?;
    let options = config.options()?;
    let store = config.store().await?;
    let sources = config.sources().await?;
    let (store, sources, options) = (&store, &sources, &options);
    lambda_runtime::run(lambda_runtime::service_fn(
        move |_scheduled: lambda_runtime::LambdaEvent<serde_json::Value>| async move {
            let now_ms = retailmind_connectors::clock::now_ms();
            let report = job::run_once(store.as_ref(), sources.sources(), options, now_ms).await?;
            tracing::info!(?report, "lake job done");
            Ok::<_, lambda_runtime::Error>(report)
        },
    ))
    .await
}
