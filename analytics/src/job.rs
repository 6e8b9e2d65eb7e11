//! One run of the lake job: the events ETL, then the exports of the stores (which need to know
//! which event days changed), then the pending right-to-be-forgotten requests. What a scheduler (cron, an ECS scheduled task, EventBridge and
//! Lambda) runs, and what the embedded dashboard runs every few seconds.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::etl::manifest::{Manifest, MANIFEST_KEY};
use crate::etl::{self, EtlError, EtlOptions, EtlReport};
use crate::export::{self, ExportError, ExportReport, Sources};
use crate::forget::{self, ForgetError, ForgetReport};
use crate::store::LakeStore;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct JobReport {
    pub events: EtlReport,
    pub exports: ExportReport,
    pub forgotten: ForgetReport,
}

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("events ETL: {0}")]
    Events(#[from] EtlError),
    #[error("exports: {0}")]
    Exports(#[from] ExportError),
    #[error("deletion requests: {0}")]
    Forget(#[from] ForgetError),
}

/// The events ETL over `lake`, then the exports from `sources`.
pub async fn run_once(
    lake: &dyn LakeStore,
    sources: Sources<'_>,
    options: &EtlOptions,
    now_ms: i64,
) -> Result<JobReport, JobError> {
    let events = etl::run(lake, options).await?;
    let event_days: BTreeSet<String> = match lake.get(MANIFEST_KEY).await.map_err(EtlError::from)? {
        Some(bytes) => {
            Manifest::from_json(&bytes)
                .map_err(|e| EtlError::Manifest {
                    key: MANIFEST_KEY.into(),
                    reason: e.to_string(),
                })?
                .days
        }
        None => BTreeSet::new(),
    };
    let exports = export::run(
        lake,
        sources,
        &events.days_rewritten,
        &event_days,
        now_ms,
        options.max_rows_per_file,
    )
    .await?;
    let forgotten = match sources.commerce {
        Some(commerce) => forget::run(lake, commerce, now_ms, options.max_rows_per_file).await?,
        None => ForgetReport::default(),
    };
    Ok(JobReport {
        events,
        exports,
        forgotten,
    })
}
