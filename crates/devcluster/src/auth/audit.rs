//! A record of the authorization decisions made for users outside `system:masters`, to
//! show that a role is sufficient (nothing was denied) and minimal (every rule was used).

use std::collections::BTreeSet;
use std::sync::Mutex;

use super::escalation::{Atom, breakdown, describe};
use super::rbac::{Attributes, Rule};
use crate::hooks::UserInfo;

/// Most distinct decisions kept; later ones are dropped.
pub const MAX_DECISIONS: usize = 200_000;

/// One authorization decision.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Decision {
    /// User name.
    pub user: String,
    /// Verb.
    pub verb: String,
    /// API group (resource requests).
    pub group: String,
    /// Resource plural (empty for non-resource requests).
    pub resource: String,
    /// Subresource or empty.
    pub subresource: String,
    /// Namespace or empty.
    pub namespace: String,
    /// Object name or empty.
    pub name: String,
    /// URL path of a non-resource request, else empty.
    pub path: String,
    /// Whether RBAC allowed it.
    pub allowed: bool,
}

impl Decision {
    fn new(user: &UserInfo, a: &Attributes<'_>, allowed: bool) -> Self {
        let user = user.username.clone();
        match *a {
            Attributes::Resource {
                verb,
                group,
                resource,
                subresource,
                namespace,
                name,
            } => Self {
                user,
                verb: verb.into(),
                group: group.into(),
                resource: resource.into(),
                subresource: subresource.into(),
                namespace: namespace.into(),
                name: name.into(),
                path: String::new(),
                allowed,
            },
            Attributes::Path { verb, path } => Self {
                user,
                verb: verb.into(),
                group: String::new(),
                resource: String::new(),
                subresource: String::new(),
                namespace: String::new(),
                name: String::new(),
                path: path.into(),
                allowed,
            },
        }
    }

    /// Whether this (allowed) request exercised a rule atom.
    fn uses(&self, atom: &Atom) -> bool {
        let verb = atom.verb == "*" || atom.verb == self.verb;
        if let Some(u) = &atom.url {
            return verb
                && !self.path.is_empty()
                && (u == "*"
                    || *u == self.path
                    || u.strip_suffix('*')
                        .is_some_and(|p| self.path.starts_with(p)));
        }
        if self.resource.is_empty() {
            return false;
        }
        let group = atom
            .group
            .as_ref()
            .is_some_and(|g| g == "*" || *g == self.group);
        let resource = atom.resource.as_ref().is_some_and(|r| {
            if r == "*" {
                return true;
            }
            if self.subresource.is_empty() {
                return *r == self.resource;
            }
            r.strip_prefix("*/").map_or_else(
                || *r == format!("{}/{}", self.resource, self.subresource),
                |sub| sub == self.subresource,
            )
        });
        let name = atom.name.as_ref().is_none_or(|n| *n == self.name);
        verb && group && resource && name
    }
}

/// The set of decisions so far.
#[derive(Debug, Default)]
pub struct Audit {
    seen: Mutex<BTreeSet<Decision>>,
}

impl Audit {
    /// Records one decision.
    pub fn record(&self, user: &UserInfo, a: &Attributes<'_>, allowed: bool) {
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if seen.len() < MAX_DECISIONS {
            seen.insert(Decision::new(user, a, allowed));
        }
    }

    /// Every distinct decision, sorted.
    pub fn decisions(&self) -> Vec<Decision> {
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }

    /// Forgets all decisions.
    pub fn clear(&self) {
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
    }

    /// The denied requests of one user.
    pub fn denied(&self, user: &str) -> Vec<Decision> {
        self.decisions()
            .into_iter()
            .filter(|d| d.user == user && !d.allowed)
            .collect()
    }

    /// The parts of `rules` (one group, resource or URL, verb and name each, compacted and
    /// rendered like the real server's `CompactString`) that no allowed request of `user`
    /// exercised. Empty means every rule was needed by what the user did.
    pub fn unused(&self, user: &str, rules: &[Rule]) -> Vec<String> {
        let exercised: Vec<Decision> = self
            .decisions()
            .into_iter()
            .filter(|d| d.user == user && d.allowed)
            .collect();
        describe(
            rules
                .iter()
                .flat_map(breakdown)
                .filter(|atom| !exercised.iter().any(|d| d.uses(atom))),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unused_atoms() {
        let user = UserInfo {
            username: "u".into(),
            ..UserInfo::default()
        };
        let audit = Audit::default();
        audit.record(
            &user,
            &Attributes::Resource {
                verb: "get",
                group: "",
                resource: "pods",
                subresource: "status",
                namespace: "a",
                name: "p",
            },
            true,
        );
        audit.record(
            &user,
            &Attributes::Path {
                verb: "get",
                path: "/metrics",
            },
            true,
        );
        audit.record(
            &user,
            &Attributes::Resource {
                verb: "delete",
                group: "",
                resource: "pods",
                subresource: "",
                namespace: "a",
                name: "p",
            },
            false,
        );
        let rules = vec![
            Rule::from_value(
                &json!({"apiGroups": [""], "resources": ["pods/status", "pods"], "verbs": ["get", "delete"]}),
            ),
            Rule::from_value(&json!({"nonResourceURLs": ["/metrics"], "verbs": ["get"]})),
        ];
        assert_eq!(
            audit.unused("u", &rules),
            vec![
                "{APIGroups:[\"\"], Resources:[\"pods\"], Verbs:[\"get\" \"delete\"]}".to_string(),
                "{APIGroups:[\"\"], Resources:[\"pods/status\"], Verbs:[\"delete\"]}".to_string(),
            ]
        );
        assert_eq!(audit.denied("u").len(), 1);
        assert_eq!(audit.unused("other", &rules).len(), 3);
        audit.clear();
        assert!(audit.decisions().is_empty());
    }
}
