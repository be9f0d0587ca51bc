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
}

impl ReconcileError for Error {
    fn reason(&self) -> &str {
        match self {
            Self::Kube(_) => "ApiError",
            Self::Encode { .. } => "EncodeError",
            Self::CacheNotReady { .. } => "CacheNotReady",
            Self::Build(_) => "InvalidConnectionSecret",
            Self::Config(_) => "InvalidConfiguration",
        }
    }
}
