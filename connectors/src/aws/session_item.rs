//! A [`Session`] as a DynamoDB item, one attribute per field, so the table can be queried and
//! read by other tools: numbers as `N`, text as `S`, an optional field left out when `None`,
//! and `event_ids` as a list (`L`) of UUID strings in the session's order (a string set
//! could not hold an empty set nor keep the order); `orders` as a list of maps
//! (`{order_id: S, revenue_minor: N, currency: S}`) and `other_revenue` as a list of maps
//! (`{currency: S, revenue_minor: N}`), each left out when empty.

use std::collections::HashMap;
use std::str::FromStr;

use aws_sdk_dynamodb::types::AttributeValue;
use retailmind_schema::{CurrencyRevenue, Session, SessionOrder};
use uuid::Uuid;

use crate::error::{ConnectorError, Result};

/// A DynamoDB item.
pub(crate) type Item = HashMap<String, AttributeValue>;

/// Hash key of the sessions table.
pub(crate) const ANONYMOUS_ID: &str = "anonymous_id";
/// Range key of the sessions table.
pub(crate) const START_MS: &str = "start_ms";
/// The optimistic-concurrency counter the conditional writes compare.
pub(crate) const VERSION: &str = "version";

/// When DynamoDB may delete the item (TTL attribute, epoch seconds).
pub(crate) const EXPIRES_AT: &str = "expires_at";

const SESSION_ID: &str = "session_id";
const USER_ID: &str = "user_id";
/// Last event of the session, what the live panel filters on.
pub(crate) const END_MS: &str = "end_ms";
/// `end_ms - start_ms`, written for those who query the table (PartiQL, exports, Athena's
/// DynamoDB connector) and not read back: the two times it follows from are.
const DURATION_MS: &str = "duration_ms";
const EVENT_COUNT: &str = "event_count";
const PAGE_VIEWS: &str = "page_views";
const ENTRY_URL: &str = "entry_url";
const EXIT_URL: &str = "exit_url";
const REFERRER: &str = "referrer";
const UTM_SOURCE: &str = "utm_source";
const UTM_MEDIUM: &str = "utm_medium";
const UTM_CAMPAIGN: &str = "utm_campaign";
const PRODUCTS_VIEWED: &str = "products_viewed";
const CART_ADDS: &str = "cart_adds";
const PURCHASES: &str = "purchases";
const REVENUE_MINOR: &str = "revenue_minor";
const EVENT_IDS: &str = "event_ids";
const ENGAGED: &str = "engaged";
const BOUNCE: &str = "bounce";
const DEVICE: &str = "device";
const SESSION_NUMBER: &str = "session_number";
/// Absent when the sender reports no engaged time (and in items written before it was kept).
const ENGAGED_MS: &str = "engaged_ms";
/// Absent when the session counted no order (and in items written before it was kept).
const ORDERS: &str = "orders";
const ORDER_ID: &str = "order_id";
/// Absent before any order (and in items written before currencies were told apart).
const CURRENCY: &str = "currency";
/// Absent when every order was in the session's currency.
const OTHER_REVENUE: &str = "other_revenue";

/// A DynamoDB number.
pub(crate) fn number(n: impl ToString) -> AttributeValue {
    AttributeValue::N(n.to_string())
}

/// A DynamoDB string.
pub(crate) fn string(s: impl Into<String>) -> AttributeValue {
    AttributeValue::S(s.into())
}

/// Every field of `session` as an attribute.
pub(crate) fn to_item(session: &Session) -> Item {
    let mut item = Item::new();
    let mut put = |name: &str, value: AttributeValue| {
        item.insert(name.to_owned(), value);
    };
    put(ANONYMOUS_ID, string(&session.anonymous_id));
    put(START_MS, number(session.start_ms));
    put(SESSION_ID, string(&session.session_id));
    put(END_MS, number(session.end_ms));
    put(DURATION_MS, number(session.duration_ms()));
    put(EVENT_COUNT, number(session.event_count));
    put(PAGE_VIEWS, number(session.page_views));
    put(ENTRY_URL, string(&session.entry_url));
    put(EXIT_URL, string(&session.exit_url));
    put(PRODUCTS_VIEWED, number(session.products_viewed));
    put(CART_ADDS, number(session.cart_adds));
    put(PURCHASES, number(session.purchases));
    put(REVENUE_MINOR, number(session.revenue_minor));
    put(VERSION, number(session.version));
    put(ENGAGED, AttributeValue::Bool(session.engaged));
    put(BOUNCE, AttributeValue::Bool(session.bounce));
    put(DEVICE, string(&session.device));
    put(SESSION_NUMBER, number(session.session_number));
    if let Some(ms) = session.engaged_ms {
        put(ENGAGED_MS, number(ms));
    }
    let event_ids = session
        .event_ids
        .iter()
        .map(|id| string(id.to_string()))
        .collect();
    put(EVENT_IDS, AttributeValue::L(event_ids));
    if !session.orders.is_empty() {
        let orders = session
            .orders
            .iter()
            .map(|order| {
                let mut entry = HashMap::from([
                    (ORDER_ID.to_owned(), string(&order.order_id)),
                    (REVENUE_MINOR.to_owned(), number(order.revenue_minor)),
                ]);
                if !order.currency.is_empty() {
                    entry.insert(CURRENCY.to_owned(), string(&order.currency));
                }
                AttributeValue::M(entry)
            })
            .collect();
        put(ORDERS, AttributeValue::L(orders));
    }
    if !session.other_revenue.is_empty() {
        let others = session
            .other_revenue
            .iter()
            .map(|other| {
                AttributeValue::M(HashMap::from([
                    (CURRENCY.to_owned(), string(&other.currency)),
                    (REVENUE_MINOR.to_owned(), number(other.revenue_minor)),
                ]))
            })
            .collect();
        put(OTHER_REVENUE, AttributeValue::L(others));
    }
    for (name, value) in [
        (USER_ID, &session.user_id),
        (REFERRER, &session.referrer),
        (UTM_SOURCE, &session.utm_source),
        (UTM_MEDIUM, &session.utm_medium),
        (UTM_CAMPAIGN, &session.utm_campaign),
        (CURRENCY, &session.currency),
    ] {
        if let Some(value) = value {
            put(name, string(value));
        }
    }
    item
}

/// The TTL of a session that ended at `end_ms`: `ttl_days` after its last event, in epoch
/// seconds as DynamoDB's TTL wants. Every snapshot write moves it, so a session still growing
/// is never deleted.
pub(crate) fn expires_at(end_ms: i64, ttl_days: u32) -> i64 {
    end_ms.div_euclid(1000) + i64::from(ttl_days) * 86_400
}

/// The session an item of the sessions table holds.
pub(crate) fn from_item(item: &Item) -> Result<Session> {
    let reader = ItemReader(item);
    Ok(Session {
        session_id: reader.string(SESSION_ID)?,
        anonymous_id: reader.string(ANONYMOUS_ID)?,
        user_id: reader.optional_string(USER_ID)?,
        start_ms: reader.number(START_MS)?,
        end_ms: reader.number(END_MS)?,
        event_count: reader.number(EVENT_COUNT)?,
        page_views: reader.number(PAGE_VIEWS)?,
        entry_url: reader.string(ENTRY_URL)?,
        exit_url: reader.string(EXIT_URL)?,
        referrer: reader.optional_string(REFERRER)?,
        utm_source: reader.optional_string(UTM_SOURCE)?,
        utm_medium: reader.optional_string(UTM_MEDIUM)?,
        utm_campaign: reader.optional_string(UTM_CAMPAIGN)?,
        products_viewed: reader.number(PRODUCTS_VIEWED)?,
        cart_adds: reader.number(CART_ADDS)?,
        purchases: reader.number(PURCHASES)?,
        revenue_minor: reader.number(REVENUE_MINOR)?,
        currency: reader.optional_string(CURRENCY)?,
        other_revenue: reader.other_revenue()?,
        event_ids: reader.uuids(EVENT_IDS)?,
        orders: reader.orders()?,
        version: reader.number(VERSION)?,
        engaged_ms: match reader.0.get(ENGAGED_MS) {
            None => None,
            Some(_) => Some(reader.number(ENGAGED_MS)?),
        },
        engaged: reader.flag(ENGAGED)?,
        bounce: reader.flag(BOUNCE)?,
        device: reader.optional_string(DEVICE)?.unwrap_or_default(),
        session_number: match reader.0.get(SESSION_NUMBER) {
            None => 0,
            Some(_) => reader.number(SESSION_NUMBER)?,
        },
    })
}

/// Typed access to an item's attributes; every mismatch is [`ConnectorError::Corrupt`].
struct ItemReader<'a>(&'a Item);

impl ItemReader<'_> {
    fn corrupt(&self, name: &str, detail: impl std::fmt::Display) -> ConnectorError {
        let key = self
            .0
            .get(ANONYMOUS_ID)
            .and_then(|v| v.as_s().ok())
            .map_or("?", String::as_str);
        ConnectorError::Corrupt {
            what: format!("session item of {key:?}"),
            detail: format!("attribute {name}: {detail}"),
        }
    }

    fn optional_string(&self, name: &str) -> Result<Option<String>> {
        match self.0.get(name) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::S(s)) => Ok(Some(s.clone())),
            Some(other) => Err(self.corrupt(name, format!("expected a string, got {other:?}"))),
        }
    }

    fn string(&self, name: &str) -> Result<String> {
        self.optional_string(name)?
            .ok_or_else(|| self.corrupt(name, "missing"))
    }

    fn number<T: FromStr>(&self, name: &str) -> Result<T>
    where
        T::Err: std::fmt::Display,
    {
        match self.0.get(name) {
            Some(AttributeValue::N(n)) => n.parse().map_err(|e| self.corrupt(name, e)),
            Some(other) => Err(self.corrupt(name, format!("expected a number, got {other:?}"))),
            None => Err(self.corrupt(name, "missing")),
        }
    }

    /// A boolean; absent (items written before the field existed) is `false`.
    fn flag(&self, name: &str) -> Result<bool> {
        match self.0.get(name) {
            None => Ok(false),
            Some(AttributeValue::Bool(b)) => Ok(*b),
            Some(other) => Err(self.corrupt(name, format!("expected a boolean, got {other:?}"))),
        }
    }

    /// The session's orders; absent is none.
    fn orders(&self) -> Result<Vec<SessionOrder>> {
        self.maps(ORDERS, |order| {
            Ok(SessionOrder {
                order_id: order.string(ORDER_ID)?,
                revenue_minor: order.number(REVENUE_MINOR)?,
                currency: order.optional_string(CURRENCY)?.unwrap_or_default(),
            })
        })
    }

    /// The revenue in other currencies; absent is none.
    fn other_revenue(&self) -> Result<Vec<CurrencyRevenue>> {
        self.maps(OTHER_REVENUE, |other| {
            Ok(CurrencyRevenue {
                currency: other.string(CURRENCY)?,
                revenue_minor: other.number(REVENUE_MINOR)?,
            })
        })
    }

    /// A list of maps, each read by `read`; absent is empty.
    fn maps<T>(&self, name: &str, read: impl Fn(ItemReader<'_>) -> Result<T>) -> Result<Vec<T>> {
        self.list(name)?
            .iter()
            .map(|value| match value {
                AttributeValue::M(entry) => read(ItemReader(entry)),
                other => Err(self.corrupt(name, format!("expected a map, got {other:?}"))),
            })
            .collect()
    }

    /// A list attribute; absent is empty.
    fn list(&self, name: &str) -> Result<&[AttributeValue]> {
        match self.0.get(name) {
            Some(AttributeValue::L(values)) => Ok(values),
            None => Ok(&[]),
            Some(other) => Err(self.corrupt(name, format!("expected a list, got {other:?}"))),
        }
    }

    fn uuids(&self, name: &str) -> Result<Vec<Uuid>> {
        self.list(name)?
            .iter()
            .map(|value| match value {
                AttributeValue::S(s) => Uuid::parse_str(s).map_err(|e| self.corrupt(name, e)),
                other => Err(self.corrupt(name, format!("expected a UUID string, got {other:?}"))),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_fixtures::full_session as full;

    #[test]
    fn sessions_expire_ttl_days_after_their_last_event() {
        let end_ms = 1_764_064_800_999; // 2025-11-25T10:00:00.999Z
        assert_eq!(expires_at(end_ms, 0), 1_764_064_800);
        assert_eq!(expires_at(end_ms, 30), 1_764_064_800 + 30 * 86_400);
    }

    /// DynamoDB's size of a value: strings and numbers by their text, lists and maps with 3
    /// bytes of their own and 1 per element (the published item-size rules).
    fn size_of(value: &AttributeValue) -> usize {
        match value {
            AttributeValue::S(s) => s.len(),
            AttributeValue::N(n) => n.len().div_ceil(2) + 1,
            AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
            AttributeValue::L(items) => 3 + items.iter().map(|v| 1 + size_of(v)).sum::<usize>(),
            AttributeValue::M(entries) => {
                3 + entries
                    .iter()
                    .map(|(k, v)| 1 + k.len() + size_of(v))
                    .sum::<usize>()
            }
            other => panic!("no size rule for {other:?}"),
        }
    }

    #[test]
    fn a_session_at_the_largest_event_cap_with_the_longest_fields_fits_one_item() {
        let limits = retailmind_schema::Limits::default();
        let url = "u".repeat(limits.max_url_len);
        let text = Some("t".repeat(limits.max_text_len));
        let session = Session {
            anonymous_id: "a".repeat(limits.max_id_len),
            user_id: Some("u".repeat(limits.max_id_len)),
            session_id: uuid::Uuid::now_v7().to_string(),
            entry_url: url.clone(),
            exit_url: url.clone(),
            referrer: Some(url),
            utm_source: text.clone(),
            utm_medium: text.clone(),
            utm_campaign: text,
            device: "desktop".into(),
            engaged_ms: Some(u64::MAX),
            revenue_minor: i64::MIN,
            event_ids: (0..retailmind_schema::SESSION_EVENTS_LIMIT)
                .map(|_| uuid::Uuid::now_v7())
                .collect(),
            orders: (0..retailmind_schema::MAX_SESSION_ORDERS)
                .map(|n| SessionOrder {
                    order_id: format!("{n:0>width$}", width = limits.max_id_len),
                    revenue_minor: i64::MIN,
                    currency: "EUR".into(),
                })
                .collect(),
            currency: Some("EUR".into()),
            other_revenue: (0..retailmind_schema::MAX_OTHER_CURRENCIES)
                .map(|n| CurrencyRevenue {
                    currency: format!("X{n:0>2}"),
                    revenue_minor: i64::MIN,
                })
                .collect(),
            ..full()
        };
        let mut item = to_item(&session);
        item.insert(EXPIRES_AT.into(), number(expires_at(i64::MAX, 3650)));
        let bytes: usize = item.iter().map(|(k, v)| k.len() + size_of(v)).sum();
        assert!(
            bytes < 400 * 1024 * 9 / 10,
            "{bytes} bytes: leave a tenth of DynamoDB's 400 KB for new fields"
        );
    }

    #[test]
    fn round_trips_every_field() {
        let session = full();
        assert_eq!(from_item(&to_item(&session)).expect("decodes"), session);
        let bare = Session {
            anonymous_id: "a-2".into(),
            version: 1,
            ..Session::default()
        };
        let item = to_item(&bare);
        assert!(
            !item.contains_key(USER_ID)
                && !item.contains_key(UTM_SOURCE)
                && !item.contains_key(ENGAGED_MS)
        );
        assert_eq!(from_item(&item).expect("decodes"), bare);
    }

    #[test]
    fn stores_numbers_as_numbers() {
        let item = to_item(&full());
        assert_eq!(item[START_MS], AttributeValue::N("1732527000000".into()));
        assert_eq!(item[VERSION], AttributeValue::N("3".into()));
        assert_eq!(
            item[DURATION_MS],
            AttributeValue::N("600000".into()),
            "the duration (ten minutes) is an attribute for those who query the table"
        );
        assert!(matches!(&item[EVENT_IDS], AttributeValue::L(ids) if ids.len() == 2));
    }

    #[test]
    fn a_wrong_type_is_corrupt() {
        let mut item = to_item(&full());
        item.insert(EVENT_COUNT.into(), string("seven"));
        let err = from_item(&item).expect_err("corrupt");
        assert!(
            matches!(err, ConnectorError::Corrupt { ref detail, .. } if detail.contains(EVENT_COUNT))
        );
    }
}
