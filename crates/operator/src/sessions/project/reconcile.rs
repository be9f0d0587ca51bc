//! The `ProjectSettings` reconcile: observe (caches), validate, build, apply (server-side
//! apply, skipping unchanged objects, pruning stale group `RoleBindings`) and status.

use std::{collections::BTreeSet, fmt::Debug, sync::Arc};

use k8s_openapi::{
    NamespaceResourceScope,
    api::{
        core::v1::{LimitRange, ObjectReference, ServiceAccount},
        rbac::v1::{Role, RoleBinding},
    },
    apimachinery::pkg::apis::meta::v1::Time,
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{DeleteParams, Patch, PatchParams, PostParams},
    runtime::{
        controller::Action,
        events::{Event, EventType, Recorder},
        reflector::{ObjectRef, Store},
    },
};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

use agentic_api::sessions::{LABEL_MANAGED_NAMESPACE, ProjectSettingsStatus};

use super::{
    build::{self, Desired, FIELD_MANAGER, LABEL_PROJECT_RBAC, RBAC_GROUP},
    error::ProjectError,
    model::{InvalidSpec, ProjectSettingsView, validate},
    status::{Outcome, desired_status},
};
use crate::runtime::controller::REASON_RECONCILE_FAILED;
use crate::runtime::watches::{CACHE_SYNC_RECHECK, synced};

/// What the `ProjectSettings` reconcile reads and writes through.
pub struct Context {
    /// Kubernetes client.
    pub client: Client,
    /// Event recorder of the controller.
    pub recorder: Arc<Recorder>,
    /// Managed namespaces (label `ambient-code.io/managed=true`).
    pub namespaces: Store<super::NamespaceMeta>,
    /// Owned `RoleBindings`.
    pub role_bindings: Store<RoleBinding>,
    /// Owned Roles.
    pub roles: Store<Role>,
    /// Owned `ServiceAccounts`.
    pub service_accounts: Store<ServiceAccount>,
    /// `LimitRanges` named `ambient-default-limits`.
    pub limit_ranges: Store<LimitRange>,
}

impl Context {
    /// Whether every cache the reconcile reads has finished its initial list.
    pub fn caches_synced(&self) -> bool {
        synced(&self.namespaces)
            && synced(&self.role_bindings)
            && synced(&self.roles)
            && synced(&self.service_accounts)
            && synced(&self.limit_ranges)
    }
}

/// One write the reconcile made, reported as an Event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// `Created`, `Updated` or `Deleted`.
    pub verb: &'static str,
    /// Kind of the object.
    pub kind: String,
    /// Its name.
    pub name: String,
    /// Its API version (for the Event's `related` object).
    pub api_version: String,
}

impl Change {
    fn of<K: Resource<DynamicType = ()>>(verb: &'static str, name: &str) -> Self {
        Self {
            verb,
            kind: K::kind(&()).into_owned(),
            name: name.to_owned(),
            api_version: K::api_version(&()).into_owned(),
        }
    }

    fn related(&self, namespace: &str) -> ObjectReference {
        ObjectReference {
            api_version: Some(self.api_version.clone()),
            kind: Some(self.kind.clone()),
            name: Some(self.name.clone()),
            namespace: Some(namespace.to_owned()),
            ..ObjectReference::default()
        }
    }
}

/// Whether `namespace` carries `ambient-code.io/managed=true` in the namespace cache.
pub fn is_managed(namespaces: &Store<super::NamespaceMeta>, namespace: &str) -> bool {
    namespaces
        .get(&ObjectRef::new(namespace))
        .is_some_and(|ns| {
            ns.labels().get(LABEL_MANAGED_NAMESPACE).map(String::as_str) == Some("true")
        })
}

/// Whether the live object already has everything `desired` sets.
///
/// Metadata: desired labels are present with the same values and the desired owner references
/// are among the live ones. Everything else: desired fields equal the live ones, where maps
/// compare key by key (extra live keys, such as server defaults, are fine) and lists must have
/// the same length and match item by item.
pub fn matches<K: Serialize>(live: &K, desired: &K) -> bool {
    let (Ok(live), Ok(desired)) = (serde_json::to_value(live), serde_json::to_value(desired))
    else {
        return false;
    };
    let (Some(live), Some(desired)) = (live.as_object(), desired.as_object()) else {
        return false;
    };
    for (key, want) in desired {
        if key == "metadata" {
            let have = live.get("metadata").cloned().unwrap_or(Value::Null);
            if !metadata_matches(&have, want) {
                return false;
            }
        } else if !contains(live.get(key).unwrap_or(&Value::Null), want) {
            return false;
        }
    }
    true
}

fn metadata_matches(live: &Value, desired: &Value) -> bool {
    if !contains(
        live.get("labels").unwrap_or(&Value::Null),
        desired.get("labels").unwrap_or(&Value::Null),
    ) {
        return false;
    }
    let live_owners = live
        .get("ownerReferences")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    desired
        .get("ownerReferences")
        .and_then(Value::as_array)
        .is_none_or(|want| {
            want.iter()
                .all(|w| live_owners.iter().any(|have| contains(have, w)))
        })
}

fn contains(live: &Value, desired: &Value) -> bool {
    match (live, desired) {
        (_, Value::Null) => true,
        (Value::Object(have), Value::Object(want)) => want
            .iter()
            .all(|(k, w)| contains(have.get(k).unwrap_or(&Value::Null), w)),
        (Value::Array(have), Value::Array(want)) => {
            have.len() == want.len() && have.iter().zip(want).all(|(h, w)| contains(h, w))
        }
        (have, want) => have == want,
    }
}

fn lookup<K>(store: &Store<K>, namespace: &str, name: &str) -> Option<Arc<K>>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    store.get(&ObjectRef::new(name).within(namespace))
}

fn write_error(
    verb: &'static str,
    kind: &str,
    namespace: &str,
    name: &str,
    source: kube::Error,
) -> ProjectError {
    ProjectError::Write {
        verb,
        kind: kind.to_owned(),
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        source: Box::new(source),
    }
}

/// Server-side applies `desired` unless `live` already matches it.
async fn apply<K>(
    client: &Client,
    live: Option<&K>,
    desired: &K,
    changes: &mut Vec<Change>,
) -> Result<(), ProjectError>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + Serialize
        + DeserializeOwned
        + Debug,
{
    if live.is_some_and(|live| matches(live, desired)) {
        return Ok(());
    }
    let namespace = desired.namespace().unwrap_or_default();
    let name = desired.name_any();
    let kind = K::kind(&()).into_owned();
    let api: Api<K> = Api::namespaced(client.clone(), &namespace);
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(desired),
    )
    .await
    .map_err(|e| write_error("apply", &kind, &namespace, &name, e))?;
    changes.push(Change::of::<K>(
        if live.is_some() { "Updated" } else { "Created" },
        &name,
    ));
    Ok(())
}

async fn delete<K>(
    client: &Client,
    namespace: &str,
    name: &str,
    changes: &mut Vec<Change>,
) -> Result<(), ProjectError>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug,
{
    let kind = K::kind(&()).into_owned();
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 404 => return Ok(()),
        Err(e) => return Err(write_error("delete", &kind, namespace, name, e)),
    }
    changes.push(Change::of::<K>("Deleted", name));
    Ok(())
}

/// Applies the desired objects, prunes stale group `RoleBindings`, and creates the `LimitRange`
/// when none exists.
async fn apply_all(
    ctx: &Context,
    namespace: &str,
    owner_uid: &str,
    desired: &Desired,
    changes: &mut Vec<Change>,
) -> Result<(), ProjectError> {
    let client = &ctx.client;
    for binding in &desired.group_bindings {
        let name = binding.name_any();
        let live = lookup(&ctx.role_bindings, namespace, &name);
        if let Some(live) = &live
            && live.role_ref != binding.role_ref
        {
            // roleRef cannot change in place.
            delete::<RoleBinding>(client, namespace, &name, changes).await?;
            apply(client, None, binding, changes).await?;
            continue;
        }
        apply(client, live.as_deref(), binding, changes).await?;
    }
    let wanted: BTreeSet<String> = desired
        .group_bindings
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    let stale: Vec<String> = owned_group_bindings(ctx, namespace, owner_uid)
        .into_iter()
        .filter(|name| !wanted.contains(name))
        .collect();
    for name in stale {
        delete::<RoleBinding>(client, namespace, &name, changes).await?;
    }

    let sa = &desired.trigger_service_account;
    let live_sa = lookup(&ctx.service_accounts, namespace, &sa.name_any());
    apply(client, live_sa.as_deref(), sa, changes).await?;
    let role = &desired.trigger_role;
    let live_role = lookup(&ctx.roles, namespace, &role.name_any());
    apply(client, live_role.as_deref(), role, changes).await?;
    let binding = &desired.trigger_binding;
    let live_binding = lookup(&ctx.role_bindings, namespace, &binding.name_any());
    apply(client, live_binding.as_deref(), binding, changes).await?;

    // The LimitRange is created once and then left to the namespace's administrators.
    let limits = &desired.limit_range;
    if lookup(&ctx.limit_ranges, namespace, &limits.name_any()).is_none() {
        let api: Api<LimitRange> = Api::namespaced(client.clone(), namespace);
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PostParams::default()
        };
        match api.create(&params, limits).await {
            Ok(_) => changes.push(Change::of::<LimitRange>("Created", &limits.name_any())),
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(e) => {
                return Err(write_error(
                    "create",
                    "LimitRange",
                    namespace,
                    &limits.name_any(),
                    e,
                ));
            }
        }
    }
    Ok(())
}

/// Group `RoleBindings` in `namespace` controlled by the object with `owner_uid`, by name.
fn owned_group_bindings(ctx: &Context, namespace: &str, owner_uid: &str) -> Vec<String> {
    ctx.role_bindings
        .state()
        .into_iter()
        .filter(|rb| rb.namespace().as_deref() == Some(namespace))
        .filter(|rb| rb.labels().get(LABEL_PROJECT_RBAC).map(String::as_str) == Some(RBAC_GROUP))
        .filter(|rb| {
            rb.owner_references()
                .iter()
                .any(|o| o.controller == Some(true) && o.uid == owner_uid)
        })
        .map(|rb| rb.name_any())
        .collect()
}

/// The outcome as the caches show it (used when the reconcile stopped early).
fn observed_outcome(
    ctx: &Context,
    namespace: &str,
    owner_uid: &str,
    problem: (String, String),
) -> Outcome {
    let trigger = build::SESSION_TRIGGER;
    Outcome {
        group_bindings: owned_group_bindings(ctx, namespace, owner_uid).len(),
        trigger_rbac_ready: lookup(&ctx.service_accounts, namespace, trigger).is_some()
            && lookup(&ctx.roles, namespace, trigger).is_some()
            && lookup(&ctx.role_bindings, namespace, trigger).is_some(),
        limit_range_ready: lookup(&ctx.limit_ranges, namespace, build::LIMIT_RANGE).is_some(),
        problem: Some(problem),
    }
}

fn now() -> Time {
    Time(jiff::Timestamp::now())
}

/// Patches `status` when it differs from what the object has. Returns whether it wrote.
async fn write_status(
    ctx: &Context,
    ps: &ProjectSettingsView,
    status: &ProjectSettingsStatus,
) -> Result<bool, ProjectError> {
    if ps.status.as_ref() == Some(status) {
        return Ok(false);
    }
    let namespace = ps.namespace().unwrap_or_default();
    let name = ps.name_any();
    let api: Api<ProjectSettingsView> = Api::namespaced(ctx.client.clone(), &namespace);
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    api.patch_status(
        &name,
        &params,
        &Patch::Merge(serde_json::json!({ "status": status })),
    )
    .await
    .map_err(|source| ProjectError::Status {
        namespace,
        name,
        source: Box::new(source),
    })?;
    Ok(true)
}

async fn publish(ctx: &Context, ps: &ProjectSettingsView, event: Event) {
    crate::runtime::events::publish(&ctx.recorder, &event, &ps.object_ref(&())).await;
}

/// Records an invalid spec: a `Ready=False/InvalidSpec` condition, and a Warning Event when
/// the status changed (so a spec that stays wrong does not repeat it). Returns the permanent
/// error the reconcile ends with; a status write failure is returned instead (and retried).
async fn report_invalid(
    ctx: &Context,
    ps: &ProjectSettingsView,
    namespace: &str,
    problems: InvalidSpec,
) -> ProjectError {
    let owner_uid = ps.uid().unwrap_or_default();
    let outcome = observed_outcome(
        ctx,
        namespace,
        &owner_uid,
        ("InvalidSpec".into(), problems.to_string()),
    );
    let status = desired_status(ps.status.as_ref(), &outcome, ps.meta().generation, now());
    match write_status(ctx, ps, &status).await {
        Ok(true) => {
            publish(
                ctx,
                ps,
                Event {
                    type_: EventType::Warning,
                    reason: "InvalidSpec".into(),
                    note: Some(truncate(&problems.to_string(), 1000)),
                    action: "Validate".into(),
                    secondary: None,
                },
            )
            .await;
        }
        Ok(false) => {}
        Err(error) => return error,
    }
    ProjectError::InvalidSpec {
        namespace: namespace.to_owned(),
        name: ps.name_any(),
        problems,
    }
}

/// Reconciles one `ProjectSettings`.
pub async fn reconcile(
    ps: Arc<ProjectSettingsView>,
    ctx: Arc<Context>,
) -> Result<Action, ProjectError> {
    let Some(namespace) = ps.namespace() else {
        return Ok(Action::await_change());
    };
    if ps.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    if !ctx.caches_synced() {
        // Until every cache has listed, empty ones would look like missing children (and an
        // unlisted namespace like an unmanaged one).
        return Ok(Action::requeue(CACHE_SYNC_RECHECK));
    }
    if !is_managed(&ctx.namespaces, &namespace) {
        tracing::debug!("namespace is not labelled {LABEL_MANAGED_NAMESPACE}=true; ignoring");
        return Ok(Action::await_change());
    }
    let Some(owner) = build::owner_reference(&ps) else {
        return Ok(Action::await_change());
    };
    let generation = ps.meta().generation;
    let previous = ps.status.as_ref();

    let grants = match validate(&ps.spec) {
        Ok(grants) => grants,
        Err(problems) => return Err(report_invalid(&ctx, &ps, &namespace, problems).await),
    };

    let desired = build::desired(&ps, &grants, &owner);
    let mut changes = Vec::new();
    let applied = apply_all(&ctx, &namespace, &owner.uid, &desired, &mut changes).await;
    for change in &changes {
        publish(
            &ctx,
            &ps,
            Event {
                type_: EventType::Normal,
                reason: change.verb.into(),
                note: Some(format!("{} {} {}", change.verb, change.kind, change.name)),
                action: "Reconcile".into(),
                secondary: Some(change.related(&namespace)),
            },
        )
        .await;
    }
    let outcome = match &applied {
        Ok(()) => Outcome {
            group_bindings: desired.group_bindings.len(),
            trigger_rbac_ready: true,
            limit_range_ready: true,
            problem: None,
        },
        Err(error) => {
            publish(
                &ctx,
                &ps,
                Event {
                    type_: EventType::Warning,
                    reason: REASON_RECONCILE_FAILED.into(),
                    note: Some(truncate(&error.to_string(), 1000)),
                    action: "Reconcile".into(),
                    secondary: None,
                },
            )
            .await;
            observed_outcome(
                &ctx,
                &namespace,
                &owner.uid,
                (REASON_RECONCILE_FAILED.into(), error.to_string()),
            )
        }
    };
    let status = desired_status(previous, &outcome, generation, now());
    let status_written = write_status(&ctx, &ps, &status).await;
    applied?;
    status_written?;
    Ok(Action::await_change())
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &text[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn subset_match_ignores_server_fields_but_not_list_changes() {
        let desired = json!({
            "metadata": {"name": "a", "labels": {"x": "1"},
                         "ownerReferences": [{"uid": "u", "controller": true}]},
            "roleRef": {"kind": "ClusterRole", "name": "r"},
            "subjects": [{"kind": "Group", "name": "g"}]
        });
        let mut live = json!({
            "metadata": {"name": "a", "uid": "z", "resourceVersion": "7",
                         "labels": {"x": "1", "other": "y"},
                         "ownerReferences": [{"uid": "other"},
                                             {"uid": "u", "controller": true, "kind": "P"}]},
            "roleRef": {"kind": "ClusterRole", "name": "r", "apiGroup": "rbac"},
            "subjects": [{"kind": "Group", "name": "g", "apiGroup": "rbac"}]
        });
        assert!(matches(&live, &desired));
        live["subjects"]
            .as_array_mut()
            .unwrap()
            .push(json!({"kind": "User", "name": "intruder"}));
        assert!(
            !matches(&live, &desired),
            "an extra subject must be removed"
        );
        live["subjects"].as_array_mut().unwrap().pop();
        live["metadata"]["labels"]["x"] = json!("2");
        assert!(
            !matches(&live, &desired),
            "a changed label must be restored"
        );
        live["metadata"]["labels"]["x"] = json!("1");
        live["metadata"]["ownerReferences"] = json!([]);
        assert!(
            !matches(&live, &desired),
            "a missing owner must be restored"
        );
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("abc", 10), "abc");
        assert_eq!(truncate("ééé", 3), "é…");
    }
}
