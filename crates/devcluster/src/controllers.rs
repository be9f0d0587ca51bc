//! The background work a real control plane does around deletion: garbage collection of
//! dependents (background, foreground, orphan), namespace termination, and removal of a
//! CRD's objects before the CRD goes.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::registry::{GroupResource, ResourceDef};
use crate::state::{
    CRD_CLEANUP_FINALIZER, DeleteOpts, FOREGROUND_FINALIZER, ORPHAN_FINALIZER, Propagation, State,
};
use crate::store::Obj;

/// Runs the controllers until `stop` is cancelled.
pub async fn run(st: Arc<State>, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = st.wake.notified() => {}
            () = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
        pass(&st);
    }
}

fn has_finalizer(v: &Value, f: &str) -> bool {
    v["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|a| a.iter().any(|x| x == f))
}

fn remove_finalizer(st: &State, def: &ResourceDef, ns: &str, name: &str, f: &str) {
    st.modify_internal(def, ns, name, &mut |v| {
        let Some(a) = v["metadata"]["finalizers"].as_array_mut() else {
            return false;
        };
        let before = a.len();
        a.retain(|x| x != f);
        if a.is_empty() {
            if let Some(m) = v["metadata"].as_object_mut() {
                m.remove("finalizers");
            }
            return true;
        }
        a.len() != before
    });
}

fn deleting(v: &Value) -> bool {
    v["metadata"].get("deletionTimestamp").is_some()
}

/// Every object with an owner reference to one of `uids`.
fn dependents(st: &State, uids: &HashSet<String>) -> Vec<(Arc<ResourceDef>, Arc<Obj>)> {
    let reg = st.registry();
    let mut out = Vec::new();
    for (gr, store) in st.stores() {
        let Some(def) = reg.preferred(&gr.group, &gr.resource) else {
            continue;
        };
        for o in store.all() {
            let owned = o.value["metadata"]["ownerReferences"]
                .as_array()
                .is_some_and(|refs| {
                    refs.iter()
                        .any(|r| r["uid"].as_str().is_some_and(|u| uids.contains(u)))
                });
            if owned {
                out.push((def.clone(), o));
            }
        }
    }
    out
}

fn background() -> DeleteOpts {
    DeleteOpts {
        propagation: Some(Propagation::Background),
        ..DeleteOpts::default()
    }
}

fn collect_removed(st: &State) {
    let uids: HashSet<String> = std::mem::take(
        &mut *st
            .removed_uids
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    )
    .into_iter()
    .filter(|u| !u.is_empty())
    .collect();
    if uids.is_empty() {
        return;
    }
    for (def, o) in dependents(st, &uids) {
        let refs = o.value["metadata"]["ownerReferences"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let alive: Vec<&Value> = refs
            .iter()
            .filter(|r| r["uid"].as_str().is_none_or(|u| !uids.contains(u)))
            .collect();
        if alive.is_empty() {
            if !deleting(&o.value) {
                let _ = st.delete_object(&def, o.namespace(), o.name(), &background());
            }
        } else {
            let keep: Vec<Value> = alive.into_iter().cloned().collect();
            st.modify_internal(&def, o.namespace(), o.name(), &mut |v| {
                v["metadata"]["ownerReferences"] = json!(keep);
                true
            });
        }
    }
}

/// Handles one object being deleted; returns true when it needs another look later.
fn handle_pending(st: &State, def: &Arc<ResourceDef>, o: &Arc<Obj>) -> bool {
    let v = &o.value;
    let (ns, name) = (o.namespace().to_string(), o.name().to_string());
    if def.group.is_empty() && def.plural == "namespaces" {
        return terminate_namespace(st, def, &name);
    }
    if def.group == "apiextensions.k8s.io"
        && def.plural == "customresourcedefinitions"
        && has_finalizer(v, CRD_CLEANUP_FINALIZER)
    {
        let group = v["spec"]["group"].as_str().unwrap_or_default();
        let plural = v["spec"]["names"]["plural"].as_str().unwrap_or_default();
        let gr = GroupResource {
            group: group.into(),
            resource: plural.into(),
        };
        let store = st.store(&gr);
        if let Some(idef) = st.def(group, plural) {
            for item in store.all() {
                if !deleting(&item.value) {
                    let _ = st.delete_object(&idef, item.namespace(), item.name(), &background());
                }
            }
        }
        if store.is_empty() {
            remove_finalizer(st, def, &ns, &name, CRD_CLEANUP_FINALIZER);
            return false;
        }
        return true;
    }
    let mut again = false;
    if has_finalizer(v, FOREGROUND_FINALIZER) {
        let uid: HashSet<String> = [o.uid().to_string()].into_iter().collect();
        let deps = dependents(st, &uid);
        let mut blocking = 0;
        for (ddef, d) in &deps {
            if !deleting(&d.value) {
                let _ = st.delete_object(
                    ddef,
                    d.namespace(),
                    d.name(),
                    &DeleteOpts {
                        propagation: Some(Propagation::Foreground),
                        ..DeleteOpts::default()
                    },
                );
            }
            let blocks = d.value["metadata"]["ownerReferences"]
                .as_array()
                .is_some_and(|refs| {
                    refs.iter().any(|r| {
                        r["uid"].as_str() == Some(o.uid()) && r["blockOwnerDeletion"] == json!(true)
                    })
                });
            if blocks {
                blocking += 1;
            }
        }
        if blocking == 0 {
            remove_finalizer(st, def, &ns, &name, FOREGROUND_FINALIZER);
        } else {
            again = true;
        }
    }
    if has_finalizer(v, ORPHAN_FINALIZER) {
        let uid: HashSet<String> = [o.uid().to_string()].into_iter().collect();
        for (ddef, d) in dependents(st, &uid) {
            let owner = o.uid().to_string();
            st.modify_internal(&ddef, d.namespace(), d.name(), &mut |dv| {
                let Some(refs) = dv["metadata"]["ownerReferences"].as_array_mut() else {
                    return false;
                };
                refs.retain(|r| r["uid"].as_str() != Some(owner.as_str()));
                if refs.is_empty()
                    && let Some(m) = dv["metadata"].as_object_mut()
                {
                    m.remove("ownerReferences");
                }
                true
            });
        }
        remove_finalizer(st, def, &ns, &name, ORPHAN_FINALIZER);
    }
    again
}

fn terminate_namespace(st: &State, def: &ResourceDef, ns: &str) -> bool {
    let reg = st.registry();
    let mut remaining = 0usize;
    for (gr, store) in st.stores() {
        let Some(idef) = reg.preferred(&gr.group, &gr.resource) else {
            continue;
        };
        if !idef.namespaced {
            continue;
        }
        let (items, _, _, _) = store.list(Some(ns), None, None, &|_| true);
        for item in items {
            remaining += 1;
            if !deleting(&item.value) {
                let _ = st.delete_object(&idef, ns, item.name(), &background());
            }
        }
    }
    if remaining > 0 {
        return true;
    }
    st.modify_internal(def, "", ns, &mut |v| {
        let Some(f) = v["spec"]["finalizers"].as_array_mut() else {
            return false;
        };
        let before = f.len();
        f.retain(|x| x != "kubernetes");
        f.len() != before
    });
    false
}

/// Deletes new objects whose owners do not exist (any more, or with that uid), or strips
/// such dangling references when other owners remain, as the garbage collector does.
fn verify_owners(st: &State) {
    let queued: Vec<(GroupResource, String, String)> = std::mem::take(
        &mut *st
            .check_owners
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    let reg = st.registry();
    for (gr, ns, name) in queued {
        let (Some(def), Some(o)) = (
            reg.preferred(&gr.group, &gr.resource),
            st.store(&gr).get(&ns, &name),
        ) else {
            continue;
        };
        let refs = o.value["metadata"]["ownerReferences"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let dangling: HashSet<String> = refs
            .iter()
            .filter(|r| {
                let Some(odef) = reg.by_kind(
                    r["apiVersion"].as_str().unwrap_or_default(),
                    r["kind"].as_str().unwrap_or_default(),
                ) else {
                    return false;
                };
                let ons = if odef.namespaced { ns.as_str() } else { "" };
                let owner = st
                    .store(&odef.group_resource())
                    .get(ons, r["name"].as_str().unwrap_or_default());
                owner.is_none_or(|ow| Some(ow.uid()) != r["uid"].as_str())
            })
            .filter_map(|r| r["uid"].as_str().map(str::to_string))
            .collect();
        if dangling.is_empty() || deleting(&o.value) {
            continue;
        }
        if dangling.len() == refs.len() {
            let _ = st.delete_object(&def, &ns, &name, &background());
        } else {
            st.modify_internal(&def, &ns, &name, &mut |v| {
                if let Some(a) = v["metadata"]["ownerReferences"].as_array_mut() {
                    a.retain(|r| r["uid"].as_str().is_none_or(|u| !dangling.contains(u)));
                }
                true
            });
        }
    }
}

fn pass(st: &State) {
    verify_owners(st);
    collect_removed(st);
    let pending: Vec<(GroupResource, String, String)> = st
        .pending
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .cloned()
        .collect();
    let mut keep = HashMap::new();
    for key in pending {
        let (gr, ns, name) = &key;
        let again = match (st.def(&gr.group, &gr.resource), st.store(gr).get(ns, name)) {
            (Some(def), Some(o)) if deleting(&o.value) => handle_pending(st, &def, &o),
            _ => false,
        };
        keep.insert(key, again);
    }
    {
        let mut p = st
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (k, again) in keep {
            if !again {
                p.remove(&k);
            }
        }
    }
    // Dependents removed during this pass may have produced more garbage.
    if !st
        .removed_uids
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .is_empty()
    {
        st.wake.notify_one();
    }
}
