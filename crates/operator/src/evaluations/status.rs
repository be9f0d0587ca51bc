//! Pure computation of an evaluation `Experiment`'s status from what the reconcile achieved.
//!
//! Conditions: `Ready` (everything applied), `WorkflowReady` (the `TestWorkflow` exists) and
//! `AgentResolved` (where the agent URL came from). Each is true only when it is true: a
//! failed `ConfigMap` keeps `WorkflowReady` false, a missing `TestWorkflow` CRD keeps `Ready` false.

use agentic_api::evaluations::{
    CONDITION_READY, CONDITION_WORKFLOW_READY, ExperimentStatus, GeneratedResource,
    OTEL_CONFIG_MAP, OTEL_ENDPOINT_KEY, REASON_CRD_NOT_INSTALLED, REASON_RECONCILE_FAILED,
    REASON_RECONCILE_SUCCEEDED, REASON_WORKFLOW_CREATED, REASON_WORKFLOW_NOT_READY,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::agent::{AgentUrl, AgentUrlSource};

/// Condition type: where the agent URL came from.
pub const CONDITION_AGENT_RESOLVED: &str = "AgentResolved";
/// `AgentResolved=False` reason: the Agent CRD is installed but the named Agent does not exist.
pub const REASON_AGENT_NOT_FOUND: &str = "AgentNotFound";
/// `Ready=True` message.
pub const MESSAGE_READY: &str = "All resources reconciled successfully";
/// `WorkflowReady=True` message.
pub const MESSAGE_WORKFLOW_CREATED: &str = "TestWorkflow created successfully";
/// `WorkflowReady=False` message when the CRD is missing.
pub const MESSAGE_CRD_NOT_INSTALLED: &str =
    "TestWorkflow CRD not installed; workflow was not created";

/// Condition type: where the workflow's OTLP endpoint comes from.
pub const CONDITION_OTEL_CONFIGURED: &str = "OtelConfigured";

/// Where the workflow's `OTEL_EXPORTER_OTLP_ENDPOINT` comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OtelSource {
    /// `spec.otlpEndpoint` or an entry of `spec.env`.
    Spec,
    /// The `otel-config` `ConfigMap` in the workflow's namespace.
    ConfigMap,
    /// Neither: the `ConfigMap` (or its key) is missing in this namespace, so nothing is published.
    Missing(String),
}

/// What happened to the `TestWorkflow`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkflowOutcome {
    /// Applied (or already up to date).
    Applied,
    /// The `testworkflows.testkube.io` CRD is not installed.
    CrdNotInstalled,
    /// Writing it failed.
    Failed(String),
    /// Not attempted because an earlier step failed; the message says which.
    NotAttempted(String),
}

/// What one reconcile achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The first problem that stopped the reconcile (invalid spec or a failed write).
    pub problem: Option<String>,
    /// The `TestWorkflow`.
    pub workflow: WorkflowOutcome,
    /// Objects that exist now, in the order `ConfigMap`, `TestWorkflow`, `TestTrigger`.
    pub generated: Vec<GeneratedResource>,
    /// The resolved agent URL (absent when the spec was invalid).
    pub agent: Option<AgentUrl>,
    /// The Agent CRD is installed but the named Agent does not exist.
    pub agent_missing: bool,
    /// The OTLP endpoint's source (absent when the spec was invalid or not yet known).
    pub otel: Option<OtelSource>,
}

fn condition(
    previous: Option<&ExperimentStatus>,
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    let old = previous
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == type_));
    let last_transition_time = match old {
        Some(old) if old.status == status => old.last_transition_time.clone(),
        _ => now.clone(),
    };
    Condition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message,
        last_transition_time,
        observed_generation: generation,
    }
}

type ConditionParts = (&'static str, &'static str, String);

fn ready_condition(outcome: &Outcome) -> ConditionParts {
    match (&outcome.problem, &outcome.workflow) {
        (None, WorkflowOutcome::Applied) => {
            ("True", REASON_RECONCILE_SUCCEEDED, MESSAGE_READY.to_owned())
        }
        (Some(problem), _) => ("False", REASON_RECONCILE_FAILED, problem.clone()),
        (None, WorkflowOutcome::CrdNotInstalled) => (
            "False",
            REASON_RECONCILE_FAILED,
            MESSAGE_CRD_NOT_INSTALLED.to_owned(),
        ),
        (None, WorkflowOutcome::Failed(m) | WorkflowOutcome::NotAttempted(m)) => {
            ("False", REASON_RECONCILE_FAILED, m.clone())
        }
    }
}

fn workflow_condition(workflow: &WorkflowOutcome) -> ConditionParts {
    match workflow {
        WorkflowOutcome::Applied => (
            "True",
            REASON_WORKFLOW_CREATED,
            MESSAGE_WORKFLOW_CREATED.to_owned(),
        ),
        WorkflowOutcome::CrdNotInstalled => (
            "False",
            REASON_CRD_NOT_INSTALLED,
            MESSAGE_CRD_NOT_INSTALLED.to_owned(),
        ),
        WorkflowOutcome::Failed(m) => ("False", REASON_WORKFLOW_NOT_READY, m.clone()),
        WorkflowOutcome::NotAttempted(m) => (
            "False",
            REASON_WORKFLOW_NOT_READY,
            format!("TestWorkflow not applied: {m}"),
        ),
    }
}

fn otel_condition(otel: &OtelSource) -> ConditionParts {
    match otel {
        OtelSource::Spec => (
            "True",
            "OtlpEndpointInSpec",
            "OTEL_EXPORTER_OTLP_ENDPOINT is set in the spec".to_owned(),
        ),
        OtelSource::ConfigMap => (
            "True",
            "OtelConfigMap",
            format!("OTEL_EXPORTER_OTLP_ENDPOINT comes from ConfigMap {OTEL_CONFIG_MAP}"),
        ),
        OtelSource::Missing(namespace) => (
            "False",
            "OtelConfigMapMissing",
            format!(
                "ConfigMap {OTEL_CONFIG_MAP} with key {OTEL_ENDPOINT_KEY} not found in namespace {namespace}; the workflow runs but publishes no metrics (set spec.otlpEndpoint or create the ConfigMap)"
            ),
        ),
    }
}

/// The status to write. `previous` keeps each condition's `lastTransitionTime` unless its
/// status flips, and carries over `lastExecution` and foreign conditions.
pub fn desired_status(
    previous: Option<&ExperimentStatus>,
    outcome: &Outcome,
    generation: Option<i64>,
    now: &Time,
) -> ExperimentStatus {
    let ready = ready_condition(outcome);
    let workflow = workflow_condition(&outcome.workflow);
    let mut conditions = vec![
        condition(
            previous,
            CONDITION_READY,
            ready.0,
            ready.1,
            ready.2,
            generation,
            now,
        ),
        condition(
            previous,
            CONDITION_WORKFLOW_READY,
            workflow.0,
            workflow.1,
            workflow.2,
            generation,
            now,
        ),
    ];
    if let Some(agent) = &outcome.agent {
        let (status, reason, message) = if outcome.agent_missing {
            (
                "False",
                REASON_AGENT_NOT_FOUND,
                format!(
                    "the Agent named by spec.agentRef does not exist; using {} until it does",
                    agent.url
                ),
            )
        } else {
            let from = match agent.source {
                AgentUrlSource::AgentStatusUrl => "the Agent's status.url",
                AgentUrlSource::AgentProtocol => "the Agent's A2A protocol port",
                AgentUrlSource::ServiceDns => "the agent's Service DNS name",
            };
            (
                "True",
                agent.source.reason(),
                format!("agent URL {} (from {from})", agent.url),
            )
        };
        conditions.push(condition(
            previous,
            CONDITION_AGENT_RESOLVED,
            status,
            reason,
            message,
            generation,
            now,
        ));
    }
    if let Some(otel) = &outcome.otel {
        let (status, reason, message) = otel_condition(otel);
        conditions.push(condition(
            previous,
            CONDITION_OTEL_CONFIGURED,
            status,
            reason,
            message,
            generation,
            now,
        ));
    }
    // Conditions this reconcile decided replace the previous ones; an undecided OtelConfigured
    // (cache not listed yet) is kept as it was.
    let mut ours = vec![
        CONDITION_READY,
        CONDITION_WORKFLOW_READY,
        CONDITION_AGENT_RESOLVED,
    ];
    if outcome.otel.is_some() {
        ours.push(CONDITION_OTEL_CONFIGURED);
    }
    conditions.extend(
        previous
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default()
            .into_iter()
            .filter(|c| !ours.contains(&c.type_.as_str())),
    );
    ExperimentStatus {
        observed_generation: generation,
        conditions: Some(conditions),
        generated_resources: Some(outcome.generated.clone()),
        last_execution: previous.and_then(|s| s.last_execution.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evaluations::agent::resolve;

    fn time(s: &str) -> Time {
        Time(s.parse().unwrap())
    }

    fn generated(kinds: &[&str]) -> Vec<GeneratedResource> {
        kinds
            .iter()
            .map(|k| GeneratedResource {
                kind: (*k).to_owned(),
                name: format!("x-{k}"),
                namespace: Some("team".into()),
            })
            .collect()
    }

    fn ok() -> Outcome {
        Outcome {
            problem: None,
            workflow: WorkflowOutcome::Applied,
            generated: generated(&["ConfigMap", "TestWorkflow"]),
            agent: Some(resolve("a", "team", None)),
            agent_missing: false,
            otel: Some(OtelSource::ConfigMap),
        }
    }

    /// Upstream neither checked for `otel-config` nor reported it.
    #[test]
    fn missing_otel_config_is_reported() {
        let outcome = Outcome {
            otel: Some(OtelSource::Missing("testkube".into())),
            ..ok()
        };
        let s = desired_status(None, &outcome, Some(1), &time("2026-01-01T00:00:00Z"));
        let c = cond(&s, "OtelConfigured");
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "OtelConfigMapMissing")
        );
        assert!(c.message.contains("namespace testkube"), "{}", c.message);
        assert_eq!(cond(&s, "Ready").status, "True");
        let s = desired_status(None, &ok(), Some(1), &time("2026-01-01T00:00:00Z"));
        assert_eq!(cond(&s, "OtelConfigured").reason, "OtelConfigMap");
    }

    fn cond<'a>(s: &'a ExperimentStatus, t: &str) -> &'a Condition {
        s.conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == t)
            .unwrap()
    }

    #[test]
    fn success() {
        let s = desired_status(None, &ok(), Some(3), &time("2026-01-01T00:00:00Z"));
        assert_eq!(cond(&s, "Ready").status, "True");
        assert_eq!(cond(&s, "Ready").reason, "ReconcileSucceeded");
        assert_eq!(cond(&s, "Ready").observed_generation, Some(3));
        assert_eq!(cond(&s, "WorkflowReady").reason, "WorkflowCreated");
        assert_eq!(cond(&s, "AgentResolved").reason, "ServiceDNS");
        assert!(
            cond(&s, "AgentResolved")
                .message
                .contains("http://a.team:8000")
        );
        assert_eq!(s.generated_resources.as_ref().unwrap().len(), 2);
        assert_eq!(s.observed_generation, Some(3));
    }

    /// Upstream set `Ready=True` with the `TestWorkflow` CRD missing.
    #[test]
    fn missing_crd_is_not_ready() {
        let outcome = Outcome {
            workflow: WorkflowOutcome::CrdNotInstalled,
            generated: generated(&["ConfigMap"]),
            ..ok()
        };
        let s = desired_status(None, &outcome, Some(1), &time("2026-01-01T00:00:00Z"));
        assert_eq!(cond(&s, "Ready").status, "False");
        assert_eq!(cond(&s, "WorkflowReady").status, "False");
        assert_eq!(cond(&s, "WorkflowReady").reason, "CRDNotInstalled");
    }

    /// Upstream reported `WorkflowReady=True` when the `ConfigMap` write had failed.
    #[test]
    fn failed_config_map_keeps_workflow_not_ready() {
        let outcome = Outcome {
            problem: Some("cannot apply ConfigMap team/x-experiment: boom".into()),
            workflow: WorkflowOutcome::NotAttempted("the ConfigMap could not be written".into()),
            generated: vec![],
            ..ok()
        };
        let s = desired_status(None, &outcome, Some(1), &time("2026-01-01T00:00:00Z"));
        assert_eq!(cond(&s, "Ready").status, "False");
        assert_eq!(cond(&s, "Ready").reason, "ReconcileFailed");
        assert!(cond(&s, "Ready").message.contains("ConfigMap"));
        assert_eq!(cond(&s, "WorkflowReady").status, "False");
        assert_eq!(cond(&s, "WorkflowReady").reason, "WorkflowNotReady");
    }

    #[test]
    fn transition_time_moves_only_on_flips_and_foreign_conditions_stay() {
        let first = desired_status(None, &ok(), Some(1), &time("2026-01-01T00:00:00Z"));
        let mut previous = first.clone();
        previous.conditions.as_mut().unwrap().push(Condition {
            type_: "Custom".into(),
            status: "True".into(),
            reason: "R".into(),
            message: String::new(),
            last_transition_time: time("2025-01-01T00:00:00Z"),
            observed_generation: None,
        });
        let again = desired_status(
            Some(&previous),
            &ok(),
            Some(1),
            &time("2026-02-01T00:00:00Z"),
        );
        assert_eq!(
            cond(&again, "Ready").last_transition_time,
            time("2026-01-01T00:00:00Z")
        );
        assert_eq!(cond(&again, "Custom").reason, "R");
        let failed = Outcome {
            workflow: WorkflowOutcome::Failed("denied".into()),
            ..ok()
        };
        let flipped = desired_status(
            Some(&again),
            &failed,
            Some(2),
            &time("2026-03-01T00:00:00Z"),
        );
        assert_eq!(
            cond(&flipped, "Ready").last_transition_time,
            time("2026-03-01T00:00:00Z")
        );
        assert_eq!(cond(&flipped, "WorkflowReady").message, "denied");
    }

    #[test]
    fn undecided_otel_condition_is_kept() {
        let first = desired_status(None, &ok(), Some(1), &time("2026-01-01T00:00:00Z"));
        let undecided = Outcome { otel: None, ..ok() };
        let again = desired_status(
            Some(&first),
            &undecided,
            Some(1),
            &time("2026-02-01T00:00:00Z"),
        );
        assert_eq!(
            cond(&again, "OtelConfigured"),
            cond(&first, "OtelConfigured")
        );
        assert_eq!(again.conditions.as_ref().unwrap().len(), 4);
    }

    #[test]
    fn missing_agent_is_reported() {
        let outcome = Outcome {
            agent_missing: true,
            ..ok()
        };
        let s = desired_status(None, &outcome, Some(1), &time("2026-01-01T00:00:00Z"));
        assert_eq!(cond(&s, "AgentResolved").status, "False");
        assert_eq!(cond(&s, "AgentResolved").reason, "AgentNotFound");
        assert_eq!(cond(&s, "Ready").status, "True");
    }
}
