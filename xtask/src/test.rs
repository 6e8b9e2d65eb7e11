//! `cargo xtask test`: every check and test, with the real parts they need installed first.

use std::process::Command;

use anyhow::Result;

use crate::util::{run, workspace_root};
use crate::{setup, wasm};

pub fn run_tests(args: &[&str]) -> Result<()> {
    // A full run builds every crate once from a clean tree; incremental caches would only add
    // gigabytes of disk on a CI runner. A developer can still ask for them by setting the variable.
    if std::env::var_os("CARGO_INCREMENTAL").is_none() {
        // Set before any thread or child process starts; every cargo below inherits it.
        std::env::set_var("CARGO_INCREMENTAL", "0");
    }
    let toolchain = setup::wasm_toolchain()?;
    let browser = setup::browser()?;
    let python = setup::moto()?;
    let postgres = setup::postgres()?;
    let jq = setup::jq()?;
    let pkg = wasm::build_demo_package(&toolchain)?;
    let bundle = wasm::build_demo_bundle(&toolchain)?;
    let dashboard = setup::dashboard_assets()?;
    let analytics_js = setup::analytics_js()?;
    let root = workspace_root();

    run(Command::new("cargo")
        .current_dir(&root)
        .args(["fmt", "--all", "--", "--check"]))?;
    run(Command::new("cargo").current_dir(&root).args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;

    // The end-to-end tests start Chromium, chromedriver, moto, PostgreSQL and jq themselves from
    // these paths; they fail (never skip) when one is missing.
    run(Command::new("cargo")
        .current_dir(&root)
        .env("RETAILMIND_CHROMIUM", &browser.chromium)
        .env("RETAILMIND_CHROMEDRIVER", &browser.chromedriver)
        .env("RETAILMIND_PYTHON", &python)
        .env("RETAILMIND_PG_BIN", &postgres)
        .env("RETAILMIND_JQ", &jq)
        .env("RETAILMIND_DEMO_PKG", &pkg)
        .env("RETAILMIND_DEMO_BUNDLE", &bundle)
        .env("RETAILMIND_DASHBOARD_ASSETS", &dashboard)
        .env("RETAILMIND_ANALYTICS_JS", &analytics_js)
        .args(["test", "--workspace"])
        .args(args))?;

    // A bounded run of the batch decoder fuzz target; `cargo xtask fuzz` runs longer.
    crate::fuzz::run_bounded(60)?;

    // Last, so its summary closes the run.
    wasm::test_in_browser(&toolchain, &browser.chromedriver)
}
