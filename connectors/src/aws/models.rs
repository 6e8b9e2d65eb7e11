//! The recommendation model's snapshot on DynamoDB, in chunks.
//!
//! A DynamoDB item holds at most 400 KB and a snapshot is usually larger, so it is split into
//! items of [`CHUNK_BYTES`]. Chunks were chosen over S3 so that production needs no bucket
//! beyond the lake and the version poll, the write condition and the data live in one table.
//!
//! Table: hash key `name` (S), range key `part` (N).
//! - head item: `name` = the model name, `part` = 0, with `version`, `parts`, `chunks` (the
//!   hash key of its chunks) and `positions` (JSON: the stream records the snapshot holds,
//!   written with the version so they always describe the same snapshot);
//! - chunk items: `name` = `<model>#<uuid v7>`, fresh for every save, `part` = 0, 1, …, with
//!   `data` (B).
//!
//! A save writes the new chunks first (BatchWriteItem, 25 to a call, unprocessed ones resent),
//! then the head conditional on the version before it, then deletes the chunks of the version
//! it replaced (BatchWriteItem again). A writer that lost the race never touched the
//! winner's chunks (its key is its own), and a reader that read a head whose chunks are gone
//! meanwhile gets a retryable `Conflict` and reads again on its next poll.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::BuildError;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{AttributeValue, DeleteRequest, PutRequest, WriteRequest};
use aws_sdk_dynamodb::Client;

use super::batch_write;
use super::errors::{conditional_put, sdk_error};
use super::pages::all_items;
use super::session_item::{number, string, Item};
use crate::clock::now_ms;
use crate::error::{ConnectorError, Result};
use crate::models::{
    positions_from_json, positions_to_json, ModelStore, StoredModel, StreamPositions,
};

const SERVICE: &str = "dynamodb";
/// The table's hash key.
pub(crate) const NAME: &str = "name";
/// The table's range key.
pub(crate) const PART: &str = "part";
const VERSION: &str = "version";
const PARTS: &str = "parts";
const CHUNKS: &str = "chunks";
const DATA: &str = "data";
const POSITIONS: &str = "positions";
/// Bytes of snapshot per chunk item: under the 400 KB item limit with room for the keys.
pub const CHUNK_BYTES: usize = 350 * 1024;

pub(crate) struct DynamoModels {
    client: Client,
    table: String,
}

/// What the head item says.
struct Head {
    version: u64,
    parts: u64,
    chunks: String,
    positions: StreamPositions,
}

fn corrupt(detail: impl Into<String>) -> ConnectorError {
    ConnectorError::Corrupt {
        what: "models table".into(),
        detail: detail.into(),
    }
}

fn number_of(item: &Item, field: &str) -> Result<u64> {
    item.get(field)
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| corrupt(format!("{field} missing or not a number")))
}

impl DynamoModels {
    pub(crate) fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoModels {
            client,
            table: table.into(),
        }
    }

    async fn head(&self, name: &str) -> Result<Option<Head>> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(NAME, string(name))
            .key(PART, number(0))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error(SERVICE, e))?;
        let Some(item) = output.item() else {
            return Ok(None);
        };
        Ok(Some(Head {
            version: number_of(item, VERSION)?,
            parts: number_of(item, PARTS)?,
            chunks: item
                .get(CHUNKS)
                .and_then(|v| v.as_s().ok())
                .cloned()
                .ok_or_else(|| corrupt("chunks missing"))?,
            // Absent on heads written before positions were kept.
            // Unreadable ones are unknown (the model is derived data: at worst a replayed
            // record is learned twice), not a reason to stop the processor.
            positions: match item.get(POSITIONS) {
                None => StreamPositions::new(),
                Some(value) => positions_from_json(value.as_s().map_or("", String::as_str), name),
            },
        }))
    }

    /// Every chunk under `chunks`, in order, joined, and how many there were.
    async fn read_chunks(&self, chunks: &str) -> Result<(u64, Vec<u8>)> {
        let items = all_items(|start_key| {
            self.client
                .query()
                .table_name(&self.table)
                .key_condition_expression("#name = :name")
                .expression_attribute_names("#name", NAME)
                .expression_attribute_values(":name", string(chunks))
                .consistent_read(true)
                .set_exclusive_start_key(start_key)
                .send()
        })
        .await?;
        let mut bytes = Vec::new();
        for item in &items {
            let data = item
                .get(DATA)
                .and_then(|v| v.as_b().ok())
                .ok_or_else(|| corrupt("chunk without data"))?;
            bytes.extend_from_slice(data.as_ref());
        }
        Ok((items.len() as u64, bytes))
    }

    /// Deletes the chunk items under `chunks`; failures only leave garbage behind, so they are
    /// logged, not returned.
    async fn delete_chunks(&self, chunks: &str, parts: u64) {
        let deletes = (0..parts)
            .map(|part| {
                let key = HashMap::from([
                    (NAME.to_owned(), string(chunks)),
                    (PART.to_owned(), number(part)),
                ]);
                let delete = DeleteRequest::builder().set_key(Some(key)).build()?;
                Ok(WriteRequest::builder().delete_request(delete).build())
            })
            .collect::<std::result::Result<Vec<_>, BuildError>>();
        let deleted = match deletes {
            Ok(deletes) => batch_write::write_all(&self.client, &self.table, deletes).await,
            Err(e) => Err(super::errors::build_error(SERVICE, e)),
        };
        if let Err(e) = deleted {
            tracing::warn!(table = %self.table, chunks, error = %e, "old model chunks not deleted");
        }
    }
}

#[async_trait]
impl ModelStore for DynamoModels {
    async fn version(&self, name: &str) -> Result<Option<u64>> {
        Ok(self.head(name).await?.map(|h| h.version))
    }

    async fn load(&self, name: &str) -> Result<Option<StoredModel>> {
        let Some(head) = self.head(name).await? else {
            return Ok(None);
        };
        let (parts, bytes) = self.read_chunks(&head.chunks).await?;
        if parts != head.parts {
            // Replaced (and its chunks deleted) between our two reads: read again later.
            return Err(ConnectorError::Conflict {
                what: format!(
                    "model {name} version {}: {parts} of {} chunks found",
                    head.version, head.parts
                ),
            });
        }
        Ok(Some(StoredModel {
            version: head.version,
            bytes,
            positions: head.positions,
        }))
    }

    async fn save(
        &self,
        name: &str,
        version: u64,
        bytes: &[u8],
        positions: &StreamPositions,
    ) -> Result<()> {
        if version == 0 {
            return Err(ConnectorError::Misconfigured(format!(
                "model {name} has version 0; versions start at 1"
            )));
        }
        let replaced = if version > 1 {
            self.head(name).await?
        } else {
            None
        };
        let chunks = format!("{name}#{}", uuid::Uuid::now_v7());
        let pieces: Vec<&[u8]> = bytes.chunks(CHUNK_BYTES).collect();
        // The chunks are new items under a fresh key, read only once the head names them: no
        // condition needed, so they go 25 to a call.
        let puts = pieces
            .iter()
            .enumerate()
            .map(|(part, piece)| {
                let item = HashMap::from([
                    (NAME.to_owned(), string(&chunks)),
                    (PART.to_owned(), number(part)),
                    (
                        DATA.to_owned(),
                        AttributeValue::B(Blob::new(piece.to_vec())),
                    ),
                ]);
                let put = PutRequest::builder().set_item(Some(item)).build()?;
                Ok(WriteRequest::builder().put_request(put).build())
            })
            .collect::<std::result::Result<Vec<_>, BuildError>>()
            .map_err(|e| super::errors::build_error(SERVICE, e))?;
        if let Err(e) = batch_write::write_all(&self.client, &self.table, puts).await {
            // Some may be written: referenced by nothing, they would only take space.
            self.delete_chunks(&chunks, pieces.len() as u64).await;
            return Err(e);
        }
        let head: Item = HashMap::from([
            (NAME.to_owned(), string(name)),
            (PART.to_owned(), number(0)),
            (VERSION.to_owned(), number(version)),
            (PARTS.to_owned(), number(pieces.len())),
            (CHUNKS.to_owned(), string(&chunks)),
            (POSITIONS.to_owned(), string(positions_to_json(positions))),
            ("saved_at_ms".to_owned(), number(now_ms())),
        ]);
        let request = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(head));
        let request = if version == 1 {
            // `name` is a DynamoDB reserved word: it must go through a placeholder.
            request
                .condition_expression("attribute_not_exists(#name)")
                .expression_attribute_names("#name", NAME)
        } else {
            request
                .condition_expression("#version = :previous")
                .expression_attribute_names("#version", VERSION)
                .expression_attribute_values(":previous", number(version - 1))
        };
        let written = conditional_put(request.send().await, || {
            format!("model {name} (writing version {version})")
        });
        match written {
            Ok(()) => {
                if let Some(old) = replaced.filter(|old| old.version == version - 1) {
                    self.delete_chunks(&old.chunks, old.parts).await;
                }
                tracing::debug!(table = %self.table, name, version, parts = pieces.len(), "model saved");
                Ok(())
            }
            Err(e) => {
                // Lost (or failed): our chunks are referenced by nothing.
                self.delete_chunks(&chunks, pieces.len() as u64).await;
                Err(e)
            }
        }
    }
}
