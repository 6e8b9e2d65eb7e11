//! Small process helpers shared by the xtask commands.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// The checkout this xtask runs for. `cargo run` says so at run time; the path compiled in is
/// only a fallback, since two checkouts sharing one target directory share the xtask binary
/// too, and the one built last would otherwise send every checkout's output to its own tree.
pub fn workspace_root() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// Runs a command with inherited stdio and fails with its exit status.
pub fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("could not start {:?}", cmd.get_program()))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

/// Runs a command and returns its stdout, or an error if it could not run or failed.
pub fn cmd_output(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .stderr(Stdio::null())
        .output()
        .with_context(|| format!("could not start {program}"))?;
    if !out.status.success() {
        bail!("{program} {args:?} failed with {}", out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// True when the command runs and exits 0.
pub fn cmd_ok(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// The shared cargo target directory (one for the whole workspace, so nothing builds twice).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// Refuses any of `args` that is not one of `switches`, so that a misspelt one (`--postgress`)
/// is not run past as if it were not there.
pub fn only_switches(command: &str, args: &[&str], switches: &[&str]) -> anyhow::Result<()> {
    match args.iter().find(|a| !switches.contains(a)) {
        None => Ok(()),
        Some(other) if switches.is_empty() => {
            anyhow::bail!("`cargo xtask {command}` takes no arguments, and {other:?} was given")
        }
        Some(other) => anyhow::bail!(
            "`cargo xtask {command}` takes {}, not {other:?}",
            switches.join(", ")
        ),
    }
}
