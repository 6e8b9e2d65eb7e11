//! When to try again after a failed send, and which collector answers are worth retrying.

/// Wait after the first failure.
pub const FIRST_RETRY_MS: i64 = 1_000;
/// The wait stops growing here: a collector that is back should hear from us within a minute.
pub const MAX_RETRY_MS: i64 = 60_000;

/// Milliseconds to wait after `failures` consecutive failed sends: 1 s, 2 s, 4 s, … up to 60 s,
/// scaled into its upper half by `jitter` (in `[0, 1)`) so that many browsers that lost the
/// collector at the same moment do not all come back at the same moment.
pub fn retry_delay_ms(failures: u32, jitter: f64) -> i64 {
    if failures == 0 {
        return 0;
    }
    let doublings = (failures - 1).min(16);
    let full = FIRST_RETRY_MS
        .saturating_mul(1 << doublings)
        .min(MAX_RETRY_MS);
    let jitter = if jitter.is_finite() {
        jitter.clamp(0.0, 1.0)
    } else {
        0.0
    };
    full / 2 + ((full / 2) as f64 * jitter) as i64
}

/// Longest wait a collector's `Retry-After` can impose: beyond it a misconfigured answer would
/// strand the queue.
pub const MAX_RETRY_AFTER_MS: i64 = 3_600_000;

/// The wait after `failures` consecutive failures when the collector said `Retry-After:
/// retry_after_s` (0 when it said nothing): whichever is longer.
pub fn wait_ms(failures: u32, jitter: f64, retry_after_s: f64) -> i64 {
    let asked = if retry_after_s.is_finite() && retry_after_s > 0.0 {
        ((retry_after_s * 1000.0) as i64).min(MAX_RETRY_AFTER_MS)
    } else {
        0
    };
    retry_delay_ms(failures, jitter).max(asked)
}

/// What to do with a batch after the collector answered with `status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Stored (per-event rejections included): the events leave the queue.
    Delivered,
    /// The collector or the way to it had a problem: keep the batch and send it again later.
    Retry,
    /// The collector refused the batch as such: sending it again would fail again.
    Drop,
}

pub fn verdict_for_status(status: u16) -> Verdict {
    match status {
        200..=299 => Verdict::Delivered,
        // Timeout and rate limit are the collector's state, not the batch's fault.
        408 | 429 => Verdict::Retry,
        400..=499 => Verdict::Drop,
        _ => Verdict::Retry,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_one_second_and_stops_at_a_minute() {
        let full: Vec<i64> = (1..=9).map(|f| retry_delay_ms(f, 1.0)).collect();
        assert_eq!(
            full,
            [1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000, 60_000]
        );
        assert_eq!(retry_delay_ms(u32::MAX, 1.0), MAX_RETRY_MS);
    }

    #[test]
    fn retry_after_lengthens_the_wait_but_never_shortens_it() {
        assert_eq!(wait_ms(1, 1.0, 5.0), 5_000);
        assert_eq!(wait_ms(7, 1.0, 5.0), 60_000);
        assert_eq!(wait_ms(1, 1.0, 0.0), 1_000);
        assert_eq!(wait_ms(1, 1.0, f64::NAN), 1_000);
        assert_eq!(wait_ms(1, 1.0, 1e12), MAX_RETRY_AFTER_MS);
    }

    #[test]
    fn no_failure_means_no_wait() {
        assert_eq!(retry_delay_ms(0, 0.7), 0);
    }

    #[test]
    fn jitter_keeps_the_wait_in_the_upper_half() {
        for failures in 1..20 {
            let low = retry_delay_ms(failures, 0.0);
            let high = retry_delay_ms(failures, 1.0);
            assert_eq!(low * 2, high);
            let mid = retry_delay_ms(failures, 0.5);
            assert!(low <= mid && mid <= high);
        }
        assert_eq!(retry_delay_ms(3, f64::NAN), retry_delay_ms(3, 0.0));
        assert_eq!(retry_delay_ms(3, 7.0), retry_delay_ms(3, 1.0));
    }

    #[test]
    fn statuses_map_to_deliver_retry_or_drop() {
        assert_eq!(verdict_for_status(200), Verdict::Delivered);
        assert_eq!(verdict_for_status(204), Verdict::Delivered);
        assert_eq!(verdict_for_status(400), Verdict::Drop);
        assert_eq!(verdict_for_status(413), Verdict::Drop);
        assert_eq!(verdict_for_status(408), Verdict::Retry);
        assert_eq!(verdict_for_status(429), Verdict::Retry);
        assert_eq!(verdict_for_status(500), Verdict::Retry);
        assert_eq!(verdict_for_status(503), Verdict::Retry);
        assert_eq!(verdict_for_status(302), Verdict::Retry);
    }
}
