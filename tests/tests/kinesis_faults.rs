//! The collector in front of a Kinesis that misbehaves, through the real AWS SDK and HTTP: the
//! in-process fake of `retailmind_tests::fake_aws` can refuse some records of a PutRecords call,
//! throttle whole calls, or be down. moto cannot do any of these on demand; the normal path runs
//! against moto in `aws_pipeline`. What must hold: nothing acknowledged is lost, nothing
//! unacknowledged is claimed, and retries do not store an event twice.

use std::collections::BTreeMap;

use retailmind_collector::{router, spooled_edges, AppState, CollectorConfig, DEAD_LETTER_SPOOL};
use retailmind_connectors::aws;
use retailmind_connectors::clock::now_ms;
use retailmind_connectors::AwsConfig;
use retailmind_tests::fake_aws::{BatchFault, BatchFaults, FakeAws};
use serde_json::{json, Value};

/// The `event_id` of every record stored in the fake stream, with how often it was stored.
fn stored_ids(kinesis: &FakeAws) -> BTreeMap<String, usize> {
    let mut ids = BTreeMap::new();
    kinesis.with(|s| {
        for record in s.kinesis.records() {
            let event: Value = serde_json::from_slice(&record.data).unwrap();
            *ids.entry(event["event_id"].as_str().unwrap().to_owned())
                .or_insert(0) += 1;
        }
    });
    ids
}

/// The spooled requests waiting in `dir`.
fn spool_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "spool")
        })
        .count()
}

/// The collector with its spool in `dir`, in front of a stream that refuses every write from now
/// on (throttled, or failing, for minutes) until the test sets other faults; returns its URL.
async fn spooling_to_a_refusing_stream(
    kinesis: &FakeAws,
    dir: &std::path::Path,
    config: CollectorConfig,
) -> String {
    kinesis.with(|s| {
        s.kinesis.put_faults = BatchFaults {
            next: Default::default(),
            after: BatchFault::Throttle,
        }
    });
    let config = CollectorConfig {
        spool_dir: Some(dir.to_owned()),
        ..config
    };
    collector_configured(&kinesis.sdk_config(), &AwsConfig::new("us-east-1"), config).await
}

/// The collector on the AWS backend, its Kinesis the fake; returns its URL.
async fn collector_on(fake: &FakeAws) -> String {
    collector_with(&fake.sdk_config(), &AwsConfig::new("us-east-1")).await
}

async fn collector_with(sdk: &aws_config::SdkConfig, aws_config: &AwsConfig) -> String {
    collector_configured(sdk, aws_config, CollectorConfig::default()).await
}

/// The collector as its binary wires it (spools included when `config` has a `spool_dir`).
async fn collector_configured(
    sdk: &aws_config::SdkConfig,
    aws_config: &AwsConfig,
    config: CollectorConfig,
) -> String {
    let backend = aws::backend(sdk, aws_config);
    let (sink, dead_letters) = spooled_edges(backend.sink, backend.dead_letters, &config).unwrap();
    let app = router(AppState::new(sink, dead_letters, &config), &config);
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
    let kinesis = FakeAws::start(1).await;
    kinesis.with(|s| {
        s.kinesis.put_faults =
            BatchFaults::then_accept([BatchFault::Refuse(vec![1, 3]), BatchFault::Refuse(vec![0])])
    });
    let collector = collector_on(&kinesis).await;

    let (body, ids) = batch(5);
    let (status, _, answer) = post(&collector, &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["accepted"], 5);
    assert_eq!(stored_ids(&kinesis), once_each(&ids));
    // 5 records, then the 2 refused, then the 1 refused again.
    assert_eq!(kinesis.with(|s| s.kinesis.put_calls.clone()), [5, 2, 1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_call_is_retried_and_stores_nothing_twice() {
    let kinesis = FakeAws::start(1).await;
    kinesis
        .with(|s| s.kinesis.put_faults = BatchFaults::then_accept(vec![BatchFault::Throttle; 2]));
    let collector = collector_on(&kinesis).await;

    let (body, ids) = batch(3);
    let (status, _, answer) = post(&collector, &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(stored_ids(&kinesis), once_each(&ids));
    assert_eq!(
        kinesis.with(|s| s.kinesis.put_calls.len()),
        3,
        "two throttled, one stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_is_down_gets_503_and_the_resend_is_stored_once() {
    let mut kinesis = FakeAws::start(1).await;
    let collector = collector_on(&kinesis).await;
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
    assert_eq!(stored_ids(&kinesis), once_each(&first_ids));
    let back = FakeAws::start(1).await;
    let collector = collector_on(&back).await;
    let (status, _, answer) = post(&collector, &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(stored_ids(&back), once_each(&ids));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_stored_before_a_failure_are_not_written_again_by_the_retry() {
    let kinesis = FakeAws::start(1).await;
    // Record 1 is refused on every attempt the sink makes (alone in each resend, so at position
    // 0 there): the append fails after storing records 0 and 2-4.
    let mut refusals = vec![BatchFault::Refuse(vec![1])];
    refusals.extend(vec![BatchFault::Refuse(vec![0]); 7]);
    kinesis.with(|s| s.kinesis.put_faults = BatchFaults::then_accept(refusals));
    let collector = collector_on(&kinesis).await;

    let (body, ids) = batch(5);
    let (status, retry_after, answer) = post(&collector, &body).await;
    assert_eq!(status, 503, "{answer}");
    assert!(retry_after.is_some());
    // The answer says only "retry the same batch"; how far the append got is for the log.
    assert_eq!(answer["error"]["code"], "unavailable", "{answer}");
    let stored = stored_ids(&kinesis);
    assert_eq!(stored.len(), 4);
    assert!(!stored.contains_key(&ids[1]));

    // The sender retries the whole batch: only the refused record is written.
    let (status, _, answer) = post(&collector, &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["duplicates"], 4, "{answer}");
    assert_eq!(stored_ids(&kinesis), once_each(&ids));
}

/// Kinesis accepts the connection and never answers (a network path that drops the replies):
/// the collector's write gives up after its attempts time out and the sender gets a 503, rather
/// than a request held open for good that neither stores nor spools its events.
#[tokio::test]
async fn a_stream_that_never_answers_times_out_into_a_503() {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", silent.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            open.push(socket);
        }
    });
    let config = AwsConfig {
        call_timeout_secs: 1,
        ..AwsConfig::new("us-east-1")
    };
    let sdk = retailmind_tests::local_sdk_config(&endpoint)
        .into_builder()
        .timeout_config(aws::timeouts(&config))
        .build();
    let collector = collector_with(&sdk, &config).await;
    let (body, _) = batch(2);
    let started = std::time::Instant::now();
    let answer = tokio::time::timeout(std::time::Duration::from_secs(30), post(&collector, &body))
        .await
        .expect("answered within the attempts' timeouts");
    assert_eq!((answer.0, answer.1.as_deref()), (503, Some("5")));
    assert!(started.elapsed() >= std::time::Duration::from_secs(1));
    held.abort();
}

/// With `spool_dir` set, a stream that is down is absorbed by the local spool, and so are the
/// dead letters of the same request: its good events are acknowledged from the spool and its bad
/// event is kept there too, so the answer is 200 with the rejection, not a 503 that would make
/// the sender resend events already spooled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_with_a_bad_event_is_spooled_whole_while_the_stream_is_down() {
    let mut kinesis = FakeAws::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let config = CollectorConfig {
        spool_dir: Some(dir.path().to_owned()),
        ..CollectorConfig::default()
    };
    let collector =
        collector_configured(&kinesis.sdk_config(), &AwsConfig::new("us-east-1"), config).await;
    kinesis.go_down();
    let (body, _) = batch(2);
    let mut body: Value = serde_json::from_str(&body).unwrap();
    body["events"][1]["anonymous_id"] = json!("");

    let (status, _, answer) = post(&collector, &body.to_string()).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["accepted"], 1, "{answer}");
    assert_eq!(answer["rejected"][0]["index"], 1, "{answer}");
    assert_eq!(spool_files(dir.path()), 1, "the good event");
    assert_eq!(
        spool_files(&dir.path().join(DEAD_LETTER_SPOOL)),
        1,
        "the bad one"
    );
}

/// An outage from the start to the end, through the real SDK: a stream refusing every write (a
/// throttled or failing Kinesis) gets the batch spooled and answered 200; once the stream takes
/// writes again the spool replays into it, every event once, and the spool is left empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spooled_batch_reaches_the_stream_once_it_takes_writes_again() {
    let kinesis = FakeAws::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let collector =
        spooling_to_a_refusing_stream(&kinesis, dir.path(), CollectorConfig::default()).await;
    let (body, ids) = batch(3);
    let (status, _, answer) = post(&collector, &body).await;
    assert_eq!(
        (status, answer["accepted"].as_u64()),
        (200, Some(3)),
        "{answer}"
    );
    assert!(stored_ids(&kinesis).is_empty(), "the stream took nothing");

    kinesis.with(|s| s.kinesis.put_faults = BatchFaults::default());
    let expected: BTreeMap<String, usize> = ids.into_iter().map(|id| (id, 1)).collect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while stored_ids(&kinesis) != expected {
        assert!(
            std::time::Instant::now() < deadline,
            "not replayed: {:?}",
            stored_ids(&kinesis)
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // The replayer's next rounds find nothing left to send.
    tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;
    assert_eq!(stored_ids(&kinesis), expected);
    assert_eq!(
        spool_files(dir.path()),
        0,
        "the spool is empty once replayed"
    );
}

/// A stream refusing writes and a spool that is full: the answer is 503 with `Retry-After`, so
/// the sender keeps its events; once the stream is back, every event answered 200 is in it, and
/// none of the refused batch's, which its sender still holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_stream_refusing_and_the_spool_full_the_sender_keeps_its_events() {
    let kinesis = FakeAws::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let config = CollectorConfig {
        max_body_bytes: 4096,
        spool_max_bytes: 4096,
        ..CollectorConfig::default()
    };
    let collector = spooling_to_a_refusing_stream(&kinesis, dir.path(), config).await;
    let mut acknowledged = BTreeMap::new();
    let refused = loop {
        let (body, ids) = batch(3);
        let (status, retry_after, answer) = post(&collector, &body).await;
        if status == 503 {
            assert!(retry_after.is_some(), "503 without Retry-After: {answer}");
            break ids;
        }
        assert_eq!(status, 200, "{answer}");
        acknowledged.extend(ids.into_iter().map(|id| (id, 1)));
        assert!(acknowledged.len() < 60, "the spool never filled up");
    };
    assert!(!acknowledged.is_empty(), "the spool took nothing");

    kinesis.with(|s| s.kinesis.put_faults = BatchFaults::default());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while stored_ids(&kinesis) != acknowledged {
        let stored = stored_ids(&kinesis);
        assert!(
            refused.iter().all(|id| !stored.contains_key(id)),
            "a refused event was claimed"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "acknowledged events missing: {stored:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
