use retailmind_commerce::CommerceConfig;
use retailmind_connectors::settings::{check_ranges, count, OutOfRange};
use retailmind_connectors::BackendConfig;
use retailmind_schema::SESSION_EVENTS_LIMIT;
use serde::{Deserialize, Serialize};

use crate::sessionize::SessionRules;

/// The processor's configuration (see `retailmind_connectors::settings::load`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default)]
pub struct ProcessorConfig {
    pub backend: BackendConfig,
    /// Name under which checkpoints are kept; two processors with the same name share the work.
    pub consumer: String,
    /// Records read from a shard at once (Kinesis allows up to 10,000), and the most a batch
    /// window gathers.
    pub batch_size: usize,
    /// Longest time a shard's reads are gathered into one batch before it is written (sessions,
    /// lake, model, checkpoint), counted from the first read; sooner when `batch_size` records
    /// are gathered or the shard ended. 0, the default: each read is written at once. As the
    /// Lambda event source mapping's batching window (which the Lambda handler has instead of
    /// this): on a stream read live, a visitor's events within one window make one session
    /// snapshot, and a shard costs one checkpoint write and one lake file per partition per
    /// window instead of per read, at the cost of sessions and the model that much later, and
    /// of that much read again after a crash. While a window is open its shard is read every
    /// `idle_poll_ms`. A stop writes what was gathered or read ahead of the shards still held
    /// and not asked for by another instance; a lease lost or handed over drops it for the
    /// next holder.
    pub batch_window_ms: u64,
    /// Pause after a poll that found nothing new. Unset means 1000 ms on AWS, as the KCL does:
    /// a shard answers 5 reads a second to all the stream's consumers together, and an idle
    /// processor polling 5 times a second would take them all. 200 ms on the embedded log.
    pub idle_poll_ms: Option<u64>,
    /// Least time from the end of one read of a shard to the start of the next. Kinesis allows
    /// 5 GetRecords per second per shard, so unset means 200 ms on AWS and no pause on the
    /// embedded log.
    pub min_read_interval_ms: Option<u64>,
    /// Minutes of inactivity that end a session.
    pub session_inactivity_minutes: i64,
    /// Hours after which a session is cut however active it is.
    pub session_max_hours: i64,
    /// Events after which a session is cut however active it is. Bounds a session's stored size
    /// (its event ids must fit one DynamoDB item) and the work each new event costs.
    pub session_max_events: std::num::NonZeroU32,
    /// Hours an event may reach the collector after it happened and still be merged into its
    /// session (a tracker's queue delivers a visit's last events when the shopper comes back).
    /// A later event stays in the lake but changes no session: it could otherwise reopen a
    /// session the store has expired (TTL) or that dashboards have reported as closed.
    /// Lateness is arrival time minus the event's own timestamp, so a device whose clock runs
    /// behind by more than this has all its events kept out of sessions (the collector refuses
    /// clocks that run ahead, not behind); raise it where that matters more than the bound.
    pub session_lateness_hours: i64,
    /// This instance's name in the lease table. Unset: `processor-<pid>-<uuid>`, new on every
    /// start. Set it only to something no other running instance uses; an instance restarted
    /// with the same id takes its old leases back at once instead of waiting for them to
    /// expire.
    pub instance_id: Option<String>,
    /// A lease whose counter has not moved for this long belongs to a dead instance and is
    /// taken over (at the next lease round: the shards are listed and the lease table read
    /// every half of it); leases are renewed three times within it.
    pub lease_duration_ms: u64,
    /// Name of the recommendation model in the model store (the collector reads the same name).
    pub model_name: String,
    /// Least time between two saves of a changed model. The collector reloads within its own
    /// poll interval after a save, so this bounds how stale other shoppers' signals are.
    pub model_save_interval_ms: u64,
    /// Where to serve `GET /metrics` (Prometheus) and `GET /healthz`; unset, no server.
    pub metrics_listen: Option<String>,
    /// The orders and customers database whose profiles the processor keeps current (the
    /// collector's `[commerce]` too). Unset on AWS: profiles are not updated.
    pub commerce: CommerceConfig,
}

impl ProcessorConfig {
    /// The processor as configured: over `backend`, with customer profiles when an orders
    /// database is configured (by default SQLite in the embedded backend's folder).
    pub async fn processor(
        &self,
        backend: retailmind_connectors::Backend,
    ) -> Result<crate::Processor, retailmind_commerce::CommerceError> {
        let processor = crate::Processor::new(backend, self);
        Ok(
            match self.commerce.open(self.backend.embedded_data_dir()).await? {
                Some(store) => processor.with_profiles(store),
                None => processor,
            },
        )
    }
}

/// The model name both the processor and the collector use unless configured otherwise.
pub const DEFAULT_MODEL_NAME: &str = "recommendations";

impl Default for ProcessorConfig {
    fn default() -> Self {
        ProcessorConfig {
            backend: BackendConfig::default(),
            consumer: "retailmind-processor".into(),
            batch_size: 500,
            batch_window_ms: 0,
            idle_poll_ms: None,
            min_read_interval_ms: None,
            session_inactivity_minutes: 30,
            session_max_hours: 12,
            session_max_events: std::num::NonZeroU32::new(SessionRules::default().max_events)
                .expect("the default cap is not zero"),
            session_lateness_hours: 72,
            instance_id: None,
            lease_duration_ms: 10_000,
            model_name: DEFAULT_MODEL_NAME.into(),
            model_save_interval_ms: 250,
            metrics_listen: Some("127.0.0.1:8702".into()),
            commerce: CommerceConfig::default(),
        }
    }
}

/// A setting the processor cannot run with, named as in `retailmind.toml`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error(transparent)]
    OutOfRange(#[from] OutOfRange),
    #[error("{0} is empty: it must name something")]
    Empty(&'static str),
    #[error(
        "backend.session_ttl_days is {ttl_days} ({} hours), not longer than \
         session_lateness_hours ({lateness_hours}): a late event would open a new session where \
         DynamoDB already deleted its own",
        u64::from(*ttl_days) * 24
    )]
    TtlWithinLateness { ttl_days: u32, lateness_hours: i64 },
}

/// Kinesis's least gap between two reads of a shard, in the settings' unit.
const KINESIS_READ_GAP_MS: u64 = retailmind_connectors::aws::KINESIS_READ_GAP.as_millis() as u64;

/// Largest values of the session settings: beyond them a session is no longer a visit, and the
/// milliseconds they come to must not overflow.
const MAX_INACTIVITY_MINUTES: i64 = 24 * 60;
const MAX_SESSION_HOURS: i64 = 7 * 24;
const MAX_LATENESS_HOURS: i64 = 366 * 24;
/// Kinesis's own limit on records per GetRecords call.
const MAX_BATCH_SIZE: i64 = 10_000;
/// Longest pause between polls or model saves: beyond a minute the stream's tip and other
/// shoppers' signals fall too far behind.
const MAX_PAUSE_MS: i64 = 60_000;
/// Longest batch window: the Lambda event source mapping's.
const MAX_BATCH_WINDOW_MS: i64 = 300_000;

impl ProcessorConfig {
    /// The first setting the processor could not run sensibly with; run at start so that a
    /// typo stops the service with the field's name instead of misbehaving.
    pub fn check(&self) -> Result<(), ConfigError> {
        self.backend.check()?;
        check_ranges(&[
            ("batch_size", count(self.batch_size), 1, MAX_BATCH_SIZE),
            (
                "batch_window_ms",
                count(self.batch_window_ms),
                0,
                MAX_BATCH_WINDOW_MS,
            ),
            (
                "session_inactivity_minutes",
                self.session_inactivity_minutes,
                1,
                MAX_INACTIVITY_MINUTES,
            ),
            (
                "session_max_hours",
                self.session_max_hours,
                1,
                MAX_SESSION_HOURS,
            ),
            (
                "session_lateness_hours",
                self.session_lateness_hours,
                0,
                MAX_LATENESS_HOURS,
            ),
            (
                "session_max_events",
                count(self.session_max_events.get()),
                1,
                i64::from(SESSION_EVENTS_LIMIT),
            ),
            (
                "lease_duration_ms",
                count(self.lease_duration_ms),
                1,
                i64::MAX,
            ),
            // 0 would spin a core on an idle stream.
            (
                "idle_poll_ms",
                count(self.idle_poll().as_millis()),
                1,
                MAX_PAUSE_MS,
            ),
            (
                "model_save_interval_ms",
                count(self.model_save_interval_ms),
                0,
                MAX_PAUSE_MS,
            ),
        ])?;
        if let Some(interval) = self.min_read_interval_ms {
            // Kinesis allows 5 GetRecords per second per shard; faster is throttled.
            let least = self.per_backend(None, KINESIS_READ_GAP_MS, 0);
            check_ranges(&[(
                "min_read_interval_ms",
                count(interval),
                count(least.as_millis()),
                MAX_PAUSE_MS,
            )])?;
        }
        for (field, value) in [
            ("consumer", &self.consumer),
            ("model_name", &self.model_name),
        ] {
            if value.trim().is_empty() {
                return Err(ConfigError::Empty(field));
            }
        }
        if let BackendConfig::Aws(aws) = &self.backend {
            if let Some(ttl_days) = aws.session_ttl_days {
                if i64::from(ttl_days) * 24 <= self.session_lateness_hours {
                    return Err(ConfigError::TtlWithinLateness {
                        ttl_days,
                        lateness_hours: self.session_lateness_hours,
                    });
                }
            }
        }
        Ok(())
    }

    /// The pause after a poll that found nothing new (see `idle_poll_ms`).
    pub fn idle_poll(&self) -> std::time::Duration {
        self.per_backend(self.idle_poll_ms, 1000, 200)
    }

    /// See `batch_window_ms`.
    pub fn batch_window(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.batch_window_ms)
    }

    pub fn min_read_interval(&self) -> std::time::Duration {
        self.per_backend(self.min_read_interval_ms, KINESIS_READ_GAP_MS, 0)
    }

    /// `set` milliseconds, or else the backend's default: `aws` or `embedded`.
    fn per_backend(&self, set: Option<u64>, aws: u64, embedded: u64) -> std::time::Duration {
        let default = match self.backend {
            BackendConfig::Aws(_) => aws,
            BackendConfig::Embedded { .. } => embedded,
        };
        std::time::Duration::from_millis(set.unwrap_or(default))
    }

    /// The configured instance id, or a new unique one.
    pub fn instance_id(&self) -> String {
        self.instance_id
            .clone()
            .unwrap_or_else(|| format!("processor-{}-{}", std::process::id(), uuid::Uuid::now_v7()))
    }

    pub fn session_rules(&self) -> SessionRules {
        SessionRules {
            inactivity_ms: self.session_inactivity_minutes * 60_000,
            max_duration_ms: self.session_max_hours * 3_600_000,
            allowed_lateness_ms: self.session_lateness_hours * 3_600_000,
            max_events: self.session_max_events.get(),
        }
    }
}

#[cfg(test)]
mod tests {
    use retailmind_connectors::AwsConfig;

    use super::*;

    #[test]
    fn every_setting_is_known_to_the_shared_file() {
        // The file every binary reads refuses keys no binary knows.
        assert_eq!(
            retailmind_connectors::settings::unlisted_settings::<ProcessorConfig>(),
            Vec::<String>::new()
        );
    }

    #[test]
    fn the_defaults_pass_the_check() {
        assert_eq!(ProcessorConfig::default().check(), Ok(()));
    }

    #[test]
    fn a_setting_out_of_range_is_named_with_its_bounds() {
        let config = ProcessorConfig {
            session_inactivity_minutes: 0,
            ..ProcessorConfig::default()
        };
        let error = config.check().unwrap_err();
        assert_eq!(
            error.to_string(),
            "session_inactivity_minutes is 0: it must be between 1 and 1440"
        );
        let config = ProcessorConfig {
            batch_size: 20_000,
            ..ProcessorConfig::default()
        };
        assert!(matches!(
            config.check(),
            Err(ConfigError::OutOfRange(OutOfRange {
                field: "batch_size",
                ..
            }))
        ));
        let config = ProcessorConfig {
            session_max_events: std::num::NonZeroU32::new(100_000).unwrap(),
            ..ProcessorConfig::default()
        };
        assert_eq!(
            config.check().unwrap_err().to_string(),
            "session_max_events is 100000: it must be between 1 and 8000"
        );
        let config = ProcessorConfig {
            session_lateness_hours: -1,
            ..ProcessorConfig::default()
        };
        assert!(matches!(
            config.check(),
            Err(ConfigError::OutOfRange(OutOfRange {
                field: "session_lateness_hours",
                ..
            }))
        ));
    }

    #[test]
    fn an_idle_processor_on_aws_leaves_most_of_a_shards_reads_to_other_consumers() {
        let on = |backend| ProcessorConfig {
            backend,
            ..ProcessorConfig::default()
        };
        let aws = on(BackendConfig::Aws(AwsConfig::new("us-east-1")));
        assert_eq!(aws.idle_poll(), std::time::Duration::from_secs(1));
        assert_eq!(
            on(ProcessorConfig::default().backend).idle_poll(),
            std::time::Duration::from_millis(200)
        );
        let set = ProcessorConfig {
            idle_poll_ms: Some(300),
            ..aws
        };
        assert_eq!(set.idle_poll(), std::time::Duration::from_millis(300));
    }

    #[test]
    fn polling_faster_than_kinesis_allows_or_not_at_all_is_refused() {
        let config = |backend, min_read_interval_ms, idle_poll_ms| ProcessorConfig {
            backend,
            min_read_interval_ms,
            idle_poll_ms,
            ..ProcessorConfig::default()
        };
        let aws = || BackendConfig::Aws(AwsConfig::new("us-east-1"));
        let embedded = || ProcessorConfig::default().backend;
        assert_eq!(
            config(aws(), Some(50), Some(100))
                .check()
                .unwrap_err()
                .to_string(),
            "min_read_interval_ms is 50: it must be between 200 and 60000"
        );
        assert_eq!(config(aws(), Some(200), Some(100)).check(), Ok(()));
        assert_eq!(config(embedded(), Some(0), Some(100)).check(), Ok(()));
        assert_eq!(
            config(embedded(), None, Some(0))
                .check()
                .unwrap_err()
                .to_string(),
            "idle_poll_ms is 0: it must be between 1 and 60000"
        );
        let slow_saves = ProcessorConfig {
            model_save_interval_ms: 3_600_000,
            ..ProcessorConfig::default()
        };
        assert!(matches!(
            slow_saves.check(),
            Err(ConfigError::OutOfRange(OutOfRange {
                field: "model_save_interval_ms",
                ..
            }))
        ));
    }

    #[test]
    fn a_batch_window_longer_than_lambdas_is_refused() {
        let window = |batch_window_ms| ProcessorConfig {
            batch_window_ms,
            ..ProcessorConfig::default()
        };
        assert_eq!(window(300_000).check(), Ok(()));
        assert_eq!(
            window(300_001).check().unwrap_err().to_string(),
            "batch_window_ms is 300001: it must be between 0 and 300000"
        );
    }

    #[test]
    fn an_empty_consumer_name_is_refused() {
        let config = ProcessorConfig {
            consumer: " ".into(),
            ..ProcessorConfig::default()
        };
        assert_eq!(config.check(), Err(ConfigError::Empty("consumer")));
    }

    #[test]
    fn a_session_ttl_within_the_lateness_is_refused() {
        let on_aws = |ttl_days| ProcessorConfig {
            backend: BackendConfig::Aws(AwsConfig {
                session_ttl_days: Some(ttl_days),
                ..AwsConfig::new("us-east-1")
            }),
            ..ProcessorConfig::default()
        };
        // 72 hours of lateness by default: 3 days is not longer, 4 are.
        let error = on_aws(3).check().unwrap_err();
        assert_eq!(
            error,
            ConfigError::TtlWithinLateness {
                ttl_days: 3,
                lateness_hours: 72
            }
        );
        assert!(error
            .to_string()
            .contains("backend.session_ttl_days is 3 (72 hours)"));
        assert_eq!(on_aws(4).check(), Ok(()));
    }
}
