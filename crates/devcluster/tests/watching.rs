//! Conformance with kube-rs's `watcher` and `Controller`: paged `ListWatch`, streaming lists,
//! metadata-only watches, resumption after cut streams, and relists after 410.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use devcluster::DevCluster;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, PartialObjectMeta, PostParams};
use kube::runtime::watcher as watch_stream;
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, reflector};
use serde_json::json;

fn cm(name: &str, v: &str) -> ConfigMap {
    serde_json::from_value(
        json!({"metadata": {"name": name, "labels": {"app": "w"}}, "data": {"v": v}}),
    )
    .unwrap()
}

async fn eventually<F>(what: &str, mut f: F)
where
    F: FnMut() -> bool,
{
    let deadline = tokio::time::Instant::now() + Duration::from_mins(1);
    while tokio::time::Instant::now() < deadline {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Runs a reflector over `cfg` and returns its store.
fn reflect(api: Api<ConfigMap>, cfg: watcher::Config) -> reflector::Store<ConfigMap> {
    let (reader, writer) = reflector::store();
    let stream = reflector(writer, watch_stream(api, cfg))
        .default_backoff()
        .applied_objects();
    tokio::spawn(async move {
        let _ = stream.try_for_each(|_| async { Ok(()) }).await;
    });
    reader
}

fn values(store: &reflector::Store<ConfigMap>) -> BTreeMap<String, String> {
    store
        .state()
        .iter()
        .map(|c| {
            (
                c.metadata.name.clone().unwrap_or_default(),
                c.data
                    .as_ref()
                    .and_then(|d| d.get("v").cloned())
                    .unwrap_or_default(),
            )
        })
        .collect()
}

async fn exercise(dc: &DevCluster, cfg: watcher::Config) {
    let api: Api<ConfigMap> = Api::namespaced(dc.client(), "default");
    for i in 0..7 {
        api.create(&PostParams::default(), &cm(&format!("pre-{i}"), "0"))
            .await
            .unwrap();
    }
    let store = reflect(api.clone(), cfg);
    store.wait_until_ready().await.unwrap();
    assert_eq!(store.state().len(), 7);

    api.create(&PostParams::default(), &cm("live", "1"))
        .await
        .unwrap();
    api.delete("pre-0", &DeleteParams::default()).await.unwrap();
    eventually("live events", || {
        let v = values(&store);
        v.contains_key("live") && !v.contains_key("pre-0")
    })
    .await;

    // Cut streams: the watcher resumes from its last resourceVersion.
    dc.cut_watches();
    api.create(&PostParams::default(), &cm("after-cut", "1"))
        .await
        .unwrap();
    eventually("event after cut", || {
        values(&store).contains_key("after-cut")
    })
    .await;

    // Expire history: the resumed watch gets a 410 and the watcher relists.
    dc.expire_resource_versions();
    api.create(&PostParams::default(), &cm("after-expiry", "1"))
        .await
        .unwrap();
    api.delete("pre-1", &DeleteParams::default()).await.unwrap();
    eventually("state after relist", || {
        let v = values(&store);
        v.contains_key("after-expiry") && !v.contains_key("pre-1")
    })
    .await;

    // Relabelling out of the selector removes it from a selected watch.
    api.patch(
        "pre-2",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(json!({"data": {"v": "changed"}})),
    )
    .await
    .unwrap();
    eventually("modified value", || {
        values(&store).get("pre-2").map(String::as_str) == Some("changed")
    })
    .await;
}

#[tokio::test]
async fn paged_list_watch() {
    let dc = DevCluster::start().await.unwrap();
    exercise(&dc, watcher::Config::default().page_size(3).labels("app=w")).await;
    let stats = dc.stats();
    assert!(stats.verb_total("watch") >= 2, "{stats:?}");
    assert!(stats.verb_total("list") >= 3, "{stats:?}");
}

#[tokio::test]
async fn streaming_lists() {
    let dc = DevCluster::start().await.unwrap();
    exercise(&dc, watcher::Config::default().streaming_lists()).await;
}

#[tokio::test]
async fn selector_changes_become_deletes() {
    let dc = DevCluster::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(dc.client(), "default");
    api.create(&PostParams::default(), &cm("sel", "1"))
        .await
        .unwrap();
    let store = reflect(api.clone(), watcher::Config::default().labels("app=w"));
    store.wait_until_ready().await.unwrap();
    assert_eq!(store.state().len(), 1);
    api.patch(
        "sel",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(json!({"metadata": {"labels": {"app": "other"}}})),
    )
    .await
    .unwrap();
    eventually("object left the selection", || store.state().is_empty()).await;
    api.patch(
        "sel",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(json!({"metadata": {"labels": {"app": "w"}}})),
    )
    .await
    .unwrap();
    eventually("object back in the selection", || store.state().len() == 1).await;
}

#[tokio::test]
async fn metadata_only_watch() {
    let dc = DevCluster::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(dc.client(), "default");
    api.create(&PostParams::default(), &cm("m1", "1"))
        .await
        .unwrap();
    let meta: Api<PartialObjectMeta<ConfigMap>> = Api::namespaced(dc.client(), "default");
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let s2 = seen.clone();
    tokio::spawn(async move {
        let mut stream = watch_stream(meta, watcher::Config::default()).boxed();
        while let Some(ev) = stream.next().await {
            if let Ok(Event::Apply(o) | Event::InitApply(o)) = ev {
                s2.lock().unwrap().push(o.metadata.name.unwrap_or_default());
            }
        }
    });
    eventually("initial metadata", || {
        seen.lock().unwrap().contains(&"m1".to_string())
    })
    .await;
    api.create(&PostParams::default(), &cm("m2", "1"))
        .await
        .unwrap();
    eventually("live metadata", || {
        seen.lock().unwrap().contains(&"m2".to_string())
    })
    .await;
    let got = Api::<PartialObjectMeta<ConfigMap>>::namespaced(dc.client(), "default")
        .get_metadata("m1")
        .await
        .unwrap();
    assert_eq!(got.metadata.name.as_deref(), Some("m1"));
}
