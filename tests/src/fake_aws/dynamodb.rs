//! DynamoDB's BatchWriteItem and TransactWriteItems, for the failures moto cannot make:
//! BatchWriteItem requests the fault picks come back as `UnprocessedItems` (the others are
//! carried out on a map of items keyed by their key attributes), and TransactWriteItems is
//! cancelled with the reasons a test gives (throttling, a concurrent transaction).

use std::collections::BTreeMap;

use axum::http::StatusCode;
use serde_json::{json, Map, Value};

use super::{AwsError, BatchFault, BatchFaults};

/// One BatchWriteItem call: the table and each request as sent (`PutRequest` / `DeleteRequest`
/// JSON), the unprocessed ones too.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchWriteCall {
    pub table: String,
    pub requests: Vec<Value>,
}

#[derive(Default)]
pub struct FakeDynamo {
    /// Faults of the coming BatchWriteItem calls: `Refuse` leaves those positions unprocessed,
    /// `Throttle` refuses the call (ProvisionedThroughputExceededException).
    pub faults: BatchFaults,
    /// Every BatchWriteItem call, in order.
    pub calls: Vec<BatchWriteCall>,
    /// The items, per table, by their key (the `key_attributes` values, in order, as JSON).
    pub tables: BTreeMap<String, BTreeMap<String, Value>>,
    /// The key attributes of every table (as the tables are created: hash key, range key).
    pub key_attributes: Vec<String>,
    /// Puts carried out, in order, as the item's key: a request sent again after being carried
    /// out would show here twice.
    pub puts_done: Vec<String>,
    /// For the coming TransactWriteItems calls in order: the cancellation reason codes of each
    /// of its items (`"None"` for an item that was fine). Once empty, calls succeed (and store
    /// nothing: the fake keeps no transactional items).
    pub transaction_cancellations: std::collections::VecDeque<Vec<&'static str>>,
    /// TransactWriteItems calls answered.
    pub transactions: usize,
}

impl FakeDynamo {
    pub(super) fn call(&mut self, operation: &str, request: &Value) -> Result<Value, AwsError> {
        match operation {
            "BatchWriteItem" => self.batch_write_item(request),
            "TransactWriteItems" => self.transact_write_items(),
            _ => Err(AwsError::unknown_operation(operation)),
        }
    }

    fn transact_write_items(&mut self) -> Result<Value, AwsError> {
        self.transactions += 1;
        let Some(codes) = self.transaction_cancellations.pop_front() else {
            return Ok(json!({}));
        };
        let reasons: Vec<Value> = codes
            .iter()
            .map(|code| json!({"Code": code, "Message": format!("{code} (fake)")}))
            .collect();
        Err(AwsError::new(
            StatusCode::BAD_REQUEST,
            "TransactionCanceledException",
            format!(
                "Transaction cancelled, please refer cancellation reasons [{}]",
                codes.join(", ")
            ),
        )
        .with_member("CancellationReasons", Value::Array(reasons)))
    }

    fn batch_write_item(&mut self, request: &Value) -> Result<Value, AwsError> {
        let tables = request["RequestItems"]
            .as_object()
            .ok_or_else(|| AwsError::bad_request("BatchWriteItem without RequestItems"))?;
        let fault = self.faults.take();
        if fault == BatchFault::Throttle {
            return Err(AwsError::new(
                StatusCode::BAD_REQUEST,
                "ProvisionedThroughputExceededException",
                "The level of configured provisioned throughput for the table was exceeded",
            ));
        }
        let mut unprocessed = Map::new();
        for (table, requests) in tables {
            let requests = requests
                .as_array()
                .ok_or_else(|| AwsError::bad_request("a table's requests are not a list"))?;
            self.calls.push(BatchWriteCall {
                table: table.clone(),
                requests: requests.clone(),
            });
            let mut left = Vec::new();
            for (position, request) in requests.iter().enumerate() {
                if fault.refuses(position) {
                    left.push(request.clone());
                } else {
                    self.carry_out(table, request)?;
                }
            }
            if !left.is_empty() {
                unprocessed.insert(table.clone(), Value::Array(left));
            }
        }
        Ok(json!({"UnprocessedItems": unprocessed}))
    }

    fn carry_out(&mut self, table: &str, request: &Value) -> Result<(), AwsError> {
        if let Some(item) = request["PutRequest"]["Item"].as_object() {
            let key = self.key_of(item)?;
            self.puts_done.push(key.clone());
            self.tables
                .entry(table.to_owned())
                .or_default()
                .insert(key, Value::Object(item.clone()));
        } else if let Some(key) = request["DeleteRequest"]["Key"].as_object() {
            let key = self.key_of(key)?;
            self.tables
                .entry(table.to_owned())
                .or_default()
                .remove(&key);
        } else {
            return Err(AwsError::bad_request(format!(
                "neither a put nor a delete: {request}"
            )));
        }
        Ok(())
    }

    fn key_of(&self, item: &Map<String, Value>) -> Result<String, AwsError> {
        let parts = self
            .key_attributes
            .iter()
            .map(|name| {
                item.get(name)
                    .map(Value::to_string)
                    .ok_or_else(|| AwsError::bad_request(format!("the key lacks {name}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(parts.join("|"))
    }
}
