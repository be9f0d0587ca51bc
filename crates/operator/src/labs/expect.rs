//! Read-your-writes for the labs controller: what this operator wrote recently, so that a
//! reconcile running on a watch cache that has not yet caught up with those writes neither
//! repeats them nor acts on the older state.
//!
//! Each entry holds the `resourceVersion` a write returned (and, for children, the object the
//! write returned). A cached object whose `resourceVersion` is lower than the entry's is older
//! than the write, so the written object is the newer view; once the cache reaches the entry's
//! version the entry is dropped and the cache is trusted again. Versions that are not decimal integers are never compared: the entry is then
//! ignored and the cache decides, as without this module. Entries expire after [`TTL`], and
//! the child caches drop an entry as soon as they see the object deleted, so a child removed
//! by someone else is recreated.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use kube::{Resource, ResourceExt, api::DynamicObject, discovery::ApiResource};

use super::build::ANNOTATION_HASH;

/// How long a recorded write is trusted over a cache that has not reached it.
pub const TTL: Duration = Duration::from_secs(30);
/// Size above which expired entries are pruned on insert.
const PRUNE_ABOVE: usize = 1024;

#[derive(Debug, Clone)]
struct Entry {
    version: u64,
    object: Option<Arc<DynamicObject>>,
    at: Instant,
}

/// Recent writes by key (see the module docs).
#[derive(Debug, Default)]
pub struct Expectations {
    entries: Mutex<HashMap<String, Entry>>,
}

/// A `resourceVersion` as a number, when it is one.
fn version(rv: Option<&str>) -> Option<u64> {
    rv?.parse().ok()
}

/// Key of a child: resource, namespace and name.
pub fn child_key(ar: &ApiResource, namespace: &str, name: &str) -> String {
    format!("{}/{}/{namespace}/{name}", ar.group, ar.plural)
}

/// Key of a cached child object of resource `ar`.
pub fn key_of(ar: &ApiResource, obj: &DynamicObject) -> String {
    child_key(ar, &obj.namespace().unwrap_or_default(), &obj.name_any())
}

fn hash_of(obj: &DynamicObject) -> Option<&String> {
    obj.annotations().get(ANNOTATION_HASH)
}

impl Expectations {
    /// Records that a write of `key` returned `resource_version` (and `object`, for children).
    pub fn record(
        &self,
        key: String,
        resource_version: Option<&str>,
        object: Option<Arc<DynamicObject>>,
    ) {
        let Some(version) = version(resource_version) else {
            return;
        };
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() > PRUNE_ABOVE {
            entries.retain(|_, e| e.at.elapsed() < TTL);
        }
        entries.insert(
            key,
            Entry {
                version,
                object,
                at: Instant::now(),
            },
        );
    }

    /// Forgets `key` (its object was deleted).
    pub fn forget(&self, key: &str) {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
    }

    /// Number of entries held.
    pub fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The live entry for `key` when the cache, at `seen` (`None`: absent from the cache), has
    /// not reached it yet; drops the entry once the cache has.
    fn ahead_of(&self, key: &str, seen: Option<&str>) -> Option<Entry> {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = entries.get(key)?.clone();
        if entry.at.elapsed() >= TTL {
            entries.remove(key);
            return None;
        }
        match seen {
            None => Some(entry),
            Some(rv) => match version(Some(rv)) {
                Some(v) if v < entry.version => Some(entry),
                _ => {
                    entries.remove(key);
                    None
                }
            },
        }
    }

    /// Whether `obj` (from a cache) is older than this operator's latest write of it: a
    /// reconcile of it would act on state it has already changed.
    pub fn is_stale<K: Resource>(&self, key: &str, obj: &K) -> bool {
        self.ahead_of(key, obj.meta().resource_version.as_deref())
            .is_some()
    }

    /// The newer of the cached child `cached` and the object this operator's latest write of
    /// it returned (while the cache has not caught up with that write).
    pub fn newest(
        &self,
        key: &str,
        cached: Option<Arc<DynamicObject>>,
    ) -> Option<Arc<DynamicObject>> {
        let seen = cached
            .as_ref()
            .and_then(|c| c.meta().resource_version.clone());
        match self.ahead_of(key, seen.as_deref()) {
            Some(Entry {
                object: Some(written),
                ..
            }) => Some(written),
            _ => cached,
        }
    }
}

/// Children this operator deleted recently, so that a cleanup pass on a cache that has not
/// seen the deletion yet waits for it instead of deleting again. Entries expire after [`TTL`]
/// (the child is then deleted again) and are dropped when the cache sees the deletion.
#[derive(Debug, Default)]
pub struct Deletions {
    entries: Mutex<HashMap<String, Instant>>,
}

impl Deletions {
    /// Records that `key` was deleted now.
    pub fn record(&self, key: String) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() > PRUNE_ABOVE {
            entries.retain(|_, at| at.elapsed() < TTL);
        }
        entries.insert(key, Instant::now());
    }

    /// How long ago `key` was deleted, within [`TTL`].
    pub fn since(&self, key: &str) -> Option<Duration> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.get(key).map(Instant::elapsed).filter(|d| *d < TTL)
    }

    /// Forgets `key` (the cache saw it deleted).
    pub fn forget(&self, key: &str) {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
    }
}

/// Whether the child `desired` needs no write: `observed` (see [`Expectations::newest`])
/// carries its hash and is not being deleted. A drifted, deleted or outdated child is not up
/// to date.
pub fn up_to_date(desired: &DynamicObject, observed: Option<&DynamicObject>) -> bool {
    observed.is_some_and(|live| {
        live.meta().deletion_timestamp.is_none() && hash_of(live) == hash_of(desired)
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn app(rv: &str, hash: &str) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
            "metadata": {"name": "gw-app", "namespace": "argocd", "resourceVersion": rv,
                "annotations": {ANNOTATION_HASH: hash}},
        }))
        .unwrap()
    }

    const KEY: &str = "argoproj.io/applications/argocd/gw-app";

    fn seen(e: &Expectations, cached: Option<DynamicObject>) -> Option<Arc<DynamicObject>> {
        e.newest(KEY, cached.map(Arc::new))
    }

    #[test]
    fn an_unchanged_child_is_not_reapplied_and_a_drifted_one_is() {
        let e = Expectations::default();
        let check = |desired: &str, cached: Option<DynamicObject>| {
            up_to_date(&app("", desired), seen(&e, cached).as_deref())
        };
        // Nothing applied yet, nothing cached: apply.
        assert!(!check("h1", None));
        // The cache holds the desired hash: no write.
        assert!(check("h1", Some(app("5", "h1"))));
        // The spec changed: the cached hash differs, apply.
        assert!(!check("h2", Some(app("5", "h1"))));
        // Applied h2 at version 7; the cache still shows version 5 with h1: no second write,
        // and the written object is what the reconcile sees.
        e.record(KEY.into(), Some("7"), Some(Arc::new(app("7", "h2"))));
        assert!(check("h2", Some(app("5", "h1"))));
        assert_eq!(
            seen(&e, Some(app("5", "h1")))
                .unwrap()
                .resource_version()
                .as_deref(),
            Some("7")
        );
        // Nor while the cache has not seen the object at all.
        assert!(check("h2", None));
        // Someone else changed it after our write (version 9, other hash): drift, apply.
        assert!(!check("h2", Some(app("9", "hx"))));
        // The entry is gone once the cache has caught up.
        assert!(e.is_empty());
        // A desired hash other than the one written is applied.
        e.record(KEY.into(), Some("11"), Some(Arc::new(app("11", "h2"))));
        assert!(!check("h3", Some(app("9", "hx"))));
    }

    #[test]
    fn a_deleted_child_is_recreated() {
        let e = Expectations::default();
        e.record(KEY.into(), Some("7"), Some(Arc::new(app("7", "h1"))));
        assert!(up_to_date(&app("", "h1"), seen(&e, None).as_deref()));
        // The cache saw the deletion.
        e.forget(KEY);
        assert!(!up_to_date(&app("", "h1"), seen(&e, None).as_deref()));
        // A child being deleted is not up to date even with the desired hash.
        let mut dying = app("12", "h1");
        dying.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now()),
        );
        assert!(!up_to_date(&app("", "h1"), Some(&dying)));
    }

    #[test]
    fn cached_objects_older_than_our_write_are_stale() {
        let e = Expectations::default();
        e.record("lab/gw".into(), Some("20"), None);
        assert!(e.is_stale("lab/gw", &app("19", "")));
        assert!(!e.is_stale("lab/other", &app("19", "")));
        // Caught up (or newer): not stale, and the entry is dropped.
        assert!(!e.is_stale("lab/gw", &app("20", "")));
        assert!(e.is_empty());
        // Versions that are not integers are never compared.
        e.record("lab/gw".into(), Some("abc"), None);
        assert!(e.is_empty());
        e.record("lab/gw".into(), Some("20"), None);
        assert!(!e.is_stale("lab/gw", &app("x1", "")));
    }

    #[test]
    fn recent_deletions_are_remembered_until_seen() {
        let d = Deletions::default();
        assert!(d.since(KEY).is_none());
        d.record(KEY.into());
        assert!(d.since(KEY).is_some_and(|s| s < TTL));
        d.forget(KEY);
        assert!(d.since(KEY).is_none());
    }

    #[test]
    fn keys_name_resource_namespace_and_name() {
        let ar = crate::labs::application_resource();
        assert_eq!(key_of(&ar, &app("1", "h")), KEY);
    }
}
