//! Segment-spec messages (<https://segment.com/docs/connections/spec/>) → RetailMind events, so
//! Segment's client libraries can send to the collector unchanged. Pure: no I/O, the clock comes in,
//! so the fuzz target reads Segment bodies with the collector's own code.
//!
//! Mapping, in short (details on each function):
//! - `page` → `page_view`; `track` with an e-commerce spec name → its shop kind (see
//!   [`ecommerce`]); any other `track` → `custom` with the properties as `props`.
//! - `identify` → `custom` named `identify` with the traits as props and `user_id` set (the schema
//!   has no identify kind yet); `screen`, `group`, `alias` → `custom` named after the type.
//! - `event_id` is `messageId` when that is a UUIDv7, else a UUIDv7 derived from the event time and
//!   a SHA-256 of `messageId`, so a retried message gets the same id and is dropped downstream.
//! - `anonymous_id` is `anonymousId`, else `userId`.
//! - Every problem names the Segment field (`properties.price`, `context.page.url`). Checks that
//!   depend on the configured limits (lengths, event age) are left to `validate`, which names our
//!   own fields.
//!
//! Not used: `sentAt` (no clock-skew correction: the time is `timestamp`, else
//! `originalTimestamp`, else the collector's clock), `context.ip` (server-side field), `integrations`,
//! `context.page.path`/`search` (the URL holds them), a page call's `name` (no slot in `page_view`).

mod ecommerce;
mod fields;
#[cfg(test)]
mod tests;

use retailmind_schema::validate::is_name_char;
use retailmind_schema::{Context, Custom, Event, Page, PageView, Payload, Screen, Utm, Violation};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use time::format_description::well_known::{Iso8601, Rfc3339};
use time::{OffsetDateTime, PrimitiveDateTime};
use uuid::{Builder, Uuid};

use fields::{get, Obj, Problems};

/// What is wrong with one field of a message, named by its Segment path
/// (`properties.products[2].price`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldProblem {
    pub field: String,
    pub reason: String,
}

impl FieldProblem {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        FieldProblem {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Track,
    Page,
    Identify,
    Screen,
    Group,
    Alias,
}

/// What a shop may set about the messages it sends.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// The currency of amounts in messages that name none (Segment's spec leaves `currency`
    /// optional), as an upper-case ISO 4217 code. Unset, such an amount is refused.
    pub default_currency: Option<String>,
}

/// Converts one Segment message into an event. `default_type` is the type the endpoint implies
/// (`/v1/track` → `track`); the message's own `type` wins. `now_ms` is the collector's clock, used
/// when the message carries no time. `batch_context` is a batch's top-level `context`, which
/// Segment merges into each message's: key by key, nested objects too, the message's value winning.
/// `options` are the shop's.
pub fn convert(
    raw: &RawValue,
    default_type: Option<&str>,
    now_ms: i64,
    batch_context: Option<&RawValue>,
    options: &Options,
) -> Result<Event, Vec<FieldProblem>> {
    let Ok(mut msg) = serde_json::from_str::<Obj<'_>>(raw.get()) else {
        return Err(vec![FieldProblem::new(
            "event",
            "must be a JSON object (one Segment message)",
        )]);
    };
    let merged;
    if let Some(shared) = batch_context {
        merged = merged_context(shared, msg.get("context").copied())
            .map_err(|reason| vec![FieldProblem::new("context", reason)])?;
        msg.insert("context".to_owned(), &merged);
    }
    let mut p = Problems {
        found: Vec::new(),
        default_currency: options.default_currency.clone(),
    };
    let kind = kind(&mut p, &msg, default_type);
    let sent_time = timestamp(&mut p, &msg);
    let timestamp = sent_time.unwrap_or(now_ms);
    let user_id = p.id(&msg, "userId", "userId");
    let anonymous_id = p
        .id(&msg, "anonymousId", "anonymousId")
        .or_else(|| user_id.clone());
    if anonymous_id.is_none() {
        p.fail("anonymousId", "is required (or userId)");
    }
    let message_id = p.id(&msg, "messageId", "messageId");
    let props = p
        .object(&msg, "properties", "properties")
        .unwrap_or_default();
    let context = context(&mut p, &msg, &props, kind == Some(Kind::Page));
    let payload = kind.map(|k| payload(&mut p, k, &msg, &props, user_id.as_deref()));

    match (anonymous_id, payload) {
        (Some(anonymous_id), Some(payload)) if p.found.is_empty() => Ok(Event {
            // A message with neither an id nor a time of its own cannot tell a resend from a
            // repeat (a heartbeat): its arrival time keeps repeats apart.
            event_id: event_id(
                message_id.as_deref(),
                sent_time.or_else(|| message_id.is_none().then_some(now_ms)),
                raw,
            ),
            anonymous_id,
            user_id,
            session_id: None,
            timestamp,
            received_at: None,
            context,
            payload,
        }),
        _ => Err(p.found),
    }
}

/// `own` laid over `shared` (both Segment `context` objects).
fn merged_context(shared: &RawValue, own: Option<&RawValue>) -> Result<Box<RawValue>, String> {
    let object = |raw: &RawValue, whose: &str| match serde_json::from_str::<Value>(raw.get()) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(format!("{whose} must be a JSON object")),
    };
    let mut base = object(shared, "the batch's context")?;
    if let Some(own) = own {
        lay_over(&mut base, object(own, "context")?);
    }
    serde_json::value::to_raw_value(&base).map_err(|e| e.to_string())
}

fn lay_over(base: &mut Map<String, Value>, top: Map<String, Value>) {
    for (key, value) in top {
        match (base.get_mut(&key), value) {
            (Some(Value::Object(below)), Value::Object(above)) => lay_over(below, above),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// The message's `type`, else the endpoint's. Case is ignored (`Track` is seen in hand-made
/// requests).
fn kind(p: &mut Problems, msg: &Obj<'_>, default_type: Option<&str>) -> Option<Kind> {
    let named = p.text(msg, "type", "type");
    let Some(name) = named.as_deref().or(default_type) else {
        p.fail(
            "type",
            "is required (track, page, identify, screen, group or alias)",
        );
        return None;
    };
    let kind = match name.to_ascii_lowercase().as_str() {
        "track" => Kind::Track,
        "page" => Kind::Page,
        "identify" => Kind::Identify,
        "screen" => Kind::Screen,
        "group" => Kind::Group,
        "alias" => Kind::Alias,
        _ => {
            p.fail(
                "type",
                format!(
                    "{name:?} is not a Segment type (track, page, identify, screen, group, alias)"
                ),
            );
            return None;
        }
    };
    Some(kind)
}

/// `timestamp`, else `originalTimestamp`, in ms. A present but unreadable one is refused, not
/// replaced by the clock: a wrong time would misplace the event in its session.
fn timestamp(p: &mut Problems, msg: &Obj<'_>) -> Option<i64> {
    let key = ["timestamp", "originalTimestamp"]
        .into_iter()
        .find(|k| get(msg, k).is_some())?;
    let text = p.text(msg, key, key)?;
    match parse_time(&text) {
        Some(ms) => Some(ms),
        None => {
            p.fail(
                key,
                format!("{text:?} is not an ISO-8601 date-time, e.g. 2024-05-01T12:00:00.000Z"),
            );
            None
        }
    }
}

/// RFC 3339 / ISO-8601 date-time → ms since the epoch. Without an offset the time is taken as UTC
/// (Segment's own reading of such timestamps).
fn parse_time(text: &str) -> Option<i64> {
    let at = OffsetDateTime::parse(text, &Rfc3339)
        .or_else(|_| OffsetDateTime::parse(text, &Iso8601::DEFAULT))
        .or_else(|_| PrimitiveDateTime::parse(text, &Iso8601::DEFAULT).map(|t| t.assume_utc()))
        .ok()?;
    i64::try_from(at.unix_timestamp_nanos().div_euclid(1_000_000)).ok()
}

/// `messageId` itself when it is a UUIDv7; otherwise a UUIDv7 whose time part is the message's
/// own time and whose other bits are the start of SHA-256(`messageId`), so the same message
/// sent twice (a library retry) gets the same id. Without a `messageId` the whole message text
/// is hashed instead: an identical resend still maps to the same id. The time part is
/// `time_ms`, 0 without one: a message with a `messageId` and no time of its own must not take
/// the collector's clock, which differs on every resend.
fn event_id(message_id: Option<&str>, time_ms: Option<i64>, raw: &RawValue) -> Uuid {
    if let Some(id) = message_id.and_then(|m| Uuid::parse_str(m).ok()) {
        if id.get_version_num() == 7 {
            return id;
        }
    }
    let digest = match message_id {
        Some(m) => Sha256::new().chain_update(b"messageId:").chain_update(m),
        None => Sha256::new()
            .chain_update(b"message:")
            .chain_update(raw.get()),
    }
    .finalize();
    let mut bits = [0u8; 10];
    bits.copy_from_slice(&digest[..10]);
    // Times before 1970 do not fit a UUIDv7; the id only needs to be stable, not meaningful.
    let ms = time_ms.and_then(|t| u64::try_from(t).ok()).unwrap_or(0);
    Builder::from_unix_timestamp_millis(ms, &bits).into_uuid()
}

/// The page of a message that names none: a server's or an app's (Segment's server and mobile
/// libraries send no `context.page`). Our events always name a page; this one says there was
/// none, and `.invalid` (RFC 2606) never resolves, so no report can take it for a shop's page.
pub const NO_PAGE_URL: &str = "https://no-page.invalid/";

/// Page, device and campaign from `context`. A page call's own `properties.url`, `referrer` and
/// `title` fill what `context.page` lacks (analytics.js sends both, server libraries often only
/// the properties).
fn context(p: &mut Problems, msg: &Obj<'_>, props: &Obj<'_>, is_page: bool) -> Context {
    let ctx = p.object(msg, "context", "context").unwrap_or_default();
    let page = p.object(&ctx, "page", "context.page").unwrap_or_default();
    let page_field = |p: &mut Problems, key: &str| {
        p.text(&page, key, &format!("context.page.{key}"))
            .or_else(|| {
                is_page
                    .then(|| p.text(props, key, &format!("properties.{key}")))
                    .flatten()
            })
    };
    let url = page_field(p, "url");
    let referrer = page_field(p, "referrer");
    let title = page_field(p, "title");
    let reported = p
        .found
        .iter()
        .any(|e| e.field == "context.page.url" || e.field == "properties.url");
    let url = match url {
        Some(url) => url,
        // A page view names its page; there is nothing to invent it from.
        None if is_page && !reported => {
            p.fail(
                "context.page.url",
                "is required on a page call: send the absolute page URL in context.page.url or properties.url",
            );
            String::new()
        }
        None if reported => String::new(),
        // Segment's server and mobile libraries send no page with track, identify or screen.
        None => NO_PAGE_URL.to_owned(),
    };
    Context {
        page: Page {
            url,
            referrer,
            title,
        },
        utm: campaign(p, &ctx),
        user_agent: p.text(&ctx, "userAgent", "context.userAgent"),
        screen: screen(p, &ctx),
        locale: p.text(&ctx, "locale", "context.locale"),
        timezone: p.text(&ctx, "timezone", "context.timezone"),
        // Server-side field: whatever the client sends is ignored (the collector sets it).
        ip: None,
        library: library(p, &ctx),
    }
}

fn campaign(p: &mut Problems, ctx: &Obj<'_>) -> Option<Utm> {
    let c = p.object(ctx, "campaign", "context.campaign")?;
    let utm = Utm {
        source: p.text(&c, "source", "context.campaign.source"),
        medium: p.text(&c, "medium", "context.campaign.medium"),
        campaign: p.text(&c, "name", "context.campaign.name"),
        term: p.text(&c, "term", "context.campaign.term"),
        content: p.text(&c, "content", "context.campaign.content"),
    };
    (utm != Utm::default()).then_some(utm)
}

/// The screen when both sides are given (analytics.js always sends both).
fn screen(p: &mut Problems, ctx: &Obj<'_>) -> Option<Screen> {
    let s = p.object(ctx, "screen", "context.screen")?;
    let width = p.count(&s, "width", "context.screen.width");
    let height = p.count(&s, "height", "context.screen.height");
    Some(Screen {
        width: width?,
        height: height?,
    })
}

/// `context.library` as `name/version`, the form our tracker uses.
fn library(p: &mut Problems, ctx: &Obj<'_>) -> Option<String> {
    let lib = p.object(ctx, "library", "context.library")?;
    let name = p.text(&lib, "name", "context.library.name")?;
    Some(match p.text(&lib, "version", "context.library.version") {
        Some(version) => format!("{name}/{version}"),
        None => name,
    })
}

fn payload(
    p: &mut Problems,
    kind: Kind,
    msg: &Obj<'_>,
    props: &Obj<'_>,
    user_id: Option<&str>,
) -> Payload {
    match kind {
        Kind::Page => {
            let category = p
                .text(msg, "category", "category")
                .or_else(|| p.text(props, "category", "properties.category"));
            Payload::PageView(PageView {
                category,
                ..PageView::default()
            })
        }
        Kind::Track => {
            let Some(event) = p.text(msg, "event", "event") else {
                p.fail("event", "is required for a track call (the event's name)");
                return custom("track", Map::new());
            };
            // Checked here too so the problem names Segment's `event` field rather than our
            // `properties.name`.
            if !event.chars().all(|c| is_name_char(c) && c != '\0') {
                p.fail("event", Violation::BadName.to_string());
            }
            ecommerce::track(p, &event, props, || plain_properties(msg))
        }
        Kind::Identify => custom("identify", p.props(msg, "traits", "traits")),
        Kind::Screen => {
            // The screen's name and category live beside the properties in Segment.
            let mut props = plain_properties(msg);
            for key in ["name", "category"] {
                if let Some(v) = p.text(msg, key, key) {
                    props.entry(key).or_insert(Value::String(v));
                }
            }
            custom("screen", props)
        }
        Kind::Group => {
            let mut props = p.props(msg, "traits", "traits");
            match p.id(msg, "groupId", "groupId") {
                Some(g) => {
                    props.insert("group_id".into(), Value::String(g));
                }
                None => p.fail("groupId", "is required for a group call"),
            }
            custom("group", props)
        }
        Kind::Alias => {
            let mut props = Map::new();
            match p.id(msg, "previousId", "previousId") {
                Some(prev) => {
                    props.insert("previous_id".into(), Value::String(prev));
                }
                None => p.fail("previousId", "is required for an alias call"),
            }
            if let Some(user) = user_id {
                props.insert("user_id".into(), Value::String(user.to_owned()));
            }
            custom("alias", props)
        }
    }
}

/// `properties` as plain JSON for a custom event's props. Parsed a second time, without
/// reporting: `convert` already reported a `properties` that is not an object.
fn plain_properties(msg: &Obj<'_>) -> Map<String, Value> {
    get(msg, "properties")
        .and_then(|r| serde_json::from_str::<Map<String, Value>>(r.get()).ok())
        .unwrap_or_default()
}

fn custom(name: &str, props: Map<String, Value>) -> Payload {
    Payload::Custom(Custom {
        name: name.to_owned(),
        props,
    })
}
