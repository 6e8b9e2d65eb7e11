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

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;

use super::errors::{conditional_update, sdk_error};
use super::session_item::{number, string};
use crate::checkpoint::CheckpointStore;
use crate::clock::now_ms;
use crate::error::{ConnectorError, Result};

const SERVICE: &str = "dynamodb";

/// Hash key of the checkpoints table.
pub(crate) const CONSUMER: &str = "consumer";
/// Range key of the checkpoints table.
pub(crate) const SHARD_ID: &str = "shard_id";
pub(crate) const SEQUENCE: &str = "sequence";
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

/// The update that stores a checkpoint, with [`checkpoint_names`] and [`checkpoint_values`].
pub(crate) const SET_CHECKPOINT: &str = "SET #seq = :seq, #key = :key, #at = :at";

pub(crate) fn checkpoint_names() -> HashMap<String, String> {
    HashMap::from([
        ("#seq".to_owned(), SEQUENCE.to_owned()),
        ("#key".to_owned(), SEQUENCE_KEY.to_owned()),
        ("#at".to_owned(), UPDATED_AT_MS.to_owned()),
    ])
}

/// `:seq`, `:key` (the padded `key` from [`sequence_key`]) and `:at` (now).
pub(crate) fn checkpoint_values(sequence: &str, key: String) -> HashMap<String, AttributeValue> {
    HashMap::from([
        (":seq".to_owned(), string(sequence)),
        (":key".to_owned(), string(key)),
        (":at".to_owned(), number(now_ms())),
    ])
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
        // An update, not a put: the item is also the shard's lease (see `leases.rs`), whose
        // attributes must survive.
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(CONSUMER, string(consumer))
            .key(SHARD_ID, string(shard_id))
            .update_expression(SET_CHECKPOINT)
            .condition_expression("attribute_not_exists(#key) OR #key <= :key")
            .set_expression_attribute_names(Some(checkpoint_names()))
            .set_expression_attribute_values(Some(checkpoint_values(sequence, key)))
            .send()
            .await;
        conditional_update(result, || {
            format!("checkpoint of {consumer:?} in {shard_id}: already past {sequence}")
        })
        .map(|_| ())
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
