//! The event stream (Amazon Kinesis Data Streams in production): the collector appends to it,
//! the processor reads it shard by shard.

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::Result;

/// One record to append: its bytes and the key that picks its shard.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamRecord {
    pub partition_key: String,
    pub data: Bytes,
}

/// Appends records to the stream. The collector acknowledges a request only after `append`
/// returned `Ok`, so `Ok` must mean every record is durably stored.
#[async_trait]
pub trait EventSink: Send + Sync + 'static {
    /// Stores every record or fails. Implementations retry partial failures themselves; on `Err`
    /// some records may be stored already, which is safe because consumers drop repeated event
    /// ids.
    async fn append(&self, records: Vec<StreamRecord>) -> Result<()>;

    /// Whether the stream can take writes now (for `/readyz`).
    async fn ready(&self) -> Result<()>;
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardInfo {
    pub shard_id: String,
    /// Parent shards after a split or merge: a child is read only once its parents are done.
    pub parent_shard_ids: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct StreamEntry {
    /// Position in the shard; checkpoints store it. Decimal digits, increasing within a shard.
    pub sequence: String,
    pub partition_key: String,
    pub data: Bytes,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReadBatch {
    pub entries: Vec<StreamEntry>,
    /// How far behind the newest record of the shard this read is, in ms, when known.
    pub millis_behind_latest: Option<i64>,
    /// The shard was closed by resharding and everything in it has been read.
    pub shard_ended: bool,
}

/// Reads the stream one shard at a time.
#[async_trait]
pub trait StreamReader: Send + Sync + 'static {
    async fn shards(&self) -> Result<Vec<ShardInfo>>;

    /// Up to `max` records of `shard_id` after sequence `after` (`None`: from the oldest).
    ///
    /// A shard that aged out of the stream (no longer listed, its records gone) must be read as
    /// ended, not as an error: the processor lists the shards only every half lease duration,
    /// and reads the shards it holds in between.
    async fn read(&self, shard_id: &str, after: Option<&str>, max: usize) -> Result<ReadBatch>;
}

/// Orders two sequence numbers of the same shard (decimal strings of any length).
pub fn sequence_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}
