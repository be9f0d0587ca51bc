//! Pure computation of a `ProjectSettings` status from what the reconcile achieved.

use agentic_api::sessions::ProjectSettingsStatus;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// Condition type summarising the reconcile.
pub const CONDITION_READY: &str = "Ready";
/// Reason: every owned object is in place.
pub const REASON_RECONCILED: &str = "Reconciled";

/// What one reconcile achieved, as the status reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Group `RoleBindings` that exist as desired.
    pub group_bindings: usize,
    /// The scheduled-session `ServiceAccount`, Role and `RoleBinding` exist.
    pub trigger_rbac_ready: bool,
    /// The `LimitRange` exists.
    pub limit_range_ready: bool,
    /// `None` when everything succeeded; otherwise the condition reason and message.
    pub problem: Option<(String, String)>,
}

/// The status to write: the three counters plus a `Ready` condition. `previous` keeps the
/// condition's `lastTransitionTime` unless its status flips; `now` is used when it does.
pub fn desired_status(
    previous: Option<&ProjectSettingsStatus>,
    outcome: &Outcome,
    generation: Option<i64>,
    now: Time,
) -> ProjectSettingsStatus {
    let (status, reason, message) = match &outcome.problem {
        None => (
            "True",
            REASON_RECONCILED.to_owned(),
            format!(
                "{} group RoleBinding(s), scheduled-session RBAC and LimitRange in place",
                outcome.group_bindings
            ),
        ),
        Some((reason, message)) => ("False", reason.clone(), message.clone()),
    };
    let old = previous
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == CONDITION_READY));
    let last_transition_time = match old {
        Some(old) if old.status == status => old.last_transition_time.clone(),
        _ => now,
    };
    let mut conditions: Vec<Condition> = previous
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c.type_ != CONDITION_READY)
        .collect();
    conditions.push(Condition {
        type_: CONDITION_READY.into(),
        status: status.into(),
        reason,
        message,
        last_transition_time,
        observed_generation: generation,
    });
    ProjectSettingsStatus {
        group_bindings_created: Some(i64::try_from(outcome.group_bindings).unwrap_or(i64::MAX)),
        scheduled_session_rbac_ready: Some(outcome.trigger_rbac_ready),
        limit_range_ready: Some(outcome.limit_range_ready),
        conditions: Some(conditions),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn time(s: &str) -> Time {
        Time(s.parse().unwrap())
    }

    fn ok(n: usize) -> Outcome {
        Outcome {
            group_bindings: n,
            trigger_rbac_ready: true,
            limit_range_ready: true,
            problem: None,
        }
    }

    #[test]
    fn success_sets_counters_and_ready_true() {
        let s = desired_status(None, &ok(2), Some(3), time("2026-01-01T00:00:00Z"));
        assert_eq!(s.group_bindings_created, Some(2));
        assert_eq!(s.scheduled_session_rbac_ready, Some(true));
        assert_eq!(s.limit_range_ready, Some(true));
        let c = &s.conditions.as_ref().unwrap()[0];
        assert_eq!((c.type_.as_str(), c.status.as_str()), ("Ready", "True"));
        assert_eq!(c.reason, REASON_RECONCILED);
        assert_eq!(c.observed_generation, Some(3));
    }

    #[test]
    fn transition_time_moves_only_when_status_flips() {
        let first = desired_status(None, &ok(1), Some(1), time("2026-01-01T00:00:00Z"));
        let same = desired_status(Some(&first), &ok(1), Some(1), time("2026-02-01T00:00:00Z"));
        assert_eq!(
            first, same,
            "unchanged outcome must give an identical status"
        );
        let bad = Outcome {
            problem: Some(("InvalidSpec".into(), "spec.groupAccess[0].role: x".into())),
            ..ok(1)
        };
        let flipped = desired_status(Some(&same), &bad, Some(2), time("2026-03-01T00:00:00Z"));
        let c = &flipped.conditions.as_ref().unwrap()[0];
        assert_eq!(c.status, "False");
        assert_eq!(c.reason, "InvalidSpec");
        assert_eq!(c.last_transition_time, time("2026-03-01T00:00:00Z"));
    }

    #[test]
    fn other_conditions_are_kept() {
        let mut previous = desired_status(None, &ok(0), None, time("2026-01-01T00:00:00Z"));
        previous.conditions.as_mut().unwrap().push(Condition {
            type_: "Custom".into(),
            status: "True".into(),
            reason: "X".into(),
            message: String::new(),
            last_transition_time: time("2026-01-01T00:00:00Z"),
            observed_generation: None,
        });
        let next = desired_status(Some(&previous), &ok(0), None, time("2026-01-02T00:00:00Z"));
        let types: Vec<_> = next
            .conditions
            .unwrap()
            .into_iter()
            .map(|c| c.type_)
            .collect();
        assert_eq!(types, vec!["Custom", "Ready"]);
    }
}
