//! `retailmind-etl`: the lake's batch jobs, for a scheduler (cron, ECS scheduled task).
//!
//! - `retailmind-etl [run]`: one run of the lake job over the configured lake (the events ETL,
//!   then the exports of sessions, orders and customers); prints its report.
//! - `retailmind-etl rebuild-model`: the recommendation model taught again from the lake's
//!   events and saved as the next version of the stored model (stop the processors first).
//! - `retailmind-etl ddl [--database NAME] [--lake s3://BUCKET]`: the Athena DDL of every table
//!   (placeholders `${database}` and `${lake}` where not given).
//! - `retailmind-etl query NAME --from YYYY-MM-DD --to YYYY-MM-DD`: one analysis
//!   (`sales_trend`, `conversion_funnel`, …) over the embedded lake's tables, as JSON.
//!
//! Configuration as for the other binaries: `retailmind.toml` (or `RETAILMIND_CONFIG`) and
//! `RETAILMIND_*` variables; see `EtlConfig`.

use anyhow::{bail, Context};
use retailmind_analytics::analyses::{Analysis, DayRange, LocalAnalytics};
use retailmind_analytics::config::EtlConfig;
use retailmind_analytics::{etl, job, model_rebuild, tables};
use retailmind_connectors::{service, settings};

fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None | Some("run") => run().await,
        Some("ddl") => {
            let database = flag(&args, "--database").unwrap_or("${database}");
            let lake = flag(&args, "--lake").unwrap_or("${lake}");
            print!("{}", tables::athena_ddl(database, lake));
            Ok(())
        }
        Some("query") => query(&args[1..]).await,
        Some("rebuild-model") => rebuild_model().await,
        Some(other) => bail!("unknown command {other:?}; use run, rebuild-model, ddl or query"),
    }
}

async fn run() -> anyhow::Result<()> {
    service::init_tracing();
    let config: EtlConfig = settings::load().context("reading the ETL configuration")?;
    let options = config.options()?;
    let store = config.store().await?;
    let sources = config.sources().await?;
    let now_ms = retailmind_connectors::clock::now_ms();
    let report = job::run_once(store.as_ref(), sources.sources(), &options, now_ms)
        .await
        .context("running the lake job")?;
    tracing::info!(?report, "lake job done");
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

async fn rebuild_model() -> anyhow::Result<()> {
    service::init_tracing();
    let config: EtlConfig = settings::load().context("reading the configuration")?;
    let store = config.store().await?;
    let days = etl::manifest::Manifest::from_json(
        &store
            .get(etl::manifest::MANIFEST_KEY)
            .await?
            .context("the lake has no tables yet: run `retailmind-etl run` first")?,
    )?
    .days;
    let (model, mut report) = model_rebuild::rebuild(
        store.as_ref(),
        &days,
        retailmind_recommend::ModelConfig::default(),
    )
    .await?;
    let backend = retailmind_connectors::connect(&config.backend).await?;
    model_rebuild::save(
        backend.models.as_ref(),
        &config.model_name,
        &model,
        &mut report,
    )
    .await?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

async fn query(args: &[String]) -> anyhow::Result<()> {
    let Some(name) = args.first() else {
        bail!("query needs an analysis name");
    };
    let analysis = Analysis::by_name(name).with_context(|| {
        let names: Vec<&str> = Analysis::ALL.iter().map(|a| a.name()).collect();
        format!("no analysis {name:?}; there are {names:?}")
    })?;
    let range = DayRange::new(
        flag(args, "--from").context("--from YYYY-MM-DD is needed")?,
        flag(args, "--to").context("--to YYYY-MM-DD is needed")?,
    )?;
    let config: EtlConfig = settings::load().context("reading the ETL configuration")?;
    let lake = config
        .local_lake()
        .context("queries run on the embedded lake; on AWS run analytics/sql/ in Athena")?;
    let analytics = LocalAnalytics::open(&lake).await?;
    let rows = analytics.json(analysis, &range).await?;
    println!("{}", serde_json::to_string_pretty(&rows)?);
    Ok(())
}
