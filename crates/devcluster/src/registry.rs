//! The set of served resource types: the built-in table and those defined at run time by
//! `CustomResourceDefinition`s.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde_json::Value;

/// Identifies the storage of a resource independently of its version.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupResource {
    /// API group; empty for the core group.
    pub group: String,
    /// Plural resource name.
    pub resource: String,
}

/// What the server knows about a custom resource version, taken from its CRD.
#[derive(Debug, Clone)]
pub struct CrdInfo {
    /// `metadata.name` of the defining CRD.
    pub crd_name: String,
    /// `openAPIV3Schema` of this version, if any.
    pub schema: Option<Value>,
    /// The compiled schema, when it compiled.
    pub compiled: Option<std::sync::Arc<crd_validation::Schema>>,
    /// `additionalPrinterColumns` of this version.
    pub printer_columns: Vec<Value>,
    /// Whether this version is the storage version.
    pub storage: bool,
}

/// One served resource at one group/version.
#[derive(Debug, Clone)]
pub struct ResourceDef {
    /// API group; empty for the core group.
    pub group: String,
    /// API version within the group.
    pub version: String,
    /// Plural name used in URLs.
    pub plural: String,
    /// Singular name.
    pub singular: String,
    /// Kind of the objects.
    pub kind: String,
    /// Kind of the list objects.
    pub list_kind: String,
    /// Whether objects live in namespaces.
    pub namespaced: bool,
    /// Short names (`kubectl get cm`).
    pub short_names: Vec<String>,
    /// Categories (`kubectl get all`).
    pub categories: Vec<String>,
    /// Whether the `/status` subresource is served.
    pub status_subresource: bool,
    /// Set for custom resources.
    pub crd: Option<CrdInfo>,
}

impl ResourceDef {
    /// `apiVersion` string of this resource's objects.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The storage key shared by all versions.
    pub fn group_resource(&self) -> GroupResource {
        GroupResource {
            group: self.group.clone(),
            resource: self.plural.clone(),
        }
    }

    /// Whether this is a built-in (not CRD-defined) type.
    pub fn is_builtin(&self) -> bool {
        self.crd.is_none()
    }

    /// Whether the object kind carries a `spec` whose changes move `metadata.generation`.
    pub fn tracks_generation(&self) -> bool {
        self.crd.is_some()
            || matches!(
                self.plural.as_str(),
                "deployments"
                    | "jobs"
                    | "cronjobs"
                    | "pods"
                    | "networkpolicies"
                    | "customresourcedefinitions"
            )
    }
}

#[allow(clippy::too_many_arguments, clippy::fn_params_excessive_bools)]
fn builtin(
    group: &str,
    version: &str,
    plural: &str,
    kind: &str,
    namespaced: bool,
    short: &[&str],
    status: bool,
    all: bool,
) -> ResourceDef {
    ResourceDef {
        group: group.into(),
        version: version.into(),
        plural: plural.into(),
        singular: kind.to_lowercase(),
        kind: kind.into(),
        list_kind: format!("{kind}List"),
        namespaced,
        short_names: short.iter().map(|s| (*s).to_string()).collect(),
        categories: if all {
            vec!["all".to_string()]
        } else {
            Vec::new()
        },
        status_subresource: status,
        crd: None,
    }
}

/// The built-in resource types served from start-up.
#[allow(clippy::too_many_lines)]
pub fn builtin_resources() -> Vec<ResourceDef> {
    vec![
        builtin(
            "",
            "v1",
            "namespaces",
            "Namespace",
            false,
            &["ns"],
            true,
            false,
        ),
        builtin(
            "",
            "v1",
            "configmaps",
            "ConfigMap",
            true,
            &["cm"],
            false,
            false,
        ),
        builtin("", "v1", "secrets", "Secret", true, &[], false, false),
        builtin("", "v1", "services", "Service", true, &["svc"], true, true),
        builtin(
            "",
            "v1",
            "serviceaccounts",
            "ServiceAccount",
            true,
            &["sa"],
            false,
            false,
        ),
        builtin("", "v1", "pods", "Pod", true, &["po"], true, true),
        builtin("", "v1", "events", "Event", true, &["ev"], false, false),
        builtin(
            "",
            "v1",
            "limitranges",
            "LimitRange",
            true,
            &["limits"],
            false,
            false,
        ),
        builtin(
            "apps",
            "v1",
            "deployments",
            "Deployment",
            true,
            &["deploy"],
            true,
            true,
        ),
        builtin("batch", "v1", "jobs", "Job", true, &[], true, true),
        builtin(
            "batch",
            "v1",
            "cronjobs",
            "CronJob",
            true,
            &["cj"],
            true,
            true,
        ),
        builtin(
            "coordination.k8s.io",
            "v1",
            "leases",
            "Lease",
            true,
            &[],
            false,
            false,
        ),
        builtin(
            "events.k8s.io",
            "v1",
            "events",
            "Event",
            true,
            &["ev"],
            false,
            false,
        ),
        builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "roles",
            "Role",
            true,
            &[],
            false,
            false,
        ),
        builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "rolebindings",
            "RoleBinding",
            true,
            &[],
            false,
            false,
        ),
        builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "clusterroles",
            "ClusterRole",
            false,
            &[],
            false,
            false,
        ),
        builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "clusterrolebindings",
            "ClusterRoleBinding",
            false,
            &[],
            false,
            false,
        ),
        builtin(
            "networking.k8s.io",
            "v1",
            "networkpolicies",
            "NetworkPolicy",
            true,
            &["netpol"],
            false,
            false,
        ),
        builtin(
            "apiextensions.k8s.io",
            "v1",
            "customresourcedefinitions",
            "CustomResourceDefinition",
            false,
            &["crd", "crds"],
            true,
            false,
        ),
        builtin(
            "admissionregistration.k8s.io",
            "v1",
            "validatingwebhookconfigurations",
            "ValidatingWebhookConfiguration",
            false,
            &[],
            false,
            false,
        ),
        builtin(
            "admissionregistration.k8s.io",
            "v1",
            "mutatingwebhookconfigurations",
            "MutatingWebhookConfiguration",
            false,
            &[],
            false,
            false,
        ),
    ]
}

/// Builds the served resource definitions for each served version of a CRD object.
pub fn defs_from_crd(crd: &Value) -> Vec<ResourceDef> {
    let spec = &crd["spec"];
    let group = spec["group"].as_str().unwrap_or_default();
    let names = &spec["names"];
    let kind = names["kind"].as_str().unwrap_or_default();
    let plural = names["plural"].as_str().unwrap_or_default();
    if group.is_empty() || kind.is_empty() || plural.is_empty() {
        return Vec::new();
    }
    let singular = names["singular"]
        .as_str()
        .filter(|s| !s.is_empty())
        .map_or_else(|| kind.to_lowercase(), str::to_string);
    let list_kind = names["listKind"]
        .as_str()
        .filter(|s| !s.is_empty())
        .map_or_else(|| format!("{kind}List"), str::to_string);
    let strs = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let namespaced = spec["scope"].as_str() != Some("Cluster");
    let crd_name = crd["metadata"]["name"].as_str().unwrap_or_default();
    spec["versions"]
        .as_array()
        .map(|vs| {
            vs.iter()
                .filter(|v| v["served"].as_bool().unwrap_or(true))
                .filter_map(|v| {
                    let version = v["name"].as_str()?;
                    Some(ResourceDef {
                        group: group.into(),
                        version: version.into(),
                        plural: plural.into(),
                        singular: singular.clone(),
                        kind: kind.into(),
                        list_kind: list_kind.clone(),
                        namespaced,
                        short_names: strs(&names["shortNames"]),
                        categories: strs(&names["categories"]),
                        status_subresource: v["subresources"]["status"].is_object(),
                        crd: Some(CrdInfo {
                            crd_name: crd_name.into(),
                            schema: v
                                .get("schema")
                                .and_then(|s| s.get("openAPIV3Schema"))
                                .cloned(),
                            compiled: v
                                .get("schema")
                                .and_then(|s| s.get("openAPIV3Schema"))
                                .and_then(|s| crd_validation::Schema::new(s).ok())
                                .map(Arc::new),
                            printer_columns: v["additionalPrinterColumns"]
                                .as_array()
                                .cloned()
                                .unwrap_or_default(),
                            storage: v["storage"].as_bool().unwrap_or(false),
                        }),
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

/// An immutable snapshot of everything served; replaced wholesale when CRDs change.
#[derive(Debug, Default, Clone)]
pub struct Registry {
    /// (group, version, plural) → definition.
    by_gvr: HashMap<(String, String, String), Arc<ResourceDef>>,
    /// group → versions in preference order.
    groups: BTreeMap<String, Vec<String>>,
    /// Order in which groups were first registered (for discovery).
    group_order: Vec<String>,
}

impl Registry {
    /// A registry with the given definitions.
    pub fn with(defs: Vec<ResourceDef>) -> Self {
        let mut r = Self::default();
        for d in defs {
            r.insert(d);
        }
        r
    }

    /// Adds or replaces one definition.
    pub fn insert(&mut self, def: ResourceDef) {
        let versions = self.groups.entry(def.group.clone()).or_default();
        if !versions.contains(&def.version) {
            versions.push(def.version.clone());
            versions.sort_by_key(|v| std::cmp::Reverse(version_priority(v)));
        }
        if !self.group_order.contains(&def.group) {
            self.group_order.push(def.group.clone());
        }
        self.by_gvr.insert(
            (def.group.clone(), def.version.clone(), def.plural.clone()),
            Arc::new(def),
        );
    }

    /// Removes every definition that came from the named CRD.
    pub fn remove_crd(&mut self, crd_name: &str) {
        self.by_gvr
            .retain(|_, d| d.crd.as_ref().is_none_or(|c| c.crd_name != crd_name));
        let mut live: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for d in self.by_gvr.values() {
            let vs = live.entry(d.group.clone()).or_default();
            if !vs.contains(&d.version) {
                vs.push(d.version.clone());
            }
        }
        for vs in live.values_mut() {
            vs.sort_by_key(|v| std::cmp::Reverse(version_priority(v)));
        }
        self.groups = live;
        let groups = &self.groups;
        self.group_order.retain(|g| groups.contains_key(g));
    }

    /// Looks up a resource by group, version and plural.
    pub fn get(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceDef>> {
        self.by_gvr
            .get(&(group.to_string(), version.to_string(), plural.to_string()))
            .cloned()
    }

    /// Looks up the preferred-version definition of a group/resource.
    pub fn preferred(&self, group: &str, plural: &str) -> Option<Arc<ResourceDef>> {
        self.groups
            .get(group)?
            .iter()
            .find_map(|v| self.get(group, v, plural))
    }

    /// Finds the definition by group and kind, at the given version if served.
    pub fn by_kind(&self, api_version: &str, kind: &str) -> Option<Arc<ResourceDef>> {
        let (group, version) = split_api_version(api_version);
        self.by_gvr
            .values()
            .find(|d| d.group == group && d.version == version && d.kind == kind)
            .cloned()
    }

    /// Groups in registration order with their versions, preferred first.
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        self.group_order
            .iter()
            .filter_map(|g| self.groups.get(g).map(|v| (g.clone(), v.clone())))
            .collect()
    }

    /// All definitions at one group/version, sorted by plural.
    pub fn resources_of(&self, group: &str, version: &str) -> Vec<Arc<ResourceDef>> {
        let mut v: Vec<_> = self
            .by_gvr
            .values()
            .filter(|d| d.group == group && d.version == version)
            .cloned()
            .collect();
        v.sort_by(|a, b| a.plural.cmp(&b.plural));
        v
    }

    /// Every definition.
    pub fn all(&self) -> impl Iterator<Item = &Arc<ResourceDef>> {
        self.by_gvr.values()
    }
}

/// Splits `group/version` (or `v1` for core) into its parts.
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.rsplit_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    }
}

/// Kubernetes version priority: GA > beta > alpha, higher numbers first.
fn version_priority(v: &str) -> (u8, u32, u32) {
    let Some(rest) = v.strip_prefix('v') else {
        return (0, 0, 0);
    };
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let major = digits.parse().unwrap_or(0);
    let tail = &rest[digits.len()..];
    if tail.is_empty() {
        return (3, major, 0);
    }
    let (stage, num) = if let Some(n) = tail.strip_prefix("beta") {
        (2, n)
    } else if let Some(n) = tail.strip_prefix("alpha") {
        (1, n)
    } else {
        return (0, 0, 0);
    };
    (stage, major, num.parse().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_sort_like_kubernetes() {
        let mut v = vec!["v1alpha1", "v2", "v1beta2", "v1", "v1beta1", "foo"];
        v.sort_by_key(|v| std::cmp::Reverse(version_priority(v)));
        assert_eq!(v, vec!["v2", "v1", "v1beta2", "v1beta1", "v1alpha1", "foo"]);
    }
}
