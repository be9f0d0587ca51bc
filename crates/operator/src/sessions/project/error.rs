//! Errors of the `ProjectSettings` and namespace controllers.

use crate::runtime::ReconcileError;

use super::model::InvalidSpec;

/// A failed reconcile of a `ProjectSettings` or a managed namespace.
#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    /// The spec is invalid; the object waits for a change.
    #[error("ProjectSettings {namespace}/{name} has an invalid spec: {problems}")]
    InvalidSpec {
        /// Namespace of the object.
        namespace: String,
        /// Name of the object.
        name: String,
        /// Every problem, each naming its field.
        problems: InvalidSpec,
    },
    /// Writing an owned object failed.
    #[error("cannot {verb} {kind} {namespace}/{name}: {source}")]
    Write {
        /// `apply`, `create` or `delete`.
        verb: &'static str,
        /// Kind of the object.
        kind: String,
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// The API error.
        #[source]
        source: Box<kube::Error>,
    },
    /// Patching `status` failed.
    #[error("cannot update the status of ProjectSettings {namespace}/{name}: {source}")]
    Status {
        /// Namespace of the object.
        namespace: String,
        /// Name of the object.
        name: String,
        /// The API error.
        #[source]
        source: Box<kube::Error>,
    },
}

impl ReconcileError for ProjectError {
    fn reason(&self) -> &str {
        match self {
            Self::InvalidSpec { .. } => "InvalidSpec",
            Self::Write { verb: "delete", .. } => "PruneFailed",
            Self::Write { .. } => "ApplyFailed",
            Self::Status { .. } => "StatusUpdateFailed",
        }
    }

    fn is_permanent(&self) -> bool {
        matches!(self, Self::InvalidSpec { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sessions::project::model::FieldProblem;

    #[test]
    fn invalid_spec_is_permanent_and_names_fields() {
        let error = ProjectError::InvalidSpec {
            namespace: "a".into(),
            name: "projectsettings".into(),
            problems: InvalidSpec(vec![FieldProblem {
                field: "spec.groupAccess[0].role".into(),
                message: "unknown role \"x\"; allowed: admin, edit, view".into(),
            }]),
        };
        assert!(error.is_permanent());
        assert_eq!(error.reason(), "InvalidSpec");
        assert!(error.to_string().contains("spec.groupAccess[0].role"));
    }

    #[test]
    fn write_errors_are_retried() {
        let error = ProjectError::Write {
            verb: "delete",
            kind: "RoleBinding".into(),
            namespace: "a".into(),
            name: "g-view".into(),
            source: Box::new(kube::Error::LinesCodecMaxLineLengthExceeded),
        };
        assert!(!error.is_permanent());
        assert_eq!(error.reason(), "PruneFailed");
    }
}
