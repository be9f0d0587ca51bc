//! The compiled schema tree and admission: pruning, defaulting, `OpenAPI` validation, list-type
//! invariants and `x-kubernetes-validations` rules, in the API server's order.

use std::collections::BTreeMap;

use kube_cel::CompiledSchema;
use regex::Regex;
use serde_json::{Map, Number, Value};

use crate::error::{ErrorKind, FieldError, FieldErrors, go_float, go_number};
use crate::formats;
use crate::structural::structural_problems;

/// Detail of the error added instead of running CEL rules when the object already has errors
/// that make rule evaluation meaningless (wrong types, missing required fields, …).
pub const RULES_NOT_CHECKED: &str = "some validation rules were not checked because the object \
                                     was invalid; correct the existing errors to complete \
                                     validation";

/// A schema that could not be compiled.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// The schema is not structural (or has a `default` that would be pruned or does not
    /// validate); each entry names the offending schema node.
    #[error("schema refused: {}", .0.join("; "))]
    NotStructural(Vec<String>),
    /// A `pattern` is not a valid regular expression.
    #[error("{path}.pattern: Invalid value: {pattern:?}: not a valid regular expression: {reason}")]
    Pattern {
        /// Path of the schema node.
        path: String,
        /// The rejected pattern.
        pattern: String,
        /// Why it was rejected.
        reason: String,
    },
    /// An `x-kubernetes-validations` rule (or its `messageExpression`) does not compile.
    #[error(
        "{path}.x-kubernetes-validations[{index}]: Invalid value: compilation failed: {reason}"
    )]
    Cel {
        /// Path of the schema node.
        path: String,
        /// Index of the rule in the node's list.
        index: usize,
        /// Compiler message.
        reason: String,
    },
}

/// What `additionalProperties` says about a node.
#[derive(Debug, Default)]
enum Additional {
    /// Not set.
    #[default]
    Absent,
    /// `true`: any value is kept as is.
    Any,
    /// A schema for every map value.
    Schema(Box<Node>),
}

/// The `x-kubernetes-validations` of one node, compiled by kube-cel.
struct Rules {
    /// Every rule of the node.
    all: CompiledSchema,
    /// Only the rules that use `oldSelf` (run even where the value did not change).
    transition: Option<CompiledSchema>,
    /// `(rule, message)` of each rule, for falling back when a `messageExpression` yields
    /// an empty string.
    messages: Vec<(String, Option<String>)>,
}

impl std::fmt::Debug for Rules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rules")
            .field("rules", &self.messages)
            .finish_non_exhaustive()
    }
}

/// One compiled schema node. Nodes inside `allOf`/`anyOf`/`oneOf`/`not` use the same type but
/// carry only value validations.
#[derive(Debug, Default)]
#[allow(clippy::struct_excessive_bools)]
struct Node {
    ty: String,
    nullable: bool,
    int_or_string: bool,
    preserve_unknown: bool,
    embedded: bool,
    properties: BTreeMap<String, Node>,
    additional: Additional,
    items: Option<Box<Node>>,
    default: Option<Value>,
    required: Vec<String>,
    enumeration: Option<Vec<Value>>,
    maximum: Option<f64>,
    exclusive_maximum: bool,
    minimum: Option<f64>,
    exclusive_minimum: bool,
    multiple_of: Option<f64>,
    max_length: Option<u64>,
    min_length: Option<u64>,
    pattern: Option<(String, Regex)>,
    format: Option<String>,
    max_items: Option<u64>,
    min_items: Option<u64>,
    max_properties: Option<u64>,
    min_properties: Option<u64>,
    list_type: Option<String>,
    list_map_keys: Vec<String>,
    all_of: Vec<Node>,
    any_of: Vec<Node>,
    one_of: Vec<Node>,
    not: Option<Box<Node>>,
    rules: Option<Rules>,
}

fn child_path(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

/// The entries of an object in key order, so that errors and pruned paths come out in the
/// same order whatever map implementation `serde_json` was built with.
fn sorted(map: &Map<String, Value>) -> Vec<(&String, &Value)> {
    let mut entries: Vec<(&String, &Value)> = map.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    entries
}

fn index_path(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

/// Removes every `x-kubernetes-validations` from a schema subtree.
fn strip_rules(v: &Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| k.as_str() != "x-kubernetes-validations")
                .map(|(k, v)| (k.clone(), strip_rules(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(strip_rules).collect()),
        other => other.clone(),
    }
}

fn compile_rules(obj: &Map<String, Value>, path: &str) -> Result<Option<Rules>, SchemaError> {
    let Some(rules) = obj
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
        .filter(|r| !r.is_empty())
    else {
        return Ok(None);
    };
    let bare = strip_rules(&Value::Object(obj.clone()));
    let with_rules = |selected: Vec<Value>| {
        let mut node = bare.clone();
        if let Value::Object(m) = &mut node {
            m.insert("x-kubernetes-validations".into(), Value::Array(selected));
        }
        kube_cel::compile_schema(&node)
    };
    let all = with_rules(rules.clone());
    let mut transition_rules = Vec::new();
    for (index, compiled) in all.validations.iter().enumerate() {
        match compiled {
            Ok(c) => {
                if c.is_transition_rule
                    && let Some(r) = rules.get(index)
                {
                    transition_rules.push(r.clone());
                }
            }
            Err(e) => {
                return Err(SchemaError::Cel {
                    path: path.to_owned(),
                    index,
                    reason: e.to_string(),
                });
            }
        }
    }
    let transition = if transition_rules.is_empty() {
        None
    } else {
        Some(with_rules(transition_rules))
    };
    let messages = rules
        .iter()
        .map(|r| {
            (
                r.get("rule")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                r.get("message").and_then(Value::as_str).map(str::to_owned),
            )
        })
        .collect();
    Ok(Some(Rules {
        all,
        transition,
        messages,
    }))
}

fn as_u64(obj: &Map<String, Value>, key: &str) -> Option<u64> {
    obj.get(key).and_then(|v| {
        v.as_u64()
            .or_else(|| v.as_f64().and_then(|f| format!("{f:.0}").parse().ok()))
    })
}

fn is_true(obj: &Map<String, Value>, key: &str) -> bool {
    obj.get(key).and_then(Value::as_bool) == Some(true)
}

impl Node {
    /// Compiles a schema node; `path` is its location for error messages.
    fn compile(schema: &Value, path: &str) -> Result<Node, SchemaError> {
        let Some(obj) = schema.as_object() else {
            return Ok(Node::default());
        };
        let mut node = Node {
            ty: obj
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            nullable: is_true(obj, "nullable"),
            int_or_string: is_true(obj, "x-kubernetes-int-or-string"),
            preserve_unknown: is_true(obj, "x-kubernetes-preserve-unknown-fields"),
            embedded: is_true(obj, "x-kubernetes-embedded-resource"),
            default: obj.get("default").cloned(),
            required: obj
                .get("required")
                .and_then(Value::as_array)
                .map(|r| {
                    r.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            enumeration: obj.get("enum").and_then(Value::as_array).cloned(),
            maximum: obj.get("maximum").and_then(Value::as_f64),
            exclusive_maximum: is_true(obj, "exclusiveMaximum"),
            minimum: obj.get("minimum").and_then(Value::as_f64),
            exclusive_minimum: is_true(obj, "exclusiveMinimum"),
            multiple_of: obj.get("multipleOf").and_then(Value::as_f64),
            max_length: as_u64(obj, "maxLength"),
            min_length: as_u64(obj, "minLength"),
            format: obj.get("format").and_then(Value::as_str).map(str::to_owned),
            max_items: as_u64(obj, "maxItems"),
            min_items: as_u64(obj, "minItems"),
            max_properties: as_u64(obj, "maxProperties"),
            min_properties: as_u64(obj, "minProperties"),
            list_type: obj
                .get("x-kubernetes-list-type")
                .and_then(Value::as_str)
                .map(str::to_owned),
            list_map_keys: obj
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
                .map(|k| {
                    k.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            ..Node::default()
        };
        if let Some(p) = obj.get("pattern").and_then(Value::as_str) {
            let rx = Regex::new(p).map_err(|e| SchemaError::Pattern {
                path: path.to_owned(),
                pattern: p.to_owned(),
                reason: e.to_string(),
            })?;
            node.pattern = Some((p.to_owned(), rx));
        }
        if let Some(props) = obj.get("properties").and_then(Value::as_object) {
            for (name, child) in props {
                let p = format!("{path}.properties[{name}]");
                node.properties
                    .insert(name.clone(), Node::compile(child, &p)?);
            }
        }
        node.additional = match obj.get("additionalProperties") {
            Some(Value::Bool(true)) => Additional::Any,
            Some(a @ Value::Object(_)) => Additional::Schema(Box::new(Node::compile(
                a,
                &format!("{path}.additionalProperties"),
            )?)),
            _ => Additional::Absent,
        };
        if let Some(items) = obj.get("items").filter(|i| i.is_object()) {
            node.items = Some(Box::new(Node::compile(items, &format!("{path}.items"))?));
        }
        for (key, target) in [
            ("allOf", &mut node.all_of),
            ("anyOf", &mut node.any_of),
            ("oneOf", &mut node.one_of),
        ] {
            if let Some(branches) = obj.get(key).and_then(Value::as_array) {
                for (i, b) in branches.iter().enumerate() {
                    target.push(Node::compile(b, &format!("{path}.{key}[{i}]"))?);
                }
            }
        }
        if let Some(not) = obj.get("not") {
            node.not = Some(Box::new(Node::compile(not, &format!("{path}.not"))?));
        }
        node.rules = compile_rules(obj, path)?;
        Ok(node)
    }

    fn additional_schema(&self) -> Option<&Node> {
        match &self.additional {
            Additional::Schema(s) => Some(s),
            _ => None,
        }
    }

    /// The schema type as CEL errors show it (`"object"`, or `""` for untyped nodes).
    fn type_value(&self) -> Value {
        Value::String(self.ty.clone())
    }
}

/// A compiled `openAPIV3Schema` of one CRD version, ready to admit objects.
///
/// `Schema` is `Send + Sync`; share it behind an `Arc`.
#[derive(Debug)]
pub struct Schema {
    root: Node,
}

/// What admission changed in an accepted object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Admitted {
    /// Paths of fields removed because the schema does not know them, in document order
    /// (`spec.foo`, `spec.targets[0].bar`). The API server reports each as
    /// `unknown field "<path>"` (a warning, or an error under strict field validation).
    pub pruned: Vec<String>,
}

impl Admitted {
    /// One `unknown field "<path>"` message per pruned field: the text of the `Warning`
    /// header (`299 - "unknown field \"spec.foo\""`) under `fieldValidation=Warn`.
    pub fn unknown_field_messages(&self) -> Vec<String> {
        self.pruned
            .iter()
            .map(|p| format!("unknown field {}", crate::error::go_quote(p)))
            .collect()
    }

    /// Under `fieldValidation=Strict`, the `400 BadRequest` `metav1.Status` the API server
    /// answers with when fields were pruned, e.g. message `Experiment in version "v1alpha1"
    /// cannot be handled as a Experiment: strict decoding error: unknown field "spec.foo"`;
    /// `None` when nothing was pruned.
    pub fn strict_error_status(&self, kind: &str, version: &str) -> Option<Value> {
        if self.pruned.is_empty() {
            return None;
        }
        let message = format!(
            "{kind} in version {} cannot be handled as a {kind}: strict decoding error: {}",
            crate::error::go_quote(version),
            self.unknown_field_messages().join(", ")
        );
        Some(serde_json::json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": "BadRequest",
            "code": 400
        }))
    }
}

impl Schema {
    /// Compiles an `openAPIV3Schema`: checks it is structural, compiles `pattern`s and the
    /// CEL rules of `x-kubernetes-validations` (rules and `messageExpression`s that do not
    /// compile are refused, as the API server refuses such a CRD).
    pub fn new(open_api_v3_schema: &Value) -> Result<Schema, SchemaError> {
        let problems = structural_problems(open_api_v3_schema);
        if !problems.is_empty() {
            return Err(SchemaError::NotStructural(problems));
        }
        let mut root = Node::compile(open_api_v3_schema, "openAPIV3Schema")?;
        // At the root only `metadata.name` and `metadata.generateName` are validated against
        // the schema; the rest of `metadata` is ObjectMeta and never pruned or defaulted.
        if let Some(meta) = root.properties.get_mut("metadata") {
            meta.properties
                .retain(|k, _| k == "name" || k == "generateName");
            meta.preserve_unknown = true;
            meta.required.clear();
            meta.default = None;
        }
        Ok(Schema { root })
    }

    /// Admits `obj` as the API server does on create (`old` = `None`) or update (`old` = the
    /// stored object): prunes unknown fields, drops `null`s of non-nullable fields without a
    /// default, applies defaults, then validates — `OpenAPI` value validations, list-type
    /// invariants, and (when those found nothing blocking) the CEL rules. `obj` is modified in
    /// place even when errors are returned.
    ///
    /// On update, errors of a value equal to its counterpart in `old` are ignored (validation
    /// ratcheting), except for transition rules, which always run. Counterparts are found by
    /// property name, map key, and for `x-kubernetes-list-type: map` lists by item key;
    /// items of other lists have none (so `oldSelf` rules below them do not run).
    ///
    /// What each kind of bad input produces (all paths relative to the object):
    /// - unknown field: no error, removed and listed in [`Admitted::pruned`];
    /// - wrong JSON type (incl. `null` in a non-nullable field that has no default to fall back
    ///   to, and bad `format`s): `TypeInvalid`, e.g. `spec.x: Invalid value: "string": spec.x in
    ///   body must be of type integer: "string"`;
    /// - missing `required` field: `spec.targets: Required value`;
    /// - value outside `enum`: `spec.mode: Unsupported value: "x": supported values: "a", "b"`;
    /// - string over `maxLength`: `spec.name: Too long: may not be more than 5 bytes`;
    /// - list over `maxItems` / map over `maxProperties`: `spec.l: Too many: 3: must have at
    ///   most 2 items`;
    /// - `minimum`/`maximum`/`multipleOf`/`minLength`/`pattern`/`minItems`/`minProperties`
    ///   and failed `allOf`/`anyOf`/`oneOf`/`not`: `Invalid value`, e.g. `spec.t: Invalid
    ///   value: 1.5: spec.t in body should be less than or equal to 1`;
    /// - repeated element of a `set` list or repeated key of a `map` list: `spec.tags[2]:
    ///   Duplicate value: "a"`;
    /// - failed CEL rule: `spec: Invalid value: "object": <message>` (or `Forbidden`,
    ///   `Required`, `Duplicate` per its `reason`, at its `fieldPath`); a rule on the root
    ///   reports path `<nil>`;
    /// - when a type, required, enum, too-long or too-many error exists, CEL rules are not run
    ///   and `<nil>: Invalid value: "null": some validation rules were not checked …` is added
    ///   ([`RULES_NOT_CHECKED`]).
    pub fn admit(&self, obj: &mut Value, old: Option<&Value>) -> Result<Admitted, FieldErrors> {
        let mut pruned = Vec::new();
        prune(Some(&self.root), obj, "", true, &mut pruned);
        drop_non_nullable_nulls(&self.root, obj);
        apply_defaults(&self.root, obj, true);

        let mut errors = Vec::new();
        validate(&self.root, obj, old, "", &mut errors);
        list_invariants(&self.root, obj, "", &mut errors);
        let blocking = errors.iter().any(|e| {
            matches!(
                e.kind,
                ErrorKind::NotSupported
                    | ErrorKind::Required
                    | ErrorKind::TooLong
                    | ErrorKind::TooMany
                    | ErrorKind::TypeInvalid
            )
        });
        if blocking {
            errors.push(FieldError::new(
                "",
                ErrorKind::Invalid,
                None,
                RULES_NOT_CHECKED,
            ));
        } else {
            run_rules(&self.root, obj, old, "", &mut errors);
        }
        if errors.is_empty() {
            Ok(Admitted { pruned })
        } else {
            Err(FieldErrors(errors))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Pruning and defaulting
// ---------------------------------------------------------------------------------------------

fn keeps_object_meta(key: &str) -> bool {
    matches!(key, "apiVersion" | "kind" | "metadata")
}

/// Removes fields the schema does not declare. `node` is `None` where the schema says nothing
/// (everything below is dropped), like the API server's structural pruning.
fn prune(node: Option<&Node>, value: &mut Value, path: &str, root: bool, pruned: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            let Some(node) = node else {
                let mut keys: Vec<String> = map.keys().cloned().collect();
                keys.sort();
                for k in keys {
                    pruned.push(child_path(path, &k));
                }
                map.clear();
                return;
            };
            if matches!(node.additional, Additional::Any) {
                return;
            }
            let mut keys: Vec<String> = map.keys().cloned().collect();
            keys.sort();
            for k in keys {
                if (root || node.embedded) && keeps_object_meta(&k) {
                    continue;
                }
                let p = child_path(path, &k);
                if let Some(child) = node.properties.get(&k) {
                    if let Some(v) = map.get_mut(&k) {
                        prune(Some(child), v, &p, false, pruned);
                    }
                } else if let Some(add) = node.additional_schema() {
                    if let Some(v) = map.get_mut(&k) {
                        prune(Some(add), v, &p, false, pruned);
                    }
                } else if !node.preserve_unknown {
                    map.remove(&k);
                    pruned.push(p);
                }
            }
        }
        Value::Array(items) => {
            if node.is_some_and(|n| n.preserve_unknown && n.items.is_none()) {
                return;
            }
            let item_node = node.and_then(|n| n.items.as_deref());
            for (i, item) in items.iter_mut().enumerate() {
                prune(item_node, item, &index_path(path, i), false, pruned);
            }
        }
        _ => {}
    }
}

/// Drops `null` values of fields that are neither nullable nor defaulted.
fn drop_non_nullable_nulls(node: &Node, value: &mut Value) {
    match value {
        Value::Object(map) => {
            let keys: Vec<String> = map.keys().cloned().collect();
            for k in keys {
                let child = node.properties.get(&k).or_else(|| node.additional_schema());
                let Some(child) = child else { continue };
                let drop = map
                    .get(&k)
                    .is_some_and(|v| v.is_null() && !child.nullable && child.default.is_none());
                if drop {
                    map.remove(&k);
                } else if let Some(v) = map.get_mut(&k) {
                    drop_non_nullable_nulls(child, v);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_node) = &node.items {
                for item in items {
                    drop_non_nullable_nulls(item_node, item);
                }
            }
        }
        _ => {}
    }
}

/// Fills in `default`s of absent fields (and of non-nullable `null`s), in array items and map
/// values too; nested defaults apply only where their parent object exists (or was just
/// defaulted).
fn apply_defaults(node: &Node, value: &mut Value, root: bool) {
    match value {
        Value::Object(map) => {
            for (k, prop) in &node.properties {
                if root && keeps_object_meta(k) {
                    continue;
                }
                if let Some(d) = &prop.default {
                    let missing = match map.get(k) {
                        None => true,
                        Some(v) => v.is_null() && !prop.nullable,
                    };
                    if missing {
                        map.insert(k.clone(), d.clone());
                    }
                }
            }
            for (k, v) in map.iter_mut() {
                if root && keeps_object_meta(k) {
                    continue;
                }
                if let Some(prop) = node.properties.get(k) {
                    apply_defaults(prop, v, false);
                } else if let Some(add) = node.additional_schema() {
                    if v.is_null()
                        && !add.nullable
                        && let Some(d) = &add.default
                    {
                        *v = d.clone();
                    }
                    apply_defaults(add, v, false);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_node) = &node.items {
                for item in items {
                    if item.is_null()
                        && !item_node.nullable
                        && let Some(d) = &item_node.default
                    {
                        *item = d.clone();
                    }
                    apply_defaults(item_node, item, false);
                }
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------
// OpenAPI value validation
// ---------------------------------------------------------------------------------------------

/// The JSON type name the API server reports for a value.
fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn is_integer(n: &Number) -> bool {
    n.is_i64()
        || n.is_u64()
        || n.as_f64()
            .is_some_and(|f| f.fract() == 0.0 && f.is_finite())
}

fn type_ok(ty: &str, v: &Value) -> bool {
    match (ty, v) {
        ("object", Value::Object(_))
        | ("array", Value::Array(_))
        | ("string", Value::String(_))
        | ("boolean", Value::Bool(_))
        | ("number", Value::Number(_)) => true,
        ("integer", Value::Number(n)) => is_integer(n),
        _ => false,
    }
}

/// `<path> in body <rest>`, the wording of `OpenAPI` validation messages.
fn in_body(path: &str, rest: &str) -> String {
    if path.is_empty() {
        format!("in body {rest}")
    } else {
        format!("{path} in body {rest}")
    }
}

fn invalid(path: &str, value: Value, rest: &str) -> FieldError {
    FieldError::new(path, ErrorKind::Invalid, Some(value), in_body(path, rest))
}

/// Deep equality the way decoded JSON compares (integral floats equal integers).
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if let (Some(x), Some(y)) = (x.as_i64(), y.as_i64()) {
                x == y
            } else if let (Some(x), Some(y)) = (x.as_u64(), y.as_u64()) {
                x == y
            } else {
                x.as_f64() == y.as_f64()
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

/// The old counterpart of the item at `item` of a list: only list-type `map` items are
/// correlated (by their key fields), as the API server does for ratcheting and `oldSelf`.
fn correlate_item<'a>(node: &Node, item: &Value, old_list: Option<&'a Value>) -> Option<&'a Value> {
    if node.list_type.as_deref() != Some("map") || node.list_map_keys.is_empty() {
        return None;
    }
    let old_items = old_list?.as_array()?;
    let key_of = |v: &Value| -> Vec<Option<Value>> {
        node.list_map_keys
            .iter()
            .map(|k| v.get(k).cloned())
            .collect()
    };
    let wanted = key_of(item);
    old_items.iter().find(|o| {
        key_of(o).iter().zip(&wanted).all(|(a, b)| match (a, b) {
            (Some(a), Some(b)) => json_eq(a, b),
            (None, None) => true,
            _ => false,
        })
    })
}

/// Validates `value` against `node`. `old` is the correlated old value on update; when it
/// equals `value` the subtree is not checked (ratcheting).
fn validate(
    node: &Node,
    value: &Value,
    old: Option<&Value>,
    path: &str,
    errs: &mut Vec<FieldError>,
) {
    if old.is_some_and(|o| json_eq(o, value)) {
        return;
    }
    if value.is_null() {
        if node.nullable || (node.ty.is_empty() && !node.int_or_string) {
            return;
        }
        let wanted = if node.int_or_string {
            "integer,string"
        } else {
            node.ty.as_str()
        };
        errs.push(type_error(path, wanted, value));
        return;
    }
    if node.int_or_string {
        if !matches!(value, Value::String(_)) && !type_ok("integer", value) {
            errs.push(type_error(path, "integer,string", value));
            check_enum(node, value, path, errs);
            return;
        }
    } else if !node.ty.is_empty() && !type_ok(&node.ty, value) {
        errs.push(type_error(path, &node.ty, value));
        check_enum(node, value, path, errs);
        return;
    }
    check_junctors(node, value, path, errs);
    match value {
        Value::String(s) => check_string(node, s, path, errs),
        Value::Number(n) => check_number(node, n, path, errs),
        Value::Array(items) => check_array(node, items, old, path, errs),
        _ => {}
    }
    check_enum(node, value, path, errs);
    if let Value::Object(map) = value {
        check_object(node, map, old, path, errs);
    }
}

fn type_error(path: &str, wanted: &str, value: &Value) -> FieldError {
    let actual = type_name(value);
    FieldError::new(
        path,
        ErrorKind::TypeInvalid,
        Some(Value::String(actual.to_owned())),
        in_body(path, &format!("must be of type {wanted}: \"{actual}\"")),
    )
}

fn check_enum(node: &Node, value: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let Some(allowed) = &node.enumeration else {
        return;
    };
    if allowed.iter().any(|a| json_eq(a, value)) {
        return;
    }
    let listed: Vec<String> = allowed
        .iter()
        .map(|a| {
            let text = match a {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            crate::error::go_quote(&text)
        })
        .collect();
    errs.push(FieldError::new(
        path,
        ErrorKind::NotSupported,
        Some(value.clone()),
        if listed.is_empty() {
            String::new()
        } else {
            format!("supported values: {}", listed.join(", "))
        },
    ));
}

fn check_junctors(node: &Node, value: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let run = |branch: &Node| {
        let mut e = Vec::new();
        validate(branch, value, None, path, &mut e);
        e
    };
    let empty = || Value::String(String::new());
    if !node.all_of.is_empty() {
        let mut passed = 0;
        for b in &node.all_of {
            let e = run(b);
            if e.is_empty() {
                passed += 1;
            }
            errs.extend(e);
        }
        if passed != node.all_of.len() {
            let extra = if passed == 0 { ". None validated" } else { "" };
            errs.push(invalid(
                path,
                empty(),
                &format!("must validate all the schemas (allOf){extra}"),
            ));
        }
    }
    if !node.any_of.is_empty() {
        let results: Vec<Vec<FieldError>> = node.any_of.iter().map(run).collect();
        if !results.iter().any(Vec::is_empty) {
            errs.push(invalid(
                path,
                empty(),
                "must validate at least one schema (anyOf)",
            ));
            if let Some(best) = results.into_iter().min_by_key(Vec::len) {
                errs.extend(best);
            }
        }
    }
    if !node.one_of.is_empty() {
        let results: Vec<Vec<FieldError>> = node.one_of.iter().map(run).collect();
        let passed = results.iter().filter(|r| r.is_empty()).count();
        if passed == 0 {
            errs.push(invalid(
                path,
                empty(),
                "must validate one and only one schema (oneOf)",
            ));
            if let Some(best) = results.into_iter().min_by_key(Vec::len) {
                errs.extend(best);
            }
        } else if passed > 1 {
            errs.push(invalid(
                path,
                empty(),
                &format!(
                    "must validate one and only one schema (oneOf). Found {passed} valid \
                     alternatives"
                ),
            ));
        }
    }
    if let Some(not) = &node.not
        && run(not).is_empty()
    {
        errs.push(invalid(path, empty(), "must not validate the schema (not)"));
    }
}

fn check_string(node: &Node, s: &str, path: &str, errs: &mut Vec<FieldError>) {
    let len = s.chars().count() as u64;
    if let Some(max) = node.max_length
        && len > max
    {
        let unit = if max == 1 { "byte" } else { "bytes" };
        errs.push(FieldError::new(
            path,
            ErrorKind::TooLong,
            None,
            format!("may not be more than {max} {unit}"),
        ));
    }
    if let Some(min) = node.min_length
        && len < min
    {
        errs.push(invalid(
            path,
            Value::String(s.to_owned()),
            &format!("should be at least {min} chars long"),
        ));
    }
    if let Some((pattern, rx)) = &node.pattern
        && !rx.is_match(s)
    {
        errs.push(invalid(
            path,
            Value::String(s.to_owned()),
            &format!("should match '{pattern}'"),
        ));
    }
    if let Some(format) = &node.format
        && !formats::string_ok(format, s)
    {
        errs.push(FieldError::new(
            path,
            ErrorKind::TypeInvalid,
            Some(Value::String(s.to_owned())),
            in_body(
                path,
                &format!("must be of type {format}: {}", crate::error::go_quote(s)),
            ),
        ));
    }
}

fn check_number(node: &Node, n: &Number, path: &str, errs: &mut Vec<FieldError>) {
    let shown = Value::Number(n.clone());
    if let Some(format) = &node.format
        && !formats::number_ok(format, n)
    {
        errs.push(FieldError::new(
            path,
            ErrorKind::TypeInvalid,
            Some(shown.clone()),
            in_body(
                path,
                &format!("must be of type {format}: \"{}\"", go_number(n)),
            ),
        ));
    }
    let Some(f) = n.as_f64() else { return };
    if let Some(m) = node.multiple_of
        && m != 0.0
    {
        let q = f / m;
        if (q - q.round()).abs() > 1e-9 * q.abs().max(1.0) {
            errs.push(invalid(
                path,
                shown.clone(),
                &format!("should be a multiple of {}", go_float(m)),
            ));
        }
    }
    if let Some(max) = node.maximum {
        if node.exclusive_maximum && f >= max {
            errs.push(invalid(
                path,
                shown.clone(),
                &format!("should be less than {}", go_float(max)),
            ));
        } else if f > max {
            errs.push(invalid(
                path,
                shown.clone(),
                &format!("should be less than or equal to {}", go_float(max)),
            ));
        }
    }
    if let Some(min) = node.minimum {
        if node.exclusive_minimum && f <= min {
            errs.push(invalid(
                path,
                shown,
                &format!("should be greater than {}", go_float(min)),
            ));
        } else if f < min {
            errs.push(invalid(
                path,
                shown,
                &format!("should be greater than or equal to {}", go_float(min)),
            ));
        }
    }
}

fn check_array(
    node: &Node,
    items: &[Value],
    old: Option<&Value>,
    path: &str,
    errs: &mut Vec<FieldError>,
) {
    let size = items.len() as u64;
    if let Some(min) = node.min_items
        && size < min
    {
        errs.push(invalid(
            path,
            Value::from(size),
            &format!("should have at least {min} items"),
        ));
    }
    if let Some(max) = node.max_items
        && size > max
    {
        let unit = if max == 1 { "item" } else { "items" };
        errs.push(FieldError::new(
            path,
            ErrorKind::TooMany,
            Some(Value::from(size)),
            format!("must have at most {max} {unit}"),
        ));
    }
    if let Some(item_node) = &node.items {
        for (i, item) in items.iter().enumerate() {
            let old_item = correlate_item(node, item, old);
            validate(item_node, item, old_item, &index_path(path, i), errs);
        }
    }
}

fn check_object(
    node: &Node,
    map: &Map<String, Value>,
    old: Option<&Value>,
    path: &str,
    errs: &mut Vec<FieldError>,
) {
    let size = map.len() as u64;
    if let Some(max) = node.max_properties
        && size > max
    {
        let unit = if max == 1 { "item" } else { "items" };
        errs.push(FieldError::new(
            path,
            ErrorKind::TooMany,
            Some(Value::from(size)),
            format!("must have at most {max} {unit}"),
        ));
    }
    if let Some(min) = node.min_properties
        && size < min
    {
        errs.push(invalid(
            path,
            Value::from(size),
            &format!("should have at least {min} properties"),
        ));
    }
    for r in &node.required {
        if !map.contains_key(r) {
            errs.push(FieldError::new(
                child_path(path, r),
                ErrorKind::Required,
                None,
                "",
            ));
        }
    }
    for (k, v) in sorted(map) {
        let child = node.properties.get(k).or_else(|| node.additional_schema());
        if let Some(child) = child {
            let old_child = old.and_then(|o| o.get(k));
            validate(child, v, old_child, &child_path(path, k), errs);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// x-kubernetes-list-type invariants
// ---------------------------------------------------------------------------------------------

fn list_invariants(node: &Node, value: &Value, path: &str, errs: &mut Vec<FieldError>) {
    match value {
        Value::Object(map) => {
            for (k, v) in sorted(map) {
                if let Some(child) = node.properties.get(k).or_else(|| node.additional_schema()) {
                    list_invariants(child, v, &child_path(path, k), errs);
                }
            }
        }
        Value::Array(items) => {
            match node.list_type.as_deref() {
                Some("set") => {
                    for (i, item) in items.iter().enumerate() {
                        if items[..i].iter().any(|b| json_eq(item, b)) {
                            errs.push(FieldError::new(
                                index_path(path, i),
                                ErrorKind::Duplicate,
                                Some(item.clone()),
                                "",
                            ));
                        }
                    }
                }
                Some("map") => list_map_invariants(node, items, path, errs),
                _ => {}
            }
            if let Some(item_node) = &node.items {
                for (i, item) in items.iter().enumerate() {
                    list_invariants(item_node, item, &index_path(path, i), errs);
                }
            }
        }
        _ => {}
    }
}

fn list_map_invariants(node: &Node, items: &[Value], path: &str, errs: &mut Vec<FieldError>) {
    for (i, item) in items.iter().enumerate() {
        if !item.is_object() && !item.is_null() {
            errs.push(FieldError::new(
                index_path(path, i),
                ErrorKind::Invalid,
                Some(item.clone()),
                "must be an object for an array of list-type map",
            ));
            return;
        }
    }
    let key_default = |k: &str| {
        node.items
            .as_ref()
            .and_then(|it| it.properties.get(k))
            .and_then(|p| p.default.clone())
    };
    let keys_of = |item: &Value| -> Vec<Option<Value>> {
        node.list_map_keys
            .iter()
            .map(|k| item.get(k).cloned().or_else(|| key_default(k)))
            .collect()
    };
    let mut seen: Vec<Vec<Option<Value>>> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let key = keys_of(item);
        let dup = seen.iter().any(|s| {
            s.iter().zip(&key).all(|(a, b)| match (a, b) {
                (Some(a), Some(b)) => json_eq(a, b),
                (None, None) => true,
                _ => false,
            })
        });
        if dup {
            let shown: Map<String, Value> = node
                .list_map_keys
                .iter()
                .filter_map(|k| item.get(k).map(|v| (k.clone(), v.clone())))
                .collect();
            errs.push(FieldError::new(
                index_path(path, i),
                ErrorKind::Duplicate,
                Some(Value::Object(shown)),
                "",
            ));
        } else {
            seen.push(key);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// x-kubernetes-validations (CEL)
// ---------------------------------------------------------------------------------------------

fn join_rule_path(path: &str, rel: &str) -> String {
    let rel = rel.strip_prefix('.').unwrap_or(rel);
    if rel.is_empty() {
        path.to_owned()
    } else if path.is_empty() || rel.starts_with('[') {
        format!("{path}{rel}")
    } else {
        format!("{path}.{rel}")
    }
}

/// Evaluates the CEL rules of `node` and below against `value`. `old` is the correlated old
/// value (properties by name, map values by key, list-type `map` items by their keys).
fn run_rules(
    node: &Node,
    value: &Value,
    old: Option<&Value>,
    path: &str,
    errs: &mut Vec<FieldError>,
) {
    if value.is_null() {
        return;
    }
    if let Some(rules) = &node.rules {
        let unchanged = old.is_some_and(|o| json_eq(o, value));
        let compiled = if unchanged {
            rules.transition.as_ref()
        } else {
            Some(&rules.all)
        };
        if let Some(compiled) = compiled
            && let Err(found) = kube_cel::validate_compiled(compiled, value, old)
        {
            for e in &found {
                errs.push(rule_error(node, rules, e, path));
            }
        }
    }
    match value {
        Value::Object(map) => {
            for (k, v) in sorted(map) {
                if let Some(child) = node.properties.get(k).or_else(|| node.additional_schema()) {
                    let old_child = old.and_then(|o| o.get(k));
                    run_rules(child, v, old_child, &child_path(path, k), errs);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_node) = &node.items {
                for (i, item) in items.iter().enumerate() {
                    let old_item = correlate_item(node, item, old);
                    run_rules(item_node, item, old_item, &index_path(path, i), errs);
                }
            }
        }
        _ => {}
    }
}

fn rule_error(node: &Node, rules: &Rules, e: &kube_cel::ValidationError, path: &str) -> FieldError {
    let at = join_rule_path(path, &e.field_path);
    if e.kind != kube_cel::ErrorKind::ValidationFailure {
        return FieldError::new(
            at,
            ErrorKind::Invalid,
            Some(node.type_value()),
            e.message.clone(),
        );
    }
    let mut message = e.message.trim().to_owned();
    if message.is_empty() {
        let fallback = rules
            .messages
            .iter()
            .find(|(rule, _)| *rule == e.rule)
            .and_then(|(_, m)| m.as_deref())
            .map(str::trim)
            .filter(|m| !m.is_empty());
        message = match fallback {
            Some(m) => m.to_owned(),
            None => format!("failed rule: {}", e.rule.trim()),
        };
    }
    match e.reason.as_deref() {
        Some("FieldValueForbidden") => FieldError::new(at, ErrorKind::Forbidden, None, message),
        Some("FieldValueRequired") => FieldError::new(at, ErrorKind::Required, None, message),
        Some("FieldValueDuplicate") => {
            FieldError::new(at, ErrorKind::Duplicate, Some(node.type_value()), "")
        }
        _ => FieldError::new(at, ErrorKind::Invalid, Some(node.type_value()), message),
    }
}

// ---------------------------------------------------------------------------------------------
// Checking `default`s when a schema is accepted
// ---------------------------------------------------------------------------------------------

/// Problems with the `default`s of a structural schema: a default must survive pruning and
/// must pass the validations (`OpenAPI` and CEL) of its own node, as the API server demands
/// before it accepts a CRD. Paths are written like those of `structural_problems`.
pub(crate) fn default_problems(schema: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    walk_defaults(schema, "openAPIV3Schema", true, &mut problems);
    problems
}

fn walk_defaults(schema: &Value, path: &str, root: bool, problems: &mut Vec<String>) {
    let Some(obj) = schema.as_object() else {
        return;
    };
    if let Some(default) = obj.get("default")
        && let Ok(node) = Node::compile(schema, path)
    {
        check_default(&node, default, path, problems);
    }
    if let Some(props) = obj.get("properties").and_then(Value::as_object) {
        for (name, child) in sorted(props) {
            if root && name == "metadata" {
                continue;
            }
            walk_defaults(
                child,
                &format!("{path}.properties[{name}]"),
                false,
                problems,
            );
        }
    }
    if let Some(add) = obj.get("additionalProperties") {
        walk_defaults(
            add,
            &format!("{path}.additionalProperties"),
            false,
            problems,
        );
    }
    if let Some(items) = obj.get("items") {
        walk_defaults(items, &format!("{path}.items"), false, problems);
    }
}

fn check_default(node: &Node, default: &Value, path: &str, problems: &mut Vec<String>) {
    let shown = crate::error::go_value(default);
    let mut value = default.clone();
    let mut pruned = Vec::new();
    prune(Some(node), &mut value, "", false, &mut pruned);
    if !pruned.is_empty() {
        problems.push(format!(
            "{path}.default: Invalid value: {shown}: must not have unknown fields: {}",
            pruned.join(", ")
        ));
        return;
    }
    drop_non_nullable_nulls(node, &mut value);
    apply_defaults(node, &mut value, false);
    let mut errs = Vec::new();
    validate(node, &value, None, "", &mut errs);
    list_invariants(node, &value, "", &mut errs);
    if errs.is_empty() {
        run_rules(node, &value, None, "", &mut errs);
    }
    for e in errs {
        let reason = if e.path.is_empty() {
            e.body()
        } else {
            e.to_string()
        };
        problems.push(format!("{path}.default: Invalid value: {shown}: {reason}"));
    }
}
