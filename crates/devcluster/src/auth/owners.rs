//! Owner-reference permission enforcement, as the API server's
//! `OwnerReferencesPermissionEnforcement` admission plugin does it: changing an existing
//! object's `ownerReferences` needs `delete` on the object, and setting
//! `blockOwnerDeletion: true` needs `update` on the owner's `finalizers` subresource.

use serde_json::Value;

use super::rbac::Attributes;
use crate::error::{ApiError, qualified};
use crate::hooks::{Operation, RequestInfo};
use crate::registry::Registry;

fn refs(obj: Option<&Value>) -> &[Value] {
    obj.and_then(|o| o["metadata"]["ownerReferences"].as_array())
        .map_or(&[], Vec::as_slice)
}

fn blocking(r: &Value) -> bool {
    r["blockOwnerDeletion"].as_bool() == Some(true)
}

/// Owner references that block deletion now and did not before (new, or newly blocking).
fn newly_blocking<'a>(new: &'a [Value], old: &[Value]) -> Vec<&'a Value> {
    new.iter()
        .filter(|r| blocking(r))
        .filter(|r| !old.iter().any(|o| o["uid"] == r["uid"] && blocking(o)))
        .collect()
}

fn refusal(info: &RequestInfo, object: &Value, reason: &str) -> ApiError {
    let name = if info.name.is_empty() {
        object["metadata"]["name"].as_str().unwrap_or_default()
    } else {
        info.name.as_str()
    };
    let target = if name.is_empty() {
        qualified(&info.group, &info.resource)
    } else {
        format!("{} {name:?}", qualified(&info.group, &info.resource))
    };
    let mut e = ApiError::forbidden(format!("{target} is forbidden: {reason}"));
    e.group = (!info.group.is_empty()).then(|| info.group.clone());
    e.kind = Some(info.resource.clone());
    e.name = (!name.is_empty()).then(|| name.to_string());
    e
}

/// Checks a create or update by a user outside `system:masters`; `authorize` answers (and
/// records) one permission question.
pub fn check(
    registry: &Registry,
    authorize: &dyn Fn(&Attributes<'_>) -> bool,
    info: &RequestInfo,
    operation: Operation,
    object: &Value,
    old: Option<&Value>,
) -> Result<(), ApiError> {
    if operation == Operation::Delete
        || (info.group.is_empty() && info.resource == "pods" && info.subresource == "status")
    {
        return Ok(());
    }
    let new_refs = refs(Some(object));
    let old_refs = refs(old);
    let changing = match old {
        None => !new_refs.is_empty(),
        Some(_) => new_refs != old_refs,
    };
    if !changing {
        return Ok(());
    }
    if operation == Operation::Update {
        let name = object["metadata"]["name"].as_str().unwrap_or(&info.name);
        let may_delete = authorize(&Attributes::Resource {
            verb: "delete",
            group: &info.group,
            resource: &info.resource,
            subresource: &info.subresource,
            namespace: &info.namespace,
            name,
        });
        if !may_delete {
            return Err(refusal(
                info,
                object,
                "cannot set an ownerRef on a resource you can't delete: , <nil>",
            ));
        }
    }
    for r in newly_blocking(new_refs, old_refs) {
        let api_version = r["apiVersion"].as_str().unwrap_or_default();
        let kind = r["kind"].as_str().unwrap_or_default();
        let Some(def) = registry.by_kind(api_version, kind) else {
            return Err(refusal(
                info,
                object,
                &format!(
                    "cannot set blockOwnerDeletion in this case because cannot find RESTMapping for APIVersion {api_version} Kind {kind}: no matches for kind {kind:?} in version {api_version:?}"
                ),
            ));
        };
        let allowed = authorize(&Attributes::Resource {
            verb: "update",
            group: &def.group,
            resource: &def.plural,
            subresource: "finalizers",
            namespace: &info.namespace,
            name: r["name"].as_str().unwrap_or_default(),
        });
        if !allowed {
            return Err(refusal(
                info,
                object,
                "cannot set blockOwnerDeletion if an ownerReference refers to a resource you can't set finalizers on: , <nil>",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn newly_blocking_refs() {
        let a = json!({"uid": "a", "blockOwnerDeletion": true});
        let b = json!({"uid": "b", "blockOwnerDeletion": true});
        let b_off = json!({"uid": "b", "blockOwnerDeletion": false});
        let c = json!({"uid": "c"});
        let new = [a.clone(), b.clone(), c.clone()];
        assert_eq!(newly_blocking(&new, &[]).len(), 2);
        assert_eq!(newly_blocking(&new, &[a.clone(), b_off]), vec![&b]);
        assert!(newly_blocking(&new, &[a, b]).is_empty());
        assert!(newly_blocking(&[c], &[]).is_empty());
    }
}
