//! Memory of the session controller's compact caches: 100,000 runner Jobs, pods and token
//! Secrets as the watches deliver them, measured by the growth of this process's resident
//! memory (the test binary holds this one test, so nothing else allocates meanwhile).
//! kube-runtime's reflector store needed ~3.7 KiB for one session's three objects; the
//! compact entries must stay far below.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use agentic_operator::{
    runtime::compact::{Applier, CompactStore},
    sessions::session::cached::{
        JobEntry, PodEntry, RunnerJob, RunnerPod, TokenEntry, TokenSecret,
    },
};
use kube::runtime::watcher;
use serde_json::json;

const N: usize = 100_000;

fn resident_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

fn uid(kind: u8, i: usize) -> String {
    format!("{kind:02x}6e2b7a-1c2d-4e5f-8a9b-{i:012x}")
}

fn job(i: usize) -> RunnerJob {
    serde_json::from_value(json!({"metadata": {
        "name": format!("session-{i:06}-job"), "namespace": "team-a", "uid": uid(1, i),
        "resourceVersion": format!("{}", 100_000 + i),
        "labels": {"agentic-session": format!("session-{i:06}"), "app": "ambient-code-runner"},
        "annotations": {"ambient-code.io/run-started-at": "2026-11-23T09:17:58Z"},
        "ownerReferences": [{"apiVersion": "vteam.ambient-code/v1alpha1",
            "kind": "AgenticSession", "name": format!("session-{i:06}"), "uid": uid(2, i),
            "controller": true, "blockOwnerDeletion": true}]},
        "status": {"active": 1, "ready": 1}}))
    .unwrap()
}

fn pod(i: usize) -> RunnerPod {
    serde_json::from_value(json!({"metadata": {
        "name": format!("session-{i:06}-job-x7k2p"), "namespace": "team-a", "uid": uid(3, i),
        "resourceVersion": format!("{}", 200_000 + i),
        "labels": {"agentic-session": format!("session-{i:06}"), "app": "ambient-code-runner"},
        "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job",
            "name": format!("session-{i:06}-job"), "uid": uid(1, i),
            "controller": true, "blockOwnerDeletion": true}]},
        "spec": {"nodeName": "node-a"},
        "status": {"phase": "Running",
            "conditions": [{"type": "PodScheduled", "status": "True"}],
            "containerStatuses": [{"name": "ambient-code-runner", "restartCount": 0,
                "image": "runner:1", "ready": true,
                "state": {"running": {"startedAt": "2026-11-23T09:18:02Z"}}}]}}))
    .unwrap()
}

fn token(i: usize) -> TokenSecret {
    serde_json::from_value(json!({"metadata": {
        "name": format!("ambient-runner-token-session-{i:06}"), "namespace": "team-a",
        "uid": uid(4, i), "resourceVersion": format!("{}", 300_000 + i),
        "labels": {"app": "ambient-runner-token"},
        "annotations": {"ambient-code.io/token-refreshed-at": "2026-11-23T09:18:00Z"}}}))
    .unwrap()
}

#[test]
fn a_session_s_runner_objects_take_less_than_a_kibibyte_and_a_half_of_cache() {
    let jobs = CompactStore::<JobEntry>::new();
    let pods = CompactStore::<PodEntry>::new();
    let tokens = CompactStore::<TokenEntry>::new();
    let (mut to_jobs, mut to_pods, mut to_tokens) = (
        Applier::new(jobs.clone()),
        Applier::new(pods.clone()),
        Applier::new(tokens.clone()),
    );
    let before = resident_bytes();
    for i in 0..N {
        to_jobs.apply(watcher::Event::Apply(job(i)));
        to_pods.apply(watcher::Event::Apply(pod(i)));
        to_tokens.apply(watcher::Event::Apply(token(i)));
    }
    let per_session = resident_bytes().saturating_sub(before) / N;
    assert_eq!((jobs.len(), pods.len(), tokens.len()), (N, N, N));
    assert_eq!(pods.group("team-a", "session-000042").len(), 1);
    eprintln!("compact caches: {per_session} bytes per session");
    assert!(
        per_session < 1536,
        "a session's Job, pod and token Secret take {per_session} bytes of cache"
    );
}
