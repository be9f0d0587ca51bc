//! Leader election on a `coordination.k8s.io/v1` Lease, with client-go's semantics.
//!
//! * A replica takes the Lease when none exists, when it has no holder, or when the holder has
//!   not renewed it within `leaseDurationSeconds` *as observed by this replica's clock* (the
//!   remote `renewTime` is never compared with the local clock, so clock skew does not matter).
//! * The leader renews every `--retry-period`; if no renewal succeeds within `--renew-deadline`
//!   it has lost leadership.
//! * Every write is a `PUT` carrying the `resourceVersion` that was read, so two replicas racing
//!   for the same Lease cannot both win: the loser gets `409 Conflict`.
//! * On shutdown the leader clears `holderIdentity`, so a standby takes over at once instead of
//!   waiting for the Lease to expire.
//!
//! The decision is the pure function [`decide`]; [`LeaderElector`] does the I/O around it.

use std::time::{Duration, Instant};

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
};
use kube::{
    Api, Client,
    api::{PostParams, ResourceExt},
};
use tokio_util::sync::CancellationToken;

use super::config::LeaderElectionSettings;

/// The parts of a Lease the decision depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseView {
    /// `spec.holderIdentity`; `None` or empty means free.
    pub holder: Option<String>,
    /// `spec.leaseDurationSeconds`, if set and positive.
    pub lease_duration: Option<Duration>,
}

impl LeaseView {
    /// Extracts the view from a Lease object.
    pub fn of(lease: &Lease) -> Self {
        let spec = lease.spec.as_ref();
        Self {
            holder: spec
                .and_then(|s| s.holder_identity.clone())
                .filter(|h| !h.is_empty()),
            lease_duration: spec
                .and_then(|s| s.lease_duration_seconds)
                .and_then(|s| u64::try_from(s).ok())
                .filter(|s| *s > 0)
                .map(Duration::from_secs),
        }
    }
}

/// What to do with the Lease on one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// No Lease exists: create it with this replica as holder.
    Create,
    /// The Lease is free or expired: take it over.
    Acquire,
    /// This replica holds the Lease: renew it.
    Renew,
    /// Another replica holds a valid Lease: wait.
    Follow {
        /// The current holder.
        holder: String,
    },
}

/// Decides what to do with the Lease.
///
/// `observed_at` is the local instant at which the current Lease record (holder and renew time)
/// was first seen by this replica; the Lease counts as expired when
/// `observed_at + leaseDurationSeconds <= now` (using `default_duration` when the Lease has no
/// duration).
pub fn decide(
    identity: &str,
    lease: Option<&LeaseView>,
    observed_at: Instant,
    now: Instant,
    default_duration: Duration,
) -> Decision {
    let Some(lease) = lease else {
        return Decision::Create;
    };
    match lease.holder.as_deref() {
        None => Decision::Acquire,
        Some(holder) if holder == identity => Decision::Renew,
        Some(holder) => {
            let duration = lease.lease_duration.unwrap_or(default_duration);
            if now.saturating_duration_since(observed_at) >= duration {
                Decision::Acquire
            } else {
                Decision::Follow {
                    holder: holder.to_owned(),
                }
            }
        }
    }
}

/// Whether a leader whose last successful renewal was at `last_renewed` still counts as leader
/// at `now` (it does until `renew_deadline` has passed without a successful renewal).
pub fn still_leading(last_renewed: Instant, now: Instant, renew_deadline: Duration) -> bool {
    now.saturating_duration_since(last_renewed) < renew_deadline
}

/// The Lease spec to write for `decision`, or `None` for [`Decision::Follow`].
pub fn desired_spec(
    decision: &Decision,
    old: Option<&LeaseSpec>,
    identity: &str,
    lease_duration: Duration,
    now: jiff::Timestamp,
) -> Option<LeaseSpec> {
    // Whole seconds on the wire; rounded up, so that standbys never wait less than configured.
    let seconds =
        i32::try_from(lease_duration.as_millis().div_ceil(1000).max(1)).unwrap_or(i32::MAX);
    let transitions = old.and_then(|s| s.lease_transitions).unwrap_or(0);
    match decision {
        Decision::Follow { .. } => None,
        Decision::Create => Some(LeaseSpec {
            holder_identity: Some(identity.to_owned()),
            lease_duration_seconds: Some(seconds),
            acquire_time: Some(MicroTime(now)),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(0),
            ..LeaseSpec::default()
        }),
        Decision::Acquire => Some(LeaseSpec {
            holder_identity: Some(identity.to_owned()),
            lease_duration_seconds: Some(seconds),
            acquire_time: Some(MicroTime(now)),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions.saturating_add(1)),
            ..old.cloned().unwrap_or_default()
        }),
        Decision::Renew => Some(LeaseSpec {
            holder_identity: Some(identity.to_owned()),
            lease_duration_seconds: Some(seconds),
            acquire_time: old
                .and_then(|s| s.acquire_time.clone())
                .or(Some(MicroTime(now))),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..old.cloned().unwrap_or_default()
        }),
    }
}

/// The Lease spec a leader writes when it steps down: no holder, a one-second duration.
pub fn released_spec(old: &LeaseSpec, now: jiff::Timestamp) -> LeaseSpec {
    LeaseSpec {
        holder_identity: None,
        lease_duration_seconds: Some(1),
        acquire_time: Some(MicroTime(now)),
        renew_time: Some(MicroTime(now)),
        lease_transitions: old.lease_transitions,
        ..old.clone()
    }
}

/// Failures of the leader-election loop.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// RBAC does not allow this replica to use the Lease.
    #[error(
        "leader election: the API server refused to {verb} Lease {namespace}/{name} (403 Forbidden); grant this service account get, create and update on leases.coordination.k8s.io in namespace {namespace}, or run without --leader-elect"
    )]
    Forbidden {
        /// The refused verb.
        verb: &'static str,
        /// Lease namespace.
        namespace: String,
        /// Lease name.
        name: String,
    },
    /// No renewal succeeded within the renew deadline, or another replica took the Lease.
    #[error("leader election: lost Lease {namespace}/{name}: {reason}")]
    Lost {
        /// Lease namespace.
        namespace: String,
        /// Lease name.
        name: String,
        /// What happened.
        reason: String,
    },
    /// The API server did not answer within the renew deadline.
    #[error(
        "leader election: {verb} Lease {namespace}/{name} got no answer within {after:?} (--renew-deadline)"
    )]
    TimedOut {
        /// The verb that got no answer.
        verb: &'static str,
        /// Lease namespace.
        namespace: String,
        /// Lease name.
        name: String,
        /// How long it waited.
        after: Duration,
    },
    /// Any other API error.
    #[error("leader election: {verb} Lease {namespace}/{name} failed: {source}")]
    Api {
        /// The verb that failed.
        verb: &'static str,
        /// Lease namespace.
        namespace: String,
        /// Lease name.
        name: String,
        /// The client error.
        #[source]
        source: Box<kube::Error>,
    },
}

/// Result of one acquire-or-renew attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// This replica holds the Lease (it was created, taken over or renewed).
    Leading,
    /// Another replica holds the Lease (`None` when the holder is unknown, e.g. after a
    /// conflicting write).
    Following {
        /// The holder, if known.
        holder: Option<String>,
    },
}

/// Runs leader election for one Lease.
#[derive(Debug)]
pub struct LeaderElector {
    api: Api<Lease>,
    settings: LeaderElectionSettings,
    observed: Option<(LeaseView, Option<MicroTime>, Instant)>,
    last_written: Option<Lease>,
    last_renewed: Option<Instant>,
}

impl LeaderElector {
    /// An elector for the Lease named in `settings`.
    pub fn new(client: Client, settings: LeaderElectionSettings) -> Self {
        Self {
            api: Api::namespaced(client, &settings.namespace),
            settings,
            observed: None,
            last_written: None,
            last_renewed: None,
        }
    }

    /// The settings this elector uses.
    pub fn settings(&self) -> &LeaderElectionSettings {
        &self.settings
    }

    fn api_error(&self, verb: &'static str, source: kube::Error) -> LeaseError {
        let namespace = self.settings.namespace.clone();
        let name = self.settings.lease_name.clone();
        match &source {
            kube::Error::Api(status) if status.code == 403 => LeaseError::Forbidden {
                verb,
                namespace,
                name,
            },
            _ => LeaseError::Api {
                verb,
                namespace,
                name,
                source: Box::new(source),
            },
        }
    }

    fn timed_out(&self, verb: &'static str) -> LeaseError {
        LeaseError::TimedOut {
            verb,
            namespace: self.settings.namespace.clone(),
            name: self.settings.lease_name.clone(),
            after: self.settings.renew_deadline,
        }
    }

    fn is_conflict(error: &kube::Error) -> bool {
        matches!(error, kube::Error::Api(status) if status.code == 409)
    }

    /// One attempt: read the Lease, decide, and write if needed.
    pub async fn try_acquire_or_renew(&mut self) -> Result<Attempt, LeaseError> {
        let name = self.settings.lease_name.clone();
        let current = self
            .api
            .get_opt(&name)
            .await
            .map_err(|e| self.api_error("get", e))?;
        let now = Instant::now();
        let view = current.as_ref().map(LeaseView::of);
        if let (Some(lease), Some(view)) = (current.as_ref(), view.as_ref()) {
            let renew = lease.spec.as_ref().and_then(|s| s.renew_time.clone());
            let unchanged = self
                .observed
                .as_ref()
                .is_some_and(|(v, r, _)| v == view && *r == renew);
            if !unchanged {
                self.observed = Some((view.clone(), renew, now));
            }
        } else {
            self.observed = None;
        }
        let observed_at = self.observed.as_ref().map_or(now, |(_, _, at)| *at);
        let decision = decide(
            &self.settings.identity,
            view.as_ref(),
            observed_at,
            now,
            self.settings.lease_duration,
        );
        let old_spec = current.as_ref().and_then(|l| l.spec.as_ref());
        let Some(spec) = desired_spec(
            &decision,
            old_spec,
            &self.settings.identity,
            self.settings.lease_duration,
            jiff::Timestamp::now(),
        ) else {
            let Decision::Follow { holder } = decision else {
                return Ok(Attempt::Following { holder: None });
            };
            return Ok(Attempt::Following {
                holder: Some(holder),
            });
        };
        let result = if let Some(mut lease) = current {
            lease.spec = Some(spec);
            self.api
                .replace(&name, &PostParams::default(), &lease)
                .await
                .map_err(|e| ("update", e))
        } else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(self.settings.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(spec),
            };
            self.api
                .create(&PostParams::default(), &lease)
                .await
                .map_err(|e| ("create", e))
        };
        match result {
            Ok(written) => {
                self.observed = Some((
                    LeaseView::of(&written),
                    written.spec.as_ref().and_then(|s| s.renew_time.clone()),
                    Instant::now(),
                ));
                self.last_written = Some(written);
                self.last_renewed = Some(now);
                Ok(Attempt::Leading)
            }
            // 409 on create (AlreadyExists) or update (Conflict): another replica wrote first.
            Err((_, e)) if Self::is_conflict(&e) => Ok(Attempt::Following { holder: None }),
            Err((verb, e)) => Err(self.api_error(verb, e)),
        }
    }

    /// Tries every retry period until this replica leads. Returns `Ok(true)` once leading,
    /// `Ok(false)` if `shutdown` fired first (also while the winning write was in flight: the
    /// Lease is then released again), and an error only for `403 Forbidden` (which retrying
    /// cannot fix). `on_follow` is called with the holder after each failed attempt. An attempt
    /// the API server does not answer within the renew deadline is abandoned and retried, so
    /// a hanging API server never keeps a replica from seeing its shutdown (a write it may
    /// still have applied expires with the Lease's duration).
    pub async fn acquire(
        &mut self,
        shutdown: &CancellationToken,
        mut on_follow: impl FnMut(Option<&str>),
    ) -> Result<bool, LeaseError> {
        loop {
            let attempt =
                tokio::time::timeout(self.settings.renew_deadline, self.try_acquire_or_renew())
                    .await
                    .unwrap_or_else(|_| Err(self.timed_out("acquire")));
            match attempt {
                // Shutdown came while the write was in flight: a replica on its way out must
                // not start leading, and the Lease it just took goes straight back.
                Ok(Attempt::Leading) if shutdown.is_cancelled() => {
                    if let Err(error) = self.release().await {
                        tracing::warn!(%error, "could not release the leader-election Lease taken during shutdown");
                    }
                    return Ok(false);
                }
                Ok(Attempt::Leading) => return Ok(true),
                Ok(Attempt::Following { holder }) => on_follow(holder.as_deref()),
                Err(e @ LeaseError::Forbidden { .. }) => return Err(e),
                Err(e) => {
                    tracing::warn!(error = %e, "could not acquire the leader-election Lease; retrying");
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return Ok(false),
                () = tokio::time::sleep(self.settings.retry_period) => {}
            }
        }
    }

    /// Renews every retry period while leading. Returns `Ok(())` when `shutdown` fires (the
    /// caller should then [`LeaderElector::release`]), or [`LeaseError::Lost`] when another
    /// replica took the Lease or no renewal succeeded within the renew deadline.
    pub async fn hold(&mut self, shutdown: &CancellationToken) -> Result<(), LeaseError> {
        let mut last_renewed = self.last_renewed.unwrap_or_else(Instant::now);
        let deadline = self.settings.renew_deadline;
        loop {
            // Neither the pause nor the attempt may run past the renew deadline: a leader that
            // lost the Lease must notice before a standby may take it over.
            let left = deadline.saturating_sub(last_renewed.elapsed());
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                () = tokio::time::sleep(self.settings.retry_period.min(left)) => {}
            }
            let started = Instant::now();
            let left = deadline.saturating_sub(last_renewed.elapsed());
            // A shutdown does not wait for a renewal in flight: the caller goes on renewing
            // while it drains, from the last renewal that succeeded.
            let attempt = tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                attempt = tokio::time::timeout(left, self.try_acquire_or_renew()) => attempt,
            };
            let lost = |reason: String| LeaseError::Lost {
                namespace: self.settings.namespace.clone(),
                name: self.settings.lease_name.clone(),
                reason,
            };
            match attempt {
                // The renewal counts from when it was sent: the Lease may have been written
                // any time after that.
                Ok(Ok(Attempt::Leading)) => last_renewed = started,
                Ok(Ok(Attempt::Following {
                    holder: Some(holder),
                })) => {
                    return Err(lost(format!("{holder} holds it now")));
                }
                Ok(Ok(Attempt::Following { holder: None })) => {
                    tracing::warn!(
                        "renewing the leader-election Lease conflicted with another write"
                    );
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "renewing the leader-election Lease failed");
                }
                Err(_) => tracing::warn!("renewing the leader-election Lease timed out"),
            }
            if !still_leading(last_renewed, Instant::now(), self.settings.renew_deadline) {
                return Err(lost(format!(
                    "no renewal succeeded within --renew-deadline {:?}",
                    self.settings.renew_deadline
                )));
            }
        }
    }

    /// Steps down: clears the holder of the Lease this replica last wrote. Does nothing if this
    /// replica never led; a conflict (someone else wrote since) is not an error. Gives up with
    /// [`LeaseError::TimedOut`] when the API server does not answer within the renew deadline,
    /// so a shutdown never hangs on it (a standby then takes over once the Lease expires).
    pub async fn release(&mut self) -> Result<(), LeaseError> {
        let Some(mut lease) = self.last_written.take() else {
            return Ok(());
        };
        let Some(spec) = lease.spec.as_ref() else {
            return Ok(());
        };
        if spec.holder_identity.as_deref() != Some(self.settings.identity.as_str()) {
            return Ok(());
        }
        lease.spec = Some(released_spec(spec, jiff::Timestamp::now()));
        let name = lease.name_any();
        let written = tokio::time::timeout(
            self.settings.renew_deadline,
            self.api.replace(&name, &PostParams::default(), &lease),
        )
        .await
        .map_err(|_| self.timed_out("update"))?;
        match written {
            Ok(_) => Ok(()),
            Err(e) if Self::is_conflict(&e) => Ok(()),
            Err(e) => Err(self.api_error("update", e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: &str = "me";
    const D15: Duration = Duration::from_secs(15);

    fn view(holder: Option<&str>, secs: Option<u64>) -> LeaseView {
        LeaseView {
            holder: holder.map(str::to_owned),
            lease_duration: secs.map(Duration::from_secs),
        }
    }

    #[test]
    fn decision_table() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let other = || Decision::Follow {
            holder: "other".into(),
        };
        let cases: Vec<(&str, Option<LeaseView>, Duration, Decision)> = vec![
            ("no lease", None, s(0), Decision::Create),
            (
                "held by me",
                Some(view(Some(ME), Some(15))),
                s(0),
                Decision::Renew,
            ),
            (
                "held by me, expired",
                Some(view(Some(ME), Some(15))),
                s(99),
                Decision::Renew,
            ),
            (
                "released",
                Some(view(None, Some(1))),
                s(0),
                Decision::Acquire,
            ),
            (
                "fresh other",
                Some(view(Some("other"), Some(15))),
                s(1),
                other(),
            ),
            (
                "other just before expiry",
                Some(view(Some("other"), Some(15))),
                s(14),
                other(),
            ),
            (
                "other expired",
                Some(view(Some("other"), Some(15))),
                s(15),
                Decision::Acquire,
            ),
            (
                "other, no duration, fresh",
                Some(view(Some("other"), None)),
                s(10),
                other(),
            ),
            (
                "other, no duration, expired",
                Some(view(Some("other"), None)),
                s(16),
                Decision::Acquire,
            ),
            (
                "other, long duration",
                Some(view(Some("other"), Some(60))),
                s(20),
                other(),
            ),
        ];
        for (name, lease, elapsed, expected) in cases {
            let got = decide(ME, lease.as_ref(), t0, t0 + elapsed, D15);
            assert_eq!(got, expected, "{name}");
        }
    }

    #[test]
    fn empty_holder_counts_as_free() {
        let lease = Lease {
            metadata: ObjectMeta::default(),
            spec: Some(LeaseSpec {
                holder_identity: Some(String::new()),
                lease_duration_seconds: Some(0),
                ..LeaseSpec::default()
            }),
        };
        assert_eq!(LeaseView::of(&lease), view(None, None));
    }

    #[test]
    fn renew_deadline_table() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        for (elapsed, leading) in [(s(0), true), (s(9), true), (s(10), false), (s(30), false)] {
            assert_eq!(
                still_leading(t0, t0 + elapsed, s(10)),
                leading,
                "{elapsed:?}"
            );
        }
    }

    /// The Lease holds whole seconds: a fraction is rounded up, never down to less than the
    /// configured duration (1.5 s once became 1 s, shorter than a 1.2 s renew deadline).
    #[test]
    fn lease_seconds_are_rounded_up() {
        let now = jiff::Timestamp::from_second(1_800_000_000).unwrap();
        for (millis, seconds) in [(1, 1), (1000, 1), (1001, 2), (1500, 2), (15_000, 15)] {
            let spec = desired_spec(
                &Decision::Create,
                None,
                ME,
                Duration::from_millis(millis),
                now,
            )
            .unwrap();
            assert_eq!(spec.lease_duration_seconds, Some(seconds), "{millis} ms");
        }
    }

    #[test]
    fn specs_for_each_decision() {
        let now = jiff::Timestamp::from_second(1_800_000_000).unwrap();
        let earlier = jiff::Timestamp::from_second(1_700_000_000).unwrap();
        let old = LeaseSpec {
            holder_identity: Some("other".into()),
            lease_duration_seconds: Some(15),
            acquire_time: Some(MicroTime(earlier)),
            renew_time: Some(MicroTime(earlier)),
            lease_transitions: Some(3),
            ..LeaseSpec::default()
        };
        let created = desired_spec(&Decision::Create, None, ME, D15, now).unwrap();
        assert_eq!(created.holder_identity.as_deref(), Some(ME));
        assert_eq!(created.lease_transitions, Some(0));
        assert_eq!(created.lease_duration_seconds, Some(15));
        assert_eq!(created.renew_time, Some(MicroTime(now)));

        let taken = desired_spec(&Decision::Acquire, Some(&old), ME, D15, now).unwrap();
        assert_eq!(taken.holder_identity.as_deref(), Some(ME));
        assert_eq!(taken.lease_transitions, Some(4));
        assert_eq!(taken.acquire_time, Some(MicroTime(now)));

        let mine = LeaseSpec {
            holder_identity: Some(ME.into()),
            ..old.clone()
        };
        let renewed = desired_spec(&Decision::Renew, Some(&mine), ME, D15, now).unwrap();
        assert_eq!(renewed.lease_transitions, Some(3));
        assert_eq!(renewed.acquire_time, Some(MicroTime(earlier)));
        assert_eq!(renewed.renew_time, Some(MicroTime(now)));

        assert_eq!(
            desired_spec(
                &Decision::Follow { holder: "x".into() },
                Some(&old),
                ME,
                D15,
                now
            ),
            None
        );

        let released = released_spec(&renewed, now);
        assert_eq!(released.holder_identity, None);
        assert_eq!(released.lease_duration_seconds, Some(1));
        assert_eq!(released.lease_transitions, Some(3));
    }
}
