//! Custom resources end to end with kube-rs: CRD registration, status subresource and
//! generation, server-side apply with conflicts, finalizers through kube's helper, garbage
//! collection, and a `Controller` converging across injected faults.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::too_many_lines
)]

use std::sync::Arc;
use std::time::Duration;

use devcluster::{DevCluster, FaultConfig};
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, ResourceExt};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::watcher;
use kube::{CustomResource, CustomResourceExt, Resource};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, JsonSchema)]
#[kube(
    group = "test.devcluster.io",
    version = "v1",
    kind = "Widget",
    namespaced,
    status = "WidgetStatus",
    printcolumn = r#"{"name":"Size","type":"integer","jsonPath":".spec.size"}"#
)]
/// Spec of the test kind.
pub struct WidgetSpec {
    size: i32,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
/// Status of the test kind.
pub struct WidgetStatus {
    observed_generation: Option<i64>,
    ready: bool,
}

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

async fn install_crd(client: &kube::Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &Widget::crd())
        .await
        .unwrap();
    eventually("CRD established", || {
        let crds = crds.clone();
        async move {
            crds.get("widgets.test.devcluster.io")
                .await
                .ok()
                .is_some_and(|c| {
                    c.status
                        .and_then(|s| s.conditions)
                        .unwrap_or_default()
                        .iter()
                        .any(|c| c.type_ == "Established" && c.status == "True")
                })
        }
    })
    .await;
}

fn widget(name: &str, size: i32) -> Widget {
    Widget::new(name, WidgetSpec { size })
}

#[tokio::test]
async fn status_subresource_and_generation() {
    let dc = DevCluster::start().await.unwrap();
    let client = dc.client();
    install_crd(&client).await;
    let api: Api<Widget> = Api::namespaced(client, "default");
    let mut w = widget("w", 1);
    w.status = Some(WidgetStatus {
        observed_generation: Some(9),
        ready: true,
    });
    let created = api.create(&PostParams::default(), &w).await.unwrap();
    assert!(created.status.is_none(), "status is ignored on create");
    assert_eq!(created.metadata.generation, Some(1));

    let st = api
        .patch_status(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"ready": true}, "spec": {"size": 100}})),
        )
        .await
        .unwrap();
    assert!(st.status.as_ref().unwrap().ready);
    assert_eq!(st.spec.size, 1, "status writes change only status");
    assert_eq!(
        st.metadata.generation,
        Some(1),
        "status writes never move generation"
    );

    let upd = api
        .patch(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": 2}, "status": {"ready": false}})),
        )
        .await
        .unwrap();
    assert_eq!(upd.spec.size, 2);
    assert_eq!(upd.metadata.generation, Some(2));
    assert!(
        upd.status.unwrap().ready,
        "main resource writes ignore status"
    );

    // Custom resources refuse unconditional updates, and creates carrying a resourceVersion.
    let mut unconditional = api.get("w").await.unwrap();
    unconditional.metadata.resource_version = None;
    let err = api
        .replace("w", &PostParams::default(), &unconditional)
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(s) if s.code == 422 && s.message.contains("metadata.resourceVersion"))
    );
    let mut with_rv = widget("w2", 1);
    with_rv.metadata.resource_version = Some("5".into());
    let err = api
        .create(&PostParams::default(), &with_rv)
        .await
        .unwrap_err();
    assert!(matches!(err, kube::Error::Api(s) if s.code == 400));

    let meta_only = api
        .patch(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}})),
        )
        .await
        .unwrap();
    assert_eq!(meta_only.metadata.generation, Some(2));

    // A status write keeps every other member as stored, and a null status removes it.
    let cleared = api
        .patch_status(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": null, "spec": {"size": 7},
                                 "metadata": {"labels": {"a": "c"}}})),
        )
        .await
        .unwrap();
    assert!(cleared.status.is_none(), "a null status removes it");
    assert_eq!(cleared.spec.size, 2);
    assert_eq!(cleared.labels().get("a").map(String::as_str), Some("b"));
    assert_eq!(cleared.metadata.generation, Some(2));
    let restored = api
        .patch_status(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"ready": true, "observed_generation": 2}})),
        )
        .await
        .unwrap();
    assert_eq!(
        restored.status.map(|s| s.observed_generation),
        Some(Some(2))
    );
    assert_eq!(restored.metadata.uid, created.metadata.uid);

    // A status merge patch is checked against the stored resourceVersion and name.
    let rv = restored.metadata.resource_version.clone().unwrap();
    let merge_status = |body: serde_json::Value| {
        let api = api.clone();
        async move {
            api.patch_status("w", &PatchParams::default(), &Patch::Merge(body))
                .await
        }
    };
    let stale =
        merge_status(json!({"metadata": {"resourceVersion": "1"}, "status": {"ready": false}}))
            .await
            .unwrap_err();
    assert!(
        matches!(stale, kube::Error::Api(ref s) if s.code == 409),
        "{stale}"
    );
    let renamed = merge_status(json!({"metadata": {"name": "other"}, "status": {"ready": false}}))
        .await
        .unwrap_err();
    assert!(
        matches!(renamed, kube::Error::Api(ref s) if s.code == 400),
        "{renamed}"
    );
    let current = api
        .patch_status(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"resourceVersion": rv}, "status": {"ready": false}})),
        )
        .await
        .unwrap();
    assert!(!current.status.as_ref().unwrap().ready);
    assert_eq!(current.spec.size, 2);
    assert_eq!(current.labels().get("a").map(String::as_str), Some("b"));
}

/// A server-side apply of the status subresource records what its manager owns (an entry with
/// `subresource: status`), so a later apply by the same manager that leaves a field out
/// removes it, as the API server does; a field another manager set stays.
#[tokio::test]
async fn status_apply_owns_fields_and_a_later_apply_drops_them() {
    let dc = DevCluster::start().await.unwrap();
    install_crd(&dc.client()).await;
    let api: Api<Widget> = Api::namespaced(dc.client(), "default");
    api.create(
        &PostParams::default(),
        &Widget::new("s", WidgetSpec { size: 1 }),
    )
    .await
    .unwrap();
    let apply = |status: serde_json::Value| {
        let api = api.clone();
        async move {
            api.patch_status(
                "s",
                &PatchParams::apply("op").force(),
                &Patch::Apply(json!({
                    "apiVersion": "test.devcluster.io/v1", "kind": "Widget", "status": status
                })),
            )
            .await
            .unwrap()
        }
    };
    let first = apply(json!({"ready": true, "observed_generation": 1})).await;
    let entry = first
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .find(|e| e.manager.as_deref() == Some("op"))
        .expect("the status apply's managedFields entry");
    assert_eq!(entry.operation.as_deref(), Some("Apply"));
    assert_eq!(entry.subresource.as_deref(), Some("status"));
    let second = apply(json!({"ready": true})).await;
    let status = second.status.unwrap();
    assert_eq!(
        status.observed_generation, None,
        "dropped by its only owner"
    );
    assert!(status.ready);
}

#[tokio::test]
async fn server_side_apply_ownership() {
    let dc = DevCluster::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(dc.client(), "default");
    let a = PatchParams::apply("alpha");
    let obj = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"},
                     "data": {"shared": "1", "mine": "a"}});
    let created = api.patch("ssa", &a, &Patch::Apply(&obj)).await.unwrap();
    let mf = created.metadata.managed_fields.clone().unwrap();
    assert_eq!(mf.len(), 1);
    assert_eq!(mf[0].manager.as_deref(), Some("alpha"));
    assert_eq!(mf[0].operation.as_deref(), Some("Apply"));

    let b = PatchParams::apply("beta");
    let conflicting = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"},
                             "data": {"shared": "2"}});
    let err = api
        .patch("ssa", &b, &Patch::Apply(&conflicting))
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 409);
            assert!(
                s.message.contains("conflict with \"alpha\""),
                "{}",
                s.message
            );
            assert!(s.message.contains(".data.shared"), "{}", s.message);
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    let forced = api
        .patch(
            "ssa",
            &PatchParams::apply("beta").force(),
            &Patch::Apply(&conflicting),
        )
        .await
        .unwrap();
    assert_eq!(forced.data.as_ref().unwrap()["shared"], "2");

    // alpha stops applying "mine": it is removed; "shared" now belongs to beta and stays.
    let shrink =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {}});
    let after = api.patch("ssa", &a, &Patch::Apply(&shrink)).await.unwrap();
    let data = after.data.unwrap_or_default();
    assert!(!data.contains_key("mine"), "{data:?}");
    assert_eq!(data["shared"], "2");

    // Dry run changes nothing.
    let dry = api
        .patch(
            "ssa",
            &PatchParams::apply("alpha").dry_run(),
            &Patch::Apply(&json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {"dry": "x"}})),
        )
        .await
        .unwrap();
    assert_eq!(dry.data.unwrap()["dry"], "x");
    assert!(
        !api.get("ssa")
            .await
            .unwrap()
            .data
            .unwrap()
            .contains_key("dry")
    );
}

#[tokio::test]
async fn garbage_collection_policies() {
    let dc = DevCluster::start().await.unwrap();
    let client = dc.client();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let owner = api
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "owner"}})).unwrap(),
        )
        .await
        .unwrap();
    let oref = owner.controller_owner_ref(&()).unwrap();
    let mk = |name: &str| -> ConfigMap {
        let mut c: ConfigMap = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
        c.metadata.owner_references = Some(vec![oref.clone()]);
        c
    };
    api.create(&PostParams::default(), &mk("child-bg"))
        .await
        .unwrap();
    api.delete("owner", &DeleteParams::background())
        .await
        .unwrap();
    eventually("background GC", || {
        let api = api.clone();
        async move { api.get_opt("child-bg").await.unwrap().is_none() }
    })
    .await;

    // A dependent created for an owner that no longer exists is collected too.
    api.create(&PostParams::default(), &mk("late-child"))
        .await
        .unwrap();
    eventually("dangling dependent collected", || {
        let api = api.clone();
        async move { api.get_opt("late-child").await.unwrap().is_none() }
    })
    .await;

    // Orphan: dependents stay, owner refs go.
    let owner = api
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "owner2"}})).unwrap(),
        )
        .await
        .unwrap();
    let oref2 = owner.controller_owner_ref(&()).unwrap();
    let mut c: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "child-orphan"}})).unwrap();
    c.metadata.owner_references = Some(vec![oref2]);
    api.create(&PostParams::default(), &c).await.unwrap();
    api.delete("owner2", &DeleteParams::orphan()).await.unwrap();
    eventually("owner gone, child orphaned", || {
        let api = api.clone();
        async move {
            api.get_opt("owner2").await.unwrap().is_none()
                && api
                    .get_opt("child-orphan")
                    .await
                    .unwrap()
                    .is_some_and(|c| c.metadata.owner_references.unwrap_or_default().is_empty())
        }
    })
    .await;

    // Foreground: the owner waits for a blocking dependent that has its own finalizer.
    let owner = api
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "owner3"}})).unwrap(),
        )
        .await
        .unwrap();
    let mut oref3 = owner.controller_owner_ref(&()).unwrap();
    oref3.block_owner_deletion = Some(true);
    let mut c: ConfigMap = serde_json::from_value(
        json!({"metadata": {"name": "child-fg", "finalizers": ["test/hold"]}}),
    )
    .unwrap();
    c.metadata.owner_references = Some(vec![oref3]);
    api.create(&PostParams::default(), &c).await.unwrap();
    api.delete("owner3", &DeleteParams::foreground())
        .await
        .unwrap();
    eventually("child marked for deletion", || {
        let api = api.clone();
        async move {
            api.get_opt("child-fg")
                .await
                .unwrap()
                .is_some_and(|c| c.metadata.deletion_timestamp.is_some())
        }
    })
    .await;
    let o3 = api.get("owner3").await.unwrap();
    assert!(o3.metadata.deletion_timestamp.is_some());
    assert!(o3.finalizers().iter().any(|f| f == "foregroundDeletion"));
    api.patch(
        "child-fg",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    eventually("owner removed after dependent", || {
        let api = api.clone();
        async move { api.get_opt("owner3").await.unwrap().is_none() }
    })
    .await;
}

#[derive(Debug, thiserror::Error)]
enum ReconcileError {
    #[error("kube: {0}")]
    Kube(#[from] kube::Error),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<kube::Error>>),
}

async fn reconcile(w: Arc<Widget>, client: Arc<kube::Client>) -> Result<Action, ReconcileError> {
    let ns = w.namespace().unwrap_or_default();
    let api: Api<Widget> = Api::namespaced((*client).clone(), &ns);
    finalizer(&api, "test.devcluster.io/cleanup", w, |ev| async {
        match ev {
            Finalizer::Apply(w) => {
                let cms: Api<ConfigMap> = Api::namespaced((*client).clone(), &ns);
                let mut cm = json!({
                    "apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": format!("{}-child", w.name_any())},
                    "data": {"size": w.spec.size.to_string()}
                });
                cm["metadata"]["ownerReferences"] = json!([w.controller_owner_ref(&()).unwrap()]);
                cms.patch(
                    &format!("{}-child", w.name_any()),
                    &PatchParams::apply("widget-controller").force(),
                    &Patch::Apply(&cm),
                )
                .await?;
                let status = json!({"apiVersion": "test.devcluster.io/v1", "kind": "Widget",
                    "status": {"observed_generation": w.metadata.generation, "ready": true}});
                api.patch_status(
                    &w.name_any(),
                    &PatchParams::apply("widget-controller").force(),
                    &Patch::Apply(&status),
                )
                .await?;
                Ok(Action::requeue(Duration::from_mins(5)))
            }
            Finalizer::Cleanup(_) => Ok(Action::await_change()),
        }
    })
    .await
    .map_err(|e| ReconcileError::Finalizer(Box::new(e)))
}

#[tokio::test]
async fn controller_converges_across_faults() {
    let dc = DevCluster::start().await.unwrap();
    let client = dc.client();
    install_crd(&client).await;
    let widgets: Api<Widget> = Api::namespaced(client.clone(), "default");
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let ctl_client = Arc::new(client.clone());
    tokio::spawn(
        Controller::new(widgets.clone(), watcher::Config::default())
            .owns(cms.clone(), watcher::Config::default())
            .run(
                reconcile,
                |_, _, _| Action::requeue(Duration::from_millis(100)),
                ctl_client,
            )
            .for_each(|_| async {}),
    );
    widgets
        .create(&PostParams::default(), &widget("a", 1))
        .await
        .unwrap();
    let converged = |size: i32| {
        let widgets = widgets.clone();
        let cms = cms.clone();
        move || {
            let widgets = widgets.clone();
            let cms = cms.clone();
            async move {
                let Ok(Some(w)) = widgets.get_opt("a").await else {
                    return false;
                };
                let Ok(Some(c)) = cms.get_opt("a-child").await else {
                    return false;
                };
                w.status
                    .is_some_and(|s| s.ready && s.observed_generation == w.metadata.generation)
                    && c.data.is_some_and(|d| d["size"] == size.to_string())
            }
        }
    };
    eventually("initial convergence", converged(1)).await;

    // Every child write fails until the faults are cleared.
    dc.set_faults(FaultConfig {
        error_rate: 1.0,
        error_codes: vec![500, 429, 409],
        verbs: vec!["patch".into()],
        resources: vec!["configmaps".into()],
        ..FaultConfig::default()
    })
    .unwrap();
    widgets
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": 2}})),
        )
        .await
        .unwrap();
    eventually("child writes failing", || async {
        dc.stats().injected_failures > 2
    })
    .await;
    dc.set_faults(FaultConfig {
        error_rate: 0.3,
        latency_ms: 5,
        ..FaultConfig::default()
    })
    .unwrap();
    dc.cut_watches();
    dc.expire_resource_versions();
    tokio::time::sleep(Duration::from_millis(300)).await;
    dc.clear_faults();
    eventually("convergence after faults", converged(2)).await;

    widgets.delete("a", &DeleteParams::default()).await.unwrap();
    eventually("widget and child gone", || {
        let widgets = widgets.clone();
        let cms = cms.clone();
        async move {
            widgets.get_opt("a").await.unwrap().is_none()
                && cms.get_opt("a-child").await.unwrap().is_none()
        }
    })
    .await;
}

#[tokio::test]
async fn deleting_a_crd_removes_its_objects() {
    let dc = DevCluster::start().await.unwrap();
    let client = dc.client();
    install_crd(&client).await;
    let api: Api<Widget> = Api::namespaced(client.clone(), "default");
    api.create(&PostParams::default(), &widget("x", 1))
        .await
        .unwrap();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.delete("widgets.test.devcluster.io", &DeleteParams::default())
        .await
        .unwrap();
    eventually("CRD gone", || {
        let crds = crds.clone();
        async move {
            crds.get_opt("widgets.test.devcluster.io")
                .await
                .unwrap()
                .is_none()
        }
    })
    .await;
    let err = api.get("x").await.unwrap_err();
    assert!(matches!(err, kube::Error::Api(s) if s.code == 404));
    assert!(
        dc.cluster()
            .list("test.devcluster.io", "widgets")
            .is_empty()
    );
}

/// An apply that finds no object and then loses the create to another writer applies to the
/// object that writer made, as the API server does: it never answers `AlreadyExists`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_racing_a_create_never_fails_with_already_exists() {
    let dc = DevCluster::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(dc.client(), "default");
    let mut raced = Vec::new();
    for i in 0..200 {
        let name = format!("race-{i}");
        let created = ConfigMap {
            metadata: kube::api::ObjectMeta {
                name: Some(name.clone()),
                ..Default::default()
            },
            ..Default::default()
        };
        let applied = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name}, "data": {"by": "apply"}});
        let patch = Patch::Apply(applied);
        let params = PatchParams::apply("racer").force();
        let (creating, applying) = (api.clone(), api.clone());
        let create =
            tokio::spawn(async move { creating.create(&PostParams::default(), &created).await });
        let apply_name = name.clone();
        let apply = tokio::spawn(async move { applying.patch(&apply_name, &params, &patch).await });
        let (create, apply) = (create.await.unwrap(), apply.await.unwrap());
        let applied = apply.unwrap_or_else(|e| panic!("apply {name}: {e}"));
        assert_eq!(applied.data.unwrap()["by"], "apply");
        if create.is_err() {
            raced.push(name);
        }
    }
    // Each apply either created its object (and the create lost) or applied to the created one.
    eprintln!("{} creates lost to the apply", raced.len());
}
