//! What a run needs besides its Job, Service and credentials, in one place for the
//! controller: the namespace's `NetworkPolicy`, the copied Secrets (Vertex AI, Langfuse,
//! `MLflow`), the `MLflow` Kubernetes identity and the trusted CA bundle mount when the run
//! starts, and the release of the copies when it ends.

use agentic_api::sessions::AgenticSession;
use k8s_openapi::api::{batch::v1::Job, core::v1::Secret};
use kube::{Client, ResourceExt, runtime::events::Recorder};

use super::{
    build,
    config::SessionConfig,
    copied::{self, CopiedSecret},
    error::SessionError,
    network, trusted_ca,
};

/// Whether the `MLflow` Secret in effect asks the runner to authenticate with its Kubernetes
/// identity (`MLFLOW_TRACKING_AUTH` is `kubernetes` or `kubernetes-namespaced`).
pub fn wants_session_identity(in_effect: &[(CopiedSecret, Secret)]) -> bool {
    in_effect
        .iter()
        .filter(|(secret, _)| *secret == copied::MLFLOW)
        .filter_map(|(_, s)| s.data.as_ref()?.get("MLFLOW_TRACKING_AUTH"))
        .any(|v| build::mlflow_kubernetes_auth(&String::from_utf8_lossy(&v.0)))
}

/// Prepares the start of a run whose Job is `job` (built by [`super::build::job`]) and
/// returns the Job to create:
///
/// - applies `runner-allow-backend-only` in the session's namespace. A transient failure
///   (429, 5xx, a lost connection) stops the start and the reconcile is retried, so a run
///   never starts unprotected because of a hiccup; a refusal (403, 404, 422, ...) is logged
///   and published through `recorder` as a Warning Event, and the run starts anyway, as
///   upstream's (the policy restricts, it does not enable);
/// - copies the Secrets the settings ask for into the namespace ([`copied::ensure_copies`]:
///   a failure of the Vertex AI copy, or a transient failure of any copy, stops the start
///   and the reconcile is retried; a refusal of the Langfuse or `MLflow` copy is logged and
///   published as a Warning Event on the session, and the run starts without it);
/// - runs the pod as `ambient-session-<name>` with its token mounted when the `MLflow`
///   Secret asks for Kubernetes authentication;
/// - mounts `trusted-ca-bundle` when the namespace has one.
pub async fn ensure_run_extras(
    client: &Client,
    session: &AgenticSession,
    config: &SessionConfig,
    recorder: Option<&Recorder>,
    mut job: Job,
) -> Result<Job, SessionError> {
    let ns = session.namespace().ok_or(SessionError::NoNamespace)?;
    match network::ensure_network_policy(client, &ns, &config.backend_namespace).await {
        Ok(()) => {}
        Err(error) if error.is_transient() => return Err(error),
        Err(error) => {
            tracing::warn!(namespace = %ns, %error, "cannot apply the runner NetworkPolicy; starting the runner without it");
            if let Some(recorder) = recorder {
                let note = format!(
                    "{error}; the runner starts without the NetworkPolicy {}, so it accepts \
                     connections from anywhere",
                    network::NETWORK_POLICY
                );
                copied::warn_session(
                    recorder,
                    session,
                    network::REASON_NETWORK_POLICY_FAILED,
                    note,
                    "ApplyNetworkPolicy",
                )
                .await;
            }
        }
    }
    let in_effect = copied::ensure_copies(client, session, config, recorder).await?;
    if let Some(spec) = job.spec.as_mut() {
        if wants_session_identity(&in_effect) {
            build::with_session_service_account(&mut spec.template, &session.name_any());
        }
        trusted_ca::ensure_trusted_ca(client, &ns, &mut spec.template).await?;
    }
    Ok(job)
}

/// Cleans up after a run ended (the runner Job is being deleted): releases the session's
/// hold on the copied Secrets.
pub async fn release_run_extras(
    client: &Client,
    session: &AgenticSession,
    config: &SessionConfig,
) -> Result<(), SessionError> {
    copied::release_copies(client, session, config).await
}
