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
use crate::models::{
    positions_from_json, positions_to_json, ModelStore, StoredModel, StreamPositions,
};

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
        let model = name.to_owned();
        let stored: Option<(i64, Vec<u8>, String, i64)> = self
            .db
            .call(move |conn| {
                let name = model;
                conn.query_row(
                    "SELECT version, snapshot, positions, positions_version
                     FROM models WHERE name = ?1",
                    params![name],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )
                .optional()
                .map_err(|e| sqlite_err("read model", e))
            })
            .await?;
        stored
            .map(|(version, bytes, positions, positions_version)| {
                // A build from before positions saves a snapshot without touching them: they
                // are then another snapshot's, and this one's are unknown.
                let positions = if positions_version == version {
                    positions_from_json(&positions, name)
                } else {
                    StreamPositions::new()
                };
                Ok(StoredModel {
                    version: to_version(version)?,
                    bytes,
                    positions,
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
        let positions = positions_to_json(positions);
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
                    "INSERT INTO models
                         (name, version, snapshot, saved_at_ms, positions, positions_version)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?2)
                     ON CONFLICT (name) DO UPDATE SET version = excluded.version,
                         snapshot = excluded.snapshot, saved_at_ms = excluded.saved_at_ms,
                         positions = excluded.positions,
                         positions_version = excluded.positions_version",
                    params![name, version, bytes, now_ms(), positions],
                )
                .map_err(|e| sqlite_err("write model", e))?;
                tx.commit().map_err(|e| sqlite_err("write model", e))
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embedded::{self, DB_FILE};

    #[tokio::test]
    async fn positions_another_build_left_behind_or_cannot_read_are_unknown() {
        let dir = tempfile::tempdir().unwrap();
        let models = embedded::open(dir.path()).unwrap().models;
        let positions =
            StreamPositions::from([("0".to_owned(), vec![(String::new(), "9".into())])]);
        models.save("m", 1, b"one", &positions).await.unwrap();
        assert_eq!(
            models.load("m").await.unwrap().unwrap().positions,
            positions
        );

        let raw = rusqlite::Connection::open(dir.path().join(DB_FILE)).unwrap();
        // A build from before positions saves version 2 the way it did.
        raw.execute(
            "UPDATE models SET version = 2, snapshot = x'00' WHERE name = 'm'",
            [],
        )
        .unwrap();
        let stored = models.load("m").await.unwrap().unwrap();
        assert_eq!(
            (stored.version, stored.positions),
            (2, StreamPositions::new())
        );

        models.save("m", 3, b"three", &positions).await.unwrap();
        raw.execute(
            "UPDATE models SET positions = '{not json' WHERE name = 'm'",
            [],
        )
        .unwrap();
        let stored = models.load("m").await.unwrap().expect("still loads");
        assert_eq!(
            (stored.bytes, stored.positions),
            (b"three".to_vec(), StreamPositions::new())
        );
    }
}
