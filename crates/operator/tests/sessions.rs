//! The `AgenticSession` controller against devcluster with the simulated scheduler, kubelet
//! and Job controller: the whole lifecycle, failures, timeouts, stop and resume, pod loss,
//! deletion, operator restarts and idle resyncs.
//!
//! Runner pods are scripted through their session: an admission hook copies the session's
//! `devcluster.io/*` annotations onto each runner pod when it is created (by default the
//! init container finishes at once and the runner runs until it is stopped).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::{collections::BTreeMap, time::Duration};

use agentic_api::sessions::{
    ANNOTATION_DESIRED_PHASE, ANNOTATION_STOP_REQUESTED_AT, AgenticSession, SessionPhase,
    StoppedReason,
};
use agentic_operator::runtime::Family;
use devcluster::simulators::Simulators;
use k8s_openapi::api::{
    batch::v1::Job,
    core::v1::{Pod, Secret, Service, ServiceAccount},
    rbac::v1::{Role, RoleBinding},
};
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};
use support::{
    MANAGED, Operator, SessionsWithSidecar, Setup, TestCluster, eventually, find_condition,
    runner_secret, scripted_runner_pods, settings_for, wait_until,
};

/// Test namespace (labelled as an ambient-code project).
const NS: &str = "team-a";

/// A dev cluster enforcing RBAC, with every simulator, the sessions CRDs, scripted runner
/// pods and the managed namespace [`NS`] holding the runner secret.
async fn cluster() -> TestCluster {
    let cluster = Setup::new()
        .rbac(true)
        .admission(scripted_runner_pods())
        .crds(agentic_api::sessions::GROUP)
        .simulators(Simulators::all())
        .start()
        .await;
    namespace(&cluster.client(), NS, true).await;
    cluster
}

async fn namespace(client: &Client, name: &str, managed: bool) {
    bare_namespace(client, name, managed).await;
    runner_secret(client, name).await;
}

async fn bare_namespace(client: &Client, name: &str, managed: bool) {
    let labels: &[(&str, &str)] = if managed { &[MANAGED] } else { &[] };
    support::namespace(client, name, labels).await;
}

/// The operator with the sessions family.
fn start_operator(client: &Client) -> Operator {
    start_operator_with(client, agentic_operator::families())
}

/// The operator with `families`, running only the sessions controllers.
fn start_operator_with(client: &Client, families: Vec<Box<dyn Family>>) -> Operator {
    let settings = settings_for("sessions", &[("POD_NAME", "sessions-test")], |_| {});
    Operator::start_with(client.clone(), settings, families)
}

fn sessions(client: &Client) -> Api<AgenticSession> {
    Api::namespaced(client.clone(), NS)
}

async fn create(client: &Client, name: &str, annotations: Value, spec: Value) {
    let session: AgenticSession = serde_json::from_value(json!({
        "apiVersion": "vteam.ambient-code/v1alpha1", "kind": "AgenticSession",
        "metadata": {"name": name, "annotations": annotations},
        "spec": spec,
    }))
    .unwrap();
    sessions(client)
        .create(&PostParams::default(), &session)
        .await
        .unwrap();
}

async fn annotate(client: &Client, name: &str, annotations: Value) {
    sessions(client)
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": annotations}})),
        )
        .await
        .unwrap();
}

/// Polls the session until `check` holds; returns it.
async fn wait_for(
    client: &Client,
    name: &str,
    what: &str,
    check: impl Fn(&AgenticSession) -> bool,
) -> AgenticSession {
    wait_until(&sessions(client), name, what, check).await
}

async fn wait_phase(client: &Client, name: &str, phase: SessionPhase) -> AgenticSession {
    wait_for(client, name, phase.as_str(), |s| {
        s.status.as_ref().and_then(|st| st.phase) == Some(phase)
    })
    .await
}

fn condition<'a>(
    s: &'a AgenticSession,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    find_condition(s.status.as_ref()?.conditions.as_deref(), type_)
}

fn ready_reason(s: &AgenticSession) -> String {
    condition(s, "Ready")
        .map(|c| c.reason.clone())
        .unwrap_or_default()
}

async fn job(client: &Client, session: &str) -> Option<Job> {
    Api::<Job>::namespaced(client.clone(), NS)
        .get_opt(&format!("{session}-job"))
        .await
        .unwrap()
}

async fn runner_pods(client: &Client, session: &str) -> Vec<Pod> {
    Api::<Pod>::namespaced(client.clone(), NS)
        .list(&ListParams::default().labels(&format!("agentic-session={session}")))
        .await
        .unwrap()
        .items
}

async fn gone<K>(client: &Client, name: &str) -> bool
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    Api::<K>::namespaced(client.clone(), NS)
        .get_opt(name)
        .await
        .unwrap()
        .is_none()
}

fn env_value(job: &Job, name: &str) -> Option<String> {
    job.spec.as_ref()?.template.spec.as_ref()?.containers[0]
        .env
        .as_ref()?
        .iter()
        .find(|e| e.name == name)
        .and_then(|e| e.value.clone())
}

#[tokio::test]
#[allow(clippy::too_many_lines)] // one walk through the whole lifecycle
async fn create_run_complete() {
    let cluster = cluster().await;
    let client = cluster.client();
    let operator = start_operator(&client);
    create(
        &client,
        "happy",
        json!({"devcluster.io/run-seconds.ambient-code-runner": "forever",
               "devcluster.io/exit-code.ambient-code-runner": "0"}),
        json!({"initialPrompt": "hello", "timeout": 600,
               "userContext": {"userId": "u-1"}}),
    )
    .await;

    let running = wait_phase(&client, "happy", SessionPhase::Running).await;
    let status = running.status.clone().unwrap();
    assert!(status.start_time.is_some());
    assert!(status.runner_started_at.is_some());
    assert!(status.runner_pod_uid.is_some());
    assert_eq!(condition(&running, "Ready").unwrap().status, "True");
    assert_eq!(
        condition(&running, "RunnerStarted").unwrap().reason,
        "ContainerRunning"
    );
    assert_eq!(condition(&running, "PodScheduled").unwrap().status, "True");
    assert_eq!(condition(&running, "PodCreated").unwrap().status, "True");
    assert_eq!(
        running
            .annotations()
            .get("ambient-code.io/runner-token-secret")
            .map(String::as_str),
        Some("ambient-runner-token-happy")
    );

    // Generated objects while running.
    let runner_job = job(&client, "happy").await.expect("runner Job exists");
    assert_eq!(
        env_value(&runner_job, "INITIAL_PROMPT").as_deref(),
        Some("hello")
    );
    assert_eq!(env_value(&runner_job, "IS_RESUME"), None);
    assert_eq!(
        runner_job.spec.as_ref().unwrap().active_deadline_seconds,
        Some(600)
    );
    let owner = &runner_job.owner_references()[0];
    assert_eq!(owner.api_version, "vteam.ambient-code/v1alpha1");
    assert_eq!(owner.kind, "AgenticSession");
    assert!(!gone::<Service>(&client, "session-happy").await);
    let sa: ServiceAccount = Api::namespaced(client.clone(), NS)
        .get("ambient-session-happy")
        .await
        .unwrap();
    assert_eq!(
        sa.annotations()
            .get("ambient-code.io/created-by-user-id")
            .map(String::as_str),
        Some("u-1")
    );
    assert!(!gone::<Role>(&client, "ambient-session-happy-role").await);
    assert!(!gone::<RoleBinding>(&client, "ambient-session-happy-rb").await);
    let token: Secret = Api::namespaced(client.clone(), NS)
        .get("ambient-runner-token-happy")
        .await
        .unwrap();
    let data = token.data.clone().unwrap();
    assert!(!data["k8s-token"].0.is_empty());
    assert!(!data["agui-token"].0.is_empty());
    assert!(
        token
            .annotations()
            .contains_key("ambient-code.io/token-refreshed-at")
    );

    eventually("the active gauge to count the session", || async {
        operator
            .metrics
            .encode()
            .unwrap()
            .contains("ambient_sessions_active{namespace=\"team-a\"} 1")
    })
    .await;

    // A start request while Running is acknowledged and does nothing (upstream left it in
    // place and restarted the session once it completed).
    annotate(
        &client,
        "happy",
        json!({ANNOTATION_DESIRED_PHASE: "Running"}),
    )
    .await;
    wait_for(&client, "happy", "acknowledged", |s| {
        !s.annotations().contains_key(ANNOTATION_DESIRED_PHASE)
    })
    .await;

    // The runner exits 0.
    support::end_runner(&client, NS, "happy").await;
    let done = wait_phase(&client, "happy", SessionPhase::Completed).await;
    assert!(done.status.as_ref().unwrap().completion_time.is_some());
    assert_eq!(ready_reason(&done), "Completed");
    // Cleanup: the Job (with its pods) and the Service go.
    eventually("the Job and Service to be deleted", || async {
        job(&client, "happy").await.is_none()
            && gone::<Service>(&client, "session-happy").await
            && runner_pods(&client, "happy").await.is_empty()
    })
    .await;

    tokio::time::sleep(Duration::from_secs(2)).await;
    let still = sessions(&client).get("happy").await.unwrap();
    assert_eq!(
        still.phase(),
        SessionPhase::Completed,
        "the session restarted"
    );
    assert!(job(&client, "happy").await.is_none());

    let text = operator.metrics.encode().unwrap();
    for expected in [
        "ambient_sessions_total{namespace=\"team-a\"} 1",
        "ambient_session_phase_transitions_total{namespace=\"team-a\",from_phase=\"None\",to_phase=\"Pending\"} 1",
        "ambient_session_phase_transitions_total{namespace=\"team-a\",from_phase=\"Pending\",to_phase=\"Creating\"} 1",
        "ambient_session_phase_transitions_total{namespace=\"team-a\",from_phase=\"Running\",to_phase=\"Completed\"} 1",
        "ambient_sessions_completed_total{namespace=\"team-a\",final_phase=\"Completed\"} 1",
        "ambient_session_startup_duration_seconds_count{namespace=\"team-a\"} 1",
        "ambient_pod_creation_duration_seconds_count{namespace=\"team-a\"} 1",
        "ambient_token_provision_duration_seconds_count{namespace=\"team-a\"} 1",
    ] {
        assert!(text.contains(expected), "missing {expected} in\n{text}");
    }
    assert!(
        text.contains(
            "ambient_reconcile_duration_seconds_count{phase=\"Running\",success=\"true\"}"
        ),
        "{text}"
    );
    operator.stop().await.unwrap();
}

#[tokio::test]
async fn failing_runners() {
    let cluster = cluster().await;
    let client = cluster.client();
    let operator = start_operator(&client);
    create(
        &client,
        "exit-one",
        json!({"devcluster.io/run-seconds.ambient-code-runner": "1",
               "devcluster.io/exit-code.ambient-code-runner": "1"}),
        json!({}),
    )
    .await;
    create(
        &client,
        "exit-two",
        json!({"devcluster.io/run-seconds.ambient-code-runner": "1",
               "devcluster.io/exit-code.ambient-code-runner": "2"}),
        json!({}),
    )
    .await;
    create(
        &client,
        "bad-image",
        json!({"devcluster.io/image-pull-failure.ambient-code-runner": "true"}),
        json!({}),
    )
    .await;
    // session-<name> would have 64 characters: the session fails with a reason instead of
    // silently lacking its Service.
    let long_name = "a".repeat(56);
    create(&client, &long_name, json!({}), json!({})).await;
    let invalid = wait_phase(&client, &long_name, SessionPhase::Failed).await;
    assert_eq!(ready_reason(&invalid), "InvalidName");
    assert!(
        condition(&invalid, "Ready")
            .unwrap()
            .message
            .contains("at most 55"),
        "{:?}",
        condition(&invalid, "Ready")
    );
    assert!(job(&client, &long_name).await.is_none());
    // A dot is allowed in the session's name but not in its Service's: refused the same way.
    create(&client, "fix.login", json!({}), json!({})).await;
    let dotted = wait_phase(&client, "fix.login", SessionPhase::Failed).await;
    assert_eq!(ready_reason(&dotted), "InvalidName");
    assert!(
        condition(&dotted, "Ready")
            .unwrap()
            .message
            .contains("without dots")
    );
    assert!(job(&client, "fix.login").await.is_none());

    let one = wait_phase(&client, "exit-one", SessionPhase::Failed).await;
    assert_eq!(ready_reason(&one), "RunnerExit");
    let two = wait_phase(&client, "exit-two", SessionPhase::Failed).await;
    assert_eq!(ready_reason(&two), "PrerequisiteFailed");
    let image = wait_phase(&client, "bad-image", SessionPhase::Failed).await;
    assert!(
        ["ErrImagePull", "ImagePullBackOff"].contains(&ready_reason(&image).as_str()),
        "{}",
        ready_reason(&image)
    );
    eventually("failed runners to be cleaned up", || async {
        job(&client, "exit-one").await.is_none() && job(&client, "exit-two").await.is_none()
    })
    .await;
    let text = operator.metrics.encode().unwrap();
    assert!(
        text.contains(
            "ambient_sessions_completed_total{namespace=\"team-a\",final_phase=\"Failed\"} 5"
        ),
        "{text}"
    );
    assert!(
        text.contains("error_type=\"PrerequisiteFailed\"} 1"),
        "{text}"
    );
    operator.stop().await.unwrap();
}

#[tokio::test]
async fn oom_while_running_fails() {
    let cluster = cluster().await;
    let client = cluster.client();
    let operator = start_operator(&client);
    create(
        &client,
        "oom",
        json!({"devcluster.io/run-seconds.ambient-code-runner": "forever",
               "devcluster.io/oom-kill.ambient-code-runner": "true"}),
        json!({}),
    )
    .await;
    wait_phase(&client, "oom", SessionPhase::Running).await;
    support::end_runner(&client, NS, "oom").await;
    let failed = wait_phase(&client, "oom", SessionPhase::Failed).await;
    assert_eq!(ready_reason(&failed), "OOMKilled");
    assert!(condition(&failed, "Ready").unwrap().message.contains("137"));
    operator.stop().await.unwrap();
}

#[tokio::test]
async fn oom_while_a_sidecar_keeps_the_pod_running_fails() {
    let cluster = cluster().await;
    let client = cluster.client();
    let operator = start_operator_with(&client, vec![Box::new(SessionsWithSidecar)]);
    create(
        &client,
        "oom-sidecar",
        json!({"devcluster.io/run-seconds.ambient-code-runner": "forever",
               "devcluster.io/oom-kill.ambient-code-runner": "true"}),
        json!({}),
    )
    .await;
    wait_phase(&client, "oom-sidecar", SessionPhase::Running).await;
    let runner = job_named(&client, "oom-sidecar").await;
    let containers = &runner.spec.unwrap().template.spec.unwrap().containers;
    assert_eq!(containers[1].name, "state-sync");
    // The runner container dies while the sidecar keeps the pod Running (upstream kept such
    // sessions Running until the idler fired).
    support::end_runner(&client, NS, "oom-sidecar").await;
    let failed = wait_phase(&client, "oom-sidecar", SessionPhase::Failed).await;
    assert_eq!(ready_reason(&failed), "OOMKilled");
    operator.stop().await.unwrap();
}

#[tokio::test]
async fn timeout_fails_with_reason_timeout() {
    let cluster = cluster().await;
    let client = cluster.client();
    let operator = start_operator(&client);
    create(&client, "slow", json!({}), json!({"timeout": 5})).await;
    let runner = job_eventually(&client, "slow").await;
    assert_eq!(runner.spec.unwrap().active_deadline_seconds, Some(5));
    let failed = wait_phase(&client, "slow", SessionPhase::Failed).await;
    assert_eq!(ready_reason(&failed), "Timeout");
    assert!(
        condition(&failed, "Ready")
            .unwrap()
            .message
            .contains("spec.timeout")
    );
    operator.stop().await.unwrap();
}

#[tokio::test]
async fn stop_while_creating_and_while_running_then_resume() {
    let cluster = cluster().await;
    let client = cluster.client();
    let operator = start_operator(&client);

    // Creating: an unschedulable runner pod (upstream could not stop these).
    create(
        &client,
        "stuck",
        json!({"devcluster.io/unschedulable": "true"}),
        json!({}),
    )
    .await;
    let creating = wait_for(&client, "stuck", "unschedulable", |s| {
        condition(s, "PodScheduled").is_some_and(|c| c.reason == "Unschedulable")
    })
    .await;
    assert_eq!(creating.phase(), SessionPhase::Creating);
    annotate(
        &client,
        "stuck",
        json!({ANNOTATION_DESIRED_PHASE: "Stopped"}),
    )
    .await;
    let stopped = wait_phase(&client, "stuck", SessionPhase::Stopped).await;
    assert_eq!(
        stopped.status.as_ref().unwrap().stopped_reason,
        Some(StoppedReason::User)
    );

    // Running.
    create(&client, "busy", json!({}), json!({})).await;
    let running = wait_phase(&client, "busy", SessionPhase::Running).await;
    let first_pod = running.status.unwrap().runner_pod_uid.unwrap();
    annotate(
        &client,
        "busy",
        json!({ANNOTATION_DESIRED_PHASE: "Stopped", ANNOTATION_STOP_REQUESTED_AT: "2026-01-01T00:00:00Z"}),
    )
    .await;
    let stopped = wait_phase(&client, "busy", SessionPhase::Stopped).await;
    let status = stopped.status.clone().unwrap();
    assert_eq!(status.stopped_reason, Some(StoppedReason::User));
    assert!(status.completion_time.is_some());
    assert_eq!(ready_reason(&stopped), "UserStopped");
    assert_eq!(
        status.observed_desired_phase_at.as_deref(),
        Some("2026-01-01T00:00:00Z")
    );
    let cleared = wait_for(&client, "busy", "acknowledged", |s| {
        !s.annotations().contains_key(ANNOTATION_DESIRED_PHASE)
    })
    .await;
    assert!(
        !cleared
            .annotations()
            .contains_key(ANNOTATION_STOP_REQUESTED_AT)
    );
    eventually("the stopped runner to be gone", || async {
        job(&client, "busy").await.is_none() && runner_pods(&client, "busy").await.is_empty()
    })
    .await;

    // Resume: a new run with IS_RESUME, since the runner ran before.
    annotate(
        &client,
        "busy",
        json!({ANNOTATION_DESIRED_PHASE: "Running"}),
    )
    .await;
    let resumed = wait_for(&client, "busy", "running again", |s| {
        s.phase() == SessionPhase::Running
            && s.status
                .as_ref()
                .and_then(|st| st.runner_pod_uid.as_deref())
                != Some(first_pod.as_str())
    })
    .await;
    assert!(resumed.status.as_ref().unwrap().completion_time.is_none());
    assert!(resumed.status.as_ref().unwrap().stopped_reason.is_none());
    let busy_job = job(&client, "busy").await.unwrap();
    assert_eq!(env_value(&busy_job, "IS_RESUME").as_deref(), Some("true"));
    assert!(!resumed.annotations().contains_key(ANNOTATION_DESIRED_PHASE));

    // The "stuck" session never ran: resuming it starts it fresh, without IS_RESUME.
    annotate(
        &client,
        "stuck",
        json!({ANNOTATION_DESIRED_PHASE: "Running", "devcluster.io/unschedulable": null}),
    )
    .await;
    wait_phase(&client, "stuck", SessionPhase::Running).await;
    let stuck_job = job_named(&client, "stuck").await;
    assert_eq!(env_value(&stuck_job, "IS_RESUME"), None);
    operator.stop().await.unwrap();
}

/// Polls until the session's runner Job exists.
async fn job_eventually(client: &Client, session: &str) -> Job {
    let jobs: Api<Job> = Api::namespaced(client.clone(), NS);
    wait_until(&jobs, &format!("{session}-job"), "created", |_| true).await
}

async fn job_named(client: &Client, session: &str) -> Job {
    job(client, session).await.expect("runner Job exists")
}

#[tokio::test]
async fn pod_deleted_while_running_is_recreated() {
    let cluster = cluster().await;
    let client = cluster.client();
    let operator = start_operator(&client);
    create(&client, "fragile", json!({}), json!({})).await;
    let running = wait_phase(&client, "fragile", SessionPhase::Running).await;
    let status = running.status.unwrap();
    let first_pod = status.runner_pod_uid.clone().unwrap();
    let pods = runner_pods(&client, "fragile").await;
    assert_eq!(pods.len(), 1);
    Api::<Pod>::namespaced(client.clone(), NS)
        .delete(&pods[0].name_any(), &DeleteParams::default())
        .await
        .unwrap();
    let again = wait_for(&client, "fragile", "running in a new pod", |s| {
        s.phase() == SessionPhase::Running
            && s.status
                .as_ref()
                .and_then(|st| st.runner_pod_uid.as_deref())
                != Some(first_pod.as_str())
    })
    .await;
    let again_status = again.status.unwrap();
    assert_eq!(again_status.runner_started_at, status.runner_started_at);
    let job = job_named(&client, "fragile").await;
    assert_eq!(env_value(&job, "IS_RESUME").as_deref(), Some("true"));
    operator.stop().await.unwrap();
}

#[tokio::test]
async fn inactivity_stops_the_session() {
    let cluster = cluster().await;
    let client = cluster.client();
    let operator = start_operator(&client);
    create(
        &client,
        "sleepy",
        json!({}),
        json!({"inactivityTimeout": 3}),
    )
    .await;
    let stopped = wait_phase(&client, "sleepy", SessionPhase::Stopped).await;
    assert!(
        stopped.status.as_ref().unwrap().runner_started_at.is_some(),
        "the idler only stops running sessions"
    );
    assert_eq!(
        stopped.status.as_ref().unwrap().stopped_reason,
        Some(StoppedReason::Inactivity)
    );
    assert_eq!(ready_reason(&stopped), "InactivityTimeout");
    operator.stop().await.unwrap();
}

#[tokio::test]
async fn deleting_the_session_removes_everything() {
    let cluster = cluster().await;
    let client = cluster.client();
    let operator = start_operator(&client);
    create(&client, "doomed", json!({}), json!({})).await;
    wait_phase(&client, "doomed", SessionPhase::Running).await;
    sessions(&client)
        .delete("doomed", &DeleteParams::default())
        .await
        .unwrap();
    eventually("every generated object to be gone", || async {
        job(&client, "doomed").await.is_none()
            && runner_pods(&client, "doomed").await.is_empty()
            && gone::<Service>(&client, "session-doomed").await
            && gone::<ServiceAccount>(&client, "ambient-session-doomed").await
            && gone::<Role>(&client, "ambient-session-doomed-role").await
            && gone::<RoleBinding>(&client, "ambient-session-doomed-rb").await
            && gone::<Secret>(&client, "ambient-runner-token-doomed").await
    })
    .await;
    operator.stop().await.unwrap();
}

#[tokio::test]
async fn operator_restart_never_duplicates_the_job() {
    let cluster = cluster().await;
    let client = cluster.client();
    let operator = start_operator(&client);
    create(&client, "steady", json!({}), json!({})).await;
    wait_for(&client, "steady", "creating or running", |s| {
        matches!(s.phase(), SessionPhase::Creating | SessionPhase::Running)
    })
    .await;
    let first = job_named(&client, "steady").await;
    let run_before = sessions(&client)
        .get("steady")
        .await
        .unwrap()
        .status
        .unwrap()
        .start_time;
    operator.stop().await.unwrap();

    let operator = start_operator(&client);
    let running = wait_phase(&client, "steady", SessionPhase::Running).await;
    let after = job_named(&client, "steady").await;
    assert_eq!(first.uid(), after.uid(), "the Job was replaced");
    assert_eq!(
        running.status.as_ref().unwrap().start_time,
        run_before,
        "the restarted operator began a new run"
    );
    let jobs = Api::<Job>::namespaced(client.clone(), NS)
        .list(&ListParams::default().labels("agentic-session=steady"))
        .await
        .unwrap();
    assert_eq!(jobs.items.len(), 1);
    assert_eq!(runner_pods(&client, "steady").await.len(), 1);
    assert!(running.status.unwrap().runner_pod_uid.is_some());
    operator.stop().await.unwrap();
}

#[tokio::test]
async fn unmanaged_namespaces_are_left_alone_and_settled_sessions_cause_no_writes() {
    let cluster = cluster().await;
    let client = cluster.client();
    namespace(&client, "elsewhere", false).await;
    let operator = start_operator(&client);
    let other: Api<AgenticSession> = Api::namespaced(client.clone(), "elsewhere");
    let session: AgenticSession = serde_json::from_value(json!({
        "apiVersion": "vteam.ambient-code/v1alpha1", "kind": "AgenticSession",
        "metadata": {"name": "ignored"}, "spec": {}
    }))
    .unwrap();
    other
        .create(&PostParams::default(), &session)
        .await
        .unwrap();

    create(&client, "settled-running", json!({}), json!({})).await;
    create(
        &client,
        "settled-done",
        json!({"devcluster.io/run-seconds.ambient-code-runner": "1"}),
        json!({}),
    )
    .await;
    create(&client, "settled-stopped", json!({}), json!({})).await;
    create(
        &client,
        "settled-failed",
        json!({"devcluster.io/run-seconds.ambient-code-runner": "1",
               "devcluster.io/exit-code.ambient-code-runner": "1"}),
        json!({}),
    )
    .await;
    wait_phase(&client, "settled-running", SessionPhase::Running).await;
    wait_phase(&client, "settled-done", SessionPhase::Completed).await;
    wait_phase(&client, "settled-stopped", SessionPhase::Running).await;
    annotate(
        &client,
        "settled-stopped",
        json!({ANNOTATION_DESIRED_PHASE: "Stopped"}),
    )
    .await;
    wait_phase(&client, "settled-stopped", SessionPhase::Stopped).await;
    wait_phase(&client, "settled-failed", SessionPhase::Failed).await;
    eventually("the finished runners to be gone", || async {
        let mut gone = true;
        for name in ["settled-done", "settled-failed"] {
            gone &=
                job(&client, name).await.is_none() && runner_pods(&client, name).await.is_empty();
        }
        gone
    })
    .await;
    assert!(other.get("ignored").await.unwrap().status.is_none());

    // Let pending Events and cleanups finish, then force every watch to relist (which
    // reconciles every session again) and count the operator's writes.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = cluster.stats();
    assert!(
        before
            .get("patch", "agenticsessions.vteam.ambient-code/status")
            .count
            > 0,
        "status writes are counted under this key: {:?}",
        before.requests.keys().collect::<Vec<_>>()
    );
    let reconciles_before = operator.reconciles("agenticsession");
    cluster.cluster().reset_stats();
    cluster.expire_resource_versions();
    eventually("every session to be reconciled again", || async {
        operator.reconciles("agenticsession") >= reconciles_before + 4
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let operator_writes = session_writes(&cluster.stats());
    assert!(
        operator_writes.is_empty(),
        "writes during an idle resync: {operator_writes:?}"
    );
    // The stopped session's conditions still say why (later passes leave them alone).
    let stopped = wait_phase(&client, "settled-stopped", SessionPhase::Stopped).await;
    for type_ in ["Ready", "PodCreated", "RunnerStarted"] {
        let c = condition(&stopped, type_).unwrap();
        assert_eq!(c.reason, "UserStopped", "{type_}");
        assert!(!c.message.is_empty(), "{type_} lost its message");
    }
    assert!(other.get("ignored").await.unwrap().status.is_none());
    operator.stop().await.unwrap();

    // A restarted operator (a rollout, a failover) starts from empty caches and reconciles
    // every session once more; over a settled set that writes nothing either.
    cluster.cluster().reset_stats();
    let operator = start_operator(&client);
    eventually(
        "every session to be reconciled by the new operator",
        || async { operator.reconciles("agenticsession") >= 4 },
    )
    .await;
    // The four counted may not include the Running session's (the unmanaged one is counted
    // too): wait for its Secret read before the quiet period.
    eventually("the Running session's token Secret to be read", || async {
        cluster.stats().get("get", "secrets").count >= 1
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    // No write of any kind: no status, no child, no Event (the simulators are settled too).
    let stats = cluster.stats();
    let writes = all_writes(&stats);
    assert!(writes.is_empty(), "writes after a restart: {writes:?}");
    // The one Running session's token Secret is read once: it may have changed while the
    // operator was down, and the watch carries no Secret data. Whether the Secrets or the
    // sessions were listed first does not matter.
    assert_eq!(stats.get("get", "secrets").count, 1);
    operator.stop().await.unwrap();
}

/// Every write in `stats`, whoever made it, with its count.
fn all_writes(stats: &devcluster::StatsSnapshot) -> Vec<(String, u64)> {
    stats
        .requests
        .iter()
        .filter(|(key, v)| {
            v.count > 0
                && ["create ", "update ", "patch ", "delete "]
                    .iter()
                    .any(|verb| key.starts_with(verb))
        })
        .map(|(key, v)| (key.clone(), v.count))
        .collect()
}

/// The writes in `stats` on the kinds the sessions controller writes, with their counts.
fn session_writes(stats: &devcluster::StatsSnapshot) -> BTreeMap<String, u64> {
    all_writes(stats)
        .into_iter()
        .filter(|(key, _)| {
            let resource = key.split_once(' ').map_or("", |(_, resource)| resource);
            resource.starts_with("agenticsessions")
                || resource == "jobs.batch"
                || resource.starts_with("services")
                || resource.starts_with("secrets")
                || resource.starts_with("serviceaccounts")
                || resource.starts_with("roles")
                || resource.starts_with("rolebindings")
        })
        .collect()
}

fn example(file: &str) -> AgenticSession {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/sessions")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[tokio::test]
async fn examples_complete_and_stop() {
    let cluster = cluster().await;
    let client = cluster.client();
    let operator = start_operator(&client);

    let mut completes = example("completes.yaml");
    assert_eq!(completes.namespace().as_deref(), Some(NS));
    completes.metadata.annotations = Some(BTreeMap::from([(
        "devcluster.io/run-seconds.ambient-code-runner".to_owned(),
        "2".to_owned(),
    )]));
    sessions(&client)
        .create(&PostParams::default(), &completes)
        .await
        .unwrap();
    let done = wait_phase(&client, "fix-login-redirect", SessionPhase::Completed).await;
    assert_eq!(ready_reason(&done), "Completed");

    let stopped = example("stopped.yaml");
    sessions(&client)
        .create(&PostParams::default(), &stopped)
        .await
        .unwrap();
    wait_phase(&client, "pairing-session", SessionPhase::Running).await;
    let runner = job_named(&client, "pairing-session").await;
    assert_eq!(
        runner.spec.as_ref().unwrap().active_deadline_seconds,
        None,
        "timeout: 0 means no deadline"
    );
    assert_eq!(env_value(&runner, "LOG_LEVEL").as_deref(), Some("debug"));
    annotate(
        &client,
        "pairing-session",
        json!({ANNOTATION_DESIRED_PHASE: "Stopped"}),
    )
    .await;
    let stopped = wait_phase(&client, "pairing-session", SessionPhase::Stopped).await;
    assert_eq!(
        stopped.status.unwrap().stopped_reason,
        Some(StoppedReason::User)
    );
    operator.stop().await.unwrap();
}

#[tokio::test]
async fn waits_for_the_runner_secret_and_then_starts_fresh() {
    let cluster = cluster().await;
    let client = cluster.client();
    bare_namespace(&client, "no-keys", true).await;
    let operator = start_operator(&client);
    let api: Api<AgenticSession> = Api::namespaced(client.clone(), "no-keys");
    let jobs: Api<Job> = Api::namespaced(client.clone(), "no-keys");
    let session: AgenticSession = serde_json::from_value(json!({
        "apiVersion": "vteam.ambient-code/v1alpha1", "kind": "AgenticSession",
        "metadata": {"name": "early"}, "spec": {"initialPrompt": "first"}
    }))
    .unwrap();
    api.create(&PostParams::default(), &session).await.unwrap();
    let blocked = wait_until(&api, "early", "blocked on the runner secret", |s| {
        condition(s, "SecretsReady").is_some_and(|c| c.reason == "RunnerSecretMissing")
    })
    .await;
    assert_eq!(blocked.phase(), SessionPhase::Pending);
    // `kubectl get agenticsessions -o wide` shows why.
    let columns = support::printed_columns("agenticsessions.vteam.ambient-code", &blocked);
    assert_eq!(
        columns[..2],
        [
            ("Phase".to_owned(), "Pending".to_owned()),
            ("Reason".to_owned(), "RunnerSecretMissing".to_owned())
        ]
    );
    assert!(blocked.status.as_ref().unwrap().start_time.is_some());
    assert!(jobs.get_opt("early-job").await.unwrap().is_none());
    // `kubectl describe` shows why: a Warning Event naming the Secret and its namespace.
    eventually("a RunnerSecretMissing Warning Event", || async {
        support::events_about(&client, "no-keys", "early")
            .await
            .iter()
            .any(|e| {
                e.type_.as_deref() == Some("Warning")
                    && e.reason.as_deref() == Some("RunnerSecretMissing")
                    && e.note
                        .as_deref()
                        .is_some_and(|n| n.contains("no-keys/ambient-runner-secrets"))
            })
    })
    .await;

    runner_secret(&client, "no-keys").await;
    let job = wait_until(&jobs, "early-job", "started", |_| true).await;
    // startTime existed before the runner ever ran; this is still the first run, so the
    // initial prompt is not skipped (upstream set IS_RESUME here).
    assert_eq!(env_value(&job, "IS_RESUME"), None);
    assert_eq!(env_value(&job, "INITIAL_PROMPT").as_deref(), Some("first"));
    operator.stop().await.unwrap();
}

/// A desired-phase annotation that names no phase (here a lowercase `stop`, stored because no
/// admission webhook runs) is ignored: the session starts as usual, and a Warning Event
/// `InvalidDesiredPhase` names the annotation and the allowed values. A valid request then
/// stops it.
#[tokio::test]
async fn an_unknown_desired_phase_is_reported_and_ignored() {
    let cluster = cluster().await;
    let client = cluster.client();
    let operator = start_operator(&client);
    create(
        &client,
        "typo",
        json!({ANNOTATION_DESIRED_PHASE: "stop"}),
        json!({"initialPrompt": "hi"}),
    )
    .await;
    wait_phase(&client, "typo", SessionPhase::Running).await;
    let note = |e: &k8s_openapi::api::events::v1::Event| e.note.clone().unwrap_or_default();
    eventually("an InvalidDesiredPhase Warning Event", || async {
        support::events_about(&client, NS, "typo").await.iter().any(|e| {
            e.type_.as_deref() == Some("Warning")
                && e.reason.as_deref() == Some("InvalidDesiredPhase")
                && note(e).contains(
                    r#"metadata.annotations[ambient-code.io/desired-phase]: unknown value "stop"; allowed: Running, Stopped"#,
                )
        })
    })
    .await;
    // The value is the user's: it is not removed as an acknowledged request would be.
    let running = sessions(&client).get("typo").await.unwrap();
    assert_eq!(running.annotations()[ANNOTATION_DESIRED_PHASE], "stop");
    annotate(
        &client,
        "typo",
        json!({ANNOTATION_DESIRED_PHASE: "Stopped"}),
    )
    .await;
    let stopped = wait_phase(&client, "typo", SessionPhase::Stopped).await;
    assert_eq!(
        stopped.status.unwrap().stopped_reason,
        Some(StoppedReason::User)
    );
    operator.stop().await.unwrap();
}

/// A session stored under a looser schema than this operator's (here: `timeout` is a word)
/// cannot be read as an `AgenticSession`. It fails only its own reconcile, with a Warning
/// Event `InvalidObject` naming the field, and gets no runner; other sessions run as usual.
#[tokio::test]
async fn a_session_that_does_not_read_fails_alone() {
    let dc = cluster().await;
    let client = dc.client();
    let ar = support::api_resource(
        agentic_api::sessions::GROUP,
        agentic_api::sessions::VERSION,
        "AgenticSession",
        "agenticsessions",
    );
    support::loosen_spec_schema_and_create(
        &client,
        "agenticsessions.vteam.ambient-code",
        &ar,
        Some(NS),
        json!({"apiVersion": "vteam.ambient-code/v1alpha1", "kind": "AgenticSession",
            "metadata": {"name": "odd"},
            "spec": {"initialPrompt": "hi", "timeout": "a long while"}}),
    )
    .await;
    create(&client, "fine", json!({}), json!({"initialPrompt": "hi"})).await;
    let op = start_operator(&client);
    wait_phase(&client, "fine", SessionPhase::Running).await;
    let note = support::invalid_object_note(&client, NS, "odd").await;
    assert!(
        note.contains("odd") && note.contains("spec.timeout: invalid type"),
        "{note}"
    );
    assert!(job(&client, "odd").await.is_none(), "no runner for it");
    let stored = support::get_object(&client, &ar, NS, "odd").await.unwrap();
    assert!(stored.get("status").is_none_or(Value::is_null), "{stored}");
    op.stop().await.unwrap();
}

/// `ProjectSettings` stored under a looser CRD schema. A field sessions do not read (a role
/// outside `admin`/`edit`/`view`) holds up nothing. One they read that does not decode (a
/// timeout written as text) fails only the sessions of its namespace, with a Warning Event
/// naming the object and the field and no runner; fixing the object lets them start.
#[tokio::test]
async fn a_project_settings_that_does_not_read_holds_up_only_its_namespace() {
    let dc = cluster().await;
    let client = dc.client();
    namespace(&client, "team-b", true).await;
    let ar = support::api_resource(
        agentic_api::sessions::GROUP,
        agentic_api::sessions::VERSION,
        "ProjectSettings",
        "projectsettings",
    );
    let settings = |spec: Value| {
        json!({"apiVersion": "vteam.ambient-code/v1alpha1", "kind": "ProjectSettings",
            "metadata": {"name": "projectsettings"}, "spec": spec})
    };
    let crd = "projectsettings.vteam.ambient-code";
    support::loosen_spec_schema_and_create(
        &client,
        crd,
        &ar,
        Some(NS),
        settings(json!({"groupAccess": [{"groupName": "devs", "role": "owner"}]})),
    )
    .await;
    support::loosen_spec_schema_and_create(
        &client,
        crd,
        &ar,
        Some("team-b"),
        settings(json!({"groupAccess": [], "inactivityTimeoutSeconds": "soon"})),
    )
    .await;
    create(&client, "fine", json!({}), json!({"initialPrompt": "hi"})).await;
    let team_b = Api::<AgenticSession>::namespaced(client.clone(), "team-b");
    let held: AgenticSession = serde_json::from_value(json!({
        "apiVersion": "vteam.ambient-code/v1alpha1", "kind": "AgenticSession",
        "metadata": {"name": "held"}, "spec": {"initialPrompt": "hi"},
    }))
    .unwrap();
    team_b.create(&PostParams::default(), &held).await.unwrap();
    let op = start_operator(&client);

    wait_phase(&client, "fine", SessionPhase::Running).await;
    let event = support::wait_for("an InvalidProjectSettings Event on team-b/held", || async {
        support::events_about(&client, "team-b", "held")
            .await
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("InvalidProjectSettings"))
    })
    .await;
    assert_eq!(event.type_.as_deref(), Some("Warning"), "{event:?}");
    let note = event.note.unwrap_or_default();
    assert!(
        note.contains("ProjectSettings team-b/projectsettings")
            && note.contains("spec.inactivityTimeoutSeconds: invalid type: string \"soon\""),
        "{note}"
    );
    let jobs = Api::<Job>::namespaced(client.clone(), "team-b");
    assert!(
        jobs.get_opt("held-job").await.unwrap().is_none(),
        "no runner yet"
    );

    Api::<DynamicObject>::namespaced_with(client.clone(), "team-b", &ar)
        .patch(
            "projectsettings",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"inactivityTimeoutSeconds": 3600}})),
        )
        .await
        .unwrap();
    support::wait_for(
        "team-b/held to run once its ProjectSettings reads",
        || async {
            let s = team_b.get("held").await.ok()?;
            (s.status.as_ref().and_then(|st| st.phase) == Some(SessionPhase::Running)).then_some(())
        },
    )
    .await;
    op.stop().await.unwrap();
}
