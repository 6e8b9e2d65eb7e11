//! Consent and opt-out in real Chromium: in consent mode nothing is stored or sent before the
//! shopper agrees; an opt-out holds across page loads.

mod common;
mod tracker_support;

use serde_json::Value;
use tracker_support::{assert_no_doubles, kind_count, named, Lab};

/// Names of the tracker's localStorage keys and whether its IndexedDB database exists.
const STORAGE_USED: &str = "
    const done = arguments[arguments.length - 1];
    const keys = Object.keys(localStorage).filter((k) => k.startsWith('retailmind'));
    indexedDB.databases().then((dbs) => done({
        keys, idb: dbs.some((d) => d.name === 'retailmind') }));";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_mode_stores_and_sends_nothing_before_consent() {
    let lab = Lab::start().await;
    lab.open_lab(r#"{"requireConsent":true,"autocapture":{"clicks":false}}"#)
        .await;
    lab.js("retailmind.track('before_consent', {}); return 1;")
        .await;
    let refused = lab.flush().await;
    assert!(refused.contains("tracking is off"), "{refused}");
    // Asking for recommendations would identify the shopper too.
    let asked = lab
        .browser
        .client
        .execute_async(
            "const done = arguments[arguments.length - 1];
             retailmind.recommendations({placement: 'home'}).then(() => done('answered'), (e) => done(String(e)));",
            vec![],
        )
        .await
        .unwrap();
    assert!(
        asked
            .as_str()
            .unwrap_or_default()
            .contains("tracking is off"),
        "{asked}"
    );
    let used = lab
        .browser
        .client
        .execute_async(STORAGE_USED, vec![])
        .await
        .unwrap();
    assert_eq!(
        used["keys"],
        Value::Array(vec![]),
        "nothing in localStorage"
    );
    assert_eq!(used["idb"], Value::Bool(false), "no IndexedDB database");
    assert!(lab.gate.seen().is_empty(), "nothing sent");

    // Consent given: what was held in memory goes out.
    lab.js("retailmind.setConsent(true); return 1;").await;
    assert_eq!(lab.flush().await, "ok");
    let events = lab.events().await;
    assert_eq!(named(&events, "before_consent").len(), 1);
    assert_eq!(kind_count(&events, "page_view"), 1);

    // Withdrawn: later events are neither stored nor sent, on this page or the next.
    lab.js("retailmind.setConsent(false); retailmind.track('after_withdrawal', {}); return 1;")
        .await;
    lab.browser.client.refresh().await.unwrap();
    lab.wait_ready().await;
    lab.js("retailmind.track('after_withdrawal', {}); return 1;")
        .await;
    assert!(lab.flush().await.contains("tracking is off"));
    let events = lab.events().await;
    assert!(named(&events, "after_withdrawal").is_empty());
    assert_eq!(kind_count(&events, "page_view"), 1);
    assert_no_doubles(&events);
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opt_out_is_remembered_and_opt_in_resumes() {
    let lab = Lab::start().await;
    lab.open_lab(r#"{"autocapture":{"clicks":false}}"#).await;
    assert_eq!(lab.flush().await, "ok");
    lab.js("retailmind.optOut(); retailmind.track('opted_out', {}); return 1;")
        .await;
    lab.browser.client.refresh().await.unwrap();
    lab.wait_ready().await;
    lab.js("retailmind.track('opted_out', {}); return 1;").await;
    assert!(lab.flush().await.contains("tracking is off"));

    lab.js("retailmind.optIn(); retailmind.track('opted_in', {}); return 1;")
        .await;
    assert_eq!(lab.flush().await, "ok");
    let events = lab.events().await;
    assert!(named(&events, "opted_out").is_empty());
    assert_eq!(named(&events, "opted_in").len(), 1);
    assert_eq!(kind_count(&events, "page_view"), 1, "none while opted out");
    lab.stop().await;
}
