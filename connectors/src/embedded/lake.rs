//! The embedded lake: a local folder in the same key layout as the S3 lake, one newline-JSON
//! file per partition per write, each written to a temporary name and renamed into place so a
//! reader never sees half a file.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use base64::Engine;

use crate::error::{ConnectorError, Result};
use crate::lake::{error_partition, event_partition, LakeRecord, LakeWriter, UndecodableRecord};

pub struct LocalLake {
    root: PathBuf,
}

impl LocalLake {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalLake { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
}

fn io_err(e: std::io::Error) -> ConnectorError {
    ConnectorError::unavailable("local lake", e)
}

/// Writes each `(prefix, lines)` to `<root>/<prefix>part-<uuidv7>.json` atomically: all to
/// temporary names first, then every file and then every folder (for the renames) made durable
/// at once from a thread each, so that the file system commits them together: a batch that
/// spans many hours of event time costs about one flush of the disk, not one per hour.
fn write_parts<L: AsRef<[u8]>>(root: &Path, parts: &[(String, Vec<L>)]) -> Result<()> {
    let mut written = Vec::with_capacity(parts.len());
    for (prefix, lines) in parts {
        let dir = root.join(prefix);
        std::fs::create_dir_all(&dir).map_err(io_err)?;
        let name = format!("part-{}.json", uuid::Uuid::now_v7());
        let tmp = dir.join(format!(".{name}.tmp"));
        // Buffered: two unbuffered writes per event were a system call per line.
        let mut file = std::io::BufWriter::with_capacity(
            256 * 1024,
            std::fs::File::create(&tmp).map_err(io_err)?,
        );
        for line in lines {
            file.write_all(line.as_ref()).map_err(io_err)?;
            file.write_all(b"\n").map_err(io_err)?;
        }
        let file = file.into_inner().map_err(|e| io_err(e.into_error()))?;
        written.push((file, tmp, dir.join(name)));
    }
    all_synced(written.iter().map(|(file, _, _)| file))?;
    let mut dirs = Vec::new();
    for (_, tmp, path) in &written {
        std::fs::rename(tmp, path).map_err(io_err)?;
        if let Some(dir) = path.parent().filter(|d| !dirs.contains(d)) {
            dirs.push(dir);
        }
    }
    let dirs: Vec<std::fs::File> = dirs
        .into_iter()
        .map(std::fs::File::open)
        .collect::<std::io::Result<_>>()
        .map_err(io_err)?;
    all_synced(dirs.iter())
}

/// `fsync`s every file, each from its own thread, and waits for all.
fn all_synced<'f>(files: impl Iterator<Item = &'f std::fs::File>) -> Result<()> {
    std::thread::scope(|scope| {
        let syncs: Vec<_> = files.map(|f| scope.spawn(move || f.sync_all())).collect();
        for sync in syncs {
            sync.join()
                .unwrap_or_else(|_| Err(std::io::Error::other("fsync thread panicked")))
                .map_err(io_err)?;
        }
        Ok(())
    })
}

#[async_trait]
impl LakeWriter for LocalLake {
    async fn write_events(&self, records: &[LakeRecord]) -> Result<()> {
        // `Bytes` handles, not copies: the blocking task needs owned data, and copying every
        // event showed up in the profile.
        let mut by_partition: BTreeMap<String, Vec<bytes::Bytes>> = BTreeMap::new();
        for r in records {
            by_partition
                .entry(event_partition(r.event_time_ms))
                .or_default()
                .push(r.json.clone());
        }
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || {
            let parts: Vec<(String, Vec<bytes::Bytes>)> = by_partition.into_iter().collect();
            write_parts(&root, &parts)
        })
        .await
        .map_err(|e| ConnectorError::unavailable("local lake", e))?
    }

    async fn write_errors(&self, records: &[UndecodableRecord]) -> Result<()> {
        let mut by_partition: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
        for r in records {
            let line = serde_json::json!({
                "received_at_ms": r.received_at_ms,
                "reason": r.reason,
                // Same shape as the Firehose error records: the bytes may not be text.
                "data_base64": base64::engine::general_purpose::STANDARD.encode(&r.data),
            });
            by_partition
                .entry(error_partition(r.received_at_ms))
                .or_default()
                .push(line.to_string().into_bytes());
        }
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || {
            let parts: Vec<(String, Vec<Vec<u8>>)> = by_partition.into_iter().collect();
            write_parts(&root, &parts)
        })
        .await
        .map_err(|e| ConnectorError::unavailable("local lake", e))?
    }
}
