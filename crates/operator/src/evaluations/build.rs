//! Pure construction of what an evaluation `Experiment` generates: the `experiment.json`
//! `ConfigMap`, the Testkube `TestWorkflow` and, when enabled, the `TestTrigger`. All naming,
//! labels, owner references and defaults live here.

use std::collections::BTreeMap;

use agentic_api::evaluations::{
    ConcurrencyPolicy, EXPERIMENT_JSON_KEY, Experiment, LABEL_EXPERIMENT_NAME,
    LABEL_EXPERIMENT_NAMESPACE, LABEL_MANAGED_BY, LABEL_RESOURCE_TYPE, MANAGED_BY, OTEL_CONFIG_MAP,
    OTEL_ENDPOINT_KEY, ScenarioSource,
};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{
    Resource, ResourceExt,
    api::{ApiResource, DynamicObject},
    core::GroupVersionKind,
};
use serde_json::{Value, json};

use super::{
    agent::AgentUrl,
    experiment_json,
    gateway::{self, Gateway},
};

/// Field manager of every write.
pub const FIELD_MANAGER: &str = "agentic-operator";
/// Annotation on every generated object: `<namespace>/<name>` of the owning Experiment.
pub const ANNOTATION_OWNER: &str = "testbench.agentic-layer.ai/experiment";
/// Finalizer on Experiments whose children live in another namespace (`--testkube-namespace`).
pub const FINALIZER: &str = "testbench.agentic-layer.ai/testkube-cleanup";
/// Label selector of every generated object.
pub const CHILD_SELECTOR: &str = "testbench.agentic-layer.ai/managed-by=experiment-controller";
/// Mount path of `experiment.json` in inline mode.
pub const EXPERIMENT_JSON_PATH: &str = "/data/datasets/experiment.json";
/// Longest label value.
pub const LABEL_VALUE_MAX: usize = 63;
/// Longest object name.
pub const NAME_MAX: usize = 253;

/// The Testkube `TestWorkflow` resource.
pub fn test_workflow_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("testworkflows.testkube.io", "v1", "TestWorkflow"),
        "testworkflows",
    )
}

/// The Testkube `TestTrigger` resource.
pub fn test_trigger_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("tests.testkube.io", "v1", "TestTrigger"),
        "testtriggers",
    )
}

/// FNV-1a, 64 bit: a stable short hash for names and label values that must be shortened.
fn short_hash(text: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{:08x}", hash >> 32)
}

fn shorten(text: &str, max: usize, hashed: &str) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let keep = max.saturating_sub(9);
    let mut cut = keep.min(text.len());
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let base = text[..cut].trim_end_matches(['-', '.', '_']);
    format!("{base}-{}", short_hash(hashed))
}

/// A label value for `text`: itself when it fits 63 characters, else a prefix and a hash.
pub fn label_value(text: &str) -> String {
    shorten(text, LABEL_VALUE_MAX, text)
}

/// Where the generated objects live and what they are called.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// Namespace of every generated object.
    pub namespace: String,
    /// `ConfigMap` `<exp>-experiment`.
    pub config_map: String,
    /// `TestWorkflow` `<exp>-workflow`.
    pub workflow: String,
    /// `TestTrigger` `<exp>-trigger`.
    pub trigger: String,
    /// Whether the objects live in the Experiment's own namespace (owner references possible).
    pub same_namespace: bool,
}

fn child_name(base: &str, suffix: &str, hashed: &str) -> String {
    let max_base = NAME_MAX - suffix.len() - 1;
    format!("{}-{suffix}", shorten(base, max_base, hashed))
}

/// Names of the generated objects. Without a Testkube namespace (or when the Experiment is in
/// it) they are `<exp>-experiment|workflow|trigger` in the Experiment's namespace; otherwise
/// they go to the Testkube namespace as `<exp>-<namespace>-…`, so that Experiments of the same
/// name in different namespaces do not collide. Names too long for Kubernetes are shortened
/// with a hash.
pub fn names(name: &str, namespace: &str, testkube_namespace: Option<&str>) -> Names {
    let target = testkube_namespace
        .filter(|t| !t.is_empty())
        .unwrap_or(namespace);
    let same_namespace = target == namespace;
    let base = if same_namespace {
        name.to_owned()
    } else {
        format!("{name}-{namespace}")
    };
    let hashed = format!("{namespace}/{name}");
    Names {
        namespace: target.to_owned(),
        config_map: child_name(&base, "experiment", &hashed),
        workflow: child_name(&base, "workflow", &hashed),
        trigger: child_name(&base, "trigger", &hashed),
        same_namespace,
    }
}

/// What the reconcile wants to exist.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    /// Names and namespace.
    pub names: Names,
    /// The `experiment.json` `ConfigMap`.
    pub config_map: ConfigMap,
    /// The `TestWorkflow`.
    pub workflow: DynamicObject,
    /// The `TestTrigger`, when `spec.trigger.enabled` is true.
    pub trigger: Option<DynamicObject>,
    /// Whether `experiment.json` is mounted (inline scenarios) or filled by the setup phase.
    pub inline: bool,
}

fn labels(exp: &Experiment, resource_type: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            LABEL_EXPERIMENT_NAME.to_owned(),
            label_value(&exp.name_any()),
        ),
        (
            LABEL_EXPERIMENT_NAMESPACE.to_owned(),
            exp.namespace().unwrap_or_default(),
        ),
        (LABEL_MANAGED_BY.to_owned(), MANAGED_BY.to_owned()),
        (LABEL_RESOURCE_TYPE.to_owned(), resource_type.to_owned()),
    ])
}

fn metadata(exp: &Experiment, names: &Names, name: &str, resource_type: &str) -> ObjectMeta {
    let namespace = exp.namespace().unwrap_or_default();
    let owner: Option<OwnerReference> = if names.same_namespace {
        exp.controller_owner_ref(&())
    } else {
        None
    };
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(names.namespace.clone()),
        labels: Some(labels(exp, resource_type)),
        annotations: Some(BTreeMap::from([(
            ANNOTATION_OWNER.to_owned(),
            format!("{namespace}/{}", exp.name_any()),
        )])),
        owner_references: owner.map(|o| vec![o]),
        ..ObjectMeta::default()
    }
}

/// Splits an `ANNOTATION_OWNER` value into `(namespace, name)`.
pub fn parse_owner(value: &str) -> Option<(&str, &str)> {
    value
        .split_once('/')
        .filter(|(ns, name)| !ns.is_empty() && !name.is_empty())
}

/// The `ConfigMap`: inline scenarios rendered as `experiment.json`, or the dataset-mode
/// placeholder.
pub fn config_map(exp: &Experiment, names: &Names) -> ConfigMap {
    let spec = &exp.spec;
    let text = match spec.scenario_source() {
        Some(ScenarioSource::Inline(inline)) => {
            experiment_json::render(&experiment_json::inline_document(&inline))
        }
        _ => experiment_json::render(&experiment_json::placeholder_document(
            spec.llm_as_a_judge_model.as_deref(),
            spec.default_threshold,
        )),
    };
    ConfigMap {
        metadata: metadata(exp, names, &names.config_map, "dataset"),
        data: Some(BTreeMap::from([(EXPERIMENT_JSON_KEY.to_owned(), text)])),
        ..ConfigMap::default()
    }
}

/// The workflow's container environment: the OTLP endpoint (literal `spec.otlpEndpoint`, else
/// the `otel-config` `ConfigMap` marked optional so pods start without it), then `spec.env`,
/// whose entries replace operator-set ones of the same name.
pub fn workflow_env(exp: &Experiment) -> Vec<Value> {
    let otel = match exp.spec.otlp_endpoint.as_deref().filter(|e| !e.is_empty()) {
        Some(endpoint) => json!({"name": OTEL_ENDPOINT_KEY, "value": endpoint}),
        None => json!({
            "name": OTEL_ENDPOINT_KEY,
            "valueFrom": {"configMapKeyRef": {
                "name": OTEL_CONFIG_MAP,
                "key": OTEL_ENDPOINT_KEY,
                "optional": true
            }}
        }),
    };
    let mut env = vec![otel];
    for var in exp.spec.env.iter().flatten() {
        let value = serde_json::to_value(var).unwrap_or(Value::Null);
        if let Some(existing) = env
            .iter_mut()
            .find(|e| e.get("name").and_then(Value::as_str) == Some(var.name.as_str()))
        {
            *existing = value;
        } else {
            env.push(value);
        }
    }
    env
}

/// The `use:` chain: `setup-template` (dataset from S3 or a URL only), then
/// `run-template`, `evaluate-template`, `publish-template`, `visualize-template`.
pub fn workflow_templates(
    exp: &Experiment,
    agent_url: &str,
    gateway_url: Option<&str>,
) -> Vec<Value> {
    let mut chain = Vec::new();
    match exp.spec.scenario_source() {
        Some(ScenarioSource::S3(s3)) => chain.push(json!({
            "name": "setup-template",
            "config": {"bucket": s3.bucket, "key": s3.key}
        })),
        Some(ScenarioSource::Url(url)) => chain.push(json!({
            "name": "setup-template",
            "config": {"url": url}
        })),
        Some(ScenarioSource::Inline(_)) | None => {}
    }
    // The newest templates (from a late revision of the fourth upstream API on) declare
    // `experimentName` without a default in run, publish and visualize; the older ones do
    // not declare it, so it goes only to Experiments written for the newest API.
    let name = gateway::newest_template_keys(exp).then(|| exp.name_any());
    let with_name = |template: &str, mut config: serde_json::Map<String, Value>| {
        if let Some(name) = &name {
            config.insert("experimentName".into(), json!(name));
        }
        if config.is_empty() {
            json!({"name": template})
        } else {
            json!({"name": template, "config": config})
        }
    };
    let mut run = serde_json::Map::new();
    run.insert("agentUrl".into(), json!(agent_url));
    chain.push(with_name("run-template", run));
    chain.push(match gateway_url {
        Some(url) => {
            json!({"name": "evaluate-template", "config": gateway::evaluate_config(exp, url)})
        }
        None => json!({"name": "evaluate-template"}),
    });
    chain.push(with_name("publish-template", serde_json::Map::new()));
    chain.push(with_name("visualize-template", serde_json::Map::new()));
    chain
}

/// The `TestWorkflow`.
pub fn workflow(
    exp: &Experiment,
    names: &Names,
    agent_url: &str,
    gateway_url: Option<&str>,
) -> DynamicObject {
    let inline = matches!(exp.spec.scenario_source(), Some(ScenarioSource::Inline(_)));
    let mut spec = json!({
        "container": {"env": workflow_env(exp)},
        "use": workflow_templates(exp, agent_url, gateway_url),
    });
    if inline {
        spec["content"] = json!({"files": [{
            "path": EXPERIMENT_JSON_PATH,
            "contentFrom": {"configMapKeyRef": {"name": names.config_map, "key": EXPERIMENT_JSON_KEY}}
        }]});
    }
    if let Some(schedule) = &exp.spec.schedule {
        let mut cronjob = json!({"cron": schedule.cron});
        if let Some(tz) = &schedule.timezone {
            cronjob["timezone"] = json!(tz);
        }
        spec["events"] = json!([{"cronjob": cronjob}]);
    }
    let ar = test_workflow_resource();
    let mut obj = DynamicObject::new(&names.workflow, &ar).data(json!({"spec": spec}));
    obj.metadata = metadata(exp, names, &names.workflow, "workflow");
    obj
}

fn policy(policy: Option<&ConcurrencyPolicy>) -> &'static str {
    match policy {
        None | Some(ConcurrencyPolicy::Allow) => "allow",
        Some(ConcurrencyPolicy::Forbid) => "forbid",
        Some(ConcurrencyPolicy::Replace) => "replace",
    }
}

/// The `TestTrigger`, or `None` when `spec.trigger.enabled` is not true. It watches the agent's
/// Deployment (named like the agent, in the agent's namespace) and runs the workflow.
pub fn trigger(exp: &Experiment, names: &Names) -> Option<DynamicObject> {
    let trigger = exp
        .spec
        .trigger
        .as_ref()
        .filter(|t| t.enabled == Some(true))?;
    let exp_ns = exp.namespace().unwrap_or_default();
    let agent = &exp.spec.agent_ref;
    let event = trigger
        .event
        .as_deref()
        .filter(|e| !e.is_empty())
        .map_or_else(|| "modified".to_owned(), str::to_ascii_lowercase);
    let mut spec = json!({
        "resource": "deployment",
        "resourceSelector": {"name": agent.name, "namespace": agent.namespace_or(&exp_ns)},
        "event": event,
        "action": "run",
        "execution": "testworkflow",
        "concurrencyPolicy": policy(trigger.concurrency_policy.as_ref()),
        "testSelector": {"name": names.workflow, "namespace": names.namespace},
        "disabled": false,
    });
    if gateway::newest_template_keys(exp) {
        // The newest upstream API waits for the rollout to finish before it runs, so the run
        // tests the new pods rather than old or terminating ones.
        spec["conditionSpec"] = rollout_finished();
    }
    let ar = test_trigger_resource();
    let mut obj = DynamicObject::new(&names.trigger, &ar).data(json!({"spec": spec}));
    obj.metadata = metadata(exp, names, &names.trigger, "trigger");
    Some(obj)
}

/// The `TestTrigger` `conditionSpec` of the newest upstream API: the Deployment's rollout
/// has finished (a new `ReplicaSet` is available and the Deployment is `Available`), checked
/// for up to 100 s after a 2 s delay.
fn rollout_finished() -> Value {
    json!({
        "timeout": 100,
        "delay": 2,
        "conditions": [
            {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable", "ttl": 60},
            {"type": "Available", "status": "True"}
        ]
    })
}

/// Everything the Experiment generates.
pub fn desired(
    exp: &Experiment,
    testkube_namespace: Option<&str>,
    agent: &AgentUrl,
    gateway: &Gateway,
) -> Desired {
    let names = names(
        &exp.name_any(),
        &exp.namespace().unwrap_or_default(),
        testkube_namespace,
    );
    Desired {
        config_map: config_map(exp, &names),
        workflow: workflow(exp, &names, &agent.url, gateway.url()),
        trigger: trigger(exp, &names),
        inline: matches!(exp.spec.scenario_source(), Some(ScenarioSource::Inline(_))),
        names,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evaluations::agent::{AgentUrlSource, resolve};

    fn experiment(spec: Value) -> Experiment {
        let mut value = json!({
            "apiVersion": "testbench.agentic-layer.ai/v1alpha1",
            "kind": "Experiment",
            "metadata": {"name": "weather", "namespace": "team", "uid": "u-1"}
        });
        value["spec"] = spec;
        let mut exp: Experiment = serde_json::from_value(value).unwrap();
        exp.metadata.generation = Some(1);
        exp
    }

    fn url() -> AgentUrl {
        resolve("weather-agent", "sample-agents", None)
    }

    fn inline_spec() -> Value {
        json!({
            "agentRef": {"name": "weather-agent", "namespace": "sample-agents"},
            "scenarios": [{"name": "s", "steps": [{"input": "hi"}]}]
        })
    }

    #[test]
    fn scenarios_mode_mounts_the_config_map_and_skips_setup() {
        let d = desired(&experiment(inline_spec()), None, &url(), &Gateway::None);
        assert!(d.inline);
        let spec = &d.workflow.data["spec"];
        let used: Vec<&str> = spec["use"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            used,
            [
                "run-template",
                "evaluate-template",
                "publish-template",
                "visualize-template"
            ]
        );
        assert_eq!(
            spec["use"][0]["config"],
            json!({"agentUrl": "http://weather-agent.sample-agents:8000"})
        );
        assert_eq!(
            spec["content"],
            json!({"files": [{"path": "/data/datasets/experiment.json", "contentFrom": {"configMapKeyRef": {"name": "weather-experiment", "key": "experiment.json"}}}]})
        );
        assert_eq!(
            d.workflow.metadata.name.as_deref(),
            Some("weather-workflow")
        );
        assert_eq!(d.workflow.metadata.namespace.as_deref(), Some("team"));
        let owner = &d.workflow.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("Experiment", "u-1", Some(true))
        );
        assert_eq!(
            d.config_map.metadata.owner_references.as_ref().unwrap()[0].uid,
            "u-1"
        );
        assert!(d.trigger.is_none());
        let types = serde_json::to_value(&d.workflow).unwrap();
        assert_eq!(types["apiVersion"], "testworkflows.testkube.io/v1");
        assert_eq!(types["kind"], "TestWorkflow");
    }

    /// Templates of the newest API declare `experimentName` in run, publish and visualize;
    /// the older ones do not, so older-shaped Experiments do not get it.
    #[test]
    fn experiment_name_goes_to_the_newest_templates_only() {
        let configs = |spec: Value| {
            let d = desired(&experiment(spec), None, &url(), &Gateway::None);
            d.workflow.data["spec"]["use"]
                .as_array()
                .unwrap()
                .iter()
                .map(|u| (u["name"].as_str().unwrap().to_owned(), u["config"].clone()))
                .collect::<Vec<_>>()
        };
        let older = configs(inline_spec());
        assert_eq!(
            older,
            [
                (
                    "run-template".to_owned(),
                    json!({"agentUrl": "http://weather-agent.sample-agents:8000"})
                ),
                ("evaluate-template".to_owned(), Value::Null),
                ("publish-template".to_owned(), Value::Null),
                ("visualize-template".to_owned(), Value::Null),
            ]
        );
        let mut newest = inline_spec();
        newest["env"] = json!([]);
        assert_eq!(
            configs(newest),
            [
                (
                    "run-template".to_owned(),
                    json!({"agentUrl": "http://weather-agent.sample-agents:8000", "experimentName": "weather"})
                ),
                ("evaluate-template".to_owned(), Value::Null),
                (
                    "publish-template".to_owned(),
                    json!({"experimentName": "weather"})
                ),
                (
                    "visualize-template".to_owned(),
                    json!({"experimentName": "weather"})
                ),
            ]
        );
    }

    /// Upstream passed `datasetUrl`, which no setup template declares.
    #[test]
    fn dataset_mode_passes_the_keys_the_setup_template_declares() {
        let s3 = desired(
            &experiment(
                json!({"agentRef": {"name": "a"}, "dataset": {"s3": {"bucket": "testbench", "key": "dataset.json"}}}),
            ),
            None,
            &url(),
            &Gateway::None,
        );
        let spec = &s3.workflow.data["spec"];
        assert_eq!(
            spec["use"][0],
            json!({"name": "setup-template", "config": {"bucket": "testbench", "key": "dataset.json"}})
        );
        assert_eq!(spec["use"][1]["name"], "run-template");
        assert_eq!(spec["use"].as_array().unwrap().len(), 5);
        // Without an AI gateway no evaluate config is passed: the template's default applies.
        assert_eq!(spec["use"][2], json!({"name": "evaluate-template"}));
        let gateway = Gateway::Found {
            namespace: "ai-gateway".into(),
            name: "litellm".into(),
            url: "http://litellm.ai-gateway.svc.cluster.local.:4000".into(),
            referenced: false,
        };
        let with_gateway = desired(
            &experiment(
                json!({"agentRef": {"name": "a"}, "dataset": {"s3": {"bucket": "testbench", "key": "dataset.json"}}}),
            ),
            None,
            &url(),
            &gateway,
        );
        assert_eq!(
            with_gateway.workflow.data["spec"]["use"][2],
            json!({"name": "evaluate-template", "config": {"openApiBasePath": "http://litellm.ai-gateway.svc.cluster.local.:4000"}})
        );
        assert!(spec.get("content").is_none());
        assert!(!s3.inline);
        let text = &s3.config_map.data.as_ref().unwrap()["experiment.json"];
        let doc: Value = serde_json::from_str(text).unwrap();
        assert_eq!(doc["scenarios"], json!([]));

        let url_mode = desired(
            &experiment(
                json!({"agentRef": {"name": "a"}, "dataset": {"url": "https://example.com/d.json"}}),
            ),
            None,
            &url(),
            &Gateway::None,
        );
        assert_eq!(
            url_mode.workflow.data["spec"]["use"][0],
            json!({"name": "setup-template", "config": {"url": "https://example.com/d.json"}})
        );
    }

    /// Upstream referenced `otel-config` without `optional`, so pods failed without it.
    #[test]
    fn otel_endpoint_is_optional_or_literal() {
        let d = desired(&experiment(inline_spec()), None, &url(), &Gateway::None);
        assert_eq!(
            d.workflow.data["spec"]["container"]["env"],
            json!([{"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "valueFrom": {"configMapKeyRef": {"name": "otel-config", "key": "OTEL_EXPORTER_OTLP_ENDPOINT", "optional": true}}}])
        );
        let mut spec = inline_spec();
        spec["otlpEndpoint"] = json!("http://lgtm:4318");
        spec["env"] = json!([{"name": "EXTRA", "value": "1"}]);
        let d = desired(&experiment(spec), None, &url(), &Gateway::None);
        assert_eq!(
            d.workflow.data["spec"]["container"]["env"],
            json!([{"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "http://lgtm:4318"}, {"name": "EXTRA", "value": "1"}])
        );
        let mut spec = inline_spec();
        spec["env"] = json!([{"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "http://mine"}]);
        let d = desired(&experiment(spec), None, &url(), &Gateway::None);
        assert_eq!(
            d.workflow.data["spec"]["container"]["env"],
            json!([{"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "http://mine"}])
        );
    }

    #[test]
    fn trigger_watches_the_agent_deployment() {
        let mut spec = inline_spec();
        spec["trigger"] = json!({"enabled": true, "concurrencyPolicy": "Forbid"});
        let d = desired(&experiment(spec), None, &url(), &Gateway::None);
        let trigger = d.trigger.unwrap();
        assert_eq!(trigger.metadata.name.as_deref(), Some("weather-trigger"));
        assert_eq!(
            trigger.data["spec"],
            json!({
                "resource": "deployment",
                "resourceSelector": {"name": "weather-agent", "namespace": "sample-agents"},
                "event": "modified",
                "action": "run",
                "execution": "testworkflow",
                "concurrencyPolicy": "forbid",
                "testSelector": {"name": "weather-workflow", "namespace": "team"},
                "disabled": false
            })
        );
        assert_eq!(
            serde_json::to_value(&trigger).unwrap()["apiVersion"],
            "tests.testkube.io/v1"
        );

        let mut spec = inline_spec();
        spec["trigger"] = json!({"enabled": false});
        assert!(
            desired(&experiment(spec), None, &url(), &Gateway::None)
                .trigger
                .is_none()
        );
        let mut spec = json!({"agentRef": {"name": "a"}, "scenarios": [{"name": "s", "steps": [{"input": "i"}]}]});
        spec["trigger"] = json!({"enabled": true, "event": "Deployment-Image-Update"});
        let t = desired(&experiment(spec), None, &url(), &Gateway::None)
            .trigger
            .unwrap();
        assert_eq!(t.data["spec"]["event"], "deployment-image-update");
        assert_eq!(t.data["spec"]["resourceSelector"]["namespace"], "team");
        assert_eq!(t.data["spec"]["concurrencyPolicy"], "allow");
        assert!(t.data["spec"].get("conditionSpec").is_none());
    }

    /// The newest upstream API's trigger waits for the agent's rollout to finish.
    #[test]
    fn newest_api_triggers_wait_for_the_rollout() {
        let spec = json!({
            "agentRef": {"name": "weather-agent", "namespace": "sample-agents"},
            "dataset": {"inline": {"scenarios": [{"name": "s", "steps": [{"input": "hi"}]}]}},
            "trigger": {"enabled": true}
        });
        let t = desired(&experiment(spec), None, &url(), &Gateway::None)
            .trigger
            .unwrap();
        assert_eq!(
            t.data["spec"]["conditionSpec"],
            json!({
                "timeout": 100,
                "delay": 2,
                "conditions": [
                    {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable", "ttl": 60},
                    {"type": "Available", "status": "True"}
                ]
            })
        );
        assert_eq!(t.data["spec"]["event"], "modified");
        assert_eq!(
            t.data["spec"]["resourceSelector"],
            json!({"name": "weather-agent", "namespace": "sample-agents"})
        );
    }

    /// Upstream left everything in the Experiment's namespace, where Testkube does not look.
    #[test]
    fn testkube_namespace_mode_moves_children_and_uses_labels() {
        let mut spec = inline_spec();
        spec["trigger"] = json!({"enabled": true});
        let d = desired(&experiment(spec), Some("testkube"), &url(), &Gateway::None);
        assert_eq!(d.names.namespace, "testkube");
        assert_eq!(d.names.workflow, "weather-team-workflow");
        assert!(!d.names.same_namespace);
        for meta in [
            &d.config_map.metadata,
            &d.workflow.metadata,
            &d.trigger.as_ref().unwrap().metadata,
        ] {
            assert_eq!(meta.namespace.as_deref(), Some("testkube"));
            assert!(meta.owner_references.is_none());
            assert_eq!(
                meta.annotations.as_ref().unwrap()[ANNOTATION_OWNER],
                "team/weather"
            );
            let labels = meta.labels.as_ref().unwrap();
            assert_eq!(labels[LABEL_EXPERIMENT_NAME], "weather");
            assert_eq!(labels[LABEL_EXPERIMENT_NAMESPACE], "team");
            assert_eq!(labels[LABEL_MANAGED_BY], MANAGED_BY);
        }
        let trigger = d.trigger.unwrap();
        assert_eq!(
            trigger.data["spec"]["testSelector"],
            json!({"name": "weather-team-workflow", "namespace": "testkube"})
        );
        assert_eq!(
            d.workflow.data["spec"]["content"]["files"][0]["contentFrom"]["configMapKeyRef"]["name"],
            "weather-team-experiment"
        );
        // An Experiment in the Testkube namespace keeps the short names and owner references.
        let names = names("weather", "testkube", Some("testkube"));
        assert_eq!(names.workflow, "weather-workflow");
        assert!(names.same_namespace);
    }

    /// Later upstream versions put the raw experiment name in a label value.
    #[test]
    fn long_names_fit_label_and_name_limits() {
        let long = "e".repeat(250);
        let value = label_value(&long);
        assert!(value.len() <= 63, "{value}");
        assert_eq!(value, label_value(&long));
        assert_ne!(value, label_value(&format!("{long}x")));
        let n = names(&long, "team", Some("testkube"));
        for name in [&n.config_map, &n.workflow, &n.trigger] {
            assert!(name.len() <= 253, "{}", name.len());
        }
        assert!(n.workflow.ends_with("-workflow"));
        assert_eq!(label_value("short"), "short");
        assert_eq!(parse_owner("team/weather"), Some(("team", "weather")));
        assert_eq!(parse_owner("weather"), None);
    }

    #[test]
    fn schedule_becomes_a_cron_event() {
        let mut spec = inline_spec();
        spec["schedule"] = json!({"cron": "0 * * * *", "timezone": "Europe/Berlin"});
        let d = desired(&experiment(spec), None, &url(), &Gateway::None);
        assert_eq!(
            d.workflow.data["spec"]["events"],
            json!([{"cronjob": {"cron": "0 * * * *", "timezone": "Europe/Berlin"}}])
        );
        assert_eq!(url().source, AgentUrlSource::ServiceDns);
    }
}
