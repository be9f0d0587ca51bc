//! Typed caches that one unreadable object cannot stop.
//!
//! A kube-runtime watch of a typed kind reads each list page as a whole: one stored object
//! that does not read as the kind (stored under an older or looser CRD schema; the API server
//! does not revalidate stored objects when a CRD changes) fails the page, and the watch
//! retries the same list for ever. [`Lenient<K>`] reads each object on its own: an object that
//! does not read is kept as its identity and the reason, with the path of the field
//! (`spec.targets[0].name: invalid type ...`), so the controller can report it on that object
//! and go on with the others.

use std::{borrow::Cow, fmt::Debug, sync::Arc};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use serde::{Deserialize, Deserializer, de::DeserializeOwned};
use serde_json::value::RawValue;

/// An object of kind `K` as read from the API server: the object, or, when it does not read
/// as `K`, its identity and why.
#[derive(Debug, Clone)]
pub struct Lenient<K> {
    /// Name, namespace, uid, resourceVersion, generation and deletionTimestamp.
    metadata: ObjectMeta,
    /// The object, or the reason it does not read (naming the field).
    pub object: Result<Arc<K>, Arc<str>>,
}

impl<K> Lenient<K> {
    /// `object`, read.
    pub fn new(object: K) -> Self
    where
        K: Resource,
    {
        let m = object.meta();
        Self {
            metadata: ObjectMeta {
                name: m.name.clone(),
                namespace: m.namespace.clone(),
                uid: m.uid.clone(),
                resource_version: m.resource_version.clone(),
                generation: m.generation,
                deletion_timestamp: m.deletion_timestamp.clone(),
                ..ObjectMeta::default()
            },
            object: Ok(Arc::new(object)),
        }
    }

    /// The object, when it reads.
    #[must_use]
    pub fn read(&self) -> Option<&Arc<K>> {
        self.object.as_ref().ok()
    }
}

/// The identity of an object whose whole text does not read.
#[derive(Deserialize, Default)]
struct Identity {
    #[serde(default)]
    metadata: super::packed::Identity,
}

impl<'de, K: Resource + DeserializeOwned> Deserialize<'de> for Lenient<K> {
    /// Reads the object's text once as `K`; only when that fails, again for the path of the
    /// field and for the identity. An object whose identity does not read either is refused
    /// (it cannot be named, so nothing could be reported on it).
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        match serde_json::from_str::<K>(raw.get()) {
            Ok(object) => Ok(Self::new(object)),
            Err(error) => {
                let mut reader = serde_json::Deserializer::from_str(raw.get());
                let reason = match serde_path_to_error::deserialize::<_, K>(&mut reader) {
                    Err(located) => format!("{}: {}", located.path(), located.inner()),
                    Ok(_) => error.to_string(),
                };
                let identity: Identity =
                    serde_json::from_str(raw.get()).map_err(serde::de::Error::custom)?;
                if !identity.metadata.is_named() {
                    return Err(serde::de::Error::custom(reason));
                }
                Ok(Self {
                    metadata: identity.metadata.into(),
                    object: Err(reason.into()),
                })
            }
        }
    }
}

impl<K: Resource> Resource for Lenient<K> {
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
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use serde_json::json;

    #[test]
    fn an_object_that_reads_is_kept_whole() {
        let cm: Lenient<ConfigMap> = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "namespace": "ns", "resourceVersion": "3", "labels": {"a": "b"}},
            "data": {"k": "v"}
        }))
        .unwrap();
        let read = cm.read().unwrap();
        assert_eq!(read.data, Some([("k".into(), "v".into())].into()));
        assert_eq!(
            read.metadata.labels,
            Some([("a".into(), "b".into())].into())
        );
        assert_eq!(cm.meta().name.as_deref(), Some("c"));
        assert_eq!(cm.meta().resource_version.as_deref(), Some("3"));
        assert_eq!(Lenient::<ConfigMap>::plural(&()), "configmaps");
    }

    #[test]
    fn an_object_that_does_not_read_keeps_its_identity_and_the_field_at_fault() {
        let odd: Lenient<ConfigMap> = serde_json::from_value(json!({
            "metadata": {"name": "c", "namespace": "ns", "uid": "u", "generation": 2},
            "data": {"k": 5}
        }))
        .unwrap();
        let reason = odd.object.as_ref().unwrap_err();
        assert!(
            reason.starts_with("data.k: invalid type: integer"),
            "{reason}"
        );
        assert!(odd.read().is_none());
        assert_eq!(odd.meta().name.as_deref(), Some("c"));
        assert_eq!(odd.meta().uid.as_deref(), Some("u"));
        assert_eq!(odd.meta().generation, Some(2));
        // Without a readable name nothing can be reported on it: refused.
        for bad in [
            json!({"metadata": {"name": 5}, "data": {"k": 5}}),
            json!({"metadata": {}, "data": {"k": 5}}),
            json!("not an object"),
        ] {
            assert!(
                serde_json::from_value::<Lenient<ConfigMap>>(bad.clone()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn one_unreadable_item_does_not_fail_a_list() {
        let list: Vec<Lenient<ConfigMap>> = serde_json::from_value(json!([
            {"metadata": {"name": "a"}, "data": {"k": "v"}},
            {"metadata": {"name": "b"}, "data": ["not", "a", "map"]},
            {"metadata": {"name": "c"}}
        ]))
        .unwrap();
        let read: Vec<bool> = list.iter().map(|l| l.read().is_some()).collect();
        assert_eq!(read, [true, false, true]);
    }
}
