//! Request accounting and fault injection.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Counters for one verb on one resource.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct VerbStats {
    /// Number of requests.
    pub count: u64,
    /// Number that ended in an error status (>= 400).
    pub errors: u64,
    /// Sum of handling latency in microseconds (for watches: until the stream is set up).
    pub total_micros: u64,
    /// Largest handling latency in microseconds.
    pub max_micros: u64,
}

impl VerbStats {
    /// Mean latency.
    pub fn mean(&self) -> Duration {
        self.total_micros
            .checked_div(self.count)
            .map_or(Duration::ZERO, Duration::from_micros)
    }
}

/// A snapshot of the request accounting.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct StatsSnapshot {
    /// Keyed by `"<verb> <resource>"`, where resource is `plural[.group][/subresource]`.
    pub requests: BTreeMap<String, VerbStats>,
    /// Requests with verbs create, update, patch, delete, deletecollection.
    pub writes: u64,
    /// Requests with verbs get, list, watch.
    pub reads: u64,
    /// Requests failed by fault injection.
    pub injected_failures: u64,
}

impl StatsSnapshot {
    /// Counters of one verb on one resource (`plural[.group]`).
    pub fn get(&self, verb: &str, resource: &str) -> VerbStats {
        self.requests
            .get(&format!("{verb} {resource}"))
            .cloned()
            .unwrap_or_default()
    }

    /// Total requests with a verb across resources.
    pub fn verb_total(&self, verb: &str) -> u64 {
        self.requests
            .iter()
            .filter(|(k, _)| k.split(' ').next() == Some(verb))
            .map(|(_, v)| v.count)
            .sum()
    }
}

/// Request accounting shared by all handlers: per resource, per verb counters (looked up
/// without allocating on the hot path), plus totals.
#[derive(Debug, Default)]
pub struct Stats(Mutex<StatsInner>);

#[derive(Debug, Default)]
struct StatsInner {
    by_resource: std::collections::HashMap<String, Vec<(String, VerbStats)>>,
    writes: u64,
    reads: u64,
    injected_failures: u64,
}

/// Whether a verb writes.
pub fn is_write(verb: &str) -> bool {
    matches!(
        verb,
        "create" | "update" | "patch" | "delete" | "deletecollection"
    )
}

impl Stats {
    fn lock(&self) -> std::sync::MutexGuard<'_, StatsInner> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records one request.
    pub fn record(&self, verb: &str, resource: &str, latency: Duration, error: bool) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let mut s = self.lock();
        if is_write(verb) {
            s.writes += 1;
        } else {
            s.reads += 1;
        }
        let verbs = match s.by_resource.get_mut(resource) {
            Some(v) => v,
            None => s.by_resource.entry(resource.to_string()).or_default(),
        };
        let idx = verbs
            .iter()
            .position(|(v, _)| v == verb)
            .unwrap_or_else(|| {
                verbs.push((verb.to_string(), VerbStats::default()));
                verbs.len() - 1
            });
        let e = &mut verbs[idx].1;
        e.count += 1;
        if error {
            e.errors += 1;
        }
        e.total_micros = e.total_micros.saturating_add(us);
        e.max_micros = e.max_micros.max(us);
    }

    /// Counts one injected failure.
    pub fn injected(&self) {
        self.lock().injected_failures += 1;
    }

    /// Current counters.
    pub fn snapshot(&self) -> StatsSnapshot {
        let s = self.lock();
        let mut requests = BTreeMap::new();
        for (resource, verbs) in &s.by_resource {
            for (verb, stats) in verbs {
                requests.insert(format!("{verb} {resource}"), stats.clone());
            }
        }
        StatsSnapshot {
            requests,
            writes: s.writes,
            reads: s.reads,
            injected_failures: s.injected_failures,
        }
    }

    /// Resets every counter.
    pub fn reset(&self) {
        *self.lock() = StatsInner::default();
    }
}

/// Fault-injection settings; the default injects nothing.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct FaultConfig {
    /// Fraction (0.0–1.0) of matching requests to fail.
    pub error_rate: f64,
    /// HTTP codes to fail with, picked at random; allowed: 409, 429, 500, 503, 504. Empty
    /// means 500.
    pub error_codes: Vec<u16>,
    /// Extra latency added to every matching request, in milliseconds.
    pub latency_ms: u64,
    /// Verbs the faults apply to (`get`, `list`, `watch`, `create`, ...); empty means all.
    pub verbs: Vec<String>,
    /// Resources (`plural` or `plural.group`) the faults apply to; empty means all.
    pub resources: Vec<String>,
    /// While true, matching requests wait until it is cleared.
    pub paused: bool,
}

impl FaultConfig {
    /// Whether the settings apply to a request.
    pub fn applies(&self, verb: &str, resource: &str, group: &str) -> bool {
        let verb_ok = self.verbs.is_empty() || self.verbs.iter().any(|v| v == verb);
        let res_ok = self.resources.is_empty()
            || self.resources.iter().any(|r| {
                r == resource || (!group.is_empty() && *r == format!("{resource}.{group}"))
            });
        verb_ok && res_ok
    }

    /// Checks the values; the message names the field and what is allowed.
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.error_rate) {
            return Err(format!(
                "errorRate: must be between 0.0 and 1.0, got {}",
                self.error_rate
            ));
        }
        for c in &self.error_codes {
            if ![409, 429, 500, 503, 504].contains(c) {
                return Err(format!(
                    "errorCodes: {c} is not allowed; allowed: 409, 429, 500, 503, 504"
                ));
            }
        }
        Ok(())
    }
}
