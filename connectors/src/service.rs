//! What every RetailMind binary does the same way: logging, metrics and graceful shutdown.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Logs to stderr, filtered by `RUST_LOG` (default `info`).
pub fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // A second call (tests starting several services) keeps the first subscriber.
    let _ = tracing_subscriber::fmt().with_env_filter(filter).try_init();
}

/// A command-line argument given to a service, which takes none.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unexpected argument `{argument}`: {binary} takes none. {CONFIGURED_BY}")]
pub struct UnexpectedArgument {
    pub binary: String,
    pub argument: String,
}

const CONFIGURED_BY: &str = "It is configured by `retailmind.toml` in the working directory \
    (or the file RETAILMIND_CONFIG names) and by RETAILMIND_* environment variables, `__` \
    between nested keys (RETAILMIND_BACKEND__KIND=aws); see the README.";

/// What a service does with its command-line arguments (`std::env::args().skip(1)`).
#[derive(Debug, PartialEq, Eq)]
pub enum Arguments {
    /// None: run.
    Run,
    /// `--help` or `--version`: print this and exit.
    Print(String),
}

/// Reads a service's arguments: it takes none, since its configuration comes from the file and
/// the environment, and an argument meant as configuration (`--config prod.toml`) must not be
/// run past as if it were not there. `about` is the binary's one-line description.
pub fn arguments(
    binary: &str,
    version: &str,
    about: &str,
    mut args: impl Iterator<Item = String>,
) -> Result<Arguments, UnexpectedArgument> {
    let Some(first) = args.next() else {
        return Ok(Arguments::Run);
    };
    match first.as_str() {
        "-h" | "--help" | "help" => Ok(Arguments::Print(format!(
            "{binary} {version}: {about}\n\nUsage: {binary}\n\n{CONFIGURED_BY}\n"
        ))),
        "-V" | "--version" => Ok(Arguments::Print(format!("{binary} {version}\n"))),
        _ => Err(UnexpectedArgument {
            binary: binary.to_owned(),
            argument: first,
        }),
    }
}

/// [`arguments`] of this process: exits after printing what `--help` or `--version` asked for.
pub fn take_no_arguments(
    binary: &str,
    version: &str,
    about: &str,
) -> Result<(), UnexpectedArgument> {
    match arguments(binary, version, about, std::env::args().skip(1))? {
        Arguments::Run => Ok(()),
        Arguments::Print(text) => {
            print!("{text}");
            std::process::exit(0)
        }
    }
}

/// Runs a binary's start-up unless `shutdown` completes first (`None` then): a signal while
/// start-up waits on a backend (retries, SQLite's busy timeout) stops the binary at once.
pub async fn unless_shut_down<T>(
    shutdown: &mut (impl std::future::Future<Output = ()> + Unpin),
    start: impl std::future::Future<Output = T>,
) -> Option<T> {
    tokio::select! {
        _ = shutdown => {
            tracing::info!("stopped during start-up");
            None
        }
        started = start => Some(started),
    }
}

/// Completes on Ctrl-C or SIGTERM (what container runtimes send before killing). The handlers
/// are in place when this returns, not when the future is first polled: a SIGTERM that comes
/// while the binary is still starting up must stop it cleanly too, not end it by the signal's
/// default action. Call it inside the runtime.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let interrupt = signal(SignalKind::interrupt()).ok();
        let terminate = signal(SignalKind::terminate()).ok();
        async move {
            let next = |s: Option<tokio::signal::unix::Signal>| async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = next(interrupt) => {},
                _ = next(terminate) => {},
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Name of the thread that drains the recorder's histogram samples into their buckets.
const UPKEEP_THREAD: &str = "metrics-upkeep";
/// How often it does (the exporter's own default).
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// The process-wide Prometheus recorder, installed on first use (several services in one test
/// process share it); render it for `GET /metrics`. Metrics ending in `_seconds` get latency
/// buckets from 0.5 ms to 2.5 s.
pub fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Suffix("_seconds".into()),
                    &[
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                    ],
                )
                .expect("static bucket list is not empty")
                .build_recorder();
            let handle = recorder.handle();
            // Histograms keep every recorded value until upkeep folds them into buckets; a
            // `build_recorder` recorder gets no upkeep of its own, and nothing else runs it when
            // no one scrapes `/metrics`, so memory grew with every request (~250 KB/s in the
            // collector's overload benchmark). A plain thread: it also runs outside tokio.
            let upkeep = handle.clone();
            let started = std::thread::Builder::new()
                .name(UPKEEP_THREAD.into())
                .spawn(move || loop {
                    std::thread::sleep(UPKEEP_EVERY);
                    upkeep.run_upkeep();
                });
            if let Err(e) = started {
                tracing::warn!(error = %e, "cannot start the metrics upkeep thread");
            }
            // Another recorder may already be installed by an embedding program; then ours
            // still renders what it recorded through this handle (nothing), which is harmless.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(args: &[&str]) -> Result<Arguments, UnexpectedArgument> {
        let args = args.iter().map(|a| a.to_string());
        arguments("retailmind-x", "1.2.3", "does x", args)
    }

    #[test]
    fn a_service_runs_without_arguments_and_refuses_any_but_help_and_version() {
        assert_eq!(read(&[]), Ok(Arguments::Run));
        let Ok(Arguments::Print(help)) = read(&["--help"]) else {
            panic!("--help prints");
        };
        assert!(help.starts_with("retailmind-x 1.2.3: does x\n\nUsage: retailmind-x\n"));
        assert!(help.contains("RETAILMIND_CONFIG"), "{help}");
        assert_eq!(
            read(&["-V"]),
            Ok(Arguments::Print("retailmind-x 1.2.3\n".into()))
        );
        let refused = read(&["--config", "prod.toml"]).unwrap_err();
        assert_eq!(refused.argument, "--config");
        let message = refused.to_string();
        assert!(
            message.starts_with("unexpected argument `--config`: retailmind-x takes none. It is configured by `retailmind.toml`"),
            "{message}"
        );
    }

    /// Without upkeep, histogram samples pile up until someone scrapes `/metrics`.
    #[cfg(target_os = "linux")]
    #[test]
    fn the_recorder_comes_with_a_thread_that_drains_histograms() {
        let _ = prometheus();
        let names = || -> Vec<String> {
            std::fs::read_dir("/proc/self/task")
                .unwrap()
                .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
                .map(|name| name.trim().to_owned())
                .collect()
        };
        // A new thread names itself once it runs.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !names().iter().any(|n| n == UPKEEP_THREAD) {
            assert!(std::time::Instant::now() < deadline, "{:?}", names());
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}
