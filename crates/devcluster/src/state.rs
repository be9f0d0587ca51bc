//! Cluster state and the storage-level write operations shared by request handlers and the
//! built-in background controllers: create, update (with the finalizer and deletion rules),
//! and delete (finalizers, propagation policies).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::error::ApiError;
use crate::hooks::Hooks;
use crate::ops::{FaultConfig, Stats};
use crate::registry::{GroupResource, Registry, ResourceDef, builtin_resources, defs_from_crd};
use crate::store::{Obj, Store, WriteError};

/// Finalizer the API server puts on CRDs so instances are removed first.
pub const CRD_CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";
/// Finalizer that makes an owner wait for its blocking dependents.
pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";
/// Finalizer that makes the garbage collector orphan the dependents.
pub const ORPHAN_FINALIZER: &str = "orphan";

/// Server options.
#[derive(Debug, Clone)]
pub struct Options {
    /// Events kept per resource for watches that resume from a resourceVersion.
    pub history_limit: usize,
    /// Largest accepted request body in bytes.
    pub body_limit: usize,
    /// How often idle watches with `allowWatchBookmarks` get a BOOKMARK.
    pub bookmark_interval: Duration,
    /// The bearer token written into the kubeconfig.
    pub admin_token: String,
    /// The URL the server is reached at; `start` fills it in when it is not set (simulators
    /// write it into the kubeconfigs of simulated clusters).
    pub advertised_url: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            history_limit: 10_000,
            body_limit: 3 * 1024 * 1024,
            bookmark_interval: Duration::from_secs(5),
            admin_token: "devcluster-admin-token".into(),
            advertised_url: None,
        }
    }
}

/// Deletion propagation policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    /// Delete dependents in the background after the owner is gone.
    Background,
    /// Delete dependents first; the owner waits for blocking ones.
    Foreground,
    /// Remove owner references from dependents.
    Orphan,
}

/// Options of a delete.
#[derive(Debug, Clone, Default)]
pub struct DeleteOpts {
    /// Propagation policy; `None` means the resource default (background).
    pub propagation: Option<Propagation>,
    /// `preconditions.uid`.
    pub uid: Option<String>,
    /// `preconditions.resourceVersion`.
    pub resource_version: Option<String>,
    /// `dryRun=All`.
    pub dry_run: bool,
}

/// All server state.
pub struct State {
    /// The global resourceVersion counter.
    pub rv: Arc<AtomicU64>,
    registry: RwLock<Arc<Registry>>,
    stores: RwLock<HashMap<GroupResource, Arc<Store>>>,
    /// Options.
    pub opts: Options,
    /// Current fault settings.
    pub faults: Mutex<FaultConfig>,
    /// Wakes requests held by a pause.
    pub unpause: Notify,
    /// Request accounting.
    pub stats: Stats,
    /// Request path hooks.
    pub hooks: Hooks,
    /// Wakes the background controllers.
    pub wake: Notify,
    /// Bumped to cut every open watch.
    pub cut: tokio::sync::watch::Sender<u64>,
    /// Objects marked for deletion that the background controllers must look at.
    pub pending: Mutex<HashSet<(GroupResource, String, String)>>,
    /// uids of removed objects whose dependents need garbage collection.
    pub removed_uids: Mutex<Vec<String>>,
    /// New objects with owner references whose owners the garbage collector must verify.
    pub check_owners: Mutex<Vec<(GroupResource, String, String)>>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

/// The current time in the API server's timestamp format (formatted once per second).
pub fn now() -> String {
    static CACHE: Mutex<(i64, String)> = Mutex::new((i64::MIN, String::new()));
    let t = jiff::Timestamp::now();
    let secs = t.as_second();
    let mut c = CACHE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if c.0 != secs {
        *c = (secs, t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string());
    }
    c.1.clone()
}

/// A random RFC 4122 version 4 uid.
pub fn new_uid() -> String {
    let b: [u8; 16] = rand::random();
    format!(
        "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-4{:01x}{:02x}-{:01x}{:01x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
        b[0],
        b[1],
        b[2],
        b[3],
        b[4],
        b[5],
        b[6] & 0x0f,
        b[7],
        8 | (b[8] & 0x3),
        b[8] >> 4,
        b[9],
        b[10],
        b[11],
        b[12],
        b[13],
        b[14],
        b[15]
    )
}

/// Five random characters for `generateName`, from the API server's alphabet.
pub fn name_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5)
        .map(|_| {
            let i = rand::random_range(0..ALPHABET.len());
            char::from(ALPHABET[i])
        })
        .collect()
}

fn finalizers(v: &Value) -> Vec<String> {
    v["metadata"]["finalizers"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Outcome of a committed write.
#[derive(Debug, Clone)]
pub enum Written {
    /// The object is stored in this state.
    Stored(Arc<Obj>),
    /// The write removed the object (last finalizer gone); this is its final state.
    Removed(Arc<Obj>),
}

impl Written {
    /// The object either way.
    pub fn obj(&self) -> &Arc<Obj> {
        match self {
            Self::Stored(o) | Self::Removed(o) => o,
        }
    }
}

impl State {
    /// A fresh cluster with the built-in types and the `default` and `kube-system`
    /// namespaces.
    pub fn new(opts: Options, hooks: Hooks) -> Arc<Self> {
        let rv = Arc::new(AtomicU64::new(1));
        let (cut, _) = tokio::sync::watch::channel(0);
        let st = Arc::new(Self {
            rv,
            registry: RwLock::new(Arc::new(Registry::with(builtin_resources()))),
            stores: RwLock::new(HashMap::new()),
            opts,
            faults: Mutex::new(FaultConfig::default()),
            unpause: Notify::new(),
            stats: Stats::default(),
            hooks,
            wake: Notify::new(),
            cut,
            pending: Mutex::new(HashSet::new()),
            removed_uids: Mutex::new(Vec::new()),
            check_owners: Mutex::new(Vec::new()),
        });
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let _ = st.create_internal(
                "",
                "namespaces",
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
            );
        }
        st
    }

    /// The current registry snapshot.
    pub fn registry(&self) -> Arc<Registry> {
        self.registry
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Registers (or re-registers) the resources served by a CRD.
    pub fn register_crd(&self, crd: &Value) {
        let defs = defs_from_crd(crd);
        let name = crd["metadata"]["name"].as_str().unwrap_or_default();
        let mut guard = self
            .registry
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut reg = (**guard).clone();
        reg.remove_crd(name);
        for d in defs {
            reg.insert(d);
        }
        *guard = Arc::new(reg);
    }

    /// Stops serving a CRD's resources and drops their storage.
    pub fn unregister_crd(&self, crd: &Value) {
        let name = crd["metadata"]["name"].as_str().unwrap_or_default();
        let gr = GroupResource {
            group: crd["spec"]["group"].as_str().unwrap_or_default().into(),
            resource: crd["spec"]["names"]["plural"]
                .as_str()
                .unwrap_or_default()
                .into(),
        };
        {
            let mut guard = self
                .registry
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let mut reg = (**guard).clone();
            reg.remove_crd(name);
            *guard = Arc::new(reg);
        }
        self.stores
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&gr);
    }

    /// The store of a group/resource, created on first use.
    pub fn store(&self, gr: &GroupResource) -> Arc<Store> {
        if let Some(s) = self
            .stores
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(gr)
        {
            return s.clone();
        }
        self.stores
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(gr.clone())
            .or_insert_with(|| Arc::new(Store::new(self.rv.clone(), self.opts.history_limit)))
            .clone()
    }

    /// Every store that exists, with its key.
    pub fn stores(&self) -> Vec<(GroupResource, Arc<Store>)> {
        self.stores
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// The preferred definition of a group/resource.
    pub fn def(&self, group: &str, plural: &str) -> Option<Arc<ResourceDef>> {
        self.registry().preferred(group, plural)
    }

    /// Whether a namespace exists and is not terminating; the error is what a create in it
    /// answers.
    pub fn check_namespace(&self, ns: &str) -> Result<(), ApiError> {
        let store = self.store(&GroupResource {
            group: String::new(),
            resource: "namespaces".into(),
        });
        match store.get("", ns) {
            None => Err(ApiError::not_found("", "namespaces", ns)),
            Some(o) if o.value["metadata"].get("deletionTimestamp").is_some() => {
                let mut e = ApiError::forbidden(format!(
                    "unable to create new content in namespace {ns} because it is being terminated"
                ));
                e.reason = "Forbidden".into();
                Err(e)
            }
            Some(_) => Ok(()),
        }
    }

    /// Creates an object without HTTP, admission or validation (built-in defaults apply).
    pub fn create_internal(
        &self,
        group: &str,
        plural: &str,
        mut v: Value,
    ) -> Result<Arc<Obj>, ApiError> {
        let def = self
            .def(group, plural)
            .ok_or_else(|| ApiError::not_found(group, plural, ""))?;
        prepare_create(&def, &mut v);
        let store = self.store(&def.group_resource());
        let name = v["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let obj = store
            .create(v)
            .map_err(|_| ApiError::already_exists(group, plural, &name))?;
        self.after_create(&def, &obj);
        Ok(obj)
    }

    /// Side effects of a stored create.
    pub fn after_create(&self, def: &ResourceDef, obj: &Arc<Obj>) {
        if def.group.is_empty() && def.plural == "namespaces" {
            let ns = obj.name().to_string();
            let _ = self.create_internal(
                "",
                "serviceaccounts",
                json!({"apiVersion": "v1", "kind": "ServiceAccount",
                       "metadata": {"name": "default", "namespace": ns}}),
            );
        }
        if def.group == "apiextensions.k8s.io" && def.plural == "customresourcedefinitions" {
            self.register_crd(&obj.value);
        }
        if is_new_event(def) {
            self.mirror_event(&obj.value);
        }
        if obj.value["metadata"]["ownerReferences"]
            .as_array()
            .is_some_and(|r| !r.is_empty())
        {
            self.check_owners
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push((
                    def.group_resource(),
                    obj.namespace().to_string(),
                    obj.name().to_string(),
                ));
            self.wake.notify_one();
        }
    }

    /// Commits `new` over the stored object at resourceVersion `expected`, removing the
    /// object when it is being deleted and its last finalizer went away.
    pub fn commit_update(
        &self,
        def: &ResourceDef,
        store: &Store,
        expected: u64,
        new: Value,
    ) -> Result<Written, WriteError> {
        let deleting = new["metadata"].get("deletionTimestamp").is_some();
        let gone = deleting
            && finalizers(&new).is_empty()
            && !(def.group.is_empty()
                && def.plural == "namespaces"
                && new["spec"]["finalizers"]
                    .as_array()
                    .is_some_and(|a| !a.is_empty()));
        if gone {
            let obj = store.remove(expected, new)?;
            self.after_remove(def, &obj);
            return Ok(Written::Removed(obj));
        }
        let obj = store.update(expected, new)?;
        if deleting {
            self.mark_pending(def, &obj);
        }
        if def.group == "apiextensions.k8s.io"
            && def.plural == "customresourcedefinitions"
            && !deleting
        {
            self.register_crd(&obj.value);
        }
        if is_new_event(def) {
            self.mirror_event(&obj.value);
        }
        Ok(Written::Stored(obj))
    }

    /// Writes the `core/v1` form of an `events.k8s.io/v1` Event under the same name, so
    /// `kubectl get events` and `kubectl describe` see events written through either API.
    fn mirror_event(&self, v: &Value) {
        let Some(def) = self.def("", "events") else {
            return;
        };
        let core = core_event(v);
        let (ns, name) = (
            v["metadata"]["namespace"].as_str().unwrap_or_default(),
            v["metadata"]["name"].as_str().unwrap_or_default(),
        );
        let replaced = self.modify_internal(&def, ns, name, &mut |cur| {
            let meta = cur["metadata"].clone();
            *cur = core.clone();
            for k in ["uid", "creationTimestamp", "resourceVersion"] {
                cur["metadata"][k] = meta[k].clone();
            }
            true
        });
        if replaced.is_none() {
            let _ = self.create_internal("", "events", core);
        }
    }

    fn mark_pending(&self, def: &ResourceDef, obj: &Obj) {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert((
                def.group_resource(),
                obj.namespace().to_string(),
                obj.name().to_string(),
            ));
        self.wake.notify_one();
    }

    /// Side effects of a removal: garbage collection of dependents, CRD unregistration.
    pub fn after_remove(&self, def: &ResourceDef, obj: &Arc<Obj>) {
        self.removed_uids
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(obj.uid().to_string());
        if def.group == "apiextensions.k8s.io" && def.plural == "customresourcedefinitions" {
            self.unregister_crd(&obj.value);
        }
        if is_new_event(def)
            && let Some(core) = self.def("", "events")
        {
            let _ = self.delete_object(&core, obj.namespace(), obj.name(), &DeleteOpts::default());
        }
        self.wake.notify_one();
    }

    /// Deletes an object following its finalizers and the propagation policy. Returns the
    /// object as stored after the call (marked) or its final state (removed).
    pub fn delete_object(
        &self,
        def: &ResourceDef,
        ns: &str,
        name: &str,
        opts: &DeleteOpts,
    ) -> Result<Written, ApiError> {
        let store = self.store(&def.group_resource());
        for _ in 0..16 {
            let Some(cur) = store.get(ns, name) else {
                return Err(ApiError::not_found(&def.group, &def.plural, name));
            };
            if let Some(uid) = &opts.uid
                && uid != cur.uid()
            {
                return Err(ApiError::conflict(
                    &def.group,
                    &def.plural,
                    name,
                    &format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                        cur.uid()
                    ),
                ));
            }
            if let Some(rv) = &opts.resource_version
                && *rv != cur.rv.to_string()
            {
                return Err(ApiError::conflict(
                    &def.group,
                    &def.plural,
                    name,
                    &format!(
                        "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                        cur.rv
                    ),
                ));
            }
            let mut new = cur.value.clone();
            let mut fins = finalizers(&new);
            match opts.propagation {
                Some(Propagation::Foreground)
                    if !fins.iter().any(|f| f == FOREGROUND_FINALIZER) =>
                {
                    fins.push(FOREGROUND_FINALIZER.into());
                    fins.retain(|f| f != ORPHAN_FINALIZER);
                }
                Some(Propagation::Orphan) if !fins.iter().any(|f| f == ORPHAN_FINALIZER) => {
                    fins.push(ORPHAN_FINALIZER.into());
                    fins.retain(|f| f != FOREGROUND_FINALIZER);
                }
                _ => {}
            }
            let is_ns = def.group.is_empty() && def.plural == "namespaces";
            let already = cur.value["metadata"].get("deletionTimestamp").is_some();
            if fins.is_empty() && !is_ns {
                if opts.dry_run {
                    return Ok(Written::Removed(cur));
                }
                match store.remove(cur.rv, new) {
                    Ok(obj) => {
                        self.after_remove(def, &obj);
                        return Ok(Written::Removed(obj));
                    }
                    Err(WriteError::Missing) => {
                        return Err(ApiError::not_found(&def.group, &def.plural, name));
                    }
                    Err(_) => continue,
                }
            }
            if already && fins == finalizers(&cur.value) {
                return Ok(Written::Stored(cur));
            }
            new["metadata"]["finalizers"] = json!(fins);
            if fins.is_empty() {
                new["metadata"]
                    .as_object_mut()
                    .map(|m| m.remove("finalizers"));
            }
            if !already {
                new["metadata"]["deletionTimestamp"] = json!(now());
                new["metadata"]["deletionGracePeriodSeconds"] = json!(0);
                if def.tracks_generation() {
                    let g = new["metadata"]["generation"].as_i64().unwrap_or(0);
                    new["metadata"]["generation"] = json!(g + 1);
                }
                if is_ns {
                    new["status"]["phase"] = json!("Terminating");
                }
            }
            if opts.dry_run {
                return Ok(Written::Stored(Obj::new(new, cur.rv)));
            }
            match self.commit_update(def, &store, cur.rv, new) {
                Ok(w) => {
                    if let Written::Stored(o) = &w {
                        self.mark_pending(def, o);
                    }
                    return Ok(w);
                }
                Err(WriteError::Missing) => {
                    return Err(ApiError::not_found(&def.group, &def.plural, name));
                }
                Err(_) => {}
            }
        }
        Err(ApiError::stale(&def.group, &def.plural, name))
    }

    /// Applies `f` to a stored object and commits it, retrying on conflicts. `f` returns
    /// false to leave the object alone.
    pub fn modify_internal(
        &self,
        def: &ResourceDef,
        ns: &str,
        name: &str,
        f: &mut dyn FnMut(&mut Value) -> bool,
    ) -> Option<Written> {
        let store = self.store(&def.group_resource());
        for _ in 0..16 {
            let cur = store.get(ns, name)?;
            let mut new = cur.value.clone();
            if !f(&mut new) {
                return None;
            }
            match self.commit_update(def, &store, cur.rv, new) {
                Ok(w) => return Some(w),
                Err(WriteError::Stale) => {}
                Err(_) => return None,
            }
        }
        None
    }
}

fn is_new_event(def: &ResourceDef) -> bool {
    def.group == "events.k8s.io" && def.plural == "events"
}

/// The `core/v1` Event for an `events.k8s.io/v1` one, field for field as the API server
/// converts them.
pub fn core_event(v: &Value) -> Value {
    let mut metadata = json!({
        "name": v["metadata"]["name"],
        "namespace": v["metadata"]["namespace"],
    });
    for k in ["labels", "annotations"] {
        if let Some(x) = v["metadata"].get(k) {
            metadata[k] = x.clone();
        }
    }
    let mut e = json!({"apiVersion": "v1", "kind": "Event", "metadata": metadata});
    let copy = |e: &mut Value, to: &str, from: &Value| {
        if !from.is_null() {
            e[to] = from.clone();
        }
    };
    copy(&mut e, "involvedObject", &v["regarding"]);
    copy(&mut e, "related", &v["related"]);
    copy(&mut e, "reason", &v["reason"]);
    copy(&mut e, "message", &v["note"]);
    copy(&mut e, "type", &v["type"]);
    copy(&mut e, "action", &v["action"]);
    copy(&mut e, "eventTime", &v["eventTime"]);
    copy(&mut e, "series", &v["series"]);
    copy(&mut e, "reportingComponent", &v["reportingController"]);
    copy(&mut e, "reportingInstance", &v["reportingInstance"]);
    copy(&mut e, "firstTimestamp", &v["deprecatedFirstTimestamp"]);
    copy(&mut e, "lastTimestamp", &v["deprecatedLastTimestamp"]);
    copy(&mut e, "count", &v["deprecatedCount"]);
    if v["deprecatedSource"].is_object() {
        e["source"] = v["deprecatedSource"].clone();
    } else if let Some(c) = v["reportingController"].as_str() {
        e["source"] = json!({"component": c});
    }
    if e["count"].is_null() {
        e["count"] = v["series"]["count"].as_i64().map_or(json!(1), |c| json!(c));
    }
    if e["lastTimestamp"].is_null() {
        let last = [&v["series"]["lastObservedTime"], &v["eventTime"]]
            .into_iter()
            .find_map(|t| t.as_str())
            .map(|t| {
                t.split('.')
                    .next()
                    .unwrap_or(t)
                    .trim_end_matches('Z')
                    .to_string()
                    + "Z"
            });
        if let Some(l) = last {
            e["lastTimestamp"] = json!(l);
        }
    }
    e
}

/// Fills in the system fields and cheap built-in defaults of a new object.
pub fn prepare_create(def: &ResourceDef, v: &mut Value) {
    v["apiVersion"] = json!(def.api_version());
    v["kind"] = json!(def.kind);
    if !v["metadata"].is_object() {
        v["metadata"] = json!({});
    }
    let md = &mut v["metadata"];
    if md["name"].as_str().unwrap_or_default().is_empty()
        && let Some(g) = md["generateName"].as_str()
    {
        md["name"] = json!(format!("{g}{}", name_suffix()));
    }
    md["uid"] = json!(new_uid());
    md["creationTimestamp"] = json!(now());
    if let Some(m) = md.as_object_mut() {
        m.remove("resourceVersion");
        m.remove("deletionTimestamp");
        m.remove("deletionGracePeriodSeconds");
        m.remove("selfLink");
        if def.tracks_generation() {
            m.insert("generation".into(), json!(1));
        } else {
            m.remove("generation");
        }
    }
    if def.status_subresource
        && let Some(m) = v.as_object_mut()
    {
        m.remove("status");
    }
    builtin_defaults(def, v);
}

/// A Secret's `stringData` is write-only: each entry replaces the `data` entry of the same key,
/// base64-encoded, and `stringData` itself is never stored, as on a real API server.
fn merge_string_data(v: &mut Value) {
    use base64::Engine as _;
    let Some(Value::Object(plain)) = v.as_object_mut().and_then(|m| m.remove("stringData")) else {
        return;
    };
    if !v["data"].is_object() {
        v["data"] = json!({});
    }
    for (key, value) in plain {
        let text = value.as_str().unwrap_or_default();
        v["data"][key.as_str()] =
            json!(base64::engine::general_purpose::STANDARD.encode(text.as_bytes()));
    }
}

/// Sets `v[key]` when it is absent or null.
fn default_to(v: &mut Value, key: &str, d: Value) {
    if v[key].is_null() {
        v[key] = d;
    }
}

/// Defaults the real API server applies when decoding built-in kinds, on every write, so
/// fields dropped by a patch or apply come back like they do on a real server.
pub fn fill_defaults(def: &ResourceDef, v: &mut Value) {
    if !def.is_builtin() {
        return;
    }
    match (def.group.as_str(), def.plural.as_str()) {
        ("", "pods") => {
            default_to(&mut v["spec"], "restartPolicy", json!("Always"));
            default_to(&mut v["spec"], "serviceAccountName", json!("default"));
        }
        ("", "services") => default_to(&mut v["spec"], "type", json!("ClusterIP")),
        ("", "secrets") => {
            default_to(v, "type", json!("Opaque"));
            merge_string_data(v);
        }
        ("apps", "deployments") => {
            let s = &mut v["spec"];
            default_to(s, "replicas", json!(1));
            default_to(s, "revisionHistoryLimit", json!(10));
            default_to(s, "progressDeadlineSeconds", json!(600));
            default_to(&mut s["strategy"], "type", json!("RollingUpdate"));
            if s["strategy"]["type"] == "RollingUpdate" {
                let ru = &mut s["strategy"]["rollingUpdate"];
                default_to(ru, "maxSurge", json!("25%"));
                default_to(ru, "maxUnavailable", json!("25%"));
            }
        }
        ("batch", "jobs") => {
            let s = &mut v["spec"];
            default_to(s, "backoffLimit", json!(6));
            default_to(s, "completions", json!(1));
            default_to(s, "parallelism", json!(1));
            default_to(s, "completionMode", json!("NonIndexed"));
            default_to(s, "suspend", json!(false));
        }
        _ => {}
    }
}

/// Cheap defaults the real API server applies to built-in kinds at creation.
fn builtin_defaults(def: &ResourceDef, v: &mut Value) {
    if !def.is_builtin() {
        return;
    }
    fill_defaults(def, v);
    match (def.group.as_str(), def.plural.as_str()) {
        ("", "namespaces") => {
            let name = v["metadata"]["name"].clone();
            v["metadata"]["labels"]["kubernetes.io/metadata.name"] = name;
            v["spec"]["finalizers"] = json!(["kubernetes"]);
            v["status"] = json!({"phase": "Active"});
        }
        ("", "pods") => {
            v["status"] = json!({"phase": "Pending", "qosClass": "BestEffort"});
        }
        ("", "services") => {
            if v["spec"]["clusterIP"].is_null() && v["spec"]["type"] == "ClusterIP" {
                let b: [u8; 2] = rand::random();
                v["spec"]["clusterIP"] = json!(format!("10.96.{}.{}", b[0], b[1].max(1)));
            }
            v["status"] = json!({"loadBalancer": {}});
        }
        ("batch", "jobs") => {
            let uid = v["metadata"]["uid"].clone();
            let name = v["metadata"]["name"].clone();
            let s = &mut v["spec"];
            if s["manualSelector"] != json!(true) && s["selector"].is_null() {
                s["selector"] = json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}});
                let labels = &mut s["template"]["metadata"]["labels"];
                labels["batch.kubernetes.io/controller-uid"] = uid.clone();
                labels["controller-uid"] = uid;
                labels["batch.kubernetes.io/job-name"] = name.clone();
                labels["job-name"] = name;
            }
        }
        ("apiextensions.k8s.io", "customresourcedefinitions") => {
            let fins = finalizers(v);
            if !fins.iter().any(|f| f == CRD_CLEANUP_FINALIZER) {
                let mut f = fins;
                f.push(CRD_CLEANUP_FINALIZER.into());
                v["metadata"]["finalizers"] = json!(f);
            }
            crd_status(v);
        }
        _ => {}
    }
}

/// Sets a CRD's `status` the way the apiextensions controllers do once names are accepted.
pub fn crd_status(v: &mut Value) {
    let names = v["spec"]["names"].clone();
    let mut accepted = names.clone();
    if accepted["singular"].as_str().unwrap_or_default().is_empty() {
        accepted["singular"] = json!(names["kind"].as_str().unwrap_or_default().to_lowercase());
    }
    if accepted["listKind"].as_str().unwrap_or_default().is_empty() {
        accepted["listKind"] = json!(format!(
            "{}List",
            names["kind"].as_str().unwrap_or_default()
        ));
    }
    let stored: Vec<Value> = v["spec"]["versions"]
        .as_array()
        .map(|vs| {
            vs.iter()
                .filter(|x| x["storage"].as_bool().unwrap_or(false))
                .map(|x| x["name"].clone())
                .collect()
        })
        .unwrap_or_default();
    let t = now();
    let mut stored_versions = v["status"]["storedVersions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for s in stored {
        if !stored_versions.contains(&s) {
            stored_versions.push(s);
        }
    }
    v["status"] = json!({
        "acceptedNames": accepted,
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
             "message": "no conflicts found", "lastTransitionTime": t},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
             "message": "the initial names have been accepted", "lastTransitionTime": t}
        ],
        "storedVersions": stored_versions,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_look_like_v4() {
        let u = new_uid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert_ne!(u, new_uid());
        assert_eq!(name_suffix().len(), 5);
    }
}
