//! Files compiled into the binary so that `agentic-operator dev` works from any directory:
//! the foreign CRDs the families talk to and the repository's `examples/`.

/// Foreign `CustomResourceDefinition`s (Agent runtime, Testkube, Crossplane claims, Argo CD,
/// Argo Workflows), as `(file, YAML)`.
pub const FOREIGN_CRDS: [(&str, &str); 11] = [
    (
        "evaluations/aigateways.runtime.agentic-layer.ai.yaml",
        include_str!(
            "../../../devcluster/fixtures/evaluations/aigateways.runtime.agentic-layer.ai.yaml"
        ),
    ),
    (
        "evaluations/agents.runtime.agentic-layer.ai.yaml",
        include_str!(
            "../../../devcluster/fixtures/evaluations/agents.runtime.agentic-layer.ai.yaml"
        ),
    ),
    (
        "evaluations/testtriggers.tests.testkube.io.yaml",
        include_str!(
            "../../../devcluster/fixtures/evaluations/testtriggers.tests.testkube.io.yaml"
        ),
    ),
    (
        "evaluations/testworkflows.testkube.io.yaml",
        include_str!("../../../devcluster/fixtures/evaluations/testworkflows.testkube.io.yaml"),
    ),
    (
        "labs/argo-workflow.yaml",
        include_str!("../../../devcluster/fixtures/labs/argo-workflow.yaml"),
    ),
    (
        "labs/argo-workflowtemplate.yaml",
        include_str!("../../../devcluster/fixtures/labs/argo-workflowtemplate.yaml"),
    ),
    (
        "labs/argocd-application.yaml",
        include_str!("../../../devcluster/fixtures/labs/argocd-application.yaml"),
    ),
    (
        "labs/claim-gkecluster.yaml",
        include_str!("../../../devcluster/fixtures/labs/claim-gkecluster.yaml"),
    ),
    (
        "labs/claim-taloscluster.yaml",
        include_str!("../../../devcluster/fixtures/labs/claim-taloscluster.yaml"),
    ),
    (
        "labs/claim-vcluster.yaml",
        include_str!("../../../devcluster/fixtures/labs/claim-vcluster.yaml"),
    ),
    (
        "labs/composite-xgkecluster.yaml",
        include_str!("../../../devcluster/fixtures/labs/composite-xgkecluster.yaml"),
    ),
];

/// The files of `examples/`, as `(path, YAML)`, in the order they are applied.
pub const EXAMPLES: [(&str, &str); 9] = [
    (
        "examples/sessions/project.yaml",
        include_str!("../../../../examples/sessions/project.yaml"),
    ),
    (
        "examples/sessions/completes.yaml",
        include_str!("../../../../examples/sessions/completes.yaml"),
    ),
    (
        "examples/sessions/stopped.yaml",
        include_str!("../../../../examples/sessions/stopped.yaml"),
    ),
    (
        "examples/evaluations/scenarios.yaml",
        include_str!("../../../../examples/evaluations/scenarios.yaml"),
    ),
    (
        "examples/evaluations/dataset.yaml",
        include_str!("../../../../examples/evaluations/dataset.yaml"),
    ),
    (
        "examples/labs/components.yaml",
        include_str!("../../../../examples/labs/components.yaml"),
    ),
    (
        "examples/labs/tailscale-oauth.yaml",
        include_str!("../../../../examples/labs/tailscale-oauth.yaml"),
    ),
    (
        "examples/labs/workflowtemplate.yaml",
        include_str!("../../../../examples/labs/workflowtemplate.yaml"),
    ),
    (
        "examples/labs/gateway-tutorial.yaml",
        include_str!("../../../../examples/labs/gateway-tutorial.yaml"),
    ),
];

/// What the examples need that they do not contain themselves: the namespaces of the
/// evaluation and lab examples and of the systems they talk to, the Agent the evaluation
/// examples test and the AI gateway their evaluate step uses.
pub const PREREQUISITES: &str = r"
apiVersion: v1
kind: Namespace
metadata: {name: sample-agents}
---
apiVersion: v1
kind: Namespace
metadata: {name: ai-gateway}
---
apiVersion: v1
kind: Namespace
metadata: {name: testkube}
---
apiVersion: v1
kind: Namespace
metadata: {name: experiments}
---
apiVersion: v1
kind: Namespace
metadata: {name: argocd}
---
apiVersion: v1
kind: Namespace
metadata: {name: argo-workflows}
---
apiVersion: v1
kind: Namespace
metadata: {name: monitoring}
---
apiVersion: v1
kind: Namespace
metadata: {name: clusters}
---
apiVersion: runtime.agentic-layer.ai/v1alpha1
kind: Agent
metadata: {name: weather-agent, namespace: sample-agents}
spec:
  protocols:
  - {type: A2A, port: 8000}
---
apiVersion: runtime.agentic-layer.ai/v1alpha1
kind: AiGateway
metadata: {name: ai-gateway-litellm, namespace: ai-gateway}
spec:
  port: 4000
  aiModels:
  - {name: gemini-2.5-flash-lite, provider: gemini}
";

/// Splits a multi-document YAML stream into JSON values, skipping empty documents.
pub fn documents(yaml: &str) -> Result<Vec<serde_json::Value>, serde_yaml::Error> {
    use serde::Deserialize;
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(yaml) {
        let value = serde_json::Value::deserialize(doc)?;
        if !value.is_null() {
            out.push(value);
        }
    }
    Ok(out)
}
