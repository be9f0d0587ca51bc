//! A Crossplane claim simulator for the lab cluster types (`illm.io/v1alpha1` `GKECluster`,
//! `TalosCluster`, `VCluster`): each claim becomes `Synced` and, after a scriptable delay,
//! `Ready` with an endpoint and a connection Secret holding a `kubeconfig`; or it reports a
//! scripted failure message and never becomes Ready. Deleting a claim removes its connection
//! Secret and then its finalizer.
//!
//! Claim annotations: `devcluster.io/ready-seconds` (default 0.1, or `forever`),
//! `devcluster.io/fail-message` (Synced=False with that message),
//! `devcluster.io/stuck-deletion` (`true` keeps the finalizer, like a cloud API that hangs), and
//! `devcluster.io/kubeconfig-server` (a URL: the connection Secret's kubeconfig points there,
//! with a bearer token instead of the fake client certificate, so a test can stand up a
//! second dev cluster as the "provisioned" cluster and see what is written on it). Without
//! the annotation the kubeconfig points at `Simulators::cluster_server` when set.
//! `devcluster.io/connection-secret: composite` acts like upstream's GKE Composition, which
//! declares no connection details: the claim gets `spec.resourceRef` naming its composite
//! `<claim>-xr` (created, with `spec.claimRef` naming the claim, when the composite CRD
//! `X<Kind>` is installed), its own connection Secret is written without keys, and the
//! kubeconfig goes to the composite's `crossplane-system/<claim>-xr-cluster-conn` instead.
//! `devcluster.io/resource-ref: <name>` makes such a claim name another composite instead
//! (a tampered claim), for which nothing is created.
//!
//! Deleting a claim in composite mode deletes its composite, which holds the finalizer
//! [`MANAGED_FINALIZER`] for its composed cloud resources; the simulator releases it unless
//! the claim carries `devcluster.io/stuck-composite-deletion: "true"` (a cloud resource that
//! cannot be deleted, such as a VPC network still in use). As Crossplane does, a claim with
//! `spec.compositeDeletePolicy: Foreground` keeps its own finalizer until the composite is
//! gone; otherwise (`Background`, Crossplane's default) it is released at once and a stuck
//! composite stays behind.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use futures::StreamExt;
use jiff::Timestamp;
use kube::api::{DynamicObject, Patch, PatchParams, PostParams};
use kube::discovery::ApiResource;
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::watcher;
use kube::{Api, Resource, ResourceExt};
use serde_json::{Value, json};

use super::SimError;
use super::util::{Length, fmt_ts, hash_of, seconds, since, truthy};

/// Field manager of the simulator's writes.
const MANAGER: &str = "devcluster-crossplane";
/// Finalizer Crossplane puts on claims.
pub const CLAIM_FINALIZER: &str = "finalizer.apiextensions.crossplane.io";
/// Finalizer the simulated composites carry for their composed cloud resources.
pub const MANAGED_FINALIZER: &str = "devcluster.io/composed-resources";

/// The claim kinds this simulator drives (the lab fixtures' claim CRDs).
pub fn claim_resources() -> Vec<ApiResource> {
    [
        ("GKECluster", "gkeclusters"),
        ("TalosCluster", "talosclusters"),
        ("VCluster", "vclusters"),
    ]
    .into_iter()
    .map(|(kind, plural)| ApiResource {
        group: "illm.io".into(),
        version: "v1alpha1".into(),
        api_version: "illm.io/v1alpha1".into(),
        kind: kind.into(),
        plural: plural.into(),
    })
    .collect()
}

/// Shared state of one dynamic-kind simulator.
pub(super) struct KindCtx {
    pub client: kube::Client,
    pub ar: ApiResource,
    /// The delay for objects without a delay annotation.
    pub delay: Duration,
}

impl KindCtx {
    /// The namespaced API of this kind.
    pub fn api(&self, namespace: &str) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), namespace, &self.ar)
    }
}

/// Runs `reconcile` over every object of kind `ar` until the future is dropped.
pub(super) async fn run_kind<F, Fut>(
    client: kube::Client,
    ar: ApiResource,
    what: &'static str,
    delay: Duration,
    reconcile: F,
) where
    F: Fn(Arc<DynamicObject>, Arc<KindCtx>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Action, SimError>> + Send + 'static,
{
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
    let ctx = Arc::new(KindCtx {
        client,
        ar: ar.clone(),
        delay,
    });
    Controller::new_with(api, watcher::Config::default(), ar)
        .with_config(ControllerConfig::default().concurrency(16))
        .run(
            reconcile,
            move |_o, e: &SimError, _c| {
                tracing::debug!(error = %e, simulator = what, "write failed; retrying");
                Action::requeue(Duration::from_millis(300))
            },
            ctx,
        )
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, simulator = what, "reconcile");
            }
        })
        .await;
}

/// Runs the claim simulator until the future is dropped; claims without a
/// `devcluster.io/ready-seconds` annotation become Ready after `ready`.
/// With `server` (a URL and a bearer token), connection Secrets hold a kubeconfig for that
/// server instead of a fake one.
pub async fn run(client: kube::Client, ready: Duration, server: Option<(String, String)>) {
    let server = Arc::new(server);
    let tasks = claim_resources().into_iter().map(|ar| {
        let server = server.clone();
        Box::pin(run_kind(
            client.clone(),
            ar,
            "crossplane",
            ready,
            move |claim, ctx| reconcile(claim, ctx, server.clone()),
        ))
    });
    futures::future::join_all(tasks).await;
}

fn annotation<'a>(o: &'a DynamicObject, key: &str) -> Option<&'a str> {
    o.annotations()
        .get(&format!("{}{key}", super::util::PREFIX))
        .map(|v| v.trim())
}

fn cond(type_: &str, status: bool, reason: &str, message: &str, now: &str) -> Value {
    json!({
        "type": type_,
        "status": if status { "True" } else { "False" },
        "reason": reason,
        "message": message,
        "lastTransitionTime": now,
    })
}

/// Whether the conditions in `status` already say the same (ignoring times).
fn same_conditions(old: &Value, new: &Value) -> bool {
    let strip = |v: &Value| -> Vec<(String, String, String, String)> {
        v.as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                let s = |k: &str| c[k].as_str().unwrap_or_default().to_owned();
                (s("type"), s("status"), s("reason"), s("message"))
            })
            .collect()
    };
    strip(old) == strip(new)
}

/// A fake kubeconfig for a cluster at `endpoint`.
pub fn kubeconfig(cluster: &str, endpoint: &str) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: {cluster}\nclusters:\n- name: {cluster}\n  cluster:\n    server: https://{endpoint}\n    certificate-authority-data: {ca}\ncontexts:\n- name: {cluster}\n  context:\n    cluster: {cluster}\n    user: client\nusers:\n- name: client\n  user:\n    client-certificate-data: {cert}\n    client-key-data: {key}\n",
        ca = b64(&format!("ca of {cluster}")),
        cert = b64(&format!("client certificate of {cluster}")),
        key = b64(&format!("client key of {cluster}")),
    )
}

/// A kubeconfig for a reachable cluster at `server` (a URL), authenticating with the bearer
/// `token` (a dev cluster without RBAC accepts any), not verifying an `https` server's
/// certificate (the dev cluster's CA is its own).
pub fn reachable_kubeconfig(cluster: &str, server: &str, token: &str) -> String {
    let insecure = if server.starts_with("https://") {
        "\n    insecure-skip-tls-verify: true"
    } else {
        ""
    };
    format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: {cluster}\nclusters:\n- name: {cluster}\n  cluster:\n    server: {server}{insecure}\ncontexts:\n- name: {cluster}\n  context:\n    cluster: {cluster}\n    user: client\nusers:\n- name: client\n  user:\n    token: {token}\n"
    )
}

#[allow(clippy::too_many_lines)] // one linear claim lifecycle
async fn reconcile(
    claim: Arc<DynamicObject>,
    ctx: Arc<KindCtx>,
    server: Arc<Option<(String, String)>>,
) -> Result<Action, SimError> {
    let ns = claim.namespace().unwrap_or_default();
    let name = claim.name_any();
    let api = ctx.api(&ns);
    let secret_name = claim
        .data
        .pointer("/spec/writeConnectionSecretToRef/name")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let has_finalizer = claim.finalizers().iter().any(|f| f == CLAIM_FINALIZER);

    if claim.meta().deletion_timestamp.is_some() {
        if !has_finalizer || truthy(annotation(&claim, "stuck-deletion")) {
            return Ok(Action::await_change());
        }
        let composite_secrets: Api<k8s_openapi::api::core::v1::Secret> =
            Api::namespaced(ctx.client.clone(), COMPOSITE_SECRET_NAMESPACE);
        let composite = (composite_mode(&claim) && annotation(&claim, "resource-ref").is_none())
            .then(|| composite_secret_name(&name));
        if composite.is_some() && !delete_composite(&ctx, &claim, &name).await? {
            // Foreground: the claim stays until its composite is gone.
            return Ok(Action::requeue(Duration::from_millis(500)));
        }
        for (api, s) in [(&secrets, &secret_name), (&composite_secrets, &composite)] {
            let Some(s) = s else { continue };
            match api.delete(s, &kube::api::DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
        let rest: Vec<&String> = claim
            .finalizers()
            .iter()
            .filter(|f| *f != CLAIM_FINALIZER)
            .collect();
        api.patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": rest}})),
        )
        .await?;
        return Ok(Action::await_change());
    }
    if !has_finalizer {
        let mut all: Vec<String> = claim.finalizers().to_vec();
        all.push(CLAIM_FINALIZER.to_owned());
        api.patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": all, "resourceVersion": claim.resource_version()}})),
        )
        .await?;
        return Ok(Action::await_change());
    }

    let now = fmt_ts(Timestamp::now());
    let old = claim
        .data
        .pointer("/status/conditions")
        .cloned()
        .unwrap_or(Value::Null);
    if let Some(message) = annotation(&claim, "fail-message") {
        let conditions = json!([
            cond("Synced", false, "ReconcileError", message, &now),
            cond("Ready", false, "Creating", "", &now),
        ]);
        if !same_conditions(&old, &conditions) {
            write_status(&api, &name, json!({"conditions": conditions})).await?;
        }
        return Ok(Action::await_change());
    }
    let delay = seconds(annotation(&claim, "ready-seconds"), "ready-seconds")
        .unwrap_or(Length::For(ctx.delay));
    let created = claim
        .metadata
        .creation_timestamp
        .as_ref()
        .map_or_else(Timestamp::now, |t| t.0);
    let elapsed = since(created);
    let remaining = match delay {
        Length::Forever => None,
        Length::For(d) => Some(d.saturating_sub(elapsed)),
    };
    if remaining != Some(Duration::ZERO) {
        let conditions = json!([
            cond("Synced", true, "ReconcileSuccess", "", &now),
            cond("Ready", false, "Creating", "cluster is being created", &now),
        ]);
        if !same_conditions(&old, &conditions) {
            write_status(&api, &name, json!({"conditions": conditions})).await?;
        }
        return Ok(remaining.map_or_else(Action::await_change, Action::requeue));
    }
    let h = hash_of(&[&ns, &name]);
    let endpoint = format!("10.{}.{}.{}", (h >> 16) % 256, (h >> 8) % 256, h % 254 + 1);
    let data = json!({
        "kubeconfig": base64::engine::general_purpose::STANDARD.encode(
            match (annotation(&claim, "kubeconfig-server"), server.as_ref()) {
                (Some(url), _) => reachable_kubeconfig(&name, url, "devcluster"),
                (None, Some((url, token))) => reachable_kubeconfig(&name, url, token),
                (None, None) => kubeconfig(&name, &endpoint),
            },
        ),
        "endpoint": base64::engine::general_purpose::STANDARD.encode(&endpoint),
    });
    if composite_mode(&claim) {
        let tampered = annotation(&claim, "resource-ref").map(str::to_owned);
        let xr = tampered.clone().unwrap_or_else(|| composite_name(&name));
        let xr_ar = composite_resource(&ctx.ar);
        if claim
            .data
            .pointer("/spec/resourceRef/name")
            .and_then(Value::as_str)
            != Some(&xr)
        {
            api.patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"resourceRef": {
                    "apiVersion": xr_ar.api_version,
                    "kind": xr_ar.kind,
                    "name": xr,
                }}})),
            )
            .await?;
        }
        // A tampered claim names someone else's composite: it gets none of its own.
        if tampered.is_none() {
            create_composite(&ctx.client, &xr_ar, &xr, &ns, &name).await?;
            ensure_namespace(&ctx.client, COMPOSITE_SECRET_NAMESPACE).await?;
            let composite_secrets: Api<k8s_openapi::api::core::v1::Secret> =
                Api::namespaced(ctx.client.clone(), COMPOSITE_SECRET_NAMESPACE);
            create_secret(&composite_secrets, &composite_secret_name(&name), data).await?;
        }
        // Crossplane writes the claim's Secret with the connection details the Composition
        // declares: none.
        if let Some(s) = &secret_name {
            create_secret(&secrets, s, json!({})).await?;
        }
    } else if let Some(s) = &secret_name {
        create_secret(&secrets, s, data).await?;
    }
    let conditions = json!([
        cond("Synced", true, "ReconcileSuccess", "", &now),
        cond("Ready", true, "Available", "", &now),
    ]);
    if !same_conditions(&old, &conditions) || claim.data.pointer("/status/endpoint").is_none() {
        write_status(
            &api,
            &name,
            json!({"conditions": conditions, "endpoint": endpoint, "clusterName": format!("illm-{name}"), "status": "RUNNING"}),
        )
        .await?;
    }
    Ok(Action::await_change())
}

/// Deletes the composite of claim `name` and, unless the claim scripts a stuck cloud
/// deletion, releases its [`MANAGED_FINALIZER`]. Whether the claim may go now: always under
/// `Background`, only once the composite is gone under `Foreground`.
async fn delete_composite(
    ctx: &KindCtx,
    claim: &DynamicObject,
    name: &str,
) -> Result<bool, SimError> {
    let xrs: Api<DynamicObject> = Api::all_with(ctx.client.clone(), &composite_resource(&ctx.ar));
    let xr = composite_name(name);
    match xrs.delete(&xr, &kube::api::DeleteParams::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 => {}
        Err(e) => return Err(e.into()),
    }
    if !truthy(annotation(claim, "stuck-composite-deletion"))
        && let Some(obj) = xrs.get_opt(&xr).await?
        && obj.finalizers().iter().any(|f| f == MANAGED_FINALIZER)
    {
        let rest: Vec<&String> = obj
            .finalizers()
            .iter()
            .filter(|f| *f != MANAGED_FINALIZER)
            .collect();
        match xrs
            .patch(
                &xr,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"finalizers": rest}})),
            )
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    let foreground = claim
        .data
        .pointer("/spec/compositeDeletePolicy")
        .and_then(Value::as_str)
        == Some("Foreground");
    Ok(!foreground || xrs.get_opt(&xr).await?.is_none())
}

/// Namespace of the composites' connection Secrets in `connection-secret: composite` mode.
const COMPOSITE_SECRET_NAMESPACE: &str = "crossplane-system";

/// Whether the claim asks for upstream's GKE Composition behaviour.
fn composite_mode(claim: &DynamicObject) -> bool {
    annotation(claim, "connection-secret") == Some("composite")
}

/// The composite a claim names in `connection-secret: composite` mode.
fn composite_name(claim: &str) -> String {
    format!("{claim}-xr")
}

/// The composite's connection Secret in `connection-secret: composite` mode.
fn composite_secret_name(claim: &str) -> String {
    format!("{}-cluster-conn", composite_name(claim))
}

/// The composite kind `X<Kind>` (plural `x<plural>`) of a claim kind.
fn composite_resource(claim: &ApiResource) -> ApiResource {
    ApiResource {
        kind: format!("X{}", claim.kind),
        plural: format!("x{}", claim.plural),
        ..claim.clone()
    }
}

/// Creates composite `name` of kind `ar` for claim `namespace/claim` unless it exists; nothing
/// when the composite CRD is not installed.
async fn create_composite(
    client: &kube::Client,
    ar: &ApiResource,
    name: &str,
    namespace: &str,
    claim: &str,
) -> Result<(), SimError> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), ar);
    let mut xr = DynamicObject::new(name, ar);
    xr.metadata.finalizers = Some(vec![MANAGED_FINALIZER.to_owned()]);
    xr.data = json!({"spec": {"claimRef": {
        "apiVersion": ar.api_version,
        "kind": ar.kind.trim_start_matches('X'),
        "name": claim,
        "namespace": namespace,
    }}});
    match api.create(&PostParams::default(), &xr).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Creates namespace `name` (where a Crossplane install has it) unless it exists.
async fn ensure_namespace(client: &kube::Client, name: &str) -> Result<(), SimError> {
    let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    if api.get_opt(name).await?.is_some() {
        return Ok(());
    }
    let namespace: k8s_openapi::api::core::v1::Namespace =
        serde_json::from_value(json!({"metadata": {"name": name}})).map_err(SimError::Encode)?;
    match api.create(&PostParams::default(), &namespace).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Creates connection Secret `name` with `data` unless it exists.
async fn create_secret(
    api: &Api<k8s_openapi::api::core::v1::Secret>,
    name: &str,
    data: Value,
) -> Result<(), SimError> {
    if api.get_opt(name).await?.is_some() {
        return Ok(());
    }
    let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name},
        "type": "connection.crossplane.io/v1alpha1",
        "data": data,
    }))
    .map_err(SimError::Encode)?;
    let params = PostParams {
        field_manager: Some(MANAGER.into()),
        ..PostParams::default()
    };
    match api.create(&params, &secret).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

async fn write_status(api: &Api<DynamicObject>, name: &str, status: Value) -> Result<(), SimError> {
    api.patch_status(
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
    fn kubeconfig_names_the_endpoint_and_client_user() {
        let kc = kubeconfig("gw-app", "10.1.2.3");
        assert!(kc.contains("server: https://10.1.2.3"));
        assert!(kc.contains("current-context: gw-app"));
        assert!(kc.contains("user: client"));
        let parsed: Value = serde_yaml::from_str(&kc).unwrap();
        assert_eq!(parsed["users"][0]["name"], "client");
    }

    #[test]
    fn reachable_kubeconfig_points_at_the_url_with_a_token() {
        let kc = reachable_kubeconfig("gw-app", "http://127.0.0.1:4321", "devcluster-gw-app");
        let parsed: Value = serde_yaml::from_str(&kc).unwrap();
        assert_eq!(
            parsed["clusters"][0]["cluster"]["server"],
            "http://127.0.0.1:4321"
        );
        assert_eq!(parsed["current-context"], "gw-app");
        assert_eq!(parsed["users"][0]["user"]["token"], "devcluster-gw-app");
        assert!(parsed["users"][0]["user"]["client-certificate-data"].is_null());
        assert!(parsed["clusters"][0]["cluster"]["insecure-skip-tls-verify"].is_null());
        let tls = reachable_kubeconfig("c", "https://127.0.0.1:1", "t");
        let parsed: Value = serde_yaml::from_str(&tls).unwrap();
        assert_eq!(
            parsed["clusters"][0]["cluster"]["insecure-skip-tls-verify"],
            true
        );
    }

    #[test]
    fn conditions_compare_without_times() {
        let a = json!([cond("Ready", true, "Available", "", "t1")]);
        let b = json!([cond("Ready", true, "Available", "", "t2")]);
        let c = json!([cond("Ready", false, "Creating", "", "t2")]);
        assert!(same_conditions(&a, &b));
        assert!(!same_conditions(&a, &c));
    }
}
