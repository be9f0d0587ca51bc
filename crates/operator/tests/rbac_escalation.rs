//! The escalation checks the shipped RBAC is built for are real: without the `bind` rule on
//! the `ambient-project-*` `ClusterRoles`, the API server refuses the group `RoleBindings`, and
//! the `ProjectSettings` reports it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use agentic_api::sessions::ProjectSettings;
use k8s_openapi::api::{core::v1::Namespace, rbac::v1::RoleBinding};
use kube::{
    Api, Client, ResourceExt,
    api::{ListParams, Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};
use support::{Operator, cluster, install, namespace, rbac_documents, settings, wait_for};

fn ready(ps: &ProjectSettings) -> Option<(String, String, String)> {
    ps.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready" && c.observed_generation == ps.metadata.generation)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

async fn project_settings(client: &Client, ns: &str) -> Option<ProjectSettings> {
    Api::<ProjectSettings>::namespaced(client.clone(), ns)
        .get_opt("projectsettings")
        .await
        .unwrap()
}

async fn group_bindings(client: &Client, ns: &str) -> Vec<String> {
    Api::<RoleBinding>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels("ambient-code.io/project-rbac=group"))
        .await
        .unwrap()
        .items
        .iter()
        .map(ResourceExt::name_any)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_bind_the_group_bindings_are_refused_and_reported() {
    let cluster = cluster(true).await;
    let admin = cluster.client();
    // The shipped manifests minus the `bind` rule.
    let docs: Vec<Value> = rbac_documents()
        .into_iter()
        .map(|mut doc| {
            if doc["kind"] == "ClusterRole" {
                let rules: Vec<Value> = doc["rules"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|r| !r["verbs"].as_array().unwrap().contains(&json!("bind")))
                    .cloned()
                    .collect();
                doc["rules"] = json!(rules);
            }
            doc
        })
        .collect();
    install(&admin, &docs).await;
    let client = cluster
        .service_account_client("ambient-code", "agentic-operator")
        .await
        .unwrap();
    let operator = Operator::start(client, settings("op-0", |_| {}));
    namespace(&admin, "team-s", &[]).await;
    Api::<ProjectSettings>::namespaced(admin.clone(), "team-s")
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "vteam.ambient-code/v1alpha1", "kind": "ProjectSettings",
                "metadata": {"name": "projectsettings", "namespace": "team-s"},
                "spec": {"groupAccess": [{"groupName": "devs", "role": "edit"}]}
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    Api::<Namespace>::all(admin.clone())
        .patch(
            "team-s",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"ambient-code.io/managed": "true"}}})),
        )
        .await
        .unwrap();
    let (_, reason, message) = wait_for("a ReconcileFailed condition", || async {
        let ps = project_settings(&admin, "team-s").await?;
        ready(&ps).filter(|(s, _, _)| s == "False")
    })
    .await;
    assert_eq!(reason, "ReconcileFailed");
    assert!(
        message.contains("RoleBinding team-s/devs-edit"),
        "{message}"
    );
    assert!(group_bindings(&admin, "team-s").await.is_empty());
    assert!(
        message.to_lowercase().contains("forbidden"),
        "the API server's refusal is in the message: {message}"
    );
    operator.stop().await.unwrap();
}
