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
    /// How long an append waits for the stream before spooling; `None`: for its verdict.
    patience: Option<Duration>,
}

fn io_err(e: std::io::Error) -> ConnectorError {
    ConnectorError::unavailable("spool", e)
}

impl SpoolingSink {
    /// Spools into `dir` (created if missing), at most `max_bytes` at a time.
    pub fn new(inner: Arc<dyn EventSink>, dir: impl Into<PathBuf>, max_bytes: u64) -> Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(io_err)?;
        // A temporary file is what a crash left before its rename: that write was never
        // acknowledged (its sender got no answer and still holds the events).
        for entry in std::fs::read_dir(&dir).map_err(io_err)?.flatten() {
            let name = entry.file_name();
            if name.to_string_lossy().ends_with(".spool.tmp") {
                std::fs::remove_file(entry.path()).map_err(io_err)?;
            }
        }
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
            patience: None,
        })
    }

    /// Spools what the stream has not acknowledged within `patience` instead of waiting for its
    /// retries to end: a sender's request cannot wait that long (API Gateway gives it 29 s). The
    /// append given up on may have stored some records, which are then spooled as well and
    /// replayed twice; consumers drop repeated event ids.
    pub fn spooling_after(mut self, patience: Duration) -> Self {
        self.patience = Some(patience);
        self
    }

    /// Bytes waiting in the spool.
    pub fn spooled_bytes(&self) -> u64 {
        self.spooled_bytes.load(Ordering::Relaxed)
    }

    async fn spool(&self, records: &[StreamRecord]) -> Result<()> {
        let encoded = encode(records);
        let len = encoded.len() as u64;
        if self.spooled_bytes.fetch_add(len, Ordering::SeqCst) + len > self.max_bytes {
            self.release(len);
            return Err(ConnectorError::unavailable(
                "spool",
                "the local spool is full",
            ));
        }
        let dir = self.dir.clone();
        let written = tokio::task::spawn_blocking(move || write_file(&dir, &encoded))
            .await
            .map_err(|e| ConnectorError::unavailable("spool", e))?;
        written.map_err(|failed| {
            // A file renamed into place before the failure (its folder's fsync failed) is
            // replayed like any other, so its bytes stay counted; the sender still hears of
            // the failure, and a consumer drops the copy its retry makes.
            if !failed.in_place {
                self.release(len);
            }
            failed.error
        })
    }

    /// Takes `len` bytes off the spool's count, never below zero: should the count miss a file
    /// (one put in the folder after the spool started, say), releasing it must not wrap the
    /// count around.
    fn release(&self, len: u64) {
        let _ = self
            .spooled_bytes
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |bytes| {
                Some(bytes.saturating_sub(len))
            });
    }

    /// Sends every spooled file to the stream, oldest first; stops at the first failure.
    /// Returns the number of records delivered.
    ///
    /// A file the stream took in part is written again with only the rest, so the next replay
    /// does not send the stored records twice. A file that cannot be read back (the disk
    /// damaged it: files are renamed into place only once complete) is moved to `corrupt/` for
    /// a person to look at, rather than holding back every file after it for good.
    pub async fn replay(&self) -> Result<usize> {
        let mut delivered = 0;
        for path in spool_files(&self.dir)? {
            let data = tokio::fs::read(&path).await.map_err(io_err)?;
            let Some(records) = decode(&data) else {
                self.set_aside(&path, data.len() as u64).await?;
                continue;
            };
            let count = records.len();
            if let Err(e) = self.inner.append(records.clone()).await {
                let stored = e.stored_positions();
                if !stored.is_empty() {
                    let encoded = encode(&not_stored(records, stored));
                    let shrunk = (data.len() - encoded.len()) as u64;
                    let target = path.clone();
                    let rewritten =
                        tokio::task::spawn_blocking(move || replace_file(&target, &encoded))
                            .await
                            .map_err(|e| ConnectorError::unavailable("spool", e))?;
                    match rewritten {
                        Ok(()) => self.release(shrunk),
                        Err(failed) => {
                            if failed.in_place {
                                self.release(shrunk);
                            }
                            return Err(failed.error);
                        }
                    }
                }
                return Err(e);
            }
            tokio::fs::remove_file(&path).await.map_err(io_err)?;
            self.release(data.len() as u64);
            delivered += count;
        }
        Ok(delivered)
    }

    /// Moves an unreadable spool file to `corrupt/`, out of the replay's way.
    async fn set_aside(&self, path: &Path, len: u64) -> Result<()> {
        let aside = self.dir.join(CORRUPT_DIR);
        tokio::fs::create_dir_all(&aside).await.map_err(io_err)?;
        let name = path.file_name().unwrap_or_default();
        tokio::fs::rename(path, aside.join(name))
            .await
            .map_err(io_err)?;
        self.release(len);
        tracing::error!(
            file = %path.display(),
            moved_to = %aside.display(),
            "spool file cannot be read back; set aside, the rest of the spool goes on"
        );
        Ok(())
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
                    Err(e) if e.is_retryable() => {
                        tracing::debug!(error = %e, "stream still unavailable; spool kept")
                    }
                    Err(e) => tracing::error!(error = %e, "spool replay failed; spool kept"),
                }
            }
        })
    }
}

#[async_trait]
impl EventSink for SpoolingSink {
    async fn append(&self, records: Vec<StreamRecord>) -> Result<()> {
        let appended = self.inner.append(records.clone());
        let appended = match self.patience {
            None => appended.await,
            Some(patience) => tokio::time::timeout(patience, appended)
                .await
                .unwrap_or_else(|_| {
                    Err(ConnectorError::unavailable(
                        "stream",
                        format!("no answer within {patience:?}"),
                    ))
                }),
        };
        match appended {
            Ok(()) => Ok(()),
            Err(e) if e.is_retryable() => {
                // What the stream stored already is not spooled (it would be written twice).
                let stored = e.stored_positions();
                let rest = not_stored(records, stored);
                tracing::warn!(error = %e, records = rest.len(), "stream unavailable; spooling to disk");
                // The sender hears of the stream's failure, which its retry waits out; the
                // spool's own (full, a disk error) is for the operator.
                self.spool(&rest).await.map_err(|spooling| {
                    tracing::warn!(error = %spooling, "records not spooled either; the sender is told to retry");
                    e
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Ready while the stream is, or while it is not but the spool has room left (a tenth of
    /// it at least): writes are taken and acknowledged either way, so a load balancer should
    /// keep sending them here rather than pull every instance in an outage the spool exists for.
    async fn ready(&self) -> Result<()> {
        let Err(down) = self.inner.ready().await else {
            return Ok(());
        };
        let room = self.max_bytes.saturating_sub(self.spooled_bytes());
        if room >= self.max_bytes / 10 {
            tracing::warn!(error = %down, room, "the stream is not ready; the spool takes writes");
            return Ok(());
        }
        Err(down)
    }
}

/// `records` but those at the positions an append `stored`.
fn not_stored(records: Vec<StreamRecord>, stored: &[usize]) -> Vec<StreamRecord> {
    records
        .into_iter()
        .enumerate()
        .filter(|(i, _)| !stored.contains(i))
        .map(|(_, r)| r)
        .collect()
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

/// Where unreadable spool files are moved, inside the spool's directory.
const CORRUPT_DIR: &str = "corrupt";

fn write_file(dir: &Path, encoded: &[u8]) -> std::result::Result<(), ReplaceFailed> {
    replace_file(
        &dir.join(format!("{}.spool", uuid::Uuid::now_v7())),
        encoded,
    )
}

/// A [`replace_file`] that failed, and whether it failed after the new content was renamed into
/// place (the path then holds it, durable or not).
struct ReplaceFailed {
    error: ConnectorError,
    in_place: bool,
}

/// Writes `path` whole or not at all: a temporary file, fsynced, renamed over it.
fn replace_file(path: &Path, encoded: &[u8]) -> std::result::Result<(), ReplaceFailed> {
    use std::io::Write;
    let failed = |in_place| {
        move |e: std::io::Error| ReplaceFailed {
            error: io_err(e),
            in_place,
        }
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut file = std::fs::File::create(&tmp).map_err(failed(false))?;
    file.write_all(encoded).map_err(failed(false))?;
    file.sync_all().map_err(failed(false))?;
    std::fs::rename(&tmp, path).map_err(failed(false))?;
    // The rename itself must reach the disk before the write counts as durable.
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(failed(true))
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
