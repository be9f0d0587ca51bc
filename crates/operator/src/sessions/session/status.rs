//! Pure status computation: the status a transition leads to, conditions that change their
//! `lastTransitionTime` only when their status flips, and the merge patch between two
//! statuses (empty when nothing changed, so a settled session is never written).

use agentic_api::sessions::{AgenticSessionStatus, SessionPhase};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use serde_json::{Map, Value};

use super::state::{Observed, PodView, RunView, Transition, stop_condition_reason};

/// What the status computation needs besides the transition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusInputs {
    /// The current time, truncated to seconds.
    pub now: Timestamp,
    /// `metadata.generation` of the session.
    pub generation: Option<i64>,
    /// The `*-requested-at` value of the request being acknowledged, if any.
    pub requested_at: Option<String>,
}

/// `now` without sub-second digits (the precision `metav1.Time` keeps).
pub fn truncate(now: Timestamp) -> Timestamp {
    Timestamp::from_second(now.as_second()).unwrap_or(now)
}

fn upsert(
    conditions: &mut Vec<Condition>,
    type_: &str,
    ok: bool,
    reason: &str,
    message: &str,
    inputs: &StatusInputs,
) {
    let status = if ok { "True" } else { "False" };
    let existing = conditions
        .iter_mut()
        .find(|c| c.type_.eq_ignore_ascii_case(type_));
    match existing {
        Some(c) => {
            if c.status != status {
                c.last_transition_time = Time(inputs.now);
            }
            type_.clone_into(&mut c.type_);
            status.clone_into(&mut c.status);
            reason.clone_into(&mut c.reason);
            message.clone_into(&mut c.message);
            c.observed_generation = inputs.generation;
        }
        None => conditions.push(Condition {
            type_: type_.to_owned(),
            status: status.to_owned(),
            reason: reason.to_owned(),
            message: message.to_owned(),
            last_transition_time: Time(inputs.now),
            observed_generation: inputs.generation,
        }),
    }
}

/// Termination reasons of a container that was never started (its process never ran).
const NEVER_STARTED: [&str; 2] = ["StartError", "ContainerCannotRun"];

/// The status after `t`, computed from the `current` one.
#[allow(clippy::too_many_lines)] // one rule per phase, kept together
pub fn desired(
    current: Option<&AgenticSessionStatus>,
    t: &Transition,
    obs: &Observed,
    inputs: &StatusInputs,
) -> AgenticSessionStatus {
    use SessionPhase as P;
    let mut s = current.cloned().unwrap_or_default();
    let from = s.phase;
    let now = Time(inputs.now);
    s.phase = Some(t.to);
    s.observed_generation = inputs.generation;
    if t.new_run {
        // The start time names the run (the Job carries it), so it must move forward.
        let start = match &s.start_time {
            Some(Time(prev)) if prev.as_second() >= inputs.now.as_second() => {
                Timestamp::from_second(prev.as_second() + 1).unwrap_or(inputs.now)
            }
            _ => inputs.now,
        };
        s.start_time = Some(Time(start));
        s.completion_time = None;
        s.last_activity_time = None;
        s.stopped_reason = None;
        s.runner_pod_uid = None;
    }
    if t.to.is_terminal() && from.is_none_or(|f| !f.is_terminal()) {
        s.completion_time = Some(now.clone());
    }
    if let Some(reason) = t.stopped_reason {
        s.stopped_reason = Some(reason);
    }
    if t.acknowledge && inputs.requested_at.is_some() {
        s.observed_desired_phase_at.clone_from(&inputs.requested_at);
    }
    let mut conditions = s.conditions.take().unwrap_or_default();
    if s.runner_started_at.is_none() {
        // A session taken over from the previous operator: its runner ran if it reported
        // RunnerStarted=True, so a later run is a resume.
        s.runner_started_at = conditions
            .iter()
            .find(|c| c.type_.eq_ignore_ascii_case("RunnerStarted") && c.status == "True")
            .map(|c| c.last_transition_time.clone());
    }
    if !t.reason.is_empty() {
        upsert(
            &mut conditions,
            "Ready",
            t.to == P::Running,
            &t.reason,
            &t.message,
            inputs,
        );
    }
    let stop_reason = s.stopped_reason.map(stop_condition_reason);
    match t.to {
        P::Pending => {
            if from != Some(P::Pending) || t.new_run {
                upsert(
                    &mut conditions,
                    "PodCreated",
                    false,
                    "PodMissing",
                    "the runner pod is not created yet",
                    inputs,
                );
            }
            if t.reason == super::state::REASON_RUNNER_SECRET_MISSING
                || t.reason == super::state::REASON_VERTEX_SECRET_MISSING
            {
                upsert(
                    &mut conditions,
                    "SecretsReady",
                    false,
                    &t.reason,
                    &t.message,
                    inputs,
                );
            }
        }
        P::Creating if from == Some(P::Pending) => {
            upsert(
                &mut conditions,
                "SecretsReady",
                true,
                "AllRequiredSecretsFound",
                "the secrets the runner needs exist",
                inputs,
            );
            upsert(
                &mut conditions,
                "PodCreated",
                true,
                "PodCreated",
                "the runner Job was created",
                inputs,
            );
        }
        // Only on a transition: a later pass of a stopped session (no reason, no message)
        // leaves the conditions as they are.
        P::Stopping | P::Stopped if !t.reason.is_empty() => {
            let reason = stop_reason.unwrap_or("UserStopped");
            for type_ in ["PodCreated", "RunnerStarted"] {
                upsert(&mut conditions, type_, false, reason, &t.message, inputs);
            }
        }
        _ => {}
    }
    if let RunView::Current { pod, pod_uid, .. } = &obs.run
        && matches!(t.to, P::Creating | P::Running)
    {
        match pod {
            PodView::Waiting {
                unschedulable: Some(message),
                ..
            } => upsert(
                &mut conditions,
                "PodScheduled",
                false,
                "Unschedulable",
                message,
                inputs,
            ),
            PodView::Waiting {
                node: Some(node), ..
            }
            | PodView::Running { node: Some(node) } => upsert(
                &mut conditions,
                "PodScheduled",
                true,
                "Scheduled",
                &format!("Scheduled on {node}"),
                inputs,
            ),
            _ => {}
        }
        if t.to == P::Running {
            upsert(
                &mut conditions,
                "RunnerStarted",
                true,
                "ContainerRunning",
                "the runner container is running",
                inputs,
            );
            if s.runner_started_at.is_none() {
                s.runner_started_at = Some(now.clone());
            }
            if s.runner_pod_uid.is_none() {
                s.runner_pod_uid.clone_from(pod_uid);
            }
        }
    }
    // A runner seen only after it ended (a short run, or one that ended while the operator
    // was down) still ran: a later start must resume rather than run the prompt again. One
    // that could not be started at all did not.
    if let RunView::Current {
        pod: PodView::Terminated { reason, .. },
        pod_uid,
        ..
    } = &obs.run
        && s.runner_started_at.is_none()
        && !NEVER_STARTED.contains(&reason.as_str())
    {
        s.runner_started_at = Some(now.clone());
        if s.runner_pod_uid.is_none() {
            s.runner_pod_uid.clone_from(pod_uid);
        }
    }
    s.conditions = (!conditions.is_empty()).then_some(conditions);
    s
}

/// A JSON merge patch turning `current` into `desired` (top-level status fields; `null`
/// removes a field), or `None` when they are equal.
pub fn merge_patch(
    current: Option<&AgenticSessionStatus>,
    desired: &AgenticSessionStatus,
) -> Result<Option<Value>, serde_json::Error> {
    if current == Some(desired) {
        return Ok(None);
    }
    let before = match current {
        Some(c) => serde_json::to_value(c)?,
        None => Value::Object(Map::new()),
    };
    let after = serde_json::to_value(desired)?;
    let empty = Map::new();
    let before = before.as_object().unwrap_or(&empty);
    let after = after.as_object().unwrap_or(&empty);
    let mut patch = Map::new();
    for (key, value) in after {
        if before.get(key) != Some(value) {
            patch.insert(key.clone(), value.clone());
        }
    }
    for key in before.keys() {
        if !after.contains_key(key) {
            patch.insert(key.clone(), Value::Null);
        }
    }
    Ok((!patch.is_empty()).then_some(Value::Object(patch)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sessions::session::state::{Effect, JobView, next};
    use agentic_api::sessions::StoppedReason;

    fn inputs(second: i64) -> StatusInputs {
        StatusInputs {
            now: Timestamp::from_second(1_800_000_000 + second).unwrap(),
            generation: Some(1),
            requested_at: None,
        }
    }

    fn ready(s: &AgenticSessionStatus) -> &Condition {
        s.conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == "Ready")
            .unwrap()
    }

    #[test]
    fn a_runner_seen_only_after_it_ended_counts_as_started() {
        let obs = Observed::default();
        let pending = desired(None, &next(None, &obs), &obs, &inputs(0));
        for (code, reason) in [(0, "Completed"), (1, "Error"), (137, "OOMKilled")] {
            let ended = Observed {
                run: RunView::Current {
                    job: JobView::Active,
                    pod: PodView::Terminated {
                        exit_code: code,
                        reason: reason.into(),
                        message: String::new(),
                    },
                    pod_uid: Some("uid-7".into()),
                },
                ..Observed::default()
            };
            let t = next(Some(SessionPhase::Creating), &ended);
            assert!(t.to.is_terminal(), "{reason}: {:?}", t.to);
            let after = desired(Some(&pending), &t, &ended, &inputs(4));
            assert_eq!(
                after.runner_started_at,
                Some(Time(inputs(4).now)),
                "{reason}"
            );
            assert_eq!(after.runner_pod_uid.as_deref(), Some("uid-7"), "{reason}");
        }
        // A runner that could not be started does not count, nor a pod that failed before it.
        for reason in NEVER_STARTED {
            let not_started = Observed {
                run: RunView::Current {
                    job: JobView::Active,
                    pod: PodView::Terminated {
                        exit_code: 128,
                        reason: reason.into(),
                        message: String::new(),
                    },
                    pod_uid: Some("uid-9".into()),
                },
                ..Observed::default()
            };
            let t = next(Some(SessionPhase::Creating), &not_started);
            assert_eq!(
                desired(Some(&pending), &t, &not_started, &inputs(4)).runner_started_at,
                None,
                "{reason}"
            );
        }
        let never_ran = Observed {
            run: RunView::Current {
                job: JobView::Active,
                pod: PodView::Failed {
                    reason: "Evicted".into(),
                    message: String::new(),
                },
                pod_uid: Some("uid-8".into()),
            },
            ..Observed::default()
        };
        let t = next(Some(SessionPhase::Creating), &never_ran);
        assert_eq!(
            desired(Some(&pending), &t, &never_ran, &inputs(4)).runner_started_at,
            None
        );
    }

    #[test]
    fn lifecycle_fields() {
        let obs = Observed::default();
        let t = next(None, &obs);
        let pending = desired(None, &t, &obs, &inputs(0));
        assert_eq!(pending.phase, Some(SessionPhase::Pending));
        assert_eq!(pending.start_time, Some(Time(inputs(0).now)));
        assert_eq!(ready(&pending).status, "False");

        let running_obs = Observed {
            run: RunView::Current {
                job: JobView::Active,
                pod: PodView::Running {
                    node: Some("node-a".into()),
                },
                pod_uid: Some("uid-1".into()),
            },
            ..Observed::default()
        };
        let t = next(Some(SessionPhase::Creating), &running_obs);
        let running = desired(Some(&pending), &t, &running_obs, &inputs(5));
        assert_eq!(running.runner_pod_uid.as_deref(), Some("uid-1"));
        assert_eq!(running.runner_started_at, Some(Time(inputs(5).now)));
        let ready_cond = ready(&running);
        assert_eq!(
            (ready_cond.status.as_str(), ready_cond.reason.as_str()),
            ("True", "Running")
        );
        let scheduled = running
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == "PodScheduled")
            .unwrap();
        assert_eq!(scheduled.message, "Scheduled on node-a");

        // The same observation again: nothing to write.
        let again = desired(Some(&running), &t, &running_obs, &inputs(9));
        assert_eq!(merge_patch(Some(&running), &again).unwrap(), None);

        // Completion: completionTime set, Ready flips with a new transition time.
        let done_obs = Observed {
            run: RunView::Current {
                job: JobView::Active,
                pod: PodView::Terminated {
                    exit_code: 0,
                    reason: "Completed".into(),
                    message: String::new(),
                },
                pod_uid: Some("uid-1".into()),
            },
            ..Observed::default()
        };
        let t = next(Some(SessionPhase::Running), &done_obs);
        assert_eq!(t.effect, Effect::DeleteRun);
        let done = desired(Some(&running), &t, &done_obs, &inputs(20));
        assert_eq!(done.completion_time, Some(Time(inputs(20).now)));
        assert_eq!(ready(&done).last_transition_time, Time(inputs(20).now));
        let patch = merge_patch(Some(&running), &done).unwrap().unwrap();
        assert_eq!(patch["phase"], "Completed");
        assert!(patch.get("startTime").is_none(), "{patch}");

        // Settled: later reconciles of the completed session write nothing.
        let idle = Observed::default();
        let t = next(Some(SessionPhase::Completed), &idle);
        let resync = desired(Some(&done), &t, &idle, &inputs(3600));
        assert_eq!(merge_patch(Some(&done), &resync).unwrap(), None);
    }

    #[test]
    fn a_stopped_session_keeps_its_condition_messages_and_writes_nothing_later() {
        let run = RunView::Current {
            job: JobView::Active,
            pod: PodView::Running {
                node: Some("node-a".into()),
            },
            pod_uid: Some("uid-1".into()),
        };
        let running = AgenticSessionStatus {
            phase: Some(SessionPhase::Running),
            ..AgenticSessionStatus::default()
        };
        let stop = Observed {
            run,
            request: Some(crate::sessions::session::state::Request::Stop(
                StoppedReason::User,
            )),
            ..Observed::default()
        };
        let t = next(Some(SessionPhase::Running), &stop);
        let stopping = desired(Some(&running), &t, &stop, &inputs(1));
        let gone = Observed::default();
        let t = next(Some(SessionPhase::Stopping), &gone);
        let stopped = desired(Some(&stopping), &t, &gone, &inputs(2));
        assert_eq!(stopped.phase, Some(SessionPhase::Stopped));
        for type_ in ["Ready", "PodCreated", "RunnerStarted"] {
            let c = stopped
                .conditions
                .as_ref()
                .unwrap()
                .iter()
                .find(|c| c.type_ == type_)
                .unwrap();
            assert_eq!(
                (c.status.as_str(), c.reason.as_str()),
                ("False", "UserStopped"),
                "{type_}"
            );
            assert!(!c.message.is_empty(), "{type_} has no message");
        }
        // Later reconciles of the stopped session change nothing.
        let t = next(Some(SessionPhase::Stopped), &gone);
        let resync = desired(Some(&stopped), &t, &gone, &inputs(3600));
        assert_eq!(merge_patch(Some(&stopped), &resync).unwrap(), None);
    }

    #[test]
    fn adopts_runner_started_from_the_previous_operator() {
        let upstream = AgenticSessionStatus {
            phase: Some(SessionPhase::Stopped),
            conditions: Some(vec![Condition {
                type_: "RunnerStarted".into(),
                status: "True".into(),
                reason: "ContainerRunning".into(),
                message: String::new(),
                last_transition_time: Time(inputs(1).now),
                observed_generation: None,
            }]),
            ..AgenticSessionStatus::default()
        };
        let obs = Observed::default();
        let t = next(Some(SessionPhase::Stopped), &obs);
        let after = desired(Some(&upstream), &t, &obs, &inputs(5));
        assert_eq!(after.runner_started_at, Some(Time(inputs(1).now)));
        let never = AgenticSessionStatus {
            phase: Some(SessionPhase::Stopped),
            ..AgenticSessionStatus::default()
        };
        assert_eq!(
            desired(Some(&never), &t, &obs, &inputs(5)).runner_started_at,
            None
        );
    }

    #[test]
    fn restart_resets_the_run_and_keeps_runner_started_at() {
        let before = AgenticSessionStatus {
            phase: Some(SessionPhase::Stopped),
            start_time: Some(Time(inputs(10).now)),
            completion_time: Some(Time(inputs(10).now)),
            last_activity_time: Some(Time(inputs(3).now)),
            stopped_reason: Some(StoppedReason::Inactivity),
            runner_started_at: Some(Time(inputs(2).now)),
            runner_pod_uid: Some("old".into()),
            ..AgenticSessionStatus::default()
        };
        let obs = Observed {
            request: Some(crate::sessions::session::state::Request::Start),
            ..Observed::default()
        };
        let t = next(Some(SessionPhase::Stopped), &obs);
        let mut i = inputs(10);
        i.requested_at = Some("2026-01-01T00:00:00Z".into());
        let after = desired(Some(&before), &t, &obs, &i);
        // Same second as the previous start: the start time still moves forward.
        assert_eq!(after.start_time, Some(Time(inputs(11).now)));
        assert_eq!(after.completion_time, None);
        assert_eq!(after.last_activity_time, None);
        assert_eq!(after.stopped_reason, None);
        assert_eq!(after.runner_pod_uid, None);
        assert_eq!(after.runner_started_at, Some(Time(inputs(2).now)));
        assert_eq!(
            after.observed_desired_phase_at.as_deref(),
            Some("2026-01-01T00:00:00Z")
        );
        let patch = merge_patch(Some(&before), &after).unwrap().unwrap();
        assert_eq!(patch["completionTime"], Value::Null);
        assert_eq!(patch["lastActivityTime"], Value::Null);
    }
}
