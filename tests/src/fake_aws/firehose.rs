//! Firehose delivery streams: PutRecordBatch stores what it accepts, per delivery stream, and
//! remembers what every call carried.

use axum::http::StatusCode;
use serde_json::{json, Value};

use super::{answer_entries, decode_data, AwsError, BatchFault, BatchFaults};

/// One PutRecordBatch call: the delivery stream it named and every record it carried, the
/// refused ones too.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FirehoseCall {
    pub delivery_stream: String,
    pub records: Vec<Vec<u8>>,
}

#[derive(Default)]
pub struct FakeFirehose {
    /// Faults of the coming PutRecordBatch calls.
    pub faults: BatchFaults,
    /// Every PutRecordBatch call, in order.
    pub calls: Vec<FirehoseCall>,
    /// Every record stored, with its delivery stream, in order.
    pub delivered: Vec<(String, Vec<u8>)>,
}

impl FakeFirehose {
    pub(super) fn call(&mut self, operation: &str, request: &Value) -> Result<Value, AwsError> {
        if operation != "PutRecordBatch" {
            return Err(AwsError::unknown_operation(operation));
        }
        let delivery_stream = request["DeliveryStreamName"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let records = request["Records"]
            .as_array()
            .ok_or_else(|| AwsError::bad_request("PutRecordBatch without Records"))?
            .iter()
            .map(decode_data)
            .collect::<Result<Vec<_>, AwsError>>()?;
        self.calls.push(FirehoseCall {
            delivery_stream: delivery_stream.clone(),
            records: records.clone(),
        });
        let fault = self.faults.take();
        if fault == BatchFault::Throttle {
            // Firehose answers an overloaded stream this way, a server fault (HTTP 500).
            return Err(AwsError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "ServiceUnavailableException",
                format!("Slow down. Throughput limits of {delivery_stream} exceeded"),
            ));
        }
        let refusal = json!({"ErrorCode": "ServiceUnavailableException",
                             "ErrorMessage": "Slow down."});
        let (answers, refused) = answer_entries(records, &fault, &refusal, |data| {
            self.delivered.push((delivery_stream.clone(), data));
            json!({"RecordId": format!("fake-record-{}", self.delivered.len())})
        });
        Ok(json!({"FailedPutCount": refused, "Encrypted": false, "RequestResponses": answers}))
    }
}
