use std::collections::HashMap;

use async_trait::async_trait;
use futures::StreamExt;
use retailmind_schema::Session;

use crate::error::Result;

/// Visitors whose sessions [`SessionStore::sessions_around`]'s default reads at once.
pub const VISITORS_READ_AT_ONCE: usize = 16;

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
    /// able to do so reads them in one round trip; the default asks
    /// [`VISITORS_READ_AT_ONCE`] visitors at a time, both of each one's reads side by side
    /// (on DynamoDB each read is a round trip, and a batch touches hundreds of visitors: one
    /// after the other, a shard's batch took seconds).
    async fn sessions_around(
        &self,
        wanted: &[(String, i64)],
    ) -> Result<HashMap<String, Vec<Session>>> {
        // Made up front: a stream over a borrowing closure is not `Send` enough for the
        // trait's boxed future.
        let reads: Vec<_> = wanted
            .iter()
            .map(|(anonymous_id, from_ms)| visitor_around(self, anonymous_id, *from_ms))
            .collect();
        let read: Vec<Result<Vec<Session>>> = futures::stream::iter(reads)
            .buffered(VISITORS_READ_AT_ONCE)
            .collect()
            .await;
        let mut found = HashMap::new();
        for ((anonymous_id, _), sessions) in wanted.iter().zip(read) {
            let sessions = sessions?;
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

/// One visitor's part of [`SessionStore::sessions_around`], its two reads side by side.
async fn visitor_around<S: SessionStore + ?Sized>(
    store: &S,
    anonymous_id: &str,
    from_ms: i64,
) -> Result<Vec<Session>> {
    let (mut sessions, before) = futures::try_join!(
        store.sessions_since(anonymous_id, from_ms),
        store.latest_before(anonymous_id, from_ms)
    )?;
    if let Some(before) = before {
        if sessions.iter().all(|s| s.start_ms != before.start_ms) {
            sessions.insert(0, before);
        }
    }
    Ok(sessions)
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    /// A store answering every read after a pause, counting the reads in flight: what the
    /// default `sessions_around` does on a store whose reads are round trips.
    #[derive(Default)]
    struct SlowReads {
        in_flight: AtomicUsize,
        most_in_flight: AtomicUsize,
    }

    impl SlowReads {
        async fn read<T>(&self, answer: T) -> Result<T> {
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.most_in_flight.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(5)).await;
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            Ok(answer)
        }
    }

    fn session(anonymous_id: &str, start_ms: i64) -> Session {
        Session {
            anonymous_id: anonymous_id.into(),
            start_ms,
            ..Session::default()
        }
    }

    #[async_trait]
    impl SessionStore for SlowReads {
        async fn latest_before(&self, anonymous_id: &str, at_ms: i64) -> Result<Option<Session>> {
            self.read(Some(session(anonymous_id, at_ms - 1))).await
        }
        async fn sessions_since(&self, anonymous_id: &str, from_ms: i64) -> Result<Vec<Session>> {
            let sessions = if anonymous_id == "none-after" {
                Vec::new()
            } else {
                vec![
                    session(anonymous_id, from_ms),
                    session(anonymous_id, from_ms + 9),
                ]
            };
            self.read(sessions).await
        }
        async fn put(&self, _: &[Session]) -> Result<()> {
            unreachable!()
        }
        async fn merge(&self, _: &Merge) -> Result<()> {
            unreachable!()
        }
        async fn sessions_of(&self, _: &str) -> Result<Vec<Session>> {
            unreachable!()
        }
        async fn forget_visitor(&self, _: &str) -> Result<usize> {
            unreachable!()
        }
        async fn scan(&self, _: SessionScan) -> Result<Vec<Session>> {
            unreachable!()
        }
    }

    #[tokio::test]
    async fn the_default_reads_visitors_side_by_side_and_keeps_each_ones_order() {
        let store = SlowReads::default();
        let mut wanted: Vec<(String, i64)> =
            (0..40).map(|n| (format!("v{n}"), 1_000 * n)).collect();
        wanted.push(("none-after".into(), 7));
        let found = store.sessions_around(&wanted).await.unwrap();

        assert_eq!(found.len(), 41);
        for (anonymous_id, from_ms) in &wanted[..40] {
            let starts: Vec<i64> = found[anonymous_id].iter().map(|s| s.start_ms).collect();
            assert_eq!(
                starts,
                [from_ms - 1, *from_ms, from_ms + 9],
                "{anonymous_id}"
            );
        }
        assert_eq!(found["none-after"].len(), 1);
        assert_eq!(
            store.most_in_flight.load(Ordering::SeqCst),
            2 * VISITORS_READ_AT_ONCE
        );
    }
}
