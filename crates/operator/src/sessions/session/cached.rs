//! Slim cached views of the runner Jobs, runner pods and runner-token Secrets.
//!
//! The reflectors deserialize watch events into these types instead of the full objects,
//! and each type trims what it keeps while deserializing (through a wire type and `From`):
//! no pod specs with their long environment lists, no label or annotation maps (one
//! `BTreeMap` costs over half a kilobyte), no conditions or container statuses the
//! controller never reads, no Secret data. This keeps tens of thousands of sessions within a
//! small memory budget.

use std::{
    borrow::Cow,
    collections::HashMap,
    hash::{Hash, Hasher},
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

use agentic_api::sessions::{self as api, AgenticSession, SessionPhase};

use k8s_openapi::{
    NamespaceResourceScope,
    api::{
        batch::v1::JobCondition,
        core::v1::{ContainerState, PodCondition},
    },
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use kube::{
    Resource,
    runtime::reflector::{ObjectRef, Store},
};
use serde::{Deserialize, Serialize};

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
    pub state: Option<ContainerState>,
    /// Previous state (after a restart).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_state: Option<ContainerState>,
    /// Restarts so far.
    #[serde(default)]
    pub restart_count: i32,
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

/// An `AgenticSession` as cached: its identity and phase, plus the whole object (without
/// `managedFields`) as compact JSON text, parsed again when the session is reconciled.
/// Half the size of the parsed object, whose conditions and maps dominate its footprint.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(try_from = "serde_json::Value")]
pub struct CachedSession {
    /// Name, namespace, uid, resourceVersion, generation and deletionTimestamp.
    pub metadata: ObjectMeta,
    /// `status.phase`.
    pub phase: Option<SessionPhase>,
    raw: Box<str>,
}

impl CachedSession {
    /// The full session.
    pub fn session(&self) -> Result<AgenticSession, serde_json::Error> {
        serde_json::from_str(&self.raw)
    }

    /// Caches `session` (for tests and tools that hold typed sessions).
    pub fn from_session(session: &AgenticSession) -> Result<Self, serde_json::Error> {
        Self::try_from(serde_json::to_value(session)?)
    }
}

impl TryFrom<serde_json::Value> for CachedSession {
    type Error = serde_json::Error;

    fn try_from(mut value: serde_json::Value) -> Result<Self, Self::Error> {
        if let Some(meta) = value
            .get_mut("metadata")
            .and_then(serde_json::Value::as_object_mut)
        {
            meta.remove("managedFields");
        }
        let full: ObjectMeta = match value.get("metadata") {
            Some(m) => serde_json::from_value(m.clone())?,
            None => ObjectMeta::default(),
        };
        let phase = value
            .pointer("/status/phase")
            .and_then(serde_json::Value::as_str)
            .and_then(|p| p.parse().ok());
        Ok(Self {
            metadata: ObjectMeta {
                generation: full.generation,
                ..identity(ObjectMeta {
                    owner_references: None,
                    ..full
                })
            },
            phase,
            raw: serde_json::to_string(&value)?.into_boxed_str(),
        })
    }
}

impl Resource for CachedSession {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind((): &()) -> Cow<'_, str> {
        Cow::Borrowed("AgenticSession")
    }
    fn group((): &()) -> Cow<'_, str> {
        Cow::Borrowed(api::GROUP)
    }
    fn version((): &()) -> Cow<'_, str> {
        Cow::Borrowed(api::VERSION)
    }
    fn api_version((): &()) -> Cow<'_, str> {
        Cow::Borrowed(api::API_VERSION)
    }
    fn plural((): &()) -> Cow<'_, str> {
        Cow::Borrowed("agenticsessions")
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// The runner pods of each session by name, kept up to date from the pod watch, so that a
/// reconcile reads its own session's pods from the cache instead of scanning every cached
/// pod (which made each reconcile cost O(sessions) at scale).
///
/// Feed it every pod the watch reports ([`PodIndex::seen`]; after a relist the watch
/// reports every cached pod again) and every deleted pod ([`PodIndex::deleted`]). A name
/// whose pod is no longer cached is dropped when it is next looked up.
#[derive(Debug, Default)]
pub struct PodIndex {
    names: Mutex<HashMap<u64, Vec<Box<str>>>>,
}

fn session_key(ns: &str, session: &str) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    (ns, session).hash(&mut h);
    h.finish()
}

impl PodIndex {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Vec<Box<str>>>> {
        self.names.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a pod the watch reported as added or changed.
    pub fn seen(&self, pod: &RunnerPod) {
        let (Some(ns), Some(session), Some(name)) = (
            pod.metadata.namespace.as_deref(),
            pod.session.as_deref(),
            pod.metadata.name.as_deref(),
        ) else {
            return;
        };
        let mut names = self.lock();
        let entry = names.entry(session_key(ns, session)).or_default();
        if !entry.iter().any(|n| &**n == name) {
            entry.push(name.into());
        }
    }

    /// Forgets a pod the watch reported as deleted.
    pub fn deleted(&self, pod: &RunnerPod) {
        let (Some(ns), Some(session), Some(name)) = (
            pod.metadata.namespace.as_deref(),
            pod.session.as_deref(),
            pod.metadata.name.as_deref(),
        ) else {
            return;
        };
        let key = session_key(ns, session);
        let mut names = self.lock();
        if let Some(entry) = names.get_mut(&key) {
            entry.retain(|n| &**n != name);
            if entry.is_empty() {
                names.remove(&key);
            }
        }
    }

    /// The cached runner pods of session `session` in `ns`.
    pub fn pods(&self, store: &Store<RunnerPod>, ns: &str, session: &str) -> Vec<Arc<RunnerPod>> {
        let key = session_key(ns, session);
        let mut names = self.lock();
        let Some(entry) = names.get_mut(&key) else {
            return Vec::new();
        };
        let mut found = Vec::with_capacity(entry.len());
        entry.retain(|name| match store.get(&ObjectRef::new(name).within(ns)) {
            Some(pod) => {
                if pod.session.as_deref() == Some(session) {
                    found.push(pod);
                }
                true
            }
            None => false,
        });
        if entry.is_empty() {
            names.remove(&key);
        }
        found
    }

    /// Number of sessions with indexed pods.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no pod is indexed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Deserialization shape of [`RunnerJob`].
#[derive(Deserialize)]
struct WireJob {
    #[serde(default)]
    metadata: ObjectMeta,
    #[serde(default)]
    run_id: Option<String>,
    #[serde(default)]
    status: Option<RunnerJobStatus>,
}

/// Deserialization shape of [`RunnerPod`].
#[derive(Deserialize)]
struct WirePod {
    #[serde(default)]
    metadata: ObjectMeta,
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
    metadata: ObjectMeta,
    #[serde(default)]
    refreshed_at: Option<String>,
}

/// Keeps only what identifies an object and ties it to its owner.
fn identity(meta: ObjectMeta) -> ObjectMeta {
    ObjectMeta {
        name: meta.name,
        namespace: meta.namespace,
        uid: meta.uid,
        resource_version: meta.resource_version,
        deletion_timestamp: meta.deletion_timestamp,
        owner_references: meta.owner_references.filter(|o| !o.is_empty()),
        ..ObjectMeta::default()
    }
}

fn annotation(meta: &ObjectMeta, key: &str) -> Option<String> {
    meta.annotations.as_ref()?.get(key).cloned()
}

fn trim_state(state: Option<ContainerState>) -> Option<ContainerState> {
    state.map(|mut s| {
        if let Some(t) = s.terminated.as_mut() {
            t.container_id = None;
            t.started_at = None;
            t.finished_at = None;
        }
        s
    })
}

impl From<WireJob> for RunnerJob {
    fn from(wire: WireJob) -> Self {
        let run_id = wire
            .run_id
            .or_else(|| annotation(&wire.metadata, super::build::ANNOTATION_RUN));
        let status = wire.status.map(|s| RunnerJobStatus {
            conditions: s
                .conditions
                .map(|cs| {
                    cs.into_iter()
                        .filter(|c| {
                            c.status == "True" && matches!(c.type_.as_str(), "Complete" | "Failed")
                        })
                        .map(|c| JobCondition {
                            last_probe_time: None,
                            last_transition_time: None,
                            ..c
                        })
                        .collect::<Vec<_>>()
                })
                .filter(|cs| !cs.is_empty()),
            active: s.active,
        });
        Self {
            metadata: identity(wire.metadata),
            run_id,
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
                                state: trim_state(c.state),
                                last_state: trim_state(c.last_state)
                                    .filter(|s| s.terminated.is_some()),
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
                                state: trim_state(c.state),
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
            metadata: identity(wire.metadata),
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
            .or_else(|| annotation(&wire.metadata, api::ANNOTATION_TOKEN_REFRESHED_AT));
        Self {
            metadata: identity(ObjectMeta {
                owner_references: None,
                ..wire.metadata
            }),
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

    fn runner(ns: &str, name: &str, session: &str) -> RunnerPod {
        serde_json::from_value(
            serde_json::json!({"metadata": {"name": name, "namespace": ns,
            "labels": {"agentic-session": session}}}),
        )
        .unwrap()
    }

    #[test]
    fn pod_index_answers_with_the_cached_pods_of_one_session() {
        use kube::runtime::{reflector, watcher};
        let (store, mut writer) = reflector::store::<RunnerPod>();
        let index = PodIndex::default();
        let pods = [
            runner("ns", "s1-job-a", "s1"),
            runner("ns", "s1-job-b", "s1"),
            runner("ns", "s2-job-a", "s2"),
            runner("other", "s1-job-a", "s1"),
        ];
        for p in &pods {
            writer.apply_watcher_event(&watcher::Event::Apply(p.clone()));
            index.seen(p);
            index.seen(p);
        }
        let names = |ns: &str, s: &str| {
            let mut n: Vec<String> = index
                .pods(&store, ns, s)
                .iter()
                .map(|p| {
                    format!(
                        "{}/{}",
                        p.metadata.namespace.clone().unwrap(),
                        p.metadata.name.clone().unwrap()
                    )
                })
                .collect();
            n.sort();
            n
        };
        assert_eq!(names("ns", "s1"), ["ns/s1-job-a", "ns/s1-job-b"]);
        assert_eq!(names("other", "s1"), ["other/s1-job-a"]);
        assert!(names("ns", "s3").is_empty());
        // A deletion the watch reported, and a pod gone from the cache without one.
        index.deleted(&pods[0]);
        writer.apply_watcher_event(&watcher::Event::Delete(pods[1].clone()));
        assert!(names("ns", "s1").is_empty());
        assert_eq!(names("ns", "s2"), ["ns/s2-job-a"]);
        assert_eq!(index.len(), 2, "emptied sessions are dropped");
        // Pods without a namespace, name or session label are not indexed.
        index.seen(&RunnerPod::default());
        assert_eq!(index.len(), 2);
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
        assert_eq!(terminated.container_id, None);

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
