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
    /// An append failed after storing some of its records: `stored` are their positions in
    /// the call, so a caller can count those as written and resend only the rest.
    #[error("{cause} ({} records were stored)", stored.len())]
    PartlyStored {
        stored: Vec<usize>,
        cause: Box<ConnectorError>,
    },
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
        match self {
            ConnectorError::PartlyStored { cause, .. } => cause.is_retryable(),
            e => matches!(
                e,
                ConnectorError::Throttled { .. }
                    | ConnectorError::Unavailable { .. }
                    | ConnectorError::Conflict { .. }
            ),
        }
    }

    /// Positions of the records an append stored before it failed (none for other errors).
    pub fn stored_positions(&self) -> &[usize] {
        match self {
            ConnectorError::PartlyStored { stored, .. } => stored,
            _ => &[],
        }
    }
}
