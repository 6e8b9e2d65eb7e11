//! The lake through Kinesis Data Firehose into S3: [`LakeWriter`] over PutRecordBatch.
//!
//! Every record goes out as its JSON bytes plus `b'\n'`, so the S3 objects Firehose writes are
//! newline-delimited JSON, in PutRecordBatch calls of at most 500 records and 4 MiB; refused
//! entries are resent with backoff (see [`super::retry`]).
//!
//! Events and undecodable records go to two delivery streams: events to
//! [`AwsConfig::delivery_stream`](crate::AwsConfig) (prefix `events/`), undecodable records to
//! the one named by [`errors_delivery_stream`] (`AwsConfig::errors_delivery_stream`, by default
//! `<delivery_stream>-errors`; prefix `errors/`), one JSON line each:
//! `{"received_at_ms":…,"reason":"…","data_base64":"…"}`. Two streams because one delivery
//! stream has one S3 prefix layout: mixing error lines into the event stream would put them
//! among the events, where every reader of the lake would have to skip them. On AWS both streams
//! partition by time with dynamic partitioning (see [`super::provision`]).

use async_trait::async_trait;
use aws_sdk_firehose::primitives::Blob;
use aws_sdk_firehose::types::Record;
use aws_sdk_firehose::Client;
use bytes::Bytes;

use super::batch::{chunk, FIREHOSE_PUT_RECORD_BATCH};
use super::errors::{build_error, is_throttling_code, sdk_error};
use super::retry::{send_all, EntryFailure, Outcomes, RetryPolicy};
use crate::error::{ConnectorError, Result};
use crate::lake::{error_line, LakeRecord, LakeWriter, UndecodableRecord};
use crate::AwsConfig;

const SERVICE: &str = "firehose";

/// The delivery stream for undecodable records: [`AwsConfig::errors_delivery_stream`] when set,
/// otherwise the events stream's name plus `-errors`.
pub fn errors_delivery_stream(config: &AwsConfig) -> String {
    match &config.errors_delivery_stream {
        Some(name) => name.clone(),
        None => format!("{}-errors", config.delivery_stream),
    }
}

pub(crate) struct FirehoseLake {
    client: Client,
    events_stream: String,
    errors_stream: String,
    retry: RetryPolicy,
}

impl FirehoseLake {
    pub(crate) fn new(
        client: Client,
        events_stream: impl Into<String>,
        errors_stream: impl Into<String>,
    ) -> Self {
        FirehoseLake {
            client,
            events_stream: events_stream.into(),
            errors_stream: errors_stream.into(),
            retry: RetryPolicy::default(),
        }
    }

    /// Delivers newline-terminated `lines` to `stream`, every one or an error.
    async fn deliver(&self, stream: &str, lines: Vec<Bytes>) -> Result<()> {
        let total = lines.len();
        for lines in chunk(SERVICE, lines, &FIREHOSE_PUT_RECORD_BATCH, Bytes::len)? {
            send_all(SERVICE, &self.retry, lines, |batch| {
                self.put_record_batch(stream, batch)
            })
            .await?;
        }
        tracing::debug!(delivery_stream = stream, records = total, "delivered");
        Ok(())
    }

    /// One PutRecordBatch call; the outcome of each record in order.
    async fn put_record_batch(&self, stream: &str, lines: Vec<Bytes>) -> Result<Outcomes> {
        let records = lines
            .into_iter()
            .map(|line| Record::builder().data(Blob::new(Vec::from(line))).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| build_error(SERVICE, e))?;
        let output = self
            .client
            .put_record_batch()
            .delivery_stream_name(stream)
            .set_records(Some(records))
            .send()
            .await
            .map_err(|e| sdk_error(SERVICE, e))?;
        Ok(output
            .request_responses()
            .iter()
            .map(|response| {
                response.error_code().map(|code| EntryFailure {
                    code: code.to_owned(),
                    message: response.error_message().unwrap_or_default().to_owned(),
                    throttled: is_throttling_code(code),
                })
            })
            .collect())
    }
}

/// `json` with a `b'\n'` after it.
fn line(json: &[u8]) -> Bytes {
    let mut line = Vec::with_capacity(json.len() + 1);
    line.extend_from_slice(json);
    line.push(b'\n');
    Bytes::from(line)
}

#[async_trait]
impl LakeWriter for FirehoseLake {
    async fn write_events(&self, records: &[LakeRecord]) -> Result<()> {
        if let Some(index) = records.iter().position(|r| r.json.contains(&b'\n')) {
            return Err(ConnectorError::Misconfigured(format!(
                "{SERVICE}: lake record {index} holds a line break; the lake is one JSON per line"
            )));
        }
        // A Kinesis record (1 MiB) can be larger than a Firehose one (1,000 KiB). Refused, it
        // would fail the batch on every retry and stop its shard for good: it goes to
        // `errors/` instead, named and cut, and the rest of the batch to the lake.
        let max = FIREHOSE_PUT_RECORD_BATCH.max_record_bytes - 1;
        let (lines, too_large): (Vec<_>, Vec<_>) =
            records.iter().partition(|r| r.json.len() <= max);
        if !too_large.is_empty() {
            tracing::warn!(
                count = too_large.len(),
                "events too large for a Firehose record sent to errors/"
            );
            let received_at_ms = crate::clock::now_ms();
            let errors: Vec<UndecodableRecord> = too_large
                .into_iter()
                .map(|r| UndecodableRecord {
                    received_at_ms,
                    reason: format!(
                        "an event of {} bytes, over Firehose's {max} bytes per record",
                        r.json.len()
                    ),
                    data: r.json.clone(),
                })
                .collect();
            self.write_errors(&errors).await?;
        }
        let lines = lines.into_iter().map(|r| line(&r.json)).collect();
        self.deliver(&self.events_stream, lines).await
    }

    async fn write_errors(&self, records: &[UndecodableRecord]) -> Result<()> {
        let lines = records.iter().map(|r| line(&error_line(r))).collect();
        self.deliver(&self.errors_stream, lines).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_end_in_a_newline() {
        assert_eq!(&line(br#"{"a":1}"#)[..], b"{\"a\":1}\n");
    }

    #[test]
    fn errors_stream_is_named_after_the_events_stream() {
        assert_eq!(
            errors_delivery_stream(&AwsConfig::new("eu-central-1")),
            "retailmind-lake-errors"
        );
    }

    #[test]
    fn errors_stream_can_be_named_in_the_config() {
        let mut config = AwsConfig::new("eu-central-1");
        config.delivery_stream = "shop-lake".into();
        assert_eq!(errors_delivery_stream(&config), "shop-lake-errors");
        config.errors_delivery_stream = Some("shop-undecodable".into());
        assert_eq!(errors_delivery_stream(&config), "shop-undecodable");
    }
}
