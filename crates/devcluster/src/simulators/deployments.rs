//! An apps/v1 Deployment status simulator: reports a rollout of each generation that
//! becomes available after a short delay, without creating `ReplicaSets` or pods.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Patch, PatchParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::reflector;
use kube::runtime::watcher::{self, Event};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};

use super::util::{
    Length, Memo, fmt_ts, hash_of, lookup, seconds, since, subset_matches, truthy, uid_of,
};
use super::{SimError, Timing, lean};

/// Field manager of the Deployment simulator's writes.
const MANAGER: &str = "devcluster-deployment-controller";

struct Ctx {
    client: kube::Client,
    timing: Timing,
    /// Per Deployment: the generation being rolled out and when its rollout began.
    rollouts: Memo<(i64, Timestamp)>,
    written: Memo<Value>,
}

/// Runs the Deployment simulator until the future is dropped.
pub async fn run(client: kube::Client, timing: Timing) {
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        timing,
        rollouts: Memo::default(),
        written: Memo::default(),
    });
    let (reader, writer) = reflector::store();
    let forget = ctx.clone();
    let stream = lean::watcher::<Deployment>(client, watcher::Config::default())
        .reflect(writer)
        .inspect(move |ev| {
            if let Ok(Event::Delete(d)) = ev {
                let uid = uid_of(d);
                forget.rollouts.forget(&uid);
                forget.written.forget(&uid);
            }
        })
        .touched_objects();
    Controller::for_stream(stream, reader)
        .with_config(ControllerConfig::default().concurrency(16))
        .run(reconcile, error_policy, ctx)
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "deployment simulator");
            }
        })
        .await;
}

#[allow(clippy::needless_pass_by_value)]
fn error_policy(_d: Arc<Deployment>, e: &SimError, _ctx: Arc<Ctx>) -> Action {
    tracing::debug!(error = %e, "deployment simulator write failed; retrying");
    Action::requeue(Duration::from_millis(500))
}

/// A stable stand-in for the `pod-template-hash` of the current template.
fn template_hash(d: &Deployment) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let t = d
        .spec
        .as_ref()
        .and_then(|s| serde_json::to_string(&s.template).ok())
        .unwrap_or_default();
    let mut h = hash_of(&[&t]);
    let mut out = String::new();
    for _ in 0..10 {
        let i = usize::try_from(h % 27).unwrap_or(0);
        out.push(char::from(ALPHABET[i]));
        h /= 27;
    }
    out
}

fn condition(ty: &str, ok: bool, reason: &str, message: &str, now: &str, old: &[Value]) -> Value {
    let status = if ok { "True" } else { "False" };
    let transition = old
        .iter()
        .find(|c| c["type"] == ty && c["status"] == status)
        .and_then(|c| c["lastTransitionTime"].as_str())
        .unwrap_or(now)
        .to_string();
    let update = old
        .iter()
        .find(|c| c["type"] == ty && c["status"] == status && c["reason"] == reason)
        .and_then(|c| c["lastUpdateTime"].as_str())
        .unwrap_or(now)
        .to_string();
    json!({
        "type": ty,
        "status": status,
        "lastUpdateTime": update,
        "lastTransitionTime": transition,
        "reason": reason,
        "message": message,
    })
}

fn nonzero(n: i64) -> Value {
    if n == 0 { Value::Null } else { json!(n) }
}

#[allow(clippy::too_many_lines)]
async fn reconcile(d: Arc<Deployment>, ctx: Arc<Ctx>) -> Result<Action, SimError> {
    if d.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let uid = uid_of(d.as_ref());
    let generation = d.metadata.generation.unwrap_or(1);
    let spec = d.spec.clone().unwrap_or_default();
    let replicas = i64::from(spec.replicas.unwrap_or(1).max(0));
    let cached = d
        .status
        .as_ref()
        .and_then(|s| serde_json::to_value(s).ok())
        .unwrap_or_else(|| json!({}));
    let old_conds: Vec<Value> = cached["conditions"].as_array().cloned().unwrap_or_default();
    let (_, began) = ctx.rollouts.with(
        &uid,
        || (generation, Timestamp::now()),
        |r| {
            if r.0 != generation {
                *r = (generation, Timestamp::now());
            }
            *r
        },
    );
    let template_annotations = spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.annotations.clone())
        .unwrap_or_default();
    let never_ready = truthy(lookup(d.annotations(), "unavailable", None))
        || truthy(lookup(&template_annotations, "image-pull-failure", None))
        || truthy(lookup(&template_annotations, "unschedulable", None));
    let delay = seconds(
        lookup(d.annotations(), "ready-seconds", None),
        "devcluster.io/ready-seconds",
    )
    .map_or(ctx.timing.deployment_ready, Length::or_long);
    let progress_deadline = Duration::from_secs(
        u64::try_from(spec.progress_deadline_seconds.unwrap_or(600)).unwrap_or(600),
    );
    let elapsed = since(began);
    let previously_available = old_conds
        .iter()
        .any(|c| c["type"] == "Available" && c["status"] == "True");
    let old_ready = cached["readyReplicas"].as_i64().unwrap_or(0);
    let rolled_out = !never_ready && elapsed >= delay;
    let ready = if rolled_out {
        replicas
    } else {
        old_ready.min(replicas)
    };
    let available = ready >= replicas || (previously_available && ready > 0);
    let now = fmt_ts(Timestamp::now());
    let rs = format!("{}-{}", d.name_any(), template_hash(&d));
    let progressing = if rolled_out {
        condition(
            "Progressing",
            true,
            "NewReplicaSetAvailable",
            &format!("ReplicaSet \"{rs}\" has successfully progressed."),
            &now,
            &old_conds,
        )
    } else if elapsed >= progress_deadline {
        condition(
            "Progressing",
            false,
            "ProgressDeadlineExceeded",
            &format!("ReplicaSet \"{rs}\" has timed out progressing."),
            &now,
            &old_conds,
        )
    } else {
        condition(
            "Progressing",
            true,
            "ReplicaSetUpdated",
            &format!("ReplicaSet \"{rs}\" is progressing."),
            &now,
            &old_conds,
        )
    };
    let available_cond = if available {
        condition(
            "Available",
            true,
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.",
            &now,
            &old_conds,
        )
    } else {
        condition(
            "Available",
            false,
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.",
            &now,
            &old_conds,
        )
    };
    let desired = json!({
        "observedGeneration": generation,
        "replicas": nonzero(replicas),
        "updatedReplicas": nonzero(replicas),
        "readyReplicas": nonzero(ready),
        "availableReplicas": nonzero(ready),
        "unavailableReplicas": nonzero(replicas - ready),
        "conditions": [available_cond, progressing],
    });
    let same =
        subset_matches(&desired, &cached) || ctx.written.get(&uid).is_some_and(|w| w == desired);
    if !same {
        let pp = PatchParams {
            field_manager: Some(MANAGER.into()),
            ..PatchParams::default()
        };
        let api: Api<lean::Lean<Deployment>> =
            Api::namespaced(ctx.client.clone(), &d.namespace().unwrap_or_default());
        match api
            .patch_status(
                &d.name_any(),
                &pp,
                &Patch::Merge(json!({"status": desired.clone()})),
            )
            .await
        {
            Ok(_) => ctx.written.set(&uid, desired),
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(Action::await_change()),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(if rolled_out {
        Action::await_change()
    } else if never_ready {
        if elapsed < progress_deadline {
            Action::requeue(progress_deadline.saturating_sub(elapsed))
        } else {
            Action::await_change()
        }
    } else {
        Action::requeue(delay.saturating_sub(elapsed).max(Duration::from_millis(1)))
    })
}
