//! One Kinesis data stream: records kept per shard, written by PutRecords (or a test directly)
//! and read through shard iterators as Kinesis hands them out.
//!
//! Sequence numbers are one counter over the stream, 20 digits wide, so they grow within each
//! shard as Kinesis' do. A record's shard is the open shard whose hash key range holds a hash of
//! its partition key (the same key always lands on the same shard while the stream is not
//! resharded). Resharding is as Kinesis does it: a split closes a shard and opens two children
//! over the halves of its range, a merge closes two adjacent shards and opens one child over
//! both; ListShards lists closed shards with an ending sequence number and children with their
//! parents, and GetRecords at the end of a closed shard answers no next iterator. A closed shard
//! can age out, as past its retention: it is no longer listed, and reads of it find no shard.

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
    /// GetRecords throttled, as the test asked ([`ReadFault::Throttle`], `throttled_shards`).
    Throttled { shard_id: String },
    /// GetRecords refused because the shard had answered 5 already within the last second,
    /// Kinesis's limit: a consumer that keeps to the limit never meets this.
    OverLimit { shard_id: String },
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

/// A shard's place in the stream: its hash key range, its parents, and whether it is closed.
#[derive(Clone, Debug)]
struct ShardMeta {
    start: u128,
    end: u128,
    parents: Vec<usize>,
    closed: bool,
}

pub struct FakeStream {
    shards: Vec<Vec<StoredRecord>>,
    meta: Vec<ShardMeta>,
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
    /// Closed shards that age out of the stream (past their retention) right after the next
    /// ListShards still listed them.
    pub age_out_after_listing: HashSet<String>,
    /// Shards aged out: not listed, and unknown to GetShardIterator and GetRecords.
    aged_out: HashSet<usize>,
    /// How many records each PutRecords call carried.
    pub put_calls: Vec<usize>,
    /// Every GetShardIterator and GetRecords call, in order.
    pub reads: Vec<ReadCall>,
    /// When each shard answered its GetRecords calls within the last second.
    answered: HashMap<usize, VecDeque<std::time::Instant>>,
}

/// GetRecords calls a shard answers per second at most.
const READS_PER_SECOND: usize = 5;

impl FakeStream {
    pub(super) fn new(shards: usize) -> FakeStream {
        assert!(shards > 0, "a stream has at least one shard");
        let width = u128::MAX / shards as u128;
        let meta = (0..shards)
            .map(|index| {
                let start = width * index as u128;
                ShardMeta {
                    start,
                    end: if index + 1 == shards {
                        u128::MAX
                    } else {
                        start + width - 1
                    },
                    parents: Vec::new(),
                    closed: false,
                }
            })
            .collect();
        FakeStream {
            shards: vec![Vec::new(); shards],
            meta,
            sequences: 0,
            iterators: HashMap::new(),
            issued: 0,
            expired_below: 0,
            put_faults: BatchFaults::default(),
            read_faults: VecDeque::new(),
            throttled_shards: HashSet::new(),
            age_out_after_listing: HashSet::new(),
            aged_out: HashSet::new(),
            answered: HashMap::new(),
            put_calls: Vec::new(),
            reads: Vec::new(),
        }
    }

    /// The id of the shard at `index`, as Kinesis spells them.
    pub fn shard_id(index: usize) -> String {
        format!("shardId-{index:012}")
    }

    /// Stores a record on the open shard its partition key hashes to, as PutRecords does.
    pub fn append(&mut self, partition_key: &str, data: &[u8]) -> &StoredRecord {
        let hash = partition_key
            .bytes()
            .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
        // Mixed (splitmix64's finaliser) and spread over the whole 128-bit key space, as
        // Kinesis' MD5 of the key is: keys that differ in one letter land far apart.
        let mut mixed = hash.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        mixed ^= mixed >> 31;
        let key = u128::from(mixed) << 64 | u128::from(hash);
        let shard = (0..self.meta.len())
            .find(|&i| {
                let m = &self.meta[i];
                !m.closed && m.start <= key && key <= m.end
            })
            .expect("the open shards cover the key space");
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

    /// Splits the open shard `shard_id` as SplitShard does: it is closed, and two children over
    /// the halves of its hash key range take the records of its keys from now on. Returns the
    /// children's ids.
    pub fn split(&mut self, shard_id: &str) -> [String; 2] {
        let parent = self.open_index(shard_id);
        let ShardMeta { start, end, .. } = self.meta[parent];
        let middle = start + (end - start) / 2;
        self.meta[parent].closed = true;
        [(start, middle), (middle + 1, end)]
            .map(|(start, end)| self.open_child(start, end, vec![parent]))
    }

    /// Merges the open adjacent shards `a` and `b` as MergeShards does: both are closed, and
    /// one child over both ranges takes their keys' records. Returns the child's id.
    pub fn merge(&mut self, a: &str, b: &str) -> String {
        let (a, b) = (self.open_index(a), self.open_index(b));
        let (low, high) = if self.meta[a].start < self.meta[b].start {
            (a, b)
        } else {
            (b, a)
        };
        assert_eq!(
            self.meta[low].end + 1,
            self.meta[high].start,
            "only adjacent shards merge"
        );
        self.meta[a].closed = true;
        self.meta[b].closed = true;
        let (start, end) = (self.meta[low].start, self.meta[high].end);
        self.open_child(start, end, vec![a, b])
    }

    fn open_index(&self, shard_id: &str) -> usize {
        (0..self.meta.len())
            .find(|&i| Self::shard_id(i) == shard_id && !self.meta[i].closed)
            .unwrap_or_else(|| panic!("no open shard {shard_id}"))
    }

    fn open_child(&mut self, start: u128, end: u128, parents: Vec<usize>) -> String {
        self.shards.push(Vec::new());
        self.meta.push(ShardMeta {
            start,
            end,
            parents,
            closed: false,
        });
        Self::shard_id(self.meta.len() - 1)
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
                "OpenShardCount": self.meta.iter().filter(|m| !m.closed).count()}})),
            "PutRecords" => self.put_records(request),
            "ListShards" => {
                let listed = self.list_shards();
                for shard_id in std::mem::take(&mut self.age_out_after_listing) {
                    let index = (0..self.meta.len())
                        .find(|&i| Self::shard_id(i) == shard_id && self.meta[i].closed)
                        .unwrap_or_else(|| panic!("no closed shard {shard_id} to age out"));
                    self.aged_out.insert(index);
                }
                Ok(listed)
            }
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
        let shards: Vec<Value> = self
            .meta
            .iter()
            .enumerate()
            .filter(|(index, _)| !self.aged_out.contains(index))
            .map(|(index, m)| {
                let mut range = json!({"StartingSequenceNumber": format!("{:020}", 0)});
                if m.closed {
                    let last = self.shards[index].last().map_or(0, |r| number(&r.sequence));
                    range["EndingSequenceNumber"] = json!(format!("{last:020}"));
                }
                let mut shard = json!({"ShardId": Self::shard_id(index),
                       "HashKeyRange": {"StartingHashKey": m.start.to_string(),
                                        "EndingHashKey": m.end.to_string()},
                       "SequenceNumberRange": range});
                if let Some(&parent) = m.parents.first() {
                    shard["ParentShardId"] = json!(Self::shard_id(parent));
                }
                if let Some(&adjacent) = m.parents.get(1) {
                    shard["AdjacentParentShardId"] = json!(Self::shard_id(adjacent));
                }
                shard
            })
            .collect();
        json!({"Shards": shards})
    }

    fn get_shard_iterator(&mut self, request: &Value) -> Result<Value, AwsError> {
        let shard_id = request["ShardId"].as_str().unwrap_or_default();
        let shard = (0..self.shards.len())
            .find(|&i| Self::shard_id(i) == shard_id && !self.aged_out.contains(&i))
            .ok_or_else(|| no_shard(shard_id))?;
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
        if self.aged_out.contains(&shard) {
            return Err(no_shard(&shard_id));
        }
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
        // Kinesis's own limit, over the calls that get this far: a call throttled above is taken
        // not to count, one refused for an expired iterator below counts.
        let now = std::time::Instant::now();
        let answered = self.answered.entry(shard).or_default();
        answered.retain(|at| now.duration_since(*at) < std::time::Duration::from_secs(1));
        if answered.len() >= READS_PER_SECOND {
            self.reads.push(ReadCall::OverLimit {
                shard_id: shard_id.clone(),
            });
            return Err(throttled(&format!(
                "Rate exceeded for shard {shard_id} in stream fake: over {READS_PER_SECOND} reads in a second"
            )));
        }
        answered.push_back(now);
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
        if self.meta[shard].closed && end == records.len() {
            // Read to the end of a closed shard: no next iterator, as Kinesis answers.
            return Ok(json!({"Records": read, "MillisBehindLatest": 0}));
        }
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

fn no_shard(shard_id: &str) -> AwsError {
    AwsError::new(
        StatusCode::BAD_REQUEST,
        "ResourceNotFoundException",
        format!("Shard {shard_id} in stream fake under account 123456789012 does not exist"),
    )
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
