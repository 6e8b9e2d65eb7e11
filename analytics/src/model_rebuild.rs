//! Rebuilding the recommendation model from the lake, when the stored model is lost, its
//! format changed, or its settings did: every product view of the `events` table becomes a
//! click of its session (and names its product's category) and every purchase's lines an order
//! bought by its session, day after day in event-time order,
//! as the processor folds them from the stream (see `retailmind_processor::model`). The result
//! is saved as the next version of the stored model, which the collector picks up on its next
//! poll. A running processor keeps the rebuilt model: its next save finds a newer version
//! stored, so it loads the rebuilt one, folds in what it observed since its own last save and
//! saves that, as when another processor instance saved first (see `retailmind_processor::model`).
//! Those few observations (up to one save interval's) may already be in the lake the rebuild
//! read, and are then counted twice; stop the processors first to rule that out.

use std::collections::BTreeSet;

use retailmind_connectors::{ConnectorError, ModelStore, StreamPositions};
use retailmind_recommend::{ModelConfig, ModelState};
use serde::Serialize;

use crate::etl::{read_partition, EtlError};
use crate::event_rows::EventRecord;
use crate::store::LakeStore;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RebuildReport {
    pub days: usize,
    pub clicks: usize,
    pub orders: usize,
    /// The version saved, and the snapshot's size.
    pub version: u64,
    pub snapshot_bytes: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error(transparent)]
    Lake(#[from] EtlError),
    #[error("saving the rebuilt model: {0}")]
    Models(#[from] ConnectorError),
}

/// Folds one day's records, in event time order, into `model`; returns the clicks and orders it
/// taught. Pure.
pub fn fold_day(model: &mut ModelState, records: &[EventRecord]) -> (usize, usize) {
    let (mut clicks, mut orders) = (0, 0);
    for record in records {
        let e = &record.event;
        let session = e.session_id.as_deref().unwrap_or(&e.anonymous_id);
        let time = e.timestamp_ms as f64 / 1000.0;
        match e.event_type.as_str() {
            "product_view" => {
                if let Some(item) = &e.product_id {
                    let category = e.product_category.as_deref();
                    model.observe_view(session, item, time, category);
                    clicks += 1;
                }
            }
            "purchase" if !record.items.is_empty() => {
                let items: Vec<&str> = record.items.iter().map(|i| i.product_id.as_str()).collect();
                model.observe_purchase(session, &items, time);
                orders += 1;
            }
            _ => {}
        }
    }
    (clicks, orders)
}

/// A fresh model with `config`, taught every day of `days` in the lake, oldest first.
pub async fn rebuild(
    lake: &dyn LakeStore,
    days: &BTreeSet<String>,
    config: ModelConfig,
) -> Result<(ModelState, RebuildReport), RebuildError> {
    let mut model = ModelState::new(config);
    let mut report = RebuildReport::default();
    for day in days {
        let mut records = read_partition(lake, day).await?;
        // Partitions are clustered by event type; the model learns sessions in time order.
        records.sort_by(|a, b| {
            let (a, b) = (&a.event, &b.event);
            (a.timestamp_ms, &a.event_id).cmp(&(b.timestamp_ms, &b.event_id))
        });
        let (clicks, orders) = fold_day(&mut model, &records);
        report.days += 1;
        report.clicks += clicks;
        report.orders += orders;
    }
    Ok((model, report))
}

/// Saves `model` as the next version of `name` (the first, if none is stored).
pub async fn save(
    models: &dyn ModelStore,
    name: &str,
    model: &ModelState,
    report: &mut RebuildReport,
) -> Result<(), RebuildError> {
    let bytes = model.to_snapshot();
    let version = models.version(name).await?.unwrap_or(0) + 1;
    // The lake does not say which stream records it holds: a processor that starts on this
    // model folds everything after its checkpoint, which counts twice the records the lake
    // got but the checkpoint had not passed yet (stop the processor for a rebuild).
    models
        .save(name, version, &bytes, &StreamPositions::new())
        .await?;
    report.version = version;
    report.snapshot_bytes = bytes.len();
    Ok(())
}
