//! The whole path on the embedded default, driven by a real browser: Chromium opens the demo
//! storefront, the wasm tracker sends to the collector, the processor builds the session and
//! writes the lake, and the test checks that the session and the lake hold exactly the events
//! the browser sent.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use retailmind_connectors::embedded;
use retailmind_schema::{Event, Payload};
use retailmind_tests::browser::Browser;
use retailmind_tests::{tracker_bundle, tracker_package, wait_for};

use common::{stream_events, Pipeline};

/// How the storefront's pages load the tracker.
#[derive(Clone, Copy)]
enum Loader {
    /// The script-tag stub and the web-target package.
    ScriptTag,
    /// The npm package (bundler target), bundled by webpack.
    NpmBundle,
}

async fn serve_storefront(collector_url: &str, loader: Loader) -> String {
    let app = match loader {
        Loader::ScriptTag => {
            retailmind_demo_site::router(&tracker_package(), collector_url, "e2e-key")
        }
        Loader::NpmBundle => {
            retailmind_demo_site::bundled_router(&tracker_bundle(), collector_url, "e2e-key")
        }
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

/// Every line of every lake file under `dir`.
fn lake_lines(dir: &Path) -> Vec<serde_json::Value> {
    let mut lines = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if !entry.file_name().to_string_lossy().starts_with('.') {
                let text = std::fs::read_to_string(&path).unwrap();
                lines.extend(text.lines().map(|l| serde_json::from_str(l).unwrap()));
            }
        }
    }
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storefront_clicks_become_one_session_and_lake_lines() {
    storefront_clicks(Loader::ScriptTag).await;
}

/// The same visit with the tracker installed from npm and bundled, as a shop's build would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_npm_package_bundled_by_webpack_tracks_the_same_visit() {
    storefront_clicks(Loader::NpmBundle).await;
}

async fn storefront_clicks(loader: Loader) {
    let data = tempfile::tempdir().unwrap();
    let backend = embedded::open(data.path()).unwrap();
    let pipeline = Pipeline::start(backend.clone()).await;
    let storefront = serve_storefront(&pipeline.collector_url, loader).await;
    let browser = Browser::start().await;
    let client = &browser.client;

    client.goto(&format!("{storefront}/")).await.unwrap();
    browser.wait_for_tracker("home").await;
    // Leaving the page by a link: the click must still arrive (sent while the page unloads).
    browser.click("a[id^='product-link-']").await;
    browser.wait_for_tracker("product page").await;
    browser.click("#add-to-cart").await;
    browser.flush_tracker().await;

    // What the collector accepted: home page view, the link click, the product page view, the
    // product view, the button click and the cart add.
    let sent: Vec<Event> = wait_for("six events in the stream", Duration::from_secs(10), || {
        let reader = backend.reader.clone();
        async move {
            let events = stream_events(reader.as_ref()).await;
            (events.len() >= 6).then_some(events)
        }
    })
    .await;
    let mut kinds: Vec<&str> = sent.iter().map(|e| e.payload.kind()).collect();
    kinds.sort_unstable();
    assert_eq!(
        kinds,
        [
            "add_to_cart",
            "click",
            "click",
            "page_view",
            "page_view",
            "product_view"
        ]
    );
    let anonymous_id = &sent[0].anonymous_id;
    assert!(sent.iter().all(|e| &e.anonymous_id == anonymous_id));
    assert!(sent.iter().any(|e| matches!(
        &e.payload,
        Payload::Click(c) if c.element == "a" && c.href.as_deref().is_some_and(|h| h.contains("product"))
    )));
    let sent_ids: BTreeSet<String> = sent.iter().map(|e| e.event_id.to_string()).collect();

    // The session: exactly those events, counted once.
    let session = wait_for(
        "the session to hold all six events",
        Duration::from_secs(10),
        || {
            let sessions = backend.sessions.clone();
            let anonymous_id = anonymous_id.clone();
            async move {
                let mut all = sessions.sessions_of(&anonymous_id).await.ok()?;
                (all.len() == 1 && all[0].event_count == 6).then(|| all.remove(0))
            }
        },
    )
    .await;
    let session_ids: BTreeSet<String> = session.event_ids.iter().map(|id| id.to_string()).collect();
    assert_eq!(session_ids, sent_ids);
    assert_eq!(
        (
            session.page_views,
            session.products_viewed,
            session.cart_adds
        ),
        (2, 1, 1)
    );
    assert!(session.entry_url.starts_with(&storefront));
    assert!(session.exit_url.contains("product"));

    // The lake: every event exactly once, as a JSON line under events/dt=…/hour=…/.
    let lake_dir = data.path().join(embedded::LAKE_DIR).join("events");
    let lines = wait_for(
        "the lake to hold six lines",
        Duration::from_secs(10),
        || {
            let lines = lake_lines(&lake_dir);
            async move { (lines.len() >= 6).then_some(lines) }
        },
    )
    .await;
    let lake_ids: Vec<String> = lines
        .iter()
        .map(|l| l["event_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(lake_ids.len(), 6, "no event twice in the lake");
    assert_eq!(lake_ids.into_iter().collect::<BTreeSet<_>>(), sent_ids);

    browser.close().await;
    pipeline.stop().await;
}
