//! The per-namespace `NetworkPolicy` `runner-allow-backend-only`: runner pods accept
//! connections only from the backend's namespace, on the AG-UI port.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::networking::v1::{
        NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
        NetworkPolicySpec,
    },
    apimachinery::pkg::{
        apis::meta::v1::{LabelSelector, ObjectMeta},
        util::intstr::IntOrString,
    },
};
use kube::{
    Api, Client,
    api::{Patch, PatchParams},
};

use super::{build::AGUI_PORT, error::SessionError};
use crate::runtime::events::REPORTING_CONTROLLER;

/// Name of the policy (one per session namespace).
pub const NETWORK_POLICY: &str = "runner-allow-backend-only";
/// `ambient-code.io/managed-by` label value of the policy.
pub const MANAGED_BY: &str = "operator";
/// Reason of the Warning Event when a run starts without the policy because the API server
/// refused it (a transient failure is retried instead).
pub const REASON_NETWORK_POLICY_FAILED: &str = "NetworkPolicyFailed";

/// The policy for `namespace`: pods labelled `app=ambient-code-runner` accept TCP on the
/// AG-UI port from pods of the namespace `backend_namespace` only. It has no owner: it is
/// shared by every session of the namespace and stays when they are deleted (as upstream).
pub fn network_policy(namespace: &str, backend_namespace: &str) -> NetworkPolicy {
    NetworkPolicy {
        metadata: ObjectMeta {
            name: Some(NETWORK_POLICY.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some(BTreeMap::from([
                (
                    agentic_api::sessions::LABEL_APP.to_owned(),
                    super::build::APP_SERVICE.to_owned(),
                ),
                (
                    "ambient-code.io/managed-by".to_owned(),
                    MANAGED_BY.to_owned(),
                ),
            ])),
            ..ObjectMeta::default()
        },
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([(
                    agentic_api::sessions::LABEL_APP.to_owned(),
                    agentic_api::sessions::APP_RUNNER.to_owned(),
                )])),
                ..LabelSelector::default()
            }),
            policy_types: Some(vec!["Ingress".to_owned()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: Some(vec![NetworkPolicyPeer {
                    namespace_selector: Some(LabelSelector {
                        match_labels: Some(BTreeMap::from([(
                            "kubernetes.io/metadata.name".to_owned(),
                            backend_namespace.to_owned(),
                        )])),
                        ..LabelSelector::default()
                    }),
                    ..NetworkPolicyPeer::default()
                }]),
                ports: Some(vec![NetworkPolicyPort {
                    protocol: Some("TCP".to_owned()),
                    port: Some(IntOrString::Int(AGUI_PORT)),
                    end_port: None,
                }]),
            }]),
            egress: None,
        }),
    }
}

/// Whether `existing` already has the labels and spec of `desired` (extra labels added by
/// others are fine).
pub fn up_to_date(existing: &NetworkPolicy, desired: &NetworkPolicy) -> bool {
    let labels_ok = desired
        .metadata
        .labels
        .iter()
        .flatten()
        .all(|(k, v)| existing.metadata.labels.as_ref().and_then(|l| l.get(k)) == Some(v));
    labels_ok && existing.spec == desired.spec
}

/// Makes sure `runner-allow-backend-only` exists in `namespace` as [`network_policy`] builds
/// it: one read, and a server-side apply only when it is missing or differs (a hand edit is
/// undone the next time a session of the namespace starts).
pub async fn ensure_network_policy(
    client: &Client,
    namespace: &str,
    backend_namespace: &str,
) -> Result<(), SessionError> {
    let api: Api<NetworkPolicy> = Api::namespaced(client.clone(), namespace);
    let desired = network_policy(namespace, backend_namespace);
    let existing = api.get_opt(NETWORK_POLICY).await.map_err(|e| {
        SessionError::kube(format!("get NetworkPolicy {namespace}/{NETWORK_POLICY}"), e)
    })?;
    if existing.is_some_and(|e| up_to_date(&e, &desired)) {
        return Ok(());
    }
    api.patch(
        NETWORK_POLICY,
        &PatchParams::apply(REPORTING_CONTROLLER).force(),
        &Patch::Apply(&desired),
    )
    .await
    .map_err(|e| {
        SessionError::kube(
            format!("apply NetworkPolicy {namespace}/{NETWORK_POLICY}"),
            e,
        )
    })?;
    Ok(())
}
