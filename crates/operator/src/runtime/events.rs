//! Kubernetes Event recorders, one per controller.
//!
//! kube's `Recorder` deduplicates repeated events (turning them into `series.count` updates)
//! with a cache that lives in the recorder, so every controller must share one recorder rather
//! than create one per reconcile. [`EventRecorders::recorder`] hands out that shared instance.

use std::{
    collections::HashMap,
    future::Future,
    sync::{Arc, Mutex, PoisonError},
};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::{
    Client,
    runtime::events::{Event, EventType, Recorder, Reporter},
};
use tokio_util::task::TaskTracker;

/// Field manager and `reportingController` prefix used by this operator.
pub const REPORTING_CONTROLLER: &str = "agentic-operator";

/// Creates and caches one [`Recorder`] per controller name, and tracks the Events published
/// in the background so a graceful shutdown can wait for them.
#[derive(Clone)]
pub struct EventRecorders {
    client: Client,
    instance: String,
    recorders: Arc<Mutex<HashMap<String, Arc<Recorder>>>>,
    background: TaskTracker,
}

impl std::fmt::Debug for EventRecorders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventRecorders")
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

impl EventRecorders {
    /// Recorders that publish through `client`, reporting `instance` (the pod name) as
    /// `reportingInstance`.
    pub fn new(client: Client, instance: impl Into<String>) -> Self {
        Self {
            client,
            instance: instance.into(),
            recorders: Arc::new(Mutex::new(HashMap::new())),
            background: TaskTracker::new(),
        }
    }

    /// Runs `publishing` (an Event being published) in the background, for callers that
    /// cannot wait for it (a synchronous error policy, a reconcile that must not be slowed by
    /// its Events). [`EventRecorders::flush`] waits for it.
    pub fn spawn(&self, publishing: impl Future<Output = ()> + Send + 'static) {
        self.background.spawn(publishing);
    }

    /// The tracker of the background Events, for code that holds no [`EventRecorders`].
    pub fn background(&self) -> TaskTracker {
        self.background.clone()
    }

    /// Waits until every Event published in the background has been written (or has failed).
    /// Used at shutdown, after the controllers have drained; later [`EventRecorders::spawn`]s
    /// still run.
    pub async fn flush(&self) {
        self.background.close();
        self.background.wait().await;
        self.background.reopen();
    }

    /// The shared recorder for `controller`; its `reportingController` is
    /// `agentic-operator/<controller>`.
    pub fn recorder(&self, controller: &str) -> Arc<Recorder> {
        let mut map = self
            .recorders
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        map.entry(controller.to_owned())
            .or_insert_with(|| {
                Arc::new(Recorder::new(
                    self.client.clone(),
                    Reporter {
                        controller: format!("{REPORTING_CONTROLLER}/{controller}"),
                        instance: Some(self.instance.clone()),
                    },
                ))
            })
            .clone()
    }
}

impl EventRecorders {
    /// Publishes `event` about `regarding` for `controller` as a new Event object, never as a
    /// repeat of an earlier one. A [`Recorder`] merges Events with the same type, reason and
    /// action about the same object into the first one's series and keeps that one's note;
    /// this is for Events whose note changes (each says what failed this time), published
    /// rarely enough that one object each is cheap. Failures are logged, as in [`publish`].
    pub async fn publish_new(&self, controller: &str, event: &Event, regarding: &ObjectReference) {
        let now = jiff::Timestamp::now();
        let namespace = regarding
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_owned());
        let reporting_controller = format!("{REPORTING_CONTROLLER}/{controller}");
        let object = k8s_openapi::api::events::v1::Event {
            metadata: kube::api::ObjectMeta {
                name: Some(format!(
                    "{}.{:x}",
                    regarding.name.as_deref().unwrap_or(controller),
                    now.as_nanosecond()
                )),
                namespace: Some(namespace.clone()),
                ..kube::api::ObjectMeta::default()
            },
            action: Some(event.action.clone()),
            reason: Some(event.reason.clone()),
            note: event.note.as_deref().map(cut_note),
            type_: Some(
                match event.type_ {
                    EventType::Normal => "Normal",
                    EventType::Warning => "Warning",
                }
                .to_owned(),
            ),
            event_time: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
                now,
            )),
            regarding: Some(regarding.clone()),
            related: event.secondary.clone(),
            reporting_controller: Some(reporting_controller),
            reporting_instance: Some(self.instance.clone()),
            ..k8s_openapi::api::events::v1::Event::default()
        };
        let api: kube::Api<k8s_openapi::api::events::v1::Event> =
            kube::Api::namespaced(self.client.clone(), &namespace);
        if let Err(error) = api.create(&kube::api::PostParams::default(), &object).await {
            tracing::warn!(%error, reason = %event.reason, "cannot publish Event");
        }
    }
}

/// `text` cut to the 1,024 bytes an Event's note may have (at a character boundary, ending
/// in `...` when cut).
pub fn cut_note(text: &str) -> String {
    const MAX_NOTE: usize = 1024;
    if text.len() <= MAX_NOTE {
        return text.to_owned();
    }
    let mut end = MAX_NOTE - 3;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

/// Publishes `event` about `regarding` without failing the caller: Events are advisory, so a
/// failure to record one (RBAC, a conflict, the API server being busy) is logged at WARN with
/// the Event's reason and otherwise ignored.
pub async fn publish(recorder: &Recorder, event: &Event, regarding: &ObjectReference) {
    if let Err(error) = recorder.publish(event, regarding).await {
        tracing::warn!(%error, reason = %event.reason, "cannot publish Event");
    }
}

/// Publishes a Warning Event `InvalidObject` about `regarding`, a cached object that does not
/// read as its kind, with `error` (which names the field) as its note.
pub async fn invalid_object(
    recorder: &Recorder,
    error: &impl std::fmt::Display,
    regarding: &ObjectReference,
) {
    warning(recorder, "InvalidObject", error, regarding).await;
}

/// Publishes a Warning Event `reason` about `regarding` with `error` as its note (cut to the
/// API server's limit by [`cut_note`]).
pub async fn warning(
    recorder: &Recorder,
    reason: &str,
    error: &impl std::fmt::Display,
    regarding: &ObjectReference,
) {
    let event = Event {
        type_: kube::runtime::events::EventType::Warning,
        reason: reason.into(),
        note: Some(cut_note(&error.to_string())),
        action: "Reconcile".into(),
        secondary: None,
    };
    publish(recorder, &event, regarding).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_shared_recorder_per_controller() {
        let (service, _handle) = tower_test::mock::pair::<
            http::Request<kube::client::Body>,
            http::Response<kube::client::Body>,
        >();
        let recorders = EventRecorders::new(Client::new(service, "default"), "pod-a");
        let first = recorders.recorder("agenticsession");
        let again = recorders.clone().recorder("agenticsession");
        let other = recorders.recorder("projectsettings");
        assert!(Arc::ptr_eq(&first, &again));
        assert!(!Arc::ptr_eq(&first, &other));
    }

    #[test]
    fn notes_are_cut_to_the_api_limit_at_a_character_boundary() {
        assert_eq!(cut_note("short"), "short");
        let exact = "a".repeat(1024);
        assert_eq!(cut_note(&exact), exact);
        let long = "é".repeat(1000);
        let note = cut_note(&long);
        assert!(note.len() <= 1024, "{}", note.len());
        assert!(note.ends_with("..."));
        assert!(note.trim_end_matches("...").chars().all(|c| c == 'é'));
    }
}
