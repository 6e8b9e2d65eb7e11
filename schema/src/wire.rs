//! Decoding a batch body as the collector receives it: first the envelope with each event kept
//! as raw JSON, then every event on its own, so one bad event never sinks its batch. Shared by
//! the collector and the fuzz target, so the fuzzer exercises the real decoding.

use std::ops::Range;

use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use serde_json::Value;
use uuid::Uuid;

use crate::event_decode::Envelope;
use crate::{Context, Event};

/// Any batch body: ours has `events` (and `batch_id`), Segment's has `batch` (and maybe
/// `writeKey`).
#[derive(Debug, Deserialize)]
pub struct BatchEnvelope<'a> {
    #[serde(default)]
    pub batch_id: Option<Uuid>,
    #[serde(default, borrow)]
    pub events: Option<Vec<&'a RawValue>>,
    #[serde(default, borrow)]
    pub batch: Option<Vec<&'a RawValue>>,
    #[serde(default, rename = "writeKey")]
    pub write_key: Option<String>,
    /// Segment's batch-level `context`, merged into every message's own (the message wins).
    #[serde(default, borrow)]
    pub context: Option<&'a RawValue>,
}

/// Why one event could not be decoded: the dotted path of the field (`event` for the whole) and
/// serde's reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError {
    pub field: String,
    pub reason: String,
}

/// The fields of `raw` that `event` (decoded from it) does not know, as dotted paths
/// (`context.pgae`, `properties.items[1].colour`). Decoding ignores unknown fields; they are
/// exactly the input keys with a value that the event does not write back. A `null` counts as
/// absent, as it does when decoding.
pub fn unknown_fields(raw: &RawValue, event: &Event) -> Vec<String> {
    let (Ok(input), Ok(known)) = (
        serde_json::from_str::<Value>(raw.get()),
        serde_json::to_value(event),
    ) else {
        return Vec::new();
    };
    let mut unknown = Vec::new();
    compare(&input, &known, "", &mut unknown);
    unknown
}

fn compare(input: &Value, known: &Value, path: &str, unknown: &mut Vec<String>) {
    match (input, known) {
        (Value::Object(input), Value::Object(known)) => {
            for (key, value) in input {
                let here = if path.is_empty() {
                    key.clone()
                } else {
                    [path, ".", key].concat()
                };
                match known.get(key) {
                    _ if value.is_null() => {}
                    Some(k) => compare(value, k, &here, unknown),
                    None => unknown.push(here),
                }
            }
        }
        (Value::Array(input), Value::Array(known)) => {
            for (i, (value, k)) in input.iter().zip(known).enumerate() {
                compare(value, k, &format!("{path}[{i}]"), unknown);
            }
        }
        _ => {}
    }
}

/// Where the `context` object of an event is in the text it was decoded from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ContextAt {
    /// The text has no `context`.
    Absent,
    /// The byte range of the `context` object, braces included.
    Span(Range<usize>),
}

/// A context as its raw text, `null` included (`Option<&RawValue>` would read `null` as absent).
#[derive(Default)]
struct RawContext<'a>(Option<&'a RawValue>);

impl<'de: 'a, 'a> Deserialize<'de> for RawContext<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        <&RawValue>::deserialize(deserializer).map(|raw| RawContext(Some(raw)))
    }
}

/// Decodes one event as [`decode_event`] does, and also says where its context is in `raw`, so
/// that server-side fields can be written into the text ([`crate::record`]). The place is `None`
/// when only the slower path decoded the event.
pub fn decode_located(raw: &RawValue) -> Result<(Event, Option<ContextAt>), DecodeError> {
    let text = raw.get();
    if let Ok(envelope) = serde_json::from_str::<Envelope<RawContext<'_>>>(text) {
        let located = match envelope.context.0 {
            None => Some((Context::default(), Some(ContextAt::Absent))),
            Some(context) => serde_json::from_str::<Context>(context.get())
                .ok()
                .map(|decoded| (decoded, span_in(text, context.get()).map(ContextAt::Span))),
        };
        if let Some((context, at)) = located {
            if let Ok(event) = envelope.into_event_with(context, false) {
                return Ok((event, at));
            }
        }
    }
    decode_event(raw).map(|event| (event, None))
}

/// Where `part`, a slice of `text` (serde_json borrows raw values from the input), is in it.
fn span_in(text: &str, part: &str) -> Option<Range<usize>> {
    let start = (part.as_ptr() as usize).checked_sub(text.as_ptr() as usize)?;
    let span = start..start + part.len();
    // In bounds, `part` lies inside `text`'s allocation: allocations never overlap.
    text.get(span.clone()).map(|_| span)
}

/// Decodes one event of our own format, naming the field when it fails.
pub fn decode_event(raw: &RawValue) -> Result<Event, DecodeError> {
    // Most events are fine: decode them without tracking field paths, which costs a third more;
    // only a failure is decoded again to name its field.
    if let Ok(envelope) = serde_json::from_str::<Envelope>(raw.get()) {
        if let Ok(event) = envelope.into_event(false) {
            return Ok(event);
        }
    }
    let mut de = serde_json::Deserializer::from_str(raw.get());
    let envelope: Envelope = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let field = match e.path().to_string() {
            p if p == "." => "event".to_owned(),
            p => p,
        };
        DecodeError {
            field,
            reason: e.into_inner().to_string(),
        }
    })?;
    envelope.into_event(true).map_err(|e| DecodeError {
        field: if e.path.is_empty() {
            "properties".to_owned()
        } else {
            ["properties.", &e.path].concat()
        },
        reason: e.reason,
    })
}
