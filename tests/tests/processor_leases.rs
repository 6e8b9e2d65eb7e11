//! Two processor instances on one stream of four shards: they split the shards through
//! leases, each shard is read by one instance at a time, and when one is killed the other
//! takes its shards over once their leases expire. Run on a stream in memory with the embedded
//! (SQLite) lease store and with the DynamoDB one on moto, and all on moto: a Kinesis stream,
//! DynamoDB leases and sessions, the Firehose lake.

mod lease_support;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lease_support::{
    assert_sessions_match, events, provisioned_aws, provisioned_aws_sharded, MemoryStream,
    TaggedLeases, TaggedReader, TestEvent, Workers,
};
use retailmind_connectors::{
    embedded, Backend, EventSink, LakeRecord, LakeWriter, LeaseStore, StreamReader, StreamRecord,
    UndecodableRecord,
};
use retailmind_processor::{Processor, ProcessorConfig, ProcessorError};
use retailmind_tests::moto::MotoServer;
use retailmind_tests::wait_for;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const CONSUMER: &str = "main";
const SHARDS: usize = 4;
const TIMEOUT: Duration = Duration::from_secs(60);
/// The lease duration of every instance [`start`]s.
const LEASE_MS: u64 = 600;
/// The lease duration against moto, whose calls take long enough on a loaded machine that a
/// renewal may be late by more than [`LEASE_MS`]: an expired lease is then rightly taken over
/// while its owner still works, which the scenario counts as a violation.
const MOTO_LEASE_MS: u64 = 3_000;

/// A processor instance running in the background.
struct Instance {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), ProcessorError>>,
}

fn start(
    tag: &str,
    backend: Backend,
    stream: Arc<dyn StreamReader>,
    workers: &Arc<Workers>,
) -> Instance {
    start_windowed(tag, backend, stream, workers, 0, LEASE_MS)
}

/// [`start`] with a batch window of `batch_window_ms` and leases of `lease_ms`.
fn start_windowed(
    tag: &str,
    mut backend: Backend,
    stream: Arc<dyn StreamReader>,
    workers: &Arc<Workers>,
    batch_window_ms: u64,
    lease_ms: u64,
) -> Instance {
    backend.reader = Arc::new(TaggedReader {
        inner: stream,
        tag: tag.into(),
        workers: workers.clone(),
    });
    backend.leases = Arc::new(TaggedLeases {
        inner: backend.leases.clone(),
        tag: tag.into(),
        workers: workers.clone(),
    });
    let config = ProcessorConfig {
        consumer: CONSUMER.into(),
        batch_size: 7,
        batch_window_ms,
        idle_poll_ms: Some(10),
        lease_duration_ms: lease_ms,
        instance_id: Some(tag.into()),
        metrics_listen: None,
        ..ProcessorConfig::default()
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        Processor::new(backend, &config)
            .run(async {
                let _ = stopped.await;
            })
            .await
    });
    Instance { stop, task }
}

/// The most lease rounds an instance [`start`]ed runs in `elapsed`: one at its start, then one
/// per half lease duration.
fn rounds_within(elapsed: Duration) -> usize {
    1 + usize::try_from(elapsed.as_millis() / u128::from(LEASE_MS / 2)).unwrap()
}

fn records(events: &[TestEvent]) -> Vec<StreamRecord> {
    events.iter().map(TestEvent::record).collect()
}

/// How many leases each instance holds.
async fn owners(leases: &dyn LeaseStore) -> BTreeMap<String, usize> {
    let mut owners = BTreeMap::new();
    for lease in leases.leases(CONSUMER).await.unwrap() {
        *owners.entry(lease.owner.unwrap_or_default()).or_default() += 1;
    }
    owners
}

async fn wait_for_owners(leases: &dyn LeaseStore, what: &str, wanted: &[(&str, usize)]) {
    let wanted: BTreeMap<String, usize> = wanted.iter().map(|(o, n)| (o.to_string(), *n)).collect();
    wait_for(what, TIMEOUT, || async {
        (owners(leases).await == wanted).then_some(())
    })
    .await;
}

/// Where a scenario's events go, and how far each shard reaches.
#[async_trait::async_trait]
trait TestStream: Send + Sync {
    fn reader(&self) -> Arc<dyn StreamReader>;
    async fn append(&self, records: Vec<StreamRecord>);
    /// The last sequence of every non-empty shard.
    async fn ends(&self) -> HashMap<String, String>;
}

#[async_trait::async_trait]
impl TestStream for Arc<MemoryStream> {
    fn reader(&self) -> Arc<dyn StreamReader> {
        self.clone()
    }
    async fn append(&self, records: Vec<StreamRecord>) {
        MemoryStream::append(self, &records);
    }
    async fn ends(&self) -> HashMap<String, String> {
        MemoryStream::ends(self)
    }
}

/// A real Kinesis stream (on moto): written through the collector's sink, its shards' ends
/// found by reading them through.
struct Kinesis {
    sink: Arc<dyn EventSink>,
    reader: Arc<dyn StreamReader>,
}

#[async_trait::async_trait]
impl TestStream for Kinesis {
    fn reader(&self) -> Arc<dyn StreamReader> {
        self.reader.clone()
    }
    async fn append(&self, records: Vec<StreamRecord>) {
        self.sink.append(records).await.unwrap();
    }
    async fn ends(&self) -> HashMap<String, String> {
        let mut ends = HashMap::new();
        for shard in self.reader.shards().await.unwrap() {
            let mut last: Option<String> = None;
            loop {
                let batch = self
                    .reader
                    .read(&shard.shard_id, last.as_deref(), 10_000)
                    .await
                    .unwrap();
                match batch.entries.last() {
                    Some(entry) => last = Some(entry.sequence.clone()),
                    None => break,
                }
            }
            if let Some(last) = last {
                ends.insert(shard.shard_id, last);
            }
        }
        ends
    }
}

/// Waits until every shard's checkpoint is at its last record.
async fn wait_until_caught_up(leases: &dyn LeaseStore, stream: &dyn TestStream) {
    let ends = stream.ends().await;
    wait_for("every shard checkpointed at its end", TIMEOUT, || async {
        let leases = leases.leases(CONSUMER).await.unwrap();
        ends.iter()
            .all(|(shard, end)| {
                leases
                    .iter()
                    .any(|l| &l.shard_id == shard && l.checkpoint.as_ref() == Some(end))
            })
            .then_some(())
    })
    .await;
}

/// The scenario on a stream of [`SHARDS`] shards, `count` events in three parts, with `open`
/// opening one backend per instance over shared stores, each instance with a batch window of
/// `batch_window_ms` and leases of `lease_ms`.
async fn share_and_take_over(
    stream: &dyn TestStream,
    count: u64,
    batch_window_ms: u64,
    lease_ms: u64,
    mut open: impl FnMut() -> Backend,
) {
    let workers = Arc::new(Workers::default());
    let all = events(count, 36);
    let third = all.len() / 3;
    let (early, rest) = all.split_at(third);
    let (middle, late) = rest.split_at(third);
    stream.append(records(early)).await;

    let observer = open();
    let leases = observer.leases.as_ref();
    let a = start_windowed(
        "a",
        open(),
        stream.reader(),
        &workers,
        batch_window_ms,
        lease_ms,
    );
    wait_for_owners(leases, "a holding every lease", &[("a", SHARDS)]).await;

    let b = start_windowed(
        "b",
        open(),
        stream.reader(),
        &workers,
        batch_window_ms,
        lease_ms,
    );
    wait_for_owners(leases, "the shards split evenly", &[("a", 2), ("b", 2)]).await;
    stream.append(records(middle)).await;
    wait_until_caught_up(leases, stream).await;
    let b_shards = workers
        .readers()
        .values()
        .filter(|r| r.contains("b"))
        .count();
    assert_eq!(
        b_shards,
        2,
        "b read its two shards: {:?}",
        workers.readers()
    );

    // Kill b: no release, its leases stay until they expire.
    b.task.abort();
    assert!(b.task.await.unwrap_err().is_cancelled());
    workers.killed("b");
    drop(b.stop);
    stream.append(records(late)).await;
    wait_for_owners(leases, "a taking b's shards over", &[("a", SHARDS)]).await;
    wait_until_caught_up(leases, stream).await;

    a.stop.send(()).unwrap();
    a.task.await.unwrap().unwrap();
    wait_for_owners(leases, "a releasing on shutdown", &[("", SHARDS)]).await;

    assert_eq!(workers.violations(), Vec::<String>::new());
    assert!(
        workers.readers().values().all(|r| r.contains("a")),
        "a read every shard at some point: {:?}",
        workers.readers()
    );
    assert_sessions_match(observer.sessions.as_ref(), &all).await;
}

/// A lake whose every write takes longer than a lease lasts.
struct SlowLake {
    inner: Arc<dyn LakeWriter>,
    delay: Duration,
}

#[async_trait::async_trait]
impl LakeWriter for SlowLake {
    async fn write_events(&self, records: &[LakeRecord]) -> retailmind_connectors::Result<()> {
        tokio::time::sleep(self.delay).await;
        self.inner.write_events(records).await
    }
    async fn write_errors(
        &self,
        records: &[UndecodableRecord],
    ) -> retailmind_connectors::Result<()> {
        self.inner.write_errors(records).await
    }
}

/// The leases are renewed while a batch is in flight: an instance whose every batch outlasts
/// the lease duration keeps its shards, so the other instance never reads a shard it is still
/// working on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_slower_than_the_lease_keep_their_leases() {
    let dir = tempfile::tempdir().unwrap();
    let stream = MemoryStream::new(SHARDS);
    let workers = Arc::new(Workers::default());
    let all = events(64, 16);
    stream.append(records(&all)).await;
    let observer = embedded::open(dir.path()).unwrap();
    let leases = observer.leases.as_ref();

    let mut slow = embedded::open(dir.path()).unwrap();
    slow.lake = Arc::new(SlowLake {
        inner: slow.lake.clone(),
        delay: Duration::from_millis(1500),
    });
    let a = start("a", slow, stream.clone(), &workers);
    wait_for_owners(leases, "a holding every lease", &[("a", SHARDS)]).await;
    let b = start(
        "b",
        embedded::open(dir.path()).unwrap(),
        stream.clone(),
        &workers,
    );
    wait_until_caught_up(leases, &stream).await;
    for instance in [a, b] {
        instance.stop.send(()).unwrap();
        instance.task.await.unwrap().unwrap();
    }
    assert_eq!(workers.violations(), Vec::<String>::new());
    assert!(
        workers.readers().values().any(|r| r.contains("a")),
        "a read while slow: {:?}",
        workers.readers()
    );
    assert_sessions_match(observer.sessions.as_ref(), &all).await;
}

/// A busy instance reads its shards many times a second, but lists the shards and reads the
/// lease table only at its start and then once per half lease duration, as the KCL's timers
/// do: a listing and a table scan with every poll would cost each instance five ListShards
/// calls and DynamoDB scans a second, all for nothing while no instance comes or goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shard_list_and_the_lease_table_are_read_on_a_timer_not_with_every_poll() {
    let dir = tempfile::tempdir().unwrap();
    let stream = MemoryStream::new(SHARDS);
    let workers = Arc::new(Workers::default());
    let all = events(2_000, 40);
    stream.append(records(&all)).await;
    let observer = embedded::open(dir.path()).unwrap();

    let started = Instant::now();
    let a = start(
        "a",
        embedded::open(dir.path()).unwrap(),
        stream.clone(),
        &workers,
    );
    wait_until_caught_up(observer.leases.as_ref(), &stream).await;
    // Idle, it polls every 10 ms: those polls leave the table alone too.
    tokio::time::sleep(Duration::from_millis(600)).await;
    a.stop.send(()).unwrap();
    a.task.await.unwrap().unwrap();
    let elapsed = started.elapsed();

    let calls = workers.calls("a");
    eprintln!("{calls:?} in {elapsed:?}");
    let rounds = rounds_within(elapsed);
    assert!(
        calls.reads >= all.len() / 7,
        "every batch of 7 read: {calls:?}"
    );
    assert!(
        calls.shard_lists <= rounds,
        "{calls:?} in {elapsed:?}: more than {rounds} listings"
    );
    // The first round reads the table again after creating the leases.
    assert!(
        calls.lease_scans <= rounds + 1,
        "{calls:?} in {elapsed:?}: more than {} lease table reads",
        rounds + 1
    );
    assert_sessions_match(observer.sessions.as_ref(), &all).await;
}

/// A lease table that refuses reads for a while (DynamoDB short of read capacity) does not stop
/// an instance from reading the shards it holds: their leases stay valid, renewed by writes of
/// their own. The failed rounds are tried again on their timer, not with every poll.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_shards_are_read_on_while_the_lease_table_refuses_reads() {
    let dir = tempfile::tempdir().unwrap();
    let stream = MemoryStream::new(SHARDS);
    let workers = Arc::new(Workers::default());
    let all = events(400, 20);
    let (early, late) = all.split_at(200);
    stream.append(records(early)).await;
    let observer = embedded::open(dir.path()).unwrap();
    let leases = observer.leases.as_ref();
    let a = start(
        "a",
        embedded::open(dir.path()).unwrap(),
        stream.clone(),
        &workers,
    );
    wait_until_caught_up(leases, &stream).await;

    workers.scans_throttled.store(true, SeqCst);
    let throttled_from = Instant::now();
    wait_for("a lease round failing", TIMEOUT, || async {
        (workers.calls("a").throttled_scans > 0).then_some(())
    })
    .await;
    stream.append(records(late)).await;
    wait_until_caught_up(leases, &stream).await;
    // A while longer, for more rounds to fail.
    tokio::time::sleep(Duration::from_millis(900)).await;
    let calls = workers.calls("a");
    let elapsed = throttled_from.elapsed();
    workers.scans_throttled.store(false, SeqCst);
    a.stop.send(()).unwrap();
    a.task.await.unwrap().unwrap();

    // Each round fails at its scan.
    let rounds = rounds_within(elapsed);
    assert!(
        (1..=rounds).contains(&calls.throttled_scans),
        "{calls:?} in {elapsed:?}: 1 to {rounds} failed rounds"
    );
    assert_eq!(workers.violations(), Vec::<String>::new());
    assert_sessions_match(observer.sessions.as_ref(), &all).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_shards_with_embedded_leases() {
    let dir = tempfile::tempdir().unwrap();
    // One backend per instance over one SQLite file, as two processes would have.
    let stream = MemoryStream::new(SHARDS);
    share_and_take_over(&stream, 900, 0, LEASE_MS, || {
        embedded::open(dir.path()).unwrap()
    })
    .await;
}

/// The same while every instance gathers its reads in batch windows: what a shard's owner
/// gathered when it handed the shard over, or died, is read again by the next owner from the
/// checkpoint, and every event lands once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_shards_while_batch_windows_gather() {
    let dir = tempfile::tempdir().unwrap();
    let stream = MemoryStream::new(SHARDS);
    share_and_take_over(&stream, 900, 1_000, LEASE_MS, || {
        embedded::open(dir.path()).unwrap()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_shards_with_dynamodb_leases() {
    let moto = MotoServer::start().await;
    let dynamo_leases = provisioned_aws(&moto).await.leases;
    let dir = tempfile::tempdir().unwrap();
    let stream = MemoryStream::new(SHARDS);
    share_and_take_over(&stream, 900, 0, MOTO_LEASE_MS, || {
        let mut b = embedded::open(dir.path()).unwrap();
        b.leases = dynamo_leases.clone();
        b
    })
    .await;
}

/// All of it on AWS's wire protocols: the events in a Kinesis stream of four shards (put by
/// the collector's sink), leases and sessions in DynamoDB, the lake through Firehose.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_a_kinesis_stream() {
    let moto = MotoServer::start().await;
    let backend = provisioned_aws_sharded(&moto, SHARDS as i32).await;
    let stream = Kinesis {
        sink: backend.sink.clone(),
        reader: backend.reader.clone(),
    };
    assert_eq!(stream.reader.shards().await.unwrap().len(), SHARDS);
    share_and_take_over(&stream, 240, 0, MOTO_LEASE_MS, || backend.clone()).await;
}
