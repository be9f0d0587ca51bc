//! An Argo CD Application simulator (`argoproj.io/v1alpha1` `Application`): an Application
//! whose destination is the in-cluster server, or a server registered by a cluster Secret
//! (`argocd.argoproj.io/secret-type=cluster`) in the Application's namespace, becomes
//! `Synced`/`Healthy` after a scriptable delay and lists one Deployment per deployable source
//! in `status.resources`. When it syncs to the in-cluster server with the
//! `CreateNamespace=true` sync option, it creates the destination namespace if it is missing
//! (without labels, and never deletes it, as Argo CD does). An unregistered destination
//! reports `Unknown` with an
//! `InvalidSpecError` condition. The `resources-finalizer.argocd.argoproj.io` finalizer is
//! released only while the destination is still registered, as Argo CD needs the cluster to
//! delete what it deployed.
//!
//! Application annotations: `devcluster.io/ready-seconds` (default 0.1),
//! `devcluster.io/health` (default `Healthy`; e.g. `Degraded`) and `devcluster.io/sync`
//! (default `Synced`; e.g. `OutOfSync`).

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::discovery::ApiResource;
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};
use serde_json::{Value, json};

use super::SimError;
use super::crossplane::{KindCtx, run_kind};
use super::util::{Length, PREFIX, fmt_ts, seconds, since};

/// Argo CD's finalizer that deletes deployed resources with the Application.
pub const RESOURCES_FINALIZER: &str = "resources-finalizer.argocd.argoproj.io";
/// The in-cluster destination server.
pub const IN_CLUSTER: &str = "https://kubernetes.default.svc";
/// How often an Application waiting for its cluster is looked at again.
const RECHECK: Duration = Duration::from_millis(300);

/// `argoproj.io/v1alpha1` `Application`.
pub fn application_resource() -> ApiResource {
    ApiResource {
        group: "argoproj.io".into(),
        version: "v1alpha1".into(),
        api_version: "argoproj.io/v1alpha1".into(),
        kind: "Application".into(),
        plural: "applications".into(),
    }
}

/// Runs the Application simulator until the future is dropped; Applications without a
/// `devcluster.io/ready-seconds` annotation become Synced and healthy after `ready`.
pub async fn run(client: kube::Client, ready: Duration) {
    run_kind(client, application_resource(), "argocd", ready, reconcile).await;
}

fn annotation<'a>(o: &'a DynamicObject, key: &str) -> Option<&'a str> {
    o.annotations()
        .get(&format!("{PREFIX}{key}"))
        .map(|v| v.trim())
}

/// Whether `server` is the in-cluster server or registered by a cluster Secret in `ns`.
async fn registered(client: &kube::Client, ns: &str, server: &str) -> Result<bool, SimError> {
    if server == IN_CLUSTER {
        return Ok(true);
    }
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let list = secrets
        .list(&ListParams::default().labels("argocd.argoproj.io/secret-type=cluster"))
        .await?;
    Ok(list.items.iter().any(|s| {
        let from_data = s
            .data
            .as_ref()
            .and_then(|d| d.get("server"))
            .map(|b| String::from_utf8_lossy(&b.0).into_owned());
        let from_string = s
            .string_data
            .as_ref()
            .and_then(|d| d.get("server"))
            .cloned();
        from_data.or(from_string).as_deref() == Some(server)
            && s.metadata.deletion_timestamp.is_none()
    }))
}

/// One Deployment per source that deploys something (chart or path; `ref`-only sources
/// just provide values files), in the source's `helm.namespace` or `kustomize.namespace` when
/// it sets one, else in the destination namespace.
pub fn resources(app: &Value) -> Vec<Value> {
    let ns = app
        .pointer("/spec/destination/namespace")
        .and_then(Value::as_str)
        .unwrap_or("default");
    let mut sources: Vec<&Value> = app
        .pointer("/spec/sources")
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    if let Some(s) = app.pointer("/spec/source") {
        sources.push(s);
    }
    sources
        .into_iter()
        .filter_map(|s| {
            let name = s
                .pointer("/helm/releaseName")
                .and_then(Value::as_str)
                .or_else(|| s.get("chart").and_then(Value::as_str))
                .or_else(|| s.get("path").and_then(Value::as_str).and_then(|p| p.rsplit('/').next()))?;
            let ns = s
                .pointer("/helm/namespace")
                .or_else(|| s.pointer("/kustomize/namespace"))
                .and_then(Value::as_str)
                .unwrap_or(ns);
            Some(json!({"group": "apps", "version": "v1", "kind": "Deployment", "namespace": ns, "name": name, "status": "Synced", "health": {"status": "Healthy"}}))
        })
        .collect()
}

async fn reconcile(app: Arc<DynamicObject>, ctx: Arc<KindCtx>) -> Result<Action, SimError> {
    let ns = app.namespace().unwrap_or_default();
    let name = app.name_any();
    let api = ctx.api(&ns);
    let server = app
        .data
        .pointer("/spec/destination/server")
        .and_then(Value::as_str)
        .unwrap_or(IN_CLUSTER)
        .to_owned();
    let reachable = registered(&ctx.client, &ns, &server).await?;

    if app.meta().deletion_timestamp.is_some() {
        if !app.finalizers().iter().any(|f| f == RESOURCES_FINALIZER) {
            return Ok(Action::await_change());
        }
        if !reachable {
            // ArgoCD cannot delete resources on a cluster it no longer knows.
            return Ok(Action::requeue(RECHECK));
        }
        let rest: Vec<&String> = app
            .finalizers()
            .iter()
            .filter(|f| *f != RESOURCES_FINALIZER)
            .collect();
        api.patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": rest}})),
        )
        .await?;
        return Ok(Action::await_change());
    }

    let now = fmt_ts(Timestamp::now());
    let current = app.data.get("status").cloned().unwrap_or(Value::Null);
    let desired = if reachable {
        let delay = seconds(annotation(&app, "ready-seconds"), "ready-seconds")
            .unwrap_or(Length::For(ctx.delay));
        let created = app
            .metadata
            .creation_timestamp
            .as_ref()
            .map_or_else(Timestamp::now, |t| t.0);
        let remaining = match delay {
            Length::Forever => None,
            Length::For(d) => Some(d.saturating_sub(since(created))),
        };
        if remaining == Some(Duration::ZERO) {
            let health = annotation(&app, "health").unwrap_or("Healthy");
            let sync = annotation(&app, "sync").unwrap_or("Synced");
            json!({
                "health": {"status": health},
                "sync": {"status": sync},
                "resources": resources(&app.data),
                "operationState": {"phase": "Succeeded"},
            })
        } else {
            let status = json!({
                "health": {"status": "Progressing"},
                "sync": {"status": "OutOfSync"},
            });
            if !same(&current, &status) {
                write(&api, &name, status).await?;
            }
            return Ok(remaining.map_or_else(Action::await_change, Action::requeue));
        }
    } else {
        json!({
            "health": {"status": "Unknown"},
            "sync": {"status": "Unknown"},
            "conditions": [{"type": "InvalidSpecError", "message": format!("cluster {server} has not been registered"), "lastTransitionTime": now}],
        })
    };
    if !same(&current, &desired) {
        if reachable && server == IN_CLUSTER {
            create_namespace(&ctx.client, &app.data).await?;
        }
        let mut body = desired;
        body["reconciledAt"] = json!(now);
        write(&api, &name, body).await?;
    }
    Ok(if reachable {
        Action::await_change()
    } else {
        Action::requeue(RECHECK)
    })
}

/// Creates the destination namespace of `app` on this cluster when its sync options ask for it
/// and it does not exist.
async fn create_namespace(client: &kube::Client, app: &Value) -> Result<(), SimError> {
    let Some(name) = namespace_to_create(app) else {
        return Ok(());
    };
    let mut ns = Namespace::default();
    ns.metadata.name = Some(name.to_owned());
    match Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
    {
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        other => other.map(|_| ()).map_err(Into::into),
    }
}

/// The destination namespace of `app` when its sync options include `CreateNamespace=true`.
fn namespace_to_create(app: &Value) -> Option<&str> {
    let asked = app
        .pointer("/spec/syncPolicy/syncOptions")
        .and_then(Value::as_array)
        .is_some_and(|o| o.iter().any(|v| v.as_str() == Some("CreateNamespace=true")));
    app.pointer("/spec/destination/namespace")
        .and_then(Value::as_str)
        .filter(|n| asked && !n.is_empty())
}

/// Compares the fields this simulator owns, ignoring times.
fn same(current: &Value, desired: &Value) -> bool {
    let pick = |v: &Value| {
        json!({
            "h": v.pointer("/health/status"),
            "s": v.pointer("/sync/status"),
            "r": v.get("resources"),
            "c": v.pointer("/conditions/0/type"),
        })
    };
    pick(current) == pick(desired)
}

async fn write(api: &Api<DynamicObject>, name: &str, status: Value) -> Result<(), SimError> {
    // Applications have no status subresource: ArgoCD writes status on the object itself.
    let mut status = status;
    if status.get("conditions").is_none() {
        status["conditions"] = Value::Null;
    }
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": status})),
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_skip_ref_only_sources() {
        let app = json!({"spec": {
        "destination": {"namespace": "gw"},
        "sources": [
            {"repoURL": "r", "chart": "web", "helm": {"releaseName": "frontend"}},
            {"repoURL": "r", "ref": "values"},
            {"repoURL": "r", "path": "components/apps/demo"},
        ]}});
        let names: Vec<String> = resources(&app)
            .iter()
            .map(|r| r["name"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(names, ["frontend", "demo"]);
        assert_eq!(resources(&app)[0]["namespace"], "gw");
    }

    #[test]
    fn resources_follow_a_sources_namespace() {
        let app = json!({"spec": {
        "destination": {"namespace": "gw"},
        "sources": [
            {"repoURL": "r", "chart": "web", "helm": {"namespace": "shop"}},
            {"repoURL": "r", "path": "k8s/db", "kustomize": {"namespace": "db"}},
            {"repoURL": "r", "path": "k8s/plain"},
        ]}});
        let namespaces: Vec<String> = resources(&app)
            .iter()
            .map(|r| r["namespace"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(namespaces, ["shop", "db", "gw"]);
    }

    #[test]
    fn only_create_namespace_applications_get_their_namespace() {
        let app = |options: Value, ns: &str| json!({"spec": {"destination": {"namespace": ns}, "syncPolicy": {"syncOptions": options}}});
        let both = app(
            json!(["CreateNamespace=true", "ServerSideApply=true"]),
            "gw",
        );
        assert_eq!(namespace_to_create(&both), Some("gw"));
        assert_eq!(
            namespace_to_create(&app(json!(["ServerSideApply=true"]), "gw")),
            None
        );
        assert_eq!(
            namespace_to_create(&app(json!(["CreateNamespace=true"]), "")),
            None
        );
        assert_eq!(namespace_to_create(&json!({"spec": {}})), None);
    }

    #[test]
    fn same_ignores_times() {
        let a = json!({"health": {"status": "Healthy"}, "sync": {"status": "Synced"}, "reconciledAt": "t1"});
        let b = json!({"health": {"status": "Healthy"}, "sync": {"status": "Synced"}, "reconciledAt": "t2"});
        assert!(same(&a, &b));
        let c = json!({"health": {"status": "Degraded"}, "sync": {"status": "Synced"}});
        assert!(!same(&a, &c));
    }
}
