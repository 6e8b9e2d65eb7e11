//! ETL and query figures on a generated lake (printed, not a pass/fail test):
//! events/s from raw newline JSON to the Parquet tables, and the latency of the funnel and
//! sales queries over the result with DataFusion.
//!
//! `cargo bench -p retailmind-analytics --bench etl [-- EVENTS]` (default 1,000,000), or
//! `cargo xtask bench etl [EVENTS]`.

use std::time::{Duration, Instant};

use retailmind_analytics::analyses::{DayRange, LocalAnalytics};
use retailmind_analytics::etl::{self, EtlOptions};
use retailmind_analytics::generate::{self, ShopOptions};
use retailmind_analytics::store::LocalStore;

/// Events per generated visitor, about (see `generate::shop`).
const EVENTS_PER_VISITOR: usize = 12;
const DAYS: u32 = 30;

fn dir_size(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| {
                    let path = e.path();
                    if path.is_dir() {
                        dir_size(&path)
                    } else {
                        e.metadata().map(|m| m.len()).unwrap_or(0)
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn main() {
    // `cargo bench` passes `--bench`; the first plain number is the event count.
    let target: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.replace('_', "").parse().ok())
        .unwrap_or(1_000_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(bench(target));
}

async fn bench(target: usize) {
    let lake = tempfile::tempdir().expect("a temp dir");
    let started = Instant::now();
    let events = generate::shop(&ShopOptions {
        seed: 1,
        visitors: target / EVENTS_PER_VISITOR,
        days: DAYS,
        products: 500,
        ..ShopOptions::default()
    });
    let objects = generate::raw_objects(&events, 2_000);
    generate::write_local(lake.path(), &objects).expect("raw lake written");
    let raw_bytes = dir_size(&lake.path().join("events"));
    println!(
        "generated {} events over {DAYS} days in {} raw objects ({:.1} MiB) in {:.1?}",
        events.len(),
        objects.len(),
        mib(raw_bytes),
        started.elapsed()
    );
    drop(objects);

    let store = LocalStore::new(lake.path());
    let started = Instant::now();
    let report = etl::run(&store, &EtlOptions::default())
        .await
        .expect("the ETL runs");
    let took = started.elapsed();
    assert_eq!(report.events_valid, events.len());
    println!(
        "ETL: {} events in {:.2?} = {:.0} events/s ({:.1} MiB/s raw); {} days, Parquet {:.1} MiB",
        report.events_valid,
        took,
        report.events_valid as f64 / took.as_secs_f64(),
        mib(raw_bytes) / took.as_secs_f64(),
        report.days_rewritten.len(),
        mib(dir_size(&lake.path().join("tables")))
    );

    let started = Instant::now();
    let again = etl::run(&store, &EtlOptions::default())
        .await
        .expect("the ETL runs");
    println!(
        "ETL re-run with nothing new: {} objects read in {:.2?}",
        again.files_read,
        started.elapsed()
    );

    let analytics = LocalAnalytics::open(lake.path())
        .await
        .expect("tables registered");
    let range = DayRange::new("2024-11-01", "2024-11-30").expect("a range");
    let mut funnel = Vec::new();
    let mut sales = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let steps = analytics.conversion_funnel(&range).await.expect("funnel");
        funnel.push(t.elapsed());
        assert_eq!(steps.len(), 4);
        let t = Instant::now();
        let days = analytics.sales_trend(&range).await.expect("sales");
        sales.push(t.elapsed());
        assert!(!days.is_empty());
    }
    let summary = |mut d: Vec<Duration>| {
        d.sort();
        format!(
            "min {:.1?}, median {:.1?}, max {:.1?}",
            d[0],
            d[d.len() / 2],
            d[d.len() - 1]
        )
    };
    println!(
        "funnel query over {} events: {}",
        events.len(),
        summary(funnel)
    );
    println!(
        "sales query over {} events: {}",
        events.len(),
        summary(sales)
    );
}
