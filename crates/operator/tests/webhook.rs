//! The validating webhook end to end: the operator's HTTPS server with certificates from a
//! directory, registered in the dev cluster with the shipped
//! `config/webhook/validating_webhook_configuration.yaml`, and writes through the API server
//! that are admitted, warned about or denied with the field named.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{future::Future, path::PathBuf, time::Duration};

use devcluster::admission::WebhookCertificates;
use k8s_openapi::{
    api::{admissionregistration::v1::ValidatingWebhookConfiguration, core::v1::Service},
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, Client,
    api::{ApiResource, DynamicObject, Patch, PatchParams, PostParams},
    core::GroupVersionKind,
};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const DEADLINE: Duration = Duration::from_mins(1);
const SERVICE_DNS: &str = "agentic-operator-webhook.ambient-code.svc";

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

fn resource(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

async fn eventually<T, F, Fut>(what: &str, mut get: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(value) = get().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn create_crd(client: &Client, crd: &CustomResourceDefinition) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    api.create(&PostParams::default(), crd).await.unwrap();
    let gv = format!("{}/{}", crd.spec.group, crd.spec.versions[0].name);
    let plural = crd.spec.names.plural.clone();
    eventually(&format!("{plural} to be served"), || async {
        client
            .list_api_group_resources(&gv)
            .await
            .ok()
            .filter(|l| l.resources.iter().any(|r| r.name == plural))
    })
    .await;
}

fn webhook_configuration(ca_bundle: &str) -> ValidatingWebhookConfiguration {
    let text =
        std::fs::read_to_string(repo("config/webhook/validating_webhook_configuration.yaml"))
            .unwrap();
    let mut value: Value = serde_yaml::from_str(&text).unwrap();
    for hook in value["webhooks"].as_array_mut().unwrap() {
        hook["clientConfig"]["caBundle"] = json!(ca_bundle);
    }
    serde_json::from_value(value).unwrap()
}

struct Setup {
    _dc: devcluster::DevCluster,
    client: Client,
    certs_dir: PathBuf,
    stop: CancellationToken,
}

impl Drop for Setup {
    fn drop(&mut self) {
        self.stop.cancel();
        let _ = std::fs::remove_dir_all(&self.certs_dir);
    }
}

/// A dev cluster calling the operator's webhook server, with every family's CRDs and, when
/// `agents`, the Agent CRD.
async fn setup(agents: bool) -> Setup {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dc = devcluster::DevCluster::builder()
        .admission_webhooks(true)
        .start()
        .await
        .unwrap();
    let client = dc.client();
    for crd in agentic_api::crds::all() {
        create_crd(&client, &crd).await;
    }
    if agents {
        let text = std::fs::read_to_string(repo(
            "crates/devcluster/fixtures/evaluations/agents.runtime.agentic-layer.ai.yaml",
        ))
        .unwrap();
        create_crd(&client, &serde_yaml::from_str(&text).unwrap()).await;
    }
    for ns in ["ambient-code", "team", "agents"] {
        let ns: k8s_openapi::api::core::v1::Namespace =
            serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap();
        Api::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .unwrap();
    }

    let certs_dir = std::env::temp_dir().join(format!(
        "agentic-webhook-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    let certs = WebhookCertificates::generate(&[SERVICE_DNS]).unwrap();
    certs.write_to(&certs_dir).unwrap();
    let stop = CancellationToken::new();
    let local = agentic_operator::webhook::server::serve(
        "127.0.0.1:0".parse().unwrap(),
        &certs_dir,
        client.clone(),
        Some(std::sync::Arc::new(
            agentic_operator::labs::config::LabsConfig::default(),
        )),
        stop.clone(),
    )
    .await
    .unwrap();

    // The shipped Service, told where the webhook listens in this cluster.
    let text = std::fs::read_to_string(repo("config/webhook/service.yaml")).unwrap();
    let mut service: Value = serde_yaml::from_str(&text).unwrap();
    service["metadata"]["annotations"] = json!({"devcluster.io/address": local.to_string()});
    let service: Service = serde_json::from_value(service).unwrap();
    Api::<Service>::namespaced(client.clone(), "ambient-code")
        .create(&PostParams::default(), &service)
        .await
        .unwrap();
    Api::<ValidatingWebhookConfiguration>::all(client.clone())
        .create(
            &PostParams::default(),
            &webhook_configuration(&certs.ca_bundle()),
        )
        .await
        .unwrap();
    Setup {
        _dc: dc,
        client,
        certs_dir,
        stop,
    }
}

fn eval_experiments() -> ApiResource {
    resource(
        "testbench.agentic-layer.ai",
        "v1alpha1",
        "Experiment",
        "experiments",
    )
}

fn evaluation(name: &str, spec_extra: &Value) -> Value {
    let mut spec = json!({
        "agentRef": {"name": "weather-agent", "namespace": "agents"},
        "scenarios": [{"name": "s", "steps": [{"input": "hi"}]}]
    });
    for (k, v) in spec_extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    json!({
        "apiVersion": "testbench.agentic-layer.ai/v1alpha1",
        "kind": "Experiment",
        "metadata": {"name": name, "namespace": "team"},
        "spec": spec
    })
}

async fn try_create(client: &Client, ar: &ApiResource, body: Value) -> Result<(), kube::Error> {
    let obj: DynamicObject = serde_json::from_value(body).unwrap();
    let ns = obj.metadata.namespace.clone().unwrap();
    Api::<DynamicObject>::namespaced_with(client.clone(), &ns, ar)
        .create(&PostParams::default(), &obj)
        .await
        .map(|_| ())
}

fn denial(result: Result<(), kube::Error>, what: &str) -> String {
    match result {
        Err(kube::Error::Api(status)) => {
            assert!(
                status.message.contains("denied the request"),
                "{what}: {}",
                status.message
            );
            status.message
        }
        other => panic!("{what}: expected a denial, got {other:?}"),
    }
}

async fn create_agent(client: &Client) {
    try_create(
        client,
        &resource("runtime.agentic-layer.ai", "v1alpha1", "Agent", "agents"),
        json!({
            "apiVersion": "runtime.agentic-layer.ai/v1alpha1",
            "kind": "Agent",
            "metadata": {"name": "weather-agent", "namespace": "agents"},
            "spec": {"protocols": [{"type": "A2A"}]}
        }),
    )
    .await
    .unwrap();
}

/// Upstream checked neither that the Agent exists nor anything beyond the schema.
#[tokio::test]
async fn evaluation_experiments_are_checked_on_admission() {
    let s = setup(true).await;
    let client = &s.client;
    let ar = eval_experiments();

    let message = denial(
        try_create(client, &ar, evaluation("no-agent", &json!({}))).await,
        "unknown agent",
    );
    assert!(message.contains("spec.agentRef"), "{message}");
    assert!(message.contains("agents/weather-agent"), "{message}");

    create_agent(client).await;
    try_create(client, &ar, evaluation("ok", &json!({})))
        .await
        .unwrap();

    let message = denial(
        try_create(
            client,
            &ar,
            evaluation(
                "bad-event",
                &json!({"trigger": {"enabled": true, "event": "on_push"}}),
            ),
        )
        .await,
        "invalid trigger event",
    );
    assert!(message.contains("spec.trigger.event"), "{message}");
    // A cron expression of the right shape (the CRD's pattern) with a value out of range.
    let message = denial(
        try_create(
            client,
            &ar,
            evaluation("bad-cron", &json!({"schedule": {"cron": "99 * * * *"}})),
        )
        .await,
        "cron minute out of range",
    );
    assert!(
        message.contains("spec.schedule.cron: minute: \"99\" is not allowed"),
        "{message}"
    );

    // An update that leaves the spec alone is always admitted (finalizers can be removed).
    Api::<DynamicObject>::namespaced_with(client.clone(), "team", &ar)
        .patch(
            "ok",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
        )
        .await
        .unwrap();
    // A spec update is checked again.
    let err = Api::<DynamicObject>::namespaced_with(client.clone(), "team", &ar)
        .patch(
            "ok",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"agentRef": {"name": "nobody"}}})),
        )
        .await
        .map(|_| ());
    let message = denial(err, "update to an unknown agent");
    assert!(message.contains("agents/nobody"), "{message}");

    // A missing AI gateway is a warning, never a denial: the operator reports it and picks
    // the gateway up once it exists.
    try_create(
        client,
        &ar,
        evaluation("no-gateway", &json!({"aiGatewayRef": {"name": "nope"}})),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn missing_agent_crd_allows_the_experiment() {
    let s = setup(false).await;
    try_create(
        &s.client,
        &eval_experiments(),
        evaluation("no-crd", &json!({})),
    )
    .await
    .unwrap();
}

#[tokio::test]
#[allow(clippy::too_many_lines)] // one list of admission cases against one webhook
async fn session_names_and_lab_names_and_dependencies_are_checked() {
    let s = setup(false).await;
    let client = &s.client;
    let sessions = resource(
        "vteam.ambient-code",
        "v1alpha1",
        "AgenticSession",
        "agenticsessions",
    );
    let session = |name: String| {
        json!({
            "apiVersion": "vteam.ambient-code/v1alpha1",
            "kind": "AgenticSession",
            "metadata": {"name": name, "namespace": "team"},
            "spec": {"initialPrompt": "hello"}
        })
    };
    try_create(client, &sessions, session("a".repeat(55)))
        .await
        .unwrap();
    let message = denial(
        try_create(client, &sessions, session("b".repeat(56))).await,
        "long session name",
    );
    assert!(message.contains("Service"), "{message}");
    assert!(message.contains("at most 55"), "{message}");
    let message = denial(
        try_create(client, &sessions, session("fix.login".to_owned())).await,
        "dotted session name",
    );
    assert!(message.contains("without dots"), "{message}");

    // A start/stop request is an annotation-only update: a value that names no phase is
    // refused with the allowed values, a valid one is admitted.
    let api =
        kube::Api::<kube::api::DynamicObject>::namespaced_with(client.clone(), "team", &sessions);
    let request = |phase: &str| {
        kube::api::Patch::Merge(
            json!({"metadata": {"annotations": {"ambient-code.io/desired-phase": phase}}}),
        )
    };
    let name = "a".repeat(55);
    let refused = api
        .patch(&name, &kube::api::PatchParams::default(), &request("stop"))
        .await
        .map(|_| ());
    let message = denial(refused, "unknown desired phase");
    assert!(
        message.contains(
            r#"metadata.annotations[ambient-code.io/desired-phase]: unknown value "stop"; allowed: Running, Stopped"#
        ),
        "{message}"
    );
    api.patch(
        &name,
        &kube::api::PatchParams::default(),
        &request("Stopped"),
    )
    .await
    .unwrap();

    let labs = resource(
        "experiments.illm.io",
        "v1alpha1",
        "Experiment",
        "experiments",
    );
    let lab = |name: &str, targets: Value| {
        json!({
            "apiVersion": "experiments.illm.io/v1alpha1",
            "kind": "Experiment",
            "metadata": {"name": name, "namespace": "team"},
            "spec": {"targets": targets, "workflow": {"template": "t", "completion": {"mode": "workflow"}}}
        })
    };
    try_create(
        client,
        &labs,
        lab("ok", json!([{"name": "hub", "cluster": {"type": "hub"}}, {"name": "app", "cluster": {"type": "hub"}, "depends": ["hub"]}])),
    )
    .await
    .unwrap();
    let message = denial(
        try_create(
            client,
            &labs,
            lab(
                "unknown",
                json!([{"name": "app", "cluster": {"type": "hub"}, "depends": ["db"]}]),
            ),
        )
        .await,
        "unknown dependency",
    );
    assert!(message.contains("spec.targets[0].depends[0]"), "{message}");
    let message = denial(
        try_create(
            client,
            &labs,
            lab("cycle", json!([{"name": "a", "cluster": {"type": "hub"}, "depends": ["b"]}, {"name": "b", "cluster": {"type": "hub"}, "depends": ["a"]}])),
        )
        .await,
        "cycle",
    );
    assert!(message.contains("cycle"), "{message}");
    // The controller's checks that need no configuration, with its messages.
    let mut tutorial = lab(
        "guide",
        json!([{"name": "app", "cluster": {"type": "hub"}}]),
    );
    tutorial["spec"]["tutorial"] =
        json!({"services": [{"name": "ui", "target": "web", "service": "ui", "namespace": "web"}]});
    let message = denial(
        try_create(client, &labs, tutorial).await,
        "tutorial service on an unknown target",
    );
    assert!(
        message.contains(
            r#"spec.tutorial.services[0].target: "web" is not a target of this experiment; allowed: app"#
        ),
        "{message}"
    );
    // With the labs configuration: the claim name `<experiment>-<target>` must fit the
    // cluster type (29 characters for gke), with the controller's message.
    let message = denial(
        try_create(
            client,
            &labs,
            lab(
                "gateway-comparison-x7k2p",
                json!([{"name": "frontend", "cluster": {"type": "gke"}}]),
            ),
        )
        .await,
        "claim name too long for gke",
    );
    assert!(
        message.contains(
            r#"spec.targets[0].name: cluster name "gateway-comparison-x7k2p-frontend" is 33 characters; gke allows at most 29"#
        ),
        "{message}"
    );
    // Upstream's Experiments use generateName; the check sees the generated name.
    let mut generated = lab(
        "",
        json!([{"name": "frontend", "cluster": {"type": "gke"}}]),
    );
    generated["metadata"] = json!({"generateName": "gateway-comparison-", "namespace": "team"});
    let message = denial(
        try_create(client, &labs, generated).await,
        "generated name too long for gke",
    );
    assert!(
        message.contains("is 33 characters; gke allows at most 29"),
        "{message}"
    );
    // The name gives the Workflow `<name>-validation` (at most 63 characters) and, with
    // components, their namespace (a DNS label).
    let message = denial(
        try_create(
            client,
            &labs,
            lab(
                &"l".repeat(53),
                json!([{"name": "app", "cluster": {"type": "hub"}}]),
            ),
        )
        .await,
        "long experiment name",
    );
    assert!(message.contains("at most 52"), "{message}");
    let with_component =
        json!([{"name": "app", "cluster": {"type": "hub"}, "components": [{"app": "web"}]}]);
    let message = denial(
        try_create(client, &labs, lab("gw.v2", with_component.clone())).await,
        "dotted experiment name with components",
    );
    assert!(message.contains("DNS label"), "{message}");
    // Two provisioned targets get each other's kubeconfigs in namespace `<name>`.
    let message = denial(
        try_create(
            client,
            &labs,
            lab(
                "gw.v4",
                json!([{"name": "a", "cluster": {"type": "gke"}},
                       {"name": "b", "cluster": {"type": "vcluster"}}]),
            ),
        )
        .await,
        "dotted experiment name with two provisioned targets",
    );
    assert!(message.contains("other clusters' kubeconfigs"), "{message}");
    try_create(
        client,
        &labs,
        lab(
            "gw.v3",
            json!([{"name": "app", "cluster": {"type": "hub"}},
                   {"name": "one", "cluster": {"type": "gke"}}]),
        ),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn rotated_certificates_are_served_without_a_restart() {
    let s = setup(false).await;
    let client = &s.client;
    try_create(
        client,
        &eval_experiments(),
        evaluation("before", &json!({})),
    )
    .await
    .unwrap();

    // cert-manager renews: a new CA and serving certificate in the mounted directory, and the
    // CA injector updates the caBundle.
    let renewed = WebhookCertificates::generate(&[SERVICE_DNS]).unwrap();
    renewed.write_to(&s.certs_dir).unwrap();
    let hooks: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let mut current = hooks
        .get("agentic-operator-validating-webhook")
        .await
        .unwrap();
    let fresh = webhook_configuration(&renewed.ca_bundle());
    current.webhooks = fresh.webhooks;
    hooks
        .replace(
            "agentic-operator-validating-webhook",
            &PostParams::default(),
            &current,
        )
        .await
        .unwrap();

    let mut n = 0;
    eventually("writes to be admitted with the renewed certificate", || {
        n += 1;
        let body = evaluation(&format!("after-{n}"), &json!({}));
        async move { try_create(client, &eval_experiments(), body).await.ok() }
    })
    .await;
}
