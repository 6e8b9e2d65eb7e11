//! Segment's browser library, analytics.js (`@segment/analytics-next` from npm, its prebuilt
//! bundle as a shop's page loads it), in real Chromium, sends to the collector unchanged: the
//! page is on one origin, the collector on another, so every call goes through a CORS
//! preflight that does not carry the write key. Each call must reach the stream once, with no
//! retry, and the page must be able to read every answer: one request per call (the library's
//! default) and with its batching delivery (`/v1/b`).
//!
//! The library comes from `tests/analytics-js` (`npm ci` there; `cargo xtask test` runs it and
//! names the folder in `RETAILMIND_ANALYTICS_JS`). Without it the test fails, saying so.

mod common;

use std::time::Duration;

use axum::response::Html;
use axum::routing::get;
use retailmind_collector::{serve_on, AppState, CollectorConfig, KeyKind, WriteKeyConfig};
use retailmind_connectors::embedded;
use retailmind_schema::{Event, Payload};
use retailmind_tests::browser::Browser;
use serde_json::Value;
use tokio::sync::watch;

use common::stream_events;

const KEY: &str = "pk_e2e_ajs";

/// The shop's page: records every `fetch` the library makes (its status, or the error a
/// refused CORS check gives), loads analytics.js with the collector as its API host and
/// `delivery` (a `deliveryStrategy` object, or `undefined` for one call per request), makes
/// four calls and waits for them to be delivered, then publishes what it saw.
fn page(collector_host: &str, delivery: &str) -> String {
    format!(
        r#"<!doctype html><html><head><title>Mug</title>
<script>
  window.fetches = [];
  const realFetch = window.fetch.bind(window);
  window.fetch = (url, init) => {{
    const headers = new Headers((init && init.headers) || {{}});
    const seen = {{ url: String(url), retry: headers.get('x-retry-count') }};
    window.fetches.push(seen);
    return realFetch(url, init).then(
      (r) => {{ seen.status = r.status; return r; }},
      (e) => {{ seen.error = String(e); throw e; }});
  }};
</script>
<script src="/analytics-next.js"></script></head><body>
<script>
(async () => {{
  try {{
    const key = '{KEY}';
    const [analytics] = await AnalyticsNext.AnalyticsBrowser.load(
      {{ writeKey: key,
         cdnSettings: {{ integrations: {{ 'Segment.io': {{ apiKey: key, apiHost: '{collector_host}/v1', protocol: 'http',
                                                           deliveryStrategy: {delivery} }} }} }} }},
      {{ disableClientPersistence: true }});
    await analytics.track('Signed Up!', {{ plan: 'gold' }});
    await analytics.page('Home');
    await analytics.identify('user-7', {{ plan: 'gold' }});
    await analytics.track('Product Viewed', {{ product_id: 'mug-42', price: 19.99, currency: 'EUR' }});
    window.segmentResult = {{ fetches: window.fetches, anonymousId: analytics.user().anonymousId() }};
  }} catch (e) {{
    window.segmentResult = {{ failed: String(e), fetches: window.fetches }};
  }}
}})();
</script></body></html>"#
    )
}

async fn until(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|s| *s).await;
}

/// What a page with analytics.js (`delivery` as in [`page`]) on one origin sent to the
/// collector on another: the page's record of its fetches (paths on the collector, with their
/// answers) and the events the stream holds, in time order.
struct Sent {
    paths: Vec<String>,
    fetches: Vec<Value>,
    anonymous_id: String,
    page_url: String,
    events: Vec<Event>,
}

async fn send_from_chromium(delivery: &str) -> Sent {
    let library = retailmind_tests::analytics_js()
        .join("node_modules/@segment/analytics-next/dist/umd/index.js");
    let bundle = std::fs::read(&library).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let backend = embedded::open(dir.path()).unwrap();
    let (stop, stopped) = watch::channel(false);

    // The shop's site on one origin.
    let site = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let site_origin = format!("http://{}", site.local_addr().unwrap());
    // The collector on another, taking the shop's key from that origin only.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector_host = listener.local_addr().unwrap().to_string();
    let config = CollectorConfig {
        keys: vec![WriteKeyConfig {
            key: KEY.into(),
            name: "shop web".into(),
            kind: KeyKind::Publishable,
            origins: vec![site_origin.clone()],
        }],
        ..CollectorConfig::default()
    };
    let state = AppState::new(backend.sink.clone(), backend.dead_letters.clone(), &config);
    let collector = tokio::spawn({
        let stopped = stop.subscribe();
        async move {
            serve_on(listener, state, &config, until(stopped))
                .await
                .expect("collector serves")
        }
    });
    let html = page(&collector_host, delivery);
    let pages = axum::Router::new()
        .route("/", get(move || async move { Html(html) }))
        .route(
            "/analytics-next.js",
            get(move || async move { ([("content-type", "text/javascript")], bundle) }),
        );
    let site_server = tokio::spawn(async move {
        axum::serve(site, pages)
            .with_graceful_shutdown(until(stopped))
            .await
            .expect("the site serves")
    });

    let browser = Browser::start().await;
    browser
        .client
        .goto(&format!("{site_origin}/"))
        .await
        .unwrap();
    let result = browser
        .wait_for_value(
            "analytics.js to deliver its four calls",
            Duration::from_secs(30),
            "return window.segmentResult || null;",
        )
        .await;
    browser.close().await;
    assert!(result.get("failed").is_none(), "the page: {result}");

    let fetches = result["fetches"]
        .as_array()
        .expect("the page's fetches")
        .clone();
    let paths = fetches
        .iter()
        .map(|f| f["url"].as_str().unwrap_or(""))
        .map(|url| {
            url.trim_start_matches(&format!("http://{collector_host}"))
                .to_owned()
        })
        .collect();
    let mut events: Vec<Event> = stream_events(backend.reader.as_ref()).await;
    events.sort_by_key(|e| e.timestamp);
    let _ = stop.send(true);
    collector.await.unwrap();
    site_server.await.unwrap();
    Sent {
        paths,
        fetches,
        anonymous_id: result["anonymousId"]
            .as_str()
            .expect("an anonymous id")
            .to_owned(),
        page_url: format!("{site_origin}/"),
        events,
    }
}

/// Every fetch answered 200 and readable by the page (none refused by CORS), none a retry;
/// each of the four calls in the stream once, as sent.
fn assert_delivered_once(sent: &Sent) {
    for fetch in &sent.fetches {
        assert_eq!(fetch["status"], 200, "{fetch}");
        assert!(fetch["retry"].is_null() || fetch["retry"] == "0", "{fetch}");
    }
    let events = &sent.events;
    let kinds: Vec<String> = events
        .iter()
        .map(|e| match &e.payload {
            Payload::Custom(c) => c.name.clone(),
            other => other.kind().to_owned(),
        })
        .collect();
    assert_eq!(
        kinds,
        ["Signed Up!", "page_view", "identify", "product_view"],
        "each call once"
    );
    for e in events {
        assert_eq!(e.anonymous_id, sent.anonymous_id);
        assert_eq!(e.context.page.url, sent.page_url, "{e:?}");
        assert!(
            e.context
                .user_agent
                .as_deref()
                .is_some_and(|ua| ua.contains("Chrome")),
            "{e:?}"
        );
    }
    assert_eq!(events[2].user_id.as_deref(), Some("user-7"));
    assert_eq!(events[3].user_id.as_deref(), Some("user-7"));
    match &events[3].payload {
        Payload::ProductView(p) => {
            assert_eq!(
                (p.product_id.as_str(), p.price_minor, p.currency.as_deref()),
                ("mug-42", Some(1999), Some("EUR"))
            );
        }
        other => panic!("a product view: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analytics_js_in_chromium_delivers_each_call_once_across_origins() {
    let sent = send_from_chromium("undefined").await;
    assert_eq!(
        sent.paths,
        ["/v1/t", "/v1/p", "/v1/i", "/v1/t"],
        "{:?}",
        sent.fetches
    );
    assert_delivered_once(&sent);
}

/// With `deliveryStrategy: batching`, the library posts its queue to `/v1/b` as one batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analytics_js_batching_in_chromium_delivers_each_call_once_across_origins() {
    let sent =
        send_from_chromium("{ strategy: 'batching', config: { size: 4, timeout: 5000 } }").await;
    assert_eq!(sent.paths, ["/v1/b"], "{:?}", sent.fetches);
    assert_delivered_once(&sent);
}
