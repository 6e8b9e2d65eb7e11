//! The events ETL (the Glue job's part): raw newline JSON under `events/` to the Parquet tables
//! `events`, `event_items` and `rec_impressions` under `tables/<name>/dt=YYYY-MM-DD/`.
//!
//! A run reads only the raw objects its manifest does not list yet, decodes and checks every
//! line ([`decode`]), files refused lines under `quarantine/events/dt=…/` with the reason,
//! merges the good events of each day into that day's partition as stored (one record per event
//! id, [`merge`]), rewrites the partition as a few large files with fixed names, and only then
//! writes the manifest. A crash before that repeats the work on the next run, and the merge makes
//! the repeat harmless: runs are idempotent. Days older than the late-data window (measured from
//! the newest event seen) are closed; an event for a closed day is quarantined as too late.

pub mod decode;
pub mod manifest;
pub mod merge;

use std::collections::BTreeMap;

use bytes::Bytes;
use retailmind_schema::Limits;
use sha2::{Digest, Sha256};

use crate::event_rows::{EventItemRow, EventRecord, EventRow, RecRow};
use crate::parquet_io::{self, ParquetError};
use crate::rows::{self, RowError, TableRow};
use crate::store::{LakeStore, StoreError};
use crate::tables::{TableDef, EVENTS, EVENT_ITEMS, QUARANTINE, REC_IMPRESSIONS};
use decode::{decode_line, quarantine_day, QuarantinedLine, Rejection};
use manifest::{Manifest, RawObject, MANIFEST_KEY};

/// Where the raw events are.
pub const RAW_EVENTS_PREFIX: &str = "events/";

#[derive(Clone, Debug)]
pub struct EtlOptions {
    /// How long after a day's end its events are still merged in, in hours of event time
    /// (measured against the newest event seen so far).
    pub late_window_hours: u32,
    /// Rows per Parquet file; a day with more gets several.
    pub max_rows_per_file: usize,
    /// Raw bytes read before the tables and the manifest are written (bounds memory; a large
    /// backlog is worked off in several steps of one run).
    pub max_batch_bytes: u64,
    /// The rules lines are checked against (the collector's).
    pub limits: Limits,
}

impl Default for EtlOptions {
    fn default() -> Self {
        EtlOptions {
            late_window_hours: 7 * 24,
            max_rows_per_file: 1_000_000,
            max_batch_bytes: 256 * 1024 * 1024,
            limits: Limits::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EtlError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Parquet(#[from] ParquetError),
    #[error("{0}")]
    Row(#[from] RowError),
    #[error("manifest {key} is not readable: {reason}")]
    Manifest { key: String, reason: String },
    #[error("raw object {key} was listed but is gone")]
    Vanished { key: String },
}

/// What a run did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct EtlReport {
    /// Raw objects read (the new ones).
    pub files_read: usize,
    /// Non-blank lines in them.
    pub lines_read: usize,
    /// Valid events among them (before de-duplication).
    pub events_valid: usize,
    /// Copies of events already in the tables or read twice, dropped.
    pub duplicates_dropped: usize,
    /// Lines refused (including the too-late ones).
    pub quarantined: usize,
    /// Of those, valid events for a closed day.
    pub too_late: usize,
    /// Days whose partitions were rewritten.
    pub days_rewritten: Vec<String>,
    /// Raw objects read before whose size changed since; not read again.
    pub changed_objects: Vec<String>,
}

/// Runs the events ETL over `store` once.
pub async fn run(store: &dyn LakeStore, options: &EtlOptions) -> Result<EtlReport, EtlError> {
    let mut manifest = match store.get(MANIFEST_KEY).await? {
        Some(bytes) => Manifest::from_json(&bytes).map_err(|e| EtlError::Manifest {
            key: MANIFEST_KEY.into(),
            reason: e.to_string(),
        })?,
        None => Manifest::default(),
    };
    let listing = store.list(RAW_EVENTS_PREFIX).await?;
    let (pending, changed) = manifest.pending(&listing);
    let mut report = EtlReport {
        changed_objects: changed.iter().map(|o| o.key.clone()).collect(),
        ..EtlReport::default()
    };
    for key in &report.changed_objects {
        tracing::warn!(%key, "raw object changed after it was read; not read again");
    }
    for batch in batches(&pending, options.max_batch_bytes) {
        run_batch(store, options, &mut manifest, batch, &mut report).await?;
    }
    report.days_rewritten.sort();
    report.days_rewritten.dedup();
    Ok(report)
}

/// Splits `pending` into runs of objects of at most `max_bytes` together (at least one each).
fn batches<'a>(pending: &[&'a RawObject], max_bytes: u64) -> Vec<Vec<&'a RawObject>> {
    let mut out: Vec<Vec<&RawObject>> = Vec::new();
    let mut size = 0;
    for object in pending {
        match out.last_mut() {
            Some(last) if size + object.size <= max_bytes => {
                last.push(object);
                size += object.size;
            }
            _ => {
                out.push(vec![object]);
                size = object.size;
            }
        }
    }
    out
}

/// What the lines of some raw objects come to, before anything is written. Pure.
#[derive(Debug, Default)]
pub struct Sorted {
    /// Valid events by day.
    pub by_day: BTreeMap<String, Vec<EventRecord>>,
    /// Refused lines by (day, source object).
    pub quarantine: BTreeMap<(String, String), Vec<QuarantinedLine>>,
    pub lines: usize,
    pub valid: usize,
    pub too_late: usize,
    /// Newest event time among the valid events.
    pub newest_ms: Option<i64>,
}

impl Sorted {
    /// Decodes, checks and sorts the lines of one raw object; days `manifest` has closed send
    /// their events to the quarantine.
    pub fn add_object(
        &mut self,
        key: &str,
        body: &[u8],
        manifest: &Manifest,
        options: &EtlOptions,
    ) {
        for (line_no, line) in decode::lines(body) {
            self.lines += 1;
            let verdict = decode_line(line, &options.limits).and_then(|d| {
                if manifest.is_closed(&d.dt, options.late_window_hours) {
                    Err(Rejection::TooLate {
                        dt: d.dt,
                        late_window_hours: options.late_window_hours,
                        watermark_ms: manifest.watermark_ms.unwrap_or_default(),
                    })
                } else {
                    Ok(d)
                }
            });
            match verdict {
                Ok(d) => {
                    self.valid += 1;
                    let ts = d.record.event.timestamp_ms;
                    self.newest_ms = Some(self.newest_ms.map_or(ts, |n| n.max(ts)));
                    self.by_day.entry(d.dt).or_default().push(d.record);
                }
                Err(rejection) => {
                    if matches!(rejection, Rejection::TooLate { .. }) {
                        self.too_late += 1;
                    }
                    self.quarantine
                        .entry((quarantine_day(line, key), key.to_owned()))
                        .or_default()
                        .push(QuarantinedLine {
                            source: key.to_owned(),
                            line_no,
                            reason: rejection.to_string(),
                            raw: String::from_utf8_lossy(line).into_owned(),
                        });
                }
            }
        }
    }
}

async fn run_batch(
    store: &dyn LakeStore,
    options: &EtlOptions,
    manifest: &mut Manifest,
    objects: Vec<&RawObject>,
    report: &mut EtlReport,
) -> Result<(), EtlError> {
    let mut sorted = Sorted::default();
    for object in &objects {
        let body = store
            .get(&object.key)
            .await?
            .ok_or_else(|| EtlError::Vanished {
                key: object.key.clone(),
            })?;
        sorted.add_object(&object.key, &body, manifest, options);
    }
    for ((day, source), lines) in &sorted.quarantine {
        store
            .put(&quarantine_key(day, source), quarantine_body(lines))
            .await?;
    }
    for (day, new) in std::mem::take(&mut sorted.by_day) {
        let existing = read_partition(store, &day).await?;
        let merged = merge::merge(existing, new);
        write_partition(store, &day, &merged.records, options.max_rows_per_file).await?;
        report.duplicates_dropped += merged.duplicates;
        manifest.days.insert(day.clone());
        report.days_rewritten.push(day);
    }
    report.files_read += objects.len();
    report.lines_read += sorted.lines;
    report.events_valid += sorted.valid;
    report.too_late += sorted.too_late;
    report.quarantined += sorted.quarantine.values().map(Vec::len).sum::<usize>();
    for object in objects {
        manifest.record(object);
    }
    if let Some(newest) = sorted.newest_ms {
        manifest.advance_watermark(newest);
    }
    store
        .put(MANIFEST_KEY, Bytes::from(manifest.to_json()))
        .await?;
    Ok(())
}

/// `quarantine/events/dt=D/<first 16 hex of SHA-256 of the source key>.json`: one object per
/// source and day, so a repeated run overwrites rather than adds.
pub fn quarantine_key(day: &str, source: &str) -> String {
    let hash = Sha256::digest(source.as_bytes());
    let hex: String = hash[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("{}/dt={day}/{hex}.json", QUARANTINE.prefix)
}

fn quarantine_body(lines: &[QuarantinedLine]) -> Bytes {
    let mut body = Vec::new();
    for line in lines {
        if let Ok(json) = serde_json::to_vec(line) {
            body.extend_from_slice(&json);
            body.push(b'\n');
        }
    }
    Bytes::from(body)
}

/// `tables/<name>/dt=D/`.
pub fn partition_prefix(table: &TableDef, day: &str) -> String {
    format!("{}/dt={day}/", table.prefix)
}

/// The records of a day's partition as stored (empty when there is none).
pub async fn read_partition(
    store: &dyn LakeStore,
    day: &str,
) -> Result<Vec<EventRecord>, EtlError> {
    let events: Vec<EventRow> = read_table(store, &EVENTS, day).await?;
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let items: Vec<EventItemRow> = read_table(store, &EVENT_ITEMS, day).await?;
    let recs: Vec<RecRow> = read_table(store, &REC_IMPRESSIONS, day).await?;
    Ok(merge::join(events, items, recs))
}

/// Every row of one table's partition.
pub async fn read_table<R: TableRow>(
    store: &dyn LakeStore,
    table: &'static TableDef,
    day: &str,
) -> Result<Vec<R>, EtlError> {
    let mut out = Vec::new();
    for object in store.list(&partition_prefix(table, day)).await? {
        if !object.key.ends_with(".parquet") {
            continue;
        }
        let Some(bytes) = store.get(&object.key).await? else {
            continue;
        };
        for batch in parquet_io::read(&object.key, bytes)? {
            out.extend(rows::from_batch::<R>(&batch)?);
        }
    }
    Ok(out)
}

pub async fn write_partition(
    store: &dyn LakeStore,
    day: &str,
    records: &[EventRecord],
    max_rows_per_file: usize,
) -> Result<(), EtlError> {
    let (events, items, recs) = merge::split(records);
    write_table(store, &EVENTS, day, &events, max_rows_per_file).await?;
    write_table(store, &EVENT_ITEMS, day, &items, max_rows_per_file).await?;
    write_table(store, &REC_IMPRESSIONS, day, &recs, max_rows_per_file).await
}

/// Writes `rows` as `part-00000.parquet`, `part-00001.parquet`, … and removes files of an
/// earlier, larger write. New files replace old ones of the same name whole.
pub async fn write_table<R: TableRow>(
    store: &dyn LakeStore,
    table: &'static TableDef,
    day: &str,
    rows: &[&R],
    max_rows_per_file: usize,
) -> Result<(), EtlError> {
    write_rows(
        store,
        &partition_prefix(table, day),
        rows,
        max_rows_per_file,
    )
    .await
}

/// Writes `rows` under `prefix` (ending in `/`) as `part-00000.parquet`, … and removes every
/// other object there: the folder then holds exactly `rows`.
pub async fn write_rows<R: TableRow>(
    store: &dyn LakeStore,
    prefix: &str,
    rows: &[&R],
    max_rows_per_file: usize,
) -> Result<(), EtlError> {
    let mut written = Vec::new();
    for (i, chunk) in rows.chunks(max_rows_per_file.max(1)).enumerate() {
        let batch = rows::to_batch(chunk.iter().copied())?;
        let key = format!("{prefix}part-{i:05}.parquet");
        store.put(&key, parquet_io::write(&batch)?).await?;
        written.push(key);
    }
    for object in store.list(prefix).await? {
        if !written.contains(&object.key) {
            store.delete(&object.key).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_respect_the_byte_bound_but_take_at_least_one_object() {
        let objects = [
            RawObject::new("a", 60),
            RawObject::new("b", 50),
            RawObject::new("c", 200),
            RawObject::new("d", 10),
        ];
        let refs: Vec<&RawObject> = objects.iter().collect();
        let keys: Vec<Vec<&str>> = batches(&refs, 100)
            .iter()
            .map(|b| b.iter().map(|o| o.key.as_str()).collect())
            .collect();
        assert_eq!(keys, vec![vec!["a"], vec!["b"], vec!["c"], vec!["d"]]);
        assert_eq!(batches(&refs, 1000).len(), 1);
    }

    #[test]
    fn quarantine_keys_are_stable_per_source_and_day() {
        let a = quarantine_key("2024-11-25", "events/dt=2024-11-25/hour=09/x.json");
        assert_eq!(
            a,
            quarantine_key("2024-11-25", "events/dt=2024-11-25/hour=09/x.json")
        );
        assert_ne!(
            a,
            quarantine_key("2024-11-25", "events/dt=2024-11-25/hour=09/y.json")
        );
        assert!(a.starts_with("quarantine/events/dt=2024-11-25/") && a.ends_with(".json"));
    }
}
