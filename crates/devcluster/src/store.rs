//! Per-resource object storage with a bounded event history and a broadcast channel for
//! watchers. Objects are kept as JSON values together with their serialized bytes, so each
//! write is serialized once and every reader and watcher shares the same bytes.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::broadcast;

/// `(namespace, name)`; the namespace is empty for cluster-scoped objects.
pub type Key = (String, String);

/// A stored object and its serialized form.
#[derive(Debug)]
pub struct Obj {
    /// The object.
    pub value: Value,
    /// `serde_json::to_vec(&value)`.
    pub json: Bytes,
    /// The resourceVersion the object was written at.
    pub rv: u64,
}

impl Obj {
    /// Serializes a value into a shared object.
    pub fn new(value: Value, rv: u64) -> Arc<Self> {
        let json = Bytes::from(serde_json::to_vec(&value).unwrap_or_default());
        Arc::new(Self { value, json, rv })
    }

    /// `metadata.namespace` or empty.
    pub fn namespace(&self) -> &str {
        self.value["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
    }

    /// `metadata.name`.
    pub fn name(&self) -> &str {
        self.value["metadata"]["name"].as_str().unwrap_or_default()
    }

    /// `metadata.labels`.
    pub fn labels(&self) -> Option<&Value> {
        self.value["metadata"].get("labels")
    }

    /// `metadata.uid`.
    pub fn uid(&self) -> &str {
        self.value["metadata"]["uid"].as_str().unwrap_or_default()
    }
}

/// Watch event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// Object created.
    Added,
    /// Object changed.
    Modified,
    /// Object removed.
    Deleted,
}

impl EventType {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Modified => "MODIFIED",
            Self::Deleted => "DELETED",
        }
    }
}

/// One change to a store, shared between history and every watcher.
#[derive(Debug)]
pub struct Event {
    /// resourceVersion of the change.
    pub rv: u64,
    /// Event type.
    pub kind: EventType,
    /// Object after the change (for deletions: the final state).
    pub obj: Arc<Obj>,
    /// Object before the change, for updates (selectors use it to turn updates into
    /// ADDED/DELETED for watchers whose selector match changed).
    pub prev: Option<Arc<Obj>>,
    line: OnceLock<Bytes>,
}

/// Builds one newline-terminated watch event line.
pub fn event_line(kind: &str, object_json: &[u8]) -> Bytes {
    let mut v = Vec::with_capacity(object_json.len() + 32);
    v.extend_from_slice(b"{\"type\":\"");
    v.extend_from_slice(kind.as_bytes());
    v.extend_from_slice(b"\",\"object\":");
    v.extend_from_slice(object_json);
    v.extend_from_slice(b"}\n");
    Bytes::from(v)
}

impl Event {
    /// The full event line for this event's own type, built once and shared.
    pub fn line(&self) -> Bytes {
        self.line
            .get_or_init(|| event_line(self.kind.as_str(), &self.obj.json))
            .clone()
    }
}

/// A watch that starts from a point in the history.
pub struct Subscription {
    /// Events already in history after the requested resourceVersion.
    pub backlog: Vec<Arc<Event>>,
    /// Live events.
    pub rx: broadcast::Receiver<Arc<Event>>,
}

/// Why a store write failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteError {
    /// The object exists already.
    Exists,
    /// The object does not exist.
    Missing,
    /// The object's resourceVersion differs from the expected one.
    Stale,
}

/// The mutable part of a store.
#[derive(Debug)]
pub struct Inner {
    objects: BTreeMap<Key, Arc<Obj>>,
    history: VecDeque<Arc<Event>>,
    compacted: u64,
    cap: usize,
}

/// Storage for one group/resource.
#[derive(Debug)]
pub struct Store {
    inner: Mutex<Inner>,
    tx: broadcast::Sender<Arc<Event>>,
    rv: Arc<AtomicU64>,
}

impl Store {
    /// A new empty store sharing the cluster's resourceVersion counter.
    pub fn new(rv: Arc<AtomicU64>, history: usize) -> Self {
        let (tx, _) = broadcast::channel(history.clamp(1024, 1 << 16));
        let start = rv.load(Ordering::SeqCst);
        Self {
            inner: Mutex::new(Inner {
                objects: BTreeMap::new(),
                history: VecDeque::new(),
                compacted: start,
                cap: history.max(1),
            }),
            tx,
            rv,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The current global resourceVersion.
    pub fn current_rv(&self) -> u64 {
        self.rv.load(Ordering::SeqCst)
    }

    /// One object.
    pub fn get(&self, ns: &str, name: &str) -> Option<Arc<Obj>> {
        self.lock()
            .objects
            .get(&(ns.to_string(), name.to_string()))
            .cloned()
    }

    /// Number of stored objects.
    pub fn len(&self) -> usize {
        self.lock().objects.len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Lists objects in key order (optionally in one namespace), starting strictly after
    /// `after`, keeping those `keep` accepts, stopping after `limit`. Returns the page, the
    /// key of its last item if more selected items remain, the number of remaining selected
    /// items, and the list resourceVersion.
    pub fn list(
        &self,
        ns: Option<&str>,
        after: Option<&Key>,
        limit: Option<usize>,
        keep: &dyn Fn(&Obj) -> bool,
    ) -> (Vec<Arc<Obj>>, Option<Key>, usize, u64) {
        let inner = self.lock();
        let rv = self.current_rv();
        let lower = match (after, ns) {
            (Some(k), _) => Bound::Excluded(k.clone()),
            (None, Some(ns)) => Bound::Included((ns.to_string(), String::new())),
            (None, None) => Bound::Unbounded,
        };
        let mut items = Vec::new();
        let mut remaining = 0usize;
        let mut next = None;
        for (k, o) in inner.objects.range((lower, Bound::Unbounded)) {
            if let Some(ns) = ns
                && k.0 != ns
            {
                break;
            }
            if !keep(o) {
                continue;
            }
            if limit.is_some_and(|l| items.len() >= l) {
                remaining += 1;
                continue;
            }
            items.push(o.clone());
        }
        if remaining > 0 {
            next = items
                .last()
                .map(|o| (o.namespace().to_string(), o.name().to_string()));
        }
        (items, next, remaining, rv)
    }

    /// Every object (all namespaces).
    pub fn all(&self) -> Vec<Arc<Obj>> {
        self.lock().objects.values().cloned().collect()
    }

    fn push(&self, inner: &mut Inner, ev: Arc<Event>) {
        inner.history.push_back(ev.clone());
        while inner.history.len() > inner.cap {
            if let Some(old) = inner.history.pop_front() {
                inner.compacted = old.rv;
            }
        }
        let _ = self.tx.send(ev);
    }

    fn next_rv(&self) -> u64 {
        self.rv.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Creates an object; `value` gets its resourceVersion set here.
    pub fn create(&self, mut value: Value) -> Result<Arc<Obj>, WriteError> {
        let key = key_of(&value);
        let mut inner = self.lock();
        if inner.objects.contains_key(&key) {
            return Err(WriteError::Exists);
        }
        let rv = self.next_rv();
        value["metadata"]["resourceVersion"] = Value::String(rv.to_string());
        let obj = Obj::new(value, rv);
        inner.objects.insert(key, obj.clone());
        let ev = Arc::new(Event {
            rv,
            kind: EventType::Added,
            obj: obj.clone(),
            prev: None,
            line: OnceLock::new(),
        });
        self.push(&mut inner, ev);
        Ok(obj)
    }

    /// Replaces an object if its stored resourceVersion is still `expected`.
    pub fn update(&self, expected: u64, mut value: Value) -> Result<Arc<Obj>, WriteError> {
        let key = key_of(&value);
        let mut inner = self.lock();
        let Some(cur) = inner.objects.get(&key) else {
            return Err(WriteError::Missing);
        };
        if cur.rv != expected {
            return Err(WriteError::Stale);
        }
        let prev = cur.clone();
        let rv = self.next_rv();
        value["metadata"]["resourceVersion"] = Value::String(rv.to_string());
        let obj = Obj::new(value, rv);
        inner.objects.insert(key, obj.clone());
        let ev = Arc::new(Event {
            rv,
            kind: EventType::Modified,
            obj: obj.clone(),
            prev: Some(prev),
            line: OnceLock::new(),
        });
        self.push(&mut inner, ev);
        Ok(obj)
    }

    /// Removes an object if its stored resourceVersion is still `expected`; the DELETED event
    /// carries `last` (the final state) at a new resourceVersion.
    pub fn remove(&self, expected: u64, mut last: Value) -> Result<Arc<Obj>, WriteError> {
        let key = key_of(&last);
        let mut inner = self.lock();
        let Some(cur) = inner.objects.get(&key) else {
            return Err(WriteError::Missing);
        };
        if cur.rv != expected {
            return Err(WriteError::Stale);
        }
        let prev = cur.clone();
        inner.objects.remove(&key);
        let rv = self.next_rv();
        last["metadata"]["resourceVersion"] = Value::String(rv.to_string());
        let obj = Obj::new(last, rv);
        let ev = Arc::new(Event {
            rv,
            kind: EventType::Deleted,
            obj: obj.clone(),
            prev: Some(prev),
            line: OnceLock::new(),
        });
        self.push(&mut inner, ev);
        Ok(obj)
    }

    /// Subscribes from resourceVersion `from` (exclusive). Fails with the oldest retained
    /// resourceVersion when `from` is older than the history.
    pub fn subscribe_from(&self, from: u64) -> Result<Subscription, u64> {
        let inner = self.lock();
        if from < inner.compacted {
            return Err(inner.compacted);
        }
        let backlog = inner
            .history
            .iter()
            .filter(|e| e.rv > from)
            .cloned()
            .collect();
        Ok(Subscription {
            backlog,
            rx: self.tx.subscribe(),
        })
    }

    /// Snapshot of the objects (optionally one namespace) plus a live subscription starting
    /// right after the snapshot; returns the snapshot resourceVersion.
    pub fn snapshot_subscribe(
        &self,
        ns: Option<&str>,
    ) -> (Vec<Arc<Obj>>, u64, broadcast::Receiver<Arc<Event>>) {
        let inner = self.lock();
        let rv = self.current_rv();
        let items = inner
            .objects
            .iter()
            .filter(|(k, _)| ns.is_none_or(|n| k.0 == n))
            .map(|(_, o)| o.clone())
            .collect();
        (items, rv, self.tx.subscribe())
    }

    /// Forgets history up to the current resourceVersion, so older watches get 410.
    pub fn compact(&self) {
        let mut inner = self.lock();
        inner.history.clear();
        inner.compacted = self.current_rv();
    }
}

/// The `(namespace, name)` key of an object value.
pub fn key_of(v: &Value) -> Key {
    (
        v["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        v["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(name: &str) -> Value {
        json!({"metadata": {"name": name, "namespace": "ns"}})
    }

    #[test]
    fn writes_history_and_compaction() {
        let rv = Arc::new(AtomicU64::new(10));
        let s = Store::new(rv, 2);
        let a = s.create(obj("a")).unwrap();
        assert_eq!(a.rv, 11);
        assert_eq!(s.create(obj("a")).unwrap_err(), WriteError::Exists);
        assert_eq!(s.update(1, obj("a")).unwrap_err(), WriteError::Stale);
        let a2 = s.update(11, obj("a")).unwrap();
        s.create(obj("b")).unwrap();
        // history cap 2: the create at 11 is gone.
        assert_eq!(s.subscribe_from(10).err(), Some(11));
        let sub = s.subscribe_from(11).unwrap();
        assert_eq!(sub.backlog.len(), 2);
        assert_eq!(sub.backlog[0].rv, a2.rv);
        let (page, next, rest, _) = s.list(Some("ns"), None, Some(1), &|_| true);
        assert_eq!(page.len(), 1);
        assert_eq!(rest, 1);
        let (page2, next2, _, _) = s.list(Some("ns"), next.as_ref(), Some(1), &|_| true);
        assert_eq!(page2[0].name(), "b");
        assert!(next2.is_none());
        s.compact();
        assert!(s.subscribe_from(a2.rv).is_err());
    }
}
