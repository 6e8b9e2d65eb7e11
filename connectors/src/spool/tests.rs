use std::sync::atomic::AtomicBool;
use std::sync::Mutex;

use super::*;

/// A stream that can be switched off: the outage the spool exists for, which a real Kinesis
/// cannot be made to have on demand.
#[derive(Default)]
struct SwitchableStream {
    down: AtomicBool,
    /// Down, but storing the first record of each append before failing.
    partly: AtomicBool,
    stored: Mutex<Vec<StreamRecord>>,
}

#[async_trait]
impl EventSink for SwitchableStream {
    async fn append(&self, records: Vec<StreamRecord>) -> Result<()> {
        if self.partly.load(Ordering::SeqCst) {
            self.stored.lock().unwrap().push(records[0].clone());
            return Err(ConnectorError::PartlyStored {
                stored: vec![0],
                cause: Box::new(ConnectorError::unavailable("kinesis", "throughput")),
            });
        }
        if self.down.load(Ordering::SeqCst) {
            return Err(ConnectorError::unavailable("kinesis", "connection refused"));
        }
        self.stored.lock().unwrap().extend(records);
        Ok(())
    }
    async fn ready(&self) -> Result<()> {
        if self.down.load(Ordering::SeqCst) {
            return Err(ConnectorError::unavailable("kinesis", "connection refused"));
        }
        Ok(())
    }
}

fn records(prefix: &str, n: usize) -> Vec<StreamRecord> {
    (0..n)
        .map(|i| StreamRecord {
            partition_key: format!("{prefix}-{i}"),
            data: Bytes::from(format!("{{\"n\":{i}}}")),
        })
        .collect()
}

#[tokio::test]
async fn records_written_during_an_outage_are_delivered_once_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let stream = Arc::new(SwitchableStream::default());
    let sink = SpoolingSink::new(stream.clone(), dir.path(), 1 << 20).unwrap();

    sink.append(records("before", 2)).await.unwrap();
    stream.down.store(true, Ordering::SeqCst);
    sink.append(records("during", 3)).await.unwrap();
    assert!(sink.spooled_bytes() > 0);
    assert!(
        sink.replay().await.is_err(),
        "still down: the spool is kept"
    );
    assert_eq!(stream.stored.lock().unwrap().len(), 2);

    stream.down.store(false, Ordering::SeqCst);
    // A restarted collector finds the spool on disk.
    let reopened = SpoolingSink::new(stream.clone(), dir.path(), 1 << 20).unwrap();
    assert_eq!(reopened.spooled_bytes(), sink.spooled_bytes());
    assert_eq!(reopened.replay().await.unwrap(), 3);
    assert_eq!(reopened.replay().await.unwrap(), 0, "nothing twice");
    assert_eq!(reopened.spooled_bytes(), 0);
    let stored = stream.stored.lock().unwrap();
    assert_eq!(stored.len(), 5);
    assert_eq!(stored[2..], records("during", 3)[..]);
}

#[tokio::test]
async fn a_full_spool_hands_the_outage_back_to_the_caller() {
    let dir = tempfile::tempdir().unwrap();
    let stream = Arc::new(SwitchableStream::default());
    stream.down.store(true, Ordering::SeqCst);
    let sink = SpoolingSink::new(stream.clone(), dir.path(), 100).unwrap();
    sink.append(records("a", 2)).await.unwrap();
    let err = sink.append(records("b", 10)).await.unwrap_err();
    assert!(
        matches!(
            err,
            ConnectorError::Unavailable {
                service: "kinesis",
                ..
            }
        ),
        "{err}"
    );
}

/// In an outage the spool absorbs, the collector stays ready (a load balancer keeps sending it
/// writes); once the spool is nearly full, it is not.
#[tokio::test]
async fn ready_while_the_stream_is_or_the_spool_has_room() {
    let dir = tempfile::tempdir().unwrap();
    let stream = Arc::new(SwitchableStream::default());
    let sink = SpoolingSink::new(stream.clone(), dir.path(), 1000).unwrap();
    assert!(sink.ready().await.is_ok());
    stream.down.store(true, Ordering::SeqCst);
    assert!(sink.ready().await.is_ok(), "the spool has room");
    while sink.spooled_bytes() <= 900 {
        sink.append(records("x", 1)).await.unwrap();
    }
    assert!(sink.ready().await.is_err(), "less than a tenth left");
    stream.down.store(false, Ordering::SeqCst);
    assert!(sink.ready().await.is_ok());
}

#[test]
fn encoding_round_trips_and_refuses_truncation() {
    let rs = records("k", 4);
    let encoded = encode(&rs);
    assert_eq!(decode(&encoded).unwrap(), rs);
    assert!(decode(&encoded[..encoded.len() - 1]).is_none());
}

#[tokio::test]
async fn records_the_stream_stored_before_failing_are_not_spooled() {
    let dir = tempfile::tempdir().unwrap();
    let stream = Arc::new(SwitchableStream::default());
    let sink = SpoolingSink::new(stream.clone(), dir.path(), 1 << 20).unwrap();
    stream.partly.store(true, Ordering::SeqCst);
    sink.append(records("x", 3)).await.unwrap();
    stream.partly.store(false, Ordering::SeqCst);
    assert_eq!(sink.replay().await.unwrap(), 2, "only the two not stored");
    let stored = stream.stored.lock().unwrap();
    assert_eq!(stored[..], records("x", 3)[..], "each once, in order");
}

#[tokio::test]
async fn a_replay_the_stream_takes_in_part_resends_only_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let stream = Arc::new(SwitchableStream::default());
    let sink = SpoolingSink::new(stream.clone(), dir.path(), 1 << 20).unwrap();
    stream.down.store(true, Ordering::SeqCst);
    sink.append(records("x", 3)).await.unwrap();
    let full = sink.spooled_bytes();

    stream.partly.store(true, Ordering::SeqCst);
    assert!(sink.replay().await.is_err());
    assert!(
        sink.spooled_bytes() < full,
        "the stored record left the spool"
    );
    stream.partly.store(false, Ordering::SeqCst);
    stream.down.store(false, Ordering::SeqCst);
    assert_eq!(sink.replay().await.unwrap(), 2);
    assert_eq!(sink.spooled_bytes(), 0);
    let stored = stream.stored.lock().unwrap();
    assert_eq!(stored[..], records("x", 3)[..], "each once");
}

#[tokio::test]
async fn an_unreadable_spool_file_is_set_aside_and_the_rest_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let stream = Arc::new(SwitchableStream::default());
    stream.down.store(true, Ordering::SeqCst);
    let sink = SpoolingSink::new(stream.clone(), dir.path(), 1 << 20).unwrap();
    sink.append(records("damaged", 2)).await.unwrap();
    sink.append(records("sound", 3)).await.unwrap();
    let files = spool_files(dir.path()).unwrap();
    assert_eq!(files.len(), 2);
    let damaged = std::fs::read(&files[0]).unwrap();
    std::fs::write(&files[0], &damaged[..damaged.len() - 3]).unwrap();
    // A write a crash cut off before its rename: never acknowledged, so never replayed.
    std::fs::write(dir.path().join(".0000.spool.tmp"), b"half").unwrap();

    stream.down.store(false, Ordering::SeqCst);
    let reopened = SpoolingSink::new(stream.clone(), dir.path(), 1 << 20).unwrap();
    assert_eq!(reopened.replay().await.unwrap(), 3);
    assert_eq!(reopened.spooled_bytes(), 0);
    assert_eq!(stream.stored.lock().unwrap()[..], records("sound", 3)[..]);
    let aside: Vec<_> = std::fs::read_dir(dir.path().join(CORRUPT_DIR))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(aside, [files[0].file_name().unwrap()]);
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, [CORRUPT_DIR], "the temporary file is gone too");
}

/// A stream that accepts the call and never answers.
struct SilentStream;

#[async_trait]
impl EventSink for SilentStream {
    async fn append(&self, _: Vec<StreamRecord>) -> Result<()> {
        std::future::pending().await
    }
    async fn ready(&self) -> Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn records_the_stream_does_not_answer_for_in_time_are_spooled() {
    let dir = tempfile::tempdir().unwrap();
    let sink = SpoolingSink::new(Arc::new(SilentStream), dir.path(), 1 << 20)
        .unwrap()
        .spooling_after(Duration::from_millis(50));
    tokio::time::timeout(Duration::from_secs(10), sink.append(records("slow", 2)))
        .await
        .expect("spooled, not waiting for the stream")
        .unwrap();
    assert_eq!(spool_files(dir.path()).unwrap().len(), 1);
    assert!(sink.spooled_bytes() > 0);
}

/// A spool file the count does not hold (one put in the folder after the spool started) is
/// delivered, and the count stays at zero instead of wrapping around, which
/// would make the collector not ready and its spool refuse every write.
#[tokio::test]
async fn a_spool_file_the_count_does_not_hold_is_delivered_without_wrapping_the_count() {
    let dir = tempfile::tempdir().unwrap();
    let stream = Arc::new(SwitchableStream::default());
    let sink = SpoolingSink::new(stream.clone(), dir.path(), 1 << 20).unwrap();
    assert_eq!(sink.spooled_bytes(), 0);
    write_file(dir.path(), &encode(&records("stray", 2)))
        .map_err(|failed| failed.error)
        .unwrap();

    assert_eq!(sink.replay().await.unwrap(), 2);
    assert_eq!(sink.spooled_bytes(), 0);
    assert_eq!(stream.stored.lock().unwrap().len(), 2);
    sink.ready().await.unwrap();
}
