//! A Kubernetes-compatible API server that runs in-process, for tests, benchmarks and
//! no-setup local runs.
//!
//! ```no_run
//! # async fn demo() -> Result<(), devcluster::StartError> {
//! let cluster = devcluster::DevCluster::start().await?;
//! let client = cluster.client();
//! // use `client` with kube's `Api`, `watcher` and `Controller`, or point kubectl at
//! // `cluster.kubeconfig_path()`.
//! # drop(client);
//! # Ok(()) }
//! ```
//!
//! See `docs/devcluster.md` for what is implemented.

// `ApiError` carries a whole `metav1.Status`; it is built only on failing requests, so its
// size on the error path does not matter.
#![allow(clippy::result_large_err)]

pub mod admission;
pub mod auth;
pub mod controllers;
pub mod discovery;
pub mod error;
pub mod hooks;
pub mod ops;
pub mod patch;
pub mod protobuf;
pub mod registry;
pub mod selectors;
pub mod server;
pub mod simulators;
pub mod ssa;
pub mod state;
pub mod store;
pub mod table;
pub mod watch;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use error::ApiError;
pub use hooks::{AdmissionHook, Authenticator, Authorizer, Hooks, SubresourceHandler};
pub use ops::{FaultConfig, StatsSnapshot, VerbStats};
pub use state::Options;

use state::State;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The requested address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The kubeconfig file could not be written.
    #[error("cannot write kubeconfig {path}: {source}")]
    Kubeconfig {
        /// Its path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// kube could not build a client configuration from the kubeconfig.
    #[error("cannot build a client configuration from {path}: {message}")]
    ClientConfig {
        /// The kubeconfig path.
        path: PathBuf,
        /// What kube reported.
        message: String,
    },
    /// The TLS CA or serving certificate could not be generated.
    #[error("cannot set up TLS: {0}")]
    Tls(#[from] auth::tls::TlsError),
}

/// A cheap, cloneable handle on the running cluster's state: read objects, accounting and
/// fault injection. Hooks receive one too.
#[derive(Clone, Debug)]
pub struct Cluster(pub(crate) Arc<State>);

impl Cluster {
    /// The URL the server is reached at.
    pub fn url(&self) -> Option<&str> {
        self.0.opts.advertised_url.as_deref()
    }

    /// The admin bearer token of the server's kubeconfig.
    pub fn admin_token(&self) -> &str {
        &self.0.opts.admin_token
    }

    /// One stored object (`group` empty for core, `namespace` empty for cluster-scoped).
    pub fn get(&self, group: &str, resource: &str, namespace: &str, name: &str) -> Option<Value> {
        self.object(group, resource, namespace, name)
            .map(|o| o.value.clone())
    }

    /// One stored object, shared rather than copied.
    pub(crate) fn object(
        &self,
        group: &str,
        resource: &str,
        namespace: &str,
        name: &str,
    ) -> Option<Arc<store::Obj>> {
        let def = self.0.def(group, resource)?;
        self.0.store(&def.group_resource()).get(namespace, name)
    }

    /// Every resource that has a store, as `(group, plural)`.
    pub fn resources(&self) -> Vec<(String, String)> {
        self.0
            .stores()
            .into_iter()
            .map(|(gr, _)| (gr.group, gr.resource))
            .collect()
    }

    /// Every stored object of a resource, across namespaces.
    pub fn list(&self, group: &str, resource: &str) -> Vec<Value> {
        self.objects(group, resource)
            .into_iter()
            .map(|o| o.value.clone())
            .collect()
    }

    /// Every stored object of a resource, across namespaces, shared rather than copied.
    pub(crate) fn objects(&self, group: &str, resource: &str) -> Vec<Arc<store::Obj>> {
        let Some(def) = self.0.def(group, resource) else {
            return Vec::new();
        };
        self.0.store(&def.group_resource()).all()
    }

    /// The current global resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.0.rv.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Request accounting so far.
    pub fn stats(&self) -> StatsSnapshot {
        self.0.stats.snapshot()
    }

    /// Resets the request accounting.
    pub fn reset_stats(&self) {
        self.0.stats.reset();
    }

    /// Current fault settings.
    pub fn faults(&self) -> FaultConfig {
        self.0
            .faults
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Replaces the fault settings; the error names the invalid field.
    pub fn set_faults(&self, f: FaultConfig) -> Result<(), String> {
        f.validate()?;
        *self
            .0
            .faults
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = f;
        self.0.unpause.notify_waiters();
        Ok(())
    }

    /// Ends every open watch stream (clients reconnect from their last resourceVersion).
    pub fn cut_watches(&self) {
        self.0.cut.send_modify(|g| *g += 1);
    }

    /// Forgets all watch history, so watches resuming from an older resourceVersion get a
    /// 410 ERROR event and relist; open watches are cut.
    pub fn expire_resource_versions(&self) {
        for (_, s) in self.0.stores() {
            s.compact();
        }
        self.cut_watches();
    }
}

type StartHook = Box<dyn FnOnce(Cluster, kube::Client) -> BoxFuture<'static, ()> + Send>;

/// Options for [`DevCluster`].
pub struct DevClusterBuilder {
    opts: Options,
    hooks: Hooks,
    addr: SocketAddr,
    kubeconfig: Option<PathBuf>,
    on_start: Vec<StartHook>,
    rbac: bool,
    tls: bool,
    admission_webhooks: bool,
    webhook_services: Vec<admission::ServiceMapping>,
}

impl std::fmt::Debug for DevClusterBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevClusterBuilder")
            .field("opts", &self.opts)
            .field("hooks", &self.hooks)
            .field("addr", &self.addr)
            .field("kubeconfig", &self.kubeconfig)
            .finish_non_exhaustive()
    }
}

impl Default for DevClusterBuilder {
    fn default() -> Self {
        Self {
            opts: Options::default(),
            hooks: Hooks::default(),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            kubeconfig: None,
            on_start: Vec::new(),
            rbac: false,
            tls: false,
            admission_webhooks: false,
            webhook_services: Vec::new(),
        }
    }
}

impl DevClusterBuilder {
    /// Listen address; the default is 127.0.0.1 on a free port.
    #[must_use]
    pub fn addr(mut self, addr: SocketAddr) -> Self {
        self.addr = addr;
        self
    }

    /// Where to write the kubeconfig; the default is a fresh temporary directory.
    #[must_use]
    pub fn kubeconfig_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.kubeconfig = Some(path.into());
        self
    }

    /// Server options.
    #[must_use]
    pub fn options(mut self, opts: Options) -> Self {
        self.opts = opts;
        self
    }

    /// Events kept per resource for resuming watches.
    #[must_use]
    pub fn history_limit(mut self, n: usize) -> Self {
        self.opts.history_limit = n;
        self
    }

    /// Interval of BOOKMARK events on idle watches.
    #[must_use]
    pub fn bookmark_interval(mut self, d: Duration) -> Self {
        self.opts.bookmark_interval = d;
        self
    }

    /// Request path hooks (authentication, authorization, admission, subresources).
    #[must_use]
    pub fn hooks(mut self, hooks: Hooks) -> Self {
        self.hooks = hooks;
        self
    }

    /// Calls the webhooks registered in stored `ValidatingWebhookConfiguration` and
    /// `MutatingWebhookConfiguration` objects on every write (off by default in the library,
    /// on in `devcluster serve`). The webhook hook runs after the hooks given to
    /// [`Self::hooks`].
    #[must_use]
    pub fn admission_webhooks(mut self, on: bool) -> Self {
        self.admission_webhooks = on;
        self
    }

    /// Routes webhook calls for a `clientConfig.service` to a local address (see
    /// [`admission::ServiceMapping`]).
    #[must_use]
    pub fn webhook_service(mut self, mapping: admission::ServiceMapping) -> Self {
        self.webhook_services.push(mapping);
        self
    }

    /// A task started with the cluster and stopped with it (e.g. a simulated controller).
    #[must_use]
    pub fn on_start(
        mut self,
        f: impl FnOnce(Cluster, kube::Client) -> BoxFuture<'static, ()> + Send + 'static,
    ) -> Self {
        self.on_start.push(Box::new(f));
        self
    }

    /// Starts serving.
    pub async fn start(self) -> Result<DevCluster, StartError> {
        let listener = tokio::net::TcpListener::bind(self.addr)
            .await
            .map_err(|source| StartError::Bind {
                addr: self.addr,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: self.addr,
            source,
        })?;
        let (path, tempdir) = if let Some(p) = self.kubeconfig {
            (p, None)
        } else {
            let dir = std::env::temp_dir().join(format!(
                "devcluster-{}-{}",
                std::process::id(),
                state::name_suffix()
            ));
            (dir.join("kubeconfig"), Some(dir))
        };
        let tls = auth::tls::ServerTls::when(self.tls, addr.ip())?;
        let ca_pem = tls.as_ref().map(|t| t.ca_pem.clone());
        write_kubeconfig(&path, addr, &self.opts.admin_token, ca_pem.as_deref())?;
        let config = client_config(&path).await?;
        let client =
            kube::Client::try_from(config.clone()).map_err(|e| StartError::ClientConfig {
                path: path.clone(),
                message: e.to_string(),
            })?;
        let mut hooks = self.hooks;
        if self.admission_webhooks {
            hooks
                .admission
                .push(Arc::new(admission::WebhookAdmission::new(
                    self.webhook_services,
                )));
        }
        let auth = self
            .rbac
            .then(|| auth::Auth::install(&mut hooks, &self.opts.admin_token));
        let mut opts = self.opts;
        opts.advertised_url.get_or_insert_with(|| {
            let scheme = if tls.is_some() { "https" } else { "http" };
            format!("{scheme}://{addr}")
        });
        let st = State::new(opts, hooks);
        if let Some(a) = &auth {
            a.bind(&st);
        }
        let stop = CancellationToken::new();
        let router = axum::Router::new()
            .fallback(server::handle)
            .with_state(st.clone());
        let server_stop = stop.clone();
        let server = auth::tls::spawn_server(listener, router, tls.as_ref(), server_stop).map_err(
            |source| StartError::Bind {
                addr: self.addr,
                source,
            },
        )?;
        let mut tasks = vec![tokio::spawn(controllers::run(st.clone(), stop.clone()))];
        let cluster = Cluster(st);
        for f in self.on_start {
            let fut = f(cluster.clone(), client.clone());
            let stop = stop.clone();
            tasks.push(tokio::spawn(async move {
                tokio::select! {
                    () = stop.cancelled() => {}
                    () = fut => {}
                }
            }));
        }
        Ok(DevCluster {
            cluster,
            addr,
            kubeconfig: path,
            tempdir,
            config,
            client,
            stop,
            server: Some(server),
            tasks,
            auth,
            ca_pem,
        })
    }
}

fn write_kubeconfig(
    path: &Path,
    addr: SocketAddr,
    token: &str,
    ca_pem: Option<&str>,
) -> Result<(), StartError> {
    let scheme = if ca_pem.is_some() { "https" } else { "http" };
    auth::write_kubeconfig(
        path,
        &format!("{scheme}://{addr}"),
        ca_pem,
        "admin",
        token,
        "default",
    )
    .map_err(|source| StartError::Kubeconfig {
        path: path.to_path_buf(),
        source,
    })
}

async fn client_config(path: &Path) -> Result<kube::Config, StartError> {
    let err = |e: &dyn std::fmt::Display| StartError::ClientConfig {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let kc = kube::config::Kubeconfig::read_from(path).map_err(|e| err(&e))?;
    kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await
        .map_err(|e| err(&e))
}

/// A running in-memory API server. Dropping it stops the server.
pub struct DevCluster {
    cluster: Cluster,
    addr: SocketAddr,
    kubeconfig: PathBuf,
    tempdir: Option<PathBuf>,
    config: kube::Config,
    client: kube::Client,
    stop: CancellationToken,
    server: Option<JoinHandle<()>>,
    tasks: Vec<JoinHandle<()>>,
    auth: Option<Arc<auth::Auth>>,
    ca_pem: Option<String>,
}

impl std::fmt::Debug for DevCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevCluster")
            .field("addr", &self.addr)
            .field("kubeconfig", &self.kubeconfig)
            .finish_non_exhaustive()
    }
}

impl DevCluster {
    /// Starts a server with default options on 127.0.0.1 and a free port.
    pub async fn start() -> Result<Self, StartError> {
        Self::builder().start().await
    }

    /// A builder for options.
    pub fn builder() -> DevClusterBuilder {
        DevClusterBuilder::default()
    }

    /// A kube client authenticated as the administrator.
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// The client configuration behind [`Self::client`].
    pub fn config(&self) -> &kube::Config {
        &self.config
    }

    /// Path of the kubeconfig file (admin bearer token, namespace `default`).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// The listen address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`, or `https://<addr>` when serving TLS.
    pub fn url(&self) -> String {
        let scheme = if self.ca_pem.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.addr)
    }

    /// A handle on the state, accounting and faults.
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// Request accounting so far.
    pub fn stats(&self) -> StatsSnapshot {
        self.cluster.stats()
    }

    /// Replaces the fault settings.
    pub fn set_faults(&self, f: FaultConfig) -> Result<(), String> {
        self.cluster.set_faults(f)
    }

    /// Removes all faults (and resumes a pause).
    pub fn clear_faults(&self) {
        let _ = self.cluster.set_faults(FaultConfig::default());
    }

    /// Holds every request until [`Self::resume`].
    pub fn pause(&self) {
        let mut f = self.cluster.faults();
        f.paused = true;
        let _ = self.cluster.set_faults(f);
    }

    /// Releases held requests.
    pub fn resume(&self) {
        let mut f = self.cluster.faults();
        f.paused = false;
        let _ = self.cluster.set_faults(f);
    }

    /// Ends every open watch stream.
    pub fn cut_watches(&self) {
        self.cluster.cut_watches();
    }

    /// Makes every older resourceVersion expire (watchers get 410 and relist).
    pub fn expire_resource_versions(&self) {
        self.cluster.expire_resource_versions();
    }

    /// Stops the server and waits (briefly) for it to finish.
    pub async fn shutdown(mut self) {
        self.stop_all();
        if let Some(s) = self.server.take() {
            let abort = s.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), s)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }

    fn stop_all(&mut self) {
        self.stop.cancel();
        self.cluster.cut_watches();
        let _ = self.cluster.set_faults(FaultConfig::default());
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Drop for DevCluster {
    fn drop(&mut self) {
        self.stop_all();
        if let Some(s) = self.server.take() {
            s.abort();
        }
        if let Some(d) = &self.tempdir {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}
