//! `retailmind-dashboard`: the embedded dashboard. Runs the lake job (events ETL and exports)
//! every `dashboard.refresh_secs` over the embedded lake and serves the page that charts the
//! analyses, with the live panel from the session store.
//!
//! Configuration as for the other binaries (`retailmind.toml`, `RETAILMIND_*`), see
//! `EtlConfig` and its `[dashboard]` section. On AWS the same SQL runs in Athena and the
//! dashboards are QuickSight's; this binary needs the embedded backend.

use std::time::Duration;

use anyhow::Context;
use retailmind_analytics::config::EtlConfig;
use retailmind_analytics::dashboard::Dashboard;
use retailmind_connectors::{service, settings};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    service::take_no_arguments(
        env!("CARGO_BIN_NAME"),
        env!("CARGO_PKG_VERSION"),
        "the embedded dashboard: runs the lake job on a timer and serves its charts",
    )?;
    service::init_tracing();
    let config: EtlConfig = settings::load().context("reading the configuration")?;
    let lake = config.local_lake().context(
        "the dashboard runs on the embedded backend; on AWS query the lake with Athena \
         (analytics/sql/, `retailmind-etl ddl`)",
    )?;
    let options = config.options()?;
    let sources = config.sources().await?;
    let dashboard = Dashboard::new(
        lake,
        config.dashboard.assets_dir(),
        sources.sessions.clone(),
        config.dashboard.token.clone(),
    );
    let _job = dashboard.run_job_every(
        sources,
        options,
        Duration::from_secs(config.dashboard.refresh_secs.max(1)),
    );
    let listener = tokio::net::TcpListener::bind(&config.dashboard.listen)
        .await
        .with_context(|| format!("listening on {}", config.dashboard.listen))?;
    tracing::info!(listen = %config.dashboard.listen, "dashboard ready");
    axum::serve(listener, dashboard.router())
        .with_graceful_shutdown(service::shutdown_signal())
        .await
        .context("serving the dashboard")
}
