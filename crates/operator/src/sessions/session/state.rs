//! The phase state machine: one pure function, [`next`], from the recorded phase and what
//! was observed to the phase to record and the effect to carry out.

use agentic_api::sessions::{SessionPhase, StoppedReason};

/// How the runner Job of the current run ended or is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobView {
    /// Still running (or not started yet).
    Active,
    /// Finished with the `Complete` condition.
    Complete,
    /// Finished with the `Failed` condition.
    Failed {
        /// The Job condition's reason (`DeadlineExceeded`, `BackoffLimitExceeded`, ...).
        reason: String,
        /// The Job condition's message.
        message: String,
    },
}

/// What the runner pod of the current run is doing, judged by its runner container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodView {
    /// No runner pod of the current run exists.
    Missing,
    /// Not running yet.
    Waiting {
        /// The node the pod is bound to, once scheduled.
        node: Option<String>,
        /// The scheduler's message when the pod cannot be scheduled.
        unschedulable: Option<String>,
        /// The runner container's waiting reason (`ContainerCreating`, `ImagePullBackOff`, ...).
        reason: Option<String>,
        /// The runner container's waiting message.
        message: Option<String>,
    },
    /// The runner container is running.
    Running {
        /// The node the pod runs on.
        node: Option<String>,
    },
    /// The runner container terminated.
    Terminated {
        /// Its exit code.
        exit_code: i32,
        /// The kubelet's reason (`Completed`, `Error`, `OOMKilled`, ...).
        reason: String,
        /// The kubelet's message, if any.
        message: String,
    },
    /// The pod failed before the runner container ran (an init container failed, eviction).
    Failed {
        /// The pod's or the failing container's reason.
        reason: String,
        /// A message naming what failed.
        message: String,
    },
}

/// The runner objects of a session as the caches show them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunView {
    /// No runner Job and no runner pod exist.
    Nothing,
    /// Objects of an earlier run still exist (or are being deleted).
    Leftover,
    /// The Job of the current run exists.
    Current {
        /// The Job's state.
        job: JobView,
        /// Its pod's state.
        pod: PodView,
        /// UID of that pod, if there is one.
        pod_uid: Option<String>,
    },
}

/// A start or stop request from the `ambient-code.io/desired-phase` annotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// `Running`: start, restart or resume.
    Start,
    /// `Stopped`, with the reason the stop will be recorded under.
    Stop(StoppedReason),
    /// A request already acted on (its `*-requested-at` matches the status); only cleared.
    Stale,
}

/// Everything [`next`] decides on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// A pending start/stop request.
    pub request: Option<Request>,
    /// Why the session cannot run at all (a name too long), if so.
    pub invalid: Option<String>,
    /// The runner objects.
    pub run: RunView,
    /// `status.runnerPodUid`: the pod the session was running in.
    pub recorded_pod_uid: Option<String>,
    /// The inactivity timeout has expired (only meaningful while `Running`).
    pub idle: bool,
    /// In `Pending`: why the runner cannot start yet (a required Secret is missing).
    pub blocked: Option<Blocked>,
    /// `status.stoppedReason` as recorded.
    pub stopped_reason: Option<StoppedReason>,
}

/// Why a `Pending` session cannot start its runner yet: a Secret it needs is missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked {
    /// `Ready`/`SecretsReady` condition reason: [`REASON_RUNNER_SECRET_MISSING`] or
    /// [`REASON_VERTEX_SECRET_MISSING`].
    pub reason: &'static str,
    /// What is missing, naming the Secret and its namespace.
    pub message: String,
}

/// Reason of a session waiting for `ambient-runner-secrets` in its namespace.
pub const REASON_RUNNER_SECRET_MISSING: &str = "RunnerSecretMissing";
/// Reason of a session waiting for the Vertex AI source Secret in the backend's namespace.
pub const REASON_VERTEX_SECRET_MISSING: &str = "VertexSecretMissing";

impl Default for Observed {
    fn default() -> Self {
        Self {
            request: None,
            invalid: None,
            run: RunView::Nothing,
            recorded_pod_uid: None,
            idle: false,
            blocked: None,
            stopped_reason: None,
        }
    }
}

/// What the apply stage does for a transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Nothing.
    None,
    /// Provision credentials and create the runner Job and Service of the current run.
    StartRun,
    /// Delete the runner Job (its pods and Service go with it) and stray runner pods.
    DeleteRun,
}

/// The outcome of [`next`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// The phase to record (equal to the current one when nothing changes).
    pub to: SessionPhase,
    /// Reason of the `Ready` condition.
    pub reason: String,
    /// Message of the `Ready` condition.
    pub message: String,
    /// What to do before recording the phase.
    pub effect: Effect,
    /// Begin a new run: new `startTime`, clear `completionTime`, `lastActivityTime`,
    /// `stoppedReason` and `runnerPodUid`.
    pub new_run: bool,
    /// `stoppedReason` to record, if this transition decides it.
    pub stopped_reason: Option<StoppedReason>,
    /// The desired-phase request was handled and its annotation is cleared.
    pub acknowledge: bool,
}

impl Transition {
    fn to(phase: SessionPhase, reason: &str, message: impl Into<String>) -> Self {
        Self {
            to: phase,
            reason: reason.to_owned(),
            message: message.into(),
            effect: Effect::None,
            new_run: false,
            stopped_reason: None,
            acknowledge: false,
        }
    }

    fn effect(mut self, effect: Effect) -> Self {
        self.effect = effect;
        self
    }

    fn new_run(mut self) -> Self {
        self.new_run = true;
        self
    }
}

/// Waiting reasons of the runner container that fail the session at once.
pub const FATAL_WAITING_REASONS: [&str; 5] = [
    "ImagePullBackOff",
    "ErrImagePull",
    "CrashLoopBackOff",
    "CreateContainerConfigError",
    "InvalidImageName",
];

/// `Ready` reason of a stop.
pub fn stop_condition_reason(reason: StoppedReason) -> &'static str {
    match reason {
        StoppedReason::User => "UserStopped",
        StoppedReason::Inactivity => "InactivityTimeout",
    }
}

fn stop_message(reason: StoppedReason) -> &'static str {
    match reason {
        StoppedReason::User => "stopped on request",
        StoppedReason::Inactivity => "stopped after the inactivity timeout",
    }
}

fn cleanup(run: &RunView) -> Effect {
    if *run == RunView::Nothing {
        Effect::None
    } else {
        Effect::DeleteRun
    }
}

/// The state machine. `from` is `status.phase` (`None` before the first reconcile).
///
/// Order of precedence in non-terminal phases: an invalid session fails; a stop request
/// (or the idler, while `Running`) stops in every phase, including `Creating`; then the
/// runner objects decide. Terminal phases only react to a start request and clean up.
pub fn next(from: Option<SessionPhase>, obs: &Observed) -> Transition {
    use SessionPhase as P;
    let Some(from) = from else {
        return Transition::to(P::Pending, "Pending", "session accepted").new_run();
    };
    if from.is_terminal() {
        let mut t = match obs.request {
            Some(Request::Start) => {
                Transition::to(P::Pending, "Restarting", "restart requested").new_run()
            }
            _ => terminal_stay(from),
        };
        t.acknowledge = obs.request.is_some();
        if t.to == from {
            t.effect = cleanup(&obs.run);
        }
        return t;
    }
    let mut t = active(from, obs);
    t.acknowledge = obs.request.is_some();
    t
}

fn terminal_stay(from: SessionPhase) -> Transition {
    // An empty reason keeps the recorded Ready condition (written on the way in) as it is.
    Transition::to(from, "", "")
}

fn active(from: SessionPhase, obs: &Observed) -> Transition {
    use SessionPhase as P;
    if let Some(message) = &obs.invalid {
        return Transition::to(P::Failed, "InvalidName", message.clone()).effect(cleanup(&obs.run));
    }
    let stop = match obs.request {
        Some(Request::Stop(reason)) => Some(reason),
        _ if from == P::Running && obs.idle => Some(StoppedReason::Inactivity),
        _ => None,
    };
    if let Some(reason) = stop {
        let mut t = if obs.run == RunView::Nothing {
            Transition::to(
                P::Stopped,
                stop_condition_reason(reason),
                stop_message(reason),
            )
        } else {
            Transition::to(P::Stopping, "Stopping", stop_message(reason)).effect(Effect::DeleteRun)
        };
        t.stopped_reason = Some(reason);
        return t;
    }
    match from {
        P::Pending => match &obs.run {
            RunView::Leftover => Transition::to(
                P::Pending,
                "WaitingForPreviousRun",
                "waiting for the previous runner to be gone",
            )
            .effect(Effect::DeleteRun),
            _ => match &obs.blocked {
                Some(b) => Transition::to(P::Pending, b.reason, b.message.clone()),
                None => Transition::to(P::Creating, "Creating", "runner Job created")
                    .effect(Effect::StartRun),
            },
        },
        P::Stopping => {
            let reason = obs.stopped_reason.unwrap_or(StoppedReason::User);
            if obs.run == RunView::Nothing {
                Transition::to(
                    P::Stopped,
                    stop_condition_reason(reason),
                    stop_message(reason),
                )
            } else {
                Transition::to(P::Stopping, "Stopping", stop_message(reason))
                    .effect(Effect::DeleteRun)
            }
        }
        _ => match &obs.run {
            RunView::Nothing | RunView::Leftover => Transition::to(
                P::Pending,
                "PodMissing",
                "the runner Job is gone; starting a new runner",
            )
            .new_run(),
            RunView::Current { job, pod, pod_uid } => evaluate(
                from,
                job,
                pod,
                pod_uid.as_deref(),
                obs.recorded_pod_uid.as_deref(),
            ),
        },
    }
}

#[allow(clippy::too_many_lines)] // the runner outcomes, kept together
fn evaluate(
    from: SessionPhase,
    job: &JobView,
    pod: &PodView,
    pod_uid: Option<&str>,
    recorded: Option<&str>,
) -> Transition {
    use SessionPhase as P;
    if let JobView::Failed { reason, message } = job
        && reason == "DeadlineExceeded"
    {
        return Transition::to(
            P::Failed,
            "Timeout",
            format!("spec.timeout expired: {message}"),
        )
        .effect(Effect::DeleteRun);
    }
    let pod_missing = Transition::to(
        P::Pending,
        "PodMissing",
        "the runner pod was deleted; starting a new runner",
    )
    .effect(Effect::DeleteRun)
    .new_run();
    match pod {
        PodView::Terminated {
            exit_code,
            reason,
            message,
        } => {
            let detail = |what: &str| {
                if message.is_empty() {
                    format!("{what} (exit code {exit_code})")
                } else {
                    format!("{what} (exit code {exit_code}): {message}")
                }
            };
            let t = if reason == "OOMKilled" {
                Transition::to(
                    P::Failed,
                    "OOMKilled",
                    detail("the runner ran out of memory"),
                )
            } else if *exit_code == 0 {
                Transition::to(P::Completed, "Completed", "the runner finished")
            } else if *exit_code == 2 {
                Transition::to(
                    P::Failed,
                    "PrerequisiteFailed",
                    detail("a runner prerequisite is missing"),
                )
            } else if *exit_code == 137 || *exit_code == 143 {
                Transition::to(
                    P::Failed,
                    "RunnerKilled",
                    detail("the runner was killed (failed liveness probe or eviction)"),
                )
            } else {
                Transition::to(P::Failed, "RunnerExit", detail("the runner exited"))
            };
            return t.effect(Effect::DeleteRun);
        }
        PodView::Failed { reason, message } => {
            return Transition::to(P::Failed, "PodFailed", format!("{reason}: {message}"))
                .effect(Effect::DeleteRun);
        }
        _ => {}
    }
    if *job == JobView::Complete {
        return Transition::to(P::Completed, "Completed", "the runner finished")
            .effect(Effect::DeleteRun);
    }
    let replaced = matches!((recorded, pod_uid), (Some(r), Some(u)) if r != u);
    if from == P::Running && (replaced || *pod == PodView::Missing) {
        return pod_missing;
    }
    if let PodView::Waiting {
        reason: Some(reason),
        message,
        ..
    } = pod
        && FATAL_WAITING_REASONS.contains(&reason.as_str())
    {
        return Transition::to(
            P::Failed,
            reason,
            message.clone().unwrap_or_else(|| reason.clone()),
        )
        .effect(Effect::DeleteRun);
    }
    match job {
        JobView::Complete => Transition::to(P::Completed, "Completed", "the runner finished")
            .effect(Effect::DeleteRun),
        JobView::Failed { reason, message } => {
            if *pod == PodView::Missing {
                pod_missing
            } else {
                Transition::to(P::Failed, "PodFailed", format!("{reason}: {message}"))
                    .effect(Effect::DeleteRun)
            }
        }
        JobView::Active => match pod {
            PodView::Running { .. } => {
                Transition::to(P::Running, "Running", "the runner is running")
            }
            PodView::Waiting {
                unschedulable: Some(message),
                ..
            } => Transition::to(P::Creating, "Unschedulable", message.clone()),
            PodView::Waiting {
                reason: Some(reason),
                ..
            } => Transition::to(P::Creating, reason, "waiting for the runner container"),
            _ => Transition::to(P::Creating, "Creating", "waiting for the runner pod"),
        },
    }
}

#[cfg(test)]
mod tests;
