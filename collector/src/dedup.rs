//! Batches already written, remembered for a while so that a retry of the same batch id (the
//! tracker resends when an answer was lost) is answered again without writing twice.
//!
//! Per collector instance and in memory: behind a load balancer a retry may reach another
//! instance, which is why the processor also drops repeated event ids.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::ingest::BatchResponse;

/// At most this many batch ids are remembered, whatever the window.
const CAPACITY: usize = 100_000;

pub struct RecentBatches {
    window: Duration,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    answers: HashMap<(String, Uuid), BatchResponse>,
    order: VecDeque<(Instant, (String, Uuid))>,
}

impl RecentBatches {
    pub fn new(window: Duration) -> Self {
        RecentBatches {
            window,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// The answer given to this sender's batch within the window, if any.
    pub fn answer_for(&self, sender: &str, batch_id: Uuid) -> Option<BatchResponse> {
        if self.window.is_zero() {
            return None;
        }
        let mut inner = self.inner.lock().ok()?;
        inner.expire(self.window);
        inner.answers.get(&(sender.to_owned(), batch_id)).cloned()
    }

    pub fn remember(&self, sender: &str, batch_id: Uuid, answer: &BatchResponse) {
        if self.window.is_zero() {
            return;
        }
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        inner.expire(self.window);
        while inner.order.len() >= CAPACITY {
            if let Some((_, key)) = inner.order.pop_front() {
                inner.answers.remove(&key);
            }
        }
        let key = (sender.to_owned(), batch_id);
        if inner.answers.insert(key.clone(), answer.clone()).is_none() {
            inner.order.push_back((Instant::now(), key));
        }
    }
}

impl Inner {
    fn expire(&mut self, window: Duration) {
        let now = Instant::now();
        while let Some((at, _)) = self.order.front() {
            if now.duration_since(*at) < window {
                break;
            }
            if let Some((_, key)) = self.order.pop_front() {
                self.answers.remove(&key);
            }
        }
    }
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
        }
    }

    #[test]
    fn a_batch_is_remembered_per_sender_within_the_window() {
        let recent = RecentBatches::new(Duration::from_secs(60));
        let id = Uuid::from_u128(7);
        assert_eq!(recent.answer_for("shop", id), None);
        recent.remember("shop", id, &answer(3));
        assert_eq!(recent.answer_for("shop", id), Some(answer(3)));
        assert_eq!(recent.answer_for("other shop", id), None);
    }

    #[test]
    fn answers_expire_after_the_window() {
        let recent = RecentBatches::new(Duration::from_millis(1));
        recent.remember("shop", Uuid::from_u128(1), &answer(1));
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(recent.answer_for("shop", Uuid::from_u128(1)), None);
    }
}
