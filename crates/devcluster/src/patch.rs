//! PATCH bodies: JSON merge patch (RFC 7386), JSON patch (RFC 6902, including `test`), and
//! strategic merge patch for built-in types with keyed lists.

use serde_json::{Map, Value};

use crate::error::ApiError;

/// Applies an RFC 7386 merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    json_patch::merge(target, patch);
}

/// Applies an RFC 6902 JSON patch; a failed `test` or a bad path is an error.
pub fn json_patch(target: &mut Value, patch: &Value) -> Result<(), ApiError> {
    let ops: json_patch::Patch = serde_json::from_value(patch.clone())
        .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
    // Like the API server, a `test` for null passes when the path is absent.
    let mut kept = Vec::with_capacity(ops.0.len());
    for op in ops.0 {
        if let json_patch::PatchOperation::Test(t) = &op
            && t.value.is_null()
        {
            let cur = target.pointer(t.path.as_str());
            if cur.is_none_or(Value::is_null) {
                continue;
            }
            return Err(ApiError::new(
                422,
                "Invalid",
                format!(
                    "the server rejected our request due to an error in our request: test failed: {} is not null",
                    t.path
                ),
            ));
        }
        kept.push(op);
    }
    let ops = json_patch::Patch(kept);
    json_patch::patch(target, &ops).map_err(|e| {
        ApiError::new(
            422,
            "Invalid",
            format!("the server rejected our request due to an error in our request: {e}"),
        )
    })
}

/// How a built-in list field merges under strategic merge patch and server-side apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListKind {
    /// Replaced as a whole.
    Atomic,
    /// A set of scalars, merged by value.
    Set,
    /// Items merged by the named key fields.
    Map(Vec<String>),
}

/// The merge semantics of a built-in list field, by field name and (for `ports`) contents.
pub fn builtin_list_kind(field: &str, items: &[Value]) -> ListKind {
    let key = |k: &str| ListKind::Map(vec![k.to_string()]);
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets"
        | "secrets" => key("name"),
        "volumeMounts" => key("mountPath"),
        "volumeDevices" => key("devicePath"),
        "hostAliases" => key("ip"),
        "ownerReferences" => key("uid"),
        "conditions" => key("type"),
        "topologySpreadConstraints" => key("topologyKey"),
        "ports" => {
            if items.iter().any(|i| i.get("containerPort").is_some()) {
                key("containerPort")
            } else {
                key("port")
            }
        }
        "finalizers" => ListKind::Set,
        _ => ListKind::Atomic,
    }
}

fn strip_directives(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|k, _| !k.starts_with('$'));
            for x in m.values_mut() {
                strip_directives(x);
            }
        }
        Value::Array(a) => {
            for x in a {
                strip_directives(x);
            }
        }
        _ => {}
    }
}

fn same_key(a: &Value, b: &Value, keys: &[String]) -> bool {
    keys.iter().all(|k| a.get(k) == b.get(k))
}

fn merge_keyed_list(
    target: &mut Vec<Value>,
    patch: &[Value],
    keys: &[String],
) -> Result<(), ApiError> {
    for p in patch {
        let directive = p.get("$patch").and_then(Value::as_str);
        if directive == Some("delete") {
            target.retain(|t| !same_key(t, p, keys));
            continue;
        }
        if let Some(t) = target.iter_mut().find(|t| same_key(t, p, keys)) {
            strategic_merge(t, p)?;
        } else {
            let mut fresh = p.clone();
            strip_directives(&mut fresh);
            target.push(fresh);
        }
    }
    Ok(())
}

/// Applies a strategic merge patch to a built-in object.
pub fn strategic_merge(target: &mut Value, patch: &Value) -> Result<(), ApiError> {
    let Value::Object(pm) = patch else {
        *target = patch.clone();
        return Ok(());
    };
    match pm.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            let mut fresh = patch.clone();
            strip_directives(&mut fresh);
            *target = fresh;
            return Ok(());
        }
        Some("delete") => {
            *target = Value::Object(Map::new());
            return Ok(());
        }
        Some(other) if other != "merge" => {
            return Err(ApiError::bad_request(format!(
                "unknown patch directive $patch: {other:?}; allowed: replace, delete, merge"
            )));
        }
        _ => {}
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(tm) = target else {
        return Ok(());
    };
    if let Some(Value::Array(keep)) = pm.get("$retainKeys") {
        let keep: Vec<&str> = keep.iter().filter_map(Value::as_str).collect();
        tm.retain(|k, _| keep.contains(&k.as_str()));
    }
    for (k, pv) in pm {
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(list)), Value::Array(del)) = (tm.get_mut(field), pv) {
                list.retain(|x| !del.contains(x));
            }
            continue;
        }
        if k.starts_with('$') {
            continue;
        }
        if pv.is_null() {
            tm.remove(k);
            continue;
        }
        match (tm.get_mut(k), pv) {
            (Some(tv @ Value::Object(_)), Value::Object(_)) => {
                if pv.get("$patch").and_then(Value::as_str) == Some("delete") {
                    tm.remove(k);
                } else {
                    strategic_merge(tv, pv)?;
                }
            }
            (Some(Value::Array(tl)), Value::Array(pl)) => {
                let kind = builtin_list_kind(k, pl);
                match kind {
                    ListKind::Map(keys) => merge_keyed_list(tl, pl, &keys)?,
                    ListKind::Set => {
                        for x in pl {
                            if !tl.contains(x) {
                                tl.push(x.clone());
                            }
                        }
                    }
                    ListKind::Atomic => {
                        let mut fresh = pv.clone();
                        strip_directives(&mut fresh);
                        *tl = fresh.as_array().cloned().unwrap_or_default();
                    }
                }
            }
            _ => {
                let mut fresh = pv.clone();
                if let Value::Array(items) = &mut fresh {
                    items.retain(|i| i.get("$patch").and_then(Value::as_str) != Some("delete"));
                }
                strip_directives(&mut fresh);
                tm.insert(k.clone(), fresh);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strategic_merges_containers_env_and_deletes() {
        let mut t = json!({"spec": {"containers": [
            {"name": "a", "image": "x", "env": [{"name": "E1", "value": "1"}, {"name": "E2", "value": "2"}]},
            {"name": "b", "image": "y"}
        ], "volumes": [{"name": "v"}]}, "metadata": {"finalizers": ["f1"]}});
        let p = json!({"spec": {"$setElementOrder/containers": [{"name": "a"}], "containers": [
            {"name": "a", "image": "z", "env": [{"name": "E2", "$patch": "delete"}, {"name": "E3", "value": "3"}]},
            {"name": "b", "$patch": "delete"}
        ]}, "metadata": {"finalizers": ["f2"]}});
        strategic_merge(&mut t, &p).unwrap();
        assert_eq!(
            t,
            json!({"spec": {"containers": [
                {"name": "a", "image": "z", "env": [{"name": "E1", "value": "1"}, {"name": "E3", "value": "3"}]}
            ], "volumes": [{"name": "v"}]}, "metadata": {"finalizers": ["f1", "f2"]}})
        );
    }

    #[test]
    fn json_patch_test_op() {
        let mut t = json!({"metadata": {"finalizers": ["a"]}});
        let bad = json!([{"op": "test", "path": "/metadata/finalizers/0", "value": "b"}, {"op": "remove", "path": "/metadata/finalizers/0"}]);
        assert!(json_patch(&mut t, &bad).is_err());
        assert_eq!(t, json!({"metadata": {"finalizers": ["a"]}}));
        let good = json!([{"op": "test", "path": "/metadata/finalizers/0", "value": "a"}, {"op": "remove", "path": "/metadata/finalizers/0"}]);
        json_patch(&mut t, &good).unwrap();
        assert_eq!(t, json!({"metadata": {"finalizers": []}}));
    }
}
