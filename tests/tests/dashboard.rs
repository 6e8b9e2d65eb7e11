//! The dashboard in real Chromium after the demo produced data: a shopper browses the demo
//! storefront and buys (tracker → collector → processor → sessions and lake), the lake holds a
//! week of generated history as well, the dashboard's lake job turns it into tables, and the
//! page's charts, tiles and tables show exactly what the SQL analyses answer; it refreshes by
//! itself when the lake changes, and redraws for a range submitted in its form. A screenshot is
//! saved.

mod common;

use std::sync::Arc;
use std::time::Duration;

use retailmind_analytics::analyses::{DayRange, LocalAnalytics, SalesDay};
use retailmind_analytics::config::OpenSources;
use retailmind_analytics::dashboard::{live_panel, Dashboard};
use retailmind_analytics::day::day_of;
use retailmind_analytics::etl::EtlOptions;
use retailmind_analytics::generate::{self, ShopOptions};
use retailmind_commerce::{CommerceStore, SqlCommerce};
use retailmind_connectors::{clock::now_ms, embedded};
use retailmind_schema::Payload;
use retailmind_tests::browser::Browser;
use retailmind_tests::{dashboard_assets, tracker_package, wait_for};
use serde_json::{json, Value};

use common::{stream_events, Pipeline};

const DAY_MS: i64 = 86_400_000;
const TOKEN: &str = "dashboard-e2e-token";

async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

async fn run_js(browser: &Browser, script: &str) -> Value {
    browser.client.execute(script, vec![]).await.unwrap()
}

/// The currency the page leads with (most revenue) and its days, as the page picks them.
fn lead_currency(sales: &[SalesDay]) -> (String, Vec<&SalesDay>) {
    let mut by: std::collections::BTreeMap<String, (i64, Vec<&SalesDay>)> = Default::default();
    for day in sales {
        let entry = by
            .entry(day.currency.clone().unwrap_or_else(|| "EUR".into()))
            .or_default();
        entry.0 += day.revenue_minor;
        entry.1.push(day);
    }
    by.into_iter()
        .max_by_key(|(_, (revenue, _))| *revenue)
        .map(|(c, (_, days))| (c, days))
        .unwrap_or_else(|| ("EUR".into(), Vec::new()))
}

/// What the page shows: the data behind each chart, whether it is painted, the tiles' and the
/// recommendation table's figures (their `data-value`s) and the range it was drawn for.
const SNAPSHOT: &str = "const chart = (id) => { const c = window.Chart && Chart.getChart(id);
        return c ? { labels: c.data.labels, data: c.data.datasets.map((d) => d.data) } : null; };
    const painted = (id) => { const c = document.getElementById(id);
        const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        for (let i = 3; i < px.length; i += 4) if (px[i] !== 0) return true; return false; };
    const value = (id) => document.getElementById(id).dataset.value;
    return {
      sales: chart('chart-sales'), funnel: chart('chart-funnel'),
      traffic: chart('chart-traffic'), rfm: chart('chart-rfm'),
      products: chart('chart-products'),
      painted: ['chart-sales', 'chart-funnel', 'chart-traffic', 'chart-products', 'chart-rfm'].map(painted),
      orders: value('kpi-orders'), revenue: value('kpi-revenue'), aov: value('kpi-aov'),
      live: value('live-visitors'),
      productRows: document.querySelectorAll('#table-products tbody tr').length,
      recs: [...document.querySelectorAll('#table-recs tbody tr')].map((tr) =>
        [...tr.cells].map((td) => td.dataset.value)),
      range: document.body.dataset.range, loads: Number(document.body.dataset.loads || 0),
      search: location.search,
      status: document.getElementById('status').textContent,
    };";

/// Numbers as the browser gives them back (39.0 comes back as 39).
fn numbers(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap_or_else(|| panic!("an array of numbers: {v}"))
        .iter()
        .map(|n| n.as_f64().unwrap())
        .collect()
}

/// A figure the page keeps as text in a `data-value`.
fn figure(v: &Value) -> f64 {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("a number: {v}"))
}

/// The sales chart and the order tiles show `sales`.
fn assert_sales_shown(page: &Value, sales: &[SalesDay]) {
    let (_, lead_days) = lead_currency(sales);
    assert_eq!(
        page["sales"]["labels"],
        json!(lead_days.iter().map(|d| &d.dt).collect::<Vec<_>>())
    );
    assert_eq!(
        numbers(&page["sales"]["data"][0]),
        lead_days
            .iter()
            .map(|d| d.revenue_minor as f64 / 100.0)
            .collect::<Vec<_>>()
    );
    assert_eq!(
        numbers(&page["sales"]["data"][1]),
        lead_days
            .iter()
            .map(|d| d.orders as f64)
            .collect::<Vec<_>>()
    );
    let orders: i64 = sales.iter().map(|d| d.orders).sum();
    assert_eq!(page["orders"], json!(orders.to_string()));
    let lead_orders: i64 = lead_days.iter().map(|d| d.orders).sum();
    let revenue: i64 = lead_days.iter().map(|d| d.revenue_minor).sum();
    assert_eq!(page["revenue"], json!(revenue.to_string()));
    let aov = revenue as f64 / lead_orders as f64;
    assert!(
        (figure(&page["aov"]) - aov).abs() < 1e-6,
        "average order {} = {aov}",
        page["aov"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_dashboard_charts_what_the_sql_answers_after_a_storefront_visit() {
    let data = tempfile::tempdir().unwrap();
    let backend = embedded::open(data.path()).unwrap();
    let url = format!("sqlite://{}", data.path().join("commerce.db").display());
    let commerce: Arc<dyn CommerceStore> = Arc::new(SqlCommerce::connect(&url, 2).await.unwrap());
    let pipeline = Pipeline::start_with(backend.clone(), Some(commerce.clone())).await;
    let lake_root = data.path().join(embedded::LAKE_DIR);

    // A week of history before today, as the processor would have laid it out.
    let today = day_of(now_ms());
    let first_day = day_of(now_ms() - 6 * DAY_MS);
    let history = generate::shop(&ShopOptions {
        start_day: first_day.clone(),
        days: 6,
        visitors: 80,
        ..ShopOptions::default()
    });
    generate::write_local(&lake_root, &generate::raw_objects(&history, 400)).unwrap();

    // Today: a shopper on the demo storefront views a product, adds it and checks out.
    let storefront = serve(retailmind_demo_site::router(
        &tracker_package(),
        &pipeline.collector_url,
        "e2e-key",
    ))
    .await;
    let browser = Browser::start().await;
    let client = &browser.client;
    client.set_window_size(1280, 1900).await.unwrap();
    client.goto(&format!("{storefront}/")).await.unwrap();
    browser.wait_for_tracker("home").await;
    browser.click("a[id^='product-link-']").await;
    browser.wait_for_tracker("product page").await;
    browser.click("#add-to-cart").await;
    client
        .goto(&format!("{storefront}/cart.html"))
        .await
        .unwrap();
    browser.wait_for_tracker("cart").await;
    browser.click("#checkout").await;
    browser.flush_tracker().await;
    wait_for(
        "the purchase on the stream",
        Duration::from_secs(15),
        || {
            let reader = backend.reader.clone();
            async move {
                let events = stream_events(reader.as_ref()).await;
                events
                    .iter()
                    .any(|e| e.payload.kind() == "purchase")
                    .then_some(())
            }
        },
    )
    .await;

    // The dashboard, running its lake job every second as the binary does every few.
    let dashboard = Dashboard::new(
        &lake_root,
        dashboard_assets(),
        backend.sessions.clone(),
        Some(TOKEN.into()),
    );
    let sources = || OpenSources {
        sessions: backend.sessions.clone(),
        commerce: Some(commerce.clone()),
    };
    let job = dashboard.run_job_every(sources(), EtlOptions::default(), Duration::from_secs(1));
    let dashboard_url = serve(dashboard.clone().router()).await;
    let range = DayRange::new(&first_day, &today).unwrap();

    // Wait until a finished run of the lake job has today's order in the tables, then stop it
    // so the page and the expected answers read the same files. A run writes its tables one
    // after the other, so the order can be readable while that run is still going: the run
    // count is checked first, or the abort below could cut the run short before it is counted.
    wait_for(
        "a finished lake job run with today's order in the tables",
        Duration::from_secs(30),
        || {
            let (root, range, today) = (lake_root.clone(), range.clone(), today.clone());
            let finished_runs = dashboard.status().runs;
            async move {
                if finished_runs == 0 {
                    return None;
                }
                let analytics = LocalAnalytics::open(&root).await.ok()?;
                let sales = analytics.sales_trend(&range).await.ok()?;
                sales
                    .iter()
                    .any(|d| d.dt == today && d.orders >= 1)
                    .then_some(())
            }
        },
    )
    .await;
    job.abort();
    let _ = job.await;
    let status = dashboard.status();
    assert!(
        status.runs >= 1 && status.last_error.is_none(),
        "{status:?}"
    );

    let analytics = LocalAnalytics::open(&lake_root).await.unwrap();
    let sales = analytics.sales_trend(&range).await.unwrap();
    let funnel = analytics.conversion_funnel(&range).await.unwrap();
    let products = analytics.product_performance(&range).await.unwrap();
    let traffic = analytics.traffic_sources(&range).await.unwrap();
    let rfm = analytics.rfm_segments(&range).await.unwrap();
    let live = live_panel(backend.sessions.as_ref(), now_ms())
        .await
        .unwrap();
    assert!(
        live.active_visitors >= 1,
        "the shopper just browsed: {live:?}"
    );
    assert!(
        funnel.iter().all(|s| s.visitors > 0),
        "every funnel step has visitors: {funnel:?}"
    );

    let rec = analytics.rec_attribution(&range).await.unwrap();
    assert!(!rec.is_empty(), "the history has recommendations");

    // The page, with the range in its address, a one-second refresh and the token in its
    // fragment.
    client
        .goto(&format!(
            "{dashboard_url}/?from={}&to={}&refresh=1#token={TOKEN}",
            range.from(),
            range.to()
        ))
        .await
        .unwrap();
    let page = wait_for("the dashboard to load", Duration::from_secs(20), || async {
        let page = run_js(&browser, SNAPSHOT).await;
        (page["loads"].as_u64() > Some(0)).then_some(page)
    })
    .await;

    // Screenshot with the test output, for a person to look at.
    let shot = client.screenshot().await.unwrap();
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    std::fs::write(&path, shot).unwrap();
    println!("dashboard screenshot: {}", path.display());

    assert_eq!(
        page["painted"],
        json!([true, true, true, true, true]),
        "every chart is drawn ({})",
        page["status"]
    );
    assert_sales_shown(&page, &sales);
    assert_eq!(
        page["funnel"]["labels"],
        json!(funnel.iter().map(|s| &s.name).collect::<Vec<_>>())
    );
    assert_eq!(
        page["funnel"]["data"],
        json!([funnel.iter().map(|s| s.visitors).collect::<Vec<_>>()])
    );
    assert_eq!(
        page["traffic"]["data"],
        json!([traffic.iter().map(|t| t.sessions).collect::<Vec<_>>()])
    );
    assert_eq!(
        page["rfm"]["data"],
        json!([rfm.iter().map(|s| s.customers).collect::<Vec<_>>()])
    );
    // The ten best sellers, as the SQL orders them.
    let best = &products[..products.len().min(10)];
    assert_eq!(
        page["products"]["labels"],
        json!(best.iter().map(|p| &p.product_id).collect::<Vec<_>>())
    );
    assert_eq!(
        numbers(&page["products"]["data"][0]),
        best.iter()
            .map(|p| p.revenue_minor as f64 / 100.0)
            .collect::<Vec<_>>()
    );
    assert_eq!(page["productRows"], json!(best.len()));
    let recs = page["recs"].as_array().unwrap();
    assert_eq!(recs.len(), rec.len(), "{}", page["recs"]);
    for (row, r) in recs.iter().zip(&rec) {
        assert_eq!(
            row.as_array().unwrap()[..4],
            [
                json!(r.placement),
                json!(r.strategy),
                json!(r.impressions.to_string()),
                json!(r.clicks.to_string())
            ],
            "{r:?}"
        );
        assert!((figure(&row[4]) - r.ctr).abs() < 1e-9, "{row} {r:?}");
        assert_eq!(row[5], json!(r.revenue_minor.to_string()), "{r:?}");
    }
    assert_eq!(page["live"], json!(live.active_visitors.to_string()));

    // Auto-refresh: the page loads again by itself at the pace asked for, and an order reported
    // after the page loaded reaches the lake on the job's next run and shows up without a click.
    let loads = page["loads"].as_u64().unwrap();
    wait_for(
        "two refreshes at one a second after the last",
        Duration::from_secs(20),
        || async {
            let now = run_js(&browser, "return Number(document.body.dataset.loads);").await;
            (now.as_u64() >= Some(loads + 2)).then_some(())
        },
    )
    .await;
    let mut late = history
        .iter()
        .find(|e| e.payload.kind() == "purchase")
        .unwrap()
        .clone();
    let at = now_ms();
    late.event_id = uuid::Builder::from_unix_timestamp_millis(at as u64, &[7; 10]).into_uuid();
    late.timestamp = at;
    late.received_at = Some(at);
    if let Payload::Purchase(p) = &mut late.payload {
        p.order_id = "late-order".into();
    }
    let late_objects = generate::raw_objects(&[late], 10)
        .into_iter()
        .map(|(key, body)| (key.replace("part-", "late-"), body))
        .collect();
    generate::write_local(&lake_root, &late_objects).unwrap();
    let runs_before = dashboard.status().runs;
    let job = dashboard.run_job_every(sources(), EtlOptions::default(), Duration::from_secs(1));
    let orders_before: i64 = sales.iter().map(|d| d.orders).sum();
    let refreshed = wait_for(
        "the page to show the late order by itself",
        Duration::from_secs(20),
        || async {
            let page = run_js(&browser, SNAPSHOT).await;
            (page["orders"] == json!((orders_before + 1).to_string())).then_some(page)
        },
    )
    .await;
    job.abort();
    let _ = job.await;
    assert!(dashboard.status().runs > runs_before);
    assert!(
        refreshed["loads"].as_u64() > page["loads"].as_u64(),
        "loaded again: {} then {}",
        page["loads"],
        refreshed["loads"]
    );
    assert_eq!(refreshed["search"], page["search"], "no navigation");

    // The date-range form: another range typed in and submitted redraws for that range. The
    // auto-refresh is switched off first, so that it is the submit that loads the new range.
    browser.click("#range input[name=auto]").await;
    let (from, to) = (day_of(now_ms() - 5 * DAY_MS), day_of(now_ms() - 2 * DAY_MS));
    let narrow = DayRange::new(&from, &to).unwrap();
    let analytics = LocalAnalytics::open(&lake_root).await.unwrap();
    let narrow_sales = analytics.sales_trend(&narrow).await.unwrap();
    let narrow_funnel = analytics.conversion_funnel(&narrow).await.unwrap();
    assert!(
        !narrow_sales.is_empty() && narrow_sales.len() < sales.len(),
        "a range with fewer sales days: {narrow_sales:?}"
    );
    client
        .execute(
            "const form = document.getElementById('range');
             form.from.value = arguments[0]; form.to.value = arguments[1];",
            vec![json!(from), json!(to)],
        )
        .await
        .unwrap();
    browser.click("#range button[type=submit]").await;
    let page = wait_for(
        "the page to redraw for the submitted range",
        Duration::from_secs(20),
        || async {
            let page = run_js(&browser, SNAPSHOT).await;
            (page["range"] == json!(format!("{from}..{to}"))).then_some(page)
        },
    )
    .await;
    assert_sales_shown(&page, &narrow_sales);
    assert_eq!(
        page["funnel"]["data"],
        json!([narrow_funnel.iter().map(|s| s.visitors).collect::<Vec<_>>()])
    );
    assert_eq!(
        page["search"],
        json!(format!("?from={from}&to={to}&refresh=1")),
        "the address keeps the range for a reload"
    );

    // The API refuses what it cannot answer, saying why.
    let http = reqwest::Client::new();
    let get = |path: &str, token: Option<&str>| {
        let mut request = http.get(format!("{dashboard_url}{path}"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    let no_token = get("/api/live", None).await.unwrap();
    assert_eq!(no_token.status(), 401);
    let unknown = get(
        "/api/analyses/churn?from=2024-01-01&to=2024-01-02",
        Some(TOKEN),
    )
    .await
    .unwrap();
    assert_eq!(unknown.status(), 404);
    let bad_day = get(
        "/api/analyses/sales_trend?from=2024-13-01&to=2024-01-02",
        Some(TOKEN),
    )
    .await
    .unwrap();
    assert_eq!(bad_day.status(), 400);
    let body: Value = bad_day.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("from"),
        "the error names the field: {body}"
    );

    browser.close().await;
    pipeline.stop().await;
}
