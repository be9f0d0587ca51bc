//! The operator running with nothing but the permissions in `config/rbac/`, against a dev
//! cluster that enforces RBAC (including the escalation checks on Role and `RoleBinding`
//! writes): every controller converges, no request is denied, and leader election works.
//! A control run without the `bind` rule shows the checks are real.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod sessions_project_support;

use agentic_api::sessions::ProjectSettings;
use k8s_openapi::api::{coordination::v1::Lease, core::v1::Namespace, rbac::v1::RoleBinding};
use kube::{
    Api, Client, ResourceExt,
    api::{ListParams, Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};
use sessions_project_support::{
    MANAGED, OPERATOR_USER, Operator, cluster, eventually, install, namespace, rbac_documents,
    settings, wait_for,
};

async fn project_settings(client: &Client, ns: &str) -> Option<ProjectSettings> {
    Api::<ProjectSettings>::namespaced(client.clone(), ns)
        .get_opt("projectsettings")
        .await
        .unwrap()
}

fn ready(ps: &ProjectSettings) -> Option<(String, String, String)> {
    ps.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready" && c.observed_generation == ps.metadata.generation)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

async fn group_bindings(client: &Client, ns: &str) -> Vec<String> {
    let mut names: Vec<String> = Api::<RoleBinding>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels("ambient-code.io/project-rbac=group"))
        .await
        .unwrap()
        .items
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_works_with_only_the_shipped_rbac() {
    let cluster = cluster(true).await;
    let admin = cluster.client();
    install(&admin, &rbac_documents()).await;
    let client = cluster
        .service_account_client("ambient-code", "agentic-operator")
        .await
        .unwrap();
    let operator = Operator::start(
        client,
        settings("op-0", |a| {
            a.leader_elect = true;
            a.leader_election_namespace = Some("ambient-code".into());
        }),
    );

    namespace(&admin, "team-r", &[MANAGED]).await;
    wait_for("the default ProjectSettings to be Ready", || async {
        let ps = project_settings(&admin, "team-r").await?;
        ready(&ps).filter(|(s, _, _)| s == "True").map(|_| ())
    })
    .await;
    Api::<ProjectSettings>::namespaced(admin.clone(), "team-r")
        .patch(
            "projectsettings",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"groupAccess": [
                {"groupName": "devs", "role": "edit"},
                {"groupName": "ops", "role": "admin"},
            ]}})),
        )
        .await
        .unwrap();
    eventually("two group bindings", || async {
        group_bindings(&admin, "team-r").await == vec!["devs-edit", "ops-admin"]
    })
    .await;
    Api::<ProjectSettings>::namespaced(admin.clone(), "team-r")
        .patch(
            "projectsettings",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"groupAccess": [
                {"groupName": "devs", "role": "view"},
            ]}})),
        )
        .await
        .unwrap();
    eventually("the stale bindings to be pruned", || async {
        group_bindings(&admin, "team-r").await == vec!["devs-view"]
    })
    .await;
    let ps = wait_for("status with one binding", || async {
        let ps = project_settings(&admin, "team-r").await?;
        let status = ps.status.as_ref()?;
        (status.group_bindings_created == Some(1)
            && status.scheduled_session_rbac_ready == Some(true)
            && status.limit_range_ready == Some(true)
            && ready(&ps).is_some_and(|(s, _, _)| s == "True"))
        .then_some(ps)
    })
    .await;
    assert!(ps.status.is_some());

    // The Lease is held by this replica.
    let lease = Api::<Lease>::namespaced(admin.clone(), "ambient-code")
        .get("agentic-operator-leader")
        .await
        .unwrap();
    let holder = lease.spec.unwrap().holder_identity.unwrap();
    assert!(holder.starts_with("op-0"), "{holder}");
    // Events were published.
    let events = Api::<k8s_openapi::api::events::v1::Event>::namespaced(admin.clone(), "team-r")
        .list(&ListParams::default())
        .await
        .unwrap();
    assert!(!events.items.is_empty(), "Events need their RBAC too");

    for controller in ["projectsettings", "namespace"] {
        assert_eq!(
            operator.metric(
                "controller_runtime_reconcile_errors_total",
                &[("controller", controller)]
            ),
            0,
            "{controller} reconciles must not fail"
        );
    }
    let audit = cluster.auth().unwrap().audit();
    let denied = audit.denied(OPERATOR_USER);
    assert!(denied.is_empty(), "denied requests: {denied:#?}");
    let rules: Vec<devcluster::auth::rbac::Rule> = rbac_documents()
        .iter()
        .filter(|d| d["kind"] == "ClusterRole" || d["kind"] == "Role")
        .flat_map(|d| d["rules"].as_array().unwrap().clone())
        .map(|r| devcluster::auth::rbac::Rule::from_value(&r))
        .collect();
    eprintln!(
        "rules not exercised by this scenario: {:#?}",
        audit.unused(OPERATOR_USER, &rules)
    );
    operator.stop().await.unwrap();
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
