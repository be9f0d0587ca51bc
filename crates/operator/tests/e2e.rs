//! End-to-end scenarios: one lifecycle per family, driven only through a kubeconfig.
//!
//! `scenarios_on_the_e2e_cluster` runs them against the cluster named by `E2E_KUBECONFIG` and
//! is skipped, with a message saying so, when that variable is unset.
//! `scenarios_pass_on_a_dev_cluster_over_http` runs the very same code against a dev cluster
//! served over HTTP with the operator binary of this build as a separate process, so the
//! scenarios are known to pass (and can fail) without a real cluster. What each scenario needs
//! and leaves behind is in docs/operations.md, *End-to-end check*.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::{
    fmt::Write as _,
    fs::File,
    future::Future,
    panic::AssertUnwindSafe,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use futures::FutureExt;
use k8s_openapi::{
    api::{
        batch::v1::Job,
        core::v1::{ConfigMap, Namespace, Secret, Service, ServiceAccount},
        rbac::v1::{Role, RoleBinding},
    },
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, Client, Config, Resource,
    api::{ApiResource, DeleteParams},
    config::{KubeConfigOptions, Kubeconfig},
};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use support::{
    MANAGED, Setup, api_resource, create_object, dynamic, get_object, json_condition, merge_object,
    test_triggers, test_workflows,
};

const BIN: &str = env!("CARGO_BIN_EXE_agentic-operator");
/// How long each expected state may take to show (a real cluster pulls images first).
const DEADLINE: Duration = Duration::from_mins(5);
/// Pause between two looks.
const POLL: Duration = Duration::from_millis(250);
/// Argo Workflows' namespace in the labs defaults (`workflowNamespace`).
const WORKFLOW_NS: &str = "argo-workflows";

/// The three families, by the name `--controllers` takes.
const FAMILIES: [&str; 3] = ["sessions", "evaluations", "labs"];

/// What happened to one family's scenario.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// The whole lifecycle was observed.
    Passed,
    /// The cluster lacks something the scenario needs (named in the text).
    Skipped(String),
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenarios_on_the_e2e_cluster() {
    let Some(path) = std::env::var_os("E2E_KUBECONFIG") else {
        eprintln!(
            "e2e: skipped: E2E_KUBECONFIG is not set. Point it at a kubeconfig (cluster-admin) \
             to run each family's lifecycle against that cluster; see docs/operations.md, \
             \"End-to-end check\"."
        );
        return;
    };
    let start_operator = operator_mode(std::env::var("E2E_OPERATOR").ok().as_deref())
        .unwrap_or_else(|e| panic!("{e}"));
    let families = std::env::var("E2E_FAMILIES").ok();
    let families = families_to_run(families.as_deref()).unwrap_or_else(|e| panic!("{e}"));
    // Each family's outcome, skips included, is printed as it ends.
    run(Path::new(&path), start_operator, &families).await;
}

/// `E2E_OPERATOR`: whether the test starts this build's operator (`binary`, the default) or
/// checks the one running in the cluster (`external`).
fn operator_mode(value: Option<&str>) -> Result<bool, String> {
    match value.map(str::trim) {
        None | Some("" | "binary") => Ok(true),
        Some("external") => Ok(false),
        Some(other) => Err(format!(
            "E2E_OPERATOR: {other:?} is not allowed; use \"binary\" (the default: start this \
             build's operator) or \"external\" (check the operator running in the cluster)"
        )),
    }
}

/// `E2E_FAMILIES`: the comma-separated families to run, all when unset or empty.
fn families_to_run(value: Option<&str>) -> Result<Vec<&'static str>, String> {
    let Some(value) = value.filter(|v| !v.trim().is_empty()) else {
        return Ok(FAMILIES.to_vec());
    };
    let mut chosen = Vec::new();
    for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let Some(family) = FAMILIES.iter().find(|f| **f == name) else {
            return Err(format!(
                "E2E_FAMILIES: unknown family {name:?}; allowed: {}",
                FAMILIES.join(", ")
            ));
        };
        chosen.push(*family);
    }
    Ok(chosen)
}

/// What each kind of bad `E2E_OPERATOR` and `E2E_FAMILIES` value does: an error naming the
/// variable and the allowed values, before anything touches the cluster.
#[test]
fn settings_are_read_strictly() {
    assert_eq!(operator_mode(None), Ok(true));
    assert_eq!(operator_mode(Some("")), Ok(true));
    assert_eq!(operator_mode(Some("binary")), Ok(true));
    assert_eq!(operator_mode(Some(" external ")), Ok(false));
    for bad in ["External", "yes", "in-cluster"] {
        let err = operator_mode(Some(bad)).unwrap_err();
        assert!(
            err.starts_with("E2E_OPERATOR:") && err.contains("\"external\""),
            "{err}"
        );
    }
    assert_eq!(families_to_run(None).unwrap(), FAMILIES.to_vec());
    assert_eq!(families_to_run(Some(" ")).unwrap(), FAMILIES.to_vec());
    assert_eq!(
        families_to_run(Some("labs, sessions,")).unwrap(),
        vec!["labs", "sessions"]
    );
    let err = families_to_run(Some("sessions,testbench")).unwrap_err();
    assert_eq!(
        err,
        "E2E_FAMILIES: unknown family \"testbench\"; allowed: sessions, evaluations, labs"
    );
}

/// The scenarios against a dev cluster with every simulator and foreign CRD, reached only
/// through its kubeconfig file; the operator is this build's binary in its own process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenarios_pass_on_a_dev_cluster_over_http() {
    let mut setup = Setup::new().rbac(true);
    for fixture in [
        "evaluations/testworkflows.testkube.io.yaml",
        "evaluations/testtriggers.tests.testkube.io.yaml",
        "evaluations/agents.runtime.agentic-layer.ai.yaml",
        "labs/argo-workflow.yaml",
        "labs/argo-workflowtemplate.yaml",
        "labs/argocd-application.yaml",
        "labs/claim-gkecluster.yaml",
    ] {
        setup = setup.fixture(fixture);
    }
    let cluster = setup
        .namespace(WORKFLOW_NS, &[])
        .namespace("argocd", &[])
        .simulators_after_setup(devcluster::simulators::Simulators::all())
        .start()
        .await;
    let outcomes = run(cluster.kubeconfig_path(), true, &FAMILIES).await;
    let expected: Vec<_> = FAMILIES.iter().map(|f| (*f, Outcome::Passed)).collect();
    assert_eq!(outcomes, expected);
    cluster.shutdown().await;
}

/// Without a family's prerequisites the scenario is skipped with a message naming them, not
/// failed: a dev cluster with only the operator's own CRDs runs sessions alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_family_whose_prerequisites_are_missing_is_skipped_by_name() {
    let cluster = Setup::new()
        .rbac(true)
        .simulators(devcluster::simulators::Simulators::all())
        .start()
        .await;
    let outcomes = run(cluster.kubeconfig_path(), true, &FAMILIES).await;
    assert_eq!(outcomes[0], ("sessions", Outcome::Passed));
    let Outcome::Skipped(why) = &outcomes[1].1 else {
        panic!("evaluations ran without Testkube: {outcomes:?}")
    };
    assert!(
        why.contains("testworkflows.testworkflows.testkube.io"),
        "{why}"
    );
    let Outcome::Skipped(why) = &outcomes[2].1 else {
        panic!("labs ran without Argo: {outcomes:?}")
    };
    assert!(why.contains("workflows.argoproj.io"), "{why}");
    cluster.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// The run: set-up, scenarios, clean-up

/// One e2e run's client, namespace and name suffix.
struct E2e {
    client: Client,
    ns: String,
    suffix: String,
}

/// Installs the operator's CRDs where missing, creates a namespace of its own, starts the
/// operator when `start_operator`, runs each of `families` and removes what it created. A
/// failed scenario fails the test (with the operator's log) after the clean-up.
async fn run(
    kubeconfig: &Path,
    start_operator: bool,
    families: &[&str],
) -> Vec<(&'static str, Outcome)> {
    support::crypto();
    let client = client(kubeconfig).await;
    install_missing_crds(&client).await;
    let suffix = format!("{:06x}", rand::random::<u32>() & 0xff_ffff);
    let e2e = E2e {
        client,
        ns: format!("agentic-e2e-{suffix}"),
        suffix,
    };
    // Labelled as an ambient-code project, so the sessions controller manages it.
    support::namespace(
        &e2e.client,
        &e2e.ns,
        &[
            MANAGED,
            ("app.kubernetes.io/part-of", "agentic-operator-e2e"),
        ],
    )
    .await;
    let operator = start_operator.then(|| OperatorProcess::start(kubeconfig, &e2e.ns));
    let result = AssertUnwindSafe(scenarios(&e2e, families))
        .catch_unwind()
        .await;
    clean_up(&e2e).await;
    match result {
        Ok(outcomes) => {
            drop(operator);
            outcomes
        }
        Err(panic) => {
            if let Some(op) = &operator {
                eprintln!("e2e: operator log (last 80 lines):\n{}", op.log_tail(80));
            }
            drop(operator);
            std::panic::resume_unwind(panic)
        }
    }
}

async fn scenarios(e2e: &E2e, families: &[&str]) -> Vec<(&'static str, Outcome)> {
    let mut outcomes = Vec::new();
    for family in FAMILIES {
        if !families.contains(&family) {
            continue;
        }
        let outcome = match family {
            "sessions" => sessions(e2e).await,
            "evaluations" => evaluations(e2e).await,
            _ => labs(e2e).await,
        };
        eprintln!("e2e: {family}: {outcome:?}");
        outcomes.push((family, outcome));
    }
    outcomes
}

async fn client(kubeconfig: &Path) -> Client {
    let parsed = Kubeconfig::read_from(kubeconfig)
        .unwrap_or_else(|e| panic!("reading {}: {e}", kubeconfig.display()));
    let config = Config::from_custom_kubeconfig(parsed, &KubeConfigOptions::default())
        .await
        .unwrap_or_else(|e| panic!("using {}: {e}", kubeconfig.display()));
    Client::try_from(config).unwrap()
}

/// Creates each of the operator's CRDs the cluster does not have; installed ones (this
/// operator's or an upstream operator's) are used as they are.
async fn install_missing_crds(client: &Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in agentic_api::crds::all() {
        let name = crd.metadata.name.clone().unwrap();
        if api.get_opt(&name).await.unwrap().is_none() {
            eprintln!("e2e: installing CRD {name}");
            support::install_crd(client, &crd).await;
        }
    }
}

async fn crd_exists(client: &Client, name: &str) -> bool {
    Api::<CustomResourceDefinition>::all(client.clone())
        .get_opt(name)
        .await
        .unwrap()
        .is_some()
}

/// The CRDs of `names` the cluster lacks, as a skip reason; `None` when all are there.
async fn missing_crds(client: &Client, names: &[&str]) -> Option<String> {
    let mut missing = Vec::new();
    for name in names {
        if !crd_exists(client, name).await {
            missing.push(*name);
        }
    }
    (!missing.is_empty()).then(|| format!("missing CRDs: {}", missing.join(", ")))
}

/// Deletes the run's namespace and its `WorkflowTemplate` and waits (up to the deadline) for
/// the namespace to go, while the operator still runs to release its finalizers.
async fn clean_up(e2e: &E2e) {
    let templates = dynamic(
        &e2e.client,
        &argo("WorkflowTemplate", "workflowtemplates"),
        WORKFLOW_NS,
    );
    let _ = templates
        .delete(&template_name(e2e), &DeleteParams::default())
        .await;
    let namespaces: Api<Namespace> = Api::all(e2e.client.clone());
    let _ = namespaces.delete(&e2e.ns, &DeleteParams::default()).await;
    let started = Instant::now();
    while started.elapsed() < DEADLINE {
        if namespaces.get_opt(&e2e.ns).await.is_ok_and(|n| n.is_none()) {
            return;
        }
        tokio::time::sleep(POLL).await;
    }
    eprintln!(
        "e2e: namespace {} still terminating; left to the cluster",
        e2e.ns
    );
}

// ---------------------------------------------------------------------------------------------
// The operator process

/// This build's operator binary running against the kubeconfig; killed when dropped.
struct OperatorProcess {
    child: Child,
    log: PathBuf,
}

impl OperatorProcess {
    /// Starts `agentic-operator run` with every served port off, logging to a file.
    fn start(kubeconfig: &Path, namespace: &str) -> Self {
        let log = std::env::temp_dir().join(format!("agentic-operator-e2e-{namespace}.log"));
        let out = File::create(&log).unwrap();
        let err = out.try_clone().unwrap();
        let child = Command::new(BIN)
            .args([
                "run",
                "--metrics-bind-address",
                "0",
                "--health-probe-bind-address",
                "0",
                "--webhook-bind-address",
                "0",
            ])
            .env("KUBECONFIG", kubeconfig)
            .env("NAMESPACE", namespace)
            .env("POD_NAME", "agentic-operator-e2e")
            .env("DEV_MODE", "true")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap();
        Self { child, log }
    }

    fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

// ---------------------------------------------------------------------------------------------
// Looking at the cluster

/// Polls `look` until it returns `Some`, failing with `what` and the last thing seen after
/// [`DEADLINE`].
async fn until<T, F, Fut>(what: &str, mut look: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let started = Instant::now();
    loop {
        let last = match look().await {
            Ok(found) => return found,
            Err(seen) => seen,
        };
        assert!(
            started.elapsed() < DEADLINE,
            "e2e: waited {DEADLINE:?} for {what}; last seen: {last}"
        );
        tokio::time::sleep(POLL).await;
    }
}

async fn get<K>(client: &Client, ns: &str, name: &str) -> Option<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    Api::<K>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .unwrap()
}

/// Waits until the custom object is gone.
async fn until_gone(client: &Client, ar: &ApiResource, ns: &str, name: &str) {
    until(&format!("{} {ns}/{name} to be gone", ar.kind), || async {
        match get_object(client, ar, ns, name).await {
            None => Ok(()),
            Some(o) => Err(format!("finalizers {}", o["metadata"]["finalizers"])),
        }
    })
    .await;
}

/// A short description of an object's status for failure messages.
fn status_line(object: &Value) -> String {
    let mut line = format!("phase {}", object["status"]["phase"]);
    for c in object["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let _ = write!(
            line,
            "; {}={} {} {}",
            c["type"].as_str().unwrap_or("?"),
            c["status"].as_str().unwrap_or("?"),
            c["reason"].as_str().unwrap_or(""),
            c["message"].as_str().unwrap_or("")
        );
    }
    line
}

async fn delete(client: &Client, ar: &ApiResource, ns: &str, name: &str) {
    dynamic(client, ar, ns)
        .delete(name, &DeleteParams::default())
        .await
        .unwrap_or_else(|e| panic!("deleting {} {ns}/{name}: {e}", ar.kind));
}

fn argo(kind: &str, plural: &str) -> ApiResource {
    api_resource("argoproj.io", "v1alpha1", kind, plural)
}

// ---------------------------------------------------------------------------------------------
// sessions

fn agentic_sessions() -> ApiResource {
    api_resource(
        "vteam.ambient-code",
        "v1alpha1",
        "AgenticSession",
        "agenticsessions",
    )
}

/// A session starts a runner Job owned by it, moves past `Pending`, stops on request (or has
/// ended by itself: a real runner with a placeholder key may fail first), and its deletion
/// removes every object generated for it.
async fn sessions(e2e: &E2e) -> Outcome {
    let (client, ns) = (&e2e.client, e2e.ns.as_str());
    let name = format!("e2e-session-{}", e2e.suffix);
    support::runner_secret(client, ns).await;
    let ar = agentic_sessions();
    create_object(
        client,
        &ar,
        ns,
        json!({
            "apiVersion": "vteam.ambient-code/v1alpha1", "kind": "AgenticSession",
            "metadata": {"name": name},
            "spec": {"initialPrompt": "Say hello.", "timeout": 600, "displayName": "agentic-operator e2e"},
        }),
    )
    .await;

    let job_name = format!("{name}-job");
    let job: Job = until("the runner Job", || async {
        get::<Job>(client, ns, &job_name)
            .await
            .ok_or_else(|| "no Job".to_owned())
    })
    .await;
    let owner = job
        .metadata
        .owner_references
        .as_ref()
        .and_then(|o| o.first())
        .expect("the runner Job has an owner reference");
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.controller),
        ("AgenticSession", name.as_str(), Some(true))
    );
    let started = session_in(
        client,
        ns,
        &name,
        "leave Pending",
        &["Creating", "Running", "Completed", "Failed"],
    )
    .await;
    assert_eq!(
        started["metadata"]["annotations"]["ambient-code.io/runner-token-secret"],
        format!("ambient-runner-token-{name}").as_str()
    );

    merge_object(
        client,
        &ar,
        ns,
        &name,
        json!({"metadata": {"annotations": {"ambient-code.io/desired-phase": "Stopped"}}}),
    )
    .await;
    let ended = session_in(
        client,
        ns,
        &name,
        "stop",
        &["Stopped", "Completed", "Failed"],
    )
    .await;
    if ended["status"]["phase"] == "Stopped" {
        assert_eq!(
            ended["status"]["stoppedReason"],
            "user",
            "{}",
            status_line(&ended)
        );
        until("the stopped runner Job to be gone", || async {
            get::<Job>(client, ns, &job_name)
                .await
                .map_or(Ok(()), |_| Err("Job still there".to_owned()))
        })
        .await;
    } else {
        eprintln!(
            "e2e: sessions: ended by itself before the stop: {}",
            status_line(&ended)
        );
    }

    delete(client, &ar, ns, &name).await;
    until_gone(client, &ar, ns, &name).await;
    until("every generated object to be gone", || async {
        let left = session_objects(client, ns, &name).await;
        if left.is_empty() {
            Ok(())
        } else {
            Err(left.join(", "))
        }
    })
    .await;
    Outcome::Passed
}

/// Waits until the session's phase is one of `phases`; returns it.
async fn session_in(client: &Client, ns: &str, name: &str, what: &str, phases: &[&str]) -> Value {
    until(&format!("the session to {what}"), || async {
        let s = get_object(client, &agentic_sessions(), ns, name)
            .await
            .ok_or("no session")?;
        if s["status"]["phase"]
            .as_str()
            .is_some_and(|p| phases.contains(&p))
        {
            Ok(s)
        } else {
            Err(status_line(&s))
        }
    })
    .await
}

/// The kinds of the objects generated for session `name` that still exist.
async fn session_objects(client: &Client, ns: &str, name: &str) -> Vec<&'static str> {
    let mut left = Vec::new();
    if get::<Job>(client, ns, &format!("{name}-job"))
        .await
        .is_some()
    {
        left.push("Job");
    }
    if get::<Service>(client, ns, &format!("session-{name}"))
        .await
        .is_some()
    {
        left.push("Service");
    }
    if get::<ServiceAccount>(client, ns, &format!("ambient-session-{name}"))
        .await
        .is_some()
    {
        left.push("ServiceAccount");
    }
    if get::<Role>(client, ns, &format!("ambient-session-{name}-role"))
        .await
        .is_some()
    {
        left.push("Role");
    }
    if get::<RoleBinding>(client, ns, &format!("ambient-session-{name}-rb"))
        .await
        .is_some()
    {
        left.push("RoleBinding");
    }
    if get::<Secret>(client, ns, &format!("ambient-runner-token-{name}"))
        .await
        .is_some()
    {
        left.push("token Secret");
    }
    left
}

// ---------------------------------------------------------------------------------------------
// evaluations

fn evaluation_experiments() -> ApiResource {
    api_resource(
        "testbench.agentic-layer.ai",
        "v1alpha1",
        "Experiment",
        "experiments",
    )
}

/// An inline Experiment with a trigger gets its `ConfigMap`, `TestWorkflow` and `TestTrigger`
/// and `Ready=True`; a spec change reaches the `ConfigMap`; switching the trigger off deletes it;
/// deleting the Experiment deletes the rest. No workflow is executed.
async fn evaluations(e2e: &E2e) -> Outcome {
    if let Some(missing) = missing_crds(
        &e2e.client,
        &[
            "testworkflows.testworkflows.testkube.io",
            "testtriggers.tests.testkube.io",
        ],
    )
    .await
    {
        return Outcome::Skipped(missing);
    }
    let (client, ns) = (&e2e.client, e2e.ns.as_str());
    let name = format!("e2e-eval-{}", e2e.suffix);
    let ar = evaluation_experiments();
    create_object(
        client,
        &ar,
        ns,
        json!({
            "apiVersion": "testbench.agentic-layer.ai/v1alpha1", "kind": "Experiment",
            "metadata": {"name": name},
            "spec": {
                "agentRef": {"name": "e2e-agent"},
                "llmAsAJudgeModel": "gemini-2.5-flash-lite",
                "defaultThreshold": 0.5,
                "scenarios": [{"name": "greeting", "steps": [{
                    "input": "Say hello.",
                    "metrics": [{"metricName": "AgentGoalAccuracyWithoutReference"}]
                }]}],
                "trigger": {"enabled": true, "concurrencyPolicy": "Forbid"}
            }
        }),
    )
    .await;
    let ready = ready_experiment(client, &ar, ns, &name, 3).await;
    let generated = ready["status"]["generatedResources"]
        .as_array()
        .unwrap()
        .clone();
    assert_listed_objects_exist(client, ns, &generated).await;
    let named = |kind: &str| -> (String, String) {
        let g = generated.iter().find(|g| g["kind"] == kind).unwrap();
        (
            g["namespace"].as_str().unwrap_or(ns).to_owned(),
            g["name"].as_str().unwrap().to_owned(),
        )
    };
    let (cm_ns, cm_name) = named("ConfigMap");
    let (workflow_ns, workflow_name) = named("TestWorkflow");
    let (trigger_ns, trigger_name) = named("TestTrigger");

    merge_object(
        client,
        &ar,
        ns,
        &name,
        json!({"spec": {"defaultThreshold": 0.75}}),
    )
    .await;
    until("the new threshold in the ConfigMap", || async {
        let cm = get::<ConfigMap>(client, &cm_ns, &cm_name)
            .await
            .ok_or("no ConfigMap")?;
        let text = cm
            .data
            .as_ref()
            .and_then(|d| d.get("experiment.json"))
            .cloned()
            .unwrap_or_default();
        if text.contains("0.75") {
            Ok(())
        } else {
            Err(text)
        }
    })
    .await;
    ready_experiment(client, &ar, ns, &name, 3).await;

    merge_object(
        client,
        &ar,
        ns,
        &name,
        json!({"spec": {"trigger": {"enabled": false}}}),
    )
    .await;
    until_gone(client, &test_triggers(), &trigger_ns, &trigger_name).await;
    ready_experiment(client, &ar, ns, &name, 2).await;

    delete(client, &ar, ns, &name).await;
    until_gone(client, &ar, ns, &name).await;
    until_gone(client, &test_workflows(), &workflow_ns, &workflow_name).await;
    until("the ConfigMap to be gone", || async {
        get::<ConfigMap>(client, &cm_ns, &cm_name)
            .await
            .map_or(Ok(()), |_| Err("still there".to_owned()))
    })
    .await;
    Outcome::Passed
}

/// Fails unless each object in `generated` (`status.generatedResources`) exists.
async fn assert_listed_objects_exist(client: &Client, ns: &str, generated: &[Value]) {
    for g in generated {
        let (kind, name) = (g["kind"].as_str().unwrap(), g["name"].as_str().unwrap());
        let gns = g["namespace"].as_str().unwrap_or(ns);
        let exists = match kind {
            "ConfigMap" => get::<ConfigMap>(client, gns, name).await.is_some(),
            "TestWorkflow" => get_object(client, &test_workflows(), gns, name)
                .await
                .is_some(),
            "TestTrigger" => get_object(client, &test_triggers(), gns, name)
                .await
                .is_some(),
            other => panic!("unexpected generated kind {other}"),
        };
        assert!(exists, "{kind} {gns}/{name} is listed but does not exist");
    }
}

/// Waits until the Experiment is `Ready=True` for its current generation and lists `count`
/// generated objects.
async fn ready_experiment(
    client: &Client,
    ar: &ApiResource,
    ns: &str,
    name: &str,
    count: usize,
) -> Value {
    until(
        &format!("Experiment {ns}/{name} Ready with {count} objects"),
        || async {
            let exp = get_object(client, ar, ns, name)
                .await
                .ok_or("no Experiment")?;
            let ready = json_condition(&exp, "Ready");
            let listed = exp["status"]["generatedResources"]
                .as_array()
                .map_or(0, Vec::len);
            if ready.is_some_and(|c| {
                c["status"] == "True" && c["observedGeneration"] == exp["metadata"]["generation"]
            }) && listed == count
            {
                Ok(exp)
            } else {
                Err(format!("{}; {listed} generated", status_line(&exp)))
            }
        },
    )
    .await
}

// ---------------------------------------------------------------------------------------------
// labs

fn lab_experiments() -> ApiResource {
    api_resource(
        "experiments.illm.io",
        "v1alpha1",
        "Experiment",
        "experiments",
    )
}

fn template_name(e2e: &E2e) -> String {
    format!("agentic-e2e-{}", e2e.suffix)
}

/// A hub-only Experiment (no cluster is provisioned, nothing is deployed) runs a one-step
/// Workflow from a `WorkflowTemplate` to `Complete`; its deletion removes the Workflow.
async fn labs(e2e: &E2e) -> Outcome {
    if let Some(missing) = missing_crds(
        &e2e.client,
        &[
            "workflows.argoproj.io",
            "workflowtemplates.argoproj.io",
            "applications.argoproj.io",
        ],
    )
    .await
    {
        return Outcome::Skipped(missing);
    }
    let (client, ns) = (&e2e.client, e2e.ns.as_str());
    if Api::<Namespace>::all(client.clone())
        .get_opt(WORKFLOW_NS)
        .await
        .unwrap()
        .is_none()
    {
        return Outcome::Skipped(format!("missing namespace {WORKFLOW_NS} (Argo Workflows)"));
    }
    let template = template_name(e2e);
    create_object(
        client,
        &argo("WorkflowTemplate", "workflowtemplates"),
        WORKFLOW_NS,
        json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "WorkflowTemplate",
            "metadata": {"name": template},
            "spec": {"entrypoint": "main", "templates": [{
                "name": "main",
                "container": {"image": "busybox:1.36", "command": ["true"]}
            }]}
        }),
    )
    .await;
    let name = format!("e2e-lab-{}", e2e.suffix);
    let ar = lab_experiments();
    create_object(
        client,
        &ar,
        ns,
        json!({
            "apiVersion": "experiments.illm.io/v1alpha1", "kind": "Experiment",
            "metadata": {"name": name},
            "spec": {
                "targets": [{"name": "hub", "cluster": {"type": "hub"}}],
                "workflow": {"template": template, "completion": {"mode": "workflow"}}
            }
        }),
    )
    .await;
    let workflows = argo("Workflow", "workflows");
    let workflow_name = format!("{name}-validation");
    until("the Workflow", || async {
        get_object(client, &workflows, WORKFLOW_NS, &workflow_name)
            .await
            .map(|_| ())
            .ok_or_else(|| "no Workflow".to_owned())
    })
    .await;
    let done = until("the lab Experiment to complete", || async {
        let exp = get_object(client, &ar, ns, &name)
            .await
            .ok_or("no Experiment")?;
        match exp["status"]["phase"].as_str() {
            Some("Complete") => Ok(exp),
            Some("Failed") => panic!("lab Experiment failed: {}", status_line(&exp)),
            _ => Err(status_line(&exp)),
        }
    })
    .await;
    assert_eq!(
        json_condition(&done, "WorkflowSucceeded").map(|c| c["status"].clone()),
        Some(json!("True")),
        "{}",
        status_line(&done)
    );
    delete(client, &ar, ns, &name).await;
    until_gone(client, &ar, ns, &name).await;
    until_gone(client, &workflows, WORKFLOW_NS, &workflow_name).await;
    Outcome::Passed
}
