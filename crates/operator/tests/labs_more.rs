//! More of the labs Experiment controller against devcluster with the simulated Crossplane,
//! Argo CD and Argo Workflows: the shipped example end to end (the seed's acceptance list),
//! every cluster type, tutorial kubeconfigs and services, fields accepted but not acted on,
//! refused claims, namesakes in two namespaces, the `--labs-*` flags and `--legacy-watch`,
//! what is written on provisioned clusters (other targets' kubeconfigs, the Tailscale OAuth
//! Secret, on a second dev cluster), plus the CRD rows of the upstream bug list.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use agentic_api::labs::{Experiment, ExperimentPhase};
use agentic_operator::labs::{Labs, LabsConfig};
use devcluster::{
    AdmissionHook,
    hooks::{AdmissionRequest, Operation},
    simulators::Simulators,
};
use futures::{StreamExt, future::BoxFuture};
use k8s_openapi::api::core::v1::{Namespace, Secret, Service};
use kube::{
    Api, Client, ResourceExt,
    api::{
        DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams, WatchEvent,
        WatchParams,
    },
    discovery::ApiResource,
};
use serde_json::{Value, json};
use support::{
    Operator, ScriptChildren, ScriptSource, Setup, TestCluster, api_resource, create_yaml, dynamic,
    find_condition, settings_for, wait_get, wait_until,
};

/// Namespace of the Experiments.
const NS: &str = "experiments";
/// Experiment annotation that makes the admission hook refuse the Experiment's claims.
const REJECT: &str = "labs.test/reject-claims";

fn owning_experiment(_request: &AdmissionRequest<'_>, object: &Value) -> Option<ScriptSource> {
    let labels = &object["metadata"]["labels"];
    Some(ScriptSource {
        group: "experiments.illm.io".into(),
        resource: "experiments".into(),
        namespace: labels["experiments.illm.io/namespace"].as_str()?.to_owned(),
        name: labels["experiments.illm.io/experiment"]
            .as_str()?
            .to_owned(),
    })
}

/// Refuses the creation of claims whose Experiment carries [`REJECT`] (its value is the
/// message), as a quota or policy webhook would.
struct RejectClaims;

impl AdmissionHook for RejectClaims {
    fn admit<'a>(
        &'a self,
        request: &'a AdmissionRequest<'a>,
        object: &'a mut Value,
    ) -> BoxFuture<'a, Result<(), devcluster::ApiError>> {
        Box::pin(async move {
            if request.operation != Operation::Create
                || !matches!(request.kind, "GKECluster" | "TalosCluster" | "VCluster")
            {
                return Ok(());
            }
            let Some(src) = owning_experiment(request, object) else {
                return Ok(());
            };
            let exp = request
                .cluster
                .get(&src.group, &src.resource, &src.namespace, &src.name);
            match exp
                .as_ref()
                .and_then(|e| e["metadata"]["annotations"][REJECT].as_str())
            {
                Some(message) => Err(devcluster::ApiError::forbidden(message.to_owned())),
                None => Ok(()),
            }
        })
    }
}

async fn start_env(extra_namespaces: &[&str]) -> TestCluster {
    start_env_with(extra_namespaces, None).await
}

/// [`start_env`] whose simulated clusters' kubeconfigs point at `cluster_server` (a URL and a
/// token), e.g. a second dev cluster standing in for the provisioned clusters.
async fn start_env_with(
    extra_namespaces: &[&str],
    cluster_server: Option<(String, String)>,
) -> TestCluster {
    let mut setup = Setup::new()
        .admission(ScriptChildren {
            kinds: &["GKECluster", "TalosCluster", "VCluster", "Application"],
            source: owning_experiment,
            defaults: &[],
        })
        .admission(RejectClaims)
        .crds(agentic_api::labs::GROUP);
    for f in [
        "claim-gkecluster.yaml",
        "claim-taloscluster.yaml",
        "claim-vcluster.yaml",
        "argocd-application.yaml",
        "argo-workflow.yaml",
        "argo-workflowtemplate.yaml",
    ] {
        setup = setup.fixture(&format!("labs/{f}"));
    }
    for ns in [NS, "argocd", "argo-workflows", "monitoring", "clusters"]
        .iter()
        .chain(extra_namespaces)
    {
        setup = setup.namespace(ns, &[]);
    }
    setup
        .simulators(Simulators {
            crossplane: true,
            argocd: true,
            argo_workflows: true,
            cluster_server,
            ..Simulators::none()
        })
        .start()
        .await
}

/// A second, plain dev cluster standing in for the provisioned clusters, and the
/// `cluster_server` pointing at it.
async fn target_cluster() -> (TestCluster, Option<(String, String)>) {
    let target = Setup::new().start().await;
    let server = Some((target.url(), "any-token".to_owned()));
    (target, server)
}

/// A second dev cluster standing in for every provisioned cluster, the lab environment whose
/// claims point at it (with the test catalogue and a `WorkflowTemplate` named `long` that runs until
/// released), its client and the operator.
async fn with_target_cluster() -> (TestCluster, TestCluster, Client, Operator) {
    let (target, server) = target_cluster().await;
    let env = start_env_with(&[], server).await;
    let client = env.client();
    catalogue(&client).await;
    template(&client, "long", "{devcluster.io/run-seconds: forever}").await;
    let op = start_operator(&client, fast());
    (target, env, client, op)
}

/// The hub's Tailscale OAuth Secret, as `examples/labs/tailscale-oauth.yaml` ships it.
async fn tailscale_oauth(client: &Client) {
    for doc in serde_yaml::Deserializer::from_str(&example("tailscale-oauth.yaml")) {
        let value: Value = serde::Deserialize::deserialize(doc).unwrap();
        let ar = if value["kind"] == "Namespace" {
            api_resource("", "v1", "Namespace", "namespaces")
        } else {
            api_resource("", "v1", "Secret", "secrets")
        };
        let ns = value["metadata"]["namespace"].as_str().map(str::to_owned);
        create_yaml(
            client,
            &ar,
            ns.as_deref(),
            &serde_yaml::to_string(&value).unwrap(),
        )
        .await;
    }
}

fn fast() -> LabsConfig {
    LabsConfig {
        cleanup_stuck_after: Duration::from_secs(2),
        ..LabsConfig::default()
    }
}

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

fn component_ar() -> ApiResource {
    ApiResource::erase::<agentic_api::labs::Component>(&())
}

async fn component(client: &Client, name: &str, type_: &str) {
    let yaml = format!(
        "apiVersion: experiments.illm.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\nspec:\n  type: {type_}\n  sources:\n  - repoURL: https://charts.example.com\n    chart: {name}\n    targetRevision: 1.0.0\n    helm:\n      releaseName: {name}\n"
    );
    create_yaml(client, &component_ar(), None, &yaml).await;
}

async fn catalogue(client: &Client) {
    for (name, type_) in [
        ("web", "app"),
        ("metrics-egress", "config"),
        ("metrics-agent", "app"),
    ] {
        component(client, name, type_).await;
    }
}

async fn template(client: &Client, name: &str, annotations: &str) {
    let yaml = format!(
        "apiVersion: argoproj.io/v1alpha1\nkind: WorkflowTemplate\nmetadata:\n  name: {name}\n  annotations: {annotations}\nspec:\n  entrypoint: main\n  templates:\n  - name: main\n    container: {{image: alpine:3.19}}\n"
    );
    create_yaml(
        client,
        &argo("WorkflowTemplate", "workflowtemplates"),
        Some("argo-workflows"),
        &yaml,
    )
    .await;
}

async fn experiment_in(client: &Client, ns: &str, yaml: &str) {
    let exp: Experiment = serde_yaml::from_str(yaml).unwrap();
    Api::<Experiment>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &exp)
        .await
        .unwrap();
}

async fn experiment(client: &Client, yaml: &str) {
    experiment_in(client, NS, yaml).await;
}

fn experiments(client: &Client) -> Api<Experiment> {
    Api::namespaced(client.clone(), NS)
}

async fn wait_for(
    client: &Client,
    name: &str,
    what: &str,
    check: impl Fn(&Experiment) -> bool,
) -> Experiment {
    wait_until(&experiments(client), name, what, check).await
}

async fn wait_phase(client: &Client, name: &str, phase: ExperimentPhase) -> Experiment {
    wait_for(client, name, phase.as_str(), |e| e.phase() == phase).await
}

async fn wait_cleaned(client: &Client, name: &str) -> Experiment {
    wait_for(client, name, "resources cleaned", |e| {
        e.status.as_ref().and_then(|s| s.resources_cleaned) == Some(true)
    })
    .await
}

async fn delete_and_wait(client: &Client, name: &str) {
    experiments(client)
        .delete(name, &DeleteParams::default())
        .await
        .unwrap();
    support::wait_gone(&experiments(client), name).await;
}

fn cond<'a>(
    e: &'a Experiment,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    find_condition(e.status.as_ref()?.conditions.as_deref(), type_)
}

async fn release_workflow(client: &Client, name: &str) {
    dynamic(client, &argo("Workflow", "workflows"), "argo-workflows")
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"devcluster.io/run-seconds": "0"}}})),
        )
        .await
        .unwrap();
}

async fn names(api: &Api<DynamicObject>, selector: &str) -> Vec<String> {
    api.list(&ListParams::default().labels(selector))
        .await
        .unwrap()
        .items
        .iter()
        .map(ResourceExt::name_any)
        .collect()
}

fn example(file: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/../../examples/labs/{file}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

async fn event_reasons(client: &Client, object: &str) -> Vec<(String, String)> {
    support::event_reasons(client, NS, object).await
}

/// The seed's acceptance list on the shipped example, applied verbatim: `kubectl apply` of
/// `examples/labs/gateway-tutorial.yaml` requests a GKE cluster; the app target runs on it
/// and the load generator on the hub after it (multi-target with `depends`); every Component
/// is found by name; the cluster is registered with Argo CD and the Applications deployed; a
/// Grafana datasource is created; the Workflow completes the experiment; everything is
/// removed afterwards. Also: children carry the short `experiment` label the upstream
/// diagnostics select on (§6.27), and the hub namespace the load generator deploys into is
/// created with upstream's labels and removed with the experiment (§6.20).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::too_many_lines)] // one scenario, checked step by step
async fn gateway_tutorial_example_runs_end_to_end() {
    let (target, server) = target_cluster().await;
    let env = start_env_with(&[], server).await;
    let client = env.client();
    tailscale_oauth(&client).await;
    for doc in serde_yaml::Deserializer::from_str(&example("components.yaml")) {
        let value: Value = serde::Deserialize::deserialize(doc).unwrap();
        create_yaml(
            &client,
            &component_ar(),
            None,
            &serde_yaml::to_string(&value).unwrap(),
        )
        .await;
    }
    // The example template as shipped, held running until the checks below are done.
    let mut wt: Value = serde_yaml::from_str(&example("workflowtemplate.yaml")).unwrap();
    wt["metadata"]["annotations"] = json!({"devcluster.io/run-seconds": "forever"});
    create_yaml(
        &client,
        &argo("WorkflowTemplate", "workflowtemplates"),
        Some("argo-workflows"),
        &serde_yaml::to_string(&wt).unwrap(),
    )
    .await;
    let op = start_operator(&client, fast());
    experiment(&client, &example("gateway-tutorial.yaml")).await;

    let claims = dynamic(&client, &claim_ar("GKECluster", "gkeclusters"), NS);
    let claim = wait_get(&claims, "gateway-tutorial-app", "GKE claim", |o| {
        o.is_some()
    })
    .await
    .unwrap();
    for (field, value) in [
        ("zone", json!("us-central1-a")),
        ("nodeCount", json!(2)),
        ("machineType", json!("e2-medium")),
        ("preemptible", json!(true)),
        ("diskSizeGb", json!(50)),
    ] {
        assert_eq!(claim.data["spec"][field], value, "{field}");
    }
    let e = wait_phase(&client, "gateway-tutorial", ExperimentPhase::Running).await;
    let targets = e.status.as_ref().unwrap().targets.clone().unwrap();
    assert_eq!(targets[0].name, "app");
    assert_eq!(targets[0].phase.as_deref(), Some("Ready"));
    assert_eq!(targets[0].node_count, Some(2));
    assert!(targets[0].endpoint.is_some());
    assert_eq!(targets[1].cluster_name.as_deref(), Some("hub"));
    // The tutorial block: the app cluster's kubeconfig for labctl, the service listed.
    assert_eq!(
        targets[0].kubeconfig_secret.as_deref(),
        Some("gateway-tutorial-app-kubeconfig")
    );
    let ns_secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
    assert!(
        ns_secrets
            .get_opt("gateway-tutorial-app-kubeconfig")
            .await
            .unwrap()
            .is_some()
    );
    let services = e
        .status
        .as_ref()
        .and_then(|s| s.tutorial_status.as_ref())
        .and_then(|t| t.services.clone())
        .unwrap();
    assert_eq!(
        (services[0].name.as_str(), services[0].ready),
        ("demo", Some(false))
    );

    let apps = dynamic(&client, &argo("Application", "applications"), "argocd");
    let app = apps.get("gateway-tutorial-app").await.unwrap();
    let charts_or_paths: Vec<String> = app.data["spec"]["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            s["chart"]
                .as_str()
                .or_else(|| s["path"].as_str())
                .unwrap_or("ref")
                .to_owned()
        })
        .collect();
    assert!(
        charts_or_paths.contains(&"gateway-helm".to_owned()),
        "{charts_or_paths:?}"
    );
    assert!(
        charts_or_paths.contains(&"components/apps/demo-services".to_owned()),
        "{charts_or_paths:?}"
    );
    // transport: tailscale on the GKE target: the Tailscale operator is deployed there without
    // OAuth values (§6.22), its credentials copied onto the target cluster beforehand.
    assert!(
        charts_or_paths.contains(&"tailscale-operator".to_owned()),
        "{charts_or_paths:?}"
    );
    let rendered = app.data["spec"].to_string();
    assert!(!rendered.contains("client_secret") && !rendered.contains("clientSecret"));
    let copied: Api<Secret> = Api::namespaced(target.client(), "gateway-tutorial");
    let copied = copied.get("operator-oauth").await.unwrap();
    let hub_secret: Api<Secret> = Api::namespaced(client.clone(), "tailscale");
    assert_eq!(
        copied.data,
        hub_secret.get("operator-oauth").await.unwrap().data
    );
    let loadgen = apps.get("gateway-tutorial-loadgen").await.unwrap();
    // §6.21: no Tailscale operator on the hub target.
    assert!(!loadgen.data["spec"].to_string().contains("tailscale"));
    assert_eq!(
        loadgen.data["spec"]["destination"]["server"],
        json!("https://kubernetes.default.svc")
    );
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "argocd");
    assert!(
        secrets
            .get_opt("cluster-gateway-tutorial-app")
            .await
            .unwrap()
            .is_some()
    );
    let cms: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(client.clone(), "monitoring");
    let ds = cms
        .get("lab-experiments-gateway-tutorial-datasource")
        .await
        .unwrap();
    assert_eq!(ds.labels()["grafana_datasource"], "1");
    let workflows = dynamic(&client, &argo("Workflow", "workflows"), "argo-workflows");
    let wf = workflows.get("gateway-tutorial-validation").await.unwrap();
    let params: Vec<&str> = wf.data["spec"]["arguments"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(params.contains(&"app-endpoint") && params.contains(&"experiment-name"));

    // §6.27: `kubectl get gkeclusters,applications,workflows -l experiment=<name>` finds them.
    let short = "experiment=gateway-tutorial";
    assert_eq!(names(&claims, short).await, ["gateway-tutorial-app"]);
    assert_eq!(
        names(&apps, short).await,
        ["gateway-tutorial-app", "gateway-tutorial-loadgen"]
    );
    assert_eq!(
        names(&workflows, short).await,
        ["gateway-tutorial-validation"]
    );
    // §6.20: the hub namespace of the hub target's Application, labelled as upstream did
    // (Pod Security privileged) and as this Experiment's.
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let hub_ns = namespaces.get("gateway-tutorial").await.unwrap();
    let labels = hub_ns.labels();
    assert_eq!(labels["pod-security.kubernetes.io/enforce"], "privileged");
    assert_eq!(
        labels["pod-security.kubernetes.io/enforce-version"],
        "latest"
    );
    assert_eq!(
        labels["app.kubernetes.io/managed-by"],
        "experiment-operator"
    );
    assert_eq!(labels["experiments.illm.io/namespace"], NS);

    release_workflow(&client, "gateway-tutorial-validation").await;
    let e = wait_cleaned(&client, "gateway-tutorial").await;
    assert_eq!(e.phase(), ExperimentPhase::Complete);
    assert!(
        claims
            .get_opt("gateway-tutorial-app")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        cms.get_opt("lab-experiments-gateway-tutorial-datasource")
            .await
            .unwrap()
            .is_none()
    );
    // §6.20: upstream never deleted it.
    assert!(
        namespaces
            .get_opt("gateway-tutorial")
            .await
            .unwrap()
            .is_none()
    );
    delete_and_wait(&client, "gateway-tutorial").await;
    op.stop().await.unwrap();
    env.shutdown().await;
    target.shutdown().await;
}

/// §6.20, the hub namespace `<experiment>`: created only for an Experiment whose hub target
/// deploys something, and deleted at cleanup only when this Experiment created it. A namespace
/// of that name the user already had is used as it is and kept; an Experiment of the same
/// name in another namespace fails with a message naming the owner instead of deploying into
/// (and later deleting) the first one's namespace; a GKE-only Experiment creates none; while a
/// namespace of the name is still being deleted, the hub target's Application waits
/// (`HubNamespaceTerminating`) and is written once it is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::too_many_lines)] // one scenario, checked step by step
async fn the_hub_namespace_is_removed_only_when_the_experiment_created_it() {
    let env = start_env(&["team-b"]).await;
    let client = env.client();
    catalogue(&client).await;
    template(&client, "long", "{devcluster.io/run-seconds: forever}").await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let mut mine = Namespace::default();
    mine.metadata.name = Some("mine".into());
    mine.metadata.labels = Some([("team".to_owned(), "a".to_owned())].into());
    namespaces
        .create(&PostParams::default(), &mine)
        .await
        .unwrap();
    let op = start_operator(&client, fast());
    let yaml = |name: &str, ns: &str, target: &str, cluster: &str| {
        format!(
            "apiVersion: experiments.illm.io/v1alpha1\nkind: Experiment\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  targets: [{{name: {target}, cluster: {{type: {cluster}}}, components: [{{app: web}}]}}]\n  workflow: {{template: long, completion: {{mode: workflow}}}}\n"
        )
    };
    experiment(&client, &yaml("hubby", NS, "main", "hub")).await;
    experiment(&client, &yaml("mine", NS, "main", "hub")).await;
    experiment(&client, &yaml("gkeonly", NS, "main", "gke")).await;
    for name in ["hubby", "mine", "gkeonly"] {
        wait_phase(&client, name, ExperimentPhase::Running).await;
    }
    let created = namespaces.get("hubby").await.unwrap();
    assert_eq!(created.labels()["experiments.illm.io/experiment"], "hubby");
    assert_eq!(
        created.labels()["pod-security.kubernetes.io/enforce"],
        "privileged"
    );
    // The user's namespace is not relabelled.
    let kept = namespaces.get("mine").await.unwrap();
    assert_eq!(kept.labels().get("experiments.illm.io/experiment"), None);
    assert_eq!(kept.labels()["team"], "a");
    assert!(namespaces.get_opt("gkeonly").await.unwrap().is_none());

    // A namesake in team-b with a hub target of another name: its Application would not
    // collide, its hub namespace is hubby's.
    experiment_in(&client, "team-b", &yaml("hubby", "team-b", "other", "hub")).await;
    let team_b: Api<Experiment> = Api::namespaced(client.clone(), "team-b");
    let failed = wait_until(&team_b, "hubby", "Failed", |e| {
        e.phase() == ExperimentPhase::Failed
    })
    .await;
    let provisioned = cond(&failed, "Provisioned").unwrap();
    assert!(
        provisioned
            .message
            .contains("hub namespace hubby belongs to Experiment experiments/hubby"),
        "{provisioned:?}"
    );
    let apps = dynamic(&client, &argo("Application", "applications"), "argocd");
    assert_eq!(
        names(&apps, "experiments.illm.io/namespace=team-b").await,
        Vec::<String>::new()
    );
    // Its cleanup leaves hubby's namespace alone.
    wait_until(&team_b, "hubby", "cleaned", |e| {
        e.status.as_ref().and_then(|s| s.resources_cleaned) == Some(true)
    })
    .await;
    assert!(namespaces.get_opt("hubby").await.unwrap().is_some());

    // A namespace of the name still being deleted (a ConfigMap with a finalizer holds it):
    // the hub target's Application waits, and is written once the namespace is gone.
    let mut held = Namespace::default();
    held.metadata.name = Some("held".into());
    namespaces
        .create(&PostParams::default(), &held)
        .await
        .unwrap();
    let holder: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(client.clone(), "held");
    let mut cm = k8s_openapi::api::core::v1::ConfigMap::default();
    cm.metadata.name = Some("holder".into());
    cm.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    holder.create(&PostParams::default(), &cm).await.unwrap();
    namespaces
        .delete("held", &DeleteParams::default())
        .await
        .unwrap();
    experiment(&client, &yaml("held", NS, "main", "hub")).await;
    let waiting = wait_for(&client, "held", "waiting for the hub namespace", |e| {
        cond(e, "ComponentsHealthy").is_some_and(|c| c.reason == "HubNamespaceTerminating")
    })
    .await;
    assert!(
        cond(&waiting, "ComponentsHealthy")
            .unwrap()
            .message
            .contains("hub namespace held is being deleted"),
        "{waiting:?}"
    );
    assert!(
        event_reasons(&client, "held")
            .await
            .iter()
            .any(|(_, reason)| reason == "HubNamespaceTerminating")
    );
    // Later passes while the target waits (two forced by touching the Experiment) do not
    // publish the Warning again: a repeat would be counted in the Event's series.
    for touch in ["1", "2"] {
        let passes = || op.reconciles("labexperiment");
        let before = passes();
        Api::<Experiment>::namespaced(client.clone(), NS)
            .patch(
                "held",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {"test/touch": touch}}})),
            )
            .await
            .unwrap();
        support::eventually("another reconcile of the held Experiment", || async {
            passes() > before
        })
        .await;
    }
    let warnings = support::events_with_reason(&client, NS, "HubNamespaceTerminating").await;
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].series.is_none(),
        "published again: {warnings:?}"
    );
    assert!(apps.get_opt("held-main").await.unwrap().is_none());
    holder
        .patch(
            "holder",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();
    wait_phase(&client, "held", ExperimentPhase::Running).await;
    let recreated = namespaces.get("held").await.unwrap();
    assert_eq!(recreated.labels()["experiments.illm.io/experiment"], "held");

    for name in ["hubby", "mine", "gkeonly", "held"] {
        release_workflow(&client, &format!("{name}-validation")).await;
        wait_cleaned(&client, name).await;
    }
    assert!(namespaces.get_opt("hubby").await.unwrap().is_none());
    let kept = namespaces.get("mine").await.unwrap();
    assert!(kept.metadata.deletion_timestamp.is_none());
    assert!(namespaces.get_opt("gkeonly").await.unwrap().is_none());
    op.stop().await.unwrap();
    env.shutdown().await;
}

/// Each cluster type provisions through its own claim kind (gke → `GKECluster`, talos →
/// `TalosCluster`, vcluster → `VCluster`, hub → nothing) and is registered with Argo CD;
/// each provisioned cluster gets the other targets' kubeconfigs; the experiment completes on
/// all four and every claim is removed (§6.33).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::too_many_lines)] // one scenario, checked step by step
async fn every_cluster_type_runs() {
    let (target, env, client, op) = with_target_cluster().await;
    experiment(
        &client,
        r"
apiVersion: experiments.illm.io/v1alpha1
kind: Experiment
metadata: {name: kinds, namespace: experiments}
spec:
  targets:
  - {name: g, cluster: {type: gke}, components: [{app: web}]}
  - {name: t, cluster: {type: talos, nodeCount: 3}, components: [{app: web}]}
  - {name: v, cluster: {type: vcluster}, components: [{app: web}]}
  - {name: h, cluster: {type: hub}, components: [{app: web}]}
  workflow: {template: long, completion: {mode: workflow}}
",
    )
    .await;
    let e = wait_phase(&client, "kinds", ExperimentPhase::Running).await;
    let kinds = [
        ("kinds-g", claim_ar("GKECluster", "gkeclusters")),
        ("kinds-t", claim_ar("TalosCluster", "talosclusters")),
        ("kinds-v", claim_ar("VCluster", "vclusters")),
    ];
    for (name, ar) in &kinds {
        let claim = dynamic(&client, ar, NS).get(name).await.unwrap();
        assert_eq!(
            claim.data["spec"]["writeConnectionSecretToRef"]["name"],
            json!(format!("{name}-conn"))
        );
    }
    assert_eq!(
        dynamic(&client, &kinds[1].1, NS)
            .get("kinds-t")
            .await
            .unwrap()
            .data["spec"]["nodeCount"],
        json!(3)
    );
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "argocd");
    let registered: Vec<String> = secrets
        .list(&ListParams::default().labels("argocd.argoproj.io/secret-type=cluster"))
        .await
        .unwrap()
        .items
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    assert_eq!(
        registered,
        ["cluster-kinds-g", "cluster-kinds-t", "cluster-kinds-v"]
    );
    // Each provisioned target's cluster holds the other targets' kubeconfigs (here the three
    // "clusters" are one second dev cluster, so it holds all three).
    let copies: Api<Secret> = Api::namespaced(target.client(), "kinds");
    let connections: Api<Secret> = Api::namespaced(client.clone(), NS);
    for peer in ["g", "t", "v"] {
        let copy = copies
            .get(&format!("{peer}-cluster-kubeconfig"))
            .await
            .unwrap();
        let connection = connections
            .get(&format!("kinds-{peer}-conn"))
            .await
            .unwrap();
        assert_eq!(
            copy.data.as_ref().unwrap()["kubeconfig"],
            connection.data.as_ref().unwrap()["kubeconfig"],
            "{peer}"
        );
        assert_eq!(copy.labels()["experiments.illm.io/peer"], peer);
    }
    let targets = e.status.as_ref().unwrap().targets.clone().unwrap();
    // §6.15: status reports the effective machine type and node count, defaults included.
    assert_eq!(
        (targets[0].machine_type.as_deref(), targets[0].node_count),
        (Some("e2-medium"), Some(1))
    );
    assert_eq!(targets[1].node_count, Some(3));
    let phases: Vec<(&str, Option<&str>)> = targets
        .iter()
        .map(|t| (t.name.as_str(), t.phase.as_deref()))
        .collect();
    assert_eq!(
        phases,
        [
            ("g", Some("Ready")),
            ("t", Some("Ready")),
            ("v", Some("Ready")),
            ("h", Some("Ready"))
        ]
    );
    release_workflow(&client, "kinds-validation").await;
    wait_cleaned(&client, "kinds").await;
    for (name, ar) in &kinds {
        assert!(
            dynamic(&client, ar, NS)
                .get_opt(name)
                .await
                .unwrap()
                .is_none()
        );
    }
    delete_and_wait(&client, "kinds").await;
    op.stop().await.unwrap();
    env.shutdown().await;
    target.shutdown().await;
}

/// `tutorial.exposeKubeconfig` copies each provisioned target's kubeconfig into
/// `<exp>-<target>-kubeconfig` (owned by the Experiment, labelled for `labctl`) and lists it in
/// `status.tutorialStatus.kubeconfigSecrets`; `tutorial.services` on the hub are resolved to
/// their address as it appears, services on provisioned targets are reported not ready; the
/// Secrets are removed at cleanup. A service naming an unknown target is an invalid spec.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::too_many_lines)] // one scenario, checked step by step
async fn tutorial_kubeconfigs_and_services() {
    let env = start_env(&[]).await;
    let client = env.client();
    catalogue(&client).await;
    template(&client, "long", "{devcluster.io/run-seconds: forever}").await;
    let services: Api<Service> = Api::namespaced(client.clone(), "monitoring");
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "grafana"},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 3000}]},
    }))
    .unwrap();
    services.create(&PostParams::default(), &svc).await.unwrap();
    let op = start_operator(&client, fast());
    experiment(
        &client,
        r"
apiVersion: experiments.illm.io/v1alpha1
kind: Experiment
metadata: {name: tut, namespace: experiments}
spec:
  tutorial:
    path: tutorial.yaml
    exposeKubeconfig: true
    services:
    - {name: grafana, target: hub, service: grafana, namespace: monitoring}
    - {name: demo, target: app, service: demo, namespace: demo, port: 80}
  targets:
  - {name: app, cluster: {type: gke}, components: [{app: web}]}
  - {name: hub, cluster: {type: hub}}
  workflow: {template: long, completion: {mode: workflow}}
",
    )
    .await;
    let e = wait_for(&client, "tut", "tutorial services reported", |e| {
        e.status
            .as_ref()
            .and_then(|s| s.tutorial_status.as_ref())
            .and_then(|t| t.services.as_ref())
            .is_some()
    })
    .await;
    let exp_uid = e.uid().unwrap();
    let tutorial = e.status.as_ref().unwrap().tutorial_status.clone().unwrap();
    assert_eq!(
        tutorial.kubeconfig_secrets.unwrap()["app"],
        "tut-app-kubeconfig"
    );
    let app = &e.status.as_ref().unwrap().targets.as_ref().unwrap()[0];
    assert_eq!(app.kubeconfig_secret.as_deref(), Some("tut-app-kubeconfig"));
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
    let exposed = secrets.get("tut-app-kubeconfig").await.unwrap();
    let conn = secrets.get("tut-app-conn").await.unwrap();
    assert_eq!(
        exposed.data.as_ref().unwrap()["kubeconfig"],
        conn.data.as_ref().unwrap()["kubeconfig"]
    );
    assert_eq!(exposed.labels()["experiment"], "tut");
    assert_eq!(exposed.labels()["target"], "app");
    let owner = &exposed.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str()),
        ("Experiment", exp_uid.as_str())
    );
    // The hub Service has no address yet; the app target's is left to labctl.
    let by_name = |e: &Experiment, n: &str| {
        e.status
            .as_ref()
            .and_then(|s| s.tutorial_status.as_ref())
            .and_then(|t| t.services.as_ref())
            .and_then(|s| s.iter().find(|x| x.name == n).cloned())
    };
    let grafana = by_name(&e, "grafana").unwrap();
    assert_eq!((grafana.ready, grafana.endpoint), (Some(false), None));
    let demo = by_name(&e, "demo").unwrap();
    assert_eq!((demo.ready, demo.endpoint), (Some(false), None));
    // The load balancer gets an address: it shows up without any other change.
    services
        .patch_status(
            "grafana",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"loadBalancer": {"ingress": [{"ip": "34.1.2.3"}]}}})),
        )
        .await
        .unwrap();
    let e = wait_for(&client, "tut", "grafana ready", |e| {
        by_name(e, "grafana").is_some_and(|g| g.ready == Some(true))
    })
    .await;
    assert_eq!(
        by_name(&e, "grafana").unwrap().endpoint.as_deref(),
        Some("http://34.1.2.3:3000")
    );

    release_workflow(&client, "tut-validation").await;
    wait_cleaned(&client, "tut").await;
    assert!(
        secrets
            .get_opt("tut-app-kubeconfig")
            .await
            .unwrap()
            .is_none()
    );
    delete_and_wait(&client, "tut").await;

    // A service naming an unknown target: InvalidSpec naming the field, nothing created.
    experiment(
        &client,
        r"
apiVersion: experiments.illm.io/v1alpha1
kind: Experiment
metadata: {name: badtut, namespace: experiments}
spec:
  tutorial:
    services: [{name: x, target: nowhere, service: x, namespace: default}]
  targets: [{name: app, cluster: {type: gke}}]
  workflow: {template: long, completion: {mode: workflow}}
",
    )
    .await;
    let e = wait_for(&client, "badtut", "InvalidSpec", |e| {
        cond(e, "Ready").is_some_and(|c| c.reason == "InvalidSpec")
    })
    .await;
    assert!(
        cond(&e, "Ready")
            .unwrap()
            .message
            .contains("spec.tutorial.services[0].target: \"nowhere\""),
        "{:?}",
        cond(&e, "Ready")
    );
    let claims = dynamic(&client, &claim_ar("GKECluster", "gkeclusters"), NS);
    assert!(claims.get_opt("badtut-app").await.unwrap().is_none());
    delete_and_wait(&client, "badtut").await;
    op.stop().await.unwrap();
    env.shutdown().await;
}

const EVERYTHING: &str = r"
apiVersion: experiments.illm.io/v1alpha1
kind: Experiment
metadata: {name: full, namespace: experiments}
spec:
  title: Every upstream field
  series: gateway
  ttlDays: 3
  tags: [gateway, demo]
  publish: true
  metrics:
  - {name: p99, query: 'histogram_quantile(0.99, rate(x[${DURATION}]))', type: range, unit: s}
  qualityGate: {enabled: true, maxIterations: 2}
  hypothesis:
    claim: the gateway is faster
    successCriteria: [{metric: p99, operator: lt, value: '0.5'}]
  analyzerConfig: {sections: [abstract, glossary]}
  codeSnippets:
    main: {name: main, language: go, path: main.go}
  targets:
  - name: main
    cluster: {type: hub}
    components: [{app: web}]
    observability: {enabled: true, transport: tailscale, tenant: lab}
  workflow: {template: long, completion: {mode: workflow}}
";

/// YAML written for the upstream operator, with every field it knows, is accepted unchanged;
/// the fields this operator does not act on (publishing, metrics, quality gate, hypothesis,
/// analyzer, code snippets, Tailscale) are named in an `UnsupportedFields` condition and a
/// Warning Event, and the experiment still runs. No Tailscale operator (and no OAuth secret)
/// lands in the Application (§6.21, §6.22); YAML-only fields survive (§6.1). Dropping the
/// fields clears the condition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fields_not_acted_on_are_accepted_with_a_warning() {
    let env = start_env(&[]).await;
    let client = env.client();
    catalogue(&client).await;
    template(&client, "long", "{devcluster.io/run-seconds: forever}").await;
    let op = start_operator(&client, fast());
    experiment(&client, EVERYTHING).await;
    let e = wait_phase(&client, "full", ExperimentPhase::Running).await;
    let c = cond(&e, "UnsupportedFields").expect("UnsupportedFields condition");
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("True", "FieldsIgnored")
    );
    for field in [
        "spec.publish",
        "spec.metrics",
        "spec.qualityGate",
        "spec.hypothesis",
        "spec.analyzerConfig",
        "spec.codeSnippets",
    ] {
        assert!(
            c.message.contains(field),
            "{field} missing from {}",
            c.message
        );
    }
    assert!(
        event_reasons(&client, "full")
            .await
            .contains(&("Warning".to_owned(), "FieldsIgnored".to_owned()))
    );
    // Spec fields the Go types lacked are still there.
    assert_eq!(e.spec.series.as_deref(), Some("gateway"));
    assert_eq!(e.spec.ttl_days, Some(3));
    // The Tailscale transport is acted on, so it is not listed; its target is the hub, which
    // gets no Tailscale operator and no credentials (§6.21, §6.22).
    assert!(!c.message.contains("transport"), "{}", c.message);
    let app = dynamic(&client, &argo("Application", "applications"), "argocd")
        .get("full-main")
        .await
        .unwrap();
    let rendered = app.data["spec"].to_string();
    assert!(!rendered.contains("tailscale"), "{rendered}");
    assert!(!rendered.contains("clientSecret"), "{rendered}");
    // Nothing claims results were published or stored.
    let s = e.status.as_ref().unwrap();
    assert_eq!((s.published, s.results_url.as_deref()), (None, None));

    // Narrowed to `publish` only, then removed: the condition follows.
    experiments(&client)
        .patch(
            "full",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {
                "metrics": null, "qualityGate": null, "hypothesis": null,
                "analyzerConfig": null, "codeSnippets": null,
                "targets": [{"name": "main", "cluster": {"type": "hub"}, "components": [{"app": "web"}]}],
            }})),
        )
        .await
        .unwrap();
    wait_for(&client, "full", "only publish left", |e| {
        cond(e, "UnsupportedFields").is_some_and(|c| {
            c.message.contains("spec.publish") && !c.message.contains("spec.metrics")
        })
    })
    .await;
    experiments(&client)
        .patch(
            "full",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"publish": false}})),
        )
        .await
        .unwrap();
    wait_for(&client, "full", "condition cleared", |e| {
        cond(e, "UnsupportedFields").is_none()
    })
    .await;
    release_workflow(&client, "full-validation").await;
    wait_cleaned(&client, "full").await;
    delete_and_wait(&client, "full").await;
    op.stop().await.unwrap();
    env.shutdown().await;
}

/// A claim the API server refuses is retried with backoff and reported in `Provisioned`
/// (reason `ClaimRejected`, the server's message); once accepted the experiment proceeds
/// (§6.6: upstream never retried and sat in Provisioning without a condition).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_claim_is_reported_and_retried() {
    let env = start_env(&[]).await;
    let client = env.client();
    catalogue(&client).await;
    template(&client, "ok", "{}").await;
    let op = start_operator(&client, fast());
    experiment(
        &client,
        &format!(
            r"
apiVersion: experiments.illm.io/v1alpha1
kind: Experiment
metadata:
  name: refused
  namespace: experiments
  annotations: {{{REJECT}: 'quota policy: no more GKE clusters in this project'}}
spec:
  targets: [{{name: app, cluster: {{type: gke}}, components: [{{app: web}}]}}]
  workflow: {{template: ok, completion: {{mode: workflow}}}}
"
        ),
    )
    .await;
    let e = wait_for(&client, "refused", "ClaimRejected", |e| {
        cond(e, "Provisioned").is_some_and(|c| c.reason == "ClaimRejected")
    })
    .await;
    let c = cond(&e, "Provisioned").unwrap();
    assert!(
        c.message.contains("no more GKE clusters") && c.message.contains("refused-app"),
        "{c:?}"
    );
    assert_eq!(e.phase(), ExperimentPhase::Provisioning);
    experiments(&client)
        .patch(
            "refused",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {REJECT: null}}})),
        )
        .await
        .unwrap();
    wait_phase(&client, "refused", ExperimentPhase::Complete).await;
    wait_cleaned(&client, "refused").await;
    delete_and_wait(&client, "refused").await;
    op.stop().await.unwrap();
    env.shutdown().await;
}

/// A claim refused for longer than the provisioning timeout (counted from the Experiment's
/// creation) fails its target with the server's message instead of retrying forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_refused_past_the_timeout_fails_the_target() {
    let env = start_env(&[]).await;
    let client = env.client();
    template(&client, "ok", "{}").await;
    let op = start_operator(
        &client,
        LabsConfig {
            provisioning_timeout: Duration::from_secs(2),
            ..fast()
        },
    );
    experiment(
        &client,
        &format!(
            r"
apiVersion: experiments.illm.io/v1alpha1
kind: Experiment
metadata:
  name: denied
  namespace: experiments
  annotations: {{{REJECT}: 'project quota: 0 clusters left'}}
spec:
  targets: [{{name: app, cluster: {{type: gke}}}}]
  workflow: {{template: ok, completion: {{mode: workflow}}}}
"
        ),
    )
    .await;
    let e = wait_phase(&client, "denied", ExperimentPhase::Failed).await;
    let c = cond(&e, "Provisioned").unwrap();
    assert_eq!(c.reason, "ProvisioningFailed");
    assert!(
        c.message.contains("0 clusters left") && c.message.contains("provisioning timeout"),
        "{c:?}"
    );
    wait_cleaned(&client, "denied").await;
    delete_and_wait(&client, "denied").await;
    op.stop().await.unwrap();
    env.shutdown().await;
}

/// Experiments of the same name in two namespaces get separate claims, each in its own
/// namespace (§6.26: upstream put every claim in `experiments` under `<exp>-<target>`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namesakes_in_two_namespaces_get_separate_claims() {
    let env = start_env(&["team-b"]).await;
    let client = env.client();
    template(&client, "ok", "{}").await;
    let op = start_operator(&client, fast());
    let yaml = |ns: &str| {
        format!(
            "apiVersion: experiments.illm.io/v1alpha1\nkind: Experiment\nmetadata:\n  name: same\n  namespace: {ns}\n  annotations: {{devcluster.io/ready-seconds: forever}}\nspec:\n  targets: [{{name: app, cluster: {{type: gke}}}}]\n  workflow: {{template: ok, completion: {{mode: workflow}}}}\n"
        )
    };
    experiment_in(&client, NS, &yaml(NS)).await;
    experiment_in(&client, "team-b", &yaml("team-b")).await;
    let ar = claim_ar("GKECluster", "gkeclusters");
    let a = wait_get(&dynamic(&client, &ar, NS), "same-app", "claim a", |o| {
        o.is_some()
    })
    .await
    .unwrap();
    let b = wait_get(
        &dynamic(&client, &ar, "team-b"),
        "same-app",
        "claim b",
        |o| o.is_some(),
    )
    .await
    .unwrap();
    assert_ne!(a.uid(), b.uid());
    assert_eq!(a.labels()["experiments.illm.io/namespace"], NS);
    assert_eq!(b.labels()["experiments.illm.io/namespace"], "team-b");
    for ns in [NS, "team-b"] {
        let api: Api<Experiment> = Api::namespaced(client.clone(), ns);
        api.delete("same", &DeleteParams::default()).await.unwrap();
        support::wait_gone(&api, "same").await;
    }
    op.stop().await.unwrap();
    env.shutdown().await;
}

/// `--labs-config` and `--labs-provisioning-timeout` configure the family built from the
/// runtime settings (the binary's default): the file maps `gke` claims into namespace
/// `clusters`, and the flag's timeout (over the file's) fails a claim that never becomes Ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labs_flags_configure_the_family() {
    let env = start_env(&[]).await;
    let client = env.client();
    template(&client, "ok", "{}").await;
    let dir = std::env::temp_dir().join(format!("labs-flags-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("labs.yaml");
    std::fs::write(
        &file,
        "provisioningTimeoutSeconds: 3600\nclusterTypes:\n  gke:\n    apiVersion: illm.io/v1alpha1\n    kind: GKECluster\n    plural: gkeclusters\n    namespace: clusters\n    fields: {zone: zone}\n    defaults: {zone: europe-west4-a}\n",
    )
    .unwrap();
    let settings = settings_for(
        "labs",
        &[
            ("POD_NAME", "labs-test"),
            ("LABS_PROVISIONING_TIMEOUT_SECONDS", "3600"),
        ],
        |a| {
            a.labs_config = Some(file.clone());
            a.labs_provisioning_timeout = Some(Duration::from_secs(3));
        },
    );
    assert_eq!(
        settings.labs.provisioning_timeout,
        Some(Duration::from_secs(3))
    );
    let op = Operator::start_with(
        client.clone(),
        settings,
        vec![Box::new(Labs::from_settings())],
    );
    // Watched from before the Experiment exists: the claim lives only until the short
    // timeout fails its target, which a test that gets the CPU late could miss by polling.
    let claims = dynamic(&client, &claim_ar("GKECluster", "gkeclusters"), "clusters");
    let watch = claims.watch(&WatchParams::default(), "0").await.unwrap();
    experiment(
        &client,
        r"
apiVersion: experiments.illm.io/v1alpha1
kind: Experiment
metadata:
  name: flags
  namespace: experiments
  annotations: {devcluster.io/fail-message: 'zone europe-west4-a has no capacity'}
spec:
  targets: [{name: app, cluster: {type: gke}}]
  workflow: {template: ok, completion: {mode: workflow}}
",
    )
    .await;
    let mut watch = std::pin::pin!(watch);
    let claim = tokio::time::timeout(support::DEADLINE, async {
        loop {
            match watch.next().await {
                Some(Ok(WatchEvent::Added(o))) if o.name_any() == "flags-app" => break o,
                Some(Ok(_)) => {}
                other => panic!("the claim watch ended: {other:?}"),
            }
        }
    })
    .await
    .expect("the claim flags-app in namespace clusters");
    assert_eq!(claim.data["spec"]["zone"], json!("europe-west4-a"));
    let e = wait_phase(&client, "flags", ExperimentPhase::Failed).await;
    let c = cond(&e, "Provisioned").unwrap();
    assert!(
        c.message.contains("provisioning timeout") && c.message.contains("no capacity"),
        "{c:?}"
    );
    delete_and_wait(&client, "flags").await;
    op.stop().await.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    env.shutdown().await;
}

/// A labs configuration file that does not parse stops the operator at start-up with a
/// message naming the file and the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_labs_config_stops_the_operator() {
    let env = start_env(&[]).await;
    let dir = std::env::temp_dir().join(format!("labs-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("labs.yaml");
    std::fs::write(&file, "provisioningTimeout: 20m\n").unwrap();
    let settings = settings_for("labs", &[("POD_NAME", "labs-test")], |a| {
        a.labs_config = Some(file.clone());
    });
    let op = Operator::start_with(
        env.client(),
        settings,
        vec![Box::new(Labs::from_settings())],
    );
    let result = tokio::time::timeout(support::DEADLINE, op.task)
        .await
        .expect("the operator stops by itself")
        .unwrap();
    let message = result.unwrap_err().to_string();
    assert!(
        message.contains("labs.yaml") && message.contains("provisioningTimeout"),
        "{message}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
    env.shutdown().await;
}

/// With `--legacy-watch` the labs controller still runs (its child watches and deadlines are
/// needed), reconciling one Experiment at a time: a provisioned experiment reaches Complete
/// through the Workflow's watch event and is cleaned up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_watch_still_runs_labs() {
    let env = start_env(&[]).await;
    let client = env.client();
    catalogue(&client).await;
    template(&client, "ok", "{devcluster.io/run-seconds: '1'}").await;
    let settings = settings_for("labs", &[("POD_NAME", "labs-test")], |a| {
        a.legacy_watch = true;
    });
    assert!(settings.legacy_watch);
    let op = Operator::start_with(client.clone(), settings, vec![Box::new(Labs::new(fast()))]);
    experiment(
        &client,
        r"
apiVersion: experiments.illm.io/v1alpha1
kind: Experiment
metadata: {name: legacy, namespace: experiments}
spec:
  targets: [{name: app, cluster: {type: gke}, components: [{app: web}]}]
  workflow: {template: ok, completion: {mode: workflow}}
",
    )
    .await;
    let e = wait_cleaned(&client, "legacy").await;
    assert_eq!(e.phase(), ExperimentPhase::Complete);
    delete_and_wait(&client, "legacy").await;
    op.stop().await.unwrap();
    env.shutdown().await;
}

/// §6.2: the Component CRD is shipped with the Experiment CRD (kustomize and the bundle).
#[test]
fn component_crd_is_shipped() {
    let root = format!("{}/../..", env!("CARGO_MANIFEST_DIR"));
    let kustomization =
        std::fs::read_to_string(format!("{root}/config/crd/kustomization.yaml")).unwrap();
    assert!(kustomization.contains("bases/experiments.illm.io_components.yaml"));
    let bundle = std::fs::read_to_string(format!("{root}/dist/install.yaml")).unwrap();
    assert!(bundle.contains("name: components.experiments.illm.io"));
}

/// §6.4 and §6.5: the Component `Sources` column prints repository URLs (upstream: an integer
/// over an array), and `status.phase` carries its enum once (upstream: twice, in an `allOf`).
#[test]
fn printer_columns_and_phase_schema_are_sound() {
    let crds = agentic_api::crds::all();
    let component = crds
        .iter()
        .find(|c| c.metadata.name.as_deref() == Some("components.experiments.illm.io"))
        .unwrap();
    let columns = component.spec.versions[0]
        .additional_printer_columns
        .clone()
        .unwrap();
    let sources = columns.iter().find(|c| c.name == "Sources").unwrap();
    assert_eq!(
        (sources.type_.as_str(), sources.json_path.as_str()),
        ("string", ".spec.sources[*].repoURL")
    );
    let experiment = crds
        .iter()
        .find(|c| c.metadata.name.as_deref() == Some("experiments.experiments.illm.io"))
        .unwrap();
    let schema = serde_json::to_value(
        experiment.spec.versions[0]
            .schema
            .as_ref()
            .unwrap()
            .open_api_v3_schema
            .as_ref()
            .unwrap(),
    )
    .unwrap();
    let phase = &schema["properties"]["status"]["properties"]["phase"];
    assert!(phase.get("allOf").is_none(), "{phase}");
    assert_eq!(
        phase["enum"],
        json!([
            "Pending",
            "Provisioning",
            "Ready",
            "Running",
            "Complete",
            "Failed"
        ])
    );
}

/// The `config/labs` kustomize component mounts the labs `ConfigMap` into the operator and names
/// it with `LABS_CONFIG_FILE`; the shipped `ConfigMap` parses as a labs configuration.
#[test]
fn labs_configmap_component_mounts_the_configuration() {
    let root = std::path::PathBuf::from(format!("{}/../..", env!("CARGO_MANIFEST_DIR")))
        .canonicalize()
        .unwrap();
    let overlay = root.join(format!("target/labs-overlay-{}", std::process::id()));
    std::fs::create_dir_all(&overlay).unwrap();
    std::fs::write(
        overlay.join("kustomization.yaml"),
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [../../config/default]\ncomponents: [../../config/labs]\n",
    )
    .unwrap();
    let kubectl = std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".into());
    let output = std::process::Command::new(&kubectl)
        .arg("kustomize")
        .arg(&overlay)
        .output()
        .expect("kubectl (with built-in kustomize) on PATH or in KUBECTL");
    std::fs::remove_dir_all(&overlay).unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let docs: Vec<Value> =
        serde_yaml::Deserializer::from_str(&String::from_utf8(output.stdout).unwrap())
            .map(|d| serde::Deserialize::deserialize(d).unwrap())
            .collect();
    let deployment = docs
        .iter()
        .find(|d| d["kind"] == "Deployment" && d["metadata"]["name"] == "agentic-operator")
        .unwrap();
    let pod = &deployment["spec"]["template"]["spec"];
    let manager = pod["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "manager")
        .unwrap();
    let env_value = manager["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "LABS_CONFIG_FILE")
        .unwrap()["value"]
        .as_str()
        .unwrap()
        .to_owned();
    let mount = manager["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "labs-config")
        .unwrap();
    assert!(env_value.starts_with(mount["mountPath"].as_str().unwrap()));
    let volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "labs-config")
        .unwrap();
    let cm_name = volume["configMap"]["name"].as_str().unwrap();
    let cm = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == cm_name)
        .unwrap();
    assert_eq!(
        cm["metadata"]["namespace"],
        deployment["metadata"]["namespace"]
    );
    let file = env_value.rsplit('/').next().unwrap();
    let config = LabsConfig::from_yaml("configmap", cm["data"][file].as_str().unwrap()).unwrap();
    assert_eq!(config.provisioning_timeout, Duration::from_mins(20));
}

/// Every shipped cluster-type mapping has an example XRD in `config/labs` that fits it: the
/// claim names, group and version match, every mapped field is in the claim's spec, the
/// kubeconfig key is a connection Secret key and `status.endpoint` exists (the XRD contract).
#[test]
fn example_xrds_fit_the_shipped_mappings() {
    for (type_, mapping) in LabsConfig::default().cluster_types {
        let path = format!(
            "{}/../../config/labs/xrd-{}.yaml",
            env!("CARGO_MANIFEST_DIR"),
            mapping.kind.to_lowercase()
        );
        let xrd: Value = serde_yaml::from_str(
            &std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{type_}: {path}: {e}")),
        )
        .unwrap();
        let spec = &xrd["spec"];
        assert_eq!(spec["group"], mapping.group(), "{type_}");
        assert_eq!(spec["claimNames"]["kind"], mapping.kind.as_str(), "{type_}");
        assert_eq!(
            spec["claimNames"]["plural"],
            mapping.plural.as_str(),
            "{type_}"
        );
        assert!(
            spec["connectionSecretKeys"]
                .as_array()
                .unwrap()
                .contains(&json!(mapping.kubeconfig_key)),
            "{type_}"
        );
        let version = spec["versions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == mapping.version())
            .unwrap_or_else(|| panic!("{type_}: no version {}", mapping.version()));
        let schema = &version["schema"]["openAPIV3Schema"]["properties"];
        for field in mapping.fields.values() {
            assert!(
                schema["spec"]["properties"].get(field).is_some(),
                "{type_}: spec.{field} missing from {path}"
            );
        }
        assert!(
            schema["status"]["properties"].get("endpoint").is_some(),
            "{type_}"
        );
    }
}

/// Waits until `name`'s Application is held back with `ComponentsHealthy` reason `reason`;
/// returns the Experiment and the condition's message.
/// Waits for claim `name` of kind `ar` in the experiments namespace, then lets the simulated
/// Crossplane make it Ready at once (for experiments created with `ready-seconds: forever`).
async fn make_ready(client: &Client, ar: &ApiResource, name: &str) {
    let claims = dynamic(client, ar, NS);
    wait_get(&claims, name, "claim", |o| o.is_some()).await;
    claims
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"annotations": {"devcluster.io/ready-seconds": "0"}}}),
            ),
        )
        .await
        .unwrap();
}

async fn held_back(client: &Client, name: &str, reason: &str) -> (Experiment, String) {
    let held = wait_for(client, name, reason, |e| {
        cond(e, "ComponentsHealthy").is_some_and(|c| c.reason == reason)
    })
    .await;
    let message = cond(&held, "ComponentsHealthy").unwrap().message.clone();
    (held, message)
}

/// Provisioned targets with nothing to deploy are still registered with Argo CD and get each
/// other's kubeconfigs, as upstream (before, they were skipped): a target waits for the
/// other cluster like one with components, the experiment goes `Running` once both are
/// registered, no Application is created for them, the status records `clusterRegistered`
/// (not for the hub), and the cleanup removes the registrations.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::too_many_lines)] // one scenario, checked step by step
async fn provisioned_targets_without_components_are_registered() {
    let (target, env, client, op) = with_target_cluster().await;
    experiment(
        &client,
        r"
apiVersion: experiments.illm.io/v1alpha1
kind: Experiment
metadata:
  name: bare
  namespace: experiments
  annotations: {devcluster.io/ready-seconds: forever}
spec:
  targets:
  - {name: first, cluster: {type: gke}}
  - {name: second, cluster: {type: vcluster}}
  - {name: local, cluster: {type: hub}}
  workflow: {template: long, completion: {mode: workflow}}
",
    )
    .await;
    let registered = |e: &Experiment| -> Vec<(String, Option<bool>)> {
        e.status
            .as_ref()
            .and_then(|s| s.targets.as_ref())
            .map(|t| {
                t.iter()
                    .map(|t| (t.name.clone(), t.cluster_registered))
                    .collect()
            })
            .unwrap_or_default()
    };
    make_ready(
        &client,
        &claim_ar("GKECluster", "gkeclusters"),
        "bare-first",
    )
    .await;
    // The first cluster waits for the second one's kubeconfig, as a target with components
    // does; until then it is not registered and the experiment is not Ready.
    let (held, message) = held_back(&client, "bare", "WaitingForClusters").await;
    assert!(
        message.contains("first: waiting for the clusters of second"),
        "{message}"
    );
    assert_eq!(held.phase(), ExperimentPhase::Provisioning);
    assert_eq!(
        registered(&held),
        [
            ("first".to_owned(), Some(false)),
            ("second".to_owned(), Some(false)),
            ("local".to_owned(), None)
        ]
    );

    make_ready(&client, &claim_ar("VCluster", "vclusters"), "bare-second").await;
    let e = wait_phase(&client, "bare", ExperimentPhase::Running).await;
    assert_eq!(
        registered(&e),
        [
            ("first".to_owned(), Some(true)),
            ("second".to_owned(), Some(true)),
            ("local".to_owned(), None)
        ]
    );
    let targets = e.status.as_ref().unwrap().targets.clone().unwrap();
    assert!(targets.iter().all(|t| t.apps_created == Some(true)));
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "argocd");
    let cluster_secrets = || async {
        secrets
            .list(&ListParams::default().labels("argocd.argoproj.io/secret-type=cluster"))
            .await
            .unwrap()
            .items
    };
    let found = cluster_secrets().await;
    let found_names: Vec<String> = found.iter().map(ResourceExt::name_any).collect();
    assert_eq!(found_names, ["cluster-bare-first", "cluster-bare-second"]);
    for (secret, status) in found.iter().zip(&targets) {
        let data = secret.data.as_ref().unwrap();
        let endpoint = status.endpoint.as_deref().unwrap();
        let server = String::from_utf8_lossy(&data["server"].0).into_owned();
        assert!(
            server.starts_with("https://")
                && server.ends_with(endpoint.trim_start_matches("https://")),
            "{server} for {endpoint}"
        );
        assert_eq!(
            String::from_utf8_lossy(&data["name"].0),
            status.cluster_name.as_deref().unwrap()
        );
    }
    let apps = dynamic(&client, &argo("Application", "applications"), "argocd");
    for app in ["bare-first", "bare-second", "bare-local"] {
        assert!(apps.get_opt(app).await.unwrap().is_none(), "{app}");
    }
    let copies: Api<Secret> = Api::namespaced(target.client(), "bare");
    for peer in ["first", "second"] {
        assert!(
            copies
                .get_opt(&format!("{peer}-cluster-kubeconfig"))
                .await
                .unwrap()
                .is_some(),
            "{peer}"
        );
    }

    release_workflow(&client, "bare-validation").await;
    wait_cleaned(&client, "bare").await;
    assert!(cluster_secrets().await.is_empty());
    delete_and_wait(&client, "bare").await;
    op.stop().await.unwrap();
    env.shutdown().await;
    target.shutdown().await;
}

/// An Experiment deleted while its reconcile's status write is in flight: the write finds it
/// gone (404), and the phase transitions that write would have recorded are neither counted
/// in `labs_experiment_phase_transitions_total` nor published as Events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transitions_of_an_experiment_deleted_during_its_status_write_are_not_reported() {
    let env = start_env(&[]).await;
    let client = env.client();
    template(&client, "long", "{devcluster.io/run-seconds: forever}").await;
    let op = start_operator(&client, fast());
    // Hold every patch of a lab Experiment (the status write among them). The finalizer is
    // set up front so that the first reconcile needs no other patch.
    env.set_faults(devcluster::FaultConfig {
        paused: true,
        verbs: vec!["patch".into()],
        resources: vec!["experiments.experiments.illm.io".into()],
        ..devcluster::FaultConfig::default()
    })
    .unwrap();
    experiment(
        &client,
        &format!(
            "apiVersion: experiments.illm.io/v1alpha1\nkind: Experiment\nmetadata: {{name: gone, namespace: {NS}, finalizers: [{}]}}\nspec:\n  targets: [{{name: main, cluster: {{type: hub}}}}]\n  workflow: {{template: long, completion: {{mode: workflow}}}}\n",
            agentic_api::labs::FINALIZER
        ),
    )
    .await;
    let workers = || {
        op.metric(
            "controller_runtime_active_workers",
            &[("controller", "labexperiment")],
        )
    };
    support::eventually("the first reconcile in flight", || async { workers() >= 1 }).await;
    // Delete it; a replace (not a patch, which is held) removes the finalizer.
    let api = experiments(&client);
    api.delete("gone", &DeleteParams::default()).await.unwrap();
    let mut last = api.get("gone").await.unwrap();
    last.metadata.finalizers = None;
    api.replace("gone", &PostParams::default(), &last)
        .await
        .unwrap();
    assert!(api.get_opt("gone").await.unwrap().is_none());
    env.clear_faults();
    support::eventually("the reconcile to end", || async { workers() == 0 }).await;
    assert_eq!(
        op.metric("labs_experiment_phase_transitions_total", &[]),
        0,
        "transitions of a deleted Experiment were counted"
    );
    assert_eq!(event_reasons(&client, "gone").await, Vec::new());
    op.stop().await.unwrap();
    env.shutdown().await;
}

/// `observability.transport: tailscale` on a provisioned target: the Application is held back
/// while the hub's Tailscale OAuth Secret is missing (`ComponentsHealthy=False`,
/// `TailscaleSecretNotCopied`, a Warning Event naming the Secret), then the Secret is copied
/// onto the target cluster and the Application installs the `tailscale-operator` Component
/// without OAuth values. Targets whose clusters cannot be reached are held back with the
/// write's error (`TailscaleSecretNotCopied`, `KubeconfigsNotCopied`).
/// The hub target never gets a Tailscale operator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::too_many_lines)] // one scenario, checked step by step
async fn tailscale_credentials_are_copied_to_the_target_cluster() {
    let (target, env, client, op) = with_target_cluster().await;
    component(&client, "tailscale-operator", "app").await;
    experiment(
        &client,
        r"
apiVersion: experiments.illm.io/v1alpha1
kind: Experiment
metadata: {name: ts, namespace: experiments}
spec:
  targets:
  - name: remote
    cluster: {type: gke}
    components: [{app: web}]
    observability: {enabled: true, transport: tailscale}
  - name: hub
    cluster: {type: hub}
    components: [{app: web}]
    observability: {enabled: true, transport: tailscale}
  workflow: {template: long, completion: {mode: workflow}}
",
    )
    .await;
    let (held, message) = held_back(&client, "ts", "TailscaleSecretNotCopied").await;
    assert!(
        message.contains("remote:") && message.contains("tailscale/operator-oauth"),
        "{message}"
    );
    assert!(
        event_reasons(&client, "ts")
            .await
            .contains(&("Warning".to_owned(), "TailscaleSecretNotCopied".to_owned()))
    );
    let apps = dynamic(&client, &argo("Application", "applications"), "argocd");
    assert!(apps.get_opt("ts-remote").await.unwrap().is_none());
    assert_ne!(held.phase(), ExperimentPhase::Running);

    // The Secret appears on the hub: it is copied and the experiment proceeds.
    tailscale_oauth(&client).await;
    wait_phase(&client, "ts", ExperimentPhase::Running).await;
    let copied: Api<Secret> = Api::namespaced(target.client(), "ts");
    let copied = copied.get("operator-oauth").await.unwrap();
    let hub_secret: Api<Secret> = Api::namespaced(client.clone(), "tailscale");
    let hub_secret = hub_secret.get("operator-oauth").await.unwrap();
    assert_eq!(copied.data, hub_secret.data);
    assert_eq!(copied.type_.as_deref(), Some("Opaque"));
    assert_eq!(copied.labels()["experiments.illm.io/target"], "remote");
    let remote_app = apps.get("ts-remote").await.unwrap();
    let charts: Vec<&str> = remote_app.data["spec"]["sources"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["chart"].as_str())
        .collect();
    assert!(charts.contains(&"tailscale-operator"), "{charts:?}");
    assert!(
        !remote_app.data["spec"]
            .to_string()
            .contains("client_secret")
    );
    let hub_app = apps.get("ts-hub").await.unwrap();
    assert!(!hub_app.data["spec"].to_string().contains("tailscale"));
    release_workflow(&client, "ts-validation").await;
    wait_cleaned(&client, "ts").await;
    delete_and_wait(&client, "ts").await;

    // Clusters whose API servers do not answer: both targets are held back with the write's
    // error (the Tailscale Secret for one, the other target's kubeconfig for the other) and
    // nothing is deployed.
    experiment(
        &client,
        r"
apiVersion: experiments.illm.io/v1alpha1
kind: Experiment
metadata:
  name: unreachable
  namespace: experiments
  annotations: {devcluster.io/kubeconfig-server: 'http://127.0.0.1:1'}
spec:
  targets:
  - name: remote
    cluster: {type: gke}
    components: [{app: web}]
    observability: {enabled: true, transport: tailscale}
  - {name: other, cluster: {type: gke}, components: [{app: web}]}
  workflow: {template: long, completion: {mode: workflow}}
",
    )
    .await;
    let (_, message) = held_back(&client, "unreachable", "KubeconfigsNotCopied").await;
    assert!(
        message.contains("other: writing Namespace unreachable on the target cluster failed")
            && message.contains("remote: writing Namespace unreachable"),
        "{message}"
    );
    let reasons = event_reasons(&client, "unreachable").await;
    for reason in ["TailscaleSecretNotCopied", "KubeconfigsNotCopied"] {
        assert!(
            reasons.contains(&("Warning".to_owned(), reason.to_owned())),
            "{reasons:?}"
        );
    }
    for app in ["unreachable-remote", "unreachable-other"] {
        assert!(apps.get_opt(app).await.unwrap().is_none());
    }
    delete_and_wait(&client, "unreachable").await;
    op.stop().await.unwrap();
    env.shutdown().await;
    target.shutdown().await;
}

/// With two provisioned targets, a target whose cluster is ready waits for the other one
/// (`WaitingForClusters`, naming it) before its Application is created, because the other
/// cluster's kubeconfig is copied onto it first; once both are ready both deploy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_waits_for_the_other_clusters_before_deploying() {
    let (target, env, client, op) = with_target_cluster().await;
    experiment(
        &client,
        r"
apiVersion: experiments.illm.io/v1alpha1
kind: Experiment
metadata:
  name: pair
  namespace: experiments
  annotations: {devcluster.io/ready-seconds: forever}
spec:
  targets:
  - {name: first, cluster: {type: gke}, components: [{app: web}]}
  - {name: second, cluster: {type: vcluster}, components: [{app: web}]}
  workflow: {template: long, completion: {mode: workflow}}
",
    )
    .await;
    make_ready(
        &client,
        &claim_ar("GKECluster", "gkeclusters"),
        "pair-first",
    )
    .await;
    let (_, message) = held_back(&client, "pair", "WaitingForClusters").await;
    assert!(
        message.contains("first: waiting for the clusters of second"),
        "{message}"
    );
    let apps = dynamic(&client, &argo("Application", "applications"), "argocd");
    assert!(apps.get_opt("pair-first").await.unwrap().is_none());
    // Waiting is not a failure: no Warning Event for it.
    assert!(
        !event_reasons(&client, "pair")
            .await
            .iter()
            .any(|(_, reason)| reason == "WaitingForClusters")
    );

    make_ready(&client, &claim_ar("VCluster", "vclusters"), "pair-second").await;
    // Both deploy now (their Applications stay Progressing: the experiment's ready-seconds
    // annotation also scripts them).
    for app in ["pair-first", "pair-second"] {
        wait_get(&apps, app, "Application", |o| o.is_some()).await;
    }
    let copies: Api<Secret> = Api::namespaced(target.client(), "pair");
    for peer in ["first", "second"] {
        assert!(
            copies
                .get_opt(&format!("{peer}-cluster-kubeconfig"))
                .await
                .unwrap()
                .is_some()
        );
    }
    delete_and_wait(&client, "pair").await;
    op.stop().await.unwrap();
    env.shutdown().await;
    target.shutdown().await;
}
