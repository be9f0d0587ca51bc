//! What wakes an `AgenticSession` besides its own changes: a changed or deleted runner-token
//! Secret (repaired while the session runs) and a created `ambient-runner-secrets` (starts the
//! sessions waiting for it). The safety-net recheck of waiting sessions is set to ten minutes
//! here, so only the watch events can make these tests pass.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use agentic_api::sessions::{AgenticSession, SessionPhase};
use agentic_operator::{
    runtime::{ControllerTask, CrdRef, Family, FamilyError, RuntimeContext, SharedWatches},
    sessions::session::config::SessionConfig,
};
use devcluster::simulators::Simulators;
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, Client,
    api::{DeleteParams, Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};
use support::{
    MANAGED, Operator, Setup, TestCluster, install, rbac_documents, runner_secret,
    scripted_runner_pods, settings_for, wait_for, wait_until,
};

/// Test namespace (labelled as an ambient-code project).
const NS: &str = "team-a";
/// The operator's (and backend's) namespace.
const OPERATOR_NS: &str = "ambient-code";

/// The sessions family whose waiting sessions are rechecked only every ten minutes.
struct SlowRecheckSessions;

impl Family for SlowRecheckSessions {
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
        let mut config = SessionConfig::defaults(&rt.settings.runner_image, OPERATOR_NS);
        config.waiting_recheck = Duration::from_mins(10);
        agentic_operator::sessions::session::controllers_with(rt, watches, config)
    }
}

/// A dev cluster enforcing RBAC with the shipped operator RBAC, scripted runner pods that run
/// until stopped, and the managed namespace `team-a` (without `ambient-runner-secrets`).
async fn cluster() -> TestCluster {
    let cluster = Setup::new()
        .rbac(true)
        .admission(scripted_runner_pods())
        .crds(agentic_api::sessions::GROUP)
        .simulators(Simulators::all())
        .start()
        .await;
    install(&cluster.client(), &rbac_documents()).await;
    support::namespace(&cluster.client(), NS, &[MANAGED]).await;
    cluster
}

/// The operator, as its `ServiceAccount`, running [`SlowRecheckSessions`].
async fn start_operator(cluster: &TestCluster) -> Operator {
    let client = cluster
        .service_account_client(OPERATOR_NS, "agentic-operator")
        .await
        .unwrap();
    let settings = settings_for(
        "sessions",
        &[("POD_NAME", "wakeups-test"), ("NAMESPACE", OPERATOR_NS)],
        |_| {},
    );
    Operator::start_with(client, settings, vec![Box::new(SlowRecheckSessions)])
}

fn sessions(client: &Client) -> Api<AgenticSession> {
    Api::namespaced(client.clone(), NS)
}

async fn create_session(client: &Client, name: &str) {
    let session: AgenticSession = serde_json::from_value(json!({
        "apiVersion": "vteam.ambient-code/v1alpha1", "kind": "AgenticSession",
        "metadata": {"name": name},
        "spec": {"initialPrompt": "hi"},
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

/// The value of `key` in Secret `name` once it exists and the value is not empty.
async fn wait_filled(secrets: &Api<Secret>, name: &str, key: &str) -> Vec<u8> {
    wait_for(&format!("{key} in Secret {name} to be filled"), || async {
        secrets
            .get_opt(name)
            .await
            .unwrap()
            .and_then(|s| s.data)
            .and_then(|d| d.get(key).map(|v| v.0.clone()))
            .filter(|v| !v.is_empty())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_created_runner_secret_starts_the_session_waiting_for_it() {
    let cluster = cluster().await;
    let admin = cluster.client();
    let operator = start_operator(&cluster).await;

    create_session(&admin, "waits").await;
    wait_until(
        &sessions(&admin),
        "waits",
        "waiting for the runner secret",
        |s| {
            s.status.as_ref().is_some_and(|st| {
                st.phase == Some(SessionPhase::Pending)
                    && st.conditions.iter().flatten().any(|c| {
                        c.type_ == "SecretsReady"
                            && c.status == "False"
                            && c.reason == "RunnerSecretMissing"
                            && c.message.contains("team-a/ambient-runner-secrets")
                    })
            })
        },
    )
    .await;

    // Creating the Secret wakes the waiting session (the recheck is ten minutes away).
    runner_secret(&admin, NS).await;
    let running = wait_phase(&admin, "waits", SessionPhase::Running).await;
    let secrets_ready = running
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "SecretsReady"))
        .expect("a SecretsReady condition");
    assert_eq!(secrets_ready.status, "True");
    assert_eq!(secrets_ready.reason, "AllRequiredSecretsFound");
    operator.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_sessions_token_secret_is_repaired_when_emptied_or_deleted() {
    let cluster = cluster().await;
    let admin = cluster.client();
    runner_secret(&admin, NS).await;
    let operator = start_operator(&cluster).await;
    create_session(&admin, "tok").await;
    wait_phase(&admin, "tok", SessionPhase::Running).await;

    let secrets: Api<Secret> = Api::namespaced(admin.clone(), NS);
    let name = "ambient-runner-token-tok";
    let agui = wait_filled(&secrets, name, "agui-token").await;
    let empty = |key: &str| -> Value { json!({"data": {key: ""}}) };

    // An emptied Kubernetes token gets a new one; the AG-UI token is kept.
    secrets
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(empty("k8s-token")),
        )
        .await
        .unwrap();
    wait_filled(&secrets, name, "k8s-token").await;
    assert_eq!(wait_filled(&secrets, name, "agui-token").await, agui);

    // A removed AG-UI token gets a new value.
    secrets
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"agui-token": null}})),
        )
        .await
        .unwrap();
    wait_filled(&secrets, name, "agui-token").await;

    // A deleted Secret is recreated with both tokens, labelled so the operator keeps
    // following it.
    let old_uid = secrets.get(name).await.unwrap().metadata.uid;
    secrets
        .delete(name, &DeleteParams::default())
        .await
        .unwrap();
    let recreated = wait_for("the token Secret to be recreated", || async {
        secrets
            .get_opt(name)
            .await
            .unwrap()
            .filter(|s| s.metadata.uid != old_uid)
    })
    .await;
    assert_eq!(
        recreated.metadata.labels.unwrap_or_default()["app"],
        "ambient-runner-token"
    );
    wait_filled(&secrets, name, "k8s-token").await;
    wait_filled(&secrets, name, "agui-token").await;

    // The session kept running throughout.
    let session = sessions(&admin).get("tok").await.unwrap();
    assert_eq!(
        session.status.and_then(|s| s.phase),
        Some(SessionPhase::Running)
    );
    operator.stop().await.unwrap();
}
