//! The consume loop against the embedded default: stream in SQLite, sessions in SQLite, lake on
//! local disk.

mod support;

use std::path::Path;

use bytes::Bytes;
use retailmind_connectors::{embedded, Backend, BackendConfig, StoredModel, StreamRecord};
use retailmind_processor::{Processor, ProcessorConfig};
use retailmind_recommend::ModelState;
use serde_json::json;

const T0: i64 = 1_764_064_800_000; // 2025-11-25T10:00:00Z
const MIN: i64 = 60_000;

fn record(n: u32, anon: &str, ts: i64, kind: &str, props: serde_json::Value) -> StreamRecord {
    let event = json!({
        "event_id": format!("01936a1c-3b5e-7cc4-9a1e-{n:012x}"),
        "type": kind,
        "anonymous_id": anon,
        "timestamp": ts,
        "context": {"page": {"url": format!("https://shop.example/{n}")}},
        "properties": props
    });
    StreamRecord {
        partition_key: anon.into(),
        data: Bytes::from(event.to_string()),
    }
}

/// Page views of `anon`, numbered and timed as given.
fn page_views(anon: &str, at: &[(u32, i64)]) -> Vec<StreamRecord> {
    let view = json!({"url": "https://shop.example/"});
    at.iter()
        .map(|&(n, ts)| record(n, anon, ts, "page_view", view.clone()))
        .collect()
}

fn processor(dir: &Path, backend: Backend, consumer: &str) -> Processor {
    let config = ProcessorConfig {
        backend: BackendConfig::embedded_at(dir),
        consumer: consumer.into(),
        batch_size: 3, // several batches, so checkpoints move in between
        ..ProcessorConfig::default()
    };
    Processor::new(backend, &config)
}

async fn stored_model(backend: &Backend) -> StoredModel {
    let stored = backend.models.load("recommendations").await.unwrap();
    stored.expect("the processor saved its model")
}

/// Every line of every lake file under `prefix`.
fn lake_lines(dir: &Path, prefix: &str) -> Vec<serde_json::Value> {
    let mut lines = Vec::new();
    for file in support::lake_files(dir, prefix) {
        let text = std::fs::read_to_string(file).unwrap();
        lines.extend(text.lines().map(|l| serde_json::from_str(l).unwrap()));
    }
    lines
}

#[tokio::test]
async fn events_become_sessions_and_lake_files_and_replays_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let backend = embedded::open(dir.path()).unwrap();
    let records = vec![
        record(1, "alice", T0, "page_view", json!({})),
        record(
            2,
            "alice",
            T0 + MIN,
            "product_view",
            json!({"product_id": "p1"}),
        ),
        record(3, "bob", T0 + 2 * MIN, "page_view", json!({})),
        record(
            4,
            "alice",
            T0 + 3 * MIN,
            "add_to_cart",
            json!({"product_id": "p1", "quantity": 1}),
        ),
        // 40 minutes later: a new session for alice.
        record(5, "alice", T0 + 43 * MIN, "page_view", json!({})),
    ];
    let mut with_garbage = records.clone();
    with_garbage.insert(
        2,
        StreamRecord {
            partition_key: "x".into(),
            data: Bytes::from_static(b"{not json"),
        },
    );
    backend.sink.append(with_garbage).await.unwrap();

    let p = processor(dir.path(), backend.clone(), "main");
    assert_eq!(p.drain().await.unwrap(), 6);

    let alice = backend.sessions.sessions_of("alice").await.unwrap();
    assert_eq!(alice.len(), 2);
    assert_eq!(
        (
            alice[0].event_count,
            alice[0].page_views,
            alice[0].products_viewed,
            alice[0].cart_adds
        ),
        (3, 1, 1, 1)
    );
    assert_eq!((alice[0].start_ms, alice[0].end_ms), (T0, T0 + 3 * MIN));
    assert_eq!(alice[0].entry_url, "https://shop.example/1");
    assert_eq!(alice[0].exit_url, "https://shop.example/4");
    assert_eq!(alice[1].event_count, 1);
    assert_eq!(backend.sessions.sessions_of("bob").await.unwrap().len(), 1);

    let lake = lake_lines(dir.path(), "events/dt=2025-11-25/hour=10");
    let mut ids: Vec<&str> = lake
        .iter()
        .map(|l| l["event_id"].as_str().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids.len(), 5, "every event exactly once in the lake");
    ids.dedup();
    assert_eq!(ids.len(), 5);
    let errors = lake_lines(dir.path(), "errors");
    assert_eq!(errors.len(), 1);
    assert_eq!(
        errors[0]["data_base64"], "e25vdCBqc29u",
        "base64 of `{{not json`"
    );
    assert!(errors[0]["reason"].as_str().unwrap().contains("sequence 3"));

    let checkpoint = support::embedded_checkpoint(&backend, "main").await;
    assert_eq!(checkpoint.as_deref(), Some("6"));

    // The drain saved the recommendation model with the records it holds.
    let model = stored_model(&backend).await;
    assert_eq!(
        model.positions[embedded::SHARD_ID],
        [(String::new(), "6".to_owned())]
    );

    // A second consumer reads the whole stream again (a new process: its model keeper starts
    // from the stored model): sessions and the model must stay exactly as they are.
    let before = backend.sessions.sessions_of("alice").await.unwrap();
    let replay = processor(dir.path(), backend.clone(), "replay");
    assert_eq!(replay.drain().await.unwrap(), 6);
    assert_eq!(backend.sessions.sessions_of("alice").await.unwrap(), before);
    let after = stored_model(&backend).await;
    assert_eq!(
        after.version, model.version,
        "the replay taught the model nothing"
    );
    let learned = ModelState::from_snapshot(&after.bytes).unwrap();
    let p1 = learned.items().get("p1").expect("p1 was viewed");
    assert_eq!(learned.items().clicks(p1), 1);
}

/// A row of the log whose bytes were damaged on disk does not stop the shard: its bytes are
/// kept under `errors/`, and the events before and after it reach their sessions.
#[tokio::test]
async fn a_damaged_log_row_goes_to_the_errors_and_the_shard_reads_on() {
    let dir = tempfile::tempdir().unwrap();
    let backend = embedded::open(dir.path()).unwrap();
    for first in [1, 4, 7] {
        let at: Vec<(u32, i64)> = (first..first + 3)
            .map(|n| (n, T0 + i64::from(n) * MIN))
            .collect();
        backend.sink.append(page_views("carol", &at)).await.unwrap();
    }
    rusqlite::Connection::open(dir.path().join(embedded::DB_FILE))
        .unwrap()
        .execute(
            "UPDATE stream_log SET data = x'ffffff7f0000' WHERE seq = 6",
            [],
        )
        .unwrap();

    let p = processor(dir.path(), backend.clone(), "main");
    p.drain().await.unwrap();

    let carol = backend.sessions.sessions_of("carol").await.unwrap();
    assert_eq!(carol.len(), 1);
    assert_eq!(carol[0].event_count, 6, "views 1-3 and 7-9");
    let errors = lake_lines(dir.path(), "errors");
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0]["data_base64"], "////fwAA");
    assert!(errors[0]["reason"].as_str().unwrap().contains("sequence 6"));
    let checkpoint = support::embedded_checkpoint(&backend, "main").await;
    assert_eq!(checkpoint.as_deref(), Some("9"));
}

#[tokio::test]
async fn a_restarted_processor_continues_from_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let backend = embedded::open(dir.path()).unwrap();
    backend
        .sink
        .append(
            (1..=4)
                .map(|n| record(n, "carol", T0 + i64::from(n) * MIN, "page_view", json!({})))
                .collect(),
        )
        .await
        .unwrap();
    assert_eq!(
        processor(dir.path(), backend.clone(), "main")
            .drain()
            .await
            .unwrap(),
        4
    );

    // A new process: everything reopened from disk.
    let reopened = embedded::open(dir.path()).unwrap();
    reopened
        .sink
        .append(vec![record(
            9,
            "carol",
            T0 + 10 * MIN,
            "page_view",
            json!({}),
        )])
        .await
        .unwrap();
    let p = processor(dir.path(), reopened.clone(), "main");
    assert_eq!(p.drain().await.unwrap(), 1, "only the new record is read");
    let carol = reopened.sessions.sessions_of("carol").await.unwrap();
    assert_eq!(carol.len(), 1);
    // Written once per batch: records 1-3, record 4, record 9.
    assert_eq!((carol[0].event_count, carol[0].version), (5, 3));
}

/// A late event a little before a stored session's start joins that session, which then
/// starts earlier (and takes its entry page): the stored snapshot moves to the new start.
#[tokio::test]
async fn a_late_event_before_a_stored_session_moves_its_start() {
    let dir = tempfile::tempdir().unwrap();
    let backend = embedded::open(dir.path()).unwrap();
    let p = processor(dir.path(), backend.clone(), "main");
    let pages = page_views("lena", &[(1, T0 + 10 * MIN), (2, T0 + 12 * MIN)]);
    backend.sink.append(pages).await.unwrap();
    p.drain().await.unwrap();
    let late = page_views("lena", &[(3, T0)]);
    backend.sink.append(late).await.unwrap();
    assert_eq!(p.drain().await.unwrap(), 1);
    let sessions = backend.sessions.sessions_of("lena").await.unwrap();
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    let s = &sessions[0];
    assert_eq!(
        (s.start_ms, s.end_ms, s.event_count, s.version),
        (T0, T0 + 12 * MIN, 3, 2)
    );
    assert_eq!(s.entry_url, "https://shop.example/3");
}

/// A late event in the silence between two stored sessions, within 30 minutes of both, makes
/// them one visit: the earlier absorbs the later, whose row goes, and the visitor's next
/// session moves up a number. Replaying everything changes nothing.
#[tokio::test]
async fn a_late_event_between_two_sessions_joins_them() {
    let dir = tempfile::tempdir().unwrap();
    let backend = embedded::open(dir.path()).unwrap();
    let p = processor(dir.path(), backend.clone(), "main");
    let pages = page_views(
        "mira",
        &[
            (1, T0),
            (2, T0 + 10 * MIN),
            (3, T0 + 50 * MIN),
            (4, T0 + 180 * MIN),
        ],
    );
    backend.sink.append(pages).await.unwrap();
    p.drain().await.unwrap();
    let before = backend.sessions.sessions_of("mira").await.unwrap();
    let numbers: Vec<(i64, u32)> = before
        .iter()
        .map(|s| (s.start_ms, s.session_number))
        .collect();
    assert_eq!(numbers, [(T0, 1), (T0 + 50 * MIN, 2), (T0 + 180 * MIN, 3)]);

    let bridge = page_views("mira", &[(5, T0 + 30 * MIN)]);
    backend.sink.append(bridge).await.unwrap();
    assert_eq!(p.drain().await.unwrap(), 1);
    let after = backend.sessions.sessions_of("mira").await.unwrap();
    let rows: Vec<(i64, i64, u32, u32, &str)> = after
        .iter()
        .map(|s| {
            (
                s.start_ms,
                s.end_ms,
                s.event_count,
                s.session_number,
                s.exit_url.as_str(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            (T0, T0 + 50 * MIN, 4, 1, "https://shop.example/3"),
            (
                T0 + 180 * MIN,
                T0 + 180 * MIN,
                1,
                2,
                "https://shop.example/4"
            ),
        ]
    );
    assert_eq!(after[0].session_id, before[0].session_id);

    // From the start of the stream again, under another consumer name: the same sessions.
    let replay = processor(dir.path(), backend.clone(), "replay");
    replay.drain().await.unwrap();
    assert_eq!(backend.sessions.sessions_of("mira").await.unwrap(), after);
}

/// An event that reached the collector days after it happened (a queue delivered at last)
/// goes to the lake but changes no session past the allowed lateness; within it, it is merged.
#[tokio::test]
async fn events_later_than_the_allowed_lateness_reach_the_lake_but_no_session() {
    let received = |mut r: StreamRecord, at: i64| {
        let mut event: serde_json::Value = serde_json::from_slice(&r.data).unwrap();
        event["received_at"] = json!(at);
        r.data = Bytes::from(event.to_string());
        r
    };
    let view = || json!({"url": "https://shop.example/"});
    let stream = vec![
        received(record(1, "mia", T0, "page_view", view()), T0 + 1_000),
        // Within the session's span, but received four days later.
        received(
            record(2, "mia", T0 + 5 * MIN, "page_view", view()),
            T0 + 4 * 24 * 60 * MIN,
        ),
        received(
            record(3, "mia", T0 + 10 * MIN, "page_view", view()),
            T0 + 10 * MIN,
        ),
    ];
    for (lateness_hours, counted) in [(72, 2), (100, 3)] {
        let dir = tempfile::tempdir().unwrap();
        let backend = embedded::open(dir.path()).unwrap();
        backend.sink.append(stream.clone()).await.unwrap();
        let config = ProcessorConfig {
            backend: BackendConfig::embedded_at(dir.path()),
            session_lateness_hours: lateness_hours,
            metrics_listen: None,
            ..ProcessorConfig::default()
        };
        assert_eq!(
            Processor::new(backend.clone(), &config)
                .drain()
                .await
                .unwrap(),
            3
        );
        let sessions = backend.sessions.sessions_of("mia").await.unwrap();
        assert_eq!(
            sessions.iter().map(|s| s.event_count).collect::<Vec<_>>(),
            [counted],
            "lateness {lateness_hours} h"
        );
        assert_eq!(
            lake_lines(dir.path(), "events").len(),
            3,
            "the lake has every event"
        );
    }
}

/// A store written before sessions were kept disjoint may hold one session inside another
/// (here L spans 45-100 minutes and M sits at 50). The narrower read of a batch at 100 finds
/// only M; the replay of L's first event must neither add a second row of L nor stop the
/// processor.
#[tokio::test]
async fn a_replayed_event_of_a_session_hidden_inside_another_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let backend = embedded::open(dir.path()).unwrap();
    let p = processor(dir.path(), backend.clone(), "main");
    let replayed = record(1, "lena", T0 + 100 * MIN, "page_view", json!({}));
    let first: retailmind_schema::Event = serde_json::from_slice(&replayed.data).unwrap();
    let session =
        |id: &str, start: i64, end: i64, ids: Vec<uuid::Uuid>| retailmind_schema::Session {
            session_id: id.into(),
            anonymous_id: "lena".into(),
            start_ms: T0 + start * MIN,
            end_ms: T0 + end * MIN,
            event_count: ids.len() as u32,
            event_ids: ids,
            version: 1,
            ..retailmind_schema::Session::default()
        };
    let legacy = vec![
        session(
            &first.event_id.to_string(),
            45,
            100,
            vec![first.event_id, uuid::Uuid::from_u128(7)],
        ),
        session("m", 50, 50, vec![uuid::Uuid::from_u128(8)]),
    ];
    backend.sessions.put(&legacy).await.unwrap();

    backend.sink.append(vec![replayed]).await.unwrap();
    assert_eq!(p.drain().await.unwrap(), 1);
    assert_eq!(backend.sessions.sessions_of("lena").await.unwrap(), legacy);
}
