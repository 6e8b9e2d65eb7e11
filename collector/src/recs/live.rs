//! The collector's read-only copy of the recommendation model, swapped whole when the processor
//! saved a newer version.
//!
//! A background task polls the [`ModelStore`]'s version (one key read) every `interval` and
//! loads and decodes the snapshot only when it moved; requests clone an `Arc` under a read lock
//! held for nanoseconds and score without any lock.

use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use retailmind_connectors::{ConnectorError, ModelStore};
use retailmind_recommend::{ModelConfig, ModelState};

use crate::metrics as m;

/// One loaded version of the model.
pub struct Loaded {
    pub model: ModelState,
    /// The stored version; 0 for the empty model before the first load.
    pub version: u64,
}

pub struct LiveModel {
    current: RwLock<Arc<Loaded>>,
}

impl Default for LiveModel {
    fn default() -> Self {
        LiveModel {
            current: RwLock::new(Arc::new(Loaded {
                model: ModelState::new(ModelConfig::default()),
                version: 0,
            })),
        }
    }
}

impl LiveModel {
    /// The model to answer from now.
    pub fn current(&self) -> Arc<Loaded> {
        match self.current.read() {
            Ok(current) => current.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Loads the stored model if its version differs from ours; returns whether it did.
    pub async fn reload(&self, store: &dyn ModelStore, name: &str) -> Result<bool, ConnectorError> {
        let have = self.current().version;
        match store.version(name).await? {
            Some(stored) if stored != have => {}
            _ => return Ok(false),
        }
        let Some(stored) = store.load(name).await? else {
            return Ok(false);
        };
        let version = stored.version;
        // Decoding a large snapshot takes milliseconds: keep it off the request threads.
        let model = tokio::task::spawn_blocking(move || ModelState::from_snapshot(&stored.bytes))
            .await
            .map_err(|e| ConnectorError::unavailable("model decoding", e))?
            .map_err(|e| ConnectorError::Corrupt {
                what: format!("model {name} version {version}"),
                detail: e.to_string(),
            })?;
        let loaded = Arc::new(Loaded { model, version });
        match self.current.write() {
            Ok(mut current) => *current = loaded,
            Err(poisoned) => *poisoned.into_inner() = loaded,
        }
        metrics::gauge!(m::MODEL_VERSION).set(version as f64);
        tracing::info!(name, version, "recommendation model reloaded");
        Ok(true)
    }

    /// Polls `store` every `interval` until this model is dropped.
    pub fn spawn_reloader(
        self: &Arc<Self>,
        store: Arc<dyn ModelStore>,
        name: String,
        interval: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let weak: Weak<LiveModel> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(live) = weak.upgrade() else {
                    return;
                };
                if let Err(e) = live.reload(store.as_ref(), &name).await {
                    metrics::counter!(m::MODEL_RELOAD_FAILURES).increment(1);
                    tracing::warn!(name, error = %e, "recommendation model not reloaded; keeping the current one");
                }
            }
        })
    }
}
