//! The batch window (`batch_window_ms`) on the embedded default: reads of a live stream
//! gathered into one batch, written once per window, never checkpointed before they are.

mod support;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use retailmind_connectors::{
    embedded, Backend, LakeRecord, LakeWriter, ReadBatch, ShardInfo, StreamReader, StreamRecord,
    UndecodableRecord,
};
use retailmind_processor::{Processor, ProcessorConfig, ProcessorError};
use serde_json::json;
use tokio::sync::oneshot;

const T0: i64 = 1_764_064_800_000; // 2025-11-25T10:00:00Z
const MIN: i64 = 60_000;
const CONSUMER: &str = "windowed";

fn page_view(n: u32, anon: &str) -> StreamRecord {
    let event = json!({
        "event_id": format!("01936a1c-3b5e-7cc4-9a1e-{n:012x}"),
        "type": "page_view",
        "anonymous_id": anon,
        "timestamp": T0 + i64::from(n) * MIN,
        "context": {"page": {"url": format!("https://shop.example/{n}")}},
        "properties": {"url": format!("https://shop.example/{n}")}
    });
    StreamRecord {
        partition_key: anon.into(),
        data: Bytes::from(event.to_string()),
    }
}

/// Appends page views `numbers` of `anon` to the log in one request.
async fn append_views(backend: &Backend, numbers: std::ops::RangeInclusive<u32>, anon: &str) {
    backend
        .sink
        .append(numbers.map(|n| page_view(n, anon)).collect())
        .await
        .unwrap();
}

/// The embedded log's reader, counting its reads and the records they returned.
struct CountingReader {
    inner: Arc<dyn StreamReader>,
    returned: AtomicUsize,
    reads: AtomicUsize,
    hold: Option<Hold>,
}

/// Holds back the read that follows the first `before` records returned until `release`.
struct Hold {
    before: usize,
    held: tokio::sync::Notify,
    release: tokio::sync::Notify,
}

#[async_trait]
impl StreamReader for CountingReader {
    async fn shards(&self) -> retailmind_connectors::Result<Vec<ShardInfo>> {
        self.inner.shards().await
    }

    async fn read(
        &self,
        shard_id: &str,
        after: Option<&str>,
        max: usize,
    ) -> retailmind_connectors::Result<ReadBatch> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        let batch = self.inner.read(shard_id, after, max).await?;
        if let Some(hold) = &self.hold {
            if !batch.entries.is_empty() && self.returned.load(Ordering::SeqCst) == hold.before {
                hold.held.notify_one();
                hold.release.notified().await;
            }
        }
        self.returned
            .fetch_add(batch.entries.len(), Ordering::SeqCst);
        Ok(batch)
    }
}

/// The embedded backend in `dir`, its reader counted.
fn backend(dir: &Path) -> (Backend, Arc<CountingReader>) {
    backend_holding(dir, None)
}

fn backend_holding(dir: &Path, hold: Option<Hold>) -> (Backend, Arc<CountingReader>) {
    let mut backend = embedded::open(dir).unwrap();
    let reader = Arc::new(CountingReader {
        inner: backend.reader.clone(),
        returned: AtomicUsize::new(0),
        reads: AtomicUsize::new(0),
        hold,
    });
    backend.reader = reader.clone();
    (backend, reader)
}

fn config(batch_window_ms: u64, batch_size: usize) -> ProcessorConfig {
    ProcessorConfig {
        consumer: CONSUMER.into(),
        batch_size,
        batch_window_ms,
        idle_poll_ms: Some(20),
        lease_duration_ms: 600,
        metrics_listen: None,
        ..ProcessorConfig::default()
    }
}

/// `processor` running on a task of its own until the sender is used or dropped.
fn running(
    processor: Processor,
) -> (
    oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), ProcessorError>>,
) {
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        processor
            .run(async {
                let _ = stopped.await;
            })
            .await
    });
    (stop, task)
}

async fn wait_until<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !done().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The visitor's sessions as (event count, version: how many snapshots were written).
async fn sessions(backend: &Backend, anon: &str) -> Vec<(u32, u64)> {
    backend
        .sessions
        .sessions_of(anon)
        .await
        .unwrap()
        .iter()
        .map(|s| (s.event_count, s.version))
        .collect()
}

/// Files the lake holds under `events/`.
fn lake_files(dir: &Path) -> usize {
    support::lake_files(dir, "events").len()
}

async fn checkpoint(backend: &Backend) -> Option<String> {
    let leases = backend.leases.leases(CONSUMER).await.unwrap();
    assert_eq!(leases.len(), 1, "the embedded log has one shard");
    leases[0].checkpoint.clone()
}

/// Six page views of one visitor reach the stream one by one, 100 ms apart, while a processor
/// with a window of `window_ms` runs; returns the visitor's sessions and the lake's files once
/// all six are in a session and the processor stopped.
async fn live_visit(window_ms: u64) -> (Vec<(u32, u64)>, usize) {
    let dir = tempfile::tempdir().unwrap();
    let (backend, reader) = backend(dir.path());
    let (stop, task) = running(Processor::new(backend.clone(), &config(window_ms, 500)));
    for n in 1..=6 {
        append_views(&backend, n..=n, "carol").await;
        // Read before the next one comes: each read finds one record.
        let read = n as usize;
        wait_until("the record read", || async {
            reader.returned.load(Ordering::SeqCst) >= read
        })
        .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_until("six events in carol's session", || async {
        sessions(&backend, "carol").await.first().map(|s| s.0) == Some(6)
    })
    .await;
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
    let last = backend
        .reader
        .read("shard-000000", None, 100)
        .await
        .unwrap();
    assert_eq!(
        checkpoint(&backend).await.as_deref(),
        last.entries.last().map(|e| e.sequence.as_str()),
        "checkpointed at the last record"
    );
    (sessions(&backend, "carol").await, lake_files(dir.path()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_stream_is_written_once_per_window_not_once_per_read() {
    // Every read written at once: a snapshot and a lake file each.
    let (sessions, files) = live_visit(0).await;
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0], (6, 6), "one snapshot per read");
    assert_eq!(files, 6);

    // Six reads within a window of 10 s (they take about one): one batch.
    let (sessions, files) = live_visit(10_000).await;
    assert_eq!(sessions, [(6, 1)], "one snapshot for the window");
    assert_eq!(files, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_batch_is_written_without_waiting_for_its_window() {
    let dir = tempfile::tempdir().unwrap();
    let (backend, _) = backend(dir.path());
    append_views(&backend, 1..=8, "dave").await;
    // A window of 5 minutes, batches of 4: both batches are full when read.
    let processor = Processor::new(backend.clone(), &config(300_000, 4));
    let drained = tokio::time::timeout(Duration::from_secs(30), processor.drain())
        .await
        .expect("full batches are written at once")
        .unwrap();
    assert_eq!(drained, 8);
    assert_eq!(sessions(&backend, "dave").await, [(8, 2)]);
}

/// A processor with a window of 5 minutes and batches of `batch_size` running, once it has
/// read three page views of `anon`.
async fn gathering_three(
    backend: &Backend,
    reader: &CountingReader,
    anon: &str,
    batch_size: usize,
) -> (
    oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), ProcessorError>>,
) {
    let running = running(Processor::new(
        backend.clone(),
        &config(300_000, batch_size),
    ));
    append_views(backend, 1..=3, anon).await;
    wait_until("the records read", || async {
        reader.returned.load(Ordering::SeqCst) >= 3
    })
    .await;
    running
}

/// A window gathers up to `batch_size` records: the read after a partial one asks for what is
/// left, and the batch is written once full; the rest opens the next window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_fills_its_batch_across_reads_and_no_further() {
    let dir = tempfile::tempdir().unwrap();
    let (backend, reader) = backend(dir.path());
    let (stop, task) = gathering_three(&backend, &reader, "gus", 5).await;
    append_views(&backend, 4..=7, "gus").await;
    wait_until("a full batch of five written", || async {
        !sessions(&backend, "gus").await.is_empty()
    })
    .await;
    assert_eq!(sessions(&backend, "gus").await, [(5, 1)]);
    // A stop writes what was read, not what is still in the stream: 6 and 7 first.
    wait_until("the rest read into the next window", || async {
        reader.returned.load(Ordering::SeqCst) >= 7
    })
    .await;

    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
    assert_eq!(
        sessions(&backend, "gus").await,
        [(7, 2)],
        "the rest on stop"
    );
}

/// A stop asked for while the next batch is read ahead of the write of this one writes that
/// batch too, so that the shard's next owner does not read it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_writes_what_was_read_ahead() {
    let dir = tempfile::tempdir().unwrap();
    let hold = Hold {
        before: 2,
        held: tokio::sync::Notify::new(),
        release: tokio::sync::Notify::new(),
    };
    let (backend, reader) = backend_holding(dir.path(), Some(hold));
    let hold = reader.hold.as_ref().unwrap();
    append_views(&backend, 1..=4, "ida").await;
    // No window, batches of 2: views 3 and 4 are read ahead while 1 and 2 are written.
    let (stop, task) = running(Processor::new(backend.clone(), &config(0, 2)));
    tokio::time::timeout(Duration::from_secs(30), hold.held.notified())
        .await
        .expect("views 3 and 4 read ahead");
    stop.send(()).unwrap();
    // What comes after the stop was asked for is left to the next owner.
    append_views(&backend, 5..=6, "ida").await;
    hold.release.notify_one();
    task.await.unwrap().unwrap();
    assert_eq!(sessions(&backend, "ida").await, [(4, 2)]);
    let all = reader.inner.read("shard-000000", None, 10).await.unwrap();
    assert_eq!(
        checkpoint(&backend).await.as_deref(),
        Some(all.entries[3].sequence.as_str()),
        "checkpointed at view 4"
    );
    assert_eq!(
        reader.returned.load(Ordering::SeqCst),
        4,
        "nothing read after the stop"
    );
}

/// A lake whose writes never end.
struct HangingLake;

#[async_trait]
impl LakeWriter for HangingLake {
    async fn write_events(&self, _: &[LakeRecord]) -> retailmind_connectors::Result<()> {
        std::future::pending().await
    }
    async fn write_errors(&self, _: &[UndecodableRecord]) -> retailmind_connectors::Result<()> {
        std::future::pending().await
    }
}

/// A stop whose write of what was read hangs gives up after a lease duration and still
/// releases the leases: the next owner reads those records again from the checkpoint, at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_whose_write_hangs_gives_up_after_a_lease_and_releases() {
    let dir = tempfile::tempdir().unwrap();
    let (mut backend, reader) = backend(dir.path());
    backend.lake = Arc::new(HangingLake);
    let (stop, task) = gathering_three(&backend, &reader, "jo", 500).await;
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("the stop ends, its write cut off after the 600 ms lease")
        .unwrap()
        .unwrap();
    let leases = backend.leases.leases(CONSUMER).await.unwrap();
    assert_eq!(leases.len(), 1);
    assert_eq!(leases[0].owner, None, "released");
    assert_eq!(leases[0].checkpoint, None, "nothing checkpointed");
}

/// `drain` waits for an open window to close, then writes its batch once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_writes_what_a_window_gathered_when_it_closes() {
    let dir = tempfile::tempdir().unwrap();
    let (backend, reader) = backend(dir.path());
    append_views(&backend, 1..=3, "hana").await;
    let processor = Processor::new(backend.clone(), &config(1_000, 500));
    assert_eq!(processor.drain().await.unwrap(), 3);
    assert_eq!(sessions(&backend, "hana").await, [(3, 1)]);
    assert!(checkpoint(&backend).await.is_some());
    // Read at the idle pace while the window was open, not in a loop.
    let reads = reader.reads.load(Ordering::SeqCst);
    assert!(reads <= 1_000 / 20 + 2, "{reads} reads in a window of 1 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_window_gathered_is_written_when_the_processor_stops() {
    let dir = tempfile::tempdir().unwrap();
    let (backend, reader) = backend(dir.path());
    let (stop, task) = gathering_three(&backend, &reader, "erin", 500).await;
    // Read, and held by the window: nothing written or checkpointed yet.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(sessions(&backend, "erin").await.is_empty());
    assert_eq!(lake_files(dir.path()), 0);
    assert_eq!(checkpoint(&backend).await, None);

    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
    assert_eq!(sessions(&backend, "erin").await, [(3, 1)]);
    assert_eq!(lake_files(dir.path()), 1);
    assert!(checkpoint(&backend).await.is_some());
}

/// A processor that dies with reads gathered never checkpointed them: the next owner of the
/// shard reads them again, and every event lands once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_gathered_by_a_processor_that_died_are_read_again_by_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let (backend, reader) = backend(dir.path());
    let (_stop, first) = gathering_three(&backend, &reader, "finn", 500).await;
    // Killed: no shutdown, its lease left to expire.
    first.abort();
    let _ = first.await;

    let next = Processor::new(backend.clone(), &config(0, 500));
    let drained = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            // The dead instance's lease expires after 600 ms.
            let read = next.drain().await.unwrap();
            if read > 0 {
                return read;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the shard taken over");
    assert_eq!(drained, 3);
    assert_eq!(sessions(&backend, "finn").await, [(3, 1)]);
    assert_eq!(lake_files(dir.path()), 1);
}
