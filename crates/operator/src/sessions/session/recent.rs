//! The controller's own recent writes, for as long as the watch caches may not show them.
//!
//! Sessions, runner Jobs and runner pods reach the controller through independent watches.
//! Right after it writes a session's status or creates a runner Job, a reconcile can run
//! against caches that are behind that write: the session cache still holds the version the
//! write replaced, the Job cache does not hold the new Job yet. Deciding from such a view
//! regresses (a Job just created looks missing, so the session would go back to `Pending`
//! and start another run, whose status write wakes it again). [`RecentWrites`] remembers,
//! per session:
//!
//! * the `resourceVersion`s of the session that the controller's own writes replaced: a
//!   cached session still at one of them is behind, and its reconcile waits for the watch
//!   to deliver the write;
//! * the runner Job it created for a run (name, run and UID): until the Job cache shows that
//!   UID, the Job is taken as existing and active.
//!
//! An entry goes when the cache catches up, when the watch reports the Job deleted, or after
//! [`RECENT_TTL`], whichever comes first; then the caches are trusted again.

use std::{
    collections::HashMap,
    sync::{Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};

/// How long a remembered write overrides the caches at most.
pub const RECENT_TTL: Duration = Duration::from_mins(5);
/// Expired entries are swept every this many recorded writes.
const SWEEP_EVERY: u32 = 1024;

/// A runner Job the controller created and the Job cache may not show yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedJob {
    /// The run the Job belongs to (its `run-started-at` annotation).
    pub run_id: String,
    /// The Job's UID, as the create answered.
    pub uid: String,
}

#[derive(Debug)]
struct Entry {
    superseded: Vec<String>,
    superseded_at: Instant,
    job: Option<(CreatedJob, Instant)>,
}

impl Entry {
    fn new(now: Instant) -> Self {
        Self {
            superseded: Vec::new(),
            superseded_at: now,
            job: None,
        }
    }

    fn expire(&mut self, now: Instant, ttl: Duration) {
        if now.duration_since(self.superseded_at) >= ttl {
            self.superseded.clear();
        }
        if self
            .job
            .as_ref()
            .is_some_and(|(_, at)| now.duration_since(*at) >= ttl)
        {
            self.job = None;
        }
    }

    fn is_empty(&self) -> bool {
        self.superseded.is_empty() && self.job.is_none()
    }
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<(String, String), Entry>,
    writes: u32,
}

/// The controller's recent writes per session (see the module docs). Thread-safe.
#[derive(Debug)]
pub struct RecentWrites {
    ttl: Duration,
    inner: Mutex<Inner>,
}

impl Default for RecentWrites {
    fn default() -> Self {
        Self::new(RECENT_TTL)
    }
}

fn key(ns: &str, name: &str) -> (String, String) {
    (ns.to_owned(), name.to_owned())
}

impl RecentWrites {
    /// An empty memory whose entries override the caches for at most `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn record(&self, ns: &str, name: &str, update: impl FnOnce(&mut Entry, Instant)) {
        let now = Instant::now();
        let ttl = self.ttl;
        let mut inner = self.lock();
        inner.writes = inner.writes.wrapping_add(1);
        if inner.writes.is_multiple_of(SWEEP_EVERY) {
            inner.entries.retain(|_, e| {
                e.expire(now, ttl);
                !e.is_empty()
            });
        }
        let entry = inner
            .entries
            .entry(key(ns, name))
            .or_insert_with(|| Entry::new(now));
        update(entry, now);
    }

    /// Records that a write of the controller replaced version `replaced` of the session.
    pub fn session_written(&self, ns: &str, name: &str, replaced: Option<&str>) {
        let Some(replaced) = replaced else { return };
        self.record(ns, name, |e, now| {
            if !e.superseded.iter().any(|v| v == replaced) {
                e.superseded.push(replaced.to_owned());
            }
            e.superseded_at = now;
        });
    }

    /// Whether the cached session at `resource_version` is a version the controller's own
    /// write already replaced. Any other version means the cache caught up, and the
    /// remembered versions are dropped.
    pub fn session_behind(&self, ns: &str, name: &str, resource_version: Option<&str>) -> bool {
        let now = Instant::now();
        let mut inner = self.lock();
        let k = key(ns, name);
        let Some(entry) = inner.entries.get_mut(&k) else {
            return false;
        };
        entry.expire(now, self.ttl);
        let behind = resource_version.is_some_and(|rv| entry.superseded.iter().any(|v| v == rv));
        if !behind {
            entry.superseded.clear();
        }
        if entry.is_empty() {
            inner.entries.remove(&k);
        }
        behind
    }

    /// Records the runner Job the controller created for a run.
    pub fn job_created(&self, ns: &str, name: &str, job: CreatedJob) {
        self.record(ns, name, |e, now| e.job = Some((job, now)));
    }

    /// The Job the controller created for `run_id` while the Job cache does not show it yet
    /// (`cached_uid` is the UID of the session's Job in the cache, if any). When the cache
    /// shows the created Job, it is forgotten (the cache is current from then on).
    pub fn created_job(
        &self,
        ns: &str,
        name: &str,
        run_id: &str,
        cached_uid: Option<&str>,
    ) -> Option<CreatedJob> {
        let now = Instant::now();
        let mut inner = self.lock();
        let k = key(ns, name);
        let entry = inner.entries.get_mut(&k)?;
        entry.expire(now, self.ttl);
        let found = match &entry.job {
            Some((job, _)) if cached_uid == Some(job.uid.as_str()) => {
                entry.job = None;
                None
            }
            Some((job, _)) if job.run_id == run_id => Some(job.clone()),
            _ => None,
        };
        if entry.is_empty() {
            inner.entries.remove(&k);
        }
        found
    }

    /// Forgets the created Job with `uid` of the session (its deletion was observed).
    pub fn job_deleted(&self, ns: &str, name: &str, uid: &str) {
        let mut inner = self.lock();
        let k = key(ns, name);
        if let Some(entry) = inner.entries.get_mut(&k) {
            if entry.job.as_ref().is_some_and(|(j, _)| j.uid == uid) {
                entry.job = None;
            }
            if entry.is_empty() {
                inner.entries.remove(&k);
            }
        }
    }

    /// Number of sessions with remembered writes (for tests and metrics).
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(run: &str, uid: &str) -> CreatedJob {
        CreatedJob {
            run_id: run.into(),
            uid: uid.into(),
        }
    }

    #[test]
    fn a_cached_session_at_a_replaced_version_is_behind_until_a_newer_one_is_seen() {
        let r = RecentWrites::default();
        assert!(
            !r.session_behind("ns", "s", Some("10")),
            "nothing written yet"
        );
        r.session_written("ns", "s", Some("10"));
        r.session_written("ns", "s", Some("11"));
        assert!(r.session_behind("ns", "s", Some("10")));
        assert!(r.session_behind("ns", "s", Some("11")));
        assert!(!r.session_behind("other", "s", Some("10")), "per session");
        // The write (12) reached the cache: trusted again, even for the old versions.
        assert!(!r.session_behind("ns", "s", Some("12")));
        assert!(!r.session_behind("ns", "s", Some("10")));
        assert!(r.is_empty());
        // A write without a version to compare (never happens with a cached session) is ignored.
        r.session_written("ns", "s", None);
        assert!(r.is_empty());
    }

    #[test]
    fn a_created_job_stands_in_for_the_cache_until_the_cache_shows_it() {
        let r = RecentWrites::default();
        r.job_created("ns", "s", job("t1", "u1"));
        assert_eq!(r.created_job("ns", "s", "t1", None), Some(job("t1", "u1")));
        // The cache still shows the previous run's Job: still behind.
        assert_eq!(
            r.created_job("ns", "s", "t1", Some("u0")),
            Some(job("t1", "u1"))
        );
        // Another run is not answered by this Job.
        assert_eq!(r.created_job("ns", "s", "t2", None), None);
        // The cache shows it: forgotten, the cache decides from now on.
        assert_eq!(r.created_job("ns", "s", "t1", Some("u1")), None);
        assert_eq!(r.created_job("ns", "s", "t1", None), None);
        assert!(r.is_empty());
    }

    #[test]
    fn an_observed_deletion_forgets_the_created_job() {
        let r = RecentWrites::default();
        r.job_created("ns", "s", job("t1", "u1"));
        r.job_deleted("ns", "s", "other-uid");
        assert!(r.created_job("ns", "s", "t1", None).is_some());
        r.job_deleted("ns", "s", "u1");
        assert_eq!(r.created_job("ns", "s", "t1", None), None);
        assert!(r.is_empty());
    }

    #[test]
    fn remembered_writes_expire() {
        let r = RecentWrites::new(Duration::ZERO);
        r.session_written("ns", "s", Some("10"));
        r.job_created("ns", "s", job("t1", "u1"));
        assert!(!r.session_behind("ns", "s", Some("10")));
        assert_eq!(r.created_job("ns", "s", "t1", None), None);
        assert!(r.is_empty());
    }

    #[test]
    fn expired_entries_of_sessions_never_seen_again_are_swept() {
        let r = RecentWrites::new(Duration::ZERO);
        for i in 0..SWEEP_EVERY {
            r.session_written("ns", &format!("s{i}"), Some("1"));
        }
        assert!(r.len() <= 1, "{} entries left", r.len());
    }
}
