//! Pure builders of every object generated for a session: the runner Job (with its pod
//! template), the Service, and the per-session `ServiceAccount`, `Role`, `RoleBinding` and token
//! Secret. All naming, labels, owner references and defaults live here.

use std::collections::BTreeMap;

use agentic_api::sessions::{
    self as api, ANNOTATION_CREATED_BY_USER_ID, ANNOTATION_FORCE_EXECUTE_PROMPT,
    ANNOTATION_PARENT_SESSION_ID, AgenticSession, McpServers,
};
use k8s_openapi::{
    ByteString,
    api::{
        batch::v1::{Job, JobSpec},
        core::v1::{
            Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvFromSource, EnvVar,
            EnvVarSource, ExecAction, HTTPGetAction, KeyToPath, Lifecycle, LifecycleHandler,
            PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements, Secret,
            SecretEnvSource, SecretKeySelector, SecretVolumeSource, SecurityContext, Service,
            ServiceAccount, ServicePort, ServiceSpec, Volume, VolumeMount,
        },
        rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject},
    },
    apimachinery::pkg::{
        api::resource::Quantity, apis::meta::v1::ObjectMeta, apis::meta::v1::OwnerReference,
        util::intstr::IntOrString,
    },
};
use kube::{Resource, ResourceExt};

use super::{
    config::{
        LANGFUSE_SECRET, MLFLOW_SECRET, RunnerResources, SessionConfig, VERTEX_SECRET, VertexConfig,
    },
    names,
};

/// Job annotation naming the run it belongs to (the session's `status.startTime`).
pub const ANNOTATION_RUN: &str = "ambient-code.io/run-started-at";
/// `app` label of the Service.
pub const APP_SERVICE: &str = "ambient-code";
/// `app` label value of the `ServiceAccount`, `Role` and `RoleBinding`.
pub const APP_RUNNER_SA: &str = "ambient-runner";
/// `app` label value of the runner-token Secret.
pub const APP_RUNNER_TOKEN: &str = "ambient-runner-token";
/// Port of the runner's AG-UI server.
pub const AGUI_PORT: i32 = 8001;
/// Secret with the runner's API keys (`envFrom`).
pub const RUNNER_SECRETS: &str = "ambient-runner-secrets";
/// Optional Secret with integration settings (`envFrom`).
pub const INTEGRATION_SECRETS: &str = "ambient-non-vertex-integrations";
/// The S3 credentials of state sync in the shared storage mode (keys `access-key` and
/// `secret-key`), read from `BACKEND_NAMESPACE`.
pub const MINIO_SECRET: &str = "minio-credentials";
/// Key of [`INTEGRATION_SECRETS`] that selects the project's own storage (`custom`).
pub const STORAGE_MODE_KEY: &str = "STORAGE_MODE";

/// Where `init-hydrate` and `state-sync` find S3 (upstream's rules).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Storage {
    /// The operator's `S3_ENDPOINT` and `S3_BUCKET`, with the credentials of
    /// [`MINIO_SECRET`] in the backend's namespace when it exists.
    #[default]
    Shared,
    /// The shared storage with the credentials read from [`MINIO_SECRET`].
    SharedWith(S3Credentials),
    /// `STORAGE_MODE=custom` in the project's [`INTEGRATION_SECRETS`]: its `S3_ENDPOINT`,
    /// `S3_BUCKET`, `S3_ACCESS_KEY` and `S3_SECRET_KEY`.
    Custom,
}

/// The shared storage's access key pair.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Credentials {
    /// `access-key`.
    pub access_key: String,
    /// `secret-key`.
    pub secret_key: String,
}

impl std::fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Credentials")
            .field("access_key", &self.access_key)
            .field("secret_key", &"<redacted>")
            .finish()
    }
}

/// Whether a project's [`INTEGRATION_SECRETS`] `STORAGE_MODE` value selects its own storage.
pub fn is_custom_storage(value: Option<&str>) -> bool {
    value.is_some_and(|v| v.trim() == "custom")
}
/// Where the runner token file is mounted.
pub const TOKEN_MOUNT_PATH: &str = "/var/run/secrets/ambient";
/// Where the copied `ambient-vertex` Secret is mounted in Vertex AI mode.
pub const VERTEX_MOUNT_PATH: &str = "/app/vertex";
/// Runner variables read from the same-named keys of the copied Langfuse Secret when
/// `LANGFUSE_ENABLED` is on (each optional: a missing key or Secret leaves it unset).
pub const LANGFUSE_ENV: [&str; 4] = [
    "LANGFUSE_ENABLED",
    "LANGFUSE_HOST",
    "LANGFUSE_PUBLIC_KEY",
    "LANGFUSE_SECRET_KEY",
];
/// Runner variables read from the same-named keys of the copied `MLflow` Secret when
/// `MLFLOW_TRACING_ENABLED` is on (each optional).
pub const MLFLOW_ENV: [&str; 4] = [
    "MLFLOW_TRACKING_URI",
    "MLFLOW_TRACKING_AUTH",
    "MLFLOW_EXPERIMENT_NAME",
    "OBSERVABILITY_BACKENDS",
];
/// Values of the `MLflow` Secret's `MLFLOW_TRACKING_AUTH` that make the runner authenticate
/// to `MLflow` with its own Kubernetes identity (the per-session `ServiceAccount`).
pub const MLFLOW_KUBERNETES_AUTH: [&str; 2] = ["kubernetes", "kubernetes-namespaced"];
/// Variables `spec.environmentVariables` can never replace.
pub const PROTECTED_ENV: [&str; 2] = ["USE_VERTEX", "CLAUDE_CODE_USE_VERTEX"];

/// Inputs of the Job builder that do not come from the session itself.
#[derive(Debug, Clone, PartialEq)]
pub struct RunInputs<'a> {
    /// Operator settings.
    pub config: &'a SessionConfig,
    /// `status.startTime` of the current run, as written (names the run).
    pub run_id: String,
    /// The runner has run before for this session (`status.runnerStartedAt` is set).
    pub resume: bool,
    /// The project's MCP servers (`ProjectSettings.spec.mcpServers`).
    pub project_mcp: Option<&'a McpServers>,
    /// Where state sync finds S3.
    pub storage: Storage,
    /// The session's runner type from the agent registry (the built-in runner by default).
    pub runner: super::registry::RunnerProfile,
    /// `LLM_MODEL_VERTEX_ID`: the Vertex AI name of the session's model from the models
    /// manifest, when it lists one.
    pub model_vertex_id: Option<String>,
}

fn labels(session: &str, app: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (api::LABEL_AGENTIC_SESSION.to_owned(), session.to_owned()),
        (api::LABEL_APP.to_owned(), app.to_owned()),
    ])
}

/// Labels of runner Jobs and pods (selected by the Service and the operator's watches).
pub fn runner_labels(session: &str) -> BTreeMap<String, String> {
    labels(session, api::APP_RUNNER)
}

/// The controller owner reference to `session`, with the served `apiVersion` and
/// `blockOwnerDeletion: true`.
pub fn owner(session: &AgenticSession) -> Option<OwnerReference> {
    session.controller_owner_ref(&()).map(|mut o| {
        o.block_owner_deletion = Some(true);
        o
    })
}

fn meta(session: &AgenticSession, name: String, labels: BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: session.namespace(),
        labels: Some(labels),
        owner_references: owner(session).map(|o| vec![o]),
        ..ObjectMeta::default()
    }
}

fn value(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.into()),
        value_from: None,
    }
}

fn secret_ref(name: &str, secret: &str, key: &str, optional: bool) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.to_owned(),
                key: key.to_owned(),
                optional: optional.then_some(true),
            }),
            ..EnvVarSource::default()
        }),
    }
}

/// Applies `spec.environmentVariables` to `env` with replace semantics: an existing plain
/// value is replaced, a `valueFrom` entry and the protected Vertex switches are kept, new
/// names are appended (in name order).
pub fn apply_user_env(env: &mut Vec<EnvVar>, user: Option<&BTreeMap<String, String>>) {
    for (name, v) in user.into_iter().flatten() {
        if PROTECTED_ENV.contains(&name.as_str()) {
            continue;
        }
        match env.iter_mut().find(|e| &e.name == name) {
            Some(existing) if existing.value_from.is_some() => {}
            Some(existing) => existing.value = Some(v.clone()),
            None => env.push(value(name, v.clone())),
        }
    }
}

/// Adds `spec.environmentVariables` whose names are not present yet (init and sidecar
/// containers).
pub fn add_missing_env(env: &mut Vec<EnvVar>, user: Option<&BTreeMap<String, String>>) {
    for (name, v) in user.into_iter().flatten() {
        if !env.iter().any(|e| &e.name == name) {
            env.push(value(name, v.clone()));
        }
    }
}

fn json_or_empty<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

fn backend_api_url(config: &SessionConfig) -> String {
    format!(
        "http://backend-service.{}.svc.cluster.local:8080/api",
        config.backend_namespace
    )
}

/// The runner's state directory: `RUNNER_STATE_DIR` of the session, else the runner type's
/// `sandbox.stateDir`, else `.claude`.
fn state_dir(session: &AgenticSession, runner: &super::registry::RunnerProfile) -> String {
    session
        .spec
        .environment_variables
        .as_ref()
        .and_then(|e| e.get("RUNNER_STATE_DIR"))
        .filter(|d| !d.trim().is_empty())
        .cloned()
        .or_else(|| runner.state_dir.clone())
        .unwrap_or_else(|| ".claude".to_owned())
}

/// The S3 settings of `init-hydrate` and `state-sync`: the project's own storage as optional
/// references to its Secret, the shared storage as the operator's settings and, when
/// `minio-credentials` exists, its key pair. A storage that is not set up leaves the
/// credentials out and the pod still starts.
fn s3_env(session: &AgenticSession, config: &SessionConfig, storage: &Storage) -> Vec<EnvVar> {
    let mut env = vec![
        value("SESSION_NAME", session.name_any()),
        value("NAMESPACE", session.namespace().unwrap_or_default()),
    ];
    match storage {
        Storage::Shared => env.extend([
            value("S3_ENDPOINT", config.s3_endpoint.clone()),
            value("S3_BUCKET", config.s3_bucket.clone()),
        ]),
        // As values, as upstream: a copy of the shared credentials in the project's namespace
        // would be readable by the agent (its Role may get every Secret there), and these
        // open every project's state. Only `init-hydrate` and `state-sync` get them.
        Storage::SharedWith(credentials) => env.extend([
            value("S3_ENDPOINT", config.s3_endpoint.clone()),
            value("S3_BUCKET", config.s3_bucket.clone()),
            value("AWS_ACCESS_KEY_ID", credentials.access_key.clone()),
            value("AWS_SECRET_ACCESS_KEY", credentials.secret_key.clone()),
        ]),
        Storage::Custom => env.extend([
            secret_ref("S3_ENDPOINT", INTEGRATION_SECRETS, "S3_ENDPOINT", true),
            secret_ref("S3_BUCKET", INTEGRATION_SECRETS, "S3_BUCKET", true),
            secret_ref(
                "AWS_ACCESS_KEY_ID",
                INTEGRATION_SECRETS,
                "S3_ACCESS_KEY",
                true,
            ),
            secret_ref(
                "AWS_SECRET_ACCESS_KEY",
                INTEGRATION_SECRETS,
                "S3_SECRET_KEY",
                true,
            ),
        ]),
    }
    env
}

fn workflow_env(session: &AgenticSession, env: &mut Vec<EnvVar>) {
    if let Some(w) = &session.spec.active_workflow
        && let Some(url) = &w.git_url
    {
        env.push(value("ACTIVE_WORKFLOW_GIT_URL", url.clone()));
        env.push(value(
            "ACTIVE_WORKFLOW_BRANCH",
            w.branch
                .clone()
                .unwrap_or_else(|| api::DEFAULT_BRANCH.to_owned()),
        ));
        env.push(value(
            "ACTIVE_WORKFLOW_PATH",
            w.path.clone().unwrap_or_default(),
        ));
    }
}

/// The Vertex AI switches and, when the mode is on, its settings (the metadata server is
/// disabled so the Google libraries only use the mounted key).
pub fn vertex_env(vertex: Option<&VertexConfig>) -> Vec<EnvVar> {
    let Some(v) = vertex else {
        return vec![
            value("USE_VERTEX", "0"),
            value("CLAUDE_CODE_USE_VERTEX", "0"),
        ];
    };
    vec![
        value("USE_VERTEX", "1"),
        value("CLAUDE_CODE_USE_VERTEX", "1"),
        value("CLOUD_ML_REGION", v.region.clone()),
        value("ANTHROPIC_VERTEX_PROJECT_ID", v.project_id.clone()),
        value("GOOGLE_APPLICATION_CREDENTIALS", v.credentials_path.clone()),
        value("GCE_METADATA_HOST", "metadata.invalid"),
        value("GCE_METADATA_TIMEOUT", "1"),
    ]
}

/// The observability variables of the runner: `LANGFUSE_*` and `MLFLOW_*` /
/// `OBSERVABILITY_BACKENDS` as optional references to the copied Secrets, each group only
/// when its switch is on.
pub fn observability_env(config: &SessionConfig) -> Vec<EnvVar> {
    let langfuse = LANGFUSE_ENV
        .iter()
        .filter(|_| config.langfuse)
        .map(|k| secret_ref(k, LANGFUSE_SECRET, k, true));
    let mlflow = MLFLOW_ENV
        .iter()
        .filter(|_| config.mlflow)
        .map(|k| secret_ref(k, MLFLOW_SECRET, k, true));
    langfuse.chain(mlflow).collect()
}

/// Whether an `MLFLOW_TRACKING_AUTH` value asks for Kubernetes authentication.
pub fn mlflow_kubernetes_auth(value: &str) -> bool {
    MLFLOW_KUBERNETES_AUTH.contains(&value.trim())
}

/// Runs the runner pod as the per-session `ServiceAccount` `ambient-session-<name>` with its
/// token mounted (`MLflow` with Kubernetes authentication; the session's Role grants the
/// `MLflow` experiments). Without it the pod uses the namespace's default `ServiceAccount`
/// and mounts no token.
pub fn with_session_service_account(template: &mut PodTemplateSpec, session: &str) {
    if let Some(spec) = template.spec.as_mut() {
        spec.service_account_name = Some(names::service_account(session));
        spec.automount_service_account_token = Some(true);
    }
}

/// The MCP servers' settings from the operator's environment: the Google Workspace server's
/// credentials directory always; the MCP configuration file, the OAuth client and the OAuth
/// redirect URI when set. A variable the operator does not set is left to the runner's
/// `envFrom` Secrets (an explicit `env` entry would hide theirs).
pub fn mcp_env(mcp: &super::config::McpSettings) -> Vec<EnvVar> {
    let mut env = vec![value(
        "GOOGLE_MCP_CREDENTIALS_DIR",
        super::config::GOOGLE_MCP_CREDENTIALS_DIR,
    )];
    for (name, setting) in [
        ("MCP_CONFIG_FILE", &mcp.config_file),
        ("GOOGLE_OAUTH_CLIENT_ID", &mcp.google_client_id),
        ("GOOGLE_OAUTH_CLIENT_SECRET", &mcp.google_client_secret),
        ("GOOGLE_OAUTH_REDIRECT_URI", &mcp.google_redirect_uri),
    ] {
        if let Some(v) = setting {
            env.push(value(name, v.clone()));
        }
    }
    env
}

/// The session's model: `spec.llmSettings.model`, else the default model.
pub fn model(session: &AgenticSession) -> String {
    session
        .spec
        .llm_settings
        .as_ref()
        .and_then(|l| l.model.clone())
        .unwrap_or_else(|| api::DEFAULT_MODEL.to_owned())
}

fn repos_json(session: &AgenticSession) -> String {
    json_or_empty(&session.spec.repos.clone().unwrap_or_default())
}

/// The `ambient-code-runner` container's environment, before `spec.environmentVariables`.
pub fn runner_env(session: &AgenticSession, inputs: &RunInputs<'_>) -> Vec<EnvVar> {
    let spec = &session.spec;
    let name = session.name_any();
    let namespace = session.namespace().unwrap_or_default();
    let token_secret = names::token_secret(&name);
    let llm = spec.llm_settings.clone().unwrap_or_default();
    let user = spec.user_context.clone().unwrap_or_default();
    let annotations = session.annotations();
    let mut env = vec![
        value("DEBUG", "true"),
        value("AGENTIC_SESSION_NAME", name.clone()),
        value("AGENTIC_SESSION_NAMESPACE", namespace.clone()),
        value("SESSION_ID", name.clone()),
        value("PROJECT_NAME", namespace),
        value("WORKSPACE_PATH", "/workspace"),
        value("ARTIFACTS_DIR", "artifacts"),
        value("AGUI_PORT", AGUI_PORT.to_string()),
        secret_ref("AGUI_TOKEN", &token_secret, "agui-token", false),
        value("BOT_TOKEN_FILE", format!("{TOKEN_MOUNT_PATH}/bot-token")),
        value("USER_ID", user.user_id.unwrap_or_default()),
        value("USER_NAME", user.display_name.unwrap_or_default()),
        value(
            "INITIAL_PROMPT",
            spec.initial_prompt.clone().unwrap_or_default(),
        ),
        value("LLM_MODEL", model(session)),
        value(
            "LLM_TEMPERATURE",
            format!("{:.2}", llm.temperature.unwrap_or(api::DEFAULT_TEMPERATURE)),
        ),
        value(
            "LLM_MAX_TOKENS",
            llm.max_tokens
                .unwrap_or(api::DEFAULT_MAX_TOKENS)
                .to_string(),
        ),
        value("USE_AGUI", "true"),
        value(
            "TIMEOUT",
            spec.timeout
                .unwrap_or(api::DEFAULT_TIMEOUT_SECONDS)
                .to_string(),
        ),
        value("BACKEND_API_URL", backend_api_url(inputs.config)),
    ];
    if let Some(vertex_id) = &inputs.model_vertex_id {
        env.push(value("LLM_MODEL_VERTEX_ID", vertex_id.clone()));
    }
    env.extend(observability_env(inputs.config));
    env.extend(vertex_env(inputs.config.vertex.as_ref()));
    env.push(value("REPOS_JSON", repos_json(session)));
    env.extend(mcp_env(&inputs.config.mcp));
    // The whole `spec.mcpServers` object, `custom` and `disabled`, as upstream passed it.
    if let Some(servers) = &spec.mcp_servers {
        env.push(value("CUSTOM_MCP_SERVERS", json_or_empty(servers)));
    }
    if let Some(project) = inputs.project_mcp {
        env.push(value("PROJECT_MCP_SERVERS", json_or_empty(project)));
    }
    let parent = annotations
        .get(ANNOTATION_PARENT_SESSION_ID)
        .or_else(|| {
            spec.environment_variables
                .as_ref()
                .and_then(|e| e.get("PARENT_SESSION_ID"))
        })
        .filter(|p| !p.is_empty() && **p != name);
    if let Some(parent) = parent {
        env.push(value("PARENT_SESSION_ID", parent.clone()));
    }
    let forced = annotations
        .get(ANNOTATION_FORCE_EXECUTE_PROMPT)
        .is_some_and(|v| crate::runtime::config::parse_bool(v));
    if inputs.resume && !forced {
        env.push(value("IS_RESUME", "true"));
    }
    workflow_env(session, &mut env);
    env
}

fn mounts(state_dir: &str) -> Vec<VolumeMount> {
    vec![
        VolumeMount {
            name: "workspace".into(),
            mount_path: "/workspace".into(),
            ..VolumeMount::default()
        },
        VolumeMount {
            name: "workspace".into(),
            mount_path: format!("/app/{state_dir}"),
            sub_path: Some(state_dir.to_owned()),
            ..VolumeMount::default()
        },
    ]
}

fn quantities(cpu: &str, memory: &str) -> BTreeMap<String, Quantity> {
    BTreeMap::from([
        ("cpu".to_owned(), Quantity(cpu.to_owned())),
        ("memory".to_owned(), Quantity(memory.to_owned())),
    ])
}

/// The runner container's requests and limits, from the operator settings
/// (`RUNNER_CPU_REQUEST`, `RUNNER_MEMORY_REQUEST`, `RUNNER_CPU_LIMIT`, `RUNNER_MEMORY_LIMIT`;
/// default 500m/512Mi requested, 2000m/8Gi limit).
pub fn runner_resources(resources: &RunnerResources) -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(quantities(
            &resources.cpu_request,
            &resources.memory_request,
        )),
        limits: Some(quantities(&resources.cpu_limit, &resources.memory_limit)),
        ..ResourceRequirements::default()
    }
}

fn probe(initial: i32, period: i32, timeout: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some("/health".into()),
            port: IntOrString::String("agui".into()),
            ..HTTPGetAction::default()
        }),
        initial_delay_seconds: Some(initial),
        period_seconds: Some(period),
        timeout_seconds: Some(timeout),
        failure_threshold: Some(3),
        ..Probe::default()
    }
}

fn restricted() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Capabilities::default()
        }),
        ..SecurityContext::default()
    }
}

/// Where a runner image may ship Google Workspace MCP credentials; the `postStart` hook
/// copies them into [`GOOGLE_MCP_CREDENTIALS_DIR`](super::config::GOOGLE_MCP_CREDENTIALS_DIR).
const IMAGE_GOOGLE_CREDENTIALS_DIR: &str = "/app/.google_workspace_mcp/credentials";

/// The runner's `postStart` hook, as upstream's: creates the Google Workspace MCP credentials
/// directory in the workspace and copies in whatever the image ships at
/// [`IMAGE_GOOGLE_CREDENTIALS_DIR`]. The command always succeeds (`|| true`): nothing to
/// copy, or no workspace to write to, does not fail the container. It needs `/bin/sh` in the
/// runner image, as upstream's did.
fn google_credentials_hook() -> Lifecycle {
    let dir = super::config::GOOGLE_MCP_CREDENTIALS_DIR;
    Lifecycle {
        post_start: Some(LifecycleHandler {
            exec: Some(ExecAction {
                command: Some(vec![
                    "/bin/sh".into(),
                    "-c".into(),
                    format!(
                        "mkdir -p {dir} && cp -f {IMAGE_GOOGLE_CREDENTIALS_DIR}/* {dir}/ 2>/dev/null || true"
                    ),
                ]),
            }),
            ..LifecycleHandler::default()
        }),
        ..Lifecycle::default()
    }
}

/// The runner pod template: `init-hydrate`, `ambient-code-runner` and, when configured,
/// `state-sync`.
#[allow(clippy::too_many_lines)] // one literal pod spec, easier to read whole
pub fn pod_template(session: &AgenticSession, inputs: &RunInputs<'_>) -> PodTemplateSpec {
    let name = session.name_any();
    let config = inputs.config;
    let runner_type = &inputs.runner;
    let user_env = session.spec.environment_variables.as_ref();
    let state_dir = state_dir(session, runner_type);
    let token_secret = names::token_secret(&name);
    let sync_image = runner_type
        .state_sync_image
        .clone()
        .unwrap_or_else(|| config.state_sync_image.clone());
    let workspace = runner_type.workspace || runner_type.init;

    let mut runner_env = runner_env(session, inputs);
    add_missing_env(&mut runner_env, Some(&runner_type.env));
    apply_user_env(&mut runner_env, user_env);
    let mut runner_mounts = if workspace {
        mounts(&state_dir)
    } else {
        Vec::new()
    };
    runner_mounts.push(VolumeMount {
        name: "runner-token".into(),
        mount_path: TOKEN_MOUNT_PATH.into(),
        read_only: Some(true),
        ..VolumeMount::default()
    });
    if config.vertex.is_some() {
        runner_mounts.push(VolumeMount {
            name: "vertex".into(),
            mount_path: VERTEX_MOUNT_PATH.into(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
    }
    let mut env_from = vec![EnvFromSource {
        secret_ref: Some(SecretEnvSource {
            name: INTEGRATION_SECRETS.into(),
            optional: Some(true),
        }),
        ..EnvFromSource::default()
    }];
    // In Vertex AI mode the model is reached with the Google credentials; the API keys
    // Secret is not used (as upstream).
    if config.vertex.is_none() {
        env_from.push(EnvFromSource {
            secret_ref: Some(SecretEnvSource {
                name: RUNNER_SECRETS.into(),
                optional: Some(!config.require_runner_secrets),
            }),
            ..EnvFromSource::default()
        });
    }
    let runner = Container {
        name: api::RUNNER_CONTAINER.to_owned(),
        image: Some(
            runner_type
                .image
                .clone()
                .unwrap_or_else(|| config.runner_image.clone()),
        ),
        image_pull_policy: Some(config.image_pull_policy.clone()),
        ports: Some(vec![ContainerPort {
            name: Some("agui".into()),
            container_port: AGUI_PORT,
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        }]),
        env: Some(runner_env),
        env_from: Some(env_from),
        readiness_probe: Some(probe(3, 5, 2)),
        liveness_probe: Some(probe(20, 30, 5)),
        lifecycle: Some(google_credentials_hook()),
        security_context: Some(restricted()),
        resources: Some(runner_resources(
            &runner_type.resources(&config.runner_resources).0,
        )),
        volume_mounts: Some(runner_mounts),
        ..Container::default()
    };

    let mut init_env = s3_env(session, config, &inputs.storage);
    init_env.extend([
        value("BACKEND_API_URL", backend_api_url(config)),
        value("PROJECT_NAME", session.namespace().unwrap_or_default()),
        value("REPOS_JSON", repos_json(session)),
    ]);
    workflow_env(session, &mut init_env);
    init_env.push(secret_ref("BOT_TOKEN", &token_secret, "k8s-token", false));
    add_missing_env(&mut init_env, user_env);
    let init = Container {
        name: "init-hydrate".into(),
        image: Some(sync_image.clone()),
        image_pull_policy: Some(config.image_pull_policy.clone()),
        command: Some(vec!["/usr/local/bin/hydrate.sh".into()]),
        env: Some(init_env),
        security_context: Some(restricted()),
        volume_mounts: Some(mounts(&state_dir)),
        ..Container::default()
    };

    let mut containers = vec![runner];
    if runner_type.state_sync.unwrap_or(config.state_sync) {
        let mut env = s3_env(session, config, &inputs.storage);
        env.extend([
            value("SYNC_INTERVAL", "60"),
            value("MAX_SYNC_SIZE", "1073741824"),
        ]);
        add_missing_env(&mut env, Some(&runner_type.env));
        add_missing_env(&mut env, user_env);
        containers.push(Container {
            name: "state-sync".into(),
            image: Some(sync_image.clone()),
            image_pull_policy: Some(config.image_pull_policy.clone()),
            command: Some(vec!["/usr/local/bin/sync.sh".into()]),
            env: Some(env),
            resources: Some(ResourceRequirements {
                requests: Some(quantities("100m", "128Mi")),
                limits: Some(quantities("1000m", "1Gi")),
                ..ResourceRequirements::default()
            }),
            security_context: Some(restricted()),
            volume_mounts: Some(mounts(&state_dir)),
            ..Container::default()
        });
    }

    let mut volumes = Vec::new();
    if workspace {
        volumes.push(Volume {
            name: "workspace".into(),
            empty_dir: Some(EmptyDirVolumeSource {
                size_limit: Some(Quantity(runner_type.workspace_size.clone())),
                ..EmptyDirVolumeSource::default()
            }),
            ..Volume::default()
        });
    }
    volumes.extend([Volume {
        name: "runner-token".into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(token_secret),
            items: Some(vec![KeyToPath {
                key: "k8s-token".into(),
                path: "bot-token".into(),
                mode: None,
            }]),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    }]);
    if config.vertex.is_some() {
        volumes.push(Volume {
            name: "vertex".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(VERTEX_SECRET.into()),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
    }

    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(runner_labels(&name)),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            restart_policy: Some("Never".into()),
            termination_grace_period_seconds: Some(runner_type.termination_grace),
            automount_service_account_token: Some(false),
            security_context: config.pod_fs_group.map(|g| PodSecurityContext {
                fs_group: Some(g),
                fs_group_change_policy: Some("OnRootMismatch".into()),
                ..PodSecurityContext::default()
            }),
            init_containers: runner_type.init.then(|| vec![init]),
            containers,
            volumes: Some(volumes),
            ..PodSpec::default()
        }),
    }
}

/// The runner Job `<name>-job`: one pod, never retried (`backoffLimit: 0`), deadline
/// `spec.timeout` seconds (none when the timeout is 0 or less, or when
/// `ENFORCE_SESSION_TIMEOUT` is off). Annotated with the run and the session generation whose
/// spec the runner starts with.
pub fn job(session: &AgenticSession, inputs: &RunInputs<'_>) -> Job {
    let name = session.name_any();
    let mut metadata = meta(session, names::job(&name), runner_labels(&name));
    let mut annotations = BTreeMap::from([(ANNOTATION_RUN.to_owned(), inputs.run_id.clone())]);
    if let Some(generation) = session.metadata.generation {
        annotations.insert(
            super::live::ANNOTATION_SPEC_GENERATION.to_owned(),
            generation.to_string(),
        );
    }
    metadata.annotations = Some(annotations);
    let timeout = session.spec.timeout.unwrap_or(api::DEFAULT_TIMEOUT_SECONDS);
    Job {
        metadata,
        spec: Some(JobSpec {
            backoff_limit: Some(0),
            active_deadline_seconds: (inputs.config.enforce_timeout && timeout > 0)
                .then_some(timeout),
            template: pod_template(session, inputs),
            ..JobSpec::default()
        }),
        status: None,
    }
}

/// The Service `session-<name>` in front of the runner's AG-UI port, owned by the runner Job
/// (so deleting the Job removes it).
pub fn service(session: &AgenticSession, job_owner: Option<OwnerReference>) -> Service {
    let name = session.name_any();
    Service {
        metadata: ObjectMeta {
            name: Some(names::service(&name)),
            namespace: session.namespace(),
            labels: Some(labels(&name, APP_SERVICE)),
            owner_references: job_owner.map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(runner_labels(&name)),
            ports: Some(vec![ServicePort {
                name: Some("agui".into()),
                port: AGUI_PORT,
                target_port: Some(IntOrString::String("agui".into())),
                protocol: Some("TCP".into()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// The owner reference a Service gets to its Job.
pub fn job_owner(job: &Job) -> Option<OwnerReference> {
    job.controller_owner_ref(&()).map(|mut o| {
        o.block_owner_deletion = None;
        o
    })
}

/// The per-session `ServiceAccount` `ambient-session-<name>`.
pub fn service_account(session: &AgenticSession) -> ServiceAccount {
    let name = session.name_any();
    let mut metadata = meta(
        session,
        names::service_account(&name),
        labels(&name, APP_RUNNER_SA),
    );
    if let Some(user) = session
        .spec
        .user_context
        .as_ref()
        .and_then(|u| u.user_id.clone())
    {
        metadata.annotations = Some(BTreeMap::from([(
            ANNOTATION_CREATED_BY_USER_ID.to_owned(),
            user,
        )]));
    }
    ServiceAccount {
        metadata,
        ..ServiceAccount::default()
    }
}

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> PolicyRule {
    let strings = |v: &[&str]| Some(v.iter().map(|s| (*s).to_owned()).collect());
    PolicyRule {
        api_groups: strings(groups),
        resources: strings(resources),
        verbs: verbs.iter().map(|s| (*s).to_owned()).collect(),
        ..PolicyRule::default()
    }
}

/// The per-session Role `ambient-session-<name>-role`.
pub fn role(session: &AgenticSession) -> Role {
    let name = session.name_any();
    Role {
        metadata: meta(session, names::role(&name), labels(&name, APP_RUNNER_SA)),
        rules: Some(vec![
            rule(
                &[api::GROUP],
                &["agenticsessions"],
                &["get", "list", "watch", "create", "update", "patch"],
            ),
            rule(
                &["authorization.k8s.io"],
                &["selfsubjectaccessreviews"],
                &["create"],
            ),
            rule(&[""], &["secrets"], &["get"]),
            rule(
                &["mlflow.kubeflow.org"],
                &["experiments"],
                &["get", "list", "update"],
            ),
        ]),
    }
}

/// The per-session `RoleBinding` `ambient-session-<name>-rb`.
pub fn role_binding(session: &AgenticSession) -> RoleBinding {
    let name = session.name_any();
    RoleBinding {
        metadata: meta(
            session,
            names::role_binding(&name),
            labels(&name, APP_RUNNER_SA),
        ),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: names::role(&name),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: names::service_account(&name),
            namespace: session.namespace(),
            ..Subject::default()
        }]),
    }
}

/// The runner-token Secret `ambient-runner-token-<name>` holding `k8s-token` (from a
/// `TokenRequest`) and `agui-token`, stamped with the refresh time.
pub fn token_secret(
    session: &AgenticSession,
    k8s_token: &str,
    agui_token: &str,
    refreshed_at: &str,
) -> Secret {
    let name = session.name_any();
    let mut metadata = meta(
        session,
        names::token_secret(&name),
        labels(&name, APP_RUNNER_TOKEN),
    );
    metadata.annotations = Some(BTreeMap::from([(
        api::ANNOTATION_TOKEN_REFRESHED_AT.to_owned(),
        refreshed_at.to_owned(),
    )]));
    Secret {
        metadata,
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([
            (
                "k8s-token".to_owned(),
                ByteString(k8s_token.as_bytes().to_vec()),
            ),
            (
                "agui-token".to_owned(),
                ByteString(agui_token.as_bytes().to_vec()),
            ),
        ])),
        ..Secret::default()
    }
}

#[cfg(test)]
mod tests;
