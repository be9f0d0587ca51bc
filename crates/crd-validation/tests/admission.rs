//! Table tests of `Schema::admit`: each case is (schema, object, optional old object) and
//! either the exact API-server error strings or the pruned/defaulted object that is accepted.

// Test helpers build tables of literal JSON and panic on mismatch, like the tests themselves.
#![allow(clippy::panic, clippy::needless_pass_by_value, clippy::too_many_lines)]

use crd_validation::{ErrorKind, FieldErrors, RULES_NOT_CHECKED, Schema};
use serde_json::{Value, json};

/// What a case expects.
enum Expect {
    /// Accepted; the object afterwards and the pruned paths.
    Ok(Value, &'static [&'static str]),
    /// Rejected with exactly these messages, in this order.
    Err(&'static [&'static str]),
}

struct Case {
    name: &'static str,
    /// The `spec` schema; wrapped in a root object schema by `root`.
    spec: Value,
    /// The `spec` value; wrapped in an object with apiVersion/kind/metadata.
    obj: Value,
    /// The old `spec`, for updates.
    old: Option<Value>,
    expect: Expect,
}

fn root(spec: Value) -> Value {
    json!({
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec
        }
    })
}

fn wrap(spec: Value) -> Value {
    json!({
        "apiVersion": "testbench.agentic-layer.ai/v1alpha1",
        "kind": "Experiment",
        "metadata": {"name": "demo", "namespace": "default", "labels": {"a": "b"}},
        "spec": spec
    })
}

fn run(case: &Case) -> Result<(Value, Vec<String>), FieldErrors> {
    let schema = Schema::new(&root(case.spec.clone()))
        .unwrap_or_else(|e| panic!("{}: schema does not compile: {e}", case.name));
    let mut obj = wrap(case.obj.clone());
    let old = case.old.clone().map(wrap);
    schema
        .admit(&mut obj, old.as_ref())
        .map(|a| (obj["spec"].clone(), a.pruned))
}

fn check(cases: &[Case]) {
    for case in cases {
        match (&case.expect, run(case)) {
            (Expect::Ok(want, pruned), Ok((got, got_pruned))) => {
                assert_eq!(&got, want, "{}: admitted object", case.name);
                assert_eq!(got_pruned, *pruned, "{}: pruned paths", case.name);
            }
            (Expect::Err(want), Err(errs)) => {
                let got: Vec<String> = errs.iter().map(ToString::to_string).collect();
                assert_eq!(got, *want, "{}: errors", case.name);
            }
            (Expect::Ok(..), Err(errs)) => panic!("{}: unexpected errors: {errs}", case.name),
            (Expect::Err(want), Ok((got, _))) => {
                panic!("{}: accepted {got}, expected {want:?}", case.name)
            }
        }
    }
}

fn obj(props: Value) -> Value {
    json!({"type": "object", "properties": props})
}

#[test]
fn types() {
    // A value of the wrong JSON type gives TypeInvalid with the actual type as the value;
    // it also blocks CEL rules, so the "not checked" error follows.
    assert!(NOT_CHECKED.ends_with(RULES_NOT_CHECKED));
    check(&[
        Case {
            name: "string for integer",
            spec: obj(json!({"x": {"type": "integer"}})),
            obj: json!({"x": "7"}),
            old: None,
            expect: Expect::Err(&[
                "spec.x: Invalid value: \"string\": spec.x in body must be of type integer: \"string\"",
                NOT_CHECKED,
            ]),
        },
        Case {
            name: "fraction for integer",
            spec: obj(json!({"x": {"type": "integer"}})),
            obj: json!({"x": 1.5}),
            old: None,
            expect: Expect::Err(&[
                "spec.x: Invalid value: \"number\": spec.x in body must be of type integer: \"number\"",
                NOT_CHECKED,
            ]),
        },
        Case {
            name: "integral float is an integer; integer is a number",
            spec: obj(json!({"x": {"type": "integer"}, "y": {"type": "number"}})),
            obj: json!({"x": 2.0, "y": 3}),
            old: None,
            expect: Expect::Ok(json!({"x": 2.0, "y": 3}), &[]),
        },
        Case {
            name: "object, array, boolean mismatches",
            spec: obj(json!({
                "o": {"type": "object"},
                "a": {"type": "array", "items": {"type": "string"}},
                "b": {"type": "boolean"}
            })),
            obj: json!({"a": {"k": 1}, "b": "true", "o": [1]}),
            old: None,
            expect: Expect::Err(&[
                "spec.a: Invalid value: \"object\": spec.a in body must be of type array: \"object\"",
                "spec.b: Invalid value: \"string\": spec.b in body must be of type boolean: \"string\"",
                "spec.o: Invalid value: \"array\": spec.o in body must be of type object: \"array\"",
                NOT_CHECKED,
            ]),
        },
        Case {
            name: "int-or-string",
            spec: obj(
                json!({"p": {"x-kubernetes-int-or-string": true}, "q": {"x-kubernetes-int-or-string": true}}),
            ),
            obj: json!({"p": 80, "q": "http"}),
            old: None,
            expect: Expect::Ok(json!({"p": 80, "q": "http"}), &[]),
        },
        Case {
            name: "int-or-string rejects booleans",
            spec: obj(json!({"p": {"x-kubernetes-int-or-string": true}})),
            obj: json!({"p": true}),
            old: None,
            expect: Expect::Err(&[
                "spec.p: Invalid value: \"boolean\": spec.p in body must be of type integer,string: \"boolean\"",
                NOT_CHECKED,
            ]),
        },
        Case {
            name: "null in nullable field is kept; null in array item is a type error",
            spec: obj(json!({
                "n": {"type": "string", "nullable": true},
                "l": {"type": "array", "items": {"type": "string"}}
            })),
            obj: json!({"n": null, "l": ["a", null]}),
            old: None,
            expect: Expect::Err(&[
                "spec.l[1]: Invalid value: \"null\": spec.l[1] in body must be of type string: \"null\"",
                NOT_CHECKED,
            ]),
        },
    ]);
}

/// The error added instead of running CEL rules after a blocking schema error.
const NOT_CHECKED: &str = "<nil>: Invalid value: \"null\": some validation rules were not checked because the object \
     was invalid; correct the existing errors to complete validation";

#[test]
fn required_enum_and_lengths() {
    check(&[
        Case {
            name: "required",
            spec: json!({"type": "object", "required": ["targets", "mode"], "properties": {
                "targets": {"type": "array", "items": {"type": "string"}},
                "mode": {"type": "string"}
            }}),
            obj: json!({"mode": "a"}),
            old: None,
            expect: Expect::Err(&["spec.targets: Required value", NOT_CHECKED]),
        },
        Case {
            name: "required field of an empty object",
            spec: json!({"type": "object", "required": ["x"], "properties": {"x": {"type": "string"}}}),
            obj: json!({}),
            old: None,
            expect: Expect::Err(&["spec.x: Required value", NOT_CHECKED]),
        },
        Case {
            name: "enum of strings and numbers",
            spec: obj(json!({
                "mode": {"type": "string", "enum": ["a", "b"]},
                "level": {"type": "integer", "enum": [1, 2]}
            })),
            obj: json!({"level": 3, "mode": "x"}),
            old: None,
            expect: Expect::Err(&[
                "spec.level: Unsupported value: 3: supported values: \"1\", \"2\"",
                "spec.mode: Unsupported value: \"x\": supported values: \"a\", \"b\"",
                NOT_CHECKED,
            ]),
        },
        Case {
            name: "maxLength is Too long, minLength is Invalid",
            spec: obj(json!({
                "long": {"type": "string", "maxLength": 3},
                "short": {"type": "string", "minLength": 2}
            })),
            obj: json!({"long": "abcd", "short": "a"}),
            old: None,
            expect: Expect::Err(&[
                "spec.long: Too long: may not be more than 3 bytes",
                "spec.short: Invalid value: \"a\": spec.short in body should be at least 2 chars long",
                NOT_CHECKED,
            ]),
        },
        Case {
            name: "pattern",
            spec: obj(json!({"name": {"type": "string", "pattern": "^[a-z]+$"}})),
            obj: json!({"name": "Abc"}),
            old: None,
            expect: Expect::Err(&[
                "spec.name: Invalid value: \"Abc\": spec.name in body should match '^[a-z]+$'",
            ]),
        },
        Case {
            name: "lengths count characters, not bytes",
            spec: obj(json!({"s": {"type": "string", "maxLength": 2}})),
            obj: json!({"s": "éé"}),
            old: None,
            expect: Expect::Ok(json!({"s": "éé"}), &[]),
        },
    ]);
}

#[test]
fn numbers() {
    check(&[
        Case {
            name: "maximum",
            spec: obj(json!({"defaultThreshold": {"type": "number", "minimum": 0, "maximum": 1}})),
            obj: json!({"defaultThreshold": 1.5}),
            old: None,
            expect: Expect::Err(&[
                "spec.defaultThreshold: Invalid value: 1.5: spec.defaultThreshold in body should be less than or equal to 1",
            ]),
        },
        Case {
            name: "minimum",
            spec: obj(json!({"n": {"type": "integer", "minimum": 1}})),
            obj: json!({"n": 0}),
            old: None,
            expect: Expect::Err(&[
                "spec.n: Invalid value: 0: spec.n in body should be greater than or equal to 1",
            ]),
        },
        Case {
            name: "exclusive bounds",
            spec: obj(json!({
                "a": {"type": "number", "maximum": 1, "exclusiveMaximum": true},
                "b": {"type": "number", "minimum": 0.5, "exclusiveMinimum": true}
            })),
            obj: json!({"a": 1, "b": 0.5}),
            old: None,
            expect: Expect::Err(&[
                "spec.a: Invalid value: 1: spec.a in body should be less than 1",
                "spec.b: Invalid value: 0.5: spec.b in body should be greater than 0.5",
            ]),
        },
        Case {
            name: "multipleOf",
            spec: obj(
                json!({"a": {"type": "integer", "multipleOf": 5}, "b": {"type": "number", "multipleOf": 0.1}}),
            ),
            obj: json!({"a": 12, "b": 0.3}),
            old: None,
            expect: Expect::Err(&[
                "spec.a: Invalid value: 12: spec.a in body should be a multiple of 5",
            ]),
        },
        Case {
            name: "int32 and int64 ranges",
            spec: obj(json!({
                "a": {"type": "integer", "format": "int32"},
                "b": {"type": "integer", "format": "int64"},
                "c": {"type": "integer", "format": "int32"}
            })),
            obj: json!({"a": 3_000_000_000_i64, "b": 18_000_000_000_000_000_000_u64, "c": -5}),
            old: None,
            expect: Expect::Err(&[
                "spec.a: Invalid value: 3000000000: spec.a in body must be of type int32: \"3000000000\"",
                "spec.b: Invalid value: 18000000000000000000: spec.b in body must be of type int64: \"18000000000000000000\"",
                NOT_CHECKED,
            ]),
        },
    ]);
}

#[test]
fn string_formats() {
    check(&[
        Case {
            name: "valid formats and unknown formats",
            spec: obj(json!({
                "t": {"type": "string", "format": "date-time"},
                "d": {"type": "string", "format": "date"},
                "dur": {"type": "string", "format": "duration"},
                "u": {"type": "string", "format": "uuid"},
                "ip": {"type": "string", "format": "ipv4"},
                "c": {"type": "string", "format": "cidr"},
                "h": {"type": "string", "format": "hostname"},
                "b": {"type": "string", "format": "byte"},
                "x": {"type": "string", "format": "something-new"}
            })),
            obj: json!({
                "t": "2026-11-23T05:31:16Z", "d": "2024-02-29", "dur": "1h30m",
                "u": "123e4567-e89b-12d3-a456-426614174000", "ip": "10.0.0.1",
                "c": "10.0.0.0/8", "h": "api.example.com", "b": "aGVsbG8=", "x": "anything"
            }),
            old: None,
            expect: Expect::Ok(
                json!({
                    "t": "2026-11-23T05:31:16Z", "d": "2024-02-29", "dur": "1h30m",
                    "u": "123e4567-e89b-12d3-a456-426614174000", "ip": "10.0.0.1",
                    "c": "10.0.0.0/8", "h": "api.example.com", "b": "aGVsbG8=", "x": "anything"
                }),
                &[],
            ),
        },
        Case {
            name: "invalid formats",
            spec: obj(json!({
                "t": {"type": "string", "format": "date-time"},
                "d": {"type": "string", "format": "date"},
                "ip": {"type": "string", "format": "ipv4"}
            })),
            obj: json!({"d": "2023-02-29", "ip": "10.0.0.300", "t": "yesterday"}),
            old: None,
            expect: Expect::Err(&[
                "spec.d: Invalid value: \"2023-02-29\": spec.d in body must be of type date: \"2023-02-29\"",
                "spec.ip: Invalid value: \"10.0.0.300\": spec.ip in body must be of type ipv4: \"10.0.0.300\"",
                "spec.t: Invalid value: \"yesterday\": spec.t in body must be of type date-time: \"yesterday\"",
                NOT_CHECKED,
            ]),
        },
    ]);
}

#[test]
fn collections() {
    check(&[
        Case {
            name: "minItems and maxItems",
            spec: obj(json!({
                "few": {"type": "array", "minItems": 1, "items": {"type": "string"}},
                "many": {"type": "array", "maxItems": 2, "items": {"type": "string"}}
            })),
            obj: json!({"few": [], "many": ["a", "b", "c"]}),
            old: None,
            expect: Expect::Err(&[
                "spec.few: Invalid value: 0: spec.few in body should have at least 1 items",
                "spec.many: Too many: 3: must have at most 2 items",
                NOT_CHECKED,
            ]),
        },
        Case {
            name: "min/maxProperties",
            spec: obj(json!({
                "small": {"type": "object", "minProperties": 1, "additionalProperties": {"type": "string"}},
                "big": {"type": "object", "maxProperties": 1, "additionalProperties": {"type": "string"}}
            })),
            obj: json!({"big": {"a": "1", "b": "2"}, "small": {}}),
            old: None,
            expect: Expect::Err(&[
                "spec.big: Too many: 2: must have at most 1 item",
                "spec.small: Invalid value: 0: spec.small in body should have at least 1 properties",
                NOT_CHECKED,
            ]),
        },
        Case {
            name: "map values are validated against additionalProperties",
            spec: obj(
                json!({"env": {"type": "object", "additionalProperties": {"type": "string", "maxLength": 2}}}),
            ),
            obj: json!({"env": {"A": "ok", "B": 3}}),
            old: None,
            expect: Expect::Err(&[
                "spec.env.B: Invalid value: \"integer\": spec.env.B in body must be of type string: \"integer\"",
                NOT_CHECKED,
            ]),
        },
        Case {
            name: "list-type set duplicates",
            spec: obj(
                json!({"tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}}}),
            ),
            obj: json!({"tags": ["a", "b", "a"]}),
            old: None,
            expect: Expect::Err(&["spec.tags[2]: Duplicate value: \"a\""]),
        },
        Case {
            name: "list-type map duplicate keys",
            spec: obj(json!({"targets": {
                "type": "array",
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["name"],
                "items": {"type": "object", "required": ["name"], "properties": {
                    "name": {"type": "string"}, "weight": {"type": "integer"}
                }}
            }})),
            obj: json!({"targets": [{"name": "a", "weight": 1}, {"name": "b"}, {"name": "a", "weight": 2}]}),
            old: None,
            expect: Expect::Err(&[
                "spec.targets[2]: Duplicate value: map[string]interface {}{\"name\":\"a\"}",
            ]),
        },
    ]);
}

#[test]
fn pruning() {
    check(&[
        Case {
            name: "unknown fields are pruned at every level, array items included",
            spec: obj(json!({
                "known": {"type": "string"},
                "nested": {"type": "object", "properties": {"a": {"type": "integer"}}},
                "list": {"type": "array", "items": {"type": "object", "properties": {"n": {"type": "string"}}}}
            })),
            obj: json!({
                "known": "k", "bogus": 1,
                "nested": {"a": 1, "b": 2},
                "list": [{"n": "x", "extra": true}, {"n": "y"}]
            }),
            old: None,
            expect: Expect::Ok(
                json!({"known": "k", "nested": {"a": 1}, "list": [{"n": "x"}, {"n": "y"}]}),
                &["spec.bogus", "spec.list[0].extra", "spec.nested.b"],
            ),
        },
        Case {
            name: "preserve-unknown-fields keeps unknown fields but prunes inside known ones",
            spec: json!({
                "type": "object",
                "x-kubernetes-preserve-unknown-fields": true,
                "properties": {"known": {"type": "object", "properties": {"a": {"type": "string"}}}}
            }),
            obj: json!({"free": {"deep": [1, {"x": 2}]}, "known": {"a": "1", "b": "2"}}),
            old: None,
            expect: Expect::Ok(
                json!({"free": {"deep": [1, {"x": 2}]}, "known": {"a": "1"}}),
                &["spec.known.b"],
            ),
        },
        Case {
            name: "untyped preserve-unknown-fields node keeps everything",
            spec: obj(json!({"config": {"x-kubernetes-preserve-unknown-fields": true}})),
            obj: json!({"config": {"a": [{"b": null}], "c": "d"}}),
            old: None,
            expect: Expect::Ok(json!({"config": {"a": [{"b": null}], "c": "d"}}), &[]),
        },
        Case {
            name: "additionalProperties keeps map keys and prunes inside values",
            spec: obj(
                json!({"servers": {"type": "object", "additionalProperties": {
                    "type": "object", "properties": {"url": {"type": "string"}}
                }}}),
            ),
            obj: json!({"servers": {"one": {"url": "u", "junk": 1}, "two": {}}}),
            old: None,
            expect: Expect::Ok(
                json!({"servers": {"one": {"url": "u"}, "two": {}}}),
                &["spec.servers.one.junk"],
            ),
        },
        Case {
            name: "null of a non-nullable field without default is dropped",
            spec: obj(json!({"a": {"type": "string"}, "b": {"type": "string", "nullable": true}})),
            obj: json!({"a": null, "b": null}),
            old: None,
            expect: Expect::Ok(json!({"b": null}), &[]),
        },
    ]);
}

#[test]
fn root_fields_are_kept() {
    let schema = Schema::new(&json!({
        "type": "object",
        "properties": {"spec": {"type": "object", "properties": {"a": {"type": "string"}}}}
    }))
    .unwrap();
    let mut o = json!({
        "apiVersion": "v1", "kind": "K",
        "metadata": {"name": "n", "annotations": {"x": "y"}},
        "spec": {"a": "b"}, "status": {"x": 1}
    });
    let admitted = schema.admit(&mut o, None).unwrap();
    assert_eq!(admitted.pruned, ["status"]);
    assert_eq!(
        o,
        json!({
            "apiVersion": "v1", "kind": "K",
            "metadata": {"name": "n", "annotations": {"x": "y"}},
            "spec": {"a": "b"}
        })
    );
}

#[test]
fn root_metadata_name_restrictions_apply() {
    let schema = Schema::new(&json!({
        "type": "object",
        "properties": {
            "metadata": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 5}}},
            "spec": {"type": "object"}
        }
    }))
    .unwrap();
    let mut o = json!({"metadata": {"name": "far-too-long", "labels": {"a": "b"}}, "spec": {}});
    let errs = schema.admit(&mut o, None).unwrap_err();
    assert_eq!(
        errs.0[0].to_string(),
        "metadata.name: Too long: may not be more than 5 bytes"
    );
    assert_eq!(o["metadata"]["labels"]["a"], "b");
}

#[test]
fn defaults() {
    check(&[
        Case {
            name: "scalar, object and nested defaults",
            spec: obj(json!({
                "mode": {"type": "string", "default": "fast"},
                "limits": {"type": "object", "properties": {
                    "cpu": {"type": "string", "default": "1"},
                    "memory": {"type": "string", "default": "1Gi"}
                }},
                "absent": {"type": "object", "properties": {"x": {"type": "string", "default": "never"}}},
                "made": {"type": "object", "default": {}, "properties": {"y": {"type": "integer", "default": 3}}}
            })),
            obj: json!({"limits": {"cpu": "2"}}),
            old: None,
            expect: Expect::Ok(
                json!({
                    "mode": "fast",
                    "limits": {"cpu": "2", "memory": "1Gi"},
                    "made": {"y": 3}
                }),
                &[],
            ),
        },
        Case {
            name: "defaults in array items and map values",
            spec: obj(json!({
                "targets": {"type": "array", "items": {"type": "object", "properties": {
                    "name": {"type": "string"}, "weight": {"type": "integer", "default": 1}
                }}},
                "pools": {"type": "object", "additionalProperties": {"type": "object", "properties": {
                    "size": {"type": "integer", "default": 2}
                }}}
            })),
            obj: json!({"targets": [{"name": "a"}, {"name": "b", "weight": 5}], "pools": {"p": {}}}),
            old: None,
            expect: Expect::Ok(
                json!({
                    "targets": [{"name": "a", "weight": 1}, {"name": "b", "weight": 5}],
                    "pools": {"p": {"size": 2}}
                }),
                &[],
            ),
        },
        Case {
            name: "null of a non-nullable field takes the default; nullable null stays",
            spec: obj(json!({
                "a": {"type": "string", "default": "x"},
                "b": {"type": "string", "nullable": true, "default": "y"}
            })),
            obj: json!({"a": null, "b": null}),
            old: None,
            expect: Expect::Ok(json!({"a": "x", "b": null}), &[]),
        },
        Case {
            name: "defaults satisfy required",
            spec: json!({"type": "object", "required": ["mode"], "properties": {
                "mode": {"type": "string", "default": "fast"}
            }}),
            obj: json!({}),
            old: None,
            expect: Expect::Ok(json!({"mode": "fast"}), &[]),
        },
    ]);
}

#[test]
fn junctors() {
    check(&[
        Case {
            name: "anyOf of required fields",
            spec: json!({
                "type": "object",
                "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
                "anyOf": [{"required": ["a"]}, {"required": ["b"]}]
            }),
            obj: json!({}),
            old: None,
            expect: Expect::Err(&[
                "spec: Invalid value: \"\": spec in body must validate at least one schema (anyOf)",
                "spec.a: Required value",
                NOT_CHECKED,
            ]),
        },
        Case {
            name: "oneOf with two matches",
            spec: json!({
                "type": "object",
                "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
                "oneOf": [{"required": ["a"]}, {"required": ["b"]}]
            }),
            obj: json!({"a": "1", "b": "2"}),
            old: None,
            expect: Expect::Err(&[
                "spec: Invalid value: \"\": spec in body must validate one and only one schema (oneOf). Found 2 valid alternatives",
            ]),
        },
        Case {
            name: "not",
            spec: json!({
                "type": "object",
                "properties": {"a": {"type": "string"}},
                "not": {"required": ["a"]}
            }),
            obj: json!({"a": "x"}),
            old: None,
            expect: Expect::Err(&[
                "spec: Invalid value: \"\": spec in body must not validate the schema (not)",
            ]),
        },
        Case {
            name: "allOf with nested value validation",
            spec: json!({
                "type": "object",
                "properties": {"a": {"type": "string"}},
                "allOf": [{"properties": {"a": {"maxLength": 1}}}]
            }),
            obj: json!({"a": "x"}),
            old: None,
            expect: Expect::Ok(json!({"a": "x"}), &[]),
        },
    ]);
}

const EXCLUSIVE: &str = "has(self.dataset) && has(self.scenarios) ? false : true";

#[test]
fn cel_creation_rules() {
    check(&[
        Case {
            name: "rule with message on an object",
            spec: json!({
                "type": "object",
                "properties": {"dataset": {"type": "string"}, "scenarios": {"type": "array", "items": {"type": "string"}}},
                "x-kubernetes-validations": [{"rule": EXCLUSIVE, "message": "dataset and scenarios are mutually exclusive"}]
            }),
            obj: json!({"dataset": "d", "scenarios": ["s"]}),
            old: None,
            expect: Expect::Err(&[
                "spec: Invalid value: \"object\": dataset and scenarios are mutually exclusive",
            ]),
        },
        Case {
            name: "passing rule",
            spec: json!({
                "type": "object",
                "properties": {"dataset": {"type": "string"}, "scenarios": {"type": "array", "items": {"type": "string"}}},
                "x-kubernetes-validations": [{"rule": EXCLUSIVE, "message": "dataset and scenarios are mutually exclusive"}]
            }),
            obj: json!({"dataset": "d"}),
            old: None,
            expect: Expect::Ok(json!({"dataset": "d"}), &[]),
        },
        Case {
            name: "default message, rules on scalars and list items",
            spec: obj(json!({
                "replicas": {"type": "integer", "x-kubernetes-validations": [{"rule": "self >= 0"}]},
                "names": {"type": "array", "items": {"type": "string", "x-kubernetes-validations": [
                    {"rule": "self.startsWith('a')", "message": "must start with a"}
                ]}}
            })),
            obj: json!({"names": ["ab", "b"], "replicas": -1}),
            old: None,
            expect: Expect::Err(&[
                "spec.names[1]: Invalid value: \"string\": must start with a",
                "spec.replicas: Invalid value: \"integer\": failed rule: self >= 0",
            ]),
        },
        Case {
            name: "messageExpression, reason and fieldPath",
            spec: json!({
                "type": "object",
                "properties": {"min": {"type": "integer"}, "max": {"type": "integer"}},
                "x-kubernetes-validations": [
                    {"rule": "self.min <= self.max", "messageExpression": "'min ' + string(self.min) + ' exceeds max ' + string(self.max)", "fieldPath": ".min"},
                    {"rule": "self.max < 100", "message": "max too big", "reason": "FieldValueForbidden", "fieldPath": ".max"},
                    {"rule": "self.min != 7", "message": "seven is required elsewhere", "reason": "FieldValueRequired"}
                ]
            }),
            obj: json!({"min": 7, "max": 500}),
            old: None,
            expect: Expect::Err(&[
                "spec.max: Forbidden: max too big",
                "spec: Required value: seven is required elsewhere",
            ]),
        },
        Case {
            name: "messageExpression is used",
            spec: json!({
                "type": "object",
                "properties": {"min": {"type": "integer"}, "max": {"type": "integer"}},
                "x-kubernetes-validations": [
                    {"rule": "self.min <= self.max", "messageExpression": "'min ' + string(self.min) + ' exceeds max ' + string(self.max)", "fieldPath": ".min"}
                ]
            }),
            obj: json!({"min": 9, "max": 5}),
            old: None,
            expect: Expect::Err(&["spec.min: Invalid value: \"object\": min 9 exceeds max 5"]),
        },
        Case {
            name: "rules see defaults",
            spec: json!({
                "type": "object",
                "properties": {"mode": {"type": "string", "default": "slow"}},
                "x-kubernetes-validations": [{"rule": "self.mode == 'fast'", "message": "mode must be fast"}]
            }),
            obj: json!({}),
            old: None,
            expect: Expect::Err(&["spec: Invalid value: \"object\": mode must be fast"]),
        },
        Case {
            name: "rules on map values",
            spec: obj(
                json!({"limits": {"type": "object", "additionalProperties": {
                    "type": "integer", "x-kubernetes-validations": [{"rule": "self > 0", "message": "must be positive"}]
                }}}),
            ),
            obj: json!({"limits": {"a": 1, "b": 0}}),
            old: None,
            expect: Expect::Err(&["spec.limits.b: Invalid value: \"integer\": must be positive"]),
        },
        Case {
            name: "a blocking schema error stops CEL; a non-blocking one does not",
            spec: json!({
                "type": "object",
                "properties": {"n": {"type": "integer", "maximum": 3}},
                "x-kubernetes-validations": [{"rule": "self.n != 5", "message": "five is unlucky"}]
            }),
            obj: json!({"n": 5}),
            old: None,
            expect: Expect::Err(&[
                "spec.n: Invalid value: 5: spec.n in body should be less than or equal to 3",
                "spec: Invalid value: \"object\": five is unlucky",
            ]),
        },
    ]);
}

#[test]
fn cel_transition_rules() {
    let immutable = obj(json!({"name": {
        "type": "string",
        "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "name is immutable"}]
    }}));
    let grow_only = json!({
        "type": "object",
        "properties": {"size": {"type": "integer"}},
        "x-kubernetes-validations": [
            {"rule": "!has(oldSelf.size) || self.size >= oldSelf.size", "message": "size may only grow"},
            {"rule": "oldSelf == null ? self.size > 0 : true", "message": "must start positive", "optionalOldSelf": true}
        ]
    });
    check(&[
        Case {
            name: "transition rule skipped on create",
            spec: immutable.clone(),
            obj: json!({"name": "a"}),
            old: None,
            expect: Expect::Ok(json!({"name": "a"}), &[]),
        },
        Case {
            name: "transition rule on update",
            spec: immutable.clone(),
            obj: json!({"name": "b"}),
            old: Some(json!({"name": "a"})),
            expect: Expect::Err(&["spec.name: Invalid value: \"string\": name is immutable"]),
        },
        Case {
            name: "transition rule skipped when the old value is absent",
            spec: immutable,
            obj: json!({"name": "b"}),
            old: Some(json!({})),
            expect: Expect::Ok(json!({"name": "b"}), &[]),
        },
        Case {
            name: "shrinking fails",
            spec: grow_only.clone(),
            obj: json!({"size": 1}),
            old: Some(json!({"size": 2})),
            expect: Expect::Err(&["spec: Invalid value: \"object\": size may only grow"]),
        },
        Case {
            name: "optionalOldSelf evaluated on create with oldSelf null",
            spec: grow_only.clone(),
            obj: json!({"size": 0}),
            old: None,
            expect: Expect::Err(&["spec: Invalid value: \"object\": must start positive"]),
        },
        Case {
            name: "optionalOldSelf rule with an old value",
            spec: grow_only,
            obj: json!({"size": 0}),
            old: Some(json!({"size": -1})),
            expect: Expect::Ok(json!({"size": 0}), &[]),
        },
        Case {
            name: "list-type map items correlate by key, not index",
            spec: obj(json!({"targets": {
                "type": "array",
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["name"],
                "items": {"type": "object", "required": ["name"], "properties": {
                    "name": {"type": "string"},
                    "port": {"type": "integer", "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "port is immutable"}]}
                }}
            }})),
            obj: json!({"targets": [{"name": "b", "port": 2}, {"name": "a", "port": 9}]}),
            old: Some(json!({"targets": [{"name": "a", "port": 1}, {"name": "b", "port": 2}]})),
            expect: Expect::Err(&[
                "spec.targets[1].port: Invalid value: \"integer\": port is immutable",
            ]),
        },
    ]);
}

#[test]
fn ratcheting_ignores_unchanged_invalid_values() {
    let spec = obj(json!({
        "a": {"type": "string", "maxLength": 2},
        "b": {"type": "string", "maxLength": 2}
    }));
    check(&[
        Case {
            name: "unchanged invalid value is tolerated on update",
            spec: spec.clone(),
            obj: json!({"a": "long", "b": "ok"}),
            old: Some(json!({"a": "long", "b": "no"})),
            expect: Expect::Ok(json!({"a": "long", "b": "ok"}), &[]),
        },
        Case {
            name: "changed invalid value is rejected",
            spec,
            obj: json!({"a": "longer"}),
            old: Some(json!({"a": "long"})),
            expect: Expect::Err(&[
                "spec.a: Too long: may not be more than 2 bytes",
                NOT_CHECKED,
            ]),
        },
    ]);
}

#[test]
fn error_kinds_and_values() {
    let schema = Schema::new(&root(obj(json!({"x": {"type": "integer", "maximum": 1}})))).unwrap();
    let mut o = wrap(json!({"x": 2}));
    let errs = schema.admit(&mut o, None).unwrap_err();
    assert_eq!(errs.len(), 1);
    let e = &errs.0[0];
    assert_eq!(e.path, "spec.x");
    assert_eq!(e.kind, ErrorKind::Invalid);
    assert_eq!(e.value, Some(json!(2)));
    assert_eq!(e.detail, "spec.x in body should be less than or equal to 1");
    assert_eq!(
        e.body(),
        "Invalid value: 2: spec.x in body should be less than or equal to 1"
    );
}

#[test]
fn status_shape() {
    let schema = Schema::new(&root(json!({
        "type": "object",
        "required": ["targets"],
        "properties": {
            "targets": {"type": "array", "items": {"type": "string"}},
            "defaultThreshold": {"type": "number", "maximum": 1}
        }
    })))
    .unwrap();

    // One error: no brackets.
    let mut one = wrap(json!({"targets": [], "defaultThreshold": 1.5}));
    let status = schema.admit(&mut one, None).unwrap_err().to_status(
        "testbench.agentic-layer.ai",
        "Experiment",
        "demo",
    );
    assert_eq!(
        status,
        json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": "Experiment.testbench.agentic-layer.ai \"demo\" is invalid: spec.defaultThreshold: Invalid value: 1.5: spec.defaultThreshold in body should be less than or equal to 1",
            "reason": "Invalid",
            "details": {
                "name": "demo",
                "group": "testbench.agentic-layer.ai",
                "kind": "Experiment",
                "causes": [{
                    "reason": "FieldValueInvalid",
                    "message": "Invalid value: 1.5: spec.defaultThreshold in body should be less than or equal to 1",
                    "field": "spec.defaultThreshold"
                }]
            },
            "code": 422
        })
    );

    // Several errors: bracketed list, one cause each.
    let mut two = wrap(json!({"defaultThreshold": 2}));
    let status = schema.admit(&mut two, None).unwrap_err().to_status(
        "testbench.agentic-layer.ai",
        "Experiment",
        "demo",
    );
    assert_eq!(
        status["message"],
        "Experiment.testbench.agentic-layer.ai \"demo\" is invalid: [spec.targets: Required value, spec.defaultThreshold: Invalid value: 2: spec.defaultThreshold in body should be less than or equal to 1, <nil>: Invalid value: \"null\": some validation rules were not checked because the object was invalid; correct the existing errors to complete validation]"
    );
    let causes = status["details"]["causes"].as_array().unwrap();
    let reasons: Vec<&str> = causes
        .iter()
        .map(|c| c["reason"].as_str().unwrap())
        .collect();
    assert_eq!(
        reasons,
        [
            "FieldValueRequired",
            "FieldValueInvalid",
            "FieldValueInvalid"
        ]
    );
    assert_eq!(
        causes[0],
        json!({"reason": "FieldValueRequired", "message": "Required value", "field": "spec.targets"})
    );
    assert_eq!(causes[2]["field"], "<nil>");
}

#[test]
fn schema_is_shareable_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Schema>();
    assert_send_sync::<FieldErrors>();
}

#[test]
fn bad_schemas_are_refused() {
    // A non-structural schema names the offending node.
    let err = Schema::new(&json!({"type": "object", "properties": {"x": {}}})).unwrap_err();
    assert!(
        err.to_string()
            .contains("openAPIV3Schema.properties[x].type"),
        "{err}"
    );
    // An invalid pattern.
    let err = Schema::new(
        &json!({"type": "object", "properties": {"x": {"type": "string", "pattern": "("}}}),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("openAPIV3Schema.properties[x].pattern"),
        "{err}"
    );
    // A CEL rule that does not parse.
    let err = Schema::new(&json!({
        "type": "object",
        "x-kubernetes-validations": [{"rule": "self.a >"}]
    }))
    .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("openAPIV3Schema.x-kubernetes-validations[0]"),
        "{err}"
    );
}

#[test]
fn unknown_field_warnings_and_strict_status() {
    let schema = Schema::new(&root(obj(json!({"a": {"type": "string"}})))).unwrap();
    let mut o = wrap(json!({"a": "x", "b": 1, "c": {"d": 2}}));
    let admitted = schema.admit(&mut o, None).unwrap();
    assert_eq!(
        admitted.unknown_field_messages(),
        ["unknown field \"spec.b\"", "unknown field \"spec.c\""]
    );
    assert_eq!(
        admitted.strict_error_status("Experiment", "v1alpha1"),
        Some(json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": "Experiment in version \"v1alpha1\" cannot be handled as a Experiment: strict decoding error: unknown field \"spec.b\", unknown field \"spec.c\"",
            "reason": "BadRequest",
            "code": 400
        }))
    );
    let mut clean = wrap(json!({"a": "x"}));
    let admitted = schema.admit(&mut clean, None).unwrap();
    assert_eq!(admitted.strict_error_status("Experiment", "v1alpha1"), None);
}
