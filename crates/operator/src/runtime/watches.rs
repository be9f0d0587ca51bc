//! One shared watch (reflector) per kind, feeding every controller that needs that kind.
//!
//! Families call [`SharedWatches::subscribe`] while they build their controllers. Two
//! subscriptions with the same type, URL scope and selectors share one watch and one cache.
//! After every family has been built, the manager calls [`SharedWatches::start`], which spawns
//! the reflectors; subscribing after that is not possible (kube-runtime can only hand out
//! subscriptions before the writer is moved into its reflector).
//!
//! Every cached object has `metadata.managedFields` and the `kubectl apply` annotation
//! dropped before it is stored ([`trim`]), and relists
//! after the first list are applied to the cache in place ([`super::relist`]), so a relist
//! never holds two copies of a cache and objects deleted during a watch gap reach
//! [`SharedWatches::deletions`].
//!
//! Back-pressure: a shared watch waits until every subscriber has taken an event, so every
//! [`SharedWatch::stream`] must be polled (pass it to `Controller::for_shared_stream`,
//! `owns_shared_stream` or `watches_shared_stream`), never stored unused.
//!
//! Kinds watched in large numbers whose whole objects a controller does not need go through
//! [`SharedWatches::compact`] instead: the same registry, a cache of small entries
//! ([`super::compact`]) and a stream of changes including deletions.
//!
//! Deletions: kube-runtime's shared subscriptions report objects that were added or changed,
//! not objects that were deleted. A controller that must react to a deleted child (to recreate
//! it) also takes [`SharedWatches::deletions`] and merges it into the same trigger, e.g.
//! `c.owns_shared_stream(futures::stream::select(sub.stream, deleted))`.

use std::{any::Any, collections::HashMap, fmt::Debug, hash::Hash, sync::Arc};

use futures::{
    FutureExt, StreamExt,
    channel::mpsc::{UnboundedReceiver, UnboundedSender, unbounded},
    future::BoxFuture,
};
use kube::{
    Api, Resource, ResourceExt,
    runtime::{
        WatchStreamExt,
        reflector::{self, ReflectHandle, Store, store::Writer},
        watcher,
    },
};
use serde::de::DeserializeOwned;

use super::{
    compact::{self, Compact, CompactStore, CompactWatch},
    probes::HealthState,
    relist::InPlaceRelist,
};

/// Events buffered per shared watch before back-pressure applies.
pub const DEFAULT_BUFFER: usize = 1024;

/// Most objects per page of a watch's list (kube's default is 500). Each page is held in
/// memory twice while it is read, once as the response body and once decoded, and after a
/// watch gap every cache relists at the same time; smaller pages keep that burst of memory
/// small at the cost of a few more list requests.
pub const LIST_PAGE_SIZE: u32 = 100;

/// The annotation client-side `kubectl apply` (and tools that apply the same way, such as
/// Argo CD by default) writes on every object it applies: the whole applied object again, as
/// JSON. No controller reads it.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Drops from `obj` what no controller reads and what would otherwise be much of a cache's
/// memory: `metadata.managedFields` and the [`LAST_APPLIED`] annotation (for an object
/// applied with `kubectl apply`, a second copy of its spec, such as a session's prompt).
/// Every watch that caches whole objects applies this to each object before storing it.
pub fn trim<K: Resource>(obj: &mut K) {
    obj.managed_fields_mut().clear();
    let meta = obj.meta_mut();
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
        if annotations.is_empty() {
            meta.annotations = None;
        }
    }
}

/// Whether a cache has finished its initial list, without waiting. A reconcile that decides
/// from a cache checks this first: before the list completes, an empty cache would look like
/// missing objects (and get them created or rewritten), as it does after every restart.
pub fn synced<K>(store: &Store<K>) -> bool
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + Hash + Clone,
{
    store
        .wait_until_ready()
        .now_or_never()
        .is_some_and(|r| r.is_ok())
}

/// How soon a reconcile that found a cache not yet synced looks again.
pub const CACHE_SYNC_RECHECK: std::time::Duration = std::time::Duration::from_millis(500);

/// `config` with list pages of at most [`LIST_PAGE_SIZE`] objects.
pub(crate) fn paged(config: watcher::Config) -> watcher::Config {
    let size = config
        .page_size
        .map_or(LIST_PAGE_SIZE, |size| size.min(LIST_PAGE_SIZE));
    config.page_size(size)
}

/// A subscription to a shared watch: the cache plus a stream of changed objects.
pub struct SharedWatch<K>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + Hash + Clone,
{
    /// The shared cache for this kind and scope.
    pub reader: Store<K>,
    /// Objects as they change; must be polled (see the module docs).
    pub stream: ReflectHandle<K>,
}

impl<K> Debug for SharedWatch<K>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + Hash + Clone,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedWatch").finish_non_exhaustive()
    }
}

/// Objects of one shared watch as they are deleted (see [`SharedWatches::deletions`]).
pub type Deletions<K> = UnboundedReceiver<Arc<K>>;

/// Errors from the shared-watch registry.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// Subscribing is only possible before [`SharedWatches::start`].
    #[error("cannot subscribe to {key} after the shared watches were started")]
    AlreadyStarted {
        /// Registry key of the watch.
        key: String,
    },
    /// kube-runtime refused a subscription (a store that is not shared).
    #[error("the reflector for {key} does not support subscriptions")]
    NotShared {
        /// Registry key of the watch.
        key: String,
    },
    /// The registry holds a different Rust type under this key (a bug in key construction).
    #[error("the shared watch {key} holds a different object type")]
    TypeMismatch {
        /// Registry key of the watch.
        key: String,
    },
}

trait PendingWatch: Send {
    fn key(&self) -> &str;
    fn as_any_mut(&mut self) -> &mut dyn Any;
    fn start(self: Box<Self>, health: HealthState) -> BoxFuture<'static, ()>;
}

struct Entry<K>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + Hash + Clone,
{
    key: String,
    api: Api<K>,
    config: watcher::Config,
    reader: Store<K>,
    writer: Writer<K>,
    deleted: Vec<UnboundedSender<Arc<K>>>,
}

impl<K> PendingWatch for Entry<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone + Default + Send + Sync,
{
    fn key(&self) -> &str {
        &self.key
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn start(self: Box<Self>, health: HealthState) -> BoxFuture<'static, ()> {
        let Entry {
            key,
            api,
            config,
            reader,
            writer,
            mut deleted,
        } = *self;
        health.loop_started(&key);
        Box::pin(async move {
            let mut synced = false;
            let mut relist = InPlaceRelist::new();
            let cache = reader.clone();
            watcher(api, paged(config))
                .default_backoff()
                .modify(|obj: &mut K| trim(obj))
                .flat_map(move |event| {
                    futures::stream::iter(match event {
                        Ok(event) => relist
                            .rewrite(event, &cache)
                            .into_iter()
                            .map(Ok)
                            .collect::<Vec<_>>(),
                        Err(error) => vec![Err(error)],
                    })
                })
                .reflect_shared(writer)
                .for_each(|event| {
                    match event {
                        // The reflector has applied the event, so the cache is complete now.
                        // (Readiness is taken from the stream rather than from
                        // `Store::wait_until_ready`, which wakes only its latest waiter.)
                        Ok(watcher::Event::InitDone) if !synced => {
                            synced = true;
                            tracing::info!(watch = %key, objects = reader.len(), "cache synced");
                            health.cache_synced();
                        }
                        Ok(watcher::Event::Delete(obj)) if !deleted.is_empty() => {
                            let obj = Arc::new(obj);
                            deleted.retain(|tx| tx.unbounded_send(obj.clone()).is_ok());
                        }
                        Ok(_) => {}
                        Err(error) => {
                            tracing::warn!(watch = %key, %error, "watch error; retrying with backoff");
                        }
                    }
                    futures::future::ready(())
                })
                .await;
            health.loop_failed(&key, "the watch stream ended");
        })
    }
}

/// A compact watch waiting to be started (see [`SharedWatches::compact`]).
struct CompactEntry<E: Compact> {
    key: String,
    api: Api<E::Wire>,
    config: watcher::Config,
    store: CompactStore<E>,
    subscribers: Vec<futures::channel::mpsc::Sender<compact::Change<E>>>,
}

impl<E: Compact> PendingWatch for CompactEntry<E> {
    fn key(&self) -> &str {
        &self.key
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn start(self: Box<Self>, health: HealthState) -> BoxFuture<'static, ()> {
        let CompactEntry {
            key,
            api,
            config,
            store,
            subscribers,
        } = *self;
        compact::drive(key, api, config, store, subscribers, health)
    }
}

/// Registry of shared watches, filled while families build their controllers.
pub struct SharedWatches {
    buffer: usize,
    pending: Vec<Box<dyn PendingWatch>>,
    index: HashMap<String, usize>,
}

impl Debug for SharedWatches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedWatches")
            .field("buffer", &self.buffer)
            .field("watches", &self.index.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Default for SharedWatches {
    fn default() -> Self {
        Self::new(DEFAULT_BUFFER)
    }
}

fn watch_key<K>(api: &Api<K>, config: &watcher::Config) -> String
where
    K: Resource,
{
    watch_key_of(std::any::type_name::<K>(), api, config)
}

/// The registry key of a watch of `api` with `config` cached as type `cached`.
fn watch_key_of<K>(cached: &str, api: &Api<K>, config: &watcher::Config) -> String
where
    K: Resource,
{
    format!(
        "{cached}|{}|labels={}|fields={}",
        api.resource_url(),
        config.label_selector.as_deref().unwrap_or(""),
        config.field_selector.as_deref().unwrap_or("")
    )
}

impl SharedWatches {
    /// An empty registry whose watches buffer `buffer` events each.
    pub fn new(buffer: usize) -> Self {
        Self {
            buffer: buffer.max(1),
            pending: Vec::new(),
            index: HashMap::new(),
        }
    }

    /// Number of distinct watches registered.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether no watch is registered.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    fn entry<K>(
        &mut self,
        api: Api<K>,
        config: watcher::Config,
    ) -> Result<&mut Entry<K>, WatchError>
    where
        K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
        K::DynamicType: Eq + Hash + Clone + Default + Send + Sync,
    {
        let key = watch_key(&api, &config);
        let position = if let Some(position) = self.index.get(&key) {
            *position
        } else {
            let (reader, writer) = reflector::store_shared::<K>(self.buffer);
            self.pending.push(Box::new(Entry {
                key: key.clone(),
                api,
                config,
                reader,
                writer,
                deleted: Vec::new(),
            }));
            let position = self.pending.len() - 1;
            self.index.insert(key, position);
            position
        };
        let pending = &mut self.pending[position];
        let key = pending.key().to_owned();
        pending
            .as_any_mut()
            .downcast_mut::<Entry<K>>()
            .ok_or(WatchError::TypeMismatch { key })
    }

    /// Subscribes to the watch of `api` with `config` (created on first use): returns the
    /// shared cache and a stream of changed objects for one controller.
    pub fn subscribe<K>(
        &mut self,
        api: Api<K>,
        config: watcher::Config,
    ) -> Result<SharedWatch<K>, WatchError>
    where
        K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
        K::DynamicType: Eq + Hash + Clone + Default + Send + Sync,
    {
        let entry = self.entry(api, config)?;
        let stream = entry
            .writer
            .subscribe()
            .ok_or_else(|| WatchError::NotShared {
                key: entry.key.clone(),
            })?;
        Ok(SharedWatch {
            reader: entry.reader.clone(),
            stream,
        })
    }

    /// Objects of the watch of `api` with `config` (created on first use) as the watch reports
    /// them deleted, for a controller that must react to deletions (see the module docs). The
    /// stream must be polled; dropping it unsubscribes.
    pub fn deletions<K>(
        &mut self,
        api: Api<K>,
        config: watcher::Config,
    ) -> Result<Deletions<K>, WatchError>
    where
        K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
        K::DynamicType: Eq + Hash + Clone + Default + Send + Sync,
    {
        let (tx, rx) = unbounded();
        self.entry(api, config)?.deleted.push(tx);
        Ok(rx)
    }

    /// The shared cache of `api` with `config` (created on first use), without an event
    /// stream: for lookups of objects whose changes do not trigger reconciles.
    pub fn store<K>(&mut self, api: Api<K>, config: watcher::Config) -> Result<Store<K>, WatchError>
    where
        K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
        K::DynamicType: Eq + Hash + Clone + Default + Send + Sync,
    {
        Ok(self.entry(api, config)?.reader.clone())
    }

    /// Subscribes to the compact watch of `api` with `config` (created on first use): returns
    /// its [`CompactStore`] of `E` entries and a stream of every change for one controller.
    /// A compact watch is a separate watch from a [`SharedWatches::subscribe`] one of the same
    /// type (its key names the entry type).
    pub fn compact<E: Compact>(
        &mut self,
        api: Api<E::Wire>,
        config: watcher::Config,
    ) -> Result<CompactWatch<E>, WatchError> {
        let key = watch_key_of(
            &format!("compact:{}", std::any::type_name::<E>()),
            &api,
            &config,
        );
        let position = if let Some(position) = self.index.get(&key) {
            *position
        } else {
            self.pending.push(Box::new(CompactEntry::<E> {
                key: key.clone(),
                api,
                config,
                store: CompactStore::new(),
                subscribers: Vec::new(),
            }));
            let position = self.pending.len() - 1;
            self.index.insert(key.clone(), position);
            position
        };
        let entry = self.pending[position]
            .as_any_mut()
            .downcast_mut::<CompactEntry<E>>()
            .ok_or(WatchError::TypeMismatch { key })?;
        let (tx, changes) = futures::channel::mpsc::channel(self.buffer);
        entry.subscribers.push(tx);
        Ok(CompactWatch {
            store: entry.store.clone(),
            changes,
        })
    }

    /// Starts one reflector task per registered watch and returns their futures (the caller
    /// spawns them). Each reports "cache synced" to `health` after its first list.
    pub fn start(self, health: &HealthState) -> Vec<(String, BoxFuture<'static, ()>)> {
        health.expect_caches(self.pending.len());
        self.pending
            .into_iter()
            .map(|entry| {
                let key = entry.key().to_owned();
                (key, entry.start(health.clone()))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use kube::runtime::watcher;

    use super::{LIST_PAGE_SIZE, paged};

    #[test]
    fn trim_drops_managed_fields_and_the_kubectl_apply_annotation_only() {
        let mut cm: k8s_openapi::api::core::v1::ConfigMap =
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "a", "namespace": "ns",
                    "annotations": {"keep": "me", super::LAST_APPLIED: "{\"data\":{}}"},
                    "managedFields": [{"manager": "kubectl", "operation": "Apply"}]},
                "data": {"k": "v"}
            }))
            .unwrap();
        super::trim(&mut cm);
        assert!(
            cm.metadata
                .managed_fields
                .as_ref()
                .is_none_or(Vec::is_empty)
        );
        assert_eq!(
            cm.metadata.annotations,
            Some(std::collections::BTreeMap::from([(
                "keep".to_owned(),
                "me".to_owned()
            )]))
        );
        assert_eq!(cm.data.as_ref().unwrap()["k"], "v");

        let mut only: k8s_openapi::api::core::v1::ConfigMap =
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "a", "annotations": {super::LAST_APPLIED: "{}"}}
            }))
            .unwrap();
        super::trim(&mut only);
        assert_eq!(only.metadata.annotations, None);
    }

    #[test]
    fn list_pages_are_capped_and_smaller_pages_kept() {
        assert_eq!(
            paged(watcher::Config::default()).page_size,
            Some(LIST_PAGE_SIZE),
            "kube's default of 500 is lowered"
        );
        assert_eq!(
            paged(watcher::Config::default().page_size(20)).page_size,
            Some(20),
            "a smaller page asked for stays"
        );
        assert_eq!(
            paged(watcher::Config::default().page_size(5000)).page_size,
            Some(LIST_PAGE_SIZE),
            "a larger page asked for is capped"
        );
    }
}
