//! `GET /metrics` of the processor shows how far behind each shard is after a batch, and counts
//! the batches that failed.

use std::sync::Arc;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use bytes::Bytes;
use retailmind_connectors::{
    embedded, Backend, ConnectorError, LakeRecord, LakeWriter, StreamRecord, UndecodableRecord,
};
use retailmind_processor::{metrics, Processor, ProcessorConfig};
use serde_json::json;
use tower::ServiceExt;

/// An embedded backend in `dir` whose log holds one page view.
async fn backend_with_one_event(dir: &std::path::Path) -> Backend {
    let backend = embedded::open(dir).unwrap();
    let event = json!({
        "event_id": "01936a1c-3b5e-7cc4-9a1e-000000000001",
        "type": "page_view",
        "anonymous_id": "mia",
        "timestamp": 1_764_064_800_000_i64,
        "context": {"page": {"url": "https://shop.example/"}},
        "properties": {}
    });
    backend
        .sink
        .append(vec![StreamRecord {
            partition_key: "mia".into(),
            data: Bytes::from(event.to_string()),
        }])
        .await
        .unwrap();
    backend
}

async fn scrape(router: axum::Router) -> String {
    let response = router
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    String::from_utf8(body.to_vec()).unwrap()
}

#[tokio::test]
async fn metrics_show_millis_behind_per_shard_and_held_leases() {
    let dir = tempfile::tempdir().unwrap();
    let backend = backend_with_one_event(dir.path()).await;
    let config = ProcessorConfig {
        consumer: "metrics-test".into(),
        ..ProcessorConfig::default()
    };
    let router = metrics::router();
    assert_eq!(Processor::new(backend, &config).drain().await.unwrap(), 1);

    let text = scrape(router).await;
    let behind = format!(
        "shard_millis_behind{{consumer=\"metrics-test\",shard_id=\"{}\"}} 0",
        embedded::SHARD_ID
    );
    assert!(text.contains(&behind), "{text}");
    assert!(
        text.contains("processor_records_processed_total{consumer=\"metrics-test\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("processor_leases_held{consumer=\"metrics-test\"}"),
        "{text}"
    );
}

/// A lake that cannot be reached.
struct DownLake;

impl DownLake {
    fn down() -> ConnectorError {
        ConnectorError::Unavailable {
            service: "lake",
            detail: "down for the test".into(),
        }
    }
}

#[async_trait]
impl LakeWriter for DownLake {
    async fn write_events(&self, _: &[LakeRecord]) -> retailmind_connectors::Result<()> {
        Err(Self::down())
    }

    async fn write_errors(&self, _: &[UndecodableRecord]) -> retailmind_connectors::Result<()> {
        Err(Self::down())
    }
}

#[tokio::test]
async fn a_failed_batch_is_counted_for_its_shard() {
    let dir = tempfile::tempdir().unwrap();
    let mut backend = backend_with_one_event(dir.path()).await;
    backend.lake = Arc::new(DownLake);
    let config = ProcessorConfig {
        consumer: "down-lake".into(),
        ..ProcessorConfig::default()
    };
    let router = metrics::router();
    let processor = Processor::new(backend, &config);
    let failed = processor.poll_once().await.expect_err("the lake is down");
    assert!(failed.is_retryable(), "{failed}");

    let text = scrape(router).await;
    let counted = format!(
        "processor_batch_failures_total{{consumer=\"down-lake\",shard_id=\"{}\",retryable=\"true\"}} 1",
        embedded::SHARD_ID
    );
    assert!(text.contains(&counted), "{text}");
    assert!(
        !text.contains("processor_records_processed_total{consumer=\"down-lake\"}"),
        "nothing processed while the lake is down: {text}"
    );
}
