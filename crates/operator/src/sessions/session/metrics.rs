//! The session domain metrics (`ambient_*`), recorded on transition edges, plus the active
//! and pending gauges computed from the session cache at scrape time.

use std::{collections::BTreeMap, time::Duration};

use agentic_api::sessions::SessionPhase;

use super::cached::CachedSession;
use kube::{ResourceExt, runtime::reflector::Store};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric},
    metrics::{
        MetricType, counter::Counter, family::Family, gauge::ConstGauge, histogram::Histogram,
    },
    registry::Registry,
};

/// Buckets (seconds) of the duration histograms: OpenTelemetry's defaults, which the
/// upstream dashboards were built on.
pub const DURATION_BUCKETS: [f64; 14] = [
    5.0, 10.0, 25.0, 50.0, 75.0, 100.0, 250.0, 500.0, 750.0, 1000.0, 2500.0, 5000.0, 7500.0,
    10000.0,
];
/// Buckets (seconds) of the short API-call histograms.
pub const CALL_BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// `{namespace}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NamespaceLabels {
    /// Session namespace.
    pub namespace: String,
}

/// `{namespace, final_phase}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CompletedLabels {
    /// Session namespace.
    pub namespace: String,
    /// `Completed`, `Failed` or `Stopped`.
    pub final_phase: String,
}

/// `{namespace, from_phase, to_phase}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransitionLabels {
    /// Session namespace.
    pub namespace: String,
    /// Previous phase (`None` for a new session).
    pub from_phase: String,
    /// New phase.
    pub to_phase: String,
}

/// `{phase, success}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    /// Phase at the start of the reconcile.
    pub phase: String,
    /// `true` or `false`.
    pub success: String,
}

/// `{namespace, phase, error_type}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// Session namespace.
    pub namespace: String,
    /// Phase when the error happened.
    pub phase: String,
    /// The error's reason.
    pub error_type: String,
}

type Hist<L> = Family<L, Histogram, fn() -> Histogram>;

fn durations() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

fn calls() -> Histogram {
    Histogram::new(CALL_BUCKETS)
}

/// Handles to the session metrics. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SessionMetrics {
    startup: Hist<NamespaceLabels>,
    total: Family<NamespaceLabels, Counter>,
    completed: Family<CompletedLabels, Counter>,
    transitions: Family<TransitionLabels, Counter>,
    reconcile: Hist<ReconcileLabels>,
    pod_creation: Hist<NamespaceLabels>,
    token_provision: Hist<NamespaceLabels>,
    errors: Family<ErrorLabels, Counter>,
}

impl Default for SessionMetrics {
    fn default() -> Self {
        Self {
            startup: Family::new_with_constructor(durations),
            total: Family::default(),
            completed: Family::default(),
            transitions: Family::default(),
            reconcile: Family::new_with_constructor(calls),
            pod_creation: Family::new_with_constructor(calls),
            token_provision: Family::new_with_constructor(calls),
            errors: Family::default(),
        }
    }
}

fn ns(namespace: &str) -> NamespaceLabels {
    NamespaceLabels {
        namespace: namespace.to_owned(),
    }
}

impl SessionMetrics {
    /// Registers every metric (and the gauges over `sessions`) in `registry`.
    pub fn register(&self, registry: &mut Registry, sessions: Option<Store<CachedSession>>) {
        registry.register(
            "ambient_session_startup_duration_seconds",
            "Time from the start of a run (Pending) to a running runner",
            self.startup.clone(),
        );
        registry.register("ambient_sessions", "Sessions created", self.total.clone());
        registry.register(
            "ambient_sessions_completed",
            "Sessions that reached a terminal phase (Completed, Failed, Stopped)",
            self.completed.clone(),
        );
        registry.register(
            "ambient_session_phase_transitions",
            "Session phase transitions",
            self.transitions.clone(),
        );
        registry.register(
            "ambient_reconcile_duration_seconds",
            "Duration of session reconciles",
            self.reconcile.clone(),
        );
        registry.register(
            "ambient_pod_creation_duration_seconds",
            "Time to create a session's runner Job and Service",
            self.pod_creation.clone(),
        );
        registry.register(
            "ambient_token_provision_duration_seconds",
            "Time to provision a session's runner credentials",
            self.token_provision.clone(),
        );
        registry.register(
            "ambient_session_errors",
            "Session reconcile errors and failures",
            self.errors.clone(),
        );
        if let Some(store) = sessions {
            registry.register_collector(Box::new(PhaseGauges { store }));
        }
    }

    /// Counts one phase change (`from` is `None` for a new session) and its edge metrics:
    /// a new session, a terminal phase, a failure reason and the startup time.
    pub fn transition(
        &self,
        namespace: &str,
        from: Option<SessionPhase>,
        to: SessionPhase,
        reason: &str,
        startup: Option<Duration>,
    ) {
        if from == Some(to) {
            return;
        }
        self.transitions
            .get_or_create(&TransitionLabels {
                namespace: namespace.to_owned(),
                from_phase: from.map_or("None", |p| p.as_str()).to_owned(),
                to_phase: to.as_str().to_owned(),
            })
            .inc();
        if from.is_none() {
            self.total.get_or_create(&ns(namespace)).inc();
        }
        if to.is_terminal() {
            self.completed
                .get_or_create(&CompletedLabels {
                    namespace: namespace.to_owned(),
                    final_phase: to.as_str().to_owned(),
                })
                .inc();
        }
        if to == SessionPhase::Failed {
            self.error(namespace, from.unwrap_or_default(), reason);
        }
        if to == SessionPhase::Running
            && let Some(d) = startup
        {
            self.startup
                .get_or_create(&ns(namespace))
                .observe(d.as_secs_f64());
        }
    }

    /// Counts one error of `error_type` in `phase`.
    pub fn error(&self, namespace: &str, phase: SessionPhase, error_type: &str) {
        self.errors
            .get_or_create(&ErrorLabels {
                namespace: namespace.to_owned(),
                phase: phase.as_str().to_owned(),
                error_type: error_type.to_owned(),
            })
            .inc();
    }

    /// Records one reconcile's duration.
    pub fn reconciled(&self, phase: SessionPhase, success: bool, elapsed: Duration) {
        self.reconcile
            .get_or_create(&ReconcileLabels {
                phase: phase.as_str().to_owned(),
                success: success.to_string(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// Records the time it took to create a runner Job and Service.
    pub fn pod_created(&self, namespace: &str, elapsed: Duration) {
        self.pod_creation
            .get_or_create(&ns(namespace))
            .observe(elapsed.as_secs_f64());
    }

    /// Records the time it took to provision runner credentials.
    pub fn token_provisioned(&self, namespace: &str, elapsed: Duration) {
        self.token_provision
            .get_or_create(&ns(namespace))
            .observe(elapsed.as_secs_f64());
    }
}

/// `ambient_sessions_active` (Running) and `ambient_sessions_pending` (Pending and Creating)
/// per namespace, counted from the session cache at scrape time.
#[derive(Debug)]
struct PhaseGauges {
    store: Store<CachedSession>,
}

/// Counts (active, pending) sessions per namespace.
pub fn phase_counts(sessions: &[std::sync::Arc<CachedSession>]) -> BTreeMap<String, (i64, i64)> {
    let mut counts: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for s in sessions {
        let entry = counts.entry(s.namespace().unwrap_or_default()).or_default();
        match s.phase.unwrap_or_default() {
            SessionPhase::Running => entry.0 += 1,
            SessionPhase::Pending | SessionPhase::Creating => entry.1 += 1,
            _ => {}
        }
    }
    counts
}

impl Collector for PhaseGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let counts = phase_counts(&self.store.state());
        for (name, help, pick) in [
            (
                "ambient_sessions_active",
                "Sessions in phase Running",
                0usize,
            ),
            (
                "ambient_sessions_pending",
                "Sessions in phase Pending or Creating",
                1usize,
            ),
        ] {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for (namespace, (active, pending)) in &counts {
                let value = if pick == 0 { *active } else { *pending };
                let labels = ns(namespace);
                let metric_encoder = family.encode_family(&labels)?;
                ConstGauge::new(value).encode(metric_encoder)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(m: &SessionMetrics) -> String {
        let mut registry = Registry::default();
        m.register(&mut registry, None);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        out
    }

    #[test]
    fn counters_move_on_edges_only() {
        let m = SessionMetrics::default();
        m.transition("a", None, SessionPhase::Pending, "Pending", None);
        // A retry that records the same phase again is not an edge.
        m.transition(
            "a",
            Some(SessionPhase::Pending),
            SessionPhase::Pending,
            "Pending",
            None,
        );
        m.transition(
            "a",
            Some(SessionPhase::Pending),
            SessionPhase::Creating,
            "Creating",
            None,
        );
        m.transition(
            "a",
            Some(SessionPhase::Creating),
            SessionPhase::Running,
            "Running",
            Some(Duration::from_secs(7)),
        );
        m.transition(
            "a",
            Some(SessionPhase::Running),
            SessionPhase::Failed,
            "OOMKilled",
            None,
        );
        let out = text(&m);
        assert!(
            out.contains("ambient_sessions_total{namespace=\"a\"} 1"),
            "{out}"
        );
        assert!(
            out.contains("ambient_session_phase_transitions_total{namespace=\"a\",from_phase=\"None\",to_phase=\"Pending\"} 1"),
            "{out}"
        );
        assert!(
            !out.contains("from_phase=\"Pending\",to_phase=\"Pending\""),
            "{out}"
        );
        assert!(
            out.contains(
                "ambient_sessions_completed_total{namespace=\"a\",final_phase=\"Failed\"} 1"
            ),
            "{out}"
        );
        assert!(
            out.contains("ambient_session_errors_total{namespace=\"a\",phase=\"Running\",error_type=\"OOMKilled\"} 1"),
            "{out}"
        );
        assert!(
            out.contains("ambient_session_startup_duration_seconds_count{namespace=\"a\"} 1"),
            "{out}"
        );
        assert!(
            out.contains("ambient_session_startup_duration_seconds_sum{namespace=\"a\"} 7.0"),
            "{out}"
        );
    }

    #[test]
    fn gauges_count_phases_per_namespace() {
        use agentic_api::sessions::{AgenticSession, AgenticSessionSpec, AgenticSessionStatus};
        let mk = |ns: &str, phase: SessionPhase| {
            let mut s = AgenticSession::new("s", AgenticSessionSpec::default());
            s.metadata.namespace = Some(ns.into());
            s.status = Some(AgenticSessionStatus {
                phase: Some(phase),
                ..AgenticSessionStatus::default()
            });
            std::sync::Arc::new(CachedSession::from_session(&s).unwrap())
        };
        let counts = phase_counts(&[
            mk("a", SessionPhase::Running),
            mk("a", SessionPhase::Creating),
            mk("a", SessionPhase::Pending),
            mk("b", SessionPhase::Completed),
            mk("b", SessionPhase::Running),
        ]);
        assert_eq!(counts["a"], (1, 2));
        assert_eq!(counts["b"], (1, 0));
    }
}
