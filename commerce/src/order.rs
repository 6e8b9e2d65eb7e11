//! Orders as shops send them from their backend: the wire types, every check an order must pass
//! before it is stored, the status rules, and the purchase event an order becomes on the stream.
//!
//! Money is integer minor units of the order's currency (cents), never floats.

use std::fmt;

use retailmind_schema::{
    validate, CartLine, Context, Event, Limits, Page, Payload, Product, Purchase, Violation,
};
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
/// then the shape, then every rule. A shape problem (a missing field, a wrong type) is
/// reported alone, as serde stops at the first; the rules' problems are reported all at once.
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
pub fn decode_status_change(body: &[u8], now_ms: i64) -> Result<StatusChange> {
    let change: StatusChange = typed(swept_json(body)?)?;
    let mut p = Vec::new();
    if change.note.as_ref().is_some_and(|n| n.len() > MAX_TEXT_LEN) {
        p.push(Problem::new(
            "note",
            format!("is longer than {MAX_TEXT_LEN} bytes"),
        ));
    }
    if let Some(at) = change.at {
        time(&mut p, "at", at, now_ms);
    }
    if p.is_empty() {
        Ok(change)
    } else {
        Err(CommerceError::Invalid(p))
    }
}

/// A time in ms since the Unix epoch, at most a day ahead of the clock.
fn time(p: &mut Vec<Problem>, field: &str, at: i64, now_ms: i64) {
    if at <= 0 {
        p.push(Problem::new(field, "must be ms since the Unix epoch"));
    } else if at > now_ms + FUTURE_SLACK_MS {
        p.push(Problem::new(field, "is more than a day in the future"));
    }
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

/// The typed document, or the first problem of its shape, naming its field: a missing field by
/// its own path (`payment.status`, "is required"), anything else with serde's own message.
pub(crate) fn typed<T: serde::de::DeserializeOwned>(raw: Value) -> Result<T> {
    if !raw.is_object() {
        return Err(CommerceError::Invalid(vec![Problem::new(
            "(body)",
            "must be a JSON object",
        )]));
    }
    serde_path_to_error::deserialize(raw).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        let missing = message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split_once('`'))
            .map(|(name, _)| name.to_owned());
        let problem = match (missing, path.as_str()) {
            (Some(name), ".") => Problem::new(name, "is required"),
            (Some(name), parent) => Problem::new(format!("{parent}.{name}"), "is required"),
            (None, ".") => Problem::new("(body)", message),
            (None, _) => Problem::new(path, message),
        };
        CommerceError::Invalid(vec![problem])
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
        time(&mut p, "placed_at", at, now_ms);
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
        } else if u32::try_from(line.quantity).is_err() {
            p.push(Problem::new(
                at("quantity"),
                format!("must be at most {}", u32::MAX),
            ));
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
        if !retailmind_schema::is_http_url(url) {
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

/// What the purchase event of `order` would break of the stream's rules (`limits`, the
/// collector's), named as the order's fields: such an order is refused, instead of stored with
/// an event the lake would quarantine. Age is no problem: an order placed longer ago than the
/// stream takes events is history sent late (a backfill), stored without an event (see
/// [`too_old_for_the_stream`]).
pub fn check_purchase_event(
    order: &NewOrder,
    now_ms: i64,
    default_page_url: &str,
    limits: &Limits,
) -> Vec<Problem> {
    let mut event = purchase_event(order, order.placed_at.unwrap_or(now_ms), default_page_url);
    event.received_at = Some(now_ms);
    let Err(errors) = validate(&event, limits, now_ms) else {
        return Vec::new();
    };
    let mut problems: Vec<Problem> = Vec::new();
    let named = errors
        .into_iter()
        .filter(|e| !matches!(e.violation, Violation::TooOld { .. }))
        .map(|e| {
            let reason = e.violation.to_string();
            match order_field(&e.field).as_deref() {
                Some("page_url") if order.page_url.is_none() => Problem::new(
                    "page_url",
                    format!("is not given, and commerce.default_page_url {reason}"),
                ),
                // The visitor id falls back to the customer id, then to `order:` + the order id.
                Some("anonymous_id") if order.anonymous_id.is_none() => match &order.customer_id {
                    Some(_) => Problem::new("customer_id", reason),
                    None => Problem::new(
                        "order_id",
                        format!("{reason} once `order:` is put before it as the visitor id"),
                    ),
                },
                Some(field) => Problem::new(field, reason),
                None => Problem::new(
                    e.field.clone(),
                    format!("{reason} (in the purchase event the order becomes)"),
                ),
            }
        });
    // The visitor id can fall back to the customer id, which is the user id too: one problem.
    for problem in named {
        if !problems.contains(&problem) {
            problems.push(problem);
        }
    }
    problems
}

/// Whether an order placed at `placed_at` is older than the stream takes events
/// (`validation.max_age_days`): it is stored, and reaches the lake through the orders export,
/// but sends no purchase event, which the lake would quarantine.
pub fn too_old_for_the_stream(placed_at: i64, now_ms: i64, limits: &Limits) -> bool {
    placed_at < now_ms.saturating_sub(limits.max_age_ms)
}

/// The order's field that a field of its purchase event comes from.
fn order_field(event_field: &str) -> Option<String> {
    let top = match event_field {
        "timestamp" => "placed_at",
        "context.page.url" => "page_url",
        "anonymous_id" => "anonymous_id",
        "user_id" => "customer_id",
        "properties.order_id" => "order_id",
        "properties.currency" => "currency",
        "properties.revenue_minor" => "total_minor",
        "properties.items" => "lines",
        _ => {
            let line = event_field.strip_prefix("properties.items[")?;
            let (index, field) = line.split_once("].")?;
            let field = match field {
                "product_id" | "name" | "category" | "quantity" => field,
                "price_minor" => "unit_price_minor",
                "currency" => return Some("currency".into()),
                _ => return None,
            };
            return Some(format!("lines[{index}].{field}"));
        }
    };
    Some(top.into())
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
    fn a_missing_field_is_named_by_its_path_and_a_body_that_is_no_object_is_said_so() {
        let mut v = body();
        v.as_object_mut().unwrap().remove("currency");
        let p = problems(v);
        assert_eq!(
            (p[0].field.as_str(), p[0].reason.as_str()),
            ("currency", "is required")
        );

        let mut v = body();
        v["payment"].as_object_mut().unwrap().remove("status");
        let p = problems(v);
        assert_eq!(
            (p[0].field.as_str(), p[0].reason.as_str()),
            ("payment.status", "is required")
        );

        let p = problems(json!([]));
        assert_eq!(
            (p[0].field.as_str(), p[0].reason.as_str()),
            ("(body)", "must be a JSON object")
        );
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

    fn event_problems(v: Value, default_page_url: &str, limits: &Limits) -> Vec<(String, String)> {
        let order = decode_order(v.to_string().as_bytes(), NOW).unwrap();
        check_purchase_event(&order, NOW, default_page_url, limits)
            .into_iter()
            .map(|p| (p.field, p.reason))
            .collect()
    }

    #[test]
    fn an_order_whose_purchase_event_the_stream_would_refuse_is_refused_by_its_own_fields() {
        let limits = Limits::default();
        let page = "https://shop.example/thanks";
        assert_eq!(event_problems(body(), page, &limits), []);

        let mut many = body();
        let line =
            json!({"product_id": "P9", "name": "Pin", "unit_price_minor": 100, "quantity": 1});
        many["lines"] = Value::Array(vec![line; 201]);
        many["subtotal_minor"] = json!(20_100);
        many["total_minor"] = json!(20_100 - 500 + 1900 + 495);
        let problems = event_problems(many, page, &limits);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].0, "lines");
        assert!(problems[0].1.contains("200"), "{problems:?}");

        let mut url = body();
        url["page_url"] = json!(format!("https://shop.example/{}", "a".repeat(5000)));
        assert_eq!(event_problems(url, page, &limits)[0].0, "page_url");
        let problems = event_problems(body(), "/thanks", &limits);
        assert_eq!(problems[0].0, "page_url");
        assert!(
            problems[0]
                .1
                .starts_with("is not given, and commerce.default_page_url"),
            "{problems:?}"
        );

        let strict = Limits {
            max_id_len: 8,
            ..Limits::default()
        };
        let mut long = body();
        long["lines"][1]["product_id"] = json!("P-123456789");
        long.as_object_mut().unwrap().remove("anonymous_id");
        long.as_object_mut().unwrap().remove("customer_id");
        // The order id (6 bytes) fits; the visitor id made of it (`order:A-1001`) does not.
        let problems = event_problems(long, page, &strict);
        let fields: Vec<&str> = problems.iter().map(|(field, _)| field.as_str()).collect();
        assert_eq!(fields, ["order_id", "lines[1].product_id"]);
        assert!(
            problems[0]
                .1
                .ends_with("once `order:` is put before it as the visitor id"),
            "{problems:?}"
        );
    }

    #[test]
    fn an_order_older_than_the_stream_takes_is_stored_without_an_event() {
        let limits = Limits::default();
        let mut old = body();
        let placed_at = NOW - limits.max_age_ms - 1;
        old["placed_at"] = json!(placed_at);
        assert_eq!(event_problems(old, "https://shop.example/", &limits), []);
        assert!(too_old_for_the_stream(placed_at, NOW, &limits));
        assert!(!too_old_for_the_stream(placed_at + 1, NOW, &limits));
    }

    #[test]
    fn a_quantity_the_event_cannot_carry_and_a_bad_status_time_are_refused() {
        let mut v = body();
        v["lines"][1]["quantity"] = json!(5_000_000_000_i64);
        v["lines"][1]["unit_price_minor"] = json!(0);
        v["subtotal_minor"] = json!(9000);
        v["total_minor"] = json!(9000 - 500 + 1900 + 495);
        let p = problems(v);
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].field, "lines[1].quantity");
        assert_eq!(p[0].reason, "must be at most 4294967295");

        let change = |at: i64| {
            decode_status_change(
                json!({"status": "paid", "at": at}).to_string().as_bytes(),
                NOW,
            )
        };
        assert!(change(NOW).is_ok());
        for at in [-5, 0, NOW + 2 * FUTURE_SLACK_MS] {
            match change(at) {
                Err(CommerceError::Invalid(p)) => assert_eq!(p[0].field, "at"),
                other => panic!("{at}: {other:?}"),
            }
        }
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
