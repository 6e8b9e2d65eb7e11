//! The tracker in a real browser (Chromium, through wasm-pack test): events built from the real
//! window, identity in real localStorage, the queue in real IndexedDB, sends through the real
//! fetch.
//!
//! The tests share one page and so one tracker; each starts it with the config it needs.
#![cfg(target_arch = "wasm32")]

use js_sys::{Object, Reflect};
use retailmind_schema::{validate, Limits, Payload};
use retailmind_sdk::{api, autocapture, browser, storage, tracker, wire};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

/// Nothing listens there, and the port is not one Chromium blocks by itself.
const UNREACHABLE: &str = "http://127.0.0.1:65535";

fn set(obj: &Object, k: &str, v: JsValue) {
    Reflect::set(obj, &JsValue::from_str(k), &v).expect("set");
}

fn config(collector_url: &str) -> Object {
    let config = Object::new();
    set(&config, "collectorUrl", JsValue::from_str(collector_url));
    // Long enough that the timer never sends during a test; the tests send with flush().
    set(&config, "flushIntervalMs", JsValue::from_f64(600_000.0));
    let autocapture = Object::new();
    set(&autocapture, "pageViews", JsValue::FALSE);
    set(&autocapture, "clicks", JsValue::FALSE);
    set(&config, "autocapture", autocapture.into());
    config
}

fn init(config: Object) -> Result<(), wasm_bindgen::JsError> {
    api::init(JsValue::from(config).unchecked_into())
}

fn start(collector_url: &str) {
    ok(init(config(collector_url)));
}

fn ok(result: Result<(), wasm_bindgen::JsError>) {
    if let Err(e) = result {
        panic!("{}", message(e.into()));
    }
}

fn message(e: JsValue) -> String {
    e.dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| e.as_string())
        .unwrap_or_default()
}

fn refusal(result: Result<(), wasm_bindgen::JsError>) -> String {
    match result {
        Ok(()) => panic!("expected an error"),
        Err(e) => message(e.into()),
    }
}

/// The last event this page queued, as the collector will decode it.
fn last_event_json() -> String {
    tracker::with(|t| t.pending.last().map(|r| r.json.clone()))
        .expect("started")
        .expect("an event")
}

fn decode(json: &str) -> retailmind_schema::Event {
    serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}"))
}

#[wasm_bindgen_test]
fn page_builds_a_complete_valid_event_from_the_window() {
    start(UNREACHABLE);
    let before = api::queued();
    ok(api::page(Some("home".into())));
    assert_eq!(api::queued(), before + 1);

    let event = decode(&last_event_json());
    assert_eq!(event.event_id.get_version_num(), 7);
    assert!(
        matches!(&event.payload, Payload::PageView(p) if p.category.as_deref() == Some("home"))
    );
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
    assert!(ctx
        .user_agent
        .as_deref()
        .is_some_and(|ua| ua.contains("Chrome")));
    assert!(ctx.screen.is_some_and(|s| s.width > 0 && s.height > 0));
    assert!(ctx.locale.is_some());
    assert!(ctx.timezone.as_deref().is_some_and(|z| !z.is_empty()));
    assert_eq!(ctx.library.as_deref(), Some(browser::LIBRARY));
    // What the collector will check, with its default limits.
    assert_eq!(validate(&event, &Limits::default(), now), Ok(()));

    ok(api::track("wishlist_add", None));
    let next = decode(&last_event_json());
    assert_eq!(next.session_id, event.session_id, "the session carries on");

    // Page views count the session's pages, in storage, so a new start of the tracker (the
    // next page) goes on counting.
    let facts = |e: &retailmind_schema::Event| match &e.payload {
        Payload::PageView(p) => (p.session_page.expect("a page"), p.session_start),
        other => panic!("not a page view: {other:?}"),
    };
    let (first_page, began) = facts(&event);
    assert!(began.is_some_and(|s| s <= event.timestamp), "{began:?}");
    start(UNREACHABLE);
    ok(api::page(None));
    let later = decode(&last_event_json());
    assert_eq!(later.session_id, event.session_id);
    assert_eq!(facts(&later), (first_page + 1, began));
    assert_eq!(validate(&later, &Limits::default(), now), Ok(()));
}

#[wasm_bindgen_test]
fn a_browser_outside_the_sample_keeps_its_id_and_stays_out() {
    let storage = web_sys::window()
        .and_then(|w| w.local_storage().ok().flatten())
        .expect("localStorage");
    storage
        .remove_item(storage::ANONYMOUS_ID_KEY)
        .expect("remove");
    let out = || {
        let c = config(UNREACHABLE);
        set(&c, "sampleRate", JsValue::from_f64(0.0));
        ok(init(c));
    };
    out();
    let id = tracker::anonymous_id().expect("id");
    // Kept, or the next page would draw a new id and roll the sample again.
    assert_eq!(
        storage.get_item(storage::ANONYMOUS_ID_KEY).ok().flatten(),
        Some(id.clone())
    );
    let before = api::queued();
    ok(api::page(None));
    ok(api::track("wishlist_add", None));
    assert_eq!(
        api::queued(),
        before,
        "nothing is queued outside the sample"
    );
    out();
    assert_eq!(tracker::anonymous_id().expect("id"), id);
}

/// The page's address with `query` instead of its own, for one event.
fn event_at_query(query: &str) -> retailmind_schema::Event {
    let window = web_sys::window().expect("window");
    let history = window.history().expect("history");
    let before = window.location().href().expect("href");
    history
        .replace_state_with_url(&JsValue::NULL, "", Some(query))
        .expect("replaceState");
    let recorded = api::page(None);
    history
        .replace_state_with_url(&JsValue::NULL, "", Some(&before))
        .expect("replaceState back");
    ok(recorded);
    decode(&last_event_json())
}

#[wasm_bindgen_test]
fn campaign_parameters_are_read_as_the_browser_decodes_them() {
    start(UNREACHABLE);
    let utm = event_at_query(
        "?utm_source=&utm_source=caf%C3%A9+bar&utm_source=other&utm_medium=%FF\
         &utm_campaign=100%25%zz&x=1&utm_content=+%20",
    )
    .context
    .utm
    .expect("utm");
    assert_eq!(utm.source.as_deref(), Some("café bar"), "first non-blank");
    assert_eq!(utm.medium.as_deref(), Some("\u{fffd}"), "invalid UTF-8");
    assert_eq!(
        utm.campaign.as_deref(),
        Some("100%%zz"),
        "a bad escape stays"
    );
    assert_eq!((utm.term, utm.content), (None, None));
    let utm = event_at_query("??utm_term=shoes").context.utm;
    assert_eq!(utm.and_then(|u| u.term).as_deref(), Some("shoes"));
    assert_eq!(event_at_query("?utm_x=1&q=red").context.utm, None);
}

#[wasm_bindgen_test]
fn shop_objects_are_read_with_their_wire_names() {
    start(UNREACHABLE);
    let line = Object::new();
    set(&line, "product_id", "P1".into());
    set(&line, "price_minor", JsValue::from_f64(8990.0));
    set(&line, "currency", "EUR".into());
    set(&line, "quantity", JsValue::from_f64(2.0));
    ok(api::add_to_cart(
        JsValue::from(line.clone()).unchecked_into(),
    ));
    match decode(&last_event_json()).payload {
        Payload::AddToCart(l) => {
            assert_eq!((l.product.product_id.as_str(), l.quantity), ("P1", 2));
            assert_eq!(l.product.price_minor, Some(8990));
        }
        other => panic!("{other:?}"),
    }
    set(&line, "price_minor", JsValue::from_f64(89.9));
    let why = refusal(api::add_to_cart(JsValue::from(line).unchecked_into()));
    assert!(why.contains("price_minor"), "{why}");

    let props = js_sys::JSON::parse(r#"{"n":1,"tags":["a"],"deep":{"x":null}}"#).expect("json");
    ok(api::track("filter_used", Some(props.unchecked_into())));
    match decode(&last_event_json()).payload {
        Payload::Custom(c) => {
            assert_eq!(c.name, "filter_used");
            assert_eq!(c.props["tags"][0], "a");
        }
        other => panic!("{other:?}"),
    }
}

#[wasm_bindgen_test]
fn orders_read_their_cart_lines_in_order() {
    start(UNREACHABLE);
    let json = |text: &str| js_sys::JSON::parse(text).expect("json");
    ok(api::purchase(
        json(
            r#"{"order_id":"O1","revenue_minor":1000,"currency":"EUR","items":[
                {"product_id":"P1","quantity":2},{"product_id":"P2","name":"Cap","quantity":1}]}"#,
        )
        .unchecked_into(),
    ));
    match decode(&last_event_json()).payload {
        Payload::Purchase(p) => {
            let lines: Vec<(&str, u32)> = p
                .items
                .iter()
                .map(|l| (l.product.product_id.as_str(), l.quantity))
                .collect();
            assert_eq!(lines, [("P1", 2), ("P2", 1)]);
            assert_eq!(p.items[1].product.name.as_deref(), Some("Cap"));
        }
        other => panic!("{other:?}"),
    }
    ok(api::checkout_started(
        json(r#"{"value_minor":5,"currency":"EUR"}"#).unchecked_into(),
    ));
    assert!(matches!(
        decode(&last_event_json()).payload,
        Payload::CheckoutStarted(c) if c.items.is_empty() && c.cart_id.is_none()
    ));
    for (items, names) in [
        (r#""P1""#, "`items` must be an array"),
        (
            r#"[{"product_id":"P1","quantity":1},{"product_id":"P2"}]"#,
            "`quantity`",
        ),
        (
            r#"[{"product_id":"P1","quantity":-1}]"#,
            "must not be negative",
        ),
    ] {
        let order = json(&[r#"{"value_minor":5,"currency":"EUR","items":"#, items, "}"].concat());
        let why = refusal(api::checkout_started(order.unchecked_into()));
        assert!(
            why.starts_with("retailmind checkout") && why.contains(names),
            "{why}"
        );
    }
}

#[wasm_bindgen_test]
fn event_ids_made_in_one_millisecond_sort_in_the_order_they_were_made() {
    // Thousands in a few milliseconds: most share theirs with others.
    let ids: Vec<String> = (0..5000).map(|_| browser::new_event_id()).collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "ids sort as they were made"
    );
    for id in [&ids[0], &ids[4999]] {
        let parsed = uuid::Uuid::parse_str(id).expect("a UUID");
        assert_eq!(parsed.get_version_num(), 7);
    }
}

#[wasm_bindgen_test]
fn anonymous_id_persists_across_inits_and_reset_makes_a_new_one() {
    start(UNREACHABLE);
    let first = tracker::anonymous_id().expect("id");
    assert_eq!(
        uuid::Uuid::parse_str(&first).map(|u| u.get_version_num()),
        Ok(4)
    );
    start(UNREACHABLE);
    assert_eq!(tracker::anonymous_id().expect("id"), first);
    let stored = || {
        web_sys::window()
            .and_then(|w| w.local_storage().ok().flatten())
            .and_then(|s| s.get_item(storage::ANONYMOUS_ID_KEY).ok().flatten())
    };
    assert_eq!(stored().as_deref(), Some(first.as_str()));
    ok(api::reset());
    let second = tracker::anonymous_id().expect("id");
    assert_ne!(second, first);
    assert_eq!(stored(), Some(second));
}

#[wasm_bindgen_test]
fn bad_config_throws_naming_the_field() {
    let bad = config(UNREACHABLE);
    set(&bad, "batchSize", "lots".into());
    let message = refusal(init(bad));
    assert!(message.contains("batchSize"), "{message}");

    let message = refusal(init(Object::new()));
    assert!(message.contains("collectorUrl"), "{message}");

    let message = refusal(init(config("not a url")));
    assert!(message.contains("collectorUrl"), "{message}");
}

#[wasm_bindgen_test]
async fn unreachable_collector_keeps_events_queued() {
    start(UNREACHABLE);
    ok(api::page(None));
    ok(api::track("checkout_clicked", None));
    let queued = api::queued();
    assert!(queued >= 2);
    let result = JsFuture::from(api::flush()).await;
    let reason = message(result.expect_err("flush must fail"));
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
    let reason = message(result.expect_err("a refusal is reported"));
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
           <div data-rm-event="size_chosen" data-rm-prop-size="M" data-rm-prop-sku="P1">
             <span id="size-m">M</span></div>
           <p id="plain">Just text</p>"#,
    );
    document
        .body()
        .expect("body")
        .append_child(&root)
        .expect("attached");
    let target =
        |id: &str| -> web_sys::EventTarget { document.get_element_by_id(id).expect(id).into() };
    // The tracker writes the click's JSON itself; decoded the collector's way.
    let click_on = |id: &str| {
        autocapture::click_from_target(target(id)).map(|text| {
            serde_json::from_str::<retailmind_schema::Click>(&text)
                .unwrap_or_else(|e| panic!("{e}: {text}"))
        })
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

    let (name, props) = autocapture::tagged_event(&target("size-m")).expect("tagged");
    assert_eq!(name, "size_chosen");
    let props: serde_json::Value = serde_json::from_str(&props).expect("json");
    assert_eq!(props, serde_json::json!({"size": "M", "sku": "P1"}));
    assert_eq!(autocapture::tagged_event(&target("plain")), None);
    // The event the tag becomes is a valid custom event.
    let custom = wire::custom(&name, &serde_json::to_string(&props).expect("props"));
    assert!(custom.starts_with(r#"{"name":"size_chosen""#));
    root.remove();
}
