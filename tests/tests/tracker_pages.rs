//! Page life in real Chromium: page views of a single-page app (History API), events sent while
//! the page goes away or is hidden, and a page view when the back/forward cache restores a page.

mod common;
mod tracker_support;

use std::time::Duration;

use retailmind_schema::{Event, Payload};
use retailmind_tests::wait_for;
use serde_json::Value;
use tracker_support::{assert_no_doubles, is_named, kind_count, named, Lab};

fn page_views(events: &[Event]) -> Vec<&Event> {
    events
        .iter()
        .filter(|e| matches!(e.payload, Payload::PageView(_)))
        .collect()
}

fn view_of(e: &Event) -> String {
    e.context
        .page
        .url
        .split("view=")
        .nth(1)
        .unwrap_or("home")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_page_app_navigations_count_once_each() {
    let lab = Lab::start().await;
    lab.open_lab(r#"{"autocapture":{"clicks":false,"engagement":true}}"#)
        .await;
    // A router's replaceState-then-pushState is one page view; the same URL again is none;
    // going back is one.
    lab.js("labNavigate('a'); return 1;").await;
    lab.js("labNavigate('a'); return 1;").await;
    lab.js("history.replaceState({}, '', location.href); return 1;")
        .await;
    lab.js("labNavigate('b'); return 1;").await;
    lab.js("location.hash = 'reviews'; return 1;").await;
    lab.browser.client.back().await.unwrap();
    wait_for("the back navigation", Duration::from_secs(10), || async {
        let href = lab.js("return location.href;").await;
        href.as_str()
            .is_some_and(|h| h.contains("view=b") && !h.contains('#'))
            .then_some(())
    })
    .await;
    lab.browser.client.back().await.unwrap();
    wait_for(
        "the second back navigation",
        Duration::from_secs(10),
        || async {
            let href = lab.js("return location.href;").await;
            href.as_str()
                .is_some_and(|h| h.contains("view=a"))
                .then_some(())
        },
    )
    .await;
    assert_eq!(lab.flush().await, "ok");

    let events = lab.events().await;
    let views: Vec<String> = page_views(&events).into_iter().map(view_of).collect();
    assert_eq!(
        views,
        ["home", "a", "b", "a"],
        "one per URL change, fragment aside"
    );
    let pv = page_views(&events);
    assert_eq!(
        pv[1].context.page.referrer.as_deref(),
        Some(pv[0].context.page.url.as_str()),
        "the previous view is the referrer"
    );
    assert_eq!(pv[2].context.page.title.as_deref(), Some("Lab · b"));
    // The engagement of each view left, before the next view's page view.
    let engagement = named(&events, "page_engagement");
    assert!(engagement.len() >= 2, "{engagement:?}");
    assert_no_doubles(&events);
    lab.stop().await;
}

/// Nothing is sent by batch size or timer before the page is gone.
const HOLDING: &str =
    r#"{"batchSize":500,"flushIntervalMs":3600000,"autocapture":{"clicks":false}}"#;

/// Waits until the send cycle the tracker starts with (its page view) has ended: an event
/// tracked while a cycle runs goes with it, before its time. The queue is empty before the
/// cycle ends (it still deletes what was sent and reads the queue again); a flush is chained
/// after the running cycle, so its answer means that cycle ended.
async fn settle(lab: &Lab) {
    lab.wait_events("the page view", 1, |e| e.payload.kind() == "page_view")
        .await;
    assert_eq!(lab.flush().await, "ok");
    assert_eq!(lab.js("return window.retailmind.queued();").await, 0);
}

/// Events tracked just before the page goes, sent by `exit` (see [`Lab::open_lab_with`]),
/// arrive.
async fn events_tracked_just_before_leaving_arrive_by(exit: &str) {
    let lab = Lab::start().await;
    lab.open_lab_with(HOLDING, &format!("exit={exit}")).await;
    settle(&lab).await;
    lab.js("for (let i = 0; i < 3; i++) retailmind.track('last_words', {i}); return 1;")
        .await;
    // Still here, so whatever delivers them below is the leaving page's own send.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(named(&lab.events().await, "last_words").len(), 0);
    // A page without the tracker: only the leaving page's own send can deliver them.
    lab.browser.client.goto("about:blank").await.unwrap();
    let events = lab
        .wait_events("the events sent on leaving", 4, |_| true)
        .await;
    assert_eq!(named(&events, "last_words").len(), 3, "{exit}");
    assert_eq!(kind_count(&events, "page_view"), 1);
    assert_no_doubles(&events);
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_tracked_just_before_leaving_arrive() {
    events_tracked_just_before_leaving_arrive_by("").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_fetch_later_a_leaving_page_sends_by_keepalive_fetch() {
    events_tracked_just_before_leaving_arrive_by("keepalive").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_fetch_later_or_keepalive_fetch_a_leaving_page_sends_by_beacon() {
    events_tracked_just_before_leaving_arrive_by("beacon").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_than_the_keepalive_budget_leaves_in_pieces_and_the_rest_comes_next_visit() {
    let lab = Lab::start().await;
    lab.open_lab_with(HOLDING, "exit=keepalive").await;
    settle(&lab).await;
    // About 250 KB of events: one body that size would be refused whole by the browser's
    // 64 KiB keepalive budget, and nothing would leave.
    lab.js("for (let i = 0; i < 150; i++) retailmind.track('heavy', {i, pad: 'x'.repeat(1000)}); return 1;")
        .await;
    lab.browser.client.goto("about:blank").await.unwrap();
    let first = lab
        .wait_events("the part sent on leaving", 1, |e| is_named(e, "heavy"))
        .await;
    assert!(
        first.len() < 150,
        "more than the budget left: {}",
        first.len()
    );
    // The shopper comes back: the queue its last page left delivers the rest.
    lab.open_lab_with(HOLDING, "exit=keepalive").await;
    // Past the first 64 KiB of keepalive fetches, too: their answers are read to the end,
    // which is what frees the browser's budget.
    assert_eq!(lab.flush().await, "ok");
    let events = lab.events().await;
    let mut heavy: Vec<i64> = named(&events, "heavy")
        .iter()
        .filter_map(|e| match &e.payload {
            Payload::Custom(c) => c.props["i"].as_i64(),
            _ => None,
        })
        .collect();
    heavy.sort_unstable();
    assert_eq!(heavy, (0..150).collect::<Vec<_>>());
    assert_no_doubles(&events);
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_tracked_before_the_page_is_hidden_arrive_while_it_lives_on() {
    let lab = Lab::start().await;
    lab.open_lab(HOLDING).await;
    settle(&lab).await;
    lab.js("for (let i = 0; i < 3; i++) retailmind.track('before_hiding', {i}); return 1;")
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(named(&lab.events().await, "before_hiding").len(), 0);
    // Another tab in front hides this one (visibilitychange), which is not unloaded: on a phone
    // this is the last moment a page is sure to run, so its events must leave now.
    let client = &lab.browser.client;
    let shop = client.window().await.unwrap();
    let other = client.new_window(true).await.unwrap().handle;
    client.switch_to_window(other).await.unwrap();
    let events = lab
        .wait_events("the events sent on hiding", 4, |_| true)
        .await;
    assert_eq!(named(&events, "before_hiding").len(), 3);
    assert_eq!(kind_count(&events, "page_view"), 1);

    // Back in front, the page still holds them until an answer it reads: sent again, they are
    // recognised, not stored twice, and the queue empties.
    client.switch_to_window(shop).await.unwrap();
    assert_eq!(lab.flush().await, "ok");
    assert_eq!(lab.js("return window.retailmind.queued();").await, 0);
    let events = lab.events().await;
    assert_eq!(named(&events, "before_hiding").len(), 3);
    assert_no_doubles(&events);
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tagged_element_click_and_a_link_click_are_recorded() {
    let lab = Lab::start().await;
    lab.open_lab("{}").await;
    lab.js("document.getElementById('tagged').click(); return 1;")
        .await;
    lab.js("document.getElementById('to-a').click(); return 1;")
        .await;
    assert_eq!(lab.flush().await, "ok");
    let events = lab.events().await;
    let tagged = named(&events, "lab_tagged");
    assert_eq!(tagged.len(), 1);
    match &tagged[0].payload {
        Payload::Custom(c) => assert_eq!(c.props["colour"], Value::from("red")),
        other => panic!("{other:?}"),
    }
    assert_eq!(kind_count(&events, "click"), 2, "the button and the link");
    assert_eq!(
        kind_count(&events, "page_view"),
        2,
        "the link is an SPA route"
    );
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autocapture_switched_off_records_no_page_views_or_clicks_but_tagged_events() {
    let lab = Lab::start().await;
    lab.open_lab(r#"{"autocapture":{"pageViews":false,"clicks":false}}"#)
        .await;
    lab.js("document.getElementById('tagged').click(); return 1;")
        .await;
    // An SPA route, a button and a link: nothing of it is recorded by itself.
    lab.js("document.getElementById('to-a').click(); return 1;")
        .await;
    lab.js("retailmind.track('marker', {}); return 1;").await;
    assert_eq!(lab.flush().await, "ok");
    let events = lab.events().await;
    assert_eq!(named(&events, "marker").len(), 1);
    // The shop's own tagging is not autocapture: it asked for that event.
    assert_eq!(named(&events, "lab_tagged").len(), 1);
    assert_eq!(kind_count(&events, "click"), 0);
    assert_eq!(kind_count(&events, "page_view"), 0);
    assert_eq!(events.len(), 2, "{events:?}");
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn back_forward_cache_restore_is_a_page_view() {
    let lab = Lab::start().await;
    lab.open_lab(r#"{"autocapture":{"clicks":false}}"#).await;
    // Chromium keeps a page in the back/forward cache only if nothing is in flight when it is
    // left (and even then may decline): leave an idle page, and try again if it declined.
    let mut restores = 0;
    for attempt in 0..3 {
        assert_eq!(lab.flush().await, "ok");
        lab.js("window.labMarker = 'still here'; return 1;").await;
        lab.browser
            .client
            .goto(&format!("{}/lab.html?view=elsewhere{attempt}", lab.site))
            .await
            .unwrap();
        lab.wait_ready().await;
        lab.browser.client.back().await.unwrap();
        lab.wait_ready().await;
        let restored = lab.js("return window.labMarker === 'still here';").await;
        if restored == Value::Bool(true) {
            restores += 1;
            break;
        }
        let why = lab
            .js("return JSON.stringify(performance.getEntriesByType('navigation')[0].notRestoredReasons);")
            .await;
        eprintln!("attempt {attempt}: not restored from the back/forward cache: {why}");
    }
    assert_eq!(
        restores, 1,
        "Chromium never restored the page from the cache"
    );
    assert_eq!(lab.flush().await, "ok");
    let events = lab.events().await;
    let homes = page_views(&events)
        .into_iter()
        .filter(|e| view_of(e) == "home")
        .count();
    let leaves = page_views(&events).len() - homes;
    // Each attempt's page load or restore of the lab page is one view of it: the first load,
    // reloads after declined attempts, and the restore.
    assert_eq!(homes, leaves + 1, "{:?}", page_views(&events));
    assert_no_doubles(&events);
    lab.stop().await;
}
