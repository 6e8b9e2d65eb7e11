//! This instance's side of the lease protocol: which shards it holds, at which counter and
//! checkpoint, and one round of lease work (create leases for new shards, renew, hand over
//! what another instance asked for, take what the rules say). The rules themselves are pure,
//! in [`retailmind_connectors::lease::rules`].
//!
//! Renewals run on their own beat, also while a batch is in flight, so a slow write cannot let
//! a lease expire under its holder. Everything else runs in the consume loop between two
//! batches: a lease asked for is released only after the batch in flight was checkpointed, so
//! two instances never read one shard at the same time while both keep renewing.
//!
//! The shard list and the lease table are read in a full round only every half lease duration
//! (as the KCL's lease taker and shard sync run on timers, not per read): a busy consumer
//! polls its shards five times a second, and a ListShards call plus a Scan of the lease table
//! with each poll would cost every instance that many DynamoDB reads and ListShards calls,
//! which the stream's other consumers share. A round comes at once when what it decides may
//! have changed here: at the start, after a held shard was read to its end (its children are
//! to be taken), after a lease was lost, and after the leases were released. A round that
//! fails while leases are held is tried again after the same interval, and the held shards
//! are read on meanwhile.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use retailmind_connectors::lease::rules::{self, Observations, View};
use retailmind_connectors::{ConnectorError, Lease, LeaseStore, ShardInfo};
use tracing::{debug, info, warn};

/// A lease this instance holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Held {
    pub counter: u64,
    pub checkpoint: Option<String>,
}

/// What this instance knows about the lease table.
pub(crate) struct LeaseKeeper {
    pub instance_id: String,
    pub lease_duration: Duration,
    pub held: HashMap<String, Held>,
    /// Held shards another instance asked for, to be released between two batches.
    asked_for: HashSet<String>,
    /// When this instance handed each shard over: not taken back (while it looks free, before
    /// the asker's next round) for a lease duration, unless the asker never takes it.
    handed_over: HashMap<String, Instant>,
    observations: Observations,
    last_renewal: Option<Instant>,
    /// When the last full round ran; `None` when the next poll must run one.
    last_round: Option<Instant>,
    /// The shards the stream listed at the last full round.
    listed: HashSet<String>,
}

impl LeaseKeeper {
    pub fn new(instance_id: String, lease_duration: Duration) -> Self {
        LeaseKeeper {
            instance_id,
            lease_duration,
            held: HashMap::new(),
            asked_for: HashSet::new(),
            handed_over: HashMap::new(),
            observations: Observations::default(),
            last_renewal: None,
            last_round: None,
            listed: HashSet::new(),
        }
    }

    /// Whether the next poll runs a full round ([`sync`](Self::sync)), listing the shards
    /// first; otherwise it runs [`between_rounds`](Self::between_rounds).
    pub fn round_due(&self) -> bool {
        self.last_round
            .is_none_or(|at| at.elapsed() >= self.lease_duration / 2)
    }

    /// A round failed while leases were held: the next one comes after the usual interval, so
    /// a throttled ListShards or lease table is not asked again with every poll.
    pub fn round_failed(&mut self) {
        self.last_round = Some(Instant::now());
    }

    /// Whether the stream listed `shard_id` at the last full round.
    pub fn is_listed(&self, shard_id: &str) -> bool {
        self.listed.contains(shard_id)
    }

    /// Forgets `shard_id`, read to its end and marked so: the next poll runs a full round, so
    /// that its children are taken without waiting for the round's timer.
    pub fn finished(&mut self, shard_id: &str) {
        self.held.remove(shard_id);
        self.asked_for.remove(shard_id);
        self.last_round = None;
    }

    /// Held shards in a stable order.
    pub fn held_shards(&self) -> Vec<String> {
        let mut shards: Vec<String> = self.held.keys().cloned().collect();
        shards.sort();
        shards
    }

    /// Renewals happen three times per lease duration, so one late renewal does not lose a
    /// lease.
    pub fn renewal_due(&self) -> bool {
        self.last_renewal
            .is_none_or(|at| at.elapsed() >= self.lease_duration / 3)
    }

    /// Forgets `shard_id` after a write found the lease held by someone else.
    pub fn lost(&mut self, shard_id: &str, why: &str) {
        self.asked_for.remove(shard_id);
        if self.held.remove(shard_id).is_some() {
            // The table changed in a way this instance did not see: look at it again soon.
            self.last_round = None;
            warn!(
                shard_id,
                why, "lease lost; its records will be read by the new owner"
            );
        }
    }

    /// What a poll does with the lease table when no full round is due: renewals if due, and
    /// the handovers asked for.
    pub async fn between_rounds(
        &mut self,
        store: &dyn LeaseStore,
        consumer: &str,
    ) -> Result<(), ConnectorError> {
        if self.renewal_due() {
            self.renew(store, consumer).await?;
        }
        self.hand_over(store, consumer).await
    }

    /// One full round over `shards`, the stream's shards as just listed: renewals if due,
    /// handovers asked for, leases for new shards, leases of shards gone from the stream
    /// removed, takes and a request per the rules. Returns whether this instance took any
    /// lease.
    pub async fn sync(
        &mut self,
        store: &dyn LeaseStore,
        consumer: &str,
        shards: &[ShardInfo],
    ) -> Result<bool, ConnectorError> {
        // Renew (and hand over) first, so the listing below shows the leases as they are now.
        self.between_rounds(store, consumer).await?;
        self.listed = shards.iter().map(|s| s.shard_id.clone()).collect();
        let mut leases = store.leases(consumer).await?;
        let known: HashSet<&str> = leases.iter().map(|l| l.shard_id.as_str()).collect();
        let mut created = false;
        for shard in shards
            .iter()
            .filter(|s| !known.contains(s.shard_id.as_str()))
        {
            created |= store.create(consumer, shard).await?;
        }
        if created {
            leases = store.leases(consumer).await?;
        }
        self.forget_taken(&leases);
        let listed: HashSet<&str> = shards.iter().map(|s| s.shard_id.as_str()).collect();
        if self.remove_gone(store, consumer, &leases, &listed).await? {
            leases = store.leases(consumer).await?;
        }
        let now = Instant::now();
        self.observations.observe(&leases, now);
        let held: HashSet<String> = self.held.keys().cloned().collect();
        let duration = self.lease_duration;
        self.handed_over
            .retain(|_, at| now.saturating_duration_since(*at) < duration);
        let handed_over: HashSet<String> = self.handed_over.keys().cloned().collect();
        let plan = rules::plan(&View {
            me: &self.instance_id,
            leases: &leases,
            listed: &listed,
            held: &held,
            handed_over: &handed_over,
            observations: &self.observations,
            now,
            lease_duration: self.lease_duration,
        });
        let mut took = false;
        for shard_id in &plan.take {
            let Some(lease) = leases.iter().find(|l| &l.shard_id == shard_id) else {
                continue;
            };
            match store
                .take(consumer, shard_id, lease.counter, &self.instance_id)
                .await
            {
                Ok(taken) => {
                    info!(shard_id, previous_owner = ?lease.owner, checkpoint = ?taken.checkpoint, "lease taken");
                    self.hold(taken);
                    took = true;
                }
                Err(ConnectorError::Conflict { what }) => {
                    debug!(%what, "another instance was first")
                }
                Err(e) => return Err(e),
            }
        }
        if let Some((shard_id, owner)) = plan.request {
            match store
                .request(consumer, &shard_id, &owner, &self.instance_id)
                .await
            {
                Ok(()) => info!(shard_id, owner, "asked for a lease to balance the shards"),
                Err(ConnectorError::Conflict { what }) => debug!(%what, "request not needed"),
                Err(e) => return Err(e),
            }
        }
        // Only a round that ran through counts: a failed one is tried again at the next poll
        // (or after the interval, `round_failed`, while leases are held). What it saw is
        // current, so a lease lost within it needs no round of its own.
        self.last_round = Some(Instant::now());
        Ok(took)
    }

    /// Removes the leases of shards the stream no longer lists (they aged out after a
    /// resharding, so nothing is left to read), each freed first
    /// ([`freed_for_removal`](Self::freed_for_removal)). Returns whether the table changed.
    async fn remove_gone(
        &mut self,
        store: &dyn LeaseStore,
        consumer: &str,
        leases: &[Lease],
        listed: &HashSet<&str>,
    ) -> Result<bool, ConnectorError> {
        let mut changed = false;
        for lease in leases
            .iter()
            .filter(|l| !listed.contains(l.shard_id.as_str()))
        {
            let Some(counter) = self.freed_for_removal(store, consumer, lease).await? else {
                continue;
            };
            if !lease.shard_ended {
                warn!(
                    shard_id = lease.shard_id,
                    checkpoint = ?lease.checkpoint,
                    "shard left the stream before it was read to its end"
                );
            }
            match store.remove(consumer, &lease.shard_id, counter).await {
                Ok(()) => {
                    info!(
                        shard_id = lease.shard_id,
                        "lease of a shard gone from the stream removed"
                    );
                    changed = true;
                }
                Err(ConnectorError::Conflict { what }) => debug!(%what, "lease not removed"),
                Err(e) => return Err(e),
            }
        }
        Ok(changed)
    }

    /// Frees a gone shard's lease for its removal; returns the counter it is free at, or
    /// `None` when it is not to be removed now. Free already: as it is. Held, or still naming
    /// this instance from before (a restart, a release that failed): released at the counter
    /// known. Its owner stopped renewing (it crashed): taken, then released. A live owner
    /// releases it on its own next round.
    async fn freed_for_removal(
        &mut self,
        store: &dyn LeaseStore,
        consumer: &str,
        lease: &Lease,
    ) -> Result<Option<u64>, ConnectorError> {
        let shard_id = lease.shard_id.as_str();
        let mine = match lease.owner.as_deref() {
            None => return Ok(Some(lease.counter)),
            Some(owner) if owner == self.instance_id => {
                self.held.get(shard_id).map_or(lease.counter, |h| h.counter)
            }
            Some(_)
                if self
                    .observations
                    .is_expired(lease, Instant::now(), self.lease_duration) =>
            {
                match store
                    .take(consumer, shard_id, lease.counter, &self.instance_id)
                    .await
                {
                    Ok(taken) => taken.counter,
                    Err(ConnectorError::Conflict { .. }) => return Ok(None),
                    Err(e) => return Err(e),
                }
            }
            Some(_) => return Ok(None),
        };
        // A failed release leaves it naming this instance (and held, renewed, if it was):
        // tried again next round.
        match store
            .release(consumer, shard_id, &self.instance_id, mine)
            .await
        {
            Ok(()) => {
                self.held.remove(shard_id);
                self.asked_for.remove(shard_id);
                Ok(Some(mine + 1))
            }
            Err(ConnectorError::Conflict { .. }) => {
                self.lost(shard_id, "changed before its removal");
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    fn hold(&mut self, lease: Lease) {
        self.held.insert(
            lease.shard_id,
            Held {
                counter: lease.counter,
                checkpoint: lease.checkpoint,
            },
        );
    }

    /// Drops held leases the table shows in other hands (taken after they looked expired).
    fn forget_taken(&mut self, leases: &[Lease]) {
        for lease in leases {
            let mine = lease.owner.as_deref() == Some(self.instance_id.as_str());
            if !mine && self.held.contains_key(&lease.shard_id) {
                self.lost(&lease.shard_id, "another instance owns it now");
            }
        }
    }

    /// Renews every held lease and notes those another instance asked for. Safe while a batch
    /// is in flight: the batch's checkpoint uses the counter as renewed.
    pub async fn renew(
        &mut self,
        store: &dyn LeaseStore,
        consumer: &str,
    ) -> Result<(), ConnectorError> {
        for shard_id in self.held_shards() {
            let counter = self.held[&shard_id].counter;
            match store
                .renew(consumer, &shard_id, &self.instance_id, counter)
                .await
            {
                Ok(lease) => {
                    if lease.pending_owner.is_some() {
                        self.asked_for.insert(shard_id.clone());
                    }
                    if let Some(held) = self.held.get_mut(&shard_id) {
                        held.counter = lease.counter;
                    }
                }
                Err(ConnectorError::Conflict { what }) => self.lost(&shard_id, &what),
                Err(e) => return Err(e),
            }
        }
        self.last_renewal = Some(Instant::now());
        Ok(())
    }

    /// Whether another instance asked for `shard_id`: then it is not read again before
    /// [`hand_over`](Self::hand_over) releases it.
    pub fn is_asked_for(&self, shard_id: &str) -> bool {
        self.asked_for.contains(shard_id)
    }

    /// Releases the held leases another instance asked for. Called between two batches only.
    pub async fn hand_over(
        &mut self,
        store: &dyn LeaseStore,
        consumer: &str,
    ) -> Result<(), ConnectorError> {
        for shard_id in self.asked_for.iter().cloned().collect::<Vec<_>>() {
            let Some(held) = self.held.get(&shard_id) else {
                self.asked_for.remove(&shard_id);
                continue;
            };
            // Forgotten only once released (or lost): after a failed release the lease is
            // still ours, renewed, and released on a later round.
            store
                .release(consumer, &shard_id, &self.instance_id, held.counter)
                .await
                .or_else(lost_is_fine)?;
            self.held.remove(&shard_id);
            self.asked_for.remove(&shard_id);
            info!(shard_id, "lease handed over");
            self.handed_over.insert(shard_id, Instant::now());
        }
        Ok(())
    }

    /// Frees every held lease (on shutdown), so others need not wait for them to expire.
    pub async fn release_all(&mut self, store: &dyn LeaseStore, consumer: &str) {
        self.asked_for.clear();
        // Holding nothing now: a later poll (another `drain`) starts with a full round.
        self.last_round = None;
        for (shard_id, held) in std::mem::take(&mut self.held) {
            match store
                .release(consumer, &shard_id, &self.instance_id, held.counter)
                .await
            {
                Ok(()) => debug!(shard_id, "lease released"),
                Err(e) => warn!(shard_id, error = %e, "lease not released; it will expire"),
            }
        }
    }
}

/// A lease lost meanwhile needs no release.
fn lost_is_fine(e: ConnectorError) -> Result<(), ConnectorError> {
    match e {
        ConnectorError::Conflict { .. } => Ok(()),
        e => Err(e),
    }
}
