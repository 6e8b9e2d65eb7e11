//! Two tabs of one shop share the durable queue and take turns sending it (Web Locks): every
//! event of both arrives, and the processed session holds each exactly once.
//!
//! Switching tabs hides one, and a hidden tab hands its unacknowledged events to the browser at
//! once (it may never run again). If that happens while the other tab's send cycle is cutting
//! the same events into a batch, both copies can reach the stream; the processor drops the
//! repeat by event id, which is what this test checks on the session.

mod common;
mod tracker_support;

use std::collections::BTreeSet;

use std::time::Duration;

use retailmind_schema::Payload;
use retailmind_tests::wait_for;
use tracker_support::{named, Lab};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tabs_deliver_each_event_once() {
    let lab = Lab::start().await;
    let cfg = r#"{"batchSize":5,"autocapture":{"clicks":false}}"#;
    lab.open_lab(cfg).await;
    let client = &lab.browser.client;
    let first = client.window().await.unwrap();
    let second = client.new_window(true).await.unwrap().handle;
    client.switch_to_window(second.clone()).await.unwrap();
    lab.open_lab(cfg).await;

    // Interleaved, so both tabs' timers and batch-size sends race for the queue.
    for round in 0..4 {
        for (tab, handle) in [(1, &first), (2, &second)] {
            client.switch_to_window(handle.clone()).await.unwrap();
            lab.js(&format!(
                "for (let i = 0; i < 7; i++) retailmind.track('tab_event', {{tab: {tab}, round: {round}, i}}); return 1;"
            ))
            .await;
        }
    }
    assert_eq!(lab.flush().await, "ok");
    client.switch_to_window(first).await.unwrap();
    assert_eq!(lab.flush().await, "ok");

    let events = lab.events().await;
    let got: BTreeSet<(i64, i64, i64)> = named(&events, "tab_event")
        .iter()
        .filter_map(|e| match &e.payload {
            Payload::Custom(c) => Some((
                c.props["tab"].as_i64()?,
                c.props["round"].as_i64()?,
                c.props["i"].as_i64()?,
            )),
            _ => None,
        })
        .collect();
    assert_eq!(got.len(), 56, "2 tabs × 4 rounds × 7 events");
    let unique: BTreeSet<String> = events.iter().map(|e| e.event_id.to_string()).collect();
    // One tab's cycle may send the other tab's events while that tab, hidden by the switch,
    // sends them on its way out: the collector writes each event id once all the same.
    assert_eq!(events.len(), unique.len(), "no event stored twice");
    // One browser, one visit: the processor's session holds every event exactly once.
    let anonymous_id = events[0].anonymous_id.clone();
    let session = wait_for("the session of both tabs", Duration::from_secs(20), || {
        let sessions = lab.backend.sessions.clone();
        let anonymous_id = anonymous_id.clone();
        let want = unique.len() as u64;
        async move {
            let mut all = sessions.sessions_of(&anonymous_id).await.ok()?;
            (all.len() == 1 && all[0].event_count as u64 == want).then(|| all.remove(0))
        }
    })
    .await;
    let in_session: BTreeSet<String> = session.event_ids.iter().map(|id| id.to_string()).collect();
    assert_eq!(in_session, unique);
    lab.stop().await;
}
