//! Errors of the evaluation `Experiment` reconcile.

use crate::runtime::ReconcileError;

/// Why a reconcile of an evaluation `Experiment` did not finish.
#[derive(Debug, thiserror::Error)]
pub enum EvaluationError {
    /// The spec breaks a rule the schema cannot express; waits for a spec change.
    #[error("Experiment {namespace}/{name} has an invalid spec: {problems}")]
    InvalidSpec {
        /// Namespace of the Experiment.
        namespace: String,
        /// Name of the Experiment.
        name: String,
        /// The rejected fields and why.
        problems: String,
    },
    /// The Testkube `testworkflows.testkube.io` CRD is not installed; retried with backoff.
    #[error(
        "the TestWorkflow CRD (testworkflows.testkube.io/v1) is not installed; install Testkube, the Experiment is retried until it appears"
    )]
    CrdNotInstalled,
    /// A write to the API server failed.
    #[error("cannot {verb} {kind} {namespace}/{name}: {source}")]
    Write {
        /// `apply` or `delete`.
        verb: &'static str,
        /// Kind of the object.
        kind: String,
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// The client error.
        #[source]
        source: Box<kube::Error>,
    },
    /// A cached Experiment could not be read as an `Experiment` (a spec the schema should
    /// have refused); waits for its next change.
    #[error("Experiment {namespace}/{name} does not match the expected schema: {source}")]
    Decode {
        /// Namespace of the Experiment.
        namespace: String,
        /// Name of the Experiment.
        name: String,
        /// The decoding error.
        #[source]
        source: serde_json::Error,
    },
    /// Writing the Experiment's status or finalizers failed.
    #[error("cannot update Experiment {namespace}/{name}: {source}")]
    Update {
        /// Namespace of the Experiment.
        namespace: String,
        /// Name of the Experiment.
        name: String,
        /// The client error.
        #[source]
        source: Box<kube::Error>,
    },
}

impl ReconcileError for EvaluationError {
    fn reason(&self) -> &str {
        match self {
            Self::InvalidSpec { .. } => "InvalidSpec",
            Self::CrdNotInstalled => "CRDNotInstalled",
            Self::Write { verb: "delete", .. } => "DeleteFailed",
            Self::Write { .. } => "ApplyFailed",
            Self::Update { .. } => "StatusUpdateFailed",
            Self::Decode { .. } => "InvalidObject",
        }
    }

    fn is_permanent(&self) -> bool {
        matches!(self, Self::InvalidSpec { .. } | Self::Decode { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_and_permanence() {
        let invalid = EvaluationError::InvalidSpec {
            namespace: "ns".into(),
            name: "e".into(),
            problems: "spec.dataset: both".into(),
        };
        assert_eq!(invalid.reason(), "InvalidSpec");
        assert!(invalid.is_permanent());
        assert!(invalid.to_string().contains("spec.dataset"));
        assert!(!EvaluationError::CrdNotInstalled.is_permanent());
        assert_eq!(EvaluationError::CrdNotInstalled.reason(), "CRDNotInstalled");
    }
}
