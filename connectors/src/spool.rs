//! A local-disk spool in front of a remote stream: when Kinesis cannot take a write, the records
//! are written to a file and fsynced, so the collector can still acknowledge them durably, and a
//! background task replays the files once the stream takes writes again.
//!
//! The spool is bounded; when it is full the original error goes back to the caller (the
//! collector then answers 503 and the sender keeps its queue). Replayed records arrive after
//! newer ones; the processor sessionizes in event time, so that order does not matter.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::{ConnectorError, Result};
use crate::stream::{EventSink, StreamRecord};

pub struct SpoolingSink {
    inner: Arc<dyn EventSink>,
    dir: PathBuf,
    max_bytes: u64,
    spooled_bytes: AtomicU64,
}

fn io_err(e: std::io::Error) -> ConnectorError {
    ConnectorError::unavailable("spool", e)
}

impl SpoolingSink {
    /// Spools into `dir` (created if missing), at most `max_bytes` at a time.
    pub fn new(inner: Arc<dyn EventSink>, dir: impl Into<PathBuf>, max_bytes: u64) -> Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(io_err)?;
        let existing = spool_files(&dir)?
            .iter()
            .filter_map(|p| p.metadata().ok())
            .map(|m| m.len())
            .sum();
        Ok(SpoolingSink {
            inner,
            dir,
            max_bytes,
            spooled_bytes: AtomicU64::new(existing),
        })
    }

    /// Bytes waiting in the spool.
    pub fn spooled_bytes(&self) -> u64 {
        self.spooled_bytes.load(Ordering::Relaxed)
    }

    async fn spool(&self, records: &[StreamRecord]) -> Result<()> {
        let encoded = encode(records);
        let len = encoded.len() as u64;
        if self.spooled_bytes.fetch_add(len, Ordering::SeqCst) + len > self.max_bytes {
            self.spooled_bytes.fetch_sub(len, Ordering::SeqCst);
            return Err(ConnectorError::unavailable(
                "spool",
                "the local spool is full",
            ));
        }
        let dir = self.dir.clone();
        let written = tokio::task::spawn_blocking(move || write_file(&dir, &encoded))
            .await
            .map_err(|e| ConnectorError::unavailable("spool", e))?;
        if written.is_err() {
            self.spooled_bytes.fetch_sub(len, Ordering::SeqCst);
        }
        written
    }

    /// Sends every spooled file to the stream, oldest first; stops at the first failure.
    /// Returns the number of records delivered.
    pub async fn replay(&self) -> Result<usize> {
        let mut delivered = 0;
        for path in spool_files(&self.dir)? {
            let data = tokio::fs::read(&path).await.map_err(io_err)?;
            let records = decode(&data).ok_or_else(|| ConnectorError::Corrupt {
                what: path.display().to_string(),
                detail: "truncated spool file".into(),
            })?;
            let count = records.len();
            self.inner.append(records).await?;
            tokio::fs::remove_file(&path).await.map_err(io_err)?;
            self.spooled_bytes
                .fetch_sub(data.len() as u64, Ordering::SeqCst);
            delivered += count;
        }
        Ok(delivered)
    }

    /// Replays the spool every `interval` for as long as the returned task runs.
    pub fn spawn_replayer(self: &Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        let sink = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                if sink.spooled_bytes() == 0 {
                    continue;
                }
                match sink.replay().await {
                    Ok(n) if n > 0 => tracing::info!(records = n, "spooled records delivered"),
                    Ok(_) => {}
                    Err(e) => tracing::debug!(error = %e, "stream still unavailable; spool kept"),
                }
            }
        })
    }
}

#[async_trait]
impl EventSink for SpoolingSink {
    async fn append(&self, records: Vec<StreamRecord>) -> Result<()> {
        match self.inner.append(records.clone()).await {
            Ok(()) => Ok(()),
            Err(e) if e.is_retryable() => {
                // What the stream stored already is not spooled (it would be written twice).
                let stored = e.stored_positions();
                let rest: Vec<StreamRecord> = records
                    .into_iter()
                    .enumerate()
                    .filter(|(i, _)| !stored.contains(i))
                    .map(|(_, r)| r)
                    .collect();
                tracing::warn!(error = %e, records = rest.len(), "stream unavailable; spooling to disk");
                self.spool(&rest).await.map_err(|_| e)
            }
            Err(e) => Err(e),
        }
    }

    async fn ready(&self) -> Result<()> {
        self.inner.ready().await
    }
}

fn spool_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io_err)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "spool"))
        .collect();
    // File names are UUIDv7s: sorting by name is sorting by time.
    files.sort();
    Ok(files)
}

fn write_file(dir: &Path, encoded: &[u8]) -> Result<()> {
    use std::io::Write;
    let name = format!("{}.spool", uuid::Uuid::now_v7());
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut file = std::fs::File::create(&tmp).map_err(io_err)?;
    file.write_all(encoded).map_err(io_err)?;
    file.sync_all().map_err(io_err)?;
    std::fs::rename(&tmp, dir.join(name)).map_err(io_err)?;
    // The rename itself must reach the disk before the write counts as durable.
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err)
}

/// Length-prefixed records: `u32 key length, key, u32 data length, data`, big-endian.
fn encode(records: &[StreamRecord]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        out.extend_from_slice(&(r.partition_key.len() as u32).to_be_bytes());
        out.extend_from_slice(r.partition_key.as_bytes());
        out.extend_from_slice(&(r.data.len() as u32).to_be_bytes());
        out.extend_from_slice(&r.data);
    }
    out
}

fn decode(mut buf: &[u8]) -> Option<Vec<StreamRecord>> {
    fn take<'a>(buf: &mut &'a [u8]) -> Option<&'a [u8]> {
        let len = u32::from_be_bytes(buf.get(..4)?.try_into().ok()?) as usize;
        let field = buf.get(4..4 + len)?;
        *buf = &buf[4 + len..];
        Some(field)
    }
    let mut records = Vec::new();
    while !buf.is_empty() {
        let key = String::from_utf8(take(&mut buf)?.to_vec()).ok()?;
        let data = Bytes::copy_from_slice(take(&mut buf)?);
        records.push(StreamRecord {
            partition_key: key,
            data,
        });
    }
    Some(records)
}

#[cfg(test)]
mod tests;
