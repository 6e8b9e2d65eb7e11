//! The tracker in a real browser (Chromium, through wasm-pack test): events built from the real
//! window, identity kept in real localStorage, sends through the real fetch.
//!
//! The tests share one page and so one tracker; each starts it with the config it needs.
#![cfg(target_arch = "wasm32")]

use js_sys::{Object, Reflect};
use retailmind_schema::{validate, Limits, PageView, Payload};
use retailmind_sdk::{api, autocapture, browser, storage, tracker, transport};
use wasm_bindgen::JsValue;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

/// Nothing listens there, and the port is not one Chromium blocks by itself.
const UNREACHABLE: &str = "http://127.0.0.1:65535";

fn config(collector_url: &str) -> JsValue {
    let config = Object::new();
    let set = |k: &str, v: JsValue| {
        Reflect::set(&config, &JsValue::from_str(k), &v).expect("set");
    };
    set("collectorUrl", JsValue::from_str(collector_url));
    // Long enough that the timer never sends during a test; the tests send with flush().
    set("flushIntervalMs", JsValue::from_f64(600_000.0));
    let autocapture = Object::new();
    Reflect::set(
        &autocapture,
        &JsValue::from_str("pageViews"),
        &JsValue::FALSE,
    )
    .expect("set");
    Reflect::set(&autocapture, &JsValue::from_str("clicks"), &JsValue::FALSE).expect("set");
    set("autocapture", autocapture.into());
    config.into()
}

fn start(collector_url: &str) {
    ok(api::init(config(collector_url)));
}

fn ok(result: Result<(), wasm_bindgen::JsError>) {
    if let Err(e) = result {
        panic!("{}", transport::describe(&e.into()));
    }
}

fn refusal(result: Result<(), wasm_bindgen::JsError>) -> String {
    match result {
        Ok(()) => panic!("expected an error"),
        Err(e) => transport::describe(&e.into()),
    }
}

fn error_message(e: JsValue) -> String {
    transport::describe(&e)
}

#[wasm_bindgen_test]
fn page_builds_a_complete_valid_event_from_the_window() {
    start(UNREACHABLE);
    let before = api::queued();
    ok(api::page(Some("home".into())));
    assert_eq!(api::queued(), before + 1);

    let event = tracker::build_event(Payload::PageView(PageView {
        category: Some("home".into()),
    }))
    .expect("event");
    assert_eq!(event.event_id.get_version_num(), 7);
    let now = browser::now_ms();
    assert!(
        (now - event.timestamp).abs() < 5_000,
        "timestamp is Date.now()"
    );
    assert_eq!(event.anonymous_id, tracker::anonymous_id().expect("id"));
    assert!(event.session_id.as_deref().is_some_and(|s| !s.is_empty()));
    let ctx = &event.context;
    let window = web_sys::window().expect("window");
    assert_eq!(ctx.page.url, window.location().href().expect("href"));
    assert!(ctx.page.url.starts_with("http://"));
    assert!(ctx
        .user_agent
        .as_deref()
        .is_some_and(|ua| ua.contains("Chrome")));
    assert!(ctx.screen.is_some_and(|s| s.width > 0 && s.height > 0));
    assert!(ctx.locale.is_some());
    assert!(ctx.timezone.as_deref().is_some_and(|z| !z.is_empty()));
    assert_eq!(ctx.library.as_deref(), Some(browser::LIBRARY));
    assert!(browser::LIBRARY.starts_with("retailmind-sdk-wasm/"));
    // What the collector will check, with its default limits.
    assert_eq!(validate(&event, &Limits::default(), now), Ok(()));

    // The session carries on from one event to the next.
    let next = tracker::build_event(Payload::PageView(PageView::default())).expect("event");
    assert_eq!(next.session_id, event.session_id);
    assert!(next.event_id > event.event_id || next.timestamp == event.timestamp);
}

#[wasm_bindgen_test]
fn batch_json_is_what_the_schema_reads_back() {
    start(UNREACHABLE);
    let event = tracker::build_event(Payload::PageView(PageView::default())).expect("event");
    let batch = retailmind_schema::Batch {
        batch_id: browser::new_event_id(),
        sent_at: browser::now_ms(),
        events: vec![event],
    };
    let body = transport::to_json(&batch).expect("json");
    assert!(body.contains(r#""type":"page_view""#), "{body}");
    let parsed = js_sys::JSON::parse(&body).expect("parses");
    let events = Reflect::get(&parsed, &JsValue::from_str("events")).expect("events");
    let first = Reflect::get(&events, &JsValue::from_f64(0.0)).expect("first");
    let ts = Reflect::get(&first, &JsValue::from_str("timestamp")).expect("timestamp");
    assert_eq!(
        ts.as_f64(),
        Some(batch.events[0].timestamp as f64),
        "a plain number"
    );
    let back: retailmind_schema::Batch = serde_wasm_bindgen::from_value(parsed).expect("decodes");
    assert_eq!(back, batch);
}

#[wasm_bindgen_test]
fn anonymous_id_persists_across_inits_in_local_storage() {
    start(UNREACHABLE);
    let first = tracker::anonymous_id().expect("id");
    assert_eq!(
        uuid::Uuid::parse_str(&first).map(|u| u.get_version_num()),
        Ok(4)
    );
    start(UNREACHABLE);
    assert_eq!(tracker::anonymous_id().expect("id"), first);
    let stored = web_sys::window()
        .and_then(|w| w.local_storage().ok().flatten())
        .and_then(|s| s.get_item(storage::ANONYMOUS_ID_KEY).ok().flatten());
    assert_eq!(stored.as_deref(), Some(first.as_str()));
}

#[wasm_bindgen_test]
fn bad_config_throws_naming_the_field() {
    let bad = config(UNREACHABLE);
    Reflect::set(
        &bad,
        &JsValue::from_str("batchSize"),
        &JsValue::from_str("lots"),
    )
    .expect("set");
    let message = refusal(api::init(bad));
    assert!(message.contains("batchSize"), "{message}");

    let missing = Object::new();
    let message = refusal(api::init(missing.into()));
    assert!(message.contains("collectorUrl"), "{message}");

    let bad = config("not a url");
    let message = refusal(api::init(bad));
    assert!(message.contains("collectorUrl"), "{message}");
}

#[wasm_bindgen_test]
async fn unreachable_collector_keeps_events_queued() {
    start(UNREACHABLE);
    ok(api::page(None));
    ok(api::track("checkout_clicked".into(), JsValue::UNDEFINED));
    let queued = api::queued();
    assert!(queued >= 2);
    let result = JsFuture::from(api::flush()).await;
    let reason = error_message(result.expect_err("flush must fail"));
    assert!(reason.contains("stay queued"), "{reason}");
    assert_eq!(api::queued(), queued, "nothing leaves without a 2xx");
}

#[wasm_bindgen_test]
async fn refused_batch_is_dropped() {
    // The test page's own server has no /v1/batch: it answers 4xx, as a collector does for a
    // malformed batch.
    let origin = web_sys::window()
        .and_then(|w| w.location().origin().ok())
        .expect("origin");
    start(&origin);
    ok(api::page(None));
    let result = JsFuture::from(api::flush()).await;
    let reason = error_message(result.expect_err("a refusal is reported"));
    assert!(reason.contains("refused"), "{reason}");
    assert_eq!(api::queued(), 0);
}

#[wasm_bindgen_test]
fn clicks_are_read_from_the_closest_link_or_button() {
    let document = web_sys::window()
        .and_then(|w| w.document())
        .expect("document");
    let root = document.create_element("div").expect("div");
    root.set_inner_html(
        r#"<a id="out" class="promo big" href="https://partner.example/deal">
             <span id="out-label">  Partner   deal </span></a>
           <a id="local" href="/cart.html">Cart</a>
           <button id="buy"><b id="buy-icon">+</b> Add to cart</button>
           <div role="button" id="fake">Fake</div>
           <form><input type="submit" id="send" value="Send"></form>
           <section data-rm-ignore><button id="secret">Hidden</button></section>
           <p id="plain">Just text</p>"#,
    );
    document
        .body()
        .expect("body")
        .append_child(&root)
        .expect("attached");
    let click_on = |id: &str| {
        let target = document.get_element_by_id(id).expect(id);
        autocapture::click_from_target(target.into())
    };

    let out = click_on("out-label").expect("link inside");
    assert_eq!(out.element, "a");
    assert_eq!(out.id.as_deref(), Some("out"));
    assert_eq!(out.text.as_deref(), Some("Partner deal"));
    assert_eq!(out.classes, ["promo", "big"]);
    assert_eq!(out.href.as_deref(), Some("https://partner.example/deal"));
    assert!(out.outbound);

    let local = click_on("local").expect("link");
    assert!(!local.outbound);
    assert!(
        local
            .href
            .as_deref()
            .is_some_and(|h| h.ends_with("/cart.html")),
        "resolved"
    );

    let buy = click_on("buy-icon").expect("button");
    assert_eq!(
        (buy.element.as_str(), buy.text.as_deref()),
        ("button", Some("+ Add to cart"))
    );
    assert_eq!(buy.href, None);
    assert_eq!(click_on("fake").map(|c| c.element), Some("div".to_owned()));
    assert_eq!(
        click_on("send").and_then(|c| c.text),
        Some("Send".to_owned())
    );
    assert_eq!(click_on("secret"), None, "data-rm-ignore");
    assert_eq!(click_on("plain"), None, "not clickable");
    root.remove();
}
