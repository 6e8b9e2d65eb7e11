//! An in-process fake of the AWS services the event stream runs on, for the faults moto cannot
//! make on demand: Kinesis Data Streams (one stream: PutRecords, DescribeStreamSummary,
//! ListShards, GetShardIterator, GetRecords), Firehose (PutRecordBatch) and DynamoDB
//! (BatchWriteItem), answering their JSON protocol so that the real AWS SDK talks to it over
//! HTTP.
//!
//! A test says what goes wrong in the next calls ([`BatchFault`], [`ReadFault`]) through
//! [`FakeAws::with`], and reads back there what every call carried and what was stored.

mod dynamodb;
mod firehose;
mod kinesis;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use tokio::sync::oneshot;

pub use dynamodb::{BatchWriteCall, FakeDynamo};
pub use firehose::{FakeFirehose, FirehoseCall};
pub use kinesis::{FakeStream, ReadCall, ReadFault, StoredRecord};

/// Both services' state, behind the lock [`FakeAws::with`] takes.
pub struct FakeServices {
    pub kinesis: FakeStream,
    pub firehose: FakeFirehose,
    pub dynamodb: FakeDynamo,
}

type Shared = Arc<Mutex<FakeServices>>;

/// The fake, listening on a loopback port until dropped or [`FakeAws::go_down`].
pub struct FakeAws {
    /// The URL to give the SDK as its endpoint.
    pub endpoint: String,
    services: Shared,
    stop: Option<oneshot::Sender<()>>,
}

impl FakeAws {
    /// Serves a Kinesis stream of `shards` open shards, empty, and a Firehose that stores every
    /// record it is sent.
    pub async fn start(shards: usize) -> FakeAws {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port for the fake AWS");
        let endpoint = format!(
            "http://{}",
            listener.local_addr().expect("the fake's own address")
        );
        let services = Arc::new(Mutex::new(FakeServices {
            kinesis: FakeStream::new(shards),
            firehose: FakeFirehose::default(),
            dynamodb: FakeDynamo::default(),
        }));
        let (stop, stopped) = oneshot::channel::<()>();
        let app = axum::Router::new()
            .fallback(answer)
            .with_state(services.clone());
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
                .expect("the fake AWS serves");
        });
        FakeAws {
            endpoint,
            services,
            stop: Some(stop),
        }
    }

    /// Stops answering: the SDK's next calls fail to connect.
    pub fn go_down(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// An SDK configuration that sends every service's calls to the fake.
    pub fn sdk_config(&self) -> aws_config::SdkConfig {
        crate::local_sdk_config(&self.endpoint)
    }

    /// Runs `f` on the services' state: to set faults, put records, or read what happened.
    pub fn with<R>(&self, f: impl FnOnce(&mut FakeServices) -> R) -> R {
        f(&mut self
            .services
            .lock()
            .expect("no test panicked holding the fake"))
    }
}

impl Drop for FakeAws {
    fn drop(&mut self) {
        self.go_down();
    }
}

/// What a batch write (Kinesis PutRecords, Firehose PutRecordBatch) does with one call.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum BatchFault {
    /// Stores every entry.
    #[default]
    Accept,
    /// Refuses the entries at these positions of the call and stores the others.
    Refuse(Vec<usize>),
    /// Refuses every entry of the call.
    RefuseAll,
    /// Refuses the whole call with an HTTP error; stores nothing.
    Throttle,
}

impl BatchFault {
    /// Whether the entry at `position` of the call is refused.
    fn refuses(&self, position: usize) -> bool {
        match self {
            BatchFault::Refuse(positions) => positions.contains(&position),
            BatchFault::RefuseAll => true,
            BatchFault::Accept | BatchFault::Throttle => false,
        }
    }
}

/// The faults of one batch-write operation's coming calls: `next` in order, then `after` for
/// every later call.
#[derive(Clone, Debug, Default)]
pub struct BatchFaults {
    pub next: VecDeque<BatchFault>,
    pub after: BatchFault,
}

impl BatchFaults {
    /// Faults `next` for the next calls, then none.
    pub fn then_accept(next: impl IntoIterator<Item = BatchFault>) -> BatchFaults {
        BatchFaults {
            next: next.into_iter().collect(),
            after: BatchFault::Accept,
        }
    }

    fn take(&mut self) -> BatchFault {
        self.next.pop_front().unwrap_or_else(|| self.after.clone())
    }
}

/// An error answer of the JSON protocol: the SDK reads the code from `__type`.
struct AwsError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// Members of the error shape beyond its type and message.
    members: serde_json::Map<String, Value>,
}

impl AwsError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> AwsError {
        AwsError {
            status,
            code,
            message: message.into(),
            members: serde_json::Map::new(),
        }
    }

    fn with_member(mut self, name: &str, value: Value) -> AwsError {
        self.members.insert(name.to_owned(), value);
        self
    }

    /// A request the fake cannot read.
    fn bad_request(message: impl Into<String>) -> AwsError {
        AwsError::new(StatusCode::BAD_REQUEST, "InvalidArgumentException", message)
    }

    fn unknown_operation(target: &str) -> AwsError {
        AwsError::new(
            StatusCode::BAD_REQUEST,
            "UnknownOperationException",
            format!("the fake does not do {target:?}"),
        )
    }
}

impl IntoResponse for AwsError {
    fn into_response(self) -> Response {
        (
            self.status,
            [("content-type", "application/x-amz-json-1.1")],
            {
                let mut body = self.members;
                body.insert("__type".into(), json!(self.code));
                body.insert("message".into(), json!(self.message));
                Value::Object(body).to_string()
            },
        )
            .into_response()
    }
}

/// Dispatches a call by its `X-Amz-Target` (`<service version>.<operation>`).
async fn answer(State(services): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return AwsError::new(
            StatusCode::BAD_REQUEST,
            "SerializationException",
            "the body is not JSON",
        )
        .into_response();
    };
    let mut services = services.lock().expect("no test panicked holding the fake");
    let answered = match target.split_once('.') {
        Some(("Kinesis_20131202", operation)) => services.kinesis.call(operation, &request),
        Some(("Firehose_20150804", operation)) => services.firehose.call(operation, &request),
        Some(("DynamoDB_20120810", operation)) => services.dynamodb.call(operation, &request),
        _ => Err(AwsError::unknown_operation(target)),
    };
    match answered {
        Ok(answer) => (
            [("content-type", "application/x-amz-json-1.1")],
            answer.to_string(),
        )
            .into_response(),
        Err(error) => error.into_response(),
    }
}

/// The bytes of a base64 `Data` member of a request record.
fn decode_data(record: &Value) -> Result<Vec<u8>, AwsError> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(record["Data"].as_str().unwrap_or_default())
        .map_err(|e| AwsError::bad_request(format!("Data is not base64: {e}")))
}

/// The answers to the entries of one batch call, in order: those `fault` refuses get `refusal`,
/// the others are stored by `store`, which gives their answer. Also returns how many were refused.
fn answer_entries<T>(
    entries: Vec<T>,
    fault: &BatchFault,
    refusal: &Value,
    mut store: impl FnMut(T) -> Value,
) -> (Vec<Value>, usize) {
    let mut refused = 0;
    let answers = entries
        .into_iter()
        .enumerate()
        .map(|(position, entry)| {
            if fault.refuses(position) {
                refused += 1;
                refusal.clone()
            } else {
                store(entry)
            }
        })
        .collect();
    (answers, refused)
}
