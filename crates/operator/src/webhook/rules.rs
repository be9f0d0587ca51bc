//! Pure admission rules: what the validating webhook accepts, warns about and rejects, for
//! each kind it serves. The server looks up what a rule needs (whether an Agent exists) and
//! passes it in, so every rule is a plain function of the object.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::evaluations::validate;
use crate::labs::config::LabsConfig;

/// The outcome of one admission check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Why the object is rejected, one entry per field; empty when allowed.
    pub denials: Vec<String>,
    /// Warnings shown to the user (`Warning:` lines in kubectl).
    pub warnings: Vec<String>,
}

impl Verdict {
    /// Whether the object is admitted.
    pub fn allowed(&self) -> bool {
        self.denials.is_empty()
    }

    /// The denial message: every rejected field, separated by `; `.
    pub fn message(&self) -> String {
        self.denials.join("; ")
    }
}

/// What the server found when it looked for the Agent named by `spec.agentRef`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentLookup {
    /// The Agent exists.
    Found,
    /// The Agent CRD is installed and the Agent does not exist.
    NotFound,
    /// The `runtime.agentic-layer.ai` Agent CRD is not installed.
    CrdNotInstalled,
    /// The lookup failed (the message says why).
    Failed(String),
    /// No lookup was made (the spec names no agent).
    Skipped,
}

/// Where the reference at `field` (an object with `name` and `namespace`) points:
/// `(namespace, name)`, the namespace defaulting to the object's; `None` without a name.
fn reference(object: &Value, field: &str) -> Option<(String, String)> {
    let name = object
        .pointer(&format!("{field}/name"))
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())?;
    let namespace = object
        .pointer(&format!("{field}/namespace"))
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .or_else(|| {
            object
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
        })
        .unwrap_or("default");
    Some((namespace.to_owned(), name.to_owned()))
}

/// Where `spec.agentRef` points: `(namespace, name)`, the namespace defaulting to the object's.
pub fn agent_ref(object: &Value) -> Option<(String, String)> {
    reference(object, "/spec/agentRef")
}

/// Rules for `testbench.agentic-layer.ai/v1alpha1` `Experiment`.
pub fn evaluation_experiment(object: &Value, agent: &AgentLookup) -> Verdict {
    let spec = object.get("spec").unwrap_or(&Value::Null);
    let findings = validate::validate_spec(spec);
    let mut verdict = Verdict {
        denials: findings.errors.iter().map(ToString::to_string).collect(),
        warnings: findings.warnings,
    };
    let target = agent_ref(object)
        .map(|(ns, name)| format!("{ns}/{name}"))
        .unwrap_or_default();
    match agent {
        AgentLookup::Found | AgentLookup::Skipped => {}
        AgentLookup::NotFound => verdict.denials.push(format!(
            "spec.agentRef: Agent {target} (runtime.agentic-layer.ai/v1alpha1) does not exist; create the Agent first or fix spec.agentRef.name/namespace"
        )),
        AgentLookup::CrdNotInstalled => verdict.warnings.push(format!(
            "spec.agentRef: the Agent CRD (agents.runtime.agentic-layer.ai) is not installed, so Agent {target} cannot be checked; the agent is reached at its Service DNS name"
        )),
        AgentLookup::Failed(why) => verdict.warnings.push(format!(
            "spec.agentRef: could not check that Agent {target} exists: {why}"
        )),
    }
    verdict
}

/// Where `spec.aiGatewayRef` points: `(namespace, name)`, the namespace defaulting to the
/// object's; `None` without a reference (or with an empty name).
pub fn gateway_ref(object: &Value) -> Option<(String, String)> {
    reference(object, "/spec/aiGatewayRef")
}

/// The admission warning for a referenced `AiGateway` that could not be found. Never a denial:
/// the operator applies the workflow anyway and reports `AiGatewayResolved=False`, and picks
/// the gateway up when it is created.
pub fn gateway_warning(target: &str, found: &AgentLookup) -> Option<String> {
    match found {
        AgentLookup::Found | AgentLookup::Skipped => None,
        AgentLookup::NotFound => Some(format!(
            "spec.aiGatewayRef: AiGateway {target} (runtime.agentic-layer.ai/v1alpha1) does not exist; evaluate-template uses its own default base URL until it does"
        )),
        AgentLookup::CrdNotInstalled => Some(format!(
            "spec.aiGatewayRef: the AiGateway CRD (aigateways.runtime.agentic-layer.ai) is not installed, so AiGateway {target} is not used"
        )),
        AgentLookup::Failed(why) => Some(format!(
            "spec.aiGatewayRef: could not check that AiGateway {target} exists: {why}"
        )),
    }
}

/// JSON pointer to an object's `ambient-code.io/desired-phase` annotation.
pub const DESIRED_PHASE_POINTER: &str = "/metadata/annotations/ambient-code.io~1desired-phase";

/// Rules for `vteam.ambient-code/v1alpha1` `AgenticSession` (`old` is the stored object of
/// an update): on create, the name must leave room for the `session-<name>` Service, the
/// `<name>-job` Job and the other generated names (a name never changes, so a session stored
/// before the rule can still be updated); a desired-phase annotation set or changed to
/// anything but `Running` or `Stopped` is refused (a value already stored is let through, so
/// other updates of that session still work).
pub fn agentic_session(object: &Value, old: Option<&Value>) -> Verdict {
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let mut verdict = Verdict::default();
    if old.is_none()
        && !name.is_empty()
        && let Err(message) = crate::sessions::session::names::check(name)
    {
        verdict.denials.push(message);
    }
    let phase = object
        .pointer(DESIRED_PHASE_POINTER)
        .and_then(Value::as_str);
    if let Some(value) = phase
        && phase != old.and_then(|o| o.pointer(DESIRED_PHASE_POINTER)?.as_str())
        && let Err(error) = value.parse::<agentic_api::sessions::DesiredPhase>()
    {
        verdict
            .denials
            .push(crate::sessions::session::controller::invalid_desired_phase(
                &error,
            ));
    }
    verdict
}

/// What the labs configuration refuses in Experiment `object` (an unmapped cluster type, a
/// claim name too long for its type), if anything; nothing before the name is known.
fn lab_config_problem(object: &Value, config: &LabsConfig) -> Option<String> {
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())?;
    let spec: agentic_api::labs::ExperimentSpec =
        serde_json::from_value(object.get("spec")?.clone()).ok()?;
    crate::labs::validate::targets_with_config(name, &spec.targets, config)
        .err()
        .map(|e| e.to_string())
}

/// Rules for `experiments.illm.io/v1alpha1` `Experiment`, with the controller's messages
/// (`crate::labs::validate`): the name fits the Workflow name and, when components are
/// deployed, is a DNS label (it names their namespace); the targets pass the controller's
/// checks that need no configuration (at least one, unique DNS-label names, cluster sizes of 1
/// or more, tutorial services naming a target); every `depends` entry names another target
/// of the same experiment, and the dependencies form no cycle. With the operator's labs
/// configuration (`labs`), also that each provisioned target's cluster type is mapped and its
/// claim name `<experiment>-<target>` fits the type's `maxNameLength`; an update is refused
/// for these only when it introduces the problem (`old` passed), so an Experiment stored
/// under another configuration can still be edited.
pub fn lab_experiment(object: &Value, old: Option<&Value>, labs: Option<&LabsConfig>) -> Verdict {
    use crate::labs::validate::{self, ValidationError};
    let mut verdict = Verdict::default();
    if let Some(config) = labs
        && let Some(problem) = lab_config_problem(object, config)
        && old.is_none_or(|old| lab_config_problem(old, config).is_none())
    {
        verdict.denials.push(problem);
    }
    let targets = object
        .pointer("/spec/targets")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let namespaced = validate::name_is_a_namespace(targets.iter().map(|t| {
        (
            t.pointer("/cluster/type")
                .and_then(Value::as_str)
                .unwrap_or_default(),
            t.get("components")
                .and_then(Value::as_array)
                .is_some_and(|c| !c.is_empty())
                || t.pointer("/observability/enabled") == Some(&Value::Bool(true)),
        )
    }));
    if !name.is_empty()
        && let Err(e) = validate::experiment_name(name, namespaced)
    {
        verdict.denials.push(e.to_string());
    }
    // The API server checked the schema before this webhook is called; a spec that does not
    // read here has no typed checks to fail.
    if let Some(spec) = object
        .get("spec")
        .and_then(|s| serde_json::from_value::<agentic_api::labs::ExperimentSpec>(s.clone()).ok())
    {
        if let Err(e) = validate::targets_without_config(&spec.targets) {
            verdict.denials.push(e.to_string());
        }
        if let Err(e) = validate::validate_tutorial(spec.tutorial.as_ref(), &spec.targets) {
            verdict.denials.push(e.to_string());
        }
    }
    let names: Vec<String> = targets
        .iter()
        .map(|t| {
            t.get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    let known: BTreeSet<&str> = names.iter().map(String::as_str).collect();
    let mut graph: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (index, target) in targets.iter().enumerate() {
        let deps = target
            .get("depends")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for (position, dep) in deps.iter().enumerate() {
            let Some(dep) = dep.as_str() else { continue };
            if let Some(known_dep) = known.get(dep) {
                graph
                    .entry(names[index].as_str())
                    .or_default()
                    .push(known_dep);
            } else {
                verdict.denials.push(
                    ValidationError::UnknownDependency {
                        index,
                        position,
                        dependency: dep.to_owned(),
                        allowed: names.join(", "),
                    }
                    .to_string(),
                );
            }
        }
    }
    if let Some(cycle) = find_cycle(&graph) {
        verdict.denials.push(
            ValidationError::Cycle {
                cycle: cycle.into_iter().map(str::to_owned).collect(),
            }
            .to_string(),
        );
    }
    verdict
}

/// A dependency cycle in `graph`, as the path that closes it (first node repeated at the end).
pub fn find_cycle<'a>(graph: &BTreeMap<&'a str, Vec<&'a str>>) -> Option<Vec<&'a str>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Visiting,
        Done,
    }
    fn visit<'a>(
        node: &'a str,
        graph: &BTreeMap<&'a str, Vec<&'a str>>,
        marks: &mut BTreeMap<&'a str, Mark>,
        path: &mut Vec<&'a str>,
    ) -> Option<Vec<&'a str>> {
        match marks.get(node) {
            Some(Mark::Done) => return None,
            Some(Mark::Visiting) => {
                let start = path.iter().position(|n| *n == node).unwrap_or(0);
                let mut cycle = path[start..].to_vec();
                cycle.push(node);
                return Some(cycle);
            }
            None => {}
        }
        marks.insert(node, Mark::Visiting);
        path.push(node);
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, marks, path) {
                return Some(cycle);
            }
        }
        path.pop();
        marks.insert(node, Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for node in graph.keys() {
        let mut path = Vec::new();
        if let Some(cycle) = visit(node, graph, &mut marks, &mut path) {
            return Some(cycle);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn eval(spec: Value) -> Value {
        let mut object = json!({"metadata": {"name": "e", "namespace": "team"}});
        object["spec"] = spec;
        object
    }

    fn ok_spec() -> Value {
        json!({"agentRef": {"name": "weather-agent"}, "scenarios": [{"name": "s", "steps": [{"input": "hi"}]}]})
    }

    #[test]
    fn gateway_references_and_their_warnings() {
        let with_ref = |r: Value| {
            let mut spec = ok_spec();
            spec["aiGatewayRef"] = r;
            eval(spec)
        };
        assert_eq!(gateway_ref(&eval(ok_spec())), None);
        assert_eq!(gateway_ref(&with_ref(json!({"name": ""}))), None);
        assert_eq!(
            gateway_ref(&with_ref(json!({"name": "g"}))),
            Some(("team".into(), "g".into()))
        );
        assert_eq!(
            gateway_ref(&with_ref(json!({"name": "g", "namespace": "ai"}))),
            Some(("ai".into(), "g".into()))
        );
        assert_eq!(gateway_warning("ai/g", &AgentLookup::Found), None);
        let missing = gateway_warning("ai/g", &AgentLookup::NotFound).unwrap();
        assert!(
            missing.starts_with("spec.aiGatewayRef: AiGateway ai/g")
                && missing.contains("does not exist"),
            "{missing}"
        );
        assert!(
            gateway_warning("ai/g", &AgentLookup::CrdNotInstalled)
                .unwrap()
                .contains("not installed")
        );
        assert!(
            gateway_warning("ai/g", &AgentLookup::Failed("timeout".into()))
                .unwrap()
                .contains("timeout")
        );
    }

    fn session_phase(phase: &str) -> Value {
        json!({"metadata": {"name": "s", "annotations": {"ambient-code.io/desired-phase": phase}}})
    }

    /// A lab Experiment with `targets`, each on the hub unless it names its cluster.
    fn lab(mut targets: Value) -> Value {
        for t in targets.as_array_mut().into_iter().flatten() {
            if t.get("cluster").is_none() {
                t["cluster"] = json!({"type": "hub"});
            }
        }
        let mut object = json!({"metadata": {"name": "x"},
            "spec": {"workflow": {"template": "t", "completion": {"mode": "workflow"}}}});
        object["spec"]["targets"] = targets;
        object
    }

    #[test]
    #[allow(clippy::too_many_lines)] // one table
    fn table() {
        struct Case {
            name: &'static str,
            verdict: Verdict,
            denied_field: Option<&'static str>,
            warning: Option<&'static str>,
        }
        let both = {
            let mut s = ok_spec();
            s["dataset"] = json!({"url": "https://x/d.json"});
            s
        };
        let bad_threshold = {
            let mut s = ok_spec();
            s["defaultThreshold"] = json!(1.2);
            s
        };
        let bad_args = json!({"agentRef": {"name": "a"}, "scenarios": [{"name": "s", "steps": [{"input": "i", "reference": {"toolCalls": [{"name": "t", "args": [1]}]}}]}]});
        let bad_params = json!({"agentRef": {"name": "a"}, "scenarios": [{"name": "s", "steps": [{"input": "i", "metrics": [{"metricName": "m", "parameters": "precision"}]}]}]});
        let cases = vec![
            Case {
                name: "valid experiment",
                verdict: evaluation_experiment(&eval(ok_spec()), &AgentLookup::Found),
                denied_field: None,
                warning: None,
            },
            Case {
                name: "dataset and scenarios",
                verdict: evaluation_experiment(&eval(both), &AgentLookup::Found),
                denied_field: Some("spec.dataset"),
                warning: None,
            },
            Case {
                name: "threshold out of range",
                verdict: evaluation_experiment(&eval(bad_threshold), &AgentLookup::Found),
                denied_field: Some("spec.defaultThreshold"),
                warning: None,
            },
            Case {
                name: "args not an object",
                verdict: evaluation_experiment(&eval(bad_args), &AgentLookup::Found),
                denied_field: Some("spec.scenarios[0].steps[0].reference.toolCalls[0].args"),
                warning: None,
            },
            Case {
                name: "parameters not an object",
                verdict: evaluation_experiment(&eval(bad_params), &AgentLookup::Found),
                denied_field: Some("spec.scenarios[0].steps[0].metrics[0].parameters"),
                warning: None,
            },
            Case {
                name: "missing agent",
                verdict: evaluation_experiment(&eval(ok_spec()), &AgentLookup::NotFound),
                denied_field: Some("spec.agentRef"),
                warning: None,
            },
            Case {
                name: "agent CRD missing",
                verdict: evaluation_experiment(&eval(ok_spec()), &AgentLookup::CrdNotInstalled),
                denied_field: None,
                warning: Some("not installed"),
            },
            Case {
                name: "agent lookup failed",
                verdict: evaluation_experiment(
                    &eval(ok_spec()),
                    &AgentLookup::Failed("timeout".into()),
                ),
                denied_field: None,
                warning: Some("timeout"),
            },
            Case {
                name: "session name fits",
                verdict: agentic_session(&json!({"metadata": {"name": "a".repeat(55)}}), None),
                denied_field: None,
                warning: None,
            },
            Case {
                name: "session name too long for its Service",
                verdict: agentic_session(&json!({"metadata": {"name": "a".repeat(56)}}), None),
                denied_field: Some("Service"),
                warning: None,
            },
            Case {
                name: "stored session with a long name is updated",
                verdict: agentic_session(
                    &json!({"metadata": {"name": "a".repeat(56)}, "spec": {"timeout": 1}}),
                    Some(&json!({"metadata": {"name": "a".repeat(56)}})),
                ),
                denied_field: None,
                warning: None,
            },
            Case {
                name: "session desired phase Stopped",
                verdict: agentic_session(
                    &session_phase("Stopped"),
                    Some(&session_phase("Running")),
                ),
                denied_field: None,
                warning: None,
            },
            Case {
                name: "session created with an unknown desired phase",
                verdict: agentic_session(&session_phase("stopped"), None),
                denied_field: Some(
                    r#"metadata.annotations[ambient-code.io/desired-phase]: unknown value "stopped"; allowed: Running, Stopped"#,
                ),
                warning: None,
            },
            Case {
                name: "session desired phase changed to an unknown value",
                verdict: agentic_session(&session_phase("Paused"), Some(&session_phase("Running"))),
                denied_field: Some(r#"unknown value "Paused""#),
                warning: None,
            },
            Case {
                name: "session keeps an unknown desired phase stored before the webhook",
                verdict: agentic_session(&session_phase("Paused"), Some(&session_phase("Paused"))),
                denied_field: None,
                warning: None,
            },
            Case {
                name: "lab depends ok",
                verdict: lab_experiment(
                    &lab(json!([{"name": "hub"}, {"name": "app", "depends": ["hub"]}])),
                    None,
                    None,
                ),
                denied_field: None,
                warning: None,
            },
            Case {
                name: "lab depends unknown",
                verdict: lab_experiment(
                    &lab(json!([{"name": "hub"}, {"name": "app", "depends": ["db"]}])),
                    None,
                    None,
                ),
                denied_field: Some(
                    r#"spec.targets[1].depends[0]: "db" is not a target of this experiment; allowed: hub, app"#,
                ),
                warning: None,
            },
            Case {
                name: "lab depends on itself",
                verdict: lab_experiment(
                    &lab(json!([{"name": "app", "depends": ["app"]}])),
                    None,
                    None,
                ),
                denied_field: Some(
                    "spec.targets[].depends: the dependencies form a cycle: app -> app; they must form a DAG",
                ),
                warning: None,
            },
            Case {
                name: "lab without targets",
                verdict: lab_experiment(&lab(json!([])), None, None),
                denied_field: Some("spec.targets: at least one target is required"),
                warning: None,
            },
            Case {
                name: "lab target names repeated",
                verdict: lab_experiment(
                    &lab(json!([{"name": "app"}, {"name": "app"}])),
                    None,
                    None,
                ),
                denied_field: Some(
                    r#"spec.targets[1].name: "app" is used by more than one target"#,
                ),
                warning: None,
            },
            Case {
                name: "lab target name not a DNS label",
                verdict: lab_experiment(&lab(json!([{"name": "App_1"}])), None, None),
                denied_field: Some(
                    r#"spec.targets[0].name: "App_1" must be a lowercase DNS label"#,
                ),
                warning: None,
            },
            Case {
                name: "lab provisioned cluster without nodes",
                verdict: lab_experiment(
                    &lab(json!([{"name": "app", "cluster": {"type": "gke", "nodeCount": 0}}])),
                    None,
                    None,
                ),
                denied_field: Some(
                    "spec.targets[0].cluster.nodeCount: 0 is out of range; allowed: 1 or more",
                ),
                warning: None,
            },
            Case {
                name: "lab tutorial service on an unknown target",
                verdict: lab_experiment(
                    &{
                        let mut o = lab(json!([{"name": "app"}]));
                        o["spec"]["tutorial"] = json!({"services": [
                            {"name": "ui", "target": "web", "service": "ui", "namespace": "web"}
                        ]});
                        o
                    },
                    None,
                    None,
                ),
                denied_field: Some(
                    r#"spec.tutorial.services[0].target: "web" is not a target of this experiment; allowed: app"#,
                ),
                warning: None,
            },
            Case {
                name: "lab cycle",
                verdict: lab_experiment(
                    &lab(
                        json!([{"name": "a", "depends": ["c"]}, {"name": "b", "depends": ["a"]}, {"name": "c", "depends": ["b"]}]),
                    ),
                    None,
                    None,
                ),
                denied_field: Some("cycle"),
                warning: None,
            },
        ];
        for case in cases {
            match case.denied_field {
                None => assert!(case.verdict.allowed(), "{}: {:?}", case.name, case.verdict),
                Some(field) => {
                    assert!(!case.verdict.allowed(), "{} should be denied", case.name);
                    assert!(
                        case.verdict.message().contains(field),
                        "{}: {}",
                        case.name,
                        case.verdict.message()
                    );
                }
            }
            match case.warning {
                None => assert!(
                    case.verdict.warnings.is_empty(),
                    "{}: {:?}",
                    case.name,
                    case.verdict.warnings
                ),
                Some(text) => assert!(
                    case.verdict.warnings.iter().any(|w| w.contains(text)),
                    "{}: {:?}",
                    case.name,
                    case.verdict.warnings
                ),
            }
        }
    }

    /// The checks that need the labs configuration: a claim name too long for its cluster
    /// type is refused only with the configuration, on create, and on an update only when the
    /// update makes it too long; the hub is not provisioned, so its names are not limited.
    #[test]
    fn lab_claim_names_are_checked_against_the_configuration() {
        let config = LabsConfig::default();
        let named = |experiment: &str, target: &str, type_: &str| {
            let mut o = lab(json!([{"name": target, "cluster": {"type": type_}}]));
            o["metadata"]["name"] = json!(experiment);
            o
        };
        // gke claims are at most 29 characters: "gateway-comparison-x7k2p-frontend" is 33.
        let long = named("gateway-comparison-x7k2p", "frontend", "gke");
        let v = lab_experiment(&long, None, Some(&config));
        assert!(
            v.message().contains(
                r#"spec.targets[0].name: cluster name "gateway-comparison-x7k2p-frontend" is 33 characters; gke allows at most 29"#
            ),
            "{}",
            v.message()
        );
        assert!(
            lab_experiment(&long, None, None).allowed(),
            "without the configuration the length is left to the controller"
        );
        let short = named("gateway-comparison-x7k2p", "app", "gke");
        assert!(lab_experiment(&short, None, Some(&config)).allowed());
        assert!(
            lab_experiment(
                &named("gateway-comparison-x7k2p", "frontend", "hub"),
                None,
                Some(&config)
            )
            .allowed(),
            "a hub target gets no claim"
        );
        // Renaming the target so that the claim no longer fits is refused...
        assert!(!lab_experiment(&long, Some(&short), Some(&config)).allowed());
        // ...but an Experiment stored with a name that already did not fit can still change.
        let mut edited = long.clone();
        edited["spec"]["workflow"]["template"] = json!("other");
        assert!(lab_experiment(&edited, Some(&long), Some(&config)).allowed());
        // A smaller limit configured for the type applies.
        let mut strict = LabsConfig::default();
        if let Some(m) = strict.cluster_types.get_mut("gke") {
            m.max_name_length = 20;
        }
        let v = lab_experiment(&short, None, Some(&strict));
        assert!(
            v.message().contains("gke allows at most 20"),
            "{}",
            v.message()
        );
    }

    #[test]
    fn cycle_path_is_reported() {
        let v = lab_experiment(
            &lab(json!([{"name": "a", "depends": ["b"]}, {"name": "b", "depends": ["a"]}])),
            None,
            None,
        );
        assert!(v.message().contains("a -> b -> a"), "{}", v.message());
    }

    #[test]
    fn agent_ref_defaults_to_the_object_namespace() {
        assert_eq!(
            agent_ref(&eval(ok_spec())),
            Some(("team".into(), "weather-agent".into()))
        );
        let mut spec = ok_spec();
        spec["agentRef"]["namespace"] = json!("agents");
        assert_eq!(
            agent_ref(&eval(spec)),
            Some(("agents".into(), "weather-agent".into()))
        );
        assert_eq!(agent_ref(&eval(json!({}))), None);
    }
}
