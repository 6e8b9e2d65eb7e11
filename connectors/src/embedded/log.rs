//! The embedded stream: an ordered log in SQLite with one shard.
//!
//! Appends go to a single writer thread that commits every request waiting at that moment in one
//! transaction (group commit), so many small concurrent batches cost one fsync, and answers each
//! request only after that commit. The request channel is bounded: when the disk cannot keep up,
//! callers wait instead of piling up memory. The writer does not copy the WAL back into the
//! database inside its commits: see [`super::wal`].

use std::path::Path;
use std::thread;

use async_trait::async_trait;
use bytes::Bytes;
use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::{mpsc, oneshot};

use super::db::{open_connection, sqlite_err, Db};
use super::wal::{CheckpointBounds, WalKeeper};
use crate::clock::now_ms;
use crate::error::{ConnectorError, Result};
use crate::stream::{EventSink, ReadBatch, ShardInfo, StreamEntry, StreamReader, StreamRecord};

/// The embedded log has one shard; its id is fixed so checkpoints stay valid across restarts.
pub const SHARD_ID: &str = "shard-000000";

/// Requests waiting for the writer at most; beyond that `append` waits (back-pressure).
const PENDING_REQUESTS: usize = 1024;
/// Records committed together at most, so one commit never holds the lock for long.
const MAX_RECORDS_PER_COMMIT: usize = 50_000;

struct AppendRequest {
    records: Vec<StreamRecord>,
    done: oneshot::Sender<Result<()>>,
}

/// Appends to the log from a dedicated writer thread.
pub struct EmbeddedLogWriter {
    requests: mpsc::Sender<AppendRequest>,
}

/// The tables the writer can append to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogTable {
    /// The event stream the processor reads.
    Events,
    /// Rejected events with their reasons.
    DeadLetters,
}

impl LogTable {
    fn insert_sql(self) -> &'static str {
        match self {
            LogTable::Events => {
                "INSERT INTO stream_log (partition_key, data, appended_at_ms) VALUES (?1, ?2, ?3)"
            }
            LogTable::DeadLetters => {
                "INSERT INTO dead_letters (partition_key, data, appended_at_ms) VALUES (?1, ?2, ?3)"
            }
        }
    }
}

impl EmbeddedLogWriter {
    pub fn open(path: &Path, table: LogTable) -> Result<Self> {
        Self::open_with(path, table, CheckpointBounds::default())
    }

    pub(super) fn open_with(
        path: &Path,
        table: LogTable,
        bounds: CheckpointBounds,
    ) -> Result<Self> {
        let conn = open_connection(path)?;
        let wal = WalKeeper::start(path, &conn, bounds)?;
        let (tx, rx) = mpsc::channel(PENDING_REQUESTS);
        thread::Builder::new()
            .name("retailmind-log-writer".into())
            .spawn(move || write_loop(conn, wal, table, rx))
            .map_err(|e| ConnectorError::unavailable("sqlite", e))?;
        Ok(EmbeddedLogWriter { requests: tx })
    }
}

fn write_loop(
    mut conn: Connection,
    mut wal: WalKeeper,
    table: LogTable,
    mut rx: mpsc::Receiver<AppendRequest>,
) {
    while let Some(first) = rx.blocking_recv() {
        let mut group = vec![first];
        let mut count = group[0].records.len();
        while count < MAX_RECORDS_PER_COMMIT {
            match rx.try_recv() {
                Ok(req) => {
                    count += req.records.len();
                    group.push(req);
                }
                Err(_) => break,
            }
        }
        let outcome = commit_group(&mut conn, table, &group);
        let bytes: usize = group
            .iter()
            .flat_map(|r| &r.records)
            .map(|r| r.data.len() + r.partition_key.len())
            .sum();
        for req in group {
            let answer = match &outcome {
                Ok(()) => Ok(()),
                Err(e) => Err(ConnectorError::unavailable("sqlite", e)),
            };
            // The caller may have gone away (client disconnected); nothing to tell then.
            let _ = req.done.send(answer);
        }
        // After the answers: a checkpoint the writer runs itself delays only the next group.
        if outcome.is_ok() {
            wal.committed(&conn, bytes);
        }
    }
}

fn commit_group(
    conn: &mut Connection,
    table: LogTable,
    group: &[AppendRequest],
) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut insert = tx.prepare_cached(table.insert_sql())?;
        let now = now_ms();
        for record in group.iter().flat_map(|r| &r.records) {
            insert.execute(params![record.partition_key, &record.data[..], now])?;
        }
    }
    tx.commit()
}

#[async_trait]
impl EventSink for EmbeddedLogWriter {
    async fn append(&self, records: Vec<StreamRecord>) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let (done, answer) = oneshot::channel();
        self.requests
            .send(AppendRequest { records, done })
            .await
            .map_err(|_| ConnectorError::unavailable("sqlite", "log writer stopped"))?;
        answer
            .await
            .map_err(|_| ConnectorError::unavailable("sqlite", "log writer stopped"))?
    }

    async fn ready(&self) -> Result<()> {
        if self.requests.is_closed() {
            return Err(ConnectorError::unavailable("sqlite", "log writer stopped"));
        }
        Ok(())
    }
}

/// Reads the log in order.
pub struct EmbeddedLogReader {
    db: Db,
}

impl EmbeddedLogReader {
    pub fn new(db: Db) -> Self {
        EmbeddedLogReader { db }
    }
}

#[async_trait]
impl StreamReader for EmbeddedLogReader {
    async fn shards(&self) -> Result<Vec<ShardInfo>> {
        Ok(vec![ShardInfo {
            shard_id: SHARD_ID.into(),
            parent_shard_ids: Vec::new(),
        }])
    }

    async fn read(&self, shard_id: &str, after: Option<&str>, max: usize) -> Result<ReadBatch> {
        if shard_id != SHARD_ID {
            return Err(ConnectorError::Misconfigured(format!(
                "the embedded log has no shard {shard_id:?}"
            )));
        }
        let after: i64 = match after {
            None => 0,
            Some(s) => s.parse().map_err(|_| ConnectorError::Corrupt {
                what: "checkpoint".into(),
                detail: format!("{s:?} is not a sequence number of the embedded log"),
            })?,
        };
        let limit = i64::try_from(max).unwrap_or(i64::MAX);
        self.db
            .call(move |conn| {
                let mut stmt = conn
                    .prepare_cached(
                        "SELECT seq, partition_key, data, appended_at_ms FROM stream_log
                         WHERE seq > ?1 ORDER BY seq LIMIT ?2",
                    )
                    .map_err(|e| sqlite_err("read log", e))?;
                let mut entries = Vec::new();
                let mut last_appended = None;
                let rows = stmt
                    .query_map(params![after, limit], |row| {
                        Ok((
                            row.get::<_, i64>(0)?,
                            row.get::<_, String>(1)?,
                            row.get::<_, Vec<u8>>(2)?,
                            row.get::<_, i64>(3)?,
                        ))
                    })
                    .map_err(|e| sqlite_err("read log", e))?;
                for row in rows {
                    let (seq, partition_key, data, appended) =
                        row.map_err(|e| sqlite_err("read log", e))?;
                    last_appended = Some(appended);
                    entries.push(StreamEntry {
                        sequence: seq.to_string(),
                        partition_key,
                        data: Bytes::from(data),
                    });
                }
                // The tip is the row with the highest sequence: one b-tree step, where
                // MAX(appended_at_ms) would scan the whole log on every read.
                let newest: Option<i64> = conn
                    .prepare_cached(
                        "SELECT appended_at_ms FROM stream_log ORDER BY seq DESC LIMIT 1",
                    )
                    .and_then(|mut tip| tip.query_row([], |r| r.get(0)).optional())
                    .map_err(|e| sqlite_err("read log", e))?;
                let millis_behind_latest = match (newest, last_appended) {
                    (Some(newest), Some(last)) => Some((newest - last).max(0)),
                    (_, None) => Some(0),
                    _ => None,
                };
                Ok(ReadBatch {
                    entries,
                    millis_behind_latest,
                    shard_ended: false,
                })
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Appends rows stamped with the given times, as the writer would have at those times.
    async fn append_at(db: &Db, times: &[i64]) {
        let times = times.to_vec();
        db.call(move |conn| {
            for at in times {
                conn.execute(
                    LogTable::Events.insert_sql(),
                    params!["k", b"{}".to_vec(), at],
                )
                .map_err(|e| sqlite_err("append", e))?;
            }
            Ok(())
        })
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn a_read_says_how_far_its_last_record_is_behind_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("db")).unwrap();
        let reader = EmbeddedLogReader::new(db.clone());

        let empty = reader.read(SHARD_ID, None, 10).await.unwrap();
        assert_eq!(empty.millis_behind_latest, Some(0));

        append_at(&db, &[1_000, 1_500, 4_000]).await;
        let first = reader.read(SHARD_ID, None, 2).await.unwrap();
        assert_eq!(first.entries.len(), 2);
        assert_eq!(first.millis_behind_latest, Some(2_500));

        let rest = reader
            .read(SHARD_ID, Some(&first.entries[1].sequence), 10)
            .await
            .unwrap();
        assert_eq!(rest.entries.len(), 1);
        assert_eq!(rest.millis_behind_latest, Some(0));
    }
}
