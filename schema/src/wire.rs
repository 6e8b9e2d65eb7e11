//! Decoding a batch body as the collector receives it, so that one bad event never sinks its
//! batch: a tracker batch in one pass, each event decoded where it lies ([`read_native_batch`]);
//! any other body, or one that pass refuses, as an envelope with each event kept as raw JSON
//! ([`BatchEnvelope`]), then every event on its own. Shared by the collector and the fuzz
//! target, so the fuzzer exercises the real decoding.

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;
use uuid::Uuid;

use crate::event_decode::{Envelope, OnePass};
use crate::Event;

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

/// A body of our own format (`{"batch_id":…,"events":[…]}`) read in one pass by
/// [`read_native_batch`].
pub struct NativeBatch<'a> {
    pub batch_id: Option<Uuid>,
    pub write_key: Option<String>,
    pub events: Vec<RawEvent<'a>>,
}

/// One event of a batch as its JSON text, with the event when it was decoded already.
pub struct RawEvent<'a> {
    text: &'a str,
    decoded: Option<OnePass>,
}

impl<'a> RawEvent<'a> {
    /// An event not yet decoded.
    pub fn new(text: &'a str) -> Self {
        RawEvent {
            text,
            decoded: None,
        }
    }

    /// The event's JSON as it arrived.
    pub fn text(&self) -> &'a str {
        self.text
    }

    /// Decodes the event as [`decode_located`] does (taking the event decoded with the batch,
    /// once).
    pub fn decode(&mut self) -> Result<(Event, Option<ContextAt>), DecodeError> {
        match self.decoded.take() {
            Some(decoded) => Ok(located(decoded)),
            None => decode_located(self.text),
        }
    }
}

/// Reads a batch of our own format in one pass: each event is decoded where it lies in the body
/// (by [`decode_located`]'s decoder), and its text is known from where that ended. Reading the
/// body as `Vec<&RawValue>` first, and every event from its text after, scanned every byte
/// twice: that first scan was a sixth of the collector's CPU.
///
/// `None` for anything else: a body that is not UTF-8 or not an object, a Segment batch
/// (`batch`, `context`), a repeated field, an escaped key, any syntax error, more than
/// `max_events` events, or any event the one-pass decoder refuses (one that does not decode, and
/// a few valid ones: an event sent as an array, properties nested within one level of serde's
/// limit). The caller then reads the body with [`BatchEnvelope`], whose answer (the body's
/// error, the batch being too large, or which events are bad and why) is the one to give.
/// Whatever this reads, [`BatchEnvelope`] reads the same way, event for event (tests here and
/// the fuzz target).
pub fn read_native_batch(body: &[u8], max_events: usize) -> Option<NativeBatch<'_>> {
    let mut body = Cursor {
        text: std::str::from_utf8(body).ok()?,
        at: 0,
    };
    let (mut batch_id, mut write_key, mut events) = (None, None, None);
    body.expect(b'{')?;
    if !body.eat(b'}') {
        loop {
            let key: &str = body.value()?;
            body.expect(b':')?;
            match key {
                "batch_id" if batch_id.is_none() => batch_id = Some(body.value::<Option<Uuid>>()?),
                "writeKey" if write_key.is_none() => {
                    write_key = Some(body.value::<Option<String>>()?)
                }
                "events" if events.is_none() => events = Some(body.events(max_events)?),
                "batch_id" | "writeKey" | "events" | "batch" | "context" => return None,
                _ => {
                    body.value::<serde::de::IgnoredAny>()?;
                }
            }
            if body.eat(b',') {
                continue;
            }
            body.expect(b'}')?;
            break;
        }
    }
    body.skip_whitespace();
    (body.at == body.text.len()).then_some(())?;
    Some(NativeBatch {
        batch_id: batch_id.flatten(),
        write_key: write_key.flatten(),
        events: events?,
    })
}

/// A place in a body being read by [`read_native_batch`].
struct Cursor<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Cursor<'a> {
    fn skip_whitespace(&mut self) {
        let rest = &self.text.as_bytes()[self.at..];
        self.at += rest
            .iter()
            .position(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
            .unwrap_or(rest.len());
    }

    /// Whether `byte` comes next (after whitespace); it is passed over if so.
    fn eat(&mut self, byte: u8) -> bool {
        self.skip_whitespace();
        let next = self.text.as_bytes().get(self.at) == Some(&byte);
        self.at += usize::from(next);
        next
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        self.eat(byte).then_some(())
    }

    /// The JSON value that comes next, decoded by serde_json where it lies.
    fn value<T: Deserialize<'a>>(&mut self) -> Option<T> {
        self.skip_whitespace();
        let mut values = serde_json::Deserializer::from_str(&self.text[self.at..]).into_iter::<T>();
        let value = values.next()?.ok()?;
        self.at += values.byte_offset();
        Some(value)
    }

    /// The events array that comes next (at most `max` events), each event decoded.
    fn events(&mut self, max: usize) -> Option<Vec<RawEvent<'a>>> {
        self.expect(b'[')?;
        let mut events = Vec::new();
        if self.eat(b']') {
            return Some(events);
        }
        loop {
            if events.len() == max {
                return None;
            }
            self.skip_whitespace();
            let start = self.at;
            let decoded = self.value::<OnePass>()?;
            events.push(RawEvent {
                text: &self.text[start..self.at],
                decoded: Some(decoded),
            });
            if self.eat(b',') {
                continue;
            }
            self.expect(b']')?;
            return Some(events);
        }
    }
}

/// Why one event could not be decoded: the dotted path of the field (`event` for the whole) and
/// serde's reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError {
    pub field: String,
    pub reason: String,
}

/// The fields of `text` that `event` (decoded from it) does not know, as dotted paths
/// (`context.pgae`, `properties.items[1].colour`). Decoding ignores unknown fields; they are
/// exactly the input keys with a value that the event does not write back. A `null` counts as
/// absent, as it does when decoding.
///
/// Fails when `text` cannot be read as a whole: decoding skips unknown values without reading
/// them, so text nested deeper than serde_json reads (128 levels) inside an unknown field
/// decodes, and could only pass as "nothing unknown" here.
pub fn unknown_fields(text: &str, event: &Event) -> Result<Vec<String>, DecodeError> {
    let input = serde_json::from_str::<Value>(text).map_err(|e| DecodeError {
        field: "event".into(),
        reason: format!("cannot be read whole to look for unknown fields: {e}"),
    })?;
    let known = serde_json::to_value(event).map_err(|e| DecodeError {
        field: "event".into(),
        reason: e.to_string(),
    })?;
    let mut unknown = Vec::new();
    compare(&input, &known, "", &mut unknown);
    Ok(unknown)
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

/// Whether the text an event was decoded from has a `context` ([`crate::record`] finds it there
/// to write server-side fields into it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContextAt {
    /// The text has no `context`.
    Absent,
    /// The text has a `context`.
    Present,
}

/// Decodes one event (the JSON `text`) as [`decode_event`] does, and also says whether it has a
/// context, so that server-side fields can be written into the text ([`crate::record`]). That is
/// `None` when only the slower path decoded the event.
pub fn decode_located(text: &str) -> Result<(Event, Option<ContextAt>), DecodeError> {
    match serde_json::from_str::<OnePass>(text) {
        Ok(decoded) => Ok(located(decoded)),
        Err(_) => decode_text(text).map(|event| (event, None)),
    }
}

fn located(decoded: OnePass) -> (Event, Option<ContextAt>) {
    let at = if decoded.has_context {
        ContextAt::Present
    } else {
        ContextAt::Absent
    };
    (decoded.event, Some(at))
}

/// Decodes one event of our own format, naming the field when it fails.
pub fn decode_event(raw: &RawValue) -> Result<Event, DecodeError> {
    decode_text(raw.get())
}

fn decode_text(text: &str) -> Result<Event, DecodeError> {
    // Most events are fine: decode them without tracking field paths, which costs a third more;
    // only a failure is decoded again to name its field.
    if let Ok(envelope) = serde_json::from_str::<Envelope>(text) {
        if let Ok(event) = envelope.into_event(false) {
            return Ok(event);
        }
    }
    let mut de = serde_json::Deserializer::from_str(text);
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

#[cfg(test)]
mod tests {
    use super::*;

    const EVENT: &str = r#"{"event_id":"01936a1c-3b5e-7cc4-9a1e-4f1b2c3d4e5f","anonymous_id":"a-1","timestamp":1800000000000,"context":{"page":{"url":"https://shop.example/p/1"}},"type":"product_view","properties":{"product_id":"P1","price_minor":100}}"#;
    const PROPERTIES_FIRST: &str = r#"{"properties":{"query":"shoes","results":3},"event_id":"01936a1c-3b5e-7cc4-9a1e-4f1b2c3d4e60","anonymous_id":"a-1","timestamp":1800000000001,"type":"search"}"#;
    const ESCAPED: &str = r#"{"event_id":"01936a1c-3b5e-7cc4-9a1e-4f1b2c3d4e61","anonymous_id":"a\"1\u00e9","timestamp":1,"type":"page_view","properties":{"category":"caf\u00e9 \\ \n"},"extra":[1,{"x":null}]}"#;
    const BATCH_ID: &str = "01936a1c-3b5e-7cc4-9a1e-4f1b2c3d4e00";

    /// Reads `body` both ways; when the one pass reads it, it must read what the envelope
    /// reads. Returns whether the one pass read it.
    fn same_both_ways(body: &str) -> bool {
        let Some(native) = read_native_batch(body.as_bytes(), 500) else {
            return false;
        };
        let parsed: BatchEnvelope =
            serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
        assert_eq!(native.batch_id, parsed.batch_id, "{body}");
        assert_eq!(native.write_key, parsed.write_key, "{body}");
        let events = parsed.events.expect("events");
        assert_eq!(native.events.len(), events.len(), "{body}");
        for (mut one_pass, raw) in native.events.into_iter().zip(events) {
            assert_eq!(one_pass.text(), raw.get());
            let decoded = one_pass.decode();
            assert!(decoded.is_ok(), "{body}");
            assert_eq!(decoded, decode_located(raw.get()));
            // The one-pass decoder against the derived one.
            assert_eq!(decoded.map(|(event, _)| event), decode_event(raw));
        }
        true
    }

    #[test]
    fn the_trackers_batches_are_read_in_one_pass_as_the_envelope_reads_them() {
        let bodies = [
            format!(r#"{{"batch_id":"{BATCH_ID}","sent_at":5,"events":[{EVENT},{PROPERTIES_FIRST},{ESCAPED}]}}"#),
            format!(r#"{{"events":[{EVENT}],"writeKey":"pk_1","batch_id":"{BATCH_ID}"}}"#),
            format!(" \n{{ \"batch_id\" : \"{BATCH_ID}\" ,\t\"events\" :\r[ {EVENT} ,\n{EVENT} ] , \"x\" : {{\"y\":[true,null,1.5e3]}} }}\n "),
            format!(r#"{{"batch_id":"{BATCH_ID}","events":[]}}"#),
            format!(r#"{{"batch_id":null,"writeKey":null,"events":[{EVENT}]}}"#),
            format!(r#"{{"events":[{EVENT}],"unknown":"x","unknown":"twice is fine"}}"#),
        ];
        for body in &bodies {
            assert!(same_both_ways(body), "not read in one pass: {body}");
        }
        // A text with no context, or a context named elsewhere, is located as the envelope does.
        let no_context = EVENT.replace(
            r#""context":{"page":{"url":"https://shop.example/p/1"}},"#,
            "",
        );
        assert!(same_both_ways(&format!(r#"{{"events":[{no_context}]}}"#)));
    }

    #[test]
    fn anything_else_is_left_to_the_envelope() {
        let bad_event = EVENT.replace(r#""anonymous_id":"a-1","#, "");
        let bodies = [
            // Segment's batches.
            format!(r#"{{"batch":[{EVENT}]}}"#),
            format!(r#"{{"events":[{EVENT}],"context":{{}}}}"#),
            // Repeated or escaped keys, missing or null events.
            format!(r#"{{"events":[],"events":[{EVENT}]}}"#),
            format!(r#"{{"batch_id":"{BATCH_ID}","batch_id":"{BATCH_ID}","events":[]}}"#),
            format!(r#"{{"ev\u0065nts":[{EVENT}]}}"#),
            format!(r#"{{"batch_id":"{BATCH_ID}"}}"#),
            r#"{"events":null}"#.to_owned(),
            // Syntax errors around and in the events.
            format!(r#"{{"events":[{EVENT},]}}"#),
            format!(r#"{{"events":[{EVENT} {EVENT}]}}"#),
            format!(r#"{{"events":[{EVENT}]}} x"#),
            format!(r#"{{"events":[{EVENT}]"#),
            format!(r#"{{"events":[{EVENT}],}}"#),
            format!(r#"[null,[{EVENT}]]"#),
            r#"{"events":[{"event_id":tru}]}"#.to_owned(),
            // An event that does not decode: the envelope's path names its field.
            format!(r#"{{"events":[{EVENT},{bad_event}]}}"#),
            format!(r#"{{"events":[{EVENT},5]}}"#),
            String::new(),
        ];
        for body in &bodies {
            assert!(read_native_batch(body.as_bytes(), 500).is_none(), "{body}");
        }
        let mut not_utf8 = format!(r#"{{"events":[{EVENT}],"x":"?"}}"#).into_bytes();
        let at = not_utf8.len() - 3;
        not_utf8[at] = 0xff;
        assert!(read_native_batch(&not_utf8, 500).is_none());
        // Over the limit: the envelope's reading says how many there are.
        let three = format!(r#"{{"events":[{EVENT},{EVENT},{EVENT}]}}"#);
        assert!(read_native_batch(three.as_bytes(), 2).is_none());
        assert!(read_native_batch(three.as_bytes(), 3).is_some());
    }

    #[test]
    fn deeply_nested_properties_are_left_to_the_envelope_near_serdes_limit() {
        // serde_json skips a raw value without a nesting limit and decodes with one of 128
        // levels. Decoded in place, properties are one level deeper than decoded from their own
        // text, so one level short of the limit the one pass refuses what the envelope's path
        // decodes (its record then is encoded, not written into).
        let body = |levels: usize| {
            let deep = format!("{}{}", "[".repeat(levels), "]".repeat(levels));
            format!(
                r#"{{"batch_id":"{BATCH_ID}","events":[{EVENT},{{"event_id":"01936a1c-3b5e-7cc4-9a1e-4f1b2c3d4e5f","anonymous_id":"a","timestamp":1,"type":"custom","properties":{{"name":"n","props":{{"x":{deep}}}}}}}]}}"#
            )
        };
        let events_of = |body: &str| {
            let parsed: BatchEnvelope = serde_json::from_str(body).unwrap();
            parsed
                .events
                .unwrap()
                .iter()
                .map(|raw| raw.get().to_owned())
                .collect::<Vec<_>>()
        };
        assert!(same_both_ways(&body(124)));

        let near = body(125);
        assert!(read_native_batch(near.as_bytes(), 500).is_none());
        let events = events_of(&near);
        assert!(matches!(decode_located(&events[1]), Ok((_, None))));

        let too_deep = body(126);
        assert!(read_native_batch(too_deep.as_bytes(), 500).is_none());
        let events = events_of(&too_deep);
        assert!(decode_located(&events[0]).is_ok());
        let refused = decode_located(&events[1]).unwrap_err();
        assert!(
            refused.reason.starts_with("recursion limit exceeded"),
            "{refused:?}"
        );
    }
}
