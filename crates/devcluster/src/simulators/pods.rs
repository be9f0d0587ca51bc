//! Scheduler and kubelet simulation: binds pending pods to a fake node and drives their
//! container statuses through a scripted timeline.
//!
//! The kubelet part is a pure function of the pod and of the time elapsed since the
//! simulated kubelet first saw it ([`pod_status`]); the controller evaluates it, writes the
//! status when it changed and asks to be woken at the next point where it will change.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Container, Pod};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::reflector;
use kube::runtime::watcher::{self, Event};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};

use super::util::{
    Length, Memo, after, fmt_ts, hash_of, lookup, parse_ts, seconds, settled, since,
    subset_matches, truthy, uid_of,
};
use super::{SimError, Simulators, Timing, lean};

/// Field manager of the scheduler's writes.
const SCHEDULER_MANAGER: &str = "devcluster-scheduler";
/// Field manager of the kubelet's writes.
const KUBELET_MANAGER: &str = "devcluster-kubelet";

/// The unschedulable message, shaped like the default scheduler's.
pub const UNSCHEDULABLE_MESSAGE: &str = "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.";

struct Ctx {
    client: kube::Client,
    sims: Simulators,
    /// When the kubelet first saw each pod (the origin of its timeline).
    anchors: Memo<Timestamp>,
    /// The last status written per pod, to skip repeating a write on a stale cache.
    written: Memo<Value>,
    /// Offset (on the pod's timeline) at which a deleted pod's containers were stopped.
    kills: Memo<Duration>,
    /// Whether the server serves `pods/binding`: [`BINDING_UNKNOWN`] until the first try.
    binding: AtomicU8,
    /// Lets one reconcile find out about `pods/binding` while the others wait.
    binding_probe: tokio::sync::Mutex<()>,
}

const BINDING_UNKNOWN: u8 = 0;
const BINDING_SERVED: u8 = 1;
const BINDING_MISSING: u8 = 2;

/// Runs the scheduler and/or kubelet until the future is dropped.
pub async fn run(client: kube::Client, sims: Simulators) {
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        sims,
        anchors: Memo::default(),
        written: Memo::default(),
        kills: Memo::default(),
        binding: AtomicU8::new(BINDING_UNKNOWN),
        binding_probe: tokio::sync::Mutex::new(()),
    });
    let (reader, writer) = reflector::store();
    let forget = ctx.clone();
    let stream = lean::watcher::<Pod>(client, watcher::Config::default())
        .reflect(writer)
        .inspect(move |ev| {
            if let Ok(Event::Delete(p)) = ev {
                let uid = uid_of(p);
                forget.anchors.forget(&uid);
                forget.written.forget(&uid);
                forget.kills.forget(&uid);
            }
        })
        .touched_objects();
    Controller::for_stream(stream, reader)
        .with_config(ControllerConfig::default().concurrency(32))
        .run(reconcile, error_policy, ctx)
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "pod simulator");
            }
        })
        .await;
}

#[allow(clippy::needless_pass_by_value)]
fn error_policy(_p: Arc<Pod>, e: &SimError, _ctx: Arc<Ctx>) -> Action {
    tracing::debug!(error = %e, "pod simulator write failed; retrying");
    Action::requeue(Duration::from_millis(500))
}

async fn reconcile(pod: Arc<Pod>, ctx: Arc<Ctx>) -> Result<Action, SimError> {
    let node = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .unwrap_or_default();
    if node.is_empty() {
        if ctx.sims.scheduler && pod.metadata.deletion_timestamp.is_none() {
            schedule(&pod, &ctx).await?;
        }
        return Ok(Action::await_change());
    }
    if !ctx.sims.kubelet || node != ctx.sims.node_name {
        return Ok(Action::await_change());
    }
    kubelet(&pod, &ctx).await
}

fn pod_api(ctx: &Ctx, pod: &Pod) -> Api<lean::Lean<Pod>> {
    Api::namespaced(ctx.client.clone(), &pod.namespace().unwrap_or_default())
}

async fn schedule(pod: &Pod, ctx: &Ctx) -> Result<(), SimError> {
    let api = pod_api(ctx, pod);
    let name = pod.name_any();
    let pp = PatchParams {
        field_manager: Some(SCHEDULER_MANAGER.into()),
        ..PatchParams::default()
    };
    let status = pod_status_value(pod);
    if truthy(lookup(pod.annotations(), "unschedulable", None)) {
        return mark_unschedulable(&api, &name, &pp, &status).await;
    }
    let node = &ctx.sims.node_name;
    let _probe = if ctx.binding.load(Ordering::Acquire) == BINDING_UNKNOWN {
        Some(ctx.binding_probe.lock().await)
    } else {
        None
    };
    if ctx.binding.load(Ordering::Acquire) != BINDING_MISSING {
        let binding = json!({
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": name},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        });
        let res: Result<Value, kube::Error> = api
            .create_subresource("binding", &name, &PostParams::default(), &binding)
            .await;
        match res {
            Ok(_) => {
                ctx.binding.store(BINDING_SERVED, Ordering::Release);
                return Ok(());
            }
            Err(kube::Error::Api(s)) if matches!(s.code, 404 | 405) => {
                // Either the pod is gone or the server has no binding subresource.
                if api.get_opt(&name).await?.is_none() {
                    return Ok(());
                }
                tracing::debug!("binding subresource unavailable; patching spec.nodeName");
                ctx.binding.store(BINDING_MISSING, Ordering::Release);
            }
            Err(e) => return Err(e.into()),
        }
    }
    api.patch(
        &name,
        &pp,
        &Patch::Merge(json!({"spec": {"nodeName": node}})),
    )
    .await?;
    if ctx.sims.kubelet {
        // The kubelet's first status write carries `PodScheduled=True`.
        return Ok(());
    }
    let mut conds: Vec<Value> = status["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c["type"] != "PodScheduled")
        .collect();
    conds.push(json!({
        "type": "PodScheduled",
        "status": "True",
        "lastTransitionTime": fmt_ts(Timestamp::now()),
    }));
    api.patch_status(
        &name,
        &pp,
        &Patch::Merge(json!({"status": {"conditions": conds}})),
    )
    .await?;
    Ok(())
}

/// Sets `PodScheduled=False` reason `Unschedulable`, unless it is already there.
async fn mark_unschedulable(
    api: &Api<lean::Lean<Pod>>,
    name: &str,
    pp: &PatchParams,
    status: &Value,
) -> Result<(), SimError> {
    let already = status["conditions"].as_array().is_some_and(|cs| {
        cs.iter().any(|c| {
            c["type"] == "PodScheduled" && c["status"] == "False" && c["reason"] == "Unschedulable"
        })
    });
    if already {
        return Ok(());
    }
    let mut conds: Vec<Value> = status["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c["type"] != "PodScheduled")
        .collect();
    conds.push(json!({
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": UNSCHEDULABLE_MESSAGE,
        "lastTransitionTime": fmt_ts(Timestamp::now()),
    }));
    api.patch_status(
        name,
        pp,
        &Patch::Merge(json!({"status": {"phase": "Pending", "conditions": conds}})),
    )
    .await?;
    Ok(())
}

fn pod_status_value(pod: &Pod) -> Value {
    pod.status
        .as_ref()
        .and_then(|s| serde_json::to_value(s).ok())
        .unwrap_or_else(|| json!({}))
}

async fn kubelet(pod: &Pod, ctx: &Ctx) -> Result<Action, SimError> {
    let uid = uid_of(pod);
    let deleting = pod.metadata.deletion_timestamp.is_some();
    let cached = pod_status_value(pod);
    let t0 = if let Some(t) = ctx.anchors.get(&uid) {
        t
    } else {
        let t = cached["startTime"]
            .as_str()
            .and_then(parse_ts)
            .unwrap_or_else(Timestamp::now);
        ctx.anchors.set(&uid, t);
        t
    };
    let elapsed = since(t0);
    // The moment the kubelet first saw the deletion, so later passes report the same stop.
    let kill = deleting.then(|| ctx.kills.with(&uid, || elapsed, |k| *k));
    let (status, next) = pod_status(pod, &ctx.sims, t0, elapsed, kill);
    let unchanged =
        subset_matches(&status, &cached) || ctx.written.get(&uid).is_some_and(|w| w == status);
    if !unchanged {
        let pp = PatchParams {
            field_manager: Some(KUBELET_MANAGER.into()),
            ..PatchParams::default()
        };
        match pod_api(ctx, pod)
            .patch_status(
                &pod.name_any(),
                &pp,
                &Patch::Merge(json!({"status": status.clone()})),
            )
            .await
        {
            Ok(_) => ctx.written.set(&uid, status),
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(Action::await_change()),
            Err(e) => return Err(e.into()),
        }
    }
    if deleting {
        if pod.metadata.deletion_grace_period_seconds != Some(0) {
            let dp = DeleteParams {
                grace_period_seconds: Some(0),
                ..DeleteParams::default()
            };
            settled(pod_api(ctx, pod).delete(&pod.name_any(), &dp).await)?;
        }
        return Ok(Action::await_change());
    }
    Ok(match next {
        Some(at) => Action::requeue(at.saturating_sub(since(t0)).max(Duration::from_millis(1))),
        None => Action::await_change(),
    })
}

/// How a container is scripted by annotations.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerScript {
    /// How long each run lasts; `None` runs until the pod is deleted.
    pub run: Option<Duration>,
    /// Exit code at the end of a run.
    pub exit_code: i32,
    /// The run ends with an OOM kill (exit 137, reason `OOMKilled`).
    pub oom: bool,
    /// The image never pulls.
    pub pull_failure: bool,
}

/// Whether the pod is controlled by a batch Job (its containers finish by default).
fn is_job_pod(pod: &Pod) -> bool {
    pod.owner_references()
        .iter()
        .any(|r| r.kind == "Job" && r.api_version.starts_with("batch/"))
}

/// The script of one container, from the pod's annotations.
pub fn container_script(
    annotations: &BTreeMap<String, String>,
    container: &str,
    finishes_by_default: bool,
    timing: &Timing,
) -> ContainerScript {
    let c = Some(container);
    let oom = truthy(lookup(annotations, "oom-kill", c));
    let pull_failure = truthy(lookup(annotations, "image-pull-failure", c));
    let exit_annotation = lookup(annotations, "exit-code", c);
    let exit_code = match exit_annotation.map(str::parse::<i32>) {
        Some(Ok(code)) => code,
        Some(Err(_)) => {
            tracing::warn!(
                container,
                "ignoring devcluster.io/exit-code: not an integer"
            );
            0
        }
        None => 0,
    };
    let run = match seconds(
        lookup(annotations, "run-seconds", c),
        "devcluster.io/run-seconds",
    ) {
        Some(r) => r.finite(),
        None if finishes_by_default || exit_annotation.is_some() || oom => Some(timing.run),
        None => None,
    };
    ContainerScript {
        run,
        exit_code: if oom { 137 } else { exit_code },
        oom,
        pull_failure,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Restart {
    Always,
    OnFailure,
    Never,
}

impl Restart {
    fn restarts(self, exit: i32) -> bool {
        match self {
            Restart::Always => true,
            Restart::OnFailure => exit != 0,
            Restart::Never => false,
        }
    }
}

/// One container's simulated state at a point of the timeline.
#[derive(Debug, Clone)]
struct Sim {
    status: Value,
    ready: bool,
    running: bool,
    /// Pulled and started at least once.
    started_ever: bool,
    /// Finished for good: (exit code, offset of the end).
    done: Option<(i32, Duration)>,
    /// Offset of the latest start or stop, for condition timestamps.
    changed_at: Duration,
    /// Offset of the next change, if any.
    next: Option<Duration>,
}

struct Clock {
    t0: Timestamp,
}

impl Clock {
    fn at(&self, d: Duration) -> String {
        fmt_ts(after(self.t0, d))
    }
}

fn container_id(uid: &str, name: &str, restart: u32) -> String {
    let r = restart.to_string();
    format!(
        "containerd://{:016x}{:016x}",
        hash_of(&[uid, name, &r]),
        hash_of(&[name, uid, &r, "id"])
    )
}

fn image_id(image: &str) -> String {
    format!(
        "{image}@sha256:{:016x}{:016x}{:016x}{:016x}",
        hash_of(&[image, "a"]),
        hash_of(&[image, "b"]),
        hash_of(&[image, "c"]),
        hash_of(&[image, "d"])
    )
}

fn base_status(c: &Container) -> serde_json::Map<String, Value> {
    let image = c.image.clone().unwrap_or_default();
    let mut m = serde_json::Map::new();
    m.insert("name".into(), json!(c.name));
    m.insert("image".into(), json!(image));
    m.insert("imageID".into(), json!(""));
    m.insert("ready".into(), json!(false));
    m.insert("restartCount".into(), json!(0));
    m.insert("started".into(), json!(false));
    m.insert("lastState".into(), json!({}));
    m
}

fn waiting(c: &Container, reason: &str, message: Option<String>) -> Sim {
    let mut m = base_status(c);
    let mut w = json!({"reason": reason});
    if let Some(msg) = message {
        w["message"] = json!(msg);
    }
    m.insert("state".into(), json!({"waiting": w}));
    Sim {
        status: Value::Object(m),
        ready: false,
        running: false,
        started_ever: false,
        done: None,
        changed_at: Duration::ZERO,
        next: None,
    }
}

fn terminated_state(
    clock: &Clock,
    uid: &str,
    name: &str,
    restart: u32,
    exit: i32,
    reason: &str,
    (start, end): (Duration, Duration),
) -> Value {
    json!({"terminated": {
        "exitCode": exit,
        "reason": reason,
        "startedAt": clock.at(start),
        "finishedAt": clock.at(end),
        "containerID": container_id(uid, name, restart),
    }})
}

fn exit_reason(s: &ContainerScript) -> &'static str {
    if s.oom {
        "OOMKilled"
    } else if s.exit_code == 0 {
        "Completed"
    } else {
        "Error"
    }
}

/// Simulates one container that may start at offset `start`, evaluated at offset `e`.
#[allow(clippy::too_many_arguments, clippy::too_many_lines)]
fn sim_container(
    pod: &Pod,
    c: &Container,
    s: &ContainerScript,
    policy: Restart,
    start: Duration,
    e: Duration,
    timing: &Timing,
    clock: &Clock,
) -> Sim {
    let uid = uid_of(pod);
    let image = c.image.clone().unwrap_or_default();
    if s.pull_failure {
        let backoff_at = start + timing.image_pull_backoff;
        if e < backoff_at {
            let mut w = waiting(
                c,
                "ErrImagePull",
                Some(format!(
                    "failed to pull image \"{image}\": simulated pull failure (devcluster.io/image-pull-failure)"
                )),
            );
            w.next = Some(backoff_at);
            w.changed_at = start;
            return w;
        }
        let mut w = waiting(
            c,
            "ImagePullBackOff",
            Some(format!("Back-off pulling image \"{image}\"")),
        );
        w.changed_at = backoff_at;
        return w;
    }
    let mut m = base_status(c);
    m.insert("imageID".into(), json!(image_id(&image)));
    let mut run_start = start;
    let mut restarts: u32 = 0;
    let mut last = json!({});
    loop {
        m.insert("restartCount".into(), json!(restarts));
        m.insert("lastState".into(), last.clone());
        m.insert(
            "containerID".into(),
            json!(container_id(&uid, &c.name, restarts)),
        );
        // Running: forever without a run time, else until it ends.
        let end = match s.run.map(|run| run_start + run) {
            Some(end) if e >= end => end,
            next => {
                m.insert(
                    "state".into(),
                    json!({"running": {"startedAt": clock.at(run_start)}}),
                );
                m.insert("ready".into(), json!(true));
                m.insert("started".into(), json!(true));
                return Sim {
                    status: Value::Object(m),
                    ready: true,
                    running: true,
                    started_ever: true,
                    done: None,
                    changed_at: run_start,
                    next,
                };
            }
        };
        let term = terminated_state(
            clock,
            &uid,
            &c.name,
            restarts,
            s.exit_code,
            exit_reason(s),
            (run_start, end),
        );
        if !policy.restarts(s.exit_code) {
            m.insert("state".into(), term);
            return Sim {
                status: Value::Object(m),
                ready: false,
                running: false,
                started_ever: true,
                done: Some((s.exit_code, end)),
                changed_at: end,
                next: None,
            };
        }
        let factor = 1u32 << restarts.min(4);
        let backoff = timing.restart_backoff * factor;
        let restart_at = end + backoff;
        if e < restart_at {
            m.insert("lastState".into(), term);
            m.insert("restartCount".into(), json!(restarts));
            m.insert(
                "state".into(),
                json!({"waiting": {
                    "reason": "CrashLoopBackOff",
                    "message": format!(
                        "back-off {}s restarting failed container={} pod={}_{}({})",
                        backoff.as_secs().max(1),
                        c.name,
                        pod.name_any(),
                        pod.namespace().unwrap_or_default(),
                        uid
                    ),
                }}),
            );
            m.insert("started".into(), json!(false));
            return Sim {
                status: Value::Object(m),
                ready: false,
                running: false,
                started_ever: true,
                done: None,
                changed_at: end,
                next: Some(restart_at),
            };
        }
        last = term;
        restarts += 1;
        run_start = restart_at;
    }
}

/// Turns a container that is still running or waiting into a terminated one, as when the
/// kubelet kills it at offset `at`.
fn kill(sim: &mut Sim, clock: &Clock, uid: &str, exit: i32, at: Duration) {
    if sim.done.is_some() {
        return;
    }
    let name = sim.status["name"].as_str().unwrap_or_default().to_string();
    let restart = u32::try_from(sim.status["restartCount"].as_u64().unwrap_or(0)).unwrap_or(0);
    let started = sim.status["state"]["running"]["startedAt"]
        .as_str()
        .map_or_else(|| clock.at(at), str::to_string);
    sim.status["state"] = json!({"terminated": {
        "exitCode": exit,
        "reason": "Error",
        "startedAt": started,
        "finishedAt": clock.at(at),
        "containerID": container_id(uid, &name, restart),
    }});
    sim.status["ready"] = json!(false);
    sim.status["started"] = json!(false);
    sim.ready = false;
    sim.running = false;
    sim.done = Some((exit, at));
    sim.changed_at = at;
    sim.next = None;
}

fn condition(
    clock: &Clock,
    ty: &str,
    ok: bool,
    at: Duration,
    reason: Option<(&str, String)>,
) -> Value {
    let mut c = json!({
        "type": ty,
        "status": if ok { "True" } else { "False" },
        "lastTransitionTime": clock.at(at),
    });
    if let Some((r, m)) = reason {
        c["reason"] = json!(r);
        if !m.is_empty() {
            c["message"] = json!(m);
        }
    }
    c
}

fn min_next(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

/// The pod status the simulated kubelet reports at offset `e` of the pod's timeline (origin
/// `t0`), and the offset of the next change. `kill` is the offset at which the pod is
/// being deleted, if it is.
#[allow(clippy::too_many_lines)]
pub fn pod_status(
    pod: &Pod,
    sims: &Simulators,
    t0: Timestamp,
    e: Duration,
    kill_at: Option<Duration>,
) -> (Value, Option<Duration>) {
    let timing = &sims.timing;
    let clock = Clock { t0 };
    let uid = uid_of(pod);
    let empty = Vec::new();
    let spec = pod.spec.as_ref();
    let inits = spec
        .and_then(|s| s.init_containers.as_ref())
        .unwrap_or(&empty);
    let mains = spec.map_or(&empty, |s| &s.containers);
    let policy = match spec.and_then(|s| s.restart_policy.as_deref()) {
        Some("Never") => Restart::Never,
        Some("OnFailure") => Restart::OnFailure,
        _ => Restart::Always,
    };
    let annotations = pod.annotations();
    let job_pod = is_job_pod(pod);
    let deadline = spec
        .and_then(|s| s.active_deadline_seconds)
        .and_then(|s| u64::try_from(s).ok())
        .map(Duration::from_secs);
    let creating = seconds(
        lookup(annotations, "start-seconds", None),
        "devcluster.io/start-seconds",
    )
    .map_or(timing.container_creating, Length::or_long);
    // Evaluate at the earliest of now, the deadline and the deletion.
    let deadline_hit = deadline.filter(|d| e >= *d);
    let eval_at = [Some(e), deadline_hit, kill_at]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(e);

    let mut next: Option<Duration> = None;
    let mut init_sims: Vec<Sim> = Vec::new();
    let mut main_sims: Vec<Sim> = Vec::new();
    let mut sidecars: Vec<usize> = Vec::new();
    let mut init_failed = false;
    let mut init_done_at: Option<Duration> = None;
    if eval_at < creating {
        for c in inits {
            init_sims.push(waiting(c, "PodInitializing", None));
        }
        let reason = if inits.is_empty() {
            "ContainerCreating"
        } else {
            "PodInitializing"
        };
        for c in mains {
            main_sims.push(waiting(c, reason, None));
        }
        next = Some(creating);
    } else {
        let mut cursor = creating;
        let mut blocked = false;
        for c in inits {
            if blocked {
                init_sims.push(waiting(c, "PodInitializing", None));
                continue;
            }
            let sidecar = c.restart_policy.as_deref() == Some("Always");
            if sidecar {
                let script = container_script(annotations, &c.name, false, timing);
                let s = sim_container(
                    pod,
                    c,
                    &script,
                    Restart::Always,
                    cursor,
                    eval_at,
                    timing,
                    &clock,
                );
                next = min_next(next, s.next);
                if !s.started_ever {
                    blocked = true;
                }
                sidecars.push(init_sims.len());
                init_sims.push(s);
                continue;
            }
            let script = container_script(annotations, &c.name, true, timing);
            let init_policy = if policy == Restart::Never {
                Restart::Never
            } else {
                Restart::OnFailure
            };
            let s = sim_container(
                pod,
                c,
                &script,
                init_policy,
                cursor,
                eval_at,
                timing,
                &clock,
            );
            next = min_next(next, s.next);
            match s.done {
                Some((0, at)) => cursor = at,
                Some(_) => {
                    init_failed = true;
                    blocked = true;
                }
                None => blocked = true,
            }
            init_sims.push(s);
        }
        if blocked {
            for c in mains {
                main_sims.push(waiting(c, "PodInitializing", None));
            }
        } else {
            init_done_at = Some(cursor);
            for c in mains {
                let script = container_script(annotations, &c.name, job_pod, timing);
                let s = sim_container(pod, c, &script, policy, cursor, eval_at, timing, &clock);
                next = min_next(next, s.next);
                main_sims.push(s);
            }
        }
    }

    let mut phase = if init_failed {
        "Failed"
    } else if init_done_at.is_none()
        || main_sims
            .iter()
            .any(|s| !s.started_ever && s.done.is_none())
    {
        "Pending"
    } else if main_sims.iter().all(|s| s.done.is_some()) {
        if main_sims.iter().all(|s| matches!(s.done, Some((0, _)))) {
            "Succeeded"
        } else {
            "Failed"
        }
    } else {
        "Running"
    };
    let mut reason: Option<(&str, &str)> = None;
    let terminal_by_containers = matches!(phase, "Succeeded" | "Failed");
    let finished_at = main_sims
        .iter()
        .chain(init_sims.iter())
        .filter_map(|s| s.done.map(|d| d.1))
        .max()
        .unwrap_or(eval_at);
    if terminal_by_containers {
        // Sidecars are stopped once the main containers are done.
        for &i in &sidecars {
            if let Some(s) = init_sims.get_mut(i) {
                kill(s, &clock, &uid, 0, finished_at);
                s.status["state"]["terminated"]["reason"] = json!("Completed");
            }
        }
        next = None;
    } else if let Some(d) = deadline_hit.filter(|d| kill_at.is_none_or(|k| *d <= k)) {
        for s in init_sims.iter_mut().chain(main_sims.iter_mut()) {
            if s.started_ever {
                kill(s, &clock, &uid, 137, d);
            }
        }
        phase = "Failed";
        reason = Some((
            "DeadlineExceeded",
            "Pod was active on the node longer than the specified deadline",
        ));
        next = None;
    } else if let Some(k) = kill_at {
        for s in init_sims.iter_mut().chain(main_sims.iter_mut()) {
            if s.started_ever {
                kill(s, &clock, &uid, 143, k);
            }
        }
        phase = "Failed";
        next = None;
    } else if let Some(d) = deadline {
        next = min_next(next, Some(d));
    }
    let terminal = matches!(phase, "Succeeded" | "Failed");
    let end_at = main_sims
        .iter()
        .chain(init_sims.iter())
        .filter_map(|s| s.done.map(|d| d.1))
        .max()
        .unwrap_or(eval_at);

    // Conditions.
    let started_containers = eval_at >= creating;
    let unready: Vec<&str> = mains
        .iter()
        .zip(&main_sims)
        .filter(|(_, s)| !s.ready)
        .map(|(c, _)| c.name.as_str())
        .chain(
            sidecars
                .iter()
                .filter(|&&i| init_sims.get(i).is_some_and(|s| !s.ready))
                .filter_map(|&i| inits.get(i).map(|c| c.name.as_str())),
        )
        .collect();
    let ready = !terminal && unready.is_empty() && !main_sims.is_empty();
    let ready_at = main_sims
        .iter()
        .map(|s| s.changed_at)
        .max()
        .unwrap_or(Duration::ZERO);
    let incomplete: Vec<&str> = inits
        .iter()
        .zip(&init_sims)
        .filter(|(c, s)| {
            c.restart_policy.as_deref() != Some("Always") && !matches!(s.done, Some((0, _)))
        })
        .map(|(c, _)| c.name.as_str())
        .collect();
    let initialized = init_done_at.is_some() || (incomplete.is_empty() && started_containers);
    let not_ready_reason = if terminal {
        Some(("PodCompleted", String::new()))
    } else {
        Some((
            "ContainersNotReady",
            format!("containers with unready status: [{}]", unready.join(" ")),
        ))
    };
    let ready_cond_at = if ready {
        ready_at
    } else if terminal {
        end_at
    } else {
        main_sims
            .iter()
            .map(|s| s.changed_at)
            .max()
            .unwrap_or(Duration::ZERO)
    };
    let conditions = vec![
        condition(
            &clock,
            "PodReadyToStartContainers",
            started_containers && !terminal,
            if terminal {
                end_at
            } else if started_containers {
                creating
            } else {
                Duration::ZERO
            },
            None,
        ),
        condition(
            &clock,
            "Initialized",
            initialized,
            init_done_at.unwrap_or(Duration::ZERO),
            if initialized {
                None
            } else {
                Some((
                    "ContainersNotInitialized",
                    format!(
                        "containers with incomplete status: [{}]",
                        incomplete.join(" ")
                    ),
                ))
            },
        ),
        condition(
            &clock,
            "Ready",
            ready,
            ready_cond_at,
            if ready {
                None
            } else {
                not_ready_reason.clone()
            },
        ),
        condition(
            &clock,
            "ContainersReady",
            ready,
            ready_cond_at,
            if ready { None } else { not_ready_reason },
        ),
        condition(&clock, "PodScheduled", true, Duration::ZERO, None),
    ];

    let ip_hash = hash_of(&[&uid, "ip"]);
    let pod_ip = format!("10.244.{}.{}", (ip_hash >> 8) % 256, (ip_hash % 254) + 1);
    let host_ip = "172.18.0.2";
    let mut status = json!({
        "phase": phase,
        "conditions": conditions,
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "podIP": pod_ip,
        "podIPs": [{"ip": pod_ip}],
        "startTime": fmt_ts(t0),
        "containerStatuses": main_sims.into_iter().map(|s| s.status).collect::<Vec<_>>(),
    });
    if !inits.is_empty() {
        status["initContainerStatuses"] =
            Value::Array(init_sims.into_iter().map(|s| s.status).collect());
    }
    if let Some((r, m)) = reason {
        status["reason"] = json!(r);
        status["message"] = json!(m);
    }
    (status, if terminal { None } else { next })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(v: Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    fn sims() -> Simulators {
        Simulators::all()
    }

    #[allow(clippy::needless_pass_by_value)]
    fn base(annotations: Value, restart: &str) -> Pod {
        pod(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1", "annotations": annotations},
            "spec": {"restartPolicy": restart, "nodeName": "devcluster-node",
                     "containers": [{"name": "main", "image": "busybox"}]}
        }))
    }

    fn at(p: &Pod, secs: f64) -> (Value, Option<Duration>) {
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        pod_status(p, &sims(), t0, Duration::from_secs_f64(secs), None)
    }

    #[test]
    fn creating_then_running_forever() {
        let p = base(json!({}), "Always");
        let (s, next) = at(&p, 0.0);
        assert_eq!(s["phase"], "Pending");
        assert_eq!(
            s["containerStatuses"][0]["state"]["waiting"]["reason"],
            "ContainerCreating"
        );
        assert!(next.is_some());
        let (s, next) = at(&p, 100.0);
        assert_eq!(s["phase"], "Running");
        assert!(s["containerStatuses"][0]["state"]["running"].is_object());
        assert_eq!(s["conditions"][2]["type"], "Ready");
        assert_eq!(s["conditions"][2]["status"], "True");
        assert_eq!(next, None);
    }

    #[test]
    fn exit_code_with_never_fails() {
        let p = base(
            json!({"devcluster.io/exit-code": "3", "devcluster.io/run-seconds": "2"}),
            "Never",
        );
        let (s, _) = at(&p, 1.0);
        assert_eq!(s["phase"], "Running");
        let (s, next) = at(&p, 10.0);
        assert_eq!(s["phase"], "Failed");
        assert_eq!(
            s["containerStatuses"][0]["state"]["terminated"]["exitCode"],
            3
        );
        assert_eq!(
            s["containerStatuses"][0]["state"]["terminated"]["reason"],
            "Error"
        );
        assert_eq!(next, None);
    }

    #[test]
    fn on_failure_restarts() {
        let p = base(
            json!({"devcluster.io/exit-code": "1", "devcluster.io/run-seconds": "1"}),
            "OnFailure",
        );
        let (s, _) = at(&p, 30.0);
        assert_eq!(s["phase"], "Running");
        assert!(s["containerStatuses"][0]["restartCount"].as_u64().unwrap() >= 1);
        assert_eq!(
            s["containerStatuses"][0]["lastState"]["terminated"]["exitCode"],
            1
        );
    }

    #[test]
    fn oom_kill() {
        let p = base(json!({"devcluster.io/oom-kill": "true"}), "Never");
        let (s, _) = at(&p, 30.0);
        assert_eq!(s["phase"], "Failed");
        let t = &s["containerStatuses"][0]["state"]["terminated"];
        assert_eq!(t["reason"], "OOMKilled");
        assert_eq!(t["exitCode"], 137);
    }

    #[test]
    fn image_pull_failure_stays_pending() {
        let p = base(
            json!({"devcluster.io/image-pull-failure": "true"}),
            "Always",
        );
        let (s, _) = at(&p, 0.5);
        assert_eq!(
            s["containerStatuses"][0]["state"]["waiting"]["reason"],
            "ErrImagePull"
        );
        let (s, next) = at(&p, 60.0);
        assert_eq!(s["phase"], "Pending");
        assert_eq!(
            s["containerStatuses"][0]["state"]["waiting"]["reason"],
            "ImagePullBackOff"
        );
        assert_eq!(next, None);
    }

    #[test]
    fn init_containers_run_first_and_sidecar_keeps_pod_running() {
        let p = pod(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1", "annotations": {
                "devcluster.io/run-seconds.main": "2",
                "devcluster.io/run-seconds.init": "1",
            }},
            "spec": {"restartPolicy": "Never",
                     "initContainers": [{"name": "init", "image": "busybox"}],
                     "containers": [{"name": "main", "image": "busybox"},
                                    {"name": "side", "image": "busybox"}]}
        }));
        let (s, _) = at(&p, 0.5);
        assert_eq!(s["phase"], "Pending");
        assert!(s["initContainerStatuses"][0]["state"]["running"].is_object());
        assert_eq!(
            s["containerStatuses"][0]["state"]["waiting"]["reason"],
            "PodInitializing"
        );
        let (s, _) = at(&p, 60.0);
        assert_eq!(s["phase"], "Running");
        assert_eq!(
            s["initContainerStatuses"][0]["state"]["terminated"]["exitCode"],
            0
        );
        assert!(s["containerStatuses"][0]["state"]["terminated"].is_object());
        assert!(s["containerStatuses"][1]["state"]["running"].is_object());
    }

    #[test]
    fn job_pods_complete_by_default() {
        let p = pod(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1",
                "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "j", "uid": "j1", "controller": true}]},
            "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox"}]}
        }));
        let (s, _) = at(&p, 60.0);
        assert_eq!(s["phase"], "Succeeded");
        assert_eq!(s["conditions"][2]["status"], "False");
        assert_eq!(s["conditions"][2]["reason"], "PodCompleted");
    }

    #[test]
    fn active_deadline_fails_the_pod() {
        let mut p = base(json!({}), "Always");
        p.spec.as_mut().unwrap().active_deadline_seconds = Some(5);
        let (_, next) = at(&p, 1.0);
        assert_eq!(next, Some(Duration::from_secs(5)));
        let (s, _) = at(&p, 6.0);
        assert_eq!(s["phase"], "Failed");
        assert_eq!(s["reason"], "DeadlineExceeded");
        assert_eq!(
            s["containerStatuses"][0]["state"]["terminated"]["exitCode"],
            137
        );
    }

    #[test]
    fn same_inputs_give_same_status() {
        let p = base(json!({"devcluster.io/run-seconds": "3"}), "Always");
        assert_eq!(at(&p, 10.0).0, at(&p, 10.0).0);
    }
}
