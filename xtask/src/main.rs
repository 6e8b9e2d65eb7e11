//! `cargo xtask <command>`: set-up and orchestration for RetailMind.
//!
//! - `demo`: installs what is missing, builds the tracker, starts collector, processor and the
//!   demo storefront on the embedded default and prints the storefront's URL.
//! - `test`: installs what is missing and runs every check and test (what `.ci/run` calls).
//! - `setup`: only the installs.
//! - `build-wasm`: builds the tracker package into `demo-site/pkg`.
//! - `build-npm`: the npm package (`sdk-wasm/pkg/bundler` and `sdk-wasm/pkg/web`) and the demo
//!   storefront bundled from it by webpack (`demo-site/bundled/dist`).
//! - `bench tracker`: tracker size (gzip, brotli) and main-thread cost in headless Chromium.
//! - `bench collector [--quick]`: load figures for the collector on loopback (printed, not a test).
//! - `etl [run|ddl]`: one run of the lake's events ETL; `ddl` regenerates
//!   `analytics/ddl/athena.sql` from the table definitions.
//! - `bench etl [EVENTS]`: ETL events/s to Parquet and funnel/sales query latency (printed).
//! - `fuzz [SECONDS]`: runs the batch decoding fuzz target (default 300 s).
//! - `eval-recs --train F --test F`: offline HR@20/MRR@20 of every recommendation strategy on a
//!   `SessionId ItemId Time` click log.

mod bench;
mod bench_tracker;
mod demo;
mod etl;
mod eval_recs;
mod fuzz;
mod setup;
mod test;
mod util;
mod wasm;
mod wasm_names;

use anyhow::{bail, Result};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rest: Vec<&str> = args.iter().skip(1).map(String::as_str).collect();
    match args.first().map(String::as_str) {
        Some("demo") => demo::run_demo(&rest),
        Some("test") => test::run_tests(&rest),
        Some("bench") if rest.first() == Some(&"tracker") => bench_tracker::run(&rest[1..]),
        Some("bench") if rest.first() == Some(&"etl") => etl::run_bench(&rest[1..]),
        Some("etl") => etl::run_etl(&rest),
        Some("bench") => bench::run_bench(&rest),
        Some("fuzz") => fuzz::run_fuzz(&rest),
        Some("eval-recs") => eval_recs::run_eval(&rest),
        Some("setup") => {
            setup::wasm_toolchain()?;
            setup::wasm_bindgen_cli()?;
            setup::browser()?;
            setup::moto()?;
            setup::postgres()?;
            setup::dashboard_assets()?;
            Ok(())
        }
        Some("build-wasm") => wasm::build_demo_package(&setup::wasm_toolchain()?).map(|_| ()),
        Some("build-npm") => wasm::build_demo_bundle(&setup::wasm_toolchain()?).map(|_| ()),
        // The tracker's in-browser tests alone, as the last step of `test` runs them.
        Some("test-wasm") => {
            wasm::test_in_browser(&setup::wasm_toolchain()?, &setup::browser()?.chromedriver)
        }
        _ => {
            eprintln!(
                "usage: cargo xtask <demo|test|test-wasm|setup|build-wasm|build-npm|bench|etl|fuzz|eval-recs>"
            );
            bail!("unknown or missing command")
        }
    }
}
