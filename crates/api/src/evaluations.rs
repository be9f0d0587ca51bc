//! API group `testbench.agentic-layer.ai/v1alpha1`: `Experiment`, an evaluation of an agent
//! against a dataset or inline scenarios, run as a Testkube TestWorkflow.
//!
//! The schema is the V1 one users run today, widened with the later additive fields
//! (`aiGatewayRef`, `otlpEndpoint`, `dataset.inline`, `env`, `schedule`,
//! `reference.retrievedContexts`) so newer YAML is not pruned.

use k8s_openapi::api::core::v1::{EnvVar, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::enums::string_enum;

/// The API group of this module's kind.
pub const GROUP: &str = "testbench.agentic-layer.ai";
/// The only served and stored version.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` of this module's kind.
pub const API_VERSION: &str = "testbench.agentic-layer.ai/v1alpha1";

/// Default `spec.defaultThreshold`.
pub const DEFAULT_THRESHOLD: f64 = 0.9;
/// Port assumed for an agent's A2A endpoint when nothing better is known.
pub const DEFAULT_AGENT_PORT: u16 = 8000;
/// ConfigMap holding `OTEL_EXPORTER_OTLP_ENDPOINT` for V1-style experiments.
pub const OTEL_CONFIG_MAP: &str = "otel-config";
/// Key of the OTLP endpoint in [`OTEL_CONFIG_MAP`] and name of the env var it feeds.
pub const OTEL_ENDPOINT_KEY: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// Key of the experiment document in the generated ConfigMap.
pub const EXPERIMENT_JSON_KEY: &str = "experiment.json";
/// Finalizer a newer upstream put on experiments; stripped when found.
pub const LEGACY_FINALIZER: &str = "testbench.agentic-layer.ai/cleanup";
/// Label on generated objects: name of the owning experiment.
pub const LABEL_EXPERIMENT_NAME: &str = "testbench.agentic-layer.ai/experiment-name";
/// Label on generated objects: namespace of the owning experiment.
pub const LABEL_EXPERIMENT_NAMESPACE: &str = "testbench.agentic-layer.ai/experiment-namespace";
/// Label on generated objects naming their manager.
pub const LABEL_MANAGED_BY: &str = "testbench.agentic-layer.ai/managed-by";
/// Value of [`LABEL_MANAGED_BY`].
pub const MANAGED_BY: &str = "experiment-controller";
/// Label on generated objects: `anchor`, `workflow`, `trigger` or `dataset`.
pub const LABEL_RESOURCE_TYPE: &str = "testbench.agentic-layer.ai/resource-type";
/// Condition type: every child object is reconciled.
pub const CONDITION_READY: &str = "Ready";
/// Condition type: the TestWorkflow exists.
pub const CONDITION_WORKFLOW_READY: &str = "WorkflowReady";
/// `Ready=True` reason.
pub const REASON_RECONCILE_SUCCEEDED: &str = "ReconcileSucceeded";
/// `Ready=False` reason.
pub const REASON_RECONCILE_FAILED: &str = "ReconcileFailed";
/// `WorkflowReady=True` reason.
pub const REASON_WORKFLOW_CREATED: &str = "WorkflowCreated";
/// `WorkflowReady=False` reason when writing the TestWorkflow failed.
pub const REASON_WORKFLOW_NOT_READY: &str = "WorkflowNotReady";
/// `WorkflowReady=False` reason when the Testkube CRDs are missing.
pub const REASON_CRD_NOT_INSTALLED: &str = "CRDNotInstalled";

string_enum! {
    /// What Testkube does when the trigger fires while an execution is still running.
    pub enum ConcurrencyPolicy as "spec.trigger.concurrencyPolicy" {
        /// Run executions side by side.
        Allow => "Allow",
        /// Skip the new execution.
        Forbid => "Forbid",
        /// Abort the running execution and start the new one.
        Replace => "Replace",
    }
}

/// Desired state of an evaluation `Experiment`.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "testbench.agentic-layer.ai",
    version = "v1alpha1",
    kind = "Experiment",
    plural = "experiments",
    singular = "experiment",
    shortname = "exp",
    namespaced,
    status = "ExperimentStatus",
    derive = "PartialEq",
    derive = "Default",
    cel,
    doc = "An evaluation of an agent against a dataset or inline scenarios, run as a Testkube TestWorkflow.",
    printcolumn(name = "Agent", type_ = "string", json_path = ".spec.agentRef.name"),
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(
    validation = Rule::new("!(has(self.dataset) && has(self.scenarios))").message("dataset and scenarios are mutually exclusive"),
    validation = Rule::new("has(self.dataset) || has(self.scenarios)").message("one of dataset or scenarios must be set")
)]
#[serde(rename_all = "camelCase")]
pub struct ExperimentSpec {
    /// The agent under test.
    pub agent_ref: AgentRef,
    /// Where the experiment's scenarios come from (mutually exclusive with `scenarios`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<DatasetSource>,
    /// Model that judges the agent's answers (e.g. `gemini-2.5-flash-lite`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llm_as_a_judge_model: Option<String>,
    /// Pass mark for metrics without their own threshold, 0 to 1 (default 0.9).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0), extend("default" = 0.9))]
    pub default_threshold: Option<f64>,
    /// Inline scenarios (mutually exclusive with `dataset`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub scenarios: Option<Vec<Scenario>>,
    /// Re-run the experiment when the agent's Deployment changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<Trigger>,
    /// AI gateway the evaluation reaches the judge model through (only `name` and
    /// `namespace` are used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::atomic_object_reference")]
    pub ai_gateway_ref: Option<ObjectReference>,
    /// OTLP endpoint results are published to; overrides the `otel-config` ConfigMap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub otlp_endpoint: Option<String>,
    /// Environment of the workflow containers; entries override operator-set variables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<EnvVar>>,
    /// Run the experiment on a cron schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
}

/// Reference to the agent under test.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AgentRef {
    /// Agent name (also the name of its Service and Deployment).
    pub name: String,
    /// Agent namespace (default: the experiment's namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// Source of the experiment's scenarios: exactly one of `s3`, `url` or `inline`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[x_kube(
    validation = Rule::new("(has(self.s3) ? 1 : 0) + (has(self.url) ? 1 : 0) + (has(self.inline) ? 1 : 0) == 1").message("exactly one of s3, url, or inline must be set")
)]
#[serde(rename_all = "camelCase")]
pub struct DatasetSource {
    /// An object in S3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Source>,
    /// An HTTP(S) URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Scenarios written inline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline: Option<InlineDataset>,
}

/// An S3 object.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct S3Source {
    /// Bucket name.
    pub bucket: String,
    /// Object key.
    pub key: String,
}

/// Scenarios and judge settings written inside `dataset`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct InlineDataset {
    /// Model that judges the agent's answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llm_as_a_judge_model: Option<String>,
    /// Pass mark for metrics without their own threshold, 0 to 1 (no default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub default_threshold: Option<f64>,
    /// The scenarios.
    #[schemars(length(min = 1))]
    pub scenarios: Vec<Scenario>,
}

/// A conversation with the agent.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Scenario {
    /// Scenario name.
    pub name: String,
    /// The turns of the conversation, in order.
    #[schemars(length(min = 1))]
    pub steps: Vec<Step>,
}

/// One turn: an input to the agent, what is expected back, and how it is scored.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    /// The user message sent to the agent.
    pub input: String,
    /// The expected answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<Reference>,
    /// Extra values for the metrics (e.g. `retrieved_contexts`); an object, kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::free_form_object")]
    pub custom_values: Option<Map<String, Value>>,
    /// Metrics computed for this step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Vec<Metric>>,
}

/// The expected answer of a step.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Reference {
    /// Expected response text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<String>,
    /// Expected tool calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    /// Expected topics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topics: Option<Vec<String>>,
    /// Expected retrieved contexts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retrieved_contexts: Option<Vec<String>>,
}

/// An expected tool call.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ToolCall {
    /// Tool name.
    pub name: String,
    /// Tool arguments; an object, kept as written (`{}` is sent when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::free_form_object")]
    pub args: Option<Map<String, Value>>,
}

/// A metric computed for a step.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Metric {
    /// Metric name (e.g. `AgentGoalAccuracyWithoutReference`, `ToolCallAccuracy`, `TopicAdherence`).
    pub metric_name: String,
    /// Pass mark, 0 to 1 (default: `defaultThreshold`). 0 is kept as 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub threshold: Option<f64>,
    /// Metric parameters (e.g. `mode: precision`); an object, kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::free_form_object")]
    pub parameters: Option<Map<String, Value>>,
}

/// Re-run the experiment when the agent's Deployment changes.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Trigger {
    /// Whether the trigger exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Testkube event name, lowercased (default `modified`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// What happens when the trigger fires during a run (default `Allow`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency_policy: Option<ConcurrencyPolicy>,
}

/// A cron schedule.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Schedule {
    /// Five-field cron expression.
    #[schemars(regex(pattern = r"^(\S+\s){4}\S+$"))]
    pub cron: String,
    /// IANA time zone of the cron expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
}

/// Observed state of an evaluation `Experiment`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ExperimentStatus {
    /// Generation the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` and `WorkflowReady`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::conditions")]
    pub conditions: Option<Vec<Condition>>,
    /// Objects generated for this experiment (ConfigMap, TestWorkflow, TestTrigger).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generated_resources: Option<Vec<GeneratedResource>>,
    /// The most recent Testkube execution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_execution: Option<LastExecution>,
}

/// An object generated for an experiment.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct GeneratedResource {
    /// Kind.
    pub kind: String,
    /// Name.
    pub name: String,
    /// Namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// A Testkube execution of the experiment's workflow.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LastExecution {
    /// Testkube execution id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_id: Option<String>,
    /// Testkube execution number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_number: Option<i64>,
    /// When the execution started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the execution ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<Time>,
    /// Execution status as reported by Testkube.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// Where an experiment's scenarios come from, resolved from either schema generation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ScenarioSource<'a> {
    /// Scenarios written in the object: top-level `scenarios` or `dataset.inline`.
    Inline(InlineScenarios<'a>),
    /// An S3 object to download.
    S3(&'a S3Source),
    /// An HTTP(S) URL to download.
    Url(&'a str),
}

/// Inline scenarios with the judge settings that apply to them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InlineScenarios<'a> {
    /// The scenarios.
    pub scenarios: &'a [Scenario],
    /// Judge model: `dataset.inline.llmAsAJudgeModel`, else `spec.llmAsAJudgeModel`.
    pub llm_as_a_judge_model: Option<&'a str>,
    /// Default threshold: `dataset.inline.defaultThreshold`, else `spec.defaultThreshold`.
    pub default_threshold: Option<f64>,
}

impl ExperimentSpec {
    /// The scenario source, or `None` when the spec names none (the schema rejects that).
    ///
    /// A `dataset` wins over top-level `scenarios` (the schema forbids both); within a
    /// dataset, `inline` wins over `s3`, which wins over `url` (the schema allows one).
    pub fn scenario_source(&self) -> Option<ScenarioSource<'_>> {
        if let Some(dataset) = &self.dataset {
            if let Some(inline) = &dataset.inline {
                return Some(ScenarioSource::Inline(InlineScenarios {
                    scenarios: &inline.scenarios,
                    llm_as_a_judge_model: inline
                        .llm_as_a_judge_model
                        .as_deref()
                        .or(self.llm_as_a_judge_model.as_deref()),
                    default_threshold: inline.default_threshold.or(self.default_threshold),
                }));
            }
            if let Some(s3) = &dataset.s3 {
                return Some(ScenarioSource::S3(s3));
            }
            return dataset.url.as_deref().map(ScenarioSource::Url);
        }
        self.scenarios.as_deref().map(|scenarios| {
            ScenarioSource::Inline(InlineScenarios {
                scenarios,
                llm_as_a_judge_model: self.llm_as_a_judge_model.as_deref(),
                default_threshold: self.default_threshold,
            })
        })
    }
}

impl AgentRef {
    /// The agent's namespace, defaulting to the experiment's.
    pub fn namespace_or<'a>(&'a self, experiment_namespace: &'a str) -> &'a str {
        self.namespace.as_deref().unwrap_or(experiment_namespace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(name: &str) -> Scenario {
        Scenario {
            name: name.into(),
            steps: vec![Step {
                input: "hi".into(),
                ..Step::default()
            }],
        }
    }

    #[test]
    fn scenario_source_resolves_both_generations() {
        let v1 = ExperimentSpec {
            llm_as_a_judge_model: Some("gpt-4o".into()),
            default_threshold: Some(0.8),
            scenarios: Some(vec![scenario("a")]),
            ..ExperimentSpec::default()
        };
        let Some(ScenarioSource::Inline(view)) = v1.scenario_source() else {
            panic!("v1 scenarios are inline");
        };
        assert_eq!(view.scenarios[0].name, "a");
        assert_eq!(view.llm_as_a_judge_model, Some("gpt-4o"));
        assert_eq!(view.default_threshold, Some(0.8));

        let v5 = ExperimentSpec {
            llm_as_a_judge_model: Some("fallback".into()),
            default_threshold: Some(DEFAULT_THRESHOLD),
            dataset: Some(DatasetSource {
                inline: Some(InlineDataset {
                    llm_as_a_judge_model: None,
                    default_threshold: Some(0.5),
                    scenarios: vec![scenario("b")],
                }),
                ..DatasetSource::default()
            }),
            ..ExperimentSpec::default()
        };
        let Some(ScenarioSource::Inline(view)) = v5.scenario_source() else {
            panic!("dataset.inline is inline");
        };
        assert_eq!(view.scenarios[0].name, "b");
        assert_eq!(view.llm_as_a_judge_model, Some("fallback"));
        assert_eq!(view.default_threshold, Some(0.5));

        let s3 = ExperimentSpec {
            dataset: Some(DatasetSource {
                s3: Some(S3Source {
                    bucket: "testbench".into(),
                    key: "dataset.json".into(),
                }),
                ..DatasetSource::default()
            }),
            ..ExperimentSpec::default()
        };
        assert!(
            matches!(s3.scenario_source(), Some(ScenarioSource::S3(s)) if s.key == "dataset.json")
        );

        let url = ExperimentSpec {
            dataset: Some(DatasetSource {
                url: Some("https://example.com/d.json".into()),
                ..DatasetSource::default()
            }),
            ..ExperimentSpec::default()
        };
        assert_eq!(
            url.scenario_source(),
            Some(ScenarioSource::Url("https://example.com/d.json"))
        );
        assert_eq!(ExperimentSpec::default().scenario_source(), None);
    }

    #[test]
    fn agent_namespace_defaults_to_experiment_namespace() {
        let mut agent = AgentRef {
            name: "weather-agent".into(),
            namespace: None,
        };
        assert_eq!(agent.namespace_or("testkube"), "testkube");
        agent.namespace = Some("sample-agents".into());
        assert_eq!(agent.namespace_or("testkube"), "sample-agents");
    }
}
