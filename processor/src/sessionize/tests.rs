use retailmind_schema::{
    CartLine, Context, Custom, Event, Page, PageView, Payload, Product, Purchase, Utm,
};
use uuid::Uuid;

use super::*;

const MIN: i64 = 60_000;

fn event(n: u128, anon: &str, ts: i64, payload: Payload) -> Event {
    // Version-7 layout with a counter in the low bits: distinct, ordered ids.
    let id = Uuid::from_u128((0x0190_0000_0000_7000_8000_0000_0000_0000u128) | n);
    Event {
        event_id: id,
        anonymous_id: anon.into(),
        user_id: None,
        session_id: None,
        timestamp: ts,
        received_at: None,
        context: Context {
            page: Page {
                url: format!("https://shop.example/p{n}"),
                referrer: None,
                title: None,
            },
            ..Context::default()
        },
        payload,
    }
}

fn page(n: u128, ts: i64) -> Event {
    event(n, "a", ts, Payload::PageView(PageView::default()))
}

fn run(known: Vec<Session>, events: &[Event]) -> Vec<Session> {
    let refs: Vec<&Event> = events.iter().collect();
    sessionize(known, &refs, &SessionRules::default()).changed
}

#[test]
fn thirty_minutes_of_silence_starts_a_new_session() {
    let events = [page(1, 0), page(2, 29 * MIN), page(3, 59 * MIN + 1)];
    let out = run(vec![], &events);
    assert_eq!(out.len(), 2);
    assert_eq!(
        (out[0].start_ms, out[0].end_ms, out[0].page_views),
        (0, 29 * MIN, 2)
    );
    assert_eq!(out[1].start_ms, 59 * MIN + 1);
    assert_eq!(out[0].session_id, events[0].event_id.to_string());
    assert!(out.iter().all(|s| s.version == 1));
}

#[test]
fn the_inactivity_gap_is_the_configured_one() {
    let rules = SessionRules {
        inactivity_ms: 10 * MIN,
        ..SessionRules::default()
    };
    let events = [page(1, 0), page(2, 9 * MIN), page(3, 19 * MIN + 1)];
    let refs: Vec<&Event> = events.iter().collect();
    let out = sessionize(vec![], &refs, &rules).changed;
    assert_eq!(
        out.iter()
            .map(|s| (s.start_ms, s.event_count))
            .collect::<Vec<_>>(),
        [(0, 2), (19 * MIN + 1, 1)]
    );
}

#[test]
fn lateness_is_measured_from_the_event_to_its_arrival() {
    let rules = SessionRules::default();
    let mut event = page(1, 0);
    assert!(!too_late(&event, &rules), "no arrival time: on time");
    event.received_at = Some(rules.allowed_lateness_ms);
    assert!(!too_late(&event, &rules), "at the bound");
    event.received_at = Some(rules.allowed_lateness_ms + 1);
    assert!(too_late(&event, &rules));
    // A sender's clock ahead of the collector's is not lateness.
    event.received_at = Some(-MIN);
    assert!(!too_late(&event, &rules));
}

#[test]
fn events_out_of_order_give_the_same_session() {
    let in_order = run(vec![], &[page(1, 0), page(2, 10 * MIN), page(3, 20 * MIN)]);
    let shuffled = run(vec![], &[page(3, 20 * MIN), page(1, 0), page(2, 10 * MIN)]);
    assert_eq!(in_order, shuffled);
    assert_eq!(in_order[0].entry_url, "https://shop.example/p1");
    assert_eq!(in_order[0].exit_url, "https://shop.example/p3");
}

#[test]
fn replayed_events_change_nothing() {
    let events = [page(1, 0), page(2, 5 * MIN)];
    let first = run(vec![], &events);
    let again = run(first.clone(), &events);
    assert!(again.is_empty(), "a replay must not rewrite sessions");
}

/// A replay writes nothing, but says which stored sessions held its events (and only those):
/// what comes after the session write (profiles) may have failed the first time.
#[test]
fn a_replay_names_the_stored_sessions_that_held_its_events() {
    let stored = run(
        vec![],
        &[page(1, 0), page(2, 5 * MIN), page(3, 2 * 60 * MIN)],
    );
    assert_eq!(stored.len(), 2);
    let rules = SessionRules::default();
    let replay = [page(2, 5 * MIN)];
    let refs: Vec<&Event> = replay.iter().collect();
    let out = sessionize(stored.clone(), &refs, &rules);
    assert!(out.changed.is_empty() && out.merged.is_empty());
    assert_eq!(out.replayed, [stored[0].clone()]);

    // An old event and a new one in the same session: it changed, and is reported so, once.
    let mixed = [page(2, 5 * MIN), page(4, 6 * MIN)];
    let refs: Vec<&Event> = mixed.iter().collect();
    let out = sessionize(stored, &refs, &rules);
    assert_eq!(out.changed.len(), 1);
    assert_eq!(out.changed[0].event_count, 3);
    assert!(out.replayed.is_empty());
}

#[test]
fn new_events_extend_a_stored_session_and_bump_its_version() {
    let stored = run(vec![], &[page(1, 0)]);
    let out = run(stored, &[page(2, 10 * MIN)]);
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].event_count, out[0].version), (2, 2));
}

#[test]
fn late_event_just_before_a_session_joins_it_and_becomes_its_entry() {
    let stored = run(vec![], &[page(2, 40 * MIN)]);
    let out = run(stored, &[page(1, 15 * MIN)]);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].start_ms, 15 * MIN);
    assert_eq!(out[0].entry_url, "https://shop.example/p1");
}

#[test]
fn no_split_at_midnight_or_on_campaign_change() {
    let midnight = 1_732_579_200_000; // 2024-11-26T00:00:00Z
    let mut second = page(2, midnight + 5 * MIN);
    second.context.utm = Some(Utm {
        source: Some("newsletter".into()),
        ..Utm::default()
    });
    let out = run(vec![], &[page(1, midnight - 5 * MIN), second]);
    assert_eq!(out.len(), 1);
    assert_eq!(
        out[0].utm_source, None,
        "the first event decides the source"
    );
}

#[test]
fn maximum_length_splits_a_never_ending_session() {
    let events: Vec<Event> = (0..30).map(|i| page(i, i as i64 * 29 * MIN)).collect();
    let out = run(vec![], &events);
    assert!(out.len() >= 2);
    assert!(out
        .iter()
        .all(|s| s.duration_ms() <= SessionRules::default().max_duration_ms));
    assert_eq!(out.iter().map(|s| s.event_count).sum::<u32>(), 30);
}

#[test]
fn shop_events_are_counted() {
    let product = Product {
        product_id: "42".into(),
        ..Product::default()
    };
    let events = [
        page(1, 0),
        event(2, "a", MIN, Payload::ProductView(product.clone())),
        event(
            3,
            "a",
            2 * MIN,
            Payload::AddToCart(CartLine {
                product,
                quantity: 2,
            }),
        ),
        event(
            4,
            "a",
            3 * MIN,
            Payload::Purchase(Purchase {
                order_id: "o-1".into(),
                revenue_minor: 3998,
                currency: "EUR".into(),
                items: vec![],
            }),
        ),
    ];
    let s = &run(vec![], &events)[0];
    assert_eq!(
        (
            s.page_views,
            s.products_viewed,
            s.cart_adds,
            s.purchases,
            s.revenue_minor
        ),
        (1, 1, 1, 1, 3998)
    );
    assert_eq!(s.event_count, 4);
}

fn purchase(n: u128, ts: i64, order_id: &str, revenue_minor: i64) -> Event {
    purchase_in(n, ts, order_id, revenue_minor, "EUR")
}

fn purchase_in(n: u128, ts: i64, order_id: &str, revenue_minor: i64, currency: &str) -> Event {
    event(
        n,
        "a",
        ts,
        Payload::Purchase(Purchase {
            order_id: order_id.into(),
            revenue_minor,
            currency: currency.into(),
            items: vec![],
        }),
    )
}

/// The session's revenue and currency, then the other currencies' revenue.
fn revenue_by_currency(s: &Session) -> Vec<(String, i64)> {
    let own = s.currency.iter().map(|c| (c.clone(), s.revenue_minor));
    let others = s
        .other_revenue
        .iter()
        .map(|r| (r.currency.clone(), r.revenue_minor));
    own.chain(others).collect()
}

fn purchases_and_revenue(s: &Session) -> (u32, i64, Vec<&str>) {
    let orders = s.orders.iter().map(|o| o.order_id.as_str()).collect();
    (s.purchases, s.revenue_minor, orders)
}

/// The shop's server (`/v1/transactions`) and the thank-you page report one order under two
/// event ids, and a reload of that page under a third: one purchase, its revenue once. Every
/// report is still an event of the session.
#[test]
fn an_order_reported_several_times_is_one_purchase() {
    let events = [
        page(1, 0),
        purchase(2, MIN, "o-1", 3998),
        purchase(3, MIN + 500, "o-1", 3998),
        purchase(4, 2 * MIN, "o-2", 1000),
    ];
    let s = &run(vec![], &events)[0];
    assert_eq!(purchases_and_revenue(s), (2, 4998, vec!["o-1", "o-2"]));
    assert_eq!(s.event_count, 4);

    // A report arriving in a later batch, as the server's often does.
    let later = run(vec![s.clone()], &[purchase(5, 3 * MIN, "o-1", 3998)]);
    assert_eq!(
        purchases_and_revenue(&later[0]),
        (2, 4998, vec!["o-1", "o-2"])
    );
    assert_eq!(later[0].event_count, 5);
}

/// The thank-you page may report less than the server's total (no shipping): the order counts
/// at the larger, whichever report comes first and in whichever batch.
#[test]
fn an_order_counts_at_its_largest_report_in_any_order_of_arrival() {
    let (page_report, server_report) = (purchase(1, MIN, "o-1", 3990), purchase(2, 0, "o-1", 4990));
    for batches in [
        vec![vec![page_report.clone()], vec![server_report.clone()]],
        vec![vec![server_report.clone()], vec![page_report.clone()]],
        vec![vec![page_report.clone(), server_report.clone()]],
    ] {
        let mut stored = Vec::new();
        for batch in &batches {
            store(&mut stored, batch);
        }
        assert_eq!(stored.len(), 1);
        assert_eq!(purchases_and_revenue(&stored[0]), (1, 4990, vec!["o-1"]));
    }
}

/// Two sessions that each counted the same order, joined by a late event between them: the
/// order still counts once, at the larger revenue either counted.
#[test]
fn sessions_joined_count_an_order_they_share_once() {
    for (first, second) in [(3990, 4990), (4990, 3990)] {
        let mut stored = Vec::new();
        store(
            &mut stored,
            &[
                purchase(1, 0, "o-1", first),
                purchase(2, 50 * MIN, "o-1", second),
                purchase(3, 50 * MIN + 1, "o-2", 100),
            ],
        );
        assert_eq!(stored.len(), 2);
        store(&mut stored, &[page(4, 25 * MIN)]);
        assert_eq!(stored.len(), 1);
        assert_eq!(
            purchases_and_revenue(&stored[0]),
            (2, 5090, vec!["o-1", "o-2"])
        );
        assert_eq!(stored[0].event_count, 4);
    }
}

/// A shopper who switched the shop's currency mid-visit: amounts in two currencies are never
/// added up. The session's revenue is in the currency of its first order; the other's is kept
/// beside it, and a larger report of an order raises the revenue in that order's currency.
#[test]
fn revenue_in_different_currencies_is_kept_apart() {
    let events = [
        purchase_in(1, 0, "o-1", 4990, "EUR"),
        purchase_in(2, MIN, "o-2", 3000, "GBP"),
        purchase_in(3, 2 * MIN, "o-3", 10, "EUR"),
    ];
    let s = &run(vec![], &events)[0];
    assert_eq!(s.purchases, 3);
    assert_eq!(
        revenue_by_currency(s),
        [("EUR".into(), 5000), ("GBP".into(), 3000)]
    );
    let later = run(
        vec![s.clone()],
        &[purchase_in(4, 3 * MIN, "o-2", 3500, "GBP")],
    );
    assert_eq!(later[0].purchases, 3);
    assert_eq!(
        revenue_by_currency(&later[0]),
        [("EUR".into(), 5000), ("GBP".into(), 3500)]
    );
}

/// Two sessions in different currencies joined by a late event between them: each currency's
/// revenue stays its own, and an order both counted is taken off once, in its own currency.
#[test]
fn sessions_joined_keep_their_currencies_apart() {
    let mut stored = Vec::new();
    store(
        &mut stored,
        &[
            purchase_in(1, 0, "o-1", 4990, "EUR"),
            purchase_in(2, 50 * MIN, "o-2", 3000, "GBP"),
            purchase_in(3, 50 * MIN + 1, "o-1", 4990, "EUR"),
        ],
    );
    assert_eq!(stored.len(), 2);
    store(&mut stored, &[page(4, 25 * MIN)]);
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].purchases, 2);
    assert_eq!(
        revenue_by_currency(&stored[0]),
        [("EUR".into(), 4990), ("GBP".into(), 3000)]
    );
}

/// A session stored before currencies were told apart: its revenue has no currency, and a
/// larger report of one of its orders raises that revenue, where the order was counted.
#[test]
fn an_order_stored_without_a_currency_is_raised_where_it_was_counted() {
    let old = Session {
        purchases: 1,
        revenue_minor: 3990,
        orders: vec![SessionOrder {
            order_id: "o-1".into(),
            revenue_minor: 3990,
            currency: String::new(),
        }],
        ..run(vec![], &[page(1, 0)])[0].clone()
    };
    let out = run(vec![old], &[purchase_in(2, MIN, "o-1", 4990, "EUR")]);
    assert_eq!((out[0].purchases, out[0].revenue_minor), (1, 4990));
    assert!(out[0].other_revenue.is_empty());
}

/// Past the orders a session remembers, purchases are still counted (not told apart).
#[test]
fn orders_past_the_remembered_ones_still_count() {
    let events: Vec<Event> = (0..MAX_SESSION_ORDERS as u128 + 2)
        .map(|n| purchase(n + 1, n as i64 * 1000, &format!("o-{n}"), 10))
        .collect();
    let s = &run(vec![], &events)[0];
    assert_eq!(s.orders.len(), MAX_SESSION_ORDERS);
    assert_eq!(s.purchases as usize, MAX_SESSION_ORDERS + 2);
    assert_eq!(s.revenue_minor, 10 * (MAX_SESSION_ORDERS as i64 + 2));
}

#[test]
fn sessions_are_numbered_per_visitor_and_flagged() {
    let mut first = page(1, 0);
    first.context.user_agent = Some("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0) Mobile".into());
    let out = run(vec![], &[first, page(2, 5 * MIN), page(3, 60 * MIN)]);
    assert_eq!(
        out.iter().map(|s| s.session_number).collect::<Vec<_>>(),
        [1, 2]
    );
    assert_eq!(out[0].device, "mobile");
    assert!(out[0].engaged && !out[0].bounce, "two pages");
    assert!(!out[1].engaged && out[1].bounce, "one page, no time");
    // A later batch continues the numbering from the stored sessions.
    let more = run(out.clone(), &[page(4, 200 * MIN)]);
    assert_eq!(more[0].session_number, 3);
    // A late event between two stored sessions opens one of its own: the later ones move up.
    let stored = vec![out[0].clone(), out[1].clone(), more[0].clone()];
    let late = run(stored, &[page(5, 130 * MIN)]);
    assert_eq!(
        late.iter()
            .map(|s| (s.start_ms, s.session_number, s.version))
            .collect::<Vec<_>>(),
        [(130 * MIN, 3, 1), (200 * MIN, 4, 2)]
    );
}

/// DynamoDB writes a visitor's sessions one conditional PutItem each: a batch can fail after
/// a late event's new session landed and before the later session's new number did. The retry
/// finds every event stored already; it must still renumber, or both keep one number for good.
#[test]
fn a_retry_after_a_partial_write_finishes_the_renumbering() {
    let out = run(vec![], &[page(1, 0), page(2, 60 * MIN), page(3, 200 * MIN)]);
    let late = run(out.clone(), &[page(4, 130 * MIN)]);
    let landed = late.iter().find(|s| s.start_ms == 130 * MIN).unwrap();
    // Only the new session was written; the one at 200 min is still stored as number 3.
    let stored = vec![
        out[0].clone(),
        out[1].clone(),
        landed.clone(),
        out[2].clone(),
    ];
    assert_eq!(
        stored.iter().map(|s| s.session_number).collect::<Vec<_>>(),
        [1, 2, 3, 3]
    );

    let retried = run(stored, &[page(4, 130 * MIN)]);
    assert_eq!(
        retried
            .iter()
            .map(|s| (s.start_ms, s.session_number, s.version))
            .collect::<Vec<_>>(),
        [(200 * MIN, 4, 2)]
    );
}

/// The tracker's report of a page's engaged time, as it sends it when the page is left.
fn engagement(n: u128, ts: i64, engaged_ms: serde_json::Value) -> Event {
    let props = serde_json::json!({ ENGAGED_MS: engaged_ms, "scroll_depth_pct": 40 });
    let custom = Custom {
        name: PAGE_ENGAGEMENT.into(),
        props: props.as_object().cloned().unwrap(),
    };
    event(n, "a", ts, Payload::Custom(custom))
}

#[test]
fn engaged_time_is_summed_from_the_tracker_reports_and_decides_engagement() {
    // One page open for five minutes, but visible and focused for 3 + 4 s: not engaged.
    let events = [
        page(1, 0),
        engagement(2, 2 * MIN, 3_000.into()),
        engagement(3, 5 * MIN, 4_000.into()),
    ];
    let out = run(vec![], &events);
    assert_eq!(out[0].engaged_ms, Some(7_000));
    assert!(!out[0].engaged && out[0].bounce, "7 s engaged on one page");
    // A third report passes 10 s.
    let more = run(out, &[engagement(4, 6 * MIN, 3_001.into())]);
    assert_eq!(more[0].engaged_ms, Some(10_001));
    assert!(more[0].engaged && !more[0].bounce);
    // A replayed report is not added twice.
    let again = run(more.clone(), &[engagement(4, 6 * MIN, 3_001.into())]);
    assert!(again.is_empty(), "nothing changed");
}

#[test]
fn without_engagement_reports_the_span_decides_and_engaged_time_is_unknown() {
    let out = run(
        vec![],
        &[
            page(1, 0),
            event(
                2,
                "a",
                11_000,
                Payload::Custom(Custom {
                    name: "newsletter_opened".into(),
                    props: Default::default(),
                }),
            ),
        ],
    );
    assert_eq!(out[0].engaged_ms, None);
    assert!(
        out[0].engaged,
        "an 11 s span with no report of engaged time"
    );
    // A report without a usable figure still says the sender measures engaged time: 0 of it.
    let odd = run(vec![], &[page(1, 0), engagement(2, 11_000, "soon".into())]);
    assert_eq!(odd[0].engaged_ms, Some(0));
    assert!(!odd[0].engaged);
}

/// Folds `batch` into `stored` as the processor does: it reads what the stores' `sessions_around`
/// returns (the latest session starting at or before the window, and every later one), the
/// changed sessions replace theirs, and absorbed ones are deleted (checking, as the stores do,
/// that each is stored at the version read).
fn store(stored: &mut Vec<Session>, batch: &[Event]) {
    store_with(stored, batch, &SessionRules::default());
}

fn store_with(stored: &mut Vec<Session>, batch: &[Event], rules: &SessionRules) {
    let earliest = batch.iter().map(|e| e.timestamp).min().unwrap_or(0);
    let window = earliest - rules.inactivity_ms;
    let from = stored
        .iter()
        .map(|s| s.start_ms)
        .filter(|&start| start <= window)
        .max()
        .unwrap_or(window);
    let around: Vec<Session> = stored
        .iter()
        .filter(|s| s.start_ms >= from)
        .cloned()
        .collect();
    let refs: Vec<&Event> = batch.iter().collect();
    let out = sessionize(around, &refs, rules);
    let merged = out.merged.into_iter().flat_map(|m| {
        for gone in &m.absorbed {
            let at = stored.iter().position(|s| StoredAt::of(s) == *gone);
            stored.remove(at.expect("an absorbed session is stored at the version read"));
        }
        [m.survivor]
    });
    for changed in out.changed.into_iter().chain(merged.collect::<Vec<_>>()) {
        stored.retain(|s| s.session_id != changed.session_id);
        stored.push(changed);
    }
    stored.sort_by_key(|s| s.start_ms);
}

#[test]
fn a_late_event_joins_its_nearer_neighbour_so_no_two_sessions_share_a_start() {
    // Found in review: with the latest accepting session chosen, A's start moved 60 -> 40 -> 15
    // and then onto B's start 0, the key of another row. The 45-minute gaps keep them apart.
    let mut stored = Vec::new();
    store(&mut stored, &[page(1, 100 * MIN)]);
    store(&mut stored, &[page(2, 0), page(3, 55 * MIN)]);
    store(&mut stored, &[page(4, 15 * MIN)]);
    store(&mut stored, &[page(5, 0)]);
    let spans: Vec<(i64, i64, u32)> = stored
        .iter()
        .map(|s| (s.start_ms, s.end_ms, s.event_count))
        .collect();
    assert_eq!(
        spans,
        [
            (0, 15 * MIN, 3),
            (55 * MIN, 55 * MIN, 1),
            (100 * MIN, 100 * MIN, 1)
        ]
    );
}

#[test]
fn a_late_event_that_closes_the_gap_joins_two_sessions_into_the_earlier() {
    let events = [
        page(1, 0),
        page(2, 10 * MIN),
        page(3, 50 * MIN),
        page(4, 55 * MIN),
        page(5, 3 * 60 * MIN),
    ];
    let mut stored = Vec::new();
    store(&mut stored, &events);
    assert_eq!(
        spans(&stored),
        [(0, 2, 1), (50 * MIN, 2, 2), (3 * 60 * MIN, 1, 3)]
    );
    let later = stored[1].clone();

    // 20 minutes after the first session and before the second: one visit after all.
    let bridge = page(6, 30 * MIN);
    let out = sessionize(stored.clone(), &[&bridge], &SessionRules::default());
    assert_eq!(out.merged.len(), 1);
    let merge = &out.merged[0];
    assert_eq!(merge.absorbed, [StoredAt::of(&later)]);
    let joined = &merge.survivor;
    assert_eq!(joined.session_id, events[0].event_id.to_string());
    assert_eq!(
        (
            joined.start_ms,
            joined.end_ms,
            joined.event_count,
            joined.page_views
        ),
        (0, 55 * MIN, 5, 5)
    );
    assert_eq!(joined.exit_url, events[3].context.page.url);
    assert_eq!((joined.version, joined.session_number), (2, 1));
    let mut ids = joined.event_ids.clone();
    ids.sort();
    let mut expected: Vec<Uuid> = [0, 1, 2, 3]
        .iter()
        .map(|&i| events[i].event_id)
        .chain([bridge.event_id])
        .collect();
    expected.sort();
    assert_eq!(ids, expected);
    // The session after them moves up to number 2.
    assert_eq!(spans(&out.changed), [(3 * 60 * MIN, 1, 2)]);

    store(&mut stored, std::slice::from_ref(&bridge));
    assert_eq!(spans(&stored), [(0, 5, 1), (3 * 60 * MIN, 1, 2)]);
    // Sent again, the bridging event changes nothing.
    let again = sessionize(stored.clone(), &[&bridge], &SessionRules::default());
    assert!(again.changed.is_empty() && again.merged.is_empty());
}

#[test]
fn sessions_are_joined_only_within_the_maximum_length_and_event_count() {
    let events = [page(1, 0), page(2, 40 * MIN), page(3, 80 * MIN)];
    let bridges = [page(4, 20 * MIN), page(5, 60 * MIN)];
    for (rules, expected) in [
        (
            SessionRules {
                max_duration_ms: 60 * MIN,
                ..SessionRules::default()
            },
            vec![(0, 4, 1), (80 * MIN, 1, 2)],
        ),
        (
            SessionRules {
                max_events: 3,
                ..SessionRules::default()
            },
            vec![(0, 2, 1), (40 * MIN, 3, 2)],
        ),
        (SessionRules::default(), vec![(0, 5, 1)]),
    ] {
        let mut stored = Vec::new();
        store_with(&mut stored, &events, &rules);
        store_with(&mut stored, &bridges, &rules);
        assert_eq!(spans(&stored), expected, "{rules:?}");
    }
}

#[test]
fn batches_in_any_order_keep_a_visitors_sessions_disjoint_and_every_event_counted_once() {
    // A small deterministic generator: events within a few hours, in shuffled batches, with
    // earlier events sent again, under maximum lengths from half an hour to the default. The
    // stores' reads rely on disjoint sessions (see `home`); with no valve acting, the sessions
    // are those of all events taken at once.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move |below: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % below
    };
    let uncapped = SessionRules::default().max_events;
    for (max_minutes, max_events) in [
        (30, uncapped),
        (60, uncapped),
        (90, uncapped),
        (12 * 60, uncapped),
        (90, 3),
        (12 * 60, 5),
    ] {
        let rules = SessionRules {
            max_duration_ms: max_minutes * MIN,
            max_events,
            ..SessionRules::default()
        };
        for round in 0..200u128 {
            let count = 2 + next(30) as u128;
            let events: Vec<Event> = (0..count)
                .map(|n| page(round * 1_000 + n, next(240) as i64 * MIN))
                .collect();
            let mut stored = Vec::new();
            let mut sent = 0;
            while sent < events.len() {
                let size = 1 + next(4) as usize;
                let end = (sent + size).min(events.len());
                store_with(&mut stored, &events[sent..end], &rules);
                sent = end;
                if next(3) == 0 {
                    let from = next(sent as u64) as usize;
                    let again = &events[from..(from + 1 + next(3) as usize).min(sent)];
                    store_with(&mut stored, again, &rules);
                }
            }
            let context = format!("max {max_minutes} min, {max_events} events, round {round}");
            for pair in stored.windows(2) {
                assert!(
                    pair[0].end_ms < pair[1].start_ms,
                    "{context}: overlapping sessions {:?} and {:?}",
                    (pair[0].start_ms, pair[0].end_ms),
                    (pair[1].start_ms, pair[1].end_ms)
                );
            }
            assert!(
                stored
                    .iter()
                    .all(|s| s.duration_ms() <= rules.max_duration_ms),
                "{context}"
            );
            assert!(
                stored.iter().all(|s| s.event_count <= max_events),
                "{context}"
            );
            let counted: u32 = stored.iter().map(|s| s.event_count).sum();
            if max_events == uncapped && max_minutes * MIN >= 240 * MIN {
                // No valve can act within these four hours: the sessions are the runs of
                // events without a 30-minute silence, whatever the batches and their order.
                let mut times: Vec<i64> = events.iter().map(|e| e.timestamp).collect();
                times.sort();
                let mut runs: Vec<(i64, i64, u32)> = Vec::new();
                for t in times {
                    match runs.last_mut() {
                        Some(run) if t - run.1 <= rules.inactivity_ms => {
                            run.1 = t;
                            run.2 += 1;
                        }
                        _ => runs.push((t, t, 1)),
                    }
                }
                let got: Vec<(i64, i64, u32)> = stored
                    .iter()
                    .map(|s| (s.start_ms, s.end_ms, s.event_count))
                    .collect();
                assert_eq!(got, runs, "{context}");
                let numbers: Vec<u32> = stored.iter().map(|s| s.session_number).collect();
                assert_eq!(
                    numbers,
                    (1..=runs.len() as u32).collect::<Vec<_>>(),
                    "{context}"
                );
            }
            if max_events == uncapped {
                assert_eq!(counted as usize, events.len(), "{context}");
            } else {
                // Events that fell within a full session's span are in none.
                assert!(counted as usize <= events.len(), "{context}");
            }
        }
    }
}

#[test]
fn one_write_absorbs_at_most_what_a_dynamodb_transaction_can_delete() {
    let rules = SessionRules {
        max_duration_ms: 7 * 24 * 60 * MIN,
        ..SessionRules::default()
    };
    // 120 visits 40 minutes apart, then a late event in every gap.
    let visits: Vec<Event> = (0..120).map(|n| page(n, n as i64 * 40 * MIN)).collect();
    let bridges: Vec<Event> = (0..119)
        .map(|n| page(1_000 + n, n as i64 * 40 * MIN + 20 * MIN))
        .collect();
    let mut stored = Vec::new();
    store_with(&mut stored, &visits, &rules);
    assert_eq!(stored.len(), 120);

    let refs: Vec<&Event> = bridges.iter().collect();
    let out = sessionize(stored.clone(), &refs, &rules);
    assert!(out.merged.iter().all(|m| m.absorbed.len() <= MAX_ABSORBED));
    assert_eq!(
        out.merged.iter().map(|m| m.absorbed.len()).sum::<usize>(),
        118
    );
    store_with(&mut stored, &bridges, &rules);
    assert_eq!(spans(&stored), [(0, 198, 1), (99 * 40 * MIN, 41, 2)]);

    // The visitor's next event joins the rest.
    store_with(
        &mut stored,
        &[page(5_000, 98 * 40 * MIN + 30 * MIN)],
        &rules,
    );
    assert_eq!(spans(&stored), [(0, 240, 1)]);
}

/// Each session's start, event count and number for that visitor.
fn spans(sessions: &[Session]) -> Vec<(i64, u32, u32)> {
    sessions
        .iter()
        .map(|s| (s.start_ms, s.event_count, s.session_number))
        .collect()
}

#[test]
fn a_session_holding_max_events_ends_and_the_next_event_starts_another() {
    let rules = SessionRules {
        max_events: 3,
        ..SessionRules::default()
    };
    let events: Vec<Event> = (1..=5).map(|n| page(n, n as i64 * MIN)).collect();
    let refs: Vec<&Event> = events.iter().collect();
    let out = sessionize(vec![], &refs, &rules);
    assert_eq!(out.over_cap, 0);
    assert_eq!(spans(&out.changed), [(MIN, 3, 1), (4 * MIN, 2, 2)]);

    // Within the full session's span a new event has no place (a session there would overlap
    // it); a replayed one is still recognised.
    let full = out.changed[0].clone();
    let inside = page(6, 2 * MIN + MIN / 2);
    let out = sessionize(vec![full.clone()], &[&inside, &events[1]], &rules);
    assert_eq!(out.over_cap, 1);
    assert!(out.changed.is_empty(), "{:?}", out.changed);

    // Before the full session, within its gap, a new event opens a session of its own.
    let before = page(7, 0);
    let out = sessionize(vec![full], &[&before], &rules);
    assert_eq!(out.over_cap, 0);
    assert_eq!(spans(&out.changed), [(0, 1, 1), (MIN, 3, 2)]);
}
