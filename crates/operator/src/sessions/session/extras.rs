//! What a run needs besides its Job, Service and credentials, in one place for the
//! controller: the namespace's `NetworkPolicy`, the Vertex AI Secret copy and the trusted CA
//! bundle mount when the run starts, and the release of the Secret copy when it ends.

use agentic_api::sessions::AgenticSession;
use k8s_openapi::api::batch::v1::Job;
use kube::{Client, ResourceExt};

use super::{config::SessionConfig, error::SessionError, network, trusted_ca, vertex};

/// Prepares the start of a run whose Job is `job` (built by [`super::build::job`]) and
/// returns the Job to create:
///
/// - applies `runner-allow-backend-only` in the session's namespace (a failure is logged and
///   the run starts anyway, as upstream: the policy restricts, it does not enable);
/// - in Vertex AI mode copies `ambient-vertex` into the namespace (a failure stops the
///   start; the reconcile is retried);
/// - mounts `trusted-ca-bundle` when the namespace has one.
pub async fn ensure_run_extras(
    client: &Client,
    session: &AgenticSession,
    config: &SessionConfig,
    mut job: Job,
) -> Result<Job, SessionError> {
    let ns = session.namespace().ok_or(SessionError::NoNamespace)?;
    if let Err(error) = network::ensure_network_policy(client, &ns, &config.backend_namespace).await
    {
        tracing::warn!(namespace = %ns, %error, "cannot apply the runner NetworkPolicy; starting the runner without it");
    }
    vertex::ensure_vertex_secret(client, session, config).await?;
    if let Some(spec) = job.spec.as_mut() {
        trusted_ca::ensure_trusted_ca(client, &ns, &mut spec.template).await?;
    }
    Ok(job)
}

/// Cleans up after a run ended (the runner Job is being deleted): releases the session's
/// hold on the Vertex AI Secret copy.
pub async fn release_run_extras(
    client: &Client,
    session: &AgenticSession,
    config: &SessionConfig,
) -> Result<(), SessionError> {
    vertex::release_vertex_secret(client, session, config).await
}
