//! Domain metrics of the evaluations family, recorded on edges: writes of generated objects,
//! and condition transitions of Experiments.

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};

/// `{kind, operation}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    /// `ConfigMap`, `TestWorkflow` or `TestTrigger`.
    pub kind: String,
    /// `apply` or `delete`.
    pub operation: String,
}

/// `{condition, status, reason}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransitionLabels {
    /// Condition type.
    pub condition: String,
    /// New status.
    pub status: String,
    /// New reason.
    pub reason: String,
}

/// Handles to the evaluations metrics. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct EvaluationMetrics {
    writes: Family<WriteLabels, Counter>,
    transitions: Family<TransitionLabels, Counter>,
}

impl EvaluationMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "evaluations_generated_object_writes",
            "Writes of objects generated for evaluation Experiments, by kind and operation",
            metrics.writes.clone(),
        );
        registry.register(
            "evaluations_condition_transitions",
            "Condition status changes of evaluation Experiments, by condition, new status and reason",
            metrics.transitions.clone(),
        );
        metrics
    }

    /// Counts one write of a generated object.
    pub fn write(&self, kind: &str, operation: &str) {
        self.writes
            .get_or_create(&WriteLabels {
                kind: kind.to_owned(),
                operation: operation.to_owned(),
            })
            .inc();
    }

    /// Counts one condition transition.
    pub fn transition(&self, condition: &str, status: &str, reason: &str) {
        self.transitions
            .get_or_create(&TransitionLabels {
                condition: condition.to_owned(),
                status: status.to_owned(),
                reason: reason.to_owned(),
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_exported() {
        let mut registry = Registry::default();
        let metrics = EvaluationMetrics::register(&mut registry);
        metrics.write("TestWorkflow", "apply");
        metrics.transition("Ready", "True", "ReconcileSucceeded");
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains("evaluations_generated_object_writes_total{kind=\"TestWorkflow\",operation=\"apply\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("evaluations_condition_transitions_total{condition=\"Ready\",status=\"True\",reason=\"ReconcileSucceeded\"} 1"),
            "{text}"
        );
    }
}
