//! What an outage leaves in the answer and in the log. A test binary of its own: tracing
//! caches per call site whether anyone listens, and a test thread without a subscriber, in the
//! same process at the same moment, could leave the request's span cached as unheard.

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use common::{batch_of, json_of, now_ms, page_view, uuid_ending, DownSink};
use retailmind_collector::{router, AppState, CollectorConfig, KeyKind, WriteKeyConfig};
use tower::ServiceExt;

fn secret_key() -> WriteKeyConfig {
    WriteKeyConfig {
        key: "sk_live_shop".into(),
        name: "shop backend".into(),
        kind: KeyKind::Secret,
        origins: vec![],
    }
}

fn batch() -> String {
    let events = (1..=2)
        .map(|n| page_view(uuid_ending(n), "anon-1", now_ms(), None))
        .collect();
    batch_of("01936a1c-3b5e-7cc4-9a1e-0000000000aa", events)
}

fn post(uri: &str) -> axum::http::request::Builder {
    Request::post(uri).header(header::CONTENT_TYPE, "text/plain")
}

/// The log lines of one test, for reading back what the collector wrote at every level.
#[derive(Clone, Default)]
struct CapturedLogs(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for CapturedLogs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for CapturedLogs {
    type Writer = CapturedLogs;
    fn make_writer(&'a self) -> CapturedLogs {
        self.clone()
    }
}

#[tokio::test]
async fn a_stream_outage_answers_503_and_neither_answer_nor_log_shows_secrets() {
    let logs = CapturedLogs::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::NEW)
        .with_ansi(false)
        .with_writer(logs.clone())
        .finish();
    // A current-thread test runtime: the request runs on this thread, under this subscriber.
    let _guard = tracing::subscriber::set_default(subscriber);
    let config = CollectorConfig {
        keys: vec![secret_key()],
        ..CollectorConfig::default()
    };
    let app = router(
        AppState::new(Arc::new(DownSink), Arc::new(DownSink), &config),
        &config,
    );

    let r = app
        .oneshot(
            post("/v1/batch?key=sk_live_shop")
                .body(Body::from(batch()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.headers()[header::RETRY_AFTER], "5");
    let answer = json_of(r).await;
    assert_eq!(answer["error"]["code"], "unavailable");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(
        !message.contains("connection refused"),
        "the SDK's words stay in the log: {message}"
    );

    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("path=/v1/batch"),
        "the request is logged by its path: {logs}"
    );
    assert!(
        logs.contains("connection refused"),
        "the operator sees the cause: {logs}"
    );
    assert!(
        !logs.contains("sk_live_shop"),
        "a key reached the log: {logs}"
    );
}
