//! The embedded default for one machine with no cloud account: SQLite (`retailmind.db`) holds
//! the ordered log, the checkpoints, the sessions and the recommendation model; `lake/` holds the data lake.

mod db;
mod lake;
mod leases;
mod log;
mod models;
mod snapshot;
mod store;
mod wal;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub use lake::LocalLake;
pub use leases::EmbeddedLeases;
pub use log::{EmbeddedLogReader, EmbeddedLogWriter, LogTable, EXPIRED_UNREAD, SHARD_ID};
pub use models::EmbeddedModels;
pub use store::{EmbeddedCheckpoints, EmbeddedSessions};

use crate::config::{retention, DEFAULT_STREAM_RETENTION_HOURS};
use crate::error::{ConnectorError, Result};
use crate::Backend;

/// The database file inside the data directory.
pub const DB_FILE: &str = "retailmind.db";
/// The lake folder inside the data directory.
pub const LAKE_DIR: &str = "lake";

/// Opens every embedded edge under `data_dir`, creating what is missing; the event log keeps
/// records for [`DEFAULT_STREAM_RETENTION_HOURS`].
pub fn open(data_dir: &Path) -> Result<Backend> {
    open_retaining(data_dir, retention(DEFAULT_STREAM_RETENTION_HOURS))
}

/// [`open`], with the event log keeping records for `retention` (see [`log`]'s trimming).
pub fn open_retaining(data_dir: &Path, retention: Duration) -> Result<Backend> {
    std::fs::create_dir_all(data_dir).map_err(|e| {
        ConnectorError::Misconfigured(format!(
            "cannot create data directory {}: {e}",
            data_dir.display()
        ))
    })?;
    let db_path = data_dir.join(DB_FILE);
    let db = db::Db::open_writer(&db_path)?;
    let lake = LocalLake::new(data_dir.join(LAKE_DIR));
    sweep_in_background(LocalLake::new(lake.root()));
    Ok(Backend {
        sink: Arc::new(EmbeddedLogWriter::open_retaining(&db_path, retention)?),
        dead_letters: Arc::new(EmbeddedLogWriter::open(&db_path, LogTable::DeadLetters)?),
        // Its own connection: the processor reads the next batch while it writes sessions
        // and checkpoints through the shared one (WAL lets a reader run beside a writer).
        reader: Arc::new(EmbeddedLogReader::new(db::Db::open(&db_path)?)),
        checkpoints: Arc::new(EmbeddedCheckpoints::new(db.clone())),
        leases: Arc::new(EmbeddedLeases::new(db.clone())),
        sessions: Arc::new(EmbeddedSessions::new(db.clone())),
        models: Arc::new(EmbeddedModels::new(db)),
        lake: Arc::new(lake),
    })
}

/// Removes the lake's temporary files that killed writes left, on a thread of its own: the
/// lake may hold many folders, and nothing needs to wait for this.
fn sweep_in_background(swept: LocalLake) {
    let spawned = std::thread::Builder::new()
        .name("retailmind-lake-sweep".into())
        .spawn(
            move || match swept.remove_stale_temporaries(lake::STALE_TEMPORARY) {
                Ok(0) => {}
                Ok(removed) => tracing::info!(
                    removed,
                    "removed temporary lake files of interrupted writes"
                ),
                Err(e) => tracing::warn!(error = %e, "sweeping the lake's temporary files failed"),
            },
        );
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "could not start the lake's temporary file sweep");
    }
}
