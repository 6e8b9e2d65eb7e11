//! Conversion of Segment messages: envelope, context, types and ids here; the e-commerce kinds
//! and money in `ecommerce`.

use retailmind_schema::{validate, Custom, Limits, PageView, Payload, Screen, Utm};
use serde_json::{json, Value};
use uuid::Uuid;

use super::*;

mod ecommerce;

/// 2024-05-01T12:00:00Z.
const T: i64 = 1_714_564_800_000;
const NOW: i64 = T + 60_000;
const URL: &str = "https://shop.example/p/42";

fn raw(v: &Value) -> Box<RawValue> {
    RawValue::from_string(v.to_string()).expect("valid JSON")
}

/// [`crate::convert`] with no shop options, as most tests want it.
fn convert(
    raw: &RawValue,
    default_type: Option<&str>,
    now_ms: i64,
    batch_context: Option<&RawValue>,
) -> Result<Event, Vec<FieldProblem>> {
    crate::convert(
        raw,
        default_type,
        now_ms,
        batch_context,
        &Options::default(),
    )
}

fn conv(v: Value) -> Result<Event, Vec<FieldProblem>> {
    convert(&raw(&v), None, NOW, None)
}

fn ok(v: Value) -> Event {
    let event = conv(v).expect("converts");
    // Every converted event must also pass our own validation.
    validate(&event, &Limits::default(), NOW).expect("valid event");
    event
}

fn fields(v: Value) -> Vec<String> {
    let mut fields: Vec<String> = conv(v)
        .expect_err("rejected")
        .into_iter()
        .map(|e| e.field)
        .collect();
    fields.sort();
    fields
}

fn reason(v: Value, field: &str) -> String {
    conv(v)
        .expect_err("rejected")
        .into_iter()
        .find(|e| e.field == field)
        .map(|e| e.reason)
        .unwrap_or_else(|| panic!("no problem at {field}"))
}

/// A track message with the common fields set; `props` are its properties.
fn track(event: &str, props: Value) -> Value {
    json!({
        "type": "track", "event": event, "messageId": "m-1", "anonymousId": "a-1",
        "timestamp": "2024-05-01T12:00:00.000Z", "context": {"page": {"url": URL}},
        "properties": props,
    })
}

#[test]
fn page_takes_context_from_context_or_properties() {
    let e = ok(json!({
        "type": "page", "name": "Mug", "category": "product", "anonymousId": "a-1", "messageId": "m",
        "timestamp": "2024-05-01T14:00:00+02:00",
        "properties": {"url": URL, "referrer": "https://search.example/", "title": "Mug – Shop"},
        "context": {
            "page": {"url": "", "referrer": ""},
            "userAgent": "Mozilla/5.0", "locale": "de-CH", "timezone": "Europe/Zurich",
            "screen": {"width": 1440, "height": 900, "density": 2},
            "campaign": {"source": "news", "medium": "email", "name": "spring", "term": "mug", "content": "a"},
            "library": {"name": "analytics.js", "version": "5.2.0"},
            "ip": "203.0.113.9",
        },
    }));
    assert_eq!(e.timestamp, T, "offset honoured");
    assert_eq!(
        e.payload,
        Payload::PageView(PageView {
            category: Some("product".into()),
            ..PageView::default()
        })
    );
    let c = &e.context;
    assert_eq!(c.page.url, URL);
    assert_eq!(c.page.referrer.as_deref(), Some("https://search.example/"));
    assert_eq!(c.page.title.as_deref(), Some("Mug – Shop"));
    assert_eq!(
        c.utm,
        Some(Utm {
            source: Some("news".into()),
            medium: Some("email".into()),
            campaign: Some("spring".into()),
            term: Some("mug".into()),
            content: Some("a".into()),
        })
    );
    assert_eq!(c.user_agent.as_deref(), Some("Mozilla/5.0"));
    assert_eq!(
        c.screen,
        Some(Screen {
            width: 1440,
            height: 900
        })
    );
    assert_eq!(
        (c.locale.as_deref(), c.timezone.as_deref()),
        (Some("de-CH"), Some("Europe/Zurich"))
    );
    assert_eq!(c.library.as_deref(), Some("analytics.js/5.2.0"));
    assert_eq!(c.ip, None, "never taken from the client");
}

#[test]
fn page_category_may_come_from_properties_and_url_is_required() {
    let e = ok(
        json!({"type": "page", "anonymousId": "a", "properties": {"url": URL, "category": "home"}}),
    );
    assert_eq!(
        e.payload,
        Payload::PageView(PageView {
            category: Some("home".into()),
            ..PageView::default()
        })
    );
    // A track call does not take its page from properties.url (that is the product's URL).
    let e =
        ok(json!({"type": "track", "event": "X", "anonymousId": "a", "properties": {"url": URL}}));
    assert_eq!(e.context.page.url, NO_PAGE_URL);
    // A page call must name its page.
    let err = reason(
        json!({"type": "page", "anonymousId": "a", "properties": {"title": "T"}}),
        "context.page.url",
    );
    assert!(err.contains("is required on a page call"), "{err}");
}

/// Segment's server libraries send track and identify without `context.page`, its mobile ones
/// every call: they are taken, on a page that says there was none.
#[test]
fn calls_from_servers_and_apps_without_a_page_are_taken() {
    for msg in [
        json!({"type": "identify", "userId": "u-7", "traits": {"plan": "gold"}}),
        json!({"type": "track", "event": "Subscription Renewed", "userId": "u-7"}),
        json!({"type": "screen", "name": "Basket", "anonymousId": "app-1",
               "context": {"app": {"name": "Shop", "version": "4.2"}}}),
    ] {
        let e = ok(msg);
        assert_eq!(e.context.page.url, NO_PAGE_URL);
        assert_eq!(e.context.page.referrer, None);
    }
}

#[test]
fn identify_is_a_custom_event_with_traits() {
    let e = ok(json!({
        "type": "identify", "userId": "u-7", "traits": {"email": "a@shop.example", "plan": "gold"},
        "context": {"page": {"url": URL}},
    }));
    assert_eq!(e.user_id.as_deref(), Some("u-7"));
    assert_eq!(
        e.anonymous_id, "u-7",
        "userId stands in for a missing anonymousId"
    );
    assert_eq!(
        e.payload,
        Payload::Custom(Custom {
            name: "identify".into(),
            props: json!({"email": "a@shop.example", "plan": "gold"})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        })
    );
}

#[test]
fn screen_group_alias_are_custom_events() {
    let base = |v: Value| {
        let mut m = json!({"anonymousId": "a", "userId": "u", "context": {"page": {"url": URL}}});
        if let (Some(m), Value::Object(extra)) = (m.as_object_mut(), v) {
            m.extend(extra);
        }
        m
    };
    let props = |e: Event| match e.payload {
        Payload::Custom(c) => (c.name, Value::Object(c.props)),
        other => panic!("{other:?}"),
    };
    let screen = ok(base(
        json!({"type": "screen", "name": "Home", "properties": {"tab": 2}}),
    ));
    assert_eq!(
        props(screen),
        ("screen".into(), json!({"tab": 2, "name": "Home"}))
    );
    let group = ok(base(
        json!({"type": "group", "groupId": 12, "traits": {"name": "ACME"}}),
    ));
    assert_eq!(
        props(group),
        ("group".into(), json!({"name": "ACME", "group_id": "12"}))
    );
    let alias = ok(base(json!({"type": "alias", "previousId": "a-old"})));
    assert_eq!(
        props(alias),
        (
            "alias".into(),
            json!({"previous_id": "a-old", "user_id": "u"})
        )
    );
    assert_eq!(fields(base(json!({"type": "group"}))), ["groupId"]);
    assert_eq!(fields(base(json!({"type": "alias"}))), ["previousId"]);
}

#[test]
fn the_endpoint_type_applies_only_when_the_message_has_none() {
    let msg = json!({"event": "X", "anonymousId": "a", "properties": {"url": URL}});
    let page = convert(&raw(&msg), Some("page"), NOW, None).expect("page");
    assert_eq!(page.payload.kind(), "page_view");
    let mut typed = msg.clone();
    typed["type"] = json!("page");
    typed["context"] = json!({"page": {"url": URL}});
    let e = convert(&raw(&typed), Some("track"), NOW, None).expect("page wins");
    assert_eq!(e.payload.kind(), "page_view");
    assert_eq!(fields(msg.clone()), ["type"]);
    let mut unknown = msg;
    unknown["type"] = json!("purchase");
    assert!(reason(unknown, "type").contains("not a Segment type"));
}

#[test]
fn event_ids_are_uuid_v7_and_stable_across_resends() {
    let msg = track("X", json!({}));
    let first = ok(msg.clone()).event_id;
    assert_eq!(first.get_version_num(), 7);
    assert_eq!(
        convert(&raw(&msg), None, NOW + 5_000, None)
            .expect("again")
            .event_id,
        first
    );
    // The time part is the event time.
    let (secs, _) = first.get_timestamp().expect("v7 time").to_unix();
    assert_eq!(secs as i64 * 1000, T);
    let mut other = msg.clone();
    other["messageId"] = json!("m-2");
    assert_ne!(ok(other).event_id, first);
    // A messageId that already is a UUIDv7 is kept.
    let v7 = Uuid::now_v7();
    let mut own = msg;
    own["messageId"] = json!(v7.to_string());
    assert_eq!(ok(own).event_id, v7);
}

#[test]
fn without_a_time_the_collector_clock_is_used() {
    let untimed = json!({"type": "track", "event": "X", "anonymousId": "a",
        "messageId": "m-untimed", "context": {"page": {"url": URL}}});
    let e = ok(untimed.clone());
    assert_eq!(e.timestamp, NOW);
    // A resend arrives later: same id, so the collector writes it once.
    let resent = convert(&raw(&untimed), None, NOW + 5_000, None).expect("again");
    assert_eq!(resent.timestamp, NOW + 5_000);
    assert_eq!(resent.event_id, e.event_id);
    // Without an id either, a resend and a repeat (a heartbeat) look alike: repeats are kept.
    let mut anonymous = untimed;
    anonymous.as_object_mut().unwrap().remove("messageId");
    let first = ok(anonymous.clone()).event_id;
    let later = convert(&raw(&anonymous), None, NOW + 60_000, None).expect("a minute on");
    assert_ne!(later.event_id, first);
    let orig = ok(json!({"type": "track", "event": "X", "anonymousId": "a",
        "originalTimestamp": "2024-05-01T12:00:00", "context": {"page": {"url": URL}}}));
    assert_eq!(orig.timestamp, T, "no offset: UTC");
}

#[test]
fn bad_common_fields_are_all_reported() {
    let errs = fields(json!({
        "type": "track", "event": "X", "timestamp": "yesterday", "messageId": {},
        "userId": true, "context": {"page": {"url": 5}, "screen": {"width": -1, "height": 2}, "campaign": []},
    }));
    assert_eq!(
        errs,
        [
            "anonymousId",
            "context.campaign",
            "context.page.url",
            "context.screen.width",
            "messageId",
            "timestamp",
            "userId",
        ]
    );
    assert!(reason(json!({"timestamp": 5}), "timestamp").contains("must be a string"));
    assert_eq!(
        convert(&raw(&json!([1])), Some("track"), NOW, None).expect_err("not an object")[0].field,
        "event"
    );
}

#[test]
fn a_batch_context_is_merged_into_each_message_whose_own_values_win() {
    let shared = raw(&json!({
        "page": {"url": URL, "title": "Shared title"},
        "locale": "de-CH",
        "userAgent": "shop-backend/1.0",
        "campaign": {"source": "newsletter", "medium": "email"},
    }));
    let own = json!({
        "type": "track", "event": "Wishlist Added", "messageId": "m-9", "anonymousId": "a-1",
        "timestamp": "2024-05-01T12:00:00.000Z",
        "context": {"page": {"title": "Mug"}, "campaign": {"medium": "sms"}},
    });
    let e = convert(&raw(&own), None, NOW, Some(&shared)).expect("converts");
    assert_eq!(e.context.page.url, URL, "from the batch");
    assert_eq!(
        e.context.page.title.as_deref(),
        Some("Mug"),
        "the message's own wins"
    );
    assert_eq!(e.context.locale.as_deref(), Some("de-CH"));
    let utm = e.context.utm.expect("campaign merged key by key");
    assert_eq!(
        (utm.source.as_deref(), utm.medium.as_deref()),
        (Some("newsletter"), Some("sms"))
    );
    // A message without a context of its own takes the batch's whole.
    let bare = json!({"type": "track", "event": "Ping", "messageId": "m-10", "anonymousId": "a-1"});
    let e = convert(&raw(&bare), None, NOW, Some(&shared)).expect("converts");
    assert_eq!(e.context.user_agent.as_deref(), Some("shop-backend/1.0"));

    let not_an_object = raw(&json!(["x"]));
    let err = convert(&raw(&bare), None, NOW, Some(&not_an_object)).expect_err("refused");
    assert_eq!(err[0].field, "context");
    assert_eq!(err[0].reason, "the batch's context must be a JSON object");
}
