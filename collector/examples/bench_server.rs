//! The server side of `cargo xtask bench collector`.
//!
//! ```text
//! bench_server serve bare|null|embedded PORT [--no-dedup]   # PORT 0 picks a free port
//! bench_server body FILE                       # writes one realistic 20-event batch
//! ```
//!
//! `serve` prints `listening 127.0.0.1:PORT` once it accepts connections and nothing while it
//! serves (printing on the hot path would measure the terminal). It stops when its standard input
//! closes, and then prints how many requests and records it handled, so the driver can check that
//! every event of the load run reached the sink.
//!
//! - `bare`: an axum handler that only reads the body and answers 200, the baseline.
//! - `null`: the real collector router with a sink that acknowledges at once.
//! - `embedded`: the real collector router with the embedded SQLite log in a temporary directory.
//!
//! `--no-dedup` turns off the collector's memory of recent batch ids, for load tools that can
//! only repeat one body (oha): with it on, every repeat would be answered from memory and the
//! run would measure no write at all.
//!
//! `body` builds the batch with the schema's own types and checks it with the schema's own
//! validation, so the load is exactly what the tracker would send, with timestamps of now.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use async_trait::async_trait;
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use retailmind_collector::{serve_on, AppState, CollectorConfig};
use retailmind_connectors::{embedded, EventSink, StreamRecord};
use retailmind_schema::{
    validate, Batch, CartLine, Click, Context as EventContext, Event, Limits, Page, PageView,
    Payload, Product, Screen, Utm,
};
use uuid::Uuid;

const EVENTS_PER_BATCH: usize = 20;

/// The allocator the collector's binary uses, so the figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["serve", mode, port, rest @ ..] => {
            let mode = Mode::parse(mode)?;
            let port: u16 = port.parse().context("PORT must be a number")?;
            let dedup = match rest {
                [] => true,
                ["--no-dedup"] => false,
                _ => bail!("unknown options {rest:?}"),
            };
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?
                .block_on(serve(mode, port, dedup))
        }
        ["body", file] => write_body(Path::new(file)),
        _ => bail!(
            "usage: bench_server serve bare|null|embedded PORT [--no-dedup] | bench_server body FILE"
        ),
    }
}

#[derive(Clone, Copy, Debug)]
enum Mode {
    Bare,
    Null,
    Embedded,
}

impl Mode {
    fn parse(s: &str) -> Result<Mode> {
        Ok(match s {
            "bare" => Mode::Bare,
            "null" => Mode::Null,
            "embedded" => Mode::Embedded,
            other => bail!("unknown mode {other:?}: bare, null or embedded"),
        })
    }
}

/// Requests and records seen, read once at shutdown (relaxed atomics: a counter, no ordering).
#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    records: AtomicU64,
}

async fn serve(mode: Mode, port: u16, dedup: bool) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let addr = listener.local_addr()?;
    let counters = Arc::new(Counters::default());
    // The production defaults, except where a change of them could silently turn the load run
    // into a run of rejections: batches of 20 events of ~500 B are far below these limits. No
    // write keys (open, as in development) and no rate limits: the load comes from one address.
    let defaults = CollectorConfig::default();
    let config = CollectorConfig {
        listen: addr,
        max_body_bytes: 1024 * 1024,
        max_events_per_batch: 500,
        max_event_bytes: 32 * 1024,
        dedup_window_secs: if dedup { defaults.dedup_window_secs } else { 0 },
        ..defaults
    };
    println!("listening {addr}");
    // The driver closes our stdin to stop us; reading to the end waits for exactly that. A plain
    // thread, because the workspace's tokio has no async stdin.
    let (closed, stdin_closed) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
        let _ = closed.send(());
    });
    let stopped = async {
        let _ = stdin_closed.await;
    };
    // Kept alive until the server stops: dropping it deletes the database.
    let mut data_dir = None;
    match mode {
        Mode::Bare => {
            let counters = counters.clone();
            let app = Router::new().route(
                "/v1/batch",
                post(move |_body: Bytes| {
                    let counters = counters.clone();
                    async move {
                        counters.requests.fetch_add(1, Ordering::Relaxed);
                        StatusCode::OK
                    }
                }),
            );
            axum::serve(listener, app)
                .with_graceful_shutdown(stopped)
                .await?;
        }
        Mode::Null | Mode::Embedded => {
            let (inner, dead_letters): (Arc<dyn EventSink>, Arc<dyn EventSink>) = match mode {
                Mode::Null => (Arc::new(NullSink), Arc::new(NullSink)),
                _ => {
                    let dir = tempfile::tempdir().context("creating the database directory")?;
                    let backend = embedded::open(dir.path())?;
                    data_dir = Some(dir);
                    (backend.sink, backend.dead_letters)
                }
            };
            let sink = Arc::new(CountingSink {
                inner,
                counters: counters.clone(),
            });
            let state = AppState::new(sink, dead_letters, &config);
            // The collector's own serving path, exactly as its binary runs it.
            serve_on(listener, state, &config, stopped).await?;
        }
    }
    println!(
        "requests={} records={}",
        counters.requests.load(Ordering::Relaxed),
        counters.records.load(Ordering::Relaxed)
    );
    drop(data_dir);
    Ok(())
}

/// Acknowledges at once: what is left is the collector's own cost (decode, validate, encode).
struct NullSink;

#[async_trait]
impl EventSink for NullSink {
    async fn append(&self, _records: Vec<StreamRecord>) -> retailmind_connectors::Result<()> {
        Ok(())
    }

    async fn ready(&self) -> retailmind_connectors::Result<()> {
        Ok(())
    }
}

/// Counts what reached the sink, so the driver can prove every event of the run was written.
struct CountingSink {
    inner: Arc<dyn EventSink>,
    counters: Arc<Counters>,
}

#[async_trait]
impl EventSink for CountingSink {
    async fn append(&self, records: Vec<StreamRecord>) -> retailmind_connectors::Result<()> {
        let n = records.len() as u64;
        self.inner.append(records).await?;
        // Counted after the write succeeded: only acknowledged records count.
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        self.counters.records.fetch_add(n, Ordering::Relaxed);
        Ok(())
    }

    async fn ready(&self) -> retailmind_connectors::Result<()> {
        self.inner.ready().await
    }
}

/// Writes one batch of 20 valid events with timestamps of now, a fresh batch id and fresh
/// UUIDv7 event ids.
fn write_body(file: &Path) -> Result<()> {
    let now = now_ms();
    let mut ids = UuidV7Source::new();
    let batch = realistic_batch(now, &mut ids);
    for (i, event) in batch.events.iter().enumerate() {
        if let Err(errors) = validate(event, &Limits::default(), now) {
            bail!("generated event {i} is invalid: {errors:?}");
        }
    }
    let body = serde_json::to_vec(&batch)?;
    std::fs::write(file, &body).with_context(|| format!("writing {}", file.display()))?;
    println!("{} bytes, {} events", body.len(), batch.events.len());
    Ok(())
}

/// A shopper's 20 interactions: landing page, product views, clicks, cart adds, as the tracker
/// records them (full page context, campaign, device), about 500 bytes each.
fn realistic_batch(now: i64, ids: &mut UuidV7Source) -> Batch {
    let anonymous_id = ids.next(now).to_string();
    let session_id = format!("s-{}", ids.next(now).simple());
    let products = [
        (
            "tr-4211",
            "Trail Running Shoe 42 Blue",
            "shoes/running",
            12_990,
        ),
        (
            "jk-0815",
            "Waterproof Shell Jacket",
            "apparel/jackets",
            24_900,
        ),
        ("bp-3307", "Daypack 28 L Graphite", "bags/backpacks", 8_990),
        (
            "so-1102",
            "Merino Hiking Socks (2 pairs)",
            "apparel/socks",
            2_490,
        ),
    ];
    let events = (0..EVENTS_PER_BATCH)
        .map(|i| {
            let (product_id, name, category, price) = products[i % products.len()];
            // The first page is the landing page from a newsletter: it carries the campaign in
            // its URL and an outside referrer; later pages were reached from inside the shop.
            let landing = i == 0;
            let url = if landing {
                format!(
                    "https://shop.example.com/p/{product_id}\
                     ?utm_source=newsletter&utm_medium=email&utm_campaign=autumn-sale-2026"
                )
            } else {
                format!("https://shop.example.com/p/{product_id}")
            };
            let referrer = if landing {
                "https://mail.example.net/"
            } else {
                "https://shop.example.com/c/outdoor"
            };
            let payload = match i % 4 {
                0 => Payload::PageView(PageView {
                    category: Some("product".into()),
                    ..PageView::default()
                }),
                1 => Payload::ProductView(product(product_id, name, category, price)),
                2 => Payload::Click(Click {
                    element: "button".into(),
                    text: Some("Add to cart".into()),
                    id: Some(format!("add-to-cart-{product_id}")),
                    classes: vec!["btn".into(), "btn-primary".into(), "js-add-to-cart".into()],
                    href: None,
                    outbound: false,
                }),
                _ => Payload::AddToCart(CartLine {
                    product: product(product_id, name, category, price),
                    quantity: 1 + (i as u32 % 3),
                }),
            };
            Event {
                event_id: ids.next(now),
                anonymous_id: anonymous_id.clone(),
                user_id: None,
                session_id: Some(session_id.clone()),
                // Spread over the last half minute, oldest first, as a queue would hold them.
                timestamp: now - (EVENTS_PER_BATCH - i) as i64 * 1_500,
                received_at: None,
                context: EventContext {
                    page: Page {
                        url,
                        referrer: Some(referrer.into()),
                        title: Some(format!("{name} | Outdoor Shop")),
                    },
                    utm: landing.then(|| Utm {
                        source: Some("newsletter".into()),
                        medium: Some("email".into()),
                        campaign: Some("autumn-sale-2026".into()),
                        term: None,
                        content: None,
                    }),
                    user_agent: Some(
                        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 \
                         (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
                            .into(),
                    ),
                    screen: Some(Screen {
                        width: 1920,
                        height: 1080,
                    }),
                    locale: Some("de-CH".into()),
                    timezone: Some("Europe/Zurich".into()),
                    ip: None,
                    library: Some("retailmind-sdk-wasm/0.1.0".into()),
                },
                payload,
            }
        })
        .collect();
    Batch {
        batch_id: ids.next(now),
        sent_at: now,
        events,
    }
}

fn product(product_id: &str, name: &str, category: &str, price_minor: i64) -> Product {
    Product {
        product_id: product_id.into(),
        name: Some(name.into()),
        category: Some(category.into()),
        price_minor: Some(price_minor),
        currency: Some("CHF".into()),
    }
}

/// UUIDv7s without a random-number crate: the standard library's per-process random hash keys
/// mixed with a counter give distinct, unpredictable tails, which is all an id here needs.
struct UuidV7Source {
    keys: RandomState,
    counter: u64,
}

impl UuidV7Source {
    fn new() -> Self {
        UuidV7Source {
            keys: RandomState::new(),
            counter: 0,
        }
    }

    fn next(&mut self, now_ms: i64) -> Uuid {
        let mut tail = [0u8; 10];
        for (half, chunk) in tail.chunks_mut(8).enumerate() {
            let mut h = self.keys.build_hasher();
            h.write_u64(self.counter);
            h.write_usize(half);
            chunk.copy_from_slice(&h.finish().to_le_bytes()[..chunk.len()]);
        }
        self.counter += 1;
        uuid::Builder::from_unix_timestamp_millis(now_ms.max(0) as u64, &tail).into_uuid()
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
