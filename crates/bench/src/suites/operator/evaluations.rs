//! The evaluations family: `testbench.agentic-layer.ai` `Experiment`s in namespace
//! [`NAMESPACE`], each testing one Agent with inline scenarios and a trigger, so that the
//! operator writes a `ConfigMap`, a `TestWorkflow` and a `TestTrigger` per Experiment.
//!
//! Prerequisites are what `agentic-operator dev` installs for the family: the operator's CRDs,
//! Testkube's `TestWorkflow` and `TestTrigger` CRDs and the Agent CRD (the dev cluster's
//! fixtures), an Agent whose URL the simulated agent runtime publishes, and the `otel-config`
//! `ConfigMap` the workflows read their OTLP endpoint from. Nothing runs the workflows: an
//! Experiment has settled once everything it needs is applied ([`settled`]).

use std::time::{Duration, Instant};

use http::Method;
use serde_json::{Value, json};

use super::{NAMESPACE, install, post, yaml_documents};
use crate::BenchError;
use crate::http::Conn;

/// Simulators the family needs (run as a separate process).
pub const SIMULATORS: &str = "agent-runtime";

/// Accounting resource of the Experiments.
pub const RESOURCE: &str = "experiments.testbench.agentic-layer.ai";

/// The Agent every Experiment tests.
pub const AGENT: &str = "bench-agent";

/// Foreign CRDs: Testkube's and the agent runtime's (the dev cluster's fixtures).
const FIXTURES: [(&str, &str); 3] = [
    (
        "testworkflows.testkube.io.yaml",
        include_str!("../../../../devcluster/fixtures/evaluations/testworkflows.testkube.io.yaml"),
    ),
    (
        "testtriggers.tests.testkube.io.yaml",
        include_str!(
            "../../../../devcluster/fixtures/evaluations/testtriggers.tests.testkube.io.yaml"
        ),
    ),
    (
        "agents.runtime.agentic-layer.ai.yaml",
        include_str!(
            "../../../../devcluster/fixtures/evaluations/agents.runtime.agentic-layer.ai.yaml"
        ),
    ),
];

/// API path of the Experiments in [`NAMESPACE`].
pub fn collection() -> String {
    format!("/apis/testbench.agentic-layer.ai/v1alpha1/namespaces/{NAMESPACE}/experiments")
}

/// The `i`th Experiment of a burst: two scenarios written inline (rendered into a
/// `ConfigMap`) and an enabled trigger.
pub fn object(i: usize) -> Value {
    json!({
        "apiVersion": "testbench.agentic-layer.ai/v1alpha1",
        "kind": "Experiment",
        "metadata": {"name": format!("e-{i:05}"), "namespace": NAMESPACE},
        "spec": {
            "agentRef": {"name": AGENT, "namespace": NAMESPACE},
            "llmAsAJudgeModel": "gemini-2.5-flash-lite",
            "defaultThreshold": 0.8,
            "scenarios": [
                {"name": "weather", "steps": [{
                    "input": format!("What is the weather in city {i}?"),
                    "reference": {"toolCalls": [{"name": "get_weather", "args": {"city": format!("city {i}")}}]},
                    "metrics": [
                        {"metricName": "AgentGoalAccuracyWithoutReference"},
                        {"metricName": "ToolCallAccuracy", "threshold": 1}
                    ]
                }]},
                {"name": "follow-up", "steps": [{
                    "input": "And tomorrow?",
                    "metrics": [{"metricName": "AgentGoalAccuracyWithoutReference", "threshold": 0}]
                }]}
            ],
            "trigger": {"enabled": true, "concurrencyPolicy": "Forbid"}
        }
    })
}

/// Kinds an Experiment of [`object`] generates.
pub const GENERATED: [&str; 3] = ["ConfigMap", "TestWorkflow", "TestTrigger"];

/// Whether a stored Experiment has settled: its `Ready` condition is `True` for the current
/// generation and `status.generatedResources` lists every kind in [`GENERATED`].
pub fn settled(object: &Value) -> bool {
    let status = &object["status"];
    let generation = &object["metadata"]["generation"];
    let ready = status["conditions"].as_array().is_some_and(|c| {
        c.iter().any(|c| {
            c["type"] == "Ready"
                && c["status"] == "True"
                && (generation.is_null() || c["observedGeneration"] == *generation)
        })
    });
    let generated = status["generatedResources"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    ready
        && GENERATED
            .iter()
            .all(|k| generated.iter().any(|g| g["kind"] == *k))
}

/// The CRDs, the namespace, the `otel-config` `ConfigMap` and the Agent.
pub async fn prerequisites(conn: &mut Conn, crds: &[Value]) -> Result<(), BenchError> {
    let mut all = crds.to_vec();
    for (file, yaml) in FIXTURES {
        all.extend(yaml_documents(file, yaml)?);
    }
    install(
        conn,
        &all,
        &[
            "/apis/testbench.agentic-layer.ai/v1alpha1",
            "/apis/testworkflows.testkube.io/v1",
            "/apis/tests.testkube.io/v1",
            "/apis/runtime.agentic-layer.ai/v1alpha1",
        ],
        Duration::from_mins(1),
    )
    .await?;
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}});
    post(conn, "/api/v1/namespaces", &ns).await?;
    let otel = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "otel-config", "namespace": NAMESPACE},
        "data": {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel-collector.monitoring.svc:4318"}});
    post(
        conn,
        &format!("/api/v1/namespaces/{NAMESPACE}/configmaps"),
        &otel,
    )
    .await?;
    let agent = json!({"apiVersion": "runtime.agentic-layer.ai/v1alpha1", "kind": "Agent",
        "metadata": {"name": AGENT, "namespace": NAMESPACE},
        "spec": {"protocols": [{"type": "A2A", "port": 8000}]}});
    post(
        conn,
        &format!("/apis/runtime.agentic-layer.ai/v1alpha1/namespaces/{NAMESPACE}/agents"),
        &agent,
    )
    .await
}

/// Waits until the simulated agent runtime published the Agent's URL.
pub async fn wait_agent(conn: &mut Conn, deadline: Duration) -> Result<(), BenchError> {
    let path =
        format!("/apis/runtime.agentic-layer.ai/v1alpha1/namespaces/{NAMESPACE}/agents/{AGENT}");
    let start = Instant::now();
    loop {
        let (status, body) = conn.call(Method::GET, &path, None).await?;
        if status == 200
            && serde_json::from_slice::<Value>(&body)
                .is_ok_and(|a| a["status"]["url"].as_str().is_some_and(|u| !u.is_empty()))
        {
            return Ok(());
        }
        if start.elapsed() > deadline {
            return Err(BenchError::Timeout {
                phase: "agent runtime".into(),
                seconds: deadline.as_secs(),
                detail: format!("{path} has no status.url"),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_status(generation: i64, ready: &str, observed: i64, kinds: &[&str]) -> Value {
        let generated: Vec<Value> = kinds
            .iter()
            .map(|k| json!({"kind": k, "name": "x"}))
            .collect();
        json!({
            "metadata": {"generation": generation},
            "status": {
                "conditions": [{"type": "Ready", "status": ready, "observedGeneration": observed}],
                "generatedResources": generated
            }
        })
    }

    #[test]
    fn settled_needs_ready_for_the_current_generation_and_every_child() {
        assert!(settled(&with_status(1, "True", 1, &GENERATED)));
        assert!(
            !settled(&with_status(1, "False", 1, &GENERATED)),
            "not Ready"
        );
        assert!(
            !settled(&with_status(2, "True", 1, &GENERATED)),
            "Ready for an older generation"
        );
        assert!(
            !settled(&with_status(1, "True", 1, &["ConfigMap", "TestWorkflow"])),
            "the trigger is missing"
        );
        assert!(!settled(&object(1)), "no status yet");
    }

    #[test]
    fn fixtures_are_crds() {
        for (file, yaml) in FIXTURES {
            let docs = yaml_documents(file, yaml).unwrap();
            assert_eq!(docs.len(), 1, "{file}");
            assert_eq!(docs[0]["kind"], "CustomResourceDefinition", "{file}");
        }
    }

    #[test]
    fn objects_have_distinct_names_in_the_namespace() {
        let (a, b) = (object(1), object(2));
        assert_ne!(a["metadata"]["name"], b["metadata"]["name"]);
        assert_eq!(a["metadata"]["namespace"], NAMESPACE);
        assert_eq!(a["spec"]["agentRef"]["name"], AGENT);
    }
}
