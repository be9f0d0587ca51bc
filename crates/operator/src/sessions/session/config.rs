//! Operator-wide settings of the `AgenticSession` controller, read once from the environment.

use std::time::Duration;

/// Default `STATE_SYNC_IMAGE`.
pub const DEFAULT_STATE_SYNC_IMAGE: &str = "quay.io/ambient_code/vteam_state_sync:latest";
/// Default `IMAGE_PULL_POLICY`.
pub const DEFAULT_IMAGE_PULL_POLICY: &str = "Always";
/// Default `S3_ENDPOINT`.
pub const DEFAULT_S3_ENDPOINT: &str = "https://s3.amazonaws.com";
/// Default `S3_BUCKET`.
pub const DEFAULT_S3_BUCKET: &str = "ambient-sessions";
/// How old a runner token may get before it is refreshed (`TokenRequest`'s default lifetime is
/// one hour).
pub const TOKEN_REFRESH_AFTER: Duration = Duration::from_mins(45);

/// What the session controller reads from the operator's environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// Runner image (`AMBIENT_CODE_RUNNER_IMAGE`).
    pub runner_image: String,
    /// Image of the `init-hydrate` init container and the `state-sync` sidecar
    /// (`STATE_SYNC_IMAGE`).
    pub state_sync_image: String,
    /// Whether the `state-sync` sidecar runs next to the runner: `STATE_SYNC_IMAGE` is set
    /// explicitly, or `STATE_SYNC_ENABLED=true`.
    pub state_sync: bool,
    /// `imagePullPolicy` of every container (`IMAGE_PULL_POLICY`).
    pub image_pull_policy: String,
    /// Namespace of the backend (`BACKEND_NAMESPACE`).
    pub backend_namespace: String,
    /// Fallback inactivity timeout in seconds (`DEFAULT_INACTIVITY_TIMEOUT`, default 86400).
    pub default_inactivity_timeout: i64,
    /// `fsGroup` of runner pods (`POD_FSGROUP`).
    pub pod_fs_group: Option<i64>,
    /// `S3_ENDPOINT` for state sync.
    pub s3_endpoint: String,
    /// `S3_BUCKET` for state sync.
    pub s3_bucket: String,
    /// Whether the `ambient-runner-secrets` Secret must exist before a runner starts
    /// (`REQUIRE_RUNNER_SECRETS`, default true, as upstream).
    pub require_runner_secrets: bool,
}

impl SessionConfig {
    /// Settings from `lookup` (the process environment in production), with `runner_image`
    /// and `backend_namespace` already resolved by the runtime.
    pub fn from_lookup(
        runner_image: &str,
        backend_namespace: &str,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Self {
        let var = |k: &str| {
            lookup(k)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let explicit_sync = var("STATE_SYNC_IMAGE");
        let bool_var = |k: &str, default: bool| {
            var(k).map_or(default, |v| crate::runtime::config::parse_bool(&v))
        };
        Self {
            runner_image: runner_image.to_owned(),
            state_sync: explicit_sync.is_some() || bool_var("STATE_SYNC_ENABLED", false),
            state_sync_image: explicit_sync.unwrap_or_else(|| DEFAULT_STATE_SYNC_IMAGE.to_owned()),
            image_pull_policy: var("IMAGE_PULL_POLICY")
                .unwrap_or_else(|| DEFAULT_IMAGE_PULL_POLICY.to_owned()),
            backend_namespace: backend_namespace.to_owned(),
            default_inactivity_timeout: var("DEFAULT_INACTIVITY_TIMEOUT")
                .and_then(|v| v.parse::<i64>().ok())
                .filter(|v| *v >= 0)
                .unwrap_or(agentic_api::sessions::DEFAULT_INACTIVITY_TIMEOUT_SECONDS),
            pod_fs_group: var("POD_FSGROUP").and_then(|v| v.parse().ok()),
            s3_endpoint: var("S3_ENDPOINT").unwrap_or_else(|| DEFAULT_S3_ENDPOINT.to_owned()),
            s3_bucket: var("S3_BUCKET").unwrap_or_else(|| DEFAULT_S3_BUCKET.to_owned()),
            require_runner_secrets: bool_var("REQUIRE_RUNNER_SECRETS", true),
        }
    }

    /// Defaults for tests and examples: every optional variable unset.
    pub fn defaults(runner_image: &str, backend_namespace: &str) -> Self {
        Self::from_lookup(runner_image, backend_namespace, |_| None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_overrides_defaults() {
        let d = SessionConfig::defaults("img", "ambient-code");
        assert_eq!(d.default_inactivity_timeout, 86_400);
        assert!(!d.state_sync);
        assert_eq!(d.state_sync_image, DEFAULT_STATE_SYNC_IMAGE);
        assert!(d.require_runner_secrets);
        let c = SessionConfig::from_lookup("img", "b", |k| match k {
            "STATE_SYNC_IMAGE" => Some("sync:1".into()),
            "DEFAULT_INACTIVITY_TIMEOUT" => Some("0".into()),
            "IMAGE_PULL_POLICY" => Some("IfNotPresent".into()),
            "REQUIRE_RUNNER_SECRETS" => Some("false".into()),
            "POD_FSGROUP" => Some("1000".into()),
            _ => None,
        });
        assert!(c.state_sync);
        assert_eq!(c.state_sync_image, "sync:1");
        assert_eq!(c.default_inactivity_timeout, 0);
        assert_eq!(c.image_pull_policy, "IfNotPresent");
        assert!(!c.require_runner_secrets);
        assert_eq!(c.pod_fs_group, Some(1000));
        let bad = SessionConfig::from_lookup("img", "b", |k| {
            (k == "DEFAULT_INACTIVITY_TIMEOUT").then(|| "-5".into())
        });
        assert_eq!(bad.default_inactivity_timeout, 86_400);
    }
}
