//! The evaluations family against the dev cluster: CRD validation, create → `ConfigMap`,
//! `TestWorkflow` and `TestTrigger` → update → delete → cascade, both namespace modes, repair of
//! drifted or deleted children, a missing `TestWorkflow` CRD, an operator restart,
//! `lastExecution` from Testkube's workflow status and a concurrent status writer. Tests
//! named after an upstream bug fail on the upstream operator's behaviour.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::PathBuf;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    Api, Client,
    api::{ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};
use support::{
    Operator, Setup, TestCluster, api_resource, create_object, dynamic, get_object, install_crd,
    json_condition, merge_object, settings_for, test_triggers, test_workflows, wait_for,
};

fn experiments() -> ApiResource {
    api_resource(
        "testbench.agentic-layer.ai",
        "v1alpha1",
        "Experiment",
        "experiments",
    )
}
fn agents() -> ApiResource {
    api_resource("runtime.agentic-layer.ai", "v1alpha1", "Agent", "agents")
}
fn gateways() -> ApiResource {
    api_resource(
        "runtime.agentic-layer.ai",
        "v1alpha1",
        "AiGateway",
        "aigateways",
    )
}

/// Installs Testkube's `TestWorkflow` and `TestTrigger` CRDs.
async fn install_testkube(client: &Client) {
    for crd in [
        "evaluations/testworkflows.testkube.io.yaml",
        "evaluations/testtriggers.tests.testkube.io.yaml",
    ] {
        install_crd(client, &support::fixture(crd)).await;
    }
}

/// A dev cluster with the Experiment CRD, the Agent and `AiGateway` CRDs, the agent runtime
/// simulator and (when `testkube`) Testkube's CRDs, plus namespaces `team`, `agents`,
/// `testkube` and `ai-gateway`.
async fn cluster(testkube: bool) -> TestCluster {
    cluster_with_hooks(testkube, devcluster::Hooks::default()).await
}

/// [`cluster`] with request hooks.
async fn cluster_with_hooks(testkube: bool, hooks: devcluster::Hooks) -> TestCluster {
    let mut setup = Setup::new()
        .hooks(hooks)
        .crds(agentic_api::evaluations::GROUP)
        .fixture("evaluations/agents.runtime.agentic-layer.ai.yaml")
        .fixture("evaluations/aigateways.runtime.agentic-layer.ai.yaml");
    if testkube {
        setup = setup
            .fixture("evaluations/testworkflows.testkube.io.yaml")
            .fixture("evaluations/testtriggers.tests.testkube.io.yaml");
    }
    setup
        .namespace("team", &[])
        .namespace("agents", &[])
        .namespace("testkube", &[])
        .namespace("ai-gateway", &[])
        .simulators("agent-runtime".parse().unwrap())
        .start()
        .await
}

/// The operator with only the evaluations controllers, writing Testkube objects to
/// `testkube_namespace` when given.
fn start_operator(client: Client, testkube_namespace: Option<&str>) -> Operator {
    let settings = settings_for("evaluations", &[("POD_NAME", "op")], |args| {
        args.testkube_namespace = testkube_namespace.map(str::to_owned);
    });
    Operator::start(client, settings)
}

async fn config_map(client: &Client, ns: &str, name: &str) -> Option<ConfigMap> {
    Api::<ConfigMap>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .unwrap()
}

/// Waits until `name`'s condition `type_` has `status` (and `reason` when given).
async fn wait_condition(
    client: &Client,
    ns: &str,
    name: &str,
    type_: &str,
    status: &str,
    reason: Option<&str>,
) -> Value {
    wait_for(&format!("{type_}={status} on {ns}/{name}"), || async {
        let exp = get_object(client, &experiments(), ns, name).await?;
        let c = json_condition(&exp, type_)?;
        (c["status"] == status
            && reason.is_none_or(|r| c["reason"] == r)
            && c["observedGeneration"] == exp["metadata"]["generation"])
            .then_some(exp)
    })
    .await
}

async fn wait_gone(client: &Client, ar: &ApiResource, ns: &str, name: &str) {
    support::wait_gone(&dynamic(client, ar, ns), name).await;
}

fn scenarios_experiment(name: &str) -> Value {
    json!({
        "apiVersion": "testbench.agentic-layer.ai/v1alpha1",
        "kind": "Experiment",
        "metadata": {"name": name, "namespace": "team"},
        "spec": {
            "agentRef": {"name": "weather-agent", "namespace": "agents"},
            "llmAsAJudgeModel": "gemini-2.5-flash-lite",
            "defaultThreshold": 0,
            "scenarios": [{
                "name": "Weather in New York",
                "steps": [{
                    "input": "What is the weather like in New York right now?",
                    "reference": {"toolCalls": [{"name": "get_weather", "args": {"city": "New York"}}, {"name": "now"}], "topics": ["weather"]},
                    "customValues": {"retrieved_contexts": ["sunny"]},
                    "metrics": [
                        {"metricName": "AgentGoalAccuracyWithoutReference", "threshold": 0},
                        {"metricName": "TopicAdherence", "parameters": {"mode": "precision"}}
                    ]
                }]
            }]
        }
    })
}

async fn create_agent(client: &Client, port: u16) {
    create_object(
        client,
        &agents(),
        "agents",
        json!({
            "apiVersion": "runtime.agentic-layer.ai/v1alpha1",
            "kind": "Agent",
            "metadata": {"name": "weather-agent", "namespace": "agents"},
            "spec": {"protocols": [{"type": "A2A", "port": port}]}
        }),
    )
    .await;
}

fn use_names(workflow: &Value) -> Vec<String> {
    workflow["spec"]["use"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap().to_owned())
        .collect()
}

fn generated(exp: &Value) -> Vec<String> {
    exp["status"]["generatedResources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["kind"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn crd_rejects_invalid_experiments_naming_the_field() {
    let dc = cluster(false).await;
    let client = dc.client();
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "threshold-above-one",
            json!({"agentRef": {"name": "a"}, "defaultThreshold": 1.5, "scenarios": [{"name": "s", "steps": [{"input": "i"}]}]}),
            "spec.defaultThreshold",
        ),
        (
            "negative-metric-threshold",
            json!({"agentRef": {"name": "a"}, "scenarios": [{"name": "s", "steps": [{"input": "i", "metrics": [{"metricName": "m", "threshold": -0.5}]}]}]}),
            "threshold",
        ),
        (
            "missing-agent-ref",
            json!({"scenarios": [{"name": "s", "steps": [{"input": "i"}]}]}),
            "agentRef",
        ),
        (
            "missing-step-input",
            json!({"agentRef": {"name": "a"}, "scenarios": [{"name": "s", "steps": [{}]}]}),
            "input",
        ),
        (
            "both-dataset-and-scenarios",
            json!({"agentRef": {"name": "a"}, "dataset": {"url": "https://x/d.json"}, "scenarios": [{"name": "s", "steps": [{"input": "i"}]}]}),
            "dataset and scenarios are mutually exclusive",
        ),
        (
            "neither-dataset-nor-scenarios",
            json!({"agentRef": {"name": "a"}}),
            "one of dataset or scenarios must be set",
        ),
    ];
    for (name, spec, needle) in cases {
        let obj: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "testbench.agentic-layer.ai/v1alpha1",
            "kind": "Experiment",
            "metadata": {"name": name, "namespace": "team"},
            "spec": spec
        }))
        .unwrap();
        let err = dynamic(&client, &experiments(), "team")
            .create(&PostParams::default(), &obj)
            .await
            .expect_err(name);
        let kube::Error::Api(status) = err else {
            panic!("{name}: {err}")
        };
        assert_eq!(status.code, 422, "{name}: {status:?}");
        assert!(
            status.message.contains(needle),
            "{name}: {}",
            status.message
        );
    }
}

/// `null` in an optional field (what templating tools write for an empty value) is dropped
/// before defaulting and validation, as with the upstream CRD: `scenarios: null` next to a
/// dataset is not "both", and `defaultThreshold: null` gets the default.
#[tokio::test]
async fn nulls_in_optional_fields_are_dropped_as_upstream() {
    let dc = cluster(false).await;
    let client = dc.client();
    let stored = create_object(
        &client,
        &experiments(),
        "team",
        json!({
            "apiVersion": "testbench.agentic-layer.ai/v1alpha1",
            "kind": "Experiment",
            "metadata": {"name": "templated", "namespace": "team"},
            "spec": {
                "agentRef": {"name": "a", "namespace": null},
                "dataset": {"s3": {"bucket": "b", "key": "k.json"}, "url": null},
                "scenarios": null,
                "defaultThreshold": null,
                "trigger": null,
            }
        }),
    )
    .await;
    let spec = &stored.data["spec"];
    assert_eq!(
        spec,
        &json!({
            "agentRef": {"name": "a"},
            "dataset": {"s3": {"bucket": "b", "key": "k.json"}},
            "defaultThreshold": 0.9,
        })
    );
}

#[tokio::test]
#[allow(clippy::too_many_lines)] // one scenario, step by step
async fn create_update_delete_cascade_in_the_experiment_namespace() {
    let dc = cluster(true).await;
    let client = dc.client();
    create_agent(&client, 9000).await;
    let op = start_operator(client.clone(), None);
    create_object(
        &client,
        &experiments(),
        "team",
        scenarios_experiment("weather"),
    )
    .await;

    let exp = wait_condition(
        &client,
        "team",
        "weather",
        "Ready",
        "True",
        Some("ReconcileSucceeded"),
    )
    .await;
    assert_eq!(
        json_condition(&exp, "WorkflowReady").unwrap()["reason"],
        "WorkflowCreated"
    );
    assert_eq!(generated(&exp), ["ConfigMap", "TestWorkflow"]);

    // experiment.json in the snake_case contract, with zero thresholds and args defaulted.
    let cm = config_map(&client, "team", "weather-experiment")
        .await
        .unwrap();
    assert_eq!(
        cm.metadata.owner_references.as_ref().unwrap()[0].kind,
        "Experiment"
    );
    let doc: Value = serde_json::from_str(&cm.data.unwrap()["experiment.json"]).unwrap();
    assert_eq!(doc["llm_as_a_judge_model"], "gemini-2.5-flash-lite");
    assert_eq!(doc["default_threshold"], json!(0.0));
    let step = &doc["scenarios"][0]["steps"][0];
    assert_eq!(
        step["reference"]["tool_calls"][1],
        json!({"name": "now", "args": {}})
    );
    assert_eq!(step["metrics"][0]["threshold"], json!(0.0));
    assert_eq!(
        step["metrics"][1]["parameters"],
        json!({"mode": "precision"})
    );
    assert_eq!(
        step["custom_values"],
        json!({"retrieved_contexts": ["sunny"]})
    );

    // The agent URL comes from the simulated runtime's status.url, without the card suffix.
    let wf = wait_for("the TestWorkflow to use the Agent's status URL", || async {
        get_object(&client, &test_workflows(), "team", "weather-workflow")
            .await
            .filter(|w| {
                w["spec"]["use"][0]["config"]["agentUrl"]
                    == "http://weather-agent.agents.svc.cluster.local:9000"
            })
    })
    .await;
    assert_eq!(
        use_names(&wf),
        [
            "run-template",
            "evaluate-template",
            "publish-template",
            "visualize-template"
        ]
    );
    assert_eq!(
        wf["spec"]["content"]["files"][0]["path"],
        "/data/datasets/experiment.json"
    );
    assert_eq!(wf["metadata"]["ownerReferences"][0]["kind"], "Experiment");
    let exp = wait_condition(
        &client,
        "team",
        "weather",
        "AgentResolved",
        "True",
        Some("AgentStatusURL"),
    )
    .await;
    assert!(
        json_condition(&exp, "AgentResolved").unwrap()["message"]
            .as_str()
            .unwrap()
            .contains(":9000")
    );

    // Enable the trigger.
    merge_object(
        &client,
        &experiments(),
        "team",
        "weather",
        json!({"spec": {"trigger": {"enabled": true, "concurrencyPolicy": "Replace"}}}),
    )
    .await;
    let trigger = wait_for("the TestTrigger", || async {
        get_object(&client, &test_triggers(), "team", "weather-trigger").await
    })
    .await;
    assert_eq!(
        trigger["spec"]["resourceSelector"],
        json!({"name": "weather-agent", "namespace": "agents"})
    );
    assert_eq!(trigger["spec"]["concurrencyPolicy"], "replace");
    assert_eq!(
        trigger["spec"]["testSelector"],
        json!({"name": "weather-workflow", "namespace": "team"})
    );
    let exp = wait_condition(&client, "team", "weather", "Ready", "True", None).await;
    assert_eq!(
        generated(&exp),
        ["ConfigMap", "TestWorkflow", "TestTrigger"]
    );

    assert!(
        op.metric(
            "evaluations_generated_object_writes_total",
            &[("kind", "TestTrigger"), ("operation", "apply")]
        ) >= 1
    );
    assert!(
        op.metric(
            "evaluations_condition_transitions_total",
            &[("condition", "Ready"), ("status", "True")]
        ) >= 1
    );

    // Disable it again: the trigger goes.
    merge_object(
        &client,
        &experiments(),
        "team",
        "weather",
        json!({"spec": {"trigger": {"enabled": false}}}),
    )
    .await;
    wait_gone(&client, &test_triggers(), "team", "weather-trigger").await;

    // Switch to dataset mode.
    merge_object(&client, &experiments(), "team", "weather", json!({"spec": {"scenarios": null, "dataset": {"s3": {"bucket": "testbench", "key": "dataset.json"}}}})).await;
    let wf = wait_for("the workflow in dataset mode", || async {
        get_object(&client, &test_workflows(), "team", "weather-workflow")
            .await
            .filter(|w| w["spec"]["use"][0]["name"] == "setup-template")
    })
    .await;
    assert_eq!(
        wf["spec"]["use"][0]["config"],
        json!({"bucket": "testbench", "key": "dataset.json"})
    );
    assert!(wf.pointer("/spec/content/files").is_none(), "{wf}");
    let cm = config_map(&client, "team", "weather-experiment")
        .await
        .unwrap();
    let doc: Value = serde_json::from_str(&cm.data.unwrap()["experiment.json"]).unwrap();
    assert_eq!(doc["scenarios"], json!([]));

    // Delete: owner references cascade.
    dynamic(&client, &experiments(), "team")
        .delete("weather", &DeleteParams::background())
        .await
        .unwrap();
    wait_gone(&client, &test_workflows(), "team", "weather-workflow").await;
    wait_for("the ConfigMap to be deleted", || async {
        config_map(&client, "team", "weather-experiment")
            .await
            .is_none()
            .then_some(())
    })
    .await;
    op.stop().await.unwrap();
}

/// Upstream watched only `ConfigMaps`, so a changed or deleted `TestWorkflow` or `TestTrigger`
/// stayed broken until the 10-hour resync.
#[tokio::test]
async fn drifted_or_deleted_children_are_repaired_from_their_watch_events() {
    let dc = cluster(true).await;
    let client = dc.client();
    let op = start_operator(client.clone(), None);
    let mut body = scenarios_experiment("drift");
    body["spec"]["trigger"] = json!({"enabled": true});
    create_object(&client, &experiments(), "team", body).await;
    wait_condition(&client, "team", "drift", "Ready", "True", None).await;
    wait_for("the trigger", || async {
        get_object(&client, &test_triggers(), "team", "drift-trigger").await
    })
    .await;

    merge_object(
        &client,
        &test_workflows(),
        "team",
        "drift-workflow",
        json!({"spec": {"use": [{"name": "something-else"}]}}),
    )
    .await;
    wait_for("the workflow to be restored", || async {
        get_object(&client, &test_workflows(), "team", "drift-workflow")
            .await
            .filter(|w| w["spec"]["use"][0]["name"] == "run-template")
    })
    .await;

    dynamic(&client, &test_triggers(), "team")
        .delete("drift-trigger", &DeleteParams::default())
        .await
        .unwrap();
    wait_for("the trigger to be recreated", || async {
        get_object(&client, &test_triggers(), "team", "drift-trigger")
            .await
            .filter(|t| t["metadata"]["deletionTimestamp"].is_null())
    })
    .await;

    Api::<ConfigMap>::namespaced(client.clone(), "team")
        .delete("drift-experiment", &DeleteParams::default())
        .await
        .unwrap();
    wait_for("the ConfigMap to be recreated", || async {
        config_map(&client, "team", "drift-experiment").await
    })
    .await;
    op.stop().await.unwrap();
}

/// Upstream created workflows and triggers in the Experiment's namespace, where Testkube does
/// not look.
#[tokio::test]
async fn testkube_namespace_mode_uses_labels_and_a_finalizer() {
    let dc = cluster(true).await;
    let client = dc.client();
    let op = start_operator(client.clone(), Some("testkube"));
    let mut body = scenarios_experiment("weather");
    body["spec"]["trigger"] = json!({"enabled": true});
    create_object(&client, &experiments(), "team", body).await;
    let exp = wait_condition(&client, "team", "weather", "Ready", "True", None).await;
    assert!(
        exp["metadata"]["finalizers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "testbench.agentic-layer.ai/testkube-cleanup"),
        "{exp}"
    );
    let wf = get_object(
        &client,
        &test_workflows(),
        "testkube",
        "weather-team-workflow",
    )
    .await
    .unwrap();
    assert!(wf["metadata"].get("ownerReferences").is_none());
    assert_eq!(
        wf["metadata"]["labels"]["testbench.agentic-layer.ai/experiment-namespace"],
        "team"
    );
    assert_eq!(
        wf["spec"]["content"]["files"][0]["contentFrom"]["configMapKeyRef"]["name"],
        "weather-team-experiment"
    );
    assert!(
        config_map(&client, "testkube", "weather-team-experiment")
            .await
            .is_some()
    );
    let trigger = get_object(
        &client,
        &test_triggers(),
        "testkube",
        "weather-team-trigger",
    )
    .await
    .unwrap();
    assert_eq!(
        trigger["spec"]["testSelector"],
        json!({"name": "weather-team-workflow", "namespace": "testkube"})
    );
    assert!(
        get_object(&client, &test_workflows(), "team", "weather-workflow")
            .await
            .is_none()
    );

    dynamic(&client, &experiments(), "team")
        .delete("weather", &DeleteParams::background())
        .await
        .unwrap();
    wait_gone(&client, &experiments(), "team", "weather").await;
    wait_gone(
        &client,
        &test_workflows(),
        "testkube",
        "weather-team-workflow",
    )
    .await;
    wait_gone(
        &client,
        &test_triggers(),
        "testkube",
        "weather-team-trigger",
    )
    .await;
    assert!(
        config_map(&client, "testkube", "weather-team-experiment")
            .await
            .is_none()
    );
    op.stop().await.unwrap();
}

/// Upstream reported `Ready=True` without the `TestWorkflow` CRD and never retried.
#[tokio::test]
async fn missing_testworkflow_crd_is_reported_and_retried_until_installed() {
    let dc = cluster(false).await;
    let client = dc.client();
    let op = start_operator(client.clone(), None);
    create_object(
        &client,
        &experiments(),
        "team",
        scenarios_experiment("early"),
    )
    .await;
    let exp = wait_condition(
        &client,
        "team",
        "early",
        "WorkflowReady",
        "False",
        Some("CRDNotInstalled"),
    )
    .await;
    assert_eq!(json_condition(&exp, "Ready").unwrap()["status"], "False");
    assert_eq!(generated(&exp), ["ConfigMap"]);

    install_testkube(&client).await;
    wait_condition(
        &client,
        "team",
        "early",
        "WorkflowReady",
        "True",
        Some("WorkflowCreated"),
    )
    .await;
    wait_condition(&client, "team", "early", "Ready", "True", None).await;
    assert!(
        get_object(&client, &test_workflows(), "team", "early-workflow")
            .await
            .is_some()
    );
    op.stop().await.unwrap();
}

/// Upstream set `WorkflowReady=True` (`WorkflowCreated`) although the `experiment.json`
/// `ConfigMap` could not be written. Here every `ConfigMap` write is refused by the API
/// server: `Ready` and `WorkflowReady` stay False, the `TestWorkflow` is not written (it would
/// run without its scenarios), the error names the `ConfigMap` and is retried; once writes
/// are accepted again both become True without any change to the Experiment.
#[tokio::test]
async fn a_refused_config_map_write_keeps_the_workflow_not_ready() {
    let dc = cluster(true).await;
    let client = dc.client();
    dc.set_faults(devcluster::FaultConfig {
        error_rate: 1.0,
        error_codes: vec![500],
        verbs: vec!["patch".into(), "create".into()],
        resources: vec!["configmaps".into()],
        ..devcluster::FaultConfig::default()
    })
    .unwrap();
    let op = start_operator(client.clone(), None);
    create_object(
        &client,
        &experiments(),
        "team",
        scenarios_experiment("refused"),
    )
    .await;
    let exp = wait_condition(
        &client,
        "team",
        "refused",
        "Ready",
        "False",
        Some("ReconcileFailed"),
    )
    .await;
    let ready = json_condition(&exp, "Ready").unwrap();
    assert!(
        ready["message"]
            .as_str()
            .is_some_and(|m| m.contains("ConfigMap") && m.contains("refused-experiment")),
        "{ready}"
    );
    let workflow_ready = json_condition(&exp, "WorkflowReady").unwrap();
    assert_eq!(workflow_ready["status"], "False", "{workflow_ready}");
    assert_ne!(workflow_ready["reason"], "WorkflowCreated");
    assert!(generated(&exp).is_empty(), "{exp:#}");
    assert!(
        get_object(&client, &test_workflows(), "team", "refused-workflow")
            .await
            .is_none()
    );

    dc.clear_faults();
    wait_condition(
        &client,
        "team",
        "refused",
        "WorkflowReady",
        "True",
        Some("WorkflowCreated"),
    )
    .await;
    wait_condition(&client, "team", "refused", "Ready", "True", None).await;
    assert!(
        config_map(&client, "team", "refused-experiment")
            .await
            .is_some()
    );
    op.stop().await.unwrap();
}

/// Without an Agent, the Service DNS form is used and the status says so; when the Agent
/// appears its URL is picked up from the watch.
#[tokio::test]
async fn agent_url_follows_the_agent() {
    let dc = cluster(true).await;
    let client = dc.client();
    let op = start_operator(client.clone(), None);
    create_object(
        &client,
        &experiments(),
        "team",
        scenarios_experiment("later"),
    )
    .await;
    let exp = wait_condition(
        &client,
        "team",
        "later",
        "AgentResolved",
        "False",
        Some("AgentNotFound"),
    )
    .await;
    assert!(
        json_condition(&exp, "AgentResolved").unwrap()["message"]
            .as_str()
            .unwrap()
            .contains("http://weather-agent.agents:8000")
    );
    let wf = get_object(&client, &test_workflows(), "team", "later-workflow")
        .await
        .unwrap();
    assert_eq!(
        wf["spec"]["use"][0]["config"]["agentUrl"],
        "http://weather-agent.agents:8000"
    );

    create_agent(&client, 9100).await;
    wait_for("the workflow to use the Agent's URL", || async {
        get_object(&client, &test_workflows(), "team", "later-workflow")
            .await
            .filter(|w| {
                w["spec"]["use"][0]["config"]["agentUrl"]
                    == "http://weather-agent.agents.svc.cluster.local:9100"
            })
    })
    .await;
    wait_condition(
        &client,
        "team",
        "later",
        "AgentResolved",
        "True",
        Some("AgentStatusURL"),
    )
    .await;
    op.stop().await.unwrap();
}

async fn create_gateway(client: &Client, ns: &str, name: &str, port: Option<u16>) {
    let mut spec = json!({"aiModels": [{"name": "gpt-4o", "provider": "openai"}]});
    if let Some(port) = port {
        spec["port"] = json!(port);
    }
    create_object(
        client,
        &gateways(),
        ns,
        json!({
            "apiVersion": "runtime.agentic-layer.ai/v1alpha1",
            "kind": "AiGateway",
            "metadata": {"name": name, "namespace": ns},
            "spec": spec,
        }),
    )
    .await;
}

/// Waits until `team/<workflow>`'s evaluate step has `config` (JSON null: no config).
async fn wait_evaluate_config(client: &Client, workflow: &str, config: &Value) {
    wait_for(
        &format!("{workflow}'s evaluate-template config {config}"),
        || async {
            let wf = get_object(client, &test_workflows(), "team", workflow).await?;
            let evaluate = wf["spec"]["use"]
                .as_array()?
                .iter()
                .find(|u| u["name"] == "evaluate-template")?
                .clone();
            (&evaluate["config"] == config).then_some(())
        },
    )
    .await;
}

/// Upstream resolved the AI gateway only while reconciling the Experiment and failed the whole
/// reconcile when `aiGatewayRef` named a missing gateway; nothing watched gateways, so one
/// created or changed later was seen after the next resync (10 h). Here a missing reference is
/// a False condition and the workflow is still applied (with the template's default); the
/// workflow follows the gateway as it is created, changes port and goes away, and an Experiment
/// without a reference uses the first gateway in `ai-gateway`.
#[tokio::test]
#[allow(clippy::too_many_lines)] // one story: missing, created, moved, default, removed
async fn the_evaluate_step_follows_the_ai_gateway() {
    let dc = cluster(true).await;
    let client = dc.client();
    let op = start_operator(client.clone(), None);
    let mut referencing = scenarios_experiment("judged");
    referencing["spec"]["aiGatewayRef"] = json!({"name": "judge"});
    create_object(&client, &experiments(), "team", referencing).await;
    create_object(
        &client,
        &experiments(),
        "team",
        scenarios_experiment("plain"),
    )
    .await;

    let exp = wait_condition(
        &client,
        "team",
        "judged",
        "AiGatewayResolved",
        "False",
        Some("AiGatewayNotFound"),
    )
    .await;
    assert!(
        json_condition(&exp, "AiGatewayResolved").unwrap()["message"]
            .as_str()
            .unwrap()
            .contains("spec.aiGatewayRef names AiGateway team/judge")
    );
    assert_eq!(json_condition(&exp, "Ready").unwrap()["status"], "True");
    wait_evaluate_config(&client, "judged-workflow", &Value::Null).await;
    let plain = wait_condition(&client, "team", "plain", "Ready", "True", None).await;
    assert!(json_condition(&plain, "AiGatewayResolved").is_none());

    // The referenced gateway appears, then moves to another port.
    create_gateway(&client, "team", "judge", Some(4000)).await;
    wait_evaluate_config(
        &client,
        "judged-workflow",
        &json!({"openApiBasePath": "http://judge.team.svc.cluster.local.:4000"}),
    )
    .await;
    wait_condition(
        &client,
        "team",
        "judged",
        "AiGatewayResolved",
        "True",
        Some("AiGatewayRef"),
    )
    .await;
    merge_object(
        &client,
        &gateways(),
        "team",
        "judge",
        json!({"spec": {"port": 4001}}),
    )
    .await;
    wait_evaluate_config(
        &client,
        "judged-workflow",
        &json!({"openApiBasePath": "http://judge.team.svc.cluster.local.:4001"}),
    )
    .await;

    // A default gateway: the first by name in ai-gateway, for Experiments without a reference.
    create_gateway(&client, "ai-gateway", "litellm", None).await;
    create_gateway(&client, "ai-gateway", "zz-backup", Some(9)).await;
    wait_evaluate_config(
        &client,
        "plain-workflow",
        &json!({"openApiBasePath": "http://litellm.ai-gateway.svc.cluster.local.:80"}),
    )
    .await;
    wait_condition(
        &client,
        "team",
        "plain",
        "AiGatewayResolved",
        "True",
        Some("DefaultAiGateway"),
    )
    .await;
    // The reference still wins for the other Experiment.
    wait_evaluate_config(
        &client,
        "judged-workflow",
        &json!({"openApiBasePath": "http://judge.team.svc.cluster.local.:4001"}),
    )
    .await;

    // The default goes away: the next one by name takes over, then none is left.
    dynamic(&client, &gateways(), "ai-gateway")
        .delete("litellm", &DeleteParams::default())
        .await
        .unwrap();
    wait_evaluate_config(
        &client,
        "plain-workflow",
        &json!({"openApiBasePath": "http://zz-backup.ai-gateway.svc.cluster.local.:9"}),
    )
    .await;
    dynamic(&client, &gateways(), "ai-gateway")
        .delete("zz-backup", &DeleteParams::default())
        .await
        .unwrap();
    wait_evaluate_config(&client, "plain-workflow", &Value::Null).await;
    wait_for(
        "AiGatewayResolved to be removed from team/plain",
        || async {
            let exp = get_object(&client, &experiments(), "team", "plain").await?;
            json_condition(&exp, "AiGatewayResolved")
                .is_none()
                .then_some(())
        },
    )
    .await;
    op.stop().await.unwrap();
}

/// Upstream ignored the judge settings of a dataset-mode Experiment without a word. The
/// webhook warns at `kubectl apply`; without the webhook, the operator's Warning Event
/// `SpecWarning` says the same, once per generation (later reconciles of it add nothing).
#[tokio::test]
async fn settings_ignored_in_dataset_mode_are_a_warning_event() {
    let dc = cluster(true).await;
    let client = dc.client();
    let op = start_operator(client.clone(), None);
    let mut exp = scenarios_experiment("downloaded");
    exp["spec"].as_object_mut().unwrap().remove("scenarios");
    exp["spec"]["dataset"] = json!({"s3": {"bucket": "testbench", "key": "dataset.json"}});
    create_object(&client, &experiments(), "team", exp).await;
    let events = || async {
        Api::<k8s_openapi::api::events::v1::Event>::namespaced(client.clone(), "team")
            .list(&kube::api::ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| {
                e.reason.as_deref() == Some("SpecWarning")
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("downloaded")
            })
            .collect::<Vec<_>>()
    };
    let first = wait_for("a SpecWarning Event", || async {
        events().await.into_iter().next()
    })
    .await;
    assert_eq!(first.type_.as_deref(), Some("Warning"));
    assert!(
        first
            .note
            .as_deref()
            .unwrap_or_default()
            .contains("spec.llmAsAJudgeModel"),
        "{first:?}"
    );
    // More reconciles of the same generation: a deleted workflow is repaired.
    dynamic(&client, &test_workflows(), "team")
        .delete("downloaded-workflow", &DeleteParams::default())
        .await
        .unwrap();
    wait_for("the workflow to be repaired", || async {
        get_object(&client, &test_workflows(), "team", "downloaded-workflow").await
    })
    .await;
    let after = events().await;
    assert_eq!(after.len(), 1, "{after:?}");
    assert!(after[0].series.is_none(), "published again: {:?}", after[0]);
    op.stop().await.unwrap();
}

#[tokio::test]
async fn restart_converges_without_rewriting_children() {
    let dc = cluster(true).await;
    let client = dc.client();
    create_agent(&client, 9000).await;
    let op = start_operator(client.clone(), None);
    let mut body = scenarios_experiment("steady");
    body["spec"]["trigger"] = json!({"enabled": true});
    create_object(&client, &experiments(), "team", body).await;
    wait_condition(
        &client,
        "team",
        "steady",
        "AgentResolved",
        "True",
        Some("AgentStatusURL"),
    )
    .await;
    let before = wait_condition(&client, "team", "steady", "Ready", "True", None).await;
    op.stop().await.unwrap();

    let versions = |w: Option<Value>| w.unwrap()["metadata"]["resourceVersion"].clone();
    let wf_rv = versions(get_object(&client, &test_workflows(), "team", "steady-workflow").await);
    let tr_rv = versions(get_object(&client, &test_triggers(), "team", "steady-trigger").await);
    let cm_rv = config_map(&client, "team", "steady-experiment")
        .await
        .unwrap()
        .metadata
        .resource_version;

    // A change made while the operator is down is picked up after the restart.
    merge_object(
        &client,
        &experiments(),
        "team",
        "steady",
        json!({"spec": {"llmAsAJudgeModel": "gpt-4o"}}),
    )
    .await;
    let op = start_operator(client.clone(), None);
    wait_for(
        "the ConfigMap to follow the change made while stopped",
        || async {
            config_map(&client, "team", "steady-experiment")
                .await
                .filter(|cm| cm.data.as_ref().unwrap()["experiment.json"].contains("gpt-4o"))
        },
    )
    .await;
    let after = wait_condition(&client, "team", "steady", "Ready", "True", None).await;
    // The objects that did not change were not rewritten, and the condition did not flip.
    assert_eq!(
        versions(get_object(&client, &test_workflows(), "team", "steady-workflow").await),
        wf_rv
    );
    assert_eq!(
        versions(get_object(&client, &test_triggers(), "team", "steady-trigger").await),
        tr_rv
    );
    assert_ne!(
        config_map(&client, "team", "steady-experiment")
            .await
            .unwrap()
            .metadata
            .resource_version,
        cm_rv
    );
    assert_eq!(
        json_condition(&before, "Ready").unwrap()["lastTransitionTime"],
        json_condition(&after, "Ready").unwrap()["lastTransitionTime"]
    );
    op.stop().await.unwrap();
}

/// An invalid spec that the installed CRD lets through (an older CRD without the CEL rules)
/// gets `Ready=False` naming the field, and nothing is generated.
#[tokio::test]
async fn invalid_trigger_event_is_reported_on_the_experiment() {
    let dc = cluster(true).await;
    let client = dc.client();
    let op = start_operator(client.clone(), None);
    let mut body = scenarios_experiment("bad-event");
    body["spec"]["trigger"] = json!({"enabled": true, "event": "on_push"});
    create_object(&client, &experiments(), "team", body).await;
    let exp = wait_condition(
        &client,
        "team",
        "bad-event",
        "Ready",
        "False",
        Some("ReconcileFailed"),
    )
    .await;
    let message = json_condition(&exp, "Ready").unwrap()["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(message.contains("spec.trigger.event"), "{message}");
    assert!(
        get_object(&client, &test_triggers(), "team", "bad-event-trigger")
            .await
            .is_none()
    );
    merge_object(
        &client,
        &experiments(),
        "team",
        "bad-event",
        json!({"spec": {"trigger": {"event": "modified"}}}),
    )
    .await;
    wait_condition(&client, "team", "bad-event", "Ready", "True", None).await;
    assert!(
        get_object(&client, &test_triggers(), "team", "bad-event-trigger")
            .await
            .is_some()
    );
    op.stop().await.unwrap();
}

/// The shipped examples are accepted by the CRD and reconcile to Ready.
#[tokio::test]
async fn examples_reconcile() {
    let dc = cluster(true).await;
    let client = dc.client();
    let op = start_operator(client.clone(), None);
    for (file, workflow, first) in [
        ("scenarios.yaml", "weather-workflow", "run-template"),
        ("dataset.yaml", "weather-dataset-workflow", "setup-template"),
    ] {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples/evaluations")
            .join(file);
        let body: Value = serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let name = body["metadata"]["name"].as_str().unwrap().to_owned();
        create_object(&client, &experiments(), "testkube", body).await;
        wait_condition(&client, "testkube", &name, "Ready", "True", None).await;
        let wf = get_object(&client, &test_workflows(), "testkube", workflow)
            .await
            .unwrap();
        assert_eq!(use_names(&wf)[0], first, "{file}");
    }
    wait_for("the example's trigger", || async {
        get_object(&client, &test_triggers(), "testkube", "weather-trigger").await
    })
    .await;
    op.stop().await.unwrap();
}

/// Upstream rewrote the whole status on every reconcile. Here a reconcile that finds
/// everything in place writes nothing: not the status, not a child.
#[tokio::test]
async fn steady_state_reconciles_write_nothing() {
    let dc = cluster(true).await;
    let client = dc.client();
    create_agent(&client, 9000).await;
    let op = start_operator(client.clone(), None);
    let mut body = scenarios_experiment("quiet");
    body["spec"]["trigger"] = json!({"enabled": true});
    create_object(&client, &experiments(), "team", body).await;
    wait_condition(
        &client,
        "team",
        "quiet",
        "AgentResolved",
        "True",
        Some("AgentStatusURL"),
    )
    .await;
    wait_condition(&client, "team", "quiet", "Ready", "True", None).await;
    let rv = |v: Option<Value>| v.unwrap()["metadata"]["resourceVersion"].clone();
    let workflow = rv(get_object(&client, &test_workflows(), "team", "quiet-workflow").await);
    let trigger = rv(get_object(&client, &test_triggers(), "team", "quiet-trigger").await);
    let cm = config_map(&client, "team", "quiet-experiment")
        .await
        .unwrap()
        .metadata
        .resource_version;

    // A metadata-only change triggers a reconcile that has nothing to do.
    let before = op.reconciles("experiment");
    merge_object(
        &client,
        &experiments(),
        "team",
        "quiet",
        json!({"metadata": {"labels": {"touched": "yes"}}}),
    )
    .await;
    let touched = rv(get_object(&client, &experiments(), "team", "quiet").await);
    let writes = dc.stats().writes;
    wait_for("a reconcile after the label change", || async {
        (op.reconciles("experiment") > before).then_some(())
    })
    .await;
    assert_eq!(dc.stats().writes, writes, "{:#?}", dc.stats().requests);
    assert_eq!(
        rv(get_object(&client, &experiments(), "team", "quiet").await),
        touched
    );
    assert_eq!(
        rv(get_object(&client, &test_workflows(), "team", "quiet-workflow").await),
        workflow
    );
    assert_eq!(
        rv(get_object(&client, &test_triggers(), "team", "quiet-trigger").await),
        trigger
    );
    assert_eq!(
        config_map(&client, "team", "quiet-experiment")
            .await
            .unwrap()
            .metadata
            .resource_version,
        cm
    );
    op.stop().await.unwrap();
}

/// Upstream referenced `otel-config` without checking it exists or saying so.
#[tokio::test]
async fn otel_config_presence_is_reported_and_followed() {
    let dc = cluster(true).await;
    let client = dc.client();
    let op = start_operator(client.clone(), None);
    create_object(
        &client,
        &experiments(),
        "team",
        scenarios_experiment("otel"),
    )
    .await;
    let exp = wait_condition(
        &client,
        "team",
        "otel",
        "OtelConfigured",
        "False",
        Some("OtelConfigMapMissing"),
    )
    .await;
    assert_eq!(json_condition(&exp, "Ready").unwrap()["status"], "True");
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "otel-config", "namespace": "team"},
        "data": {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://lgtm.monitoring:4318"}
    }))
    .unwrap();
    Api::<ConfigMap>::namespaced(client.clone(), "team")
        .create(&PostParams::default(), &cm)
        .await
        .unwrap();
    wait_condition(
        &client,
        "team",
        "otel",
        "OtelConfigured",
        "True",
        Some("OtelConfigMap"),
    )
    .await;
    op.stop().await.unwrap();
}

/// Writes the execution summary Testkube keeps in a `TestWorkflow`'s status.
async fn report_execution(client: &Client, ns: &str, workflow: &str, latest: Value) {
    dynamic(client, &test_workflows(), ns)
        .patch_status(
            workflow,
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {"latestExecution": latest}})),
        )
        .await
        .unwrap();
}

/// Upstream declared `status.lastExecution` but never wrote it. Here it follows what
/// Testkube reports on the generated `TestWorkflow`, read from the watch cache.
#[tokio::test]
async fn last_execution_follows_the_testworkflow_status() {
    let dc = cluster(true).await;
    let client = dc.client();
    let op = start_operator(client.clone(), None);
    create_object(
        &client,
        &experiments(),
        "team",
        scenarios_experiment("runs"),
    )
    .await;
    let exp = wait_condition(&client, "team", "runs", "Ready", "True", None).await;
    assert!(exp["status"].get("lastExecution").is_none(), "{exp:#}");

    report_execution(
        &client,
        "team",
        "runs-workflow",
        json!({
            "id": "6650f0c1a2b3c4d5e6f70812",
            "name": "runs-workflow-1",
            "number": 1,
            "scheduledAt": "2026-01-01T10:00:00Z",
            "result": {
                "status": "running",
                "startedAt": "2026-01-01T10:00:02Z",
                "finishedAt": "0001-01-01T00:00:00Z"
            }
        }),
    )
    .await;
    let running = json!({
        "executionId": "6650f0c1a2b3c4d5e6f70812",
        "executionNumber": 1,
        "startTime": "2026-01-01T10:00:02Z",
        "status": "running"
    });
    wait_for("lastExecution of the running execution", || async {
        let exp = get_object(&client, &experiments(), "team", "runs").await?;
        (exp["status"]["lastExecution"] == running).then_some(())
    })
    .await;

    // A merge patch, so `result.startedAt` stays as it was.
    report_execution(
        &client,
        "team",
        "runs-workflow",
        json!({
            "id": "6650f0c1a2b3c4d5e6f70812",
            "number": 1,
            "result": {"status": "passed", "finishedAt": "2026-01-01T10:05:00Z"}
        }),
    )
    .await;
    let exp = wait_for("lastExecution of the finished execution", || async {
        let exp = get_object(&client, &experiments(), "team", "runs").await?;
        (exp["status"]["lastExecution"]["status"] == "passed").then_some(exp)
    })
    .await;
    assert_eq!(
        exp["status"]["lastExecution"],
        json!({
            "executionId": "6650f0c1a2b3c4d5e6f70812",
            "executionNumber": 1,
            "startTime": "2026-01-01T10:00:02Z",
            "endTime": "2026-01-01T10:05:00Z",
            "status": "passed"
        })
    );
    assert_eq!(json_condition(&exp, "Ready").unwrap()["status"], "True");
    // The workflow came from the watch cache: the operator never fetched it.
    let stats = dc.stats();
    assert_eq!(
        stats
            .get("get", "testworkflows.testworkflows.testkube.io")
            .count,
        0,
        "{:#?}",
        stats.requests
    );
    op.stop().await.unwrap();
}

/// Counts the status writes of Experiments as they arrive, before fault injection holds them.
#[derive(Default)]
struct StatusWrites(std::sync::atomic::AtomicU64);

impl devcluster::Authorizer for StatusWrites {
    fn authorize(
        &self,
        request: &devcluster::hooks::RequestInfo,
    ) -> Result<(), devcluster::ApiError> {
        if request.resource == "experiments"
            && request.subresource == "status"
            && request.verb == "patch"
        {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        Ok(())
    }
}

/// Upstream wrote the whole status with `Status().Update()` from its cached read: a write by
/// anyone else in between made it fail with 409 Conflict (or, without the resourceVersion,
/// erased the other writer's fields). Here the operator's status write is held in flight
/// while another writer adds its own condition; the held write then succeeds and the
/// condition survives.
#[tokio::test]
async fn status_write_survives_a_concurrent_writer() {
    let writes = std::sync::Arc::new(StatusWrites::default());
    let hooks = devcluster::Hooks {
        authorizer: Some(writes.clone()),
        ..devcluster::Hooks::default()
    };
    let dc = cluster_with_hooks(true, hooks).await;
    let client = dc.client();
    let op = start_operator(client.clone(), None);
    create_object(
        &client,
        &experiments(),
        "team",
        scenarios_experiment("shared"),
    )
    .await;
    wait_condition(&client, "team", "shared", "Ready", "True", None).await;
    let errors = || {
        op.metric(
            "controller_runtime_reconcile_total",
            &[("controller", "experiment"), ("result", "error")],
        )
    };
    let errors_before = errors();

    // Hold every patch of an Experiment; give the operator something to write.
    dc.set_faults(devcluster::FaultConfig {
        paused: true,
        verbs: vec!["patch".into()],
        resources: vec!["experiments".into()],
        ..devcluster::FaultConfig::default()
    })
    .unwrap();
    let seen = writes.0.load(std::sync::atomic::Ordering::SeqCst);
    report_execution(
        &client,
        "team",
        "shared-workflow",
        json!({"id": "exec-1", "number": 1, "result": {"status": "queued"}}),
    )
    .await;
    wait_for("the operator's status write to be in flight", || async {
        (writes.0.load(std::sync::atomic::Ordering::SeqCst) > seen).then_some(())
    })
    .await;

    // Another writer adds its condition meanwhile (a PUT, which the pause does not hold),
    // moving the resourceVersion past the one the operator read.
    let exps = dynamic(&client, &experiments(), "team");
    let mut current = exps.get("shared").await.unwrap();
    let read_rv = current.metadata.resource_version.clone();
    current.data["status"]["conditions"]
        .as_array_mut()
        .unwrap()
        .push(json!({
            "type": "example.com/Audited",
            "status": "True",
            "reason": "Reviewed",
            "message": "written by another controller",
            "lastTransitionTime": "2026-01-01T00:00:00Z"
        }));
    let foreign = exps
        .replace_status("shared", &PostParams::default(), &current)
        .await
        .unwrap();
    assert_ne!(foreign.metadata.resource_version, read_rv);
    assert!(
        get_object(&client, &experiments(), "team", "shared")
            .await
            .unwrap()["status"]
            .get("lastExecution")
            .is_none(),
        "the operator's write was not held"
    );

    dc.clear_faults();
    let exp = wait_for("the held status write to land", || async {
        let exp = get_object(&client, &experiments(), "team", "shared").await?;
        (exp["status"]["lastExecution"]["executionId"] == "exec-1").then_some(exp)
    })
    .await;
    let audited = json_condition(&exp, "example.com/Audited").unwrap_or_else(|| {
        panic!("the other writer's condition was erased: {exp:#}");
    });
    assert_eq!(audited["reason"], "Reviewed");
    assert_eq!(json_condition(&exp, "Ready").unwrap()["status"], "True");
    assert_eq!(errors(), errors_before, "a status write failed");
    op.stop().await.unwrap();
}

/// Requests of `verb resource` the dev cluster has served so far.
fn served(dc: &TestCluster, key: &str) -> u64 {
    dc.stats().requests.get(key).map_or(0, |s| s.count)
}

const CM_APPLY: &str = "patch configmaps";
const WORKFLOW_PATCH: &str = "patch testworkflows.testworkflows.testkube.io";
const TRIGGER_APPLY: &str = "patch testtriggers.tests.testkube.io";
const STATUS_PATCH: &str = "patch experiments.testbench.agentic-layer.ai/status";

/// Each child is written once when the Experiment is created, however many reconciles its
/// children's watch events cause before the caches catch up, and the status once. A drifted
/// child is written again; the unchanged ones are not.
#[tokio::test]
async fn each_child_is_written_once_and_only_a_drifted_one_again() {
    let dc = cluster(true).await;
    let client = dc.client();
    create_agent(&client, 9000).await;
    // The Agent has its URL before the operator starts, so the operator's first list of
    // Agents has it and the Experiment's children are decided at once (an operator started
    // earlier could reconcile the Experiment before the Agent's update reached its cache,
    // and rightly write again once it did).
    wait_for("the agent's URL", || async {
        get_object(&client, &agents(), "agents", "weather-agent")
            .await
            .filter(|a| a["status"]["url"].is_string())
    })
    .await;
    let op = start_operator(client.clone(), None);
    let mut body = scenarios_experiment("once");
    body["spec"]["trigger"] = json!({"enabled": true});
    create_object(&client, &experiments(), "team", body).await;
    wait_condition(&client, "team", "once", "Ready", "True", None).await;
    wait_for("the trigger", || async {
        get_object(&client, &test_triggers(), "team", "once-trigger").await
    })
    .await;
    // Give any redundant write time to happen before counting.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let counts = |dc: &TestCluster| {
        [CM_APPLY, WORKFLOW_PATCH, TRIGGER_APPLY, STATUS_PATCH].map(|k| served(dc, k))
    };
    assert_eq!(counts(&dc), [1, 1, 1, 1], "{:#?}", dc.stats().requests);

    let rv = |v: Option<Value>| v.unwrap()["metadata"]["resourceVersion"].clone();
    let trigger = rv(get_object(&client, &test_triggers(), "team", "once-trigger").await);
    let cm = config_map(&client, "team", "once-experiment")
        .await
        .unwrap()
        .metadata
        .resource_version;
    merge_object(
        &client,
        &test_workflows(),
        "team",
        "once-workflow",
        json!({"spec": {"use": [{"name": "something-else"}]}}),
    )
    .await;
    wait_for("the workflow to be restored", || async {
        get_object(&client, &test_workflows(), "team", "once-workflow")
            .await
            .filter(|w| w["spec"]["use"][0]["name"] == "run-template")
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    // The drift (the test's own patch) and one repair; nothing else was written.
    assert_eq!(counts(&dc), [1, 3, 1, 1], "{:#?}", dc.stats().requests);
    assert_eq!(
        rv(get_object(&client, &test_triggers(), "team", "once-trigger").await),
        trigger
    );
    assert_eq!(
        config_map(&client, "team", "once-experiment")
            .await
            .unwrap()
            .metadata
            .resource_version,
        cm
    );
    op.stop().await.unwrap();
}

/// An Experiment stored under a looser schema than this operator's (here: `scenarios` is a
/// number) cannot be read as an `Experiment`. It fails only its own reconcile, with a Warning
/// Event `InvalidObject` naming the problem; every other Experiment is listed and reconciled
/// as usual. A typed watch of Experiments would fail its whole list on it.
#[tokio::test]
async fn an_experiment_that_does_not_read_fails_alone() {
    let dc = cluster(true).await;
    let client = dc.client();
    create_agent(&client, 8000).await;
    let mut odd = scenarios_experiment("odd");
    odd["spec"]["scenarios"] = json!(3);
    support::loosen_spec_schema_and_create(
        &client,
        "experiments.testbench.agentic-layer.ai",
        &experiments(),
        Some("team"),
        odd,
    )
    .await;
    // Created before the operator starts, so its first list holds the odd one.
    create_object(
        &client,
        &experiments(),
        "team",
        scenarios_experiment("fine"),
    )
    .await;
    let op = start_operator(client.clone(), None);
    wait_condition(
        &client,
        "team",
        "fine",
        "Ready",
        "True",
        Some("ReconcileSucceeded"),
    )
    .await;
    let note = support::invalid_object_note(&client, "team", "odd").await;
    assert!(
        note.contains("team/odd") && note.contains("spec.scenarios: invalid type"),
        "{note}"
    );
    // Nothing was generated for it, and its status was left alone.
    assert!(
        get_object(&client, &test_workflows(), "team", "odd-workflow")
            .await
            .is_none()
    );
    let stored = get_object(&client, &experiments(), "team", "odd")
        .await
        .unwrap();
    assert!(stored.get("status").is_none_or(Value::is_null), "{stored}");
    op.stop().await.unwrap();
}

/// Objects that upstream's later versions generated carry its labels (`managed-by`,
/// `experiment-name`, `experiment-namespace`) but not this operator's owner annotation. Those
/// under the names this operator generates are adopted in place (same object, freed from the
/// anchor `ConfigMap` that owned them); the others (the anchor, and the `<exp>-testkube-*`
/// objects of an Experiment in the Testkube namespace, whose names differ here) are removed,
/// so a stale trigger no longer starts a stale workflow.
#[tokio::test]
#[allow(clippy::too_many_lines)] // the old layout is built object by object
async fn objects_of_upstreams_later_layout_are_adopted_or_removed() {
    let dc = cluster(true).await;
    let client = dc.client();
    let labels = |name: &str, ns: &str, kind: &str| {
        json!({
            "testbench.agentic-layer.ai/managed-by": "experiment-controller",
            "testbench.agentic-layer.ai/experiment-name": name,
            "testbench.agentic-layer.ai/experiment-namespace": ns,
            "testbench.agentic-layer.ai/resource-type": kind,
        })
    };
    let anchor: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "weather-team-anchor", "namespace": "testkube",
                     "labels": labels("weather", "team", "anchor")}
    }))
    .unwrap();
    let anchor = Api::<ConfigMap>::namespaced(client.clone(), "testkube")
        .create(&PostParams::default(), &anchor)
        .await
        .unwrap();
    let owned_by_anchor = json!([{
        "apiVersion": "v1", "kind": "ConfigMap", "name": "weather-team-anchor",
        "uid": anchor.metadata.uid.clone().unwrap()
    }]);
    let old = |ar: &ApiResource, name: &str, exp: &str, ns: &str, kind: &str, owners: Value| {
        let mut meta =
            json!({"name": name, "namespace": "testkube", "labels": labels(exp, ns, kind)});
        if !owners.is_null() {
            meta["ownerReferences"] = owners;
        }
        json!({"apiVersion": ar.api_version, "kind": ar.kind, "metadata": meta, "spec": {}})
    };
    for (ar, name, exp, ns, kind, owners) in [
        (
            test_workflows(),
            "weather-team-workflow",
            "weather",
            "team",
            "workflow",
            owned_by_anchor.clone(),
        ),
        (
            test_triggers(),
            "weather-team-trigger",
            "weather",
            "team",
            "trigger",
            owned_by_anchor,
        ),
        (
            test_workflows(),
            "local-testkube-workflow",
            "local",
            "testkube",
            "workflow",
            Value::Null,
        ),
        (
            test_triggers(),
            "local-testkube-trigger",
            "local",
            "testkube",
            "trigger",
            Value::Null,
        ),
    ] {
        create_object(
            &client,
            &ar,
            "testkube",
            old(&ar, name, exp, ns, kind, owners),
        )
        .await;
    }
    let before = get_object(
        &client,
        &test_workflows(),
        "testkube",
        "weather-team-workflow",
    )
    .await
    .unwrap();

    let op = start_operator(client.clone(), Some("testkube"));
    let mut weather = scenarios_experiment("weather");
    weather["spec"]["trigger"] = json!({"enabled": true});
    create_object(&client, &experiments(), "team", weather).await;
    let mut local = scenarios_experiment("local");
    local["metadata"]["namespace"] = json!("testkube");
    local["spec"]["trigger"] = json!({"enabled": true});
    create_object(&client, &experiments(), "testkube", local).await;
    wait_condition(&client, "team", "weather", "Ready", "True", None).await;
    wait_condition(&client, "testkube", "local", "Ready", "True", None).await;

    // Removed: the anchor and the objects under names this operator does not generate.
    wait_gone(
        &client,
        &test_triggers(),
        "testkube",
        "local-testkube-trigger",
    )
    .await;
    wait_gone(
        &client,
        &test_workflows(),
        "testkube",
        "local-testkube-workflow",
    )
    .await;
    support::wait_gone(
        &Api::<ConfigMap>::namespaced(client.clone(), "testkube"),
        "weather-team-anchor",
    )
    .await;
    assert!(
        get_object(&client, &test_workflows(), "testkube", "local-workflow")
            .await
            .is_some()
    );
    // Adopted in place: the same object, no longer owned by the anchor.
    let adopted = wait_for("the adopted workflow to lose its anchor owner", || {
        let client = &client;
        async move {
            get_object(
                client,
                &test_workflows(),
                "testkube",
                "weather-team-workflow",
            )
            .await
            .filter(|w| {
                w["metadata"]
                    .get("ownerReferences")
                    .is_none_or(|o| o.as_array().is_some_and(Vec::is_empty))
            })
        }
    })
    .await;
    assert_eq!(adopted["metadata"]["uid"], before["metadata"]["uid"]);
    assert_eq!(
        adopted["metadata"]["annotations"]["testbench.agentic-layer.ai/experiment"],
        "team/weather"
    );
    assert!(
        get_object(
            &client,
            &test_triggers(),
            "testkube",
            "weather-team-trigger"
        )
        .await
        .is_some()
    );
    op.stop().await.unwrap();
}
