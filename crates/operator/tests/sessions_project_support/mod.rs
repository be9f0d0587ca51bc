//! Shared setup of the sessions-family integration tests: a dev cluster with the sessions CRDs,
//! the operator's manager running in-process, polling and metric helpers.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{collections::BTreeMap, future::Future, path::Path, time::Duration};

use agentic_operator::runtime::{
    config::{Environment, RunArgs, Settings},
    manager::Manager,
    metrics::Metrics,
    startup::RunError,
};
use k8s_openapi::{
    api::{
        core::v1::{Namespace, ServiceAccount},
        rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding},
    },
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use kube::{
    Api, Client,
    api::{Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Generous deadline of every wait.
pub const DEADLINE: Duration = Duration::from_mins(1);

/// Installs the rustls provider once per process.
pub fn crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A dev cluster, with RBAC when `rbac` is set, and the sessions CRDs installed and served.
pub async fn cluster(rbac: bool) -> devcluster::DevCluster {
    crypto();
    let cluster = devcluster::DevCluster::builder()
        .rbac(rbac)
        .start()
        .await
        .expect("dev cluster starts");
    install_crds(&cluster.client()).await;
    cluster
}

/// Creates the sessions CRDs and waits until discovery serves them.
pub async fn install_crds(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in agentic_api::crds::all() {
        if crd.spec.group == agentic_api::sessions::GROUP {
            crds.create(&PostParams::default(), &crd).await.unwrap();
        }
    }
    let gv = format!(
        "{}/{}",
        agentic_api::sessions::GROUP,
        agentic_api::sessions::VERSION
    );
    eventually("the sessions CRDs to be served", || async {
        client.list_api_group_resources(&gv).await.is_ok_and(|l| {
            let names: Vec<_> = l.resources.iter().map(|r| r.name.as_str()).collect();
            names.contains(&"agenticsessions") && names.contains(&"projectsettings")
        })
    })
    .await;
}

/// Operator settings for tests: no listeners, only the sessions family.
pub fn settings(pod: &str, extra: impl FnOnce(&mut RunArgs)) -> Settings {
    let mut args = RunArgs {
        metrics_bind_address: "0".into(),
        health_probe_bind_address: "0".into(),
        controllers: Some(vec!["sessions".into()]),
        ..RunArgs::default()
    };
    extra(&mut args);
    Settings::resolve(
        &args,
        &Environment::fixed([("POD_NAME", pod), ("NAMESPACE", "ambient-code")], None),
    )
    .unwrap()
}

/// An operator running in-process.
pub struct Operator {
    /// Cancel to stop it gracefully.
    pub shutdown: CancellationToken,
    /// Its registry.
    pub metrics: Metrics,
    /// The manager task.
    pub task: JoinHandle<Result<(), RunError>>,
}

impl Operator {
    /// Starts the manager with `client` and `settings`.
    pub fn start(client: Client, settings: Settings) -> Self {
        let manager = Manager::new(settings, agentic_operator::families());
        let metrics = manager.metrics().clone();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(manager.run_with_client(client, shutdown.clone()));
        Self {
            shutdown,
            metrics,
            task,
        }
    }

    /// Stops it and returns how the manager ended.
    pub async fn stop(self) -> Result<(), RunError> {
        self.shutdown.cancel();
        self.task.await.unwrap()
    }

    /// Sum of every sample of `name` whose labels contain all of `labels` (integer samples).
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        metric(&self.metrics, name, labels)
    }
}

/// Sum of every sample of `name` in `metrics` whose labels contain all of `labels` (counters
/// and gauges holding whole numbers).
pub fn metric(metrics: &Metrics, name: &str, labels: &[(&str, &str)]) -> u64 {
    let text = metrics.encode().unwrap();
    let mut total = 0;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with('{') || rest.starts_with(' ')) {
            continue;
        }
        if labels
            .iter()
            .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
            && let Some(value) = rest.rsplit(' ').next()
        {
            let whole = value.split('.').next().unwrap_or_default();
            total += whole.parse::<u64>().unwrap();
        }
    }
    total
}

/// Polls `check` until it returns true, failing after [`DEADLINE`].
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if check().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `get` until it returns `Some`, failing after [`DEADLINE`].
pub async fn wait_for<T, F, Fut>(what: &str, mut get: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(value) = get().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Creates namespace `name` with `labels`.
pub async fn namespace(client: &Client, name: &str, labels: &[(&str, &str)]) {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect::<BTreeMap<_, _>>(),
            ),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    api.create(&PostParams::default(), &ns).await.unwrap();
}

/// Adds `ambient-code.io/managed=true` to namespace `name`.
pub async fn label_managed(client: &Client, name: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(
            serde_json::json!({"metadata": {"labels": {"ambient-code.io/managed": "true"}}}),
        ),
    )
    .await
    .unwrap();
}

/// The managed-namespace label as a `(key, value)` pair.
pub const MANAGED: (&str, &str) = ("ambient-code.io/managed", "true");

/// The user the operator's `ServiceAccount` authenticates as.
pub const OPERATOR_USER: &str = "system:serviceaccount:ambient-code:agentic-operator";

pub fn config_rbac() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/rbac")
}

/// The objects `kubectl apply -k config/rbac` would create, read from the committed files in
/// kustomization order.
pub fn rbac_documents() -> Vec<Value> {
    let kustomization: Value = serde_yaml::from_str(
        &std::fs::read_to_string(config_rbac().join("kustomization.yaml")).unwrap(),
    )
    .unwrap();
    let namespace = kustomization["namespace"].as_str().unwrap().to_owned();
    kustomization["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|file| {
            let text = std::fs::read_to_string(config_rbac().join(file.as_str().unwrap())).unwrap();
            let mut doc: Value = serde_yaml::from_str(&text).unwrap();
            let kind = doc["kind"].as_str().unwrap().to_owned();
            if kind != "ClusterRole" && kind != "ClusterRoleBinding" {
                doc["metadata"]["namespace"] = json!(namespace);
            }
            doc
        })
        .collect()
}

pub async fn create(client: &Client, doc: &Value) {
    let params = PostParams::default();
    let ns = doc["metadata"]["namespace"].as_str().unwrap_or_default();
    match doc["kind"].as_str().unwrap() {
        "ServiceAccount" => {
            let sa: ServiceAccount = serde_json::from_value(doc.clone()).unwrap();
            Api::namespaced(client.clone(), ns)
                .create(&params, &sa)
                .await
                .unwrap();
        }
        "ClusterRole" => {
            let role: ClusterRole = serde_json::from_value(doc.clone()).unwrap();
            Api::all(client.clone())
                .create(&params, &role)
                .await
                .unwrap();
        }
        "ClusterRoleBinding" => {
            let binding: ClusterRoleBinding = serde_json::from_value(doc.clone()).unwrap();
            Api::all(client.clone())
                .create(&params, &binding)
                .await
                .unwrap();
        }
        "Role" => {
            let role: Role = serde_json::from_value(doc.clone()).unwrap();
            Api::namespaced(client.clone(), ns)
                .create(&params, &role)
                .await
                .unwrap();
        }
        "RoleBinding" => {
            let binding: RoleBinding = serde_json::from_value(doc.clone()).unwrap();
            Api::namespaced(client.clone(), ns)
                .create(&params, &binding)
                .await
                .unwrap();
        }
        other => panic!("unexpected kind {other} in config/rbac"),
    }
}

/// The operator namespace, the project `ClusterRoles` the group bindings refer to (shipped with
/// the platform's manifests), and `docs` (the RBAC manifests).
pub async fn install(admin: &Client, docs: &[Value]) {
    namespace(admin, "ambient-code", &[]).await;
    for (role, verbs) in [
        ("admin", json!(["*"])),
        (
            "edit",
            json!(["get", "list", "watch", "create", "update", "patch"]),
        ),
        ("view", json!(["get", "list", "watch"])),
    ] {
        create(
            admin,
            &json!({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                "metadata": {"name": format!("ambient-project-{role}")},
                "rules": [{"apiGroups": ["vteam.ambient-code"],
                           "resources": ["agenticsessions", "projectsettings"],
                           "verbs": verbs}]
            }),
        )
        .await;
    }
    for doc in docs {
        create(admin, doc).await;
    }
}
