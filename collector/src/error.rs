//! Every way a request can fail, mapped to one status code and one JSON body, here only.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use retailmind_commerce::{CommerceError, Problem};
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
    /// Every refused field of an order or traits document, with why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<Problem>,
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
    #[error("the event stream did not acknowledge within {secs} s; retry with the same batch")]
    WriteTimedOut { secs: u64 },
    #[error("the event stream cannot take events right now: {0}")]
    SinkUnavailable(#[source] ConnectorError),
    #[error("header {field}: {reason}")]
    InvalidHeader { field: &'static str, reason: String },
    #[error("orders and customer profiles are not configured on this collector (set commerce.database_url)")]
    CommerceNotConfigured,
    #[error(transparent)]
    Commerce(#[from] CommerceError),
    #[error("the collector serves no {method} {path} (its endpoints are in /openapi.json)")]
    NoSuchRoute { method: String, path: String },
    #[error("{path} takes no {method}: the methods it takes are in the Allow header")]
    MethodNotAllowed { method: String, path: String },
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
            Overloaded
            | EventsInFlight
            | WriteTimedOut { .. }
            | SinkUnavailable(_)
            | CommerceNotConfigured => StatusCode::SERVICE_UNAVAILABLE,
            InvalidHeader { .. } => StatusCode::BAD_REQUEST,
            NoSuchRoute { .. } => StatusCode::NOT_FOUND,
            MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Commerce(e) => match e {
                CommerceError::Invalid(_) | CommerceError::IdempotencyKeyReused { .. } => {
                    StatusCode::UNPROCESSABLE_ENTITY
                }
                CommerceError::IllegalTransition { .. } | CommerceError::OrderExists { .. } => {
                    StatusCode::CONFLICT
                }
                CommerceError::NotFound { .. } => StatusCode::NOT_FOUND,
                CommerceError::Database(_) => StatusCode::SERVICE_UNAVAILABLE,
            },
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
            WriteTimedOut { .. } => "write_timed_out",
            SinkUnavailable(_) => "unavailable",
            InvalidHeader { .. } => "invalid_header",
            CommerceNotConfigured => "commerce_not_configured",
            NoSuchRoute { .. } => "no_such_route",
            MethodNotAllowed { .. } => "method_not_allowed",
            Commerce(e) => match e {
                CommerceError::Invalid(_) => "invalid_request",
                CommerceError::IllegalTransition { .. } => "illegal_status_change",
                CommerceError::NotFound { .. } => "not_found",
                CommerceError::IdempotencyKeyReused { .. } => "idempotency_key_reused",
                CommerceError::OrderExists { .. } => "order_exists",
                CommerceError::Database(_) => "database_unavailable",
            },
        }
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            CollectorError::RateLimited { retry_after_secs } => Some(*retry_after_secs),
            CollectorError::Overloaded
            | CollectorError::EventsInFlight
            | CollectorError::WriteTimedOut { .. }
            | CollectorError::SinkUnavailable(_)
            | CollectorError::Commerce(CommerceError::Database(_)) => Some(RETRY_AFTER_SECS),
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
        let code = self.code();
        let retry_after = self.retry_after();
        metrics::counter!(crate::metrics::REQUESTS_REFUSED, "reason" => code).increment(1);
        let message = match &self {
            // The driver's words can name hosts and users: they go to the log only.
            CollectorError::Commerce(CommerceError::Database(_)) => {
                "the order database is unavailable; retry with the same Idempotency-Key".into()
            }
            // The SDK's words name the stream's ARN and the account: log only, as above.
            CollectorError::SinkUnavailable(_) => {
                "the event stream cannot take events right now; retry with the same batch".into()
            }
            e => crate::ingest::clipped(e.to_string()),
        };
        let (field, problems) = match self {
            CollectorError::InvalidParameter { field, .. }
            | CollectorError::InvalidHeader { field, .. } => (Some(field.to_owned()), Vec::new()),
            CollectorError::Commerce(CommerceError::Invalid(problems)) => {
                (problems.first().map(|p| p.field.clone()), problems)
            }
            _ => (None, Vec::new()),
        };
        let body = Json(ErrorBody {
            error: ErrorDetail {
                code: code.to_owned(),
                message,
                field,
                problems,
            },
        });
        match retry_after {
            Some(secs) => (status, [(header::RETRY_AFTER, secs.to_string())], body).into_response(),
            None => (status, body).into_response(),
        }
    }
}
