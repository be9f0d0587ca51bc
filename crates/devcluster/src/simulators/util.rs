//! Small pieces shared by the simulators: annotation lookup, timestamps, write suppression
//! and the owner index over watch events.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::Duration;

use jiff::Timestamp;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher::Event;
use kube::{Resource, ResourceExt};
use serde_json::Value;

/// Prefix of every scripting annotation.
pub const PREFIX: &str = "devcluster.io/";

/// Looks up `devcluster.io/<key>.<container>` first, then `devcluster.io/<key>`.
pub fn lookup<'a>(
    annotations: &'a std::collections::BTreeMap<String, String>,
    key: &str,
    container: Option<&str>,
) -> Option<&'a str> {
    if let Some(v) = container.and_then(|c| annotations.get(&format!("{PREFIX}{key}.{c}"))) {
        return Some(v.trim());
    }
    annotations.get(&format!("{PREFIX}{key}")).map(|v| v.trim())
}

/// Whether an annotation value means "yes".
pub fn truthy(v: Option<&str>) -> bool {
    v.is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "yes" | "1"))
}

/// A scripted duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Length {
    /// Never ends.
    Forever,
    /// Ends after this long.
    For(Duration),
}

impl Length {
    /// The duration, with `Forever` as `None`.
    pub fn finite(self) -> Option<Duration> {
        match self {
            Length::Forever => None,
            Length::For(d) => Some(d),
        }
    }

    /// The duration, with `Forever` as a very long time.
    pub fn or_long(self) -> Duration {
        self.finite().unwrap_or(Duration::MAX / 4)
    }
}

/// A duration annotation: decimal seconds, or `forever` (also a negative number); an
/// unparsable value is logged and ignored (`None`).
pub fn seconds(v: Option<&str>, what: &str) -> Option<Length> {
    let v = v?;
    if v.eq_ignore_ascii_case("forever") || v.eq_ignore_ascii_case("never") {
        return Some(Length::Forever);
    }
    match v.parse::<f64>() {
        Ok(s) if s.is_finite() && s < 0.0 => Some(Length::Forever),
        Ok(s) if s.is_finite() => Some(Length::For(Duration::from_secs_f64(s.min(1.0e9)))),
        _ => {
            tracing::warn!(
                annotation = what,
                value = v,
                "ignoring annotation: expected seconds or `forever`"
            );
            None
        }
    }
}

/// RFC 3339 with second precision, as Kubernetes writes `metav1.Time`.
pub fn fmt_ts(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// `t + d`, saturating at `t` on overflow.
pub fn after(t: Timestamp, d: Duration) -> Timestamp {
    t.checked_add(d).unwrap_or(t)
}

/// Time elapsed since `t` (zero if `t` is in the future).
pub fn since(t: Timestamp) -> Duration {
    let d = Timestamp::now().duration_since(t);
    Duration::try_from(d).unwrap_or(Duration::ZERO)
}

/// Parses a `metav1.Time` string.
pub fn parse_ts(s: &str) -> Option<Timestamp> {
    s.parse().ok()
}

/// A stable 64-bit hash of some parts (for container ids, IPs and names).
pub fn hash_of(parts: &[&str]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for p in parts {
        p.hash(&mut h);
    }
    h.finish()
}

/// Whether every key of `desired` has the same value in `cached`, where a `null` in
/// `desired` means "absent" (as in a JSON merge patch).
pub fn subset_matches(desired: &Value, cached: &Value) -> bool {
    let Some(d) = desired.as_object() else {
        return desired == cached;
    };
    d.iter().all(|(k, v)| {
        let c = cached.get(k).unwrap_or(&Value::Null);
        if v.is_null() { c.is_null() } else { v == c }
    })
}

/// Per-object memory keyed by uid, shared by reconciles.
#[derive(Debug)]
pub struct Memo<T>(Mutex<HashMap<String, T>>);

impl<T> Default for Memo<T> {
    fn default() -> Self {
        Self(Mutex::new(HashMap::new()))
    }
}

impl<T: Clone> Memo<T> {
    /// A copy of the entry.
    pub fn get(&self, uid: &str) -> Option<T> {
        self.lock().get(uid).cloned()
    }
}

impl<T> Memo<T> {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, T>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Stores an entry.
    pub fn set(&self, uid: &str, v: T) {
        self.lock().insert(uid.to_string(), v);
    }

    /// Forgets an entry.
    pub fn forget(&self, uid: &str) {
        self.lock().remove(uid);
    }

    /// Runs `f` on the entry, creating it with `init` first when missing.
    pub fn with<R>(&self, uid: &str, init: impl FnOnce() -> T, f: impl FnOnce(&mut T) -> R) -> R {
        let mut m = self.lock();
        let e = m.entry(uid.to_string()).or_insert_with(init);
        f(e)
    }
}

/// Children grouped by the uid of their controller owner, kept up to date from watch
/// events so a reconcile finds its children without scanning every object.
#[derive(Debug)]
pub struct OwnerIndex<K: Resource<DynamicType = ()>> {
    inner: Mutex<IndexState<K>>,
}

#[derive(Debug)]
struct IndexState<K: Resource<DynamicType = ()>> {
    live: HashMap<String, HashSet<ObjectRef<K>>>,
    buffer: Option<HashMap<String, HashSet<ObjectRef<K>>>>,
}

impl<K: Resource<DynamicType = ()>> Default for OwnerIndex<K> {
    fn default() -> Self {
        Self {
            inner: Mutex::new(IndexState {
                live: HashMap::new(),
                buffer: None,
            }),
        }
    }
}

fn controller_uid<K: Resource>(o: &K) -> Option<String> {
    o.meta()
        .owner_references
        .as_ref()?
        .iter()
        .find(|r| r.controller == Some(true))
        .map(|r| r.uid.clone())
}

impl<K: Resource<DynamicType = ()> + Clone> OwnerIndex<K> {
    fn lock(&self) -> std::sync::MutexGuard<'_, IndexState<K>> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Applies one watch event.
    pub fn apply(&self, ev: &Event<K>) {
        let mut st = self.lock();
        match ev {
            Event::Init => st.buffer = Some(HashMap::new()),
            Event::InitApply(o) => {
                if let Some(owner) = controller_uid(o) {
                    let r = ObjectRef::from_obj(o);
                    match st.buffer.as_mut() {
                        Some(b) => b.entry(owner).or_default().insert(r),
                        None => st.live.entry(owner).or_default().insert(r),
                    };
                }
            }
            Event::InitDone => {
                if let Some(b) = st.buffer.take() {
                    st.live = b;
                }
            }
            Event::Apply(o) => {
                if let Some(owner) = controller_uid(o) {
                    st.live
                        .entry(owner)
                        .or_default()
                        .insert(ObjectRef::from_obj(o));
                }
            }
            Event::Delete(o) => {
                if let Some(owner) = controller_uid(o) {
                    let r = ObjectRef::from_obj(o);
                    if let Some(set) = st.live.get_mut(&owner) {
                        set.remove(&r);
                        if set.is_empty() {
                            st.live.remove(&owner);
                        }
                    }
                }
            }
        }
    }

    /// References to the children of `owner_uid`.
    pub fn children(&self, owner_uid: &str) -> Vec<ObjectRef<K>> {
        self.lock()
            .live
            .get(owner_uid)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// A write's result with the answers a retry would not change counted as done: the object is
/// gone (404), changed under it (409), or the request no longer applies (422, e.g. a failed
/// `test` of a JSON patch). An overloaded or failing API server (429, 5xx) or a lost
/// connection stays an error, so the write is retried.
pub fn settled<T>(result: Result<T, kube::Error>) -> Result<(), kube::Error> {
    match result {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if matches!(s.code, 404 | 409 | 422) => Ok(()),
        Err(e) => Err(e),
    }
}

/// The uid of an object (empty when unset).
pub fn uid_of<K: Resource>(o: &K) -> String {
    o.uid().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_final_answers_settle_a_write() {
        let api = |code: u16| {
            kube::Error::Api(kube::core::Status::failure("x", "").with_code(code).boxed())
        };
        for code in [404, 409, 422] {
            assert!(settled::<()>(Err(api(code))).is_ok(), "{code}");
        }
        for code in [429, 500, 503, 504, 403] {
            assert!(settled::<()>(Err(api(code))).is_err(), "{code}");
        }
        let lost =
            kube::Error::ReadEvents(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert!(settled::<()>(Err(lost)).is_err());
        assert!(settled(Ok::<u8, kube::Error>(1)).is_ok());
    }

    #[test]
    fn per_container_annotation_wins() {
        let mut a = std::collections::BTreeMap::new();
        a.insert("devcluster.io/exit-code".to_string(), "3".to_string());
        a.insert(
            "devcluster.io/exit-code.side".to_string(),
            " 0 ".to_string(),
        );
        assert_eq!(lookup(&a, "exit-code", Some("side")), Some("0"));
        assert_eq!(lookup(&a, "exit-code", Some("main")), Some("3"));
        assert_eq!(lookup(&a, "run-seconds", None), None);
    }

    #[test]
    fn seconds_parsing() {
        assert_eq!(
            seconds(Some("1.5"), "x"),
            Some(Length::For(Duration::from_millis(1500)))
        );
        assert_eq!(seconds(Some("forever"), "x"), Some(Length::Forever));
        assert_eq!(seconds(Some("-1"), "x"), Some(Length::Forever));
        assert_eq!(seconds(Some("soon"), "x"), None);
        assert_eq!(seconds(None, "x"), None);
    }

    #[test]
    fn subset_treats_null_as_absent() {
        let cached = json!({"a": 1, "b": [1, 2], "c": "x"});
        assert!(subset_matches(&json!({"a": 1, "d": null}), &cached));
        assert!(!subset_matches(&json!({"a": 2}), &cached));
        assert!(!subset_matches(&json!({"c": null}), &cached));
    }

    #[test]
    fn timestamps_have_second_precision() {
        let t: Timestamp = "2026-01-02T03:04:05.678Z".parse().unwrap();
        assert_eq!(fmt_ts(t), "2026-01-02T03:04:05Z");
        assert_eq!(
            fmt_ts(after(t, Duration::from_millis(400))),
            "2026-01-02T03:04:06Z"
        );
    }
}
