//! What a session reads of its namespace's `ProjectSettings`: the inactivity timeout and the
//! MCP servers, nothing else.
//!
//! The sessions controller caches this view, not the whole kind, and reads each object on its
//! own ([`Lenient`]). A `ProjectSettings` stored under an older or looser CRD schema (a role
//! outside `admin`/`edit`/`view`, a timeout written as text) used to fail the whole list of the
//! typed watch, and every session in the cluster waited for that cache. Now a field sessions
//! do not read cannot hold them up, and one they do read that does not decode fails the sessions
//! of that namespace alone, with an Event naming the field.

use agentic_api::sessions::{McpServers, ProjectSettings};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use serde::Deserialize;

use crate::runtime::lenient::Lenient;

/// A `ProjectSettings` object as the sessions controller reads it.
#[derive(Resource, Deserialize, Clone, Debug, Default, PartialEq)]
#[resource(inherit = ProjectSettings)]
pub struct SessionProject {
    /// Object metadata.
    pub metadata: ObjectMeta,
    /// The parts of the spec sessions use.
    #[serde(default)]
    pub spec: SessionProjectSpec,
}

/// `spec` of [`SessionProject`]; other fields are not read.
#[derive(Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SessionProjectSpec {
    /// `spec.inactivityTimeoutSeconds`.
    #[serde(default)]
    pub inactivity_timeout_seconds: Option<i64>,
    /// `spec.mcpServers`.
    #[serde(default)]
    pub mcp_servers: Option<McpServers>,
}

/// A cached `ProjectSettings`: the view, or why it does not read.
pub type CachedProject = Lenient<SessionProject>;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(v: serde_json::Value) -> CachedProject {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn fields_sessions_do_not_read_cannot_fail_it() {
        let p = read(json!({
            "apiVersion": "vteam.ambient-code/v1alpha1", "kind": "ProjectSettings",
            "metadata": {"name": "projectsettings", "namespace": "a"},
            "spec": {"groupAccess": [{"groupName": "devs", "role": "owner"}],
                     "repositories": 7, "inactivityTimeoutSeconds": 60}
        }));
        let view = p.read().unwrap();
        assert_eq!(view.spec.inactivity_timeout_seconds, Some(60));
        assert_eq!(view.spec.mcp_servers, None);
    }

    #[test]
    fn a_field_sessions_read_that_does_not_decode_is_named() {
        let p = read(json!({
            "metadata": {"name": "projectsettings", "namespace": "a"},
            "spec": {"inactivityTimeoutSeconds": "soon"}
        }));
        let reason = p.object.clone().unwrap_err();
        assert!(
            reason.starts_with("spec.inactivityTimeoutSeconds: invalid type: string \"soon\""),
            "{reason}"
        );
        assert_eq!(p.meta().namespace.as_deref(), Some("a"));
    }

    #[test]
    fn no_spec_reads_as_empty() {
        let p = read(json!({"metadata": {"name": "projectsettings", "namespace": "a"}}));
        assert_eq!(p.read().unwrap().spec, SessionProjectSpec::default());
    }
}
