//! `agentic-operator dev`: the whole operator on a laptop in one command.
//!
//! Starts an in-memory API server (`devcluster`) with every simulator, installs our CRDs and
//! the foreign ones the families talk to, runs every controller family through the same
//! [`Manager`] as `run`, applies the embedded `examples/` and shows their progress until they
//! settle. docs/dev.md describes it for users.

pub mod embedded;
mod progress;

use std::{
    collections::BTreeMap,
    io::IsTerminal,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::ExitCode,
    sync::Arc,
    time::Duration,
};

use devcluster::{
    AdmissionHook, DevCluster, Hooks,
    hooks::{AdmissionRequest, Operation},
    simulators::Simulators,
};
use futures::future::BoxFuture;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{
    Api, Client,
    api::{DynamicObject, Patch, PatchParams},
    core::GroupVersionKind,
    discovery::{ApiCapabilities, ApiResource, Scope},
};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::runtime::{
    config::{Environment, RunArgs, Settings},
    manager::Manager,
};

pub use progress::{Row, Tracked};

/// Field manager of everything dev mode applies.
pub const FIELD_MANAGER: &str = "agentic-operator-dev";

/// Default `--settle-timeout`.
pub const DEFAULT_SETTLE_TIMEOUT: Duration = Duration::from_mins(3);

/// Flags of `agentic-operator dev`.
#[derive(Debug, Clone, clap::Args)]
pub struct DevArgs {
    /// Port of the in-memory API server on 127.0.0.1 (0 = a free port).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub port: u16,

    /// Do not apply the bundled examples; start with an empty cluster.
    #[arg(long)]
    pub no_examples: bool,

    /// Exit once every example has settled (exit 0), or with exit 1 when one fails or the
    /// settle timeout passes first. For tests and CI.
    #[arg(long)]
    pub exit_when_settled: bool,

    /// How long the examples may take to settle.
    #[arg(long, default_value = "3m", value_parser = crate::runtime::config::parse_duration,
          value_name = "DURATION")]
    pub settle_timeout: Duration,

    /// Write the kubeconfig here instead of a temporary directory removed on exit.
    #[arg(long, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,

    /// Address of the operator's /metrics endpoint ("0" = disabled).
    #[arg(long, default_value = "127.0.0.1:0", value_name = "ADDR")]
    pub metrics_bind_address: String,

    /// Address of the operator's /healthz and /readyz probes ("0" = disabled).
    #[arg(long, default_value = "127.0.0.1:0", value_name = "ADDR")]
    pub health_probe_bind_address: String,

    /// The operator's longest retry delay for an object whose reconciles keep failing (as
    /// `run --max-retry-backoff`).
    #[arg(long, default_value = "1000s", value_parser = crate::runtime::config::parse_duration,
          value_name = "DURATION")]
    pub max_retry_backoff: Duration,
}

impl Default for DevArgs {
    fn default() -> Self {
        Self {
            port: 0,
            no_examples: false,
            exit_when_settled: false,
            settle_timeout: DEFAULT_SETTLE_TIMEOUT,
            kubeconfig: None,
            metrics_bind_address: "127.0.0.1:0".into(),
            health_probe_bind_address: "127.0.0.1:0".into(),
            max_retry_backoff: Duration::from_secs(1000),
        }
    }
}

/// Why dev mode could not start or did not settle.
#[derive(Debug, thiserror::Error)]
pub enum DevError {
    /// The in-memory API server did not start.
    #[error("cannot start the in-memory API server: {0}; pick another --port or free it")]
    Cluster(#[from] devcluster::StartError),
    /// An embedded manifest is not valid YAML (a build of a broken tree).
    #[error("embedded manifest {file} is not valid YAML: {source}")]
    Manifest {
        /// The embedded file.
        file: String,
        /// The parser error.
        #[source]
        source: serde_yaml::Error,
    },
    /// A request to the in-memory API server failed.
    #[error("{what}: {source}")]
    Api {
        /// What was being done.
        what: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
    /// A CRD was not served in time.
    #[error("the API server did not serve {0} within a minute")]
    NotServed(String),
    /// The operator's settings are invalid.
    #[error(
        "invalid operator settings: {0}; check --metrics-bind-address and --health-probe-bind-address"
    )]
    Settings(String),
    /// The operator stopped with an error.
    #[error("the operator stopped: {0}")]
    Operator(String),
    /// Objects failed or did not settle before the deadline.
    #[error("not settled within {timeout:?}: {objects}")]
    NotSettled {
        /// The settle timeout.
        timeout: Duration,
        /// The objects that did not reach their expected state.
        objects: String,
    },
    /// An object reached a terminal state other than the expected one.
    #[error("failed: {0}")]
    Failed(String),
}

/// Copies an `AgenticSession`'s `devcluster.io/*` annotations onto its runner pods when they
/// are created, so that a session can script how long its runner runs.
struct ScriptRunnerPods;

impl AdmissionHook for ScriptRunnerPods {
    fn admit<'a>(
        &'a self,
        request: &'a AdmissionRequest<'a>,
        object: &'a mut Value,
    ) -> BoxFuture<'a, Result<(), devcluster::ApiError>> {
        Box::pin(async move {
            if request.kind != "Pod" || request.operation != Operation::Create {
                return Ok(());
            }
            let labels = &object["metadata"]["labels"];
            if labels["app"] != agentic_api::sessions::APP_RUNNER {
                return Ok(());
            }
            let session = labels[agentic_api::sessions::LABEL_AGENTIC_SESSION]
                .as_str()
                .unwrap_or_default();
            let Some(stored) = request.cluster.get(
                agentic_api::sessions::GROUP,
                "agenticsessions",
                &request.info.namespace,
                session,
            ) else {
                return Ok(());
            };
            let script: serde_json::Map<String, Value> = stored["metadata"]["annotations"]
                .as_object()
                .map(|a| {
                    a.iter()
                        .filter(|(k, _)| k.starts_with(devcluster::simulators::ANNOTATION_PREFIX))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect()
                })
                .unwrap_or_default();
            if script.is_empty() {
                return Ok(());
            }
            if let Some(meta) = object["metadata"].as_object_mut() {
                let annotations = meta.entry("annotations").or_insert_with(|| json!({}));
                if let Some(annotations) = annotations.as_object_mut() {
                    annotations.extend(script);
                }
            }
            Ok(())
        })
    }
}

/// A running dev environment: the in-memory cluster with simulators and the operator.
pub struct DevEnvironment {
    cluster: DevCluster,
    settings: Settings,
    operator: JoinHandle<Result<(), String>>,
    shutdown: CancellationToken,
    tracked: Vec<Tracked>,
}

/// Starts a controller manager with `settings` against `client` as a task of its own.
fn spawn_operator(
    settings: Settings,
    client: Client,
) -> (JoinHandle<Result<(), String>>, CancellationToken) {
    let manager = Manager::new(settings, crate::families());
    let shutdown = CancellationToken::new();
    let run = manager.run_with_client(client, shutdown.clone());
    let operator = tokio::spawn(async move { run.await.map_err(|e| e.to_string()) });
    (operator, shutdown)
}

impl std::fmt::Debug for DevEnvironment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevEnvironment")
            .field("cluster", &self.cluster)
            .field("tracked", &self.tracked.len())
            .finish_non_exhaustive()
    }
}

fn api_error(what: impl Into<String>) -> impl FnOnce(kube::Error) -> DevError {
    let what = what.into();
    move |source| DevError::Api { what, source }
}

fn parse(file: &str, yaml: &str) -> Result<Vec<Value>, DevError> {
    embedded::documents(yaml).map_err(|source| DevError::Manifest {
        file: file.to_owned(),
        source,
    })
}

/// Creates (or updates) `crd` and waits until its plural is served.
async fn install_crd(client: &Client, crd: &CustomResourceDefinition) -> Result<(), DevError> {
    let name = crd.metadata.name.clone().unwrap_or_default();
    Api::<CustomResourceDefinition>::all(client.clone())
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(crd),
        )
        .await
        .map_err(api_error(format!("installing CRD {name}")))?;
    let plural = &crd.spec.names.plural;
    let deadline = tokio::time::Instant::now() + Duration::from_mins(1);
    for version in crd.spec.versions.iter().filter(|v| v.served) {
        let gv = format!("{}/{}", crd.spec.group, version.name);
        loop {
            let served = client
                .list_api_group_resources(&gv)
                .await
                .is_ok_and(|l| l.resources.iter().any(|r| &r.name == plural));
            if served {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                return Err(DevError::NotServed(name));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}

/// Resolves the resource of `object` through discovery.
async fn resource_of(
    client: &Client,
    object: &Value,
) -> Result<(ApiResource, ApiCapabilities), DevError> {
    let api_version = object["apiVersion"].as_str().unwrap_or_default();
    let kind = object["kind"].as_str().unwrap_or_default();
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    kube::discovery::pinned_kind(client, &GroupVersionKind::gvk(group, version, kind))
        .await
        .map_err(api_error(format!("looking up {api_version} {kind}")))
}

/// Applies one object (server-side apply, forced) and returns it as stored.
async fn apply(client: &Client, object: &Value) -> Result<(ApiResource, DynamicObject), DevError> {
    let (resource, caps) = resource_of(client, object).await?;
    let name = object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let api: Api<DynamicObject> = match caps.scope {
        Scope::Cluster => Api::all_with(client.clone(), &resource),
        Scope::Namespaced => Api::namespaced_with(
            client.clone(),
            object["metadata"]["namespace"]
                .as_str()
                .unwrap_or("default"),
            &resource,
        ),
    };
    let stored = api
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(object),
        )
        .await
        .map_err(api_error(format!("applying {} {name}", resource.kind)))?;
    Ok((resource, stored))
}

/// How dev mode scripts the bundled sessions: the one-shot session's runner works for a few
/// seconds and exits 0, the interactive one runs until it is stopped.
fn script_example(object: &mut Value) {
    if object["kind"] != "AgenticSession" {
        return;
    }
    let runner = format!(
        "{}run-seconds.{}",
        devcluster::simulators::ANNOTATION_PREFIX,
        agentic_api::sessions::APP_RUNNER
    );
    let seconds = if progress::stops_when_running(object) {
        "forever"
    } else {
        "3"
    };
    if let Some(meta) = object["metadata"].as_object_mut() {
        let annotations = meta.entry("annotations").or_insert_with(|| json!({}));
        if let Some(annotations) = annotations.as_object_mut() {
            annotations.entry(runner).or_insert_with(|| json!(seconds));
        }
    }
}

impl DevEnvironment {
    /// Starts the cluster, installs the CRDs and prerequisites, starts the operator and (unless
    /// `--no-examples`) applies the examples.
    pub async fn start(args: &DevArgs) -> Result<Self, DevError> {
        if rustls::crypto::ring::default_provider()
            .install_default()
            .is_err()
        {
            tracing::debug!("a rustls crypto provider was already installed");
        }
        let mut builder = DevCluster::builder()
            .addr(SocketAddr::from(([127, 0, 0, 1], args.port)))
            .rbac(true)
            .hooks(Hooks {
                admission: vec![Arc::new(ScriptRunnerPods)],
                ..Hooks::default()
            })
            // Simulated clusters' kubeconfigs point back at this server, so what the labs
            // family writes on a provisioned cluster (the Tailscale OAuth Secret) lands here.
            .with_simulators(Simulators {
                clusters_here: true,
                ..Simulators::all()
            });
        if let Some(path) = &args.kubeconfig {
            builder = builder.kubeconfig_path(path.clone());
        }
        let cluster = builder.start().await?;
        if let Some(auth) = cluster.auth() {
            // kubectl sends no credentials over plain HTTP; let it in as the admin.
            auth.set_credentialless_admin(true);
        }
        let client = cluster.client();
        for crd in agentic_api::crds::all() {
            install_crd(&client, &crd).await?;
        }
        for (file, yaml) in embedded::FOREIGN_CRDS {
            for doc in parse(file, yaml)? {
                let crd: CustomResourceDefinition =
                    serde_json::from_value(doc).map_err(|e| DevError::Manifest {
                        file: file.to_owned(),
                        source: serde::de::Error::custom(e),
                    })?;
                install_crd(&client, &crd).await?;
            }
        }
        let mut tracked = Vec::new();
        if !args.no_examples {
            for doc in parse("prerequisites", embedded::PREREQUISITES)? {
                apply(&client, &doc).await?;
            }
        }

        let run_args = RunArgs {
            metrics_bind_address: args.metrics_bind_address.clone(),
            health_probe_bind_address: args.health_probe_bind_address.clone(),
            webhook_bind_address: "0".into(),
            max_retry_backoff: args.max_retry_backoff,
            ..RunArgs::default()
        };
        let settings = Settings::resolve(
            &run_args,
            &Environment::fixed([("POD_NAME", "agentic-operator-dev")], None),
        )
        .map_err(|e| DevError::Settings(e.to_string()))?;
        let (operator, shutdown) = spawn_operator(settings.clone(), client.clone());

        if !args.no_examples {
            for (file, yaml) in embedded::EXAMPLES {
                for mut doc in parse(file, yaml)? {
                    script_example(&mut doc);
                    let (resource, stored) = apply(&client, &doc).await?;
                    if let Some(t) = Tracked::for_object(&resource, &stored) {
                        tracked.push(t);
                    }
                }
            }
        }
        Ok(Self {
            cluster,
            settings,
            operator,
            shutdown,
            tracked,
        })
    }

    /// An administrator client of the in-memory cluster.
    pub fn client(&self) -> Client {
        self.cluster.client()
    }

    /// The kubeconfig for kubectl and other clients.
    pub fn kubeconfig_path(&self) -> &Path {
        self.cluster.kubeconfig_path()
    }

    /// The API server URL.
    pub fn url(&self) -> String {
        self.cluster.url()
    }

    /// The in-memory cluster itself: its stored objects, request accounting and fault
    /// injection, for tests and tools that drive dev mode as a library.
    pub fn cluster(&self) -> &DevCluster {
        &self.cluster
    }

    /// The objects whose progress is followed (the examples' custom resources).
    pub fn tracked(&self) -> &[Tracked] {
        &self.tracked
    }

    /// Reads the current rows of every tracked object, stopping the interactive session once
    /// it runs.
    pub async fn observe(&self) -> Vec<Row> {
        let client = self.client();
        let mut rows = Vec::with_capacity(self.tracked.len());
        for t in &self.tracked {
            rows.push(t.observe(&client).await);
        }
        rows
    }

    /// Polls until every tracked object settled, one failed, or `timeout` passed; calls
    /// `show` with the rows after each poll.
    pub async fn wait_settled(
        &self,
        timeout: Duration,
        mut show: impl FnMut(&[Row]),
    ) -> Result<Vec<Row>, DevError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.operator.is_finished() {
                return Err(DevError::Operator(
                    "the controller manager ended early; see the log above".into(),
                ));
            }
            let rows = self.observe().await;
            show(&rows);
            let failed: Vec<String> = rows
                .iter()
                .filter(|r| r.failed)
                .map(Row::describe)
                .collect();
            if !failed.is_empty() {
                return Err(DevError::Failed(failed.join("; ")));
            }
            if rows.iter().all(|r| r.settled) {
                return Ok(rows);
            }
            if tokio::time::Instant::now() > deadline {
                return Err(DevError::NotSettled {
                    timeout,
                    objects: rows
                        .iter()
                        .filter(|r| !r.settled)
                        .map(Row::describe)
                        .collect::<Vec<_>>()
                        .join("; "),
                });
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Kills the operator as a crash would, without draining: its watches, reconciles and
    /// servers are dropped wherever they are (Events already being sent may still land). Then
    /// starts a new one against the same cluster, as a restarted pod would. With
    /// `graceful`, the old one is shut down as on SIGTERM instead (in-flight reconciles finish).
    ///
    /// # Errors
    /// [`DevError::Operator`] when the old operator had already ended with an error.
    pub async fn restart_operator(&mut self, graceful: bool) -> Result<(), DevError> {
        if graceful {
            self.shutdown.cancel();
        } else {
            self.operator.abort();
        }
        let ended = (&mut self.operator).await;
        let (operator, shutdown) = spawn_operator(self.settings.clone(), self.client());
        self.operator = operator;
        self.shutdown = shutdown;
        match ended {
            Ok(Err(e)) => Err(DevError::Operator(e)),
            Err(e) if !e.is_cancelled() => Err(DevError::Operator(e.to_string())),
            _ => Ok(()),
        }
    }

    /// Stops the operator (waiting for in-flight reconciles) and then the cluster.
    pub async fn shutdown(self) -> Result<(), DevError> {
        self.shutdown.cancel();
        let result = match self.operator.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(DevError::Operator(e)),
            Err(e) => Err(DevError::Operator(e.to_string())),
        };
        self.cluster.shutdown().await;
        result
    }
}

/// Log filter of dev mode when `RUST_LOG` is not set: warnings only, so the table stays
/// readable.
pub const DEV_LOG_FILTER: &str = "warn,kube_client::client::builder=off";

/// Sends logs to stderr, or, when stdout is a terminal showing the table, to a file (returned)
/// so that log lines do not break the redrawn table.
fn init_logging(terminal: bool) -> Option<PathBuf> {
    use tracing_subscriber::{EnvFilter, fmt, prelude::*};
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEV_LOG_FILTER));
    let file = if terminal {
        let path =
            std::env::temp_dir().join(format!("agentic-operator-dev-{}.log", std::process::id()));
        std::fs::File::create(&path).ok().map(|f| (path, f))
    } else {
        None
    };
    if let Some((path, f)) = file {
        let _ = tracing_subscriber::registry()
            .with(filter)
            .with(
                fmt::layer()
                    .with_writer(std::sync::Mutex::new(f))
                    .with_ansi(false)
                    .with_target(false),
            )
            .try_init();
        Some(path)
    } else {
        let _ = tracing_subscriber::registry()
            .with(filter)
            .with(fmt::layer().with_writer(std::io::stderr).with_target(false))
            .try_init();
        None
    }
}

/// Prints one line on stdout, ignoring a closed pipe (the operator keeps running).
fn say(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout(), "{line}");
}

async fn run(args: DevArgs, log_file: Option<PathBuf>) -> Result<(), DevError> {
    let stop = CancellationToken::new();
    crate::runtime::shutdown::spawn_signal_handler(stop.clone());
    say(format_args!(
        "starting the in-memory cluster and the operator..."
    ));
    let env = DevEnvironment::start(&args).await?;
    let kubeconfig = env.kubeconfig_path().display().to_string();
    let mut preamble = vec![
        format!("API server:  {}", env.url()),
        format!("kubeconfig:  {kubeconfig}"),
    ];
    if let Some(path) = &log_file {
        preamble.push(format!("log:         {}", path.display()));
    }
    preamble.push(format!(
        "try:         kubectl --kubeconfig {kubeconfig} get agenticsessions,experiments.testbench.agentic-layer.ai,experiments.experiments.illm.io -A"
    ));
    preamble.push(String::new());
    for line in &preamble {
        say(format_args!("{line}"));
    }
    let mut display = progress::Display::new(std::io::stdout().is_terminal(), preamble);
    let outcome = tokio::select! {
        () = stop.cancelled() => None,
        r = env.wait_settled(args.settle_timeout, |rows| display.show(rows)) => Some(r),
    };
    match outcome {
        None => {}
        Some(Ok(rows)) => {
            say(format_args!(""));
            say(format_args!("settled: {} objects", rows.len()));
            for row in &rows {
                say(format_args!("  {}", row.describe()));
            }
            if !args.exit_when_settled {
                say(format_args!("serving; press Ctrl-C to stop"));
                stop.cancelled().await;
            }
        }
        Some(Err(error)) => {
            if args.exit_when_settled {
                let _ = env.shutdown().await;
                return Err(error);
            }
            eprintln!("warning: {error}");
            say(format_args!("serving; press Ctrl-C to stop"));
            stop.cancelled().await;
        }
    }
    say(format_args!("stopping..."));
    env.shutdown().await
}

/// Runs `agentic-operator dev` and returns the process exit code.
pub fn command(args: DevArgs) -> ExitCode {
    let log_file = init_logging(std::io::stdout().is_terminal());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args, log_file)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// The expected settled state of each bundled example, by `kind/namespace/name` (for tests
/// and the summary).
pub fn expected_states() -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (file, yaml) in embedded::EXAMPLES {
        let Ok(docs) = parse(file, yaml) else {
            continue;
        };
        for doc in docs {
            if let Some(expected) = progress::expectation(&doc) {
                out.insert(
                    format!(
                        "{}/{}/{}",
                        doc["kind"].as_str().unwrap_or_default(),
                        doc["metadata"]["namespace"].as_str().unwrap_or_default(),
                        doc["metadata"]["name"].as_str().unwrap_or_default()
                    ),
                    expected.label(),
                );
            }
        }
    }
    out
}
