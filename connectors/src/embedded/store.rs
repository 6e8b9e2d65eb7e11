//! Checkpoints and sessions in the embedded SQLite database.

use std::collections::HashMap;

use async_trait::async_trait;
use retailmind_schema::Session;
use rusqlite::types::ValueRef;
use rusqlite::{params, params_from_iter, OptionalExtension};

use super::db::{sqlite_err, Db};
use super::snapshot;
use crate::checkpoint::CheckpointStore;
use crate::clock::now_ms;
use crate::error::{ConnectorError, Result};
use crate::sessions::{Merge, SessionScan, SessionStore};
use crate::stream::sequence_cmp;

pub struct EmbeddedCheckpoints {
    db: Db,
}

impl EmbeddedCheckpoints {
    pub fn new(db: Db) -> Self {
        EmbeddedCheckpoints { db }
    }
}

#[async_trait]
impl CheckpointStore for EmbeddedCheckpoints {
    async fn get(&self, consumer: &str, shard_id: &str) -> Result<Option<String>> {
        let (consumer, shard_id) = (consumer.to_owned(), shard_id.to_owned());
        self.db
            .call(move |conn| {
                conn.query_row(
                    "SELECT sequence FROM checkpoints WHERE consumer = ?1 AND shard_id = ?2",
                    params![consumer, shard_id],
                    |r| r.get(0),
                )
                .optional()
                .map_err(|e| sqlite_err("read checkpoint", e))
            })
            .await
    }

    async fn set(&self, consumer: &str, shard_id: &str, sequence: &str) -> Result<()> {
        let (consumer, shard_id, sequence) = (
            consumer.to_owned(),
            shard_id.to_owned(),
            sequence.to_owned(),
        );
        self.db
            .call(move |conn| {
                let tx = write_transaction(conn, "checkpoint")?;
                advance_checkpoint(&tx, &consumer, &shard_id, &sequence)?;
                tx.commit().map_err(|e| sqlite_err("checkpoint", e))
            })
            .await
    }
}

/// A transaction that reads and then writes. Immediate: it takes the write lock at once (waiting
/// up to the busy timeout), because a deferred one that read first fails at once with "database
/// is locked" when another process wrote meanwhile.
pub(super) fn write_transaction<'c>(
    conn: &'c mut rusqlite::Connection,
    what: &str,
) -> Result<rusqlite::Transaction<'c>> {
    conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(|e| sqlite_err(what, e))
}

/// Stores `sequence` as the checkpoint of `consumer` in `shard_id` within `tx`, unless the
/// stored one is already further: a checkpoint only moves forward, so a slower instance cannot
/// rewind another's.
pub(super) fn advance_checkpoint(
    tx: &rusqlite::Transaction<'_>,
    consumer: &str,
    shard_id: &str,
    sequence: &str,
) -> Result<()> {
    let stored: Option<String> = tx
        .query_row(
            "SELECT sequence FROM checkpoints WHERE consumer = ?1 AND shard_id = ?2",
            params![consumer, shard_id],
            |r| r.get(0),
        )
        .optional()
        .map_err(|e| sqlite_err("checkpoint", e))?;
    if let Some(stored) = stored.filter(|s| sequence_cmp(s, sequence).is_gt()) {
        return Err(ConnectorError::Conflict {
            what: format!("checkpoint {consumer}/{shard_id} is already at {stored}"),
        });
    }
    tx.execute(
        "INSERT INTO checkpoints (consumer, shard_id, sequence, updated_at_ms)
         VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (consumer, shard_id) DO UPDATE
         SET sequence = excluded.sequence, updated_at_ms = excluded.updated_at_ms",
        params![consumer, shard_id, sequence, now_ms()],
    )
    .map_err(|e| sqlite_err("checkpoint", e))?;
    Ok(())
}

pub struct EmbeddedSessions {
    db: Db,
}

impl EmbeddedSessions {
    pub fn new(db: Db) -> Self {
        EmbeddedSessions { db }
    }
}

/// A session's first snapshot (version 1): only if no snapshot of it is stored, at its start or
/// (moved by a late event) at another: the visitor's key finds the visitor's few rows.
const INSERT_SESSION: &str = "INSERT INTO sessions (anonymous_id, start_ms, session_id, user_id,
         end_ms, event_count, page_views, revenue_minor, version, snapshot, currency)
     SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11
     WHERE NOT EXISTS (SELECT 1 FROM sessions WHERE anonymous_id = ?1 AND session_id = ?3)
     ON CONFLICT (anonymous_id, start_ms) DO NOTHING";

/// A later snapshot: only over the version just before it. Found by its session id, not its
/// start: a late event before the session's first one moves the start, and the row with it.
/// A start only ever moves earlier, so the stored row starts at or after the new start: the
/// visitor's key narrows the search to those rows, usually one.
const UPDATE_SESSION: &str = "UPDATE sessions SET start_ms = ?2, user_id = ?4, end_ms = ?5,
         event_count = ?6, page_views = ?7, revenue_minor = ?8, version = ?9, snapshot = ?10,
         currency = ?11
     WHERE anonymous_id = ?1 AND start_ms >= ?2 AND session_id = ?3 AND version = ?9 - 1";

/// The latest session at or before `?2` and every later one, in one statement.
const SESSIONS_AROUND: &str = "SELECT snapshot FROM sessions WHERE anonymous_id = ?1
     AND start_ms >= (SELECT COALESCE(MAX(start_ms), ?2) FROM sessions
                      WHERE anonymous_id = ?1 AND start_ms <= ?2)
     ORDER BY start_ms";

/// A stored snapshot: the binary format, or JSON text as earlier versions wrote it.
fn decode(snapshot: ValueRef<'_>) -> Result<Session> {
    match snapshot {
        ValueRef::Blob(bytes) => snapshot::decode(bytes),
        ValueRef::Text(json) => {
            serde_json::from_slice(json).map_err(|e| snapshot::corrupt(e.to_string()))
        }
        other => Err(snapshot::corrupt(format!(
            "a {:?} value",
            other.data_type()
        ))),
    }
}

/// Every row of `stmt` run with `params`, its first column decoded as a snapshot.
fn read_snapshots(
    stmt: &mut rusqlite::CachedStatement<'_>,
    params: impl rusqlite::Params,
) -> Result<Vec<Session>> {
    let mut rows = stmt
        .query(params)
        .map_err(|e| sqlite_err("read sessions", e))?;
    let mut sessions = Vec::new();
    while let Some(row) = rows.next().map_err(|e| sqlite_err("read sessions", e))? {
        let value = row.get_ref(0).map_err(|e| sqlite_err("read sessions", e))?;
        sessions.push(decode(value)?);
    }
    Ok(sessions)
}

/// A session another absorbed: only as it was read.
const DELETE_ABSORBED: &str = "DELETE FROM sessions
     WHERE anonymous_id = ?1 AND start_ms = ?2 AND session_id = ?3 AND version = ?4";

/// Writes snapshots within `tx`, each under its version condition; the first one that finds
/// another version stored fails the whole transaction.
fn write_snapshots(tx: &rusqlite::Transaction<'_>, sessions: &[Session]) -> Result<()> {
    // Cached: a batch writes thousands of rows, and preparing the SQL again for each one cost
    // more than the write itself.
    let mut insert = tx
        .prepare_cached(INSERT_SESSION)
        .map_err(|e| sqlite_err("write sessions", e))?;
    let mut update = tx
        .prepare_cached(UPDATE_SESSION)
        .map_err(|e| sqlite_err("write sessions", e))?;
    for s in sessions {
        // Encoded here, on the blocking pool, beside the caller's own work.
        let snapshot = snapshot::encode(s);
        // The version condition is in the statement: a first snapshot is inserted only where
        // none is stored, a later one replaces only the version before it (and is never
        // inserted: its session may have been erased meanwhile). Anything else changes no row.
        let statement = if s.version <= 1 {
            &mut insert
        } else {
            &mut update
        };
        let changed = statement
            .execute(params![
                s.anonymous_id,
                s.start_ms,
                s.session_id,
                s.user_id,
                s.end_ms,
                s.event_count,
                s.page_views,
                s.revenue_minor,
                s.version as i64,
                snapshot,
                s.currency
            ])
            .map_err(|e| sqlite_err("write sessions", e))?;
        if changed == 0 {
            return Err(ConnectorError::Conflict {
                what: format!(
                    "session {}: stored at another version than {}",
                    s.session_id,
                    s.version.saturating_sub(1)
                ),
            });
        }
    }
    Ok(())
}

#[async_trait]
impl SessionStore for EmbeddedSessions {
    async fn latest_before(&self, anonymous_id: &str, at_ms: i64) -> Result<Option<Session>> {
        let anonymous_id = anonymous_id.to_owned();
        let found = self
            .db
            .call(move |conn| {
                let mut stmt = conn
                    .prepare_cached(
                        "SELECT snapshot FROM sessions WHERE anonymous_id = ?1 AND start_ms <= ?2
                         ORDER BY start_ms DESC LIMIT 1",
                    )
                    .map_err(|e| sqlite_err("read session", e))?;
                read_snapshots(&mut stmt, params![anonymous_id, at_ms])
            })
            .await?;
        Ok(found.into_iter().next())
    }

    async fn sessions_around(
        &self,
        wanted: &[(String, i64)],
    ) -> Result<HashMap<String, Vec<Session>>> {
        let wanted = wanted.to_vec();
        self.db
            .call(move |conn| {
                // One read transaction: one snapshot of the table for the whole batch, and no
                // lock taken and released per visitor.
                let tx = conn
                    .transaction()
                    .map_err(|e| sqlite_err("read sessions", e))?;
                let mut found = HashMap::new();
                {
                    let mut stmt = tx
                        .prepare_cached(SESSIONS_AROUND)
                        .map_err(|e| sqlite_err("read sessions", e))?;
                    for (anonymous_id, from_ms) in wanted {
                        let sessions = read_snapshots(&mut stmt, params![anonymous_id, from_ms])?;
                        if !sessions.is_empty() {
                            found.insert(anonymous_id, sessions);
                        }
                    }
                }
                tx.commit().map_err(|e| sqlite_err("read sessions", e))?;
                Ok(found)
            })
            .await
    }

    async fn put(&self, sessions: &[Session]) -> Result<()> {
        let sessions = sessions.to_vec();
        self.db
            .call(move |conn| {
                let tx = write_transaction(conn, "write sessions")?;
                write_snapshots(&tx, &sessions)?;
                tx.commit().map_err(|e| sqlite_err("write sessions", e))
            })
            .await
    }

    async fn merge(&self, merge: &Merge) -> Result<()> {
        let merge = merge.clone();
        self.db
            .call(move |conn| {
                let tx = write_transaction(conn, "merge sessions")?;
                write_snapshots(&tx, std::slice::from_ref(&merge.survivor))?;
                {
                    let mut delete = tx
                        .prepare_cached(DELETE_ABSORBED)
                        .map_err(|e| sqlite_err("merge sessions", e))?;
                    for s in &merge.absorbed {
                        let deleted = delete
                            .execute(params![
                                s.anonymous_id,
                                s.start_ms,
                                s.session_id,
                                s.version as i64
                            ])
                            .map_err(|e| sqlite_err("merge sessions", e))?;
                        if deleted == 0 {
                            return Err(ConnectorError::Conflict {
                                what: format!(
                                    "session {} absorbed by {}: no longer stored at version {}",
                                    s.session_id, merge.survivor.session_id, s.version
                                ),
                            });
                        }
                    }
                }
                tx.commit().map_err(|e| sqlite_err("merge sessions", e))
            })
            .await
    }

    async fn sessions_of(&self, anonymous_id: &str) -> Result<Vec<Session>> {
        self.sessions_since(anonymous_id, i64::MIN).await
    }

    async fn forget_visitor(&self, anonymous_id: &str) -> Result<usize> {
        let anonymous_id = anonymous_id.to_owned();
        self.db
            .call(move |conn| {
                conn.execute(
                    "DELETE FROM sessions WHERE anonymous_id = ?1",
                    params![anonymous_id],
                )
                .map_err(|e| sqlite_err("delete sessions", e))
            })
            .await
    }

    async fn sessions_since(&self, anonymous_id: &str, from_ms: i64) -> Result<Vec<Session>> {
        let anonymous_id = anonymous_id.to_owned();
        self.db
            .call(move |conn| {
                let mut stmt = conn
                    .prepare_cached(
                        "SELECT snapshot FROM sessions WHERE anonymous_id = ?1 AND start_ms >= ?2
                         ORDER BY start_ms",
                    )
                    .map_err(|e| sqlite_err("read sessions", e))?;
                read_snapshots(&mut stmt, params![anonymous_id, from_ms])
            })
            .await
    }

    async fn scan(&self, scan: SessionScan) -> Result<Vec<Session>> {
        let (sql, bounds) = match scan {
            SessionScan::StartedIn { from_ms, to_ms } => (
                "SELECT snapshot FROM sessions WHERE start_ms >= ?1 AND start_ms < ?2",
                vec![from_ms, to_ms],
            ),
            SessionScan::EndedSince { since_ms } => (
                "SELECT snapshot FROM sessions WHERE end_ms >= ?1",
                vec![since_ms],
            ),
        };
        self.db
            .call(move |conn| {
                let mut stmt = conn
                    .prepare_cached(sql)
                    .map_err(|e| sqlite_err("scan sessions", e))?;
                read_snapshots(&mut stmt, params_from_iter(bounds))
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(anonymous_id: &str, start_ms: i64) -> Session {
        Session {
            session_id: format!("{anonymous_id}-{start_ms}"),
            anonymous_id: anonymous_id.into(),
            start_ms,
            end_ms: start_ms + 10,
            version: 1,
            ..Session::default()
        }
    }

    fn starts(found: &HashMap<String, Vec<Session>>, visitor: &str) -> Vec<i64> {
        found
            .get(visitor)
            .map(|s| s.iter().map(|s| s.start_ms).collect())
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn sessions_around_reads_the_latest_before_and_all_after_for_every_visitor() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedSessions::new(Db::open(&dir.path().join("db")).unwrap());
        let stored: Vec<Session> = [("a", 100), ("a", 200), ("a", 300), ("b", 500)]
            .into_iter()
            .map(|(v, t)| session(v, t))
            .collect();
        store.put(&stored).await.unwrap();

        let wanted = [
            ("a".to_owned(), 250),
            ("b".to_owned(), 500),
            ("c".to_owned(), 0),
        ];
        let found = store.sessions_around(&wanted).await.unwrap();
        assert_eq!(starts(&found, "a"), [200, 300]);
        assert_eq!(starts(&found, "b"), [500]);
        assert!(
            !found.contains_key("c"),
            "visitors with no sessions are left out"
        );
        assert_eq!(
            starts(
                &store.sessions_around(&[("a".into(), 50)]).await.unwrap(),
                "a"
            ),
            [100, 200, 300]
        );
    }

    #[tokio::test]
    async fn a_snapshot_whose_start_moved_earlier_replaces_its_row() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedSessions::new(Db::open(&dir.path().join("db")).unwrap());
        let later = session("a", 5_000);
        store
            .put(&[session("a", 100), later.clone()])
            .await
            .unwrap();
        // A late event before the first one: same session id, an earlier start, version 2.
        let moved = Session {
            start_ms: 4_000,
            version: 2,
            ..later.clone()
        };
        store.put(&[moved]).await.unwrap();
        let stored = store.sessions_of("a").await.unwrap();
        let rows: Vec<(i64, &str, u64)> = stored
            .iter()
            .map(|s| (s.start_ms, s.session_id.as_str(), s.version))
            .collect();
        assert_eq!(rows, [(100, "a-100", 1), (4_000, "a-5000", 2)]);
        // The same version again is stale: the stored row is at version 2 now.
        let stale = Session {
            start_ms: 3_000,
            version: 2,
            ..later
        };
        assert!(matches!(
            store.put(&[stale]).await,
            Err(ConnectorError::Conflict { .. })
        ));
    }

    /// The columns beside the snapshot are for people with `sqlite3`: a revenue is read with its
    /// currency, on the first snapshot and on later ones.
    #[tokio::test]
    async fn the_row_says_the_currency_of_its_revenue() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let store = EmbeddedSessions::new(Db::open(&path).unwrap());
        let columns = || -> (i64, Option<String>) {
            rusqlite::Connection::open(&path)
                .unwrap()
                .query_row("SELECT revenue_minor, currency FROM sessions", [], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .unwrap()
        };
        let first = session("a", 100);
        store.put(std::slice::from_ref(&first)).await.unwrap();
        assert_eq!(columns(), (0, None));
        let mut bought = Session {
            version: 2,
            ..first
        };
        bought.add_revenue("SEK", 129_900);
        store.put(&[bought]).await.unwrap();
        assert_eq!(columns(), (129_900, Some("SEK".into())));
    }

    #[tokio::test]
    async fn a_first_snapshot_of_a_session_stored_at_another_start_is_a_conflict() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedSessions::new(Db::open(&dir.path().join("db")).unwrap());
        // Its start moved from 100 to 45 by a late event; a replay that missed it must not add
        // a second row of the same session at 100.
        let moved = Session {
            start_ms: 45,
            ..session("a", 100)
        };
        store.put(std::slice::from_ref(&moved)).await.unwrap();
        assert!(matches!(
            store.put(&[session("a", 100)]).await,
            Err(ConnectorError::Conflict { .. })
        ));
        assert_eq!(store.sessions_of("a").await.unwrap(), [moved]);
    }

    #[tokio::test]
    async fn snapshots_written_as_json_by_earlier_versions_still_read_and_update() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let store = EmbeddedSessions::new(Db::open(&path).unwrap());
        let old = Session {
            user_id: Some("u".into()),
            event_ids: vec![uuid::Uuid::from_u128(9)],
            ..session("a", 100)
        };
        rusqlite::Connection::open(&path)
            .unwrap()
            .execute(
                "INSERT INTO sessions (anonymous_id, start_ms, session_id, user_id, end_ms,
                     event_count, page_views, revenue_minor, version, snapshot)
                 VALUES ('a', 100, 'a-100', 'u', 110, 0, 0, 0, 1, ?1)",
                [serde_json::to_string(&old).unwrap()],
            )
            .unwrap();
        store.put(&[session("a", 500)]).await.unwrap();
        assert_eq!(
            store.sessions_of("a").await.unwrap(),
            [old.clone(), session("a", 500)]
        );
        let next = Session {
            version: 2,
            event_count: 1,
            ..old
        };
        store.put(std::slice::from_ref(&next)).await.unwrap();
        assert_eq!(store.latest_before("a", 200).await.unwrap(), Some(next));
    }

    #[test]
    fn opening_a_database_of_an_earlier_version_drops_the_session_id_index() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            let conn = rusqlite::Connection::open(&path).unwrap();
            conn.execute_batch(super::super::db::SCHEMA).unwrap();
            conn.execute_batch("CREATE UNIQUE INDEX sessions_by_id ON sessions (session_id)")
                .unwrap();
        }
        drop(Db::open(&path).unwrap());
        let conn = rusqlite::Connection::open(&path).unwrap();
        let indexes: Vec<String> = conn
            .prepare("SELECT name FROM pragma_index_list('sessions')")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert!(
            !indexes.iter().any(|name| name == "sessions_by_id"),
            "{indexes:?}"
        );
    }

    #[tokio::test]
    async fn a_batch_put_that_loses_a_race_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedSessions::new(Db::open(&dir.path().join("db")).unwrap());
        store.put(&[session("a", 100)]).await.unwrap();
        let stale = session("a", 100);
        let fresh = session("b", 100);
        let outcome = store.put(&[fresh, stale]).await;
        assert!(matches!(outcome, Err(ConnectorError::Conflict { .. })));
        assert!(store.sessions_of("b").await.unwrap().is_empty());
    }
}
