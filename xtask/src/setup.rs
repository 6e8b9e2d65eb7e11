//! Installs, idempotently, every tool the demo and the tests need on a fresh Debian 12 machine:
//! the wasm32 target (through rustup where it can download, otherwise Debian's rustc-web plus a
//! standard library built once from rust-web-src), wasm-bindgen-cli pinned to Cargo.lock,
//! wasm-pack, wasm-opt, Chromium with chromedriver, and moto for the AWS wire protocols.
//!
//! Each step first checks whether its tool is already there and does nothing if so.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::util::{cmd_ok, cmd_output, run, workspace_root};

const WASM_TARGET: &str = "wasm32-unknown-unknown";
const DEBIAN_RUSTC: &str = "/usr/bin/rustc";
const DEBIAN_SYSROOT_WASM_LIB: &str = "/usr/lib/rustlib/wasm32-unknown-unknown/lib";

/// How to invoke cargo so that it can build for wasm32 on this machine.
#[derive(Clone, Debug, Default)]
pub struct WasmToolchain {
    /// Extra environment for cargo / wasm-pack (empty when rustup has the target).
    pub env: Vec<(String, String)>,
}

impl WasmToolchain {
    pub fn apply(&self, cmd: &mut Command) {
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
    }
}

/// Makes sure a wasm32 build works and returns the environment that makes it work.
///
/// `RETAILMIND_WASM_ROUTE=debian` forces the Debian route (to check it on a machine where rustup
/// works too).
pub fn wasm_toolchain() -> Result<WasmToolchain> {
    if std::env::var("RETAILMIND_WASM_ROUTE").as_deref() == Ok("debian") {
        return debian_wasm_toolchain();
    }
    if rustup_has_wasm_target() {
        return Ok(WasmToolchain::default());
    }
    if !debian_wasm_sysroot_ready() && try_rustup_target_add() {
        return Ok(WasmToolchain::default());
    }
    debian_wasm_toolchain()
}

fn rustup_has_wasm_target() -> bool {
    cmd_output("rustup", &["target", "list", "--installed"])
        .map(|out| out.lines().any(|l| l.trim() == WASM_TARGET))
        .unwrap_or(false)
}

/// On a machine that reaches static.rust-lang.org this is the whole set-up. Where the network is
/// closed it hangs, so it gets a short deadline and we fall back to the Debian route.
fn try_rustup_target_add() -> bool {
    eprintln!("xtask: trying `rustup target add {WASM_TARGET}` (20 s limit)");
    let status = Command::new("timeout")
        .args(["20", "rustup", "target", "add", WASM_TARGET])
        .status();
    matches!(status, Ok(s) if s.success()) && rustup_has_wasm_target()
}

fn debian_wasm_sysroot_ready() -> bool {
    Path::new(DEBIAN_RUSTC).exists()
        && dir_has_prefix(Path::new(DEBIAN_SYSROOT_WASM_LIB), "libstd-")
}

fn dir_has_prefix(dir: &Path, prefix: &str) -> bool {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with(prefix))
        })
        .unwrap_or(false)
}

/// Debian's security suite ships a current rustc together with the source of its standard
/// library; `-Zbuild-std` builds the wasm32 std from it once, and copied into the sysroot it acts
/// like rustup's rust-std component.
fn debian_wasm_toolchain() -> Result<WasmToolchain> {
    let toolchain = debian_compiler()?;
    if !dir_has_prefix(Path::new(DEBIAN_SYSROOT_WASM_LIB), "libstd-") {
        build_wasm_std()?;
    }
    Ok(toolchain)
}

/// Debian's rustc-web and cargo-web with the source of their standard library, installed if
/// missing, and the environment that makes cargo use them with a wasm linker.
fn debian_compiler() -> Result<WasmToolchain> {
    if !Path::new(DEBIAN_RUSTC).exists() || !Path::new("/usr/lib/rustlib/src/rust/library").exists()
    {
        apt_install(
            &["rustc-web", "cargo-web", "rust-web-src"],
            Some("bookworm-security"),
        )?;
    }
    let linker = rust_lld()?;
    let path = format!(
        "/usr/bin:{}:{}",
        cargo_bin_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    Ok(WasmToolchain {
        env: vec![
            ("RUSTC".into(), DEBIAN_RUSTC.into()),
            ("RUSTDOC".into(), "/usr/bin/rustdoc".into()),
            (
                "CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER".into(),
                linker.display().to_string(),
            ),
            ("PATH".into(), path),
        ],
    })
}

/// Debian's rustc has no rust-lld of its own; the rustup host toolchain ships one, and Debian's
/// lld package is the other choice.
fn rust_lld() -> Result<PathBuf> {
    if let Ok(sysroot) = cmd_output("rustc", &["--print", "sysroot"]) {
        let host = cmd_output("rustc", &["-vV"])?
            .lines()
            .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))
            .unwrap_or_else(|| "x86_64-unknown-linux-gnu".into());
        let lld = Path::new(sysroot.trim()).join(format!("lib/rustlib/{host}/bin/rust-lld"));
        if lld.exists() {
            return Ok(lld);
        }
    }
    let debian_lld = PathBuf::from("/usr/bin/wasm-ld-19");
    if !debian_lld.exists() {
        apt_install(&["lld-19"], None)?;
    }
    Ok(debian_lld)
}

fn build_wasm_std() -> Result<()> {
    eprintln!("xtask: building the wasm32 standard library from rust-web-src (about a minute)");
    let dir = std::env::temp_dir().join("retailmind-wasm-std");
    std::fs::create_dir_all(dir.join("src"))?;
    std::fs::write(dir.join("src/lib.rs"), "")?;
    std::fs::write(
        dir.join("Cargo.toml"),
        "[package]\nname = \"wasm-std\"\nversion = \"0.0.0\"\nedition = \"2021\"\n[workspace]\n",
    )?;
    let mut cmd = Command::new("/usr/bin/cargo");
    cmd.current_dir(&dir)
        .env("RUSTC", DEBIAN_RUSTC)
        .env("RUSTC_BOOTSTRAP", "1")
        .env_remove("CARGO_TARGET_DIR")
        .args(["build", "--release", "--target", WASM_TARGET])
        // `test` is needed by wasm-bindgen-test.
        .arg("-Zbuild-std=std,panic_abort,test");
    run(&mut cmd)?;
    let deps = dir.join("target/wasm32-unknown-unknown/release/deps");
    std::fs::create_dir_all(DEBIAN_SYSROOT_WASM_LIB)?;
    for entry in std::fs::read_dir(&deps)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".rlib") && !name.starts_with("libwasm_std-") {
            std::fs::copy(entry.path(), Path::new(DEBIAN_SYSROOT_WASM_LIB).join(&name))?;
        }
    }
    Ok(())
}

/// The wasm-bindgen CLI must be exactly the version of the crate in Cargo.lock.
pub fn wasm_bindgen_cli() -> Result<()> {
    let wanted = locked_version("wasm-bindgen")?;
    let have = cmd_output("wasm-bindgen", &["--version"]).unwrap_or_default();
    if have.split_whitespace().nth(1) != Some(wanted.as_str()) {
        cargo_install("wasm-bindgen-cli", Some(&wanted))?;
    }
    if !cmd_ok("wasm-pack", &["--version"]) {
        cargo_install("wasm-pack", None)?;
    }
    binaryen()?;
    Ok(())
}

/// binaryen's version for `wasm-opt`: Debian 12's 108 breaks wasm-bindgen 0.2.106 output (the
/// module then fails to load with "failed to grow table"), so a newer one comes from npm.
const BINARYEN_VERSION: &str = "132.0.0";

/// The directory holding a working `wasm-opt`, installed from npm into the target dir if needed.
pub fn binaryen() -> Result<PathBuf> {
    npm_tool("binaryen", BINARYEN_VERSION)
}

/// terser minifies the JS of the release package (wasm-bindgen's glue and ours).
const TERSER_VERSION: &str = "5.51.4";

/// The `node_modules/.bin` directory holding `terser`.
pub fn terser() -> Result<PathBuf> {
    npm_tool("terser", TERSER_VERSION)
}

fn ensure_npm() -> Result<()> {
    if !cmd_ok("npm", &["--version"]) {
        apt_install(&["nodejs", "npm"], None)?;
    }
    Ok(())
}

/// The dashboard's page with its chart library (Chart.js from npm, exactly as locked in
/// `analytics/dashboard/package-lock.json`); returns that folder.
pub fn dashboard_assets() -> Result<PathBuf> {
    npm_ci("analytics/dashboard")
}

/// Segment's browser library, analytics.js, for the test that sends from a page with it.
pub fn analytics_js() -> Result<PathBuf> {
    npm_ci("tests/analytics-js")
}

/// `npm ci` in the workspace's folder `dir` (exactly its lock file), which it returns.
fn npm_ci(dir: &str) -> Result<PathBuf> {
    ensure_npm()?;
    let dir = crate::util::workspace_root().join(dir);
    run(Command::new("npm")
        .current_dir(&dir)
        .args(["ci", "--no-audit", "--no-fund"]))?;
    Ok(dir)
}

/// Installs `package@version` from npm into the target dir, once, and returns its `.bin` dir.
fn npm_tool(package: &str, version: &str) -> Result<PathBuf> {
    let prefix = crate::util::target_dir().join("tools").join(package);
    let manifest = prefix
        .join("node_modules")
        .join(package)
        .join("package.json");
    let installed = std::fs::read_to_string(&manifest)
        .map(|m| m.contains(&format!("\"version\": \"{version}\"")))
        .unwrap_or(false);
    if !installed {
        ensure_npm()?;
        eprintln!("xtask: npm install {package}@{version}");
        std::fs::create_dir_all(&prefix)?;
        run(Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--prefix"])
            .arg(&prefix)
            .arg(format!("{package}@{version}")))?;
    }
    Ok(prefix.join("node_modules/.bin"))
}

/// The compiler for the smallest release build of the tracker: one that can build the standard
/// library from source (`-Zbuild-std`) with `-Cpanic=immediate-abort`, which drops the panic
/// messages and the formatting code behind them (about 8 KB gzip). Debian's rustc-web comes with
/// its standard library's source; `None` (with a warning) where it cannot be installed, and the
/// build is then the ordinary, larger one.
pub fn size_toolchain() -> Option<WasmToolchain> {
    let mut toolchain = match debian_compiler() {
        Ok(t) => t,
        Err(e) => {
            eprintln!(
                "xtask: warning: no compiler with the standard library's source ({e:#}); \
                 building the tracker without -Cpanic=immediate-abort (about 8 KB gzip larger)"
            );
            return None;
        }
    };
    for (k, v) in [
        ("RUSTC_BOOTSTRAP", "1"),
        ("CARGO_UNSTABLE_BUILD_STD", "std,panic_abort"),
        // The standard library's smaller variants of its algorithms (string search, sorting).
        ("CARGO_UNSTABLE_BUILD_STD_FEATURES", "optimize_for_size"),
        // No source paths and line numbers in the wasm: with immediate-abort nothing prints them.
        (
            "RUSTFLAGS",
            "-Zunstable-options -Cpanic=immediate-abort -Zlocation-detail=none",
        ),
    ] {
        toolchain.env.push((k.into(), v.into()));
    }
    Some(toolchain)
}

fn locked_version(package: &str) -> Result<String> {
    let lock = std::fs::read_to_string(workspace_root().join("Cargo.lock"))
        .context("Cargo.lock is missing: run `cargo generate-lockfile`")?;
    let needle = format!("name = \"{package}\"\nversion = \"");
    let start = lock
        .find(&needle)
        .with_context(|| format!("{package} not in Cargo.lock"))?
        + needle.len();
    let end = lock[start..].find('"').context("malformed Cargo.lock")? + start;
    Ok(lock[start..end].to_owned())
}

fn cargo_install(krate: &str, version: Option<&str>) -> Result<()> {
    eprintln!("xtask: cargo install {krate} (a few minutes, once)");
    let mut cmd = Command::new("cargo");
    cmd.args(["install", "--locked", krate]);
    if let Some(v) = version {
        cmd.args(["--version", v]);
    }
    // Installing must not share (and lock) the workspace's target directory.
    cmd.env_remove("CARGO_TARGET_DIR");
    run(&mut cmd)
}

pub fn cargo_bin_dir() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from("/root/.cargo"))
        .join("bin")
}

/// Paths of the browser and its driver, installed from Debian when missing.
pub struct Browser {
    pub chromium: PathBuf,
    pub chromedriver: PathBuf,
}

pub fn browser() -> Result<Browser> {
    let chromium = PathBuf::from("/usr/bin/chromium");
    let chromedriver = PathBuf::from("/usr/bin/chromedriver");
    if !chromium.exists() || !chromedriver.exists() {
        apt_install(&["chromium", "chromium-driver"], None)?;
    }
    Ok(Browser {
        chromium,
        chromedriver,
    })
}

/// jq 1.6, the JQ that Firehose's dynamic partitioning runs: the tests run the lake's partition
/// queries through it. Debian 12 ships that version; installed from there when missing.
pub fn jq() -> Result<PathBuf> {
    let jq = PathBuf::from("/usr/bin/jq");
    if !jq.exists() {
        apt_install(&["jq"], None)?;
    }
    Ok(jq)
}

/// The folder with PostgreSQL's `initdb`, `postgres` and `psql` (the Amazon RDS stand-in the
/// tests and `demo --postgres` start on their own port), installed from Debian when missing.
pub fn postgres() -> Result<PathBuf> {
    if let Some(bin) = postgres_bin() {
        return Ok(bin);
    }
    apt_install(&["postgresql"], None)?;
    postgres_bin().context("postgresql was installed but no /usr/lib/postgresql/*/bin/initdb")
}

fn postgres_bin() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|d| d.ok())
        .filter_map(|d| {
            let version = d.file_name().to_str()?.parse().ok()?;
            let bin = d.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

/// moto in server mode speaks the Kinesis, DynamoDB, Firehose and S3 wire protocols.
pub fn moto() -> Result<String> {
    let python = ["python3", "python"]
        .into_iter()
        .find(|p| cmd_ok(p, &["--version"]))
        .context("python3 is required for moto")?;
    if !cmd_ok(python, &["-c", "import moto.server, flask"]) {
        eprintln!("xtask: installing moto[server] from PyPI");
        run(Command::new(python).args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "moto[server]>=5.1,<6",
        ]))?;
    }
    Ok(python.to_owned())
}

pub fn apt_install(packages: &[&str], suite: Option<&str>) -> Result<()> {
    eprintln!("xtask: apt-get install {}", packages.join(" "));
    if !cmd_ok("apt-get", &["--version"]) {
        bail!(
            "apt-get is not available: install {} by hand",
            packages.join(" ")
        );
    }
    let update = Command::new("apt-get")
        .args(["update", "-q"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()?;
    if !update.success() {
        eprintln!("xtask: apt-get update failed; trying the install with the cached lists");
    }
    let mut cmd = Command::new("apt-get");
    cmd.env("DEBIAN_FRONTEND", "noninteractive")
        .args(["install", "-y", "-q"]);
    if let Some(s) = suite {
        cmd.args(["-t", s]);
    }
    cmd.args(packages);
    run(&mut cmd)
}
