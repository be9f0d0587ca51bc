//! The labs family: `experiments.illm.io` `Experiment`s in namespace [`NAMESPACE`] with two
//! targets each: `app` on a `vcluster` (a Crossplane claim, a connection Secret, an Argo CD
//! cluster Secret and an Application) and `loadgen` on the hub (an Application), which
//! depends on `app`; a `WorkflowTemplate` drives completion. Settled means phase `Complete`.
//!
//! The simulators (Crossplane, Argo CD, Argo Workflows) run at zero delay: the template
//! carries `devcluster.io/run-seconds: "0"`, and a bench admission webhook adds
//! `devcluster.io/ready-seconds: "0"` to the claims and Applications the operator creates
//! ([`zero_delay`]), since their annotations come from the operator, not the bench.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use super::{NAMESPACE, base64, bench_err, install, post, yaml_documents};
use crate::BenchError;
use crate::http::Conn;

/// Simulators the family needs (run as a separate process).
pub const SIMULATORS: &str = "crossplane,argocd,argo-workflows";

/// Accounting resource of the Experiments.
pub const RESOURCE: &str = "experiments.experiments.illm.io";

/// The `WorkflowTemplate` every Experiment runs.
pub const TEMPLATE: &str = "bench-validation";

/// Namespaces of Argo CD, Argo Workflows and Grafana (written to the labs configuration).
pub const ARGOCD_NAMESPACE: &str = "argocd";
/// See [`ARGOCD_NAMESPACE`].
pub const WORKFLOW_NAMESPACE: &str = "argo-workflows";
/// See [`ARGOCD_NAMESPACE`].
pub const GRAFANA_NAMESPACE: &str = "monitoring";

/// Provisioning timeout given to the operator: long enough that a loaded machine does not
/// fail claims, which the bench would then report as not settled.
pub const PROVISIONING_TIMEOUT_S: u64 = 3600;

/// Foreign CRDs: the claims, Argo CD's Application and Argo Workflows' kinds.
const FIXTURES: [(&str, &str); 6] = [
    (
        "claim-gkecluster.yaml",
        include_str!("../../../../devcluster/fixtures/labs/claim-gkecluster.yaml"),
    ),
    (
        "claim-taloscluster.yaml",
        include_str!("../../../../devcluster/fixtures/labs/claim-taloscluster.yaml"),
    ),
    (
        "claim-vcluster.yaml",
        include_str!("../../../../devcluster/fixtures/labs/claim-vcluster.yaml"),
    ),
    (
        "argocd-application.yaml",
        include_str!("../../../../devcluster/fixtures/labs/argocd-application.yaml"),
    ),
    (
        "argo-workflow.yaml",
        include_str!("../../../../devcluster/fixtures/labs/argo-workflow.yaml"),
    ),
    (
        "argo-workflowtemplate.yaml",
        include_str!("../../../../devcluster/fixtures/labs/argo-workflowtemplate.yaml"),
    ),
];

/// API path of the Experiments in [`NAMESPACE`].
pub fn collection() -> String {
    format!("/apis/experiments.illm.io/v1alpha1/namespaces/{NAMESPACE}/experiments")
}

/// The `i`th Experiment of a burst.
pub fn object(i: usize) -> Value {
    json!({
        "apiVersion": "experiments.illm.io/v1alpha1",
        "kind": "Experiment",
        "metadata": {"name": format!("x-{i:05}"), "namespace": NAMESPACE},
        "spec": {
            "description": format!("bench experiment {i}"),
            "targets": [
                {"name": "app", "cluster": {"type": "vcluster"},
                 "components": [{"app": "web", "params": {"replicas": "1"}}]},
                {"name": "loadgen", "cluster": {"type": "hub"},
                 "components": [{"workflow": "loadgen", "params": {"users": "10"}}],
                 "depends": ["app"]}
            ],
            "workflow": {"template": TEMPLATE, "completion": {"mode": "workflow"}}
        }
    })
}

/// Whether a stored Experiment has settled (phase `Complete`).
pub fn settled(object: &Value) -> bool {
    object["status"]["phase"] == "Complete"
}

/// Whether a stored Experiment failed (it will never settle).
pub fn failed(object: &Value) -> bool {
    object["status"]["phase"] == "Failed"
}

/// The labs configuration file the operator reads through `LABS_CONFIG_FILE`.
pub fn config_yaml() -> String {
    format!(
        "argocdNamespace: {ARGOCD_NAMESPACE}\nworkflowNamespace: {WORKFLOW_NAMESPACE}\n\
         grafanaNamespace: {GRAFANA_NAMESPACE}\nprovisioningTimeoutSeconds: {PROVISIONING_TIMEOUT_S}\n"
    )
}

/// Writes [`config_yaml`] into `dir`; returns the operator's extra environment.
pub fn operator_env(dir: &Path) -> Result<Vec<(String, String)>, BenchError> {
    let path = dir.join("labs.yaml");
    std::fs::write(&path, config_yaml())
        .map_err(|e| bench_err(format!("{}: {e}", path.display())))?;
    Ok(vec![
        ("LABS_CONFIG_FILE".into(), path.display().to_string()),
        (
            "LABS_PROVISIONING_TIMEOUT_SECONDS".into(),
            PROVISIONING_TIMEOUT_S.to_string(),
        ),
    ])
}

/// Kinds [`zero_delay`] scripts.
const SCRIPTED_KINDS: [&str; 4] = ["GKECluster", "TalosCluster", "VCluster", "Application"];

/// The answer of the zero-delay webhook to an `AdmissionReview`: claims and Applications get
/// `devcluster.io/ready-seconds: "0"` (keeping their other annotations); anything else is
/// admitted unchanged.
pub fn zero_delay(review: &Value) -> Value {
    let req = &review["request"];
    let mut response = json!({"uid": req["uid"].clone(), "allowed": true});
    let kind = req["kind"]["kind"]
        .as_str()
        .or_else(|| req["object"]["kind"].as_str())
        .unwrap_or_default();
    if SCRIPTED_KINDS.contains(&kind) && req["operation"] == "CREATE" {
        let mut annotations = req["object"]["metadata"]["annotations"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        annotations.insert("devcluster.io/ready-seconds".into(), json!("0"));
        let patch = json!([{"op": "add", "path": "/metadata/annotations", "value": annotations}]);
        response["patchType"] = json!("JSONPatch");
        response["patch"] = json!(base64(patch.to_string().as_bytes()));
    }
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response})
}

/// The CRDs, namespaces, Components, the `WorkflowTemplate` and (with `webhook`) the
/// zero-delay webhook.
pub async fn prerequisites(
    conn: &mut Conn,
    crds: &[Value],
    webhook: Option<SocketAddr>,
) -> Result<(), BenchError> {
    let mut all = crds.to_vec();
    for (file, yaml) in FIXTURES {
        all.extend(yaml_documents(file, yaml)?);
    }
    install(
        conn,
        &all,
        &[
            "/apis/experiments.illm.io/v1alpha1",
            "/apis/illm.io/v1alpha1",
            "/apis/argoproj.io/v1alpha1",
        ],
        Duration::from_mins(1),
    )
    .await?;
    for ns in [
        NAMESPACE,
        ARGOCD_NAMESPACE,
        WORKFLOW_NAMESPACE,
        GRAFANA_NAMESPACE,
    ] {
        let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
        post(conn, "/api/v1/namespaces", &body).await?;
    }
    catalogue(conn).await?;
    if let Some(addr) = webhook {
        register_webhook(conn, addr).await?;
    }
    Ok(())
}

/// The Components (`web`, an app; `loadgen`, a workflow) and the zero-delay template.
async fn catalogue(conn: &mut Conn) -> Result<(), BenchError> {
    for (name, type_, params) in [
        (
            "web",
            "app",
            json!([{"name": "replicas", "type": "int", "default": "2"}]),
        ),
        (
            "loadgen",
            "workflow",
            json!([{"name": "users", "type": "int", "required": true}]),
        ),
    ] {
        let component = json!({
            "apiVersion": "experiments.illm.io/v1alpha1",
            "kind": "Component",
            "metadata": {"name": name},
            "spec": {
                "type": type_,
                "sources": [{"repoURL": "https://charts.example.com", "chart": name,
                             "targetRevision": "1.0.0", "helm": {"releaseName": name}}],
                "parameters": params
            }
        });
        post(
            conn,
            "/apis/experiments.illm.io/v1alpha1/components",
            &component,
        )
        .await?;
    }
    let template = json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "WorkflowTemplate",
        "metadata": {"name": TEMPLATE, "namespace": WORKFLOW_NAMESPACE,
                     "annotations": {"devcluster.io/run-seconds": "0"}},
        "spec": {
            "entrypoint": "validate",
            "arguments": {"parameters": [{"name": "experiment-name"}]},
            "templates": [{"name": "validate", "container": {"image": "alpine:3.19",
                "command": ["sh", "-c"], "args": ["echo {{workflow.parameters.experiment-name}}"]}}]
        }
    });
    post(
        conn,
        &format!("/apis/argoproj.io/v1alpha1/namespaces/{WORKFLOW_NAMESPACE}/workflowtemplates"),
        &template,
    )
    .await
}

/// Registers the [`zero_delay`] webhook served at `addr`.
async fn register_webhook(conn: &mut Conn, addr: SocketAddr) -> Result<(), BenchError> {
    let hook = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "bench-zero-delay"},
        "webhooks": [{
            "name": "zero-delay.bench.local",
            "clientConfig": {"url": format!("http://{addr}/mutate")},
            "rules": [
                {"apiGroups": ["illm.io"], "apiVersions": ["v1alpha1"],
                 "operations": ["CREATE"], "resources": ["gkeclusters", "talosclusters", "vclusters"]},
                {"apiGroups": ["argoproj.io"], "apiVersions": ["v1alpha1"],
                 "operations": ["CREATE"], "resources": ["applications"]}
            ],
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
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn review(kind: &str, operation: &str, annotations: &Value) -> Value {
        json!({"request": {"uid": "u", "kind": {"kind": kind}, "operation": operation,
            "object": {"kind": kind, "metadata": {"name": "n", "annotations": annotations}}}})
    }

    fn patched_annotations(answer: &Value) -> Value {
        let patch = answer["response"]["patch"].as_str().unwrap();
        // Decode through the known encoder: the patch round-trips only when equal.
        let ops: Value = serde_json::from_str(&decode(patch)).unwrap();
        ops[0]["value"].clone()
    }

    fn decode(s: &str) -> String {
        const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut bits = 0u32;
        let mut n = 0;
        let mut out = Vec::new();
        for c in s.bytes().filter(|c| *c != b'=') {
            let v = u32::try_from(A.iter().position(|a| *a == c).unwrap()).unwrap();
            bits = (bits << 6) | v;
            n += 6;
            if n >= 8 {
                n -= 8;
                out.push(u8::try_from((bits >> n) & 0xff).unwrap());
            }
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn zero_delay_scripts_new_claims_and_applications_only() {
        for kind in SCRIPTED_KINDS {
            let a = zero_delay(&review(kind, "CREATE", &json!({"keep": "me"})));
            assert_eq!(a["response"]["allowed"], true, "{kind}");
            assert_eq!(a["response"]["patchType"], "JSONPatch", "{kind}");
            assert_eq!(
                patched_annotations(&a),
                json!({"keep": "me", "devcluster.io/ready-seconds": "0"}),
                "{kind}"
            );
        }
        let update = zero_delay(&review("VCluster", "UPDATE", &json!({})));
        assert!(update["response"].get("patch").is_none(), "updates pass");
        let other = zero_delay(&review("Secret", "CREATE", &json!({})));
        assert!(other["response"].get("patch").is_none(), "other kinds pass");
        assert_eq!(other["response"]["uid"], "u");
    }

    #[test]
    fn settled_is_complete_and_failed_is_failed() {
        assert!(settled(&json!({"status": {"phase": "Complete"}})));
        assert!(!settled(&json!({"status": {"phase": "Running"}})));
        assert!(!settled(&object(3)));
        assert!(failed(&json!({"status": {"phase": "Failed"}})));
        assert!(!failed(&json!({"status": {"phase": "Complete"}})));
    }

    #[test]
    fn experiments_have_two_targets_and_the_config_names_the_namespaces() {
        let e = object(7);
        assert_eq!(e["metadata"]["name"], "x-00007");
        assert_eq!(e["spec"]["targets"].as_array().unwrap().len(), 2);
        let c = config_yaml();
        assert!(c.contains("argocdNamespace: argocd\n"), "{c}");
        assert!(c.contains("provisioningTimeoutSeconds: 3600\n"), "{c}");
    }

    #[test]
    fn fixtures_are_crds() {
        for (file, yaml) in FIXTURES {
            let docs = yaml_documents(file, yaml).unwrap();
            assert_eq!(docs[0]["kind"], "CustomResourceDefinition", "{file}");
        }
    }
}
