//! The orders and customers store against a real PostgreSQL server (started by the harness) and
//! against SQLite: every scenario runs on both, through the one data-access layer.

use std::sync::Arc;

use retailmind_commerce::order::{decode_order, StatusChange};
use retailmind_commerce::profile::{normalise_traits, LoyaltyTier, SessionSummary, VisitFacts};
use retailmind_commerce::{
    CommerceError, CommerceStore, CustomerSummary, NewOrder, OrderStatus, SqlCommerce,
};
use serde_json::{json, Value};

const NOW: i64 = 1_764_500_000_000;

enum Db {
    Sqlite(tempfile::TempDir),
    Postgres,
}

async fn open(db: &Db) -> Arc<SqlCommerce> {
    let url = match db {
        Db::Sqlite(dir) => format!("sqlite://{}/commerce.db", dir.path().display()),
        Db::Postgres => retailmind_tests::postgres::fresh_database().await,
    };
    Arc::new(SqlCommerce::connect(&url, 8).await.expect("database opens"))
}

/// Runs `scenario` on SQLite, then on PostgreSQL.
macro_rules! on_both {
    ($name:ident, $scenario:ident) => {
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                let db = Db::Sqlite(tempfile::tempdir().unwrap());
                $scenario(open(&db).await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                $scenario(open(&Db::Postgres).await).await;
            }
        }
    };
}

fn order_json(order_id: &str, customer: &str, price: i64, qty: i64) -> Value {
    let subtotal = price * qty;
    json!({
        "order_id": order_id,
        "customer_id": customer,
        "anonymous_id": format!("anon-{customer}"),
        "placed_at": NOW,
        "currency": "EUR",
        "lines": [{"product_id": "P1", "name": "Trail shoes", "category": "footwear",
                   "unit_price_minor": price, "quantity": qty}],
        "subtotal_minor": subtotal,
        "tax_minor": 0,
        "shipping_minor": 0,
        "total_minor": subtotal,
        "shipping": {"method": "standard", "country": "DE", "postal_code": "10115"},
        "payment": {"method": "card", "card_brand": "visa", "card_last4": "4242", "status": "authorized"}
    })
}

fn order(v: &Value) -> NewOrder {
    decode_order(v.to_string().as_bytes(), NOW).expect("a valid order")
}

async fn idempotency(store: Arc<SqlCommerce>) {
    let a = order(&order_json("A-1", "u-1", 5000, 2));
    let first = store.place_order("key-1", &a, NOW).await.unwrap();
    assert!(!first.replayed);
    assert_eq!(first.order.order.total_minor, 10_000);
    assert_eq!(first.order.history.len(), 1);

    let again = store.place_order("key-1", &a, NOW + 5).await.unwrap();
    assert!(again.replayed, "same key, same order: the stored one");
    assert_eq!(again.order, first.order);

    let same_order_new_key = store.place_order("key-2", &a, NOW).await.unwrap();
    assert!(
        same_order_new_key.replayed,
        "same order id and content: stored once"
    );

    let mut changed = a.clone();
    changed.lines[0].quantity = 3;
    changed.subtotal_minor = 15_000;
    changed.total_minor = 15_000;
    match store.place_order("key-1", &changed, NOW).await {
        Err(CommerceError::IdempotencyKeyReused { key }) => assert_eq!(key, "key-1"),
        other => panic!("a reused key with another body must be refused: {other:?}"),
    }
    match store.place_order("key-3", &changed, NOW).await {
        Err(CommerceError::OrderExists { order_id }) => assert_eq!(order_id, "A-1"),
        other => panic!("another body for a stored order id must be refused: {other:?}"),
    }
    let stored = store.order("A-1").await.unwrap().unwrap();
    assert_eq!(stored.order.lines[0].quantity, 2, "the first order stands");
}
on_both!(same_order_twice_is_stored_once, idempotency);

async fn concurrency(store: Arc<SqlCommerce>) {
    let a = order(&order_json("A-2", "u-2", 1999, 1));
    let tasks: Vec<_> = (0..12)
        .map(|_| {
            let store = store.clone();
            let a = a.clone();
            tokio::spawn(async move { store.place_order("same-key", &a, NOW).await })
        })
        .collect();
    let mut fresh = 0;
    for t in tasks {
        let placed = t.await.unwrap().expect("every request gets the order");
        if !placed.replayed {
            fresh += 1;
        }
        assert_eq!(placed.order.order.order_id, "A-2");
        assert_eq!(placed.order.order.lines.len(), 1, "lines written once");
        assert_eq!(placed.order.history.len(), 1, "history written once");
    }
    assert_eq!(fresh, 1, "exactly one request created the order");
}
on_both!(one_idempotency_key_from_many_requests_at_once, concurrency);

async fn status_changes(store: Arc<SqlCommerce>) {
    let a = order(&order_json("A-3", "u-3", 2500, 1));
    store.place_order("k3", &a, NOW).await.unwrap();
    let change = |status, note: Option<&str>| StatusChange {
        status,
        at: None,
        note: note.map(str::to_owned),
    };
    match store
        .change_status("A-3", &change(OrderStatus::Shipped, None), NOW + 1)
        .await
    {
        Err(CommerceError::IllegalTransition { from, to, .. }) => {
            assert_eq!((from, to), (OrderStatus::Placed, OrderStatus::Shipped))
        }
        other => panic!("placed → shipped must be refused: {other:?}"),
    }
    let paid = store
        .change_status("A-3", &change(OrderStatus::Paid, None), NOW + 2)
        .await
        .unwrap();
    assert_eq!(paid.order.status, OrderStatus::Paid);
    assert_eq!(
        serde_json::to_value(paid.order.payment.status).unwrap(),
        "captured"
    );
    let repeat = store
        .change_status("A-3", &change(OrderStatus::Paid, None), NOW + 3)
        .await
        .unwrap();
    assert_eq!(repeat.history.len(), 2, "a repeated status adds nothing");

    // Two different moves at once: exactly one wins from `paid`, the other sees its result.
    let s1 = store.clone();
    let s2 = store.clone();
    let ship = tokio::spawn(async move {
        s1.change_status(
            "A-3",
            &change(OrderStatus::Shipped, Some("DHL 123")),
            NOW + 4,
        )
        .await
    });
    let cancel = tokio::spawn(async move {
        s2.change_status("A-3", &change(OrderStatus::Cancelled, None), NOW + 4)
            .await
    });
    let (ship, cancel) = (ship.await.unwrap(), cancel.await.unwrap());
    assert!(
        ship.is_ok() != cancel.is_ok(),
        "one of shipped/cancelled wins: {ship:?} {cancel:?}"
    );
    let after = store.order("A-3").await.unwrap().unwrap();
    assert_eq!(after.history.len(), 3);
    let last = after.history.last().unwrap().status;
    assert_eq!(after.order.status, last);
    if last == OrderStatus::Shipped {
        let done = store
            .change_status("A-3", &change(OrderStatus::Delivered, None), NOW + 5)
            .await
            .unwrap();
        let refunded = store
            .change_status(
                "A-3",
                &change(OrderStatus::Refunded, Some("damaged")),
                NOW + 6,
            )
            .await
            .unwrap();
        assert_eq!(done.history.len(), 4);
        let statuses: Vec<_> = refunded.history.iter().map(|h| h.status).collect();
        assert_eq!(
            statuses,
            [
                OrderStatus::Placed,
                OrderStatus::Paid,
                OrderStatus::Shipped,
                OrderStatus::Delivered,
                OrderStatus::Refunded
            ]
        );
        assert_eq!(refunded.history[4].note.as_deref(), Some("damaged"));
    }
    match store
        .change_status("nope", &change(OrderStatus::Paid, None), NOW)
        .await
    {
        Err(CommerceError::NotFound { what, .. }) => assert_eq!(what, "order"),
        other => panic!("unknown order: {other:?}"),
    }
}
on_both!(status_history_and_illegal_moves, status_changes);

fn session(customer: &str, id: &str, start: i64, pages: u32) -> SessionSummary {
    SessionSummary {
        session_id: id.into(),
        anonymous_id: format!("anon-{customer}"),
        start,
        end: start + 60_000,
        page_views: pages,
        events: pages + 2,
        purchases: 0,
        revenue_minor: 0,
        currency: None,
        device: "desktop".into(),
        entry_url: "https://shop.example/".into(),
        utm_source: Some("newsletter".into()),
    }
}

async fn profiles(store: Arc<SqlCommerce>) {
    // Two orders in EUR (one later cancelled), one in USD.
    store
        .place_order("p1", &order(&order_json("B-1", "u-9", 60_000, 2)), NOW)
        .await
        .unwrap();
    store
        .place_order("p2", &order(&order_json("B-2", "u-9", 10_000, 1)), NOW)
        .await
        .unwrap();
    let mut usd = order_json("B-3", "u-9", 5_000, 1);
    usd["currency"] = json!("USD");
    usd["lines"][0]["category"] = json!("bags");
    store.place_order("p3", &order(&usd), NOW).await.unwrap();
    store
        .change_status(
            "B-2",
            &StatusChange {
                status: OrderStatus::Cancelled,
                at: None,
                note: None,
            },
            NOW,
        )
        .await
        .unwrap();

    let traits = normalise_traits(
        json!({"email": "Ada@Example.com", "age_range": "25-34"})
            .as_object()
            .unwrap()
            .clone(),
    )
    .unwrap();
    let facts = VisitFacts {
        links: vec![
            ("u-9".into(), "anon-phone".into(), NOW - 86_400_000),
            ("u-9".into(), "anon-u-9".into(), NOW),
        ],
        traits: vec![("u-9".into(), traits, NOW)],
        category_views: (0..8)
            .map(|i| ("u-9".into(), format!("ev-{i}"), "hats".into(), NOW + i))
            .collect(),
        sessions: vec![
            ("u-9".into(), session("u-9", "s-1", NOW - 86_400_000, 3)),
            ("u-9".into(), session("u-9", "s-2", NOW + 1_000, 5)),
        ],
    };
    store.observe(&facts, NOW).await.unwrap();
    // The stream replayed: nothing may count twice.
    store.observe(&facts, NOW).await.unwrap();

    let p = store.customer("u-9").await.unwrap().expect("a profile");
    assert_eq!(p.anonymous_ids, ["anon-phone", "anon-u-9"]);
    assert!(!p.traits.contains_key("email"));
    assert_eq!(p.traits["age_range"], "25-34");
    assert_eq!(
        p.email_sha256.as_deref(),
        Some(retailmind_commerce::profile::email_hash("ada@example.com").as_str())
    );
    assert_eq!(p.lifetime_orders, 2, "the cancelled order does not count");
    assert_eq!(p.lifetime_value[0].currency, "EUR");
    assert_eq!(p.lifetime_value[0].revenue_minor, 120_000);
    assert_eq!(p.lifetime_value[0].average_order_minor, 120_000);
    assert_eq!(p.lifetime_value[1].currency, "USD");
    assert_eq!(p.loyalty.points, 1_200 + 50);
    assert_eq!(p.loyalty.tier, LoyaltyTier::Silver);
    // footwear: 2 bought × 3 = 6; hats: 8 views = 8; bags: 1 × 3 = 3.
    assert_eq!(p.favourite_categories, ["hats", "footwear", "bags"]);
    assert_eq!(p.first_seen, Some(NOW - 86_400_000));
    assert_eq!(p.last_seen, Some(NOW + 61_000));
    let last = p.last_session.expect("last session");
    assert_eq!((last.session_id.as_str(), last.page_views), ("s-2", 5));

    // Later identify traits merge over the stored ones.
    let more = normalise_traits(json!({"city": "Berlin"}).as_object().unwrap().clone()).unwrap();
    store
        .observe(
            &VisitFacts {
                traits: vec![("u-9".into(), more, NOW + 5)],
                ..VisitFacts::default()
            },
            NOW + 5,
        )
        .await
        .unwrap();
    let p = store.customer("u-9").await.unwrap().unwrap();
    assert_eq!(p.traits["city"], "Berlin");
    assert_eq!(p.traits["age_range"], "25-34");
    assert!(p.email_sha256.is_some(), "kept when not sent again");

    assert!(store.customer("nobody").await.unwrap().is_none());
}
on_both!(profile_joins_orders_visits_and_traits, profiles);

/// A late event joined a customer's two visits: the survivor's summary replaces the absorbed
/// one's row (within its span) and takes its new start and figures, so the profile's last
/// session is the joined one. A session that now belongs to another customer leaves the first.
async fn joined_sessions(store: Arc<SqlCommerce>) {
    let (early, late) = (
        session("u-5", "s-a", NOW, 2),
        session("u-5", "s-b", NOW + 3_000_000, 4),
    );
    let facts = VisitFacts {
        sessions: vec![("u-5".into(), early.clone()), ("u-5".into(), late.clone())],
        ..VisitFacts::default()
    };
    store.observe(&facts, NOW).await.unwrap();
    let p = store.customer("u-5").await.unwrap().unwrap();
    assert_eq!(p.last_session.unwrap().session_id, "s-b");

    let joined = SessionSummary {
        start: NOW - 600_000,
        end: late.end,
        page_views: early.page_views + late.page_views + 1,
        events: early.events + late.events + 1,
        entry_url: "https://shop.example/late-entry".into(),
        // The summary keeps the currency of its revenue.
        purchases: 1,
        revenue_minor: 129_900,
        currency: Some("SEK".into()),
        ..early.clone()
    };
    let facts = VisitFacts {
        sessions: vec![("u-5".into(), joined.clone())],
        ..VisitFacts::default()
    };
    store.observe(&facts, NOW).await.unwrap();
    // Replayed, the same.
    store.observe(&facts, NOW).await.unwrap();
    let p = store.customer("u-5").await.unwrap().unwrap();
    assert_eq!(p.last_session, Some(joined.clone()));
    assert_eq!(p.first_seen, Some(NOW - 600_000));

    // The visitor logged in as someone else in that session: its row moves to them.
    let facts = VisitFacts {
        sessions: vec![("u-6".into(), joined.clone())],
        ..VisitFacts::default()
    };
    store.observe(&facts, NOW).await.unwrap();
    let p = store.customer("u-6").await.unwrap().unwrap();
    assert_eq!(p.last_session, Some(joined));
    let p = store.customer("u-5").await.unwrap();
    assert!(p.as_ref().is_none_or(|p| p.last_session.is_none()), "{p:?}");
}
on_both!(a_joined_session_replaces_both_of_its_rows, joined_sessions);

async fn forgetting(store: Arc<SqlCommerce>) {
    store
        .place_order("f1", &order(&order_json("C-1", "u-7", 1000, 1)), NOW)
        .await
        .unwrap();
    let facts = VisitFacts {
        links: vec![("u-7".into(), "anon-u-7".into(), NOW)],
        sessions: vec![("u-7".into(), session("u-7", "s-7", NOW, 2))],
        ..VisitFacts::default()
    };
    store.observe(&facts, NOW).await.unwrap();
    let gone = store.forget("u-7", NOW + 10).await.unwrap();
    assert_eq!(gone.anonymous_ids, ["anon-u-7"]);
    assert_eq!(gone.orders_unlinked, 1);
    assert!(store.customer("u-7").await.unwrap().is_none());
    let kept = store.order("C-1").await.unwrap().expect("the order stays");
    assert_eq!(kept.order.customer_id, None);
    assert_eq!(kept.order.shipping.unwrap().postal_code, None);
    let pending = store.pending_deletions().await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].customer_id, "u-7");
    assert_eq!(pending[0].anonymous_ids, ["anon-u-7"]);

    // A replay of old events must not bring the customer back.
    store.observe(&facts, NOW + 20).await.unwrap();
    assert!(store.customer("u-7").await.unwrap().is_none());

    store
        .deletion_done(&gone.request_id, NOW + 30)
        .await
        .unwrap();
    assert!(store.pending_deletions().await.unwrap().is_empty());
    assert!(matches!(
        store.forget("u-7", NOW).await,
        Err(CommerceError::NotFound { .. })
    ));
}
on_both!(forgetting_a_customer, forgetting);

#[tokio::test]
async fn a_second_service_starting_on_the_same_database_migrates_nothing_twice() {
    let url = retailmind_tests::postgres::fresh_database().await;
    let (a, b) = tokio::join!(SqlCommerce::connect(&url, 2), SqlCommerce::connect(&url, 2));
    a.expect("first");
    b.expect("second");
    SqlCommerce::connect(&url, 2).await.expect("a restart");
}

/// A profile is read from one snapshot: a reader never sees a session summary written in the
/// same transaction as traits it does not see.
async fn consistent_reads(store: Arc<SqlCommerce>) {
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for i in 0..150 {
                let customer = format!("c-{i}");
                let traits =
                    normalise_traits(json!({"k": i}).as_object().unwrap().clone()).unwrap();
                let facts = VisitFacts {
                    traits: vec![(customer.clone(), traits, NOW)],
                    sessions: vec![(customer.clone(), session(&customer, "s", NOW, 1))],
                    ..VisitFacts::default()
                };
                store.observe(&facts, NOW).await.unwrap();
            }
        })
    };
    let mut seen = 0;
    while !writer.is_finished() {
        for i in 0..150 {
            if let Some(p) = store.customer(&format!("c-{i}")).await.unwrap() {
                seen += 1;
                assert!(
                    p.last_session.is_none() || p.traits.contains_key("k"),
                    "a torn read: {p:?}"
                );
            }
        }
    }
    writer.await.unwrap();
    assert!(seen > 0, "the reader saw profiles while they were written");
}
on_both!(a_profile_is_read_from_one_snapshot, consistent_reads);

/// What the lake export reads: the orders placed in a span (its start in, its end out), when
/// the orders changed since a time were placed (the days to rewrite, each once) and every
/// customer with the hash of their email but no traits, a forgotten one gone.
async fn exports(store: Arc<SqlCommerce>) {
    const DAY: i64 = 86_400_000;
    let placed = [
        ("E-1", NOW - 3 * DAY),
        ("E-2", NOW - 2 * DAY),
        ("E-3", NOW - 2 * DAY),
        ("E-4", NOW - DAY),
    ];
    for (id, at) in placed {
        let mut v = order_json(id, "u-4", 1_000, 1);
        v["placed_at"] = json!(at);
        // Stored when placed, so that its last change is then.
        store.place_order(id, &order(&v), at).await.unwrap();
    }
    let between = store
        .orders_placed_between(NOW - 3 * DAY, NOW - DAY)
        .await
        .unwrap();
    assert_eq!(
        between
            .iter()
            .map(|o| (o.order.order_id.as_str(), o.order.placed_at))
            .collect::<Vec<_>>(),
        placed[..3]
            .iter()
            .map(|(id, at)| (*id, Some(*at)))
            .collect::<Vec<_>>()
    );
    assert!(
        between
            .iter()
            .all(|o| o.order.lines.len() == 1 && o.history.len() == 1),
        "{between:?}"
    );

    let changed_since = |since| {
        let store = store.clone();
        async move {
            store
                .placed_at_of_orders_changed_since(since)
                .await
                .unwrap()
        }
    };
    assert_eq!(
        changed_since(NOW - 2 * DAY).await,
        [NOW - 2 * DAY, NOW - DAY]
    );
    let paid = StatusChange {
        status: OrderStatus::Paid,
        at: None,
        note: None,
    };
    store.change_status("E-4", &paid, NOW).await.unwrap();
    store.change_status("E-1", &paid, NOW + 1).await.unwrap();
    assert_eq!(changed_since(NOW).await, [NOW - 3 * DAY, NOW - DAY]);
    assert_eq!(changed_since(NOW + 1).await, [NOW - 3 * DAY]);
    assert!(changed_since(NOW + 2).await.is_empty());

    let traits = |v: Value| normalise_traits(v.as_object().unwrap().clone()).unwrap();
    store
        .put_traits("u-b", traits(json!({"plan": "basic"})), NOW)
        .await
        .unwrap();
    store
        .put_traits("u-c", traits(json!({"plan": "gold"})), NOW)
        .await
        .unwrap();
    let identify = |v: Value, at: i64| VisitFacts {
        traits: vec![("u-a".into(), traits(v), at)],
        ..VisitFacts::default()
    };
    store
        .observe(
            &identify(json!({"email": "Ada@Example.com"}), NOW - 5),
            NOW - 5,
        )
        .await
        .unwrap();
    store
        .observe(&identify(json!({"city": "Berlin"}), NOW + 5), NOW + 5)
        .await
        .unwrap();
    store.forget("u-c", NOW + 10).await.unwrap();
    assert_eq!(
        store.customer_summaries().await.unwrap(),
        [
            CustomerSummary {
                customer_id: "u-a".into(),
                email_sha256: Some(retailmind_commerce::profile::email_hash("ada@example.com")),
                created_at: NOW - 5,
                updated_at: NOW + 5,
            },
            CustomerSummary {
                customer_id: "u-b".into(),
                email_sha256: None,
                created_at: NOW,
                updated_at: NOW,
            },
        ]
    );
}
on_both!(what_the_lake_export_reads, exports);
