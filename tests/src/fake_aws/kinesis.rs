//! One Kinesis data stream: records kept per shard, written by PutRecords (or a test directly)
//! and read through shard iterators as Kinesis hands them out.
//!
//! Sequence numbers are one counter over the stream, 20 digits wide, so they grow within each
//! shard as Kinesis' do. A record's shard is picked by a hash of its partition key (the same key
//! always lands on the same shard); the hash key ranges ListShards reports split the key space
//! evenly and are for show.

use std::collections::{HashMap, HashSet, VecDeque};

use axum::http::StatusCode;
use serde_json::{json, Value};

use super::{answer_entries, decode_data, AwsError, BatchFault, BatchFaults};

/// GetRecords' most records per call.
const MAX_GET_RECORDS: u64 = 10_000;

/// One record in the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRecord {
    pub shard_id: String,
    pub sequence: String,
    pub partition_key: String,
    pub data: Vec<u8>,
    pub arrived_ms: i64,
}

/// What GetRecords does with one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadFault {
    /// Answers it.
    Pass,
    /// ProvisionedThroughputExceededException (HTTP 400), as when a shard's 5 reads or 2 MB per
    /// second are used up.
    Throttle,
    /// ExpiredIteratorException: the iterator of this call and every other iterator handed out
    /// so far have expired, as if the consumer had held them longer than their 5 minutes.
    Expire,
}

/// One read call, as the fake saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadCall {
    /// GetShardIterator: the shard, the iterator type and the starting sequence number if any.
    Iterator {
        shard_id: String,
        kind: String,
        sequence: Option<String>,
    },
    /// GetRecords answered with `count` records.
    Records { shard_id: String, count: usize },
    /// GetRecords throttled.
    Throttled { shard_id: String },
    /// GetRecords refused with an expired iterator, which would have read on after `after` (the
    /// sequence of the record before its position; `None` at the start of the shard).
    Expired {
        shard_id: String,
        after: Option<String>,
    },
}

/// Where a handed-out iterator reads: its shard, the index of the next record there, and its
/// number in the order of handing out.
#[derive(Clone, Copy)]
struct ShardIterator {
    shard: usize,
    position: usize,
    number: u64,
}

pub struct FakeStream {
    shards: Vec<Vec<StoredRecord>>,
    sequences: u64,
    iterators: HashMap<String, ShardIterator>,
    issued: u64,
    /// Iterators numbered below this have expired.
    expired_below: u64,
    /// Faults of the coming PutRecords calls.
    pub put_faults: BatchFaults,
    /// Faults of the coming GetRecords calls, in order; an empty queue passes.
    pub read_faults: VecDeque<ReadFault>,
    /// Shards every GetRecords of which is throttled, whatever `read_faults` says: a hot shard.
    pub throttled_shards: HashSet<String>,
    /// How many records each PutRecords call carried.
    pub put_calls: Vec<usize>,
    /// Every GetShardIterator and GetRecords call, in order.
    pub reads: Vec<ReadCall>,
}

impl FakeStream {
    pub(super) fn new(shards: usize) -> FakeStream {
        assert!(shards > 0, "a stream has at least one shard");
        FakeStream {
            shards: vec![Vec::new(); shards],
            sequences: 0,
            iterators: HashMap::new(),
            issued: 0,
            expired_below: 0,
            put_faults: BatchFaults::default(),
            read_faults: VecDeque::new(),
            throttled_shards: HashSet::new(),
            put_calls: Vec::new(),
            reads: Vec::new(),
        }
    }

    /// The id of the shard at `index`, as Kinesis spells them.
    pub fn shard_id(index: usize) -> String {
        format!("shardId-{index:012}")
    }

    /// Stores a record on the shard its partition key hashes to, as PutRecords does.
    pub fn append(&mut self, partition_key: &str, data: &[u8]) -> &StoredRecord {
        let hash = partition_key
            .bytes()
            .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
        let shard = usize::try_from(hash % self.shards.len() as u64).unwrap_or(0);
        self.sequences += 1;
        let records = &mut self.shards[shard];
        records.push(StoredRecord {
            shard_id: Self::shard_id(shard),
            sequence: format!("{:020}", self.sequences),
            partition_key: partition_key.to_owned(),
            data: data.to_vec(),
            arrived_ms: now_ms(),
        });
        records.last().expect("just pushed")
    }

    /// Every record in the stream, shard by shard, in order within each.
    pub fn records(&self) -> impl Iterator<Item = &StoredRecord> {
        self.shards.iter().flatten()
    }

    pub(super) fn call(&mut self, operation: &str, request: &Value) -> Result<Value, AwsError> {
        match operation {
            "DescribeStreamSummary" => Ok(json!({"StreamDescriptionSummary": {
                "StreamName": request["StreamName"],
                "StreamARN": "arn:aws:kinesis:us-east-1:123456789012:stream/fake",
                "StreamStatus": "ACTIVE", "RetentionPeriodHours": 24,
                "StreamCreationTimestamp": 1.7e9, "EnhancedMonitoring": [],
                "OpenShardCount": self.shards.len()}})),
            "PutRecords" => self.put_records(request),
            "ListShards" => Ok(self.list_shards()),
            "GetShardIterator" => self.get_shard_iterator(request),
            "GetRecords" => self.get_records(request),
            other => Err(AwsError::unknown_operation(other)),
        }
    }

    fn put_records(&mut self, request: &Value) -> Result<Value, AwsError> {
        let records = request["Records"]
            .as_array()
            .ok_or_else(|| AwsError::bad_request("PutRecords without Records"))?
            .iter()
            .map(|record| {
                let key = record["PartitionKey"].as_str().unwrap_or_default();
                Ok((key.to_owned(), decode_data(record)?))
            })
            .collect::<Result<Vec<_>, AwsError>>()?;
        self.put_calls.push(records.len());
        let fault = self.put_faults.take();
        if fault == BatchFault::Throttle {
            return Err(throttled("Rate exceeded for stream fake"));
        }
        let refusal = json!({"ErrorCode": "ProvisionedThroughputExceededException",
                             "ErrorMessage": "Rate exceeded for shard"});
        let (answers, refused) = answer_entries(records, &fault, &refusal, |(key, data)| {
            let stored = self.append(&key, &data);
            json!({"SequenceNumber": stored.sequence, "ShardId": stored.shard_id})
        });
        Ok(json!({"FailedRecordCount": refused, "Records": answers}))
    }

    fn list_shards(&self) -> Value {
        let count = self.shards.len() as u128;
        let width = u128::MAX / count;
        let shards: Vec<Value> = (0..self.shards.len())
            .map(|index| {
                let start = width * index as u128;
                let end = if index + 1 == self.shards.len() {
                    u128::MAX
                } else {
                    start + width - 1
                };
                json!({"ShardId": Self::shard_id(index),
                       "HashKeyRange": {"StartingHashKey": start.to_string(),
                                        "EndingHashKey": end.to_string()},
                       "SequenceNumberRange": {"StartingSequenceNumber": format!("{:020}", 0)}})
            })
            .collect();
        json!({"Shards": shards})
    }

    fn get_shard_iterator(&mut self, request: &Value) -> Result<Value, AwsError> {
        let shard_id = request["ShardId"].as_str().unwrap_or_default();
        let shard = (0..self.shards.len())
            .find(|&i| Self::shard_id(i) == shard_id)
            .ok_or_else(|| {
                AwsError::new(
                    StatusCode::BAD_REQUEST,
                    "ResourceNotFoundException",
                    format!("no shard {shard_id} in stream fake"),
                )
            })?;
        let kind = request["ShardIteratorType"].as_str().unwrap_or_default();
        let sequence = request["StartingSequenceNumber"].as_str();
        let records = &self.shards[shard];
        let first_where = |keep: fn(u128, u128) -> bool| -> Result<usize, AwsError> {
            let wanted = sequence
                .and_then(|s| s.parse::<u128>().ok())
                .ok_or_else(|| AwsError::bad_request(format!("{kind} needs a sequence number")))?;
            Ok(records
                .iter()
                .position(|r| keep(number(&r.sequence), wanted))
                .unwrap_or(records.len()))
        };
        let position = match kind {
            "TRIM_HORIZON" => 0,
            "LATEST" => records.len(),
            "AT_SEQUENCE_NUMBER" => first_where(|record, wanted| record >= wanted)?,
            "AFTER_SEQUENCE_NUMBER" => first_where(|record, wanted| record > wanted)?,
            other => {
                return Err(AwsError::bad_request(format!(
                    "the fake does not hand out {other:?} iterators"
                )))
            }
        };
        self.reads.push(ReadCall::Iterator {
            shard_id: shard_id.to_owned(),
            kind: kind.to_owned(),
            sequence: sequence.map(str::to_owned),
        });
        Ok(json!({"ShardIterator": self.issue(shard, position)}))
    }

    fn get_records(&mut self, request: &Value) -> Result<Value, AwsError> {
        let token = request["ShardIterator"].as_str().unwrap_or_default();
        let ShardIterator {
            shard,
            position,
            number,
        } = *self
            .iterators
            .get(token)
            .ok_or_else(|| AwsError::bad_request(format!("no shard iterator {token:?}")))?;
        let shard_id = Self::shard_id(shard);
        let mut fault = self.read_faults.pop_front().unwrap_or(ReadFault::Pass);
        if self.throttled_shards.contains(&shard_id) {
            fault = ReadFault::Throttle;
        }
        if fault == ReadFault::Throttle {
            self.reads.push(ReadCall::Throttled {
                shard_id: shard_id.clone(),
            });
            return Err(throttled(&format!(
                "Rate exceeded for shard {shard_id} in stream fake"
            )));
        }
        if fault == ReadFault::Expire {
            self.expired_below = self.issued;
        }
        let records = &self.shards[shard];
        if number < self.expired_below {
            let after = position.checked_sub(1).map(|i| records[i].sequence.clone());
            self.reads.push(ReadCall::Expired { shard_id, after });
            return Err(AwsError::new(
                StatusCode::BAD_REQUEST,
                "ExpiredIteratorException",
                format!("Iterator expired. The iterator was created at {number}"),
            ));
        }
        let limit = request["Limit"].as_u64().unwrap_or(MAX_GET_RECORDS);
        let end = records
            .len()
            .min(position.saturating_add(usize::try_from(limit).unwrap_or(usize::MAX)));
        let read: Vec<Value> = records[position..end].iter().map(record_json).collect();
        let millis_behind = records
            .get(end)
            .map_or(0, |next| (now_ms() - next.arrived_ms).max(0));
        self.reads.push(ReadCall::Records {
            shard_id,
            count: read.len(),
        });
        Ok(json!({"Records": read,
                  "NextShardIterator": self.issue(shard, end),
                  "MillisBehindLatest": millis_behind}))
    }

    /// A new iterator reading `shard` from record index `position`.
    fn issue(&mut self, shard: usize, position: usize) -> String {
        let number = self.issued;
        self.issued += 1;
        let token = format!("fake-iterator-{number}");
        self.iterators.insert(
            token.clone(),
            ShardIterator {
                shard,
                position,
                number,
            },
        );
        token
    }
}

/// A record as GetRecords answers it.
fn record_json(record: &StoredRecord) -> Value {
    use base64::Engine;
    json!({"SequenceNumber": record.sequence,
           "PartitionKey": record.partition_key,
           "Data": base64::engine::general_purpose::STANDARD.encode(&record.data),
           "ApproximateArrivalTimestamp": record.arrived_ms as f64 / 1000.0})
}

fn throttled(message: &str) -> AwsError {
    AwsError::new(
        StatusCode::BAD_REQUEST,
        "ProvisionedThroughputExceededException",
        message,
    )
}

/// The value of one of the fake's own sequence numbers.
fn number(sequence: &str) -> u128 {
    sequence.parse().expect("the fake's sequences are numbers")
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
