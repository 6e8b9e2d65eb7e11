//! Validation rules for a decoded event. Pure: the current time comes in as an argument.
//!
//! Every problem is reported with the dotted path of the field and why it was refused, and all
//! problems of an event are reported at once, so a sender can fix them in one go.

use std::fmt;

use serde::{Serialize, Serializer};

use crate::event::{CartLine, Event, Payload, Product};

/// Bounds that an event must stay within. The collector reads them from its configuration.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_id_len: usize,
    pub max_url_len: usize,
    pub max_text_len: usize,
    pub max_items: usize,
    pub max_props_depth: usize,
    /// How far ahead of the collector's clock an event timestamp may be (client clocks drift).
    pub max_future_skew_ms: i64,
    /// How old an event may be when it arrives (queued events from a device that was offline).
    pub max_age_ms: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_id_len: 128,
            max_url_len: 4096,
            max_text_len: 1024,
            max_items: 200,
            max_props_depth: 5,
            max_future_skew_ms: 24 * 3600 * 1000,
            max_age_ms: 30 * 24 * 3600 * 1000,
        }
    }
}

/// Why a field was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Violation {
    Empty,
    TooLong {
        max: usize,
        len: usize,
    },
    NotUuidV7 {
        version: usize,
    },
    NotHttpUrl,
    NotCurrencyCode,
    Negative,
    ZeroQuantity,
    TooManyItems {
        max: usize,
        len: usize,
    },
    TooDeep {
        max: usize,
    },
    InFuture {
        max_skew_ms: i64,
    },
    TooOld {
        max_age_ms: i64,
    },
    BadName,
    /// U+0000: valid JSON, but no PostgreSQL text or jsonb value can hold it, so a profile
    /// write would fail on it for ever.
    NulCharacter,
    /// A time that must come before the event's own `timestamp` (same clock) comes after it.
    AfterTimestamp,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::Empty => write!(f, "must not be empty"),
            Violation::TooLong { max, len } => {
                write!(f, "is {len} characters long, at most {max} allowed")
            }
            Violation::NotUuidV7 { version } => {
                write!(f, "must be a UUID version 7, got version {version}")
            }
            Violation::NotHttpUrl => write!(f, "must be an absolute http:// or https:// URL"),
            Violation::NotCurrencyCode => {
                write!(
                    f,
                    "must be a three-letter ISO 4217 code in capitals, e.g. EUR"
                )
            }
            Violation::Negative => write!(f, "must not be negative"),
            Violation::ZeroQuantity => write!(f, "must be at least 1"),
            Violation::TooManyItems { max, len } => {
                write!(f, "has {len} entries, at most {max} allowed")
            }
            Violation::TooDeep { max } => write!(f, "nests deeper than {max} levels"),
            Violation::InFuture { max_skew_ms } => write!(
                f,
                "is more than {} s ahead of the collector's clock",
                max_skew_ms / 1000
            ),
            Violation::TooOld { max_age_ms } => {
                write!(f, "is more than {} days old", max_age_ms / 86_400_000)
            }
            Violation::NulCharacter => write!(f, "must not contain the NUL character (U+0000)"),
            Violation::AfterTimestamp => write!(f, "must not be later than the event's timestamp"),
            Violation::BadName => write!(
                f,
                "must be one line read as written: no control characters (line breaks, tabs, \
                 escapes), line separators or bidirectional overrides"
            ),
        }
    }
}

/// A refused field: its dotted path (`properties.items[2].quantity`) and the reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub violation: Violation,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.field, self.violation)
    }
}

impl std::error::Error for FieldError {}

impl Serialize for FieldError {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("FieldError", 2)?;
        st.serialize_field("field", &self.field)?;
        st.serialize_field("reason", &self.violation.to_string())?;
        st.end()
    }
}

/// Collects violations while walking an event.
struct Checker<'a> {
    limits: &'a Limits,
    errors: Vec<FieldError>,
}

impl Checker<'_> {
    fn fail(&mut self, field: impl Into<String>, violation: Violation) {
        self.errors.push(FieldError {
            field: field.into(),
            violation,
        });
    }

    fn text(&mut self, field: &str, value: &str, max: usize) {
        if value.trim().is_empty() {
            self.fail(field, Violation::Empty);
        } else {
            let len = value.chars().count();
            if len > max {
                self.fail(field, Violation::TooLong { max, len });
            } else {
                self.no_nul(field, value);
            }
        }
    }

    fn no_nul(&mut self, field: &str, value: &str) {
        if value.contains('\0') {
            self.fail(field, Violation::NulCharacter);
        }
    }

    fn opt_text(&mut self, field: &str, value: &Option<String>, max: usize) {
        if let Some(v) = value {
            self.text(field, v, max);
        }
    }

    /// A text that may be empty, at most `max` characters.
    fn at_most(&mut self, field: &str, value: Option<&str>, max: usize) {
        let len = value.map_or(0, |v| v.chars().count());
        if len > max {
            self.fail(field, Violation::TooLong { max, len });
        } else if let Some(value) = value {
            self.no_nul(field, value);
        }
    }

    fn id(&mut self, field: &str, value: &str) {
        self.text(field, value, self.limits.max_id_len);
    }

    fn url(&mut self, field: &str, value: &str) {
        if value.is_empty() {
            self.fail(field, Violation::Empty);
        } else if !is_http_url(value) || value.contains('\0') {
            self.fail(field, Violation::NotHttpUrl);
        } else if value.len() > self.limits.max_url_len {
            self.fail(
                field,
                Violation::TooLong {
                    max: self.limits.max_url_len,
                    len: value.len(),
                },
            );
        }
    }

    fn money(&mut self, field: &str, minor: i64) {
        if minor < 0 {
            self.fail(field, Violation::Negative);
        }
    }

    fn currency(&mut self, field: &str, code: &str) {
        if !(code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase())) {
            self.fail(field, Violation::NotCurrencyCode);
        }
    }

    fn product(&mut self, prefix: &str, p: &Product) {
        self.id(&format!("{prefix}product_id"), &p.product_id);
        let max = self.limits.max_text_len;
        self.opt_text(&format!("{prefix}name"), &p.name, max);
        self.opt_text(&format!("{prefix}category"), &p.category, max);
        if let Some(price) = p.price_minor {
            self.money(&format!("{prefix}price_minor"), price);
        }
        if let Some(c) = &p.currency {
            self.currency(&format!("{prefix}currency"), c);
        }
    }

    fn line(&mut self, prefix: &str, line: &CartLine) {
        self.product(prefix, &line.product);
        if line.quantity == 0 {
            self.fail(format!("{prefix}quantity"), Violation::ZeroQuantity);
        }
    }

    fn lines(&mut self, field: &str, items: &[CartLine]) {
        if items.len() > self.limits.max_items {
            self.fail(
                field,
                Violation::TooManyItems {
                    max: self.limits.max_items,
                    len: items.len(),
                },
            );
            return;
        }
        for (i, item) in items.iter().enumerate() {
            self.line(&format!("{field}[{i}]."), item);
        }
    }
}

/// Checks an event against the rules and `limits`, with `now_ms` as the collector's clock.
pub fn validate(event: &Event, limits: &Limits, now_ms: i64) -> Result<(), Vec<FieldError>> {
    let mut c = Checker {
        limits,
        errors: Vec::new(),
    };
    if event.event_id.get_version_num() != 7 {
        c.fail(
            "event_id",
            Violation::NotUuidV7 {
                version: event.event_id.get_version_num(),
            },
        );
    }
    c.id("anonymous_id", &event.anonymous_id);
    if let Some(u) = &event.user_id {
        c.id("user_id", u);
    }
    if let Some(s) = &event.session_id {
        c.id("session_id", s);
    }
    if event.timestamp > now_ms + limits.max_future_skew_ms {
        c.fail(
            "timestamp",
            Violation::InFuture {
                max_skew_ms: limits.max_future_skew_ms,
            },
        );
    } else if event.timestamp < now_ms - limits.max_age_ms {
        c.fail(
            "timestamp",
            Violation::TooOld {
                max_age_ms: limits.max_age_ms,
            },
        );
    }

    let ctx = &event.context;
    c.url("context.page.url", &ctx.page.url);
    if let Some(r) = ctx.page.referrer.as_deref().filter(|r| !r.is_empty()) {
        c.url("context.page.referrer", r);
    }
    let max = limits.max_text_len;
    c.opt_text("context.page.title", &ctx.page.title, max);
    c.opt_text("context.user_agent", &ctx.user_agent, max);
    c.at_most("context.library", ctx.library.as_deref(), max);
    c.opt_text("context.locale", &ctx.locale, 35);
    c.opt_text("context.timezone", &ctx.timezone, 64);
    if let Some(utm) = &ctx.utm {
        c.opt_text("context.utm.source", &utm.source, max);
        c.opt_text("context.utm.medium", &utm.medium, max);
        c.opt_text("context.utm.campaign", &utm.campaign, max);
        c.opt_text("context.utm.term", &utm.term, max);
        c.opt_text("context.utm.content", &utm.content, max);
    }

    match &event.payload {
        Payload::PageView(p) => {
            c.opt_text("properties.category", &p.category, max);
            if p.session_page == Some(0) {
                c.fail("properties.session_page", Violation::ZeroQuantity);
            }
            if p.session_start.is_some_and(|start| start > event.timestamp) {
                c.fail("properties.session_start", Violation::AfterTimestamp);
            }
        }
        Payload::Click(click) => {
            c.text("properties.element", &click.element, 32);
            // Button text may legitimately be empty (icon buttons), as may an element's id or
            // a class; only their lengths matter.
            c.at_most("properties.text", click.text.as_deref(), max);
            c.at_most("properties.id", click.id.as_deref(), max);
            if click.classes.len() > limits.max_items {
                c.fail(
                    "properties.classes",
                    Violation::TooManyItems {
                        max: limits.max_items,
                        len: click.classes.len(),
                    },
                );
            } else {
                for (i, class) in click.classes.iter().enumerate() {
                    c.at_most(&format!("properties.classes[{i}]"), Some(class), max);
                }
            }
            if let Some(href) = &click.href {
                if href.len() > limits.max_url_len {
                    c.fail(
                        "properties.href",
                        Violation::TooLong {
                            max: limits.max_url_len,
                            len: href.len(),
                        },
                    );
                }
            }
        }
        Payload::ProductView(p) => c.product("properties.", p),
        Payload::AddToCart(l) | Payload::RemoveFromCart(l) => c.line("properties.", l),
        Payload::CheckoutStarted(ch) => {
            c.opt_text("properties.cart_id", &ch.cart_id, limits.max_id_len);
            c.money("properties.value_minor", ch.value_minor);
            c.currency("properties.currency", &ch.currency);
            c.lines("properties.items", &ch.items);
        }
        Payload::Purchase(p) => {
            c.id("properties.order_id", &p.order_id);
            c.money("properties.revenue_minor", p.revenue_minor);
            c.currency("properties.currency", &p.currency);
            c.lines("properties.items", &p.items);
        }
        Payload::Search(s) => c.text("properties.query", &s.query, max),
        Payload::Custom(custom) => {
            c.text("properties.name", &custom.name, limits.max_id_len);
            if !custom.name.chars().all(is_name_char) {
                c.fail("properties.name", Violation::BadName);
            }
            for (key, value) in &custom.props {
                if json_depth(value) > limits.max_props_depth {
                    c.fail(
                        format!("properties.props.{key}"),
                        Violation::TooDeep {
                            max: limits.max_props_depth,
                        },
                    );
                }
            }
        }
    }

    if c.errors.is_empty() {
        Ok(())
    } else {
        Err(c.errors)
    }
}

/// Whether a custom event's name may hold `ch`. Names are free text, as in every analytics
/// library ("Signed Up!", "Checkout → Payment (step 2)"), but one line read as written: a
/// control character (line break, tab, escape), a line or paragraph separator, or a
/// bidirectional override (which shows a name reversed) would break or falsify the lists and
/// exports that show names. NUL is refused apart, as in every text.
pub fn is_name_char(ch: char) -> bool {
    let separator = matches!(ch, '\u{2028}' | '\u{2029}');
    let bidi =
        matches!(ch, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    (!ch.is_control() || ch == '\0') && !separator && !bidi
}

/// `http://host…` or `https://host…` with a non-empty host; deliberately no full URL parser, so
/// the tracker's wasm stays small.
pub fn is_http_url(s: &str) -> bool {
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"));
    match rest {
        Some(rest) => {
            let host = rest.split(['/', '?', '#']).next().unwrap_or("");
            !host.is_empty() && !host.contains(char::is_whitespace)
        }
        None => false,
    }
}

fn json_depth(v: &serde_json::Value) -> usize {
    match v {
        serde_json::Value::Array(a) => 1 + a.iter().map(json_depth).max().unwrap_or(0),
        serde_json::Value::Object(o) => 1 + o.values().map(json_depth).max().unwrap_or(0),
        _ => 0,
    }
}
