//! What the evaluations controller caches of each `Experiment`: its identity, the two
//! references the wake-up indexes read (`spec.agentRef`, `spec.aiGatewayRef`) and the rest
//! packed ([`crate::runtime::packed`]), parsed again when the Experiment is reconciled. An
//! Experiment with inline scenarios and a settled status parses into several KiB of typed
//! trees; packed, it is a fraction of that.

use agentic_api::evaluations::{AgentRef, Experiment};
use k8s_openapi::{api::core::v1::ObjectReference, apimachinery::pkg::apis::meta::v1::ObjectMeta};
use serde::Deserialize;

use crate::runtime::packed::{Dictionary, Packed, RawObject, packed_resource};

/// An evaluation `Experiment` as cached.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(try_from = "RawObject")]
pub struct CachedExperiment {
    /// Name, namespace, uid, resourceVersion, generation and deletionTimestamp.
    pub metadata: ObjectMeta,
    /// `spec.agentRef` (empty when the spec does not read as one).
    pub agent_ref: AgentRef,
    /// `spec.aiGatewayRef`, when set.
    pub ai_gateway_ref: Option<Box<ObjectReference>>,
    packed: Packed,
}

/// Substrings that recur in Experiments' compact JSON: keys in `serde_json`'s sorted order,
/// the condition vocabulary of [`super::status`], the generated kinds. Longer entries first.
static DICTIONARY: Dictionary = Dictionary::new(&[
    r#"{"apiVersion":"testbench.agentic-layer.ai/v1alpha1","kind":"Experiment","metadata":{"#,
    "; the workflow runs but publishes no metrics (set spec.otlpEndpoint or create the ConfigMap)",
    "(the first AiGateway in namespace ai-gateway; set spec.aiGatewayRef to choose)",
    "ConfigMap otel-config with key OTEL_EXPORTER_OTLP_ENDPOINT not found in namespace ",
    r#""All resources reconciled successfully","observedGeneration":"#,
    r#""TestWorkflow created successfully","observedGeneration":"#,
    "evaluate-template reaches the judge model through AiGateway ",
    r#""AgentGoalAccuracyWithoutReference""#,
    r#"{"lastTransitionTime":""#,
    r#"","status":"False","type":""#,
    r#"","status":"True","type":""#,
    "(from the Agent's status.url)",
    r#"{"kind":"TestWorkflow","name":""#,
    r#"{"kind":"TestTrigger","name":""#,
    r#"{"kind":"ConfigMap","name":""#,
    r#""generatedResources":[{"kind":"#,
    r#""observedGeneration":"#,
    r#""llmAsAJudgeModel":""#,
    r#""creationTimestamp":""#,
    r#""ReconcileSucceeded""#,
    r#""defaultThreshold":"#,
    r#""agentRef":{"name":""#,
    ".svc.cluster.local",
    r#"{"metricName":""#,
    r#""namespace":""#,
    r#""threshold":"#,
    r#""message":""#,
    r#""reason":""#,
    r#"","steps":[{"#,
    r#""input":""#,
    r#""name":""#,
]);

/// The references the indexes read, the rest of the spec skipped.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct References {
    #[serde(default)]
    agent_ref: AgentRef,
    #[serde(default)]
    ai_gateway_ref: Option<ObjectReference>,
}

impl CachedExperiment {
    /// The full Experiment (without `managedFields` and the `kubectl apply` annotation).
    ///
    /// # Errors
    ///
    /// When the cached text does not read as an `Experiment`.
    pub fn experiment(&self) -> Result<Experiment, serde_json::Error> {
        self.packed.restore(&self.metadata, &DICTIONARY)
    }

    /// Caches `experiment` (for tests and tools that hold typed Experiments).
    ///
    /// # Errors
    ///
    /// As [`Packed::split`].
    pub fn from_experiment(experiment: &Experiment) -> Result<Self, serde_json::Error> {
        Self::try_from(serde_json::to_value(experiment)?)
    }

    /// Bytes the packed text takes (for footprint tests).
    #[must_use]
    pub fn packed_len(&self) -> usize {
        self.packed.len()
    }
}

impl TryFrom<RawObject> for CachedExperiment {
    type Error = serde_json::Error;

    /// Caches an Experiment read as raw members. A spec whose references do not read (the
    /// schema forbids it) is cached with empty ones, so one such object cannot fail the
    /// list of every Experiment; its reconcile then reports why it cannot be read
    /// ([`super::error::EvaluationError::Decode`]).
    fn try_from(object: RawObject) -> Result<Self, Self::Error> {
        let refs = object
            .get("spec")
            .and_then(|raw| serde_json::from_str::<References>(raw.get()).ok())
            .unwrap_or_default();
        let (metadata, packed) = Packed::split(object, &DICTIONARY)?;
        Ok(Self {
            metadata,
            agent_ref: refs.agent_ref,
            ai_gateway_ref: refs.ai_gateway_ref.map(Box::new),
            packed,
        })
    }
}

packed_resource!(
    CachedExperiment,
    "Experiment",
    "experiments",
    agentic_api::evaluations
);

#[cfg(test)]
mod tests {
    use super::*;
    use kube::Resource;

    /// A settled Experiment with inline scenarios, as the API server returns it.
    fn settled() -> serde_json::Value {
        let condition = |type_: &str, status: &str, reason: &str, message: &str| {
            serde_json::json!({"type": type_, "status": status, "reason": reason,
                "message": message, "lastTransitionTime": "2026-11-24T16:19:44Z",
                "observedGeneration": 1})
        };
        serde_json::json!({
            "apiVersion": "testbench.agentic-layer.ai/v1alpha1", "kind": "Experiment",
            "metadata": {"name": "e-00042", "namespace": "bench-evaluations",
                "uid": "f66498d1-1e04-466e-a42a-7a514b494ed3", "resourceVersion": "146",
                "generation": 1, "creationTimestamp": "2026-11-24T16:19:44Z",
                "labels": {"team": "a"},
                "finalizers": ["testbench.agentic-layer.ai/finalizer"],
                "managedFields": [{"manager": "kubectl", "operation": "Update"}]},
            "spec": {
                "agentRef": {"name": "weather-agent", "namespace": "sample-agents"},
                "llmAsAJudgeModel": "gemini-2.5-flash-lite", "defaultThreshold": 0.8,
                "scenarios": [
                    {"name": "weather", "steps": [{"input": "What is the weather in city 42?",
                        "reference": {"toolCalls": [{"name": "get_weather", "args": {"city": "city 42"}}]},
                        "metrics": [{"metricName": "AgentGoalAccuracyWithoutReference"},
                            {"metricName": "ToolCallAccuracy", "threshold": 1}]}]},
                    {"name": "follow-up", "steps": [{"input": "And tomorrow?",
                        "metrics": [{"metricName": "AgentGoalAccuracyWithoutReference", "threshold": 0}]}]}
                ],
                "trigger": {"enabled": true, "concurrencyPolicy": "Forbid"}
            },
            "status": {"observedGeneration": 1, "conditions": [
                condition("Ready", "True", "ReconcileSucceeded", "All resources reconciled successfully"),
                condition("WorkflowReady", "True", "WorkflowCreated", "TestWorkflow created successfully"),
                condition("AgentResolved", "True", "AgentStatusURL",
                    "agent URL http://weather-agent.sample-agents.svc.cluster.local:8000 (from the Agent's status.url)"),
                condition("AiGatewayResolved", "True", "DefaultAiGateway",
                    "evaluate-template reaches the judge model through AiGateway ai-gateway/litellm at http://litellm.ai-gateway.svc.cluster.local.:4000 (the first AiGateway in namespace ai-gateway; set spec.aiGatewayRef to choose)"),
                condition("OtelConfigured", "False", "OtelConfigMapMissing",
                    "ConfigMap otel-config with key OTEL_EXPORTER_OTLP_ENDPOINT not found in namespace bench-evaluations; the workflow runs but publishes no metrics (set spec.otlpEndpoint or create the ConfigMap)")
            ], "generatedResources": [
                {"kind": "ConfigMap", "name": "e-00042-experiment", "namespace": "bench-evaluations"},
                {"kind": "TestWorkflow", "name": "e-00042-workflow", "namespace": "bench-evaluations"},
                {"kind": "TestTrigger", "name": "e-00042-trigger", "namespace": "bench-evaluations"}
            ]}
        })
    }

    #[test]
    fn a_cached_experiment_gives_back_the_whole_experiment_from_a_fraction_of_its_text() {
        let full: Experiment = serde_json::from_value(settled()).unwrap();
        let cached: CachedExperiment = serde_json::from_value(settled()).unwrap();
        // What the indexes read without parsing the rest.
        assert_eq!(cached.metadata.name.as_deref(), Some("e-00042"));
        assert_eq!(cached.metadata.resource_version.as_deref(), Some("146"));
        assert_eq!(cached.metadata.generation, Some(1));
        assert!(cached.metadata.labels.is_none() && cached.metadata.finalizers.is_none());
        assert_eq!(cached.agent_ref, full.spec.agent_ref);
        assert!(cached.ai_gateway_ref.is_none());
        // What a reconcile decides from: everything but managedFields.
        let mut expected = full.clone();
        expected.metadata.managed_fields = None;
        assert_eq!(cached.experiment().unwrap(), expected);
        // Packed: under half the compact JSON of the object.
        let compact = serde_json::to_string(&expected).unwrap().len();
        assert!(
            cached.packed_len() * 2 < compact,
            "packed {} bytes of {compact}",
            cached.packed_len()
        );
        // Pretty-printed text caches the same.
        let pretty: CachedExperiment =
            serde_json::from_str(&serde_json::to_string_pretty(&settled()).unwrap()).unwrap();
        assert_eq!(pretty, cached);
        // A typed Experiment caches to the same (its numbers may be written differently).
        let typed = CachedExperiment::from_experiment(&expected).unwrap();
        assert_eq!(typed.metadata, cached.metadata);
        assert_eq!(typed.experiment().unwrap(), expected);
        assert_eq!(
            CachedExperiment::url_path(&(), Some("ns")),
            "/apis/testbench.agentic-layer.ai/v1alpha1/namespaces/ns/experiments"
        );
    }

    #[test]
    fn the_gateway_reference_is_read_and_any_text_survives_packing() {
        let mut value = settled();
        value["spec"]["aiGatewayRef"] = serde_json::json!({"name": "gw", "namespace": "ai"});
        // Every dictionary entry, quotes, escapes and control characters inside a value.
        let mut input: String = DICTIONARY.entries().concat();
        input.push_str("\n\t\u{1}\u{1f} \\ \" \u{e9}\u{1f600}");
        value["spec"]["scenarios"][0]["steps"][0]["input"] = serde_json::json!(input);
        let cached: CachedExperiment = serde_json::from_value(value.clone()).unwrap();
        let gateway = cached.ai_gateway_ref.as_deref().unwrap();
        assert_eq!(
            (gateway.namespace.as_deref(), gateway.name.as_deref()),
            (Some("ai"), Some("gw"))
        );
        let back = cached.experiment().unwrap();
        let scenarios = back.spec.scenarios.as_deref().unwrap();
        assert_eq!(scenarios[0].steps[0].input, input);
    }

    #[test]
    fn what_each_kind_of_bad_input_does() {
        // A malformed identity: the object is refused (never half-cached).
        for bad in [
            r#"{"metadata": {"name": 7}}"#,
            r#"{"metadata": {"generation": "one"}}"#,
        ] {
            assert!(
                serde_json::from_str::<CachedExperiment>(bad).is_err(),
                "{bad} was accepted"
            );
        }
        // A spec that does not read as an Experiment's: cached with empty references, and
        // refused when the reconcile reads it.
        let odd: CachedExperiment = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "e", "namespace": "ns"},
            "spec": {"agentRef": "weather-agent", "scenarios": 3}
        }))
        .unwrap();
        assert_eq!(odd.agent_ref, AgentRef::default());
        assert_eq!(odd.metadata.name.as_deref(), Some("e"));
        let error = odd.experiment().unwrap_err().to_string();
        assert!(error.starts_with("spec.agentRef: invalid type"), "{error}");
    }
}
