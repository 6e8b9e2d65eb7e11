//! `GET /metrics` of the processor shows how far behind each shard is after a batch.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use bytes::Bytes;
use retailmind_connectors::{embedded, StreamRecord};
use retailmind_processor::{metrics, Processor, ProcessorConfig};
use serde_json::json;
use tower::ServiceExt;

#[tokio::test]
async fn metrics_show_millis_behind_per_shard_and_held_leases() {
    let dir = tempfile::tempdir().unwrap();
    let backend = embedded::open(dir.path()).unwrap();
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
    let config = ProcessorConfig {
        consumer: "metrics-test".into(),
        ..ProcessorConfig::default()
    };
    let router = metrics::router();
    assert_eq!(Processor::new(backend, &config).drain().await.unwrap(), 1);

    let response = router
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let text = String::from_utf8(body.to_vec()).unwrap();
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
