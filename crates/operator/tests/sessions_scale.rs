//! The `AgenticSession` controller while its caches are behind its own writes: the runner
//! Job watch is held (the dev cluster pauses the operator's Job watch request), so the Job
//! cache does not show the Jobs the controller creates. Sessions must
//! still start once and reach `Running` from the runner pods they see, without restarting
//! runs or rewriting their status in a loop, and stay put when the Job watch catches up.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use agentic_api::sessions::{AgenticSession, SessionPhase};
use devcluster::{FaultConfig, simulators::Simulators};
use k8s_openapi::api::batch::v1::Job;
use kube::{
    Api, ResourceExt,
    api::{ListParams, PostParams},
};
use serde_json::json;
use support::{
    MANAGED, Operator, Setup, eventually, runner_secret, scripted_runner_pods, settings, wait_for,
};

/// Test namespace (labelled as an ambient-code project).
const NS: &str = "scale";
/// Sessions created while the Job watch is held.
const SESSIONS: usize = 5;
/// Status writes a session may need from creation to `Running` (accepted and started,
/// runner pod scheduled, waiting, running) with room to spare; the loop this guards
/// against wrote hundreds.
const MAX_STATUS_WRITES_PER_SESSION: u64 = 8;

fn phase(s: &AgenticSession) -> Option<SessionPhase> {
    s.status.as_ref().and_then(|st| st.phase)
}

async fn all_running(api: &Api<AgenticSession>) -> Option<Vec<AgenticSession>> {
    let list: Vec<AgenticSession> = api
        .list(&ListParams::default())
        .await
        .ok()?
        .items
        .into_iter()
        .filter(|s| s.name_any().starts_with("s-"))
        .collect();
    (list.len() == SESSIONS && list.iter().all(|s| phase(s) == Some(SessionPhase::Running)))
        .then_some(list)
}

async fn create(sessions: &Api<AgenticSession>, name: &str) {
    let session: AgenticSession = serde_json::from_value(json!({
        "apiVersion": "vteam.ambient-code/v1alpha1", "kind": "AgenticSession",
        "metadata": {"name": name},
        "spec": {"initialPrompt": "hello"},
    }))
    .unwrap();
    sessions
        .create(&PostParams::default(), &session)
        .await
        .unwrap();
}

fn status_writes(cluster: &devcluster::DevCluster) -> u64 {
    cluster
        .stats()
        .get("patch", "agenticsessions.vteam.ambient-code/status")
        .count
}

fn job_applies(cluster: &devcluster::DevCluster) -> u64 {
    cluster.stats().get("patch", "jobs.batch").count
}

#[tokio::test]
async fn sessions_start_once_and_run_while_the_job_cache_is_behind() {
    let cluster = Setup::new()
        .rbac(true)
        .admission(scripted_runner_pods())
        .crds(agentic_api::sessions::GROUP)
        .namespace(NS, &[MANAGED])
        .simulators(Simulators::all())
        .start()
        .await;
    let client = cluster.client();
    runner_secret(&client, NS).await;
    eventually("the Job simulator to watch Jobs", || async {
        cluster.stats().get("watch", "jobs.batch").count > 0
    })
    .await;
    // Hold the Job watch: every Job watch request from now on waits. The Job simulator's
    // watch is already open; the operator lists the Jobs (an empty cache, synced) and its
    // watch then waits, so its Job cache shows none of the Jobs it creates.
    cluster
        .set_faults(FaultConfig {
            verbs: vec!["watch".into()],
            resources: vec!["jobs".into()],
            paused: true,
            ..FaultConfig::default()
        })
        .unwrap();
    let operator = Operator::start(client.clone(), settings("sessions-scale", |_| {}));
    let sessions: Api<AgenticSession> = Api::namespaced(client.clone(), NS);
    let jobs: Api<Job> = Api::namespaced(client.clone(), NS);
    let writes_before = status_writes(&cluster);
    let applies_before = job_applies(&cluster);

    for i in 0..SESSIONS {
        create(&sessions, &format!("s-{i}")).await;
    }
    // The runner pods (their watch is not held) show the runs starting and running.
    let running = wait_for("every session to run with the Job watch held", || {
        all_running(&sessions)
    })
    .await;

    // One run each: one Job apply per session, the run the Job carries is the recorded one,
    // and the status was written a bounded number of times.
    let applies = job_applies(&cluster) - applies_before;
    assert_eq!(applies, SESSIONS as u64, "Job applies: one per session");
    for s in &running {
        let job = jobs.get(&format!("{}-job", s.name_any())).await.unwrap();
        let started = serde_json::to_value(&s.status.as_ref().unwrap().start_time).unwrap();
        assert_eq!(
            job.annotations().get("ambient-code.io/run-started-at"),
            started.as_str().map(str::to_owned).as_ref(),
            "{} kept its first run",
            s.name_any()
        );
    }
    let writes = status_writes(&cluster) - writes_before;
    assert!(
        writes <= SESSIONS as u64 * MAX_STATUS_WRITES_PER_SESSION,
        "{writes} status writes for {SESSIONS} sessions"
    );
    assert_eq!(
        operator.metric(
            "ambient_session_phase_transitions",
            &[("from_phase", "Creating"), ("to_phase", "Pending")]
        ),
        0,
        "no run was taken as lost"
    );

    // The Job watch catches up: the sessions stay as they are (the operator's Job cache now
    // shows the Jobs it remembered, and nothing is written for them).
    cluster.clear_faults();
    create(&sessions, "after-catch-up").await;
    wait_for("a session created after the catch-up to run", || async {
        sessions
            .get_opt("after-catch-up")
            .await
            .ok()
            .flatten()
            .filter(|s| phase(s) == Some(SessionPhase::Running))
    })
    .await;
    for s in &running {
        let now = sessions.get(&s.name_any()).await.unwrap();
        assert_eq!(phase(&now), Some(SessionPhase::Running));
        assert_eq!(
            now.status.as_ref().unwrap().start_time,
            s.status.as_ref().unwrap().start_time,
            "{} still on its first run",
            s.name_any()
        );
    }
    assert_eq!(
        job_applies(&cluster) - applies_before,
        SESSIONS as u64 + 1,
        "one more Job, for the session created after the catch-up"
    );

    operator.stop().await.unwrap();
    cluster.shutdown().await;
}
