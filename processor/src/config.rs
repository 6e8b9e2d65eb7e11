use retailmind_commerce::CommerceConfig;
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
    /// taken over; leases are renewed three times within it.
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
            idle_poll_ms: 200,
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

impl ProcessorConfig {
    pub fn min_read_interval(&self) -> std::time::Duration {
        let default = match self.backend {
            BackendConfig::Aws(_) => 200,
            BackendConfig::Embedded { .. } => 0,
        };
        std::time::Duration::from_millis(self.min_read_interval_ms.unwrap_or(default))
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
