//! Events on their way to the collector: waiting, cut into batches, in flight, retried.
//!
//! An event leaves only when the collector stored its batch (or refused it as malformed). A batch,
//! once cut, keeps its id and its events through every retry, so the collector can recognise a
//! repeat. Pure: the caller measures each event's JSON and supplies clock, ids and jitter.

use std::collections::VecDeque;

use retailmind_schema::{Batch, Event};
use uuid::Uuid;

use crate::backoff::{retry_delay_ms, Verdict};

/// Browsers allow 64 KiB of `keepalive` request bodies in flight per page; stay below it with
/// room for a second, small request.
pub const MAX_BODY_BYTES: usize = 60_000;
/// `{"batch_id":"<36 chars>","sent_at":<ms>,"events":[]}` with room to spare.
pub const ENVELOPE_BYTES: usize = 128;
/// A page that cannot reach the collector for a long time must not grow without bound.
pub const MAX_QUEUED_EVENTS: usize = 1_000;

/// Why an event was not queued.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PushError {
    /// Its JSON alone is too big for any batch.
    TooLarge { bytes: usize, max: usize },
    /// [`MAX_QUEUED_EVENTS`] are already waiting.
    Full { max: usize },
}

/// What became of a batch once its answer (or network failure) came back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Settled {
    Delivered {
        events: usize,
    },
    Dropped {
        events: usize,
    },
    WillRetry {
        events: usize,
        delay_ms: i64,
    },
    /// No batch with that id is waiting (it was settled already).
    Unknown,
}

struct Sealed {
    batch: Batch,
    in_flight: bool,
}

pub struct Outbox {
    batch_size: usize,
    max_body_bytes: usize,
    /// Events not yet cut into a batch, with the byte length of each one's JSON.
    waiting: VecDeque<(Event, usize)>,
    waiting_bytes: usize,
    /// Cut batches not yet acknowledged, oldest first.
    sealed: VecDeque<Sealed>,
    failures: u32,
    retry_at_ms: i64,
}

impl Outbox {
    pub fn new(batch_size: usize) -> Outbox {
        Outbox {
            batch_size: batch_size.max(1),
            max_body_bytes: MAX_BODY_BYTES,
            waiting: VecDeque::new(),
            waiting_bytes: 0,
            sealed: VecDeque::new(),
            failures: 0,
            retry_at_ms: 0,
        }
    }

    /// A smaller body limit, so tests can exercise byte splitting with small events.
    pub fn with_max_body_bytes(mut self, max: usize) -> Outbox {
        self.max_body_bytes = max;
        self
    }

    /// Applies to batches cut from now on; cut batches are retried as they are.
    pub fn set_batch_size(&mut self, batch_size: usize) {
        self.batch_size = batch_size.max(1);
    }

    /// Queues `event`, whose JSON is `json_bytes` long (UTF-8).
    pub fn push(&mut self, event: Event, json_bytes: usize) -> Result<(), PushError> {
        let max = self.max_body_bytes.saturating_sub(ENVELOPE_BYTES);
        if json_bytes > max {
            return Err(PushError::TooLarge {
                bytes: json_bytes,
                max,
            });
        }
        if self.len() >= MAX_QUEUED_EVENTS {
            return Err(PushError::Full {
                max: MAX_QUEUED_EVENTS,
            });
        }
        self.waiting.push_back((event, json_bytes));
        self.waiting_bytes += json_bytes + 1;
        Ok(())
    }

    /// Events not yet acknowledged by the collector, in flight included.
    pub fn len(&self) -> usize {
        self.waiting.len()
            + self
                .sealed
                .iter()
                .map(|s| s.batch.events.len())
                .sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty() && self.sealed.is_empty()
    }

    pub fn in_flight(&self) -> bool {
        self.sealed.iter().any(|s| s.in_flight)
    }

    /// Enough is waiting to fill a batch by count or by bytes: time to send without waiting for
    /// the timer.
    pub fn has_full_batch(&self) -> bool {
        !self.sealed.is_empty()
            || self.waiting.len() >= self.batch_size
            || self.waiting_bytes + ENVELOPE_BYTES >= self.max_body_bytes
    }

    /// Marks the next batch in flight and returns it: the oldest unacknowledged batch if there
    /// is one (a retry), otherwise a new one cut from the waiting events. `None` while another
    /// batch is in flight, when nothing waits, or, unless `ignore_backoff`, before the retry
    /// time after a failure.
    pub fn next_batch(
        &mut self,
        now_ms: i64,
        ignore_backoff: bool,
        new_id: impl FnOnce() -> Uuid,
    ) -> Option<&Batch> {
        if self.in_flight() || (!ignore_backoff && now_ms < self.retry_at_ms) {
            return None;
        }
        if self.sealed.is_empty() {
            self.seal_one(now_ms, new_id)?;
        }
        let next = self.sealed.front_mut()?;
        next.in_flight = true;
        next.batch.sent_at = now_ms;
        Some(&next.batch)
    }

    /// For a page that is going away: cuts everything waiting into batches and marks every batch
    /// that is not yet in flight as in flight, ignoring backoff and the one-at-a-time rule,
    /// since there will be no later chance.
    pub fn all_unsent_batches(
        &mut self,
        now_ms: i64,
        mut new_id: impl FnMut() -> Uuid,
    ) -> Vec<&Batch> {
        while self.seal_one(now_ms, &mut new_id).is_some() {}
        self.sealed
            .iter_mut()
            .filter(|s| !s.in_flight)
            .map(|s| {
                s.in_flight = true;
                s.batch.sent_at = now_ms;
                &s.batch
            })
            .collect()
    }

    /// Records the fate of batch `batch_id`. On `Retry` the batch stays, out of flight, and the
    /// next timed attempt waits for the backoff (`jitter` in `[0, 1)`).
    pub fn settle(
        &mut self,
        batch_id: Uuid,
        verdict: Verdict,
        now_ms: i64,
        jitter: f64,
    ) -> Settled {
        let Some(pos) = self
            .sealed
            .iter()
            .position(|s| s.batch.batch_id == batch_id)
        else {
            return Settled::Unknown;
        };
        let events = self.sealed[pos].batch.events.len();
        match verdict {
            Verdict::Delivered | Verdict::Drop => {
                self.sealed.remove(pos);
                // Any answer from the collector means it is reachable again.
                self.failures = 0;
                self.retry_at_ms = 0;
                if verdict == Verdict::Delivered {
                    Settled::Delivered { events }
                } else {
                    Settled::Dropped { events }
                }
            }
            Verdict::Retry => {
                self.sealed[pos].in_flight = false;
                self.failures = self.failures.saturating_add(1);
                let delay_ms = retry_delay_ms(self.failures, jitter);
                self.retry_at_ms = now_ms.saturating_add(delay_ms);
                Settled::WillRetry { events, delay_ms }
            }
        }
    }

    /// Cuts the oldest waiting events into a batch of at most `batch_size` events whose body
    /// stays within `max_body_bytes`.
    fn seal_one(&mut self, now_ms: i64, new_id: impl FnOnce() -> Uuid) -> Option<()> {
        if self.waiting.is_empty() {
            return None;
        }
        let mut events = Vec::new();
        let mut body = ENVELOPE_BYTES;
        while let Some((_, bytes)) = self.waiting.front() {
            // `+ 1` for the comma between events.
            let grown = body + bytes + 1;
            if events.len() == self.batch_size
                || (!events.is_empty() && grown > self.max_body_bytes)
            {
                break;
            }
            let Some((event, bytes)) = self.waiting.pop_front() else {
                break;
            };
            self.waiting_bytes -= bytes + 1;
            body = grown;
            events.push(event);
        }
        self.sealed.push_back(Sealed {
            batch: Batch {
                batch_id: new_id(),
                sent_at: now_ms,
                events,
            },
            in_flight: false,
        });
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use retailmind_schema::{Context, PageView, Payload};

    use super::*;

    fn event(n: u128) -> Event {
        Event {
            event_id: Uuid::from_u128(n),
            anonymous_id: "a".into(),
            user_id: None,
            session_id: None,
            timestamp: n as i64,
            received_at: None,
            context: Context::default(),
            payload: Payload::PageView(PageView::default()),
        }
    }

    fn ids() -> impl FnMut() -> Uuid {
        let mut n = 1000;
        move || {
            n += 1;
            Uuid::from_u128(n)
        }
    }

    fn event_numbers(batch: &Batch) -> Vec<u128> {
        batch.events.iter().map(|e| e.event_id.as_u128()).collect()
    }

    #[test]
    fn cuts_batches_by_count_in_order() {
        let mut out = Outbox::new(3);
        for n in 0..7 {
            out.push(event(n), 100).expect("fits");
        }
        assert!(out.has_full_batch());
        let mut id = ids();
        let mut sent = Vec::new();
        while let Some(b) = out.next_batch(5, false, &mut id) {
            sent.push(event_numbers(b));
            let batch_id = b.batch_id;
            assert_eq!(out.settle(batch_id, Verdict::Delivered, 6, 0.0), {
                Settled::Delivered {
                    events: sent.last().map_or(0, Vec::len),
                }
            });
        }
        assert_eq!(sent, vec![vec![0, 1, 2], vec![3, 4, 5], vec![6]]);
        assert!(out.is_empty());
    }

    #[test]
    fn cuts_batches_by_bytes() {
        // Envelope 128 + three events of 100 bytes and their commas fit in 431, a fourth doesn't.
        let mut out = Outbox::new(100).with_max_body_bytes(431);
        for n in 0..5 {
            out.push(event(n), 100).expect("fits");
        }
        assert!(out.has_full_batch(), "full by bytes before full by count");
        let mut id = ids();
        let first = out.next_batch(0, false, &mut id).expect("a batch");
        assert_eq!(event_numbers(first), vec![0, 1, 2]);
        let first_id = first.batch_id;
        out.settle(first_id, Verdict::Delivered, 0, 0.0);
        let second = out.next_batch(0, false, &mut id).expect("a batch");
        assert_eq!(event_numbers(second), vec![3, 4]);
    }

    #[test]
    fn refuses_an_event_too_big_for_any_batch_and_a_full_queue() {
        let mut out = Outbox::new(10).with_max_body_bytes(1_000);
        assert_eq!(
            out.push(event(1), 873),
            Err(PushError::TooLarge {
                bytes: 873,
                max: 872
            })
        );
        assert!(out.push(event(1), 872).is_ok());
        let mut out = Outbox::new(10);
        for n in 0..MAX_QUEUED_EVENTS as u128 {
            out.push(event(n), 10).expect("room");
        }
        assert_eq!(
            out.push(event(0), 10),
            Err(PushError::Full {
                max: MAX_QUEUED_EVENTS
            })
        );
    }

    #[test]
    fn one_batch_in_flight_at_a_time() {
        let mut out = Outbox::new(1);
        out.push(event(1), 10).expect("fits");
        out.push(event(2), 10).expect("fits");
        let mut id = ids();
        assert!(out.next_batch(0, true, &mut id).is_some());
        assert!(out.in_flight());
        assert!(out.next_batch(0, true, &mut id).is_none());
        assert_eq!(out.len(), 2, "in-flight events still count as queued");
    }

    #[test]
    fn failed_batch_is_retried_whole_after_backoff() {
        let mut out = Outbox::new(2);
        out.push(event(1), 10).expect("fits");
        out.push(event(2), 10).expect("fits");
        let mut id = ids();
        let batch_id = out
            .next_batch(1_000, false, &mut id)
            .expect("batch")
            .batch_id;
        out.push(event(3), 10).expect("fits");
        assert_eq!(
            out.settle(batch_id, Verdict::Retry, 1_000, 1.0),
            Settled::WillRetry {
                events: 2,
                delay_ms: 1_000
            }
        );
        assert_eq!(out.len(), 3);
        assert!(
            out.next_batch(1_999, false, &mut id).is_none(),
            "backing off"
        );
        let retry = out.next_batch(2_000, false, &mut id).expect("retry");
        assert_eq!(
            retry.batch_id, batch_id,
            "same id so the collector can dedupe"
        );
        assert_eq!(event_numbers(retry), vec![1, 2]);
        assert_eq!(retry.sent_at, 2_000);
        out.settle(batch_id, Verdict::Retry, 2_000, 1.0);
        assert!(out.next_batch(3_999, false, &mut id).is_none(), "2 s now");
        assert!(
            out.next_batch(2_001, true, &mut id).is_some(),
            "flush() ignores it"
        );
    }

    #[test]
    fn refused_batch_is_dropped_and_resets_the_backoff() {
        let mut out = Outbox::new(5);
        out.push(event(1), 10).expect("fits");
        let mut id = ids();
        let b = out.next_batch(0, false, &mut id).expect("batch").batch_id;
        out.settle(b, Verdict::Retry, 0, 0.0);
        let b = out.next_batch(0, true, &mut id).expect("batch").batch_id;
        assert_eq!(
            out.settle(b, Verdict::Drop, 10, 0.0),
            Settled::Dropped { events: 1 }
        );
        assert!(out.is_empty());
        out.push(event(2), 10).expect("fits");
        assert!(
            out.next_batch(11, false, &mut id).is_some(),
            "no backoff left"
        );
        assert_eq!(out.settle(b, Verdict::Drop, 0, 0.0), Settled::Unknown);
    }

    #[test]
    fn page_exit_sends_everything_not_already_in_flight() {
        let mut out = Outbox::new(2);
        for n in 0..5 {
            out.push(event(n), 10).expect("fits");
        }
        let mut id = ids();
        let first = out.next_batch(0, false, &mut id).expect("batch").batch_id;
        let rest: Vec<Vec<u128>> = out
            .all_unsent_batches(7, &mut id)
            .into_iter()
            .map(event_numbers)
            .collect();
        assert_eq!(rest, vec![vec![2, 3], vec![4]]);
        assert!(out.all_unsent_batches(8, &mut id).is_empty());
        out.settle(first, Verdict::Delivered, 9, 0.0);
        assert_eq!(out.len(), 3);
    }
}
