//! Freshness of recommendations on the embedded default as deployed (the collector and the
//! processor with their own connections to one set of SQLite files, the processor at its default
//! pace): how long after the collector acknowledged other shoppers' product views the
//! recommendations follow them. The target (issue 7): within 1 s.
//!
//! ```text
//! cargo run --release -p retailmind-tests --example recs_freshness [ROUNDS, default 100]
//! ```
//!
//! Each round posts three sessions that look at a new product and then at its companion, and
//! asks for the first product's recommendations every 5 ms until the companion is among them.
//! Rounds start at random points of the processor's idle poll (200 ms), model save (250 ms) and
//! the collector's reload poll (200 ms), so the spread covers their phases. Prints p50, p90, p99
//! and max, and how many rounds made the target.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use anyhow::{ensure, Result};

const TARGET: Duration = Duration::from_secs(1);
/// A round that takes longer has failed outright.
const GIVE_UP: Duration = Duration::from_secs(30);

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(100);
    ensure!(rounds > 0, "ROUNDS must be at least 1");
    let dir = tempfile::tempdir()?;
    let pipeline = common::Pipeline::start_deployed(dir.path()).await;
    let client = reqwest::Client::new();
    let mut took = Vec::with_capacity(rounds);
    for round in 0..rounds {
        tokio::time::sleep(Duration::from_millis(fastrand::u64(0..450))).await;
        let (first, then) = (format!("item-{round}"), format!("companion-{round}"));
        let views = common::viewed_one_after_the_other(&first, &then, &format!("round-{round}"));
        common::post_batch(&pipeline.collector_url, views).await;
        let acknowledged = Instant::now();
        loop {
            let (_, items) = common::chosen(&client, &pipeline.collector_url, &first).await;
            if items.contains(&then) {
                break;
            }
            ensure!(
                acknowledged.elapsed() < GIVE_UP,
                "round {round}: not recommended after {GIVE_UP:?}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        took.push(acknowledged.elapsed());
    }
    pipeline.stop().await;

    took.sort_unstable();
    let at = |p: f64| took[((took.len() - 1) as f64 * p).round() as usize];
    let met = took.iter().filter(|t| **t <= TARGET).count();
    println!("recommendation freshness on the embedded default, {rounds} rounds (acknowledged -> recommended):");
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
    println!(
        "  p50 {}  p90 {}  p99 {}  max {}",
        ms(at(0.5)),
        ms(at(0.9)),
        ms(at(0.99)),
        ms(took[took.len() - 1])
    );
    println!("  within {TARGET:?}: {met} of {rounds}");
    Ok(())
}
