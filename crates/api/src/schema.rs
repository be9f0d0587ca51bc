//! Hand-written schema fragments for fields whose shape `schemars` cannot express the way
//! the Kubernetes API server needs it (free-form objects, maps of free-form objects).

use schemars::{Schema, SchemaGenerator, json_schema};

/// An object whose content is not described: kept as-is by the API server
/// (`type: object` plus `x-kubernetes-preserve-unknown-fields: true`).
pub(crate) fn free_form_object(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// A map from names to free-form objects (`additionalProperties` of a free-form object).
pub(crate) fn map_of_free_form_objects(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "additionalProperties": {
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": true,
        },
    })
}

/// A `metav1.Condition` list as Kubernetes' own types declare it: a list keyed by `type`,
/// `status` limited to `True`/`False`/`Unknown`, and the length and pattern limits of
/// `reason` and `type`.
pub(crate) fn conditions(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "description": "Standard conditions (metav1.Condition), one per type.",
        "items": {
            "type": "object",
            "required": ["lastTransitionTime", "message", "reason", "status", "type"],
            "properties": {
                "lastTransitionTime": {
                    "type": "string",
                    "format": "date-time",
                    "description": "When the condition last changed status.",
                },
                "message": {
                    "type": "string",
                    "maxLength": 32768,
                    "description": "Human-readable details; may be empty.",
                },
                "observedGeneration": {
                    "type": "integer",
                    "format": "int64",
                    "minimum": 0,
                    "description": "metadata.generation the condition was computed from.",
                },
                "reason": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 1024,
                    "pattern": "^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
                    "description": "CamelCase machine-readable reason of the last transition.",
                },
                "status": {
                    "type": "string",
                    "enum": ["True", "False", "Unknown"],
                    "description": "True, False or Unknown.",
                },
                "type": {
                    "type": "string",
                    "maxLength": 316,
                    "pattern": "^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$",
                    "description": "Condition type in CamelCase or foo.example.com/CamelCase.",
                },
            },
        },
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["type"],
    })
}

/// A `core/v1` `ObjectReference` treated as one value by server-side apply
/// (`x-kubernetes-map-type: atomic`).
pub(crate) fn atomic_object_reference(generator: &mut SchemaGenerator) -> Schema {
    let mut schema = generator.subschema_for::<k8s_openapi::api::core::v1::ObjectReference>();
    schema.insert("x-kubernetes-map-type".into(), "atomic".into());
    schema
}
