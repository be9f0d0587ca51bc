//! Compact caches for kinds watched in large numbers (one runner Job, pod and Secret per
//! session): each object is kept as a small entry with only what the controller reads.
//!
//! kube-runtime's reflector store keeps each object with a whole `ObjectMeta`, behind an
//! `ObjectRef` key holding its own copies of the name, namespace, uid and resourceVersion;
//! for tens of thousands of children these dominate the operator's memory. A
//! [`CompactStore`] holds one entry per object, found by its name in a set per namespace
//! (the name lives only in the entry), with an optional index by a group such as the
//! session a pod runs for.
//!
//! [`SharedWatches::compact`](super::SharedWatches::compact) registers such a watch. Its task
//! applies each watch event to the store first and then hands a [`Change`] to every
//! subscriber, waiting for each (a subscriber stream must be polled, like a shared watch's).
//! Every relist is applied in place: each listed object replaces its entry, and the entries
//! not listed are removed and reported as deleted (objects deleted during a watch gap). An
//! object listed or sent at the resourceVersion its entry was made from is unchanged: it is
//! neither stored again nor reported, so a relist of a settled cluster wakes no controller.

use std::{
    borrow::Borrow,
    collections::{HashMap, HashSet},
    fmt::Debug,
    hash::{Hash, Hasher},
    sync::{
        Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard,
        atomic::{AtomicBool, Ordering},
    },
};

use futures::{
    SinkExt, StreamExt,
    channel::mpsc::{Receiver, Sender},
    future::BoxFuture,
};
use kube::{
    Api, Resource,
    runtime::{WatchStreamExt, watcher},
};
use serde::de::DeserializeOwned;

use super::probes::HealthState;

/// An entry of a [`CompactStore`], made from one watched object.
pub trait Compact: Debug + Send + Sync + Sized + 'static {
    /// The type the watch deserializes each object into (dropped after [`Compact::compact`]).
    type Wire: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static;

    /// The object's namespace (`metadata.namespace`) and its entry, whose [`Compact::name`]
    /// is `metadata.name`; `None` for an object without a name or a namespace (never cached).
    fn compact(wire: Self::Wire) -> Option<(String, Self)>;

    /// The object's name (unique in its namespace).
    fn name(&self) -> &str;

    /// The group the object is indexed under in its namespace, if any.
    fn group(&self) -> Option<&str> {
        None
    }
}

/// An entry in a namespace's set, hashed and compared by the entry's name, with the
/// [`version_of`] the object's resourceVersion it was made from.
#[derive(Debug)]
struct Named<E>(Arc<E>, u64);

/// A resourceVersion as a number for comparing versions: the number itself when it is one
/// (as kube-apiserver's are), otherwise a hash of the text; 0 for none (never equal to a
/// known version).
fn version_of(rv: Option<&str>) -> u64 {
    match rv {
        None | Some("") => 0,
        Some(rv) => rv
            .parse::<u64>()
            .ok()
            .filter(|v| *v != 0)
            .unwrap_or_else(|| {
                let mut h = std::hash::DefaultHasher::new();
                rv.hash(&mut h);
                h.finish() | 1
            }),
    }
}

impl<E: Compact> Borrow<str> for Named<E> {
    fn borrow(&self) -> &str {
        self.0.name()
    }
}

impl<E: Compact> Hash for Named<E> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.name().hash(state);
    }
}

impl<E: Compact> PartialEq for Named<E> {
    fn eq(&self, other: &Self) -> bool {
        self.0.name() == other.0.name()
    }
}

impl<E: Compact> Eq for Named<E> {}

/// The entries of one namespace.
#[derive(Debug)]
struct Space<E> {
    objects: HashSet<Named<E>>,
    groups: HashMap<Box<str>, Vec<Arc<E>>>,
}

impl<E> Default for Space<E> {
    fn default() -> Self {
        Self {
            objects: HashSet::new(),
            groups: HashMap::new(),
        }
    }
}

impl<E: Compact> Space<E> {
    fn ungroup(&mut self, old: &E) {
        let Some(group) = old.group() else { return };
        if let Some(members) = self.groups.get_mut(group) {
            members.retain(|m| m.name() != old.name());
            if members.is_empty() {
                self.groups.remove(group);
            }
        }
    }
}

#[derive(Debug)]
struct Inner<E> {
    spaces: HashMap<Arc<str>, Space<E>>,
    len: usize,
}

/// A cache of compact entries by namespace and name (see the module documentation). Clones
/// share the same cache.
#[derive(Debug)]
pub struct CompactStore<E> {
    inner: Arc<RwLock<Inner<E>>>,
    ready: Arc<AtomicBool>,
}

impl<E> Clone for CompactStore<E> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            ready: self.ready.clone(),
        }
    }
}

impl<E> Default for CompactStore<E> {
    fn default() -> Self {
        Self {
            inner: Arc::new(RwLock::new(Inner {
                spaces: HashMap::new(),
                len: 0,
            })),
            ready: Arc::new(AtomicBool::new(false)),
        }
    }
}

impl<E: Compact> CompactStore<E> {
    /// An empty store that has not completed a list yet.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self) -> RwLockReadGuard<'_, Inner<E>> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner<E>> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// The entry of object `name` in `ns`.
    #[must_use]
    pub fn get(&self, ns: &str, name: &str) -> Option<Arc<E>> {
        self.read()
            .spaces
            .get(ns)?
            .objects
            .get(name)
            .map(|n| n.0.clone())
    }

    /// The [`version_of`] the resourceVersion entry `name` in `ns` was made from (0 when
    /// unknown).
    fn version(&self, ns: &str, name: &str) -> Option<u64> {
        self.read().spaces.get(ns)?.objects.get(name).map(|n| n.1)
    }

    /// The entries indexed under `group` in `ns`.
    #[must_use]
    pub fn group(&self, ns: &str, group: &str) -> Vec<Arc<E>> {
        self.read()
            .spaces
            .get(ns)
            .and_then(|s| s.groups.get(group))
            .cloned()
            .unwrap_or_default()
    }

    /// Number of cached objects.
    #[must_use]
    pub fn len(&self) -> usize {
        self.read().len
    }

    /// Whether no object is cached.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the watch has completed its first list (until then a missing entry says
    /// nothing about the cluster).
    #[must_use]
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Marks the first list as complete.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    /// Stores `entry` in `ns`, replacing the entry of the same name; returns the shared
    /// namespace name and the stored entry.
    pub fn insert(&self, ns: &str, entry: E) -> (Arc<str>, Arc<E>) {
        self.insert_version(ns, entry, 0)
    }

    /// [`CompactStore::insert`] of an entry made from resourceVersion `version`
    /// ([`version_of`]).
    fn insert_version(&self, ns: &str, entry: E, version: u64) -> (Arc<str>, Arc<E>) {
        let entry = Arc::new(entry);
        let mut inner = self.write();
        let key: Arc<str> = match inner.spaces.get_key_value(ns) {
            Some((key, _)) => key.clone(),
            None => Arc::from(ns),
        };
        let space = inner.spaces.entry(key.clone()).or_default();
        let old = space.objects.replace(Named(entry.clone(), version));
        if let Some(Named(old, _)) = &old {
            space.ungroup(old);
        }
        if let Some(group) = entry.group() {
            space
                .groups
                .entry(group.into())
                .or_default()
                .push(entry.clone());
        }
        if old.is_none() {
            inner.len += 1;
        }
        (key, entry)
    }

    /// Removes the entry of `name` in `ns`; returns the namespace name and the removed entry.
    pub fn remove(&self, ns: &str, name: &str) -> Option<(Arc<str>, Arc<E>)> {
        let mut inner = self.write();
        let key = inner.spaces.get_key_value(ns)?.0.clone();
        let space = inner.spaces.get_mut(ns)?;
        let Named(old, _) = space.objects.take(name)?;
        space.ungroup(&old);
        if space.objects.is_empty() {
            inner.spaces.remove(ns);
        }
        inner.len -= 1;
        Some((key, old))
    }

    /// The namespace and name of every cached object.
    #[must_use]
    pub fn keys(&self) -> Vec<(Arc<str>, Box<str>)> {
        let inner = self.read();
        inner
            .spaces
            .iter()
            .flat_map(|(ns, space)| {
                space
                    .objects
                    .iter()
                    .map(move |n| (ns.clone(), Box::from(n.0.name())))
            })
            .collect()
    }
}

/// An object a compact watch reported, after its store was updated.
#[derive(Debug)]
pub struct Change<E> {
    /// The object's namespace.
    pub namespace: Arc<str>,
    /// Its entry (for a deletion, its last state).
    pub object: Arc<E>,
    /// Whether the object was deleted.
    pub deleted: bool,
}

impl<E> Clone for Change<E> {
    fn clone(&self) -> Self {
        Self {
            namespace: self.namespace.clone(),
            object: self.object.clone(),
            deleted: self.deleted,
        }
    }
}

/// A subscription to a compact watch: the store and the stream of changes.
#[derive(Debug)]
pub struct CompactWatch<E> {
    /// The shared store.
    pub store: CompactStore<E>,
    /// Every change, in order; must be polled.
    pub changes: Receiver<Change<E>>,
}

/// Applies watch events to a [`CompactStore`] and returns the changes to report.
#[derive(Debug)]
pub struct Applier<E> {
    store: CompactStore<E>,
    /// The objects listed so far by the list in progress, if one is.
    listing: Option<HashSet<(Arc<str>, Box<str>)>>,
}

impl<E: Compact> Applier<E> {
    /// An applier writing into `store`.
    #[must_use]
    pub fn new(store: CompactStore<E>) -> Self {
        Self {
            store,
            listing: None,
        }
    }

    /// Applies one watch event; returns the changes it made, in order.
    pub fn apply(&mut self, event: watcher::Event<E::Wire>) -> Vec<Change<E>> {
        match event {
            watcher::Event::Init => {
                self.listing = Some(HashSet::new());
                Vec::new()
            }
            watcher::Event::InitApply(obj) | watcher::Event::Apply(obj) => {
                let meta = obj.meta();
                let version = version_of(meta.resource_version.as_deref());
                if version != 0
                    && let (Some(ns), Some(name)) = (&meta.namespace, &meta.name)
                    && self.store.version(ns, name) == Some(version)
                {
                    // The object as cached (a relist of an unchanged object): not compacted
                    // again (an entry is keyed by its object's namespace and name).
                    if let Some(seen) = &mut self.listing {
                        seen.insert((Arc::from(ns.as_str()), name.as_str().into()));
                    }
                    return Vec::new();
                }
                let Some((ns, entry)) = E::compact(obj) else {
                    return Vec::new();
                };
                let (namespace, object) = self.store.insert_version(&ns, entry, version);
                if let Some(seen) = &mut self.listing {
                    seen.insert((namespace.clone(), object.name().into()));
                }
                vec![Change {
                    namespace,
                    object,
                    deleted: false,
                }]
            }
            watcher::Event::Delete(obj) => {
                let Some((ns, entry)) = E::compact(obj) else {
                    return Vec::new();
                };
                let namespace = match self.store.remove(&ns, entry.name()) {
                    Some((namespace, _)) => namespace,
                    None => Arc::from(ns.as_str()),
                };
                vec![Change {
                    namespace,
                    object: Arc::new(entry),
                    deleted: true,
                }]
            }
            watcher::Event::InitDone => {
                let seen = self.listing.take().unwrap_or_default();
                let gone: Vec<_> = self
                    .store
                    .keys()
                    .into_iter()
                    .filter(|key| !seen.contains(key))
                    .collect();
                self.store.set_ready();
                gone.into_iter()
                    .filter_map(|(ns, name)| self.store.remove(&ns, &name))
                    .map(|(namespace, object)| Change {
                        namespace,
                        object,
                        deleted: true,
                    })
                    .collect()
            }
        }
    }
}

/// Runs the watch of `api` with `config` into `store` until the stream ends, reporting every
/// change to `subscribers` and the first completed list to `health`.
pub(super) fn drive<E: Compact>(
    key: String,
    api: Api<E::Wire>,
    config: watcher::Config,
    store: CompactStore<E>,
    mut subscribers: Vec<Sender<Change<E>>>,
    health: HealthState,
) -> BoxFuture<'static, ()> {
    health.loop_started(&key);
    Box::pin(async move {
        let mut applier = Applier::new(store.clone());
        let mut synced = false;
        let mut events = watcher(api, super::watches::paged(config))
            .default_backoff()
            .boxed();
        while let Some(event) = events.next().await {
            let event = match event {
                Ok(event) => event,
                Err(error) => {
                    tracing::warn!(watch = %key, %error, "watch error; retrying with backoff");
                    continue;
                }
            };
            let init_done = matches!(event, watcher::Event::InitDone);
            for change in applier.apply(event) {
                let mut open = Vec::with_capacity(subscribers.len());
                for mut tx in subscribers.drain(..) {
                    if tx.send(change.clone()).await.is_ok() {
                        open.push(tx);
                    }
                }
                subscribers = open;
            }
            if init_done && !synced {
                synced = true;
                tracing::info!(watch = %key, objects = store.len(), "cache synced");
                health.cache_synced();
            }
        }
        health.loop_failed(&key, "the watch stream ended");
    })
}

#[cfg(test)]
mod tests;
