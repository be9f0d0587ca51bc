//! The state machine as a table: recorded phase, observation, expected phase, `Ready`
//! reason and effect.

use super::*;
use SessionPhase as P;

fn current(job: JobView, pod: PodView) -> RunView {
    RunView::Current {
        job,
        pod,
        pod_uid: Some("pod-1".into()),
    }
}

fn running_pod() -> PodView {
    PodView::Running {
        node: Some("n".into()),
    }
}

fn waiting(reason: &str) -> PodView {
    PodView::Waiting {
        node: Some("n".into()),
        unschedulable: None,
        reason: Some(reason.into()),
        message: Some(format!("{reason} message")),
    }
}

fn terminated(exit_code: i32, reason: &str) -> PodView {
    PodView::Terminated {
        exit_code,
        reason: reason.into(),
        message: String::new(),
    }
}

fn obs(run: RunView) -> Observed {
    Observed {
        run,
        recorded_pod_uid: Some("pod-1".into()),
        ..Observed::default()
    }
}

fn with(mut o: Observed, f: impl FnOnce(&mut Observed)) -> Observed {
    f(&mut o);
    o
}

#[test]
#[allow(clippy::too_many_lines, clippy::type_complexity)] // the table
fn transition_table() {
    let stop = Some(Request::Stop(StoppedReason::User));
    let rows: Vec<(&str, Option<P>, Observed, P, &str, Effect)> = vec![
        (
            "new session",
            None,
            obs(RunView::Nothing),
            P::Pending,
            "Pending",
            Effect::None,
        ),
        (
            "pending starts a run",
            Some(P::Pending),
            obs(RunView::Nothing),
            P::Creating,
            "Creating",
            Effect::StartRun,
        ),
        (
            "pending adopts its own job after a restart",
            Some(P::Pending),
            obs(current(JobView::Active, PodView::Missing)),
            P::Creating,
            "Creating",
            Effect::StartRun,
        ),
        (
            "pending waits for the previous run",
            Some(P::Pending),
            obs(RunView::Leftover),
            P::Pending,
            "WaitingForPreviousRun",
            Effect::DeleteRun,
        ),
        (
            "pending blocked by a missing secret",
            Some(P::Pending),
            with(obs(RunView::Nothing), |o| {
                o.blocked = Some(Blocked {
                    reason: REASON_RUNNER_SECRET_MISSING,
                    message: "missing".into(),
                });
            }),
            P::Pending,
            "RunnerSecretMissing",
            Effect::None,
        ),
        (
            "stop while pending",
            Some(P::Pending),
            with(obs(RunView::Nothing), |o| {
                o.request = stop;
            }),
            P::Stopped,
            "UserStopped",
            Effect::None,
        ),
        (
            "stop while creating with a pod (upstream ignored it)",
            Some(P::Creating),
            with(
                obs(current(JobView::Active, waiting("ContainerCreating"))),
                |o| o.request = stop,
            ),
            P::Stopping,
            "Stopping",
            Effect::DeleteRun,
        ),
        (
            "stop while creating an unschedulable pod",
            Some(P::Creating),
            with(
                obs(current(
                    JobView::Active,
                    PodView::Waiting {
                        node: None,
                        unschedulable: Some("0/1 nodes".into()),
                        reason: None,
                        message: None,
                    },
                )),
                |o| o.request = stop,
            ),
            P::Stopping,
            "Stopping",
            Effect::DeleteRun,
        ),
        (
            "stop while running",
            Some(P::Running),
            with(obs(current(JobView::Active, running_pod())), |o| {
                o.request = stop;
            }),
            P::Stopping,
            "Stopping",
            Effect::DeleteRun,
        ),
        (
            "idle while running",
            Some(P::Running),
            with(obs(current(JobView::Active, running_pod())), |o| {
                o.idle = true;
            }),
            P::Stopping,
            "Stopping",
            Effect::DeleteRun,
        ),
        (
            "idle flag ignored outside Running",
            Some(P::Creating),
            with(
                obs(current(JobView::Active, waiting("ContainerCreating"))),
                |o| o.idle = true,
            ),
            P::Creating,
            "ContainerCreating",
            Effect::None,
        ),
        (
            "stopping waits for the runner",
            Some(P::Stopping),
            obs(current(JobView::Active, running_pod())),
            P::Stopping,
            "Stopping",
            Effect::DeleteRun,
        ),
        (
            "stopping waits for leftovers",
            Some(P::Stopping),
            obs(RunView::Leftover),
            P::Stopping,
            "Stopping",
            Effect::DeleteRun,
        ),
        (
            "stopping ends when all is gone",
            Some(P::Stopping),
            with(obs(RunView::Nothing), |o| {
                o.stopped_reason = Some(StoppedReason::Inactivity);
            }),
            P::Stopped,
            "InactivityTimeout",
            Effect::None,
        ),
        (
            "creating waits for the pod",
            Some(P::Creating),
            obs(current(JobView::Active, PodView::Missing)),
            P::Creating,
            "Creating",
            Effect::None,
        ),
        (
            "creating reports unschedulable",
            Some(P::Creating),
            obs(current(
                JobView::Active,
                PodView::Waiting {
                    node: None,
                    unschedulable: Some("0/1 nodes".into()),
                    reason: None,
                    message: None,
                },
            )),
            P::Creating,
            "Unschedulable",
            Effect::None,
        ),
        (
            "creating reports container creating",
            Some(P::Creating),
            obs(current(JobView::Active, waiting("ContainerCreating"))),
            P::Creating,
            "ContainerCreating",
            Effect::None,
        ),
        (
            "image pull failure fails",
            Some(P::Creating),
            obs(current(JobView::Active, waiting("ImagePullBackOff"))),
            P::Failed,
            "ImagePullBackOff",
            Effect::DeleteRun,
        ),
        (
            "err image pull fails",
            Some(P::Creating),
            obs(current(JobView::Active, waiting("ErrImagePull"))),
            P::Failed,
            "ErrImagePull",
            Effect::DeleteRun,
        ),
        (
            "container running",
            Some(P::Creating),
            obs(current(JobView::Active, running_pod())),
            P::Running,
            "Running",
            Effect::None,
        ),
        (
            "running stays running",
            Some(P::Running),
            obs(current(JobView::Active, running_pod())),
            P::Running,
            "Running",
            Effect::None,
        ),
        (
            "exit 0 completes",
            Some(P::Running),
            obs(current(JobView::Active, terminated(0, "Completed"))),
            P::Completed,
            "Completed",
            Effect::DeleteRun,
        ),
        (
            "exit 0 from creating completes",
            Some(P::Creating),
            obs(current(JobView::Complete, terminated(0, "Completed"))),
            P::Completed,
            "Completed",
            Effect::DeleteRun,
        ),
        (
            "job complete without pod completes",
            Some(P::Running),
            with(obs(current(JobView::Complete, PodView::Missing)), |o| {
                o.recorded_pod_uid = None;
            }),
            P::Completed,
            "Completed",
            Effect::DeleteRun,
        ),
        (
            "exit 2 is a prerequisite failure",
            Some(P::Running),
            obs(current(JobView::Active, terminated(2, "Error"))),
            P::Failed,
            "PrerequisiteFailed",
            Effect::DeleteRun,
        ),
        (
            "exit 1 is a runner exit",
            Some(P::Creating),
            obs(current(JobView::Active, terminated(1, "Error"))),
            P::Failed,
            "RunnerExit",
            Effect::DeleteRun,
        ),
        (
            "OOM while running (upstream missed it)",
            Some(P::Running),
            obs(current(JobView::Active, terminated(137, "OOMKilled"))),
            P::Failed,
            "OOMKilled",
            Effect::DeleteRun,
        ),
        (
            "liveness kill while running (upstream missed it)",
            Some(P::Running),
            obs(current(JobView::Active, terminated(137, "Error"))),
            P::Failed,
            "RunnerKilled",
            Effect::DeleteRun,
        ),
        (
            "init container failure",
            Some(P::Creating),
            obs(current(
                JobView::Active,
                PodView::Failed {
                    reason: "InitFailed".into(),
                    message: "init-hydrate exited 1".into(),
                },
            )),
            P::Failed,
            "PodFailed",
            Effect::DeleteRun,
        ),
        (
            "job deadline is a timeout",
            Some(P::Running),
            obs(current(
                JobView::Failed {
                    reason: "DeadlineExceeded".into(),
                    message: "too long".into(),
                },
                terminated(137, "Error"),
            )),
            P::Failed,
            "Timeout",
            Effect::DeleteRun,
        ),
        (
            "job deadline while creating",
            Some(P::Creating),
            obs(current(
                JobView::Failed {
                    reason: "DeadlineExceeded".into(),
                    message: "too long".into(),
                },
                PodView::Missing,
            )),
            P::Failed,
            "Timeout",
            Effect::DeleteRun,
        ),
        (
            "pod deleted while running",
            Some(P::Running),
            obs(current(JobView::Active, PodView::Missing)),
            P::Pending,
            "PodMissing",
            Effect::DeleteRun,
        ),
        (
            "pod replaced while running",
            Some(P::Running),
            with(
                obs(current(JobView::Active, waiting("ContainerCreating"))),
                |o| {
                    o.recorded_pod_uid = Some("pod-0".into());
                },
            ),
            P::Pending,
            "PodMissing",
            Effect::DeleteRun,
        ),
        (
            "job failed because its pod was deleted",
            Some(P::Creating),
            obs(current(
                JobView::Failed {
                    reason: "BackoffLimitExceeded".into(),
                    message: "m".into(),
                },
                PodView::Missing,
            )),
            P::Pending,
            "PodMissing",
            Effect::DeleteRun,
        ),
        (
            "job gone while running",
            Some(P::Running),
            obs(RunView::Nothing),
            P::Pending,
            "PodMissing",
            Effect::None,
        ),
        (
            "job gone while creating",
            Some(P::Creating),
            obs(RunView::Leftover),
            P::Pending,
            "PodMissing",
            Effect::None,
        ),
        (
            "invalid name fails",
            Some(P::Pending),
            with(obs(RunView::Nothing), |o| {
                o.invalid = Some("too long".into());
            }),
            P::Failed,
            "InvalidName",
            Effect::None,
        ),
        (
            "completed stays and cleans up",
            Some(P::Completed),
            obs(current(JobView::Complete, terminated(0, "Completed"))),
            P::Completed,
            "",
            Effect::DeleteRun,
        ),
        (
            "completed idle resync does nothing",
            Some(P::Completed),
            obs(RunView::Nothing),
            P::Completed,
            "",
            Effect::None,
        ),
        (
            "failed keeps its reason",
            Some(P::Failed),
            obs(RunView::Nothing),
            P::Failed,
            "",
            Effect::None,
        ),
        (
            "resume from stopped",
            Some(P::Stopped),
            with(obs(RunView::Nothing), |o| {
                o.request = Some(Request::Start);
            }),
            P::Pending,
            "Restarting",
            Effect::None,
        ),
        (
            "resume from failed with the old pod still there",
            Some(P::Failed),
            with(obs(RunView::Leftover), |o| {
                o.request = Some(Request::Start);
            }),
            P::Pending,
            "Restarting",
            Effect::None,
        ),
        (
            "stale start request only cleared",
            Some(P::Completed),
            with(obs(RunView::Nothing), |o| {
                o.request = Some(Request::Stale);
            }),
            P::Completed,
            "",
            Effect::None,
        ),
        (
            "stop request on a stopped session only cleared",
            Some(P::Stopped),
            with(obs(RunView::Nothing), |o| {
                o.request = stop;
            }),
            P::Stopped,
            "",
            Effect::None,
        ),
        (
            "start request while running only cleared",
            Some(P::Running),
            with(obs(current(JobView::Active, running_pod())), |o| {
                o.request = Some(Request::Start);
            }),
            P::Running,
            "Running",
            Effect::None,
        ),
    ];
    for (name, from, observed, to, reason, effect) in rows {
        let t = next(from, &observed);
        assert_eq!(
            (t.to, t.reason.as_str(), t.effect),
            (to, reason, effect),
            "{name}: {t:?}"
        );
        assert_eq!(
            t.acknowledge,
            observed.request.is_some(),
            "{name}: acknowledge"
        );
    }
}

#[test]
fn new_runs_and_stop_reasons() {
    assert!(next(None, &Observed::default()).new_run);
    let resume = next(
        Some(P::Stopped),
        &with(Observed::default(), |o| {
            o.request = Some(Request::Start);
        }),
    );
    assert!(resume.new_run);
    let missing = next(
        Some(P::Running),
        &obs(current(JobView::Active, PodView::Missing)),
    );
    assert!(missing.new_run);
    let running = next(
        Some(P::Creating),
        &obs(current(JobView::Active, running_pod())),
    );
    assert!(!running.new_run);
    let idle = next(
        Some(P::Running),
        &with(obs(current(JobView::Active, running_pod())), |o| {
            o.idle = true;
        }),
    );
    assert_eq!(idle.stopped_reason, Some(StoppedReason::Inactivity));
    let user = next(
        Some(P::Creating),
        &with(obs(RunView::Nothing), |o| {
            o.request = Some(Request::Stop(StoppedReason::User));
        }),
    );
    assert_eq!(
        (user.to, user.stopped_reason),
        (P::Stopped, Some(StoppedReason::User))
    );
}

#[test]
fn messages_name_the_cause() {
    let oom = next(
        Some(P::Running),
        &obs(current(JobView::Active, terminated(137, "OOMKilled"))),
    );
    assert!(oom.message.contains("out of memory"), "{}", oom.message);
    assert!(oom.message.contains("137"), "{}", oom.message);
    let timeout = next(
        Some(P::Running),
        &obs(current(
            JobView::Failed {
                reason: "DeadlineExceeded".into(),
                message: "Job was active longer than specified deadline".into(),
            },
            PodView::Missing,
        )),
    );
    assert!(
        timeout.message.contains("spec.timeout"),
        "{}",
        timeout.message
    );
}
