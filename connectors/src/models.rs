use std::collections::BTreeMap;

use async_trait::async_trait;

use crate::error::Result;

/// Which records of the stream a snapshot has learned: shard id → ranges of sequence numbers,
/// `(first, last)` with both ends included, in order and apart; an empty `first` is the shard's
/// start. Saved in the same write as the snapshot, so a restarted processor knows which
/// replayed records the model holds already. Empty when unknown (a model rebuilt from the
/// lake).
pub type StreamPositions = BTreeMap<String, Vec<(String, String)>>;

/// Positions as both stores keep them: JSON text.
pub(crate) fn positions_to_json(positions: &StreamPositions) -> String {
    serde_json::to_string(positions).expect("a map of strings to string pairs serializes")
}

/// Positions read back from [`positions_to_json`]. Unreadable ones are unknown (the model is
/// derived data: at worst a replayed record is learned twice), not a reason to stop the
/// processor or the collector's version poll.
pub(crate) fn positions_from_json(json: &str, model: &str) -> StreamPositions {
    serde_json::from_str(json).unwrap_or_else(|e| {
        tracing::warn!(model, error = %e, "stored model positions unreadable; taken as unknown");
        StreamPositions::new()
    })
}

/// A persisted model snapshot and its version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredModel {
    /// Starts at 1 and grows by one with every save.
    pub version: u64,
    /// The snapshot bytes, opaque here (`retailmind_recommend::ModelState::to_snapshot`).
    pub bytes: Vec<u8>,
    /// What of the stream the snapshot holds.
    pub positions: StreamPositions,
}

/// Where the recommendation model's snapshot lives (DynamoDB in production), by model name.
///
/// The processor saves, the collector polls [`version`](Self::version) and loads a snapshot
/// only when the version moved, so the poll must stay cheap.
#[async_trait]
pub trait ModelStore: Send + Sync + 'static {
    /// The stored version of `name`, without reading the snapshot.
    async fn version(&self, name: &str) -> Result<Option<u64>>;

    /// The stored snapshot of `name`.
    async fn load(&self, name: &str) -> Result<Option<StoredModel>>;

    /// Stores `bytes`, with the `positions` they hold, as `version` of `name`: version 1 only
    /// if nothing is stored, any later version only if the stored one is `version - 1`. A lost
    /// race is [`ConnectorError::Conflict`](crate::ConnectorError::Conflict); readers never see
    /// a half-written snapshot, nor a snapshot with another's positions.
    async fn save(
        &self,
        name: &str,
        version: u64,
        bytes: &[u8],
        positions: &StreamPositions,
    ) -> Result<()>;
}
