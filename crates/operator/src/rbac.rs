//! The operator's own RBAC, generated from one table of rules.
//!
//! [`CLUSTER_RULES`] lists every permission the controllers use across namespaces, each with
//! the reason it is needed; [`LEADER_ELECTION_RULES`] is what the Lease needs in the operator's
//! namespace. [`manifests`] renders them, with the `ServiceAccount` and the bindings, as the
//! files of `config/rbac/` (kustomize-ready); `agentic-operator rbac` prints them and
//! `agentic-operator rbac --out-dir config/rbac` rewrites that folder. A test fails when the
//! committed files differ from this table.
//!
//! Kubernetes only lets a subject create a Role or `RoleBinding` granting permissions it holds
//! itself (or with `escalate`/`bind`). The operator creates the per-session Role (sessions,
//! secrets, `selfsubjectaccessreviews`, `MLflow` experiments) and the scheduled-session Role
//! (sessions), so it holds those permissions; for the project group bindings it has `bind` on
//! exactly the three `ambient-project-*` `ClusterRoles` instead of holding their contents.

use std::{collections::BTreeMap, fmt::Write as _, path::Path};

use k8s_openapi::{
    api::{
        core::v1::ServiceAccount,
        rbac::v1::{
            ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
        },
    },
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use serde::Serialize;

/// Name of the `ServiceAccount`, `ClusterRole` and `ClusterRoleBinding`.
pub const NAME: &str = "agentic-operator";
/// Namespace the operator is deployed into (upstream's `ambient-code`).
pub const NAMESPACE: &str = "ambient-code";
/// Name of the leader-election `Role` and `RoleBinding`.
pub const LEADER_ELECTION_NAME: &str = "agentic-operator-leader-election";

/// One RBAC rule and why the operator needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// API groups (`""` is the core group).
    pub api_groups: &'static [&'static str],
    /// Resources, with `/subresource` where needed.
    pub resources: &'static [&'static str],
    /// Object names the rule is limited to (empty: all).
    pub resource_names: &'static [&'static str],
    /// Verbs.
    pub verbs: &'static [&'static str],
    /// Who uses it and what for (rendered as a comment, not into the object).
    pub reason: &'static str,
}

const fn rule(
    api_groups: &'static [&'static str],
    resources: &'static [&'static str],
    verbs: &'static [&'static str],
    reason: &'static str,
) -> Rule {
    Rule {
        api_groups,
        resources,
        resource_names: &[],
        verbs,
        reason,
    }
}

/// Every cluster-wide permission of the operator.
pub const CLUSTER_RULES: &[Rule] = &[
    // Runtime.
    rule(
        &["events.k8s.io"],
        &["events"],
        &["create", "patch"],
        "runtime: Events of every controller (kube's recorder creates, then patches series)",
    ),
    // Sessions family: namespaces and ProjectSettings.
    rule(
        &[""],
        &["namespaces"],
        &["list", "watch"],
        "sessions: watch namespaces labelled ambient-code.io/managed=true",
    ),
    rule(
        &["vteam.ambient-code"],
        &["projectsettings"],
        &["list", "watch", "create"],
        "sessions: watch ProjectSettings; create the default one in managed namespaces",
    ),
    rule(
        &["vteam.ambient-code"],
        &["projectsettings/status"],
        &["patch"],
        "sessions: ProjectSettings status (merge patch)",
    ),
    rule(
        &["vteam.ambient-code"],
        &["projectsettings/finalizers", "agenticsessions/finalizers"],
        &["update"],
        "sessions: owner references with blockOwnerDeletion on owned objects",
    ),
    Rule {
        api_groups: &["rbac.authorization.k8s.io"],
        resources: &["clusterroles"],
        resource_names: &[
            "ambient-project-admin",
            "ambient-project-edit",
            "ambient-project-view",
        ],
        verbs: &["bind"],
        reason: "sessions: bind project groups to the ambient-project-* ClusterRoles",
    },
    rule(
        &["rbac.authorization.k8s.io"],
        &["roles", "rolebindings"],
        &["list", "watch", "create", "patch", "delete"],
        "sessions: group RoleBindings, scheduled-session and per-session Roles/RoleBindings (server-side apply; pruning; roleRef changes)",
    ),
    rule(
        &[""],
        &["serviceaccounts"],
        &["list", "watch", "create", "patch"],
        "sessions: ambient-session-trigger and per-session ServiceAccounts (server-side apply)",
    ),
    rule(
        &[""],
        &["serviceaccounts/token"],
        &["create"],
        "sessions: runner tokens through TokenRequest",
    ),
    rule(
        &[""],
        &["limitranges"],
        &["list", "watch", "create"],
        "sessions: the ambient-default-limits LimitRange (created once)",
    ),
    // Sessions family: AgenticSession.
    rule(
        &["vteam.ambient-code"],
        &["agenticsessions"],
        &["get", "list", "watch", "create", "update", "patch"],
        "sessions: watch AgenticSessions and patch request annotations; get/create/update are held so the per-session and scheduled-session Roles can grant them",
    ),
    rule(
        &["vteam.ambient-code"],
        &["agenticsessions/status"],
        &["patch"],
        "sessions: AgenticSession status (merge patch)",
    ),
    rule(
        &["batch"],
        &["jobs"],
        &["get", "list", "watch", "create", "patch", "delete"],
        "sessions: runner Jobs (server-side apply; deleted on stop; get reads the spec generation a running runner started with)",
    ),
    rule(
        &[""],
        &["pods"],
        &["list", "watch", "delete"],
        "sessions: runner pod state (label-selected watch); stray runner pods are deleted",
    ),
    rule(
        &[""],
        &["services"],
        &["create"],
        "sessions: per-session Services (owned by the Job, so garbage-collected with it)",
    ),
    rule(
        &[""],
        &["secrets"],
        &["get", "list", "watch", "create", "patch", "delete"],
        "sessions: ambient-runner-secrets check, runner-token Secrets (label-selected metadata watch, refresh), the project's ambient-non-vertex-integrations (STORAGE_MODE) and the backend's minio-credentials read when a run starts, ambient-vertex, ambient-admin-langfuse-secret and ambient-admin-mlflow-observability-secret copied into session namespaces, refreshed and deleted when unused; get is also held so the per-session Role can grant it",
    ),
    rule(
        &[""],
        &["configmaps"],
        &["get"],
        "sessions: the optional trusted-ca-bundle ConfigMap of a session namespace, mounted into runner pods",
    ),
    rule(
        &["networking.k8s.io"],
        &["networkpolicies"],
        &["get", "create", "patch"],
        "sessions: the runner-allow-backend-only NetworkPolicy of each session namespace (server-side apply when missing or changed)",
    ),
    rule(
        &["authorization.k8s.io"],
        &["selfsubjectaccessreviews"],
        &["create"],
        "sessions: held so the per-session Role can grant it",
    ),
    rule(
        &["mlflow.kubeflow.org"],
        &["experiments"],
        &["get", "list", "update"],
        "sessions: held so the per-session Role can grant it (MLflow tracing; runner pods use the per-session ServiceAccount when the MLflow Secret asks for Kubernetes authentication)",
    ),
    // Evaluations family.
    rule(
        &["testbench.agentic-layer.ai"],
        &["experiments"],
        &["get", "list", "watch", "patch"],
        "evaluations: watch Experiments; add and remove the Testkube cleanup finalizer",
    ),
    rule(
        &["testbench.agentic-layer.ai"],
        &["experiments/status"],
        &["patch"],
        "evaluations: Experiment status (merge patch)",
    ),
    rule(
        &["testbench.agentic-layer.ai"],
        &["experiments/finalizers"],
        &["update"],
        "evaluations: owner references with blockOwnerDeletion on generated objects",
    ),
    rule(
        &[""],
        &["configmaps"],
        &[
            "get", "list", "watch", "create", "patch", "update", "delete",
        ],
        "evaluations: the <exp>-experiment ConfigMap (server-side apply) and the otel-config watch",
    ),
    rule(
        &["testworkflows.testkube.io"],
        &["testworkflows"],
        &[
            "get", "list", "watch", "create", "patch", "update", "delete",
        ],
        "evaluations: the generated TestWorkflow (server-side apply; removed with the Experiment)",
    ),
    rule(
        &["tests.testkube.io"],
        &["testtriggers"],
        &[
            "get", "list", "watch", "create", "patch", "update", "delete",
        ],
        "evaluations: the optional TestTrigger (server-side apply; deleted when disabled)",
    ),
    rule(
        &["runtime.agentic-layer.ai"],
        &["agents"],
        &["get", "list", "watch"],
        "evaluations: resolve the agent URL from the Agent's status and ports",
    ),
    rule(
        &["runtime.agentic-layer.ai"],
        &["aigateways"],
        &["get", "list", "watch"],
        "evaluations: the AI gateway the evaluate phase uses (spec.aiGatewayRef or the default)",
    ),
    // Labs family.
    rule(
        &["experiments.illm.io"],
        &["experiments"],
        &["get", "list", "watch", "patch"],
        "labs: watch Experiments; add and release the experiments.illm.io/finalizer",
    ),
    rule(
        &["experiments.illm.io"],
        &["experiments/status"],
        &["patch"],
        "labs: Experiment status (merge patch, so YAML-only status fields survive)",
    ),
    rule(
        &["experiments.illm.io"],
        &["experiments/finalizers"],
        &["update"],
        "labs: owner references with blockOwnerDeletion on children in the Experiment's namespace",
    ),
    rule(
        &["experiments.illm.io"],
        &["components"],
        &["list", "watch"],
        "labs: resolve ComponentRefs to cluster-scoped Components",
    ),
    rule(
        &["illm.io"],
        &["gkeclusters", "talosclusters", "vclusters"],
        &["get", "list", "watch", "create", "patch", "delete"],
        "labs: Crossplane cluster claims of the shipped cluster-type mappings (add the claim kinds of a custom mapping)",
    ),
    rule(
        &["illm.io"],
        &["xgkeclusters", "xtalosclusters", "xvclusters"],
        &["get"],
        "labs: the composite a claim names in spec.resourceRef, checked to belong to that claim before its crossplane-system connection Secret is read (add the composite kinds of a custom mapping)",
    ),
    rule(
        &["argoproj.io"],
        &["applications", "workflows"],
        &["get", "list", "watch", "create", "patch", "delete"],
        "labs: one Argo CD Application per target and the experiment's Argo Workflow",
    ),
    rule(
        &[""],
        &["secrets"],
        &["delete"],
        "labs: Argo CD cluster registration Secrets and tutorial kubeconfig Secrets are removed at cleanup (ConfigMap rights come from the evaluations rule: Grafana datasources)",
    ),
    rule(
        &[""],
        &["namespaces"],
        &["get", "create", "delete"],
        "labs: the hub namespace <experiment> of an Experiment with a hub target, created with upstream's labels unless one exists and deleted at cleanup when this Experiment created it (list comes from the sessions rule)",
    ),
    rule(
        &[""],
        &["services"],
        &["get"],
        "labs: hub Services named by spec.tutorial.services, resolved to their address in status.tutorialStatus",
    ),
];

/// What leader election needs in the operator's namespace.
pub const LEADER_ELECTION_RULES: &[Rule] = &[rule(
    &["coordination.k8s.io"],
    &["leases"],
    &["get", "create", "update"],
    "runtime: the leader-election Lease",
)];

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn policy_rules(rules: &[Rule]) -> Vec<PolicyRule> {
    rules
        .iter()
        .map(|r| PolicyRule {
            api_groups: Some(strings(r.api_groups)),
            resources: Some(strings(r.resources)),
            resource_names: (!r.resource_names.is_empty()).then(|| strings(r.resource_names)),
            verbs: strings(r.verbs),
            non_resource_urls: None,
        })
        .collect()
}

fn labels() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), NAME.to_owned()),
        (
            "app.kubernetes.io/managed-by".to_owned(),
            "kustomize".to_owned(),
        ),
    ])
}

fn meta(name: &str, namespace: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: namespace.map(str::to_owned),
        labels: Some(labels()),
        ..ObjectMeta::default()
    }
}

fn operator_subject() -> Subject {
    Subject {
        api_group: None,
        kind: "ServiceAccount".into(),
        name: NAME.into(),
        namespace: Some(NAMESPACE.into()),
    }
}

/// The operator's `ServiceAccount`.
pub fn service_account() -> ServiceAccount {
    ServiceAccount {
        metadata: meta(NAME, Some(NAMESPACE)),
        ..ServiceAccount::default()
    }
}

/// The `ClusterRole` built from [`CLUSTER_RULES`].
pub fn cluster_role() -> ClusterRole {
    ClusterRole {
        metadata: meta(NAME, None),
        rules: Some(policy_rules(CLUSTER_RULES)),
        aggregation_rule: None,
    }
}

/// Binds [`cluster_role`] to the operator's `ServiceAccount`.
pub fn cluster_role_binding() -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: meta(NAME, None),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: NAME.into(),
        },
        subjects: Some(vec![operator_subject()]),
    }
}

/// The leader-election `Role` built from [`LEADER_ELECTION_RULES`].
pub fn leader_election_role() -> Role {
    Role {
        metadata: meta(LEADER_ELECTION_NAME, Some(NAMESPACE)),
        rules: Some(policy_rules(LEADER_ELECTION_RULES)),
    }
}

/// Binds [`leader_election_role`] to the operator's `ServiceAccount`.
pub fn leader_election_role_binding() -> RoleBinding {
    RoleBinding {
        metadata: meta(LEADER_ELECTION_NAME, Some(NAMESPACE)),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: LEADER_ELECTION_NAME.into(),
        },
        subjects: Some(vec![operator_subject()]),
    }
}

/// Errors rendering or writing the RBAC manifests.
#[derive(Debug, thiserror::Error)]
pub enum RbacError {
    /// An object could not be rendered.
    #[error("cannot render {file} as YAML: {source}")]
    Render {
        /// The file being rendered.
        file: &'static str,
        /// The serializer error.
        #[source]
        source: serde_yaml::Error,
    },
    /// A file could not be written.
    #[error("cannot write {path}: {source}; check that the directory is writable")]
    Write {
        /// The path.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

const HEADER: &str = "# Generated by `agentic-operator rbac --out-dir config/rbac` from crates/operator/src/rbac.rs; do not edit.\n";

fn document<T: Serialize>(file: &'static str, object: &T) -> Result<String, RbacError> {
    serde_yaml::to_string(object).map_err(|source| RbacError::Render { file, source })
}

fn commented(rules: &[Rule]) -> String {
    let mut out = String::from("# Rules, in order:\n");
    for (index, rule) in rules.iter().enumerate() {
        let _ = writeln!(out, "#   {}. {}", index + 1, rule.reason);
    }
    out
}

/// The file names of the object manifests, in kustomization order.
pub const RESOURCE_FILES: [&str; 5] = [
    "service_account.yaml",
    "role.yaml",
    "role_binding.yaml",
    "leader_election_role.yaml",
    "leader_election_role_binding.yaml",
];

/// Every file of `config/rbac/` with its contents, `kustomization.yaml` last.
pub fn manifests() -> Result<Vec<(&'static str, String)>, RbacError> {
    let [sa, role, binding, le_role, le_binding] = RESOURCE_FILES;
    let mut files = vec![
        (sa, format!("{HEADER}{}", document(sa, &service_account())?)),
        (
            role,
            format!(
                "{HEADER}{}{}",
                commented(CLUSTER_RULES),
                document(role, &cluster_role())?
            ),
        ),
        (
            binding,
            format!("{HEADER}{}", document(binding, &cluster_role_binding())?),
        ),
        (
            le_role,
            format!(
                "{HEADER}{}{}",
                commented(LEADER_ELECTION_RULES),
                document(le_role, &leader_election_role())?
            ),
        ),
        (
            le_binding,
            format!(
                "{HEADER}{}",
                document(le_binding, &leader_election_role_binding())?
            ),
        ),
    ];
    let mut kustomization = format!(
        "{HEADER}apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: {NAMESPACE}\nresources:\n"
    );
    for file in RESOURCE_FILES {
        let _ = writeln!(kustomization, "- {file}");
    }
    files.push(("kustomization.yaml", kustomization));
    Ok(files)
}

/// Every object manifest as one multi-document YAML stream (`agentic-operator rbac`).
pub fn manifests_yaml() -> Result<String, RbacError> {
    let mut out = String::new();
    for (file, text) in manifests()? {
        if file == "kustomization.yaml" {
            continue;
        }
        out.push_str("---\n");
        out.push_str(&text);
    }
    Ok(out)
}

/// Writes every file of [`manifests`] into `dir` (creating it), returning the paths.
pub fn write_manifests(dir: &Path) -> Result<Vec<std::path::PathBuf>, RbacError> {
    std::fs::create_dir_all(dir).map_err(|source| RbacError::Write {
        path: dir.display().to_string(),
        source,
    })?;
    let mut written = Vec::new();
    for (file, text) in manifests()? {
        let path = dir.join(file);
        std::fs::write(&path, text).map_err(|source| RbacError::Write {
            path: path.display().to_string(),
            source,
        })?;
        written.push(path);
    }
    Ok(written)
}

/// Runs `agentic-operator rbac [--out-dir DIR]` when `args` (without the program name) start
/// with `rbac`; returns `None` for any other command line. Prints the manifests to stdout, or
/// writes the `config/rbac/` files into `DIR` and prints their paths.
pub fn command(args: &[String]) -> Option<std::process::ExitCode> {
    use std::process::ExitCode;
    if args.first().map(String::as_str) != Some("rbac") {
        return None;
    }
    let usage = "usage: agentic-operator rbac [--out-dir DIR]\n\nPrints the operator's ServiceAccount, ClusterRole, ClusterRoleBinding and leader-election Role/RoleBinding as YAML; with --out-dir, writes the kustomize-ready files of config/rbac/ into DIR.";
    let out_dir = match &args[1..] {
        [] => None,
        [flag, dir] if flag == "--out-dir" => Some(dir.clone()),
        [flag] if flag.starts_with("--out-dir=") => {
            Some(flag.trim_start_matches("--out-dir=").to_owned())
        }
        [flag] if flag == "--help" || flag == "-h" => {
            println!("{usage}");
            return Some(ExitCode::SUCCESS);
        }
        _ => {
            eprintln!("error: unexpected arguments to rbac\n\n{usage}");
            return Some(ExitCode::from(2));
        }
    };
    let result = match out_dir {
        None => manifests_yaml().map(|yaml| print!("{yaml}")),
        Some(dir) => write_manifests(Path::new(&dir)).map(|paths| {
            for path in paths {
                println!("{}", path.display());
            }
        }),
    };
    Some(match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_dir() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/rbac")
    }

    #[test]
    fn committed_config_rbac_matches_the_rule_table() {
        for (file, text) in manifests().unwrap() {
            let path = config_dir().join(file);
            let committed = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                committed == text,
                "{} is stale; regenerate with `cargo run -p agentic-operator -- rbac --out-dir config/rbac`",
                path.display()
            );
        }
    }

    #[test]
    fn every_rule_is_specific_and_explained() {
        for rule in CLUSTER_RULES.iter().chain(LEADER_ELECTION_RULES) {
            assert!(!rule.reason.is_empty());
            for list in [rule.api_groups, rule.resources, rule.verbs] {
                assert!(!list.is_empty(), "{rule:?}");
                assert!(!list.contains(&"*"), "no wildcards: {rule:?}");
            }
            assert!(!rule.verbs.contains(&"escalate"), "{rule:?}");
        }
        let leases = CLUSTER_RULES
            .iter()
            .any(|r| r.resources.contains(&"leases"));
        assert!(!leases, "Lease access belongs in the namespaced Role only");
    }

    #[test]
    fn bind_is_limited_to_the_project_cluster_roles() {
        let role = cluster_role();
        let bind: Vec<_> = role
            .rules
            .unwrap()
            .into_iter()
            .filter(|r| r.verbs.contains(&"bind".to_owned()))
            .collect();
        assert_eq!(bind.len(), 1);
        assert_eq!(
            bind[0].resource_names.as_deref().unwrap(),
            [
                "ambient-project-admin",
                "ambient-project-edit",
                "ambient-project-view"
            ]
        );
    }

    #[test]
    fn command_parses_only_its_own_arguments() {
        assert!(command(&["run".into()]).is_none());
        assert!(command(&[]).is_none());
        assert_eq!(
            command(&["rbac".into(), "--bogus".into()]),
            Some(std::process::ExitCode::from(2))
        );
    }
}
