//! The lake as the ETL sees it: objects under keys, listed by prefix. [`LocalStore`] is the
//! embedded lake folder (the layout `retailmind_connectors::embedded::lake` writes), [`S3Store`]
//! the lake bucket.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;

use crate::etl::manifest::RawObject;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{store}: {operation} {key}: {reason}")]
    Io {
        store: &'static str,
        operation: &'static str,
        key: String,
        reason: String,
    },
}

impl StoreError {
    fn io(
        store: &'static str,
        operation: &'static str,
        key: &str,
        e: impl std::fmt::Display,
    ) -> Self {
        StoreError::Io {
            store,
            operation,
            key: key.to_owned(),
            reason: e.to_string(),
        }
    }
}

/// Objects in the lake.
#[async_trait]
pub trait LakeStore: Send + Sync {
    /// Every object under `prefix`, in key order. Objects being written (names starting with
    /// `.`, the local lake's temporary files) are left out.
    async fn list(&self, prefix: &str) -> Result<Vec<RawObject>, StoreError>;
    /// The object's bytes, `None` when there is none.
    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError>;
    /// Writes the whole object; a reader sees the old or the new one, never a part.
    async fn put(&self, key: &str, body: Bytes) -> Result<(), StoreError>;
    async fn delete(&self, key: &str) -> Result<(), StoreError>;
}

/// The lake in a local folder.
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    pub fn new(root: impl Into<PathBuf>) -> LocalStore {
        LocalStore { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &str) -> Result<PathBuf, StoreError> {
        // Keys come from listings and from our own layout; refuse anything that could leave the
        // folder all the same.
        if key.split('/').any(|part| part == ".." || part.is_empty()) || key.starts_with('/') {
            return Err(StoreError::io(
                "local lake",
                "resolve",
                key,
                "not a lake key",
            ));
        }
        Ok(self.root.join(key))
    }
}

const LOCAL: &str = "local lake";

fn list_dir(root: &Path, dir: &Path, out: &mut Vec<RawObject>) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        let meta = entry.metadata()?;
        if meta.is_dir() {
            list_dir(root, &path, out)?;
        } else if let Ok(rel) = path.strip_prefix(root) {
            let key = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            out.push(RawObject {
                key,
                size: meta.len(),
            });
        }
    }
    Ok(())
}

#[async_trait]
impl LakeStore for LocalStore {
    async fn list(&self, prefix: &str) -> Result<Vec<RawObject>, StoreError> {
        // Walk from the deepest folder the prefix names, then filter by the whole prefix.
        let dir_part = prefix.rsplit_once('/').map_or("", |(d, _)| d);
        let start = if dir_part.is_empty() {
            self.root.clone()
        } else {
            self.path(dir_part)?
        };
        let root = self.root.clone();
        let prefix = prefix.to_owned();
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            list_dir(&root, &start, &mut out)
                .map_err(|e| StoreError::io(LOCAL, "list", &prefix, e))?;
            out.retain(|o| o.key.starts_with(&prefix));
            out.sort_by(|a, b| a.key.cmp(&b.key));
            Ok(out)
        })
        .await
        .map_err(|e| StoreError::io(LOCAL, "list", "", e))?
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        match tokio::fs::read(self.path(key)?).await {
            Ok(bytes) => Ok(Some(Bytes::from(bytes))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io(LOCAL, "get", key, e)),
        }
    }

    async fn put(&self, key: &str, body: Bytes) -> Result<(), StoreError> {
        let path = self.path(key)?;
        let key = key.to_owned();
        tokio::task::spawn_blocking(move || {
            use std::io::Write;
            let err = |e: std::io::Error| StoreError::io(LOCAL, "put", &key, e);
            let dir = path.parent().unwrap_or(Path::new("."));
            std::fs::create_dir_all(dir).map_err(err)?;
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            // A dot and `.tmp`: readers skip it, and the embedded backend's start-up sweep
            // (`LocalLake::remove_stale_temporaries`) removes it if a kill left it behind.
            let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
            let mut file = std::fs::File::create(&tmp).map_err(err)?;
            file.write_all(&body).map_err(err)?;
            file.sync_all().map_err(err)?;
            std::fs::rename(&tmp, &path).map_err(err)
        })
        .await
        .map_err(|e| StoreError::io(LOCAL, "put", "", e))?
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        match tokio::fs::remove_file(self.path(key)?).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::io(LOCAL, "delete", key, e)),
        }
    }
}

/// The lake in an S3 bucket.
pub struct S3Store {
    client: aws_sdk_s3::Client,
    bucket: String,
}

const S3: &str = "s3";

impl S3Store {
    pub fn new(client: aws_sdk_s3::Client, bucket: impl Into<String>) -> S3Store {
        S3Store {
            client,
            bucket: bucket.into(),
        }
    }

    /// A client from the usual AWS chain in `region`, against `endpoint_url` when set (moto,
    /// LocalStack: path-style addressing then).
    pub async fn connect(region: &str, endpoint_url: Option<&str>, bucket: &str) -> S3Store {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(region.to_owned()));
        if let Some(url) = endpoint_url {
            loader = loader.endpoint_url(url);
        }
        let sdk = loader.load().await;
        let conf = aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(endpoint_url.is_some())
            .build();
        S3Store::new(aws_sdk_s3::Client::from_conf(conf), bucket)
    }
}

fn sdk_reason<E: std::error::Error + 'static>(e: &aws_sdk_s3::error::SdkError<E>) -> String {
    use std::error::Error;
    let mut reason = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        reason.push_str(": ");
        reason.push_str(&s.to_string());
        source = s.source();
    }
    reason
}

#[async_trait]
impl LakeStore for S3Store {
    async fn list(&self, prefix: &str) -> Result<Vec<RawObject>, StoreError> {
        let mut out = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| StoreError::io(S3, "list", prefix, sdk_reason(&e)))?;
            for object in page.contents() {
                let Some(key) = object.key() else { continue };
                if key.rsplit('/').next().is_some_and(|n| n.starts_with('.')) {
                    continue;
                }
                out.push(RawObject {
                    key: key.to_owned(),
                    size: object
                        .size()
                        .and_then(|s| u64::try_from(s).ok())
                        .unwrap_or(0),
                });
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        let answer = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await;
        match answer {
            Ok(object) => {
                let body = object
                    .body
                    .collect()
                    .await
                    .map_err(|e| StoreError::io(S3, "get", key, e))?;
                Ok(Some(body.into_bytes()))
            }
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Ok(None),
            Err(e) => Err(StoreError::io(S3, "get", key, sdk_reason(&e))),
        }
    }

    async fn put(&self, key: &str, body: Bytes) -> Result<(), StoreError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(body.into())
            .send()
            .await
            .map_err(|e| StoreError::io(S3, "put", key, sdk_reason(&e)))?;
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| StoreError::io(S3, "delete", key, sdk_reason(&e)))?;
        Ok(())
    }
}
