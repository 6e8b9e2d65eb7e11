//! The AWS backend against a real `moto_server`: Kinesis, DynamoDB, Firehose and S3 over HTTP,
//! through the same SDK clients production uses. Each test starts its own moto on a free port
//! (see [`retailmind_tests::moto`]) and stops it when done; a missing moto fails the tests,
//! saying how to install it: they never skip.

use std::collections::HashMap;
use std::time::Duration;

use aws_config::SdkConfig;
use base64::Engine;
use bytes::Bytes;
use retailmind_connectors::aws::{backend, provision, LakeDestination};
use retailmind_connectors::stream::sequence_cmp;
use retailmind_connectors::{
    AwsConfig, Backend, ConnectorError, LakeRecord, Merge, SessionScan, StoredAt, StreamEntry,
    StreamRecord, UndecodableRecord,
};
use retailmind_schema::{CurrencyRevenue, Session, SessionOrder};
use retailmind_tests::moto::MotoServer;
use uuid::Uuid;

const BUCKET: &str = "retailmind-lake";

/// A moto server, SDK configuration and backend config pointing at it.
struct Aws {
    moto: MotoServer,
    sdk: SdkConfig,
    config: AwsConfig,
}

impl Aws {
    async fn start() -> Aws {
        let moto = MotoServer::start().await;
        let sdk = moto.sdk_config();
        let mut config = AwsConfig::new("us-east-1");
        config.endpoint_url = Some(moto.endpoint.clone());
        Aws { moto, sdk, config }
    }

    /// Starts moto, creates the lake bucket and provisions everything (twice: the second run
    /// must find everything in place).
    async fn provisioned(shards: i32) -> Aws {
        let aws = Aws::start().await;
        aws.moto
            .s3()
            .create_bucket()
            .bucket(BUCKET)
            .send()
            .await
            .expect("bucket created");
        let lake = LakeDestination {
            bucket_arn: format!("arn:aws:s3:::{BUCKET}"),
            role_arn: "arn:aws:iam::123456789012:role/retailmind-firehose".into(),
            shards,
        };
        provision(&aws.sdk, &aws.config, &lake)
            .await
            .expect("provisioned");
        provision(&aws.sdk, &aws.config, &lake)
            .await
            .expect("provisioning again changes nothing");
        aws
    }

    fn backend(&self) -> Backend {
        backend(&self.sdk, &self.config)
    }

    /// The keys and bodies of every object under `prefix` of the lake bucket.
    async fn objects(&self, prefix: &str) -> Vec<(String, Vec<u8>)> {
        self.moto.objects(BUCKET, prefix).await
    }

    /// The lines under `prefix` of the lake bucket, once there are at least `count`.
    async fn lines_under(&self, prefix: &str, count: usize) -> Vec<String> {
        let timeout = Duration::from_secs(30);
        self.moto.lines_under(BUCKET, prefix, count, timeout).await
    }
}

#[tokio::test]
async fn stream_is_not_ready_until_provisioned() {
    let aws = Aws::start().await;
    let err = aws.backend().sink.ready().await.expect_err("no stream yet");
    assert!(matches!(err, ConnectorError::Misconfigured(_)), "{err:?}");
}

#[tokio::test]
async fn stream_round_trips_1200_records_in_order_per_partition_key() {
    let aws = Aws::provisioned(2).await;
    let backend = aws.backend();
    backend.sink.ready().await.expect("stream is ready");

    let keys = ["visitor-a", "visitor-b", "visitor-c", "visitor-d"];
    let records: Vec<StreamRecord> = (0..1200)
        .map(|i| StreamRecord {
            partition_key: keys[i % keys.len()].to_owned(),
            data: Bytes::from(format!(r#"{{"n":{i}}}"#)),
        })
        .collect();
    backend
        .sink
        .append(records.clone())
        .await
        .expect("appended");

    let shards = backend.reader.shards().await.expect("shards listed");
    assert_eq!(shards.len(), 2);
    assert!(shards.iter().all(|s| s.parent_shard_ids.is_empty()));

    let mut read_by_shard: HashMap<String, Vec<StreamEntry>> = HashMap::new();
    for shard in &shards {
        let entries = read_by_shard.entry(shard.shard_id.clone()).or_default();
        loop {
            let after = entries.last().map(|e| e.sequence.clone());
            let batch = backend
                .reader
                .read(&shard.shard_id, after.as_deref(), 250)
                .await
                .expect("read");
            assert!(!batch.shard_ended, "an open shard does not end");
            assert!(batch.millis_behind_latest.is_some());
            assert!(batch.entries.len() <= 250);
            if batch.entries.is_empty() {
                break;
            }
            entries.extend(batch.entries);
        }
        for pair in entries.windows(2) {
            assert_eq!(
                sequence_cmp(&pair[0].sequence, &pair[1].sequence),
                std::cmp::Ordering::Less,
                "sequences increase within {}",
                shard.shard_id
            );
        }
    }

    let mut read_by_key: HashMap<&str, Vec<Bytes>> = HashMap::new();
    for entry in read_by_shard.values().flatten() {
        read_by_key
            .entry(entry.partition_key.as_str())
            .or_default()
            .push(entry.data.clone());
    }
    assert_eq!(read_by_key.values().map(Vec::len).sum::<usize>(), 1200);
    for key in keys {
        let sent: Vec<Bytes> = records
            .iter()
            .filter(|r| r.partition_key == key)
            .map(|r| r.data.clone())
            .collect();
        assert_eq!(
            read_by_key.get(key),
            Some(&sent),
            "records of {key} in order"
        );
    }

    // Reading again from a position in the middle (no cached iterator for it).
    let (shard_id, entries) = read_by_shard
        .iter()
        .find(|(_, entries)| entries.len() > 20)
        .expect("a shard with records");
    let again = backend
        .reader
        .read(shard_id, Some(&entries[9].sequence), 5)
        .await
        .expect("read from the middle");
    assert_eq!(again.entries, entries[10..15].to_vec());
}

#[tokio::test]
async fn stream_refuses_a_record_over_one_mebibyte() {
    let aws = Aws::provisioned(1).await;
    let too_big = StreamRecord {
        partition_key: "k".into(),
        data: Bytes::from(vec![b'x'; 1024 * 1024]),
    };
    let err = aws
        .backend()
        .sink
        .append(vec![too_big])
        .await
        .expect_err("over the record limit");
    assert!(matches!(err, ConnectorError::Misconfigured(_)), "{err:?}");
}

#[tokio::test]
async fn checkpoints_only_move_forward() {
    let aws = Aws::provisioned(1).await;
    let checkpoints = aws.backend().checkpoints;
    let (p, e, shard) = ("processor", "exporter", "shardId-000000000000");
    let stored = |consumer, shard| checkpoints.get(consumer, shard);
    assert_eq!(stored(p, shard).await.expect("get"), None);

    checkpoints.set(p, shard, "200").await.expect("first");
    assert_eq!(stored(p, shard).await.expect("get").as_deref(), Some("200"));
    // Numerically larger though lexicographically smaller than "200".
    checkpoints.set(p, shard, "1000").await.expect("forward");
    let err = checkpoints.set(p, shard, "200").await.expect_err("back");
    assert!(matches!(err, ConnectorError::Conflict { .. }), "{err:?}");
    checkpoints.set(p, shard, "1000").await.expect("same again");
    assert_eq!(
        stored(p, shard).await.expect("get").as_deref(),
        Some("1000")
    );

    let kinesis_like = "49590338271490256608559692538361571095921575989136588898";
    checkpoints.set(p, shard, kinesis_like).await.expect("long");
    checkpoints
        .set(e, shard, "5")
        .await
        .expect("other consumer");
    let other_shard = "shardId-000000000001";
    checkpoints
        .set(p, other_shard, "7")
        .await
        .expect("other shard");
    assert_eq!(
        stored(p, shard).await.expect("get").as_deref(),
        Some(kinesis_like)
    );
    assert_eq!(stored(e, shard).await.expect("get").as_deref(), Some("5"));
    assert_eq!(
        stored(p, other_shard).await.expect("get").as_deref(),
        Some("7")
    );

    let err = checkpoints.set(p, shard, "12ab").await.expect_err("bad");
    assert!(matches!(err, ConnectorError::Misconfigured(_)), "{err:?}");
}

fn session(anonymous_id: &str, start_ms: i64, version: u64) -> Session {
    Session {
        session_id: Uuid::now_v7().to_string(),
        anonymous_id: anonymous_id.into(),
        user_id: Some("customer-7".into()),
        start_ms,
        end_ms: start_ms + 90_000,
        event_count: 5,
        page_views: 3,
        entry_url: "https://shop.example/?utm_source=news".into(),
        exit_url: "https://shop.example/checkout".into(),
        referrer: Some("https://mail.example/".into()),
        utm_source: Some("news".into()),
        utm_medium: Some("email".into()),
        utm_campaign: Some("black-friday".into()),
        products_viewed: 2,
        cart_adds: 1,
        purchases: 2,
        revenue_minor: 12_990,
        currency: Some("EUR".into()),
        other_revenue: vec![CurrencyRevenue {
            currency: "GBP".into(),
            revenue_minor: 4_500,
        }],
        engaged_ms: Some(48_500),
        event_ids: (0..5).map(|_| Uuid::now_v7()).collect(),
        orders: vec![
            SessionOrder {
                order_id: "A-1001".into(),
                revenue_minor: 12_990,
                currency: "EUR".into(),
            },
            SessionOrder {
                order_id: "A-1002".into(),
                revenue_minor: 4_500,
                currency: "GBP".into(),
            },
        ],
        version,
        engaged: true,
        bounce: false,
        device: "desktop".into(),
        session_number: 2,
    }
}

fn is_conflict(result: retailmind_connectors::Result<()>) -> bool {
    matches!(result, Err(ConnectorError::Conflict { .. }))
}

type Sessions = std::sync::Arc<dyn retailmind_connectors::SessionStore>;

/// Runs `rule` against DynamoDB (on moto) and then against the embedded store.
async fn on_both_session_stores<F: std::future::Future<Output = ()>>(rule: impl Fn(Sessions) -> F) {
    let aws = Aws::provisioned(1).await;
    rule(aws.backend().sessions).await;
    let dir = tempfile::tempdir().unwrap();
    rule(
        retailmind_connectors::embedded::open(dir.path())
            .unwrap()
            .sessions,
    )
    .await;
}

#[tokio::test]
async fn sessions_write_only_on_the_expected_version() {
    on_both_session_stores(the_version_rule).await;
}

/// A snapshot is written only on the version before it (none for version 1).
async fn the_version_rule(sessions: Sessions) {
    let first = session("anon-1", 1_732_527_000_000, 1);
    let snapshot = |event_count, version| Session {
        event_count,
        version,
        ..first.clone()
    };
    assert!(
        is_conflict(sessions.put(&[snapshot(5, 2)]).await),
        "a later version of a session not stored (erased meanwhile) is refused"
    );
    sessions
        .put(std::slice::from_ref(&first))
        .await
        .expect("version 1 is new");
    assert!(is_conflict(sessions.put(&[snapshot(99, 1)]).await));
    sessions.put(&[snapshot(6, 2)]).await.expect("2 follows 1");
    assert!(is_conflict(sessions.put(&[snapshot(7, 2)]).await));
    assert!(is_conflict(sessions.put(&[snapshot(7, 4)]).await));
    // Two snapshots of one session in one call are written in order.
    let (third, fourth) = (snapshot(7, 3), snapshot(8, 4));
    sessions
        .put(&[third, fourth.clone()])
        .await
        .expect("3 then 4");

    let stored = sessions.sessions_of("anon-1").await.expect("query");
    assert_eq!(stored, vec![fourth.clone()]);

    // A late event before the session's first one moved its start: the snapshot moves too.
    let moved = Session {
        start_ms: fourth.start_ms - 600_000,
        event_count: 9,
        version: 5,
        ..fourth.clone()
    };
    sessions
        .put(std::slice::from_ref(&moved))
        .await
        .expect("5 follows 4 at its new start");
    let stored = sessions.sessions_of("anon-1").await.expect("query");
    assert_eq!(stored, vec![moved]);
    assert!(
        is_conflict(
            sessions
                .put(&[Session {
                    version: 5,
                    ..fourth
                }])
                .await
        ),
        "a stale 5 at the old start"
    );
}

#[tokio::test]
async fn sessions_merge_all_or_nothing_on_dynamodb_and_embedded() {
    on_both_session_stores(the_merge_rule).await;
}

#[tokio::test]
async fn sessions_put_many_at_once_and_a_forgotten_visitor_loses_every_one() {
    on_both_session_stores(the_bulk_rule).await;
}

/// One `put` of many visitors' sessions writes each (DynamoDB: several side by side), and
/// forgetting a visitor deletes all of theirs (DynamoDB: BatchWriteItem, 25 to a call) and no
/// one else's.
async fn the_bulk_rule(sessions: Sessions) {
    let t = 1_732_527_000_000;
    let mut all = Vec::new();
    for visitor in 0..40 {
        for n in 0..2 {
            all.push(session(&format!("bulk-{visitor}"), t + n * 7_200_000, 1));
        }
    }
    let gone: Vec<Session> = (0..30)
        .map(|n| session("bulk-gone", t + n * 7_200_000, 1))
        .collect();
    all.extend(gone.iter().cloned());
    sessions.put(&all).await.expect("every session written");
    for visitor in 0..40 {
        let id = format!("bulk-{visitor}");
        let expected: Vec<Session> = all
            .iter()
            .filter(|s| s.anonymous_id == id)
            .cloned()
            .collect();
        assert_eq!(sessions.sessions_of(&id).await.unwrap(), expected);
    }
    assert_eq!(sessions.sessions_of("bulk-gone").await.unwrap(), gone);

    assert_eq!(sessions.forget_visitor("bulk-gone").await.unwrap(), 30);
    assert!(sessions.sessions_of("bulk-gone").await.unwrap().is_empty());
    assert_eq!(sessions.sessions_of("bulk-7").await.unwrap().len(), 2);
}

/// A merge writes its survivor and deletes what it absorbed in one transaction, each on the
/// version read: a conflict on any of them leaves every session as it was.
async fn the_merge_rule(sessions: Sessions) {
    const MIN: i64 = 60_000;
    let t = 1_732_527_000_000;
    let (a, b, c) = (
        session("anon-m", t, 1),
        session("anon-m", t + 50 * MIN, 1),
        session("anon-m", t + 180 * MIN, 1),
    );
    sessions
        .put(&[a.clone(), b.clone(), c.clone()])
        .await
        .expect("three sessions");
    let joined = Session {
        end_ms: b.end_ms,
        event_count: a.event_count + b.event_count,
        version: 2,
        ..a.clone()
    };
    // The survivor as written, its start as read (none when new), what it absorbs as read.
    let merge = |survivor: &Session, read_start: Option<i64>, absorbed: &[&Session]| Merge {
        survivor: survivor.clone(),
        survivor_read_start: read_start,
        absorbed: absorbed.iter().map(|s| StoredAt::of(s)).collect(),
    };
    let stale_b = Session {
        version: 2,
        ..b.clone()
    };
    assert!(
        is_conflict(sessions.merge(&merge(&joined, Some(t), &[&stale_b])).await),
        "an absorbed session read at another version"
    );
    let stale_survivor = Session {
        version: 3,
        ..joined.clone()
    };
    assert!(
        is_conflict(
            sessions
                .merge(&merge(&stale_survivor, Some(t), &[&b]))
                .await
        ),
        "a survivor written over another version"
    );
    let stored = sessions.sessions_of("anon-m").await.expect("query");
    assert_eq!(stored, [a.clone(), b.clone(), c.clone()], "nothing changed");

    sessions
        .merge(&merge(&joined, Some(t), &[&b]))
        .await
        .expect("a absorbs b");
    let stored = sessions.sessions_of("anon-m").await.expect("query");
    assert_eq!(stored, [joined.clone(), c.clone()]);
    assert!(
        is_conflict(sessions.merge(&merge(&joined, Some(t), &[&b])).await),
        "the same merge again"
    );

    // The survivor's start moved earlier by the same late events, and it absorbs c.
    let moved = Session {
        start_ms: t - 10 * MIN,
        end_ms: c.end_ms,
        version: 3,
        ..joined.clone()
    };
    sessions
        .merge(&merge(&moved, Some(t), &[&c]))
        .await
        .expect("a moved survivor absorbs c");
    let stored = sessions.sessions_of("anon-m").await.expect("query");
    assert_eq!(stored, std::slice::from_ref(&moved));

    // A session the late events opened absorbs the stored one.
    let opened = Session {
        session_id: Uuid::now_v7().to_string(),
        start_ms: t - 40 * MIN,
        end_ms: moved.end_ms,
        version: 1,
        ..moved.clone()
    };
    sessions
        .merge(&merge(&opened, None, &[&moved]))
        .await
        .expect("a new session absorbs a stored one");
    let stored = sessions.sessions_of("anon-m").await.expect("query");
    assert_eq!(stored, [opened]);
}

/// The scans of the lake export and the live panel select the same sessions on DynamoDB (a
/// Scan, page after page) as on the embedded store, and as `SessionScan::selects` says.
#[tokio::test]
async fn sessions_scans_select_the_same_sessions_on_dynamodb_and_embedded() {
    let aws = Aws::provisioned(1).await;
    let dir = tempfile::tempdir().unwrap();
    let embedded = retailmind_connectors::embedded::open(dir.path()).unwrap();
    let day = 1_732_492_800_000; // 2024-11-25T00:00Z
    let mut all = Vec::new();
    // 60 sessions over three days, some crossing midnight, each of its own visitor.
    for i in 0..60i64 {
        let mut s = session(&format!("anon-scan-{i}"), day + i * 3_600_000 + 120_000, 1);
        s.end_ms = s.start_ms + (i % 7) * 600_000;
        all.push(s);
    }
    let stores = [aws.backend().sessions, embedded.sessions];
    for store in &stores {
        store.put(&all).await.expect("put");
    }
    let scans = [
        SessionScan::StartedIn {
            from_ms: day + 86_400_000,
            to_ms: day + 2 * 86_400_000,
        },
        SessionScan::StartedIn {
            from_ms: day - 86_400_000,
            to_ms: day,
        },
        SessionScan::EndedSince {
            since_ms: day + 50 * 3_600_000,
        },
    ];
    for scan in scans {
        let mut expected: Vec<&str> = all
            .iter()
            .filter(|s| scan.selects(s))
            .map(|s| s.anonymous_id.as_str())
            .collect();
        expected.sort_unstable();
        for store in &stores {
            let found = store.scan(scan).await.expect("scan");
            let mut ids: Vec<&str> = found.iter().map(|s| s.anonymous_id.as_str()).collect();
            ids.sort_unstable();
            assert_eq!(ids, expected, "{scan:?}");
            for s in &found {
                let original = all
                    .iter()
                    .find(|o| o.anonymous_id == s.anonymous_id)
                    .unwrap();
                assert_eq!(s, original, "a scanned session has every field");
            }
        }
    }
}

#[tokio::test]
async fn sessions_round_trip_every_field_and_answer_queries() {
    let aws = Aws::provisioned(1).await;
    let sessions = aws.backend().sessions;
    let morning = session("anon-2", 1_732_500_000_000, 1);
    let bare_evening = Session {
        session_id: Uuid::now_v7().to_string(),
        anonymous_id: "anon-2".into(),
        start_ms: 1_732_540_000_000,
        end_ms: 1_732_540_000_000,
        event_count: 1,
        page_views: 1,
        entry_url: "https://shop.example/".into(),
        exit_url: "https://shop.example/".into(),
        event_ids: vec![Uuid::now_v7()],
        version: 1,
        ..Session::default()
    };
    let other_visitor = session("anon-3", 1_732_520_000_000, 1);
    // Newest first in the call: the store answers by key, not by write order.
    let all = [bare_evening.clone(), other_visitor.clone(), morning.clone()];
    sessions.put(&all).await.expect("written");

    let both = vec![morning.clone(), bare_evening.clone()];
    let of = |anonymous_id| sessions.sessions_of(anonymous_id);
    assert_eq!(of("anon-2").await.expect("query"), both);
    assert_eq!(of("anon-3").await.expect("query"), vec![other_visitor]);
    assert_eq!(of("nobody").await.expect("query"), vec![]);

    let since = |from_ms| sessions.sessions_since("anon-2", from_ms);
    assert_eq!(since(morning.start_ms).await.expect("query"), both);
    let later = since(morning.start_ms + 1).await.expect("query");
    assert_eq!(later, vec![bare_evening.clone()]);
    assert_eq!(since(i64::MAX).await.expect("query"), vec![]);

    let latest = |at_ms| sessions.latest_before("anon-2", at_ms);
    assert_eq!(latest(morning.start_ms - 1).await.expect("query"), None);
    let at_start = latest(morning.start_ms).await.expect("query");
    assert_eq!(at_start, Some(morning.clone()));
    let before_evening = latest(bare_evening.start_ms - 1).await.expect("query");
    assert_eq!(before_evening, Some(morning));
    assert_eq!(latest(i64::MAX).await.expect("query"), Some(bare_evening));
}

#[tokio::test]
async fn lake_events_land_in_s3_as_json_lines_under_events() {
    let aws = Aws::provisioned(1).await;
    let lake = aws.backend().lake;
    let records: Vec<LakeRecord> = (0..620)
        .map(|i| {
            let event_time_ms = 1_732_527_000_000 + i * 1_000;
            let json = serde_json::json!({
                "event_id": Uuid::now_v7(),
                "type": "page_view",
                "anonymous_id": format!("anon-{}", i % 7),
                "timestamp": event_time_ms,
                "context": {"page": {"url": format!("https://shop.example/p/{i}")}},
                "properties": {},
            });
            LakeRecord {
                event_time_ms,
                json: Bytes::from(json.to_string()),
            }
        })
        .collect();
    // Two calls of 310, then all 620 in one call, which goes out as chunks of 500 and 120.
    lake.write_events(&records[..310]).await.expect("written");
    lake.write_events(&records[310..]).await.expect("written");
    lake.write_events(&records).await.expect("written again");

    let mut expected: Vec<String> = records
        .iter()
        .chain(&records)
        .map(|r| String::from_utf8(r.json.to_vec()).expect("utf-8"))
        .collect();
    expected.sort();
    let mut lines = aws.lines_under("events/", expected.len()).await;
    lines.sort();
    assert_eq!(lines.len(), expected.len());
    assert!(
        lines == expected,
        "the lake holds exactly the events written"
    );
    assert!(
        aws.objects("events/").await.len() >= 4,
        "one object per PutRecordBatch call: 310, 310, 500 and 120 records"
    );
}

#[tokio::test]
async fn lake_errors_land_in_s3_under_errors_with_reason_and_data() {
    let aws = Aws::provisioned(1).await;
    let lake = aws.backend().lake;
    let records: Vec<UndecodableRecord> = (0..3u8)
        .map(|i| UndecodableRecord {
            received_at_ms: 1_732_527_000_000 + i64::from(i),
            reason: format!("expected value at line 1 column {i}"),
            data: Bytes::from(vec![0xff, b'{', i, b'\n']),
        })
        .collect();
    lake.write_errors(&records).await.expect("written");

    let lines = aws.lines_under("errors/", records.len()).await;
    assert_eq!(lines.len(), records.len());
    let mut found: Vec<UndecodableRecord> = lines
        .iter()
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            UndecodableRecord {
                received_at_ms: value["received_at_ms"].as_i64().expect("received_at_ms"),
                reason: value["reason"].as_str().expect("reason").to_owned(),
                data: Bytes::from(
                    base64::engine::general_purpose::STANDARD
                        .decode(value["data_base64"].as_str().expect("data_base64"))
                        .expect("base64"),
                ),
            }
        })
        .collect();
    found.sort_by_key(|r| r.received_at_ms);
    assert_eq!(found, records);
    assert!(
        aws.objects("events/").await.is_empty(),
        "errors stay out of the events"
    );
}

/// What Firehose cannot take must not stop the shard (refused, a batch fails on every retry):
/// an event sent pretty-printed becomes one line of the same JSON; one larger than a Firehose
/// record (Kinesis takes 1 MiB, Firehose 1,000 KiB) goes to `errors/`, named and cut, while
/// the rest of its batch reaches `events/`; an undecodable record of a megabyte keeps its first
/// half megabyte.
#[tokio::test]
async fn records_firehose_cannot_take_as_they_are_still_reach_the_lake() {
    let aws = Aws::provisioned(1).await;
    let lake = aws.backend().lake;
    let at = 1_732_527_000_000;
    let pretty = serde_json::to_vec_pretty(&serde_json::json!({
        "event_id": Uuid::now_v7(), "type": "page_view", "note": "a\nb"
    }))
    .unwrap();
    let huge = serde_json::json!({"event_id": Uuid::now_v7(), "pad": "x".repeat(1_030_000)});
    let huge = Bytes::from(huge.to_string());
    lake.write_events(&[
        LakeRecord::new(at, Bytes::from(pretty.clone())),
        LakeRecord::new(at, huge.clone()),
    ])
    .await
    .expect("written");
    lake.write_errors(&[UndecodableRecord {
        received_at_ms: at,
        reason: "expected value at line 1 column 1".into(),
        data: Bytes::from(vec![b'#'; 1024 * 1024]),
    }])
    .await
    .expect("written");

    let events = aws.lines_under("events/", 1).await;
    assert_eq!(events.len(), 1);
    let event: serde_json::Value = serde_json::from_str(&events[0]).unwrap();
    assert_eq!(
        event,
        serde_json::from_slice::<serde_json::Value>(&pretty).unwrap()
    );
    let mut errors: Vec<serde_json::Value> = aws
        .lines_under("errors/", 2)
        .await
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    errors.sort_by_key(|e| e["truncated_from_bytes"].as_u64());
    assert_eq!(errors.len(), 2);
    assert_eq!(errors[0]["truncated_from_bytes"], huge.len());
    let reason = errors[0]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with(&format!("an event of {} bytes", huge.len())),
        "{reason}"
    );
    assert_eq!(errors[1]["truncated_from_bytes"], 1024 * 1024);
    let kept = base64::engine::general_purpose::STANDARD
        .decode(errors[1]["data_base64"].as_str().unwrap())
        .unwrap();
    assert_eq!(kept.len(), retailmind_connectors::lake::ERROR_DATA_BYTES);
}
