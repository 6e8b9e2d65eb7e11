//! The recommendation model, kept current from the stream and saved for the collector.
//!
//! Every decoded event is folded in as it passes (`product_view` → a click of its session and
//! its product's category, `purchase` → an order and what its session bought), so the model is
//! incremental, never rebuilt by a batch job. The collector serves from it what its own memory
//! of live sessions lacks (after a restart, or a shopper whose last batches another instance
//! took). The
//! snapshot is saved through the [`ModelStore`] when it changed and at least `save_interval`
//! passed (the collector polls the stored version and reloads), and once more on shutdown.
//!
//! The stream hands out records again: a batch retried after a failed write, and after a
//! restart or a lease handover every record after the last checkpoint, which the model may
//! hold already (it is saved on its own clock, not the checkpoint's). So the model keeps, per
//! shard, the ranges of records it holds ([`stream_positions`]), saved in the same write as the
//! snapshot, and skips every record in them. That needs each batch of a shard folded whole and
//! in order, which the polling loop does and Lambda does with the event source mapping's
//! parallelization factor at 1 (its default). The ids of recently folded events are also kept
//! (in memory, bounded) against an event the tracker sent twice, which comes in two records.
//!
//! Several processor instances share one stored model although each reads only its shards:
//! a save is conditional on the version this instance last saved or loaded, and when another
//! instance saved in between, the stored model is loaded, this instance's observations since
//! its last save that it does not hold already (by its positions: a shard that changed hands
//! was read twice) are folded into it, and that is saved (and kept). A shopper's events all
//! live on one shard, so no session is folded by two instances. With one instance nothing is
//! ever reloaded.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use retailmind_connectors::{ConnectorError, ModelStore, StreamPositions};
use retailmind_recommend::{ModelConfig, ModelState};
use retailmind_schema::{Event, Payload};
use tokio::sync::Mutex;
use tracing::{info, warn};
use uuid::Uuid;

use crate::metrics as m;
use crate::stream_positions::{self, Span};

/// Event ids remembered against replays.
const REMEMBERED_EVENTS: usize = 200_000;

/// What one event teaches the model: borrowed from the event, or owned (`String`) to be kept
/// until the model that holds it is saved, to fold it into another instance's save if that one
/// came first.
#[derive(Clone, Debug, PartialEq)]
pub enum Observation<S> {
    /// `item` (of `category`, when the event names one) was looked at in `session` at `time`
    /// (Unix seconds).
    Click {
        session: S,
        item: S,
        time: f64,
        category: Option<S>,
    },
    /// `session` bought these items together at `time`.
    Purchase {
        session: S,
        items: Vec<S>,
        time: f64,
    },
}

/// What `event` teaches the model, if anything. The session is the tracker's session id, or the
/// visitor when the event has none (an order the shop's server sent).
pub fn observation(event: &Event) -> Option<Observation<&str>> {
    let session = event.session_id.as_deref().unwrap_or(&event.anonymous_id);
    let time = event.timestamp as f64 / 1000.0;
    match &event.payload {
        Payload::ProductView(product) => Some(Observation::Click {
            session,
            item: &product.product_id,
            time,
            category: product.category.as_deref(),
        }),
        Payload::Purchase(purchase) if !purchase.items.is_empty() => Some(Observation::Purchase {
            session,
            items: purchase
                .items
                .iter()
                .map(|line| line.product.product_id.as_str())
                .collect(),
            time,
        }),
        _ => None,
    }
}

impl<S: AsRef<str>> Observation<S> {
    /// Folds this into `model`.
    pub fn teach(&self, model: &mut ModelState) {
        match self {
            Observation::Click {
                session,
                item,
                time,
                category,
            } => model.observe_view(
                session.as_ref(),
                item.as_ref(),
                *time,
                category.as_ref().map(AsRef::as_ref),
            ),
            Observation::Purchase {
                session,
                items,
                time,
            } => model.observe_purchase(session.as_ref(), items, *time),
        }
    }

    fn owned(&self) -> Learned {
        let own = |s: &S| s.as_ref().to_owned();
        match self {
            Observation::Click {
                session,
                item,
                time,
                category,
            } => Observation::Click {
                session: own(session),
                item: own(item),
                time: *time,
                category: category.as_ref().map(own),
            },
            Observation::Purchase {
                session,
                items,
                time,
            } => Observation::Purchase {
                session: own(session),
                items: items.iter().map(own).collect(),
                time: *time,
            },
        }
    }
}

type Learned = Observation<String>;

/// A learned observation not saved yet, with the record it came from.
struct Unsaved {
    learned: Learned,
    shard: Arc<str>,
    sequence: String,
}

/// Tries of a save that keeps losing to other instances before it gives up until the next one.
const SAVE_ATTEMPTS: usize = 5;

/// Unsaved observations kept for a merge; past this (the store has been down a long while) a
/// merge can no longer be exact, and ours overwrites theirs as a last resort.
const MAX_UNSAVED: usize = 2_000_000;

struct Kept {
    model: ModelState,
    /// The records of each shard that `model` holds.
    positions: StreamPositions,
    /// Observations folded in since the last save, oldest first.
    unsaved: Vec<Unsaved>,
    /// More than [`MAX_UNSAVED`] came since the last save; `unsaved` is incomplete.
    unsaved_overflow: bool,
    /// The stored version this model continues; 0 before the first save.
    version: u64,
    loaded: bool,
    dirty: bool,
    /// `positions` changed since the last save although `model` did not (batches without
    /// anything to learn): saved on shutdown only, so a restart does not find a gap.
    positions_moved: bool,
    last_save: Option<Instant>,
    seen: HashSet<Uuid>,
    seen_order: VecDeque<Uuid>,
}

impl Kept {
    fn remember(&mut self, unsaved: Unsaved) {
        if self.unsaved.len() < MAX_UNSAVED {
            self.unsaved.push(unsaved);
        } else {
            self.unsaved_overflow = true;
        }
    }

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

/// Events learnt between two yields of [`ModelKeeper::observe`]: about a third of a millisecond.
const YIELD_EVERY: usize = 256;

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
                positions: StreamPositions::new(),
                unsaved: Vec::new(),
                unsaved_overflow: false,
                version: 0,
                loaded: false,
                dirty: false,
                positions_moved: false,
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
                    kept.positions = stored.positions;
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

    /// Folds the events of a batch of records into the model, each with its record's sequence
    /// number, in the shard's order; `span` is where the whole batch lies. Returns how many
    /// taught it something.
    pub async fn observe<'e>(
        &self,
        span: Span<'_>,
        records: impl IntoIterator<Item = (&'e Event, &'e str)>,
    ) -> Result<usize, ConnectorError> {
        // Owned before the first yield below: a borrow of the events held across the yields
        // would make every caller's future not `Send`.
        let learnt: Vec<(Uuid, Learned, String)> = records
            .into_iter()
            .filter_map(|(event, sequence)| {
                Some((
                    event.event_id,
                    observation(event)?.owned(),
                    sequence.to_owned(),
                ))
            })
            .collect();
        let shard: Arc<str> = span.shard.into();
        let mut kept = self.kept.lock().await;
        self.ensure_loaded(&mut kept).await?;
        let mut observed = 0;
        for (n, (event_id, learned, sequence)) in learnt.into_iter().enumerate() {
            let new = !stream_positions::holds(&kept.positions, &shard, &sequence)
                && kept.first_time(event_id);
            // A batch takes milliseconds to learn, and the session writes that run beside it
            // on the same task resume only when it yields: without this their every step
            // waited for the whole batch, which made the model part of their critical path.
            let pause = n % YIELD_EVERY == YIELD_EVERY - 1;
            if pause {
                // What is taught until the yield stays held if the caller drops this future.
                kept.positions_moved |= stream_positions::add(&mut kept.positions, span, &sequence);
            }
            if new {
                learned.teach(&mut kept.model);
                kept.remember(Unsaved {
                    learned,
                    shard: shard.clone(),
                    sequence,
                });
                // Here rather than after the loop: a caller may drop this future at a yield,
                // and what it taught until then must still be saved.
                kept.dirty = true;
                observed += 1;
            }
            if pause {
                tokio::task::yield_now().await;
            }
        }
        kept.positions_moved |= stream_positions::add(&mut kept.positions, span, span.last);
        metrics::counter!(m::MODEL_OBSERVATIONS).increment(observed as u64);
        Ok(observed)
    }

    /// Forgets which records of `shard` the model holds, once the shard was read to its end:
    /// none of them is handed out again, and a stream that reshards often would otherwise fill
    /// the stored positions (one DynamoDB item) with shards long closed.
    pub async fn forget_shard(&self, shard: &str) {
        let mut kept = self.kept.lock().await;
        if kept.positions.remove(shard).is_some() {
            kept.positions_moved = true;
        }
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
        let changed = kept.dirty || (now && kept.positions_moved);
        if !changed || !(now || due) {
            return Ok(false);
        }
        let started = Instant::now();
        let mut attempt = 0;
        let (version, bytes) = loop {
            attempt += 1;
            let version = kept.version + 1;
            let bytes = kept.model.to_snapshot();
            match self
                .store
                .save(&self.name, version, &bytes, &kept.positions)
                .await
            {
                Ok(()) => break (version, bytes),
                Err(ConnectorError::Conflict { what }) if attempt < SAVE_ATTEMPTS => {
                    info!(name = %self.name, %what, "another instance saved the model; folding ours into theirs");
                    self.fold_into_stored(&mut kept).await?;
                }
                Err(e) => return Err(e),
            }
        };
        kept.version = version;
        kept.unsaved.clear();
        kept.unsaved_overflow = false;
        kept.dirty = false;
        kept.positions_moved = false;
        kept.last_save = Some(Instant::now());
        metrics::histogram!(m::MODEL_SAVE_SECONDS).record(started.elapsed().as_secs_f64());
        metrics::gauge!(m::MODEL_SNAPSHOT_BYTES).set(bytes.len() as f64);
        tracing::debug!(name = %self.name, version, bytes = bytes.len(), "model saved");
        Ok(true)
    }

    /// Replaces the kept model by the stored one with this instance's unsaved observations
    /// that it does not hold folded in, in their order.
    async fn fold_into_stored(&self, kept: &mut Kept) -> Result<(), ConnectorError> {
        if kept.unsaved_overflow {
            warn!(name = %self.name, "too many unsaved observations to merge; overwriting the stored model");
            kept.version = self.store.version(&self.name).await?.unwrap_or(0);
            return Ok(());
        }
        let Some(stored) = self.store.load(&self.name).await? else {
            // Deleted meanwhile: ours becomes version 1.
            kept.version = 0;
            return Ok(());
        };
        let mut model = match ModelState::from_snapshot(&stored.bytes) {
            Ok(model) => model,
            Err(e) => {
                warn!(name = %self.name, version = stored.version, error = %e, "stored model unreadable; replacing it with ours");
                kept.version = stored.version;
                return Ok(());
            }
        };
        // A shard that changed hands was read by both instances from the checkpoint on: what
        // the stored model holds of it is not taught twice.
        kept.unsaved
            .retain(|u| !stream_positions::holds(&stored.positions, &u.shard, &u.sequence));
        for unsaved in &kept.unsaved {
            unsaved.learned.teach(&mut model);
        }
        let mut positions = stored.positions;
        stream_positions::union(&mut positions, &kept.positions);
        kept.model = model;
        kept.positions = positions;
        kept.version = stored.version;
        Ok(())
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
    fn product_views_are_clicks_and_purchases_orders_of_their_session() {
        let view = event(serde_json::json!({
            "event_id": "01936a1c-3b5e-7cc4-9a1e-000000000001", "type": "product_view",
            "anonymous_id": "a-1", "session_id": "s-1", "timestamp": 1_764_064_800_000i64,
            "context": {"page": {"url": "https://shop.example/p/1"}},
            "properties": {"product_id": "p-1", "category": "shoes"}
        }));
        assert_eq!(
            observation(&view),
            Some(Observation::Click {
                session: "s-1",
                item: "p-1",
                time: 1_764_064_800.0,
                category: Some("shoes"),
            })
        );
        let order = event(serde_json::json!({
            "event_id": "01936a1c-3b5e-7cc4-9a1e-000000000002", "type": "purchase",
            "anonymous_id": "a-1", "timestamp": 1_764_064_800_000i64,
            "context": {"page": {"url": "https://shop.example/done"}},
            "properties": {"order_id": "o-1", "revenue_minor": 100, "currency": "EUR",
                "items": [{"product_id": "p-1", "quantity": 1}, {"product_id": "p-2", "quantity": 2}]}
        }));
        // Sent by the shop's server: no session, so the visitor's.
        assert_eq!(
            observation(&order),
            Some(Observation::Purchase {
                session: "a-1",
                items: vec!["p-1", "p-2"],
                time: 1_764_064_800.0,
            })
        );
    }

    fn view(n: u32, session: &str, item: &str) -> Event {
        event(serde_json::json!({
            "event_id": format!("01936a1c-3b5e-7cc4-9a1e-{n:012}"), "type": "product_view",
            "anonymous_id": session, "session_id": session,
            "timestamp": 1_764_064_800_000i64 + i64::from(n) * 1000,
            "context": {"page": {"url": "https://shop.example/p"}},
            "properties": {"product_id": item}
        }))
    }

    /// `events` as the records of one shard, numbered from `first`.
    fn records(events: &[Event], first: u32) -> Vec<(&Event, String)> {
        events
            .iter()
            .zip(first..)
            .map(|(e, seq)| (e, seq.to_string()))
            .collect()
    }

    /// Folds `records` of `shard`, read right after the record before the first (from the
    /// shard's start for record 1).
    async fn observe(keeper: &ModelKeeper, shard: &str, records: &[(&Event, String)]) -> usize {
        let (first, last) = (&records[0].1, &records[records.len() - 1].1);
        let before = (first.parse::<u32>().unwrap() - 1).to_string();
        let span = Span {
            shard,
            follows: if before == "0" {
                stream_positions::Follows::ShardStart
            } else {
                stream_positions::Follows::Record(&before)
            },
            first,
            last,
        };
        keeper
            .observe(span, records.iter().map(|(e, seq)| (*e, seq.as_str())))
            .await
            .unwrap()
    }

    fn folded_once<'e>(events: impl IntoIterator<Item = &'e Event>) -> Vec<u8> {
        let mut expected = ModelState::new(ModelConfig::default());
        for e in events {
            observation(e).unwrap().teach(&mut expected);
        }
        expected.to_snapshot()
    }

    fn models(dir: &tempfile::TempDir) -> Arc<dyn ModelStore> {
        retailmind_connectors::embedded::open(dir.path())
            .unwrap()
            .models
    }

    #[tokio::test]
    async fn two_instances_saving_one_model_each_keep_the_others_observations() {
        let dir = tempfile::tempdir().unwrap();
        let store = models(&dir);
        let a = ModelKeeper::new(store.clone(), "m", Duration::ZERO);
        let b = ModelKeeper::new(store.clone(), "m", Duration::ZERO);
        let a1 = [
            view(1, "sa", "p1"),
            view(2, "sa", "p2"),
            view(3, "sa", "p3"),
        ];
        let b1 = [view(4, "sb", "p2"), view(5, "sb", "p4")];
        let a2 = [view(6, "sc", "p4"), view(7, "sc", "p1")];

        // Both start before either saved; each then saves over the other's save.
        observe(&a, "shard-a", &records(&a1, 1)).await;
        observe(&b, "shard-b", &records(&b1, 1)).await;
        assert!(a.save().await.unwrap());
        assert!(b.save().await.unwrap());
        observe(&a, "shard-a", &records(&a2, 4)).await;
        assert!(a.save().await.unwrap());
        assert_eq!(a.version().await, 3);

        let stored = store.load("m").await.unwrap().unwrap();
        assert_eq!(stored.version, 3);
        assert_eq!(stored.bytes, folded_once(a1.iter().chain(&b1).chain(&a2)));
        let positions: Vec<_> = stored.positions.into_iter().collect();
        assert_eq!(
            positions,
            [
                ("shard-a".into(), vec![("".into(), "5".into())]),
                ("shard-b".into(), vec![("".into(), "2".into())])
            ]
        );
    }

    #[tokio::test]
    async fn records_handed_out_again_teach_nothing_twice() {
        let dir = tempfile::tempdir().unwrap();
        let store = models(&dir);
        let keeper = ModelKeeper::new(store.clone(), "m", Duration::ZERO);
        let views = [
            view(1, "s1", "p1"),
            view(2, "s1", "p2"),
            view(3, "s1", "p3"),
        ];
        let shard = records(&views, 1);
        assert_eq!(observe(&keeper, "0", &shard).await, 3);
        // The batch again (a retry after a failed write), and from its middle (a checkpoint
        // there): nothing new.
        assert_eq!(observe(&keeper, "0", &shard).await, 0);
        assert_eq!(observe(&keeper, "0", &shard[1..]).await, 0);
        // The same records on another shard are other records: only their event ids, already
        // folded, keep them out.
        assert_eq!(observe(&keeper, "1", &shard).await, 0);
        // An event the tracker sent twice comes as a later record of the shard.
        let again = [view(4, "s1", "p4"), view(2, "s1", "p2")];
        assert_eq!(observe(&keeper, "0", &records(&again, 4)).await, 1);
        assert!(keeper.save().await.unwrap());
        let stored = store.load("m").await.unwrap().unwrap();
        assert_eq!(stored.bytes, folded_once(views.iter().chain(&again[..1])));
        assert_eq!(stored.positions["0"], [("".into(), "5".into())]);
    }

    #[tokio::test]
    async fn positions_alone_are_saved_on_shutdown_not_on_the_clock() {
        let dir = tempfile::tempdir().unwrap();
        let store = models(&dir);
        let keeper = ModelKeeper::new(store.clone(), "m", Duration::ZERO);
        let views = [view(1, "s1", "p1"), view(2, "s1", "p2")];
        observe(&keeper, "0", &records(&views, 1)).await;
        assert!(keeper.save().await.unwrap());
        // Records with nothing to learn (page views) move the positions only.
        let pages: Vec<Event> = (3..=4)
            .map(|n| {
                event(serde_json::json!({
                    "event_id": format!("01936a1c-3b5e-7cc4-9a1e-{n:012}"), "type": "page_view",
                    "anonymous_id": "s1", "session_id": "s1", "timestamp": 1_764_064_800_000i64,
                    "context": {"page": {"url": "https://shop.example/"}}, "properties": {}
                }))
            })
            .collect();
        assert_eq!(observe(&keeper, "0", &records(&pages, 3)).await, 0);
        assert!(
            !keeper.save_if_due().await.unwrap(),
            "no save for positions alone"
        );
        assert!(keeper.save().await.unwrap(), "but one on shutdown");
        let stored = store.load("m").await.unwrap().unwrap();
        assert_eq!(stored.positions["0"], [("".into(), "4".into())]);
        assert!(!keeper.save().await.unwrap(), "nothing moved since");
    }

    #[tokio::test]
    async fn a_shard_read_by_two_instances_in_a_handover_is_folded_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = models(&dir);
        let slow = ModelKeeper::new(store.clone(), "m", Duration::ZERO);
        let next = ModelKeeper::new(store.clone(), "m", Duration::ZERO);
        let views: Vec<Event> = (1..=6).map(|n| view(n, "s1", &format!("p{n}"))).collect();
        let shard = records(&views, 1);
        let other = [view(7, "s2", "p9"), view(8, "s2", "p1")];

        // The slow instance folds records 1-4 of shard 0 and, before it saves, loses its lease;
        // the next owner reads on from the checkpoint at 2, to 6, and saves first.
        observe(&slow, "0", &shard[..4]).await;
        observe(&slow, "1", &records(&other, 1)).await;
        observe(&next, "0", &shard[2..]).await;
        assert!(next.save().await.unwrap());
        assert!(slow.save().await.unwrap());

        // Each view counted once. (The merged model learned them in another order than one
        // instance would have, so its bytes differ.)
        let stored = store.load("m").await.unwrap().unwrap();
        assert_eq!(stored.version, 2);
        let merged = ModelState::from_snapshot(&stored.bytes).unwrap();
        let expected = ModelState::from_snapshot(&folded_once(views.iter().chain(&other))).unwrap();
        let clicks = |model: &ModelState| -> Vec<(String, u32)> {
            let items = model.items();
            let mut counts: Vec<_> = (0..items.len() as u32)
                .map(|ix| (items.id(ix).to_owned(), items.clicks(ix)))
                .collect();
            counts.sort();
            counts
        };
        assert_eq!(clicks(&merged), clicks(&expected));
        assert_eq!(stored.positions["0"], [("".into(), "6".into())]);
        assert_eq!(stored.positions["1"], [("".into(), "2".into())]);
    }
}
