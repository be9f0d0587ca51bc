//! Writes that read back only the written object's identity (`runtime::ack`), against the
//! dev cluster: the same objects are written as through `kube::Api`, and failures come back
//! as the same API errors.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use agentic_api::sessions::AgenticSession;
use agentic_operator::runtime::ack;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    Api,
    api::{Patch, PatchParams, PostParams},
};
use serde_json::json;
use support::{install_crds, namespace};

/// A dev cluster with the CRDs and namespace `a`.
async fn cluster() -> devcluster::DevCluster {
    support::crypto();
    let cluster = devcluster::DevCluster::builder().start().await.unwrap();
    let client = cluster.client();
    install_crds(&client).await;
    namespace(&client, "a", &[]).await;
    cluster
}

#[tokio::test]
async fn writes_answer_the_identity_of_what_they_wrote_and_errors_as_kube_does() {
    let cluster = cluster().await;
    let client = cluster.client();
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "a");

    let map: ConfigMap = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "m"}, "data": {"k": "v"}
    }))
    .unwrap();
    let created = ack::create(&client, "a", &PostParams::default(), &map)
        .await
        .unwrap();
    let live = maps.get("m").await.unwrap();
    assert_eq!(created.metadata.name.as_deref(), Some("m"));
    assert_eq!(created.metadata.uid, live.metadata.uid);
    assert_eq!(
        created.metadata.resource_version,
        live.metadata.resource_version
    );

    // A second create is the API's 409, as `Api::create` reports it.
    match ack::create(&client, "a", &PostParams::default(), &map).await {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 409, "{s:?}"),
        other => panic!("expected 409, got {other:?}"),
    }

    let patched = ack::patch::<ConfigMap, _>(
        &client,
        "a",
        "m",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "w"}})),
    )
    .await
    .unwrap();
    let live = maps.get("m").await.unwrap();
    assert_eq!(live.data.unwrap()["k"], "w");
    assert_eq!(
        patched.metadata.resource_version,
        live.metadata.resource_version
    );
    assert_ne!(
        patched.metadata.resource_version,
        created.metadata.resource_version
    );

    // Server-side apply goes through the same builder: field manager and force included.
    let applied = ack::patch::<ConfigMap, _>(
        &client,
        "a",
        "m",
        &PatchParams::apply("ack-test").force(),
        &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "m"}, "data": {"k": "x"}})),
    )
    .await
    .unwrap();
    let live = maps.get("m").await.unwrap();
    assert_eq!(live.data.unwrap()["k"], "x");
    assert_eq!(
        applied.metadata.resource_version,
        live.metadata.resource_version
    );
    assert!(
        live.metadata
            .managed_fields
            .unwrap()
            .iter()
            .any(|m| m.manager.as_deref() == Some("ack-test"))
    );

    // A missing object is the API's 404; a stale resourceVersion its 409.
    match ack::patch::<ConfigMap, _>(
        &client,
        "a",
        "missing",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {}})),
    )
    .await
    {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 404, "{s:?}"),
        other => panic!("expected 404, got {other:?}"),
    }
    match ack::patch::<ConfigMap, _>(
        &client,
        "a",
        "m",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"resourceVersion": "1"}, "data": {"k": "y"}})),
    )
    .await
    {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 409, "{s:?}"),
        other => panic!("expected 409, got {other:?}"),
    }
}

#[tokio::test]
async fn a_status_write_changes_status_only() {
    let cluster = cluster().await;
    let client = cluster.client();
    let sessions: Api<AgenticSession> = Api::namespaced(client.clone(), "a");
    sessions
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "vteam.ambient-code/v1alpha1", "kind": "AgenticSession",
                "metadata": {"name": "s"}, "spec": {"initialPrompt": "hi"}
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let written = ack::patch_status::<AgenticSession, _>(
        &client,
        "a",
        "s",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Pending"}, "spec": {"initialPrompt": "no"}})),
    )
    .await
    .unwrap();
    let live = serde_json::to_value(sessions.get("s").await.unwrap()).unwrap();
    assert_eq!(live["status"]["phase"], "Pending");
    assert_eq!(live["spec"]["initialPrompt"], "hi");
    assert_eq!(
        written.metadata.resource_version.as_deref(),
        live["metadata"]["resourceVersion"].as_str()
    );
}
