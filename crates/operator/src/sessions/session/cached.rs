//! What the session controller caches of the runner Jobs, runner pods and runner-token
//! Secrets, and of the sessions themselves.
//!
//! The watches deserialize events into slim wire types ([`RunnerJob`], [`RunnerPod`],
//! [`TokenSecret`]) that trim while deserializing (through a wire type and `From`): no pod
//! specs with their long environment lists, no label or annotation maps, no conditions or
//! container statuses the controller never reads, no Secret data. Those are then reduced to
//! the compact entries the caches hold ([`JobEntry`], [`PodEntry`], [`TokenEntry`], see
//! [`crate::runtime::compact`]): no `ObjectMeta`, the runner pod's state already judged.
//! Sessions are cached as [`CachedSession`], their JSON packed. This keeps tens of thousands
//! of sessions within a small memory budget.

use std::{borrow::Cow, collections::BTreeMap};

use agentic_api::sessions::{self as api, AgenticSession, SessionPhase};

use jiff::Timestamp;
use k8s_openapi::{
    NamespaceResourceScope,
    api::{batch::v1::JobCondition, core::v1::PodCondition},
    apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time},
};
use kube::Resource;
use serde::{Deserialize, Serialize};

use super::state::{JobView, PodView};
use crate::runtime::{
    compact::Compact,
    packed::{Dictionary, Packed, RawObject, packed_resource},
};

/// A `batch/v1 Job` with only its identity, owner, run and finished conditions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(from = "WireJob")]
pub struct RunnerJob {
    /// Name, namespace, uid, resourceVersion, deletionTimestamp and owner references.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The `ambient-code.io/run-started-at` annotation: the run the Job belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// `spec.activeDeadlineSeconds`: how long the Job may be active (the session's timeout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_deadline_seconds: Option<i64>,
    /// The parts of `status` the controller reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<RunnerJobStatus>,
}

/// The parts of a Job's status the controller reads.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunnerJobStatus {
    /// The finished conditions (`Complete`, `Failed`) and the ones announcing them
    /// (`SuccessCriteriaMet`, `FailureTarget`), only those that are `True`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<JobCondition>>,
    /// When the Job controller started the Job (its deadline counts from here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// Number of active pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<i32>,
}

/// A `v1 Pod` with only its identity, owner, session, node name and runner state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(from = "WirePod")]
pub struct RunnerPod {
    /// Name, namespace, uid, resourceVersion, deletionTimestamp and owner references.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The `agentic-session` label: the session the pod runs for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
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
    pub state: Option<SlimContainerState>,
    /// Previous state (after a restart).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_state: Option<SlimContainerState>,
    /// Restarts so far.
    #[serde(default)]
    pub restart_count: i32,
}

/// A container state (`running`, `terminated` or `waiting`) with only what the controller
/// reads: less than half the size of the full `ContainerState`, which keeps times and IDs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SlimContainerState {
    /// Present while the container runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running: Option<SlimRunning>,
    /// Present once the container ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminated: Option<SlimTerminated>,
    /// Present while the container waits to start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<SlimWaiting>,
}

/// A running container (its start time is not kept).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SlimRunning {}

/// How a container ended.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SlimTerminated {
    /// Exit code.
    #[serde(default)]
    pub exit_code: i32,
    /// `OOMKilled`, `Error`, `Completed`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Termination message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Why a container waits.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SlimWaiting {
    /// `ContainerCreating`, `ImagePullBackOff`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A runner-token Secret's name and refresh time (watched as metadata only).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(from = "WireMeta")]
pub struct TokenSecret {
    /// Name, namespace, uid, resourceVersion and deletionTimestamp.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The `ambient-code.io/token-refreshed-at` annotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refreshed_at: Option<String>,
}

/// An `AgenticSession` as cached: its identity and phase, plus the rest of the object
/// packed (see [`crate::runtime::packed`]), parsed again when the session is reconciled.
/// A fraction of the size of the parsed object, whose conditions and maps dominate its
/// footprint.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(try_from = "RawObject")]
pub struct CachedSession {
    /// Name, namespace, uid, resourceVersion, generation and deletionTimestamp.
    pub metadata: ObjectMeta,
    /// `status.phase`.
    pub phase: Option<SessionPhase>,
    packed: Packed,
}

/// Substrings that recur in every session's compact JSON (keys in `serde_json`'s sorted
/// order, the session's condition vocabulary). Longer entries first.
static DICTIONARY: Dictionary = Dictionary::new(&[
    r#"{"apiVersion":"vteam.ambient-code/v1alpha1","kind":"AgenticSession","metadata":{"#,
    r#""the secrets the runner needs exist""#,
    r#""llmSettings":{"maxTokens":"#,
    r#""the runner Job was created""#,
    r#"","status":"False","type":""#,
    r#"","status":"True","type":""#,
    r#"{"lastTransitionTime":""#,
    r#""AllRequiredSecretsFound""#,
    r#""observedGeneration":"#,
    r#""creationTimestamp":""#,
    r#""runnerStartedAt":""#,
    r#""annotations":{""#,
    r#""initialPrompt":""#,
    "ContainerRunning",
    r#""runnerPodUid":""#,
    r#""displayName":""#,
    r#""temperature":"#,
    r#""conditions":["#,
    "ambient-code.io/",
    r#""Scheduled on "#,
    r#""startTime":""#,
    "RunnerStarted",
    r#""message":""#,
    r#""labels":{""#,
    "PodScheduled",
    "SecretsReady",
    r#""timeout":"#,
    r#""reason":""#,
    r#""status":{"#,
    r#""phase":""#,
    "PodCreated",
]);

impl CachedSession {
    /// The full session.
    pub fn session(&self) -> Result<AgenticSession, serde_json::Error> {
        self.packed.restore(&self.metadata, &DICTIONARY)
    }

    /// Caches `session` (for tests and tools that hold typed sessions).
    pub fn from_session(session: &AgenticSession) -> Result<Self, serde_json::Error> {
        Self::try_from(serde_json::to_value(session)?)
    }

    /// Bytes the packed JSON takes (for footprint tests).
    pub fn packed_len(&self) -> usize {
        self.packed.len()
    }
}

/// `status.phase` of a session, the rest of its status skipped.
#[derive(Deserialize)]
struct PhaseOnly {
    #[serde(default)]
    phase: Option<String>,
}

impl TryFrom<RawObject> for CachedSession {
    type Error = serde_json::Error;

    /// Caches a session read as raw members: its phase read from `status`, the rest split
    /// by [`Packed::split`].
    fn try_from(object: RawObject) -> Result<Self, Self::Error> {
        // A status that is not an object with a string phase (the schema forbids it) reads
        // as no phase, as an unknown phase does: the session is judged from the start.
        let phase = object
            .get("status")
            .and_then(|raw| serde_json::from_str::<Option<PhaseOnly>>(raw.get()).ok())
            .flatten()
            .and_then(|s| s.phase)
            .and_then(|p| p.parse().ok());
        let (metadata, packed) = Packed::split(object, &DICTIONARY)?;
        Ok(Self {
            metadata,
            phase,
            packed,
        })
    }
}

packed_resource!(
    CachedSession,
    "AgenticSession",
    "agenticsessions",
    agentic_api::sessions
);

/// A runner Job as the session controller caches it (see [`crate::runtime::compact`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobEntry {
    /// The Job's name.
    pub name: Box<str>,
    /// Its UID (empty if the server sent none).
    pub uid: Box<str>,
    /// The name of the `AgenticSession` that controls it, if one does.
    pub owner: Option<Box<str>>,
    /// The run it belongs to (its `ambient-code.io/run-started-at` annotation).
    pub run_id: Option<Box<str>>,
    /// Whether it is being deleted.
    pub deleting: bool,
    /// How it ended, or that it is still active.
    pub view: JobView,
    /// When it exceeds `activeDeadlineSeconds` (its start time plus the deadline), if it has
    /// both.
    pub deadline: Option<Timestamp>,
}

impl Compact for JobEntry {
    type Wire = RunnerJob;

    fn compact(job: RunnerJob) -> Option<(String, Self)> {
        let view = super::controller::job_view(&job);
        let deadline = job
            .status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .zip(job.active_deadline_seconds)
            .and_then(|(Time(start), seconds)| {
                start
                    .checked_add(jiff::SignedDuration::from_secs(seconds))
                    .ok()
            });
        let meta = job.metadata;
        let owner = meta
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true) && o.kind == AgenticSession::kind(&()))
            .map(|o| o.name.as_str().into());
        Some((
            meta.namespace?,
            Self {
                name: meta.name?.into(),
                uid: meta.uid.unwrap_or_default().into(),
                owner,
                run_id: job.run_id.map(String::into_boxed_str),
                deleting: meta.deletion_timestamp.is_some(),
                view,
                deadline,
            },
        ))
    }

    fn name(&self) -> &str {
        &self.name
    }
}

/// A runner pod as the session controller caches it: indexed by its session, with what its
/// runner container shows already judged (see [`super::controller::pod_view`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodEntry {
    /// The pod's name.
    pub name: Box<str>,
    /// Its UID (empty if the server sent none).
    pub uid: Box<str>,
    /// The session it runs for (its `agentic-session` label).
    pub session: Option<Box<str>>,
    /// UIDs of its owners (the runner Job).
    pub owners: Box<[Box<str>]>,
    /// Whether it is being deleted.
    pub deleting: bool,
    /// What it shows.
    pub view: PodView,
}

impl Compact for PodEntry {
    type Wire = RunnerPod;

    fn compact(pod: RunnerPod) -> Option<(String, Self)> {
        let view = super::controller::pod_view(Some(&pod));
        let meta = pod.metadata;
        Some((
            meta.namespace?,
            Self {
                name: meta.name?.into(),
                uid: meta.uid.unwrap_or_default().into(),
                session: pod.session.map(String::into_boxed_str),
                owners: meta
                    .owner_references
                    .into_iter()
                    .flatten()
                    .map(|o| o.uid.into_boxed_str())
                    .collect(),
                deleting: meta.deletion_timestamp.is_some(),
                view,
            },
        ))
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn group(&self) -> Option<&str> {
        self.session.as_deref()
    }
}

/// A runner-token Secret as the session controller caches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenEntry {
    /// The Secret's name.
    pub name: Box<str>,
    /// When its token was last refreshed (the `ambient-code.io/token-refreshed-at`
    /// annotation).
    pub refreshed_at: Option<Box<str>>,
}

impl Compact for TokenEntry {
    type Wire = TokenSecret;

    fn compact(secret: TokenSecret) -> Option<(String, Self)> {
        let meta = secret.metadata;
        Some((
            meta.namespace?,
            Self {
                name: meta.name?.into(),
                refreshed_at: secret.refreshed_at.map(String::into_boxed_str),
            },
        ))
    }

    fn name(&self) -> &str {
        &self.name
    }
}

/// The parts of an object's `metadata` the wire types read. Everything
/// else, above all `managedFields` (often the larger part of a pod's or Job's JSON), is
/// skipped while parsing instead of being built into `ObjectMeta`'s trees and dropped.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct WireObjectMeta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    uid: Option<String>,
    #[serde(default)]
    resource_version: Option<String>,
    #[serde(default)]
    deletion_timestamp: Option<Time>,
    #[serde(default)]
    owner_references: Option<Vec<OwnerReference>>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
}

impl WireObjectMeta {
    /// The value of annotation `key`.
    fn annotation(&self, key: &str) -> Option<String> {
        self.annotations.as_ref()?.get(key).cloned()
    }

    /// What identifies the object and ties it to its owner, as an `ObjectMeta`.
    fn into_identity(self) -> ObjectMeta {
        ObjectMeta {
            name: self.name,
            namespace: self.namespace,
            uid: self.uid,
            resource_version: self.resource_version,
            deletion_timestamp: self.deletion_timestamp,
            owner_references: self.owner_references.filter(|o| !o.is_empty()),
            ..ObjectMeta::default()
        }
    }
}

/// Deserialization shape of [`RunnerJob`].
#[derive(Deserialize)]
struct WireJob {
    #[serde(default)]
    metadata: WireObjectMeta,
    #[serde(default)]
    run_id: Option<String>,
    /// Present when a [`RunnerJob`] itself is read back; from the API it is in `spec`.
    #[serde(default)]
    active_deadline_seconds: Option<i64>,
    #[serde(default)]
    spec: Option<WireJobSpec>,
    #[serde(default)]
    status: Option<RunnerJobStatus>,
}

/// The one field of a Job's spec the controller reads.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireJobSpec {
    #[serde(default)]
    active_deadline_seconds: Option<i64>,
}

/// Deserialization shape of [`RunnerPod`].
#[derive(Deserialize)]
struct WirePod {
    #[serde(default)]
    metadata: WireObjectMeta,
    #[serde(default)]
    session: Option<String>,
    #[serde(default)]
    spec: Option<RunnerPodSpec>,
    #[serde(default)]
    status: Option<RunnerPodStatus>,
}

/// Deserialization shape of [`TokenSecret`] (a `PartialObjectMetadata`).
#[derive(Deserialize)]
struct WireMeta {
    #[serde(default)]
    metadata: WireObjectMeta,
    #[serde(default)]
    refreshed_at: Option<String>,
}

impl From<WireJob> for RunnerJob {
    fn from(wire: WireJob) -> Self {
        let run_id = wire
            .run_id
            .or_else(|| wire.metadata.annotation(super::build::ANNOTATION_RUN));
        let status = wire.status.map(|s| RunnerJobStatus {
            conditions: s
                .conditions
                .map(|cs| {
                    cs.into_iter()
                        .filter(|c| {
                            c.status == "True"
                                && matches!(
                                    c.type_.as_str(),
                                    "Complete" | "Failed" | "SuccessCriteriaMet" | "FailureTarget"
                                )
                        })
                        .map(|c| JobCondition {
                            last_probe_time: None,
                            last_transition_time: None,
                            ..c
                        })
                        .collect::<Vec<_>>()
                })
                .filter(|cs| !cs.is_empty()),
            start_time: s.start_time,
            active: s.active,
        });
        Self {
            metadata: wire.metadata.into_identity(),
            run_id,
            active_deadline_seconds: wire
                .active_deadline_seconds
                .or_else(|| wire.spec.and_then(|s| s.active_deadline_seconds)),
            status,
        }
    }
}

impl From<WirePod> for RunnerPod {
    fn from(wire: WirePod) -> Self {
        let session = wire.session.or_else(|| {
            wire.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(api::LABEL_AGENTIC_SESSION))
                .cloned()
        });
        let status = wire.status.map(|s| {
            let failed = s.phase.as_deref() == Some("Failed");
            RunnerPodStatus {
                reason: s.reason.filter(|_| failed),
                message: s.message.filter(|_| failed),
                conditions: s
                    .conditions
                    .map(|cs| {
                        cs.into_iter()
                            .filter(|c| c.type_ == "PodScheduled" && c.status == "False")
                            .map(|c| PodCondition {
                                last_probe_time: None,
                                last_transition_time: None,
                                ..c
                            })
                            .collect::<Vec<_>>()
                    })
                    .filter(|cs| !cs.is_empty()),
                container_statuses: s
                    .container_statuses
                    .map(|cs| {
                        cs.into_iter()
                            .filter(|c| c.name == api::RUNNER_CONTAINER)
                            .map(|c| SlimContainerStatus {
                                last_state: c.last_state.filter(|s| s.terminated.is_some()),
                                ..c
                            })
                            .collect::<Vec<_>>()
                    })
                    .filter(|cs| !cs.is_empty()),
                init_container_statuses: s
                    .init_container_statuses
                    .map(|cs| {
                        cs.into_iter()
                            .filter(|c| {
                                c.state
                                    .as_ref()
                                    .and_then(|s| s.terminated.as_ref())
                                    .is_some_and(|t| t.exit_code != 0)
                            })
                            .map(|c| SlimContainerStatus {
                                last_state: None,
                                ..c
                            })
                            .collect::<Vec<_>>()
                    })
                    .filter(|cs| !cs.is_empty()),
                phase: s.phase,
            }
        });
        Self {
            metadata: wire.metadata.into_identity(),
            session,
            spec: wire.spec,
            status,
        }
    }
}

impl From<WireMeta> for TokenSecret {
    fn from(wire: WireMeta) -> Self {
        let refreshed_at = wire
            .refreshed_at
            .or_else(|| wire.metadata.annotation(api::ANNOTATION_TOKEN_REFRESHED_AT));
        Self {
            metadata: ObjectMeta {
                owner_references: None,
                ..wire.metadata.into_identity()
            },
            refreshed_at,
        }
    }
}

macro_rules! core_resource {
    ($ty:ty, $group:literal, $version:literal, $api_version:literal, $kind:literal, $plural:literal, $metadata_only:literal) => {
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
            fn metadata_api() -> bool {
                $metadata_only
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

core_resource!(RunnerJob, "batch", "v1", "batch/v1", "Job", "jobs", false);
core_resource!(RunnerPod, "", "v1", "v1", "Pod", "pods", false);
core_resource!(TokenSecret, "", "v1", "v1", "Secret", "secrets", true);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runner_objects_are_cached_as_compact_entries() {
        let job: RunnerJob = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "s1-job", "namespace": "ns", "uid": "job-uid",
                "deletionTimestamp": "2026-01-01T00:00:00Z",
                "annotations": {"ambient-code.io/run-started-at": "t1"},
                "ownerReferences": [
                    {"apiVersion": "v1", "kind": "ConfigMap", "name": "not-it", "uid": "c",
                     "controller": true},
                    {"apiVersion": "vteam.ambient-code/v1alpha1", "kind": "AgenticSession",
                     "name": "s1", "uid": "s", "controller": true}]},
            "spec": {"activeDeadlineSeconds": 90, "backoffLimit": 0},
            "status": {"conditions": [{"type": "Complete", "status": "True"}],
                       "startTime": "2026-01-01T00:00:00Z"}}))
        .unwrap();
        let again: RunnerJob = serde_json::from_value(serde_json::to_value(&job).unwrap()).unwrap();
        assert_eq!(again, job, "a trimmed Job reads back as itself");
        let (ns, entry) = JobEntry::compact(job).unwrap();
        assert_eq!(ns, "ns");
        assert_eq!(
            entry,
            JobEntry {
                name: "s1-job".into(),
                uid: "job-uid".into(),
                owner: Some("s1".into()),
                run_id: Some("t1".into()),
                deleting: true,
                view: JobView::Complete,
                deadline: Some("2026-01-01T00:01:30Z".parse().unwrap()),
            }
        );
        // Only a controlling AgenticSession is the owner a Job wakes.
        let job: RunnerJob = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "j", "namespace": "ns", "ownerReferences": [
                {"apiVersion": "vteam.ambient-code/v1alpha1", "kind": "AgenticSession",
                 "name": "s1", "uid": "s"}]}}))
        .unwrap();
        let (_, entry) = JobEntry::compact(job).unwrap();
        assert_eq!(entry.owner, None);
        assert_eq!(entry.view, JobView::Active);
        assert_eq!(entry.deadline, None, "no start time and no deadline");
        assert_eq!(&*entry.uid, "");

        let pod: RunnerPod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "s1-job-x", "namespace": "ns", "uid": "pod-uid",
                "labels": {"agentic-session": "s1"},
                "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "s1-job",
                    "uid": "job-uid", "controller": true}]},
            "spec": {"nodeName": "node-a"},
            "status": {"phase": "Running", "containerStatuses": [{"name": "ambient-code-runner",
                "restartCount": 0, "state": {"running": {}}}]}}))
        .unwrap();
        let (ns, entry) = PodEntry::compact(pod).unwrap();
        assert_eq!(ns, "ns");
        assert_eq!(entry.group(), Some("s1"));
        assert_eq!(&*entry.owners, [Box::<str>::from("job-uid")]);
        assert!(!entry.deleting);
        assert_eq!(
            entry.view,
            PodView::Running {
                node: Some("node-a".into())
            }
        );

        let secret: TokenSecret = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "ambient-runner-token-s1", "namespace": "ns",
                "annotations": {"ambient-code.io/token-refreshed-at": "2026-01-01T00:00:00Z"}}}))
        .unwrap();
        let (_, entry) = TokenEntry::compact(secret).unwrap();
        assert_eq!(entry.name(), "ambient-runner-token-s1");
        assert_eq!(entry.refreshed_at.as_deref(), Some("2026-01-01T00:00:00Z"));

        // An object without a namespace or a name is never cached.
        let nameless: RunnerPod =
            serde_json::from_value(serde_json::json!({"metadata": {"namespace": "ns"}})).unwrap();
        assert!(PodEntry::compact(nameless).is_none());
        let cluster_wide: RunnerJob =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "j"}})).unwrap();
        assert!(JobEntry::compact(cluster_wide).is_none());
    }

    #[test]
    fn cached_session_round_trips() {
        let session: AgenticSession = serde_json::from_value(serde_json::json!({
            "apiVersion": "vteam.ambient-code/v1alpha1", "kind": "AgenticSession",
            "metadata": {"name": "s1", "namespace": "ns", "uid": "u", "generation": 3,
                "annotations": {"ambient-code.io/desired-phase": "Stopped"},
                "managedFields": [{"manager": "kubectl"}]},
            "spec": {"initialPrompt": "hi"},
            "status": {"phase": "Running"}
        }))
        .unwrap();
        let cached: CachedSession =
            serde_json::from_value(serde_json::to_value(&session).unwrap()).unwrap();
        assert_eq!(cached.phase, Some(SessionPhase::Running));
        assert_eq!(cached.metadata.generation, Some(3));
        assert!(cached.metadata.annotations.is_none());
        let back = cached.session().unwrap();
        assert!(back.metadata.managed_fields.is_none());
        assert_eq!(back.spec, session.spec);
        assert_eq!(back.metadata.annotations, session.metadata.annotations);
        assert_eq!(
            CachedSession::url_path(&(), Some("ns")),
            "/apis/vteam.ambient-code/v1alpha1/namespaces/ns/agenticsessions"
        );
    }

    #[test]
    fn the_kubectl_apply_annotation_is_not_cached() {
        let applied = serde_json::json!({
            "apiVersion": "vteam.ambient-code/v1alpha1", "kind": "AgenticSession",
            "metadata": {"name": "s1", "namespace": "ns", "uid": "u",
                "annotations": {"ambient-code.io/desired-phase": "Stopped",
                    "kubectl.kubernetes.io/last-applied-configuration":
                        "{\"spec\":{\"initialPrompt\":\"a long prompt\"}}"}},
            "spec": {"initialPrompt": "a long prompt"}
        });
        let cached: CachedSession = serde_json::from_value(applied.clone()).unwrap();
        let back = cached.session().unwrap();
        assert_eq!(
            back.metadata.annotations,
            Some(BTreeMap::from([(
                "ambient-code.io/desired-phase".to_owned(),
                "Stopped".to_owned()
            )])),
            "every other annotation is kept"
        );
        assert_eq!(back.spec.initial_prompt.as_deref(), Some("a long prompt"));
        let plain: CachedSession = serde_json::from_value(serde_json::json!({
            "apiVersion": "vteam.ambient-code/v1alpha1", "kind": "AgenticSession",
            "metadata": {"name": "s1", "namespace": "ns", "uid": "u",
                "annotations": {"ambient-code.io/desired-phase": "Stopped"}},
            "spec": {"initialPrompt": "a long prompt"}
        }))
        .unwrap();
        assert_eq!(cached.packed_len(), plain.packed_len());

        // The annotation alone: no annotations are left.
        let mut only = applied;
        only["metadata"]["annotations"]
            .as_object_mut()
            .unwrap()
            .remove("ambient-code.io/desired-phase");
        let cached: CachedSession = serde_json::from_value(only).unwrap();
        assert_eq!(cached.session().unwrap().metadata.annotations, None);
    }

    #[test]
    fn sessions_are_read_from_their_text_whatever_its_layout() {
        let value = settled_session();
        let compact: CachedSession =
            serde_json::from_str(&serde_json::to_string(&value).unwrap()).unwrap();
        let pretty: CachedSession =
            serde_json::from_str(&serde_json::to_string_pretty(&value).unwrap()).unwrap();
        let via_value = CachedSession::try_from(value.clone()).unwrap();
        assert_eq!(
            compact, pretty,
            "pretty-printed text is compacted before packing"
        );
        assert_eq!(compact, via_value);
        assert_eq!(compact.phase, Some(SessionPhase::Running));
        assert_eq!(compact.metadata.name.as_deref(), Some("s-00042"));
        assert_eq!(compact.metadata.resource_version.as_deref(), Some("184467"));
        assert_eq!(compact.metadata.generation, Some(1));
        let back = compact.session().unwrap();
        assert!(back.metadata.managed_fields.is_none());
        let mut expected: AgenticSession = serde_json::from_value(value).unwrap();
        expected.metadata.managed_fields = None;
        assert_eq!(back, expected, "everything but managedFields comes back");
    }

    #[test]
    fn a_session_with_a_malformed_identity_or_body_is_refused_and_an_odd_phase_is_none() {
        // What each kind of bad input does: a watch event that cannot be read is an error
        // for the watch (it does not enter the cache), never a half-filled entry.
        for bad in [
            r#"{"metadata": "not an object"}"#,
            r#"{"metadata": {"name": 7}}"#,
            r#"{"metadata": {"generation": "one"}}"#,
            r#"{"metadata": {"deletionTimestamp": "yesterday"}}"#,
            r#"{"metadata": {"name": "s"}, "spec": }"#,
        ] {
            assert!(
                serde_json::from_str::<CachedSession>(bad).is_err(),
                "{bad} was accepted"
            );
        }
        for (status, phase) in [
            (r#"{"phase": "Sleeping"}"#, None),
            (r#""not an object""#, None),
            (r#"{"phase": 5}"#, None),
            ("null", None),
            ("{}", None),
            (r#"{"phase": "Completed"}"#, Some(SessionPhase::Completed)),
        ] {
            let text = format!(r#"{{"metadata": {{"name": "s"}}, "status": {status}}}"#);
            let cached: CachedSession = serde_json::from_str(&text).unwrap();
            assert_eq!(cached.phase, phase, "{status}");
        }
    }

    #[test]
    fn runner_objects_are_read_without_parsing_their_managed_fields() {
        // managedFields of any shape, even one the typed ObjectMeta would refuse, is skipped.
        let pod: RunnerPod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1",
                "labels": {"agentic-session": "s1"},
                "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "j",
                    "uid": "j1", "controller": true}],
                "managedFields": "not a list"},
            "status": {"phase": "Running"}
        }))
        .unwrap();
        assert_eq!(pod.session.as_deref(), Some("s1"));
        assert_eq!(pod.metadata.uid.as_deref(), Some("u1"));
        assert_eq!(
            pod.metadata.owner_references.as_ref().map(Vec::len),
            Some(1)
        );
        let job: RunnerJob = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "j", "namespace": "ns",
                "annotations": {"ambient-code.io/run-started-at": "r1"},
                "managedFields": [{"fieldsV1": {"f:spec": {}}}]}
        }))
        .unwrap();
        assert_eq!(job.run_id.as_deref(), Some("r1"));
        assert!(job.metadata.annotations.is_none(), "only identity is kept");
        // An identity field of the wrong type is still refused.
        assert!(
            serde_json::from_value::<RunnerPod>(serde_json::json!({"metadata": {"uid": 5}}))
                .is_err()
        );
    }

    /// A settled session as the API server returns it.
    fn settled_session() -> serde_json::Value {
        let condition = |type_: &str, status: &str, reason: &str, message: &str| {
            serde_json::json!({"type": type_, "status": status, "reason": reason,
                "message": message, "lastTransitionTime": "2026-11-23T09:17:58Z",
                "observedGeneration": 1})
        };
        serde_json::json!({
            "apiVersion": "vteam.ambient-code/v1alpha1", "kind": "AgenticSession",
            "metadata": {"name": "s-00042", "namespace": "bench-sessions",
                "uid": "0b8f7c4e-3a51-4a8e-9a55-6f1b2f4d8e21", "resourceVersion": "184467",
                "generation": 1, "creationTimestamp": "2026-11-23T09:17:57Z",
                "labels": {"team": "a"},
                "annotations": {"ambient-code.io/run-started-at": "2026-11-23T09:17:57Z"},
                "finalizers": ["vteam.ambient-code/cleanup"],
                "managedFields": [{"manager": "kubectl", "operation": "Update"}]},
            "spec": {"displayName": "bench session 42", "initialPrompt": "benchmark",
                "llmSettings": {"model": "claude-sonnet-4-6", "temperature": 0.2, "maxTokens": 1000},
                "timeout": 36000},
            "status": {"phase": "Running", "observedGeneration": 1,
                "startTime": "2026-11-23T09:17:57Z", "runnerStartedAt": "2026-11-23T09:17:58Z",
                "runnerPodUid": "9d1e4a7c-0f2b-4c3d-8e5f-6a7b8c9d0e1f",
                "conditions": [
                    condition("Ready", "True", "RunnerStarted", "the runner is running"),
                    condition("SecretsReady", "True", "AllRequiredSecretsFound",
                        "the secrets the runner needs exist"),
                    condition("PodCreated", "True", "PodCreated", "the runner Job was created"),
                    condition("PodScheduled", "True", "Scheduled", "Scheduled on node-1"),
                    condition("RunnerStarted", "True", "ContainerRunning", "the runner started")]}
        })
    }

    #[test]
    fn cached_session_gives_back_the_full_session_from_a_fraction_of_its_text() {
        let full: AgenticSession = serde_json::from_value(settled_session()).unwrap();
        let cached: CachedSession = serde_json::from_value(settled_session()).unwrap();
        // What the watch and the work queue read without parsing.
        assert_eq!(cached.phase, Some(SessionPhase::Running));
        assert_eq!(cached.metadata.name.as_deref(), Some("s-00042"));
        assert_eq!(cached.metadata.resource_version.as_deref(), Some("184467"));
        assert_eq!(cached.metadata.generation, Some(1));
        assert!(cached.metadata.labels.is_none() && cached.metadata.finalizers.is_none());
        // What a reconcile decides from: the whole session but its managedFields.
        let expected = AgenticSession {
            metadata: ObjectMeta {
                managed_fields: None,
                ..full.metadata.clone()
            },
            ..full.clone()
        };
        assert_eq!(cached.session().unwrap(), expected);
        let deleting = serde_json::json!({"metadata": {"name": "s", "namespace": "ns",
            "deletionTimestamp": "2026-11-23T10:00:00Z"}, "spec": {}});
        let cached_deleting: CachedSession = serde_json::from_value(deleting.clone()).unwrap();
        assert_eq!(
            cached_deleting.session().unwrap(),
            serde_json::from_value::<AgenticSession>(deleting).unwrap()
        );
        // Packed: under half the compact JSON of the object.
        let compact = serde_json::to_string(&expected).unwrap().len();
        assert!(
            cached.packed_len() * 2 < compact,
            "packed {} bytes of {compact}",
            cached.packed_len()
        );
    }

    #[test]
    fn packing_keeps_any_text_inside_strings() {
        // Every dictionary entry, quotes, escapes and control characters inside values.
        let mut prompt: String = DICTIONARY.entries().concat();
        prompt.push_str("\n\t\u{1}\u{1f} \\ \" \u{e9}\u{1f600}");
        let mut session = serde_json::from_value::<AgenticSession>(settled_session()).unwrap();
        session.spec.initial_prompt = Some(prompt.clone());
        session.metadata.managed_fields = None;
        let cached = CachedSession::from_session(&session).unwrap();
        let back = cached.session().unwrap();
        assert_eq!(back.spec.initial_prompt.as_deref(), Some(prompt.as_str()));
        assert_eq!(back, session);
        // Each entry packs to one byte and unpacks to itself.
        for entry in DICTIONARY.entries() {
            let packed = DICTIONARY.pack(entry).unwrap();
            assert_eq!(packed.len(), 1, "{entry}");
            assert_eq!(DICTIONARY.unpack(&packed), entry.as_bytes());
        }
    }

    #[test]
    fn trims_while_deserializing() {
        let pod: RunnerPod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "s1-job-abcde", "namespace": "ns", "uid": "u",
                "generateName": "s1-job-",
                "labels": {"agentic-session": "s1", "app": "ambient-code-runner", "job-name": "s1-job"},
                "annotations": {"a": "b"},
                "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "s1-job", "uid": "j"}]},
            "status": {"phase": "Running",
                "conditions": [{"type": "Ready", "status": "True"},
                               {"type": "PodScheduled", "status": "True"}],
                "initContainerStatuses": [{"name": "init-hydrate", "restartCount": 0,
                    "state": {"terminated": {"exitCode": 0, "containerID": "c"}}}],
                "containerStatuses": [
                    {"name": "ambient-code-runner", "restartCount": 0,
                     "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled", "containerID": "c"}}},
                    {"name": "state-sync", "restartCount": 0, "state": {"running": {}}}]}
        }))
        .unwrap();
        assert_eq!(pod.session.as_deref(), Some("s1"));
        assert!(pod.metadata.labels.is_none() && pod.metadata.annotations.is_none());
        assert!(pod.metadata.generate_name.is_none());
        assert_eq!(pod.metadata.owner_references.as_ref().unwrap()[0].uid, "j");
        let status = pod.status.unwrap();
        assert!(
            status.conditions.is_none(),
            "only an unschedulable condition is kept"
        );
        assert!(
            status.init_container_statuses.is_none(),
            "only failed init containers are kept"
        );
        let runner = &status.container_statuses.unwrap()[0..];
        assert_eq!(runner.len(), 1);
        let terminated = runner[0]
            .state
            .as_ref()
            .unwrap()
            .terminated
            .as_ref()
            .unwrap();
        assert_eq!(terminated.exit_code, 137);
        assert_eq!(terminated.reason.as_deref(), Some("OOMKilled"));
        assert!(
            !serde_json::to_string(&runner[0])
                .unwrap()
                .contains("containerID")
        );

        let job: RunnerJob = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "s1-job", "namespace": "ns", "uid": "j",
                "labels": {"app": "ambient-code-runner"},
                "annotations": {"ambient-code.io/run-started-at": "2026-01-01T00:00:00Z"}},
            "status": {"active": 1, "conditions": [
                {"type": "Suspended", "status": "False"},
                {"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}]}
        }))
        .unwrap();
        assert_eq!(job.run_id.as_deref(), Some("2026-01-01T00:00:00Z"));
        assert!(job.metadata.annotations.is_none());
        let conditions = job.status.unwrap().conditions.unwrap();
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].reason.as_deref(), Some("DeadlineExceeded"));

        let secret: TokenSecret = serde_json::from_value(serde_json::json!({
            "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
            "metadata": {"name": "ambient-runner-token-s1", "namespace": "ns",
                "labels": {"app": "ambient-runner-token"},
                "annotations": {"ambient-code.io/token-refreshed-at": "2026-01-01T00:00:00Z"}}
        }))
        .unwrap();
        assert_eq!(secret.refreshed_at.as_deref(), Some("2026-01-01T00:00:00Z"));
        assert!(secret.metadata.annotations.is_none());
    }

    #[test]
    fn slim_pods_lead_to_the_same_decisions_as_full_ones() {
        use super::super::{controller::pod_view, state::PodView};
        let pod = |status: serde_json::Value| -> RunnerPod {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "s1-job-abcde", "namespace": "ns", "uid": "p"},
                "spec": {"nodeName": "node-1", "containers": [{"name": "ambient-code-runner"}]},
                "status": status}))
            .unwrap()
        };
        let runner = |state: serde_json::Value, last: serde_json::Value, restarts: i32| {
            serde_json::json!({"phase": "Running", "containerStatuses": [
                {"name": "state-sync", "restartCount": 0, "state": {"running": {}}},
                {"name": "ambient-code-runner", "image": "runner:1", "imageID": "sha256:x",
                 "containerID": "containerd://c", "ready": true, "restartCount": restarts,
                 "state": state, "lastState": last}]})
        };
        let node = Some("node-1".to_owned());
        let cases = [
            (
                runner(
                    serde_json::json!({"running": {"startedAt": "2026-01-01T00:00:00Z"}}),
                    serde_json::json!({}),
                    0,
                ),
                PodView::Running { node: node.clone() },
            ),
            (
                runner(
                    serde_json::json!({"waiting": {"reason": "ImagePullBackOff", "message": "no"}}),
                    serde_json::json!({"terminated": {"exitCode": 2, "reason": "Error",
                        "message": "boom", "startedAt": "2026-01-01T00:00:00Z",
                        "finishedAt": "2026-01-01T00:01:00Z", "containerID": "c"}}),
                    1,
                ),
                PodView::Terminated {
                    exit_code: 2,
                    reason: "Error".into(),
                    message: "boom".into(),
                },
            ),
            (
                runner(
                    serde_json::json!({"waiting": {"reason": "ContainerCreating"}}),
                    serde_json::json!({}),
                    0,
                ),
                PodView::Waiting {
                    node: node.clone(),
                    unschedulable: None,
                    reason: Some("ContainerCreating".into()),
                    message: None,
                },
            ),
            (
                serde_json::json!({"phase": "Failed", "reason": "Evicted", "message": "low memory",
                    "initContainerStatuses": [{"name": "init-hydrate", "restartCount": 0,
                        "state": {"terminated": {"exitCode": 3, "containerID": "c"}}}]}),
                PodView::Failed {
                    reason: "Evicted".into(),
                    message: "init container init-hydrate exited with code 3".into(),
                },
            ),
            (
                serde_json::json!({"phase": "Pending", "conditions": [{"type": "PodScheduled",
                    "status": "False", "reason": "Unschedulable", "message": "0/3 nodes",
                    "lastTransitionTime": "2026-01-01T00:00:00Z"}]}),
                PodView::Waiting {
                    node: node.clone(),
                    unschedulable: Some("0/3 nodes".into()),
                    reason: None,
                    message: None,
                },
            ),
        ];
        for (status, expected) in cases {
            let slim = pod(status.clone());
            assert_eq!(pod_view(Some(&slim)), expected, "{status}");
            // The slim pod keeps nothing beyond what the decision reads.
            let text = serde_json::to_string(&slim).unwrap();
            for dropped in [
                "startedAt",
                "finishedAt",
                "containerID",
                "imageID",
                "lastTransitionTime",
            ] {
                assert!(!text.contains(dropped), "{dropped} in {text}");
            }
        }
    }

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
        assert_eq!(pod.spec.as_ref().unwrap().node_name.as_deref(), Some("n1"));
        assert_eq!(
            RunnerPod::url_path(&(), Some("ns")),
            "/api/v1/namespaces/ns/pods"
        );
        assert_eq!(RunnerJob::url_path(&(), None), "/apis/batch/v1/jobs");
    }
}
