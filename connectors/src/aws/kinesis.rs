//! The event stream on Kinesis Data Streams: [`EventSink`] through PutRecords and
//! [`StreamReader`] through ListShards, GetShardIterator and GetRecords.
//!
//! Appends go out in PutRecords calls of at most 500 records and 5 MiB, one call after the
//! other so records of one partition key keep their order (unless a partial failure forces a
//! resend, which Kinesis itself cannot order either). A record over 1 MiB (data plus partition
//! key) fails the whole append before anything is sent.
//!
//! Reads keep the `NextShardIterator` of each shard, keyed by the position it continues from,
//! so a consumer that reads on from where it left off needs one GetRecords call per read and no
//! GetShardIterator call; any other position, or an expired iterator, gets a fresh one. A
//! shard Kinesis no longer knows and no longer lists (a closed shard past its retention) is
//! read as ended.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use aws_sdk_kinesis::error::ProvideErrorMetadata;
use aws_sdk_kinesis::operation::get_records::{GetRecordsError, GetRecordsOutput};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, ShardIteratorType, StreamStatus};
use aws_sdk_kinesis::Client;
use bytes::Bytes;

use super::batch::{chunk, KINESIS_PUT_RECORDS};
use super::errors::{build_error, is_throttling_code, sdk_error};
use super::retry::{send_all_tracked, EntryFailure, Outcomes, RetryPolicy};
use crate::error::{ConnectorError, Result};
use crate::stream::{EventSink, ReadBatch, ShardInfo, StreamEntry, StreamReader, StreamRecord};

const SERVICE: &str = "kinesis";
/// Least time between two GetRecords calls of a shard: Kinesis answers 5 a second per shard.
pub const READ_GAP: std::time::Duration = std::time::Duration::from_millis(200);
/// GetRecords returns at most this many records per call.
const MAX_GET_RECORDS: usize = 10_000;
/// Kinesis partition keys are 1 to 256 Unicode characters.
const MAX_PARTITION_KEY_CHARS: usize = 256;

type SdkError<E> = aws_sdk_kinesis::error::SdkError<E>;

/// One Kinesis data stream, written by the collector and read by the processor.
pub(crate) struct KinesisStream {
    client: Client,
    stream_name: String,
    retry: RetryPolicy,
    iterators: IteratorCache,
}

impl KinesisStream {
    pub(crate) fn new(client: Client, stream_name: impl Into<String>) -> Self {
        KinesisStream {
            client,
            stream_name: stream_name.into(),
            retry: RetryPolicy::default(),
            iterators: IteratorCache::default(),
        }
    }

    /// One PutRecords call; the outcome of each record in order.
    async fn put_records(&self, records: Vec<StreamRecord>) -> Result<Outcomes> {
        let entries = records
            .into_iter()
            .map(|record| {
                PutRecordsRequestEntry::builder()
                    .partition_key(record.partition_key)
                    .data(Blob::new(Vec::from(record.data)))
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| build_error(SERVICE, e))?;
        let output = self
            .client
            .put_records()
            .stream_name(&self.stream_name)
            .set_records(Some(entries))
            .send()
            .await
            .map_err(|e| sdk_error(SERVICE, e))?;
        Ok(output
            .records()
            .iter()
            .map(|entry| {
                entry.error_code().map(|code| EntryFailure {
                    code: code.to_owned(),
                    message: entry.error_message().unwrap_or_default().to_owned(),
                    throttled: is_throttling_code(code),
                })
            })
            .collect())
    }

    /// A new iterator for `shard_id` just after `after`, or at the oldest record.
    async fn fresh_iterator(
        &self,
        shard_id: &str,
        after: Option<&str>,
    ) -> std::result::Result<String, ReadFailure> {
        let request = self
            .client
            .get_shard_iterator()
            .stream_name(&self.stream_name)
            .shard_id(shard_id);
        let request = match after {
            Some(sequence) => request
                .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                .starting_sequence_number(sequence),
            None => request.shard_iterator_type(ShardIteratorType::TrimHorizon),
        };
        let output = request.send().await.map_err(ReadFailure::of)?;
        output.shard_iterator().map(str::to_owned).ok_or_else(|| {
            ReadFailure::Other(ConnectorError::unavailable(
                SERVICE,
                format!("no shard iterator for {shard_id}"),
            ))
        })
    }

    async fn get_records(
        &self,
        iterator: String,
        limit: i32,
    ) -> Result<GetRecordsOutput, SdkError<GetRecordsError>> {
        self.client
            .get_records()
            .shard_iterator(iterator)
            .limit(limit)
            .send()
            .await
    }

    /// One GetRecords call for `shard_id` after `after`, through the cached iterator or a
    /// fresh one, and again through a fresh one if the iterator had expired.
    async fn records_after(
        &self,
        shard_id: &str,
        after: Option<&str>,
        limit: i32,
    ) -> std::result::Result<GetRecordsOutput, ReadFailure> {
        let iterator = match self.iterators.get(shard_id, after) {
            Some(iterator) => iterator,
            None => self.fresh_iterator(shard_id, after).await?,
        };
        match self.get_records(iterator, limit).await {
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_expired_iterator_exception()) =>
            {
                tracing::debug!(shard_id, "shard iterator expired; getting a fresh one");
                let iterator = self.fresh_iterator(shard_id, after).await?;
                // The refused call counts against the shard's 5 GetRecords a second.
                tokio::time::sleep(READ_GAP).await;
                self.get_records(iterator, limit)
                    .await
                    .map_err(ReadFailure::of)
            }
            other => other.map_err(ReadFailure::of),
        }
    }
}

/// Why a shard's read failed: Kinesis knows no such shard, or anything else.
enum ReadFailure {
    NoSuchShard(ConnectorError),
    Other(ConnectorError),
}

impl ReadFailure {
    fn of<E: ProvideErrorMetadata + std::error::Error>(e: E) -> Self {
        let missing = e.code() == Some("ResourceNotFoundException");
        let e = sdk_error(SERVICE, e);
        if missing {
            ReadFailure::NoSuchShard(e)
        } else {
            ReadFailure::Other(e)
        }
    }
}

#[async_trait]
impl EventSink for KinesisStream {
    async fn append(&self, records: Vec<StreamRecord>) -> Result<()> {
        if let Some(record) = records.iter().find(|r| {
            r.partition_key.is_empty() || r.partition_key.chars().count() > MAX_PARTITION_KEY_CHARS
        }) {
            return Err(ConnectorError::Misconfigured(format!(
                "{SERVICE}: partition key {:?} is not 1 to {MAX_PARTITION_KEY_CHARS} characters",
                record.partition_key
            )));
        }
        let total = records.len();
        let chunks = chunk(SERVICE, records, &KINESIS_PUT_RECORDS, |r| {
            r.partition_key.len() + r.data.len()
        })?;
        let mut offset = 0;
        for records in chunks {
            let len = records.len();
            let sent = send_all_tracked(SERVICE, &self.retry, records, |batch| {
                self.put_records(batch)
            })
            .await;
            if let Err((cause, refused)) = sent {
                // Earlier calls stored everything; this one all but `refused`; later ones nothing.
                let stored: Vec<usize> = (0..offset)
                    .chain(
                        (0..len)
                            .filter(|i| !refused.contains(i))
                            .map(|i| offset + i),
                    )
                    .collect();
                return Err(if stored.is_empty() {
                    cause
                } else {
                    ConnectorError::PartlyStored {
                        stored,
                        cause: Box::new(cause),
                    }
                });
            }
            offset += len;
        }
        tracing::debug!(stream = %self.stream_name, records = total, "appended");
        Ok(())
    }

    async fn ready(&self) -> Result<()> {
        let output = self
            .client
            .describe_stream_summary()
            .stream_name(&self.stream_name)
            .send()
            .await
            .map_err(|e| sdk_error(SERVICE, e))?;
        let status = output
            .stream_description_summary()
            .map(|summary| summary.stream_status());
        match status {
            Some(StreamStatus::Active | StreamStatus::Updating) => Ok(()),
            other => Err(ConnectorError::unavailable(
                SERVICE,
                format!("stream {} is {other:?}", self.stream_name),
            )),
        }
    }
}

#[async_trait]
impl StreamReader for KinesisStream {
    async fn shards(&self) -> Result<Vec<ShardInfo>> {
        let mut shards = Vec::new();
        let mut next_token: Option<String> = None;
        loop {
            // ListShards takes either the stream name or a NextToken, never both.
            let request = match next_token.take() {
                Some(token) => self.client.list_shards().next_token(token),
                None => self.client.list_shards().stream_name(&self.stream_name),
            };
            let output = request.send().await.map_err(|e| sdk_error(SERVICE, e))?;
            shards.extend(output.shards().iter().map(|shard| {
                ShardInfo {
                    shard_id: shard.shard_id().to_owned(),
                    parent_shard_ids: shard
                        .parent_shard_id()
                        .into_iter()
                        .chain(shard.adjacent_parent_shard_id())
                        .map(str::to_owned)
                        .collect(),
                }
            }));
            match output.next_token() {
                Some(token) if !token.is_empty() => next_token = Some(token.to_owned()),
                _ => return Ok(shards),
            }
        }
    }

    async fn read(&self, shard_id: &str, after: Option<&str>, max: usize) -> Result<ReadBatch> {
        if max == 0 {
            return Ok(ReadBatch::default());
        }
        let limit = i32::try_from(max.min(MAX_GET_RECORDS)).unwrap_or(i32::MAX);
        let output = match self.records_after(shard_id, after, limit).await {
            Ok(output) => output,
            Err(ReadFailure::Other(e)) => return Err(e),
            Err(ReadFailure::NoSuchShard(e)) => {
                // A closed shard ages out of the stream once its retention has passed; if that
                // happened since the shards were listed, it is done: its records are gone, and
                // waiting would hold its children back for good. A stream or shard that is
                // still listed yet unknown is a real misconfiguration.
                if self.shards().await?.iter().any(|s| s.shard_id == shard_id) {
                    return Err(e);
                }
                tracing::warn!(
                    stream = %self.stream_name,
                    shard_id,
                    after,
                    "shard aged out of the stream before it was read to its end; records past \
                     the checkpoint are gone with it"
                );
                self.iterators.forget(shard_id);
                return Ok(ReadBatch {
                    shard_ended: true,
                    ..ReadBatch::default()
                });
            }
        };

        let entries: Vec<StreamEntry> = output
            .records
            .into_iter()
            .map(|record| StreamEntry {
                sequence: record.sequence_number,
                partition_key: record.partition_key.unwrap_or_default(),
                data: Bytes::from(record.data.into_inner()),
            })
            .collect();
        let position = entries
            .last()
            .map(|entry| entry.sequence.clone())
            .or_else(|| after.map(str::to_owned));
        let shard_ended = match output.next_shard_iterator {
            Some(next) => {
                self.iterators.store(shard_id, position, next);
                false
            }
            None => {
                self.iterators.forget(shard_id);
                true
            }
        };
        Ok(ReadBatch {
            entries,
            millis_behind_latest: output.millis_behind_latest,
            shard_ended,
        })
    }
}

/// The next iterator of each shard and the position (last sequence read, `None` for the start
/// of the shard) it continues from.
#[derive(Default)]
struct IteratorCache {
    by_shard: Mutex<HashMap<String, (Option<String>, String)>>,
}

impl IteratorCache {
    /// The cached iterator of `shard_id` if it continues right after `after`.
    fn get(&self, shard_id: &str, after: Option<&str>) -> Option<String> {
        let by_shard = self.by_shard.lock().unwrap_or_else(|e| e.into_inner());
        by_shard
            .get(shard_id)
            .filter(|(position, _)| position.as_deref() == after)
            .map(|(_, iterator)| iterator.clone())
    }

    fn store(&self, shard_id: &str, position: Option<String>, iterator: String) {
        let mut by_shard = self.by_shard.lock().unwrap_or_else(|e| e.into_inner());
        by_shard.insert(shard_id.to_owned(), (position, iterator));
    }

    fn forget(&self, shard_id: &str) {
        let mut by_shard = self.by_shard.lock().unwrap_or_else(|e| e.into_inner());
        by_shard.remove(shard_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_iterator_is_used_only_from_its_own_position() {
        let cache = IteratorCache::default();
        cache.store("shard-0", Some("42".into()), "it-after-42".into());
        cache.store("shard-1", None, "it-from-start".into());
        assert_eq!(
            cache.get("shard-0", Some("42")).as_deref(),
            Some("it-after-42")
        );
        assert_eq!(cache.get("shard-0", Some("41")), None);
        assert_eq!(cache.get("shard-0", None), None);
        assert_eq!(cache.get("shard-1", None).as_deref(), Some("it-from-start"));
        cache.store("shard-0", Some("50".into()), "it-after-50".into());
        assert_eq!(cache.get("shard-0", Some("42")), None);
        cache.forget("shard-1");
        assert_eq!(cache.get("shard-1", None), None);
    }
}
