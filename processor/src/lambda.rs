//! The processor as an AWS Lambda function behind a Kinesis event source mapping: the same
//! [`Processor::apply`] as the polling loop, with Lambda keeping the stream position.
//!
//! A failed batch answers the sequence number of its first record, so Lambda retries from
//! exactly there (a batch is applied all or nothing, and applying it again is idempotent). The
//! mapping must list `ReportBatchItemFailures` in its `FunctionResponseTypes`: without it Lambda
//! reads only whether the function returned, so it would count the failed batch as done and
//! move past it. The README says so where it tells how to deploy.

use aws_lambda_events::event::kinesis::KinesisEvent;
use aws_lambda_events::event::streams::KinesisEventResponse;
use bytes::Bytes;
use retailmind_connectors::StreamEntry;

use crate::Processor;

/// Handles one invocation: one batch of one shard.
pub async fn handle(processor: &Processor, event: KinesisEvent) -> KinesisEventResponse {
    let mut response = KinesisEventResponse::default();
    let Some(first) = event.records.first() else {
        return response;
    };
    let shard_id = first
        .event_id
        .as_deref()
        .and_then(|id| id.split(':').next())
        .unwrap_or("lambda")
        .to_owned();
    let entries: Vec<StreamEntry> = event
        .records
        .iter()
        .map(|r| StreamEntry {
            sequence: r.kinesis.sequence_number.clone(),
            partition_key: r.kinesis.partition_key.clone(),
            data: Bytes::from(r.kinesis.data.0.clone()),
        })
        .collect();
    match processor.apply(&shard_id, &entries).await {
        Ok(outcome) => {
            tracing::info!(
                shard_id,
                records = outcome.records,
                sessions = outcome.sessions_written,
                "batch applied"
            );
            // An invocation may be the environment's last: save what changed, within the
            // save interval like the polling loop does.
            processor.save_model(false).await;
        }
        Err(e) => {
            tracing::warn!(shard_id, error = %e, "batch failed; Lambda will retry it");
            response.add_failure(first.kinesis.sequence_number.clone());
        }
    }
    response
}

/// Runs the Lambda runtime loop with `processor`.
pub async fn run(processor: Processor) -> Result<(), lambda_runtime::Error> {
    let processor = &processor;
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<KinesisEvent>| async move {
            Ok::<_, lambda_runtime::Error>(handle(processor, event.payload).await)
        },
    ))
    .await
}
