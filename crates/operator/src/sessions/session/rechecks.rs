//! One shared timer for the rechecks of Running sessions (token refresh, inactivity, the
//! hourly safety net).
//!
//! Every Running session has a next check. Returned as `Action::requeue`, each would hold an
//! entry in the controller's scheduler (its `ObjectRef` key twice, in a map and a delay
//! queue: ~470 bytes per session). Instead the reconcile records the due time here (~120
//! bytes) and [`wakeups`] wakes the sessions that are due, looking once per tick.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};

use futures::{Stream, StreamExt};
use kube::runtime::reflector::ObjectRef;

use super::cached::CachedSession;

/// How often [`wakeups`] looks for due sessions.
pub const TICK: Duration = Duration::from_secs(1);

/// Due time of the next check by session namespace and name.
type DueTimes = HashMap<(Box<str>, Box<str>), Instant>;

/// Due times of the next check of each Running session, by namespace and name.
#[derive(Debug, Default)]
pub struct Rechecks {
    due: Mutex<DueTimes>,
}

impl Rechecks {
    fn lock(&self) -> MutexGuard<'_, DueTimes> {
        self.due.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sets the next check of session `name` in `ns` to `at` (replacing an earlier one).
    pub fn schedule(&self, ns: &str, name: &str, at: Instant) {
        let mut due = self.lock();
        if let Some(when) = due.get_mut(&(Box::from(ns), Box::from(name))) {
            *when = at;
        } else {
            due.insert((ns.into(), name.into()), at);
        }
    }

    /// Forgets the next check of session `name` in `ns`.
    pub fn cancel(&self, ns: &str, name: &str) {
        self.lock().remove(&(Box::from(ns), Box::from(name)));
    }

    /// Removes and returns the sessions due at `now`.
    pub fn take_due(&self, now: Instant) -> Vec<(Box<str>, Box<str>)> {
        let mut due = self.lock();
        let keys: Vec<_> = due
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(key, _)| key.clone())
            .collect();
        for key in &keys {
            due.remove(key);
        }
        keys
    }

    /// Number of sessions with a next check.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no session has a next check.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The sessions of `rechecks` as they become due, looked for every `tick`.
pub fn wakeups(
    rechecks: Arc<Rechecks>,
    tick: Duration,
) -> impl Stream<Item = ObjectRef<CachedSession>> + Send + 'static {
    futures::stream::unfold(rechecks, move |rechecks| async move {
        tokio::time::sleep(tick).await;
        let due = rechecks.take_due(Instant::now());
        Some((due, rechecks))
    })
    .flat_map(|due| {
        futures::stream::iter(
            due.into_iter()
                .map(|(ns, name)| ObjectRef::new(&name).within(&ns)),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_sessions_are_taken_once_and_rescheduling_replaces() {
        let rechecks = Rechecks::default();
        let now = Instant::now();
        rechecks.schedule("ns", "a", now + Duration::from_secs(10));
        rechecks.schedule("ns", "b", now + Duration::from_secs(30));
        rechecks.schedule("other", "a", now + Duration::from_secs(5));
        // A later reconcile moves a's check earlier.
        rechecks.schedule("ns", "a", now + Duration::from_secs(1));
        assert_eq!(rechecks.len(), 3);
        assert!(rechecks.take_due(now).is_empty());
        let mut due = rechecks.take_due(now + Duration::from_secs(5));
        due.sort();
        assert_eq!(
            due,
            [
                (Box::from("ns"), Box::from("a")),
                (Box::from("other"), Box::from("a"))
            ]
        );
        assert!(
            rechecks.take_due(now + Duration::from_secs(5)).is_empty(),
            "taken once"
        );
        rechecks.cancel("ns", "b");
        rechecks.cancel("ns", "never-scheduled");
        assert!(rechecks.take_due(now + Duration::from_mins(1)).is_empty());
        assert!(rechecks.is_empty());
    }

    #[tokio::test]
    async fn wakeups_wake_due_sessions() {
        let rechecks = Arc::new(Rechecks::default());
        rechecks.schedule("ns", "soon", Instant::now());
        rechecks.schedule("ns", "later", Instant::now() + Duration::from_hours(1));
        let mut stream = Box::pin(wakeups(rechecks.clone(), Duration::from_millis(10)));
        let first = tokio::time::timeout(Duration::from_secs(30), stream.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(first, ObjectRef::new("soon").within("ns"));
        assert_eq!(rechecks.len(), 1, "the later check stays");
    }
}
