//! In-server latency of `GET /v1/recommendations`: the real router (key check, CORS, parameter
//! checks, session memory, strategy, JSON), called in process, so network and client costs are
//! left out.
//!
//! ```text
//! cargo run --release -p retailmind-collector --example recs_latency [CLICKS.tsv] [REQUESTS]
//! ```
//!
//! The model is trained on a `SessionId ItemId Time` click log (default: the shared
//! `clicks-100k/train.tsv`), saved to an embedded model store and loaded as the collector does;
//! the requests replay `valid`-like sessions: each request's session has 1 to 5 product views
//! posted through `/v1/batch` first. Prints p50, p99 and max for each of the four placements.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use retailmind_collector::{router, AppState, CollectorConfig};
use retailmind_connectors::clock::now_ms;
use retailmind_connectors::embedded;
use retailmind_recommend::{ModelConfig, ModelState};
use serde_json::json;
use tower::ServiceExt;

const DEFAULT_LOG: &str = "../shared/data/clicks-100k/train.tsv";

fn read_log(path: &str) -> Result<Vec<(String, String, f64)>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    Ok(text
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut f = line.split('\t');
            let (s, i, t) = (f.next()?, f.next()?, f.next()?.parse().ok()?);
            Some((s.to_owned(), i.to_owned(), t))
        })
        .collect())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let log_path = args.next().unwrap_or_else(|| DEFAULT_LOG.into());
    let requests: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(5000);
    let log = read_log(&log_path)?;
    let mut model = ModelState::new(ModelConfig::default());
    for (session, item, time) in &log {
        model.observe_click(session, item, *time);
    }
    let items: Vec<String> = log.iter().map(|(_, i, _)| i.clone()).collect();
    println!(
        "model: {} clicks, {} items, {} MB",
        log.len(),
        model.items().len(),
        model.memory_bytes() / 1_000_000
    );

    let dir = tempfile::tempdir()?;
    let backend = embedded::open(dir.path())?;
    backend
        .models
        .save(
            "recommendations",
            1,
            &model.to_snapshot(),
            &Default::default(),
        )
        .await?;
    let config = CollectorConfig::default();
    let state = AppState::new(backend.sink.clone(), backend.dead_letters.clone(), &config);
    state
        .recommender
        .live
        .reload(backend.models.as_ref(), "recommendations")
        .await?;
    let app = router(state, &config);

    // Sessions with 1 to 5 product views each, through the ingestion endpoint.
    let sessions = 200;
    for s in 0..sessions {
        let events: Vec<_> = (0..1 + s % 5)
            .map(|k| {
                json!({"event_id": uuid::Uuid::now_v7(), "type": "product_view",
                    "anonymous_id": format!("a-{s}"), "session_id": format!("s-{s}"),
                    "timestamp": now_ms(), "context": {"page": {"url": "https://shop.example/p"}},
                    "properties": {"product_id": items[(s * 7919 + k * 104_729) % items.len()]}})
            })
            .collect();
        let body = json!({"batch_id": uuid::Uuid::now_v7(), "sent_at": now_ms(), "events": events});
        let request = Request::post("/v1/batch")
            .header("content-type", "text/plain")
            .body(Body::from(body.to_string()))?;
        let response = app.clone().oneshot(request).await?;
        anyhow::ensure!(response.status() == StatusCode::OK, "batch refused");
    }

    for placement in ["product", "home", "cart", "post_purchase"] {
        let mut took = Vec::with_capacity(requests);
        for r in 0..requests {
            let s = r % sessions;
            let item = &items[(r * 31) % items.len()];
            let uri = format!(
                "/v1/recommendations?anonymous_id=a-{s}&session_id=s-{s}&placement={placement}&n=20&context_item={item}&cart={item}"
            );
            let request = Request::get(uri).body(Body::empty())?;
            let started = Instant::now();
            let response = app.clone().oneshot(request).await?;
            let body = axum::body::to_bytes(response.into_body(), 1 << 20).await?;
            took.push(started.elapsed());
            anyhow::ensure!(!body.is_empty(), "empty answer");
        }
        took.sort_unstable();
        println!(
            "{placement:>13}: p50 {:?}  p99 {:?}  max {:?}  ({requests} requests)",
            percentile(&took, 0.5),
            percentile(&took, 0.99),
            took[took.len() - 1]
        );
    }
    Ok(())
}
