//! Dynamic objects read without their `managedFields`.
//!
//! A `DynamicObject` parses `metadata.managedFields` into typed entries, each with its
//! `fieldsV1` tree: for an object written by server-side apply that is often the larger part
//! of its JSON, and the controllers drop it right after (see [`super::watches::trim`]).
//! [`SlimDynamic`] reads the same object in one pass and skips `managedFields` without
//! building anything. It is used for watches and write answers of kinds the operator
//! handles as dynamic objects in large numbers (the evaluations' generated objects).

use std::{borrow::Cow, collections::BTreeMap, fmt};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kube::{
    Resource,
    api::{ApiResource, DynamicObject, TypeMeta},
};
use serde::{
    Deserialize, Deserializer, Serialize,
    de::{MapAccess, Visitor},
};
use serde_json::Value;

/// A `DynamicObject` read without `metadata.managedFields` (see the module docs); serializes
/// as the object it holds.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(transparent)]
pub struct SlimDynamic(pub DynamicObject);

/// Every `metadata` field but `managedFields` (and the deprecated `selfLink`), which serde
/// skips as an unknown field without building it.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct SlimMeta {
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
    #[serde(default)]
    creation_timestamp: Option<Time>,
    #[serde(default)]
    deletion_grace_period_seconds: Option<i64>,
    #[serde(default)]
    deletion_timestamp: Option<Time>,
    #[serde(default)]
    finalizers: Option<Vec<String>>,
    #[serde(default)]
    generate_name: Option<String>,
    #[serde(default)]
    generation: Option<i64>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    owner_references: Option<Vec<OwnerReference>>,
    #[serde(default)]
    resource_version: Option<String>,
    #[serde(default)]
    uid: Option<String>,
}

impl From<SlimMeta> for ObjectMeta {
    fn from(m: SlimMeta) -> Self {
        Self {
            annotations: m.annotations,
            creation_timestamp: m.creation_timestamp,
            deletion_grace_period_seconds: m.deletion_grace_period_seconds,
            deletion_timestamp: m.deletion_timestamp,
            finalizers: m.finalizers,
            generate_name: m.generate_name,
            generation: m.generation,
            labels: m.labels,
            name: m.name,
            namespace: m.namespace,
            owner_references: m.owner_references,
            resource_version: m.resource_version,
            uid: m.uid,
            ..Self::default()
        }
    }
}

impl<'de> Deserialize<'de> for SlimDynamic {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        /// Reads the object's members in one pass.
        struct Members;

        impl<'de> Visitor<'de> for Members {
            type Value = SlimDynamic;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a Kubernetes object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SlimDynamic, A::Error> {
                let mut api_version = None;
                let mut kind = None;
                let mut metadata = ObjectMeta::default();
                let mut data = serde_json::Map::new();
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "apiVersion" => api_version = Some(map.next_value::<String>()?),
                        "kind" => kind = Some(map.next_value::<String>()?),
                        "metadata" => {
                            metadata = map
                                .next_value::<Option<SlimMeta>>()?
                                .unwrap_or_default()
                                .into();
                        }
                        _ => {
                            let value = map.next_value::<Value>()?;
                            data.insert(key, value);
                        }
                    }
                }
                let types = match (api_version, kind) {
                    (Some(api_version), Some(kind)) => Some(TypeMeta { api_version, kind }),
                    _ => None,
                };
                Ok(SlimDynamic(DynamicObject {
                    types,
                    metadata,
                    data: Value::Object(data),
                }))
            }
        }

        deserializer.deserialize_map(Members)
    }
}

impl Resource for SlimDynamic {
    type DynamicType = ApiResource;
    type Scope = kube::core::DynamicResourceScope;

    fn kind(dt: &ApiResource) -> Cow<'_, str> {
        DynamicObject::kind(dt)
    }
    fn group(dt: &ApiResource) -> Cow<'_, str> {
        DynamicObject::group(dt)
    }
    fn version(dt: &ApiResource) -> Cow<'_, str> {
        DynamicObject::version(dt)
    }
    fn api_version(dt: &ApiResource) -> Cow<'_, str> {
        DynamicObject::api_version(dt)
    }
    fn plural(dt: &ApiResource) -> Cow<'_, str> {
        DynamicObject::plural(dt)
    }
    fn meta(&self) -> &ObjectMeta {
        &self.0.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.0.metadata
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn applied() -> Value {
        json!({
            "apiVersion": "testworkflows.testkube.io/v1", "kind": "TestWorkflow",
            "metadata": {"name": "w", "namespace": "ns", "uid": "u", "resourceVersion": "9",
                "generation": 2, "creationTimestamp": "2026-11-24T10:00:00Z",
                "labels": {"a": "b"}, "annotations": {"c": "d"}, "finalizers": ["f"],
                "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "o",
                    "uid": "o1"}],
                "managedFields": [{"manager": "agentic-operator", "operation": "Apply",
                    "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:steps": {}}}}]},
            "spec": {"steps": [{"name": "run"}]},
            "status": {"latestExecution": {"id": "e1"}}
        })
    }

    #[test]
    fn reads_as_a_dynamic_object_without_managed_fields() {
        let slim: SlimDynamic = serde_json::from_value(applied()).unwrap();
        let mut full: DynamicObject = serde_json::from_value(applied()).unwrap();
        assert!(full.metadata.managed_fields.is_some());
        full.metadata.managed_fields = None;
        assert_eq!(
            slim.0, full,
            "everything else is read as a DynamicObject reads it"
        );
        // From text, as the watch and the write answers read it.
        let text = serde_json::to_string(&applied()).unwrap();
        let from_text: SlimDynamic = serde_json::from_str(&text).unwrap();
        assert_eq!(from_text, slim);
        assert_eq!(
            serde_json::to_value(&slim).unwrap()["spec"],
            applied()["spec"]
        );
    }

    #[test]
    fn managed_fields_of_any_shape_are_skipped_and_other_bad_input_refused() {
        let mut odd = applied();
        odd["metadata"]["managedFields"] = json!("not a list");
        let slim: SlimDynamic = serde_json::from_value(odd).unwrap();
        assert_eq!(slim.0.metadata.name.as_deref(), Some("w"));
        for bad in [
            json!({"metadata": {"name": 7}}),
            json!({"metadata": "not an object"}),
            json!({"kind": 5}),
            json!([1, 2]),
        ] {
            assert!(
                serde_json::from_value::<SlimDynamic>(bad.clone()).is_err(),
                "{bad} was accepted"
            );
        }
        // No metadata, or a null one: an object without identity (the cache skips it).
        let bare: SlimDynamic = serde_json::from_value(json!({"metadata": null})).unwrap();
        assert_eq!(bare.0.metadata, ObjectMeta::default());
        assert!(bare.0.types.is_none());
    }
}
