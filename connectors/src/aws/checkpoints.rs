//! Checkpoints on DynamoDB.
//!
//! Table: hash key `consumer` (S), range key `shard_id` (S), so one Query lists a consumer's
//! shards. Each item holds `sequence` (S, the sequence number as Kinesis wrote it),
//! `sequence_key` (S, the same number left-padded with zeros to [`SEQUENCE_KEY_WIDTH`] digits)
//! and `updated_at_ms` (N).
//!
//! A checkpoint only moves forward. DynamoDB compares numbers only up to 38 digits and Kinesis
//! sequence numbers have up to 129, so the conditional write compares the zero-padded copy,
//! whose string order is the numeric order: `attribute_not_exists(sequence_key) OR
//! sequence_key <= :new`. One round trip, no read-check-write race. Writing the stored
//! sequence again succeeds (a retried write is harmless); an older one is refused with
//! [`ConnectorError::Conflict`] and leaves the stored checkpoint as it was.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;

use super::errors::{conditional_put, sdk_error};
use super::session_item::{number, string};
use crate::checkpoint::CheckpointStore;
use crate::error::{ConnectorError, Result};

const SERVICE: &str = "dynamodb";

/// Hash key of the checkpoints table.
pub(crate) const CONSUMER: &str = "consumer";
/// Range key of the checkpoints table.
pub(crate) const SHARD_ID: &str = "shard_id";
const SEQUENCE: &str = "sequence";
const SEQUENCE_KEY: &str = "sequence_key";
const UPDATED_AT_MS: &str = "updated_at_ms";

/// Kinesis sequence numbers have at most 129 decimal digits (`0|([1-9]\d{0,128})`).
pub(crate) const SEQUENCE_KEY_WIDTH: usize = 129;

pub(crate) struct DynamoCheckpoints {
    client: Client,
    table: String,
}

impl DynamoCheckpoints {
    pub(crate) fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoCheckpoints {
            client,
            table: table.into(),
        }
    }
}

/// `sequence` zero-padded to [`SEQUENCE_KEY_WIDTH`] digits, so that string order is numeric
/// order; refuses anything but decimal digits.
pub(crate) fn sequence_key(sequence: &str) -> Result<String> {
    if sequence.is_empty()
        || sequence.len() > SEQUENCE_KEY_WIDTH
        || !sequence.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(ConnectorError::Misconfigured(format!(
            "checkpoint sequence {sequence:?} is not 1 to {SEQUENCE_KEY_WIDTH} decimal digits"
        )));
    }
    Ok(format!("{sequence:0>SEQUENCE_KEY_WIDTH$}"))
}

fn now_ms() -> i64 {
    let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    i64::try_from(now).unwrap_or(i64::MAX)
}

#[async_trait]
impl CheckpointStore for DynamoCheckpoints {
    async fn get(&self, consumer: &str, shard_id: &str) -> Result<Option<String>> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(CONSUMER, string(consumer))
            .key(SHARD_ID, string(shard_id))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error(SERVICE, e))?;
        let Some(item) = output.item() else {
            return Ok(None);
        };
        match item.get(SEQUENCE) {
            Some(AttributeValue::S(sequence)) => Ok(Some(sequence.clone())),
            other => Err(ConnectorError::Corrupt {
                what: format!("checkpoint of {consumer:?} in {shard_id}"),
                detail: format!("attribute {SEQUENCE}: expected a string, got {other:?}"),
            }),
        }
    }

    async fn set(&self, consumer: &str, shard_id: &str, sequence: &str) -> Result<()> {
        let key = sequence_key(sequence)?;
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(CONSUMER, string(consumer))
            .item(SHARD_ID, string(shard_id))
            .item(SEQUENCE, string(sequence))
            .item(SEQUENCE_KEY, string(key.clone()))
            .item(UPDATED_AT_MS, number(now_ms()))
            .condition_expression("attribute_not_exists(#key) OR #key <= :key")
            .expression_attribute_names("#key", SEQUENCE_KEY)
            .expression_attribute_values(":key", string(key))
            .send()
            .await;
        conditional_put(result, || {
            format!("checkpoint of {consumer:?} in {shard_id}: already past {sequence}")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::sequence_cmp;

    #[test]
    fn padded_keys_sort_like_the_numbers() {
        let sequences = [
            "0",
            "9",
            "10",
            "200",
            "1000",
            "49590338271490256608559692538361571095921575989136588898",
            "49590338271490256608559692540925702759324208523137515618",
        ];
        for a in sequences {
            for b in sequences {
                let (ka, kb) = (
                    sequence_key(a).expect("valid"),
                    sequence_key(b).expect("valid"),
                );
                assert_eq!(ka.len(), SEQUENCE_KEY_WIDTH);
                assert_eq!(ka.cmp(&kb), sequence_cmp(a, b), "{a} vs {b}");
            }
        }
    }

    #[test]
    fn refuses_what_is_not_a_sequence_number() {
        for bad in ["", "12a", "-1", "1.5", &"9".repeat(SEQUENCE_KEY_WIDTH + 1)] {
            assert!(
                matches!(sequence_key(bad), Err(ConnectorError::Misconfigured(_))),
                "{bad:?}"
            );
        }
    }
}
