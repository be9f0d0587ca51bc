//! Observation tests: the runner pod and Job views, run classification, requests, and the
//! inactivity timeout precedence.

#![allow(clippy::needless_pass_by_value)] // JSON literals read better inline

use super::*;
use crate::sessions::session::build::ANNOTATION_RUN;
use crate::sessions::session::project::SessionProjectSpec;
use agentic_api::sessions::{AgenticSessionSpec, AgenticSessionStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::{reflector, watcher};

fn pod(value: Value) -> RunnerPod {
    serde_json::from_value(value).unwrap()
}

fn runner_pod(state: Value, extra_status: Value) -> RunnerPod {
    let mut status = json!({"phase": "Running",
        "containerStatuses": [{"name": "ambient-code-runner", "restartCount": 0, "state": state}]});
    if let (Some(s), Some(e)) = (status.as_object_mut(), extra_status.as_object()) {
        for (k, v) in e {
            s.insert(k.clone(), v.clone());
        }
    }
    pod(
        json!({"metadata": {"name": "p", "namespace": "ns", "uid": "pod-uid",
        "labels": {"agentic-session": "s1", "app": "ambient-code-runner"},
        "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "s1-job",
                              "uid": "job-uid", "controller": true}]},
        "spec": {"nodeName": "node-a"}, "status": status}),
    )
}

#[test]
fn pod_views() {
    assert_eq!(pod_view(None), PodView::Missing);
    let running = runner_pod(
        json!({"running": {"startedAt": "2026-01-01T00:00:00Z"}}),
        json!({}),
    );
    assert_eq!(
        pod_view(Some(&running)),
        PodView::Running {
            node: Some("node-a".into())
        }
    );
    // OOM while the pod phase stays Running (a sidecar keeps it alive): still detected.
    let oom = runner_pod(
        json!({"terminated": {"exitCode": 137, "reason": "OOMKilled"}}),
        json!({}),
    );
    assert_eq!(
        pod_view(Some(&oom)),
        PodView::Terminated {
            exit_code: 137,
            reason: "OOMKilled".into(),
            message: String::new()
        }
    );
    let pulling = runner_pod(
        json!({"waiting": {"reason": "ImagePullBackOff", "message": "Back-off"}}),
        json!({"phase": "Pending"}),
    );
    assert!(
        matches!(pod_view(Some(&pulling)), PodView::Waiting { reason: Some(r), .. } if r == "ImagePullBackOff")
    );
    let unschedulable = pod(
        json!({"metadata": {"name": "p"}, "status": {"phase": "Pending",
        "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                        "message": "0/1 nodes are available"}]}}),
    );
    assert!(matches!(pod_view(Some(&unschedulable)),
        PodView::Waiting { unschedulable: Some(m), node: None, .. } if m.contains("0/1")));
    let init_failed = pod(
        json!({"metadata": {"name": "p"}, "status": {"phase": "Failed",
        "initContainerStatuses": [{"name": "init-hydrate", "restartCount": 0,
            "state": {"terminated": {"exitCode": 3}}}],
        "containerStatuses": [{"name": "ambient-code-runner", "restartCount": 0,
            "state": {"waiting": {"reason": "PodInitializing"}}}]}}),
    );
    assert!(matches!(pod_view(Some(&init_failed)),
        PodView::Failed { message, .. } if message.contains("init-hydrate")));
    let mut deleting = running.clone();
    deleting.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
    assert_eq!(pod_view(Some(&deleting)), PodView::Missing);
}

/// Compact caches holding `jobs` and `pods`, as their watches would fill them.
fn stores(
    jobs: Vec<RunnerJob>,
    pods: Vec<RunnerPod>,
) -> (CompactStore<JobEntry>, CompactStore<PodEntry>) {
    let job_store = CompactStore::new();
    let mut applier = crate::runtime::compact::Applier::new(job_store.clone());
    for j in jobs {
        applier.apply(watcher::Event::Apply(j));
    }
    let pod_store = CompactStore::new();
    let mut applier = crate::runtime::compact::Applier::new(pod_store.clone());
    for p in pods {
        applier.apply(watcher::Event::Apply(p));
    }
    (job_store, pod_store)
}

/// The instant the observation tests look at the caches.
fn now() -> Timestamp {
    "2026-06-01T12:00:00Z".parse().unwrap()
}

/// The runner objects of session `s1` in `ns` as [`observe_run`] classifies them at [`now`].
fn observe(
    jobs: &CompactStore<JobEntry>,
    pods: &CompactStore<PodEntry>,
    recent: &RecentWrites,
    run_id: Option<&str>,
) -> RunView {
    observe_run(
        jobs,
        &pods.group("ns", "s1"),
        recent,
        ("ns", "s1"),
        run_id,
        now(),
    )
}

fn job(run: &str, conditions: Value) -> RunnerJob {
    // As the API server sends it: the run is an annotation.
    serde_json::from_value(json!({"metadata": {"name": "s1-job", "namespace": "ns",
        "uid": "job-uid", "annotations": {ANNOTATION_RUN: run}},
        "status": {"conditions": conditions}}))
    .unwrap()
}

#[test]
fn run_classification() {
    let (jobs, pods) = stores(vec![], vec![]);
    assert_eq!(
        observe(&jobs, &pods, &RecentWrites::default(), Some("t1")),
        RunView::Nothing
    );

    let running = runner_pod(json!({"running": {}}), json!({}));
    let (jobs, pods) = stores(vec![job("t1", json!([]))], vec![running.clone()]);
    assert_eq!(
        observe(&jobs, &pods, &RecentWrites::default(), Some("t1")),
        RunView::Current {
            job: JobView::Active,
            pod: PodView::Running {
                node: Some("node-a".into())
            },
            pod_uid: Some("pod-uid".into())
        }
    );
    // The Job of an earlier run is a leftover, and so is a pod without a Job.
    assert_eq!(
        observe(&jobs, &pods, &RecentWrites::default(), Some("t2")),
        RunView::Leftover
    );
    let (jobs, pods) = stores(vec![], vec![running]);
    assert_eq!(
        observe(&jobs, &pods, &RecentWrites::default(), Some("t1")),
        RunView::Leftover
    );
    // The runner objects of a session of the same name in another namespace are not ours.
    assert_eq!(
        observe_run(
            &jobs,
            &pods.group("other", "s1"),
            &RecentWrites::default(),
            ("other", "s1"),
            Some("t1"),
            now(),
        ),
        RunView::Nothing
    );

    let (jobs, pods) = stores(
        vec![job(
            "t1",
            json!([{"type": "Failed", "status": "True", "reason": "DeadlineExceeded",
                    "message": "Job was active longer than specified deadline"}]),
        )],
        vec![],
    );
    assert!(matches!(
        observe(&jobs, &pods, &RecentWrites::default(), Some("t1")),
        RunView::Current { job: JobView::Failed { reason, .. }, pod: PodView::Missing, .. }
            if reason == "DeadlineExceeded"
    ));
}

#[test]
fn conditions_announcing_the_outcome_decide_like_the_outcome() {
    // Kubernetes 1.31+ writes these first and the Complete/Failed condition only once the
    // remaining pods are gone; other conditions and False ones decide nothing.
    let view = |conditions: Value| job_view(&job("t1", conditions));
    assert_eq!(
        view(
            json!([{"type": "FailureTarget", "status": "True", "reason": "DeadlineExceeded",
                     "message": "Job was active longer than specified deadline"}])
        ),
        JobView::Failed {
            reason: "DeadlineExceeded".into(),
            message: "Job was active longer than specified deadline".into()
        }
    );
    assert_eq!(
        view(json!([{"type": "SuccessCriteriaMet", "status": "True"}])),
        JobView::Complete
    );
    assert_eq!(
        view(json!([{"type": "FailureTarget", "status": "False"},
                    {"type": "Suspended", "status": "True"}])),
        JobView::Active
    );
}

/// A Job started `started_seconds_ago` before [`now`] with `activeDeadlineSeconds` `deadline`.
fn job_with_deadline(started_seconds_ago: i64, deadline: Option<i64>) -> RunnerJob {
    let start = now() - jiff::SignedDuration::from_secs(started_seconds_ago);
    serde_json::from_value(json!({"metadata": {"name": "s1-job", "namespace": "ns",
        "uid": "job-uid", "annotations": {ANNOTATION_RUN: "t1"}},
        "spec": {"activeDeadlineSeconds": deadline, "backoffLimit": 0},
        "status": {"startTime": start.to_string(), "active": 1}}))
    .unwrap()
}

/// The race behind a session that restarted forever instead of timing out: the Job controller
/// deletes the pods of a Job past its deadline before it records `Failed`, and the pod watch
/// shows the deletion first.
#[test]
fn a_pod_gone_after_the_jobs_deadline_is_a_timeout_not_a_lost_pod() {
    let recent = RecentWrites::default();
    let running = runner_pod(json!({"running": {}}), json!({}));
    let observed = |job: RunnerJob, pods: Vec<RunnerPod>| {
        let (jobs, pods) = stores(vec![job], pods);
        observe(&jobs, &pods, &recent, Some("t1"))
    };
    let timed_out = observed(job_with_deadline(5, Some(5)), vec![]);
    assert_eq!(
        timed_out,
        RunView::Current {
            job: JobView::Failed {
                reason: "DeadlineExceeded".into(),
                message: "the runner Job was active longer than its activeDeadlineSeconds".into()
            },
            pod: PodView::Missing,
            pod_uid: None
        }
    );
    let t = state::next(
        Some(SessionPhase::Running),
        &Observed {
            run: timed_out,
            recorded_pod_uid: Some("pod-uid".into()),
            ..Observed::default()
        },
    );
    assert_eq!(
        (t.to, t.reason.as_str(), t.effect, t.new_run),
        (SessionPhase::Failed, "Timeout", Effect::DeleteRun, false)
    );
    assert!(t.message.contains("spec.timeout"), "{}", t.message);

    // Before the deadline a missing pod is lost (the session starts a new runner) ...
    let lost = observed(job_with_deadline(4, Some(5)), vec![]);
    assert!(
        matches!(
            &lost,
            RunView::Current {
                job: JobView::Active,
                pod: PodView::Missing,
                ..
            }
        ),
        "{lost:?}"
    );
    let t = state::next(
        Some(SessionPhase::Running),
        &Observed {
            run: lost,
            ..Observed::default()
        },
    );
    assert_eq!((t.to, t.new_run), (SessionPhase::Pending, true));
    // ... and so it is without a deadline.
    assert!(matches!(
        observed(job_with_deadline(3_600, None), vec![]),
        RunView::Current {
            job: JobView::Active,
            ..
        }
    ));
    // A pod still running past the deadline is left to the Job controller to stop.
    assert!(matches!(
        observed(job_with_deadline(60, Some(5)), vec![running]),
        RunView::Current {
            job: JobView::Active,
            pod: PodView::Running { .. },
            ..
        }
    ));
}

/// The flip-flop a lagging Job cache used to cause: right after the Job of run `t2` was
/// created, the reconcile woken by the status write found no Job in the cache, took the run
/// as lost and sent the session back to `Pending` with a new run (whose Job the cache did
/// not show either, and so on).
#[test]
fn a_job_just_created_is_the_current_run_while_the_job_cache_is_behind() {
    let recent = RecentWrites::default();
    recent.job_created(
        "ns",
        "s1",
        CreatedJob {
            run_id: "t2".into(),
            uid: "job-uid".into(),
        },
    );
    let waiting = RunView::Current {
        job: JobView::Active,
        pod: PodView::Missing,
        pod_uid: None,
    };
    // The Job cache shows nothing yet, or still the previous run's Job.
    let (empty_jobs, no_pods) = stores(vec![], vec![]);
    let mut old = job("t1", json!([]));
    old.metadata.uid = Some("old-uid".into());
    let (old_jobs, _) = stores(vec![old], vec![]);
    for jobs in [&empty_jobs, &old_jobs] {
        let seen = observe(jobs, &no_pods, &recent, Some("t2"));
        assert_eq!(seen, waiting);
        let t = state::next(
            Some(SessionPhase::Creating),
            &Observed {
                run: seen,
                ..Observed::default()
            },
        );
        assert_eq!(
            (t.to, t.effect, t.new_run),
            (SessionPhase::Creating, Effect::None, false),
            "a lagging cache must not restart the run: {t:?}"
        );
    }
    // Without the memory of the create, the same caches read as a lost run.
    let forgetful = RecentWrites::default();
    let seen = observe(&empty_jobs, &no_pods, &forgetful, Some("t2"));
    assert_eq!(seen, RunView::Nothing);
    assert_eq!(
        state::next(
            Some(SessionPhase::Creating),
            &Observed {
                run: seen,
                ..Observed::default()
            }
        )
        .to,
        SessionPhase::Pending
    );
    // A pod of the created Job that the pod cache already shows belongs to the run.
    let running = runner_pod(json!({"running": {}}), json!({}));
    let (_, pods) = stores(vec![], vec![running]);
    assert_eq!(
        observe(&empty_jobs, &pods, &recent, Some("t2")),
        RunView::Current {
            job: JobView::Active,
            pod: PodView::Running {
                node: Some("node-a".into())
            },
            pod_uid: Some("pod-uid".into())
        }
    );
    // Another run is not answered by the remembered Job.
    assert_eq!(
        observe(&empty_jobs, &no_pods, &recent, Some("t3")),
        RunView::Nothing
    );
    // Once the cache shows the created Job it decides again: a Job deleted afterwards is gone.
    let (jobs, _) = stores(vec![job("t2", json!([]))], vec![]);
    assert_eq!(observe(&jobs, &no_pods, &recent, Some("t2")), waiting);
    assert!(recent.is_empty());
    assert_eq!(
        observe(&empty_jobs, &no_pods, &recent, Some("t2")),
        RunView::Nothing
    );
}

fn session_with(annotations: &[(&str, &str)], acted_on: Option<&str>) -> AgenticSession {
    let mut s = AgenticSession::new("s1", AgenticSessionSpec::default());
    s.metadata.annotations = Some(
        annotations
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    );
    s.status = Some(AgenticSessionStatus {
        observed_desired_phase_at: acted_on.map(str::to_owned),
        ..AgenticSessionStatus::default()
    });
    s
}

#[test]
fn requests() {
    let none = session_with(&[], None);
    assert_eq!(request(&none), (None, None));
    let stop = session_with(&[(api::ANNOTATION_DESIRED_PHASE, "Stopped")], None);
    assert_eq!(request(&stop).0, Some(Request::Stop(StoppedReason::User)));
    let idle = session_with(
        &[
            (api::ANNOTATION_DESIRED_PHASE, "Stopped"),
            (api::ANNOTATION_STOP_REASON, "inactivity"),
        ],
        None,
    );
    assert_eq!(
        request(&idle).0,
        Some(Request::Stop(StoppedReason::Inactivity))
    );
    let finished = session_with(
        &[
            (api::ANNOTATION_DESIRED_PHASE, "Stopped"),
            (api::ANNOTATION_STOP_REASON, "run-finished"),
        ],
        None,
    );
    assert_eq!(
        request(&finished).0,
        Some(Request::Stop(StoppedReason::User))
    );
    let start = session_with(
        &[
            (api::ANNOTATION_DESIRED_PHASE, "Running"),
            (api::ANNOTATION_START_REQUESTED_AT, "2026-01-01T00:00:00Z"),
        ],
        None,
    );
    assert_eq!(
        request(&start),
        (Some(Request::Start), Some("2026-01-01T00:00:00Z".into()))
    );
    // The same request again after it was acted on is only cleared (upstream restarted a
    // completed session from a lingering annotation).
    let lingering = session_with(
        &[
            (api::ANNOTATION_DESIRED_PHASE, "Running"),
            (api::ANNOTATION_START_REQUESTED_AT, "2026-01-01T00:00:00Z"),
        ],
        Some("2026-01-01T00:00:00Z"),
    );
    assert_eq!(request(&lingering).0, Some(Request::Stale));
    let garbage = session_with(&[(api::ANNOTATION_DESIRED_PHASE, "stopped")], None);
    assert_eq!(request(&garbage), (None, None));
}

#[test]
fn inactivity_precedence() {
    let mut s = AgenticSession::new("s1", AgenticSessionSpec::default());
    let project = SessionProject {
        spec: SessionProjectSpec {
            inactivity_timeout_seconds: Some(7200),
            mcp_servers: None,
        },
        ..SessionProject::default()
    };
    assert_eq!(inactivity_timeout(&s, None, 86_400), 86_400);
    assert_eq!(inactivity_timeout(&s, Some(&project), 86_400), 7200);
    s.spec.inactivity_timeout = Some(60);
    assert_eq!(inactivity_timeout(&s, Some(&project), 86_400), 60);
    s.spec.inactivity_timeout = Some(0);
    assert_eq!(inactivity_timeout(&s, Some(&project), 86_400), 0);
    assert_eq!(idle_deadline(&s, 0), None);

    let t = |secs: i64| Time(Timestamp::from_second(1_800_000_000 + secs).unwrap());
    s.metadata.creation_timestamp = Some(t(0));
    assert_eq!(idle_deadline(&s, 60), Some(t(60).0));
    s.status = Some(AgenticSessionStatus {
        start_time: Some(t(10)),
        ..AgenticSessionStatus::default()
    });
    assert_eq!(idle_deadline(&s, 60), Some(t(70).0));
    s.status.as_mut().unwrap().last_activity_time = Some(t(100));
    assert_eq!(idle_deadline(&s, 60), Some(t(160).0));
}

#[test]
fn token_refresh_schedule() {
    let now: Timestamp = "2026-01-01T01:00:00Z".parse().unwrap();
    // Refreshed 10 minutes ago: fresh for another 35 minutes.
    assert_eq!(
        token_fresh_for(Some("2026-01-01T00:50:00Z"), now),
        Some(Duration::from_mins(35))
    );
    // 45 minutes or older, unstamped or garbage: refresh now.
    assert_eq!(token_fresh_for(Some("2026-01-01T00:15:00Z"), now), None);
    assert_eq!(token_fresh_for(Some("2026-01-01T00:00:00Z"), now), None);
    assert_eq!(token_fresh_for(None, now), None);
    assert_eq!(token_fresh_for(Some("yesterday"), now), None);
}

#[test]
fn sync_state_of_caches() {
    let (store, mut writer) = reflector::store::<CachedSession>();
    assert!(!synced(&store));
    writer.apply_watcher_event(&watcher::Event::Init);
    writer.apply_watcher_event(&watcher::Event::InitDone);
    assert!(synced(&store));
    let pods = CompactStore::<PodEntry>::new();
    let mut applier = crate::runtime::compact::Applier::new(pods.clone());
    applier.apply(watcher::Event::Init);
    assert!(!pods.is_ready(), "not ready while the first list is read");
    applier.apply(watcher::Event::InitDone);
    assert!(pods.is_ready());
}

/// A cached session built from JSON (`status` as given).
fn cached(ns: &str, name: &str, status: Value) -> CachedSession {
    CachedSession::try_from(json!({
        "apiVersion": "vteam.ambient-code/v1alpha1", "kind": "AgenticSession",
        "metadata": {"name": name, "namespace": ns, "uid": format!("uid-{name}"), "resourceVersion": "1"},
        "spec": {"initialPrompt": "hi"},
        "status": status,
    }))
    .unwrap()
}

fn secrets_ready(phase: &str, status: &str, reason: &str) -> Value {
    json!({"phase": phase, "conditions": [{"type": "SecretsReady", "status": status, "reason": reason,
        "message": "m", "lastTransitionTime": "2026-01-01T00:00:00Z"}]})
}

#[test]
fn waiting_for_picks_pending_sessions_blocked_for_that_reason() {
    let (reader, mut writer) = reflector::store::<CachedSession>();
    writer.apply_watcher_event(&watcher::Event::Init);
    for s in [
        cached(
            "a",
            "waits",
            secrets_ready("Pending", "False", "VertexSecretMissing"),
        ),
        cached(
            "b",
            "waits-elsewhere",
            secrets_ready("Pending", "False", "VertexSecretMissing"),
        ),
        cached(
            "a",
            "other-reason",
            secrets_ready("Pending", "False", "RunnerSecretsMissing"),
        ),
        cached(
            "a",
            "ready",
            secrets_ready("Pending", "True", "VertexSecretMissing"),
        ),
        cached(
            "a",
            "running",
            secrets_ready("Running", "False", "VertexSecretMissing"),
        ),
        cached("a", "no-conditions", json!({"phase": "Pending"})),
    ] {
        writer.apply_watcher_event(&watcher::Event::InitApply(s));
    }
    writer.apply_watcher_event(&watcher::Event::InitDone);
    let names = |refs: Vec<ObjectRef<CachedSession>>| {
        let mut v: Vec<String> = refs
            .into_iter()
            .map(|r| format!("{}/{}", r.namespace.unwrap_or_default(), r.name))
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        names(waiting_for(&reader, Some("a"), "VertexSecretMissing")),
        ["a/waits"]
    );
    assert_eq!(
        names(waiting_for(&reader, None, "VertexSecretMissing")),
        ["a/waits", "b/waits-elsewhere"]
    );
    assert_eq!(
        names(waiting_for(&reader, None, "RunnerSecretsMissing")),
        ["a/other-reason"]
    );
    assert!(waiting_for(&reader, Some("c"), "VertexSecretMissing").is_empty());
}
