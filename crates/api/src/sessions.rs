//! API group `vteam.ambient-code/v1alpha1`: `AgenticSession` (one agent run) and
//! `ProjectSettings` (per-namespace project configuration), plus the annotation, label and
//! name contract shared with the backend.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::enums::string_enum;

/// The API group of this module's kinds.
pub const GROUP: &str = "vteam.ambient-code";
/// The only served and stored version.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` of this module's kinds.
pub const API_VERSION: &str = "vteam.ambient-code/v1alpha1";

/// Namespace label marking a namespace as an ambient-code project; only these are reconciled.
pub const LABEL_MANAGED_NAMESPACE: &str = "ambient-code.io/managed";
/// Session annotation requesting a start/restart (`Running`) or a stop (`Stopped`).
pub const ANNOTATION_DESIRED_PHASE: &str = "ambient-code.io/desired-phase";
/// Session annotation: when a start was requested (written by the backend).
pub const ANNOTATION_START_REQUESTED_AT: &str = "ambient-code.io/start-requested-at";
/// Session annotation: when a stop was requested (written by the backend).
pub const ANNOTATION_STOP_REQUESTED_AT: &str = "ambient-code.io/stop-requested-at";
/// Session annotation: why a stop was requested (`inactivity`, `run-finished`, ...).
pub const ANNOTATION_STOP_REASON: &str = "ambient-code.io/stop-reason";
/// Session annotation `true`: run the initial prompt once even on a resume.
pub const ANNOTATION_FORCE_EXECUTE_PROMPT: &str = "ambient-code.io/force-execute-prompt";
/// Session annotation naming the session this one continues.
pub const ANNOTATION_PARENT_SESSION_ID: &str = "vteam.ambient-code/parent-session-id";
/// Session annotation naming the runner-token Secret (written at token provisioning).
pub const ANNOTATION_RUNNER_TOKEN_SECRET: &str = "ambient-code.io/runner-token-secret";
/// Session annotation naming the runner ServiceAccount (written at token provisioning).
pub const ANNOTATION_RUNNER_SA: &str = "ambient-code.io/runner-sa";
/// Session annotation naming the creating user (metrics attribute).
pub const ANNOTATION_CREATED_BY: &str = "ambient-code.io/created-by";
/// Session label naming the scheduled session that created it.
pub const LABEL_SCHEDULED_SESSION_NAME: &str = "ambient-code.io/scheduled-session-name";
/// Session label `true` on sessions created by a scheduled trigger.
pub const LABEL_SCHEDULED_RUN: &str = "ambient-code.io/scheduled-run";
/// Runner-token Secret annotation: RFC 3339 time of the last token refresh.
pub const ANNOTATION_TOKEN_REFRESHED_AT: &str = "ambient-code.io/token-refreshed-at";
/// Per-session ServiceAccount annotation copied from `spec.userContext.userId`.
pub const ANNOTATION_CREATED_BY_USER_ID: &str = "ambient-code.io/created-by-user-id";
/// Annotation on copied Secrets: `<namespace>/<name>` of the source; only these are deleted.
pub const ANNOTATION_COPIED_FROM: &str = "vteam.ambient-code/copied-from";
/// Runner Pod and Service label holding the session name.
pub const LABEL_AGENTIC_SESSION: &str = "agentic-session";
/// The `app` label key.
pub const LABEL_APP: &str = "app";
/// `app` label value of runner Pods (selected by the Service and the NetworkPolicy).
pub const APP_RUNNER: &str = "ambient-code-runner";
/// Name of the runner container inside the runner Pod.
pub const RUNNER_CONTAINER: &str = "ambient-code-runner";
/// The only name a `ProjectSettings` object may have (one per namespace).
pub const PROJECT_SETTINGS_NAME: &str = "projectsettings";
/// Default `spec.repos[].branch` and `spec.activeWorkflow.branch`.
pub const DEFAULT_BRANCH: &str = "main";
/// Default `spec.llmSettings.model`.
pub const DEFAULT_MODEL: &str = "claude-sonnet-4-6";
/// Default `spec.llmSettings.temperature`.
pub const DEFAULT_TEMPERATURE: f64 = 0.7;
/// Default `spec.llmSettings.maxTokens`.
pub const DEFAULT_MAX_TOKENS: i64 = 4000;
/// Default `spec.timeout` in seconds.
pub const DEFAULT_TIMEOUT_SECONDS: i64 = 300;
/// Default `ProjectSettings.spec.inactivityTimeoutSeconds` (24 hours).
pub const DEFAULT_INACTIVITY_TIMEOUT_SECONDS: i64 = 86_400;

string_enum! {
    /// Lifecycle phase of an `AgenticSession` (`status.phase`).
    #[derive(Default)]
    pub enum SessionPhase as "status.phase" {
        /// Accepted; the runner Pod is not created yet.
        #[default]
        Pending => "Pending",
        /// The runner Pod exists and is starting.
        Creating => "Creating",
        /// The runner container is running.
        Running => "Running",
        /// A stop was requested; the runner Pod is being deleted.
        Stopping => "Stopping",
        /// Stopped on request or for inactivity.
        Stopped => "Stopped",
        /// The runner finished successfully.
        Completed => "Completed",
        /// The runner or its prerequisites failed.
        Failed => "Failed",
    }
}

impl SessionPhase {
    /// `Stopped`, `Completed` and `Failed`: nothing runs until a restart is requested.
    pub const fn is_terminal(self) -> bool {
        matches!(self, Self::Stopped | Self::Completed | Self::Failed)
    }
}

string_enum! {
    /// Value of the `ambient-code.io/desired-phase` annotation.
    pub enum DesiredPhase as "ambient-code.io/desired-phase" {
        /// Start or restart the session.
        Running => "Running",
        /// Stop the session.
        Stopped => "Stopped",
    }
}

string_enum! {
    /// Why a session stopped (`status.stoppedReason`).
    pub enum StoppedReason as "status.stoppedReason" {
        /// Stopped by a user request (any stop reason other than inactivity).
        User => "user",
        /// Stopped by the inactivity idler.
        Inactivity => "inactivity",
    }
}

string_enum! {
    /// Clone state of a reconciled repository.
    pub enum RepoStatus as "status.reconciledRepos[].status" {
        /// Being cloned.
        Cloning => "Cloning",
        /// Cloned and usable.
        Ready => "Ready",
        /// Cloning failed.
        Failed => "Failed",
    }
}

string_enum! {
    /// State of the reconciled workflow.
    pub enum WorkflowStatus as "status.reconciledWorkflow.status" {
        /// Being cloned.
        Cloning => "Cloning",
        /// Applied to the runner.
        Active => "Active",
        /// Applying failed.
        Failed => "Failed",
    }
}

/// Desired state of an `AgenticSession`: what to run and with which settings.
///
/// Every field is optional; the API server fills the documented defaults.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "vteam.ambient-code",
    version = "v1alpha1",
    kind = "AgenticSession",
    plural = "agenticsessions",
    singular = "agenticsession",
    shortname = "as",
    namespaced,
    status = "AgenticSessionStatus",
    derive = "PartialEq",
    derive = "Default",
    cel,
    doc = "An AI agent session run by a runner Pod, with stop, resume and inactivity handling.",
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.phase",
        description = "Lifecycle phase"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason",
        priority = 1,
        description = "Why the session is in its phase (the Ready condition's reason)"
    ),
    printcolumn(
        name = "Display Name",
        type_ = "string",
        json_path = ".spec.displayName",
        description = "Human-readable name"
    ),
    printcolumn(
        name = "Model",
        type_ = "string",
        json_path = ".spec.llmSettings.model",
        priority = 1,
        description = "LLM model"
    ),
    printcolumn(
        name = "Started",
        type_ = "date",
        json_path = ".status.startTime",
        priority = 1,
        description = "Start of the current run"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct AgenticSessionSpec {
    /// Git repositories cloned into the workspace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repos: Option<Vec<SessionRepo>>,
    /// Prompt sent on the first run only (not on resume).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_prompt: Option<String>,
    /// Human-readable session name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// The user the session runs for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_context: Option<UserContext>,
    /// Model settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llm_settings: Option<LlmSettings>,
    /// Timeout in seconds, passed to the runner as `TIMEOUT` (default 300).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = 300))]
    pub timeout: Option<i64>,
    /// Seconds without activity before the session is stopped; 0 disables the idler.
    /// Unset falls back to the project's `inactivityTimeoutSeconds`, then 24 hours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub inactivity_timeout: Option<i64>,
    /// Stop the session when the agent reports that its run finished (handled by the backend).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_on_run_finished: Option<bool>,
    /// Environment variables for the runner containers (`RUNNER_TYPE` selects the runner).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment_variables: Option<BTreeMap<String, String>>,
    /// MCP servers added to or removed from the runner's configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcp_servers: Option<McpServers>,
    /// Workflow repository applied to the runner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_workflow: Option<ActiveWorkflow>,
}

/// A repository cloned into the session workspace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SessionRepo {
    /// Clone URL.
    pub url: String,
    /// Branch to check out (default `main`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "main"))]
    pub branch: Option<String>,
    /// Push the runner's commits back when the session ends (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = false))]
    pub auto_push: Option<bool>,
}

impl SessionRepo {
    /// The branch to use, with the schema default applied.
    pub fn branch_or_default(&self) -> &str {
        self.branch.as_deref().unwrap_or(DEFAULT_BRANCH)
    }
}

/// The user a session runs for.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct UserContext {
    /// User identifier (copied to the runner ServiceAccount).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// Display name of the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Groups the user belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<String>>,
}

/// Model selection and sampling settings.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LlmSettings {
    /// Model name (default `claude-sonnet-4-6`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "claude-sonnet-4-6"))]
    pub model: Option<String>,
    /// Sampling temperature (default 0.7).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = 0.7))]
    pub temperature: Option<f64>,
    /// Maximum tokens per response (default 4000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = 4000))]
    pub max_tokens: Option<i64>,
}

/// MCP servers to add (`custom`) or switch off (`disabled`) for a runner.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct McpServers {
    /// Server name to free-form server configuration (kept as written).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::map_of_free_form_objects")]
    pub custom: Option<BTreeMap<String, serde_json::Value>>,
    /// Names of built-in servers to switch off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<Vec<String>>,
}

/// A workflow repository applied to the runner.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ActiveWorkflow {
    /// Clone URL of the workflow repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_url: Option<String>,
    /// Branch (default `main`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "main"))]
    pub branch: Option<String>,
    /// Path of the workflow inside the repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// Observed state of an `AgenticSession`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AgenticSessionStatus {
    /// Generation last acted on by the operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Lifecycle phase (default `Pending`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "Pending"))]
    pub phase: Option<SessionPhase>,
    /// Start of the current run (set when the phase is (re)initialised to `Pending`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the session reached a terminal phase; cleared on restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// Repositories as applied to the runner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconciled_repos: Option<Vec<ReconciledRepo>>,
    /// Workflow as applied to the runner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconciled_workflow: Option<ReconciledWorkflow>,
    /// Last user activity, written by the backend; cleared on restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_activity_time: Option<Time>,
    /// Why the session stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_reason: Option<StoppedReason>,
    /// SDK session identifier, read by the backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdk_session_id: Option<String>,
    /// SDK restart count, read by the backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdk_restart_count: Option<i64>,
    /// First time a runner container of this session was seen running; never cleared.
    /// Its presence, not `startTime`, marks a later run as a resume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner_started_at: Option<Time>,
    /// Value of the start/stop `*-requested-at` annotation the operator last acted on,
    /// so a lingering desired-phase annotation is not acted on twice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_desired_phase_at: Option<String>,
    /// UID of the runner Pod of the current run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner_pod_uid: Option<String>,
    /// Standard conditions (`Ready`, `PodCreated`, `PodScheduled`, `RunnerStarted`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::conditions")]
    pub conditions: Option<Vec<Condition>>,
}

/// A repository as applied to the runner.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ReconciledRepo {
    /// Clone URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Checked-out branch (deprecated; see `currentActiveBranch`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// Known branches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branches: Option<Vec<String>>,
    /// Branch currently checked out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_active_branch: Option<String>,
    /// The repository's default branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_branch: Option<String>,
    /// Directory name in the workspace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Clone state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<RepoStatus>,
    /// When the repository was cloned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloned_at: Option<Time>,
}

/// The workflow as applied to the runner.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ReconciledWorkflow {
    /// Clone URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_url: Option<String>,
    /// Branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// Path inside the repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Apply state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<WorkflowStatus>,
    /// When the workflow was applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_at: Option<Time>,
}

string_enum! {
    /// Access level a group gets in a project.
    pub enum GroupRole as "spec.groupAccess[].role" {
        /// Full control (ClusterRole `ambient-project-admin`).
        Admin => "admin",
        /// Edit access (ClusterRole `ambient-project-edit`).
        Edit => "edit",
        /// Read-only access (ClusterRole `ambient-project-view`).
        View => "view",
    }
}

string_enum! {
    /// Git hosting provider of a project repository.
    pub enum RepositoryProvider as "spec.repositories[].provider" {
        /// GitHub.
        Github => "github",
        /// GitLab.
        Gitlab => "gitlab",
    }
}

/// Project-wide settings; exactly one per namespace, named `projectsettings`.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "vteam.ambient-code",
    version = "v1alpha1",
    kind = "ProjectSettings",
    plural = "projectsettings",
    singular = "projectsettings",
    shortname = "ps",
    namespaced,
    status = "ProjectSettingsStatus",
    derive = "PartialEq",
    derive = "Default",
    cel,
    doc = "Per-namespace project settings: group access, repositories, inactivity timeout and MCP servers.",
    validation = Rule::new("self.metadata.name == 'projectsettings'").message("ProjectSettings must be named 'projectsettings' (one per namespace)"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether the namespace's RBAC, LimitRange and bindings are in place"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason",
        description = "Why Ready is what it is"
    ),
    printcolumn(
        name = "Bindings",
        type_ = "integer",
        json_path = ".status.groupBindingsCreated",
        priority = 1,
        description = "Group RoleBindings created from groupAccess"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct ProjectSettingsSpec {
    /// Groups granted access to the project namespace.
    pub group_access: Vec<GroupAccess>,
    /// Name of the runner Secret (accepted for compatibility; the operator uses `ambient-runner-secrets`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner_secrets_name: Option<String>,
    /// Repositories offered to sessions of this project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repositories: Option<Vec<ProjectRepository>>,
    /// Default inactivity timeout of the project's sessions in seconds (default 86400; 0 disables).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0), extend("default" = 86_400))]
    pub inactivity_timeout_seconds: Option<i64>,
    /// MCP servers for every session of the project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcp_servers: Option<McpServers>,
}

/// A group and the access it gets.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct GroupAccess {
    /// Group name as known to the cluster's authentication.
    pub group_name: String,
    /// Access level.
    pub role: GroupRole,
}

/// A repository offered to the project's sessions.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ProjectRepository {
    /// Clone URL.
    pub url: String,
    /// Branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// Hosting provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<RepositoryProvider>,
}

/// Observed state of a `ProjectSettings`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProjectSettingsStatus {
    /// Number of group RoleBindings created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub group_bindings_created: Option<i64>,
    /// Whether the RBAC for scheduled sessions exists.
    #[serde(
        default,
        rename = "scheduledSessionRBACReady",
        skip_serializing_if = "Option::is_none"
    )]
    pub scheduled_session_rbac_ready: Option<bool>,
    /// Whether the namespace LimitRange exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_range_ready: Option<bool>,
    /// Standard conditions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::conditions")]
    pub conditions: Option<Vec<Condition>>,
}

impl AgenticSession {
    /// `status.phase`, or `Pending` when no phase is recorded yet.
    pub fn phase(&self) -> SessionPhase {
        self.status
            .as_ref()
            .and_then(|s| s.phase)
            .unwrap_or_default()
    }

    /// The `ambient-code.io/desired-phase` request: `None` when absent, an error when the
    /// annotation holds something other than `Running` or `Stopped`.
    pub fn desired_phase(&self) -> Option<Result<DesiredPhase, crate::UnknownValue>> {
        self.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(ANNOTATION_DESIRED_PHASE))
            .map(|v| v.parse())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phase_and_desired_phase() {
        let mut session = AgenticSession::new("s", AgenticSessionSpec::default());
        assert_eq!(session.phase(), SessionPhase::Pending);
        assert_eq!(session.desired_phase(), None);
        session.status = Some(AgenticSessionStatus {
            phase: Some(SessionPhase::Running),
            ..AgenticSessionStatus::default()
        });
        assert_eq!(session.phase(), SessionPhase::Running);
        let annotations = session.metadata.annotations.get_or_insert_default();
        annotations.insert(ANNOTATION_DESIRED_PHASE.into(), "Stopped".into());
        assert_eq!(session.desired_phase(), Some(Ok(DesiredPhase::Stopped)));
        session
            .metadata
            .annotations
            .get_or_insert_default()
            .insert(ANNOTATION_DESIRED_PHASE.into(), "stopped".into());
        assert!(matches!(session.desired_phase(), Some(Err(e)) if e.value == "stopped"));
    }
}
