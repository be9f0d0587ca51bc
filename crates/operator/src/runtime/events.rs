//! Kubernetes Event recorders, one per controller.
//!
//! kube's `Recorder` deduplicates repeated events (turning them into `series.count` updates)
//! with a cache that lives in the recorder, so every controller must share one recorder rather
//! than create one per reconcile. [`EventRecorders::recorder`] hands out that shared instance.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::{
    Client,
    runtime::events::{Event, Recorder, Reporter},
};

/// Field manager and `reportingController` prefix used by this operator.
pub const REPORTING_CONTROLLER: &str = "agentic-operator";

/// Creates and caches one [`Recorder`] per controller name.
#[derive(Clone)]
pub struct EventRecorders {
    client: Client,
    instance: String,
    recorders: Arc<Mutex<HashMap<String, Arc<Recorder>>>>,
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
        }
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

/// Publishes a Warning Event `reason` about `regarding` with `error` as its note (cut to
/// 1,000 characters, the API server's limit).
pub async fn warning(
    recorder: &Recorder,
    reason: &str,
    error: &impl std::fmt::Display,
    regarding: &ObjectReference,
) {
    let event = Event {
        type_: kube::runtime::events::EventType::Warning,
        reason: reason.into(),
        note: Some(error.to_string().chars().take(1000).collect()),
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
}
