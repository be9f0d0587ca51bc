//! The sessions family: `AgenticSession`s in namespace [`NAMESPACE`], settled when
//! `status.phase` is `Running`. The simulated kubelet runs the runner pods, which a bench
//! admission webhook scripts to keep running ([`script_runner_pod`]).

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};

use super::{NAMESPACE, base64, install, post};
use crate::BenchError;
use crate::http::Conn;

/// Simulators `devcluster serve` runs in-process for sessions.
pub const SIMULATORS: &str = "scheduler,kubelet,jobs";

/// Accounting resource of `AgenticSession`s.
pub const RESOURCE: &str = "agenticsessions.vteam.ambient-code";

/// API path of the sessions in [`NAMESPACE`].
pub fn collection() -> String {
    format!("/apis/vteam.ambient-code/v1alpha1/namespaces/{NAMESPACE}/agenticsessions")
}

/// The `i`th session of a burst.
pub fn object(i: usize) -> Value {
    json!({
        "apiVersion": "vteam.ambient-code/v1alpha1",
        "kind": "AgenticSession",
        "metadata": {"name": format!("s-{i:05}"), "namespace": NAMESPACE},
        "spec": {
            "displayName": format!("bench session {i}"),
            "initialPrompt": "benchmark",
            "llmSettings": {"model": "claude-sonnet-4-6", "temperature": 0.2, "maxTokens": 1000},
            "timeout": 36000
        }
    })
}

/// Whether a stored session has settled.
pub fn settled(object: &Value) -> bool {
    object["status"]["phase"] == "Running"
}

/// The answer of the pod-scripting webhook to an `AdmissionReview`: runner pods get
/// annotations that keep the runner and its sidecar running and end the init container at
/// once; other pods are admitted unchanged.
pub fn script_runner_pod(review: &Value) -> Value {
    let req = &review["request"];
    let uid = req["uid"].clone();
    let pod = &req["object"];
    let mut response = json!({"uid": uid, "allowed": true});
    if pod["metadata"]["labels"]["app"] == "ambient-code-runner" {
        let mut annotations = pod["metadata"]["annotations"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        for (k, v) in [
            ("devcluster.io/run-seconds.init-hydrate", "0"),
            ("devcluster.io/run-seconds.ambient-code-runner", "forever"),
            ("devcluster.io/run-seconds.state-sync", "forever"),
        ] {
            annotations.insert(k.into(), json!(v));
        }
        let patch = json!([{"op": "add", "path": "/metadata/annotations", "value": annotations}]);
        response["patchType"] = json!("JSONPatch");
        response["patch"] = json!(base64(patch.to_string().as_bytes()));
    }
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response})
}

/// The CRDs, the namespace, the runner secret and the pod-scripting webhook at `webhook`.
pub async fn prerequisites(
    conn: &mut Conn,
    crds: &[Value],
    webhook: Option<SocketAddr>,
) -> Result<(), BenchError> {
    install(
        conn,
        crds,
        &["/apis/vteam.ambient-code/v1alpha1"],
        Duration::from_mins(1),
    )
    .await?;
    let ns = json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": NAMESPACE, "labels": {"ambient-code.io/managed": "true"}}});
    post(conn, "/api/v1/namespaces", &ns).await?;
    let secret = json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "ambient-runner-secrets", "namespace": NAMESPACE},
        "stringData": {"ANTHROPIC_API_KEY": "bench"}});
    post(
        conn,
        &format!("/api/v1/namespaces/{NAMESPACE}/secrets"),
        &secret,
    )
    .await?;
    if let Some(addr) = webhook {
        let hook = json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": "bench-script-runner-pods"},
            "webhooks": [{
                "name": "script-runner-pods.bench.local",
                "clientConfig": {"url": format!("http://{addr}/mutate")},
                "rules": [{"apiGroups": [""], "apiVersions": ["v1"],
                           "operations": ["CREATE"], "resources": ["pods"]}],
                "objectSelector": {"matchLabels": {"app": "ambient-code-runner"}},
                "failurePolicy": "Fail",
                "sideEffects": "None",
                "admissionReviewVersions": ["v1"]
            }]
        });
        post(
            conn,
            "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations",
            &hook,
        )
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_scripts_only_runner_pods() {
        let review = json!({"request": {"uid": "u1", "object": {"metadata": {
            "labels": {"app": "ambient-code-runner"}, "annotations": {"a": "b"}}}}});
        let r = script_runner_pod(&review);
        assert_eq!(r["response"]["uid"], "u1");
        assert_eq!(r["response"]["allowed"], true);
        assert_eq!(r["response"]["patchType"], "JSONPatch");
        let other =
            json!({"request": {"uid": "u2", "object": {"metadata": {"labels": {"app": "x"}}}}});
        let r = script_runner_pod(&other);
        assert!(r["response"].get("patch").is_none());
    }

    #[test]
    fn settled_only_when_running() {
        assert!(settled(&json!({"status": {"phase": "Running"}})));
        assert!(!settled(&json!({"status": {"phase": "Creating"}})));
        assert!(!settled(&json!({})));
    }
}
