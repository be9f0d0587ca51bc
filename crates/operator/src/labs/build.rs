//! Pure builders of every object the labs controller creates: Crossplane claims, Argo CD cluster
//! Secrets and Applications, the Argo Workflow and the Grafana datasource `ConfigMap`. All names,
//! labels and defaults live here.
//!
//! Every child lives outside the Experiment's ownership reach (other namespaces, or foreign
//! kinds), so instead of owner references it carries [`LABEL_EXPERIMENT`] and
//! [`LABEL_NAMESPACE`]; watches map it back to its Experiment and the finalizer deletes it.

use std::collections::BTreeMap;

use agentic_api::labs::{
    ComponentRef, LABEL_CLUSTER, LABEL_MANAGED_BY, MANAGED_BY, Target, WorkflowSpec,
};
use k8s_openapi::{
    api::core::v1::{Namespace, Secret},
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use kube::api::DynamicObject;
use serde_json::{Map, Value, json};

use super::{
    components::AppSource,
    config::{ClusterTypeMapping, HUB, LabsConfig},
};

/// Label of a copied kubeconfig: the target whose cluster it reaches.
pub const LABEL_PEER: &str = "experiments.illm.io/peer";
/// Label naming the owning Experiment.
pub const LABEL_EXPERIMENT: &str = "experiments.illm.io/experiment";
/// Short label naming the owning Experiment, for `kubectl get -l experiment=<name>`.
pub const LABEL_SHORT_EXPERIMENT: &str = "experiment";
/// Label naming the owning Experiment's namespace.
pub const LABEL_NAMESPACE: &str = "experiments.illm.io/namespace";
/// Label naming the target a child belongs to.
pub const LABEL_TARGET: &str = "experiments.illm.io/target";
/// Label naming the completion mode on Workflows (`workflow` or `manual`).
pub const LABEL_COMPLETION: &str = "experiments.illm.io/completion-mode";
/// Annotation holding a digest of the applied body; the apply stage skips unchanged children.
pub const ANNOTATION_HASH: &str = "experiments.illm.io/applied-hash";
/// Argo CD's cluster Secret label.
pub const ARGOCD_SECRET_TYPE: &str = "argocd.argoproj.io/secret-type";
/// Argo CD finalizer that deletes an Application's deployed resources with it.
pub const ARGOCD_RESOURCES_FINALIZER: &str = "resources-finalizer.argocd.argoproj.io";
/// Destination server of hub targets.
pub const IN_CLUSTER_SERVER: &str = "https://kubernetes.default.svc";
/// Label Grafana's sidecar selects datasource `ConfigMaps` by.
pub const GRAFANA_DATASOURCE_LABEL: &str = "grafana_datasource";
/// Short label naming the target, on tutorial kubeconfig Secrets (upstream's `target`).
pub const LABEL_SHORT_TARGET: &str = "target";

/// Errors of the builders (bad data in a foreign object).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// The connection Secret's kubeconfig cannot be used.
    #[error("connection Secret {secret} key {key}: {message}")]
    Kubeconfig {
        /// Secret `namespace/name`.
        secret: String,
        /// The key.
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// The Experiment a child belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner<'a> {
    /// Experiment name.
    pub name: &'a str,
    /// Experiment namespace.
    pub namespace: &'a str,
}

impl Owner<'_> {
    /// Labels every child carries.
    pub fn labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (LABEL_MANAGED_BY.to_owned(), MANAGED_BY.to_owned()),
            (LABEL_EXPERIMENT.to_owned(), self.name.to_owned()),
            (LABEL_NAMESPACE.to_owned(), self.namespace.to_owned()),
            (LABEL_SHORT_EXPERIMENT.to_owned(), self.name.to_owned()),
        ])
    }

    /// Label selector matching every child of this Experiment.
    pub fn selector(&self) -> String {
        format!(
            "{LABEL_EXPERIMENT}={},{LABEL_NAMESPACE}={}",
            self.name, self.namespace
        )
    }

    fn target_labels(&self, target: &str) -> BTreeMap<String, String> {
        let mut l = self.labels();
        l.insert(LABEL_TARGET.to_owned(), target.to_owned());
        l
    }
}

/// Claim (and cluster) name of a target: `<experiment>-<target>`.
pub fn claim_name(experiment: &str, target: &str) -> String {
    format!("{experiment}-{target}")
}

/// Name of a claim's connection Secret (in the claim's namespace).
pub fn connection_secret_name(claim: &str) -> String {
    format!("{claim}-conn")
}

/// Namespace of the connection Secrets that upstream's GKE Composition writes for its
/// composites.
pub const COMPOSITE_CONNECTION_NAMESPACE: &str = "crossplane-system";

/// Name of the connection Secret upstream's GKE Composition writes for composite `xr` (in
/// [`COMPOSITE_CONNECTION_NAMESPACE`]).
pub fn composite_connection_secret_name(xr: &str) -> String {
    format!("{xr}-cluster-conn")
}

/// Name of the Argo CD cluster Secret of a cluster.
pub fn cluster_secret_name(cluster: &str) -> String {
    format!("cluster-{cluster}")
}

/// Name of a target's Application.
pub fn application_name(experiment: &str, target: &str) -> String {
    format!("{experiment}-{target}")
}

/// Name of the experiment's Workflow.
pub fn workflow_name(experiment: &str) -> String {
    format!("{experiment}-validation")
}

/// Name of the experiment's Grafana datasource `ConfigMap`.
pub fn datasource_name(owner: Owner<'_>) -> String {
    format!("lab-{}-{}-datasource", owner.namespace, owner.name)
}

/// Name of the tutorial kubeconfig Secret of a target (in the Experiment's namespace).
pub fn tutorial_kubeconfig_name(experiment: &str, target: &str) -> String {
    format!("{experiment}-{target}-kubeconfig")
}

/// Namespace of a target's claim under `mapping`.
pub fn claim_namespace<'a>(mapping: &'a ClusterTypeMapping, owner: Owner<'a>) -> &'a str {
    mapping
        .namespace
        .as_deref()
        .filter(|n| !n.is_empty())
        .unwrap_or(owner.namespace)
}

/// FNV-1a digest of a JSON body, as hex.
pub fn digest(body: &Value) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in body.to_string().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Turns `body` into a `DynamicObject` annotated with its digest.
fn finish(mut body: Value) -> DynamicObject {
    let hash = digest(&body);
    if let Some(meta) = body.get_mut("metadata").and_then(Value::as_object_mut) {
        let annotations = meta
            .entry("annotations")
            .or_insert_with(|| json!({}))
            .as_object_mut();
        if let Some(a) = annotations {
            a.insert(ANNOTATION_HASH.to_owned(), Value::String(hash));
        }
    }
    serde_json::from_value(body).unwrap_or_else(|_| DynamicObject {
        types: None,
        metadata: kube::api::ObjectMeta::default(),
        data: Value::Null,
    })
}

/// The Crossplane claim of a non-hub target.
pub fn claim(owner: Owner<'_>, target: &Target, mapping: &ClusterTypeMapping) -> DynamicObject {
    let name = claim_name(owner.name, &target.name);
    let cluster = serde_json::to_value(&target.cluster).unwrap_or(Value::Null);
    let mut spec = Map::new();
    for (from, to) in &mapping.fields {
        let value = cluster
            .get(from)
            .filter(|v| !v.is_null())
            .or_else(|| mapping.defaults.get(from));
        if let Some(v) = value {
            spec.insert(to.clone(), v.clone());
        }
    }
    if !mapping.composite_delete_policy.is_empty() {
        spec.insert(
            "compositeDeletePolicy".into(),
            Value::String(mapping.composite_delete_policy.clone()),
        );
    }
    for (k, v) in &mapping.extra_spec {
        spec.insert(k.clone(), v.clone());
    }
    spec.insert(
        "writeConnectionSecretToRef".into(),
        json!({"name": connection_secret_name(&name)}),
    );
    let mut labels = owner.target_labels(&target.name);
    labels.insert(LABEL_CLUSTER.to_owned(), name.clone());
    finish(json!({
        "apiVersion": mapping.api_version,
        "kind": mapping.kind,
        "metadata": {
            "name": name,
            "namespace": claim_namespace(mapping, owner),
            "labels": labels,
        },
        "spec": spec,
    }))
}

fn yaml_str<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn named<'a>(list: Option<&'a Value>, name: &str, inner: &str) -> Option<&'a Value> {
    list?
        .as_array()?
        .iter()
        .find(|e| yaml_str(e, "name") == Some(name))?
        .get(inner)
}

/// Argo CD's cluster `config` JSON from a kubeconfig: the current context's CA and client
/// credentials (certificate and key, or bearer token).
pub fn argocd_cluster_config(
    kubeconfig: &str,
    secret: &str,
    key: &str,
) -> Result<String, BuildError> {
    let err = |message: String| BuildError::Kubeconfig {
        secret: secret.to_owned(),
        key: key.to_owned(),
        message,
    };
    let kc: Value = serde_yaml::from_str(kubeconfig).map_err(|e| err(format!("not YAML: {e}")))?;
    let current =
        yaml_str(&kc, "current-context").ok_or_else(|| err("no current-context".into()))?;
    let context = named(kc.get("contexts"), current, "context")
        .ok_or_else(|| err(format!("context {current:?} not found")))?;
    let cluster_name = yaml_str(context, "cluster").unwrap_or_default();
    let user_name = yaml_str(context, "user").unwrap_or_default();
    let cluster = named(kc.get("clusters"), cluster_name, "cluster")
        .ok_or_else(|| err(format!("cluster {cluster_name:?} not found")))?;
    let user = named(kc.get("users"), user_name, "user")
        .cloned()
        .unwrap_or(Value::Null);
    let mut tls = Map::new();
    if let Some(ca) = yaml_str(cluster, "certificate-authority-data") {
        tls.insert("caData".into(), ca.into());
    }
    if let Some(c) = yaml_str(&user, "client-certificate-data") {
        tls.insert("certData".into(), c.into());
    }
    if let Some(k) = yaml_str(&user, "client-key-data") {
        tls.insert("keyData".into(), k.into());
    }
    tls.insert(
        "insecure".into(),
        Value::Bool(
            cluster
                .get("insecure-skip-tls-verify")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        ),
    );
    let mut config = Map::new();
    config.insert("tlsClientConfig".into(), Value::Object(tls));
    if let Some(t) = yaml_str(&user, "token") {
        config.insert("bearerToken".into(), t.into());
    }
    Ok(Value::Object(config).to_string())
}

/// Base64 of `s`, as Secret `data` holds it.
fn b64(s: &str) -> Value {
    serde_json::to_value(k8s_openapi::ByteString(s.as_bytes().to_vec())).unwrap_or(Value::Null)
}

/// `https://<endpoint>` unless the endpoint already has a scheme.
pub fn server_url(endpoint: &str) -> String {
    if endpoint.starts_with("https://") || endpoint.starts_with("http://") {
        endpoint.to_owned()
    } else {
        format!("https://{endpoint}")
    }
}

/// Argo CD cluster Secret registering a provisioned cluster.
pub fn cluster_secret(
    owner: Owner<'_>,
    target: &str,
    cluster: &str,
    endpoint: &str,
    config_json: &str,
    config: &LabsConfig,
) -> DynamicObject {
    let mut labels = owner.target_labels(target);
    labels.insert(ARGOCD_SECRET_TYPE.to_owned(), "cluster".to_owned());
    labels.insert(LABEL_CLUSTER.to_owned(), cluster.to_owned());
    finish(json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": cluster_secret_name(cluster),
            "namespace": config.argocd_namespace,
            "labels": labels,
        },
        "type": "Opaque",
        // `data`, not `stringData`: server-side apply then compares like for like.
        "data": {
            "name": b64(cluster),
            "server": b64(&server_url(endpoint)),
            "config": b64(config_json),
        },
    }))
}

/// The Argo CD Application of a target (multi-source; `resources-finalizer` so deleting it
/// removes what it deployed).
pub fn application(
    owner: Owner<'_>,
    target: &str,
    server: &str,
    sources: &[AppSource],
    config: &LabsConfig,
) -> DynamicObject {
    finish(json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {
            "name": application_name(owner.name, target),
            "namespace": config.argocd_namespace,
            "labels": owner.target_labels(target),
            "finalizers": [ARGOCD_RESOURCES_FINALIZER],
        },
        "spec": {
            "project": "default",
            "sources": sources,
            "destination": {"server": server, "namespace": owner.name},
            "syncPolicy": {
                "automated": {"prune": true, "selfHeal": true},
                "syncOptions": ["CreateNamespace=true", "ServerSideApply=true"],
            },
        },
    }))
}

/// Workflow arguments: the user's `spec.workflow.params`, then `experiment-name`, then per
/// target with an endpoint `<target>-endpoint` and `<target>-name`, and `target-endpoint`/
/// `target-name` from the first such target (spec order). Sorted by name.
pub fn workflow_params(
    experiment: &str,
    spec: &WorkflowSpec,
    endpoints: &[(String, String)],
) -> BTreeMap<String, String> {
    let mut out = spec.params.clone().unwrap_or_default();
    out.insert("experiment-name".into(), experiment.to_owned());
    for (target, endpoint) in endpoints {
        out.insert(format!("{target}-endpoint"), endpoint.clone());
        out.insert(format!("{target}-name"), target.clone());
    }
    if let Some((target, endpoint)) = endpoints.first() {
        out.insert("target-endpoint".into(), endpoint.clone());
        out.insert("target-name".into(), target.clone());
    }
    out
}

/// The Argo Workflow running `spec.workflow.template`.
pub fn workflow(
    owner: Owner<'_>,
    spec: &WorkflowSpec,
    params: &BTreeMap<String, String>,
    config: &LabsConfig,
) -> DynamicObject {
    let mut labels = owner.labels();
    labels.insert(
        LABEL_COMPLETION.to_owned(),
        spec.completion.mode.as_str().to_owned(),
    );
    let parameters: Vec<Value> = params
        .iter()
        .map(|(k, v)| json!({"name": k, "value": v}))
        .collect();
    finish(json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {
            "name": workflow_name(owner.name),
            "namespace": config.workflow_namespace,
            "labels": labels,
        },
        "spec": {
            "serviceAccountName": config.workflow_service_account,
            "workflowTemplateRef": {"name": spec.template},
            "arguments": {"parameters": parameters},
        },
    }))
}

/// Grafana datasource `ConfigMap` (sidecar convention `grafana_datasource: "1"`) querying the
/// metrics store filtered to this experiment.
pub fn datasource(owner: Owner<'_>, config: &LabsConfig) -> DynamicObject {
    let mut labels = owner.labels();
    labels.insert(GRAFANA_DATASOURCE_LABEL.to_owned(), "1".to_owned());
    let file = json!({
        "apiVersion": 1,
        "datasources": [{
            "name": format!("experiment-{}-{}", owner.namespace, owner.name),
            "type": "prometheus",
            "access": "proxy",
            "url": config.metrics_url,
            "jsonData": {"customQueryParameters": format!("extra_label=experiment={}", owner.name)},
        }],
    });
    let rendered = serde_yaml::to_string(&file).unwrap_or_default();
    finish(json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": datasource_name(owner),
            "namespace": config.grafana_namespace,
            "labels": labels,
        },
        "data": {format!("{}-{}.yaml", owner.namespace, owner.name): rendered},
    }))
}

/// The tutorial kubeconfig Secret of a target (`spec.tutorial.exposeKubeconfig`): the target
/// cluster's kubeconfig in the Experiment's namespace, owned by the Experiment so that it goes
/// with it, and labelled `experiment` and `target` for `labctl`.
pub fn tutorial_kubeconfig(
    owner: Owner<'_>,
    owner_ref: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
    target: &str,
    kubeconfig: &str,
) -> DynamicObject {
    let mut labels = owner.target_labels(target);
    labels.insert(LABEL_SHORT_TARGET.to_owned(), target.to_owned());
    finish(json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": tutorial_kubeconfig_name(owner.name, target),
            "namespace": owner.namespace,
            "labels": labels,
            "ownerReferences": [owner_ref],
        },
        "type": "Opaque",
        "data": {"kubeconfig": b64(kubeconfig)},
    }))
}

/// The address of a hub Service for `status.tutorialStatus`: the first load-balancer
/// ingress IP, else its hostname, else the cluster IP (`None` for headless Services), as
/// `http://host[:port]` with the given port (else the Service's first port), the port left
/// out when it is 80 or 443. `None` when the Service has no address yet.
pub fn service_endpoint(
    service: &k8s_openapi::api::core::v1::Service,
    port: Option<i64>,
) -> Option<String> {
    let ingress = service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .and_then(|i| i.first());
    let spec = service.spec.as_ref();
    let host = ingress
        .and_then(|i| i.ip.clone().filter(|h| !h.is_empty()))
        .or_else(|| ingress.and_then(|i| i.hostname.clone().filter(|h| !h.is_empty())))
        .or_else(|| {
            spec.and_then(|s| s.cluster_ip.clone())
                .filter(|ip| !ip.is_empty() && ip != "None")
        })?;
    let port = port.or_else(|| {
        spec.and_then(|s| s.ports.as_ref())
            .and_then(|p| p.first())
            .map(|p| i64::from(p.port))
    });
    Some(match port {
        Some(p) if p != 80 && p != 443 => format!("http://{host}:{p}"),
        _ => format!("http://{host}"),
    })
}

/// The Component installing the Tailscale operator on targets whose metrics travel over
/// Tailscale (`observability.transport: tailscale`).
pub const TAILSCALE_COMPONENT: &str = "tailscale-operator";

/// Component references added to a target with `observability.enabled`: the metrics egress,
/// the metrics agent labelled with the experiment name and, when `tailscale` is set (a
/// provisioned target whose transport is Tailscale), the Tailscale operator. The Tailscale
/// operator gets no OAuth parameters: its credentials reach the target as a Secret (see
/// [`tailscale_oauth_secret`]), never through the Application.
pub fn observability_refs(experiment: &str, tailscale: bool) -> Vec<ComponentRef> {
    let mut refs = vec![
        ComponentRef {
            config: Some("metrics-egress".into()),
            ..ComponentRef::default()
        },
        ComponentRef {
            app: Some("metrics-agent".into()),
            params: Some(BTreeMap::from([(
                "alloy.extraEnv[0].value".to_owned(),
                experiment.to_owned(),
            )])),
            ..ComponentRef::default()
        },
    ];
    if tailscale {
        refs.push(ComponentRef {
            app: Some(TAILSCALE_COMPONENT.into()),
            ..ComponentRef::default()
        });
    }
    refs
}

/// Whether `target` gets the Tailscale operator: a provisioned (non-hub) target with
/// observability enabled over the `tailscale` transport. The hub never gets one (it runs its
/// own, and a second release there would fight it).
pub fn wants_tailscale(target: &Target) -> bool {
    target.cluster.type_.as_str() != HUB
        && target
            .observability
            .as_ref()
            .is_some_and(|o| o.enabled && o.transport == agentic_api::labs::Transport::Tailscale)
}

/// Where the Tailscale OAuth credentials are read on the hub (as upstream).
pub const TAILSCALE_SOURCE_NAMESPACE: &str = "tailscale";
/// Name of the hub's Tailscale OAuth Secret, and of its copy on a target: the Tailscale
/// operator chart installed without OAuth values reads Secret `operator-oauth` from its own
/// namespace.
pub const TAILSCALE_SECRET: &str = "operator-oauth";

/// The copy of the hub's Tailscale OAuth Secret `source` for a target cluster, in the
/// Application's destination namespace (the experiment's name), where the Tailscale operator
/// chart is installed.
pub fn tailscale_oauth_secret(owner: Owner<'_>, target: &str, source: &Secret) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(TAILSCALE_SECRET.into()),
            namespace: Some(owner.name.to_owned()),
            labels: Some(owner.target_labels(target)),
            ..ObjectMeta::default()
        },
        type_: source.type_.clone(),
        data: source.data.clone(),
        ..Secret::default()
    }
}

/// Secret `<experiment>/<peer>-cluster-kubeconfig` on `target`'s cluster: the kubeconfig of
/// another provisioned target `peer` of the same experiment (labelled with both).
pub fn peer_kubeconfig_secret(
    owner: Owner<'_>,
    target: &str,
    peer: &str,
    kubeconfig: &str,
) -> Secret {
    let mut labels = owner.target_labels(target);
    labels.insert(LABEL_PEER.to_owned(), peer.to_owned());
    Secret {
        metadata: ObjectMeta {
            name: Some(format!("{peer}-cluster-kubeconfig")),
            namespace: Some(owner.name.to_owned()),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([(
            "kubeconfig".to_owned(),
            k8s_openapi::ByteString(kubeconfig.as_bytes().to_vec()),
        )])),
        ..Secret::default()
    }
}

/// The namespace on a target cluster that holds [`tailscale_oauth_secret`] (Argo CD would
/// create it too, but the Secret must be there before the chart starts).
pub fn target_namespace(owner: Owner<'_>) -> Namespace {
    Namespace {
        metadata: ObjectMeta {
            name: Some(owner.name.to_owned()),
            labels: Some(BTreeMap::from([(
                LABEL_MANAGED_BY.to_owned(),
                MANAGED_BY.to_owned(),
            )])),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    }
}

/// Pod Security admission label: the level enforced in a namespace.
pub const LABEL_PSS_ENFORCE: &str = "pod-security.kubernetes.io/enforce";
/// Pod Security admission label: the policy version enforced.
pub const LABEL_PSS_ENFORCE_VERSION: &str = "pod-security.kubernetes.io/enforce-version";

/// The namespace `<experiment>` on the hub, where the Applications of hub targets deploy.
/// Upstream's labels (managed-by, Pod Security `privileged` at `latest`, so the components'
/// agents may run privileged pods) plus the Experiment's own labels, which mark it as this
/// Experiment's to delete at cleanup. Created only for Experiments with a hub target that
/// deploys something, and only when no namespace of that name exists yet.
pub fn hub_namespace(owner: Owner<'_>) -> Namespace {
    let mut labels = owner.labels();
    labels.insert(LABEL_PSS_ENFORCE.to_owned(), "privileged".to_owned());
    labels.insert(LABEL_PSS_ENFORCE_VERSION.to_owned(), "latest".to_owned());
    Namespace {
        metadata: ObjectMeta {
            name: Some(owner.name.to_owned()),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    }
}

#[cfg(test)]
mod tests {
    use agentic_api::labs::{ClusterSpec, ClusterType, CompletionMode, CompletionSpec};

    use super::*;
    use crate::labs::components::{AppHelm, AppHelmParameter};

    const OWNER: Owner<'static> = Owner {
        name: "gw",
        namespace: "experiments",
    };

    fn yaml(obj: &DynamicObject) -> String {
        serde_yaml::to_string(obj).unwrap()
    }

    #[test]
    fn tailscale_secret_copies_type_and_data_into_the_experiment_namespace() {
        let source: Secret = serde_yaml::from_str(
            "metadata: {name: operator-oauth, namespace: tailscale, labels: {team: net}, annotations: {a: b}}\ntype: Opaque\ndata: {client_id: aWQ=, client_secret: c2VjcmV0}\n",
        )
        .unwrap();
        let copy = tailscale_oauth_secret(OWNER, "app", &source);
        assert_eq!(
            serde_yaml::to_string(&copy).unwrap(),
            "apiVersion: v1\nkind: Secret\ndata:\n  client_id: aWQ=\n  client_secret: c2VjcmV0\nmetadata:\n  labels:\n    app.kubernetes.io/managed-by: experiment-operator\n    experiment: gw\n    experiments.illm.io/experiment: gw\n    experiments.illm.io/namespace: experiments\n    experiments.illm.io/target: app\n  name: operator-oauth\n  namespace: gw\ntype: Opaque\n"
        );
        let ns = target_namespace(OWNER);
        assert_eq!(ns.metadata.name.as_deref(), Some("gw"));
    }

    #[test]
    fn the_hub_namespace_has_upstreams_labels_and_the_owners() {
        let ns = hub_namespace(OWNER);
        assert_eq!(ns.metadata.name.as_deref(), Some("gw"));
        let labels = ns.metadata.labels.unwrap_or_default();
        let get = |k: &str| labels.get(k).map(String::as_str);
        assert_eq!(get(LABEL_MANAGED_BY), Some(MANAGED_BY));
        assert_eq!(get(LABEL_PSS_ENFORCE), Some("privileged"));
        assert_eq!(get(LABEL_PSS_ENFORCE_VERSION), Some("latest"));
        // The cleanup's selector finds it; another Experiment's does not.
        assert_eq!(get(LABEL_EXPERIMENT), Some(OWNER.name));
        assert_eq!(get(LABEL_NAMESPACE), Some(OWNER.namespace));
    }

    #[test]
    fn peer_kubeconfig_names_the_peer_and_holds_its_kubeconfig() {
        let secret = peer_kubeconfig_secret(OWNER, "app", "loadgen", "apiVersion: v1\n");
        assert_eq!(
            serde_yaml::to_string(&secret).unwrap(),
            "apiVersion: v1\nkind: Secret\ndata:\n  kubeconfig: YXBpVmVyc2lvbjogdjEK\nmetadata:\n  labels:\n    app.kubernetes.io/managed-by: experiment-operator\n    experiment: gw\n    experiments.illm.io/experiment: gw\n    experiments.illm.io/namespace: experiments\n    experiments.illm.io/peer: loadgen\n    experiments.illm.io/target: app\n  name: loadgen-cluster-kubeconfig\n  namespace: gw\ntype: Opaque\n"
        );
    }

    #[test]
    fn gke_claim_snapshot() {
        let config = LabsConfig::default();
        let target = Target {
            name: "app".into(),
            cluster: ClusterSpec {
                type_: ClusterType::Gke,
                node_count: Some(2),
                preemptible: Some(true),
                ..ClusterSpec::default()
            },
            ..Target::default()
        };
        let got = yaml(&claim(OWNER, &target, &config.cluster_types["gke"]));
        assert_eq!(
            got,
            r"apiVersion: illm.io/v1alpha1
kind: GKECluster
metadata:
  annotations:
    experiments.illm.io/applied-hash: 2f343dde196590cb
  labels:
    app.kubernetes.io/managed-by: experiment-operator
    experiment: gw
    experiments.illm.io/cluster: gw-app
    experiments.illm.io/experiment: gw
    experiments.illm.io/namespace: experiments
    experiments.illm.io/target: app
  name: gw-app
  namespace: experiments
spec:
  compositeDeletePolicy: Foreground
  diskSizeGb: 50
  machineType: e2-medium
  nodeCount: 2
  preemptible: true
  writeConnectionSecretToRef:
    name: gw-app-conn
  zone: us-central1-a
"
        );
    }

    #[test]
    fn claim_namespace_and_fields_follow_the_mapping() {
        let mut mapping = LabsConfig::default().cluster_types["vcluster"].clone();
        mapping.namespace = Some("clusters".into());
        mapping
            .fields
            .insert("nodeCount".into(), "parameters.nodes".into());
        mapping
            .extra_spec
            .insert("compositionRef".into(), json!({"name": "vc"}));
        let target = Target {
            name: "t".into(),
            cluster: ClusterSpec {
                type_: ClusterType::Gke,
                node_count: Some(3),
                ..ClusterSpec::default()
            },
            ..Target::default()
        };
        let c = claim(OWNER, &target, &mapping);
        assert_eq!(c.data["spec"]["compositeDeletePolicy"], "Foreground");
        mapping.composite_delete_policy = String::new();
        let c = claim(OWNER, &target, &mapping);
        assert!(
            c.data["spec"].get("compositeDeletePolicy").is_none(),
            "an empty policy leaves the field to the XRD's default"
        );
        assert_eq!(c.metadata.namespace.as_deref(), Some("clusters"));
        assert_eq!(c.data["spec"]["parameters.nodes"], 3);
        assert_eq!(c.data["spec"]["compositionRef"]["name"], "vc");
        assert_eq!(c.types.unwrap().kind, "VCluster");
    }

    #[test]
    fn cluster_secret_from_kubeconfig() {
        let kc = r"
apiVersion: v1
kind: Config
current-context: admin
contexts:
- name: admin
  context: {cluster: gke, user: client}
clusters:
- name: gke
  cluster: {server: 'https://203.0.113.7', certificate-authority-data: Q0E=}
users:
- name: client
  user: {client-certificate-data: Q0VSVA==, client-key-data: S0VZ}
";
        let cfg = argocd_cluster_config(kc, "experiments/gw-app-conn", "kubeconfig").unwrap();
        assert_eq!(
            cfg,
            r#"{"tlsClientConfig":{"caData":"Q0E=","certData":"Q0VSVA==","insecure":false,"keyData":"S0VZ"}}"#
        );
        let s = cluster_secret(
            OWNER,
            "app",
            "gw-app",
            "203.0.113.7",
            &cfg,
            &LabsConfig::default(),
        );
        let got = yaml(&s);
        assert!(
            got.contains("name: cluster-gw-app\n  namespace: argocd"),
            "{got}"
        );
        assert!(
            got.contains("argocd.argoproj.io/secret-type: cluster"),
            "{got}"
        );
        assert_eq!(s.data["data"]["server"], "aHR0cHM6Ly8yMDMuMC4xMTMuNw==");
        assert!(got.contains("experiments.illm.io/cluster: gw-app"), "{got}");
        let err = argocd_cluster_config("current-context: x\n", "s", "k").unwrap_err();
        assert_eq!(
            err.to_string(),
            "connection Secret s key k: context \"x\" not found"
        );
    }

    #[test]
    fn application_snapshot() {
        let sources = vec![AppSource {
            repo_url: "https://charts.example".into(),
            target_revision: "1.0.0".into(),
            chart: Some("web".into()),
            path: None,
            ref_: None,
            helm: Some(AppHelm {
                release_name: Some("web".into()),
                value_files: vec![],
                parameters: vec![AppHelmParameter {
                    name: "a".into(),
                    value: "1".into(),
                    force_string: Some(true),
                }],
                namespace: None,
            }),
            kustomize: None,
        }];
        let got = yaml(&application(
            OWNER,
            "app",
            IN_CLUSTER_SERVER,
            &sources,
            &LabsConfig::default(),
        ));
        let expected = r"apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  annotations:
    experiments.illm.io/applied-hash: HASH
  finalizers:
  - resources-finalizer.argocd.argoproj.io
  labels:
    app.kubernetes.io/managed-by: experiment-operator
    experiment: gw
    experiments.illm.io/experiment: gw
    experiments.illm.io/namespace: experiments
    experiments.illm.io/target: app
  name: gw-app
  namespace: argocd
spec:
  destination:
    namespace: gw
    server: https://kubernetes.default.svc
  project: default
  sources:
  - chart: web
    helm:
      parameters:
      - forceString: true
        name: a
        value: '1'
      releaseName: web
    repoURL: https://charts.example
    targetRevision: 1.0.0
  syncPolicy:
    automated:
      prune: true
      selfHeal: true
    syncOptions:
    - CreateNamespace=true
    - ServerSideApply=true
";
        let hash_line = got.lines().find(|l| l.contains("applied-hash")).unwrap();
        let got = got.replace(hash_line.split(": ").nth(1).unwrap(), "HASH");
        assert_eq!(got, expected);
    }

    #[test]
    fn workflow_params_are_deterministic() {
        let spec = WorkflowSpec {
            template: "gateway-validation".into(),
            completion: CompletionSpec {
                mode: CompletionMode::Workflow,
            },
            params: Some(BTreeMap::from([
                ("users".to_owned(), "10".to_owned()),
                ("experiment-name".to_owned(), "overridden".to_owned()),
            ])),
        };
        let endpoints = vec![
            ("app".to_owned(), "203.0.113.7".to_owned()),
            ("db".to_owned(), "203.0.113.8".to_owned()),
        ];
        let params = workflow_params("gw", &spec, &endpoints);
        let got = yaml(&workflow(OWNER, &spec, &params, &LabsConfig::default()));
        let body = got.split("spec:\n").nth(1).unwrap();
        assert_eq!(
            body,
            r"  arguments:
    parameters:
    - name: app-endpoint
      value: 203.0.113.7
    - name: app-name
      value: app
    - name: db-endpoint
      value: 203.0.113.8
    - name: db-name
      value: db
    - name: experiment-name
      value: gw
    - name: target-endpoint
      value: 203.0.113.7
    - name: target-name
      value: app
    - name: users
      value: '10'
  serviceAccountName: argo-workflow
  workflowTemplateRef:
    name: gateway-validation
"
        );
        assert!(
            got.contains("name: gw-validation\n  namespace: argo-workflows"),
            "{got}"
        );
        assert!(
            got.contains("experiments.illm.io/completion-mode: workflow"),
            "{got}"
        );
    }

    #[test]
    fn datasource_follows_the_sidecar_convention() {
        let ds = datasource(OWNER, &LabsConfig::default());
        assert_eq!(
            ds.metadata.name.as_deref(),
            Some("lab-experiments-gw-datasource")
        );
        assert_eq!(ds.metadata.namespace.as_deref(), Some("monitoring"));
        assert_eq!(
            ds.metadata.labels.as_ref().unwrap()["grafana_datasource"],
            "1"
        );
        let file = ds.data["data"]["experiments-gw.yaml"].as_str().unwrap();
        assert!(file.contains("name: experiment-experiments-gw"), "{file}");
        assert!(
            file.contains("customQueryParameters: extra_label=experiment=gw"),
            "{file}"
        );
        assert!(file.contains("type: prometheus"), "{file}");
    }

    #[test]
    fn tutorial_kubeconfig_snapshot() {
        let owner_ref = k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
            api_version: "experiments.illm.io/v1alpha1".into(),
            kind: "Experiment".into(),
            name: "gw".into(),
            uid: "u-1".into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        };
        let s = tutorial_kubeconfig(OWNER, &owner_ref, "app", "apiVersion: v1\n");
        assert_eq!(
            yaml(&s),
            r"apiVersion: v1
kind: Secret
metadata:
  annotations:
    experiments.illm.io/applied-hash: 90213e2dc4a0c56e
  labels:
    app.kubernetes.io/managed-by: experiment-operator
    experiment: gw
    experiments.illm.io/experiment: gw
    experiments.illm.io/namespace: experiments
    experiments.illm.io/target: app
    target: app
  name: gw-app-kubeconfig
  namespace: experiments
  ownerReferences:
  - apiVersion: experiments.illm.io/v1alpha1
    blockOwnerDeletion: true
    controller: true
    kind: Experiment
    name: gw
    uid: u-1
data:
  kubeconfig: YXBpVmVyc2lvbjogdjEK
type: Opaque
"
        );
    }

    #[test]
    fn service_endpoints_follow_the_upstream_rules() {
        let svc = |v: Value| -> k8s_openapi::api::core::v1::Service {
            serde_json::from_value(v).unwrap()
        };
        let lb = svc(json!({
            "spec": {"clusterIP": "10.96.0.9", "ports": [{"port": 8080}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "34.1.2.3", "hostname": "lb.example"}]}},
        }));
        assert_eq!(
            service_endpoint(&lb, None).as_deref(),
            Some("http://34.1.2.3:8080")
        );
        // The ref's port wins; 80 and 443 are left out.
        assert_eq!(
            service_endpoint(&lb, Some(80)).as_deref(),
            Some("http://34.1.2.3")
        );
        assert_eq!(
            service_endpoint(&lb, Some(443)).as_deref(),
            Some("http://34.1.2.3")
        );
        let host = svc(json!({
            "spec": {"clusterIP": "10.96.0.9", "ports": [{"port": 80}]},
            "status": {"loadBalancer": {"ingress": [{"hostname": "lb.example"}]}},
        }));
        assert_eq!(
            service_endpoint(&host, None).as_deref(),
            Some("http://lb.example")
        );
        let cluster_ip =
            svc(json!({"spec": {"clusterIP": "10.96.0.9", "ports": [{"port": 3000}]}}));
        assert_eq!(
            service_endpoint(&cluster_ip, None).as_deref(),
            Some("http://10.96.0.9:3000")
        );
        let headless = svc(json!({"spec": {"clusterIP": "None", "ports": [{"port": 3000}]}}));
        assert_eq!(service_endpoint(&headless, None), None);
        let no_ports = svc(json!({"spec": {"clusterIP": "10.96.0.9"}}));
        assert_eq!(
            service_endpoint(&no_ports, None).as_deref(),
            Some("http://10.96.0.9")
        );
    }

    #[test]
    fn digests_change_with_the_body() {
        assert_eq!(digest(&json!({"a": 1})), digest(&json!({"a": 1})));
        assert_ne!(digest(&json!({"a": 1})), digest(&json!({"a": 2})));
        assert_eq!(server_url("1.2.3.4"), "https://1.2.3.4");
        assert_eq!(server_url("https://x"), "https://x");
    }
}
