//! A simulated agent runtime (`runtime.agentic-layer.ai/v1alpha1` `Agent`): for each Agent
//! with an A2A protocol it publishes `status.url` as the real runtime does
//! (`http://<name>.<namespace>.svc.cluster.local:<port><path>/.well-known/agent-card.json`)
//! with a `Ready` condition; an Agent without one gets no URL and `Ready=False`.
//!
//! The Agent CRD may be missing: the watch then retries with backoff until it is installed
//! (the fixture is `fixtures/evaluations/agents.runtime.agentic-layer.ai.yaml`).

use futures::StreamExt;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};

/// Default A2A port of an Agent protocol without one.
pub const DEFAULT_PORT: u64 = 8000;

/// The `Agent` resource.
pub fn agent_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("runtime.agentic-layer.ai", "v1alpha1", "Agent"),
        "agents",
    )
}

/// The `status.url` the runtime publishes for `agent`, or `None` without an A2A protocol.
pub fn agent_card_url(agent: &Value) -> Option<String> {
    let name = agent.pointer("/metadata/name")?.as_str()?;
    let namespace = agent.pointer("/metadata/namespace")?.as_str()?;
    let a2a = agent
        .pointer("/spec/protocols")?
        .as_array()?
        .iter()
        .find(|p| p.get("type").and_then(Value::as_str) == Some("A2A"))?;
    let port = a2a
        .get("port")
        .and_then(Value::as_u64)
        .unwrap_or(DEFAULT_PORT);
    let path = a2a
        .get("path")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .trim_end_matches('/');
    Some(format!(
        "http://{name}.{namespace}.svc.cluster.local:{port}{path}/.well-known/agent-card.json"
    ))
}

/// The status to publish for `agent`.
pub fn desired_status(agent: &Value) -> Value {
    match agent_card_url(agent) {
        Some(url) => json!({
            "url": url,
            "conditions": [{"type": "Ready", "status": "True", "reason": "Ready", "message": "agent is ready"}]
        }),
        None => json!({
            "conditions": [{"type": "Ready", "status": "False", "reason": "NoA2AProtocol", "message": "the agent has no A2A protocol"}]
        }),
    }
}

async fn sync(api: &Api<DynamicObject>, agent: &DynamicObject) -> Result<(), kube::Error> {
    let value = serde_json::to_value(agent).unwrap_or(Value::Null);
    let want = desired_status(&value);
    let have = value.get("status").cloned().unwrap_or(Value::Null);
    if have.get("url") == want.get("url")
        && have.pointer("/conditions/0/status") == want.pointer("/conditions/0/status")
    {
        return Ok(());
    }
    let mut status = want;
    if status.get("url").is_none() {
        status["url"] = Value::Null;
    }
    let namespaced: Api<DynamicObject> = Api::namespaced_with(
        api.clone().into_client(),
        &agent.namespace().unwrap_or_default(),
        &agent_resource(),
    );
    namespaced
        .patch_status(
            &agent.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({"status": status})),
        )
        .await
        .map(|_| ())
}

/// Runs the agent runtime simulator until the future is dropped.
pub async fn run(client: kube::Client) {
    let ar = agent_resource();
    let api: Api<DynamicObject> = Api::all_with(client, &ar);
    let mut agents = watcher(api.clone(), watcher::Config::default())
        .default_backoff()
        .applied_objects()
        .boxed();
    while let Some(item) = agents.next().await {
        let Ok(agent) = item else { continue };
        if agent.meta().deletion_timestamp.is_some() {
            continue;
        }
        if let Err(error) = sync(&api, &agent).await {
            tracing::debug!(%error, agent = %agent.name_any(), "cannot publish the agent status");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_follows_the_runtime_format() {
        let agent = json!({"metadata": {"name": "weather-agent", "namespace": "agents"},
            "spec": {"protocols": [{"type": "A2A", "port": 9000, "path": "/a2a/"}]}});
        assert_eq!(
            agent_card_url(&agent).as_deref(),
            Some(
                "http://weather-agent.agents.svc.cluster.local:9000/a2a/.well-known/agent-card.json"
            )
        );
        let default_port = json!({"metadata": {"name": "a", "namespace": "b"},
            "spec": {"protocols": [{"type": "A2A"}]}});
        assert_eq!(
            agent_card_url(&default_port).as_deref(),
            Some("http://a.b.svc.cluster.local:8000/.well-known/agent-card.json")
        );
        let none = json!({"metadata": {"name": "a", "namespace": "b"}, "spec": {}});
        assert_eq!(agent_card_url(&none), None);
        assert_eq!(desired_status(&none)["conditions"][0]["status"], "False");
    }
}
