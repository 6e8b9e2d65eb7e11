//! The data lake (S3 through Kinesis Data Firehose in production). Events are laid out by event
//! time as `events/dt=YYYY-MM-DD/hour=HH/`, newline-terminated JSON, in S3 and on local disk alike.

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::Result;

/// One event on its way to the lake.
#[derive(Clone, Debug, PartialEq)]
pub struct LakeRecord {
    /// Event time, ms since the Unix epoch: picks the `dt=`/`hour=` partition.
    pub event_time_ms: i64,
    /// One JSON document, without the trailing newline.
    pub json: Bytes,
}

impl LakeRecord {
    /// An event's JSON as one line of the lake. A line break in a JSON document can only be
    /// whitespace between tokens (inside a string it is escaped), so a document sent with line
    /// breaks (pretty-printed, by a producer other than the collector) keeps its meaning with a
    /// space for each; left in, it would split the event over lines of a newline-delimited file.
    pub fn new(event_time_ms: i64, json: Bytes) -> LakeRecord {
        let json = if memchr::memchr2(b'\n', b'\r', &json).is_some() {
            let flat: Vec<u8> = json
                .iter()
                .map(|&b| if matches!(b, b'\n' | b'\r') { b' ' } else { b })
                .collect();
            Bytes::from(flat)
        } else {
            json
        };
        LakeRecord {
            event_time_ms,
            json,
        }
    }
}

#[async_trait]
pub trait LakeWriter: Send + Sync + 'static {
    /// Delivers every record or fails (partial failures are retried inside).
    async fn write_events(&self, records: &[LakeRecord]) -> Result<()>;

    /// Stream records that could not be decoded, kept under `errors/` with the reason.
    async fn write_errors(&self, records: &[UndecodableRecord]) -> Result<()>;
}

#[derive(Clone, Debug, PartialEq)]
pub struct UndecodableRecord {
    pub received_at_ms: i64,
    pub reason: String,
    pub data: Bytes,
}

/// Most bytes of an undecodable record kept in its line under `errors/`, and of its reason. A
/// line must fit one Firehose record (1,000 KiB) or the write fails for good, and base64 makes
/// data a third larger; a record that could not be decoded is kept to be looked at, and its
/// first half megabyte says what it was.
pub const ERROR_DATA_BYTES: usize = 512 * 1024;
const ERROR_REASON_BYTES: usize = 1024;

/// One line under `errors/` (the same on S3 and on disk), without its newline:
/// `{"received_at_ms":…,"reason":"…","data_base64":"…"}`, plus `"truncated_from_bytes":n` when
/// only the first [`ERROR_DATA_BYTES`] of the data are kept.
pub fn error_line(record: &UndecodableRecord) -> Vec<u8> {
    use base64::Engine;

    #[derive(serde::Serialize)]
    struct ErrorLine<'a> {
        received_at_ms: i64,
        reason: &'a str,
        data_base64: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        truncated_from_bytes: Option<usize>,
    }
    let data = &record.data[..record.data.len().min(ERROR_DATA_BYTES)];
    let mut reason_end = record.reason.len().min(ERROR_REASON_BYTES);
    while !record.reason.is_char_boundary(reason_end) {
        reason_end -= 1;
    }
    let line = ErrorLine {
        received_at_ms: record.received_at_ms,
        reason: &record.reason[..reason_end],
        data_base64: base64::engine::general_purpose::STANDARD.encode(data),
        truncated_from_bytes: (data.len() < record.data.len()).then_some(record.data.len()),
    };
    serde_json::to_vec(&line).expect("an error line is plain JSON")
}

/// `events/dt=2026-11-25/hour=09/` for an event time in ms (UTC).
pub fn event_partition(event_time_ms: i64) -> String {
    let (date, hour) = utc_date_hour(event_time_ms);
    format!("events/dt={date}/hour={hour:02}/")
}

/// `errors/dt=2026-11-25/` for records that could not be decoded.
pub fn error_partition(received_at_ms: i64) -> String {
    let (date, _) = utc_date_hour(received_at_ms);
    format!("errors/dt={date}/")
}

fn utc_date_hour(ms: i64) -> (String, u8) {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let date = format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day());
    (date, t.hour())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_by_utc_date_and_hour() {
        // 2024-11-25T09:30:00Z
        assert_eq!(
            event_partition(1_732_527_000_000),
            "events/dt=2024-11-25/hour=09/"
        );
        assert_eq!(error_partition(0), "errors/dt=1970-01-01/");
    }

    #[test]
    fn an_event_with_line_breaks_becomes_one_line_of_the_same_json() {
        let pretty = serde_json::to_vec_pretty(&serde_json::json!({
            "a": "x\ny", "b": [1, 2]
        }))
        .unwrap();
        assert!(pretty.contains(&b'\n'));
        let record = LakeRecord::new(0, Bytes::from(pretty.clone()));
        assert!(!record.json.iter().any(|b| matches!(b, b'\n' | b'\r')));
        let back: serde_json::Value = serde_json::from_slice(&record.json).unwrap();
        assert_eq!(
            back,
            serde_json::from_slice::<serde_json::Value>(&pretty).unwrap()
        );
        assert_eq!(
            back["a"], "x\ny",
            "the escaped line break inside the string stays"
        );
        // Without line breaks, the very bytes.
        let flat = Bytes::from_static(br#"{"a":1}"#);
        assert_eq!(
            LakeRecord::new(0, flat.clone()).json.as_ptr(),
            flat.as_ptr()
        );
    }

    #[test]
    fn an_error_line_keeps_the_start_of_a_large_record_within_a_firehose_record() {
        let record = UndecodableRecord {
            received_at_ms: 5,
            reason: "é".repeat(2000),
            data: Bytes::from(vec![b'x'; 1024 * 1024]),
        };
        let line = error_line(&record);
        assert!(line.len() < 1000 * 1024, "{} bytes", line.len());
        let line: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(line["truncated_from_bytes"], 1024 * 1024);
        assert_eq!(line["reason"].as_str().unwrap().len(), 1024);
        let small = UndecodableRecord {
            data: Bytes::from_static(b"not json"),
            ..record
        };
        let line: serde_json::Value = serde_json::from_slice(&error_line(&small)).unwrap();
        assert_eq!(line["data_base64"], "bm90IGpzb24=");
        assert!(line.get("truncated_from_bytes").is_none());
    }
}
