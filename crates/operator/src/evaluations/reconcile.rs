//! The evaluation `Experiment` reconcile: observe (caches), validate, build, apply
//! (server-side apply, skipping unchanged objects, pruning what is no longer wanted) and
//! status (written only when it changed, by server-side apply of the operator's own fields:
//! no resourceVersion precondition, and other writers' conditions are left alone).

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use agentic_api::evaluations::{
    Experiment, ExperimentStatus, GeneratedResource, LEGACY_FINALIZER, OTEL_CONFIG_MAP,
    OTEL_ENDPOINT_KEY,
};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{ApiResource, DeleteParams, DynamicObject, Patch, PatchParams},
    runtime::{
        controller::Action,
        events::{Event, EventType, Recorder},
        reflector::{ObjectRef, Store},
    },
};
use serde_json::{Value, json};

use crate::runtime::slim::SlimDynamic;

use super::{
    agent::{self, agent_resource},
    build::{
        self, Desired, FIELD_MANAGER, FINALIZER, test_trigger_resource, test_workflow_resource,
    },
    cached::CachedExperiment,
    children::{self, ChildCache, Decision, IN_FLIGHT_TTL},
    error::EvaluationError,
    gateway,
    metrics::EvaluationMetrics,
    status::{OtelSource, Outcome, WorkflowOutcome, desired_status, owned_part},
    validate,
};

/// What the reconcile reads and writes through.
pub struct Context {
    /// Kubernetes client.
    pub client: Client,
    /// Event recorder of the controller.
    pub recorder: Arc<Recorder>,
    /// `--testkube-namespace`: where workflows and triggers go, `None` for the Experiment's own.
    pub testkube_namespace: Option<String>,
    /// Generated `ConfigMaps` (label-selected).
    pub config_maps: ChildCache,
    /// Generated `TestWorkflows` (label-selected).
    pub workflows: ChildCache,
    /// Generated `TestTriggers` (label-selected).
    pub triggers: ChildCache,
    /// Status writes the Experiment cache has not caught up with.
    pub statuses: StatusMemo,
    /// Agents of the agent runtime.
    pub agents: Store<DynamicObject>,
    /// Whether the Agent watch has listed once (the Agent CRD is installed).
    pub agents_synced: Arc<AtomicBool>,
    /// `AiGateways` of the agent runtime.
    pub gateways: Store<DynamicObject>,
    /// Domain metrics.
    pub metrics: EvaluationMetrics,
    /// `otel-config` `ConfigMaps` (by name).
    pub otel_configs: Store<ConfigMap>,
    /// Whether the `otel-config` watch has listed once.
    pub otel_synced: Arc<AtomicBool>,
    /// One flag per cache: its first list completed or failed. Until all are set (right after
    /// start) a reconcile waits, so that an unlisted cache is not mistaken for a missing Agent
    /// or a missing child.
    pub settled: Vec<Arc<AtomicBool>>,
}

/// A status write, and the Experiment's resourceVersion it was based on.
#[derive(Debug)]
struct WrittenStatus {
    before: Option<String>,
    status: ExperimentStatus,
    at: Instant,
}

/// Status writes by Experiment, and the size at which old entries are swept next.
type StatusEntries = (HashMap<(String, String), WrittenStatus>, usize);

/// The statuses this operator wrote, until the Experiment cache shows a newer version: a
/// reconcile that runs before the status write's watch event arrives compares against what
/// was written, not against the older cached status, and so does not write it again.
#[derive(Debug, Default)]
pub struct StatusMemo {
    written: Mutex<StatusEntries>,
}

impl StatusMemo {
    fn key(exp: &Experiment) -> (String, String) {
        (exp.namespace().unwrap_or_default(), exp.name_any())
    }

    /// The status `exp` has as far as this operator knows: the one it wrote, while the cache
    /// still holds the version that write was based on; else the cached one.
    pub fn base(&self, exp: &Experiment) -> Option<ExperimentStatus> {
        let mut guard = self.written.lock().unwrap_or_else(PoisonError::into_inner);
        let key = Self::key(exp);
        if let Some(w) = guard.0.get(&key) {
            if w.before.as_deref() == exp.metadata.resource_version.as_deref() {
                return Some(w.status.clone());
            }
            guard.0.remove(&key);
        }
        exp.status.clone()
    }

    /// Records that `status` was written over `exp` (as cached).
    pub fn record(&self, exp: &Experiment, status: &ExperimentStatus) {
        let mut guard = self.written.lock().unwrap_or_else(PoisonError::into_inner);
        let (written, sweep_at) = &mut *guard;
        written.insert(
            Self::key(exp),
            WrittenStatus {
                before: exp.metadata.resource_version.clone(),
                status: status.clone(),
                at: Instant::now(),
            },
        );
        if written.len() >= *sweep_at {
            // Entries of Experiments reconciled no more: the cache has long caught up.
            written.retain(|_, w| w.at.elapsed() < IN_FLIGHT_TTL);
            *sweep_at = (written.len() * 2).max(1024);
        }
    }

    /// Forgets `exp`'s entry.
    pub fn forget(&self, exp: &Experiment) {
        self.written
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .0
            .remove(&Self::key(exp));
    }
}

/// How long a reconcile waits for the caches to list after a start.
pub const CACHE_WAIT: std::time::Duration = std::time::Duration::from_millis(200);

/// Where the OTLP endpoint of `exp`'s workflow, running in `namespace`, comes from; `None`
/// until the `otel-config` cache has listed.
pub fn otel_source(ctx: &Context, exp: &Experiment, namespace: &str) -> Option<OtelSource> {
    let in_spec = exp
        .spec
        .otlp_endpoint
        .as_deref()
        .is_some_and(|e| !e.is_empty())
        || exp
            .spec
            .env
            .iter()
            .flatten()
            .any(|e| e.name == OTEL_ENDPOINT_KEY);
    if in_spec {
        return Some(OtelSource::Spec);
    }
    if !ctx.otel_synced.load(Ordering::Relaxed) {
        return None;
    }
    let present = ctx
        .otel_configs
        .get(&ObjectRef::new(OTEL_CONFIG_MAP).within(namespace))
        .is_some_and(|cm| {
            cm.data
                .as_ref()
                .is_some_and(|d| d.contains_key(OTEL_ENDPOINT_KEY))
        });
    Some(if present {
        OtelSource::ConfigMap
    } else {
        OtelSource::Missing(namespace.to_owned())
    })
}

/// Whether `live` already has everything `desired` sets: maps compare key by key (extra live
/// keys such as server defaults are fine), lists must have the same length and match item by
/// item, scalars must be equal.
pub fn contains(live: &Value, desired: &Value) -> bool {
    match (live, desired) {
        (_, Value::Null) => true,
        (Value::Object(have), Value::Object(want)) => want
            .iter()
            .all(|(k, w)| contains(have.get(k).unwrap_or(&Value::Null), w)),
        (Value::Array(have), Value::Array(want)) => {
            have.len() == want.len() && have.iter().zip(want).all(|(h, w)| contains(h, w))
        }
        (have, want) => have == want,
    }
}

fn unchanged<T: serde::Serialize>(live: Option<&T>, desired: &T) -> bool {
    let Some(live) = live else { return false };
    match (serde_json::to_value(live), serde_json::to_value(desired)) {
        (Ok(mut live), Ok(mut desired)) => {
            // Only what we set in metadata matters; the server adds the rest.
            for v in [&mut live, &mut desired] {
                if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
                    meta.retain(|k, _| {
                        matches!(
                            k.as_str(),
                            "name" | "namespace" | "labels" | "annotations" | "ownerReferences"
                        )
                    });
                }
            }
            contains(&live, &desired)
        }
        _ => false,
    }
}

fn write_error(
    verb: &'static str,
    kind: &str,
    namespace: &str,
    name: &str,
    source: kube::Error,
) -> EvaluationError {
    EvaluationError::Write {
        verb,
        kind: kind.to_owned(),
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        source: Box::new(source),
    }
}

fn is_not_found(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 404)
}

fn dynamic_ref(ar: &ApiResource, namespace: &str, name: &str) -> ObjectRef<DynamicObject> {
    ObjectRef::new_with(name, ar.clone()).within(namespace)
}

/// What became of one desired object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Applied {
    /// Already in place.
    Unchanged,
    /// Written before and not yet seen in the cache; look again within the given time.
    InFlight(Duration),
    /// Written now.
    Written,
}

/// The `ConfigMap` as a dynamic object, so that every child goes through [`apply_child`].
fn config_map_object(cm: &ConfigMap) -> DynamicObject {
    let mut data = serde_json::to_value(cm).unwrap_or(Value::Null);
    if let Some(map) = data.as_object_mut() {
        for key in ["apiVersion", "kind", "metadata"] {
            map.remove(key);
        }
    }
    let mut obj = DynamicObject::new(&cm.name_any(), &config_map_resource()).data(data);
    obj.metadata = cm.metadata.clone();
    obj
}

/// The core `ConfigMap` resource.
pub fn config_map_resource() -> ApiResource {
    ApiResource::erase::<ConfigMap>(&())
}

/// Applies `desired` unless the cache shows it in place or a write of it is in flight.
async fn apply_child(
    ctx: &Context,
    cache: &ChildCache,
    ar: &ApiResource,
    desired: &DynamicObject,
) -> Result<Applied, kube::Error> {
    let namespace = desired.namespace().unwrap_or_default();
    let name = desired.name_any();
    let want = children::fingerprint_of(desired);
    match cache.decide(&namespace, &name, want) {
        Decision::Unchanged => return Ok(Applied::Unchanged),
        Decision::InFlight(left) => return Ok(Applied::InFlight(left)),
        Decision::Apply => {}
    }
    let before = cache
        .get(&namespace, &name)
        .and_then(|c| c.resource_version);
    // The answer is read without its managedFields (nothing here uses them).
    let SlimDynamic(answer) =
        Api::<SlimDynamic>::namespaced_with(ctx.client.clone(), &namespace, ar)
            .patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(desired),
            )
            .await?;
    let contains = unchanged(Some(&answer), desired);
    cache.record_write(&namespace, &name, want, before, &answer, contains);
    Ok(Applied::Written)
}

async fn delete_dynamic(
    client: &Client,
    ar: &ApiResource,
    namespace: &str,
    name: &str,
) -> Result<(), EvaluationError> {
    match Api::<DynamicObject>::namespaced_with(client.clone(), namespace, ar)
        .delete(name, &DeleteParams::background())
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(write_error("delete", &ar.kind, namespace, name, e)),
    }
}

/// Deletes a `ConfigMap`. With `orphan`, objects it owns are kept (their owner reference to
/// it is removed): the anchor `ConfigMap` of upstream's later versions owns the workflow and
/// trigger this operator has adopted under the same names.
async fn delete_config_map(
    client: &Client,
    namespace: &str,
    name: &str,
    orphan: bool,
) -> Result<(), EvaluationError> {
    let params = if orphan {
        DeleteParams::orphan()
    } else {
        DeleteParams::background()
    };
    match Api::<ConfigMap>::namespaced(client.clone(), namespace)
        .delete(name, &params)
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(write_error("delete", "ConfigMap", namespace, name, e)),
    }
}

fn owner_key(exp: &Experiment) -> String {
    format!("{}/{}", exp.namespace().unwrap_or_default(), exp.name_any())
}

/// Generated objects of `exp` in the caches that `keep` does not name: left over from an
/// earlier mode, name or a disabled trigger. Found through the caches' owner index, so the
/// cost does not grow with the number of Experiments.
fn stale(
    ctx: &Context,
    exp: &Experiment,
    keep: &[(&str, &str, &str)],
) -> Vec<(&'static str, String, String)> {
    let key = owner_key(exp);
    let mut out = Vec::new();
    for (kind, cache) in [
        ("ConfigMap", &ctx.config_maps),
        ("TestWorkflow", &ctx.workflows),
        ("TestTrigger", &ctx.triggers),
    ] {
        for (ns, name) in cache.owned_by(&key) {
            let wanted = keep
                .iter()
                .any(|(k, n, m)| *k == kind && *n == ns && *m == name);
            if !wanted {
                out.push((kind, ns, name));
            }
        }
    }
    out
}

/// Deletes the generated objects of `exp` that `keep` does not name. While the Experiment
/// lives, `ConfigMap`s go with orphan propagation (an upstream anchor's dependents may be the
/// objects just adopted); when it is deleted (`keep` empty), with everything they own.
async fn delete_stale(
    ctx: &Context,
    exp: &Experiment,
    keep: &[(&str, &str, &str)],
) -> Result<(), EvaluationError> {
    let orphan = !keep.is_empty();
    for (kind, ns, name) in stale(ctx, exp, keep) {
        match kind {
            "ConfigMap" => delete_config_map(&ctx.client, &ns, &name, orphan).await?,
            "TestWorkflow" => {
                delete_dynamic(&ctx.client, &test_workflow_resource(), &ns, &name).await?;
            }
            _ => delete_dynamic(&ctx.client, &test_trigger_resource(), &ns, &name).await?,
        }
        ctx.metrics.write(kind, "delete");
        tracing::info!(kind, namespace = %ns, name = %name, "deleted a generated object that is no longer wanted");
    }
    Ok(())
}

async fn set_finalizers(
    ctx: &Context,
    exp: &Experiment,
    finalizers: Vec<String>,
) -> Result<(), EvaluationError> {
    let namespace = exp.namespace().unwrap_or_default();
    let name = exp.name_any();
    let patch = json!({"metadata": {
        "finalizers": finalizers,
        "resourceVersion": exp.resource_version(),
    }});
    Api::<Experiment>::namespaced(ctx.client.clone(), &namespace)
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(|_| ())
        .map_err(|e| EvaluationError::Update {
            namespace,
            name,
            source: Box::new(e),
        })
}

/// Deletion with our finalizer: removes the generated objects (they live in another
/// namespace, so garbage collection cannot), then the finalizer.
async fn finalize(ctx: &Context, exp: &Experiment) -> Result<Action, EvaluationError> {
    let names = build::names(
        &exp.name_any(),
        &exp.namespace().unwrap_or_default(),
        ctx.testkube_namespace.as_deref(),
    );
    delete_config_map(&ctx.client, &names.namespace, &names.config_map, false).await?;
    delete_dynamic(
        &ctx.client,
        &test_workflow_resource(),
        &names.namespace,
        &names.workflow,
    )
    .await?;
    delete_dynamic(
        &ctx.client,
        &test_trigger_resource(),
        &names.namespace,
        &names.trigger,
    )
    .await?;
    delete_stale(ctx, exp, &[]).await?;
    ctx.statuses.forget(exp);
    let remaining: Vec<String> = exp
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER && *f != LEGACY_FINALIZER)
        .cloned()
        .collect();
    if remaining.len() != exp.finalizers().len() {
        set_finalizers(ctx, exp, remaining).await?;
    }
    Ok(Action::await_change())
}

async fn publish(ctx: &Context, exp: &Experiment, event: Event) {
    crate::runtime::events::publish(&ctx.recorder, &event, &exp.object_ref(&())).await;
}

/// A Warning Event `SpecWarning` with what validation accepted but the run will not honour
/// (the webhook shows the same text at `kubectl apply`; this reaches users without it).
/// Called once per generation: when the status that records it is written.
async fn warn_once(ctx: &Context, exp: &Experiment, warnings: &[String]) {
    if warnings.is_empty() {
        return;
    }
    publish(
        ctx,
        exp,
        Event {
            type_: EventType::Warning,
            reason: "SpecWarning".into(),
            note: Some(warnings.join("; ").chars().take(1000).collect()),
            action: "Validate".into(),
            secondary: None,
        },
    )
    .await;
}

/// Writes `status` unless `previous` (see [`StatusMemo::base`]) already is it.
async fn write_status(
    ctx: &Context,
    exp: &Experiment,
    previous: Option<&ExperimentStatus>,
    status: &ExperimentStatus,
) -> Result<bool, EvaluationError> {
    if previous == Some(status) {
        return Ok(false);
    }
    let before = previous.and_then(|s| s.conditions.as_ref());
    let flipped: Vec<_> = status
        .conditions
        .iter()
        .flatten()
        .filter(|c| {
            before
                .and_then(|b| b.iter().find(|o| o.type_ == c.type_))
                .is_none_or(|o| o.status != c.status || o.reason != c.reason)
        })
        .collect();
    let namespace = exp.namespace().unwrap_or_default();
    let name = exp.name_any();
    // Only the fields this operator decides, without a resourceVersion: a concurrent writer
    // neither makes this fail with a conflict nor loses its own conditions.
    let body = json!({
        "apiVersion": Experiment::api_version(&()),
        "kind": Experiment::kind(&()),
        "status": owned_part(status),
    });
    Api::<Experiment>::namespaced(ctx.client.clone(), &namespace)
        .patch_status(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await
        .map(|_| {
            for c in &flipped {
                ctx.metrics.transition(&c.type_, &c.status, &c.reason);
            }
            ctx.statuses.record(exp, status);
            true
        })
        .map_err(|e| EvaluationError::Update {
            namespace,
            name,
            source: Box::new(e),
        })
}

fn now() -> Time {
    Time(jiff::Timestamp::now())
}

fn resource(kind: &str, namespace: &str, name: &str) -> GeneratedResource {
    GeneratedResource {
        kind: kind.to_owned(),
        name: name.to_owned(),
        namespace: Some(namespace.to_owned()),
    }
}

/// The outcome of applying `desired`, the error to end the reconcile with, if any, and the
/// longest wait for a write in flight (see [`Applied::InFlight`]).
async fn apply_all(
    ctx: &Context,
    desired: &Desired,
) -> (Outcome, Option<EvaluationError>, Option<Duration>) {
    let names = &desired.names;
    let ns = names.namespace.as_str();
    let mut outcome = Outcome {
        problem: None,
        workflow: WorkflowOutcome::Applied,
        generated: Vec::new(),
        agent: None,
        agent_missing: false,
        gateway: None,
        otel: None,
        last_execution: None,
    };
    let mut wait: Option<Duration> = None;
    let mut note = |kind: &str, applied: Applied| match applied {
        Applied::Written => ctx.metrics.write(kind, "apply"),
        Applied::InFlight(w) => wait = Some(wait.map_or(w, |v| v.max(w))),
        Applied::Unchanged => {}
    };
    let config_map = config_map_object(&desired.config_map);
    match apply_child(ctx, &ctx.config_maps, &config_map_resource(), &config_map).await {
        Ok(applied) => note("ConfigMap", applied),
        Err(e) => {
            let error = write_error("apply", "ConfigMap", ns, &names.config_map, e);
            outcome.problem = Some(error.to_string());
            outcome.workflow = WorkflowOutcome::NotAttempted(
                "the experiment.json ConfigMap could not be written".into(),
            );
            return (outcome, Some(error), wait);
        }
    }
    outcome
        .generated
        .push(resource("ConfigMap", ns, &names.config_map));

    let workflow_ar = test_workflow_resource();
    match apply_child(ctx, &ctx.workflows, &workflow_ar, &desired.workflow).await {
        Ok(applied) => {
            note("TestWorkflow", applied);
            outcome
                .generated
                .push(resource("TestWorkflow", ns, &names.workflow));
        }
        Err(e) if is_not_found(&e) => {
            outcome.workflow = WorkflowOutcome::CrdNotInstalled;
            return (outcome, Some(EvaluationError::CrdNotInstalled), wait);
        }
        Err(e) => {
            let error = write_error("apply", "TestWorkflow", ns, &names.workflow, e);
            outcome.workflow = WorkflowOutcome::Failed(error.to_string());
            return (outcome, Some(error), wait);
        }
    }

    if let Some(trigger) = &desired.trigger {
        let trigger_ar = test_trigger_resource();
        match apply_child(ctx, &ctx.triggers, &trigger_ar, trigger).await {
            Ok(applied) => {
                note("TestTrigger", applied);
                outcome
                    .generated
                    .push(resource("TestTrigger", ns, &names.trigger));
            }
            Err(e) => {
                let missing = is_not_found(&e);
                let error = write_error("apply", "TestTrigger", ns, &names.trigger, e);
                outcome.problem = Some(if missing {
                    "the TestTrigger CRD (tests.testkube.io/v1) is not installed; the trigger was not created".to_owned()
                } else {
                    error.to_string()
                });
                return (outcome, Some(error), wait);
            }
        }
    }
    (outcome, None, wait)
}

/// Records an invalid spec: `Ready=False` with the rejected fields, and a Warning Event when
/// the status changed. Returns the permanent error the reconcile ends with (or the status
/// write failure, which is retried).
async fn report_invalid(
    ctx: &Context,
    exp: &Experiment,
    errors: &[validate::FieldError],
) -> EvaluationError {
    let problems = validate::join(errors);
    let previous = ctx.statuses.base(exp);
    let outcome = Outcome {
        problem: Some(format!("invalid spec: {problems}")),
        workflow: WorkflowOutcome::NotAttempted("the spec is invalid".into()),
        generated: previous
            .as_ref()
            .and_then(|s| s.generated_resources.clone())
            .unwrap_or_default(),
        agent: None,
        agent_missing: false,
        gateway: None,
        otel: None,
        last_execution: None,
    };
    let status = desired_status(previous.as_ref(), &outcome, exp.meta().generation, &now());
    match write_status(ctx, exp, previous.as_ref(), &status).await {
        Ok(true) => {
            publish(
                ctx,
                exp,
                Event {
                    type_: EventType::Warning,
                    reason: "InvalidSpec".into(),
                    note: Some(problems.chars().take(1000).collect()),
                    action: "Validate".into(),
                    secondary: None,
                },
            )
            .await;
        }
        Ok(false) => {}
        Err(error) => return error,
    }
    EvaluationError::InvalidSpec {
        namespace: exp.namespace().unwrap_or_default(),
        name: exp.name_any(),
        problems,
    }
}

/// The AI gateway of `exp` among the cached `AiGateways` (a handful per cluster).
fn observe_gateway(ctx: &Context, namespace: &str, exp: &Experiment) -> gateway::Gateway {
    let gateways: Vec<Value> = ctx
        .gateways
        .state()
        .iter()
        .filter_map(|g| serde_json::to_value(g.as_ref()).ok())
        .collect();
    gateway::resolve(namespace, exp, &gateways)
}

/// Reconciles one evaluation `Experiment`.
pub async fn reconcile(
    cached: Arc<CachedExperiment>,
    ctx: Arc<Context>,
) -> Result<Action, EvaluationError> {
    match cached.experiment() {
        Ok(exp) => reconcile_experiment(&exp, &ctx).await,
        Err(source) => {
            let error = EvaluationError::Decode {
                namespace: cached.namespace().unwrap_or_default(),
                name: cached.name_any(),
                source,
            };
            crate::runtime::events::invalid_object(&ctx.recorder, &error, &cached.object_ref(&()))
                .await;
            Err(error)
        }
    }
}

/// Reconciles one Experiment, read whole from the cache.
async fn reconcile_experiment(exp: &Experiment, ctx: &Context) -> Result<Action, EvaluationError> {
    let namespace = exp.namespace().unwrap_or_default();
    let name = exp.name_any();
    if exp.meta().deletion_timestamp.is_some() {
        let ours = exp
            .finalizers()
            .iter()
            .any(|f| f == FINALIZER || f == LEGACY_FINALIZER);
        return if ours {
            finalize(ctx, exp).await
        } else {
            Ok(Action::await_change())
        };
    }

    if ctx.settled.iter().any(|f| !f.load(Ordering::Relaxed)) {
        return Ok(Action::requeue(CACHE_WAIT));
    }
    let names = build::names(&name, &namespace, ctx.testkube_namespace.as_deref());
    // Finalizer: ours only while children live in another namespace; a leftover finalizer of
    // an older upstream version would block deletion forever, so it is removed.
    let mut finalizers: Vec<String> = exp
        .finalizers()
        .iter()
        .filter(|f| *f != LEGACY_FINALIZER && (*f != FINALIZER || !names.same_namespace))
        .cloned()
        .collect();
    if !names.same_namespace && !finalizers.iter().any(|f| f == FINALIZER) {
        finalizers.push(FINALIZER.to_owned());
    }
    let finalizers_changed = finalizers.as_slice() != exp.finalizers();
    if finalizers_changed && !names.same_namespace {
        // Before creating anything elsewhere, so deletion always finds the finalizer.
        set_finalizers(ctx, exp, finalizers.clone()).await?;
    }

    // Validate.
    let spec_json = serde_json::to_value(&exp.spec).unwrap_or(Value::Null);
    let findings = validate::validate_spec(&spec_json);
    if !findings.errors.is_empty() {
        return Err(report_invalid(ctx, exp, &findings.errors).await);
    }

    // Observe the agent.
    let agent_ref = &exp.spec.agent_ref;
    let agent_namespace = agent_ref.namespace_or(&namespace);
    let live_agent = ctx.agents.get(&dynamic_ref(
        &agent_resource(),
        agent_namespace,
        &agent_ref.name,
    ));
    let agent_json = live_agent
        .as_deref()
        .and_then(|a| serde_json::to_value(a).ok());
    let url = agent::resolve(&agent_ref.name, agent_namespace, agent_json.as_ref());
    let agent_missing = live_agent.is_none() && ctx.agents_synced.load(Ordering::Relaxed);

    let gateway = observe_gateway(ctx, &namespace, exp);

    // Build and apply.
    let desired = build::desired(exp, ctx.testkube_namespace.as_deref(), &url, &gateway);
    let previous = ctx.statuses.base(exp);
    let (mut outcome, failure, in_flight) = apply_all(ctx, &desired).await;
    outcome.agent = Some(url);
    outcome.agent_missing = agent_missing;
    outcome.gateway = Some(gateway);
    outcome.otel = otel_source(ctx, exp, &desired.names.namespace);
    // What Testkube reports on the workflow, from the watch cache.
    outcome.last_execution = ctx
        .workflows
        .get(&desired.names.namespace, &desired.names.workflow)
        .and_then(|w| w.last_execution.map(|e| *e));
    if failure.is_none() {
        let keep: Vec<(&str, &str, &str)> = outcome
            .generated
            .iter()
            .map(|g| {
                (
                    g.kind.as_str(),
                    g.namespace.as_deref().unwrap_or_default(),
                    g.name.as_str(),
                )
            })
            .collect();
        if let Err(error) = delete_stale(ctx, exp, &keep).await {
            outcome.problem = Some(error.to_string());
            write_status(
                ctx,
                exp,
                previous.as_ref(),
                &desired_status(previous.as_ref(), &outcome, exp.meta().generation, &now()),
            )
            .await?;
            return Err(error);
        }
        if finalizers_changed && names.same_namespace {
            set_finalizers(ctx, exp, finalizers).await?;
        }
    }
    let status = desired_status(previous.as_ref(), &outcome, exp.meta().generation, &now());
    let new_generation =
        previous.as_ref().and_then(|s| s.observed_generation) != exp.meta().generation;
    if write_status(ctx, exp, previous.as_ref(), &status).await? && new_generation {
        warn_once(ctx, exp, &findings.warnings).await;
    }
    match (failure, in_flight) {
        (Some(error), _) => Err(error),
        // Normally the write's watch event comes first and triggers the next reconcile.
        (None, Some(wait)) => Ok(Action::requeue(wait)),
        (None, None) => Ok(Action::await_change()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containment() {
        let live = json!({"a": 1, "b": {"c": [1, {"d": 2, "e": 3}]}, "x": true});
        assert!(contains(&live, &json!({"b": {"c": [1, {"d": 2}]}})));
        assert!(!contains(&live, &json!({"b": {"c": [1]}})));
        assert!(!contains(&live, &json!({"a": 2})));
        assert!(contains(&live, &json!({"missing": null})));
    }

    #[test]
    fn unchanged_ignores_server_metadata() {
        let desired = ConfigMap {
            metadata: kube::api::ObjectMeta {
                name: Some("x".into()),
                namespace: Some("ns".into()),
                ..Default::default()
            },
            data: Some([("k".to_owned(), "v".to_owned())].into()),
            ..Default::default()
        };
        let mut live = desired.clone();
        live.metadata.resource_version = Some("7".into());
        live.metadata.uid = Some("u".into());
        assert!(unchanged(Some(&live), &desired));
        live.data = Some([("k".to_owned(), "w".to_owned())].into());
        assert!(!unchanged(Some(&live), &desired));
        assert!(!unchanged(None, &desired));
    }
}
