//! Admission webhooks end to end: a TLS webhook server inside the test (a CA generated with
//! rcgen in `caBundle`), configurations registered through kube, and writes through kube and
//! the real kubectl binary.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::needless_pass_by_value,
    clippy::too_many_lines
)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::Uri;
use base64::Engine as _;
use devcluster::DevCluster;
use devcluster::admission::{ServiceMapping, WebhookCertificates};
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::Command;
use tokio_rustls::TlsAcceptor;

const KUBECTL: &str = "/usr/bin/kubectl";

/// Every review a webhook server received: (path, query, review).
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<(String, String, Value)>>>);

impl Seen {
    fn on(&self, path: &str) -> Vec<Value> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _, _)| p == path)
            .map(|(_, _, v)| v.clone())
            .collect()
    }

    fn queries(&self, path: &str) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _, _)| p == path)
            .map(|(_, q, _)| q.clone())
            .collect()
    }
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// The webhook logic: `/validate` denies `data.mode: bad` and warns on `data.mode: old`,
/// `/deny-all` denies without a code, `/mutate` adds a label and a data key, `/slow` answers
/// after 20 s, `/mutate-size` copies `spec.want` into `spec.size`, anything else allows.
async fn review(State(seen): State<Seen>, uri: Uri, Json(review): Json<Value>) -> Json<Value> {
    let path = uri.path().to_string();
    seen.0.lock().unwrap().push((
        path.clone(),
        uri.query().unwrap_or_default().to_string(),
        review.clone(),
    ));
    let req = &review["request"];
    let uid = req["uid"].clone();
    let obj = if req["object"].is_null() {
        &req["oldObject"]
    } else {
        &req["object"]
    };
    let mut resp = json!({"uid": uid, "allowed": true});
    match path.as_str() {
        "/validate" => match obj["data"]["mode"].as_str() {
            Some("bad") => {
                resp = json!({"uid": uid, "allowed": false, "status": {
                    "code": 403, "reason": "Forbidden", "message": "mode \"bad\" is not allowed"}});
            }
            Some("old") => resp["warnings"] = json!(["mode \"old\" is deprecated"]),
            _ => {}
        },
        "/deny-all" => {
            resp = json!({"uid": uid, "allowed": false, "status": {"message": "denied by policy"}});
        }
        "/mutate" => {
            let mut ops = vec![if obj["metadata"]["labels"].is_object() {
                json!({"op": "add", "path": "/metadata/labels/mutated", "value": "true"})
            } else {
                json!({"op": "add", "path": "/metadata/labels", "value": {"mutated": "true"}})
            }];
            ops.push(json!({"op": "add", "path": "/data/injected", "value": "yes"}));
            resp["patchType"] = json!("JSONPatch");
            resp["patch"] = json!(b64(&Value::Array(ops).to_string()));
        }
        "/slow" => tokio::time::sleep(Duration::from_secs(20)).await,
        "/mutate-size" => {
            if let Some(want) = obj["spec"]["want"].as_i64() {
                let ops = json!([{"op": "add", "path": "/spec/size", "value": want}]);
                resp["patchType"] = json!("JSONPatch");
                resp["patch"] = json!(b64(&ops.to_string()));
            }
        }
        _ => {}
    }
    Json(json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": resp}))
}

struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    /// TLS connections accepted so far.
    accepted: Arc<AtomicUsize>,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, peer)) = self.tcp.accept().await else {
                continue;
            };
            if let Ok(s) = self.acceptor.accept(tcp).await {
                self.accepted.fetch_add(1, Ordering::SeqCst);
                return (s, peer);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}

/// A running HTTPS webhook server.
struct WebhookServer {
    addr: SocketAddr,
    ca_bundle: String,
    seen: Seen,
    /// TLS connections the server accepted.
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for WebhookServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl WebhookServer {
    async fn start() -> Self {
        let certs = WebhookCertificates::generate(&["127.0.0.1", "localhost", "hook.webhooks.svc"])
            .unwrap();
        let chain = vec![CertificateDer::from_pem_slice(certs.cert_pem.as_bytes()).unwrap()];
        let key = PrivateKeyDer::from_pem_slice(certs.key_pem.as_bytes()).unwrap();
        let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let seen = Seen::default();
        let router = axum::Router::new()
            .fallback(axum::routing::post(review))
            .with_state(seen.clone());
        let connections = Arc::new(AtomicUsize::new(0));
        let listener = TlsListener {
            tcp,
            acceptor: TlsAcceptor::from(Arc::new(cfg)),
            accepted: connections.clone(),
        };
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self {
            addr,
            ca_bundle: certs.ca_bundle(),
            seen,
            connections,
            task,
        }
    }

    fn url(&self, path: &str) -> Value {
        json!({"url": format!("https://127.0.0.1:{}{path}", self.addr.port()), "caBundle": self.ca_bundle})
    }
}

/// A webhook entry for `ConfigMap`s (all operations) with the given client config.
fn hook(name: &str, client: Value) -> Value {
    json!({
        "name": name,
        "clientConfig": client,
        "rules": [{"operations": ["CREATE", "UPDATE", "DELETE"], "apiGroups": [""],
                   "apiVersions": ["v1"], "resources": ["configmaps"]}],
        "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
    })
}

async fn cluster() -> DevCluster {
    DevCluster::builder()
        .admission_webhooks(true)
        .start()
        .await
        .unwrap()
}

async fn validating(dc: &DevCluster, name: &str, webhooks: Vec<Value>) {
    let api: Api<ValidatingWebhookConfiguration> = Api::all(dc.client());
    let cfg = serde_json::from_value(json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": webhooks,
    }))
    .unwrap();
    api.create(&PostParams::default(), &cfg).await.unwrap();
}

async fn mutating(dc: &DevCluster, name: &str, webhooks: Vec<Value>) {
    let api: Api<MutatingWebhookConfiguration> = Api::all(dc.client());
    let cfg = serde_json::from_value(json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": webhooks,
    }))
    .unwrap();
    api.create(&PostParams::default(), &cfg).await.unwrap();
}

fn config_map(name: &str, labels: Value, mode: &str) -> ConfigMap {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "labels": labels},
        "data": {"mode": mode},
    }))
    .unwrap()
}

async fn namespace(dc: &DevCluster, name: &str, labels: Value) {
    let api: Api<Namespace> = Api::all(dc.client());
    let ns = serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap();
    api.create(&PostParams::default(), &ns).await.unwrap();
}

/// Creates a `ConfigMap` and returns the API error status, if any.
async fn try_create(api: &Api<ConfigMap>, cm: &ConfigMap) -> Option<kube::core::Status> {
    match api.create(&PostParams::default(), cm).await {
        Ok(_) => None,
        Err(kube::Error::Api(s)) => Some(*s),
        Err(e) => panic!("unexpected client error: {e}"),
    }
}

/// Runs kubectl against the cluster; returns (success, stdout, stderr).
async fn kubectl(dc: &DevCluster, args: &[&str]) -> (bool, String, String) {
    let dir: PathBuf = dc.kubeconfig_path().parent().unwrap().join("kubectl-home");
    std::fs::create_dir_all(&dir).unwrap();
    let out = tokio::time::timeout(
        Duration::from_mins(2),
        Command::new(KUBECTL)
            .arg("--kubeconfig")
            .arg(dc.kubeconfig_path())
            .arg("--cache-dir")
            .arg(dir.join("cache"))
            .args(args)
            .env("HOME", &dir)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("kubectl finished")
    .expect("kubectl ran");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn manifest(dc: &DevCluster, file: &str, text: &str) -> String {
    let p = dc.kubeconfig_path().parent().unwrap().join(file);
    std::fs::write(&p, text).unwrap();
    p.to_string_lossy().into_owned()
}

#[tokio::test]
async fn validating_denial_reaches_kube_and_kubectl() {
    let wh = WebhookServer::start().await;
    let dc = cluster().await;
    validating(
        &dc,
        "modes",
        vec![hook("validate.example.io", wh.url("/validate"))],
    )
    .await;
    let api: Api<ConfigMap> = Api::namespaced(dc.client(), "default");

    let s = try_create(&api, &config_map("bad", json!({}), "bad"))
        .await
        .expect("denied");
    assert_eq!(s.code, 403);
    assert_eq!(s.reason, "Forbidden");
    assert_eq!(
        s.message,
        "admission webhook \"validate.example.io\" denied the request: mode \"bad\" is not allowed"
    );
    assert!(api.get_opt("bad").await.unwrap().is_none());
    assert!(
        try_create(&api, &config_map("good", json!({}), "fine"))
            .await
            .is_none()
    );

    let path = manifest(
        &dc,
        "bad.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bad-cli\n  namespace: default\ndata:\n  mode: bad\n",
    );
    let (ok, _, err) = kubectl(&dc, &["apply", "-f", &path]).await;
    assert!(!ok, "kubectl apply must fail");
    assert!(
        err.contains(&format!(
            "Error from server (Forbidden): error when creating \"{path}\""
        )),
        "{err}"
    );
    assert!(
        err.contains(
            "admission webhook \"validate.example.io\" denied the request: mode \"bad\" is not allowed"
        ),
        "{err}"
    );
    assert!(api.get_opt("bad-cli").await.unwrap().is_none());

    // The review request carries what kube-apiserver sends.
    let reviews = wh.seen.on("/validate");
    let first = reviews
        .iter()
        .find(|r| r["request"]["name"] == "bad")
        .expect("reviewed");
    assert_eq!(first["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(first["kind"], "AdmissionReview");
    let r = &first["request"];
    assert_eq!(r["operation"], "CREATE");
    assert_eq!(
        r["kind"],
        json!({"group": "", "version": "v1", "kind": "ConfigMap"})
    );
    assert_eq!(
        r["resource"],
        json!({"group": "", "version": "v1", "resource": "configmaps"})
    );
    assert_eq!(r["requestKind"], r["kind"]);
    assert_eq!(r["requestResource"], r["resource"]);
    assert_eq!(r["namespace"], "default");
    assert_eq!(r["dryRun"], false);
    assert_eq!(r["options"]["kind"], "CreateOptions");
    assert_eq!(r["userInfo"]["username"], "system:admin");
    assert_eq!(r["object"]["data"]["mode"], "bad");
    assert!(r["oldObject"].is_null());
    assert!(r["uid"].as_str().is_some_and(|u| !u.is_empty()));
    assert!(
        wh.seen
            .queries("/validate")
            .iter()
            .all(|q| q == "timeout=10s")
    );
}

#[tokio::test]
async fn allowed_writes_carry_warnings_to_kubectl() {
    let wh = WebhookServer::start().await;
    let dc = cluster().await;
    validating(
        &dc,
        "modes",
        vec![hook("validate.example.io", wh.url("/validate"))],
    )
    .await;
    let path = manifest(
        &dc,
        "old.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: legacy\n  namespace: default\ndata:\n  mode: old\n",
    );
    let (ok, out, err) = kubectl(&dc, &["apply", "-f", &path]).await;
    assert!(ok, "stdout: {out}\nstderr: {err}");
    assert!(err.contains("Warning: mode \"old\" is deprecated"), "{err}");

    // An update is reviewed with the old object.
    let api: Api<ConfigMap> = Api::namespaced(dc.client(), "default");
    api.patch(
        "legacy",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"mode": "new"}})),
    )
    .await
    .unwrap();
    let update = wh
        .seen
        .on("/validate")
        .into_iter()
        .find(|r| r["request"]["operation"] == "UPDATE")
        .expect("update reviewed");
    assert_eq!(update["request"]["name"], "legacy");
    assert_eq!(update["request"]["options"]["kind"], "UpdateOptions");
    assert_eq!(update["request"]["oldObject"]["data"]["mode"], "old");
    assert_eq!(update["request"]["object"]["data"]["mode"], "new");
}

#[tokio::test]
async fn mutating_patches_apply_before_validating_webhooks() {
    let wh = WebhookServer::start().await;
    let dc = cluster().await;
    mutating(
        &dc,
        "inject",
        vec![hook("mutate.example.io", wh.url("/mutate"))],
    )
    .await;
    validating(
        &dc,
        "observe",
        vec![hook("observe.example.io", wh.url("/observe"))],
    )
    .await;
    let api: Api<ConfigMap> = Api::namespaced(dc.client(), "default");
    let created = api
        .create(
            &PostParams::default(),
            &config_map("m", json!({"a": "b"}), "x"),
        )
        .await
        .unwrap();
    let labels = created.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels.get("mutated").map(String::as_str), Some("true"));
    assert_eq!(labels.get("a").map(String::as_str), Some("b"));
    let stored = api.get("m").await.unwrap();
    assert_eq!(
        stored
            .data
            .unwrap_or_default()
            .get("injected")
            .map(String::as_str),
        Some("yes")
    );
    let observed = wh.seen.on("/observe");
    assert_eq!(observed.len(), 1);
    assert_eq!(
        observed[0]["request"]["object"]["metadata"]["labels"]["mutated"],
        "true"
    );
    assert_eq!(observed[0]["request"]["object"]["data"]["injected"], "yes");
}

#[tokio::test]
async fn mutating_webhooks_run_in_order_of_configuration_name_then_list_order() {
    let wh = WebhookServer::start().await;
    let dc = cluster().await;
    mutating(&dc, "z-last", vec![hook("z.example.io", wh.url("/z"))]).await;
    mutating(&dc, "m-empty", vec![]).await;
    mutating(
        &dc,
        "a-first",
        vec![
            hook("a2.example.io", wh.url("/a2")),
            hook("a1.example.io", wh.url("/a1")),
        ],
    )
    .await;
    let api: Api<ConfigMap> = Api::namespaced(dc.client(), "default");
    api.create(&PostParams::default(), &config_map("o", json!({}), "x"))
        .await
        .unwrap();
    let order: Vec<String> = wh
        .seen
        .0
        .lock()
        .unwrap()
        .iter()
        .map(|(p, _, _)| p.clone())
        .collect();
    assert_eq!(
        order,
        ["/a2", "/a1", "/z"],
        "a configuration without webhooks is skipped"
    );
}

#[tokio::test]
async fn rules_selectors_and_match_conditions_decide_which_writes_are_reviewed() {
    let wh = WebhookServer::start().await;
    let dc = cluster().await;
    namespace(&dc, "guarded", json!({"env": "guarded"})).await;
    namespace(&dc, "open", json!({"env": "open"})).await;
    let mut selective = hook("selective.example.io", wh.url("/deny-all"));
    selective["rules"][0]["operations"] = json!(["CREATE"]);
    selective["namespaceSelector"] =
        json!({"matchExpressions": [{"key": "env", "operator": "In", "values": ["guarded"]}]});
    selective["objectSelector"] = json!({"matchLabels": {"checked": "yes"}});
    let mut protect = hook("protect.example.io", wh.url("/deny-all"));
    protect["rules"][0]["operations"] = json!(["DELETE"]);
    protect["objectSelector"] = json!({"matchLabels": {"protected": "true"}});
    let mut named = hook("named.example.io", wh.url("/deny-all"));
    named["rules"][0]["operations"] = json!(["*"]);
    named["matchConditions"] = json!([
        {"name": "deny-prefix", "expression": "object != null && object.metadata.name.startsWith('deny-')"}
    ]);
    validating(&dc, "policies", vec![selective, protect, named]).await;

    let guarded: Api<ConfigMap> = Api::namespaced(dc.client(), "guarded");
    let open: Api<ConfigMap> = Api::namespaced(dc.client(), "open");
    let checked = json!({"checked": "yes"});

    let s = try_create(&guarded, &config_map("c1", checked.clone(), "x"))
        .await
        .expect("namespace and object selectors match");
    assert_eq!(s.code, 400);
    assert_eq!(
        s.message,
        "admission webhook \"selective.example.io\" denied the request: denied by policy"
    );
    assert!(
        try_create(&open, &config_map("c1", checked.clone(), "x"))
            .await
            .is_none(),
        "namespace selector does not match"
    );
    assert!(
        try_create(&guarded, &config_map("c2", json!({"checked": "no"}), "x"))
            .await
            .is_none(),
        "object selector does not match"
    );
    let secrets: Api<Secret> = Api::namespaced(dc.client(), "guarded");
    let secret = serde_json::from_value(
        json!({"metadata": {"name": "s", "labels": {"checked": "yes"}}, "stringData": {"k": "v"}}),
    )
    .unwrap();
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("resource not in the rules");
    // UPDATE is not in the rule's operations, even when the labels now match.
    guarded
        .patch(
            "c2",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"checked": "yes"}}})),
        )
        .await
        .expect("operation not in the rules");

    // DELETE of a protected object is reviewed with oldObject (object is null).
    guarded
        .patch(
            "c2",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"protected": "true"}}})),
        )
        .await
        .unwrap();
    let err = guarded
        .delete("c2", &DeleteParams::default())
        .await
        .expect_err("protected");
    let kube::Error::Api(s) = err else {
        panic!("unexpected error {err}")
    };
    assert_eq!(
        s.message,
        "admission webhook \"protect.example.io\" denied the request: denied by policy"
    );
    assert!(guarded.get_opt("c2").await.unwrap().is_some());
    let delete_review = wh
        .seen
        .on("/deny-all")
        .into_iter()
        .find(|r| r["request"]["operation"] == "DELETE")
        .expect("delete reviewed");
    assert!(delete_review["request"]["object"].is_null());
    assert_eq!(
        delete_review["request"]["oldObject"]["metadata"]["name"],
        "c2"
    );
    assert_eq!(delete_review["request"]["options"]["kind"], "DeleteOptions");
    open.delete("c1", &DeleteParams::default())
        .await
        .expect("unprotected delete");

    // matchConditions (CEL) narrow a matching rule further.
    let s = try_create(&open, &config_map("deny-me", json!({}), "x"))
        .await
        .expect("match condition holds");
    assert_eq!(
        s.message,
        "admission webhook \"named.example.io\" denied the request: denied by policy"
    );
    assert!(
        try_create(&open, &config_map("keep-me", json!({}), "x"))
            .await
            .is_none()
    );
}

/// A local port nothing listens on.
async fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

#[tokio::test]
async fn failure_policy_decides_when_the_webhook_is_down() {
    let wh = WebhookServer::start().await;
    let port = closed_port().await;
    let down =
        json!({"url": format!("https://127.0.0.1:{port}/validate"), "caBundle": wh.ca_bundle});
    let dc = cluster().await;
    let mut fail = hook("down.example.io", down.clone());
    fail["failurePolicy"] = json!("Fail");
    fail["objectSelector"] = json!({"matchLabels": {"policy": "fail"}});
    let mut ignore = hook("ignored.example.io", down);
    ignore["failurePolicy"] = json!("Ignore");
    ignore["objectSelector"] = json!({"matchLabels": {"policy": "ignore"}});
    validating(&dc, "down", vec![fail, ignore]).await;
    let api: Api<ConfigMap> = Api::namespaced(dc.client(), "default");

    let s = try_create(&api, &config_map("f", json!({"policy": "fail"}), "x"))
        .await
        .expect("fails closed");
    assert_eq!(s.code, 500);
    assert_eq!(s.reason, "InternalError");
    assert!(
        s.message
            .starts_with("Internal error occurred: failed calling webhook \"down.example.io\": failed to call webhook: Post \"https://127.0.0.1:"),
        "{}",
        s.message
    );
    assert!(api.get_opt("f").await.unwrap().is_none());
    assert!(
        try_create(&api, &config_map("i", json!({"policy": "ignore"}), "x"))
            .await
            .is_none(),
        "fails open"
    );

    // A webhook whose certificate is not trusted by caBundle counts as unreachable.
    let other = WebhookServer::start().await;
    let mut untrusted = hook("untrusted.example.io", wh.url("/validate"));
    untrusted["clientConfig"]["caBundle"] = json!(other.ca_bundle);
    untrusted["objectSelector"] = json!({"matchLabels": {"policy": "tls"}});
    validating(&dc, "untrusted", vec![untrusted]).await;
    let s = try_create(&api, &config_map("t", json!({"policy": "tls"}), "x"))
        .await
        .expect("TLS verification fails");
    assert_eq!(s.code, 500);
    assert!(
        s.message
            .contains("failed calling webhook \"untrusted.example.io\""),
        "{}",
        s.message
    );
}

#[tokio::test]
async fn webhook_connections_are_kept_between_calls() {
    let wh = WebhookServer::start().await;
    let dc = cluster().await;
    validating(
        &dc,
        "kept",
        vec![hook("kept.example.io", wh.url("/validate"))],
    )
    .await;
    let api: Api<ConfigMap> = Api::namespaced(dc.client(), "default");
    for i in 0..5 {
        assert!(
            try_create(&api, &config_map(&format!("c{i}"), json!({}), "x"))
                .await
                .is_none()
        );
    }
    assert_eq!(wh.seen.on("/validate").len(), 5, "every write was reviewed");
    assert_eq!(
        wh.connections.load(Ordering::SeqCst),
        1,
        "one TLS handshake for five calls"
    );
}

/// A plain-HTTP webhook that allows everything and closes each connection after its answer
/// (without saying so, as a server's idle timeout would); returns its port and a count of
/// the connections it accepted.
async fn closing_webhook() -> (u16, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else {
                continue;
            };
            count.fetch_add(1, Ordering::SeqCst);
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let body = loop {
                let n = tcp.read(&mut chunk).await.unwrap();
                assert!(n > 0, "the request ended early");
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).to_string();
                let Some(end) = text.find("\r\n\r\n") else {
                    continue;
                };
                let length: usize = text[..end]
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse().unwrap())
                    })
                    .unwrap();
                if buf.len() >= end + 4 + length {
                    break buf[end + 4..end + 4 + length].to_vec();
                }
            };
            let review: Value = serde_json::from_slice(&body).unwrap();
            let answer = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                "response": {"uid": review["request"]["uid"], "allowed": true}})
            .to_string();
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                answer.len()
            );
            tcp.write_all(head.as_bytes()).await.unwrap();
            tcp.write_all(answer.as_bytes()).await.unwrap();
            drop(tcp);
        }
    });
    (port, accepted, task)
}

#[tokio::test]
async fn a_connection_the_webhook_closed_is_not_reused() {
    let (port, accepted, task) = closing_webhook().await;
    let dc = cluster().await;
    let client = json!({"url": format!("http://127.0.0.1:{port}/validate")});
    let mut strict = hook("closing.example.io", client);
    strict["failurePolicy"] = json!("Fail");
    validating(&dc, "closing", vec![strict]).await;
    let api: Api<ConfigMap> = Api::namespaced(dc.client(), "default");
    for i in 0..3 {
        assert_eq!(
            try_create(&api, &config_map(&format!("c{i}"), json!({}), "x")).await,
            None,
            "call {i} succeeds on a new connection"
        );
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 3);
    task.abort();
}

#[tokio::test]
async fn slow_webhooks_time_out() {
    let wh = WebhookServer::start().await;
    let dc = cluster().await;
    let mut fail = hook("slow.example.io", wh.url("/slow"));
    fail["timeoutSeconds"] = json!(1);
    fail["objectSelector"] = json!({"matchLabels": {"policy": "fail"}});
    let mut ignore = hook("slow-ignored.example.io", wh.url("/slow"));
    ignore["timeoutSeconds"] = json!(1);
    ignore["failurePolicy"] = json!("Ignore");
    ignore["objectSelector"] = json!({"matchLabels": {"policy": "ignore"}});
    validating(&dc, "slow", vec![fail, ignore]).await;
    let api: Api<ConfigMap> = Api::namespaced(dc.client(), "default");

    let s = try_create(&api, &config_map("f", json!({"policy": "fail"}), "x"))
        .await
        .expect("times out");
    assert_eq!(s.code, 500);
    assert!(
        s.message
            .contains("failed calling webhook \"slow.example.io\"")
            && s.message.ends_with("context deadline exceeded"),
        "{}",
        s.message
    );
    assert!(wh.seen.queries("/slow").iter().all(|q| q == "timeout=1s"));
    assert!(
        try_create(&api, &config_map("i", json!({"policy": "ignore"}), "x"))
            .await
            .is_none()
    );
    assert!(api.get_opt("i").await.unwrap().is_some());
}

#[tokio::test]
async fn dry_run_requests_respect_side_effects() {
    let wh = WebhookServer::start().await;
    let dc = cluster().await;
    let mut clean = hook("clean.example.io", wh.url("/validate"));
    clean["sideEffects"] = json!("NoneOnDryRun");
    clean["objectSelector"] = json!({"matchLabels": {"hook": "clean"}});
    let mut effects = hook("effects.example.io", wh.url("/effects"));
    effects["sideEffects"] = json!("Some");
    effects["objectSelector"] = json!({"matchLabels": {"hook": "effects"}});
    validating(&dc, "dry", vec![clean, effects]).await;
    let api: Api<ConfigMap> = Api::namespaced(dc.client(), "default");
    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };

    // A webhook without side effects is called, told it is a dry run, and can deny.
    let err = api
        .create(&dry, &config_map("d", json!({"hook": "clean"}), "bad"))
        .await
        .expect_err("denied in dry run");
    let kube::Error::Api(s) = err else {
        panic!("unexpected error {err}")
    };
    assert_eq!(s.code, 403);
    let reviews = wh.seen.on("/validate");
    assert_eq!(reviews.len(), 1);
    assert_eq!(reviews[0]["request"]["dryRun"], true);
    assert_eq!(reviews[0]["request"]["options"]["dryRun"], json!(["All"]));
    api.create(&dry, &config_map("d", json!({"hook": "clean"}), "fine"))
        .await
        .expect("allowed dry run");
    assert!(
        api.get_opt("d").await.unwrap().is_none(),
        "dry run stores nothing"
    );

    // A webhook with side effects is not called for a dry run; the request is refused.
    let err = api
        .create(&dry, &config_map("e", json!({"hook": "effects"}), "fine"))
        .await
        .expect_err("dry run unsupported");
    let kube::Error::Api(s) = err else {
        panic!("unexpected error {err}")
    };
    assert_eq!(s.code, 400);
    assert_eq!(
        s.message,
        "admission webhook \"effects.example.io\" does not support dry run"
    );
    assert!(wh.seen.on("/effects").is_empty());
    api.create(
        &PostParams::default(),
        &config_map("e", json!({"hook": "effects"}), "fine"),
    )
    .await
    .expect("real request");
    assert_eq!(wh.seen.on("/effects").len(), 1);
}

fn service_client(wh: &WebhookServer, path: &str) -> Value {
    json!({"service": {"namespace": "webhooks", "name": "hook", "path": path, "port": 443},
           "caBundle": wh.ca_bundle})
}

#[tokio::test]
async fn services_resolve_through_mappings() {
    let wh = WebhookServer::start().await;
    let dc = DevCluster::builder()
        .admission_webhooks(true)
        .webhook_service(ServiceMapping::new(
            "webhooks",
            "hook",
            Some(443),
            wh.addr.to_string(),
        ))
        .start()
        .await
        .unwrap();
    validating(
        &dc,
        "svc",
        vec![hook("svc.example.io", service_client(&wh, "/validate"))],
    )
    .await;
    let api: Api<ConfigMap> = Api::namespaced(dc.client(), "default");
    let s = try_create(&api, &config_map("bad", json!({}), "bad"))
        .await
        .expect("denied through the mapped service");
    assert_eq!(
        s.message,
        "admission webhook \"svc.example.io\" denied the request: mode \"bad\" is not allowed"
    );
    assert!(
        try_create(&api, &config_map("good", json!({}), "fine"))
            .await
            .is_none()
    );
    assert_eq!(wh.seen.on("/validate").len(), 2);
}

#[tokio::test]
async fn services_resolve_through_the_address_annotation() {
    let wh = WebhookServer::start().await;
    let dc = cluster().await;
    validating(
        &dc,
        "svc",
        vec![hook("svc.example.io", service_client(&wh, "/validate"))],
    )
    .await;
    let api: Api<ConfigMap> = Api::namespaced(dc.client(), "default");

    // Neither mapped nor stored: the call fails (failurePolicy defaults to Fail).
    let s = try_create(&api, &config_map("early", json!({}), "fine"))
        .await
        .expect("no address");
    assert_eq!(s.code, 500);
    assert!(
        s.message.contains(
            "failed calling webhook \"svc.example.io\": failed to call webhook: Post \"https://hook.webhooks.svc:443/validate?timeout=10s\": service \"hook\" not found"
        ),
        "{}",
        s.message
    );

    namespace(&dc, "webhooks", json!({})).await;
    let services: Api<Service> = Api::namespaced(dc.client(), "webhooks");
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "hook", "annotations": {"devcluster.io/address": wh.addr.to_string()}},
        "spec": {"ports": [{"port": 443, "targetPort": 9443}]},
    }))
    .unwrap();
    services.create(&PostParams::default(), &svc).await.unwrap();
    let s = try_create(&api, &config_map("bad", json!({}), "bad"))
        .await
        .expect("denied through the annotated service");
    assert_eq!(
        s.message,
        "admission webhook \"svc.example.io\" denied the request: mode \"bad\" is not allowed"
    );
    assert!(
        try_create(&api, &config_map("good", json!({}), "fine"))
            .await
            .is_none()
    );
}

async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_mins(1);
    while tokio::time::Instant::now() < deadline {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

fn gadgets(dc: &DevCluster) -> Api<DynamicObject> {
    let ar = ApiResource {
        group: "test.example.io".into(),
        version: "v1".into(),
        api_version: "test.example.io/v1".into(),
        kind: "Gadget".into(),
        plural: "gadgets".into(),
    };
    Api::namespaced_with(dc.client(), "default", &ar)
}

fn gadget(name: &str, want: i64) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "test.example.io/v1", "kind": "Gadget",
        "metadata": {"name": name},
        "spec": {"want": want, "size": 1},
    }))
    .unwrap()
}

#[tokio::test]
async fn custom_resources_are_revalidated_after_mutation_and_subresources_match_separately() {
    let wh = WebhookServer::start().await;
    let dc = cluster().await;
    let crds: Api<CustomResourceDefinition> = Api::all(dc.client());
    let crd = serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "gadgets.test.example.io"},
        "spec": {
            "group": "test.example.io", "scope": "Namespaced",
            "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget", "listKind": "GadgetList"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": {
                        "want": {"type": "integer"},
                        "size": {"type": "integer", "maximum": 10}}},
                    "status": {"type": "object", "properties": {"phase": {"type": "string"}}}}}}}],
        },
    }))
    .unwrap();
    crds.create(&PostParams::default(), &crd).await.unwrap();
    let api = gadgets(&dc);
    eventually("gadgets served", || {
        let api = api.clone();
        async move { api.list(&kube::api::ListParams::default()).await.is_ok() }
    })
    .await;
    let mut size = hook("size.example.io", wh.url("/mutate-size"));
    size["rules"] = json!([{"operations": ["CREATE", "UPDATE"], "apiGroups": ["test.example.io"],
        "apiVersions": ["*"], "resources": ["gadgets"], "scope": "Namespaced"}]);
    mutating(&dc, "size", vec![size]).await;
    let mut frozen = hook("frozen-status.example.io", wh.url("/deny-all"));
    frozen["rules"] = json!([{"operations": ["UPDATE"], "apiGroups": ["test.example.io"],
        "apiVersions": ["v1"], "resources": ["*/status"]}]);
    validating(&dc, "frozen", vec![frozen]).await;

    let created = api
        .create(&PostParams::default(), &gadget("small", 3))
        .await
        .unwrap();
    assert_eq!(created.data["spec"]["size"], 3, "the patch is applied");

    // The patched object goes through the schema again: size 50 exceeds the maximum.
    let err = api
        .create(&PostParams::default(), &gadget("large", 50))
        .await
        .expect_err("schema rejects the mutation");
    let kube::Error::Api(s) = err else {
        panic!("unexpected error {err}")
    };
    assert_eq!(s.code, 422, "{}", s.message);
    assert!(s.message.contains("spec.size"), "{}", s.message);
    assert!(api.get_opt("large").await.unwrap().is_none());

    // `*/status` matches the status subresource only.
    api.patch(
        "small",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"want": 4}})),
    )
    .await
    .expect("main resource update is not matched by */status");
    // The update changed spec.want and the webhook spec.size: one generation step.
    let updated = api.get("small").await.unwrap();
    assert_eq!(updated.data["spec"]["size"], 4);
    assert_eq!(updated.metadata.generation, Some(2));
    // An update whose spec change the webhook undoes leaves the generation alone.
    api.patch(
        "small",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"size": 1}})),
    )
    .await
    .unwrap();
    let updated = api.get("small").await.unwrap();
    assert_eq!(updated.data["spec"]["size"], 4, "the webhook restores size");
    assert_eq!(
        updated.metadata.generation,
        Some(2),
        "nothing changed in the end"
    );
    api.patch(
        "small",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"touched": "yes"}}})),
    )
    .await
    .unwrap();
    assert_eq!(api.get("small").await.unwrap().metadata.generation, Some(2));
    let err = api
        .patch_status(
            "small",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Ready"}})),
        )
        .await
        .expect_err("status update denied");
    let kube::Error::Api(s) = err else {
        panic!("unexpected error {err}")
    };
    assert_eq!(
        s.message,
        "admission webhook \"frozen-status.example.io\" denied the request: denied by policy"
    );
    let status_review = wh.seen.on("/deny-all");
    assert_eq!(status_review.len(), 1);
    assert_eq!(status_review[0]["request"]["subResource"], "status");
    assert_eq!(
        status_review[0]["request"]["resource"],
        json!({"group": "test.example.io", "version": "v1", "resource": "gadgets"})
    );
}

/// `devcluster serve` calls webhooks by default and maps services given on the command line.
#[tokio::test]
async fn serve_maps_webhook_services_from_the_command_line() {
    use tokio::io::{AsyncBufReadExt, BufReader};

    let wh = WebhookServer::start().await;
    let dir =
        std::env::temp_dir().join(format!("devcluster-admission-serve-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    let mut child = Command::new(env!("CARGO_BIN_EXE_devcluster"))
        .arg("serve")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        // Authentication and RBAC are not what this test is about.
        .arg("--no-rbac")
        .arg("--webhook-service")
        .arg(format!("webhooks/hook:443={}", wh.addr))
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = tokio::time::timeout(Duration::from_mins(1), lines.next_line())
        .await
        .expect("server started")
        .unwrap()
        .unwrap_or_default();
    assert!(ready.starts_with("ready "), "{ready}");

    let run = |args: Vec<String>| {
        let kubeconfig = kubeconfig.clone();
        let dir = dir.clone();
        async move {
            let out = Command::new(KUBECTL)
                .arg("--kubeconfig")
                .arg(&kubeconfig)
                .arg("--cache-dir")
                .arg(dir.join("cache"))
                .args(&args)
                .env("HOME", &dir)
                .kill_on_drop(true)
                .output()
                .await
                .unwrap();
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        }
    };
    let config = dir.join("webhook.yaml");
    std::fs::write(
        &config,
        format!(
            "apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata:
  name: modes
webhooks:
- name: validate.example.io
  clientConfig:
    service: {{namespace: webhooks, name: hook, path: /validate}}
    caBundle: {}
  rules:
  - {{operations: [CREATE, UPDATE], apiGroups: [\"\"], apiVersions: [v1], resources: [configmaps]}}
  sideEffects: None
  admissionReviewVersions: [v1]
",
            wh.ca_bundle
        ),
    )
    .unwrap();
    // The served OpenAPI documents do not describe admissionregistration.k8s.io yet, so
    // kubectl's client-side schema check is skipped for this one object.
    let (ok, err) = run(vec![
        "apply".into(),
        "--validate=false".into(),
        "-f".into(),
        config.to_string_lossy().into(),
    ])
    .await;
    assert!(ok, "{err}");
    let bad = dir.join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bad\n  namespace: default\ndata:\n  mode: bad\n",
    )
    .unwrap();
    let (ok, err) = run(vec![
        "apply".into(),
        "-f".into(),
        bad.to_string_lossy().into(),
    ])
    .await;
    assert!(!ok);
    assert!(
        err.contains(
            "admission webhook \"validate.example.io\" denied the request: mode \"bad\" is not allowed"
        ),
        "{err}"
    );
    assert_eq!(wh.seen.on("/validate").len(), 1);
    let _ = child.kill().await;
    let _ = std::fs::remove_dir_all(&dir);
}
