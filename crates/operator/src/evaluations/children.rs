//! The cache of generated objects (`ConfigMaps`, `TestWorkflows`, `TestTriggers`), one per
//! kind, fed by a label-selected watch.
//!
//! It keeps a small projection of each object instead of the object: its resourceVersion, its
//! owner annotation, a fingerprint of the content the operator writes, and for workflows the
//! execution summary Testkube reports. Three things follow:
//!
//! - **Owner index**: the objects of one Experiment are found without walking the cache, so a
//!   reconcile costs the same with ten or ten thousand Experiments.
//! - **Skipped applies**: an object whose fingerprint equals the desired one is not written.
//!   When the server's answer to a write differs from what was sent but still contains it
//!   (defaults, fields of other writers), that pair of fingerprints is remembered as accepted.
//! - **Writes in flight**: after a write, until the watch delivers any event for the object,
//!   a reconcile that wants the same content again does not repeat it (the cache is only
//!   behind). This holds at most [`IN_FLIGHT_TTL`]; a drift (change or deletion) arrives as
//!   an event and ends it at once.

use std::{
    collections::{HashMap, HashSet, hash_map::Entry},
    hash::{DefaultHasher, Hash, Hasher},
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use agentic_api::evaluations::LastExecution;

use super::cached::CachedExperiment;
use futures::{StreamExt, stream::BoxStream};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{
    Api, Client,
    api::{ApiResource, DynamicObject},
    runtime::{WatchStreamExt, reflector::ObjectRef, watcher},
};
use serde_json::Value;

use super::{build, status::last_execution};
use crate::runtime::{slim::SlimDynamic, watches::paged};

/// How long a write waits for its watch event before a reconcile repeats it.
pub const IN_FLIGHT_TTL: Duration = Duration::from_secs(30);

/// `(namespace, name)` of a generated object.
pub type Key = (String, String);

/// What the reconcile needs of one generated object.
#[derive(Debug, Clone, PartialEq)]
pub struct Child {
    /// `metadata.resourceVersion`.
    pub resource_version: Option<String>,
    /// The owner annotation (`<namespace>/<name>` of the Experiment).
    pub owner: Option<String>,
    /// [`fingerprint`] of the object.
    pub fingerprint: u64,
    /// What Testkube reports in a `TestWorkflow`'s status (boxed: most objects have none,
    /// and the cache's tables hold every entry inline).
    pub last_execution: Option<Box<LastExecution>>,
}

/// What to do with a desired object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The cache already has it.
    Unchanged,
    /// The same content was written and its watch event has not arrived; look again within
    /// the given time.
    InFlight(Duration),
    /// Write it.
    Apply,
}

#[derive(Debug)]
struct Written {
    desired: u64,
    before: Option<String>,
    at: Instant,
}

#[derive(Debug, Default)]
struct State {
    objects: HashMap<Key, Child>,
    by_owner: HashMap<String, Vec<Key>>,
    written: HashMap<Key, Written>,
    accepted: HashMap<Key, (u64, u64)>,
    relist: Option<HashSet<Key>>,
    sweep_at: usize,
}

impl State {
    fn unindex(&mut self, key: &Key, owner: Option<&String>) {
        let Some(owner) = owner else { return };
        if let Some(keys) = self.by_owner.get_mut(owner) {
            keys.retain(|k| k != key);
            if keys.is_empty() {
                self.by_owner.remove(owner);
            }
        }
    }

    fn insert(&mut self, key: Key, child: Child) -> Option<Child> {
        let old = self.objects.insert(key.clone(), child.clone());
        let old_owner = old.as_ref().and_then(|o| o.owner.as_ref());
        if old_owner != child.owner.as_ref() {
            self.unindex(&key, old_owner);
            if let Some(owner) = child.owner {
                // Most owners have one object of each kind: a list grown by `push` would
                // reserve room for four.
                match self.by_owner.entry(owner) {
                    Entry::Occupied(mut keys) => keys.get_mut().push(key),
                    Entry::Vacant(slot) => {
                        slot.insert(vec![key]);
                    }
                }
            }
        }
        old
    }

    fn remove(&mut self, key: &Key) -> Option<Child> {
        let old = self.objects.remove(key)?;
        self.unindex(key, old.owner.as_ref());
        self.accepted.remove(key);
        Some(old)
    }
}

/// The projection cache of one kind of generated object. Cloning shares the cache.
#[derive(Debug, Clone, Default)]
pub struct ChildCache {
    state: Arc<Mutex<State>>,
    /// Whether the first list completed.
    pub synced: Arc<AtomicBool>,
    /// Whether the first list completed or failed: until then an empty cache means nothing.
    pub settled: Arc<AtomicBool>,
}

fn owner_ref(owner: &str) -> Option<ObjectRef<CachedExperiment>> {
    let (namespace, name) = build::parse_owner(owner)?;
    Some(ObjectRef::new(name).within(namespace))
}

fn hash_value(value: &Value, h: &mut DefaultHasher) {
    match value {
        Value::Null => 0u8.hash(h),
        Value::Bool(b) => {
            1u8.hash(h);
            b.hash(h);
        }
        Value::Number(n) => {
            2u8.hash(h);
            if let Some(i) = n.as_i64() {
                i.hash(h);
            } else if let Some(u) = n.as_u64() {
                u.hash(h);
            } else {
                n.as_f64().map(f64::to_bits).hash(h);
            }
        }
        Value::String(s) => {
            3u8.hash(h);
            s.hash(h);
        }
        Value::Array(items) => {
            4u8.hash(h);
            items.len().hash(h);
            for item in items {
                hash_value(item, h);
            }
        }
        Value::Object(map) => hash_members(map.iter(), h),
    }
}

/// Hashes object members as [`hash_value`] hashes an object. The members must come in key
/// order, as `serde_json`'s map (built without `preserve_order`) and `BTreeMap` give them:
/// key order in the text then does not count. Null members are skipped.
fn hash_members<'a, V: Hashable + 'a>(
    members: impl Iterator<Item = (&'a String, &'a V)> + Clone,
    h: &mut DefaultHasher,
) {
    5u8.hash(h);
    members
        .clone()
        .filter(|(_, v)| !v.is_null())
        .count()
        .hash(h);
    for (k, v) in members.filter(|(_, v)| !v.is_null()) {
        k.hash(h);
        v.hash_into(h);
    }
}

/// A value [`hash_members`] can hash: JSON, or a label or annotation value.
trait Hashable {
    fn is_null(&self) -> bool;
    fn hash_into(&self, h: &mut DefaultHasher);
}

impl Hashable for Value {
    fn is_null(&self) -> bool {
        Value::is_null(self)
    }
    fn hash_into(&self, h: &mut DefaultHasher) {
        hash_value(self, h);
    }
}

impl Hashable for String {
    fn is_null(&self) -> bool {
        false
    }
    fn hash_into(&self, h: &mut DefaultHasher) {
        3u8.hash(h);
        self.hash(h);
    }
}

/// A fingerprint of what the operator writes in an object: `metadata.name`, `namespace`,
/// `labels`, `annotations` and `ownerReferences`, and every top-level field but `apiVersion`,
/// `kind`, `metadata` and `status`. Key order and null values do not count. Computed in
/// place, without copying the object (it runs for every write answer and watch event).
pub fn fingerprint(meta: &ObjectMeta, body: &Value) -> u64 {
    let mut h = DefaultHasher::new();
    meta.name.hash(&mut h);
    meta.namespace.hash(&mut h);
    for map in [&meta.labels, &meta.annotations] {
        match map {
            Some(map) => hash_members(map.iter(), &mut h),
            None => 0u8.hash(&mut h),
        }
    }
    match &meta.owner_references {
        Some(owners) => {
            owners.len().hash(&mut h);
            for o in owners {
                (&o.api_version, &o.kind, &o.name, &o.uid).hash(&mut h);
                (o.controller, o.block_owner_deletion).hash(&mut h);
            }
        }
        None => 0u8.hash(&mut h),
    }
    let rest = body
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| !matches!(k.as_str(), "apiVersion" | "kind" | "metadata" | "status"));
    hash_members(rest, &mut h);
    h.finish()
}

/// The [`fingerprint`] of a dynamic object.
pub fn fingerprint_of(obj: &DynamicObject) -> u64 {
    fingerprint(&obj.metadata, &obj.data)
}

/// The Experiment (`namespace/name`) a generated object belongs to: this operator's owner
/// annotation, else the `experiment-namespace` and `experiment-name` labels that upstream's
/// later versions set on their objects (anchor `ConfigMap`s included), so those are cleaned up
/// like this operator's own (upstream could not create objects whose name label was too
/// long, so the label is the whole name there).
fn owner_of(meta: &ObjectMeta) -> Option<String> {
    if let Some(owner) = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(build::ANNOTATION_OWNER))
    {
        return Some(owner.clone());
    }
    let labels = meta.labels.as_ref()?;
    let name = labels.get(agentic_api::evaluations::LABEL_EXPERIMENT_NAME)?;
    let namespace = labels.get(agentic_api::evaluations::LABEL_EXPERIMENT_NAMESPACE)?;
    (!name.is_empty() && !namespace.is_empty()).then(|| format!("{namespace}/{name}"))
}

/// The cache's projection of `obj`.
pub fn project(obj: &DynamicObject) -> (Key, Child) {
    let key = (
        obj.metadata.namespace.clone().unwrap_or_default(),
        obj.metadata.name.clone().unwrap_or_default(),
    );
    let child = Child {
        resource_version: obj.metadata.resource_version.clone(),
        owner: owner_of(&obj.metadata),
        fingerprint: fingerprint_of(obj),
        last_execution: last_execution(obj.data.get("status")).map(Box::new),
    };
    (key, child)
}

impl ChildCache {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The cached projection of `namespace/name`.
    pub fn get(&self, namespace: &str, name: &str) -> Option<Child> {
        self.lock()
            .objects
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
    }

    /// Number of cached objects.
    pub fn len(&self) -> usize {
        self.lock().objects.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The objects whose owner annotation is `owner` (`<namespace>/<name>`), from the index.
    pub fn owned_by(&self, owner: &str) -> Vec<Key> {
        let state = self.lock();
        state
            .by_owner
            .get(owner)
            .into_iter()
            .flatten()
            .filter(|k| {
                state
                    .objects
                    .get(*k)
                    .is_some_and(|c| c.owner.as_deref() == Some(owner))
            })
            .cloned()
            .collect()
    }

    /// Whether `namespace/name` must be written to have the content fingerprinted `desired`.
    pub fn decide(&self, namespace: &str, name: &str, desired: u64) -> Decision {
        let key = (namespace.to_owned(), name.to_owned());
        let state = self.lock();
        let live = state.objects.get(&key);
        if let Some(live) = live
            && (live.fingerprint == desired
                || state.accepted.get(&key) == Some(&(live.fingerprint, desired)))
        {
            return Decision::Unchanged;
        }
        if let Some(w) = state.written.get(&key)
            && w.desired == desired
            && w.before.as_ref() == live.and_then(|l| l.resource_version.as_ref())
            && let Some(left) = IN_FLIGHT_TTL.checked_sub(w.at.elapsed())
            && !left.is_zero()
        {
            return Decision::InFlight(left);
        }
        Decision::Apply
    }

    /// Records a write of content fingerprinted `desired` to `namespace/name`, made when the
    /// cache held resourceVersion `before`; the server answered with `answer`, which
    /// `contains` what was sent (server defaults and other writers' fields aside).
    pub fn record_write(
        &self,
        namespace: &str,
        name: &str,
        desired: u64,
        before: Option<String>,
        answer: &DynamicObject,
        contains: bool,
    ) {
        let key = (namespace.to_owned(), name.to_owned());
        let answered = fingerprint_of(answer);
        let mut state = self.lock();
        if answered != desired && contains {
            state.accepted.insert(key.clone(), (answered, desired));
        }
        if answer.metadata.resource_version == before {
            // Nothing changed on the server, so no event is coming.
            state.written.remove(&key);
            return;
        }
        state.written.insert(
            key,
            Written {
                desired,
                before,
                at: Instant::now(),
            },
        );
        if state.written.len() >= state.sweep_at {
            state.written.retain(|_, w| w.at.elapsed() < IN_FLIGHT_TTL);
            state.sweep_at = (state.written.len() * 2).max(1024);
        }
    }

    /// Applies one watch event; returns the Experiments to reconcile.
    pub fn apply_event(
        &self,
        event: watcher::Event<DynamicObject>,
    ) -> Vec<ObjectRef<CachedExperiment>> {
        let mut state = self.lock();
        let mut owners = Vec::new();
        match event {
            watcher::Event::Apply(obj) | watcher::Event::InitApply(obj) => {
                let (key, child) = project(&obj);
                if let Some(seen) = state.relist.as_mut() {
                    seen.insert(key.clone());
                }
                let written = state.written.remove(&key);
                let new_owner = child.owner.clone();
                let fingerprint = child.fingerprint;
                let old = state.insert(key, child.clone());
                // Our own write arriving needs no reconcile; anything else does.
                let expected = written.is_some_and(|w| w.desired == fingerprint)
                    && old.as_ref().is_none_or(|o| {
                        o.owner == child.owner && o.last_execution == child.last_execution
                    });
                let changed = old.as_ref() != Some(&child);
                if changed && !expected {
                    owners.extend(new_owner.as_deref().and_then(owner_ref));
                    if let Some(old_owner) = old.and_then(|o| o.owner)
                        && Some(&old_owner) != new_owner.as_ref()
                    {
                        owners.extend(owner_ref(&old_owner));
                    }
                }
            }
            watcher::Event::Delete(obj) => {
                let (key, _) = project(&obj);
                state.written.remove(&key);
                if let Some(old) = state.remove(&key) {
                    owners.extend(old.owner.as_deref().and_then(owner_ref));
                }
            }
            watcher::Event::Init => state.relist = Some(HashSet::new()),
            watcher::Event::InitDone => {
                if let Some(seen) = state.relist.take() {
                    // Deleted while the watch was down: no event told us.
                    let gone: Vec<Key> = state
                        .objects
                        .keys()
                        .filter(|k| !seen.contains(*k))
                        .cloned()
                        .collect();
                    for key in gone {
                        state.written.remove(&key);
                        if let Some(old) = state.remove(&key) {
                            owners.extend(old.owner.as_deref().and_then(owner_ref));
                        }
                    }
                }
                self.synced.store(true, Ordering::Relaxed);
                self.settled.store(true, Ordering::Relaxed);
            }
        }
        owners
    }

    /// Watches `ar` with `config` across all namespaces into this cache (lazily: nothing
    /// happens until the stream is polled); the stream names the Experiments whose objects
    /// changed. Watch errors are retried with backoff and logged at debug level.
    pub fn watch(
        &self,
        client: Client,
        ar: &ApiResource,
        config: watcher::Config,
    ) -> BoxStream<'static, ObjectRef<CachedExperiment>> {
        let cache = self.clone();
        let kind = ar.kind.clone();
        watcher(Api::<SlimDynamic>::all_with(client, ar), paged(config))
            .default_backoff()
            .flat_map(move |event| {
                let owners = match event {
                    Ok(event) => cache.apply_event(unwrap_event(event)),
                    Err(error) => {
                        cache.settled.store(true, Ordering::Relaxed);
                        tracing::debug!(%kind, %error, "watch error; retrying with backoff");
                        Vec::new()
                    }
                };
                futures::stream::iter(owners)
            })
            .boxed()
    }
}

/// A watch event of [`SlimDynamic`]s as one of the objects they hold.
fn unwrap_event(event: watcher::Event<SlimDynamic>) -> watcher::Event<DynamicObject> {
    use watcher::Event;
    match event {
        Event::Apply(SlimDynamic(obj)) => Event::Apply(obj),
        Event::Delete(SlimDynamic(obj)) => Event::Delete(obj),
        Event::Init => Event::Init,
        Event::InitApply(SlimDynamic(obj)) => Event::InitApply(obj),
        Event::InitDone => Event::InitDone,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    use serde_json::{Map, json};

    fn object(ns: &str, name: &str, owner: &str, rv: &str, value: &str) -> DynamicObject {
        let ar = ApiResource::erase::<k8s_openapi::api::core::v1::ConfigMap>(&());
        let mut obj = DynamicObject::new(name, &ar)
            .within(ns)
            .data(json!({"data": {"k": value}}));
        obj.metadata.resource_version = Some(rv.to_owned());
        obj.metadata.annotations = Some(
            [(build::ANNOTATION_OWNER.to_owned(), owner.to_owned())]
                .into_iter()
                .collect(),
        );
        obj
    }

    /// The cache's tables hold each entry inline, one table slot per object and more free
    /// slots than entries: a [`LastExecution`] inline would more than double every slot.
    #[test]
    fn an_entry_stays_small() {
        assert!(
            std::mem::size_of::<Child>() <= 64,
            "{} bytes",
            std::mem::size_of::<Child>()
        );
    }

    #[test]
    fn the_owner_index_finds_only_the_objects_of_one_experiment_among_many() {
        let cache = ChildCache::default();
        cache.apply_event(watcher::Event::Init);
        for i in 0..2000 {
            cache.apply_event(watcher::Event::InitApply(object(
                "team",
                &format!("e{i}-experiment"),
                &format!("team/e{i}"),
                "1",
                "v",
            )));
        }
        // An object that moved to another owner leaves the first one's list.
        cache.apply_event(watcher::Event::InitApply(object(
            "team",
            "e7-old-experiment",
            "team/e7",
            "1",
            "v",
        )));
        cache.apply_event(watcher::Event::InitDone);
        assert_eq!(
            cache.owned_by("team/e7"),
            [
                ("team".to_owned(), "e7-experiment".to_owned()),
                ("team".to_owned(), "e7-old-experiment".to_owned())
            ]
        );
        let moved = cache.apply_event(watcher::Event::Apply(object(
            "team",
            "e7-old-experiment",
            "team/e8",
            "2",
            "v",
        )));
        assert_eq!(
            moved,
            [
                ObjectRef::new("e8").within("team"),
                ObjectRef::new("e7").within("team")
            ]
        );
        assert_eq!(
            cache.owned_by("team/e7"),
            [("team".to_owned(), "e7-experiment".to_owned())]
        );
        assert_eq!(cache.owned_by("team/e8").len(), 2);
        assert!(cache.owned_by("other/e7").is_empty());
        cache.apply_event(watcher::Event::Delete(object(
            "team",
            "e7-experiment",
            "team/e7",
            "3",
            "v",
        )));
        assert!(cache.owned_by("team/e7").is_empty());
        assert_eq!(cache.len(), 2000);
    }

    #[test]
    fn a_relist_that_misses_an_object_reports_its_owner() {
        let cache = ChildCache::default();
        cache.apply_event(watcher::Event::Init);
        cache.apply_event(watcher::Event::InitApply(object("t", "a", "t/a", "1", "v")));
        cache.apply_event(watcher::Event::InitApply(object("t", "b", "t/b", "1", "v")));
        assert!(!cache.synced.load(Ordering::Relaxed));
        cache.apply_event(watcher::Event::InitDone);
        assert!(cache.synced.load(Ordering::Relaxed));
        // The same objects again trigger nothing; a missing one triggers its owner.
        cache.apply_event(watcher::Event::Init);
        let again = cache.apply_event(watcher::Event::InitApply(object("t", "a", "t/a", "1", "v")));
        assert!(again.is_empty());
        let done = cache.apply_event(watcher::Event::InitDone);
        assert_eq!(done, [ObjectRef::new("b").within("t")]);
        assert!(cache.get("t", "b").is_none());
    }

    #[test]
    fn an_unchanged_object_is_not_rewritten_and_a_drifted_one_is() {
        let cache = ChildCache::default();
        let desired = object("t", "a", "t/a", "", "v");
        let want = fingerprint_of(&desired);
        // Not cached yet: write it.
        assert_eq!(cache.decide("t", "a", want), Decision::Apply);
        cache.record_write(
            "t",
            "a",
            want,
            None,
            &object("t", "a", "t/a", "5", "v"),
            true,
        );
        // Until the watch delivers it, the write is in flight, not repeated...
        assert!(matches!(
            cache.decide("t", "a", want),
            Decision::InFlight(_)
        ));
        // ...unless the content wanted changed.
        let other = fingerprint_of(&object("t", "a", "t/a", "", "w"));
        assert_eq!(cache.decide("t", "a", other), Decision::Apply);
        // Our own write arriving triggers nothing and is then unchanged.
        let triggered = cache.apply_event(watcher::Event::Apply(object("t", "a", "t/a", "5", "v")));
        assert!(triggered.is_empty());
        assert_eq!(cache.decide("t", "a", want), Decision::Unchanged);
        // A drift arrives as an event, triggers the owner and is written again.
        let triggered = cache.apply_event(watcher::Event::Apply(object("t", "a", "t/a", "6", "x")));
        assert_eq!(triggered, [ObjectRef::new("a").within("t")]);
        assert_eq!(cache.decide("t", "a", want), Decision::Apply);
        // So is a deletion, even right after a write.
        cache.record_write(
            "t",
            "a",
            want,
            Some("6".into()),
            &object("t", "a", "t/a", "7", "v"),
            true,
        );
        let triggered =
            cache.apply_event(watcher::Event::Delete(object("t", "a", "t/a", "8", "v")));
        assert_eq!(triggered, [ObjectRef::new("a").within("t")]);
        assert_eq!(cache.decide("t", "a", want), Decision::Apply);
    }

    #[test]
    fn a_server_default_is_accepted_once_the_answer_contains_the_write() {
        let cache = ChildCache::default();
        let desired = object("t", "a", "t/a", "", "v");
        let want = fingerprint_of(&desired);
        let mut answer = object("t", "a", "t/a", "2", "v");
        answer.data["data"]["defaulted"] = json!("yes");
        cache.record_write("t", "a", want, None, &answer, true);
        cache.apply_event(watcher::Event::Apply(answer.clone()));
        assert_eq!(cache.decide("t", "a", want), Decision::Unchanged);
        // An answer that lost what was sent is not accepted.
        let fresh = ChildCache::default();
        fresh.record_write("t", "a", want, None, &answer, false);
        fresh.apply_event(watcher::Event::Apply(answer));
        assert_eq!(fresh.decide("t", "a", want), Decision::Apply);
    }

    #[test]
    fn fingerprints_ignore_key_order_nulls_status_and_server_metadata() {
        let a = object("t", "a", "t/a", "1", "v");
        let mut b = a.clone();
        b.metadata.resource_version = Some("9".into());
        b.metadata.uid = Some("u".into());
        b.data["status"] = json!({"latestExecution": {"id": "x"}});
        b.data["data"]["nothing"] = Value::Null;
        assert_eq!(fingerprint_of(&a), fingerprint_of(&b));
        b.data["data"]["k"] = json!("w");
        assert_ne!(fingerprint_of(&a), fingerprint_of(&b));
        let mut c = a.clone();
        c.metadata.labels = Some([("x".to_owned(), "y".to_owned())].into_iter().collect());
        assert_ne!(fingerprint_of(&a), fingerprint_of(&c));
    }

    #[test]
    fn fingerprints_follow_content_not_text_layout() {
        let base = object("t", "a", "t/a", "1", "v");
        // Members written in another order (a map that kept insertion order would fail this).
        let mut forward = Map::new();
        forward.insert("a".into(), json!(1));
        forward.insert("z".into(), json!({"y": 1, "b": [1, 2]}));
        let mut backward = Map::new();
        backward.insert("z".into(), json!({"b": [1, 2], "y": 1}));
        backward.insert("a".into(), json!(1));
        let mut forward_obj = base.clone();
        forward_obj.data["spec"] = Value::Object(forward);
        let mut backward_obj = base.clone();
        backward_obj.data["spec"] = Value::Object(backward);
        assert_eq!(fingerprint_of(&forward_obj), fingerprint_of(&backward_obj));
        assert_ne!(fingerprint_of(&base), fingerprint_of(&forward_obj));
        // Nesting does not blur: the same members at other depths differ.
        let mut shallow = base.clone();
        shallow.data["spec"] = json!({"a": {"b": 1}, "c": 2});
        let mut deep = base.clone();
        deep.data["spec"] = json!({"a": {"b": 1, "c": 2}});
        assert_ne!(fingerprint_of(&shallow), fingerprint_of(&deep));
        // Owner references count.
        let mut owned = base.clone();
        owned.metadata.owner_references = Some(vec![OwnerReference {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            name: "o".into(),
            uid: "u".into(),
            ..OwnerReference::default()
        }]);
        assert_ne!(fingerprint_of(&base), fingerprint_of(&owned));
    }
}
