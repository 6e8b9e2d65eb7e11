//! RetailMind's edges. Each outside system sits behind a small trait named for what it does:
//!
//! | trait | production | embedded default |
//! |---|---|---|
//! | [`EventSink`], [`StreamReader`] | Kinesis Data Streams | SQLite ordered log |
//! | [`CheckpointStore`], [`LeaseStore`] | DynamoDB | SQLite tables |
//! | [`SessionStore`] | DynamoDB | SQLite table |
//! | [`ModelStore`] | DynamoDB (chunked items) | SQLite table |
//! | [`LakeWriter`] | Kinesis Data Firehose → S3 | local folder, same key layout |
//!
//! [`connect`] picks the implementations from a [`BackendConfig`].

pub mod aws;
mod checkpoint;
pub mod clock;
mod config;
pub mod embedded;
mod error;
pub mod lake;
pub mod lease;
mod models;
pub mod service;
mod sessions;
pub mod settings;
pub mod spool;
pub mod stream;
#[cfg(test)]
mod test_fixtures;

use std::sync::Arc;

pub use checkpoint::CheckpointStore;
pub use config::{AwsConfig, BackendConfig, ValidationLimits, MAX_PARTITION_KEY_CHARS};
pub use error::{ConnectorError, Result};
pub use lake::{LakeRecord, LakeWriter, UndecodableRecord};
pub use lease::{Lease, LeaseStore};
pub use models::{ModelStore, StoredModel, StreamPositions};
pub use sessions::{Merge, SessionScan, SessionStore, StoredAt, MAX_ABSORBED};
pub use stream::{EventSink, ReadBatch, ShardInfo, StreamEntry, StreamReader, StreamRecord};

/// Every edge, ready to use. The collector uses `sink`, `dead_letters` and `models`
/// (to read); the processor the rest.
#[derive(Clone)]
pub struct Backend {
    pub sink: Arc<dyn EventSink>,
    /// Where rejected events go, with why, so that nothing a sender sent is silently dropped.
    pub dead_letters: Arc<dyn EventSink>,
    pub reader: Arc<dyn StreamReader>,
    pub checkpoints: Arc<dyn CheckpointStore>,
    /// Which processor instance reads which shard; the same rows as `checkpoints`.
    pub leases: Arc<dyn LeaseStore>,
    pub sessions: Arc<dyn SessionStore>,
    /// The recommendation model's snapshot: the processor saves it, the collector loads it.
    pub models: Arc<dyn ModelStore>,
    pub lake: Arc<dyn LakeWriter>,
}

/// Opens the backend that `config` names.
pub async fn connect(config: &BackendConfig) -> Result<Backend> {
    match config {
        BackendConfig::Embedded {
            data_dir,
            stream_retention_hours,
        } => embedded::open_retaining(data_dir, config::retention(*stream_retention_hours)),
        BackendConfig::Aws(aws_config) => {
            let sdk = aws::load_sdk_config(aws_config).await;
            Ok(aws::backend(&sdk, aws_config))
        }
    }
}
