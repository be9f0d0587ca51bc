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
/// Default CPU request of the runner container (`RUNNER_CPU_REQUEST`).
pub const DEFAULT_RUNNER_CPU_REQUEST: &str = "500m";
/// Default memory request of the runner container (`RUNNER_MEMORY_REQUEST`).
pub const DEFAULT_RUNNER_MEMORY_REQUEST: &str = "512Mi";
/// Default CPU limit of the runner container (`RUNNER_CPU_LIMIT`).
pub const DEFAULT_RUNNER_CPU_LIMIT: &str = "2000m";
/// Default memory limit of the runner container (`RUNNER_MEMORY_LIMIT`); 4Gi runners were
/// OOM-killed, so the default is 8Gi.
pub const DEFAULT_RUNNER_MEMORY_LIMIT: &str = "8Gi";

/// What the session controller reads from the operator's environment.
#[allow(clippy::struct_excessive_bools)] // independent on/off settings, one per variable
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
    /// (`REQUIRE_RUNNER_SECRETS`; default true, or false in Vertex AI mode, as upstream).
    pub require_runner_secrets: bool,
    /// Vertex AI mode (`USE_VERTEX` / `CLAUDE_CODE_USE_VERTEX`), with its settings.
    pub vertex: Option<VertexConfig>,
    /// Langfuse tracing (`LANGFUSE_ENABLED`): `ambient-admin-langfuse-secret` is copied into
    /// session namespaces and runners get the `LANGFUSE_*` variables from it.
    pub langfuse: bool,
    /// `MLflow` tracing (`MLFLOW_TRACING_ENABLED`): `ambient-admin-mlflow-observability-secret`
    /// is copied into session namespaces and runners get the `MLFLOW_*` variables from it.
    pub mlflow: bool,
    /// Requests and limits of the `ambient-code-runner` container (`RUNNER_CPU_REQUEST`,
    /// `RUNNER_MEMORY_REQUEST`, `RUNNER_CPU_LIMIT`, `RUNNER_MEMORY_LIMIT`).
    pub runner_resources: RunnerResources,
    /// Whether `spec.timeout` becomes the runner Job's `activeDeadlineSeconds`
    /// (`ENFORCE_SESSION_TIMEOUT`, default on). Off, runs have no hard deadline and never fail
    /// with reason `Timeout`.
    pub enforce_timeout: bool,
    /// How often a session waiting for a missing Secret is looked at again even when no
    /// watch event wakes it (a safety net; 30 s).
    pub waiting_recheck: Duration,
    /// Settings passed on to the runner's MCP servers.
    pub mcp: McpSettings,
    /// The agent registry file (`AGENT_REGISTRY_PATH`, default
    /// [`super::registry::DEFAULT_REGISTRY_PATH`]).
    pub agent_registry_path: String,
    /// The models manifest (`MODELS_MANIFEST_PATH`, default
    /// [`super::models::DEFAULT_MODELS_PATH`]).
    pub models_manifest_path: String,
}

/// What the runner's MCP servers get from the operator's environment, as upstream passed it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct McpSettings {
    /// `MCP_CONFIG_FILE`: the MCP configuration file inside the runner image.
    pub config_file: Option<String>,
    /// `GOOGLE_OAUTH_CLIENT_ID` of the Google Workspace MCP server.
    pub google_client_id: Option<String>,
    /// `GOOGLE_OAUTH_CLIENT_SECRET` of the Google Workspace MCP server.
    pub google_client_secret: Option<String>,
    /// `GOOGLE_OAUTH_REDIRECT_URI`: `<BACKEND_PUBLIC_URL>/oauth2callback`, when the backend's
    /// public URL is set.
    pub google_redirect_uri: Option<String>,
}

/// Where the Google Workspace MCP server keeps its credentials in the runner
/// (`GOOGLE_MCP_CREDENTIALS_DIR`).
pub const GOOGLE_MCP_CREDENTIALS_DIR: &str = "/workspace/.google_workspace_mcp/credentials";

/// Requests and limits of the runner container, each a valid Kubernetes quantity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunnerResources {
    /// `requests.cpu`.
    pub cpu_request: String,
    /// `requests.memory`.
    pub memory_request: String,
    /// `limits.cpu`.
    pub cpu_limit: String,
    /// `limits.memory`.
    pub memory_limit: String,
}

impl Default for RunnerResources {
    fn default() -> Self {
        Self {
            cpu_request: DEFAULT_RUNNER_CPU_REQUEST.to_owned(),
            memory_request: DEFAULT_RUNNER_MEMORY_REQUEST.to_owned(),
            cpu_limit: DEFAULT_RUNNER_CPU_LIMIT.to_owned(),
            memory_limit: DEFAULT_RUNNER_MEMORY_LIMIT.to_owned(),
        }
    }
}

const QUANTITY_HELP: &str = "use a Kubernetes quantity: a non-negative number with an optional \
suffix, e.g. 500m or 2 (CPU), 512Mi, 8Gi or 1G (memory); allowed suffixes are m, k, M, G, T, \
P, E, Ki, Mi, Gi, Ti, Pi, Ei or an exponent such as 1e3";

/// The value of a Kubernetes resource quantity (`500m` → 0.5, `8Gi` → 8·2³⁰), or `None` when
/// `text` is not one. Signs are not accepted: resources are never negative.
pub fn parse_quantity(text: &str) -> Option<f64> {
    let digits_end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(digits_end);
    let mut parts = number.splitn(2, '.');
    let whole = parts.next().unwrap_or_default();
    let fraction = parts.next();
    if whole.is_empty() && fraction.is_none_or(str::is_empty) {
        return None;
    }
    if fraction.is_some_and(|f| f.contains('.')) {
        return None;
    }
    let value: f64 = number.parse().ok()?;
    let scale = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024_f64,
        "Mi" => 1024_f64.powi(2),
        "Gi" => 1024_f64.powi(3),
        "Ti" => 1024_f64.powi(4),
        "Pi" => 1024_f64.powi(5),
        "Ei" => 1024_f64.powi(6),
        exponent => {
            let digits = exponent
                .strip_prefix('e')
                .or_else(|| exponent.strip_prefix('E'))?;
            let unsigned = digits.strip_prefix(['+', '-']).unwrap_or(digits);
            if unsigned.is_empty() || !unsigned.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            10_f64.powi(digits.parse().ok()?)
        }
    };
    Some(value * scale)
}

impl RunnerResources {
    /// Reads the four variables (unset or empty → the default), failing on a value that is not
    /// a quantity or a request above its limit, naming the variable(s).
    pub fn from_lookup(var: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let read = |variable: &str, default: &str| -> Result<(String, f64), ConfigError> {
            let text = var(variable).unwrap_or_else(|| default.to_owned());
            parse_quantity(&text)
                .map(|amount| (text.clone(), amount))
                .ok_or_else(|| ConfigError {
                    variable: variable.to_owned(),
                    message: format!("{text:?} is not a resource quantity; {QUANTITY_HELP}"),
                })
        };
        let (cpu_request, cpu_request_amount) =
            read("RUNNER_CPU_REQUEST", DEFAULT_RUNNER_CPU_REQUEST)?;
        let (memory_request, memory_request_amount) =
            read("RUNNER_MEMORY_REQUEST", DEFAULT_RUNNER_MEMORY_REQUEST)?;
        let (cpu_limit, cpu_limit_amount) = read("RUNNER_CPU_LIMIT", DEFAULT_RUNNER_CPU_LIMIT)?;
        let (memory_limit, memory_limit_amount) =
            read("RUNNER_MEMORY_LIMIT", DEFAULT_RUNNER_MEMORY_LIMIT)?;
        for (resource, request, limit, request_amount, limit_amount) in [
            (
                "CPU",
                &cpu_request,
                &cpu_limit,
                cpu_request_amount,
                cpu_limit_amount,
            ),
            (
                "MEMORY",
                &memory_request,
                &memory_limit,
                memory_request_amount,
                memory_limit_amount,
            ),
        ] {
            if request_amount > limit_amount {
                return Err(ConfigError {
                    variable: format!("RUNNER_{resource}_REQUEST, RUNNER_{resource}_LIMIT"),
                    message: format!(
                        "the request {request} is above the limit {limit}; Kubernetes rejects \
                         such pods, so raise the limit or lower the request"
                    ),
                });
            }
        }
        Ok(Self {
            cpu_request,
            memory_request,
            cpu_limit,
            memory_limit,
        })
    }
}

/// Name of the Secret with the Google Cloud credentials copied into session namespaces in
/// Vertex AI mode.
pub const VERTEX_SECRET: &str = "ambient-vertex";
/// Name of the Secret with the Langfuse settings copied into session namespaces when
/// `LANGFUSE_ENABLED` is on.
pub const LANGFUSE_SECRET: &str = "ambient-admin-langfuse-secret";
/// Name of the Secret with the `MLflow` settings copied into session namespaces when
/// `MLFLOW_TRACING_ENABLED` is on.
pub const MLFLOW_SECRET: &str = "ambient-admin-mlflow-observability-secret";

/// Settings of Vertex AI mode, all required when it is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VertexConfig {
    /// `ANTHROPIC_VERTEX_PROJECT_ID`: the Google Cloud project.
    pub project_id: String,
    /// `CLOUD_ML_REGION`: the Vertex AI region.
    pub region: String,
    /// `GOOGLE_APPLICATION_CREDENTIALS`: path of the key file inside the runner (the copied
    /// `ambient-vertex` Secret is mounted at `/app/vertex`).
    pub credentials_path: String,
}

/// A setting of the operator's environment that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable}: {message}")]
pub struct ConfigError {
    /// The environment variable(s) at fault.
    pub variable: String,
    /// What is wrong and what is allowed.
    pub message: String,
}

/// Parses an on/off switch the way upstream reads `USE_VERTEX`: `1`, `true`, `yes` are on;
/// `0`, `false`, `no` and the empty string are off (case-insensitive); anything else is an
/// error naming the variable.
pub fn parse_switch(variable: &str, value: &str) -> Result<bool, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" => Ok(true),
        "0" | "false" | "no" | "" => Ok(false),
        _ => Err(ConfigError {
            variable: variable.to_owned(),
            message: format!(
                "{value:?} is not a switch; use 1, true or yes to turn it on, 0, false or no to turn it off"
            ),
        }),
    }
}

fn vertex_from(var: &impl Fn(&str) -> Option<String>) -> Result<Option<VertexConfig>, ConfigError> {
    let switch = ["USE_VERTEX", "CLAUDE_CODE_USE_VERTEX"]
        .into_iter()
        .find_map(|k| var(k).map(|v| (k, v)));
    let on = match switch {
        Some((k, v)) => parse_switch(k, &v)?,
        None => false,
    };
    if !on {
        return Ok(None);
    }
    let required = [
        "ANTHROPIC_VERTEX_PROJECT_ID",
        "CLOUD_ML_REGION",
        "GOOGLE_APPLICATION_CREDENTIALS",
    ];
    let missing: Vec<&str> = required.into_iter().filter(|k| var(k).is_none()).collect();
    if !missing.is_empty() {
        return Err(ConfigError {
            variable: missing.join(", "),
            message: "required in Vertex AI mode (USE_VERTEX=1); set it or turn Vertex AI mode off"
                .to_owned(),
        });
    }
    Ok(Some(VertexConfig {
        project_id: var("ANTHROPIC_VERTEX_PROJECT_ID").unwrap_or_default(),
        region: var("CLOUD_ML_REGION").unwrap_or_default(),
        credentials_path: var("GOOGLE_APPLICATION_CREDENTIALS").unwrap_or_default(),
    }))
}

impl SessionConfig {
    /// Settings from `lookup` (the process environment in production), with `runner_image`
    /// and `backend_namespace` already resolved by the runtime. Fails on a switch
    /// (`USE_VERTEX`, `CLAUDE_CODE_USE_VERTEX`, `LANGFUSE_ENABLED`, `MLFLOW_TRACING_ENABLED`,
    /// `ENFORCE_SESSION_TIMEOUT`) that is not a boolean, Vertex AI mode without its required
    /// settings, or runner resources that are not quantities or have a request above the
    /// limit.
    pub fn from_lookup(
        runner_image: &str,
        backend_namespace: &str,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let var = |k: &str| {
            lookup(k)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let vertex = vertex_from(&var)?;
        let switch = |k: &str| var(k).map_or(Ok(false), |v| parse_switch(k, &v));
        let langfuse = switch("LANGFUSE_ENABLED")?;
        let mlflow = switch("MLFLOW_TRACING_ENABLED")?;
        let enforce_timeout = var("ENFORCE_SESSION_TIMEOUT")
            .map_or(Ok(true), |v| parse_switch("ENFORCE_SESSION_TIMEOUT", &v))?;
        let runner_resources = RunnerResources::from_lookup(&var)?;
        let mut config = Self::base(runner_image, backend_namespace, &var, vertex.is_none());
        config.vertex = vertex;
        config.langfuse = langfuse;
        config.mlflow = mlflow;
        config.enforce_timeout = enforce_timeout;
        config.runner_resources = runner_resources;
        Ok(config)
    }

    fn base(
        runner_image: &str,
        backend_namespace: &str,
        var: &impl Fn(&str) -> Option<String>,
        require_runner_secrets_default: bool,
    ) -> Self {
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
            require_runner_secrets: bool_var(
                "REQUIRE_RUNNER_SECRETS",
                require_runner_secrets_default,
            ),
            vertex: None,
            langfuse: false,
            mlflow: false,
            runner_resources: RunnerResources::default(),
            enforce_timeout: true,
            waiting_recheck: Duration::from_secs(30),
            mcp: McpSettings {
                config_file: var("MCP_CONFIG_FILE"),
                google_client_id: var("GOOGLE_OAUTH_CLIENT_ID"),
                google_client_secret: var("GOOGLE_OAUTH_CLIENT_SECRET"),
                google_redirect_uri: var("BACKEND_PUBLIC_URL")
                    .map(|url| format!("{}/oauth2callback", url.trim_end_matches('/'))),
            },
            agent_registry_path: var("AGENT_REGISTRY_PATH")
                .unwrap_or_else(|| super::registry::DEFAULT_REGISTRY_PATH.to_owned()),
            models_manifest_path: var("MODELS_MANIFEST_PATH")
                .unwrap_or_else(|| super::models::DEFAULT_MODELS_PATH.to_owned()),
        }
    }

    /// Defaults for tests and examples: every optional variable unset.
    pub fn defaults(runner_image: &str, backend_namespace: &str) -> Self {
        Self::base(runner_image, backend_namespace, &|_| None, true)
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
        })
        .unwrap();
        assert!(c.state_sync);
        assert_eq!(c.state_sync_image, "sync:1");
        assert_eq!(c.mcp, McpSettings::default(), "nothing MCP-related was set");
        assert_eq!(c.default_inactivity_timeout, 0);
        assert_eq!(c.image_pull_policy, "IfNotPresent");
        assert!(!c.require_runner_secrets);
        assert_eq!(c.pod_fs_group, Some(1000));
        let bad = SessionConfig::from_lookup("img", "b", |k| {
            (k == "DEFAULT_INACTIVITY_TIMEOUT").then(|| "-5".into())
        })
        .unwrap();
        assert_eq!(bad.default_inactivity_timeout, 86_400);
    }

    fn vertex_env(
        extra: &'static [(&'static str, &'static str)],
    ) -> impl Fn(&str) -> Option<String> {
        move |k: &str| {
            [
                ("ANTHROPIC_VERTEX_PROJECT_ID", "my-project"),
                ("CLOUD_ML_REGION", "us-east5"),
                (
                    "GOOGLE_APPLICATION_CREDENTIALS",
                    "/app/vertex/ambient-code-key.json",
                ),
            ]
            .iter()
            .chain(extra)
            .find(|(name, _)| *name == k)
            .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn vertex_mode_is_off_by_default_and_needs_a_switch() {
        let off = SessionConfig::from_lookup("img", "b", vertex_env(&[])).unwrap();
        assert_eq!(off.vertex, None, "settings alone do not turn Vertex AI on");
        assert!(off.require_runner_secrets);
        for value in ["1", "true", "YES"] {
            let on = SessionConfig::from_lookup(
                "img",
                "b",
                vertex_env(if value == "1" {
                    &[("USE_VERTEX", "1")]
                } else if value == "true" {
                    &[("USE_VERTEX", "true")]
                } else {
                    &[("USE_VERTEX", "YES")]
                }),
            )
            .unwrap();
            let v = on.vertex.expect("Vertex AI on");
            assert_eq!(v.project_id, "my-project");
            assert_eq!(v.region, "us-east5");
            assert_eq!(v.credentials_path, "/app/vertex/ambient-code-key.json");
            assert!(
                !on.require_runner_secrets,
                "Vertex AI mode does not need ambient-runner-secrets"
            );
        }
        let legacy =
            SessionConfig::from_lookup("img", "b", vertex_env(&[("CLAUDE_CODE_USE_VERTEX", "1")]))
                .unwrap();
        assert!(legacy.vertex.is_some(), "the legacy switch also works");
        let explicit_off = SessionConfig::from_lookup(
            "img",
            "b",
            vertex_env(&[("USE_VERTEX", "0"), ("CLAUDE_CODE_USE_VERTEX", "1")]),
        )
        .unwrap();
        assert!(
            explicit_off.vertex.is_none(),
            "USE_VERTEX wins over the legacy switch"
        );
        let still_required = SessionConfig::from_lookup(
            "img",
            "b",
            vertex_env(&[("USE_VERTEX", "1"), ("REQUIRE_RUNNER_SECRETS", "true")]),
        )
        .unwrap();
        assert!(still_required.require_runner_secrets);
    }

    #[test]
    fn bad_vertex_settings_are_rejected_with_the_variable_and_allowed_values() {
        let err = SessionConfig::from_lookup("img", "b", vertex_env(&[("USE_VERTEX", "maybe")]))
            .unwrap_err();
        assert_eq!(err.variable, "USE_VERTEX");
        let text = err.to_string();
        assert!(text.starts_with("USE_VERTEX: \"maybe\""), "{text}");
        assert!(
            text.contains("1, true or yes") && text.contains("0, false or no"),
            "{text}"
        );
        let err = SessionConfig::from_lookup("img", "b", |k| {
            (k == "CLAUDE_CODE_USE_VERTEX").then(|| "on!".into())
        })
        .unwrap_err();
        assert_eq!(err.variable, "CLAUDE_CODE_USE_VERTEX");
        let err = SessionConfig::from_lookup("img", "b", |k| match k {
            "USE_VERTEX" => Some("1".into()),
            "CLOUD_ML_REGION" => Some("us-east5".into()),
            _ => None,
        })
        .unwrap_err();
        assert_eq!(
            err.variable,
            "ANTHROPIC_VERTEX_PROJECT_ID, GOOGLE_APPLICATION_CREDENTIALS"
        );
        assert!(err.message.contains("Vertex AI mode"), "{err}");
    }

    #[test]
    fn observability_switches_are_off_by_default_and_parsed_like_vertex() {
        let d = SessionConfig::from_lookup("img", "b", |_| None).unwrap();
        assert!(!d.langfuse && !d.mlflow);
        let on = SessionConfig::from_lookup("img", "b", |k| match k {
            "LANGFUSE_ENABLED" => Some("true".into()),
            "MLFLOW_TRACING_ENABLED" => Some(" 1 ".into()),
            _ => None,
        })
        .unwrap();
        assert!(on.langfuse && on.mlflow);
        assert!(on.vertex.is_none(), "independent of Vertex AI mode");
        let off = SessionConfig::from_lookup("img", "b", |k| match k {
            "LANGFUSE_ENABLED" => Some("no".into()),
            "MLFLOW_TRACING_ENABLED" => Some(String::new()),
            _ => None,
        })
        .unwrap();
        assert!(!off.langfuse && !off.mlflow, "no and empty are off");
    }

    #[test]
    fn timeout_enforcement_is_on_unless_switched_off() {
        assert!(SessionConfig::defaults("img", "b").enforce_timeout);
        assert!(
            SessionConfig::from_lookup("img", "b", |_| None)
                .unwrap()
                .enforce_timeout
        );
        let with = |value: &'static str| {
            SessionConfig::from_lookup("img", "b", move |k| {
                (k == "ENFORCE_SESSION_TIMEOUT").then(|| value.to_owned())
            })
        };
        for off in ["false", "0", "NO"] {
            assert!(!with(off).unwrap().enforce_timeout, "{off}");
        }
        for on in ["true", "1", "yes", ""] {
            assert!(with(on).unwrap().enforce_timeout, "{on:?}");
        }
        let err = with("sometimes").unwrap_err();
        assert_eq!(err.variable, "ENFORCE_SESSION_TIMEOUT");
        assert!(
            err.to_string()
                .starts_with("ENFORCE_SESSION_TIMEOUT: \"sometimes\" is not a switch"),
            "{err}"
        );
    }

    #[test]
    fn quantities_parse_like_kubernetes() {
        let cases: [(&str, Option<f64>); 16] = [
            ("500m", Some(0.5)),
            ("2", Some(2.0)),
            ("1.5", Some(1.5)),
            (".5", Some(0.5)),
            ("0", Some(0.0)),
            ("512Mi", Some(512.0 * 1024.0 * 1024.0)),
            ("8Gi", Some(8.0 * 1024_f64.powi(3))),
            ("1G", Some(1e9)),
            ("1e3", Some(1e3)),
            ("8GB", None),
            ("-1", None),
            ("lots", None),
            ("1..5", None),
            ("Gi", None),
            ("1e", None),
            ("2 Gi", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_quantity(text), expected, "{text:?}");
        }
    }

    #[test]
    fn runner_resources_default_and_override_per_variable() {
        let d = SessionConfig::from_lookup("img", "b", |_| None).unwrap();
        assert_eq!(d.runner_resources, RunnerResources::default());
        assert_eq!(d.runner_resources.memory_limit, "8Gi");
        assert_eq!(d.runner_resources.cpu_request, "500m");
        let c = SessionConfig::from_lookup("img", "b", |k| match k {
            "RUNNER_CPU_REQUEST" => Some("250m".into()),
            "RUNNER_MEMORY_REQUEST" => Some(" 1Gi ".into()),
            "RUNNER_CPU_LIMIT" => Some("4".into()),
            "RUNNER_MEMORY_LIMIT" => Some("16Gi".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(
            c.runner_resources,
            RunnerResources {
                cpu_request: "250m".into(),
                memory_request: "1Gi".into(),
                cpu_limit: "4".into(),
                memory_limit: "16Gi".into(),
            }
        );
        let empty = SessionConfig::from_lookup("img", "b", |k| {
            (k == "RUNNER_MEMORY_LIMIT").then(String::new)
        })
        .unwrap();
        assert_eq!(
            empty.runner_resources.memory_limit, "8Gi",
            "empty means unset"
        );
    }

    #[test]
    fn bad_runner_resources_stop_start_up_naming_the_variable() {
        for variable in [
            "RUNNER_CPU_REQUEST",
            "RUNNER_MEMORY_REQUEST",
            "RUNNER_CPU_LIMIT",
            "RUNNER_MEMORY_LIMIT",
        ] {
            let err =
                SessionConfig::from_lookup("img", "b", |k| (k == variable).then(|| "8GB".into()))
                    .unwrap_err();
            assert_eq!(err.variable, variable);
            let text = err.to_string();
            assert!(
                text.starts_with(&format!("{variable}: \"8GB\" is not a resource quantity")),
                "{text}"
            );
            assert!(text.contains("Gi") && text.contains("500m"), "{text}");
        }
        // A request above its limit would make every runner pod invalid.
        let err = SessionConfig::from_lookup("img", "b", |k| {
            (k == "RUNNER_MEMORY_REQUEST").then(|| "10Gi".into())
        })
        .unwrap_err();
        assert_eq!(err.variable, "RUNNER_MEMORY_REQUEST, RUNNER_MEMORY_LIMIT");
        assert!(
            err.message.contains("10Gi") && err.message.contains("8Gi"),
            "{err}"
        );
        let err = SessionConfig::from_lookup("img", "b", |k| {
            (k == "RUNNER_CPU_LIMIT").then(|| "250m".into())
        })
        .unwrap_err();
        assert_eq!(err.variable, "RUNNER_CPU_REQUEST, RUNNER_CPU_LIMIT");
        // Equal request and limit (Guaranteed QoS) is fine, in different spellings.
        let equal = SessionConfig::from_lookup("img", "b", |k| match k {
            "RUNNER_CPU_REQUEST" => Some("2".into()),
            "RUNNER_CPU_LIMIT" => Some("2000m".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(equal.runner_resources.cpu_request, "2");
    }

    #[test]
    fn bad_observability_switches_stop_start_up_naming_the_variable() {
        for variable in ["LANGFUSE_ENABLED", "MLFLOW_TRACING_ENABLED"] {
            let err = SessionConfig::from_lookup("img", "b", |k| {
                (k == variable).then(|| "enabled".into())
            })
            .unwrap_err();
            assert_eq!(err.variable, variable);
            let text = err.to_string();
            assert!(
                text.starts_with(&format!("{variable}: \"enabled\"")),
                "{text}"
            );
            assert!(
                text.contains("1, true or yes") && text.contains("0, false or no"),
                "{text}"
            );
        }
    }

    #[test]
    fn mcp_settings_come_from_the_environment() {
        let c = SessionConfig::from_lookup("img", "b", |k| match k {
            "MCP_CONFIG_FILE" => Some("/app/.mcp.json".into()),
            "GOOGLE_OAUTH_CLIENT_ID" => Some("id.apps.googleusercontent.com".into()),
            "GOOGLE_OAUTH_CLIENT_SECRET" => Some(" s3cret ".into()),
            "BACKEND_PUBLIC_URL" => Some("https://ambient.example.com/".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(
            c.mcp,
            McpSettings {
                config_file: Some("/app/.mcp.json".into()),
                google_client_id: Some("id.apps.googleusercontent.com".into()),
                google_client_secret: Some("s3cret".into()),
                google_redirect_uri: Some("https://ambient.example.com/oauth2callback".into()),
            }
        );
    }
}
