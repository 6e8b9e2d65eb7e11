//! The collector in front of a Kinesis that misbehaves, through the real AWS SDK and HTTP: an
//! in-process fake speaking Kinesis' JSON protocol can refuse some records of a PutRecords call,
//! throttle whole calls, or be down. moto cannot do any of these on demand; the normal path runs
//! against moto in `aws_pipeline`. What must hold: nothing acknowledged is lost, nothing
//! unacknowledged is claimed, and retries do not store an event twice.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use retailmind_collector::{router, AppState, CollectorConfig};
use retailmind_connectors::aws;
use retailmind_connectors::clock::now_ms;
use retailmind_connectors::AwsConfig;
use serde_json::{json, Value};
use tokio::sync::oneshot;

/// What the fake does with the next calls.
#[derive(Default)]
struct Faults {
    /// Positions refused (ProvisionedThroughputExceeded) in each of the next PutRecords calls.
    refuse_in_next_calls: Vec<Vec<usize>>,
    /// The next this many PutRecords calls are throttled as a whole (HTTP 400).
    throttle_next_calls: usize,
}

#[derive(Default)]
struct Stream {
    faults: Faults,
    /// Every record stored, as (partition key, data).
    stored: Vec<(String, Vec<u8>)>,
    /// How many records each PutRecords call carried.
    calls: Vec<usize>,
}

type Shared = Arc<Mutex<Stream>>;

/// The fake Kinesis: serves until dropped or [`FakeKinesis::go_down`].
struct FakeKinesis {
    endpoint: String,
    stream: Shared,
    stop: Option<oneshot::Sender<()>>,
}

impl FakeKinesis {
    async fn start() -> FakeKinesis {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let stream = Shared::default();
        let (stop, stopped) = oneshot::channel::<()>();
        let app = axum::Router::new()
            .fallback(kinesis_call)
            .with_state(stream.clone());
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        FakeKinesis {
            endpoint,
            stream,
            stop: Some(stop),
        }
    }

    fn go_down(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut Stream) -> R) -> R {
        f(&mut self.stream.lock().unwrap())
    }

    /// The `event_id` of every stored record, with how often it was stored.
    fn stored_ids(&self) -> BTreeMap<String, usize> {
        let mut ids = BTreeMap::new();
        for (_, data) in self.with(|s| s.stored.clone()) {
            let event: Value = serde_json::from_slice(&data).unwrap();
            *ids.entry(event["event_id"].as_str().unwrap().to_owned())
                .or_insert(0) += 1;
        }
        ids
    }
}

fn kinesis_error(status: StatusCode, kind: &str, message: &str) -> Response {
    (
        status,
        [("content-type", "application/x-amz-json-1.1")],
        json!({"__type": kind, "message": message}).to_string(),
    )
        .into_response()
}

async fn kinesis_call(State(stream): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let answer = match target {
        "Kinesis_20131202.DescribeStreamSummary" => json!({"StreamDescriptionSummary": {
            "StreamName": request["StreamName"], "StreamARN": "arn:aws:kinesis:us-east-1:123456789012:stream/fake",
            "StreamStatus": "ACTIVE", "RetentionPeriodHours": 24, "StreamCreationTimestamp": 1.7e9,
            "EnhancedMonitoring": [], "OpenShardCount": 1}}),
        "Kinesis_20131202.PutRecords" => {
            let mut s = stream.lock().unwrap();
            let records = request["Records"].as_array().cloned().unwrap_or_default();
            s.calls.push(records.len());
            if s.faults.throttle_next_calls > 0 {
                s.faults.throttle_next_calls -= 1;
                return kinesis_error(
                    StatusCode::BAD_REQUEST,
                    "ProvisionedThroughputExceededException",
                    "Rate exceeded for stream fake",
                );
            }
            let refuse = if s.faults.refuse_in_next_calls.is_empty() {
                Vec::new()
            } else {
                s.faults.refuse_in_next_calls.remove(0)
            };
            let mut results = Vec::new();
            for (i, record) in records.iter().enumerate() {
                if refuse.contains(&i) {
                    results.push(json!({"ErrorCode": "ProvisionedThroughputExceededException",
                                        "ErrorMessage": "Rate exceeded for shard shardId-000000000000"}));
                    continue;
                }
                let data = base64::engine::general_purpose::STANDARD
                    .decode(record["Data"].as_str().unwrap_or_default())
                    .unwrap();
                let key = record["PartitionKey"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                s.stored.push((key, data));
                results.push(json!({"SequenceNumber": s.stored.len().to_string(),
                                    "ShardId": "shardId-000000000000"}));
            }
            json!({"FailedRecordCount": refuse.len(), "Records": results})
        }
        other => {
            return kinesis_error(
                StatusCode::BAD_REQUEST,
                "UnknownOperationException",
                &format!("the fake does not do {other}"),
            )
        }
    };
    (
        [("content-type", "application/x-amz-json-1.1")],
        answer.to_string(),
    )
        .into_response()
}

/// The collector on the AWS backend, its Kinesis at `endpoint`; returns its URL.
async fn collector_on(endpoint: &str) -> String {
    let sdk = aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(
                aws_credential_types::Credentials::new("test", "test", None, None, "fake"),
            ),
        )
        .build();
    let backend = aws::backend(&sdk, &AwsConfig::new("us-east-1"));
    let config = CollectorConfig::default();
    let app = router(
        AppState::new(backend.sink, backend.dead_letters, &config),
        &config,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

fn batch(n: usize) -> (String, Vec<String>) {
    let t = now_ms();
    let ids: Vec<String> = (0..n).map(|_| uuid::Uuid::now_v7().to_string()).collect();
    let events: Vec<Value> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            json!({"event_id": id, "type": "page_view", "anonymous_id": format!("a-{i}"),
                   "timestamp": t, "context": {"page": {"url": "https://shop.example/"}},
                   "properties": {}})
        })
        .collect();
    let body = json!({"batch_id": uuid::Uuid::now_v7(), "sent_at": t, "events": events});
    (body.to_string(), ids)
}

async fn post(collector: &str, body: &str) -> (u16, Option<String>, Value) {
    let response = reqwest::Client::new()
        .post(format!("{collector}/v1/batch"))
        .header("content-type", "text/plain")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (
        status,
        retry_after,
        response.json().await.unwrap_or(Value::Null),
    )
}

fn once_each(ids: &[String]) -> BTreeMap<String, usize> {
    ids.iter().map(|id| (id.clone(), 1)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_records_are_resent_alone_and_every_event_is_stored_once() {
    let kinesis = FakeKinesis::start().await;
    kinesis.with(|s| s.faults.refuse_in_next_calls = vec![vec![1, 3], vec![0]]);
    let collector = collector_on(&kinesis.endpoint).await;

    let (body, ids) = batch(5);
    let (status, _, answer) = post(&collector, &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["accepted"], 5);
    assert_eq!(kinesis.stored_ids(), once_each(&ids));
    // 5 records, then the 2 refused, then the 1 refused again.
    assert_eq!(kinesis.with(|s| s.calls.clone()), [5, 2, 1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_call_is_retried_and_stores_nothing_twice() {
    let kinesis = FakeKinesis::start().await;
    kinesis.with(|s| s.faults.throttle_next_calls = 2);
    let collector = collector_on(&kinesis.endpoint).await;

    let (body, ids) = batch(3);
    let (status, _, answer) = post(&collector, &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(kinesis.stored_ids(), once_each(&ids));
    assert_eq!(
        kinesis.with(|s| s.calls.len()),
        3,
        "two throttled, one stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_is_down_gets_503_and_the_resend_is_stored_once() {
    let mut kinesis = FakeKinesis::start().await;
    let collector = collector_on(&kinesis.endpoint).await;
    let (first_body, first_ids) = batch(2);
    assert_eq!(post(&collector, &first_body).await.0, 200);

    // Down: nothing acknowledged, so the sender keeps its events and retries later.
    kinesis.go_down();
    let (body, ids) = batch(3);
    let (status, retry_after, answer) = post(&collector, &body).await;
    assert_eq!(status, 503, "{answer}");
    assert!(retry_after.is_some(), "a 503 says when to retry");
    assert_eq!(answer["error"]["code"], "unavailable", "{answer}");

    // Back on the same port is not possible for the fake; a new stream takes the resend, and the
    // first stream kept exactly what was acknowledged.
    assert_eq!(kinesis.stored_ids(), once_each(&first_ids));
    let back = FakeKinesis::start().await;
    let collector = collector_on(&back.endpoint).await;
    let (status, _, answer) = post(&collector, &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(back.stored_ids(), once_each(&ids));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_stored_before_a_failure_are_not_written_again_by_the_retry() {
    let kinesis = FakeKinesis::start().await;
    // Record 1 is refused on every attempt the sink makes (alone in each resend, so at position
    // 0 there): the append fails after storing records 0 and 2-4.
    let mut refusals = vec![vec![1]];
    refusals.extend(vec![vec![0]; 7]);
    kinesis.with(|s| s.faults.refuse_in_next_calls = refusals);
    let collector = collector_on(&kinesis.endpoint).await;

    let (body, ids) = batch(5);
    let (status, retry_after, answer) = post(&collector, &body).await;
    assert_eq!(status, 503, "{answer}");
    assert!(retry_after.is_some());
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("4 records were stored"),
        "{answer}"
    );
    let stored = kinesis.stored_ids();
    assert_eq!(stored.len(), 4);
    assert!(!stored.contains_key(&ids[1]));

    // The sender retries the whole batch: only the refused record is written.
    let (status, _, answer) = post(&collector, &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["duplicates"], 4, "{answer}");
    assert_eq!(kinesis.stored_ids(), once_each(&ids));
}
