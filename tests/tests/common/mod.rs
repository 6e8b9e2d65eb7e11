//! A running pipeline for end-to-end tests: the collector on a loopback port and the processor
//! consuming in the background, over whichever backend the test hands in.

#![allow(dead_code)] // each test binary uses its own part of this module

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use retailmind_collector::{serve_on, AppState, CollectorConfig};
use retailmind_commerce::CommerceStore;
use retailmind_connectors::{embedded, Backend, BackendConfig, StreamReader};
use retailmind_processor::{Processor, ProcessorConfig};
use retailmind_schema::Event;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub struct Pipeline {
    pub collector_url: String,
    pub backend: Backend,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Pipeline {
    /// Starts the collector and the processor on `backend`.
    pub async fn start(backend: Backend) -> Pipeline {
        Pipeline::start_with(backend, None).await
    }

    /// Starts them with orders and customer profiles in `commerce` as well.
    pub async fn start_with(
        backend: Backend,
        commerce: Option<Arc<dyn CommerceStore>>,
    ) -> Pipeline {
        let config = ProcessorConfig {
            consumer: "e2e".into(),
            idle_poll_ms: Some(50),
            ..ProcessorConfig::default()
        };
        Pipeline::launch(backend.clone(), backend, config, commerce).await
    }

    /// Starts them as the embedded default runs deployed (`cargo xtask demo`): two processes,
    /// each with its own connections to the files in `dir`, the processor at its default pace
    /// (idle polls, model saves).
    pub async fn start_deployed(dir: &Path) -> Pipeline {
        let config = ProcessorConfig {
            backend: BackendConfig::embedded_at(dir),
            metrics_listen: None,
            ..ProcessorConfig::default()
        };
        let collector = embedded::open(dir).unwrap();
        let processor = embedded::open(dir).unwrap();
        Pipeline::launch(collector, processor, config, None).await
    }

    async fn launch(
        backend: Backend,
        processor_backend: Backend,
        processor_config: ProcessorConfig,
        commerce: Option<Arc<dyn CommerceStore>>,
    ) -> Pipeline {
        let (stop, stopped) = watch::channel(false);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let collector_url = format!("http://{}", listener.local_addr().unwrap());
        let config = CollectorConfig::default();
        // Serving the recommendation model the processor saves, as the collector binary does.
        let mut state = AppState::new(backend.sink.clone(), backend.dead_letters.clone(), &config)
            .with_model_store(backend.models.clone());
        if let Some(store) = &commerce {
            state = state.with_commerce(store.clone(), backend.sessions.clone());
        }
        let collector = tokio::spawn(async move {
            serve_on(listener, state, &config, until(stopped))
                .await
                .expect("collector serves");
        });

        let mut processor = Processor::new(processor_backend, &processor_config);
        if let Some(store) = commerce {
            processor = processor.with_profiles(store);
        }
        let stopped = stop.subscribe();
        let processing = tokio::spawn(async move {
            processor.run(until(stopped)).await.expect("processor runs");
        });
        Pipeline {
            collector_url,
            backend,
            stop,
            tasks: vec![collector, processing],
        }
    }

    /// Stops both and waits for them; a panic in either fails the test here.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("pipeline stops within 10 s")
                .expect("pipeline task did not panic");
        }
    }
}

async fn until(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|s| *s).await;
}

/// Posts `events` to the collector at `collector_url` as one new batch and returns its answer;
/// fails the test on anything but a 2xx.
pub async fn post_batch(collector_url: &str, events: Vec<serde_json::Value>) -> serde_json::Value {
    let now = retailmind_connectors::clock::now_ms();
    let body =
        serde_json::json!({"batch_id": uuid::Uuid::now_v7(), "sent_at": now, "events": events});
    let response = reqwest::Client::new()
        .post(format!("{collector_url}/v1/batch"))
        .header("content-type", "text/plain;charset=UTF-8")
        .body(body.to_string())
        .send()
        .await
        .expect("the collector answers");
    let status = response.status();
    let answer = response.json().await.expect("a JSON answer");
    assert!(status.is_success(), "{status}: {answer}");
    answer
}

/// Every event in every shard of the stream, oldest first per shard.
pub async fn stream_events(reader: &dyn StreamReader) -> Vec<Event> {
    let mut events = Vec::new();
    for shard in reader.shards().await.unwrap() {
        let mut after: Option<String> = None;
        loop {
            let batch = reader
                .read(&shard.shard_id, after.as_deref(), 1000)
                .await
                .unwrap();
            let Some(last) = batch.entries.last() else {
                break;
            };
            after = Some(last.sequence.clone());
            events.extend(
                batch
                    .entries
                    .iter()
                    .map(|e| serde_json::from_slice::<Event>(&e.data).unwrap()),
            );
        }
    }
    events
}

pub fn now_ms() -> i64 {
    retailmind_connectors::clock::now_ms()
}

/// A product view of `product` by the shopper whose session is `session` (and anonymous id
/// `anon-<session>`).
pub fn product_view(session: &str, product: &str, at_ms: i64) -> serde_json::Value {
    serde_json::json!({
        "event_id": uuid::Uuid::now_v7(), "type": "product_view", "anonymous_id": format!("anon-{session}"),
        "session_id": session, "timestamp": at_ms,
        "context": {"page": {"url": format!("https://shop.example/p/{product}")}},
        "properties": {"product_id": product}
    })
}

/// Three other shoppers' sessions (`<prefix>-0` to `-2`), a minute ago, each viewing `first`
/// and then `then` half a second later: what teaches the model that `then` follows `first`.
pub fn viewed_one_after_the_other(first: &str, then: &str, prefix: &str) -> Vec<serde_json::Value> {
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
}

/// The model version and the items the strategy chose (not the popularity fill) for a shopper
/// of session `me` on `on_page`'s product page.
pub async fn chosen(client: &reqwest::Client, url: &str, on_page: &str) -> (u64, Vec<String>) {
    let body: serde_json::Value = client
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
