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

use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread;

use rusqlite::Connection;

use super::db::{open_connection, sqlite_err};
use crate::error::{ConnectorError, Result};

/// When checkpoints happen, in bytes of records appended.
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
        writer
            .pragma_update(None, "wal_autocheckpoint", 0)
            .map_err(|e| sqlite_err("configure", e))?;
        let conn = open_connection(path)?;
        let (nudge, nudged) = sync_channel(1);
        thread::Builder::new()
            .name("retailmind-log-checkpointer".into())
            .spawn(move || checkpoint_loop(&conn, &nudged))
            .map_err(|e| ConnectorError::unavailable("sqlite", e))?;
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

fn checkpoint_loop(conn: &Connection, nudged: &Receiver<()>) {
    while nudged.recv().is_ok() {
        if let Err(e) = checkpoint(conn) {
            tracing::warn!(error = %e, "background checkpoint of the embedded log failed");
        }
    }
}

/// A passive checkpoint (never waits for readers or the writer); `true` when it copied the whole
/// WAL back, so that the next write starts the WAL over.
fn checkpoint(conn: &Connection) -> rusqlite::Result<bool> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
        let busy: i64 = row.get(0)?;
        let frames: i64 = row.get(1)?;
        let copied: i64 = row.get(2)?;
        Ok(busy == 0 && frames == copied)
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
}
