//! Orders and profiles end to end, with the orders database on a real PostgreSQL server: a
//! shopper browses and identifies through `/v1/batch`, the shop's backend posts the order, the
//! processor joins it all into the customer's profile; then the customer is forgotten.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{post_batch, Pipeline};
use retailmind_commerce::order::purchase_event_id;
use retailmind_commerce::{CommerceStore, SqlCommerce};
use retailmind_connectors::embedded;
use retailmind_tests::wait_for;
use serde_json::{json, Value};
use uuid::Uuid;

const SHOP: &str = "https://shop.example";

fn event(kind: &str, at: i64, user: Option<&str>, properties: Value) -> Value {
    let mut e = json!({
        "event_id": Uuid::now_v7(),
        "type": kind,
        "anonymous_id": "anon-e2e",
        "session_id": "tab-session-1",
        "timestamp": at,
        "context": {"page": {"url": format!("{SHOP}/p/shoes")}},
        "properties": properties,
    });
    if let Some(user) = user {
        e["user_id"] = json!(user);
    }
    e
}

async fn call(method: reqwest::Method, url: String, body: Option<Value>) -> (u16, Value) {
    let mut request = reqwest::Client::new().request(method, url);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("the collector answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// A fresh database on the test PostgreSQL server, and the orders store over it.
async fn orders_database() -> (String, Arc<dyn CommerceStore>) {
    let url = retailmind_tests::postgres::fresh_database().await;
    let commerce = SqlCommerce::connect(&url, 8)
        .await
        .expect("PostgreSQL opens");
    (url, Arc::new(commerce))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn browsing_identify_and_an_order_make_one_profile_on_postgres() {
    let (_, commerce) = orders_database().await;
    let dir = tempfile::tempdir().unwrap();
    let backend = embedded::open(dir.path()).unwrap();
    let pipeline = Pipeline::start_with(backend.clone(), Some(commerce.clone())).await;
    let base = pipeline.collector_url.clone();
    let t0 = retailmind_connectors::clock::now_ms() - 60_000;

    // Anonymous browsing, then the shopper logs in (identify with traits) and views more.
    let answer = post_batch(
        &base,
        vec![
            event("page_view", t0, None, json!({})),
            event(
                "product_view",
                t0 + 1_000,
                None,
                json!({"product_id": "P1", "category": "footwear"}),
            ),
            event(
                "custom",
                t0 + 2_000,
                Some("cust-e2e"),
                json!({"name": "identify", "props": {"email": "Lee@Example.com", "plan": "gold"}}),
            ),
            event(
                "product_view",
                t0 + 3_000,
                Some("cust-e2e"),
                json!({"product_id": "P2", "category": "footwear"}),
            ),
            event(
                "product_view",
                t0 + 4_000,
                Some("cust-e2e"),
                json!({"product_id": "P3", "category": "socks"}),
            ),
        ],
    )
    .await;
    assert_eq!(answer["accepted"], 5, "{answer}");

    // The shop's backend places the order for that browser.
    let placed_at = t0 + 30_000;
    let order = json!({
        "order_id": "E2E-1",
        "customer_id": "cust-e2e",
        "anonymous_id": "anon-e2e",
        "placed_at": placed_at,
        "currency": "EUR",
        "lines": [{"product_id": "P2", "name": "Road shoes", "category": "footwear",
                   "unit_price_minor": 12000, "quantity": 1}],
        "subtotal_minor": 12000, "tax_minor": 2280, "shipping_minor": 0, "total_minor": 14280,
        "payment": {"method": "paypal", "status": "captured"},
        "status": "paid",
        "page_url": format!("{SHOP}/checkout/done")
    });
    let (status, body) = call(
        reqwest::Method::POST,
        format!("{base}/v1/transactions"),
        Some(order.clone()),
    )
    .await;
    assert_eq!(status, 201, "{body}");

    // The processor folds it all in: the profile shows the session with the purchase.
    let profile = wait_for(
        "the profile with the purchase session",
        Duration::from_secs(20),
        || {
            let commerce = commerce.clone();
            async move {
                let p = commerce.customer("cust-e2e").await.unwrap()?;
                let last = p.last_session.clone()?;
                (last.purchases == 1).then_some(p)
            }
        },
    )
    .await;
    assert_eq!(profile.anonymous_ids, ["anon-e2e"]);
    assert_eq!(profile.traits["plan"], "gold");
    assert!(!profile.traits.contains_key("email"));
    assert_eq!(
        profile.email_sha256.as_deref(),
        Some(retailmind_commerce::profile::email_hash("lee@example.com").as_str())
    );
    assert_eq!(profile.lifetime_orders, 1);
    assert_eq!(profile.lifetime_value[0].revenue_minor, 14_280);
    assert_eq!(profile.loyalty.points, 142);
    // footwear: one bought (3) + one identified view (1); socks: one identified view. The
    // anonymous view before identify is not the customer's as far as the profile knows.
    assert_eq!(profile.favourite_categories, ["footwear", "socks"]);
    let last = profile.last_session.unwrap();
    assert_eq!(last.anonymous_id, "anon-e2e");
    assert_eq!(last.revenue_minor, 14_280);
    assert_eq!(last.start, t0);

    // The same profile through HTTP; the purchase event reached the lake with the order's id.
    let (status, http_profile) = call(
        reqwest::Method::GET,
        format!("{base}/v1/customers/cust-e2e"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(http_profile["lifetime_orders"], 1);
    let event_id = purchase_event_id("E2E-1", placed_at).to_string();
    let lake = dir.path().join("lake");
    wait_for(
        "the purchase event in the lake",
        Duration::from_secs(10),
        || {
            let lake = lake.clone();
            let event_id = event_id.clone();
            async move { lake_contains(&lake, &event_id).then_some(()) }
        },
    )
    .await;

    // The order is sent again by a retrying backend: nothing doubles.
    let (status, _) = call(
        reqwest::Method::POST,
        format!("{base}/v1/transactions"),
        Some(order),
    )
    .await;
    assert_eq!(status, 200);

    // Forgotten: profile and sessions go, the lake deletion is queued, the order stays unlinked.
    let (status, body) = call(
        reqwest::Method::DELETE,
        format!("{base}/v1/customers/cust-e2e"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(backend
        .sessions
        .sessions_of("anon-e2e")
        .await
        .unwrap()
        .is_empty());
    let (status, _) = call(
        reqwest::Method::GET,
        format!("{base}/v1/customers/cust-e2e"),
        None,
    )
    .await;
    assert_eq!(status, 404);
    let pending = commerce.pending_deletions().await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].anonymous_ids, ["anon-e2e"]);
    let (_, order) = call(
        reqwest::Method::GET,
        format!("{base}/v1/transactions/E2E-1"),
        None,
    )
    .await;
    assert_eq!(order["customer_id"], Value::Null);
    assert_eq!(order["total_minor"], 14_280);

    // New events of the forgotten customer do not bring the profile back.
    post_batch(
        &base,
        vec![event(
            "product_view",
            t0 + 50_000,
            Some("cust-e2e"),
            json!({"product_id": "P9", "category": "hats"}),
        )],
    )
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(commerce.customer("cust-e2e").await.unwrap().is_none());

    pipeline.stop().await;
}

fn lake_contains(root: &std::path::Path, needle: &str) -> bool {
    let Ok(entries) = std::fs::read_dir(root) else {
        return false;
    };
    entries.filter_map(|e| e.ok()).any(|e| {
        let path = e.path();
        if path.is_dir() {
            lake_contains(&path, needle)
        } else {
            std::fs::read_to_string(&path).is_ok_and(|text| text.contains(needle))
        }
    })
}

/// The orders database fails for a moment after a batch's sessions were stored: the batch is
/// not checkpointed and is applied again. Its sessions hold its events already, so nothing is
/// written to them the second time, yet the customer's profile still gets the session (it used
/// to get it only with the visitor's next event, never if there was none).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_profile_write_that_failed_after_its_sessions_landed_is_made_by_the_retry() {
    let (url, commerce) = orders_database().await;
    let dir = tempfile::tempdir().unwrap();
    let backend = embedded::open(dir.path()).unwrap();
    let t0 = retailmind_connectors::clock::now_ms() - 60_000;
    let records = (0..3)
        .map(|i| {
            let e = event("page_view", t0 + i * 1_000, Some("cust-retry"), json!({}));
            retailmind_connectors::StreamRecord {
                partition_key: "anon-e2e".into(),
                data: e.to_string().into_bytes().into(),
            }
        })
        .collect();
    backend.sink.append(records).await.unwrap();
    let processor = retailmind_processor::Processor::new(
        backend.clone(),
        &retailmind_processor::ProcessorConfig {
            consumer: "profile-retry".into(),
            ..retailmind_processor::ProcessorConfig::default()
        },
    )
    .with_profiles(commerce.clone());

    retailmind_tests::postgres::execute(
        &url,
        "ALTER TABLE customer_sessions RENAME TO customer_sessions_away",
    );
    let failed = processor.poll_once().await;
    assert!(failed.is_err(), "the profile write fails: {failed:?}");
    let stored = backend.sessions.sessions_of("anon-e2e").await.unwrap();
    assert_eq!(stored.len(), 1, "the session write landed before");
    assert_eq!(stored[0].event_count, 3);

    retailmind_tests::postgres::execute(
        &url,
        "ALTER TABLE customer_sessions_away RENAME TO customer_sessions",
    );
    // The shard waits out its backoff (100 ms) after the failure, then the batch is read again
    // from the checkpoint.
    let outcome = wait_for("the retry", Duration::from_secs(10), || async {
        let polled = processor.poll_once().await.expect("the retry succeeds");
        (polled > 0).then_some(polled)
    })
    .await;
    assert_eq!(outcome, 3, "the whole batch, again");
    let again = backend.sessions.sessions_of("anon-e2e").await.unwrap();
    assert_eq!(
        again[0].version, stored[0].version,
        "no session written twice"
    );

    let profile = commerce
        .customer("cust-retry")
        .await
        .unwrap()
        .expect("the customer is known");
    let last = profile
        .last_session
        .expect("the session reached the profile");
    assert_eq!(
        (last.session_id.as_str(), last.events, last.start, last.end),
        (stored[0].session_id.as_str(), 3, t0, t0 + 2_000)
    );
}
