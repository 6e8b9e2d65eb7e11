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

    /// Writes whole snapshots. A snapshot with `version == 1` is written only if no session with
    /// its key exists; otherwise only if the stored one has `version - 1`. A lost race is
    /// [`ConnectorError::Conflict`](crate::ConnectorError::Conflict).
    async fn put(&self, sessions: &[Session]) -> Result<()>;

    /// Every session of a visitor, oldest first.
    async fn sessions_of(&self, anonymous_id: &str) -> Result<Vec<Session>>;

    /// Deletes every session of a visitor (a customer asked to be forgotten); returns how many.
    async fn forget_visitor(&self, anonymous_id: &str) -> Result<usize>;
}
