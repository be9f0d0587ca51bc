//! The validating admission webhook, served over HTTPS by every replica (leader or not).
//!
//! [`rules`] holds the pure checks per kind (evaluation `Experiment`, `AgenticSession`, labs
//! `Experiment`); [`server`] serves them with certificates reloaded from a mounted Secret.
//! docs/webhook.md describes what is validated and how to install it.

pub mod rules;
pub mod server;

use std::{path::PathBuf, sync::Arc};

use tokio_util::sync::CancellationToken;

use crate::labs::config::LabsConfig;
use crate::runtime::{
    config::{BindAddress, Settings},
    manager::Manager,
    startup::{self, RunError},
};

/// Where and with which certificates the webhook is served, and the labs configuration its
/// labs checks use.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookOptions {
    /// `--webhook-bind-address`.
    pub address: BindAddress,
    /// `--webhook-cert-dir`.
    pub cert_dir: PathBuf,
    /// The labs configuration (`--labs-config`, `--labs-provisioning-timeout`): cluster types
    /// and claim name lengths are checked against it. `None` leaves those checks to the
    /// controller.
    pub labs: Option<Arc<LabsConfig>>,
}

impl WebhookOptions {
    /// The webhook options of `settings`. A labs configuration that does not load gives
    /// `None` here, with a warning; the labs controller then stops the operator with the
    /// reason.
    pub fn from_settings(settings: &Settings) -> Self {
        let labs = match LabsConfig::resolve(
            settings.labs.config.as_deref(),
            settings.labs.provisioning_timeout,
        ) {
            Ok(config) => Some(Arc::new(config)),
            Err(error) => {
                tracing::warn!(%error, "the admission webhook leaves the labs cluster-type and claim-name checks to the controller");
                None
            }
        };
        Self {
            address: settings.webhook_address,
            cert_dir: settings.webhook_cert_dir.clone(),
            labs,
        }
    }
}

/// Runs the operator like [`Manager::run`], with the admission webhook served next to it on
/// this replica (whether or not it leads) until the manager has stopped.
pub async fn run_with_webhook(manager: Manager, options: WebhookOptions) -> Result<(), RunError> {
    let shutdown = CancellationToken::new();
    crate::runtime::shutdown::spawn_signal_handler(shutdown.clone());
    let client = startup::connect(manager.settings().api_rate).await?;
    let manager = match startup::lease_client(manager.settings().api_rate).await? {
        Some(lease) => manager.with_lease_client(lease),
        None => manager,
    };
    serve_and_run(manager, options, client, shutdown).await
}

/// Serves the webhook and runs `manager` with `client` until `shutdown` (or a fatal error).
/// The webhook keeps answering until the manager has finished, in-flight reconciles and the
/// Lease release included, not only until the signal: the API server may still send reviews
/// to a terminating pod until its endpoint is removed everywhere.
pub async fn serve_and_run(
    manager: Manager,
    options: WebhookOptions,
    client: kube::Client,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let stop_webhook = CancellationToken::new();
    let _stop_webhook_on_return = stop_webhook.clone().drop_guard();
    if let BindAddress::Listen(address) = options.address {
        server::serve(
            address,
            &options.cert_dir,
            client.clone(),
            options.labs.clone(),
            stop_webhook,
        )
        .await
        .map_err(|e| RunError::Bind {
            address: address.to_string(),
            purpose: "admission webhook",
            flag: "webhook-bind-address",
            detail: e.to_string(),
        })?;
    }
    manager.run_with_client(client, shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::config::{Environment, RunArgs};

    fn settings(labs_config: Option<&str>) -> Settings {
        let args = RunArgs {
            labs_config: labs_config.map(PathBuf::from),
            ..RunArgs::default()
        };
        Settings::resolve(&args, &Environment::fixed([("POD_NAME", "t")], None)).unwrap()
    }

    /// The webhook checks labs Experiments against the configuration the replica loads; one
    /// that does not load leaves those checks to the controller instead of failing here.
    #[test]
    fn the_labs_configuration_is_loaded_for_the_webhook() {
        let options = WebhookOptions::from_settings(&settings(None));
        assert_eq!(options.labs.as_deref(), Some(&LabsConfig::default()));
        let options = WebhookOptions::from_settings(&settings(Some("/nonexistent/labs.yaml")));
        assert_eq!(options.labs, None);
    }
}
