use std::collections::HashMap;

use async_trait::async_trait;
use retailmind_schema::Session;

use crate::error::Result;

/// The sessions table (Amazon DynamoDB in production), keyed by visitor and session start.
#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// The visitor's latest session that started at or before `at_ms`.
    async fn latest_before(&self, anonymous_id: &str, at_ms: i64) -> Result<Option<Session>>;

    /// The visitor's sessions that started at or after `from_ms`, oldest first.
    async fn sessions_since(&self, anonymous_id: &str, from_ms: i64) -> Result<Vec<Session>>;

    /// For each `(visitor, from_ms)`, the sessions that events from `from_ms` on may belong to:
    /// the visitor's latest session that started at or before `from_ms` and every later one,
    /// oldest first. Visitors with none are left out. One call for a whole batch, so that a store
    /// able to do so reads them in one round trip; the default asks visitor by visitor.
    async fn sessions_around(
        &self,
        wanted: &[(String, i64)],
    ) -> Result<HashMap<String, Vec<Session>>> {
        let mut found = HashMap::new();
        for (anonymous_id, from_ms) in wanted {
            let mut sessions = self.sessions_since(anonymous_id, *from_ms).await?;
            if let Some(before) = self.latest_before(anonymous_id, *from_ms).await? {
                if sessions.iter().all(|s| s.start_ms != before.start_ms) {
                    sessions.insert(0, before);
                }
            }
            if !sessions.is_empty() {
                found.insert(anonymous_id.clone(), sessions);
            }
        }
        Ok(found)
    }

    /// Writes whole snapshots. A snapshot with `version == 1` is written only if no session with
    /// its key exists; otherwise only if the stored one has `version - 1`. A lost race is
    /// [`ConnectorError::Conflict`](crate::ConnectorError::Conflict); the other snapshots may
    /// then be written or not (the embedded store writes none, DynamoDB the ones that won), so
    /// a caller re-reads before writing again.
    async fn put(&self, sessions: &[Session]) -> Result<()>;

    /// Writes `merge.survivor` as [`put`](Self::put) would and deletes each absorbed session
    /// only if it is still stored at the version it was read with, all or nothing: reads find a
    /// visitor's sessions by their starts, which works only while no two of them overlap.
    async fn merge(&self, merge: &Merge) -> Result<()>;

    /// Every session of a visitor, oldest first.
    async fn sessions_of(&self, anonymous_id: &str) -> Result<Vec<Session>>;

    /// Deletes every session of a visitor (a customer asked to be forgotten); returns how many.
    async fn forget_visitor(&self, anonymous_id: &str) -> Result<usize>;

    /// Every visitor's sessions that `scan` selects, in no particular order. For the lake's
    /// sessions export and the live panel, not for the event path: on DynamoDB it is a Scan,
    /// which reads the whole table.
    async fn scan(&self, scan: SessionScan) -> Result<Vec<Session>>;
}

/// A session that absorbed others: a late event closed the gap between them.
#[derive(Clone, Debug, PartialEq)]
pub struct Merge {
    /// The earliest of them, now holding every event of the others (its id stays; its start
    /// may have moved earlier with the same late events).
    pub survivor: Session,
    /// The survivor's start as read from the store; `None` when the events opened it.
    pub survivor_read_start: Option<i64>,
    /// Where the sessions it absorbed are stored, and at which versions.
    pub absorbed: Vec<StoredAt>,
}

/// Most sessions one merge absorbs: DynamoDB writes the survivor (a put, or a delete and a put
/// when its start moved) and deletes each absorbed session in one transaction of at most 100.
pub const MAX_ABSORBED: usize = 98;

/// A stored session's key, id and version, as read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredAt {
    pub anonymous_id: String,
    pub start_ms: i64,
    pub session_id: String,
    pub version: u64,
}

impl StoredAt {
    pub fn of(session: &Session) -> Self {
        StoredAt {
            anonymous_id: session.anonymous_id.clone(),
            start_ms: session.start_ms,
            session_id: session.session_id.clone(),
            version: session.version,
        }
    }
}

/// Which sessions [`SessionStore::scan`] returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionScan {
    /// Started in `[from_ms, to_ms)` (event time): a day of the lake's sessions table.
    StartedIn { from_ms: i64, to_ms: i64 },
    /// Last event at or after `since_ms`: the visitors active lately.
    EndedSince { since_ms: i64 },
}

impl SessionScan {
    /// Whether `session` is selected; what every store's own filter must agree with.
    pub fn selects(self, session: &Session) -> bool {
        match self {
            SessionScan::StartedIn { from_ms, to_ms } => {
                (from_ms..to_ms).contains(&session.start_ms)
            }
            SessionScan::EndedSince { since_ms } => session.end_ms >= since_ms,
        }
    }
}
