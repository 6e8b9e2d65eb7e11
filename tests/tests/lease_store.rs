//! The lease stores, DynamoDB on moto and embedded SQLite, against one contract: every change
//! is conditional, so of several instances racing for one lease exactly one wins (sent at once
//! to SQLite, in turn to moto: see [`Race`]), and an instance that lost a lease can neither
//! renew nor checkpoint it.

mod lease_support;

use std::collections::HashSet;
use std::sync::Arc;

use lease_support::provisioned_aws;
use retailmind_connectors::{embedded, Backend, ConnectorError, LeaseStore, ShardInfo};
use retailmind_tests::moto::MotoServer;

const CONSUMER: &str = "main";

fn shard(id: &str, parents: &[&str]) -> ShardInfo {
    ShardInfo {
        shard_id: id.into(),
        parent_shard_ids: parents.iter().map(|p| p.to_string()).collect(),
    }
}

fn is_conflict<T: std::fmt::Debug>(result: Result<T, ConnectorError>) -> bool {
    matches!(result, Err(ConnectorError::Conflict { .. }))
}

/// How the racers for one lease are sent.
#[derive(Clone, Copy, PartialEq)]
enum Race {
    /// All at once.
    AtOnce,
    /// One after another. moto evaluates an update's condition and applies the update without
    /// a lock between them, so two requests at once can both pass a condition (it happened in
    /// CI: two owners, counters 1 and 2); DynamoDB makes a conditional write atomic. Against
    /// moto the race is sent in turn: each later racer still meets the first one's write.
    InTurn,
}

async fn the_lease_contract(store: Arc<dyn LeaseStore>, race: Race) {
    let s = store.as_ref();
    assert!(s.create(CONSUMER, &shard("s-1", &[])).await.unwrap());
    assert!(
        !s.create(CONSUMER, &shard("s-1", &[])).await.unwrap(),
        "created once"
    );
    assert!(s.create(CONSUMER, &shard("s-2", &["s-0"])).await.unwrap());
    let leases = s.leases(CONSUMER).await.unwrap();
    assert_eq!(leases.len(), 2);
    let fresh = &leases[0];
    assert_eq!(
        (fresh.owner.as_deref(), fresh.counter, &fresh.checkpoint),
        (None, 0, &None)
    );
    assert_eq!(leases[1].parent_shard_ids, ["s-0"]);
    assert!(s.leases("another-consumer").await.unwrap().is_empty());

    // Eight instances race for the free lease seen at counter 0: exactly one wins.
    let racers: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            async move {
                let owner = format!("racer-{i}");
                (owner.clone(), store.take(CONSUMER, "s-1", 0, &owner).await)
            }
        })
        .collect();
    let results = match race {
        Race::AtOnce => {
            let spawned: Vec<_> = racers.into_iter().map(tokio::spawn).collect();
            let mut results = Vec::new();
            for racer in spawned {
                results.push(racer.await.unwrap());
            }
            results
        }
        Race::InTurn => {
            let mut results = Vec::new();
            for racer in racers {
                results.push(racer.await);
            }
            results
        }
    };
    let mut winners = Vec::new();
    for (owner, taken) in results {
        match taken {
            Ok(lease) => winners.push((owner, lease)),
            Err(ConnectorError::Conflict { .. }) => {}
            Err(e) => panic!("{owner}: {e}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one winner: {winners:?}");
    let (winner, lease) = winners.pop().unwrap();
    assert_eq!(
        (lease.owner.as_deref(), lease.counter),
        (Some(winner.as_str()), 1)
    );

    // The holder renews and checkpoints; a checkpoint never goes back.
    let renewed = s.renew(CONSUMER, "s-1", &winner, 1).await.unwrap();
    assert_eq!((renewed.counter, renewed.pending_owner), (2, None));
    assert!(
        is_conflict(s.renew(CONSUMER, "s-1", &winner, 1).await),
        "stale counter"
    );
    assert!(
        is_conflict(s.renew(CONSUMER, "s-1", "racer-x", 2).await),
        "not the owner"
    );
    s.checkpoint(CONSUMER, "s-1", &winner, 2, "100")
        .await
        .unwrap();
    assert!(is_conflict(
        s.checkpoint(CONSUMER, "s-1", &winner, 2, "99").await
    ));
    assert!(is_conflict(
        s.checkpoint(CONSUMER, "s-1", "racer-x", 2, "200").await
    ));

    // Another instance asks for it; only one request is open at a time.
    s.request(CONSUMER, "s-1", &winner, "asker").await.unwrap();
    assert!(is_conflict(
        s.request(CONSUMER, "s-1", &winner, "other").await
    ));
    assert!(
        is_conflict(s.request(CONSUMER, "s-1", "racer-x", "other").await),
        "not the owner"
    );
    let asked = s.renew(CONSUMER, "s-1", &winner, 2).await.unwrap();
    assert_eq!(
        (asked.counter, asked.pending_owner.as_deref()),
        (3, Some("asker"))
    );
    s.release(CONSUMER, "s-1", &winner, 3).await.unwrap();
    let freed = &s.leases(CONSUMER).await.unwrap()[0];
    assert_eq!(
        (freed.owner.as_deref(), freed.pending_owner.as_deref()),
        (None, None)
    );
    assert_eq!(
        (freed.counter, freed.checkpoint.as_deref()),
        (4, Some("100"))
    );

    // The asker takes it; the former owner can no longer checkpoint or release.
    let taken = s.take(CONSUMER, "s-1", 4, "asker").await.unwrap();
    assert_eq!(
        (taken.counter, taken.checkpoint.as_deref()),
        (5, Some("100"))
    );
    assert!(is_conflict(
        s.checkpoint(CONSUMER, "s-1", &winner, 3, "150").await
    ));
    assert!(is_conflict(s.release(CONSUMER, "s-1", &winner, 3).await));

    // An expired lease is taken at the counter the taker saw; the old owner's writes fail.
    let stolen = s.take(CONSUMER, "s-1", 5, "survivor").await.unwrap();
    assert_eq!(stolen.owner.as_deref(), Some("survivor"));
    assert!(is_conflict(
        s.checkpoint(CONSUMER, "s-1", "asker", 5, "150").await
    ));
    s.checkpoint(CONSUMER, "s-1", "survivor", 6, "150")
        .await
        .unwrap();

    // Finishing marks the end and frees the lease.
    s.finish(CONSUMER, "s-1", "survivor", 6).await.unwrap();
    let ended = &s.leases(CONSUMER).await.unwrap()[0];
    assert!(ended.shard_ended);
    assert_eq!(
        (ended.owner.as_deref(), ended.checkpoint.as_deref()),
        (None, Some("150"))
    );
    let owners: HashSet<_> = s
        .leases(CONSUMER)
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.owner)
        .collect();
    assert_eq!(owners, HashSet::from([None]));

    // A gone shard's lease is removed, checkpoint and all, only while free and unchanged.
    let held = s.take(CONSUMER, "s-2", 0, "survivor").await.unwrap();
    assert!(
        is_conflict(s.remove(CONSUMER, "s-2", held.counter).await),
        "held"
    );
    assert!(
        is_conflict(s.remove(CONSUMER, "s-1", ended.counter - 1).await),
        "stale counter"
    );
    s.remove(CONSUMER, "s-1", ended.counter).await.unwrap();
    let left: Vec<String> = s
        .leases(CONSUMER)
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.shard_id)
        .collect();
    assert_eq!(left, ["s-2"]);
    assert!(
        s.create(CONSUMER, &shard("s-1", &[])).await.unwrap(),
        "nothing of it is left"
    );
    let recreated = s.leases(CONSUMER).await.unwrap();
    assert_eq!(
        (
            recreated[0].counter,
            &recreated[0].checkpoint,
            recreated[0].shard_ended
        ),
        (0, &None, false)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_leases_keep_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    the_lease_contract(embedded::open(dir.path()).unwrap().leases, Race::AtOnce).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_leases_keep_the_contract() {
    let moto = MotoServer::start().await;
    the_lease_contract(provisioned_aws(&moto).await.leases, Race::InTurn).await;
}

async fn a_checkpoint_from_before_leases_is_kept(backend: Backend) {
    backend
        .checkpoints
        .set("legacy", "s-1", "42")
        .await
        .unwrap();
    assert!(backend
        .leases
        .create("legacy", &shard("s-1", &[]))
        .await
        .unwrap());
    let lease = &backend.leases.leases("legacy").await.unwrap()[0];
    assert_eq!(
        (lease.counter, lease.checkpoint.as_deref()),
        (0, Some("42"))
    );
    let taken = backend.leases.take("legacy", "s-1", 0, "me").await.unwrap();
    assert_eq!(taken.checkpoint.as_deref(), Some("42"));
    backend
        .leases
        .checkpoint("legacy", "s-1", "me", 1, "43")
        .await
        .unwrap();
    assert_eq!(
        backend
            .checkpoints
            .get("legacy", "s-1")
            .await
            .unwrap()
            .as_deref(),
        Some("43"),
        "one value, read through either trait"
    );
    // A plain checkpoint write keeps the lease's attributes.
    backend
        .checkpoints
        .set("legacy", "s-1", "44")
        .await
        .unwrap();
    let lease = &backend.leases.leases("legacy").await.unwrap()[0];
    assert_eq!((lease.owner.as_deref(), lease.counter), (Some("me"), 1));
}

#[tokio::test]
async fn embedded_leases_keep_existing_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    a_checkpoint_from_before_leases_is_kept(embedded::open(dir.path()).unwrap()).await;
}

#[tokio::test]
async fn dynamodb_leases_keep_existing_checkpoints() {
    let moto = MotoServer::start().await;
    a_checkpoint_from_before_leases_is_kept(provisioned_aws(&moto).await).await;
}
