//! The schema's rules, from the outside: valid events pass, and every refusal names the field
//! and the reason.

use proptest::prelude::*;
use retailmind_schema::{validate, Event, Limits};
use serde_json::json;

const NOW: i64 = 1_764_064_800_000; // 2025-11-25T10:00:00Z

fn valid() -> serde_json::Value {
    json!({
        "event_id": "01936a1c-3b5e-7cc4-9a1e-4f1b2c3d4e5f",
        "type": "add_to_cart",
        "anonymous_id": "anon-1",
        "timestamp": NOW - 1000,
        "context": {
            "page": {"url": "https://shop.example/p/42", "referrer": "https://search.example/?q=shoes"},
            "utm": {"source": "newsletter", "medium": "email"},
            "locale": "de-CH",
            "timezone": "Europe/Zurich"
        },
        "properties": {"product_id": "42", "price_minor": 1999, "currency": "EUR", "quantity": 2}
    })
}

fn decode(v: serde_json::Value) -> Event {
    serde_json::from_value(v).expect("decodes")
}

/// Validates `v` and returns the refusals as `field reason` strings.
fn refusals(v: serde_json::Value) -> Vec<String> {
    match validate(&decode(v), &Limits::default(), NOW) {
        Ok(()) => vec![],
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn a_complete_event_is_valid_and_round_trips() {
    let event = decode(valid());
    assert_eq!(validate(&event, &Limits::default(), NOW), Ok(()));
    let again: Event = serde_json::from_str(&serde_json::to_string(&event).unwrap()).unwrap();
    assert_eq!(again, event);
    assert_eq!(event.payload.kind(), "add_to_cart");
}

#[test]
fn every_kind_decodes() {
    for (kind, props) in [
        ("page_view", json!({})),
        (
            "click",
            json!({"element": "a", "href": "https://x.example/", "outbound": true}),
        ),
        ("product_view", json!({"product_id": "p1"})),
        (
            "remove_from_cart",
            json!({"product_id": "p1", "quantity": 1}),
        ),
        (
            "checkout_started",
            json!({"value_minor": 500, "currency": "USD", "items": []}),
        ),
        (
            "purchase",
            json!({"order_id": "o1", "revenue_minor": 500, "currency": "USD"}),
        ),
        ("search", json!({"query": "red shoes", "results": 3})),
        (
            "custom",
            json!({"name": "newsletter_signup", "props": {"list": "weekly"}}),
        ),
    ] {
        let mut v = valid();
        v["type"] = json!(kind);
        v["properties"] = props;
        assert_eq!(refusals(v), Vec::<String>::new(), "{kind}");
    }
}

#[test]
fn wrong_uuid_version_is_refused() {
    let mut v = valid();
    v["event_id"] = json!("6ba7b810-9dad-41d1-80b4-00c04fd430c8"); // version 4
    assert_eq!(
        refusals(v),
        ["event_id must be a UUID version 7, got version 4"]
    );
}

#[test]
fn several_problems_are_reported_together() {
    let mut v = valid();
    v["anonymous_id"] = json!("  ");
    v["context"]["page"]["url"] = json!("javascript:alert(1)");
    v["properties"]["quantity"] = json!(0);
    v["properties"]["currency"] = json!("eur");
    assert_eq!(
        refusals(v),
        [
            "anonymous_id must not be empty",
            "context.page.url must be an absolute http:// or https:// URL",
            "properties.currency must be a three-letter ISO 4217 code in capitals, e.g. EUR",
            "properties.quantity must be at least 1",
        ]
    );
}

#[test]
fn timestamps_far_from_now_are_refused() {
    let mut future = valid();
    future["timestamp"] = json!(NOW + 2 * 86_400_000);
    assert_eq!(
        refusals(future),
        ["timestamp is more than 86400 s ahead of the collector's clock"]
    );
    let mut old = valid();
    old["timestamp"] = json!(NOW - 31 * 86_400_000);
    assert_eq!(refusals(old), ["timestamp is more than 30 days old"]);
}

#[test]
fn money_and_lists_are_checked_inside_orders() {
    let mut v = valid();
    v["type"] = json!("purchase");
    v["properties"] = json!({
        "order_id": "o-1", "revenue_minor": -5, "currency": "CHF",
        "items": [{"product_id": "a", "quantity": 1}, {"product_id": "", "quantity": 1, "price_minor": -1}]
    });
    assert_eq!(
        refusals(v),
        [
            "properties.revenue_minor must not be negative",
            "properties.items[1].product_id must not be empty",
            "properties.items[1].price_minor must not be negative",
        ]
    );
}

/// JSON may carry U+0000, PostgreSQL text cannot: an id holding one would make the customer
/// profile write fail on every retry of its batch, holding its shard back for good.
#[test]
fn nul_characters_are_refused_in_text_fields() {
    let mut v = valid();
    v["user_id"] = json!("customer\u{0}1");
    v["context"]["utm"]["source"] = json!("news\u{0}letter");
    v["context"]["page"]["url"] = json!("https://shop.example/\u{0}");
    assert_eq!(
        refusals(v),
        [
            "user_id must not contain the NUL character (U+0000)",
            "context.page.url must be an absolute http:// or https:// URL",
            "context.utm.source must not contain the NUL character (U+0000)",
        ]
    );
}

#[test]
fn a_page_views_session_facts_must_be_possible() {
    let mut v = valid();
    v["type"] = json!("page_view");
    let at = v["timestamp"].as_i64().expect("a timestamp");
    v["properties"] = json!({"session_page": 3, "session_start": at});
    assert_eq!(refusals(v.clone()), Vec::<String>::new());
    v["properties"] = json!({"session_page": 0, "session_start": at + 1});
    assert_eq!(
        refusals(v),
        [
            "properties.session_page must be at least 1",
            "properties.session_start must not be later than the event's timestamp",
        ]
    );
}

#[test]
fn custom_event_names_are_free_text_on_one_line() {
    let named = |name: &str| {
        let mut v = valid();
        v["type"] = json!("custom");
        v["properties"] = json!({ "name": name });
        refusals(v)
    };
    for name in [
        "Signed Up!",
        "Checkout → Payment (step 2)",
        "Öffnungszeiten/Filiale #3",
    ] {
        assert!(named(name).is_empty(), "{name}: {:?}", named(name));
    }
    for name in [
        "Signed\nUp",
        "tab\there",
        "esc\u{1b}[31m",
        "line\u{2028}separator",
        "\u{202e}desrever",
    ] {
        assert_eq!(
            named(name),
            [
                "properties.name must be one line read as written: no control characters (line \
                 breaks, tabs, escapes), line separators or bidirectional overrides"
            ],
            "{name:?}"
        );
    }
}

#[test]
fn long_strings_and_deep_custom_props_are_refused() {
    let mut v = valid();
    v["type"] = json!("custom");
    v["properties"] = json!({"name": "x".repeat(129), "props": {"deep": [[[[[[1]]]]]]}});
    assert_eq!(
        refusals(v),
        [
            "properties.name is 129 characters long, at most 128 allowed",
            "properties.props.deep nests deeper than 5 levels",
        ]
    );
    // A click's free texts may be empty, not endless; nor may the sending library's name.
    let mut v = valid();
    v["type"] = json!("click");
    v["properties"] = json!({"element": "button", "id": "", "text": "",
        "classes": ["", "y".repeat(1025)]});
    v["context"]["library"] = json!("l".repeat(1025));
    assert_eq!(
        refusals(v),
        [
            "context.library is 1025 characters long, at most 1024 allowed",
            "properties.classes[1] is 1025 characters long, at most 1024 allowed",
        ]
    );
}

#[test]
fn unknown_kind_and_wrong_types_fail_to_decode() {
    let mut v = valid();
    v["type"] = json!("teleport");
    let err = serde_json::from_value::<Event>(v).unwrap_err().to_string();
    assert!(err.contains("unknown variant `teleport`"), "{err}");

    let mut v = valid();
    v["properties"]["quantity"] = json!("two");
    assert!(serde_json::from_value::<Event>(v).is_err());
}

proptest! {
    /// Any anonymous id, URL and timestamp either validates or gets named refusals; the
    /// validator never panics and an accepted event survives a JSON round trip unchanged.
    #[test]
    fn validation_is_total_and_accepted_events_round_trip(
        anon in ".{0,200}",
        url in "(https?://)?[a-z.]{0,20}(/[a-z0-9]{0,10})?",
        skew in -40i64 * 86_400_000..3 * 86_400_000,
    ) {
        let mut v = valid();
        v["anonymous_id"] = json!(anon);
        v["context"]["page"]["url"] = json!(url);
        v["timestamp"] = json!(NOW + skew);
        let event = decode(v);
        match validate(&event, &Limits::default(), NOW) {
            Ok(()) => {
                let again: Event = serde_json::from_slice(&serde_json::to_vec(&event).unwrap()).unwrap();
                prop_assert_eq!(again, event);
            }
            Err(errors) => prop_assert!(errors.iter().all(|e| !e.field.is_empty())),
        }
    }
}

#[test]
fn numbers_in_custom_props_survive_a_write_and_a_read_exactly() {
    // Found by the batch_decode fuzz target: without serde_json's float_roundtrip, an
    // integer too big for 64 bits (read as a float) came back as a different number.
    let mut v = valid();
    v["type"] = json!("custom");
    v["properties"] = serde_json::from_str(
        r#"{"name": "signup", "props": {"big": 180446794070473551615, "tiny": 1.0500000000000001e301}}"#,
    )
    .unwrap();
    let text = v.to_string();
    let event: Event = serde_json::from_str(&text).unwrap();
    let again: Event = serde_json::from_slice(&serde_json::to_vec(&event).unwrap()).unwrap();
    assert_eq!(again, event);
}

#[test]
fn unknown_fields_are_named_by_their_path_and_known_ones_are_not() {
    use retailmind_schema::wire::{decode_event, unknown_fields};
    let text = serde_json::json!({
        "event_id": "01936a1c-3b5e-7cc4-9a1e-4f1b2c3d4e5f", "type": "purchase",
        "anonymous_id": "a-1", "timestamp": 1_764_064_800_000_i64, "user_id": null,
        "colour": "red",
        "context": {"page": {"url": "https://shop.example/", "titel": "typo"}, "locale": "de-CH"},
        "properties": {"order_id": "o-1", "revenue_minor": 1999, "currency": "EUR",
            "items": [{"product_id": "p1", "quantity": 1},
                      {"product_id": "p2", "quantity": 1, "gift": true}]}
    })
    .to_string();
    let raw = serde_json::value::RawValue::from_string(text).unwrap();
    let event = decode_event(&raw).expect("decodes: unknown fields are ignored");
    assert_eq!(
        unknown_fields(raw.get(), &event).unwrap(),
        ["colour", "context.page.titel", "properties.items[1].gift"]
    );

    // Decoding skips an unknown value unread, however deep; looking for unknown fields reads
    // it, and says so when it cannot, rather than finding nothing.
    let deep = format!(
        r#"{{"event_id":"01936a1c-3b5e-7cc4-9a1e-4f1b2c3d4e61","type":"page_view",
        "anonymous_id":"a-1","timestamp":1764064800000,
        "context":{{"page":{{"url":"https://shop.example/"}}}},"properties":{{}},
        "zz":{}1{}}}"#,
        "[".repeat(200),
        "]".repeat(200)
    );
    let raw = serde_json::value::RawValue::from_string(deep).unwrap();
    let event = decode_event(&raw).expect("decodes");
    let refused = unknown_fields(raw.get(), &event).unwrap_err();
    assert_eq!(refused.field, "event");
    assert!(
        refused.reason.contains("recursion limit"),
        "{}",
        refused.reason
    );

    // A custom event's properties are free-form: nothing there is unknown.
    let text = serde_json::json!({
        "event_id": "01936a1c-3b5e-7cc4-9a1e-4f1b2c3d4e60", "type": "custom",
        "anonymous_id": "a-1", "timestamp": 1_764_064_800_000_i64,
        "context": {"page": {"url": "https://shop.example/"}},
        "properties": {"name": "x", "props": {"anything": {"deep": [1, 2]}}}
    })
    .to_string();
    let raw = serde_json::value::RawValue::from_string(text).unwrap();
    let event = decode_event(&raw).expect("decodes");
    assert!(unknown_fields(raw.get(), &event).unwrap().is_empty());
}

#[test]
fn decoding_failures_name_their_field_inside_and_outside_properties() {
    use retailmind_schema::wire::decode_event;
    let decode = |v: serde_json::Value| {
        let raw = serde_json::value::RawValue::from_string(v.to_string()).unwrap();
        decode_event(&raw).expect_err("refused")
    };
    let base = || {
        serde_json::json!({
            "event_id": "01936a1c-3b5e-7cc4-9a1e-4f1b2c3d4e5f", "type": "add_to_cart",
            "anonymous_id": "a-1", "timestamp": 1_764_064_800_000_i64,
            "context": {"page": {"url": "https://shop.example/"}},
            "properties": {"product_id": "p1", "quantity": 2}
        })
    };
    let mut v = base();
    v["properties"]["quantity"] = serde_json::json!("two");
    let e = decode(v);
    assert_eq!(e.field, "properties.quantity");
    assert!(e.reason.contains("invalid type"), "{}", e.reason);

    let mut v = base();
    v["properties"] = serde_json::json!({"quantity": 2});
    assert_eq!(decode(v).field, "properties");

    let mut v = base();
    v["type"] = serde_json::json!("teleport");
    let e = decode(v);
    assert_eq!(e.field, "type");
    assert!(e.reason.contains("unknown variant"), "{}", e.reason);

    let mut v = base();
    v["context"]["page"]["url"] = serde_json::json!(7);
    assert_eq!(decode(v).field, "context.page.url");

    let mut v = base();
    v.as_object_mut().unwrap().remove("properties");
    let e = decode(v);
    assert_eq!(
        (e.field.as_str(), e.reason.contains("properties")),
        ("event", true)
    );

    // Field order does not matter: the kind may come after its properties.
    let text = r#"{"properties":{"product_id":"p1","quantity":1},"anonymous_id":"a-1",
        "timestamp":1764064800000,"context":{"page":{"url":"https://shop.example/"}},
        "event_id":"01936a1c-3b5e-7cc4-9a1e-4f1b2c3d4e5f","type":"add_to_cart"}"#;
    let raw = serde_json::value::RawValue::from_string(text.to_owned()).unwrap();
    assert_eq!(decode_event(&raw).unwrap().payload.kind(), "add_to_cart");
}
