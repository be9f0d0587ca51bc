//! Agent URL resolution: which address the run phase sends the scenarios to.
//!
//! In order: the `runtime.agentic-layer.ai/v1alpha1` Agent's `status.url` with the
//! `/.well-known/agent-card.json` suffix removed (the run phase wants the A2A base URL, not
//! the agent card); else the Agent's first A2A protocol (`spec.protocols[].port`, default
//! 8000, and `path`); else the Service DNS form `http://<name>.<namespace>:8000`.

use agentic_api::evaluations::DEFAULT_AGENT_PORT;
use kube::{api::ApiResource, core::GroupVersionKind};
use serde_json::Value;

/// API group of the agent runtime's `Agent`.
pub const AGENT_GROUP: &str = "runtime.agentic-layer.ai";
/// Version of the agent runtime's `Agent`.
pub const AGENT_VERSION: &str = "v1alpha1";
/// Suffix of `Agent.status.url` that is not part of the A2A base URL.
pub const AGENT_CARD_SUFFIX: &str = "/.well-known/agent-card.json";

/// The `Agent` resource of the agent runtime.
pub fn agent_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(AGENT_GROUP, AGENT_VERSION, "Agent"),
        "agents",
    )
}

/// Where the agent URL came from; shown as the reason of the `AgentResolved` condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentUrlSource {
    /// The Agent's `status.url`.
    AgentStatusUrl,
    /// The Agent's A2A protocol port and path.
    AgentProtocol,
    /// The Service DNS name with port 8000 (the Agent was not found or publishes neither).
    ServiceDns,
}

impl AgentUrlSource {
    /// The condition reason.
    pub fn reason(self) -> &'static str {
        match self {
            Self::AgentStatusUrl => "AgentStatusURL",
            Self::AgentProtocol => "AgentProtocolPort",
            Self::ServiceDns => "ServiceDNS",
        }
    }
}

/// A resolved agent URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentUrl {
    /// The URL passed to `run-template` as `agentUrl`.
    pub url: String,
    /// Where it came from.
    pub source: AgentUrlSource,
}

/// Removes the agent-card suffix (and a trailing slash) from an `Agent.status.url`.
pub fn strip_agent_card(url: &str) -> &str {
    url.strip_suffix(AGENT_CARD_SUFFIX)
        .unwrap_or(url)
        .trim_end_matches('/')
}

/// The Service DNS form upstream always used.
pub fn service_dns_url(name: &str, namespace: &str) -> String {
    format!("http://{name}.{namespace}:{DEFAULT_AGENT_PORT}")
}

fn protocol_url(name: &str, namespace: &str, agent: &Value) -> Option<String> {
    let protocols = agent.pointer("/spec/protocols")?.as_array()?;
    let a2a = protocols.iter().find(|p| {
        p.get("type")
            .and_then(Value::as_str)
            .is_some_and(|t| t.eq_ignore_ascii_case("A2A"))
    })?;
    let port = a2a
        .get("port")
        .and_then(Value::as_u64)
        .filter(|p| (1..=65_535).contains(p))
        .unwrap_or(u64::from(DEFAULT_AGENT_PORT));
    let path = a2a
        .get("path")
        .and_then(Value::as_str)
        .map(|p| p.trim_end_matches('/'))
        .filter(|p| !p.is_empty())
        .map(|p| {
            if p.starts_with('/') {
                p.to_owned()
            } else {
                format!("/{p}")
            }
        })
        .unwrap_or_default();
    Some(format!("http://{name}.{namespace}:{port}{path}"))
}

/// Resolves the URL of agent `name` in `namespace`, given the Agent object when one exists
/// (as JSON).
pub fn resolve(name: &str, namespace: &str, agent: Option<&Value>) -> AgentUrl {
    if let Some(agent) = agent {
        if let Some(url) = agent
            .pointer("/status/url")
            .and_then(Value::as_str)
            .map(strip_agent_card)
            .filter(|u| !u.is_empty())
        {
            return AgentUrl {
                url: url.to_owned(),
                source: AgentUrlSource::AgentStatusUrl,
            };
        }
        if let Some(url) = protocol_url(name, namespace, agent) {
            return AgentUrl {
                url,
                source: AgentUrlSource::AgentProtocol,
            };
        }
    }
    AgentUrl {
        url: service_dns_url(name, namespace),
        source: AgentUrlSource::ServiceDns,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn status_url_wins_without_the_agent_card_suffix() {
        let agent = json!({
            "spec": {"protocols": [{"type": "A2A", "port": 9000}]},
            "status": {"url": "http://weather-agent.sample-agents.svc.cluster.local:9000/a2a/.well-known/agent-card.json"}
        });
        assert_eq!(
            resolve("weather-agent", "sample-agents", Some(&agent)),
            AgentUrl {
                url: "http://weather-agent.sample-agents.svc.cluster.local:9000/a2a".into(),
                source: AgentUrlSource::AgentStatusUrl
            }
        );
    }

    /// Upstream hard-coded port 8000; the complex-agent sample listens on 9000.
    #[test]
    fn protocol_port_and_path_when_status_has_no_url() {
        let agent = json!({"spec": {"protocols": [
            {"type": "OpenAI", "port": 7000},
            {"type": "A2A", "port": 9000, "path": "rpc/"}
        ]}, "status": {}});
        let got = resolve("complex-agent", "agents", Some(&agent));
        assert_eq!(got.url, "http://complex-agent.agents:9000/rpc");
        assert_eq!(got.source, AgentUrlSource::AgentProtocol);
        let defaulted = json!({"spec": {"protocols": [{"type": "A2A"}]}});
        assert_eq!(resolve("a", "b", Some(&defaulted)).url, "http://a.b:8000");
    }

    #[test]
    fn service_dns_without_an_agent() {
        let got = resolve("weather-agent", "sample-agents", None);
        assert_eq!(got.url, "http://weather-agent.sample-agents:8000");
        assert_eq!(got.source, AgentUrlSource::ServiceDns);
        let bare = json!({"spec": {}});
        assert_eq!(
            resolve("my-agent", "my-ns", Some(&bare)).source,
            AgentUrlSource::ServiceDns
        );
    }

    #[test]
    fn suffix_stripping() {
        assert_eq!(
            strip_agent_card("http://a:1/.well-known/agent-card.json"),
            "http://a:1"
        );
        assert_eq!(strip_agent_card("http://a:1/"), "http://a:1");
        assert_eq!(strip_agent_card("http://a:1"), "http://a:1");
    }
}
