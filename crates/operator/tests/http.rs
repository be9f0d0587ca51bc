//! `/metrics`, `/healthz` and `/readyz` through the real axum routers.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use agentic_operator::runtime::{
    metrics::{Metrics, ReconcileResult},
    probes::{HealthState, Role, metrics_router, probe_router, serve},
};
use axum::{Router, http::StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// A server for `router` on a free loopback port, stopped when the token is dropped.
async fn start(router: Router) -> (std::net::SocketAddr, tokio_util::sync::DropGuard) {
    let stop = CancellationToken::new();
    let (addr, _) = serve("127.0.0.1:0".parse().unwrap(), router, stop.clone())
        .await
        .unwrap();
    (addr, stop.drop_guard())
}

/// `GET path` over plain HTTP/1.1: status, body and `Content-Type`.
async fn get(addr: &std::net::SocketAddr, path: &str) -> (StatusCode, String, Option<String>) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status: u16 = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let content_type = head.lines().find_map(|l| {
        l.to_ascii_lowercase()
            .strip_prefix("content-type: ")
            .map(str::to_owned)
    });
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    (StatusCode::from_u16(status).unwrap(), body, content_type)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n").unwrap();
        let size = usize::from_str_radix(size.trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
}

/// The `# TYPE` of every metric family in an exposition.
fn types(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| {
            let mut parts = l.split_whitespace();
            (
                parts.next().unwrap().to_owned(),
                parts.next().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn metrics_endpoint_uses_controller_runtime_names_and_types() {
    let metrics = Metrics::new();
    let c = metrics.controllers();
    c.register_controller("agenticsession", 10);
    c.observe_reconcile(
        "agenticsession",
        ReconcileResult::Success,
        Duration::from_millis(30),
    );
    c.inc_panics("agenticsession");
    c.inc_retries("agenticsession");
    c.set_queue_depth("agenticsession", 3);
    c.set_leader("agentic-operator-leader", true);
    let (server, _stop) = start(metrics_router(metrics.clone())).await;

    let (status, body, content_type) = get(&server, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        content_type
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    assert!(body.ends_with("# EOF\n"), "{body}");

    let types = types(&body);
    let expected = [
        ("controller_runtime_reconcile", "counter"),
        ("controller_runtime_reconcile_errors", "counter"),
        ("controller_runtime_reconcile_panics", "counter"),
        ("controller_runtime_reconcile_time_seconds", "histogram"),
        ("controller_runtime_active_workers", "gauge"),
        ("controller_runtime_max_concurrent_reconciles", "gauge"),
        ("workqueue_depth", "gauge"),
        ("workqueue_retries", "counter"),
        ("workqueue_work_duration_seconds", "histogram"),
        ("workqueue_unfinished_work_seconds", "gauge"),
        ("workqueue_longest_running_processor_seconds", "gauge"),
        ("leader_election_master_status", "gauge"),
        ("process_resident_memory_bytes", "gauge"),
        ("process_cpu_seconds", "counter"),
        ("process_start_time_seconds", "gauge"),
        ("process_open_fds", "gauge"),
    ];
    for (name, kind) in expected {
        assert!(
            types.iter().any(|(n, k)| n == name && k == kind),
            "{name} should be a {kind}; families: {types:?}"
        );
    }

    let samples = [
        "controller_runtime_reconcile_total{controller=\"agenticsession\",result=\"success\"} 1",
        "controller_runtime_reconcile_total{controller=\"agenticsession\",result=\"error\"} 0",
        "controller_runtime_reconcile_total{controller=\"agenticsession\",result=\"requeue\"} 0",
        "controller_runtime_reconcile_panics_total{controller=\"agenticsession\"} 1",
        "controller_runtime_reconcile_time_seconds_count{controller=\"agenticsession\"} 1",
        "controller_runtime_max_concurrent_reconciles{controller=\"agenticsession\"} 10",
        "controller_runtime_active_workers{controller=\"agenticsession\"} 0",
        "workqueue_depth{name=\"agenticsession\",controller=\"agenticsession\"} 3",
        "workqueue_retries_total{name=\"agenticsession\",controller=\"agenticsession\"} 1",
        "leader_election_master_status{name=\"agentic-operator-leader\"} 1",
        "process_cpu_seconds_total ",
        "process_resident_memory_bytes ",
    ];
    for sample in samples {
        assert!(body.contains(sample), "missing {sample:?} in\n{body}");
    }
    let rss: f64 = body
        .lines()
        .find_map(|l| l.strip_prefix("process_resident_memory_bytes "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(rss > 0.0);

    // Families register their own metrics in the same registry.
    let sessions = prometheus_client::metrics::counter::Counter::<u64>::default();
    metrics.register(|r| {
        r.register(
            "ambient_sessions",
            "Total sessions created",
            sessions.clone(),
        );
    });
    sessions.inc();
    let (_, body, _) = get(&server, "/metrics").await;
    assert!(body.contains("ambient_sessions_total 1"), "{body}");
}

#[tokio::test]
async fn readyz_waits_for_caches_and_passes_on_standby() {
    let health = HealthState::new();
    let (server, _stop) = start(probe_router(health.clone())).await;

    assert_eq!(get(&server, "/healthz").await.0, StatusCode::OK);
    assert_eq!(
        get(&server, "/readyz").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );

    health.set_role(Role::Standby);
    let (status, body, _) = get(&server, "/readyz").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("standing by"), "{body}");

    health.set_role(Role::Active);
    health.expect_caches(2);
    health.cache_synced();
    let (status, body, _) = get(&server, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("1 of 2"), "{body}");

    health.cache_synced();
    assert_eq!(get(&server, "/readyz").await.0, StatusCode::OK);
    assert_eq!(get(&server, "/healthz").await.0, StatusCode::OK);
}

#[tokio::test]
async fn healthz_fails_when_a_loop_dies() {
    let health = HealthState::new();
    health.set_role(Role::Active);
    let (server, _stop) = start(probe_router(health.clone())).await;
    health.loop_started("agenticsession");
    let (status, body, _) = get(&server, "/healthz").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("1 loops running"), "{body}");

    health.loop_stopped("agenticsession");
    assert_eq!(get(&server, "/healthz").await.0, StatusCode::OK);

    health.loop_failed("agenticsession", "the controller loop ended");
    let (status, body, _) = get(&server, "/healthz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("agenticsession"), "{body}");
    assert_eq!(
        get(&server, "/livez").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        get(&server, "/readyz").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test]
async fn unknown_paths_are_404() {
    let (server, _stop) =
        start(probe_router(HealthState::new()).merge(metrics_router(Metrics::new()))).await;
    assert_eq!(get(&server, "/nope").await.0, StatusCode::NOT_FOUND);
    assert_eq!(get(&server, "/metrics").await.0, StatusCode::OK);
}
