//! The lake job's exports on the embedded default: sessions from the session store, orders,
//! lines and customers from the transactions store (SQLite), into the local lake's tables.
//! Expected tables are built here from what the test put in the stores.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use retailmind_analytics::day::{day_of, day_start_ms};
use retailmind_analytics::etl::{self, EtlOptions};
use retailmind_analytics::event_rows::EventRow;
use retailmind_analytics::export::Sources;
use retailmind_analytics::export_rows::{CustomerRow, OrderLineRow, OrderRow, SessionRow};
use retailmind_analytics::generate::{self, ShopOptions};
use retailmind_analytics::job::run_once;
use retailmind_analytics::store::{LakeStore, LocalStore};
use retailmind_analytics::tables::{EVENTS, ORDERS, ORDER_LINES, SESSIONS};
use retailmind_commerce::order::decode_order;
use retailmind_commerce::profile::decode_traits;
use retailmind_commerce::{CommerceStore, OrderStatus, SqlCommerce, StatusChange};
use retailmind_connectors::{embedded, Merge, SessionStore, StoredAt};
use retailmind_schema::Session;
use serde_json::json;
use uuid::Uuid;

const HOUR: i64 = 3_600_000;

fn at(day: &str, hour: i64, minute: i64) -> i64 {
    day_start_ms(day).unwrap() + hour * HOUR + minute * 60_000
}

fn session(anonymous_id: &str, start_ms: i64, minutes: i64, pages: u32) -> Session {
    Session {
        session_id: Uuid::now_v7().to_string(),
        anonymous_id: anonymous_id.into(),
        user_id: None,
        start_ms,
        end_ms: start_ms + minutes * 60_000,
        event_count: pages + 1,
        page_views: pages,
        entry_url: "https://shop.example/?utm_source=news".into(),
        exit_url: "https://shop.example/cart".into(),
        referrer: None,
        utm_source: Some("news".into()),
        utm_medium: None,
        utm_campaign: None,
        products_viewed: pages.saturating_sub(1),
        cart_adds: 1,
        purchases: 0,
        revenue_minor: 0,
        currency: None,
        other_revenue: Vec::new(),
        engaged_ms: None,
        engaged: pages > 1,
        bounce: pages == 1,
        device: "desktop".into(),
        session_number: 1,
        event_ids: (0..=pages).map(|_| Uuid::now_v7()).collect(),
        orders: Vec::new(),
        version: 1,
    }
}

fn order(order_id: &str, customer: &str, placed_at: i64, lines: &[(&str, i64, i64)]) -> Vec<u8> {
    let subtotal: i64 = lines.iter().map(|(_, price, qty)| price * qty).sum();
    json!({
        "order_id": order_id,
        "customer_id": customer,
        "anonymous_id": format!("anon-{customer}"),
        "placed_at": placed_at,
        "currency": "EUR",
        "lines": lines.iter().map(|(p, price, qty)| json!({
            "product_id": p, "name": format!("Product {p}"), "category": "wine",
            "unit_price_minor": price, "quantity": qty
        })).collect::<Vec<_>>(),
        "subtotal_minor": subtotal,
        "total_minor": subtotal,
        "shipping": {"method": "standard", "country": "DE", "postal_code": "10115"},
        "payment": {"method": "card", "card_brand": "visa", "card_last4": "4242", "status": "captured"}
    })
    .to_string()
    .into_bytes()
}

/// Every file under `dir` with its bytes.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.insert(
                    path.to_string_lossy().into_owned(),
                    std::fs::read(&path).unwrap(),
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, &mut out);
    out
}

/// The Parquet files of the lake's tables.
fn table_files(root: &Path) -> BTreeMap<String, Vec<u8>> {
    files(&root.join("lake").join("tables"))
        .into_iter()
        .filter(|(k, _)| k.ends_with(".parquet"))
        .collect()
}

async fn sessions_table(lake: &dyn LakeStore, days: &[&str]) -> BTreeMap<String, Vec<SessionRow>> {
    let mut out = BTreeMap::new();
    for day in days {
        let rows: Vec<SessionRow> = etl::read_table(lake, &SESSIONS, day).await.unwrap();
        if !rows.is_empty() {
            out.insert((*day).to_owned(), rows);
        }
    }
    out
}

async fn customers_table(lake: &LocalStore) -> Vec<CustomerRow> {
    let mut out = Vec::new();
    for object in lake.list("tables/customers/").await.unwrap() {
        let bytes = lake.get(&object.key).await.unwrap().unwrap();
        for batch in retailmind_analytics::parquet_io::read(&object.key, bytes).unwrap() {
            out.extend(retailmind_analytics::rows::from_batch::<CustomerRow>(&batch).unwrap());
        }
    }
    out
}

struct Shop {
    _dir: tempfile::TempDir,
    root: std::path::PathBuf,
    lake: LocalStore,
    sessions: Arc<dyn SessionStore>,
    commerce: Arc<SqlCommerce>,
}

impl Shop {
    async fn open() -> Shop {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_owned();
        let backend = embedded::open(&root.join("data")).unwrap();
        let url = format!("sqlite://{}", root.join("commerce.db").display());
        let commerce = Arc::new(SqlCommerce::connect(&url, 2).await.unwrap());
        Shop {
            lake: LocalStore::new(root.join("lake")),
            root,
            _dir: dir,
            sessions: backend.sessions,
            commerce,
        }
    }

    async fn run(&self, now_ms: i64) -> retailmind_analytics::job::JobReport {
        let sources = Sources {
            sessions: Some(self.sessions.as_ref()),
            commerce: Some(self.commerce.as_ref() as &dyn CommerceStore),
        };
        run_once(&self.lake, sources, &EtlOptions::default(), now_ms)
            .await
            .unwrap()
    }

    /// Writes a generated shop's raw objects, named `<batch>-part-…` so that batches never
    /// overwrite each other (raw lake objects are written once).
    fn add_raw_events(&self, batch: &str, events: &[retailmind_schema::Event]) {
        let objects = generate::raw_objects(events, 500)
            .into_iter()
            .map(|(key, body)| (key.replace("part-", &format!("{batch}-part-")), body))
            .collect();
        generate::write_local(&self.root.join("lake"), &objects).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_orders_and_customers_reach_the_lake_and_reruns_change_nothing() {
    let shop = Shop::open().await;
    shop.add_raw_events(
        "a",
        &generate::shop(&ShopOptions {
            visitors: 30,
            days: 3,
            start_day: "2024-11-01".into(),
            ..ShopOptions::default()
        }),
    );

    // Sessions on the event days, one across midnight (it belongs to the day it started).
    let mut stored = vec![
        session("v1", at("2024-11-01", 10, 0), 12, 4),
        session("v2", at("2024-11-02", 23, 50), 25, 3),
        session("v3", at("2024-11-03", 9, 0), 1, 1),
        session("v1", at("2024-11-03", 18, 30), 5, 2),
    ];
    // A shopper who switched currencies within the visit.
    stored[1].purchases = 2;
    stored[1].add_revenue("EUR", 1500);
    stored[1].add_revenue("GBP", 900);
    shop.sessions.put(&stored).await.unwrap();

    let t1 = at("2024-11-01", 12, 0);
    let t2 = at("2024-11-02", 15, 0);
    let a = decode_order(
        &order("A-1", "c-1", t1, &[("P1", 1500, 2), ("P2", 900, 1)]),
        t1,
    )
    .unwrap();
    let b = decode_order(&order("B-2", "c-2", t2, &[("P3", 4000, 1)]), t2).unwrap();
    shop.commerce.place_order("k-a", &a, t1).await.unwrap();
    shop.commerce.place_order("k-b", &b, t2).await.unwrap();
    for (customer, email) in [("c-1", "Ann@Example.org"), ("c-2", "bob@example.org")] {
        let traits = decode_traits(
            json!({"email": email, "name": "Secret Name"})
                .to_string()
                .as_bytes(),
        )
        .unwrap();
        shop.commerce
            .put_traits(customer, traits, t2)
            .await
            .unwrap();
    }

    let now = at("2024-11-04", 0, 0);
    let first = shop.run(now).await;
    assert_eq!(first.exports.sessions, 4);
    assert_eq!(first.exports.orders, 2);
    assert_eq!(first.exports.order_lines, 3);
    assert_eq!(first.exports.customers, Some(2));
    assert_eq!(first.exports.order_days, vec!["2024-11-01", "2024-11-02"]);

    // The sessions table, day by day, equals the store's sessions by start day.
    let mut expected: BTreeMap<String, Vec<SessionRow>> = BTreeMap::new();
    for s in &stored {
        expected
            .entry(day_of(s.start_ms))
            .or_default()
            .push(SessionRow::from(s));
    }
    for rows in expected.values_mut() {
        rows.sort_by_key(|r| r.start_ms);
    }
    let days = ["2024-10-31", "2024-11-01", "2024-11-02", "2024-11-03"];
    let table = sessions_table(&shop.lake, &days).await;
    assert_eq!(table, expected);
    let switched = &table["2024-11-02"][0];
    assert_eq!(
        (
            switched.revenue_minor,
            switched.currency.as_deref(),
            switched.other_revenue.as_deref()
        ),
        (1500, Some("EUR"), Some(r#"{"GBP":900}"#))
    );

    let orders: Vec<OrderRow> = etl::read_table(&shop.lake, &ORDERS, "2024-11-01")
        .await
        .unwrap();
    assert_eq!(orders.len(), 1);
    assert_eq!(orders[0].order_id, "A-1");
    assert_eq!(orders[0].total_minor, 3900);
    assert_eq!(orders[0].payment_method, "card");
    assert_eq!(orders[0].status, "placed");
    assert_eq!(orders[0].shipping_country.as_deref(), Some("DE"));
    let lines: Vec<OrderLineRow> = etl::read_table(&shop.lake, &ORDER_LINES, "2024-11-01")
        .await
        .unwrap();
    let line_view: Vec<(i32, &str, i64, i32)> = lines
        .iter()
        .map(|l| {
            (
                l.line_no,
                l.product_id.as_str(),
                l.unit_price_minor,
                l.quantity,
            )
        })
        .collect();
    assert_eq!(line_view, vec![(1, "P1", 1500, 2), (2, "P2", 900, 1)]);

    // Customers are pseudonymised: the hash of the normalised email, nothing readable.
    let customers = customers_table(&shop.lake).await;
    let ids: Vec<&str> = customers.iter().map(|c| c.customer_id.as_str()).collect();
    assert_eq!(ids, vec!["c-1", "c-2"]);
    let ann = sha256_hex("ann@example.org");
    assert_eq!(customers[0].email_sha256.as_deref(), Some(ann.as_str()));
    let lake_files = files(&shop.root.join("lake").join("tables"));
    for (path, bytes) in &lake_files {
        for secret in [
            "Ann@Example.org",
            "ann@example.org",
            "Secret Name",
            "10115",
            "4242",
        ] {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{path} holds {secret:?}"
            );
        }
    }

    // A re-run with nothing new leaves every table file as it was (only the manifests move on).
    let before = table_files(&shop.root);
    let again = shop.run(now + HOUR).await;
    assert!(again.exports.order_days.is_empty(), "{:?}", again.exports);
    let after = table_files(&shop.root);
    let changed: Vec<&String> = after
        .iter()
        .filter(|(k, v)| before.get(*k) != Some(*v))
        .map(|(k, _)| k)
        .collect();
    assert!(
        changed.is_empty(),
        "rewritten with other bytes: {changed:?}"
    );
    assert_eq!(after.len(), before.len());

    // An order's status changes: its day is written again on the next run, and only its day.
    shop.commerce
        .change_status(
            "A-1",
            &StatusChange {
                status: OrderStatus::Paid,
                at: None,
                note: None,
            },
            now + 2 * HOUR,
        )
        .await
        .unwrap();
    // A session grows (its visitor came back) and new events for its day reach the lake.
    stored[2].end_ms += 10 * 60_000;
    stored[2].page_views = 3;
    stored[2].version = 2;
    shop.sessions.put(&stored[2..3]).await.unwrap();
    shop.add_raw_events(
        "b",
        &generate::shop(&ShopOptions {
            seed: 7,
            visitors: 5,
            days: 1,
            start_day: "2024-11-03".into(),
            ..ShopOptions::default()
        }),
    );
    let third = shop.run(now + 3 * HOUR).await;
    assert_eq!(third.exports.order_days, vec!["2024-11-01"]);
    assert!(
        third.events.changed_objects.is_empty(),
        "{:?}",
        third.events
    );
    let orders: Vec<OrderRow> = etl::read_table(&shop.lake, &ORDERS, "2024-11-01")
        .await
        .unwrap();
    assert_eq!(orders[0].status, "paid");
    let day3 = &sessions_table(&shop.lake, &["2024-11-03"]).await["2024-11-03"];
    let grown = day3.iter().find(|r| r.anonymous_id == "v3").unwrap();
    assert_eq!(grown.page_views, 3);

    // Customer c-2 browsed while signed in: their events reach the raw lake and the tables.
    let mut theirs = generate::shop(&ShopOptions {
        seed: 99,
        visitors: 1,
        days: 1,
        start_day: "2024-11-02".into(),
        ..ShopOptions::default()
    });
    for e in &mut theirs {
        e.user_id = Some("c-2".into());
        e.anonymous_id = "anon-of-c-2".into();
    }
    shop.add_raw_events("c", &theirs);
    shop.run(now + 4 * HOUR).await;
    let their_ids: Vec<String> = theirs.iter().map(|e| e.event_id.to_string()).collect();
    let mentions = |root: &Path| -> Vec<String> {
        files(&root.join("lake"))
            .into_iter()
            .filter(|(_, bytes)| {
                [b"anon-of-c-2".as_slice(), their_ids[0].as_bytes()]
                    .iter()
                    .any(|id| bytes.windows(id.len()).any(|w| w == *id))
            })
            .map(|(path, _)| path)
            .collect()
    };
    assert!(
        !mentions(&shop.root).is_empty(),
        "their events are in the lake"
    );
    let events_before = all_event_ids(&shop.lake).await;
    assert!(their_ids.iter().all(|id| events_before.contains(id)));

    // They ask to be forgotten: the customers table loses them, their order stays unlinked, and
    // no raw line, quarantine line or table row of theirs is left; everyone else's stay.
    shop.commerce.forget("c-2", now + 5 * HOUR).await.unwrap();
    assert!(!shop.commerce.pending_deletions().await.unwrap().is_empty());
    let report = shop.run(now + 6 * HOUR).await;
    assert_eq!(report.forgotten.requests, 1, "{:?}", report.forgotten);
    assert_eq!(report.forgotten.raw_lines_removed, theirs.len());
    assert_eq!(report.forgotten.event_rows_removed, theirs.len());
    assert!(
        mentions(&shop.root).is_empty(),
        "still mentioned in {:?}",
        mentions(&shop.root)
    );
    let events_after = all_event_ids(&shop.lake).await;
    assert_eq!(events_after.len(), events_before.len() - theirs.len());
    assert!(shop.commerce.pending_deletions().await.unwrap().is_empty());
    // The ETL does not see the rewritten raw objects as new or changed.
    let quiet = shop.run(now + 7 * HOUR).await;
    assert_eq!(quiet.events.files_read, 0);
    assert!(
        quiet.events.changed_objects.is_empty(),
        "{:?}",
        quiet.events
    );
    let ids: Vec<String> = customers_table(&shop.lake)
        .await
        .into_iter()
        .map(|c| c.customer_id)
        .collect();
    assert_eq!(ids, vec!["c-1"]);
    let orders: Vec<OrderRow> = etl::read_table(&shop.lake, &ORDERS, "2024-11-02")
        .await
        .unwrap();
    assert_eq!(orders[0].order_id, "B-2");
    assert_eq!(orders[0].customer_id, None);
    assert_eq!(orders[0].anonymous_id, None);
}

/// A late event just before midnight joins a session that started after it to one of the day
/// before: the next run rewrites the later day too, so the absorbed session leaves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_joined_to_one_of_the_day_before_leaves_its_old_day() {
    let shop = Shop::open().await;
    let events = |seed, days, start_day: &str| {
        generate::shop(&ShopOptions {
            seed,
            visitors: 5,
            days,
            start_day: start_day.into(),
            ..ShopOptions::default()
        })
    };
    shop.add_raw_events("a", &events(1, 2, "2024-11-01"));
    let evening = session("v9", at("2024-11-01", 23, 20), 10, 2);
    let night = session("v9", at("2024-11-02", 0, 15), 5, 1);
    shop.sessions
        .put(&[evening.clone(), night.clone()])
        .await
        .unwrap();
    let now = at("2024-11-03", 0, 0);
    shop.run(now).await;
    shop.run(now + HOUR).await;
    let days = ["2024-11-01", "2024-11-02"];
    let ids = |table: &BTreeMap<String, Vec<SessionRow>>| -> Vec<(String, String)> {
        table
            .iter()
            .flat_map(|(day, rows)| rows.iter().map(|r| (day.clone(), r.session_id.clone())))
            .collect()
    };
    assert_eq!(
        ids(&sessions_table(&shop.lake, &days).await),
        [
            ("2024-11-01".to_owned(), evening.session_id.clone()),
            ("2024-11-02".to_owned(), night.session_id.clone()),
        ]
    );

    // An event at 23:45 reaches the lake; the processor joins the two visits.
    let joined = Session {
        end_ms: night.end_ms,
        event_count: evening.event_count + night.event_count + 1,
        version: 2,
        ..evening.clone()
    };
    shop.sessions
        .merge(&Merge {
            survivor: joined.clone(),
            survivor_read_start: Some(evening.start_ms),
            absorbed: vec![StoredAt::of(&night)],
        })
        .await
        .unwrap();
    shop.add_raw_events("late", &events(2, 1, "2024-11-01"));
    let report = shop.run(now + 2 * HOUR).await;
    assert!(
        report
            .exports
            .session_days
            .contains(&"2024-11-02".to_owned()),
        "{:?}",
        report.exports
    );
    let table = sessions_table(&shop.lake, &days).await;
    assert_eq!(
        ids(&table),
        [("2024-11-01".to_owned(), evening.session_id.clone())]
    );
    assert_eq!(
        table["2024-11-01"][0].event_count,
        joined.event_count as i32
    );
}

/// Every event id in the lake's events table.
async fn all_event_ids(lake: &LocalStore) -> std::collections::BTreeSet<String> {
    let mut ids = std::collections::BTreeSet::new();
    for day in ["2024-11-01", "2024-11-02", "2024-11-03"] {
        let rows: Vec<EventRow> = etl::read_table(lake, &EVENTS, day).await.unwrap();
        ids.extend(rows.into_iter().map(|r| r.event_id));
    }
    ids
}

fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
