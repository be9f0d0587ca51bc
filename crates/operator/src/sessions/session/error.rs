//! The one error type of the `AgenticSession` controller.

use crate::runtime::ReconcileError;

/// Why one reconcile of an `AgenticSession` failed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// A Kubernetes API request failed (retried with backoff).
    #[error("{action} failed: {source}")]
    Kube {
        /// What was being done, e.g. `apply Job team-a/s1-job`.
        action: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
    /// An object could not be serialized (a bug; retried).
    #[error("cannot serialize {what}: {source}")]
    Serialize {
        /// The object.
        what: &'static str,
        /// The serializer error.
        #[source]
        source: serde_json::Error,
    },
    /// The `TokenRequest` answer carried no token.
    #[error("TokenRequest for serviceaccount {namespace}/{name} returned no status.token")]
    EmptyToken {
        /// Namespace of the `ServiceAccount`.
        namespace: String,
        /// `ServiceAccount` name.
        name: String,
    },
    /// A cached session could not be read as an `AgenticSession` (waits for its next change).
    #[error("AgenticSession {name} does not match the expected schema: {source}")]
    Decode {
        /// Session name.
        name: String,
        /// The decoding error.
        #[source]
        source: serde_json::Error,
    },
    /// The namespace's `ProjectSettings` does not read in a field sessions use (retried with
    /// backoff: fixing the object lets the session go on).
    #[error(
        "ProjectSettings {namespace}/projectsettings does not match the expected schema: {reason}"
    )]
    ProjectSettings {
        /// Namespace of the session and the `ProjectSettings`.
        namespace: String,
        /// The field and why it does not read.
        reason: String,
    },
    /// The session has no namespace (it is namespaced, so this is a malformed object).
    #[error("metadata.namespace is missing; AgenticSession is a namespaced kind")]
    NoNamespace,
}

impl SessionError {
    /// Wraps a client error with what was being done.
    pub fn kube(action: impl Into<String>, source: kube::Error) -> Self {
        Self::Kube {
            action: action.into(),
            source,
        }
    }

    /// Whether a retry can succeed where this failed: the API server was overloaded (429),
    /// failed (5xx) or could not be reached or read. A refusal (403, 404, 422, ...) or a bug
    /// in the request is not transient.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Kube { source, .. } => match source {
                kube::Error::Api(status) => status.code == 429 || status.code >= 500,
                kube::Error::HyperError(_)
                | kube::Error::Service(_)
                | kube::Error::ReadEvents(_) => true,
                _ => false,
            },
            _ => false,
        }
    }
}

impl ReconcileError for SessionError {
    fn reason(&self) -> &str {
        match self {
            Self::Kube { source, .. } => match source {
                kube::Error::Api(status) if status.code == 409 => "Conflict",
                kube::Error::Api(status) if status.code == 403 => "Forbidden",
                kube::Error::Api(_) => "ApiError",
                _ => "ClientError",
            },
            Self::Serialize { .. } => "SerializeFailed",
            Self::EmptyToken { .. } => "TokenProvisionFailed",
            Self::NoNamespace => "NoNamespace",
            Self::Decode { .. } => "InvalidObject",
            Self::ProjectSettings { .. } => "InvalidProjectSettings",
        }
    }

    fn is_permanent(&self) -> bool {
        matches!(self, Self::NoNamespace | Self::Decode { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_and_retryability() {
        let conflict = SessionError::kube(
            "patch status",
            kube::Error::Api(
                kube::core::Status::failure("conflict", "Conflict")
                    .with_code(409)
                    .boxed(),
            ),
        );
        assert_eq!(conflict.reason(), "Conflict");
        assert!(!conflict.is_permanent());
        assert!(conflict.to_string().starts_with("patch status failed"));
        assert_eq!(SessionError::NoNamespace.reason(), "NoNamespace");
        assert!(SessionError::NoNamespace.is_permanent());
    }

    fn api_error(code: u16) -> SessionError {
        SessionError::kube(
            "apply NetworkPolicy",
            kube::Error::Api(
                kube::core::Status::failure("refused", "")
                    .with_code(code)
                    .boxed(),
            ),
        )
    }

    #[test]
    fn only_overload_server_errors_and_lost_connections_are_transient() {
        for code in [429, 500, 503, 504] {
            assert!(api_error(code).is_transient(), "{code}");
        }
        for code in [400, 403, 404, 409, 422] {
            assert!(!api_error(code).is_transient(), "{code}");
        }
        let lost = SessionError::kube(
            "get Secret",
            kube::Error::ReadEvents(std::io::Error::from(std::io::ErrorKind::ConnectionReset)),
        );
        assert!(lost.is_transient());
        assert!(!SessionError::NoNamespace.is_transient());
    }
}
