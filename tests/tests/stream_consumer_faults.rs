//! The processor consuming a Kinesis stream and writing the lake through Firehose while they
//! misbehave, through the real AWS SDK and HTTP against the in-process fake of
//! `retailmind_tests::fake_aws`: GetRecords throttled, shard iterators expiring mid-stream,
//! Firehose refusing some records of a batch, throttling whole calls, or refusing a batch for
//! longer than the lake writer resends, and the stream resharded. moto cannot do any of these
//! on demand; the normal path runs against moto in `aws_pipeline`.
//!
//! Leases, checkpoints and sessions stay on the embedded backend, so what the processor stored
//! is read back directly. What must hold: every event reaches the lake and its session exactly
//! once, and no checkpoint passes a batch whose lake write failed.

mod lease_support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use lease_support::{assert_sessions_match, events, TestEvent};
use retailmind_connectors::{aws, embedded, AwsConfig, Backend, ConnectorError};
use retailmind_processor::{Processor, ProcessorConfig, ProcessorError};
use retailmind_tests::fake_aws::{
    BatchFault, BatchFaults, FakeAws, FakeStream, ReadCall, ReadFault,
};
use retailmind_tests::wait_for;
use serde_json::Value;
use tokio::sync::oneshot;

const CONSUMER: &str = "faults";

/// Appends `events` to the fake stream, as the collector would.
fn append(stream: &mut FakeStream, events: &[TestEvent]) {
    for event in events {
        let record = event.record();
        stream.append(&record.partition_key, &record.data);
    }
}

/// The fake with `events` in its stream of `shards` shards, and a backend that reads that
/// stream and writes the lake through the fake's Firehose, everything else embedded in `dir`.
async fn consumer_of(shards: usize, events: &[TestEvent], dir: &Path) -> (FakeAws, Backend) {
    let fake = FakeAws::start(shards).await;
    fake.with(|s| append(&mut s.kinesis, events));
    let on_aws = aws::backend(&fake.sdk_config(), &AwsConfig::new("us-east-1"));
    let backend = Backend {
        reader: on_aws.reader,
        lake: on_aws.lake,
        ..embedded::open(dir).unwrap()
    };
    (fake, backend)
}

fn processor(backend: &Backend, batch_size: usize) -> Processor {
    let config = ProcessorConfig {
        consumer: CONSUMER.into(),
        batch_size,
        // The read rate the processor keeps on AWS (its backend here is not configured as
        // AWS, so it is set): Kinesis answers 5 reads per second per shard, the fake too, and
        // every test checks that no read went past that.
        min_read_interval_ms: Some(200),
        idle_poll_ms: Some(10),
        metrics_listen: None,
        ..ProcessorConfig::default()
    };
    Processor::new(backend.clone(), &config)
}

/// `consumer` running on a task of its own until the sender is used or dropped.
fn running(
    consumer: Processor,
) -> (
    oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), ProcessorError>>,
) {
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        consumer
            .run(async {
                let _ = stopped.await;
            })
            .await
    });
    (stop, task)
}

fn event_id(json: &[u8]) -> String {
    let event: Value = serde_json::from_slice(json).unwrap();
    event["event_id"].as_str().unwrap().to_owned()
}

/// The event ids each PutRecordBatch call carried, refused records too.
fn lake_calls(fake: &FakeAws) -> Vec<Vec<String>> {
    fake.with(|s| {
        s.firehose
            .calls
            .iter()
            .map(|call| call.records.iter().map(|r| event_id(r)).collect())
            .collect()
    })
}

/// Asserts that the fake's Firehose stored every event exactly once, each as one JSON line in
/// the events delivery stream.
fn assert_lake_holds_each_once(fake: &FakeAws, events: &[TestEvent]) {
    let events_stream = AwsConfig::new("us-east-1").delivery_stream;
    let mut stored: BTreeMap<String, usize> = BTreeMap::new();
    for (delivery_stream, line) in fake.with(|s| s.firehose.delivered.clone()) {
        assert_eq!(delivery_stream, events_stream);
        assert_eq!(line.last(), Some(&b'\n'), "a lake record is one line");
        *stored.entry(event_id(&line)).or_default() += 1;
    }
    let once_each: BTreeMap<String, usize> = events.iter().map(|e| (e.event_id(), 1)).collect();
    assert_eq!(stored, once_each);
}

/// Each shard's checkpoint.
async fn checkpoints(backend: &Backend) -> BTreeMap<String, Option<String>> {
    backend
        .leases
        .leases(CONSUMER)
        .await
        .unwrap()
        .into_iter()
        .map(|lease| (lease.shard_id, lease.checkpoint))
        .collect()
}

/// The sequence of the last record of each shard of the fake stream.
fn stream_ends(fake: &FakeAws) -> BTreeMap<String, Option<String>> {
    fake.with(|s| {
        s.kinesis
            .records()
            .map(|r| (r.shard_id.clone(), Some(r.sequence.clone())))
            .collect()
    })
}

/// Asserts that everything in the fake stream reached the lake and the sessions exactly once,
/// and that every shard is checkpointed at its last record.
async fn assert_consumed_once(fake: &FakeAws, backend: &Backend, events: &[TestEvent]) {
    let over_limit = reads_where(fake, |r| matches!(r, ReadCall::OverLimit { .. }));
    assert!(
        over_limit.is_empty(),
        "reads past Kinesis's 5 per second per shard: {over_limit:?}"
    );
    assert_lake_holds_each_once(fake, events);
    assert_sessions_match(backend.sessions.as_ref(), events).await;
    assert_eq!(checkpoints(backend).await, stream_ends(fake));
}

/// The fake Kinesis's read calls that `keep` keeps, in order.
fn reads_where(fake: &FakeAws, keep: impl Fn(&ReadCall) -> bool) -> Vec<ReadCall> {
    fake.with(|s| {
        s.kinesis
            .reads
            .iter()
            .filter(|r| keep(r))
            .cloned()
            .collect()
    })
}

/// The fake Kinesis's reads that returned records.
fn reads_that_found(fake: &FakeAws) -> Vec<ReadCall> {
    reads_where(
        fake,
        |r| matches!(r, ReadCall::Records { count, .. } if *count > 0),
    )
}

fn throttled_reads(fake: &FakeAws) -> usize {
    reads_where(fake, |r| matches!(r, ReadCall::Throttled { .. })).len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_reads_are_retried_and_every_event_lands_once() {
    let dir = tempfile::tempdir().unwrap();
    let events = events(20, 4);
    let (fake, backend) = consumer_of(1, &events, dir.path()).await;
    // Never more than two in a row: the SDK's three attempts per call get through each time.
    fake.with(|s| {
        s.kinesis.read_faults = [
            ReadFault::Throttle,
            ReadFault::Throttle,
            ReadFault::Pass,
            ReadFault::Throttle,
            ReadFault::Pass,
            ReadFault::Throttle,
            ReadFault::Throttle,
        ]
        .into()
    });

    assert_eq!(processor(&backend, 5).drain().await.unwrap(), 20);

    assert_eq!(throttled_reads(&fake), 5);
    // A throttled GetRecords is sent again with its iterator: the position is never lost.
    let iterators = reads_where(&fake, |r| matches!(r, ReadCall::Iterator { .. }));
    assert_eq!(
        iterators,
        [ReadCall::Iterator {
            shard_id: "shardId-000000000000".into(),
            kind: "TRIM_HORIZON".into(),
            sequence: None
        }]
    );
    assert_consumed_once(&fake, &backend, &events).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_throttled_past_the_sdk_retries_are_backed_off_and_resumed() {
    let dir = tempfile::tempdir().unwrap();
    let events = events(12, 3);
    let (fake, backend) = consumer_of(1, &events, dir.path()).await;
    // Five in a row: the SDK gives up on the first read after three, the processor backs off
    // and reads again.
    fake.with(|s| s.kinesis.read_faults = [ReadFault::Throttle; 5].into());

    let (stop, running) = running(processor(&backend, 5));
    wait_for("every event in the lake", Duration::from_secs(60), || {
        let all_there = fake.with(|s| s.firehose.delivered.len()) >= events.len();
        async move { all_there.then_some(()) }
    })
    .await;
    // The last batch is checkpointed just after its lake write.
    wait_for("the checkpoint at the end", Duration::from_secs(10), || {
        let (backend, ends) = (backend.clone(), stream_ends(&fake));
        async move { (checkpoints(&backend).await == ends).then_some(()) }
    })
    .await;
    stop.send(()).unwrap();
    running.await.unwrap().unwrap();

    assert_eq!(throttled_reads(&fake), 5);
    assert_consumed_once(&fake, &backend, &events).await;
}

/// One shard throttled for good (a hot shard) does not hold the others back: each failing
/// shard waits out its own backoff while the rest are read to their end, and once its reads
/// pass it is read to its end too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_throttled_for_good_does_not_hold_the_others_back() {
    let dir = tempfile::tempdir().unwrap();
    let events = events(24, 6);
    let (fake, backend) = consumer_of(2, &events, dir.path()).await;
    let (hot, cold) = ("shardId-000000000000", "shardId-000000000001");
    let ends = stream_ends(&fake);
    assert!(
        ends[hot].is_some() && ends[cold].is_some(),
        "events on both shards: {ends:?}"
    );
    fake.with(|s| s.kinesis.throttled_shards.insert(hot.to_owned()));

    let (stop, running) = running(processor(&backend, 3));
    let read_to_its_end = |shard: &'static str| {
        let (backend, end) = (backend.clone(), ends[shard].clone());
        wait_for(shard, Duration::from_secs(30), move || {
            let (backend, end) = (backend.clone(), end.clone());
            async move { (checkpoints(&backend).await.get(shard) == Some(&end)).then_some(()) }
        })
    };
    read_to_its_end(cold).await;
    assert_eq!(checkpoints(&backend).await.get(hot), Some(&None));
    assert!(throttled_reads(&fake) > 0);

    fake.with(|s| s.kinesis.throttled_shards.clear());
    read_to_its_end(hot).await;
    stop.send(()).unwrap();
    running.await.unwrap().unwrap();
    assert_consumed_once(&fake, &backend, &events).await;
}

/// While one shard is busy, an empty one is read once per `idle_poll_ms`, not at the read
/// rate: a shard's 5 reads a second are shared with the stream's other consumers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_shard_is_read_once_per_idle_poll_while_another_is_busy() {
    let dir = tempfile::tempdir().unwrap();
    // One visitor: every event on one shard, the other empty.
    let events = events(16, 1);
    let (fake, backend) = consumer_of(2, &events, dir.path()).await;
    let ends = stream_ends(&fake);
    assert_eq!(ends.len(), 1, "one shard holds the events: {ends:?}");
    let busy = ends.keys().next().unwrap().clone();
    let config = ProcessorConfig {
        consumer: CONSUMER.into(),
        batch_size: 2,
        min_read_interval_ms: Some(200),
        idle_poll_ms: Some(1000),
        metrics_listen: None,
        ..ProcessorConfig::default()
    };
    let started = std::time::Instant::now();
    assert_eq!(
        Processor::new(backend.clone(), &config)
            .drain()
            .await
            .unwrap(),
        16
    );
    let elapsed = started.elapsed();

    let reads_of = |busy_shard: bool| {
        reads_where(&fake, |r| {
            matches!(r, ReadCall::Records { shard_id, .. } if (*shard_id == busy) == busy_shard)
        })
        .len()
    };
    assert!(
        reads_of(true) >= 8,
        "{} reads of the busy shard",
        reads_of(true)
    );
    // Read first, then once a second at most: at 200 ms it would be about five times that.
    let most = elapsed.as_secs_f64().ceil() as usize + 1;
    assert!(
        reads_of(false) <= most,
        "{} reads of the empty shard in {elapsed:?}",
        reads_of(false)
    );
    assert!(reads_where(&fake, |r| matches!(r, ReadCall::OverLimit { .. })).is_empty());
    assert_sessions_match(backend.sessions.as_ref(), &events).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_iterators_are_replaced_from_the_last_sequence_read() {
    let dir = tempfile::tempdir().unwrap();
    let events = events(30, 6);
    let (fake, backend) = consumer_of(2, &events, dir.path()).await;
    assert_eq!(stream_ends(&fake).len(), 2, "both shards hold events");
    // Mid-stream, once both shards were read, every iterator handed out so far expires: the one
    // of the fourth GetRecords call and the one the other shard reads on with.
    fake.with(|s| {
        s.kinesis.read_faults = [
            ReadFault::Pass,
            ReadFault::Pass,
            ReadFault::Pass,
            ReadFault::Expire,
        ]
        .into()
    });

    assert_eq!(processor(&backend, 4).drain().await.unwrap(), 30);

    let reads = fake.with(|s| s.kinesis.reads.clone());
    let expired: Vec<(usize, &String, &Option<String>)> = reads
        .iter()
        .enumerate()
        .filter_map(|(i, r)| match r {
            ReadCall::Expired { shard_id, after } => Some((i, shard_id, after)),
            _ => None,
        })
        .collect();
    assert_eq!(expired.len(), 2, "{reads:#?}");
    assert_ne!(
        expired[0].1, expired[1].1,
        "one expiry per shard: {reads:#?}"
    );
    for (at, shard, after) in expired {
        let (kind, sequence) = match after {
            Some(sequence) => ("AFTER_SEQUENCE_NUMBER", Some(sequence.clone())),
            None => ("TRIM_HORIZON", None),
        };
        let fresh = reads[at..]
            .iter()
            .find(|r| matches!(r, ReadCall::Iterator { shard_id, .. } if shard_id == shard));
        assert_eq!(
            fresh,
            Some(&ReadCall::Iterator {
                shard_id: shard.clone(),
                kind: kind.into(),
                sequence
            }),
            "the iterator after the expiry at read {at}: {reads:#?}"
        );
    }
    assert_consumed_once(&fake, &backend, &events).await;
}

/// Events that reach the stream one by one within a batch window are read as they come, within
/// the read rate, and written together: one lake call, one checkpoint at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_window_writes_a_live_shards_reads_in_one_lake_call() {
    let dir = tempfile::tempdir().unwrap();
    let events = events(8, 2);
    let (fake, backend) = consumer_of(1, &[], dir.path()).await;
    let config = ProcessorConfig {
        consumer: CONSUMER.into(),
        batch_size: 100,
        batch_window_ms: 5_000,
        min_read_interval_ms: Some(200),
        idle_poll_ms: Some(10),
        metrics_listen: None,
        ..ProcessorConfig::default()
    };
    let (stop, running) = running(Processor::new(backend.clone(), &config));
    fake.with(|s| append(&mut s.kinesis, &events[..1]));
    // The processor takes its lease first: from its first read on, the events come one by one.
    wait_for("the first event read", Duration::from_secs(30), || {
        let read = !reads_that_found(&fake).is_empty();
        async move { read.then_some(()) }
    })
    .await;
    for event in events[1..].chunks(1) {
        fake.with(|s| append(&mut s.kinesis, event));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_for("every event in the lake", Duration::from_secs(30), || {
        let all_there = fake.with(|s| s.firehose.delivered.len()) >= events.len();
        async move { all_there.then_some(()) }
    })
    .await;
    stop.send(()).unwrap();
    running.await.unwrap().unwrap();

    let reads_that_found = reads_that_found(&fake);
    assert!(
        reads_that_found.len() > 1,
        "the window gathered several reads: {reads_that_found:?}"
    );
    assert_eq!(lake_calls(&fake).len(), 1, "one lake call for the window");
    assert_consumed_once(&fake, &backend, &events).await;
}

/// Drains 12 events in batches of 6 while Firehose meets its next calls with `faults`, and
/// checks that everything landed once; returns the event ids each PutRecordBatch call carried
/// and the events' ids in stream order.
async fn lake_calls_when_firehose_meets(
    faults: Vec<BatchFault>,
) -> (Vec<Vec<String>>, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let events = events(12, 3);
    let (fake, backend) = consumer_of(1, &events, dir.path()).await;
    fake.with(|s| s.firehose.faults = BatchFaults::then_accept(faults));

    assert_eq!(processor(&backend, 6).drain().await.unwrap(), 12);

    assert_consumed_once(&fake, &backend, &events).await;
    let ids = events.iter().map(TestEvent::event_id).collect();
    (lake_calls(&fake), ids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lake_records_firehose_refuses_are_resent_alone_and_land_once() {
    let (calls, ids) = lake_calls_when_firehose_meets(vec![
        BatchFault::Refuse(vec![1, 4]),
        BatchFault::Refuse(vec![0]),
    ])
    .await;
    assert_eq!(
        calls,
        [
            ids[..6].to_vec(),
            vec![ids[1].clone(), ids[4].clone()],
            vec![ids[1].clone()],
            ids[6..].to_vec(),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_lake_call_is_sent_again_whole_and_lands_once() {
    let (calls, ids) = lake_calls_when_firehose_meets(vec![BatchFault::Throttle; 2]).await;
    // The SDK retries the throttled call itself, with every record.
    assert_eq!(
        calls,
        [
            ids[..6].to_vec(),
            ids[..6].to_vec(),
            ids[..6].to_vec(),
            ids[6..].to_vec(),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_the_lake_refuses_for_good_is_not_checkpointed_and_is_read_again() {
    let dir = tempfile::tempdir().unwrap();
    let events = events(15, 3);
    let (fake, backend) = consumer_of(1, &events, dir.path()).await;
    // Two batches go through; the third is refused on every resend.
    fake.with(|s| {
        s.firehose.faults = BatchFaults {
            next: [BatchFault::Accept, BatchFault::Accept].into(),
            after: BatchFault::RefuseAll,
        }
    });

    let failed = processor(&backend, 5).drain().await;
    assert!(
        matches!(
            failed,
            Err(ProcessorError::Connector(ConnectorError::Throttled {
                service: "firehose",
                ..
            }))
        ),
        "{failed:?}"
    );
    let ids: Vec<String> = events.iter().map(TestEvent::event_id).collect();
    let calls = lake_calls(&fake);
    assert_eq!(calls[..2], [ids[..5].to_vec(), ids[5..10].to_vec()]);
    // The lake writer's eight attempts, each with the whole refused batch.
    assert_eq!(calls[2..], vec![ids[10..].to_vec(); 8]);
    let tenth = fake.with(|s| s.kinesis.records().nth(9).unwrap().sequence.clone());
    assert_eq!(
        checkpoints(&backend).await,
        BTreeMap::from([("shardId-000000000000".to_owned(), Some(tenth))])
    );

    // Firehose recovers: the next processor reads the third batch again from the checkpoint.
    fake.with(|s| s.firehose.faults = BatchFaults::default());
    assert_eq!(processor(&backend, 5).drain().await.unwrap(), 5);
    assert_eq!(lake_calls(&fake)[10..], [ids[10..].to_vec()]);
    assert_consumed_once(&fake, &backend, &events).await;
}

/// Resharding through the Kinesis wire protocol: ListShards' parent ids and ending sequence
/// numbers, and GetRecords' missing next iterator at the end of a closed shard, as the AWS
/// reader parses them (moto keeps a split shard open for reads and writes, so it cannot show
/// this). A split, then a merge of its children, with a visitor's events spread over all three
/// generations: each child is read only after its parents were read to their end, and every
/// event lands once, in the lake and in its session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_split_and_a_merge_children_are_read_after_their_parents_end() {
    let dir = tempfile::tempdir().unwrap();
    let all = events(36, 4);
    let (fake, backend) = consumer_of(1, &all[..12], dir.path()).await;
    let parent = FakeStream::shard_id(0);
    let children = fake.with(|s| s.kinesis.split(&parent));
    fake.with(|s| append(&mut s.kinesis, &all[12..24]));
    let merged = fake.with(|s| s.kinesis.merge(&children[0], &children[1]));
    fake.with(|s| append(&mut s.kinesis, &all[24..]));
    let ends = stream_ends(&fake);
    for shard in children.iter().chain([&parent, &merged]) {
        assert!(ends.contains_key(shard), "no events on {shard}: {ends:?}");
    }

    assert_eq!(processor(&backend, 5).drain().await.unwrap(), 36);

    let reads: Vec<(String, usize)> = fake.with(|s| {
        s.kinesis
            .reads
            .iter()
            .filter_map(|r| match r {
                ReadCall::Records { shard_id, count } => Some((shard_id.clone(), *count)),
                _ => None,
            })
            .collect()
    });
    let first = |shard: &str| reads.iter().position(|(s, _)| s == shard).unwrap();
    let last = |shard: &str| reads.iter().rposition(|(s, _)| s == shard).unwrap();
    for child in &children {
        assert!(
            last(&parent) < first(child),
            "{child} before its parent: {reads:?}"
        );
        assert!(
            last(child) < first(&merged),
            "{merged} before {child}: {reads:?}"
        );
    }
    assert_lake_holds_each_once(&fake, &all);
    assert_sessions_match(backend.sessions.as_ref(), &all).await;
    let checkpoints = checkpoints(&backend).await;
    assert_eq!(
        checkpoints[&merged], ends[&merged],
        "the open child is read to its end"
    );
}

/// A closed shard ages out of the stream once its retention has passed, as when the processor
/// was down for longer than that; it can do so between the ListShards that listed it and the
/// read of it. Kinesis then knows no such shard: the reader takes it as read to its end (its
/// records are gone), so that its children are read. Stopping, or waiting on it, would hold
/// them back for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_aged_out_since_it_was_listed_is_taken_as_ended() {
    let dir = tempfile::tempdir().unwrap();
    let all = events(24, 4);
    let (fake, backend) = consumer_of(1, &all[..12], dir.path()).await;
    let parent = FakeStream::shard_id(0);
    let children = fake.with(|s| {
        let children = s.kinesis.split(&parent);
        append(&mut s.kinesis, &all[12..]);
        s.kinesis.age_out_after_listing.insert(parent.clone());
        children
    });

    assert_eq!(processor(&backend, 5).drain().await.unwrap(), 12);

    assert_lake_holds_each_once(&fake, &all[12..]);
    assert_sessions_match(backend.sessions.as_ref(), &all[12..]).await;
    let leases = backend.leases.leases(CONSUMER).await.unwrap();
    let lease = |shard: &str| leases.iter().find(|l| l.shard_id == shard);
    // An ended shard no longer listed has its lease cleared away.
    assert_eq!(lease(&parent), None);
    let ends = stream_ends(&fake);
    for child in &children {
        let checkpoint = lease(child).and_then(|l| l.checkpoint.clone());
        assert_eq!(checkpoint, ends[child], "{child} read to its end");
    }
}
