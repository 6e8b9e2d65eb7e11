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
}
