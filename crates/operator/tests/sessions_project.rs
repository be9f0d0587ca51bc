//! The `ProjectSettings` and namespace controllers against the dev cluster: default objects for
//! managed namespaces, group `RoleBindings` created, updated and pruned, the scheduled-session
//! RBAC, the `LimitRange`, status, Events, invalid specs, and no writes in steady state.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use agentic_api::sessions::ProjectSettings;
use k8s_openapi::api::{
    core::v1::{LimitRange, ServiceAccount},
    events::v1::Event,
    rbac::v1::{Role, RoleBinding},
};
use kube::{
    Api, Client, ResourceExt,
    api::{ListParams, Patch, PatchParams},
};
use serde_json::json;
use support::{
    MANAGED, Operator, cluster, eventually, label_managed, namespace, settings, wait_for,
};

async fn project_settings(client: &Client, ns: &str) -> Option<ProjectSettings> {
    Api::<ProjectSettings>::namespaced(client.clone(), ns)
        .get_opt("projectsettings")
        .await
        .unwrap()
}

async fn set_group_access(client: &Client, ns: &str, entries: serde_json::Value) {
    Api::<ProjectSettings>::namespaced(client.clone(), ns)
        .patch(
            "projectsettings",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"groupAccess": entries}})),
        )
        .await
        .unwrap();
}

async fn binding_names(client: &Client, ns: &str) -> Vec<String> {
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

fn ready_condition(ps: &ProjectSettings) -> Option<(String, String, String, Option<i64>)> {
    ps.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| {
            (
                c.status.clone(),
                c.reason.clone(),
                c.message.clone(),
                c.observed_generation,
            )
        })
}

/// Waits until the object's status reports `bindings` group bindings and a `Ready=True`
/// condition for its current generation.
async fn wait_ready(client: &Client, ns: &str, bindings: i64) -> ProjectSettings {
    wait_for(
        &format!("{ns}/projectsettings Ready with {bindings} bindings"),
        || async {
            let ps = project_settings(client, ns).await?;
            let status = ps.status.as_ref()?;
            let (ready, _, _, generation) = ready_condition(&ps)?;
            (ready == "True"
                && generation == ps.metadata.generation
                && status.group_bindings_created == Some(bindings)
                && status.scheduled_session_rbac_ready == Some(true)
                && status.limit_range_ready == Some(true))
            .then_some(ps)
        },
    )
    .await
}

async fn event_reasons(client: &Client, ns: &str) -> Vec<(String, String)> {
    Api::<Event>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::too_many_lines)]
async fn managed_namespace_gets_project_rbac_limits_and_status() {
    let cluster = cluster(false).await;
    let client = cluster.client();
    let operator = Operator::start(client.clone(), settings("op", |_| {}));

    namespace(&client, "team-a", &[MANAGED]).await;
    let ps = wait_ready(&client, "team-a", 0).await;
    assert_eq!(
        ps.spec.group_access,
        vec![],
        "the default object has no groups"
    );
    // `kubectl get projectsettings -o wide` shows the Ready condition and its reason.
    assert_eq!(
        support::printed_columns("projectsettings.vteam.ambient-code", &ps),
        [
            ("Ready", "True"),
            ("Reason", "Reconciled"),
            ("Bindings", "0"),
            (
                "Age",
                ps.metadata
                    .creation_timestamp
                    .as_ref()
                    .unwrap()
                    .0
                    .to_string()
                    .as_str()
            ),
        ]
        .map(|(c, v)| (c.to_owned(), v.to_owned()))
    );
    let uid = ps.uid().unwrap();

    let owned_by_ps =
        |owners: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference]| {
            owners
                .iter()
                .any(|o| o.uid == uid && o.controller == Some(true) && o.kind == "ProjectSettings")
        };
    let sa = Api::<ServiceAccount>::namespaced(client.clone(), "team-a")
        .get("ambient-session-trigger")
        .await
        .unwrap();
    assert!(owned_by_ps(sa.owner_references()));
    let trigger_role = Api::<Role>::namespaced(client.clone(), "team-a")
        .get("ambient-session-trigger")
        .await
        .unwrap();
    assert!(owned_by_ps(trigger_role.owner_references()));
    let rule = &trigger_role.rules.as_ref().unwrap()[0];
    assert_eq!(
        rule.api_groups.as_ref().unwrap(),
        &vec!["vteam.ambient-code"]
    );
    assert_eq!(rule.resources.as_ref().unwrap(), &vec!["agenticsessions"]);
    assert_eq!(rule.verbs, vec!["create", "get", "list", "update"]);
    let rb = Api::<RoleBinding>::namespaced(client.clone(), "team-a")
        .get("ambient-session-trigger")
        .await
        .unwrap();
    assert!(owned_by_ps(rb.owner_references()));
    assert_eq!(rb.role_ref.kind, "Role");
    assert_eq!(rb.role_ref.name, "ambient-session-trigger");
    let subject = &rb.subjects.as_ref().unwrap()[0];
    assert_eq!(
        (
            subject.kind.as_str(),
            subject.name.as_str(),
            subject.namespace.as_deref()
        ),
        ("ServiceAccount", "ambient-session-trigger", Some("team-a"))
    );
    let limits = Api::<LimitRange>::namespaced(client.clone(), "team-a")
        .get("ambient-default-limits")
        .await
        .unwrap();
    let item = &limits.spec.as_ref().unwrap().limits[0];
    assert_eq!(item.type_, "Container");
    assert_eq!(item.default_request.as_ref().unwrap()["cpu"].0, "250m");
    assert_eq!(item.default_request.as_ref().unwrap()["memory"].0, "256Mi");
    assert_eq!(item.default.as_ref().unwrap()["cpu"].0, "2");
    assert_eq!(item.default.as_ref().unwrap()["memory"].0, "4Gi");

    // Grant three groups; one name needs making safe.
    set_group_access(
        &client,
        "team-a",
        json!([
            {"groupName": "devs", "role": "edit"},
            {"groupName": "ops", "role": "admin"},
            {"groupName": "org/readers", "role": "view"},
        ]),
    )
    .await;
    let ps = wait_ready(&client, "team-a", 3).await;
    let names = binding_names(&client, "team-a").await;
    assert_eq!(names.len(), 3, "{names:?}");
    assert!(names.contains(&"devs-edit".to_owned()), "{names:?}");
    assert!(names.contains(&"ops-admin".to_owned()), "{names:?}");
    assert!(
        names.iter().any(|n| n.starts_with("org-readers-view-")),
        "{names:?}"
    );
    let ops = Api::<RoleBinding>::namespaced(client.clone(), "team-a")
        .get("ops-admin")
        .await
        .unwrap();
    assert_eq!(ops.role_ref.kind, "ClusterRole");
    assert_eq!(ops.role_ref.name, "ambient-project-admin");
    let subject = &ops.subjects.as_ref().unwrap()[0];
    assert_eq!(
        (subject.kind.as_str(), subject.name.as_str()),
        ("Group", "ops")
    );
    assert_eq!(ops.labels()["ambient-code.io/managed"], "true");
    assert!(owned_by_ps(ops.owner_references()));
    assert_eq!(
        ready_condition(&ps).unwrap().3,
        ps.metadata.generation,
        "the condition carries the generation it describes"
    );

    // Change a role and drop two groups: the old bindings must go (upstream keeps them).
    set_group_access(
        &client,
        "team-a",
        json!([{"groupName": "devs", "role": "view"}]),
    )
    .await;
    wait_ready(&client, "team-a", 1).await;
    eventually("stale group bindings to be pruned", || async {
        binding_names(&client, "team-a").await == vec!["devs-view".to_owned()]
    })
    .await;

    // A hand edit of an owned binding is undone.
    Api::<RoleBinding>::namespaced(client.clone(), "team-a")
        .patch(
            "devs-view",
            &PatchParams::default(),
            &Patch::Merge(json!({"subjects": [
                {"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "devs"},
                {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "mallory"},
            ]})),
        )
        .await
        .unwrap();
    eventually("the extra subject to be removed", || async {
        let rb = Api::<RoleBinding>::namespaced(client.clone(), "team-a")
            .get("devs-view")
            .await
            .unwrap();
        rb.subjects
            .is_some_and(|s| s.len() == 1 && s[0].name == "devs")
    })
    .await;

    // A deleted trigger ServiceAccount comes back.
    Api::<ServiceAccount>::namespaced(client.clone(), "team-a")
        .delete(
            "ambient-session-trigger",
            &kube::api::DeleteParams::default(),
        )
        .await
        .unwrap();
    eventually("the trigger ServiceAccount to be recreated", || async {
        Api::<ServiceAccount>::namespaced(client.clone(), "team-a")
            .get_opt("ambient-session-trigger")
            .await
            .unwrap()
            .is_some()
    })
    .await;

    let reasons = event_reasons(&client, "team-a").await;
    assert!(
        reasons
            .iter()
            .any(|(r, n)| r == "Created" && n.contains("RoleBinding ops-admin")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|(r, n)| r == "Deleted" && n.contains("RoleBinding devs-edit")),
        "{reasons:?}"
    );
    assert_eq!(
        operator.metric(
            "controller_runtime_reconcile_errors_total",
            &[("controller", "projectsettings")]
        ),
        0
    );
    operator.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_managed_namespaces_are_reconciled_and_user_objects_are_kept() {
    let cluster = cluster(false).await;
    let client = cluster.client();
    namespace(&client, "plain", &[]).await;
    namespace(&client, "later", &[("ambient-code.io/managed", "false")]).await;
    // A user-made ProjectSettings in a namespace that is not managed yet.
    Api::<ProjectSettings>::namespaced(client.clone(), "plain")
        .create(
            &kube::api::PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "vteam.ambient-code/v1alpha1", "kind": "ProjectSettings",
                "metadata": {"name": "projectsettings", "namespace": "plain"},
                "spec": {"groupAccess": [{"groupName": "devs", "role": "edit"}],
                         "inactivityTimeoutSeconds": 600}
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let operator = Operator::start(client.clone(), settings("op", |_| {}));

    // A managed namespace converging proves the controllers have seen everything before it.
    namespace(&client, "team-b", &[MANAGED]).await;
    wait_ready(&client, "team-b", 0).await;
    assert!(
        project_settings(&client, "later").await.is_none(),
        "no default ProjectSettings outside managed namespaces"
    );
    let plain = project_settings(&client, "plain").await.unwrap();
    assert!(plain.status.is_none(), "unmanaged: no status written");
    assert!(binding_names(&client, "plain").await.is_empty());
    assert!(
        Api::<ServiceAccount>::namespaced(client.clone(), "plain")
            .get_opt("ambient-session-trigger")
            .await
            .unwrap()
            .is_none()
    );

    // Labelled later: the user's object is adopted as it is, never replaced.
    label_managed(&client, "plain").await;
    let plain = wait_ready(&client, "plain", 1).await;
    assert_eq!(plain.spec.group_access.len(), 1);
    assert_eq!(plain.spec.inactivity_timeout_seconds, Some(600));
    assert_eq!(binding_names(&client, "plain").await, vec!["devs-edit"]);

    // Labelled later without an object: the default appears.
    label_managed(&client, "later").await;
    let later = wait_ready(&client, "later", 0).await;
    assert!(later.spec.group_access.is_empty());

    // Deleting the object in a managed namespace brings the default back.
    Api::<ProjectSettings>::namespaced(client.clone(), "later")
        .delete("projectsettings", &kube::api::DeleteParams::default())
        .await
        .unwrap();
    eventually("the default ProjectSettings to be recreated", || async {
        project_settings(&client, "later")
            .await
            .is_some_and(|ps| ps.uid() != later.uid())
    })
    .await;
    operator.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_group_access_is_a_condition_and_event_without_retries() {
    let cluster = cluster(false).await;
    let client = cluster.client();
    let operator = Operator::start(client.clone(), settings("op", |_| {}));
    namespace(&client, "team-c", &[MANAGED]).await;
    wait_ready(&client, "team-c", 0).await;
    set_group_access(
        &client,
        "team-c",
        json!([{"groupName": "devs", "role": "edit"}]),
    )
    .await;
    wait_ready(&client, "team-c", 1).await;

    set_group_access(
        &client,
        "team-c",
        json!([
            {"groupName": "devs", "role": "edit"},
            {"groupName": "devs", "role": "admin"},
        ]),
    )
    .await;
    let (_, reason, message, _) = wait_for("the InvalidSpec condition", || async {
        let ps = project_settings(&client, "team-c").await?;
        ready_condition(&ps).filter(|(status, reason, _, generation)| {
            status == "False" && reason == "InvalidSpec" && *generation == ps.metadata.generation
        })
    })
    .await;
    assert_eq!(reason, "InvalidSpec");
    assert!(
        message.contains("spec.groupAccess[1].groupName"),
        "the message names the field: {message}"
    );
    eventually("a Warning Event naming the field", || async {
        event_reasons(&client, "team-c")
            .await
            .iter()
            .any(|(r, n)| r == "InvalidSpec" && n.contains("spec.groupAccess[1].groupName"))
    })
    .await;
    eventually("the invalid spec to count as a terminal error", || async {
        operator.metric(
            "controller_runtime_terminal_reconcile_errors_total",
            &[("controller", "projectsettings")],
        ) >= 1
    })
    .await;
    assert_eq!(
        operator.metric("workqueue_retries_total", &[("name", "projectsettings")]),
        0,
        "an invalid spec waits for a change instead of being retried"
    );
    // The bindings of the last valid spec stay while the spec is invalid.
    assert_eq!(binding_names(&client, "team-c").await, vec!["devs-edit"]);

    set_group_access(
        &client,
        "team-c",
        json!([{"groupName": "devs", "role": "admin"}]),
    )
    .await;
    wait_ready(&client, "team-c", 1).await;
    eventually("the fixed spec to converge", || async {
        binding_names(&client, "team-c").await == vec!["devs-admin".to_owned()]
    })
    .await;
    operator.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn converged_project_makes_no_writes() {
    let cluster = cluster(false).await;
    let client = cluster.client();
    let operator = Operator::start(client.clone(), settings("op", |_| {}));
    namespace(&client, "team-d", &[MANAGED]).await;
    wait_ready(&client, "team-d", 0).await;
    set_group_access(
        &client,
        "team-d",
        json!([{"groupName": "devs", "role": "edit"}]),
    )
    .await;
    wait_ready(&client, "team-d", 1).await;
    eventually("the binding to exist", || async {
        binding_names(&client, "team-d").await == vec!["devs-edit".to_owned()]
    })
    .await;
    // Let the reconciles triggered by our own writes run out: no write and no reconcile for
    // over a second (a reconcile that ran before the binding's watch event reached the cache
    // may still re-apply it).
    let mut last = (u64::MAX, u64::MAX);
    eventually("the controller to settle", || {
        let now = (
            cluster.stats().writes,
            operator.metric(
                "controller_runtime_reconcile_total",
                &[("controller", "projectsettings")],
            ),
        );
        let settled = now == last;
        last = now;
        async move {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            settled
        }
    })
    .await;

    let writes = cluster.stats().writes;
    let reconciles = operator.metric(
        "controller_runtime_reconcile_total",
        &[("controller", "projectsettings")],
    );
    // One write of ours that changes nothing the controller manages triggers a reconcile.
    Api::<ProjectSettings>::namespaced(client.clone(), "team-d")
        .patch(
            "projectsettings",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"touched": "yes"}}})),
        )
        .await
        .unwrap();
    eventually("the reconcile of the touched object", || async {
        operator.metric(
            "controller_runtime_reconcile_total",
            &[("controller", "projectsettings")],
        ) > reconciles
    })
    .await;
    assert_eq!(
        cluster.stats().writes,
        writes + 1,
        "a converged ProjectSettings must cause no writes"
    );
    operator.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_objects_are_adopted_or_kept_and_watch_failures_are_survived() {
    let cluster = cluster(false).await;
    let client = cluster.client();
    namespace(&client, "team-e", &[]).await;
    // What the previous operator and an administrator left behind.
    let limits: LimitRange = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "LimitRange",
        "metadata": {"name": "ambient-default-limits", "namespace": "team-e"},
        "spec": {"limits": [{"type": "Container",
                             "defaultRequest": {"cpu": "500m", "memory": "1Gi"},
                             "default": {"cpu": "4", "memory": "8Gi"}}]}
    }))
    .unwrap();
    Api::<LimitRange>::namespaced(client.clone(), "team-e")
        .create(&kube::api::PostParams::default(), &limits)
        .await
        .unwrap();
    for (name, group, role) in [("devs-edit", "devs", "edit"), ("old-view", "old", "view")] {
        let binding: RoleBinding = serde_json::from_value(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": name, "namespace": "team-e",
                         "labels": {"ambient-code.io/managed": "true"}},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": format!("ambient-project-{role}")},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group",
                          "name": group}]
        }))
        .unwrap();
        Api::<RoleBinding>::namespaced(client.clone(), "team-e")
            .create(&kube::api::PostParams::default(), &binding)
            .await
            .unwrap();
    }
    Api::<ProjectSettings>::namespaced(client.clone(), "team-e")
        .create(
            &kube::api::PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "vteam.ambient-code/v1alpha1", "kind": "ProjectSettings",
                "metadata": {"name": "projectsettings", "namespace": "team-e"},
                "spec": {"groupAccess": [{"groupName": "devs", "role": "edit"}]}
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let operator = Operator::start(client.clone(), settings("op", |_| {}));
    label_managed(&client, "team-e").await;
    let ps = wait_ready(&client, "team-e", 1).await;

    // The administrator's LimitRange stays as it is.
    let limits = Api::<LimitRange>::namespaced(client.clone(), "team-e")
        .get("ambient-default-limits")
        .await
        .unwrap();
    let item = &limits.spec.unwrap().limits[0];
    assert_eq!(item.default_request.as_ref().unwrap()["cpu"].0, "500m");
    assert_eq!(item.default.as_ref().unwrap()["memory"].0, "8Gi");
    // The binding still in the spec is adopted; the other one is not ours to delete.
    let rbs = Api::<RoleBinding>::namespaced(client.clone(), "team-e");
    eventually("devs-edit to be adopted", || async {
        rbs.get("devs-edit")
            .await
            .unwrap()
            .owner_references()
            .iter()
            .any(|o| Some(&o.uid) == ps.metadata.uid.as_ref() && o.controller == Some(true))
    })
    .await;

    // Watches cut and resource versions expired: the controllers re-list and carry on.
    cluster.cut_watches();
    cluster.expire_resource_versions();
    namespace(&client, "team-f", &[MANAGED]).await;
    wait_ready(&client, "team-f", 0).await;
    set_group_access(&client, "team-e", json!([])).await;
    wait_ready(&client, "team-e", 0).await;
    eventually("the adopted binding to be pruned", || async {
        rbs.get_opt("devs-edit").await.unwrap().is_none()
    })
    .await;
    assert!(
        rbs.get_opt("old-view").await.unwrap().is_some(),
        "a binding no ProjectSettings controls is never deleted"
    );
    operator.stop().await.unwrap();
}

/// A `ProjectSettings` stored under a looser CRD schema with a `groupAccess` that is not a
/// list becomes an `InvalidSpec` condition naming the field on that object; the
/// `ProjectSettings` of other namespaces are reconciled as usual (before, the object failed
/// the controller's whole list and no `ProjectSettings` in the cluster was reconciled).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_access_of_the_wrong_shape_fails_only_its_object() {
    let cluster = cluster(false).await;
    let client = cluster.client();
    namespace(&client, "team-x", &[MANAGED]).await;
    let ar = support::api_resource(
        agentic_api::sessions::GROUP,
        agentic_api::sessions::VERSION,
        "ProjectSettings",
        "projectsettings",
    );
    support::loosen_spec_schema_and_create(
        &client,
        "projectsettings.vteam.ambient-code",
        &ar,
        Some("team-x"),
        json!({"apiVersion": "vteam.ambient-code/v1alpha1", "kind": "ProjectSettings",
            "metadata": {"name": "projectsettings"}, "spec": {"groupAccess": "everyone"}}),
    )
    .await;
    let operator = Operator::start(client.clone(), settings("op", |_| {}));
    namespace(&client, "team-y", &[MANAGED]).await;
    wait_ready(&client, "team-y", 0).await;
    set_group_access(
        &client,
        "team-y",
        json!([{"groupName": "devs", "role": "edit"}]),
    )
    .await;
    wait_ready(&client, "team-y", 1).await;

    let (_, _, message, _) = wait_for("the InvalidSpec condition on team-x", || async {
        let ps = support::get_object(&client, &ar, "team-x", "projectsettings").await?;
        let ps: ProjectSettings = serde_json::from_value(json!({
            "metadata": ps["metadata"], "spec": {"groupAccess": []}, "status": ps["status"]
        }))
        .ok()?;
        ready_condition(&ps).filter(|(status, reason, _, generation)| {
            status == "False" && reason == "InvalidSpec" && *generation == ps.metadata.generation
        })
    })
    .await;
    assert!(
        message.contains(
            "spec.groupAccess: must be a list of {groupName, role} entries; found a string"
        ),
        "{message}"
    );
    assert!(binding_names(&client, "team-x").await.is_empty());
    operator.stop().await.unwrap();
}
