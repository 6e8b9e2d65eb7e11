//! Keeping the log's write-ahead log short without stalling the writer.
//!
//! By default SQLite copies the WAL back into the database file (a checkpoint) inside the commit
//! that takes the WAL past 1000 pages: that commit, and every request waiting for it, then also
//! waits for 4 MiB to be copied and for an fsync of the database file. The log writer turns that
//! off for its connection and has a thread with a connection of its own checkpoint in the
//! background instead, while the writer goes on appending.
//!
//! A checkpoint that runs while the writer appends never copies the WAL to its very end, and the
//! WAL starts over from its beginning only after one did: so once the writer has appended
//! `wal_bound` bytes since the last such restart, it checkpoints itself, between two commits. By
//! then the background has copied nearly everything, and the WAL on disk stays near that bound.
//!
//! The connection the other embedded edges share (sessions, checkpoints, leases, models) gets the
//! same treatment from [`SharedWal`]: in the processor's end-to-end benchmark the commit of a
//! batch's sessions took 7.3 ms on average with SQLite's checkpoints inside it (copying back the
//! log's records too), 4.9 ms without.

use std::cell::Cell;
use std::ffi::c_int;
use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread;
use std::time::Duration;

use rusqlite::hooks::Wal;
use rusqlite::Connection;

use super::db::{open_connection, sqlite_err};
use crate::error::{ConnectorError, Result};

/// When checkpoints happen, in bytes of rows appended (frames as stored, compressed).
#[derive(Clone, Copy, Debug)]
pub(super) struct CheckpointBounds {
    /// Between two background checkpoints (about SQLite's default of 1000 pages).
    pub background_every: usize,
    /// Since the WAL last started over, before the writer checkpoints itself.
    pub wal_bound: usize,
}

impl Default for CheckpointBounds {
    fn default() -> Self {
        CheckpointBounds {
            background_every: 2 << 20,
            wal_bound: 16 << 20,
        }
    }
}

/// The writer's side: counts what it appended and decides when which checkpoint runs.
pub(super) struct WalKeeper {
    bounds: CheckpointBounds,
    /// Wakes the background checkpointer; holds at most one wake-up, which covers all before it.
    nudge: SyncSender<()>,
    since_nudge: usize,
    since_restart: usize,
}

impl WalKeeper {
    /// Turns off automatic checkpoints on `writer` and starts the background checkpointer on a
    /// connection of its own to `path`. The checkpointer stops when the keeper is dropped.
    pub(super) fn start(
        path: &Path,
        writer: &Connection,
        bounds: CheckpointBounds,
    ) -> Result<Self> {
        let nudge = start_background(path, writer, "retailmind-log-checkpointer", Duration::ZERO)?;
        Ok(WalKeeper {
            bounds,
            nudge,
            since_nudge: 0,
            since_restart: 0,
        })
    }

    /// Called by the writer after each commit, with the bytes of the records it committed.
    pub(super) fn committed(&mut self, writer: &Connection, bytes: usize) {
        self.since_nudge += bytes;
        self.since_restart += bytes;
        if self.since_restart >= self.bounds.wal_bound {
            self.since_nudge = 0;
            match checkpoint(writer) {
                Ok(true) => self.since_restart = 0,
                // A reader still uses the WAL's end: try again a little later.
                Ok(false) => self.since_restart -= self.bounds.background_every,
                Err(e) => {
                    tracing::warn!(error = %e, "checkpoint of the embedded log failed");
                    self.since_restart -= self.bounds.background_every;
                }
            }
        } else if self.since_nudge >= self.bounds.background_every {
            self.since_nudge = 0;
            // Full: a wake-up is pending already, and its checkpoint will copy this too.
            let _ = self.nudge.try_send(());
        }
    }
}

/// Background checkpoints for a connection whose writes come from several edges, in
/// transactions of any size: every call that committed wakes the background (at most one
/// checkpoint per [`SharedWal::COALESCE`]). The WAL starts over only when a write begins with all
/// of it copied back, which a writer that never pauses does not give the background. The log
/// writer sees to that for its own appends; should the WAL still pass
/// [`SharedWal::BOUND_PAGES`] (twice the log's bound: the log writer is not restarting it, or is
/// in no process at all), the caller whose commit passed it checkpoints before its answer, with
/// little left to copy. That is the one time a caller waits for a checkpoint.
pub(super) struct SharedWal {
    nudge: SyncSender<()>,
    /// The WAL length past which the next commit checkpoints; raised while a reader keeps the
    /// checkpoint from copying everything, so that not every commit tries again.
    inline_above: AtomicI32,
}

thread_local! {
    /// The WAL's length in pages after the last commit of a shared writer on this thread.
    static WAL_PAGES: Cell<i32> = const { Cell::new(0) };
}

/// SQLite's WAL hook (called after each commit) for the shared writer: keeps the WAL's length for [`SharedWal::run`],
/// which runs on the same thread as the commit.
fn note_wal_pages(_: &Wal, pages: c_int) -> rusqlite::Result<()> {
    WAL_PAGES.with(|p| p.set(pages));
    Ok(())
}

impl SharedWal {
    /// 32 MiB of 4 KiB pages, twice the log writer's bound.
    const BOUND_PAGES: i32 = 8192;
    /// Calls within this much of a background checkpoint share the next one: a checkpoint
    /// fsyncs the database file, and every 20 ms cost the processor more CPU than it saved.
    const COALESCE: Duration = Duration::from_millis(250);

    /// Turns off automatic checkpoints on `writer` and starts the background checkpointer on a
    /// connection of its own to `path`; it stops when this is dropped.
    pub(super) fn start(path: &Path, writer: &Connection) -> Result<Self> {
        let nudge = start_background(path, writer, "retailmind-db-checkpointer", Self::COALESCE)?;
        // After turning automatic checkpoints off, which replaces the WAL hook.
        writer.wal_hook(Some(note_wal_pages));
        Ok(SharedWal {
            nudge,
            inline_above: AtomicI32::new(Self::BOUND_PAGES),
        })
    }

    /// Runs `f` with the writer, then checkpoints or wakes the background as its commits left
    /// the WAL.
    pub(super) fn run<R>(
        &self,
        writer: &mut Connection,
        f: impl FnOnce(&mut Connection) -> R,
    ) -> R {
        WAL_PAGES.with(|p| p.set(0));
        let out = f(writer);
        let pages = WAL_PAGES.with(Cell::get);
        if pages == 0 {
            return out;
        }
        if pages > self.inline_above.load(Ordering::Relaxed) {
            let next = match passive_checkpoint(writer) {
                // The next write starts the WAL over.
                Ok(Checkpointed::All) => Self::BOUND_PAGES,
                // The background's checkpoint is running: again after the next commit.
                Ok(Checkpointed::Busy) => pages,
                // A reader still uses the WAL's end: again once it grew by another bound.
                Ok(Checkpointed::Part) => pages.saturating_add(Self::BOUND_PAGES),
                Err(e) => {
                    tracing::warn!(error = %e, "checkpoint failed");
                    pages.saturating_add(Self::BOUND_PAGES)
                }
            };
            self.inline_above.store(next, Ordering::Relaxed);
        }
        // Full: a wake-up is pending already, and its checkpoint will copy this too.
        let _ = self.nudge.try_send(());
        out
    }
}

/// Turns off automatic checkpoints on `writer` and starts a thread, named `name`, that
/// checkpoints on a connection of its own to `path` whenever the returned sender wakes it, at
/// most once per `pause`. It stops when the sender is dropped.
fn start_background(
    path: &Path,
    writer: &Connection,
    name: &str,
    pause: Duration,
) -> Result<SyncSender<()>> {
    writer
        .pragma_update(None, "wal_autocheckpoint", 0)
        .map_err(|e| sqlite_err("configure", e))?;
    let conn = open_connection(path)?;
    let (nudge, nudged) = sync_channel(1);
    thread::Builder::new()
        .name(name.into())
        .spawn(move || checkpoint_loop(&conn, &nudged, pause))
        .map_err(|e| ConnectorError::unavailable("sqlite", e))?;
    Ok(nudge)
}

fn checkpoint_loop(conn: &Connection, nudged: &Receiver<()>, pause: Duration) {
    while nudged.recv().is_ok() {
        if let Err(e) = checkpoint(conn) {
            tracing::warn!(error = %e, "background checkpoint of the embedded database failed");
        }
        if !pause.is_zero() {
            thread::sleep(pause);
        }
    }
}

/// A passive checkpoint (never waits for readers or the writer); `true` when it copied the whole
/// WAL back, so that the next write starts the WAL over.
fn checkpoint(conn: &Connection) -> rusqlite::Result<bool> {
    Ok(passive_checkpoint(conn)? == Checkpointed::All)
}

/// How far a passive checkpoint got.
#[derive(Debug, PartialEq, Eq)]
enum Checkpointed {
    /// The whole WAL is in the database file.
    All,
    /// Not all: a reader still uses the WAL's end.
    Part,
    /// Not at all: another connection's checkpoint was running.
    Busy,
}

fn passive_checkpoint(conn: &Connection) -> rusqlite::Result<Checkpointed> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
        let busy: i64 = row.get(0)?;
        let frames: i64 = row.get(1)?;
        let copied: i64 = row.get(2)?;
        Ok(match (busy, frames == copied) {
            (0, true) => Checkpointed::All,
            (0, false) => Checkpointed::Part,
            _ => Checkpointed::Busy,
        })
    })
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::embedded::log::{EmbeddedLogWriter, LogTable};
    use crate::stream::{EventSink, StreamRecord};

    #[tokio::test]
    async fn the_wal_stays_near_its_bound_and_every_record_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.db");
        let bounds = CheckpointBounds {
            background_every: 64 << 10,
            wal_bound: 1 << 20,
        };
        let writer = EmbeddedLogWriter::open_with(&path, LogTable::Events, bounds).unwrap();
        let record = StreamRecord {
            partition_key: "a-1".into(),
            data: Bytes::from(vec![b'x'; 1000]),
        };
        let appends = 80;
        for _ in 0..appends {
            writer.append(vec![record.clone(); 100]).await.unwrap();
        }
        // 8 MB appended; the WAL started over at least every 1 MiB (plus one commit's worth
        // past it, and the page headers).
        let wal = std::fs::metadata(dir.path().join("log.db-wal"))
            .unwrap()
            .len();
        assert!(wal < 3 << 20, "the WAL grew to {wal} bytes");
        let conn = Connection::open(&path).unwrap();
        let rows: i64 = conn
            .query_row("SELECT SUM(records) FROM stream_log", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, appends * 100);
    }

    #[tokio::test]
    async fn the_shared_connections_wal_stays_bounded_when_the_background_never_finds_it_idle() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shared.db");
        let db = crate::embedded::db::Db::open_writer(&path).unwrap();
        db.call(|conn| {
            conn.execute_batch("CREATE TABLE blobs (b BLOB NOT NULL)")
                .unwrap();
            Ok(())
        })
        .await
        .unwrap();
        // 128 MiB in 64 KiB transactions, four times the bound.
        let writes = 2048;
        for _ in 0..writes {
            db.call(|conn| {
                conn.execute("INSERT INTO blobs (b) VALUES (zeroblob(65536))", [])
                    .unwrap();
                Ok(())
            })
            .await
            .unwrap();
        }
        let wal = std::fs::metadata(dir.path().join("shared.db-wal"))
            .unwrap()
            .len();
        // The bound (32 MiB of pages, with their frame headers) and what was committed while a
        // background checkpoint held the writer's own off; far from all 128 MiB.
        assert!(wal < 48 << 20, "the WAL grew to {wal} bytes");
        let rows: i64 = db
            .call(|conn| {
                Ok(conn
                    .query_row("SELECT COUNT(*) FROM blobs", [], |r| r.get(0))
                    .unwrap())
            })
            .await
            .unwrap();
        assert_eq!(rows, writes);
    }
}
