//! The agent registry: the runner types a session can ask for with
//! `spec.environmentVariables.RUNNER_TYPE` (default `claude-agent-sdk`), read from the JSON
//! file the `ambient-agent-registry` `ConfigMap` mounts (`AGENT_REGISTRY_PATH`, default
//! `/config/registry/agent-registry.json`). An entry sets the runner's image, extra
//! environment, resources, state directory, state-sync image, which pod parts exist
//! (workspace, `init-hydrate`, `state-sync`), the workspace size and the termination grace
//! period. Without the file, or for a type it does not list, every session gets the built-in
//! runner ([`RunnerProfile::default`]).
//!
//! The file is read again at most once a minute ([`super::mounted`]); a file that cannot be
//! read or parsed keeps the entries read last (and is logged), as upstream.

use std::{collections::BTreeMap, path::PathBuf, sync::Arc, time::Duration};

use serde::Deserialize;

/// Where the registry file is read when `AGENT_REGISTRY_PATH` is not set.
pub const DEFAULT_REGISTRY_PATH: &str = "/config/registry/agent-registry.json";
/// The runner type of a session without `RUNNER_TYPE`.
pub const DEFAULT_RUNNER_TYPE: &str = "claude-agent-sdk";
/// How long the entries read last are used before the file is read again.
pub const REFRESH: Duration = Duration::from_mins(1);
/// Workspace size without a registry entry (or with an empty or invalid `workspaceSize`).
pub const DEFAULT_WORKSPACE_SIZE: &str = "10Gi";
/// Termination grace period without a registry entry (or with 0).
pub const DEFAULT_TERMINATION_GRACE: i64 = 60;
/// Reason of the Warning Event about a runner type that is not listed or has values that
/// cannot be used.
pub const REASON_RUNNER_TYPE_PROBLEM: &str = "RunnerTypeProblem";
/// `sandbox.persistence` value that turns state sync off.
pub const PERSISTENCE_NONE: &str = "none";

/// One entry of the registry file (fields this operator does not use are ignored).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RunnerType {
    /// The `RUNNER_TYPE` value that selects it.
    pub id: String,
    /// The runner container.
    pub container: ContainerSpec,
    /// The pod around it.
    pub sandbox: SandboxSpec,
}

/// `container` of a registry entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ContainerSpec {
    /// Runner image (empty: `AMBIENT_CODE_RUNNER_IMAGE`).
    pub image: String,
    /// AG-UI port (only compared with 8001, see the sessions documentation).
    pub port: i64,
    /// Variables added to the runner (and `state-sync`) when not already set.
    pub env: BTreeMap<String, String>,
    /// Per-key overrides of the runner's requests and limits.
    pub resources: Option<ResourcesSpec>,
}

/// `container.resources` of a registry entry: `cpu` and `memory` quantities.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct ResourcesSpec {
    /// Requests by resource name.
    pub requests: BTreeMap<String, String>,
    /// Limits by resource name.
    pub limits: BTreeMap<String, String>,
}

/// `sandbox` of a registry entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SandboxSpec {
    /// State directory under `/app` (empty: `.claude`).
    pub state_dir: String,
    /// Image of `init-hydrate` and `state-sync` (empty: `STATE_SYNC_IMAGE`).
    pub state_sync_image: String,
    /// `none` turns state sync off; anything else keeps it.
    pub persistence: String,
    /// Workspace `emptyDir` size limit (empty: 10Gi).
    pub workspace_size: String,
    /// Termination grace period in seconds (0: 60).
    pub termination_grace_period: i64,
    /// What `init-hydrate` seeds.
    pub seed: SeedSpec,
}

/// `sandbox.seed` of a registry entry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SeedSpec {
    /// Clone `spec.repos` into the workspace.
    pub clone_repos: bool,
    /// Restore the state directory from S3.
    pub hydrate_state: bool,
}

/// What the runner Job of one session is built with: a registry entry resolved against the
/// built-in defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunnerProfile {
    /// Runner image, when the entry names one.
    pub image: Option<String>,
    /// Variables added to the runner and `state-sync` containers when not already set.
    pub env: BTreeMap<String, String>,
    /// Valid `cpu`/`memory` request overrides.
    pub requests: BTreeMap<String, String>,
    /// Valid `cpu`/`memory` limit overrides.
    pub limits: BTreeMap<String, String>,
    /// State directory, when the entry names one (`RUNNER_STATE_DIR` still wins).
    pub state_dir: Option<String>,
    /// Image of `init-hydrate` and `state-sync`, when the entry names one.
    pub state_sync_image: Option<String>,
    /// Whether the pod has the `state-sync` sidecar; `None`: as the operator settings say
    /// (`STATE_SYNC_IMAGE`, `STATE_SYNC_ENABLED`).
    pub state_sync: Option<bool>,
    /// Whether the pod has `init-hydrate`.
    pub init: bool,
    /// Whether the pod has the workspace volume (always when it has `init-hydrate`).
    pub workspace: bool,
    /// Workspace size limit.
    pub workspace_size: String,
    /// Termination grace period in seconds.
    pub termination_grace: i64,
    /// Entry values that could not be used, as sentences naming the field.
    pub problems: Vec<String>,
}

impl Default for RunnerProfile {
    /// The built-in runner: workspace and `init-hydrate`, `state-sync` as the settings say,
    /// 10Gi workspace, 60 s grace, no overrides.
    fn default() -> Self {
        Self {
            image: None,
            env: BTreeMap::new(),
            requests: BTreeMap::new(),
            limits: BTreeMap::new(),
            state_dir: None,
            state_sync_image: None,
            state_sync: None,
            init: true,
            workspace: true,
            workspace_size: DEFAULT_WORKSPACE_SIZE.to_owned(),
            termination_grace: DEFAULT_TERMINATION_GRACE,
            problems: Vec::new(),
        }
    }
}

fn non_empty(s: &str) -> Option<String> {
    Some(s.trim().to_owned()).filter(|s| !s.is_empty())
}

/// Keeps the `cpu`/`memory` entries of `given` that are quantities; the others become
/// problems naming `field`.
fn quantities(
    given: &BTreeMap<String, String>,
    field: &str,
    problems: &mut Vec<String>,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (key, value) in given {
        if !matches!(key.as_str(), "cpu" | "memory") {
            problems.push(format!(
                "{field}.{key}: not used; allowed keys: cpu, memory"
            ));
        } else if super::config::parse_quantity(value).is_none() {
            problems.push(format!(
                "{field}.{key}: {value:?} is not a resource quantity; the default is used"
            ));
        } else {
            out.insert(key.clone(), value.trim().to_owned());
        }
    }
    out
}

impl RunnerProfile {
    /// Resolves registry entry `entry` (its pod parts follow `sandbox.persistence` and
    /// `sandbox.seed`, as upstream).
    pub fn from_entry(entry: &RunnerType) -> Self {
        let mut problems = Vec::new();
        let field = |f: &str| format!("runner type {:?}: {f}", entry.id);
        let sandbox = &entry.sandbox;
        let state_sync = sandbox.persistence.trim() != PERSISTENCE_NONE;
        let init = sandbox.seed.clone_repos || sandbox.seed.hydrate_state;
        let workspace_size = match non_empty(&sandbox.workspace_size) {
            Some(size) if super::config::parse_quantity(&size).is_some() => size,
            Some(size) => {
                problems.push(format!(
                    "{}: {size:?} is not a resource quantity; {DEFAULT_WORKSPACE_SIZE} is used",
                    field("sandbox.workspaceSize")
                ));
                DEFAULT_WORKSPACE_SIZE.to_owned()
            }
            None => DEFAULT_WORKSPACE_SIZE.to_owned(),
        };
        let port = entry.container.port;
        if port != 0 && port != i64::from(super::build::AGUI_PORT) {
            problems.push(format!(
                "{}: {port} is not used; runners listen on {} (AGUI_PORT), the port the Service, the NetworkPolicy and the operator's calls use",
                field("container.port"),
                super::build::AGUI_PORT
            ));
        }
        let (requests, limits) = match &entry.container.resources {
            Some(r) => (
                quantities(
                    &r.requests,
                    &field("container.resources.requests"),
                    &mut problems,
                ),
                quantities(
                    &r.limits,
                    &field("container.resources.limits"),
                    &mut problems,
                ),
            ),
            None => (BTreeMap::new(), BTreeMap::new()),
        };
        Self {
            image: non_empty(&entry.container.image),
            env: entry.container.env.clone(),
            requests,
            limits,
            state_dir: non_empty(&sandbox.state_dir),
            state_sync_image: non_empty(&sandbox.state_sync_image),
            state_sync: Some(state_sync),
            init,
            // `init-hydrate` writes into the workspace, so it always comes with it (upstream
            // built a pod mounting a missing volume for `persistence: none` with only
            // `hydrateState`).
            workspace: state_sync || sandbox.seed.clone_repos || init,
            workspace_size,
            termination_grace: if sandbox.termination_grace_period > 0 {
                sandbox.termination_grace_period
            } else {
                DEFAULT_TERMINATION_GRACE
            },
            problems,
        }
    }
}

impl RunnerProfile {
    /// The runner's requests and limits: `base` (the operator settings) with this runner
    /// type's valid overrides laid over it per key. An override that would put a request
    /// above its limit is dropped for that resource (both values stay the settings'), with a
    /// problem naming it.
    pub fn resources(
        &self,
        base: &super::config::RunnerResources,
    ) -> (super::config::RunnerResources, Vec<String>) {
        let mut out = base.clone();
        let mut problems = Vec::new();
        for (key, request, limit, base_request, base_limit) in [
            (
                "cpu",
                &mut out.cpu_request,
                &mut out.cpu_limit,
                &base.cpu_request,
                &base.cpu_limit,
            ),
            (
                "memory",
                &mut out.memory_request,
                &mut out.memory_limit,
                &base.memory_request,
                &base.memory_limit,
            ),
        ] {
            if let Some(v) = self.requests.get(key) {
                v.clone_into(request);
            }
            if let Some(v) = self.limits.get(key) {
                v.clone_into(limit);
            }
            let above = super::config::parse_quantity(request)
                .zip(super::config::parse_quantity(limit))
                .is_some_and(|(r, l)| r > l);
            if above {
                problems.push(format!(
                    "container.resources: {key} request {request} is above its limit {limit}; the operator's {base_request}/{base_limit} are used"
                ));
                base_request.clone_into(request);
                base_limit.clone_into(limit);
            }
        }
        (out, problems)
    }
}

/// Parses the registry file's content: a JSON list of entries.
pub fn parse(json: &str) -> Result<Vec<RunnerType>, String> {
    serde_json::from_str(json).map_err(|e| format!("not a JSON list of runner types: {e}"))
}

/// The runner type a session asks for: `RUNNER_TYPE` of `spec.environmentVariables`, else
/// [`DEFAULT_RUNNER_TYPE`].
pub fn runner_type(env: Option<&BTreeMap<String, String>>) -> &str {
    env.and_then(|e| e.get("RUNNER_TYPE"))
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
        .unwrap_or(DEFAULT_RUNNER_TYPE)
}

/// How a session's runner type was resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// The registry lists it.
    Found(RunnerProfile),
    /// No registry file (or none read yet): the built-in runner.
    NoRegistry,
    /// The registry does not list it: the built-in runner; the listed ids.
    Unknown(Vec<String>),
}

impl Resolution {
    /// The profile to build with.
    pub fn profile(&self) -> RunnerProfile {
        match self {
            Self::Found(p) => p.clone(),
            Self::NoRegistry | Self::Unknown(_) => RunnerProfile::default(),
        }
    }
}

/// The registry file and the entries read from it last.
#[derive(Debug)]
pub struct Registry(super::mounted::JsonFile<Vec<RunnerType>>);

impl Registry {
    /// A registry read from `path` when first needed, and again after [`REFRESH`].
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self::with_refresh(path, REFRESH)
    }

    /// A registry read from `path` when first needed, and again after `refresh`.
    pub fn with_refresh(path: impl Into<PathBuf>, refresh: Duration) -> Self {
        Self(super::mounted::JsonFile::new(
            path,
            "agent registry",
            refresh,
        ))
    }

    /// The entries, read again when the last read is older than the refresh interval. `None`
    /// while there is no file; a file that does not read keeps the entries read before.
    pub fn entries(&self) -> Option<Arc<Vec<RunnerType>>> {
        self.0.get()
    }

    /// Resolves runner type `id`.
    pub fn resolve(&self, id: &str) -> Resolution {
        let Some(entries) = self.entries() else {
            return Resolution::NoRegistry;
        };
        match entries.iter().find(|e| e.id == id) {
            Some(entry) => Resolution::Found(RunnerProfile::from_entry(entry)),
            None => Resolution::Unknown(entries.iter().map(|e| e.id.clone()).collect()),
        }
    }
}

#[cfg(test)]
mod tests;
