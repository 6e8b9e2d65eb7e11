//! What the processor's integration tests share.

use std::path::{Path, PathBuf};

use retailmind_connectors::{embedded, Backend};

/// Every file of the embedded lake in `dir` under `prefix` (`events`, `errors`), temporaries of
/// a write in flight left out.
pub fn lake_files(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut folders = vec![dir.join("lake").join(prefix)];
    while let Some(folder) = folders.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.flatten() {
            if entry.path().is_dir() {
                folders.push(entry.path());
            } else if !entry.file_name().to_string_lossy().starts_with('.') {
                files.push(entry.path());
            }
        }
    }
    files
}

/// The checkpoint `consumer` stored for the embedded log's one shard.
#[allow(dead_code)] // not every test binary that shares this module reads checkpoints
pub async fn embedded_checkpoint(backend: &Backend, consumer: &str) -> Option<String> {
    backend
        .checkpoints
        .get(consumer, embedded::SHARD_ID)
        .await
        .unwrap()
}
