//! Session features beyond the lifecycle, against devcluster with the simulated scheduler,
//! kubelet and Job controller, the operator running as its `ServiceAccount` with only the
//! shipped RBAC: the per-namespace runner `NetworkPolicy`, Vertex AI mode (the
//! `ambient-vertex` copy: created, owned, refreshed, released), the Langfuse and `MLflow`
//! Secret copies (best effort, the `MLflow` Kubernetes identity), the trusted CA bundle mount,
//! the status record of the spec a runner started with, the `session-trigger` command, the
//! operator-wide runner resources and the `spec.timeout` opt-out.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;

use agentic_api::sessions::{
    ANNOTATION_DESIRED_PHASE, ANNOTATION_FORCE_EXECUTE_PROMPT, ANNOTATION_STOP_REQUESTED_AT,
    AgenticSession, AgenticSessionSpec, SessionPhase,
};
use agentic_operator::{
    runtime::{ControllerTask, CrdRef, Family, FamilyError, RuntimeContext, SharedWatches},
    sessions::session::{
        config::{SessionConfig, VertexConfig},
        trigger::{self, TriggerConfig},
    },
};
use devcluster::{hooks::AdmissionRequest, simulators::Simulators};
use jiff::Timestamp;
use k8s_openapi::{
    ByteString,
    api::{
        batch::v1::Job,
        core::v1::{ConfigMap, Secret},
        events::v1::Event,
        networking::v1::NetworkPolicy,
        rbac::v1::RoleBinding,
    },
};
use kube::{
    Api, Client, ResourceExt,
    api::{ListParams, Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};
use support::{
    MANAGED, OPERATOR_USER, Operator, ScriptChildren, ScriptSource, Setup, TestCluster, eventually,
    install, rbac_documents, settings_for, wait_until,
};

/// Test namespace (labelled as an ambient-code project).
const NS: &str = "team-a";
/// The operator's (and backend's) namespace.
const OPERATOR_NS: &str = "ambient-code";

fn runner_session(request: &AdmissionRequest<'_>, pod: &Value) -> Option<ScriptSource> {
    let labels = &pod["metadata"]["labels"];
    if labels["app"] != "ambient-code-runner" {
        return None;
    }
    Some(ScriptSource {
        group: "vteam.ambient-code".into(),
        resource: "agenticsessions".into(),
        namespace: request.info.namespace.clone(),
        name: labels["agentic-session"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    })
}

/// A dev cluster enforcing RBAC with the shipped operator RBAC installed, every simulator
/// and runner pods that run for `runner_seconds` (`forever` or a number) and exit 0.
async fn cluster(runner_seconds: &'static str) -> TestCluster {
    let defaults: &'static [(&'static str, &'static str)] = if runner_seconds == "forever" {
        &[
            ("devcluster.io/run-seconds.init-hydrate", "0.2"),
            ("devcluster.io/run-seconds.ambient-code-runner", "forever"),
        ]
    } else {
        &[
            ("devcluster.io/run-seconds.init-hydrate", "0.2"),
            ("devcluster.io/run-seconds.ambient-code-runner", "1"),
            ("devcluster.io/exit-code.ambient-code-runner", "0"),
        ]
    };
    let cluster = Setup::new()
        .rbac(true)
        .admission(ScriptChildren {
            kinds: &["Pod"],
            source: runner_session,
            defaults,
        })
        .crds(agentic_api::sessions::GROUP)
        .simulators(Simulators::all())
        .start()
        .await;
    install(&cluster.client(), &rbac_documents()).await;
    support::namespace(&cluster.client(), NS, &[MANAGED]).await;
    cluster
}

/// The sessions family with the [`SessionConfig`] `config` builds from the runner image
/// (backend namespace `ambient-code`), instead of one read from the process environment.
struct ConfiguredSessions(fn(&str) -> SessionConfig);

impl Family for ConfiguredSessions {
    fn name(&self) -> &'static str {
        "sessions"
    }

    fn required_crds(&self) -> Vec<CrdRef> {
        agentic_operator::sessions::Sessions.required_crds()
    }

    fn build(
        &self,
        rt: &RuntimeContext,
        watches: &mut SharedWatches,
    ) -> Result<Vec<ControllerTask>, FamilyError> {
        let config = (self.0)(&rt.settings.runner_image);
        agentic_operator::sessions::session::controllers_with(rt, watches, config)
    }
}

/// Settings with Vertex AI mode on.
fn vertex_config(runner_image: &str) -> SessionConfig {
    let mut config = SessionConfig::defaults(runner_image, OPERATOR_NS);
    config.vertex = Some(VertexConfig {
        project_id: "my-project".into(),
        region: "us-east5".into(),
        credentials_path: "/app/vertex/ambient-code-key.json".into(),
    });
    config.require_runner_secrets = false;
    config.waiting_recheck = std::time::Duration::from_mins(10);
    config
}

/// Settings with Langfuse and `MLflow` tracing on.
fn observability_config(runner_image: &str) -> SessionConfig {
    let mut config = SessionConfig::defaults(runner_image, OPERATOR_NS);
    config.langfuse = true;
    config.mlflow = true;
    config
}

/// The operator as its `ServiceAccount`, running `families`.
async fn start_operator(cluster: &TestCluster, families: Vec<Box<dyn Family>>) -> Operator {
    let client = cluster
        .service_account_client(OPERATOR_NS, "agentic-operator")
        .await
        .unwrap();
    let settings = settings_for(
        "sessions",
        &[("POD_NAME", "features-test"), ("NAMESPACE", OPERATOR_NS)],
        |_| {},
    );
    Operator::start_with(client, settings, families)
}

fn sessions(client: &Client) -> Api<AgenticSession> {
    Api::namespaced(client.clone(), NS)
}

async fn create_session(client: &Client, name: &str, spec: Value) {
    let session: AgenticSession = serde_json::from_value(json!({
        "apiVersion": "vteam.ambient-code/v1alpha1", "kind": "AgenticSession",
        "metadata": {"name": name},
        "spec": spec,
    }))
    .unwrap();
    sessions(client)
        .create(&PostParams::default(), &session)
        .await
        .unwrap();
}

async fn wait_phase(client: &Client, name: &str, phase: SessionPhase) -> AgenticSession {
    wait_until(&sessions(client), name, phase.as_str(), |s| {
        s.status.as_ref().and_then(|st| st.phase) == Some(phase)
    })
    .await
}

async fn stop(client: &Client, name: &str, at: &str) {
    sessions(client)
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {
                ANNOTATION_DESIRED_PHASE: "Stopped",
                ANNOTATION_STOP_REQUESTED_AT: at,
            }}})),
        )
        .await
        .unwrap();
}

async fn put_secret(client: &Client, ns: &str, name: &str, data: &[(&str, &str)]) {
    let secret = Secret {
        metadata: kube::core::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        data: Some(
            data.iter()
                .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        ),
        ..Secret::default()
    };
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    api.patch(
        name,
        &PatchParams::apply("test").force(),
        &Patch::Apply(&secret),
    )
    .await
    .unwrap();
}

/// The Secret the runner needs in the test namespace.
async fn runner_secret(client: &Client) {
    put_secret(
        client,
        NS,
        "ambient-runner-secrets",
        &[("ANTHROPIC_API_KEY", "k")],
    )
    .await;
}

/// Waits for a Warning Event `reason` on the session `session` whose note contains `needle`.
async fn warning_about(client: &Client, session: &str, reason: &str, needle: &str) {
    eventually(
        &format!("a Warning Event {reason} on {session}"),
        || async {
            Api::<Event>::namespaced(client.clone(), NS)
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
                .iter()
                .any(|e| {
                    e.reason.as_deref() == Some(reason)
                        && e.type_.as_deref() == Some("Warning")
                        && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(session)
                        && e.note.as_deref().is_some_and(|n| n.contains(needle))
                })
        },
    )
    .await;
}

fn secret_data(secret: &Secret) -> BTreeMap<String, String> {
    secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), String::from_utf8_lossy(&v.0).into_owned()))
        .collect()
}

fn owner_names(secret: &Secret) -> Vec<String> {
    let mut names: Vec<String> = secret
        .owner_references()
        .iter()
        .map(|o| o.name.clone())
        .collect();
    names.sort();
    names
}

async fn vertex_copy(client: &Client) -> Option<Secret> {
    Api::<Secret>::namespaced(client.clone(), NS)
        .get_opt("ambient-vertex")
        .await
        .unwrap()
}

async fn copy_of(client: &Client, name: &str) -> Option<Secret> {
    Api::<Secret>::namespaced(client.clone(), NS)
        .get_opt(name)
        .await
        .unwrap()
}

fn assert_no_denials(cluster: &TestCluster) {
    let denied = cluster.auth().unwrap().audit().denied(OPERATOR_USER);
    assert!(denied.is_empty(), "denied requests: {denied:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::too_many_lines)] // one walk through the Vertex AI copy's whole life
async fn vertex_mode_network_policy_and_ca_bundle() {
    let cluster = cluster("forever").await;
    let admin = cluster.client();
    let ca: ConfigMap = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "trusted-ca-bundle"},
        "data": {"ca-bundle.crt": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"}
    }))
    .unwrap();
    Api::<ConfigMap>::namespaced(admin.clone(), NS)
        .create(&PostParams::default(), &ca)
        .await
        .unwrap();
    let operator =
        start_operator(&cluster, vec![Box::new(ConfiguredSessions(vertex_config))]).await;

    // Without the source Secret the run does not start: the session stays Pending with a
    // condition naming the missing Secret, a Warning Event says so once, and no Job exists.
    create_session(&admin, "v1", json!({"initialPrompt": "hi"})).await;
    let waiting = wait_until(&sessions(&admin), "v1", "waiting for ambient-vertex", |s| {
        s.status.as_ref().is_some_and(|st| {
            st.phase == Some(SessionPhase::Pending)
                && st.conditions.iter().flatten().any(|c| {
                    c.type_ == "SecretsReady"
                        && c.status == "False"
                        && c.reason == "VertexSecretMissing"
                        && c.message.contains("ambient-code/ambient-vertex")
                })
        })
    })
    .await;
    let ready = waiting
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .expect("a Ready condition");
    assert_eq!(ready.reason, "VertexSecretMissing");
    let vertex_events = || async {
        Api::<Event>::namespaced(admin.clone(), NS)
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| {
                e.reason.as_deref() == Some("VertexSecretMissing")
                    && e.type_.as_deref() == Some("Warning")
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("v1")
                    && e.note
                        .as_deref()
                        .is_some_and(|n| n.contains("ambient-code/ambient-vertex"))
            })
            .collect::<Vec<_>>()
    };
    eventually(
        "a Warning Event about the missing ambient-vertex",
        || async { !vertex_events().await.is_empty() },
    )
    .await;
    // Waking the session again does not publish the Event again (nor fail the reconcile).
    let reconciles = || {
        operator.metric(
            "controller_runtime_reconcile_total",
            &[("controller", "agenticsession")],
        )
    };
    let before = reconciles();
    sessions(&admin)
        .patch(
            "v1",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"example.com/poke": "1"}}})),
        )
        .await
        .unwrap();
    eventually("the poke to be reconciled", || async {
        reconciles() > before
    })
    .await;
    let jobs: Api<Job> = Api::namespaced(admin.clone(), NS);
    assert!(jobs.get_opt("v1-job").await.unwrap().is_none());
    assert!(vertex_copy(&admin).await.is_none());
    assert_eq!(
        operator.metric(
            "controller_runtime_reconcile_errors_total",
            &[("controller", "agenticsession")],
        ),
        0,
        "a missing source is a wait, not an error"
    );
    let events = vertex_events().await;
    assert_eq!(events.len(), 1, "one Event: {events:#?}");

    // Once it exists, the run starts with the copy: the source's watch wakes the session
    // (the safety-net recheck of waiting sessions is set to ten minutes here).
    put_secret(
        &admin,
        OPERATOR_NS,
        "ambient-vertex",
        &[("ambient-code-key.json", "{\"v\":1}")],
    )
    .await;
    wait_phase(&admin, "v1", SessionPhase::Running).await;
    let copy = vertex_copy(&admin).await.expect("ambient-vertex copied");
    assert_eq!(
        secret_data(&copy)["ambient-code-key.json"],
        "{\"v\":1}",
        "same data as the source"
    );
    assert_eq!(
        copy.annotations()["vteam.ambient-code/copied-from"],
        "ambient-code/ambient-vertex"
    );
    assert_eq!(
        copy.labels()["ambient-code.io/copied-secret"],
        "ambient-vertex"
    );
    assert_eq!(owner_names(&copy), ["v1"]);
    assert_eq!(copy.owner_references()[0].controller, Some(true));

    // The runner gets the Vertex settings, the key and the CA bundle.
    let job = jobs.get("v1-job").await.unwrap();
    let pod = job.spec.unwrap().template.spec.unwrap();
    let runner = &pod.containers[0];
    let env = |name: &str| {
        runner
            .env
            .iter()
            .flatten()
            .find(|e| e.name == name)
            .and_then(|e| e.value.clone())
    };
    assert_eq!(env("USE_VERTEX").as_deref(), Some("1"));
    assert_eq!(env("CLAUDE_CODE_USE_VERTEX").as_deref(), Some("1"));
    assert_eq!(
        env("ANTHROPIC_VERTEX_PROJECT_ID").as_deref(),
        Some("my-project")
    );
    let volumes: Vec<&str> = pod
        .volumes
        .iter()
        .flatten()
        .map(|v| v.name.as_str())
        .collect();
    assert!(volumes.contains(&"vertex"), "{volumes:?}");
    assert!(volumes.contains(&"trusted-ca-bundle"), "{volumes:?}");
    let mounts: Vec<&str> = runner
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| m.mount_path.as_str())
        .collect();
    assert!(mounts.contains(&"/app/vertex"), "{mounts:?}");
    assert!(
        mounts.contains(&"/etc/pki/tls/certs/ca-bundle.crt"),
        "{mounts:?}"
    );

    // The namespace's NetworkPolicy admits only the backend's namespace on the AG-UI port.
    let policy = Api::<NetworkPolicy>::namespaced(admin.clone(), NS)
        .get("runner-allow-backend-only")
        .await
        .unwrap();
    assert_eq!(policy.labels()["ambient-code.io/managed-by"], "operator");
    assert_eq!(policy.labels()["app"], "ambient-code");
    let spec = policy.spec.unwrap();
    assert_eq!(
        spec.pod_selector.unwrap().match_labels.unwrap()["app"],
        "ambient-code-runner"
    );
    let rule = &spec.ingress.unwrap()[0];
    assert_eq!(
        rule.from.as_ref().unwrap()[0]
            .namespace_selector
            .as_ref()
            .unwrap()
            .match_labels
            .as_ref()
            .unwrap()["kubernetes.io/metadata.name"],
        OPERATOR_NS
    );
    assert_eq!(
        rule.ports.as_ref().unwrap()[0].port,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(8001))
    );

    // A change of the source reaches the copy.
    put_secret(
        &admin,
        OPERATOR_NS,
        "ambient-vertex",
        &[("ambient-code-key.json", "{\"v\":2}")],
    )
    .await;
    eventually("the copy to follow its source", || async {
        vertex_copy(&admin)
            .await
            .is_some_and(|c| secret_data(&c)["ambient-code-key.json"] == "{\"v\":2}")
    })
    .await;

    // A second session shares the copy; each end of a run releases its hold, the last one
    // deletes it.
    create_session(&admin, "v2", json!({})).await;
    wait_phase(&admin, "v2", SessionPhase::Running).await;
    assert_eq!(
        owner_names(&vertex_copy(&admin).await.unwrap()),
        ["v1", "v2"]
    );
    stop(&admin, "v1", "2026-11-23T06:00:00Z").await;
    wait_phase(&admin, "v1", SessionPhase::Stopped).await;
    eventually("v1 to release the copy", || async {
        vertex_copy(&admin)
            .await
            .is_some_and(|c| owner_names(&c) == ["v2"])
    })
    .await;
    stop(&admin, "v2", "2026-11-23T06:00:01Z").await;
    wait_phase(&admin, "v2", SessionPhase::Stopped).await;
    eventually("the unused copy to be deleted", || async {
        vertex_copy(&admin).await.is_none()
    })
    .await;
    // The source is never touched.
    assert!(
        Api::<Secret>::namespaced(admin.clone(), OPERATOR_NS)
            .get_opt("ambient-vertex")
            .await
            .unwrap()
            .is_some()
    );
    assert_no_denials(&cluster);
    operator.stop().await.unwrap();
}

const LANGFUSE: &str = "ambient-admin-langfuse-secret";
const MLFLOW: &str = "ambient-admin-mlflow-observability-secret";

/// The runner pod spec of session `name`'s Job.
async fn runner_pod(client: &Client, name: &str) -> k8s_openapi::api::core::v1::PodSpec {
    let job = Api::<Job>::namespaced(client.clone(), NS)
        .get(&format!("{name}-job"))
        .await
        .unwrap();
    job.spec.unwrap().template.spec.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::too_many_lines)] // one walk through both copies' whole life
async fn langfuse_and_mlflow_copies_are_best_effort_refreshed_and_released() {
    let cluster = cluster("forever").await;
    let admin = cluster.client();
    runner_secret(&admin).await;
    // MLflow asks for Kubernetes authentication; the Langfuse source does not exist yet.
    put_secret(
        &admin,
        OPERATOR_NS,
        MLFLOW,
        &[
            ("MLFLOW_TRACKING_URI", "http://mlflow:5000"),
            ("MLFLOW_TRACKING_AUTH", "kubernetes"),
        ],
    )
    .await;
    let operator = start_operator(
        &cluster,
        vec![Box::new(ConfiguredSessions(observability_config))],
    )
    .await;

    // A missing Langfuse source does not hold the run back: it is reported as a Warning
    // Event on the session, and the MLflow copy is made.
    create_session(&admin, "o1", json!({"initialPrompt": "hi"})).await;
    wait_phase(&admin, "o1", SessionPhase::Running).await;
    assert!(copy_of(&admin, LANGFUSE).await.is_none());
    let copy = copy_of(&admin, MLFLOW).await.expect("MLflow Secret copied");
    assert_eq!(
        secret_data(&copy)["MLFLOW_TRACKING_URI"],
        "http://mlflow:5000"
    );
    assert_eq!(
        copy.annotations()["vteam.ambient-code/copied-from"],
        format!("{OPERATOR_NS}/{MLFLOW}")
    );
    assert_eq!(copy.labels()["ambient-code.io/copied-secret"], MLFLOW);
    assert_eq!(owner_names(&copy), ["o1"]);
    assert_eq!(copy.owner_references()[0].controller, Some(true));
    warning_about(&admin, "o1", "SecretCopyFailed", LANGFUSE).await;

    // The runner reads both groups from the copies (optional references) and, as MLflow asks
    // for Kubernetes authentication, runs as the session's ServiceAccount with its token.
    let pod = runner_pod(&admin, "o1").await;
    assert_eq!(
        pod.service_account_name.as_deref(),
        Some("ambient-session-o1")
    );
    assert_eq!(pod.automount_service_account_token, Some(true));
    let reference = |name: &str| {
        let var = pod.containers[0]
            .env
            .iter()
            .flatten()
            .find(|e| e.name == name)
            .unwrap_or_else(|| panic!("{name} missing"));
        let r = var
            .value_from
            .as_ref()
            .unwrap()
            .secret_key_ref
            .clone()
            .unwrap();
        (r.name, r.key, r.optional)
    };
    assert_eq!(
        reference("LANGFUSE_SECRET_KEY"),
        (LANGFUSE.into(), "LANGFUSE_SECRET_KEY".into(), Some(true))
    );
    assert_eq!(
        reference("MLFLOW_TRACKING_URI"),
        (MLFLOW.into(), "MLFLOW_TRACKING_URI".into(), Some(true))
    );
    assert_eq!(
        reference("OBSERVABILITY_BACKENDS"),
        (MLFLOW.into(), "OBSERVABILITY_BACKENDS".into(), Some(true))
    );
    // The per-session Role lets that identity use MLflow experiments.
    let role = Api::<k8s_openapi::api::rbac::v1::Role>::namespaced(admin.clone(), NS)
        .get("ambient-session-o1-role")
        .await
        .unwrap();
    assert!(role.rules.unwrap().iter().any(|r| {
        r.api_groups.as_deref() == Some(&["mlflow.kubeflow.org".to_owned()][..])
            && r.verbs == ["get", "list", "update"]
    }));

    // A change of the source reaches the copy; without Kubernetes authentication the next
    // run keeps the namespace's default identity.
    put_secret(
        &admin,
        OPERATOR_NS,
        MLFLOW,
        &[
            ("MLFLOW_TRACKING_URI", "http://mlflow:5001"),
            ("MLFLOW_TRACKING_AUTH", "basic"),
        ],
    )
    .await;
    eventually("the MLflow copy to follow its source", || async {
        copy_of(&admin, MLFLOW).await.is_some_and(|c| {
            let data = secret_data(&c);
            data["MLFLOW_TRACKING_URI"] == "http://mlflow:5001"
                && data["MLFLOW_TRACKING_AUTH"] == "basic"
        })
    })
    .await;
    put_secret(
        &admin,
        OPERATOR_NS,
        LANGFUSE,
        &[("LANGFUSE_HOST", "http://lf")],
    )
    .await;
    create_session(&admin, "o2", json!({})).await;
    wait_phase(&admin, "o2", SessionPhase::Running).await;
    let pod = runner_pod(&admin, "o2").await;
    assert_eq!(pod.service_account_name, None);
    assert_eq!(pod.automount_service_account_token, Some(false));
    let langfuse = copy_of(&admin, LANGFUSE).await.expect("Langfuse copied");
    assert_eq!(secret_data(&langfuse)["LANGFUSE_HOST"], "http://lf");
    assert_eq!(owner_names(&langfuse), ["o2"]);
    let mlflow = copy_of(&admin, MLFLOW).await.unwrap();
    assert_eq!(owner_names(&mlflow), ["o1", "o2"]);
    let o2 = mlflow
        .owner_references()
        .iter()
        .find(|o| o.name == "o2")
        .unwrap()
        .clone();
    assert_eq!(o2.controller, None, "o1 stays the only controller");

    // Each end of a run releases its hold; a copy goes with its last user.
    stop(&admin, "o1", "2026-11-23T06:00:00Z").await;
    wait_phase(&admin, "o1", SessionPhase::Stopped).await;
    eventually("o1 to release the MLflow copy", || async {
        copy_of(&admin, MLFLOW)
            .await
            .is_some_and(|c| owner_names(&c) == ["o2"])
    })
    .await;
    stop(&admin, "o2", "2026-11-23T06:00:01Z").await;
    wait_phase(&admin, "o2", SessionPhase::Stopped).await;
    eventually("both unused copies to be deleted", || async {
        copy_of(&admin, MLFLOW).await.is_none() && copy_of(&admin, LANGFUSE).await.is_none()
    })
    .await;
    // The sources are never touched.
    let sources: Api<Secret> = Api::namespaced(admin.clone(), OPERATOR_NS);
    assert!(sources.get_opt(MLFLOW).await.unwrap().is_some());
    assert!(sources.get_opt(LANGFUSE).await.unwrap().is_some());
    assert_no_denials(&cluster);
    operator.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_session_records_the_spec_it_started_with() {
    let cluster = cluster("forever").await;
    let admin = cluster.client();
    runner_secret(&admin).await;
    let operator = start_operator(&cluster, agentic_operator::families()).await;
    create_session(
        &admin,
        "repos",
        json!({"repos": [{"url": "https://github.com/example/webapp.git", "branch": "develop"}],
               "activeWorkflow": {"gitUrl": "https://github.com/example/flows.git", "path": "triage"}}),
    )
    .await;
    let s = wait_until(&sessions(&admin), "repos", "recorded repos", |s| {
        s.status
            .as_ref()
            .is_some_and(|st| st.reconciled_repos.is_some())
    })
    .await;
    let status = s.status.unwrap();
    let repo = &status.reconciled_repos.unwrap()[0];
    assert_eq!(repo.name.as_deref(), Some("webapp"));
    assert_eq!(repo.branch.as_deref(), Some("develop"));
    let workflow = status.reconciled_workflow.unwrap();
    assert_eq!(
        workflow.git_url.as_deref(),
        Some("https://github.com/example/flows.git")
    );
    assert_eq!(workflow.branch.as_deref(), Some("main"));
    assert_eq!(workflow.path.as_deref(), Some("triage"));
    // Without Vertex AI mode the namespace still gets its NetworkPolicy, and nothing is
    // copied.
    assert!(
        Api::<NetworkPolicy>::namespaced(admin.clone(), NS)
            .get_opt("runner-allow-backend-only")
            .await
            .unwrap()
            .is_some()
    );
    assert!(vertex_copy(&admin).await.is_none());
    assert_no_denials(&cluster);
    operator.stop().await.unwrap();
}

fn trigger_config(reuse: bool) -> TriggerConfig {
    TriggerConfig {
        template: AgenticSessionSpec {
            initial_prompt: Some("Triage new issues".into()),
            display_name: Some("Nightly Triage".into()),
            ..AgenticSessionSpec::default()
        },
        namespace: NS.into(),
        schedule: "nightly".into(),
        reuse,
        backend: trigger::BackendApi::in_namespace(OPERATOR_NS),
        token_file: trigger::SERVICE_ACCOUNT_TOKEN_FILE.into(),
    }
}

async fn scheduled(client: &Client) -> Vec<AgenticSession> {
    sessions(client)
        .list(&ListParams::default().labels("ambient-code.io/scheduled-session-name=nightly"))
        .await
        .unwrap()
        .items
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_trigger_creates_and_restarts_scheduled_sessions() {
    let cluster = cluster("1").await;
    let admin = cluster.client();
    runner_secret(&admin).await;
    let operator = start_operator(&cluster, agentic_operator::families()).await;
    // The trigger runs as the project's ambient-session-trigger ServiceAccount, which the
    // operator creates with the ProjectSettings.
    wait_until(
        &Api::<RoleBinding>::namespaced(admin.clone(), NS),
        "ambient-session-trigger",
        "created",
        |_| true,
    )
    .await;
    let trigger_client = cluster
        .service_account_client(NS, "ambient-session-trigger")
        .await
        .unwrap();

    let t1: Timestamp = "2026-11-23T01:00:00Z".parse().unwrap();
    let done = trigger::run(&trigger_client, &trigger_config(true), t1)
        .await
        .unwrap();
    let first = format!("nightly-triage-{}", t1.as_second());
    assert_eq!(done, format!("created AgenticSession {NS}/{first}"));
    let created = sessions(&admin).get(&first).await.unwrap();
    assert_eq!(created.labels()["ambient-code.io/scheduled-run"], "true");
    assert_eq!(
        created.spec.initial_prompt.as_deref(),
        Some("Triage new issues")
    );

    // While it runs, a reuse trigger does nothing; once it completed, it restarts it with
    // the prompt forced.
    wait_phase(&admin, &first, SessionPhase::Completed).await;
    let t2: Timestamp = "2026-11-23T02:00:00Z".parse().unwrap();
    let done = trigger::run(&trigger_client, &trigger_config(true), t2)
        .await
        .unwrap();
    assert_eq!(done, format!("restarted AgenticSession {NS}/{first}"));
    wait_until(
        &sessions(&admin),
        &first,
        "restarted and acknowledged",
        |s| {
            s.status
                .as_ref()
                .and_then(|st| st.observed_desired_phase_at.as_deref())
                == Some("2026-11-23T02:00:00Z")
                && !s
                    .annotations()
                    .contains_key(ANNOTATION_FORCE_EXECUTE_PROMPT)
        },
    )
    .await;
    assert_eq!(
        scheduled(&admin).await.len(),
        1,
        "reuse made no new session"
    );

    // Without reuse every run is a new session.
    let t3: Timestamp = "2026-11-23T03:00:00Z".parse().unwrap();
    trigger::run(&trigger_client, &trigger_config(false), t3)
        .await
        .unwrap();
    let names: Vec<String> = scheduled(&admin)
        .await
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    assert!(
        names.contains(&format!("nightly-triage-{}", t3.as_second())),
        "{names:?}"
    );
    assert_eq!(names.len(), 2);
    operator.stop().await.unwrap();
}

#[test]
fn session_trigger_command_rejects_bad_settings_with_exit_status_2() {
    let run = |env: &[(&str, &str)]| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_agentic-operator"));
        command.arg("session-trigger");
        for key in [
            "SESSION_TEMPLATE",
            "PROJECT_NAMESPACE",
            "SCHEDULED_SESSION_NAME",
            "REUSE_LAST_SESSION",
        ] {
            command.env_remove(key);
        }
        command.envs(env.iter().copied());
        command.output().unwrap()
    };
    let missing = run(&[]);
    assert_eq!(missing.status.code(), Some(2));
    let log = String::from_utf8_lossy(&missing.stdout).to_string()
        + &String::from_utf8_lossy(&missing.stderr);
    assert!(log.contains("SESSION_TEMPLATE: required"), "{log}");

    let bad_reuse = run(&[
        ("SESSION_TEMPLATE", "{}"),
        ("PROJECT_NAMESPACE", "team-a"),
        ("SCHEDULED_SESSION_NAME", "nightly"),
        ("REUSE_LAST_SESSION", "often"),
    ]);
    assert_eq!(bad_reuse.status.code(), Some(2));
    let log = String::from_utf8_lossy(&bad_reuse.stdout).to_string()
        + &String::from_utf8_lossy(&bad_reuse.stderr);
    assert!(log.contains("REUSE_LAST_SESSION"), "{log}");

    let help = std::process::Command::new(env!("CARGO_BIN_EXE_agentic-operator"))
        .args(["session-trigger", "--help"])
        .output()
        .unwrap();
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("SCHEDULED_SESSION_NAME"));
}

/// With reuse, a `Running` last session of the schedule gets the template's prompt as a new
/// AG-UI run through the backend, authenticated with the `ServiceAccount` token, and no session
/// is created. A backend that refuses it, or a token that cannot be read, fails the run with
/// the reason (exit status 1); a template without a prompt leaves the session alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_trigger_sends_the_prompt_to_a_running_session() {
    let cluster = cluster("forever").await;
    let admin = cluster.client();
    let name = "nightly-triage-1";
    let session: AgenticSession = serde_json::from_value(json!({
        "apiVersion": "vteam.ambient-code/v1alpha1", "kind": "AgenticSession",
        "metadata": {"name": name, "labels": {
            "ambient-code.io/scheduled-session-name": "nightly",
            "ambient-code.io/scheduled-run": "true"}},
        "spec": {"initialPrompt": "first run"},
    }))
    .unwrap();
    sessions(&admin)
        .create(&PostParams::default(), &session)
        .await
        .unwrap();
    // No operator runs here: the phase stays what the test writes.
    sessions(&admin)
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Running"}})),
        )
        .await
        .unwrap();
    let token_file = std::env::temp_dir().join(format!("trigger-token-{}", std::process::id()));
    std::fs::write(&token_file, "sa-token-1\n").unwrap();
    let (address, mut requests) = fake_runner().await;
    let mut config = trigger_config(true);
    config.backend = trigger::BackendApi::from_url(&format!("http://{address}/api")).unwrap();
    config.token_file = token_file.clone();

    let t: Timestamp = "2026-11-23T04:00:00Z".parse().unwrap();
    let done = trigger::run(&admin, &config, t).await.unwrap();
    assert_eq!(
        done,
        format!("sent the prompt to running AgenticSession {NS}/{name}")
    );
    let (path, credential, body) = requests.recv().await.unwrap();
    assert_eq!(
        path,
        format!("/api/projects/{NS}/agentic-sessions/{name}/agui/run")
    );
    assert_eq!(credential, "Bearer sa-token-1");
    assert_eq!(body, trigger::follow_up_input(name, "Triage new issues", t));
    assert_eq!(scheduled(&admin).await.len(), 1, "no session was created");

    // Without a prompt there is nothing to send.
    let mut silent = config.clone();
    silent.template.initial_prompt = None;
    let done = trigger::run(&admin, &silent, t).await.unwrap();
    assert!(done.ends_with("is still active; nothing to do"), "{done}");
    assert!(requests.try_recv().is_err(), "nothing was sent");

    // A backend that refuses the prompt fails the run, naming the session and the status.
    let (refusing, _calls) =
        fake_runner_refusing(&["/api/projects/team-a/agentic-sessions/nightly-triage-1/agui/run"])
            .await;
    let mut refused = config.clone();
    refused.backend = trigger::BackendApi::from_url(&format!("http://{refusing}/api")).unwrap();
    let err = trigger::run(&admin, &refused, t)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!("running AgenticSession {NS}/{name}")) && err.contains("500"),
        "{err}"
    );

    // No token: nothing is sent.
    std::fs::remove_file(&token_file).unwrap();
    let err = trigger::run(&admin, &config, t)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("read the ServiceAccount token"), "{err}");
    assert!(requests.try_recv().is_err(), "nothing was sent");
    assert_eq!(scheduled(&admin).await.len(), 1);
}

/// A runner (or backend) stand-in: answers every request with `200` and reports what it
/// received: the path, the credential header (the runner's session token or the
/// `Authorization` value) and the JSON body.
async fn fake_runner() -> (
    String,
    tokio::sync::mpsc::UnboundedReceiver<(String, String, Value)>,
) {
    fake_runner_refusing(&[]).await
}

/// [`fake_runner`] answering 500 to the paths in `refused` (still reporting the calls).
async fn fake_runner_refusing(
    refused: &'static [&'static str],
) -> (
    String,
    tokio::sync::mpsc::UnboundedReceiver<(String, String, Value)>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = stream.read(&mut buf).await.unwrap_or(0);
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&got).to_string();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("Content-Length: "))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    if body.len() >= len {
                        break;
                    }
                }
            }
            let text = String::from_utf8_lossy(&got).to_string();
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            let path = head.split_whitespace().nth(1).unwrap().to_owned();
            let token = head
                .lines()
                .find_map(|l| {
                    l.strip_prefix("X-Ambient-Session-Token: ")
                        .or_else(|| l.strip_prefix("Authorization: "))
                })
                .unwrap_or_default()
                .to_owned();
            let answer: &[u8] = if refused.contains(&path.as_str()) {
                b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n"
            } else {
                b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
            };
            tx.send((path, token, serde_json::from_str(body).unwrap()))
                .unwrap();
            stream.write_all(answer).await.unwrap();
        }
    });
    (address, rx)
}

/// Session `name` with `repos` runs until the operator has recorded them; then the operator
/// is stopped (so only the test's calls reach the runner stand-in: the in-cluster Service
/// name does not resolve here) and `spec` is merged into the session. Returns a client with
/// the operator's own RBAC.
async fn running_then_changed(
    cluster: &TestCluster,
    name: &str,
    repos: Value,
    spec: Value,
) -> Client {
    let admin = cluster.client();
    runner_secret(&admin).await;
    let operator = start_operator(cluster, agentic_operator::families()).await;
    let count = repos.as_array().map_or(0, Vec::len);
    create_session(&admin, name, json!({ "repos": repos })).await;
    wait_until(&sessions(&admin), name, "recorded repos", |s| {
        s.status
            .as_ref()
            .and_then(|st| st.reconciled_repos.as_ref())
            .is_some_and(|r| r.len() == count)
    })
    .await;
    operator.stop().await.unwrap();
    sessions(&admin)
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": spec })),
        )
        .await
        .unwrap();
    cluster
        .service_account_client(OPERATOR_NS, "agentic-operator")
        .await
        .unwrap()
}

/// Upstream rewrote `reconciledRepos` from the spec (and advanced its bookkeeping) even when
/// the runner refused the call, so the status claimed a change the runner never made and it
/// was never sent again. Here the runner refuses `/workflow`: the repo it accepted is
/// recorded, the workflow is not, a retry is asked for, and the next pass sends only the
/// workflow again and records it once the runner takes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_call_that_fails_is_not_recorded_and_is_sent_again() {
    use agentic_operator::sessions::session::live;
    let cluster = cluster("forever").await;
    let admin = cluster.client();
    let operator_client = running_then_changed(
        &cluster,
        "flaky",
        json!([{"url": "https://github.com/example/webapp.git"}]),
        json!({
            "repos": [{"url": "https://github.com/example/webapp.git"},
                      {"url": "https://github.com/example/docs.git"}],
            "activeWorkflow": {"gitUrl": "https://github.com/example/flows.git", "path": "review"},
        }),
    )
    .await;
    let now: Timestamp = "2026-11-23T07:00:00Z".parse().unwrap();
    let (refusing, mut refused_calls) = fake_runner_refusing(&["/workflow"]).await;
    let session = sessions(&admin).get("flaky").await.unwrap();
    let again = live::ensure_runner_spec(&operator_client, &session, &refusing, now)
        .await
        .unwrap();
    assert!(again.is_some(), "a refused call asks for a retry");
    let paths: Vec<String> = [
        refused_calls.recv().await.unwrap(),
        refused_calls.recv().await.unwrap(),
    ]
    .into_iter()
    .map(|(path, _, _)| path)
    .collect();
    assert_eq!(paths, ["/repos/add", "/workflow"]);
    let status = sessions(&admin).get("flaky").await.unwrap().status.unwrap();
    let names: Vec<Option<String>> = status
        .reconciled_repos
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names, [Some("webapp".into()), Some("docs".into())]);
    assert!(
        status.reconciled_workflow.is_none(),
        "the refused workflow must not be recorded: {:?}",
        status.reconciled_workflow
    );

    // The retry sends only what is still missing.
    let (accepting, mut calls) = fake_runner().await;
    let session = sessions(&admin).get("flaky").await.unwrap();
    let again = live::ensure_runner_spec(&operator_client, &session, &accepting, now)
        .await
        .unwrap();
    assert_eq!(again, None);
    assert_eq!(calls.recv().await.unwrap().0, "/workflow");
    assert!(
        calls.try_recv().is_err(),
        "only the workflow was sent again"
    );
    let status = sessions(&admin).get("flaky").await.unwrap().status.unwrap();
    assert_eq!(
        status.reconciled_workflow.unwrap().path.as_deref(),
        Some("review")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::too_many_lines)] // one runner stand-in, three rounds of calls
async fn spec_changes_are_pushed_to_the_runner_and_recorded() {
    use agentic_operator::sessions::session::live;
    let cluster = cluster("forever").await;
    let admin = cluster.client();
    let operator_client = running_then_changed(
        &cluster,
        "live",
        json!([{"url": "https://github.com/example/webapp.git"},
               {"url": "https://github.com/example/old.git"}]),
        json!({
            "repos": [{"url": "https://github.com/example/webapp.git", "branch": "feature"}],
            "activeWorkflow": {"gitUrl": "https://github.com/example/flows.git", "path": "review"},
        }),
    )
    .await;
    let session = sessions(&admin).get("live").await.unwrap();
    let (address, mut calls) = fake_runner().await;
    let now: Timestamp = "2026-11-23T07:00:00Z".parse().unwrap();
    let again = live::ensure_runner_spec(&operator_client, &session, &address, now)
        .await
        .unwrap();
    assert_eq!(again, None, "every call succeeded");
    let token = Api::<Secret>::namespaced(admin.clone(), NS)
        .get("ambient-runner-token-live")
        .await
        .unwrap();
    let agui = secret_data(&token)["agui-token"].clone();
    let mut received = Vec::new();
    for _ in 0..3 {
        received.push(calls.recv().await.unwrap());
    }
    assert_eq!(
        received,
        [
            (
                "/repos/remove".to_owned(),
                agui.clone(),
                json!({"name": "old"})
            ),
            (
                "/repos/add".to_owned(),
                agui.clone(),
                json!({"url": "https://github.com/example/webapp.git", "branch": "feature", "name": "webapp"})
            ),
            (
                "/workflow".to_owned(),
                agui,
                json!({"gitUrl": "https://github.com/example/flows.git", "branch": "main", "path": "review"})
            ),
        ]
    );
    let status = sessions(&admin).get("live").await.unwrap().status.unwrap();
    let repos = status.reconciled_repos.unwrap();
    assert_eq!(repos.len(), 1);
    assert_eq!(repos[0].branch.as_deref(), Some("feature"));
    assert_eq!(
        status.reconciled_workflow.unwrap().path.as_deref(),
        Some("review")
    );
    // Applied: a second pass sends nothing.
    let session = sessions(&admin).get("live").await.unwrap();
    assert_eq!(
        live::ensure_runner_spec(&operator_client, &session, &address, now)
            .await
            .unwrap(),
        None
    );
    assert!(calls.try_recv().is_err(), "nothing more was sent");

    // The token comes from the Secret the `runner-token-secret` annotation names, not from
    // the default name (upstream always read the default one).
    let mut custom = Secret::default();
    custom.metadata.name = Some("custom-runner-token".into());
    custom.string_data = Some([("agui-token".to_owned(), "custom-agui".to_owned())].into());
    Api::<Secret>::namespaced(admin.clone(), NS)
        .create(&PostParams::default(), &custom)
        .await
        .unwrap();
    sessions(&admin)
        .patch(
            "live",
            &PatchParams::default(),
            &Patch::Merge(json!({
                "metadata": {"annotations": {"ambient-code.io/runner-token-secret": "custom-runner-token"}},
                "spec": {"activeWorkflow": {"gitUrl": "https://github.com/example/flows.git", "path": "other"}},
            })),
        )
        .await
        .unwrap();
    let session = sessions(&admin).get("live").await.unwrap();
    live::ensure_runner_spec(&operator_client, &session, &address, now)
        .await
        .unwrap();
    let (path, token, _) = calls.recv().await.unwrap();
    assert_eq!(
        (path.as_str(), token.as_str()),
        ("/workflow", "custom-agui")
    );
    assert_no_denials(&cluster);
}

/// Settings with the operator-wide runner resources set and `spec.timeout` not
/// enforced (`RUNNER_MEMORY_LIMIT=16Gi`, `RUNNER_CPU_REQUEST=1`,
/// `ENFORCE_SESSION_TIMEOUT=false`), read through the same parser as the environment.
fn unenforced_config(runner_image: &str) -> SessionConfig {
    SessionConfig::from_lookup(runner_image, OPERATOR_NS, |k| match k {
        "RUNNER_MEMORY_LIMIT" => Some("16Gi".into()),
        "RUNNER_CPU_REQUEST" => Some("1".into()),
        "ENFORCE_SESSION_TIMEOUT" | "REQUIRE_RUNNER_SECRETS" => Some("false".into()),
        _ => None,
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_wide_runner_resources_and_a_session_outliving_its_unenforced_timeout() {
    let cluster = cluster("forever").await;
    let admin = cluster.client();
    let operator = start_operator(
        &cluster,
        vec![Box::new(ConfiguredSessions(unenforced_config))],
    )
    .await;
    create_session(&admin, "long", json!({"timeout": 2})).await;
    wait_phase(&admin, "long", SessionPhase::Running).await;

    let job = Api::<Job>::namespaced(admin.clone(), NS)
        .get("long-job")
        .await
        .unwrap();
    assert_eq!(
        job.spec.as_ref().unwrap().active_deadline_seconds,
        None,
        "no deadline with enforcement off"
    );
    let pod = runner_pod(&admin, "long").await;
    let resources = pod.containers[0].resources.clone().unwrap();
    let requests = resources.requests.unwrap();
    let limits = resources.limits.unwrap();
    assert_eq!(requests["cpu"].0, "1");
    assert_eq!(
        requests["memory"].0, "512Mi",
        "unset variables keep the default"
    );
    assert_eq!(limits["cpu"].0, "2000m");
    assert_eq!(limits["memory"].0, "16Gi");

    // Well after spec.timeout has passed (with a margin for the simulated Job controller),
    // the session is still Running and its Job has not failed.
    let created = job.metadata.creation_timestamp.unwrap().0;
    let past_timeout = created + std::time::Duration::from_secs(2 + 8);
    while Timestamp::now() < past_timeout {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    let session = sessions(&admin).get("long").await.unwrap();
    assert_eq!(
        session.status.and_then(|s| s.phase),
        Some(SessionPhase::Running)
    );
    let job = Api::<Job>::namespaced(admin.clone(), NS)
        .get("long-job")
        .await
        .unwrap();
    let failed = job
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .into_iter()
        .any(|c| c.type_ == "Failed" && c.status == "True");
    assert!(!failed, "the Job never hits DeadlineExceeded");
    assert_no_denials(&cluster);
    operator.stop().await.unwrap();
}

fn network_policy(client: &Client) -> Api<NetworkPolicy> {
    Api::namespaced(client.clone(), NS)
}

fn job_of(client: &Client) -> Api<Job> {
    Api::namespaced(client.clone(), NS)
}

/// A transient failure to apply the runner `NetworkPolicy` (500 on every apply) holds the
/// start: no Job is created, so no runner runs unprotected. Once the API server answers again
/// the policy is applied and the session runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_network_policy_failure_holds_the_start() {
    let cluster = cluster("forever").await;
    let admin = cluster.client();
    runner_secret(&admin).await;
    cluster
        .set_faults(devcluster::FaultConfig {
            error_rate: 1.0,
            error_codes: vec![500],
            verbs: vec!["patch".into()],
            resources: vec!["networkpolicies".into()],
            ..devcluster::FaultConfig::default()
        })
        .unwrap();
    let operator = start_operator(&cluster, agentic_operator::families()).await;
    create_session(&admin, "held", json!({"initialPrompt": "hi"})).await;
    eventually("the policy's apply to be refused three times", || async {
        cluster
            .stats()
            .get("patch", "networkpolicies.networking.k8s.io")
            .errors
            >= 3
    })
    .await;
    assert!(
        job_of(&admin).get_opt("held-job").await.unwrap().is_none(),
        "the runner Job was created without its NetworkPolicy"
    );
    assert_ne!(
        sessions(&admin).get("held").await.unwrap().phase(),
        SessionPhase::Running
    );
    // `kubectl describe` shows why: a Warning Event with the API server's answer, published
    // on the 1st, 2nd, 4th, ... failure in a row rather than on every retry.
    eventually("a ReconcileFailed Event naming the policy", || async {
        support::events_about(&admin, NS, "held")
            .await
            .iter()
            .any(|e| {
                e.type_.as_deref() == Some("Warning")
                    && e.reason.as_deref() == Some("ReconcileFailed")
                    && e.note.as_deref().is_some_and(|n| {
                        n.contains("NetworkPolicy") && n.contains("failure 1 in a row")
                    })
            })
    })
    .await;

    cluster.clear_faults();
    wait_phase(&admin, "held", SessionPhase::Running).await;
    assert!(
        network_policy(&admin)
            .get_opt("runner-allow-backend-only")
            .await
            .unwrap()
            .is_some()
    );
    operator.stop().await.unwrap();
}

/// When the API server refuses the `NetworkPolicy` (here the operator's `ClusterRole` lacks the
/// rule, so the read and the apply are 403), the runner starts without it, as upstream's, and
/// the refusal is a Warning Event on the session that names the policy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_network_policy_is_a_warning_and_the_run_starts() {
    let cluster = cluster("forever").await;
    let admin = cluster.client();
    runner_secret(&admin).await;
    let cluster_roles: Api<k8s_openapi::api::rbac::v1::ClusterRole> = Api::all(admin.clone());
    let mut stripped = 0;
    for mut role in cluster_roles
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
    {
        let Some(rules) = role.rules.as_mut() else {
            continue;
        };
        let before = rules.len();
        rules.retain(|r| {
            !r.resources
                .iter()
                .flatten()
                .any(|res| res == "networkpolicies")
        });
        if rules.len() != before {
            stripped += before - rules.len();
            cluster_roles
                .replace(&role.name_any(), &PostParams::default(), &role)
                .await
                .unwrap();
        }
    }
    assert_eq!(stripped, 1, "the shipped RBAC has one NetworkPolicy rule");

    let operator = start_operator(&cluster, agentic_operator::families()).await;
    create_session(&admin, "open", json!({"initialPrompt": "hi"})).await;
    wait_phase(&admin, "open", SessionPhase::Running).await;
    assert!(
        network_policy(&admin)
            .get_opt("runner-allow-backend-only")
            .await
            .unwrap()
            .is_none()
    );
    warning_about(
        &admin,
        "open",
        "NetworkPolicyFailed",
        "runner-allow-backend-only",
    )
    .await;
    operator.stop().await.unwrap();
}

/// The operator holds no `bind` on Roles, so the API server resolves the Role a session's
/// `RoleBinding` names and answers 404 while it does not exist yet. The binding is written after
/// its Role: no start fails on that race, and no session shows a `ReconcileFailed` Event.
/// (Written together, the binding lost the race on most starts here.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runner_binding_is_written_after_its_role() {
    let cluster = cluster("forever").await;
    let admin = cluster.client();
    runner_secret(&admin).await;
    let operator = start_operator(&cluster, agentic_operator::families()).await;
    let names: Vec<String> = (0..8).map(|i| format!("bound-{i}")).collect();
    for name in &names {
        create_session(&admin, name, json!({"initialPrompt": "hi"})).await;
    }
    for name in &names {
        wait_phase(&admin, name, SessionPhase::Running).await;
    }
    let bindings = cluster
        .stats()
        .get("patch", "rolebindings.rbac.authorization.k8s.io");
    assert_eq!(bindings.errors, 0, "{bindings:?}");
    for name in &names {
        let failed: Vec<_> = support::events_about(&admin, NS, name)
            .await
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some("ReconcileFailed"))
            .filter_map(|e| e.note)
            .collect();
        assert!(failed.is_empty(), "{name}: {failed:?}");
    }
    operator.stop().await.unwrap();
}

/// The operator's default settings.
fn plain_config(runner_image: &str) -> SessionConfig {
    SessionConfig::defaults(runner_image, OPERATOR_NS)
}

/// Where `init-hydrate` and `state-sync` find S3, as upstream decided it: by default the
/// operator's endpoint and bucket with the key pair of `minio-credentials` from the backend's
/// namespace, as values in those two containers only (a copy in the project's namespace would
/// be readable by the agent, whose Role may get every Secret there, and that pair opens every
/// project's state); without that Secret, no credentials and no failure. With
/// `STORAGE_MODE=custom` in the project's `ambient-non-vertex-integrations`, all four settings
/// are references to that Secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::too_many_lines)] // the three storage situations, one after the other
async fn state_sync_storage_follows_the_projects_storage_mode() {
    const MINIO: &str = "minio-credentials";
    const INTEGRATIONS: &str = "ambient-non-vertex-integrations";
    let cluster = cluster("forever").await;
    let admin = cluster.client();
    runner_secret(&admin).await;
    let operator = start_operator(&cluster, vec![Box::new(ConfiguredSessions(plain_config))]).await;
    let env_of = |container: &k8s_openapi::api::core::v1::Container| {
        [
            "S3_ENDPOINT",
            "S3_BUCKET",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
        ]
        .iter()
        .filter_map(|name| {
            let var = container.env.iter().flatten().find(|e| e.name == *name)?;
            Some(match (&var.value, &var.value_from) {
                (Some(v), _) => format!("{name}={v}"),
                (None, Some(from)) => {
                    let r = from.secret_key_ref.as_ref().unwrap();
                    format!("{name}<-{}/{}", r.name, r.key)
                }
                (None, None) => format!("{name}="),
            })
        })
        .collect::<Vec<_>>()
    };
    let s3 = |pod: &k8s_openapi::api::core::v1::PodSpec| {
        let init = pod
            .init_containers
            .iter()
            .flatten()
            .find(|c| c.name == "init-hydrate")
            .expect("init-hydrate");
        let runner = pod
            .containers
            .iter()
            .find(|c| c.name == "ambient-code-runner")
            .expect("runner");
        assert!(
            !env_of(runner).iter().any(|e| e.starts_with("AWS_")),
            "the runner never gets the S3 credentials"
        );
        env_of(init)
    };

    // No shared credentials exist: the run starts without them, silently.
    create_session(&admin, "st1", json!({})).await;
    wait_phase(&admin, "st1", SessionPhase::Running).await;
    assert_eq!(
        s3(&runner_pod(&admin, "st1").await),
        [
            "S3_ENDPOINT=https://s3.amazonaws.com",
            "S3_BUCKET=ambient-sessions"
        ]
    );

    // With the shared credentials in the backend's namespace, init-hydrate gets them; nothing
    // is copied into the project's namespace.
    put_secret(
        &admin,
        OPERATOR_NS,
        MINIO,
        &[("access-key", "minio"), ("secret-key", "minio123")],
    )
    .await;
    create_session(&admin, "st2", json!({})).await;
    wait_phase(&admin, "st2", SessionPhase::Running).await;
    assert_eq!(
        s3(&runner_pod(&admin, "st2").await),
        [
            "S3_ENDPOINT=https://s3.amazonaws.com",
            "S3_BUCKET=ambient-sessions",
            "AWS_ACCESS_KEY_ID=minio",
            "AWS_SECRET_ACCESS_KEY=minio123",
        ]
    );
    assert!(copy_of(&admin, MINIO).await.is_none());

    // A project with its own storage: everything from its integration Secret.
    put_secret(
        &admin,
        NS,
        INTEGRATIONS,
        &[
            ("STORAGE_MODE", "custom"),
            ("S3_ENDPOINT", "https://s3.team-a.example"),
            ("S3_BUCKET", "team-a-state"),
            ("S3_ACCESS_KEY", "a"),
            ("S3_SECRET_KEY", "s"),
        ],
    )
    .await;
    create_session(&admin, "st3", json!({})).await;
    wait_phase(&admin, "st3", SessionPhase::Running).await;
    assert_eq!(
        s3(&runner_pod(&admin, "st3").await),
        [
            "S3_ENDPOINT<-ambient-non-vertex-integrations/S3_ENDPOINT",
            "S3_BUCKET<-ambient-non-vertex-integrations/S3_BUCKET",
            "AWS_ACCESS_KEY_ID<-ambient-non-vertex-integrations/S3_ACCESS_KEY",
            "AWS_SECRET_ACCESS_KEY<-ambient-non-vertex-integrations/S3_SECRET_KEY",
        ]
    );
    assert_no_denials(&cluster);
    operator.stop().await.unwrap();
}

/// The agent registry file of this test process (nextest runs each test in its own).
fn registry_path() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("agent-registry-{}.json", std::process::id()))
}

/// The models manifest of this test process.
fn models_path() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("models-{}.json", std::process::id()))
}

/// The operator's default settings reading [`registry_path`] as the agent registry and
/// [`models_path`] as the models manifest.
fn registry_config(runner_image: &str) -> SessionConfig {
    let mut config = plain_config(runner_image);
    config.agent_registry_path = registry_path().display().to_string();
    config.models_manifest_path = models_path().display().to_string();
    config
}

/// `spec.environmentVariables.RUNNER_TYPE` picks the runner from the agent registry: its
/// image, environment, resources, state directory, state-sync image, pod parts, workspace size
/// and grace period; no `RUNNER_TYPE` means `claude-agent-sdk`. A type the registry does not
/// list runs the built-in runner, and a value that cannot be used is left out; both are a
/// Warning Event `RunnerTypeProblem` naming the field (and the listed types). The models
/// manifest gives the runner `LLM_MODEL_VERTEX_ID` for an available model.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::too_many_lines)] // four runner types, one after the other
async fn runner_types_come_from_the_agent_registry() {
    std::fs::write(
        registry_path(),
        r#"[
  {"id": "claude-agent-sdk", "displayName": "Claude Code",
   "container": {"image": "runner:claude", "port": 8001, "env": {"RUNNER_TYPE": "claude-agent-sdk"},
                 "resources": {"limits": {"memory": "4Gi"}}},
   "sandbox": {"stateDir": ".claude", "persistence": "s3", "seed": {"cloneRepos": true, "hydrateState": true}},
   "models": [{"value": "claude-sonnet-4-5", "label": "Claude Sonnet 4.5"}]},
  {"id": "gemini-cli",
   "container": {"image": "runner:gemini", "env": {"RUNNER_STATE_DIR": ".gemini"}},
   "sandbox": {"stateDir": ".gemini", "stateSyncImage": "sync:gemini", "persistence": "s3",
               "workspaceSize": "20Gi", "terminationGracePeriod": 90,
               "seed": {"cloneRepos": true, "hydrateState": true}}},
  {"id": "lightweight",
   "container": {"image": "runner:light", "resources": {"requests": {"cpu": "lots"}}},
   "sandbox": {"persistence": "none"}}
]"#,
    )
    .unwrap();
    std::fs::write(
        models_path(),
        format!(
            r#"{{"version": 2, "models": [
              {{"id": "{}", "vertexId": "default-model@20250929", "available": true}},
              {{"id": "gemini-2.5-pro", "vertexId": "gemini-2.5-pro@default", "available": false}}]}}"#,
            agentic_api::sessions::DEFAULT_MODEL
        ),
    )
    .unwrap();
    let cluster = cluster("forever").await;
    let admin = cluster.client();
    runner_secret(&admin).await;
    let operator = start_operator(
        &cluster,
        vec![Box::new(ConfiguredSessions(registry_config))],
    )
    .await;
    let container = |pod: &k8s_openapi::api::core::v1::PodSpec, name: &str| {
        pod.containers
            .iter()
            .chain(pod.init_containers.iter().flatten())
            .find(|c| c.name == name)
            .cloned()
    };
    let env = |c: &k8s_openapi::api::core::v1::Container, name: &str| {
        c.env
            .iter()
            .flatten()
            .find(|e| e.name == name)
            .and_then(|e| e.value.clone())
    };

    create_session(
        &admin,
        "g1",
        json!({"environmentVariables": {"RUNNER_TYPE": "gemini-cli"},
               "llmSettings": {"model": "gemini-2.5-pro"}}),
    )
    .await;
    wait_phase(&admin, "g1", SessionPhase::Running).await;
    let pod = runner_pod(&admin, "g1").await;
    let runner = container(&pod, "ambient-code-runner").unwrap();
    assert_eq!(runner.image.as_deref(), Some("runner:gemini"));
    assert_eq!(
        env(&runner, "LLM_MODEL_VERTEX_ID"),
        None,
        "the manifest lists the model as unavailable"
    );
    assert_eq!(env(&runner, "RUNNER_STATE_DIR").as_deref(), Some(".gemini"));
    assert!(
        runner
            .volume_mounts
            .iter()
            .flatten()
            .any(|m| m.mount_path == "/app/.gemini" && m.sub_path.as_deref() == Some(".gemini")),
        "{:?}",
        runner.volume_mounts
    );
    assert_eq!(pod.termination_grace_period_seconds, Some(90));
    let workspace = pod.volumes.iter().flatten().find(|v| v.name == "workspace");
    assert_eq!(
        workspace
            .and_then(|v| v.empty_dir.as_ref())
            .and_then(|e| e.size_limit.as_ref())
            .map(|q| q.0.as_str()),
        Some("20Gi")
    );
    for part in ["init-hydrate", "state-sync"] {
        assert_eq!(
            container(&pod, part).and_then(|c| c.image).as_deref(),
            Some("sync:gemini"),
            "{part}"
        );
    }

    // No RUNNER_TYPE: claude-agent-sdk, with its memory limit over the operator's.
    create_session(&admin, "d1", json!({})).await;
    wait_phase(&admin, "d1", SessionPhase::Running).await;
    let runner = container(&runner_pod(&admin, "d1").await, "ambient-code-runner").unwrap();
    assert_eq!(runner.image.as_deref(), Some("runner:claude"));
    assert_eq!(
        env(&runner, "RUNNER_TYPE").as_deref(),
        Some("claude-agent-sdk")
    );
    assert_eq!(
        env(&runner, "LLM_MODEL_VERTEX_ID").as_deref(),
        Some("default-model@20250929")
    );
    let limits = runner.resources.unwrap().limits.unwrap();
    assert_eq!(limits["memory"].0, "4Gi");
    assert_eq!(
        limits["cpu"].0, "2000m",
        "keys the registry leaves out keep the default"
    );

    // persistence none without seeding: no init-hydrate, no state-sync, no workspace; the
    // request that is not a quantity is left out, with a Warning.
    create_session(
        &admin,
        "l1",
        json!({"environmentVariables": {"RUNNER_TYPE": "lightweight"}}),
    )
    .await;
    wait_phase(&admin, "l1", SessionPhase::Running).await;
    let pod = runner_pod(&admin, "l1").await;
    assert!(pod.init_containers.is_none(), "{:?}", pod.init_containers);
    assert_eq!(pod.containers.len(), 1);
    assert!(!pod.volumes.iter().flatten().any(|v| v.name == "workspace"));
    let runner = container(&pod, "ambient-code-runner").unwrap();
    assert!(
        !runner
            .volume_mounts
            .iter()
            .flatten()
            .any(|m| m.name == "workspace")
    );
    assert_eq!(runner.resources.unwrap().requests.unwrap()["cpu"].0, "500m");
    warning_about(
        &admin,
        "l1",
        "RunnerTypeProblem",
        "container.resources.requests.cpu: \"lots\" is not a resource quantity",
    )
    .await;

    // A type the registry does not list: the built-in runner and a Warning naming the types.
    create_session(
        &admin,
        "u1",
        json!({"environmentVariables": {"RUNNER_TYPE": "codex"}}),
    )
    .await;
    wait_phase(&admin, "u1", SessionPhase::Running).await;
    let runner = container(&runner_pod(&admin, "u1").await, "ambient-code-runner").unwrap();
    assert_ne!(runner.image.as_deref(), Some("runner:claude"));
    warning_about(
        &admin,
        "u1",
        "RunnerTypeProblem",
        "allowed: claude-agent-sdk, gemini-cli, lightweight",
    )
    .await;
    operator.stop().await.unwrap();
    std::fs::remove_file(registry_path()).unwrap();
    std::fs::remove_file(models_path()).unwrap();
}
