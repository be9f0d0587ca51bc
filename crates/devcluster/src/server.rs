//! The HTTP front end: routing, content negotiation, authentication/authorization hooks,
//! fault injection, accounting, and the resource verbs.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State as AxState};
use axum::response::Response;
use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use serde_json::{Value, json};

use crate::Cluster;
use crate::error::{ApiError, Cause};
use crate::hooks::{AdmissionRequest, Operation, RequestInfo, SubresourceRequest, UserInfo};
use crate::patch;
use crate::registry::ResourceDef;
use crate::selectors::{FieldSelector, LabelSelector};
use crate::ssa;
use crate::state::{DeleteOpts, Propagation, State, Written, prepare_create};
use crate::store::{Obj, Store, WriteError};
use crate::{discovery, table, watch};

/// How the client wants objects rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Render {
    /// The full object.
    Full,
    /// `PartialObjectMetadata`.
    Meta,
    /// `meta.k8s.io/v1` Table.
    Table,
}

/// Parsed query parameters.
#[derive(Debug, Default, Clone)]
pub struct Query(HashMap<String, String>);

impl Query {
    fn parse(q: Option<&str>) -> Self {
        Self(
            form_urlencoded::parse(q.unwrap_or_default().as_bytes())
                .filter(|(k, _)| !k.is_empty())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// A parameter.
    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str)
    }

    /// A boolean parameter (`true`/`1`).
    pub fn flag(&self, k: &str) -> bool {
        matches!(self.get(k), Some("true" | "1"))
    }
}

fn json_response(code: u16, body: impl Into<Bytes>) -> Response {
    let mut r = Response::new(Body::from(body.into()));
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// Renders an error as a Status response.
pub fn error_response(e: &ApiError) -> Response {
    let body = serde_json::to_vec(&e.to_status()).unwrap_or_default();
    let mut r = json_response(e.code, body);
    if let Some(s) = e.retry_after
        && let Ok(v) = HeaderValue::from_str(&s.to_string())
    {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

fn value_response(code: u16, v: &Value) -> Response {
    json_response(code, serde_json::to_vec(v).unwrap_or_default())
}

fn render_mode(headers: &HeaderMap) -> Render {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let first = accept.split(',').next().unwrap_or_default();
    if first.contains("as=Table") {
        Render::Table
    } else if first.contains("as=PartialObjectMetadata") {
        Render::Meta
    } else {
        Render::Full
    }
}

/// Serializes one object for a client of `def`'s version in the given mode.
pub fn render_obj(obj: &Obj, def: &ResourceDef, mode: Render) -> Bytes {
    match mode {
        Render::Full => {
            if obj.value["apiVersion"].as_str() == Some(def.api_version().as_str()) {
                obj.json.clone()
            } else {
                let mut v = obj.value.clone();
                v["apiVersion"] = json!(def.api_version());
                Bytes::from(serde_json::to_vec(&v).unwrap_or_default())
            }
        }
        Render::Meta => Bytes::from(serde_json::to_vec(&meta_only(&obj.value)).unwrap_or_default()),
        Render::Table => Bytes::from(
            serde_json::to_vec(&table::table(def, &[obj], None, "Metadata")).unwrap_or_default(),
        ),
    }
}

/// The `PartialObjectMetadata` form of an object.
pub fn meta_only(v: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": v["metadata"],
    })
}

/// The axum entry point: every request goes through here.
pub async fn handle(AxState(st): AxState<Arc<State>>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let segs: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let query = Query::parse(req.uri().query());
    if let Err(e) = authorize_non_resource(&st, &req, &segs) {
        return error_response(&e);
    }
    match segs.as_slice() {
        ["devcluster", rest @ ..] => {
            let rest: Vec<String> = rest.iter().map(|s| (*s).to_string()).collect();
            return admin(&st, req, &rest).await;
        }
        ["version"] => value_response(200, &discovery::version()),
        ["healthz" | "livez" | "readyz", ..] => {
            let mut r = Response::new(Body::from("ok"));
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            r
        }
        ["openapi", rest @ ..] => {
            let rest: Vec<String> = rest.iter().map(|s| (*s).to_string()).collect();
            match discovery::openapi(&st.registry(), &rest) {
                Some(v) => value_response(200, &v),
                None => error_response(&ApiError::no_route()),
            }
        }
        ["api"] => value_response(200, &discovery::api_versions()),
        ["apis"] => {
            if req
                .headers()
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|a| a.split(',').all(|p| p.contains("as=APIGroupDiscoveryList")))
            {
                return error_response(&ApiError::not_acceptable(
                    "only application/json is served at /apis",
                ));
            }
            value_response(200, &discovery::group_list(&st.registry()))
        }
        ["api", "v1"] => value_response(200, &discovery::resource_list(&st.registry(), "", "v1")),
        ["apis", g] => match discovery::group(&st.registry(), g) {
            Some(v) => value_response(200, &v),
            None => error_response(&ApiError::no_route()),
        },
        ["apis", g, v] => {
            let reg = st.registry();
            if reg.resources_of(g, v).is_empty() {
                return error_response(&ApiError::no_route());
            }
            value_response(200, &discovery::resource_list(&reg, g, v))
        }
        ["api", "v1", rest @ ..] => {
            let rest: Vec<String> = rest.iter().map(|s| (*s).to_string()).collect();
            resource_request(&st, req, "", "v1", &rest, query).await
        }
        ["apis", g, v, rest @ ..] => {
            let (g, v) = ((*g).to_string(), (*v).to_string());
            let rest: Vec<String> = rest.iter().map(|s| (*s).to_string()).collect();
            resource_request(&st, req, &g, &v, &rest, query).await
        }
        _ => error_response(&ApiError::no_route()),
    }
}

fn percent_decode(s: &str) -> String {
    form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// The parts of a resource URL.
#[derive(Debug, Clone, Default)]
struct Target {
    ns: Option<String>,
    plural: String,
    name: Option<String>,
    sub: Option<String>,
}

fn parse_target(group: &str, rest: &[String]) -> Option<Target> {
    let r: Vec<&str> = rest.iter().map(String::as_str).collect();
    match r.as_slice() {
        ["namespaces", ns, plural, tail @ ..]
            if !(group.is_empty() && matches!(*plural, "status" | "finalize")) =>
        {
            if tail.len() > 2 {
                return None;
            }
            Some(Target {
                ns: Some((*ns).to_string()),
                plural: (*plural).to_string(),
                name: tail.first().map(|s| (*s).to_string()),
                sub: tail.get(1).map(|s| (*s).to_string()),
            })
        }
        [plural, tail @ ..] => {
            if tail.len() > 2 {
                return None;
            }
            Some(Target {
                ns: None,
                plural: (*plural).to_string(),
                name: tail.first().map(|s| (*s).to_string()),
                sub: tail.get(1).map(|s| (*s).to_string()),
            })
        }
        [] => None,
    }
}

fn verb_of(method: &Method, t: &Target, q: &Query) -> Option<&'static str> {
    Some(match (method.as_str(), t.name.is_some()) {
        ("GET", true) => "get",
        ("GET", false) if q.flag("watch") => "watch",
        ("GET", false) => "list",
        ("POST", false) => "create",
        ("POST", true) if t.sub.is_some() => "create",
        ("PUT", true) => "update",
        ("PATCH", true) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => return None,
    })
}

/// Authenticates and authorizes requests for paths that name no resource (discovery,
/// `/version`, health, `/devcluster/*`); resource requests are checked in `dispatch`.
fn authorize_non_resource(st: &State, req: &Request, segs: &[&str]) -> Result<(), ApiError> {
    if st.hooks.authenticator.is_none() && st.hooks.authorizer.is_none() {
        return Ok(());
    }
    if matches!(segs, ["api", "v1", _, ..] | ["apis", _, _, _, ..]) {
        return Ok(());
    }
    let user = user_of(st, req.headers())?;
    match &st.hooks.authorizer {
        Some(a) => a.authorize_path(
            &user,
            &req.method().as_str().to_ascii_lowercase(),
            req.uri().path(),
        ),
        None => Ok(()),
    }
}

/// A list or watch whose field selector pins `metadata.name` is authorized as a request
/// for that name, as a real server does (so `resourceNames` rules cover it).
fn named_by_selector(info: &RequestInfo, q: &Query) -> Option<RequestInfo> {
    if !info.name.is_empty() || !matches!(info.verb.as_str(), "list" | "watch") {
        return None;
    }
    let sel = FieldSelector::parse(q.get("fieldSelector")?).ok()?;
    let name = sel.pinned_name()?.to_string();
    Some(RequestInfo {
        name,
        ..info.clone()
    })
}

fn user_of(st: &State, headers: &HeaderMap) -> Result<UserInfo, ApiError> {
    match &st.hooks.authenticator {
        Some(a) => a.authenticate(headers),
        None => Ok(UserInfo::admin()),
    }
}

async fn apply_faults(st: &State, verb: &str, plural: &str, group: &str) -> Result<(), ApiError> {
    loop {
        let notified = st.unpause.notified();
        let f = st
            .faults
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if !f.applies(verb, plural, group) {
            return Ok(());
        }
        if f.paused {
            notified.await;
            continue;
        }
        if f.latency_ms > 0 {
            tokio::time::sleep(Duration::from_millis(f.latency_ms)).await;
        }
        if f.error_rate > 0.0 && rand::random::<f64>() < f.error_rate {
            st.stats.injected();
            let code = if f.error_codes.is_empty() {
                500
            } else {
                f.error_codes[rand::random_range(0..f.error_codes.len())]
            };
            return Err(match code {
                429 => ApiError::too_many_requests(),
                409 => ApiError::conflict(group, plural, "", "injected conflict"),
                503 => ApiError::new(503, "ServiceUnavailable", "injected fault"),
                504 => ApiError::new(504, "Timeout", "injected fault"),
                _ => ApiError::internal("injected fault"),
            });
        }
        return Ok(());
    }
}

async fn resource_request(
    st: &Arc<State>,
    req: Request,
    group: &str,
    version: &str,
    rest: &[String],
    q: Query,
) -> Response {
    let start = Instant::now();
    let Some(t) = parse_target(group, rest) else {
        return error_response(&ApiError::no_route());
    };
    let Some(verb) = verb_of(req.method(), &t, &q) else {
        return error_response(&ApiError::method_not_allowed());
    };
    let account = format!(
        "{}{}{}",
        crate::error::qualified(group, &t.plural),
        if t.sub.is_some() { "/" } else { "" },
        t.sub.as_deref().unwrap_or_default()
    );
    let (result, warnings) =
        crate::hooks::collect_warnings(dispatch(st, req, group, version, &t, verb, q)).await;
    let (mut response, err) = match result {
        Ok(r) => {
            let e = r.status().as_u16() >= 400;
            (r, e)
        }
        Err(e) => (error_response(&e), true),
    };
    crate::hooks::append_warning_headers(response.headers_mut(), &warnings);
    st.stats.record(verb, &account, start.elapsed(), err);
    response
}

#[allow(clippy::too_many_lines)]
async fn dispatch(
    st: &Arc<State>,
    req: Request,
    group: &str,
    version: &str,
    t: &Target,
    verb: &'static str,
    q: Query,
) -> Result<Response, ApiError> {
    // Like a real server: authenticate, then authorize, then look the resource up.
    let (parts, body) = req.into_parts();
    let user = user_of(st, &parts.headers)?;
    let info = RequestInfo {
        verb: verb.to_string(),
        group: group.to_string(),
        version: version.to_string(),
        resource: t.plural.clone(),
        subresource: t.sub.clone().unwrap_or_default(),
        namespace: t.ns.clone().unwrap_or_default(),
        name: t.name.clone().unwrap_or_default(),
        user,
    };
    if let Some(a) = &st.hooks.authorizer {
        a.authorize(named_by_selector(&info, &q).as_ref().unwrap_or(&info))?;
    }
    let reg = st.registry();
    let def = reg
        .get(group, version, &t.plural)
        .ok_or_else(ApiError::no_route)?;
    if def.namespaced != t.ns.is_some() && !(def.namespaced && t.name.is_none()) {
        return Err(ApiError::no_route());
    }
    apply_faults(st, verb, &t.plural, group).await?;
    let body = axum::body::to_bytes(body, st.opts.body_limit)
        .await
        .map_err(|_| ApiError::too_large(st.opts.body_limit))?;
    if body.len() > st.opts.body_limit {
        return Err(ApiError::too_large(st.opts.body_limit));
    }
    let cluster = Cluster(st.clone());
    if let Some(sub) = &t.sub {
        if sub != "status" {
            let key = (group.to_string(), t.plural.clone(), sub.clone());
            let Some((_, h)) = st.hooks.subresources.iter().find(|(k, _)| *k == key) else {
                return Err(ApiError::no_route());
            };
            let (code, v) = h
                .handle(SubresourceRequest {
                    info: &info,
                    method: &parts.method,
                    body,
                    cluster: &cluster,
                })
                .await?;
            return Ok(value_response(code, &v));
        }
        if !def.status_subresource {
            return Err(ApiError::no_route());
        }
    }
    let mode = render_mode(&parts.headers);
    let store = st.store(&def.group_resource());
    let ns = t.ns.clone().unwrap_or_default();
    let name = t.name.clone().unwrap_or_default();
    let ctx = Ctx {
        st,
        def: &def,
        store: &store,
        ns: &ns,
        name: &name,
        status: t.sub.is_some(),
        q: &q,
        info: &info,
        cluster: &cluster,
        headers: &parts.headers,
    };
    match verb {
        "get" => {
            let o = store
                .get(&ns, &name)
                .ok_or_else(|| ApiError::not_found(group, &t.plural, &name))?;
            Ok(json_response(200, render_obj(&o, &def, mode)))
        }
        "list" => list(&ctx, mode),
        "watch" => watch::start(&ctx, mode),
        "create" => {
            let v = decode_body(&parts.headers, &body)?;
            let (code, o) = ctx.create(v, None).await?;
            Ok(json_response(code, render_obj(&o, &def, Render::Full)))
        }
        "update" => {
            let v = decode_body(&parts.headers, &body)?;
            let (code, o) = ctx.update(v).await?;
            Ok(json_response(code, render_obj(&o, &def, Render::Full)))
        }
        "patch" => {
            let ct = parts
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_string();
            let (code, o) = ctx.patch(&ct, &body).await?;
            Ok(json_response(code, render_obj(&o, &def, Render::Full)))
        }
        "delete" => {
            let opts = delete_opts(&q, &body)?;
            let old = store
                .get(&ns, &name)
                .ok_or_else(|| ApiError::not_found(group, &t.plural, &name))?;
            ctx.admit(
                Operation::Delete,
                Some(&old.value),
                &mut old.value.clone(),
                opts.dry_run,
            )
            .await?;
            let w = st.delete_object(&def, &ns, &name, &opts)?;
            Ok(json_response(200, render_obj(w.obj(), &def, Render::Full)))
        }
        "deletecollection" => {
            let opts = delete_opts(&q, &body)?;
            let labels = LabelSelector::parse(q.get("labelSelector").unwrap_or_default())?;
            let fields = FieldSelector::parse(q.get("fieldSelector").unwrap_or_default())?;
            let nsf = t.ns.as_deref();
            let (items, _, _, _) = store.list(nsf, None, None, &|o: &Obj| {
                labels.matches(o.labels()) && fields.matches(&o.value)
            });
            for o in items {
                match st.delete_object(&def, o.namespace(), o.name(), &opts) {
                    Ok(_) => {}
                    Err(e) if e.code == 404 => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(value_response(
                200,
                &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}),
            ))
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

fn delete_opts(q: &Query, body: &Bytes) -> Result<DeleteOpts, ApiError> {
    let b: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("invalid DeleteOptions body: {e}")))?
    };
    let policy = b["propagationPolicy"]
        .as_str()
        .map(str::to_string)
        .or_else(|| q.get("propagationPolicy").map(str::to_string));
    let mut propagation = match policy.as_deref() {
        None | Some("") => None,
        Some("Background") => Some(Propagation::Background),
        Some("Foreground") => Some(Propagation::Foreground),
        Some("Orphan") => Some(Propagation::Orphan),
        Some(other) => {
            return Err(ApiError::invalid_field(
                "",
                "DeleteOptions",
                "",
                "propagationPolicy",
                &format!(
                    "Unsupported value: {other:?}: supported values: \"Foreground\", \"Background\", \"Orphan\""
                ),
            ));
        }
    };
    if propagation.is_none() {
        let orphan = b["orphanDependents"]
            .as_bool()
            .or_else(|| q.get("orphanDependents").map(|v| v == "true"));
        if orphan == Some(true) {
            propagation = Some(Propagation::Orphan);
        }
    }
    let dry = b["dryRun"]
        .as_array()
        .is_some_and(|a| a.iter().any(|x| x == "All"))
        || q.get("dryRun") == Some("All");
    Ok(DeleteOpts {
        propagation,
        uid: b["preconditions"]["uid"].as_str().map(str::to_string),
        resource_version: b["preconditions"]["resourceVersion"]
            .as_str()
            .map(str::to_string),
        dry_run: dry,
    })
}

/// Decodes a JSON or YAML request body into an object.
pub fn decode_body(headers: &HeaderMap, body: &[u8]) -> Result<Value, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let v: Value = if ct.contains("yaml") {
        decode_yaml(body)?
    } else if ct.contains("json") || ct.is_empty() {
        serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!("the request body is not valid JSON: {e}"))
        })?
    } else if ct.contains("protobuf") {
        crate::protobuf::decode(body)?
    } else {
        serde_json::from_slice(body).map_err(|_| ApiError::unsupported_media(ct))?
    };
    if !v.is_object() {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    }
    Ok(v)
}

fn decode_yaml(body: &[u8]) -> Result<Value, ApiError> {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        return Ok(v);
    }
    serde_yaml::from_slice::<Value>(body)
        .map_err(|e| ApiError::bad_request(format!("the request body is not valid YAML: {e}")))
}

/// Continue tokens: base64 of `{"ns","name","rv"}`.
fn encode_continue(key: &(String, String), rv: u64) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(json!({"ns": key.0, "n": key.1, "rv": rv}).to_string())
}

fn decode_continue(tok: &str) -> Result<(String, String), ApiError> {
    let bad = || ApiError::bad_request(format!("continue token {tok:?} is not valid"));
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(tok)
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    Ok((
        v["ns"].as_str().ok_or_else(bad)?.to_string(),
        v["n"].as_str().ok_or_else(bad)?.to_string(),
    ))
}

fn list(ctx: &Ctx<'_>, mode: Render) -> Result<Response, ApiError> {
    let q = ctx.q;
    let labels = LabelSelector::parse(q.get("labelSelector").unwrap_or_default())?;
    let fields = FieldSelector::parse(q.get("fieldSelector").unwrap_or_default())?;
    let limit = match q.get("limit") {
        None | Some("" | "0") => None,
        Some(l) => Some(
            l.parse::<usize>()
                .map_err(|_| ApiError::bad_request(format!("limit: invalid value {l:?}")))?,
        ),
    };
    let after = match q.get("continue") {
        None | Some("") => None,
        Some(tok) => Some(decode_continue(tok)?),
    };
    let ns = if ctx.ns.is_empty() {
        None
    } else {
        Some(ctx.ns)
    };
    let keep = |o: &Obj| {
        (labels.is_empty() || labels.matches(o.labels()))
            && (fields.is_empty() || fields.matches(&o.value))
    };
    let (items, next, remaining, rv) = ctx.store.list(ns, after.as_ref(), limit, &keep);
    let def = ctx.def;
    if mode == Render::Table {
        let refs: Vec<&Obj> = items.iter().map(AsRef::as_ref).collect();
        let mut t = table::table(
            def,
            &refs,
            Some(rv),
            q.get("includeObject").unwrap_or("Metadata"),
        );
        if let Some(k) = &next {
            t["metadata"]["continue"] = json!(encode_continue(k, rv));
            t["metadata"]["remainingItemCount"] = json!(remaining);
        }
        return Ok(value_response(200, &t));
    }
    let (kind, api_version) = match mode {
        Render::Meta => (
            "PartialObjectMetadataList".to_string(),
            "meta.k8s.io/v1".to_string(),
        ),
        _ => (def.list_kind.clone(), def.api_version()),
    };
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if let Some(k) = &next {
        meta["continue"] = json!(encode_continue(k, rv));
        meta["remainingItemCount"] = json!(remaining);
    }
    let mut out = Vec::with_capacity(items.iter().map(|o| o.json.len() + 1).sum::<usize>() + 256);
    out.extend_from_slice(
        format!(
            "{{\"kind\":{},\"apiVersion\":{},\"metadata\":{},\"items\":[",
            json!(kind),
            json!(api_version),
            meta
        )
        .as_bytes(),
    );
    for (i, o) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&render_obj(o, def, mode));
    }
    out.extend_from_slice(b"]}");
    Ok(json_response(200, out))
}

/// Everything a verb handler needs about the request.
pub struct Ctx<'a> {
    /// Cluster state.
    pub st: &'a Arc<State>,
    /// Resource definition at the requested version.
    pub def: &'a ResourceDef,
    /// The resource's store.
    pub store: &'a Arc<Store>,
    /// Namespace from the URL (empty if none).
    pub ns: &'a str,
    /// Name from the URL (empty if none).
    pub name: &'a str,
    /// Whether the request is on `/status`.
    pub status: bool,
    /// Query parameters.
    pub q: &'a Query,
    /// Request attributes.
    pub info: &'a RequestInfo,
    /// Cluster handle for hooks.
    pub cluster: &'a Cluster,
    /// Request headers.
    pub headers: &'a HeaderMap,
}

/// Whether two versions of an object are equal in what bumps `metadata.generation`:
/// everything but `metadata` (and `status`, for resources with a status subresource).
/// Compares in place: no copies of the objects.
fn same_for_generation(a: &Value, b: &Value, status_sub: bool) -> bool {
    let counted = |k: &str| k != "metadata" && !(status_sub && k == "status");
    match (a.as_object(), b.as_object()) {
        (Some(x), Some(y)) => {
            x.keys().filter(|k| counted(k)).count() == y.keys().filter(|k| counted(k)).count()
                && x.iter()
                    .filter(|(k, _)| counted(k))
                    .all(|(k, v)| y.get(k) == Some(v))
        }
        _ => a == b,
    }
}

impl Ctx<'_> {
    fn dry_run(&self) -> bool {
        self.q.get("dryRun") == Some("All")
    }

    fn manager(&self, default: &str) -> String {
        if let Some(m) = self.q.get("fieldManager") {
            return m.to_string();
        }
        let ua = self
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or(default);
        let m = ua.split('/').next().unwrap_or(default);
        if m.is_empty() {
            default.to_string()
        } else {
            m.to_string()
        }
    }

    async fn admit(
        &self,
        op: Operation,
        old: Option<&Value>,
        obj: &mut Value,
        dry_run: bool,
    ) -> Result<(), ApiError> {
        if self.st.hooks.admission.is_empty() {
            return Ok(());
        }
        let api_version = self.def.api_version();
        let req = AdmissionRequest {
            info: self.info,
            operation: op,
            api_version: &api_version,
            kind: &self.def.kind,
            old_object: old,
            dry_run,
            cluster: self.cluster,
        };
        for h in &self.st.hooks.admission {
            h.admit(&req, obj).await?;
        }
        Ok(())
    }

    fn validate(&self, obj: &mut Value, old: Option<&Value>) -> Result<(), ApiError> {
        let name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let Some(crd) = &self.def.crd else {
            return validate_builtin(self.def, obj, &name);
        };
        if let Some(schema) = &crd.compiled {
            let meta = obj.get("metadata").cloned();
            let api_version = obj.get("apiVersion").cloned();
            let kind = obj.get("kind").cloned();
            let admitted = schema.admit(obj, old).map_err(|e| {
                ApiError::from_status(e.to_status(&self.def.group, &self.def.kind, &name))
            })?;
            if self.q.get("fieldValidation") == Some("Strict") && !admitted.pruned.is_empty() {
                let list: Vec<String> = admitted
                    .pruned
                    .iter()
                    .map(|p| format!("unknown field {p:?}"))
                    .collect();
                return Err(ApiError::bad_request(format!(
                    "strict decoding error: {}",
                    list.join(", ")
                )));
            }
            // apiVersion, kind and metadata are not subject to the schema.
            if let Some(m) = meta {
                obj["metadata"] = m;
            }
            if let Some(a) = api_version {
                obj["apiVersion"] = a;
            }
            if let Some(k) = kind {
                obj["kind"] = k;
            }
        }
        Ok(())
    }

    /// Creates an object (also used by create-on-apply with the apply manager entry).
    pub async fn create(
        &self,
        mut v: Value,
        apply_manager: Option<&str>,
    ) -> Result<(u16, Arc<Obj>), ApiError> {
        let def = self.def;
        check_type(def, &v)?;
        if v["metadata"].is_null() {
            v["metadata"] = json!({});
        }
        if !v["metadata"].is_object() {
            return Err(ApiError::bad_request("metadata must be an object"));
        }
        if !self.name.is_empty() {
            if let Some(n) = v["metadata"]["name"].as_str()
                && n != self.name
            {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({n}) does not match the name on the URL ({})",
                    self.name
                )));
            }
            v["metadata"]["name"] = json!(self.name);
        }
        if def.namespaced {
            match v["metadata"]["namespace"].as_str() {
                Some(n) if !n.is_empty() && n != self.ns => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                _ => v["metadata"]["namespace"] = json!(self.ns),
            }
            self.st.check_namespace(self.ns)?;
        } else if let Some(m) = v["metadata"].as_object_mut() {
            m.remove("namespace");
        }
        let has_name = v["metadata"]["name"]
            .as_str()
            .is_some_and(|s| !s.is_empty());
        let has_gen = v["metadata"]["generateName"]
            .as_str()
            .is_some_and(|s| !s.is_empty());
        if !has_name && !has_gen {
            return Err(ApiError::invalid(
                &def.group,
                &def.kind,
                "",
                vec![Cause {
                    reason: "FieldValueRequired".into(),
                    message: "Required value: name or generateName is required".into(),
                    field: "metadata.name".into(),
                }],
            ));
        }
        if apply_manager.is_none()
            && v["metadata"]["resourceVersion"]
                .as_str()
                .is_some_and(|s| !s.is_empty())
        {
            return Err(ApiError::bad_request(
                "resourceVersion should not be set on objects to be created",
            ));
        }
        prepare_create(def, &mut v);
        let name = v["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        validate_name(def, &name)?;
        self.validate(&mut v, None)?;
        if let Some(m) = v["metadata"].as_object_mut() {
            m.remove("managedFields");
        }
        match apply_manager {
            Some(m) => ssa::record_apply(def, &mut v, m, self.status),
            None => ssa::record_update(def, None, &mut v, &self.manager("unknown"), self.status),
        }
        self.admit(Operation::Create, None, &mut v, self.dry_run())
            .await?;
        if self.dry_run() {
            return Ok((201, Obj::new(v, 0)));
        }
        let o = self
            .store
            .create(v)
            .map_err(|_| ApiError::already_exists(&def.group, &def.plural, &name))?;
        self.st.after_create(def, &o);
        Ok((201, o))
    }

    /// Builds the object to store for an update from the stored one and the requested one.
    fn merge_update(&self, cur: &Obj, mut new: Value) -> Result<Value, ApiError> {
        let def = self.def;
        check_type(def, &new)?;
        if let Some(n) = new["metadata"]["name"].as_str()
            && n != self.name
        {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({})",
                self.name
            )));
        }
        let old = &cur.value;
        if self.status {
            // The stored object with the requested status: every other member is copied,
            // the old status is not, and the new one is moved rather than copied.
            let status = new
                .as_object_mut()
                .and_then(|m| m.remove("status"))
                .filter(|s| !s.is_null());
            let mut out = serde_json::Map::new();
            if let Some(members) = old.as_object() {
                for (k, v) in members {
                    if k != "status" {
                        out.insert(k.clone(), v.clone());
                    }
                }
            }
            if let Some(s) = status {
                out.insert("status".to_string(), s);
            }
            return Ok(Value::Object(out));
        }
        new["apiVersion"] = json!(def.api_version());
        new["kind"] = json!(def.kind);
        if !new["metadata"].is_object() {
            new["metadata"] = json!({});
        }
        for k in [
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "resourceVersion",
        ] {
            match old["metadata"].get(k) {
                Some(v) => new["metadata"][k] = v.clone(),
                None => {
                    if let Some(m) = new["metadata"].as_object_mut() {
                        m.remove(k);
                    }
                }
            }
        }
        if new["metadata"].get("managedFields").is_none()
            && let Some(mf) = old["metadata"].get("managedFields")
        {
            new["metadata"]["managedFields"] = mf.clone();
        }
        if def.status_subresource {
            match old.get("status") {
                Some(s) => new["status"] = s.clone(),
                None => {
                    if let Some(m) = new.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
        }
        crate::state::fill_defaults(def, &mut new);
        if def.is_builtin()
            && def.group.is_empty()
            && def.plural == "namespaces"
            && let Some(s) = old.get("spec")
        {
            new["spec"] = s.clone();
        }
        if old["metadata"].get("deletionTimestamp").is_some() {
            let before: Vec<&Value> = old["metadata"]["finalizers"]
                .as_array()
                .map(|a| a.iter().collect())
                .unwrap_or_default();
            if let Some(after) = new["metadata"]["finalizers"].as_array()
                && after.iter().any(|f| !before.contains(&f))
            {
                return Err(ApiError::invalid_field(
                    &def.group,
                    &def.kind,
                    self.name,
                    "metadata.finalizers",
                    "Forbidden: no new finalizers can be added if the object is being deleted",
                ));
            }
        }
        Ok(new)
    }

    /// Validates, bumps generation, records managed fields, admits and commits an update.
    /// `None` means the stored object changed underneath and the caller should retry.
    async fn finish_update(
        &self,
        cur: &Arc<Obj>,
        mut new: Value,
        manager: Option<&str>,
        apply: bool,
    ) -> Result<Option<(u16, Arc<Obj>)>, ApiError> {
        let def = self.def;
        self.validate(&mut new, Some(&cur.value))?;
        if def.tracks_generation() && !same_for_generation(&new, &cur.value, def.status_subresource)
        {
            let g = cur.value["metadata"]["generation"].as_i64().unwrap_or(0);
            new["metadata"]["generation"] = json!(g + 1);
        }
        if !apply {
            let m = manager.map_or_else(|| self.manager("unknown"), str::to_string);
            ssa::record_update(def, Some(&cur.value), &mut new, &m, self.status);
        }
        new["metadata"]["resourceVersion"] = json!(cur.rv.to_string());
        if ssa::same_ignoring_times(&new, &cur.value) {
            return Ok(Some((200, cur.clone())));
        }
        self.admit(
            Operation::Update,
            Some(&cur.value),
            &mut new,
            self.dry_run(),
        )
        .await?;
        if self.dry_run() {
            return Ok(Some((200, Obj::new(new, cur.rv))));
        }
        match self.st.commit_update(def, self.store, cur.rv, new) {
            Ok(Written::Stored(o) | Written::Removed(o)) => Ok(Some((200, o))),
            Err(WriteError::Stale) => Ok(None),
            Err(_) => Err(ApiError::not_found(&def.group, &def.plural, self.name)),
        }
    }

    /// PUT.
    pub async fn update(&self, v: Value) -> Result<(u16, Arc<Obj>), ApiError> {
        let def = self.def;
        let cur = self
            .store
            .get(self.ns, self.name)
            .ok_or_else(|| ApiError::not_found(&def.group, &def.plural, self.name))?;
        if let Some(rv) = v["metadata"]["resourceVersion"].as_str()
            && !rv.is_empty()
            && rv != cur.rv.to_string()
        {
            return Err(ApiError::stale(&def.group, &def.plural, self.name));
        }
        let pinned = v["metadata"]["resourceVersion"]
            .as_str()
            .is_some_and(|s| !s.is_empty());
        if !pinned && !def.is_builtin() {
            // Custom resources do not allow unconditional updates.
            return Err(ApiError::invalid_field(
                &def.group,
                &def.kind,
                self.name,
                "metadata.resourceVersion",
                "Invalid value: 0x0: must be specified for an update",
            ));
        }
        let new = self.merge_update(&cur, v.clone())?;
        match self.finish_update(&cur, new, None, false).await? {
            Some(r) => Ok(r),
            None if pinned => Err(ApiError::stale(&def.group, &def.plural, self.name)),
            None => {
                // Unconditional update raced with another write: retry once on fresh state.
                let cur = self
                    .store
                    .get(self.ns, self.name)
                    .ok_or_else(|| ApiError::not_found(&def.group, &def.plural, self.name))?;
                let new = self.merge_update(&cur, v)?;
                self.finish_update(&cur, new, None, false)
                    .await?
                    .ok_or_else(|| ApiError::stale(&def.group, &def.plural, self.name))
            }
        }
    }

    /// PATCH in all flavours.
    pub async fn patch(&self, ct: &str, body: &[u8]) -> Result<(u16, Arc<Obj>), ApiError> {
        let def = self.def;
        let patch_value: Value = match ct {
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => decode_yaml(body)?,
            "application/json-patch+json"
            | "application/merge-patch+json"
            | "application/strategic-merge-patch+json" => {
                serde_json::from_slice(body).map_err(|e| {
                    ApiError::bad_request(format!("the request body is not valid JSON: {e}"))
                })?
            }
            other => return Err(ApiError::unsupported_media(other)),
        };
        if ct == "application/strategic-merge-patch+json" && !def.is_builtin() {
            return Err(ApiError::unsupported_media(ct));
        }
        let force = self.q.flag("force");
        let apply = ct == "application/apply-patch+yaml";
        if apply {
            if !patch_value.is_object() {
                return Err(ApiError::bad_request("the apply body must be an object"));
            }
            if self.q.get("fieldManager").is_none_or(str::is_empty) {
                return Err(ApiError::bad_request(
                    "fieldManager: Required value: is required for apply patch",
                ));
            }
        }
        for _ in 0..32 {
            let Some(cur) = self.store.get(self.ns, self.name) else {
                if apply && !self.status {
                    let mgr = self.q.get("fieldManager").unwrap_or_default().to_string();
                    let mut v = patch_value.clone();
                    if let Some(rv) = v["metadata"]["resourceVersion"].as_str()
                        && !rv.is_empty()
                    {
                        return Err(ApiError::not_found(&def.group, &def.plural, self.name));
                    }
                    if let Some(m) = v["metadata"].as_object_mut() {
                        m.remove("resourceVersion");
                    }
                    match self.create(v, Some(&mgr)).await {
                        // Created by someone else since the read: apply to that object, as
                        // the API server does, instead of failing the apply.
                        Err(e) if e.reason == "AlreadyExists" => continue,
                        created => return created,
                    }
                }
                return Err(ApiError::not_found(&def.group, &def.plural, self.name));
            };
            let mut patched = if self.status && ct == "application/merge-patch+json" {
                status_view(&cur.value)
            } else {
                cur.value.clone()
            };
            match ct {
                "application/json-patch+json" => patch::json_patch(&mut patched, &patch_value)?,
                "application/merge-patch+json" => patch::merge_patch(&mut patched, &patch_value),
                "application/strategic-merge-patch+json" => {
                    patch::strategic_merge(&mut patched, &patch_value)?;
                }
                _ => {
                    check_type(def, &patch_value)?;
                    let mgr = self.q.get("fieldManager").unwrap_or_default();
                    patched = ssa::apply(def, &cur.value, &patch_value, mgr, force, self.status)
                        .map_err(|c| ssa::conflict_error(def, self.name, &c))?;
                }
            }
            if let Some(rv) = patched["metadata"]["resourceVersion"].as_str()
                && rv != cur.rv.to_string()
            {
                return Err(ApiError::stale(&def.group, &def.plural, self.name));
            }
            // A status apply's managed fields come from the apply (the rest of the metadata
            // from the stored object), so a later apply can drop what this one owned.
            let applied_fields = (apply && self.status)
                .then(|| patched["metadata"]["managedFields"].take())
                .filter(|m| !m.is_null());
            let mut new = self.merge_update(&cur, patched)?;
            if let Some(fields) = applied_fields {
                new["metadata"]["managedFields"] = fields;
            }
            let manager = if apply {
                self.q.get("fieldManager").map(str::to_string)
            } else {
                None
            };
            if let Some(r) = self
                .finish_update(&cur, new, manager.as_deref(), apply)
                .await?
            {
                return Ok(r);
            }
        }
        Err(ApiError::stale(&def.group, &def.plural, self.name))
    }
}

/// What a merge patch of the status subresource can change or is checked against: the
/// object's type, name, resourceVersion and status. The rest of the update is taken from the
/// stored object ([`Ctx::merge_update`]), so it is not copied for the patch.
fn status_view(v: &Value) -> Value {
    let mut view = serde_json::Map::new();
    for k in ["apiVersion", "kind", "status"] {
        if let Some(x) = v.get(k) {
            view.insert(k.to_string(), x.clone());
        }
    }
    let mut meta = serde_json::Map::new();
    for k in ["name", "resourceVersion"] {
        if let Some(x) = v["metadata"].get(k) {
            meta.insert(k.to_string(), x.clone());
        }
    }
    view.insert("metadata".to_string(), Value::Object(meta));
    Value::Object(view)
}

fn check_type(def: &ResourceDef, v: &Value) -> Result<(), ApiError> {
    if let Some(k) = v["kind"].as_str()
        && !k.is_empty()
        && k != def.kind
    {
        return Err(ApiError::bad_request(format!(
            "the kind of the object ({k}) does not match the kind of the resource ({})",
            def.kind
        )));
    }
    if let Some(a) = v["apiVersion"].as_str() {
        let (g, _) = crate::registry::split_api_version(a);
        if !a.is_empty() && g != def.group {
            return Err(ApiError::bad_request(format!(
                "the API version of the object ({a}) does not match the group of the resource ({})",
                def.group
            )));
        }
    }
    Ok(())
}

fn validate_name(def: &ResourceDef, name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.chars().all(|c| {
            c.is_ascii_lowercase()
                || c.is_ascii_digit()
                || c == '-'
                || c == '.'
                || (c == ':' && def.group.starts_with("rbac"))
        })
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        return Ok(());
    }
    Err(ApiError::invalid(
        &def.group,
        &def.kind,
        name,
        vec![Cause {
            reason: "FieldValueInvalid".into(),
            message: format!(
                "Invalid value: {name:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
            ),
            field: "metadata.name".into(),
        }],
    ))
}

/// The cheap structural checks the API server makes on built-in kinds.
fn validate_builtin(def: &ResourceDef, v: &Value, name: &str) -> Result<(), ApiError> {
    let mut causes = Vec::new();
    let mut req = |field: &str| {
        causes.push(Cause {
            reason: "FieldValueRequired".into(),
            message: "Required value".into(),
            field: field.into(),
        });
    };
    match (def.group.as_str(), def.plural.as_str()) {
        ("", "pods") if v["spec"]["containers"].as_array().is_none_or(Vec::is_empty) => {
            req("spec.containers");
        }
        ("apps", "deployments") => {
            if v["spec"]["selector"].is_null() {
                req("spec.selector");
            }
            if v["spec"]["template"]["spec"]["containers"]
                .as_array()
                .is_none_or(Vec::is_empty)
            {
                req("spec.template.spec.containers");
            }
        }
        ("batch", "jobs")
            if v["spec"]["template"]["spec"]["containers"]
                .as_array()
                .is_none_or(Vec::is_empty) =>
        {
            req("spec.template.spec.containers");
        }
        _ => {}
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(&def.group, &def.kind, name, causes))
    }
}

async fn admin(st: &Arc<State>, req: Request, rest: &[String]) -> Response {
    let method = req.method().clone();
    let body = axum::body::to_bytes(req.into_body(), st.opts.body_limit)
        .await
        .unwrap_or_default();
    let cluster = Cluster(st.clone());
    let r: Vec<&str> = rest.iter().map(String::as_str).collect();
    match (method.as_str(), r.as_slice()) {
        ("GET", ["stats"]) => value_response(200, &json!(cluster.stats())),
        ("DELETE", ["stats"]) => {
            cluster.reset_stats();
            value_response(200, &json!({}))
        }
        ("GET", ["faults"]) => value_response(200, &json!(cluster.faults())),
        ("PUT" | "POST", ["faults"]) => {
            match serde_json::from_slice::<crate::ops::FaultConfig>(&body) {
                Ok(f) => match cluster.set_faults(f) {
                    Ok(()) => value_response(200, &json!(cluster.faults())),
                    Err(e) => error_response(&ApiError::bad_request(e)),
                },
                Err(e) => error_response(&ApiError::bad_request(format!(
                    "invalid fault settings: {e}"
                ))),
            }
        }
        ("DELETE", ["faults"]) => {
            let _ = cluster.set_faults(crate::ops::FaultConfig::default());
            value_response(200, &json!(cluster.faults()))
        }
        ("POST", ["faults", "cut-watches"]) => {
            cluster.cut_watches();
            value_response(200, &json!({}))
        }
        ("POST", ["faults", "expire"]) => {
            cluster.expire_resource_versions();
            value_response(200, &json!({}))
        }
        _ => error_response(&ApiError::no_route()),
    }
}

#[cfg(test)]
mod tests {
    use super::same_for_generation;
    use serde_json::json;

    #[test]
    fn generation_counts_everything_but_metadata_and_a_subresource_status() {
        let base = json!({"metadata": {"name": "a"}, "spec": {"x": 1}, "status": {"p": 1}});
        let meta = json!({"metadata": {"name": "a", "labels": {"l": "v"}}, "spec": {"x": 1}, "status": {"p": 1}});
        let status = json!({"metadata": {"name": "a"}, "spec": {"x": 1}, "status": {"p": 2}});
        let spec = json!({"metadata": {"name": "a"}, "spec": {"x": 2}, "status": {"p": 1}});
        let extra =
            json!({"metadata": {"name": "a"}, "spec": {"x": 1}, "status": {"p": 1}, "data": {}});
        let no_status = json!({"metadata": {"name": "a"}, "spec": {"x": 1}});
        assert!(same_for_generation(&base, &meta, true));
        assert!(same_for_generation(&base, &meta, false));
        assert!(same_for_generation(&base, &status, true));
        assert!(!same_for_generation(&base, &status, false));
        assert!(!same_for_generation(&base, &spec, true));
        assert!(!same_for_generation(&base, &extra, true));
        assert!(!same_for_generation(&extra, &base, true));
        assert!(same_for_generation(&base, &no_status, true));
        assert!(!same_for_generation(&base, &no_status, false));
        assert!(!same_for_generation(&base, &json!("text"), true));
    }
}
