//! Server-side apply and `managedFields` bookkeeping: field sets in the `FieldsV1` format,
//! ownership per manager and operation, conflicts, and removal of fields a manager stops
//! applying.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use crate::error::{ApiError, Cause};
use crate::patch::{ListKind, builtin_list_kind};
use crate::registry::ResourceDef;
use crate::state::now;

/// A field path in `FieldsV1` element notation (`f:spec`, `k:{"name":"a"}`, `v:"x"`).
pub type Path = Vec<String>;

/// A set of owned field paths.
pub type FieldSet = BTreeSet<Path>;

/// One field owned by another manager whose value the apply would change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The other manager.
    pub manager: String,
    /// Dotted path such as `.spec.replicas`.
    pub field: String,
}

fn list_kind(def: &ResourceDef, path: &[String], items: &[Value]) -> ListKind {
    let last_field = path
        .iter()
        .rev()
        .find_map(|p| p.strip_prefix("f:"))
        .unwrap_or_default();
    if def.is_builtin() || path.first().map(String::as_str) == Some("f:metadata") {
        return builtin_list_kind(last_field, items);
    }
    let Some(schema) = def.crd.as_ref().and_then(|c| c.schema.as_ref()) else {
        return ListKind::Atomic;
    };
    let mut node = schema;
    for p in path {
        let next = if let Some(f) = p.strip_prefix("f:") {
            node.get("properties")
                .and_then(|ps| ps.get(f))
                .or_else(|| node.get("additionalProperties").filter(|a| a.is_object()))
        } else {
            node.get("items")
        };
        match next {
            Some(n) => node = n,
            None => return ListKind::Atomic,
        }
    }
    match node.get("x-kubernetes-list-type").and_then(Value::as_str) {
        Some("map") => ListKind::Map(
            node.get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|k| k.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
        ),
        Some("set") => ListKind::Set,
        _ => ListKind::Atomic,
    }
}

fn key_token(item: &Value, keys: &[String]) -> String {
    let mut m = Map::new();
    for k in keys {
        if let Some(v) = item.get(k) {
            m.insert(k.clone(), v.clone());
        }
    }
    format!("k:{}", Value::Object(m))
}

/// Whether `candidate` has the key values `item` has for the list's map keys (the keys
/// `item` lacks are not compared, as in a `k:` token built from `item`).
fn same_key(candidate: &Value, item: &Value, keys: &[String]) -> bool {
    keys.iter().all(|k| {
        item.get(k)
            .is_none_or(|want| candidate.get(k) == Some(want))
    })
}

/// Collects the field paths of `v` below `path` into `out`. With `old` (the value at the
/// same path in an older version of the object) only the paths whose value differs from
/// the older version's are collected, and subtrees equal in both are skipped; without it,
/// every path. An item of a map list is compared with the older list's item of the same
/// key.
fn walk(def: &ResourceDef, v: &Value, old: Option<&Value>, path: &mut Path, out: &mut FieldSet) {
    if old == Some(v) {
        return;
    }
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, x) in m {
                path.push(format!("f:{k}"));
                walk(def, x, old.and_then(|o| o.get(k)), path, out);
                path.pop();
            }
        }
        Value::Array(items) if !items.is_empty() => match list_kind(def, path, items) {
            ListKind::Map(keys) if !keys.is_empty() => {
                let old_items = old.and_then(Value::as_array);
                for item in items {
                    let old_item =
                        old_items.and_then(|a| a.iter().find(|i| same_key(i, item, &keys)));
                    path.push(key_token(item, &keys));
                    if old_item != Some(item) {
                        out.insert(path.clone());
                    }
                    walk(def, item, old_item, path, out);
                    path.pop();
                }
            }
            ListKind::Set => {
                let old_items = old.and_then(Value::as_array);
                for item in items {
                    if old_items.is_some_and(|a| a.contains(item)) {
                        continue;
                    }
                    path.push(format!("v:{item}"));
                    out.insert(path.clone());
                    path.pop();
                }
            }
            _ => {
                out.insert(path.clone());
            }
        },
        _ => {
            out.insert(path.clone());
        }
    }
}

/// The fields an object sets, excluding identity and system metadata; `status_only` selects
/// the status subresource's view, otherwise status is left out when it is a subresource.
pub fn fields_of(def: &ResourceDef, v: &Value, status_only: bool) -> FieldSet {
    collect(def, v, None, status_only)
}

/// The paths of [`fields_of`]`(new)` whose value differs from the one at the same path in
/// `old`, found in one walk over both versions.
fn changed_fields(def: &ResourceDef, old: &Value, new: &Value, status_only: bool) -> FieldSet {
    collect(def, new, Some(old), status_only)
}

/// [`fields_of`], or with `old` only the paths that changed since it (see [`walk`]).
fn collect(def: &ResourceDef, v: &Value, old: Option<&Value>, status_only: bool) -> FieldSet {
    let mut out = FieldSet::new();
    let Some(m) = v.as_object() else {
        return out;
    };
    let mut path = Vec::new();
    for (k, x) in m {
        match k.as_str() {
            "apiVersion" | "kind" => continue,
            "status" if def.status_subresource && !status_only => continue,
            "status" => {}
            _ if status_only => continue,
            "metadata" => {
                let old_meta = old.and_then(|o| o.get("metadata"));
                for mk in ["labels", "annotations", "finalizers", "ownerReferences"] {
                    if let Some(mv) = x.get(mk) {
                        path.push("f:metadata".into());
                        path.push(format!("f:{mk}"));
                        walk(
                            def,
                            mv,
                            old_meta.and_then(|m| m.get(mk)),
                            &mut path,
                            &mut out,
                        );
                        path.clear();
                    }
                }
                continue;
            }
            _ => {}
        }
        path.push(format!("f:{k}"));
        walk(def, x, old.and_then(|o| o.get(k)), &mut path, &mut out);
        path.clear();
    }
    out
}

/// The value at a field path.
pub fn get_at<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = v;
    for p in path {
        cur = step(cur, p)?;
    }
    Some(cur)
}

/// The key values of a `k:` path token (`k:{"name":"a"}` → `{"name":"a"}`), parsed once
/// per lookup rather than once per list item.
fn parse_key(key_json: &str) -> Option<Map<String, Value>> {
    serde_json::from_str(key_json).ok()
}

/// Whether a list item has the key values of a parsed `k:` token.
fn has_key(item: &Value, key: &Map<String, Value>) -> bool {
    key.iter().all(|(k, v)| item.get(k) == Some(v))
}

fn step<'a>(cur: &'a Value, p: &str) -> Option<&'a Value> {
    if let Some(f) = p.strip_prefix("f:") {
        cur.get(f)
    } else if let Some(k) = p.strip_prefix("k:") {
        let key = parse_key(k)?;
        cur.as_array()?.iter().find(|i| has_key(i, &key))
    } else if let Some(val) = p.strip_prefix("v:") {
        let want: Value = serde_json::from_str(val).ok()?;
        cur.as_array()?.iter().find(|i| **i == want)
    } else if let Some(i) = p.strip_prefix("i:") {
        cur.as_array()?.get(i.parse::<usize>().ok()?)
    } else {
        None
    }
}

fn remove_at(v: &mut Value, path: &[String]) {
    let Some((last, parent)) = path.split_last() else {
        return;
    };
    let mut cur = v;
    for p in parent {
        let next = if let Some(f) = p.strip_prefix("f:") {
            cur.get_mut(f)
        } else if let Some(k) = p.strip_prefix("k:") {
            let key = parse_key(k);
            cur.as_array_mut().and_then(|a| {
                let key = key.as_ref()?;
                a.iter_mut().find(|i| has_key(i, key))
            })
        } else {
            None
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    if let Some(f) = last.strip_prefix("f:") {
        if let Some(m) = cur.as_object_mut() {
            m.remove(f);
        }
    } else if let Some(k) = last.strip_prefix("k:") {
        if let (Some(a), Some(key)) = (cur.as_array_mut(), parse_key(k)) {
            a.retain(|i| !has_key(i, &key));
        }
    } else if let Some(val) = last.strip_prefix("v:")
        && let (Some(a), Ok(want)) = (cur.as_array_mut(), serde_json::from_str::<Value>(val))
    {
        a.retain(|i| *i != want);
    }
}

/// Converts a field set into the `fieldsV1` tree.
pub fn to_fields_v1(set: &FieldSet) -> Value {
    fn insert_path(node: &mut Map<String, Value>, p: &[String]) {
        if let Some((first, rest)) = p.split_first() {
            let child = node
                .entry(first.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(m) = child {
                insert_path(m, rest);
            }
        }
    }
    // Mark interior nodes that are themselves owned.
    fn mark(node: &mut Map<String, Value>, path: &mut Path, set: &FieldSet) {
        for (k, v) in node.iter_mut() {
            path.push(k.clone());
            if let Some(m) = v.as_object_mut()
                && !m.is_empty()
            {
                if set.contains(path) {
                    m.insert(".".into(), json!({}));
                }
                mark(m, path, set);
            }
            path.pop();
        }
    }
    let mut root = Map::new();
    for p in set {
        insert_path(&mut root, p);
    }
    mark(&mut root, &mut Vec::new(), set);
    Value::Object(root)
}

/// Parses a `fieldsV1` tree into a field set.
pub fn from_fields_v1(v: &Value) -> FieldSet {
    fn go(v: &Value, path: &mut Path, out: &mut FieldSet) {
        let Some(m) = v.as_object() else {
            return;
        };
        if m.is_empty() {
            out.insert(path.clone());
            return;
        }
        for (k, c) in m {
            if k == "." {
                out.insert(path.clone());
                continue;
            }
            path.push(k.clone());
            go(c, path, out);
            path.pop();
        }
    }
    let mut out = FieldSet::new();
    go(v, &mut Vec::new(), &mut out);
    out
}

/// Renders a path like the API server does in conflict messages (`.spec.replicas`).
pub fn dotted(path: &[String]) -> String {
    let mut s = String::new();
    for p in path {
        if let Some(f) = p.strip_prefix("f:") {
            s.push('.');
            s.push_str(f);
        } else if let Some(k) = p.strip_prefix("k:") {
            s.push('[');
            s.push_str(
                k.trim_start_matches('{')
                    .trim_end_matches('}')
                    .replace(':', "=")
                    .replace('"', "")
                    .as_str(),
            );
            s.push(']');
        } else if let Some(v) = p.strip_prefix("v:") {
            s.push('[');
            s.push_str(v);
            s.push(']');
        }
    }
    s
}

/// One `managedFields` entry: the entry as stored, its field set once read from the
/// `fieldsV1` tree (`parsed`), and whether the set changed since it was read (only changed
/// sets are written back as new `fieldsV1` trees).
#[derive(Debug, Clone)]
struct Entry {
    raw: Value,
    set: FieldSet,
    parsed: bool,
    changed: bool,
}

impl Entry {
    /// Reads the field set from the `fieldsV1` tree if that has not been done.
    fn parse(&mut self) {
        if !self.parsed {
            self.set = from_fields_v1(&self.raw["fieldsV1"]);
            self.parsed = true;
        }
    }

    /// Whether the entry owns any of `paths`, looked up in its `fieldsV1` tree without
    /// reading the whole set.
    fn owns_any<'a>(&self, mut paths: impl Iterator<Item = &'a Path>) -> bool {
        if self.parsed {
            return paths.any(|p| self.set.contains(p));
        }
        let tree = &self.raw["fieldsV1"];
        paths.any(|p| {
            p.iter()
                .try_fold(tree, |node, k| node.get(k))
                .and_then(Value::as_object)
                .is_some_and(|m| m.is_empty() || m.contains_key("."))
        })
    }
}

/// Takes the `managedFields` entries out of `v` (no copies of their `fieldsV1` trees);
/// [`write_entries`] puts them back. With `parse`, every entry's field set is read;
/// otherwise only those of entries without a `fieldsV1` tree, and the others when needed
/// ([`Entry::parse`]).
fn take_entries(v: &mut Value, parse: bool) -> Vec<Entry> {
    let taken = v
        .get_mut("metadata")
        .and_then(Value::as_object_mut)
        .and_then(|m| m.remove("managedFields"));
    match taken {
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|raw| {
                let mut e = Entry {
                    raw,
                    set: FieldSet::new(),
                    parsed: false,
                    changed: false,
                };
                if parse || !e.raw["fieldsV1"].is_object() {
                    e.parse();
                }
                e
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn is_entry(e: &Entry, manager: &str, op: &str, status: bool) -> bool {
    e.raw["manager"] == manager
        && e.raw["operation"] == op
        && (e.raw["subresource"].as_str() == Some("status")) == status
}

fn write_entries(v: &mut Value, list: Vec<Entry>) {
    let arr: Vec<Value> = list
        .into_iter()
        .filter(|e| !e.parsed || !e.set.is_empty())
        .map(|mut e| {
            if e.changed || !e.raw["fieldsV1"].is_object() {
                e.raw["fieldsV1"] = to_fields_v1(&e.set);
            }
            e.raw["fieldsType"] = json!("FieldsV1");
            e.raw
        })
        .collect();
    if arr.is_empty() {
        if let Some(m) = v["metadata"].as_object_mut() {
            m.remove("managedFields");
        }
    } else {
        v["metadata"]["managedFields"] = Value::Array(arr);
    }
}

fn new_entry(def: &ResourceDef, manager: &str, op: &str, status: bool, set: FieldSet) -> Entry {
    let mut raw = json!({
        "manager": manager,
        "operation": op,
        "apiVersion": def.api_version(),
        "time": now(),
        "fieldsType": "FieldsV1",
    });
    if status {
        raw["subresource"] = json!("status");
    }
    Entry {
        raw,
        set,
        parsed: true,
        changed: true,
    }
}

/// Records the fields an update (create, PUT, non-apply PATCH) changed as owned by
/// `manager`, and takes them away from other managers.
pub fn record_update(
    def: &ResourceDef,
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    status: bool,
) {
    let new_set = fields_of(def, new, status);
    let (changed, removed): (FieldSet, FieldSet) = match old {
        None => (new_set.clone(), FieldSet::new()),
        Some(o) => {
            let old_set = fields_of(def, o, status);
            let changed = changed_fields(def, o, new, status);
            let removed = old_set.difference(&new_set).cloned().collect();
            (changed, removed)
        }
    };
    if changed.is_empty() && removed.is_empty() {
        return;
    }
    let mut list = take_entries(new, false);
    for e in &mut list {
        if !e.owns_any(changed.iter().chain(&removed)) {
            continue;
        }
        e.parse();
        let before = e.set.len();
        e.set
            .retain(|p| !changed.contains(p) && !removed.contains(p));
        e.changed |= e.set.len() != before;
    }
    if !changed.is_empty() {
        if let Some(e) = list
            .iter_mut()
            .find(|e| is_entry(e, manager, "Update", status))
        {
            e.parse();
            e.set.extend(changed);
            e.changed = true;
            e.raw["time"] = json!(now());
            e.raw["apiVersion"] = json!(def.api_version());
        } else {
            list.push(new_entry(def, manager, "Update", status, changed));
        }
    }
    write_entries(new, list);
}

/// Records a create-on-apply: the manager owns every field of the applied object.
pub fn record_apply(def: &ResourceDef, new: &mut Value, manager: &str, status: bool) {
    let set = fields_of(def, new, status);
    write_entries(new, vec![new_entry(def, manager, "Apply", status, set)]);
}

fn merge_apply(def: &ResourceDef, live: &mut Value, applied: &Value, path: &mut Path) {
    match (live, applied) {
        (Value::Object(l), Value::Object(a)) => {
            for (k, av) in a {
                if av.is_null() {
                    l.remove(k);
                    continue;
                }
                path.push(format!("f:{k}"));
                match l.get_mut(k) {
                    Some(lv) => merge_apply(def, lv, av, path),
                    None => {
                        l.insert(k.clone(), av.clone());
                    }
                }
                path.pop();
            }
        }
        (Value::Array(l), Value::Array(a)) => match list_kind(def, path, a) {
            ListKind::Map(keys) if !keys.is_empty() => {
                for item in a {
                    path.push(key_token(item, &keys));
                    match l.iter_mut().find(|i| same_key(i, item, &keys)) {
                        Some(li) => merge_apply(def, li, item, path),
                        None => l.push(item.clone()),
                    }
                    path.pop();
                }
            }
            ListKind::Set => {
                for item in a {
                    if !l.contains(item) {
                        l.push(item.clone());
                    }
                }
            }
            _ => l.clone_from(a),
        },
        (l, a) => *l = a.clone(),
    }
}

/// Server-side apply of `applied` by `manager` onto `live`. Returns the new object with
/// updated `managedFields`, or the conflicts when `force` is false.
#[allow(clippy::too_many_lines)]
pub fn apply(
    def: &ResourceDef,
    live: &Value,
    applied: &Value,
    manager: &str,
    force: bool,
    status: bool,
) -> Result<Value, Vec<Conflict>> {
    let mut applied = applied.clone();
    if let Some(m) = applied.as_object_mut() {
        m.remove("apiVersion");
        m.remove("kind");
        if status {
            m.retain(|k, _| k == "status" || k == "metadata");
        } else if def.status_subresource {
            m.remove("status");
        }
    }
    if let Some(md) = applied.get_mut("metadata").and_then(Value::as_object_mut) {
        md.retain(|k, _| {
            matches!(
                k.as_str(),
                "labels"
                    | "annotations"
                    | "finalizers"
                    | "ownerReferences"
                    | "resourceVersion"
                    | "name"
                    | "namespace"
            )
        });
        if status {
            md.retain(|k, _| k == "resourceVersion");
        }
    }
    let new_set = fields_of(def, &applied, status);
    let mut merged = live.clone();
    let mut list = take_entries(&mut merged, true);
    let mut conflicts = Vec::new();
    for e in &mut list {
        if is_entry(e, manager, "Apply", status) {
            continue;
        }
        if (e.raw["subresource"].as_str() == Some("status")) != status {
            continue;
        }
        let mut taken = Vec::new();
        for p in e.set.intersection(&new_set) {
            let lv = get_at(live, p);
            let av = get_at(&applied, p);
            let leaf =
                av.is_some_and(|v| !v.is_object() || v.as_object().is_some_and(Map::is_empty));
            if leaf && lv.is_some() && lv != av {
                if force {
                    taken.push(p.clone());
                } else {
                    conflicts.push(Conflict {
                        manager: e.raw["manager"].as_str().unwrap_or_default().to_string(),
                        field: dotted(p),
                    });
                }
            }
        }
        for p in taken {
            e.set.remove(&p);
            e.changed = true;
        }
    }
    if !conflicts.is_empty() {
        return Err(conflicts);
    }
    if let Some(rv) = applied["metadata"].get("resourceVersion") {
        merged["metadata"]["resourceVersion"] = rv.clone();
    }
    if let Some(md) = applied.get_mut("metadata").and_then(Value::as_object_mut) {
        md.remove("resourceVersion");
        md.remove("name");
        md.remove("namespace");
    }
    merge_apply(def, &mut merged, &applied, &mut Vec::new());
    let prev: FieldSet = list
        .iter()
        .find(|e| is_entry(e, manager, "Apply", status))
        .map(|e| e.set.clone())
        .unwrap_or_default();
    // Parents first: a keyed list item goes as a whole (removing its key fields first would
    // leave an empty item behind that no key finds any more); a parent is only removed when no
    // field below it is still applied or owned by someone else, and what is below a removed
    // parent is then simply not found.
    let mut removed: Vec<&Path> = prev.difference(&new_set).collect();
    removed.sort_by_key(|p| p.len());
    for p in removed {
        let owned_by_other = list.iter().any(|e| {
            !is_entry(e, manager, "Apply", status) && e.set.iter().any(|q| q.starts_with(p))
        });
        let still_applied = new_set.iter().any(|q| q.starts_with(p));
        if !owned_by_other && !still_applied {
            remove_at(&mut merged, p);
        }
    }
    match list
        .iter_mut()
        .find(|e| is_entry(e, manager, "Apply", status))
    {
        Some(e) => {
            if e.set != new_set {
                e.raw["time"] = json!(now());
                e.changed = true;
            }
            e.set.clone_from(&new_set);
            e.raw["apiVersion"] = json!(def.api_version());
        }
        None => list.push(new_entry(def, manager, "Apply", status, new_set)),
    }
    write_entries(&mut merged, list);
    Ok(merged)
}

/// The 409 an apply with conflicts answers with.
pub fn conflict_error(def: &ResourceDef, name: &str, conflicts: &[Conflict]) -> ApiError {
    let n = conflicts.len();
    let lines: Vec<String> = conflicts
        .iter()
        .map(|c| format!("conflict with \"{}\": {}", c.manager, c.field))
        .collect();
    let msg = if n == 1 {
        format!("Apply failed with 1 conflict: {}", lines.join(""))
    } else {
        format!("Apply failed with {n} conflicts: {}", lines.join("\n"))
    };
    let mut e = ApiError::new(409, "Conflict", msg);
    e.name = Some(name.to_string());
    e.group = Some(def.group.clone());
    e.kind = Some(def.plural.clone());
    e.causes = conflicts
        .iter()
        .map(|c| Cause {
            reason: "FieldManagerConflict".into(),
            message: format!("conflict with \"{}\"", c.manager),
            field: c.field.clone(),
        })
        .collect();
    e
}

/// Whether two objects are equal apart from `managedFields` timestamps.
pub fn same_ignoring_times(a: &Value, b: &Value) -> bool {
    /// Two objects' maps are equal apart from `metadata`, compared by `same_metadata`.
    fn same_object(a: &Value, b: &Value) -> bool {
        let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
            return a == b;
        };
        a.len() == b.len()
            && a.iter().all(|(k, av)| {
                b.get(k).is_some_and(|bv| {
                    if k == "metadata" {
                        same_metadata(av, bv)
                    } else {
                        av == bv
                    }
                })
            })
    }
    fn same_metadata(a: &Value, b: &Value) -> bool {
        let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
            return a == b;
        };
        a.len() == b.len()
            && a.iter().all(|(k, av)| {
                b.get(k).is_some_and(|bv| {
                    if k == "managedFields" {
                        same_entries(av, bv)
                    } else {
                        av == bv
                    }
                })
            })
    }
    fn same_entries(a: &Value, b: &Value) -> bool {
        let (Some(a), Some(b)) = (a.as_array(), b.as_array()) else {
            return a == b;
        };
        a.len() == b.len()
            && a.iter().zip(b).all(|(ae, be)| {
                let (Some(ae), Some(be)) = (ae.as_object(), be.as_object()) else {
                    return ae == be;
                };
                let untimed = |m: &'_ serde_json::Map<String, Value>| {
                    m.iter().filter(|(k, _)| k.as_str() != "time").count()
                };
                untimed(ae) == untimed(be)
                    && ae
                        .iter()
                        .filter(|(k, _)| k.as_str() != "time")
                        .all(|(k, v)| be.get(k) == Some(v))
            })
    }
    same_object(a, b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::builtin_resources;

    fn builtin_def(plural: &str) -> ResourceDef {
        builtin_resources()
            .into_iter()
            .find(|d| d.plural == plural)
            .unwrap()
    }

    fn deploy_def() -> ResourceDef {
        builtin_def("deployments")
    }

    /// The definition `changed_fields` implements in one walk: every path of the new
    /// version whose value, looked up path by path, differs in the old one.
    fn changed_by_lookup(def: &ResourceDef, old: &Value, new: &Value, status: bool) -> FieldSet {
        fields_of(def, new, status)
            .into_iter()
            .filter(|p| get_at(old, p) != get_at(new, p))
            .collect()
    }

    /// A pod with keyed lists, a set, an atomic list and status, for diffs.
    fn sample_pod() -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "labels": {"a": "1", "b": "2"},
                         "finalizers": ["x", "y"],
                         "ownerReferences": [{"uid": "u1", "name": "j", "kind": "Job"}]},
            "spec": {
                "nodeName": "",
                "containers": [
                    {"name": "runner", "image": "i:1",
                     "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                     "ports": [{"containerPort": 8080}]},
                    {"name": "side", "image": "s:1", "args": ["--x", "1"]}
                ],
                "volumes": [{"name": "v", "emptyDir": {}}]
            },
            "status": {"phase": "Pending",
                       "conditions": [{"type": "Ready", "status": "False"}]}
        })
    }

    /// An edit of a sample object.
    type Edit = Box<dyn Fn(&mut Value)>;

    /// Named edits of [`sample_pod`], one kind of change each.
    fn sample_edits() -> Vec<(&'static str, Edit)> {
        vec![
            ("nothing", Box::new(|_| {})),
            (
                "a label value",
                Box::new(|v| v["metadata"]["labels"]["a"] = json!("9")),
            ),
            (
                "a label added",
                Box::new(|v| v["metadata"]["labels"]["c"] = json!("3")),
            ),
            (
                "a finalizer added",
                Box::new(|v| v["metadata"]["finalizers"] = json!(["x", "y", "z"])),
            ),
            (
                "finalizers reordered",
                Box::new(|v| v["metadata"]["finalizers"] = json!(["y", "x"])),
            ),
            (
                "an owner changed",
                Box::new(|v| v["metadata"]["ownerReferences"][0]["name"] = json!("k")),
            ),
            (
                "a scalar in spec",
                Box::new(|v| v["spec"]["nodeName"] = json!("node-1")),
            ),
            (
                "an env value",
                Box::new(|v| v["spec"]["containers"][0]["env"][1]["value"] = json!("3")),
            ),
            (
                "an env item added",
                Box::new(|v| {
                    v["spec"]["containers"][0]["env"]
                        .as_array_mut()
                        .unwrap()
                        .push(json!({"name": "C", "value": "c"}));
                }),
            ),
            (
                "containers reordered",
                Box::new(|v| v["spec"]["containers"].as_array_mut().unwrap().reverse()),
            ),
            (
                "an atomic list",
                Box::new(|v| v["spec"]["containers"][1]["args"] = json!(["--x", "2"])),
            ),
            (
                "a container's key changed",
                Box::new(|v| v["spec"]["containers"][1]["name"] = json!("other")),
            ),
            (
                "a field becomes an object",
                Box::new(|v| v["spec"]["nodeName"] = json!({"x": 1})),
            ),
            (
                "an empty object filled",
                Box::new(|v| v["spec"]["volumes"][0]["emptyDir"] = json!({"medium": "Memory"})),
            ),
            (
                "a list emptied",
                Box::new(|v| v["spec"]["volumes"] = json!([])),
            ),
            (
                "the spec removed",
                Box::new(|v| {
                    v.as_object_mut().unwrap().remove("spec");
                }),
            ),
            (
                "status phase and condition",
                Box::new(|v| {
                    v["status"]["phase"] = json!("Running");
                    v["status"]["conditions"][0]["status"] = json!("True");
                }),
            ),
        ]
    }

    #[test]
    fn one_walk_finds_the_paths_a_lookup_per_path_finds() {
        let pods = builtin_def("pods");
        let base = sample_pod();
        let edits = sample_edits();
        for (what, edit) in &edits {
            let mut new = base.clone();
            edit(&mut new);
            for (old, new) in [(&base, &new), (&new, &base)] {
                for status in [false, true] {
                    let got = changed_fields(&pods, old, new, status);
                    assert_eq!(
                        got,
                        changed_by_lookup(&pods, old, new, status),
                        "{what} (status: {status})"
                    );
                }
            }
            // Reordering a keyed list or a set changes no field; every other edit does.
            let unchanged = ["nothing", "finalizers reordered", "containers reordered"];
            let found = [(&base, &new), (&new, &base)]
                .into_iter()
                .flat_map(|(o, n)| [(o, n, false), (o, n, true)])
                .map(|(o, n, status)| changed_fields(&pods, o, n, status).len())
                .sum::<usize>();
            assert_eq!(
                found == 0,
                unchanged.contains(what),
                "{what}: {found} paths changed"
            );
        }
        // Against no older version every path is new.
        assert_eq!(
            collect(&pods, &base, None, false),
            fields_of(&pods, &base, false)
        );
    }

    #[test]
    fn an_unread_entry_owns_the_paths_its_field_set_holds() {
        let pods = builtin_def("pods");
        let owned = fields_of(&pods, &sample_pod(), false);
        // A tree as the API server writes it, and one with "." markers on inner nodes.
        let trees = [
            to_fields_v1(&owned),
            json!({"f:metadata": {"f:labels": {".": {}, "f:a": {}}},
                   "f:spec": {"f:containers": {"k:{\"name\":\"runner\"}": {".": {}, "f:image": {}}}}}),
        ];
        let mut candidates: Vec<Path> = owned.iter().cloned().collect();
        for p in &owned {
            for n in 0..p.len() {
                candidates.push(p[..n].to_vec());
            }
            let mut deeper = p.clone();
            deeper.push("f:missing".into());
            candidates.push(deeper);
        }
        for tree in trees {
            let set = from_fields_v1(&tree);
            let unread = Entry {
                raw: json!({"manager": "m", "fieldsV1": tree}),
                set: FieldSet::new(),
                parsed: false,
                changed: false,
            };
            // Once read, the entry answers from its set, and the same.
            let mut read = unread.clone();
            read.parse();
            assert!(read.parsed);
            assert_eq!(read.set, set);
            let mut hits = 0;
            for p in &candidates {
                let owns = unread.owns_any(std::iter::once(p));
                assert_eq!(owns, set.contains(p), "{p:?}");
                assert_eq!(read.owns_any(std::iter::once(p)), owns, "{p:?} once read");
                hits += usize::from(owns);
            }
            assert!(hits > 0 && hits < candidates.len());
            assert!(unread.owns_any(candidates.iter()));
            assert!(!unread.owns_any(std::iter::empty()));
        }
    }

    #[test]
    fn same_ignoring_times_ignores_only_entry_times() {
        let entry = |manager: &str, time: &str| json!({"manager": manager, "operation": "Update", "time": time});
        let obj = |entries: Value, replicas: i64| json!({"metadata": {"name": "d", "managedFields": entries}, "spec": {"replicas": replicas}});
        let a = obj(json!([entry("m", "2026-01-01T00:00:00Z")]), 1);
        assert!(same_ignoring_times(&a, &a.clone()));
        // Only the time differs: the same.
        assert!(same_ignoring_times(
            &a,
            &obj(json!([entry("m", "2026-01-02T00:00:00Z")]), 1)
        ));
        // A time present on one side only: still the same.
        assert!(same_ignoring_times(
            &a,
            &obj(json!([{"manager": "m", "operation": "Update"}]), 1)
        ));
        // The manager, the number of entries, the spec or a metadata field differ: not the same.
        assert!(!same_ignoring_times(
            &a,
            &obj(json!([entry("n", "2026-01-01T00:00:00Z")]), 1)
        ));
        assert!(!same_ignoring_times(&a, &obj(json!([]), 1)));
        assert!(!same_ignoring_times(
            &a,
            &obj(json!([entry("m", "2026-01-01T00:00:00Z")]), 2)
        ));
        let mut labelled = a.clone();
        labelled["metadata"]["labels"] = json!({"x": "y"});
        assert!(!same_ignoring_times(&a, &labelled));
        let mut extra = a.clone();
        extra["status"] = json!({});
        assert!(!same_ignoring_times(&a, &extra));
    }

    #[test]
    fn fields_v1_round_trip() {
        let def = deploy_def();
        let v = json!({"metadata": {"labels": {"a": "b"}}, "spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}});
        let set = fields_of(&def, &v, false);
        let tree = to_fields_v1(&set);
        assert_eq!(
            tree["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"c\"}"]["."],
            json!({})
        );
        assert_eq!(from_fields_v1(&tree), set);
    }

    #[test]
    fn an_item_of_a_keyed_list_left_out_of_a_later_apply_is_removed() {
        let def = deploy_def();
        let live =
            json!({"metadata": {"name": "d"}, "spec": {"template": {"spec": {"containers": []}}}});
        let both = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "a", "image": "1"}, {"name": "b", "image": "2"}
        ]}}}});
        let first = apply(&def, &live, &both, "m", true, false).unwrap();
        let one =
            json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "1"}]}}}});
        let second = apply(&def, &first, &one, "m", true, false).unwrap();
        assert_eq!(
            second["spec"]["template"]["spec"]["containers"],
            json!([{"name": "a", "image": "1"}])
        );
    }

    #[test]
    fn apply_conflicts_force_and_removal() {
        let def = deploy_def();
        let live = json!({"metadata": {"name": "d"}, "spec": {"replicas": 1}});
        let a = apply(
            &def,
            &live,
            &json!({"spec": {"replicas": 2, "paused": true}}),
            "a",
            false,
            false,
        )
        .unwrap();
        assert_eq!(a["spec"]["replicas"], 2);
        let err = apply(
            &def,
            &a,
            &json!({"spec": {"replicas": 3}}),
            "b",
            false,
            false,
        )
        .unwrap_err();
        assert_eq!(
            err,
            vec![Conflict {
                manager: "a".into(),
                field: ".spec.replicas".into()
            }]
        );
        // Same value: shared ownership, no conflict.
        let shared = apply(
            &def,
            &a,
            &json!({"spec": {"replicas": 2}}),
            "b",
            false,
            false,
        )
        .unwrap();
        let forced = apply(
            &def,
            &shared,
            &json!({"spec": {"replicas": 5}}),
            "b",
            true,
            false,
        )
        .unwrap();
        assert_eq!(forced["spec"]["replicas"], 5);
        // a stops applying paused: removed; replicas now owned by b only, so kept.
        let dropped = apply(&def, &forced, &json!({"spec": {}}), "a", false, false).unwrap();
        assert!(dropped["spec"].get("paused").is_none());
        assert_eq!(dropped["spec"]["replicas"], 5);
    }

    #[test]
    fn updates_take_ownership() {
        let def = deploy_def();
        let live = apply(
            &def,
            &json!({"metadata": {}}),
            &json!({"spec": {"replicas": 2}}),
            "a",
            false,
            false,
        )
        .unwrap();
        let mut new = live.clone();
        new["spec"]["replicas"] = json!(4);
        record_update(&def, Some(&live), &mut new, "kubectl", false);
        let mf = new["metadata"]["managedFields"].as_array().unwrap();
        assert_eq!(mf.len(), 1);
        assert_eq!(mf[0]["manager"], "kubectl");
        assert_eq!(mf[0]["operation"], "Update");
    }

    /// The field set of `manager`'s entry in `v`.
    fn owned(v: &Value, manager: &str) -> Option<FieldSet> {
        v["metadata"]["managedFields"]
            .as_array()?
            .iter()
            .find(|e| e["manager"] == manager)
            .map(|e| from_fields_v1(&e["fieldsV1"]))
    }

    fn path(p: &[&str]) -> Path {
        p.iter().map(|s| (*s).to_string()).collect()
    }

    #[test]
    fn entries_are_rewritten_only_when_their_fields_change() {
        let def = deploy_def();
        let a = apply(
            &def,
            &json!({"metadata": {}}),
            &json!({"spec": {"replicas": 2, "paused": true}}),
            "a",
            false,
            false,
        )
        .unwrap();
        let b = apply(
            &def,
            &a,
            &json!({"metadata": {"labels": {"l": "v"}}}),
            "b",
            false,
            false,
        )
        .unwrap();
        let entry_of = |v: &Value, m: &str| {
            v["metadata"]["managedFields"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["manager"] == m)
                .cloned()
                .unwrap()
        };
        // b's apply left a's entry as it was.
        assert_eq!(entry_of(&b, "a"), entry_of(&a, "a"));
        // An update of replicas takes it from a (a's tree is rewritten) and leaves b's entry.
        let mut new = b.clone();
        new["spec"]["replicas"] = json!(4);
        record_update(&def, Some(&b), &mut new, "kubectl", false);
        assert_eq!(entry_of(&new, "b"), entry_of(&b, "b"));
        let a_fields = owned(&new, "a").unwrap();
        assert!(!a_fields.contains(&path(&["f:spec", "f:replicas"])));
        assert!(a_fields.contains(&path(&["f:spec", "f:paused"])));
        assert_eq!(
            owned(&new, "kubectl").unwrap(),
            FieldSet::from([path(&["f:spec", "f:replicas"])])
        );
        // Every entry's tree is the canonical rendering of its set.
        for e in new["metadata"]["managedFields"].as_array().unwrap() {
            assert_eq!(e["fieldsV1"], to_fields_v1(&from_fields_v1(&e["fieldsV1"])));
            assert_eq!(e["fieldsType"], "FieldsV1");
        }
        // A forced apply taking paused from a rewrites a's entry too; an empty one is dropped.
        let forced = apply(
            &def,
            &new,
            &json!({"spec": {"paused": false}}),
            "c",
            true,
            false,
        )
        .unwrap();
        assert!(owned(&forced, "a").is_none(), "a owns nothing any more");
        assert_eq!(entry_of(&forced, "b"), entry_of(&b, "b"));
        // An update that changes nothing writes no entries at all.
        let mut same = forced.clone();
        record_update(&def, Some(&forced), &mut same, "kubectl", false);
        assert_eq!(same, forced);
    }
}
