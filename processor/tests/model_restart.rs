//! A processor that restarts on a stored model continues it: the model keeper of the new run
//! loads what the last run saved before it folds its first event, on the embedded default.

use std::path::Path;
use std::time::Duration;

use retailmind_connectors::embedded;
use retailmind_processor::stream_positions::{Follows, Span};
use retailmind_processor::ModelKeeper;
use retailmind_recommend::{strategy, ModelConfig, ModelState, Query};
use retailmind_schema::Event;

const NAME: &str = "recommendations";
const T0: f64 = 1_764_064_800.0;

/// A product view numbered `n` (its event id and its second after `T0`).
fn view(n: u32, session: &str, item: &str) -> Event {
    serde_json::from_value(serde_json::json!({
        "event_id": format!("01936a1c-3b5e-7cc4-9a1e-{n:012}"), "type": "product_view",
        "anonymous_id": session, "session_id": session,
        "timestamp": (T0 as i64 + i64::from(n)) * 1000,
        "context": {"page": {"url": "https://shop.example/p"}},
        "properties": {"product_id": item}
    }))
    .expect("a valid event")
}

/// The model that folding `views` once each, in order, gives.
fn folded(views: &[(u32, &str, &str)]) -> ModelState {
    let mut model = ModelState::new(ModelConfig::default());
    for &(n, session, item) in views {
        model.observe_click(session, item, T0 + f64::from(n));
    }
    model
}

/// One run of a processor's model keeper on the embedded store in `dir`: folds `views` as one
/// batch of a shard's records, read after the record before the first (view `n` is record
/// `n`), saves as on shutdown, and closes the store; returns the version it saved.
async fn run(dir: &Path, views: &[(u32, &str, &str)]) -> u64 {
    let backend = embedded::open(dir).expect("the embedded store opens");
    let keeper = ModelKeeper::new(backend.models.clone(), NAME, Duration::from_secs(3600));
    let events: Vec<Event> = views.iter().map(|&(n, s, i)| view(n, s, i)).collect();
    let sequences: Vec<String> = views.iter().map(|&(n, ..)| n.to_string()).collect();
    let before = (views[0].0 - 1).to_string();
    let span = Span {
        shard: "shardId-000000000000",
        follows: if before == "0" {
            Follows::ShardStart
        } else {
            Follows::Record(&before)
        },
        first: &sequences[0],
        last: &sequences[sequences.len() - 1],
    };
    let records = events.iter().zip(sequences.iter().map(String::as_str));
    keeper.observe(span, records).await.expect("folded");
    assert!(keeper.save().await.expect("saved"), "the run had changes");
    keeper.version().await
}

/// How often `item` was clicked, as `model` counts it.
fn clicks(model: &ModelState, item: &str) -> u32 {
    model
        .items()
        .get(item)
        .map_or(0, |ix| model.items().clicks(ix))
}

async fn stored(dir: &Path) -> (u64, ModelState) {
    let backend = embedded::open(dir).expect("the embedded store opens");
    let stored = backend.models.load(NAME).await.unwrap().expect("a model");
    let model = ModelState::from_snapshot(&stored.bytes).expect("a valid snapshot");
    (stored.version, model)
}

const FIRST: [(u32, &str, &str); 4] = [
    (1, "s1", "a"),
    (2, "s1", "b"),
    (3, "s2", "a"),
    (4, "s2", "b"),
];
const SECOND: [(u32, &str, &str); 2] = [(5, "s3", "c"), (6, "s3", "d")];

#[tokio::test]
async fn a_restarted_processor_continues_the_model_it_saved() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(run(dir.path(), &FIRST).await, 1);
    assert_eq!(run(dir.path(), &SECOND).await, 2);

    let (version, model) = stored(dir.path()).await;
    assert_eq!(version, 2);
    assert_eq!((clicks(&model, "a"), clicks(&model, "c")), (2, 1));
    let both: Vec<_> = FIRST.iter().chain(&SECOND).copied().collect();
    assert!(
        model.to_snapshot() == folded(&both).to_snapshot(),
        "the stored model is not both runs' views folded once each"
    );
    // What the first run learned still recommends: "b" followed "a" only in its sessions.
    let rules = strategy::by_name("sr").unwrap();
    let query = Query {
        clicks: &["a"],
        ..Query::default()
    };
    let recs = model.recommend(rules.as_ref(), &query, 1);
    assert_eq!((recs[0].item, recs[0].fallback), ("b", false));
}

#[tokio::test]
async fn a_replay_after_a_restart_is_not_counted_twice() {
    let dir = tempfile::tempdir().unwrap();
    run(dir.path(), &FIRST).await;
    // The stream hands the restarted processor the first run's events again (their checkpoint
    // had not moved when the model was saved), then new ones.
    let replayed: Vec<_> = FIRST.iter().chain(&SECOND).copied().collect();
    run(dir.path(), &replayed).await;

    let (_, model) = stored(dir.path()).await;
    assert_eq!(clicks(&model, "a"), 2, "each view of a counted once");
    assert!(
        model.to_snapshot() == folded(&replayed).to_snapshot(),
        "the stored model is not each view folded once"
    );
}
