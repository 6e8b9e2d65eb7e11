//! The script-tag stub in real Chromium: a shop's calls made through it never throw and never
//! hang, whether the tracker loads or is blocked, and calls through a reference the page kept
//! from before the load reach the tracker in order.

mod common;
mod tracker_support;

use serde_json::{json, Value};
use tracker_support::{assert_no_doubles, is_named, named, Lab};

/// Runs `body` (the inside of an async function, ending with `return …`) in the page and gives
/// what it returned, or `"error: …"` if it threw.
async fn run(lab: &Lab, body: &str) -> Value {
    let script = format!(
        "const done = arguments[arguments.length - 1];
         (async () => {{ {body} }})().then(done, (e) => done('error: ' + e));"
    );
    lab.browser
        .client
        .execute_async(&script, vec![])
        .await
        .unwrap_or_else(|e| panic!("{body}: {e}"))
}

/// A page of the demo site without the tracker, with the stub added loading `pkg` and the
/// site's config read.
async fn page_with_stub(lab: &Lab, pkg: &str) {
    // Any document of the site's origin will do: this one has no script of its own.
    let url = format!("{}/style.css", lab.site);
    lab.browser.client.goto(&url).await.unwrap();
    let added = run(
        lab,
        &format!(
            "const add = (src, pkg) => new Promise((ok, no) => {{
               const s = document.createElement('script');
               s.src = src;
               if (pkg) s.dataset.pkg = pkg;
               s.onload = ok;
               s.onerror = () => no(src);
               document.head.append(s);
             }});
             await add('/config.js');
             await add('/stub.js', '{pkg}');
             return 'added';"
        ),
    )
    .await;
    assert_eq!(added, json!("added"));
}

/// Settles `calls` (a JS array expression of promises) within 5 s: `"resolved"`, `"rejected"`
/// or `"pending"`.
fn settled(calls: &str) -> String {
    format!(
        "Promise.race([
           Promise.all({calls}).then(() => 'resolved', () => 'rejected'),
           new Promise((ok) => setTimeout(() => ok('pending'), 5000)),
         ])"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_tracker_blocked_calls_neither_throw_nor_hang() {
    let lab = Lab::start().await;
    page_with_stub(&lab, "/blocked-by-an-ad-blocker.js").await;
    let answer = run(
        &lab,
        &format!(
            "const rm = window.retailmind;
             const before = await {};
             const after = await {};
             return [before, after, window.retailmindReady === true];",
            settled(
                "[rm.init(window.RETAILMIND_CONFIG), rm.track('lost', {}), rm.productView({product_id: 'P1'})]"
            ),
            settled("[rm.page(), rm.flush()]"),
        ),
    )
    .await;
    assert_eq!(answer, json!(["resolved", "resolved", false]));
    assert!(lab.events().await.is_empty());
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_before_and_after_the_load_arrive_in_order_also_through_a_kept_reference() {
    let lab = Lab::start().await;
    page_with_stub(&lab, "/pkg/retailmind_sdk.js").await;
    let answer = run(
        &lab,
        &format!(
            "const rm = window.retailmind;
             rm.init({{ ...window.RETAILMIND_CONFIG, autocapture: {{ pageViews: false, clicks: false }} }});
             rm.track('stub_call', {{ n: 1 }});
             rm.identify('shopper-7');
             rm.track('stub_call', {{ n: 2 }});
             while (!window.retailmindReady) await new Promise((ok) => setTimeout(ok, 20));
             // The page's own reference is still the stub's object.
             const late = await {};
             // Only to hurry the sends: the events are awaited in the stream below.
             const flushed = await window.retailmind.flush().then(() => 'ok', (e) => String(e));
             return [rm === window.retailmind, late, flushed];",
            settled("[rm.track('stub_call', { n: 3 })]"),
        ),
    )
    .await;
    eprintln!("the stub's calls: {answer}");
    assert_eq!(
        (&answer[0], &answer[1]),
        (&json!(false), &json!("resolved")),
        "{answer}"
    );
    let events = lab
        .wait_events("the three calls", 3, |e| is_named(e, "stub_call"))
        .await;
    // Replayed in the order made: the identify queued between the first two calls marks the
    // second and the third, not the first. (The stream's order within one request is not the
    // order of recording, so it is not what this checks.)
    let mut calls: Vec<(i64, Option<String>)> = named(&events, "stub_call")
        .iter()
        .map(|e| match &e.payload {
            retailmind_schema::Payload::Custom(c) => {
                (c.props["n"].as_i64().unwrap(), e.user_id.clone())
            }
            other => panic!("{other:?}"),
        })
        .collect();
    calls.sort();
    let shopper = Some("shopper-7".to_owned());
    assert_eq!(calls, [(1, None), (2, shopper.clone()), (3, shopper)]);
    assert_no_doubles(&events);
    lab.stop().await;
}
