//! The operator running with nothing but the permissions in `config/rbac/`, against a dev
//! cluster that enforces RBAC (including the escalation checks on Role and `RoleBinding`
//! writes): every controller converges, no request is denied, and leader election works.
//! `rbac_escalation.rs` shows, without the `bind` rule, that the checks are real.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::{Arc, Mutex, OnceLock};

use agentic_api::sessions::{AgenticSession, ProjectSettings, SessionPhase};
use devcluster::{
    AdmissionHook, Hooks,
    hooks::{AdmissionRequest, Operation},
    simulators::Simulators,
};
use futures::future::BoxFuture;
use k8s_openapi::api::{
    coordination::v1::Lease,
    core::v1::Secret,
    rbac::v1::{Role, RoleBinding},
};
use kube::{
    Api, Client, ResourceExt,
    api::{ListParams, Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};
use support::{
    MANAGED, OPERATOR_USER, Operator, cluster, eventually, install, install_crds, namespace,
    rbac_documents, settings, wait_for,
};

type Logs = Arc<Mutex<Vec<u8>>>;

struct LogWriter(Logs);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Captures every log line of this test binary (both tests here expect no refusal, so they
/// can share one buffer).
fn capture_logs() -> Logs {
    static LOGS: OnceLock<Logs> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Logs::default();
        let sink = logs.clone();
        let _ = tracing_subscriber::fmt()
            .with_env_filter("info")
            .with_ansi(false)
            .with_writer(move || LogWriter(sink.clone()))
            .try_init();
        logs
    })
    .clone()
}

async fn project_settings(client: &Client, ns: &str) -> Option<ProjectSettings> {
    Api::<ProjectSettings>::namespaced(client.clone(), ns)
        .get_opt("projectsettings")
        .await
        .unwrap()
}

fn ready(ps: &ProjectSettings) -> Option<(String, String, String)> {
    ps.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready" && c.observed_generation == ps.metadata.generation)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

async fn group_bindings(client: &Client, ns: &str) -> Vec<String> {
    let mut names: Vec<String> = Api::<RoleBinding>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels("ambient-code.io/project-rbac=group"))
        .await
        .unwrap()
        .items
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::too_many_lines)] // one scenario from install to audit
async fn operator_works_with_only_the_shipped_rbac() {
    let logs = capture_logs();
    let cluster = cluster(true).await;
    let admin = cluster.client();
    install(&admin, &rbac_documents()).await;
    let client = cluster
        .service_account_client("ambient-code", "agentic-operator")
        .await
        .unwrap();
    let operator = Operator::start(
        client,
        settings("op-0", |a| {
            a.leader_elect = true;
            a.leader_election_namespace = Some("ambient-code".into());
        }),
    );

    namespace(&admin, "team-r", &[MANAGED]).await;
    wait_for("the default ProjectSettings to be Ready", || async {
        let ps = project_settings(&admin, "team-r").await?;
        ready(&ps).filter(|(s, _, _)| s == "True").map(|_| ())
    })
    .await;
    Api::<ProjectSettings>::namespaced(admin.clone(), "team-r")
        .patch(
            "projectsettings",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"groupAccess": [
                {"groupName": "devs", "role": "edit"},
                {"groupName": "ops", "role": "admin"},
            ]}})),
        )
        .await
        .unwrap();
    eventually("two group bindings", || async {
        group_bindings(&admin, "team-r").await == vec!["devs-edit", "ops-admin"]
    })
    .await;
    Api::<ProjectSettings>::namespaced(admin.clone(), "team-r")
        .patch(
            "projectsettings",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"groupAccess": [
                {"groupName": "devs", "role": "view"},
            ]}})),
        )
        .await
        .unwrap();
    eventually("the stale bindings to be pruned", || async {
        group_bindings(&admin, "team-r").await == vec!["devs-view"]
    })
    .await;
    let ps = wait_for("status with one binding", || async {
        let ps = project_settings(&admin, "team-r").await?;
        let status = ps.status.as_ref()?;
        (status.group_bindings_created == Some(1)
            && status.scheduled_session_rbac_ready == Some(true)
            && status.limit_range_ready == Some(true)
            && ready(&ps).is_some_and(|(s, _, _)| s == "True"))
        .then_some(ps)
    })
    .await;
    assert!(ps.status.is_some());

    // The Lease is held by this replica.
    let lease = Api::<Lease>::namespaced(admin.clone(), "ambient-code")
        .get("agentic-operator-leader")
        .await
        .unwrap();
    let holder = lease.spec.unwrap().holder_identity.unwrap();
    assert!(holder.starts_with("op-0"), "{holder}");
    // Events were published (Events need their RBAC too).
    eventually("Events in team-r", || async {
        !Api::<k8s_openapi::api::events::v1::Event>::namespaced(admin.clone(), "team-r")
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    })
    .await;

    for controller in ["projectsettings", "namespace"] {
        assert_eq!(
            operator.metric(
                "controller_runtime_reconcile_errors_total",
                &[("controller", controller)]
            ),
            0,
            "{controller} reconciles must not fail"
        );
    }
    let logs = String::from_utf8_lossy(&logs.lock().unwrap()).to_string();
    assert!(
        !logs.contains("Forbidden") && !logs.contains("forbidden"),
        "no request may be refused:\n{logs}"
    );
    let audit = cluster.auth().unwrap().audit();
    let denied = audit.denied(OPERATOR_USER);
    assert!(denied.is_empty(), "denied requests: {denied:#?}");
    let rules: Vec<devcluster::auth::rbac::Rule> = rbac_documents()
        .iter()
        .filter(|d| d["kind"] == "ClusterRole" || d["kind"] == "Role")
        .flat_map(|d| d["rules"].as_array().unwrap().clone())
        .map(|r| devcluster::auth::rbac::Rule::from_value(&r))
        .collect();
    eprintln!(
        "rules not exercised by this scenario: {:#?}",
        audit.unused(OPERATOR_USER, &rules)
    );
    operator.stop().await.unwrap();
}

/// Runner pods of sessions named `long-*` run until they are stopped (other runner pods
/// finish after a second, the simulated kubelet's default).
struct LongRunners;

impl AdmissionHook for LongRunners {
    fn admit<'a>(
        &'a self,
        request: &'a AdmissionRequest<'a>,
        object: &'a mut Value,
    ) -> BoxFuture<'a, Result<(), devcluster::ApiError>> {
        Box::pin(async move {
            let session = object["metadata"]["labels"]["agentic-session"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if request.kind == "Pod"
                && request.operation == Operation::Create
                && session.starts_with("long-")
            {
                object["metadata"]["annotations"]["devcluster.io/run-seconds.ambient-code-runner"] =
                    json!("forever");
            }
            Ok(())
        })
    }
}

async fn phase(client: &Client, name: &str, want: SessionPhase) -> AgenticSession {
    wait_for(&format!("session {name} to reach {want}"), || async {
        Api::<AgenticSession>::namespaced(client.clone(), "team-q")
            .get_opt(name)
            .await
            .unwrap()
            .filter(|s| s.phase() == want)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::too_many_lines)] // one scenario from install to audit
async fn sessions_run_and_stop_with_only_the_shipped_rbac() {
    let logs = capture_logs();
    support::crypto();
    let cluster = devcluster::DevCluster::builder()
        .hooks(Hooks {
            admission: vec![Arc::new(LongRunners)],
            ..Hooks::default()
        })
        .rbac(true)
        .with_simulators(Simulators::all())
        .start()
        .await
        .unwrap();
    let admin = cluster.client();
    install_crds(&admin).await;
    install(&admin, &rbac_documents()).await;
    namespace(&admin, "team-q", &[MANAGED]).await;
    Api::<Secret>::namespaced(admin.clone(), "team-q")
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "ambient-runner-secrets"},
                "stringData": {"ANTHROPIC_API_KEY": "test"}
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let client = cluster
        .service_account_client("ambient-code", "agentic-operator")
        .await
        .unwrap();
    let operator = Operator::start(
        client,
        settings("op-0", |a| {
            a.leader_elect = true;
            a.leader_election_namespace = Some("ambient-code".into());
        }),
    );
    let sessions = Api::<AgenticSession>::namespaced(admin.clone(), "team-q");
    for name in ["short-1", "long-1"] {
        sessions
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({
                    "apiVersion": "vteam.ambient-code/v1alpha1", "kind": "AgenticSession",
                    "metadata": {"name": name, "namespace": "team-q"},
                    "spec": {"initialPrompt": "hello", "userContext": {"userId": "u-1"}}
                }))
                .unwrap(),
            )
            .await
            .unwrap();
    }
    phase(&admin, "short-1", SessionPhase::Completed).await;
    phase(&admin, "long-1", SessionPhase::Running).await;
    // The per-session Role could only be created because the operator holds what it grants.
    assert!(
        Api::<Role>::namespaced(admin.clone(), "team-q")
            .get_opt("ambient-session-long-1-role")
            .await
            .unwrap()
            .is_some()
    );
    sessions
        .patch(
            "long-1",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {
                "ambient-code.io/desired-phase": "Stopped"}}})),
        )
        .await
        .unwrap();
    phase(&admin, "long-1", SessionPhase::Stopped).await;
    sessions
        .patch(
            "long-1",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {
                "ambient-code.io/desired-phase": "Running"}}})),
        )
        .await
        .unwrap();
    phase(&admin, "long-1", SessionPhase::Running).await;
    sessions
        .delete("short-1", &kube::api::DeleteParams::default())
        .await
        .unwrap();

    // The project side converged alongside.
    wait_for("the project to be Ready", || async {
        let ps = project_settings(&admin, "team-q").await?;
        ready(&ps).filter(|(s, _, _)| s == "True").map(|_| ())
    })
    .await;
    let audit = cluster.auth().unwrap().audit();
    let denied = audit.denied(OPERATOR_USER);
    assert!(denied.is_empty(), "denied requests: {denied:#?}");
    let logs = String::from_utf8_lossy(&logs.lock().unwrap()).to_string();
    assert!(
        !logs.contains("Forbidden") && !logs.contains("forbidden"),
        "no request may be refused:\n{logs}"
    );
    for controller in ["projectsettings", "namespace"] {
        assert_eq!(
            operator.metric(
                "controller_runtime_reconcile_errors_total",
                &[("controller", controller)]
            ),
            0,
            "{controller} reconciles must not fail"
        );
    }
    let rules: Vec<devcluster::auth::rbac::Rule> = rbac_documents()
        .iter()
        .filter(|d| d["kind"] == "ClusterRole" || d["kind"] == "Role")
        .flat_map(|d| d["rules"].as_array().unwrap().clone())
        .map(|r| devcluster::auth::rbac::Rule::from_value(&r))
        .collect();
    eprintln!(
        "rules not exercised by the session scenario: {:#?}",
        audit.unused(OPERATOR_USER, &rules)
    );
    operator.stop().await.unwrap();
}

#[test]
fn rbac_subcommand_prints_and_writes_the_manifests() {
    let binary = env!("CARGO_BIN_EXE_agentic-operator");
    let printed = std::process::Command::new(binary)
        .arg("rbac")
        .output()
        .unwrap();
    assert!(printed.status.success());
    assert_eq!(
        String::from_utf8(printed.stdout).unwrap(),
        agentic_operator::rbac::manifests_yaml().unwrap()
    );
    let dir = std::env::temp_dir().join(format!("agentic-rbac-{}", std::process::id()));
    let written = std::process::Command::new(binary)
        .args(["rbac", "--out-dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(written.status.success());
    for file in agentic_operator::rbac::RESOURCE_FILES
        .iter()
        .chain(&["kustomization.yaml"])
    {
        assert_eq!(
            std::fs::read_to_string(dir.join(file)).unwrap(),
            std::fs::read_to_string(support::config_rbac().join(file)).unwrap(),
            "{file}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
    let refused = std::process::Command::new(binary)
        .args(["rbac", "--bogus"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
}
