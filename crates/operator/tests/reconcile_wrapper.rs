//! The reconcile wrapper: panic isolation, per-object backoff, permanent errors, the deadline,
//! and a real kube `Controller` that keeps running after panics.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use agentic_operator::runtime::{
    backoff::BackoffPolicy,
    controller::{ControllerError, ControllerOptions, Guarded, ReconcileError, run_guarded},
    metrics::Metrics,
};
use k8s_openapi::{api::core::v1::ConfigMap, apimachinery::pkg::apis::meta::v1::ObjectMeta};
use kube::runtime::{
    controller::{Action, Controller},
    reflector, watcher,
};
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
enum TestError {
    #[error("the backend is unavailable")]
    Transient,
    #[error("spec.size must be positive")]
    Invalid,
    #[error("write ConfigMap failed")]
    Api(#[source] kube::Error),
}

impl ReconcileError for TestError {
    fn reason(&self) -> &str {
        match self {
            Self::Transient => "BackendUnavailable",
            Self::Invalid => "InvalidSpec",
            Self::Api(_) => "ApiError",
        }
    }

    fn is_permanent(&self) -> bool {
        matches!(self, Self::Invalid)
    }
}

/// What the test reconcile does on its n-th call (0-based); `Ok` after the script ends.
#[derive(Debug, Clone, Copy)]
enum Step {
    Panic,
    Fail,
    Invalid,
    Hang,
}

#[derive(Debug)]
struct Script {
    steps: Vec<Step>,
    calls: AtomicU32,
}

async fn scripted(obj: Arc<ConfigMap>, script: Arc<Script>) -> Result<Action, TestError> {
    let call = script.calls.fetch_add(1, Ordering::SeqCst) as usize;
    let _ = obj;
    match script.steps.get(call) {
        Some(Step::Panic) => panic!("reconcile bug on call {call}"),
        Some(Step::Fail) => Err(TestError::Transient),
        Some(Step::Invalid) => Err(TestError::Invalid),
        Some(Step::Hang) => {
            std::future::pending::<()>().await;
            Ok(Action::await_change())
        }
        None => Ok(Action::await_change()),
    }
}

fn config_map(name: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            uid: Some(format!("uid-{name}")),
            ..ObjectMeta::default()
        },
        ..ConfigMap::default()
    }
}

fn options(timeout: Option<Duration>) -> ControllerOptions {
    ControllerOptions {
        name: "test".into(),
        concurrency: 2,
        timeout,
        backoff: BackoffPolicy {
            jitter: 0.0,
            ..BackoffPolicy::default()
        },
        error_events: true,
    }
}

type Reconcile = fn(
    Arc<ConfigMap>,
    Arc<Script>,
) -> std::pin::Pin<Box<dyn Future<Output = Result<Action, TestError>> + Send>>;

type TestGuard = Arc<Guarded<ConfigMap, Script, TestError, Reconcile>>;

fn guard(steps: Vec<Step>, timeout: Option<Duration>) -> (TestGuard, Arc<Script>, Metrics) {
    let metrics = Metrics::new();
    let script = Arc::new(Script {
        steps,
        calls: AtomicU32::new(0),
    });
    let reconcile: Reconcile = |obj, script| Box::pin(scripted(obj, script));
    let guard = Arc::new(Guarded::new(
        options(timeout),
        metrics.controllers().clone(),
        reconcile,
        script.clone(),
    ));
    (guard, script, metrics)
}

/// A store holding one object, its writer (to delete it), and the sender and receiver of a
/// trigger stream that has delivered it once (the sender must live as long as the
/// controller should).
type OneObject = (
    reflector::Store<ConfigMap>,
    reflector::store::Writer<ConfigMap>,
    futures::channel::mpsc::UnboundedSender<Arc<ConfigMap>>,
    futures::channel::mpsc::UnboundedReceiver<Arc<ConfigMap>>,
);

/// What a kube `Controller` over the one object `obj` needs.
fn one_object(obj: &ConfigMap) -> OneObject {
    let (reader, mut writer) = reflector::store::<ConfigMap>();
    writer.apply_watcher_event(&watcher::Event::Init);
    writer.apply_watcher_event(&watcher::Event::InitApply(obj.clone()));
    writer.apply_watcher_event(&watcher::Event::InitDone);
    let (tx, rx) = futures::channel::mpsc::unbounded::<Arc<ConfigMap>>();
    tx.unbounded_send(Arc::new(obj.clone())).unwrap();
    (reader, writer, tx, rx)
}

/// Cancels `shutdown` and waits for the controller task `running` to end.
async fn stop(shutdown: CancellationToken, running: tokio::task::JoinHandle<()>) {
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(30), running)
        .await
        .expect("controller did not stop after shutdown")
        .unwrap();
}

fn metric_line(metrics: &Metrics, prefix: &str) -> String {
    let text = metrics.encode().unwrap();
    text.lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting with {prefix} in\n{text}"))
        .to_owned()
}

#[tokio::test]
async fn panic_becomes_an_error_is_counted_and_retried() {
    let (guard, script, metrics) = guard(vec![Step::Panic], None);
    let obj = Arc::new(config_map("a"));

    let first = guard.reconcile(obj.clone()).await;
    let Err(error @ ControllerError::Panicked { .. }) = &first else {
        panic!("expected a panic error, got {first:?}");
    };
    assert!(
        error.to_string().contains("reconcile bug on call 0"),
        "{error}"
    );
    assert_eq!(error.reason(), "Panic");
    assert_eq!(
        guard.error_policy(&obj, error),
        Action::requeue(Duration::from_millis(5))
    );
    assert_eq!(
        metric_line(&metrics, "controller_runtime_reconcile_panics_total{"),
        "controller_runtime_reconcile_panics_total{controller=\"test\"} 1"
    );

    // The same wrapper keeps working: the retry succeeds and clears the failure count.
    assert_eq!(
        guard.reconcile(obj.clone()).await.unwrap(),
        Action::await_change()
    );
    assert_eq!(script.calls.load(Ordering::SeqCst), 2);
    assert_eq!(guard.tracker().failures("uid-a"), 0);
    assert_eq!(
        metric_line(
            &metrics,
            "controller_runtime_reconcile_total{controller=\"test\",result=\"success\"}"
        ),
        "controller_runtime_reconcile_total{controller=\"test\",result=\"success\"} 1"
    );
    assert_eq!(
        metric_line(&metrics, "controller_runtime_reconcile_errors_total{"),
        "controller_runtime_reconcile_errors_total{controller=\"test\"} 1"
    );
    assert_eq!(
        metric_line(&metrics, "controller_runtime_active_workers{"),
        "controller_runtime_active_workers{controller=\"test\"} 0"
    );
}

#[tokio::test]
async fn transient_errors_back_off_per_object_and_reset_on_success() {
    let (guard, _, metrics) = guard(vec![Step::Fail, Step::Fail, Step::Fail], None);
    let a = Arc::new(config_map("a"));
    let b = Arc::new(config_map("b"));
    let ms = Duration::from_millis;

    for expected in [ms(5), ms(10), ms(20)] {
        let error = guard.reconcile(a.clone()).await.unwrap_err();
        assert_eq!(error.reason(), "BackendUnavailable");
        assert_eq!(guard.error_policy(&a, &error), Action::requeue(expected));
    }
    // Another object starts its own schedule.
    let error = ControllerError::Reconcile(TestError::Transient);
    assert_eq!(guard.error_policy(&b, &error), Action::requeue(ms(5)));
    assert_eq!(
        metric_line(&metrics, "workqueue_retries_total{"),
        "workqueue_retries_total{name=\"test\",controller=\"test\"} 4"
    );

    assert!(guard.reconcile(a.clone()).await.is_ok());
    assert_eq!(guard.tracker().failures("uid-a"), 0);
    assert_eq!(guard.error_policy(&a, &error), Action::requeue(ms(5)));
}

#[tokio::test]
async fn permanent_errors_wait_for_a_change() {
    let (guard, _, metrics) = guard(vec![Step::Fail, Step::Invalid], None);
    let obj = Arc::new(config_map("a"));
    let error = guard.reconcile(obj.clone()).await.unwrap_err();
    assert_eq!(
        guard.error_policy(&obj, &error),
        Action::requeue(Duration::from_millis(5))
    );
    let error = guard.reconcile(obj.clone()).await.unwrap_err();
    assert!(error.is_permanent());
    assert_eq!(error.reason(), "InvalidSpec");
    assert_eq!(guard.error_policy(&obj, &error), Action::await_change());
    assert_eq!(guard.tracker().failures("uid-a"), 0);
    assert_eq!(
        metric_line(
            &metrics,
            "controller_runtime_terminal_reconcile_errors_total{"
        ),
        "controller_runtime_terminal_reconcile_errors_total{controller=\"test\"} 1"
    );
}

#[tokio::test]
async fn deadline_cancels_a_hanging_reconcile() {
    let (guard, _, metrics) = guard(vec![Step::Hang], Some(Duration::from_millis(20)));
    let obj = Arc::new(config_map("a"));
    let error = guard.reconcile(obj.clone()).await.unwrap_err();
    assert!(matches!(error, ControllerError::TimedOut(_)), "{error:?}");
    assert_eq!(error.reason(), "Timeout");
    assert_eq!(
        guard.error_policy(&obj, &error),
        Action::requeue(Duration::from_millis(5))
    );
    assert_eq!(
        metric_line(&metrics, "controller_runtime_reconcile_timeouts_total{"),
        "controller_runtime_reconcile_timeouts_total{controller=\"test\"} 1"
    );
    assert_eq!(
        metric_line(&metrics, "controller_runtime_active_workers{"),
        "controller_runtime_active_workers{controller=\"test\"} 0"
    );
    assert!(guard.reconcile(obj).await.is_ok());
}

/// A reconcile in flight counts in `workqueue_unfinished_work_seconds` and
/// `workqueue_longest_running_processor_seconds` until it ends (here cancelled by the
/// deadline); then both are 0 and its duration is in `workqueue_work_duration_seconds`.
#[tokio::test]
async fn work_in_flight_is_reported_until_it_ends() {
    let (guard, _, metrics) = guard(vec![Step::Hang], Some(Duration::from_secs(30)));
    let value = |prefix: &str| -> f64 {
        let line = metric_line(&metrics, prefix);
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    let longest = "workqueue_longest_running_processor_seconds{name=\"test\",controller=\"test\"}";
    let unfinished = "workqueue_unfinished_work_seconds{name=\"test\",controller=\"test\"}";
    let hanging = tokio::spawn({
        let guard = guard.clone();
        async move { guard.reconcile(Arc::new(config_map("a"))).await }
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !(value(longest) > 0.0 && value(unfinished) > 0.0) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no work in flight reported: {}",
            metrics.encode().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    hanging.abort();
    let _ = hanging.await;
    assert_eq!(metric_line(&metrics, longest), format!("{longest} 0.0"));
    assert_eq!(
        metric_line(&metrics, unfinished),
        format!("{unfinished} 0.0")
    );
    assert_eq!(
        metric_line(&metrics, "controller_runtime_active_workers{"),
        "controller_runtime_active_workers{controller=\"test\"} 0"
    );
    // A finished reconcile is observed in work_duration.
    assert!(guard.reconcile(Arc::new(config_map("b"))).await.is_ok());
    assert_eq!(
        metric_line(&metrics, "workqueue_work_duration_seconds_count{"),
        "workqueue_work_duration_seconds_count{name=\"test\",controller=\"test\"} 1"
    );
}

#[tokio::test]
async fn controller_keeps_running_after_panics() {
    let (guard, script, metrics) = guard(vec![Step::Panic, Step::Panic, Step::Fail], None);
    let obj = config_map("a");

    let (reader, _writer, tx, rx) = one_object(&obj);

    let shutdown = CancellationToken::new();
    let controller = Controller::for_shared_stream(rx, reader);
    let running = tokio::spawn(run_guarded(controller, guard.clone(), shutdown.clone()));

    // Two panics and one error are retried with backoff until the fourth call succeeds.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let success = metrics.encode().unwrap().contains(
            "controller_runtime_reconcile_total{controller=\"test\",result=\"success\"} 1",
        );
        if success {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no successful reconcile; calls = {}",
            script.calls.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(script.calls.load(Ordering::SeqCst), 4);
    assert_eq!(
        metric_line(&metrics, "controller_runtime_reconcile_panics_total{"),
        "controller_runtime_reconcile_panics_total{controller=\"test\"} 2"
    );
    assert_eq!(
        metric_line(&metrics, "controller_runtime_reconcile_errors_total{"),
        "controller_runtime_reconcile_errors_total{controller=\"test\"} 3"
    );
    assert!(
        !running.is_finished(),
        "the controller stopped after panics"
    );

    stop(shutdown, running).await;
    drop(tx);
}

/// An object that keeps failing and is then deleted leaves the retry queue when its retry
/// finds it gone: `workqueue_depth` returns to 0 and its failure count is dropped.
#[tokio::test]
async fn a_deleted_object_leaves_the_retry_queue() {
    let (guard, script, metrics) = guard(vec![Step::Fail; 1000], None);
    let obj = config_map("a");
    let (reader, mut writer, tx, rx) = one_object(&obj);
    let shutdown = CancellationToken::new();
    let controller = Controller::for_shared_stream(rx, reader);
    let running = tokio::spawn(run_guarded(controller, guard.clone(), shutdown.clone()));

    let depth = || metric_line(&metrics, "workqueue_depth{");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while guard.tracker().failures("uid-a") == 0 {
        assert!(tokio::time::Instant::now() < deadline, "no failure");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    writer.apply_watcher_event(&watcher::Event::Delete(obj));
    while guard.tracker().failures("uid-a") != 0
        || depth() != "workqueue_depth{name=\"test\",controller=\"test\"} 0"
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the deleted object is still queued: {}, {} failures after {} calls",
            depth(),
            guard.tracker().failures("uid-a"),
            script.calls.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop(shutdown, running).await;
    drop(tx);
}

#[tokio::test]
async fn shutdown_lets_the_in_flight_reconcile_finish() {
    let metrics = Metrics::new();
    let started = Arc::new(tokio::sync::Notify::new());
    let release = Arc::new(tokio::sync::Notify::new());
    let ctx = Arc::new((started.clone(), release.clone()));
    let guard = Arc::new(Guarded::new(
        options(None),
        metrics.controllers().clone(),
        |_obj: Arc<ConfigMap>, ctx: Arc<(Arc<tokio::sync::Notify>, Arc<tokio::sync::Notify>)>| async move {
            ctx.0.notify_one();
            ctx.1.notified().await;
            Ok::<_, TestError>(Action::await_change())
        },
        ctx,
    ));

    let obj = config_map("slow");
    let (reader, _writer, tx, rx) = one_object(&obj);
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(run_guarded(
        Controller::for_shared_stream(rx, reader),
        guard,
        shutdown.clone(),
    ));

    tokio::time::timeout(Duration::from_secs(30), started.notified())
        .await
        .expect("the reconcile never started");
    shutdown.cancel();
    tokio::task::yield_now().await;
    assert!(
        !running.is_finished(),
        "shutdown did not wait for the running reconcile"
    );
    assert_eq!(
        metric_line(&metrics, "controller_runtime_active_workers{"),
        "controller_runtime_active_workers{controller=\"test\"} 1"
    );

    release.notify_one();
    tokio::time::timeout(Duration::from_secs(30), running)
        .await
        .expect("the controller did not stop after its reconcile finished")
        .unwrap();
    assert_eq!(
        metric_line(
            &metrics,
            "controller_runtime_reconcile_total{controller=\"test\",result=\"success\"}"
        ),
        "controller_runtime_reconcile_total{controller=\"test\",result=\"success\"} 1"
    );
    drop(tx);
}

fn api_error(code: u16) -> ControllerError<TestError> {
    ControllerError::Reconcile(TestError::Api(kube::Error::Api(
        kube::core::Status::failure("refused", "")
            .with_code(code)
            .boxed(),
    )))
}

/// Failed reconciles are told on the object as Warning Events `ReconcileFailed`, on the 1st,
/// 2nd, 4th, 8th, ... failure in a row; permanent errors (the family reports them), lost
/// write races (409) and throttling (429) are not.
#[tokio::test]
async fn failures_are_told_in_a_few_warning_events() {
    let cluster = devcluster::DevCluster::start().await.unwrap();
    let client = cluster.client();
    let recorders = agentic_operator::runtime::events::EventRecorders::new(client.clone(), "test");
    let metrics = Metrics::new();
    let script = Arc::new(Script {
        steps: Vec::new(),
        calls: AtomicU32::new(0),
    });
    let reconcile: Reconcile = |obj, script| Box::pin(scripted(obj, script));
    let guard = Guarded::new(
        options(None),
        metrics.controllers().clone(),
        reconcile,
        script,
    )
    .with_error_events(recorders);
    let failing = config_map("failing");
    for _ in 0..5 {
        guard.error_policy(&failing, &ControllerError::Reconcile(TestError::Transient));
    }
    let quiet = config_map("quiet");
    guard.error_policy(&quiet, &ControllerError::Reconcile(TestError::Invalid));
    for code in [409, 429, 409, 429] {
        guard.error_policy(&quiet, &api_error(code));
    }
    // A refusal is told, with the API's answer in the error's chain.
    let refused = config_map("refused");
    guard.error_policy(&refused, &api_error(422));

    let events: kube::Api<k8s_openapi::api::events::v1::Event> =
        kube::Api::namespaced(client, "default");
    let notes = |about: &'static str| {
        let events = events.clone();
        async move {
            let mut notes: Vec<String> = events
                .list(&kube::api::ListParams::default())
                .await
                .unwrap()
                .items
                .into_iter()
                .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(about))
                .inspect(|e| {
                    assert_eq!(e.type_.as_deref(), Some("Warning"));
                    assert_eq!(e.reason.as_deref(), Some("ReconcileFailed"));
                })
                .filter_map(|e| e.note)
                .collect();
            notes.sort();
            notes
        }
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while notes("failing").await.len() < 3 || notes("refused").await.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            notes("failing").await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Every publish was spawned before the first one was seen; give stragglers a moment.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let failing = notes("failing").await;
    assert_eq!(failing.len(), 3, "{failing:?}");
    for n in [1, 2, 4] {
        assert!(
            failing.iter().any(|note| note.starts_with(&format!(
                "the backend is unavailable (failure {n} in a row;"
            ))),
            "{failing:?}"
        );
    }
    assert_eq!(notes("quiet").await, Vec::<String>::new());
    assert_eq!(notes("refused").await.len(), 1);
}

#[test]
fn failures_told_are_the_first_second_fourth_and_so_on() {
    use agentic_operator::runtime::controller::reports_failure;
    let reported: Vec<u32> = (1..=20).filter(|n| reports_failure(*n)).collect();
    assert_eq!(reported, [1, 2, 4, 8, 16]);
}
