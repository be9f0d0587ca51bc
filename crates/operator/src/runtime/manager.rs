//! The manager: starts the servers, picks the families, elects a leader, and runs every
//! family's controllers under one shared runtime context until shutdown.
//!
//! # Adding a family
//!
//! Implement [`Family`] and add it to `agentic_operator::families()`:
//!
//! ```text
//! struct Sessions;
//!
//! impl Family for Sessions {
//!     fn name(&self) -> &'static str { "sessions" }
//!     fn required_crds(&self) -> Vec<CrdRef> {
//!         vec![CrdRef::new("vteam.ambient-code", "v1alpha1", "agenticsessions")]
//!     }
//!     fn build(&self, rt: &RuntimeContext, watches: &mut SharedWatches)
//!         -> Result<Vec<ControllerTask>, FamilyError>
//!     {
//!         let sessions = watches.subscribe(Api::<AgenticSession>::all(rt.client.clone()),
//!                                          watcher::Config::default())?;
//!         let jobs = watches.subscribe(Api::<Job>::all(rt.client.clone()),
//!                                      watcher::Config::default().labels("app=agentic"))?;
//!         let ctx = Arc::new(Ctx { client: rt.client.clone(),
//!                                  recorder: rt.recorders.recorder("agenticsession") });
//!         Ok(vec![controller_task(rt, "agenticsession", sessions,
//!                                 move |c| c.owns_shared_stream(jobs.stream),
//!                                 reconcile, ctx)])
//!     }
//! }
//! ```
//!
//! `reconcile` is a plain `async fn(Arc<AgenticSession>, Arc<Ctx>) -> Result<Action, Error>`
//! where `Error: ReconcileError`. Everything else (concurrency, backoff, panics, deadline,
//! metrics, leader gating, shutdown) is the runtime's job.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use kube::Client;
use tokio::{sync::watch, task::JoinSet};
use tokio_util::sync::CancellationToken;

use super::{
    config::{BindAddress, Settings},
    controller::ControllerTask,
    events::EventRecorders,
    leader::{LeaderElector, LeaseError},
    metrics::Metrics,
    probes::{self, HealthState, Role},
    startup::{self, RunError},
    watches::SharedWatches,
};

/// How long shutdown waits for in-flight reconciles before abandoning them.
pub const GRACEFUL_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// Error type families return from [`Family::build`].
pub type FamilyError = Box<dyn std::error::Error + Send + Sync>;

/// A `CustomResourceDefinition` a family needs, by group, version and plural.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct CrdRef {
    /// API group, e.g. `vteam.ambient-code`.
    pub group: &'static str,
    /// Served version, e.g. `v1alpha1`.
    pub version: &'static str,
    /// Plural resource name, e.g. `agenticsessions`.
    pub plural: &'static str,
}

impl CrdRef {
    /// A CRD reference.
    pub const fn new(group: &'static str, version: &'static str, plural: &'static str) -> Self {
        Self {
            group,
            version,
            plural,
        }
    }

    /// The CRD's object name, `plural.group`.
    pub fn name(&self) -> String {
        format!("{}.{}", self.plural, self.group)
    }
}

/// A family of controllers (sessions, evaluations, labs) the manager can run.
pub trait Family: Send + Sync {
    /// The family name used by `--controllers` (`sessions`, `evaluations` or `labs`).
    fn name(&self) -> &'static str;

    /// CRDs that must be installed for this family to run.
    fn required_crds(&self) -> Vec<CrdRef>;

    /// Subscribes to the shared watches the family needs and returns its controller tasks
    /// (normally built with [`super::controller::controller_task`]). Called once, on the leader
    /// (or on every replica without leader election), before any watch starts. Register the
    /// family's own metrics here through `rt.metrics.register(..)`.
    fn build(
        &self,
        rt: &RuntimeContext,
        watches: &mut SharedWatches,
    ) -> Result<Vec<ControllerTask>, FamilyError>;
}

/// What every controller shares. Cheap to clone.
#[derive(Clone)]
pub struct RuntimeContext {
    /// Kubernetes client.
    pub client: Client,
    /// Resolved flags and environment.
    pub settings: Arc<Settings>,
    /// Prometheus registry and the runtime's metrics.
    pub metrics: Metrics,
    /// One Event recorder per controller.
    pub recorders: EventRecorders,
    /// Health and readiness state behind the probes.
    pub health: HealthState,
    /// `true` while this replica may write (leader, or leader election disabled).
    pub leading: watch::Receiver<bool>,
    /// Cancelled when the operator shuts down.
    pub shutdown: CancellationToken,
}

impl std::fmt::Debug for RuntimeContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeContext")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// Outcome of choosing one family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FamilyChoice {
    /// Run it.
    Run,
    /// Skip it: not requested with `--controllers`.
    NotRequested,
    /// Skip it: a CRD it needs is not installed (only when `--controllers` is not given).
    MissingCrd(String),
}

/// Decides which families run. `families` lists each built-in family with its missing CRDs
/// (empty when all are installed). Without `--controllers`, families with missing CRDs are
/// skipped; with it, a requested family that is missing a CRD or is not built in is an error.
pub fn choose_families(
    requested: Option<&[String]>,
    families: &[(&str, Vec<String>)],
) -> Result<Vec<(String, FamilyChoice)>, RunError> {
    if let Some(requested) = requested {
        for name in requested {
            if !families.iter().any(|(f, _)| f == name) {
                return Err(RunError::FamilyNotBuilt {
                    family: name.clone(),
                });
            }
        }
    }
    let mut out = Vec::new();
    for (name, missing) in families {
        let wanted = requested.is_none_or(|r| r.iter().any(|n| n == name));
        let choice = if !wanted {
            FamilyChoice::NotRequested
        } else if let Some(crd) = missing.first() {
            if requested.is_some() {
                return Err(RunError::MissingCrd {
                    family: (*name).to_owned(),
                    crd: crd.clone(),
                });
            }
            FamilyChoice::MissingCrd(crd.clone())
        } else {
            FamilyChoice::Run
        };
        out.push(((*name).to_owned(), choice));
    }
    Ok(out)
}

/// Returns the CRDs of `crds` that the API server does not serve (via API discovery, so no
/// RBAC on `customresourcedefinitions` is needed).
pub async fn missing_crds(client: &Client, crds: &[CrdRef]) -> Result<Vec<String>, RunError> {
    let mut served: BTreeMap<String, Option<Vec<String>>> = BTreeMap::new();
    let mut missing = Vec::new();
    for crd in crds {
        let gv = format!("{}/{}", crd.group, crd.version);
        if !served.contains_key(&gv) {
            let resources = match client.list_api_group_resources(&gv).await {
                Ok(list) => Some(list.resources.into_iter().map(|r| r.name).collect()),
                Err(kube::Error::Api(status)) if status.code == 404 => None,
                Err(error) => {
                    return Err(RunError::Discovery {
                        crd: crd.name(),
                        detail: error.to_string(),
                    });
                }
            };
            served.insert(gv.clone(), resources);
        }
        let present = served
            .get(&gv)
            .and_then(Option::as_ref)
            .is_some_and(|names| names.iter().any(|n| n == crd.plural));
        if !present {
            missing.push(crd.name());
        }
    }
    Ok(missing)
}

/// Runs the operator: servers, leader election and the chosen families' controllers.
pub struct Manager {
    settings: Arc<Settings>,
    families: Vec<Box<dyn Family>>,
    metrics: Metrics,
    health: HealthState,
    /// The client the leader election uses, when it is not the controllers'.
    lease_client: Option<Client>,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager")
            .field("settings", &self.settings)
            .field(
                "families",
                &self.families.iter().map(|f| f.name()).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

enum Ending {
    Shutdown,
    LeaseLost(LeaseError),
    ControllerStopped(String),
}

impl Manager {
    /// The settings it runs with.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// A manager for `settings` that can run `families`.
    pub fn new(settings: Settings, families: Vec<Box<dyn Family>>) -> Self {
        Self {
            settings: Arc::new(settings),
            families,
            metrics: Metrics::new(),
            health: HealthState::new(),
            lease_client: None,
        }
    }

    /// Leader election reads and writes its Lease through `client` instead of the client the
    /// run is given. [`Manager::run`] passes one without the `--kube-api-qps` limit when that is
    /// set: Lease renewals must not queue behind the controllers' requests, or a busy leader
    /// misses its renew deadline and exits.
    #[must_use]
    pub fn with_lease_client(mut self, client: Client) -> Self {
        self.lease_client = Some(client);
        self
    }

    /// The metrics registry (to inspect or extend before [`Manager::run`]).
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The health state behind the probes.
    pub fn health(&self) -> &HealthState {
        &self.health
    }

    async fn start_servers(&self, stop: &CancellationToken) -> Result<(), RunError> {
        let metrics_router = probes::metrics_router(self.metrics.clone());
        let probe_router = probes::probe_router(self.health.clone());
        let bind = |address: std::net::SocketAddr,
                    router: axum::Router,
                    purpose: &'static str,
                    flag: &'static str| {
            let stop = stop.clone();
            async move {
                probes::serve(address, router, stop)
                    .await
                    .map(|(local, _)| tracing::info!(%local, "serving {purpose}"))
                    .map_err(|e| RunError::Bind {
                        address: address.to_string(),
                        purpose,
                        flag,
                        detail: e.to_string(),
                    })
            }
        };
        match (self.settings.metrics_address, self.settings.probe_address) {
            (BindAddress::Listen(m), BindAddress::Listen(p)) if m == p => {
                bind(
                    m,
                    metrics_router.merge(probe_router),
                    "metrics and health probes",
                    "metrics-bind-address",
                )
                .await?;
            }
            (m, p) => {
                if let BindAddress::Listen(address) = m {
                    bind(address, metrics_router, "metrics", "metrics-bind-address").await?;
                }
                if let BindAddress::Listen(address) = p {
                    bind(
                        address,
                        probe_router,
                        "health probes",
                        "health-probe-bind-address",
                    )
                    .await?;
                }
            }
        }
        Ok(())
    }

    async fn chosen_families(&self, client: &Client) -> Result<Vec<usize>, RunError> {
        let mut status = Vec::new();
        for family in &self.families {
            let wanted = self
                .settings
                .controllers
                .as_ref()
                .is_none_or(|r| r.iter().any(|n| n == family.name()));
            let missing = if wanted {
                missing_crds(client, &family.required_crds()).await?
            } else {
                Vec::new()
            };
            status.push((family.name(), missing));
        }
        let choices = choose_families(self.settings.controllers.as_deref(), &status)?;
        let mut run = Vec::new();
        for (index, (name, choice)) in choices.into_iter().enumerate() {
            match choice {
                FamilyChoice::Run => {
                    tracing::info!(family = %name, "starting controller family");
                    run.push(index);
                }
                FamilyChoice::NotRequested => {
                    tracing::info!(family = %name, "skipping controller family: not listed in --controllers");
                }
                FamilyChoice::MissingCrd(crd) => {
                    tracing::warn!(family = %name, %crd, "skipping controller family {name}: CRD {crd} is not installed");
                }
            }
        }
        if run.is_empty() {
            tracing::warn!("no controller family is active; serving probes and metrics only");
        }
        Ok(run)
    }

    /// Connects with the usual kubeconfig / in-cluster configuration, installs the signal
    /// handler, and runs until SIGTERM/SIGINT (`Ok`) or a fatal error.
    pub async fn run(self) -> Result<(), RunError> {
        let shutdown = CancellationToken::new();
        super::shutdown::spawn_signal_handler(shutdown.clone());
        let client = startup::connect(self.settings.api_rate).await?;
        let manager = match startup::lease_client(self.settings.api_rate).await? {
            Some(lease) => self.with_lease_client(lease),
            None => self,
        };
        manager.run_with_client(client, shutdown).await
    }

    /// Waits for the Lease when leader election is on. Returns `Ok(false)` if shutdown came
    /// first.
    async fn acquire_leadership(
        &self,
        elector: Option<&mut LeaderElector>,
        shutdown: &CancellationToken,
    ) -> Result<bool, RunError> {
        let Some(elector) = elector else {
            return Ok(true);
        };
        let lease = elector.settings().lease_name.clone();
        self.metrics.controllers().set_leader(&lease, false);
        self.health.set_role(Role::Standby);
        tracing::info!(lease = %lease, identity = %elector.settings().identity, "waiting to acquire the leader-election Lease");
        let mut last_holder = None::<String>;
        let acquired = elector
            .acquire(shutdown, |holder| {
                let holder = holder.map(str::to_owned);
                if holder.is_some() && holder != last_holder {
                    tracing::info!(
                        holder = holder.as_deref().unwrap_or(""),
                        "another replica leads; standing by"
                    );
                }
                last_holder = holder;
            })
            .await?;
        if acquired {
            self.metrics.controllers().set_leader(&lease, true);
            tracing::info!(lease = %lease, "became leader");
        }
        Ok(acquired)
    }

    /// Builds the chosen families' controllers, then starts the shared watches and spawns
    /// every controller.
    fn start_controllers(
        &self,
        rt: &RuntimeContext,
        chosen: &[usize],
    ) -> Result<(JoinSet<()>, JoinSet<String>), RunError> {
        let mut watches = SharedWatches::default();
        let mut tasks = Vec::new();
        for index in chosen {
            let family = &self.families[*index];
            let built = family
                .build(rt, &mut watches)
                .map_err(|e| RunError::FamilyBuild {
                    family: family.name().to_owned(),
                    detail: e.to_string(),
                })?;
            tasks.extend(built);
        }
        let mut reflectors = JoinSet::new();
        for (_, future) in watches.start(&self.health) {
            reflectors.spawn(future);
        }
        let mut controllers = JoinSet::new();
        for task in tasks {
            self.health.loop_started(&task.name);
            let ControllerTask { name, future } = task;
            controllers.spawn(async move {
                future.await;
                name
            });
        }
        Ok((reflectors, controllers))
    }

    /// Runs with an existing client until `shutdown` is cancelled (`Ok`) or a fatal error:
    /// 403 on the Lease, leadership lost (after aborting every reconcile), a controller loop
    /// ending, or a missing CRD for a family named in `--controllers`.
    pub async fn run_with_client(
        self,
        client: Client,
        shutdown: CancellationToken,
    ) -> Result<(), RunError> {
        let servers = CancellationToken::new();
        let _stop_servers = servers.clone().drop_guard();
        self.start_servers(&servers).await?;
        let chosen = self.chosen_families(&client).await?;

        let (leading_tx, leading_rx) = watch::channel(false);
        let mut elector = self.settings.leader_election.clone().map(|le| {
            let lease_client = self.lease_client.clone().unwrap_or_else(|| client.clone());
            LeaderElector::new(lease_client, le)
        });
        if !self.acquire_leadership(elector.as_mut(), &shutdown).await? {
            return Ok(());
        }
        let _ = leading_tx.send(true);
        self.health.set_role(Role::Active);

        let rt = RuntimeContext {
            recorders: EventRecorders::new(client.clone(), self.settings.instance.clone()),
            client,
            settings: self.settings.clone(),
            metrics: self.metrics.clone(),
            health: self.health.clone(),
            leading: leading_rx,
            shutdown: shutdown.clone(),
        };
        let (mut reflectors, mut controllers) = self.start_controllers(&rt, &chosen)?;

        let ending = {
            let hold = async {
                if let Some(elector) = elector.as_mut() {
                    elector.hold(&shutdown).await
                } else {
                    shutdown.cancelled().await;
                    Ok(())
                }
            };
            tokio::pin!(hold);
            loop {
                tokio::select! {
                    renewal = &mut hold => break match renewal {
                        Ok(()) => Ending::Shutdown,
                        Err(e) => Ending::LeaseLost(e),
                    },
                    Some(joined) = controllers.join_next(), if !controllers.is_empty() => {
                        if !shutdown.is_cancelled() {
                            break Ending::ControllerStopped(
                                joined.unwrap_or_else(|e| format!("(task {e})")),
                            );
                        }
                        // A loop that ended for the shutdown before the drain began: the
                        // drain will not see it, so it is marked stopped here.
                        if let Ok(name) = joined {
                            self.health.loop_stopped(&name);
                        }
                    }
                }
            }
        };

        if let Ending::LeaseLost(error) = ending {
            return Err(self.step_down(error, &mut controllers, &mut reflectors, &leading_tx));
        }
        shutdown.cancel();
        let stopped = match ending {
            Ending::ControllerStopped(name) => {
                self.health.loop_failed(&name, "the controller loop ended");
                Some(name)
            }
            _ => None,
        };
        // In-flight reconciles may still write while they finish, so the Lease is renewed
        // until they have: a standby must not take over before this replica stops writing.
        if let Err(error) = self
            .drain_holding(&mut controllers, &rt.recorders, elector.as_mut())
            .await
        {
            return Err(self.step_down(error, &mut controllers, &mut reflectors, &leading_tx));
        }
        reflectors.abort_all();
        let _ = leading_tx.send(false);
        if let Some(elector) = elector.as_mut() {
            match elector.release().await {
                Ok(()) => tracing::info!("released the leader-election Lease"),
                Err(error) => tracing::warn!(%error, "could not release the leader-election Lease"),
            }
            self.metrics
                .controllers()
                .set_leader(&elector.settings().lease_name, false);
        }
        if let Some(name) = stopped {
            return Err(RunError::ControllerStopped { name });
        }
        tracing::info!("shut down cleanly");
        Ok(())
    }

    /// Leadership is lost: stops every write at once (aborting the controller tasks drops
    /// their streams and with them every in-flight reconcile), marks this replica as not
    /// leading and returns the error the process exits with.
    fn step_down(
        &self,
        error: LeaseError,
        controllers: &mut JoinSet<String>,
        reflectors: &mut JoinSet<()>,
        leading: &watch::Sender<bool>,
    ) -> RunError {
        controllers.abort_all();
        reflectors.abort_all();
        let _ = leading.send(false);
        if let Some(le) = &self.settings.leader_election {
            self.metrics.controllers().set_leader(&le.lease_name, false);
        }
        self.health
            .loop_failed("leader-election", &error.to_string());
        error.into()
    }

    /// [`Manager::drain`] while `elector` (if any) keeps renewing the Lease. Returns the
    /// Lease error when leadership is lost before the reconciles have finished; the caller then
    /// aborts them.
    async fn drain_holding(
        &self,
        controllers: &mut JoinSet<String>,
        events: &EventRecorders,
        elector: Option<&mut LeaderElector>,
    ) -> Result<(), LeaseError> {
        let Some(elector) = elector else {
            self.drain(controllers, events).await;
            return Ok(());
        };
        // Never cancelled: `hold` only returns when leadership is lost.
        let renew_until_drained = CancellationToken::new();
        tokio::select! {
            () = self.drain(controllers, events) => Ok(()),
            lost = elector.hold(&renew_until_drained) => lost,
        }
    }

    /// Waits for the controllers to finish their in-flight reconciles, then for the Events
    /// they published in the background, at most [`GRACEFUL_SHUTDOWN_TIMEOUT`] in all.
    async fn drain(&self, controllers: &mut JoinSet<String>, events: &EventRecorders) {
        let drained = tokio::time::timeout(GRACEFUL_SHUTDOWN_TIMEOUT, async {
            while let Some(joined) = controllers.join_next().await {
                if let Ok(name) = joined {
                    self.health.loop_stopped(&name);
                }
            }
            events.flush().await;
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                "in-flight reconciles did not finish within {GRACEFUL_SHUTDOWN_TIMEOUT:?}; abandoning them"
            );
            controllers.abort_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fams() -> Vec<(&'static str, Vec<String>)> {
        vec![
            ("sessions", vec![]),
            (
                "evaluations",
                vec!["experiments.testbench.agentic-layer.ai".into()],
            ),
            ("labs", vec![]),
        ]
    }

    #[test]
    fn default_runs_installed_and_skips_missing() {
        let got = choose_families(None, &fams()).unwrap();
        assert_eq!(
            got,
            vec![
                ("sessions".into(), FamilyChoice::Run),
                (
                    "evaluations".into(),
                    FamilyChoice::MissingCrd("experiments.testbench.agentic-layer.ai".into())
                ),
                ("labs".into(), FamilyChoice::Run),
            ]
        );
    }

    #[test]
    fn explicit_list_restricts_and_requires_crds() {
        let got = choose_families(Some(&["labs".into()]), &fams()).unwrap();
        assert_eq!(got[0].1, FamilyChoice::NotRequested);
        assert_eq!(got[1].1, FamilyChoice::NotRequested);
        assert_eq!(got[2].1, FamilyChoice::Run);

        let err = choose_families(Some(&["evaluations".into()]), &fams()).unwrap_err();
        assert!(matches!(err, RunError::MissingCrd { ref family, .. } if family == "evaluations"));

        let err = choose_families(Some(&["labs".into()]), &[("sessions", vec![])]).unwrap_err();
        assert!(matches!(err, RunError::FamilyNotBuilt { ref family } if family == "labs"));
    }

    #[test]
    fn crd_names() {
        let crd = CrdRef::new("vteam.ambient-code", "v1alpha1", "agenticsessions");
        assert_eq!(crd.name(), "agenticsessions.vteam.ambient-code");
    }
}
