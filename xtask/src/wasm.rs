//! Builds the browser tracker with wasm-pack.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::setup::{self, WasmToolchain};
use crate::util::{run, target_dir, workspace_root};

/// Builds `sdk-wasm` for `<script type="module">` use into `demo-site/pkg` and returns that dir:
/// the smallest release build (see [`setup::size_toolchain`]), JS minified.
pub fn build_demo_package(toolchain: &WasmToolchain) -> Result<PathBuf> {
    let out_dir = workspace_root().join("demo-site/pkg");
    build_package(toolchain, "web", &out_dir)?;
    Ok(out_dir)
}

/// The npm package, for bundlers (`sdk-wasm/pkg/bundler`) and for plain ES modules
/// (`sdk-wasm/pkg/web`); returns the bundler one's dir.
pub fn build_npm_packages(toolchain: &WasmToolchain) -> Result<PathBuf> {
    let pkg = workspace_root().join("sdk-wasm/pkg");
    build_package(toolchain, "web", &pkg.join("web"))?;
    build_package(toolchain, "bundler", &pkg.join("bundler"))?;
    Ok(pkg.join("bundler"))
}

/// The demo storefront's tracker bundled by webpack from the npm package, as a shop would build
/// it, into `demo-site/bundled/dist`; returns that dir.
pub fn build_demo_bundle(toolchain: &WasmToolchain) -> Result<PathBuf> {
    build_npm_packages(toolchain)?;
    let dir = workspace_root().join("demo-site/bundled");
    // `npm ci` installs exactly the lock file; the tracker is a `file:` dependency, copied in.
    run(Command::new("npm").current_dir(&dir).args([
        "ci",
        "--no-audit",
        "--no-fund",
        "--install-links",
    ]))?;
    run(Command::new("npm").current_dir(&dir).args(["run", "build"]))?;
    Ok(dir.join("dist"))
}

/// `wasm-pack build --release --target <target>` into `out_dir`, then shortens the names the
/// wasm and its glue share and minifies the JS.
pub fn build_package(toolchain: &WasmToolchain, target: &str, out_dir: &Path) -> Result<()> {
    setup::wasm_bindgen_cli()?;
    let small = setup::size_toolchain();
    let mut cmd = Command::new("wasm-pack");
    small.as_ref().unwrap_or(toolchain).apply(&mut cmd);
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
    // Size over speed for the browser, in this build only (the wasm target dirs are its own).
    cmd.env("CARGO_PROFILE_RELEASE_OPT_LEVEL", "z")
        .env("CARGO_PROFILE_RELEASE_LTO", "fat")
        .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "1")
        .env("CARGO_PROFILE_RELEASE_PANIC", "abort");
    // Another rustc or other flags than the tests' build: keep their artifacts apart.
    let dir = if small.is_some() { "wasm-min" } else { "wasm" };
    cmd.current_dir(workspace_root().join("sdk-wasm"))
        .env("CARGO_TARGET_DIR", target_dir().join(dir))
        .args(["build", "--release", "--target", target, "--out-dir"])
        .arg(out_dir);
    if small.is_some() {
        // wasm-pack looks for a prebuilt wasm32 std in the sysroot; -Zbuild-std needs none.
        cmd.args(["--mode", "force"]);
    }
    run(&mut cmd)?;
    shorten_generated_names(out_dir)?;
    minify_js(out_dir)
}

/// Renames wasm-bindgen's generated imports and exports in the wasm and in the glue that
/// uses them (`retailmind_sdk.js`, for bundlers also `retailmind_sdk_bg.js`, and their
/// TypeScript declarations); see [`crate::wasm_names`].
fn shorten_generated_names(out_dir: &Path) -> Result<()> {
    let wasm_path = out_dir.join("retailmind_sdk_bg.wasm");
    let (wasm, renames) = crate::wasm_names::shorten_names(&std::fs::read(&wasm_path)?)
        .with_context(|| wasm_path.display().to_string())?;
    let paths: Vec<PathBuf> = [
        "retailmind_sdk.js",
        "retailmind_sdk_bg.js",
        "retailmind_sdk.d.ts",
        "retailmind_sdk_bg.wasm.d.ts",
    ]
    .iter()
    .map(|name| out_dir.join(name))
    .filter(|path| path.exists())
    .collect();
    let mut files = paths
        .iter()
        .map(std::fs::read_to_string)
        .collect::<std::io::Result<Vec<_>>>()?;
    crate::wasm_names::rename_in_glue(&mut files, &renames)
        .with_context(|| out_dir.display().to_string())?;
    for (path, text) in paths.iter().zip(files) {
        std::fs::write(path, text)?;
    }
    std::fs::write(&wasm_path, wasm)?;
    Ok(())
}

/// Minifies every `.js` file of the package in place (wasm-bindgen's glue, our snippets). ES
/// module syntax is kept; exported names are not mangled, so the API stays the same.
fn minify_js(dir: &Path) -> Result<()> {
    let terser = setup::terser()?.join("terser");
    let mut files = Vec::new();
    collect_js(dir, &mut files)?;
    for file in files {
        run(Command::new(&terser)
            .arg(&file)
            .args(["--module", "--compress", "passes=2", "--mangle", "--output"])
            .arg(&file))?;
    }
    Ok(())
}

fn collect_js(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_js(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "js") {
            out.push(path);
        }
    }
    Ok(())
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
