//! The recommendation model rebuilt from the lake equals the model the processor folds from the
//! same events on the stream, and is saved as the next version of the stored model.

use std::collections::BTreeSet;

use retailmind_analytics::etl::{self, EtlOptions};
use retailmind_analytics::generate::{self, ShopOptions};
use retailmind_analytics::model_rebuild;
use retailmind_analytics::store::LocalStore;
use retailmind_connectors::embedded;
use retailmind_processor::model::{observation, Observation};
use retailmind_recommend::{ModelConfig, ModelState};

#[tokio::test]
async fn the_model_rebuilt_from_the_lake_is_the_one_the_stream_built() {
    let events = generate::shop(&ShopOptions {
        visitors: 200,
        days: 4,
        ..ShopOptions::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let lake_root = dir.path().join("lake");
    // Every event twice in the raw lake (a replay): the lake's tables hold it once, as the
    // processor's replay guard counts it once.
    let mut twice = events.clone();
    twice.extend(events.iter().cloned());
    generate::write_local(&lake_root, &generate::raw_objects(&twice, 300)).unwrap();
    let lake = LocalStore::new(&lake_root);
    let report = etl::run(&lake, &EtlOptions::default()).await.unwrap();
    assert_eq!(report.duplicates_dropped, events.len());

    // What the processor's fold makes of the events, in event-time order.
    let mut sorted: Vec<_> = events.iter().collect();
    sorted.sort_by_key(|e| (e.timestamp, e.event_id));
    let mut streamed = ModelState::new(ModelConfig::default());
    let (mut clicks, mut orders) = (0, 0);
    for event in sorted {
        let Some(observation) = observation(event) else {
            continue;
        };
        observation.teach(&mut streamed);
        match observation {
            Observation::Click { .. } => clicks += 1,
            Observation::Purchase { .. } => orders += 1,
        }
    }
    assert!(
        clicks > 500 && orders > 10,
        "{clicks} clicks, {orders} orders"
    );

    let days: BTreeSet<String> = report.days_rewritten.iter().cloned().collect();
    let (rebuilt, mut rebuild) = model_rebuild::rebuild(&lake, &days, ModelConfig::default())
        .await
        .unwrap();
    assert_eq!((rebuild.clicks, rebuild.orders), (clicks, orders));
    assert_eq!(rebuilt.to_snapshot(), streamed.to_snapshot());

    // Saved as the next version; what is loaded back is the rebuilt model.
    let backend = embedded::open(&dir.path().join("data")).unwrap();
    backend
        .models
        .save(
            "recommendations",
            1,
            &ModelState::new(ModelConfig::default()).to_snapshot(),
            &Default::default(),
        )
        .await
        .unwrap();
    model_rebuild::save(
        backend.models.as_ref(),
        "recommendations",
        &rebuilt,
        &mut rebuild,
    )
    .await
    .unwrap();
    assert_eq!(rebuild.version, 2);
    let stored = backend
        .models
        .load("recommendations")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.version, 2);
    assert_eq!(stored.bytes, rebuilt.to_snapshot());
}
