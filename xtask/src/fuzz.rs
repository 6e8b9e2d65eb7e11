//! `cargo xtask fuzz [SECONDS]`: runs the `batch_decode` fuzz target (collector batch decoding,
//! ours and Segment's, and schema validation, see `fuzz/fuzz_targets/batch_decode.rs`) for a
//! bounded time.
//!
//! cargo-fuzz needs nightly flags; `RUSTC_BOOTSTRAP=1` lets the stable toolchain accept them.
//! The fuzz crate builds into its own target directory (`target/fuzz`) because its sanitizer
//! flags would otherwise invalidate the workspace build. The seeds in `fuzz/corpus/batch_decode`
//! are read but never written: what the fuzzer finds goes to `target/fuzz/corpus`, so the repo
//! keeps a small, chosen corpus while long runs still build on earlier ones.

use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::util::{cmd_output, run, target_dir, workspace_root};

const TARGET: &str = "batch_decode";
const DEFAULT_SECONDS: u64 = 300;

/// `cargo xtask fuzz [SECONDS]`.
pub fn run_fuzz(args: &[&str]) -> Result<()> {
    let seconds = match args {
        [] => DEFAULT_SECONDS,
        [s] => s
            .parse()
            .with_context(|| format!("usage: cargo xtask fuzz [SECONDS], not {s:?}"))?,
        _ => bail!("usage: cargo xtask fuzz [SECONDS]"),
    };
    run_bounded(seconds)
}

/// Installs cargo-fuzz if missing, then fuzzes `batch_decode` for `seconds` (after the build).
/// Fails when the fuzzer finds a crash; the input is then in `fuzz/artifacts/batch_decode/`.
pub fn run_bounded(seconds: u64) -> Result<()> {
    ensure_cargo_fuzz()?;
    let root = workspace_root();
    let fuzz_dir = root.join("fuzz");
    let fuzz_target_dir = target_dir().join("fuzz");
    let work_corpus = fuzz_target_dir.join("corpus").join(TARGET);
    std::fs::create_dir_all(&work_corpus)?;
    let seeds = fuzz_dir.join("corpus").join(TARGET);

    let mut cmd = Command::new("cargo");
    cmd.current_dir(&fuzz_dir)
        .env("RUSTC_BOOTSTRAP", "1")
        .env("CARGO_TARGET_DIR", &fuzz_target_dir)
        // Overflow checks and debug assertions on: an arithmetic overflow in validation is a bug
        // worth a crash report, not a silent wrap.
        .args(["fuzz", "run", "--debug-assertions", TARGET])
        // libFuzzer writes new inputs to the first directory only.
        .arg(&work_corpus)
        .arg(&seeds)
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        // A single input taking this long is a hang worth reporting.
        .arg("-timeout=10")
        .arg("-print_final_stats=1");
    eprintln!("xtask: fuzzing {TARGET} for {seconds} s (after the build)");
    run(&mut cmd).with_context(|| {
        format!(
            "the fuzzer failed or found a crash: the input is in {}; replay it with \
             `cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run {TARGET} <file>`",
            fuzz_dir.join("artifacts").join(TARGET).display()
        )
    })
}

/// cargo-fuzz 0.13 from crates.io, once.
fn ensure_cargo_fuzz() -> Result<()> {
    if cmd_output("cargo", &["fuzz", "--version"]).is_ok() {
        return Ok(());
    }
    eprintln!("xtask: cargo install cargo-fuzz (about 2 minutes, once)");
    let mut cmd = Command::new("cargo");
    // Installing must not share (and lock) the workspace's target directory.
    cmd.args(["install", "--locked", "cargo-fuzz", "--version", "^0.13"])
        .env_remove("CARGO_TARGET_DIR");
    run(&mut cmd)
}
