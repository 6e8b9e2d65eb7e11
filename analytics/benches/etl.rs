//! ETL and query figures on a generated lake (printed, not a pass/fail test):
//! events/s from raw newline JSON to the Parquet tables, and the latency of the funnel and
//! sales queries over the result with DataFusion.
//!
//! `cargo bench -p retailmind-analytics --bench etl [-- EVENTS]` (default 10,000,000, the issue's
//! figure), or
//! `cargo xtask bench etl [EVENTS]`. The lake goes to a temp dir (`TMPDIR`): about 480 MiB of
//! JSON and 90 MiB of Parquet per million events, removed at the end unless
//! `RETAILMIND_BENCH_KEEP=1` (to look at the files or the query plans afterwards). The shop is
//! generated and written visitor by visitor, so memory does not grow with the event count.

use std::path::Path;
use std::time::{Duration, Instant};

use retailmind_analytics::analyses::{DayRange, LocalAnalytics};
use retailmind_analytics::etl::{self, EtlOptions};
use retailmind_analytics::generate::{self, RawLakeWriter, ShopOptions};
use retailmind_analytics::store::LocalStore;
use retailmind_analytics::tables::{EVENTS, EVENT_ITEMS, REC_IMPRESSIONS};

/// Events per generated visitor, about (see `generate::shop`).
const EVENTS_PER_VISITOR: usize = 12;
const DAYS: u32 = 30;
/// Lines per raw object, as the processor's batches.
const LINES_PER_OBJECT: usize = 2_000;
const QUERY_RUNS: usize = 7;
/// What the funnel and sales queries should take on the embedded engine (issue 8).
const QUERY_TARGET: Duration = Duration::from_secs(1);

fn dir_size(dir: &Path) -> u64 {
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

/// Peak resident memory of this process so far (`VmHWM`), as the kernel reports it.
fn peak_rss() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:").map(|v| v.trim().to_owned()))
        })
        .unwrap_or_else(|| "unknown".into())
}

/// The 1, 5 and 15 minute load averages: the cores are shared, so figures need their context.
fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn main() {
    // `cargo bench` passes `--bench` (and other flags, to every bench of a workspace run);
    // a number is the event count.
    let mut target = 10_000_000;
    for arg in std::env::args().skip(1).filter(|a| !a.starts_with('-')) {
        match arg.replace('_', "").parse() {
            Ok(count) if count > 0 => target = count,
            _ => {
                eprintln!("usage: cargo xtask bench etl [EVENTS], a positive number; not {arg:?}");
                std::process::exit(2);
            }
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(bench(target));
}

async fn bench(target: usize) {
    println!(
        "{} cores, load average {} at the start",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load()
    );
    let lake = tempfile::tempdir().expect("a temp dir");
    let started = Instant::now();
    let mut writer = RawLakeWriter::new(lake.path(), LINES_PER_OBJECT).expect("a spool");
    for visitor in generate::visitors(&ShopOptions {
        seed: 1,
        visitors: target / EVENTS_PER_VISITOR,
        days: DAYS,
        products: 500,
        ..ShopOptions::default()
    }) {
        for event in &visitor {
            writer.push(event).expect("event spooled");
        }
    }
    let raw = writer.finish().expect("raw lake written");
    println!(
        "generated {} events over {DAYS} days in {} raw objects ({:.1} MiB) in {:.1?}; peak RSS {}",
        raw.events,
        raw.objects,
        mib(raw.bytes),
        started.elapsed(),
        peak_rss()
    );

    let store = LocalStore::new(lake.path());
    let started = Instant::now();
    let report = etl::run(&store, &EtlOptions::default())
        .await
        .expect("the ETL runs");
    let took = started.elapsed();
    assert_eq!(report.events_valid, raw.events);
    let tables = lake.path().join("tables");
    println!(
        "ETL: {} events in {:.2?} = {:.0} events/s ({:.1} MiB/s raw); {} days, Parquet {:.1} MiB \
         (events {:.1}, event_items {:.1}, rec_impressions {:.1}); peak RSS {}",
        report.events_valid,
        took,
        report.events_valid as f64 / took.as_secs_f64(),
        mib(raw.bytes) / took.as_secs_f64(),
        report.days_rewritten.len(),
        mib(dir_size(&tables)),
        mib(dir_size(&lake.path().join(EVENTS.prefix))),
        mib(dir_size(&lake.path().join(EVENT_ITEMS.prefix))),
        mib(dir_size(&lake.path().join(REC_IMPRESSIONS.prefix))),
        peak_rss()
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
    for _ in 0..QUERY_RUNS {
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
        let median = d[d.len() / 2];
        format!(
            "min {:.1?}, median {median:.1?}, max {:.1?} ({} runs); target {QUERY_TARGET:.0?}: {}",
            d[0],
            d[d.len() - 1],
            d.len(),
            if median < QUERY_TARGET {
                "met"
            } else {
                "NOT met"
            }
        )
    };
    println!(
        "funnel query over {} events: {}",
        raw.events,
        summary(funnel)
    );
    println!("sales query over {} events: {}", raw.events, summary(sales));
    if std::env::var_os("RETAILMIND_BENCH_KEEP").is_some_and(|v| v == "1") {
        println!("lake kept in {}", lake.keep().display());
    }
    println!(
        "peak RSS {}; load average {} at the end",
        peak_rss(),
        load()
    );
}
