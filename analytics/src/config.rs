//! The ETL's configuration, read like every RetailMind binary's
//! (`retailmind_connectors::settings::load`: `retailmind.toml`, then `RETAILMIND_*`).

use std::path::PathBuf;
use std::sync::Arc;

use retailmind_commerce::{CommerceConfig, CommerceStore};
use retailmind_connectors::{BackendConfig, SessionStore, ValidationLimits};
use retailmind_schema::Limits;
use serde::{Deserialize, Serialize};

use crate::etl::EtlOptions;
use crate::store::{LakeStore, LocalStore, S3Store};

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default)]
pub struct EtlConfig {
    /// Embedded: the lake is `<data_dir>/lake/`. AWS: the bucket below, in the backend's region
    /// (and at its `endpoint_url`, for moto).
    pub backend: BackendConfig,
    /// The lake bucket on AWS (the one the Firehose delivery streams write to).
    pub lake_bucket: Option<String>,
    /// Hours after a day's end (in event time, against the newest event seen) during which its
    /// late events are still merged into its partition; later ones are quarantined.
    pub late_window_hours: u32,
    /// Rows per Parquet file.
    pub max_rows_per_file: usize,
    /// Raw MiB read before tables and manifest are written (bounds the job's memory).
    pub max_batch_mib: u64,
    /// The orders and customers database exported to the lake (the collector's `[commerce]`;
    /// by default SQLite in the embedded backend's folder, none on AWS).
    pub commerce: CommerceConfig,
    /// The embedded dashboard (`retailmind-dashboard`).
    pub dashboard: DashboardConfig,
    /// The stored recommendation model `retailmind-etl rebuild-model` replaces (the processor's
    /// and the collector's `model_name`).
    pub model_name: String,
    /// The rules lines of the lake are checked against: the collector's `[validation]`, so that
    /// the job does not judge by other limits than the collector did (raised `max_items`, say).
    pub validation: ValidationLimits,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DashboardConfig {
    /// Where the page and its API are served.
    pub listen: String,
    /// Seconds between two runs of the lake job.
    pub refresh_secs: u64,
    /// The `analytics/dashboard` folder (the page and its `node_modules`). Unset: that folder
    /// in the source tree the binary was built from.
    pub assets_dir: Option<PathBuf>,
    /// When set, the API answers only `Authorization: Bearer <token>`; open the page as
    /// `/#token=<token>`.
    pub token: Option<String>,
}

impl Default for DashboardConfig {
    fn default() -> Self {
        DashboardConfig {
            listen: "127.0.0.1:8704".into(),
            refresh_secs: 5,
            assets_dir: None,
            token: None,
        }
    }
}

impl DashboardConfig {
    pub fn assets_dir(&self) -> PathBuf {
        self.assets_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/dashboard")))
    }
}

/// The stores the exports read, opened.
pub struct OpenSources {
    pub sessions: Arc<dyn SessionStore>,
    pub commerce: Option<Arc<dyn CommerceStore>>,
}

impl OpenSources {
    pub fn sources(&self) -> crate::export::Sources<'_> {
        crate::export::Sources {
            sessions: Some(self.sessions.as_ref()),
            commerce: self.commerce.as_deref(),
        }
    }
}

impl Default for EtlConfig {
    fn default() -> Self {
        let options = EtlOptions::default();
        EtlConfig {
            backend: BackendConfig::default(),
            lake_bucket: None,
            late_window_hours: options.late_window_hours,
            max_rows_per_file: options.max_rows_per_file,
            max_batch_mib: options.max_batch_bytes / (1024 * 1024),
            commerce: CommerceConfig::default(),
            dashboard: DashboardConfig::default(),
            model_name: "recommendations".into(),
            validation: ValidationLimits::default(),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("lake_bucket must be set with backend.kind = \"aws\": the bucket the lake is in")]
    MissingBucket,
    #[error("max_rows_per_file must be at least 1")]
    NoRowsPerFile,
    #[error(transparent)]
    OutOfRange(#[from] retailmind_connectors::settings::OutOfRange),
    #[error("opening the session store: {0}")]
    Sessions(String),
    #[error("opening the transactions store: {0}")]
    Commerce(String),
}

impl EtlConfig {
    pub fn options(&self) -> Result<EtlOptions, ConfigError> {
        if self.max_rows_per_file == 0 {
            return Err(ConfigError::NoRowsPerFile);
        }
        self.validation.check()?;
        Ok(EtlOptions {
            late_window_hours: self.late_window_hours,
            max_rows_per_file: self.max_rows_per_file,
            max_batch_bytes: self.max_batch_mib.max(1) * 1024 * 1024,
            limits: Limits::from(&self.validation),
        })
    }

    /// The local lake folder of the embedded backend; `None` on AWS.
    pub fn local_lake(&self) -> Option<PathBuf> {
        self.backend
            .embedded_data_dir()
            .map(|d| d.join(retailmind_connectors::embedded::LAKE_DIR))
    }

    /// The session store of the backend and the transactions store, when one is configured.
    pub async fn sources(&self) -> Result<OpenSources, ConfigError> {
        let backend = retailmind_connectors::connect(&self.backend)
            .await
            .map_err(|e| ConfigError::Sessions(e.to_string()))?;
        let commerce = self
            .commerce
            .open(self.backend.embedded_data_dir())
            .await
            .map_err(|e| ConfigError::Commerce(e.to_string()))?;
        Ok(OpenSources {
            sessions: backend.sessions,
            commerce,
        })
    }

    /// The lake the configuration names.
    pub async fn store(&self) -> Result<Box<dyn LakeStore>, ConfigError> {
        match &self.backend {
            BackendConfig::Embedded { data_dir, .. } => Ok(Box::new(LocalStore::new(
                data_dir.join(retailmind_connectors::embedded::LAKE_DIR),
            ))),
            BackendConfig::Aws(aws) => {
                let bucket = self
                    .lake_bucket
                    .as_deref()
                    .ok_or(ConfigError::MissingBucket)?;
                Ok(Box::new(
                    S3Store::connect(&aws.region, aws.endpoint_url.as_deref(), bucket).await,
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_setting_is_known_to_the_shared_file() {
        // The file every binary reads refuses keys no binary knows.
        assert_eq!(
            retailmind_connectors::settings::unlisted_settings::<EtlConfig>(),
            Vec::<String>::new()
        );
    }

    #[test]
    fn the_lake_job_judges_lines_by_the_collectors_rules() {
        let mut config = EtlConfig::default();
        config.validation.max_age_days = 90;
        config.validation.max_items = 500;
        let limits = config.options().unwrap().limits;
        assert_eq!(limits.max_age_ms, 90 * 86_400_000);
        assert_eq!(limits.max_items, 500);
        config.validation.max_age_days = 1_000_000_000_000;
        assert_eq!(
            config.options().unwrap_err().to_string(),
            "validation.max_age_days is 1000000000000: it must be between 1 and 3660"
        );
    }

    #[tokio::test]
    async fn aws_needs_a_bucket_and_files_need_rows() {
        let config = EtlConfig {
            backend: BackendConfig::Aws(retailmind_connectors::AwsConfig::new("eu-central-1")),
            ..EtlConfig::default()
        };
        assert_eq!(config.store().await.err(), Some(ConfigError::MissingBucket));
        let config = EtlConfig {
            max_rows_per_file: 0,
            ..EtlConfig::default()
        };
        assert_eq!(config.options().err(), Some(ConfigError::NoRowsPerFile));
        assert_eq!(
            EtlConfig::default().local_lake(),
            Some(PathBuf::from(".retailmind/lake"))
        );
    }
}
