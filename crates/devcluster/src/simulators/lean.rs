//! Reading Pods, Jobs and Deployments without their `metadata.managedFields`.
//!
//! The simulators never look at `managedFields`, yet it is often the larger part of a pod's
//! or Job's JSON, and k8s-openapi's `ObjectMeta` builds each entry's `fieldsV1` into a tree of
//! JSON values. [`Lean<K>`] is read with a metadata shape that has no such field, so the
//! parser skips it without building anything. It is used as the type of the simulators'
//! watches and of the objects their writes get back; [`watcher`] hands the objects on as
//! plain `K`.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Debug;

use futures::{Stream, TryStreamExt};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStatus};
use k8s_openapi::api::batch::v1::{Job, JobSpec, JobStatus};
use k8s_openapi::api::core::v1::{Pod, PodSpec, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, watcher as watch};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A `K` read without `metadata.managedFields` (which is left empty).
#[derive(Clone, Debug, PartialEq)]
pub struct Lean<K>(pub K);

impl<K: Resource> Resource for Lean<K> {
    type DynamicType = K::DynamicType;
    type Scope = K::Scope;

    fn kind(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::kind(dt)
    }

    fn group(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::group(dt)
    }

    fn version(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::version(dt)
    }

    fn api_version(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::api_version(dt)
    }

    fn plural(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::plural(dt)
    }

    fn meta(&self) -> &ObjectMeta {
        self.0.meta()
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        self.0.meta_mut()
    }
}

impl<K: Serialize> Serialize for Lean<K> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de, K: Parts> Deserialize<'de> for Lean<K> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let wire = Wire::<K::Spec, K::Status>::deserialize(d)?;
        Ok(Lean(K::assemble(
            wire.metadata.into(),
            wire.spec,
            wire.status,
        )))
    }
}

/// A kind made of `metadata`, `spec` and `status`.
pub trait Parts: Sized {
    /// The kind's `spec`.
    type Spec: DeserializeOwned;
    /// The kind's `status`.
    type Status: DeserializeOwned;
    /// The object from its parts.
    fn assemble(
        metadata: ObjectMeta,
        spec: Option<Self::Spec>,
        status: Option<Self::Status>,
    ) -> Self;
}

/// Implements [`Parts`] for kinds with `metadata`, `spec` and `status` members.
macro_rules! parts {
    ($($kind:ty => $spec:ty, $status:ty;)*) => {$(
        impl Parts for $kind {
            type Spec = $spec;
            type Status = $status;
            fn assemble(metadata: ObjectMeta, spec: Option<$spec>, status: Option<$status>) -> Self {
                Self { metadata, spec, status }
            }
        }
    )*};
}

parts! {
    Pod => PodSpec, PodStatus;
    Job => JobSpec, JobStatus;
    Deployment => DeploymentSpec, DeploymentStatus;
}

/// The wire shape of a [`Parts`] kind (`apiVersion` and `kind` are skipped).
#[derive(Deserialize)]
#[serde(bound(deserialize = "S: DeserializeOwned, T: DeserializeOwned"))]
struct Wire<S, T> {
    #[serde(default)]
    metadata: LeanMeta,
    #[serde(default)]
    spec: Option<S>,
    #[serde(default)]
    status: Option<T>,
}

/// Every field of `ObjectMeta` but `managedFields`, which the parser skips unread.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct LeanMeta {
    annotations: Option<BTreeMap<String, String>>,
    creation_timestamp: Option<Time>,
    deletion_grace_period_seconds: Option<i64>,
    deletion_timestamp: Option<Time>,
    finalizers: Option<Vec<String>>,
    generate_name: Option<String>,
    generation: Option<i64>,
    labels: Option<BTreeMap<String, String>>,
    name: Option<String>,
    namespace: Option<String>,
    owner_references: Option<Vec<OwnerReference>>,
    resource_version: Option<String>,
    self_link: Option<String>,
    uid: Option<String>,
}

impl From<LeanMeta> for ObjectMeta {
    fn from(m: LeanMeta) -> Self {
        ObjectMeta {
            annotations: m.annotations,
            creation_timestamp: m.creation_timestamp,
            deletion_grace_period_seconds: m.deletion_grace_period_seconds,
            deletion_timestamp: m.deletion_timestamp,
            finalizers: m.finalizers,
            generate_name: m.generate_name,
            generation: m.generation,
            labels: m.labels,
            managed_fields: None,
            name: m.name,
            namespace: m.namespace,
            owner_references: m.owner_references,
            resource_version: m.resource_version,
            self_link: m.self_link,
            uid: m.uid,
        }
    }
}

/// The event with its object unwrapped.
fn unwrap<K>(event: Event<Lean<K>>) -> Event<K> {
    match event {
        Event::Apply(o) => Event::Apply(o.0),
        Event::Delete(o) => Event::Delete(o.0),
        Event::Init => Event::Init,
        Event::InitApply(o) => Event::InitApply(o.0),
        Event::InitDone => Event::InitDone,
    }
}

/// A watch of all `K` (with the default back-off) whose objects are read lean.
pub fn watcher<K>(
    client: kube::Client,
    config: watcher::Config,
) -> impl Stream<Item = Result<Event<K>, watcher::Error>> + Send
where
    K: Parts + Resource + Clone + Debug + Send + Sync + 'static,
    K::DynamicType: Default,
{
    let api: Api<Lean<K>> = Api::all(client);
    watch::watcher(api, config).default_backoff().map_ok(unwrap)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// Metadata with every field `ObjectMeta` has set.
    fn full_meta() -> Value {
        json!({
            "annotations": {"a": "1"},
            "creationTimestamp": "2026-01-02T03:04:05Z",
            "deletionGracePeriodSeconds": 30,
            "deletionTimestamp": "2026-01-02T03:05:05Z",
            "finalizers": ["batch.kubernetes.io/job-tracking"],
            "generateName": "run-",
            "generation": 3,
            "labels": {"app": "x"},
            "managedFields": [{"manager": "kubectl", "operation": "Update",
                               "fieldsV1": {"f:spec": {"f:containers": {}}}}],
            "name": "run-1",
            "namespace": "ns",
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "run",
                                 "uid": "u-1", "controller": true}],
            "resourceVersion": "42",
            "selfLink": "/api/v1/namespaces/ns/pods/run-1",
            "uid": "u-2",
        })
    }

    #[test]
    fn every_field_but_managed_fields_is_read() {
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": full_meta(),
            "spec": {"containers": [{"name": "c", "image": "i"}], "nodeName": "n"},
            "status": {"phase": "Running"},
        });
        let lean: Lean<Pod> = serde_json::from_value(pod.clone()).unwrap();
        let mut typed: Pod = serde_json::from_value(pod).unwrap();
        assert!(typed.metadata.managed_fields.is_some());
        typed.metadata.managed_fields = None;
        assert_eq!(lean.0, typed, "the lean read differs only in managedFields");

        let job = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": full_meta(),
                         "spec": {"template": {"spec": {"containers": []}}},
                         "status": {"active": 1}});
        let lean: Lean<Job> = serde_json::from_value(job.clone()).unwrap();
        let mut typed: Job = serde_json::from_value(job).unwrap();
        typed.metadata.managed_fields = None;
        assert_eq!(lean.0, typed);

        let dep = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": full_meta(),
                         "spec": {"selector": {}, "template": {}}, "status": {"replicas": 1}});
        let lean: Lean<Deployment> = serde_json::from_value(dep.clone()).unwrap();
        let mut typed: Deployment = serde_json::from_value(dep).unwrap();
        typed.metadata.managed_fields = None;
        assert_eq!(lean.0, typed);
    }

    #[test]
    fn managed_fields_of_any_shape_are_skipped_and_bad_fields_still_fail() {
        // The typed read refuses this managedFields; the lean read never looks at it.
        let pod = json!({"metadata": {"name": "p", "managedFields": "not a list"}});
        assert!(serde_json::from_value::<Pod>(pod.clone()).is_err());
        let lean: Lean<Pod> = serde_json::from_str(&pod.to_string()).unwrap();
        assert_eq!(lean.0.metadata.name.as_deref(), Some("p"));
        // Every other field is still checked: a malformed one is an error, not a default.
        let bad = json!({"metadata": {"name": "p", "labels": ["not", "a", "map"]}});
        assert!(serde_json::from_value::<Lean<Pod>>(bad).is_err());
        let bad = json!({"metadata": {"name": "p"}, "spec": {"containers": "none"}});
        assert!(serde_json::from_value::<Lean<Pod>>(bad).is_err());
    }

    #[test]
    fn writes_send_the_object_itself() {
        let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "p"}})).unwrap();
        assert_eq!(
            serde_json::to_value(Lean(pod.clone())).unwrap(),
            serde_json::to_value(pod).unwrap()
        );
        assert_eq!(<Lean<Pod> as Resource>::plural(&()), "pods");
        assert_eq!(<Lean<Job> as Resource>::api_version(&()), "batch/v1");
    }
}
