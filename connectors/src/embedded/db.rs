//! The embedded SQLite database: schema, and a small async façade over blocking rusqlite calls.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::Connection;

use super::wal::SharedWal;
use crate::error::{ConnectorError, Result};

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS stream_log (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    partition_key  TEXT    NOT NULL,
    data           BLOB    NOT NULL,
    appended_at_ms INTEGER NOT NULL,
    records        INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS dead_letters (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    partition_key  TEXT    NOT NULL,
    data           BLOB    NOT NULL,
    appended_at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS checkpoints (
    consumer      TEXT    NOT NULL,
    shard_id      TEXT    NOT NULL,
    sequence      TEXT    NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    PRIMARY KEY (consumer, shard_id)
);
CREATE TABLE IF NOT EXISTS leases (
    consumer         TEXT    NOT NULL,
    shard_id         TEXT    NOT NULL,
    owner            TEXT,
    counter          INTEGER NOT NULL,
    pending_owner    TEXT,
    parent_shard_ids TEXT    NOT NULL,
    shard_ended      INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (consumer, shard_id)
);
CREATE TABLE IF NOT EXISTS sessions (
    anonymous_id  TEXT    NOT NULL,
    start_ms      INTEGER NOT NULL,
    session_id    TEXT    NOT NULL,
    user_id       TEXT,
    end_ms        INTEGER NOT NULL,
    event_count   INTEGER NOT NULL,
    page_views    INTEGER NOT NULL,
    revenue_minor INTEGER NOT NULL,
    version       INTEGER NOT NULL,
    snapshot      TEXT    NOT NULL,
    currency      TEXT,
    PRIMARY KEY (anonymous_id, start_ms)
);
CREATE TABLE IF NOT EXISTS models (
    name          TEXT    PRIMARY KEY,
    version       INTEGER NOT NULL,
    snapshot      BLOB    NOT NULL,
    saved_at_ms   INTEGER NOT NULL,
    positions     TEXT    NOT NULL DEFAULT '{}',
    positions_version INTEGER NOT NULL DEFAULT 0
);
";

/// Opens (and creates) the database file with settings fit for one writer and several readers
/// in other processes: WAL, a busy timeout, and full fsync on commit because an acknowledged
/// event must survive a crash.
pub fn open_connection(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path).map_err(|e| sqlite_err("open", e))?;
    // The busy timeout first: switching to WAL needs a lock, which the other process holds
    // while it recovers the WAL after a crash. A WAL that a long reader let grow past both
    // writers' bounds (`wal.rs`) is cut back to 64 MiB when it starts over.
    conn.execute_batch(
        "PRAGMA busy_timeout = 10000;
         PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         PRAGMA journal_size_limit = 67108864;",
    )
    .map_err(|e| sqlite_err("configure", e))?;
    conn.execute_batch(SCHEMA)
        .map_err(|e| sqlite_err("create schema", e))?;
    migrate(&conn)?;
    Ok(conn)
}

/// Brings a database made by an earlier version up to [`SCHEMA`].
fn migrate(conn: &Connection) -> Result<()> {
    // Sessions were once also indexed by session id, for the update of a snapshot. That index
    // put a page of random keys into every batch's write (a quarter of its WAL), and the
    // visitor's own key finds the row as well (see `UPDATE_SESSION`).
    conn.execute_batch("DROP INDEX IF EXISTS sessions_by_id")
        .map_err(|e| sqlite_err("migrate sessions", e))?;
    if !has_column(conn, "stream_log", "records")? {
        // Every row written before holds one record, which the default says.
        add_column(conn, "stream_log", "records INTEGER NOT NULL DEFAULT 1")?;
    }
    if !has_column(conn, "sessions", "currency")? {
        // The currency of `revenue_minor`; rows written before say none, as their snapshots do.
        add_column(conn, "sessions", "currency TEXT")?;
    }
    if !has_column(conn, "models", "positions")? {
        // A model saved before knew no positions: `{}`, as a model rebuilt from the lake.
        add_column(conn, "models", "positions TEXT NOT NULL DEFAULT '{}'")?;
    }
    if !has_column(conn, "models", "positions_version")? {
        // The version the positions were saved with: an older build saving a snapshot leaves
        // them behind, and they must not be read as the new snapshot's.
        add_column(
            conn,
            "models",
            "positions_version INTEGER NOT NULL DEFAULT 0",
        )?;
    }
    Ok(())
}

fn has_column(conn: &Connection, table: &str, column: &str) -> Result<bool> {
    conn.query_row(
        "SELECT COUNT(*) FROM pragma_table_info(?1) WHERE name = ?2",
        [table, column],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n > 0)
    .map_err(|e| sqlite_err("read schema", e))
}

/// Adds a column; another process opening the file at the same moment may have added it first.
fn add_column(conn: &Connection, table: &str, definition: &str) -> Result<()> {
    match conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {definition}")) {
        Ok(()) => Ok(()),
        Err(e) if e.to_string().contains("duplicate column") => Ok(()),
        Err(e) => Err(sqlite_err(&format!("migrate {table}"), e)),
    }
}

pub fn sqlite_err(what: &str, e: rusqlite::Error) -> ConnectorError {
    ConnectorError::unavailable("sqlite", format!("{what}: {e}"))
}

/// One connection shared by the calls of a component, run on tokio's blocking pool.
#[derive(Clone)]
pub struct Db {
    conn: Arc<Mutex<Connection>>,
    /// For a connection that writes: its checkpoints, run beside its commits.
    wal: Option<Arc<SharedWal>>,
}

impl Db {
    /// A connection that reads, or writes little enough that SQLite's own checkpoints inside its
    /// commits do not matter.
    pub fn open(path: &Path) -> Result<Self> {
        Ok(Db {
            conn: Arc::new(Mutex::new(open_connection(path)?)),
            wal: None,
        })
    }

    /// A connection that writes, with checkpoints in the background (see `wal.rs`).
    pub fn open_writer(path: &Path) -> Result<Self> {
        let conn = open_connection(path)?;
        let wal = SharedWal::start(path, &conn)?;
        Ok(Db {
            conn: Arc::new(Mutex::new(conn)),
            wal: Some(Arc::new(wal)),
        })
    }

    /// Runs `f` with the connection on the blocking pool.
    pub async fn call<R, F>(&self, f: F) -> Result<R>
    where
        F: FnOnce(&mut Connection) -> Result<R> + Send + 'static,
        R: Send + 'static,
    {
        let conn = self.conn.clone();
        let wal = self.wal.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().unwrap_or_else(|poisoned| {
                // A call panicked while it held the connection. Whatever it left open is rolled
                // back, and the connection serves on: refusing every later call of every edge
                // (checkpoints, leases, sessions) would stop the process for one bad call.
                let guard = poisoned.into_inner();
                if !guard.is_autocommit() {
                    let _ = guard.execute_batch("ROLLBACK");
                }
                conn.clear_poison();
                guard
            });
            match wal {
                Some(wal) => wal.run(&mut guard, f),
                None => f(&mut guard),
            }
        })
        .await
        .map_err(|e| ConnectorError::unavailable("sqlite", e))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_call_that_panicked_in_a_transaction_leaves_the_connection_usable() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open_writer(&dir.path().join("db.sqlite")).unwrap();
        let panicked = db
            .call(|conn| -> Result<()> {
                conn.execute_batch("BEGIN; INSERT INTO models (name, version, snapshot, saved_at_ms) VALUES ('m', 1, x'00', 0);")
                    .unwrap();
                panic!("a bug in the middle of a write");
            })
            .await;
        assert!(panicked.is_err());

        let models: i64 = db
            .call(|conn| {
                conn.execute(
                    "INSERT INTO models (name, version, snapshot, saved_at_ms) VALUES ('n', 1, x'00', 0)",
                    [],
                )
                .map_err(|e| sqlite_err("insert", e))?;
                conn.query_row("SELECT COUNT(*) FROM models", [], |r| r.get(0))
                    .map_err(|e| sqlite_err("count", e))
            })
            .await
            .unwrap();
        assert_eq!(
            models, 1,
            "the panicked call's insert rolled back, the next one kept"
        );
    }

    #[test]
    fn a_database_of_an_earlier_version_gets_the_columns_it_lacks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            let old = Connection::open(&path).unwrap();
            old.execute_batch(
                "CREATE TABLE stream_log (seq INTEGER PRIMARY KEY AUTOINCREMENT,
                     partition_key TEXT NOT NULL, data BLOB NOT NULL, appended_at_ms INTEGER NOT NULL);
                 CREATE TABLE models (name TEXT PRIMARY KEY, version INTEGER NOT NULL,
                     snapshot BLOB NOT NULL, saved_at_ms INTEGER NOT NULL);
                 INSERT INTO stream_log (partition_key, data, appended_at_ms) VALUES ('a', x'7b7d', 1);
                 INSERT INTO models VALUES ('recommendations', 3, x'00', 1);
                 CREATE TABLE sessions (anonymous_id TEXT NOT NULL, start_ms INTEGER NOT NULL,
                     session_id TEXT NOT NULL, user_id TEXT, end_ms INTEGER NOT NULL,
                     event_count INTEGER NOT NULL, page_views INTEGER NOT NULL,
                     revenue_minor INTEGER NOT NULL, version INTEGER NOT NULL,
                     snapshot TEXT NOT NULL, PRIMARY KEY (anonymous_id, start_ms));
                 INSERT INTO sessions VALUES ('a', 1, 's', NULL, 2, 1, 1, 500, 1, '{}');",
            )
            .unwrap();
        }
        // Twice: the second opening finds nothing left to do.
        for _ in 0..2 {
            let conn = open_connection(&path).unwrap();
            let (records, positions, of, currency): (i64, String, i64, Option<String>) = conn
                .query_row(
                    "SELECT (SELECT records FROM stream_log), (SELECT positions FROM models),
                         (SELECT positions_version FROM models), (SELECT currency FROM sessions)",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )
                .unwrap();
            assert_eq!(
                (records, positions.as_str(), of, currency),
                (1, "{}", 0, None)
            );
        }
    }
}
