//! Resending the entries a batch write refused.
//!
//! Kinesis PutRecords and Firehose PutRecordBatch answer a call with one outcome per entry:
//! some stored, some refused (throughput exceeded, internal failure). [`send_all`] resends only
//! the refused ones, with exponential backoff and jitter, until every entry is stored or the
//! attempts or the deadline run out. Failures of the whole call are returned at once: the SDK's
//! own retry strategy has already retried the transient ones.

use std::future::Future;
use std::time::{Duration, Instant};

use crate::error::{ConnectorError, Result};

/// Why the service refused one entry of a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct EntryFailure {
    pub code: String,
    pub message: String,
    /// The refusal means "slow down" (retrying later can succeed without anything changing).
    pub throttled: bool,
}

/// One outcome per sent entry, in order: `None` when stored.
pub(crate) type Outcomes = Vec<Option<EntryFailure>>;

/// How long to keep resending refused entries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RetryPolicy {
    /// Calls in all, the first one included.
    pub max_attempts: u32,
    /// Backoff before the first resend; doubled for each further one.
    pub base_delay: Duration,
    /// Upper bound of one backoff.
    pub max_delay: Duration,
    /// No resend starts later than this after the first call.
    pub deadline: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 8,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
            deadline: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// Backoff before resend number `resend` (1-based): half of the exponential delay plus a
    /// random part up to the other half, so writers that failed together spread out.
    pub(crate) fn delay(&self, resend: u32) -> Duration {
        let exponential = self
            .base_delay
            .saturating_mul(1u32 << resend.saturating_sub(1).min(20))
            .min(self.max_delay);
        let half = exponential / 2;
        let half_nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
        half + Duration::from_nanos(fastrand::u64(0..=half_nanos))
    }
}

/// Sends `entries` through `send` until the service stored every one.
///
/// `send` makes one call with the entries it is given and returns their outcomes in the same
/// order. Only refused entries are sent again. When they are still refused after the last
/// attempt, the error is [`ConnectorError::Throttled`] if any refusal was throttling, else
/// [`ConnectorError::Unavailable`]; the stored entries stay stored.
pub(crate) async fn send_all<T, F, Fut>(
    service: &'static str,
    policy: &RetryPolicy,
    entries: Vec<T>,
    send: F,
) -> Result<()>
where
    T: Clone,
    F: FnMut(Vec<T>) -> Fut,
    Fut: Future<Output = Result<Outcomes>>,
{
    send_all_tracked(service, policy, entries, send)
        .await
        .map_err(|(e, _)| e)
}

/// [`send_all`], telling on failure which entries (positions in `entries`) were not stored.
pub(crate) async fn send_all_tracked<T, F, Fut>(
    service: &'static str,
    policy: &RetryPolicy,
    entries: Vec<T>,
    mut send: F,
) -> std::result::Result<(), (ConnectorError, Vec<usize>)>
where
    T: Clone,
    F: FnMut(Vec<T>) -> Fut,
    Fut: Future<Output = Result<Outcomes>>,
{
    let started = Instant::now();
    let total = entries.len();
    let mut pending = entries;
    let mut pending_at: Vec<usize> = (0..total).collect();
    let mut attempt = 0u32;
    while !pending.is_empty() {
        attempt += 1;
        let outcomes = send(pending.clone())
            .await
            .map_err(|e| (e, pending_at.clone()))?;
        if outcomes.len() != pending.len() {
            return Err((
                ConnectorError::unavailable(
                    service,
                    format!(
                        "answered {} outcomes for {} entries",
                        outcomes.len(),
                        pending.len()
                    ),
                ),
                pending_at,
            ));
        }
        let mut refused = Vec::new();
        let mut refused_at = Vec::new();
        let mut first_failure = None;
        let mut throttled = false;
        for ((entry, at), outcome) in pending.into_iter().zip(pending_at).zip(outcomes) {
            if let Some(failure) = outcome {
                throttled |= failure.throttled;
                first_failure.get_or_insert(failure);
                refused.push(entry);
                refused_at.push(at);
            }
        }
        let Some(failure) = first_failure else {
            return Ok(());
        };
        let delay = policy.delay(attempt);
        if attempt >= policy.max_attempts || started.elapsed() + delay > policy.deadline {
            let detail = format!(
                "{} of {total} entries still refused after {attempt} attempts ({}: {})",
                refused.len(),
                failure.code,
                failure.message
            );
            let error = if throttled {
                ConnectorError::Throttled { service, detail }
            } else {
                ConnectorError::Unavailable { service, detail }
            };
            return Err((error, refused_at));
        }
        tracing::warn!(
            service,
            attempt,
            refused = refused.len(),
            total,
            code = %failure.code,
            delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            "resending entries the service refused"
        );
        tokio::time::sleep(delay).await;
        pending = refused;
        pending_at = refused_at;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    fn quick(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(4),
            deadline: Duration::from_secs(5),
        }
    }

    fn refusal(throttled: bool) -> Option<EntryFailure> {
        Some(EntryFailure {
            code: if throttled {
                "ProvisionedThroughputExceededException".into()
            } else {
                "InternalFailure".into()
            },
            message: "try again".into(),
            throttled,
        })
    }

    /// A fake batch call: refuses the entries `refuse` names for the first `refusing_calls`
    /// calls, stores everything else, and remembers what every call was sent.
    struct FakeService {
        refuse: Vec<u32>,
        refusing_calls: usize,
        throttled: bool,
        calls: Mutex<Vec<Vec<u32>>>,
    }

    impl FakeService {
        fn send(&self, batch: Vec<u32>) -> std::future::Ready<Result<Outcomes>> {
            let mut calls = self.calls.lock().expect("not poisoned");
            let refusing = calls.len() < self.refusing_calls;
            let outcomes = batch
                .iter()
                .map(|n| {
                    if refusing && self.refuse.contains(n) {
                        refusal(self.throttled)
                    } else {
                        None
                    }
                })
                .collect();
            calls.push(batch);
            std::future::ready(Ok(outcomes))
        }

        fn calls(&self) -> Vec<Vec<u32>> {
            self.calls.lock().expect("not poisoned").clone()
        }
    }

    fn fake(refuse: Vec<u32>, refusing_calls: usize, throttled: bool) -> FakeService {
        FakeService {
            refuse,
            refusing_calls,
            throttled,
            calls: Mutex::new(Vec::new()),
        }
    }

    #[tokio::test]
    async fn resends_only_the_refused_entries_until_stored() {
        let service = fake(vec![2, 4], 2, true);
        send_all("test", &quick(5), vec![1, 2, 3, 4, 5], |b| service.send(b))
            .await
            .expect("stored in the end");
        assert_eq!(
            service.calls(),
            vec![vec![1, 2, 3, 4, 5], vec![2, 4], vec![2, 4]]
        );
    }

    #[tokio::test]
    async fn gives_up_after_max_attempts_as_throttled() {
        let service = fake(vec![3], usize::MAX, true);
        let err = send_all("test", &quick(4), vec![1, 2, 3], |b| service.send(b))
            .await
            .expect_err("never stored");
        assert!(
            matches!(err, ConnectorError::Throttled { ref detail, .. } if detail.contains("1 of 3"))
        );
        assert_eq!(service.calls().len(), 4);
    }

    #[tokio::test]
    async fn other_refusals_end_as_unavailable() {
        let service = fake(vec![1], usize::MAX, false);
        let err = send_all("test", &quick(2), vec![1], |b| service.send(b))
            .await
            .expect_err("never stored");
        assert!(matches!(err, ConnectorError::Unavailable { .. }));
    }

    #[tokio::test]
    async fn stops_at_the_deadline() {
        let policy = RetryPolicy {
            deadline: Duration::ZERO,
            ..quick(100)
        };
        let service = fake(vec![1], usize::MAX, true);
        send_all("test", &policy, vec![1], |b| service.send(b))
            .await
            .expect_err("deadline passed");
        assert_eq!(service.calls().len(), 1);
    }

    #[tokio::test]
    async fn whole_call_failures_are_not_retried_here() {
        let mut calls = 0;
        let err = send_all("test", &quick(5), vec![1], |_| {
            calls += 1;
            std::future::ready(Err(ConnectorError::unavailable("test", "down")))
        })
        .await
        .expect_err("call failed");
        assert!(matches!(err, ConnectorError::Unavailable { .. }));
        assert_eq!(calls, 1);
    }

    #[tokio::test]
    async fn a_wrong_number_of_outcomes_is_an_error() {
        let err = send_all("test", &quick(5), vec![1, 2], |_| {
            std::future::ready(Ok(vec![None]))
        })
        .await
        .expect_err("mismatch");
        assert!(matches!(err, ConnectorError::Unavailable { .. }));
    }

    #[test]
    fn backoff_grows_with_jitter_and_stays_bounded() {
        let policy = RetryPolicy {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            ..RetryPolicy::default()
        };
        for resend in 1..=40 {
            let exponential = (Duration::from_millis(100) * 2u32.pow(resend.min(20) - 1))
                .min(Duration::from_secs(1));
            let delay = policy.delay(resend);
            assert!(delay >= exponential / 2, "resend {resend}: {delay:?}");
            assert!(delay <= exponential, "resend {resend}: {delay:?}");
        }
    }
}
