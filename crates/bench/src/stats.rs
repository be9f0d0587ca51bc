//! Percentiles, medians and latency summaries.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The nearest-rank percentile `p` (0–100) of ascending `sorted` samples; `None` when empty.
///
/// Nearest rank: the smallest sample such that at least `p` percent of the samples are less
/// than or equal to it (p = 0 gives the minimum, p = 100 the maximum).
pub fn percentile<T: Copy>(sorted: &[T], p: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let p = p.clamp(0.0, 100.0);
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    let idx = rank.saturating_sub(1).min(sorted.len() - 1);
    Some(sorted[idx])
}

/// The median of unsorted samples (the mean of the two middle ones for an even count).
pub fn median(samples: &[f64]) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    let mid = s.len() / 2;
    Some(if s.len().is_multiple_of(2) {
        f64::midpoint(s[mid - 1], s[mid])
    } else {
        s[mid]
    })
}

/// Latency distribution of a set of requests, in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    /// Number of samples.
    pub count: usize,
    /// Smallest.
    pub min_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest.
    pub max_ms: f64,
    /// Arithmetic mean.
    pub mean_ms: f64,
}

/// Milliseconds of a duration as a float.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl LatencySummary {
    /// Summarises latencies given in microseconds (any order).
    pub fn from_micros(samples: &[u64]) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        let mut s = samples.to_vec();
        s.sort_unstable();
        let at = |p: f64| {
            #[allow(clippy::cast_precision_loss)]
            let v = percentile(&s, p).unwrap_or_default() as f64;
            v / 1000.0
        };
        let sum: u128 = s.iter().map(|&v| u128::from(v)).sum();
        #[allow(clippy::cast_precision_loss)]
        let mean = sum as f64 / s.len() as f64 / 1000.0;
        Self {
            count: s.len(),
            min_ms: at(0.0),
            p50_ms: at(50.0),
            p90_ms: at(90.0),
            p99_ms: at(99.0),
            max_ms: at(100.0),
            mean_ms: mean,
        }
    }
}

/// Operations per second; zero when no time elapsed.
pub fn rate(count: u64, elapsed: Duration) -> f64 {
    let s = elapsed.as_secs_f64();
    if s <= 0.0 {
        0.0
    } else {
        #[allow(clippy::cast_precision_loss)]
        let c = count as f64;
        c / s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let s: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&s, 50.0), Some(50));
        assert_eq!(percentile(&s, 99.0), Some(99));
        assert_eq!(percentile(&s, 99.5), Some(100));
        assert_eq!(percentile(&s, 0.0), Some(1));
        assert_eq!(percentile(&s, 100.0), Some(100));
        assert_eq!(percentile(&s, 150.0), Some(100));
        let few = [10u64, 20, 30];
        assert_eq!(percentile(&few, 50.0), Some(20));
        assert_eq!(percentile(&few, 34.0), Some(20));
        assert_eq!(percentile(&few, 33.0), Some(10));
        assert_eq!(percentile::<u64>(&[], 50.0), None);
    }

    #[test]
    fn median_odd_and_even() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn latency_summary_from_micros() {
        let mut us: Vec<u64> = (1..=1000).map(|i| i * 10).collect();
        us.reverse();
        let s = LatencySummary::from_micros(&us);
        assert_eq!(s.count, 1000);
        assert!((s.min_ms - 0.01).abs() < 1e-9);
        assert!((s.p50_ms - 5.0).abs() < 1e-9);
        assert!((s.p90_ms - 9.0).abs() < 1e-9);
        assert!((s.p99_ms - 9.9).abs() < 1e-9);
        assert!((s.max_ms - 10.0).abs() < 1e-9);
        assert!((s.mean_ms - 5.005).abs() < 1e-9);
        assert_eq!(LatencySummary::from_micros(&[]), LatencySummary::default());
    }

    #[test]
    fn rates() {
        assert!((rate(500, Duration::from_millis(250)) - 2000.0).abs() < 1e-6);
        assert!(rate(5, Duration::ZERO).abs() < f64::EPSILON);
    }
}
