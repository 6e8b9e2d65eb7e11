//! One raw lake line to an event record or a rejection with its reason. Pure.
//!
//! The schema crate is the truth: a line is decoded as the collector decodes an event
//! ([`retailmind_schema::wire::decode_event`]) and checked with [`retailmind_schema::validate`].
//! The clock `validate` compares timestamps with is the event's own `received_at` (when the
//! collector accepted it), so the verdict on a line never depends on when the ETL runs.

use retailmind_schema::{validate, Limits};
use serde::Serialize;
use serde_json::value::RawValue;

use crate::day::day_of;
use crate::event_rows::EventRecord;

/// Why a raw line was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// Not JSON at all.
    NotJson { reason: String },
    /// JSON, but not an event: `field` is the dotted path, `reason` serde's message.
    NotAnEvent { field: String, reason: String },
    /// An event that breaks the rules: every refused field with why.
    Invalid { fields: Vec<(String, String)> },
    /// A valid event for a day that was closed before it arrived.
    TooLate {
        dt: String,
        late_window_hours: u32,
        watermark_ms: i64,
    },
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rejection::NotJson { reason } => write!(f, "not JSON: {reason}"),
            Rejection::NotAnEvent { field, reason } => {
                write!(f, "not an event: field {field}: {reason}")
            }
            Rejection::Invalid { fields } => {
                write!(f, "invalid event: ")?;
                for (i, (field, reason)) in fields.iter().enumerate() {
                    if i > 0 {
                        write!(f, "; ")?;
                    }
                    write!(f, "{field} {reason}")?;
                }
                Ok(())
            }
            Rejection::TooLate {
                dt,
                late_window_hours,
                watermark_ms,
            } => write!(
                f,
                "too late: day {dt} closed, it ended more than {late_window_hours} h before the \
                 newest event seen (timestamp {watermark_ms})"
            ),
        }
    }
}

/// A decoded, valid line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decoded {
    /// `YYYY-MM-DD` (UTC) of the event time: the partition it belongs to.
    pub dt: String,
    pub record: EventRecord,
}

/// Decodes and checks one line (without its newline).
pub fn decode_line(line: &[u8], limits: &Limits) -> Result<Decoded, Rejection> {
    let raw: &RawValue = serde_json::from_slice(line).map_err(|e| Rejection::NotJson {
        reason: e.to_string(),
    })?;
    let event = retailmind_schema::wire::decode_event(raw).map_err(|e| Rejection::NotAnEvent {
        field: e.field,
        reason: e.reason,
    })?;
    let now = event.received_at.unwrap_or(event.timestamp);
    validate(&event, limits, now).map_err(|errors| Rejection::Invalid {
        fields: errors
            .into_iter()
            .map(|e| (e.field, e.violation.to_string()))
            .collect(),
    })?;
    Ok(Decoded {
        dt: day_of(event.timestamp),
        record: EventRecord::from_event(&event),
    })
}

/// A refused line as kept in `quarantine/events/` (the columns of the `quarantine_events` table).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct QuarantinedLine {
    /// Raw object the line came from.
    pub source: String,
    /// Line number in it, from 1.
    pub line_no: i64,
    pub reason: String,
    /// The line as it was (invalid UTF-8 replaced).
    pub raw: String,
}

/// The day a refused line is filed under: its event time when it has one, otherwise the day in
/// the source key (`dt=YYYY-MM-DD` or Firehose's `YYYY/MM/DD/`), otherwise the epoch's.
pub fn quarantine_day(line: &[u8], source: &str) -> String {
    #[derive(serde::Deserialize)]
    struct Timestamp {
        timestamp: i64,
    }
    if let Ok(t) = serde_json::from_slice::<Timestamp>(line) {
        return day_of(t.timestamp);
    }
    crate::day::day_in_key(source).unwrap_or_else(|| "1970-01-01".into())
}

/// Splits an object into its lines with their numbers (from 1), skipping blank ones.
pub fn lines(body: &[u8]) -> impl Iterator<Item = (i64, &[u8])> {
    body.split(|b| *b == b'\n')
        .enumerate()
        .map(|(i, l)| (i as i64 + 1, l.strip_suffix(b"\r").unwrap_or(l)))
        .filter(|(_, l)| !l.iter().all(u8::is_ascii_whitespace))
}
