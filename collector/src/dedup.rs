//! What was written recently, so that a repeat is not written twice:
//! - [`RecentBatches`]: a retry of the same batch id (the tracker resends when an answer was
//!   lost) is answered again from memory, without even judging its events again;
//! - [`RecentEvents`]: an event id already written, or being written by a request still in
//!   flight, is not written again, whatever batch carries it. Two tabs of one shop, or a page
//!   going away while another tab sends the shared queue, can put one event in two batches at
//!   the same moment; the second waits for the first write and then drops what it wrote.
//!
//! Per collector instance and in memory: behind a load balancer a retry may reach another
//! instance, which is why the processor also drops repeated event ids.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

// Seeded per process (event ids come from the client, so the hash must not be predictable),
// and several times faster than SipHash on these 24-byte keys, hashed four times per event.
use foldhash::fast::RandomState as Seeded;
use tokio::sync::watch;
use uuid::Uuid;

use crate::ingest::BatchResponse;

/// At most about this many bytes of answers are remembered. Counting answers is not enough: one
/// listing the problems of 500 rejected events, 20 each, is megabytes, and anyone with a
/// publishable key (they are public) can send such batches.
const ANSWER_BYTES: usize = 64 << 20;

pub struct RecentBatches {
    window: Duration,
    /// Most batch ids remembered, whatever the window.
    capacity: usize,
    budget: usize,
    inner: Mutex<Inner>,
}

/// A sender (hashed: the key name) and a batch or event id.
type SenderKey = (u64, Uuid);

#[derive(Default)]
struct Inner {
    /// Each answer with its weight in bytes ([`weight`]).
    answers: HashMap<SenderKey, (BatchResponse, usize), Seeded>,
    order: VecDeque<(Instant, SenderKey)>,
    bytes: usize,
}

/// About the memory an answer holds: the struct and, per rejected event and problem, its
/// strings and their headers.
fn weight(answer: &BatchResponse) -> usize {
    let problems: usize = answer
        .rejected
        .iter()
        .flat_map(|r| &r.errors)
        .map(|e| 48 + e.field.len() + e.reason.len())
        .sum();
    128 + answer.rejected.len() * 32 + problems
}

impl RecentBatches {
    pub fn new(window: Duration, capacity: usize) -> Self {
        Self::with_budget(window, capacity, ANSWER_BYTES)
    }

    fn with_budget(window: Duration, capacity: usize, budget: usize) -> Self {
        RecentBatches {
            window,
            capacity,
            budget,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// How far back the memory reaches now: the window, unless the capacity or the byte budget
    /// forgot answers younger than that (under load they cut the window short).
    pub fn remembered_for(&self) -> Duration {
        let Ok(inner) = self.inner.lock() else {
            return Duration::ZERO;
        };
        inner
            .order
            .front()
            .map_or(Duration::ZERO, |(at, _)| at.elapsed().min(self.window))
    }

    /// The answer given to this sender's batch within the window, if any.
    pub fn answer_for(&self, sender: &str, batch_id: Uuid) -> Option<BatchResponse> {
        if self.window.is_zero() {
            return None;
        }
        let mut inner = self.inner.lock().ok()?;
        inner.expire(self.window);
        inner
            .answers
            .get(&(sender_hash(sender), batch_id))
            .map(|(answer, _)| answer.clone())
    }

    pub fn remember(&self, sender: &str, batch_id: Uuid, answer: &BatchResponse) {
        if self.window.is_zero() {
            return;
        }
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        inner.expire(self.window);
        let weight = weight(answer);
        if weight > self.budget {
            // Never kept: a retry of it is judged and deduplicated event by event instead.
            return;
        }
        let key = (sender_hash(sender), batch_id);
        // Two requests with the same batch id can both finish: the later answer replaces the
        // earlier where it stands.
        if let Some(held) = inner.answers.get_mut(&key) {
            let replaced = std::mem::replace(held, (answer.clone(), weight)).1;
            inner.bytes = inner.bytes - replaced + weight;
            return;
        }
        while inner.order.len() >= self.capacity || inner.bytes + weight > self.budget {
            if !inner.forget_oldest() {
                break;
            }
        }
        inner.answers.insert(key, (answer.clone(), weight));
        inner.order.push_back((Instant::now(), key));
        inner.bytes += weight;
    }
}

impl Inner {
    fn expire(&mut self, window: Duration) {
        let now = Instant::now();
        while let Some((at, _)) = self.order.front() {
            if now.duration_since(*at) < window {
                break;
            }
            self.forget_oldest();
        }
    }

    /// Forgets the oldest answer; `false` when there is none.
    fn forget_oldest(&mut self) -> bool {
        let Some((_, key)) = self.order.pop_front() else {
            return false;
        };
        if let Some((_, weight)) = self.answers.remove(&key) {
            self.bytes -= weight;
        }
        true
    }
}

type EventKey = SenderKey;

/// Event ids written within a window, and those being written now. See the module docs.
pub struct RecentEvents {
    window: Duration,
    capacity: usize,
    inner: Mutex<EventsInner>,
}

struct EventsInner {
    started: Instant,
    /// Ids written, newest first: `current` takes them until it is full or a window old, then
    /// it becomes `previous`, whose ids are forgotten all at once. Forgetting one id at a time
    /// (the oldest, at every write once full) cost a cache-missing hash removal per event, 5% of
    /// the collector's CPU. An id is remembered until it is a window old or `capacity` ids were
    /// written after it, and forgotten by the time either has doubled; memory holds at most
    /// twice `capacity` ids.
    current: Generation,
    previous: Generation,
    /// Ids a request is writing now, with the number of that request's claim.
    in_flight: HashMap<EventKey, u64, Seeded>,
    /// Per claim holding ids in flight, the receiver that tells when it ended: one per request
    /// rather than one per id, as every clone is an atomic count shared by all the threads.
    claims: HashMap<u64, watch::Receiver<()>, Seeded>,
    next_claim: u64,
}

#[derive(Default)]
struct Generation {
    ids: HashSet<EventKey, Seeded>,
    /// When it took its first and its last id, in ms since [`EventsInner::started`].
    first_ms: u64,
    last_ms: u64,
}

impl Generation {
    fn contains(&self, key: &EventKey) -> bool {
        self.ids.contains(key)
    }
}

/// Another request is writing some of these events and did not finish in time.
#[derive(Debug, PartialEq, Eq)]
pub struct StillInFlight;

/// The events of one request that it may write (`fresh[i]`), held as in flight until it
/// [commits](Claim::commit) them as written or drops the claim (the write failed).
pub struct Claim<'a> {
    owner: &'a RecentEvents,
    /// Its number among the claims holding ids in flight; `None` when it holds none.
    number: Option<u64>,
    keys: Vec<EventKey>,
    /// Per id asked for: `false` when it was written already (or earlier in the same request).
    pub fresh: Vec<bool>,
    // Dropped with the claim, which wakes the requests waiting for these ids.
    _done: Option<watch::Sender<()>>,
}

impl RecentEvents {
    pub fn new(window: Duration, capacity: usize) -> Self {
        RecentEvents {
            window,
            capacity,
            inner: Mutex::new(EventsInner {
                started: Instant::now(),
                current: Generation::default(),
                previous: Generation::default(),
                in_flight: HashMap::default(),
                claims: HashMap::default(),
                next_claim: 0,
            }),
        }
    }

    /// How far back the memory of written ids reaches now: the window, unless `capacity` ids
    /// were written sooner than that (under load the capacity cuts the window short).
    pub fn remembered_for(&self) -> Duration {
        let Ok(inner) = self.inner.lock() else {
            return Duration::ZERO;
        };
        let now = inner.started.elapsed().as_millis() as u64;
        let oldest = [&inner.previous, &inner.current]
            .into_iter()
            .find(|generation| !generation.ids.is_empty())
            .map(|generation| generation.first_ms);
        oldest.map_or(Duration::ZERO, |first_ms| {
            Duration::from_millis(now.saturating_sub(first_ms)).min(self.window)
        })
    }

    /// Claims `ids` for `sender`: which of them this request should write. Waits (at most
    /// `patience`) while another request is writing one of them, since that write may still
    /// fail; after that, [`StillInFlight`].
    pub async fn claim(
        &self,
        sender: &str,
        ids: &[Uuid],
        patience: Duration,
    ) -> Result<Claim<'_>, StillInFlight> {
        let deadline = tokio::time::Instant::now() + patience;
        let sender = sender_hash(sender);
        loop {
            let mut writer = match self.try_claim(sender, ids) {
                Ok(claim) => return Ok(claim),
                Err(writer) => writer,
            };
            // Ends when that request's claim is dropped (an error: no value is ever sent).
            if tokio::time::timeout_at(deadline, writer.changed())
                .await
                .is_err()
            {
                return Err(StillInFlight);
            }
        }
    }

    fn try_claim(&self, sender: u64, ids: &[Uuid]) -> Result<Claim<'_>, watch::Receiver<()>> {
        // A claim holding nothing in flight: its drop and commit change nothing.
        let mut claim = Claim {
            owner: self,
            number: None,
            keys: Vec::new(),
            fresh: vec![true; ids.len()],
            _done: None,
        };
        if self.window.is_zero() {
            return Ok(claim);
        }
        let Ok(mut inner) = self.inner.lock() else {
            return Ok(claim);
        };
        inner.expire(self.window);
        let mut keys = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            let key = (sender, *id);
            if let Some(writer) = inner.in_flight.get(&key).and_then(|n| inner.claims.get(n)) {
                // `keys` were never registered: nothing of this attempt is left behind.
                return Err(writer.clone());
            }
            if inner.written(&key) || keys.contains(&key) {
                claim.fresh[i] = false;
            } else {
                keys.push(key);
            }
        }
        if keys.is_empty() {
            return Ok(claim);
        }
        let (done, writer) = watch::channel(());
        let number = inner.next_claim;
        inner.next_claim += 1;
        inner.claims.insert(number, writer);
        for key in &keys {
            inner.in_flight.insert(*key, number);
        }
        claim.number = Some(number);
        claim.keys = keys;
        claim._done = Some(done);
        Ok(claim)
    }
}

impl Claim<'_> {
    /// The write succeeded: these ids are written, and repeats of them are dropped from now on.
    pub fn commit(mut self) {
        let keys = std::mem::take(&mut self.keys);
        let owner = self.owner;
        let Ok(mut inner) = owner.inner.lock() else {
            return;
        };
        let now = inner.started.elapsed().as_millis() as u64;
        if let Some(number) = self.number {
            inner.claims.remove(&number);
        }
        for key in keys {
            inner.in_flight.remove(&key);
            if owner.capacity == 0 {
                continue;
            }
            if inner.current.ids.len() >= owner.capacity {
                inner.next_generation(now);
            }
            let current = &mut inner.current;
            if current.ids.is_empty() {
                current.first_ms = now;
            }
            current.last_ms = now;
            current.ids.insert(key);
        }
    }
}

impl Claim<'_> {
    /// The write failed after storing some records: the ids at these positions among the
    /// fresh ones (the order they were written in) count as written, the rest are released.
    pub fn commit_positions(mut self, positions: &[usize]) {
        let keys = std::mem::take(&mut self.keys);
        let (stored, released): (Vec<_>, Vec<_>) = keys
            .into_iter()
            .enumerate()
            .partition(|(i, _)| positions.contains(i));
        self.keys = stored.into_iter().map(|(_, k)| k).collect();
        if let Ok(mut inner) = self.owner.inner.lock() {
            for (_, key) in released {
                inner.in_flight.remove(&key);
            }
        }
        self.commit();
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        if self.keys.is_empty() {
            return;
        }
        if let Ok(mut inner) = self.owner.inner.lock() {
            if let Some(number) = self.number {
                inner.claims.remove(&number);
            }
            for key in &self.keys {
                inner.in_flight.remove(key);
            }
        }
    }
}

impl EventsInner {
    fn written(&self, key: &EventKey) -> bool {
        self.current.contains(key) || self.previous.contains(key)
    }

    /// Forgets the previous generation; the current one becomes it.
    fn next_generation(&mut self, now: u64) {
        std::mem::swap(&mut self.current, &mut self.previous);
        // Keeps the table's allocation for the ids to come.
        self.current.ids.clear();
        self.current.first_ms = now;
        self.current.last_ms = now;
    }

    fn expire(&mut self, window: Duration) {
        let now = self.started.elapsed().as_millis() as u64;
        let window = window.as_millis() as u64;
        if now.saturating_sub(self.current.first_ms) >= window {
            self.next_generation(now);
        }
        if now.saturating_sub(self.previous.last_ms) >= window {
            // Every id in it is older than the window.
            self.previous.ids.clear();
        }
    }
}

fn sender_hash(sender: &str) -> u64 {
    let mut h = DefaultHasher::new();
    sender.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(accepted: usize) -> BatchResponse {
        BatchResponse {
            batch_id: Uuid::nil(),
            accepted,
            rejected: vec![],
            duplicate: false,
            duplicates: 0,
        }
    }

    #[test]
    fn a_batch_is_remembered_per_sender_within_the_window() {
        let recent = RecentBatches::new(Duration::from_secs(60), 100_000);
        let id = Uuid::from_u128(7);
        assert_eq!(recent.answer_for("shop", id), None);
        recent.remember("shop", id, &answer(3));
        assert_eq!(recent.answer_for("shop", id), Some(answer(3)));
        assert_eq!(recent.answer_for("other shop", id), None);
    }

    #[test]
    fn answers_expire_after_the_window() {
        let recent = RecentBatches::new(Duration::from_millis(1), 100_000);
        recent.remember("shop", Uuid::from_u128(1), &answer(1));
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(recent.answer_for("shop", Uuid::from_u128(1)), None);
    }

    #[test]
    fn answers_are_forgotten_oldest_first_past_their_byte_budget() {
        let big = |n: u128| BatchResponse {
            batch_id: Uuid::from_u128(n),
            accepted: 0,
            rejected: (0..100)
                .map(|index| crate::ingest::RejectedEvent {
                    index,
                    errors: vec![crate::ingest::RejectedField::new("f", "r".repeat(900))],
                })
                .collect(),
            duplicate: false,
            duplicates: 0,
        };
        let one = weight(&big(0));
        assert!(one > 100 * 900, "{one}");
        let recent = RecentBatches::with_budget(Duration::from_secs(60), 100_000, 3 * one);
        for n in 1..=10 {
            recent.remember("shop", Uuid::from_u128(n), &big(n));
            let inner = recent.inner.lock().unwrap();
            assert!(inner.bytes <= 3 * one, "{} after {n}", inner.bytes);
        }
        let kept: Vec<u128> = (1..=10)
            .filter(|&n| recent.answer_for("shop", Uuid::from_u128(n)).is_some())
            .collect();
        assert_eq!(kept, [8, 9, 10]);
        // Remembered again: replaced, not counted twice.
        recent.remember("shop", Uuid::from_u128(10), &big(10));
        assert_eq!(recent.inner.lock().unwrap().bytes, 3 * one);
        // One larger than the whole budget is not kept, and forgets nothing.
        let tiny = RecentBatches::with_budget(Duration::from_secs(60), 100_000, one - 1);
        tiny.remember("shop", Uuid::from_u128(1), &answer(1));
        tiny.remember("shop", Uuid::from_u128(2), &big(2));
        assert!(tiny.answer_for("shop", Uuid::from_u128(1)).is_some());
        assert!(tiny.answer_for("shop", Uuid::from_u128(2)).is_none());
    }

    fn ids(ns: &[u128]) -> Vec<Uuid> {
        ns.iter().map(|&n| Uuid::from_u128(n)).collect()
    }

    const PATIENCE: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn an_event_written_once_is_not_fresh_again_in_any_batch() {
        let recent = RecentEvents::new(Duration::from_secs(60), 100);
        let first = recent.claim("shop", &ids(&[1, 2]), PATIENCE).await.unwrap();
        assert_eq!(first.fresh, [true, true]);
        first.commit();
        let second = recent
            .claim("shop", &ids(&[2, 3, 3]), PATIENCE)
            .await
            .unwrap();
        assert_eq!(
            second.fresh,
            [false, true, false],
            "3 twice in one batch is once"
        );
        second.commit();
        let other = recent
            .claim("other shop", &ids(&[1]), PATIENCE)
            .await
            .unwrap();
        assert_eq!(other.fresh, [true], "ids are per sender");
    }

    #[tokio::test]
    async fn a_failed_write_leaves_its_events_fresh() {
        let recent = RecentEvents::new(Duration::from_secs(60), 100);
        let failed = recent.claim("shop", &ids(&[1]), PATIENCE).await.unwrap();
        drop(failed);
        let again = recent.claim("shop", &ids(&[1]), PATIENCE).await.unwrap();
        assert_eq!(again.fresh, [true]);
    }

    #[tokio::test]
    async fn an_overlapping_request_waits_for_the_write_in_flight() {
        let recent = std::sync::Arc::new(RecentEvents::new(Duration::from_secs(60), 100));
        let first = recent.claim("shop", &ids(&[1, 2]), PATIENCE).await.unwrap();
        let waiter = {
            let recent = recent.clone();
            tokio::spawn(async move {
                let claim = recent.claim("shop", &ids(&[2, 3]), PATIENCE).await.unwrap();
                claim.fresh.clone()
            })
        };
        // The waiter cannot finish while the first write is in flight.
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        first.commit();
        assert_eq!(waiter.await.unwrap(), [false, true]);
    }

    /// Requests that give up waiting, or find nothing fresh, leave the writer's claim alone:
    /// the ids stay in flight until it ends, and then count as written.
    #[tokio::test]
    async fn requests_that_write_nothing_leave_the_write_in_flight_alone() {
        let recent = RecentEvents::new(Duration::from_secs(60), 100);
        let short = Duration::from_millis(20);
        let first = recent.claim("shop", &ids(&[1]), PATIENCE).await.unwrap();
        // Gives up on id 1 after having seen id 2 fresh.
        assert_eq!(
            recent.claim("shop", &ids(&[2, 1]), short).await.err(),
            Some(StillInFlight)
        );
        // Nothing to write.
        recent.claim("shop", &[], PATIENCE).await.unwrap().commit();
        assert_eq!(
            recent.claim("shop", &ids(&[1]), short).await.err(),
            Some(StillInFlight),
            "id 1 is still being written"
        );
        first.commit();
        let after = recent.claim("shop", &ids(&[1, 2]), PATIENCE).await.unwrap();
        assert_eq!(after.fresh, [false, true]);
    }

    #[tokio::test]
    async fn a_write_in_flight_too_long_is_refused_not_guessed() {
        let recent = RecentEvents::new(Duration::from_secs(60), 100);
        let _first = recent.claim("shop", &ids(&[1]), PATIENCE).await.unwrap();
        let second = recent
            .claim("shop", &ids(&[1]), Duration::from_millis(20))
            .await;
        assert_eq!(second.err(), Some(StillInFlight));
    }

    async fn write(recent: &RecentEvents, ns: &[u128]) {
        recent
            .claim("shop", &ids(ns), PATIENCE)
            .await
            .unwrap()
            .commit();
    }

    async fn fresh(recent: &RecentEvents, ns: &[u128]) -> Vec<bool> {
        recent
            .claim("shop", &ids(ns), PATIENCE)
            .await
            .unwrap()
            .fresh
            .clone()
    }

    #[tokio::test]
    async fn memory_is_bounded_by_capacity_and_window() {
        let recent = RecentEvents::new(Duration::from_secs(60), 3);
        for n in 1..=4 {
            write(&recent, &[n]).await;
        }
        // Three ids came after the first: it is still remembered, as is everything newer.
        assert_eq!(fresh(&recent, &[1, 2, 3, 4]).await, [false; 4]);
        for n in 5..=7 {
            write(&recent, &[n]).await;
        }
        // Six came after it: forgotten, as are 2 and 3; the newest four are remembered.
        assert_eq!(
            fresh(&recent, &[1, 2, 3, 4, 5, 6, 7]).await,
            [true, true, true, false, false, false, false]
        );
        {
            let inner = recent.inner.lock().unwrap();
            assert!(inner.current.ids.len() + inner.previous.ids.len() <= 2 * 3);
        }

        let short = RecentEvents::new(Duration::from_millis(1), 100);
        write(&short, &[1]).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(fresh(&short, &[1]).await, [true]);
        write(&short, &[2]).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
        write(&short, &[3]).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(fresh(&short, &[2, 3]).await, [true, true]);
    }

    #[tokio::test]
    async fn a_partly_stored_write_keeps_only_what_was_stored() {
        let recent = RecentEvents::new(Duration::from_secs(60), 100);
        let ids: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
        let claim = recent.claim("k", &ids, Duration::ZERO).await.unwrap();
        claim.commit_positions(&[0, 2]);
        let again = recent.claim("k", &ids, Duration::ZERO).await.unwrap();
        assert_eq!(again.fresh, [false, true, false]);
    }

    /// Under load the capacities, not the window, decide how far back the memories reach; they
    /// say so, for the operators' gauge.
    #[tokio::test]
    async fn the_memories_tell_how_far_back_they_reach() {
        let gap = Duration::from_millis(30);
        let batches = RecentBatches::new(Duration::from_secs(60), 2);
        assert_eq!(batches.remembered_for(), Duration::ZERO);
        batches.remember("shop", Uuid::from_u128(1), &answer(1));
        tokio::time::sleep(gap).await;
        let before_second = Instant::now();
        batches.remember("shop", Uuid::from_u128(2), &answer(1));
        assert!(batches.remembered_for() >= gap);
        batches.remember("shop", Uuid::from_u128(3), &answer(1));
        assert!(batches.remembered_for() <= before_second.elapsed());
        let short = RecentBatches::new(Duration::from_millis(5), 2);
        short.remember("shop", Uuid::from_u128(1), &answer(1));
        tokio::time::sleep(gap).await;
        assert_eq!(
            short.remembered_for(),
            Duration::from_millis(5),
            "the window at most"
        );

        let events = RecentEvents::new(Duration::from_secs(60), 1);
        assert_eq!(events.remembered_for(), Duration::ZERO);
        write(&events, &[1]).await;
        tokio::time::sleep(gap).await;
        let before_second = Instant::now();
        write(&events, &[2]).await;
        assert!(events.remembered_for() >= gap);
        write(&events, &[3]).await;
        // The memory counts whole milliseconds.
        assert!(events.remembered_for() <= before_second.elapsed() + Duration::from_millis(1));
    }
}
