use retailmind_connectors::BackendConfig;
use serde::{Deserialize, Serialize};

use crate::sessionize::SessionRules;

/// The processor's configuration (see `retailmind_connectors::settings::load`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default)]
pub struct ProcessorConfig {
    pub backend: BackendConfig,
    /// Name under which checkpoints are kept; two processors with the same name share the work.
    pub consumer: String,
    /// Records read from a shard at once (Kinesis allows up to 10,000).
    pub batch_size: usize,
    /// Pause after a read that found nothing new.
    pub idle_poll_ms: u64,
    /// Least time between two reads of one shard. Kinesis allows 5 GetRecords per second per
    /// shard, so unset means 200 ms on AWS and no pause on the embedded log.
    pub min_read_interval_ms: Option<u64>,
    /// Minutes of inactivity that end a session.
    pub session_inactivity_minutes: i64,
    /// Hours after which a session is cut however active it is.
    pub session_max_hours: i64,
}

impl Default for ProcessorConfig {
    fn default() -> Self {
        ProcessorConfig {
            backend: BackendConfig::default(),
            consumer: "retailmind-processor".into(),
            batch_size: 500,
            idle_poll_ms: 200,
            min_read_interval_ms: None,
            session_inactivity_minutes: 30,
            session_max_hours: 12,
        }
    }
}

impl ProcessorConfig {
    pub fn min_read_interval(&self) -> std::time::Duration {
        let default = match self.backend {
            BackendConfig::Aws(_) => 200,
            BackendConfig::Embedded { .. } => 0,
        };
        std::time::Duration::from_millis(self.min_read_interval_ms.unwrap_or(default))
    }

    pub fn session_rules(&self) -> SessionRules {
        SessionRules {
            inactivity_ms: self.session_inactivity_minutes * 60_000,
            max_duration_ms: self.session_max_hours * 3_600_000,
        }
    }
}
