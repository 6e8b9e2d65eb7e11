//! The Lambda entry point with Kinesis event source mapping events, as AWS delivers them.

use std::sync::Arc;

use async_trait::async_trait;
use aws_lambda_events::event::kinesis::KinesisEvent;
use base64::Engine;
use retailmind_connectors::{
    embedded, Backend, ConnectorError, LakeRecord, LakeWriter, UndecodableRecord,
};
use retailmind_processor::{lambda, Processor, ProcessorConfig};
use serde_json::json;

const T0: i64 = 1_764_064_800_000;

fn kinesis_event(events: &[serde_json::Value]) -> KinesisEvent {
    let records: Vec<serde_json::Value> = events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            json!({
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": e["anonymous_id"],
                    "sequenceNumber": format!("4959033252703209553931234567890123456789012345678901{:04}", i),
                    "data": base64::engine::general_purpose::STANDARD.encode(e.to_string()),
                    "approximateArrivalTimestamp": 1764064800.123
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": format!("shardId-000000000000:4959033252703209553931234567890123456789012345678901{:04}", i),
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": "arn:aws:iam::123456789012:role/lambda-role",
                "awsRegion": "us-east-1",
                "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/retailmind-events"
            })
        })
        .collect();
    serde_json::from_value(json!({ "Records": records })).expect("a Kinesis event")
}

fn page_view(n: u32, ts: i64) -> serde_json::Value {
    json!({
        "event_id": format!("01936a1c-3b5e-7cc4-9a1e-{n:012x}"),
        "type": "page_view",
        "anonymous_id": "dana",
        "timestamp": ts,
        "context": {"page": {"url": "https://shop.example/"}},
        "properties": {}
    })
}

fn processor(backend: Backend) -> Processor {
    Processor::new(backend, &ProcessorConfig::default())
}

#[tokio::test]
async fn a_batch_becomes_sessions_and_reports_no_failure_even_when_redelivered() {
    let dir = tempfile::tempdir().unwrap();
    let backend = embedded::open(dir.path()).unwrap();
    let event = kinesis_event(&[page_view(1, T0), page_view(2, T0 + 60_000)]);
    let p = processor(backend.clone());

    let response = lambda::handle(&p, event.clone()).await;
    assert!(response.batch_item_failures.is_empty());
    // Lambda delivers a batch again after a timeout: nothing may be counted twice.
    let again = lambda::handle(&p, event).await;
    assert!(again.batch_item_failures.is_empty());

    let sessions = backend.sessions.sessions_of("dana").await.unwrap();
    assert_eq!(sessions.len(), 1);
    assert_eq!((sessions[0].event_count, sessions[0].page_views), (2, 2));
}

/// A lake that is down: Firehose unavailable, on demand.
struct DownLake;

#[async_trait]
impl LakeWriter for DownLake {
    async fn write_events(&self, _: &[LakeRecord]) -> retailmind_connectors::Result<()> {
        Err(ConnectorError::unavailable(
            "firehose",
            "service unavailable",
        ))
    }
    async fn write_errors(&self, _: &[UndecodableRecord]) -> retailmind_connectors::Result<()> {
        Err(ConnectorError::unavailable(
            "firehose",
            "service unavailable",
        ))
    }
}

#[tokio::test]
async fn a_failed_batch_asks_lambda_to_retry_from_its_first_record() {
    let dir = tempfile::tempdir().unwrap();
    let mut backend = embedded::open(dir.path()).unwrap();
    backend.lake = Arc::new(DownLake);
    let event = kinesis_event(&[page_view(1, T0), page_view(2, T0 + 1000)]);
    let first_sequence = event.records[0].kinesis.sequence_number.clone();

    let response = lambda::handle(&processor(backend), event).await;
    let failures: Vec<_> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    assert_eq!(failures, [Some(first_sequence)]);
}
