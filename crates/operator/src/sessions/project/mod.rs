//! The `ProjectSettings` and namespace controllers of the sessions family.
//!
//! * `namespace` watches namespaces labelled `ambient-code.io/managed=true` (only those) and
//!   gives each the default `ProjectSettings/projectsettings` when it has none
//!   ([`namespace`]).
//! * `projectsettings` keeps what a `ProjectSettings` in a managed namespace owns: one
//!   `RoleBinding` per `spec.groupAccess` entry (updated and pruned as the list changes), the
//!   `ambient-session-trigger` ServiceAccount/Role/RoleBinding for scheduled sessions, and the
//!   `ambient-default-limits` `LimitRange`; then its status ([`reconcile`]).
//!
//! Stages: [`model`] (view and validation), [`build`] (pure desired objects), [`reconcile`]
//! (apply, prune, status), [`status`] (pure status computation).

pub mod build;
pub mod error;
pub mod model;
pub mod namespace;
pub mod reconcile;
pub mod status;

use std::sync::Arc;

use futures::stream::select;

use agentic_api::sessions::{LABEL_MANAGED_NAMESPACE, PROJECT_SETTINGS_NAME};
use k8s_openapi::api::{
    core::v1::{LimitRange, Namespace, ServiceAccount},
    rbac::v1::{Role, RoleBinding},
};
use kube::{
    Api, ResourceExt,
    runtime::{reflector::ObjectRef, watcher},
};

use crate::runtime::{
    ControllerOptions, ControllerTask, FamilyError, RuntimeContext, SharedWatches, controller_task,
    controller_task_with,
};

use model::ProjectSettingsView;

/// Namespaces are cached as metadata only (the same watch the session controller uses).
pub type NamespaceMeta = kube::core::PartialObjectMeta<Namespace>;

/// Controller name of the `ProjectSettings` controller (metrics label, Events).
pub const PROJECT_SETTINGS_CONTROLLER: &str = "projectsettings";
/// Controller name of the namespace controller.
pub const NAMESPACE_CONTROLLER: &str = "namespace";

/// Label selector of the namespace watch.
pub fn managed_namespace_selector() -> String {
    format!("{LABEL_MANAGED_NAMESPACE}=true")
}

/// Builds the namespace and `ProjectSettings` controllers on the shared runtime.
pub fn controllers(
    rt: &RuntimeContext,
    watches: &mut SharedWatches,
) -> Result<Vec<ControllerTask>, FamilyError> {
    let client = rt.client.clone();
    let managed = watcher::Config::default().labels(&managed_namespace_selector());
    let children = watcher::Config::default().labels(build::CHILD_SELECTOR);

    let namespaces =
        watches.subscribe(Api::<NamespaceMeta>::all(client.clone()), managed.clone())?;
    let namespaces_for_ps =
        watches.subscribe(Api::<NamespaceMeta>::all(client.clone()), managed)?;
    let settings = watches.subscribe(
        Api::<ProjectSettingsView>::all(client.clone()),
        watcher::Config::default(),
    )?;
    let settings_for_ns = watches.subscribe(
        Api::<ProjectSettingsView>::all(client.clone()),
        watcher::Config::default(),
    )?;
    let role_bindings =
        watches.subscribe(Api::<RoleBinding>::all(client.clone()), children.clone())?;
    let role_bindings_gone =
        watches.deletions(Api::<RoleBinding>::all(client.clone()), children.clone())?;
    let roles = watches.subscribe(Api::<Role>::all(client.clone()), children.clone())?;
    let roles_gone = watches.deletions(Api::<Role>::all(client.clone()), children.clone())?;
    let service_accounts =
        watches.subscribe(Api::<ServiceAccount>::all(client.clone()), children.clone())?;
    let service_accounts_gone =
        watches.deletions(Api::<ServiceAccount>::all(client.clone()), children)?;
    let limits =
        watcher::Config::default().fields(&format!("metadata.name={}", build::LIMIT_RANGE));
    let limit_ranges = watches.subscribe(Api::<LimitRange>::all(client.clone()), limits.clone())?;
    let limit_ranges_gone = watches.deletions(Api::<LimitRange>::all(client.clone()), limits)?;
    let settings_gone = watches.deletions(
        Api::<ProjectSettingsView>::all(client.clone()),
        watcher::Config::default(),
    )?;

    let ps_ctx = Arc::new(reconcile::Context {
        client: client.clone(),
        recorder: rt.recorders.recorder(PROJECT_SETTINGS_CONTROLLER),
        namespaces: namespaces_for_ps.reader.clone(),
        role_bindings: role_bindings.reader.clone(),
        roles: roles.reader.clone(),
        service_accounts: service_accounts.reader.clone(),
        limit_ranges: limit_ranges.reader.clone(),
    });
    let ns_ctx = Arc::new(namespace::Context {
        client,
        recorder: rt.recorders.recorder(NAMESPACE_CONTROLLER),
        project_settings: settings_for_ns.reader.clone(),
    });

    // The ProjectSettings reconcile publishes its own `ReconcileFailed` Event (and sets the
    // condition) for every failure, so the runtime's would only repeat it.
    let ps_task = controller_task_with(
        rt,
        ControllerOptions {
            error_events: false,
            ..ControllerOptions::from_context(rt, PROJECT_SETTINGS_CONTROLLER)
        },
        settings,
        move |c| {
            // A deleted child is recreated: deletions trigger the owner like changes do.
            c.owns_shared_stream(select(role_bindings.stream, role_bindings_gone))
                .owns_shared_stream(select(roles.stream, roles_gone))
                .owns_shared_stream(select(service_accounts.stream, service_accounts_gone))
                .owns_shared_stream(select(limit_ranges.stream, limit_ranges_gone))
                .watches_shared_stream(namespaces_for_ps.stream, |ns: Arc<NamespaceMeta>| {
                    Some(ObjectRef::new(PROJECT_SETTINGS_NAME).within(&ns.name_any()))
                })
        },
        reconcile::reconcile,
        ps_ctx,
    );
    let ns_task = controller_task(
        rt,
        NAMESPACE_CONTROLLER,
        namespaces,
        move |c| {
            // A deleted ProjectSettings in a managed namespace is created again.
            let settings = select(settings_for_ns.stream, settings_gone);
            c.watches_shared_stream(settings, |ps: Arc<ProjectSettingsView>| {
                ps.namespace()
                    .map(|ns| ObjectRef::<NamespaceMeta>::new(&ns))
            })
        },
        namespace::reconcile,
        ns_ctx,
    );
    Ok(vec![ns_task, ps_task])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::{
        config::{Environment, RunArgs, Settings},
        events::EventRecorders,
        metrics::Metrics,
        probes::HealthState,
    };

    fn runtime() -> RuntimeContext {
        let (service, _handle) = tower_test::mock::pair::<
            http::Request<kube::client::Body>,
            http::Response<kube::client::Body>,
        >();
        let client = kube::Client::new(service, "default");
        let settings = Settings::resolve(
            &RunArgs::default(),
            &Environment::fixed([("POD_NAME", "t")], None),
        )
        .unwrap();
        RuntimeContext {
            recorders: EventRecorders::new(client.clone(), "t"),
            client,
            settings: Arc::new(settings),
            metrics: Metrics::new(),
            health: HealthState::new(),
            leading: tokio::sync::watch::channel(true).1,
            shutdown: tokio_util::sync::CancellationToken::new(),
        }
    }

    /// Upstream watched every namespace in the cluster (and was OOM-killed at scale); here the
    /// only namespace watch is label-selected, metadata-only and shared with the session
    /// controller, and owned objects are watched by label.
    #[tokio::test]
    async fn watches_are_selected_and_shared_with_the_session_controller() {
        let rt = runtime();
        let mut watches = SharedWatches::default();
        let tasks = controllers(&rt, &mut watches).unwrap();
        assert_eq!(tasks.len(), 2);
        let ours = watches.len();
        let sessions = crate::sessions::session::controllers(&rt, &mut watches).unwrap();
        assert!(!sessions.is_empty());
        let keys = format!("{watches:?}");
        let namespace_watches: Vec<&str> = keys
            .split('"')
            .filter(|k| k.contains("/api/v1/namespaces|"))
            .collect();
        assert_eq!(namespace_watches.len(), 1, "{namespace_watches:?}");
        assert!(
            namespace_watches[0].contains("PartialObjectMeta")
                && namespace_watches[0].contains("labels=ambient-code.io/managed=true"),
            "{namespace_watches:?}"
        );
        for kind in ["rolebindings", "roles", "serviceaccounts"] {
            let selected = format!("/{kind}|labels={}|", build::CHILD_SELECTOR);
            assert!(keys.contains(&selected), "{kind} watched by label: {keys}");
            assert!(
                !keys.contains(&format!("/{kind}|labels=|fields=|")),
                "no unfiltered {kind} watch: {keys}"
            );
        }
        assert!(
            keys.contains("/limitranges|labels=|fields=metadata.name=ambient-default-limits"),
            "{keys}"
        );
        assert_eq!(ours, 6, "one watch per kind: {keys}");
    }
}
