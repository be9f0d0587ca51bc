//! The trusted CA bundle: when the session's namespace has a `ConfigMap` `trusted-ca-bundle`
//! with the key `ca-bundle.crt` (for example one filled by a cluster-wide proxy's CA
//! injection), every container of the runner pod sees it as the system bundle
//! `/etc/pki/tls/certs/ca-bundle.crt`.

use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, KeyToPath, PodTemplateSpec, Volume, VolumeMount,
};
use kube::{Api, Client};

use super::error::SessionError;

/// Name of the `ConfigMap` and of the pod volume.
pub const TRUSTED_CA_BUNDLE: &str = "trusted-ca-bundle";
/// Key of the bundle in the `ConfigMap`.
pub const CA_BUNDLE_KEY: &str = "ca-bundle.crt";
/// Where the bundle is mounted (a single file, through `subPath`).
pub const CA_BUNDLE_PATH: &str = "/etc/pki/tls/certs/ca-bundle.crt";

/// Whether a `ConfigMap` can be mounted as the bundle: it carries a non-empty
/// `ca-bundle.crt` (in `data` or `binaryData`).
pub fn usable(config_map: &ConfigMap) -> bool {
    config_map
        .data
        .as_ref()
        .and_then(|d| d.get(CA_BUNDLE_KEY))
        .is_some_and(|v| !v.is_empty())
        || config_map
            .binary_data
            .as_ref()
            .and_then(|d| d.get(CA_BUNDLE_KEY))
            .is_some_and(|v| !v.0.is_empty())
}

/// Adds the `trusted-ca-bundle` volume and mounts it in every container and init container
/// of `template`; mounts a container already has are kept, and applying it twice changes
/// nothing.
pub fn with_trusted_ca(template: &mut PodTemplateSpec) {
    let Some(spec) = template.spec.as_mut() else {
        return;
    };
    let volumes = spec.volumes.get_or_insert_with(Vec::new);
    if !volumes.iter().any(|v| v.name == TRUSTED_CA_BUNDLE) {
        volumes.push(Volume {
            name: TRUSTED_CA_BUNDLE.to_owned(),
            config_map: Some(ConfigMapVolumeSource {
                name: TRUSTED_CA_BUNDLE.to_owned(),
                items: Some(vec![KeyToPath {
                    key: CA_BUNDLE_KEY.to_owned(),
                    path: CA_BUNDLE_KEY.to_owned(),
                    mode: None,
                }]),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        });
    }
    let containers = spec
        .init_containers
        .iter_mut()
        .flatten()
        .chain(spec.containers.iter_mut());
    for container in containers {
        let mounts = container.volume_mounts.get_or_insert_with(Vec::new);
        if mounts.iter().any(|m| m.mount_path == CA_BUNDLE_PATH) {
            continue;
        }
        mounts.push(VolumeMount {
            name: TRUSTED_CA_BUNDLE.to_owned(),
            mount_path: CA_BUNDLE_PATH.to_owned(),
            sub_path: Some(CA_BUNDLE_KEY.to_owned()),
            read_only: Some(true),
            ..VolumeMount::default()
        });
    }
}

/// Looks for a usable `trusted-ca-bundle` in `namespace` and, when there is one, mounts it
/// into `template`. Returns whether it was mounted. A missing `ConfigMap` (or one without the
/// key) is not an error: the pod keeps the image's bundle.
pub async fn ensure_trusted_ca(
    client: &Client,
    namespace: &str,
    template: &mut PodTemplateSpec,
) -> Result<bool, SessionError> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let found = api.get_opt(TRUSTED_CA_BUNDLE).await.map_err(|e| {
        SessionError::kube(format!("get ConfigMap {namespace}/{TRUSTED_CA_BUNDLE}"), e)
    })?;
    let mount = found.as_ref().is_some_and(usable);
    if mount {
        with_trusted_ca(template);
    } else if found.is_some() {
        tracing::warn!(
            namespace,
            "ConfigMap {TRUSTED_CA_BUNDLE} has no {CA_BUNDLE_KEY} key; runner pods keep the image's CA bundle"
        );
    }
    Ok(mount)
}
