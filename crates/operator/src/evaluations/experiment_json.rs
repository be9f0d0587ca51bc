//! `experiment.json`: the document the Python phases read, in their `snake_case` contract.
//!
//! Field order is fixed by the structs below and the text is pretty-printed with two-space
//! indentation, so the same spec always yields the same bytes (and the `ConfigMap` is not
//! rewritten on every reconcile).

use agentic_api::evaluations::{
    DEFAULT_THRESHOLD, InlineScenarios, Metric, Reference, Scenario, Step, ToolCall,
};
use serde::Serialize;
use serde_json::{Map, Value};

/// The top-level document.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExperimentDocument<'a> {
    /// Judge model; omitted when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub llm_as_a_judge_model: Option<&'a str>,
    /// Pass mark for metrics without their own threshold; always written, `0` kept as `0`.
    pub default_threshold: f64,
    /// The scenarios; `[]` in dataset mode.
    pub scenarios: Vec<ScenarioDocument<'a>>,
}

/// One scenario.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScenarioDocument<'a> {
    /// Scenario name.
    pub name: &'a str,
    /// Its steps.
    pub steps: Vec<StepDocument<'a>>,
}

/// One step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepDocument<'a> {
    /// User input.
    pub input: &'a str,
    /// Expected answer; omitted when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<ReferenceDocument<'a>>,
    /// Raw custom values; omitted when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom_values: Option<&'a Map<String, Value>>,
    /// Metrics; omitted when empty.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<MetricDocument<'a>>,
}

/// The expected answer of a step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReferenceDocument<'a> {
    /// Expected response text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response: Option<&'a str>,
    /// Expected tool calls.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCallDocument<'a>>>,
    /// Expected topics.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topics: Option<&'a [String]>,
    /// Expected retrieved contexts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retrieved_contexts: Option<&'a [String]>,
}

/// An expected tool call. `args` is always written (`{}` when unset): the run phase requires it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolCallDocument<'a> {
    /// Tool name.
    pub name: &'a str,
    /// Raw arguments object.
    pub args: Value,
}

/// A metric of a step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricDocument<'a> {
    /// Metric name.
    pub metric_name: &'a str,
    /// Pass mark; omitted only when unset (`0` is written).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// Raw parameters; omitted when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters: Option<&'a Map<String, Value>>,
}

fn tool_call(call: &ToolCall) -> ToolCallDocument<'_> {
    ToolCallDocument {
        name: &call.name,
        args: Value::Object(call.args.clone().unwrap_or_default()),
    }
}

fn reference(reference: &Reference) -> ReferenceDocument<'_> {
    ReferenceDocument {
        response: reference.response.as_deref(),
        tool_calls: reference
            .tool_calls
            .as_ref()
            .map(|calls| calls.iter().map(tool_call).collect()),
        topics: reference.topics.as_deref(),
        retrieved_contexts: reference.retrieved_contexts.as_deref(),
    }
}

fn metric(metric: &Metric) -> MetricDocument<'_> {
    MetricDocument {
        metric_name: &metric.metric_name,
        threshold: metric.threshold,
        parameters: metric.parameters.as_ref(),
    }
}

fn step(step: &Step) -> StepDocument<'_> {
    StepDocument {
        input: &step.input,
        reference: step.reference.as_ref().map(reference),
        custom_values: step.custom_values.as_ref(),
        metrics: step
            .metrics
            .as_deref()
            .unwrap_or_default()
            .iter()
            .map(metric)
            .collect(),
    }
}

fn scenario(scenario: &Scenario) -> ScenarioDocument<'_> {
    ScenarioDocument {
        name: &scenario.name,
        steps: scenario.steps.iter().map(step).collect(),
    }
}

/// The document for inline scenarios.
pub fn inline_document<'a>(inline: &InlineScenarios<'a>) -> ExperimentDocument<'a> {
    ExperimentDocument {
        llm_as_a_judge_model: inline.llm_as_a_judge_model,
        default_threshold: inline.default_threshold.unwrap_or(DEFAULT_THRESHOLD),
        scenarios: inline.scenarios.iter().map(scenario).collect(),
    }
}

/// The placeholder written in dataset mode (the setup phase replaces the file): no scenarios,
/// with the judge settings recorded so that the `ConfigMap` shows what the spec asked for.
pub fn placeholder_document(
    llm_as_a_judge_model: Option<&str>,
    default_threshold: Option<f64>,
) -> ExperimentDocument<'_> {
    ExperimentDocument {
        llm_as_a_judge_model,
        default_threshold: default_threshold.unwrap_or(DEFAULT_THRESHOLD),
        scenarios: Vec::new(),
    }
}

/// Renders a document as two-space-indented JSON.
pub fn render(document: &ExperimentDocument<'_>) -> String {
    // Serializing these plain structs cannot fail: every map key is a string and every
    // number is finite (the schema bounds thresholds to 0..1).
    serde_json::to_string_pretty(document).unwrap_or_else(|_| String::from("{}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use agentic_api::evaluations::ExperimentSpec;
    use serde_json::json;

    fn spec(value: Value) -> ExperimentSpec {
        serde_json::from_value(value).unwrap()
    }

    fn inline_json(spec: &ExperimentSpec) -> Value {
        let Some(agentic_api::evaluations::ScenarioSource::Inline(inline)) = spec.scenario_source()
        else {
            panic!("inline scenarios expected");
        };
        serde_json::from_str(&render(&inline_document(&inline))).unwrap()
    }

    #[test]
    fn every_field_maps_to_snake_case() {
        let spec = spec(json!({
            "agentRef": {"name": "weather-agent"},
            "llmAsAJudgeModel": "gemini-2.5-flash-lite",
            "defaultThreshold": 0.8,
            "scenarios": [{
                "name": "Weather in New York",
                "steps": [{
                    "input": "What is the weather like in New York right now?",
                    "reference": {
                        "response": "Sunny",
                        "toolCalls": [{"name": "get_weather", "args": {"city": "New York", "days": [1, 2]}}],
                        "topics": ["weather"],
                        "retrievedContexts": ["ctx"]
                    },
                    "customValues": {"retrieved_contexts": ["a", "b"], "nested": {"x": 1}},
                    "metrics": [
                        {"metricName": "AgentGoalAccuracyWithoutReference"},
                        {"metricName": "TopicAdherence", "threshold": 0.5, "parameters": {"mode": "precision"}}
                    ]
                }]
            }]
        }));
        assert_eq!(
            inline_json(&spec),
            json!({
                "llm_as_a_judge_model": "gemini-2.5-flash-lite",
                "default_threshold": 0.8,
                "scenarios": [{
                    "name": "Weather in New York",
                    "steps": [{
                        "input": "What is the weather like in New York right now?",
                        "reference": {
                            "response": "Sunny",
                            "tool_calls": [{"name": "get_weather", "args": {"city": "New York", "days": [1, 2]}}],
                            "topics": ["weather"],
                            "retrieved_contexts": ["ctx"]
                        },
                        "custom_values": {"retrieved_contexts": ["a", "b"], "nested": {"x": 1}},
                        "metrics": [
                            {"metric_name": "AgentGoalAccuracyWithoutReference"},
                            {"metric_name": "TopicAdherence", "threshold": 0.5, "parameters": {"mode": "precision"}}
                        ]
                    }]
                }]
            })
        );
    }

    /// Upstream turned `defaultThreshold: 0` into 0.9 and dropped `threshold: 0`.
    #[test]
    fn zero_thresholds_are_kept() {
        let spec = spec(json!({
            "agentRef": {"name": "a"},
            "defaultThreshold": 0.0,
            "scenarios": [{"name": "s", "steps": [{"input": "hi", "metrics": [{"metricName": "m", "threshold": 0.0}]}]}]
        }));
        let doc = inline_json(&spec);
        assert_eq!(doc["default_threshold"], json!(0.0));
        assert_eq!(
            doc["scenarios"][0]["steps"][0]["metrics"][0]["threshold"],
            json!(0.0)
        );
    }

    /// Upstream omitted `args` when unset although the run phase requires it.
    #[test]
    fn tool_call_args_default_to_an_empty_object() {
        let spec = spec(json!({
            "agentRef": {"name": "a"},
            "scenarios": [{"name": "s", "steps": [{"input": "hi", "reference": {"toolCalls": [{"name": "t"}]}}]}]
        }));
        let doc = inline_json(&spec);
        assert_eq!(
            doc["scenarios"][0]["steps"][0]["reference"]["tool_calls"],
            json!([{"name": "t", "args": {}}])
        );
        assert_eq!(doc["default_threshold"], json!(0.9));
        assert!(doc.get("llm_as_a_judge_model").is_none());
        let step = &doc["scenarios"][0]["steps"][0];
        assert!(step.get("metrics").is_none() && step.get("custom_values").is_none());
    }

    #[test]
    fn rendering_is_deterministic_and_indented() {
        let spec = spec(json!({
            "agentRef": {"name": "a"},
            "scenarios": [{"name": "s", "steps": [{"input": "hi"}]}]
        }));
        let Some(agentic_api::evaluations::ScenarioSource::Inline(inline)) = spec.scenario_source()
        else {
            panic!("inline");
        };
        let first = render(&inline_document(&inline));
        assert_eq!(first, render(&inline_document(&inline)));
        assert_eq!(
            first,
            "{\n  \"default_threshold\": 0.9,\n  \"scenarios\": [\n    {\n      \"name\": \"s\",\n      \"steps\": [\n        {\n          \"input\": \"hi\"\n        }\n      ]\n    }\n  ]\n}"
        );
    }

    #[test]
    fn placeholder_has_empty_scenarios_and_the_judge_settings() {
        let doc: Value =
            serde_json::from_str(&render(&placeholder_document(Some("gpt-4o"), Some(0.0))))
                .unwrap();
        assert_eq!(
            doc,
            json!({"llm_as_a_judge_model": "gpt-4o", "default_threshold": 0.0, "scenarios": []})
        );
    }
}
