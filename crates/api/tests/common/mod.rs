//! Shared helpers for the CRD tests: YAML parsing, schema lookup, numeric-tolerant
//! comparison, and a small independent check of schema bounds.

// Test support: failing loudly on malformed fixtures is the point.
#![allow(clippy::expect_used, clippy::panic)]

pub mod samples;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::Value;

/// Parses one YAML document into JSON.
pub fn yaml(text: &str) -> Value {
    serde_yaml::from_str(text).expect("sample YAML parses")
}

/// The `openAPIV3Schema` of a single-version CRD, as JSON.
pub fn schema_of(crd: &CustomResourceDefinition) -> Value {
    assert_eq!(crd.spec.versions.len(), 1, "one version per CRD");
    let schema = crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .expect("CRD has an openAPIV3Schema");
    serde_json::to_value(schema).expect("schema serializes")
}

/// The schema node at a dotted path (`spec.scenarios[].steps`), following `properties`,
/// `items` (`[]`) and `additionalProperties` (`{}`).
pub fn node<'a>(schema: &'a Value, path: &str) -> &'a Value {
    let mut cur = schema;
    for part in path.split('.') {
        let (name, suffix) = match part.find(['[', '{']) {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !name.is_empty() {
            cur = &cur["properties"][name];
            assert!(!cur.is_null(), "schema has no property {name} (in {path})");
        }
        for marker in suffix.as_bytes().chunks(2) {
            cur = match marker {
                b"[]" => &cur["items"],
                b"{}" => &cur["additionalProperties"],
                _ => panic!("bad path segment {part}"),
            };
        }
    }
    cur
}

/// Compares JSON values, treating numbers as equal when their `f64` values are
/// (so `1` and `1.0` match); returns the first differing path.
pub fn diff(left_doc: &Value, right_doc: &Value, path: &str) -> Option<String> {
    match (left_doc, right_doc) {
        (Value::Number(left), Value::Number(right)) => {
            (left.as_f64() != right.as_f64()).then(|| format!("{path}: {left} != {right}"))
        }
        (Value::Object(left), Value::Object(right)) => {
            for key in left.keys().chain(right.keys()) {
                let sub = format!("{path}.{key}");
                match (left.get(key), right.get(key)) {
                    (Some(l), Some(r)) => {
                        if let Some(d) = diff(l, r, &sub) {
                            return Some(d);
                        }
                    }
                    (Some(_), None) => return Some(format!("{sub}: lost")),
                    (None, Some(_)) => return Some(format!("{sub}: added")),
                    (None, None) => {}
                }
            }
            None
        }
        (Value::Array(left), Value::Array(right)) => {
            if left.len() != right.len() {
                return Some(format!("{path}: length {} != {}", left.len(), right.len()));
            }
            left.iter()
                .zip(right)
                .enumerate()
                .find_map(|(i, (l, r))| diff(l, r, &format!("{path}[{i}]")))
        }
        _ => (left_doc != right_doc).then(|| format!("{path}: {left_doc} != {right_doc}")),
    }
}

/// Fields of `obj` that `schema` does not declare, i.e. what the API server would prune.
/// The root's `apiVersion`, `kind` and `metadata` are never pruned.
pub fn undeclared_fields(schema: &Value, obj: &Value, path: &str, out: &mut Vec<String>) {
    if schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
        return;
    }
    match obj {
        Value::Object(map) => {
            for (key, value) in map {
                if path.is_empty() && ["apiVersion", "kind", "metadata"].contains(&key.as_str()) {
                    continue;
                }
                let sub = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                if let Some(prop) = schema.get("properties").and_then(|p| p.get(key)) {
                    undeclared_fields(prop, value, &sub, out);
                } else if let Some(extra) = schema.get("additionalProperties") {
                    undeclared_fields(extra, value, &sub, out);
                } else {
                    out.push(sub);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    undeclared_fields(item_schema, item, &format!("{path}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

/// A small, independent check of the `OpenAPI` keywords our schemas rely on: `type`,
/// `required`, `enum`, `minimum`, `maximum` and `minItems`. Returns one line per violation.
pub fn bound_violations(schema: &Value, obj: &Value, path: &str, out: &mut Vec<String>) {
    let here = if path.is_empty() { "<root>" } else { path };
    if obj.is_null() {
        return;
    }
    if let Some(ty) = schema.get("type").and_then(Value::as_str) {
        let ok = match ty {
            "object" => obj.is_object(),
            "array" => obj.is_array(),
            "string" => obj.is_string(),
            "boolean" => obj.is_boolean(),
            "integer" => obj.is_i64() || obj.is_u64(),
            "number" => obj.is_number(),
            _ => true,
        };
        if !ok {
            out.push(format!("{here}: expected {ty}, got {obj}"));
            return;
        }
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(obj)
    {
        out.push(format!("{here}: {obj} not in enum {allowed:?}"));
    }
    if let (Some(min), Some(v)) = (schema.get("minimum").and_then(Value::as_f64), obj.as_f64())
        && v < min
    {
        out.push(format!("{here}: {v} < minimum {min}"));
    }
    if let (Some(max), Some(v)) = (schema.get("maximum").and_then(Value::as_f64), obj.as_f64())
        && v > max
    {
        out.push(format!("{here}: {v} > maximum {max}"));
    }
    if let (Some(min), Some(items)) = (
        schema.get("minItems").and_then(Value::as_u64),
        obj.as_array(),
    ) && (items.len() as u64) < min
    {
        out.push(format!("{here}: {} items < minItems {min}", items.len()));
    }
    let join = |key: &str| {
        if path.is_empty() {
            key.to_owned()
        } else {
            format!("{path}.{key}")
        }
    };
    if let Some(map) = obj.as_object() {
        if let Some(required) = schema.get("required").and_then(Value::as_array) {
            for key in required.iter().filter_map(Value::as_str) {
                if !map.contains_key(key) {
                    out.push(format!("{}: required", join(key)));
                }
            }
        }
        for (key, value) in map {
            if let Some(prop) = schema.get("properties").and_then(|p| p.get(key)) {
                bound_violations(prop, value, &join(key), out);
            } else if let Some(extra) = schema.get("additionalProperties") {
                bound_violations(extra, value, &join(key), out);
            }
        }
    }
    if let (Some(item_schema), Some(items)) = (schema.get("items"), obj.as_array()) {
        for (i, item) in items.iter().enumerate() {
            bound_violations(item_schema, item, &format!("{path}[{i}]"), out);
        }
    }
}

/// Sets (or removes, for `Value::Null`) the field at a dotted path with `[i]` indices.
pub fn set(obj: &mut Value, path: &str, value: Value) {
    let parts: Vec<&str> = path.split('.').collect();
    let mut cur = obj;
    for (n, part) in parts.iter().enumerate() {
        let (name, index) = match part.find('[') {
            Some(i) => (
                &part[..i],
                Some(part[i + 1..part.len() - 1].parse::<usize>().expect("index")),
            ),
            None => (*part, None),
        };
        let last = n + 1 == parts.len();
        if last && index.is_none() {
            let map = cur.as_object_mut().expect("parent is an object");
            if value.is_null() {
                map.remove(name);
            } else {
                map.insert(name.to_owned(), value);
            }
            return;
        }
        cur = cur
            .as_object_mut()
            .expect("parent is an object")
            .entry(name)
            .or_insert_with(|| Value::Object(serde_json::Map::new()));
        if let Some(i) = index {
            if last {
                cur.as_array_mut().expect("array")[i] = value;
                return;
            }
            cur = &mut cur.as_array_mut().expect("array")[i];
        }
    }
}
