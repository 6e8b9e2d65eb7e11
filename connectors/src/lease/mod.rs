//! Leases: which processor instance reads which shard, in the spirit of the Kinesis Client
//! Library.
//!
//! A lease is one row per (consumer, shard) in the checkpoints table: the shard's checkpoint,
//! its parent shards, whether it was read to its end, its owner and a lease counter. Every
//! change is a conditional write on what the writer saw, so two instances can never both
//! believe they hold a shard after their writes succeeded:
//!
//! - [`LeaseStore::take`]: only if the counter is still the one the taker observed (a free
//!   lease, or one whose owner stopped renewing); the counter goes up by one.
//! - [`LeaseStore::renew`]: only if the caller still owns it at the counter it knows; +1.
//! - [`LeaseStore::checkpoint`]: only if the caller owns it at the counter it knows, and the
//!   sequence does not go backwards; the counter stays (renewals are the heartbeat).
//! - [`LeaseStore::remove`]: only if nobody holds it and the counter is the one the remover
//!   observed; for shards the stream no longer lists.
//! - [`LeaseStore::request`]: another instance asks the owner to hand the lease over (to
//!   balance the shards); the owner frees it between two batches with
//!   [`LeaseStore::release`] and the asker takes it, so a shard is never read by two
//!   instances at once.
//!
//! Whether a lease expired is decided without comparing clocks across machines: an instance
//! notes when it first saw each counter value; a counter unchanged for the lease duration by
//! its own clock means the owner stopped renewing ([`rules`]).

pub mod rules;

use async_trait::async_trait;

use crate::error::Result;
use crate::stream::ShardInfo;

/// One shard's lease, as stored.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lease {
    pub shard_id: String,
    /// The instance holding it; `None` when free.
    pub owner: Option<String>,
    /// Goes up by one on every take, renewal and release.
    pub counter: u64,
    /// The last sequence whose session and lake writes succeeded.
    pub checkpoint: Option<String>,
    pub parent_shard_ids: Vec<String>,
    /// The shard was closed by resharding and read to its end; nobody needs to hold it again.
    pub shard_ended: bool,
    /// An instance that asked the owner to hand the lease over.
    pub pending_owner: Option<String>,
}

/// The lease table.
#[async_trait]
pub trait LeaseStore: Send + Sync + 'static {
    /// Every lease of `consumer`.
    async fn leases(&self, consumer: &str) -> Result<Vec<Lease>>;

    /// Creates a free lease for `shard` (counter 0, no checkpoint) unless one exists; returns
    /// whether it created one. An existing checkpoint of the shard is kept.
    async fn create(&self, consumer: &str, shard: &ShardInfo) -> Result<bool>;

    /// Makes `owner` the owner if the counter is still `counter`; returns the lease as it is
    /// now (its new counter and its checkpoint, which a former owner may have moved after it
    /// was listed). [`Conflict`](crate::ConnectorError::Conflict) when someone changed the
    /// lease meanwhile.
    async fn take(
        &self,
        consumer: &str,
        shard_id: &str,
        counter: u64,
        owner: &str,
    ) -> Result<Lease>;

    /// Renews `owner`'s lease held at `counter`; returns the lease as it is now (new counter,
    /// and whether another instance asked for it). `Conflict` when it was lost.
    async fn renew(
        &self,
        consumer: &str,
        shard_id: &str,
        owner: &str,
        counter: u64,
    ) -> Result<Lease>;

    /// Frees `owner`'s lease held at `counter` (and forgets any request for it), for whoever
    /// is below its share, normally the instance that asked. `Conflict` when it was lost
    /// already.
    async fn release(
        &self,
        consumer: &str,
        shard_id: &str,
        owner: &str,
        counter: u64,
    ) -> Result<()>;

    /// Stores `sequence` as the checkpoint of `owner`'s lease held at `counter`. `Conflict`
    /// when the lease was lost or the checkpoint is already past `sequence`.
    async fn checkpoint(
        &self,
        consumer: &str,
        shard_id: &str,
        owner: &str,
        counter: u64,
        sequence: &str,
    ) -> Result<()>;

    /// Marks `owner`'s lease held at `counter` as read to its end and frees it.
    async fn finish(&self, consumer: &str, shard_id: &str, owner: &str, counter: u64)
        -> Result<()>;

    /// Deletes the lease of a shard the stream no longer lists (past its retention), with its
    /// checkpoint, so the table does not grow with every resharding; only while nobody holds it
    /// and its counter is still `counter`. `Conflict` otherwise.
    async fn remove(&self, consumer: &str, shard_id: &str, counter: u64) -> Result<()>;

    /// Asks `owner`, the current owner, to hand the lease over to `requester`; only if
    /// `owner` still holds it and nobody asked before. `Conflict` otherwise.
    async fn request(
        &self,
        consumer: &str,
        shard_id: &str,
        owner: &str,
        requester: &str,
    ) -> Result<()>;
}
