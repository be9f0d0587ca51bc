//! `/metrics`, `/healthz` and `/readyz` through the real axum routers.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use agentic_operator::runtime::{
    metrics::{Metrics, ReconcileResult},
    probes::{HealthState, Role, metrics_router, probe_router},
};
use axum::{
    Router,
    body::{Body, to_bytes},
    http::{Request, StatusCode, header},
};
use tower::ServiceExt;

async fn get(router: &Router, path: &str) -> (StatusCode, String, Option<String>) {
    let response = router
        .clone()
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned());
    let body = to_bytes(response.into_body(), usize::MAX).await.unwrap();
    (
        status,
        String::from_utf8(body.to_vec()).unwrap(),
        content_type,
    )
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
    let router = metrics_router(metrics.clone());

    let (status, body, content_type) = get(&router, "/metrics").await;
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
        "controller_runtime_reconcile_panics_total{controller=\"agenticsession\"} 1",
        "controller_runtime_reconcile_time_seconds_count{controller=\"agenticsession\"} 1",
        "controller_runtime_max_concurrent_reconciles{controller=\"agenticsession\"} 10",
        "controller_runtime_active_workers{controller=\"agenticsession\"} 0",
        "workqueue_depth{name=\"agenticsession\"} 3",
        "workqueue_retries_total{name=\"agenticsession\"} 1",
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
    let (_, body, _) = get(&router, "/metrics").await;
    assert!(body.contains("ambient_sessions_total 1"), "{body}");
}

#[tokio::test]
async fn readyz_waits_for_caches_and_passes_on_standby() {
    let health = HealthState::new();
    let router = probe_router(health.clone());

    assert_eq!(get(&router, "/healthz").await.0, StatusCode::OK);
    assert_eq!(
        get(&router, "/readyz").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );

    health.set_role(Role::Standby);
    let (status, body, _) = get(&router, "/readyz").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("standing by"), "{body}");

    health.set_role(Role::Active);
    health.expect_caches(2);
    health.cache_synced();
    let (status, body, _) = get(&router, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("1 of 2"), "{body}");

    health.cache_synced();
    assert_eq!(get(&router, "/readyz").await.0, StatusCode::OK);
    assert_eq!(get(&router, "/healthz").await.0, StatusCode::OK);
}

#[tokio::test]
async fn healthz_fails_when_a_loop_dies() {
    let health = HealthState::new();
    health.set_role(Role::Active);
    let router = probe_router(health.clone());
    health.loop_started("agenticsession");
    let (status, body, _) = get(&router, "/healthz").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("1 loops running"), "{body}");

    health.loop_stopped("agenticsession");
    assert_eq!(get(&router, "/healthz").await.0, StatusCode::OK);

    health.loop_failed("agenticsession", "the controller loop ended");
    let (status, body, _) = get(&router, "/healthz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("agenticsession"), "{body}");
    assert_eq!(
        get(&router, "/livez").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        get(&router, "/readyz").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test]
async fn unknown_paths_are_404() {
    let router = probe_router(HealthState::new()).merge(metrics_router(Metrics::new()));
    assert_eq!(get(&router, "/nope").await.0, StatusCode::NOT_FOUND);
    assert_eq!(get(&router, "/metrics").await.0, StatusCode::OK);
}
