use std::net::SocketAddr;

use retailmind_connectors::BackendConfig;
use serde::{Deserialize, Serialize};

/// The collector's configuration (see `retailmind_connectors::settings::load`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default)]
pub struct CollectorConfig {
    /// Address to listen on (`RETAILMIND_LISTEN`).
    pub listen: SocketAddr,
    pub backend: BackendConfig,
    /// Origins whose pages may send events from the browser; empty allows every origin.
    pub allowed_origins: Vec<String>,
    /// Largest request body accepted, in bytes (413 beyond).
    pub max_body_bytes: usize,
    /// Most events in one batch (400 beyond).
    pub max_events_per_batch: usize,
}

impl Default for CollectorConfig {
    fn default() -> Self {
        CollectorConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8700)),
            backend: BackendConfig::default(),
            allowed_origins: Vec::new(),
            max_body_bytes: 1024 * 1024,
            max_events_per_batch: 500,
        }
    }
}
