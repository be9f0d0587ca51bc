//! `structural_problems` on acceptable and refused schemas. Each bad case names the problem
//! message it must produce (the path of the offending node plus the reason).

// Test helpers build tables of literal JSON and panic on mismatch, like the tests themselves.
#![allow(clippy::panic, clippy::needless_pass_by_value, clippy::too_many_lines)]

use crd_validation::structural_problems;
use serde_json::{Value, json};

fn spec(inner: Value) -> Value {
    json!({"type": "object", "properties": {"spec": inner}})
}

#[test]
fn good_schemas_have_no_problems() {
    let good = [
        // Plain nested object with arrays, maps, defaults and rules.
        spec(json!({
            "type": "object",
            "required": ["targets"],
            "x-kubernetes-validations": [{"rule": "self.targets.size() > 0"}],
            "properties": {
                "targets": {
                    "type": "array",
                    "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["name"],
                    "items": {"type": "object", "required": ["name"], "properties": {
                        "name": {"type": "string"},
                        "port": {"type": "integer", "default": 80}
                    }}
                },
                "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
                "env": {"type": "object", "additionalProperties": {"type": "string"}},
                "mode": {"type": "string", "enum": ["a", "b"], "default": "a"}
            }
        })),
        // Preserve-unknown and int-or-string nodes need no type.
        spec(json!({
            "type": "object",
            "properties": {
                "free": {"x-kubernetes-preserve-unknown-fields": true},
                "port": {"x-kubernetes-int-or-string": true,
                         "anyOf": [{"type": "integer"}, {"type": "string"}]},
                "wrapped": {"x-kubernetes-int-or-string": true,
                            "allOf": [{"anyOf": [{"type": "integer"}, {"type": "string"}]},
                                      {"pattern": "^[0-9]+%?$"}]}
            }
        })),
        // Value validations in junctors over declared fields.
        spec(json!({
            "type": "object",
            "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
            "oneOf": [{"required": ["a"]}, {"required": ["b"]}],
            "not": {"properties": {"a": {"pattern": "^x"}}}
        })),
        // Root metadata restricting only the name.
        json!({
            "type": "object",
            "properties": {
                "metadata": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 63}}},
                "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
            }
        }),
        // Embedded resource.
        spec(json!({"type": "object", "properties": {"template": {
            "type": "object",
            "x-kubernetes-embedded-resource": true,
            "x-kubernetes-preserve-unknown-fields": true
        }}})),
    ];
    for (i, schema) in good.iter().enumerate() {
        assert_eq!(
            structural_problems(schema),
            Vec::<String>::new(),
            "good schema #{i}"
        );
    }
}

/// (schema, one expected problem). Every case must report exactly that problem among its
/// problems.
fn bad_cases() -> Vec<(&'static str, Value, &'static str)> {
    vec![
        (
            "missing type on a field",
            spec(json!({"type": "object", "properties": {"x": {"description": "no type"}}})),
            "openAPIV3Schema.properties[spec].properties[x].type: Required value: must not be empty for specified object fields",
        ),
        (
            "missing type on array items",
            spec(json!({"type": "array", "items": {"minLength": 1}})),
            "openAPIV3Schema.properties[spec].items.type: Required value: must not be empty for specified array items",
        ),
        (
            "missing type at the root",
            json!({"properties": {"spec": {"type": "object"}}}),
            "openAPIV3Schema.type: Required value: must not be empty at the root",
        ),
        (
            "root of another type",
            json!({"type": "string"}),
            "openAPIV3Schema.type: Invalid value: \"string\": must be object at the root",
        ),
        (
            "unknown type",
            spec(json!({"type": "null"})),
            "openAPIV3Schema.properties[spec].type: Unsupported value: \"null\": supported values: \"array\", \"boolean\", \"integer\", \"number\", \"object\", \"string\"",
        ),
        (
            "properties and additionalProperties",
            spec(
                json!({"type": "object", "properties": {"a": {"type": "string"}},
                        "additionalProperties": {"type": "string"}}),
            ),
            "openAPIV3Schema.properties[spec].additionalProperties: Forbidden: additionalProperties and properties are mutually exclusive",
        ),
        (
            "additionalProperties false",
            spec(json!({"type": "object", "additionalProperties": false})),
            "openAPIV3Schema.properties[spec].additionalProperties: Forbidden: additionalProperties cannot be set to false",
        ),
        (
            "type inside a junctor",
            spec(
                json!({"type": "object", "properties": {"a": {"type": "string"}},
                        "anyOf": [{"properties": {"a": {"type": "string"}}}]}),
            ),
            "openAPIV3Schema.properties[spec].anyOf[0].properties[a].type: Forbidden: must not be set inside logical junctors (allOf, anyOf, oneOf, not)",
        ),
        (
            "default inside a junctor",
            spec(json!({"type": "string", "allOf": [{"default": "x"}]})),
            "openAPIV3Schema.properties[spec].allOf[0].default: Forbidden: must not be set inside logical junctors (allOf, anyOf, oneOf, not)",
        ),
        (
            "description inside not",
            spec(json!({"type": "string", "not": {"description": "d", "pattern": "x"}})),
            "openAPIV3Schema.properties[spec].not.description: Forbidden: must not be set inside logical junctors (allOf, anyOf, oneOf, not)",
        ),
        (
            "junctor property not declared outside",
            spec(
                json!({"type": "object", "properties": {"a": {"type": "string"}},
                        "oneOf": [{"properties": {"b": {"minLength": 1}}}]}),
            ),
            "openAPIV3Schema.properties[spec].oneOf[0].properties[b]: Required value: must also be declared outside of logical junctors",
        ),
        (
            "junctor items not declared outside",
            spec(
                json!({"type": "object", "properties": {"a": {"type": "string"}},
                        "allOf": [{"items": {"minLength": 1}}]}),
            ),
            "openAPIV3Schema.properties[spec].allOf[0].items: Required value: must also be declared outside of logical junctors",
        ),
        (
            "array without items",
            spec(json!({"type": "array"})),
            "openAPIV3Schema.properties[spec].items: Required value: must be specified if type is array",
        ),
        (
            "items as a list",
            spec(json!({"type": "array", "items": [{"type": "string"}]})),
            "openAPIV3Schema.properties[spec].items: Forbidden: items must be a schema object, not a list of schemas",
        ),
        (
            "int-or-string with a type",
            spec(
                json!({"type": "object", "properties": {"p": {"type": "string", "x-kubernetes-int-or-string": true}}}),
            ),
            "openAPIV3Schema.properties[spec].properties[p].type: Forbidden: must be empty when x-kubernetes-int-or-string is true",
        ),
        (
            "int-or-string with another junctor shape",
            spec(
                json!({"type": "object", "properties": {"p": {"x-kubernetes-int-or-string": true,
                        "anyOf": [{"type": "string"}, {"type": "integer"}]}}}),
            ),
            "openAPIV3Schema.properties[spec].properties[p].anyOf[0].type: Forbidden: must not be set inside logical junctors (allOf, anyOf, oneOf, not)",
        ),
        (
            "metadata restricting labels",
            json!({"type": "object", "properties": {"metadata": {"type": "object", "properties": {
                "labels": {"type": "object", "additionalProperties": {"type": "string"}}
            }}}}),
            "openAPIV3Schema.properties[metadata].properties[labels]: Forbidden: only restrictions of metadata.name and metadata.generateName are allowed",
        ),
        (
            "metadata with required",
            json!({"type": "object", "properties": {"metadata": {"type": "object", "required": ["name"]}}}),
            "openAPIV3Schema.properties[metadata].required: Forbidden: only restrictions of metadata.name and metadata.generateName are allowed",
        ),
        (
            "list-type on a non-array",
            spec(json!({"type": "object", "x-kubernetes-list-type": "set"})),
            "openAPIV3Schema.properties[spec].x-kubernetes-list-type: Invalid value: must only be used if type is array",
        ),
        (
            "list-type map without keys",
            spec(json!({"type": "array", "x-kubernetes-list-type": "map",
                        "items": {"type": "object", "properties": {"n": {"type": "string"}}}})),
            "openAPIV3Schema.properties[spec].x-kubernetes-list-map-keys: Required value: must not be empty if x-kubernetes-list-type is map",
        ),
        (
            "list-map key neither required nor defaulted",
            spec(
                json!({"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["n"],
                        "items": {"type": "object", "properties": {"n": {"type": "string"}}}}),
            ),
            "openAPIV3Schema.properties[spec].items.properties[n]: Required value: list-map keys must be required or have a default",
        ),
        (
            "list-type set of objects",
            spec(json!({"type": "array", "x-kubernetes-list-type": "set",
                        "items": {"type": "object", "properties": {"n": {"type": "string"}}}})),
            "openAPIV3Schema.properties[spec].items.type: Invalid value: \"object\": must be a scalar type (or an atomic object) if x-kubernetes-list-type is set",
        ),
        (
            "uniqueItems",
            spec(json!({"type": "array", "uniqueItems": true, "items": {"type": "string"}})),
            "openAPIV3Schema.properties[spec].uniqueItems: Forbidden: uniqueItems cannot be set to true (use x-kubernetes-list-type: set instead)",
        ),
        (
            "$ref",
            spec(json!({"$ref": "#/definitions/x"})),
            "openAPIV3Schema.properties[spec].$ref: Forbidden: must not be used in a CRD schema",
        ),
        (
            "preserve-unknown-fields false",
            spec(json!({"type": "object", "x-kubernetes-preserve-unknown-fields": false})),
            "openAPIV3Schema.properties[spec].x-kubernetes-preserve-unknown-fields: Invalid value: false: must be true or undefined",
        ),
        (
            "embedded resource that is not an object",
            spec(json!({"type": "string", "x-kubernetes-embedded-resource": true})),
            "openAPIV3Schema.properties[spec].type: Required value: must be object if x-kubernetes-embedded-resource is true",
        ),
        (
            "rule without an expression",
            spec(json!({"type": "object", "x-kubernetes-validations": [{"message": "m"}]})),
            "openAPIV3Schema.properties[spec].x-kubernetes-validations[0].rule: Required value: a non-empty CEL expression is required",
        ),
        (
            "map-type on a non-object",
            spec(json!({"type": "string", "x-kubernetes-map-type": "atomic"})),
            "openAPIV3Schema.properties[spec].x-kubernetes-map-type: Invalid value: must only be used if type is object",
        ),
    ]
}

#[test]
fn bad_schemas_name_the_offending_node() {
    for (name, schema, expected) in bad_cases() {
        let problems = structural_problems(&schema);
        assert!(
            problems.iter().any(|p| p == expected),
            "{name}: expected {expected:?} among {problems:#?}"
        );
    }
}

#[test]
fn problems_are_reported_all_at_once() {
    let schema = spec(json!({
        "type": "object",
        "properties": {"a": {}, "b": {"type": "array"}}
    }));
    let problems = structural_problems(&schema);
    assert_eq!(
        problems,
        [
            "openAPIV3Schema.properties[spec].properties[a].type: Required value: must not be empty for specified object fields",
            "openAPIV3Schema.properties[spec].properties[b].items: Required value: must be specified if type is array",
        ]
    );
}

#[test]
fn defaults_must_be_pruned_and_valid() {
    let cases = [
        (
            spec(
                json!({"type": "object", "properties": {"n": {"type": "integer", "default": 10, "maximum": 5}}}),
            ),
            "openAPIV3Schema.properties[spec].properties[n].default: Invalid value: 10: Invalid value: 10: in body should be less than or equal to 5",
        ),
        (
            spec(json!({"type": "object", "properties": {"o": {
                "type": "object", "default": {"a": "x", "zz": 1},
                "properties": {"a": {"type": "string"}}
            }}})),
            "openAPIV3Schema.properties[spec].properties[o].default: Invalid value: map[string]interface {}{\"a\":\"x\", \"zz\":1}: must not have unknown fields: zz",
        ),
        (
            spec(json!({"type": "object", "properties": {"o": {
                "type": "object", "default": {"a": 3},
                "properties": {"a": {"type": "string"}}
            }}})),
            "openAPIV3Schema.properties[spec].properties[o].default: Invalid value: map[string]interface {}{\"a\":3}: a: Invalid value: \"integer\": a in body must be of type string: \"integer\"",
        ),
        (
            spec(json!({"type": "object", "properties": {"m": {
                "type": "string", "default": "b", "enum": ["a"]
            }}})),
            "openAPIV3Schema.properties[spec].properties[m].default: Invalid value: \"b\": Unsupported value: \"b\": supported values: \"a\"",
        ),
        (
            spec(json!({"type": "object", "properties": {"r": {
                "type": "integer", "default": 0,
                "x-kubernetes-validations": [{"rule": "self > 0", "message": "must be positive"}]
            }}})),
            "openAPIV3Schema.properties[spec].properties[r].default: Invalid value: 0: Invalid value: \"integer\": must be positive",
        ),
    ];
    for (schema, expected) in cases {
        assert_eq!(structural_problems(&schema), [expected]);
    }
    // A valid default, including one whose nested defaults fill required fields.
    let ok = spec(json!({"type": "object", "properties": {"o": {
        "type": "object", "default": {}, "required": ["a"],
        "properties": {"a": {"type": "string", "default": "x"}}
    }}}));
    assert_eq!(structural_problems(&ok), Vec::<String>::new());
}
