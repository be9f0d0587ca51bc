//! `/healthz`, `/readyz` and `/metrics`: the shared health state and the HTTP servers.
//!
//! Every replica serves these, leader or not. `/healthz` fails when a controller loop or a
//! shared watch has stopped unexpectedly. `/readyz` succeeds once every shared cache has
//! completed its first list, or while the replica is standing by as a non-leader.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, Mutex, PoisonError},
};

use axum::{
    Router,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use tokio_util::sync::CancellationToken;

use super::metrics::{CONTENT_TYPE, Metrics};

/// What this replica is doing with respect to leader election.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Starting up: neither leading nor standing by yet.
    Starting,
    /// Waiting for the Lease held by another replica.
    Standby,
    /// Reconciling (leader, or leader election disabled).
    Active,
}

#[derive(Debug)]
struct Inner {
    role: Role,
    caches_expected: usize,
    caches_synced: usize,
    failed: BTreeMap<String, String>,
    loops: BTreeMap<String, bool>,
}

/// Shared health and readiness state, updated by the manager and read by the probes.
#[derive(Debug, Clone)]
pub struct HealthState {
    inner: Arc<Mutex<Inner>>,
}

impl Default for HealthState {
    fn default() -> Self {
        Self::new()
    }
}

/// Result of one probe: healthy or not, with the lines of the response body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeReport {
    /// Whether the probe passes.
    pub ok: bool,
    /// Human-readable details, one per line.
    pub details: Vec<String>,
}

impl HealthState {
    /// A fresh state: starting, no caches, nothing failed.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                role: Role::Starting,
                caches_expected: 0,
                caches_synced: 0,
                failed: BTreeMap::new(),
                loops: BTreeMap::new(),
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sets the replica's role.
    pub fn set_role(&self, role: Role) {
        self.lock().role = role;
    }

    /// The replica's role.
    pub fn role(&self) -> Role {
        self.lock().role
    }

    /// Declares how many shared caches must sync before the replica is ready.
    pub fn expect_caches(&self, count: usize) {
        self.lock().caches_expected = count;
    }

    /// Records that one more shared cache finished its initial list.
    pub fn cache_synced(&self) {
        let mut inner = self.lock();
        inner.caches_synced = inner.caches_synced.saturating_add(1);
    }

    /// Records a running loop (a controller or a watch) by name.
    pub fn loop_started(&self, name: &str) {
        self.lock().loops.insert(name.to_owned(), true);
    }

    /// Records that a loop ended on purpose (shutdown).
    pub fn loop_stopped(&self, name: &str) {
        self.lock().loops.insert(name.to_owned(), false);
    }

    /// Records that a loop ended unexpectedly; `/healthz` fails from now on.
    pub fn loop_failed(&self, name: &str, reason: &str) {
        let mut inner = self.lock();
        inner.loops.insert(name.to_owned(), false);
        inner.failed.insert(name.to_owned(), reason.to_owned());
    }

    /// `/healthz`: fails if any loop ended unexpectedly.
    pub fn liveness(&self) -> ProbeReport {
        let inner = self.lock();
        let mut details: Vec<String> = inner
            .failed
            .iter()
            .map(|(name, reason)| format!("{name}: stopped: {reason}"))
            .collect();
        let ok = details.is_empty();
        if ok {
            let running = inner.loops.values().filter(|r| **r).count();
            details.push(format!("ok ({running} loops running)"));
        }
        ProbeReport { ok, details }
    }

    /// `/readyz`: passes while standing by, or when active with every cache synced.
    pub fn readiness(&self) -> ProbeReport {
        let inner = self.lock();
        if !inner.failed.is_empty() {
            return ProbeReport {
                ok: false,
                details: inner
                    .failed
                    .keys()
                    .map(|name| format!("{name}: stopped"))
                    .collect(),
            };
        }
        match inner.role {
            Role::Starting => ProbeReport {
                ok: false,
                details: vec!["starting".into()],
            },
            Role::Standby => ProbeReport {
                ok: true,
                details: vec!["ok (standing by for the leader-election Lease)".into()],
            },
            Role::Active if inner.caches_synced >= inner.caches_expected => ProbeReport {
                ok: true,
                details: vec![format!("ok ({} caches synced)", inner.caches_synced)],
            },
            Role::Active => ProbeReport {
                ok: false,
                details: vec![format!(
                    "waiting for caches: {} of {} synced",
                    inner.caches_synced, inner.caches_expected
                )],
            },
        }
    }
}

fn report_response(report: &ProbeReport) -> Response {
    let status = if report.ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut body = report.details.join("\n");
    body.push('\n');
    (status, body).into_response()
}

async fn healthz(State(health): State<HealthState>) -> Response {
    report_response(&health.liveness())
}

async fn readyz(State(health): State<HealthState>) -> Response {
    report_response(&health.readiness())
}

async fn metrics_handler(State(metrics): State<Metrics>) -> Response {
    match metrics.encode() {
        Ok(body) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response(),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "failed to encode metrics\n",
        )
            .into_response(),
    }
}

/// Router with `/healthz` and `/readyz` (plus `/livez` as an alias of `/healthz`).
pub fn probe_router(health: HealthState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/livez", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(health)
}

/// Router with `/metrics`.
pub fn metrics_router(metrics: Metrics) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .with_state(metrics)
}

/// Binds `addr` and serves `router` until `shutdown` is cancelled. Binding happens before this
/// returns, so an address in use is reported at start-up.
pub async fn serve(
    addr: SocketAddr,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let handle = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
    });
    Ok((local, handle))
}
