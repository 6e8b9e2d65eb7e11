//! Creating what the pipeline needs on AWS, once: the Kinesis stream, the three DynamoDB tables
//! (sessions, checkpoints, models)
//! and the two Firehose delivery streams.
//!
//! [`provision`] creates only what is missing and waits until each resource is active; it
//! never changes or deletes an existing one, so running it again (or from two machines at once)
//! is harmless. An existing table whose key schema differs from the one the code uses is
//! reported as [`ConnectorError::Misconfigured`] instead of failing later on every write.

use std::error::Error;
use std::future::Future;
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, TableStatus,
    TimeToLiveSpecification, TimeToLiveStatus,
};
use aws_sdk_firehose::types::{
    DeliveryStreamStatus, DeliveryStreamType, ExtendedS3DestinationConfiguration,
};
use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kinesis::operation::describe_stream_summary::DescribeStreamSummaryError;
use aws_sdk_kinesis::types::StreamStatus;

use super::checkpoints::{CONSUMER, SHARD_ID};
use super::errors::{build_error, sdk_error};
use super::firehose::errors_delivery_stream;
use super::s3_layout::{s3_destination, S3Layout, ERRORS, EVENTS};
use super::session_item::{ANONYMOUS_ID, EXPIRES_AT, START_MS};
use crate::error::{ConnectorError, Result};
use crate::AwsConfig;

/// How long to wait for one resource to become active (Firehose can take minutes).
const ACTIVE_TIMEOUT: Duration = Duration::from_secs(600);

/// What [`provision`] needs beyond [`AwsConfig`]: where the lake is and how wide the stream is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LakeDestination {
    /// The lake bucket, e.g. `arn:aws:s3:::retailmind-lake`.
    pub bucket_arn: String,
    /// The IAM role Firehose assumes to write into the bucket.
    pub role_arn: String,
    /// Shards of the Kinesis stream, if it has to be created (an existing one keeps its own).
    pub shards: i32,
}

/// Creates the stream, tables and delivery streams `config` names if they are missing, and
/// waits until all are active.
///
/// # Lake layout
///
/// When `config` points at AWS itself (`endpoint_url` unset), both delivery streams use
/// Firehose dynamic partitioning, so objects land by event time like the embedded lake:
///
/// - events: prefix `events/dt=!{partitionKeyFromQuery:dt}/hour=!{partitionKeyFromQuery:hour}/`,
///   keys from a MetadataExtraction processor (JQ-1.6) on the event's `timestamp` (ms, UTC):
///   `{dt: (.timestamp / 1000 | floor | strftime("%Y-%m-%d")),
///   hour: (.timestamp / 1000 | floor | strftime("%H"))}`;
/// - undecodable records: prefix `errors/dt=!{partitionKeyFromQuery:dt}/`, `dt` from
///   `received_at_ms` the same way;
/// - Firehose's own failures: `errors/!{firehose:error-output-type}/dt=!{timestamp:yyyy-MM-dd}/`;
/// - buffering 64 MiB (the minimum with dynamic partitioning) or 60 s, uncompressed.
///
/// When `endpoint_url` is set (moto, LocalStack), which have no dynamic partitioning, the
/// streams get the static prefixes `events/` and `errors/` (error output `errors/`) instead.
pub async fn provision(sdk: &SdkConfig, config: &AwsConfig, lake: &LakeDestination) -> Result<()> {
    let dynamic_partitioning = config.endpoint_url.is_none();
    let kinesis = aws_sdk_kinesis::Client::new(sdk);
    ensure_stream(&kinesis, &config.stream_name, lake.shards).await?;
    // Dead letters are few; one shard is plenty.
    ensure_stream(&kinesis, &config.bad_events_stream, 1).await?;
    let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
    let sessions_key = [
        (ANONYMOUS_ID, ScalarAttributeType::S),
        (START_MS, ScalarAttributeType::N),
    ];
    ensure_table(&dynamodb, &config.sessions_table, &sessions_key).await?;
    if config.session_ttl_days.is_some() {
        ensure_ttl(&dynamodb, &config.sessions_table, EXPIRES_AT).await?;
    }
    let checkpoints_key = [
        (CONSUMER, ScalarAttributeType::S),
        (SHARD_ID, ScalarAttributeType::S),
    ];
    // The checkpoints table is also the lease table (`leases.rs`): same key, more attributes.
    ensure_table(&dynamodb, &config.checkpoints_table, &checkpoints_key).await?;
    let models_key = [
        (super::models::NAME, ScalarAttributeType::S),
        (super::models::PART, ScalarAttributeType::N),
    ];
    ensure_table(&dynamodb, &config.models_table, &models_key).await?;
    let firehose = aws_sdk_firehose::Client::new(sdk);
    let streams: [(String, S3Layout); 2] = [
        (config.delivery_stream.clone(), EVENTS),
        (errors_delivery_stream(config), ERRORS),
    ];
    for (name, layout) in streams {
        let destination = s3_destination(lake, &layout, dynamic_partitioning)?;
        ensure_delivery_stream(&firehose, &name, destination).await?;
    }
    Ok(())
}

async fn ensure_stream(client: &aws_sdk_kinesis::Client, name: &str, shards: i32) -> Result<()> {
    const SERVICE: &str = "kinesis";
    let status = || async {
        let output = client
            .describe_stream_summary()
            .stream_name(name)
            .send()
            .await?;
        Ok::<_, SdkError<DescribeStreamSummaryError>>(
            output
                .stream_description_summary()
                .map(|s| s.stream_status().clone()),
        )
    };
    let described = found(SERVICE, status().await, |e| {
        e.is_resource_not_found_exception()
    })?;
    if described.is_none() {
        tracing::info!(stream = name, shards, "creating Kinesis stream");
        let created = client
            .create_stream()
            .stream_name(name)
            .shard_count(shards)
            .send()
            .await;
        unless_in_use(SERVICE, created, |e| e.is_resource_in_use_exception())?;
    }
    wait_until_active(SERVICE, name, || async {
        let status = status().await.map_err(|e| sdk_error(SERVICE, e))?;
        Ok(matches!(
            status,
            Some(StreamStatus::Active | StreamStatus::Updating)
        ))
    })
    .await
}

/// Creates table `name` with the (hash, range) `key` if missing, on-demand billing.
async fn ensure_table(
    client: &aws_sdk_dynamodb::Client,
    name: &str,
    key: &[(&str, ScalarAttributeType); 2],
) -> Result<()> {
    const SERVICE: &str = "dynamodb";
    let described = client.describe_table().table_name(name).send().await;
    match found(SERVICE, described, |e| e.is_resource_not_found_exception())? {
        Some(output) => {
            if let Some(table) = output.table() {
                check_key_schema(name, table.key_schema(), key)?;
            }
        }
        None => {
            tracing::info!(table = name, "creating DynamoDB table");
            let mut request = client
                .create_table()
                .table_name(name)
                .billing_mode(BillingMode::PayPerRequest);
            for ((attribute, kind), key_type) in key.iter().zip([KeyType::Hash, KeyType::Range]) {
                request = request
                    .attribute_definitions(
                        AttributeDefinition::builder()
                            .attribute_name(*attribute)
                            .attribute_type(kind.clone())
                            .build()
                            .map_err(|e| build_error(SERVICE, e))?,
                    )
                    .key_schema(
                        KeySchemaElement::builder()
                            .attribute_name(*attribute)
                            .key_type(key_type)
                            .build()
                            .map_err(|e| build_error(SERVICE, e))?,
                    );
            }
            let created = request.send().await;
            unless_in_use(SERVICE, created, |e| e.is_resource_in_use_exception())?;
        }
    }
    wait_until_active(SERVICE, name, || async {
        let output = client
            .describe_table()
            .table_name(name)
            .send()
            .await
            .map_err(|e| sdk_error(SERVICE, e))?;
        Ok(output.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active))
    })
    .await
}

/// Turns on DynamoDB's TTL on `attribute` of `table` unless it is on already. TTL can be
/// changed only once an hour, so an existing setting on another attribute is reported, not
/// replaced.
async fn ensure_ttl(client: &aws_sdk_dynamodb::Client, table: &str, attribute: &str) -> Result<()> {
    const SERVICE: &str = "dynamodb";
    let described = client
        .describe_time_to_live()
        .table_name(table)
        .send()
        .await
        .map_err(|e| sdk_error(SERVICE, e))?;
    let current = described.time_to_live_description();
    let status = current.and_then(|d| d.time_to_live_status());
    let on = matches!(
        status,
        Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
    );
    match current.and_then(|d| d.attribute_name()) {
        Some(name) if on && name == attribute => return Ok(()),
        Some(name) if on => {
            return Err(ConnectorError::Misconfigured(format!(
                "table {table} expires items by {name}, expected {attribute}"
            )))
        }
        _ => {}
    }
    tracing::info!(table, attribute, "enabling DynamoDB TTL");
    client
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .attribute_name(attribute)
                .enabled(true)
                .build()
                .map_err(|e| build_error(SERVICE, e))?,
        )
        .send()
        .await
        .map_err(|e| sdk_error(SERVICE, e))?;
    Ok(())
}

fn check_key_schema(
    table: &str,
    actual: &[KeySchemaElement],
    expected: &[(&str, ScalarAttributeType); 2],
) -> Result<()> {
    let actual: Vec<(&str, &KeyType)> = actual
        .iter()
        .map(|k| (k.attribute_name(), k.key_type()))
        .collect();
    let wanted = [
        (expected[0].0, &KeyType::Hash),
        (expected[1].0, &KeyType::Range),
    ];
    if actual == wanted {
        Ok(())
    } else {
        Err(ConnectorError::Misconfigured(format!(
            "table {table} has key {actual:?}, expected {wanted:?}"
        )))
    }
}

async fn ensure_delivery_stream(
    client: &aws_sdk_firehose::Client,
    name: &str,
    destination: ExtendedS3DestinationConfiguration,
) -> Result<()> {
    const SERVICE: &str = "firehose";
    let describe = || async {
        client
            .describe_delivery_stream()
            .delivery_stream_name(name)
            .send()
            .await
    };
    let described = found(SERVICE, describe().await, |e| {
        e.is_resource_not_found_exception()
    })?;
    if described.is_none() {
        tracing::info!(delivery_stream = name, "creating Firehose delivery stream");
        let created = client
            .create_delivery_stream()
            .delivery_stream_name(name)
            .delivery_stream_type(DeliveryStreamType::DirectPut)
            .extended_s3_destination_configuration(destination)
            .send()
            .await;
        unless_in_use(SERVICE, created, |e| e.is_resource_in_use_exception())?;
    }
    wait_until_active(SERVICE, name, || async {
        let output = describe().await.map_err(|e| sdk_error(SERVICE, e))?;
        let Some(description) = output.delivery_stream_description() else {
            return Ok(false);
        };
        match description.delivery_stream_status() {
            DeliveryStreamStatus::Active => Ok(true),
            DeliveryStreamStatus::CreatingFailed => Err(ConnectorError::Misconfigured(format!(
                "delivery stream {name} failed to create: {:?}",
                description.failure_description()
            ))),
            _ => Ok(false),
        }
    })
    .await
}

/// A describe call's answer: `Some` output when the resource exists, `None` when `not_found`
/// says the service answered that it does not, any other error as is.
fn found<T, E>(
    service: &'static str,
    described: std::result::Result<T, SdkError<E>>,
    not_found: impl FnOnce(&E) -> bool,
) -> Result<Option<T>>
where
    E: ProvideErrorMetadata + Error + 'static,
{
    match described {
        Ok(output) => Ok(Some(output)),
        Err(e) if e.as_service_error().is_some_and(not_found) => Ok(None),
        Err(e) => Err(sdk_error(service, e)),
    }
}

/// A create call's answer: created, or `in_use` (created meanwhile by another run), is fine.
fn unless_in_use<T, E>(
    service: &'static str,
    created: std::result::Result<T, SdkError<E>>,
    in_use: impl FnOnce(&E) -> bool,
) -> Result<()>
where
    E: ProvideErrorMetadata + Error + 'static,
{
    match created {
        Err(e) if !e.as_service_error().is_some_and(in_use) => Err(sdk_error(service, e)),
        _ => Ok(()),
    }
}

/// Polls `is_active` with growing pauses until it says yes or [`ACTIVE_TIMEOUT`] passed.
async fn wait_until_active<F, Fut>(
    service: &'static str,
    name: &str,
    mut is_active: F,
) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool>>,
{
    let started = Instant::now();
    let mut pause = Duration::from_millis(250);
    while !is_active().await? {
        if started.elapsed() > ACTIVE_TIMEOUT {
            return Err(ConnectorError::unavailable(
                service,
                format!("{name} not active after {ACTIVE_TIMEOUT:?}"),
            ));
        }
        tracing::debug!(service, name, "waiting until active");
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(5));
    }
    Ok(())
}
