//! `/v1/batch` through the real router, against the embedded stream in a temporary directory.

mod common;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use common::{batch_of, json_of, now_ms, page_view, DownSink, Embedded};
use retailmind_collector::{router, AppState, BatchResponse, CollectorConfig};
use retailmind_connectors::{ConnectorError, EventSink, StreamRecord};
use retailmind_schema::{Event, Payload};
use serde_json::{json, Value};
use tower::ServiceExt;

struct Harness {
    embedded: Embedded,
    config: CollectorConfig,
}

impl Harness {
    fn new() -> Self {
        Harness {
            embedded: Embedded::new(),
            config: CollectorConfig {
                max_body_bytes: 64 * 1024,
                max_events_per_batch: 10,
                ..CollectorConfig::default()
            },
        }
    }

    async fn post(&self, content_type: &str, body: impl Into<Body>) -> (StatusCode, Value) {
        self.post_at("/v1/batch", content_type, body).await
    }

    async fn post_at(
        &self,
        uri: &str,
        content_type: &str,
        body: impl Into<Body>,
    ) -> (StatusCode, Value) {
        let backend = &self.embedded.backend;
        post_to(
            backend.sink.clone(),
            backend.dead_letters.clone(),
            &self.config,
            uri,
            content_type,
            body,
        )
        .await
    }

    async fn stored(&self) -> Vec<Event> {
        self.embedded.stored().await
    }

    /// The router over `sink` in place of the embedded stream (the dead letters stay).
    fn router_over(&self, sink: Arc<dyn EventSink>) -> axum::Router {
        let dead_letters = self.embedded.backend.dead_letters.clone();
        router(
            AppState::new(sink, dead_letters, &self.config),
            &self.config,
        )
    }
}

async fn post_to(
    sink: Arc<dyn EventSink>,
    dead_letters: Arc<dyn EventSink>,
    config: &CollectorConfig,
    uri: &str,
    content_type: &str,
    body: impl Into<Body>,
) -> (StatusCode, Value) {
    let app = router(AppState::new(sink, dead_letters, config), config);
    let response = app
        .oneshot(
            Request::post(uri)
                .header(header::CONTENT_TYPE, content_type)
                .body(body.into())
                .unwrap(),
        )
        .await
        .unwrap();
    let status = response.status();
    let retry_after = response.headers().get(header::RETRY_AFTER).cloned();
    let mut value = json_of(response).await;
    if let Some(r) = retry_after {
        value["retry_after_header"] = json!(r.to_str().unwrap());
    }
    (status, value)
}

fn event(n: u8) -> Value {
    page_view(
        format!("01936a1c-3b5e-7cc4-9a1e-4f1b2c3d4e{n:02x}"),
        "anon-1",
        now_ms(),
        Some("6.6.6.6"),
    )
}

fn batch(events: Vec<Value>) -> String {
    batch_of("01936a1c-3b5e-7cc4-9a1e-000000000001", events)
}

#[tokio::test]
async fn a_valid_batch_is_stored_and_acknowledged() {
    let h = Harness::new();
    let (status, body) = h
        .post("text/plain;charset=UTF-8", batch(vec![event(1), event(2)]))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let answer: BatchResponse = serde_json::from_value(body).unwrap();
    assert_eq!((answer.accepted, answer.rejected.len()), (2, 0));

    let stored = h.stored().await;
    assert_eq!(stored.len(), 2);
    assert!(stored.iter().all(|e| e.received_at.is_some()));
    assert!(
        stored
            .iter()
            .all(|e| e.context.ip.as_deref() != Some("6.6.6.6")),
        "server-side fields are never taken from the client"
    );
}

#[tokio::test]
async fn bad_events_are_rejected_with_index_and_reason_and_the_good_ones_kept() {
    let h = Harness::new();
    let mut bad_url = event(2);
    bad_url["context"]["page"]["url"] = json!("not a url");
    let mut bad_type = event(3);
    bad_type["properties"] = json!({"product_id": 7});
    bad_type["type"] = json!("product_view");
    let (status, body) = h
        .post("application/json", batch(vec![event(1), bad_url, bad_type]))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["accepted"], 1);
    assert_eq!(body["rejected"][0]["index"], 1);
    assert_eq!(
        body["rejected"][0]["errors"][0]["field"],
        "context.page.url"
    );
    assert_eq!(
        body["rejected"][0]["errors"][0]["reason"],
        "must be an absolute http:// or https:// URL"
    );
    assert_eq!(body["rejected"][1]["index"], 2);
    let reason = body["rejected"][1]["errors"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("invalid type"), "{reason}");
    assert_eq!(h.stored().await.len(), 1);
}

#[tokio::test]
async fn malformed_requests_get_clear_errors_and_store_nothing() {
    let h = Harness::new();
    let (status, body) = h.post("application/json", "{\"batch_id\": ").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "malformed_batch");

    let (status, body) = h.post("application/xml", batch(vec![event(1)])).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("application/xml"));

    let (status, body) = h
        .post("text/plain", batch((0..11).map(event).collect()))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["error"]["message"],
        "the batch has 11 events, at most 10 are accepted per request"
    );

    // Both formats at once: neither half is dropped without a word.
    let mut both: Value = serde_json::from_str(&batch(vec![event(1)])).unwrap();
    both["batch"] = json!([{"type": "track", "event": "x", "anonymousId": "a"}]);
    let (status, body) = h.post("text/plain", both.to_string()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("both `events` and `batch`"),
        "{body}"
    );

    let (status, body) = h.post("text/plain", "x".repeat(65 * 1024)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body["error"]["code"], "body_too_large");

    assert!(h.stored().await.is_empty());
}

#[tokio::test]
async fn an_unavailable_stream_answers_503_with_retry_after() {
    let config = CollectorConfig::default();
    let (status, body) = post_to(
        Arc::new(DownSink),
        Arc::new(DownSink),
        &config,
        "/v1/batch",
        "text/plain",
        batch(vec![event(1)]),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["error"]["code"], "unavailable");
    assert_eq!(body["retry_after_header"], "5");
}

/// An event carried by two batches (two tabs sending one shared queue, a page's exit send racing
/// another tab's) is written once, whether the batches come one after the other or overlap.
#[tokio::test]
async fn an_event_in_two_batches_is_written_once_even_when_they_overlap() {
    let h = Harness::new();
    // The first write is held until the second request has arrived.
    let gate = HeldSink::new(h.embedded.backend.sink.clone(), false);
    let app = h.router_over(gate.clone());
    let send = |batch_id: &'static str, events: Vec<Value>| {
        let app = app.clone();
        tokio::spawn(async move {
            let response = app
                .oneshot(
                    Request::post("/v1/batch")
                        .header(header::CONTENT_TYPE, "text/plain")
                        .body(Body::from(batch_of(batch_id, events)))
                        .unwrap(),
                )
                .await
                .unwrap();
            (response.status(), json_of(response).await)
        })
    };
    let first = send(
        "01936a1c-3b5e-7cc4-9a1e-0000000000f1",
        vec![event(1), event(2)],
    );
    let calls = || gate.calls();
    while calls() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let second = send(
        "01936a1c-3b5e-7cc4-9a1e-0000000000f2",
        vec![event(2), event(3)],
    );
    // The second cannot write event 2 while the first is writing it: it waits rather than
    // starting its own write (which it would within milliseconds).
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(
            calls(),
            1,
            "the overlapping batch wrote while the first was in flight"
        );
    }
    gate.release.add_permits(2);

    let (status, body) = first.await.unwrap();
    assert_eq!(
        (status, body["accepted"].clone()),
        (StatusCode::OK, json!(2))
    );
    let (status, body) = second.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (body["accepted"].clone(), body["duplicates"].clone()),
        (json!(2), json!(1))
    );

    let mut ids: Vec<String> = h
        .stored()
        .await
        .iter()
        .map(|e| e.event_id.to_string())
        .collect();
    ids.sort();
    assert_eq!(ids.len(), 3, "{ids:?}");
    ids.dedup();
    assert_eq!(ids.len(), 3, "each event once");
}

/// Holds every append until a permit is released; counts appends started. With `ack_held`,
/// the records are stored first and only the answer is held (Kinesis stored them, its answer
/// is slow to come back).
struct HeldSink {
    inner: Arc<dyn EventSink>,
    release: tokio::sync::Semaphore,
    calls: std::sync::atomic::AtomicUsize,
    ack_held: bool,
}

impl HeldSink {
    fn new(inner: Arc<dyn EventSink>, ack_held: bool) -> Arc<HeldSink> {
        Arc::new(HeldSink {
            inner,
            release: tokio::sync::Semaphore::new(0),
            calls: std::sync::atomic::AtomicUsize::new(0),
            ack_held,
        })
    }

    fn calls(&self) -> usize {
        self.calls.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[async_trait]
impl EventSink for HeldSink {
    async fn append(&self, records: Vec<StreamRecord>) -> retailmind_connectors::Result<()> {
        let unstored = if self.ack_held {
            self.inner.append(records).await?;
            None
        } else {
            Some(records)
        };
        self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.release.acquire().await.unwrap().forget();
        match unstored {
            Some(records) => self.inner.append(records).await,
            None => Ok(()),
        }
    }
    async fn ready(&self) -> retailmind_connectors::Result<()> {
        self.inner.ready().await
    }
}

/// The client goes away while its events are being written (hyper then drops the request's
/// future): the write still runs to its end and is remembered, so the client's retry of the
/// batch does not write the events a second time.
#[tokio::test]
async fn a_client_gone_during_the_write_does_not_make_its_retry_write_again() {
    let h = Harness::new();
    let gate = HeldSink::new(h.embedded.backend.sink.clone(), true);
    let app = h.router_over(gate.clone());
    let send = || {
        app.clone().oneshot(
            Request::post("/v1/batch")
                .header(header::CONTENT_TYPE, "text/plain")
                .body(Body::from(batch(vec![event(1), event(2)])))
                .unwrap(),
        )
    };
    let gone = tokio::spawn(send());
    while gate.calls() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(h.stored().await.len(), 2, "stored, not yet acknowledged");
    gone.abort();
    assert!(gone.await.unwrap_err().is_cancelled());
    gate.release.add_permits(1);

    let retry = tokio::time::timeout(Duration::from_secs(10), send())
        .await
        .expect("the retry is answered")
        .unwrap();
    assert_eq!(retry.status(), StatusCode::OK);
    let body = json_of(retry).await;
    assert_eq!(body["accepted"], 2, "{body}");
    assert_eq!(gate.calls(), 1, "nothing appended again: {body}");
    assert_eq!(h.stored().await.len(), 2);
}

/// A write whose client went away still counts against `max_in_flight_requests` until it
/// ends: clients that time out and resend cannot pile up writes, and their events, in memory.
#[tokio::test]
async fn a_write_left_by_its_client_still_counts_as_in_flight() {
    let mut h = Harness::new();
    h.config.max_in_flight_requests = 1;
    let gate = HeldSink::new(h.embedded.backend.sink.clone(), false);
    let app = h.router_over(gate.clone());
    let send = |n: u8| {
        let batch_id = format!("01936a1c-3b5e-7cc4-9a1e-0000000001{n:02x}");
        app.clone().oneshot(
            Request::post("/v1/batch")
                .header(header::CONTENT_TYPE, "text/plain")
                .body(Body::from(batch_of(&batch_id, vec![event(n)])))
                .unwrap(),
        )
    };
    let gone = tokio::spawn(send(1));
    while gate.calls() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    gone.abort();
    let _ = gone.await;
    let refused = send(2).await.unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(json_of(refused).await["error"]["code"], "overloaded");

    gate.release.add_permits(2);
    let mut answer = send(3).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while answer.status() != StatusCode::OK && std::time::Instant::now() < deadline {
        // The left write is ending.
        tokio::time::sleep(Duration::from_millis(10)).await;
        answer = send(3).await.unwrap();
    }
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(h.stored().await.len(), 2, "the left write and the last");
}

/// Segment's `/v1/batch` with a batch-level `context`: every message gets it, its own values
/// winning, through the real route.
#[tokio::test]
async fn a_segment_batch_context_reaches_every_stored_event() {
    let h = Harness::new();
    let message = |id: &str, own: Value| {
        // No timestamp: the collector's clock stands in.
        json!({"type": "track", "event": "Wishlist Added", "messageId": id, "anonymousId": "a-1",
               "context": own})
    };
    let body = json!({
        "batch": [message("m-1", json!({})), message("m-2", json!({"locale": "fr-CH"}))],
        "context": {"page": {"url": "https://shop.example/wishlist"}, "locale": "de-CH"},
    });
    let (status, answer) = h.post("application/json", body.to_string()).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["accepted"], 2, "{answer}");
    let mut stored = h.stored().await;
    stored.sort_by_key(|e| e.context.locale.clone());
    let locales: Vec<_> = stored.iter().map(|e| e.context.locale.as_deref()).collect();
    assert_eq!(locales, [Some("de-CH"), Some("fr-CH")]);
    assert!(stored
        .iter()
        .all(|e| e.context.page.url == "https://shop.example/wishlist"));
}

/// Segment requests carry no batch id, so none of theirs is kept in the memory of answers,
/// where it would push out the answers that a tracker's retry asks for.
#[tokio::test]
async fn segment_requests_leave_the_answer_memory_to_batches_a_retry_can_name() {
    let mut h = Harness::new();
    h.config.dedup_max_batches = 1;
    let app = h.router_over(h.embedded.backend.sink.clone());
    let send = |uri: &'static str, body: String| {
        let app = app.clone();
        async move {
            let answer = app
                .oneshot(
                    Request::post(uri)
                        .header(header::CONTENT_TYPE, "application/json")
                        .body(Body::from(body))
                        .unwrap(),
                )
                .await
                .unwrap();
            assert_eq!(answer.status(), StatusCode::OK, "{uri}");
            json_of(answer).await
        }
    };
    let tracker = batch(vec![event(1)]);
    let first = send("/v1/batch", tracker.clone()).await;
    assert!(first.get("duplicate").is_none(), "{first}");
    let track =
        json!({"type": "track", "event": "Signed Up", "messageId": "m-1", "anonymousId": "a-1"});
    send("/v1/track", track.to_string()).await;
    let segment_batch =
        json!({"batch": [{"type": "identify", "userId": "u-1", "messageId": "m-2"}]});
    send("/v1/batch", segment_batch.to_string()).await;
    let retry = send("/v1/batch", tracker).await;
    assert_eq!(
        retry["duplicate"], true,
        "the tracker's retry is answered from memory: {retry}"
    );
}

/// Segment's Ruby and Java libraries post their batches to `/v1/import`, from servers: no page,
/// an amount with a float's rounding error. Every message is taken.
#[tokio::test]
async fn a_server_librarys_import_is_taken_whole() {
    let h = Harness::new();
    let body = json!({
        "batch": [
            {"type": "identify", "userId": "u-7", "messageId": "m-1", "traits": {"plan": "gold"}},
            {"type": "track", "event": "Order Completed", "userId": "u-7", "messageId": "m-2",
             "properties": {"order_id": "o-9", "revenue": 43.730000000000004, "currency": "EUR"}},
        ],
        "context": {"library": {"name": "analytics-ruby", "version": "2.4.0"}},
    });
    let (status, answer) = h
        .post_at("/v1/import", "application/json", body.to_string())
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["accepted"], 2, "{answer}");
    let stored = h.stored().await;
    assert!(stored
        .iter()
        .all(|e| e.context.page.url == retailmind_collector::NO_PAGE_URL));
    let revenue = stored.iter().find_map(|e| match &e.payload {
        retailmind_schema::Payload::Purchase(p) => Some(p.revenue_minor),
        _ => None,
    });
    assert_eq!(revenue, Some(4373));
}

/// `segment.default_currency` reaches the converter: a price without a currency is in the
/// shop's, through the route.
#[tokio::test]
async fn the_shops_default_currency_prices_a_segment_message_without_one() {
    let mut h = Harness::new();
    let message = json!({"type": "track", "event": "Product Viewed", "anonymousId": "a-1",
        "context": {"page": {"url": "https://shop.example/p/42"}},
        "properties": {"product_id": "42", "price": 12.5}});
    let (status, answer) = h
        .post_at("/v1/track", "application/json", message.to_string())
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        answer["rejected"][0]["errors"][0]["field"],
        "properties.currency"
    );

    h.config.segment.default_currency = Some("CHF".into());
    let (status, answer) = h
        .post_at("/v1/track", "application/json", message.to_string())
        .await;
    assert_eq!(
        (status, answer["accepted"].clone()),
        (StatusCode::OK, json!(1)),
        "{answer}"
    );
    let stored = h.stored().await;
    let Payload::ProductView(product) = &stored[0].payload else {
        panic!("{stored:?}")
    };
    assert_eq!(product.currency.as_deref(), Some("CHF"));
}

/// With `unknown_fields = "reject"` an event with a field the schema does not know is refused,
/// naming it, and the batch's other events are kept; by default such fields are ignored.
#[tokio::test]
async fn unknown_fields_are_ignored_by_default_and_named_when_rejected() {
    let mut typo = event(2);
    typo["context"]["page"]["titel"] = json!("typo");
    let body = || batch(vec![event(1), typo.clone()]);

    let h = Harness::new();
    let (status, answer) = h.post("text/plain", body()).await;
    assert_eq!(
        (status, answer["accepted"].clone()),
        (StatusCode::OK, json!(2))
    );

    let mut h = Harness::new();
    h.config.unknown_fields = retailmind_collector::UnknownFields::Reject;
    let (status, answer) = h.post("text/plain", body()).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["accepted"], 1);
    assert_eq!(answer["rejected"][0]["index"], 1);
    assert_eq!(
        answer["rejected"][0]["errors"][0]["field"],
        "context.page.titel"
    );
    assert_eq!(h.stored().await.len(), 1);
}

/// An event over `max_event_bytes` is rejected, naming its index and its size, and the batch's
/// other events are kept.
#[tokio::test]
async fn an_event_over_the_size_limit_is_rejected_naming_its_size() {
    let mut h = Harness::new();
    h.config.max_event_bytes = 1024;
    let mut big = event(2);
    big["properties"] = json!({"note": "x".repeat(2000)});
    let size = big.to_string().len();
    let (status, body) = h
        .post("text/plain", batch(vec![event(1), big, event(3)]))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["accepted"], 2);
    assert_eq!(body["rejected"][0]["index"], 1);
    assert_eq!(body["rejected"][0]["errors"][0]["field"], "event");
    assert_eq!(
        body["rejected"][0]["errors"][0]["reason"],
        format!("is {size} bytes, at most 1024 allowed")
    );
    assert_eq!(h.stored().await.len(), 2);
}

/// Kinesis refuses a record over 1 MiB (data and partition key) before sending anything: the
/// embedded dead letters with that limit imposed.
struct KinesisSizedSink {
    inner: Arc<dyn EventSink>,
}

const KINESIS_MAX_RECORD_BYTES: usize = 1024 * 1024;

#[async_trait]
impl EventSink for KinesisSizedSink {
    async fn append(&self, records: Vec<StreamRecord>) -> retailmind_connectors::Result<()> {
        if let Some(r) = records
            .iter()
            .find(|r| r.data.len() + r.partition_key.len() > KINESIS_MAX_RECORD_BYTES)
        {
            return Err(ConnectorError::Misconfigured(format!(
                "kinesis: a record is {} bytes, over the limit of 1 MiB per record",
                r.data.len() + r.partition_key.len()
            )));
        }
        self.inner.append(records).await
    }
    async fn ready(&self) -> retailmind_connectors::Result<()> {
        self.inner.ready().await
    }
}

/// A rejected event as large as the body allows must not make its dead letter too large for the
/// stream: the request would answer 503 and the tracker would resend the batch forever. The
/// letter keeps the event's beginning, says it was cut and from what size, and the batch's good
/// events are stored and acknowledged.
#[tokio::test]
async fn a_huge_rejected_event_does_not_poison_its_batch() {
    let embedded = Embedded::new();
    let config = CollectorConfig {
        max_body_bytes: 2 * 1024 * 1024,
        ..CollectorConfig::default()
    };
    let mut huge = event(2);
    huge["properties"] = json!({"note": "x".repeat(KINESIS_MAX_RECORD_BYTES + 1000)});
    let huge_text = huge.to_string();
    let (status, body) = post_to(
        embedded.backend.sink.clone(),
        Arc::new(KinesisSizedSink {
            inner: embedded.backend.dead_letters.clone(),
        }),
        &config,
        "/v1/batch",
        "text/plain",
        batch(vec![event(1), huge, event(3)]),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["accepted"], 2);
    assert_eq!(body["rejected"][0]["index"], 1);
    assert_eq!(body["rejected"][0]["errors"][0]["field"], "event");
    assert_eq!(embedded.stored().await.len(), 2);

    let letters = embedded.dead_letters();
    assert_eq!(letters.len(), 1);
    assert!(
        letters[0].len() < KINESIS_MAX_RECORD_BYTES / 4,
        "{}",
        letters[0].len()
    );
    let letter: Value = serde_json::from_str(&letters[0]).unwrap();
    assert_eq!(letter["index"], 1);
    assert_eq!(letter["errors"][0]["field"], "event");
    assert_eq!(letter["truncated_from_bytes"], huge_text.len());
    let kept = letter["event"]
        .as_str()
        .expect("the cut event, as a string");
    assert!(huge_text.starts_with(kept));
}

/// A browser's events stay in order on one shard: they are stored under its anonymous id, also
/// once a user id is known (`retailmind_schema::partition_key`).
#[tokio::test]
async fn events_are_stored_under_their_anonymous_id() {
    let h = Harness::new();
    let mut signed_in = event(2);
    signed_in["anonymous_id"] = json!("anon-2");
    signed_in["user_id"] = json!("user-9");
    let (status, body) = h.post("text/plain", batch(vec![event(1), signed_in])).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let keys: Vec<String> = h
        .embedded
        .stored_with_partition_keys()
        .await
        .into_iter()
        .map(|(key, _)| key)
        .collect();
    assert_eq!(keys, ["anon-1", "anon-2"]);
}

/// Segment's single-message routes: the route gives the type, each message is stored as one
/// event of the matching kind. A message that cannot be converted is answered as `/v1/batch`
/// answers (and as Segment's own API does): 200, with index 0 rejected naming the field.
#[tokio::test]
async fn segment_single_message_routes_store_one_event_each() {
    let h = Harness::new();
    let context = json!({"page": {"url": "https://shop.example/p/42"}});
    let messages = [
        (
            "/v1/track",
            json!({"event": "Wishlist Added", "messageId": "m-1", "anonymousId": "a-1", "context": context}),
        ),
        (
            "/v1/page",
            json!({"messageId": "m-2", "anonymousId": "a-1", "context": context}),
        ),
        (
            "/v1/identify",
            json!({"messageId": "m-3", "userId": "u-7", "traits": {"plan": "gold"}, "context": context}),
        ),
    ];
    for (uri, message) in &messages {
        let (status, body) = h
            .post_at(uri, "application/json", message.to_string())
            .await;
        assert_eq!(status, StatusCode::OK, "{uri}: {body}");
        assert_eq!(body["accepted"], 1, "{uri}: {body}");
    }
    let stored = h.stored().await;
    let kinds: Vec<(&str, Option<&str>)> = stored
        .iter()
        .map(|e| match &e.payload {
            Payload::Custom(c) => ("custom", Some(c.name.as_str())),
            other => (other.kind(), None),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("custom", Some("Wishlist Added")),
            ("page_view", None),
            ("custom", Some("identify"))
        ]
    );
    assert_eq!(stored[2].user_id.as_deref(), Some("u-7"));

    let (status, body) = h
        .post_at(
            "/v1/identify",
            "application/json",
            json!({"messageId": "m-4", "traits": {}, "context": context,
                   "writeKey": "sk_in_the_body"})
            .to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["accepted"], 0);
    assert_eq!(body["rejected"][0]["index"], 0);
    assert_eq!(body["rejected"][0]["errors"][0]["field"], "anonymousId");
    // Its dead letter keeps the message, not the key the library put in it.
    let letters = h.embedded.dead_letters();
    let letter: Value = serde_json::from_str(letters.last().unwrap()).unwrap();
    assert_eq!(letter["event"]["messageId"], "m-4");
    assert_eq!(letter["event"]["writeKey"], "[redacted]");

    let (status, body) = h
        .post_at("/v1/track", "application/json", "{\"event\": ")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "malformed_batch");
    assert_eq!(h.stored().await.len(), 3);
}
