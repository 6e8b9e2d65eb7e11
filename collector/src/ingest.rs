//! The ingestion core shared by every endpoint: judge each event on its own, enrich the good
//! ones server-side, append them to the stream, send the rejected ones with their reasons to the
//! dead letters, and answer only after both writes are durable.

use std::net::IpAddr;
use std::time::Instant;

use bytes::Bytes;
use retailmind_connectors::clock::now_ms;
use retailmind_connectors::StreamRecord;
use retailmind_schema::record::{enrich, ServerFields};
use retailmind_schema::wire::{unknown_fields, RawEvent};
use retailmind_schema::{partition_key, validate, Event, FieldError};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tracing::Instrument;
use uuid::Uuid;

use crate::access::Caller;
use crate::client_ip::truncate;
use crate::config::UnknownFields;
use crate::error::CollectorError;
use crate::metrics as m;
use crate::router::AppState;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct BatchResponse {
    pub batch_id: Uuid,
    pub accepted: usize,
    pub rejected: Vec<RejectedEvent>,
    /// This batch id was already written within the dedup window; nothing was written again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
    /// Of the accepted events, those already written (by an earlier batch carrying the same
    /// event ids) and not written again.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub duplicates: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct RejectedEvent {
    /// Position of the event in the request's event array.
    pub index: usize,
    pub errors: Vec<RejectedField>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct RejectedField {
    pub field: String,
    pub reason: String,
}

impl RejectedField {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        RejectedField {
            field: field.into(),
            reason: clipped(reason.into()),
        }
    }
}

/// Most bytes of a reason or an error message that an answer or a dead letter carries. serde's
/// messages quote the value at fault whole: a field holding most of a megabyte would make a
/// letter too large for one stream record (refused, so the request answers 503 and the sender
/// retries it forever) and an answer as large as the request.
pub(crate) const MAX_REASON_BYTES: usize = 1024;

/// `text` cut to [`MAX_REASON_BYTES`] on a character boundary, with an ellipsis when cut.
pub(crate) fn clipped(mut text: String) -> String {
    if text.len() > MAX_REASON_BYTES {
        let end = beginning(&text, MAX_REASON_BYTES).len();
        text.truncate(end);
        text.push('…');
    }
    text
}

impl From<FieldError> for RejectedField {
    fn from(e: FieldError) -> Self {
        RejectedField::new(e.field, e.violation.to_string())
    }
}

/// One event as it arrived: its original JSON (maybe decoded already), and, for formats other
/// than ours (Segment), the result of converting it.
pub struct Candidate<'a> {
    pub raw: RawEvent<'a>,
    pub converted: Option<Result<Event, Vec<RejectedField>>>,
}

impl<'a> Candidate<'a> {
    pub fn native(raw: RawEvent<'a>) -> Self {
        Candidate {
            raw,
            converted: None,
        }
    }

    /// A message of another format, and what converting it gave.
    pub fn converted(raw: &'a RawValue, converted: Result<Event, Vec<RejectedField>>) -> Self {
        Candidate {
            raw: RawEvent::new(raw.get()),
            converted: Some(converted),
        }
    }
}

/// Who sent it, as the server saw it.
#[derive(Clone, Debug, Default)]
pub struct RequestMeta {
    pub client_ip: Option<IpAddr>,
    pub user_agent: Option<String>,
}

/// A rejected event as it is kept in the dead letters.
#[derive(Serialize)]
struct DeadLetter<'a> {
    batch_id: Uuid,
    index: usize,
    sender: &'a str,
    received_at: i64,
    errors: &'a [RejectedField],
    /// The event as it arrived: always JSON (it was read as a JSON value), kept as a string if
    /// it were not. An event longer than [`DEAD_LETTER_EVENT_BYTES`] keeps only its beginning,
    /// as a JSON string.
    event: Box<RawValue>,
    /// Set when `event` is only the beginning of the event: its whole size in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    truncated_from_bytes: Option<usize>,
}

/// Most bytes of a rejected event copied into its dead letter. A letter must fit one stream
/// record (Kinesis: 1 MiB, Firehose: 1,000 KiB), or writing it fails and the whole request
/// answers 503, which the tracker retries forever: a poison batch. An event can be as large as
/// the request body, so it is cut; escaping the cut text as a JSON string grows it at most six
/// times (a control character as `\u00XX`), still well under those limits with the letter's
/// other fields.
const DEAD_LETTER_EVENT_BYTES: usize = 64 * 1024;

/// Most problems reported for one rejected event, in the answer and in its dead letter. An
/// event with thousands of unknown fields would otherwise make an answer (and a letter) many
/// times its own size; the first problems say what to fix.
const MAX_PROBLEMS_PER_EVENT: usize = 20;

/// The first [`MAX_PROBLEMS_PER_EVENT`] problems, the last one saying how many were left out.
fn capped(mut errors: Vec<RejectedField>) -> Vec<RejectedField> {
    if errors.len() > MAX_PROBLEMS_PER_EVENT {
        let left_out = errors.len() - (MAX_PROBLEMS_PER_EVENT - 1);
        errors.truncate(MAX_PROBLEMS_PER_EVENT - 1);
        errors.push(RejectedField::new(
            "event",
            format!("has {left_out} more problems, not listed"),
        ));
    }
    errors
}

/// How long a request waits for another one writing some of the same events before it answers
/// 503 (the sender keeps them and retries).
pub(crate) const IN_FLIGHT_PATIENCE: std::time::Duration = std::time::Duration::from_secs(5);

/// At most `max_events_per_batch` events per request.
pub fn within_batch_limit(state: &AppState, events: usize) -> Result<(), CollectorError> {
    if events > state.max_events_per_batch {
        return Err(CollectorError::TooManyEvents {
            max: state.max_events_per_batch,
            got: events,
        });
    }
    Ok(())
}

/// A request's batch id: the sender's, which a retry of the batch repeats, or one made up here
/// for a sender that gives none (Segment's libraries: each message has an id of its own, which
/// the event dedup keeps). A made-up id is never asked for again, so its answer is not kept:
/// it would only push the answers retries do ask for out of the memory sooner.
#[derive(Clone, Copy, Debug)]
pub enum BatchId {
    Sent(Uuid),
    Made(Uuid),
}

impl BatchId {
    pub fn made() -> BatchId {
        BatchId::Made(Uuid::now_v7())
    }

    fn id(self) -> Uuid {
        match self {
            BatchId::Sent(id) | BatchId::Made(id) => id,
        }
    }
}

pub async fn ingest(
    state: &AppState,
    caller: &Caller,
    meta: &RequestMeta,
    batch: BatchId,
    candidates: Vec<Candidate<'_>>,
) -> Result<BatchResponse, CollectorError> {
    within_batch_limit(state, candidates.len())?;
    if let BatchId::Sent(batch_id) = batch {
        if let Some(mut answer) = state.recent_batches.answer_for(&caller.key_name, batch_id) {
            metrics::counter!(m::BATCHES_DUPLICATE).increment(1);
            answer.duplicate = true;
            return Ok(answer);
        }
    }
    let batch_id = batch.id();

    let now = now_ms();
    // Server-side fields are never taken from the client.
    let ip = meta
        .client_ip
        .map(|ip| if state.truncate_ip { truncate(ip) } else { ip })
        .map(|ip| ip.to_string());
    let server = ServerFields {
        received_at: now,
        ip: ip.as_deref(),
        user_agent: meta.user_agent.as_deref(),
    };
    let mut ids = Vec::with_capacity(candidates.len());
    let mut records = Vec::with_capacity(candidates.len());
    // What the recommendation session memory keeps, by position among the accepted records.
    let mut remembered: Vec<(usize, Event)> = Vec::new();
    let mut rejected = Vec::new();
    let mut dead_letters = Vec::new();
    for (index, mut candidate) in candidates.into_iter().enumerate() {
        match accept(state, &server, &mut candidate) {
            Ok((event, record)) => {
                let id = event.event_id;
                if crate::recs::relevant(&event) {
                    remembered.push((records.len(), event));
                }
                ids.push(id);
                records.push(record);
            }
            Err(errors) => {
                let errors = capped(errors);
                let (event, truncated_from_bytes) = kept_text(candidate.raw.text());
                let letter = DeadLetter {
                    batch_id,
                    index,
                    sender: &caller.key_name,
                    received_at: now,
                    errors: &errors,
                    event,
                    truncated_from_bytes,
                };
                dead_letters.push(StreamRecord {
                    partition_key: caller.key_name.clone(),
                    data: Bytes::from(serde_json::to_vec(&letter).unwrap_or_default()),
                });
                rejected.push(RejectedEvent { index, errors });
            }
        }
    }

    let judged = Judged {
        sender: caller.key_name.clone(),
        batch,
        ids,
        records,
        remembered,
        rejected,
        dead_letters,
    };
    // Once the events are claimed, the writes and what follows them run to their end even if
    // the client goes away (hyper drops a request's future then): dropped halfway, the claim
    // would release ids whose records the stream stores anyway, and the client's retry would
    // write them again. Such writes hold a permit of their own, since the request's goes with
    // it: clients that time out and resend cannot pile up writes without bound.
    let permit = state
        .writes_in_flight
        .clone()
        .try_acquire_owned()
        .map_err(|_| CollectorError::Overloaded)?;
    let write = write(state.clone(), judged).in_current_span();
    let written = tokio::spawn(async move {
        let _permit = permit;
        write.await
    });
    // A write the stream does not acknowledge in time goes on on its own; its answer is
    // remembered for the sender's batch id, so the retry gets it once it is there (a batch
    // without an id of its own, Segment's, is written again by its retry and deduplicated event
    // by event).
    match tokio::time::timeout(state.write_timeout, written).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // Only at the runtime's shutdown.
        Ok(Err(_)) => Err(CollectorError::Overloaded),
        Err(_) => {
            tracing::warn!(%batch_id, timeout = ?state.write_timeout, "write not acknowledged in time; answering 503 while it goes on");
            Err(state.write_timed_out())
        }
    }
}

/// A request's events as judged, everything owned, for [`write`].
struct Judged {
    sender: String,
    batch: BatchId,
    ids: Vec<Uuid>,
    records: Vec<StreamRecord>,
    /// What the recommendation session memory keeps, by position among `records`.
    remembered: Vec<(usize, Event)>,
    rejected: Vec<RejectedEvent>,
    dead_letters: Vec<StreamRecord>,
}

/// Appends the accepted events that are not repeats to the stream, then the dead letters, and
/// answers.
async fn write(state: AppState, judged: Judged) -> Result<BatchResponse, CollectorError> {
    let (sender, batch, records) = (judged.sender, judged.batch, judged.records);
    let batch_id = batch.id();
    let (ids, remembered, rejected) = (judged.ids, judged.remembered, judged.rejected);
    let dead_letters = judged.dead_letters;
    let accepted = records.len();
    // Events another batch wrote (or is writing) are not written again.
    let claim = state
        .recent_events
        .claim(&sender, &ids, IN_FLIGHT_PATIENCE)
        .await
        .map_err(|_| CollectorError::EventsInFlight)?;
    let records: Vec<StreamRecord> = records
        .into_iter()
        .zip(&claim.fresh)
        .filter_map(|(record, &fresh)| fresh.then_some(record))
        .collect();
    let duplicates = accepted - records.len();
    let started = Instant::now();
    let written = if records.is_empty() {
        Ok(())
    } else {
        state.sink.append(records).await
    };
    metrics::histogram!(m::SINK_APPEND_SECONDS).record(started.elapsed().as_secs_f64());
    if let Err(e) = written {
        metrics::counter!(m::SINK_FAILURES).increment(1);
        // Records the stream stored before failing count as written, so the sender's retry of
        // this batch writes only the others.
        claim.commit_positions(e.stored_positions());
        return Err(CollectorError::SinkUnavailable(e));
    }
    // Written: from now on a repeat of these ids is dropped, even if the dead letters fail.
    // Only what this request wrote is remembered: a repeat was remembered by its first writer.
    state.recommender.memory.observe(
        remembered
            .iter()
            .filter(|(at, _)| claim.fresh.get(*at).copied().unwrap_or(false))
            .map(|(_, event)| event),
    );
    claim.commit();
    if !dead_letters.is_empty() {
        tracing::info!(%batch_id, %sender, rejected = rejected.len(), "events rejected");
        state.dead_letters.append(dead_letters).await.map_err(|e| {
            metrics::counter!(m::DEAD_LETTER_FAILURES).increment(1);
            CollectorError::SinkUnavailable(e)
        })?;
    }
    metrics::counter!(m::EVENTS_ACCEPTED).increment((accepted - duplicates) as u64);
    metrics::counter!(m::EVENTS_DUPLICATE).increment(duplicates as u64);
    metrics::counter!(m::EVENTS_REJECTED).increment(rejected.len() as u64);

    let answer = BatchResponse {
        batch_id,
        accepted,
        rejected,
        duplicate: false,
        duplicates,
    };
    if let BatchId::Sent(batch_id) = batch {
        state.recent_batches.remember(&sender, batch_id, &answer);
    }
    Ok(answer)
}

/// A request body refused as a whole (not JSON, not a batch, more events than allowed), as kept
/// in the dead letters: what the sender meant to send stays findable even though no event in it
/// could be judged on its own.
#[derive(Serialize)]
struct RefusedBody<'a> {
    sender: &'a str,
    received_at: i64,
    errors: [RejectedField; 1],
    /// The body as it arrived (after gzip): its JSON when it is JSON, else a string (bytes that
    /// are not UTF-8 replaced by U+FFFD); cut like a rejected event's text.
    body: Box<RawValue>,
    /// `base64` when `body` holds the bytes as they came (gzip that does not decompress).
    #[serde(skip_serializing_if = "Option::is_none")]
    body_encoding: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    truncated_from_bytes: Option<usize>,
}

/// Keeps a body refused for `error` in the dead letters, so that a sender's bug loses nothing
/// for good. Only for a caller whose key was admitted: a body from anyone would let anyone fill
/// the dead letters. Fails (503, the sender retries) when the dead letters cannot take it.
pub async fn keep_refused_body(
    state: &AppState,
    caller: &Caller,
    body: &[u8],
    field: &str,
    error: &CollectorError,
) -> Result<(), CollectorError> {
    let text = String::from_utf8_lossy(body);
    let (kept, truncated) = kept_text(&text);
    let letter = RefusedBody {
        sender: &caller.key_name,
        received_at: now_ms(),
        errors: [RejectedField::new(field, error.to_string())],
        body: kept,
        body_encoding: None,
        truncated_from_bytes: truncated.map(|_| body.len()),
    };
    keep_letter(state, caller, error, &letter).await
}

/// Keeps a gzip body that does not decompress in the dead letters, as base64 (its first
/// [`DEAD_LETTER_EVENT_BYTES`] of it): a stream cut short still holds most of its events.
pub async fn keep_undecompressed_body(
    state: &AppState,
    caller: &Caller,
    compressed: &[u8],
    error: &CollectorError,
) -> Result<(), CollectorError> {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(compressed);
    let kept = beginning(
        &encoded,
        DEAD_LETTER_EVENT_BYTES - DEAD_LETTER_EVENT_BYTES % 4,
    );
    let letter = RefusedBody {
        sender: &caller.key_name,
        received_at: now_ms(),
        errors: [RejectedField::new("body", error.to_string())],
        body: as_json_string(kept),
        body_encoding: Some("base64"),
        truncated_from_bytes: (kept.len() < encoded.len()).then_some(compressed.len()),
    };
    keep_letter(state, caller, error, &letter).await
}

async fn keep_letter(
    state: &AppState,
    caller: &Caller,
    error: &CollectorError,
    letter: &RefusedBody<'_>,
) -> Result<(), CollectorError> {
    tracing::info!(sender = %caller.key_name, code = error.code(), "request body refused");
    let letter = StreamRecord {
        partition_key: caller.key_name.clone(),
        data: Bytes::from(serde_json::to_vec(letter).unwrap_or_default()),
    };
    state
        .append_in_time(&state.dead_letters, letter)
        .await
        .inspect_err(|_| metrics::counter!(m::DEAD_LETTER_FAILURES).increment(1))?;
    metrics::counter!(m::BODIES_DEAD_LETTERED).increment(1);
    Ok(())
}

/// `text` with the value of every `"writeKey"` string replaced: a Segment server library may
/// send its secret key in the body, and the dead letters are read by more people than the
/// keys should be. Textual, since a refused body is often not JSON; a JSON string cannot
/// contain an unescaped quote, so the value ends at the first one that is not escaped.
fn without_write_keys(text: &str) -> std::borrow::Cow<'_, str> {
    const NAME: &str = "\"writeKey\"";
    if !text.contains(NAME) {
        return text.into();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(NAME) {
        let after_name = at + NAME.len();
        out.push_str(&rest[..after_name]);
        rest = &rest[after_name..];
        let colon = rest.len() - rest.trim_start().len();
        let Some(value) = rest[colon..].strip_prefix(':') else {
            continue;
        };
        let quote = value.len() - value.trim_start().len();
        let Some(string) = value[quote..].strip_prefix('"') else {
            continue;
        };
        let mut escaped = false;
        let end = string.find(|c| {
            let close = c == '"' && !escaped;
            escaped = c == '\\' && !escaped;
            close
        });
        let before_value = rest.len() - string.len();
        out.push_str(&rest[..before_value]);
        out.push_str("[redacted]");
        rest = match end {
            Some(end) => &string[end..],
            None => "",
        };
    }
    out.push_str(rest);
    out.into()
}

/// `text` as a dead letter keeps it, without the values of any `writeKey`: its JSON when it
/// is JSON and short enough, else its first [`DEAD_LETTER_EVENT_BYTES`] as a string, with the
/// size it was cut from.
fn kept_text(text: &str) -> (Box<RawValue>, Option<usize>) {
    // A single Segment message is the whole body, `writeKey` and all.
    let redacted = without_write_keys(text);
    let kept = beginning(&redacted, DEAD_LETTER_EVENT_BYTES);
    if kept.len() < redacted.len() {
        (as_json_string(kept), Some(text.len()))
    } else {
        (as_json(&redacted), None)
    }
}

/// The longest start of `text` of at most `max` bytes that ends on a character boundary.
pub(crate) fn beginning(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let end = (0..=max)
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    &text[..end]
}

/// `text` as a raw JSON value when it is one (every event text was read as one), else as a JSON
/// string.
fn as_json(text: &str) -> Box<RawValue> {
    RawValue::from_string(text.to_owned()).unwrap_or_else(|_| as_json_string(text))
}

/// `text` as a JSON string value.
fn as_json_string(text: &str) -> Box<RawValue> {
    serde_json::value::to_raw_value(text).expect("a string encodes as JSON")
}

/// Decodes (unless converted already), checks and enriches one event, and makes its record.
fn accept(
    state: &AppState,
    server: &ServerFields<'_>,
    candidate: &mut Candidate<'_>,
) -> Result<(Event, StreamRecord), Vec<RejectedField>> {
    let text = candidate.raw.text();
    let size = text.len();
    if size > state.max_event_bytes {
        return Err(vec![RejectedField::new(
            "event",
            format!("is {size} bytes, at most {} allowed", state.max_event_bytes),
        )]);
    }
    let (mut event, at) = match &candidate.converted {
        Some(converted) => (converted.clone()?, None),
        None => {
            let (event, at) = candidate
                .raw
                .decode()
                .map_err(|e| vec![RejectedField::new(e.field, e.reason)])?;
            if state.unknown_fields == UnknownFields::Reject {
                let unknown = unknown_fields(text, &event)
                    .map_err(|e| vec![RejectedField::new(e.field, e.reason)])?;
                if !unknown.is_empty() {
                    return Err(unknown
                        .into_iter()
                        .map(|field| {
                            RejectedField::new(
                                field,
                                "is not a field of this event (unknown_fields = \"reject\")",
                            )
                        })
                        .collect());
                }
            }
            (event, at)
        }
    };
    validate(&event, &state.limits, server.received_at).map_err(|errors| {
        errors
            .into_iter()
            .map(RejectedField::from)
            .collect::<Vec<_>>()
    })?;
    // The request's User-Agent is the shopper's browser only for our own tracker; a converted
    // (Segment) message comes from a server library whose agent says nothing about the shopper.
    let server = ServerFields {
        user_agent: server.user_agent.filter(|_| candidate.converted.is_none()),
        ..*server
    };
    let data = enrich(&mut event, text, at.as_ref(), &server);
    let record = StreamRecord {
        partition_key: partition_key(&event).to_owned(),
        data: Bytes::from(data),
    };
    Ok((event, record))
}

#[cfg(test)]
mod tests {
    use super::{beginning, capped, RejectedField, MAX_PROBLEMS_PER_EVENT};

    #[test]
    fn problems_past_the_cap_are_counted_not_listed() {
        let problems = |n: usize| -> Vec<RejectedField> {
            (0..n)
                .map(|i| RejectedField::new(format!("properties.f{i}"), "is not a field"))
                .collect()
        };
        let exact = capped(problems(MAX_PROBLEMS_PER_EVENT));
        assert_eq!(exact.len(), MAX_PROBLEMS_PER_EVENT);
        assert_eq!(exact.last().unwrap().field, "properties.f19");

        let many = capped(problems(5000));
        assert_eq!(many.len(), MAX_PROBLEMS_PER_EVENT);
        assert_eq!(many[18].field, "properties.f18");
        let last = many.last().unwrap();
        assert_eq!(last.field, "event");
        assert_eq!(last.reason, "has 4981 more problems, not listed");
    }

    #[test]
    fn write_keys_are_taken_out_of_a_refused_body_even_when_it_is_not_json() {
        use super::without_write_keys as w;
        assert_eq!(w(r#"{"a":1}"#), r#"{"a":1}"#);
        assert_eq!(
            w(r#"{"writeKey" : "sk_live", "batch": ["#),
            r#"{"writeKey" : "[redacted]", "batch": ["#
        );
        assert_eq!(
            w(r#"{"writeKey":"s\"k\\","x":{"writeKey":"again"}}"#),
            r#"{"writeKey":"[redacted]","x":{"writeKey":"[redacted]"}}"#
        );
        // Cut short inside the value: the rest goes.
        assert_eq!(w(r#"{"writeKey":"sk_li"#), r#"{"writeKey":"[redacted]"#);
        // Not a string value, or the name as a value: left as it is.
        assert_eq!(
            w(r#"{"writeKey":null,"k":"writeKey"}"#),
            r#"{"writeKey":null,"k":"writeKey"}"#
        );
    }

    #[test]
    fn a_reason_is_clipped_on_a_character_boundary() {
        let long = format!("invalid type: string \"{}\"", "é".repeat(2000));
        let clipped = super::clipped(long);
        assert!(clipped.len() <= super::MAX_REASON_BYTES + '…'.len_utf8());
        assert!(clipped.ends_with('…'));
        assert_eq!(super::clipped("short".into()), "short");
    }

    #[test]
    fn an_event_is_cut_on_a_character_boundary() {
        assert_eq!(beginning("abc", 3), "abc");
        assert_eq!(beginning("abc", 2), "ab");
        // 'é' is two bytes: cutting after its first byte would not be UTF-8.
        assert_eq!(beginning("aé", 2), "a");
        assert_eq!(beginning("éé", 3), "é");
    }
}
