//! The crash test: while a known set of events flows into the embedded log, the processor is
//! killed at random points (its task dropped mid-await, wherever it is: reading, writing
//! sessions, writing the lake, checkpointing, renewing) and restarted, sometimes with the same
//! instance id, sometimes as a new instance that must wait for the dead one's lease to expire.
//! At the end the sessions must equal those computed from the input alone, with every event
//! counted exactly once, and the lake must hold every event.
//!
//! The seed is printed; `RETAILMIND_CRASH_SEED=<seed>` replays a run's kill points.

mod lease_support;

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use lease_support::{assert_sessions_match, events, TestEvent};
use retailmind_connectors::{embedded, StreamRecord};
use retailmind_processor::{Processor, ProcessorConfig};
use retailmind_tests::wait_for;

const CONSUMER: &str = "main";
const EVENTS: u64 = 1500;
const KILLS: usize = 15;

fn config(instance_id: String, batch_size: usize) -> ProcessorConfig {
    ProcessorConfig {
        consumer: CONSUMER.into(),
        batch_size,
        idle_poll_ms: 5,
        lease_duration_ms: 300,
        instance_id: Some(instance_id),
        metrics_listen: None,
        ..ProcessorConfig::default()
    }
}

/// Every event id in the lake's event files.
fn lake_event_ids(dir: &Path) -> Vec<String> {
    let mut ids = Vec::new();
    let mut folders = vec![dir.join("lake").join("events")];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                folders.push(path);
                continue;
            }
            for line in std::fs::read_to_string(&path).unwrap().lines() {
                let event: serde_json::Value = serde_json::from_str(line).unwrap();
                ids.push(event["event_id"].as_str().unwrap().to_owned());
            }
        }
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_processor_killed_at_random_points_loses_and_doubles_nothing() {
    let seed = std::env::var("RETAILMIND_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    println!("RETAILMIND_CRASH_SEED={seed}");
    let mut rng = fastrand::Rng::with_seed(seed);
    let dir = tempfile::tempdir().unwrap();
    let all = events(EVENTS, 50);

    // The events flow in, paced over about the time of the kills, while the processor is
    // killed and restarted.
    let sink = embedded::open(dir.path()).unwrap().sink;
    let chunks: Vec<Vec<StreamRecord>> = all
        .chunks(30)
        .map(|c| c.iter().map(TestEvent::record).collect())
        .collect();
    let producer = tokio::spawn(async move {
        for chunk in chunks {
            sink.append(chunk).await.unwrap();
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
    });

    for round in 0..KILLS {
        // Every round a new "process": its own connections to the same files.
        let backend = embedded::open(dir.path()).unwrap();
        let instance_id = if rng.bool() {
            "stable".to_owned()
        } else {
            format!("instance-{round}")
        };
        let processor = Processor::new(backend, &config(instance_id, rng.usize(1..=60)));
        let task = tokio::spawn(async move { processor.run(std::future::pending()).await });
        // The random kill point (not a wait for a condition: the point is not to know).
        // Up to past the lease duration, so new instances sometimes outlive the dead one's
        // lease and take it over.
        tokio::time::sleep(Duration::from_millis(rng.u64(1..=450))).await;
        task.abort();
        assert!(task.await.unwrap_err().is_cancelled(), "round {round}");
    }
    producer.await.unwrap();
    let reached = embedded::open(dir.path())
        .unwrap()
        .checkpoints
        .get(CONSUMER, embedded::SHARD_ID)
        .await
        .unwrap();
    println!("checkpoint after {KILLS} kills: {reached:?} of {EVENTS}");
    assert!(reached.is_some(), "the killed instances made progress");

    // A last instance finishes the job.
    let backend = embedded::open(dir.path()).unwrap();
    let processor = Processor::new(backend.clone(), &config("last".into(), 50));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        processor
            .run(async {
                let _ = stopped.await;
            })
            .await
    });
    let end = EVENTS.to_string();
    wait_for(
        "the checkpoint at the last record",
        Duration::from_secs(60),
        || async {
            let checkpoint = backend
                .checkpoints
                .get(CONSUMER, embedded::SHARD_ID)
                .await
                .unwrap();
            (checkpoint.as_deref() == Some(end.as_str())).then_some(())
        },
    )
    .await;
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();

    assert_sessions_match(backend.sessions.as_ref(), &all).await;
    let in_lake: HashSet<String> = lake_event_ids(dir.path()).into_iter().collect();
    let expected: HashSet<String> = all.iter().map(TestEvent::event_id).collect();
    assert_eq!(
        in_lake, expected,
        "every event in the lake (repeats allowed)"
    );
}
