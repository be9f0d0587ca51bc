//! The manager running families against a fake list/watch API (`tower-test`): shared watches,
//! controller tasks, readiness after cache sync, family selection by installed CRDs, the
//! legacy watch mode, and clean shutdown.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use agentic_operator::runtime::{
    CrdRef, Family, FamilyError, RuntimeContext, SharedWatches,
    config::{Environment, RunArgs, Settings},
    controller::{ControllerTask, ReconcileError, controller_task},
    manager::Manager,
    startup::RunError,
    watches::LIST_PAGE_SIZE,
};
use http::{Request, Response};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    Api, Client, ResourceExt,
    client::Body,
    runtime::{controller::Action, watcher},
};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Default)]
struct Fake {
    requests: Vec<String>,
    /// Watch requests that are never answered (an idle watch).
    held: Vec<tower_test::mock::SendResponse<Response<Body>>>,
    watches: usize,
    /// Event writes get no answer until the test sends one (`held_events`).
    hold_events: bool,
    held_events: Vec<tower_test::mock::SendResponse<Response<Body>>>,
    crds_installed: bool,
}

type Shared = Arc<Mutex<Fake>>;

fn cm(name: &str, rv: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
                     "resourceVersion": rv,
                     "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}",
                                     "kept": "yes"},
                     "managedFields": [{"manager": "kubectl", "operation": "Apply"}]},
        "data": {"k": "v"}
    })
}

fn respond(value: &serde_json::Value, code: u16) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(value).unwrap()))
        .unwrap()
}

fn fake_api() -> (Client, Shared) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let state: Shared = Arc::default();
    let served = state.clone();
    tokio::spawn(async move {
        while let Some((request, send)) = handle.next_request().await {
            let uri = request.uri().clone();
            let path = uri.path().to_owned();
            let query = uri.query().unwrap_or_default().to_owned();
            let mut fake = served.lock().unwrap();
            fake.requests
                .push(format!("{} {path}?{query}", request.method()));
            if fake.hold_events
                && request.method() == http::Method::POST
                && path.ends_with("/events")
            {
                fake.held_events.push(send);
                continue;
            }
            match path.as_str() {
                "/api/v1/configmaps" if query.contains("watch=true") => {
                    fake.watches += 1;
                    if fake.watches == 1 {
                        let event = serde_json::json!({"type": "ADDED", "object": cm("c", "11")});
                        let mut body = serde_json::to_vec(&event).unwrap();
                        body.push(b'\n');
                        send.send_response(
                            Response::builder()
                                .status(200)
                                .body(Body::from(body))
                                .unwrap(),
                        );
                    } else {
                        fake.held.push(send);
                    }
                }
                "/api/v1/configmaps" => send.send_response(respond(
                    &serde_json::json!({
                        "apiVersion": "v1", "kind": "ConfigMapList",
                        "metadata": {"resourceVersion": "10"},
                        "items": [cm("a", "5"), cm("b", "6")]
                    }),
                    200,
                )),
                "/apis/example.agentic.dev/v1" if fake.crds_installed => {
                    send.send_response(respond(
                        &serde_json::json!({
                            "kind": "APIResourceList", "apiVersion": "v1",
                            "groupVersion": "example.agentic.dev/v1",
                            "resources": [{"name": "widgets", "singularName": "widget",
                                "namespaced": true, "kind": "Widget", "verbs": ["get", "list"]}]
                        }),
                        200,
                    ));
                }
                _ => send.send_response(respond(
                    &serde_json::json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                        "status": "Failure", "reason": "NotFound", "code": 404,
                        "message": "not found"}),
                    404,
                )),
            }
        }
    });
    (Client::new(service, "default"), state)
}

#[derive(Debug, thiserror::Error)]
#[error("never returned")]
struct NeverError;

impl ReconcileError for NeverError {
    fn reason(&self) -> &'static str {
        "Never"
    }
}

/// Reconciled object names, and whether managedFields reached the reconcile.
#[derive(Debug, Default)]
struct Seen {
    names: Mutex<BTreeSet<(String, String)>>,
    managed_fields_kept: Mutex<bool>,
    /// An object arrived with the `kubectl apply` annotation, or without its other one.
    kubectl_annotation_kept: Mutex<bool>,
}

async fn record(obj: Arc<ConfigMap>, ctx: Arc<(String, Arc<Seen>)>) -> Result<Action, NeverError> {
    let (controller, seen) = ctx.as_ref();
    if !obj.managed_fields().is_empty() {
        *seen.managed_fields_kept.lock().unwrap() = true;
    }
    let annotations = obj.annotations();
    if annotations.contains_key("kubectl.kubernetes.io/last-applied-configuration")
        || annotations.get("kept").map(String::as_str) != Some("yes")
    {
        *seen.kubectl_annotation_kept.lock().unwrap() = true;
    }
    seen.names
        .lock()
        .unwrap()
        .insert((controller.clone(), obj.name_any()));
    Ok(Action::await_change())
}

/// A family with two controllers over the same kind (so they must share one watch).
struct Widgets {
    seen: Arc<Seen>,
    crds: Vec<CrdRef>,
}

impl Family for Widgets {
    fn name(&self) -> &'static str {
        "sessions"
    }

    fn required_crds(&self) -> Vec<CrdRef> {
        self.crds.clone()
    }

    fn build(
        &self,
        rt: &RuntimeContext,
        watches: &mut SharedWatches,
    ) -> Result<Vec<ControllerTask>, FamilyError> {
        let mut tasks = Vec::new();
        for name in ["first", "second"] {
            let primary = watches.subscribe(
                Api::<ConfigMap>::all(rt.client.clone()),
                watcher::Config::default(),
            )?;
            let ctx = Arc::new((name.to_owned(), self.seen.clone()));
            tasks.push(controller_task(rt, name, primary, |c| c, record, ctx));
        }
        Ok(tasks)
    }
}

async fn fail(_obj: Arc<ConfigMap>, _ctx: Arc<()>) -> Result<Action, NeverError> {
    Err(NeverError)
}

/// A family whose one controller fails every reconcile, so its error policy publishes a
/// `ReconcileFailed` Event in the background.
struct Failing;

impl Family for Failing {
    fn name(&self) -> &'static str {
        "sessions"
    }

    fn required_crds(&self) -> Vec<CrdRef> {
        Vec::new()
    }

    fn build(
        &self,
        rt: &RuntimeContext,
        watches: &mut SharedWatches,
    ) -> Result<Vec<ControllerTask>, FamilyError> {
        let primary = watches.subscribe(
            Api::<ConfigMap>::all(rt.client.clone()),
            watcher::Config::default(),
        )?;
        Ok(vec![controller_task(
            rt,
            "failing",
            primary,
            |c| c,
            fail,
            Arc::new(()),
        )])
    }
}

fn settings(extra: impl FnOnce(&mut RunArgs)) -> Settings {
    let mut args = RunArgs {
        metrics_bind_address: "0".into(),
        health_probe_bind_address: "0".into(),
        ..RunArgs::default()
    };
    extra(&mut args);
    Settings::resolve(&args, &Environment::fixed([("POD_NAME", "test")], None)).unwrap()
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

fn expected(names: &[&str]) -> BTreeSet<(String, String)> {
    ["first", "second"]
        .iter()
        .flat_map(|c| {
            names
                .iter()
                .map(move |n| ((*c).to_owned(), (*n).to_owned()))
        })
        .collect()
}

async fn run_family(legacy: bool) {
    let (client, fake) = fake_api();
    let seen = Arc::new(Seen::default());
    let family = Widgets {
        seen: seen.clone(),
        crds: Vec::new(),
    };
    let manager = Manager::new(
        settings(|a| a.legacy_watch = legacy),
        vec![Box::new(family)],
    );
    let health = manager.health().clone();
    let metrics = manager.metrics().clone();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(manager.run_with_client(client, shutdown.clone()));

    let all = expected(&["a", "b", "c"]);
    eventually("every object reconciled by both controllers", || {
        *seen.names.lock().unwrap() == all
    })
    .await;
    eventually("readiness", || health.readiness().ok).await;
    assert!(health.liveness().ok);
    assert!(
        !*seen.managed_fields_kept.lock().unwrap(),
        "managedFields were not pruned"
    );
    assert!(
        !*seen.kubectl_annotation_kept.lock().unwrap(),
        "the kubectl apply annotation must be dropped and every other annotation kept"
    );

    let lists: Vec<String> = fake
        .lock()
        .unwrap()
        .requests
        .iter()
        .filter(|r| r.starts_with("GET /api/v1/configmaps") && !r.contains("watch=true"))
        .cloned()
        .collect();
    assert_eq!(
        lists.len(),
        1,
        "two controllers of one kind must share one watch"
    );
    // Lists are read in pages of LIST_PAGE_SIZE objects, not kube's default of 500.
    assert!(
        lists[0].contains(&format!("limit={LIST_PAGE_SIZE}")),
        "{}",
        lists[0]
    );

    // A reconcile records its object before it returns and is counted after, so the counters
    // may trail what the controllers have seen for a moment.
    for controller in ["first", "second"] {
        let line = format!(
            "controller_runtime_reconcile_total{{controller=\"{controller}\",result=\"success\"}} 3"
        );
        eventually(&line, || metrics.encode().unwrap().contains(&line)).await;
    }

    shutdown.cancel();
    let result = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .unwrap()
        .unwrap();
    assert!(result.is_ok(), "{result:?}");
}

#[tokio::test]
async fn controllers_share_one_watch_and_become_ready() {
    run_family(false).await;
}

#[tokio::test]
async fn legacy_watch_mode_reconciles_sequentially_from_the_watch() {
    run_family(true).await;
}

const WIDGETS: CrdRef = CrdRef::new("example.agentic.dev", "v1", "widgets");

#[tokio::test]
async fn family_with_missing_crd_is_skipped_by_default() {
    let (client, fake) = fake_api();
    let seen = Arc::new(Seen::default());
    let family = Widgets {
        seen: seen.clone(),
        crds: vec![WIDGETS],
    };
    let manager = Manager::new(settings(|_| {}), vec![Box::new(family)]);
    let health = manager.health().clone();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(manager.run_with_client(client, shutdown.clone()));

    eventually("readiness", || health.readiness().ok).await;
    assert!(
        fake.lock()
            .unwrap()
            .requests
            .iter()
            .all(|r| !r.contains("configmaps")),
        "a skipped family must not watch anything"
    );
    shutdown.cancel();
    let result = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .unwrap()
        .unwrap();
    assert!(result.is_ok(), "{result:?}");
    assert!(seen.names.lock().unwrap().is_empty());
}

#[tokio::test]
async fn requested_family_with_missing_crd_is_a_start_up_error() {
    let (client, _) = fake_api();
    let family = Widgets {
        seen: Arc::default(),
        crds: vec![WIDGETS],
    };
    let manager = Manager::new(
        settings(|a| a.controllers = Some(vec!["sessions".into()])),
        vec![Box::new(family)],
    );
    let result = tokio::time::timeout(
        Duration::from_secs(30),
        manager.run_with_client(client, CancellationToken::new()),
    )
    .await
    .unwrap();
    match result {
        Err(error @ RunError::MissingCrd { .. }) => {
            assert!(
                error.to_string().contains("widgets.example.agentic.dev"),
                "{error}"
            );
        }
        other => panic!("expected MissingCrd, got {other:?}"),
    }
}

#[tokio::test]
async fn family_with_installed_crd_runs() {
    let (client, fake) = fake_api();
    fake.lock().unwrap().crds_installed = true;
    let seen = Arc::new(Seen::default());
    let family = Widgets {
        seen: seen.clone(),
        crds: vec![WIDGETS],
    };
    let manager = Manager::new(
        settings(|a| a.controllers = Some(vec!["sessions".into()])),
        vec![Box::new(family)],
    );
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(manager.run_with_client(client, shutdown.clone()));
    let all = expected(&["a", "b", "c"]);
    eventually("reconciles", || *seen.names.lock().unwrap() == all).await;
    shutdown.cancel();
    let result = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .unwrap()
        .unwrap();
    assert!(result.is_ok(), "{result:?}");
}

/// A graceful shutdown waits for the Events still being published in the background (here the
/// `ReconcileFailed` Events of a failing controller, whose writes the API server has not
/// answered yet) before it ends; before, they were dropped with the process.
#[tokio::test]
async fn shutdown_waits_for_events_being_published() {
    let (client, fake) = fake_api();
    fake.lock().unwrap().hold_events = true;
    let manager = Manager::new(settings(|_| {}), vec![Box::new(Failing)]);
    let health = manager.health().clone();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(manager.run_with_client(client, shutdown.clone()));
    eventually("a ReconcileFailed Event being written", || {
        !fake.lock().unwrap().held_events.is_empty()
    })
    .await;
    let running = || -> Option<usize> {
        health.liveness().details.iter().find_map(|d| {
            d.strip_prefix("ok (")?
                .strip_suffix(" loops running)")?
                .parse()
                .ok()
        })
    };
    let before = running().unwrap();
    shutdown.cancel();
    // The controller stops (one loop fewer is running)...
    eventually("the controller loop to stop", || {
        running() == Some(before - 1)
    })
    .await;
    // ...but the manager waits for the Event write.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !run.is_finished(),
        "the manager ended with an Event still being written"
    );
    // Answer the held writes and stop holding in one step: an Event write that arrives
    // in between would otherwise stay unanswered until the drain gives up.
    let held: Vec<_> = {
        let mut fake = fake.lock().unwrap();
        fake.hold_events = false;
        std::mem::take(&mut fake.held_events)
    };
    for send in held {
        send.send_response(respond(
            &serde_json::json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
                "metadata": {"name": "e", "namespace": "default"}}),
            201,
        ));
    }
    let result = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .unwrap()
        .unwrap();
    assert!(result.is_ok(), "{result:?}");
}
