//! Conformance of the in-memory API server with kube-rs's `Api`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use devcluster::DevCluster;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_mins(1);
    while tokio::time::Instant::now() < deadline {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": "demo"}},
        "data": {"k": "v"}
    }))
    .unwrap()
}

#[tokio::test]
async fn configmap_crud() {
    let dc = DevCluster::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(dc.client(), "default");
    let created = api.create(&PostParams::default(), &cm("a")).await.unwrap();
    let md = &created.metadata;
    assert!(md.uid.is_some());
    assert!(md.creation_timestamp.is_some());
    let rv = md.resource_version.clone().unwrap();

    let err = api
        .create(&PostParams::default(), &cm("a"))
        .await
        .unwrap_err();
    assert!(matches!(err, kube::Error::Api(s) if s.code == 409 && s.reason == "AlreadyExists"));

    let got = api.get("a").await.unwrap();
    assert_eq!(got.data.unwrap()["k"], "v");

    // Stale update conflicts.
    let mut stale = created.clone();
    let mut fresh = created.clone();
    fresh.data = Some([("k".to_string(), "w".to_string())].into());
    let updated = api
        .replace("a", &PostParams::default(), &fresh)
        .await
        .unwrap();
    assert_ne!(updated.metadata.resource_version.unwrap(), rv);
    stale.data = Some([("k".to_string(), "x".to_string())].into());
    let err = api
        .replace("a", &PostParams::default(), &stale)
        .await
        .unwrap_err();
    assert!(matches!(err, kube::Error::Api(s) if s.code == 409 && s.reason == "Conflict"));

    let mut generated = cm("");
    generated.metadata.name = None;
    generated.metadata.generate_name = Some("gen-".into());
    let g = api
        .create(&PostParams::default(), &generated)
        .await
        .unwrap();
    assert!(g.metadata.name.unwrap().starts_with("gen-"));

    let list = api
        .list(&ListParams::default().labels("app=demo"))
        .await
        .unwrap();
    assert_eq!(list.items.len(), 2);
    assert!(list.metadata.resource_version.is_some());
    let list = api
        .list(&ListParams::default().labels("app!=demo"))
        .await
        .unwrap();
    assert!(list.items.is_empty());
    let list = api
        .list(&ListParams::default().fields("metadata.name=a"))
        .await
        .unwrap();
    assert_eq!(list.items.len(), 1);

    api.delete("a", &DeleteParams::default()).await.unwrap();
    let err = api.get("a").await.unwrap_err();
    assert!(matches!(err, kube::Error::Api(s) if s.code == 404));
}

#[tokio::test]
async fn paging_with_limit_and_continue() {
    let dc = DevCluster::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(dc.client(), "default");
    for i in 0..25 {
        api.create(&PostParams::default(), &cm(&format!("cm-{i:02}")))
            .await
            .unwrap();
    }
    let mut names = Vec::new();
    let mut lp = ListParams::default().limit(10);
    loop {
        let page = api.list(&lp).await.unwrap();
        assert!(page.items.len() <= 10);
        names.extend(page.items.into_iter().map(|c| c.metadata.name.unwrap()));
        match page.metadata.continue_ {
            Some(c) if !c.is_empty() => lp = lp.continue_token(&c),
            _ => break,
        }
    }
    assert_eq!(names.len(), 25);
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 25);
}

#[tokio::test]
async fn patch_flavours() {
    let dc = DevCluster::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(dc.client(), "default");
    api.create(&PostParams::default(), &cm("p")).await.unwrap();
    let pp = PatchParams::default();
    let merged = api
        .patch("p", &pp, &Patch::Merge(json!({"data": {"m": "1"}})))
        .await
        .unwrap();
    assert_eq!(merged.data.as_ref().unwrap()["m"], "1");
    let strategic = api
        .patch(
            "p",
            &pp,
            &Patch::Strategic(json!({"metadata": {"labels": {"s": "2"}}})),
        )
        .await
        .unwrap();
    assert_eq!(strategic.metadata.labels.as_ref().unwrap()["s"], "2");
    assert_eq!(strategic.metadata.labels.as_ref().unwrap()["app"], "demo");
    let jp: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/data/k", "value": "v"},
        {"op": "replace", "path": "/data/k", "value": "j"}
    ]))
    .unwrap();
    let j = api.patch("p", &pp, &Patch::Json::<()>(jp)).await.unwrap();
    assert_eq!(j.data.as_ref().unwrap()["k"], "j");
    let bad: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/data/k", "value": "nope"},
        {"op": "replace", "path": "/data/k", "value": "z"}
    ]))
    .unwrap();
    assert!(api.patch("p", &pp, &Patch::Json::<()>(bad)).await.is_err());
    assert_eq!(api.get("p").await.unwrap().data.unwrap()["k"], "j");
}

#[tokio::test]
async fn namespaces_gate_writes_and_terminate() {
    let dc = DevCluster::start().await.unwrap();
    let client = dc.client();
    let missing: Api<ConfigMap> = Api::namespaced(client.clone(), "nope");
    let err = missing
        .create(&PostParams::default(), &cm("x"))
        .await
        .unwrap_err();
    assert!(matches!(err, kube::Error::Api(s) if s.code == 404));

    let nss: Api<Namespace> = Api::all(client.clone());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "team"}})).unwrap(),
    )
    .await
    .unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "team");
    api.create(&PostParams::default(), &cm("x")).await.unwrap();
    nss.delete("team", &DeleteParams::default()).await.unwrap();
    eventually("namespace gone", || async {
        nss.get_opt("team").await.unwrap().is_none()
    })
    .await;
    assert!(dc.cluster().get("", "configmaps", "team", "x").is_none());
}

/// A Secret's `stringData` is merged into `data` (base64) on create and on every update, and
/// never stored: what clients that write `stringData` rely on.
#[tokio::test]
async fn secret_string_data_is_merged_into_data() {
    use k8s_openapi::{ByteString, api::core::v1::Secret};
    let dc = DevCluster::start().await.unwrap();
    let api: Api<Secret> = Api::namespaced(dc.client(), "default");
    let mut secret = Secret::default();
    secret.metadata.name = Some("s".into());
    secret.data = Some([("kept".to_owned(), ByteString(b"1".to_vec()))].into());
    secret.string_data = Some(
        [
            ("plain".to_owned(), "text".to_owned()),
            ("kept".to_owned(), "2".to_owned()),
        ]
        .into(),
    );
    let created = api.create(&PostParams::default(), &secret).await.unwrap();
    assert!(created.string_data.is_none());
    let data = created.data.unwrap();
    assert_eq!(data["plain"].0, b"text");
    assert_eq!(data["kept"].0, b"2", "stringData wins over data");
    let patched = api
        .patch(
            "s",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"plain": "new"}})),
        )
        .await
        .unwrap();
    assert!(patched.string_data.is_none());
    assert_eq!(patched.data.unwrap()["plain"].0, b"new");
    assert_eq!(api.get("s").await.unwrap().type_.as_deref(), Some("Opaque"));
}
