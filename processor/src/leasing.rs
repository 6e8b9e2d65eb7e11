//! This instance's side of the lease protocol: which shards it holds, at which counter and
//! checkpoint, and one round of lease work (create leases for new shards, renew, hand over
//! what another instance asked for, take what the rules say). The rules themselves are pure,
//! in [`retailmind_connectors::lease::rules`].
//!
//! Everything here runs in the consume loop between two batches, never during one: a lease
//! asked for is released only after the batch in flight was checkpointed, so two instances
//! never read one shard at the same time while both keep renewing.

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
    observations: Observations,
    last_renewal: Option<Instant>,
}

impl LeaseKeeper {
    pub fn new(instance_id: String, lease_duration: Duration) -> Self {
        LeaseKeeper {
            instance_id,
            lease_duration,
            held: HashMap::new(),
            observations: Observations::default(),
            last_renewal: None,
        }
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
        if self.held.remove(shard_id).is_some() {
            warn!(
                shard_id,
                why, "lease lost; its records will be read by the new owner"
            );
        }
    }

    /// One round: leases for new shards, renewals if due, takes and a request per the rules.
    /// Returns whether this instance took any lease.
    pub async fn sync(
        &mut self,
        store: &dyn LeaseStore,
        consumer: &str,
        shards: &[ShardInfo],
    ) -> Result<bool, ConnectorError> {
        // Renew (and hand over) first, so the listing below shows the leases as they are now.
        if self.renewal_due() {
            self.renew(store, consumer).await?;
        }
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
        let now = Instant::now();
        self.observations.observe(&leases, now);
        let listed: HashSet<&str> = shards.iter().map(|s| s.shard_id.as_str()).collect();
        let held: HashSet<String> = self.held.keys().cloned().collect();
        let plan = rules::plan(&View {
            me: &self.instance_id,
            leases: &leases,
            listed: &listed,
            held: &held,
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
        Ok(took)
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

    /// Renews every held lease; releases those another instance asked for.
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
                Ok(lease) if lease.pending_owner.is_some() => {
                    store
                        .release(consumer, &shard_id, &self.instance_id, lease.counter)
                        .await
                        .or_else(lost_is_fine)?;
                    self.held.remove(&shard_id);
                    info!(shard_id, to = ?lease.pending_owner, "lease handed over");
                }
                Ok(lease) => {
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

    /// Frees every held lease (on shutdown), so others need not wait for them to expire.
    pub async fn release_all(&mut self, store: &dyn LeaseStore, consumer: &str) {
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
