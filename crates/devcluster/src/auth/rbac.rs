//! RBAC evaluation over the cluster's stored `Role`, `ClusterRole`, `RoleBinding` and
//! `ClusterRoleBinding` objects, plus the default discovery roles every real cluster has.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use serde_json::Value;

use crate::error::{ApiError, qualified};
use crate::hooks::UserInfo;

/// The API group of the RBAC kinds.
pub const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// One `PolicyRule`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rule {
    /// `verbs` (`*` matches all).
    pub verbs: Vec<String>,
    /// `apiGroups` (`*` matches all, `""` is the core group).
    pub api_groups: Vec<String>,
    /// `resources`, possibly `resource/subresource`, `*` or `*/subresource`.
    pub resources: Vec<String>,
    /// `resourceNames`; empty matches every name.
    pub resource_names: Vec<String>,
    /// `nonResourceURLs`; a trailing `*` matches any suffix.
    pub non_resource_urls: Vec<String>,
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn has(list: &[String], want: &str) -> bool {
    list.iter().any(|s| s == "*" || s == want)
}

impl Rule {
    /// Reads a rule from its JSON form.
    pub fn from_value(v: &Value) -> Self {
        Self {
            verbs: strings(&v["verbs"]),
            api_groups: strings(&v["apiGroups"]),
            resources: strings(&v["resources"]),
            resource_names: strings(&v["resourceNames"]),
            non_resource_urls: strings(&v["nonResourceURLs"]),
        }
    }

    /// A non-resource rule granting `verbs` on `urls`.
    fn paths(verbs: &[&str], urls: &[&str]) -> Self {
        Self {
            verbs: verbs.iter().map(|s| (*s).to_string()).collect(),
            non_resource_urls: urls.iter().map(|s| (*s).to_string()).collect(),
            ..Self::default()
        }
    }

    /// Whether the rule allows a request.
    pub fn allows(&self, a: &Attributes<'_>) -> bool {
        match a {
            Attributes::Resource {
                verb,
                group,
                resource,
                subresource,
                name,
                ..
            } => {
                has(&self.verbs, verb)
                    && has(&self.api_groups, group)
                    && self.resource_matches(resource, subresource)
                    && (self.resource_names.is_empty()
                        || self.resource_names.iter().any(|n| n == name))
            }
            Attributes::Path { verb, path } => {
                has(&self.verbs, verb)
                    && self.non_resource_urls.iter().any(|u| {
                        u == "*"
                            || u == path
                            || u.strip_suffix('*').is_some_and(|p| path.starts_with(p))
                    })
            }
        }
    }

    fn resource_matches(&self, resource: &str, subresource: &str) -> bool {
        self.resources.iter().any(|r| {
            if r == "*" {
                return true;
            }
            if subresource.is_empty() {
                return r == resource;
            }
            if let Some(sub) = r.strip_prefix("*/") {
                return sub == subresource;
            }
            r.split_once('/')
                .is_some_and(|(res, sub)| res == resource && sub == subresource)
        })
    }
}

/// What a request asks to do, as RBAC sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attributes<'a> {
    /// A request on an API resource.
    Resource {
        /// Verb (`get`, `list`, `watch`, `create`, ...).
        verb: &'a str,
        /// API group, empty for core.
        group: &'a str,
        /// Resource plural.
        resource: &'a str,
        /// Subresource or empty.
        subresource: &'a str,
        /// Namespace, empty for cluster scope.
        namespace: &'a str,
        /// Object name, empty for collections and creates.
        name: &'a str,
    },
    /// A request on a path that names no resource (`/api`, `/version`, ...).
    Path {
        /// Lower-case HTTP method.
        verb: &'a str,
        /// The URL path.
        path: &'a str,
    },
}

impl Attributes<'_> {
    fn namespace(&self) -> &str {
        match self {
            Attributes::Resource { namespace, .. } => namespace,
            Attributes::Path { .. } => "",
        }
    }
}

/// A resolved binding: who it names and which rules it grants.
#[derive(Debug, Clone)]
struct Binding {
    users: Vec<String>,
    groups: Vec<String>,
    rules: Arc<Vec<Rule>>,
}

impl Binding {
    fn applies_to(&self, user: &UserInfo) -> bool {
        self.users.contains(&user.username) || self.groups.iter().any(|g| user.groups.contains(g))
    }

    /// Reads a binding's subjects; `ServiceAccount` subjects become their user names
    /// (a `RoleBinding`'s subject without a namespace means the binding's namespace).
    fn new(binding: &Value, namespace: &str, rules: Arc<Vec<Rule>>) -> Self {
        let mut users = Vec::new();
        let mut groups = Vec::new();
        for s in binding["subjects"].as_array().into_iter().flatten() {
            let name = s["name"].as_str().unwrap_or_default().to_string();
            match s["kind"].as_str().unwrap_or_default() {
                "User" => users.push(name),
                "Group" => groups.push(name),
                "ServiceAccount" => {
                    let ns = s["namespace"]
                        .as_str()
                        .filter(|n| !n.is_empty())
                        .unwrap_or(namespace);
                    if !ns.is_empty() {
                        users.push(format!("system:serviceaccount:{ns}:{name}"));
                    }
                }
                _ => {}
            }
        }
        Self {
            users,
            groups,
            rules,
        }
    }
}

/// The roles every cluster grants by default (`system:discovery`, `system:basic-user`
/// and `system:public-info-viewer`), as bindings of the authenticated and
/// unauthenticated groups.
static DEFAULT_BINDINGS: LazyLock<Vec<Binding>> = LazyLock::new(|| {
    let public = Rule::paths(
        &["get"],
        &["/healthz", "/livez", "/readyz", "/version", "/version/"],
    );
    let discovery = Rule::paths(
        &["get"],
        &[
            "/api",
            "/api/*",
            "/apis",
            "/apis/*",
            "/healthz",
            "/livez",
            "/openapi",
            "/openapi/*",
            "/readyz",
            "/version",
            "/version/",
        ],
    );
    let basic = Rule {
        verbs: vec!["create".into()],
        api_groups: vec!["authorization.k8s.io".into()],
        resources: vec![
            "selfsubjectaccessreviews".into(),
            "selfsubjectrulesreviews".into(),
        ],
        ..Rule::default()
    };
    let review = Rule {
        verbs: vec!["create".into()],
        api_groups: vec!["authentication.k8s.io".into()],
        resources: vec!["selfsubjectreviews".into()],
        ..Rule::default()
    };
    vec![
        Binding {
            users: Vec::new(),
            groups: vec!["system:authenticated".into()],
            rules: Arc::new(vec![discovery, basic, review, public.clone()]),
        },
        Binding {
            users: Vec::new(),
            groups: vec!["system:unauthenticated".into()],
            rules: Arc::new(vec![public]),
        },
    ]
});

/// The stored RBAC objects, resolved into bindings for fast evaluation.
#[derive(Debug, Clone, Default)]
pub struct Index {
    cluster: Vec<Binding>,
    namespaced: HashMap<String, Vec<Binding>>,
}

fn name_of(v: &Value) -> &str {
    v["metadata"]["name"].as_str().unwrap_or_default()
}

fn ns_of(v: &Value) -> &str {
    v["metadata"]["namespace"].as_str().unwrap_or_default()
}

/// The `rules` of a `Role` or `ClusterRole` object (e.g. one read from `config/rbac`).
pub fn rules_of(v: &Value) -> Vec<Rule> {
    v["rules"]
        .as_array()
        .map(|a| a.iter().map(Rule::from_value).collect())
        .unwrap_or_default()
}

/// Whether an object's labels satisfy a `LabelSelector` (matchLabels and
/// matchExpressions); an empty selector matches nothing, like the aggregation controller.
fn selector_matches(selector: &Value, labels: &Value) -> bool {
    let label = |k: &str| labels.get(k).and_then(Value::as_str);
    let mut any = false;
    if let Some(m) = selector["matchLabels"].as_object() {
        for (k, v) in m {
            any = true;
            if label(k) != v.as_str() {
                return false;
            }
        }
    }
    for e in selector["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
    {
        any = true;
        let key = e["key"].as_str().unwrap_or_default();
        let values = strings(&e["values"]);
        let cur = label(key);
        let ok = match e["operator"].as_str().unwrap_or_default() {
            "In" => cur.is_some_and(|c| values.iter().any(|v| v == c)),
            "NotIn" => cur.is_none_or(|c| values.iter().all(|v| v != c)),
            "Exists" => cur.is_some(),
            "DoesNotExist" => cur.is_none(),
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    any
}

impl Index {
    /// Resolves bindings against roles. A binding whose role does not exist grants nothing;
    /// a `ClusterRole` with an `aggregationRule` also grants the rules of every `ClusterRole` its
    /// selectors match.
    pub fn build(
        namespaced_roles: &[&Value],
        cluster_roles: &[&Value],
        role_bindings: &[&Value],
        cluster_role_bindings: &[&Value],
    ) -> Self {
        let mut cr: HashMap<&str, Arc<Vec<Rule>>> = cluster_roles
            .iter()
            .map(|r| (name_of(r), Arc::new(rules_of(r))))
            .collect();
        for r in cluster_roles {
            let Some(sel) = r["aggregationRule"]["clusterRoleSelectors"].as_array() else {
                continue;
            };
            let mut merged = rules_of(r);
            for other in cluster_roles {
                if name_of(other) != name_of(r)
                    && sel
                        .iter()
                        .any(|s| selector_matches(s, &other["metadata"]["labels"]))
                {
                    merged.extend(rules_of(other));
                }
            }
            cr.insert(name_of(r), Arc::new(merged));
        }
        let by_key: HashMap<(&str, &str), Arc<Vec<Rule>>> = namespaced_roles
            .iter()
            .map(|r| ((ns_of(r), name_of(r)), Arc::new(rules_of(r))))
            .collect();
        let mut idx = Self::default();
        for b in cluster_role_bindings {
            let rr = &b["roleRef"];
            if rr["kind"].as_str() != Some("ClusterRole") {
                continue;
            }
            if let Some(rules) = cr.get(rr["name"].as_str().unwrap_or_default()) {
                idx.cluster.push(Binding::new(b, "", rules.clone()));
            }
        }
        for b in role_bindings {
            let ns = ns_of(b);
            let rr = &b["roleRef"];
            let name = rr["name"].as_str().unwrap_or_default();
            let granted = match rr["kind"].as_str() {
                Some("ClusterRole") => cr.get(name),
                Some("Role") => by_key.get(&(ns, name)),
                _ => None,
            };
            if let Some(rules) = granted {
                idx.namespaced
                    .entry(ns.to_string())
                    .or_default()
                    .push(Binding::new(b, ns, rules.clone()));
            }
        }
        idx
    }

    fn bindings<'a>(&'a self, namespace: &str) -> impl Iterator<Item = &'a Binding> + 'a {
        let ns = if namespace.is_empty() {
            None
        } else {
            self.namespaced.get(namespace)
        };
        DEFAULT_BINDINGS
            .iter()
            .chain(self.cluster.iter())
            .chain(ns.into_iter().flatten())
    }

    /// Whether any rule bound to the user allows the request. Namespaced requests consult
    /// `ClusterRoleBindings` and the `RoleBindings` of that namespace; others only
    /// `ClusterRoleBindings`.
    pub fn allows(&self, user: &UserInfo, a: &Attributes<'_>) -> bool {
        self.bindings(a.namespace())
            .filter(|b| b.applies_to(user))
            .any(|b| b.rules.iter().any(|r| r.allows(a)))
    }

    /// Every rule that applies to the user in a namespace (empty: cluster-wide rules only).
    pub fn rules_for(&self, user: &UserInfo, namespace: &str) -> Vec<Rule> {
        self.bindings(namespace)
            .filter(|b| b.applies_to(user))
            .flat_map(|b| b.rules.iter().cloned())
            .collect()
    }
}

/// The 403 a real API server answers when RBAC denies a request.
pub fn forbidden(user: &UserInfo, a: &Attributes<'_>) -> ApiError {
    match a {
        Attributes::Path { verb, path } => ApiError::forbidden(format!(
            "forbidden: User {:?} cannot {verb} path {path:?}",
            user.username
        )),
        Attributes::Resource {
            verb,
            group,
            resource,
            subresource,
            namespace,
            name,
        } => {
            let full = if subresource.is_empty() {
                (*resource).to_string()
            } else {
                format!("{resource}/{subresource}")
            };
            let scope = if namespace.is_empty() {
                "at the cluster scope".to_string()
            } else {
                format!("in the namespace {namespace:?}")
            };
            let what = qualified(group, resource);
            let target = if name.is_empty() {
                what
            } else {
                format!("{what} {name:?}")
            };
            let mut e = ApiError::forbidden(format!(
                "{target} is forbidden: User {:?} cannot {verb} resource {full:?} in API group {group:?} {scope}",
                user.username
            ));
            e.group = (!group.is_empty()).then(|| (*group).to_string());
            e.kind = Some((*resource).to_string());
            e.name = (!name.is_empty()).then(|| (*name).to_string());
            e
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sa(ns: &str, name: &str) -> UserInfo {
        UserInfo {
            username: format!("system:serviceaccount:{ns}:{name}"),
            uid: String::new(),
            groups: vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{ns}"),
                "system:authenticated".into(),
            ],
        }
    }

    fn res<'a>(verb: &'a str, resource: &'a str, sub: &'a str, ns: &'a str) -> Attributes<'a> {
        Attributes::Resource {
            verb,
            group: "",
            resource,
            subresource: sub,
            namespace: ns,
            name: "",
        }
    }

    #[test]
    fn rule_matching() {
        let r = Rule::from_value(&json!({
            "apiGroups": [""], "resources": ["pods", "pods/status", "*/scale"],
            "verbs": ["get", "patch"]
        }));
        assert!(r.allows(&res("get", "pods", "", "a")));
        assert!(r.allows(&res("patch", "pods", "status", "a")));
        assert!(r.allows(&res("patch", "deployments", "scale", "a")));
        assert!(!r.allows(&res("patch", "pods", "log", "a")));
        assert!(!r.allows(&res("delete", "pods", "", "a")));
        assert!(!r.allows(&res("get", "services", "", "a")));
        let p = Rule::paths(&["get"], &["/apis/*", "/version"]);
        assert!(p.allows(&Attributes::Path {
            verb: "get",
            path: "/apis/apps/v1"
        }));
        assert!(!p.allows(&Attributes::Path {
            verb: "get",
            path: "/version/x"
        }));
    }

    #[test]
    fn bindings_and_aggregation() {
        let role = json!({"metadata": {"name": "r", "namespace": "a"},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]});
        let agg = json!({"metadata": {"name": "agg"}, "aggregationRule": {"clusterRoleSelectors": [
            {"matchLabels": {"x": "y"}}]}, "rules": []});
        let part = json!({"metadata": {"name": "part", "labels": {"x": "y"}},
            "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["list"]}]});
        let rb = json!({"metadata": {"name": "rb", "namespace": "a"},
            "roleRef": {"kind": "Role", "name": "r"},
            "subjects": [{"kind": "ServiceAccount", "name": "sa"}]});
        let crb = json!({"metadata": {"name": "crb"},
            "roleRef": {"kind": "ClusterRole", "name": "agg"},
            "subjects": [{"kind": "Group", "name": "system:serviceaccounts:b"}]});
        let idx = Index::build(&[&role], &[&agg, &part], &[&rb], &[&crb]);
        assert!(idx.allows(&sa("a", "sa"), &res("get", "configmaps", "", "a")));
        assert!(!idx.allows(&sa("a", "sa"), &res("get", "configmaps", "", "c")));
        assert!(!idx.allows(&sa("a", "other"), &res("get", "configmaps", "", "a")));
        assert!(idx.allows(&sa("b", "x"), &res("list", "secrets", "", "")));
        assert!(!idx.allows(&sa("a", "sa"), &res("list", "secrets", "", "")));
        assert!(idx.allows(
            &sa("a", "sa"),
            &Attributes::Path {
                verb: "get",
                path: "/api"
            }
        ));
    }

    #[test]
    fn forbidden_messages() {
        let u = sa("ns", "sa");
        let e = forbidden(
            &u,
            &Attributes::Resource {
                verb: "get",
                group: "",
                resource: "configmaps",
                subresource: "",
                namespace: "default",
                name: "x",
            },
        );
        assert_eq!(
            e.message,
            "configmaps \"x\" is forbidden: User \"system:serviceaccount:ns:sa\" cannot get resource \"configmaps\" in API group \"\" in the namespace \"default\""
        );
        let e = forbidden(
            &u,
            &Attributes::Resource {
                verb: "list",
                group: "apps",
                resource: "deployments",
                subresource: "",
                namespace: "",
                name: "",
            },
        );
        assert_eq!(
            e.message,
            "deployments.apps is forbidden: User \"system:serviceaccount:ns:sa\" cannot list resource \"deployments\" in API group \"apps\" at the cluster scope"
        );
    }
}
