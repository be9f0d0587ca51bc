//! Compact store and applier tests: lookups, the group index, watch events and relists.

use super::*;
use k8s_openapi::api::core::v1::ConfigMap;

/// A test entry: a `ConfigMap`'s name and its `group` label.
#[derive(Debug, PartialEq)]
struct Entry {
    name: String,
    group: Option<String>,
}

impl Compact for Entry {
    type Wire = ConfigMap;

    fn compact(cm: ConfigMap) -> Option<(String, Self)> {
        let group = cm.metadata.labels.and_then(|mut l| l.remove("group"));
        Some((
            cm.metadata.namespace?,
            Self {
                name: cm.metadata.name?,
                group,
            },
        ))
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn group(&self) -> Option<&str> {
        self.group.as_deref()
    }
}

fn entry(name: &str, group: Option<&str>) -> Entry {
    Entry {
        name: name.into(),
        group: group.map(Into::into),
    }
}

fn cm(ns: Option<&str>, name: &str, group: Option<&str>) -> ConfigMap {
    serde_json::from_value(
        serde_json::json!({"metadata": {"name": name, "namespace": ns,
        "labels": group.map(|g| serde_json::json!({"group": g}))}}),
    )
    .unwrap()
}

fn names(entries: &[Arc<Entry>]) -> Vec<&str> {
    let mut names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    names.sort_unstable();
    names
}

fn reported(changes: &[Change<Entry>]) -> Vec<String> {
    changes
        .iter()
        .map(|c| {
            format!(
                "{}{}/{}",
                if c.deleted { "-" } else { "+" },
                c.namespace,
                c.object.name
            )
        })
        .collect()
}

#[test]
fn entries_are_found_by_namespace_and_name_and_replaced_by_name() {
    let store = CompactStore::new();
    assert!(store.is_empty());
    let (ns, _) = store.insert("a", entry("x", None));
    assert_eq!(&*ns, "a");
    store.insert("b", entry("x", Some("g")));
    store.insert("a", entry("x", Some("g")));
    assert_eq!(store.len(), 2, "the same name in one namespace is replaced");
    assert_eq!(store.get("a", "x").unwrap().group.as_deref(), Some("g"));
    assert_eq!(store.get("b", "x").unwrap().name, "x");
    assert!(store.get("a", "y").is_none());
    assert!(store.get("c", "x").is_none());
    let (_, removed) = store.remove("a", "x").unwrap();
    assert_eq!(removed.name, "x");
    assert!(
        store.remove("a", "x").is_none(),
        "a second removal finds nothing"
    );
    assert!(store.remove("nowhere", "x").is_none());
    assert_eq!(store.len(), 1);
    assert_eq!(store.keys(), vec![(Arc::from("b"), Box::from("x"))]);
}

#[test]
fn the_group_index_follows_inserts_regroupings_and_removals() {
    let store = CompactStore::new();
    store.insert("ns", entry("p1", Some("s1")));
    store.insert("ns", entry("p2", Some("s1")));
    store.insert("ns", entry("p3", Some("s2")));
    store.insert("other", entry("p4", Some("s1")));
    store.insert("ns", entry("p5", None));
    assert_eq!(names(&store.group("ns", "s1")), ["p1", "p2"]);
    assert_eq!(names(&store.group("other", "s1")), ["p4"]);
    // Replacing an entry replaces it in its group; a new group moves it.
    store.insert("ns", entry("p1", Some("s1")));
    assert_eq!(names(&store.group("ns", "s1")), ["p1", "p2"]);
    store.insert("ns", entry("p2", Some("s2")));
    assert_eq!(names(&store.group("ns", "s1")), ["p1"]);
    assert_eq!(names(&store.group("ns", "s2")), ["p2", "p3"]);
    // Losing the group takes it out of every group.
    store.insert("ns", entry("p3", None));
    assert_eq!(names(&store.group("ns", "s2")), ["p2"]);
    store.remove("ns", "p1");
    assert!(store.group("ns", "s1").is_empty());
    assert!(store.group("ns", "nobody").is_empty());
    assert_eq!(store.len(), 4);
}

#[test]
fn watch_events_update_the_store_before_they_are_reported() {
    let store = CompactStore::<Entry>::new();
    let mut applier = Applier::new(store.clone());
    assert!(!store.is_ready());
    assert!(applier.apply(watcher::Event::Init).is_empty());
    let changes = applier.apply(watcher::Event::InitApply(cm(Some("ns"), "a", Some("g"))));
    assert_eq!(reported(&changes), ["+ns/a"]);
    assert!(!store.is_ready(), "not ready until the list is complete");
    assert!(applier.apply(watcher::Event::InitDone).is_empty());
    assert!(store.is_ready());
    let changes = applier.apply(watcher::Event::Apply(cm(Some("ns"), "b", None)));
    assert_eq!(reported(&changes), ["+ns/b"]);
    assert_eq!(store.len(), 2);
    let changes = applier.apply(watcher::Event::Delete(cm(Some("ns"), "a", Some("g"))));
    assert_eq!(reported(&changes), ["-ns/a"]);
    assert!(store.get("ns", "a").is_none());
    assert!(store.group("ns", "g").is_empty());
    // A deletion of an object never cached is still reported (its last state).
    let changes = applier.apply(watcher::Event::Delete(cm(Some("ns"), "zz", None)));
    assert_eq!(reported(&changes), ["-ns/zz"]);
    assert_eq!(store.len(), 1);
}

#[test]
fn objects_without_a_namespace_or_name_are_ignored() {
    let store = CompactStore::<Entry>::new();
    let mut applier = Applier::new(store.clone());
    assert!(
        applier
            .apply(watcher::Event::Apply(cm(None, "a", None)))
            .is_empty()
    );
    assert!(
        applier
            .apply(watcher::Event::Apply(ConfigMap::default()))
            .is_empty()
    );
    assert!(
        applier
            .apply(watcher::Event::Delete(cm(None, "a", None)))
            .is_empty()
    );
    assert!(store.is_empty());
}

#[test]
fn a_relist_replaces_in_place_and_reports_what_was_deleted_meanwhile() {
    let store = CompactStore::<Entry>::new();
    let mut applier = Applier::new(store.clone());
    applier.apply(watcher::Event::Init);
    for name in ["a", "b", "c"] {
        applier.apply(watcher::Event::InitApply(cm(Some("ns"), name, Some("g"))));
    }
    applier.apply(watcher::Event::InitDone);
    assert_eq!(names(&store.group("ns", "g")), ["a", "b", "c"]);
    // The watch lost its place; "b" was deleted and "a" regrouped during the gap.
    assert!(applier.apply(watcher::Event::Init).is_empty());
    let changes = applier.apply(watcher::Event::InitApply(cm(Some("ns"), "a", Some("h"))));
    assert_eq!(reported(&changes), ["+ns/a"]);
    assert_eq!(
        store.len(),
        3,
        "entries stay in place while the relist is read"
    );
    applier.apply(watcher::Event::InitApply(cm(Some("ns"), "c", Some("g"))));
    let changes = applier.apply(watcher::Event::InitDone);
    assert_eq!(reported(&changes), ["-ns/b"]);
    assert_eq!(names(&store.group("ns", "g")), ["c"]);
    assert_eq!(names(&store.group("ns", "h")), ["a"]);
    assert!(store.is_ready());
    // An empty relist empties the store and reports each object.
    applier.apply(watcher::Event::Init);
    let mut changes = reported(&applier.apply(watcher::Event::InitDone));
    changes.sort();
    assert_eq!(changes, ["-ns/a", "-ns/c"]);
    assert!(store.is_empty());
}

/// [`cm`] at resourceVersion `rv`.
fn cm_at(name: &str, group: Option<&str>, rv: &str) -> ConfigMap {
    let mut c = cm(Some("ns"), name, group);
    c.metadata.resource_version = Some(rv.into());
    c
}

#[test]
fn an_object_seen_again_at_its_cached_version_is_not_reported() {
    let store = CompactStore::<Entry>::new();
    let mut applier = Applier::new(store.clone());
    applier.apply(watcher::Event::Init);
    applier.apply(watcher::Event::InitApply(cm_at("a", Some("g"), "10")));
    applier.apply(watcher::Event::InitApply(cm_at("b", Some("g"), "11")));
    applier.apply(watcher::Event::InitApply(cm_at("c", Some("g"), "v-12")));
    applier.apply(watcher::Event::InitDone);
    let before = store.get("ns", "a").unwrap();

    // A relist after the watch lost its place: "a" and "c" are unchanged, "b" was regrouped.
    applier.apply(watcher::Event::Init);
    assert!(
        applier
            .apply(watcher::Event::InitApply(cm_at("a", Some("g"), "10")))
            .is_empty(),
        "unchanged: not reported"
    );
    assert!(
        applier
            .apply(watcher::Event::InitApply(cm_at("c", Some("g"), "v-12")))
            .is_empty(),
        "unchanged (a version that is not a number): not reported"
    );
    let changes = applier.apply(watcher::Event::InitApply(cm_at("b", Some("h"), "20")));
    assert_eq!(reported(&changes), ["+ns/b"]);
    assert!(
        applier.apply(watcher::Event::InitDone).is_empty(),
        "unchanged objects count as listed: none is reported deleted"
    );
    assert_eq!(store.len(), 3);
    assert!(
        Arc::ptr_eq(&before, &store.get("ns", "a").unwrap()),
        "kept as it was"
    );
    assert_eq!(names(&store.group("ns", "g")), ["a", "c"]);
    assert_eq!(names(&store.group("ns", "h")), ["b"]);

    // A watch event at a new version is reported; one at the cached version is not.
    let changes = applier.apply(watcher::Event::Apply(cm_at("a", Some("g"), "21")));
    assert_eq!(reported(&changes), ["+ns/a"]);
    assert!(
        applier
            .apply(watcher::Event::Apply(cm_at("a", Some("g"), "21")))
            .is_empty()
    );
    // Without a resourceVersion an object is always taken as changed.
    for _ in 0..2 {
        let changes = applier.apply(watcher::Event::Apply(cm(Some("ns"), "a", Some("g"))));
        assert_eq!(reported(&changes), ["+ns/a"]);
    }
    // A deletion is reported whatever the version, and the name can come back at it.
    let changes = applier.apply(watcher::Event::Delete(cm_at("b", Some("h"), "20")));
    assert_eq!(reported(&changes), ["-ns/b"]);
    let changes = applier.apply(watcher::Event::Apply(cm_at("b", Some("h"), "20")));
    assert_eq!(reported(&changes), ["+ns/b"]);
}

#[test]
fn resource_versions_compare_as_numbers_or_by_their_text() {
    assert_eq!(version_of(None), 0);
    assert_eq!(version_of(Some("")), 0);
    assert_eq!(version_of(Some("42")), 42);
    assert_ne!(version_of(Some("0")), 0, "a version, even if it is 0");
    assert_ne!(version_of(Some("abc")), 0);
    assert_eq!(version_of(Some("abc")), version_of(Some("abc")));
    assert_ne!(version_of(Some("abc")), version_of(Some("abd")));
}
