//! Privilege-escalation prevention for RBAC writes: a user may create or change a `Role` or
//! `ClusterRole` only with rules it already holds (or the `escalate` verb), and a binding
//! only to a role whose rules it holds (or the `bind` verb on that role).

use std::collections::BTreeSet;

use serde_json::Value;

use super::rbac::{Attributes, Index, RBAC_GROUP, Rule, rules_of};
use crate::error::{ApiError, qualified};
use crate::hooks::{Operation, RequestInfo, UserInfo};

fn has(list: &[String], want: &str) -> bool {
    list.iter().any(|s| s == want)
}

/// One rule narrowed to a single API group, resource or URL, verb and resource name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Atom {
    pub(crate) group: Option<String>,
    pub(crate) resource: Option<String>,
    pub(crate) url: Option<String>,
    pub(crate) name: Option<String>,
    pub(crate) verb: String,
}

pub(crate) fn breakdown(rule: &Rule) -> Vec<Atom> {
    let mut out = Vec::new();
    let names: Vec<Option<String>> = if rule.resource_names.is_empty() {
        vec![None]
    } else {
        rule.resource_names.iter().cloned().map(Some).collect()
    };
    for verb in &rule.verbs {
        for group in &rule.api_groups {
            for resource in &rule.resources {
                for name in &names {
                    out.push(Atom {
                        group: Some(group.clone()),
                        resource: Some(resource.clone()),
                        url: None,
                        name: name.clone(),
                        verb: verb.clone(),
                    });
                }
            }
        }
        for url in &rule.non_resource_urls {
            out.push(Atom {
                group: None,
                resource: None,
                url: Some(url.clone()),
                name: None,
                verb: verb.clone(),
            });
        }
    }
    out
}

/// Whether an owner rule covers one atom, with the real server's literal matching: a `*`
/// verb, group or resource in the atom is covered only by `*` in the owner.
fn covers(owner: &Rule, atom: &Atom) -> bool {
    let verb = has(&owner.verbs, "*") || has(&owner.verbs, &atom.verb);
    let group = atom
        .group
        .as_ref()
        .is_none_or(|g| has(&owner.api_groups, "*") || has(&owner.api_groups, g));
    let resource = atom.resource.as_ref().is_none_or(|r| {
        has(&owner.resources, "*")
            || has(&owner.resources, r)
            || r.split_once('/')
                .is_some_and(|(_, sub)| has(&owner.resources, &format!("*/{sub}")))
    });
    let url = atom.url.as_ref().is_none_or(|u| {
        owner.non_resource_urls.iter().any(|o| {
            o == u
                || o.strip_suffix('*')
                    .is_some_and(|p| u.starts_with(p.trim_end_matches('*')))
        })
    });
    let name = match &atom.name {
        None => owner.resource_names.is_empty(),
        Some(n) => owner.resource_names.is_empty() || has(&owner.resource_names, n),
    };
    verb && group && resource && url && name
}

fn quoted(list: &[String]) -> String {
    let items: Vec<String> = list.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", items.join(" "))
}

/// The rules the owner lacks, compacted (atoms differing only by verb merged) and rendered
/// like the real server's `PolicyRule.CompactString`, sorted.
fn missing(owner: &[Rule], wanted: &[Rule]) -> Vec<String> {
    describe(
        wanted
            .iter()
            .flat_map(breakdown)
            .filter(|atom| !owner.iter().any(|o| covers(o, atom))),
    )
}

/// Renders atoms like the real server's `PolicyRule.CompactString`: atoms that differ only
/// by verb are merged, the result is sorted.
pub(crate) fn describe(atoms: impl Iterator<Item = Atom>) -> Vec<String> {
    let mut merged: Vec<(Atom, Vec<String>)> = Vec::new();
    for atom in atoms {
        // Like the real server, only resource rules are compacted.
        let key = if atom.url.is_some() {
            atom.clone()
        } else {
            Atom {
                verb: String::new(),
                ..atom.clone()
            }
        };
        match merged.iter_mut().find(|(k, _)| *k == key) {
            Some((_, verbs)) => {
                if !verbs.contains(&atom.verb) {
                    verbs.push(atom.verb);
                }
            }
            None => merged.push((key, vec![atom.verb])),
        }
    }
    let set: BTreeSet<String> = merged
        .into_iter()
        .map(|(a, verbs)| {
            let mut parts = Vec::new();
            if let Some(g) = a.group {
                parts.push(format!("APIGroups:{}", quoted(&[g])));
            }
            if let Some(r) = a.resource {
                parts.push(format!("Resources:{}", quoted(&[r])));
            }
            if let Some(u) = a.url {
                parts.push(format!("NonResourceURLs:{}", quoted(&[u])));
            }
            if let Some(n) = a.name {
                parts.push(format!("ResourceNames:{}", quoted(&[n])));
            }
            parts.push(format!("Verbs:{}", quoted(&verbs)));
            format!("{{{}}}", parts.join(", "))
        })
        .collect();
    set.into_iter().collect()
}

/// Fields whose change makes an update of an RBAC object subject to the check again.
fn relevant(v: &Value) -> [&Value; 6] {
    [
        &v["rules"],
        &v["aggregationRule"],
        &v["roleRef"],
        &v["subjects"],
        &v["metadata"]["labels"],
        &v["metadata"]["annotations"],
    ]
}

/// What the check needs to know about the write.
pub struct Write<'a> {
    /// The request.
    pub info: &'a RequestInfo,
    /// Create, update or delete.
    pub operation: Operation,
    /// The object being written.
    pub object: &'a Value,
    /// The stored object for updates.
    pub old: Option<&'a Value>,
    /// Looks up a stored role by `(resource, namespace, name)`, to resolve a binding's
    /// `roleRef`.
    pub role: &'a dyn Fn(&str, &str, &str) -> Option<Value>,
    /// Authorizes the `escalate` and `bind` verbs (and records an allowed one).
    pub authorize: &'a dyn Fn(&Attributes<'_>) -> bool,
}

/// Refuses a `Role`, `ClusterRole`, `RoleBinding` or `ClusterRoleBinding` write by a user that
/// would grant permissions it does not hold, with the real server's 403 message.
pub fn check(index: &Index, w: &Write<'_>) -> Result<(), ApiError> {
    let info = w.info;
    let user = &info.user;
    if info.group != RBAC_GROUP || w.operation == Operation::Delete || !info.subresource.is_empty()
    {
        return Ok(());
    }
    if let Some(old) = w.old
        && relevant(old) == relevant(w.object)
    {
        return Ok(());
    }
    let name = w.object["metadata"]["name"].as_str().unwrap_or_default();
    let ns = info.namespace.as_str();
    let wanted = match info.resource.as_str() {
        "roles" | "clusterroles" => {
            let allowed = (w.authorize)(&Attributes::Resource {
                verb: "escalate",
                group: RBAC_GROUP,
                resource: &info.resource,
                subresource: "",
                namespace: ns,
                name,
            });
            if allowed {
                return Ok(());
            }
            rules_of(w.object)
        }
        "rolebindings" | "clusterrolebindings" => {
            let rr = &w.object["roleRef"];
            let kind = rr["kind"].as_str().unwrap_or_default();
            let role_name = rr["name"].as_str().unwrap_or_default();
            let (resource, role_ns) = if kind == "Role" {
                ("roles", ns)
            } else {
                ("clusterroles", "")
            };
            let allowed = (w.authorize)(&Attributes::Resource {
                verb: "bind",
                group: RBAC_GROUP,
                resource,
                subresource: "",
                namespace: ns,
                name: role_name,
            });
            if allowed {
                return Ok(());
            }
            let role = (w.role)(resource, role_ns, role_name)
                .ok_or_else(|| ApiError::not_found(RBAC_GROUP, resource, role_name))?;
            rules_of(&role)
        }
        _ => return Ok(()),
    };
    let lacking = missing(&index.rules_for(user, ns), &wanted);
    if lacking.is_empty() {
        return Ok(());
    }
    Err(escalation_error(user, &info.resource, name, &lacking))
}

fn escalation_error(user: &UserInfo, resource: &str, name: &str, lacking: &[String]) -> ApiError {
    let mut e = ApiError::forbidden(format!(
        "{} {name:?} is forbidden: user {:?} (groups={}) is attempting to grant RBAC permissions not currently held:\n{}",
        qualified(RBAC_GROUP, resource),
        user.username,
        quoted(&user.groups),
        lacking.join("\n")
    ));
    e.group = Some(RBAC_GROUP.to_string());
    e.kind = Some(resource.to_string());
    e.name = (!name.is_empty()).then(|| name.to_string());
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rule(v: &Value) -> Rule {
        Rule::from_value(v)
    }

    #[test]
    fn coverage_and_compaction() {
        let owner = vec![
            rule(
                &json!({"apiGroups": [""], "resources": ["pods", "*/status"], "verbs": ["get", "list"]}),
            ),
            rule(&json!({"apiGroups": ["apps"], "resources": ["*"], "verbs": ["*"]})),
            rule(&json!({"nonResourceURLs": ["/metrics*"], "verbs": ["get"]})),
        ];
        let ok = vec![
            rule(
                &json!({"apiGroups": [""], "resources": ["pods", "pods/status"], "verbs": ["list"]}),
            ),
            rule(
                &json!({"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["delete"], "resourceNames": ["x"]}),
            ),
            rule(&json!({"nonResourceURLs": ["/metrics/x"], "verbs": ["get"]})),
        ];
        assert!(missing(&owner, &ok).is_empty());
        let bad = vec![
            rule(
                &json!({"apiGroups": [""], "resources": ["pods", "secrets"], "verbs": ["get", "delete", "create"]}),
            ),
            rule(&json!({"apiGroups": ["*"], "resources": ["deployments"], "verbs": ["get"]})),
        ];
        assert_eq!(
            missing(&owner, &bad),
            vec![
                "{APIGroups:[\"\"], Resources:[\"pods\"], Verbs:[\"delete\" \"create\"]}".to_string(),
                "{APIGroups:[\"\"], Resources:[\"secrets\"], Verbs:[\"get\" \"delete\" \"create\"]}"
                    .to_string(),
                "{APIGroups:[\"*\"], Resources:[\"deployments\"], Verbs:[\"get\"]}".to_string(),
            ]
        );
        // A resourceNames-limited owner does not cover the unlimited rule.
        let named = vec![rule(
            &json!({"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"], "resourceNames": ["a"]}),
        )];
        let all = vec![rule(
            &json!({"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}),
        )];
        assert_eq!(missing(&named, &all).len(), 1);
    }
}
