//! The embedded lake: a local folder in the same key layout as the S3 lake, one newline-JSON
//! file per partition per write, each written to a temporary name and renamed into place so a
//! reader never sees half a file.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use crate::error::{ConnectorError, Result};
use crate::lake::{
    error_line, error_partition, event_partition, LakeRecord, LakeWriter, UndecodableRecord,
};

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

    /// Removes the files that writes interrupted between writing and renaming (a killed process)
    /// left under temporary names, if older than `age`; returns how many. Readers skip them
    /// anyway; this gives back the disk. Every writer of the local lake names its temporaries
    /// `.<anything>.tmp`: this one `.part-….json.tmp`, the analytics job's store
    /// `.<file>.<pid>.tmp` (`retailmind_analytics::store::LocalStore`), so one sweep serves both.
    pub fn remove_stale_temporaries(&self, age: Duration) -> std::io::Result<usize> {
        let now = SystemTime::now();
        let mut removed = 0;
        let mut folders = vec![self.root.clone()];
        while let Some(folder) = folders.pop() {
            let entries = match std::fs::read_dir(&folder) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            for entry in entries {
                let entry = entry?;
                if entry.file_type()?.is_dir() {
                    folders.push(entry.path());
                    continue;
                }
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if !(name.starts_with('.') && name.ends_with(".tmp")) {
                    continue;
                }
                let modified = entry.metadata()?.modified()?;
                if now.duration_since(modified).unwrap_or_default() < age {
                    continue;
                }
                match std::fs::remove_file(entry.path()) {
                    Ok(()) => removed += 1,
                    // Another sweep got there first.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(removed)
    }
}

const MS_PER_HOUR: i64 = 3_600_000;

/// Temporary files older than this are left over by a write that died: a write renames its
/// files within milliseconds, and a younger one may be another process's write in flight.
pub const STALE_TEMPORARY: Duration = Duration::from_secs(3600);

fn io_err(e: std::io::Error) -> ConnectorError {
    ConnectorError::unavailable("local lake", e)
}

/// Files made durable at once at most (one thread and one descriptor each).
const SYNCED_AT_ONCE: usize = 32;

/// Writes each `(prefix, lines)` to `<root>/<prefix>part-<uuidv7>.json` atomically: all to
/// temporary names first, then every file and then every folder (for the renames, and the
/// parents of folders just made) made durable at once from a thread each, so that the file
/// system commits them together: a batch that spans many hours of event time costs about one
/// flush of the disk, not one per hour. What a failed write left under temporary names is
/// removed.
fn write_parts<L: AsRef<[u8]>>(root: &Path, parts: &[(String, Vec<L>)]) -> Result<()> {
    for group in parts.chunks(SYNCED_AT_ONCE) {
        let mut temporary = Vec::new();
        let written = write_group(root, group, &mut temporary);
        if written.is_err() {
            for tmp in &temporary {
                let _ = std::fs::remove_file(tmp);
            }
        }
        written?;
    }
    Ok(())
}

fn write_group<L: AsRef<[u8]>>(
    root: &Path,
    parts: &[(String, Vec<L>)],
    temporary: &mut Vec<PathBuf>,
) -> Result<()> {
    let mut written = Vec::with_capacity(parts.len());
    let mut dirs: Vec<PathBuf> = Vec::new();
    for (prefix, lines) in parts {
        let dir = root.join(prefix);
        // A folder made now exists for sure only once its parent is durable too.
        let mut made = Some(dir.as_path());
        while let Some(folder) = made.filter(|f| !f.exists() && *f != root) {
            if let Some(parent) = folder.parent() {
                push_new(&mut dirs, parent);
            }
            made = folder.parent();
        }
        std::fs::create_dir_all(&dir).map_err(io_err)?;
        let name = format!("part-{}.json", uuid::Uuid::now_v7());
        let tmp = dir.join(format!(".{name}.tmp"));
        temporary.push(tmp.clone());
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
    for (_, tmp, path) in &written {
        std::fs::rename(tmp, path).map_err(io_err)?;
        if let Some(dir) = path.parent() {
            push_new(&mut dirs, dir);
        }
    }
    drop(written);
    let dirs: Vec<std::fs::File> = dirs
        .iter()
        .map(std::fs::File::open)
        .collect::<std::io::Result<_>>()
        .map_err(io_err)?;
    all_synced(dirs.iter())
}

fn push_new(dirs: &mut Vec<PathBuf>, dir: &Path) {
    if !dirs.iter().any(|d| d == dir) {
        dirs.push(dir.to_path_buf());
    }
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
        // By hour first, and the partition's name made once per hour: formatting a date for
        // each of thousands of events cost more than grouping them.
        let mut by_hour: BTreeMap<i64, Vec<bytes::Bytes>> = BTreeMap::new();
        for r in records {
            by_hour
                .entry(r.event_time_ms.div_euclid(MS_PER_HOUR))
                .or_default()
                .push(r.json.clone());
        }
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || {
            let parts: Vec<(String, Vec<bytes::Bytes>)> = by_hour
                .into_iter()
                .map(|(hour, lines)| (event_partition(hour.saturating_mul(MS_PER_HOUR)), lines))
                .collect();
            write_parts(&root, &parts)
        })
        .await
        .map_err(|e| ConnectorError::unavailable("local lake", e))?
    }

    async fn write_errors(&self, records: &[UndecodableRecord]) -> Result<()> {
        let mut by_partition: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
        for r in records {
            by_partition
                .entry(error_partition(r.received_at_ms))
                .or_default()
                .push(error_line(r));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_temporary_files_older_than_the_age_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let lake = LocalLake::new(dir.path().join("lake"));
        assert_eq!(
            lake.remove_stale_temporaries(STALE_TEMPORARY).unwrap(),
            0,
            "no lake yet"
        );
        let hour = dir.path().join("lake/events/dt=2026-12-01/hour=03");
        std::fs::create_dir_all(&hour).unwrap();
        let two_hours_ago = SystemTime::now() - Duration::from_secs(7200);
        let file = |name: &str, modified: SystemTime| {
            let f = std::fs::File::create(hour.join(name)).unwrap();
            f.set_modified(modified).unwrap();
        };
        file(".part-a.json.tmp", two_hours_ago);
        file(".part-b.json.tmp", SystemTime::now());
        file("part-c.json", two_hours_ago);
        // The analytics job's store, killed between its write and its rename.
        file(".part-00000.parquet.4242.tmp", two_hours_ago);
        file("notes.tmp", two_hours_ago);
        file(".hidden", two_hours_ago);
        assert_eq!(lake.remove_stale_temporaries(STALE_TEMPORARY).unwrap(), 2);
        let mut left: Vec<String> = std::fs::read_dir(&hour)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [".hidden", ".part-b.json.tmp", "notes.tmp", "part-c.json"]
        );
    }

    /// More partitions than are made durable at once: every one gets its file with its lines,
    /// and no temporary file stays behind.
    #[test]
    fn every_partition_gets_its_file_and_nothing_temporary_stays() {
        let dir = tempfile::tempdir().unwrap();
        let parts: Vec<(String, Vec<String>)> = (0..SYNCED_AT_ONCE + 8)
            .map(|h| {
                (
                    format!("events/dt=2026-12-{:02}/hour={:02}/", 1 + h / 24, h % 24),
                    vec![format!("{{\"n\":{h}}}"), format!("{{\"m\":{h}}}")],
                )
            })
            .collect();
        write_parts(dir.path(), &parts).unwrap();
        for (h, (prefix, lines)) in parts.iter().enumerate() {
            let files: Vec<PathBuf> = std::fs::read_dir(dir.path().join(prefix))
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            assert_eq!(files.len(), 1, "hour {h}: {files:?}");
            let name = files[0].file_name().unwrap().to_string_lossy().into_owned();
            assert!(
                name.starts_with("part-") && name.ends_with(".json"),
                "{name}"
            );
            let text = std::fs::read_to_string(&files[0]).unwrap();
            assert_eq!(text, format!("{}\n{}\n", lines[0], lines[1]));
        }
    }
}
