//! The dev cluster's request accounting (`GET`/`DELETE /devcluster/stats`), read over HTTP so
//! it works the same for a server in another process, and differences between snapshots.

use devcluster::{StatsSnapshot, VerbStats};
use http::Method;
use serde::{Deserialize, Serialize};

use crate::BenchError;
use crate::http::Conn;

/// Path of the accounting endpoint.
pub const STATS_PATH: &str = "/devcluster/stats";

/// Reads the accounting.
pub async fn fetch(conn: &mut Conn) -> Result<StatsSnapshot, BenchError> {
    let body = conn.call_expect(Method::GET, STATS_PATH, None, 200).await?;
    serde_json::from_slice(&body).map_err(|e| BenchError::Decode {
        what: format!("GET {STATS_PATH}"),
        detail: e.to_string(),
    })
}

/// Resets the accounting to zero.
pub async fn reset(conn: &mut Conn) -> Result<(), BenchError> {
    conn.call_expect(Method::DELETE, STATS_PATH, None, 200)
        .await
        .map(drop)
}

/// What happened between two snapshots. Counts, errors and latency sums are differences;
/// `max_micros` cannot be differenced and is the later snapshot's maximum (since the last
/// reset).
pub fn delta(before: &StatsSnapshot, after: &StatsSnapshot) -> StatsSnapshot {
    let requests = after
        .requests
        .iter()
        .filter_map(|(k, a)| {
            let b = before.requests.get(k).cloned().unwrap_or_default();
            let d = VerbStats {
                count: a.count.saturating_sub(b.count),
                errors: a.errors.saturating_sub(b.errors),
                total_micros: a.total_micros.saturating_sub(b.total_micros),
                max_micros: a.max_micros,
            };
            (d.count > 0).then(|| (k.clone(), d))
        })
        .collect();
    StatsSnapshot {
        requests,
        writes: after.writes.saturating_sub(before.writes),
        reads: after.reads.saturating_sub(before.reads),
        injected_failures: after
            .injected_failures
            .saturating_sub(before.injected_failures),
    }
}

/// Server-side view of one verb on one resource during a phase.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerVerb {
    /// `"<verb> <resource>"`, as the accounting keys it.
    pub key: String,
    /// Requests handled.
    pub count: u64,
    /// Requests answered with a status >= 400.
    pub errors: u64,
    /// Mean handling time inside the server (from routing to the response head), in ms.
    pub mean_ms: f64,
    /// Largest handling time, in ms.
    pub max_ms: f64,
}

/// Per-verb summaries of a snapshot, busiest first.
pub fn summarize(s: &StatsSnapshot) -> Vec<ServerVerb> {
    let mut v: Vec<ServerVerb> = s
        .requests
        .iter()
        .map(|(k, r)| {
            #[allow(clippy::cast_precision_loss)]
            let (mean, max) = (
                r.mean().as_secs_f64() * 1000.0,
                r.max_micros as f64 / 1000.0,
            );
            ServerVerb {
                key: k.clone(),
                count: r.count,
                errors: r.errors,
                mean_ms: mean,
                max_ms: max,
            }
        })
        .collect();
    v.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
    v
}

/// Write requests per object: the number a controller should keep low, e.g. after creating
/// `objects` custom resources. Zero objects give zero.
pub fn writes_per_object(s: &StatsSnapshot, objects: u64) -> f64 {
    if objects == 0 {
        return 0.0;
    }
    #[allow(clippy::cast_precision_loss)]
    let r = s.writes as f64 / objects as f64;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(entries: &[(&str, u64, u64, u64, u64)], writes: u64, reads: u64) -> StatsSnapshot {
        StatsSnapshot {
            requests: entries
                .iter()
                .map(|&(k, count, errors, total, max)| {
                    (
                        k.to_string(),
                        VerbStats {
                            count,
                            errors,
                            total_micros: total,
                            max_micros: max,
                        },
                    )
                })
                .collect(),
            writes,
            reads,
            injected_failures: 0,
        }
    }

    #[test]
    fn delta_subtracts_and_drops_idle_entries() {
        let before = snap(
            &[
                ("create configmaps", 10, 1, 1000, 50),
                ("list pods", 2, 0, 20, 10),
            ],
            10,
            2,
        );
        let after = snap(
            &[
                ("create configmaps", 30, 1, 5000, 90),
                ("list pods", 2, 0, 20, 10),
                ("watch configmaps", 4, 0, 400, 100),
            ],
            30,
            6,
        );
        let d = delta(&before, &after);
        assert_eq!(d.writes, 20);
        assert_eq!(d.reads, 4);
        assert_eq!(d.requests.len(), 2);
        let c = d.get("create", "configmaps");
        assert_eq!(
            (c.count, c.errors, c.total_micros, c.max_micros),
            (20, 0, 4000, 90)
        );
        assert_eq!(d.get("watch", "configmaps").count, 4);
        assert_eq!(d.get("list", "pods").count, 0);
    }

    #[test]
    fn summaries_and_writes_per_object() {
        let s = snap(
            &[
                ("create configmaps", 4, 1, 8000, 3000),
                ("get configmaps", 9, 0, 900, 200),
            ],
            4,
            9,
        );
        let v = summarize(&s);
        assert_eq!(v[0].key, "get configmaps");
        assert_eq!(v[1].key, "create configmaps");
        assert!((v[1].mean_ms - 2.0).abs() < 1e-9);
        assert!((v[1].max_ms - 3.0).abs() < 1e-9);
        assert_eq!(v[1].errors, 1);
        assert!((writes_per_object(&s, 2) - 2.0).abs() < 1e-9);
        assert!(writes_per_object(&s, 0).abs() < f64::EPSILON);
    }

    #[test]
    fn snapshot_json_round_trips() {
        let s = snap(&[("create configmaps", 1, 0, 10, 10)], 1, 0);
        let text = serde_json::to_string(&s).unwrap();
        let back: StatsSnapshot = serde_json::from_str(&text).unwrap();
        assert_eq!(back, s);
    }
}
