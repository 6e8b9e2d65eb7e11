//! The event envelope and the shop event kinds, as they travel from the tracker to the lake.
//!
//! JSON shape (one event):
//! ```json
//! {"event_id":"0192…","type":"product_view","anonymous_id":"a-1","timestamp":1732530000000,
//!  "context":{"page":{"url":"https://shop.example/p/42"}},
//!  "properties":{"product_id":"42","price_minor":1999,"currency":"EUR"}}
//! ```
//! Money is always integer minor units (cents) with an ISO 4217 currency code, never floats.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One thing a shopper did, with who, when and where.
/// Deserialize is written by hand (`event_decode.rs`), for speed.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Event {
    /// UUIDv7 made by the sender; the collector and processor drop repeats of the same id.
    pub event_id: Uuid,
    /// Persistent id of the browser (or device) before and after login.
    pub anonymous_id: String,
    /// The shop's own customer id, once known (after `identify`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// The tracker's own session id; the processor sessionizes again in event time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// When it happened, by the sender's clock, in milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// When the collector accepted it, in milliseconds since the Unix epoch. Set server-side;
    /// whatever a client sends here is overwritten.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received_at: Option<i64>,
    #[serde(default)]
    pub context: Context,
    #[serde(flatten)]
    pub payload: Payload,
}

/// Where the event happened: page, campaign, device.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Context {
    #[serde(default)]
    pub page: Page,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utm: Option<Utm>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub screen: Option<Screen>,
    /// BCP 47 language tag, e.g. `de-CH`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    /// IANA time zone, e.g. `Europe/Zurich`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// Client IP as seen by the collector (possibly truncated). Set server-side.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// Which library sent the event, e.g. `retailmind-sdk-wasm/0.1.0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub library: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Page {
    /// Absolute http(s) URL of the page.
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referrer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
}

/// Campaign parameters (`utm_*` in the landing URL).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Utm {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub medium: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub term: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Screen {
    pub width: u32,
    pub height: u32,
}

/// The event kind and its properties: `"type"` names the kind, `"properties"` holds its fields.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", content = "properties", rename_all = "snake_case")]
pub enum Payload {
    PageView(PageView),
    Click(Click),
    ProductView(Product),
    AddToCart(CartLine),
    RemoveFromCart(CartLine),
    CheckoutStarted(Checkout),
    Purchase(Purchase),
    Search(Search),
    Custom(Custom),
}

impl Payload {
    /// The wire name of the kind (`page_view`, `add_to_cart`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            Payload::PageView(_) => "page_view",
            Payload::Click(_) => "click",
            Payload::ProductView(_) => "product_view",
            Payload::AddToCart(_) => "add_to_cart",
            Payload::RemoveFromCart(_) => "remove_from_cart",
            Payload::CheckoutStarted(_) => "checkout_started",
            Payload::Purchase(_) => "purchase",
            Payload::Search(_) => "search",
            Payload::Custom(_) => "custom",
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PageView {
    /// Page category as the shop names it (`home`, `product`, `cart`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// Which page of the tracker's session this is: 1 for the landing page. Counted in the
    /// browser across its tabs, so it is known before the processor sessionizes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_page: Option<u32>,
    /// When the tracker's session began (its first event), in milliseconds since the Unix
    /// epoch, by the sender's clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_start: Option<i64>,
}

/// A click on a link or button (autocaptured or sent by hand).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Click {
    /// Tag name in lower case: `a`, `button`, …
    pub element: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub classes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub href: Option<String>,
    /// The link leaves the shop's host.
    #[serde(default)]
    pub outbound: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Product {
    pub product_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// Unit price in minor units of `currency`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_minor: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
}

/// A product with a quantity, in a cart, a checkout or an order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CartLine {
    #[serde(flatten)]
    pub product: Product,
    pub quantity: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Checkout {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cart_id: Option<String>,
    /// Cart value in minor units.
    pub value_minor: i64,
    pub currency: String,
    #[serde(default)]
    pub items: Vec<CartLine>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Purchase {
    pub order_id: String,
    /// Order total in minor units.
    pub revenue_minor: i64,
    pub currency: String,
    #[serde(default)]
    pub items: Vec<CartLine>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Search {
    pub query: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub results: Option<u32>,
}

/// An event the shop names itself (`track(name, props)`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Custom {
    pub name: String,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub props: serde_json::Map<String, serde_json::Value>,
}

/// What the tracker posts to `/v1/batch`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Batch {
    /// Repeated when the same batch is retried, so the collector can drop the repeat.
    pub batch_id: Uuid,
    /// Sender's clock when the batch left, in ms. Event times are not corrected by it: lateness
    /// and the future limit are judged on each event's own `timestamp` (see the README).
    pub sent_at: i64,
    pub events: Vec<Event>,
}
