//! `/v1/transactions` and `/v1/customers` through the real router, with the embedded stream and
//! the orders database on SQLite (the same store runs on PostgreSQL in `tests/commerce_*`).

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use common::{json_of, Embedded};
use retailmind_collector::{router, AppState, CollectorConfig, KeyKind, WriteKeyConfig};
use retailmind_commerce::order::purchase_event_id;
use retailmind_commerce::SqlCommerce;
use retailmind_connectors::{ConnectorError, EventSink, StreamRecord};
use retailmind_schema::{Payload, Session};
use serde_json::{json, Value};
use tower::ServiceExt;

const SECRET: &str = "sk_test_shop";

/// A stream that refuses writes while `down` is set, and never answers while `silent` is.
struct Flaky {
    inner: Arc<dyn EventSink>,
    down: AtomicBool,
    silent: AtomicBool,
}

#[async_trait]
impl EventSink for Flaky {
    async fn append(&self, records: Vec<StreamRecord>) -> retailmind_connectors::Result<()> {
        if self.silent.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        if self.down.load(Ordering::SeqCst) {
            return Err(ConnectorError::Unavailable {
                service: "stream",
                detail: "down (test)".into(),
            });
        }
        self.inner.append(records).await
    }
    async fn ready(&self) -> retailmind_connectors::Result<()> {
        self.inner.ready().await
    }
}

struct Shop {
    embedded: Embedded,
    sink: Arc<Flaky>,
    app: axum::Router,
}

fn config() -> CollectorConfig {
    CollectorConfig {
        keys: vec![
            WriteKeyConfig {
                key: "pk_test_shop".into(),
                name: "storefront".into(),
                kind: KeyKind::Publishable,
                origins: vec!["https://shop.example".into()],
            },
            WriteKeyConfig {
                key: SECRET.into(),
                name: "backend".into(),
                kind: KeyKind::Secret,
                origins: vec![],
            },
        ],
        ..CollectorConfig::default()
    }
}

impl Shop {
    async fn open() -> Shop {
        Shop::with(config()).await
    }

    async fn with(config: CollectorConfig) -> Shop {
        let embedded = Embedded::new();
        let sink = Arc::new(Flaky {
            inner: embedded.backend.sink.clone(),
            down: AtomicBool::new(false),
            silent: AtomicBool::new(false),
        });
        let url = format!("sqlite://{}/commerce.db", embedded.dir.path().display());
        let store = Arc::new(SqlCommerce::connect(&url, 4).await.unwrap());
        let state = AppState::new(sink.clone(), embedded.backend.dead_letters.clone(), &config)
            .with_commerce(store, embedded.backend.sessions.clone());
        let app = router(state, &config);
        Shop {
            embedded,
            sink,
            app,
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> (StatusCode, Value, axum::http::HeaderMap) {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(key) = key {
            request = request.header(header::AUTHORIZATION, format!("Bearer {key}"));
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let body = body.map(|b| Body::from(b.to_string())).unwrap_or_default();
        let response = self
            .app
            .clone()
            .oneshot(request.body(body).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        (status, json_of(response).await, headers)
    }

    async fn place(
        &self,
        order: &Value,
        key: Option<&str>,
    ) -> (StatusCode, Value, axum::http::HeaderMap) {
        let headers: Vec<(&str, &str)> = key.map(|k| ("Idempotency-Key", k)).into_iter().collect();
        self.call(
            Method::POST,
            "/v1/transactions",
            Some(SECRET),
            &headers,
            Some(order.clone()),
        )
        .await
    }
}

/// When the orders of this test binary were placed: a minute before it started, one time for
/// all, so that an order sent again is the same order.
fn placed_at() -> i64 {
    static AT: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *AT.get_or_init(|| common::now_ms() - 60_000)
}

fn order(order_id: &str) -> Value {
    json!({
        "order_id": order_id,
        "customer_id": "cust-1",
        "anonymous_id": "anon-1",
        "placed_at": placed_at(),
        "currency": "EUR",
        "lines": [
            {"product_id": "P1", "name": "Trail shoes", "category": "footwear", "unit_price_minor": 8999, "quantity": 1},
            {"product_id": "P2", "name": "Socks", "category": "socks", "unit_price_minor": 499, "quantity": 2}
        ],
        "subtotal_minor": 9997,
        "tax_minor": 1899,
        "shipping_minor": 0,
        "total_minor": 11896,
        "shipping": {"method": "express", "country": "DE", "postal_code": "10115"},
        "payment": {"method": "card", "card_brand": "visa", "card_last4": "4242", "status": "authorized"}
    })
}

#[tokio::test]
async fn an_order_is_stored_once_and_becomes_one_purchase_event() {
    let shop = Shop::open().await;
    let (status, body, headers) = shop.place(&order("A-100"), Some("idem-1")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["order_id"], "A-100");
    assert_eq!(body["status"], "placed");
    assert_eq!(body["history"][0]["status"], "placed");
    assert!(headers.get("idempotent-replayed").is_none());

    let (status, again, headers) = shop.place(&order("A-100"), Some("idem-1")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["idempotent-replayed"], "true");
    assert_eq!(again, body);

    let stored = shop.embedded.stored().await;
    assert_eq!(stored.len(), 1, "one purchase event for one order");
    let event = &stored[0];
    assert_eq!(event.event_id, purchase_event_id("A-100", placed_at()));
    assert_eq!(event.anonymous_id, "anon-1");
    assert_eq!(event.user_id.as_deref(), Some("cust-1"));
    let Payload::Purchase(p) = &event.payload else {
        panic!("a purchase: {event:?}")
    };
    assert_eq!((p.revenue_minor, p.items.len()), (11_896, 2));
}

/// The order rules and the stream's rules (`validation`) are one: an order whose purchase
/// event the lake would quarantine is refused, naming the order's own field, and not stored.
#[tokio::test]
async fn an_order_whose_purchase_event_the_stream_would_refuse_is_refused() {
    let shop = Shop::open().await;
    let mut big = order("A-110");
    let line = json!({"product_id": "P9", "name": "Pin", "unit_price_minor": 100, "quantity": 1});
    big["lines"] = Value::Array(vec![line; 201]);
    big["subtotal_minor"] = json!(20_100);
    big["total_minor"] = json!(20_100 + 1899);
    let (status, body, _) = shop.place(&big, None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["problems"][0]["field"], "lines", "{body}");
    assert_eq!(
        body["error"]["problems"][0]["reason"],
        "has 201 entries, at most 200 allowed"
    );

    let (status, _, _) = shop
        .call(
            Method::GET,
            "/v1/transactions/A-110",
            Some(SECRET),
            &[],
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "not stored");
    assert!(shop.embedded.stored().await.is_empty());
}

/// History sent late (a backfill) is stored and exported, but older than the stream takes
/// events it sends no purchase event, which the lake would quarantine.
#[tokio::test]
async fn an_order_older_than_the_stream_takes_is_stored_without_an_event() {
    let shop = Shop::open().await;
    let mut old = order("A-120");
    old["placed_at"] = json!(common::now_ms() - 40 * 86_400_000);
    let (status, body, _) = shop.place(&old, None).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, _, _) = shop
        .call(
            Method::GET,
            "/v1/transactions/A-120",
            Some(SECRET),
            &[],
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(shop.embedded.stored().await.is_empty(), "no event");

    let (status, body, _) = shop.place(&order("A-121"), None).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        shop.embedded.stored().await.len(),
        1,
        "a recent one has its event"
    );
}

#[tokio::test]
async fn a_stream_outage_is_503_and_the_retry_sends_the_event() {
    let shop = Shop::open().await;
    shop.sink.down.store(true, Ordering::SeqCst);
    let (status, body, headers) = shop.place(&order("A-200"), Some("idem-2")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(headers.contains_key(header::RETRY_AFTER));
    assert!(shop.embedded.stored().await.is_empty());

    shop.sink.down.store(false, Ordering::SeqCst);
    let (status, body, _) = shop.place(&order("A-200"), Some("idem-2")).await;
    assert_eq!(status, StatusCode::OK, "stored the first time: {body}");
    let (status, _, _) = shop.place(&order("A-200"), Some("idem-2")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        shop.embedded.stored().await.len(),
        1,
        "sent by the first retry, not again"
    );
}

/// A stream that takes the call and never answers: the order answers 503 within
/// `write_timeout_secs` (API Gateway gives it 29 s), and the retry with the same key sends the
/// event once the stream answers again.
#[tokio::test]
async fn a_stream_that_does_not_answer_gets_a_503_in_time_and_the_retry_sends_the_event() {
    let shop = Shop::with(CollectorConfig {
        write_timeout_secs: 1,
        ..config()
    })
    .await;
    shop.sink.silent.store(true, Ordering::SeqCst);
    let (status, body, headers) = shop.place(&order("A-300"), Some("idem-3")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "write_timed_out", "{body}");
    assert!(headers.contains_key(header::RETRY_AFTER));

    shop.sink.silent.store(false, Ordering::SeqCst);
    let (status, body, _) = shop.place(&order("A-300"), Some("idem-3")).await;
    assert_eq!(status, StatusCode::OK, "stored the first time: {body}");
    assert_eq!(shop.embedded.stored().await.len(), 1);
}

#[tokio::test]
async fn bad_orders_are_refused_naming_every_field() {
    let shop = Shop::open().await;
    let mut card = order("A-300");
    card["payment"]["card_last4"] = json!("4111 1111 1111 1111");
    let (status, body, _) = shop.place(&card, None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["code"], "invalid_request");
    assert_eq!(body["error"]["problems"][0]["field"], "payment.card_last4");
    assert!(
        !body.to_string().contains("4111 1111"),
        "the number is not echoed: {body}"
    );

    let mut totals = order("A-301");
    totals["total_minor"] = json!(100);
    totals["lines"][1]["quantity"] = json!(0);
    let (status, body, _) = shop.place(&totals, None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let fields: Vec<&str> = body["error"]["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["field"].as_str().unwrap())
        .collect();
    for f in ["lines[1].quantity", "subtotal_minor", "total_minor"] {
        assert!(fields.contains(&f), "{f} in {fields:?}");
    }

    let mut other = order("A-100");
    shop.place(&other, Some("k")).await;
    other["tax_minor"] = json!(0);
    other["total_minor"] = json!(9997);
    let (status, body, _) = shop.place(&other, Some("k")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["code"], "idempotency_key_reused");
    let (status, body, _) = shop.place(&other, Some("k2")).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["error"]["code"], "order_exists");

    // A key that is not visible ASCII is refused, not taken for no key (the order id).
    let request = Request::post("/v1/transactions")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, format!("Bearer {SECRET}"))
        .header(
            "Idempotency-Key",
            axum::http::HeaderValue::from_bytes("bestellung-ü-1".as_bytes()).unwrap(),
        )
        .body(Body::from(order("A-303").to_string()))
        .unwrap();
    let response = shop.app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body = json_of(response).await;
    assert_eq!(body["error"]["code"], "invalid_header", "{body}");
    assert_eq!(body["error"]["field"], "Idempotency-Key", "{body}");

    // An id in the path that is not UTF-8 gets the same JSON error as anything else.
    let (status, body, _) = shop
        .call(Method::GET, "/v1/transactions/%FF", Some(SECRET), &[], None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "invalid_parameter", "{body}");
    assert_eq!(body["error"]["field"], "path", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("order_id"),
        "{body}"
    );

    let (status, _, _) = shop
        .call(
            Method::POST,
            "/v1/transactions",
            None,
            &[],
            Some(order("A-302")),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body, _) = shop
        .call(
            Method::POST,
            "/v1/transactions",
            Some("pk_test_shop"),
            &[],
            Some(order("A-302")),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "publishable keys cannot: {body}"
    );
    assert_eq!(shop.embedded.stored().await.len(), 1, "only A-100 went out");
}

#[tokio::test]
async fn status_updates_keep_a_history_and_refuse_illegal_moves() {
    let shop = Shop::open().await;
    shop.place(&order("A-400"), None).await;
    let (status, body, _) = shop
        .call(
            Method::POST,
            "/v1/transactions/A-400/status",
            Some(SECRET),
            &[],
            Some(json!({"status": "delivered"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["error"]["code"], "illegal_status_change");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("placed to delivered"));
    for s in ["paid", "shipped"] {
        let (status, body, _) = shop
            .call(
                Method::PATCH,
                "/v1/transactions/A-400",
                Some(SECRET),
                &[],
                Some(json!({"status": s, "note": format!("now {s}")})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, body, _) = shop
        .call(
            Method::GET,
            "/v1/transactions/A-400",
            Some(SECRET),
            &[],
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let history: Vec<&str> = body["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["status"].as_str().unwrap())
        .collect();
    assert_eq!(history, ["placed", "paid", "shipped"]);
    assert_eq!(body["payment"]["status"], "captured");
    let (status, body, _) = shop
        .call(
            Method::POST,
            "/v1/transactions/A-404/status",
            Some(SECRET),
            &[],
            Some(json!({"status": "paid"})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
}

#[tokio::test]
async fn customers_get_traits_a_profile_and_can_be_forgotten() {
    let shop = Shop::open().await;
    shop.place(&order("A-500"), None).await;
    let (status, body, _) = shop
        .call(
            Method::PUT,
            "/v1/customers/cust-1/traits",
            Some(SECRET),
            &[],
            Some(json!({"email": "Kim@Example.org", "loyalty_member": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(!body.to_string().contains("Kim@"), "no raw email: {body}");
    assert_eq!(body["traits"]["loyalty_member"], true);
    assert_eq!(body["lifetime_orders"], 1);
    assert_eq!(body["lifetime_value"][0]["revenue_minor"], 11_896);
    assert_eq!(body["anonymous_ids"], json!(["anon-1"]));
    assert_eq!(body["loyalty"]["points"], 118);

    // A stored session of the customer's browser, as the processor would have written it.
    let session: Session = serde_json::from_value(json!({
        "session_id": "s-1", "anonymous_id": "anon-1", "user_id": "cust-1",
        "start_ms": 1_764_500_000_000_i64, "end_ms": 1_764_500_060_000_i64,
        "event_count": 3, "page_views": 2, "entry_url": "https://shop.example/",
        "exit_url": "https://shop.example/cart", "products_viewed": 1, "cart_adds": 1,
        "purchases": 0, "revenue_minor": 0, "event_ids": [], "version": 1
    }))
    .unwrap();
    let sessions = &shop.embedded.backend.sessions;
    sessions.put(&[session]).await.unwrap();

    let (status, body, _) = shop
        .call(
            Method::DELETE,
            "/v1/customers/cust-1",
            Some(SECRET),
            &[],
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["anonymous_ids"], json!(["anon-1"]));
    assert_eq!(body["orders_unlinked"], 1);
    assert!(sessions.sessions_of("anon-1").await.unwrap().is_empty());
    let (status, _, _) = shop
        .call(Method::GET, "/v1/customers/cust-1", Some(SECRET), &[], None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = shop
        .call(
            Method::DELETE,
            "/v1/customers/cust-1",
            Some(SECRET),
            &[],
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, body, _) = shop
        .call(
            Method::PUT,
            "/v1/customers/cust-2/traits",
            Some(SECRET),
            &[],
            Some(json!({"address": {"street": "x"}})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["field"], "address");
}

#[tokio::test]
async fn without_a_database_the_endpoints_say_so() {
    let embedded = Embedded::new();
    let config = config();
    let app = embedded.router(&config);
    let response = app
        .oneshot(
            Request::get("/v1/customers/x")
                .header(header::AUTHORIZATION, format!("Bearer {SECRET}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        json_of(response).await["error"]["code"],
        "commerce_not_configured"
    );
}
