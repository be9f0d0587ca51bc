//! Admission webhooks: on every write, calls the webhooks registered in the stored
//! `admissionregistration.k8s.io/v1` `MutatingWebhookConfiguration` and
//! `ValidatingWebhookConfiguration` objects, the way kube-apiserver does (mutating first,
//! then validating).
//!
//! There is no cluster network, so a webhook's `clientConfig.service` is resolved to a local
//! address through a [`ServiceMapping`] or through the [`ADDRESS_ANNOTATION`] on the stored
//! Service. See `docs/devcluster.md`, section "Admission webhooks".

// `ApiError` is the crate's error type for every request-path hook.
#![allow(clippy::result_large_err)]

mod call;
mod certs;
mod matching;

pub use certs::{CertificateError, WebhookCertificates};

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use futures::future::BoxFuture;
use serde_json::{Value, json};

use crate::Cluster;
use crate::error::{ApiError, Cause};
use crate::hooks::{AdmissionHook, AdmissionRequest, Operation};
use crate::store::Obj;

use call::Endpoint;
use matching::{Attributes, Conditions};

/// Annotation on a stored Service giving the local `host:port` its webhooks listen on, e.g.
/// `devcluster.io/address: 127.0.0.1:9443`.
pub const ADDRESS_ANNOTATION: &str = "devcluster.io/address";

const GROUP: &str = "admissionregistration.k8s.io";
const MUTATING: &str = "mutatingwebhookconfigurations";
const VALIDATING: &str = "validatingwebhookconfigurations";
const DEFAULT_TIMEOUT_SECONDS: u64 = 10;
const MAX_TIMEOUT_SECONDS: u64 = 30;

/// A malformed `NAMESPACE/NAME[:PORT]=HOST:PORT` service mapping.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    /// The text does not have the `NAMESPACE/NAME[:PORT]=HOST:PORT` shape.
    #[error(
        "webhook service mapping {spec:?}: expected NAMESPACE/NAME[:PORT]=HOST:PORT, e.g. system/webhook:443=127.0.0.1:9443"
    )]
    Syntax {
        /// The rejected text.
        spec: String,
    },
    /// The service port is not a number from 1 to 65535.
    #[error(
        "webhook service mapping {spec:?}: service port {port:?} must be a number from 1 to 65535"
    )]
    Port {
        /// The rejected text.
        spec: String,
        /// The rejected port.
        port: String,
    },
}

/// Routes webhook calls for a `clientConfig.service` to a local address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceMapping {
    /// Service namespace.
    pub namespace: String,
    /// Service name.
    pub name: String,
    /// Service port this mapping is for; `None` maps every port.
    pub port: Option<u16>,
    /// Local `host:port` to connect to.
    pub address: String,
}

impl ServiceMapping {
    /// Maps `namespace/name` (on `port`, or on every port when `None`) to `address`.
    pub fn new(
        namespace: impl Into<String>,
        name: impl Into<String>,
        port: Option<u16>,
        address: impl Into<String>,
    ) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
            port,
            address: address.into(),
        }
    }
}

impl FromStr for ServiceMapping {
    type Err = MappingError;

    /// Parses `NAMESPACE/NAME[:PORT]=HOST:PORT`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let syntax = || MappingError::Syntax {
            spec: s.to_string(),
        };
        let (service, address) = s.split_once('=').ok_or_else(syntax)?;
        let (namespace, rest) = service.split_once('/').ok_or_else(syntax)?;
        let (name, port) =
            match rest.split_once(':') {
                Some((n, p)) => {
                    let port = p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| {
                        MappingError::Port {
                            spec: s.to_string(),
                            port: p.to_string(),
                        }
                    })?;
                    (n, Some(port))
                }
                None => (rest, None),
            };
        let address = address.trim();
        if namespace.is_empty()
            || name.is_empty()
            || address
                .rsplit_once(':')
                .is_none_or(|(h, p)| h.is_empty() || p.is_empty())
        {
            return Err(syntax());
        }
        Ok(Self::new(namespace, name, port, address))
    }
}

/// The admission hook that calls webhooks registered in the cluster.
#[derive(Debug, Clone, Default)]
pub struct WebhookAdmission {
    services: Vec<ServiceMapping>,
    /// Connections kept open to the webhooks (shared by clones).
    pool: std::sync::Arc<call::Pool>,
}

impl WebhookAdmission {
    /// A hook resolving `clientConfig.service` through `services` first, then through the
    /// [`ADDRESS_ANNOTATION`] of the stored Service.
    pub fn new(services: Vec<ServiceMapping>) -> Self {
        Self {
            services,
            pool: std::sync::Arc::default(),
        }
    }
}

impl AdmissionHook for WebhookAdmission {
    fn admit<'a>(
        &'a self,
        request: &'a AdmissionRequest<'a>,
        object: &'a mut Value,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(self.run(request, object))
    }
}

fn operation_name(op: Operation) -> &'static str {
    match op {
        Operation::Create => "CREATE",
        Operation::Update => "UPDATE",
        Operation::Delete => "DELETE",
    }
}

/// The webhook configurations of one kind, by name (their webhooks are called in this order).
fn registered_webhooks(cluster: &Cluster, resource: &str) -> Vec<Arc<Obj>> {
    let mut configs = cluster.objects(GROUP, resource);
    configs.retain(|c| {
        c.value["webhooks"]
            .as_array()
            .is_some_and(|w| !w.is_empty())
    });
    configs.sort_by(|a, b| {
        a.value["metadata"]["name"]
            .as_str()
            .cmp(&b.value["metadata"]["name"].as_str())
    });
    configs
}

/// The webhooks of `configs`, in order.
fn webhooks(configs: &[Arc<Obj>]) -> impl Iterator<Item = &Value> {
    configs
        .iter()
        .filter_map(|c| c.value["webhooks"].as_array())
        .flatten()
}

fn new_uid() -> String {
    let n: u128 = rand::random();
    let h = format!("{n:032x}");
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

fn webhook_name(w: &Value) -> &str {
    w["name"].as_str().unwrap_or_default()
}

fn fails_closed(w: &Value) -> bool {
    w["failurePolicy"].as_str() != Some("Ignore")
}

/// The 500 a failed call turns into under `failurePolicy: Fail`.
fn calling_error(name: &str, reason: &str) -> ApiError {
    let message = format!("failed calling webhook {name:?}: {reason}");
    let mut e = ApiError::internal(format!("Internal error occurred: {message}"));
    e.causes = vec![Cause {
        reason: String::new(),
        message,
        field: String::new(),
    }];
    e
}

/// The rejection a denying webhook turns into.
fn denial(name: &str, status: &Value) -> ApiError {
    let denied_by = format!("admission webhook {name:?} denied the request");
    let message = status["message"].as_str().unwrap_or_default();
    let reason = status["reason"].as_str().unwrap_or_default();
    let text = if !message.is_empty() {
        format!("{denied_by}: {message}")
    } else if !reason.is_empty() {
        format!("{denied_by}: {reason}")
    } else {
        format!("{denied_by} without explanation")
    };
    let code = status["code"]
        .as_u64()
        .filter(|c| (400..600).contains(c))
        .unwrap_or(400);
    let mut body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": text,
        "code": code,
    });
    if !reason.is_empty() {
        body["reason"] = json!(reason);
    }
    if status["details"].is_object() {
        body["details"] = status["details"].clone();
    }
    ApiError::from_status(body)
}

/// What a webhook answered.
struct Verdict {
    allowed: bool,
    status: Value,
    warnings: Vec<String>,
    patch: Option<Value>,
}

fn parse_response(
    code: u16,
    body: &[u8],
    uid: &str,
    api_version: &str,
    mutating: bool,
) -> Result<Verdict, String> {
    if !(200..300).contains(&code) {
        if let Ok(s) = serde_json::from_slice::<Value>(body)
            && s["kind"] == "Status"
            && let Some(m) = s["message"].as_str()
        {
            return Err(format!("failed to call webhook: {m}"));
        }
        return Err(format!(
            "failed to call webhook: the server responded with the status code {code} but did not return more information"
        ));
    }
    let invalid = |m: String| format!("received invalid webhook response: {m}");
    let v: Value = serde_json::from_slice(body).map_err(|e| invalid(e.to_string()))?;
    let got_version = v["apiVersion"].as_str().unwrap_or_default();
    let got_kind = v["kind"].as_str().unwrap_or_default();
    if got_version != api_version || got_kind != "AdmissionReview" {
        return Err(invalid(format!(
            "expected webhook response of {api_version}, Kind=AdmissionReview, got {got_version}, Kind={got_kind}"
        )));
    }
    let r = &v["response"];
    if !r.is_object() {
        return Err(invalid("response was absent".into()));
    }
    let got_uid = r["uid"].as_str().unwrap_or_default();
    if got_uid != uid {
        return Err(invalid(format!(
            "expected response.uid={uid:?}, got {got_uid:?}"
        )));
    }
    let allowed = r["allowed"].as_bool().unwrap_or(false);
    let warnings = r["warnings"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let patch_type = r["patchType"].as_str().unwrap_or_default();
    let patch = match r["patch"].as_str().filter(|p| !p.is_empty()) {
        None => {
            if !patch_type.is_empty() {
                return Err(invalid(format!(
                    "webhook returned response.patchType of {patch_type:?} without response.patch"
                )));
            }
            None
        }
        Some(_) if !mutating => {
            return Err(invalid(
                "validating webhooks may not return response.patch".into(),
            ));
        }
        Some(_) if patch_type != "JSONPatch" => {
            return Err(invalid(format!(
                "webhook returned invalid response.patchType of {patch_type:?}, expected \"JSONPatch\""
            )));
        }
        Some(p) => {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(p)
                .map_err(|e| invalid(format!("response.patch is not valid base64: {e}")))?;
            let ops: Value = serde_json::from_slice(&raw)
                .map_err(|e| invalid(format!("response.patch is not a JSON patch: {e}")))?;
            if !ops.is_array() {
                return Err(invalid("response.patch is not a JSON patch array".into()));
            }
            Some(ops)
        }
    };
    Ok(Verdict {
        allowed,
        status: r["status"].clone(),
        warnings,
        patch,
    })
}

impl WebhookAdmission {
    async fn run(&self, req: &AdmissionRequest<'_>, object: &mut Value) -> Result<(), ApiError> {
        let info = req.info;
        // Like kube-apiserver, writes to webhook configurations never go through webhooks.
        if info.group == GROUP {
            return Ok(());
        }
        let mutating = registered_webhooks(req.cluster, MUTATING);
        let validating = registered_webhooks(req.cluster, VALIDATING);
        if mutating.is_empty() && validating.is_empty() {
            return Ok(());
        }
        let mut changed = false;
        for w in webhooks(&mutating) {
            changed |= self.call_one(w, req, object, true).await?;
        }
        if changed {
            revalidate(req, object)?;
        }
        for w in webhooks(&validating) {
            self.call_one(w, req, object, false).await?;
        }
        Ok(())
    }

    /// The review request for the current state of the object.
    fn review_request(req: &AdmissionRequest<'_>, object: &Value, uid: &str) -> Value {
        let info = req.info;
        let delete = req.operation == Operation::Delete;
        let name = if info.name.is_empty() {
            object["metadata"]["name"].as_str().unwrap_or_default()
        } else {
            info.name.as_str()
        };
        let kind = json!({"group": info.group, "version": info.version, "kind": req.kind});
        let resource =
            json!({"group": info.group, "version": info.version, "resource": info.resource});
        let options_kind = match req.operation {
            Operation::Create => "CreateOptions",
            Operation::Update => "UpdateOptions",
            Operation::Delete => "DeleteOptions",
        };
        let mut options = json!({"kind": options_kind, "apiVersion": "meta.k8s.io/v1"});
        if req.dry_run {
            options["dryRun"] = json!(["All"]);
        }
        let mut user = json!({"username": info.user.username, "groups": info.user.groups});
        if !info.user.uid.is_empty() {
            user["uid"] = json!(info.user.uid);
        }
        let mut r = json!({
            "uid": uid,
            "kind": kind,
            "resource": resource,
            "requestKind": kind,
            "requestResource": resource,
            "operation": operation_name(req.operation),
            "userInfo": user,
            "object": if delete { Value::Null } else { object.clone() },
            "oldObject": req.old_object.cloned().unwrap_or(Value::Null),
            "dryRun": req.dry_run,
            "options": options,
        });
        if !info.subresource.is_empty() {
            r["subResource"] = json!(info.subresource);
            r["requestSubResource"] = json!(info.subresource);
        }
        if !name.is_empty() {
            r["name"] = json!(name);
        }
        if !info.namespace.is_empty() {
            r["namespace"] = json!(info.namespace);
        }
        r
    }

    /// Whether `w` applies to this write; errors are rejections of the write.
    ///
    /// Rules and selectors are checked on the object itself; the review request (a copy of
    /// the object and its old version) is built only for match conditions and the call, so a
    /// write that no webhook selects costs no copy.
    fn should_call(
        w: &Value,
        req: &AdmissionRequest<'_>,
        object: &Value,
        uid: &str,
    ) -> Result<Option<Value>, ApiError> {
        let info = req.info;
        let name = webhook_name(w);
        let attrs = Attributes {
            operation: operation_name(req.operation),
            group: &info.group,
            version: &info.version,
            resource: &info.resource,
            subresource: &info.subresource,
            namespace: &info.namespace,
        };
        let rules = w["rules"].as_array().map(Vec::as_slice).unwrap_or_default();
        if !rules.iter().any(|r| matching::rule_matches(r, &attrs)) {
            return Ok(None);
        }
        let delete = req.operation == Operation::Delete;
        let own: Option<&Value> = if delete { None } else { Some(object) };
        let old = req.old_object.filter(|o| !o.is_null());
        let is_namespace = info.group.is_empty() && info.resource == "namespaces";
        if !info.namespace.is_empty() || is_namespace {
            let labels = if is_namespace {
                own.or(old)
                    .map_or(Value::Null, |o| o["metadata"]["labels"].clone())
            } else {
                req.cluster
                    .object("", "namespaces", "", &info.namespace)
                    .map_or(Value::Null, |n| n.value["metadata"]["labels"].clone())
            };
            let hit = matching::selector_matches(&w["namespaceSelector"], Some(&labels))
                .map_err(|e| calling_error(name, &format!("invalid namespaceSelector: {e}")))?;
            if !hit {
                return Ok(None);
            }
        }
        let sel = &w["objectSelector"];
        if sel.as_object().is_some_and(|m| !m.is_empty()) {
            let mut hit = false;
            for o in [own, old].into_iter().flatten() {
                if o.is_object() {
                    hit |= matching::selector_matches(sel, Some(&o["metadata"]["labels"]))
                        .map_err(|e| {
                            calling_error(name, &format!("invalid objectSelector: {e}"))
                        })?;
                }
            }
            if !hit {
                return Ok(None);
            }
        }
        let review = Self::review_request(req, object, uid);
        match matching::eval_conditions(&w["matchConditions"], &review) {
            Conditions::Match => Ok(Some(review)),
            Conditions::NoMatch => Ok(None),
            Conditions::Error(e) if fails_closed(w) => Err(calling_error(name, &e)),
            Conditions::Error(e) => {
                tracing::warn!(webhook = name, error = %e, "match condition failed; webhook skipped (failurePolicy Ignore)");
                Ok(None)
            }
        }
    }

    /// Calls one webhook if it applies; returns whether it changed the object.
    async fn call_one(
        &self,
        w: &Value,
        req: &AdmissionRequest<'_>,
        object: &mut Value,
        mutating: bool,
    ) -> Result<bool, ApiError> {
        let name = webhook_name(w);
        let uid = new_uid();
        let Some(review_req) = Self::should_call(w, req, object, &uid)? else {
            return Ok(false);
        };
        if req.dry_run && !matches!(w["sideEffects"].as_str(), Some("None" | "NoneOnDryRun")) {
            return Err(ApiError::bad_request(format!(
                "admission webhook {name:?} does not support dry run"
            )));
        }
        let versions: Vec<&str> = w["admissionReviewVersions"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let api_version = if versions.contains(&"v1") || versions.is_empty() {
            "admission.k8s.io/v1"
        } else if versions.contains(&"v1beta1") {
            "admission.k8s.io/v1beta1"
        } else {
            return self.failed(w, "webhook does not accept v1 or v1beta1 AdmissionReview");
        };
        let timeout_secs = w["timeoutSeconds"]
            .as_u64()
            .unwrap_or(DEFAULT_TIMEOUT_SECONDS)
            .clamp(1, MAX_TIMEOUT_SECONDS);
        let endpoint = match self.endpoint(w, req.cluster, timeout_secs) {
            Ok(e) => e,
            Err(e) => return self.failed(w, &e),
        };
        let review = json!({
            "apiVersion": api_version,
            "kind": "AdmissionReview",
            "request": review_req,
        });
        let body = serde_json::to_vec(&review).unwrap_or_default();
        let sent = self
            .pool
            .post(&endpoint, body, Duration::from_secs(timeout_secs))
            .await;
        let verdict = match sent {
            Ok((code, bytes)) => parse_response(code, &bytes, &uid, api_version, mutating),
            Err(e) => Err(format!(
                "failed to call webhook: Post {:?}: {e}",
                endpoint.display_url()
            )),
        };
        let verdict = match verdict {
            Ok(v) => v,
            Err(e) => return self.failed(w, &e),
        };
        for warning in &verdict.warnings {
            crate::hooks::add_warning(warning.clone());
        }
        if !verdict.allowed {
            return Err(denial(name, &verdict.status));
        }
        let Some(patch) = verdict.patch else {
            return Ok(false);
        };
        if req.operation == Operation::Delete {
            return Ok(false);
        }
        let before = object.clone();
        crate::patch::json_patch(object, &patch).map_err(|e| {
            ApiError::internal(format!(
                "Internal error occurred: the patch from admission webhook {name:?} could not be applied: {}",
                e.message
            ))
        })?;
        Ok(*object != before)
    }

    /// Applies the failure policy to a failed call.
    #[allow(clippy::unused_self)]
    fn failed(&self, w: &Value, reason: &str) -> Result<bool, ApiError> {
        let name = webhook_name(w);
        if fails_closed(w) {
            return Err(calling_error(name, reason));
        }
        tracing::warn!(webhook = name, error = %reason, "webhook call failed; ignored (failurePolicy Ignore)");
        Ok(false)
    }

    fn endpoint(
        &self,
        w: &Value,
        cluster: &Cluster,
        timeout_secs: u64,
    ) -> Result<Endpoint, String> {
        let cc = &w["clientConfig"];
        let ca_bundle = match cc["caBundle"].as_str().filter(|s| !s.is_empty()) {
            Some(b) => Some(
                base64::engine::general_purpose::STANDARD
                    .decode(b)
                    .map_err(|e| format!("clientConfig.caBundle is not valid base64: {e}"))?,
            ),
            None => None,
        };
        let timeout_q = format!("timeout={timeout_secs}s");
        if let Some(url) = cc["url"].as_str() {
            let uri: http::Uri = url
                .parse()
                .map_err(|e| format!("clientConfig.url {url:?} is not a valid URL: {e}"))?;
            let https = match uri.scheme_str() {
                Some("https") => true,
                Some("http") => false,
                _ => {
                    return Err(format!(
                        "clientConfig.url {url:?}: the scheme must be https (or http)"
                    ));
                }
            };
            let authority = uri
                .authority()
                .ok_or_else(|| format!("clientConfig.url {url:?} has no host"))?;
            let host = authority.host();
            let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
            let path_and_query = match uri.query() {
                Some(q) if !q.is_empty() => format!("{}?{q}&{timeout_q}", uri.path()),
                _ => format!("{}?{timeout_q}", uri.path()),
            };
            return Ok(Endpoint {
                https,
                connect: format!("{host}:{port}"),
                server_name: host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_string(),
                authority: authority.as_str().to_string(),
                path_and_query,
                ca_bundle,
            });
        }
        let svc = &cc["service"];
        if !svc.is_object() {
            return Err("clientConfig has neither url nor service".into());
        }
        let ns = svc["namespace"].as_str().unwrap_or_default();
        let name = svc["name"].as_str().unwrap_or_default();
        let port = svc["port"]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .unwrap_or(443);
        let path = svc["path"]
            .as_str()
            .filter(|p| !p.is_empty())
            .unwrap_or("/");
        let host = format!("{name}.{ns}.svc");
        let path_and_query = format!("{path}?{timeout_q}");
        let authority = format!("{host}:{port}");
        let url = format!("https://{authority}{path_and_query}");
        let connect = self
            .resolve(cluster, ns, name, port)
            .map_err(|e| format!("failed to call webhook: Post {url:?}: {e}"))?;
        Ok(Endpoint {
            https: true,
            connect,
            server_name: host,
            authority,
            path_and_query,
            ca_bundle,
        })
    }

    /// The local address of a Service port.
    fn resolve(
        &self,
        cluster: &Cluster,
        ns: &str,
        name: &str,
        port: u16,
    ) -> Result<String, String> {
        let mapped = |exact: bool| {
            self.services.iter().find(|m| {
                m.namespace == ns
                    && m.name == name
                    && if exact {
                        m.port == Some(port)
                    } else {
                        m.port.is_none()
                    }
            })
        };
        if let Some(m) = mapped(true).or_else(|| mapped(false)) {
            return Ok(m.address.clone());
        }
        let Some(svc) = cluster.get("", "services", ns, name) else {
            return Err(format!(
                "service \"{name}\" not found (map it with a webhook service mapping or create it with the {ADDRESS_ANNOTATION} annotation)"
            ));
        };
        svc["metadata"]["annotations"][ADDRESS_ANNOTATION]
            .as_str()
            .map(|a| a.trim().to_string())
            .filter(|a| !a.is_empty())
            .ok_or_else(|| {
                format!(
                    "service {ns}/{name} has no local address: annotate it with {ADDRESS_ANNOTATION}: HOST:PORT or map it with a webhook service mapping"
                )
            })
    }
}

/// What the generation of an object depends on: everything but metadata (and status when
/// it is a subresource).
fn generation_content(v: &Value, status_subresource: bool) -> Value {
    let mut c = v.clone();
    if let Some(m) = c.as_object_mut() {
        m.remove("metadata");
        if status_subresource {
            m.remove("status");
        }
    }
    c
}

/// After a mutating webhook changed the object: runs the CRD schema (pruning, defaulting,
/// validation) again, as kube-apiserver validates after mutating admission, and sets
/// `metadata.generation` of an update from the final object, not from the request.
fn revalidate(req: &AdmissionRequest<'_>, object: &mut Value) -> Result<(), ApiError> {
    let info = req.info;
    let Some(def) = req
        .cluster
        .0
        .registry()
        .get(&info.group, &info.version, &info.resource)
    else {
        return Ok(());
    };
    if let Some(schema) = def.crd.as_ref().and_then(|c| c.compiled.clone()) {
        let keep = ["apiVersion", "kind", "metadata"].map(|k| (k, object.get(k).cloned()));
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        schema
            .admit(object, req.old_object)
            .map_err(|e| ApiError::from_status(e.to_status(&def.group, &def.kind, &name)))?;
        for (k, v) in keep {
            if let Some(v) = v {
                object[k] = v;
            }
        }
    }
    if let (Operation::Update, Some(old)) = (req.operation, req.old_object)
        && info.subresource.is_empty()
        && def.tracks_generation()
    {
        // kube-apiserver compares after mutating admission: the generation moves by one
        // exactly when the final object differs from the stored one.
        let old_generation = old["metadata"]["generation"].as_i64().unwrap_or(0);
        let moved = generation_content(object, def.status_subresource)
            != generation_content(old, def.status_subresource);
        object["metadata"]["generation"] = json!(old_generation + i64::from(moved));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_mappings_parse_and_reject_bad_text() {
        let m: ServiceMapping = "system/webhook:443=127.0.0.1:9443".parse().unwrap();
        assert_eq!(
            m,
            ServiceMapping::new("system", "webhook", Some(443), "127.0.0.1:9443")
        );
        let m: ServiceMapping = "a/b=localhost:1".parse().unwrap();
        assert_eq!(m.port, None);
        for bad in [
            "a/b",
            "ab=1.2.3.4:5",
            "/b=h:1",
            "a/=h:1",
            "a/b=host",
            "a/b=:1",
        ] {
            assert!(
                matches!(
                    bad.parse::<ServiceMapping>(),
                    Err(MappingError::Syntax { .. })
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            "a/b:x=h:1".parse::<ServiceMapping>(),
            Err(MappingError::Port { .. })
        ));
        assert!(matches!(
            "a/b:0=h:1".parse::<ServiceMapping>(),
            Err(MappingError::Port { .. })
        ));
    }

    #[test]
    fn denials_carry_the_webhook_name_and_code() {
        let e = denial(
            "v.example.io",
            &json!({"code": 403, "message": "no", "reason": "Forbidden"}),
        );
        assert_eq!(e.code, 403);
        let s = e.to_status();
        assert_eq!(
            s["message"],
            "admission webhook \"v.example.io\" denied the request: no"
        );
        assert_eq!(s["reason"], "Forbidden");
        let e = denial("v", &json!({"code": 200}));
        assert_eq!(e.code, 400);
        assert_eq!(
            e.to_status()["message"],
            "admission webhook \"v\" denied the request without explanation"
        );
        assert!(e.to_status().get("reason").is_none());
    }

    #[test]
    fn responses_are_checked() {
        let ok = |r: Value| {
            serde_json::to_vec(&json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": r}))
                .unwrap()
        };
        let v = parse_response(
            200,
            &ok(json!({"uid": "u", "allowed": true, "warnings": ["w"]})),
            "u",
            "admission.k8s.io/v1",
            false,
        )
        .unwrap();
        assert!(v.allowed);
        assert_eq!(v.warnings, vec!["w".to_string()]);
        assert!(
            parse_response(
                200,
                &ok(json!({"uid": "other", "allowed": true})),
                "u",
                "admission.k8s.io/v1",
                false
            )
            .is_err()
        );
        let patch = base64::engine::general_purpose::STANDARD
            .encode(r#"[{"op":"add","path":"/x","value":1}]"#);
        let with_patch =
            ok(json!({"uid": "u", "allowed": true, "patchType": "JSONPatch", "patch": patch}));
        assert!(parse_response(200, &with_patch, "u", "admission.k8s.io/v1", false).is_err());
        let v = parse_response(200, &with_patch, "u", "admission.k8s.io/v1", true).unwrap();
        assert_eq!(v.patch.unwrap()[0]["path"], "/x");
        let err = parse_response(500, b"oops", "u", "admission.k8s.io/v1", false)
            .err()
            .unwrap();
        assert!(err.contains("status code 500"), "{err}");
        assert!(parse_response(200, b"{}", "u", "admission.k8s.io/v1", false).is_err());
    }

    #[test]
    fn uids_look_like_uuids() {
        let u = new_uid();
        assert_eq!(u.len(), 36);
        assert_eq!(u.matches('-').count(), 4);
        assert_ne!(u, new_uid());
    }
}
