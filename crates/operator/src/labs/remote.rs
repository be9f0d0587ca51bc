//! Writes on a provisioned target cluster, through the kubeconfig of its claim's connection
//! Secret: the experiment's Namespace there, the copy of the hub's Tailscale OAuth Secret and
//! the other targets' kubeconfigs.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::{
    Api, Client, Config,
    api::{Patch, PatchParams},
    config::{KubeConfigOptions, Kubeconfig},
};

use super::reconcile::FIELD_MANAGER;

/// How long a connection to a target cluster may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one request to a target cluster may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// Why a write on a target cluster did not happen.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The connection Secret's kubeconfig cannot be turned into a client.
    #[error("the kubeconfig in {secret} cannot be used: {message}")]
    Kubeconfig {
        /// `namespace/name` of the connection Secret.
        secret: String,
        /// What is wrong with it.
        message: String,
    },
    /// The target's API server refused or did not answer.
    #[error("writing {what} on the target cluster failed: {source}")]
    Write {
        /// `Namespace x` or `Secret ns/name`.
        what: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
}

/// A client for the cluster described by `kubeconfig` (its current context), read from the
/// connection Secret `secret` (named in errors). Requests time out after a few seconds, so an
/// unreachable target never holds a reconcile for long.
pub async fn client(kubeconfig: &str, secret: &str) -> Result<Client, RemoteError> {
    let bad = |message: String| RemoteError::Kubeconfig {
        secret: secret.to_owned(),
        message,
    };
    let parsed = Kubeconfig::from_yaml(kubeconfig).map_err(|e| bad(e.to_string()))?;
    let mut config = Config::from_custom_kubeconfig(parsed, &KubeConfigOptions::default())
        .await
        .map_err(|e| bad(e.to_string()))?;
    config.connect_timeout = Some(CONNECT_TIMEOUT);
    config.read_timeout = Some(REQUEST_TIMEOUT);
    config.write_timeout = Some(REQUEST_TIMEOUT);
    Client::try_from(config).map_err(|e| bad(e.to_string()))
}

/// Applies `namespace` on the target behind `client` (server-side apply, so repeating it
/// changes nothing).
pub async fn apply_namespace(client: &Client, namespace: &Namespace) -> Result<(), RemoteError> {
    let name = namespace.metadata.name.clone().unwrap_or_default();
    Api::<Namespace>::all(client.clone())
        .patch(&name, &apply_params(), &Patch::Apply(namespace))
        .await
        .map_err(|source| RemoteError::Write {
            what: format!("Namespace {name}"),
            source,
        })?;
    Ok(())
}

/// Applies `secret` on the target behind `client`, like [`apply_namespace`].
pub async fn apply_secret(client: &Client, secret: &Secret) -> Result<(), RemoteError> {
    let name = secret.metadata.name.clone().unwrap_or_default();
    let namespace = secret.metadata.namespace.clone().unwrap_or_default();
    Api::<Secret>::namespaced(client.clone(), &namespace)
        .patch(&name, &apply_params(), &Patch::Apply(secret))
        .await
        .map_err(|source| RemoteError::Write {
            what: format!("Secret {namespace}/{name}"),
            source,
        })?;
    Ok(())
}

fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_kubeconfig_that_is_not_yaml_is_named_in_the_error() {
        let Err(e) = client("{{ not yaml", "clusters/gw-app-conn").await else {
            panic!("a client from text that is not YAML");
        };
        let text = e.to_string();
        assert!(text.contains("clusters/gw-app-conn"), "{text}");
    }

    #[tokio::test]
    async fn a_kubeconfig_without_its_current_context_is_refused() {
        let kc = "apiVersion: v1\nkind: Config\ncurrent-context: missing\nclusters: []\ncontexts: []\nusers: []\n";
        let Err(e) = client(kc, "clusters/x").await else {
            panic!("a client without a context");
        };
        assert!(matches!(e, RemoteError::Kubeconfig { .. }), "{e}");
    }

    #[tokio::test]
    async fn a_plain_kubeconfig_gives_a_client_for_its_server() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let kc = "apiVersion: v1\nkind: Config\ncurrent-context: t\nclusters:\n- name: t\n  cluster:\n    server: http://127.0.0.1:1\ncontexts:\n- name: t\n  context:\n    cluster: t\n    user: u\nusers:\n- name: u\n  user:\n    token: abc\n";
        let client = client(kc, "clusters/t").await.unwrap();
        // Nothing listens on port 1: the request fails as a connection error, promptly.
        let e = Api::<Namespace>::all(client).get("x").await.unwrap_err();
        assert!(!matches!(e, kube::Error::Api(_)), "{e}");
    }
}
