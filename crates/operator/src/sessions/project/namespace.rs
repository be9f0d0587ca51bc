//! The namespace controller: every namespace labelled `ambient-code.io/managed=true` gets the
//! default `ProjectSettings` named `projectsettings` (with an empty `groupAccess`) when it has
//! none. An existing object, whoever made it, is never changed.

use std::sync::Arc;

use agentic_api::sessions::{
    LABEL_MANAGED_NAMESPACE, PROJECT_SETTINGS_NAME, ProjectSettings, ProjectSettingsSpec,
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::PostParams,
    runtime::{
        controller::Action,
        events::{Event, EventType, Recorder},
        reflector::{ObjectRef, Store},
    },
};

use super::{build::FIELD_MANAGER, error::ProjectError, model::ProjectSettingsView};
use crate::runtime::watches::{CACHE_SYNC_RECHECK, synced};

/// What the namespace reconcile reads and writes through.
pub struct Context {
    /// Kubernetes client.
    pub client: Client,
    /// Event recorder of the controller.
    pub recorder: Arc<Recorder>,
    /// Every `ProjectSettings`.
    pub project_settings: Store<ProjectSettingsView>,
}

/// The default object a managed namespace gets.
pub fn default_project_settings(namespace: &str) -> ProjectSettings {
    let mut ps = ProjectSettings::new(
        PROJECT_SETTINGS_NAME,
        ProjectSettingsSpec {
            group_access: Vec::new(),
            ..ProjectSettingsSpec::default()
        },
    );
    ps.metadata.namespace = Some(namespace.to_owned());
    ps
}

/// Reconciles one managed namespace.
pub async fn reconcile(
    ns: Arc<super::NamespaceMeta>,
    ctx: Arc<Context>,
) -> Result<Action, ProjectError> {
    let name = ns.name_any();
    let managed = ns.labels().get(LABEL_MANAGED_NAMESPACE).map(String::as_str) == Some("true");
    let terminating = ns.meta().deletion_timestamp.is_some();
    if !managed || terminating {
        return Ok(Action::await_change());
    }
    if !synced(&ctx.project_settings) {
        // Not listed yet: an empty cache would look like a missing ProjectSettings.
        return Ok(Action::requeue(CACHE_SYNC_RECHECK));
    }
    let key = ObjectRef::new(PROJECT_SETTINGS_NAME).within(&name);
    if ctx.project_settings.get(&key).is_some() {
        return Ok(Action::await_change());
    }
    let api: Api<ProjectSettings> = Api::namespaced(ctx.client.clone(), &name);
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PostParams::default()
    };
    match api.create(&params, &default_project_settings(&name)).await {
        Ok(created) => {
            tracing::info!(namespace = %name, "created the default ProjectSettings");
            let event = Event {
                type_: EventType::Normal,
                reason: "Created".into(),
                note: Some(format!(
                    "Created the default ProjectSettings for managed namespace {name}"
                )),
                action: "CreateDefault".into(),
                secondary: None,
            };
            crate::runtime::events::publish(&ctx.recorder, &event, &created.object_ref(&())).await;
        }
        // Made by someone else since the cache was read: theirs stays as it is.
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        // The namespace is going away.
        Err(kube::Error::Api(status)) if status.code == 404 => {}
        Err(source) => {
            return Err(ProjectError::Write {
                verb: "create",
                kind: "ProjectSettings".into(),
                namespace: name,
                name: PROJECT_SETTINGS_NAME.into(),
                source: Box::new(source),
            });
        }
    }
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_object_is_the_upstream_singleton() {
        let ps = default_project_settings("team-a");
        let value = serde_json::to_value(&ps).unwrap();
        assert_eq!(value["metadata"]["name"], "projectsettings");
        assert_eq!(value["metadata"]["namespace"], "team-a");
        assert_eq!(value["spec"], serde_json::json!({"groupAccess": []}));
        assert_eq!(value["apiVersion"], "vteam.ambient-code/v1alpha1");
    }

    /// A managed namespace reconciled before the `ProjectSettings` cache has listed (as after
    /// every restart) is looked at again shortly; nothing is created from the empty cache.
    /// Once the cache has listed and holds the object, the reconcile waits for a change.
    #[tokio::test]
    async fn an_unlisted_project_settings_cache_creates_nothing() {
        use http::{Request, Response};
        use kube::{
            client::Body,
            runtime::{reflector, watcher},
        };

        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(service, "default");
        let (store, mut writer) = reflector::store::<ProjectSettingsView>();
        let ctx = Arc::new(Context {
            client: client.clone(),
            recorder: crate::runtime::events::EventRecorders::new(client, "test")
                .recorder("namespace"),
            project_settings: store,
        });
        let ns: super::super::NamespaceMeta = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "team-a", "labels": {LABEL_MANAGED_NAMESPACE: "true"}}
        }))
        .unwrap();
        let ns = Arc::new(ns);

        // A request would never be answered, so a reconcile that sends one does not return.
        let action = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            reconcile(ns.clone(), ctx.clone()),
        )
        .await
        .expect("the reconcile sent a request")
        .unwrap();
        assert_eq!(action, Action::requeue(CACHE_SYNC_RECHECK));

        let existing: ProjectSettingsView = serde_json::from_value(serde_json::json!({
            "apiVersion": "vteam.ambient-code/v1alpha1", "kind": "ProjectSettings",
            "metadata": {"name": PROJECT_SETTINGS_NAME, "namespace": "team-a"},
            "spec": {"groupAccess": []}
        }))
        .unwrap();
        writer.apply_watcher_event(&watcher::Event::Init);
        writer.apply_watcher_event(&watcher::Event::InitApply(existing));
        writer.apply_watcher_event(&watcher::Event::InitDone);
        let action = reconcile(ns, ctx).await.unwrap();
        assert_eq!(action, Action::await_change());
        // The mock API server saw no request at all.
        assert!(
            futures::FutureExt::now_or_never(handle.next_request()).is_none(),
            "a request was sent"
        );
    }
}
