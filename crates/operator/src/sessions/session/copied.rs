//! Secrets copied from the backend's namespace into the namespace of every session that
//! starts a run: `ambient-vertex` (Google Cloud credentials, Vertex AI mode),
//! `ambient-admin-langfuse-secret` (`LANGFUSE_ENABLED`) and
//! `ambient-admin-mlflow-observability-secret` (`MLFLOW_TRACING_ENABLED`). One mechanism for
//! all of them: each copy is made when a run starts, kept equal to its source by a refresher,
//! and removed once no run of the namespace uses it.
//!
//! Each copy is owned (owner references) by the sessions whose runs use it: a run adds its
//! session (a controller reference only when the copy has no controller yet, otherwise a
//! plain one), the end of the run removes it, and the copy is deleted when the last one is
//! gone. Deleting the sessions also removes it through garbage collection. Writes are
//! conditional on the copy's `resourceVersion` and retried on conflict. Only Secrets
//! carrying the `vteam.ambient-code/copied-from` annotation are ever changed or deleted.
//!
//! The Vertex AI copy is required: without it the run does not start. The Langfuse and
//! `MLflow` copies are best effort: a failure is logged and published as a Warning Event on
//! the session, and the run starts without them.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use agentic_api::sessions::{ANNOTATION_COPIED_FROM, AgenticSession};
use k8s_openapi::{
    api::core::v1::{ObjectReference, Secret},
    apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference},
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions},
    runtime::{
        controller::Action,
        events::{Event, EventType, Recorder},
        watcher,
    },
};
use serde_json::{Value, json};

use super::{
    build,
    config::{LANGFUSE_SECRET, MLFLOW_SECRET, SessionConfig, VERTEX_SECRET},
    error::SessionError,
};
use crate::runtime::{ControllerTask, FamilyError, RuntimeContext, SharedWatches, controller_task};

/// Label on every copy, valued with the source Secret's name (the refresher finds copies by
/// it).
pub const LABEL_COPIED_SECRET: &str = "ambient-code.io/copied-secret";
/// `app.kubernetes.io/managed-by` value of the copies.
pub const MANAGED_BY: &str = "agentic-operator";
/// Reason of the Warning Event published when a best-effort copy fails.
pub const REASON_COPY_FAILED: &str = "SecretCopyFailed";
/// How often a write of a copy is attempted when it conflicts with a concurrent one.
const CONFLICT_ATTEMPTS: usize = 5;

/// One Secret the operator copies from the backend's namespace into session namespaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopiedSecret {
    /// Name of the source and of every copy.
    pub name: &'static str,
    /// Controller name of its refresher (metric label, log field).
    pub refresher: &'static str,
    /// What it holds and which setting asks for it (messages).
    pub purpose: &'static str,
    /// Whether a run needs it: a failure to copy a required Secret stops the start (the
    /// reconcile is retried); any other is logged, published as an Event, and ignored.
    pub required: bool,
}

/// `ambient-vertex`, required in Vertex AI mode.
pub const VERTEX: CopiedSecret = CopiedSecret {
    name: VERTEX_SECRET,
    refresher: "vertex-secret",
    purpose: "Google Cloud credentials, required in Vertex AI mode",
    required: true,
};
/// `ambient-admin-langfuse-secret`, best effort when `LANGFUSE_ENABLED` is on.
pub const LANGFUSE: CopiedSecret = CopiedSecret {
    name: LANGFUSE_SECRET,
    refresher: "langfuse-secret",
    purpose: "Langfuse settings, LANGFUSE_ENABLED",
    required: false,
};
/// `ambient-admin-mlflow-observability-secret`, best effort when `MLFLOW_TRACING_ENABLED` is
/// on.
pub const MLFLOW: CopiedSecret = CopiedSecret {
    name: MLFLOW_SECRET,
    refresher: "mlflow-secret",
    purpose: "MLflow settings, MLFLOW_TRACING_ENABLED",
    required: false,
};

/// The Secrets `config` asks to copy, required ones first.
pub fn enabled(config: &SessionConfig) -> Vec<CopiedSecret> {
    [
        (VERTEX, config.vertex.is_some()),
        (LANGFUSE, config.langfuse),
        (MLFLOW, config.mlflow),
    ]
    .into_iter()
    .filter_map(|(secret, on)| on.then_some(secret))
    .collect()
}

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

fn is_copy(secret: &Secret, source_namespace: &str, name: &str) -> bool {
    secret.annotations().get(ANNOTATION_COPIED_FROM) == Some(&copied_from(source_namespace, name))
}

fn is_conflict(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(s) if s.code == 409)
}

/// Copies `secret` from `source_ns` into the session's namespace (or brings an existing copy
/// up to date) and adds the session as an owner; returns the Secret the runner will see
/// there. A missing or unreadable source is an error naming it. A Secret of that name in the
/// session's namespace that is not a copy is used as it is. Conflicting writes (another run
/// starting or ending at the same time) are retried on a fresh read.
pub async fn ensure_copy(
    client: &Client,
    session: &AgenticSession,
    source_ns: &str,
    secret: CopiedSecret,
) -> Result<Secret, SessionError> {
    let name = secret.name;
    let ns = session.namespace().ok_or(SessionError::NoNamespace)?;
    let source = Api::<Secret>::namespaced(client.clone(), source_ns)
        .get(name)
        .await
        .map_err(|e| {
            SessionError::kube(
                format!("read Secret {source_ns}/{name} ({})", secret.purpose),
                e,
            )
        })?;
    if ns == source_ns {
        return Ok(source);
    }
    let api: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let action = || format!("copy Secret {source_ns}/{name} to namespace {ns}");
    let mut attempt = 0;
    loop {
        attempt += 1;
        let retry = |e: &kube::Error| is_conflict(e) && attempt < CONFLICT_ATTEMPTS;
        let existing = api
            .get_opt(name)
            .await
            .map_err(|e| SessionError::kube(action(), e))?;
        let written = match existing {
            None => {
                let copy = copied_secret(&source, &ns, add_owner(&[], session));
                api.create(&PostParams::default(), &copy).await
            }
            Some(existing) if !is_copy(&existing, source_ns, name) => {
                tracing::info!(
                    namespace = %ns,
                    "Secret {name} was not copied by the operator; using it as it is"
                );
                return Ok(existing);
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
                let Some(patch) = sync_patch(&existing, &desired) else {
                    return Ok(existing);
                };
                api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
            }
        };
        match written {
            Ok(copy) => return Ok(copy),
            Err(e) if retry(&e) => {}
            Err(e) => return Err(SessionError::kube(action(), e)),
        }
    }
}

/// Before a run starts: makes every copy `config` asks for (see [`ensure_copy`]) and returns
/// the Secrets in effect in the session's namespace. A failure of a required copy, and a
/// transient failure (429, 5xx, a lost connection) of any copy, is returned (the run does not
/// start; the reconcile is retried); a refusal of a best-effort copy (403, 422, ...) is
/// logged and published as a Warning Event on the session, and that Secret is left out.
pub async fn ensure_copies(
    client: &Client,
    session: &AgenticSession,
    config: &SessionConfig,
    recorder: Option<&Recorder>,
) -> Result<Vec<(CopiedSecret, Secret)>, SessionError> {
    let mut in_effect = Vec::new();
    for secret in enabled(config) {
        match ensure_copy(client, session, &config.backend_namespace, secret).await {
            Ok(copy) => in_effect.push((secret, copy)),
            Err(error) if secret.required || error.is_transient() => return Err(error),
            Err(error) => {
                tracing::warn!(
                    secret = secret.name,
                    %error,
                    "cannot copy an optional Secret; starting the runner without it"
                );
                if let Some(recorder) = recorder {
                    let note = format!(
                        "{error}; the runner starts without {} ({})",
                        secret.name, secret.purpose
                    );
                    warn_session(recorder, session, REASON_COPY_FAILED, note, "CopySecret").await;
                }
            }
        }
    }
    Ok(in_effect)
}

/// Publishes a Warning Event on `session`.
pub async fn warn_session(
    recorder: &Recorder,
    session: &AgenticSession,
    reason: &str,
    note: String,
    action: &str,
) {
    let event = Event {
        type_: EventType::Warning,
        reason: reason.into(),
        note: Some(note),
        action: action.into(),
        secondary: None,
    };
    let reference: ObjectReference = session.object_ref(&());
    crate::runtime::events::publish(recorder, &event, &reference).await;
}

/// After a run of `session` ended: removes the session from the owners of the copy of
/// `name` and deletes the copy when no owner is left. Only copies made by the operator are
/// touched; conflicting writes are retried on a fresh read.
pub async fn release_copy(
    client: &Client,
    session: &AgenticSession,
    source_ns: &str,
    name: &str,
) -> Result<(), SessionError> {
    let ns = session.namespace().ok_or(SessionError::NoNamespace)?;
    let uid = session.uid().unwrap_or_default();
    let api: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let action = || format!("release Secret {ns}/{name}");
    let mut attempt = 0;
    loop {
        attempt += 1;
        let Some(copy) = api
            .get_opt(name)
            .await
            .map_err(|e| SessionError::kube(action(), e))?
        else {
            return Ok(());
        };
        if !is_copy(&copy, source_ns, name) {
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
            api.delete(name, &params).await.map(drop)
        } else {
            let patch = json!({
                "metadata": {
                    "resourceVersion": copy.metadata.resource_version,
                    "ownerReferences": rest,
                }
            });
            api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map(drop)
        };
        match result {
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
            Err(e) if is_conflict(&e) && attempt < CONFLICT_ATTEMPTS => {}
            other => return other.map_err(|e| SessionError::kube(action(), e)),
        }
    }
}

/// After a run of `session` ended: releases its hold on every copy `config` asks for (see
/// [`release_copy`]). Copies of a Secret whose setting was turned off since go with their
/// sessions, through garbage collection.
pub async fn release_copies(
    client: &Client,
    session: &AgenticSession,
    config: &SessionConfig,
) -> Result<(), SessionError> {
    for secret in enabled(config) {
        release_copy(client, session, &config.backend_namespace, secret.name).await?;
    }
    Ok(())
}

/// What a refresher shares.
struct RefreshCtx {
    client: Client,
    source_namespace: String,
    name: &'static str,
}

/// Safety net of the refreshers (source changes wake them at once).
const REFRESH_RECHECK: Duration = Duration::from_mins(10);

async fn refresh(source: Arc<Secret>, ctx: Arc<RefreshCtx>) -> Result<Action, SessionError> {
    let name = ctx.name;
    let all: Api<Secret> = Api::all(ctx.client.clone());
    let copies = all
        .list(&ListParams::default().labels(&format!("{LABEL_COPIED_SECRET}={name}")))
        .await
        .map_err(|e| SessionError::kube(format!("list copies of Secret {name}"), e))?;
    for copy in copies
        .items
        .iter()
        .filter(|c| is_copy(c, &ctx.source_namespace, name))
    {
        let ns = copy.namespace().unwrap_or_default();
        let desired = copied_secret(&source, &ns, copy.owner_references().to_vec());
        if let Some(patch) = sync_patch(copy, &desired) {
            let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
            match api
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {
                    tracing::info!(namespace = %ns, "refreshed Secret {name} from its source");
                }
                // Deleted or changed meanwhile: the next run start copies it afresh, and a
                // conflict is retried with backoff.
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => {
                    return Err(SessionError::kube(format!("refresh Secret {ns}/{name}"), e));
                }
            }
        }
    }
    Ok(Action::requeue(REFRESH_RECHECK))
}

/// One controller per Secret `config` asks to copy: it watches the source in the backend's
/// namespace and rewrites every copy whenever it changes.
pub fn refresher(
    rt: &RuntimeContext,
    watches: &mut SharedWatches,
    config: &SessionConfig,
) -> Result<Vec<ControllerTask>, FamilyError> {
    let mut tasks = Vec::new();
    for secret in enabled(config) {
        let source = watches.subscribe(
            Api::<Secret>::namespaced(rt.client.clone(), &config.backend_namespace),
            watcher::Config::default().fields(&format!("metadata.name={}", secret.name)),
        )?;
        let ctx = Arc::new(RefreshCtx {
            client: rt.client.clone(),
            source_namespace: config.backend_namespace.clone(),
            name: secret.name,
        });
        tasks.push(controller_task(
            rt,
            secret.refresher,
            source,
            |c| c,
            refresh,
            ctx,
        ));
    }
    Ok(tasks)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use http::{Method, Request, Response};
    use kube::client::Body;

    fn session(name: &str, uid: &str) -> AgenticSession {
        let mut s = AgenticSession::new(name, agentic_api::sessions::AgenticSessionSpec::default());
        s.metadata.namespace = Some("team-a".into());
        s.metadata.uid = Some(uid.into());
        s
    }

    fn secret_json(namespace: &str, rv: &str, value: &str, owners: &[&AgenticSession]) -> Value {
        let source = Secret {
            metadata: ObjectMeta {
                name: Some(MLFLOW_SECRET.into()),
                namespace: Some("ambient-code".into()),
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([(
                "MLFLOW_TRACKING_URI".to_owned(),
                k8s_openapi::ByteString(value.as_bytes().to_vec()),
            )])),
            ..Secret::default()
        };
        let mut refs = Vec::new();
        for o in owners {
            refs = add_owner(&refs, o);
        }
        let mut secret = if namespace == "ambient-code" {
            source
        } else {
            copied_secret(&source, namespace, refs)
        };
        secret.metadata.resource_version = Some(rv.into());
        serde_json::to_value(&secret).unwrap()
    }

    fn status(code: u16, reason: &str) -> Value {
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason,
               "message": reason, "code": code})
    }

    /// What the scripted server saw: method, path and JSON body of each request.
    type Seen = tokio::task::JoinHandle<Vec<(Method, String, Value)>>;

    /// A client whose API server answers the requests with `answers` in order and hands
    /// back each request's method, path and body.
    fn scripted(answers: Vec<(u16, Value)>) -> (Client, Seen) {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let server = tokio::spawn(async move {
            let mut seen = Vec::new();
            for (code, body) in answers {
                let (request, send) = handle.next_request().await.expect("a request");
                let method = request.method().clone();
                let path = request.uri().path().to_owned();
                let bytes = request.into_body().collect_bytes().await.unwrap();
                let body_sent = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                seen.push((method, path, body_sent));
                send.send_response(
                    Response::builder()
                        .status(code)
                        .body(Body::from(serde_json::to_vec(&body).unwrap()))
                        .unwrap(),
                );
            }
            seen
        });
        (Client::new(service, "default"), server)
    }

    const COPY_PATH: &str =
        "/api/v1/namespaces/team-a/secrets/ambient-admin-mlflow-observability-secret";

    #[tokio::test]
    async fn a_conflicting_copy_write_is_retried_on_a_fresh_read() {
        let first = session("s1", "uid-1");
        let second = session("s2", "uid-2");
        let (client, server) = scripted(vec![
            (200, secret_json("ambient-code", "1", "http://new", &[])),
            (200, secret_json("team-a", "10", "http://old", &[&first])),
            (409, status(409, "Conflict")),
            (200, secret_json("team-a", "11", "http://new", &[&first])),
            (
                200,
                secret_json("team-a", "12", "http://new", &[&first, &second]),
            ),
        ]);
        let copy = ensure_copy(&client, &second, "ambient-code", MLFLOW)
            .await
            .unwrap();
        assert_eq!(copy.metadata.resource_version.as_deref(), Some("12"));
        let seen = server.await.unwrap();
        let methods: Vec<&Method> = seen.iter().map(|(m, _, _)| m).collect();
        assert_eq!(
            methods,
            [
                &Method::GET,
                &Method::GET,
                &Method::PATCH,
                &Method::GET,
                &Method::PATCH
            ]
        );
        assert_eq!(seen[2].1, COPY_PATH);
        let (_, _, first_try) = &seen[2];
        assert_eq!(first_try["metadata"]["resourceVersion"], "10");
        assert!(first_try["data"]["MLFLOW_TRACKING_URI"].is_string());
        // The retry is based on the fresh read: only the new owner, at its resourceVersion.
        let (_, _, retry) = &seen[4];
        assert_eq!(retry["metadata"]["resourceVersion"], "11");
        assert!(retry.get("data").is_none(), "data already current: {retry}");
        let owners = retry["metadata"]["ownerReferences"].as_array().unwrap();
        assert_eq!(owners.len(), 2);
        assert_eq!(owners[1]["name"], "s2");
        assert!(
            owners[1].get("controller").is_none(),
            "s1 stays the controller"
        );
    }

    #[tokio::test]
    async fn a_missing_source_is_an_error_naming_it_and_nothing_is_written() {
        let (client, server) = scripted(vec![(404, status(404, "NotFound"))]);
        let err = ensure_copy(&client, &session("s1", "uid-1"), "ambient-code", LANGFUSE)
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("ambient-code/ambient-admin-langfuse-secret")
                && text.contains("LANGFUSE_ENABLED"),
            "{text}"
        );
        assert_eq!(server.await.unwrap().len(), 1, "only the source was read");
    }

    #[tokio::test]
    async fn a_best_effort_copy_that_fails_leaves_the_start_going() {
        // Langfuse's source is missing; the MLflow copy is made and returned.
        let mut config = SessionConfig::defaults("img", "ambient-code");
        config.langfuse = true;
        config.mlflow = true;
        let (client, server) = scripted(vec![
            (404, status(404, "NotFound")),
            (200, secret_json("ambient-code", "1", "http://m", &[])),
            (404, status(404, "NotFound")),
            (201, secret_json("team-a", "5", "http://m", &[])),
        ]);
        let in_effect = ensure_copies(&client, &session("s1", "uid-1"), &config, None)
            .await
            .unwrap();
        assert_eq!(in_effect.len(), 1);
        assert_eq!(in_effect[0].0, MLFLOW);
        let seen = server.await.unwrap();
        assert_eq!(seen[3].0, Method::POST);
        assert_eq!(
            seen[3].2["metadata"]["ownerReferences"][0]["controller"],
            true
        );

        // The same failure of the required Vertex copy stops the start.
        let mut vertex = SessionConfig::defaults("img", "ambient-code");
        vertex.vertex = Some(super::super::config::VertexConfig {
            project_id: "p".into(),
            region: "r".into(),
            credentials_path: "/app/vertex/k.json".into(),
        });
        let (client, _server) = scripted(vec![(404, status(404, "NotFound"))]);
        let err = ensure_copies(&client, &session("s1", "uid-1"), &vertex, None)
            .await
            .unwrap_err();
        assert!(err.to_string().contains(VERTEX_SECRET), "{err}");
    }

    #[tokio::test]
    async fn release_drops_the_owner_then_deletes_with_the_last_one() {
        let first = session("s1", "uid-1");
        let second = session("s2", "uid-2");
        let (client, server) = scripted(vec![
            (200, secret_json("team-a", "20", "x", &[&first, &second])),
            (409, status(409, "Conflict")),
            (200, secret_json("team-a", "21", "x", &[&first, &second])),
            (200, secret_json("team-a", "22", "x", &[&second])),
        ]);
        release_copy(&client, &first, "ambient-code", MLFLOW_SECRET)
            .await
            .unwrap();
        let seen = server.await.unwrap();
        assert_eq!(seen[3].0, Method::PATCH);
        assert_eq!(seen[3].2["metadata"]["resourceVersion"], "21");
        let owners = seen[3].2["metadata"]["ownerReferences"].as_array().unwrap();
        assert_eq!(owners.len(), 1);
        assert_eq!(owners[0]["name"], "s2");

        let (client, server) = scripted(vec![
            (200, secret_json("team-a", "30", "x", &[&second])),
            (200, status(200, "Success")),
        ]);
        release_copy(&client, &second, "ambient-code", MLFLOW_SECRET)
            .await
            .unwrap();
        let seen = server.await.unwrap();
        assert_eq!(seen[1].0, Method::DELETE);
        assert_eq!(seen[1].2["preconditions"]["resourceVersion"], "30");

        // A Secret of that name the operator did not copy is never touched.
        let mut own = secret_json("team-a", "40", "x", &[&second]);
        own["metadata"]["annotations"] = json!({});
        let (client, server) = scripted(vec![(200, own)]);
        release_copy(&client, &second, "ambient-code", MLFLOW_SECRET)
            .await
            .unwrap();
        assert_eq!(server.await.unwrap().len(), 1, "read only");
    }

    #[test]
    fn enabled_follows_the_switches_required_first() {
        let mut config = SessionConfig::defaults("img", "b");
        assert!(enabled(&config).is_empty());
        config.mlflow = true;
        assert_eq!(enabled(&config), [MLFLOW]);
        config.langfuse = true;
        config.vertex = Some(super::super::config::VertexConfig {
            project_id: "p".into(),
            region: "r".into(),
            credentials_path: "k".into(),
        });
        assert_eq!(enabled(&config), [VERTEX, LANGFUSE, MLFLOW]);
        let required: Vec<bool> = enabled(&config).iter().map(|s| s.required).collect();
        assert_eq!(
            required,
            [true, false, false],
            "only the Vertex AI copy is required"
        );
    }
}
