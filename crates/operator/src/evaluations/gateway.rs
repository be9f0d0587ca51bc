//! AI gateway resolution: which LLM endpoint the evaluate phase (`evaluate-template`) uses.
//!
//! In order: the `runtime.agentic-layer.ai/v1alpha1` `AiGateway` named by `spec.aiGatewayRef`
//! (its namespace defaults to the Experiment's); else the first `AiGateway`, by name, in the
//! namespace `ai-gateway`; else none, and the template's own default applies. The URL is the
//! gateway Service's cluster DNS name with its `spec.port` (default 80):
//! `http://<name>.<namespace>.svc.cluster.local.:<port>`.

use agentic_api::evaluations::Experiment;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::{api::ApiResource, core::GroupVersionKind};
use serde_json::{Value, json};

use super::agent::{AGENT_GROUP, AGENT_VERSION};

/// Namespace searched for a gateway when the Experiment names none.
pub const DEFAULT_GATEWAY_NAMESPACE: &str = "ai-gateway";
/// Port of an `AiGateway` without `spec.port` (the CRD's default).
pub const DEFAULT_GATEWAY_PORT: i64 = 80;
/// `AiGatewayResolved=True` reason: the gateway named by `spec.aiGatewayRef`.
pub const REASON_REFERENCED: &str = "AiGatewayRef";
/// `AiGatewayResolved=True` reason: the first gateway in `ai-gateway`.
pub const REASON_DEFAULT: &str = "DefaultAiGateway";
/// `AiGatewayResolved=False` reason: `spec.aiGatewayRef` names a gateway that does not exist.
pub const REASON_NOT_FOUND: &str = "AiGatewayNotFound";
/// Value of `openAiApiKey` for templates that take it (the gateway ignores it).
pub const OPENAI_API_KEY: &str = "testbench";

/// The `AiGateway` resource of the agent runtime.
pub fn ai_gateway_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(AGENT_GROUP, AGENT_VERSION, "AiGateway"),
        "aigateways",
    )
}

/// The outcome of resolving the gateway of one Experiment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gateway {
    /// No reference and no gateway in `ai-gateway`: no evaluate config is passed.
    None,
    /// A gateway was found.
    Found {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// The base URL passed to the evaluate phase.
        url: String,
        /// Named by `spec.aiGatewayRef` (else the default one).
        referenced: bool,
    },
    /// `spec.aiGatewayRef` names a gateway that does not exist (or the CRD is not installed).
    Missing {
        /// The namespace looked in.
        namespace: String,
        /// The name looked for.
        name: String,
    },
}

impl Gateway {
    /// The URL to pass, if any.
    pub fn url(&self) -> Option<&str> {
        match self {
            Self::Found { url, .. } => Some(url),
            Self::None | Self::Missing { .. } => None,
        }
    }
}

/// The Service URL of a gateway.
pub fn service_url(name: &str, namespace: &str, port: i64) -> String {
    format!("http://{name}.{namespace}.svc.cluster.local.:{port}")
}

/// The port a gateway is reached on: its `spec.port`, or the CRD's default when unset or
/// out of range. `gateway` is the object as JSON (or its `DynamicObject` data).
pub fn port_of(gateway: &Value) -> i64 {
    gateway["spec"]["port"]
        .as_i64()
        .filter(|p| (1..=65535).contains(p))
        .unwrap_or(DEFAULT_GATEWAY_PORT)
}

/// The gateway `spec.aiGatewayRef` (`reference`) names, as `(namespace, name)` (the namespace
/// defaults to the Experiment's `exp_namespace`); `None` without a reference or with an empty
/// name.
pub fn reference(
    exp_namespace: &str,
    reference: Option<&ObjectReference>,
) -> Option<(String, String)> {
    let reference = reference?;
    let name = reference.name.clone().filter(|n| !n.is_empty())?;
    let namespace = reference
        .namespace
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| exp_namespace.to_owned());
    Some((namespace, name))
}

/// Resolves the gateway of `exp` among `gateways` (every known `AiGateway`, as JSON).
pub fn resolve<'a>(
    exp_namespace: &str,
    exp: &Experiment,
    gateways: impl IntoIterator<Item = &'a Value>,
) -> Gateway {
    let found = |g: &Value, referenced: bool| {
        let name = g["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let namespace = g["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        Gateway::Found {
            url: service_url(&name, &namespace, port_of(g)),
            namespace,
            name,
            referenced,
        }
    };
    let named = |g: &&Value, ns: &str, name: &str| {
        g["metadata"]["namespace"].as_str() == Some(ns)
            && g["metadata"]["name"].as_str() == Some(name)
    };
    match reference(exp_namespace, exp.spec.ai_gateway_ref.as_ref()) {
        Some((namespace, name)) => gateways
            .into_iter()
            .find(|g| named(g, &namespace, &name))
            .map_or(Gateway::Missing { namespace, name }, |g| found(g, true)),
        None => gateways
            .into_iter()
            .filter(|g| g["metadata"]["namespace"].as_str() == Some(DEFAULT_GATEWAY_NAMESPACE))
            .min_by(|a, b| {
                a["metadata"]["name"]
                    .as_str()
                    .cmp(&b["metadata"]["name"].as_str())
            })
            .map_or(Gateway::None, |g| found(g, false)),
    }
}

/// Whether `exp` is written for the newest upstream API (it uses `dataset.inline`, `env` or
/// `schedule`, which only that version has), whose `evaluate-template` takes `openAiBasePath`
/// and `openAiApiKey` instead of the older `openApiBasePath`.
pub fn newest_template_keys(exp: &Experiment) -> bool {
    exp.spec
        .dataset
        .as_ref()
        .is_some_and(|d| d.inline.is_some())
        || exp.spec.env.is_some()
        || exp.spec.schedule.is_some()
}

/// The `config` of `evaluate-template` for a gateway URL, in the keys the Experiment's API
/// version's template declares.
pub fn evaluate_config(exp: &Experiment, url: &str) -> Value {
    if newest_template_keys(exp) {
        json!({"openAiBasePath": url, "openAiApiKey": OPENAI_API_KEY})
    } else {
        json!({"openApiBasePath": url})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn experiment(spec: Value) -> Experiment {
        let mut exp = json!({
            "apiVersion": "testbench.agentic-layer.ai/v1alpha1",
            "kind": "Experiment",
            "metadata": {"name": "e", "namespace": "team"},
        });
        exp["spec"] = spec;
        serde_json::from_value(exp).unwrap()
    }

    fn gw(ns: &str, name: &str, port: Option<i64>) -> Value {
        let mut g = json!({"metadata": {"name": name, "namespace": ns}, "spec": {"aiModels": []}});
        if let Some(p) = port {
            g["spec"]["port"] = json!(p);
        }
        g
    }

    #[test]
    fn a_reference_wins_and_defaults_to_the_experiments_namespace() {
        let gateways = [
            gw("ai-gateway", "a-default", Some(4000)),
            gw("team", "mine", Some(8080)),
        ];
        let exp = experiment(json!({"agentRef": {"name": "x"}, "aiGatewayRef": {"name": "mine"}}));
        assert_eq!(
            resolve("team", &exp, &gateways),
            Gateway::Found {
                namespace: "team".into(),
                name: "mine".into(),
                url: "http://mine.team.svc.cluster.local.:8080".into(),
                referenced: true,
            }
        );
    }

    #[test]
    fn a_missing_reference_does_not_fall_back_to_the_default() {
        let gateways = [gw("ai-gateway", "litellm", None)];
        let exp = experiment(json!({
            "agentRef": {"name": "x"},
            "aiGatewayRef": {"name": "gone", "namespace": "elsewhere"},
        }));
        assert_eq!(
            resolve("team", &exp, &gateways),
            Gateway::Missing {
                namespace: "elsewhere".into(),
                name: "gone".into()
            }
        );
    }

    #[test]
    fn without_a_reference_the_first_gateway_in_ai_gateway_is_used() {
        let gateways = [
            gw("ai-gateway", "zeta", Some(1)),
            gw("other", "aaa", Some(2)),
            gw("ai-gateway", "litellm", None),
        ];
        let exp = experiment(json!({"agentRef": {"name": "x"}}));
        let resolved = resolve("team", &exp, &gateways);
        assert_eq!(
            resolved.url(),
            Some("http://litellm.ai-gateway.svc.cluster.local.:80")
        );
        assert!(matches!(
            resolved,
            Gateway::Found {
                referenced: false,
                ..
            }
        ));
        assert_eq!(
            resolve("team", &exp, &[gw("other", "aaa", None)]),
            Gateway::None
        );
        // An empty name is no reference.
        let empty = experiment(json!({"agentRef": {"name": "x"}, "aiGatewayRef": {"name": ""}}));
        assert!(resolve("team", &empty, &gateways).url().is_some());
    }

    #[test]
    fn the_config_keys_follow_the_experiments_api_version() {
        let url = "http://g.ns.svc.cluster.local.:80";
        let v2 = experiment(json!({"agentRef": {"name": "x"}, "scenarios": []}));
        assert_eq!(evaluate_config(&v2, url), json!({"openApiBasePath": url}));
        for newest in [
            json!({"agentRef": {"name": "x"}, "dataset": {"inline": {"scenarios": []}}}),
            json!({"agentRef": {"name": "x"}, "dataset": {"url": "https://d/x.json"}, "env": []}),
            json!({"agentRef": {"name": "x"}, "dataset": {"url": "https://d/x.json"}, "schedule": {"cron": "0 * * * *"}}),
        ] {
            assert_eq!(
                evaluate_config(&experiment(newest), url),
                json!({"openAiBasePath": url, "openAiApiKey": "testbench"})
            );
        }
    }

    #[test]
    fn an_invalid_port_is_the_default_port() {
        assert_eq!(port_of(&gw("n", "g", Some(0))), 80);
        assert_eq!(port_of(&gw("n", "g", Some(70000))), 80);
        assert_eq!(port_of(&json!({"spec": {"port": "x"}})), 80);
    }
}
