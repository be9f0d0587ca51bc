//! The Experiment reconcile: observe (caches), validate, build, apply, status, following the
//! five stages; the phase comes from [`super::state::next`].

use crate::runtime::lenient::Lenient;
use std::{collections::BTreeMap, sync::Arc, time::Duration};

use agentic_api::labs::{
    CompletionMode, Experiment, ExperimentPhase, ExperimentStatus, FINALIZER, HUB_CLUSTER_NAME,
    Target, TargetStatus, TutorialServiceStatus, WorkflowStatus,
};
use jiff::Timestamp;
use k8s_openapi::{
    api::core::v1::{Namespace, Secret, Service},
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
};
use kube::{
    Api, Resource, ResourceExt,
    api::{DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams},
    discovery::ApiResource,
    runtime::{
        controller::Action,
        events::{Event, EventType},
        reflector::{ObjectRef, Store},
    },
};
use serde_json::{Value, json};

use super::{
    Ctx,
    build::{self, ANNOTATION_HASH, Owner},
    cleanup::{self, Child, ChildKind},
    components::{self, AppSource, ComponentError},
    config::{HUB, LabsConfig},
    error::Error,
    expect, remote,
    state::{self, Observed, Transition, WorkflowState},
    validate,
};

/// Field manager of every write.
pub const FIELD_MANAGER: &str = "agentic-operator";
/// Condition: every target is provisioned and its components are healthy.
pub const CONDITION_READY: &str = "Ready";
/// Condition: every target's cluster is ready.
pub const CONDITION_PROVISIONED: &str = "Provisioned";
/// Condition: every target's components are Synced and Healthy.
pub const CONDITION_COMPONENTS_HEALTHY: &str = "ComponentsHealthy";
/// Condition: the workflow succeeded.
pub const CONDITION_WORKFLOW_SUCCEEDED: &str = "WorkflowSucceeded";
/// Condition (present only when it applies): the spec sets fields this operator accepts but
/// does not act on.
pub const CONDITION_UNSUPPORTED: &str = "UnsupportedFields";
/// Condition type recording why a failed Experiment failed: written with the `Failed` phase and
/// never changed afterwards, so the reason outlives the cleanup's `Ready` reasons and the Event.
pub const CONDITION_FAILED: &str = "Failed";
/// How often hub tutorial Services without an address are looked at again.
const SERVICE_RECHECK: Duration = Duration::from_secs(10);
/// Whether the Experiment's name becomes a namespace ([`validate::name_is_a_namespace`]).
fn name_is_a_namespace(exp: &Experiment) -> bool {
    validate::name_is_a_namespace(exp.spec.targets.iter().map(|t| {
        (
            t.cluster.type_.as_str(),
            t.components.as_ref().is_some_and(|c| !c.is_empty())
                || t.observability.as_ref().is_some_and(|o| o.enabled),
        )
    }))
}

/// Event reason: a stuck claim was deleted to be created again.
pub const REASON_CLAIM_RECREATED: &str = "ClaimRecreated";
/// Claim annotation: which creation of the target's claim this is (absent on the first).
pub const ANNOTATION_CLAIM_ATTEMPT: &str = "experiments.illm.io/claim-attempt";
/// How often a write on a target cluster that failed is tried again.
const TARGET_WRITE_RECHECK: Duration = Duration::from_secs(15);
/// Condition reason and Event reason: a target's Application is held back because the
/// Tailscale OAuth Secret could not be copied to its cluster.
pub const REASON_TAILSCALE_SECRET: &str = "TailscaleSecretNotCopied";
/// Condition reason and Event reason: a target's Application is held back because the other
/// targets' kubeconfigs could not be copied to its cluster.
pub const REASON_KUBECONFIGS: &str = "KubeconfigsNotCopied";
/// Condition reason: a target's Application waits until the other provisioned targets'
/// clusters are ready, so their kubeconfigs can be copied onto its cluster first.
pub const REASON_WAITING_FOR_PEERS: &str = "WaitingForClusters";
/// Condition reason and Event reason: a hub target's Application waits because the hub
/// namespace `<experiment>` is still being deleted (by an earlier Experiment of that name).
pub const REASON_HUB_NAMESPACE_TERMINATING: &str = "HubNamespaceTerminating";
/// How often a waiting deletion is looked at again (besides watch events).
const CLEANUP_RECHECK: Duration = Duration::from_secs(5);
/// Safety resync of a running experiment (watches normally drive it).
const RESYNC: Duration = Duration::from_mins(5);

/// Observed cluster of a target.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ClusterState {
    /// The hub: nothing to provision.
    Hub,
    /// No claim yet.
    Requested,
    /// Claim exists, not Ready.
    Provisioning {
        message: String,
        remaining: Duration,
    },
    /// Claim Ready with an endpoint.
    Ready { endpoint: String },
    /// The API server refused the claim (retried with backoff).
    Rejected { message: String },
    /// Timed out.
    Failed { message: String },
}

/// Observed components of a target.
#[derive(Debug, Clone, PartialEq, Eq)]
enum AppState {
    /// Nothing to deploy (no sources), and a provisioned cluster is registered with Argo CD.
    NotNeeded,
    /// Not created yet (or waiting for dependencies); with no sources, the provisioned
    /// cluster is not registered with Argo CD yet.
    Missing,
    /// Created, not Synced and Healthy.
    Progressing { health: String, sync: String },
    /// Synced and Healthy.
    Healthy,
}

struct TargetView<'a> {
    target: &'a Target,
    claim_name: Option<String>,
    claim_ns: Option<String>,
    cluster: ClusterState,
    sources: Result<Vec<AppSource>, ComponentError>,
    app: AppState,
    /// While provisioning, how long the Application (created, not Synced and Healthy yet)
    /// has left before the components timeout fails its target.
    components_due: Option<Duration>,
    app_obj: Option<Arc<DynamicObject>>,
    deps_ready: bool,
    /// Why the Application is held back: a condition reason and a message.
    blocked: Option<(&'static str, String)>,
    /// A provisioned target's cluster is registered with Argo CD (its cluster Secret was
    /// written); always `false` for the hub.
    registered: bool,
    /// How many times the claim was created again (from the status).
    recreations: i64,
    /// The claim is stuck and is to be deleted and created again in this pass.
    recreate: bool,
}

impl TargetView<'_> {
    fn healthy(&self) -> bool {
        matches!(self.cluster, ClusterState::Hub | ClusterState::Ready { .. })
            && matches!(self.app, AppState::NotNeeded | AppState::Healthy)
    }
}

fn condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    generation: Option<i64>,
) {
    let now = Time(Timestamp::now());
    if let Some(c) = conditions.iter_mut().find(|c| c.type_ == type_) {
        if c.status != status {
            c.last_transition_time = now;
        }
        status.clone_into(&mut c.status);
        reason.clone_into(&mut c.reason);
        message.clone_into(&mut c.message);
        c.observed_generation = generation;
    } else {
        conditions.push(Condition {
            type_: type_.to_owned(),
            status: status.to_owned(),
            reason: reason.to_owned(),
            message: message.to_owned(),
            observed_generation: generation,
            last_transition_time: now,
        });
    }
}

fn cond_status(obj: &Value, type_: &str) -> Option<(String, String)> {
    obj.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .map(|c| {
            (
                c["status"].as_str().unwrap_or_default().to_owned(),
                c["message"].as_str().unwrap_or_default().to_owned(),
            )
        })
}

fn age(meta_ts: Option<&Time>) -> Duration {
    meta_ts
        .and_then(|t| Timestamp::now().duration_since(t.0).try_into().ok())
        .unwrap_or_default()
}

fn has_finalizer(exp: &Experiment) -> bool {
    exp.finalizers().iter().any(|f| f == FINALIZER)
}

/// The reconcile entry point.
// One function keeps the stages (observe, validate, apply, state, status) readable in order.
#[allow(clippy::too_many_lines)]
pub async fn reconcile(cached: Arc<Lenient<Experiment>>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    match &cached.object {
        Ok(exp) => reconcile_experiment(exp.clone(), ctx).await,
        Err(reason) => {
            let error = Error::Decode {
                namespace: cached.namespace().unwrap_or_default(),
                name: cached.name_any(),
                reason: reason.to_string(),
            };
            crate::runtime::events::invalid_object(&ctx.recorder, &error, &cached.object_ref(&()))
                .await;
            Err(error)
        }
    }
}

/// Reconciles one Experiment that reads.
#[allow(clippy::too_many_lines)]
async fn reconcile_experiment(exp: Arc<Experiment>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let ns = exp.namespace().unwrap_or_default();
    let name = exp.name_any();
    let key = format!("{ns}/{name}");
    if ctx.written.is_stale(&key, exp.as_ref()) {
        // The cache has not caught up with this operator's last write of the Experiment; the
        // watch event of that write reconciles it again.
        return Ok(Action::await_change());
    }
    ctx.wait_ready(exp.spec.targets.iter().map(|t| t.cluster.type_.as_str()))
        .await?;
    let owner = Owner {
        name: &name,
        namespace: &ns,
    };
    let api: Api<Experiment> = Api::namespaced(ctx.client.clone(), &ns);

    if exp.meta().deletion_timestamp.is_some() {
        if !has_finalizer(&exp) {
            return Ok(Action::await_change());
        }
        return match run_cleanup(&exp, owner, &ctx).await? {
            None => {
                let rest: Vec<&String> = exp
                    .finalizers()
                    .iter()
                    .filter(|f| *f != FINALIZER)
                    .collect();
                api.patch(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"metadata": {
                        "finalizers": rest,
                        "resourceVersion": exp.resource_version(),
                    }})),
                )
                .await?;
                ctx.written.forget(&key);
                Ok(Action::await_change())
            }
            Some((reason, message)) => {
                let mut status = exp.status.clone().unwrap_or_default();
                let conditions = status.conditions.get_or_insert_default();
                condition(
                    conditions,
                    CONDITION_READY,
                    "False",
                    reason,
                    &message,
                    exp.metadata.generation,
                );
                write_status(&ctx, &api, &exp, status).await?;
                Ok(Action::requeue(CLEANUP_RECHECK))
            }
        };
    }

    if !has_finalizer(&exp) {
        let mut all: Vec<String> = exp.finalizers().to_vec();
        all.push(FINALIZER.to_owned());
        let updated = api
            .patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {
                    "finalizers": all,
                    "resourceVersion": exp.resource_version(),
                }})),
            )
            .await?;
        ctx.written
            .record(key.clone(), updated.resource_version().as_deref(), None);
    }

    let phase = exp.phase();
    let mut status = exp.status.clone().unwrap_or_default();
    let generation = exp.metadata.generation;

    if phase.is_terminal() {
        let mut action = Action::await_change();
        if status.resources_cleaned != Some(true) {
            let outcome = run_cleanup(&exp, owner, &ctx).await?;
            action = record_cleanup(&mut status, outcome, generation);
        }
        if write_status(&ctx, &api, &exp, status).await? == Some(true) {
            publish_cleaned(&ctx, &exp).await;
        }
        return Ok(action);
    }

    // validate
    let validated = validate::experiment_name(&name, name_is_a_namespace(&exp))
        .and_then(|()| validate::validate(&name, &exp.spec.targets, &ctx.config))
        .and_then(|order| {
            validate::validate_tutorial(exp.spec.tutorial.as_ref(), &exp.spec.targets)
                .map(|()| order)
        });
    let order = match validated {
        Ok(order) => order,
        Err(e) => {
            let message = e.to_string();
            let conditions = status.conditions.get_or_insert_default();
            let already = conditions.iter().any(|c| {
                c.type_ == CONDITION_READY && c.reason == "InvalidSpec" && c.message == message
            });
            condition(
                conditions,
                CONDITION_READY,
                "False",
                "InvalidSpec",
                &message,
                generation,
            );
            status.phase.get_or_insert(ExperimentPhase::Pending);
            write_status(&ctx, &api, &exp, status).await?;
            if !already {
                publish(&ctx, &exp, EventType::Warning, "InvalidSpec", message).await;
            }
            return Ok(Action::await_change());
        }
    };

    // fields accepted for compatibility but not acted on
    let unsupported = unsupported_fields(&exp);
    {
        let conditions = status.conditions.get_or_insert_default();
        let before = conditions
            .iter()
            .find(|c| c.type_ == CONDITION_UNSUPPORTED)
            .map(|c| c.message.clone());
        match &unsupported {
            Some(message) => {
                condition(
                    conditions,
                    CONDITION_UNSUPPORTED,
                    "True",
                    "FieldsIgnored",
                    message,
                    generation,
                );
                if before.as_ref() != Some(message) {
                    publish(
                        &ctx,
                        &exp,
                        EventType::Warning,
                        "FieldsIgnored",
                        message.clone(),
                    )
                    .await;
                }
            }
            None => conditions.retain(|c| c.type_ != CONDITION_UNSUPPORTED),
        }
    }

    // observe
    let previous: BTreeMap<String, TargetStatus> = status
        .targets
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|t| (t.name.clone(), t))
        .collect();
    let mut views: BTreeMap<String, TargetView<'_>> = BTreeMap::new();
    let lookup = |n: &str| {
        ctx.components
            .get(&ObjectRef::new(n))
            .map(|c| c.object.clone().map_err(|reason| reason.to_string()))
    };
    for (index, target) in exp.spec.targets.iter().enumerate() {
        let type_ = target.cluster.type_.as_str();
        let was_ready =
            previous.get(&target.name).and_then(|t| t.phase.as_deref()) == Some("Ready");
        let recreations = previous
            .get(&target.name)
            .and_then(|t| t.claim_recreations)
            .unwrap_or(0);
        let mut recreate = false;
        let (claim_name, claim_ns, cluster) = if type_ == HUB {
            (None, None, ClusterState::Hub)
        } else {
            let mapping = &ctx.config.cluster_types[type_];
            let cn = build::claim_name(&name, &target.name);
            let cns = build::claim_namespace(mapping, owner).to_owned();
            let claim = ctx.claim(type_, &cns, &cn);
            let mut state = match &claim {
                None => ClusterState::Requested,
                Some(c) => observe_claim(c, was_ready, ctx.config.provisioning_timeout),
            };
            if let (Some(c), false) = (&claim, phase.is_terminal()) {
                (state, recreate) = stuck_claim(&ctx.config, c, state, was_ready, recreations);
            }
            (Some(cn), Some(cns), state)
        };
        let mut refs: Vec<agentic_api::labs::ComponentRef> =
            target.components.clone().unwrap_or_default();
        if target.observability.as_ref().is_some_and(|o| o.enabled) {
            refs.extend(build::observability_refs(
                &name,
                build::wants_tailscale(target),
            ));
        }
        let mut sources = Ok(Vec::new());
        for (ci, r) in refs.iter().enumerate() {
            let field = format!("spec.targets[{index}].components[{ci}]");
            match components::resolve(r, &field, &lookup) {
                Ok(s) => {
                    if let Ok(all) = sources.as_mut() {
                        all.extend(s);
                    }
                }
                Err(e) => {
                    sources = Err(e);
                    break;
                }
            }
        }
        let app_obj = ctx.application(&build::application_name(&name, &target.name));
        let mut cluster = cluster;
        if let Some(message) = app_obj.as_deref().and_then(|a| foreign_owner(a, owner)) {
            cluster = ClusterState::Failed { message };
        }
        // An Application is only ever written after its cluster's registration, so one that
        // exists means a registered cluster (also for a status written before the field was).
        let registered = type_ != HUB
            && (app_obj.is_some()
                || previous
                    .get(&target.name)
                    .and_then(|t| t.cluster_registered)
                    == Some(true));
        let app = match (&sources, &app_obj) {
            (Ok(s), _) if s.is_empty() && (type_ == HUB || registered) => AppState::NotNeeded,
            (Ok(s), _) if s.is_empty() => AppState::Missing,
            (_, None) => AppState::Missing,
            (_, Some(a)) => app_state(a),
        };
        let was_healthy = previous
            .get(&target.name)
            .is_some_and(|t| t.components_healthy_at.is_some());
        let components_due = match (&app, &app_obj) {
            (AppState::Progressing { .. }, Some(a))
                if phase == ExperimentPhase::Provisioning && !was_healthy =>
            {
                Some(
                    ctx.config
                        .components_timeout
                        .saturating_sub(age(a.metadata.creation_timestamp.as_ref())),
                )
            }
            _ => None,
        };
        views.insert(
            target.name.clone(),
            TargetView {
                target,
                claim_name,
                claim_ns,
                cluster,
                sources,
                app,
                app_obj,
                components_due,
                deps_ready: false,
                blocked: None,
                registered,
                recreations,
                recreate,
            },
        );
    }

    // apply, in dependency order
    let mut registered_datasource = false;
    let mut claim_error: Option<Error> = None;
    let expose_kubeconfig = exp
        .spec
        .tutorial
        .as_ref()
        .and_then(|t| t.expose_kubeconfig)
        .unwrap_or(false);
    let mut kubeconfig_secrets: BTreeMap<String, String> = BTreeMap::new();
    // What the hub namespace check found, once per pass for all hub targets.
    let mut hub_namespace: Option<HubNamespace> = None;
    for tname in &order {
        let deps_ready = views
            .get(tname)
            .map(|v| v.target.depends_on().to_vec())
            .unwrap_or_default()
            .iter()
            .all(|d| views.get(d).is_some_and(TargetView::healthy));
        // The other provisioned targets, whose kubeconfigs go onto this target's cluster.
        let peers: Vec<Peer> = views
            .iter()
            .filter(|(n, v)| *n != tname && v.target.cluster.type_.as_str() != HUB)
            .map(|(n, v)| Peer {
                target: n.clone(),
                claim: v.claim_name.clone().unwrap_or_default(),
                claim_ns: v.claim_ns.clone().unwrap_or_default(),
                type_: v.target.cluster.type_.as_str().to_owned(),
                ready: matches!(v.cluster, ClusterState::Ready { .. }),
            })
            .collect();
        let Some(view) = views.get_mut(tname) else {
            continue;
        };
        view.deps_ready = deps_ready;
        let target = view.target;
        let type_ = target.cluster.type_.as_str();
        if type_ != HUB && view.recreate {
            let (cn, cns) = (
                view.claim_name.clone().unwrap_or_default(),
                view.claim_ns.clone().unwrap_or_default(),
            );
            let mapping = &ctx.config.cluster_types[type_];
            let api: Api<DynamicObject> =
                Api::namespaced_with(ctx.client.clone(), &cns, &mapping.api_resource());
            match api.delete(&cn, &DeleteParams::background()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
            view.recreations += 1;
            let message = format!(
                "claim {cns}/{cn} was not Ready after {} s{}; deleted to be created again (recreation {} of {})",
                ctx.config
                    .stuck_claim_recreate_after
                    .unwrap_or_default()
                    .as_secs(),
                match &view.cluster {
                    ClusterState::Provisioning { message, .. } if !message.is_empty() =>
                        format!(" ({message})"),
                    _ => String::new(),
                },
                view.recreations,
                ctx.config.max_claim_recreations
            );
            publish(
                &ctx,
                &exp,
                EventType::Warning,
                REASON_CLAIM_RECREATED,
                format!("target {tname}: {message}"),
            )
            .await;
            view.cluster = ClusterState::Provisioning {
                message,
                remaining: ctx.config.provisioning_timeout,
            };
            continue;
        }
        if type_ != HUB {
            let mapping = &ctx.config.cluster_types[type_];
            let mut desired = build::claim(owner, target, mapping);
            if view.recreations > 0 {
                desired.metadata.annotations.get_or_insert_default().insert(
                    ANNOTATION_CLAIM_ATTEMPT.to_owned(),
                    (view.recreations + 1).to_string(),
                );
            }
            let live = ctx.claim(
                type_,
                view.claim_ns.as_deref().unwrap_or_default(),
                view.claim_name.as_deref().unwrap_or_default(),
            );
            let ar = mapping.api_resource();
            let result = if expect::up_to_date(&desired, live.as_deref()) {
                Ok(None)
            } else {
                apply(&ctx, &ar, &desired).await.map(Some)
            };
            match result {
                // A new claim: observed as the API server returned it.
                Ok(Some(created)) if view.cluster == ClusterState::Requested => {
                    view.cluster = observe_claim(&created, false, ctx.config.provisioning_timeout);
                }
                Ok(_) => {}
                Err(e) if live.is_some() => {
                    // An update of an existing claim was refused: its observed state still
                    // holds; the error is retried with backoff.
                    claim_error.get_or_insert(e);
                }
                Err(e) => {
                    let message = format!(
                        "cannot create {} {}/{}: {e}",
                        mapping.kind,
                        view.claim_ns.as_deref().unwrap_or_default(),
                        view.claim_name.as_deref().unwrap_or_default()
                    );
                    // Refused for as long as a claim may take to become Ready: give up.
                    if age(exp.metadata.creation_timestamp.as_ref())
                        >= ctx.config.provisioning_timeout
                    {
                        view.cluster = ClusterState::Failed {
                            message: format!("{message} (provisioning timeout)"),
                        };
                    } else {
                        view.cluster = ClusterState::Rejected { message };
                        claim_error.get_or_insert(e);
                    }
                    continue;
                }
            }
            if let (true, ClusterState::Ready { .. }, Some(cn), Some(cns)) = (
                expose_kubeconfig,
                &view.cluster,
                &view.claim_name,
                &view.claim_ns,
            ) {
                let secret =
                    expose_tutorial_kubeconfig(&ctx, &exp, owner, tname, cn, cns, type_).await?;
                kubeconfig_secrets.insert(tname.clone(), secret);
            }
        }
        let server = match &view.cluster {
            ClusterState::Hub => Some(build::IN_CLUSTER_SERVER.to_owned()),
            ClusterState::Ready { endpoint } => Some(build::server_url(endpoint)),
            _ => None,
        };
        let (Some(server), true, Ok(sources)) = (server, deps_ready, &view.sources) else {
            continue;
        };
        if sources.is_empty() {
            // No Application, but a provisioned cluster is still registered with Argo CD (and
            // gets the other clusters' kubeconfigs), as upstream did, so a Workflow can deploy
            // to it through Argo CD.
            if view.app == AppState::Missing
                && register_target(&ctx, &exp, owner, view, &peers).await?
            {
                view.app = AppState::NotNeeded;
            }
            continue;
        }
        let desired_app = build::application(owner, tname, &server, sources, &ctx.config);
        let needs_obs = target.observability.as_ref().is_some_and(|o| o.enabled);
        if !expect::up_to_date(&desired_app, view.app_obj.as_deref()) {
            if view.cluster == ClusterState::Hub {
                let found = if let Some(found) = hub_namespace.clone() {
                    found
                } else {
                    let found = ensure_hub_namespace(&ctx, owner).await?;
                    hub_namespace = Some(found.clone());
                    found
                };
                match found {
                    HubNamespace::Usable => {}
                    HubNamespace::Terminating(why) => {
                        publish_held_back(
                            &ctx,
                            &exp,
                            REASON_HUB_NAMESPACE_TERMINATING,
                            tname,
                            &why,
                        )
                        .await;
                        view.blocked = Some((REASON_HUB_NAMESPACE_TERMINATING, why));
                        continue;
                    }
                    HubNamespace::Foreign(message) => {
                        view.cluster = ClusterState::Failed { message };
                        continue;
                    }
                }
            }
            if type_ != HUB && !register_target(&ctx, &exp, owner, view, &peers).await? {
                continue;
            }
            if needs_obs && !registered_datasource {
                apply(
                    &ctx,
                    &configmap_resource(),
                    &build::datasource(owner, &ctx.config),
                )
                .await?;
                registered_datasource = true;
            }
            let applied = apply(&ctx, &ctx.applications.0, &desired_app).await?;
            view.app = app_state(&applied);
            view.app_obj = Some(applied);
        }
    }

    // workflow
    let wf_name = build::workflow_name(&name);
    let wf_obj = ctx.workflow(&wf_name);
    let (mut wf_state, wf_phase, wf_message) = match &wf_obj {
        None => (WorkflowState::Absent, None, None),
        Some(w) => {
            let p = w
                .data
                .pointer("/status/phase")
                .and_then(Value::as_str)
                .map(str::to_owned);
            let m = w
                .data
                .pointer("/status/message")
                .and_then(Value::as_str)
                .map(str::to_owned);
            let s = match p.as_deref() {
                Some("Succeeded") => WorkflowState::Succeeded,
                Some("Failed" | "Error") => WorkflowState::Failed,
                _ => WorkflowState::Active,
            };
            (s, p, m)
        }
    };
    let manual = exp.spec.workflow.completion.mode == CompletionMode::Manual;
    let started = status
        .workflow_status
        .as_ref()
        .and_then(|w| w.started_at.clone());
    let manual_deadline_passed =
        manual && started.is_some() && age(started.as_ref()) >= ctx.config.manual_deadline;

    let failed_target = views
        .values()
        .find_map(|v| match &v.cluster {
            ClusterState::Failed { message } => Some((v.target.name.clone(), message.clone())),
            _ => None,
        })
        .or_else(|| {
            views.values().find_map(|v| {
                let (Some(Duration::ZERO), AppState::Progressing { health, sync }) =
                    (v.components_due, &v.app)
                else {
                    return None;
                };
                Some((
                    v.target.name.clone(),
                    components_timeout_message(v, health, sync, ctx.config.components_timeout),
                ))
            })
        })
        .or_else(|| {
            let message = wf_obj.as_deref().and_then(|w| foreign_owner(w, owner))?;
            Some(("workflow".to_owned(), message))
        });
    let mut observed = Observed {
        invalid: false,
        failed_target,
        clusters_ready: views
            .values()
            .all(|v| matches!(v.cluster, ClusterState::Hub | ClusterState::Ready { .. })),
        apps_healthy: views
            .values()
            .all(|v| matches!(v.app, AppState::NotNeeded | AppState::Healthy)),
        workflow: wf_state,
        workflow_message: wf_message.clone(),
        manual_deadline_passed,
    };
    let mut new_phase = phase;
    let mut transitions = Vec::new();
    for _ in 0..3 {
        match state::next(new_phase, &observed) {
            Transition::Stay => break,
            Transition::To {
                to,
                reason,
                message,
            } => {
                transitions.push((new_phase, to, reason, message));
                new_phase = to;
                if new_phase == ExperimentPhase::Ready && wf_state == WorkflowState::Absent {
                    // submit
                    let endpoints: Vec<(String, String)> = exp
                        .spec
                        .targets
                        .iter()
                        .filter_map(|t| match &views.get(&t.name)?.cluster {
                            ClusterState::Ready { endpoint } => {
                                Some((t.name.clone(), endpoint.clone()))
                            }
                            _ => None,
                        })
                        .collect();
                    let params = build::workflow_params(&name, &exp.spec.workflow, &endpoints);
                    let wf = build::workflow(owner, &exp.spec.workflow, &params, &ctx.config);
                    let wapi: Api<DynamicObject> = Api::namespaced_with(
                        ctx.client.clone(),
                        &ctx.config.workflow_namespace,
                        &ctx.workflows.0,
                    );
                    match wapi.create(&post_params(), &wf).await {
                        Ok(_) => {}
                        Err(kube::Error::Api(e)) if e.code == 409 => {}
                        Err(e) => return Err(e.into()),
                    }
                    status.workflow_status = Some(WorkflowStatus {
                        name: wf_name.clone(),
                        phase: Some("Pending".into()),
                        started_at: Some(Time(Timestamp::now())),
                        finished_at: None,
                    });
                    wf_state = WorkflowState::Active;
                    observed.workflow = wf_state;
                }
            }
        }
    }

    // status
    status.phase = Some(new_phase);
    status.targets = Some(
        exp.spec
            .targets
            .iter()
            .filter_map(|t| views.get(&t.name))
            .map(|v| {
                let mut t = target_status(v, previous.get(&v.target.name), &ctx);
                if let Some(secret) = kubeconfig_secrets.get(&v.target.name) {
                    t.kubeconfig_secret = Some(secret.clone());
                }
                t
            })
            .collect(),
    );
    let mut services_waiting = false;
    if exp.spec.tutorial.is_some() {
        let tutorial = status.tutorial_status.get_or_insert_default();
        if expose_kubeconfig {
            let all = tutorial.kubeconfig_secrets.get_or_insert_default();
            all.extend(kubeconfig_secrets.clone());
        }
        let has_services = exp
            .spec
            .tutorial
            .as_ref()
            .and_then(|t| t.services.as_ref())
            .is_some_and(|s| !s.is_empty());
        if has_services && matches!(new_phase, ExperimentPhase::Ready | ExperimentPhase::Running) {
            let (services, waiting) = discover_tutorial_services(&ctx, &exp).await;
            tutorial.services = Some(services);
            services_waiting = waiting;
        }
    }
    if let Some(w) = &wf_obj {
        let ws = status
            .workflow_status
            .get_or_insert_with(|| WorkflowStatus {
                name: wf_name.clone(),
                ..WorkflowStatus::default()
            });
        if wf_phase.is_some() {
            ws.phase.clone_from(&wf_phase);
        }
        if let Some(s) = time_at(w, "/status/startedAt") {
            ws.started_at = Some(s);
        }
        ws.finished_at = time_at(w, "/status/finishedAt");
    }
    if new_phase.is_terminal() && status.completed_at.is_none() {
        status.completed_at = Some(Time(Timestamp::now()));
    }
    let conditions = status.conditions.get_or_insert_default();
    let waiting: Vec<String> = views
        .values()
        .filter_map(|v| match &v.cluster {
            ClusterState::Requested => Some(format!("{}: claim requested", v.target.name)),
            ClusterState::Provisioning { message, .. } => Some(format!(
                "{}: {}",
                v.target.name,
                if message.is_empty() {
                    "provisioning"
                } else {
                    message
                }
            )),
            ClusterState::Failed { message } | ClusterState::Rejected { message } => {
                Some(format!("{}: {message}", v.target.name))
            }
            _ => None,
        })
        .collect();
    let rejected = views
        .values()
        .any(|v| matches!(v.cluster, ClusterState::Rejected { .. }));
    // Only a failed cluster is a provisioning failure (a components timeout or a foreign
    // Workflow fails the Experiment too, reported by the `Failed` condition).
    let cluster_failed = views
        .values()
        .any(|v| matches!(v.cluster, ClusterState::Failed { .. }));
    if cluster_failed {
        condition(
            conditions,
            CONDITION_PROVISIONED,
            "False",
            "ProvisioningFailed",
            &waiting.join("; "),
            generation,
        );
    } else if waiting.is_empty() {
        condition(
            conditions,
            CONDITION_PROVISIONED,
            "True",
            "ClustersReady",
            "every target cluster is ready",
            generation,
        );
    } else {
        condition(
            conditions,
            CONDITION_PROVISIONED,
            "False",
            if rejected {
                "ClaimRejected"
            } else {
                "Provisioning"
            },
            &waiting.join("; "),
            generation,
        );
    }
    let component_error = views.values().find_map(|v| v.sources.as_ref().err());
    let unhealthy: Vec<String> = views
        .values()
        .filter_map(|v| match &v.app {
            AppState::Missing if v.blocked.is_some() => Some(format!(
                "{}: {}",
                v.target.name,
                v.blocked.as_ref().map_or("", |(_, why)| why.as_str())
            )),
            AppState::Missing if !v.deps_ready => Some(format!(
                "{}: waiting for {}",
                v.target.name,
                v.target.depends_on().join(", ")
            )),
            AppState::Missing => Some(format!("{}: not deployed yet", v.target.name)),
            AppState::Progressing { health, sync } => Some(format!(
                "{}: health {}, sync {}",
                v.target.name,
                or_unknown(health),
                or_unknown(sync)
            )),
            _ => None,
        })
        .collect();
    if let Some(e) = component_error {
        condition(
            conditions,
            CONDITION_COMPONENTS_HEALTHY,
            "False",
            e.reason(),
            &e.to_string(),
            generation,
        );
    } else if unhealthy.is_empty() {
        condition(
            conditions,
            CONDITION_COMPONENTS_HEALTHY,
            "True",
            "Healthy",
            "every Application is Synced and Healthy",
            generation,
        );
    } else {
        let blocked = views
            .values()
            .find_map(|v| v.blocked.as_ref().map(|(reason, _)| *reason));
        condition(
            conditions,
            CONDITION_COMPONENTS_HEALTHY,
            "False",
            blocked.unwrap_or("Progressing"),
            &unhealthy.join("; "),
            generation,
        );
    }
    match observed.workflow {
        WorkflowState::Absent => condition(
            conditions,
            CONDITION_WORKFLOW_SUCCEEDED,
            "Unknown",
            "NotSubmitted",
            "the workflow starts once every target is healthy",
            generation,
        ),
        WorkflowState::Active if manual_deadline_passed => condition(
            conditions,
            CONDITION_WORKFLOW_SUCCEEDED,
            "False",
            "ManualDeadlineExceeded",
            "the workflow was not resumed before the manual deadline",
            generation,
        ),
        WorkflowState::Active => condition(
            conditions,
            CONDITION_WORKFLOW_SUCCEEDED,
            "Unknown",
            "Running",
            &format!(
                "workflow {wf_name} is {}",
                wf_phase.as_deref().unwrap_or("Pending")
            ),
            generation,
        ),
        WorkflowState::Succeeded => condition(
            conditions,
            CONDITION_WORKFLOW_SUCCEEDED,
            "True",
            "Succeeded",
            &format!("workflow {wf_name} succeeded"),
            generation,
        ),
        WorkflowState::Failed => condition(
            conditions,
            CONDITION_WORKFLOW_SUCCEEDED,
            "False",
            "Failed",
            wf_message.as_deref().unwrap_or("the workflow failed"),
            generation,
        ),
    }
    let ready =
        observed.clusters_ready && observed.apps_healthy && observed.failed_target.is_none();
    if ready {
        condition(
            conditions,
            CONDITION_READY,
            "True",
            "Ready",
            "every target is provisioned and healthy",
            generation,
        );
    } else if let Some((_, to, reason, message)) = transitions
        .last()
        .filter(|t| t.1 == ExperimentPhase::Failed)
    {
        let _ = to;
        condition(
            conditions,
            CONDITION_READY,
            "False",
            reason,
            message,
            generation,
        );
    } else {
        condition(
            conditions,
            CONDITION_READY,
            "False",
            "NotReady",
            "waiting for clusters and components",
            generation,
        );
    }
    if let Some((_, _, reason, message)) = transitions
        .iter()
        .rev()
        .find(|t| t.1 == ExperimentPhase::Failed)
    {
        condition(
            status.conditions.get_or_insert_default(),
            CONDITION_FAILED,
            "True",
            reason,
            message,
            generation,
        );
    }
    // The terminal phase is written before any child is deleted; the cleanup starts in the
    // next pass, which this write's watch event triggers. Deleting first would lose the
    // outcome when the write then fails: the retry would find a Running Experiment whose
    // Workflow, the only record of how it ended, is gone, and wait for it for ever.
    let finished = new_phase.is_terminal();
    if finished {
        condition(
            status.conditions.get_or_insert_default(),
            CONDITION_READY,
            "False",
            REASON_CLEANUP_IN_PROGRESS,
            FINISHED_MESSAGE,
            generation,
        );
    }
    let Some(cleaned) = write_status(&ctx, &api, &exp, status).await? else {
        // Deleted meanwhile: its transitions never happened, so they are neither counted
        // nor published.
        return Ok(Action::await_change());
    };
    for (from, to, reason, message) in transitions {
        let type_ = if to == ExperimentPhase::Failed {
            EventType::Warning
        } else {
            EventType::Normal
        };
        tracing::info!(experiment = %name, namespace = %ns, from = %from, to = %to, reason, "phase transition");
        ctx.transitions
            .get_or_create(&vec![
                ("from".to_owned(), from.as_str().to_owned()),
                ("to".to_owned(), to.as_str().to_owned()),
                ("reason".to_owned(), reason.to_owned()),
            ])
            .inc();
        publish(&ctx, &exp, type_, reason, message).await;
    }
    if cleaned {
        publish_cleaned(&ctx, &exp).await;
    }

    // requeue: deadlines are the only timers; everything else is watch-driven.
    let mut next_check = RESYNC;
    for v in views.values() {
        if let ClusterState::Provisioning { remaining, .. } = v.cluster {
            next_check = next_check.min(remaining + Duration::from_millis(100));
        }
        if let (Some(left), false) = (v.components_due, new_phase.is_terminal()) {
            next_check = next_check.min(left + Duration::from_millis(100));
        }
    }
    if manual && new_phase == ExperimentPhase::Running {
        let left = ctx
            .config
            .manual_deadline
            .saturating_sub(age(started.as_ref()));
        next_check = next_check.min(left + Duration::from_millis(100));
    }
    if services_waiting {
        next_check = next_check.min(SERVICE_RECHECK);
    }
    if views.values().any(|v| {
        v.blocked
            .as_ref()
            .is_some_and(|(r, _)| *r != REASON_WAITING_FOR_PEERS)
    }) {
        next_check = next_check.min(TARGET_WRITE_RECHECK);
    }
    if finished {
        // The watch event of the write above starts the cleanup; this is the fallback.
        return Ok(Action::requeue(CLEANUP_RECHECK));
    }
    if let Some(e) = claim_error {
        // The condition names the refused claim; the error makes the runtime retry with
        // backoff.
        return Err(e);
    }
    Ok(Action::requeue(next_check))
}

/// Reason of the `Ready=False` condition while children are being removed.
const REASON_CLEANUP_IN_PROGRESS: &str = "CleanupInProgress";

/// The message of the `Ready=False` condition in the status write that records the end of the
/// experiment, before the cleanup's first pass lists what it removes.
const FINISHED_MESSAGE: &str =
    "the experiment finished; its Workflow, Applications and clusters are removed next";

/// The message of the `Ready=False` condition and the Event once completion cleanup is done.
const CLEANED_MESSAGE: &str =
    "the experiment finished and its clusters, Applications and Workflow were removed";

/// Records the Normal Event `Cleaned`, once the status saying so is written.
async fn publish_cleaned(ctx: &Ctx, exp: &Experiment) {
    publish(
        ctx,
        exp,
        EventType::Normal,
        "Cleaned",
        CLEANED_MESSAGE.to_owned(),
    )
    .await;
}

/// Folds the outcome of a completion-cleanup pass into `status` (`Cleaned` and
/// `resourcesCleaned` once nothing is left; otherwise the reason and message of what remains)
/// and says when to look again.
fn record_cleanup(
    status: &mut ExperimentStatus,
    outcome: Option<(&str, String)>,
    generation: Option<i64>,
) -> Action {
    if outcome.is_none() {
        status.resources_cleaned = Some(true);
    }
    let conditions = status.conditions.get_or_insert_default();
    match outcome {
        None => {
            condition(
                conditions,
                CONDITION_READY,
                "False",
                "Cleaned",
                CLEANED_MESSAGE,
                generation,
            );
            Action::await_change()
        }
        Some((reason, message)) => {
            condition(
                conditions,
                CONDITION_READY,
                "False",
                reason,
                &message,
                generation,
            );
            Action::requeue(CLEANUP_RECHECK)
        }
    }
}

/// A message when `obj` (found under this Experiment's deterministic name) belongs to an
/// Experiment of the same name in another namespace.
fn foreign_owner(obj: &DynamicObject, owner: Owner<'_>) -> Option<String> {
    let ns = obj.labels().get(build::LABEL_NAMESPACE)?;
    (ns != owner.namespace).then(|| {
        format!(
            "{} {}/{} belongs to Experiment {ns}/{}; Experiment names must be unique across namespaces",
            obj.types.as_ref().map_or("object", |t| t.kind.as_str()),
            obj.namespace().unwrap_or_default(),
            obj.name_any(),
            owner.name,
        )
    })
}

fn or_unknown(s: &str) -> &str {
    if s.is_empty() { "Unknown" } else { s }
}

fn time_at(obj: &DynamicObject, pointer: &str) -> Option<Time> {
    obj.data
        .pointer(pointer)
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<Timestamp>().ok())
        .map(Time)
}

fn observe_claim(claim: &DynamicObject, was_ready: bool, timeout: Duration) -> ClusterState {
    let endpoint = claim
        .data
        .pointer("/status/endpoint")
        .and_then(Value::as_str)
        .filter(|e| !e.is_empty());
    let ready = cond_status(&claim.data, "Ready");
    if let (Some(("True", _)), Some(e)) = (ready.as_ref().map(|(s, m)| (s.as_str(), m)), endpoint) {
        return ClusterState::Ready {
            endpoint: e.to_owned(),
        };
    }
    let synced = cond_status(&claim.data, "Synced");
    let message = [synced, ready]
        .into_iter()
        .flatten()
        .filter(|(s, m)| s != "True" && !m.is_empty())
        .map(|(_, m)| m)
        .next()
        .unwrap_or_default();
    let elapsed = age(claim.metadata.creation_timestamp.as_ref());
    if !was_ready && elapsed >= timeout {
        let minutes = timeout.as_secs_f64() / 60.0;
        return ClusterState::Failed {
            message: format!(
                "claim {} not Ready after {minutes:.1} minutes (provisioning timeout){}",
                claim.name_any(),
                if message.is_empty() {
                    String::new()
                } else {
                    format!(": {message}")
                }
            ),
        };
    }
    ClusterState::Provisioning {
        message,
        remaining: timeout.saturating_sub(elapsed),
    }
}

/// Why a target failed the components timeout: its Application, how long it had, and where
/// its health and sync stood (with Argo CD's message when it gives one).
fn components_timeout_message(
    v: &TargetView<'_>,
    health: &str,
    sync: &str,
    timeout: Duration,
) -> String {
    let app = v.app_obj.as_deref();
    let name = app.map_or_else(String::new, |a| {
        format!("{}/{}", a.namespace().unwrap_or_default(), a.name_any())
    });
    let detail = app
        .and_then(|a| {
            a.data
                .pointer("/status/health/message")
                .or_else(|| a.data.pointer("/status/conditions/0/message"))
                .and_then(Value::as_str)
        })
        .filter(|m| !m.is_empty())
        .map_or_else(String::new, |m| format!(": {m}"));
    let or_none = |s: &str| {
        if s.is_empty() {
            "none".to_owned()
        } else {
            s.to_owned()
        }
    };
    format!(
        "Application {name} was not Synced and Healthy within {}s of its creation (health {}, sync {}){detail}",
        timeout.as_secs(),
        or_none(health),
        or_none(sync)
    )
}

fn app_state(app: &DynamicObject) -> AppState {
    let health = app
        .data
        .pointer("/status/health/status")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let sync = app
        .data
        .pointer("/status/sync/status")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if health == "Healthy" && sync == "Synced" && app.meta().deletion_timestamp.is_none() {
        AppState::Healthy
    } else {
        AppState::Progressing {
            health: health.to_owned(),
            sync: sync.to_owned(),
        }
    }
}

fn target_status(v: &TargetView<'_>, previous: Option<&TargetStatus>, ctx: &Ctx) -> TargetStatus {
    let type_ = v.target.cluster.type_.as_str();
    let (phase, endpoint) = match &v.cluster {
        ClusterState::Hub => ("Ready", None),
        ClusterState::Ready { endpoint } => ("Ready", Some(endpoint.clone())),
        ClusterState::Requested | ClusterState::Rejected { .. } => ("Pending", None),
        ClusterState::Provisioning { .. } => ("Provisioning", None),
        ClusterState::Failed { .. } => ("Failed", None),
    };
    let effective = |field: &str| -> Option<Value> {
        let spec = serde_json::to_value(&v.target.cluster).ok()?;
        spec.get(field)
            .filter(|x| !x.is_null())
            .cloned()
            .or_else(|| {
                ctx.config
                    .cluster_types
                    .get(type_)?
                    .defaults
                    .get(field)
                    .cloned()
            })
    };
    let components = v.app_obj.as_ref().and_then(|a| {
        let list: Vec<String> = a
            .data
            .pointer("/status/resources")?
            .as_array()?
            .iter()
            .filter_map(|r| Some(format!("{}/{}", r["kind"].as_str()?, r["name"].as_str()?)))
            .collect();
        (!list.is_empty()).then_some(list)
    });
    TargetStatus {
        name: v.target.name.clone(),
        phase: Some(phase.to_owned()),
        cluster_name: Some(
            v.claim_name
                .clone()
                .unwrap_or_else(|| HUB_CLUSTER_NAME.to_owned()),
        ),
        endpoint,
        machine_type: effective("machineType").and_then(|x| x.as_str().map(str::to_owned)),
        node_count: effective("nodeCount").and_then(|x| x.as_i64()),
        components: components.or_else(|| previous.and_then(|p| p.components.clone())),
        kubeconfig_secret: v.claim_name.as_deref().map(build::connection_secret_name),
        deployed_layers: None,
        apps_created: Some(matches!(
            v.app,
            AppState::NotNeeded | AppState::Healthy | AppState::Progressing { .. }
        )),
        cluster_registered: (type_ != HUB).then_some(v.registered),
        claim_recreations: (v.recreations > 0).then_some(v.recreations),
        components_healthy_at: previous
            .and_then(|p| p.components_healthy_at.clone())
            .or_else(|| (v.app == AppState::Healthy).then(|| Time(Timestamp::now()))),
    }
}

/// The stuck-claim recreation (when configured): whether `claim`, observed as `state`, is to
/// be deleted and created again now, and the state to report. A claim being deleted after a
/// recreation is reported as such (it does not time out: its successor's clock has not
/// started); a claim that is not Ready is recreated once it is `stuck_claim_recreate_after`
/// old, at most `max_claim_recreations` times, and only if it is the latest creation (a
/// cache still showing the deleted one does not count twice).
fn stuck_claim(
    config: &LabsConfig,
    claim: &DynamicObject,
    state: ClusterState,
    was_ready: bool,
    recreations: i64,
) -> (ClusterState, bool) {
    let Some(after) = config.stuck_claim_recreate_after else {
        return (state, false);
    };
    if matches!(state, ClusterState::Ready { .. }) || was_ready {
        return (state, false);
    }
    if claim.metadata.deletion_timestamp.is_some() {
        if recreations == 0 {
            return (state, false);
        }
        return (
            ClusterState::Provisioning {
                message: format!(
                    "claim {} is being deleted to be created again",
                    claim.name_any()
                ),
                remaining: config.provisioning_timeout,
            },
            false,
        );
    }
    let attempt = claim
        .annotations()
        .get(ANNOTATION_CLAIM_ATTEMPT)
        .and_then(|a| a.parse::<i64>().ok())
        .unwrap_or(1);
    let ClusterState::Provisioning { message, remaining } = state else {
        return (state, false);
    };
    if attempt != recreations + 1 || recreations >= i64::from(config.max_claim_recreations) {
        return (ClusterState::Provisioning { message, remaining }, false);
    }
    let elapsed = age(claim.metadata.creation_timestamp.as_ref());
    if elapsed >= after {
        return (ClusterState::Provisioning { message, remaining }, true);
    }
    // Wake up when the claim is due for recreation.
    let due = after.saturating_sub(elapsed);
    (
        ClusterState::Provisioning {
            message,
            remaining: remaining.min(due),
        },
        false,
    )
}

fn post_params() -> PostParams {
    PostParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PostParams::default()
    }
}

fn configmap_resource() -> ApiResource {
    ApiResource {
        group: String::new(),
        version: "v1".into(),
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        plural: "configmaps".into(),
    }
}

fn secret_resource() -> ApiResource {
    ApiResource {
        group: String::new(),
        version: "v1".into(),
        api_version: "v1".into(),
        kind: "Secret".into(),
        plural: "secrets".into(),
    }
}

/// Server-side apply of one child; returns the object as the API server stored it. The write
/// is recorded in [`Ctx::applied`] when a cache of its kind exists (Applications and claims).
async fn apply(
    ctx: &Ctx,
    ar: &ApiResource,
    obj: &DynamicObject,
) -> Result<Arc<DynamicObject>, Error> {
    let ns = obj.metadata.namespace.clone().unwrap_or_default();
    let name = obj.name_any();
    let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), &ns, ar);
    let mut applied = api
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(obj),
        )
        .await?;
    applied.managed_fields_mut().clear();
    let applied = Arc::new(applied);
    if *ar == ctx.applications.0 || ctx.claims.values().any(|(c, _)| c == ar) {
        ctx.applied.record(
            expect::key_of(ar, obj),
            applied.resource_version().as_deref(),
            Some(applied.clone()),
        );
    }
    Ok(applied)
}

/// The kubeconfig of a claim's cluster, with the Secret's `namespace/name` and key: from the
/// claim's connection Secret, else (a Composition that declares no connection details, such as
/// upstream's GKE one, leaves that Secret without the key) from the composite's
/// `crossplane-system/<composite>-cluster-conn`, the composite named by the claim's
/// `spec.resourceRef`, and only when that composite's `spec.claimRef` names the claim back.
async fn read_kubeconfig(
    ctx: &Ctx,
    cluster: &str,
    claim_ns: &str,
    type_: &str,
) -> Result<(String, String, String), Error> {
    let key = ctx
        .config
        .cluster_types
        .get(type_)
        .map_or("kubeconfig", |m| m.kubeconfig_key.as_str());
    let secret_name = build::connection_secret_name(cluster);
    let shown = format!("{claim_ns}/{secret_name}");
    if let Some(kubeconfig) = secret_value(ctx, claim_ns, &secret_name, key).await? {
        return Ok((kubeconfig, shown, key.to_owned()));
    }
    let reference = ctx.claim(type_, claim_ns, cluster).and_then(|c| {
        let r = c.data.pointer("/spec/resourceRef")?;
        let text = |k: &str| r.get(k).and_then(Value::as_str).filter(|v| !v.is_empty());
        Some((
            text("apiVersion")?.to_owned(),
            text("kind")?.to_owned(),
            text("name")?.to_owned(),
        ))
    });
    let Some((api_version, kind, composite)) = reference else {
        return Err(build::BuildError::Kubeconfig {
            secret: shown,
            key: key.to_owned(),
            message: "missing (the claim is Ready but has not written its connection Secret, \
                      and names no composite in spec.resourceRef)"
                .into(),
        }
        .into());
    };
    // The claim's spec is writable by whoever may edit claims in its namespace: its
    // resourceRef is trusted only when the composite names this claim back.
    let (group, version) = api_version.split_once('/').unwrap_or(("", &api_version));
    let ar = ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk(group, version, &kind));
    let xr = Api::<DynamicObject>::all_with(ctx.client.clone(), &ar)
        .get_opt(&composite)
        .await?;
    let claim_ref = xr.as_ref().and_then(|x| x.data.pointer("/spec/claimRef"));
    let names_this_claim = claim_ref.is_some_and(|r| {
        r.get("namespace").and_then(Value::as_str) == Some(claim_ns)
            && r.get("name").and_then(Value::as_str) == Some(cluster)
    });
    if !names_this_claim {
        return Err(build::BuildError::Kubeconfig {
            secret: shown,
            key: key.to_owned(),
            message: format!(
                "missing, and the claim's spec.resourceRef names {kind} {composite}, which {}; \
                 its connection Secret is not used",
                if xr.is_none() {
                    "does not exist"
                } else {
                    "does not name this claim in spec.claimRef"
                }
            ),
        }
        .into());
    }
    let fallback_name = build::composite_connection_secret_name(&composite);
    let fallback = format!("{}/{fallback_name}", build::COMPOSITE_CONNECTION_NAMESPACE);
    match secret_value(
        ctx,
        build::COMPOSITE_CONNECTION_NAMESPACE,
        &fallback_name,
        key,
    )
    .await?
    {
        Some(kubeconfig) => Ok((kubeconfig, fallback, key.to_owned())),
        None => Err(build::BuildError::Kubeconfig {
            secret: shown,
            key: key.to_owned(),
            message: format!(
                "missing, and missing in the composite's Secret {fallback} too (the claim is \
                 Ready but no connection Secret holds its kubeconfig yet)"
            ),
        }
        .into()),
    }
}

/// `key` of Secret `namespace/name` as text (`data`, else `stringData`); `None` when the
/// Secret or the key does not exist.
async fn secret_value(
    ctx: &Ctx,
    namespace: &str,
    name: &str,
    key: &str,
) -> Result<Option<String>, Error> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let secret = secrets.get_opt(name).await?;
    Ok(secret
        .as_ref()
        .and_then(|s| crate::runtime::secrets::text(s, key)))
}

/// Copies a Ready target's kubeconfig into the tutorial Secret in the Experiment's namespace
/// (`spec.tutorial.exposeKubeconfig`); returns the Secret's name.
async fn expose_tutorial_kubeconfig(
    ctx: &Ctx,
    exp: &Experiment,
    owner: Owner<'_>,
    target: &str,
    cluster: &str,
    claim_ns: &str,
    type_: &str,
) -> Result<String, Error> {
    let name = build::tutorial_kubeconfig_name(owner.name, target);
    let (kubeconfig, _, _) = read_kubeconfig(ctx, cluster, claim_ns, type_).await?;
    let Some(owner_ref) = exp.controller_owner_ref(&()) else {
        return Ok(name);
    };
    let desired = build::tutorial_kubeconfig(owner, &owner_ref, target, &kubeconfig);
    let secrets: Api<DynamicObject> =
        Api::namespaced_with(ctx.client.clone(), owner.namespace, &secret_resource());
    let live = secrets.get_metadata_opt(&name).await?;
    let live_hash = live.as_ref().and_then(|l| {
        l.metadata
            .annotations
            .as_ref()?
            .get(ANNOTATION_HASH)
            .cloned()
    });
    let desired_hash = desired.annotations().get(ANNOTATION_HASH).cloned();
    if live_hash.is_none() || live_hash != desired_hash {
        apply(ctx, &secret_resource(), &desired).await?;
    }
    Ok(name)
}

/// `status.tutorialStatus.services`: hub Services resolved to their address; Services on
/// provisioned targets are reported not ready (`labctl` resolves them through the target's
/// kubeconfig). The flag is true when a hub Service has no address yet.
async fn discover_tutorial_services(
    ctx: &Ctx,
    exp: &Experiment,
) -> (Vec<TutorialServiceStatus>, bool) {
    let services = exp
        .spec
        .tutorial
        .as_ref()
        .and_then(|t| t.services.as_deref())
        .unwrap_or_default();
    let mut out = Vec::new();
    let mut waiting = false;
    for s in services {
        let on_hub = exp
            .spec
            .targets
            .iter()
            .any(|t| t.name == s.target && t.cluster.type_.as_str() == HUB);
        let endpoint = if on_hub {
            let api: Api<Service> = Api::namespaced(ctx.client.clone(), &s.namespace);
            match api.get_opt(&s.service).await {
                Ok(svc) => svc.and_then(|svc| build::service_endpoint(&svc, s.port)),
                Err(error) => {
                    tracing::warn!(experiment = %exp.name_any(), service = %s.service, namespace = %s.namespace, %error, "cannot read tutorial Service");
                    None
                }
            }
        } else {
            None
        };
        waiting |= on_hub && endpoint.is_none();
        out.push(TutorialServiceStatus {
            name: s.name.clone(),
            ready: Some(endpoint.is_some()),
            endpoint,
        });
    }
    (out, waiting)
}

/// The spec fields this operator accepts (so existing YAML applies unchanged) but does not act
/// on, as one condition message; `None` when the spec sets none of them.
fn unsupported_fields(exp: &Experiment) -> Option<String> {
    let spec = &exp.spec;
    let mut fields: Vec<String> = Vec::new();
    if spec.publish == Some(true) {
        fields.push("spec.publish (GitHub pull request of the results)".into());
    }
    if spec.metrics.as_ref().is_some_and(|m| !m.is_empty()) {
        fields.push("spec.metrics (metrics collection and results storage in S3)".into());
    }
    if spec.quality_gate.is_some() {
        fields.push("spec.qualityGate (metrics coverage gate)".into());
    }
    if spec.hypothesis.is_some() {
        fields.push("spec.hypothesis (success criteria verdict)".into());
    }
    if spec.analyzer_config.is_some() {
        fields.push("spec.analyzerConfig (AI analyzer Job and review gate)".into());
    }
    if spec.code_snippets.as_ref().is_some_and(|c| !c.is_empty()) {
        fields.push("spec.codeSnippets (analyzer input)".into());
    }
    (!fields.is_empty()).then(|| {
        format!(
            "accepted but not acted on by this operator: {}; see docs/labs.md",
            fields.join("; ")
        )
    })
}

/// A provisioned target's cluster: the target, its claim and what it gets.
struct TargetCluster<'a> {
    target: &'a str,
    claim: &'a str,
    claim_ns: &'a str,
    endpoint: &'a str,
    type_: &'a str,
    /// Whether the Tailscale OAuth Secret goes onto it.
    tailscale: bool,
}

/// Another provisioned target of the same experiment, seen from one target.
struct Peer {
    target: String,
    claim: String,
    claim_ns: String,
    type_: String,
    ready: bool,
}

/// Registers a provisioned target's cluster ([`prepare_target_cluster`]) once its claim is
/// Ready. Returns whether it is registered now; if not, `view.blocked` says why (and a
/// Warning Event does, unless it only waits for the other clusters).
async fn register_target(
    ctx: &Ctx,
    exp: &Experiment,
    owner: Owner<'_>,
    view: &mut TargetView<'_>,
    peers: &[Peer],
) -> Result<bool, Error> {
    let (ClusterState::Ready { endpoint }, Some(claim), Some(claim_ns)) =
        (&view.cluster, &view.claim_name, &view.claim_ns)
    else {
        return Ok(false);
    };
    let on_target = TargetCluster {
        target: &view.target.name,
        claim,
        claim_ns,
        endpoint,
        type_: view.target.cluster.type_.as_str(),
        tailscale: build::wants_tailscale(view.target),
    };
    match prepare_target_cluster(ctx, owner, &on_target, peers).await? {
        None => {
            view.registered = true;
            Ok(true)
        }
        Some((reason, why)) => {
            if reason != REASON_WAITING_FOR_PEERS {
                publish_held_back(ctx, exp, reason, &view.target.name, &why).await;
            }
            view.blocked = Some((reason, why));
            Ok(false)
        }
    }
}

/// Everything a provisioned target's cluster needs before its Application is created, from
/// one read of its connection Secret: its Argo CD cluster Secret on the hub, then on the
/// cluster itself (through that kubeconfig) Namespace `<experiment>` with the hub's Tailscale
/// OAuth Secret (for the Tailscale transport, where the chart given no OAuth values reads it)
/// and, with two or more provisioned targets, every other one's kubeconfig as
/// `<other>-cluster-kubeconfig` (as upstream). Returns why the Application is held back (a
/// condition reason and message): the hub Tailscale Secret is missing, another cluster is
/// not ready yet, or the cluster cannot be reached or refuses a write.
async fn prepare_target_cluster(
    ctx: &Ctx,
    owner: Owner<'_>,
    on: &TargetCluster<'_>,
    peers: &[Peer],
) -> Result<Option<(&'static str, String)>, Error> {
    let (kubeconfig, shown, key) = read_kubeconfig(ctx, on.claim, on.claim_ns, on.type_).await?;
    let config_json = build::argocd_cluster_config(&kubeconfig, &shown, &key)?;
    let registration = build::cluster_secret(
        owner,
        on.target,
        on.claim,
        on.endpoint,
        &config_json,
        &ctx.config,
    );
    apply(ctx, &secret_resource(), &registration).await?;

    let mut tailscale = None;
    if on.tailscale {
        let hub: Api<Secret> =
            Api::namespaced(ctx.client.clone(), build::TAILSCALE_SOURCE_NAMESPACE);
        let Some(source) = hub.get_opt(build::TAILSCALE_SECRET).await? else {
            return Ok(Some((
                REASON_TAILSCALE_SECRET,
                format!(
                    "the hub Secret {}/{} with the Tailscale OAuth client is missing; the Tailscale operator on this target needs it",
                    build::TAILSCALE_SOURCE_NAMESPACE,
                    build::TAILSCALE_SECRET
                ),
            )));
        };
        tailscale = Some(build::tailscale_oauth_secret(owner, on.target, &source));
    }
    let waiting: Vec<&str> = peers
        .iter()
        .filter(|p| !p.ready)
        .map(|p| p.target.as_str())
        .collect();
    if !waiting.is_empty() {
        return Ok(Some((
            REASON_WAITING_FOR_PEERS,
            format!(
                "waiting for the clusters of {} (their kubeconfigs are copied onto this cluster first)",
                waiting.join(", ")
            ),
        )));
    }
    let mut kubeconfigs = Vec::with_capacity(peers.len());
    for p in peers {
        let (peer_kubeconfig, _, _) = read_kubeconfig(ctx, &p.claim, &p.claim_ns, &p.type_).await?;
        kubeconfigs.push(build::peer_kubeconfig_secret(
            owner,
            on.target,
            &p.target,
            &peer_kubeconfig,
        ));
    }
    if tailscale.is_none() && kubeconfigs.is_empty() {
        return Ok(None);
    }
    // The first write names the reason of a failure: the Tailscale Secret's when there is one.
    let first_reason = if tailscale.is_some() {
        REASON_TAILSCALE_SECRET
    } else {
        REASON_KUBECONFIGS
    };
    let client = match remote::client(&kubeconfig, &shown).await {
        Ok(client) => client,
        Err(e) => return Ok(Some((first_reason, e.to_string()))),
    };
    if let Err(e) = remote::apply_namespace(&client, &build::target_namespace(owner)).await {
        return Ok(Some((first_reason, e.to_string())));
    }
    if let Some(secret) = &tailscale
        && let Err(e) = remote::apply_secret(&client, secret).await
    {
        return Ok(Some((REASON_TAILSCALE_SECRET, e.to_string())));
    }
    for secret in &kubeconfigs {
        if let Err(e) = remote::apply_secret(&client, secret).await {
            return Ok(Some((REASON_KUBECONFIGS, e.to_string())));
        }
    }
    Ok(None)
}

/// What [`ensure_hub_namespace`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HubNamespace {
    /// Created now, or already there and not another Experiment's: hub targets deploy into it.
    Usable,
    /// Being deleted; Argo CD cannot create anything in it until it is gone.
    Terminating(String),
    /// Created by an Experiment of the same name in another namespace.
    Foreign(String),
}

/// Creates the hub namespace `<experiment>` ([`build::hub_namespace`]) unless a namespace of
/// that name exists. Called only before a hub target's Application is written, so a settled
/// Experiment issues no request. An existing namespace without this Experiment's labels (the
/// user's own, or one Argo CD created) is used as it is and is never deleted by the cleanup,
/// which selects on those labels.
async fn ensure_hub_namespace(ctx: &Ctx, owner: Owner<'_>) -> Result<HubNamespace, Error> {
    let api: Api<Namespace> = Api::all(ctx.client.clone());
    match api
        .create(&post_params(), &build::hub_namespace(owner))
        .await
    {
        Ok(_) => return Ok(HubNamespace::Usable),
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => return Err(e.into()),
    }
    let terminating = || {
        HubNamespace::Terminating(format!(
            "the hub namespace {} is being deleted; the Application is created once it is gone",
            owner.name
        ))
    };
    // Deleted between the two requests: the next pass creates it.
    let Some(existing) = api.get_opt(owner.name).await? else {
        return Ok(terminating());
    };
    if existing.metadata.deletion_timestamp.is_some() {
        return Ok(terminating());
    }
    let labels = existing.labels();
    if labels.get(build::LABEL_EXPERIMENT).map(String::as_str) == Some(owner.name)
        && let Some(other) = labels.get(build::LABEL_NAMESPACE)
        && other != owner.namespace
    {
        return Ok(HubNamespace::Foreign(format!(
            "the hub namespace {} belongs to Experiment {other}/{}; Experiment names must be unique across namespaces",
            owner.name, owner.name
        )));
    }
    Ok(HubNamespace::Usable)
}

/// One child kind of an Experiment: where it lives and the synced cache holding it, if any.
struct KindSpec {
    kind: ChildKind,
    ar: ApiResource,
    namespace: Option<String>,
    selector: String,
    cache: Option<Store<DynamicObject>>,
}

/// The children of one Experiment, read from the watch caches where a synced one exists and
/// from the API server otherwise (see [`cleanup::Source`]).
struct Children<'a> {
    ctx: &'a Ctx,
    owner: Owner<'a>,
    kinds: Vec<KindSpec>,
}

fn child_of(kind: ChildKind, ar: &ApiResource, meta: &kube::api::ObjectMeta) -> Child {
    Child {
        kind,
        namespace: meta.namespace.clone().unwrap_or_default(),
        name: meta.name.clone().unwrap_or_default(),
        deleting_for: meta.deletion_timestamp.as_ref().map(|t| age(Some(t))),
        resource: Some(ar.clone()),
    }
}

/// A cache that has finished its first list.
fn synced(store: &Store<DynamicObject>) -> Option<Store<DynamicObject>> {
    crate::runtime::watches::synced(store).then(|| store.clone())
}

impl<'a> Children<'a> {
    /// The children of the Experiment `owner` with targets `targets`: the objects carrying
    /// its owner labels, and the objects upstream's operator created for it, found by the
    /// labels that operator set (see [`Self::legacy`]).
    fn new(ctx: &'a Ctx, owner: Owner<'a>, targets: &[&str]) -> Self {
        let mut children = Self::labelled(ctx, owner);
        children.legacy(targets);
        children
    }

    /// Objects upstream's operator created for this Experiment, which carry its labels but
    /// not this operator's namespace label (so they were never adopted): the Workflow and the
    /// Applications (`app.kubernetes.io/managed-by` and `experiments.illm.io/experiment`;
    /// the `-infra` and `-obs` Applications of its layered deployments among them), the
    /// Argo CD cluster Secrets and the claims (`experiments.illm.io/cluster` naming one of
    /// the Experiment's `<exp>-<target>` clusters). Upstream named them without the
    /// Experiment's namespace, so these belong to the Experiment of that name in any
    /// namespace, as they did upstream. Listed from the API server on each pass.
    fn legacy(&mut self, targets: &[&str]) {
        let not_adopted = format!("!{}", build::LABEL_NAMESPACE);
        let by_owner = format!(
            "{}={},{}={},{not_adopted}",
            agentic_api::labs::LABEL_MANAGED_BY,
            agentic_api::labs::MANAGED_BY,
            build::LABEL_EXPERIMENT,
            self.owner.name
        );
        let mut legacy = vec![
            KindSpec {
                kind: ChildKind::Workflow,
                ar: self.ctx.workflows.0.clone(),
                namespace: Some(self.ctx.config.workflow_namespace.clone()),
                selector: by_owner.clone(),
                cache: None,
            },
            KindSpec {
                kind: ChildKind::Application,
                ar: self.ctx.applications.0.clone(),
                namespace: Some(self.ctx.config.argocd_namespace.clone()),
                selector: by_owner,
                cache: None,
            },
        ];
        // Only names a label can hold: upstream could not label its objects with any other,
        // and one invalid value would make the API server refuse the whole selector.
        let clusters: Vec<String> = targets
            .iter()
            .map(|t| build::claim_name(self.owner.name, t))
            .filter(|c| !c.is_empty() && crate::runtime::names::is_label_value(c))
            .collect();
        if !clusters.is_empty() {
            let clusters = clusters.join(",");
            let by_cluster = format!(
                "{} in ({clusters}),{not_adopted}",
                agentic_api::labs::LABEL_CLUSTER
            );
            legacy.push(KindSpec {
                kind: ChildKind::ClusterSecret,
                ar: secret_resource(),
                namespace: Some(self.ctx.config.argocd_namespace.clone()),
                selector: format!("{}=cluster,{by_cluster}", build::ARGOCD_SECRET_TYPE),
                cache: None,
            });
            let mut claim_kinds: Vec<&ApiResource> = Vec::new();
            for (ar, _) in self.ctx.claims.values() {
                if claim_kinds.contains(&ar) {
                    continue;
                }
                claim_kinds.push(ar);
                legacy.push(KindSpec {
                    kind: ChildKind::Claim,
                    ar: ar.clone(),
                    namespace: None,
                    selector: format!(
                        "{}={},{by_cluster}",
                        agentic_api::labs::LABEL_MANAGED_BY,
                        agentic_api::labs::MANAGED_BY
                    ),
                    cache: None,
                });
            }
        }
        self.kinds.extend(legacy);
    }

    fn labelled(ctx: &'a Ctx, owner: Owner<'a>) -> Self {
        let selector = owner.selector();
        let mut kinds = vec![
            KindSpec {
                kind: ChildKind::Workflow,
                ar: ctx.workflows.0.clone(),
                namespace: Some(ctx.config.workflow_namespace.clone()),
                selector: selector.clone(),
                cache: synced(&ctx.workflows.1),
            },
            KindSpec {
                kind: ChildKind::Datasource,
                ar: configmap_resource(),
                namespace: Some(ctx.config.grafana_namespace.clone()),
                selector: selector.clone(),
                cache: None,
            },
            KindSpec {
                kind: ChildKind::KubeconfigSecret,
                ar: secret_resource(),
                namespace: Some(owner.namespace.to_owned()),
                selector: format!(
                    "{selector},{},!{}",
                    build::LABEL_SHORT_TARGET,
                    build::ARGOCD_SECRET_TYPE
                ),
                cache: None,
            },
            KindSpec {
                kind: ChildKind::Application,
                ar: ctx.applications.0.clone(),
                namespace: Some(ctx.config.argocd_namespace.clone()),
                selector: selector.clone(),
                cache: synced(&ctx.applications.1),
            },
            KindSpec {
                kind: ChildKind::ClusterSecret,
                ar: secret_resource(),
                namespace: Some(ctx.config.argocd_namespace.clone()),
                selector: format!("{selector},{}=cluster", build::ARGOCD_SECRET_TYPE),
                cache: None,
            },
            KindSpec {
                kind: ChildKind::HubNamespace,
                ar: ApiResource::erase::<Namespace>(&()),
                namespace: None,
                selector: selector.clone(),
                cache: None,
            },
        ];
        for (ar, store) in ctx.claims.values() {
            // Two cluster types may share a claim kind.
            if kinds.iter().any(|k| k.ar == *ar) {
                continue;
            }
            kinds.push(KindSpec {
                kind: ChildKind::Claim,
                ar: ar.clone(),
                namespace: None,
                selector: selector.clone(),
                cache: synced(store),
            });
        }
        Self { ctx, owner, kinds }
    }

    fn cached(&self, spec: &KindSpec, store: &Store<DynamicObject>) -> Vec<Child> {
        store
            .state()
            .iter()
            .filter(|o| {
                let labels = o.labels();
                labels.get(build::LABEL_EXPERIMENT).map(String::as_str) == Some(self.owner.name)
                    && labels.get(build::LABEL_NAMESPACE).map(String::as_str)
                        == Some(self.owner.namespace)
                    && spec
                        .namespace
                        .as_deref()
                        .is_none_or(|ns| o.namespace().as_deref() == Some(ns))
            })
            .map(|o| {
                let mut child = child_of(spec.kind, &spec.ar, &o.metadata);
                // Deleted by an earlier pass; the cache has not seen it yet.
                if child.deleting_for.is_none() {
                    child.deleting_for = self.ctx.deleted.since(&expect::key_of(&spec.ar, o));
                }
                child
            })
            .collect()
    }

    async fn list(&self, spec: &KindSpec) -> Result<Vec<Child>, Error> {
        let lp = ListParams::default().labels(&spec.selector);
        let api: Api<DynamicObject> = match &spec.namespace {
            Some(ns) => Api::namespaced_with(self.ctx.client.clone(), ns, &spec.ar),
            None => Api::all_with(self.ctx.client.clone(), &spec.ar),
        };
        match api.list_metadata(&lp).await {
            Ok(list) => Ok(list
                .items
                .iter()
                .map(|item| child_of(spec.kind, &spec.ar, &item.metadata))
                .collect()),
            // A kind whose CRD is not installed has nothing to clean up.
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
    }
}

impl cleanup::Source for Children<'_> {
    type Error = Error;

    async fn observe(&self) -> Result<Vec<Child>, Error> {
        let mut out = Vec::new();
        for spec in &self.kinds {
            match &spec.cache {
                Some(store) => out.extend(self.cached(spec, store)),
                None => out.extend(self.list(spec).await?),
            }
        }
        Ok(out)
    }

    async fn confirm(&self) -> Result<Vec<Child>, Error> {
        let mut out = Vec::new();
        for spec in self.kinds.iter().filter(|k| k.cache.is_some()) {
            out.extend(self.list(spec).await?);
        }
        Ok(out)
    }

    async fn delete(&self, child: &Child) -> Result<bool, Error> {
        let Some(ar) = &child.resource else {
            return Ok(true);
        };
        let api: Api<DynamicObject> = if child.namespace.is_empty() {
            Api::all_with(self.ctx.client.clone(), ar)
        } else {
            Api::namespaced_with(self.ctx.client.clone(), &child.namespace, ar)
        };
        let result = api.delete(&child.name, &DeleteParams::background()).await;
        if self.kinds.iter().any(|k| k.ar == *ar && k.cache.is_some()) {
            self.ctx
                .deleted
                .record(expect::child_key(ar, &child.namespace, &child.name));
        }
        match result {
            // Returned with a deletion timestamp and finalizers: still there. A `Status` or an
            // object without finalizers: gone.
            Ok(response) => Ok(response.left().is_none_or(|obj| {
                obj.metadata.deletion_timestamp.is_none() || obj.finalizers().is_empty()
            })),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(true),
            Err(e) => Err(e.into()),
        }
    }
}

/// How many times `cleanupStuckAfter` a deletion may hang before the later cleanup stages go
/// on without it: long enough for slow but working deletions (cloud load balancers and disks
/// behind an Application's finalizer) to finish while their cluster still exists, short enough
/// that a deletion that never finishes does not keep a cluster running for ever.
const CLEANUP_FORCE_FACTOR: u32 = 3;

/// One cleanup pass. `None` when everything is gone (confirmed against the API server);
/// otherwise the condition reason and message describing what is still being removed. A stage
/// whose objects have no finalizers is gone at once, so the pass moves on to the next stage
/// without waiting for an event.
async fn run_cleanup(
    exp: &Experiment,
    owner: Owner<'_>,
    ctx: &Ctx,
) -> Result<Option<(&'static str, String)>, Error> {
    let targets: Vec<&str> = exp.spec.targets.iter().map(|t| t.name.as_str()).collect();
    let waiting = match cleanup::run(
        &Children::new(ctx, owner, &targets),
        ctx.config.cleanup_stuck_after * CLEANUP_FORCE_FACTOR,
    )
    .await?
    {
        cleanup::Outcome::Done => return Ok(None),
        cleanup::Outcome::Waiting(waiting) => waiting,
    };
    let stuck = cleanup::stuck(&waiting, ctx.config.cleanup_stuck_after);
    if !stuck.is_empty() {
        let claim_hint = if stuck.iter().any(|c| c.kind == ChildKind::Claim) {
            "; a claim deleted in the foreground stays until Crossplane has deleted its composite's cloud resources (`kubectl get managed` shows the one that fails)"
        } else {
            ""
        };
        let message = format!(
            "deletion is stuck: {} still exist after {}s; check their finalizers{claim_hint}",
            stuck
                .iter()
                .map(|c| c.display())
                .collect::<Vec<_>>()
                .join(", "),
            ctx.config.cleanup_stuck_after.as_secs()
        );
        publish(
            ctx,
            exp,
            EventType::Warning,
            "CleanupStuck",
            message.clone(),
        )
        .await;
        return Ok(Some(("CleanupStuck", message)));
    }
    let names: Vec<String> = waiting.iter().map(Child::display).collect();
    Ok(Some((
        REASON_CLEANUP_IN_PROGRESS,
        format!("removing {}", names.join(", ")),
    )))
}

/// Patches `/status` unless the stored status is the same. Returns `None` when the Experiment
/// is gone (nothing it would report happened), else whether the write recorded the end of
/// completion cleanup (`resourcesCleaned` became true), for the `Cleaned` Event the caller
/// publishes after its transition Events.
async fn write_status(
    ctx: &Ctx,
    api: &Api<Experiment>,
    exp: &Experiment,
    status: ExperimentStatus,
) -> Result<Option<bool>, Error> {
    if exp.status.as_ref() == Some(&status) {
        return Ok(Some(false));
    }
    let cleaned = status.resources_cleaned == Some(true)
        && exp.status.as_ref().and_then(|s| s.resources_cleaned) != Some(true);
    let body = serde_json::to_value(&status).map_err(|source| Error::Encode {
        what: "status",
        source,
    })?;
    match api
        .patch_status(
            &exp.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({"status": body})),
        )
        .await
    {
        Ok(updated) => {
            ctx.written.record(
                format!("{}/{}", exp.namespace().unwrap_or_default(), exp.name_any()),
                updated.resource_version().as_deref(),
                None,
            );
            Ok(Some(cleaned))
        }
        // Deleted meanwhile: nothing left to report on.
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Whether the recorded status already reports target `tname` held back for `why`: the
/// `ComponentsHealthy=False` message lists each held target as `<target>: <why>` (its reason
/// names only the first one's cause). Its Warning Event was then published by an earlier
/// pass; every pass while the target waits (one each [`TARGET_WRITE_RECHECK`]) would
/// otherwise add to the Event's series, a write each.
fn held_back_reported(exp: &Experiment, tname: &str, why: &str) -> bool {
    let listed = format!("; {tname}: {why}; ");
    exp.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == CONDITION_COMPONENTS_HEALTHY))
        .is_some_and(|c| c.status == "False" && format!("; {}; ", c.message).contains(&listed))
}

/// The Warning Event of target `tname` held back with `reason` for `why`, unless an earlier
/// pass already published it ([`held_back_reported`]).
async fn publish_held_back(ctx: &Ctx, exp: &Experiment, reason: &str, tname: &str, why: &str) {
    if !held_back_reported(exp, tname, why) {
        let note = format!("target {tname}: {why}");
        publish(ctx, exp, EventType::Warning, reason, note).await;
    }
}

async fn publish(ctx: &Ctx, exp: &Experiment, type_: EventType, reason: &str, note: String) {
    let event = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(note),
        action: "Reconcile".into(),
        secondary: None,
    };
    crate::runtime::events::publish(&ctx.recorder, &event, &exp.object_ref(&())).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> DynamicObject {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_held_back_target_is_reported_once_per_cause() {
        let with = |status: &str, message: &str| -> Experiment {
            serde_json::from_value(json!({
                "apiVersion": "experiments.illm.io/v1alpha1", "kind": "Experiment",
                "metadata": {"name": "e", "namespace": "experiments"},
                "spec": {"targets": [], "workflow": {"template": "t", "completion": {"mode": "workflow"}}},
                "status": {"conditions": [{"type": "ComponentsHealthy", "status": status,
                    "reason": "KubeconfigsNotCopied", "message": message,
                    "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
            }))
            .unwrap()
        };
        let two = with(
            "False",
            "other: writing Namespace e failed; a; b; remote: the hub Secret is missing",
        );
        // Each listed target, whatever the condition's reason (it names the first cause).
        assert!(held_back_reported(
            &two,
            "other",
            "writing Namespace e failed; a; b"
        ));
        assert!(held_back_reported(
            &two,
            "remote",
            "the hub Secret is missing"
        ));
        // Another cause, another target, a prefix of the listed cause: not yet reported.
        assert!(!held_back_reported(&two, "remote", "connection refused"));
        assert!(!held_back_reported(
            &two,
            "third",
            "the hub Secret is missing"
        ));
        assert!(!held_back_reported(&two, "remote", "the hub Secret"));
        assert!(!held_back_reported(&two, "other", "writing Namespace e"));
        // Healthy, or no status at all: a new hold is reported.
        assert!(!held_back_reported(
            &with("True", "remote: the hub Secret is missing"),
            "remote",
            "the hub Secret is missing"
        ));
        let mut fresh = two.clone();
        fresh.status = None;
        assert!(!held_back_reported(
            &fresh,
            "other",
            "writing Namespace e failed; a; b"
        ));
    }

    #[test]
    fn objects_of_a_namesake_in_another_namespace_are_reported() {
        let app = obj(
            json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
            "metadata": {"name": "gw-app", "namespace": "argocd",
                "labels": {"experiments.illm.io/namespace": "team-b"}}}),
        );
        let mine = Owner {
            name: "gw",
            namespace: "team-a",
        };
        assert_eq!(
            foreign_owner(&app, mine).as_deref(),
            Some(
                "Application argocd/gw-app belongs to Experiment team-b/gw; Experiment names must be unique across namespaces"
            )
        );
        assert!(
            foreign_owner(
                &app,
                Owner {
                    name: "gw",
                    namespace: "team-b"
                }
            )
            .is_none()
        );
    }

    #[test]
    fn stuck_claims_are_recreated_only_when_configured_due_and_current() {
        let claim = |age_secs: i64, attempt: Option<&str>, deleting: bool| -> DynamicObject {
            let created = Timestamp::now() - jiff::SignedDuration::from_secs(age_secs);
            let mut meta = json!({"name": "gw-app", "namespace": "experiments",
                "creationTimestamp": created.to_string()});
            if let Some(a) = attempt {
                meta["annotations"] = json!({ANNOTATION_CLAIM_ATTEMPT: a});
            }
            if deleting {
                meta["deletionTimestamp"] = json!(Timestamp::now().to_string());
            }
            obj(json!({"apiVersion": "illm.io/v1alpha1", "kind": "GKECluster", "metadata": meta}))
        };
        let provisioning = || ClusterState::Provisioning {
            message: "creating".into(),
            remaining: Duration::from_mins(15),
        };
        let off = LabsConfig::default();
        let on = LabsConfig {
            stuck_claim_recreate_after: Some(Duration::from_mins(5)),
            max_claim_recreations: 2,
            ..LabsConfig::default()
        };
        let run = |c: &LabsConfig, claim: &DynamicObject, was_ready: bool, n: i64| {
            stuck_claim(c, claim, provisioning(), was_ready, n)
        };
        // Off by default.
        assert!(!run(&off, &claim(600, None, false), false, 0).1);
        // Due: the first claim, 10 minutes old.
        assert!(run(&on, &claim(600, None, false), false, 0).1);
        // Not due yet: the wake-up comes when it is.
        let (state, recreate) = run(&on, &claim(60, None, false), false, 0);
        assert!(!recreate);
        let ClusterState::Provisioning { remaining, .. } = state else {
            panic!("{state:?}");
        };
        assert!(remaining <= Duration::from_mins(4), "{remaining:?}");
        // Once Ready, never again.
        assert!(!run(&on, &claim(600, None, false), true, 0).1);
        // The second claim (attempt 2) after one recreation is due; a cache still showing the
        // first one (no attempt annotation) is not recreated twice.
        assert!(run(&on, &claim(600, Some("2"), false), false, 1).1);
        assert!(!run(&on, &claim(600, None, false), false, 1).1);
        // At most max_claim_recreations.
        assert!(!run(&on, &claim(600, Some("3"), false), false, 2).1);
        // A claim being deleted after a recreation says so and does not time out.
        let (state, recreate) = run(&on, &claim(6000, None, true), false, 1);
        assert!(!recreate);
        assert!(
            matches!(&state, ClusterState::Provisioning { message, .. } if message.contains("being deleted")),
            "{state:?}"
        );
    }

    #[test]
    fn fields_not_acted_on_are_named() {
        let exp = |yaml: &str| -> Experiment {
            serde_yaml::from_str(&format!(
                "apiVersion: experiments.illm.io/v1alpha1\nkind: Experiment\nmetadata: {{name: e}}\nspec:\n  targets: [{{name: a, cluster: {{type: hub}}, observability: {{enabled: true, transport: TRANSPORT}}}}]\n  workflow: {{template: t, completion: {{mode: workflow}}}}\n{yaml}"
            ).replace("TRANSPORT", if yaml.contains("tailscale") { "tailscale" } else { "direct" }))
            .unwrap()
        };
        // Informational fields and the CRD-defaulted ttlDays are not reported.
        assert_eq!(
            unsupported_fields(&exp(
                "  title: t\n  series: s\n  ttlDays: 1\n  tags: [a]\n  publish: false\n  metrics: []\n"
            )),
            None
        );
        let message = unsupported_fields(&exp(
            "  publish: true\n  metrics: [{name: m, query: up}]\n  qualityGate: {enabled: false}\n  hypothesis: {claim: c}\n  analyzerConfig: {sections: [body]}\n  codeSnippets: {x: {name: x, language: go, path: p}}\n# tailscale\n",
        ))
        .unwrap();
        for field in [
            "spec.publish",
            "spec.metrics",
            "spec.qualityGate",
            "spec.hypothesis",
            "spec.analyzerConfig",
            "spec.codeSnippets",
        ] {
            assert!(message.contains(field), "{field}: {message}");
        }
        // The Tailscale transport is acted on (the Tailscale operator on provisioned
        // targets), so it is not reported, on the hub either.
        assert!(!message.contains("transport"), "{message}");
    }

    #[test]
    fn tailscale_operator_goes_only_to_provisioned_tailscale_targets() {
        let target = |type_: &str, obs: &str| -> Target {
            serde_yaml::from_str(&format!("{{name: a, cluster: {{type: {type_}}}{obs}}}")).unwrap()
        };
        let tailscale = ", observability: {enabled: true, transport: tailscale}";
        assert!(build::wants_tailscale(&target("gke", tailscale)));
        assert!(build::wants_tailscale(&target("vcluster", tailscale)));
        // Upstream installed a second Tailscale operator on the hub.
        assert!(!build::wants_tailscale(&target("hub", tailscale)));
        assert!(!build::wants_tailscale(&target(
            "gke",
            ", observability: {enabled: true, transport: direct}"
        )));
        assert!(!build::wants_tailscale(&target(
            "gke",
            ", observability: {enabled: false, transport: tailscale}"
        )));
        assert!(!build::wants_tailscale(&target("gke", "")));
        let names = |tailscale: bool| -> Vec<String> {
            build::observability_refs("e", tailscale)
                .iter()
                .map(|r| components::ref_name(r, "").unwrap().to_owned())
                .collect()
        };
        assert_eq!(names(false), ["metrics-egress", "metrics-agent"]);
        assert_eq!(
            names(true),
            [
                "metrics-egress",
                "metrics-agent",
                build::TAILSCALE_COMPONENT
            ]
        );
        // No OAuth client in the Application's parameters (upstream put it there in clear).
        let refs = build::observability_refs("e", true);
        assert!(refs[2].params.is_none());
    }

    #[test]
    fn only_synced_and_healthy_applications_are_healthy() {
        let app = |health: &str, sync: &str| {
            obj(
                json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
                "metadata": {"name": "a"},
                "status": {"health": {"status": health}, "sync": {"status": sync}}}),
            )
        };
        assert_eq!(app_state(&app("Healthy", "Synced")), AppState::Healthy);
        // Upstream counted all of these as healthy.
        for (h, s) in [
            ("Degraded", "Synced"),
            ("Progressing", "Synced"),
            ("Healthy", "OutOfSync"),
            ("Healthy", "Unknown"),
        ] {
            assert_eq!(
                app_state(&app(h, s)),
                AppState::Progressing {
                    health: h.into(),
                    sync: s.into()
                }
            );
        }
    }

    fn claim(age_secs: i64, conditions: &Value, endpoint: Option<&str>) -> DynamicObject {
        let created = Timestamp::now() - jiff::SignedDuration::from_secs(age_secs);
        obj(
            json!({"apiVersion": "illm.io/v1alpha1", "kind": "GKECluster",
            "metadata": {"name": "gw-app", "namespace": "lab", "creationTimestamp": created.to_string()},
            "status": {"conditions": conditions, "endpoint": endpoint}}),
        )
    }

    #[test]
    fn claims_are_ready_provisioning_or_timed_out() {
        let timeout = Duration::from_mins(20);
        let ready = json!([{"type": "Ready", "status": "True"}]);
        assert_eq!(
            observe_claim(&claim(5, &ready, Some("10.0.0.1")), false, timeout),
            ClusterState::Ready {
                endpoint: "10.0.0.1".into()
            }
        );
        // Ready without an endpoint is not usable yet.
        assert!(matches!(
            observe_claim(&claim(5, &ready, None), false, timeout),
            ClusterState::Provisioning { .. }
        ));
        let failing = json!([
            {"type": "Synced", "status": "False", "message": "quota exceeded"},
            {"type": "Ready", "status": "False", "message": ""},
        ]);
        let ClusterState::Provisioning { message, remaining } =
            observe_claim(&claim(60, &failing, None), false, timeout)
        else {
            panic!("provisioning expected")
        };
        assert_eq!(message, "quota exceeded");
        assert!(remaining < timeout && remaining > Duration::from_mins(18));
        let ClusterState::Failed { message } =
            observe_claim(&claim(1300, &failing, None), false, timeout)
        else {
            panic!("failed expected")
        };
        assert_eq!(
            message,
            "claim gw-app not Ready after 20.0 minutes (provisioning timeout): quota exceeded"
        );
        // A cluster that was Ready once never times out later.
        assert!(matches!(
            observe_claim(&claim(1300, &failing, None), true, timeout),
            ClusterState::Provisioning { .. }
        ));
    }
}
