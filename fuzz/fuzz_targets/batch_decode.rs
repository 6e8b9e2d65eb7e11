//! Arbitrary bytes through the collector's decoding of `POST /v1/batch`: the batch envelope with
//! raw events, then each event decoded and validated on its own.
//!
//! Properties: nothing panics (no input may take the collector down), and an event that passes
//! validation survives what happens to it next: the collector sets its server-side fields and
//! makes its stream record (the text as received with those fields written in, or the event
//! encoded), the processor decodes the record, and it must come back equal and still valid.
//!
//! The collector reads its tracker's batches in one pass (`read_native_batch`) and everything
//! else with the general envelope; whatever the one pass reads, the envelope must read the same
//! way, event for event.
//!
//! Segment's bodies (`batch` instead of `events`, with a batch-level `context`) go through the
//! collector's converter (`retailmind_segment::convert`), as `/v1/batch` and `/v1/import` take
//! them, or as `/v1/track`, `/v1/page` and `/v1/identify` do (the route's type when a message
//! has none): nothing panics, every refusal names a field, and a converted event that passes
//! validation makes the same round trip.
//!
//! The envelope, the per-event decoding and the record are the collector's own
//! (`retailmind_schema::wire`, `retailmind_schema::record`); the size limit below mirrors
//! `collector/src/ingest.rs` (`accept`).

#![no_main]

use libfuzzer_sys::fuzz_target;
use retailmind_schema::record::{enrich, ServerFields};
use retailmind_schema::wire::{
    decode_event, decode_located, read_native_batch, BatchEnvelope, ContextAt,
};
use retailmind_schema::{validate, Event, Limits};

/// A fixed clock, so a crash reproduces on any day and the seed corpus stays inside the accepted
/// time window (2025-11-25T10:00:00Z, the timestamps the seeds use).
const NOW_MS: i64 = 1_764_064_800_000;

/// The collector's default `max_events_per_batch`.
const MAX_EVENTS: usize = 500;

/// The collector's default `max_event_bytes`: larger events are refused before decoding.
const MAX_EVENT_BYTES: usize = 32 * 1024;

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let native = read_native_batch(data, MAX_EVENTS);
    let Ok(parsed) = serde_json::from_slice::<BatchEnvelope>(data) else {
        assert!(
            native.is_none(),
            "read in one pass, refused by the envelope"
        );
        return;
    };
    if let Some(native) = native {
        assert_eq!(native.batch_id, parsed.batch_id);
        assert_eq!(native.write_key, parsed.write_key);
        let events = parsed
            .events
            .as_deref()
            .expect("the envelope has the events");
        assert_eq!(native.events.len(), events.len());
        for (mut one_pass, raw) in native.events.into_iter().zip(events) {
            assert_eq!(one_pass.text(), raw.get());
            let decoded = one_pass.decode();
            assert_eq!(decoded, decode_located(raw.get()));
            // The one-pass decoder against the derived one.
            assert_eq!(decoded.map(|(event, _)| event), decode_event(raw));
        }
    }
    if let Some(messages) = parsed.batch {
        // The route's type, as the single-message endpoints imply one.
        let default_type = [None, Some("track"), Some("page"), Some("identify")][data.len() % 4];
        // With and without the shop's default currency.
        let options = retailmind_segment::Options {
            default_currency: (data.len() % 5 == 0).then(|| "EUR".to_owned()),
        };
        for raw in messages.into_iter().take(MAX_EVENTS) {
            if raw.get().len() > MAX_EVENT_BYTES {
                continue;
            }
            match retailmind_segment::convert(
                raw,
                default_type,
                NOW_MS,
                parsed.context,
                &options,
            ) {
                Ok(event) => survives_the_stream(event, raw.get(), None, data.len(), &limits),
                Err(problems) => {
                    assert!(
                        !problems.is_empty(),
                        "convert refused with no problem named"
                    );
                    assert!(problems.iter().all(|p| !p.field.is_empty()));
                }
            }
        }
        return;
    }
    // The tracker's format needs a batch id; without one the collector answers 400.
    let (Some(events), Some(_batch_id)) = (parsed.events, parsed.batch_id) else {
        return;
    };
    for raw in events {
        if raw.get().len() > MAX_EVENT_BYTES {
            continue;
        }
        let Ok((event, at)) = decode_located(raw.get()) else {
            continue;
        };
        survives_the_stream(event, raw.get(), at.as_ref(), data.len(), &limits);
    }
});

/// An event the collector decoded or converted from `text` (at `at` for our own format, `None`
/// for a converted one): refused naming a field, or, when valid, unchanged by the record the
/// collector writes and the processor reads back.
fn survives_the_stream(
    mut event: Event,
    text: &str,
    at: Option<&ContextAt>,
    seed: usize,
    limits: &Limits,
) {
    if let Err(errors) = validate(&event, limits, NOW_MS) {
        // Every refusal names a field: an empty list would be an answer without a reason.
        assert!(!errors.is_empty(), "validate returned Err with no errors");
        // The collector turns each reason into text for the answer.
        for e in &errors {
            let _ = e.to_string();
        }
        return;
    }
    // What the collector writes to the stream: its own clock and the peer's address, and the
    // request's user agent where the event has none. With and without each server-side field
    // (no client IP, no User-Agent header).
    let server = ServerFields {
        received_at: NOW_MS,
        ip: (seed % 2 == 0).then_some("203.0.113.0"),
        user_agent: (seed % 3 != 0).then_some("Mozilla/5.0 (fuzz)"),
    };
    let mut encoded = event.clone();
    let bytes = enrich(&mut event, text, at, &server);
    enrich(&mut encoded, text, None, &server);
    assert_eq!(event, encoded, "the record's two ways set different fields");
    // The lake keeps one record per line.
    assert!(
        bytes.first() == Some(&b'{') && !bytes.iter().any(|&b| b == b'\n' || b == b'\r'),
        "a record is one line holding an object: {}",
        String::from_utf8_lossy(&bytes)
    );
    // What the processor reads back.
    let back: Event = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "accepted event does not deserialize after serializing: {e}\n{}",
            String::from_utf8_lossy(&bytes)
        )
    });
    assert_eq!(
        event,
        back,
        "accepted event changed in a serialize/deserialize round trip\n{}",
        String::from_utf8_lossy(&bytes)
    );
    assert!(
        validate(&back, limits, NOW_MS).is_ok(),
        "accepted event is refused after a round trip"
    );
}
