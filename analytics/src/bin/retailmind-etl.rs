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

use std::collections::BTreeMap;

use anyhow::{bail, Context};
use retailmind_analytics::analyses::{Analysis, DayRange, LocalAnalytics};
use retailmind_analytics::config::EtlConfig;
use retailmind_analytics::{etl, job, model_rebuild, tables};
use retailmind_connectors::{service, settings};

/// The `--name value` options of a command, each of `allowed` at most once; anything else in
/// `args` is refused, so that a misspelt option is not run past as if it were not there.
fn options<'a>(
    command: &str,
    args: &'a [String],
    allowed: &[&str],
) -> anyhow::Result<BTreeMap<&'a str, &'a str>> {
    let mut found = BTreeMap::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let arg = arg.as_str();
        if !allowed.contains(&arg) {
            match allowed {
                [] => bail!("`{command}` takes no arguments, and {arg:?} was given"),
                _ => bail!("`{command}` takes {}, not {arg:?}", allowed.join(", ")),
            }
        }
        let value = match args.next() {
            Some(value) if !value.starts_with("--") => value.as_str(),
            _ => bail!("{arg} needs a value"),
        };
        if found.insert(arg, value).is_some() {
            bail!("{arg} is given twice");
        }
    }
    Ok(found)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (command, rest) = match args.split_first() {
        Some((command, rest)) => (command.as_str(), rest),
        None => ("run", &args[..]),
    };
    match command {
        "run" => {
            options(command, rest, &[])?;
            run().await
        }
        "ddl" => {
            let given = options(command, rest, &["--database", "--lake"])?;
            let database = given.get("--database").copied().unwrap_or("${database}");
            let lake = given.get("--lake").copied().unwrap_or("${lake}");
            print!("{}", tables::athena_ddl(database, lake));
            Ok(())
        }
        "query" => query(rest).await,
        "rebuild-model" => {
            options(command, rest, &[])?;
            rebuild_model().await
        }
        "-h" | "--help" | "help" => {
            print!("{USAGE}");
            Ok(())
        }
        "-V" | "--version" => {
            println!("retailmind-etl {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        other => {
            bail!("unknown command {other:?}; use run, rebuild-model, ddl or query\n\n{USAGE}")
        }
    }
}

const USAGE: &str = "\
Usage:
  retailmind-etl [run]                        one run of the lake job, then its report
  retailmind-etl rebuild-model                the recommendation model taught again from the lake
                                              (stop the processors first)
  retailmind-etl ddl [--database NAME] [--lake s3://BUCKET]
                                              the Athena DDL of every table
  retailmind-etl query NAME --from YYYY-MM-DD --to YYYY-MM-DD
                                              one analysis over the embedded lake, as JSON

Configured by `retailmind.toml` (or the file RETAILMIND_CONFIG names) and RETAILMIND_* variables.
";

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
    service::init_tracing();
    let Some((name, rest)) = args.split_first() else {
        bail!("query needs an analysis name");
    };
    let analysis = Analysis::by_name(name).with_context(|| {
        let names: Vec<&str> = Analysis::ALL.iter().map(|a| a.name()).collect();
        format!("no analysis {name:?}; there are {names:?}")
    })?;
    let given = options("query", rest, &["--from", "--to"])?;
    let range = DayRange::new(
        given.get("--from").context("--from YYYY-MM-DD is needed")?,
        given.get("--to").context("--to YYYY-MM-DD is needed")?,
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
