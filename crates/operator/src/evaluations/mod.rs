//! The evaluations family (`testbench.agentic-layer.ai/v1alpha1` `Experiment`): each
//! Experiment becomes an `experiment.json` `ConfigMap`, a Testkube `TestWorkflow` chaining the
//! phase templates and, when enabled, a `TestTrigger` on the agent's Deployment.
//!
//! Stages: [`validate`] (pure spec rules, shared with the webhook), [`agent`] (agent URL
//! resolution), [`build`] (pure desired objects), [`cached`] (the packed Experiment cache),
//! [`children`] (the projection cache of the
//! generated objects, indexed by owner), [`reconcile`] (observe, apply, prune, finalize),
//! [`status`] (pure status). docs/evaluations.md describes the behaviour.

pub mod agent;
pub mod build;
pub mod cached;
pub mod children;
pub mod error;
pub mod experiment_json;
pub mod gateway;
pub mod metrics;
pub mod reconcile;
pub mod status;
pub mod validate;

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use std::{fmt::Debug, hash::Hash};

use futures::{StreamExt, stream::BoxStream};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{ApiResource, DynamicObject},
    runtime::{
        WatchStreamExt,
        reflector::{ObjectRef, Store, store::Writer},
        watcher,
    },
};
use serde::de::DeserializeOwned;

use cached::CachedExperiment;
use children::ChildCache;

use crate::runtime::watches::{paged, trim};
use crate::runtime::{
    ControllerTask, CrdRef, Family, FamilyError, RuntimeContext, SharedWatches, controller_task,
};

/// Controller name (metrics label, Events).
pub const CONTROLLER: &str = "experiment";

/// The evaluations family as the manager sees it.
#[derive(Debug, Default, Clone, Copy)]
pub struct Evaluations;

impl Family for Evaluations {
    fn name(&self) -> &'static str {
        "evaluations"
    }

    fn required_crds(&self) -> Vec<CrdRef> {
        vec![CrdRef::new(
            agentic_api::evaluations::GROUP,
            agentic_api::evaluations::VERSION,
            "experiments",
        )]
    }

    fn build(
        &self,
        rt: &RuntimeContext,
        watches: &mut SharedWatches,
    ) -> Result<Vec<ControllerTask>, FamilyError> {
        Ok(vec![controller(rt, watches)?])
    }
}

/// A watch with its own cache and trigger stream, outside the shared watches: for kinds that
/// may not be installed (Testkube's, the agent runtime's), so that a missing CRD neither blocks
/// readiness nor stalls the Experiment watch, and for children whose deletion must trigger a
/// repair (shared subscriptions do not deliver deletions). The generated objects have their
/// own cache, [`children::ChildCache`]. Watch errors are retried with
/// backoff and logged at debug level; `synced` turns true after the first complete list.
pub struct OwnWatch<K: Resource + Clone + 'static>
where
    K::DynamicType: Eq + Hash + Clone,
{
    /// The cache.
    pub store: Store<K>,
    /// Whether the first list completed.
    pub synced: Arc<AtomicBool>,
    /// Whether the first list completed or failed: until then an empty cache means nothing.
    pub settled: Arc<AtomicBool>,
    /// Changed and deleted objects.
    pub stream: BoxStream<'static, Result<K, watcher::Error>>,
}

impl<K: Resource + Clone + 'static> std::fmt::Debug for OwnWatch<K>
where
    K::DynamicType: Eq + Hash + Clone,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnWatch").finish_non_exhaustive()
    }
}

/// Starts (lazily: nothing happens until the stream is polled) an [`OwnWatch`] of `api`.
pub fn own_watch<K>(api: Api<K>, dyntype: K::DynamicType, config: watcher::Config) -> OwnWatch<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone + Send + Sync,
{
    let kind = K::kind(&dyntype).into_owned();
    let writer = Writer::new(dyntype);
    let store = writer.as_reader();
    let synced = Arc::new(AtomicBool::new(false));
    let flag = synced.clone();
    let settled = Arc::new(AtomicBool::new(false));
    let answered = settled.clone();
    let stream = watcher(api, paged(config))
        .default_backoff()
        .modify(|obj| trim(obj))
        .map(move |event| {
            match &event {
                Ok(watcher::Event::InitDone) => {
                    flag.store(true, Ordering::Relaxed);
                    answered.store(true, Ordering::Relaxed);
                }
                Err(_) => answered.store(true, Ordering::Relaxed),
                Ok(_) => {}
            }
            event
        })
        .reflect(writer)
        .touched_objects()
        .filter_map(move |item| {
            let kind = kind.clone();
            async move {
                match item {
                    Ok(obj) => Some(Ok(obj)),
                    Err(error) => {
                        tracing::debug!(%kind, %error, "watch error; retrying with backoff");
                        None
                    }
                }
            }
        })
        .boxed();
    OwnWatch {
        store,
        synced,
        settled,
        stream,
    }
}

/// An [`OwnWatch`] of a dynamic kind, across all namespaces.
pub fn dynamic_watch(
    client: Client,
    ar: &ApiResource,
    config: watcher::Config,
) -> OwnWatch<DynamicObject> {
    own_watch(Api::all_with(client, ar), ar.clone(), config)
}

/// Builds the Experiment controller on the shared runtime.
pub fn controller(
    rt: &RuntimeContext,
    watches: &mut SharedWatches,
) -> Result<ControllerTask, FamilyError> {
    let client = rt.client.clone();
    let experiments = watches.subscribe(
        Api::<CachedExperiment>::all(client.clone()),
        watcher::Config::default(),
    )?;
    // Generated objects: label-selected, kept as small projections with an owner index.
    let selected = watcher::Config::default().labels(build::CHILD_SELECTOR);
    let config_maps = ChildCache::default();
    let workflows = ChildCache::default();
    let triggers = ChildCache::default();
    let child_events = futures::stream::select_all([
        config_maps.watch(
            client.clone(),
            &reconcile::config_map_resource(),
            selected.clone(),
        ),
        workflows.watch(
            client.clone(),
            &build::test_workflow_resource(),
            selected.clone(),
        ),
        triggers.watch(client.clone(), &build::test_trigger_resource(), selected),
    ]);
    let otel_configs = own_watch(
        Api::<ConfigMap>::all(client.clone()),
        (),
        watcher::Config::default().fields(&format!(
            "metadata.name={}",
            agentic_api::evaluations::OTEL_CONFIG_MAP
        )),
    );
    let agents = dynamic_watch(
        client.clone(),
        &agent::agent_resource(),
        watcher::Config::default(),
    );

    let gateways = dynamic_watch(
        client.clone(),
        &gateway::ai_gateway_resource(),
        watcher::Config::default(),
    );

    let ctx = Arc::new(reconcile::Context {
        client,
        recorder: rt.recorders.recorder(CONTROLLER),
        testkube_namespace: rt.settings.testkube_namespace.clone(),
        config_maps: config_maps.clone(),
        workflows: workflows.clone(),
        triggers: triggers.clone(),
        statuses: reconcile::StatusMemo::default(),
        agents: agents.store.clone(),
        agents_synced: agents.synced.clone(),
        gateways: gateways.store.clone(),
        metrics: rt.metrics.register(metrics::EvaluationMetrics::register),
        otel_configs: otel_configs.store.clone(),
        otel_synced: otel_configs.synced.clone(),
        settled: vec![
            config_maps.settled.clone(),
            workflows.settled.clone(),
            triggers.settled.clone(),
            agents.settled.clone(),
            gateways.settled.clone(),
            otel_configs.settled.clone(),
        ],
    });
    let index = experiments.reader.clone();
    let otel_index = experiments.reader.clone();
    let testkube_namespace = rt.settings.testkube_namespace.clone();
    let agent_ar = agent::agent_resource();
    let gateway_wakes = gateway_trigger(experiments.reader.clone(), ctx.gateways.clone());
    let gateway_ar = gateway::ai_gateway_resource();
    Ok(controller_task(
        rt,
        CONTROLLER,
        experiments,
        move |c| {
            c.reconcile_on(child_events)
                .watches_stream(otel_configs.stream, move |cm: ConfigMap| {
                    running_in(
                        &otel_index,
                        testkube_namespace.as_deref(),
                        &cm.namespace().unwrap_or_default(),
                    )
                })
                .watches_stream_with(
                    agents.stream,
                    move |agent: DynamicObject| referencing(&index, &agent),
                    agent_ar,
                )
                .watches_stream_with(gateways.stream, gateway_wakes, gateway_ar)
        },
        reconcile::reconcile,
        ctx,
    ))
}

/// Experiments whose workflow runs in `namespace`.
fn running_in(
    index: &Store<CachedExperiment>,
    testkube_namespace: Option<&str>,
    namespace: &str,
) -> Vec<ObjectRef<CachedExperiment>> {
    index
        .state()
        .iter()
        .filter(|exp| {
            build::names(
                &exp.name_any(),
                &exp.namespace().unwrap_or_default(),
                testkube_namespace,
            )
            .namespace
                == namespace
        })
        .map(|exp| ObjectRef::from_obj(exp.as_ref()))
        .collect()
}

/// Experiments whose `agentRef` names `agent`.
fn referencing(
    index: &Store<CachedExperiment>,
    agent: &DynamicObject,
) -> Vec<ObjectRef<CachedExperiment>> {
    let agent_ns = agent.namespace().unwrap_or_default();
    let agent_name = agent.name_any();
    index
        .state()
        .iter()
        .filter(|exp| {
            let ns = exp.namespace().unwrap_or_default();
            exp.agent_ref.name == agent_name && exp.agent_ref.namespace_or(&ns) == agent_ns
        })
        .map(|exp| ObjectRef::from_obj(exp.as_ref()))
        .collect()
}

/// Maps an `AiGateway` event to the Experiments to reconcile: none unless it changes what a
/// workflow uses ([`GatewayMemo`]), else those that may use it ([`using_gateway`]).
fn gateway_trigger(
    experiments: Store<CachedExperiment>,
    gateways: Store<DynamicObject>,
) -> impl Fn(DynamicObject) -> Vec<ObjectRef<CachedExperiment>> + Send + Sync + 'static {
    let memo = GatewayMemo::default();
    move |gw| {
        if memo.changed(&gateways, &gw) {
            using_gateway(&experiments, &gw)
        } else {
            Vec::new()
        }
    }
}

/// What the evaluate step takes from each known `AiGateway`: its effective port
/// ([`gateway::port_of`]), or nothing once it is gone. A gateway event that changes neither (a
/// status update by the gateway's own controller, a label) wakes no Experiment, however many
/// there are.
#[derive(Default)]
struct GatewayMemo(std::sync::Mutex<std::collections::HashMap<(String, String), i64>>);

impl GatewayMemo {
    /// Whether `gw`'s event (a change, or a deletion: it is no longer in `store`) changes
    /// what a workflow would use, remembering the new state.
    fn changed(&self, store: &Store<DynamicObject>, gw: &DynamicObject) -> bool {
        let key = (gw.namespace().unwrap_or_default(), gw.name_any());
        let now = store
            .get(&ObjectRef::from_obj_with(
                gw,
                gateway::ai_gateway_resource(),
            ))
            .map(|live| gateway::port_of(&live.data));
        let mut memo = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let before = match now {
            Some(port) => memo.insert(key, port),
            None => memo.remove(&key),
        };
        before != now
    }
}

/// Experiments whose gateway `gw` may be: those whose `aiGatewayRef` names it, and, for a
/// gateway in `ai-gateway`, every Experiment without a reference (the first gateway there by
/// name is their default, so adding or removing one can change it).
fn using_gateway(
    index: &Store<CachedExperiment>,
    gw: &DynamicObject,
) -> Vec<ObjectRef<CachedExperiment>> {
    let gw_ns = gw.namespace().unwrap_or_default();
    let gw_name = gw.name_any();
    let default_candidate = gw_ns == gateway::DEFAULT_GATEWAY_NAMESPACE;
    index
        .state()
        .iter()
        .filter(|exp| {
            match gateway::reference(
                &exp.namespace().unwrap_or_default(),
                exp.ai_gateway_ref.as_deref(),
            ) {
                Some((ns, name)) => ns == gw_ns && name == gw_name,
                None => default_candidate,
            }
        })
        .map(|exp| ObjectRef::from_obj(exp.as_ref()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::{reflector::store::Writer, watcher::Event};

    fn gateway(name: &str, port: Option<i64>, label: &str) -> DynamicObject {
        let mut spec = serde_json::json!({"aiModels": [{"name": "m", "provider": "p"}]});
        if let Some(p) = port {
            spec["port"] = serde_json::json!(p);
        }
        let mut gw = DynamicObject::new(name, &gateway::ai_gateway_resource())
            .within("ai-gateway")
            .data(serde_json::json!({"spec": spec}));
        gw.metadata.labels = Some([("l".to_owned(), label.to_owned())].into());
        gw
    }

    #[test]
    fn only_new_moved_or_removed_gateways_wake_experiments() {
        let mut writer = Writer::new(gateway::ai_gateway_resource());
        let store = writer.as_reader();
        let memo = GatewayMemo::default();
        let mut seen = |event: Event<DynamicObject>, gw: &DynamicObject| {
            writer.apply_watcher_event(&event);
            memo.changed(&store, gw)
        };
        let first = gateway("g", Some(4000), "a");
        assert!(seen(Event::Apply(first.clone()), &first), "new");
        let relabelled = gateway("g", Some(4000), "b");
        assert!(
            !seen(Event::Apply(relabelled.clone()), &relabelled),
            "same port"
        );
        let moved = gateway("g", None, "b");
        assert!(
            seen(Event::Apply(moved.clone()), &moved),
            "port changed to the default"
        );
        assert!(seen(Event::Delete(moved.clone()), &moved), "removed");
        assert!(!seen(Event::Delete(moved.clone()), &moved), "already gone");
    }
}
