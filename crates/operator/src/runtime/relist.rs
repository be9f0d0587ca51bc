//! Relists applied to the cache in place, so a relist never holds two copies of it.
//!
//! kube-runtime's reflector collects a relist (`Init`, `InitApply`…, `InitDone`) in a second
//! map and swaps it in at the end: while the list is read, the old cache and the new one are
//! both alive, which doubles the operator's memory at the worst moment (after a watch gap,
//! when every informer relists together). [`InPlaceRelist`] sits between the watcher and the
//! reflector. The first list of a watch passes through unchanged (the cache is empty and its
//! `InitDone` marks the cache ready). Every later list is rewritten: each listed object becomes
//! an `Apply` (it replaces its cached version at once, and wakes subscribers like the
//! reflector's end-of-list broadcast would), and at the end of the list every cached object
//! that was not listed becomes a `Delete`, so objects deleted during the gap leave the cache
//! and reach deletion subscribers (the swap drops them silently).

use std::{collections::HashSet, hash::Hash};

use kube::{
    Resource, ResourceExt,
    runtime::{reflector::Store, watcher},
};

/// Rewrites relists for one watch; see the module documentation.
#[derive(Debug)]
pub struct InPlaceRelist {
    /// The first list has completed.
    listed_once: bool,
    /// Keys (`namespace/name`) listed so far by the relist in progress, if one is.
    seen: Option<HashSet<String>>,
}

impl Default for InPlaceRelist {
    fn default() -> Self {
        Self::new()
    }
}

fn key_of<K: Resource>(obj: &K) -> String {
    format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any())
}

impl InPlaceRelist {
    /// A rewriter for a watch that has not listed yet.
    #[must_use]
    pub fn new() -> Self {
        Self {
            listed_once: false,
            seen: None,
        }
    }

    /// The events to hand to the reflector for `event`, given the cache it writes.
    pub fn rewrite<K>(
        &mut self,
        event: watcher::Event<K>,
        cache: &Store<K>,
    ) -> Vec<watcher::Event<K>>
    where
        K: Resource + Clone + 'static,
        K::DynamicType: Eq + Hash + Clone,
    {
        if !self.listed_once {
            if matches!(event, watcher::Event::InitDone) {
                self.listed_once = true;
            }
            return vec![event];
        }
        match event {
            watcher::Event::Init => {
                // A relist that restarts before finishing starts over.
                self.seen = Some(HashSet::new());
                Vec::new()
            }
            watcher::Event::InitApply(obj) => {
                self.seen
                    .get_or_insert_with(HashSet::new)
                    .insert(key_of(&obj));
                vec![watcher::Event::Apply(obj)]
            }
            watcher::Event::InitDone => {
                let Some(seen) = self.seen.take() else {
                    return Vec::new();
                };
                cache
                    .state()
                    .into_iter()
                    .filter(|obj| !seen.contains(&key_of(obj.as_ref())))
                    .map(|obj| watcher::Event::Delete(obj.as_ref().clone()))
                    .collect()
            }
            other => vec![other],
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::runtime::reflector;

    use super::*;

    fn cm(name: &str, value: &str) -> ConfigMap {
        let mut c = ConfigMap::default();
        c.metadata.name = Some(name.into());
        c.metadata.namespace = Some("ns".into());
        c.data = Some([("v".to_string(), value.to_string())].into());
        c
    }

    fn value(store: &Store<ConfigMap>, name: &str) -> Option<String> {
        store
            .state()
            .into_iter()
            .find(|c| c.name_any() == name)
            .and_then(|c| c.data.as_ref()?.get("v").cloned())
    }

    fn names(events: &[watcher::Event<ConfigMap>]) -> Vec<String> {
        events
            .iter()
            .map(|e| match e {
                watcher::Event::Apply(o) => format!("apply {}", o.name_any()),
                watcher::Event::Delete(o) => format!("delete {}", o.name_any()),
                watcher::Event::Init => "init".into(),
                watcher::Event::InitApply(o) => format!("init-apply {}", o.name_any()),
                watcher::Event::InitDone => "init-done".into(),
            })
            .collect()
    }

    /// Feeds `events` through the rewriter into the writer; returns what the reflector saw.
    fn feed(
        r: &mut InPlaceRelist,
        writer: &mut reflector::store::Writer<ConfigMap>,
        reader: &Store<ConfigMap>,
        events: Vec<watcher::Event<ConfigMap>>,
    ) -> Vec<watcher::Event<ConfigMap>> {
        let mut out = Vec::new();
        for e in events {
            for rewritten in r.rewrite(e, reader) {
                writer.apply_watcher_event(&rewritten);
                out.push(rewritten);
            }
        }
        out
    }

    #[test]
    fn the_first_list_passes_through_and_makes_the_cache_ready() {
        let (reader, mut writer) = reflector::store::<ConfigMap>();
        let mut r = InPlaceRelist::new();
        let out = feed(
            &mut r,
            &mut writer,
            &reader,
            vec![
                watcher::Event::Init,
                watcher::Event::InitApply(cm("a", "1")),
                watcher::Event::InitDone,
            ],
        );
        assert_eq!(names(&out), ["init", "init-apply a", "init-done"]);
        assert_eq!(value(&reader, "a").as_deref(), Some("1"));
        assert!(
            futures::FutureExt::now_or_never(reader.wait_until_ready()).is_some(),
            "the first InitDone must reach the reflector"
        );
    }

    #[test]
    fn a_relist_updates_in_place_and_deletes_what_it_did_not_list() {
        let (reader, mut writer) = reflector::store::<ConfigMap>();
        let mut r = InPlaceRelist::new();
        feed(
            &mut r,
            &mut writer,
            &reader,
            vec![
                watcher::Event::Init,
                watcher::Event::InitApply(cm("a", "1")),
                watcher::Event::InitApply(cm("gone", "1")),
                watcher::Event::InitDone,
            ],
        );
        // The relist: `a` changed, `b` is new, `gone` was deleted during the gap.
        let out = feed(
            &mut r,
            &mut writer,
            &reader,
            vec![
                watcher::Event::Init,
                watcher::Event::InitApply(cm("a", "2")),
            ],
        );
        assert_eq!(names(&out), ["apply a"]);
        // Mid-list the cache already holds the new version and still the unlisted object:
        // nothing is lost while the list is read, and there is one copy of each object.
        assert_eq!(value(&reader, "a").as_deref(), Some("2"));
        assert_eq!(reader.len(), 2);
        let out = feed(
            &mut r,
            &mut writer,
            &reader,
            vec![
                watcher::Event::InitApply(cm("b", "1")),
                watcher::Event::InitDone,
            ],
        );
        assert_eq!(names(&out), ["apply b", "delete gone"]);
        let mut left: Vec<String> = reader.state().iter().map(|c| c.name_any()).collect();
        left.sort();
        assert_eq!(left, ["a", "b"]);
        // Ordinary events after the relist pass through.
        let out = feed(
            &mut r,
            &mut writer,
            &reader,
            vec![watcher::Event::Delete(cm("a", "2"))],
        );
        assert_eq!(names(&out), ["delete a"]);
        assert_eq!(reader.len(), 1);
    }

    #[test]
    fn a_relist_that_restarts_only_deletes_what_the_last_attempt_did_not_list() {
        let (reader, mut writer) = reflector::store::<ConfigMap>();
        let mut r = InPlaceRelist::new();
        feed(
            &mut r,
            &mut writer,
            &reader,
            vec![
                watcher::Event::Init,
                watcher::Event::InitApply(cm("a", "1")),
                watcher::Event::InitApply(cm("b", "1")),
                watcher::Event::InitDone,
            ],
        );
        // The first attempt lists `a`, then fails; the second lists `b` only.
        let out = feed(
            &mut r,
            &mut writer,
            &reader,
            vec![
                watcher::Event::Init,
                watcher::Event::InitApply(cm("a", "1")),
                watcher::Event::Init,
                watcher::Event::InitApply(cm("b", "2")),
                watcher::Event::InitDone,
            ],
        );
        assert_eq!(names(&out), ["apply a", "apply b", "delete a"]);
        assert_eq!(reader.len(), 1);
        assert_eq!(value(&reader, "b").as_deref(), Some("2"));
    }
}
