use thiserror::Error;

/// What went wrong at an edge, in the terms the callers act on.
#[derive(Debug, Error)]
pub enum ConnectorError {
    /// The service refused for now (throughput exceeded, rate limited); retry after a backoff.
    #[error("throttled by {service}: {detail}")]
    Throttled {
        service: &'static str,
        detail: String,
    },
    /// The service could not be reached or failed; retry later.
    #[error("{service} unavailable: {detail}")]
    Unavailable {
        service: &'static str,
        detail: String,
    },
    /// A conditional write lost against another writer; re-read and try again.
    #[error("conflicting write to {what}")]
    Conflict { what: String },
    /// Stored data could not be decoded.
    #[error("corrupt data in {what}: {detail}")]
    Corrupt { what: String, detail: String },
    /// A resource (stream, table, bucket) does not exist or is misconfigured.
    #[error("{0}")]
    Misconfigured(String),
}

pub type Result<T, E = ConnectorError> = std::result::Result<T, E>;

impl ConnectorError {
    pub fn unavailable(service: &'static str, detail: impl std::fmt::Display) -> Self {
        ConnectorError::Unavailable {
            service,
            detail: detail.to_string(),
        }
    }

    /// Whether retrying the same call later can succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ConnectorError::Throttled { .. }
                | ConnectorError::Unavailable { .. }
                | ConnectorError::Conflict { .. }
        )
    }
}
