//! Slim cached views of the runner Jobs and Pods.
//!
//! The reflectors deserialize watch events into these types instead of the full
//! `batch/v1 Job` and `v1 Pod`, so the caches keep only what the session controller reads
//! (metadata, scheduling and container states) and drop pod specs with their long
//! environment lists. This keeps tens of thousands of sessions within a small memory budget.

use std::borrow::Cow;

use k8s_openapi::{
    NamespaceResourceScope,
    api::{
        batch::v1::JobCondition,
        core::v1::{ContainerState, PodCondition},
    },
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use kube::Resource;
use serde::{Deserialize, Serialize};

/// A `batch/v1 Job` with only its metadata and the status counters and conditions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunnerJob {
    /// Standard metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The parts of `status` the controller reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<RunnerJobStatus>,
}

/// The parts of a Job's status the controller reads.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunnerJobStatus {
    /// `Complete`, `Failed`, ... conditions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<JobCondition>>,
    /// Number of active pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<i32>,
}

/// A `v1 Pod` with only its metadata, node name and status.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunnerPod {
    /// Standard metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Only `spec.nodeName`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<RunnerPodSpec>,
    /// The parts of `status` the controller reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<RunnerPodStatus>,
}

/// `spec.nodeName` of a pod.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunnerPodSpec {
    /// The node the pod is bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
}

/// The parts of a pod's status the controller reads.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunnerPodStatus {
    /// `Pending`, `Running`, `Succeeded`, `Failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Pod-level reason (`DeadlineExceeded`, `Evicted`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Pod-level message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Pod conditions (`PodScheduled` is read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<PodCondition>>,
    /// States of the main containers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_statuses: Option<Vec<SlimContainerStatus>>,
    /// States of the init containers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_container_statuses: Option<Vec<SlimContainerStatus>>,
}

/// A container status without image, IDs and resources.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SlimContainerStatus {
    /// Container name.
    #[serde(default)]
    pub name: String,
    /// Current state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<ContainerState>,
    /// Previous state (after a restart).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_state: Option<ContainerState>,
    /// Restarts so far.
    #[serde(default)]
    pub restart_count: i32,
}

macro_rules! core_resource {
    ($ty:ty, $group:literal, $version:literal, $api_version:literal, $kind:literal, $plural:literal) => {
        impl Resource for $ty {
            type DynamicType = ();
            type Scope = NamespaceResourceScope;

            fn kind((): &()) -> Cow<'_, str> {
                Cow::Borrowed($kind)
            }
            fn group((): &()) -> Cow<'_, str> {
                Cow::Borrowed($group)
            }
            fn version((): &()) -> Cow<'_, str> {
                Cow::Borrowed($version)
            }
            fn api_version((): &()) -> Cow<'_, str> {
                Cow::Borrowed($api_version)
            }
            fn plural((): &()) -> Cow<'_, str> {
                Cow::Borrowed($plural)
            }
            fn meta(&self) -> &ObjectMeta {
                &self.metadata
            }
            fn meta_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
        }
    };
}

core_resource!(RunnerJob, "batch", "v1", "batch/v1", "Job", "jobs");
core_resource!(RunnerPod, "", "v1", "v1", "Pod", "pods");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slim_pod_keeps_status_and_drops_spec() {
        let pod: RunnerPod = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i",
                     "env": [{"name": "A", "value": "x"}]}]},
            "status": {"phase": "Running", "containerStatuses": [{"name": "c", "image": "i",
                "imageID": "x", "ready": true, "restartCount": 0,
                "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}}]}
        }))
        .unwrap();
        let text = serde_json::to_string(&pod).unwrap();
        assert!(!text.contains("env"), "{text}");
        assert!(!text.contains("imageID"), "{text}");
        assert_eq!(pod.spec.unwrap().node_name.as_deref(), Some("n1"));
        assert_eq!(
            RunnerPod::url_path(&(), Some("ns")),
            "/api/v1/namespaces/ns/pods"
        );
        assert_eq!(RunnerJob::url_path(&(), None), "/apis/batch/v1/jobs");
    }
}
