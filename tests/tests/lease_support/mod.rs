//! What the lease tests share: an in-process stream with several shards that takes appends
//! while processors read it (the embedded log has one shard), wrappers that record which
//! instance works on which shard, and sessions computed from the input without the processor.

#![allow(dead_code)] // each test binary uses its own part of this module

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use retailmind_connectors::{
    ConnectorError, Lease, LeaseStore, ReadBatch, Result, ShardInfo, StreamEntry, StreamReader,
    StreamRecord,
};
use serde_json::json;

pub const T0: i64 = 1_764_064_800_000; // 2025-11-25T10:00:00Z
pub const MINUTE: i64 = 60_000;

/// One test event: its number, visitor and time. Its kind follows from its number (see
/// [`TestEvent::kind`]), so that sessions count page views, product views, cart adds and
/// purchases, and a purchase counted twice shows in the revenue.
#[derive(Clone, Debug)]
pub struct TestEvent {
    pub n: u64,
    pub visitor: String,
    pub ts: i64,
}

/// What a [`TestEvent`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    PageView,
    ProductView,
    AddToCart,
    /// Of `n * 100` cents.
    Purchase,
}

impl TestEvent {
    pub fn event_id(&self) -> String {
        format!("01936a1c-3b5e-7cc4-9a1e-{:012x}", self.n)
    }

    pub fn kind(&self) -> Kind {
        match self.n % 10 {
            0 => Kind::Purchase,
            3 | 7 => Kind::ProductView,
            5 => Kind::AddToCart,
            _ => Kind::PageView,
        }
    }

    pub fn url(&self) -> String {
        format!("https://shop.example/{}", self.n)
    }

    pub fn record(&self) -> StreamRecord {
        let product = json!({"product_id": format!("p-{}", self.n % 13)});
        let (kind, properties) = match self.kind() {
            Kind::PageView => ("page_view", json!({})),
            Kind::ProductView => ("product_view", product),
            Kind::AddToCart => (
                "add_to_cart",
                json!({"product_id": product["product_id"], "quantity": 1}),
            ),
            Kind::Purchase => (
                "purchase",
                json!({
                    "order_id": format!("o-{}", self.n),
                    "revenue_minor": self.n * 100,
                    "currency": "EUR",
                }),
            ),
        };
        let event = json!({
            "event_id": self.event_id(),
            "type": kind,
            "anonymous_id": self.visitor,
            "timestamp": self.ts,
            "context": {"page": {"url": self.url()}},
            "properties": properties
        });
        StreamRecord {
            partition_key: self.visitor.clone(),
            data: Bytes::from(event.to_string()),
        }
    }
}

/// `count` events of `visitors` visitors, each visitor's in time order; every seventh step of
/// a visitor comes after a 45-minute pause, so visitors have several sessions.
pub fn events(count: u64, visitors: u64) -> Vec<TestEvent> {
    let mut clock: HashMap<u64, i64> = HashMap::new();
    (0..count)
        .map(|n| {
            let v = n % visitors;
            let step = n / visitors;
            let ts = clock.entry(v).or_insert(T0);
            *ts += if step % 7 == 6 { 45 * MINUTE } else { MINUTE };
            TestEvent {
                n: n + 1,
                visitor: format!("visitor-{v}"),
                ts: *ts,
            }
        })
        .collect()
}

/// A session as computed from the test events alone, every field the events decide.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpectedSession {
    pub start_ms: i64,
    pub end_ms: i64,
    /// Sorted, repeats kept: an event folded in twice shows.
    pub event_ids: Vec<uuid::Uuid>,
    pub page_views: u32,
    pub products_viewed: u32,
    pub cart_adds: u32,
    pub purchases: u32,
    pub revenue_minor: i64,
    pub currency: Option<String>,
    pub entry_url: String,
    pub exit_url: String,
    pub session_number: u32,
    pub engaged: bool,
    pub bounce: bool,
}

impl ExpectedSession {
    fn of(session: &retailmind_schema::Session) -> ExpectedSession {
        ExpectedSession {
            start_ms: session.start_ms,
            end_ms: session.end_ms,
            event_ids: {
                let mut ids = session.event_ids.clone();
                ids.sort();
                ids
            },
            page_views: session.page_views,
            products_viewed: session.products_viewed,
            cart_adds: session.cart_adds,
            purchases: session.purchases,
            revenue_minor: session.revenue_minor,
            currency: session.currency.clone(),
            entry_url: session.entry_url.clone(),
            exit_url: session.exit_url.clone(),
            session_number: session.session_number,
            engaged: session.engaged,
            bounce: session.bounce,
        }
    }
}

/// A visitor's sessions computed from the events alone, by the product's definitions written
/// out again here: sorted by time, a new session after more than 30 minutes without an event;
/// engaged when it lasts over 10 s, has 2+ page views or an order; a bounce when not engaged
/// with at most one page view; numbered from 1 per visitor.
pub fn expected_sessions(events: &[TestEvent]) -> BTreeMap<String, Vec<ExpectedSession>> {
    let mut by_visitor: BTreeMap<String, Vec<&TestEvent>> = BTreeMap::new();
    for e in events {
        by_visitor.entry(e.visitor.clone()).or_default().push(e);
    }
    by_visitor
        .into_iter()
        .map(|(visitor, mut visits)| {
            visits.sort_by_key(|e| e.ts);
            let mut sessions: Vec<ExpectedSession> = Vec::new();
            for e in visits {
                let open = sessions
                    .last()
                    .is_some_and(|s| e.ts - s.end_ms <= 30 * MINUTE);
                if !open {
                    sessions.push(ExpectedSession {
                        start_ms: e.ts,
                        end_ms: e.ts,
                        event_ids: Vec::new(),
                        page_views: 0,
                        products_viewed: 0,
                        cart_adds: 0,
                        purchases: 0,
                        revenue_minor: 0,
                        currency: None,
                        entry_url: e.url(),
                        exit_url: String::new(),
                        session_number: sessions.len() as u32 + 1,
                        engaged: false,
                        bounce: false,
                    });
                }
                let s = sessions.last_mut().expect("a session is open");
                s.end_ms = e.ts;
                s.exit_url = e.url();
                s.event_ids.push(e.event_id().parse().unwrap());
                match e.kind() {
                    Kind::PageView => s.page_views += 1,
                    Kind::ProductView => s.products_viewed += 1,
                    Kind::AddToCart => s.cart_adds += 1,
                    Kind::Purchase => {
                        s.purchases += 1;
                        s.revenue_minor += e.n as i64 * 100;
                        s.currency = Some("EUR".into());
                    }
                }
            }
            for s in &mut sessions {
                s.event_ids.sort();
                s.engaged = s.end_ms - s.start_ms > 10_000 || s.page_views >= 2 || s.purchases > 0;
                s.bounce = s.page_views <= 1 && !s.engaged;
            }
            (visitor, sessions)
        })
        .collect()
}

/// A stream of `shards` open shards in memory; a record goes to the shard its partition key
/// hashes to, so a visitor's events stay in order on one shard.
pub struct MemoryStream {
    shards: Vec<Mutex<Vec<StreamEntry>>>,
}

impl MemoryStream {
    pub fn new(shards: usize) -> Arc<Self> {
        Arc::new(MemoryStream {
            shards: (0..shards).map(|_| Mutex::new(Vec::new())).collect(),
        })
    }

    pub fn shard_id(index: usize) -> String {
        format!("shard-{index:06}")
    }

    pub fn append(&self, records: &[StreamRecord]) {
        for record in records {
            let hash = record
                .partition_key
                .bytes()
                .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
            let mut shard = self.shards[(hash % self.shards.len() as u64) as usize]
                .lock()
                .unwrap();
            let sequence = (shard.len() + 1).to_string();
            shard.push(StreamEntry {
                sequence,
                partition_key: record.partition_key.clone(),
                data: record.data.clone(),
            });
        }
    }

    /// The last sequence of every non-empty shard.
    pub fn ends(&self) -> HashMap<String, String> {
        self.shards
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let last = s.lock().unwrap().last().map(|e| e.sequence.clone());
                last.map(|seq| (Self::shard_id(i), seq))
            })
            .collect()
    }
}

#[async_trait]
impl StreamReader for MemoryStream {
    async fn shards(&self) -> Result<Vec<ShardInfo>> {
        Ok((0..self.shards.len())
            .map(|i| ShardInfo {
                shard_id: Self::shard_id(i),
                parent_shard_ids: Vec::new(),
            })
            .collect())
    }

    async fn read(&self, shard_id: &str, after: Option<&str>, max: usize) -> Result<ReadBatch> {
        let index: usize = shard_id.trim_start_matches("shard-").parse().unwrap();
        let shard = self.shards[index].lock().unwrap();
        let start: usize = after.map_or(0, |s| s.parse().unwrap());
        let entries: Vec<StreamEntry> = shard.iter().skip(start).take(max).cloned().collect();
        Ok(ReadBatch {
            millis_behind_latest: Some(0),
            entries,
            shard_ended: false,
        })
    }
}

/// Which instance is working on each shard: from a read until that instance's next
/// checkpoint, finish or release of the shard. A read by another instance in between is a
/// violation of "one instance per shard at a time".
#[derive(Default)]
pub struct Workers {
    current: Mutex<HashMap<String, String>>,
    violations: Mutex<Vec<String>>,
    batches: Mutex<HashMap<String, HashSet<String>>>,
    /// Per instance: shard reads, shard listings and lease table reads.
    calls: Mutex<HashMap<String, Calls>>,
    /// Every lease table read fails as throttled while set, as a DynamoDB table short of read
    /// capacity answers.
    pub scans_throttled: std::sync::atomic::AtomicBool,
}

/// How often one instance called the stream and the lease table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Calls {
    pub reads: usize,
    pub shard_lists: usize,
    pub lease_scans: usize,
    /// Lease table reads refused by [`Workers::scans_throttled`].
    pub throttled_scans: usize,
}

impl Workers {
    fn start(&self, shard: &str, tag: &str) {
        let mut current = self.current.lock().unwrap();
        if let Some(other) = current.get(shard).filter(|o| *o != tag) {
            self.violations
                .lock()
                .unwrap()
                .push(format!("{tag} read {shard} while {other} worked on it"));
        }
        current.insert(shard.to_owned(), tag.to_owned());
        self.batches
            .lock()
            .unwrap()
            .entry(shard.to_owned())
            .or_default()
            .insert(tag.to_owned());
    }

    fn stop(&self, shard: &str, tag: &str) {
        let mut current = self.current.lock().unwrap();
        if current.get(shard).map(String::as_str) == Some(tag) {
            current.remove(shard);
        }
    }

    /// An instance was killed: it works on nothing any more.
    pub fn killed(&self, tag: &str) {
        self.current.lock().unwrap().retain(|_, t| t != tag);
    }

    pub fn violations(&self) -> Vec<String> {
        self.violations.lock().unwrap().clone()
    }

    /// The instances that read each shard at some point.
    pub fn readers(&self) -> HashMap<String, HashSet<String>> {
        self.batches.lock().unwrap().clone()
    }

    /// How often instance `tag` read a shard, listed the shards and read the lease table.
    pub fn calls(&self, tag: &str) -> Calls {
        self.calls
            .lock()
            .unwrap()
            .get(tag)
            .copied()
            .unwrap_or_default()
    }

    fn count(&self, tag: &str, call: impl FnOnce(&mut Calls)) {
        call(
            self.calls
                .lock()
                .unwrap()
                .entry(tag.to_owned())
                .or_default(),
        );
    }
}

/// A reader that tells [`Workers`] which instance (`tag`) reads.
pub struct TaggedReader {
    pub inner: Arc<dyn StreamReader>,
    pub tag: String,
    pub workers: Arc<Workers>,
}

#[async_trait]
impl StreamReader for TaggedReader {
    async fn shards(&self) -> Result<Vec<ShardInfo>> {
        self.workers.count(&self.tag, |c| c.shard_lists += 1);
        self.inner.shards().await
    }

    async fn read(&self, shard_id: &str, after: Option<&str>, max: usize) -> Result<ReadBatch> {
        self.workers.start(shard_id, &self.tag);
        self.workers.count(&self.tag, |c| c.reads += 1);
        self.inner.read(shard_id, after, max).await
    }
}

/// A lease store that tells [`Workers`] when an instance (`tag`) is done with a shard.
pub struct TaggedLeases {
    pub inner: Arc<dyn LeaseStore>,
    pub tag: String,
    pub workers: Arc<Workers>,
}

#[async_trait]
impl LeaseStore for TaggedLeases {
    async fn leases(&self, consumer: &str) -> Result<Vec<Lease>> {
        self.workers.count(&self.tag, |c| c.lease_scans += 1);
        if self
            .workers
            .scans_throttled
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            self.workers.count(&self.tag, |c| c.throttled_scans += 1);
            return Err(ConnectorError::Throttled {
                service: "dynamodb",
                detail: "lease table scan throttled (test)".into(),
            });
        }
        self.inner.leases(consumer).await
    }
    async fn create(&self, consumer: &str, shard: &ShardInfo) -> Result<bool> {
        self.inner.create(consumer, shard).await
    }
    async fn take(
        &self,
        consumer: &str,
        shard_id: &str,
        counter: u64,
        owner: &str,
    ) -> Result<Lease> {
        self.inner.take(consumer, shard_id, counter, owner).await
    }
    async fn renew(
        &self,
        consumer: &str,
        shard_id: &str,
        owner: &str,
        counter: u64,
    ) -> Result<Lease> {
        self.inner.renew(consumer, shard_id, owner, counter).await
    }
    async fn release(
        &self,
        consumer: &str,
        shard_id: &str,
        owner: &str,
        counter: u64,
    ) -> Result<()> {
        let released = self.inner.release(consumer, shard_id, owner, counter).await;
        self.workers.stop(shard_id, &self.tag);
        released
    }
    async fn checkpoint(
        &self,
        consumer: &str,
        shard_id: &str,
        owner: &str,
        counter: u64,
        sequence: &str,
    ) -> Result<()> {
        let stored = self
            .inner
            .checkpoint(consumer, shard_id, owner, counter, sequence)
            .await;
        self.workers.stop(shard_id, &self.tag);
        stored
    }
    async fn finish(
        &self,
        consumer: &str,
        shard_id: &str,
        owner: &str,
        counter: u64,
    ) -> Result<()> {
        let finished = self.inner.finish(consumer, shard_id, owner, counter).await;
        self.workers.stop(shard_id, &self.tag);
        finished
    }
    async fn remove(&self, consumer: &str, shard_id: &str, counter: u64) -> Result<()> {
        self.inner.remove(consumer, shard_id, counter).await
    }
    async fn request(
        &self,
        consumer: &str,
        shard_id: &str,
        owner: &str,
        requester: &str,
    ) -> Result<()> {
        self.inner
            .request(consumer, shard_id, owner, requester)
            .await
    }
}

/// Asserts that the stored sessions are exactly those computed from `events` alone, field by
/// field, each holding the ids of its own events; so every event is counted once, and once
/// only.
pub async fn assert_sessions_match(
    sessions: &dyn retailmind_connectors::SessionStore,
    events: &[TestEvent],
) {
    for (visitor, expected) in expected_sessions(events) {
        let stored = sessions.sessions_of(&visitor).await.unwrap();
        for session in &stored {
            assert_eq!(
                session.event_ids.len() as u64,
                u64::from(session.event_count),
                "an event id per event counted, in {visitor}'s session {}",
                session.session_id
            );
        }
        let got: Vec<ExpectedSession> = stored.iter().map(ExpectedSession::of).collect();
        assert_eq!(got, expected, "sessions of {visitor}");
    }
}

/// The AWS backend on `moto`, provisioned (the lake bucket created first).
pub async fn provisioned_aws(
    moto: &retailmind_tests::moto::MotoServer,
) -> retailmind_connectors::Backend {
    provisioned_aws_with(moto, |_| {}).await.1
}

/// [`provisioned_aws`] with a Kinesis stream of `shards` shards.
pub async fn provisioned_aws_sharded(
    moto: &retailmind_tests::moto::MotoServer,
    shards: i32,
) -> retailmind_connectors::Backend {
    provision_on_moto(moto, shards, |_| {}).await.1
}

/// [`provisioned_aws`] with the configuration changed by `configure` first; also returns the
/// configuration.
pub async fn provisioned_aws_with(
    moto: &retailmind_tests::moto::MotoServer,
    configure: impl FnOnce(&mut retailmind_connectors::AwsConfig),
) -> (
    retailmind_connectors::AwsConfig,
    retailmind_connectors::Backend,
) {
    provision_on_moto(moto, 1, configure).await
}

async fn provision_on_moto(
    moto: &retailmind_tests::moto::MotoServer,
    shards: i32,
    configure: impl FnOnce(&mut retailmind_connectors::AwsConfig),
) -> (
    retailmind_connectors::AwsConfig,
    retailmind_connectors::Backend,
) {
    use retailmind_connectors::aws::{backend, provision, LakeDestination};
    let sdk = moto.sdk_config();
    let mut config = retailmind_connectors::AwsConfig::new("us-east-1");
    config.endpoint_url = Some(moto.endpoint.clone());
    configure(&mut config);
    moto.s3()
        .create_bucket()
        .bucket("retailmind-lake")
        .send()
        .await
        .expect("bucket created");
    let lake = LakeDestination {
        bucket_arn: "arn:aws:s3:::retailmind-lake".into(),
        role_arn: "arn:aws:iam::123456789012:role/retailmind-firehose".into(),
        shards,
    };
    provision(&sdk, &config, &lake).await.expect("provisioned");
    provision(&sdk, &config, &lake)
        .await
        .expect("provisioning again changes nothing");
    let backend = backend(&sdk, &config);
    (config, backend)
}
