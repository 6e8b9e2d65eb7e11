//! Builds the browser tracker with wasm-pack.

use std::path::PathBuf;
use std::process::Command;

use anyhow::Result;

use crate::setup::{self, WasmToolchain};
use crate::util::{run, target_dir, workspace_root};

/// Builds `sdk-wasm` for `<script type="module">` use into `demo-site/pkg` and returns that dir.
pub fn build_demo_package(toolchain: &WasmToolchain) -> Result<PathBuf> {
    setup::wasm_bindgen_cli()?;
    let out_dir = workspace_root().join("demo-site/pkg");
    let mut cmd = Command::new("wasm-pack");
    toolchain.apply(&mut cmd);
    // wasm-pack runs the first `wasm-opt` on PATH: put the working one first.
    let path = cmd
        .get_envs()
        .find(|(k, _)| *k == "PATH")
        .and_then(|(_, v)| v.map(|v| v.to_os_string()))
        .or_else(|| std::env::var_os("PATH"))
        .unwrap_or_default();
    let mut paths = vec![setup::binaryen()?];
    paths.extend(std::env::split_paths(&path));
    cmd.env("PATH", std::env::join_paths(paths)?);
    // Size over speed for the browser, in this build only (the wasm target dir is its own).
    cmd.env("CARGO_PROFILE_RELEASE_OPT_LEVEL", "z")
        .env("CARGO_PROFILE_RELEASE_LTO", "fat")
        .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "1")
        .env("CARGO_PROFILE_RELEASE_PANIC", "abort");
    cmd.current_dir(workspace_root().join("sdk-wasm"))
        // The wasm build may use another rustc (the Debian route); keep its artifacts apart.
        .env("CARGO_TARGET_DIR", target_dir().join("wasm"))
        .args(["build", "--release", "--target", "web", "--out-dir"])
        .arg(&out_dir);
    run(&mut cmd)?;
    Ok(out_dir)
}

/// Runs the tracker's `wasm_bindgen_test` tests in headless Chromium.
pub fn test_in_browser(toolchain: &WasmToolchain, chromedriver: &std::path::Path) -> Result<()> {
    let mut cmd = Command::new("wasm-pack");
    toolchain.apply(&mut cmd);
    cmd.current_dir(workspace_root().join("sdk-wasm"))
        .env("CARGO_TARGET_DIR", target_dir().join("wasm"))
        .args(["test", "--headless", "--chrome", "--chromedriver"])
        .arg(chromedriver)
        // Only the browser tests: the unit tests already ran natively, and the empty doc-test
        // run would otherwise be the last summary printed.
        .args(["--", "--test", "web"]);
    run(&mut cmd)
}
