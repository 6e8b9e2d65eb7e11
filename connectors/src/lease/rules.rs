//! The lease rules, without I/O: when a lease counts as expired, which shards may be read yet,
//! and which leases an instance takes or asks for to balance the shards across instances.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use super::Lease;

/// When this instance first saw each lease's current counter.
///
/// A lease whose counter has not changed for the lease duration, by this instance's own
/// clock, belongs to an owner that stopped renewing. No clocks are compared across machines.
#[derive(Debug, Default)]
pub struct Observations {
    seen: HashMap<String, (u64, Instant)>,
}

impl Observations {
    /// Notes the counters of `leases` as seen at `now`; forgets leases no longer listed.
    pub fn observe(&mut self, leases: &[Lease], now: Instant) {
        let listed: HashSet<&str> = leases.iter().map(|l| l.shard_id.as_str()).collect();
        self.seen.retain(|id, _| listed.contains(id.as_str()));
        for lease in leases {
            match self.seen.get(&lease.shard_id) {
                Some((counter, _)) if *counter == lease.counter => {}
                _ => {
                    self.seen
                        .insert(lease.shard_id.clone(), (lease.counter, now));
                }
            }
        }
    }

    /// Whether `lease` has an owner that has not renewed it for `duration`.
    pub fn is_expired(&self, lease: &Lease, now: Instant, duration: Duration) -> bool {
        lease.owner.is_some()
            && match self.seen.get(&lease.shard_id) {
                Some((counter, since)) if *counter == lease.counter => {
                    now.saturating_duration_since(*since) >= duration
                }
                _ => false,
            }
    }
}

/// Whether `lease`'s shard may be read: it has not ended, and every parent still in the stream
/// (`listed`) was read to its end, so a visitor's older events are sessionized first.
pub fn is_readable(lease: &Lease, leases: &[Lease], listed: &HashSet<&str>) -> bool {
    !lease.shard_ended
        && lease.parent_shard_ids.iter().all(|parent| {
            !listed.contains(parent.as_str())
                || leases
                    .iter()
                    .any(|l| &l.shard_id == parent && l.shard_ended)
        })
}

/// What one instance does to the lease table in one round.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Shards whose leases to take (free, expired, or still naming this instance from before a
    /// restart).
    pub take: Vec<String>,
    /// A shard to ask its (live, overloaded) owner for: `(shard_id, owner)`.
    pub request: Option<(String, String)>,
}

/// What an instance knows when it plans.
pub struct View<'a> {
    pub me: &'a str,
    pub leases: &'a [Lease],
    /// Shards the stream lists now.
    pub listed: &'a HashSet<&'a str>,
    /// Shards this instance holds (took and still renews).
    pub held: &'a HashSet<String>,
    /// Shards this instance just handed over to an instance that asked: not taken back while
    /// they look free, before the asker's next round.
    pub handed_over: &'a HashSet<String>,
    pub observations: &'a Observations,
    pub now: Instant,
    pub lease_duration: Duration,
}

/// Which leases to take so that every readable shard has an owner and the shards are spread
/// evenly: each instance aims at `ceil(readable / instances)`, where instances are the live
/// owners, the instances waiting for a handover, and this one. Below that aim it takes leases
/// nobody holds; when there are not enough, it asks the most loaded owner for one if that owner
/// holds at least two more than this instance (so the move narrows the gap), at most one
/// request open at a time. The owner hands it over between two batches.
pub fn plan(view: &View<'_>) -> Plan {
    let expired = |l: &Lease| {
        view.observations
            .is_expired(l, view.now, view.lease_duration)
    };
    let readable: Vec<&Lease> = view
        .leases
        .iter()
        .filter(|l| is_readable(l, view.leases, view.listed))
        .collect();
    if readable.is_empty() {
        return Plan::default();
    }
    let live_owner =
        |l: &&Lease| -> Option<String> { l.owner.clone().filter(|o| o != view.me && !expired(l)) };
    let mut load: BTreeMap<String, Vec<&Lease>> = BTreeMap::new();
    for lease in &readable {
        if let Some(owner) = live_owner(lease) {
            load.entry(owner).or_default().push(lease);
        }
    }
    let mut instances: BTreeSet<&str> = load.keys().map(String::as_str).collect();
    instances.extend(readable.iter().filter_map(|l| l.pending_owner.as_deref()));
    instances.insert(view.me);
    let target = readable.len().div_ceil(instances.len());
    let mine = readable
        .iter()
        .filter(|l| view.held.contains(&l.shard_id))
        .count();
    if mine >= target {
        return Plan::default();
    }
    let needed = target - mine;

    // Still naming this instance (held before a restart with the same id) first, then free,
    // then expired; by shard id within each.
    let mut available: Vec<(u8, &Lease)> = readable
        .iter()
        .filter(|l| !view.held.contains(&l.shard_id) && !view.handed_over.contains(&l.shard_id))
        .filter_map(|l| match l.owner.as_deref() {
            Some(owner) if owner == view.me => Some((0, *l)),
            None => Some((1, *l)),
            Some(_) if expired(l) => Some((2, *l)),
            Some(_) => None,
        })
        .collect();
    available.sort_by(|(a, la), (b, lb)| a.cmp(b).then_with(|| la.shard_id.cmp(&lb.shard_id)));
    let take: Vec<String> = available
        .iter()
        .take(needed)
        .map(|(_, l)| l.shard_id.clone())
        .collect();

    let asked_already = readable
        .iter()
        .any(|l| l.pending_owner.as_deref() == Some(view.me));
    let request = if take.len() < needed && !asked_already {
        load.iter()
            .filter(|(_, leases)| leases.len() > mine + 1)
            .max_by_key(|(_, leases)| leases.len())
            .and_then(|(owner, leases)| {
                leases
                    .iter()
                    .find(|l| l.pending_owner.is_none())
                    .map(|l| (l.shard_id.clone(), owner.clone()))
            })
    } else {
        None
    };
    Plan { take, request }
}

#[cfg(test)]
mod tests;
