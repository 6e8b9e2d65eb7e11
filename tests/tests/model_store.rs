//! The `ModelStore` on both backends: SQLite (the embedded default) and DynamoDB on a real
//! `moto_server`, with a snapshot several times larger than a DynamoDB item may be.

use std::sync::Arc;

mod lease_support;

use retailmind_connectors::aws::CHUNK_BYTES;
use retailmind_connectors::{embedded, ConnectorError, ModelStore, StreamPositions};
use retailmind_tests::moto::MotoServer;

/// Bytes that differ at every position, so a chunk out of order or missing shows.
fn snapshot(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[i % 4] ^ seed)
        .collect()
}

fn positions(shards: &[(&str, &str, &str)]) -> StreamPositions {
    shards
        .iter()
        .map(|&(shard, first, last)| (shard.to_owned(), vec![(first.to_owned(), last.to_owned())]))
        .collect()
}

/// What every implementation must do: versions from 1 up, conditional on the one before,
/// whole snapshots only, each with the stream positions saved with it, models apart by name.
async fn behaves_as_a_model_store(store: Arc<dyn ModelStore>) {
    assert_eq!(store.version("recs").await.unwrap(), None);
    assert_eq!(store.load("recs").await.unwrap(), None);

    let first = snapshot(3 * CHUNK_BYTES + 1234, 1);
    let first_positions = positions(&[
        (
            "shardId-000000000000",
            "",
            "49651234567890123456789012345678901234567890123456",
        ),
        ("shardId-000000000001", "3", "7"),
    ]);
    store
        .save("recs", 1, &first, &first_positions)
        .await
        .unwrap();
    assert_eq!(store.version("recs").await.unwrap(), Some(1));
    let loaded = store.load("recs").await.unwrap().expect("saved");
    assert_eq!(loaded.version, 1);
    assert!(loaded.bytes == first, "the snapshot comes back whole");
    assert_eq!(loaded.positions, first_positions);

    // Version 1 again, or a version skipping one, loses, and changes nothing.
    for version in [1, 3] {
        let err = store
            .save(
                "recs",
                version,
                b"stale",
                &positions(&[("shardId-000000000000", "", "9")]),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, ConnectorError::Conflict { .. }), "{err:?}");
    }
    assert_eq!(
        store.load("recs").await.unwrap().unwrap().positions,
        first_positions
    );
    let second = snapshot(CHUNK_BYTES / 2, 2);
    let second_positions = positions(&[("shardId-000000000002", "", "12")]);
    store
        .save("recs", 2, &second, &second_positions)
        .await
        .unwrap();
    let loaded = store.load("recs").await.unwrap().expect("saved");
    assert_eq!(loaded.version, 2);
    assert!(
        loaded.bytes == second,
        "the newer, smaller snapshot replaces the older"
    );
    assert_eq!(
        loaded.positions, second_positions,
        "positions are replaced, not merged"
    );

    assert_eq!(store.version("other").await.unwrap(), None);
    store
        .save("other", 1, b"", &StreamPositions::new())
        .await
        .unwrap();
    let other = store.load("other").await.unwrap().unwrap();
    assert_eq!(
        (other.bytes, other.positions),
        (Vec::new(), StreamPositions::new())
    );
    assert_eq!(store.version("recs").await.unwrap(), Some(2));
}

#[tokio::test]
async fn sqlite_model_store_versions_and_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let backend = embedded::open(dir.path()).unwrap();
    behaves_as_a_model_store(backend.models.clone()).await;
    drop(backend);
    let reopened = embedded::open(dir.path()).unwrap();
    assert_eq!(reopened.models.version("recs").await.unwrap(), Some(2));
}

#[tokio::test]
async fn dynamodb_model_store_chunks_snapshots_on_moto() {
    let moto = MotoServer::start().await;
    let (config, backend) = lease_support::provisioned_aws_with(&moto, |_| {}).await;
    behaves_as_a_model_store(backend.models).await;

    // Only the current version's chunks remain (plus the two heads): replaced and lost saves
    // leave nothing behind.
    let dynamodb = aws_sdk_dynamodb::Client::new(&moto.sdk_config());
    let items = dynamodb
        .scan()
        .table_name(&config.models_table)
        .send()
        .await
        .expect("scanned")
        .count();
    assert_eq!(
        items,
        2 + 1,
        "heads of recs and other, one chunk of recs (the empty one has none)"
    );
}
