//! Vertex AI mode: the `ambient-vertex` Secret (Google Cloud credentials) is copied from the
//! backend's namespace into the namespace of every session that starts a run, mounted into
//! the runner at `/app/vertex`, kept equal to its source, and removed once no run of the
//! namespace uses it.
//!
//! Each copy is owned (owner references) by the sessions whose runs use it: a run adds its
//! session, the end of the run removes it, and the copy is deleted when the last one is gone.
//! Deleting the sessions also removes it through garbage collection. Only Secrets carrying the
//! `vteam.ambient-code/copied-from` annotation are ever changed or deleted.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use agentic_api::sessions::{ANNOTATION_COPIED_FROM, AgenticSession};
use k8s_openapi::{
    api::core::v1::Secret,
    apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference},
};
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions},
    runtime::{controller::Action, watcher},
};
use serde_json::{Value, json};

use super::{
    build,
    config::{SessionConfig, VERTEX_SECRET},
    error::SessionError,
};
use crate::runtime::{ControllerTask, FamilyError, RuntimeContext, SharedWatches, controller_task};

/// Label on every copy, valued with the source Secret's name (the refresher finds copies by
/// it).
pub const LABEL_COPIED_SECRET: &str = "ambient-code.io/copied-secret";
/// `app.kubernetes.io/managed-by` value of the copies.
pub const MANAGED_BY: &str = "agentic-operator";
/// Controller name of the refresher (metric label, log field).
pub const REFRESHER: &str = "vertex-secret";

/// The `copied-from` annotation value of a copy of `namespace/name`.
pub fn copied_from(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

/// Owner references of a copy once `session` uses it: the existing ones plus the session's.
/// The session's reference is a controller reference only when no other owner controls the
/// copy (Kubernetes allows one controller).
pub fn add_owner(existing: &[OwnerReference], session: &AgenticSession) -> Vec<OwnerReference> {
    let mut owners = existing.to_vec();
    let Some(mut mine) = build::owner(session) else {
        return owners;
    };
    if owners.iter().any(|o| o.uid == mine.uid) {
        return owners;
    }
    if owners.iter().any(|o| o.controller == Some(true)) {
        mine.controller = None;
    }
    owners.push(mine);
    owners
}

/// A copy of `source` in `namespace`: same name, type and data, labelled and annotated with
/// where it came from, owned by `owners`.
pub fn copied_secret(source: &Secret, namespace: &str, owners: Vec<OwnerReference>) -> Secret {
    let name = source.name_any();
    Secret {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(namespace.to_owned()),
            labels: Some(BTreeMap::from([
                (
                    "app.kubernetes.io/managed-by".to_owned(),
                    MANAGED_BY.to_owned(),
                ),
                (LABEL_COPIED_SECRET.to_owned(), name.clone()),
            ])),
            annotations: Some(BTreeMap::from([(
                ANNOTATION_COPIED_FROM.to_owned(),
                copied_from(&source.namespace().unwrap_or_default(), &name),
            )])),
            owner_references: (!owners.is_empty()).then_some(owners),
            ..ObjectMeta::default()
        },
        type_: source.type_.clone(),
        data: source.data.clone(),
        ..Secret::default()
    }
}

/// The merge patch that makes `copy` equal to `desired` (data, labels, annotation, owners),
/// conditional on the copy's `resourceVersion`; `None` when nothing differs. Keys dropped
/// from the source are removed from the copy.
pub fn sync_patch(copy: &Secret, desired: &Secret) -> Option<Value> {
    let mut metadata = serde_json::Map::new();
    let missing = |want: Option<&BTreeMap<String, String>>,
                   have: Option<&BTreeMap<String, String>>| {
        want.into_iter()
            .flatten()
            .any(|(k, v)| have.and_then(|h| h.get(k)) != Some(v))
    };
    if missing(
        desired.metadata.labels.as_ref(),
        copy.metadata.labels.as_ref(),
    ) {
        metadata.insert("labels".into(), json!(desired.metadata.labels));
    }
    if missing(
        desired.metadata.annotations.as_ref(),
        copy.metadata.annotations.as_ref(),
    ) {
        metadata.insert("annotations".into(), json!(desired.metadata.annotations));
    }
    if copy.metadata.owner_references != desired.metadata.owner_references {
        metadata.insert(
            "ownerReferences".into(),
            json!(
                desired
                    .metadata
                    .owner_references
                    .clone()
                    .unwrap_or_default()
            ),
        );
    }
    let mut patch = serde_json::Map::new();
    if copy.data != desired.data {
        let mut data = serde_json::Map::new();
        for key in copy.data.iter().flatten().map(|(k, _)| k) {
            if !desired.data.as_ref().is_some_and(|d| d.contains_key(key)) {
                data.insert(key.clone(), Value::Null);
            }
        }
        for (k, v) in desired.data.iter().flatten() {
            data.insert(k.clone(), json!(v));
        }
        patch.insert("data".into(), Value::Object(data));
    }
    if metadata.is_empty() && patch.is_empty() {
        return None;
    }
    metadata.insert(
        "resourceVersion".into(),
        json!(copy.metadata.resource_version),
    );
    patch.insert("metadata".into(), Value::Object(metadata));
    Some(Value::Object(patch))
}

fn is_copy(secret: &Secret, source_namespace: &str) -> bool {
    secret.annotations().get(ANNOTATION_COPIED_FROM)
        == Some(&copied_from(source_namespace, VERTEX_SECRET))
}

/// Before a run starts in Vertex AI mode: copies `ambient-vertex` from the backend's
/// namespace into the session's namespace (or brings an existing copy up to date) and adds
/// the session as an owner. Does nothing when Vertex AI mode is off. A missing source Secret
/// is an error naming it; the reconcile is retried with backoff and the run does not start.
/// An `ambient-vertex` in the session's namespace that is not a copy is used as it is.
pub async fn ensure_vertex_secret(
    client: &Client,
    session: &AgenticSession,
    config: &SessionConfig,
) -> Result<(), SessionError> {
    if config.vertex.is_none() {
        return Ok(());
    }
    let ns = session.namespace().ok_or(SessionError::NoNamespace)?;
    let source_ns = &config.backend_namespace;
    let source = Api::<Secret>::namespaced(client.clone(), source_ns)
        .get(VERTEX_SECRET)
        .await
        .map_err(|e| {
            SessionError::kube(
                format!(
                    "read Secret {source_ns}/{VERTEX_SECRET} (Google Cloud credentials, required in Vertex AI mode)"
                ),
                e,
            )
        })?;
    if ns == *source_ns {
        return Ok(());
    }
    let api: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let action = || format!("copy Secret {source_ns}/{VERTEX_SECRET} to namespace {ns}");
    match api
        .get_opt(VERTEX_SECRET)
        .await
        .map_err(|e| SessionError::kube(action(), e))?
    {
        None => {
            let copy = copied_secret(&source, &ns, add_owner(&[], session));
            api.create(&PostParams::default(), &copy)
                .await
                .map_err(|e| SessionError::kube(action(), e))?;
        }
        Some(existing) if !is_copy(&existing, source_ns) => {
            tracing::info!(
                namespace = %ns,
                "Secret {VERTEX_SECRET} was not copied by the operator; using it as it is"
            );
        }
        Some(existing) => {
            let owners = add_owner(
                existing
                    .metadata
                    .owner_references
                    .as_deref()
                    .unwrap_or_default(),
                session,
            );
            let desired = copied_secret(&source, &ns, owners);
            if let Some(patch) = sync_patch(&existing, &desired) {
                api.patch(
                    VERTEX_SECRET,
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
                .map_err(|e| SessionError::kube(action(), e))?;
            }
        }
    }
    Ok(())
}

/// After a run of `session` ended: removes the session from the copy's owners and deletes
/// the copy when no owner is left. Only copies made by the operator are touched. Does
/// nothing when Vertex AI mode is off (copies made before it was turned off go with their
/// sessions, through garbage collection).
pub async fn release_vertex_secret(
    client: &Client,
    session: &AgenticSession,
    config: &SessionConfig,
) -> Result<(), SessionError> {
    if config.vertex.is_none() {
        return Ok(());
    }
    let ns = session.namespace().ok_or(SessionError::NoNamespace)?;
    let uid = session.uid().unwrap_or_default();
    let api: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let action = || format!("release Secret {ns}/{VERTEX_SECRET}");
    let Some(copy) = api
        .get_opt(VERTEX_SECRET)
        .await
        .map_err(|e| SessionError::kube(action(), e))?
    else {
        return Ok(());
    };
    if !is_copy(&copy, &config.backend_namespace) {
        return Ok(());
    }
    let owners = copy.owner_references();
    if !owners.iter().any(|o| o.uid == uid) {
        return Ok(());
    }
    let rest: Vec<OwnerReference> = owners.iter().filter(|o| o.uid != uid).cloned().collect();
    let result = if rest.is_empty() {
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                resource_version: copy.metadata.resource_version.clone(),
                uid: copy.metadata.uid.clone(),
            }),
            ..DeleteParams::default()
        };
        api.delete(VERTEX_SECRET, &params).await.map(drop)
    } else {
        let patch = json!({
            "metadata": {
                "resourceVersion": copy.metadata.resource_version,
                "ownerReferences": rest,
            }
        });
        api.patch(
            VERTEX_SECRET,
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .map(drop)
    };
    match result {
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        other => other.map_err(|e| SessionError::kube(action(), e)),
    }
}

/// What the refresher shares.
struct RefreshCtx {
    client: Client,
    source_namespace: String,
}

/// Safety net of the refresher (source changes wake it at once).
const REFRESH_RECHECK: Duration = Duration::from_mins(10);

async fn refresh(source: Arc<Secret>, ctx: Arc<RefreshCtx>) -> Result<Action, SessionError> {
    let all: Api<Secret> = Api::all(ctx.client.clone());
    let copies = all
        .list(&ListParams::default().labels(&format!("{LABEL_COPIED_SECRET}={VERTEX_SECRET}")))
        .await
        .map_err(|e| SessionError::kube(format!("list copies of Secret {VERTEX_SECRET}"), e))?;
    for copy in copies
        .items
        .iter()
        .filter(|c| is_copy(c, &ctx.source_namespace))
    {
        let ns = copy.namespace().unwrap_or_default();
        let desired = copied_secret(&source, &ns, copy.owner_references().to_vec());
        if let Some(patch) = sync_patch(copy, &desired) {
            let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
            match api
                .patch(
                    VERTEX_SECRET,
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
            {
                Ok(_) => {
                    tracing::info!(namespace = %ns, "refreshed Secret {VERTEX_SECRET} from its source");
                }
                // Deleted or changed meanwhile: the next run start copies it afresh.
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                Err(e) => {
                    return Err(SessionError::kube(
                        format!("refresh Secret {ns}/{VERTEX_SECRET}"),
                        e,
                    ));
                }
            }
        }
    }
    Ok(Action::requeue(REFRESH_RECHECK))
}

/// In Vertex AI mode, a controller that watches the source `ambient-vertex` in the backend's
/// namespace and rewrites every copy whenever it changes; no controller otherwise.
pub fn refresher(
    rt: &RuntimeContext,
    watches: &mut SharedWatches,
    config: &SessionConfig,
) -> Result<Vec<ControllerTask>, FamilyError> {
    if config.vertex.is_none() {
        return Ok(Vec::new());
    }
    let source = watches.subscribe(
        Api::<Secret>::namespaced(rt.client.clone(), &config.backend_namespace),
        watcher::Config::default().fields(&format!("metadata.name={VERTEX_SECRET}")),
    )?;
    let ctx = Arc::new(RefreshCtx {
        client: rt.client.clone(),
        source_namespace: config.backend_namespace.clone(),
    });
    Ok(vec![controller_task(
        rt,
        REFRESHER,
        source,
        |c| c,
        refresh,
        ctx,
    )])
}
