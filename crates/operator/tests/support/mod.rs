//! Shared harness of the operator's in-process integration tests: a dev cluster started with
//! the chosen CRDs, foreign-kind fixtures, admission hooks, RBAC, simulators and namespaces;
//! the operator's manager started and stopped in-process with test settings; polling helpers
//! with one generous deadline; condition, metric, dynamic-object and RBAC-manifest helpers.
//!
//! Each test binary includes this module with `mod support;` and compiles it on its own.

// Every test binary compiles its own copy of this module and uses only part of it, so the
// parts one binary leaves unused must not fail the build under `-D warnings`.
#![allow(dead_code)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    collections::BTreeMap,
    future::Future,
    ops::Deref,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use agentic_operator::runtime::{
    Family,
    config::{Environment, RunArgs, Settings},
    manager::Manager,
    metrics::Metrics,
    startup::RunError,
};
use devcluster::{
    AdmissionHook, Hooks,
    hooks::{AdmissionRequest, Operation},
    simulators::Simulators,
};
use futures::future::BoxFuture;
use k8s_openapi::{
    api::{
        core::v1::{Namespace, ServiceAccount},
        rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding},
    },
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta},
};
use kube::{
    Api, Client,
    api::{ApiResource, DynamicObject, Patch, PatchParams, PostParams},
    core::GroupVersionKind,
};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Generous deadline of every wait.
pub const DEADLINE: Duration = Duration::from_secs(90);
/// Pause between two polls.
pub const POLL: Duration = Duration::from_millis(100);

/// Installs the rustls provider once per process.
pub fn crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

// ---------------------------------------------------------------------------------------------
// Polling
// ---------------------------------------------------------------------------------------------

/// Polls `check` until it returns true, failing after [`DEADLINE`].
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(POLL).await;
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
        tokio::time::sleep(POLL).await;
    }
}

/// The `status` of `object` as pretty JSON, for failure messages.
fn status_of<K: Serialize>(object: Option<&K>) -> String {
    let status = object
        .and_then(|o| serde_json::to_value(o).ok())
        .map_or(Value::Null, |v| v["status"].clone());
    serde_json::to_string_pretty(&status).unwrap_or_default()
}

/// Polls object `name` through `api` until `check` holds on it (or on its absence); returns
/// what was read last. The failure message shows the last status seen.
pub async fn wait_get<K>(
    api: &Api<K>,
    name: &str,
    what: &str,
    check: impl Fn(Option<&K>) -> bool,
) -> Option<K>
where
    K: kube::Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let current = api.get_opt(name).await.unwrap();
        if check(current.as_ref()) {
            return current;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {name} to be {what}; last status seen: {}",
            status_of(current.as_ref())
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Polls object `name` through `api` until it exists and `check` holds on it; returns it.
pub async fn wait_until<K>(api: &Api<K>, name: &str, what: &str, check: impl Fn(&K) -> bool) -> K
where
    K: kube::Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    wait_get(api, name, what, |o| o.is_some_and(&check))
        .await
        .expect("the object exists")
}

/// Polls until object `name` no longer exists.
pub async fn wait_gone<K>(api: &Api<K>, name: &str)
where
    K: kube::Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    wait_get(api, name, "deleted", |o| o.is_none()).await;
}

// ---------------------------------------------------------------------------------------------
// Conditions
// ---------------------------------------------------------------------------------------------

/// The condition of type `type_` among `conditions` (a typed status's list).
pub fn find_condition<'a>(
    conditions: Option<&'a [Condition]>,
    type_: &str,
) -> Option<&'a Condition> {
    conditions?.iter().find(|c| c.type_ == type_)
}

/// The condition of type `type_` in the JSON object's `status.conditions`.
pub fn json_condition<'a>(object: &'a Value, type_: &str) -> Option<&'a Value> {
    object
        .pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

// ---------------------------------------------------------------------------------------------
// Dynamic objects
// ---------------------------------------------------------------------------------------------

/// The `ApiResource` of a kind this crate has no type for.
pub fn api_resource(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

/// The API of namespaced kind `ar` in `ns`.
pub fn dynamic(client: &Client, ar: &ApiResource, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, ar)
}

/// Creates `body` (JSON) as kind `ar` in `ns`; returns what the server stored.
pub async fn create_object(
    client: &Client,
    ar: &ApiResource,
    ns: &str,
    body: Value,
) -> DynamicObject {
    let obj: DynamicObject = serde_json::from_value(body).unwrap();
    dynamic(client, ar, ns)
        .create(&PostParams::default(), &obj)
        .await
        .unwrap()
}

/// Creates `yaml` as kind `ar`, in `ns` or cluster-scoped.
pub async fn create_yaml(client: &Client, ar: &ApiResource, ns: Option<&str>, yaml: &str) {
    let obj: DynamicObject = serde_yaml::from_str(yaml).unwrap();
    let api: Api<DynamicObject> = match ns {
        Some(ns) => Api::namespaced_with(client.clone(), ns, ar),
        None => Api::all_with(client.clone(), ar),
    };
    api.create(&PostParams::default(), &obj).await.unwrap();
}

/// Merge-patches object `ns/name` of kind `ar`.
pub async fn merge_object(client: &Client, ar: &ApiResource, ns: &str, name: &str, patch: Value) {
    dynamic(client, ar, ns)
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

/// Object `ns/name` of kind `ar` as JSON, if it exists.
pub async fn get_object(client: &Client, ar: &ApiResource, ns: &str, name: &str) -> Option<Value> {
    dynamic(client, ar, ns)
        .get_opt(name)
        .await
        .unwrap()
        .map(|o| serde_json::to_value(o).unwrap())
}

// ---------------------------------------------------------------------------------------------
// Namespaces and CRDs
// ---------------------------------------------------------------------------------------------

/// The managed-namespace label as a `(key, value)` pair.
pub const MANAGED: (&str, &str) = ("ambient-code.io/managed", "true");

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

/// Testkube's `TestWorkflow` (`testworkflows.testkube.io/v1`).
pub fn test_workflows() -> ApiResource {
    api_resource(
        "testworkflows.testkube.io",
        "v1",
        "TestWorkflow",
        "testworkflows",
    )
}

/// Testkube's `TestTrigger` (`tests.testkube.io/v1`).
pub fn test_triggers() -> ApiResource {
    api_resource("tests.testkube.io", "v1", "TestTrigger", "testtriggers")
}

/// Every Event in namespace `ns` that `keep` selects.
async fn events_where(
    client: &Client,
    ns: &str,
    keep: impl Fn(&k8s_openapi::api::events::v1::Event) -> bool,
) -> Vec<k8s_openapi::api::events::v1::Event> {
    Api::<k8s_openapi::api::events::v1::Event>::namespaced(client.clone(), ns)
        .list(&kube::api::ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| keep(e))
        .collect()
}

/// Every Event in namespace `ns` about the object named `object`.
pub async fn events_about(
    client: &Client,
    ns: &str,
    object: &str,
) -> Vec<k8s_openapi::api::events::v1::Event> {
    events_where(client, ns, |e| {
        e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(object)
    })
    .await
}

/// Each printer column of the shipped CRD named `crd` and its cell for `object`, evaluated as
/// the dev cluster does for `kubectl get` (several matches joined with `,`).
pub fn printed_columns(crd: &str, object: &impl serde::Serialize) -> Vec<(String, String)> {
    let crd = agentic_api::crds::all()
        .into_iter()
        .find(|c| c.metadata.name.as_deref() == Some(crd))
        .unwrap();
    let object = serde_json::to_value(object).unwrap();
    crd.spec.versions[0]
        .additional_printer_columns
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|column| {
            let cell = devcluster::table::jsonpath(&object, &column.json_path)
                .iter()
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                .collect::<Vec<_>>()
                .join(",");
            (column.name, cell)
        })
        .collect()
}

/// Every Event in namespace `ns` with reason `reason`.
pub async fn events_with_reason(
    client: &Client,
    ns: &str,
    reason: &str,
) -> Vec<k8s_openapi::api::events::v1::Event> {
    events_where(client, ns, |e| e.reason.as_deref() == Some(reason)).await
}

/// The `(type, reason)` of every Event in namespace `ns` about the object named `object`.
pub async fn event_reasons(client: &Client, ns: &str, object: &str) -> Vec<(String, String)> {
    events_about(client, ns, object)
        .await
        .into_iter()
        .map(|e| (e.type_.unwrap_or_default(), e.reason.unwrap_or_default()))
        .collect()
}

/// Adds `ambient-code.io/managed=true` to namespace `name`.
pub async fn label_managed(client: &Client, name: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"ambient-code.io/managed": "true"}}})),
    )
    .await
    .unwrap();
}

/// A CRD of a foreign kind from the dev cluster's fixtures, e.g. `labs/claim-vcluster.yaml`.
pub fn fixture(path: &str) -> CustomResourceDefinition {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../devcluster/fixtures")
        .join(path);
    serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The CRDs this crate generates for API group `group`.
pub fn crds_of(group: &str) -> Vec<CustomResourceDefinition> {
    let crds: Vec<_> = agentic_api::crds::all()
        .into_iter()
        .filter(|c| c.spec.group == group)
        .collect();
    assert!(!crds.is_empty(), "no CRD of group {group}");
    crds
}

/// Creates `crd` and waits until discovery serves it.
pub async fn install_crd(client: &Client, crd: &CustomResourceDefinition) {
    Api::<CustomResourceDefinition>::all(client.clone())
        .create(&PostParams::default(), crd)
        .await
        .unwrap();
    let version = crd
        .spec
        .versions
        .iter()
        .find(|v| v.served)
        .unwrap_or(&crd.spec.versions[0]);
    let gv = format!("{}/{}", crd.spec.group, version.name);
    let plural = &crd.spec.names.plural;
    eventually(&format!("{plural} to be served"), || async {
        client
            .list_api_group_resources(&gv)
            .await
            .is_ok_and(|l| l.resources.iter().any(|r| &r.name == plural))
    })
    .await;
}

/// Creates the sessions CRDs and waits until discovery serves them.
pub async fn install_crds(client: &Client) {
    for crd in crds_of(agentic_api::sessions::GROUP) {
        install_crd(client, &crd).await;
    }
}

/// A dev cluster with RBAC when `rbac` is set and the sessions CRDs installed and served.
pub async fn cluster(rbac: bool) -> TestCluster {
    Setup::new()
        .rbac(rbac)
        .crds(agentic_api::sessions::GROUP)
        .start()
        .await
}

// ---------------------------------------------------------------------------------------------
// Dev cluster
// ---------------------------------------------------------------------------------------------

/// What a test's dev cluster starts with.
pub struct Setup {
    rbac: bool,
    hooks: Hooks,
    crds: Vec<CustomResourceDefinition>,
    namespaces: Vec<(String, Vec<(String, String)>)>,
    simulators: Simulators,
    late_simulators: Simulators,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            rbac: false,
            hooks: Hooks::default(),
            crds: Vec::new(),
            namespaces: Vec::new(),
            simulators: Simulators::none(),
            late_simulators: Simulators::none(),
        }
    }
}

impl Setup {
    /// An empty cluster: no RBAC, hooks, CRDs, namespaces or simulators.
    pub fn new() -> Self {
        Self::default()
    }

    /// Enforces RBAC for every client but the admin one.
    #[must_use]
    pub fn rbac(mut self, on: bool) -> Self {
        self.rbac = on;
        self
    }

    /// Request hooks (authorizer, subresources, admission); admission hooks added with
    /// [`Self::admission`] run after those given here.
    #[must_use]
    pub fn hooks(mut self, hooks: Hooks) -> Self {
        let admission = std::mem::take(&mut self.hooks.admission);
        self.hooks = hooks;
        self.hooks.admission.extend(admission);
        self
    }

    /// Adds an admission hook.
    #[must_use]
    pub fn admission(mut self, hook: impl AdmissionHook + 'static) -> Self {
        self.hooks.admission.push(Arc::new(hook));
        self
    }

    /// Installs this crate's CRDs of API group `group`.
    #[must_use]
    pub fn crds(mut self, group: &str) -> Self {
        self.crds.extend(crds_of(group));
        self
    }

    /// Installs the fixture CRD at `path` under the dev cluster's fixtures.
    #[must_use]
    pub fn fixture(mut self, path: &str) -> Self {
        self.crds.push(fixture(path));
        self
    }

    /// Creates namespace `name` with `labels`.
    #[must_use]
    pub fn namespace(mut self, name: &str, labels: &[(&str, &str)]) -> Self {
        self.namespaces.push((
            name.to_owned(),
            labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        ));
        self
    }

    /// Runs `simulators` from the moment the server starts.
    #[must_use]
    pub fn simulators(mut self, simulators: Simulators) -> Self {
        self.simulators = simulators;
        self
    }

    /// Runs `simulators` only once the CRDs are served and the namespaces exist, for
    /// simulators of foreign kinds whose watches would otherwise start by backing off.
    #[must_use]
    pub fn simulators_after_setup(mut self, simulators: Simulators) -> Self {
        self.late_simulators = simulators;
        self
    }

    /// Starts the cluster (and the simulators that run from the start), installs the CRDs
    /// (waiting until they are served), creates the namespaces and starts the remaining
    /// simulators.
    pub async fn start(self) -> TestCluster {
        crypto();
        let cluster = devcluster::DevCluster::builder()
            .hooks(self.hooks)
            .rbac(self.rbac)
            .with_simulators(self.simulators)
            .start()
            .await
            .expect("dev cluster starts");
        let client = cluster.client();
        for crd in &self.crds {
            install_crd(&client, crd).await;
        }
        for (name, labels) in &self.namespaces {
            let labels: Vec<(&str, &str)> = labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            namespace(&client, name, &labels).await;
        }
        let simulators = (!self.late_simulators.is_empty())
            .then(|| AbortOnDrop(tokio::spawn(self.late_simulators.run(client))));
        TestCluster {
            cluster,
            simulators,
        }
    }
}

/// Aborts its task when dropped.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A started dev cluster and its simulators (stopped when this is dropped).
pub struct TestCluster {
    cluster: devcluster::DevCluster,
    simulators: Option<AbortOnDrop>,
}

impl TestCluster {
    /// Stops the simulators, then the server.
    pub async fn shutdown(self) {
        drop(self.simulators);
        self.cluster.shutdown().await;
    }
}

impl Deref for TestCluster {
    type Target = devcluster::DevCluster;

    fn deref(&self) -> &Self::Target {
        &self.cluster
    }
}

/// Waits until `cluster` has answered no write for a whole second, failing after
/// [`DEADLINE`]: what a test does before counting writes, instead of a fixed sleep that a
/// slow machine may outrun.
pub async fn wait_quiet(cluster: &devcluster::DevCluster) {
    let mut last = u64::MAX;
    eventually("a second without writes", || {
        let before = last;
        let now = cluster.stats().writes;
        last = now;
        async move {
            if now != before {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            now == before
        }
    })
    .await;
}

/// An object a scripted child's `devcluster.io/*` annotations are copied from.
pub struct ScriptSource {
    /// API group of the source.
    pub group: String,
    /// Resource (plural) of the source.
    pub resource: String,
    /// Namespace of the source.
    pub namespace: String,
    /// Name of the source.
    pub name: String,
}

/// Scripts the objects the operator creates: when an object of one of `kinds` is created,
/// `defaults` and then the `devcluster.io/*` annotations of the object `source` names are
/// written onto it, so a test drives the simulators through the resource it creates.
pub struct ScriptChildren {
    /// Kinds the hook acts on.
    pub kinds: &'static [&'static str],
    /// The source of the created object's script, if it has one.
    pub source: fn(&AdmissionRequest<'_>, &Value) -> Option<ScriptSource>,
    /// Annotations every scripted object gets first.
    pub defaults: &'static [(&'static str, &'static str)],
}

impl AdmissionHook for ScriptChildren {
    fn admit<'a>(
        &'a self,
        request: &'a AdmissionRequest<'a>,
        object: &'a mut Value,
    ) -> BoxFuture<'a, Result<(), devcluster::ApiError>> {
        Box::pin(async move {
            if request.operation != Operation::Create || !self.kinds.contains(&request.kind) {
                return Ok(());
            }
            let Some(source) = (self.source)(request, object) else {
                return Ok(());
            };
            let mut script: serde_json::Map<String, Value> = self
                .defaults
                .iter()
                .map(|(k, v)| ((*k).to_owned(), json!(v)))
                .collect();
            if let Some(s) = request.cluster.get(
                &source.group,
                &source.resource,
                &source.namespace,
                &source.name,
            ) && let Some(annotations) = s["metadata"]["annotations"].as_object()
            {
                for (k, v) in annotations {
                    if k.starts_with("devcluster.io/") {
                        script.insert(k.clone(), v.clone());
                    }
                }
            }
            let meta = object["metadata"].as_object_mut().unwrap();
            let annotations = meta
                .entry("annotations")
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .unwrap();
            annotations.extend(script);
            Ok(())
        })
    }
}

/// The session a runner pod belongs to (label `agentic-session`), for [`ScriptChildren`].
fn runner_session(request: &AdmissionRequest<'_>, pod: &Value) -> Option<ScriptSource> {
    let labels = &pod["metadata"]["labels"];
    if labels["app"] != "ambient-code-runner" {
        return None;
    }
    Some(ScriptSource {
        group: "vteam.ambient-code".into(),
        resource: "agenticsessions".into(),
        namespace: request.info.namespace.clone(),
        name: labels["agentic-session"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    })
}

/// Scripts runner pods through their session's `devcluster.io/*` annotations; by default the
/// init container finishes at once and the runner and its sidecar run until stopped.
pub fn scripted_runner_pods() -> ScriptChildren {
    ScriptChildren {
        kinds: &["Pod"],
        source: runner_session,
        defaults: &[
            ("devcluster.io/run-seconds.init-hydrate", "0.2"),
            ("devcluster.io/run-seconds.ambient-code-runner", "forever"),
            ("devcluster.io/run-seconds.state-sync", "forever"),
        ],
    }
}

/// Creates the `ambient-runner-secrets` Secret runners need in namespace `ns`.
pub async fn runner_secret(client: &Client, ns: &str) {
    let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "ambient-runner-secrets"},
        "stringData": {"ANTHROPIC_API_KEY": "test"}
    }))
    .unwrap();
    Api::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
}

// ---------------------------------------------------------------------------------------------
// Operator
// ---------------------------------------------------------------------------------------------

/// The sessions family with the `state-sync` sidecar switched on (its runner pods keep
/// running while the sidecar lives, whatever happens to the runner container).
pub struct SessionsWithSidecar;

impl Family for SessionsWithSidecar {
    fn name(&self) -> &'static str {
        "sessions"
    }

    fn required_crds(&self) -> Vec<agentic_operator::runtime::CrdRef> {
        agentic_operator::sessions::Sessions.required_crds()
    }

    fn build(
        &self,
        rt: &agentic_operator::runtime::RuntimeContext,
        watches: &mut agentic_operator::runtime::SharedWatches,
    ) -> Result<
        Vec<agentic_operator::runtime::ControllerTask>,
        agentic_operator::runtime::FamilyError,
    > {
        let mut config = agentic_operator::sessions::session::config::SessionConfig::defaults(
            &rt.settings.runner_image,
            "ambient-code",
        );
        config.state_sync = true;
        agentic_operator::sessions::session::controllers_with(rt, watches, config)
    }
}

/// Operator settings for tests: no listeners, only the controllers of `family`, and the
/// environment `env`; `extra` adjusts the arguments.
pub fn settings_for(
    family: &str,
    env: &[(&str, &str)],
    extra: impl FnOnce(&mut RunArgs),
) -> Settings {
    let mut args = RunArgs {
        metrics_bind_address: "0".into(),
        health_probe_bind_address: "0".into(),
        webhook_bind_address: "0".into(),
        controllers: Some(vec![family.into()]),
        ..RunArgs::default()
    };
    extra(&mut args);
    Settings::resolve(&args, &Environment::fixed(env.iter().copied(), None)).unwrap()
}

/// Settings of the sessions family for pod `pod` in namespace `ambient-code`.
pub fn settings(pod: &str, extra: impl FnOnce(&mut RunArgs)) -> Settings {
    settings_for(
        "sessions",
        &[("POD_NAME", pod), ("NAMESPACE", "ambient-code")],
        extra,
    )
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
    /// Starts the manager with every family of the operator, `client` and `settings`.
    pub fn start(client: Client, settings: Settings) -> Self {
        Self::start_with(client, settings, agentic_operator::families())
    }

    /// Starts the manager with `families`, `client` and `settings`.
    pub fn start_with(client: Client, settings: Settings, families: Vec<Box<dyn Family>>) -> Self {
        let manager = Manager::new(settings, families);
        let metrics = manager.metrics().clone();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(manager.run_with_client(client, shutdown.clone()));
        Self {
            shutdown,
            metrics,
            task,
        }
    }

    /// Stops it (failing when it does not stop within [`DEADLINE`]) and returns how the
    /// manager ended.
    pub async fn stop(self) -> Result<(), RunError> {
        self.shutdown.cancel();
        tokio::time::timeout(DEADLINE, self.task)
            .await
            .expect("operator shuts down")
            .expect("operator task ends without panicking")
    }

    /// Sum of every sample of `name` whose labels contain all of `labels` (integer samples).
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        metric(&self.metrics, name, labels)
    }

    /// Finished reconciles of `controller` so far, whatever their result.
    pub fn reconciles(&self, controller: &str) -> u64 {
        self.metric(
            "controller_runtime_reconcile_total",
            &[("controller", controller)],
        )
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

// ---------------------------------------------------------------------------------------------
// RBAC manifests
// ---------------------------------------------------------------------------------------------

/// The user the operator's `ServiceAccount` authenticates as.
pub const OPERATOR_USER: &str = "system:serviceaccount:ambient-code:agentic-operator";

/// The directory of the shipped RBAC manifests.
pub fn config_rbac() -> PathBuf {
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

/// Creates one RBAC manifest (`ServiceAccount`, `[Cluster]Role`, `[Cluster]RoleBinding`).
pub async fn create(client: &Client, doc: &Value) {
    async fn post<K>(api: Api<K>, doc: &Value)
    where
        K: kube::Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
    {
        let object: K = serde_json::from_value(doc.clone()).unwrap();
        api.create(&PostParams::default(), &object).await.unwrap();
    }
    let ns = doc["metadata"]["namespace"].as_str().unwrap_or_default();
    match doc["kind"].as_str().unwrap() {
        "ServiceAccount" => {
            post::<ServiceAccount>(Api::namespaced(client.clone(), ns), doc).await;
        }
        "ClusterRole" => post::<ClusterRole>(Api::all(client.clone()), doc).await,
        "ClusterRoleBinding" => post::<ClusterRoleBinding>(Api::all(client.clone()), doc).await,
        "Role" => post::<Role>(Api::namespaced(client.clone(), ns), doc).await,
        "RoleBinding" => post::<RoleBinding>(Api::namespaced(client.clone(), ns), doc).await,
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

/// Replaces the stored schema of `spec` in CRD `crd` with an open object, as an older or
/// hand-edited CRD might have it, and waits until `loose` (which the real schema refuses) is
/// created as `ar`, in `ns` when the kind is namespaced.
pub async fn loosen_spec_schema_and_create(
    client: &Client,
    crd: &str,
    ar: &ApiResource,
    ns: Option<&str>,
    loose: Value,
) {
    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    let mut stored = crds.get(crd).await.unwrap();
    for version in &mut stored.spec.versions {
        let schema = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
            .unwrap();
        let mut open = serde_json::to_value(&*schema).unwrap();
        open["properties"]["spec"] =
            json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true});
        *schema = serde_json::from_value(open).unwrap();
    }
    crds.replace(crd, &PostParams::default(), &stored)
        .await
        .unwrap();
    let object: DynamicObject = serde_json::from_value(loose).unwrap();
    let api = match ns {
        Some(ns) => dynamic(client, ar, ns),
        None => Api::all_with(client.clone(), ar),
    };
    wait_for("the loosened schema to take the object", || async {
        api.create(&PostParams::default(), &object).await.ok()
    })
    .await;
}

/// Waits for a Warning Event `InvalidObject` about `ns/name` and returns its note.
pub async fn invalid_object_note(client: &Client, ns: &str, name: &str) -> String {
    let event = wait_for(
        &format!("an InvalidObject Event on {ns}/{name}"),
        || async {
            events_about(client, ns, name)
                .await
                .into_iter()
                .find(|e| e.reason.as_deref() == Some("InvalidObject"))
        },
    )
    .await;
    assert_eq!(event.type_.as_deref(), Some("Warning"), "{event:?}");
    event.note.unwrap_or_default()
}

/// Ends the runner container of the session `ns/session` now, through its pod's
/// `devcluster.io/run-seconds.ambient-code-runner` annotation: a test creates the session with
/// `run-seconds: forever` and ends the run when it is ready, so it never has to catch a run
/// that ends on a timer.
pub async fn end_runner(client: &Client, ns: &str, session: &str) {
    let pods = Api::<k8s_openapi::api::core::v1::Pod>::namespaced(client.clone(), ns);
    let listed = pods
        .list(&kube::api::ListParams::default().labels(&format!("agentic-session={session}")))
        .await
        .unwrap();
    let [pod] = listed.items.as_slice() else {
        panic!(
            "session {ns}/{session} has {} runner pods",
            listed.items.len()
        );
    };
    pods.patch(
        &kube::ResourceExt::name_any(pod),
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"metadata": {"annotations": {
            "devcluster.io/run-seconds.ambient-code-runner": "0"}}})),
    )
    .await
    .unwrap();
}
