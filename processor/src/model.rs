//! The recommendation model, kept current from the stream and saved for the collector.
//!
//! Every decoded event is folded in as it passes (`product_view` → a click of its session,
//! `purchase` → an order), so the model is incremental, never rebuilt by a batch job. The
//! snapshot is saved through the [`ModelStore`] when it changed and at least `save_interval`
//! passed (the collector polls the stored version and reloads), and once more on shutdown.
//!
//! Replays after a crash would count clicks twice; the ids of recently folded events are kept
//! (in memory, bounded) so a replay of the last batches changes nothing.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use retailmind_connectors::{ConnectorError, ModelStore};
use retailmind_recommend::{ModelConfig, ModelState};
use retailmind_schema::{Event, Payload};
use tokio::sync::Mutex;
use tracing::{info, warn};
use uuid::Uuid;

use crate::metrics as m;

/// Event ids remembered against replays.
const REMEMBERED_EVENTS: usize = 200_000;

/// What one event teaches the model.
#[derive(Debug, PartialEq)]
pub enum Observation<'e> {
    /// `item` was looked at in `session` at `time` (Unix seconds).
    Click {
        session: &'e str,
        item: &'e str,
        time: f64,
    },
    /// These items were bought together.
    Order(Vec<&'e str>),
}

/// What `event` teaches the model, if anything. The session is the tracker's session id, or the
/// visitor when the event has none.
pub fn observation(event: &Event) -> Option<Observation<'_>> {
    match &event.payload {
        Payload::ProductView(product) => Some(Observation::Click {
            session: event.session_id.as_deref().unwrap_or(&event.anonymous_id),
            item: &product.product_id,
            time: event.timestamp as f64 / 1000.0,
        }),
        Payload::Purchase(purchase) if !purchase.items.is_empty() => Some(Observation::Order(
            purchase
                .items
                .iter()
                .map(|line| line.product.product_id.as_str())
                .collect(),
        )),
        _ => None,
    }
}

struct Kept {
    model: ModelState,
    /// The stored version this model continues; 0 before the first save.
    version: u64,
    loaded: bool,
    dirty: bool,
    last_save: Option<Instant>,
    seen: HashSet<Uuid>,
    seen_order: VecDeque<Uuid>,
}

impl Kept {
    fn first_time(&mut self, id: Uuid) -> bool {
        if !self.seen.insert(id) {
            return false;
        }
        self.seen_order.push_back(id);
        if self.seen_order.len() > REMEMBERED_EVENTS {
            if let Some(old) = self.seen_order.pop_front() {
                self.seen.remove(&old);
            }
        }
        true
    }
}

/// The processor's copy of the model and its persistence.
pub struct ModelKeeper {
    store: Arc<dyn ModelStore>,
    name: String,
    save_interval: Duration,
    kept: Mutex<Kept>,
}

impl ModelKeeper {
    pub fn new(store: Arc<dyn ModelStore>, name: &str, save_interval: Duration) -> Self {
        ModelKeeper {
            store,
            name: name.to_owned(),
            save_interval,
            kept: Mutex::new(Kept {
                model: ModelState::new(ModelConfig::default()),
                version: 0,
                loaded: false,
                dirty: false,
                last_save: None,
                seen: HashSet::new(),
                seen_order: VecDeque::new(),
            }),
        }
    }

    /// Loads the stored snapshot once, before the first event is folded in. A snapshot that
    /// cannot be decoded (another build's format) is replaced by a fresh model, with a warning.
    async fn ensure_loaded(&self, kept: &mut Kept) -> Result<(), ConnectorError> {
        if kept.loaded {
            return Ok(());
        }
        if let Some(stored) = self.store.load(&self.name).await? {
            match ModelState::from_snapshot(&stored.bytes) {
                Ok(model) => {
                    info!(name = %self.name, version = stored.version, bytes = stored.bytes.len(), "model loaded");
                    kept.model = model;
                }
                Err(e) => {
                    warn!(name = %self.name, version = stored.version, error = %e, "stored model unreadable; starting afresh")
                }
            }
            kept.version = stored.version;
        }
        kept.loaded = true;
        Ok(())
    }

    /// Folds `events` into the model; returns how many taught it something.
    pub async fn observe<'e>(
        &self,
        events: impl IntoIterator<Item = &'e Event>,
    ) -> Result<usize, ConnectorError> {
        let mut kept = self.kept.lock().await;
        self.ensure_loaded(&mut kept).await?;
        let mut observed = 0;
        for event in events {
            let Some(observation) = observation(event) else {
                continue;
            };
            if !kept.first_time(event.event_id) {
                continue;
            }
            match observation {
                Observation::Click {
                    session,
                    item,
                    time,
                } => kept.model.observe_click(session, item, time),
                Observation::Order(items) => kept.model.observe_order(&items),
            }
            observed += 1;
        }
        kept.dirty |= observed > 0;
        metrics::counter!(m::MODEL_OBSERVATIONS).increment(observed as u64);
        Ok(observed)
    }

    /// Saves the model if it changed and the save interval has passed since the last save.
    pub async fn save_if_due(&self) -> Result<bool, ConnectorError> {
        self.save_when(false).await
    }

    /// Saves the model if it changed (on shutdown and after a drain).
    pub async fn save(&self) -> Result<bool, ConnectorError> {
        self.save_when(true).await
    }

    async fn save_when(&self, now: bool) -> Result<bool, ConnectorError> {
        let mut kept = self.kept.lock().await;
        let due = kept
            .last_save
            .is_none_or(|at| at.elapsed() >= self.save_interval);
        if !kept.dirty || !(now || due) {
            return Ok(false);
        }
        let started = Instant::now();
        let bytes = kept.model.to_snapshot();
        let mut version = kept.version + 1;
        if let Err(ConnectorError::Conflict { what }) =
            self.store.save(&self.name, version, &bytes).await
        {
            // Another instance saved its own model: one model writer per stream is the
            // supported set-up, so the last writer wins rather than stalling both.
            warn!(name = %self.name, %what, "model saved by someone else meanwhile; overwriting");
            version = self.store.version(&self.name).await?.unwrap_or(0) + 1;
            self.store.save(&self.name, version, &bytes).await?;
        }
        kept.version = version;
        kept.dirty = false;
        kept.last_save = Some(Instant::now());
        metrics::histogram!(m::MODEL_SAVE_SECONDS).record(started.elapsed().as_secs_f64());
        metrics::gauge!(m::MODEL_SNAPSHOT_BYTES).set(bytes.len() as f64);
        tracing::debug!(name = %self.name, version, bytes = bytes.len(), "model saved");
        Ok(true)
    }

    /// The version last saved or loaded.
    pub async fn version(&self) -> u64 {
        self.kept.lock().await.version
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(json: serde_json::Value) -> Event {
        serde_json::from_value(json).expect("a valid event")
    }

    #[test]
    fn product_views_are_clicks_and_purchases_orders() {
        let view = event(serde_json::json!({
            "event_id": "01936a1c-3b5e-7cc4-9a1e-000000000001", "type": "product_view",
            "anonymous_id": "a-1", "session_id": "s-1", "timestamp": 1_764_064_800_000i64,
            "context": {"page": {"url": "https://shop.example/p/1"}},
            "properties": {"product_id": "p-1"}
        }));
        assert_eq!(
            observation(&view),
            Some(Observation::Click {
                session: "s-1",
                item: "p-1",
                time: 1_764_064_800.0
            })
        );
        let order = event(serde_json::json!({
            "event_id": "01936a1c-3b5e-7cc4-9a1e-000000000002", "type": "purchase",
            "anonymous_id": "a-1", "timestamp": 1_764_064_800_000i64,
            "context": {"page": {"url": "https://shop.example/done"}},
            "properties": {"order_id": "o-1", "revenue_minor": 100, "currency": "EUR",
                "items": [{"product_id": "p-1", "quantity": 1}, {"product_id": "p-2", "quantity": 2}]}
        }));
        assert_eq!(
            observation(&order),
            Some(Observation::Order(vec!["p-1", "p-2"]))
        );
    }
}
