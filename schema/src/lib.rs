//! RetailMind's shared vocabulary: the event envelope and kinds ([`event`]), the rules a valid
//! event follows ([`validate`]) and the session record ([`session`]).
//!
//! Compiled into the browser tracker (wasm32) as well as the collector and the processor, so
//! there is exactly one definition of an event. No I/O here.

pub mod event;
mod event_decode;
pub mod record;
pub mod session;
pub mod validate;
pub mod wire;

pub use event::{
    Batch, CartLine, Checkout, Click, Context, Custom, Event, Page, PageView, Payload, Product,
    Purchase, Screen, Search, Utm,
};
pub use session::{
    device_class, CurrencyRevenue, Session, SessionOrder, ENGAGED_MS, MAX_OTHER_CURRENCIES,
    MAX_SESSION_EVENTS, MAX_SESSION_ORDERS, PAGE_ENGAGEMENT, SESSION_EVENTS_LIMIT,
};
pub use validate::{is_http_url, validate, FieldError, Limits, Violation};

/// Where events are partitioned in the stream: one browser's events stay in order on one shard.
/// The anonymous id rather than the user id, because it is there from the first page view on.
pub fn partition_key(event: &Event) -> &str {
    &event.anonymous_id
}
