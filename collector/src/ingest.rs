//! `POST /v1/batch`: decode, validate each event on its own, append the good ones to the stream,
//! and answer with what was accepted and why each rejected event was refused.
//!
//! The answer is 200 only after the sink confirmed a durable write of every accepted event; if it
//! cannot, the answer is 503 with Retry-After and the sender keeps its queue.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::Json;
use bytes::Bytes;
use retailmind_connectors::StreamRecord;
use retailmind_schema::{partition_key, validate, Event, FieldError};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::error::CollectorError;
use crate::router::AppState;

/// The batch as it arrives: events stay raw so each one is decoded and judged on its own.
#[derive(Deserialize)]
struct BatchEnvelope<'a> {
    batch_id: Uuid,
    #[serde(default)]
    #[allow(dead_code)] // part of the wire format; clock-skew correction will use it
    sent_at: Option<i64>,
    #[serde(borrow)]
    events: Vec<&'a RawValue>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct BatchResponse {
    pub batch_id: Uuid,
    pub accepted: usize,
    pub rejected: Vec<RejectedEvent>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct RejectedEvent {
    /// Position of the event in the batch's `events` array.
    pub index: usize,
    pub errors: Vec<RejectedField>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct RejectedField {
    pub field: String,
    pub reason: String,
}

impl From<FieldError> for RejectedField {
    fn from(e: FieldError) -> Self {
        RejectedField {
            field: e.field,
            reason: e.violation.to_string(),
        }
    }
}

pub async fn post_batch(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<BatchResponse>, CollectorError> {
    check_content_type(&headers)?;
    let body = read_body(body, state.max_body_bytes).await?;
    let envelope: BatchEnvelope =
        serde_json::from_slice(&body).map_err(|e| CollectorError::MalformedBatch(e.to_string()))?;
    if envelope.events.len() > state.max_events_per_batch {
        return Err(CollectorError::TooManyEvents {
            max: state.max_events_per_batch,
            got: envelope.events.len(),
        });
    }

    let now = now_ms();
    let mut records = Vec::with_capacity(envelope.events.len());
    let mut rejected = Vec::new();
    for (index, raw) in envelope.events.iter().enumerate() {
        match accept_event(raw, &state, now) {
            Ok(record) => records.push(record),
            Err(errors) => rejected.push(RejectedEvent { index, errors }),
        }
    }
    if !rejected.is_empty() {
        tracing::info!(batch_id = %envelope.batch_id, rejected = rejected.len(), "events rejected");
    }

    let accepted = records.len();
    state
        .sink
        .append(records)
        .await
        .map_err(CollectorError::SinkUnavailable)?;
    Ok(Json(BatchResponse {
        batch_id: envelope.batch_id,
        accepted,
        rejected,
    }))
}

/// Decodes and validates one event and turns it into a stream record stamped with the
/// collector's receive time.
fn accept_event(
    raw: &RawValue,
    state: &AppState,
    now: i64,
) -> Result<StreamRecord, Vec<RejectedField>> {
    let mut de = serde_json::Deserializer::from_str(raw.get());
    let mut event: Event = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let field = match e.path().to_string() {
            p if p == "." => "event".to_owned(),
            p => p,
        };
        vec![RejectedField {
            field,
            reason: e.into_inner().to_string(),
        }]
    })?;
    validate(&event, &state.limits, now).map_err(|errors| {
        errors
            .into_iter()
            .map(RejectedField::from)
            .collect::<Vec<_>>()
    })?;
    event.received_at = Some(now);
    // Server-side fields are never taken from the client.
    event.context.ip = None;
    let data = serde_json::to_vec(&event).map_err(|e| {
        vec![RejectedField {
            field: "event".into(),
            reason: e.to_string(),
        }]
    })?;
    Ok(StreamRecord {
        partition_key: partition_key(&event).to_owned(),
        data: Bytes::from(data),
    })
}

/// JSON, or text/plain (what browsers send without a CORS preflight), or nothing.
fn check_content_type(headers: &HeaderMap) -> Result<(), CollectorError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let text = value.to_str().unwrap_or_default();
    let mime = text.split(';').next().unwrap_or_default().trim();
    if mime.eq_ignore_ascii_case("application/json") || mime.eq_ignore_ascii_case("text/plain") {
        Ok(())
    } else {
        Err(CollectorError::UnsupportedContentType(text.to_owned()))
    }
}

async fn read_body(body: Body, limit: usize) -> Result<Bytes, CollectorError> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        // axum reports an over-long body as a length-limit error in its source chain.
        let too_large = std::error::Error::source(&e)
            .map(|s| s.to_string().contains("length limit"))
            .unwrap_or(false)
            || e.to_string().contains("length limit");
        if too_large {
            CollectorError::BodyTooLarge { limit }
        } else {
            CollectorError::BodyUnreadable(e.to_string())
        }
    })
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
