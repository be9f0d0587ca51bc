//! Checks that an `openAPIV3Schema` is structural, plus the other schema rules the API server
//! enforces when a `CustomResourceDefinition` is created (no `$ref`, no `uniqueItems: true`, …).
//!
//! Paths are written from `openAPIV3Schema`, e.g.
//! `openAPIV3Schema.properties[spec].properties[targets].items.type`.

use serde_json::{Map, Value};

const ROOT: &str = "openAPIV3Schema";

const TYPES: [&str; 6] = ["array", "boolean", "integer", "number", "object", "string"];

/// Keys the API server refuses anywhere in a CRD schema.
const FORBIDDEN_EVERYWHERE: [&str; 6] = [
    "$ref",
    "definitions",
    "id",
    "patternProperties",
    "dependencies",
    "additionalItems",
];

/// Keys that belong to the structural part only and so may not appear inside
/// `allOf`/`anyOf`/`oneOf`/`not`.
const FORBIDDEN_IN_JUNCTORS: [&str; 14] = [
    "type",
    "description",
    "title",
    "default",
    "nullable",
    "additionalProperties",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-embedded-resource",
    "x-kubernetes-int-or-string",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-map-type",
    "x-kubernetes-validations",
    "example",
];

const JUNCTORS: [&str; 3] = ["allOf", "anyOf", "oneOf"];

/// Where a structural node sits, which decides the wording of a missing-`type` problem.
#[derive(Clone, Copy)]
enum Place {
    Root,
    Field,
    Item,
}

/// Reasons why `schema` (a CRD version's `openAPIV3Schema`) is not structural or would be
/// refused by the API server; empty when it is acceptable. Each message starts with the path
/// of the offending schema node.
///
/// What each kind of bad input produces, for example:
/// - a field without `type` (and neither `x-kubernetes-int-or-string` nor
///   `x-kubernetes-preserve-unknown-fields`): `….properties[x].type: Required value: must not
///   be empty for specified object fields`;
/// - `type`, `description`, `default`, `nullable`, `additionalProperties` or an
///   `x-kubernetes-*` extension inside `allOf`/`anyOf`/`oneOf`/`not`: `….anyOf[0].type:
///   Forbidden: must not be set inside logical junctors`;
/// - a junctor naming a property or `items` the structural part does not declare:
///   `….allOf[0].properties[y]: Required value: must also be declared outside of logical
///   junctors`;
/// - `properties` together with `additionalProperties`, or `additionalProperties: false`;
/// - `type: array` without `items`, or `items` given as a list;
/// - `x-kubernetes-int-or-string: true` together with a `type`, or with junctors other than
///   `anyOf: [{type: integer}, {type: string}]` (optionally wrapped in `allOf`);
/// - root `metadata` restricting anything other than `name` and `generateName`;
/// - `x-kubernetes-list-type` on a non-array, `map` without `x-kubernetes-list-map-keys`,
///   list-map keys that are not scalar, required-or-defaulted properties of the items;
/// - `uniqueItems: true`, `$ref`, `definitions`, `patternProperties`, … anywhere;
/// - (checked once the schema is otherwise structural) a `default` with fields the schema
///   would prune, or that fails its node's validations: `….properties[n].default: Invalid
///   value: 10: Invalid value: 10: in body should be less than or equal to 5`.
pub fn structural_problems(schema: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(obj) = schema.as_object() else {
        problems.push(format!("{ROOT}: Invalid value: must be a schema object"));
        return problems;
    };
    if let Some(t) = obj.get("type")
        && t.as_str().is_some_and(|t| t != "object")
    {
        problems.push(format!(
            "{ROOT}.type: Invalid value: {t}: must be object at the root"
        ));
    }
    structural_node(obj, ROOT, Place::Root, &mut problems);
    if let Some(meta) = obj
        .get("properties")
        .and_then(|p| p.get("metadata"))
        .and_then(Value::as_object)
    {
        check_root_metadata(meta, &format!("{ROOT}.properties[metadata]"), &mut problems);
    }
    if problems.is_empty() {
        problems = crate::schema::default_problems(schema);
    }
    problems
}

fn is_true(obj: &Map<String, Value>, key: &str) -> bool {
    obj.get(key).and_then(Value::as_bool) == Some(true)
}

fn forbidden_everywhere(obj: &Map<String, Value>, path: &str, problems: &mut Vec<String>) {
    for key in FORBIDDEN_EVERYWHERE {
        if obj.contains_key(key) {
            problems.push(format!(
                "{path}.{key}: Forbidden: must not be used in a CRD schema"
            ));
        }
    }
    if is_true(obj, "uniqueItems") {
        problems.push(format!(
            "{path}.uniqueItems: Forbidden: uniqueItems cannot be set to true (use \
             x-kubernetes-list-type: set instead)"
        ));
    }
    if let Some(rules) = obj.get("x-kubernetes-validations") {
        match rules.as_array() {
            Some(rules) => {
                for (i, r) in rules.iter().enumerate() {
                    let ok = r
                        .get("rule")
                        .and_then(Value::as_str)
                        .is_some_and(|s| !s.trim().is_empty());
                    if !ok {
                        problems.push(format!(
                            "{path}.x-kubernetes-validations[{i}].rule: Required value: a \
                             non-empty CEL expression is required"
                        ));
                    }
                }
            }
            None => problems.push(format!(
                "{path}.x-kubernetes-validations: Invalid value: must be a list of rules"
            )),
        }
    }
}

#[allow(clippy::too_many_lines)]
fn structural_node(obj: &Map<String, Value>, path: &str, place: Place, problems: &mut Vec<String>) {
    forbidden_everywhere(obj, path, problems);
    let int_or_string = is_true(obj, "x-kubernetes-int-or-string");
    let preserve = is_true(obj, "x-kubernetes-preserve-unknown-fields");
    let ty = obj.get("type");
    let ty_str = ty.and_then(Value::as_str).unwrap_or("");

    match ty {
        Some(Value::String(t)) if TYPES.contains(&t.as_str()) && int_or_string => {
            problems.push(format!(
                "{path}.type: Forbidden: must be empty when x-kubernetes-int-or-string is true"
            ));
        }
        Some(Value::String(t)) if t.is_empty() || TYPES.contains(&t.as_str()) => {}
        Some(other) => problems.push(format!(
            "{path}.type: Unsupported value: {other}: supported values: \"array\", \"boolean\", \
             \"integer\", \"number\", \"object\", \"string\""
        )),
        None => {}
    }
    if ty_str.is_empty() && !int_or_string && !preserve {
        let wording = match place {
            Place::Root => "at the root",
            Place::Field => "for specified object fields",
            Place::Item => "for specified array items",
        };
        problems.push(format!(
            "{path}.type: Required value: must not be empty {wording}"
        ));
    }
    if obj.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(false)) {
        problems.push(format!(
            "{path}.x-kubernetes-preserve-unknown-fields: Invalid value: false: must be true or \
             undefined"
        ));
    }
    if is_true(obj, "x-kubernetes-embedded-resource") {
        if ty_str != "object" {
            problems.push(format!(
                "{path}.type: Required value: must be object if \
                 x-kubernetes-embedded-resource is true"
            ));
        }
        if !preserve && !obj.contains_key("properties") {
            problems.push(format!(
                "{path}.properties: Required value: must not be empty if \
                 x-kubernetes-embedded-resource is true without x-kubernetes-preserve-unknown-fields"
            ));
        }
    }

    // Object members.
    let props = obj.get("properties");
    let additional = obj.get("additionalProperties");
    if props.is_some() && additional.is_some() {
        problems.push(format!(
            "{path}.additionalProperties: Forbidden: additionalProperties and properties are \
             mutually exclusive"
        ));
    }
    if let Some(props) = props {
        match props.as_object() {
            Some(props) => {
                for (name, child) in props {
                    let child_path = format!("{path}.properties[{name}]");
                    match child.as_object() {
                        Some(c) => structural_node(c, &child_path, Place::Field, problems),
                        None => problems.push(format!(
                            "{child_path}: Invalid value: must be a schema object"
                        )),
                    }
                }
            }
            None => problems.push(format!("{path}.properties: Invalid value: must be a map")),
        }
    }
    match additional {
        Some(Value::Bool(false)) => problems.push(format!(
            "{path}.additionalProperties: Forbidden: additionalProperties cannot be set to false"
        )),
        Some(Value::Object(a)) => structural_node(
            a,
            &format!("{path}.additionalProperties"),
            Place::Field,
            problems,
        ),
        _ => {}
    }
    if let Some(map_type) = obj.get("x-kubernetes-map-type") {
        if ty_str != "object" {
            problems.push(format!(
                "{path}.x-kubernetes-map-type: Invalid value: must only be used if type is object"
            ));
        }
        if !matches!(map_type.as_str(), Some("granular" | "atomic")) {
            problems.push(format!(
                "{path}.x-kubernetes-map-type: Unsupported value: {map_type}: supported values: \
                 \"atomic\", \"granular\""
            ));
        }
    }

    // Array members.
    match obj.get("items") {
        Some(Value::Object(items)) => {
            structural_node(items, &format!("{path}.items"), Place::Item, problems);
        }
        Some(_) => problems.push(format!(
            "{path}.items: Forbidden: items must be a schema object, not a list of schemas"
        )),
        None if ty_str == "array" => problems.push(format!(
            "{path}.items: Required value: must be specified if type is array"
        )),
        None => {}
    }
    check_list_type(obj, path, ty_str, problems);

    // Value validations in logical junctors.
    let int_or_string_junctors = int_or_string && int_or_string_pattern(obj);
    for junctor in JUNCTORS {
        if let Some(branches) = obj.get(junctor) {
            let Some(branches) = branches.as_array() else {
                problems.push(format!("{path}.{junctor}: Invalid value: must be a list"));
                continue;
            };
            for (i, branch) in branches.iter().enumerate() {
                junctor_node(
                    branch,
                    Some(obj),
                    &format!("{path}.{junctor}[{i}]"),
                    int_or_string_junctors,
                    problems,
                );
            }
        }
    }
    if let Some(not) = obj.get("not") {
        junctor_node(not, Some(obj), &format!("{path}.not"), false, problems);
    }
}

/// Whether the junctors of an int-or-string node are one of the two accepted shapes:
/// `anyOf: [{type: integer}, {type: string}]`, or that inside an `allOf`.
fn int_or_string_pattern(obj: &Map<String, Value>) -> bool {
    fn is_any_of_pair(v: &Value) -> bool {
        let Some(branches) = v.as_array() else {
            return false;
        };
        let types: Vec<Option<&str>> = branches
            .iter()
            .map(|b| b.get("type").and_then(Value::as_str))
            .collect();
        types == [Some("integer"), Some("string")]
    }
    if let Some(any_of) = obj.get("anyOf") {
        return is_any_of_pair(any_of);
    }
    if let Some(all_of) = obj.get("allOf").and_then(Value::as_array) {
        return all_of
            .iter()
            .any(|b| b.get("anyOf").is_some_and(is_any_of_pair));
    }
    false
}

/// Checks a schema inside a junctor. `structural` is the corresponding node of the structural
/// part (`None` when it does not declare this position at all).
fn junctor_node(
    node: &Value,
    structural: Option<&Map<String, Value>>,
    path: &str,
    int_or_string_ok: bool,
    problems: &mut Vec<String>,
) {
    let Some(obj) = node.as_object() else {
        problems.push(format!("{path}: Invalid value: must be a schema object"));
        return;
    };
    forbidden_everywhere(obj, path, problems);
    for key in FORBIDDEN_IN_JUNCTORS {
        if !obj.contains_key(key) {
            continue;
        }
        if key == "type" && int_or_string_ok {
            continue;
        }
        problems.push(format!(
            "{path}.{key}: Forbidden: must not be set inside logical junctors (allOf, anyOf, \
             oneOf, not)"
        ));
    }
    if let Some(props) = obj.get("properties").and_then(Value::as_object) {
        for (name, child) in props {
            let child_path = format!("{path}.properties[{name}]");
            let declared = structural.and_then(|s| {
                s.get("properties")
                    .and_then(|p| p.get(name))
                    .or_else(|| s.get("additionalProperties"))
                    .and_then(Value::as_object)
            });
            if declared.is_none() {
                problems.push(format!(
                    "{child_path}: Required value: must also be declared outside of logical \
                     junctors"
                ));
            }
            junctor_node(child, declared, &child_path, false, problems);
        }
    }
    if let Some(items) = obj.get("items") {
        let declared = structural
            .and_then(|s| s.get("items"))
            .and_then(Value::as_object);
        if declared.is_none() {
            problems.push(format!(
                "{path}.items: Required value: must also be declared outside of logical junctors"
            ));
        }
        junctor_node(items, declared, &format!("{path}.items"), false, problems);
    }
    for junctor in JUNCTORS {
        if let Some(branches) = obj.get(junctor).and_then(Value::as_array) {
            for (i, branch) in branches.iter().enumerate() {
                let inner_ok = int_or_string_ok && junctor == "anyOf";
                junctor_node(
                    branch,
                    structural,
                    &format!("{path}.{junctor}[{i}]"),
                    inner_ok,
                    problems,
                );
            }
        }
    }
    if let Some(not) = obj.get("not") {
        junctor_node(not, structural, &format!("{path}.not"), false, problems);
    }
}

fn check_list_type(obj: &Map<String, Value>, path: &str, ty: &str, problems: &mut Vec<String>) {
    let list_type = obj.get("x-kubernetes-list-type");
    let keys = obj.get("x-kubernetes-list-map-keys");
    let items = obj.get("items").and_then(Value::as_object);
    let item_type = items
        .and_then(|i| i.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("");
    if let Some(lt) = list_type {
        if ty != "array" {
            problems.push(format!(
                "{path}.x-kubernetes-list-type: Invalid value: must only be used if type is array"
            ));
        }
        match lt.as_str() {
            Some("atomic") => {}
            Some("set") => {
                let atomic_object = items.is_some_and(|i| {
                    i.get("x-kubernetes-map-type").and_then(Value::as_str) == Some("atomic")
                });
                if matches!(item_type, "object" | "array") && !atomic_object {
                    problems.push(format!(
                        "{path}.items.type: Invalid value: {item_type:?}: must be a scalar type \
                         (or an atomic object) if x-kubernetes-list-type is set"
                    ));
                }
            }
            Some("map") => {
                if item_type != "object" {
                    problems.push(format!(
                        "{path}.items.type: Invalid value: {item_type:?}: must be object if \
                         x-kubernetes-list-type is map"
                    ));
                }
                let key_list = keys.and_then(Value::as_array);
                if key_list.is_none_or(Vec::is_empty) {
                    problems.push(format!(
                        "{path}.x-kubernetes-list-map-keys: Required value: must not be empty if \
                         x-kubernetes-list-type is map"
                    ));
                }
                for key in key_list.into_iter().flatten() {
                    check_map_key(items, key, path, problems);
                }
            }
            _ => problems.push(format!(
                "{path}.x-kubernetes-list-type: Unsupported value: {lt}: supported values: \
                 \"atomic\", \"map\", \"set\""
            )),
        }
    }
    if keys.is_some() && list_type.and_then(Value::as_str) != Some("map") {
        problems.push(format!(
            "{path}.x-kubernetes-list-map-keys: Forbidden: must only be used if \
             x-kubernetes-list-type is map"
        ));
    }
}

fn check_map_key(
    items: Option<&Map<String, Value>>,
    key: &Value,
    path: &str,
    problems: &mut Vec<String>,
) {
    let Some(key) = key.as_str() else {
        problems.push(format!(
            "{path}.x-kubernetes-list-map-keys: Invalid value: keys must be strings"
        ));
        return;
    };
    let Some(prop) = items
        .and_then(|i| i.get("properties"))
        .and_then(|p| p.get(key))
    else {
        problems.push(format!(
            "{path}.x-kubernetes-list-map-keys: Invalid value: {key:?}: entries must all be \
             names of item properties"
        ));
        return;
    };
    let key_type = prop.get("type").and_then(Value::as_str).unwrap_or("");
    if !matches!(key_type, "string" | "integer" | "number" | "boolean") {
        problems.push(format!(
            "{path}.items.properties[{key}].type: Invalid value: {key_type:?}: must be a scalar \
             type if used as an x-kubernetes-list-map-keys key"
        ));
    }
    let required = items
        .and_then(|i| i.get("required"))
        .and_then(Value::as_array)
        .is_some_and(|r| r.iter().any(|k| k.as_str() == Some(key)));
    if !required && prop.get("default").is_none() {
        problems.push(format!(
            "{path}.items.properties[{key}]: Required value: list-map keys must be required or \
             have a default"
        ));
    }
}

/// Root `metadata` may only restrict `metadata.name` and `metadata.generateName`.
fn check_root_metadata(meta: &Map<String, Value>, path: &str, problems: &mut Vec<String>) {
    for key in meta.keys() {
        if !matches!(
            key.as_str(),
            "type" | "description" | "title" | "properties"
        ) {
            problems.push(format!(
                "{path}.{key}: Forbidden: only restrictions of metadata.name and \
                 metadata.generateName are allowed"
            ));
        }
    }
    if let Some(t) = meta.get("type").and_then(Value::as_str)
        && t != "object"
    {
        problems.push(format!("{path}.type: Invalid value: {t:?}: must be object"));
    }
    if let Some(props) = meta.get("properties").and_then(Value::as_object) {
        for (name, child) in props {
            if name != "name" && name != "generateName" {
                problems.push(format!(
                    "{path}.properties[{name}]: Forbidden: only restrictions of metadata.name \
                     and metadata.generateName are allowed"
                ));
                continue;
            }
            if child.get("type").and_then(Value::as_str) != Some("string") {
                problems.push(format!(
                    "{path}.properties[{name}].type: Invalid value: must be string"
                ));
            }
            for key in [
                "properties",
                "additionalProperties",
                "items",
                "default",
                "x-kubernetes-preserve-unknown-fields",
            ] {
                if child.get(key).is_some() {
                    problems.push(format!(
                        "{path}.properties[{name}].{key}: Forbidden: only value validations of \
                         metadata.{name} are allowed"
                    ));
                }
            }
        }
    }
}
