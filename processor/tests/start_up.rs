//! The `retailmind-processor` binary refuses what it would otherwise run past: an argument
//! (it takes none), a configuration file that `RETAILMIND_CONFIG` names but that is not there,
//! and a key of `retailmind.toml` that no RetailMind binary reads. Each must stop it at start
//! with a message that says what and why, before it opens anything.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const BINARY: &str = env!("CARGO_BIN_EXE_retailmind-processor");

/// Runs the binary in `dir` with nothing but `envs` set, and waits for it to end (it must end
/// by itself: on a start it should not make, it would run until killed).
fn run_in(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut child = Command::new(BINARY)
        .current_dir(dir)
        .env_clear()
        .envs(envs.iter().copied())
        .env("RETAILMIND_BACKEND__DATA_DIR", dir.join("data"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the processor binary starts");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            let output = child.wait_with_output().unwrap();
            panic!(
                "{args:?} {envs:?}: still running after 60 s\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn refused(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "it ran: {stderr}");
    stderr
}

#[test]
fn an_argument_is_refused_and_help_says_where_configuration_comes_from() {
    let dir = tempfile::tempdir().unwrap();
    let stderr = refused(&run_in(dir.path(), &["--config", "prod.toml"], &[]));
    assert!(
        stderr.contains("unexpected argument `--config`: retailmind-processor takes none"),
        "{stderr}"
    );
    assert!(!dir.path().join("data").exists(), "no backend opened");

    let help = run_in(dir.path(), &["--help"], &[]);
    assert!(help.status.success());
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.starts_with("retailmind-processor "), "{help}");
    assert!(help.contains("RETAILMIND_CONFIG"), "{help}");
}

#[test]
fn a_configuration_file_named_but_missing_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("prod.toml");
    let stderr = refused(&run_in(
        dir.path(),
        &[],
        &[("RETAILMIND_CONFIG", missing.to_str().unwrap())],
    ));
    assert!(
        stderr.contains(&format!(
            "RETAILMIND_CONFIG names {}, which cannot be read",
            missing.display()
        )),
        "{stderr}"
    );
    assert!(!dir.path().join("data").exists(), "no backend opened");
}

#[test]
fn a_misspelt_key_of_the_file_is_refused_with_the_setting_it_meant() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("retailmind.toml"),
        "session_inactivity_minute = 15\n",
    )
    .unwrap();
    let stderr = refused(&run_in(dir.path(), &[], &[]));
    assert!(
        stderr.contains(
            "retailmind.toml sets `session_inactivity_minute`, which is no RetailMind setting \
             (did you mean `session_inactivity_minutes`?)"
        ),
        "{stderr}"
    );
    assert!(!dir.path().join("data").exists(), "no backend opened");
}
