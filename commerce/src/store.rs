//! The orders and customers database: one SQL data-access layer over PostgreSQL (Amazon RDS in
//! production) and SQLite (the embedded default), through sqlx's `Any` driver. Every statement
//! is written once in the SQL both understand and is run by the tests against both.
//!
//! Profile figures (lifetime value, loyalty, favourite categories, first and last seen) are
//! aggregated from the orders, views and sessions when read, never kept as running totals, so
//! a retried write or a replayed stream cannot skew them.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Map, Value};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, AssertSqlSafe, Row};
use tracing::info;

use crate::error::{CommerceError, Result};
use crate::order::{
    fingerprint, NewOrder, Order, OrderLine, OrderStatus, Payment, PaymentMethod, PaymentStatus,
    Shipping, StatusChange, StatusEntry,
};
use crate::profile::{
    favourite_categories, CurrencyValue, CustomerProfile, Loyalty, SessionSummary, Traits,
    VisitFacts,
};

/// The result of placing an order.
#[derive(Clone, Debug, PartialEq)]
pub struct Placed {
    pub order: Order,
    /// The same order was stored before (same Idempotency-Key, or same order id and content).
    pub replayed: bool,
    /// Its purchase event is on the stream already.
    pub emitted: bool,
}

/// What forgetting a customer removed.
#[derive(Clone, Debug, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct Forgotten {
    /// The queued request for the lake job.
    pub request_id: String,
    /// The customer's browsers, whose sessions the caller removes from the session store.
    pub anonymous_ids: Vec<String>,
    /// Orders kept for the books but no longer linked to the customer.
    pub orders_unlinked: u64,
}

/// A right-to-be-forgotten request waiting for the lake job.
#[derive(Clone, Debug, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct DeletionRequest {
    pub request_id: String,
    pub customer_id: String,
    pub anonymous_ids: Vec<String>,
    pub requested_at: i64,
}

/// Orders and customer profiles (PostgreSQL on Amazon RDS, SQLite embedded).
#[async_trait]
pub trait CommerceStore: Send + Sync + 'static {
    /// Stores a checked order once per Idempotency-Key and once per order id. A repeat with the
    /// same content answers the stored order (`replayed`); the same key or order id with other
    /// content is refused.
    async fn place_order(&self, key: &str, order: &NewOrder, now_ms: i64) -> Result<Placed>;

    /// Notes that the order's purchase event reached the stream.
    async fn mark_emitted(&self, order_id: &str) -> Result<()>;

    /// Moves an order to a new status and appends it to the history; a repeat of the current
    /// status changes nothing.
    async fn change_status(
        &self,
        order_id: &str,
        change: &StatusChange,
        now_ms: i64,
    ) -> Result<Order>;

    async fn order(&self, order_id: &str) -> Result<Option<Order>>;

    /// The customer's profile; `None` when nothing is known of them.
    async fn customer(&self, customer_id: &str) -> Result<Option<CustomerProfile>>;

    /// Replaces the customer's traits (creating the customer if new).
    async fn put_traits(&self, customer_id: &str, traits: Traits, now_ms: i64) -> Result<()>;

    /// Records what the stream says about identified customers (links, identify traits,
    /// category views, sessions). Idempotent; customers who asked to be forgotten are skipped.
    async fn observe(&self, facts: &VisitFacts, now_ms: i64) -> Result<()>;

    /// Removes the profile, its links, views and session summaries; unlinks its orders; queues
    /// the lake deletion. `NotFound` when nothing is known of the customer.
    async fn forget(&self, customer_id: &str, now_ms: i64) -> Result<Forgotten>;

    /// Deletion requests the lake job has not finished.
    async fn pending_deletions(&self) -> Result<Vec<DeletionRequest>>;

    /// Marks a deletion request done in the lake.
    async fn deletion_done(&self, request_id: &str, now_ms: i64) -> Result<()>;

    /// Whether the database answers (for `/readyz`).
    async fn ready(&self) -> Result<()>;

    /// Every order placed in `[from_ms, to_ms)` with its lines and history, oldest first: a
    /// day of the lake's orders tables.
    async fn orders_placed_between(&self, from_ms: i64, to_ms: i64) -> Result<Vec<Order>>;

    /// When the orders changed (placed, status, forgotten customer) at or after `since_ms` were
    /// placed, without repeats: the lake days to write again.
    async fn placed_at_of_orders_changed_since(&self, since_ms: i64) -> Result<Vec<i64>>;

    /// Every customer as the lake may hold them: no traits, only the hash of the email.
    async fn customer_summaries(&self) -> Result<Vec<CustomerSummary>>;
}

/// A customer as the lake's `customers` table holds them (pseudonymised).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CustomerSummary {
    pub customer_id: String,
    /// Hex SHA-256 of the trimmed, lower-cased email.
    pub email_sha256: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Which orders [`SqlCommerce::load_orders`] reads; every query of it filters `orders` alike.
#[derive(Clone, Copy)]
enum Pick<'a> {
    One(&'a str),
    PlacedIn(i64, i64),
}

impl Pick<'_> {
    /// The condition on `orders`, its parameters numbered from `$1`.
    fn condition(self) -> &'static str {
        match self {
            Pick::One(_) => "order_id = $1",
            Pick::PlacedIn(..) => "placed_at >= $1 AND placed_at < $2",
        }
    }

    fn bind<'q>(
        self,
        query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    ) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>
    where
        Self: 'q,
    {
        match self {
            Pick::One(id) => query.bind(id.to_owned()),
            Pick::PlacedIn(from, to) => query.bind(from).bind(to),
        }
    }
}

/// Migrations, in order; each runs once per database, in a transaction.
const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        include_str!("../migrations/0001_orders_and_customers.sql"),
    ),
    (
        2,
        include_str!("../migrations/0002_customer_sessions_by_visitor.sql"),
    ),
    (
        3,
        include_str!("../migrations/0003_customer_sessions_currency.sql"),
    ),
];

/// The one implementation, for both databases.
pub struct SqlCommerce {
    pool: AnyPool,
}

impl SqlCommerce {
    /// Opens `url` (`postgres://…` or `sqlite://path`) and brings its schema up to date.
    /// A SQLite file and its folder are created when missing.
    pub async fn connect(url: &str, max_connections: u32) -> Result<SqlCommerce> {
        sqlx::any::install_default_drivers();
        let url = sqlite_create_mode(url);
        if let Some(path) = url.strip_prefix("sqlite://") {
            let file = path.split('?').next().unwrap_or_default();
            if let Some(dir) = std::path::Path::new(file).parent() {
                if !dir.as_os_str().is_empty() {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| CommerceError::Database(sqlx::Error::Io(e)))?;
                }
            }
        }
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(10))
            .connect(&url)
            .await?;
        let store = SqlCommerce { pool };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<()> {
        // Two services starting at once may both create the bookkeeping table: PostgreSQL can
        // then fail one of them on its catalogue, so that step is retried.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let created = sqlx::query(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
            )
            .execute(&self.pool)
            .await;
            match created {
                Ok(_) => break,
                Err(_) if attempt < 5 => tokio::time::sleep(Duration::from_millis(100)).await,
                Err(e) => return Err(e.into()),
            }
        }
        for (version, sql) in MIGRATIONS {
            let mut tx = self.pool.begin().await?;
            // Claims the migration; another service applying it at the same time makes this
            // wait for its commit and then do nothing.
            let claimed = sqlx::query(
                "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
            .bind(*version)
            .bind(crate::now_ms())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if claimed == 0 {
                tx.rollback().await?;
                continue;
            }
            for statement in statements(sql) {
                sqlx::query(AssertSqlSafe(statement))
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            info!(version, "commerce database migrated");
        }
        Ok(())
    }

    async fn load_order(&self, order_id: &str) -> Result<Option<Order>> {
        Ok(self.load_orders(Pick::One(order_id)).await?.pop())
    }

    /// The orders `pick` selects with their lines and history, by placing time: three queries
    /// whatever their number.
    async fn load_orders(&self, pick: Pick<'_>) -> Result<Vec<Order>> {
        let condition = pick.condition();
        let rows = pick
            .bind(sqlx::query(AssertSqlSafe(format!(
                "SELECT {ORDER_COLUMNS} FROM orders WHERE {condition} ORDER BY placed_at, order_id"
            ))))
            .fetch_all(&self.pool)
            .await?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let mut lines: HashMap<String, Vec<OrderLine>> = HashMap::new();
        for r in pick
            .bind(sqlx::query(AssertSqlSafe(format!(
                "SELECT order_id, product_id, name, category, unit_price_minor, quantity,
                        discount_minor
                 FROM order_lines
                 WHERE order_id IN (SELECT order_id FROM orders WHERE {condition})
                 ORDER BY order_id, line_no"
            ))))
            .fetch_all(&self.pool)
            .await?
        {
            lines.entry(r.try_get(0)?).or_default().push(OrderLine {
                product_id: r.try_get(1)?,
                name: r.try_get(2)?,
                category: r.try_get(3)?,
                unit_price_minor: r.try_get(4)?,
                quantity: r.try_get(5)?,
                discount_minor: r.try_get(6)?,
            });
        }
        let mut history: HashMap<String, Vec<StatusEntry>> = HashMap::new();
        for r in pick
            .bind(sqlx::query(AssertSqlSafe(format!(
                "SELECT order_id, status, at, note FROM order_status_history
                 WHERE order_id IN (SELECT order_id FROM orders WHERE {condition})
                 ORDER BY order_id, seq"
            ))))
            .fetch_all(&self.pool)
            .await?
        {
            history.entry(r.try_get(0)?).or_default().push(StatusEntry {
                status: status_of(&r.try_get::<String, _>(1)?)?,
                at: r.try_get(2)?,
                note: r.try_get(3)?,
            });
        }
        rows.iter()
            .map(|row| {
                let id: String = row.try_get(0)?;
                order_from_row(
                    row,
                    lines.remove(&id).unwrap_or_default(),
                    history.remove(&id).unwrap_or_default(),
                )
            })
            .collect()
    }
}

/// Columns of `orders` in the order [`order_from_row`] reads them.
const ORDER_COLUMNS: &str = "order_id, customer_id, anonymous_id, placed_at, currency, \
    subtotal_minor, discount_minor, tax_minor, shipping_minor, total_minor, shipping_method, \
    shipping_country, shipping_postal_code, payment_method, card_brand, card_last4, \
    payment_status, page_url, status, created_at, updated_at";

fn order_from_row(r: &AnyRow, lines: Vec<OrderLine>, history: Vec<StatusEntry>) -> Result<Order> {
    let method: Option<String> = r.try_get(10)?;
    let country: Option<String> = r.try_get(11)?;
    let shipping = match (method, country) {
        (Some(method), Some(country)) => Some(Shipping {
            method,
            country,
            postal_code: r.try_get(12)?,
        }),
        _ => None,
    };
    Ok(Order {
        order: NewOrder {
            order_id: r.try_get(0)?,
            customer_id: r.try_get(1)?,
            anonymous_id: r.try_get(2)?,
            placed_at: Some(r.try_get(3)?),
            currency: r.try_get(4)?,
            lines,
            subtotal_minor: r.try_get(5)?,
            discount_minor: r.try_get(6)?,
            tax_minor: r.try_get(7)?,
            shipping_minor: r.try_get(8)?,
            total_minor: r.try_get(9)?,
            shipping,
            payment: Payment {
                method: word::<PaymentMethod>(&r.try_get::<String, _>(13)?)?,
                card_brand: r.try_get(14)?,
                card_last4: r.try_get(15)?,
                status: word::<PaymentStatus>(&r.try_get::<String, _>(16)?)?,
            },
            page_url: r.try_get(17)?,
            status: status_of(&r.try_get::<String, _>(18)?)?,
        },
        history,
        created_at: r.try_get(19)?,
        updated_at: r.try_get(20)?,
    })
}

/// A snake_case enum stored as its wire name.
fn word<T: serde::de::DeserializeOwned>(text: &str) -> Result<T> {
    serde_json::from_value(Value::String(text.to_owned())).map_err(|e| {
        CommerceError::Database(sqlx::Error::Decode(
            format!("stored value {text:?}: {e}").into(),
        ))
    })
}

fn word_of<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(Value::String(s)) => s,
        _ => unreachable!("a unit enum serializes as a string"),
    }
}

fn status_of(text: &str) -> Result<OrderStatus> {
    OrderStatus::parse(text).ok_or_else(|| {
        CommerceError::Database(sqlx::Error::Decode(
            format!("stored order status {text:?} is not known").into(),
        ))
    })
}

/// sqlx opens an existing SQLite file only, unless asked to create it.
fn sqlite_create_mode(url: &str) -> String {
    if url.starts_with("sqlite:") && !url.contains("mode=") {
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}mode=rwc")
    } else {
        url.to_owned()
    }
}

/// The statements of a migration file: comments dropped, split at semicolons.
fn statements(sql: &str) -> Vec<String> {
    let text: String = sql
        .lines()
        .map(|l| l.split("--").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n");
    text.split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

#[async_trait]
impl CommerceStore for SqlCommerce {
    async fn place_order(&self, key: &str, order: &NewOrder, now_ms: i64) -> Result<Placed> {
        let print = fingerprint(order);
        let placed_at = order.placed_at.unwrap_or(now_ms);
        let mut tx = self.pool.begin().await?;
        let shipping = order.shipping.as_ref();
        // Conflicts on either key (idempotency key, order id) leave the stored order alone;
        // a concurrent request with the same key waits here for the first one's commit.
        let inserted = sqlx::query(
            "INSERT INTO orders (order_id, idempotency_key, request_sha256, customer_id,
                anonymous_id, placed_at, currency, subtotal_minor, discount_minor, tax_minor,
                shipping_minor, total_minor, shipping_method, shipping_country,
                shipping_postal_code, payment_method, card_brand, card_last4, payment_status,
                page_url, status, emitted, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,
                $18, $19, $20, $21, 0, $22, $22)
             ON CONFLICT DO NOTHING",
        )
        .bind(&order.order_id)
        .bind(key)
        .bind(&print)
        .bind(&order.customer_id)
        .bind(&order.anonymous_id)
        .bind(placed_at)
        .bind(&order.currency)
        .bind(order.subtotal_minor)
        .bind(order.discount_minor)
        .bind(order.tax_minor)
        .bind(order.shipping_minor)
        .bind(order.total_minor)
        .bind(shipping.map(|s| s.method.clone()))
        .bind(shipping.map(|s| s.country.clone()))
        .bind(shipping.and_then(|s| s.postal_code.clone()))
        .bind(word_of(&order.payment.method))
        .bind(&order.payment.card_brand)
        .bind(&order.payment.card_last4)
        .bind(word_of(&order.payment.status))
        .bind(&order.page_url)
        .bind(order.status.as_str())
        .bind(now_ms)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            tx.rollback().await?;
            return self.replay(key, order, &print).await;
        }
        for (i, line) in order.lines.iter().enumerate() {
            sqlx::query(
                "INSERT INTO order_lines (order_id, line_no, product_id, name, category,
                    unit_price_minor, quantity, discount_minor)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(&order.order_id)
            .bind(i as i64 + 1)
            .bind(&line.product_id)
            .bind(&line.name)
            .bind(&line.category)
            .bind(line.unit_price_minor)
            .bind(line.quantity)
            .bind(line.discount_minor)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "INSERT INTO order_status_history (order_id, seq, status, at, note)
             VALUES ($1, 1, $2, $3, NULL)",
        )
        .bind(&order.order_id)
        .bind(order.status.as_str())
        .bind(placed_at)
        .execute(&mut *tx)
        .await?;
        if let (Some(customer), Some(anonymous)) = (&order.customer_id, &order.anonymous_id) {
            link(&mut tx, customer, anonymous, placed_at).await?;
        }
        tx.commit().await?;
        let stored = self
            .order(&order.order_id)
            .await?
            .ok_or_else(|| CommerceError::NotFound {
                what: "order",
                id: order.order_id.clone(),
            })?;
        Ok(Placed {
            order: stored,
            replayed: false,
            emitted: false,
        })
    }

    async fn mark_emitted(&self, order_id: &str) -> Result<()> {
        sqlx::query("UPDATE orders SET emitted = 1 WHERE order_id = $1")
            .bind(order_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn change_status(
        &self,
        order_id: &str,
        change: &StatusChange,
        now_ms: i64,
    ) -> Result<Order> {
        let at = change.at.unwrap_or(now_ms);
        loop {
            let mut tx = self.pool.begin().await?;
            let current: Option<String> =
                sqlx::query_scalar("SELECT status FROM orders WHERE order_id = $1")
                    .bind(order_id)
                    .fetch_optional(&mut *tx)
                    .await?;
            let Some(current) = current else {
                return Err(CommerceError::NotFound {
                    what: "order",
                    id: order_id.to_owned(),
                });
            };
            let from = status_of(&current)?;
            if from == change.status {
                tx.rollback().await?;
                break;
            }
            if !from.can_become(change.status) {
                return Err(CommerceError::IllegalTransition {
                    order_id: order_id.to_owned(),
                    from,
                    to: change.status,
                });
            }
            let payment_status = match change.status {
                OrderStatus::Paid => Some("captured"),
                OrderStatus::Refunded => Some("refunded"),
                _ => None,
            };
            // Conditional on the status read: of two updates at once, the second finds it
            // changed and starts over from the new status.
            let moved = sqlx::query(
                "UPDATE orders SET status = $1, updated_at = $2,
                    payment_status = COALESCE($3, payment_status)
                 WHERE order_id = $4 AND status = $5",
            )
            .bind(change.status.as_str())
            .bind(now_ms)
            .bind(payment_status)
            .bind(order_id)
            .bind(from.as_str())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if moved == 0 {
                tx.rollback().await?;
                continue;
            }
            sqlx::query(
                "INSERT INTO order_status_history (order_id, seq, status, at, note)
                 SELECT $1, COALESCE(MAX(seq), 0) + 1, $2, $3, $4
                 FROM order_status_history WHERE order_id = $1",
            )
            .bind(order_id)
            .bind(change.status.as_str())
            .bind(at)
            .bind(&change.note)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            break;
        }
        self.order(order_id)
            .await?
            .ok_or_else(|| CommerceError::NotFound {
                what: "order",
                id: order_id.to_owned(),
            })
    }

    async fn order(&self, order_id: &str) -> Result<Option<Order>> {
        self.load_order(order_id).await
    }

    async fn customer(&self, customer_id: &str) -> Result<Option<CustomerProfile>> {
        // One snapshot for every query below: read piecemeal, a profile could show a session
        // from a commit whose traits it missed. PostgreSQL needs REPEATABLE READ for that;
        // a SQLite read transaction is a snapshot already.
        let mut tx = self.pool.begin().await?;
        if tx.backend_name().to_ascii_lowercase().contains("postgres") {
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                .execute(&mut *tx)
                .await?;
        }
        let row = sqlx::query("SELECT traits, email_sha256 FROM customers WHERE customer_id = $1")
            .bind(customer_id)
            .fetch_optional(&mut *tx)
            .await?;
        let (traits, email_sha256) = match &row {
            Some(r) => (parse_traits(&r.try_get::<String, _>(0)?)?, r.try_get(1)?),
            None => (Map::new(), None),
        };
        let anonymous_ids: Vec<String> = sqlx::query_scalar(
            "SELECT anonymous_id FROM customer_identities WHERE customer_id = $1
             ORDER BY linked_at, anonymous_id",
        )
        .bind(customer_id)
        .fetch_all(&mut *tx)
        .await?;
        let counted = "status NOT IN ('cancelled', 'refunded')";
        let mut lifetime_value = Vec::new();
        for r in sqlx::query(AssertSqlSafe(format!(
            "SELECT currency, COUNT(*), CAST(COALESCE(SUM(total_minor), 0) AS BIGINT),
                CAST(COALESCE(SUM(total_minor / 100), 0) AS BIGINT)
             FROM orders WHERE customer_id = $1 AND {counted} GROUP BY currency"
        )))
        .bind(customer_id)
        .fetch_all(&mut *tx)
        .await?
        {
            let orders: i64 = r.try_get(1)?;
            let revenue: i64 = r.try_get(2)?;
            lifetime_value.push((
                CurrencyValue {
                    currency: r.try_get(0)?,
                    orders: orders as u64,
                    revenue_minor: revenue,
                    average_order_minor: if orders > 0 { revenue / orders } else { 0 },
                },
                r.try_get::<i64, _>(3)?,
            ));
        }
        lifetime_value.sort_by(|a, b| {
            b.0.revenue_minor
                .cmp(&a.0.revenue_minor)
                .then_with(|| a.0.currency.cmp(&b.0.currency))
        });
        let points: i64 = lifetime_value.iter().map(|(_, p)| p).sum();
        let lifetime_value: Vec<CurrencyValue> =
            lifetime_value.into_iter().map(|(v, _)| v).collect();
        let lifetime_orders = lifetime_value.iter().map(|v| v.orders).sum();
        let any_order: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM orders WHERE customer_id = $1")
                .bind(customer_id)
                .fetch_one(&mut *tx)
                .await?;
        let bought = category_counts(
            &mut tx,
            format!(
                "SELECT l.category, CAST(SUM(l.quantity) AS BIGINT) FROM order_lines l
                 JOIN orders o ON o.order_id = l.order_id
                 WHERE o.customer_id = $1 AND o.{counted} AND l.category IS NOT NULL
                 GROUP BY l.category"
            ),
            customer_id,
        )
        .await?;
        let viewed = category_counts(
            &mut tx,
            "SELECT category, COUNT(*) FROM customer_category_views WHERE customer_id = $1
             GROUP BY category"
                .to_owned(),
            customer_id,
        )
        .await?;
        let last_session = sqlx::query(
            "SELECT session_id, anonymous_id, start_at, end_at, page_views, events, purchases,
                revenue_minor, device, entry_url, utm_source, currency
             FROM customer_sessions WHERE customer_id = $1
             ORDER BY start_at DESC, session_id DESC LIMIT 1",
        )
        .bind(customer_id)
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| -> Result<SessionSummary> {
            Ok(SessionSummary {
                session_id: r.try_get(0)?,
                anonymous_id: r.try_get(1)?,
                start: r.try_get(2)?,
                end: r.try_get(3)?,
                page_views: r.try_get::<i64, _>(4)? as u32,
                events: r.try_get::<i64, _>(5)? as u32,
                purchases: r.try_get::<i64, _>(6)? as u32,
                revenue_minor: r.try_get(7)?,
                device: r.try_get(8)?,
                entry_url: r.try_get(9)?,
                utm_source: r.try_get(10)?,
                currency: r.try_get(11)?,
            })
        })
        .transpose()?;
        let seen = sqlx::query(
            "SELECT MIN(t), MAX(t) FROM (
                SELECT placed_at AS t FROM orders WHERE customer_id = $1
                UNION ALL SELECT start_at FROM customer_sessions WHERE customer_id = $1
                UNION ALL SELECT end_at FROM customer_sessions WHERE customer_id = $1
                UNION ALL SELECT linked_at FROM customer_identities WHERE customer_id = $1
                UNION ALL SELECT at FROM customer_category_views WHERE customer_id = $1
             ) AS times",
        )
        .bind(customer_id)
        .fetch_one(&mut *tx)
        .await?;
        let first_seen: Option<i64> = seen.try_get(0)?;
        let last_seen: Option<i64> = seen.try_get(1)?;
        if row.is_none() && anonymous_ids.is_empty() && any_order == 0 && first_seen.is_none() {
            return Ok(None);
        }
        Ok(Some(CustomerProfile {
            customer_id: customer_id.to_owned(),
            anonymous_ids,
            traits,
            email_sha256,
            loyalty: Loyalty::from_points(points),
            first_seen,
            last_seen,
            lifetime_orders,
            lifetime_value,
            favourite_categories: favourite_categories(&bought, &viewed, 3),
            last_session,
        }))
    }

    async fn put_traits(&self, customer_id: &str, traits: Traits, now_ms: i64) -> Result<()> {
        let mut conn = self.pool.acquire().await?;
        upsert_customer(
            &mut conn,
            customer_id,
            traits.values,
            traits.email_sha256,
            now_ms,
        )
        .await
    }

    async fn observe(&self, facts: &VisitFacts, now_ms: i64) -> Result<()> {
        if facts.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        let mut forgotten = HashMap::<&str, bool>::new();
        macro_rules! skip_forgotten {
            ($customer:expr) => {{
                let c: &str = $customer;
                if !forgotten.contains_key(c) {
                    let gone: i64 = sqlx::query_scalar(
                        "SELECT COUNT(*) FROM deletion_requests WHERE customer_id = $1",
                    )
                    .bind(c)
                    .fetch_one(&mut *tx)
                    .await?;
                    forgotten.insert(c, gone > 0);
                }
                if forgotten[c] {
                    continue;
                }
            }};
        }
        for (customer, anonymous, at) in &facts.links {
            skip_forgotten!(customer);
            link(&mut tx, customer, anonymous, *at).await?;
        }
        for (customer, event_id, category, at) in &facts.category_views {
            skip_forgotten!(customer);
            sqlx::query(
                "INSERT INTO customer_category_views (customer_id, event_id, category, at)
                 VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            )
            .bind(customer)
            .bind(event_id)
            .bind(category)
            .bind(*at)
            .execute(&mut *tx)
            .await?;
        }
        for (customer, s) in &facts.sessions {
            skip_forgotten!(customer);
            sqlx::query(
                "INSERT INTO customer_sessions (customer_id, session_id, anonymous_id, start_at,
                    end_at, page_views, events, purchases, revenue_minor, device, entry_url,
                    utm_source, currency)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
                 ON CONFLICT (customer_id, session_id) DO UPDATE SET
                    start_at = excluded.start_at, end_at = excluded.end_at,
                    page_views = excluded.page_views, events = excluded.events,
                    purchases = excluded.purchases, revenue_minor = excluded.revenue_minor,
                    device = excluded.device, entry_url = excluded.entry_url,
                    utm_source = excluded.utm_source, currency = excluded.currency",
            )
            .bind(customer)
            .bind(&s.session_id)
            .bind(&s.anonymous_id)
            .bind(s.start)
            .bind(s.end)
            .bind(i64::from(s.page_views))
            .bind(i64::from(s.events))
            .bind(i64::from(s.purchases))
            .bind(s.revenue_minor)
            .bind(&s.device)
            .bind(&s.entry_url)
            .bind(&s.utm_source)
            .bind(&s.currency)
            .execute(&mut *tx)
            .await?;
            // A visitor's sessions never overlap, so another row of theirs starting within
            // this one is stale: a session this one absorbed, whose row would pass for a visit
            // of its own, or this one under a customer it no longer belongs to. Derived from the
            // summary alone, so a summary written again (a replay, the visitor's next event)
            // cleans up after an attempt that failed halfway.
            sqlx::query(
                "DELETE FROM customer_sessions WHERE anonymous_id = $1
                   AND start_at >= $2 AND start_at <= $3
                   AND NOT (customer_id = $4 AND session_id = $5)",
            )
            .bind(&s.anonymous_id)
            .bind(s.start)
            .bind(s.end)
            .bind(customer)
            .bind(&s.session_id)
            .execute(&mut *tx)
            .await?;
        }
        for (customer, traits, _) in &facts.traits {
            skip_forgotten!(customer);
            // Identify calls send some traits at a time: merged over the stored ones.
            let stored: Option<(String, Option<String>)> =
                sqlx::query("SELECT traits, email_sha256 FROM customers WHERE customer_id = $1")
                    .bind(customer)
                    .fetch_optional(&mut *tx)
                    .await?
                    .map(|r| -> Result<_> { Ok((r.try_get(0)?, r.try_get(1)?)) })
                    .transpose()?;
            let (mut merged, email) = match stored {
                Some((text, email)) => (parse_traits(&text)?, email),
                None => (Map::new(), None),
            };
            merged.extend(traits.values.clone());
            let email = traits.email_sha256.clone().or(email);
            upsert_customer(&mut tx, customer, merged, email, now_ms).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn forget(&self, customer_id: &str, now_ms: i64) -> Result<Forgotten> {
        let mut tx = self.pool.begin().await?;
        let anonymous_ids: Vec<String> = sqlx::query_scalar(
            "SELECT anonymous_id FROM customer_identities WHERE customer_id = $1
             ORDER BY anonymous_id",
        )
        .bind(customer_id)
        .fetch_all(&mut *tx)
        .await?;
        let mut removed = 0;
        for table in [
            "customers",
            "customer_identities",
            "customer_category_views",
            "customer_sessions",
        ] {
            removed += sqlx::query(AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE customer_id = $1"
            )))
            .bind(customer_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        // Orders stay for the books, without anything that points at the person.
        let orders_unlinked = sqlx::query(
            "UPDATE orders SET customer_id = NULL, anonymous_id = NULL,
                shipping_postal_code = NULL, updated_at = $2
             WHERE customer_id = $1",
        )
        .bind(customer_id)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if removed == 0 && orders_unlinked == 0 {
            return Err(CommerceError::NotFound {
                what: "customer",
                id: customer_id.to_owned(),
            });
        }
        let request_id = uuid::Uuid::now_v7().to_string();
        sqlx::query(
            "INSERT INTO deletion_requests (request_id, customer_id, anonymous_ids, requested_at)
             VALUES ($1, $2, $3, $4)",
        )
        .bind(&request_id)
        .bind(customer_id)
        .bind(serde_json::to_string(&anonymous_ids).expect("strings serialize"))
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Forgotten {
            request_id,
            anonymous_ids,
            orders_unlinked,
        })
    }

    async fn pending_deletions(&self) -> Result<Vec<DeletionRequest>> {
        sqlx::query(
            "SELECT request_id, customer_id, anonymous_ids, requested_at FROM deletion_requests
             WHERE lake_done_at IS NULL ORDER BY requested_at",
        )
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            let ids: String = r.try_get(2)?;
            Ok(DeletionRequest {
                request_id: r.try_get(0)?,
                customer_id: r.try_get(1)?,
                anonymous_ids: serde_json::from_str(&ids)
                    .map_err(|e| CommerceError::Database(sqlx::Error::Decode(Box::new(e))))?,
                requested_at: r.try_get(3)?,
            })
        })
        .collect()
    }

    async fn deletion_done(&self, request_id: &str, now_ms: i64) -> Result<()> {
        sqlx::query("UPDATE deletion_requests SET lake_done_at = $1 WHERE request_id = $2")
            .bind(now_ms)
            .bind(request_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn ready(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn orders_placed_between(&self, from_ms: i64, to_ms: i64) -> Result<Vec<Order>> {
        self.load_orders(Pick::PlacedIn(from_ms, to_ms)).await
    }

    async fn placed_at_of_orders_changed_since(&self, since_ms: i64) -> Result<Vec<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT DISTINCT placed_at FROM orders WHERE updated_at >= $1 ORDER BY placed_at",
        )
        .bind(since_ms)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn customer_summaries(&self) -> Result<Vec<CustomerSummary>> {
        sqlx::query(
            "SELECT customer_id, email_sha256, created_at, updated_at FROM customers
             ORDER BY customer_id",
        )
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            Ok(CustomerSummary {
                customer_id: r.try_get(0)?,
                email_sha256: r.try_get(1)?,
                created_at: r.try_get(2)?,
                updated_at: r.try_get(3)?,
            })
        })
        .collect()
    }
}

impl SqlCommerce {
    /// The stored order behind a conflicting insert: the same request again, or a refusal.
    async fn replay(&self, key: &str, order: &NewOrder, print: &str) -> Result<Placed> {
        let by_key = sqlx::query(
            "SELECT order_id, request_sha256, emitted FROM orders WHERE idempotency_key = $1",
        )
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        let (order_id, stored_print, emitted) = match by_key {
            Some(r) => {
                let stored: String = r.try_get(1)?;
                if stored != print {
                    return Err(CommerceError::IdempotencyKeyReused {
                        key: key.to_owned(),
                    });
                }
                (r.try_get::<String, _>(0)?, stored, r.try_get::<i64, _>(2)?)
            }
            None => {
                let r = sqlx::query(
                    "SELECT order_id, request_sha256, emitted FROM orders WHERE order_id = $1",
                )
                .bind(&order.order_id)
                .fetch_one(&self.pool)
                .await?;
                (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)
            }
        };
        if stored_print != print {
            return Err(CommerceError::OrderExists {
                order_id: order.order_id.clone(),
            });
        }
        let stored = self
            .order(&order_id)
            .await?
            .ok_or_else(|| CommerceError::NotFound {
                what: "order",
                id: order_id.clone(),
            })?;
        Ok(Placed {
            order: stored,
            replayed: true,
            emitted: emitted != 0,
        })
    }
}

async fn link(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    customer: &str,
    anonymous: &str,
    at: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO customer_identities (customer_id, anonymous_id, linked_at)
         VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
    )
    .bind(customer)
    .bind(anonymous)
    .bind(at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Creates the customer or replaces its traits.
async fn upsert_customer(
    conn: &mut sqlx::AnyConnection,
    customer_id: &str,
    traits: Map<String, Value>,
    email_sha256: Option<String>,
    now_ms: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO customers (customer_id, traits, email_sha256, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $4)
         ON CONFLICT (customer_id) DO UPDATE SET traits = excluded.traits,
            email_sha256 = excluded.email_sha256, updated_at = excluded.updated_at",
    )
    .bind(customer_id)
    .bind(Value::Object(traits).to_string())
    .bind(email_sha256)
    .bind(now_ms)
    .execute(conn)
    .await?;
    Ok(())
}

async fn category_counts(
    conn: &mut sqlx::AnyConnection,
    sql: String,
    customer_id: &str,
) -> Result<Vec<(String, i64)>> {
    sqlx::query(AssertSqlSafe(sql))
        .bind(customer_id)
        .fetch_all(conn)
        .await?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}

fn parse_traits(text: &str) -> Result<Map<String, Value>> {
    match serde_json::from_str(text) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(CommerceError::Database(sqlx::Error::Decode(
            format!("stored traits are not a JSON object: {text:?}").into(),
        ))),
    }
}
