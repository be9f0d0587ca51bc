//! Leader election against a fake Lease API served through `tower-test`: acquire, renew,
//! follow, take over, conflict, lose, release, 403 — for the elector and for the manager.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use agentic_operator::runtime::{
    config::{Environment, LeaderElectionSettings, RunArgs, Settings},
    leader::{Attempt, LeaderElector, LeaseError},
    manager::Manager,
    probes::Role,
    startup::RunError,
};
use http::{Request, Response, StatusCode};
use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
};
use kube::{Client, client::Body};
use tokio_util::sync::CancellationToken;

const NS: &str = "ops";
const NAME: &str = "agentic-operator-leader";
const LEASE_PATH: &str =
    "/apis/coordination.k8s.io/v1/namespaces/ops/leases/agentic-operator-leader";
const LEASES_PATH: &str = "/apis/coordination.k8s.io/v1/namespaces/ops/leases";

#[derive(Debug, Default)]
struct FakeState {
    lease: Option<Lease>,
    resource_version: u64,
    fail_with: Option<u16>,
    bump_before_put: bool,
    /// Cancelled by every Lease write: a signal that arrives while the write is in flight.
    cancel_on_write: Option<CancellationToken>,
    /// Requests get no answer at all (an API server that hangs).
    hang: bool,
    log: Vec<String>,
}

type Shared = Arc<Mutex<FakeState>>;

fn status(code: u16, reason: &str, message: &str) -> Response<Body> {
    let body = serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "reason": reason, "message": message, "code": code,
    });
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(&body).unwrap()))
        .unwrap()
}

fn json(code: StatusCode, value: &impl serde::Serialize) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(value).unwrap()))
        .unwrap()
}

fn store(state: &mut FakeState, mut lease: Lease) -> Lease {
    state.resource_version += 1;
    lease.metadata.resource_version = Some(state.resource_version.to_string());
    lease.metadata.name = Some(NAME.into());
    lease.metadata.namespace = Some(NS.into());
    state.lease = Some(lease.clone());
    lease
}

fn handle(state: &Shared, method: &http::Method, path: &str, body: &[u8]) -> Response<Body> {
    let mut state = state.lock().unwrap();
    state.log.push(format!("{method} {path}"));
    if let Some(code) = state.fail_with {
        let reason = if code == 403 {
            "Forbidden"
        } else {
            "InternalError"
        };
        return status(code, reason, "injected failure");
    }
    if matches!(method.as_str(), "POST" | "PUT")
        && let Some(token) = &state.cancel_on_write
    {
        token.cancel();
    }
    match (method.as_str(), path) {
        ("GET", "/version") => json(
            StatusCode::OK,
            &serde_json::json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0",
                "gitCommit": "", "gitTreeState": "", "buildDate": "", "goVersion": "",
                "compiler": "", "platform": ""}),
        ),
        ("GET", LEASE_PATH) => match &state.lease {
            Some(lease) => json(StatusCode::OK, lease),
            None => status(404, "NotFound", "leases not found"),
        },
        ("POST", LEASES_PATH) => {
            if state.lease.is_some() {
                return status(409, "AlreadyExists", "lease already exists");
            }
            let lease: Lease = serde_json::from_slice(body).unwrap();
            let stored = store(&mut state, lease);
            json(StatusCode::CREATED, &stored)
        }
        ("PUT", LEASE_PATH) => {
            if state.bump_before_put {
                state.resource_version += 1;
            }
            let lease: Lease = serde_json::from_slice(body).unwrap();
            let sent = lease.metadata.resource_version.clone().unwrap_or_default();
            if sent != state.resource_version.to_string() {
                return status(409, "Conflict", "the object has been modified");
            }
            let stored = store(&mut state, lease);
            json(StatusCode::OK, &stored)
        }
        _ => status(404, "NotFound", "no such path in the fake"),
    }
}

fn fake_api() -> (Client, Shared) {
    let (service, mut handle_rx) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let state: Shared = Arc::default();
    let served = state.clone();
    tokio::spawn(async move {
        // Requests left unanswered are kept here, so their callers wait instead of failing.
        let mut unanswered = Vec::new();
        while let Some((request, respond)) = handle_rx.next_request().await {
            if served.lock().unwrap().hang {
                served.lock().unwrap().log.push(format!(
                    "{} {} (no answer)",
                    request.method(),
                    request.uri().path()
                ));
                unanswered.push(respond);
                continue;
            }
            let (parts, body) = request.into_parts();
            let bytes = body.collect_bytes().await.unwrap();
            let response = handle(&served, &parts.method, parts.uri.path(), &bytes);
            respond.send_response(response);
        }
    });
    (Client::new(service, "default"), state)
}

fn settings(identity: &str) -> LeaderElectionSettings {
    LeaderElectionSettings {
        lease_name: NAME.into(),
        namespace: NS.into(),
        identity: identity.into(),
        lease_duration: Duration::from_secs(3),
        // Long enough that a renewal delayed by a loaded machine does not lose the Lease.
        renew_deadline: Duration::from_secs(2),
        retry_period: Duration::from_millis(50),
    }
}

fn held_by(holder: &str, duration_seconds: i32) -> Lease {
    Lease {
        metadata: ObjectMeta::default(),
        spec: Some(LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(duration_seconds),
            renew_time: Some(MicroTime(jiff::Timestamp::now())),
            acquire_time: Some(MicroTime(jiff::Timestamp::now())),
            lease_transitions: Some(2),
            ..LeaseSpec::default()
        }),
    }
}

fn holder(state: &Shared) -> Option<String> {
    let state = state.lock().unwrap();
    state
        .lease
        .as_ref()
        .and_then(|l| l.spec.as_ref())
        .and_then(|s| s.holder_identity.clone())
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until the fake API has left a request unanswered (with `hang` set).
async fn unanswered(state: &Shared) {
    eventually("a request that gets no answer", || {
        state
            .lock()
            .unwrap()
            .log
            .iter()
            .any(|l| l.ends_with("(no answer)"))
    })
    .await;
}

#[tokio::test]
async fn creates_a_missing_lease_then_renews_it() {
    let (client, state) = fake_api();
    let mut elector = LeaderElector::new(client, settings("me"));

    assert_eq!(
        elector.try_acquire_or_renew().await.unwrap(),
        Attempt::Leading
    );
    {
        let s = state.lock().unwrap();
        assert_eq!(
            s.log,
            [format!("GET {LEASE_PATH}"), format!("POST {LEASES_PATH}")]
        );
        let spec = s.lease.as_ref().unwrap().spec.as_ref().unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("me"));
        assert_eq!(spec.lease_duration_seconds, Some(3));
        assert_eq!(spec.lease_transitions, Some(0));
    }

    assert_eq!(
        elector.try_acquire_or_renew().await.unwrap(),
        Attempt::Leading
    );
    let s = state.lock().unwrap();
    assert_eq!(
        s.log[2..],
        [format!("GET {LEASE_PATH}"), format!("PUT {LEASE_PATH}")]
    );
    assert_eq!(s.resource_version, 2);
    assert_eq!(
        s.lease
            .as_ref()
            .unwrap()
            .spec
            .as_ref()
            .unwrap()
            .lease_transitions,
        Some(0)
    );
}

#[tokio::test]
async fn follows_a_valid_lease_of_another_replica_without_writing() {
    let (client, state) = fake_api();
    store(&mut state.lock().unwrap(), held_by("other", 3600));
    let mut elector = LeaderElector::new(client, settings("me"));

    assert_eq!(
        elector.try_acquire_or_renew().await.unwrap(),
        Attempt::Following {
            holder: Some("other".into())
        }
    );
    assert!(
        state
            .lock()
            .unwrap()
            .log
            .iter()
            .all(|l| l.starts_with("GET"))
    );
    assert_eq!(holder(&state).as_deref(), Some("other"));
}

#[tokio::test]
async fn takes_over_a_lease_that_stops_being_renewed() {
    let (client, state) = fake_api();
    store(&mut state.lock().unwrap(), held_by("other", 1));
    let mut elector = LeaderElector::new(client, settings("me"));

    let first = elector.try_acquire_or_renew().await.unwrap();
    assert_eq!(
        first,
        Attempt::Following {
            holder: Some("other".into())
        }
    );

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if elector.try_acquire_or_renew().await.unwrap() == Attempt::Leading {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never took over");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let s = state.lock().unwrap();
    let spec = s.lease.as_ref().unwrap().spec.as_ref().unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some("me"));
    assert_eq!(spec.lease_transitions, Some(3));
}

#[tokio::test]
async fn a_released_lease_is_taken_at_once() {
    let (client, state) = fake_api();
    let mut released = held_by("", 1);
    released.spec.as_mut().unwrap().holder_identity = None;
    store(&mut state.lock().unwrap(), released);
    let mut elector = LeaderElector::new(client, settings("me"));
    assert_eq!(
        elector.try_acquire_or_renew().await.unwrap(),
        Attempt::Leading
    );
    assert_eq!(holder(&state).as_deref(), Some("me"));
}

/// Shutdown that comes while the write taking the Lease is in flight: the replica does not
/// start leading, and hands the Lease it just took straight back.
#[tokio::test]
async fn a_lease_taken_while_shutting_down_is_handed_back() {
    let (client, state) = fake_api();
    let shutdown = CancellationToken::new();
    state.lock().unwrap().cancel_on_write = Some(shutdown.clone());
    let mut elector = LeaderElector::new(client, settings("me"));
    assert!(!elector.acquire(&shutdown, |_| {}).await.unwrap());
    let s = state.lock().unwrap();
    assert_eq!(
        s.log,
        [
            format!("GET {LEASE_PATH}"),
            format!("POST {LEASES_PATH}"),
            format!("PUT {LEASE_PATH}")
        ]
    );
    let spec = s.lease.as_ref().unwrap().spec.as_ref().unwrap();
    assert_eq!(spec.holder_identity, None, "the Lease was not handed back");
}

#[tokio::test]
async fn a_conflicting_write_does_not_make_us_leader() {
    let (client, state) = fake_api();
    let mut expired = held_by("other", 1);
    expired.spec.as_mut().unwrap().holder_identity = None;
    {
        let mut s = state.lock().unwrap();
        store(&mut s, expired);
        s.bump_before_put = true;
    }
    let mut elector = LeaderElector::new(client, settings("me"));
    assert_eq!(
        elector.try_acquire_or_renew().await.unwrap(),
        Attempt::Following { holder: None }
    );
    assert_eq!(holder(&state), None);
}

#[tokio::test]
async fn hold_reports_loss_when_another_replica_takes_over() {
    let (client, state) = fake_api();
    let mut elector = LeaderElector::new(client, settings("me"));
    assert_eq!(
        elector.try_acquire_or_renew().await.unwrap(),
        Attempt::Leading
    );

    let shutdown = CancellationToken::new();
    let held = tokio::spawn(async move { elector.hold(&shutdown).await });
    eventually("a renewal", || state.lock().unwrap().resource_version >= 2).await;
    {
        let mut s = state.lock().unwrap();
        store(&mut s, held_by("usurper", 3600));
    }
    let result = tokio::time::timeout(Duration::from_secs(30), held)
        .await
        .unwrap()
        .unwrap();
    match result {
        Err(LeaseError::Lost { reason, .. }) => assert!(reason.contains("usurper"), "{reason}"),
        other => panic!("expected Lost, got {other:?}"),
    }
}

#[tokio::test]
async fn hold_gives_up_when_renewals_fail_past_the_deadline() {
    let (client, state) = fake_api();
    let mut elector = LeaderElector::new(client, settings("me"));
    assert_eq!(
        elector.try_acquire_or_renew().await.unwrap(),
        Attempt::Leading
    );
    state.lock().unwrap().fail_with = Some(500);

    let shutdown = CancellationToken::new();
    let result = tokio::time::timeout(Duration::from_secs(30), elector.hold(&shutdown))
        .await
        .unwrap();
    match result {
        Err(error @ LeaseError::Lost { .. }) => {
            assert!(error.to_string().contains("--renew-deadline"), "{error}");
        }
        other => panic!("expected Lost, got {other:?}"),
    }
}

#[tokio::test]
async fn release_clears_the_holder() {
    let (client, state) = fake_api();
    let mut elector = LeaderElector::new(client, settings("me"));
    assert_eq!(
        elector.try_acquire_or_renew().await.unwrap(),
        Attempt::Leading
    );
    elector.release().await.unwrap();
    let s = state.lock().unwrap();
    let spec = s.lease.as_ref().unwrap().spec.as_ref().unwrap();
    assert_eq!(spec.holder_identity, None);
    assert_eq!(spec.lease_duration_seconds, Some(1));
    assert_eq!(s.log.last().unwrap(), &format!("PUT {LEASE_PATH}"));
}

/// A release the API server never answers gives up after the renew deadline instead of
/// holding up the shutdown (the Lease then expires on its own).
#[tokio::test]
async fn release_gives_up_when_the_api_server_does_not_answer() {
    let (client, state) = fake_api();
    let mut elector = LeaderElector::new(client, settings("me"));
    assert_eq!(
        elector.try_acquire_or_renew().await.unwrap(),
        Attempt::Leading
    );
    state.lock().unwrap().hang = true;
    let result = tokio::time::timeout(Duration::from_mins(1), elector.release())
        .await
        .expect("the release did not give up");
    match result {
        Err(error @ LeaseError::TimedOut { .. }) => {
            let text = error.to_string();
            assert!(
                text.contains("update Lease ops/agentic-operator-leader")
                    && text.contains("--renew-deadline"),
                "{text}"
            );
        }
        other => panic!("expected TimedOut, got {other:?}"),
    }
    assert_eq!(
        state.lock().unwrap().log.last().unwrap(),
        &format!("PUT {LEASE_PATH} (no answer)")
    );
}

/// A shutdown that comes while a renewal hangs ends `hold` at once instead of after the
/// renew deadline (two minutes here), so the drain starts without that delay.
#[tokio::test]
async fn hold_sees_the_shutdown_while_a_renewal_hangs() {
    let (client, state) = fake_api();
    let patient = LeaderElectionSettings {
        lease_duration: Duration::from_mins(3),
        renew_deadline: Duration::from_mins(2),
        ..settings("me")
    };
    let mut elector = LeaderElector::new(client, patient);
    assert_eq!(
        elector.try_acquire_or_renew().await.unwrap(),
        Attempt::Leading
    );
    state.lock().unwrap().hang = true;
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    let holding = tokio::spawn(async move { elector.hold(&stop).await });
    unanswered(&state).await;
    shutdown.cancel();
    let result = tokio::time::timeout(Duration::from_mins(1), holding)
        .await
        .expect("hold waited for the hanging renewal")
        .unwrap();
    assert!(result.is_ok(), "{result:?}");
}

/// While the API server does not answer, a replica waiting for the Lease still sees its
/// shutdown: each attempt is abandoned after the renew deadline.
#[tokio::test]
async fn acquire_sees_the_shutdown_while_the_api_server_does_not_answer() {
    let (client, state) = fake_api();
    state.lock().unwrap().hang = true;
    let mut elector = LeaderElector::new(client, settings("me"));
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    let acquiring = tokio::spawn(async move { elector.acquire(&stop, |_| {}).await });
    unanswered(&state).await;
    shutdown.cancel();
    let led = tokio::time::timeout(Duration::from_mins(1), acquiring)
        .await
        .expect("acquire did not see the shutdown")
        .unwrap()
        .unwrap();
    assert!(!led);
}

#[tokio::test]
async fn forbidden_names_the_missing_permission() {
    let (client, state) = fake_api();
    state.lock().unwrap().fail_with = Some(403);
    let mut elector = LeaderElector::new(client, settings("me"));
    let error = elector
        .acquire(&CancellationToken::new(), |_| {})
        .await
        .unwrap_err();
    let text = error.to_string();
    assert!(matches!(error, LeaseError::Forbidden { .. }), "{error:?}");
    for needle in [
        "403",
        "ops/agentic-operator-leader",
        "leases.coordination.k8s.io",
        "grant",
    ] {
        assert!(text.contains(needle), "{text} should mention {needle}");
    }
}

/// Cancels `shutdown` and returns how the manager task `run` ended.
async fn shut_down(
    shutdown: &CancellationToken,
    run: tokio::task::JoinHandle<Result<(), RunError>>,
) -> Result<(), RunError> {
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .unwrap()
        .unwrap()
}

fn manager_settings(pod: &str) -> Settings {
    let args = RunArgs {
        metrics_bind_address: "0".into(),
        health_probe_bind_address: "0".into(),
        leader_elect: true,
        leader_election_namespace: Some(NS.into()),
        lease_duration: Duration::from_secs(3),
        // Long enough that a renewal delayed by a loaded machine does not lose the Lease.
        renew_deadline: Duration::from_secs(2),
        retry_period: Duration::from_millis(50),
        ..RunArgs::default()
    };
    Settings::resolve(&args, &Environment::fixed([("POD_NAME", pod)], None)).unwrap()
}

/// With a Lease client of its own (what `run` passes under `--kube-api-qps`), leader
/// election never goes through the controllers' client: here that one refuses everything,
/// and the manager still leads and releases the Lease through its own.
#[tokio::test]
async fn manager_uses_its_lease_client_for_the_lease() {
    let (controllers, refused) = fake_api();
    refused.lock().unwrap().fail_with = Some(403);
    let (lease_client, state) = fake_api();
    let settings = manager_settings("pod-f");
    let identity = settings.identity.clone();
    let manager = Manager::new(settings, Vec::new()).with_lease_client(lease_client);
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(manager.run_with_client(controllers, shutdown.clone()));
    eventually("leadership through the Lease client", || {
        holder(&state).as_deref() == Some(identity.as_str())
    })
    .await;
    let result = shut_down(&shutdown, run).await;
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(holder(&state), None, "the lease was not released");
    let through_controllers = refused.lock().unwrap().log.clone();
    assert!(
        through_controllers.iter().all(|r| !r.contains("/leases")),
        "{through_controllers:?}"
    );
}

#[tokio::test]
async fn manager_leads_and_releases_the_lease_on_shutdown() {
    let (client, state) = fake_api();
    let settings = manager_settings("pod-a");
    let identity = settings.identity.clone();
    let manager = Manager::new(settings, Vec::new());
    let health = manager.health().clone();
    let metrics = manager.metrics().clone();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(manager.run_with_client(client, shutdown.clone()));

    eventually("leadership", || {
        holder(&state).as_deref() == Some(identity.as_str())
    })
    .await;
    eventually("ready", || {
        health.readiness().ok && health.role() == Role::Active
    })
    .await;
    eventually("leader metric", || {
        metrics
            .encode()
            .unwrap()
            .contains("leader_election_master_status{name=\"agentic-operator-leader\"} 1")
    })
    .await;

    let result = shut_down(&shutdown, run).await;
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(holder(&state), None, "the lease was not released");
    assert!(
        metrics
            .encode()
            .unwrap()
            .contains("leader_election_master_status{name=\"agentic-operator-leader\"} 0")
    );
}

#[tokio::test]
async fn manager_stands_by_and_is_ready_while_another_replica_leads() {
    let (client, state) = fake_api();
    store(&mut state.lock().unwrap(), held_by("other", 3600));
    let manager = Manager::new(manager_settings("pod-b"), Vec::new());
    let health = manager.health().clone();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(manager.run_with_client(client, shutdown.clone()));

    eventually("standby", || health.role() == Role::Standby).await;
    assert!(health.readiness().ok);
    eventually("a few polls", || state.lock().unwrap().log.len() >= 3).await;
    assert_eq!(holder(&state).as_deref(), Some("other"));

    let result = shut_down(&shutdown, run).await;
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(holder(&state).as_deref(), Some("other"));
    assert!(
        state
            .lock()
            .unwrap()
            .log
            .iter()
            .all(|l| l.starts_with("GET"))
    );
}

#[tokio::test]
async fn manager_exits_with_an_error_when_leadership_is_lost() {
    let (client, state) = fake_api();
    let settings = manager_settings("pod-c");
    let identity = settings.identity.clone();
    let manager = Manager::new(settings, Vec::new());
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(manager.run_with_client(client, shutdown.clone()));

    eventually("leadership", || {
        holder(&state).as_deref() == Some(identity.as_str())
    })
    .await;
    store(&mut state.lock().unwrap(), held_by("pod-d", 3600));

    let result = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .unwrap()
        .unwrap();
    match result {
        Err(RunError::Lease(LeaseError::Lost { reason, .. })) => {
            assert!(reason.contains("pod-d"), "{reason}");
        }
        other => panic!("expected a lost lease, got {other:?}"),
    }
    assert!(!shutdown.is_cancelled());
}

#[tokio::test]
async fn manager_reports_forbidden_lease_access_at_start_up() {
    let (client, state) = fake_api();
    state.lock().unwrap().fail_with = Some(403);
    let manager = Manager::new(manager_settings("pod-e"), Vec::new());
    let result = tokio::time::timeout(
        Duration::from_secs(30),
        manager.run_with_client(client, CancellationToken::new()),
    )
    .await
    .unwrap();
    let error = result.unwrap_err();
    assert!(
        matches!(error, RunError::Lease(LeaseError::Forbidden { .. })),
        "{error:?}"
    );
    assert!(error.to_string().contains("grant"), "{error}");
}
