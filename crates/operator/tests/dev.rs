//! `agentic-operator dev`: the library entry point brings every bundled example to its
//! expected settled state against the in-memory cluster, the kubeconfig it writes works for
//! kube clients (and for credential-less clients such as kubectl over HTTP), `--no-examples`
//! starts empty, the binary with `--exit-when-settled` runs the whole lifecycle and exits 0,
//! and a flaky period of the API server changes neither the examples' outcome nor the objects
//! they leave behind.

#![cfg(feature = "dev")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::time::Duration;

use agentic_api::{labs::Experiment as Lab, sessions::AgenticSession};
use agentic_operator::dev::{DevArgs, DevEnvironment, expected_states};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{Api, Client, api::ListParams};

/// Generous deadline for the examples to settle.
const DEADLINE: Duration = Duration::from_mins(3);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn examples_settle_and_kubeconfig_works() {
    let env = DevEnvironment::start(&DevArgs::default()).await.unwrap();
    let expected = expected_states();
    assert_eq!(
        expected.len(),
        5,
        "two sessions, two evaluations, one lab: {expected:?}"
    );
    assert_eq!(env.tracked().len(), expected.len());

    let rows = env.wait_settled(DEADLINE, |_| {}).await.unwrap();
    let mut phases = std::collections::BTreeMap::new();
    for row in &rows {
        assert!(row.settled, "{}", row.describe());
        phases.insert(format!("{}/{}", row.namespace, row.name), row.phase.clone());
    }
    assert_eq!(phases["team-a/fix-login-redirect"], "Completed");
    assert_eq!(phases["team-a/pairing-session"], "Stopped");
    assert_eq!(phases["experiments/gateway-tutorial"], "Complete");
    for name in ["testkube/weather", "testkube/weather-dataset"] {
        let row = rows
            .iter()
            .find(|r| format!("{}/{}", r.namespace, r.name) == name)
            .unwrap();
        assert!(row.conditions.contains("Ready=True"), "{}", row.describe());
    }

    // A client built from the written kubeconfig sees the same objects.
    let kubeconfig = kube::config::Kubeconfig::read_from(env.kubeconfig_path()).unwrap();
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    let client = Client::try_from(config).unwrap();
    let sessions: Vec<AgenticSession> = Api::all(client.clone())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    let mut names: Vec<String> = sessions
        .iter()
        .map(|s| s.metadata.name.clone().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["fix-login-redirect", "pairing-session"]);
    let labs: Api<Lab> = Api::namespaced(client, "experiments");
    assert_eq!(
        labs.get("gateway-tutorial").await.unwrap().phase().as_str(),
        "Complete"
    );

    // kubectl sends no credentials over plain HTTP: such a client must still be the admin.
    let anonymous = Client::try_from(kube::Config::new(env.url().parse().unwrap())).unwrap();
    let listed: Vec<AgenticSession> = Api::all(anonymous)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    assert_eq!(listed.len(), 2);

    env.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_examples_starts_with_crds_only() {
    let args = DevArgs {
        no_examples: true,
        ..DevArgs::default()
    };
    let env = DevEnvironment::start(&args).await.unwrap();
    assert!(env.tracked().is_empty());
    let crds: Vec<String> = Api::<CustomResourceDefinition>::all(env.client())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect();
    for wanted in [
        "agenticsessions.vteam.ambient-code",
        "experiments.testbench.agentic-layer.ai",
        "experiments.experiments.illm.io",
        "testworkflows.testworkflows.testkube.io",
        "applications.argoproj.io",
        "workflows.argoproj.io",
        "agents.runtime.agentic-layer.ai",
    ] {
        assert!(
            crds.iter().any(|c| c == wanted),
            "{wanted} missing: {crds:?}"
        );
    }
    let sessions: Vec<AgenticSession> = Api::all(env.client())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    assert!(sessions.is_empty());
    env.shutdown().await.unwrap();
}

#[test]
fn binary_runs_the_lifecycle_and_exits_when_settled() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_agentic-operator"))
        .args(["dev", "--exit-when-settled", "--settle-timeout", "3m"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "exit {:?}\nstdout:\n{stdout}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("kubeconfig:"), "{stdout}");
    assert!(stdout.contains("settled: 5 objects"), "{stdout}");
    // Not a terminal: plain lines, no cursor movement.
    assert!(!stdout.contains('\u{1b}'), "{stdout}");
    assert!(
        stdout.contains("sessions AgenticSession team-a/pairing-session: phase Stopped"),
        "{stdout}"
    );
}

#[test]
fn binary_fails_when_the_examples_cannot_settle_in_time() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_agentic-operator"))
        .args(["dev", "--exit-when-settled", "--settle-timeout", "1ms"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not settled within"), "{stderr}");
}

#[test]
fn binary_keeps_serving_until_interrupted_and_then_exits_0() {
    use std::io::{BufRead, BufReader};
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_agentic-operator"))
        .args(["dev", "--no-examples"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let serving = line.contains("press Ctrl-C");
        seen.push(line);
        if serving {
            break;
        }
    }
    assert!(
        seen.iter().any(|l| l.contains("settled: 0 objects")),
        "{seen:?}"
    );
    let killed = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let rest: Vec<String> = lines.map(Result::unwrap).collect();
    assert!(rest.iter().any(|l| l.contains("stopping")), "{rest:?}");
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}

/// Every YAML file under `dir`, relative to `base`, sorted.
fn yaml_files(base: &std::path::Path, dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(yaml_files(base, &path));
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(
                path.strip_prefix(base)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
            );
        }
    }
    out.sort();
    out
}

#[test]
fn every_example_and_fixture_is_embedded() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut embedded: Vec<String> = agentic_operator::dev::embedded::EXAMPLES
        .iter()
        .map(|(path, _)| (*path).to_owned())
        .collect();
    embedded.sort();
    assert_eq!(
        embedded,
        yaml_files(&root, &root.join("examples")),
        "add new example files to crates/operator/src/dev/embedded.rs"
    );
    let fixtures = root.join("crates/devcluster/fixtures");
    let mut crds: Vec<String> = agentic_operator::dev::embedded::FOREIGN_CRDS
        .iter()
        .map(|(path, _)| (*path).to_owned())
        .collect();
    crds.sort();
    assert_eq!(
        crds,
        yaml_files(&fixtures, &fixtures),
        "add new fixtures to crates/operator/src/dev/embedded.rs"
    );
}

/// Names the examples leave in the cluster once settled, by `group/resource namespace`: a
/// generated name's random suffix is replaced by `*`. Events and Leases are left out, since
/// how many there are depends on timing and retries, and so are objects being deleted: a
/// deleted runner Job's pod takes a while to terminate, so whether a quiet second still
/// shows it depends on timing too.
fn inventory(env: &DevEnvironment) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    let cluster = env.cluster().cluster();
    for (group, resource) in cluster.resources() {
        if matches!(resource.as_str(), "events" | "leases") {
            continue;
        }
        for o in cluster.list(&group, &resource) {
            let meta = &o["metadata"];
            if !meta["deletionTimestamp"].is_null() {
                continue;
            }
            let name = match meta["generateName"].as_str() {
                Some(prefix) if !prefix.is_empty() => format!("{prefix}*"),
                _ => meta["name"].as_str().unwrap_or_default().to_owned(),
            };
            let key = format!(
                "{group}/{resource} {}",
                meta["namespace"].as_str().unwrap_or_default()
            );
            out.entry(key).or_insert_with(Vec::new).push(name);
        }
    }
    for names in out.values_mut() {
        names.sort();
    }
    out
}

/// Waits until the lab example has removed its children (`status.resourcesCleaned`), which
/// it does after reaching `Complete`. Read from the store, so injected faults do not apply.
async fn wait_lab_cleaned(env: &DevEnvironment) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let lab = env.cluster().cluster().get(
            "experiments.illm.io",
            "experiments",
            "experiments",
            "gateway-tutorial",
        );
        if lab.is_some_and(|l| l["status"]["resourcesCleaned"] == true) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the lab example did not clean up"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Each example's `phase conditions` once settled.
fn outcomes(rows: &[agentic_operator::dev::Row]) -> BTreeMap<String, String> {
    rows.iter()
        .map(|r| {
            (
                format!("{}/{}", r.namespace, r.name),
                format!("{} {}", r.phase, r.conditions),
            )
        })
        .collect()
}

/// Polls the inventory until it stays the same over one poll interval: what the examples
/// leave once the cluster is quiet.
async fn quiet_inventory(env: &DevEnvironment) -> BTreeMap<String, Vec<String>> {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let mut last = inventory(env);
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = inventory(env);
        if now == last {
            return now;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the cluster did not come to rest: {now:?}"
        );
        last = now;
    }
}

/// How long the API server fails requests in the flaky run: about the time the examples take
/// to settle on a healthy server, so most of their writes happen under faults.
const FAULT_WINDOW: Duration = Duration::from_secs(10);

/// A flaky period of the API server (30 % of all requests, watches included, answered 500 or
/// 503 while the examples run) neither loses nor duplicates anything: once it is over, every
/// example reaches the state and leaves behind the objects it does on a healthy server, and
/// the operator's own status writes were among the refused requests. (The faults end, and the
/// flaky run caps the per-object backoff, 5 ms doubling up to 1000 s as controller-runtime's,
/// at 20 s with `max_retry_backoff`, so the test does not depend on how far the backoff grows
/// while every reconcile keeps failing.)
/// Runs the examples on a healthy cluster with one operator: each example's outcome and the
/// objects left once everything is quiet, for the disturbed runs to be compared with.
async fn undisturbed_run() -> (BTreeMap<String, String>, BTreeMap<String, Vec<String>>) {
    let healthy = DevEnvironment::start(&DevArgs::default()).await.unwrap();
    let rows = healthy.wait_settled(DEADLINE, |_| {}).await.unwrap();
    let expected_outcomes = outcomes(&rows);
    wait_lab_cleaned(&healthy).await;
    let expected_objects = quiet_inventory(&healthy).await;
    healthy.shutdown().await.unwrap();
    (expected_outcomes, expected_objects)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn examples_settle_the_same_after_a_flaky_api_server() {
    let (expected_outcomes, expected_objects) = undisturbed_run().await;

    // Every reconcile that fails under the faults doubles its object's retry delay, those
    // started by watch events too: on a slow machine a session can reach 16 failures in a row
    // (a retry 150 s away) before the faults end. The cap keeps the next attempt within the
    // settle deadline; what is tested is that nothing is lost or duplicated.
    let flaky = DevEnvironment::start(&DevArgs {
        max_retry_backoff: Duration::from_secs(20),
        ..DevArgs::default()
    })
    .await
    .unwrap();
    flaky
        .cluster()
        .set_faults(devcluster::FaultConfig {
            error_rate: 0.3,
            error_codes: vec![500, 503],
            ..devcluster::FaultConfig::default()
        })
        .unwrap();
    tokio::time::sleep(FAULT_WINDOW).await;
    // The faults last until at least one of the operator's status writes has been refused (a
    // slow start, with its lists failing too, may have written little within the window).
    let refused = || -> Vec<(&str, u64)> {
        let stats = flaky.cluster().stats();
        [
            "patch agenticsessions.vteam.ambient-code/status",
            "patch experiments.testbench.agentic-layer.ai/status",
            "patch experiments.experiments.illm.io/status",
        ]
        .into_iter()
        .map(|k| (k, stats.requests.get(k).map_or(0, |s| s.errors)))
        .collect()
    };
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while refused().iter().map(|(_, n)| n).sum::<u64>() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no status write of the operator was refused: {:?}",
            refused()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    flaky.cluster().clear_faults();
    let rows = flaky.wait_settled(DEADLINE, |_| {}).await.unwrap();
    assert_eq!(outcomes(&rows), expected_outcomes);
    wait_lab_cleaned(&flaky).await;
    assert_eq!(quiet_inventory(&flaky).await, expected_objects);
    flaky.shutdown().await.unwrap();
}

/// When the operator is restarted in the middle of its work, time after time while the
/// examples run, nothing is lost or duplicated: every example ends as on an undisturbed run
/// and leaves the same objects behind. Two in three restarts are crashes (the old operator's
/// reconciles are dropped wherever they are, nothing drains); the others are stops as on
/// SIGTERM. Each new operator starts with empty caches and lists everything again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn examples_settle_the_same_across_operator_restarts() {
    let (expected_outcomes, expected_objects) = undisturbed_run().await;

    let mut env = DevEnvironment::start(&DevArgs::default()).await.unwrap();
    // Irregular gaps, short at first (accepting, provisioning, starting runners), longer
    // later (runs finishing, the lab's workflow and its clean-up).
    let gaps_ms = [
        150, 300, 450, 700, 250, 900, 1200, 600, 1500, 2000, 800, 2500,
    ];
    let mut unsettled_at_restart = 0;
    for (i, gap) in gaps_ms.into_iter().enumerate() {
        tokio::time::sleep(Duration::from_millis(gap)).await;
        // Reading the rows also stops the interactive session once it runs.
        let rows = env.observe().await;
        if rows.iter().any(|r| !r.settled) {
            unsettled_at_restart += 1;
        }
        env.restart_operator(i % 3 == 2).await.unwrap();
    }
    assert!(
        unsettled_at_restart >= 3,
        "the restarts came too late to interrupt any work ({unsettled_at_restart} before settling)"
    );
    let rows = env.wait_settled(DEADLINE, |_| {}).await.unwrap();
    assert_eq!(outcomes(&rows), expected_outcomes);
    wait_lab_cleaned(&env).await;
    assert_eq!(quiet_inventory(&env).await, expected_objects);
    env.shutdown().await.unwrap();
}
