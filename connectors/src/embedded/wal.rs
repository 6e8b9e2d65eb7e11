//! Keeping the log's write-ahead log short without stalling the writer.
//!
//! By default SQLite copies the WAL back into the database file (a checkpoint) inside the commit
//! that takes the WAL past 1000 pages: that commit, and every request waiting for it, then also
//! waits for 4 MiB to be copied and for an fsync of the database file. The log writer turns that
//! off for its connection and has a thread with a connection of its own checkpoint in the
//! background instead, while the writer goes on appending.
//!
//! A checkpoint that runs while the writer appends never copies the WAL to its very end, and the
//! WAL starts over from its beginning only after one did: so once the WAL holds `wal_bound`
//! pages, the writer checkpoints itself, between two commits. By then the background has copied
//! nearly everything, and the WAL on disk stays near that bound. Both bounds count the WAL's
//! pages, as SQLite's WAL hook reports them after each commit, not the bytes appended: a commit
//! of one small record writes whole pages (the table's last leaf, the sequence counter's), and
//! counted in bytes, a log of small appends let its WAL grow to 16 times the bound.
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

/// When checkpoints happen, in pages of the WAL (4 KiB each by default).
#[derive(Clone, Copy, Debug)]
pub(super) struct CheckpointBounds {
    /// WAL growth between two background checkpoints (about half SQLite's default of 1000).
    pub background_every: i32,
    /// WAL length at which the writer checkpoints itself.
    pub wal_bound: i32,
}

impl Default for CheckpointBounds {
    fn default() -> Self {
        CheckpointBounds {
            background_every: 512,
            wal_bound: 4096,
        }
    }
}

/// The writer's side: follows the WAL's length and decides when which checkpoint runs.
pub(super) struct WalKeeper {
    bounds: CheckpointBounds,
    /// Wakes the background checkpointer; holds at most one wake-up, which covers all before it.
    nudge: SyncSender<()>,
    /// The WAL's length after the last commit; a smaller one means it started over.
    last_pages: i32,
    /// The WAL's length when the background was last woken.
    nudged_at: i32,
    /// The length at which the writer checkpoints itself: `wal_bound`, raised while a reader
    /// keeps a checkpoint from copying everything, so that not every commit tries again.
    checkpoint_at: i32,
}

impl WalKeeper {
    /// Turns off automatic checkpoints on `writer` and starts the background checkpointer on a
    /// connection of its own to `path`. The checkpointer stops when the keeper is dropped. The
    /// writer must commit on the thread that calls [`committed`](Self::committed).
    pub(super) fn start(
        path: &Path,
        writer: &Connection,
        bounds: CheckpointBounds,
    ) -> Result<Self> {
        let nudge = start_background(path, writer, "retailmind-log-checkpointer", Duration::ZERO)?;
        Ok(WalKeeper {
            bounds,
            nudge,
            last_pages: 0,
            nudged_at: 0,
            checkpoint_at: bounds.wal_bound,
        })
    }

    /// Called by the writer after each commit that succeeded.
    pub(super) fn committed(&mut self, writer: &Connection) {
        let pages = WAL_PAGES.with(Cell::get);
        if pages < self.last_pages {
            // The WAL started over.
            self.nudged_at = 0;
            self.checkpoint_at = self.bounds.wal_bound;
        }
        self.last_pages = pages;
        if pages >= self.checkpoint_at {
            self.nudged_at = pages;
            self.checkpoint_at = match checkpoint(writer) {
                // The next commit starts the WAL over.
                Ok(true) => self.bounds.wal_bound,
                // A reader still uses the WAL's end, or the background's checkpoint is
                // running: try again a little later.
                Ok(false) => pages.saturating_add(self.bounds.background_every),
                Err(e) => {
                    tracing::warn!(error = %e, "checkpoint of the embedded log failed");
                    pages.saturating_add(self.bounds.background_every)
                }
            };
        } else if pages - self.nudged_at >= self.bounds.background_every {
            self.nudged_at = pages;
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
    /// The WAL's length in pages after the last commit of a writer on this thread.
    static WAL_PAGES: Cell<i32> = const { Cell::new(0) };
}

/// SQLite's WAL hook (called after each commit) for the log writer and the shared writer: keeps
/// the WAL's length for [`WalKeeper::committed`] and [`SharedWal::run`], which run on the same
/// thread as the commit.
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

/// Turns off automatic checkpoints on `writer`, has SQLite note the WAL's length after each of
/// its commits ([`WAL_PAGES`]), and starts a thread, named `name`, that checkpoints on a
/// connection of its own to `path` whenever the returned sender wakes it, at most once per
/// `pause`. It stops when the sender is dropped.
fn start_background(
    path: &Path,
    writer: &Connection,
    name: &str,
    pause: Duration,
) -> Result<SyncSender<()>> {
    writer
        .pragma_update(None, "wal_autocheckpoint", 0)
        .map_err(|e| sqlite_err("configure", e))?;
    // After turning automatic checkpoints off, which replaces the WAL hook.
    writer.wal_hook(Some(note_wal_pages));
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

    /// Appends of one small record each, which LZ4 cannot shrink: each commit writes whole
    /// pages for a few hundred bytes, and the WAL stays near its bound in pages all the same.
    #[tokio::test]
    async fn the_wal_stays_near_its_bound_and_every_record_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.db");
        let bounds = CheckpointBounds {
            // Only the writer's own checkpoints, which this test is about.
            background_every: i32::MAX,
            wal_bound: 256,
        };
        let writer = EmbeddedLogWriter::open_with(&path, LogTable::Events, bounds, None).unwrap();
        let appends: i64 = 600;
        let record = |n: i64| StreamRecord {
            partition_key: format!("a-{n}"),
            data: Bytes::from((0..300).map(|_| fastrand::u8(..)).collect::<Vec<u8>>()),
        };
        for n in 0..appends {
            // Two records, so the row is a compressed frame as a request's are.
            writer.append(vec![record(n), record(n)]).await.unwrap();
        }
        // About 2.4 pages a commit: 5.8 MB of WAL without a checkpoint, as it was when the
        // bound counted the bytes appended (about 360 KB of records, which a bound of 1 MiB
        // in bytes never reached).
        let wal = std::fs::metadata(dir.path().join("log.db-wal"))
            .unwrap()
            .len();
        assert!(wal < 2 << 20, "the WAL grew to {wal} bytes");
        let conn = Connection::open(&path).unwrap();
        let rows: i64 = conn
            .query_row("SELECT SUM(records) FROM stream_log", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, appends * 2);
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
