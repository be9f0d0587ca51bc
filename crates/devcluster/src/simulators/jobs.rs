//! A batch/v1 Job controller: creates pods from the template one at a time, counts their
//! outcomes, retries failures up to `backoffLimit`, enforces `activeDeadlineSeconds`,
//! honours `suspend`, and deletes finished Jobs after `ttlSecondsAfterFinished`.
//!
//! Like the real controller, it puts the `batch.kubernetes.io/job-tracking` finalizer on
//! the pods it creates and removes it once a pod's outcome is in the Job's status, so a pod
//! deleted while running is still counted (as failed).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, PropagationPolicy};
use kube::runtime::WatchStreamExt;
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, Event};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};

use super::SimError;
use super::lean;
use super::util::{Memo, OwnerIndex, fmt_ts, parse_ts, settled, since, subset_matches, uid_of};

/// Field manager of the Job controller's writes.
const MANAGER: &str = "devcluster-job-controller";
/// Label every Job pod carries (and the pod watch selects on).
const CONTROLLER_UID_LABEL: &str = "batch.kubernetes.io/controller-uid";
/// Finalizer that keeps a Job's pod until its outcome is counted.
pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
/// How long a created pod counts as active before the watch shows it.
const EXPECTATION_TIMEOUT: Duration = Duration::from_mins(1);

/// What the controller remembers about one Job between reconciles.
#[derive(Debug, Clone, Default)]
struct JobMem {
    /// Pods whose outcome is already in the counters.
    counted: HashSet<String>,
    succeeded: i64,
    failed: i64,
    /// Pods created but not yet seen in the watch.
    expected: Vec<(String, Instant)>,
    start_time: Option<String>,
    /// The terminal status once written.
    done: Option<Value>,
}

struct Ctx {
    client: kube::Client,
    pods: Store<Pod>,
    index: Arc<OwnerIndex<Pod>>,
    mem: Memo<JobMem>,
    written: Memo<Value>,
    /// Pods whose tracking finalizer was already removed (until the pod is gone).
    released: Memo<()>,
}

/// Runs the Job controller until the future is dropped.
pub async fn run(client: kube::Client) {
    let (pod_reader, pod_writer) = reflector::store();
    let (job_reader, job_writer) = reflector::store();
    let index: Arc<OwnerIndex<Pod>> = Arc::new(OwnerIndex::default());
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        pods: pod_reader,
        index: index.clone(),
        mem: Memo::default(),
        written: Memo::default(),
        released: Memo::default(),
    });
    let (orphans_tx, orphans_rx) = tokio::sync::mpsc::unbounded_channel();
    let pod_ctx = ctx.clone();
    let pod_stream = lean::watcher::<Pod>(
        client.clone(),
        watcher::Config::default().labels(CONTROLLER_UID_LABEL),
    )
    .reflect(pod_writer)
    .inspect(move |ev| {
        if let Ok(ev) = ev {
            index.apply(ev);
            if let Event::Delete(p) = ev {
                pod_ctx.released.forget(&uid_of(p));
            }
            if let Event::Apply(p) | Event::InitApply(p) = ev
                && deleting(p)
                && tracked(p)
            {
                let _ = orphans_tx.send(ObjectRef::from_obj(p));
            }
        }
    })
    .touched_objects();
    let release = release_orphans(ctx.clone(), job_reader.clone(), orphans_rx);
    let forget = ctx.clone();
    let job_stream = lean::watcher::<Job>(client, watcher::Config::default())
        .reflect(job_writer)
        .inspect(move |ev| {
            if let Ok(Event::Delete(j)) = ev {
                let uid = uid_of(j);
                forget.mem.forget(&uid);
                forget.written.forget(&uid);
            }
        })
        .touched_objects();
    let controller = Controller::for_stream(job_stream, job_reader)
        .owns_stream(pod_stream)
        .with_config(ControllerConfig::default().concurrency(32))
        .run(reconcile, error_policy, ctx)
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "job simulator");
            }
        });
    futures::future::join(controller, release).await;
}

/// Removes the tracking finalizer from deleted pods whose Job is gone (deleted with its
/// pods still running), re-checking a little later while the Job is still cached.
async fn release_orphans(
    ctx: Arc<Ctx>,
    jobs: Store<Job>,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<ObjectRef<Pod>>,
) {
    if jobs.wait_until_ready().await.is_err() {
        return;
    }
    let (retry_tx, mut retry_rx) = tokio::sync::mpsc::unbounded_channel::<ObjectRef<Pod>>();
    loop {
        let r = tokio::select! {
            Some(r) = rx.recv() => r,
            Some(r) = retry_rx.recv() => r,
            else => return,
        };
        let Some(p) = ctx.pods.get(&r) else { continue };
        if !tracked(&p) || !deleting(&p) {
            continue;
        }
        let owner = p
            .owner_references()
            .iter()
            .find(|o| o.controller == Some(true))
            .cloned();
        let ns = p.namespace().unwrap_or_default();
        let job_alive = owner.as_ref().is_some_and(|o| {
            jobs.get(&ObjectRef::new(&o.name).within(&ns))
                .is_some_and(|j| j.uid().as_deref() == Some(o.uid.as_str()))
        });
        let look_again = |r: ObjectRef<Pod>, after: Duration| {
            let tx = retry_tx.clone();
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                let _ = tx.send(r);
            });
        };
        if job_alive {
            // The Job's own reconcile releases it; look again later in case the Job goes.
            look_again(r, Duration::from_secs(2));
            continue;
        }
        let api: Api<lean::Lean<Pod>> = Api::namespaced(ctx.client.clone(), &ns);
        if let Err(e) = untrack(&ctx, &api, &p).await {
            tracing::debug!(error = %e, pod = %r, "cannot release orphaned Job pod; retrying");
            look_again(r, Duration::from_millis(500));
        }
    }
}

fn deleting(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_some()
}

fn tracked(p: &Pod) -> bool {
    p.finalizers().iter().any(|f| f == TRACKING_FINALIZER)
}

/// Removes the tracking finalizer (a `test`-guarded JSON patch, so other finalizers
/// written concurrently are kept).
async fn untrack(ctx: &Ctx, api: &Api<lean::Lean<Pod>>, p: &Pod) -> Result<(), SimError> {
    let Some(i) = p.finalizers().iter().position(|f| f == TRACKING_FINALIZER) else {
        return Ok(());
    };
    let uid = uid_of(p);
    if ctx.released.get(&uid).is_some() {
        return Ok(());
    }
    let pointer = format!("/metadata/finalizers/{i}");
    let ops = json!([
        {"op": "test", "path": pointer, "value": TRACKING_FINALIZER},
        {"op": "remove", "path": pointer},
    ]);
    let patch: json_patch::Patch = serde_json::from_value(ops).map_err(SimError::Encode)?;
    let pp = PatchParams {
        field_manager: Some(MANAGER.into()),
        ..PatchParams::default()
    };
    settled(
        api.patch(&p.name_any(), &pp, &Patch::<()>::Json(patch))
            .await,
    )?;
    ctx.released.set(&uid, ());
    Ok(())
}

/// Releases the pods whose outcome is recorded (in `counted`, or all finished and deleted
/// ones when `counted` is `None`).
async fn release(
    ctx: &Ctx,
    api: &Api<lean::Lean<Pod>>,
    pods: &[Arc<Pod>],
    counted: Option<&HashSet<String>>,
) -> Result<(), SimError> {
    for p in pods {
        let done = deleting(p) || matches!(phase(p), "Succeeded" | "Failed");
        let recorded = counted.is_none_or(|c| c.contains(&uid_of(p.as_ref())));
        if tracked(p) && done && recorded {
            untrack(ctx, api, p).await?;
        }
    }
    Ok(())
}

#[allow(clippy::needless_pass_by_value)]
fn error_policy(_j: Arc<Job>, e: &SimError, _ctx: Arc<Ctx>) -> Action {
    tracing::debug!(error = %e, "job simulator write failed; retrying");
    Action::requeue(Duration::from_millis(500))
}

fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

/// A pod's outcome once it has one: `Some(true)` when it succeeded, `Some(false)` when it
/// failed or was deleted before finishing.
fn outcome(p: &Pod) -> Option<bool> {
    match phase(p) {
        "Succeeded" => Some(true),
        "Failed" => Some(false),
        _ if deleting(p) => Some(false),
        _ => None,
    }
}

fn is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn restarts(p: &Pod) -> i64 {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map_or(0, |cs| cs.iter().map(|c| i64::from(c.restart_count)).sum())
}

fn condition(ty: &str, ok: bool, reason: &str, message: &str, now: &str) -> Value {
    json!({
        "type": ty,
        "status": if ok { "True" } else { "False" },
        "lastProbeTime": now,
        "lastTransitionTime": now,
        "reason": reason,
        "message": message,
    })
}

/// Replaces the condition of the same type, keeping its transition time when the status
/// did not change.
fn upsert(conds: &mut Vec<Value>, c: Value) {
    if let Some(old) = conds.iter_mut().find(|x| x["type"] == c["type"]) {
        if old["status"] == c["status"] && old["reason"] == c["reason"] {
            return;
        }
        *old = c;
    } else {
        conds.push(c);
    }
}

fn finished(status: &Value) -> Option<(&'static str, Option<Timestamp>)> {
    let conds = status["conditions"].as_array()?;
    for (ty, name) in [("Complete", "Complete"), ("Failed", "Failed")] {
        if let Some(c) = conds
            .iter()
            .find(|c| c["type"] == ty && c["status"] == "True")
        {
            let at = status["completionTime"]
                .as_str()
                .or_else(|| c["lastTransitionTime"].as_str())
                .and_then(parse_ts);
            return Some((name, at));
        }
    }
    None
}

#[allow(clippy::too_many_lines)]
async fn reconcile(job: Arc<Job>, ctx: Arc<Ctx>) -> Result<Action, SimError> {
    let uid = uid_of(job.as_ref());
    let ns = job.namespace().unwrap_or_default();
    let name = job.name_any();
    let jobs: Api<lean::Lean<Job>> = Api::namespaced(ctx.client.clone(), &ns);
    let pods_api: Api<lean::Lean<Pod>> = Api::namespaced(ctx.client.clone(), &ns);
    let cached = job
        .status
        .as_ref()
        .and_then(|s| serde_json::to_value(s).ok())
        .unwrap_or_else(|| json!({}));
    let pods: Vec<Arc<Pod>> = ctx
        .index
        .children(&uid)
        .iter()
        .filter_map(|r| ctx.pods.get(r))
        .collect();
    let active: Vec<&Arc<Pod>> = pods
        .iter()
        .filter(|p| !deleting(p) && !matches!(phase(p), "Succeeded" | "Failed"))
        .collect();
    if job.metadata.deletion_timestamp.is_some() {
        // Let the garbage collector take the pods (foreground deletion waits for them).
        release(&ctx, &pods_api, &pods, None).await?;
        return Ok(Action::await_change());
    }

    // A finished Job: stop leftovers, then wait for the TTL.
    let done = ctx.mem.get(&uid).and_then(|m| m.done);
    let finished_status = done.as_ref().unwrap_or(&cached);
    if let Some((_, at)) = finished(finished_status) {
        for p in &active {
            delete_pod(&pods_api, p).await?;
        }
        release(&ctx, &pods_api, &pods, None).await?;
        let ttl = job
            .spec
            .as_ref()
            .and_then(|s| s.ttl_seconds_after_finished)
            .and_then(|t| u64::try_from(t).ok());
        if let Some(ttl) = ttl {
            let ttl = Duration::from_secs(ttl);
            let elapsed = at.map_or(ttl, since);
            if elapsed >= ttl {
                let dp = DeleteParams {
                    propagation_policy: Some(PropagationPolicy::Background),
                    ..DeleteParams::default()
                };
                settled(jobs.delete(&name, &dp).await)?;
                return Ok(Action::await_change());
            }
            return Ok(Action::requeue(ttl.saturating_sub(elapsed)));
        }
        return Ok(Action::await_change());
    }

    let spec = job.spec.clone().unwrap_or_default();
    let now = fmt_ts(Timestamp::now());
    let pod_names: HashSet<String> = pods.iter().map(|p| p.name_any()).collect();
    let status_counts = (
        cached["succeeded"].as_i64().unwrap_or(0),
        cached["failed"].as_i64().unwrap_or(0),
    );
    let cached_start = cached["startTime"].as_str().map(str::to_string);
    let mut mem = ctx.mem.with(
        &uid,
        || {
            // First sight (or a restart of the simulator): the status counters hold the
            // outcomes of every finished pod already released from tracking.
            let mut m = JobMem {
                start_time: cached_start.clone(),
                succeeded: status_counts.0,
                failed: status_counts.1,
                ..JobMem::default()
            };
            for p in &pods {
                if outcome(p).is_some() && !tracked(p) {
                    m.counted.insert(uid_of(p.as_ref()));
                }
            }
            m
        },
        |m| {
            for p in &pods {
                let Some(ok) = outcome(p) else { continue };
                if m.counted.insert(uid_of(p.as_ref())) {
                    if ok {
                        m.succeeded += 1;
                    } else {
                        m.failed += 1;
                    }
                }
            }
            m.expected
                .retain(|(n, at)| !pod_names.contains(n) && at.elapsed() < EXPECTATION_TIMEOUT);
            m.clone()
        },
    );

    let mut conds: Vec<Value> = cached["conditions"].as_array().cloned().unwrap_or_default();
    let suspended_before = conds
        .iter()
        .any(|c| c["type"] == "Suspended" && c["status"] == "True");
    if spec.suspend == Some(true) {
        for p in &active {
            delete_pod(&pods_api, p).await?;
        }
        // Pods stopped by suspension are not failures.
        let counted = ctx.mem.with(&uid, JobMem::default, |m| {
            m.expected.clear();
            for p in &active {
                m.counted.insert(uid_of(p.as_ref()));
            }
            m.counted.clone()
        });
        upsert(
            &mut conds,
            condition("Suspended", true, "JobSuspended", "Job suspended", &now),
        );
        let desired = json!({
            "active": null,
            "ready": 0,
            "succeeded": nonzero(mem.succeeded),
            "failed": nonzero(mem.failed),
            "conditions": conds,
            "uncountedTerminatedPods": {},
        });
        write_status(&ctx, &jobs, &name, &uid, &cached, desired).await?;
        release(&ctx, &pods_api, &pods, Some(&counted)).await?;
        return Ok(Action::await_change());
    }
    if suspended_before {
        upsert(
            &mut conds,
            condition("Suspended", false, "JobResumed", "Job resumed", &now),
        );
        mem.start_time = Some(now.clone());
    }
    let start_time = mem.start_time.clone().unwrap_or_else(|| now.clone());
    ctx.mem.with(&uid, JobMem::default, |m| {
        m.start_time = Some(start_time.clone());
    });

    let completions = i64::from(spec.completions.unwrap_or(1).max(1));
    let parallelism = i64::from(spec.parallelism.unwrap_or(1).max(0));
    let backoff_limit = i64::from(spec.backoff_limit.unwrap_or(6));
    let on_failure = spec
        .template
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        == Some("OnFailure");
    let restart_failures: i64 = if on_failure {
        active.iter().map(|p| restarts(p)).sum()
    } else {
        0
    };
    let deadline = spec
        .active_deadline_seconds
        .and_then(|s| u64::try_from(s).ok())
        .map(Duration::from_secs);
    let running_for = parse_ts(&start_time).map_or(Duration::ZERO, since);

    let verdict: Option<(bool, &str, &str)> = if mem.succeeded >= completions {
        Some((
            true,
            "CompletionsReached",
            "Reached expected number of succeeded pods",
        ))
    } else if mem.failed + restart_failures > backoff_limit {
        Some((
            false,
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit",
        ))
    } else if deadline.is_some_and(|d| running_for >= d) {
        Some((
            false,
            "DeadlineExceeded",
            "Job was active longer than specified deadline",
        ))
    } else {
        None
    };

    if let Some((ok, reason, message)) = verdict {
        let target = if ok {
            "SuccessCriteriaMet"
        } else {
            "FailureTarget"
        };
        if !active.is_empty() {
            // As Kubernetes 1.31+ does: announce the outcome before terminating the pods, so a
            // watcher sees why they go before they are gone.
            let mut announced = conds.clone();
            upsert(
                &mut announced,
                condition(target, true, reason, message, &now),
            );
            let desired = json!({
                "startTime": start_time,
                "active": nonzero(i64::try_from(active.len()).unwrap_or(i64::MAX)),
                "ready": active.iter().filter(|p| is_ready(p)).count(),
                "succeeded": nonzero(mem.succeeded),
                "failed": nonzero(mem.failed),
                "conditions": announced,
                "uncountedTerminatedPods": {},
            });
            write_status(&ctx, &jobs, &name, &uid, &cached, desired).await?;
        }
        for p in &active {
            delete_pod(&pods_api, p).await?;
        }
        // Pods killed by a failure count as failed; leftovers of a success do not count.
        let (succeeded, failed, counted) = ctx.mem.with(&uid, JobMem::default, |m| {
            for p in &active {
                if m.counted.insert(uid_of(p.as_ref())) && !ok {
                    m.failed += 1;
                }
            }
            m.expected.clear();
            (m.succeeded, m.failed, m.counted.clone())
        });
        let mut desired = json!({
            "startTime": start_time,
            "active": null,
            "ready": 0,
            "succeeded": nonzero(succeeded),
            "failed": nonzero(failed),
            "uncountedTerminatedPods": {},
        });
        upsert(&mut conds, condition(target, true, reason, message, &now));
        let outcome = if ok { "Complete" } else { "Failed" };
        upsert(&mut conds, condition(outcome, true, reason, message, &now));
        if ok {
            desired["completionTime"] = json!(now);
        }
        desired["conditions"] = json!(conds);
        write_status(&ctx, &jobs, &name, &uid, &cached, desired.clone()).await?;
        release(&ctx, &pods_api, &pods, Some(&counted)).await?;
        ctx.mem
            .with(&uid, JobMem::default, |m| m.done = Some(desired));
        // Come back for the TTL (the status write also triggers a reconcile).
        return Ok(Action::requeue(Duration::from_millis(200)));
    }

    // Still running: keep `parallelism` pods going.
    let live = i64::try_from(active.len() + mem.expected.len()).unwrap_or(i64::MAX);
    let wanted = parallelism.min(completions - mem.succeeded).max(0);
    for _ in live..wanted {
        let created = create_pod(&pods_api, &job, &uid).await?;
        ctx.mem.with(&uid, JobMem::default, |m| {
            m.expected.push((created, Instant::now()));
        });
    }
    let active_now = live.max(wanted);
    let ready = active.iter().filter(|p| is_ready(p)).count();
    let desired = json!({
        "startTime": start_time,
        "active": nonzero(active_now),
        "ready": ready,
        "succeeded": nonzero(mem.succeeded),
        "failed": nonzero(mem.failed),
        "conditions": if conds.is_empty() { Value::Null } else { json!(conds) },
        "uncountedTerminatedPods": {},
    });
    write_status(&ctx, &jobs, &name, &uid, &cached, desired).await?;
    release(&ctx, &pods_api, &pods, Some(&mem.counted)).await?;
    Ok(match deadline {
        Some(d) => Action::requeue(d.saturating_sub(running_for).max(Duration::from_millis(10))),
        None => Action::await_change(),
    })
}

fn nonzero(n: i64) -> Value {
    if n == 0 { Value::Null } else { json!(n) }
}

async fn write_status(
    ctx: &Ctx,
    jobs: &Api<lean::Lean<Job>>,
    name: &str,
    uid: &str,
    cached: &Value,
    desired: Value,
) -> Result<(), SimError> {
    if subset_matches(&desired, cached) || ctx.written.get(uid).is_some_and(|w| w == desired) {
        return Ok(());
    }
    let pp = PatchParams {
        field_manager: Some(MANAGER.into()),
        ..PatchParams::default()
    };
    match jobs
        .patch_status(name, &pp, &Patch::Merge(json!({"status": desired.clone()})))
        .await
    {
        Ok(_) => {
            ctx.written.set(uid, desired);
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

async fn delete_pod(api: &Api<lean::Lean<Pod>>, p: &Pod) -> Result<(), SimError> {
    Ok(settled(
        api.delete(&p.name_any(), &DeleteParams::default()).await,
    )?)
}

/// Creates one pod from the Job's template and returns its name.
async fn create_pod(api: &Api<lean::Lean<Pod>>, job: &Job, uid: &str) -> Result<String, SimError> {
    let name = job.name_any();
    let template = job
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    let mut labels = meta.labels.unwrap_or_default();
    for (k, v) in [
        ("batch.kubernetes.io/job-name", name.as_str()),
        ("job-name", name.as_str()),
        (CONTROLLER_UID_LABEL, uid),
        ("controller-uid", uid),
    ] {
        labels.entry(k.to_string()).or_insert_with(|| v.to_string());
    }
    let base: String = name.chars().take(57).collect();
    let pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": format!("{base}-"),
            "labels": labels,
            "annotations": meta.annotations.unwrap_or_default(),
            "finalizers": [TRACKING_FINALIZER],
            "ownerReferences": [{
                "apiVersion": "batch/v1",
                "kind": "Job",
                "name": name,
                "uid": uid,
                "controller": true,
                "blockOwnerDeletion": true,
            }],
        },
        "spec": template.spec.unwrap_or_default(),
    });
    let pod: Pod = serde_json::from_value(pod).map_err(SimError::Encode)?;
    let created = api.create(&PostParams::default(), &lean::Lean(pod)).await?;
    Ok(created.name_any())
}
