//! An Argo Workflows simulator (`argoproj.io/v1alpha1` `Workflow`): a Workflow runs
//! `Pending → Running → Succeeded | Failed`. A Workflow whose `workflowTemplateRef` names a
//! missing `WorkflowTemplate` ends in `Error`. A template with a `suspend` step keeps the
//! Workflow `Running` with a suspended node until it is resumed.
//!
//! Scripting annotations, read from the Workflow and then from its `WorkflowTemplate`:
//! `devcluster.io/run-seconds` (default 0.1, or `forever`), `devcluster.io/result`
//! (`Succeeded` by default, or `Failed`), `devcluster.io/message` (the failure message).
//! Resume a suspended Workflow with the annotation `devcluster.io/resume: "true"`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use kube::api::{DynamicObject, Patch, PatchParams};
use kube::discovery::ApiResource;
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};
use serde_json::{Value, json};

use super::SimError;
use super::crossplane::{KindCtx, run_kind};
use super::util::{Length, PREFIX, fmt_ts, parse_ts, seconds, since, truthy};

/// How often a Workflow waiting for its template is looked at again.
const RECHECK: Duration = Duration::from_millis(500);

fn argo(kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: "argoproj.io".into(),
        version: "v1alpha1".into(),
        api_version: "argoproj.io/v1alpha1".into(),
        kind: kind.into(),
        plural: plural.into(),
    }
}

/// `argoproj.io/v1alpha1` `Workflow`.
pub fn workflow_resource() -> ApiResource {
    argo("Workflow", "workflows")
}

/// `argoproj.io/v1alpha1` `WorkflowTemplate`.
pub fn workflow_template_resource() -> ApiResource {
    argo("WorkflowTemplate", "workflowtemplates")
}

/// Runs the Workflow simulator until the future is dropped; Workflows whose template and
/// annotations have no `devcluster.io/run-seconds` run for `run`.
pub async fn run(client: kube::Client, run: Duration) {
    run_kind(
        client,
        workflow_resource(),
        "argo-workflows",
        run,
        reconcile,
    )
    .await;
}

/// Whether a workflow spec (or template spec) has a `suspend` step.
pub fn has_suspend(spec: &Value) -> bool {
    spec.get("templates")
        .and_then(Value::as_array)
        .is_some_and(|ts| ts.iter().any(|t| t.get("suspend").is_some()))
}

#[allow(clippy::too_many_lines)] // one linear workflow lifecycle
async fn reconcile(wf: Arc<DynamicObject>, ctx: Arc<KindCtx>) -> Result<Action, SimError> {
    if wf.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = wf.namespace().unwrap_or_default();
    let name = wf.name_any();
    let api = ctx.api(&ns);
    let phase = wf
        .data
        .pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if matches!(phase, "Succeeded" | "Failed" | "Error") {
        return Ok(Action::await_change());
    }
    let now = Timestamp::now();
    // The template: scripting defaults and steps.
    let mut script: BTreeMap<String, String> = BTreeMap::new();
    let mut spec = wf.data.get("spec").cloned().unwrap_or(Value::Null);
    if let Some(tname) = wf
        .data
        .pointer("/spec/workflowTemplateRef/name")
        .and_then(Value::as_str)
    {
        let templates: Api<DynamicObject> =
            Api::namespaced_with(ctx.client.clone(), &ns, &workflow_template_resource());
        match templates.get_opt(tname).await {
            Ok(Some(t)) => {
                script.extend(t.annotations().clone());
                spec = t.data.get("spec").cloned().unwrap_or(Value::Null);
            }
            Ok(None) => {
                return finish(
                    &api,
                    &name,
                    "Error",
                    &format!("workflow template {tname:?} not found"),
                    now,
                    wf.data.pointer("/status/startedAt"),
                )
                .await;
            }
            // The WorkflowTemplate CRD may not be installed yet.
            Err(kube::Error::Api(e)) if e.code == 404 => return Ok(Action::requeue(RECHECK)),
            Err(e) => return Err(e.into()),
        }
    }
    script.extend(wf.annotations().clone());
    let get = |k: &str| {
        script
            .get(&format!("{PREFIX}{k}"))
            .map(|v| v.trim().to_owned())
    };

    if phase.is_empty() {
        write(&api, &name, json!({"phase": "Pending"})).await?;
        return Ok(Action::await_change());
    }
    let started = wf
        .data
        .pointer("/status/startedAt")
        .and_then(Value::as_str)
        .and_then(parse_ts);
    let Some(started) = started.filter(|_| phase == "Running") else {
        write(
            &api,
            &name,
            json!({"phase": "Running", "startedAt": fmt_ts(now)}),
        )
        .await?;
        return Ok(Action::await_change());
    };
    let run =
        seconds(get("run-seconds").as_deref(), "run-seconds").unwrap_or(Length::For(ctx.delay));
    match run {
        Length::Forever => return Ok(Action::await_change()),
        Length::For(d) => {
            let left = d.saturating_sub(since(started));
            if !left.is_zero() {
                return Ok(Action::requeue(left));
            }
        }
    }
    if has_suspend(&spec) && !truthy(get("resume").as_deref()) {
        let node = format!("{name}-suspend");
        if wf.data.pointer(&format!("/status/nodes/{node}")).is_none() {
            write(&api, &name, json!({"nodes": {node.clone(): {"id": node, "name": node, "type": "Suspend", "phase": "Running"}}})).await?;
        }
        return Ok(Action::await_change());
    }
    let result = get("result").unwrap_or_else(|| "Succeeded".to_owned());
    let message = get("message").unwrap_or_else(|| {
        if result == "Succeeded" {
            String::new()
        } else {
            "child exited with code 1".to_owned()
        }
    });
    finish(
        &api,
        &name,
        &result,
        &message,
        now,
        wf.data.pointer("/status/startedAt"),
    )
    .await
}

async fn finish(
    api: &Api<DynamicObject>,
    name: &str,
    phase: &str,
    message: &str,
    now: Timestamp,
    started: Option<&Value>,
) -> Result<Action, SimError> {
    let mut status = json!({"phase": phase, "finishedAt": fmt_ts(now), "startedAt": started.cloned().unwrap_or_else(|| json!(fmt_ts(now)))});
    if !message.is_empty() {
        status["message"] = json!(message);
    }
    write(api, name, status).await?;
    Ok(Action::await_change())
}

async fn write(api: &Api<DynamicObject>, name: &str, status: Value) -> Result<(), SimError> {
    // Workflows have no status subresource: the controller writes the object itself.
    api.patch(
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
    fn suspend_steps_are_found() {
        assert!(has_suspend(
            &json!({"templates": [{"name": "a", "container": {}}, {"name": "wait", "suspend": {}}]})
        ));
        assert!(!has_suspend(
            &json!({"templates": [{"name": "a", "container": {}}]})
        ));
        assert!(!has_suspend(&Value::Null));
    }
}
