//! Smoke tests of `bench operator`: three objects of each family against debug builds of the
//! dev cluster and the operator. Asserts counts and attribution, never speed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bench::process::{target_dir, workspace_root};
use bench::suites::operator::{Config, Family, run_one, targets};

fn debug_binaries() -> (std::path::PathBuf, std::path::PathBuf) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = std::process::Command::new(cargo)
        .args([
            "build",
            "-p",
            "devcluster",
            "--bin",
            "devcluster",
            "-p",
            "agentic-operator",
            "--bin",
            "agentic-operator",
        ])
        .current_dir(workspace_root())
        .status()
        .expect("cargo runs");
    assert!(status.success(), "cargo build of the debug binaries failed");
    let debug = target_dir().join("debug");
    (debug.join("devcluster"), debug.join("agentic-operator"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_sessions_settle_and_the_relist_writes_nothing() {
    let (server_bin, operator_bin) = debug_binaries();
    let work_dir = std::env::temp_dir().join(format!("bench-operator-{}", std::process::id()));
    let cfg = Config {
        families: vec![Family::Sessions],
        sizes: Some(vec![3]),
        concurrency: 2,
        settle_timeout_per_1000_s: 120,
        idle_s: 2,
        server_bin,
        operator_bin,
        work_dir: work_dir.clone(),
        operator_log: "warn".into(),
    };
    let r = run_one(Family::Sessions, 3, &cfg).await.unwrap();
    assert_eq!(r.objects, 3);
    // The bench's own creates are attributed to the bench, not the operator.
    assert_eq!(
        r.burst.bench.by_key["create agenticsessions.vteam.ambient-code"],
        3
    );
    assert!(
        !r.burst
            .operator
            .by_key
            .contains_key("create agenticsessions.vteam.ambient-code")
    );
    // One Job per session, written by the operator; its pods are created by the simulators.
    assert_eq!(r.burst.operator.by_key["patch jobs.batch"], 3);
    assert_eq!(r.burst.simulators.by_key["create pods"], 3);
    // The scheduler binds the runner pods (a patch of `spec.nodeName`): counted by the proxy
    // as the simulators', never as the operator's.
    assert!(r.burst.simulators.by_key["patch pods"] >= 3);
    assert!(!r.burst.operator.by_key.contains_key("patch pods"));
    // The raw ceiling is measured with as many writes as the operator issued.
    assert_eq!(r.raw_writes, r.burst.operator.writes);
    assert!(r.simulators_usage.rss_max_mib > 0.0);
    assert!(r.operator_writes_per_object >= 2.0);
    assert!(r.operator_usage.rss_max_mib > 0.0);
    // The forced relist made the operator list again, and it wrote nothing.
    assert!(r.idle.operator.by_verb.get("list").copied().unwrap_or(0) > 0);
    assert_eq!(r.idle.operator.writes, 0, "{:?}", r.idle.operator.by_key);
    // The restarted operator listed everything again, reconciled every session and wrote
    // nothing.
    assert!(r.restart.operator.by_verb.get("list").copied().unwrap_or(0) > 0);
    assert_eq!(
        r.restart.operator.writes, 0,
        "{:?}",
        r.restart.operator.by_key
    );
    assert!(r.restart_reconciled_s > 0.0);
    assert!(r.restart_usage.rss_max_mib > 0.0);
    let t = targets(std::slice::from_ref(&r));
    assert_eq!(t.len(), 3, "no RSS target below 10,000 sessions");
    let _ = std::fs::remove_dir_all(work_dir);
}

fn config(family: Family) -> (Config, std::path::PathBuf) {
    let (server_bin, operator_bin) = debug_binaries();
    let work_dir = std::env::temp_dir().join(format!(
        "bench-operator-{}-{}",
        family.name(),
        std::process::id()
    ));
    let cfg = Config {
        families: vec![family],
        sizes: Some(vec![3]),
        concurrency: 2,
        settle_timeout_per_1000_s: 120,
        idle_s: 2,
        server_bin,
        operator_bin,
        work_dir: work_dir.clone(),
        operator_log: "warn".into(),
    };
    (cfg, work_dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_evaluations_settle_with_their_children_counted_as_the_operators() {
    let (cfg, work_dir) = config(Family::Evaluations);
    let r = run_one(Family::Evaluations, 3, &cfg).await.unwrap();
    assert_eq!(
        r.burst.bench.by_key["create experiments.testbench.agentic-layer.ai"],
        3
    );
    // One ConfigMap, TestWorkflow and TestTrigger per Experiment, all the operator's.
    for key in [
        "patch configmaps",
        "patch testworkflows.testworkflows.testkube.io",
        "patch testtriggers.tests.testkube.io",
    ] {
        assert_eq!(r.burst.operator.by_key[key], 3, "{key}");
    }
    assert!(r.burst.operator.by_key["patch experiments.testbench.agentic-layer.ai/status"] >= 3);
    // The simulators run apart and are counted by the proxy; their CPU is sampled.
    assert!(r.simulators_usage.rss_max_mib > 0.0);
    assert_eq!(r.idle.operator.writes, 0, "{:?}", r.idle.operator.by_key);
    assert_eq!(
        r.restart.operator.writes, 0,
        "{:?}",
        r.restart.operator.by_key
    );
    let _ = std::fs::remove_dir_all(work_dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_labs_complete_and_the_simulators_writes_are_counted_apart() {
    let (cfg, work_dir) = config(Family::Labs);
    let r = run_one(Family::Labs, 3, &cfg).await.unwrap();
    assert_eq!(
        r.burst.bench.by_key["create experiments.experiments.illm.io"],
        3
    );
    // Each Experiment has one vcluster target: the operator applies one claim, Crossplane
    // (counted by the proxy) creates its connection Secret and writes its status.
    assert_eq!(r.burst.simulators.by_key["create secrets"], 3);
    assert!(r.burst.simulators.by_key["patch vclusters.illm.io/status"] >= 3);
    assert!(!r.burst.operator.by_key.contains_key("create secrets"));
    assert!(
        !r.burst
            .operator
            .by_key
            .contains_key("patch vclusters.illm.io/status")
    );
    assert!(
        r.burst.operator.by_key["patch vclusters.illm.io"] >= 3,
        "operator {:?}, simulators {:?}",
        r.burst.operator.by_key,
        r.burst.simulators.by_key
    );
    // One Workflow per Experiment, created by the operator; Argo Workflows' status writes
    // are the simulators'.
    assert_eq!(r.burst.operator.by_key["create workflows.argoproj.io"], 3);
    assert!(r.burst.simulators.by_key["patch workflows.argoproj.io"] >= 3);
    assert!(r.simulators_usage.rss_max_mib > 0.0);
    assert_eq!(r.idle.operator.writes, 0, "{:?}", r.idle.operator.by_key);
    assert_eq!(
        r.restart.operator.writes, 0,
        "{:?}",
        r.restart.operator.by_key
    );
    let _ = std::fs::remove_dir_all(work_dir);
}
