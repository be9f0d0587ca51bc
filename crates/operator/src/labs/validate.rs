//! Pure validation of an Experiment's targets: unique names, known cluster types, claim name
//! lengths, and `depends` as a directed acyclic graph (unknown names and cycles are rejected).

use std::collections::{BTreeMap, BTreeSet};

use agentic_api::labs::{Target, TutorialSpec};

use super::{build::claim_name, config::LabsConfig};
use crate::runtime::names::is_dns_label;

/// Why a spec cannot be run. Each message names the field and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// No targets.
    #[error("spec.targets: at least one target is required")]
    NoTargets,
    /// Two targets share a name.
    #[error(
        "spec.targets[{index}].name: {name:?} is used by more than one target; names must be unique"
    )]
    DuplicateTarget {
        /// Position of the second use.
        index: usize,
        /// The name.
        name: String,
    },
    /// A target name that is not a DNS label.
    #[error("spec.targets[{index}].name: {name:?} must be a lowercase DNS label (a-z, 0-9, '-')")]
    BadTargetName {
        /// Position.
        index: usize,
        /// The name.
        name: String,
    },
    /// A cluster type without a claim mapping.
    #[error(
        "spec.targets[{index}].cluster.type: {type_:?} has no claim mapping; allowed: {allowed}"
    )]
    UnknownClusterType {
        /// Position.
        index: usize,
        /// The type.
        type_: String,
        /// The configured types.
        allowed: String,
    },
    /// `<experiment>-<target>` is too long for the cluster type.
    #[error(
        "spec.targets[{index}].name: cluster name {claim:?} is {len} characters; {type_} allows at most {max}"
    )]
    NameTooLong {
        /// Position.
        index: usize,
        /// The claim name.
        claim: String,
        /// Its length.
        len: usize,
        /// The cluster type.
        type_: String,
        /// The limit.
        max: usize,
    },
    /// `depends` names a target that does not exist.
    #[error(
        "spec.targets[{index}].depends[{position}]: {dependency:?} is not a target of this experiment; allowed: {allowed}"
    )]
    UnknownDependency {
        /// Position of the target.
        index: usize,
        /// Position of the entry in its `depends`.
        position: usize,
        /// The unknown name.
        dependency: String,
        /// The target names.
        allowed: String,
    },
    /// A tutorial service names a target that does not exist.
    #[error(
        "spec.tutorial.services[{index}].target: {target:?} is not a target of this experiment; allowed: {allowed}"
    )]
    UnknownTutorialTarget {
        /// Position.
        index: usize,
        /// The unknown name.
        target: String,
        /// The target names.
        allowed: String,
    },
    /// The Experiment's name is not a DNS label although it names a namespace (see
    /// [`name_is_a_namespace`]).
    #[error(
        "metadata.name: {name:?} must be a lowercase DNS label (a-z, 0-9, '-'): it names the namespace the components are deployed into and, with two or more provisioned targets, the one on each cluster that holds the other clusters' kubeconfigs"
    )]
    BadExperimentName {
        /// The name.
        name: String,
    },
    /// `<experiment>-validation` does not fit Argo's 63-character Workflow name limit.
    #[error(
        "metadata.name: {name:?} is {len} characters; the Workflow {workflow:?} must fit in 63, so an Experiment name may have at most {max}"
    )]
    ExperimentNameTooLong {
        /// The name.
        name: String,
        /// Its length.
        len: usize,
        /// The Workflow name it gives.
        workflow: String,
        /// The longest Experiment name allowed.
        max: usize,
    },
    /// A number outside what the field allows.
    #[error("{field}: {value} is out of range; allowed: {allowed}")]
    OutOfRange {
        /// The field path.
        field: String,
        /// The value given.
        value: i64,
        /// The allowed range.
        allowed: &'static str,
    },
    /// `depends` forms a cycle.
    #[error(
        "spec.targets[].depends: the dependencies form a cycle: {}; they must form a DAG",
        cycle.join(" -> ")
    )]
    Cycle {
        /// The targets on the cycle, first repeated at the end.
        cycle: Vec<String>,
    },
}

/// Checks the Experiment's own name: its Workflow `<name>-validation` must fit Argo's limit
/// of 63 characters, and when it deploys components (`deploys`) the name must be a DNS label,
/// since it names the namespace they go to.
pub fn experiment_name(name: &str, deploys: bool) -> Result<(), ValidationError> {
    const MAX_WORKFLOW_NAME: usize = 63;
    let workflow = super::build::workflow_name(name);
    if workflow.len() > MAX_WORKFLOW_NAME {
        return Err(ValidationError::ExperimentNameTooLong {
            name: name.to_owned(),
            len: name.len(),
            max: MAX_WORKFLOW_NAME - (workflow.len() - name.len()),
            workflow,
        });
    }
    if deploys && !is_dns_label(name) {
        return Err(ValidationError::BadExperimentName {
            name: name.to_owned(),
        });
    }
    Ok(())
}

/// Whether an Experiment's name becomes a namespace, from its targets' cluster types and
/// whether each deploys something (components or observability): the namespace its
/// components are deployed into, or, with two or more provisioned (non-hub) targets, the one
/// on each target's cluster that holds the other clusters' kubeconfigs.
pub fn name_is_a_namespace<'a>(targets: impl IntoIterator<Item = (&'a str, bool)>) -> bool {
    let mut provisioned = 0;
    for (type_, deploys) in targets {
        if deploys {
            return true;
        }
        if type_ != super::config::HUB {
            provisioned += 1;
        }
    }
    provisioned >= 2
}

/// Checks the targets of experiment `experiment` and returns them in dependency order
/// (dependencies first; ties keep spec order).
pub fn validate(
    experiment: &str,
    targets: &[Target],
    config: &LabsConfig,
) -> Result<Vec<String>, ValidationError> {
    targets_without_config(targets)?;
    targets_with_config(experiment, targets, config)?;
    let known: BTreeSet<&str> = targets.iter().map(|t| t.name.as_str()).collect();
    for (index, t) in targets.iter().enumerate() {
        for (position, d) in t.depends_on().iter().enumerate() {
            if !known.contains(d.as_str()) {
                return Err(ValidationError::UnknownDependency {
                    index,
                    position,
                    dependency: d.clone(),
                    allowed: targets
                        .iter()
                        .map(|t| t.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
        }
    }
    order(targets)
}

/// The checks of [`validate`] that depend on the labs configuration (the admission webhook
/// runs them too): every provisioned target's cluster type has a claim mapping, and its claim
/// name `<experiment>-<target>` fits the mapping's `maxNameLength`.
pub fn targets_with_config(
    experiment: &str,
    targets: &[Target],
    config: &LabsConfig,
) -> Result<(), ValidationError> {
    for (index, t) in targets.iter().enumerate() {
        let type_ = t.cluster.type_.as_str();
        if type_ != super::config::HUB {
            let Some(mapping) = config.cluster_types.get(type_) else {
                let mut allowed: Vec<&str> =
                    config.cluster_types.keys().map(String::as_str).collect();
                allowed.push(super::config::HUB);
                return Err(ValidationError::UnknownClusterType {
                    index,
                    type_: type_.to_owned(),
                    allowed: allowed.join(", "),
                });
            };
            let claim = claim_name(experiment, &t.name);
            if claim.len() > mapping.max_name_length {
                return Err(ValidationError::NameTooLong {
                    index,
                    len: claim.len(),
                    claim,
                    type_: type_.to_owned(),
                    max: mapping.max_name_length,
                });
            }
        }
    }
    Ok(())
}

/// The checks of [`validate`] that need no configuration (the admission webhook runs them
/// too): at least one target, names that are unique DNS labels, and `nodeCount`/`diskSizeGb`
/// of 1 or more on provisioned targets.
pub fn targets_without_config(targets: &[Target]) -> Result<(), ValidationError> {
    if targets.is_empty() {
        return Err(ValidationError::NoTargets);
    }
    let mut seen = BTreeSet::new();
    for (index, t) in targets.iter().enumerate() {
        if !is_dns_label(&t.name) {
            return Err(ValidationError::BadTargetName {
                index,
                name: t.name.clone(),
            });
        }
        if !seen.insert(t.name.as_str()) {
            return Err(ValidationError::DuplicateTarget {
                index,
                name: t.name.clone(),
            });
        }
        // The hub is not provisioned: its cluster fields are not used, so not checked.
        if t.cluster.type_.as_str() == super::config::HUB {
            continue;
        }
        for (field, value) in [
            ("nodeCount", t.cluster.node_count),
            ("diskSizeGb", t.cluster.disk_size_gb),
        ] {
            if let Some(value) = value.filter(|v| *v < 1) {
                return Err(ValidationError::OutOfRange {
                    field: format!("spec.targets[{index}].cluster.{field}"),
                    value,
                    allowed: "1 or more",
                });
            }
        }
    }
    Ok(())
}

/// Checks that every `spec.tutorial.services[].target` names a target.
pub fn validate_tutorial(
    tutorial: Option<&TutorialSpec>,
    targets: &[Target],
) -> Result<(), ValidationError> {
    let services = tutorial
        .and_then(|t| t.services.as_deref())
        .unwrap_or_default();
    for (index, s) in services.iter().enumerate() {
        if let Some(port) = s.port.filter(|p| !(1..=65535).contains(p)) {
            return Err(ValidationError::OutOfRange {
                field: format!("spec.tutorial.services[{index}].port"),
                value: port,
                allowed: "1 to 65535",
            });
        }
        if !targets.iter().any(|t| t.name == s.target) {
            return Err(ValidationError::UnknownTutorialTarget {
                index,
                target: s.target.clone(),
                allowed: targets
                    .iter()
                    .map(|t| t.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
    }
    Ok(())
}

/// Topological order of the targets by `depends`, or the first cycle found.
fn order(targets: &[Target]) -> Result<Vec<String>, ValidationError> {
    let deps: BTreeMap<&str, &[String]> = targets
        .iter()
        .map(|t| (t.name.as_str(), t.depends_on()))
        .collect();
    // 0 = unvisited, 1 = on the stack, 2 = done.
    let mut state: BTreeMap<&str, u8> = BTreeMap::new();
    let mut out = Vec::with_capacity(targets.len());
    let mut stack: Vec<&str> = Vec::new();
    for t in targets {
        visit(t.name.as_str(), &deps, &mut state, &mut stack, &mut out)?;
    }
    Ok(out)
}

/// Depth-first visit of `name` for [`order`].
fn visit<'a>(
    name: &'a str,
    deps: &BTreeMap<&'a str, &'a [String]>,
    state: &mut BTreeMap<&'a str, u8>,
    stack: &mut Vec<&'a str>,
    out: &mut Vec<String>,
) -> Result<(), ValidationError> {
    match state.get(name).copied().unwrap_or(0) {
        2 => return Ok(()),
        1 => {
            let start = stack.iter().position(|n| *n == name).unwrap_or(0);
            let mut cycle: Vec<String> = stack[start..].iter().map(|s| (*s).to_owned()).collect();
            cycle.push(name.to_owned());
            return Err(ValidationError::Cycle { cycle });
        }
        _ => {}
    }
    state.insert(name, 1);
    stack.push(name);
    for d in deps.get(name).copied().unwrap_or_default() {
        visit(d.as_str(), deps, state, stack, out)?;
    }
    stack.pop();
    state.insert(name, 2);
    out.push(name.to_owned());
    Ok(())
}

#[cfg(test)]
mod tests {
    use agentic_api::labs::{ClusterSpec, ClusterType};

    use super::*;

    fn target(name: &str, type_: ClusterType, depends: &[&str]) -> Target {
        Target {
            name: name.into(),
            cluster: ClusterSpec {
                type_,
                ..ClusterSpec::default()
            },
            depends: (!depends.is_empty())
                .then(|| depends.iter().map(|d| (*d).to_owned()).collect()),
            ..Target::default()
        }
    }

    #[test]
    fn experiment_names_fit_the_workflow_and_the_namespace() {
        assert_eq!(experiment_name(&"a".repeat(52), true), Ok(()));
        let long = experiment_name(&"a".repeat(53), false).unwrap_err();
        assert!(
            long.to_string()
                .contains("is 53 characters; the Workflow \""),
            "{long}"
        );
        assert!(long.to_string().contains("at most 52"), "{long}");
        // A dot names a valid Workflow but not a namespace: refused only when something is
        // deployed into that namespace.
        assert_eq!(experiment_name("gw.v2", false), Ok(()));
        assert!(!name_is_a_namespace([("hub", false), ("gke", false)]));
        assert!(name_is_a_namespace([("hub", true), ("gke", false)]));
        assert!(name_is_a_namespace([("gke", false), ("talos", false)]));
        assert!(!name_is_a_namespace([]));
        let dotted = experiment_name("gw.v2", true).unwrap_err();
        assert!(
            dotted
                .to_string()
                .starts_with("metadata.name: \"gw.v2\" must be a lowercase DNS label"),
            "{dotted}"
        );
    }

    #[test]
    fn orders_dependencies_first() {
        let c = LabsConfig::default();
        let t = [
            target("loadgen", ClusterType::Hub, &["app"]),
            target("app", ClusterType::Gke, &[]),
            target("report", ClusterType::Hub, &["loadgen", "app"]),
        ];
        assert_eq!(
            validate("gw", &t, &c).unwrap(),
            ["app", "loadgen", "report"]
        );
    }

    #[test]
    fn rejects_unknown_dependency_and_cycles() {
        let c = LabsConfig::default();
        let err = validate("e", &[target("a", ClusterType::Hub, &["ghost"])], &c).unwrap_err();
        assert!(
            matches!(err, ValidationError::UnknownDependency { ref dependency, .. } if dependency == "ghost")
        );
        assert!(
            err.to_string().contains("spec.targets[0].depends[0]"),
            "{err}"
        );

        let t = [
            target("a", ClusterType::Hub, &["c"]),
            target("b", ClusterType::Hub, &["a"]),
            target("c", ClusterType::Hub, &["b"]),
        ];
        let err = validate("e", &t, &c).unwrap_err();
        assert_eq!(
            err.to_string(),
            "spec.targets[].depends: the dependencies form a cycle: a -> c -> b -> a; they must form a DAG"
        );
        let err = validate("e", &[target("a", ClusterType::Hub, &["a"])], &c).unwrap_err();
        assert!(matches!(err, ValidationError::Cycle { ref cycle } if cycle == &["a", "a"]));
    }

    #[test]
    fn rejects_duplicates_bad_names_and_long_claims() {
        let c = LabsConfig::default();
        assert_eq!(
            validate("e", &[], &c).unwrap_err(),
            ValidationError::NoTargets
        );
        let t = [
            target("a", ClusterType::Hub, &[]),
            target("a", ClusterType::Gke, &[]),
        ];
        assert!(matches!(
            validate("e", &t, &c).unwrap_err(),
            ValidationError::DuplicateTarget { index: 1, .. }
        ));
        let t = [target("App", ClusterType::Hub, &[])];
        assert!(matches!(
            validate("e", &t, &c).unwrap_err(),
            ValidationError::BadTargetName { .. }
        ));
        // gke claims are limited to 29 characters (upstream's GCP name guard).
        let t = [target("application", ClusterType::Gke, &[])];
        let err = validate("gateway-tutorial-x", &t, &c).unwrap_err();
        assert!(
            matches!(
                err,
                ValidationError::NameTooLong {
                    len: 30,
                    max: 29,
                    ..
                }
            ),
            "{err}"
        );
        // The same name on the hub needs no claim.
        let t = [target("application", ClusterType::Hub, &[])];
        assert!(validate("gateway-tutorial-x", &t, &c).is_ok());
    }

    #[test]
    fn tutorial_services_must_name_a_target() {
        let t = [target("app", ClusterType::Hub, &[])];
        let tutorial = |target: &str| TutorialSpec {
            services: Some(vec![agentic_api::labs::TutorialServiceRef {
                name: "grafana".into(),
                target: target.into(),
                service: "grafana".into(),
                namespace: "monitoring".into(),
                port: None,
            }]),
            ..TutorialSpec::default()
        };
        assert!(validate_tutorial(None, &t).is_ok());
        assert!(validate_tutorial(Some(&tutorial("app")), &t).is_ok());
        let err = validate_tutorial(Some(&tutorial("ghost")), &t).unwrap_err();
        assert_eq!(
            err.to_string(),
            "spec.tutorial.services[0].target: \"ghost\" is not a target of this experiment; allowed: app"
        );
    }

    #[test]
    fn sizes_and_ports_must_be_in_range() {
        let c = LabsConfig::default();
        let mut gke = target("app", ClusterType::Gke, &[]);
        gke.cluster.node_count = Some(3);
        gke.cluster.disk_size_gb = Some(50);
        assert!(validate("e", std::slice::from_ref(&gke), &c).is_ok());
        gke.cluster.node_count = Some(0);
        assert_eq!(
            validate("e", std::slice::from_ref(&gke), &c)
                .unwrap_err()
                .to_string(),
            "spec.targets[0].cluster.nodeCount: 0 is out of range; allowed: 1 or more"
        );
        gke.cluster.node_count = None;
        gke.cluster.disk_size_gb = Some(-5);
        assert_eq!(
            validate("e", std::slice::from_ref(&gke), &c)
                .unwrap_err()
                .to_string(),
            "spec.targets[0].cluster.diskSizeGb: -5 is out of range; allowed: 1 or more"
        );
        // The hub is not provisioned: its cluster fields are not used, so not checked.
        let mut hub = target("hub", ClusterType::Hub, &[]);
        hub.cluster.node_count = Some(0);
        assert!(validate("e", &[hub], &c).is_ok());

        let t = [target("app", ClusterType::Hub, &[])];
        let with_port = |port: i64| TutorialSpec {
            services: Some(vec![agentic_api::labs::TutorialServiceRef {
                name: "grafana".into(),
                target: "app".into(),
                service: "grafana".into(),
                namespace: "monitoring".into(),
                port: Some(port),
            }]),
            ..TutorialSpec::default()
        };
        assert!(validate_tutorial(Some(&with_port(3000)), &t).is_ok());
        for bad in [0, 65536] {
            assert_eq!(
                validate_tutorial(Some(&with_port(bad)), &t)
                    .unwrap_err()
                    .to_string(),
                format!(
                    "spec.tutorial.services[0].port: {bad} is out of range; allowed: 1 to 65535"
                )
            );
        }
    }

    #[test]
    fn unknown_cluster_type_lists_the_configured_ones() {
        let mut c = LabsConfig::default();
        c.cluster_types.remove("gke");
        let err = validate("e", &[target("a", ClusterType::Gke, &[])], &c).unwrap_err();
        assert_eq!(
            err.to_string(),
            "spec.targets[0].cluster.type: \"gke\" has no claim mapping; allowed: talos, vcluster, hub"
        );
    }
}
