//! Every analysis on a generated shop, against answers computed here with plain loops over the
//! generated events (not SQL). The raw lake also holds replayed copies and a bad line, so the
//! answers only match if the ETL dropped them. The shops of the analyses that count orders also
//! report some orders twice (new event, same order id) and take some in pounds: an order counts
//! once, at its first report, and amounts in two currencies are not added up where a row can say
//! its currency.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use retailmind_analytics::analyses::{DayRange, LocalAnalytics, RfmSegment};
use retailmind_analytics::day::{day_end_ms, day_of};
use retailmind_analytics::etl::{self, EtlOptions};
use retailmind_analytics::generate::{self, ShopOptions};
use retailmind_analytics::store::LocalStore;
use retailmind_schema::{Event, Payload};

const FROM: &str = "2024-11-02";
const TO: &str = "2024-11-05";

struct Lab {
    _lake: tempfile::TempDir,
    analytics: LocalAnalytics,
    range: DayRange,
    /// The generated events within the range, once each.
    events: Vec<Event>,
}

fn week_shop() -> ShopOptions {
    ShopOptions {
        seed: 7,
        visitors: 500,
        days: 7,
        ..ShopOptions::default()
    }
}

/// The week's shop, reporting some orders twice and selling to some shoppers in pounds.
fn repeat_shop() -> ShopOptions {
    ShopOptions {
        reported_twice: 0.3,
        pound_shoppers: 0.3,
        ..week_shop()
    }
}

async fn lab() -> Lab {
    lab_of(&week_shop(), range()).await
}

/// The event ids of each order's first report, as the SQL orders reports (by time, then event
/// id as text); the shop must have reported some orders more than once.
fn first_reports(events: &[Event]) -> HashSet<uuid::Uuid> {
    let mut first: HashMap<&str, (i64, String)> = HashMap::new();
    let mut reports = 0;
    for e in events {
        if let Payload::Purchase(p) = &e.payload {
            reports += 1;
            let report = (e.timestamp, e.event_id.to_string());
            let f = first.entry(&p.order_id).or_insert_with(|| report.clone());
            *f = report.min(f.clone());
        }
    }
    assert!(reports > first.len(), "some orders were reported twice");
    first
        .into_values()
        .map(|(_, id)| id.parse().unwrap())
        .collect()
}

/// The lake of the shop `options` after the ETL, and its events within `range`.
async fn lab_of(options: &ShopOptions, range: DayRange) -> Lab {
    let all = generate::shop(options);
    let lake = tempfile::tempdir().unwrap();
    let mut objects = generate::raw_objects(&all, 40);
    // A replay of every fifth event and a line that is not an event at all.
    let replay: Vec<Event> = all.iter().step_by(5).cloned().collect();
    for (key, body) in generate::raw_objects(&replay, 1000) {
        objects.insert(key.replace("part-", "replay-"), body);
    }
    objects.insert(
        "events/dt=2024-11-03/hour=00/bad.json".into(),
        b"{\"type\":1}\n".to_vec(),
    );
    generate::write_local(lake.path(), &objects).unwrap();
    let report = etl::run(&LocalStore::new(lake.path()), &EtlOptions::default())
        .await
        .unwrap();
    assert_eq!(report.duplicates_dropped, replay.len());
    assert_eq!(report.quarantined, 1);
    let analytics = LocalAnalytics::open(lake.path()).await.unwrap();
    let events = all
        .into_iter()
        .filter(|e| {
            let dt = day_of(e.timestamp);
            dt.as_str() >= range.from() && dt.as_str() <= range.to()
        })
        .collect();
    Lab {
        _lake: lake,
        analytics,
        range,
        events,
    }
}

fn range() -> DayRange {
    DayRange::new(FROM, TO).unwrap()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

fn close_opt(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => close(a, b),
        (None, None) => true,
        _ => false,
    }
}

#[tokio::test]
async fn sales_trend_counts_each_order_once_per_day_and_currency() {
    let lab = lab_of(&repeat_shop(), range()).await;
    // order id -> (first report, currency, revenue): a second report of an order adds nothing.
    let mut orders: HashMap<&str, (i64, &str, i64)> = HashMap::new();
    let mut reports = 0;
    for e in &lab.events {
        if let Payload::Purchase(p) = &e.payload {
            reports += 1;
            let order =
                orders
                    .entry(&p.order_id)
                    .or_insert((e.timestamp, &p.currency, p.revenue_minor));
            order.0 = order.0.min(e.timestamp);
        }
    }
    assert!(reports > orders.len(), "some orders were reported twice");
    // (day, currency) -> (orders, revenue)
    let mut expected: BTreeMap<(String, &str), (i64, i64)> = BTreeMap::new();
    for (at, currency, revenue) in orders.values() {
        let day = expected.entry((day_of(*at), currency)).or_default();
        day.0 += 1;
        day.1 += revenue;
    }
    let currencies: BTreeSet<&str> = expected.keys().map(|(_, c)| *c).collect();
    assert_eq!(currencies, BTreeSet::from(["EUR", "GBP"]));
    let got = lab.analytics.sales_trend(&lab.range).await.unwrap();
    assert!(
        expected.len() >= 6,
        "the shop sold on most days: {expected:?}"
    );
    assert_eq!(got.len(), expected.len(), "{got:?}");
    for (row, ((dt, currency), (orders, revenue))) in got.iter().zip(&expected) {
        assert_eq!(
            (row.dt.as_str(), row.currency.as_deref()),
            (dt.as_str(), Some(*currency)),
            "ordered by day, then currency"
        );
        assert_eq!(
            (row.orders, row.revenue_minor),
            (*orders, *revenue),
            "{dt} {currency}"
        );
        assert!(
            close(row.aov_minor, *revenue as f64 / *orders as f64),
            "{dt} {currency}"
        );
    }
}

#[tokio::test]
async fn funnel_counts_visitors_reaching_each_step_in_order() {
    let lab = lab().await;
    let mut by_visitor: HashMap<&str, Vec<&Event>> = HashMap::new();
    for e in &lab.events {
        by_visitor.entry(&e.anonymous_id).or_default().push(e);
    }
    let kinds = [
        "product_view",
        "add_to_cart",
        "checkout_started",
        "purchase",
    ];
    let mut reached = [0i64; 4];
    for events in by_visitor.values() {
        let mut since = i64::MIN;
        for (step, kind) in kinds.iter().enumerate() {
            let first = events
                .iter()
                .filter(|e| e.payload.kind() == *kind && e.timestamp >= since)
                .map(|e| e.timestamp)
                .min();
            match first {
                Some(t) => {
                    reached[step] += 1;
                    since = t;
                }
                None => break,
            }
        }
    }
    let got = lab.analytics.conversion_funnel(&lab.range).await.unwrap();
    assert_eq!(got.len(), 4);
    for (i, row) in got.iter().enumerate() {
        assert_eq!(row.step, i as i64 + 1);
        assert_eq!(row.name, kinds[i]);
        assert_eq!(row.visitors, reached[i], "{}", kinds[i]);
        if i == 0 {
            assert_eq!((row.dropped, row.drop_off_rate), (None, None));
        } else {
            assert_eq!(row.dropped, Some(reached[i - 1] - reached[i]));
            let rate = 1.0 - reached[i] as f64 / reached[i - 1] as f64;
            assert!(close_opt(row.drop_off_rate, Some(rate)), "{}", kinds[i]);
        }
    }
    assert!(reached[3] > 0 && reached[0] > reached[1]);
}

#[derive(Default, Debug)]
struct ProductFacts {
    views: i64,
    viewers: BTreeSet<String>,
    cart_adds: i64,
    orders: BTreeSet<String>,
    units: i64,
    revenue: i64,
}

#[tokio::test]
async fn product_performance_matches_views_carts_and_sales_per_currency() {
    let lab = lab_of(&repeat_shop(), range()).await;
    let counted = first_reports(&lab.events);
    // (product, currency) -> facts
    let mut facts: BTreeMap<(String, Option<String>), ProductFacts> = BTreeMap::new();
    for e in &lab.events {
        match &e.payload {
            Payload::ProductView(p) => {
                let f = facts
                    .entry((p.product_id.clone(), p.currency.clone()))
                    .or_default();
                f.views += 1;
                f.viewers.insert(e.anonymous_id.clone());
            }
            Payload::AddToCart(l) => {
                let key = (l.product.product_id.clone(), l.product.currency.clone());
                facts.entry(key).or_default().cart_adds += 1
            }
            Payload::Purchase(p) if counted.contains(&e.event_id) => {
                for l in &p.items {
                    let currency = l.product.currency.clone().unwrap_or(p.currency.clone());
                    let key = (l.product.product_id.clone(), Some(currency));
                    let f = facts.entry(key).or_default();
                    f.orders.insert(p.order_id.clone());
                    f.units += i64::from(l.quantity);
                    f.revenue += l.product.price_minor.unwrap() * i64::from(l.quantity);
                }
            }
            _ => {}
        }
    }
    let sold_in: BTreeSet<&str> = facts
        .iter()
        .filter(|(_, f)| f.revenue > 0)
        .filter_map(|((_, c), _)| c.as_deref())
        .collect();
    assert_eq!(sold_in, BTreeSet::from(["EUR", "GBP"]));
    let got = lab.analytics.product_performance(&lab.range).await.unwrap();
    assert_eq!(got.len(), facts.len());
    assert!(
        got.windows(2)
            .all(|w| w[0].revenue_minor >= w[1].revenue_minor),
        "best sellers first"
    );
    for row in &got {
        let key = (row.product_id.clone(), row.currency.clone());
        let f = &facts[&key];
        assert_eq!(
            (
                row.views,
                row.viewers,
                row.cart_adds,
                row.orders,
                row.units,
                row.revenue_minor
            ),
            (
                f.views,
                f.viewers.len() as i64,
                f.cart_adds,
                f.orders.len() as i64,
                f.units,
                f.revenue
            ),
            "{key:?}"
        );
        let rate = |n: i64| (f.views > 0).then(|| n as f64 / f.views as f64);
        assert!(
            close_opt(row.add_to_cart_rate, rate(f.cart_adds)),
            "{key:?}"
        );
        assert!(
            close_opt(row.conversion_rate, rate(f.orders.len() as i64)),
            "{key:?}"
        );
    }
}

#[tokio::test]
async fn traffic_sources_attribute_sessions_by_their_first_event() {
    let lab = lab_of(&repeat_shop(), range()).await;
    let counted = first_reports(&lab.events);
    let mut sessions: BTreeMap<&str, Vec<&Event>> = BTreeMap::new();
    for e in &lab.events {
        sessions
            .entry(e.session_id.as_deref().unwrap())
            .or_default()
            .push(e);
    }
    /// Sessions, visitors, orders, revenue and sessions that bought, of one source and medium.
    #[derive(Default)]
    struct Source<'a>(i64, BTreeSet<&'a str>, i64, i64, i64);
    let mut expected: BTreeMap<(String, String), Source> = BTreeMap::new();
    for events in sessions.values() {
        let first = events
            .iter()
            .min_by_key(|e| (e.timestamp, e.event_id.to_string()))
            .unwrap();
        let utm = first.context.utm.clone().unwrap_or_default();
        let referrer = first
            .context
            .page
            .referrer
            .clone()
            .filter(|r| !r.is_empty());
        let host = referrer
            .as_deref()
            .and_then(|r| r.split('/').nth(2))
            .filter(|h| !h.is_empty());
        let source = utm
            .source
            .clone()
            .or(host.map(str::to_owned))
            .unwrap_or("(direct)".into());
        let medium = utm.medium.clone().unwrap_or(
            if referrer.is_some() {
                "referral"
            } else {
                "(none)"
            }
            .into(),
        );
        let entry = expected.entry((source, medium)).or_default();
        entry.0 += 1;
        entry.1.insert(&first.anonymous_id);
        let mut bought = false;
        for e in events {
            match &e.payload {
                Payload::Purchase(p) if counted.contains(&e.event_id) => {
                    entry.2 += 1;
                    entry.3 += p.revenue_minor;
                    bought = true;
                }
                _ => {}
            }
        }
        entry.4 += i64::from(bought);
    }
    let got = lab.analytics.traffic_sources(&lab.range).await.unwrap();
    assert_eq!(got.len(), expected.len(), "{got:?}");
    assert!(expected.contains_key(&("www.facebook.com".into(), "referral".into())));
    assert!(expected.contains_key(&("(direct)".into(), "(none)".into())));
    for row in &got {
        let e = &expected[&(row.source.clone(), row.medium.clone())];
        assert_eq!(
            (row.sessions, row.visitors, row.orders, row.revenue_minor),
            (e.0, e.1.len() as i64, e.2, e.3),
            "{} / {}",
            row.source,
            row.medium
        );
        assert!(close(row.conversion_rate, e.4 as f64 / e.0 as f64));
    }
}

/// 3, 2 or 1: whether `value` reaches the first threshold, the second, or neither.
fn score(value: i64, thresholds: [i64; 2], higher_is_better: bool) -> i64 {
    let reaches = |t: i64| {
        if higher_is_better {
            value >= t
        } else {
            value <= t
        }
    };
    if reaches(thresholds[0]) {
        3
    } else if reaches(thresholds[1]) {
        2
    } else {
        1
    }
}

#[tokio::test]
async fn rfm_segments_follow_the_thresholds_per_currency() {
    // Five months of a shop whose customers come back often, so that recency reaches past 30
    // and 90 days, frequency 2 and 5 orders; some orders are reported twice and count once,
    // and customers who pay in pounds are scored apart.
    let lab = lab_of(
        &ShopOptions {
            seed: 11,
            start_day: "2024-06-01".into(),
            days: 150,
            visitors: 600,
            sessions_per_visitor: 12,
            reported_twice: 0.3,
            pound_shoppers: 0.3,
            ..ShopOptions::default()
        },
        DayRange::new("2024-06-01", "2024-10-28").unwrap(),
    )
    .await;
    let end = day_end_ms(lab.range.to()).unwrap();
    /// Order id -> (first report, revenue).
    type Orders<'a> = BTreeMap<&'a str, (i64, i64)>;
    // (customer, currency) -> its orders
    let mut customers: BTreeMap<(String, &str), Orders> = BTreeMap::new();
    for e in &lab.events {
        if let Payload::Purchase(p) = &e.payload {
            let who = e.user_id.clone().unwrap_or_else(|| e.anonymous_id.clone());
            let order = customers
                .entry((who, &p.currency))
                .or_default()
                .entry(&p.order_id)
                .or_insert((e.timestamp, p.revenue_minor));
            order.0 = order.0.min(e.timestamp);
        }
    }
    // (segment, currency) -> (customers, orders, revenue, sum of recency days)
    let mut expected: BTreeMap<(&str, &str), (i64, i64, i64, i64)> = BTreeMap::new();
    let mut scores_seen = BTreeSet::new();
    for ((_, currency), orders) in &customers {
        let last = orders.values().map(|o| o.0).max().unwrap();
        let frequency = orders.len() as i64;
        let revenue: i64 = orders.values().map(|o| o.1).sum();
        let recency = (end - last) / 86_400_000;
        let r = score(recency, [30, 90], false);
        let f = score(frequency, [5, 2], true);
        let m = score(revenue, [50_000, 10_000], true);
        scores_seen.extend([("r", r), ("f", f), ("m", m)]);
        let segment = if r == 3 && f == 3 && m >= 2 {
            "champions"
        } else if r >= 2 && f >= 2 {
            "loyal"
        } else if r == 3 && f == 1 {
            "new"
        } else if r == 1 && f >= 2 {
            "at_risk"
        } else {
            "hibernating"
        };
        let s = expected.entry((segment, currency)).or_default();
        s.0 += 1;
        s.1 += frequency;
        s.2 += revenue;
        s.3 += recency;
    }
    assert_eq!(
        scores_seen.len(),
        9,
        "every score is reached: {scores_seen:?}"
    );
    for currency in ["EUR", "GBP"] {
        assert_eq!(
            expected
                .keys()
                .filter(|k| k.1 == currency)
                .map(|k| k.0)
                .collect::<BTreeSet<_>>(),
            BTreeSet::from(["at_risk", "champions", "hibernating", "loyal", "new"]),
            "every segment is reached in {currency}"
        );
    }
    let got = lab.analytics.rfm_segments(&lab.range).await.unwrap();
    assert_eq!(got.len(), expected.len(), "{got:?}");
    for row in &got {
        let key = (row.segment.as_str(), row.currency.as_deref().unwrap());
        let s = expected[&key];
        assert_eq!(
            (row.customers, row.orders, row.revenue_minor),
            (s.0, s.1, s.2),
            "{key:?}"
        );
        assert!(
            close(row.avg_recency_days, s.3 as f64 / s.0 as f64),
            "{key:?}"
        );
    }
    assert!(
        got.windows(2).all(|w| (&w[0].currency, -w[0].revenue_minor)
            <= (&w[1].currency, -w[1].revenue_minor)),
        "by currency, most revenue first"
    );
}

#[tokio::test]
async fn recommendation_attribution_credits_the_latest_click_before_a_purchase() {
    let lab = lab_of(&repeat_shop(), range()).await;
    let counted = first_reports(&lab.events);
    struct Rec {
        placement: String,
        strategy: String,
        shown: i64,
        clicks: i64,
    }
    let text = |p: &serde_json::Map<String, serde_json::Value>, k: &str| {
        p.get(k)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned()
    };
    let mut recs: BTreeMap<String, Rec> = BTreeMap::new();
    /// A click as (time, event id, recommendation id).
    type Click = (i64, String, String);
    // (visitor, product) -> its clicks
    let mut clicks: HashMap<(String, String), Vec<Click>> = HashMap::new();
    for e in &lab.events {
        if let Payload::Custom(c) = &e.payload {
            if c.name == "recommendation_impression" {
                recs.insert(
                    text(&c.props, "recommendation_id"),
                    Rec {
                        placement: text(&c.props, "placement"),
                        strategy: text(&c.props, "strategy"),
                        shown: c.props["product_ids"].as_array().unwrap().len() as i64,
                        clicks: 0,
                    },
                );
            }
        }
    }
    for e in &lab.events {
        if let Payload::Custom(c) = &e.payload {
            if c.name == "recommendation_click" {
                let id = text(&c.props, "recommendation_id");
                if let Some(r) = recs.get_mut(&id) {
                    r.clicks += 1;
                }
                clicks
                    .entry((e.anonymous_id.clone(), text(&c.props, "product_id")))
                    .or_default()
                    .push((e.timestamp, e.event_id.to_string(), id));
            }
        }
    }
    // recommendation id -> (lines, revenue)
    let mut credited: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for e in &lab.events {
        if let Payload::Purchase(p) = &e.payload {
            if !counted.contains(&e.event_id) {
                continue;
            }
            for l in &p.items {
                let key = (e.anonymous_id.clone(), l.product.product_id.clone());
                let latest = clicks
                    .get(&key)
                    .into_iter()
                    .flatten()
                    .filter(|c| c.0 <= e.timestamp)
                    .max_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
                if let Some((_, _, rec)) = latest {
                    let c = credited.entry(rec.clone()).or_default();
                    c.0 += 1;
                    c.1 += l.product.price_minor.unwrap() * i64::from(l.quantity);
                }
            }
        }
    }
    // (placement, strategy) -> (shown, clicks, lines, revenue)
    let mut expected: BTreeMap<(String, String), (i64, i64, i64, i64)> = BTreeMap::new();
    for (id, r) in &recs {
        let x = expected
            .entry((r.placement.clone(), r.strategy.clone()))
            .or_default();
        x.0 += r.shown;
        x.1 += r.clicks;
        let (lines, revenue) = credited.get(id).copied().unwrap_or_default();
        x.2 += lines;
        x.3 += revenue;
    }
    let got = lab.analytics.rec_attribution(&lab.range).await.unwrap();
    assert_eq!(got.len(), expected.len(), "{got:?}");
    assert!(
        expected.values().any(|x| x.2 > 0),
        "some recommended products were bought"
    );
    for row in &got {
        let x = expected[&(row.placement.clone(), row.strategy.clone())];
        assert_eq!(
            (
                row.impressions,
                row.clicks,
                row.purchased_lines,
                row.revenue_minor
            ),
            x,
            "{} / {}",
            row.placement,
            row.strategy
        );
        assert!(close(row.ctr, x.1 as f64 / x.0 as f64));
    }
}

#[tokio::test]
async fn an_empty_lake_answers_with_no_rows() {
    let lake = tempfile::tempdir().unwrap();
    let analytics = LocalAnalytics::open(lake.path()).await.unwrap();
    assert!(analytics.sales_trend(&range()).await.unwrap().is_empty());
    assert!(analytics
        .rec_attribution(&range())
        .await
        .unwrap()
        .is_empty());
    let funnel = analytics.conversion_funnel(&range()).await.unwrap();
    assert!(funnel.iter().all(|s| s.visitors == 0));
}

/// One hand-made event line at `ts` (ms) with a UUIDv7 id from `seq`.
fn line(seq: u8, ts: i64, kind: &str, properties: serde_json::Value) -> String {
    let id = uuid::Builder::from_unix_timestamp_millis(ts as u64, &[seq; 10]).into_uuid();
    serde_json::json!({
        "event_id": id, "type": kind, "anonymous_id": "a-1", "session_id": "s-1",
        "timestamp": ts, "received_at": ts + 100,
        "context": {"page": {"url": "https://shop.example/"}},
        "properties": properties,
    })
    .to_string()
}

/// The purchase of `order` (two of P1 at 3.50 of `currency`) as a hand-made event line.
fn purchase(seq: u8, ts: i64, order: &str, currency: &str) -> String {
    line(
        seq,
        ts,
        "purchase",
        serde_json::json!({"order_id": order, "revenue_minor": 700,
        "currency": currency, "items": [{"product_id": "P1", "price_minor": 350, "quantity": 2}]}),
    )
}

/// A lake holding `lines` after the ETL, every line valid.
async fn lake_of(lines: &[String]) -> (tempfile::TempDir, LocalAnalytics) {
    use retailmind_analytics::store::LakeStore;
    let lake = tempfile::tempdir().unwrap();
    let store = LocalStore::new(lake.path());
    store
        .put("events/x.json", lines.join("\n").into_bytes().into())
        .await
        .unwrap();
    let report = etl::run(&store, &EtlOptions::default()).await.unwrap();
    assert_eq!(report.events_valid, lines.len());
    let analytics = LocalAnalytics::open(lake.path()).await.unwrap();
    (lake, analytics)
}

#[tokio::test]
async fn a_purchase_is_credited_to_the_latest_recommendation_click_before_it() {
    let t = retailmind_analytics::day::day_start_ms("2024-11-03").unwrap() + 3_600_000;
    let shown = |seq, ts, rec: &str, placement: &str, strategy: &str| {
        line(
            seq,
            ts,
            "custom",
            serde_json::json!({"name": "recommendation_impression", "props": {
            "recommendation_id": rec, "placement": placement, "strategy": strategy,
            "product_ids": ["P1", "P2"]}}),
        )
    };
    let clicked = |seq, ts, rec: &str| {
        line(
            seq,
            ts,
            "custom",
            serde_json::json!({"name": "recommendation_click", "props": {
            "recommendation_id": rec, "product_id": "P1", "position": 0}}),
        )
    };
    let lines = [
        shown(1, t, "rec-a", "home", "popular"),
        clicked(2, t + 1_000, "rec-a"),
        shown(3, t + 2_000, "rec-b", "product", "co_view"),
        clicked(4, t + 3_000, "rec-b"),
        purchase(5, t + 4_000, "o-1", "EUR"),
        // A click after the purchase earns nothing for that purchase.
        clicked(6, t + 5_000, "rec-a"),
    ];
    let (_lake, analytics) = lake_of(&lines).await;
    let got = analytics.rec_attribution(&range()).await.unwrap();
    let summary: Vec<(&str, &str, i64, i64, i64, i64)> = got
        .iter()
        .map(|r| {
            let row = (
                r.placement.as_str(),
                r.strategy.as_str(),
                r.impressions,
                r.clicks,
            );
            (
                row.0,
                row.1,
                row.2,
                row.3,
                r.purchased_lines,
                r.revenue_minor,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("home", "popular", 2, 2, 0, 0),
            ("product", "co_view", 2, 1, 1, 700)
        ]
    );
    assert!(close(got[0].ctr, 1.0) && close(got[1].ctr, 0.5));
}

/// Each segment's name, currency, customers and orders.
fn segments(rows: &[RfmSegment]) -> Vec<(&str, Option<&str>, i64, i64)> {
    rows.iter()
        .map(|s| {
            let currency = s.currency.as_deref();
            (s.segment.as_str(), currency, s.customers, s.orders)
        })
        .collect()
}

#[tokio::test]
async fn an_order_reported_again_days_later_was_placed_at_its_first_report() {
    let placed = retailmind_analytics::day::day_start_ms(FROM).unwrap() + 10 * 3_600_000;
    // The thank-you page reloaded from the browser's history two days later.
    let lines = [
        purchase(1, placed, "o-1", "EUR"),
        purchase(2, placed + 2 * 86_400_000, "o-1", "EUR"),
    ];
    let (_lake, analytics) = lake_of(&lines).await;
    let sales = analytics.sales_trend(&range()).await.unwrap();
    assert_eq!(
        sales
            .iter()
            .map(|d| (d.dt.as_str(), d.orders, d.revenue_minor))
            .collect::<Vec<_>>(),
        [(FROM, 1, 700)]
    );
    let rfm = analytics.rfm_segments(&range()).await.unwrap();
    let recency = (day_end_ms(TO).unwrap() - placed) / 86_400_000;
    assert_eq!(recency, 3);
    assert_eq!(segments(&rfm), [("new", Some("EUR"), 1, 1)]);
    assert!(close(rfm[0].avg_recency_days, recency as f64), "{rfm:?}");
}

#[tokio::test]
async fn a_customer_paying_in_two_currencies_is_scored_in_each() {
    let t = retailmind_analytics::day::day_start_ms(TO).unwrap();
    let lines = [
        purchase(1, t, "o-1", "EUR"),
        purchase(2, t + 1_000, "o-2", "GBP"),
    ];
    let (_lake, analytics) = lake_of(&lines).await;
    let rfm = analytics.rfm_segments(&range()).await.unwrap();
    // Taken together, the two orders would make one loyal customer.
    assert_eq!(
        segments(&rfm),
        [("new", Some("EUR"), 1, 1), ("new", Some("GBP"), 1, 1)]
    );
}
