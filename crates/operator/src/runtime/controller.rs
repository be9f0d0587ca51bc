//! The reconcile wrapper every controller runs under, and [`controller_task`], which turns a
//! family's reconcile function into a running kube `Controller`.
//!
//! The wrapper ([`Guarded`]) adds, around the family's plain `async fn reconcile`:
//!
//! * a tracing span per reconcile (`controller`, `namespace`, `name`);
//! * a deadline (`--reconcile-timeout`); a reconcile past it is cancelled and counts as an error;
//! * panic isolation: a panic becomes [`ControllerError::Panicked`], counted in
//!   `controller_runtime_reconcile_panics_total`, and is retried like any other error;
//! * per-object exponential backoff (5 ms doubling to 1000 s, reset on success); errors whose
//!   [`ReconcileError::is_permanent`] is true wait for the next change of the object instead;
//! * the controller-runtime metrics (totals, errors, durations, active workers, retries).

use std::{
    any::Any,
    fmt::Debug,
    future::Future,
    hash::Hash,
    marker::PhantomData,
    panic::AssertUnwindSafe,
    sync::Arc,
    time::{Duration, Instant},
};

use futures::{FutureExt, StreamExt, future::BoxFuture};
use kube::{
    Resource, ResourceExt,
    runtime::{
        controller::{self, Action, Controller},
        events::{Event, EventType},
    },
};
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{
    backoff::{BackoffPolicy, FailureTracker},
    events::EventRecorders,
    manager::RuntimeContext,
    metrics::{ControllerMetrics, ReconcileResult},
    watches::SharedWatch,
};

/// What the runtime needs to know about a family's reconcile error.
///
/// Implement it on each family's `thiserror` enum.
pub trait ReconcileError: std::error::Error + Send + Sync + 'static {
    /// A short CamelCase reason, used as condition reason, Event reason and log field.
    fn reason(&self) -> &str;

    /// `true` for invalid user input that retrying cannot fix: the object then waits for its
    /// next change instead of being retried with backoff.
    fn is_permanent(&self) -> bool {
        false
    }
}

/// An error of one wrapped reconcile.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError<E: std::error::Error + 'static> {
    /// The reconcile function returned an error.
    #[error(transparent)]
    Reconcile(E),
    /// The reconcile function panicked.
    #[error("reconcile panicked: {message}")]
    Panicked {
        /// The panic payload, if it was a string.
        message: String,
    },
    /// The reconcile did not finish before the deadline.
    #[error("reconcile did not finish within --reconcile-timeout ({0:?}) and was cancelled")]
    TimedOut(Duration),
}

impl<E: ReconcileError> ControllerError<E> {
    /// Reason for logs and metrics: the inner error's reason, `Panic` or `Timeout`.
    pub fn reason(&self) -> &str {
        match self {
            Self::Reconcile(e) => e.reason(),
            Self::Panicked { .. } => "Panic",
            Self::TimedOut(_) => "Timeout",
        }
    }

    /// Whether the object should wait for a change instead of being retried.
    pub fn is_permanent(&self) -> bool {
        matches!(self, Self::Reconcile(e) if e.is_permanent())
    }

    /// Whether the reconcile lost an optimistic-concurrency race: somewhere in the error's
    /// source chain the API server answered 409 Conflict. Such a reconcile is simply retried
    /// against the newer object, so it is logged quietly instead of as a failure.
    pub fn is_conflict(&self) -> bool {
        self.api_status_code() == Some(409)
    }

    /// Whether the API server asked to be left alone for a while (429 Too Many Requests).
    pub fn is_throttled(&self) -> bool {
        self.api_status_code() == Some(429)
    }

    /// The code of the first API status in the error's source chain, if there is one.
    fn api_status_code(&self) -> Option<u16> {
        match self {
            Self::Reconcile(e) => chain_status_code(e),
            Self::Panicked { .. } | Self::TimedOut(_) => None,
        }
    }
}

/// Walks an error's source chain for a kube API error and returns its status code.
fn chain_status_code(error: &(dyn std::error::Error + 'static)) -> Option<u16> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(kube::Error::Api(status)) = e.downcast_ref::<kube::Error>() {
            return Some(status.code);
        }
        if let Some(status) = e.downcast_ref::<kube::core::Status>() {
            return Some(status.code);
        }
        current = e.source();
    }
    None
}

/// Event reason of a failed reconcile told on the object.
pub const REASON_RECONCILE_FAILED: &str = "ReconcileFailed";

/// Whether the `failures`-th failure in a row of one object is told in a Warning Event: the
/// 1st, 2nd, 4th, 8th, ... so an object that keeps failing costs a handful of Event writes,
/// not one per retry.
pub fn reports_failure(failures: u32) -> bool {
    failures.is_power_of_two()
}

/// Per-controller options of the wrapper.
#[derive(Debug, Clone, PartialEq)]
pub struct ControllerOptions {
    /// Controller name: the `controller` metric label and log field (e.g. `agenticsession`).
    pub name: String,
    /// Maximum parallel reconciles (`--max-concurrent-reconciles`).
    pub concurrency: u16,
    /// Per-reconcile deadline (`--reconcile-timeout`), `None` for no deadline.
    pub timeout: Option<Duration>,
    /// Retry schedule.
    pub backoff: BackoffPolicy,
    /// Whether failed reconciles are told on the object as Warning Events `ReconcileFailed`
    /// (off for controllers that publish their own Event for every failure).
    pub error_events: bool,
}

impl ControllerOptions {
    /// Options for `name` taken from the runtime settings.
    pub fn from_context(rt: &RuntimeContext, name: &str) -> Self {
        Self {
            name: name.to_owned(),
            concurrency: rt.settings.max_concurrent_reconciles,
            timeout: rt.settings.reconcile_timeout,
            backoff: BackoffPolicy {
                max: rt.settings.max_retry_backoff,
                ..BackoffPolicy::default()
            },
            error_events: true,
        }
    }
}

/// The key failures are counted under: the UID, or `namespace/name` without one.
pub fn object_key<K: Resource>(obj: &K) -> String {
    match obj.uid() {
        Some(uid) => uid,
        None => format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any()),
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

enum Outcome<E> {
    Done(Result<Action, E>),
    Panicked(Box<dyn Any + Send>),
    TimedOut(Duration),
}

/// A reconcile function wrapped with deadline, panic isolation, backoff and metrics.
///
/// `reconcile` is the family's `Fn(Arc<K>, Arc<Ctx>) -> impl Future<Output = Result<Action, E>>`.
/// [`Guarded::reconcile`] and [`Guarded::error_policy`] are what kube's `Controller::run` calls;
/// they can also be called directly (tests do).
pub struct Guarded<K, Ctx, E, F> {
    options: ControllerOptions,
    metrics: ControllerMetrics,
    tracker: FailureTracker,
    reconcile: F,
    ctx: Arc<Ctx>,
    events: Option<EventRecorders>,
    _types: PhantomData<fn(Arc<K>) -> E>,
}

impl<K, Ctx, E, F> Debug for Guarded<K, Ctx, E, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guarded")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl<K, Ctx, E, F, Fut> Guarded<K, Ctx, E, F>
where
    K: Resource + Send + Sync + 'static,
    Ctx: Send + Sync + 'static,
    E: ReconcileError,
    F: Fn(Arc<K>, Arc<Ctx>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Action, E>> + Send + 'static,
{
    /// Wraps `reconcile` for the controller described by `options`, recording into `metrics`.
    pub fn new(
        options: ControllerOptions,
        metrics: ControllerMetrics,
        reconcile: F,
        ctx: Arc<Ctx>,
    ) -> Self {
        metrics.register_controller(&options.name, options.concurrency);
        Self {
            tracker: FailureTracker::new(options.backoff),
            options,
            metrics,
            reconcile,
            ctx,
            events: None,
            _types: PhantomData,
        }
    }

    /// Tells failed reconciles through `recorders` as Warning Events `ReconcileFailed` on the
    /// object (see [`Guarded::error_policy`]).
    #[must_use]
    pub fn with_error_events(mut self, recorders: EventRecorders) -> Self {
        self.events = Some(recorders);
        self
    }

    /// The options this wrapper was built with.
    pub fn options(&self) -> &ControllerOptions {
        &self.options
    }

    /// The per-object failure counts.
    pub fn tracker(&self) -> &FailureTracker {
        &self.tracker
    }

    /// Runs one reconcile of `obj` under the deadline, catching panics and recording metrics.
    /// Success clears the object's failure count.
    pub async fn reconcile(&self, obj: Arc<K>) -> Result<Action, ControllerError<E>> {
        let name = self.options.name.as_str();
        let key = object_key(obj.as_ref());
        self.tracker.retry_started(&key);
        self.metrics
            .set_queue_depth(name, self.tracker.pending_retries());
        let span = tracing::info_span!(
            "reconcile",
            controller = name,
            namespace = obj.namespace().unwrap_or_default(),
            name = obj.name_any(),
        );
        let _worker = self.metrics.start_work(name);
        let started = Instant::now();
        let reconcile = &self.reconcile;
        let ctx = self.ctx.clone();
        let guarded = AssertUnwindSafe(async move { reconcile(obj, ctx).await }).catch_unwind();
        let outcome = match self.options.timeout {
            Some(deadline) => match tokio::time::timeout(deadline, guarded)
                .instrument(span.clone())
                .await
            {
                Ok(Ok(result)) => Outcome::Done(result),
                Ok(Err(payload)) => Outcome::Panicked(payload),
                Err(_) => Outcome::TimedOut(deadline),
            },
            None => match guarded.instrument(span.clone()).await {
                Ok(result) => Outcome::Done(result),
                Err(payload) => Outcome::Panicked(payload),
            },
        };
        let elapsed = started.elapsed();
        let _enter = span.enter();
        let result = match outcome {
            Outcome::Done(Ok(action)) => Ok(action),
            Outcome::Done(Err(error)) => Err(ControllerError::Reconcile(error)),
            Outcome::Panicked(payload) => {
                self.metrics.inc_panics(name);
                Err(ControllerError::Panicked {
                    message: panic_message(payload.as_ref()),
                })
            }
            Outcome::TimedOut(deadline) => Err(ControllerError::TimedOut(deadline)),
        };
        match &result {
            Ok(action) => {
                self.tracker.reset(&key);
                let label = if *action == Action::await_change() {
                    ReconcileResult::Success
                } else {
                    ReconcileResult::RequeueAfter
                };
                self.metrics.observe_reconcile(name, label, elapsed);
                tracing::debug!(elapsed_ms = elapsed.as_millis(), "reconciled");
            }
            Err(error) => {
                if matches!(error, ControllerError::TimedOut(_)) {
                    self.metrics.inc_timeouts(name);
                }
                self.metrics
                    .observe_reconcile(name, ReconcileResult::Error, elapsed);
                if error.is_conflict() {
                    tracing::info!(
                        reason = error.reason(),
                        error = %error,
                        "reconcile lost a write race (409 Conflict); retrying against the newer object"
                    );
                } else {
                    tracing::error!(reason = error.reason(), error = %error, "reconcile failed");
                }
            }
        }
        result
    }

    /// Forgets the failures of an object whose retry found it deleted (kube reports the retry
    /// as `ObjectNotFound`), so `workqueue_depth` no longer counts it.
    pub fn forget_deleted(&self, namespace: Option<&str>, name: &str) {
        let object = format!("{}/{name}", namespace.unwrap_or_default());
        if self.tracker.forget_object(&object) {
            self.metrics
                .set_queue_depth(&self.options.name, self.tracker.pending_retries());
        }
    }

    /// kube's `error_policy`: a permanent error waits for a change; anything else is retried
    /// after the object's next backoff delay. With [`Guarded::with_error_events`], a failure
    /// that is neither permanent (the family reports those itself), a lost write race (409)
    /// nor throttling (429) is also told on the object as a Warning Event `ReconcileFailed`
    /// with the error, on the failures [`reports_failure`] picks.
    pub fn error_policy(&self, obj: &K, error: &ControllerError<E>) -> Action
    where
        K::DynamicType: Default,
    {
        let name = self.options.name.as_str();
        let key = object_key(obj);
        if error.is_permanent() {
            self.tracker.reset(&key);
            self.metrics.inc_terminal_errors(name);
            self.metrics
                .set_queue_depth(name, self.tracker.pending_retries());
            return Action::await_change();
        }
        let object = format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any());
        let (failures, delay) = self.tracker.next_retry_of(&key, &object);
        if let Some(recorders) = &self.events
            && !error.is_conflict()
            && !error.is_throttled()
            && reports_failure(failures)
        {
            let recorders = recorders.clone();
            let controller = name.to_owned();
            let regarding = obj.object_ref(&K::DynamicType::default());
            let event = Event {
                type_: EventType::Warning,
                reason: REASON_RECONCILE_FAILED.into(),
                note: Some(format!(
                    "{error} (failure {failures} in a row; retrying in {:.1}s)",
                    delay.as_secs_f64()
                )),
                action: "Reconcile".into(),
                secondary: None,
            };
            let publisher = recorders.clone();
            recorders.spawn(async move {
                publisher.publish_new(&controller, &event, &regarding).await;
            });
        }
        self.metrics.inc_retries(name);
        self.metrics
            .set_queue_depth(name, self.tracker.pending_retries());
        tracing::debug!(
            controller = name,
            object = %key,
            failures,
            delay_ms = delay.as_millis(),
            "retrying after backoff"
        );
        Action::requeue(delay)
    }
}

/// One controller ready to run: a name (for health and logs) and the future that runs it until
/// shutdown. Families return these from [`super::manager::Family::build`]; the manager spawns
/// them.
pub struct ControllerTask {
    /// Controller name.
    pub name: String,
    /// Runs the controller; resolves after shutdown once in-flight reconciles have finished.
    pub future: BoxFuture<'static, ()>,
}

impl Debug for ControllerTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControllerTask")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Builds the task that runs one controller under the runtime contract.
///
/// * `primary`: a subscription to the watched primary kind, from
///   [`super::watches::SharedWatches::subscribe`].
/// * `configure`: adds relations to the `Controller`, e.g.
///   `|c| c.owns_shared_stream(jobs.stream)` or
///   `|c| c.watches_shared_stream(cms.stream, mapper)`; return it unchanged when there are none.
///   It is not called in `--legacy-watch` mode, where only primary changes trigger reconciles.
/// * `reconcile`: `Fn(Arc<K>, Arc<Ctx>) -> impl Future<Output = Result<Action, E>>` with
///   `E: ReconcileError`.
///
/// The controller runs with `--max-concurrent-reconciles`, per-object dedupe, the reconcile
/// deadline, panic isolation, per-object backoff and metrics (see [`Guarded`]). It stops taking
/// new work when the runtime's shutdown token fires and resolves once in-flight reconciles are
/// done. In `--legacy-watch` mode it reconciles primary objects one at a time as the watch
/// delivers them, without queue, concurrency or retries.
pub fn controller_task<K, Ctx, E, F, Fut>(
    rt: &RuntimeContext,
    name: &str,
    primary: SharedWatch<K>,
    configure: impl FnOnce(Controller<K>) -> Controller<K> + Send + 'static,
    reconcile: F,
    ctx: Arc<Ctx>,
) -> ControllerTask
where
    K: Clone + Resource + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone + Default + Debug + Unpin + Send + Sync,
    Ctx: Send + Sync + 'static,
    E: ReconcileError,
    F: Fn(Arc<K>, Arc<Ctx>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Action, E>> + Send + 'static,
{
    controller_task_with(
        rt,
        ControllerOptions::from_context(rt, name),
        primary,
        configure,
        reconcile,
        ctx,
    )
}

/// [`controller_task`] with explicit [`ControllerOptions`] (its own concurrency, deadline or
/// backoff schedule instead of the runtime-wide flags).
pub fn controller_task_with<K, Ctx, E, F, Fut>(
    rt: &RuntimeContext,
    options: ControllerOptions,
    primary: SharedWatch<K>,
    configure: impl FnOnce(Controller<K>) -> Controller<K> + Send + 'static,
    reconcile: F,
    ctx: Arc<Ctx>,
) -> ControllerTask
where
    K: Clone + Resource + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone + Default + Debug + Unpin + Send + Sync,
    Ctx: Send + Sync + 'static,
    E: ReconcileError,
    F: Fn(Arc<K>, Arc<Ctx>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Action, E>> + Send + 'static,
{
    let name = options.name.clone();
    let error_events = options.error_events;
    let mut guard = Guarded::new(options, rt.metrics.controllers().clone(), reconcile, ctx);
    if error_events {
        guard = guard.with_error_events(rt.recorders.clone());
    }
    let guard = Arc::new(guard);
    let shutdown = rt.shutdown.clone();
    let legacy = rt.settings.legacy_watch;
    let task_name = name.clone();
    let future = async move {
        if legacy {
            tracing::info!(controller = %task_name, "running in --legacy-watch mode");
            let mut objects = std::pin::pin!(primary.stream.take_until(shutdown.cancelled_owned()));
            while let Some(obj) = objects.next().await {
                let _ = guard.reconcile(obj).await;
            }
            return;
        }
        let controller = configure(Controller::for_shared_stream(
            primary.stream,
            primary.reader,
        ));
        run_guarded(controller, guard, shutdown).await;
    }
    .boxed();
    ControllerTask { name, future }
}

/// Runs `controller` with `guard` as reconcile and error policy, at the guard's concurrency,
/// until `shutdown` is cancelled and in-flight reconciles have finished. Errors on the result
/// stream are logged (reconcile errors were already logged by the guard).
pub async fn run_guarded<K, Ctx, E, F, Fut>(
    controller: Controller<K>,
    guard: Arc<Guarded<K, Ctx, E, F>>,
    shutdown: CancellationToken,
) where
    K: Clone + Resource + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone + Default + Debug + Unpin + Send + Sync,
    Ctx: Send + Sync + 'static,
    E: ReconcileError,
    F: Fn(Arc<K>, Arc<Ctx>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Action, E>> + Send + 'static,
{
    let name = guard.options().name.clone();
    let config = controller::Config::default().concurrency(guard.options().concurrency);
    controller
        .with_config(config)
        .graceful_shutdown_on(shutdown.cancelled_owned())
        .run(
            |obj, guard: Arc<Guarded<K, Ctx, E, F>>| async move { guard.reconcile(obj).await },
            |obj, error, guard| guard.error_policy(&obj, error),
            guard.clone(),
        )
        .for_each(|item| {
            match item {
                Ok(_) | Err(controller::Error::ReconcilerFailed(..)) => {}
                Err(controller::Error::ObjectNotFound(obj)) => {
                    tracing::debug!(controller = %name, object = %obj, "object deleted before its reconcile");
                    guard.forget_deleted(obj.namespace.as_deref(), &obj.name);
                }
                Err(controller::Error::QueueError(error)) => {
                    tracing::warn!(controller = %name, %error, "watch error");
                }
                Err(error) => {
                    tracing::error!(controller = %name, %error, "controller error");
                }
            }
            futures::future::ready(())
        })
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--max-retry-backoff` is the longest retry delay of every controller built from the
    /// runtime settings.
    #[tokio::test]
    async fn controllers_take_the_retry_limit_from_the_settings() {
        let (service, _handle) = tower_test::mock::pair::<
            http::Request<kube::client::Body>,
            http::Response<kube::client::Body>,
        >();
        let client = kube::Client::new(service, "default");
        let args = crate::runtime::config::RunArgs {
            max_retry_backoff: Duration::from_secs(30),
            ..crate::runtime::config::RunArgs::default()
        };
        let settings = crate::runtime::config::Settings::resolve(
            &args,
            &crate::runtime::config::Environment::fixed([("POD_NAME", "t")], None),
        )
        .unwrap();
        let rt = RuntimeContext {
            recorders: EventRecorders::new(client.clone(), "t"),
            client,
            settings: Arc::new(settings),
            metrics: crate::runtime::metrics::Metrics::new(),
            health: crate::runtime::probes::HealthState::new(),
            leading: tokio::sync::watch::channel(true).1,
            shutdown: CancellationToken::new(),
        };
        let options = ControllerOptions::from_context(&rt, "c");
        assert_eq!(options.backoff.max, Duration::from_secs(30));
        assert_eq!(options.backoff.delay(40), Duration::from_secs(30));
    }

    /// A family error that wraps a kube error, as the families' `thiserror` enums do.
    #[derive(Debug, thiserror::Error)]
    #[error("cannot write the object: {source}")]
    struct Wrapped {
        #[source]
        source: kube::Error,
    }

    impl ReconcileError for Wrapped {
        fn reason(&self) -> &'static str {
            "WriteFailed"
        }
    }

    fn api_error(code: u16) -> Wrapped {
        Wrapped {
            source: kube::Error::Api(
                kube::core::Status::failure("the object has been modified", "Conflict")
                    .with_code(code)
                    .boxed(),
            ),
        }
    }

    #[test]
    fn a_409_anywhere_in_the_source_chain_is_a_conflict() {
        assert!(ControllerError::Reconcile(api_error(409)).is_conflict());
    }

    #[test]
    fn other_api_errors_panics_and_timeouts_are_not_conflicts() {
        assert!(!ControllerError::Reconcile(api_error(500)).is_conflict());
        assert!(!ControllerError::Reconcile(api_error(404)).is_conflict());
        assert!(
            !ControllerError::<Wrapped>::Panicked {
                message: "boom".into()
            }
            .is_conflict()
        );
        assert!(!ControllerError::<Wrapped>::TimedOut(Duration::from_secs(1)).is_conflict());
    }
}
