//! The consume loop: read → decode → sessionize → write sessions → write lake → checkpoint.
//!
//! The checkpoint moves only after the session and lake writes of everything before it
//! succeeded; a crash in between replays those records, which sessionization ignores (it
//! remembers event ids) and the lake's compaction drops by event id.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use retailmind_connectors::clock::now_ms;
use retailmind_connectors::{Backend, ConnectorError, LakeRecord, StreamEntry, UndecodableRecord};
use retailmind_schema::{Event, Session};
use thiserror::Error;
use tracing::{info, warn};

use crate::config::ProcessorConfig;
use crate::sessionize::{sessionize, SessionRules};

#[derive(Debug, Error)]
pub enum ProcessorError {
    #[error(transparent)]
    Connector(#[from] ConnectorError),
    #[error("sessions of {anonymous_id} kept changing under us after {attempts} attempts")]
    SessionContention { anonymous_id: String, attempts: u32 },
}

/// What one read of one shard did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BatchOutcome {
    pub records: usize,
    pub events: usize,
    pub undecodable: usize,
    pub sessions_written: usize,
    pub millis_behind_latest: Option<i64>,
    /// The shard was closed by resharding and this read found nothing more in it.
    pub shard_ended: bool,
}

pub struct Processor {
    backend: Backend,
    consumer: String,
    rules: SessionRules,
    batch_size: usize,
    idle_poll: Duration,
    /// Closed shards read to their end. Only ever grows, and after a restart one read per
    /// closed shard finds its end again, so it needs no storage of its own.
    ended_shards: Mutex<HashSet<String>>,
    min_read_interval: Duration,
    /// When each shard was last read, to stay within the stream's read rate per shard.
    last_read: Mutex<HashMap<String, Instant>>,
}

/// Conditional session writes that lose a race are re-read and retried this often.
const SESSION_WRITE_ATTEMPTS: u32 = 5;

impl Processor {
    pub fn new(backend: Backend, config: &ProcessorConfig) -> Self {
        Processor {
            backend,
            consumer: config.consumer.clone(),
            rules: config.session_rules(),
            batch_size: config.batch_size.max(1),
            idle_poll: Duration::from_millis(config.idle_poll_ms),
            ended_shards: Mutex::new(HashSet::new()),
            min_read_interval: config.min_read_interval(),
            last_read: Mutex::new(HashMap::new()),
        }
    }

    /// Runs until `shutdown` completes, backing off on errors that a retry can cure.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) -> Result<(), ProcessorError> {
        tokio::pin!(shutdown);
        let mut backoff = Duration::from_millis(100);
        loop {
            let pause = match self.poll_once().await {
                Ok(0) => self.idle_poll,
                Ok(_) => {
                    backoff = Duration::from_millis(100);
                    Duration::ZERO
                }
                Err(ProcessorError::Connector(e)) if e.is_retryable() => {
                    warn!(error = %e, ?backoff, "processing failed; retrying");
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    backoff
                }
                Err(e) => return Err(e),
            };
            tokio::select! {
                _ = &mut shutdown => return Ok(()),
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// Processes everything in the stream now, then returns how many records it processed.
    pub async fn drain(&self) -> Result<usize, ProcessorError> {
        let mut total = 0;
        loop {
            match self.poll().await? {
                (0, false) => return Ok(total),
                (0, true) => tokio::time::sleep(self.min_read_interval).await,
                (n, _) => total += n,
            }
        }
    }

    /// One read of every shard that may be read now; returns the number of records processed.
    ///
    /// After a split or merge, a child shard is read only once every parent still in the stream
    /// has been read to its end, so a visitor's older events are always sessionized first.
    pub async fn poll_once(&self) -> Result<usize, ProcessorError> {
        Ok(self.poll().await?.0)
    }

    /// [`poll_once`](Self::poll_once), also telling whether a shard was skipped to respect
    /// the read rate (so "nothing read" does not mean "nothing left").
    async fn poll(&self) -> Result<(usize, bool), ProcessorError> {
        let shards = self.backend.reader.shards().await?;
        let mut rate_limited = false;
        let listed: HashSet<&str> = shards.iter().map(|s| s.shard_id.as_str()).collect();
        let mut total = 0;
        for shard in &shards {
            if self.has_ended(&shard.shard_id) {
                continue;
            }
            let parents_pending = shard
                .parent_shard_ids
                .iter()
                .any(|p| listed.contains(p.as_str()) && !self.has_ended(p));
            if parents_pending {
                continue;
            }
            if !self.may_read_now(&shard.shard_id) {
                rate_limited = true;
                continue;
            }
            let outcome = self.process_shard_once(&shard.shard_id).await?;
            total += outcome.records;
            if outcome.shard_ended && outcome.records == 0 {
                info!(shard_id = %shard.shard_id, "shard read to its end");
                if let Ok(mut ended) = self.ended_shards.lock() {
                    ended.insert(shard.shard_id.clone());
                }
            }
        }
        Ok((total, rate_limited))
    }

    /// Whether `shard_id` may be read now without passing the per-shard read rate; if so, the
    /// read is counted from now.
    fn may_read_now(&self, shard_id: &str) -> bool {
        if self.min_read_interval.is_zero() {
            return true;
        }
        let Ok(mut last_read) = self.last_read.lock() else {
            return true;
        };
        let now = Instant::now();
        match last_read.get(shard_id) {
            Some(at) if now.duration_since(*at) < self.min_read_interval => false,
            _ => {
                last_read.insert(shard_id.to_owned(), now);
                true
            }
        }
    }

    fn has_ended(&self, shard_id: &str) -> bool {
        self.ended_shards
            .lock()
            .map(|ended| ended.contains(shard_id))
            .unwrap_or(false)
    }

    /// Reads one batch of `shard_id` after its checkpoint and carries it through to the lake.
    pub async fn process_shard_once(&self, shard_id: &str) -> Result<BatchOutcome, ProcessorError> {
        let after = self
            .backend
            .checkpoints
            .get(&self.consumer, shard_id)
            .await?;
        let batch = self
            .backend
            .reader
            .read(shard_id, after.as_deref(), self.batch_size)
            .await?;
        let Some(last) = batch.entries.last() else {
            return Ok(BatchOutcome {
                millis_behind_latest: batch.millis_behind_latest,
                shard_ended: batch.shard_ended,
                ..BatchOutcome::default()
            });
        };
        let last_sequence = last.sequence.clone();
        let mut outcome = self.apply(shard_id, &batch.entries).await?;
        outcome.millis_behind_latest = batch.millis_behind_latest;
        self.backend
            .checkpoints
            .set(&self.consumer, shard_id, &last_sequence)
            .await?;

        info!(
            shard_id,
            records = outcome.records,
            events = outcome.events,
            sessions_written = outcome.sessions_written,
            checkpoint = %last_sequence,
            "batch processed"
        );
        Ok(outcome)
    }

    /// Carries stream records through to sessions and the lake, without touching checkpoints
    /// (the Lambda entry point gets its records from the event source mapping, which keeps the
    /// position itself). All or nothing: on `Err` the whole batch must be retried, which is safe
    /// because it is idempotent.
    pub async fn apply(
        &self,
        shard_id: &str,
        entries: &[StreamEntry],
    ) -> Result<BatchOutcome, ProcessorError> {
        let (events, undecodable) = decode(entries);
        let sessions_written = self.write_sessions(&events).await?;
        let lake_records: Vec<LakeRecord> = events
            .iter()
            .map(|(event, data)| LakeRecord {
                event_time_ms: event.timestamp,
                json: data.clone(),
            })
            .collect();
        self.backend.lake.write_events(&lake_records).await?;
        if !undecodable.is_empty() {
            warn!(
                shard_id,
                count = undecodable.len(),
                "undecodable records sent to errors/"
            );
            self.backend.lake.write_errors(&undecodable).await?;
        }
        Ok(BatchOutcome {
            records: entries.len(),
            events: events.len(),
            undecodable: undecodable.len(),
            sessions_written,
            millis_behind_latest: None,
            shard_ended: false,
        })
    }

    /// Sessionizes per visitor and writes the changed snapshots; returns how many were written.
    async fn write_sessions(
        &self,
        events: &[(Event, bytes::Bytes)],
    ) -> Result<usize, ProcessorError> {
        let mut by_visitor: BTreeMap<&str, Vec<&Event>> = BTreeMap::new();
        for (event, _) in events {
            by_visitor
                .entry(&event.anonymous_id)
                .or_default()
                .push(event);
        }
        let mut written = 0;
        for (visitor, visitor_events) in by_visitor {
            let mut attempt = 0;
            loop {
                attempt += 1;
                let known = self.known_sessions(visitor, &visitor_events).await?;
                let changed = sessionize(known, &visitor_events, &self.rules);
                if changed.is_empty() {
                    break;
                }
                match self.backend.sessions.put(&changed).await {
                    Ok(()) => {
                        written += changed.len();
                        break;
                    }
                    Err(ConnectorError::Conflict { what }) if attempt < SESSION_WRITE_ATTEMPTS => {
                        info!(visitor, %what, attempt, "session changed concurrently; re-reading");
                    }
                    Err(ConnectorError::Conflict { .. }) => {
                        return Err(ProcessorError::SessionContention {
                            anonymous_id: visitor.to_owned(),
                            attempts: attempt,
                        })
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(written)
    }

    /// The stored sessions these events may belong to: the one in progress at the earliest event
    /// and every later one.
    async fn known_sessions(
        &self,
        visitor: &str,
        events: &[&Event],
    ) -> Result<Vec<Session>, ProcessorError> {
        let earliest = events.iter().map(|e| e.timestamp).min().unwrap_or(0);
        let window_start = earliest - self.rules.inactivity_ms;
        let sessions = &self.backend.sessions;
        let mut known = sessions.sessions_since(visitor, window_start).await?;
        if let Some(before) = sessions.latest_before(visitor, window_start).await? {
            if known.iter().all(|s| s.start_ms != before.start_ms) {
                known.insert(0, before);
            }
        }
        Ok(known)
    }
}

/// Splits stream entries into events (with their original bytes, which go to the lake as they
/// are) and records that are not events. Repeats of an event id within the batch are dropped.
fn decode(entries: &[StreamEntry]) -> (Vec<(Event, bytes::Bytes)>, Vec<UndecodableRecord>) {
    let mut seen = HashSet::new();
    let mut events = Vec::with_capacity(entries.len());
    let mut bad = Vec::new();
    for entry in entries {
        match serde_json::from_slice::<Event>(&entry.data) {
            Ok(event) => {
                if seen.insert(event.event_id) {
                    events.push((event, entry.data.clone()));
                }
            }
            Err(e) => bad.push(UndecodableRecord {
                received_at_ms: now_ms(),
                reason: format!("sequence {}: {e}", entry.sequence),
                data: entry.data.clone(),
            }),
        }
    }
    (events, bad)
}
