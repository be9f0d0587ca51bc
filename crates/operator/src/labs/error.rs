//! Errors of the labs controller.

use super::{build::BuildError, config::ConfigError};
use crate::runtime::ReconcileError;

/// Why a labs reconcile failed (it is retried with backoff).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request to the API server failed.
    #[error("Kubernetes API request failed: {0}")]
    Kube(#[from] kube::Error),
    /// An object could not be encoded.
    #[error("cannot encode {what}: {source}")]
    Encode {
        /// What was encoded.
        what: &'static str,
        /// The serializer error.
        #[source]
        source: serde_json::Error,
    },
    /// A watch cache has not finished its first list (its CRD may be missing).
    #[error("the {kind} watch has not synced yet; check that its CRD is installed")]
    CacheNotReady {
        /// The kind.
        kind: String,
    },
    /// A foreign object holds data that cannot be used.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// The labs configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The cached Experiment does not read as an `Experiment` (stored under a looser
    /// schema); waits for its next change.
    #[error("Experiment {namespace}/{name} does not match the expected schema: {reason}")]
    Decode {
        /// Namespace of the Experiment.
        namespace: String,
        /// Name of the Experiment.
        name: String,
        /// Why, naming the field.
        reason: String,
    },
}

impl ReconcileError for Error {
    fn reason(&self) -> &str {
        match self {
            Self::Kube(_) => "ApiError",
            Self::Encode { .. } => "EncodeError",
            Self::CacheNotReady { .. } => "CacheNotReady",
            Self::Build(_) => "InvalidConnectionSecret",
            Self::Config(_) => "InvalidConfiguration",
            Self::Decode { .. } => "InvalidObject",
        }
    }

    fn is_permanent(&self) -> bool {
        matches!(self, Self::Decode { .. })
    }
}
