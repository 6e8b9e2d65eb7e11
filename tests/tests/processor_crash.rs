//! The crash test: while a known set of events flows into the embedded log, the processor is
//! killed at random points (its task dropped mid-await, wherever it is: reading, writing
//! sessions, writing the lake, checkpointing, renewing) and restarted, sometimes with the same
//! instance id, sometimes as a new instance that must wait for the dead one's lease to expire.
//! At the end the sessions must equal those computed from the input alone, with every event
//! counted exactly once, and the lake must hold every event.
//!
//! The same again with the `retailmind-processor` binary as an OS process killed by SIGKILL.
//!
//! The seed is printed; `RETAILMIND_CRASH_SEED=<seed>` replays a run's kill points.

mod lease_support;

use std::collections::HashSet;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
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
        idle_poll_ms: Some(5),
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
            // A write cut short by a kill leaves its temporary file, which readers skip.
            if entry.file_name().to_string_lossy().starts_with('.') {
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

/// The seed of a run's kill points, printed; `RETAILMIND_CRASH_SEED` replays one.
fn seeded() -> fastrand::Rng {
    let seed = std::env::var("RETAILMIND_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    println!("RETAILMIND_CRASH_SEED={seed}");
    fastrand::Rng::with_seed(seed)
}

/// Appends `all` to the embedded log in `dir` in the background, paced over about `over`, as
/// the collector would while the processor is killed and restarted.
fn produce(dir: &Path, all: &[TestEvent], over: Duration) -> tokio::task::JoinHandle<()> {
    let sink = embedded::open(dir).unwrap().sink;
    let chunks: Vec<Vec<StreamRecord>> = all
        .chunks(30)
        .map(|c| c.iter().map(TestEvent::record).collect())
        .collect();
    let pause = over / chunks.len() as u32;
    tokio::spawn(async move {
        for chunk in chunks {
            sink.append(chunk).await.unwrap();
            tokio::time::sleep(pause).await;
        }
    })
}

/// The checkpoint of the embedded log's shard.
async fn checkpoint(dir: &Path) -> Option<String> {
    embedded::open(dir)
        .unwrap()
        .checkpoints
        .get(CONSUMER, embedded::SHARD_ID)
        .await
        .unwrap()
}

async fn wait_until_checkpointed_at_the_end(dir: &Path) {
    let end = EVENTS.to_string();
    wait_for(
        "the checkpoint at the last record",
        Duration::from_secs(60),
        || async { (checkpoint(dir).await.as_deref() == Some(end.as_str())).then_some(()) },
    )
    .await;
}

/// The sessions equal those computed from `all` alone, and the lake holds every event.
async fn assert_nothing_lost_or_doubled(dir: &Path, all: &[TestEvent]) {
    let backend = embedded::open(dir).unwrap();
    assert_sessions_match(backend.sessions.as_ref(), all).await;
    let in_lake: HashSet<String> = lake_event_ids(dir).into_iter().collect();
    let expected: HashSet<String> = all.iter().map(TestEvent::event_id).collect();
    assert_eq!(
        in_lake, expected,
        "every event in the lake (repeats allowed)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_processor_killed_at_random_points_loses_and_doubles_nothing() {
    let mut rng = seeded();
    let dir = tempfile::tempdir().unwrap();
    let all = events(EVENTS, 50);
    let producer = produce(dir.path(), &all, Duration::from_secs(2));

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
    let reached = checkpoint(dir.path()).await;
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
    wait_until_checkpointed_at_the_end(dir.path()).await;
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
    assert_nothing_lost_or_doubled(dir.path(), &all).await;
}

/// `retailmind-processor`, built beside this test by `cargo test --workspace`. Cargo builds
/// another package's binary only for a workspace run: after `cargo test -p retailmind-tests`
/// alone, the one there may predate the code, and this test would check old code without a
/// word. So it must be newer than every source file it is built from.
fn processor_binary() -> PathBuf {
    // Checked once: the crash test starts the binary again and again, and the sources do not
    // change under a running test.
    static CHECKED: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    CHECKED.get_or_init(fresh_processor_binary).clone()
}

fn fresh_processor_binary() -> PathBuf {
    let deps = std::env::current_exe().unwrap();
    let binary = deps.parent().and_then(Path::parent).unwrap().join(format!(
        "retailmind-processor{}",
        std::env::consts::EXE_SUFFIX
    ));
    let rebuild = "`cargo test --workspace` builds it (or `cargo build -p retailmind-processor`)";
    let built = std::fs::metadata(&binary)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| panic!("{} is missing: {rebuild}", binary.display()));
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    for krate in ["processor", "connectors", "schema", "recommend", "commerce"] {
        if let Some(newer) = newer_than(&root.join(krate).join("src"), built) {
            panic!(
                "{} is older than {}: {rebuild}",
                binary.display(),
                newer.display()
            );
        }
    }
    binary
}

/// A file under `dir` changed after `time`, if any.
fn newer_than(dir: &Path, time: std::time::SystemTime) -> Option<PathBuf> {
    std::fs::read_dir(dir).ok()?.flatten().find_map(|entry| {
        let path = entry.path();
        let meta = entry.metadata().ok()?;
        if meta.is_dir() {
            newer_than(&path, time)
        } else {
            (meta.modified().ok()? > time).then_some(path)
        }
    })
}

/// The processor binary on the embedded default in `dir`, configured through the
/// environment as an operator would.
fn spawn_processor(dir: &Path, instance_id: &str, batch_size: usize) -> Child {
    Command::new(processor_binary())
        .current_dir(dir)
        .env_clear()
        .env("RETAILMIND_BACKEND__KIND", "embedded")
        .env("RETAILMIND_BACKEND__DATA_DIR", dir)
        .env("RETAILMIND_CONSUMER", CONSUMER)
        .env("RETAILMIND_INSTANCE_ID", instance_id)
        .env("RETAILMIND_BATCH_SIZE", batch_size.to_string())
        .env("RETAILMIND_IDLE_POLL_MS", "5")
        .env("RETAILMIND_LEASE_DURATION_MS", "300")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("the processor binary starts")
}

/// The same as a real crash: the processor process is killed with SIGKILL (no destructor, no
/// lease release, wherever it is, a SQLite transaction or a lake file half written) and
/// started again, while events flow in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_processor_process_killed_with_sigkill_loses_and_doubles_nothing() {
    const PROCESS_KILLS: usize = 8;
    let mut rng = seeded();
    let dir = tempfile::tempdir().unwrap();
    let all = events(EVENTS, 50);
    // Opening creates the database before any process races to.
    drop(embedded::open(dir.path()).unwrap());
    let producer = produce(dir.path(), &all, Duration::from_secs(4));

    for round in 0..PROCESS_KILLS {
        let instance_id = if rng.bool() {
            "stable".to_owned()
        } else {
            format!("process-{round}")
        };
        let mut child = spawn_processor(dir.path(), &instance_id, rng.usize(1..=60));
        // Start-up takes part of this; the rest is processing, at a point nobody chose.
        tokio::time::sleep(Duration::from_millis(rng.u64(100..=900))).await;
        assert!(
            child.try_wait().unwrap().is_none(),
            "round {round}: the processor exited by itself"
        );
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert_eq!(status.signal(), Some(9), "round {round}: killed by SIGKILL");
    }
    producer.await.unwrap();
    let reached = checkpoint(dir.path()).await;
    println!("checkpoint after {PROCESS_KILLS} SIGKILLs: {reached:?} of {EVENTS}");
    assert!(reached.is_some(), "the killed processes made progress");

    let mut last = spawn_processor(dir.path(), "last", 50);
    wait_until_checkpointed_at_the_end(dir.path()).await;
    let leases = embedded::open(dir.path()).unwrap().leases;
    // It got this far, so it is past start-up; SIGTERM must stop it cleanly, releasing the
    // lease.
    wait_for(
        "the last process holding the lease",
        Duration::from_secs(60),
        || async {
            let held = leases.leases(CONSUMER).await.unwrap();
            held.iter()
                .any(|l| l.owner.as_deref() == Some("last"))
                .then_some(())
        },
    )
    .await;
    let terminated = Command::new("kill")
        .args(["-TERM", &last.id().to_string()])
        .status()
        .unwrap();
    assert!(terminated.success());
    let status = last.wait().unwrap();
    assert!(status.success(), "a clean stop on SIGTERM: {status:?}");
    let after = leases.leases(CONSUMER).await.unwrap();
    assert!(
        after.iter().all(|l| l.owner.is_none()),
        "released on SIGTERM: {after:?}"
    );
    assert_nothing_lost_or_doubled(dir.path(), &all).await;
}
