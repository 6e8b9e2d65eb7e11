//! `cargo xtask etl [run|ddl]` and `cargo xtask bench etl`: the lake's batch job and its figures.
//!
//! - `etl` / `etl run`: one run of the events ETL over the configured lake (`retailmind.toml`,
//!   `RETAILMIND_*`), as `retailmind-etl run` does.
//! - `etl ddl`: regenerates `analytics/ddl/athena.sql` from the table definitions (the unit test
//!   `checked_in_ddl_is_what_the_definitions_generate` fails until this is done after a change).
//! - `bench etl [EVENTS]`: ETL events/s to Parquet and the funnel and sales query latency over a
//!   generated lake (release build; default 10,000,000 events), each query's median against
//!   the 1 s target.

use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::util::{only_switches, run, workspace_root};

fn etl_binary(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO"));
    cmd.current_dir(workspace_root()).args([
        "run",
        "--quiet",
        "-p",
        "retailmind-analytics",
        "--bin",
        "retailmind-etl",
        "--",
    ]);
    cmd.args(args);
    cmd
}

pub fn run_etl(args: &[&str]) -> Result<()> {
    match args.first().copied() {
        None | Some("run") => {
            only_switches("etl run", args.get(1..).unwrap_or_default(), &[])?;
            run(&mut etl_binary(&["run"]))
        }
        Some("ddl") => {
            only_switches("etl ddl", &args[1..], &[])?;
            let out = etl_binary(&["ddl"])
                .output()
                .context("could not run retailmind-etl ddl")?;
            if !out.status.success() {
                bail!(
                    "retailmind-etl ddl failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            let path = workspace_root().join("analytics/ddl/athena.sql");
            std::fs::write(&path, &out.stdout)
                .with_context(|| format!("writing {}", path.display()))?;
            println!("wrote {}", path.display());
            Ok(())
        }
        Some(other) => bail!("unknown etl command {other:?}; use run or ddl"),
    }
}

pub fn run_bench(args: &[&str]) -> Result<()> {
    let mut cmd = Command::new(env!("CARGO"));
    cmd.current_dir(workspace_root()).args([
        "bench",
        "-p",
        "retailmind-analytics",
        "--bench",
        "etl",
        "--",
    ]);
    cmd.args(args);
    run(&mut cmd)
}
