//! The embedded stream: an ordered log in SQLite with one shard.
//!
//! Every record has a sequence number, one more than the record before it. A row of
//! `stream_log` holds up to [`RECORDS_PER_ROW`] consecutive records (`records` of them, framed
//! in `data`; a row of one record holds it as it is, as every row did before rows held several)
//! and its `seq` is the sequence of its last record, so a row covers the sequences after the
//! row before it. One row per request's records, instead of one per record, spares SQLite most
//! of its per-row work (the b-tree inserts, the cell headers), which was half the collector's
//! cost per event. Kinesis producers aggregate records for the same reason.
//!
//! A frame is LZ4-compressed (its row's `partition_key` says [`LZ4_FRAME`]; rows written before
//! that say nothing and hold the frame as it is). Events are JSON with the same keys again and
//! again: the log then writes, copies back and fsyncs a fraction of the bytes. Frames are built
//! and compressed by the caller of `append`, beside the other requests, not by the one writer.
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
/// While the log is busy (requests came in during the last commit), a commit waits up to
/// [`LINGER`] for [`LINGER_RECORDS`] records, so that more requests share its fsync. An fsync
/// costs about the same CPU however little it carries: at full load with commits of the 3 to 5
/// requests that arrived during the previous one, fsync was a tenth of the collector's CPU;
/// lingering cut the fsyncs 2.7 times and raised throughput by about a tenth. An idle log
/// commits at once.
const LINGER: std::time::Duration = std::time::Duration::from_millis(1);
const LINGER_RECORDS: usize = 400;
/// Records in one row of the event log at most, so that a read of a few records never loads a
/// large blob.
pub const RECORDS_PER_ROW: usize = 256;

/// Requests of at least this many bytes are framed and compressed on the blocking pool (about a
/// millisecond per MiB), not on the caller's async task.
const COMPRESS_APART: usize = 256 << 10;

/// The `partition_key` of a row whose frame is LZ4-compressed.
const LZ4_FRAME: &str = "lz4";

struct AppendRequest {
    rows: Vec<LogRow>,
    done: oneshot::Sender<Result<()>>,
}

/// One row to insert: a record as it is, or a frame of several.
struct LogRow {
    records: usize,
    partition_key: String,
    data: Bytes,
}

impl LogRow {
    /// The rows for `records` in `table`: in the event log, consecutive records share a frame.
    fn for_records(table: LogTable, records: Vec<StreamRecord>) -> Vec<LogRow> {
        let one = |record: StreamRecord| LogRow {
            records: 1,
            partition_key: record.partition_key,
            data: record.data,
        };
        if table == LogTable::DeadLetters || records.len() == 1 {
            return records.into_iter().map(one).collect();
        }
        records
            .chunks(RECORDS_PER_ROW)
            .map(|rows| match rows {
                [single] => one(single.clone()),
                _ => LogRow {
                    records: rows.len(),
                    partition_key: LZ4_FRAME.to_owned(),
                    data: Bytes::from(lz4_flex::compress_prepend_size(&frame(rows))),
                },
            })
            .collect()
    }
}

/// Appends to the log from a dedicated writer thread.
pub struct EmbeddedLogWriter {
    table: LogTable,
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
        Ok(EmbeddedLogWriter {
            table,
            requests: tx,
        })
    }
}

fn write_loop(
    mut conn: Connection,
    mut wal: WalKeeper,
    table: LogTable,
    mut rx: mpsc::Receiver<AppendRequest>,
) {
    // Whether requests came in while the last group was committed: the log is busy.
    let mut busy = false;
    while let Some(first) = rx.blocking_recv() {
        let records = |req: &AppendRequest| req.rows.iter().map(|r| r.records).sum::<usize>();
        let mut count = records(&first);
        let mut group = vec![first];
        let lingering = std::time::Instant::now();
        loop {
            while count < MAX_RECORDS_PER_COMMIT {
                match rx.try_recv() {
                    Ok(req) => {
                        count += records(&req);
                        group.push(req);
                    }
                    Err(_) => break,
                }
            }
            if !busy || count >= LINGER_RECORDS || lingering.elapsed() >= LINGER {
                break;
            }
            thread::sleep(LINGER / 8);
        }
        let outcome = commit_group(&mut conn, table, &group);
        busy = !rx.is_empty();
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
            wal.committed(&conn);
        }
    }
}

fn commit_group(
    conn: &mut Connection,
    table: LogTable,
    group: &[AppendRequest],
) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    {
        let now = now_ms();
        match table {
            LogTable::Events => {
                // Under the write lock: another process appending to the same file moves it.
                // Also past every sequence ever used (AUTOINCREMENT's own record), so rows
                // deleted from the log's end never make a sequence count again.
                let mut seq: i64 = tx.query_row(
                    "SELECT MAX(
                         COALESCE((SELECT MAX(seq) FROM stream_log), 0),
                         COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'stream_log'), 0))",
                    [],
                    |r| r.get(0),
                )?;
                let mut insert = tx.prepare_cached(
                    "INSERT INTO stream_log (seq, partition_key, data, appended_at_ms, records)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )?;
                for row in group.iter().flat_map(|r| &r.rows) {
                    seq += row.records as i64;
                    insert.execute(params![
                        seq,
                        row.partition_key,
                        &row.data[..],
                        now,
                        row.records
                    ])?;
                }
            }
            LogTable::DeadLetters => {
                let mut insert = tx.prepare_cached(table.insert_sql())?;
                for row in group.iter().flat_map(|r| &r.rows) {
                    insert.execute(params![row.partition_key, &row.data[..], now])?;
                }
            }
        }
    }
    tx.commit()
}

/// A `stream_log` row as read: its last sequence, its record count, the partition key (of a
/// one-record row; of a frame, whether it is compressed), the data and when it was appended.
fn log_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<(i64, i64, String, Vec<u8>, i64)> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
    ))
}

/// Several records in one blob: for each, the partition key's length (u32, little endian), the
/// key, the data's length (u32 LE) and the data.
fn frame(records: &[StreamRecord]) -> Vec<u8> {
    let size = records
        .iter()
        .map(|r| 8 + r.partition_key.len() + r.data.len())
        .sum();
    let mut out = Vec::with_capacity(size);
    for record in records {
        for part in [record.partition_key.as_bytes(), &record.data[..]] {
            out.extend_from_slice(&(part.len() as u32).to_le_bytes());
            out.extend_from_slice(part);
        }
    }
    out
}

/// LZ4 expands a block at most about 255 times: a frame claiming more than that of its stored
/// size is damaged, and is refused before its claimed size is allocated.
const MAX_LZ4_RATIO: usize = 255;

/// The records of a row of `count` records, compressed or not as its `partition_key` says;
/// `None` when it is damaged.
fn read_frame(partition_key: &str, data: Vec<u8>, count: usize) -> Option<Vec<(String, Bytes)>> {
    let frame = match partition_key {
        LZ4_FRAME => {
            let (size, compressed) = lz4_flex::block::uncompressed_size(&data).ok()?;
            if size > compressed.len().saturating_mul(MAX_LZ4_RATIO) + 16 {
                return None;
            }
            lz4_flex::decompress(compressed, size).ok()?
        }
        _ => data,
    };
    unframe(&Bytes::from(frame), count)
}

/// The records of a [`frame`]; `None` when it is cut short or a key is not UTF-8.
fn unframe(blob: &Bytes, count: usize) -> Option<Vec<(String, Bytes)>> {
    let mut records = Vec::with_capacity(count);
    let mut at = 0;
    let next = |at: &mut usize| -> Option<Bytes> {
        let len = u32::from_le_bytes(blob.get(*at..*at + 4)?.try_into().ok()?) as usize;
        let part = blob.get(*at + 4..*at + 4 + len)?;
        let part = blob.slice_ref(part);
        *at += 4 + len;
        Some(part)
    };
    for _ in 0..count {
        let key = next(&mut at)?;
        let data = next(&mut at)?;
        records.push((String::from_utf8(key.to_vec()).ok()?, data));
    }
    (at == blob.len()).then_some(records)
}

#[async_trait]
impl EventSink for EmbeddedLogWriter {
    async fn append(&self, records: Vec<StreamRecord>) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let table = self.table;
        let bytes: usize = records.iter().map(|r| r.data.len()).sum();
        let rows = if bytes < COMPRESS_APART {
            LogRow::for_records(table, records)
        } else {
            tokio::task::spawn_blocking(move || LogRow::for_records(table, records))
                .await
                .map_err(|e| ConnectorError::unavailable("sqlite", e))?
        };
        let (done, answer) = oneshot::channel();
        self.requests
            .send(AppendRequest { rows, done })
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
                // Each row holds at least one record, so `max` rows are always enough; the
                // first may also hold records at or before `after`.
                let mut stmt = conn
                    .prepare_cached(
                        "SELECT seq, records, partition_key, data, appended_at_ms FROM stream_log
                         WHERE seq > ?1 ORDER BY seq LIMIT ?2",
                    )
                    .map_err(|e| sqlite_err("read log", e))?;
                let mut entries = Vec::new();
                let mut last_appended = None;
                let mut rows = stmt
                    .query(params![after, limit])
                    .map_err(|e| sqlite_err("read log", e))?;
                while entries.len() < max {
                    let Some(row) = rows.next().map_err(|e| sqlite_err("read log", e))? else {
                        break;
                    };
                    let (last_seq, count, partition_key, data, appended) =
                        log_row(row).map_err(|e| sqlite_err("read log", e))?;
                    let records = match count {
                        1 => vec![(partition_key, Bytes::from(data))],
                        n => read_frame(&partition_key, data, n as usize).ok_or_else(|| {
                            ConnectorError::Corrupt {
                                what: format!("stream_log row {last_seq}"),
                                detail: format!("not a frame of {n} records"),
                            }
                        })?,
                    };
                    let first_seq = last_seq - count + 1;
                    for (seq, (partition_key, data)) in (first_seq..).zip(records) {
                        if seq <= after || entries.len() == max {
                            continue;
                        }
                        last_appended = Some(appended);
                        entries.push(StreamEntry {
                            sequence: seq.to_string(),
                            partition_key,
                            data,
                        });
                    }
                }
                drop(rows);
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

    fn record(key: &str, data: &str) -> StreamRecord {
        StreamRecord {
            partition_key: key.into(),
            data: Bytes::from(data.to_owned()),
        }
    }

    #[test]
    fn a_frame_gives_back_its_records_and_a_cut_one_is_refused() {
        let records = vec![
            record("anna", "{\"a\":1}"),
            record("", ""),
            record("bo", "x"),
        ];
        let framed = Bytes::from(frame(&records));
        let back = unframe(&framed, 3).unwrap();
        let expected: Vec<(String, Bytes)> = records
            .iter()
            .map(|r| (r.partition_key.clone(), r.data.clone()))
            .collect();
        assert_eq!(back, expected);
        assert_eq!(unframe(&framed.slice(..framed.len() - 1), 3), None);
        assert_eq!(unframe(&framed, 2), None, "bytes left over");
        assert_eq!(unframe(&framed, 4), None);
    }

    /// A request's frame is stored compressed; frames stored plain, as before compression, and
    /// damaged ones are told apart.
    #[tokio::test]
    async fn frames_are_stored_compressed_and_plain_ones_from_before_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let writer = EmbeddedLogWriter::open(&path, LogTable::Events).unwrap();
        let request: Vec<StreamRecord> = (0..50)
            .map(|i| {
                let event = format!(
                    r#"{{"event_id":"{i:08}","type":"page_view","context":{{"page":{{"url":"https://shop.example/p/{i}"}}}}}}"#
                );
                record(&format!("v{i}"), &event)
            })
            .collect();
        writer.append(request.clone()).await.unwrap();
        let plain = vec![record("x", "old-1"), record("y", "old-2")];
        {
            let conn = Connection::open(&path).unwrap();
            let (key, stored): (String, i64) = conn
                .query_row(
                    "SELECT partition_key, length(data) FROM stream_log",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .unwrap();
            assert_eq!(key, LZ4_FRAME);
            let framed = frame(&request).len();
            assert!(
                stored as usize * 3 < framed,
                "{stored} bytes stored for {framed}"
            );
            conn.execute(
                "INSERT INTO stream_log (seq, partition_key, data, appended_at_ms, records)
                 VALUES (52, '', ?1, 0, 2)",
                [frame(&plain)],
            )
            .unwrap();
        }
        let reader = EmbeddedLogReader::new(Db::open(&path).unwrap());
        let batch = reader.read(SHARD_ID, None, 100).await.unwrap();
        let got: Vec<(&str, &str, &[u8])> = batch
            .entries
            .iter()
            .map(|e| (e.sequence.as_str(), e.partition_key.as_str(), &e.data[..]))
            .collect();
        let sequences: Vec<String> = (1..=52).map(|n: i64| n.to_string()).collect();
        let expected: Vec<(&str, &str, &[u8])> = sequences
            .iter()
            .zip(request.iter().chain(&plain))
            .map(|(seq, r)| (seq.as_str(), r.partition_key.as_str(), &r.data[..]))
            .collect();
        assert_eq!(got, expected);

        let compressed = lz4_flex::compress_prepend_size(&frame(&plain));
        assert!(read_frame(LZ4_FRAME, compressed.clone(), 2).is_some());
        assert_eq!(
            read_frame(LZ4_FRAME, compressed[..compressed.len() - 2].to_vec(), 2),
            None
        );
        assert_eq!(
            read_frame(LZ4_FRAME, vec![0xff, 0xff, 0xff, 0x7f, 0, 0], 2),
            None
        );
        assert_eq!(
            read_frame("", compressed, 2),
            None,
            "a compressed frame read as plain"
        );
    }

    /// Requests of 1, 3 and 300 records (more than a row holds) become rows of consecutive
    /// sequences, read back in order from any point, a row cut by `max` included.
    #[tokio::test]
    async fn records_keep_one_sequence_each_across_rows_of_many() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let writer = EmbeddedLogWriter::open(&path, LogTable::Events).unwrap();
        let mut all = Vec::new();
        for size in [1, 3, 300] {
            let request: Vec<StreamRecord> = (0..size)
                .map(|i| {
                    record(
                        &format!("v{}", all.len() + i),
                        &format!("{}", all.len() + i),
                    )
                })
                .collect();
            all.extend(request.clone());
            writer.append(request).await.unwrap();
        }
        let reader = EmbeddedLogReader::new(Db::open(&path).unwrap());
        let read_all = |after: Option<String>, max: usize| {
            let reader = &reader;
            async move {
                let mut out = Vec::new();
                let mut after = after;
                loop {
                    let batch = reader.read(SHARD_ID, after.as_deref(), max).await.unwrap();
                    assert!(batch.entries.len() <= max);
                    let Some(last) = batch.entries.last() else {
                        return out;
                    };
                    after = Some(last.sequence.clone());
                    out.extend(batch.entries);
                }
            }
        };
        for max in [1, 2, 7, 256, 1000] {
            let entries = read_all(None, max).await;
            let sequences: Vec<String> = entries.iter().map(|e| e.sequence.clone()).collect();
            let expected: Vec<String> = (1..=304).map(|n: i64| n.to_string()).collect();
            assert_eq!(sequences, expected, "max {max}");
            for (entry, record) in entries.iter().zip(&all) {
                assert_eq!(
                    (&entry.partition_key, &entry.data),
                    (&record.partition_key, &record.data)
                );
            }
        }
        // From the middle of the 256-record row.
        let rest = read_all(Some("100".into()), 50).await;
        assert_eq!(rest.first().map(|e| e.sequence.as_str()), Some("101"));
        assert_eq!(rest.len(), 204);
        let rows: i64 = Connection::open(&path)
            .unwrap()
            .query_row("SELECT COUNT(*) FROM stream_log", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 4, "1 + 1 + 2 rows");
    }

    /// Rows deleted from the end of the log (by hand) never make their sequences count again:
    /// a checkpoint past them would skip the records that took them.
    #[tokio::test]
    async fn sequences_are_never_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let writer = EmbeddedLogWriter::open(&path, LogTable::Events).unwrap();
        writer
            .append(vec![record("a", "1"), record("a", "2")])
            .await
            .unwrap();
        Connection::open(&path)
            .unwrap()
            .execute("DELETE FROM stream_log", [])
            .unwrap();
        writer.append(vec![record("a", "3")]).await.unwrap();
        let reader = EmbeddedLogReader::new(Db::open(&path).unwrap());
        let batch = reader.read(SHARD_ID, Some("2"), 10).await.unwrap();
        let sequences: Vec<&str> = batch.entries.iter().map(|e| e.sequence.as_str()).collect();
        assert_eq!(sequences, ["3"]);
    }

    /// A log written before rows held several records keeps its sequences (and so every
    /// checkpoint into it), and appends go on after it.
    #[tokio::test]
    async fn a_log_of_one_record_per_row_is_read_and_extended() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            let old = Connection::open(&path).unwrap();
            old.execute_batch(
                "CREATE TABLE stream_log (
                    seq INTEGER PRIMARY KEY AUTOINCREMENT, partition_key TEXT NOT NULL,
                    data BLOB NOT NULL, appended_at_ms INTEGER NOT NULL);
                 INSERT INTO stream_log (partition_key, data, appended_at_ms)
                 VALUES ('a', CAST('one' AS BLOB), 1), ('b', CAST('two' AS BLOB), 2);",
            )
            .unwrap();
        }
        let writer = EmbeddedLogWriter::open(&path, LogTable::Events).unwrap();
        writer
            .append(vec![record("c", "three"), record("d", "four")])
            .await
            .unwrap();
        let reader = EmbeddedLogReader::new(Db::open(&path).unwrap());
        let after_first = reader.read(SHARD_ID, Some("1"), 10).await.unwrap();
        let got: Vec<(&str, &[u8])> = after_first
            .entries
            .iter()
            .map(|e| (e.sequence.as_str(), &e.data[..]))
            .collect();
        assert_eq!(
            got,
            [
                ("2", &b"two"[..]),
                ("3", &b"three"[..]),
                ("4", &b"four"[..])
            ]
        );
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
