//! `agentic-operator render`: each example rendered offline, checked object by object against
//! what the controllers create (names, owners, key fields), and the command line's exit codes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use agentic_operator::{
    labs::config::LabsConfig,
    render::{Output, PLACEHOLDER_UID, RenderOptions, Rendered, render},
};
use serde_json::Value;

fn example(path: &str) -> (String, String) {
    let full = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(path);
    (path.to_owned(), std::fs::read_to_string(&full).unwrap())
}

fn render_examples(paths: &[&str]) -> Output {
    let files: Vec<_> = paths.iter().map(|p| example(p)).collect();
    render(
        &files,
        &RenderOptions {
            testkube_namespace: None,
            labs: Some(LabsConfig::default()),
        },
    )
    .unwrap()
}

fn find<'a>(out: &'a Output, kind: &str, name: &str) -> &'a Rendered {
    out.objects
        .iter()
        .find(|r| r.kind() == kind && r.name() == name)
        .unwrap_or_else(|| {
            let have: Vec<_> = out
                .objects
                .iter()
                .map(|r| format!("{} {}", r.kind(), r.name()))
                .collect();
            panic!("no {kind} {name}; rendered: {have:?}")
        })
}

fn env<'a>(job: &'a Value, name: &str) -> Option<&'a Value> {
    job["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
}

#[test]
fn one_shot_session_renders_runner_job_service_and_credentials() {
    let out = render_examples(&["sessions/project.yaml", "sessions/completes.yaml"]);
    let kinds: Vec<&str> = out
        .objects
        .iter()
        .filter(|r| r.source == "AgenticSession team-a/fix-login-redirect")
        .map(Rendered::kind)
        .collect();
    assert_eq!(
        kinds,
        [
            "ServiceAccount",
            "Role",
            "RoleBinding",
            "Secret",
            "Job",
            "Service"
        ]
    );
    let job = &find(&out, "Job", "fix-login-redirect-job").object;
    assert_eq!(job["apiVersion"], "batch/v1");
    assert_eq!(job["metadata"]["namespace"], "team-a");
    assert_eq!(job["spec"]["activeDeadlineSeconds"], 1800);
    assert_eq!(job["spec"]["backoffLimit"], 0);
    let owner = &job["metadata"]["ownerReferences"][0];
    assert_eq!(owner["kind"], "AgenticSession");
    assert_eq!(owner["name"], "fix-login-redirect");
    assert_eq!(owner["uid"], PLACEHOLDER_UID);
    assert_eq!(
        env(job, "INITIAL_PROMPT").unwrap()["value"],
        "Find and fix the login redirect loop, add a test, and open a pull request."
    );
    let service = &find(&out, "Service", "session-fix-login-redirect").object;
    assert_eq!(service["spec"]["ports"][0]["port"], 8001);
    assert_eq!(service["metadata"]["ownerReferences"][0]["kind"], "Job");
    let sa = &find(&out, "ServiceAccount", "ambient-session-fix-login-redirect").object;
    assert_eq!(
        sa["metadata"]["annotations"]["ambient-code.io/created-by-user-id"],
        "ada"
    );
    find(&out, "Role", "ambient-session-fix-login-redirect-role");
    let rb = &find(&out, "RoleBinding", "ambient-session-fix-login-redirect-rb").object;
    assert_eq!(
        rb["subjects"][0]["name"],
        "ambient-session-fix-login-redirect"
    );
    let token = find(&out, "Secret", "ambient-runner-token-fix-login-redirect");
    assert!(token.object["data"]["k8s-token"].is_string());
    assert!(token.notes.iter().any(|n| n.contains("placeholder")));
    // The project's Namespace and Secret are context; its ProjectSettings is rendered too.
    assert!(
        out.skipped
            .iter()
            .any(|s| s.starts_with("Namespace team-a"))
    );
    assert!(out.skipped.iter().any(|s| s.starts_with("Secret team-a/")));
    assert!(
        out.objects
            .iter()
            .any(|r| r.source == "ProjectSettings team-a/projectsettings")
    );
}

#[test]
fn project_settings_renders_trigger_rbac_and_limit_range() {
    let out = render_examples(&["sessions/project.yaml"]);
    let kinds: Vec<&str> = out.objects.iter().map(Rendered::kind).collect();
    assert_eq!(
        kinds,
        ["ServiceAccount", "Role", "RoleBinding", "LimitRange"],
        "groupAccess is empty, so no group RoleBinding"
    );
    let sa = &find(&out, "ServiceAccount", "ambient-session-trigger").object;
    assert_eq!(sa["metadata"]["namespace"], "team-a");
    assert_eq!(
        sa["metadata"]["ownerReferences"][0]["kind"],
        "ProjectSettings"
    );
    find(&out, "LimitRange", "ambient-default-limits");

    let with_groups = (
        "ps.yaml".to_owned(),
        "apiVersion: vteam.ambient-code/v1alpha1\nkind: ProjectSettings\nmetadata: {name: projectsettings, namespace: team-b}\nspec:\n  groupAccess:\n  - {groupName: devs, role: edit}\n"
            .to_owned(),
    );
    let out = render(&[with_groups], &RenderOptions::default()).unwrap();
    let rb = &find(&out, "RoleBinding", "devs-edit").object;
    assert_eq!(rb["roleRef"]["name"], "ambient-project-edit");
    assert_eq!(rb["subjects"][0]["name"], "devs");

    let invalid = (
        "bad.yaml".to_owned(),
        "apiVersion: vteam.ambient-code/v1alpha1\nkind: ProjectSettings\nmetadata: {name: projectsettings, namespace: team-c}\nspec:\n  groupAccess:\n  - {groupName: devs, role: owner}\n"
            .to_owned(),
    );
    let out = render(&[invalid], &RenderOptions::default()).unwrap();
    assert!(out.objects.is_empty());
    assert!(
        out.skipped
            .iter()
            .any(|s| s.contains("invalid spec") && s.contains("spec.groupAccess[0].role")),
        "{:?}",
        out.skipped
    );
}

#[test]
fn interactive_session_has_no_deadline_and_keeps_its_environment() {
    let out = render_examples(&["sessions/stopped.yaml"]);
    let job = &find(&out, "Job", "pairing-session-job").object;
    assert!(job["spec"]["activeDeadlineSeconds"].is_null());
    assert_eq!(env(job, "LOG_LEVEL").unwrap()["value"], "debug");
}

#[test]
fn inline_evaluation_renders_config_map_workflow_and_trigger() {
    let out = render_examples(&["evaluations/scenarios.yaml"]);
    assert_eq!(out.objects.len(), 3);
    let cm = &find(&out, "ConfigMap", "weather-experiment").object;
    assert_eq!(cm["metadata"]["namespace"], "testkube");
    let doc: Value = serde_json::from_str(cm["data"]["experiment.json"].as_str().unwrap()).unwrap();
    assert!(doc.to_string().contains("Weather in New York"));
    assert!(doc.to_string().contains("gemini-2.5-flash-lite"));
    let wf = find(&out, "TestWorkflow", "weather-workflow");
    assert_eq!(wf.object["apiVersion"], "testworkflows.testkube.io/v1");
    let uses = wf.object["spec"]["use"].as_array().unwrap();
    assert_eq!(uses[0]["name"], "run-template");
    assert_eq!(
        uses[0]["config"]["agentUrl"],
        "http://weather-agent.sample-agents:8000"
    );
    assert!(wf.notes.iter().any(|n| n.contains("ServiceDNS")));
    let trigger = &find(&out, "TestTrigger", "weather-trigger").object;
    assert_eq!(trigger["spec"]["concurrencyPolicy"], "forbid");
}

#[test]
fn dataset_evaluation_starts_with_setup_and_uses_the_agent_in_the_files() {
    let agent = (
        "agent.yaml".to_owned(),
        "apiVersion: runtime.agentic-layer.ai/v1alpha1\nkind: Agent\nmetadata: {name: weather-agent, namespace: sample-agents}\nspec:\n  protocols:\n  - {type: A2A, port: 9000, path: /a2a}\n"
            .to_owned(),
    );
    let out = render(
        &[agent, example("evaluations/dataset.yaml")],
        &RenderOptions {
            testkube_namespace: None,
            labs: Some(LabsConfig::default()),
        },
    )
    .unwrap();
    let kinds: Vec<&str> = out.objects.iter().map(Rendered::kind).collect();
    assert_eq!(
        kinds,
        ["ConfigMap", "TestWorkflow"],
        "no trigger when disabled"
    );
    let wf = &find(&out, "TestWorkflow", "weather-dataset-workflow").object;
    let uses = wf["spec"]["use"].as_array().unwrap();
    assert_eq!(uses[0]["name"], "setup-template");
    assert_eq!(uses[0]["config"]["bucket"], "testbench");
    assert_eq!(uses[1]["name"], "run-template");
    let url = uses[1]["config"]["agentUrl"].as_str().unwrap();
    assert!(url.contains(":9000") && url.contains("/a2a"), "{url}");
    assert_eq!(uses[2], serde_json::json!({"name": "evaluate-template"}));
}

/// An `AiGateway` in the file is used as it would be on a cluster: the default one in
/// `ai-gateway` for an Experiment without `aiGatewayRef`.
#[test]
fn a_gateway_in_the_files_configures_the_evaluate_step() {
    let gateway = (
        "gateway.yaml".to_owned(),
        "apiVersion: runtime.agentic-layer.ai/v1alpha1\nkind: AiGateway\nmetadata: {name: litellm, namespace: ai-gateway}\nspec:\n  port: 4000\n  aiModels: [{name: gpt-4o, provider: openai}]\n"
            .to_owned(),
    );
    let out = render(
        &[gateway, example("evaluations/dataset.yaml")],
        &RenderOptions {
            testkube_namespace: None,
            labs: Some(LabsConfig::default()),
        },
    )
    .unwrap();
    let wf = find(&out, "TestWorkflow", "weather-dataset-workflow");
    assert_eq!(
        wf.object["spec"]["use"][2],
        serde_json::json!({"name": "evaluate-template",
            "config": {"openApiBasePath": "http://litellm.ai-gateway.svc.cluster.local.:4000"}})
    );
    assert!(
        wf.notes
            .iter()
            .any(|n| n.contains("evaluate-template base URL http://litellm")),
        "{:?}",
        wf.notes
    );
}

#[test]
fn two_target_lab_renders_claim_cluster_secret_applications_and_workflow() {
    let out = render_examples(&["labs/components.yaml", "labs/gateway-tutorial.yaml"]);
    let claim = &find(&out, "GKECluster", "gateway-tutorial-app").object;
    assert_eq!(
        claim["metadata"]["labels"]["experiments.illm.io/experiment"],
        "gateway-tutorial"
    );
    assert_eq!(
        claim["spec"]["writeConnectionSecretToRef"]["name"]
            .as_str()
            .map(str::is_empty),
        Some(false)
    );
    let secret = find(&out, "Secret", "cluster-gateway-tutorial-app");
    assert_eq!(
        secret.object["metadata"]["labels"]["argocd.argoproj.io/secret-type"],
        "cluster"
    );
    let app = &find(&out, "Application", "gateway-tutorial-app").object;
    assert_eq!(
        app["spec"]["destination"]["server"],
        "https://gateway-tutorial-app.endpoint.invalid"
    );
    let sources = app["spec"]["sources"].as_array().unwrap();
    assert!(
        sources.iter().any(|s| s["chart"] == "gateway-helm"),
        "{sources:?}"
    );
    // Observability adds the metrics components and one Grafana datasource.
    assert!(sources.iter().any(|s| s["chart"] == "alloy"), "{sources:?}");
    // Tailscale transport: the Tailscale operator without OAuth values, and the Secret written
    // on the target cluster beforehand (its data comes from the hub, so none is shown).
    assert!(
        sources.iter().any(|s| s["chart"] == "tailscale-operator"),
        "{sources:?}"
    );
    assert!(!app.to_string().contains("client_secret"));
    let oauth = find(&out, "Secret", "operator-oauth");
    assert_eq!(oauth.object["metadata"]["namespace"], "gateway-tutorial");
    assert!(oauth.object["data"].is_null());
    assert!(
        oauth
            .notes
            .iter()
            .any(|n| n.contains("tailscale/operator-oauth")),
        "{:?}",
        oauth.notes
    );
    assert_eq!(
        out.objects
            .iter()
            .filter(|r| r.kind() == "ConfigMap")
            .count(),
        1
    );
    let loadgen = find(&out, "Application", "gateway-tutorial-loadgen");
    assert_eq!(
        loadgen.object["spec"]["destination"]["server"],
        "https://kubernetes.default.svc"
    );
    // The hub namespace the load generator deploys into (created only for hub targets).
    let hub_ns = find(&out, "Namespace", "gateway-tutorial");
    assert_eq!(
        hub_ns.object["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "privileged"
    );
    assert_eq!(
        out.objects
            .iter()
            .filter(|r| r.kind() == "Namespace")
            .count(),
        1
    );
    assert!(loadgen.notes.iter().any(|n| n.contains("app is healthy")));
    let wf = &find(&out, "Workflow", "gateway-tutorial-validation").object;
    assert_eq!(
        wf["spec"]["workflowTemplateRef"]["name"],
        "gateway-validation"
    );
    let params = wf["spec"]["arguments"]["parameters"].as_array().unwrap();
    assert!(
        params
            .iter()
            .any(|p| p["name"] == "experiment-name" && p["value"] == "gateway-tutorial")
    );
    assert!(params.iter().any(|p| p["name"] == "app-endpoint"));
    assert!(out.skipped.iter().all(|s| !s.contains("not found")));
}

#[test]
fn lab_without_its_components_reports_them() {
    let out = render_examples(&["labs/gateway-tutorial.yaml"]);
    assert!(
        out.skipped.iter().any(|s| s.contains("envoy-gateway")),
        "{:?}",
        out.skipped
    );
    assert!(
        out.objects
            .iter()
            .all(|r| r.kind() != "Application" || r.name() != "gateway-tutorial-app")
    );
}

#[test]
fn yaml_output_has_one_document_per_object_with_comments() {
    let out = render_examples(&["sessions/completes.yaml"]);
    let yaml = out.to_yaml();
    assert_eq!(yaml.matches("\n---\n").count() + 1, out.objects.len());
    assert!(yaml.contains("# generated for AgenticSession team-a/fix-login-redirect"));
    let docs: Vec<Value> = serde_yaml::Deserializer::from_str(&yaml)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    assert_eq!(docs.len(), out.objects.len());
}

#[test]
fn binary_renders_files_and_rejects_missing_ones() {
    let bin = env!("CARGO_BIN_EXE_agentic-operator");
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/sessions/completes.yaml");
    let ok = std::process::Command::new(bin)
        .args(["render", "-f"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let stdout = String::from_utf8(ok.stdout).unwrap();
    assert!(stdout.contains("kind: Job"));
    assert!(stdout.contains("name: fix-login-redirect-job"));
    assert!(stdout.contains(&format!(
        "image: {}",
        agentic_operator::runtime::config::DEFAULT_RUNNER_IMAGE
    )));

    // The runner image comes from the environment, as `run` takes it.
    let custom = std::process::Command::new(bin)
        .args(["render", "-f"])
        .arg(&path)
        .env("AMBIENT_CODE_RUNNER_IMAGE", "example.com/runner:custom")
        .output()
        .unwrap();
    assert!(custom.status.success());
    let stdout = String::from_utf8(custom.stdout).unwrap();
    assert!(
        stdout.contains("image: example.com/runner:custom"),
        "{stdout}"
    );

    let missing = std::process::Command::new(bin)
        .args(["render", "-f", "/nonexistent/file.yaml"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/file.yaml"));
}
