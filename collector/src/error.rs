//! Every way a request can fail, mapped to one status code and one JSON body, here only.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use retailmind_connectors::ConnectorError;
use serde_json::json;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum CollectorError {
    #[error("the request body is larger than {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("the request body could not be read: {0}")]
    BodyUnreadable(String),
    #[error("content type {0:?} is not accepted; send application/json or text/plain")]
    UnsupportedContentType(String),
    #[error("the body is not a valid batch: {0}")]
    MalformedBatch(String),
    #[error("the batch has {got} events, at most {max} are accepted per request")]
    TooManyEvents { max: usize, got: usize },
    #[error("the event stream cannot take events right now: {0}")]
    SinkUnavailable(#[source] ConnectorError),
}

impl CollectorError {
    fn status(&self) -> StatusCode {
        match self {
            CollectorError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            CollectorError::BodyUnreadable(_) | CollectorError::MalformedBatch(_) => {
                StatusCode::BAD_REQUEST
            }
            CollectorError::UnsupportedContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            CollectorError::TooManyEvents { .. } => StatusCode::BAD_REQUEST,
            CollectorError::SinkUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// A stable, machine-readable name for the error.
    fn code(&self) -> &'static str {
        match self {
            CollectorError::BodyTooLarge { .. } => "body_too_large",
            CollectorError::BodyUnreadable(_) => "body_unreadable",
            CollectorError::UnsupportedContentType(_) => "unsupported_content_type",
            CollectorError::MalformedBatch(_) => "malformed_batch",
            CollectorError::TooManyEvents { .. } => "too_many_events",
            CollectorError::SinkUnavailable(_) => "unavailable",
        }
    }
}

/// Seconds a client should wait before retrying when the stream is unavailable.
const RETRY_AFTER_SECS: &str = "5";

impl IntoResponse for CollectorError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(error = %self, "request failed");
        }
        let body = Json(json!({ "error": { "code": self.code(), "message": self.to_string() } }));
        match self {
            CollectorError::SinkUnavailable(_) => {
                (status, [(header::RETRY_AFTER, RETRY_AFTER_SECS)], body).into_response()
            }
            _ => (status, body).into_response(),
        }
    }
}
