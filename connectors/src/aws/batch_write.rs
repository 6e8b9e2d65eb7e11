//! DynamoDB BatchWriteItem, for the writes that need no condition (it takes none): a model's
//! chunks, and deletes of items nothing else refers to. Up to 25 puts or deletes per call; the
//! ones DynamoDB answers as `UnprocessedItems` (the table's throughput ran short) are sent
//! again, only those, with backoff, until none is left or the retry policy gives up.
//!
//! Session snapshots are not written this way: each carries a condition on its version, which
//! only PutItem and TransactWriteItems can check.

use aws_sdk_dynamodb::types::WriteRequest;
use aws_sdk_dynamodb::Client;

use super::errors::sdk_error;
use super::retry::{send_all, EntryFailure, Outcomes, RetryPolicy};
use crate::error::{ConnectorError, Result};

const SERVICE: &str = "dynamodb";

/// Most requests in one BatchWriteItem call. Items are at most 400 KB, so 25 stay under the
/// call's 16 MB.
pub const MAX_REQUESTS: usize = 25;

/// Carries out every request on `table`, 25 per call, resending what came back unprocessed.
/// On error, the requests of earlier calls are done and the others may be.
pub async fn write_all(client: &Client, table: &str, requests: Vec<WriteRequest>) -> Result<()> {
    write_all_with(client, table, requests, &RetryPolicy::default()).await
}

pub(crate) async fn write_all_with(
    client: &Client,
    table: &str,
    requests: Vec<WriteRequest>,
    policy: &RetryPolicy,
) -> Result<()> {
    for chunk in requests.chunks(MAX_REQUESTS) {
        send_all(SERVICE, policy, chunk.to_vec(), |pending| async move {
            let answer = client
                .batch_write_item()
                .request_items(table, pending.clone())
                .send()
                .await
                .map_err(|e| sdk_error(SERVICE, e))?;
            let unprocessed = answer
                .unprocessed_items()
                .and_then(|tables| tables.get(table))
                .map(Vec::as_slice)
                .unwrap_or_default();
            let outcomes: Outcomes = pending
                .iter()
                .map(|request| {
                    unprocessed.contains(request).then(|| EntryFailure {
                        code: "UnprocessedItems".into(),
                        message: format!("not written to {table}: throughput exceeded"),
                        throttled: true,
                    })
                })
                .collect();
            // An unprocessed request that matches none sent would otherwise pass for done.
            let matched = outcomes.iter().filter(|o| o.is_some()).count();
            if matched != unprocessed.len() {
                return Err(ConnectorError::unavailable(
                    SERVICE,
                    format!(
                        "{} requests came back unprocessed from {table}, {matched} of them sent",
                        unprocessed.len()
                    ),
                ));
            }
            Ok(outcomes)
        })
        .await?;
    }
    Ok(())
}
