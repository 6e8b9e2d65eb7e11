//! The consume loop: take leases → read → decode (→ gather while the batch window is open,
//! `fetched.rs`) → sessionize → write sessions → write lake → checkpoint.
//!
//! The checkpoint moves only after the session and lake writes of everything before it
//! succeeded, and only while this instance holds the shard's lease (one conditional write); a
//! crash in between replays those records, which sessionization ignores (it remembers event
//! ids) and the lake's compaction drops by event id. Several instances with the same consumer
//! name share the shards through leases (see `leasing.rs`).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Mutex as AsyncMutex;

use retailmind_commerce::{CommerceError, CommerceStore, VisitFacts};
use retailmind_connectors::clock::now_ms;
use retailmind_connectors::{
    Backend, ConnectorError, LakeRecord, ReadBatch, StreamEntry, UndecodableRecord,
};
use retailmind_schema::{Event, Session};
use thiserror::Error;
use tracing::{debug, info, warn};

use crate::config::ProcessorConfig;
use crate::fetched::{Decoded, DecodedEvent, Fetched, Gathered};
use crate::leasing::LeaseKeeper;
use crate::metrics as m;
use crate::model::ModelKeeper;
use crate::sessionize::{sessionize, too_late, SessionRules, Sessionized};
use crate::stream_positions::{Follows, Span};

#[derive(Debug, Error)]
pub enum ProcessorError {
    #[error(transparent)]
    Connector(#[from] ConnectorError),
    #[error("sessions of {anonymous_id} kept changing under us after {attempts} attempts")]
    SessionContention { anonymous_id: String, attempts: u32 },
    #[error("customer profiles: {0}")]
    Profiles(#[from] CommerceError),
}

impl ProcessorError {
    /// Whether the same batch may succeed when tried again (an outage, a throttle).
    pub fn is_retryable(&self) -> bool {
        match self {
            ProcessorError::Connector(e) => e.is_retryable(),
            ProcessorError::Profiles(CommerceError::Database(_)) => true,
            // Another writer keeps changing the visitor's sessions (a forget, an instance that
            // lost the lease and has not noticed yet): it ends, and the batch is idempotent.
            ProcessorError::SessionContention { .. } => true,
            _ => false,
        }
    }
}

/// What a poll's lease work left it to do.
struct LeaseRound {
    /// A lease was taken.
    took: bool,
    /// The held shards to read, in a stable order.
    held: Vec<String>,
    /// A round that failed (ListShards or the lease table's scan throttled, say) while leases
    /// were held: those are read on, as their leases stay valid and are renewed on their own
    /// beat, and the round is tried again half a lease duration later. The error is the
    /// poll's then, as a failed shard's is.
    failure: Option<ProcessorError>,
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
    /// Records read are gathered in the shard's batch window, not written yet.
    pub gathering: bool,
}

/// Batches at least this long are decoded on the blocking pool, beside the async work.
const DECODE_APART: usize = 256;

pub struct Processor {
    backend: Backend,
    consumer: String,
    rules: SessionRules,
    batch_size: usize,
    idle_poll: Duration,
    /// The leases this instance holds. Locked briefly: by a poll's lease round, around each
    /// checkpoint (which must use the counter as last renewed), and by the renewals that run
    /// beside a poll.
    leases: AsyncMutex<LeaseKeeper>,
    min_read_interval: Duration,
    /// When each shard may be read next: within the stream's read rate per shard, and after
    /// `idle_poll` when its last read found nothing (the flag).
    next_read: Mutex<HashMap<String, (Instant, bool)>>,
    /// Each shard's next batch, read and decoded while the batch before it was being written.
    ahead: Mutex<HashMap<String, Fetched>>,
    /// How long a shard's reads are gathered into one batch (see `fetched.rs`).
    batch_window: Duration,
    /// Each shard's reads gathered in its open batch window, after its checkpoint.
    gathered: Mutex<HashMap<String, Gathered>>,
    /// Shutting down: what was read (gathered or read ahead) is written now, and nothing more
    /// is read.
    closing: AtomicBool,
    /// Shards whose last batch failed, left alone until their backoff ends, so that one shard
    /// throttled or failing does not hold the others back.
    failing: Mutex<HashMap<String, Backoff>>,
    /// Shards whose lag this instance has reported (`shard_millis_behind`).
    lag_reported: Mutex<HashSet<String>>,
    /// The recommendation model, folded from every applied batch and saved between polls.
    model: Arc<ModelKeeper>,
    /// Customer profiles, kept current from identified visitors' events and sessions.
    profiles: Option<Arc<dyn CommerceStore>>,
}

/// Least pause of a poll loop that waits (the read rate, a backoff, a batch window): never a
/// spin.
const MIN_PAUSE: Duration = Duration::from_millis(10);

/// Conditional session writes that lose a race are re-read and retried this often.
const SESSION_WRITE_ATTEMPTS: u32 = 5;

/// A shard's backoff after a failed batch: doubled on each failure in a row, within these.
const MIN_SHARD_BACKOFF: Duration = Duration::from_millis(100);
const MAX_SHARD_BACKOFF: Duration = Duration::from_secs(10);

/// What one poll of the held shards did.
struct Polled {
    records: usize,
    /// There may be more to do at once (a shard skipped for the read rate or its backoff, a
    /// lease taken, a shard finished): "nothing read" is not "nothing left".
    more: bool,
    /// The first retryable failure of a shard in this poll.
    failure: Option<ProcessorError>,
    /// A shard was read, or waits only for the read rate: the stream goes on.
    others_go_on: bool,
}

/// Until when a failing shard is left alone, and the wait that gave it.
struct Backoff {
    until: Instant,
    wait: Duration,
}

impl Processor {
    pub fn new(backend: Backend, config: &ProcessorConfig) -> Self {
        Processor {
            consumer: config.consumer.clone(),
            rules: config.session_rules(),
            batch_size: config.batch_size.max(1),
            idle_poll: config.idle_poll(),
            leases: AsyncMutex::new(LeaseKeeper::new(
                config.instance_id(),
                Duration::from_millis(config.lease_duration_ms.max(1)),
            )),
            min_read_interval: config.min_read_interval(),
            next_read: Mutex::new(HashMap::new()),
            ahead: Mutex::new(HashMap::new()),
            batch_window: config.batch_window(),
            gathered: Mutex::new(HashMap::new()),
            closing: AtomicBool::new(false),
            failing: Mutex::new(HashMap::new()),
            lag_reported: Mutex::new(HashSet::new()),
            model: Arc::new(ModelKeeper::new(
                backend.models.clone(),
                &config.model_name,
                Duration::from_millis(config.model_save_interval_ms),
            )),
            profiles: None,
            backend,
        }
    }

    /// Also keeps customer profiles current: links between customers and browsers, identify
    /// traits, category views and session summaries, before each checkpoint.
    pub fn with_profiles(mut self, store: Arc<dyn CommerceStore>) -> Self {
        self.profiles = Some(store);
        self
    }

    /// This instance's id in the lease table.
    pub async fn instance_id(&self) -> String {
        self.leases.lock().await.instance_id.clone()
    }

    /// Runs until `shutdown` completes, backing off on errors that a retry can cure; then writes
    /// what it read and had not written yet and releases its leases, so that other instances
    /// take the shards over at once.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) -> Result<(), ProcessorError> {
        let outcome = self.run_until(shutdown).await;
        self.write_unwritten().await;
        self.release_leases().await;
        self.save_model(true).await;
        outcome
    }

    async fn renewal_interval(&self) -> Duration {
        self.leases.lock().await.lease_duration / 3
    }

    /// Frees every lease this instance holds, and drops what it read of them and did not
    /// write (read ahead, gathered): the next holder reads it after the checkpoint.
    pub async fn release_leases(&self) {
        self.gathered().clear();
        if let Ok(mut ahead) = self.ahead.lock() {
            ahead.clear();
        }
        let mut keeper = self.leases.lock().await;
        keeper
            .release_all(self.backend.leases.as_ref(), &self.consumer)
            .await;
        metrics::gauge!(m::LEASES_HELD, "consumer" => self.consumer.clone()).set(0.0);
    }

    async fn run_until(&self, shutdown: impl Future<Output = ()>) -> Result<(), ProcessorError> {
        tokio::pin!(shutdown);
        let mut backoff = Duration::from_millis(100);
        loop {
            let pause = match self.poll_once().await {
                Ok(0) => self
                    .idle_poll
                    .min(self.renewal_interval().await)
                    .min(self.until_a_window_closes()),
                Ok(_) => {
                    backoff = Duration::from_millis(100);
                    Duration::ZERO
                }
                Err(e) if e.is_retryable() => {
                    warn!(error = %e, ?backoff, "processing failed; retrying");
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    // The next poll renews the leases: never pause so long that they expire.
                    backoff.min(self.renewal_interval().await)
                }
                Err(e) => return Err(e),
            };
            // A save of a large model to DynamoDB takes several calls: renewals go on.
            self.renewing(self.save_model(false)).await;
            // A stop asked for during the poll is taken before the next: it writes what the
            // poll left read and unwritten, and reads no more.
            tokio::select! {
                biased;
                _ = &mut shutdown => return Ok(()),
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// Writes and checkpoints what was read and not yet written (gathered in batch windows, or
    /// read ahead), at once, so that the shards' next owners do not read it again. A failure
    /// leaves it to them, and so does a write that takes longer than a lease lasts: had this
    /// instance crashed instead, its shards would be taken over by then, and an orchestrator
    /// that kills a slow stop (ECS after 30 s) would leave the leases unreleased as well. Cut
    /// off, a renewal or checkpoint in flight may leave the lease's counter here behind the
    /// stored one; the release then fails and the lease expires instead.
    async fn write_unwritten(&self) {
        self.closing.store(true, Ordering::Relaxed);
        let mut shards: BTreeSet<String> = self.gathered().keys().cloned().collect();
        if let Ok(ahead) = self.ahead.lock() {
            shards.extend(ahead.keys().cloned());
        }
        let limit = self.leases.lock().await.lease_duration;
        let written = tokio::time::timeout(limit, async {
            for shard_id in shards {
                if let Err(e) = self.renewing(self.process_held(&shard_id)).await {
                    warn!(shard_id, error = %e, "records read were not written on shutdown; they are read again from the checkpoint");
                }
            }
        })
        .await;
        if written.is_err() {
            warn!(
                ?limit,
                "writing what was read took longer than a lease on shutdown; the rest is read again from the checkpoints"
            );
        }
        self.closing.store(false, Ordering::Relaxed);
    }

    /// The reads gathered in open batch windows. Each change leaves the map whole, so a panic
    /// elsewhere while it was locked leaves nothing half done in it.
    fn gathered(&self) -> std::sync::MutexGuard<'_, HashMap<String, Gathered>> {
        self.gathered.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How long until the first open batch window closes, of the shards not backing off (their
    /// gathered batch waits for the backoff, as their reads do): at least [`MIN_PAUSE`],
    /// so that a due batch the poll could not write (its shard asked for, say) is no spin.
    fn until_a_window_closes(&self) -> Duration {
        let now = Instant::now();
        self.gathered()
            .iter()
            .filter(|(shard_id, _)| !self.backing_off(shard_id))
            .map(|(_, g)| g.due_at(self.batch_window).saturating_duration_since(now))
            .min()
            .map_or(Duration::MAX, |wait| wait.max(MIN_PAUSE))
    }

    /// Whether `shard_id` has reads gathered whose batch is to be written now.
    fn gathered_due(&self, shard_id: &str) -> bool {
        self.gathered()
            .get(shard_id)
            .is_some_and(|g| g.is_due(self.batch_window, self.batch_size, Instant::now()))
    }

    fn is_gathering(&self, shard_id: &str) -> bool {
        self.gathered().contains_key(shard_id)
    }

    /// Processes everything in the stream now, waiting for open batch windows to close, then
    /// releases its leases and returns how many records it processed.
    pub async fn drain(&self) -> Result<usize, ProcessorError> {
        let mut total = 0;
        let outcome = loop {
            match self.poll().await {
                Err(e) => break Err(e),
                // A poll that read nothing and met a failure: this is as far as it goes now.
                Ok(Polled {
                    records: 0,
                    failure: Some(e),
                    ..
                }) => break Err(e),
                Ok(Polled {
                    records: 0, more, ..
                }) => {
                    if !more {
                        break Ok(total);
                    }
                    // The read rate, a shard's backoff or an open batch window: wait a little,
                    // never spin. A window gathers what comes within it, read at the idle pace.
                    let pause = if self.gathered().is_empty() {
                        self.min_read_interval.max(MIN_PAUSE)
                    } else {
                        self.idle_poll.min(self.until_a_window_closes())
                    };
                    tokio::time::sleep(pause).await
                }
                Ok(polled) => total += polled.records,
            }
        };
        self.release_leases().await;
        self.save_model(true).await;
        outcome
    }

    /// The recommendation model this processor keeps.
    pub fn model(&self) -> &Arc<ModelKeeper> {
        &self.model
    }

    /// Saves the model if it changed (`now`) or if it changed and a save is due. A failure is
    /// counted and logged, never fatal: the model is derived data, the next save catches up.
    pub(crate) async fn save_model(&self, now: bool) {
        let saved = if now {
            self.model.save().await
        } else {
            self.model.save_if_due().await
        };
        if let Err(e) = saved {
            metrics::counter!(m::MODEL_SAVE_FAILURES).increment(1);
            warn!(error = %e, "recommendation model not saved; retrying later");
        }
    }

    /// One read of every shard that may be read now; returns the number of records processed.
    ///
    /// After a split or merge, a child shard is read only once every parent still in the stream
    /// has been read to its end, so a visitor's older events are always sessionized first.
    ///
    /// A shard whose batch fails is left alone for a backoff of its own while the others go on;
    /// the poll fails only when a shard failed and none could go on (none read, none waiting
    /// only for the read rate), so that the caller backs off as a whole then.
    pub async fn poll_once(&self) -> Result<usize, ProcessorError> {
        let polled = self.poll().await?;
        match polled.failure {
            Some(e) if polled.records == 0 && !polled.others_go_on => Err(e),
            _ => Ok(polled.records),
        }
    }

    async fn poll(&self) -> Result<Polled, ProcessorError> {
        self.renewing(self.poll_shards()).await
    }

    /// Runs `work` while renewing the held leases whenever a renewal is due, so that a batch
    /// slower than the lease duration (a throttled write, a long retry) does not cost the
    /// leases. Both are polled together: `work` may hold the lease lock the renewal waits for.
    /// A renewal once started is finished even when `work` ends meanwhile: one cut off after
    /// its write would leave the counter here behind the stored one.
    async fn renewing<T>(&self, work: impl Future<Output = T>) -> T {
        let beat = self.renewal_interval().await / 2;
        let done = tokio::sync::Notify::new();
        let work = async {
            let out = work.await;
            done.notify_one();
            out
        };
        let renewals = async {
            loop {
                tokio::select! {
                    _ = done.notified() => return,
                    _ = tokio::time::sleep(beat) => {}
                }
                let mut keeper = self.leases.lock().await;
                if !keeper.renewal_due() {
                    continue;
                }
                if let Err(e) = keeper
                    .renew(self.backend.leases.as_ref(), &self.consumer)
                    .await
                {
                    warn!(error = %e, "leases not renewed; trying again");
                }
            }
        };
        tokio::join!(work, renewals).0
    }

    /// The poll's lease work: a full round when one is due, else renewals and handovers.
    async fn lease_round(&self) -> Result<LeaseRound, ProcessorError> {
        let store = self.backend.leases.as_ref();
        let round_due = self.leases.lock().await.round_due();
        // Listed outside the lock, which the renewals need.
        let listed = if round_due {
            Some(self.backend.reader.shards().await)
        } else {
            None
        };
        let mut keeper = self.leases.lock().await;
        let (took, failure) = match listed {
            None => {
                keeper.between_rounds(store, &self.consumer).await?;
                (false, None)
            }
            Some(listed) => {
                let round = match listed {
                    Ok(shards) => keeper.sync(store, &self.consumer, &shards).await,
                    Err(e) => Err(e),
                };
                match round {
                    Ok(took) => (took, None),
                    Err(e) if e.is_retryable() && !keeper.held.is_empty() => {
                        warn!(error = %e, "lease round failed; reading the held shards on");
                        metrics::counter!(m::LEASE_ROUND_FAILURES, "consumer" => self.consumer.clone())
                            .increment(1);
                        keeper.round_failed();
                        (false, Some(e.into()))
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        };
        // A shard the stream no longer listed at the last round is not read (its lease goes
        // once freed, see `LeaseKeeper::sync`).
        let held = keeper
            .held_shards()
            .into_iter()
            .filter(|shard_id| keeper.is_listed(shard_id))
            .collect();
        Ok(LeaseRound {
            took,
            held,
            failure,
        })
    }

    async fn poll_shards(&self) -> Result<Polled, ProcessorError> {
        let LeaseRound {
            took: mut more,
            held,
            failure: round_failure,
        } = self.lease_round().await?;
        let mut total = 0;
        // A failing shard is retried after its own backoff while the others go on; an error
        // that retrying cannot mend stops the poll at once.
        let (mut others_go_on, mut failure) = (false, round_failure);
        for shard_id in held {
            if self.backing_off(&shard_id) {
                more = true;
                continue;
            }
            if !self.has_ahead(&shard_id)
                && !self.gathered_due(&shard_id)
                && !self.may_read_now(&shard_id)
            {
                // A shard waiting out its idle pause had nothing at its last read: for `drain`
                // it is done, and waiting for it would never end while shards take turns. One
                // with reads gathered is not: its window will close.
                more |= !self.found_nothing_last(&shard_id) || self.is_gathering(&shard_id);
                others_go_on = true;
                continue;
            }
            match self.process_held(&shard_id).await {
                Ok(outcome) => {
                    others_go_on = true;
                    self.succeeded(&shard_id);
                    total += outcome.records;
                    more |= outcome.shard_ended || outcome.gathering;
                }
                Err(e) if e.is_retryable() => {
                    self.count_failure(&shard_id, true);
                    let wait = self.failed(&shard_id);
                    warn!(shard_id, error = %e, ?wait, "shard batch failed; retrying it later");
                    more = true;
                    failure.get_or_insert(e);
                }
                Err(e) => {
                    self.count_failure(&shard_id, false);
                    return Err(e);
                }
            }
        }
        let keeper = self.leases.lock().await;
        if let Ok(mut ahead) = self.ahead.lock() {
            // What was read ahead of a lost or handed-over shard is the new owner's to read.
            ahead.retain(|shard_id, _| keeper.held.contains_key(shard_id));
        }
        // So are its gathered reads, which were never checkpointed.
        self.gathered()
            .retain(|shard_id, _| keeper.held.contains_key(shard_id));
        if let Ok(mut failing) = self.failing.lock() {
            failing.retain(|shard_id, _| keeper.held.contains_key(shard_id));
        }
        if let Ok(mut lag_reported) = self.lag_reported.lock() {
            // A shard no longer read here (handed over, lost, ended) reports no lag from here:
            // its last figure would stay on the dashboards, and set off alerts, for good.
            lag_reported.retain(|shard_id| {
                let held = keeper.held.contains_key(shard_id);
                if !held {
                    metrics::gauge!(m::SHARD_MILLIS_BEHIND, "consumer" => self.consumer.clone(), "shard_id" => shard_id.clone())
                        .set(0.0);
                }
                held
            });
        }
        metrics::gauge!(m::LEASES_HELD, "consumer" => self.consumer.clone())
            .set(keeper.held.len() as f64);
        Ok(Polled {
            records: total,
            more,
            failure,
            others_go_on,
        })
    }

    fn count_failure(&self, shard_id: &str, retryable: bool) {
        metrics::counter!(
            m::BATCH_FAILURES,
            "consumer" => self.consumer.clone(),
            "shard_id" => shard_id.to_owned(),
            "retryable" => if retryable { "true" } else { "false" },
        )
        .increment(1);
    }

    /// Whether `shard_id` failed lately and its backoff has not ended.
    fn backing_off(&self, shard_id: &str) -> bool {
        self.failing
            .lock()
            .is_ok_and(|f| f.get(shard_id).is_some_and(|b| Instant::now() < b.until))
    }

    /// Records a failed batch of `shard_id`; returns how long it is left alone.
    fn failed(&self, shard_id: &str) -> Duration {
        let Ok(mut failing) = self.failing.lock() else {
            return Duration::ZERO;
        };
        let wait = match failing.get(shard_id) {
            Some(b) => (b.wait * 2).min(MAX_SHARD_BACKOFF),
            None => MIN_SHARD_BACKOFF,
        };
        failing.insert(
            shard_id.to_owned(),
            Backoff {
                until: Instant::now() + wait,
                wait,
            },
        );
        wait
    }

    fn succeeded(&self, shard_id: &str) {
        if let Ok(mut failing) = self.failing.lock() {
            failing.remove(shard_id);
        }
    }

    fn has_ahead(&self, shard_id: &str) -> bool {
        self.ahead
            .lock()
            .is_ok_and(|ahead| ahead.contains_key(shard_id))
    }

    /// The batch read ahead for `shard_id`, if it was read after `after` (the lease may have
    /// moved on, or come back at another checkpoint, since): `Err` when there was one but it
    /// no longer fits.
    fn take_ahead(&self, shard_id: &str, after: Option<&str>) -> Result<Option<Fetched>, ()> {
        let Some(fetched) = self.ahead.lock().ok().and_then(|mut a| a.remove(shard_id)) else {
            return Ok(None);
        };
        if fetched.after.as_deref() == after {
            Ok(Some(fetched))
        } else {
            Err(())
        }
    }

    /// Reads up to `limit` records of `shard_id` after `after` and decodes them; a long batch is decoded on
    /// the blocking pool, so that it runs on the other core while the batch before it is
    /// still being sessionized and written.
    async fn fetch(
        &self,
        shard_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Fetched, ProcessorError> {
        let batch = self.backend.reader.read(shard_id, after, limit).await;
        let found_nothing = batch
            .as_ref()
            .is_ok_and(|b| b.entries.is_empty() && !b.shard_ended);
        self.read_ended(shard_id, found_nothing);
        let batch = batch?;
        let after = after.map(str::to_owned);
        let decoded = |batch: ReadBatch| Fetched::decode(after, batch);
        if batch.entries.len() < DECODE_APART {
            return Ok(decoded(batch));
        }
        tokio::task::spawn_blocking(move || decoded(batch))
            .await
            .map_err(|e| ConnectorError::unavailable("decode", e).into())
    }

    /// Reads the batch after `last` ahead as soon as the read rate allows, unless `applied`
    /// (the current batch's writes) ends first: on Kinesis (5 reads per second per shard) the
    /// next read then overlaps a write that takes longer than the rate's gap. A failure is
    /// left for the next poll's own read to meet. Nothing read is not kept: by the next poll
    /// there may be.
    async fn read_ahead(
        &self,
        shard_id: &str,
        last: &str,
        applied: &tokio::sync::Notify,
    ) -> Option<Fetched> {
        while let Some(wait) = self.read_wait(shard_id) {
            tokio::select! {
                _ = applied.notified() => return None,
                _ = tokio::time::sleep(wait) => {}
            }
        }
        let fetched = self
            .fetch(shard_id, Some(last), self.batch_size)
            .await
            .ok()?;
        (!fetched.batch.entries.is_empty() || fetched.batch.shard_ended).then_some(fetched)
    }

    /// Counts the read rate of `shard_id` from the end of the read that just ended too. Counted
    /// from its start only, the gap between two reads' calls shrank by however much longer the
    /// first took to reach the stream than the second, and a read of two calls (Kinesis's,
    /// after an expired iterator) left less than the gap before the next: Kinesis refuses a
    /// sixth call within any second, and the fake Kinesis of the tests met such sixths.
    ///
    /// A shard whose read `found_nothing` waits `idle_poll` before the next, even while other
    /// shards are busy: its 5 reads a second are shared with the stream's other consumers.
    fn read_ended(&self, shard_id: &str, found_nothing: bool) {
        if self.min_read_interval.is_zero() {
            return;
        }
        let gap = if found_nothing {
            self.idle_poll.max(self.min_read_interval)
        } else {
            self.min_read_interval
        };
        if let Ok(mut next_read) = self.next_read.lock() {
            next_read.insert(shard_id.to_owned(), (Instant::now() + gap, found_nothing));
        }
    }

    /// Whether the last read of `shard_id` found nothing.
    fn found_nothing_last(&self, shard_id: &str) -> bool {
        self.next_read
            .lock()
            .is_ok_and(|n| n.get(shard_id).is_some_and(|(_, nothing)| *nothing))
    }

    /// Whether `shard_id` may be read now without passing the per-shard read rate; if so, the
    /// read is counted from now.
    fn may_read_now(&self, shard_id: &str) -> bool {
        self.read_wait(shard_id).is_none()
    }

    /// How long until `shard_id` may be read without passing the per-shard read rate; `None`
    /// when it may be now, and then the read is counted from now.
    fn read_wait(&self, shard_id: &str) -> Option<Duration> {
        if self.min_read_interval.is_zero() {
            return None;
        }
        let Ok(mut next_read) = self.next_read.lock() else {
            return None;
        };
        let now = Instant::now();
        match next_read.get(shard_id) {
            Some((at, _)) if now < *at => Some(*at - now),
            _ => {
                next_read.insert(shard_id.to_owned(), (now + self.min_read_interval, false));
                None
            }
        }
    }

    /// The batch of `shard_id` to write now, after `checkpoint`: what was read ahead, or read now
    /// (when the read rate lets the caller through), with what the shard's batch window
    /// gathered before it. `None` when there is nothing to write yet: the read rate holds the
    /// read back, the window is open and keeps what was read, what was gathered no longer
    /// follows the checkpoint and is dropped, or the processor is closing and had neither
    /// gathered nor read ahead anything that follows it.
    async fn next_batch(
        &self,
        shard_id: &str,
        checkpoint: Option<&str>,
    ) -> Result<Option<Fetched>, ProcessorError> {
        let closing = self.closing.load(Ordering::Relaxed);
        let (after, room) = {
            let mut gathered = self.gathered();
            match gathered.get(shard_id) {
                // The lease came back at another checkpoint: what was gathered does not follow
                // it. The caller may have let the shard through for it, not for a read.
                Some(g) if g.fetched.after.as_deref() != checkpoint => {
                    gathered.remove(shard_id);
                    return Ok(None);
                }
                Some(g)
                    if closing || g.is_due(self.batch_window, self.batch_size, Instant::now()) =>
                {
                    return Ok(gathered.remove(shard_id).map(|g| g.fetched));
                }
                Some(g) => (
                    g.fetched.last_sequence().map(str::to_owned),
                    self.batch_size.saturating_sub(g.fetched.len()).max(1),
                ),
                // What was read ahead is written on a stop too, if it still follows.
                None if closing => {
                    return Ok(self.take_ahead(shard_id, checkpoint).ok().flatten());
                }
                None => (checkpoint.map(str::to_owned), self.batch_size),
            }
        };
        let after = after.as_deref();
        let read = match self.take_ahead(shard_id, after) {
            Ok(Some(fetched)) => fetched,
            Ok(None) => self.fetch(shard_id, after, room).await?,
            // The caller let this shard through for its read-ahead, not for a read: the read
            // rate still applies.
            Err(()) if !self.may_read_now(shard_id) => return Ok(None),
            Err(()) => self.fetch(shard_id, after, room).await?,
        };
        self.report_lag(shard_id, read.batch.millis_behind_latest);
        let mut gathered = self.gathered();
        let batch = match gathered.remove(shard_id) {
            Some(mut g) => {
                g.fetched.extend(read);
                g
            }
            None if self.batch_window.is_zero() || read.len() == 0 => return Ok(Some(read)),
            None => Gathered::open(read),
        };
        if batch.is_due(self.batch_window, self.batch_size, Instant::now()) {
            return Ok(Some(batch.fetched));
        }
        debug!(
            shard_id,
            records = batch.fetched.len(),
            "gathering in the batch window"
        );
        gathered.insert(shard_id.to_owned(), batch);
        Ok(None)
    }

    fn report_lag(&self, shard_id: &str, millis_behind_latest: Option<i64>) {
        let Some(behind) = millis_behind_latest else {
            return;
        };
        metrics::gauge!(m::SHARD_MILLIS_BEHIND, "consumer" => self.consumer.clone(), "shard_id" => shard_id.to_owned())
            .set(behind as f64);
        if let Ok(mut lag_reported) = self.lag_reported.lock() {
            if !lag_reported.contains(shard_id) {
                lag_reported.insert(shard_id.to_owned());
            }
        }
    }

    /// Reads one batch of a held shard after its checkpoint, carries it through to the lake and
    /// checkpoints it while still holding the lease. A shard closed by resharding and read to
    /// its end is marked as ended in its lease, which frees its children. A shard another
    /// instance asked for is not read: the next poll hands it over.
    async fn process_held(&self, shard_id: &str) -> Result<BatchOutcome, ProcessorError> {
        let checkpoint = {
            let keeper = self.leases.lock().await;
            match keeper.held.get(shard_id) {
                Some(held) if !keeper.is_asked_for(shard_id) => held.checkpoint.clone(),
                _ => return Ok(BatchOutcome::default()),
            }
        };
        let store = self.backend.leases.as_ref();
        let Some(fetched) = self.next_batch(shard_id, checkpoint.as_deref()).await? else {
            return Ok(BatchOutcome {
                gathering: self.is_gathering(shard_id),
                ..BatchOutcome::default()
            });
        };
        let batch = &fetched.batch;
        let Some(last) = batch.entries.last() else {
            if batch.shard_ended {
                let mut keeper = self.leases.lock().await;
                let Some(held) = keeper.held.get(shard_id) else {
                    return Ok(BatchOutcome::default());
                };
                let (owner, counter) = (keeper.instance_id.clone(), held.counter);
                match store
                    .finish(&self.consumer, shard_id, &owner, counter)
                    .await
                {
                    Ok(()) => {
                        keeper.finished(shard_id);
                        info!(shard_id, "shard read to its end");
                        drop(keeper);
                        self.model.forget_shard(shard_id).await;
                    }
                    Err(ConnectorError::Conflict { what }) => keeper.lost(shard_id, &what),
                    Err(e) => return Err(e.into()),
                }
            }
            return Ok(BatchOutcome {
                millis_behind_latest: batch.millis_behind_latest,
                shard_ended: batch.shard_ended,
                ..BatchOutcome::default()
            });
        };
        let last_sequence = last.sequence.clone();
        // The next batch is read and decoded while this one is written; it is used only if
        // this one is checkpointed (it starts right after it).
        let done = tokio::sync::Notify::new();
        let (applied, ahead) = tokio::join!(
            async {
                let applied = self
                    .apply_decoded(
                        shard_id,
                        fetched
                            .after
                            .as_deref()
                            .map_or(Follows::ShardStart, Follows::Record),
                        &batch.entries,
                        &fetched.events,
                        &fetched.undecodable,
                    )
                    .await;
                done.notify_one();
                applied
            },
            async {
                if batch.shard_ended || self.closing.load(Ordering::Relaxed) {
                    return None;
                }
                self.read_ahead(shard_id, &last_sequence, &done).await
            }
        );
        let mut outcome = applied?;
        outcome.millis_behind_latest = batch.millis_behind_latest;
        {
            // Locked through the write, so no renewal moves the counter between the read of it
            // and the conditional write that names it.
            let mut keeper = self.leases.lock().await;
            let Some(held) = keeper.held.get(shard_id) else {
                // Lost while the batch was in flight: the new owner reads it again from the
                // last checkpoint, which the idempotent writes allow.
                return Ok(outcome);
            };
            let (owner, counter) = (keeper.instance_id.clone(), held.counter);
            match store
                .checkpoint(&self.consumer, shard_id, &owner, counter, &last_sequence)
                .await
            {
                Ok(()) => {
                    if let Some(held) = keeper.held.get_mut(shard_id) {
                        held.checkpoint = Some(last_sequence.clone());
                    }
                    if let (Some(ahead), Ok(mut slot)) = (ahead, self.ahead.lock()) {
                        slot.insert(shard_id.to_owned(), ahead);
                    }
                }
                Err(ConnectorError::Conflict { what }) => {
                    keeper.lost(shard_id, &what);
                    return Ok(outcome);
                }
                Err(e) => return Err(e.into()),
            }
        }
        metrics::counter!(m::RECORDS_PROCESSED, "consumer" => self.consumer.clone())
            .increment(outcome.records as u64);
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
    /// position itself and does not say what a batch follows). All or nothing: on `Err` the
    /// whole batch must be retried, which is safe because it is idempotent.
    pub async fn apply(
        &self,
        shard_id: &str,
        entries: &[StreamEntry],
    ) -> Result<BatchOutcome, ProcessorError> {
        let decoded = Decoded::of(entries);
        self.apply_decoded(
            shard_id,
            Follows::Unknown,
            entries,
            &decoded.events,
            &decoded.undecodable,
        )
        .await
    }

    /// [`apply`](Self::apply) of `entries`, decoded already, which come after `follows`.
    async fn apply_decoded(
        &self,
        shard_id: &str,
        follows: Follows<'_>,
        entries: &[StreamEntry],
        events: &[DecodedEvent],
        undecodable: &[UndecodableRecord],
    ) -> Result<BatchOutcome, ProcessorError> {
        let sessions = async {
            let sessions = self.write_sessions(events).await?;
            if let Some(profiles) = &self.profiles {
                let facts = VisitFacts::gather(
                    events.iter().map(|decoded| &decoded.event),
                    sessions.written.iter().chain(&sessions.replayed),
                );
                profiles.observe(&facts, now_ms()).await?;
            }
            Ok::<_, ProcessorError>(sessions)
        };
        // The lake does not depend on the sessions: both writes wait on disk or network at the
        // same time, and the caller checkpoints only once both succeeded. The model learns
        // meanwhile, on this task while the writes run on the blocking pool, yielding to them
        // often; it remembers how far into the shard it is, so a batch applied again after a
        // failed write teaches it nothing twice.
        let model = async {
            let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
                return Ok(0);
            };
            let span = Span {
                shard: shard_id,
                follows,
                first: &first.sequence,
                last: &last.sequence,
            };
            let records = events
                .iter()
                .map(|decoded| (&decoded.event, entries[decoded.record].sequence.as_str()));
            self.model
                .observe(span, records)
                .await
                .map_err(ProcessorError::from)
        };
        // All three run to their end even when one fails: what lands now is not done again by
        // the batch's retry, which finds the landed sessions as `replayed` (their profile rows
        // are written then) and the events the model learned already.
        let (sessions, lake, model) = tokio::join!(
            sessions,
            self.write_lake(shard_id, events, undecodable),
            model
        );
        let sessions = sessions?;
        lake?;
        model?;
        Ok(BatchOutcome {
            records: entries.len(),
            events: events.len(),
            undecodable: undecodable.len(),
            sessions_written: sessions.written.len(),
            ..BatchOutcome::default()
        })
    }

    /// Writes every event to the lake as it came, and the records that are not events to
    /// `errors/`.
    async fn write_lake(
        &self,
        shard_id: &str,
        events: &[DecodedEvent],
        undecodable: &[UndecodableRecord],
    ) -> Result<(), ProcessorError> {
        let lake_records: Vec<LakeRecord> = events
            .iter()
            .map(|decoded| LakeRecord::new(decoded.event.timestamp, decoded.data.clone()))
            .collect();
        self.backend.lake.write_events(&lake_records).await?;
        if !undecodable.is_empty() {
            warn!(
                shard_id,
                count = undecodable.len(),
                "undecodable records sent to errors/"
            );
            self.backend.lake.write_errors(undecodable).await?;
        }
        Ok(())
    }

    /// Sessionizes per visitor and writes the changed snapshots; returns the sessions the
    /// events are in, written now or already.
    ///
    /// The whole batch is read in one call and written in one call (one SQLite transaction and
    /// fsync on the embedded store). If that write loses a race for any session, the batch is
    /// done again visitor by visitor, each re-read and retried on its own; the snapshots that
    /// did land make those visitors' events no-ops then.
    async fn write_sessions(
        &self,
        events: &[DecodedEvent],
    ) -> Result<TouchedSessions, ProcessorError> {
        let mut by_visitor: BTreeMap<&str, Vec<&Event>> = BTreeMap::new();
        let mut late = 0;
        for DecodedEvent { event, .. } in events {
            if too_late(event, &self.rules) {
                late += 1;
                continue;
            }
            by_visitor
                .entry(&event.anonymous_id)
                .or_default()
                .push(event);
        }
        if late > 0 {
            debug!(
                late,
                "events past the allowed lateness kept out of sessions"
            );
            metrics::counter!(m::LATE_EVENTS, "consumer" => self.consumer.clone()).increment(late);
        }
        let wanted: Vec<(String, i64)> = by_visitor
            .iter()
            .map(|(visitor, events)| ((*visitor).to_owned(), self.window_start(events)))
            .collect();
        let mut known = self.backend.sessions.sessions_around(&wanted).await?;
        let mut folded = Sessionized::default();
        for (visitor, visitor_events) in &by_visitor {
            let stored = known.remove(*visitor).unwrap_or_default();
            folded.add(sessionize(stored, visitor_events, &self.rules));
        }
        if folded.over_cap > 0 {
            debug!(
                over_cap = folded.over_cap,
                "events within a full session kept out of sessions"
            );
            metrics::counter!(m::SESSION_FULL_EVENTS, "consumer" => self.consumer.clone())
                .increment(folded.over_cap);
        }
        match self.store_sessions(folded).await {
            Ok(written) => Ok(written),
            Err(ConnectorError::Conflict { what }) => {
                info!(%what, "a session changed concurrently; writing visitor by visitor");
                self.write_sessions_by_visitor(&by_visitor).await
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Writes what [`sessionize`] made: the plain snapshots in one call, then each merge in a
    /// call of its own (all or nothing for its sessions).
    async fn store_sessions(&self, folded: Sessionized) -> Result<TouchedSessions, ConnectorError> {
        let Sessionized {
            mut changed,
            merged,
            replayed,
            ..
        } = folded;
        if !changed.is_empty() {
            self.backend.sessions.put(&changed).await?;
        }
        for merge in merged {
            self.backend.sessions.merge(&merge).await?;
            metrics::counter!(m::SESSIONS_ABSORBED, "consumer" => self.consumer.clone())
                .increment(merge.absorbed.len() as u64);
            changed.push(merge.survivor);
        }
        Ok(TouchedSessions {
            written: changed,
            replayed,
        })
    }

    async fn write_sessions_by_visitor(
        &self,
        by_visitor: &BTreeMap<&str, Vec<&Event>>,
    ) -> Result<TouchedSessions, ProcessorError> {
        let mut touched = TouchedSessions::default();
        for (visitor, visitor_events) in by_visitor {
            let visitor = *visitor;
            let mut attempt = 0;
            loop {
                attempt += 1;
                // The visitor's whole history, not only the sessions around the events: a store
                // written before sessions were kept disjoint may hide one session inside
                // another, where the narrower read misses it and a replayed event of it would
                // conflict with its stored row on every attempt.
                let stored = self.backend.sessions.sessions_of(visitor).await?;
                // Events over a session's cap were counted by the batch-wide attempt.
                let folded = sessionize(stored, visitor_events, &self.rules);
                match self.store_sessions(folded).await {
                    Ok(visitor) => {
                        touched.written.extend(visitor.written);
                        touched.replayed.extend(visitor.replayed);
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
        Ok(touched)
    }

    /// From when on a visitor's stored sessions may take these events: the session in progress
    /// at the earliest event and every later one.
    fn window_start(&self, events: &[&Event]) -> i64 {
        let earliest = events.iter().map(|e| e.timestamp).min().unwrap_or(0);
        earliest - self.rules.inactivity_ms
    }
}

/// The sessions a batch's events are in, once written.
#[derive(Default)]
struct TouchedSessions {
    /// The snapshots this batch wrote.
    written: Vec<Session>,
    /// Stored sessions that held some of its events already and did not change.
    replayed: Vec<Session>,
}
