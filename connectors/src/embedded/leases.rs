//! Leases in the embedded SQLite database, with the semantics of the DynamoDB ones.
//!
//! Table `leases` holds owner, counter, pending owner, parents (a JSON array) and whether the
//! shard ended; the checkpoint stays in `checkpoints`, so the lease's checkpoint and
//! [`CheckpointStore::get`](crate::CheckpointStore::get) are one value. Each conditional write
//! is one `UPDATE … WHERE <condition>` inside an immediate transaction (several processes may
//! share the file): no row changed means the condition failed, which is a
//! [`ConnectorError::Conflict`].

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension};

use super::db::{sqlite_err, Db};
use super::store::{advance_checkpoint, write_transaction};
use crate::error::{ConnectorError, Result};
use crate::lease::{Lease, LeaseStore};
use crate::stream::ShardInfo;

pub struct EmbeddedLeases {
    db: Db,
}

impl EmbeddedLeases {
    pub fn new(db: Db) -> Self {
        EmbeddedLeases { db }
    }

    /// Runs `statement` with `args` in an immediate transaction and returns the lease as it is
    /// then; `Conflict` about `what` when the statement changed no row.
    async fn conditional(
        &self,
        what: String,
        statement: String,
        args: Vec<rusqlite::types::Value>,
    ) -> Result<Lease> {
        let row = self
            .db
            .call(move |conn| {
                let tx = write_transaction(conn, "write lease")?;
                let changed = tx
                    .execute(&statement, rusqlite::params_from_iter(&args))
                    .map_err(|e| sqlite_err("write lease", e))?;
                if changed == 0 {
                    return Err(ConnectorError::Conflict { what });
                }
                // Every statement binds the consumer as ?1 and the shard as ?2.
                let row = tx
                    .query_row(
                        &format!("{READ_LEASES} AND l.shard_id = ?2"),
                        rusqlite::params_from_iter(&args[..2]),
                        read_lease,
                    )
                    .map_err(|e| sqlite_err("read lease", e))?;
                tx.commit().map_err(|e| sqlite_err("write lease", e))?;
                Ok(row)
            })
            .await?;
        with_parents(row)
    }

    /// `SET set` on `owner`'s lease held at `counter`; `Conflict` saying `action` otherwise.
    async fn held_update(
        &self,
        (consumer, shard_id): (&str, &str),
        (owner, counter): (&str, u64),
        set: &str,
        action: &str,
    ) -> Result<Lease> {
        self.conditional(
            what(consumer, shard_id, action),
            format!(
                "UPDATE leases SET {set}
                 WHERE consumer = ?1 AND shard_id = ?2 AND owner = ?3 AND counter = ?4"
            ),
            vec![
                text(consumer),
                text(shard_id),
                text(owner),
                integer(counter),
            ],
        )
        .await
    }
}

fn what(consumer: &str, shard_id: &str, action: &str) -> String {
    format!("lease {consumer}/{shard_id}: {action}")
}

fn text(s: &str) -> rusqlite::types::Value {
    rusqlite::types::Value::Text(s.to_owned())
}

fn integer(n: u64) -> rusqlite::types::Value {
    rusqlite::types::Value::Integer(i64::try_from(n).unwrap_or(i64::MAX))
}

const READ_LEASES: &str = "
    SELECT l.shard_id, l.owner, l.counter, c.sequence, l.parent_shard_ids, l.shard_ended,
           l.pending_owner
    FROM leases l LEFT JOIN checkpoints c
      ON c.consumer = l.consumer AND c.shard_id = l.shard_id
    WHERE l.consumer = ?1";

fn read_lease(row: &rusqlite::Row<'_>) -> rusqlite::Result<(Lease, String)> {
    let lease = Lease {
        shard_id: row.get(0)?,
        owner: row.get(1)?,
        counter: row.get::<_, i64>(2)?.try_into().unwrap_or(0),
        checkpoint: row.get(3)?,
        parent_shard_ids: Vec::new(),
        shard_ended: row.get(5)?,
        pending_owner: row.get(6)?,
    };
    Ok((lease, row.get(4)?))
}

fn with_parents((mut lease, parents): (Lease, String)) -> Result<Lease> {
    lease.parent_shard_ids =
        serde_json::from_str(&parents).map_err(|e| ConnectorError::Corrupt {
            what: format!("leases.parent_shard_ids of {}", lease.shard_id),
            detail: e.to_string(),
        })?;
    Ok(lease)
}

#[async_trait]
impl LeaseStore for EmbeddedLeases {
    async fn leases(&self, consumer: &str) -> Result<Vec<Lease>> {
        let consumer = consumer.to_owned();
        let rows = self
            .db
            .call(move |conn| {
                let mut stmt = conn
                    .prepare_cached(&format!("{READ_LEASES} ORDER BY l.shard_id"))
                    .map_err(|e| sqlite_err("read leases", e))?;
                let rows = stmt
                    .query_map(params![consumer], read_lease)
                    .map_err(|e| sqlite_err("read leases", e))?;
                rows.collect::<rusqlite::Result<Vec<_>>>()
                    .map_err(|e| sqlite_err("read leases", e))
            })
            .await?;
        rows.into_iter().map(with_parents).collect()
    }

    async fn create(&self, consumer: &str, shard: &ShardInfo) -> Result<bool> {
        let parents = serde_json::to_string(&shard.parent_shard_ids).map_err(|e| {
            ConnectorError::Corrupt {
                what: "parent shard ids".into(),
                detail: e.to_string(),
            }
        })?;
        let (consumer, shard_id) = (consumer.to_owned(), shard.shard_id.clone());
        self.db
            .call(move |conn| {
                let created = conn
                    .execute(
                        "INSERT INTO leases (consumer, shard_id, owner, counter, parent_shard_ids)
                         VALUES (?1, ?2, NULL, 0, ?3) ON CONFLICT DO NOTHING",
                        params![consumer, shard_id, parents],
                    )
                    .map_err(|e| sqlite_err("create lease", e))?;
                Ok(created == 1)
            })
            .await
    }

    async fn take(
        &self,
        consumer: &str,
        shard_id: &str,
        counter: u64,
        owner: &str,
    ) -> Result<Lease> {
        self.conditional(
            what(consumer, shard_id, "changed before it could be taken"),
            "UPDATE leases SET owner = ?4, counter = counter + 1, pending_owner = NULL
             WHERE consumer = ?1 AND shard_id = ?2 AND counter = ?3"
                .into(),
            vec![
                text(consumer),
                text(shard_id),
                integer(counter),
                text(owner),
            ],
        )
        .await
    }

    async fn renew(
        &self,
        consumer: &str,
        shard_id: &str,
        owner: &str,
        counter: u64,
    ) -> Result<Lease> {
        self.held_update(
            (consumer, shard_id),
            (owner, counter),
            "counter = counter + 1",
            "lost before renewal",
        )
        .await
    }

    async fn release(
        &self,
        consumer: &str,
        shard_id: &str,
        owner: &str,
        counter: u64,
    ) -> Result<()> {
        self.held_update(
            (consumer, shard_id),
            (owner, counter),
            "owner = NULL, pending_owner = NULL, counter = counter + 1",
            "lost before release",
        )
        .await
        .map(|_| ())
    }

    async fn finish(
        &self,
        consumer: &str,
        shard_id: &str,
        owner: &str,
        counter: u64,
    ) -> Result<()> {
        self.held_update(
            (consumer, shard_id),
            (owner, counter),
            "shard_ended = 1, owner = NULL, pending_owner = NULL, counter = counter + 1",
            "lost before its end was recorded",
        )
        .await
        .map(|_| ())
    }

    async fn remove(&self, consumer: &str, shard_id: &str, counter: u64) -> Result<()> {
        let (consumer, shard_id) = (consumer.to_owned(), shard_id.to_owned());
        self.db
            .call(move |conn| {
                let tx = write_transaction(conn, "remove lease")?;
                let removed = tx
                    .execute(
                        "DELETE FROM leases WHERE consumer = ?1 AND shard_id = ?2
                         AND owner IS NULL AND counter = ?3",
                        params![consumer, shard_id, integer(counter)],
                    )
                    .map_err(|e| sqlite_err("remove lease", e))?;
                if removed == 0 {
                    return Err(ConnectorError::Conflict {
                        what: what(&consumer, &shard_id, "held or changed before removal"),
                    });
                }
                tx.execute(
                    "DELETE FROM checkpoints WHERE consumer = ?1 AND shard_id = ?2",
                    params![consumer, shard_id],
                )
                .map_err(|e| sqlite_err("remove lease", e))?;
                tx.commit().map_err(|e| sqlite_err("remove lease", e))
            })
            .await
    }

    async fn request(
        &self,
        consumer: &str,
        shard_id: &str,
        owner: &str,
        requester: &str,
    ) -> Result<()> {
        self.conditional(
            what(consumer, shard_id, "no longer held or already asked for"),
            "UPDATE leases SET pending_owner = ?4
             WHERE consumer = ?1 AND shard_id = ?2 AND owner = ?3 AND pending_owner IS NULL"
                .into(),
            vec![text(consumer), text(shard_id), text(owner), text(requester)],
        )
        .await
        .map(|_| ())
    }

    async fn checkpoint(
        &self,
        consumer: &str,
        shard_id: &str,
        owner: &str,
        counter: u64,
        sequence: &str,
    ) -> Result<()> {
        let (consumer, shard_id, owner, sequence) = (
            consumer.to_owned(),
            shard_id.to_owned(),
            owner.to_owned(),
            sequence.to_owned(),
        );
        self.db
            .call(move |conn| {
                let tx = write_transaction(conn, "write lease")?;
                let held: Option<i64> = tx
                    .query_row(
                        "SELECT 1 FROM leases WHERE consumer = ?1 AND shard_id = ?2
                         AND owner = ?3 AND counter = ?4",
                        params![consumer, shard_id, owner, integer(counter)],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(|e| sqlite_err("checkpoint", e))?;
                if held.is_none() {
                    return Err(ConnectorError::Conflict {
                        what: what(&consumer, &shard_id, "lost before checkpoint"),
                    });
                }
                advance_checkpoint(&tx, &consumer, &shard_id, &sequence)?;
                tx.commit().map_err(|e| sqlite_err("checkpoint", e))
            })
            .await
    }
}
