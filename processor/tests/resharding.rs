//! Resharding, with an in-process stream that splits and merges shards on demand (what moto
//! cannot do): a child shard is read only after its parents were read to their end.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use retailmind_connectors::{embedded, ReadBatch, ShardInfo, StreamEntry, StreamReader};
use retailmind_processor::{Processor, ProcessorConfig};
use serde_json::json;

const T0: i64 = 1_764_064_800_000;

struct FakeShard {
    parents: Vec<String>,
    entries: Vec<StreamEntry>,
    closed: bool,
}

/// A stream whose shard layout the test dictates; it logs every read.
#[derive(Default)]
struct ReshardedStream {
    shards: BTreeMap<String, FakeShard>,
    /// Shards past their retention: no longer listed.
    aged_out: Mutex<HashSet<String>>,
    reads: Mutex<Vec<(String, usize)>>,
    /// Reads and lake writes, in order, with when they happened.
    journal: Mutex<Vec<(&'static str, std::time::Instant)>>,
}

impl ReshardedStream {
    fn shard(
        mut self,
        id: &str,
        parents: &[&str],
        closed: bool,
        events: &[(u32, &str, i64)],
    ) -> Self {
        let entries = events
            .iter()
            .enumerate()
            .map(|(i, (n, visitor, ts))| StreamEntry {
                sequence: format!("{}", 1000 + i),
                partition_key: visitor.to_string(),
                data: Bytes::from(
                    json!({
                        "event_id": format!("01936a1c-3b5e-7cc4-9a1e-{n:012x}"),
                        "type": "page_view",
                        "anonymous_id": visitor,
                        "timestamp": ts,
                        "context": {"page": {"url": format!("https://shop.example/{n}")}},
                        "properties": {}
                    })
                    .to_string(),
                ),
            })
            .collect();
        self.shards.insert(
            id.to_owned(),
            FakeShard {
                parents: parents.iter().map(|p| p.to_string()).collect(),
                entries,
                closed,
            },
        );
        self
    }

    fn note(&self, what: &'static str) {
        self.journal
            .lock()
            .unwrap()
            .push((what, std::time::Instant::now()));
    }

    fn age_out(&self, shard_id: &str) {
        self.aged_out.lock().unwrap().insert(shard_id.to_owned());
    }

    fn reads(&self) -> Vec<(String, usize)> {
        self.reads.lock().unwrap().clone()
    }
}

#[async_trait]
impl StreamReader for ReshardedStream {
    async fn shards(&self) -> retailmind_connectors::Result<Vec<ShardInfo>> {
        let aged_out = self.aged_out.lock().unwrap();
        Ok(self
            .shards
            .iter()
            .filter(|(id, _)| !aged_out.contains(*id))
            .map(|(id, s)| ShardInfo {
                shard_id: id.clone(),
                parent_shard_ids: s.parents.clone(),
            })
            .collect())
    }

    async fn read(
        &self,
        shard_id: &str,
        after: Option<&str>,
        max: usize,
    ) -> retailmind_connectors::Result<ReadBatch> {
        if self.aged_out.lock().unwrap().contains(shard_id) {
            // As Kinesis's reader: its records are gone with it, so it is read as ended.
            return Ok(ReadBatch {
                shard_ended: true,
                ..ReadBatch::default()
            });
        }
        let shard = &self.shards[shard_id];
        let start = match after {
            None => 0,
            Some(seq) => shard
                .entries
                .iter()
                .position(|e| e.sequence == seq)
                .map_or(0, |i| i + 1),
        };
        let entries: Vec<StreamEntry> = shard
            .entries
            .iter()
            .skip(start)
            .take(max)
            .cloned()
            .collect();
        let reached_end = start + entries.len() >= shard.entries.len();
        // A second behind for every record left after this read.
        let left = shard.entries.len().saturating_sub(start + entries.len());
        self.note("read");
        self.reads
            .lock()
            .unwrap()
            .push((shard_id.to_owned(), entries.len()));
        Ok(ReadBatch {
            entries,
            millis_behind_latest: Some(left as i64 * 1000),
            shard_ended: shard.closed && reached_end,
        })
    }
}

fn processor(
    stream: Arc<ReshardedStream>,
    dir: &std::path::Path,
) -> (Processor, retailmind_connectors::Backend) {
    let mut backend = embedded::open(dir).unwrap();
    backend.reader = stream;
    let config = ProcessorConfig {
        batch_size: 2,
        ..ProcessorConfig::default()
    };
    (Processor::new(backend.clone(), &config), backend)
}

/// Index of the last read of `shard` and of the first read of `other`.
fn last_and_first(reads: &[(String, usize)], shard: &str, other: &str) -> (usize, usize) {
    let last = reads.iter().rposition(|(s, _)| s == shard).unwrap();
    let first = reads.iter().position(|(s, _)| s == other).unwrap();
    (last, first)
}

#[tokio::test]
async fn after_a_split_children_wait_for_the_parent_to_end() {
    let minute = 60_000;
    let stream = Arc::new(
        ReshardedStream::default()
            .shard(
                "shard-1",
                &[],
                true,
                &[
                    (1, "vera", T0),
                    (2, "vera", T0 + minute),
                    (3, "walt", T0 + 2 * minute),
                ],
            )
            .shard(
                "shard-2",
                &["shard-1"],
                false,
                &[(4, "vera", T0 + 3 * minute), (5, "vera", T0 + 4 * minute)],
            )
            .shard(
                "shard-3",
                &["shard-1"],
                false,
                &[(6, "walt", T0 + 5 * minute)],
            ),
    );
    let dir = tempfile::tempdir().unwrap();
    let (p, backend) = processor(stream.clone(), dir.path());
    assert_eq!(p.drain().await.unwrap(), 6);

    let reads = stream.reads();
    for child in ["shard-2", "shard-3"] {
        let (parent_last, child_first) = last_and_first(&reads, "shard-1", child);
        assert!(
            parent_last < child_first,
            "{child} read before its parent ended: {reads:?}"
        );
    }
    let vera = backend.sessions.sessions_of("vera").await.unwrap();
    assert_eq!(vera.len(), 1);
    assert_eq!(vera[0].event_count, 4);
    assert_eq!(vera[0].entry_url, "https://shop.example/1");
    // The model's positions keep no shard read to its end.
    let model = backend.models.load("recommendations").await.unwrap();
    let shards: Vec<String> = model
        .expect("saved on drain")
        .positions
        .into_keys()
        .collect();
    assert_eq!(shards, ["shard-2", "shard-3"]);
}

#[tokio::test]
async fn after_a_merge_the_child_waits_for_both_parents() {
    let stream = Arc::new(
        ReshardedStream::default()
            .shard(
                "shard-a",
                &[],
                true,
                &[
                    (1, "xena", T0),
                    (2, "xena", T0 + 1000),
                    (3, "xena", T0 + 2000),
                ],
            )
            .shard("shard-b", &[], true, &[(4, "yuri", T0)])
            .shard(
                "shard-c",
                &["shard-a", "shard-b"],
                false,
                &[(5, "xena", T0 + 3000), (6, "yuri", T0 + 4000)],
            ),
    );
    let dir = tempfile::tempdir().unwrap();
    let (p, backend) = processor(stream.clone(), dir.path());
    assert_eq!(p.drain().await.unwrap(), 6);
    let reads = stream.reads();
    for parent in ["shard-a", "shard-b"] {
        let (parent_last, child_first) = last_and_first(&reads, parent, "shard-c");
        assert!(
            parent_last < child_first,
            "child read before {parent} ended: {reads:?}"
        );
    }
    assert_eq!(
        backend.sessions.sessions_of("xena").await.unwrap()[0].event_count,
        4
    );
    assert_eq!(
        backend.sessions.sessions_of("yuri").await.unwrap()[0].event_count,
        2
    );
}

#[tokio::test]
async fn a_parent_no_longer_in_the_stream_does_not_block_its_child() {
    // The parent aged out of the retention period and is no longer listed.
    let stream = Arc::new(ReshardedStream::default().shard(
        "shard-9",
        &["shard-gone"],
        false,
        &[(1, "zoe", T0)],
    ));
    let dir = tempfile::tempdir().unwrap();
    let (p, _) = processor(stream, dir.path());
    assert_eq!(p.drain().await.unwrap(), 1);
}

#[tokio::test]
async fn the_lease_of_a_shard_that_aged_out_is_removed() {
    let stream = Arc::new(
        ReshardedStream::default()
            .shard(
                "shard-1",
                &[],
                true,
                &[(1, "ann", T0), (2, "ann", T0 + 1000)],
            )
            .shard("shard-2", &["shard-1"], false, &[(3, "ann", T0 + 2000)]),
    );
    let dir = tempfile::tempdir().unwrap();
    let (p, backend) = processor(stream.clone(), dir.path());
    let consumer = ProcessorConfig::default().consumer;
    assert_eq!(p.drain().await.unwrap(), 3);
    let leases = backend.leases.leases(&consumer).await.unwrap();
    assert_eq!(leases.len(), 2);
    assert!(leases[0].shard_ended, "{leases:?}");

    stream.age_out("shard-1");
    assert_eq!(p.drain().await.unwrap(), 0);
    let leases = backend.leases.leases(&consumer).await.unwrap();
    assert_eq!(leases.len(), 1, "{leases:?}");
    assert_eq!(
        (leases[0].shard_id.as_str(), leases[0].checkpoint.as_deref()),
        ("shard-2", Some("1000")),
        "the child keeps its lease and checkpoint"
    );
    assert_eq!(
        backend.checkpoints.get(&consumer, "shard-1").await.unwrap(),
        None,
        "the gone shard's checkpoint went with its lease"
    );
    assert_eq!(
        backend.sessions.sessions_of("ann").await.unwrap()[0].event_count,
        3
    );
}

/// A gone shard's lease left by an instance that crashed holding it is removed once it
/// expired, and not before.
#[tokio::test]
async fn the_lease_of_a_gone_shard_left_by_a_crashed_instance_is_removed_once_expired() {
    let stream = Arc::new(
        ReshardedStream::default()
            .shard("shard-1", &[], true, &[(1, "ann", T0)])
            .shard("shard-2", &["shard-1"], false, &[(2, "ann", T0 + 1000)]),
    );
    let dir = tempfile::tempdir().unwrap();
    let mut backend = embedded::open(dir.path()).unwrap();
    backend.reader = stream.clone();
    let config = ProcessorConfig {
        batch_size: 2,
        // Long enough that no stall of a loaded machine within the second drain lets it pass.
        lease_duration_ms: 3_000,
        ..ProcessorConfig::default()
    };
    let p = Processor::new(backend.clone(), &config);
    assert_eq!(p.drain().await.unwrap(), 2);
    let leases = backend.leases.as_ref();
    let gone = leases.leases(&config.consumer).await.unwrap()[0].clone();
    leases
        .take(&config.consumer, &gone.shard_id, gone.counter, "crashed")
        .await
        .unwrap();
    stream.age_out("shard-1");

    p.drain().await.unwrap();
    let ids = |all: Vec<retailmind_connectors::Lease>| -> Vec<String> {
        all.into_iter().map(|l| l.shard_id).collect()
    };
    assert_eq!(
        ids(leases.leases(&config.consumer).await.unwrap()),
        ["shard-1", "shard-2"],
        "its owner may still be alive"
    );
    tokio::time::sleep(std::time::Duration::from_millis(4_000)).await;
    p.drain().await.unwrap();
    assert_eq!(
        ids(leases.leases(&config.consumer).await.unwrap()),
        ["shard-2"],
        "expired, so removed"
    );
}

/// A lake whose writes take a while; they are noted in the stream's journal.
struct SlowLake {
    inner: Arc<dyn retailmind_connectors::LakeWriter>,
    stream: Arc<ReshardedStream>,
}

#[async_trait]
impl retailmind_connectors::LakeWriter for SlowLake {
    async fn write_events(
        &self,
        records: &[retailmind_connectors::LakeRecord],
    ) -> retailmind_connectors::Result<()> {
        // Well over the 100 ms read gap, so a loaded machine still shows the overlap.
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        self.inner.write_events(records).await?;
        self.stream.note("written");
        Ok(())
    }
    async fn write_errors(
        &self,
        records: &[retailmind_connectors::UndecodableRecord],
    ) -> retailmind_connectors::Result<()> {
        self.inner.write_errors(records).await
    }
}

/// On a stream with a read rate (Kinesis: 5 reads per second per shard), the next batch is
/// read while a write slower than the rate's gap is in flight, and still no sooner than the
/// rate allows.
/// Six events of one visitor on one shard, read two at a time at most every 100 ms: the
/// stream, an embedded backend reading it (in `dir`), and that configuration.
fn rate_limited_shard(
    dir: &std::path::Path,
) -> (
    Arc<ReshardedStream>,
    retailmind_connectors::Backend,
    ProcessorConfig,
) {
    let events: Vec<(u32, &str, i64)> = (1..=6).map(|n| (n, "ann", T0 + i64::from(n))).collect();
    let stream = Arc::new(ReshardedStream::default().shard("shard-1", &[], false, &events));
    let mut backend = embedded::open(dir).unwrap();
    backend.reader = stream.clone();
    let config = ProcessorConfig {
        batch_size: 2,
        min_read_interval_ms: Some(100),
        ..ProcessorConfig::default()
    };
    (stream, backend, config)
}

#[tokio::test]
async fn the_next_batch_is_read_during_a_slow_write_within_the_read_rate() {
    let dir = tempfile::tempdir().unwrap();
    let (stream, mut backend, config) = rate_limited_shard(dir.path());
    backend.lake = Arc::new(SlowLake {
        inner: backend.lake.clone(),
        stream: stream.clone(),
    });
    assert_eq!(Processor::new(backend, &config).drain().await.unwrap(), 6);
    let journal = stream.journal.lock().unwrap().clone();
    let order: Vec<&str> = journal.iter().map(|(what, _)| *what).collect();
    assert_eq!(
        &order[..3],
        ["read", "read", "written"],
        "the second batch read while the first was written: {order:?}"
    );
    assert_eq!(order.iter().filter(|w| **w == "written").count(), 3);
    let reads: Vec<std::time::Instant> = journal
        .iter()
        .filter(|(what, _)| *what == "read")
        .map(|(_, at)| *at)
        .collect();
    for pair in reads.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= std::time::Duration::from_millis(99),
            "two reads {gap:?} apart: {order:?}"
        );
    }
}

#[tokio::test]
async fn reads_of_one_shard_keep_to_the_configured_rate() {
    let dir = tempfile::tempdir().unwrap();
    let (stream, backend, config) = rate_limited_shard(dir.path());
    let started = std::time::Instant::now();
    assert_eq!(Processor::new(backend, &config).drain().await.unwrap(), 6);
    // Four reads (2 + 2 + 2 + the empty one): at least three intervals between them.
    assert_eq!(stream.reads().len(), 4);
    assert!(started.elapsed() >= std::time::Duration::from_millis(300));
}

/// The lag a shard reported stays on the dashboards only while this instance reads it: once its
/// lease is gone (here: the shard aged out with records left), its figure drops to 0.
#[tokio::test]
async fn a_shard_no_longer_held_reports_no_lag() {
    let stream = Arc::new(ReshardedStream::default().shard(
        "lagging",
        &[],
        false,
        &[
            (1, "bo", T0),
            (2, "bo", T0 + 1000),
            (3, "bo", T0 + 2000),
            (4, "bo", T0 + 3000),
            (5, "bo", T0 + 4000),
        ],
    ));
    let dir = tempfile::tempdir().unwrap();
    let mut backend = embedded::open(dir.path()).unwrap();
    backend.reader = stream.clone();
    let config = ProcessorConfig {
        consumer: "lag-gauge".into(),
        batch_size: 2,
        ..ProcessorConfig::default()
    };
    // Installs the recorder, before anything is counted.
    let metrics = retailmind_processor::metrics::router();
    let p = Processor::new(backend, &config);
    let gauge = || async {
        let response = tower::ServiceExt::oneshot(
            metrics.clone(),
            axum::http::Request::get("/metrics")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        String::from_utf8(body.to_vec())
            .unwrap()
            .lines()
            .find_map(|l| {
                l.strip_prefix(r#"shard_millis_behind{consumer="lag-gauge",shard_id="lagging"} "#)
                    .map(str::to_owned)
            })
    };
    assert_eq!(p.poll_once().await.unwrap(), 2);
    assert_eq!(gauge().await.as_deref(), Some("3000"), "three records left");

    stream.age_out("lagging");
    // Records 3 and 4 were read ahead before the shard aged out, with one left behind them.
    assert_eq!(p.poll_once().await.unwrap(), 2);
    assert_eq!(gauge().await.as_deref(), Some("1000"), "one record left");
    // The read after them finds the shard gone: ended, and its lease no longer held.
    assert_eq!(p.poll_once().await.unwrap(), 0);
    assert_eq!(gauge().await.as_deref(), Some("0"), "no longer read here");
}
