//! The production edges on AWS, with the official aws-sdk-rust clients.
//!
//! | trait | service | file |
//! |---|---|---|
//! | [`EventSink`](crate::EventSink), [`StreamReader`](crate::StreamReader) | Kinesis Data Streams | `kinesis.rs` |
//! | [`CheckpointStore`](crate::CheckpointStore) | DynamoDB | `checkpoints.rs` |
//! | [`LeaseStore`](crate::LeaseStore) | DynamoDB (the checkpoints table) | `leases.rs` |
//! | [`SessionStore`](crate::SessionStore) | DynamoDB | `sessions.rs`, `session_item.rs` |
//! | [`ModelStore`](crate::ModelStore) | DynamoDB (snapshot in chunk items) | `models.rs` |
//! | [`LakeWriter`](crate::LakeWriter) | Kinesis Data Firehose → S3 | `firehose.rs`, `s3_layout.rs` |
//!
//! Kinesis PutRecords and Firehose PutRecordBatch share their batching (`batch.rs`: records,
//! bytes per call, bytes per record) and their resending of refused entries with backoff and
//! jitter (`retry.rs`); only the call itself differs. SDK failures become [`ConnectorError`]s
//! in one place (`errors.rs`): throttling is `Throttled`, a missing resource, bad input or a
//! denied permission `Misconfigured`, anything else `Unavailable`.
//!
//! Design choices, each documented in its file:
//! - checkpoints: hash key `consumer`, range key `shard_id`; a conditional write on a
//!   zero-padded copy of the sequence number keeps them moving forward only; the same item
//!   is the shard's lease (owner, counter, parents), so a checkpoint is conditional on
//!   holding the lease in one write;
//! - sessions: hash key `anonymous_id`, range key `start_ms`, one attribute per field,
//!   versioned conditional writes;
//! - undecodable records: their own delivery stream, [`errors_delivery_stream`], under
//!   `errors/`;
//! - lake layout: Firehose dynamic partitioning by event time on AWS, static prefixes on
//!   emulators ([`provision`] picks by whether `endpoint_url` is set).
//!
//! [`ConnectorError`]: crate::ConnectorError

mod batch;
pub mod batch_write;
mod checkpoints;
mod errors;
mod firehose;
mod kinesis;
mod leases;
mod models;
mod pages;
mod provision;
mod retry;
mod s3_layout;
mod session_item;
mod sessions;

use std::sync::Arc;
use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};

pub use firehose::errors_delivery_stream;
pub use kinesis::READ_GAP as KINESIS_READ_GAP;
pub use models::CHUNK_BYTES;
pub use provision::{provision, LakeDestination};

use crate::{AwsConfig, Backend};

/// The SDK configuration for `c`: credentials from the default chain (environment, profile,
/// instance or task role), the region of `c`, and its `endpoint_url` for every service when set.
pub async fn load_sdk_config(c: &AwsConfig) -> SdkConfig {
    let mut loader =
        aws_config::defaults(BehaviorVersion::latest()).region(Region::new(c.region.clone()));
    if let Some(endpoint_url) = &c.endpoint_url {
        loader = loader.endpoint_url(endpoint_url);
    }
    loader.timeout_config(timeouts(c)).load().await
}

/// How long the SDK waits for AWS: to connect, for one attempt ([`AwsConfig::call_timeout_secs`])
/// and for a call with its retries (three attempts and their backoff).
pub fn timeouts(c: &AwsConfig) -> aws_config::timeout::TimeoutConfig {
    let attempt = Duration::from_secs(c.call_timeout_secs.max(1));
    aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_millis(3_100).min(attempt))
        .operation_attempt_timeout(attempt)
        .operation_timeout(attempt * 3 + Duration::from_secs(5))
        .build()
}

/// Every edge on the AWS resources `c` names. Makes no calls; [`provision`] creates the
/// resources, [`EventSink::ready`](crate::EventSink::ready) checks the stream.
pub fn backend(sdk: &SdkConfig, c: &AwsConfig) -> Backend {
    let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
    let stream = Arc::new(kinesis::KinesisStream::new(
        aws_sdk_kinesis::Client::new(sdk),
        &c.stream_name,
    ));
    let dead_letters = Arc::new(kinesis::KinesisStream::new(
        aws_sdk_kinesis::Client::new(sdk),
        &c.bad_events_stream,
    ));
    Backend {
        sink: stream.clone(),
        dead_letters,
        reader: stream,
        checkpoints: Arc::new(checkpoints::DynamoCheckpoints::new(
            dynamodb.clone(),
            &c.checkpoints_table,
        )),
        leases: Arc::new(leases::DynamoLeases::new(
            dynamodb.clone(),
            &c.checkpoints_table,
        )),
        models: Arc::new(models::DynamoModels::new(dynamodb.clone(), &c.models_table)),
        sessions: Arc::new(sessions::DynamoSessions::new(
            dynamodb,
            &c.sessions_table,
            c.session_ttl_days,
        )),
        lake: Arc::new(firehose::FirehoseLake::new(
            aws_sdk_firehose::Client::new(sdk),
            &c.delivery_stream,
            errors_delivery_stream(c),
        )),
    }
}
