//! What the collector's integration tests share: the embedded backend in a temporary directory,
//! reading back what it stored, and building batches.
#![allow(dead_code)] // each test binary uses a part

use axum::body::Body;
use axum::http::Response;
use axum::Router;
use http_body_util::BodyExt;
use retailmind_collector::{router, AppState, CollectorConfig};
pub use retailmind_connectors::clock::now_ms;
use retailmind_connectors::{embedded, Backend, ConnectorError, EventSink, StreamRecord};
use retailmind_schema::Event;
use serde_json::{json, Value};

/// The embedded backend, in a temporary directory removed when this is dropped.
pub struct Embedded {
    pub dir: tempfile::TempDir,
    pub backend: Backend,
}

impl Embedded {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let backend = embedded::open(dir.path()).unwrap();
        Embedded { dir, backend }
    }

    /// The collector's state over this backend's stream and dead letters.
    pub fn state(&self, config: &CollectorConfig) -> AppState {
        AppState::new(
            self.backend.sink.clone(),
            self.backend.dead_letters.clone(),
            config,
        )
    }

    /// The server's router over this backend.
    pub fn router(&self, config: &CollectorConfig) -> Router {
        router(self.state(config), config)
    }

    /// The events the stream holds, oldest first.
    pub async fn stored(&self) -> Vec<Event> {
        self.stored_with_partition_keys()
            .await
            .into_iter()
            .map(|(_, event)| event)
            .collect()
    }

    /// The events the stream holds, oldest first, each with the partition key it was stored under.
    pub async fn stored_with_partition_keys(&self) -> Vec<(String, Event)> {
        let batch = self
            .backend
            .reader
            .read(embedded::SHARD_ID, None, 1000)
            .await
            .unwrap();
        batch
            .entries
            .into_iter()
            .map(|e| (e.partition_key, serde_json::from_slice(&e.data).unwrap()))
            .collect()
    }

    /// The dead letters stored, oldest first, each as its JSON text.
    pub fn dead_letters(&self) -> Vec<String> {
        let conn = rusqlite::Connection::open(self.dir.path().join(embedded::DB_FILE)).unwrap();
        let mut query = conn
            .prepare("SELECT CAST(data AS TEXT) FROM dead_letters ORDER BY rowid")
            .unwrap();
        let letters = query
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<Vec<String>, _>>()
            .unwrap();
        letters
    }
}

/// A stream that is down, and says so when asked whether it is ready: what the real parts
/// cannot be made to do on demand.
pub struct DownSink;

#[async_trait::async_trait]
impl EventSink for DownSink {
    async fn append(&self, _: Vec<StreamRecord>) -> retailmind_connectors::Result<()> {
        Err(ConnectorError::unavailable("kinesis", "connection refused"))
    }
    async fn ready(&self) -> retailmind_connectors::Result<()> {
        Err(ConnectorError::unavailable("kinesis", "connection refused"))
    }
}

/// The response body as JSON, `null` when it is not JSON.
pub async fn json_of(response: Response<Body>) -> Value {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap_or(Value::Null)
}

/// `01936a1c-3b5e-7cc4-9a1e-` followed by `n` in 12 hex digits.
pub fn uuid_ending(n: u64) -> String {
    format!("01936a1c-3b5e-7cc4-9a1e-{n:012x}")
}

/// A valid page view of `https://shop.example/`; `ip` is what the client claims in
/// `context.ip` (the collector must not keep it).
pub fn page_view(event_id: String, anonymous_id: &str, timestamp: i64, ip: Option<&str>) -> Value {
    let mut context = json!({"page": {"url": "https://shop.example/"}});
    if let Some(ip) = ip {
        context["ip"] = json!(ip);
    }
    json!({
        "event_id": event_id,
        "type": "page_view",
        "anonymous_id": anonymous_id,
        "timestamp": timestamp,
        "context": context,
        "properties": {}
    })
}

/// A tracker batch body, sent now.
pub fn batch_of(batch_id: &str, events: Vec<Value>) -> String {
    json!({"batch_id": batch_id, "sent_at": now_ms(), "events": events}).to_string()
}
