//! Rows of the lake tables copied from the stores: `sessions` (session store), `orders`,
//! `order_lines` and `customers` (transactions store). Only what the table definitions name
//! leaves the stores: no event ids, no postal codes or card digits, no traits or emails.

use retailmind_commerce::{CustomerSummary, Order};
use retailmind_schema::Session;

use crate::rows::{RowError, RowReader, RowWriter, TableRow};
use crate::tables::{TableDef, CUSTOMERS, ORDERS, ORDER_LINES, SESSIONS};

/// Counters are `u32` in the stores and `int` in Athena; a count past `i32::MAX` is capped
/// rather than wrapped.
fn int32(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// A row of `sessions`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRow {
    pub session_id: String,
    pub anonymous_id: String,
    pub user_id: Option<String>,
    pub start_ms: i64,
    pub end_ms: i64,
    pub event_count: i32,
    pub page_views: i32,
    pub entry_url: String,
    pub exit_url: String,
    pub referrer: Option<String>,
    pub utm_source: Option<String>,
    pub utm_medium: Option<String>,
    pub utm_campaign: Option<String>,
    pub products_viewed: i32,
    pub cart_adds: i32,
    pub purchases: i32,
    pub revenue_minor: i64,
    pub engaged: bool,
    pub bounce: bool,
    pub device: String,
    pub session_number: i32,
    pub duration_ms: Option<i64>,
    pub engaged_ms: Option<i64>,
    pub currency: Option<String>,
    /// JSON, `{"GBP": 3000}`: the revenue in other currencies than `currency`.
    pub other_revenue: Option<String>,
}

impl From<&Session> for SessionRow {
    fn from(s: &Session) -> Self {
        SessionRow {
            session_id: s.session_id.clone(),
            anonymous_id: s.anonymous_id.clone(),
            user_id: s.user_id.clone(),
            start_ms: s.start_ms,
            end_ms: s.end_ms,
            event_count: int32(s.event_count),
            page_views: int32(s.page_views),
            entry_url: s.entry_url.clone(),
            exit_url: s.exit_url.clone(),
            referrer: s.referrer.clone(),
            utm_source: s.utm_source.clone(),
            utm_medium: s.utm_medium.clone(),
            utm_campaign: s.utm_campaign.clone(),
            products_viewed: int32(s.products_viewed),
            cart_adds: int32(s.cart_adds),
            purchases: int32(s.purchases),
            revenue_minor: s.revenue_minor,
            engaged: s.engaged,
            bounce: s.bounce,
            device: s.device.clone(),
            session_number: int32(s.session_number),
            duration_ms: Some(s.duration_ms()),
            engaged_ms: s.engaged_ms.map(|ms| i64::try_from(ms).unwrap_or(i64::MAX)),
            currency: s.currency.clone(),
            other_revenue: other_revenue_json(s),
        }
    }
}

/// A session's revenue in other currencies as one JSON object (currency to minor units), the
/// form Athena's `json_extract_scalar` reads; `None` when every order was in the session's
/// currency.
fn other_revenue_json(s: &Session) -> Option<String> {
    if s.other_revenue.is_empty() {
        return None;
    }
    let by_currency: serde_json::Map<String, serde_json::Value> = s
        .other_revenue
        .iter()
        .map(|r| (r.currency.clone(), r.revenue_minor.into()))
        .collect();
    Some(serde_json::Value::Object(by_currency).to_string())
}

impl TableRow for SessionRow {
    const TABLE: &'static TableDef = &SESSIONS;

    fn write(&self, w: &mut RowWriter) {
        w.text(Some(&self.session_id));
        w.text(Some(&self.anonymous_id));
        w.text(self.user_id.as_deref());
        w.int64(Some(self.start_ms));
        w.int64(Some(self.end_ms));
        w.int32(Some(self.event_count));
        w.int32(Some(self.page_views));
        w.text(Some(&self.entry_url));
        w.text(Some(&self.exit_url));
        w.text(self.referrer.as_deref());
        w.text(self.utm_source.as_deref());
        w.text(self.utm_medium.as_deref());
        w.text(self.utm_campaign.as_deref());
        w.int32(Some(self.products_viewed));
        w.int32(Some(self.cart_adds));
        w.int32(Some(self.purchases));
        w.int64(Some(self.revenue_minor));
        w.bool(Some(self.engaged));
        w.bool(Some(self.bounce));
        w.text(Some(&self.device));
        w.int32(Some(self.session_number));
        w.int64(self.duration_ms);
        w.int64(self.engaged_ms);
        w.text(self.currency.as_deref());
        w.text(self.other_revenue.as_deref());
    }

    fn read(r: &mut RowReader<'_>) -> Result<Self, RowError> {
        Ok(SessionRow {
            session_id: r.required_text()?,
            anonymous_id: r.required_text()?,
            user_id: r.text()?,
            start_ms: r.required_int64()?,
            end_ms: r.required_int64()?,
            event_count: r.required_int32()?,
            page_views: r.required_int32()?,
            entry_url: r.required_text()?,
            exit_url: r.required_text()?,
            referrer: r.text()?,
            utm_source: r.text()?,
            utm_medium: r.text()?,
            utm_campaign: r.text()?,
            products_viewed: r.required_int32()?,
            cart_adds: r.required_int32()?,
            purchases: r.required_int32()?,
            revenue_minor: r.required_int64()?,
            engaged: r.required_bool()?,
            bounce: r.required_bool()?,
            device: r.required_text()?,
            session_number: r.required_int32()?,
            duration_ms: r.int64()?,
            engaged_ms: r.int64()?,
            currency: r.text()?,
            other_revenue: r.text()?,
        })
    }
}

/// A row of `orders`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderRow {
    pub order_id: String,
    pub customer_id: Option<String>,
    pub anonymous_id: Option<String>,
    pub placed_at_ms: i64,
    pub currency: String,
    pub subtotal_minor: i64,
    pub discount_minor: i64,
    pub tax_minor: i64,
    pub shipping_minor: i64,
    pub total_minor: i64,
    pub shipping_method: Option<String>,
    pub shipping_country: Option<String>,
    pub payment_method: String,
    pub payment_status: String,
    pub status: String,
}

/// The snake_case name an enum has on the wire (`bank_transfer`).
fn wire_name<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        other => format!("{other:?}"),
    }
}

impl From<&Order> for OrderRow {
    fn from(o: &Order) -> Self {
        let n = &o.order;
        OrderRow {
            order_id: n.order_id.clone(),
            customer_id: n.customer_id.clone(),
            anonymous_id: n.anonymous_id.clone(),
            // Stored orders always have their placing time; `created_at` is the same moment.
            placed_at_ms: n.placed_at.unwrap_or(o.created_at),
            currency: n.currency.clone(),
            subtotal_minor: n.subtotal_minor,
            discount_minor: n.discount_minor,
            tax_minor: n.tax_minor,
            shipping_minor: n.shipping_minor,
            total_minor: n.total_minor,
            shipping_method: n.shipping.as_ref().map(|s| s.method.clone()),
            shipping_country: n.shipping.as_ref().map(|s| s.country.clone()),
            payment_method: wire_name(&n.payment.method),
            payment_status: wire_name(&n.payment.status),
            status: n.status.as_str().to_owned(),
        }
    }
}

impl TableRow for OrderRow {
    const TABLE: &'static TableDef = &ORDERS;

    fn write(&self, w: &mut RowWriter) {
        w.text(Some(&self.order_id));
        w.text(self.customer_id.as_deref());
        w.text(self.anonymous_id.as_deref());
        w.int64(Some(self.placed_at_ms));
        w.text(Some(&self.currency));
        w.int64(Some(self.subtotal_minor));
        w.int64(Some(self.discount_minor));
        w.int64(Some(self.tax_minor));
        w.int64(Some(self.shipping_minor));
        w.int64(Some(self.total_minor));
        w.text(self.shipping_method.as_deref());
        w.text(self.shipping_country.as_deref());
        w.text(Some(&self.payment_method));
        w.text(Some(&self.payment_status));
        w.text(Some(&self.status));
    }

    fn read(r: &mut RowReader<'_>) -> Result<Self, RowError> {
        Ok(OrderRow {
            order_id: r.required_text()?,
            customer_id: r.text()?,
            anonymous_id: r.text()?,
            placed_at_ms: r.required_int64()?,
            currency: r.required_text()?,
            subtotal_minor: r.required_int64()?,
            discount_minor: r.required_int64()?,
            tax_minor: r.required_int64()?,
            shipping_minor: r.required_int64()?,
            total_minor: r.required_int64()?,
            shipping_method: r.text()?,
            shipping_country: r.text()?,
            payment_method: r.required_text()?,
            payment_status: r.required_text()?,
            status: r.required_text()?,
        })
    }
}

/// A row of `order_lines`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderLineRow {
    pub order_id: String,
    pub line_no: i32,
    pub product_id: String,
    pub name: String,
    pub category: Option<String>,
    pub unit_price_minor: i64,
    pub quantity: i32,
    pub discount_minor: i64,
}

impl OrderLineRow {
    /// The lines of `order`, numbered from 1 as the store numbers them.
    pub fn of(order: &Order) -> impl Iterator<Item = OrderLineRow> + '_ {
        order
            .order
            .lines
            .iter()
            .zip(1..)
            .map(|(l, no)| OrderLineRow {
                order_id: order.order.order_id.clone(),
                line_no: no,
                product_id: l.product_id.clone(),
                name: l.name.clone(),
                category: l.category.clone(),
                unit_price_minor: l.unit_price_minor,
                quantity: i32::try_from(l.quantity).unwrap_or(i32::MAX),
                discount_minor: l.discount_minor,
            })
    }
}

impl TableRow for OrderLineRow {
    const TABLE: &'static TableDef = &ORDER_LINES;

    fn write(&self, w: &mut RowWriter) {
        w.text(Some(&self.order_id));
        w.int32(Some(self.line_no));
        w.text(Some(&self.product_id));
        w.text(Some(&self.name));
        w.text(self.category.as_deref());
        w.int64(Some(self.unit_price_minor));
        w.int32(Some(self.quantity));
        w.int64(Some(self.discount_minor));
    }

    fn read(r: &mut RowReader<'_>) -> Result<Self, RowError> {
        Ok(OrderLineRow {
            order_id: r.required_text()?,
            line_no: r.required_int32()?,
            product_id: r.required_text()?,
            name: r.required_text()?,
            category: r.text()?,
            unit_price_minor: r.required_int64()?,
            quantity: r.required_int32()?,
            discount_minor: r.required_int64()?,
        })
    }
}

/// A row of `customers`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CustomerRow {
    pub customer_id: String,
    pub email_sha256: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

impl From<&CustomerSummary> for CustomerRow {
    fn from(c: &CustomerSummary) -> Self {
        CustomerRow {
            customer_id: c.customer_id.clone(),
            email_sha256: c.email_sha256.clone(),
            created_at_ms: c.created_at,
            updated_at_ms: c.updated_at,
        }
    }
}

impl TableRow for CustomerRow {
    const TABLE: &'static TableDef = &CUSTOMERS;

    fn write(&self, w: &mut RowWriter) {
        w.text(Some(&self.customer_id));
        w.text(self.email_sha256.as_deref());
        w.int64(Some(self.created_at_ms));
        w.int64(Some(self.updated_at_ms));
    }

    fn read(r: &mut RowReader<'_>) -> Result<Self, RowError> {
        Ok(CustomerRow {
            customer_id: r.required_text()?,
            email_sha256: r.text()?,
            created_at_ms: r.required_int64()?,
            updated_at_ms: r.required_int64()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rows::{from_batch, to_batch};

    fn round_trip<R: TableRow + Clone + PartialEq + std::fmt::Debug>(rows: Vec<R>) {
        let batch = to_batch(rows.iter()).expect("rows fit their table");
        assert_eq!(from_batch::<R>(&batch).expect("readable"), rows);
    }

    /// A session row as exported before `duration_ms`, `engaged_ms` and the currencies existed.
    fn session_row() -> SessionRow {
        SessionRow {
            session_id: "s".into(),
            anonymous_id: "a".into(),
            user_id: None,
            start_ms: 1,
            end_ms: 20_001,
            event_count: 3,
            page_views: 1,
            entry_url: "https://shop.example/".into(),
            exit_url: "https://shop.example/".into(),
            referrer: None,
            utm_source: None,
            utm_medium: None,
            utm_campaign: None,
            products_viewed: 0,
            cart_adds: 0,
            purchases: 0,
            revenue_minor: 0,
            engaged: true,
            bounce: false,
            device: "desktop".into(),
            session_number: 1,
            duration_ms: None,
            engaged_ms: None,
            currency: None,
            other_revenue: None,
        }
    }

    #[test]
    fn files_written_before_columns_were_added_read_them_as_null() {
        let current = SessionRow {
            duration_ms: Some(20_000),
            engaged_ms: Some(15_000),
            currency: Some("EUR".into()),
            other_revenue: Some(r#"{"GBP":3000}"#.into()),
            ..session_row()
        };
        let batch = to_batch([&current]).expect("rows fit their table");
        let added = 4;
        let older = batch
            .project(&(0..batch.num_columns() - added).collect::<Vec<_>>())
            .unwrap();
        assert_eq!(
            from_batch::<SessionRow>(&older).unwrap(),
            vec![session_row()]
        );
        // A missing column that is not nullable is still a mismatch.
        let without_required = batch
            .project(&(0..batch.num_columns() - added - 1).collect::<Vec<_>>())
            .unwrap();
        assert!(from_batch::<SessionRow>(&without_required).is_err());
    }

    #[test]
    fn every_store_row_round_trips_through_its_table() {
        round_trip(vec![SessionRow {
            user_id: Some("u-1".into()),
            referrer: Some("https://search.example/".into()),
            utm_source: Some("news".into()),
            page_views: 2,
            duration_ms: Some(20_000),
            engaged_ms: Some(12_000),
            currency: Some("EUR".into()),
            other_revenue: Some(r#"{"GBP":3000}"#.into()),
            ..session_row()
        }]);
        round_trip(vec![OrderRow {
            order_id: "o1".into(),
            customer_id: None,
            anonymous_id: Some("a".into()),
            placed_at_ms: 5,
            currency: "EUR".into(),
            subtotal_minor: 100,
            discount_minor: 0,
            tax_minor: 19,
            shipping_minor: 5,
            total_minor: 124,
            shipping_method: None,
            shipping_country: None,
            payment_method: "bank_transfer".into(),
            payment_status: "captured".into(),
            status: "placed".into(),
        }]);
        round_trip(vec![OrderLineRow {
            order_id: "o1".into(),
            line_no: 1,
            product_id: "p".into(),
            name: "Mug".into(),
            category: None,
            unit_price_minor: 100,
            quantity: 1,
            discount_minor: 0,
        }]);
        round_trip(vec![CustomerRow {
            customer_id: "c".into(),
            email_sha256: None,
            created_at_ms: 1,
            updated_at_ms: 2,
        }]);
    }

    #[test]
    fn counters_past_the_int_range_are_capped_not_wrapped() {
        assert_eq!(int32(u32::MAX), i32::MAX);
        assert_eq!(int32(7), 7);
    }
}
