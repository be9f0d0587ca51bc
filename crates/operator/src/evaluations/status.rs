//! Pure computation of an evaluation `Experiment`'s status from what the reconcile achieved.
//!
//! Conditions: `Ready` (everything applied), `WorkflowReady` (the `TestWorkflow` exists) and
//! `AgentResolved` (where the agent URL came from), `OtelConfigured` and, when a gateway is
//! named or found, `AiGatewayResolved`. Each is true only when it is true: a
//! failed `ConfigMap` keeps `WorkflowReady` false, a missing `TestWorkflow` CRD keeps `Ready` false.
//! `lastExecution` mirrors the execution summary Testkube writes into the `TestWorkflow`'s
//! `status.latestExecution` ([`last_execution`]).

use agentic_api::evaluations::{
    CONDITION_READY, CONDITION_WORKFLOW_READY, ExperimentStatus, GeneratedResource, LastExecution,
    OTEL_CONFIG_MAP, OTEL_ENDPOINT_KEY, REASON_CRD_NOT_INSTALLED, REASON_RECONCILE_FAILED,
    REASON_RECONCILE_SUCCEEDED, REASON_WORKFLOW_CREATED, REASON_WORKFLOW_NOT_READY,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use serde_json::Value;

use super::agent::{AgentUrl, AgentUrlSource};
use super::gateway::{self, Gateway};

/// Condition type: which AI gateway the evaluate phase uses. Set only when `spec.aiGatewayRef`
/// is given or a default gateway exists.
pub const CONDITION_AI_GATEWAY_RESOLVED: &str = "AiGatewayResolved";

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
#[derive(Debug, Clone, PartialEq)]
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
    /// The AI gateway (absent when the spec was invalid).
    pub gateway: Option<Gateway>,
    /// The OTLP endpoint's source (absent when the spec was invalid or not yet known).
    pub otel: Option<OtelSource>,
    /// The latest execution Testkube reports on the `TestWorkflow`; absent when it reports
    /// nothing usable (the previous `lastExecution` is then kept).
    pub last_execution: Option<LastExecution>,
}

/// Condition types this operator decides; any other condition belongs to another writer and
/// is never sent in a status write.
pub const OWNED_CONDITIONS: [&str; 5] = [
    CONDITION_READY,
    CONDITION_WORKFLOW_READY,
    CONDITION_AGENT_RESOLVED,
    CONDITION_OTEL_CONFIGURED,
    CONDITION_AI_GATEWAY_RESOLVED,
];

/// A timestamp Testkube reports; Go's zero time (`0001-01-01T00:00:00Z`, written for "not
/// yet") and anything unparsable count as absent.
fn testkube_time(value: Option<&Value>) -> Option<Time> {
    let ts: jiff::Timestamp = value?.as_str()?.parse().ok()?;
    (ts > jiff::Timestamp::UNIX_EPOCH).then_some(Time(ts))
}

fn testkube_string(value: Option<&Value>) -> Option<String> {
    value?.as_str().filter(|s| !s.is_empty()).map(str::to_owned)
}

fn testkube_number(value: Option<&Value>) -> Option<i64> {
    match value? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// The `lastExecution` described by a `TestWorkflow`'s `status` as Testkube writes it:
/// `latestExecution.{id, number, scheduledAt, result.{status, startedAt, finishedAt}}`.
/// Lenient: missing or oddly shaped fields are skipped (`startTime` falls back to
/// `scheduledAt`, `status` to a plain-string `latestExecution.status`); `None` when nothing
/// usable is there.
pub fn last_execution(workflow_status: Option<&Value>) -> Option<LastExecution> {
    let latest = workflow_status?.get("latestExecution")?;
    if !latest.is_object() {
        return None;
    }
    let result = latest.get("result").filter(|r| r.is_object());
    let field = |name: &str| result.and_then(|r| r.get(name));
    let execution = LastExecution {
        execution_id: testkube_string(latest.get("id")),
        execution_number: testkube_number(latest.get("number")),
        start_time: testkube_time(field("startedAt"))
            .or_else(|| testkube_time(latest.get("scheduledAt"))),
        end_time: testkube_time(field("finishedAt")),
        status: testkube_string(field("status")).or_else(|| testkube_string(latest.get("status"))),
    };
    (execution != LastExecution::default()).then_some(execution)
}

/// The part of `status` this operator writes: everything but other writers' conditions.
pub fn owned_part(status: &ExperimentStatus) -> ExperimentStatus {
    ExperimentStatus {
        conditions: status.conditions.as_ref().map(|c| {
            c.iter()
                .filter(|c| OWNED_CONDITIONS.contains(&c.type_.as_str()))
                .cloned()
                .collect()
        }),
        ..status.clone()
    }
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

/// `AgentResolved` for the resolved agent URL (none when the spec was invalid).
fn agent_condition(outcome: &Outcome) -> Option<(&'static str, &'static str, String)> {
    let agent = outcome.agent.as_ref()?;
    Some(if outcome.agent_missing {
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
    })
}

/// `AiGatewayResolved` for a resolution: none when there is no gateway to speak of.
fn gateway_condition(gw: &Gateway) -> Option<(&'static str, &'static str, String)> {
    match gw {
        Gateway::None => None,
        Gateway::Found {
            namespace,
            name,
            url,
            referenced,
        } => Some((
            "True",
            if *referenced {
                gateway::REASON_REFERENCED
            } else {
                gateway::REASON_DEFAULT
            },
            format!(
                "evaluate-template reaches the judge model through AiGateway {namespace}/{name} at {url}{}",
                if *referenced {
                    ""
                } else {
                    " (the first AiGateway in namespace ai-gateway; set spec.aiGatewayRef to choose)"
                }
            ),
        )),
        Gateway::Missing { namespace, name } => Some((
            "False",
            gateway::REASON_NOT_FOUND,
            format!(
                "spec.aiGatewayRef names AiGateway {namespace}/{name}, which does not exist; \
                 evaluate-template uses its own default until it does"
            ),
        )),
    }
}

/// The status to write. `previous` keeps each condition's `lastTransitionTime` unless its
/// status flips, and carries over foreign conditions, and `lastExecution` when the outcome
/// has none.
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
    if let Some((status, reason, message)) = agent_condition(outcome) {
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
    if let Some((status, reason, message)) = outcome.gateway.as_ref().and_then(gateway_condition) {
        conditions.push(condition(
            previous,
            CONDITION_AI_GATEWAY_RESOLVED,
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
        CONDITION_AI_GATEWAY_RESOLVED,
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
        last_execution: outcome
            .last_execution
            .clone()
            .or_else(|| previous.and_then(|s| s.last_execution.clone())),
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
            gateway: Some(Gateway::None),
            otel: Some(OtelSource::ConfigMap),
            last_execution: None,
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

    fn reported(latest: &Value) -> Option<LastExecution> {
        last_execution(Some(&serde_json::json!({"latestExecution": latest})))
    }

    /// Upstream declared `lastExecution` but never wrote it.
    #[test]
    fn last_execution_maps_testkube_summary() {
        let got = reported(&serde_json::json!({
            "id": "6650f0c1a2b3c4d5e6f70812",
            "name": "quiet-workflow-3",
            "number": 3,
            "scheduledAt": "2026-01-01T10:00:00Z",
            "statusAt": "2026-01-01T10:05:00Z",
            "result": {
                "status": "passed",
                "predictedStatus": "passed",
                "queuedAt": "2026-01-01T10:00:00Z",
                "startedAt": "2026-01-01T10:00:02Z",
                "finishedAt": "2026-01-01T10:05:00Z",
                "duration": "4m58s"
            },
            "workflow": {"name": "quiet-workflow"}
        }));
        assert_eq!(
            got,
            Some(LastExecution {
                execution_id: Some("6650f0c1a2b3c4d5e6f70812".into()),
                execution_number: Some(3),
                start_time: Some(time("2026-01-01T10:00:02Z")),
                end_time: Some(time("2026-01-01T10:05:00Z")),
                status: Some("passed".into()),
            })
        );
    }

    #[test]
    fn last_execution_absent() {
        assert_eq!(last_execution(None), None);
        assert_eq!(last_execution(Some(&serde_json::json!({}))), None);
        assert_eq!(
            last_execution(Some(&serde_json::json!({"health": {"passRate": 1}}))),
            None
        );
        assert_eq!(reported(&serde_json::json!({})), None);
    }

    /// A running execution: no result yet, or Go's zero time for "not finished".
    #[test]
    fn last_execution_partial() {
        let got = reported(&serde_json::json!({
            "id": "abc",
            "scheduledAt": "2026-01-01T10:00:00Z",
            "result": {"status": "running", "finishedAt": "0001-01-01T00:00:00Z"}
        }))
        .unwrap();
        assert_eq!(got.execution_id.as_deref(), Some("abc"));
        assert_eq!(got.execution_number, None);
        assert_eq!(got.start_time, Some(time("2026-01-01T10:00:00Z")));
        assert_eq!(got.end_time, None);
        assert_eq!(got.status.as_deref(), Some("running"));
        let queued = reported(&serde_json::json!({"number": "7", "status": "queued"})).unwrap();
        assert_eq!(queued.execution_number, Some(7));
        assert_eq!(queued.status.as_deref(), Some("queued"));
    }

    #[test]
    fn last_execution_malformed_is_skipped() {
        assert_eq!(
            last_execution(Some(&serde_json::json!({"latestExecution": "abc"}))),
            None
        );
        assert_eq!(last_execution(Some(&serde_json::json!([1, 2]))), None);
        assert_eq!(
            reported(&serde_json::json!({
                "id": 5,
                "number": 1.5,
                "scheduledAt": "yesterday",
                "result": ["passed"]
            })),
            None
        );
        let got = reported(&serde_json::json!({
            "id": "x",
            "number": {"n": 1},
            "result": {"status": 3, "startedAt": 17}
        }))
        .unwrap();
        assert_eq!(
            got,
            LastExecution {
                execution_id: Some("x".into()),
                ..LastExecution::default()
            }
        );
    }

    #[test]
    fn last_execution_replaces_or_keeps_the_previous_one() {
        let first = LastExecution {
            execution_id: Some("one".into()),
            execution_number: Some(1),
            ..LastExecution::default()
        };
        let outcome = Outcome {
            last_execution: Some(first.clone()),
            ..ok()
        };
        let s = desired_status(None, &outcome, Some(1), &time("2026-01-01T00:00:00Z"));
        assert_eq!(s.last_execution.as_ref(), Some(&first));
        // Nothing reported (e.g. the workflow was recreated): the last known one stays.
        let kept = desired_status(Some(&s), &ok(), Some(1), &time("2026-01-01T00:00:00Z"));
        assert_eq!(kept.last_execution.as_ref(), Some(&first));
        let second = LastExecution {
            execution_id: Some("two".into()),
            ..LastExecution::default()
        };
        let replaced = desired_status(
            Some(&s),
            &Outcome {
                last_execution: Some(second.clone()),
                ..ok()
            },
            Some(1),
            &time("2026-01-01T00:00:00Z"),
        );
        assert_eq!(replaced.last_execution, Some(second));
    }

    #[test]
    fn owned_part_leaves_out_foreign_conditions() {
        let mut s = desired_status(None, &ok(), Some(1), &time("2026-01-01T00:00:00Z"));
        s.conditions.as_mut().unwrap().push(Condition {
            type_: "example.com/Audited".into(),
            status: "True".into(),
            reason: "R".into(),
            message: String::new(),
            last_transition_time: time("2025-01-01T00:00:00Z"),
            observed_generation: None,
        });
        let owned = owned_part(&s);
        let types: Vec<_> = owned
            .conditions
            .iter()
            .flatten()
            .map(|c| c.type_.as_str())
            .collect();
        assert_eq!(
            types,
            ["Ready", "WorkflowReady", "AgentResolved", "OtelConfigured"]
        );
        assert_eq!(owned.generated_resources, s.generated_resources);
    }
}
