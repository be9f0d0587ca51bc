//! Connecting to the cluster, and the errors that stop the operator.
//!
//! Every variant of [`RunError`] renders as one line that says what is wrong and what to do.

use std::time::Duration;

use kube::{Client, Config, client::ClientBuilder};
use tower::limit::RateLimitLayer;

use super::{
    config::{ApiRate, ConfigError},
    leader::LeaseError,
    watches::WatchError,
};

/// How long the start-up reachability check waits for the API server.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the operator could not start, or stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A flag or environment value is invalid.
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// Neither a kubeconfig nor an in-cluster service account was found.
    #[error(
        "no Kubernetes configuration found ({detail}); set KUBECONFIG or create ~/.kube/config, or run the operator in a pod with a service account"
    )]
    NoKubeconfig {
        /// What the client library reported.
        detail: String,
    },
    /// The configuration was found but a client could not be built from it.
    #[error(
        "cannot build a Kubernetes client from the configuration ({detail}); check the certificates and credentials in your kubeconfig"
    )]
    Client {
        /// What the client library reported.
        detail: String,
    },
    /// The API server did not answer.
    #[error(
        "cannot reach the Kubernetes API server at {url} ({detail}); check that the cluster is running and that the server address in your kubeconfig is reachable from here"
    )]
    Unreachable {
        /// The server URL from the configuration.
        url: String,
        /// The connection error.
        detail: String,
    },
    /// The API server rejected the credentials.
    #[error(
        "the Kubernetes API server at {url} rejected our credentials (401 Unauthorized); refresh the token or client certificate in your kubeconfig"
    )]
    Unauthorized {
        /// The server URL from the configuration.
        url: String,
    },
    /// Leader election failed (403 on the Lease, or leadership lost).
    #[error(transparent)]
    Lease(#[from] LeaseError),
    /// A probe or metrics address could not be bound.
    #[error(
        "cannot listen on {address} for {purpose} ({detail}); pick a free address with --{flag}, or --{flag}=0 to disable it"
    )]
    Bind {
        /// The address.
        address: String,
        /// `metrics` or `health probes`.
        purpose: &'static str,
        /// The flag that sets the address.
        flag: &'static str,
        /// The OS error.
        detail: String,
    },
    /// `--controllers` names a family whose CRD is missing.
    #[error(
        "--controllers includes {family}, but CRD {crd} is not installed; install the CRDs (agentic-operator crd | kubectl apply -f -) or remove {family} from --controllers"
    )]
    MissingCrd {
        /// The family.
        family: String,
        /// The missing CRD (`plural.group`).
        crd: String,
    },
    /// `--controllers` names a family this build does not contain.
    #[error(
        "--controllers includes {family}, but this build of agentic-operator does not contain that family"
    )]
    FamilyNotBuilt {
        /// The family.
        family: String,
    },
    /// API discovery failed while checking for CRDs.
    #[error(
        "cannot check whether CRD {crd} is installed ({detail}); grant the service account discovery access or pass --controllers explicitly"
    )]
    Discovery {
        /// The CRD being checked.
        crd: String,
        /// The error.
        detail: String,
    },
    /// A family could not build its controllers.
    #[error("the {family} controllers could not start: {detail}")]
    FamilyBuild {
        /// The family.
        family: String,
        /// The error.
        detail: String,
    },
    /// A shared watch could not be set up.
    #[error(transparent)]
    Watch(#[from] WatchError),
    /// A controller loop ended while the operator was not shutting down.
    #[error("controller {name} stopped unexpectedly; the operator exits so that it is restarted")]
    ControllerStopped {
        /// The controller.
        name: String,
    },
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// An error and its sources as one line, skipping messages already contained in the previous
/// one (kube includes sources in its own messages).
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = vec![one_line(&error.to_string())];
    let mut source = error.source();
    while let Some(inner) = source {
        let message = one_line(&inner.to_string());
        if !parts.iter().any(|p| p.contains(&message)) {
            parts.push(message);
        }
        source = inner.source();
    }
    parts.join(": ")
}

/// Loads the kubeconfig (or in-cluster configuration) and builds a client, without I/O to the
/// API server.
pub async fn load_client(rate: Option<ApiRate>) -> Result<(Client, String), RunError> {
    let config = Config::infer().await.map_err(|e| RunError::NoKubeconfig {
        detail: error_chain(&e),
    })?;
    let url = config.cluster_url.to_string();
    Ok((build_client(config, rate)?, url))
}

/// A client for `config`. With a rate, every request of every clone of the client (watches
/// count once, when they start) waits for its turn: at most `burst` at once and `qps` per
/// second on average, like client-go's `--kube-api-qps`/`--kube-api-burst`.
pub fn build_client(config: Config, rate: Option<ApiRate>) -> Result<Client, RunError> {
    let builder = ClientBuilder::try_from(config).map_err(|e| RunError::Client {
        detail: error_chain(&e),
    })?;
    Ok(match rate {
        Some(rate) => builder.with_layer(&rate_limit(rate)).build(),
        None => builder.build(),
    })
}

/// The request rate limit of [`build_client`].
pub fn rate_limit(rate: ApiRate) -> RateLimitLayer {
    let (requests, per) = rate.window();
    RateLimitLayer::new(requests, per)
}

/// Checks that the API server answers `GET /version` within [`CONNECT_TIMEOUT`].
pub async fn check_reachable(client: &Client, url: &str) -> Result<(), RunError> {
    match tokio::time::timeout(CONNECT_TIMEOUT, client.apiserver_version()).await {
        Ok(Err(kube::Error::Api(status))) if status.code == 401 => Err(RunError::Unauthorized {
            url: url.to_owned(),
        }),
        // Any other HTTP answer means the server is there; later calls report their own errors.
        Ok(Ok(_) | Err(kube::Error::Api(_))) => Ok(()),
        Ok(Err(error)) => Err(RunError::Unreachable {
            url: url.to_owned(),
            detail: error_chain(&error),
        }),
        Err(_) => Err(RunError::Unreachable {
            url: url.to_owned(),
            detail: format!("no answer within {}s", CONNECT_TIMEOUT.as_secs()),
        }),
    }
}

/// The client leader election uses under a request rate limit (`rate`): one without the
/// limit, so that Lease renewals never wait behind the controllers' requests. `None` without a
/// limit (the controllers' client is then used).
pub async fn lease_client(rate: Option<ApiRate>) -> Result<Option<Client>, RunError> {
    if rate.is_none() {
        return Ok(None);
    }
    Ok(Some(load_client(None).await?.0))
}

/// [`load_client`] followed by [`check_reachable`].
pub async fn connect(rate: Option<ApiRate>) -> Result<Client, RunError> {
    let (client, url) = load_client(rate).await?;
    check_reachable(&client, &url).await?;
    Ok(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The limit lets `burst` requests through at once and holds the next one (the refill
    /// rate is `ApiRate::window`'s, tested with the flags).
    #[tokio::test]
    async fn the_rate_limit_holds_requests_beyond_the_burst() {
        use tower::{Layer, Service, ServiceExt};
        let layer = rate_limit(ApiRate { qps: 1, burst: 2 });
        let mut svc = layer.layer(tower::service_fn(|n: u32| async move {
            Ok::<_, std::convert::Infallible>(n)
        }));
        for n in 0..2 {
            assert_eq!(svc.ready().await.unwrap().call(n).await.unwrap(), n);
        }
        assert!(
            futures::poll!(std::pin::pin!(svc.ready())).is_pending(),
            "a third request within the window waits"
        );
    }

    /// A rate-limited client built from a kubeconfig talks to the API server as usual.
    #[tokio::test]
    async fn a_rate_limited_client_works() {
        let dc = devcluster::DevCluster::start().await.unwrap();
        let kubeconfig = kube::config::Kubeconfig::read_from(dc.kubeconfig_path()).unwrap();
        let config =
            Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
                .await
                .unwrap();
        let client = build_client(config, Some(ApiRate { qps: 50, burst: 5 })).unwrap();
        let namespaces: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(client);
        for _ in 0..10 {
            assert!(
                !namespaces
                    .list(&kube::api::ListParams::default())
                    .await
                    .unwrap()
                    .items
                    .is_empty()
            );
        }
        dc.shutdown().await;
    }

    #[test]
    fn messages_are_one_line_and_actionable() {
        let cases = [
            RunError::NoKubeconfig {
                detail: "failed to read kubeconfig\nand more".into(),
            },
            RunError::Unreachable {
                url: "https://127.0.0.1:1/".into(),
                detail: one_line("connection refused\n"),
            },
            RunError::Unauthorized {
                url: "https://x/".into(),
            },
            RunError::Lease(LeaseError::Forbidden {
                verb: "get",
                namespace: "ops".into(),
                name: "agentic-operator-leader".into(),
            }),
            RunError::MissingCrd {
                family: "labs".into(),
                crd: "experiments.experiments.illm.io".into(),
            },
        ];
        let hints = [
            "KUBECONFIG",
            "reachable",
            "refresh",
            "grant",
            "install the CRDs",
        ];
        for (error, hint) in cases.iter().zip(hints) {
            let text = error.to_string();
            assert!(
                !text.contains('\n') || matches!(error, RunError::NoKubeconfig { .. }),
                "{text}"
            );
            assert!(text.contains(hint), "{text} should mention {hint}");
        }
        assert_eq!(one_line("a\n  b\tc"), "a b c");
    }
}
