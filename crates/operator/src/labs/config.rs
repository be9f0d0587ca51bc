//! Labs configuration: how each cluster type maps to a Crossplane claim, the namespaces of
//! Argo CD, Argo Workflows and Grafana, and the lifecycle deadlines.
//!
//! Defaults ship for `gke`, `talos` and `vcluster`; a YAML file (`LABS_CONFIG_FILE`, see
//! docs/labs.md) overrides any of them or adds new types. `hub` is never provisioned.

use std::{collections::BTreeMap, path::Path, time::Duration};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Environment variable naming the YAML configuration file.
pub const ENV_CONFIG_FILE: &str = "LABS_CONFIG_FILE";
/// Environment variable overriding the provisioning timeout, in seconds.
pub const ENV_PROVISIONING_TIMEOUT: &str = "LABS_PROVISIONING_TIMEOUT_SECONDS";
/// Cluster type that runs on the operator's own cluster.
pub const HUB: &str = "hub";

/// Errors loading the labs configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("labs configuration {path}: cannot read: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid YAML of the expected shape.
    #[error(
        "labs configuration {path}: {source}; expected keys clusterTypes, argocdNamespace, workflowNamespace, grafanaNamespace, metricsURL, provisioningTimeoutSeconds, componentsTimeoutSeconds, manualDeadlineSeconds, cleanupStuckAfterSeconds, stuckClaimRecreateAfterSeconds, maxClaimRecreations"
    )]
    Parse {
        /// The file.
        path: String,
        /// The parser error.
        #[source]
        source: serde_yaml::Error,
    },
    /// A value is out of range.
    #[error("labs configuration: {field}: {message}")]
    Invalid {
        /// The offending field.
        field: String,
        /// What is allowed.
        message: String,
    },
}

/// How one cluster type becomes a Crossplane claim.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterTypeMapping {
    /// Claim `apiVersion` (`group/version`).
    pub api_version: String,
    /// Claim kind.
    pub kind: String,
    /// Claim plural resource name.
    pub plural: String,
    /// Namespace of the claims; empty means the Experiment's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// `spec.targets[].cluster` field (camelCase) to claim `spec` field.
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
    /// Values used for `cluster` fields the user left out.
    #[serde(default)]
    pub defaults: BTreeMap<String, Value>,
    /// Fixed fields added to every claim's `spec`.
    #[serde(default)]
    pub extra_spec: BTreeMap<String, Value>,
    /// Longest allowed claim name (`<experiment>-<target>`).
    #[serde(default = "default_max_name")]
    pub max_name_length: usize,
    /// Key of the kubeconfig in the claim's connection Secret.
    #[serde(default = "default_kubeconfig_key")]
    pub kubeconfig_key: String,
    /// The claim's `spec.compositeDeletePolicy`: `Foreground` (the default) keeps a deleted
    /// claim until its composite and the composite's cloud resources are gone, so a network
    /// the cloud refuses to delete holds the cleanup and is reported instead of leaking;
    /// `Background` lets the claim go at once; empty leaves the field out (the XRD's
    /// `defaultCompositeDeletePolicy` decides).
    #[serde(default = "default_composite_delete_policy")]
    pub composite_delete_policy: String,
}

/// The values `compositeDeletePolicy` allows (empty: not set on the claim).
pub const COMPOSITE_DELETE_POLICIES: [&str; 3] = ["Foreground", "Background", ""];

fn default_composite_delete_policy() -> String {
    "Foreground".into()
}

fn default_max_name() -> usize {
    63
}

fn default_kubeconfig_key() -> String {
    "kubeconfig".into()
}

impl ClusterTypeMapping {
    /// API group of the claim.
    pub fn group(&self) -> &str {
        self.api_version.split_once('/').map_or("", |(g, _)| g)
    }

    /// API version (without group) of the claim.
    pub fn version(&self) -> &str {
        self.api_version
            .split_once('/')
            .map_or(self.api_version.as_str(), |(_, v)| v)
    }

    /// The claim's `ApiResource`.
    pub fn api_resource(&self) -> kube::discovery::ApiResource {
        kube::discovery::ApiResource {
            group: self.group().to_owned(),
            version: self.version().to_owned(),
            api_version: self.api_version.clone(),
            kind: self.kind.clone(),
            plural: self.plural.clone(),
        }
    }
}

/// Complete labs configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct LabsConfig {
    /// Cluster type name (`spec.targets[].cluster.type`) to claim mapping.
    pub cluster_types: BTreeMap<String, ClusterTypeMapping>,
    /// Namespace of Argo CD (cluster Secrets and Applications).
    pub argocd_namespace: String,
    /// Namespace of Argo Workflows (Workflows and `WorkflowTemplates`).
    pub workflow_namespace: String,
    /// Service account Workflows run as.
    pub workflow_service_account: String,
    /// Namespace where Grafana's sidecar picks up datasource `ConfigMaps`.
    pub grafana_namespace: String,
    /// URL of the metrics store the datasources point at.
    pub metrics_url: String,
    /// How long a claim may take to become Ready.
    pub provisioning_timeout: Duration,
    /// How long a target's Application may stay short of Synced and Healthy, counted from
    /// its creation, before the experiment fails (while it is provisioning).
    pub components_timeout: Duration,
    /// How long a `manual` experiment may run before it fails.
    pub manual_deadline: Duration,
    /// After how long an external deletion counts as stuck.
    pub cleanup_stuck_after: Duration,
    /// After how long a claim that is not Ready is deleted and created again (a stuck
    /// asynchronous create); `None` never does.
    pub stuck_claim_recreate_after: Option<Duration>,
    /// How many times one target's claim may be created again.
    pub max_claim_recreations: u32,
}

/// The YAML file shape (every key optional).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    cluster_types: BTreeMap<String, ClusterTypeMapping>,
    argocd_namespace: Option<String>,
    workflow_namespace: Option<String>,
    workflow_service_account: Option<String>,
    grafana_namespace: Option<String>,
    #[serde(rename = "metricsURL")]
    metrics_url: Option<String>,
    provisioning_timeout_seconds: Option<u64>,
    components_timeout_seconds: Option<u64>,
    manual_deadline_seconds: Option<u64>,
    cleanup_stuck_after_seconds: Option<u64>,
    stuck_claim_recreate_after_seconds: Option<u64>,
    max_claim_recreations: Option<u32>,
}

fn identity_fields(names: &[&str]) -> BTreeMap<String, String> {
    names
        .iter()
        .map(|n| ((*n).to_owned(), (*n).to_owned()))
        .collect()
}

/// The shipped cluster-type mappings (`gke`, `talos`, `vcluster`).
pub fn default_cluster_types() -> BTreeMap<String, ClusterTypeMapping> {
    let mut out = BTreeMap::new();
    out.insert(
        "gke".to_owned(),
        ClusterTypeMapping {
            api_version: "illm.io/v1alpha1".into(),
            kind: "GKECluster".into(),
            plural: "gkeclusters".into(),
            namespace: None,
            fields: identity_fields(&[
                "zone",
                "nodeCount",
                "machineType",
                "diskSizeGb",
                "preemptible",
            ]),
            defaults: BTreeMap::from([
                ("zone".to_owned(), Value::from("us-central1-a")),
                ("nodeCount".to_owned(), Value::from(1)),
                ("machineType".to_owned(), Value::from("e2-medium")),
                ("diskSizeGb".to_owned(), Value::from(50)),
                ("preemptible".to_owned(), Value::from(false)),
            ]),
            extra_spec: BTreeMap::new(),
            // GCP names are `illm-<claim>-<5 characters>` and at most 40 characters.
            max_name_length: 29,
            kubeconfig_key: default_kubeconfig_key(),
            composite_delete_policy: default_composite_delete_policy(),
        },
    );
    out.insert(
        "talos".to_owned(),
        ClusterTypeMapping {
            api_version: "illm.io/v1alpha1".into(),
            kind: "TalosCluster".into(),
            plural: "talosclusters".into(),
            namespace: None,
            fields: identity_fields(&["nodeCount", "machineType", "diskSizeGb"]),
            defaults: BTreeMap::from([
                ("nodeCount".to_owned(), Value::from(1)),
                ("machineType".to_owned(), Value::from("e2-standard-2")),
                ("diskSizeGb".to_owned(), Value::from(50)),
            ]),
            extra_spec: BTreeMap::new(),
            max_name_length: default_max_name(),
            kubeconfig_key: default_kubeconfig_key(),
            composite_delete_policy: default_composite_delete_policy(),
        },
    );
    out.insert(
        "vcluster".to_owned(),
        ClusterTypeMapping {
            api_version: "illm.io/v1alpha1".into(),
            kind: "VCluster".into(),
            plural: "vclusters".into(),
            namespace: None,
            fields: BTreeMap::new(),
            defaults: BTreeMap::new(),
            extra_spec: BTreeMap::new(),
            max_name_length: default_max_name(),
            kubeconfig_key: default_kubeconfig_key(),
            composite_delete_policy: default_composite_delete_policy(),
        },
    );
    out
}

impl Default for LabsConfig {
    fn default() -> Self {
        Self {
            cluster_types: default_cluster_types(),
            argocd_namespace: "argocd".into(),
            workflow_namespace: "argo-workflows".into(),
            workflow_service_account: "argo-workflow".into(),
            grafana_namespace: "monitoring".into(),
            metrics_url:
                "http://victoria-metrics-victoria-metrics-single-server.observability.svc:8428"
                    .into(),
            provisioning_timeout: Duration::from_mins(20),
            components_timeout: Duration::from_mins(20),
            manual_deadline: Duration::from_hours(24),
            cleanup_stuck_after: Duration::from_mins(10),
            stuck_claim_recreate_after: None,
            max_claim_recreations: 1,
        }
    }
}

impl LabsConfig {
    /// The defaults overlaid with a YAML document (see docs/labs.md for the keys).
    pub fn from_yaml(path: &str, yaml: &str) -> Result<Self, ConfigError> {
        let file: FileConfig = serde_yaml::from_str(yaml).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })?;
        let mut config = Self::default();
        if file.cluster_types.contains_key(HUB) {
            return Err(ConfigError::Invalid {
                field: "clusterTypes.hub".into(),
                message: "hub is the operator's own cluster and cannot be mapped to a claim".into(),
            });
        }
        for (name, mapping) in file.cluster_types {
            if !mapping.api_version.contains('/') {
                return Err(ConfigError::Invalid {
                    field: format!("clusterTypes.{name}.apiVersion"),
                    message: format!("{:?} must be group/version", mapping.api_version),
                });
            }
            if !COMPOSITE_DELETE_POLICIES.contains(&mapping.composite_delete_policy.as_str()) {
                return Err(ConfigError::Invalid {
                    field: format!("clusterTypes.{name}.compositeDeletePolicy"),
                    message: format!(
                        "{:?} is not allowed; use Foreground, Background or \"\" (not set)",
                        mapping.composite_delete_policy
                    ),
                });
            }
            config.cluster_types.insert(name, mapping);
        }
        let set = |target: &mut String, value: Option<String>| {
            if let Some(v) = value {
                *target = v;
            }
        };
        set(&mut config.argocd_namespace, file.argocd_namespace);
        set(&mut config.workflow_namespace, file.workflow_namespace);
        set(
            &mut config.workflow_service_account,
            file.workflow_service_account,
        );
        set(&mut config.grafana_namespace, file.grafana_namespace);
        set(&mut config.metrics_url, file.metrics_url);
        if let Some(s) = file.provisioning_timeout_seconds {
            config.provisioning_timeout = Duration::from_secs(s);
        }
        if let Some(s) = file.components_timeout_seconds {
            if s == 0 {
                return Err(ConfigError::Invalid {
                    field: "componentsTimeoutSeconds".into(),
                    message: "must be at least 1 (seconds)".into(),
                });
            }
            config.components_timeout = Duration::from_secs(s);
        }
        if let Some(s) = file.manual_deadline_seconds {
            config.manual_deadline = Duration::from_secs(s);
        }
        if let Some(s) = file.cleanup_stuck_after_seconds {
            config.cleanup_stuck_after = Duration::from_secs(s);
        }
        match file.stuck_claim_recreate_after_seconds {
            Some(0) => {
                return Err(ConfigError::Invalid {
                    field: "stuckClaimRecreateAfterSeconds".into(),
                    message: "must be above zero (leave it out to never recreate claims)".into(),
                });
            }
            Some(s) => config.stuck_claim_recreate_after = Some(Duration::from_secs(s)),
            None => {}
        }
        if let Some(n) = file.max_claim_recreations {
            config.max_claim_recreations = n;
        }
        Ok(config)
    }

    /// Reads `LABS_CONFIG_FILE` (when set) over the defaults, then
    /// `LABS_PROVISIONING_TIMEOUT_SECONDS`.
    pub fn from_env() -> Result<Self, ConfigError> {
        let file = std::env::var_os(ENV_CONFIG_FILE).filter(|p| !p.is_empty());
        let timeout = match std::env::var(ENV_PROVISIONING_TIMEOUT) {
            Ok(raw) => Some(
                raw.trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|s| *s > 0)
                    .map(Duration::from_secs)
                    .ok_or_else(|| ConfigError::Invalid {
                        field: ENV_PROVISIONING_TIMEOUT.into(),
                        message: format!("{raw:?} is not a whole number of seconds above zero"),
                    })?,
            ),
            Err(_) => None,
        };
        Self::resolve(file.as_deref().map(Path::new), timeout)
    }

    /// The defaults, overlaid with the YAML file `file` (when given), then with
    /// `provisioning_timeout` (when given). The operator passes `--labs-config` /
    /// `LABS_CONFIG_FILE` and `--labs-provisioning-timeout` /
    /// `LABS_PROVISIONING_TIMEOUT_SECONDS` as resolved by the runtime settings.
    pub fn resolve(
        file: Option<&Path>,
        provisioning_timeout: Option<Duration>,
    ) -> Result<Self, ConfigError> {
        let mut config = match file {
            Some(path) => Self::from_file(path)?,
            None => Self::default(),
        };
        if let Some(timeout) = provisioning_timeout {
            config.provisioning_timeout = timeout;
        }
        if config.provisioning_timeout.is_zero() {
            return Err(ConfigError::Invalid {
                field: "provisioningTimeoutSeconds".into(),
                message: "must be above zero".into(),
            });
        }
        if let Some(after) = config.stuck_claim_recreate_after
            && after >= config.provisioning_timeout
        {
            return Err(ConfigError::Invalid {
                field: "stuckClaimRecreateAfterSeconds".into(),
                message: format!(
                    "{} s must be below the provisioning timeout ({} s), or a claim times out before it is recreated",
                    after.as_secs(),
                    config.provisioning_timeout.as_secs()
                ),
            });
        }
        Ok(config)
    }

    /// The defaults overlaid with the YAML file at `path`.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let shown = path.display().to_string();
        let yaml = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        Self::from_yaml(&shown, &yaml)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_cover_the_seed_types() {
        let c = LabsConfig::default();
        assert_eq!(
            c.cluster_types.keys().collect::<Vec<_>>(),
            ["gke", "talos", "vcluster"]
        );
        assert_eq!(c.provisioning_timeout, Duration::from_mins(20));
        let gke = &c.cluster_types["gke"];
        assert_eq!(gke.group(), "illm.io");
        assert_eq!(gke.version(), "v1alpha1");
        assert_eq!(gke.api_resource().plural, "gkeclusters");
    }

    #[test]
    fn shipped_file_equals_the_defaults() {
        let shipped = include_str!("../../../../config/labs/cluster-types.yaml");
        assert_eq!(
            LabsConfig::from_yaml("shipped", shipped).unwrap(),
            LabsConfig::default()
        );
    }

    #[test]
    fn file_overrides_and_rejects() {
        let yaml = "clusterTypes:\n  kind:\n    apiVersion: lab.example/v1\n    kind: KindCluster\n    plural: kindclusters\n    namespace: clusters\nprovisioningTimeoutSeconds: 5\nargocdNamespace: gitops\n";
        let c = LabsConfig::from_yaml("f", yaml).unwrap();
        assert_eq!(c.cluster_types.len(), 4);
        assert_eq!(
            c.cluster_types["kind"].namespace.as_deref(),
            Some("clusters")
        );
        assert_eq!(c.provisioning_timeout, Duration::from_secs(5));
        assert_eq!(c.argocd_namespace, "gitops");
        assert_eq!(c.components_timeout, Duration::from_mins(20));
        let c = LabsConfig::from_yaml("f", "componentsTimeoutSeconds: 90\n").unwrap();
        assert_eq!(c.components_timeout, Duration::from_secs(90));
        let err = LabsConfig::from_yaml("f", "componentsTimeoutSeconds: 0\n").unwrap_err();
        assert!(
            err.to_string().contains("componentsTimeoutSeconds"),
            "{err}"
        );

        let err = LabsConfig::from_yaml(
            "f",
            "clusterTypes:\n  hub:\n    apiVersion: a/b\n    kind: K\n    plural: ks\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("clusterTypes.hub"), "{err}");
        let err = LabsConfig::from_yaml(
            "f",
            "clusterTypes:\n  x:\n    apiVersion: v1\n    kind: K\n    plural: ks\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("group/version"), "{err}");
        // The composite deletion policy defaults to Foreground; only the allowed values pass.
        assert_eq!(
            LabsConfig::from_yaml("f", yaml).unwrap().cluster_types["kind"].composite_delete_policy,
            "Foreground"
        );
        let typed = |policy: &str| {
            LabsConfig::from_yaml(
                "f",
                &format!(
                    "clusterTypes:\n  kind:\n    apiVersion: a/v1\n    kind: K\n    plural: ks\n    compositeDeletePolicy: {policy}\n"
                ),
            )
        };
        assert_eq!(
            typed("Background").unwrap().cluster_types["kind"].composite_delete_policy,
            "Background"
        );
        assert_eq!(
            typed("''").unwrap().cluster_types["kind"].composite_delete_policy,
            ""
        );
        let err = typed("foreground").unwrap_err().to_string();
        assert!(
            err.contains("clusterTypes.kind.compositeDeletePolicy")
                && err.contains("\"foreground\" is not allowed")
                && err.contains("Foreground, Background"),
            "{err}"
        );
        let err = LabsConfig::from_yaml("f", "bogus: 1\n").unwrap_err();
        assert!(err.to_string().contains("bogus"), "{err}");
    }

    #[test]
    fn stuck_claim_recreation_is_off_by_default_and_checked() {
        assert_eq!(LabsConfig::default().stuck_claim_recreate_after, None);
        let c = LabsConfig::from_yaml(
            "f",
            "stuckClaimRecreateAfterSeconds: 600\nmaxClaimRecreations: 2\n",
        )
        .unwrap();
        assert_eq!(c.stuck_claim_recreate_after, Some(Duration::from_mins(10)));
        assert_eq!(c.max_claim_recreations, 2);
        let err = LabsConfig::from_yaml("f", "stuckClaimRecreateAfterSeconds: 0\n").unwrap_err();
        assert!(
            err.to_string().contains("stuckClaimRecreateAfterSeconds"),
            "{err}"
        );
        // Recreating after the provisioning timeout could never happen: refused.
        let dir = std::env::temp_dir().join(format!("labs-recreate-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("labs.yaml");
        std::fs::write(&path, "stuckClaimRecreateAfterSeconds: 1200\n").unwrap();
        let Err(err) = LabsConfig::resolve(Some(&path), None) else {
            panic!("a recreation after the timeout was accepted");
        };
        assert!(
            err.to_string().contains("stuckClaimRecreateAfterSeconds")
                && err.to_string().contains("1200 s"),
            "{err}"
        );
        std::fs::write(&path, "stuckClaimRecreateAfterSeconds: 600\n").unwrap();
        assert!(LabsConfig::resolve(Some(&path), None).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_timeout_setting_wins_over_the_file() {
        let dir = std::env::temp_dir().join(format!("labs-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("config.yaml");
        std::fs::write(
            &path,
            "provisioningTimeoutSeconds: 60\nargocdNamespace: gitops\n",
        )
        .unwrap();
        let c = LabsConfig::resolve(Some(&path), None).unwrap();
        assert_eq!(c.provisioning_timeout, Duration::from_mins(1));
        assert_eq!(c.argocd_namespace, "gitops");
        let c = LabsConfig::resolve(Some(&path), Some(Duration::from_secs(7))).unwrap();
        assert_eq!(c.provisioning_timeout, Duration::from_secs(7));
        assert_eq!(c.argocd_namespace, "gitops");
        // Without a file: the defaults.
        assert_eq!(
            LabsConfig::resolve(None, None).unwrap(),
            LabsConfig::default()
        );
        // A missing file names itself; a zero timeout in the file is rejected.
        let err = LabsConfig::resolve(Some(&dir.join("absent.yaml")), None).unwrap_err();
        assert!(err.to_string().contains("absent.yaml"), "{err}");
        std::fs::write(&path, "provisioningTimeoutSeconds: 0\n").unwrap();
        let err = LabsConfig::resolve(Some(&path), None).unwrap_err();
        assert!(
            err.to_string().contains("provisioningTimeoutSeconds"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
