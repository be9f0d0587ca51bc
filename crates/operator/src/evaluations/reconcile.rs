//! The evaluation `Experiment` reconcile: observe (caches), validate, build, apply
//! (server-side apply, skipping unchanged objects, pruning what is no longer wanted) and
//! status (written only when it changed, by server-side apply of the operator's own fields:
//! no resourceVersion precondition, and other writers' conditions are left alone).

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
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

use super::{
    agent::{self, agent_resource},
    build::{
        self, ANNOTATION_OWNER, Desired, FIELD_MANAGER, FINALIZER, test_trigger_resource,
        test_workflow_resource,
    },
    error::EvaluationError,
    metrics::EvaluationMetrics,
    status::{OtelSource, Outcome, WorkflowOutcome, desired_status, last_execution, owned_part},
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
    pub config_maps: Store<ConfigMap>,
    /// Generated `TestWorkflows` (label-selected).
    pub workflows: Store<DynamicObject>,
    /// Generated `TestTriggers` (label-selected).
    pub triggers: Store<DynamicObject>,
    /// Agents of the agent runtime.
    pub agents: Store<DynamicObject>,
    /// Whether the Agent watch has listed once (the Agent CRD is installed).
    pub agents_synced: Arc<AtomicBool>,
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

async fn apply_config_map(ctx: &Context, desired: &ConfigMap) -> Result<bool, kube::Error> {
    let namespace = desired.namespace().unwrap_or_default();
    let name = desired.name_any();
    let live = ctx
        .config_maps
        .get(&ObjectRef::new(&name).within(&namespace));
    if unchanged(live.as_deref(), desired) {
        return Ok(false);
    }
    Api::<ConfigMap>::namespaced(ctx.client.clone(), &namespace)
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(desired),
        )
        .await
        .map(|_| true)
}

async fn apply_dynamic(
    ctx: &Context,
    store: &Store<DynamicObject>,
    ar: &ApiResource,
    desired: &DynamicObject,
) -> Result<bool, kube::Error> {
    let namespace = desired.namespace().unwrap_or_default();
    let name = desired.name_any();
    let live = store.get(&dynamic_ref(ar, &namespace, &name));
    if unchanged(live.as_deref(), desired) {
        return Ok(false);
    }
    Api::<DynamicObject>::namespaced_with(ctx.client.clone(), &namespace, ar)
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(desired),
        )
        .await
        .map(|_| true)
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

async fn delete_config_map(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<(), EvaluationError> {
    match Api::<ConfigMap>::namespaced(client.clone(), namespace)
        .delete(name, &DeleteParams::background())
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

fn owned_by<K: Resource>(obj: &K, key: &str) -> bool {
    obj.meta()
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_OWNER))
        .is_some_and(|v| v == key)
}

/// Generated objects of `exp` in the caches that `keep` does not name: left over from an
/// earlier mode, name or a disabled trigger.
fn stale(
    ctx: &Context,
    exp: &Experiment,
    keep: &[(&str, &str, &str)],
) -> Vec<(&'static str, String, String)> {
    let key = owner_key(exp);
    let wanted = |kind: &str, ns: &str, name: &str| {
        keep.iter()
            .any(|(k, n, m)| *k == kind && *n == ns && *m == name)
    };
    let mut out = Vec::new();
    for cm in ctx.config_maps.state() {
        let (ns, name) = (cm.namespace().unwrap_or_default(), cm.name_any());
        if owned_by(cm.as_ref(), &key) && !wanted("ConfigMap", &ns, &name) {
            out.push(("ConfigMap", ns, name));
        }
    }
    for (kind, store) in [
        ("TestWorkflow", &ctx.workflows),
        ("TestTrigger", &ctx.triggers),
    ] {
        for obj in store.state() {
            let (ns, name) = (obj.namespace().unwrap_or_default(), obj.name_any());
            if owned_by(obj.as_ref(), &key) && !wanted(kind, &ns, &name) {
                out.push((kind, ns, name));
            }
        }
    }
    out
}

async fn delete_stale(
    ctx: &Context,
    exp: &Experiment,
    keep: &[(&str, &str, &str)],
) -> Result<(), EvaluationError> {
    for (kind, ns, name) in stale(ctx, exp, keep) {
        match kind {
            "ConfigMap" => delete_config_map(&ctx.client, &ns, &name).await?,
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
    delete_config_map(&ctx.client, &names.namespace, &names.config_map).await?;
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

async fn write_status(
    ctx: &Context,
    exp: &Experiment,
    status: &ExperimentStatus,
) -> Result<bool, EvaluationError> {
    if exp.status.as_ref() == Some(status) {
        return Ok(false);
    }
    let before = exp.status.as_ref().and_then(|s| s.conditions.as_ref());
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

/// The outcome of applying `desired`, and the error to end the reconcile with, if any.
async fn apply_all(ctx: &Context, desired: &Desired) -> (Outcome, Option<EvaluationError>) {
    let names = &desired.names;
    let ns = names.namespace.as_str();
    let mut outcome = Outcome {
        problem: None,
        workflow: WorkflowOutcome::Applied,
        generated: Vec::new(),
        agent: None,
        agent_missing: false,
        otel: None,
        last_execution: None,
    };
    let applied = apply_config_map(ctx, &desired.config_map).await;
    if let Ok(true) = applied {
        ctx.metrics.write("ConfigMap", "apply");
    }
    if let Err(e) = applied {
        let error = write_error("apply", "ConfigMap", ns, &names.config_map, e);
        outcome.problem = Some(error.to_string());
        outcome.workflow = WorkflowOutcome::NotAttempted(
            "the experiment.json ConfigMap could not be written".into(),
        );
        return (outcome, Some(error));
    }
    outcome
        .generated
        .push(resource("ConfigMap", ns, &names.config_map));

    let workflow_ar = test_workflow_resource();
    match apply_dynamic(ctx, &ctx.workflows, &workflow_ar, &desired.workflow).await {
        Ok(written) => {
            if written {
                ctx.metrics.write("TestWorkflow", "apply");
            }
            outcome
                .generated
                .push(resource("TestWorkflow", ns, &names.workflow));
        }
        Err(e) if is_not_found(&e) => {
            outcome.workflow = WorkflowOutcome::CrdNotInstalled;
            return (outcome, Some(EvaluationError::CrdNotInstalled));
        }
        Err(e) => {
            let error = write_error("apply", "TestWorkflow", ns, &names.workflow, e);
            outcome.workflow = WorkflowOutcome::Failed(error.to_string());
            return (outcome, Some(error));
        }
    }

    if let Some(trigger) = &desired.trigger {
        let trigger_ar = test_trigger_resource();
        match apply_dynamic(ctx, &ctx.triggers, &trigger_ar, trigger).await {
            Ok(written) => {
                if written {
                    ctx.metrics.write("TestTrigger", "apply");
                }
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
                return (outcome, Some(error));
            }
        }
    }
    (outcome, None)
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
    let outcome = Outcome {
        problem: Some(format!("invalid spec: {problems}")),
        workflow: WorkflowOutcome::NotAttempted("the spec is invalid".into()),
        generated: exp
            .status
            .as_ref()
            .and_then(|s| s.generated_resources.clone())
            .unwrap_or_default(),
        agent: None,
        agent_missing: false,
        otel: None,
        last_execution: None,
    };
    let status = desired_status(exp.status.as_ref(), &outcome, exp.meta().generation, &now());
    match write_status(ctx, exp, &status).await {
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

/// Reconciles one evaluation `Experiment`.
pub async fn reconcile(exp: Arc<Experiment>, ctx: Arc<Context>) -> Result<Action, EvaluationError> {
    let namespace = exp.namespace().unwrap_or_default();
    let name = exp.name_any();
    if exp.meta().deletion_timestamp.is_some() {
        let ours = exp
            .finalizers()
            .iter()
            .any(|f| f == FINALIZER || f == LEGACY_FINALIZER);
        return if ours {
            finalize(&ctx, &exp).await
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
        set_finalizers(&ctx, &exp, finalizers.clone()).await?;
    }

    // Validate.
    let spec_json = serde_json::to_value(&exp.spec).unwrap_or(Value::Null);
    let findings = validate::validate_spec(&spec_json);
    if !findings.errors.is_empty() {
        return Err(report_invalid(&ctx, &exp, &findings.errors).await);
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

    // Build and apply.
    let desired = build::desired(&exp, ctx.testkube_namespace.as_deref(), &url);
    let (mut outcome, failure) = apply_all(&ctx, &desired).await;
    outcome.agent = Some(url);
    outcome.agent_missing = agent_missing;
    outcome.otel = otel_source(&ctx, &exp, &desired.names.namespace);
    // What Testkube reports on the workflow, from the watch cache.
    outcome.last_execution = ctx
        .workflows
        .get(&dynamic_ref(
            &test_workflow_resource(),
            &desired.names.namespace,
            &desired.names.workflow,
        ))
        .and_then(|w| last_execution(w.data.get("status")));
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
        if let Err(error) = delete_stale(&ctx, &exp, &keep).await {
            outcome.problem = Some(error.to_string());
            write_status(
                &ctx,
                &exp,
                &desired_status(exp.status.as_ref(), &outcome, exp.meta().generation, &now()),
            )
            .await?;
            return Err(error);
        }
        if finalizers_changed && names.same_namespace {
            set_finalizers(&ctx, &exp, finalizers).await?;
        }
    }
    let status = desired_status(exp.status.as_ref(), &outcome, exp.meta().generation, &now());
    write_status(&ctx, &exp, &status).await?;
    match failure {
        Some(error) => Err(error),
        None => Ok(Action::await_change()),
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
