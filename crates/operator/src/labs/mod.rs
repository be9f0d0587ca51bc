//! The labs family (`experiments.illm.io/v1alpha1`): the Experiment controller, which
//! provisions target clusters through Crossplane claims, deploys resolved `Component`s through
//! Argo CD, runs an Argo Workflow and cleans everything up, in the phases
//! `Pending → Provisioning → Ready → Running → Complete | Failed`.
//!
//! Stages: [`validate`] and [`components`] (pure checks), [`build`] (pure builders),
//! [`state`] (the phase table), [`cleanup`] (deletion order) and [`reconcile`] (I/O).
//! docs/labs.md describes the behaviour for users.

pub mod build;
pub mod cleanup;
pub mod components;
pub mod config;
pub mod error;
pub mod expect;
pub mod reconcile;
pub mod remote;
pub mod state;
pub mod validate;

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use agentic_api::labs::{Component, Experiment, LABEL_MANAGED_BY, MANAGED_BY};
use futures::{StreamExt, stream::BoxStream};
use kube::{
    Api, Client, ResourceExt,
    api::DynamicObject,
    discovery::ApiResource,
    runtime::{
        Controller, WatchStreamExt,
        events::Recorder,
        reflector::{ObjectRef, Store, store::Writer},
        watcher,
    },
};

use crate::runtime::lenient::Lenient;
use crate::runtime::watches::{paged, trim};
use crate::runtime::{
    ControllerTask, CrdRef, Family, FamilyError, RuntimeContext, SharedWatches, controller_task,
};

pub use config::LabsConfig;
pub use error::Error;

/// Controller name (metrics label, Event reporter).
pub const CONTROLLER: &str = "labexperiment";
/// How long a reconcile waits for the foreign watch caches' first list.
const CACHE_WAIT: Duration = Duration::from_secs(10);

/// The labs family as the manager sees it.
#[derive(Debug, Clone)]
pub struct Labs {
    /// `None`: resolved from the runtime settings when the family is built.
    config: Option<Result<Arc<LabsConfig>, String>>,
}

impl Labs {
    /// The family with an explicit configuration.
    pub fn new(config: LabsConfig) -> Self {
        Self {
            config: Some(Ok(Arc::new(config))),
        }
    }

    /// The family configured from the environment ([`LabsConfig::from_env`]); a bad
    /// configuration makes [`Family::build`] fail with its message.
    pub fn from_env() -> Self {
        Self {
            config: Some(
                LabsConfig::from_env()
                    .map(Arc::new)
                    .map_err(|e| e.to_string()),
            ),
        }
    }

    /// The family configured from the runtime settings when it is built: `--labs-config`
    /// (else `LABS_CONFIG_FILE`) and `--labs-provisioning-timeout` (else
    /// `LABS_PROVISIONING_TIMEOUT_SECONDS`). A bad file makes [`Family::build`] fail with a
    /// message naming the file and key.
    pub fn from_settings() -> Self {
        Self { config: None }
    }

    fn config(&self, rt: &RuntimeContext) -> Result<Arc<LabsConfig>, FamilyError> {
        match &self.config {
            Some(c) => c.clone().map_err(FamilyError::from),
            None => LabsConfig::resolve(
                rt.settings.labs.config.as_deref(),
                rt.settings.labs.provisioning_timeout,
            )
            .map(Arc::new)
            .map_err(|e| FamilyError::from(e.to_string())),
        }
    }
}

/// What every reconcile shares: client, configuration, caches and the Event recorder.
pub struct Ctx {
    /// Kubernetes client.
    pub client: Client,
    /// Labs configuration.
    pub config: Arc<LabsConfig>,
    /// `Component` cache (a Component that does not read is kept with the reason).
    pub components: Store<Lenient<Component>>,
    /// Claim caches by cluster type.
    pub claims: BTreeMap<String, (ApiResource, Store<DynamicObject>)>,
    /// Argo CD Application cache.
    pub applications: (ApiResource, Store<DynamicObject>),
    /// Argo Workflow cache.
    pub workflows: (ApiResource, Store<DynamicObject>),
    /// Event recorder.
    pub recorder: Arc<Recorder>,
    /// Applications and claims this operator applied and their caches may not show yet.
    pub applied: Arc<expect::Expectations>,
    /// Applications, claims and Workflows this operator deleted and their caches may still show.
    pub deleted: Arc<expect::Deletions>,
    /// Experiment versions this operator wrote (finalizer and status patches).
    pub written: expect::Expectations,
    /// `labs_experiment_phase_transitions_total{from,to,reason}`.
    pub transitions: Transitions,
}

/// Counter of phase transitions by `from`, `to` and `reason`.
pub type Transitions = prometheus_client::metrics::family::Family<
    Vec<(String, String)>,
    prometheus_client::metrics::counter::Counter,
>;

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Ctx {
    /// Waits (bounded) until the Application and Workflow caches and the claim caches of
    /// `cluster_types` have listed once. Claim kinds no target uses are not waited for, so a
    /// cluster without (say) the vcluster CRD still runs gke experiments.
    async fn wait_ready<'a>(
        &self,
        cluster_types: impl Iterator<Item = &'a str>,
    ) -> Result<(), Error> {
        let mut stores: Vec<(&str, &Store<DynamicObject>)> = vec![
            ("Application", &self.applications.1),
            ("Workflow", &self.workflows.1),
        ];
        for type_ in cluster_types {
            if let Some((ar, store)) = self.claims.get(type_) {
                stores.push((ar.kind.as_str(), store));
            }
        }
        for (kind, store) in stores {
            let ready = tokio::time::timeout(CACHE_WAIT, store.wait_until_ready()).await;
            if !matches!(ready, Ok(Ok(()))) {
                return Err(Error::CacheNotReady {
                    kind: kind.to_owned(),
                });
            }
        }
        Ok(())
    }

    /// A target's claim: the cached one, or the one this operator wrote if the cache has not
    /// caught up with that write.
    fn claim(&self, type_: &str, namespace: &str, name: &str) -> Option<Arc<DynamicObject>> {
        let (ar, store) = self.claims.get(type_)?;
        let cached = store.get(&ObjectRef::new_with(name, ar.clone()).within(namespace));
        self.applied
            .newest(&expect::child_key(ar, namespace, name), cached)
    }

    /// A target's Application, read like [`Self::claim`].
    fn application(&self, name: &str) -> Option<Arc<DynamicObject>> {
        let (ar, store) = &self.applications;
        let ns = &self.config.argocd_namespace;
        let cached = store.get(&ObjectRef::new_with(name, ar.clone()).within(ns));
        self.applied
            .newest(&expect::child_key(ar, ns, name), cached)
    }

    fn workflow(&self, name: &str) -> Option<Arc<DynamicObject>> {
        let (ar, store) = &self.workflows;
        store.get(&ObjectRef::new_with(name, ar.clone()).within(&self.config.workflow_namespace))
    }
}

/// `argoproj.io/v1alpha1` `Application`.
pub fn application_resource() -> ApiResource {
    argo_resource("Application", "applications")
}

/// `argoproj.io/v1alpha1` `Workflow`.
pub fn workflow_resource() -> ApiResource {
    argo_resource("Workflow", "workflows")
}

fn argo_resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: "argoproj.io".into(),
        version: "v1alpha1".into(),
        api_version: "argoproj.io/v1alpha1".into(),
        kind: kind.into(),
        plural: plural.into(),
    }
}

type Trigger = BoxStream<'static, Result<DynamicObject, watcher::Error>>;

/// A label-selected watch of one foreign kind: its cache and its trigger stream. Deleted
/// objects are dropped from `applied` and `deleted`.
fn foreign_watch(
    client: &Client,
    ar: &ApiResource,
    (applied, deleted): &(Arc<expect::Expectations>, Arc<expect::Deletions>),
) -> (Store<DynamicObject>, Trigger) {
    let writer = Writer::new(ar.clone());
    let reader = writer.as_reader();
    let selector = format!(
        "{LABEL_MANAGED_BY}={MANAGED_BY},{}",
        build::LABEL_EXPERIMENT
    );
    let stream = watcher::watcher(
        Api::<DynamicObject>::all_with(client.clone(), ar),
        paged(watcher::Config::default().labels(&selector)),
    )
    .default_backoff()
    .modify(|o: &mut DynamicObject| trim(o))
    .reflect(writer)
    .inspect({
        let (applied, deleted) = (applied.clone(), deleted.clone());
        let ar = ar.clone();
        move |event| {
            if let Ok(watcher::Event::Delete(obj)) = event {
                let key = expect::key_of(&ar, obj);
                applied.forget(&key);
                deleted.forget(&key);
            }
        }
    })
    .touched_objects()
    .boxed();
    (reader, stream)
}

/// Maps a Component event to the Experiments (those that read) referencing it.
fn component_wakeups(
    experiments: Store<Lenient<Experiment>>,
) -> impl Fn(Arc<Lenient<Component>>) -> Vec<ObjectRef<Lenient<Experiment>>> {
    move |comp| {
        let all = experiments.state();
        referencing(
            all.iter().filter_map(|e| e.read().map(AsRef::as_ref)),
            &comp.name_any(),
        )
    }
}

/// Maps a child back to its Experiment through its owner labels.
fn owner_of(obj: &DynamicObject) -> Option<ObjectRef<Lenient<Experiment>>> {
    let labels = obj.labels();
    Some(
        ObjectRef::new(labels.get(build::LABEL_EXPERIMENT)?)
            .within(labels.get(build::LABEL_NAMESPACE)?),
    )
}

/// Experiments in `experiments` that reference component `name` (directly, or through the
/// observability components injected for targets with observability enabled).
pub fn referencing<'a>(
    experiments: impl IntoIterator<Item = &'a Experiment>,
    name: &str,
) -> Vec<ObjectRef<Lenient<Experiment>>> {
    experiments
        .into_iter()
        .filter(|e| {
            e.spec.targets.iter().any(|t| {
                let obs = t.observability.as_ref().is_some_and(|o| o.enabled)
                    && build::observability_refs("", build::wants_tailscale(t))
                        .iter()
                        .any(|r| components::ref_name(r, "").ok() == Some(name));
                obs || t.components.as_deref().unwrap_or_default().iter().any(|r| {
                    [r.app.as_deref(), r.workflow.as_deref(), r.config.as_deref()]
                        .contains(&Some(name))
                })
            })
        })
        .map(|e| ObjectRef::new(&e.name_any()).within(&e.namespace().unwrap_or_default()))
        .collect()
}

impl Family for Labs {
    fn name(&self) -> &'static str {
        "labs"
    }

    fn required_crds(&self) -> Vec<CrdRef> {
        vec![
            CrdRef::new(
                agentic_api::labs::GROUP,
                agentic_api::labs::VERSION,
                "experiments",
            ),
            CrdRef::new(
                agentic_api::labs::GROUP,
                agentic_api::labs::VERSION,
                "components",
            ),
        ]
    }

    fn build(
        &self,
        rt: &RuntimeContext,
        watches: &mut SharedWatches,
    ) -> Result<Vec<ControllerTask>, FamilyError> {
        let config = self.config(rt)?;
        tracing::info!(
            provisioning_timeout_seconds = config.provisioning_timeout.as_secs(),
            cluster_types = ?config.cluster_types.keys().collect::<Vec<_>>(),
            "labs configuration loaded"
        );
        // The controller needs its child watches and deadline timers, which the sequential
        // --legacy-watch loop does not run: in that mode it keeps the work queue but reconciles
        // one Experiment at a time.
        let legacy;
        let rt = if rt.settings.legacy_watch {
            tracing::info!(
                "--legacy-watch: the labs controller keeps its watches and timers and reconciles one Experiment at a time"
            );
            let mut settings = (*rt.settings).clone();
            settings.legacy_watch = false;
            settings.max_concurrent_reconciles = 1;
            legacy = RuntimeContext {
                settings: Arc::new(settings),
                ..rt.clone()
            };
            &legacy
        } else {
            rt
        };
        let client = rt.client.clone();
        let experiments = watches.subscribe(
            Api::<Lenient<Experiment>>::all(client.clone()),
            watcher::Config::default(),
        )?;
        let components = watches.subscribe(
            Api::<Lenient<Component>>::all(client.clone()),
            watcher::Config::default(),
        )?;
        let mut triggers: Vec<(ApiResource, Trigger)> = Vec::new();
        let memory = (
            Arc::new(expect::Expectations::default()),
            Arc::new(expect::Deletions::default()),
        );
        let app_ar = application_resource();
        let (app_store, app_trigger) = foreign_watch(&client, &app_ar, &memory);
        triggers.push((app_ar.clone(), app_trigger));
        let wf_ar = workflow_resource();
        let (wf_store, wf_trigger) = foreign_watch(&client, &wf_ar, &memory);
        triggers.push((wf_ar.clone(), wf_trigger));
        let mut claims = BTreeMap::new();
        let mut seen: BTreeMap<String, Store<DynamicObject>> = BTreeMap::new();
        for (type_, mapping) in &config.cluster_types {
            let ar = mapping.api_resource();
            let key = format!("{}/{}", ar.api_version, ar.plural);
            // Two types may share a claim kind; watch it once.
            let store = if let Some(s) = seen.get(&key) {
                s.clone()
            } else {
                let (store, trigger) = foreign_watch(&client, &ar, &memory);
                triggers.push((ar.clone(), trigger));
                seen.insert(key, store.clone());
                store
            };
            claims.insert(type_.clone(), (ar, store));
        }
        let transitions = Transitions::default();
        rt.metrics.register(|r| {
            r.register(
                "labs_experiment_phase_transitions",
                "Lab Experiment phase transitions by from, to and reason",
                transitions.clone(),
            );
        });
        let ctx = Arc::new(Ctx {
            client,
            config,
            components: components.reader.clone(),
            claims,
            applications: (app_ar, app_store),
            workflows: (wf_ar, wf_store),
            recorder: rt.recorders.recorder(CONTROLLER),
            transitions,
            applied: memory.0,
            deleted: memory.1,
            written: expect::Expectations::default(),
        });
        let exp_reader = experiments.reader.clone();
        let component_stream = components.stream;
        let configure = move |c: Controller<Lenient<Experiment>>| {
            let mut c = c.watches_shared_stream(component_stream, component_wakeups(exp_reader));
            for (ar, trigger) in triggers {
                c = c.watches_stream_with(trigger, |o: DynamicObject| owner_of(&o), ar);
            }
            c
        };
        Ok(vec![controller_task(
            rt,
            CONTROLLER,
            experiments,
            configure,
            reconcile::reconcile,
            ctx,
        )])
    }
}

#[cfg(test)]
mod tests {
    use agentic_api::labs::{ComponentRef, ExperimentSpec, ObservabilitySpec, Target, Transport};
    use serde_json::json;

    use super::*;

    #[test]
    fn examples_validate_and_resolve() {
        let exp: Experiment = serde_yaml::from_str(include_str!(
            "../../../../examples/labs/gateway-tutorial.yaml"
        ))
        .unwrap();
        let config = LabsConfig::default();
        let order = validate::validate("gateway-tutorial", &exp.spec.targets, &config).unwrap();
        assert_eq!(order, ["app", "loadgen"]);
        let catalogue: Vec<Arc<Component>> = serde_yaml::Deserializer::from_str(include_str!(
            "../../../../examples/labs/components.yaml"
        ))
        .map(|d| Arc::new(serde::Deserialize::deserialize(d).unwrap()))
        .collect();
        let lookup = |n: &str| {
            catalogue
                .iter()
                .find(|c| c.name_any() == n)
                .cloned()
                .map(Ok)
        };
        for t in &exp.spec.targets {
            let mut refs = t.components.clone().unwrap_or_default();
            if t.observability.as_ref().is_some_and(|o| o.enabled) {
                refs.extend(build::observability_refs(
                    "gateway-tutorial",
                    build::wants_tailscale(t),
                ));
            }
            for r in &refs {
                let sources = components::resolve(r, "example", &lookup).unwrap();
                assert!(!sources.is_empty(), "{r:?}");
            }
        }
    }

    #[test]
    fn children_map_back_through_their_labels() {
        let obj: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
            "metadata": {"name": "gw-app", "namespace": "argocd", "labels": {
                "experiments.illm.io/experiment": "gw", "experiments.illm.io/namespace": "lab"}},
        }))
        .unwrap();
        let r = owner_of(&obj).unwrap();
        assert_eq!(r.name, "gw");
        assert_eq!(r.namespace.as_deref(), Some("lab"));
        let bare: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}}))
        .unwrap();
        assert!(owner_of(&bare).is_none());
    }

    #[test]
    fn components_map_to_the_experiments_using_them() {
        let mut a = Experiment::new(
            "a",
            ExperimentSpec {
                targets: vec![Target {
                    name: "t".into(),
                    components: Some(vec![ComponentRef {
                        app: Some("web".into()),
                        ..ComponentRef::default()
                    }]),
                    ..Target::default()
                }],
                ..ExperimentSpec::default()
            },
        );
        a.metadata.namespace = Some("lab".into());
        let mut b = Experiment::new(
            "b",
            ExperimentSpec {
                targets: vec![Target {
                    name: "t".into(),
                    observability: Some(ObservabilitySpec {
                        enabled: true,
                        transport: Transport::Direct,
                        tenant: None,
                    }),
                    ..Target::default()
                }],
                ..ExperimentSpec::default()
            },
        );
        b.metadata.namespace = Some("lab".into());
        let all = [Arc::new(a), Arc::new(b)];
        let names = |n: &str| {
            referencing(all.iter().map(AsRef::as_ref), n)
                .into_iter()
                .map(|r| r.name)
                .collect::<Vec<_>>()
        };
        assert_eq!(names("web"), ["a"]);
        assert_eq!(names("metrics-agent"), ["b"]);
        assert!(names("other").is_empty());
    }
}
