//! Shared set-up of the `tracker_*` end-to-end tests: the real pipeline (collector + processor on
//! the embedded backend), a gate in front of the collector that can fail requests or go offline,
//! the demo site serving the tracker package, and headless Chromium.
//!
//! Every assertion is on what the collector actually wrote to the stream.

#![allow(dead_code)] // each test binary uses its own part of this module

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use retailmind_connectors::{embedded, Backend};
use retailmind_schema::Event;
use retailmind_tests::browser::Browser;
use retailmind_tests::{tracker_package, wait_for};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::common::{stream_events, Pipeline};

/// A stand-in between browser and collector: passes requests on, fails (500) or refuses (400)
/// the next N, or is offline (nothing listens on its port).
pub struct Gate {
    pub url: String,
    port: u16,
    state: Arc<GateState>,
    server: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
}

struct GateState {
    upstream: String,
    fail_next: AtomicUsize,
    /// The status and `Retry-After` (seconds) of an injected failure.
    fail_status: AtomicU16,
    retry_after: AtomicU64,
    /// `(batch_id, status answered)` of every batch POST, in arrival order.
    seen: Mutex<Vec<(String, u16)>>,
    /// When each of those arrived.
    seen_at: Mutex<Vec<Instant>>,
    client: reqwest::Client,
}

impl Gate {
    pub async fn start(upstream: &str) -> Gate {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut gate = Gate {
            url: format!("http://127.0.0.1:{port}"),
            port,
            state: Arc::new(GateState {
                upstream: upstream.to_owned(),
                fail_next: AtomicUsize::new(0),
                fail_status: AtomicU16::new(500),
                retry_after: AtomicU64::new(1),
                seen: Mutex::new(Vec::new()),
                seen_at: Mutex::new(Vec::new()),
                client: reqwest::Client::new(),
            }),
            server: None,
        };
        gate.serve(listener);
        gate
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let (stop, stopped) = oneshot::channel::<()>();
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(self.state.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        self.server = Some((stop, task));
    }

    /// The next `n` batch POSTs are answered 500 without reaching the collector.
    pub fn fail_next(&self, n: usize) {
        self.fail_next_asking(n, 1);
    }

    /// As [`Gate::fail_next`], each failure asking to wait `retry_after_secs` (`Retry-After`).
    pub fn fail_next_asking(&self, n: usize, retry_after_secs: u64) {
        self.answer_next(n, 500, retry_after_secs);
    }

    /// The next `n` batch POSTs are refused with 400, as a malformed batch is.
    pub fn refuse_next(&self, n: usize) {
        self.answer_next(n, 400, 1);
    }

    fn answer_next(&self, n: usize, status: u16, retry_after_secs: u64) {
        self.state.fail_status.store(status, Ordering::SeqCst);
        self.state
            .retry_after
            .store(retry_after_secs, Ordering::SeqCst);
        self.state.fail_next.store(n, Ordering::SeqCst);
    }

    /// Goes offline: the port refuses connections until [`Gate::online`].
    pub async fn offline(&mut self) {
        if let Some((stop, task)) = self.server.take() {
            let _ = stop.send(());
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }

    pub async fn online(&mut self) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .expect("the gate's port is free again");
        self.serve(listener);
    }

    /// Batch ids and answers of every batch POST so far.
    pub fn seen(&self) -> Vec<(String, u16)> {
        self.state.seen.lock().unwrap().clone()
    }

    /// When each batch POST of [`Gate::seen`] arrived.
    pub fn seen_at(&self) -> Vec<Instant> {
        self.state.seen_at.lock().unwrap().clone()
    }
}

impl GateState {
    fn note(&self, batch_id: String, status: u16) {
        self.seen.lock().unwrap().push((batch_id, status));
        self.seen_at.lock().unwrap().push(Instant::now());
    }
}

async fn forward(
    State(state): State<Arc<GateState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let parsed = serde_json::from_slice::<Value>(&body).ok();
    let batch_id = parsed
        .as_ref()
        .and_then(|b| b["batch_id"].as_str().map(str::to_owned));
    if method == Method::POST
        && state
            .fail_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    {
        let status = state.fail_status.load(Ordering::SeqCst);
        state.note(batch_id.unwrap_or_default(), status);
        // Readable by the page, so the tracker sees the 500 and its Retry-After (as the
        // collector exposes it) rather than a CORS failure.
        let origin = headers
            .get("origin")
            .cloned()
            .unwrap_or(HeaderValue::from_static("*"));
        let wait = state.retry_after.load(Ordering::SeqCst);
        return (
            StatusCode::from_u16(status).expect("a status"),
            [
                ("access-control-allow-origin", origin),
                (
                    "access-control-expose-headers",
                    HeaderValue::from_static("retry-after"),
                ),
                ("retry-after", HeaderValue::from(wait)),
            ],
            "injected failure",
        )
            .into_response();
    }
    let url = format!(
        "{}{}",
        state.upstream,
        uri.path_and_query().map_or("/", |p| p.as_str())
    );
    let mut request = state.client.request(method.clone(), url).body(body);
    for (name, value) in &headers {
        if name != "host" && name != "content-length" {
            request = request.header(name, value);
        }
    }
    let Ok(answer) = request.send().await else {
        return StatusCode::BAD_GATEWAY.into_response();
    };
    let status = answer.status();
    if method == Method::POST {
        state.note(batch_id.unwrap_or_default(), status.as_u16());
    }
    let mut response = Response::builder().status(status);
    for (name, value) in answer.headers() {
        if name != "content-length" && name != "transfer-encoding" {
            response = response.header(name, value);
        }
    }
    let bytes = answer.bytes().await.unwrap_or_default();
    response.body(axum::body::Body::from(bytes)).unwrap()
}

/// Pipeline, gate, demo site and browser for one test.
pub struct Lab {
    _data: tempfile::TempDir,
    pub backend: Backend,
    pipeline: Pipeline,
    pub gate: Gate,
    /// The demo site's base URL (`http://127.0.0.1:<port>`).
    pub site: String,
    pub browser: Browser,
}

impl Lab {
    pub async fn start() -> Lab {
        let data = tempfile::tempdir().unwrap();
        let backend = embedded::open(data.path()).unwrap();
        let pipeline = Pipeline::start(backend.clone()).await;
        let gate = Gate::start(&pipeline.collector_url).await;
        let site = serve_site(&gate.url).await;
        let browser = Browser::start().await;
        Lab {
            _data: data,
            backend,
            pipeline,
            gate,
            site,
            browser,
        }
    }

    /// Opens the lab page with config overrides (JSON object text) and waits for the tracker.
    pub async fn open_lab(&self, cfg: &str) {
        self.open_lab_with(cfg, "").await;
    }

    /// As [`Lab::open_lab`], with the lab page's switches (`name=value&…`) taking away what
    /// some browsers lack:
    /// - `exit=keepalive`: no fetchLater, so a leaving page sends by keepalive fetch;
    /// - `exit=beacon`: no keepalive fetch while leaving either, so sendBeacon is left;
    /// - `storage=local`: no IndexedDB, so the queue lives in localStorage;
    /// - `storage=memory`: no localStorage either, so it lives in the page's memory.
    pub async fn open_lab_with(&self, cfg: &str, switches: &str) {
        let url = format!("{}/lab.html?{switches}&cfg={}", self.site, urlencode(cfg));
        self.browser.client.goto(&url).await.unwrap();
        self.wait_ready().await;
    }

    pub async fn wait_ready(&self) {
        wait_for("the tracker to start", Duration::from_secs(20), || async {
            let ready = self
                .js("return window.labError || window.retailmindReady === true;")
                .await;
            if let Value::String(error) = &ready {
                panic!("the tracker did not start: {error}");
            }
            (ready == Value::Bool(true)).then_some(())
        })
        .await
    }

    /// Runs `script` in the page and returns its result.
    pub async fn js(&self, script: &str) -> Value {
        self.browser
            .client
            .execute(script, vec![])
            .await
            .unwrap_or_else(|e| panic!("{script}: {e}"))
    }

    /// `retailmind.flush()`: `"ok"` or the rejection's message.
    pub async fn flush(&self) -> String {
        let answer = self
            .browser
            .client
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 window.retailmind.flush().then(() => done('ok'), (e) => done(String(e)));",
                vec![],
            )
            .await
            .unwrap();
        answer.as_str().unwrap_or_default().to_owned()
    }

    /// Everything in the stream so far.
    pub async fn events(&self) -> Vec<Event> {
        stream_events(self.backend.reader.as_ref()).await
    }

    /// Waits until the stream holds at least `n` events matching `keep`, and returns them all.
    pub async fn wait_events(
        &self,
        what: &str,
        n: usize,
        keep: impl Fn(&Event) -> bool,
    ) -> Vec<Event> {
        wait_for(what, Duration::from_secs(20), || async {
            let events: Vec<Event> = self.events().await.into_iter().filter(&keep).collect();
            (events.len() >= n).then_some(events)
        })
        .await
    }

    pub async fn stop(self) {
        self.browser.close().await;
        self.pipeline.stop().await;
    }
}

async fn serve_site(collector_url: &str) -> String {
    let app = retailmind_demo_site::router(&tracker_package(), collector_url, "e2e-key");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// How many times each event id is in `events`: every value must be 1 for "nothing doubled".
pub fn copies(events: &[Event]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for e in events {
        *counts.entry(e.event_id.to_string()).or_insert(0) += 1;
    }
    counts
}

/// Asserts that no event id is in the stream twice.
pub fn assert_no_doubles(events: &[Event]) {
    let doubled: Vec<_> = copies(events).into_iter().filter(|(_, n)| *n > 1).collect();
    assert!(doubled.is_empty(), "events stored twice: {doubled:?}");
}

/// Custom events named `name`.
pub fn named<'a>(events: &'a [Event], name: &str) -> Vec<&'a Event> {
    events.iter().filter(|e| is_named(e, name)).collect()
}

/// A custom event called `name`.
pub fn is_named(e: &Event, name: &str) -> bool {
    matches!(&e.payload, retailmind_schema::Payload::Custom(c) if c.name == name)
}

pub fn kind_count(events: &[Event], kind: &str) -> usize {
    events.iter().filter(|e| e.payload.kind() == kind).count()
}
