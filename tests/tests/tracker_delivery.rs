//! The tracker loses nothing and doubles nothing when the way to the collector fails: a
//! collector answering 500 then 200, a collector offline then back, and a page reloaded while
//! its queue is full. Real Chromium, the demo site's lab page, the real collector and stream.

mod common;
mod tracker_support;

use std::collections::BTreeSet;

use tracker_support::{assert_no_doubles, named, Lab};

/// No automatic events: the tests count only what they track.
const QUIET_PAGE: &str = r#"{"autocapture":{"pageViews":false,"clicks":false}}"#;

async fn track(lab: &Lab, n: usize, from: usize) {
    lab.js(&format!(
        "for (let i = {from}; i < {}; i++) window.retailmind.track('lab_event', {{i}}); return 1;",
        from + n
    ))
    .await;
}

fn numbers(events: &[retailmind_schema::Event]) -> BTreeSet<i64> {
    named(events, "lab_event")
        .iter()
        .filter_map(|e| match &e.payload {
            retailmind_schema::Payload::Custom(c) => c.props["i"].as_i64(),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_failing_then_recovering_loses_and_doubles_nothing() {
    let lab = Lab::start().await;
    lab.open_lab(QUIET_PAGE).await;
    lab.gate.fail_next(2);
    track(&lab, 5, 0).await;

    let events = lab
        .wait_events("the five events after two failures", 5, |e| {
            e.payload.kind() == "custom"
        })
        .await;
    assert_eq!(numbers(&events), (0..5).collect());
    assert_no_doubles(&lab.events().await);
    // An empty queue means the tracker holds the 200, so the gate has logged it. (The events
    // reach the stream before that answer travels back, so the log is read only now.)
    assert_eq!(lab.flush().await, "ok");
    assert_eq!(lab.js("return window.retailmind.queued();").await, 0);
    // The retry is the same batch, so the collector could have recognised a repeat.
    let seen = lab.gate.seen();
    assert_eq!(seen[0].1, 500);
    assert_eq!(seen[1].1, 500);
    assert_eq!(seen[0].0, seen[1].0);
    assert!(
        seen[2..]
            .iter()
            .any(|(id, status)| id == &seen[0].0 && *status == 200),
        "the failed batch was later accepted under its own id: {seen:?}"
    );
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_waits_as_long_as_the_collectors_retry_after_asks() {
    let lab = Lab::start().await;
    lab.open_lab(QUIET_PAGE).await;
    // Longer than the first backoff (1-2 s) and than the quiet time of a batch just sent
    // (5 s): only the header explains a wait that long.
    lab.gate.fail_next_asking(1, 8);
    track(&lab, 1, 0).await;
    let events = lab
        .wait_events("the event after a 500 asking for 8 s", 1, |e| {
            e.payload.kind() == "custom"
        })
        .await;
    assert_eq!(numbers(&events), BTreeSet::from([0]));
    let (seen, at) = (lab.gate.seen(), lab.gate.seen_at());
    assert_eq!(seen[0].1, 500);
    let retry = seen
        .iter()
        .position(|(id, status)| id == &seen[0].0 && *status == 200)
        .expect("the batch was sent again");
    let waited = at[retry] - at[0];
    assert!(
        waited >= std::time::Duration::from_millis(7_900),
        "sent again after {waited:?}: {seen:?}"
    );
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_refused_as_malformed_is_dropped_with_a_warning_and_the_rest_delivered() {
    let lab = Lab::start().await;
    lab.open_lab(QUIET_PAGE).await;
    lab.gate.refuse_next(1);
    track(&lab, 2, 0).await;
    // The page's timer or the flush sends it; either way it is refused once and not retried.
    let _ = lab.flush().await;
    // Dropped, not retried: the queue is empty and nothing of it reached the stream.
    assert_eq!(lab.js("return window.retailmind.queued();").await, 0);
    let warnings = lab.js("return window.labWarnings;").await;
    assert!(
        warnings.as_array().is_some_and(|w| w
            .iter()
            .any(|m| m.as_str().is_some_and(|m| m.contains("HTTP 400")))),
        "{warnings}"
    );
    // What follows goes as usual.
    track(&lab, 3, 2).await;
    assert_eq!(lab.flush().await, "ok");
    let events = lab.events().await;
    assert_eq!(numbers(&events), (2..5).collect());
    assert_eq!(lab.gate.seen().iter().filter(|(_, s)| *s == 400).count(), 1);
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_offline_then_online_delivers_everything_once() {
    offline_then_online_delivers_everything_once("").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_any_storage_the_page_still_delivers_from_memory() {
    offline_then_online_delivers_everything_once("storage=memory").await;
}

async fn offline_then_online_delivers_everything_once(switches: &str) {
    let mut lab = Lab::start().await;
    lab.open_lab_with(QUIET_PAGE, switches).await;
    lab.gate.offline().await;
    track(&lab, 3, 0).await;
    let failed = lab.flush().await;
    assert!(failed.contains("stay queued"), "{failed}");
    assert_eq!(lab.js("return window.retailmind.queued();").await, 3);

    lab.gate.online().await;
    assert_eq!(lab.flush().await, "ok");
    let events = lab.events().await;
    assert_eq!(numbers(&events), (0..3).collect());
    assert_eq!(named(&events, "lab_event").len(), 3);
    assert_no_doubles(&events);
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_with_a_full_queue_delivers_it() {
    reload_with_a_full_queue_delivers_it_from("").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_indexeddb_a_reloaded_page_delivers_the_queue_from_local_storage() {
    reload_with_a_full_queue_delivers_it_from("storage=local").await;
}

async fn reload_with_a_full_queue_delivers_it_from(switches: &str) {
    let mut lab = Lab::start().await;
    lab.open_lab_with(QUIET_PAGE, switches).await;
    lab.gate.offline().await;
    // More than a batch (20), so sends were tried and failed before the reload.
    track(&lab, 45, 0).await;
    lab.browser.client.refresh().await.unwrap();
    lab.wait_ready().await;
    assert!(
        lab.gate.seen().is_empty(),
        "nothing got through while offline"
    );

    lab.gate.online().await;
    // The reloaded page has none of those events in memory: they come from the durable queue
    // its predecessor left. (Its timer would send them too, after the backoff the offline
    // minutes built up; flush() does not wait for that.)
    assert_eq!(lab.js("return window.retailmind.queued();").await, 0);
    assert_eq!(lab.flush().await, "ok");
    let events = lab.events().await;
    assert_eq!(numbers(&events), (0..45).collect());
    assert_eq!(named(&events, "lab_event").len(), 45);
    assert_no_doubles(&events);
    lab.stop().await;
}
