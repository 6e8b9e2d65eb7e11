//! Freshness of recommendations on the embedded default, the deployment the issue measures: the
//! collector and the processor as two parts with their own connections to one SQLite file. Other
//! shoppers' product views go collector → log → processor (model folded in, snapshot saved) →
//! collector (version polled, snapshot reloaded) and must change what a shopper is recommended
//! within 1 s; the saved model survives a restart, and with it what a session bought.

mod common;

use std::time::{Duration, Instant};

use retailmind_collector::{serve_on, AppState, CollectorConfig};
use retailmind_connectors::embedded;
use retailmind_processor::{Processor, ProcessorConfig};
use retailmind_recommend::ModelState;
use retailmind_tests::wait_for;
use serde_json::{json, Value};
use tokio::sync::watch;

const MODEL: &str = "recommendations";

fn product_view(session: &str, product: &str, at_ms: i64) -> Value {
    json!({
        "event_id": uuid::Uuid::now_v7(), "type": "product_view", "anonymous_id": format!("anon-{session}"),
        "session_id": session, "timestamp": at_ms,
        "context": {"page": {"url": format!("https://shop.example/p/{product}")}},
        "properties": {"product_id": product}
    })
}

fn now_ms() -> i64 {
    retailmind_connectors::clock::now_ms()
}

async fn until(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|s| *s).await;
}

/// The items the strategy chose (not the popularity fill) for a shopper on `on_page`'s page.
async fn chosen(client: &reqwest::Client, url: &str, on_page: &str) -> (u64, Vec<String>) {
    let body: Value = client
        .get(format!(
            "{url}/v1/recommendations?anonymous_id=anon-me&session_id=me&placement=product&context_item={on_page}"
        ))
        .send()
        .await
        .expect("collector answers")
        .json()
        .await
        .expect("a JSON answer");
    let items = body["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|i| i["fallback"] == false)
        .filter_map(|i| i["product_id"].as_str().map(str::to_owned))
        .collect();
    (body["model_version"].as_u64().unwrap_or(0), items)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_shoppers_clicks_reach_recommendations_within_a_second_and_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    // Two opens of one file: the collector's connections and the processor's, as two processes.
    let collector_backend = embedded::open(dir.path()).unwrap();
    let processor_backend = embedded::open(dir.path()).unwrap();
    let (stop, stopped) = watch::channel(false);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let config = CollectorConfig::default();
    let state = AppState::new(
        collector_backend.sink.clone(),
        collector_backend.dead_letters.clone(),
        &config,
    )
    .with_model_store(collector_backend.models.clone());
    let collector = tokio::spawn(async move {
        serve_on(listener, state, &config, until(stopped))
            .await
            .expect("collector serves");
    });
    let processor = Processor::new(
        processor_backend,
        &ProcessorConfig {
            backend: retailmind_connectors::BackendConfig::embedded_at(dir.path()),
            metrics_listen: None,
            ..ProcessorConfig::default()
        },
    );
    let stopped = stop.subscribe();
    let processing = tokio::spawn(async move {
        processor.run(until(stopped)).await.expect("processor runs");
    });

    let client = reqwest::Client::new();
    let post = |events: Vec<Value>| {
        let url = url.clone();
        async move {
            common::post_batch(&url, events).await;
            Instant::now()
        }
    };
    let (_, before) = chosen(&client, &url, "phone").await;
    assert!(before.is_empty(), "nothing learned yet: {before:?}");

    // Other shoppers look at a case right after the phone.
    let pairs = |first: &str, then: &str, prefix: &str| -> Vec<Value> {
        let t = now_ms() - 60_000;
        (0..3)
            .flat_map(|i| {
                let session = format!("{prefix}-{i}");
                [
                    product_view(&session, first, t + i * 1000),
                    product_view(&session, then, t + i * 1000 + 500),
                ]
            })
            .collect()
    };
    let acknowledged = post(pairs("phone", "case", "other")).await;

    let (version, after) = wait_for(
        "the case to be recommended with the phone",
        Duration::from_secs(1),
        || async {
            let (version, items) = chosen(&client, &url, "phone").await;
            items
                .contains(&"case".to_owned())
                .then_some((version, items))
        },
    )
    .await;
    let freshness = acknowledged.elapsed();
    println!("freshness through the processor: {freshness:?} (model version {version})");
    assert!(version >= 1, "served from a saved model: {after:?}");

    // Steady state: right after a save, the next change waits for the save interval; it must
    // still arrive within 1 s.
    let acknowledged = post(pairs("laptop", "bag", "later")).await;
    let (next_version, _) = wait_for(
        "the bag to be recommended with the laptop",
        Duration::from_secs(1),
        || async {
            let (version, items) = chosen(&client, &url, "laptop").await;
            items
                .contains(&"bag".to_owned())
                .then_some((version, items))
        },
    )
    .await;
    println!(
        "freshness right after a save: {:?} (model version {next_version})",
        acknowledged.elapsed()
    );
    assert!(next_version > version);

    let _ = stop.send(true);
    for task in [collector, processing] {
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("stops within 10 s")
            .expect("did not panic");
    }

    // A restarted part finds the model where it was left.
    let reopened = embedded::open(dir.path()).unwrap();
    let stored = reopened
        .models
        .load(MODEL)
        .await
        .unwrap()
        .expect("a saved model");
    assert!(stored.version >= next_version);
    let model = ModelState::from_snapshot(&stored.bytes).expect("a valid snapshot");
    for item in ["phone", "case", "laptop", "bag"] {
        assert!(
            model.items().get(item).is_some(),
            "{item} survives the restart"
        );
    }
}

/// What a session bought, and its clicks, reach a collector that never saw its batches (here:
/// restarted, with an empty memory) through the model the processor saved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_collector_still_leaves_out_what_the_session_bought() {
    let dir = tempfile::tempdir().unwrap();
    let first = common::Pipeline::start(embedded::open(dir.path()).unwrap()).await;
    let t = now_ms() - 60_000;
    // Other shoppers look at a case and a charger right after the phone; this shopper looks
    // at the phone and buys a case.
    let mut events: Vec<Value> = (0..3)
        .flat_map(|i| {
            let session = format!("other-{i}");
            [
                product_view(&session, "phone", t + i * 1000),
                product_view(&session, "case", t + i * 1000 + 300),
                product_view(&session, "charger", t + i * 1000 + 600),
            ]
        })
        .collect();
    events.push(product_view("me", "phone", t + 10_000));
    events.push(json!({
        "event_id": uuid::Uuid::now_v7(), "type": "purchase", "anonymous_id": "anon-me",
        "session_id": "me", "timestamp": t + 20_000,
        "context": {"page": {"url": "https://shop.example/thanks"}},
        "properties": {"order_id": "o-me", "revenue_minor": 1500, "currency": "EUR",
                       "items": [{"product_id": "case", "quantity": 1}]}
    }));
    common::post_batch(&first.collector_url, events).await;
    let models = first.backend.models.clone();
    let saved = wait_for(
        "the processor to save a model holding the purchase",
        Duration::from_secs(5),
        || async {
            let stored = models.load(MODEL).await.ok()??;
            let model = ModelState::from_snapshot(&stored.bytes).ok()?;
            let (_, bought) = model.session_history("me")?;
            bought.contains(&"case").then_some(stored.version)
        },
    )
    .await;
    first.stop().await;

    let second = common::Pipeline::start(embedded::open(dir.path()).unwrap()).await;
    let client = reqwest::Client::new();
    let recommended = |session: &'static str, page: &'static str| {
        let url = format!(
            "{}/v1/recommendations?anonymous_id=anon-{session}&session_id={session}&placement=product&n=5{page}",
            second.collector_url
        );
        let client = client.clone();
        async move {
            let body: Value = client.get(url).send().await.ok()?.json().await.ok()?;
            let items: Vec<String> = body["items"]
                .as_array()?
                .iter()
                .filter(|i| i["fallback"] == false)
                .filter_map(|i| i["product_id"].as_str().map(str::to_owned))
                .collect();
            (body["model_version"].as_u64()? >= saved).then_some(items)
        }
    };
    let mine = wait_for(
        "the new collector to load the model",
        Duration::from_secs(5),
        || recommended("me", ""),
    )
    .await;
    // The page names no product: the session's last click, the phone, is on screen (known from
    // the model only), so what follows the phone is recommended, except the case it bought.
    assert!(mine.contains(&"charger".to_owned()), "{mine:?}");
    assert!(!mine.contains(&"case".to_owned()), "{mine:?}");
    // Named on the page, the same; another shopper still gets the case.
    let named = "&context_item=phone";
    let mine = recommended("me", named).await.expect("an answer");
    assert!(!mine.contains(&"case".to_owned()), "{mine:?}");
    let theirs = recommended("you", named).await.expect("an answer");
    assert!(theirs.contains(&"case".to_owned()), "{theirs:?}");
    second.stop().await;
}
