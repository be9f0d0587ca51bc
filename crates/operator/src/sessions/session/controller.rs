//! The `AgenticSession` reconcile: observe (caches) → validate → build → apply → status.
//!
//! Everything that decides lives in pure modules ([`super::state`], [`super::build`],
//! [`super::status`]); this module only reads the caches, calls the API for the chosen
//! effect and writes the status when it changed.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use agentic_api::sessions::{
    self as api, AgenticSession, DesiredPhase, SessionPhase, StoppedReason,
};
use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::{
    ByteString,
    api::{
        authentication::v1::{TokenRequest, TokenRequestSpec},
        batch::v1::Job,
        core::v1::{Namespace, Secret, ServiceAccount},
    },
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{DeleteParams, Patch, PatchParams, PostParams, PropagationPolicy},
    core::PartialObjectMeta,
    runtime::{
        controller::Action,
        events::{Event, EventType, Recorder},
        reflector::{ObjectRef, Store},
        watcher,
    },
};
use serde_json::{Value, json};

use super::{
    build::{self, RunInputs},
    cached::{CachedSession, JobEntry, PodEntry, RunnerJob, RunnerPod, TokenEntry, TokenSecret},
    config::{SessionConfig, TOKEN_REFRESH_AFTER, VERTEX_SECRET},
    error::SessionError,
    metrics::SessionMetrics,
    names,
    project::{CachedProject, SessionProject},
    recent::{CreatedJob, RecentWrites},
    rechecks::{self, Rechecks},
    state::{
        self, Blocked, Effect, JobView, Observed, PodView, REASON_RUNNER_SECRET_MISSING,
        REASON_VERTEX_SECRET_MISSING, Request, RunView, Transition,
    },
    status::{self, StatusInputs},
};
use crate::runtime::{
    ControllerTask, FamilyError, RuntimeContext, SharedWatches,
    ack::{self, Ack},
    compact::{Change, CompactStore},
    controller_task,
    events::REPORTING_CONTROLLER,
    watches::{CACHE_SYNC_RECHECK, synced},
};

/// Controller name (metric label, Event reporter, log field).
pub const CONTROLLER: &str = "agenticsession";
/// Label selector of the runner Job and pod watches.
pub const RUNNER_SELECTOR: &str = "app=ambient-code-runner";
/// Label selector of the runner-token Secret watch.
pub const TOKEN_SELECTOR: &str = "app=ambient-runner-token";
/// How often a session in a namespace without the managed label is looked at again.
const UNMANAGED_RECHECK: Duration = Duration::from_mins(1);
/// Key of the Kubernetes token in the runner-token Secret.
const TOKEN_KEY: &str = "k8s-token";
/// Key of the AG-UI token in the runner-token Secret.
const AGUI_TOKEN_KEY: &str = "agui-token";
/// How soon a reconcile that found the session cache behind the controller's own write looks
/// again (the watch event of that write normally wakes it sooner).
const CACHE_BEHIND_RECHECK: Duration = Duration::from_secs(1);
/// How long a Running session may go without being looked at.
const RUNNING_RECHECK: Duration = Duration::from_hours(1);

/// What every reconcile shares: the client, settings, caches, metrics and Event recorder.
pub struct Ctx {
    /// Kubernetes client.
    pub client: Client,
    /// Operator settings.
    pub config: SessionConfig,
    /// Runner Jobs (label-selected, compact).
    pub jobs: CompactStore<JobEntry>,
    /// Runner pods (label-selected, compact, indexed by session).
    pub pods: CompactStore<PodEntry>,
    /// Runner-token Secrets (label-selected, metadata only, compact).
    pub tokens: CompactStore<TokenEntry>,
    /// Managed namespaces (label-selected, metadata only).
    pub namespaces: Store<PartialObjectMeta<Namespace>>,
    /// `ProjectSettings`, as far as sessions read them (the inactivity timeout and MCP
    /// servers); one that does not read holds up only the sessions of its namespace.
    pub projects: Store<CachedProject>,
    /// Domain metrics.
    pub metrics: SessionMetrics,
    /// Event recorder, if Events are published.
    pub recorder: Option<Arc<Recorder>>,
    /// Where Events published without waiting run (the manager waits for them at shutdown).
    pub background: tokio_util::task::TaskTracker,
    /// The controller's own writes the caches may not show yet.
    pub recent: Arc<RecentWrites>,
    /// When each Running session is looked at next (one shared timer instead of a requeue
    /// per session).
    pub rechecks: Arc<Rechecks>,
    /// Running sessions (namespace, name) whose token Secret changed since they were last
    /// reconciled: their next reconcile reads the Secret and repairs its content.
    pub token_checks: Arc<TokenChecks>,
    /// The agent registry (runner types), read again at most once a minute.
    pub registry: Arc<super::registry::Registry>,
    /// The models manifest (Vertex AI model names), read again at most once a minute.
    pub models: Arc<super::models::Models>,
}

/// Sessions whose runner-token Secret changed and must be checked by their next reconcile.
#[derive(Debug, Default)]
pub struct TokenChecks(Mutex<HashSet<(String, String)>>);

impl TokenChecks {
    /// Marks session `name` in `ns` for a check.
    pub fn mark(&self, ns: &str, name: &str) {
        if let Ok(mut set) = self.0.lock() {
            set.insert((ns.to_owned(), name.to_owned()));
        }
    }

    /// Takes the mark of session `name` in `ns`; whether it was marked.
    pub fn take(&self, ns: &str, name: &str) -> bool {
        self.0
            .lock()
            .is_ok_and(|mut set| set.remove(&(ns.to_owned(), name.to_owned())))
    }
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Subscribes to the watches the session controller needs and builds it, with settings from
/// the process environment.
pub fn controllers(
    rt: &RuntimeContext,
    watches: &mut SharedWatches,
) -> Result<Vec<ControllerTask>, FamilyError> {
    let config = SessionConfig::from_lookup(
        &rt.settings.runner_image,
        &rt.settings.backend_namespace,
        |k| std::env::var(k).ok(),
    )?;
    controllers_with(rt, watches, config)
}

/// [`controllers`] with explicit settings (embedding and tests).
#[allow(clippy::too_many_lines)] // the watches and triggers of one controller, kept together
pub fn controllers_with(
    rt: &RuntimeContext,
    watches: &mut SharedWatches,
    config: SessionConfig,
) -> Result<Vec<ControllerTask>, FamilyError> {
    let client = rt.client.clone();
    let sessions = watches.subscribe(
        Api::<CachedSession>::all(client.clone()),
        watcher::Config::default(),
    )?;
    // Compact caches: a change (or deletion) of a runner Job, pod or token Secret also
    // wakes its session.
    let jobs = watches.compact::<JobEntry>(
        Api::<RunnerJob>::all(client.clone()),
        watcher::Config::default().labels(RUNNER_SELECTOR),
    )?;
    let pods = watches.compact::<PodEntry>(
        Api::<RunnerPod>::all(client.clone()),
        watcher::Config::default().labels(RUNNER_SELECTOR),
    )?;
    let namespaces = watches.subscribe(
        Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
        watcher::Config::default().labels(&format!("{}=true", api::LABEL_MANAGED_NAMESPACE)),
    )?;
    let tokens = watches.compact::<TokenEntry>(
        Api::<TokenSecret>::all(client.clone()),
        watcher::Config::default().labels(TOKEN_SELECTOR),
    )?;
    // `ambient-runner-secrets` appearing (or changing) in a namespace wakes the sessions
    // there that wait for it.
    let runner_secrets = if config.require_runner_secrets {
        Some(watches.subscribe(
            Api::<PartialObjectMeta<Secret>>::all(client.clone()),
            watcher::Config::default().fields(&format!("metadata.name={}", build::RUNNER_SECRETS)),
        )?)
    } else {
        None
    };
    // The Vertex AI source Secret appearing wakes the sessions waiting for it (the same watch
    // the refresher of its copies uses).
    let vertex_source = if config.vertex.is_some() {
        Some(watches.subscribe(
            Api::<Secret>::namespaced(client.clone(), &config.backend_namespace),
            watcher::Config::default().fields(&format!("metadata.name={VERTEX_SECRET}")),
        )?)
    } else {
        None
    };
    let projects = watches.store(
        Api::<CachedProject>::all(client.clone()),
        watcher::Config::default(),
    )?;
    let metrics = SessionMetrics::default();
    let recent = Arc::new(RecentWrites::default());
    let session_reader = sessions.reader.clone();
    let waiting_sessions = sessions.reader.clone();
    let token_sessions = sessions.reader.clone();
    let secret_sessions = sessions.reader.clone();
    let vertex_sessions = sessions.reader.clone();
    // A Job wakes the session that controls it; a deleted one also ends what the controller
    // remembers of creating it.
    let forget = recent.clone();
    let job_triggers = jobs.changes.filter_map(move |change: Change<JobEntry>| {
        let job = &change.object;
        if change.deleted
            && let Some(owner) = job.owner.as_deref()
        {
            forget.job_deleted(&change.namespace, owner, &job.uid);
        }
        futures::future::ready(
            job.owner
                .as_deref()
                .map(|owner| ObjectRef::new(owner).within(&change.namespace)),
        )
    });
    // A changed pod wakes its session. A deleted pod wakes only a session that waits for its
    // runner objects to go (a run being stopped or replaced). A running session learns of a
    // lost pod from its Job, whose status can reach the cache after the pod's deletion (a Job
    // past its deadline would otherwise be taken for a lost pod).
    let pod_triggers = pods.changes.filter_map(move |change: Change<PodEntry>| {
        let session = session_of(&change.namespace, &change.object).filter(|session| {
            !change.deleted
                || waiting_sessions.get(session).is_some_and(|s| {
                    matches!(
                        s.phase,
                        Some(SessionPhase::Pending | SessionPhase::Stopping)
                    )
                })
        });
        futures::future::ready(session)
    });
    // A changed or deleted token Secret of a Running session wakes it, marked for a check of
    // the Secret's content (a deleted one is missing from the cache, which the reconcile
    // repairs on its own; marked too, so a reconcile that still finds it reads it). A Secret
    // whose session is not cached yet is marked as well: after a restart the token Secrets
    // may be listed before the sessions, and every listed one must be checked once (it may
    // have changed while the operator was down), not only those whose session was listed
    // first. Its session's first reconcile takes the mark.
    let token_checks = Arc::new(TokenChecks::default());
    let marks = token_checks.clone();
    let token_triggers = tokens
        .changes
        .filter_map(move |change: Change<TokenEntry>| {
            let (session, check) = token_change_target(
                &token_sessions,
                &change.namespace,
                &change.object.name,
                change.deleted,
            );
            if let Some(name) = check {
                marks.mark(&change.namespace, name);
            }
            futures::future::ready(session)
        });
    rt.metrics
        .register(|r| metrics.register(r, Some(session_reader.clone())));
    let vertex_refresher = super::copied::refresher(rt, watches, &config)?;
    let rechecks = Arc::new(Rechecks::default());
    let recheck_wakeups = rechecks::wakeups(rechecks.clone(), rechecks::TICK);
    let registry = Arc::new(super::registry::Registry::new(
        config.agent_registry_path.clone(),
    ));
    let models = Arc::new(super::models::Models::new(
        config.models_manifest_path.clone(),
        super::registry::REFRESH,
    ));
    let ctx = Arc::new(Ctx {
        client,
        config,
        jobs: jobs.store,
        pods: pods.store,
        tokens: tokens.store,
        namespaces: namespaces.reader.clone(),
        projects,
        metrics,
        recorder: Some(rt.recorders.recorder(CONTROLLER)),
        background: rt.recorders.background(),
        recent,
        rechecks,
        token_checks,
        registry,
        models,
    });
    let task = controller_task(
        rt,
        CONTROLLER,
        sessions,
        move |c| {
            c.reconcile_on(recheck_wakeups)
                .reconcile_on(job_triggers)
                .reconcile_on(pod_triggers)
                .reconcile_on(token_triggers)
                .watches_shared_stream(
                    futures::stream::iter(runner_secrets.map(|w| w.stream)).flatten(),
                    move |secret: Arc<PartialObjectMeta<Secret>>| {
                        let ns = secret.namespace().unwrap_or_default();
                        waiting_for(&secret_sessions, Some(&ns), REASON_RUNNER_SECRET_MISSING)
                    },
                )
                .watches_shared_stream(
                    futures::stream::iter(vertex_source.map(|w| w.stream)).flatten(),
                    move |_: Arc<Secret>| {
                        waiting_for(&vertex_sessions, None, REASON_VERTEX_SECRET_MISSING)
                    },
                )
                .watches_shared_stream(
                    namespaces.stream,
                    move |ns: Arc<PartialObjectMeta<Namespace>>| {
                        let name = ns.name_any();
                        session_reader
                            .state_filter(|s| s.namespace().as_deref() == Some(name.as_str()))
                            .into_iter()
                            .map(|s| ObjectRef::from_obj(s.as_ref()))
                            .collect::<Vec<_>>()
                    },
                )
        },
        reconcile,
        ctx,
    );
    Ok(std::iter::once(task).chain(vertex_refresher).collect())
}

/// For a change of token Secret `secret` in `ns`: the session to wake (its session, if
/// `Running`) and the session to mark for a check of the Secret's content (a `Running` one,
/// or one not cached yet unless the Secret was deleted).
fn token_change_target<'a>(
    sessions: &Store<CachedSession>,
    ns: &str,
    secret: &'a str,
    deleted: bool,
) -> (Option<ObjectRef<CachedSession>>, Option<&'a str>) {
    let prefix = names::token_secret("");
    let Some(name) = secret.strip_prefix(prefix.as_str()) else {
        return (None, None);
    };
    let session = ObjectRef::new(name).within(ns);
    match sessions.get(&session).map(|s| s.phase) {
        Some(Some(SessionPhase::Running)) => (Some(session), Some(name)),
        None if !deleted => (None, Some(name)),
        _ => (None, None),
    }
}

/// The `Pending` sessions (in `ns`, or everywhere) whose `SecretsReady` condition says they
/// wait for a Secret for `reason`.
fn waiting_for(
    sessions: &Store<CachedSession>,
    ns: Option<&str>,
    reason: &str,
) -> Vec<ObjectRef<CachedSession>> {
    sessions
        .state_filter(|s| {
            s.phase == Some(SessionPhase::Pending)
                && ns.is_none_or(|ns| s.metadata.namespace.as_deref() == Some(ns))
        })
        .into_iter()
        .filter(|s| {
            s.session().is_ok_and(|session| {
                session
                    .status
                    .as_ref()
                    .and_then(|st| st.conditions.as_ref())
                    .is_some_and(|cs| {
                        cs.iter().any(|c| {
                            c.type_ == "SecretsReady" && c.status == "False" && c.reason == reason
                        })
                    })
            })
        })
        .map(|s| ObjectRef::from_obj(s.as_ref()))
        .collect()
}

/// The session a runner pod in `ns` belongs to (its `agentic-session` label).
fn session_of(ns: &str, pod: &PodEntry) -> Option<ObjectRef<CachedSession>> {
    Some(ObjectRef::new(pod.session.as_deref()?).within(ns))
}

/// Reconciles one session (the function the runtime calls).
pub async fn reconcile(cached: Arc<CachedSession>, ctx: Arc<Ctx>) -> Result<Action, SessionError> {
    let started = Instant::now();
    let phase = cached.phase.unwrap_or_default();
    let session = cached.session().map_err(|source| SessionError::Decode {
        name: cached.name_any(),
        source,
    });
    let result = match session {
        Ok(session) => {
            let result = reconcile_session(&session, &ctx).await;
            if let (Err(error @ SessionError::ProjectSettings { .. }), Some(recorder)) =
                (&result, &ctx.recorder)
            {
                crate::runtime::events::warning(
                    recorder,
                    "InvalidProjectSettings",
                    error,
                    &cached.object_ref(&()),
                )
                .await;
            }
            result
        }
        Err(error) => {
            if let Some(recorder) = &ctx.recorder {
                crate::runtime::events::invalid_object(recorder, &error, &cached.object_ref(&()))
                    .await;
            }
            Err(error)
        }
    };
    ctx.metrics
        .reconciled(phase, result.is_ok(), started.elapsed());
    if let Err(error) = &result {
        use crate::runtime::ReconcileError;
        ctx.metrics.error(
            &cached.namespace().unwrap_or_default(),
            phase,
            error.reason(),
        );
    }
    result
}

fn annotation<'a>(session: &'a AgenticSession, key: &str) -> Option<&'a str> {
    session.annotations().get(key).map(String::as_str)
}

/// What is wrong with a desired-phase annotation that names no phase, naming the annotation
/// and the allowed values (the Event's note and the admission webhook's denial).
pub fn invalid_desired_phase(error: &agentic_api::UnknownValue) -> String {
    format!(
        "metadata.annotations[{}]: unknown value {:?}; allowed: {}",
        error.field,
        error.value,
        error.allowed.join(", ")
    )
}

/// The start/stop request of the desired-phase annotation, and its `*-requested-at` value.
pub fn request(session: &AgenticSession) -> (Option<Request>, Option<String>) {
    let acted_on = session
        .status
        .as_ref()
        .and_then(|s| s.observed_desired_phase_at.as_deref());
    let (at_key, request) = match session.desired_phase() {
        // An unknown value is reported by the reconcile (`InvalidDesiredPhase`).
        None | Some(Err(_)) => return (None, None),
        Some(Ok(DesiredPhase::Running)) => (api::ANNOTATION_START_REQUESTED_AT, Request::Start),
        Some(Ok(DesiredPhase::Stopped)) => {
            let reason = if annotation(session, api::ANNOTATION_STOP_REASON) == Some("inactivity") {
                StoppedReason::Inactivity
            } else {
                StoppedReason::User
            };
            (api::ANNOTATION_STOP_REQUESTED_AT, Request::Stop(reason))
        }
    };
    let at = annotation(session, at_key).map(str::to_owned);
    if at.is_some() && at.as_deref() == acted_on {
        return (Some(Request::Stale), at);
    }
    (Some(request), at)
}

/// How a runner Job ended, or that it is still active, by its `Complete`/`Failed` conditions
/// or the `SuccessCriteriaMet`/`FailureTarget` ones a Job controller (Kubernetes 1.31 and
/// later) writes before it terminates the remaining pods.
pub fn job_view(job: &RunnerJob) -> JobView {
    let conditions = job
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .map(Vec::as_slice)
        .unwrap_or_default();
    for c in conditions {
        if c.status != "True" {
            continue;
        }
        match c.type_.as_str() {
            "Complete" | "SuccessCriteriaMet" => return JobView::Complete,
            "Failed" | "FailureTarget" => {
                return JobView::Failed {
                    reason: c.reason.clone().unwrap_or_default(),
                    message: c.message.clone().unwrap_or_default(),
                };
            }
            _ => {}
        }
    }
    JobView::Active
}

/// What the runner pod shows, judged by the `ambient-code-runner` container.
pub fn pod_view(pod: Option<&RunnerPod>) -> PodView {
    let Some(pod) = pod else {
        return PodView::Missing;
    };
    if pod.metadata.deletion_timestamp.is_some() {
        return PodView::Missing;
    }
    let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
    let status = pod.status.clone().unwrap_or_default();
    let runner = status
        .container_statuses
        .as_ref()
        .and_then(|cs| cs.iter().find(|c| c.name == api::RUNNER_CONTAINER));
    if let Some(runner) = runner {
        let terminated = runner
            .state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .or_else(|| {
                (runner.restart_count > 0)
                    .then(|| {
                        runner
                            .last_state
                            .as_ref()
                            .and_then(|s| s.terminated.as_ref())
                    })
                    .flatten()
            });
        if let Some(t) = terminated {
            return PodView::Terminated {
                exit_code: t.exit_code,
                reason: t.reason.clone().unwrap_or_default(),
                message: t.message.clone().unwrap_or_default(),
            };
        }
        if runner.state.as_ref().is_some_and(|s| s.running.is_some()) {
            return PodView::Running { node };
        }
    }
    if status.phase.as_deref() == Some("Failed") {
        let init_failure = status
            .init_container_statuses
            .iter()
            .flatten()
            .find_map(|c| {
                let t = c.state.as_ref()?.terminated.as_ref()?;
                (t.exit_code != 0)
                    .then(|| format!("init container {} exited with code {}", c.name, t.exit_code))
            });
        return PodView::Failed {
            reason: status.reason.clone().unwrap_or_else(|| "PodFailed".into()),
            message: init_failure
                .or_else(|| status.message.clone())
                .unwrap_or_else(|| "the runner pod failed".into()),
        };
    }
    let unschedulable = status.conditions.iter().flatten().find_map(|c| {
        (c.type_ == "PodScheduled" && c.status == "False")
            .then(|| c.message.clone().unwrap_or_else(|| "Unschedulable".into()))
    });
    let waiting = runner
        .and_then(|r| r.state.as_ref())
        .and_then(|s| s.waiting.as_ref());
    PodView::Waiting {
        node,
        unschedulable,
        reason: waiting.and_then(|w| w.reason.clone()),
        message: waiting.and_then(|w| w.message.clone()),
    }
}

/// Classifies the runner objects of `name` in `ns` against the current run `run_id`; `pods`
/// are the session's runner pods (others are ignored).
///
/// A Job the controller created for `run_id` (remembered in `recent`) counts as the current,
/// active Job while the Job cache does not show it yet: a cache behind the controller's own
/// write must not make the run look lost.
///
/// An active Job past its `activeDeadlineSeconds` (at `now`) whose pod is gone counts as failed
/// with `DeadlineExceeded`: a Job controller deletes the pods of such a Job before (or while)
/// it records the failure, and the pod watch may show the deletion first. Read as a lost pod,
/// that would start the run over with a fresh deadline, again and again.
pub fn observe_run(
    jobs: &CompactStore<JobEntry>,
    pods: &[Arc<PodEntry>],
    recent: &RecentWrites,
    key: (&str, &str),
    run_id: Option<&str>,
    now: Timestamp,
) -> RunView {
    let (ns, name) = key;
    let job = jobs.get(ns, &names::job(name));
    let current = job
        .as_ref()
        .filter(|j| !j.deleting && run_id.is_some() && j.run_id.as_deref() == run_id);
    let created = run_id.and_then(|run| {
        let cached_uid = job.as_ref().map(|j| &*j.uid).filter(|uid| !uid.is_empty());
        recent.created_job(ns, name, run, cached_uid)
    });
    let current = match (current, created) {
        (Some(job), _) => Some((job.uid.to_string(), job.view.clone(), job.deadline)),
        (None, Some(created)) => Some((created.uid, JobView::Active, None)),
        (None, None) => None,
    };
    let mut pods = pods.iter().filter(|p| p.session.as_deref() == Some(name));
    if let Some((uid, mut job, deadline)) = current {
        let owned: Vec<&PodEntry> = pods
            .filter(|p| p.owners.iter().any(|o| **o == *uid))
            .map(Arc::as_ref)
            .collect();
        let entry = owned
            .iter()
            .copied()
            .find(|p| !p.deleting)
            .or_else(|| owned.first().copied());
        let pod = entry.map_or(PodView::Missing, |p| p.view.clone());
        if job == JobView::Active && pod == PodView::Missing && deadline.is_some_and(|d| now >= d) {
            job = JobView::Failed {
                reason: "DeadlineExceeded".into(),
                message: "the runner Job was active longer than its activeDeadlineSeconds".into(),
            };
        }
        return RunView::Current {
            job,
            pod,
            pod_uid: entry
                .map(|p| p.uid.to_string())
                .filter(|uid| !uid.is_empty()),
        };
    }
    if job.is_some() || pods.next().is_some() {
        RunView::Leftover
    } else {
        RunView::Nothing
    }
}

/// The effective inactivity timeout in seconds: `spec.inactivityTimeout`, else the project's
/// `inactivityTimeoutSeconds`, else `DEFAULT_INACTIVITY_TIMEOUT`; 0 disables the idler.
pub fn inactivity_timeout(
    session: &AgenticSession,
    project: Option<&SessionProject>,
    default: i64,
) -> i64 {
    session
        .spec
        .inactivity_timeout
        .or_else(|| project.and_then(|p| p.spec.inactivity_timeout_seconds))
        .unwrap_or(default)
}

/// When a Running session becomes idle, if the idler is on: last activity (else start time,
/// else creation) plus the timeout.
pub fn idle_deadline(session: &AgenticSession, timeout: i64) -> Option<Timestamp> {
    if timeout <= 0 {
        return None;
    }
    let status = session.status.as_ref();
    let last = status
        .and_then(|s| s.last_activity_time.clone())
        .or_else(|| status.and_then(|s| s.start_time.clone()))
        .or_else(|| session.metadata.creation_timestamp.clone())?;
    Timestamp::from_second(last.0.as_second().saturating_add(timeout)).ok()
}

/// `key` of `secret` as text (`data`, else `stringData`), when set and not empty.
fn secret_text(secret: &Secret, key: &str) -> Option<String> {
    crate::runtime::secrets::text(secret, key).filter(|v| !v.trim().is_empty())
}

/// How long a runner token stamped `refreshed_at` (RFC 3339) stays fresh at `now`; `None`
/// when it is due for a refresh (older than [`TOKEN_REFRESH_AFTER`], or the stamp is missing
/// or unreadable).
pub fn token_fresh_for(refreshed_at: Option<&str>, now: Timestamp) -> Option<Duration> {
    let at = refreshed_at?.parse::<Timestamp>().ok()?;
    let max_age = i64::try_from(TOKEN_REFRESH_AFTER.as_secs()).unwrap_or(i64::MAX);
    let due = at.as_second().saturating_add(max_age);
    (due > now.as_second())
        .then(|| Duration::from_secs(u64::try_from(due - now.as_second()).unwrap_or(1)))
}

/// The run a status names: its `startTime` as the Job's `run-started-at` annotation carries it.
fn run_id(status: Option<&api::AgenticSessionStatus>) -> Option<String> {
    let start = status?.start_time.as_ref()?;
    serde_json::to_value(start)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
}

fn until(now: Timestamp, at: Timestamp) -> Duration {
    let secs = at.as_second().saturating_sub(now.as_second()).max(1);
    Duration::from_secs(u64::try_from(secs).unwrap_or(1))
}

fn apply_params() -> PatchParams {
    PatchParams::apply(REPORTING_CONTROLLER).force()
}

/// Server-side applies `object` in `ns`; the answer is read only for its identity.
async fn apply<K>(client: &Client, ns: &str, object: &K, what: &str) -> Result<Ack, SessionError>
where
    K: Resource<DynamicType = ()> + serde::Serialize + std::fmt::Debug,
{
    let name = object.meta().name.clone().unwrap_or_default();
    ack::patch::<K, _>(client, ns, &name, &apply_params(), &Patch::Apply(object))
        .await
        .map_err(|e| SessionError::kube(format!("apply {what} {name}"), e))
}

fn ignore_status(result: Result<(), kube::Error>, code: u16) -> Result<(), kube::Error> {
    match result {
        Err(kube::Error::Api(s)) if s.code == code => Ok(()),
        other => other,
    }
}

struct Reconciler<'a> {
    session: &'a AgenticSession,
    ctx: &'a Ctx,
    ns: String,
    name: String,
    now: Timestamp,
}

impl Ctx {
    /// Whether every cache the decisions read has finished its initial list. Until then an
    /// empty cache would look like missing runners (and restart running sessions).
    pub fn caches_synced(&self) -> bool {
        self.jobs.is_ready()
            && self.pods.is_ready()
            && self.tokens.is_ready()
            && synced(&self.namespaces)
            && synced(&self.projects)
    }
}

async fn reconcile_session(session: &AgenticSession, ctx: &Ctx) -> Result<Action, SessionError> {
    if !ctx.caches_synced() {
        return Ok(Action::requeue(CACHE_SYNC_RECHECK));
    }
    let ns = session.namespace().ok_or(SessionError::NoNamespace)?;
    if session.metadata.deletion_timestamp.is_some() {
        // Owner references remove every child.
        return Ok(Action::await_change());
    }
    let name = session.name_any();
    if ctx
        .recent
        .session_behind(&ns, &name, session.metadata.resource_version.as_deref())
    {
        // The cache still holds a version this controller replaced; deciding from it would
        // undo that write. The watch event of the write comes next.
        tracing::debug!("the session cache is behind this controller's own write; waiting");
        return Ok(Action::requeue(CACHE_BEHIND_RECHECK));
    }
    if ctx.namespaces.get(&ObjectRef::new(&ns)).is_none() {
        tracing::debug!(namespace = %ns, "namespace is not labelled {}=true; skipping", api::LABEL_MANAGED_NAMESPACE);
        return Ok(Action::requeue(UNMANAGED_RECHECK));
    }
    let r = Reconciler {
        session,
        ctx,
        ns,
        name,
        now: status::truncate(Timestamp::now()),
    };
    r.run().await
}

impl Reconciler<'_> {
    fn status(&self) -> Option<&api::AgenticSessionStatus> {
        self.session.status.as_ref()
    }

    fn run_id(&self) -> Option<String> {
        run_id(self.status())
    }

    /// The cached runner pods of this session.
    fn session_pods(&self) -> Vec<Arc<PodEntry>> {
        self.ctx.pods.group(&self.ns, &self.name)
    }

    /// The namespace's `ProjectSettings`, if there is one; an error when it does not read.
    fn project(&self) -> Result<Option<Arc<SessionProject>>, SessionError> {
        let Some(cached) = self
            .ctx
            .projects
            .get(&ObjectRef::new(api::PROJECT_SETTINGS_NAME).within(&self.ns))
        else {
            return Ok(None);
        };
        match &cached.object {
            Ok(project) => Ok(Some(project.clone())),
            Err(reason) => Err(SessionError::ProjectSettings {
                namespace: self.ns.clone(),
                reason: reason.to_string(),
            }),
        }
    }

    async fn run(&self) -> Result<Action, SessionError> {
        let from = self.status().and_then(|s| s.phase);
        let (request, requested_at) = request(self.session);
        if let Some(Err(error)) = self.session.desired_phase() {
            self.report_invalid_request(&error).await;
        }
        let run = observe_run(
            &self.ctx.jobs,
            &self.session_pods(),
            &self.ctx.recent,
            (&self.ns, &self.name),
            self.run_id().as_deref(),
            self.now,
        );
        // Only a running session reads the project's timeout, so a ProjectSettings that does
        // not read cannot fail sessions that have finished.
        let idle_at = if from == Some(SessionPhase::Running) {
            let timeout = inactivity_timeout(
                self.session,
                self.project()?.as_deref(),
                self.ctx.config.default_inactivity_timeout,
            );
            idle_deadline(self.session, timeout)
        } else {
            None
        };
        let mut observed = Observed {
            request,
            invalid: names::check(&self.name).err(),
            run,
            recorded_pod_uid: self.status().and_then(|s| s.runner_pod_uid.clone()),
            idle: idle_at.is_some_and(|at| self.now >= at),
            blocked: None,
            stopped_reason: self.status().and_then(|s| s.stopped_reason),
        };
        if from == Some(SessionPhase::Pending) {
            observed.blocked = self.blocked(&observed).await?;
        }
        let inputs = StatusInputs {
            now: self.now,
            generation: self.session.metadata.generation,
            requested_at,
        };
        let mut t = state::next(from, &observed);
        let mut desired = status::desired(self.status(), &t, &observed, &inputs);
        let mut steps = vec![(from, t.clone())];
        if from.is_none() && t.to == SessionPhase::Pending && t.effect == Effect::None {
            // A new session is accepted and, from the same observation, started in one
            // reconcile: one status write instead of two.
            observed.blocked = self.blocked(&observed).await?;
            let second = state::next(Some(SessionPhase::Pending), &observed);
            desired = status::desired(Some(&desired), &second, &observed, &inputs);
            steps.push((Some(SessionPhase::Pending), second.clone()));
            t = Transition {
                new_run: t.new_run || second.new_run,
                acknowledge: t.acknowledge || second.acknowledge,
                ..second
            };
        }

        // A run starts before the status records it (the status names the Job it created),
        // but is deleted only after the status records why: a Completed or Failed run whose
        // status write failed must still be there for the retry to read its outcome. Deleted
        // first, the retry would find a Running session without its runner, take the pod as
        // lost and start a new run.
        // A delete that fails after the write is retried by the new phase's own cleanup.
        let mut token_annotations = false;
        if t.effect == Effect::StartRun
            && let Some(run_id) = run_id(Some(&desired))
        {
            token_annotations = self.start_run(run_id).await?;
        }

        let patch = status::merge_patch(self.status(), &desired).map_err(|source| {
            SessionError::Serialize {
                what: "status",
                source,
            }
        })?;
        let mut resource_version = self.session.resource_version();
        if let Some(patch) = patch {
            let written = self.patch_status(patch).await?;
            resource_version = written.metadata.resource_version;
            for (from, step) in &steps {
                self.record_transition(*from, step);
            }
        }
        self.patch_annotations(&t, token_annotations, resource_version)
            .await?;
        if t.effect == Effect::DeleteRun {
            self.delete_run().await?;
        }
        self.record_blocked(&t);

        self.next_check(t.to, idle_at).await
    }

    /// When to look at the session again, in phase `to`. Changes of the runner Job and pod,
    /// including their deletion, wake the session; the recheck is only a safety net. A
    /// Running session's next check (the earliest of the safety net, the inactivity deadline
    /// `idle_at`, the runner spec refresh and the token refresh) goes to the shared
    /// [`Rechecks`] timer.
    async fn next_check(
        &self,
        to: SessionPhase,
        idle_at: Option<Timestamp>,
    ) -> Result<Action, SessionError> {
        let mut next_check = match to {
            SessionPhase::Running => Some(RUNNING_RECHECK),
            p if p.is_terminal() => None,
            _ => Some(self.ctx.config.waiting_recheck),
        };
        if to == SessionPhase::Running {
            if let Some(at) = idle_at {
                next_check = next_check.map(|d| d.min(until(self.now, at)));
            }
            let address = super::live::runner_address(self.session);
            if let Some(due) =
                super::live::ensure_runner_spec(&self.ctx.client, self.session, &address, self.now)
                    .await?
            {
                next_check = next_check.map(|d| d.min(due));
            }
            if let Some(due) = self.refresh_token_if_due().await? {
                next_check = next_check.map(|d| d.min(due));
            }
            if let Some(after) = next_check {
                self.ctx
                    .rechecks
                    .schedule(&self.ns, &self.name, Instant::now() + after);
            }
            return Ok(Action::await_change());
        }
        self.ctx.rechecks.cancel(&self.ns, &self.name);
        Ok(next_check.map_or_else(Action::await_change, Action::requeue))
    }

    /// In `Pending`: why the runner cannot start yet, if a start is what comes next.
    async fn blocked(&self, observed: &Observed) -> Result<Option<Blocked>, SessionError> {
        if observed.run == RunView::Leftover
            || observed.invalid.is_some()
            || matches!(observed.request, Some(Request::Stop(_)))
        {
            return Ok(None);
        }
        if self.ctx.config.require_runner_secrets
            && !self.secret_exists(&self.ns, build::RUNNER_SECRETS).await?
        {
            return Ok(Some(Blocked {
                reason: REASON_RUNNER_SECRET_MISSING,
                message: format!(
                    "Secret {}/{} with the runner's API keys does not exist",
                    self.ns,
                    build::RUNNER_SECRETS
                ),
            }));
        }
        let backend = &self.ctx.config.backend_namespace;
        if self.ctx.config.vertex.is_some() && !self.secret_exists(backend, VERTEX_SECRET).await? {
            return Ok(Some(Blocked {
                reason: REASON_VERTEX_SECRET_MISSING,
                message: format!(
                    "Secret {backend}/{VERTEX_SECRET} with the Google Cloud credentials of \
                     Vertex AI mode does not exist"
                ),
            }));
        }
        Ok(None)
    }

    /// The runner type this run is built with, from the agent registry. A type the registry
    /// does not list runs the built-in runner, and registry values that cannot be used are
    /// left out; both are published as a Warning Event `RunnerTypeProblem` naming the field.
    async fn runner_profile(&self) -> super::registry::RunnerProfile {
        use super::registry::{self, Resolution};
        let wanted =
            registry::runner_type(self.session.spec.environment_variables.as_ref()).to_owned();
        let resolution = self.ctx.registry.resolve(&wanted);
        let profile = resolution.profile();
        let mut problems = match &resolution {
            Resolution::Unknown(known) => vec![format!(
                "spec.environmentVariables.RUNNER_TYPE: runner type {wanted:?} is not in the agent registry {}; the built-in runner is used; allowed: {}",
                self.ctx.config.agent_registry_path,
                known.join(", ")
            )],
            Resolution::Found(_) | Resolution::NoRegistry => Vec::new(),
        };
        problems.extend(profile.problems.iter().cloned());
        problems.extend(profile.resources(&self.ctx.config.runner_resources).1);
        if !problems.is_empty() {
            let note = problems.join("; ");
            tracing::warn!(namespace = %self.ns, session = %self.name, "{note}");
            if let Some(recorder) = self.ctx.recorder.as_deref() {
                super::copied::warn_session(
                    recorder,
                    self.session,
                    registry::REASON_RUNNER_TYPE_PROBLEM,
                    note,
                    "ResolveRunnerType",
                )
                .await;
            }
        }
        profile
    }

    /// Where the run's state sync finds S3: the project's own storage when its
    /// `ambient-non-vertex-integrations` says `STORAGE_MODE: custom`, else the shared one with
    /// the key pair of `minio-credentials` in the backend's namespace when that exists (both
    /// read when a run starts, so a change applies from the next run).
    async fn storage(&self) -> Result<build::Storage, SessionError> {
        let integrations = self
            .read_secret(&self.ns, build::INTEGRATION_SECRETS)
            .await?;
        let mode = integrations
            .as_ref()
            .and_then(|s| secret_text(s, build::STORAGE_MODE_KEY));
        if build::is_custom_storage(mode.as_deref()) {
            return Ok(build::Storage::Custom);
        }
        let backend = &self.ctx.config.backend_namespace;
        let shared = self.read_secret(backend, build::MINIO_SECRET).await?;
        let credentials = shared.as_ref().and_then(|s| {
            Some(build::S3Credentials {
                access_key: secret_text(s, "access-key")?,
                secret_key: secret_text(s, "secret-key")?,
            })
        });
        Ok(credentials.map_or(build::Storage::Shared, build::Storage::SharedWith))
    }

    async fn read_secret(&self, ns: &str, name: &str) -> Result<Option<Secret>, SessionError> {
        Api::<Secret>::namespaced(self.ctx.client.clone(), ns)
            .get_opt(name)
            .await
            .map_err(|e| SessionError::kube(format!("get Secret {ns}/{name}"), e))
    }

    async fn secret_exists(&self, ns: &str, name: &str) -> Result<bool, SessionError> {
        let api: Api<PartialObjectMeta<Secret>> = Api::namespaced(self.ctx.client.clone(), ns);
        api.get_metadata_opt(name)
            .await
            .map(|found| found.is_some())
            .map_err(|e| SessionError::kube(format!("get Secret {ns}/{name}"), e))
    }

    /// Provisions credentials if needed and creates the Job and Service of run `run_id`.
    /// Returns whether the session's token annotations must be written.
    async fn start_run(&self, run_id: String) -> Result<bool, SessionError> {
        let token_name = names::token_secret(&self.name);
        let has_token = self.ctx.tokens.get(&self.ns, &token_name).is_some();
        if has_token {
            // A resumed run: its init container reads the token once, at start, so a token
            // that aged while the session was stopped is renewed before the Job exists.
            self.refresh_token_if_due().await?;
        } else {
            let started = Instant::now();
            self.provision_credentials().await?;
            self.ctx
                .metrics
                .token_provisioned(&self.ns, started.elapsed());
        }
        let started = Instant::now();
        let job_name = names::job(&self.name);
        let cached = self.ctx.jobs.get(&self.ns, &job_name);
        let cached_uid = cached
            .as_ref()
            .map(|j| j.uid.to_string())
            .filter(|uid| !uid.is_empty());
        let existing_uid = cached
            .filter(|j| j.run_id.as_deref() == Some(run_id.as_str()))
            .map(|j| j.uid.to_string())
            .or_else(|| {
                // Created by an earlier attempt of this start that failed later on.
                self.ctx
                    .recent
                    .created_job(&self.ns, &self.name, &run_id, cached_uid.as_deref())
                    .map(|c| c.uid)
            });
        let uid = if let Some(uid) = existing_uid {
            Some(uid)
        } else {
            let project = self.project()?;
            let storage = self.storage().await?;
            let runner = self.runner_profile().await;
            let inputs = RunInputs {
                config: &self.ctx.config,
                run_id: run_id.clone(),
                resume: self.status().is_some_and(|s| s.runner_started_at.is_some()),
                project_mcp: project.as_ref().and_then(|p| p.spec.mcp_servers.as_ref()),
                storage,
                runner,
                model_vertex_id: self.ctx.models.vertex_id(&build::model(self.session)),
            };
            let job = build::job(self.session, &inputs);
            let job = super::extras::ensure_run_extras(
                &self.ctx.client,
                self.session,
                &self.ctx.config,
                self.ctx.recorder.as_deref(),
                job,
            )
            .await?;
            let created = apply(&self.ctx.client, &self.ns, &job, "Job").await?;
            if let Some(uid) = created.metadata.uid.clone() {
                self.ctx
                    .recent
                    .job_created(&self.ns, &self.name, CreatedJob { run_id, uid });
            }
            created.metadata.uid
        };
        let owner = build::job_owner(&Job {
            metadata: ObjectMeta {
                name: Some(job_name),
                uid,
                ..ObjectMeta::default()
            },
            ..Job::default()
        });
        let service = build::service(self.session, owner);
        let created =
            ack::create(&self.ctx.client, &self.ns, &PostParams::default(), &service).await;
        ignore_status(created.map(drop), 409).map_err(|e| {
            SessionError::kube(format!("create Service {}", names::service(&self.name)), e)
        })?;
        self.ctx.metrics.pod_created(&self.ns, started.elapsed());
        Ok(true)
    }

    async fn provision_credentials(&self) -> Result<(), SessionError> {
        let (client, ns) = (&self.ctx.client, self.ns.as_str());
        let (account, role, binding) = (
            build::service_account(self.session),
            build::role(self.session),
            build::role_binding(self.session),
        );
        // The account and the Role are written at once; the binding after the Role. The
        // operator may grant only what it holds, so the API server resolves the Role a binding
        // names (the operator has no `bind` on Roles) and answers 404 while it does not exist:
        // written together, the binding could lose that race and fail the whole start.
        futures::try_join!(
            apply(client, ns, &account, "ServiceAccount"),
            apply(client, ns, &role, "Role"),
        )?;
        apply(client, ns, &binding, "RoleBinding").await?;
        let token = self.request_token().await?;
        let agui = format!("{:032x}", rand::random::<u128>());
        let secret = build::token_secret(self.session, &token, &agui, &self.now.to_string());
        let created = ack::create(client, ns, &PostParams::default(), &secret).await;
        ignore_status(created.map(drop), 409).map_err(|e| {
            SessionError::kube(
                format!("create Secret {}", names::token_secret(&self.name)),
                e,
            )
        })
    }

    async fn request_token(&self) -> Result<String, SessionError> {
        let sa = names::service_account(&self.name);
        let api: Api<ServiceAccount> = Api::namespaced(self.ctx.client.clone(), &self.ns);
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: Vec::new(),
                ..TokenRequestSpec::default()
            },
            ..TokenRequest::default()
        };
        let answer = api
            .create_token_request(&sa, &PostParams::default(), &request)
            .await
            .map_err(|e| SessionError::kube(format!("TokenRequest for ServiceAccount {sa}"), e))?;
        answer
            .status
            .map(|s| s.token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| SessionError::EmptyToken {
                namespace: self.ns.clone(),
                name: sa,
            })
    }

    /// Keeps the runner token Secret usable while the session runs: recreates it when it is
    /// gone, refills it when a change left a token empty (checked only after the Secret
    /// changed), and refreshes the token when it is older than [`TOKEN_REFRESH_AFTER`].
    /// Returns when to look again.
    async fn refresh_token_if_due(&self) -> Result<Option<Duration>, SessionError> {
        let name = names::token_secret(&self.name);
        let Some(secret) = self.ctx.tokens.get(&self.ns, &name) else {
            tracing::info!(secret = %name, "the runner token Secret is missing; recreating it");
            self.provision_credentials().await?;
            return Ok(Some(TOKEN_REFRESH_AFTER));
        };
        let mut missing_agui = false;
        let mut emptied = false;
        if self.ctx.token_checks.take(&self.ns, &self.name) {
            let secrets: Api<Secret> = Api::namespaced(self.ctx.client.clone(), &self.ns);
            let live = match secrets.get_opt(&name).await {
                Ok(live) => live,
                Err(e) => {
                    self.ctx.token_checks.mark(&self.ns, &self.name);
                    return Err(SessionError::kube(
                        format!("get Secret {}/{name}", self.ns),
                        e,
                    ));
                }
            };
            let Some(live) = live else {
                tracing::info!(secret = %name, "the runner token Secret is gone; recreating it");
                self.provision_credentials().await?;
                return Ok(Some(TOKEN_REFRESH_AFTER));
            };
            let empty = |key: &str| {
                live.data
                    .as_ref()
                    .and_then(|d| d.get(key))
                    .is_none_or(|v| v.0.is_empty())
            };
            emptied = empty(TOKEN_KEY);
            missing_agui = empty(AGUI_TOKEN_KEY);
        }
        if !emptied && !missing_agui {
            if let Some(wait) = token_fresh_for(secret.refreshed_at.as_deref(), self.now) {
                return Ok(Some(wait));
            }
        } else {
            tracing::info!(secret = %name, "the runner token Secret lost a token; refilling it");
        }
        let token = self.request_token().await?;
        let mut data = serde_json::Map::new();
        data.insert(TOKEN_KEY.to_owned(), json!(ByteString(token.into_bytes())));
        if missing_agui {
            // The running runner keeps the value it started with; the next run uses this one.
            let agui = format!("{:032x}", rand::random::<u128>());
            data.insert(
                AGUI_TOKEN_KEY.to_owned(),
                json!(ByteString(agui.into_bytes())),
            );
        }
        let patch = json!({
            "metadata": {"annotations": {api::ANNOTATION_TOKEN_REFRESHED_AT: self.now.to_string()}},
            "data": data,
        });
        let secrets: Api<Secret> = Api::namespaced(self.ctx.client.clone(), &self.ns);
        secrets
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| SessionError::kube(format!("refresh token in Secret {name}"), e))?;
        Ok(Some(TOKEN_REFRESH_AFTER))
    }

    async fn delete_run(&self) -> Result<(), SessionError> {
        super::extras::release_run_extras(&self.ctx.client, self.session, &self.ctx.config).await?;
        let job_name = names::job(&self.name);
        let job = self.ctx.jobs.get(&self.ns, &job_name);
        let background = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            ..DeleteParams::default()
        };
        if let Some(job) = job {
            if !job.deleting {
                let jobs: Api<Job> = Api::namespaced(self.ctx.client.clone(), &self.ns);
                let deleted = jobs.delete(&job_name, &background).await.map(drop);
                ignore_status(deleted, 404)
                    .map_err(|e| SessionError::kube(format!("delete Job {job_name}"), e))?;
            }
            return Ok(());
        }
        let mut strays = self.session_pods();
        strays.retain(|p| !p.deleting);
        let pods: Api<k8s_openapi::api::core::v1::Pod> =
            Api::namespaced(self.ctx.client.clone(), &self.ns);
        for pod in strays {
            let name = &pod.name;
            let deleted = pods.delete(name, &DeleteParams::default()).await.map(drop);
            ignore_status(deleted, 404)
                .map_err(|e| SessionError::kube(format!("delete Pod {name}"), e))?;
        }
        Ok(())
    }

    async fn patch_status(&self, patch: Value) -> Result<Ack, SessionError> {
        // The resourceVersion makes the write conditional: a reconcile working from a stale
        // cache gets a conflict and retries instead of recording a transition twice.
        let body = json!({
            "metadata": {"resourceVersion": self.session.resource_version()},
            "status": patch,
        });
        let written = ack::patch_status::<AgenticSession, _>(
            &self.ctx.client,
            &self.ns,
            &self.name,
            &PatchParams::default(),
            &Patch::Merge(&body),
        )
        .await
        .map_err(|e| SessionError::kube(format!("patch status of {}/{}", self.ns, self.name), e))?;
        self.ctx.recent.session_written(
            &self.ns,
            &self.name,
            self.session.metadata.resource_version.as_deref(),
        );
        Ok(written)
    }

    async fn patch_annotations(
        &self,
        t: &Transition,
        token_annotations: bool,
        resource_version: Option<String>,
    ) -> Result<(), SessionError> {
        let present = self.session.annotations();
        let mut changes = serde_json::Map::new();
        if t.acknowledge {
            let mut clear = vec![
                api::ANNOTATION_DESIRED_PHASE,
                api::ANNOTATION_START_REQUESTED_AT,
                api::ANNOTATION_STOP_REQUESTED_AT,
            ];
            if matches!(t.to, SessionPhase::Stopping | SessionPhase::Stopped) {
                clear.push(api::ANNOTATION_STOP_REASON);
            }
            for key in clear {
                if present.contains_key(key) {
                    changes.insert(key.to_owned(), Value::Null);
                }
            }
        }
        if t.effect == Effect::StartRun
            && present.contains_key(api::ANNOTATION_FORCE_EXECUTE_PROMPT)
        {
            changes.insert(api::ANNOTATION_FORCE_EXECUTE_PROMPT.to_owned(), Value::Null);
        }
        if token_annotations {
            for (key, value) in [
                (
                    api::ANNOTATION_RUNNER_TOKEN_SECRET,
                    names::token_secret(&self.name),
                ),
                (
                    api::ANNOTATION_RUNNER_SA,
                    names::service_account(&self.name),
                ),
            ] {
                if present.get(key) != Some(&value) {
                    changes.insert(key.to_owned(), Value::String(value));
                }
            }
        }
        if changes.is_empty() {
            return Ok(());
        }
        let body = json!({
            "metadata": {"resourceVersion": resource_version, "annotations": changes},
        });
        ack::patch::<AgenticSession, _>(
            &self.ctx.client,
            &self.ns,
            &self.name,
            &PatchParams::default(),
            &Patch::Merge(&body),
        )
        .await
        .map_err(|e| {
            SessionError::kube(
                format!("update annotations of {}/{}", self.ns, self.name),
                e,
            )
        })?;
        // The version the status write made (if any) is replaced too.
        self.ctx
            .recent
            .session_written(&self.ns, &self.name, resource_version.as_deref());
        self.ctx.recent.session_written(
            &self.ns,
            &self.name,
            self.session.metadata.resource_version.as_deref(),
        );
        Ok(())
    }

    /// A Warning Event `InvalidDesiredPhase` for a desired-phase annotation that is neither
    /// `Running` nor `Stopped`: the request is ignored and the session goes on as it was.
    /// Every pass while the value stays reports it again, which the recorder counts in the
    /// Event's series (the admission webhook refuses such a value before it is stored).
    async fn report_invalid_request(&self, error: &agentic_api::UnknownValue) {
        tracing::warn!(%error, "ignoring the desired-phase annotation");
        if let Some(recorder) = &self.ctx.recorder {
            let event = Event {
                type_: EventType::Warning,
                reason: "InvalidDesiredPhase".into(),
                note: Some(format!(
                    "{}; the request is ignored",
                    invalid_desired_phase(error)
                )),
                action: "ReadRequest".into(),
                secondary: None,
            };
            crate::runtime::events::publish(recorder, &event, &self.session.object_ref(&())).await;
        }
    }

    /// Publishes a Warning Event when the session starts waiting for `ambient-runner-secrets`
    /// or the Vertex AI source Secret (once: not again while the recorded condition already
    /// says so), and drops the token-check mark of a session that is no longer Running.
    fn record_blocked(&self, t: &Transition) {
        if t.to != SessionPhase::Running {
            self.ctx.token_checks.take(&self.ns, &self.name);
        }
        if t.reason != REASON_VERTEX_SECRET_MISSING && t.reason != REASON_RUNNER_SECRET_MISSING {
            return;
        }
        let already = self
            .status()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| {
                cs.iter().any(|c| {
                    c.type_ == "SecretsReady" && c.status == "False" && c.reason == t.reason
                })
            });
        let Some(recorder) = self.ctx.recorder.clone().filter(|_| !already) else {
            return;
        };
        let event = Event {
            type_: EventType::Warning,
            reason: t.reason.clone(),
            note: Some(format!(
                "{}; the session stays Pending until it exists",
                t.message
            )),
            action: "WaitForSecret".into(),
            secondary: None,
        };
        let reference = self.session.object_ref(&());
        self.ctx.background.spawn(async move {
            crate::runtime::events::publish(&recorder, &event, &reference).await;
        });
    }

    fn record_transition(&self, from: Option<SessionPhase>, t: &Transition) {
        if from == Some(t.to) {
            return;
        }
        let startup = self
            .status()
            .and_then(|s| s.start_time.as_ref())
            .map(|start| {
                let secs = self.now.as_second().saturating_sub(start.0.as_second());
                Duration::from_secs(u64::try_from(secs).unwrap_or(0))
            });
        self.ctx
            .metrics
            .transition(&self.ns, from, t.to, &t.reason, startup);
        tracing::info!(
            from = from.map_or("None", |p| p.as_str()),
            to = t.to.as_str(),
            reason = %t.reason,
            "phase changed"
        );
        // Events only for what an operator of the cluster wants to see: failures, stops and
        // lost runners. (The recorder keeps every Event it published in the last minutes, so
        // an Event per routine transition would cost memory at scale.)
        let notable = matches!(t.to, SessionPhase::Failed | SessionPhase::Stopped)
            || t.reason == "PodMissing";
        if let Some(recorder) = self.ctx.recorder.clone().filter(|_| notable) {
            let event = Event {
                type_: if t.to == SessionPhase::Failed || t.reason == "PodMissing" {
                    EventType::Warning
                } else {
                    EventType::Normal
                },
                reason: if t.reason.is_empty() {
                    t.to.as_str().to_owned()
                } else {
                    t.reason.clone()
                },
                note: Some(format!("{}: {}", t.to.as_str(), t.message)),
                action: "PhaseChange".into(),
                secondary: None,
            };
            let reference = self.session.object_ref(&());
            self.ctx.background.spawn(async move {
                crate::runtime::events::publish(&recorder, &event, &reference).await;
            });
        }
    }
}

#[cfg(test)]
mod tests;
