//! Orders as shops send them from their backend: the wire types, every check an order must pass
//! before it is stored, the status rules, and the purchase event an order becomes on the stream.
//!
//! Money is integer minor units of the order's currency (cents), never floats.

use std::fmt;

use retailmind_schema::{CartLine, Context, Event, Page, Payload, Product, Purchase};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::card::{find_card_numbers, find_nul_characters};
use crate::error::{CommerceError, Problem, Result};

/// `POST /v1/transactions`: an order as placed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewOrder {
    /// The shop's order number; unique per shop.
    pub order_id: String,
    /// The shop's customer id (the `userId` the storefront passes to `identify`). Unset for a
    /// guest checkout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    /// The tracker's anonymous id of the browser that placed the order, which joins the order to
    /// that visit's session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anonymous_id: Option<String>,
    /// When the order was placed, ms since the Unix epoch. Unset: when it was received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placed_at: Option<i64>,
    /// ISO 4217, upper case (`EUR`).
    pub currency: String,
    pub lines: Vec<OrderLine>,
    /// Σ lines (unit price × quantity − line discount).
    pub subtotal_minor: i64,
    /// Order-level discount (coupons), subtracted from the subtotal.
    #[serde(default)]
    pub discount_minor: i64,
    #[serde(default)]
    pub tax_minor: i64,
    #[serde(default)]
    pub shipping_minor: i64,
    /// subtotal − discount + tax + shipping.
    pub total_minor: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipping: Option<Shipping>,
    pub payment: Payment,
    /// `placed` unless the order arrives already paid.
    #[serde(default)]
    pub status: OrderStatus,
    /// The storefront page the order was placed on, for the purchase event's page context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_url: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderLine {
    pub product_id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    pub unit_price_minor: i64,
    pub quantity: i64,
    #[serde(default)]
    pub discount_minor: i64,
}

impl OrderLine {
    pub fn amount_minor(&self) -> i64 {
        self.unit_price_minor
            .saturating_mul(self.quantity)
            .saturating_sub(self.discount_minor)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Shipping {
    /// `standard`, `express`, `pickup`, … as the shop names it.
    pub method: String,
    /// ISO 3166-1 alpha-2, upper case (`DE`).
    pub country: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postal_code: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Payment {
    pub method: PaymentMethod,
    /// `visa`, `mastercard`, … for cards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card_brand: Option<String>,
    /// Exactly four digits; the only part of a card number ever accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card_last4: Option<String>,
    pub status: PaymentStatus,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaymentMethod {
    Card,
    Paypal,
    BankTransfer,
    DirectDebit,
    Invoice,
    Wallet,
    GiftCard,
    CashOnDelivery,
    Other,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    Pending,
    Authorized,
    Captured,
    Failed,
    Refunded,
}

/// An order's life. Allowed moves:
///
/// ```text
/// placed ──▶ paid ──▶ shipped ──▶ delivered
///   │          │         │            │
///   ▼          ▼         ▼            ▼
/// cancelled  cancelled  refunded    refunded
///              │
///              ▼ refunded
/// ```
/// `cancelled` and `refunded` are final. Repeating the current status is accepted and changes
/// nothing, so a retried update is harmless.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    #[default]
    Placed,
    Paid,
    Shipped,
    Delivered,
    Cancelled,
    Refunded,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 6] = [
        OrderStatus::Placed,
        OrderStatus::Paid,
        OrderStatus::Shipped,
        OrderStatus::Delivered,
        OrderStatus::Cancelled,
        OrderStatus::Refunded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Placed => "placed",
            OrderStatus::Paid => "paid",
            OrderStatus::Shipped => "shipped",
            OrderStatus::Delivered => "delivered",
            OrderStatus::Cancelled => "cancelled",
            OrderStatus::Refunded => "refunded",
        }
    }

    pub fn parse(text: &str) -> Option<OrderStatus> {
        OrderStatus::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Whether an order in `self` may move to `next` (see the type's documentation).
    pub fn can_become(self, next: OrderStatus) -> bool {
        use OrderStatus::*;
        matches!(
            (self, next),
            (Placed, Paid | Cancelled)
                | (Paid, Shipped | Cancelled | Refunded)
                | (Shipped, Delivered | Refunded)
                | (Delivered, Refunded)
        )
    }

    /// Whether the order's money counts as revenue (lifetime value, loyalty points).
    pub fn counts_as_revenue(self) -> bool {
        !matches!(self, OrderStatus::Cancelled | OrderStatus::Refunded)
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stored order, as `GET /v1/transactions/{order_id}` answers it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Order {
    #[serde(flatten)]
    pub order: NewOrder,
    /// Every status the order had, oldest first; the last is its current status.
    pub history: Vec<StatusEntry>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StatusEntry {
    pub status: OrderStatus,
    /// When it happened, ms since the Unix epoch.
    pub at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A status update (`POST /v1/transactions/{order_id}/status`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusChange {
    pub status: OrderStatus,
    /// When it happened; unset, when it was received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<i64>,
    /// Free text (a carrier's tracking number, a refund reason). Checked for card numbers too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Furthest in the future an order's time may be, for clocks that are a little off.
const FUTURE_SLACK_MS: i64 = 24 * 3600 * 1000;
const MAX_ID_LEN: usize = 128;
const MAX_TEXT_LEN: usize = 512;
const MAX_LINES: usize = 1000;

/// Reads an order from a request body: first the card-number sweep over the raw JSON (so a
/// number is refused whatever field it hides in, and never reaches a typed value or a log),
/// then the shape, then every rule. All problems are reported at once.
pub fn decode_order(body: &[u8], now_ms: i64) -> Result<NewOrder> {
    let order: NewOrder = typed(swept_json(body)?)?;
    let problems = check_order(&order, now_ms);
    if problems.is_empty() {
        Ok(order)
    } else {
        Err(CommerceError::Invalid(problems))
    }
}

/// A status update from a request body, swept for card numbers like an order.
pub fn decode_status_change(body: &[u8]) -> Result<StatusChange> {
    let change: StatusChange = typed(swept_json(body)?)?;
    if change.note.as_ref().is_some_and(|n| n.len() > MAX_TEXT_LEN) {
        return Err(CommerceError::Invalid(vec![Problem::new(
            "note",
            format!("is longer than {MAX_TEXT_LEN} bytes"),
        )]));
    }
    Ok(change)
}

/// A request body as JSON, refused as a whole if it is not JSON.
pub(crate) fn parse_json(body: &[u8]) -> Result<Value> {
    serde_json::from_slice(body).map_err(|e| {
        CommerceError::Invalid(vec![Problem::new("(body)", format!("is not JSON: {e}"))])
    })
}

/// A request body as JSON, refused naming every field that holds a card number or a NUL
/// character.
fn swept_json(body: &[u8]) -> Result<Value> {
    let raw = parse_json(body)?;
    let mut problems = find_card_numbers(&raw);
    problems.extend(find_nul_characters(&raw));
    if problems.is_empty() {
        Ok(raw)
    } else {
        Err(CommerceError::Invalid(problems))
    }
}

/// Serde's own message, with the path of the field it is about.
pub(crate) fn typed<T: serde::de::DeserializeOwned>(raw: Value) -> Result<T> {
    serde_path_to_error::deserialize(raw).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { "(body)".into() } else { path };
        CommerceError::Invalid(vec![Problem::new(field, e.into_inner().to_string())])
    })
}

/// Every rule an order must pass, as problems naming their field.
pub fn check_order(order: &NewOrder, now_ms: i64) -> Vec<Problem> {
    let mut p = Vec::new();
    id(&mut p, "order_id", &order.order_id);
    if let Some(c) = &order.customer_id {
        id(&mut p, "customer_id", c);
    }
    if let Some(a) = &order.anonymous_id {
        id(&mut p, "anonymous_id", a);
    }
    if let Some(at) = order.placed_at {
        if at <= 0 {
            p.push(Problem::new("placed_at", "must be ms since the Unix epoch"));
        } else if at > now_ms + FUTURE_SLACK_MS {
            p.push(Problem::new(
                "placed_at",
                "is more than a day in the future",
            ));
        }
    }
    if !is_code(&order.currency, 3) {
        p.push(Problem::new(
            "currency",
            "must be an ISO 4217 code in upper case (EUR)",
        ));
    }
    if order.lines.is_empty() {
        p.push(Problem::new("lines", "an order needs at least one line"));
    }
    if order.lines.len() > MAX_LINES {
        p.push(Problem::new(
            "lines",
            format!("has more than {MAX_LINES} lines"),
        ));
    }
    for (i, line) in order.lines.iter().enumerate() {
        let at = |f: &str| format!("lines[{i}].{f}");
        id(&mut p, &at("product_id"), &line.product_id);
        text(&mut p, &at("name"), &line.name, true);
        if let Some(c) = &line.category {
            text(&mut p, &at("category"), c, true);
        }
        if line.unit_price_minor < 0 {
            p.push(Problem::new(at("unit_price_minor"), "must not be negative"));
        }
        if line.quantity < 1 {
            p.push(Problem::new(at("quantity"), "must be at least 1"));
        }
        if line.discount_minor < 0 {
            p.push(Problem::new(at("discount_minor"), "must not be negative"));
        } else if line.discount_minor > line.unit_price_minor.saturating_mul(line.quantity) {
            p.push(Problem::new(
                at("discount_minor"),
                "is larger than the line's amount",
            ));
        }
    }
    for (field, value) in [
        ("subtotal_minor", order.subtotal_minor),
        ("discount_minor", order.discount_minor),
        ("tax_minor", order.tax_minor),
        ("shipping_minor", order.shipping_minor),
        ("total_minor", order.total_minor),
    ] {
        if value < 0 {
            p.push(Problem::new(field, "must not be negative"));
        }
    }
    let lines_sum = order
        .lines
        .iter()
        .fold(0i64, |sum, l| sum.saturating_add(l.amount_minor()));
    if order.subtotal_minor != lines_sum {
        p.push(Problem::new(
            "subtotal_minor",
            format!(
                "is {} but the lines add up to {lines_sum} (unit price × quantity − line discount)",
                order.subtotal_minor
            ),
        ));
    }
    let total = order
        .subtotal_minor
        .saturating_sub(order.discount_minor)
        .saturating_add(order.tax_minor)
        .saturating_add(order.shipping_minor);
    if order.total_minor != total {
        p.push(Problem::new(
            "total_minor",
            format!(
                "is {} but subtotal − discount + tax + shipping is {total}",
                order.total_minor
            ),
        ));
    }
    if let Some(s) = &order.shipping {
        text(&mut p, "shipping.method", &s.method, true);
        if !is_code(&s.country, 2) {
            p.push(Problem::new(
                "shipping.country",
                "must be an ISO 3166-1 alpha-2 code in upper case (DE)",
            ));
        }
        if let Some(code) = &s.postal_code {
            text(&mut p, "shipping.postal_code", code, true);
        }
    }
    let pay = &order.payment;
    if let Some(last4) = &pay.card_last4 {
        if last4.len() != 4 || !last4.bytes().all(|b| b.is_ascii_digit()) {
            p.push(Problem::new(
                "payment.card_last4",
                "must be exactly the last four digits of the card",
            ));
        }
        if pay.method != PaymentMethod::Card {
            p.push(Problem::new(
                "payment.card_last4",
                "is only for payment.method \"card\"",
            ));
        }
    }
    if let Some(brand) = &pay.card_brand {
        text(&mut p, "payment.card_brand", brand, true);
    }
    if let Some(url) = &order.page_url {
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            p.push(Problem::new("page_url", "must be an absolute http(s) URL"));
        }
    }
    if matches!(order.status, OrderStatus::Cancelled | OrderStatus::Refunded) {
        p.push(Problem::new(
            "status",
            "a new order must be placed, paid, shipped or delivered",
        ));
    }
    p
}

fn id(p: &mut Vec<Problem>, field: &str, value: &str) {
    if value.trim().is_empty() {
        p.push(Problem::new(field, "must not be empty"));
    } else if value.len() > MAX_ID_LEN {
        p.push(Problem::new(
            field,
            format!("is longer than {MAX_ID_LEN} bytes"),
        ));
    }
}

fn text(p: &mut Vec<Problem>, field: &str, value: &str, required: bool) {
    if required && value.trim().is_empty() {
        p.push(Problem::new(field, "must not be empty"));
    } else if value.len() > MAX_TEXT_LEN {
        p.push(Problem::new(
            field,
            format!("is longer than {MAX_TEXT_LEN} bytes"),
        ));
    }
}

fn is_code(value: &str, len: usize) -> bool {
    value.len() == len && value.bytes().all(|b| b.is_ascii_uppercase())
}

/// The fingerprint an Idempotency-Key is bound to: a repeat with the same key must carry the
/// same order. Taken over the typed order, so key order and spacing in the JSON do not matter.
pub fn fingerprint(order: &NewOrder) -> String {
    let canonical = serde_json::to_vec(order).expect("an order serializes");
    hex(&Sha256::digest(canonical))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The purchase event an accepted order becomes on the stream, so sessions and the lake see
/// orders placed outside the browser. Its id is derived from the order id (a UUIDv7 at the
/// order's time with hash bits), so re-sending it after a failure can never count it twice.
pub fn purchase_event(order: &NewOrder, placed_at: i64, default_page_url: &str) -> Event {
    let event_id = purchase_event_id(&order.order_id, placed_at);
    let anonymous_id = order
        .anonymous_id
        .clone()
        .or_else(|| order.customer_id.clone())
        .unwrap_or_else(|| format!("order:{}", order.order_id));
    Event {
        event_id,
        anonymous_id,
        user_id: order.customer_id.clone(),
        session_id: None,
        timestamp: placed_at,
        received_at: None,
        context: Context {
            page: Page {
                url: order
                    .page_url
                    .clone()
                    .unwrap_or_else(|| default_page_url.to_owned()),
                referrer: None,
                title: None,
            },
            library: Some("retailmind-transactions".into()),
            ..Context::default()
        },
        payload: Payload::Purchase(Purchase {
            order_id: order.order_id.clone(),
            revenue_minor: order.total_minor,
            currency: order.currency.clone(),
            items: order
                .lines
                .iter()
                .map(|l| CartLine {
                    product: Product {
                        product_id: l.product_id.clone(),
                        name: Some(l.name.clone()),
                        category: l.category.clone(),
                        price_minor: Some(l.unit_price_minor),
                        currency: Some(order.currency.clone()),
                    },
                    quantity: u32::try_from(l.quantity).unwrap_or(u32::MAX),
                })
                .collect(),
        }),
    }
}

/// The event id [`purchase_event`] gives an order (for tests and the lake's attribution).
pub fn purchase_event_id(order_id: &str, placed_at: i64) -> Uuid {
    let digest = Sha256::digest(format!("retailmind-order:{order_id}"));
    let mut random = [0u8; 10];
    random.copy_from_slice(&digest[..10]);
    uuid::Builder::from_unix_timestamp_millis(placed_at as u64, &random).into_uuid()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_764_500_000_000;

    pub(crate) fn body() -> Value {
        json!({
            "order_id": "A-1001",
            "customer_id": "u-42",
            "anonymous_id": "anon-1",
            "placed_at": NOW,
            "currency": "EUR",
            "lines": [
                {"product_id": "P1", "name": "Shoes", "category": "footwear", "unit_price_minor": 5000, "quantity": 2, "discount_minor": 1000},
                {"product_id": "P2", "name": "Socks", "unit_price_minor": 500, "quantity": 3}
            ],
            "subtotal_minor": 10500,
            "discount_minor": 500,
            "tax_minor": 1900,
            "shipping_minor": 495,
            "total_minor": 12395,
            "shipping": {"method": "standard", "country": "DE", "postal_code": "10115"},
            "payment": {"method": "card", "card_brand": "visa", "card_last4": "4242", "status": "authorized"}
        })
    }

    fn problems(v: Value) -> Vec<Problem> {
        match decode_order(v.to_string().as_bytes(), NOW) {
            Err(CommerceError::Invalid(p)) => p,
            other => panic!("expected problems, got {other:?}"),
        }
    }

    #[test]
    fn a_consistent_order_is_accepted() {
        let order = decode_order(body().to_string().as_bytes(), NOW).unwrap();
        assert_eq!(order.total_minor, 12395);
        assert_eq!(order.status, OrderStatus::Placed);
    }

    #[test]
    fn totals_that_do_not_add_up_are_refused_with_both_figures() {
        let mut v = body();
        v["subtotal_minor"] = json!(10000);
        v["total_minor"] = json!(99);
        let p = problems(v);
        assert_eq!(p[0].field, "subtotal_minor");
        assert!(p[0].reason.contains("10500"), "{}", p[0].reason);
        assert_eq!(p[1].field, "total_minor");
        assert!(p[1].reason.contains("11895"), "{}", p[1].reason);
    }

    #[test]
    fn a_card_number_anywhere_is_refused_before_anything_else() {
        let mut v = body();
        v["payment"]["card_last4"] = json!("4111111111111111");
        v["lines"][0]["name"] = json!("Shoes for 5555 5555 5555 4444");
        let p = problems(v);
        let fields: Vec<&str> = p.iter().map(|p| p.field.as_str()).collect();
        assert!(fields.contains(&"payment.card_last4"), "{fields:?}");
        assert!(fields.contains(&"lines[0].name"), "{fields:?}");
        assert!(p.iter().all(|p| p.reason.contains("card number")));
    }

    #[test]
    fn wrong_shapes_name_the_field() {
        let mut v = body();
        v["lines"][1]["quantity"] = json!("three");
        let p = problems(v);
        assert_eq!(p[0].field, "lines[1].quantity");

        let mut v = body();
        v["payment"]["cvv"] = json!("123");
        let p = problems(v);
        assert_eq!(p[0].field, "payment.cvv");
        assert!(p[0].reason.contains("unknown field"), "{}", p[0].reason);

        let mut v = body();
        v["currency"] = json!("eur");
        v["lines"][0]["quantity"] = json!(0);
        v["payment"]["card_last4"] = json!("42");
        let fields: Vec<String> = problems(v).into_iter().map(|p| p.field).collect();
        for f in ["currency", "lines[0].quantity", "payment.card_last4"] {
            assert!(fields.iter().any(|x| x == f), "{f} missing in {fields:?}");
        }
    }

    #[test]
    fn status_moves_follow_the_life_of_an_order() {
        use OrderStatus::*;
        assert!(Placed.can_become(Paid));
        assert!(Paid.can_become(Shipped));
        assert!(Shipped.can_become(Delivered));
        assert!(Delivered.can_become(Refunded));
        assert!(!Placed.can_become(Shipped), "paid first");
        assert!(
            !Shipped.can_become(Cancelled),
            "a shipped order is refunded, not cancelled"
        );
        for s in OrderStatus::ALL {
            assert!(!Cancelled.can_become(s));
            assert!(!Refunded.can_become(s));
            assert_eq!(OrderStatus::parse(s.as_str()), Some(s));
        }
    }

    #[test]
    fn the_purchase_event_is_the_same_on_every_resend_and_valid() {
        let order: NewOrder = serde_json::from_value(body()).unwrap();
        let a = purchase_event(&order, NOW, "https://shop.example/checkout");
        let b = purchase_event(&order, NOW, "https://shop.example/checkout");
        assert_eq!(a.event_id, b.event_id);
        assert_eq!(a.event_id, purchase_event_id("A-1001", NOW));
        assert_eq!(a.event_id.get_version_num(), 7);
        assert_eq!(a.anonymous_id, "anon-1");
        let limits = retailmind_schema::Limits::default();
        retailmind_schema::validate(&a, &limits, NOW).unwrap();
    }

    #[test]
    fn the_fingerprint_ignores_json_layout() {
        let a: NewOrder = serde_json::from_value(body()).unwrap();
        let text = serde_json::to_string_pretty(&body()).unwrap();
        let b: NewOrder = serde_json::from_str(&text).unwrap();
        assert_eq!(fingerprint(&a), fingerprint(&b));
        let mut c = a.clone();
        c.tax_minor += 1;
        assert_ne!(fingerprint(&a), fingerprint(&c));
    }
}
