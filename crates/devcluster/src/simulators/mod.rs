//! Simulated cluster components: a scheduler, a kubelet, a Job controller, a Deployment
//! status controller and an agent runtime. They are ordinary Kubernetes clients (watches,
//! reflectors and kube's `Controller` over a `kube::Client`), so they run against this crate's
//! server or any other API server that has no nodes.
//!
//! ```no_run
//! # async fn demo() -> Result<(), devcluster::StartError> {
//! use devcluster::simulators::Simulators;
//! let cluster = devcluster::DevCluster::builder()
//!     .with_simulators(Simulators::all())
//!     .start()
//!     .await?;
//! # drop(cluster);
//! # Ok(()) }
//! ```
//!
//! Pods are scripted with `devcluster.io/*` annotations; see `docs/devcluster.md`.

pub mod agent_runtime;
pub mod argo_workflows;
pub mod argocd;
pub mod crossplane;
mod deployments;
mod jobs;
mod lean;
mod pods;
mod util;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

pub use jobs::TRACKING_FINALIZER;
pub use pods::{ContainerScript, UNSCHEDULABLE_MESSAGE, container_script, pod_status};
pub use util::PREFIX as ANNOTATION_PREFIX;

/// The node name pods are bound to by default.
pub const DEFAULT_NODE_NAME: &str = "devcluster-node";

/// The names accepted by [`Simulators::from_str`], in order.
pub const NAMES: [&str; 8] = [
    "scheduler",
    "kubelet",
    "jobs",
    "deployments",
    "crossplane",
    "argocd",
    "argo-workflows",
    "agent-runtime",
];

/// Why a reconcile of a simulator failed (it is retried shortly).
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A request to the API server failed.
    #[error("API request failed: {0}")]
    Kube(#[from] kube::Error),
    /// An object could not be encoded or decoded.
    #[error("cannot encode object: {0}")]
    Encode(#[source] serde_json::Error),
}

/// A simulator list could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseSimulatorsError {
    /// A name that is not a simulator.
    #[error(
        "simulators: unknown simulator {name:?}; allowed: scheduler, kubelet, jobs, deployments, crossplane, argocd, argo-workflows, agent-runtime, all, none"
    )]
    Unknown {
        /// The offending name.
        name: String,
    },
}

/// A client for `simulate` could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The kubeconfig could not be read or used.
    #[error("kubeconfig {path}: {message}")]
    Kubeconfig {
        /// The kubeconfig path (or `(default)` when inferred).
        path: String,
        /// What kube reported.
        message: String,
    },
}

/// A client for `kubeconfig`, or for the default configuration (`$KUBECONFIG`,
/// `~/.kube/config` or the in-cluster service account) when `None`.
pub async fn connect(kubeconfig: Option<&std::path::Path>) -> Result<kube::Client, ConnectError> {
    let path = kubeconfig.map_or_else(|| "(default)".to_string(), |p| p.display().to_string());
    let err = |e: &dyn fmt::Display| ConnectError::Kubeconfig {
        path: path.clone(),
        message: e.to_string(),
    };
    let config = match kubeconfig {
        Some(p) => {
            let kc = kube::config::Kubeconfig::read_from(p).map_err(|e| err(&e))?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| err(&e))?
        }
        None => kube::Config::infer().await.map_err(|e| err(&e))?,
    };
    kube::Client::try_from(config).map_err(|e| err(&e))
}

/// Default durations of the simulated timeline. Annotations override them per object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timing {
    /// How long containers stay `Waiting` with reason `ContainerCreating` (per pod:
    /// `devcluster.io/start-seconds`).
    pub container_creating: Duration,
    /// How long a container that finishes runs (Job pods, init containers, containers
    /// with an exit code): per container `devcluster.io/run-seconds`.
    pub run: Duration,
    /// How long `ErrImagePull` shows before `ImagePullBackOff`.
    pub image_pull_backoff: Duration,
    /// First restart back-off of a restarting container (doubles per restart, up to 16x).
    pub restart_backoff: Duration,
    /// How long a Deployment rollout takes to become available (per Deployment:
    /// `devcluster.io/ready-seconds`).
    pub deployment_ready: Duration,
    /// How long a Crossplane claim takes to become Ready (per claim:
    /// `devcluster.io/ready-seconds`).
    pub claim_ready: Duration,
    /// How long an Argo CD Application takes to become Synced and healthy (per Application:
    /// `devcluster.io/ready-seconds`).
    pub application_ready: Duration,
    /// How long an Argo Workflow runs (per Workflow or its `WorkflowTemplate`:
    /// `devcluster.io/run-seconds`).
    pub workflow_run: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            container_creating: Duration::from_millis(100),
            run: Duration::from_secs(1),
            image_pull_backoff: Duration::from_secs(1),
            restart_backoff: Duration::from_secs(1),
            deployment_ready: Duration::from_millis(500),
            claim_ready: Duration::from_millis(100),
            application_ready: Duration::from_millis(100),
            workflow_run: Duration::from_millis(100),
        }
    }
}

impl Timing {
    /// Sets the delay the Crossplane, Argo CD and Argo Workflows simulators use for objects
    /// without a delay annotation (`devcluster serve|simulate --sim-delay-seconds`).
    #[must_use]
    pub fn with_sim_delay(self, delay: Duration) -> Self {
        Self {
            claim_ready: delay,
            application_ready: delay,
            workflow_run: delay,
            ..self
        }
    }
}

/// Parses `--sim-delay-seconds`: decimal seconds, zero or more.
///
/// # Errors
///
/// A message naming the flag and the allowed values for anything else.
pub fn parse_sim_delay(value: &str) -> Result<Duration, String> {
    let bad = || {
        format!(
            "--sim-delay-seconds: {value:?} is not a number of seconds; allowed: decimal seconds, 0 or more (e.g. 0, 0.5, 2)"
        )
    };
    let seconds: f64 = value.trim().parse().map_err(|_| bad())?;
    if !seconds.is_finite() || !(0.0..=1.0e9).contains(&seconds) {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// Which simulators to run, and how.
#[allow(clippy::struct_excessive_bools)] // one switch per simulator
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Simulators {
    /// Bind pending pods to [`Self::node_name`] (or mark them unschedulable).
    pub scheduler: bool,
    /// Drive the status of pods bound to [`Self::node_name`].
    pub kubelet: bool,
    /// Run batch/v1 Jobs.
    pub jobs: bool,
    /// Report apps/v1 Deployment status.
    pub deployments: bool,
    /// Publish `status.url` of runtime.agentic-layer.ai Agents.
    pub agent_runtime: bool,
    /// Drive Crossplane cluster claims (lab fixtures).
    pub crossplane: bool,
    /// Drive Argo CD Applications.
    pub argocd: bool,
    /// Run Argo Workflows.
    pub argo_workflows: bool,
    /// The fake node's name.
    pub node_name: String,
    /// Default durations.
    pub timing: Timing,
    /// Where the kubeconfigs of simulated Crossplane clusters point, with the bearer token to
    /// send: `None` is an unreachable fake endpoint with a fake client certificate.
    pub cluster_server: Option<(String, String)>,
    /// Point the kubeconfigs of simulated clusters at this dev cluster itself, with its admin
    /// token (filled into [`Self::cluster_server`] by `with_simulators` once it listens), so
    /// what an operator writes "on a provisioned cluster" can be seen.
    pub clusters_here: bool,
}

impl Default for Simulators {
    fn default() -> Self {
        Self::all()
    }
}

impl Simulators {
    /// Every simulator.
    pub fn all() -> Self {
        Self {
            scheduler: true,
            kubelet: true,
            jobs: true,
            deployments: true,
            agent_runtime: true,
            crossplane: true,
            argocd: true,
            argo_workflows: true,
            node_name: DEFAULT_NODE_NAME.to_string(),
            timing: Timing::default(),
            cluster_server: None,
            clusters_here: false,
        }
    }

    /// No simulator.
    pub fn none() -> Self {
        Self {
            scheduler: false,
            kubelet: false,
            jobs: false,
            deployments: false,
            agent_runtime: false,
            crossplane: false,
            argocd: false,
            argo_workflows: false,
            ..Self::all()
        }
    }

    /// Whether nothing is enabled.
    pub fn is_empty(&self) -> bool {
        !(self.scheduler
            || self.kubelet
            || self.jobs
            || self.deployments
            || self.agent_runtime
            || self.crossplane
            || self.argocd
            || self.argo_workflows)
    }

    /// The enabled simulators' names.
    pub fn names(&self) -> Vec<&'static str> {
        let on = [
            self.scheduler,
            self.kubelet,
            self.jobs,
            self.deployments,
            self.crossplane,
            self.argocd,
            self.argo_workflows,
            self.agent_runtime,
        ];
        NAMES
            .iter()
            .zip(on)
            .filter(|(_, on)| *on)
            .map(|(n, _)| *n)
            .collect()
    }

    /// Sets the fake node's name.
    #[must_use]
    pub fn node_name(mut self, name: impl Into<String>) -> Self {
        self.node_name = name.into();
        self
    }

    /// Sets the default durations.
    #[must_use]
    pub fn timing(mut self, timing: Timing) -> Self {
        self.timing = timing;
        self
    }

    /// Runs the enabled simulators against the API server behind `client` until the
    /// returned future is dropped.
    pub async fn run(self, client: kube::Client) {
        let mut tasks: Vec<futures::future::BoxFuture<'static, ()>> = Vec::new();
        if self.scheduler || self.kubelet {
            tasks.push(Box::pin(pods::run(client.clone(), self.clone())));
        }
        if self.jobs {
            tasks.push(Box::pin(jobs::run(client.clone())));
        }
        if self.deployments {
            tasks.push(Box::pin(deployments::run(
                client.clone(),
                self.timing.clone(),
            )));
        }
        if self.crossplane {
            tasks.push(Box::pin(crossplane::run(
                client.clone(),
                self.timing.claim_ready,
                self.cluster_server.clone(),
            )));
        }
        if self.argocd {
            tasks.push(Box::pin(argocd::run(
                client.clone(),
                self.timing.application_ready,
            )));
        }
        if self.argo_workflows {
            tasks.push(Box::pin(argo_workflows::run(
                client.clone(),
                self.timing.workflow_run,
            )));
        }
        if self.agent_runtime {
            tasks.push(Box::pin(agent_runtime::run(client.clone())));
        }
        if tasks.is_empty() {
            return;
        }
        tracing::info!(simulators = ?self.names(), node = %self.node_name, "simulators running");
        futures::future::join_all(tasks).await;
    }
}

impl fmt::Display for Simulators {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&self.names().join(","))
        }
    }
}

impl FromStr for Simulators {
    type Err = ParseSimulatorsError;

    /// Parses `all`, `none`, or a comma-separated list of [`NAMES`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = Self::none();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "all" => {
                    out = Self {
                        node_name: out.node_name,
                        timing: out.timing,
                        ..Self::all()
                    };
                }
                "none" => {}
                "scheduler" => out.scheduler = true,
                "kubelet" => out.kubelet = true,
                "jobs" => out.jobs = true,
                "deployments" => out.deployments = true,
                "agent-runtime" => out.agent_runtime = true,
                "crossplane" => out.crossplane = true,
                "argocd" => out.argocd = true,
                "argo-workflows" => out.argo_workflows = true,
                other => {
                    return Err(ParseSimulatorsError::Unknown {
                        name: other.to_string(),
                    });
                }
            }
        }
        Ok(out)
    }
}

impl crate::DevClusterBuilder {
    /// Runs `simulators` next to the server, as an [`Self::on_start`] task talking to it
    /// through the admin client. Without this call no simulator runs, so API-level tests
    /// stay deterministic.
    #[must_use]
    pub fn with_simulators(self, simulators: Simulators) -> Self {
        if simulators.is_empty() {
            return self;
        }
        self.on_start(move |cluster, client| {
            let mut simulators = simulators;
            if simulators.clusters_here && simulators.cluster_server.is_none() {
                simulators.cluster_server = cluster
                    .url()
                    .map(|url| (url.to_owned(), cluster.admin_token().to_owned()));
            }
            Box::pin(simulators.run(client))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lists() {
        let s: Simulators = "scheduler, jobs".parse().unwrap();
        assert!(s.scheduler && s.jobs && !s.kubelet && !s.deployments);
        assert_eq!(s.to_string(), "scheduler,jobs");
        assert_eq!("all".parse::<Simulators>().unwrap(), Simulators::all());
        assert!("none".parse::<Simulators>().unwrap().is_empty());
        assert!("".parse::<Simulators>().unwrap().is_empty());
        let err = "kubelet,etcd".parse::<Simulators>().unwrap_err();
        assert_eq!(
            err,
            ParseSimulatorsError::Unknown {
                name: "etcd".into()
            }
        );
        assert!(err.to_string().contains("allowed: scheduler"));
    }

    #[test]
    fn sim_delay_sets_the_three_lab_defaults_and_rejects_bad_values() {
        let t = Timing::default().with_sim_delay(parse_sim_delay("0").unwrap());
        assert_eq!(
            (t.claim_ready, t.application_ready, t.workflow_run),
            (Duration::ZERO, Duration::ZERO, Duration::ZERO)
        );
        // Pod timings are not lab delays.
        assert_eq!(t.run, Timing::default().run);
        assert_eq!(
            parse_sim_delay(" 2.5 ").unwrap(),
            Duration::from_millis(2500)
        );
        // Negative, non-numeric, infinite and `forever` (an annotation-only value) are
        // refused with the flag's name and the allowed values.
        for bad in ["-1", "soon", "inf", "NaN", "forever", ""] {
            let err = parse_sim_delay(bad).unwrap_err();
            assert!(err.starts_with("--sim-delay-seconds:"), "{err}");
            assert!(err.contains("allowed: decimal seconds"), "{err}");
        }
    }
}
