//! Per-object exponential retry backoff, like client-go's item rate limiter.
//!
//! kube's `error_policy` is synchronous and never hears about successful reconciles, so the
//! failure count per object lives here, in a [`FailureTracker`] shared by the reconcile wrapper
//! (which calls [`FailureTracker::reset`] on success) and the error policy (which calls
//! [`FailureTracker::record_failure`] and asks for the next delay).

use std::{
    collections::HashMap,
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

/// The retry schedule: `base · 2^(failures-1)`, capped at `max`, minus up to `jitter` of itself.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackoffPolicy {
    /// Delay after the first failure (controller-runtime: 5 ms).
    pub base: Duration,
    /// Longest delay (controller-runtime: 1000 s).
    pub max: Duration,
    /// Fraction in `[0, 1)` by which a delay is randomly shortened, so that objects that failed
    /// together do not retry in lockstep. The delay never exceeds the exact schedule.
    pub jitter: f64,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(5),
            max: Duration::from_secs(1000),
            jitter: 0.1,
        }
    }
}

impl BackoffPolicy {
    /// The exact delay after `failures` consecutive failures (no jitter). Zero failures means
    /// no delay; the first failure waits `base`, each further one doubles, up to `max`.
    pub fn delay(&self, failures: u32) -> Duration {
        if failures == 0 {
            return Duration::ZERO;
        }
        let exponent = (failures - 1).min(63);
        let factor = 1u64 << exponent;
        let nanos = u64::try_from(self.base.as_nanos()).unwrap_or(u64::MAX);
        let delay = Duration::from_nanos(nanos.saturating_mul(factor));
        delay.min(self.max)
    }

    /// The delay after `failures` failures, shortened by `jitter · unit` of itself. `unit` is a
    /// number in `[0, 1)` (clamped); the result lies in `[delay·(1-jitter), delay]`.
    pub fn jittered(&self, failures: u32, unit: f64) -> Duration {
        let exact = self.delay(failures);
        let unit = if unit.is_finite() {
            unit.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let jitter = self.jitter.clamp(0.0, 1.0);
        exact.mul_f64(1.0 - jitter * unit)
    }

    /// [`BackoffPolicy::jittered`] with a random `unit`.
    pub fn next_delay(&self, failures: u32) -> Duration {
        self.jittered(failures, rand::random::<f64>())
    }
}

#[derive(Debug, Clone)]
struct Entry {
    failures: u32,
    last_failure: Instant,
    retry_pending: bool,
    /// The object's `namespace/name`, by which [`FailureTracker::forget_object`] finds it.
    object: String,
}

/// Consecutive-failure counts per object key, shared between a reconcile wrapper and its error
/// policy.
///
/// Keys are opaque strings (the runtime uses the object's UID, or `namespace/name` when it has
/// none). Entries disappear on success, and entries whose last failure is older than twice the
/// maximum delay are swept when new failures are recorded, so deleted objects do not leak.
#[derive(Debug)]
pub struct FailureTracker {
    policy: BackoffPolicy,
    entries: Mutex<HashMap<String, Entry>>,
}

impl FailureTracker {
    /// An empty tracker using `policy`.
    pub fn new(policy: BackoffPolicy) -> Self {
        Self {
            policy,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The schedule this tracker uses.
    pub fn policy(&self) -> &BackoffPolicy {
        &self.policy
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts one more failure for `key`, marks a retry as pending and returns the new count.
    pub fn record_failure(&self, key: &str) -> u32 {
        self.record_failure_of(key, key)
    }

    /// [`FailureTracker::record_failure`] for the object named `object` (`namespace/name`).
    pub fn record_failure_of(&self, key: &str, object: &str) -> u32 {
        let now = Instant::now();
        let mut entries = self.lock();
        if entries.len() >= 1024 {
            let horizon = self.policy.max.saturating_mul(2);
            entries.retain(|_, e| now.duration_since(e.last_failure) < horizon);
        }
        let entry = entries.entry(key.to_owned()).or_insert(Entry {
            failures: 0,
            last_failure: now,
            retry_pending: false,
            object: object.to_owned(),
        });
        entry.failures = entry.failures.saturating_add(1);
        entry.last_failure = now;
        entry.retry_pending = true;
        entry.failures
    }

    /// Records a failure and returns the jittered delay before the retry.
    pub fn next_retry(&self, key: &str) -> (u32, Duration) {
        self.next_retry_of(key, key)
    }

    /// [`FailureTracker::next_retry`] for the object named `object` (`namespace/name`).
    pub fn next_retry_of(&self, key: &str, object: &str) -> (u32, Duration) {
        let failures = self.record_failure_of(key, object);
        (failures, self.policy.next_delay(failures))
    }

    /// Forgets every entry of the object named `object` (`namespace/name`): its retry found
    /// it deleted. Returns whether there was one.
    pub fn forget_object(&self, object: &str) -> bool {
        let mut entries = self.lock();
        let before = entries.len();
        entries.retain(|_, e| e.object != object);
        entries.len() != before
    }

    /// Forgets `key` (after a successful reconcile, or an error that waits for a change).
    pub fn reset(&self, key: &str) {
        self.lock().remove(key);
    }

    /// Marks that the retry for `key` has started (it is no longer waiting in the queue).
    pub fn retry_started(&self, key: &str) {
        if let Some(entry) = self.lock().get_mut(key) {
            entry.retry_pending = false;
        }
    }

    /// Consecutive failures recorded for `key`.
    pub fn failures(&self, key: &str) -> u32 {
        self.lock().get(key).map_or(0, |e| e.failures)
    }

    /// How many objects are waiting for a retry after a failure.
    pub fn pending_retries(&self) -> usize {
        self.lock().values().filter(|e| e.retry_pending).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_doubles_from_5ms_and_caps_at_1000s() {
        let policy = BackoffPolicy::default();
        let ms = |n| Duration::from_millis(n);
        let expected = [
            (0, Duration::ZERO),
            (1, ms(5)),
            (2, ms(10)),
            (3, ms(20)),
            (4, ms(40)),
            (5, ms(80)),
            (10, ms(2560)),
            (18, ms(655_360)),
            (19, Duration::from_secs(1000)),
            (20, Duration::from_secs(1000)),
            (64, Duration::from_secs(1000)),
            (65, Duration::from_secs(1000)),
            (u32::MAX, Duration::from_secs(1000)),
        ];
        for (failures, delay) in expected {
            assert_eq!(policy.delay(failures), delay, "failures = {failures}");
        }
    }

    #[test]
    fn jitter_only_shortens_within_bounds() {
        let policy = BackoffPolicy::default();
        for failures in [1, 2, 7, 19, 30] {
            let exact = policy.delay(failures);
            assert_eq!(policy.jittered(failures, 0.0), exact);
            let shortest = policy.jittered(failures, 1.0);
            assert_eq!(shortest, exact.mul_f64(0.9));
            for _ in 0..200 {
                let d = policy.next_delay(failures);
                assert!(d <= exact, "{d:?} > {exact:?}");
                assert!(d >= exact.mul_f64(0.9), "{d:?} < 90% of {exact:?}");
            }
        }
        assert_eq!(policy.jittered(3, f64::NAN), policy.delay(3));
        assert_eq!(policy.jittered(3, 7.0), policy.jittered(3, 1.0));
    }

    #[test]
    fn tracker_counts_and_resets_on_success() {
        let tracker = FailureTracker::new(BackoffPolicy {
            jitter: 0.0,
            ..BackoffPolicy::default()
        });
        assert_eq!(tracker.next_retry("a"), (1, Duration::from_millis(5)));
        assert_eq!(tracker.next_retry("a"), (2, Duration::from_millis(10)));
        assert_eq!(tracker.next_retry("b"), (1, Duration::from_millis(5)));
        assert_eq!(tracker.next_retry("a"), (3, Duration::from_millis(20)));
        assert_eq!(tracker.pending_retries(), 2);
        tracker.retry_started("a");
        assert_eq!(tracker.pending_retries(), 1);
        tracker.reset("a");
        assert_eq!(tracker.failures("a"), 0);
        assert_eq!(tracker.next_retry("a"), (1, Duration::from_millis(5)));
        assert_eq!(tracker.failures("b"), 1);
    }

    #[test]
    fn a_deleted_object_is_forgotten_by_name() {
        let tracker = FailureTracker::new(BackoffPolicy::default());
        tracker.next_retry_of("uid-1", "team/a");
        tracker.next_retry_of("uid-2", "team/b");
        assert_eq!(tracker.pending_retries(), 2);
        assert!(!tracker.forget_object("team/c"));
        assert!(!tracker.forget_object("other/a"));
        assert_eq!(tracker.pending_retries(), 2);
        assert!(tracker.forget_object("team/a"));
        assert_eq!(tracker.failures("uid-1"), 0);
        assert_eq!(tracker.failures("uid-2"), 1);
        assert_eq!(tracker.pending_retries(), 1);
    }
}
