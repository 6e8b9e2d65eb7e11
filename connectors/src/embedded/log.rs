//! The embedded stream: an ordered log in SQLite with one shard.
//!
//! Every record has a sequence number, one more than the record before it (a damaged row's
//! bytes are read as one record, at the row's last sequence). A row of
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
//!
//! The log keeps records for a retention period, as a Kinesis stream does: the writer deletes
//! older rows a step at a time between its commits (see [`Trim`]). A reader whose checkpoint
//! falls in what was deleted goes on from the oldest record left, and says how many it missed.

use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::{mpsc, oneshot};

use super::db::{open_connection, sqlite_err, Db};
use super::wal::{CheckpointBounds, WalKeeper};
use crate::clock::now_ms;
use crate::config::{retention, DEFAULT_STREAM_RETENTION_HOURS};
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

/// Counter of records deleted past the retention period before the processor read them.
pub const EXPIRED_UNREAD: &str = "stream_records_expired_unread_total";

/// How often the writer looks for rows past retention while it found none left to delete: a
/// retention counts in hours, and the look (a bisection of the log) reads pages no one else
/// needs.
const TRIM_EVERY: Duration = Duration::from_secs(60);
/// How long one step may delete rows: a step holds up the next commit. Deleting a row of a
/// request's records costs 7-15 µs (its page freed, the b-tree mended), as much as appending
/// it; steps at every commit while rows are due keep up with any rate the log takes in.
const TRIM_STEP_TIME: Duration = Duration::from_millis(2);
/// Rows deleted at a time within a step, between two looks at the clock: a row of 256 large
/// records spans overflow pages, each read to be freed.
const TRIM_CHUNK_ROWS: i64 = 16;

/// Deleting the event log's rows past their retention, from the writer thread.
pub(super) struct Trim {
    pub retention: Duration,
    pub step_time: Duration,
    pub chunk_rows: i64,
}

impl Trim {
    pub(super) fn after(retention: Duration) -> Self {
        Trim {
            retention,
            step_time: TRIM_STEP_TIME,
            chunk_rows: TRIM_CHUNK_ROWS,
        }
    }
}

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
    /// A writer to `table`; the event log keeps records for [`DEFAULT_STREAM_RETENTION_HOURS`],
    /// the dead letters for good.
    pub fn open(path: &Path, table: LogTable) -> Result<Self> {
        match table {
            LogTable::Events => {
                Self::open_retaining(path, retention(DEFAULT_STREAM_RETENTION_HOURS))
            }
            LogTable::DeadLetters => {
                Self::open_with(path, table, CheckpointBounds::default(), None)
            }
        }
    }

    /// A writer to the event log that deletes records older than `retention`.
    pub fn open_retaining(path: &Path, retention: Duration) -> Result<Self> {
        Self::open_with(
            path,
            LogTable::Events,
            CheckpointBounds::default(),
            Some(Trim::after(retention)),
        )
    }

    pub(super) fn open_with(
        path: &Path,
        table: LogTable,
        bounds: CheckpointBounds,
        trim: Option<Trim>,
    ) -> Result<Self> {
        let conn = open_connection(path)?;
        let wal = WalKeeper::start(path, &conn, bounds)?;
        let (tx, rx) = mpsc::channel(PENDING_REQUESTS);
        let trimmer = trim.map(Trimmer::new);
        thread::Builder::new()
            .name("retailmind-log-writer".into())
            .spawn(move || write_loop(conn, wal, table, trimmer, rx))
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
    mut trimmer: Option<Trimmer>,
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
        // After the answers: a checkpoint the writer runs itself, or a trim, delays only the
        // next group. After a failed commit (the file locked or full) neither is tried.
        if outcome.is_ok() {
            if let Some(trimmer) = &mut trimmer {
                trimmer.when_due(&mut conn);
            }
            wal.committed(&conn);
        }
    }
}

/// The writer's side of [`Trim`], run after its commits (an idle log is not trimmed; it does
/// not grow either): every [`TRIM_EVERY`] it finds the end of the rows past retention, without
/// the write lock, then deletes up to there a step after each commit until none is left.
struct Trimmer {
    trim: Trim,
    next_look: Instant,
    /// The last row to delete, while some are left. Rows only age, so it stays right.
    due_through: Option<i64>,
}

impl Trimmer {
    fn new(trim: Trim) -> Self {
        Trimmer {
            trim,
            next_look: Instant::now(),
            due_through: None,
        }
    }

    fn when_due(&mut self, conn: &mut Connection) {
        if self.due_through.is_none() {
            let now = Instant::now();
            if now < self.next_look {
                return;
            }
            self.next_look = now + TRIM_EVERY;
            let retention_ms = i64::try_from(self.trim.retention.as_millis()).unwrap_or(i64::MAX);
            match last_appended_before(conn, now_ms().saturating_sub(retention_ms)) {
                Ok(found) => self.due_through = found,
                Err(e) => {
                    tracing::warn!(error = %e, "looking for event log rows past retention failed")
                }
            }
        }
        let Some(bound) = self.due_through else {
            return;
        };
        match trim_step(conn, bound, self.trim.step_time, self.trim.chunk_rows) {
            Ok(step) => {
                if !step.more {
                    self.due_through = None;
                }
                if step.rows > 0 {
                    tracing::debug!(rows = step.rows, "deleted event log rows past retention");
                }
            }
            Err(e) => {
                self.due_through = None;
                tracing::warn!(error = %e, "deleting event log rows past retention failed");
            }
        }
    }
}

struct TrimStep {
    /// Rows deleted.
    rows: usize,
    /// Rows past retention are left.
    more: bool,
}

/// Deletes the rows up to `bound`, oldest first, `chunk_rows` at a time until none is left or
/// `step_time` has passed, in one transaction.
fn trim_step(
    conn: &mut Connection,
    bound: i64,
    step_time: Duration,
    chunk_rows: i64,
) -> rusqlite::Result<TrimStep> {
    let started = Instant::now();
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut rows = 0;
    let more = {
        let mut delete = tx.prepare_cached(
            // A range of the primary key: SQLite deletes it leaf by leaf, where `seq IN (...)`
            // looked up every row again (19 against 7 µs a row).
            "DELETE FROM stream_log WHERE seq <= MIN(?1, COALESCE(
                 (SELECT seq FROM stream_log ORDER BY seq LIMIT 1 OFFSET ?2 - 1), ?1))",
        )?;
        loop {
            let deleted = delete.execute(params![bound, chunk_rows])?;
            rows += deleted;
            if (deleted as i64) < chunk_rows {
                break false;
            }
            if started.elapsed() >= step_time {
                break tx.query_row(
                    "SELECT EXISTS (SELECT 1 FROM stream_log WHERE seq <= ?1)",
                    [bound],
                    |r| r.get(0),
                )?;
            }
        }
    };
    tx.commit()?;
    Ok(TrimStep { rows, more })
}

/// The `seq` of the last row appended before `cutoff_ms`, where the first row appended at or
/// after it begins; `None` when the oldest row is not that old.
///
/// `appended_at_ms` has no index (one would cost every append), but it grows with `seq`: each
/// commit is stamped with the time it ran. So the rows past retention are the log's oldest ones,
/// and their end is found by bisecting `seq` with point lookups, not by scanning the log. A
/// clock set back makes the boundary approximate, never a scan.
fn last_appended_before(conn: &Connection, cutoff_ms: i64) -> rusqlite::Result<Option<i64>> {
    let mut first_from = conn.prepare_cached(
        "SELECT seq, appended_at_ms FROM stream_log WHERE seq >= ?1 ORDER BY seq LIMIT 1",
    )?;
    let mut row_from = |from: i64| -> rusqlite::Result<Option<(i64, i64)>> {
        first_from
            .query_row([from], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
    };
    let Some((oldest, appended)) = row_from(i64::MIN)? else {
        return Ok(None);
    };
    if appended >= cutoff_ms {
        return Ok(None);
    }
    let newest: i64 = conn.query_row("SELECT MAX(seq) FROM stream_log", [], |r| r.get(0))?;
    // `old` is a row appended before the cutoff; the first row at or after `young` is not, or
    // there is none.
    let (mut old, mut young) = (oldest, newest.saturating_add(1));
    while young - old > 1 {
        let probe = old + (young - old) / 2;
        match row_from(probe)? {
            Some((seq, appended)) if appended < cutoff_ms && seq < young => old = seq,
            _ => young = probe,
        }
    }
    Ok(Some(old))
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

/// The records of a row of `count` records, compressed or not as its `partition_key` says; the
/// row's bytes as they are when it is damaged.
fn read_frame(
    partition_key: &str,
    data: Vec<u8>,
    count: usize,
) -> std::result::Result<Vec<(String, Bytes)>, Bytes> {
    match partition_key {
        LZ4_FRAME => match decompress(&data) {
            Some(frame) => unframe(&Bytes::from(frame), count).ok_or_else(|| Bytes::from(data)),
            None => Err(Bytes::from(data)),
        },
        _ => {
            let blob = Bytes::from(data);
            unframe(&blob, count).ok_or(blob)
        }
    }
}

fn decompress(data: &[u8]) -> Option<Vec<u8>> {
    let (size, compressed) = lz4_flex::block::uncompressed_size(data).ok()?;
    if size > compressed.len().saturating_mul(MAX_LZ4_RATIO) + 16 {
        return None;
    }
    lz4_flex::decompress(compressed, size).ok()
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

/// Records between a checkpoint `after` and the `first` record a read found were deleted past
/// retention before anyone read them: lost to this consumer, which goes on from `first`.
/// `reported` is the end of the last gap reported, so that reading it again (a batch retried
/// from its checkpoint, a read ahead dropped, perhaps further trimmed since) counts only what
/// was not counted. Returns the records it reported.
fn report_expired(reported: &AtomicI64, after: i64, first: i64) -> i64 {
    // A log read from its start (`after` 0) has no checkpoint to miss records from.
    if after <= 0 || first <= after.saturating_add(1) {
        return 0;
    }
    let counted_before = reported.fetch_max(first, Ordering::Relaxed);
    let missed = first - (after + 1).max(counted_before);
    if missed > 0 {
        tracing::warn!(
            after,
            first,
            missed,
            "records of the event log were deleted past its retention before they were read; \
             raise backend.stream_retention_hours or keep the processor running"
        );
        metrics::counter!(EXPIRED_UNREAD).increment(missed as u64);
    }
    missed
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
    /// See [`report_expired`].
    expired_reported: Arc<AtomicI64>,
}

impl EmbeddedLogReader {
    pub fn new(db: Db) -> Self {
        EmbeddedLogReader {
            db,
            expired_reported: Arc::new(AtomicI64::new(0)),
        }
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
        let expired_reported = Arc::clone(&self.expired_reported);
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
                // Where the records this read found begin, damaged rows included.
                let mut found_from = None;
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
                    // A row's count out of range is damage too: it cannot say where the
                    // row begins.
                    let frame = 1..=RECORDS_PER_ROW as i64;
                    let begins = if frame.contains(&count) {
                        last_seq - count + 1
                    } else {
                        after + 1
                    };
                    found_from.get_or_insert(begins.max(after + 1));
                    let unframed = match count {
                        1 => Ok(vec![(partition_key, Bytes::from(data))]),
                        n if frame.contains(&n) => read_frame(&partition_key, data, n as usize),
                        _ => Err(Bytes::from(data)),
                    };
                    let (first_seq, records) = match unframed {
                        Ok(records) => (begins, records),
                        // Stopping here would stop the shard for good. Its bytes go on as
                        // one record at the row's last sequence, which does not decode as
                        // an event: the processor keeps it under the lake's `errors/`.
                        Err(damaged) => {
                            tracing::warn!(
                                row = last_seq,
                                records = count,
                                "a row of the event log is damaged: its bytes go on as one \
                                 undecodable record"
                            );
                            (last_seq, vec![(String::new(), damaged)])
                        }
                    };
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
                if let Some(first) = found_from {
                    report_expired(&expired_reported, after, first);
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
            // Stamped now: the writer deletes rows older than its retention.
            conn.execute(
                "INSERT INTO stream_log (seq, partition_key, data, appended_at_ms, records)
                 VALUES (52, '', ?1, ?2, 2)",
                params![frame(&plain), now_ms()],
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
        assert!(read_frame(LZ4_FRAME, compressed.clone(), 2).is_ok());
        let cut = compressed[..compressed.len() - 2].to_vec();
        assert_eq!(read_frame(LZ4_FRAME, cut.clone(), 2), Err(Bytes::from(cut)));
        let huge = vec![0xff, 0xff, 0xff, 0x7f, 0, 0];
        assert_eq!(
            read_frame(LZ4_FRAME, huge.clone(), 2),
            Err(Bytes::from(huge))
        );
        assert_eq!(
            read_frame("", compressed.clone(), 2),
            Err(Bytes::from(compressed)),
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

    /// A damaged row does not stop the log: its bytes are read as one record at the row's last
    /// sequence (which the processor keeps under the lake's `errors/`), and the rows after it as
    /// they are.
    #[tokio::test]
    async fn a_damaged_row_is_read_as_one_record_and_the_log_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let writer = EmbeddedLogWriter::open(&path, LogTable::Events).unwrap();
        for first in [1, 4, 7] {
            let request = (first..first + 3)
                .map(|n| record("k", &n.to_string()))
                .collect();
            writer.append(request).await.unwrap();
        }
        let damaged = b"\x10\x00\x00\x00not lz4".to_vec();
        Connection::open(&path)
            .unwrap()
            .execute("UPDATE stream_log SET data = ?1 WHERE seq = 6", [&damaged])
            .unwrap();
        let reader = EmbeddedLogReader::new(Db::open(&path).unwrap());
        for after in [None, Some("4")] {
            let batch = reader.read(SHARD_ID, after, 100).await.unwrap();
            let got: Vec<(&str, &[u8])> = batch
                .entries
                .iter()
                .map(|e| (e.sequence.as_str(), &e.data[..]))
                .collect();
            let mut expected: Vec<(&str, &[u8])> = vec![
                ("1", b"1"),
                ("2", b"2"),
                ("3", b"3"),
                ("6", &damaged),
                ("7", b"7"),
                ("8", b"8"),
                ("9", b"9"),
            ];
            if after.is_some() {
                expected.drain(..3);
            }
            assert_eq!(got, expected, "after {after:?}");
        }
        assert_eq!(
            reader.expired_reported.load(Ordering::Relaxed),
            0,
            "a damaged row is not a gap"
        );
        // A damaged record count, too.
        Connection::open(&path)
            .unwrap()
            .execute("UPDATE stream_log SET records = -7 WHERE seq = 9", [])
            .unwrap();
        let batch = reader.read(SHARD_ID, Some("6"), 100).await.unwrap();
        let last = &batch.entries[..];
        assert_eq!(last.len(), 1);
        assert_eq!(last[0].sequence, "9");
        assert_eq!(reader.expired_reported.load(Ordering::Relaxed), 0);
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
                    data BLOB NOT NULL, appended_at_ms INTEGER NOT NULL);",
            )
            .unwrap();
            // Stamped now: the writer deletes rows older than its retention.
            old.execute(
                "INSERT INTO stream_log (partition_key, data, appended_at_ms)
                 VALUES ('a', CAST('one' AS BLOB), ?1), ('b', CAST('two' AS BLOB), ?1)",
                [now_ms()],
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

    #[test]
    fn a_gap_is_reported_once_however_often_it_is_read() {
        let reported = AtomicI64::new(0);
        assert_eq!(report_expired(&reported, 0, 10), 0, "no checkpoint yet");
        assert_eq!(report_expired(&reported, 3, 4), 0, "no gap");
        assert_eq!(report_expired(&reported, 3, 6), 2);
        assert_eq!(report_expired(&reported, 3, 6), 0, "read again");
        assert_eq!(report_expired(&reported, 4, 6), 0, "the same gap's end");
        assert_eq!(
            report_expired(&reported, 3, 10),
            4,
            "trimmed further: 6 to 9"
        );
        assert_eq!(report_expired(&reported, 12, 16), 3, "a later one");
    }

    /// The end of the rows appended before a cutoff is found by bisection, across gaps in the
    /// sequences, for every cutoff: before all rows, between any two, after all.
    #[test]
    fn the_rows_past_a_cutoff_are_found_without_a_scan() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(super::super::db::SCHEMA).unwrap();
        assert_eq!(last_appended_before(&conn, i64::MAX).unwrap(), None);
        // Rows of 1 to 3 records at sequences 1, 3, 6, ...; two rows share each time.
        let mut rows = Vec::new();
        let mut seq = 0;
        for i in 0..301_i64 {
            seq += i % 3 + 1;
            rows.push((seq, 1_000 + i / 2 * 10));
            conn.execute(
                "INSERT INTO stream_log (seq, partition_key, data, appended_at_ms, records)
                 VALUES (?1, 'k', x'00', ?2, ?3)",
                params![seq, 1_000 + i / 2 * 10, i % 3 + 1],
            )
            .unwrap();
        }
        for cutoff in (990..2_520).step_by(5) {
            let expected = rows.iter().rev().find(|(_, at)| *at < cutoff).map(|r| r.0);
            assert_eq!(
                last_appended_before(&conn, cutoff).unwrap(),
                expected,
                "cutoff {cutoff}"
            );
        }
    }

    #[test]
    fn a_trim_step_deletes_at_most_its_rows_and_says_whether_more_are_due() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(super::super::db::SCHEMA).unwrap();
        for at in [10, 20, 30, 40, 50] {
            conn.execute(
                LogTable::Events.insert_sql(),
                params!["k", b"{}".to_vec(), at],
            )
            .unwrap();
        }
        // Without time for a second chunk, a step deletes one.
        let step = trim_step(&mut conn, 4, Duration::ZERO, 3).unwrap();
        assert_eq!((step.rows, step.more), (3, true));
        let step = trim_step(&mut conn, 4, Duration::ZERO, 3).unwrap();
        assert_eq!((step.rows, step.more), (1, false));
        let step = trim_step(&mut conn, 4, Duration::ZERO, 3).unwrap();
        assert_eq!((step.rows, step.more), (0, false));
        // With time, chunk after chunk until none is due.
        for at in [60, 70, 80, 90, 100] {
            conn.execute(
                LogTable::Events.insert_sql(),
                params!["k", b"{}".to_vec(), at],
            )
            .unwrap();
        }
        let step = trim_step(&mut conn, 9, Duration::from_secs(60), 2).unwrap();
        assert_eq!((step.rows, step.more), (5, false), "5 to 9");
        let left: i64 = conn
            .query_row("SELECT seq FROM stream_log", [], |r| r.get(0))
            .unwrap();
        assert_eq!(left, 10);
    }

    /// The writer deletes rows past retention a step at a time, between its commits; records
    /// keep their sequences, and a reader whose checkpoint was deleted goes on from the oldest
    /// record left.
    #[tokio::test]
    async fn the_writer_deletes_rows_past_retention_and_readers_go_on_after_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let db = Db::open(&path).unwrap();
        let hour_ago = now_ms() - 3_600_000;
        append_at(&db, &[hour_ago - 3, hour_ago - 2, hour_ago - 1]).await;
        let recent = now_ms() - 60_000;
        append_at(&db, &[recent]).await;
        let writer = EmbeddedLogWriter::open_with(
            &path,
            LogTable::Events,
            CheckpointBounds::default(),
            Some(Trim {
                retention: Duration::from_secs(30 * 60),
                step_time: Duration::ZERO,
                chunk_rows: 2,
            }),
        )
        .unwrap();
        let rows = || -> Vec<i64> {
            let conn = Connection::open(&path).unwrap();
            let mut stmt = conn
                .prepare("SELECT seq FROM stream_log ORDER BY seq")
                .unwrap();
            let seqs = stmt.query_map([], |r| r.get(0)).unwrap();
            seqs.map(|s| s.unwrap()).collect()
        };
        // Each append's commit comes after the previous append's trim step: two steps (two
        // rows, then one) have run when the third append is answered.
        for data in ["5", "6", "7"] {
            writer.append(vec![record("a", data)]).await.unwrap();
        }
        assert_eq!(rows(), [4, 5, 6, 7]);

        let reader = EmbeddedLogReader::new(db);
        for checkpoint in [None, Some("1"), Some("3")] {
            let batch = reader.read(SHARD_ID, checkpoint, 10).await.unwrap();
            let sequences: Vec<&str> = batch.entries.iter().map(|e| e.sequence.as_str()).collect();
            assert_eq!(sequences, ["4", "5", "6", "7"], "after {checkpoint:?}");
        }
        assert_eq!(
            reader.expired_reported.load(Ordering::Relaxed),
            4,
            "2 and 3 reported missed, up to 4"
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
