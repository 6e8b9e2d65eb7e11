//! The model snapshot in the embedded SQLite database (table `models`), one row per model name.
//!
//! The row holds the whole snapshot as a BLOB with its version and stream positions (JSON): the
//! processor and the collector are separate processes on one file, and the collector's version
//! poll is one primary-key read.

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension};

use super::db::{sqlite_err, Db};
use super::store::write_transaction;
use crate::clock::now_ms;
use crate::error::{ConnectorError, Result};
use crate::models::{ModelStore, StoredModel, StreamPositions};

pub struct EmbeddedModels {
    db: Db,
}

impl EmbeddedModels {
    pub fn new(db: Db) -> Self {
        EmbeddedModels { db }
    }
}

fn to_version(stored: i64) -> Result<u64> {
    u64::try_from(stored).map_err(|_| ConnectorError::Corrupt {
        what: "models.version".into(),
        detail: format!("negative version {stored}"),
    })
}

#[async_trait]
impl ModelStore for EmbeddedModels {
    async fn version(&self, name: &str) -> Result<Option<u64>> {
        let name = name.to_owned();
        let stored: Option<i64> = self
            .db
            .call(move |conn| {
                conn.query_row(
                    "SELECT version FROM models WHERE name = ?1",
                    params![name],
                    |r| r.get(0),
                )
                .optional()
                .map_err(|e| sqlite_err("read model version", e))
            })
            .await?;
        stored.map(to_version).transpose()
    }

    async fn load(&self, name: &str) -> Result<Option<StoredModel>> {
        let name = name.to_owned();
        let stored: Option<(i64, Vec<u8>, String)> = self
            .db
            .call(move |conn| {
                conn.query_row(
                    "SELECT version, snapshot, positions FROM models WHERE name = ?1",
                    params![name],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()
                .map_err(|e| sqlite_err("read model", e))
            })
            .await?;
        stored
            .map(|(version, bytes, positions)| {
                Ok(StoredModel {
                    version: to_version(version)?,
                    bytes,
                    positions: serde_json::from_str(&positions).map_err(|e| {
                        ConnectorError::Corrupt {
                            what: "models.positions".into(),
                            detail: e.to_string(),
                        }
                    })?,
                })
            })
            .transpose()
    }

    async fn save(
        &self,
        name: &str,
        version: u64,
        bytes: &[u8],
        positions: &StreamPositions,
    ) -> Result<()> {
        let (name, bytes) = (name.to_owned(), bytes.to_vec());
        let positions = serde_json::to_string(positions)
            .map_err(|e| ConnectorError::Misconfigured(format!("model positions: {e}")))?;
        let version = i64::try_from(version)
            .map_err(|_| ConnectorError::Misconfigured(format!("model version {version}")))?;
        self.db
            .call(move |conn| {
                let tx = write_transaction(conn, "write model")?;
                let stored: Option<i64> = tx
                    .query_row(
                        "SELECT version FROM models WHERE name = ?1",
                        params![name],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(|e| sqlite_err("write model", e))?;
                let expected = (version > 1).then_some(version - 1);
                if stored != expected {
                    return Err(ConnectorError::Conflict {
                        what: format!(
                            "model {name} (stored version {stored:?}, writing {version})"
                        ),
                    });
                }
                tx.execute(
                    "INSERT INTO models (name, version, snapshot, saved_at_ms, positions)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (name) DO UPDATE SET version = excluded.version,
                         snapshot = excluded.snapshot, saved_at_ms = excluded.saved_at_ms,
                         positions = excluded.positions",
                    params![name, version, bytes, now_ms(), positions],
                )
                .map_err(|e| sqlite_err("write model", e))?;
                tx.commit().map_err(|e| sqlite_err("write model", e))
            })
            .await
    }
}
