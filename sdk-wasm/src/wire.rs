//! What the tracker sends, as JSON text: events, their context and properties, and batches.
//!
//! The shapes are the schema crate's (`retailmind_schema::Event`, `Batch`, …): the tracker
//! fills those types and writes them here by hand instead of with serde, which would cost the
//! wasm build tens of kilobytes. The tests decode every writer's output with the schema's serde
//! and compare, so the two cannot drift apart.

use retailmind_schema::{CartLine, Checkout, Context, Product, Purchase, Search};

use crate::clicks::{MAX_CLASSES, MAX_TEXT_CHARS};
use crate::json::{push_int, push_str, Obj};

/// The envelope fields of one event; `context` and `properties` are JSON text.
pub struct Envelope<'a> {
    pub event_id: &'a str,
    pub anonymous_id: &'a str,
    pub user_id: Option<&'a str>,
    pub session_id: Option<&'a str>,
    pub timestamp: i64,
    pub context: &'a str,
    pub kind: &'a str,
    pub properties: &'a str,
}

pub fn event(e: &Envelope) -> String {
    let mut out = String::with_capacity(256 + e.context.len() + e.properties.len());
    Obj::new(&mut out)
        .str("event_id", e.event_id)
        .str("anonymous_id", e.anonymous_id)
        .opt_str("user_id", e.user_id)
        .opt_str("session_id", e.session_id)
        .int("timestamp", e.timestamp)
        .raw("context", e.context)
        .str("type", e.kind)
        .raw("properties", e.properties)
        .end();
    out
}

pub fn context(c: &Context) -> String {
    let mut out = String::with_capacity(512);
    let mut o = Obj::new(&mut out);
    let page = o.key("page");
    Obj::new(page)
        .str("url", &c.page.url)
        .opt_str("referrer", c.page.referrer.as_deref())
        .opt_str("title", c.page.title.as_deref())
        .end();
    if let Some(u) = &c.utm {
        Obj::new(o.key("utm"))
            .opt_str("source", u.source.as_deref())
            .opt_str("medium", u.medium.as_deref())
            .opt_str("campaign", u.campaign.as_deref())
            .opt_str("term", u.term.as_deref())
            .opt_str("content", u.content.as_deref())
            .end();
    }
    o.opt_str("user_agent", c.user_agent.as_deref());
    if let Some(s) = c.screen {
        Obj::new(o.key("screen"))
            .int("width", s.width.into())
            .int("height", s.height.into())
            .end();
    }
    o.opt_str("locale", c.locale.as_deref())
        .opt_str("timezone", c.timezone.as_deref())
        .opt_str("library", c.library.as_deref())
        .end();
    out
}

/// `{"category":…,"session_page":…,"session_start":…}` of a page view: which page of the
/// tracker's session it is, and when that session began.
pub fn page_view(category: Option<&str>, session_page: u32, session_start: i64) -> String {
    let mut out = String::new();
    Obj::new(&mut out)
        .opt_str("category", category)
        .int("session_page", session_page.into())
        .int("session_start", session_start)
        .end();
    out
}

/// The members of a click (`retailmind_schema::Click`), written straight from what the page
/// gave: `class_attr` is the element's `class` attribute, split here into class names. The id
/// and each class keep at most [`MAX_TEXT_CHARS`] characters, and at most [`MAX_CLASSES`]
/// classes are kept: the collector refuses a click past its text and list limits, and a page
/// built with utility classes can carry many.
pub fn click(
    element: &str,
    text: Option<&str>,
    id: Option<&str>,
    class_attr: &str,
    href: Option<&str>,
    outbound: bool,
) -> String {
    let short = |s: &'_ str| -> String {
        let end = crate::text::char_end(s, MAX_TEXT_CHARS).unwrap_or(s.len());
        s[..end].to_owned()
    };
    let mut out = String::new();
    let mut o = Obj::new(&mut out);
    o.str("element", element)
        .opt_str("text", text)
        .opt_str("id", id.map(short).as_deref());
    let mut classes = class_attr.split_whitespace().take(MAX_CLASSES).map(short);
    if let Some(first) = classes.next() {
        let list = o.key("classes");
        list.push('[');
        push_str(list, &first);
        for class in classes {
            list.push(',');
            push_str(list, &class);
        }
        list.push(']');
    }
    o.opt_str("href", href).bool("outbound", outbound).end();
    out
}

fn product_members(o: &mut Obj, p: &Product) {
    o.str("product_id", &p.product_id)
        .opt_str("name", p.name.as_deref())
        .opt_str("category", p.category.as_deref())
        .opt_int("price_minor", p.price_minor)
        .opt_str("currency", p.currency.as_deref());
}

pub fn product(p: &Product) -> String {
    let mut out = String::new();
    let mut o = Obj::new(&mut out);
    product_members(&mut o, p);
    o.end();
    out
}

pub fn cart_line(l: &CartLine) -> String {
    let mut out = String::new();
    write_line(&mut out, l);
    out
}

fn write_line(out: &mut String, l: &CartLine) {
    let mut o = Obj::new(out);
    product_members(&mut o, &l.product);
    o.int("quantity", l.quantity.into()).end();
}

fn write_lines(out: &mut String, lines: &[CartLine]) {
    out.push('[');
    for (i, l) in lines.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_line(out, l);
    }
    out.push(']');
}

pub fn checkout(c: &Checkout) -> String {
    let mut out = String::new();
    let mut o = Obj::new(&mut out);
    o.opt_str("cart_id", c.cart_id.as_deref())
        .int("value_minor", c.value_minor)
        .str("currency", &c.currency);
    write_lines(o.key("items"), &c.items);
    o.end();
    out
}

pub fn purchase(p: &Purchase) -> String {
    let mut out = String::new();
    let mut o = Obj::new(&mut out);
    o.str("order_id", &p.order_id)
        .int("revenue_minor", p.revenue_minor)
        .str("currency", &p.currency);
    write_lines(o.key("items"), &p.items);
    o.end();
    out
}

pub fn search(s: &Search) -> String {
    let mut out = String::new();
    Obj::new(&mut out)
        .str("query", &s.query)
        .opt_int("results", s.results.map(i64::from))
        .end();
    out
}

/// `{"name":…,"props":…}` of a custom event; `props` is a JSON object's text.
pub fn custom(name: &str, props: &str) -> String {
    let mut out = String::new();
    Obj::new(&mut out)
        .str("name", name)
        .raw("props", props)
        .end();
    out
}

/// The body of `POST /v1/batch`: the events' JSON texts joined into a `Batch`.
pub fn batch<'a>(
    batch_id: &str,
    sent_at: i64,
    events: impl IntoIterator<Item = &'a str>,
) -> String {
    let mut out = String::with_capacity(4096);
    out.push_str("{\"batch_id\":");
    push_str(&mut out, batch_id);
    out.push_str(",\"sent_at\":");
    push_int(&mut out, sent_at);
    out.push_str(",\"events\":[");
    for (i, e) in events.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(e);
    }
    out.push_str("]}");
    out
}

#[cfg(test)]
mod tests {
    use retailmind_schema::{Batch, Click, Event, Page, PageView, Payload, Screen, Utm};
    use uuid::Uuid;

    use super::*;

    fn full_context() -> Context {
        Context {
            page: Page {
                url: "https://shop.example/p?id=\"1\"".into(),
                referrer: Some("https://search.example/".into()),
                title: Some("Shoes — \\ best".into()),
            },
            utm: Some(Utm {
                source: Some("news".into()),
                medium: None,
                campaign: Some("spring sale".into()),
                term: None,
                content: Some("top".into()),
            }),
            user_agent: Some("Chrome".into()),
            screen: Some(Screen {
                width: 1280,
                height: 720,
            }),
            locale: Some("de-CH".into()),
            timezone: Some("Europe/Zurich".into()),
            ip: None,
            library: Some("retailmind-sdk-wasm/0.1.0".into()),
        }
    }

    fn line(id: &str, qty: u32) -> CartLine {
        CartLine {
            product: Product {
                product_id: id.into(),
                name: Some("Trail \"Runner\"".into()),
                category: None,
                price_minor: Some(8990),
                currency: Some("EUR".into()),
            },
            quantity: qty,
        }
    }

    /// Writes `payload` the tracker's way and decodes it the collector's way.
    fn round_trip(context: Context, payload: Payload) {
        let (kind, props) = match &payload {
            Payload::PageView(p) => (
                "page_view",
                page_view(
                    p.category.as_deref(),
                    p.session_page.unwrap_or(1),
                    p.session_start.unwrap_or(0),
                ),
            ),
            Payload::Click(c) => (
                "click",
                click(
                    &c.element,
                    c.text.as_deref(),
                    c.id.as_deref(),
                    &c.classes.join(" "),
                    c.href.as_deref(),
                    c.outbound,
                ),
            ),
            Payload::ProductView(p) => ("product_view", product(p)),
            Payload::AddToCart(l) => ("add_to_cart", cart_line(l)),
            Payload::RemoveFromCart(l) => ("remove_from_cart", cart_line(l)),
            Payload::CheckoutStarted(c) => ("checkout_started", checkout(c)),
            Payload::Purchase(p) => ("purchase", purchase(p)),
            Payload::Search(s) => ("search", search(s)),
            Payload::Custom(c) => (
                "custom",
                custom(&c.name, &serde_json::to_string(&c.props).expect("props")),
            ),
        };
        assert_eq!(kind, payload.kind());
        let expected = Event {
            event_id: Uuid::from_u128(7),
            anonymous_id: "anon \"1\"".into(),
            user_id: Some("u-1".into()),
            session_id: None,
            timestamp: 1_732_530_000_123,
            received_at: None,
            context,
            payload,
        };
        let id = expected.event_id.to_string();
        let ctx = super::context(&expected.context);
        let text = event(&Envelope {
            event_id: &id,
            anonymous_id: &expected.anonymous_id,
            user_id: expected.user_id.as_deref(),
            session_id: expected.session_id.as_deref(),
            timestamp: expected.timestamp,
            context: &ctx,
            kind,
            properties: &props,
        });
        let back: Event = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        assert_eq!(back, expected);
        // And the same text serde would write, member for member.
        let ours: serde_json::Value = serde_json::from_str(&text).expect("json");
        assert_eq!(ours, serde_json::to_value(&expected).expect("serde"));
    }

    #[test]
    fn every_payload_kind_decodes_to_the_schema_event() {
        let lines = vec![line("P1", 2), line("P2", 1)];
        for payload in [
            Payload::PageView(PageView {
                category: Some("cart".into()),
                session_page: Some(3),
                session_start: Some(1_732_529_000_000),
            }),
            Payload::PageView(PageView {
                category: None,
                session_page: Some(1),
                session_start: Some(1_732_530_000_000),
            }),
            Payload::Click(Click {
                element: "a".into(),
                text: Some("Buy".into()),
                id: Some("x".into()),
                classes: vec!["a".into(), "b".into()],
                href: Some("https://partner.example/".into()),
                outbound: true,
            }),
            Payload::Click(Click {
                element: "button".into(),
                ..Click::default()
            }),
            Payload::ProductView(line("P1", 1).product),
            Payload::AddToCart(line("P1", 3)),
            Payload::RemoveFromCart(line("P1", 1)),
            Payload::CheckoutStarted(Checkout {
                cart_id: Some("c1".into()),
                value_minor: 18_980,
                currency: "EUR".into(),
                items: lines.clone(),
            }),
            Payload::Purchase(Purchase {
                order_id: "O1".into(),
                revenue_minor: 18_980,
                currency: "EUR".into(),
                items: lines,
            }),
            Payload::Search(Search {
                query: "red shoes".into(),
                results: Some(4),
            }),
            Payload::Custom(retailmind_schema::Custom {
                name: "wishlist_add".into(),
                props: serde_json::from_str(r#"{"sku":"P1","n":2,"deep":{"a":[1,true,null]}}"#)
                    .expect("props"),
            }),
        ] {
            round_trip(full_context(), payload);
        }
        round_trip(
            Context::default(),
            Payload::PageView(PageView {
                session_page: Some(1),
                session_start: Some(0),
                ..PageView::default()
            }),
        );
    }

    #[test]
    fn click_classes_split_on_any_whitespace() {
        let classes = |attr| {
            let text = click("a", None, None, attr, None, false);
            serde_json::from_str::<Click>(&text).expect("click").classes
        };
        assert_eq!(
            classes(" btn  btn-primary\nbig "),
            ["btn", "btn-primary", "big"]
        );
        assert!(classes("").is_empty());
        assert!(classes(" \t").is_empty());
        // Within what the collector accepts, however the page is built.
        let many: String = (0..300).map(|i| format!("c{i} ")).collect();
        assert_eq!(classes(&many).len(), MAX_CLASSES);
        let long = "é".repeat(MAX_TEXT_CHARS + 10);
        assert_eq!(classes(&long)[0].chars().count(), MAX_TEXT_CHARS);
        let text = click("a", None, Some(&long), "", None, false);
        let id = serde_json::from_str::<Click>(&text).unwrap().id.unwrap();
        assert_eq!(id.chars().count(), MAX_TEXT_CHARS);
    }

    #[test]
    fn batch_body_decodes_to_the_schema_batch() {
        let events = [
            r#"{"event_id":"00000000-0000-0000-0000-000000000001","anonymous_id":"a","timestamp":1,"type":"page_view","properties":{}}"#,
            r#"{"event_id":"00000000-0000-0000-0000-000000000002","anonymous_id":"a","timestamp":2,"type":"search","properties":{"query":"x"}}"#,
        ];
        let id = Uuid::from_u128(9).to_string();
        let body = batch(&id, 5, events);
        let back: Batch = serde_json::from_str(&body).expect("batch");
        assert_eq!(back.batch_id, Uuid::from_u128(9));
        assert_eq!(back.sent_at, 5);
        assert_eq!(back.events.len(), 2);
        assert_eq!(back.events[1].payload.kind(), "search");
        let empty: Batch = serde_json::from_str(&batch(&id, 5, [])).expect("empty batch");
        assert!(empty.events.is_empty());
    }
}
