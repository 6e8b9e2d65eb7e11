//! One validated [`Event`] as rows of the `events`, `event_items` and `rec_impressions` tables.
//! Pure.

use retailmind_schema::{device_class, CartLine, Event, Payload};
use serde_json::Value;

use crate::rows::{RowError, RowReader, RowWriter, TableRow};
use crate::tables::{TableDef, EVENTS, EVENT_ITEMS, REC_IMPRESSIONS};

/// Custom event names the storefront sends around recommendations (see `demo-site/static/app.js`).
pub const REC_IMPRESSION_EVENT: &str = "recommendation_impression";
pub const REC_CLICK_EVENT: &str = "recommendation_click";

/// A row of `events`. Fields in column order; `Ord` lets the ETL pick one of two copies of an
/// event the same way whatever order it saw them in.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct EventRow {
    pub event_id: String,
    pub event_type: String,
    pub anonymous_id: String,
    pub user_id: Option<String>,
    pub session_id: Option<String>,
    pub timestamp_ms: i64,
    pub received_at_ms: Option<i64>,
    pub page_url: String,
    pub page_referrer: Option<String>,
    pub page_title: Option<String>,
    pub page_category: Option<String>,
    pub utm_source: Option<String>,
    pub utm_medium: Option<String>,
    pub utm_campaign: Option<String>,
    pub utm_term: Option<String>,
    pub utm_content: Option<String>,
    pub device: String,
    pub user_agent: Option<String>,
    pub locale: Option<String>,
    pub timezone: Option<String>,
    pub screen_width: Option<i32>,
    pub screen_height: Option<i32>,
    pub library: Option<String>,
    pub product_id: Option<String>,
    pub product_name: Option<String>,
    pub product_category: Option<String>,
    pub price_minor: Option<i64>,
    pub quantity: Option<i32>,
    pub currency: Option<String>,
    pub order_id: Option<String>,
    pub cart_id: Option<String>,
    pub value_minor: Option<i64>,
    pub item_count: Option<i32>,
    pub click_element: Option<String>,
    pub click_text: Option<String>,
    pub click_href: Option<String>,
    pub click_outbound: Option<bool>,
    pub search_query: Option<String>,
    pub search_results: Option<i32>,
    pub custom_name: Option<String>,
    pub custom_props: Option<String>,
}

/// A row of `event_items`: one line of a checkout or purchase.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct EventItemRow {
    pub event_id: String,
    pub event_type: String,
    pub anonymous_id: String,
    pub user_id: Option<String>,
    pub session_id: Option<String>,
    pub timestamp_ms: i64,
    pub order_id: Option<String>,
    pub line_no: i32,
    pub product_id: String,
    pub product_name: Option<String>,
    pub product_category: Option<String>,
    pub price_minor: Option<i64>,
    pub quantity: i32,
    pub currency: Option<String>,
}

/// A row of `rec_impressions`: a recommended product shown or followed.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct RecRow {
    pub event_id: String,
    pub action: String,
    pub recommendation_id: String,
    pub anonymous_id: String,
    pub session_id: Option<String>,
    pub timestamp_ms: i64,
    pub placement: Option<String>,
    pub strategy: Option<String>,
    pub product_id: String,
    pub position: Option<i32>,
}

/// Everything one event contributes to the lake tables.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct EventRecord {
    pub event: EventRow,
    pub items: Vec<EventItemRow>,
    pub recs: Vec<RecRow>,
}

fn clamp_i32(v: u32) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

impl EventRecord {
    pub fn from_event(e: &Event) -> EventRecord {
        let ctx = &e.context;
        let utm = ctx.utm.clone().unwrap_or_default();
        let mut row = EventRow {
            event_id: e.event_id.to_string(),
            event_type: e.payload.kind().to_owned(),
            anonymous_id: e.anonymous_id.clone(),
            user_id: e.user_id.clone(),
            session_id: e.session_id.clone(),
            timestamp_ms: e.timestamp,
            received_at_ms: e.received_at,
            page_url: ctx.page.url.clone(),
            page_referrer: ctx.page.referrer.clone(),
            page_title: ctx.page.title.clone(),
            utm_source: utm.source,
            utm_medium: utm.medium,
            utm_campaign: utm.campaign,
            utm_term: utm.term,
            utm_content: utm.content,
            device: device_class(ctx.user_agent.as_deref()).to_owned(),
            user_agent: ctx.user_agent.clone(),
            locale: ctx.locale.clone(),
            timezone: ctx.timezone.clone(),
            screen_width: ctx.screen.map(|s| clamp_i32(s.width)),
            screen_height: ctx.screen.map(|s| clamp_i32(s.height)),
            library: ctx.library.clone(),
            ..EventRow::default()
        };
        let mut items = Vec::new();
        let mut recs = Vec::new();
        let lines = |items: &mut Vec<EventItemRow>,
                     lines: &[CartLine],
                     order_id: Option<&str>,
                     currency: &str| {
            for (i, line) in lines.iter().enumerate() {
                items.push(EventItemRow {
                    event_id: row_id(e),
                    event_type: e.payload.kind().to_owned(),
                    anonymous_id: e.anonymous_id.clone(),
                    user_id: e.user_id.clone(),
                    session_id: e.session_id.clone(),
                    timestamp_ms: e.timestamp,
                    order_id: order_id.map(str::to_owned),
                    line_no: i32::try_from(i).unwrap_or(i32::MAX),
                    product_id: line.product.product_id.clone(),
                    product_name: line.product.name.clone(),
                    product_category: line.product.category.clone(),
                    price_minor: line.product.price_minor,
                    quantity: clamp_i32(line.quantity),
                    currency: Some(
                        line.product
                            .currency
                            .clone()
                            .unwrap_or_else(|| currency.to_owned()),
                    ),
                });
            }
        };
        match &e.payload {
            Payload::PageView(p) => row.page_category = p.category.clone(),
            Payload::Click(c) => {
                row.click_element = Some(c.element.clone());
                row.click_text = c.text.clone();
                row.click_href = c.href.clone();
                row.click_outbound = Some(c.outbound);
            }
            Payload::ProductView(p) => {
                row.product_id = Some(p.product_id.clone());
                row.product_name = p.name.clone();
                row.product_category = p.category.clone();
                row.price_minor = p.price_minor;
                row.currency = p.currency.clone();
            }
            Payload::AddToCart(l) | Payload::RemoveFromCart(l) => {
                row.product_id = Some(l.product.product_id.clone());
                row.product_name = l.product.name.clone();
                row.product_category = l.product.category.clone();
                row.price_minor = l.product.price_minor;
                row.currency = l.product.currency.clone();
                row.quantity = Some(clamp_i32(l.quantity));
            }
            Payload::CheckoutStarted(c) => {
                row.cart_id = c.cart_id.clone();
                row.value_minor = Some(c.value_minor);
                row.currency = Some(c.currency.clone());
                row.item_count = Some(i32::try_from(c.items.len()).unwrap_or(i32::MAX));
                lines(&mut items, &c.items, None, &c.currency);
            }
            Payload::Purchase(p) => {
                row.order_id = Some(p.order_id.clone());
                row.value_minor = Some(p.revenue_minor);
                row.currency = Some(p.currency.clone());
                row.item_count = Some(i32::try_from(p.items.len()).unwrap_or(i32::MAX));
                lines(&mut items, &p.items, Some(&p.order_id), &p.currency);
            }
            Payload::Search(s) => {
                row.search_query = Some(s.query.clone());
                row.search_results = s.results.map(clamp_i32);
            }
            Payload::Custom(c) => {
                row.custom_name = Some(c.name.clone());
                row.custom_props = Some(Value::Object(c.props.clone()).to_string());
                recs = rec_rows(e, &c.name, &c.props);
            }
        }
        EventRecord {
            event: row,
            items,
            recs,
        }
    }

    /// What decides which of two copies of one event is kept: the one the collector accepted
    /// first, then the smaller record, so the choice does not depend on the order of reading.
    pub fn preference_key(&self) -> (i64, &EventRecord) {
        (self.event.received_at_ms.unwrap_or(i64::MAX), self)
    }
}

fn row_id(e: &Event) -> String {
    e.event_id.to_string()
}

/// Rows of `rec_impressions` for a custom event: one per shown product of an impression, one
/// for a click; none for other names or when the recommendation id is missing (the event itself
/// still lands in `events`).
fn rec_rows(e: &Event, name: &str, props: &serde_json::Map<String, Value>) -> Vec<RecRow> {
    let text = |k: &str| props.get(k).and_then(Value::as_str).map(str::to_owned);
    let Some(recommendation_id) = text("recommendation_id") else {
        return Vec::new();
    };
    let base = RecRow {
        event_id: e.event_id.to_string(),
        action: String::new(),
        recommendation_id,
        anonymous_id: e.anonymous_id.clone(),
        session_id: e.session_id.clone(),
        timestamp_ms: e.timestamp,
        placement: text("placement"),
        strategy: text("strategy"),
        product_id: String::new(),
        position: None,
    };
    match name {
        REC_IMPRESSION_EVENT => props
            .get("product_ids")
            .and_then(Value::as_array)
            .map(|ids| {
                ids.iter()
                    .filter_map(Value::as_str)
                    .enumerate()
                    .map(|(i, id)| RecRow {
                        action: "impression".into(),
                        product_id: id.to_owned(),
                        position: i32::try_from(i).ok(),
                        ..base.clone()
                    })
                    .collect()
            })
            .unwrap_or_default(),
        REC_CLICK_EVENT => match text("product_id") {
            Some(product_id) => vec![RecRow {
                action: "click".into(),
                product_id,
                position: props
                    .get("position")
                    .and_then(Value::as_i64)
                    .and_then(|p| i32::try_from(p).ok()),
                ..base
            }],
            None => Vec::new(),
        },
        _ => Vec::new(),
    }
}

impl TableRow for EventRow {
    const TABLE: &'static TableDef = &EVENTS;

    fn write(&self, w: &mut RowWriter) {
        w.text(Some(&self.event_id));
        w.text(Some(&self.event_type));
        w.text(Some(&self.anonymous_id));
        w.text(self.user_id.as_deref());
        w.text(self.session_id.as_deref());
        w.int64(Some(self.timestamp_ms));
        w.int64(self.received_at_ms);
        w.text(Some(&self.page_url));
        w.text(self.page_referrer.as_deref());
        w.text(self.page_title.as_deref());
        w.text(self.page_category.as_deref());
        w.text(self.utm_source.as_deref());
        w.text(self.utm_medium.as_deref());
        w.text(self.utm_campaign.as_deref());
        w.text(self.utm_term.as_deref());
        w.text(self.utm_content.as_deref());
        w.text(Some(&self.device));
        w.text(self.user_agent.as_deref());
        w.text(self.locale.as_deref());
        w.text(self.timezone.as_deref());
        w.int32(self.screen_width);
        w.int32(self.screen_height);
        w.text(self.library.as_deref());
        w.text(self.product_id.as_deref());
        w.text(self.product_name.as_deref());
        w.text(self.product_category.as_deref());
        w.int64(self.price_minor);
        w.int32(self.quantity);
        w.text(self.currency.as_deref());
        w.text(self.order_id.as_deref());
        w.text(self.cart_id.as_deref());
        w.int64(self.value_minor);
        w.int32(self.item_count);
        w.text(self.click_element.as_deref());
        w.text(self.click_text.as_deref());
        w.text(self.click_href.as_deref());
        w.bool(self.click_outbound);
        w.text(self.search_query.as_deref());
        w.int32(self.search_results);
        w.text(self.custom_name.as_deref());
        w.text(self.custom_props.as_deref());
    }

    fn read(r: &mut RowReader<'_>) -> Result<Self, RowError> {
        Ok(EventRow {
            event_id: r.required_text()?,
            event_type: r.required_text()?,
            anonymous_id: r.required_text()?,
            user_id: r.text()?,
            session_id: r.text()?,
            timestamp_ms: r.required_int64()?,
            received_at_ms: r.int64()?,
            page_url: r.required_text()?,
            page_referrer: r.text()?,
            page_title: r.text()?,
            page_category: r.text()?,
            utm_source: r.text()?,
            utm_medium: r.text()?,
            utm_campaign: r.text()?,
            utm_term: r.text()?,
            utm_content: r.text()?,
            device: r.required_text()?,
            user_agent: r.text()?,
            locale: r.text()?,
            timezone: r.text()?,
            screen_width: r.int32()?,
            screen_height: r.int32()?,
            library: r.text()?,
            product_id: r.text()?,
            product_name: r.text()?,
            product_category: r.text()?,
            price_minor: r.int64()?,
            quantity: r.int32()?,
            currency: r.text()?,
            order_id: r.text()?,
            cart_id: r.text()?,
            value_minor: r.int64()?,
            item_count: r.int32()?,
            click_element: r.text()?,
            click_text: r.text()?,
            click_href: r.text()?,
            click_outbound: r.bool()?,
            search_query: r.text()?,
            search_results: r.int32()?,
            custom_name: r.text()?,
            custom_props: r.text()?,
        })
    }
}

impl TableRow for EventItemRow {
    const TABLE: &'static TableDef = &EVENT_ITEMS;

    fn write(&self, w: &mut RowWriter) {
        w.text(Some(&self.event_id));
        w.text(Some(&self.event_type));
        w.text(Some(&self.anonymous_id));
        w.text(self.user_id.as_deref());
        w.text(self.session_id.as_deref());
        w.int64(Some(self.timestamp_ms));
        w.text(self.order_id.as_deref());
        w.int32(Some(self.line_no));
        w.text(Some(&self.product_id));
        w.text(self.product_name.as_deref());
        w.text(self.product_category.as_deref());
        w.int64(self.price_minor);
        w.int32(Some(self.quantity));
        w.text(self.currency.as_deref());
    }

    fn read(r: &mut RowReader<'_>) -> Result<Self, RowError> {
        Ok(EventItemRow {
            event_id: r.required_text()?,
            event_type: r.required_text()?,
            anonymous_id: r.required_text()?,
            user_id: r.text()?,
            session_id: r.text()?,
            timestamp_ms: r.required_int64()?,
            order_id: r.text()?,
            line_no: r.required_int32()?,
            product_id: r.required_text()?,
            product_name: r.text()?,
            product_category: r.text()?,
            price_minor: r.int64()?,
            quantity: r.required_int32()?,
            currency: r.text()?,
        })
    }
}

impl TableRow for RecRow {
    const TABLE: &'static TableDef = &REC_IMPRESSIONS;

    fn write(&self, w: &mut RowWriter) {
        w.text(Some(&self.event_id));
        w.text(Some(&self.action));
        w.text(Some(&self.recommendation_id));
        w.text(Some(&self.anonymous_id));
        w.text(self.session_id.as_deref());
        w.int64(Some(self.timestamp_ms));
        w.text(self.placement.as_deref());
        w.text(self.strategy.as_deref());
        w.text(Some(&self.product_id));
        w.int32(self.position);
    }

    fn read(r: &mut RowReader<'_>) -> Result<Self, RowError> {
        Ok(RecRow {
            event_id: r.required_text()?,
            action: r.required_text()?,
            recommendation_id: r.required_text()?,
            anonymous_id: r.required_text()?,
            session_id: r.text()?,
            timestamp_ms: r.required_int64()?,
            placement: r.text()?,
            strategy: r.text()?,
            product_id: r.required_text()?,
            position: r.int32()?,
        })
    }
}
