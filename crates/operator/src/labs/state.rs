//! The Experiment state machine: one pure function from the current phase and a summary of
//! what was observed to the next phase, with the reason and message of the transition.

use agentic_api::labs::ExperimentPhase;

/// Phase of the Argo Workflow as observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkflowState {
    /// No Workflow exists.
    Absent,
    /// Submitted, not finished (`Pending`, `Running`, or no phase yet).
    Active,
    /// `Succeeded`.
    Succeeded,
    /// `Failed` or `Error`.
    Failed,
}

/// What the reconcile observed, reduced to what decides the phase.
#[allow(clippy::struct_excessive_bools)] // one flag per observed fact, read by a table
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// The spec failed validation (the phase waits for a spec change).
    pub invalid: bool,
    /// A target failed terminally: `(target, message)`.
    pub failed_target: Option<(String, String)>,
    /// Every target's cluster is ready.
    pub clusters_ready: bool,
    /// Every target's components are healthy (Synced and Healthy).
    pub apps_healthy: bool,
    /// The Workflow.
    pub workflow: WorkflowState,
    /// Message of the Workflow (its failure reason).
    pub workflow_message: Option<String>,
    /// A `manual` experiment ran past its deadline.
    pub manual_deadline_passed: bool,
}

/// The decision of [`next`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// Stay in the current phase.
    Stay,
    /// Move to `to`.
    To {
        /// The new phase.
        to: ExperimentPhase,
        /// CamelCase reason (Event and condition).
        reason: &'static str,
        /// Human-readable message.
        message: String,
    },
}

fn to(to: ExperimentPhase, reason: &'static str, message: impl Into<String>) -> Transition {
    Transition::To {
        to,
        reason,
        message: message.into(),
    }
}

/// The next phase of an experiment in `phase` given `observed`.
pub fn next(phase: ExperimentPhase, observed: &Observed) -> Transition {
    use ExperimentPhase as P;
    if phase.is_terminal() || observed.invalid {
        return Transition::Stay;
    }
    if let Some((target, message)) = &observed.failed_target {
        return to(
            P::Failed,
            "TargetFailed",
            format!("target {target} failed: {message}"),
        );
    }
    match phase {
        P::Pending => to(
            P::Provisioning,
            "Provisioning",
            "cluster claims requested for every non-hub target",
        ),
        P::Provisioning if observed.clusters_ready && observed.apps_healthy => to(
            P::Ready,
            "ComponentsHealthy",
            "every target is provisioned and its components are Synced and Healthy",
        ),
        P::Ready if observed.workflow != WorkflowState::Absent => to(
            P::Running,
            "WorkflowSubmitted",
            "the workflow was submitted",
        ),
        P::Running => match observed.workflow {
            WorkflowState::Succeeded => {
                to(P::Complete, "WorkflowSucceeded", "the workflow succeeded")
            }
            WorkflowState::Failed => to(
                P::Failed,
                "WorkflowFailed",
                format!(
                    "the workflow failed: {}",
                    observed.workflow_message.as_deref().unwrap_or("no message")
                ),
            ),
            _ if observed.manual_deadline_passed => to(
                P::Failed,
                "ManualDeadlineExceeded",
                "the manual experiment was not resumed before its deadline",
            ),
            _ => Transition::Stay,
        },
        _ => Transition::Stay,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ExperimentPhase as P;

    fn obs() -> Observed {
        Observed {
            invalid: false,
            failed_target: None,
            clusters_ready: false,
            apps_healthy: false,
            workflow: WorkflowState::Absent,
            workflow_message: None,
            manual_deadline_passed: false,
        }
    }

    fn phase_of(t: &Transition) -> Option<P> {
        match t {
            Transition::Stay => None,
            Transition::To { to, .. } => Some(*to),
        }
    }

    #[test]
    fn table() {
        let ready = Observed {
            clusters_ready: true,
            apps_healthy: true,
            ..obs()
        };
        let failed_target = Observed {
            failed_target: Some(("app".into(), "quota exceeded".into())),
            ..obs()
        };
        let wf = |w| Observed {
            workflow: w,
            ..ready.clone()
        };
        let cases: Vec<(P, Observed, Option<P>)> = vec![
            (P::Pending, obs(), Some(P::Provisioning)),
            (
                P::Pending,
                Observed {
                    invalid: true,
                    ..obs()
                },
                None,
            ),
            (P::Pending, failed_target.clone(), Some(P::Failed)),
            (P::Provisioning, obs(), None),
            (
                P::Provisioning,
                Observed {
                    clusters_ready: true,
                    ..obs()
                },
                None,
            ),
            (
                P::Provisioning,
                Observed {
                    apps_healthy: true,
                    ..obs()
                },
                None,
            ),
            (P::Provisioning, ready.clone(), Some(P::Ready)),
            (P::Provisioning, failed_target.clone(), Some(P::Failed)),
            (P::Ready, ready.clone(), None),
            (P::Ready, wf(WorkflowState::Active), Some(P::Running)),
            (P::Ready, failed_target.clone(), Some(P::Failed)),
            (P::Running, wf(WorkflowState::Active), None),
            (P::Running, wf(WorkflowState::Absent), None),
            (P::Running, wf(WorkflowState::Succeeded), Some(P::Complete)),
            (P::Running, wf(WorkflowState::Failed), Some(P::Failed)),
            (
                P::Running,
                Observed {
                    manual_deadline_passed: true,
                    ..wf(WorkflowState::Active)
                },
                Some(P::Failed),
            ),
            // A finished workflow wins over a deadline observed in the same pass.
            (
                P::Running,
                Observed {
                    manual_deadline_passed: true,
                    ..wf(WorkflowState::Succeeded)
                },
                Some(P::Complete),
            ),
            (P::Complete, failed_target.clone(), None),
            (P::Failed, wf(WorkflowState::Succeeded), None),
        ];
        for (phase, observed, want) in cases {
            let got = next(phase, &observed);
            assert_eq!(
                phase_of(&got),
                want,
                "{phase:?} with {observed:?} gave {got:?}"
            );
        }
    }

    #[test]
    fn messages_carry_the_cause() {
        let t = next(
            P::Provisioning,
            &Observed {
                failed_target: Some(("app".into(), "ZONE_RESOURCE_POOL_EXHAUSTED".into())),
                ..obs()
            },
        );
        assert_eq!(
            t,
            Transition::To {
                to: P::Failed,
                reason: "TargetFailed",
                message: "target app failed: ZONE_RESOURCE_POOL_EXHAUSTED".into()
            }
        );
        let t = next(
            P::Running,
            &Observed {
                workflow: WorkflowState::Failed,
                workflow_message: Some("step k6 exited 1".into()),
                ..obs()
            },
        );
        assert!(
            matches!(t, Transition::To { reason: "WorkflowFailed", ref message, .. } if message.contains("k6 exited 1"))
        );
    }
}
