use std::path::PathBuf;

use retailmind_schema::Limits;
use serde::{Deserialize, Serialize};

use crate::settings::{check_ranges, OutOfRange};

/// Which implementation of the edges to use. Read from the `[backend]` table of the config file
/// or from `RETAILMIND_BACKEND__*` environment variables.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
// Read once at start and kept in one place: the size of the embedded variant does not matter.
#[allow(clippy::large_enum_variant)]
pub enum BackendConfig {
    /// One machine, no cloud account: SQLite for the stream, checkpoints and sessions, a local
    /// folder for the lake.
    Embedded {
        /// Holds `retailmind.db` and `lake/`.
        #[serde(default = "default_data_dir")]
        data_dir: PathBuf,
        /// Hours the event log keeps a record, as a Kinesis stream's retention period: older
        /// records are deleted whether or not a processor read them (the processor counts those
        /// it missed in `stream_records_expired_unread_total`). Sessions, the lake and dead
        /// letters are kept.
        #[serde(default = "default_stream_retention_hours")]
        stream_retention_hours: u32,
    },
    /// Amazon Kinesis, DynamoDB and Kinesis Data Firehose.
    Aws(AwsConfig),
}

impl Default for BackendConfig {
    fn default() -> Self {
        BackendConfig::embedded_at(default_data_dir())
    }
}

impl BackendConfig {
    /// The embedded backend in `data_dir`, with its default retention.
    pub fn embedded_at(data_dir: impl Into<PathBuf>) -> Self {
        BackendConfig::Embedded {
            data_dir: data_dir.into(),
            stream_retention_hours: DEFAULT_STREAM_RETENTION_HOURS,
        }
    }

    /// The embedded backend's data folder; `None` on AWS.
    pub fn embedded_data_dir(&self) -> Option<&std::path::Path> {
        match self {
            BackendConfig::Embedded { data_dir, .. } => Some(data_dir),
            BackendConfig::Aws(_) => None,
        }
    }

    /// The first setting outside the range the backend can run with.
    pub fn check(&self) -> Result<(), OutOfRange> {
        match self {
            BackendConfig::Embedded {
                stream_retention_hours,
                ..
            } => check_ranges(&[(
                "backend.stream_retention_hours",
                i64::from(*stream_retention_hours),
                1,
                MAX_STREAM_RETENTION_HOURS,
            )]),
            BackendConfig::Aws(_) => Ok(()),
        }
    }
}

/// Ten years: longer than any log is worth keeping, short enough for the arithmetic in ms.
const MAX_STREAM_RETENTION_HOURS: i64 = 87_600;

fn default_data_dir() -> PathBuf {
    PathBuf::from(".retailmind")
}

/// The embedded log's retention unless configured: a week, so that a processor stopped over a
/// long weekend misses nothing, while a busy shop's log stays within a disk's reach.
pub const DEFAULT_STREAM_RETENTION_HOURS: u32 = 7 * 24;

fn default_stream_retention_hours() -> u32 {
    DEFAULT_STREAM_RETENTION_HOURS
}

/// A retention in hours, as a duration.
pub fn retention(hours: u32) -> std::time::Duration {
    std::time::Duration::from_secs(u64::from(hours) * 3600)
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AwsConfig {
    /// AWS region, e.g. `eu-central-1`. Credentials come from the usual AWS chain (environment,
    /// profile, instance or task role); they never appear in this file.
    #[serde(default = "default_region")]
    pub region: String,
    /// Another endpoint than AWS's (moto, LocalStack). Unset in production.
    #[serde(default)]
    pub endpoint_url: Option<String>,
    #[serde(default = "default_stream")]
    pub stream_name: String,
    /// Kinesis stream for events the collector rejected, with the reasons (the dead letters).
    #[serde(default = "default_bad_events_stream")]
    pub bad_events_stream: String,
    #[serde(default = "default_sessions_table")]
    pub sessions_table: String,
    /// Also the lease table: a shard's lease is its checkpoint item (see `aws::leases`).
    #[serde(default = "default_checkpoints_table")]
    pub checkpoints_table: String,
    /// The recommendation model's snapshot, in chunk items (see `aws::models`).
    #[serde(default = "default_models_table")]
    pub models_table: String,
    /// Days after a session's last event when DynamoDB deletes it (TTL attribute
    /// `expires_at`, epoch seconds, enabled by `provision`). Unset: sessions are kept.
    #[serde(default)]
    pub session_ttl_days: Option<u32>,
    /// Firehose delivery stream for lake events (S3 prefix `events/`).
    #[serde(default = "default_delivery_stream")]
    pub delivery_stream: String,
    /// Firehose delivery stream for undecodable records (S3 prefix `errors/`). Unset, it is
    /// `<delivery_stream>-errors`; see
    /// [`errors_delivery_stream`](crate::aws::errors_delivery_stream).
    #[serde(default)]
    pub errors_delivery_stream: Option<String>,
    /// Longest wait, in seconds, for one attempt of an AWS call; the SDK retries a timed-out
    /// attempt like a throttled one, and a call with its retries gives up after about three
    /// times this. Without a bound, a call that gets no answer holds its caller for good: a
    /// collector request neither answered nor spooled, a shard that stops.
    #[serde(default = "default_call_timeout_secs")]
    pub call_timeout_secs: u64,
}

fn default_call_timeout_secs() -> u64 {
    10
}

fn default_region() -> String {
    "us-east-1".into()
}
fn default_stream() -> String {
    "retailmind-events".into()
}
fn default_bad_events_stream() -> String {
    "retailmind-bad-events".into()
}
fn default_sessions_table() -> String {
    "retailmind-sessions".into()
}
fn default_checkpoints_table() -> String {
    "retailmind-checkpoints".into()
}
fn default_models_table() -> String {
    "retailmind-models".into()
}
fn default_delivery_stream() -> String {
    "retailmind-lake".into()
}

impl AwsConfig {
    /// Defaults for every name, in `region`.
    pub fn new(region: impl Into<String>) -> Self {
        AwsConfig {
            region: region.into(),
            endpoint_url: None,
            stream_name: default_stream(),
            bad_events_stream: default_bad_events_stream(),
            sessions_table: default_sessions_table(),
            checkpoints_table: default_checkpoints_table(),
            models_table: default_models_table(),
            session_ttl_days: None,
            delivery_stream: default_delivery_stream(),
            errors_delivery_stream: None,
            call_timeout_secs: default_call_timeout_secs(),
        }
    }
}

/// [`Limits`] as configuration (`[validation]`): the collector judges events by them, and the
/// lake job reads them too, so that it does not judge by other limits than the collector's (it
/// quarantines, besides, the events of days it closed: `late_window_hours`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ValidationLimits {
    pub max_id_len: usize,
    pub max_url_len: usize,
    pub max_text_len: usize,
    pub max_items: usize,
    pub max_props_depth: usize,
    pub max_future_skew_secs: i64,
    pub max_age_days: i64,
}

impl Default for ValidationLimits {
    fn default() -> Self {
        let l = Limits::default();
        ValidationLimits {
            max_id_len: l.max_id_len,
            max_url_len: l.max_url_len,
            max_text_len: l.max_text_len,
            max_items: l.max_items,
            max_props_depth: l.max_props_depth,
            max_future_skew_secs: l.max_future_skew_ms / 1000,
            max_age_days: l.max_age_ms / 86_400_000,
        }
    }
}

/// The longest id: ids are Kinesis partition keys, at most 256 characters, and a longer one
/// fails the whole request's PutRecords, every time it is retried.
pub const MAX_PARTITION_KEY_CHARS: i64 = 256;

impl ValidationLimits {
    /// The first limit outside what can be run with (the collector and the lake job both check).
    pub fn check(&self) -> Result<(), OutOfRange> {
        let count = crate::settings::count;
        check_ranges(&[
            (
                "validation.max_id_len",
                count(self.max_id_len),
                1,
                MAX_PARTITION_KEY_CHARS,
            ),
            ("validation.max_url_len", count(self.max_url_len), 1, 65_536),
            // The purchase events of orders carry a library name of 23 bytes.
            (
                "validation.max_text_len",
                count(self.max_text_len),
                32,
                65_536,
            ),
            ("validation.max_items", count(self.max_items), 1, 10_000),
            (
                "validation.max_props_depth",
                count(self.max_props_depth),
                1,
                64,
            ),
            (
                "validation.max_future_skew_secs",
                self.max_future_skew_secs,
                0,
                366 * 86_400,
            ),
            ("validation.max_age_days", self.max_age_days, 1, 3660),
        ])
    }
}

/// Saturating: [`ValidationLimits::check`] keeps the figures far from overflow where it runs.
impl From<&ValidationLimits> for Limits {
    fn from(v: &ValidationLimits) -> Self {
        Limits {
            max_id_len: v.max_id_len,
            max_url_len: v.max_url_len,
            max_text_len: v.max_text_len,
            max_items: v.max_items,
            max_props_depth: v.max_props_depth,
            max_future_skew_ms: v.max_future_skew_secs.saturating_mul(1000),
            max_age_ms: v.max_age_days.saturating_mul(86_400_000),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_retention_is_read_and_checked() {
        use figment::providers::{Format, Toml};
        let read: BackendConfig = figment::Figment::from(Toml::string(
            "kind = \"embedded\"\ndata_dir = \"/var/lib/retailmind\"\nstream_retention_hours = 24",
        ))
        .extract()
        .unwrap();
        assert_eq!(
            read,
            BackendConfig::Embedded {
                data_dir: "/var/lib/retailmind".into(),
                stream_retention_hours: 24,
            }
        );
        assert_eq!(read.check(), Ok(()));
        assert_eq!(BackendConfig::default().check(), Ok(()));
        for hours in [0, 87_601] {
            let config = BackendConfig::Embedded {
                data_dir: ".".into(),
                stream_retention_hours: hours,
            };
            assert_eq!(
                config.check().unwrap_err().to_string(),
                format!(
                    "backend.stream_retention_hours is {hours}: it must be between 1 and 87600"
                )
            );
        }
    }
}
