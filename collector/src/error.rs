//! Every way a request can fail, mapped to one status code and one JSON body, here only.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use retailmind_connectors::ConnectorError;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The body of every error answer.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable: `malformed_batch`, `unknown_key`, `rate_limited`, …
    pub code: String,
    /// What went wrong, for a person.
    pub message: String,
    /// The request parameter at fault, when one is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

#[derive(Debug, Error)]
pub enum CollectorError {
    #[error("the request body is larger than {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("the request body could not be read: {0}")]
    BodyUnreadable(String),
    #[error("content type {0:?} is not accepted; send application/json or text/plain")]
    UnsupportedContentType(String),
    #[error("content encoding {0:?} is not accepted; send gzip or none")]
    UnsupportedEncoding(String),
    #[error("the body is not a valid batch: {0}")]
    MalformedBatch(String),
    #[error("the batch has {got} events, at most {max} are accepted per request")]
    TooManyEvents { max: usize, got: usize },
    #[error("a write key is required: pass it as ?key=, X-Write-Key, or Basic auth user name")]
    MissingKey,
    #[error("the write key is not known")]
    UnknownKey,
    #[error("this endpoint needs a secret (server-to-server) key")]
    SecretKeyRequired,
    #[error("origin {origin:?} is not allowed for this write key")]
    OriginNotAllowed { origin: String },
    #[error("query parameter {field}: {reason}")]
    InvalidParameter { field: &'static str, reason: String },
    #[error("too many requests; retry after {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    #[error("the collector is at capacity; retry shortly")]
    Overloaded,
    #[error("another request is still writing some of these events; retry")]
    EventsInFlight,
    #[error("the event stream cannot take events right now: {0}")]
    SinkUnavailable(#[source] ConnectorError),
}

/// Seconds a client should wait before retrying when the stream is unavailable or we are full.
const RETRY_AFTER_SECS: u64 = 5;

impl CollectorError {
    fn status(&self) -> StatusCode {
        use CollectorError::*;
        match self {
            BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            BodyUnreadable(_)
            | MalformedBatch(_)
            | TooManyEvents { .. }
            | InvalidParameter { .. } => StatusCode::BAD_REQUEST,
            UnsupportedContentType(_) | UnsupportedEncoding(_) => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            MissingKey | UnknownKey => StatusCode::UNAUTHORIZED,
            SecretKeyRequired | OriginNotAllowed { .. } => StatusCode::FORBIDDEN,
            RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Overloaded | EventsInFlight | SinkUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// A stable, machine-readable name for the error.
    pub fn code(&self) -> &'static str {
        use CollectorError::*;
        match self {
            BodyTooLarge { .. } => "body_too_large",
            BodyUnreadable(_) => "body_unreadable",
            UnsupportedContentType(_) => "unsupported_content_type",
            UnsupportedEncoding(_) => "unsupported_encoding",
            MalformedBatch(_) => "malformed_batch",
            TooManyEvents { .. } => "too_many_events",
            MissingKey => "missing_key",
            UnknownKey => "unknown_key",
            SecretKeyRequired => "secret_key_required",
            OriginNotAllowed { .. } => "origin_not_allowed",
            InvalidParameter { .. } => "invalid_parameter",
            RateLimited { .. } => "rate_limited",
            Overloaded => "overloaded",
            EventsInFlight => "events_in_flight",
            SinkUnavailable(_) => "unavailable",
        }
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            CollectorError::RateLimited { retry_after_secs } => Some(*retry_after_secs),
            CollectorError::Overloaded
            | CollectorError::EventsInFlight
            | CollectorError::SinkUnavailable(_) => Some(RETRY_AFTER_SECS),
            _ => None,
        }
    }
}

impl IntoResponse for CollectorError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(error = %self, "request failed");
        }
        metrics::counter!(crate::metrics::REQUESTS_REFUSED, "reason" => self.code()).increment(1);
        let body = Json(ErrorBody {
            error: ErrorDetail {
                code: self.code().to_owned(),
                message: self.to_string(),
                field: match &self {
                    CollectorError::InvalidParameter { field, .. } => Some((*field).to_owned()),
                    _ => None,
                },
            },
        });
        match self.retry_after() {
            Some(secs) => (status, [(header::RETRY_AFTER, secs.to_string())], body).into_response(),
            None => (status, body).into_response(),
        }
    }
}
