//! The labs Experiment controller against devcluster with the simulated Crossplane, Argo CD and
//! Argo Workflows: one test per acceptance criterion (multi-target with `depends`, component
//! resolution, workflow-driven and manual completion, provisioning timeout, deletion in every
//! phase, restarts) plus the upstream bugs it must not repeat.
//!
//! Claims and Applications are scripted through their Experiment: an admission hook copies the
//! Experiment's `devcluster.io/*` annotations onto them when they are created.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use agentic_api::labs::{Experiment, ExperimentPhase};
use agentic_operator::labs::{Labs, LabsConfig};
use devcluster::{hooks::AdmissionRequest, simulators::Simulators};
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams},
    discovery::ApiResource,
};
use serde_json::{Value, json};
use support::{
    Operator, ScriptChildren, ScriptSource, Setup, TestCluster, api_resource, create_yaml, dynamic,
    find_condition, settings_for, wait_get, wait_until,
};

/// Namespace of the Experiments.
const NS: &str = "experiments";

/// The Experiment a claim or Application was created for, whose `devcluster.io/*`
/// annotations script it.
fn owning_experiment(_request: &AdmissionRequest<'_>, object: &Value) -> Option<ScriptSource> {
    let labels = &object["metadata"]["labels"];
    let (Some(exp), Some(ns)) = (
        labels["experiments.illm.io/experiment"].as_str(),
        labels["experiments.illm.io/namespace"].as_str(),
    ) else {
        return None;
    };
    Some(ScriptSource {
        group: "experiments.illm.io".into(),
        resource: "experiments".into(),
        namespace: ns.to_owned(),
        name: exp.to_owned(),
    })
}

struct Env {
    cluster: TestCluster,
    client: Client,
}

impl Env {
    async fn start() -> Self {
        Self::start_with(&[
            "claim-gkecluster.yaml",
            "claim-taloscluster.yaml",
            "claim-vcluster.yaml",
            "argocd-application.yaml",
            "argo-workflow.yaml",
            "argo-workflowtemplate.yaml",
        ])
        .await
    }

    /// [`Self::start`] plus the composite kind `XGKECluster` (claims in
    /// `devcluster.io/connection-secret: composite` mode get one).
    async fn with_composites() -> Self {
        Self::start_with(&[
            "claim-gkecluster.yaml",
            "claim-taloscluster.yaml",
            "claim-vcluster.yaml",
            "composite-xgkecluster.yaml",
            "argocd-application.yaml",
            "argo-workflow.yaml",
            "argo-workflowtemplate.yaml",
        ])
        .await
    }

    /// A cluster with the lab CRDs and only the `fixtures` of the foreign kinds.
    async fn start_with(fixtures: &[&str]) -> Self {
        let mut setup = Setup::new()
            .admission(ScriptChildren {
                kinds: &["GKECluster", "TalosCluster", "VCluster", "Application"],
                source: owning_experiment,
                defaults: &[],
            })
            .crds(agentic_api::labs::GROUP);
        for f in fixtures {
            setup = setup.fixture(&format!("labs/{f}"));
        }
        for ns in [NS, "argocd", "argo-workflows", "monitoring", "clusters"] {
            setup = setup.namespace(ns, &[]);
        }
        let cluster = setup
            .simulators_after_setup(Simulators {
                crossplane: true,
                argocd: true,
                argo_workflows: true,
                ..Simulators::none()
            })
            .start()
            .await;
        let client = cluster.client();
        Self { cluster, client }
    }

    async fn stop(self) {
        self.cluster.shutdown().await;
    }
}

/// The operator with only the labs family, configured with `config`.
fn start_operator(client: &Client, config: LabsConfig) -> Operator {
    let settings = settings_for("labs", &[("POD_NAME", "labs-test")], |_| {});
    Operator::start_with(client.clone(), settings, vec![Box::new(Labs::new(config))])
}

fn argo(kind: &str, plural: &str) -> ApiResource {
    api_resource("argoproj.io", "v1alpha1", kind, plural)
}

fn claim_ar(kind: &str, plural: &str) -> ApiResource {
    api_resource("illm.io", "v1alpha1", kind, plural)
}

async fn component(client: &Client, name: &str, type_: &str, extra: &str) {
    let ar = ApiResource::erase::<agentic_api::labs::Component>(&());
    let yaml = format!(
        "apiVersion: experiments.illm.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\nspec:\n  type: {type_}\n  sources:\n  - repoURL: https://charts.example.com\n    chart: {name}\n    targetRevision: 1.0.0\n    helm:\n      releaseName: {name}\n{extra}"
    );
    create_yaml(client, &ar, None, &yaml).await;
}

async fn template(client: &Client, name: &str, annotations: &str, suspend: bool) {
    let steps = if suspend {
        "  - name: main\n    steps:\n    - - {name: wait, template: wait}\n  - name: wait\n    suspend: {}\n"
    } else {
        "  - name: main\n    container: {image: alpine:3.19}\n"
    };
    let yaml = format!(
        "apiVersion: argoproj.io/v1alpha1\nkind: WorkflowTemplate\nmetadata:\n  name: {name}\n  annotations: {annotations}\nspec:\n  entrypoint: main\n  templates:\n{steps}"
    );
    create_yaml(
        client,
        &argo("WorkflowTemplate", "workflowtemplates"),
        Some("argo-workflows"),
        &yaml,
    )
    .await;
}

async fn experiment(client: &Client, yaml: &str) {
    let exp: Experiment = serde_yaml::from_str(yaml).unwrap();
    Api::<Experiment>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &exp)
        .await
        .unwrap();
}

/// Polls until `check` holds on the Experiment; returns it.
async fn wait_for(
    client: &Client,
    name: &str,
    what: &str,
    check: impl Fn(&Experiment) -> bool,
) -> Experiment {
    wait_until(&Api::namespaced(client.clone(), NS), name, what, check).await
}

async fn wait_phase(client: &Client, name: &str, phase: ExperimentPhase) -> Experiment {
    wait_for(client, name, phase.as_str(), |e| e.phase() == phase).await
}

async fn wait_gone(client: &Client, name: &str) {
    support::wait_gone(&Api::<Experiment>::namespaced(client.clone(), NS), name).await;
}

fn cond<'a>(
    e: &'a Experiment,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    find_condition(e.status.as_ref()?.conditions.as_deref(), type_)
}

fn fast() -> LabsConfig {
    LabsConfig {
        cleanup_stuck_after: Duration::from_secs(2),
        ..LabsConfig::default()
    }
}

const TWO_TARGETS: &str = r"
apiVersion: experiments.illm.io/v1alpha1
kind: Experiment
metadata:
  name: gw
  namespace: experiments
  annotations: ANNOTATIONS
spec:
  description: app on a provisioned cluster, load generator on the hub
  series: gateway
  targets:
  - name: loadgen
    cluster: {type: hub}
    components:
    - workflow: k6-loadgen
      params: {users: '10'}
    depends: [app]
  - name: app
    cluster: {type: gke, zone: europe-west1-b, preemptible: true}
    components:
    - app: web
    observability: {enabled: true, transport: direct}
  workflow:
    template: gateway-validation
    completion: {mode: workflow}
    params: {duration: 30s}
";

async fn catalogue(client: &Client) {
    component(
        client,
        "web",
        "app",
        "  parameters:\n  - {name: replicas, type: int, default: '2'}\n",
    )
    .await;
    component(client, "k6-loadgen", "workflow", "").await;
    component(client, "metrics-egress", "config", "").await;
    component(client, "metrics-agent", "app", "").await;
}

/// Multi-target (gke + hub with `depends`), Argo CD registration and Applications, Degraded
/// not counted as healthy, workflow parameters, completion, Grafana datasource and
/// completion cleanup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::too_many_lines)] // one scenario, checked step by step
async fn multi_target_experiment_runs_to_complete_and_cleans_up() {
    let env = Env::start().await;
    let client = env.client.clone();
    catalogue(&client).await;
    // The workflow runs until the test releases it.
    template(
        &client,
        "gateway-validation",
        "{devcluster.io/run-seconds: forever}",
        false,
    )
    .await;
    let op = start_operator(&client, fast());
    // The app's Application starts Degraded (upstream counted Degraded as healthy).
    experiment(
        &client,
        &TWO_TARGETS.replace("ANNOTATIONS", "{devcluster.io/health: Degraded}"),
    )
    .await;

    let apps = dynamic(&client, &argo("Application", "applications"), "argocd");
    let app = wait_get(&apps, "gw-app", "app Application Degraded", |o| {
        o.is_some_and(|o| o.data.pointer("/status/health/status") == Some(&json!("Degraded")))
    })
    .await
    .unwrap();
    // Deployed to the provisioned cluster, registered through a cluster Secret.
    let server = app
        .data
        .pointer("/spec/destination/server")
        .unwrap()
        .as_str()
        .unwrap()
        .to_owned();
    assert!(server.starts_with("https://10."), "{server}");
    assert_eq!(
        app.data.pointer("/spec/destination/namespace"),
        Some(&json!("gw"))
    );
    assert_eq!(
        app.metadata.finalizers.as_deref(),
        Some(&["resources-finalizer.argocd.argoproj.io".to_owned()][..])
    );
    let sources = app
        .data
        .pointer("/spec/sources")
        .unwrap()
        .as_array()
        .unwrap();
    let charts: Vec<&str> = sources
        .iter()
        .map(|s| s["chart"].as_str().unwrap())
        .collect();
    assert_eq!(charts, ["web", "metrics-egress", "metrics-agent"]);
    assert_eq!(
        sources[0].pointer("/helm/parameters/0"),
        Some(&json!({"name": "replicas", "value": "2"}))
    );
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "argocd");
    let reg = secrets.get("cluster-gw-app").await.unwrap();
    assert_eq!(reg.labels()["argocd.argoproj.io/secret-type"], "cluster");
    let data = reg.data.unwrap();
    assert_eq!(String::from_utf8_lossy(&data["server"].0), server);
    let config: Value = serde_json::from_slice(&data["config"].0).unwrap();
    assert!(
        config.pointer("/tlsClientConfig/certData").is_some(),
        "{config}"
    );
    // The claim follows the gke mapping.
    let claim = dynamic(&client, &claim_ar("GKECluster", "gkeclusters"), NS)
        .get("gw-app")
        .await
        .unwrap();
    assert_eq!(
        claim.data.pointer("/spec/zone"),
        Some(&json!("europe-west1-b"))
    );
    assert_eq!(claim.data.pointer("/spec/preemptible"), Some(&json!(true)));
    assert_eq!(
        claim.data.pointer("/spec/machineType"),
        Some(&json!("e2-medium"))
    );

    // loadgen depends on app: its Application waits while app is Degraded.
    let e = wait_for(&client, "gw", "ComponentsHealthy lists the wait", |e| {
        cond(e, "ComponentsHealthy").is_some_and(|c| c.message.contains("loadgen: waiting for app"))
    })
    .await;
    assert_eq!(e.phase(), ExperimentPhase::Provisioning);
    assert!(apps.get_opt("gw-loadgen").await.unwrap().is_none());
    // Status is keyed by target name, in spec order.
    let targets = e.status.as_ref().unwrap().targets.clone().unwrap();
    assert_eq!(targets[0].name, "loadgen");
    assert_eq!(targets[0].cluster_name.as_deref(), Some("hub"));
    assert_eq!(targets[1].name, "app");
    assert_eq!(targets[1].cluster_name.as_deref(), Some("gw-app"));
    assert_eq!(targets[1].phase.as_deref(), Some("Ready"));
    assert_eq!(cond(&e, "Provisioned").unwrap().status, "True");

    // Later Applications are not scripted Degraded; then the app target recovers.
    Api::<Experiment>::namespaced(client.clone(), NS)
        .patch(
            "gw",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"devcluster.io/health": null}}})),
        )
        .await
        .unwrap();
    apps.patch(
        "gw-app",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {"devcluster.io/health": "Healthy"}}})),
    )
    .await
    .unwrap();
    let workflows = dynamic(&client, &argo("Workflow", "workflows"), "argo-workflows");
    let wf = wait_get(&workflows, "gw-validation", "workflow submitted", |o| {
        o.is_some()
    })
    .await
    .unwrap();
    assert_eq!(
        wf.data.pointer("/spec/workflowTemplateRef/name"),
        Some(&json!("gateway-validation"))
    );
    let params: Vec<(String, String)> = wf
        .data
        .pointer("/spec/arguments/parameters")
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_owned(),
                p["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let names: Vec<&str> = params.iter().map(|p| p.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "app-endpoint",
            "app-name",
            "duration",
            "experiment-name",
            "target-endpoint",
            "target-name"
        ]
    );
    assert_eq!(params[3].1, "gw");
    let loadgen = apps.get("gw-loadgen").await.unwrap();
    assert_eq!(
        loadgen.data.pointer("/spec/destination/server"),
        Some(&json!("https://kubernetes.default.svc"))
    );
    // No cluster Secret for the hub (upstream deleted a `cluster-hub` Secret).
    assert!(secrets.get_opt("cluster-hub").await.unwrap().is_none());
    let cms: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(client.clone(), "monitoring");
    let ds = cms.get("lab-experiments-gw-datasource").await.unwrap();
    assert_eq!(ds.labels()["grafana_datasource"], "1");

    workflows
        .patch(
            "gw-validation",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"devcluster.io/run-seconds": "0"}}})),
        )
        .await
        .unwrap();
    let e = wait_phase(&client, "gw", ExperimentPhase::Complete).await;
    assert_eq!(cond(&e, "WorkflowSucceeded").unwrap().status, "True");
    let ws = e.status.as_ref().unwrap().workflow_status.clone().unwrap();
    assert_eq!(ws.name, "gw-validation");
    assert_eq!(ws.phase.as_deref(), Some("Succeeded"));
    // The unknown-to-the-Go-types field survives (upstream's full Update wiped it).
    assert_eq!(e.spec.series.as_deref(), Some("gateway"));

    // Completion cleanup removes every child, in order, and the CR stays as history.
    let e = wait_for(&client, "gw", "resources cleaned", |e| {
        e.status.as_ref().and_then(|s| s.resources_cleaned) == Some(true)
    })
    .await;
    assert_eq!(e.phase(), ExperimentPhase::Complete);
    assert!(apps.get_opt("gw-app").await.unwrap().is_none());
    assert!(apps.get_opt("gw-loadgen").await.unwrap().is_none());
    assert!(workflows.get_opt("gw-validation").await.unwrap().is_none());
    assert!(secrets.get_opt("cluster-gw-app").await.unwrap().is_none());
    assert!(
        cms.get_opt("lab-experiments-gw-datasource")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        dynamic(&client, &claim_ar("GKECluster", "gkeclusters"), NS)
            .get_opt("gw-app")
            .await
            .unwrap()
            .is_none()
    );
    // Transitions are counted.
    let text = op.metrics.encode().unwrap();
    assert!(
        text.contains(r#"labs_experiment_phase_transitions_total{from="Running",to="Complete",reason="WorkflowSucceeded"} 1"#),
        "{text}"
    );
    // Events were recorded for the transitions and the cleanup (which is published after the
    // status write the test waited for, so it is polled).
    let reasons = || async {
        support::event_reasons(&client, NS, "gw")
            .await
            .into_iter()
            .map(|(_, reason)| reason)
            .collect::<Vec<String>>()
    };
    let expected = [
        "Provisioning",
        "ComponentsHealthy",
        "WorkflowSubmitted",
        "WorkflowSucceeded",
        "Cleaned",
    ];
    support::eventually("the transition and cleanup Events", || async {
        let got = reasons().await;
        expected.iter().all(|r| got.iter().any(|x| x == r))
    })
    .await;
    // Cleanup is reported once: one Event, not repeated (a repeat would be counted in its
    // `series`).
    let cleaned = support::events_with_reason(&client, NS, "Cleaned").await;
    assert_eq!(cleaned.len(), 1, "{cleaned:?}");
    assert!(cleaned[0].series.is_none(), "published again: {cleaned:?}");

    // Deleting the finished experiment releases the finalizer.
    Api::<Experiment>::namespaced(client.clone(), NS)
        .delete("gw", &DeleteParams::default())
        .await
        .unwrap();
    wait_gone(&client, "gw").await;
    op.stop().await.unwrap();
    env.stop().await;
}

const HUB_ONLY: &str = r"
apiVersion: experiments.illm.io/v1alpha1
kind: Experiment
metadata:
  name: NAME
  namespace: experiments
  annotations: ANNOTATIONS
spec:
  targets:
  - name: main
    cluster: {type: CLUSTER}
    components:
    - app: web
  workflow:
    template: TEMPLATE
    completion: {mode: MODE}
";

/// Waits for an Event with `reason` in the test namespace whose note contains `needle`;
/// returns the note.
async fn event_note(client: &Client, reason: &str, needle: &str) -> String {
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), NS);
    support::wait_for(&format!("a {reason} Event about {needle}"), || {
        let events = &events;
        async move {
            events
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
                .into_iter()
                .filter(|e| e.reason.as_deref() == Some(reason))
                .filter_map(|e| e.note)
                .find(|n| n.contains(needle))
        }
    })
    .await
}

fn exp_yaml(name: &str, cluster: &str, template: &str, mode: &str, annotations: &str) -> String {
    HUB_ONLY
        .replace("NAME", name)
        .replace("CLUSTER", cluster)
        .replace("TEMPLATE", template)
        .replace("MODE", mode)
        .replace("ANNOTATIONS", annotations)
}

/// A failed workflow fails the experiment with the workflow's message; a missing template
/// fails it too (no inline fallback workflow). Cleanup ends with a `Cleaned` Event, also when
/// its first pass finds nothing to remove; after it a failed experiment is not written again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workflow_failure_fails_the_experiment() {
    let env = Env::start().await;
    let client = env.client.clone();
    catalogue(&client).await;
    template(
        &client,
        "breaks",
        "{devcluster.io/result: Failed, devcluster.io/message: 'k6 thresholds crossed'}",
        false,
    )
    .await;
    let op = start_operator(&client, fast());
    experiment(
        &client,
        &exp_yaml("fails", "hub", "breaks", "workflow", "{}"),
    )
    .await;
    experiment(
        &client,
        &exp_yaml("notemplate", "hub", "missing", "workflow", "{}"),
    )
    .await;
    // Without components nor a workflow there is nothing to remove: cleanup ends in its first
    // pass.
    experiment(
        &client,
        &exp_yaml("bare", "hub", "missing", "workflow", "{}")
            .replace("    components:\n    - app: web\n", "    components: []\n"),
    )
    .await;
    let e = wait_phase(&client, "fails", ExperimentPhase::Failed).await;
    let c = cond(&e, "WorkflowSucceeded").unwrap();
    assert_eq!((c.status.as_str(), c.reason.as_str()), ("False", "Failed"));
    assert!(c.message.contains("k6 thresholds crossed"), "{c:?}");
    let e = wait_phase(&client, "notemplate", ExperimentPhase::Failed).await;
    assert!(
        cond(&e, "WorkflowSucceeded")
            .unwrap()
            .message
            .contains("\"missing\" not found")
    );

    // Once both are cleaned up, another reconcile of each (woken by an annotation the test
    // sets) writes nothing: the only writes counted are the test's two patches.
    for name in ["fails", "notemplate", "bare"] {
        wait_for(&client, name, "resources cleaned", |e| {
            e.status.as_ref().and_then(|s| s.resources_cleaned) == Some(true)
        })
        .await;
    }
    for name in ["fails", "notemplate", "bare"] {
        support::eventually("the Cleaned Event", || async {
            support::event_reasons(&client, NS, name)
                .await
                .contains(&("Normal".into(), "Cleaned".into()))
        })
        .await;
    }
    support::wait_quiet(&env.cluster).await;
    let reconciles = op.reconciles(agentic_operator::labs::CONTROLLER);
    env.cluster.cluster().reset_stats();
    let api = Api::<Experiment>::namespaced(client.clone(), NS);
    for name in ["fails", "notemplate"] {
        api.patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"example.com/touched": "1"}}})),
        )
        .await
        .unwrap();
    }
    support::eventually("both experiments to be reconciled again", || async {
        op.reconciles(agentic_operator::labs::CONTROLLER) >= reconciles + 2
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let writes: Vec<String> = env
        .cluster
        .stats()
        .requests
        .into_iter()
        .filter(|(key, v)| {
            let verb = key.split(' ').next().unwrap_or_default();
            ["create", "update", "patch", "delete"].contains(&verb) && v.count > 0
        })
        .map(|(key, v)| format!("{key}: {}", v.count))
        .collect();
    assert_eq!(
        writes,
        ["patch experiments.experiments.illm.io: 2"],
        "writes besides the test's own"
    );
    op.stop().await.unwrap();
    env.stop().await;
}

/// `manual` completion: the workflow suspends, the experiment stays Running until the
/// workflow is resumed; an experiment never resumed fails at its deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_completion_waits_for_resume_and_has_a_deadline() {
    let env = Env::start().await;
    let client = env.client.clone();
    catalogue(&client).await;
    template(&client, "hold", "{}", true).await;
    let op = start_operator(
        &client,
        LabsConfig {
            manual_deadline: Duration::from_secs(30),
            ..fast()
        },
    );
    experiment(&client, &exp_yaml("manual", "hub", "hold", "manual", "{}")).await;
    let workflows = dynamic(&client, &argo("Workflow", "workflows"), "argo-workflows");
    wait_get(&workflows, "manual-validation", "suspended", |o| {
        o.is_some_and(|o| {
            o.data
                .pointer("/status/nodes/manual-validation-suspend/type")
                == Some(&json!("Suspend"))
        })
    })
    .await;
    let e = wait_phase(&client, "manual", ExperimentPhase::Running).await;
    assert_eq!(cond(&e, "WorkflowSucceeded").unwrap().status, "Unknown");
    workflows
        .patch(
            "manual-validation",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"devcluster.io/resume": "true"}}})),
        )
        .await
        .unwrap();
    wait_phase(&client, "manual", ExperimentPhase::Complete).await;

    // Not resumed: Failed once the deadline passes.
    experiment(
        &client,
        &exp_yaml("forgotten", "hub", "hold", "manual", "{}"),
    )
    .await;
    let e = wait_phase(&client, "forgotten", ExperimentPhase::Failed).await;
    let c = cond(&e, "WorkflowSucceeded").unwrap();
    assert_eq!(c.reason, "ManualDeadlineExceeded", "{c:?}");
    op.stop().await.unwrap();
    env.stop().await;
}

/// The phase that ends an experiment is written before anything is removed: while the API
/// server refuses the Experiment's writes (500), the finished Workflow, the only record of
/// the outcome, stays; once the writes go through the experiment is `Complete` and cleaned
/// up. (Before, the cleanup deleted the Workflow in the same pass, the status write then
/// failed, and the retry found a `Running` experiment without a Workflow, for ever.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_completion_write_removes_nothing() {
    let env = Env::start().await;
    let client = env.client.clone();
    catalogue(&client).await;
    template(&client, "hold", "{}", true).await;
    let op = start_operator(&client, fast());
    experiment(&client, &exp_yaml("refused", "hub", "hold", "manual", "{}")).await;
    wait_phase(&client, "refused", ExperimentPhase::Running).await;
    let workflows = dynamic(&client, &argo("Workflow", "workflows"), "argo-workflows");

    env.cluster
        .set_faults(devcluster::FaultConfig {
            error_rate: 1.0,
            error_codes: vec![500],
            verbs: vec!["patch".into()],
            resources: vec!["experiments.experiments.illm.io".into()],
            ..devcluster::FaultConfig::default()
        })
        .unwrap();
    workflows
        .patch(
            "refused-validation",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"devcluster.io/resume": "true"}}})),
        )
        .await
        .unwrap();
    wait_get(
        &workflows,
        "refused-validation",
        "the workflow to succeed",
        |o| o.is_some_and(|o| o.data.pointer("/status/phase") == Some(&json!("Succeeded"))),
    )
    .await;
    support::eventually("the completion write to be refused twice", || async {
        env.cluster
            .stats()
            .get("patch", "experiments.experiments.illm.io/status")
            .errors
            >= 2
    })
    .await;
    assert!(
        workflows
            .get_opt("refused-validation")
            .await
            .unwrap()
            .is_some(),
        "the Workflow was deleted before the experiment's end was recorded"
    );

    env.cluster.clear_faults();
    let e = wait_phase(&client, "refused", ExperimentPhase::Complete).await;
    assert_eq!(cond(&e, "WorkflowSucceeded").unwrap().status, "True");
    wait_for(&client, "refused", "resources cleaned", |e| {
        e.status.as_ref().and_then(|s| s.resources_cleaned) == Some(true)
    })
    .await;
    assert!(
        workflows
            .get_opt("refused-validation")
            .await
            .unwrap()
            .is_none()
    );
    op.stop().await.unwrap();
    env.stop().await;
}

/// A claim that never becomes Ready fails its target at the provisioning timeout with the
/// claim's last message, and the claim is cleaned up (upstream waited forever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisioning_timeout_fails_with_the_claim_message() {
    let env = Env::start().await;
    let client = env.client.clone();
    catalogue(&client).await;
    template(&client, "ok", "{}", false).await;
    let op = start_operator(
        &client,
        LabsConfig {
            provisioning_timeout: Duration::from_secs(3),
            ..fast()
        },
    );
    experiment(
        &client,
        &exp_yaml(
            "quota",
            "gke",
            "ok",
            "workflow",
            "{devcluster.io/fail-message: 'GCE quota exceeded in us-central1'}",
        ),
    )
    .await;
    let e = wait_phase(&client, "quota", ExperimentPhase::Failed).await;
    let c = cond(&e, "Provisioned").unwrap();
    assert_eq!(c.reason, "ProvisioningFailed");
    assert!(
        c.message.contains("GCE quota exceeded in us-central1"),
        "{c:?}"
    );
    assert!(c.message.contains("provisioning timeout"), "{c:?}");
    let t = &e.status.as_ref().unwrap().targets.as_ref().unwrap()[0];
    assert_eq!(t.phase.as_deref(), Some("Failed"));
    wait_for(&client, "quota", "cleaned", |e| {
        e.status.as_ref().and_then(|s| s.resources_cleaned) == Some(true)
    })
    .await;
    let claims = dynamic(&client, &claim_ar("GKECluster", "gkeclusters"), NS);
    assert!(claims.get_opt("quota-main").await.unwrap().is_none());
    op.stop().await.unwrap();
    env.stop().await;
}

/// An Application that does not become Synced and Healthy within `componentsTimeoutSeconds`
/// of its creation fails the experiment (upstream waited for ever, with the cluster running),
/// naming the Application and where its health and sync stood; the children are cleaned up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn components_that_never_become_healthy_fail_the_experiment() {
    let env = Env::start().await;
    let client = env.client.clone();
    catalogue(&client).await;
    template(&client, "gateway-validation", "{}", false).await;
    let op = start_operator(
        &client,
        LabsConfig {
            components_timeout: Duration::from_secs(3),
            ..fast()
        },
    );
    experiment(
        &client,
        &TWO_TARGETS.replace("ANNOTATIONS", "{devcluster.io/health: Degraded}"),
    )
    .await;
    let e = wait_phase(&client, "gw", ExperimentPhase::Failed).await;
    let note = event_note(&client, "TargetFailed", "target app failed").await;
    assert!(
        note.contains("target app failed")
            && note.contains("Application argocd/gw-app")
            && note.contains("within 3s")
            && note.contains("health Degraded"),
        "{note}"
    );
    assert!(
        e.status.as_ref().unwrap().workflow_status.is_none(),
        "no Workflow was submitted"
    );
    let cleaned = wait_for(&client, "gw", "cleaned", |e| {
        e.status.as_ref().and_then(|s| s.resources_cleaned) == Some(true)
    })
    .await;
    // Why it failed outlives the cleanup (whose reasons replace Ready's), and the clusters,
    // which were fine, are not blamed.
    let failed = cond(&cleaned, "Failed").expect("a Failed condition");
    assert_eq!(
        (failed.status.as_str(), failed.reason.as_str()),
        ("True", "TargetFailed")
    );
    assert!(
        failed.message.contains("target app failed") && failed.message.contains("within 3s"),
        "{}",
        failed.message
    );
    assert_eq!(cond(&cleaned, "Ready").unwrap().reason, "Cleaned");
    assert_ne!(
        cond(&cleaned, "Provisioned").unwrap().reason,
        "ProvisioningFailed"
    );
    let claims = dynamic(&client, &claim_ar("GKECluster", "gkeclusters"), NS);
    assert!(claims.get_opt("gw-app").await.unwrap().is_none());
    op.stop().await.unwrap();
    env.stop().await;
}

/// The components timeout covers only the wait for an Application to come up: once it has
/// been Synced and Healthy (recorded as `componentsHealthyAt`), a later dip (a rollout, a
/// restarting pod) while another target still provisions does not fail the experiment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_that_was_healthy_does_not_time_out_later() {
    const TWO: &str = r"
apiVersion: experiments.illm.io/v1alpha1
kind: Experiment
metadata:
  name: dip
  namespace: experiments
  annotations: {devcluster.io/fail-message: 'GCE quota exceeded'}
spec:
  targets:
  - name: web
    cluster: {type: hub}
    components:
    - app: web
  - name: slow
    cluster: {type: gke}
  workflow:
    template: ok
    completion: {mode: workflow}
";
    let env = Env::start().await;
    let client = env.client.clone();
    catalogue(&client).await;
    template(&client, "ok", "{}", false).await;
    let op = start_operator(
        &client,
        LabsConfig {
            components_timeout: Duration::from_secs(1),
            ..fast()
        },
    );
    experiment(&client, TWO).await;
    // The hub target's Application comes up while the other target's claim cannot.
    let e = wait_for(&client, "dip", "componentsHealthyAt of target web", |e| {
        e.status
            .as_ref()
            .and_then(|s| s.targets.as_ref())
            .and_then(|t| t.iter().find(|t| t.name == "web"))
            .is_some_and(|t| t.components_healthy_at.is_some())
    })
    .await;
    assert_eq!(e.status.unwrap().phase, Some(ExperimentPhase::Provisioning));
    let apps = dynamic(&client, &argo("Application", "applications"), "argocd");
    let created = apps
        .get("dip-web")
        .await
        .unwrap()
        .metadata
        .creation_timestamp
        .unwrap()
        .0;
    // Past the timeout counted from its creation, the Application dips.
    support::wait_for("the components timeout to pass", || async {
        (jiff::Timestamp::now() - jiff::SignedDuration::from_secs(2) > created).then_some(())
    })
    .await;
    apps.patch(
        "dip-web",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {"devcluster.io/health": "Degraded"}}})),
    )
    .await
    .unwrap();
    let e = wait_for(&client, "dip", "the dip to be seen", |e| {
        cond(e, "ComponentsHealthy").is_some_and(|c| c.message.contains("Degraded"))
    })
    .await;
    assert_eq!(
        e.status.unwrap().phase,
        Some(ExperimentPhase::Provisioning),
        "a dip after the Application was healthy failed the experiment"
    );
    op.stop().await.unwrap();
    env.stop().await;
}

/// With `stuckClaimRecreateAfterSeconds`, a claim that is not Ready in time is deleted and
/// created again (beads `ku4`, `87v`, …: stuck asynchronous GKE creates), at most
/// `maxClaimRecreations` times: the target reports `claimRecreations`, a Warning Event
/// `ClaimRecreated` names the claim, the new claim is marked as the second attempt, and once
/// it becomes Ready the experiment proceeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stuck_claim_is_recreated_once() {
    let env = Env::start().await;
    let client = env.client.clone();
    catalogue(&client).await;
    template(&client, "ok", "{}", false).await;
    let op = start_operator(
        &client,
        LabsConfig {
            stuck_claim_recreate_after: Some(Duration::from_secs(1)),
            max_claim_recreations: 1,
            ..fast()
        },
    );
    experiment(
        &client,
        &exp_yaml(
            "stuck",
            "gke",
            "ok",
            "workflow",
            "{devcluster.io/ready-seconds: forever}",
        ),
    )
    .await;
    let claims = dynamic(&client, &claim_ar("GKECluster", "gkeclusters"), NS);
    let first = wait_get(&claims, "stuck-main", "first claim", |o| o.is_some())
        .await
        .unwrap();
    let e = wait_for(&client, "stuck", "one recreation", |e| {
        e.status
            .as_ref()
            .and_then(|s| s.targets.as_ref())
            .is_some_and(|t| t[0].claim_recreations == Some(1))
    })
    .await;
    assert_eq!(e.phase(), ExperimentPhase::Provisioning);
    // The second claim is told by its attempt annotation, not by comparing it with the first
    // one seen: on a starved machine the first poll may already find the recreated claim.
    let attempt = |c: &kube::api::DynamicObject| {
        c.annotations()
            .get("experiments.illm.io/claim-attempt")
            .cloned()
    };
    // The recreated claim's attempt annotation may first be applied to the old claim while it
    // is still being deleted (its finalizer not yet released); the second claim is the one
    // with the annotation and, when the first poll saw the old claim, another UID.
    let second = wait_get(&claims, "stuck-main", "second claim", |o| {
        o.is_some_and(|c| {
            attempt(c).as_deref() == Some("2")
                && (attempt(&first).is_some() || c.metadata.uid != first.metadata.uid)
        })
    })
    .await
    .unwrap();
    // The Event follows the status write that counts the recreation.
    support::eventually("the ClaimRecreated Event", || async {
        !support::events_with_reason(&client, NS, "ClaimRecreated")
            .await
            .is_empty()
    })
    .await;
    let notes: Vec<String> = support::events_with_reason(&client, NS, "ClaimRecreated")
        .await
        .into_iter()
        .filter_map(|e| e.note)
        .collect();
    assert!(
        notes.len() == 1
            && notes[0].contains("experiments/stuck-main")
            && notes[0].contains("1 of 1"),
        "{notes:?}"
    );
    // No second recreation: the limit is reached (the new claim is older than the delay by
    // the time the test looks again).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let still = claims.get("stuck-main").await.unwrap();
    assert_eq!(still.metadata.uid, second.metadata.uid);
    // The new claim becomes Ready: the target is provisioned (its Application then stays
    // Progressing: the experiment's ready-seconds annotation scripts it too).
    claims
        .patch(
            "stuck-main",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"annotations": {"devcluster.io/ready-seconds": "0"}}}),
            ),
        )
        .await
        .unwrap();
    let e = wait_for(&client, "stuck", "target Ready", |e| {
        e.status
            .as_ref()
            .and_then(|s| s.targets.as_ref())
            .is_some_and(|t| t[0].phase.as_deref() == Some("Ready"))
    })
    .await;
    let t = &e.status.as_ref().unwrap().targets.as_ref().unwrap()[0];
    assert_eq!(t.claim_recreations, Some(1));
    assert_eq!(cond(&e, "Provisioned").unwrap().reason, "ClustersReady");
    op.stop().await.unwrap();
    env.stop().await;
}

/// Components resolve by name; an unknown one or a bad parameter is a condition naming it
/// (never a guessed path), and creating the Component lets the experiment proceed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn component_resolution_reports_and_recovers() {
    let env = Env::start().await;
    let client = env.client.clone();
    template(&client, "ok", "{}", false).await;
    let op = start_operator(&client, fast());
    experiment(&client, &exp_yaml("res", "hub", "ok", "workflow", "{}")).await;
    let e = wait_for(&client, "res", "ComponentNotFound", |e| {
        cond(e, "ComponentsHealthy").is_some_and(|c| c.reason == "ComponentNotFound")
    })
    .await;
    assert!(
        cond(&e, "ComponentsHealthy")
            .unwrap()
            .message
            .contains("Component \"web\" not found")
    );
    let apps = dynamic(&client, &argo("Application", "applications"), "argocd");
    assert!(apps.get_opt("res-main").await.unwrap().is_none());
    // A required parameter without a value.
    component(
        &client,
        "web",
        "app",
        "  parameters:\n  - {name: host, required: true}\n",
    )
    .await;
    let e = wait_for(&client, "res", "InvalidParameter", |e| {
        cond(e, "ComponentsHealthy").is_some_and(|c| c.reason == "InvalidParameter")
    })
    .await;
    assert!(
        cond(&e, "ComponentsHealthy")
            .unwrap()
            .message
            .contains("requires parameter \"host\"")
    );
    // Fixing the Component lets it run.
    let components = Api::<agentic_api::labs::Component>::all(client.clone());
    components
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"parameters": [{"name": "host", "default": "example.com"}]}}),
            ),
        )
        .await
        .unwrap();
    wait_phase(&client, "res", ExperimentPhase::Complete).await;
    op.stop().await.unwrap();
    env.stop().await;
}

/// Beads `jto` and `gfe`: a component reference's `namespace` and `targetRevision` and a
/// Component source's `namespace` reach the Application's sources (Helm sources get
/// `helm.namespace`, path sources `kustomize.namespace`, chart sources keep their version) and
/// Argo CD deploys into those namespaces. Bad values are refused by the API server, naming
/// the field, and nothing is created for them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn component_overrides_reach_the_application() {
    let env = Env::start().await;
    let client = env.client.clone();
    template(&client, "hold", "{}", true).await;
    component(&client, "web", "app", "").await;
    component(
        &client,
        "cache",
        "app",
        "  - repoURL: https://git.example/lab.git\n    path: k8s/db\n    namespace: cache-db\n",
    )
    .await;
    let op = start_operator(&client, fast());
    let yaml = exp_yaml("ovr", "hub", "hold", "workflow", "{}").replace(
        "    - app: web\n",
        "    - {app: web, namespace: shop}\n    - {app: cache, targetRevision: feature-x}\n",
    );
    experiment(&client, &yaml).await;
    let apps = dynamic(&client, &argo("Application", "applications"), "argocd");
    let app = wait_get(&apps, "ovr-main", "deployed resources", |a| {
        a.and_then(|a| a.data.pointer("/status/resources"))
            .and_then(Value::as_array)
            .is_some_and(|r| r.len() == 3)
    })
    .await
    .unwrap();
    assert_eq!(
        app.data["spec"]["sources"],
        json!([
            {"repoURL": "https://charts.example.com", "targetRevision": "1.0.0", "chart": "web",
             "helm": {"releaseName": "web", "namespace": "shop"}},
            {"repoURL": "https://charts.example.com", "targetRevision": "1.0.0", "chart": "cache",
             "helm": {"releaseName": "cache"}},
            {"repoURL": "https://git.example/lab.git", "targetRevision": "feature-x",
             "path": "k8s/db", "kustomize": {"namespace": "cache-db"}},
        ])
    );
    let deployed: Vec<(String, String)> = app.data["status"]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_owned(),
                r["namespace"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        deployed,
        [
            ("web".to_owned(), "shop".to_owned()),
            ("cache".to_owned(), "ovr".to_owned()),
            ("db".to_owned(), "cache-db".to_owned()),
        ]
    );
    wait_phase(&client, "ovr", ExperimentPhase::Running).await;

    // Bad values: refused at admission, naming the field; no Experiment is stored.
    let experiments = Api::<Experiment>::namespaced(client.clone(), NS);
    for (name, reference, field) in [
        ("bad-ns", "{app: web, namespace: Shop_1}", "namespace"),
        (
            "long-ns",
            &*format!("{{app: web, namespace: {}}}", "a".repeat(64)),
            "namespace",
        ),
        ("no-rev", "{app: web, targetRevision: ''}", "targetRevision"),
    ] {
        let yaml = exp_yaml(name, "hub", "hold", "workflow", "{}")
            .replace("    - app: web\n", &format!("    - {reference}\n"));
        let exp: Experiment = serde_yaml::from_str(&yaml).unwrap();
        let err = experiments
            .create(&PostParams::default(), &exp)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("spec.targets[0].components[0].{field}")),
            "{name}: {err}"
        );
        assert!(experiments.get_opt(name).await.unwrap().is_none());
    }
    let ar = ApiResource::erase::<agentic_api::labs::Component>(&());
    let bad: DynamicObject = serde_yaml::from_str(
        "apiVersion: experiments.illm.io/v1alpha1\nkind: Component\nmetadata: {name: bad}\nspec:\n  type: app\n  sources:\n  - {repoURL: https://git.example/lab.git, path: x, namespace: -x}\n",
    )
    .unwrap();
    let err = Api::<DynamicObject>::all_with(client.clone(), &ar)
        .create(&PostParams::default(), &bad)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("spec.sources[0].namespace"), "{err}");

    experiments
        .delete("ovr", &DeleteParams::default())
        .await
        .unwrap();
    wait_gone(&client, "ovr").await;
    op.stop().await.unwrap();
    env.stop().await;
}

/// Opens the Experiment CRD's spec schema to anything and creates Experiment `name` in [`NS`]
/// with `spec`, which our types may not read; returns the Experiment's API resource.
async fn loose_experiment(client: &Client, name: &str, spec: Value) -> ApiResource {
    let exp_ar = ApiResource::erase::<Experiment>(&());
    support::loosen_spec_schema_and_create(
        client,
        "experiments.experiments.illm.io",
        &exp_ar,
        Some(NS),
        json!({"apiVersion": "experiments.illm.io/v1alpha1", "kind": "Experiment",
            "metadata": {"name": name, "namespace": NS}, "spec": spec}),
    )
    .await;
    exp_ar
}

/// Objects stored under looser schemas than this operator's: an Experiment whose `targets` is
/// a number fails alone, with a Warning Event `InvalidObject` naming the field, and one whose
/// Component does not read is told so in `ComponentsHealthy` (`InvalidComponent`); the list
/// of the others goes on, and fixing the Component lets the lab run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_experiments_and_components_fail_alone() {
    let env = Env::start().await;
    let client = env.client.clone();
    template(&client, "ok", "{}", false).await;
    let exp_ar = loose_experiment(&client, "odd", json!({"targets": 3})).await;
    let comp_ar = ApiResource::erase::<agentic_api::labs::Component>(&());
    support::loosen_spec_schema_and_create(
        &client,
        "components.experiments.illm.io",
        &comp_ar,
        None,
        json!({"apiVersion": "experiments.illm.io/v1alpha1", "kind": "Component",
            "metadata": {"name": "web"}, "spec": {"type": "app", "sources": 3}}),
    )
    .await;
    experiment(&client, &exp_yaml("res", "hub", "ok", "workflow", "{}")).await;
    // Started after both exist, so its first lists hold them.
    let op = start_operator(&client, fast());
    let e = wait_for(&client, "res", "InvalidComponent", |e| {
        cond(e, "ComponentsHealthy").is_some_and(|c| c.reason == "InvalidComponent")
    })
    .await;
    let message = &cond(&e, "ComponentsHealthy").unwrap().message;
    assert!(
        message.contains("Component \"web\" does not match the expected schema (spec.sources"),
        "{message}"
    );
    let note = support::invalid_object_note(&client, NS, "odd").await;
    assert!(note.contains("spec.targets: invalid type"), "{note}");
    // A readable Component in its place lets the lab run.
    Api::<kube::api::DynamicObject>::all_with(client.clone(), &comp_ar)
        .delete("web", &kube::api::DeleteParams::default())
        .await
        .unwrap();
    component(&client, "web", "app", "").await;
    wait_phase(&client, "res", ExperimentPhase::Complete).await;
    let odd = support::get_object(&client, &exp_ar, NS, "odd")
        .await
        .unwrap();
    assert!(odd.get("status").is_none_or(Value::is_null), "{odd}");
    op.stop().await.unwrap();
    env.stop().await;
}

/// §6.1: upstream added its finalizer with a full typed `Update`, which dropped every spec
/// field its Go types did not know (`series`, `ttlDays`). Here a field no version of the
/// types knows (stored under a schema that keeps unknown fields) survives the finalizer,
/// every status write and the completion cleanup: the operator only ever patches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fields_the_operator_does_not_know_survive_its_writes() {
    let env = Env::start().await;
    let client = env.client.clone();
    catalogue(&client).await;
    template(&client, "ok", "{}", false).await;
    let exp_ar = loose_experiment(
        &client,
        "future",
        json!({
            "targets": [{"name": "main", "cluster": {"type": "hub"}, "components": [{"app": "web"}]}],
            "workflow": {"template": "ok", "completion": {"mode": "workflow"}},
            "futureField": {"kept": true},
        }),
    )
    .await;
    let op = start_operator(&client, fast());
    wait_for(&client, "future", "complete and cleaned", |e| {
        e.phase() == ExperimentPhase::Complete
            && e.status.as_ref().and_then(|s| s.resources_cleaned) == Some(true)
    })
    .await;
    let stored = support::get_object(&client, &exp_ar, NS, "future")
        .await
        .unwrap();
    assert_eq!(
        stored["spec"]["futureField"],
        json!({"kept": true}),
        "{stored}"
    );
    assert!(
        stored["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| f.iter().any(|f| f == "experiments.illm.io/finalizer")),
        "{stored}"
    );
    op.stop().await.unwrap();
    env.stop().await;
}

/// Unknown `depends` names and cycles are validation conditions, and so are Experiment names
/// that cannot name the Workflow or the components' namespace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_depends_is_reported() {
    let env = Env::start().await;
    let client = env.client.clone();
    let op = start_operator(&client, fast());
    let cyclic = TWO_TARGETS
        .replace("ANNOTATIONS", "{}")
        .replace("name: gw", "name: cyclic")
        .replace(
            "    observability: {enabled: true, transport: direct}\n",
            "    depends: [loadgen]\n",
        );
    experiment(&client, &cyclic).await;
    let e = wait_for(&client, "cyclic", "InvalidSpec", |e| {
        cond(e, "Ready").is_some_and(|c| c.reason == "InvalidSpec")
    })
    .await;
    assert!(
        cond(&e, "Ready").unwrap().message.contains("cycle"),
        "{:?}",
        cond(&e, "Ready")
    );
    assert_eq!(e.phase(), ExperimentPhase::Pending);
    // A dot is allowed in the Experiment's name but not in the namespace its components go
    // to; a name of 53 characters makes a Workflow name Argo refuses.
    let long = "l".repeat(53);
    for (name, expected) in [
        (
            "gw.v2",
            "metadata.name: \"gw.v2\" must be a lowercase DNS label",
        ),
        (long.as_str(), "the Workflow"),
    ] {
        experiment(
            &client,
            &TWO_TARGETS
                .replace("ANNOTATIONS", "{}")
                .replace("name: gw\n", &format!("name: {name}\n")),
        )
        .await;
        let e = wait_for(&client, name, "InvalidSpec", |e| {
            cond(e, "Ready").is_some_and(|c| c.reason == "InvalidSpec")
        })
        .await;
        let message = &cond(&e, "Ready").unwrap().message;
        assert!(message.contains(expected), "{message}");
        assert_eq!(e.phase(), ExperimentPhase::Pending);
    }
    let claims = dynamic(&client, &claim_ar("GKECluster", "gkeclusters"), NS);
    assert!(
        claims
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    op.stop().await.unwrap();
    env.stop().await;
}

/// Deleting an experiment in any phase removes its children and releases the finalizer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_in_every_phase_releases_the_finalizer() {
    let env = Env::start().await;
    let client = env.client.clone();
    catalogue(&client).await;
    template(
        &client,
        "long",
        "{devcluster.io/run-seconds: forever}",
        false,
    )
    .await;
    template(&client, "ok", "{}", false).await;
    let op = start_operator(&client, fast());
    experiment(
        &client,
        &exp_yaml(
            "provisioning",
            "gke",
            "ok",
            "workflow",
            "{devcluster.io/ready-seconds: forever}",
        ),
    )
    .await;
    experiment(
        &client,
        &exp_yaml(
            "deploying",
            "gke",
            "ok",
            "workflow",
            "{devcluster.io/health: Degraded}",
        ),
    )
    .await;
    experiment(
        &client,
        &exp_yaml("running", "gke", "long", "workflow", "{}"),
    )
    .await;
    experiment(&client, &exp_yaml("done", "hub", "ok", "workflow", "{}")).await;
    wait_for(&client, "provisioning", "Provisioning", |e| {
        e.phase() == ExperimentPhase::Provisioning && cond(e, "Provisioned").is_some()
    })
    .await;
    wait_for(&client, "deploying", "apps progressing", |e| {
        cond(e, "ComponentsHealthy").is_some_and(|c| c.message.contains("Degraded"))
    })
    .await;
    wait_phase(&client, "running", ExperimentPhase::Running).await;
    wait_phase(&client, "done", ExperimentPhase::Complete).await;
    let api: Api<Experiment> = Api::namespaced(client.clone(), NS);
    for name in ["provisioning", "deploying", "running", "done"] {
        api.delete(name, &DeleteParams::default()).await.unwrap();
    }
    for name in ["provisioning", "deploying", "running", "done"] {
        wait_gone(&client, name).await;
    }
    let claims = dynamic(&client, &claim_ar("GKECluster", "gkeclusters"), NS);
    assert!(
        claims
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    let apps = dynamic(&client, &argo("Application", "applications"), "argocd");
    assert!(
        apps.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    let workflows = dynamic(&client, &argo("Workflow", "workflows"), "argo-workflows");
    assert!(
        workflows
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "argocd");
    assert!(
        secrets
            .list(&ListParams::default().labels("argocd.argoproj.io/secret-type=cluster"))
            .await
            .unwrap()
            .items
            .is_empty()
    );
    op.stop().await.unwrap();
    env.stop().await;
}

/// Deletes Experiment `name` and waits until its cleanup reports `CleanupStuck`; returns the
/// `Ready` message.
async fn delete_until_cleanup_stuck(client: &Client, name: &str) -> String {
    Api::<Experiment>::namespaced(client.clone(), NS)
        .delete(name, &DeleteParams::default())
        .await
        .unwrap();
    let e = wait_for(client, name, "CleanupStuck", |e| {
        cond(e, "Ready").is_some_and(|c| c.reason == "CleanupStuck")
    })
    .await;
    cond(&e, "Ready").unwrap().message.clone()
}

/// Ends a scripted hang: sets the simulator `annotation` of claim `name` to `"false"`.
async fn unstick(claims: &Api<DynamicObject>, name: &str, annotation: &str) {
    claims
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {annotation: "false"}}})),
        )
        .await
        .unwrap();
}

/// A claim whose deletion hangs holds the finalizer and surfaces as a condition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stuck_claim_deletion_is_a_condition() {
    let env = Env::start().await;
    let client = env.client.clone();
    catalogue(&client).await;
    template(&client, "ok", "{}", false).await;
    let op = start_operator(&client, fast());
    experiment(
        &client,
        &exp_yaml(
            "stuck",
            "gke",
            "ok",
            "workflow",
            "{devcluster.io/stuck-deletion: 'true', devcluster.io/ready-seconds: forever}",
        ),
    )
    .await;
    let claims = dynamic(&client, &claim_ar("GKECluster", "gkeclusters"), NS);
    wait_get(&claims, "stuck-main", "claim created", |o| o.is_some()).await;
    let message = delete_until_cleanup_stuck(&client, "stuck").await;
    assert!(
        message.contains("claim experiments/stuck-main"),
        "{message}"
    );
    // Unsticking the claim lets the deletion finish.
    unstick(&claims, "stuck-main", "devcluster.io/stuck-deletion").await;
    wait_gone(&client, "stuck").await;
    op.stop().await.unwrap();
    env.stop().await;
}

/// Claims are deleted in the foreground (`spec.compositeDeletePolicy: Foreground`): a cloud
/// resource that cannot be deleted (a VPC network still in use) keeps the claim, so the cleanup
/// reports it as stuck and holds the Experiment's finalizer instead of finishing while the
/// network leaks. Under Crossplane's default (`Background`) the claim would go at once and
/// leave its composite behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_composite_that_cannot_be_deleted_holds_the_cleanup() {
    let env = Env::with_composites().await;
    let client = env.client.clone();
    catalogue(&client).await;
    template(&client, "ok", "{devcluster.io/run-seconds: forever}", false).await;
    let op = start_operator(&client, fast());
    experiment(
        &client,
        &exp_yaml(
            "leak",
            "gke",
            "ok",
            "workflow",
            "{devcluster.io/connection-secret: composite, devcluster.io/stuck-composite-deletion: 'true'}",
        ),
    )
    .await;
    let claims = dynamic(&client, &claim_ar("GKECluster", "gkeclusters"), NS);
    let claim = wait_get(&claims, "leak-main", "claim created", |o| o.is_some())
        .await
        .unwrap();
    assert_eq!(
        claim.data.pointer("/spec/compositeDeletePolicy"),
        Some(&json!("Foreground"))
    );
    let composites =
        Api::<DynamicObject>::all_with(client.clone(), &claim_ar("XGKECluster", "xgkeclusters"));
    wait_get(&composites, "leak-main-xr", "the composite", |o| {
        o.is_some()
    })
    .await;
    let message = delete_until_cleanup_stuck(&client, "leak").await;
    assert!(
        message.contains("claim experiments/leak-main") && message.contains("kubectl get managed"),
        "{message}"
    );
    let claim = claims.get("leak-main").await.unwrap();
    assert!(
        claim.metadata.deletion_timestamp.is_some(),
        "the claim is deleting"
    );
    let xr = composites.get("leak-main-xr").await.unwrap();
    assert!(
        xr.metadata.deletion_timestamp.is_some(),
        "its composite too"
    );
    // Once the cloud lets the network go, the claim, its composite and the Experiment go.
    unstick(
        &claims,
        "leak-main",
        "devcluster.io/stuck-composite-deletion",
    )
    .await;
    wait_gone(&client, "leak").await;
    assert!(composites.get_opt("leak-main-xr").await.unwrap().is_none());
    assert!(claims.get_opt("leak-main").await.unwrap().is_none());
    op.stop().await.unwrap();
    env.stop().await;
}

/// An Application whose deletion hangs (Argo CD down, a target that refuses deletes) does not
/// keep the clusters running: once it has been deleting for three times `cleanupStuckAfter`
/// (reported as stuck after one), the cleanup
/// goes on to the cluster Secrets and the claims, reports the Application as stuck, and keeps
/// the finalizer until it is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_application_does_not_keep_the_cluster() {
    let env = Env::start().await;
    let client = env.client.clone();
    catalogue(&client).await;
    template(
        &client,
        "gateway-validation",
        "{devcluster.io/run-seconds: forever}",
        false,
    )
    .await;
    let op = start_operator(&client, fast());
    experiment(&client, &TWO_TARGETS.replace("ANNOTATIONS", "{}")).await;
    let apps = dynamic(&client, &argo("Application", "applications"), "argocd");
    wait_get(&apps, "gw-app", "the app Application", |o| o.is_some()).await;
    let claims = dynamic(&client, &claim_ar("GKECluster", "gkeclusters"), NS);
    wait_get(&claims, "gw-app", "the claim", |o| o.is_some()).await;
    // Something other than Argo CD holds the Application (its resources finalizer alone is
    // removed by the simulated Argo CD at once).
    apps.patch(
        "gw-app",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": [
            "resources-finalizer.argocd.argoproj.io", "example.com/hold"]}})),
    )
    .await
    .unwrap();
    Api::<Experiment>::namespaced(client.clone(), NS)
        .delete("gw", &DeleteParams::default())
        .await
        .unwrap();
    // The cluster goes although the Application is still there.
    wait_get(&claims, "gw-app", "the claim deleted", |o| o.is_none()).await;
    let app = apps.get("gw-app").await.unwrap();
    assert!(app.metadata.deletion_timestamp.is_some());
    let e = wait_for(&client, "gw", "CleanupStuck", |e| {
        cond(e, "Ready").is_some_and(|c| c.reason == "CleanupStuck")
    })
    .await;
    let message = &cond(&e, "Ready").unwrap().message;
    assert!(message.contains("Application argocd/gw-app"), "{message}");
    assert!(!message.contains("claim"), "{message}");
    // The Experiment keeps its finalizer until the Application is gone too.
    apps.patch(
        "gw-app",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    wait_gone(&client, "gw").await;
    op.stop().await.unwrap();
    env.stop().await;
}

/// Upstream's GKE Composition declares no connection details: the claim's own connection
/// Secret gets no `kubeconfig`, which lives in the composite's
/// `crossplane-system/<composite>-cluster-conn`. The operator falls back to that Secret
/// (the composite named by the claim's `spec.resourceRef`), registers the cluster with Argo CD
/// and deploys the target's Application.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kubeconfig_is_read_from_the_composites_secret_when_the_claims_has_none() {
    let env = Env::with_composites().await;
    let client = env.client.clone();
    catalogue(&client).await;
    template(
        &client,
        "gateway-validation",
        "{devcluster.io/run-seconds: forever}",
        false,
    )
    .await;
    let op = start_operator(&client, fast());
    experiment(
        &client,
        &TWO_TARGETS.replace(
            "ANNOTATIONS",
            "{devcluster.io/connection-secret: composite}",
        ),
    )
    .await;
    let apps = dynamic(&client, &argo("Application", "applications"), "argocd");
    let app = wait_get(&apps, "gw-app", "the app Application", |o| o.is_some())
        .await
        .unwrap();
    let server = app
        .data
        .pointer("/spec/destination/server")
        .unwrap()
        .clone();
    // The claim's own Secret exists without the key; the composite's holds it.
    let claim = dynamic(&client, &claim_ar("GKECluster", "gkeclusters"), NS)
        .get("gw-app")
        .await
        .unwrap();
    assert_eq!(
        claim.data.pointer("/spec/resourceRef/name"),
        Some(&json!("gw-app-xr"))
    );
    let own = Api::<Secret>::namespaced(client.clone(), NS)
        .get("gw-app-conn")
        .await
        .unwrap();
    assert!(
        !own.data.unwrap_or_default().contains_key("kubeconfig"),
        "the claim's Secret has no kubeconfig in this mode"
    );
    let registration = Api::<Secret>::namespaced(client.clone(), "argocd")
        .get("cluster-gw-app")
        .await
        .unwrap();
    let data = registration.data.unwrap();
    assert_eq!(
        json!(String::from_utf8_lossy(&data["server"].0)),
        server,
        "the Application deploys to the registered cluster"
    );
    let config: Value = serde_json::from_slice(&data["config"].0).unwrap();
    assert!(
        config.pointer("/tlsClientConfig/certData").is_some(),
        "{config}"
    );
    op.stop().await.unwrap();
    env.stop().await;
}

/// A claim's spec can be edited by whoever may edit claims in its namespace, so its
/// `spec.resourceRef` is not trusted on its own: a claim naming another claim's composite
/// (whose `spec.claimRef` names that other claim) does not get that cluster's kubeconfig. The
/// reconcile fails with an Event saying why, and nothing is registered or deployed for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_naming_another_claims_composite_gets_no_kubeconfig() {
    let env = Env::with_composites().await;
    let client = env.client.clone();
    catalogue(&client).await;
    template(
        &client,
        "gateway-validation",
        "{devcluster.io/run-seconds: forever}",
        false,
    )
    .await;
    let op = start_operator(&client, fast());
    experiment(
        &client,
        &TWO_TARGETS.replace(
            "ANNOTATIONS",
            "{devcluster.io/connection-secret: composite}",
        ),
    )
    .await;
    let apps = dynamic(&client, &argo("Application", "applications"), "argocd");
    wait_get(
        &apps,
        "gw-app",
        "the honest Experiment's Application",
        |o| o.is_some(),
    )
    .await;
    // A second Experiment whose claim names the first one's composite.
    experiment(
        &client,
        &TWO_TARGETS.replace("name: gw", "name: thief").replace(
            "ANNOTATIONS",
            "{devcluster.io/connection-secret: composite, devcluster.io/resource-ref: gw-app-xr}",
        ),
    )
    .await;
    let note = event_note(&client, "ReconcileFailed", "thief-app-conn").await;
    assert!(
        note.contains("XGKECluster gw-app-xr") && note.contains("does not name this claim"),
        "{note}"
    );
    assert!(apps.get_opt("thief-app").await.unwrap().is_none());
    let registrations: Api<Secret> = Api::namespaced(client.clone(), "argocd");
    assert!(
        registrations
            .get_opt("cluster-thief-app")
            .await
            .unwrap()
            .is_none()
    );
    op.stop().await.unwrap();
    env.stop().await;
}

/// A Ready claim whose kubeconfig is in neither Secret is reported (a Warning Event naming both
/// Secrets) and retried; nothing is deployed to that target meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ready_claim_without_a_kubeconfig_is_reported_and_retried() {
    let env = Env::with_composites().await;
    let client = env.client.clone();
    catalogue(&client).await;
    template(
        &client,
        "gateway-validation",
        "{devcluster.io/run-seconds: forever}",
        false,
    )
    .await;
    // The composite's Secret exists without the key (the simulated Crossplane leaves an
    // existing Secret alone).
    Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone())
        .create(
            &kube::api::PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "crossplane-system"}})).unwrap(),
        )
        .await
        .unwrap();
    let composite = Api::<Secret>::namespaced(client.clone(), "crossplane-system");
    composite
        .create(
            &kube::api::PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "gw-app-xr-cluster-conn", "namespace": "crossplane-system"},
                "data": {"other": "eA=="}
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let op = start_operator(&client, fast());
    experiment(
        &client,
        &TWO_TARGETS.replace(
            "ANNOTATIONS",
            "{devcluster.io/connection-secret: composite}",
        ),
    )
    .await;
    let note = event_note(
        &client,
        "ReconcileFailed",
        "crossplane-system/gw-app-xr-cluster-conn",
    )
    .await;
    assert!(note.contains("experiments/gw-app-conn"), "{note}");
    let apps = dynamic(&client, &argo("Application", "applications"), "argocd");
    assert!(apps.get_opt("gw-app").await.unwrap().is_none());
    // Once the composite's Secret holds the kubeconfig, the retry deploys the target.
    let kubeconfig = devcluster::simulators::crossplane::kubeconfig("gw-app", "10.1.2.3");
    composite
        .patch(
            "gw-app-xr-cluster-conn",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"data": {"kubeconfig": k8s_openapi::ByteString(kubeconfig.into_bytes())}}),
            ),
        )
        .await
        .unwrap();
    wait_get(&apps, "gw-app", "the app Application", |o| o.is_some()).await;
    op.stop().await.unwrap();
    env.stop().await;
}

/// An Experiment that upstream's operator finished but never cleaned up (its cleanup could
/// stick or be skipped) still has that operator's children, which carry its labels but not
/// this operator's namespace label: its claim (in upstream's `experiments` namespace), the
/// `-infra` Application of a layered deployment, the cluster Secret and the Workflow. The
/// cleanup finds them by those labels and removes them, so no cluster keeps running after the
/// switch; another Experiment's objects stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::too_many_lines)] // the leftovers are built one by one
async fn upstream_leftovers_of_a_finished_experiment_are_cleaned_up() {
    let env = Env::start().await;
    let client = env.client.clone();
    catalogue(&client).await;
    template(&client, "ok", "{}", false).await;
    let upstream = |name: &str, ns: &str, ar: &ApiResource, labels: Value, spec: Value| {
        let mut o = DynamicObject::new(name, ar)
            .within(ns)
            .data(json!({"spec": spec}));
        o.metadata.labels = serde_json::from_value(labels).unwrap();
        o
    };
    let pp = PostParams::default();
    let claims = dynamic(&client, &claim_ar("GKECluster", "gkeclusters"), NS);
    claims
        .create(
            &pp,
            &upstream(
                "old-main",
                NS,
                &claim_ar("GKECluster", "gkeclusters"),
                json!({"app.kubernetes.io/managed-by": "experiment-operator",
                       "experiments.illm.io/cluster": "old-main"}),
                json!({"zone": "us-central1-a"}),
            ),
        )
        .await
        .unwrap();
    let apps = dynamic(&client, &argo("Application", "applications"), "argocd");
    for (name, experiment) in [("old-main-infra", "old"), ("other-main", "other")] {
        apps.create(
            &pp,
            &upstream(
                name,
                "argocd",
                &argo("Application", "applications"),
                json!({"app.kubernetes.io/managed-by": "experiment-operator",
                       "experiments.illm.io/experiment": experiment,
                       "experiments.illm.io/target": "main"}),
                json!({"project": "default", "destination": {"server": "https://10.0.0.1", "namespace": experiment}}),
            ),
        )
        .await
        .unwrap();
    }
    let workflows = dynamic(&client, &argo("Workflow", "workflows"), "argo-workflows");
    workflows
        .create(
            &pp,
            &upstream(
                "old-validation",
                "argo-workflows",
                &argo("Workflow", "workflows"),
                json!({"app.kubernetes.io/managed-by": "experiment-operator",
                       "experiments.illm.io/experiment": "old"}),
                json!({"workflowTemplateRef": {"name": "ok"}}),
            ),
        )
        .await
        .unwrap();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "argocd");
    secrets
        .create(
            &pp,
            &serde_json::from_value(json!({
                "metadata": {"name": "cluster-old-main", "namespace": "argocd", "labels": {
                    "argocd.argoproj.io/secret-type": "cluster",
                    "experiments.illm.io/cluster": "old-main"}},
                "stringData": {"name": "old-main", "server": "https://10.0.0.1"}
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    // The Experiment, finished under upstream's operator.
    experiment(&client, &exp_yaml("old", "gke", "ok", "workflow", "{}")).await;
    Api::<Experiment>::namespaced(client.clone(), NS)
        .patch_status(
            "old",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Complete"}})),
        )
        .await
        .unwrap();

    let op = start_operator(&client, fast());
    wait_for(&client, "old", "cleaned", |e| {
        e.status.as_ref().and_then(|s| s.resources_cleaned) == Some(true)
    })
    .await;
    assert!(
        claims.get_opt("old-main").await.unwrap().is_none(),
        "the cluster is gone"
    );
    assert!(apps.get_opt("old-main-infra").await.unwrap().is_none());
    assert!(workflows.get_opt("old-validation").await.unwrap().is_none());
    assert!(secrets.get_opt("cluster-old-main").await.unwrap().is_none());
    assert!(
        apps.get_opt("other-main").await.unwrap().is_some(),
        "another Experiment's Application stays"
    );
    op.stop().await.unwrap();
    env.stop().await;
}

/// The cleanup also looks for upstream's objects by the label value `<exp>-<target>`; a name
/// too long for a label value (possible for hub targets, which have no claim) is left out of
/// that selector instead of making the API server refuse every cleanup pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_finishes_when_a_target_name_cannot_be_a_label_value() {
    let env = Env::start().await;
    let client = env.client.clone();
    catalogue(&client).await;
    template(&client, "ok", "{}", false).await;
    let op = start_operator(&client, fast());
    let name = "a-rather-long-experiment-name-for-labels";
    let target = "a-hub-target-with-a-long-name-x";
    assert!(name.len() + 1 + target.len() > 63);
    experiment(
        &client,
        &exp_yaml(name, "hub", "ok", "workflow", "{}")
            .replace("- name: main", &format!("- name: {target}")),
    )
    .await;
    wait_for(&client, name, "complete and cleaned", |e| {
        e.status.as_ref().is_some_and(|s| {
            s.phase == Some(ExperimentPhase::Complete) && s.resources_cleaned == Some(true)
        })
    })
    .await;
    op.stop().await.unwrap();
    env.stop().await;
}

/// An operator restart mid-provisioning adopts the existing claim (same UID) and runs on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_mid_provisioning_creates_no_duplicate_claim() {
    let env = Env::start().await;
    let client = env.client.clone();
    catalogue(&client).await;
    template(
        &client,
        "long",
        "{devcluster.io/run-seconds: forever}",
        false,
    )
    .await;
    let op = start_operator(&client, fast());
    experiment(
        &client,
        &exp_yaml(
            "restart",
            "gke",
            "long",
            "workflow",
            "{devcluster.io/ready-seconds: '4'}",
        ),
    )
    .await;
    let claims = dynamic(&client, &claim_ar("GKECluster", "gkeclusters"), NS);
    let before = wait_get(&claims, "restart-main", "claim created", |o| o.is_some())
        .await
        .unwrap();
    op.stop().await.unwrap();
    let op = start_operator(&client, fast());
    wait_phase(&client, "restart", ExperimentPhase::Running).await;
    let after = claims.get("restart-main").await.unwrap();
    assert_eq!(before.uid(), after.uid());
    assert_eq!(
        claims
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    Api::<Experiment>::namespaced(client.clone(), NS)
        .delete("restart", &DeleteParams::default())
        .await
        .unwrap();
    wait_gone(&client, "restart").await;
    assert!(claims.get_opt("restart-main").await.unwrap().is_none());
    op.stop().await.unwrap();
    env.stop().await;
}

/// The cluster-type mapping is configuration: here `gke` maps to a `VCluster` claim in the
/// `clusters` namespace, and the experiment runs on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_type_mapping_is_configurable() {
    let env = Env::start().await;
    let client = env.client.clone();
    catalogue(&client).await;
    template(
        &client,
        "long",
        "{devcluster.io/run-seconds: forever}",
        false,
    )
    .await;
    let mut config = fast();
    let mut vcluster = config.cluster_types["vcluster"].clone();
    vcluster.namespace = Some("clusters".into());
    vcluster.fields.insert("nodeCount".into(), "workers".into());
    config.cluster_types.insert("gke".into(), vcluster);
    let op = start_operator(&client, config);
    experiment(&client, &exp_yaml("vc", "gke", "long", "workflow", "{}")).await;
    let claims = dynamic(&client, &claim_ar("VCluster", "vclusters"), "clusters");
    let claim = wait_get(&claims, "vc-main", "VCluster claim", |o| o.is_some())
        .await
        .unwrap();
    assert_eq!(
        claim.data.pointer("/spec/writeConnectionSecretToRef/name"),
        Some(&json!("vc-main-conn"))
    );
    let workflows = dynamic(&client, &argo("Workflow", "workflows"), "argo-workflows");
    wait_get(&workflows, "vc-validation", "workflow submitted", |o| {
        o.is_some()
    })
    .await;
    workflows
        .patch(
            "vc-validation",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"devcluster.io/run-seconds": "0"}}})),
        )
        .await
        .unwrap();
    let e = wait_phase(&client, "vc", ExperimentPhase::Complete).await;
    let t = &e.status.as_ref().unwrap().targets.as_ref().unwrap()[0];
    assert_eq!(t.cluster_name.as_deref(), Some("vc-main"));
    assert_eq!(t.kubeconfig_secret.as_deref(), Some("vc-main-conn"));
    wait_for(&client, "vc", "cleaned", |e| {
        e.status.as_ref().and_then(|s| s.resources_cleaned) == Some(true)
    })
    .await;
    assert!(claims.get_opt("vc-main").await.unwrap().is_none());
    op.stop().await.unwrap();
    env.stop().await;
}

/// A target with nothing to deploy counts as healthy (upstream blocked on it forever), and
/// status follows target names when `spec.targets` is edited (upstream matched by index).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_targets_are_healthy_and_status_follows_names() {
    let env = Env::start().await;
    let client = env.client.clone();
    catalogue(&client).await;
    template(
        &client,
        "long",
        "{devcluster.io/run-seconds: forever}",
        false,
    )
    .await;
    let op = start_operator(&client, fast());
    experiment(
        &client,
        r"
apiVersion: experiments.illm.io/v1alpha1
kind: Experiment
metadata: {name: edits, namespace: experiments}
spec:
  targets:
  - name: a
    cluster: {type: hub}
  - name: b
    cluster: {type: hub}
    components: [{app: web}]
  workflow: {template: long, completion: {mode: workflow}}
",
    )
    .await;
    let names = |e: &Experiment| -> Vec<String> {
        e.status
            .as_ref()
            .and_then(|s| s.targets.as_ref())
            .map(|t| t.iter().map(|t| t.name.clone()).collect())
            .unwrap_or_default()
    };
    let e = wait_phase(&client, "edits", ExperimentPhase::Running).await;
    assert_eq!(names(&e), ["a", "b"]);
    let a = &e.status.as_ref().unwrap().targets.as_ref().unwrap()[0];
    assert_eq!(a.apps_created, Some(true));
    Api::<Experiment>::namespaced(client.clone(), NS)
        .patch(
            "edits",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"targets": [
                {"name": "b", "cluster": {"type": "hub"}, "components": [{"app": "web"}]},
                {"name": "c", "cluster": {"type": "hub"}},
            ]}})),
        )
        .await
        .unwrap();
    let e = wait_for(&client, "edits", "status renamed", |e| {
        names(e) == ["b", "c"]
    })
    .await;
    let targets = e.status.as_ref().unwrap().targets.clone().unwrap();
    assert_eq!(targets[0].phase.as_deref(), Some("Ready"));
    assert_eq!(
        targets[0].components.as_deref(),
        Some(&["Deployment/web".to_owned()][..])
    );
    Api::<Experiment>::namespaced(client.clone(), NS)
        .delete("edits", &DeleteParams::default())
        .await
        .unwrap();
    wait_gone(&client, "edits").await;
    op.stop().await.unwrap();
    env.stop().await;
}

/// Many two-target experiments at once (zero simulator delays) all converge to Complete and
/// are cleaned up: watches, not polling, drive them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_experiments_converge() {
    const COUNT: usize = 40;
    let env = Env::start().await;
    let client = env.client.clone();
    catalogue(&client).await;
    template(&client, "quick", "{devcluster.io/run-seconds: '0'}", false).await;
    let op = start_operator(&client, fast());
    for i in 0..COUNT {
        let yaml = TWO_TARGETS
            .replace("name: gw", &format!("name: many-{i}"))
            .replace(
                "ANNOTATIONS",
                "{devcluster.io/ready-seconds: '0', devcluster.io/run-seconds: '0'}",
            )
            .replace("template: gateway-validation", "template: quick");
        experiment(&client, &yaml).await;
    }
    let api: Api<Experiment> = Api::namespaced(client.clone(), NS);
    let deadline = tokio::time::Instant::now() + Duration::from_mins(3);
    loop {
        let list = api.list(&ListParams::default()).await.unwrap();
        let done = list
            .items
            .iter()
            .filter(|e| {
                e.phase() == ExperimentPhase::Complete
                    && e.status.as_ref().and_then(|s| s.resources_cleaned) == Some(true)
            })
            .count();
        if done == COUNT {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{done}/{COUNT} complete; phases: {:?}",
            list.items.iter().map(Experiment::phase).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let claims = dynamic(&client, &claim_ar("GKECluster", "gkeclusters"), NS);
    assert!(
        claims
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    op.stop().await.unwrap();
    env.stop().await;
}

/// Claim kinds no experiment uses may be missing from the cluster (upstream clusters only have
/// `GKECluster`): gke experiments still run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unused_claim_kinds_may_be_missing() {
    let env = Env::start_with(&[
        "claim-gkecluster.yaml",
        "argocd-application.yaml",
        "argo-workflow.yaml",
        "argo-workflowtemplate.yaml",
    ])
    .await;
    let client = env.client.clone();
    catalogue(&client).await;
    template(&client, "ok", "{}", false).await;
    let op = start_operator(&client, fast());
    experiment(&client, &exp_yaml("onlygke", "gke", "ok", "workflow", "{}")).await;
    wait_for(&client, "onlygke", "complete and cleaned", |e| {
        e.phase() == ExperimentPhase::Complete
            && e.status.as_ref().and_then(|s| s.resources_cleaned) == Some(true)
    })
    .await;
    op.stop().await.unwrap();
    env.stop().await;
}
