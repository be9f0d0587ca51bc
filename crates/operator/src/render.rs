//! `agentic-operator render -f FILE…`: the objects the operator would create for each custom
//! resource in the files, computed offline with the families' pure builders.
//!
//! Where a builder needs something only a cluster knows (an object's uid, a token, a
//! provisioned cluster's endpoint), a documented placeholder is used and a YAML comment on the
//! object says so. Objects in the files that are not custom resources the operator reconciles
//! (Namespaces, Secrets, Components, Agents, ...) are read as context: Components resolve lab
//! targets and Agents give evaluations their URL.

use std::{fmt::Write as _, path::PathBuf, process::ExitCode, sync::Arc};

use agentic_api::{
    evaluations::Experiment as Evaluation,
    labs::{Component, Experiment as Lab},
    sessions::{AgenticSession, ProjectSettings},
};
use kube::ResourceExt;
use serde::Serialize;
use serde_json::Value;

use crate::{
    evaluations::{agent, build as eval_build, gateway},
    labs::{
        build as lab_build, components,
        config::{HUB, LabsConfig},
    },
    sessions::project::{build as project_build, model::ProjectSettingsView},
    sessions::session::{
        build as session_build, build::RunInputs, config::SessionConfig, copied as session_copied,
        network as session_network, trusted_ca as session_trusted_ca,
    },
};

/// The uid given to a rendered custom resource that has none, so that owner references show.
pub const PLACEHOLDER_UID: &str = "00000000-0000-0000-0000-000000000000";

/// Flags of `agentic-operator render`.
#[derive(Debug, Clone, clap::Args)]
pub struct RenderArgs {
    /// A YAML file with custom resources (repeatable; `-` reads stdin).
    #[arg(short = 'f', long = "filename", value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,

    /// Render evaluation objects as `run --testkube-namespace` would place them.
    #[arg(long, value_name = "NAMESPACE")]
    pub testkube_namespace: Option<String>,
}

/// Why rendering failed.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// A file could not be read.
    #[error("cannot read {file}: {source}")]
    Read {
        /// The file.
        file: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A file is not YAML.
    #[error("{file} is not valid YAML: {source}")]
    Yaml {
        /// The file.
        file: String,
        /// The parser error.
        #[source]
        source: serde_yaml::Error,
    },
    /// A document does not match its kind's schema.
    #[error("{file}: {kind} {name}: {message}; fix the field named")]
    Invalid {
        /// The file.
        file: String,
        /// Its kind.
        kind: String,
        /// Its name.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// The labs configuration could not be loaded.
    #[error("{0}")]
    LabsConfig(#[from] crate::labs::config::ConfigError),
}

/// Options of [`render`].
#[derive(Debug, Clone, Default)]
pub struct RenderOptions {
    /// `--testkube-namespace`.
    pub testkube_namespace: Option<String>,
    /// Labs configuration (cluster type mappings, namespaces); defaults when `None`.
    pub labs: Option<LabsConfig>,
}

/// One rendered object.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    /// The custom resource it is generated for: `Kind namespace/name`.
    pub source: String,
    /// The object as JSON (with `apiVersion` and `kind`).
    pub object: Value,
    /// Notes on placeholders, printed as YAML comments.
    pub notes: Vec<String>,
}

impl Rendered {
    /// `kind` of the object.
    pub fn kind(&self) -> &str {
        self.object["kind"].as_str().unwrap_or_default()
    }

    /// `metadata.name` of the object.
    pub fn name(&self) -> &str {
        self.object["metadata"]["name"].as_str().unwrap_or_default()
    }
}

/// What [`render`] produced: the objects and, per input document that yields nothing, why.
#[derive(Debug, Clone, Default)]
pub struct Output {
    /// The generated objects, in input order.
    pub objects: Vec<Rendered>,
    /// Input documents that were read as context or not rendered, with the reason.
    pub skipped: Vec<String>,
}

impl Output {
    /// Multi-document YAML with comments.
    pub fn to_yaml(&self) -> String {
        let mut out = String::new();
        for s in &self.skipped {
            let _ = writeln!(out, "# {s}");
        }
        for r in &self.objects {
            out.push_str("---\n");
            let _ = writeln!(out, "# generated for {}", r.source);
            for n in &r.notes {
                let _ = writeln!(out, "# {n}");
            }
            match serde_yaml::to_string(&r.object) {
                Ok(y) => out.push_str(&y),
                Err(e) => {
                    let _ = writeln!(out, "# cannot print as YAML: {e}");
                }
            }
        }
        out
    }
}

fn to_value(object: &impl Serialize) -> Value {
    serde_json::to_value(object).unwrap_or(Value::Null)
}

/// Adds `apiVersion`/`kind` to a typed object's JSON (k8s-openapi types carry them).
fn typed<K: Serialize + k8s_openapi::Resource>(object: &K) -> Value {
    let mut v = to_value(object);
    v["apiVersion"] = Value::String(K::API_VERSION.to_owned());
    v["kind"] = Value::String(K::KIND.to_owned());
    v
}

struct Doc {
    file: String,
    value: Value,
}

impl Doc {
    fn kind(&self) -> &str {
        self.value["kind"].as_str().unwrap_or_default()
    }
    fn group(&self) -> &str {
        let api_version = self.value["apiVersion"].as_str().unwrap_or_default();
        api_version.split_once('/').map_or("", |(g, _)| g)
    }
    fn id(&self) -> String {
        let ns = self.value["metadata"]["namespace"].as_str().unwrap_or("");
        let name = self.value["metadata"]["name"].as_str().unwrap_or("");
        if ns.is_empty() {
            format!("{} {name}", self.kind())
        } else {
            format!("{} {ns}/{name}", self.kind())
        }
    }
    fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T, RenderError> {
        let mut value = self.value.clone();
        if value["metadata"]["uid"].is_null()
            && let Some(meta) = value["metadata"].as_object_mut()
        {
            meta.insert("uid".into(), Value::String(PLACEHOLDER_UID.into()));
        }
        serde_json::from_value(value).map_err(|e| RenderError::Invalid {
            file: self.file.clone(),
            kind: self.kind().to_owned(),
            name: self.value["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            message: e.to_string(),
        })
    }
}

/// Renders every custom resource in `files` (`(file name, YAML)`).
pub fn render(files: &[(String, String)], options: &RenderOptions) -> Result<Output, RenderError> {
    let mut docs = Vec::new();
    for (file, yaml) in files {
        for value in documents(yaml).map_err(|source| RenderError::Yaml {
            file: file.clone(),
            source,
        })? {
            docs.push(Doc {
                file: file.clone(),
                value,
            });
        }
    }
    let labs_config = match &options.labs {
        Some(c) => c.clone(),
        None => LabsConfig::from_env()?,
    };
    let mut components: Vec<Arc<Component>> = Vec::new();
    for d in &docs {
        if d.group() == agentic_api::labs::GROUP && d.kind() == "Component" {
            components.push(Arc::new(d.parse()?));
        }
    }
    let mut out = Output::default();
    let mut session_namespaces = std::collections::BTreeSet::new();
    for d in &docs {
        match (d.group(), d.kind()) {
            (agentic_api::sessions::GROUP, "AgenticSession") => {
                let session: AgenticSession = d.parse()?;
                let project = docs
                    .iter()
                    .filter(|p| {
                        p.group() == agentic_api::sessions::GROUP
                            && p.kind() == "ProjectSettings"
                            && p.value["metadata"]["namespace"] == d.value["metadata"]["namespace"]
                    })
                    .find_map(|p| p.parse::<ProjectSettings>().ok());
                match session_config() {
                    Ok(config) => {
                        out.objects
                            .extend(session_objects(&session, project.as_ref(), &config));
                        let ns = session.namespace().unwrap_or_default();
                        if session_namespaces.insert(ns.clone()) {
                            out.objects
                                .extend(session_namespace_objects(&session, &ns, &config));
                        }
                    }
                    Err(problem) => out.skipped.push(format!("{}: {problem}", d.id())),
                }
            }
            (agentic_api::evaluations::GROUP, "Experiment") => {
                let exp: Evaluation = d.parse()?;
                out.objects.extend(evaluation_objects(
                    &exp,
                    &docs,
                    options.testkube_namespace.as_deref(),
                ));
            }
            (agentic_api::labs::GROUP, "Experiment") => {
                let exp: Lab = d.parse()?;
                let (objects, problems) = lab_objects(&exp, &components, &labs_config);
                out.objects.extend(objects);
                out.skipped.extend(problems);
            }
            (agentic_api::sessions::GROUP, "ProjectSettings") => {
                let view: ProjectSettingsView = d.parse()?;
                match project_objects(&view) {
                    Ok(objects) => out.objects.extend(objects),
                    Err(problem) => out.skipped.push(format!("{}: {problem}", d.id())),
                }
            }
            _ => out
                .skipped
                .push(format!("{}: read as context, nothing generated", d.id())),
        }
    }
    Ok(out)
}

fn documents(yaml: &str) -> Result<Vec<Value>, serde_yaml::Error> {
    use serde::Deserialize;
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(yaml) {
        let value = Value::deserialize(doc)?;
        if !value.is_null() {
            out.push(value);
        }
    }
    Ok(out)
}

const UID_NOTE: &str = "owner uid is a placeholder: the API server assigns the real one";

/// The session controller's settings from the environment, read as `run` reads them: the
/// runner image from `AMBIENT_CODE_RUNNER_IMAGE`, `BACKEND_NAMESPACE` falling back to
/// `NAMESPACE` and then `default`; or why they cannot be used.
fn session_config() -> Result<SessionConfig, String> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    let backend_namespace = var("BACKEND_NAMESPACE")
        .or_else(|| var("NAMESPACE"))
        .unwrap_or_else(|| "default".to_owned());
    let runner_image = var("AMBIENT_CODE_RUNNER_IMAGE")
        .unwrap_or_else(|| crate::runtime::config::DEFAULT_RUNNER_IMAGE.to_owned());
    SessionConfig::from_lookup(&runner_image, &backend_namespace, |k| std::env::var(k).ok())
        .map_err(|e| format!("invalid operator setting {e}"))
}

/// What a namespace gets once for all its sessions: the runner `NetworkPolicy` and the copies
/// of the Secrets the settings ask for (`ambient-vertex` in Vertex AI mode, the Langfuse and
/// `MLflow` Secrets when their switches are on; shown owned by `session`; every session whose
/// run uses one becomes an owner).
fn session_namespace_objects(
    session: &AgenticSession,
    namespace: &str,
    config: &SessionConfig,
) -> Vec<Rendered> {
    let mut objects = vec![Rendered {
        source: format!("sessions of namespace {namespace}"),
        object: typed(&session_network::network_policy(
            namespace,
            &config.backend_namespace,
        )),
        notes: vec![format!(
            "one per namespace, applied when a session starts; ingress from namespace {} (BACKEND_NAMESPACE) only",
            config.backend_namespace
        )],
    }];
    objects.extend(
        session_copied::enabled(config)
            .into_iter()
            .map(|secret| secret_copy(session, config, namespace, secret)),
    );
    objects
}

/// The runner Job, Service, `ServiceAccount`, Role, `RoleBinding` and token Secret of a
/// session.
fn session_objects(
    session: &AgenticSession,
    project: Option<&ProjectSettings>,
    config: &SessionConfig,
) -> Vec<Rendered> {
    let source = format!(
        "AgenticSession {}/{}",
        session.namespace().unwrap_or_default(),
        session.name_any()
    );
    let inputs = RunInputs {
        config,
        run_id: "<status.startTime>".into(),
        resume: false,
        project_mcp: project.and_then(|p| p.spec.mcp_servers.as_ref()),
        storage: session_build::Storage::default(),
        // The registry file named by `AGENT_REGISTRY_PATH`, when it exists where this runs.
        runner: crate::sessions::session::registry::Registry::new(
            config.agent_registry_path.clone(),
        )
        .resolve(crate::sessions::session::registry::runner_type(
            session.spec.environment_variables.as_ref(),
        ))
        .profile(),
        model_vertex_id: crate::sessions::session::models::Models::new(
            config.models_manifest_path.clone(),
            std::time::Duration::ZERO,
        )
        .vertex_id(&session_build::model(session)),
    };
    let job = session_build::job(session, &inputs);
    let mut job_with_uid = job.clone();
    job_with_uid.metadata.uid = Some(PLACEHOLDER_UID.into());
    let service = session_build::service(session, session_build::job_owner(&job_with_uid));
    let rendered = |object: Value, notes: Vec<String>| Rendered {
        source: source.clone(),
        object,
        notes,
    };
    vec![
        rendered(
            typed(&session_build::service_account(session)),
            vec![UID_NOTE.into()],
        ),
        rendered(typed(&session_build::role(session)), vec![UID_NOTE.into()]),
        rendered(
            typed(&session_build::role_binding(session)),
            vec![UID_NOTE.into()],
        ),
        rendered(
            typed(&session_build::token_secret(
                session,
                "<TokenRequest token of the session's ServiceAccount>",
                "<random AG-UI token>",
                "<time of the last refresh>",
            )),
            vec![
                UID_NOTE.into(),
                "data holds placeholders: k8s-token comes from a TokenRequest, agui-token is random"
                    .into(),
            ],
        ),
        rendered(
            typed(&job),
            vec![
                UID_NOTE.into(),
                "created when the session starts; run-started-at is the session's status.startTime"
                    .into(),
                format!(
                    "runner image and pod settings from the environment (AMBIENT_CODE_RUNNER_IMAGE, default {})",
                    crate::runtime::config::DEFAULT_RUNNER_IMAGE
                ),
                format!(
                    "when the namespace has a ConfigMap {} with key {}, every container also mounts it at {}",
                    session_trusted_ca::TRUSTED_CA_BUNDLE,
                    session_trusted_ca::CA_BUNDLE_KEY,
                    session_trusted_ca::CA_BUNDLE_PATH
                ),
            ],
        ),
        rendered(
            typed(&service),
            vec!["owned by the runner Job (placeholder uid)".into()],
        ),
    ]
}

/// The copy of `secret` a session's namespace gets (data omitted).
fn secret_copy(
    session: &AgenticSession,
    config: &SessionConfig,
    namespace: &str,
    secret: session_copied::CopiedSecret,
) -> Rendered {
    let source = k8s_openapi::api::core::v1::Secret {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some(secret.name.into()),
            namespace: Some(config.backend_namespace.clone()),
            ..Default::default()
        },
        ..Default::default()
    };
    let mut notes = vec![
        UID_NOTE.into(),
        format!(
            "{}: type and data are copied from {}/{} when a run starts, and kept equal to it",
            secret.purpose, config.backend_namespace, secret.name
        ),
    ];
    if !secret.required {
        notes.push(
            "best effort: when the source is missing or the copy is refused the run starts without it \
             (Warning Event SecretCopyFailed); a transient API failure holds the start until a retry succeeds"
                .into(),
        );
    }
    if secret == session_copied::MLFLOW {
        notes.push(format!(
            "when its MLFLOW_TRACKING_AUTH is {}, the runner pod runs as ServiceAccount ambient-session-<name> with its token mounted",
            session_build::MLFLOW_KUBERNETES_AUTH.join(" or ")
        ));
    }
    Rendered {
        source: format!("sessions of namespace {namespace}"),
        object: typed(&session_copied::copied_secret(
            &source,
            namespace,
            session_copied::add_owner(&[], session),
        )),
        notes,
    }
}

/// The group `RoleBindings`, the scheduled-session `ServiceAccount`, Role and `RoleBinding`
/// and the `LimitRange` of a `ProjectSettings`, or why its spec is invalid.
fn project_objects(view: &ProjectSettingsView) -> Result<Vec<Rendered>, String> {
    let source = format!(
        "ProjectSettings {}/{}",
        view.namespace().unwrap_or_default(),
        view.name_any()
    );
    let grants = crate::sessions::project::model::validate(&view.spec)
        .map_err(|e| format!("not rendered, invalid spec: {e}"))?;
    let owner = project_build::owner_reference(view)
        .ok_or_else(|| "not rendered: no owner reference can be built".to_owned())?;
    let desired = project_build::desired(view, &grants, &owner);
    let rendered = |object: Value, notes: Vec<String>| Rendered {
        source: source.clone(),
        object,
        notes,
    };
    let mut out: Vec<Rendered> = desired
        .group_bindings
        .iter()
        .map(|b| rendered(typed(b), vec![UID_NOTE.into()]))
        .collect();
    out.push(rendered(
        typed(&desired.trigger_service_account),
        vec![UID_NOTE.into()],
    ));
    out.push(rendered(
        typed(&desired.trigger_role),
        vec![UID_NOTE.into()],
    ));
    out.push(rendered(
        typed(&desired.trigger_binding),
        vec![UID_NOTE.into()],
    ));
    out.push(rendered(
        typed(&desired.limit_range),
        vec![
            UID_NOTE.into(),
            "created once; an existing LimitRange of this name is left as it is".into(),
        ],
    ));
    Ok(out)
}

/// The `ConfigMap`, `TestWorkflow` and `TestTrigger` of an evaluation Experiment.
fn evaluation_objects(
    exp: &Evaluation,
    docs: &[Doc],
    testkube_namespace: Option<&str>,
) -> Vec<Rendered> {
    let source = format!(
        "Experiment.testbench {}/{}",
        exp.namespace().unwrap_or_default(),
        exp.name_any()
    );
    let agent_ref = &exp.spec.agent_ref;
    let agent_ns = agent_ref
        .namespace
        .clone()
        .unwrap_or_else(|| exp.namespace().unwrap_or_default());
    let agent_doc = docs.iter().find(|d| {
        d.group() == agent::AGENT_GROUP
            && d.kind() == "Agent"
            && d.value["metadata"]["name"] == agent_ref.name.as_str()
            && d.value["metadata"]["namespace"] == agent_ns.as_str()
    });
    let url = agent::resolve(&agent_ref.name, &agent_ns, agent_doc.map(|d| &d.value));
    let url_note = format!(
        "agentUrl {} from {} (a cluster's Agent status.url may differ)",
        url.url,
        url.source.reason()
    );
    let gateways: Vec<&Value> = docs
        .iter()
        .filter(|d| d.group() == agent::AGENT_GROUP && d.kind() == "AiGateway")
        .map(|d| &d.value)
        .collect();
    let exp_ns = exp.namespace().unwrap_or_default();
    let gw = gateway::resolve(&exp_ns, exp, gateways.iter().copied());
    let gateway_note = match &gw {
        gateway::Gateway::None => {
            "no AiGateway in the file (spec.aiGatewayRef unset, none in namespace ai-gateway): \
             no evaluate-template config; on a cluster the first AiGateway in ai-gateway is used"
                .to_owned()
        }
        gateway::Gateway::Found { url, .. } => format!("evaluate-template base URL {url}"),
        gateway::Gateway::Missing { namespace, name } => format!(
            "spec.aiGatewayRef names AiGateway {namespace}/{name}, which is not in the file: \
             rendered without evaluate-template config"
        ),
    };
    let desired = eval_build::desired(exp, testkube_namespace, &url, &gw);
    let mut out = vec![
        Rendered {
            source: source.clone(),
            object: typed(&desired.config_map),
            notes: Vec::new(),
        },
        Rendered {
            source: source.clone(),
            object: to_value(&desired.workflow),
            notes: vec![url_note, gateway_note],
        },
    ];
    if let Some(trigger) = &desired.trigger {
        out.push(Rendered {
            source,
            object: to_value(trigger),
            notes: Vec::new(),
        });
    }
    out
}

/// Claims, cluster Secrets, the hub Namespace, Applications, the Grafana datasource and the
/// Workflow of a lab Experiment, plus problems that keep parts from being rendered.
#[allow(clippy::too_many_lines)] // one pass over the targets, in the reconcile's order
fn lab_objects(
    exp: &Lab,
    catalogue: &[Arc<Component>],
    config: &LabsConfig,
) -> (Vec<Rendered>, Vec<String>) {
    let name = exp.name_any();
    let namespace = exp.namespace().unwrap_or_default();
    let owner = lab_build::Owner {
        name: &name,
        namespace: &namespace,
    };
    let source = format!("Experiment.illm {namespace}/{name}");
    let lookup = |n: &str| {
        catalogue
            .iter()
            .find(|c| c.name_any() == n)
            .cloned()
            .map(Ok)
    };
    let mut objects = Vec::new();
    let mut problems = Vec::new();
    let mut endpoints = Vec::new();
    let mut datasource = false;
    let mut hub_namespace = false;
    let push = |objects: &mut Vec<Rendered>, object: Value, notes: Vec<String>| {
        objects.push(Rendered {
            source: source.clone(),
            object,
            notes,
        });
    };
    for (index, target) in exp.spec.targets.iter().enumerate() {
        let type_ = target.cluster.type_.as_str();
        let server = if type_ == HUB {
            lab_build::IN_CLUSTER_SERVER.to_owned()
        } else {
            let Some(mapping) = config.cluster_types.get(type_) else {
                problems.push(format!(
                    "{source}: target {}: cluster type {type_} has no mapping in the labs configuration",
                    target.name
                ));
                continue;
            };
            let claim = lab_build::claim(owner, target, mapping);
            let cluster = lab_build::claim_name(&name, &target.name);
            let endpoint = format!("{cluster}.endpoint.invalid");
            push(&mut objects, to_value(&claim), Vec::new());
            push(
                &mut objects,
                to_value(&lab_build::cluster_secret(
                    owner,
                    &target.name,
                    &cluster,
                    &endpoint,
                    "{\"tlsClientConfig\":{\"insecure\":false}}",
                    config,
                )),
                vec![format!(
                    "created once the claim is Ready; server ({endpoint}) and config are placeholders for the claim's endpoint and connection Secret"
                )],
            );
            endpoints.push((target.name.clone(), endpoint.clone()));
            lab_build::server_url(&endpoint)
        };
        let mut refs = target.components.clone().unwrap_or_default();
        let observed = target.observability.as_ref().is_some_and(|o| o.enabled);
        if observed {
            refs.extend(lab_build::observability_refs(
                &name,
                lab_build::wants_tailscale(target),
            ));
        }
        let mut sources = Vec::new();
        let mut resolved = true;
        for (ci, r) in refs.iter().enumerate() {
            let field = format!("spec.targets[{index}].components[{ci}]");
            match components::resolve(r, &field, &lookup) {
                Ok(s) => sources.extend(s),
                Err(e) => {
                    problems.push(format!("{source}: {e}"));
                    resolved = false;
                }
            }
        }
        if !resolved || sources.is_empty() {
            continue;
        }
        if observed && !datasource {
            datasource = true;
            push(
                &mut objects,
                to_value(&lab_build::datasource(owner, config)),
                Vec::new(),
            );
        }
        if lab_build::wants_tailscale(target) {
            let source_secret = k8s_openapi::api::core::v1::Secret::default();
            push(
                &mut objects,
                typed(&lab_build::tailscale_oauth_secret(
                    owner,
                    &target.name,
                    &source_secret,
                )),
                vec![format!(
                    "written on the target cluster (through its kubeconfig) before its Application: type and data copied from the hub Secret {}/{}",
                    lab_build::TAILSCALE_SOURCE_NAMESPACE,
                    lab_build::TAILSCALE_SECRET
                )],
            );
        }
        if type_ == HUB && !hub_namespace {
            hub_namespace = true;
            push(
                &mut objects,
                typed(&lab_build::hub_namespace(owner)),
                vec![
                    "created only when no namespace of this name exists; an existing one is used as it is and kept at cleanup".into(),
                ],
            );
        }
        let mut notes = Vec::new();
        if !target.depends_on().is_empty() {
            let verb = if target.depends_on().len() == 1 {
                "is"
            } else {
                "are"
            };
            notes.push(format!(
                "created once {} {verb} healthy",
                target.depends_on().join(", ")
            ));
        }
        push(
            &mut objects,
            to_value(&lab_build::application(
                owner,
                &target.name,
                &server,
                &sources,
                config,
            )),
            notes,
        );
    }
    let params = lab_build::workflow_params(&name, &exp.spec.workflow, &endpoints);
    push(
        &mut objects,
        to_value(&lab_build::workflow(
            owner,
            &exp.spec.workflow,
            &params,
            config,
        )),
        vec!["submitted once every target is Ready; endpoints are placeholders".into()],
    );
    (objects, problems)
}

/// Runs `agentic-operator render` and returns the exit code.
pub fn command(args: &RenderArgs) -> ExitCode {
    let mut files = Vec::new();
    for path in &args.files {
        let read = if path.as_os_str() == "-" {
            std::io::read_to_string(std::io::stdin())
        } else {
            std::fs::read_to_string(path)
        };
        match read {
            Ok(text) => files.push((path.display().to_string(), text)),
            Err(source) => {
                eprintln!(
                    "error: {}",
                    RenderError::Read {
                        file: path.display().to_string(),
                        source
                    }
                );
                return ExitCode::from(2);
            }
        }
    }
    let options = RenderOptions {
        testkube_namespace: args.testkube_namespace.clone(),
        labs: None,
    };
    match render(&files, &options) {
        Ok(output) => {
            print!("{}", output.to_yaml());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn session_yaml(name: &str, ns: &str) -> String {
        format!(
            "apiVersion: vteam.ambient-code/v1alpha1\nkind: AgenticSession\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  initialPrompt: hi\n"
        )
    }

    #[test]
    fn each_session_namespace_gets_one_network_policy() {
        let files = vec![(
            "s.yaml".to_owned(),
            [
                session_yaml("a", "team-a"),
                session_yaml("b", "team-a"),
                session_yaml("c", "team-b"),
            ]
            .join("---\n"),
        )];
        let out = render(
            &files,
            &RenderOptions {
                testkube_namespace: None,
                labs: Some(crate::labs::config::LabsConfig::default()),
            },
        )
        .unwrap();
        let policies: Vec<(String, String)> = out
            .objects
            .iter()
            .filter(|r| r.kind() == "NetworkPolicy")
            .map(|r| {
                (
                    r.object["metadata"]["namespace"]
                        .as_str()
                        .unwrap()
                        .to_owned(),
                    r.source.clone(),
                )
            })
            .collect();
        assert_eq!(
            policies,
            [
                (
                    "team-a".to_owned(),
                    "sessions of namespace team-a".to_owned()
                ),
                (
                    "team-b".to_owned(),
                    "sessions of namespace team-b".to_owned()
                ),
            ]
        );
        let jobs = out.objects.iter().filter(|r| r.kind() == "Job").count();
        assert_eq!(jobs, 3, "every session still gets its own objects");
    }
    #[test]
    fn namespace_objects_show_the_copied_secrets_the_settings_ask_for() {
        let session: AgenticSession = serde_yaml::from_str(&session_yaml("a", "team-a")).unwrap();
        let copies = |config: &SessionConfig| -> Vec<String> {
            session_namespace_objects(&session, "team-a", config)
                .into_iter()
                .filter(|r| r.kind() == "Secret")
                .map(|r| r.object["metadata"]["name"].as_str().unwrap().to_owned())
                .collect()
        };
        let mut config = SessionConfig::defaults("img", "ambient-code");
        assert!(copies(&config).is_empty(), "nothing copied by default");
        config.langfuse = true;
        config.mlflow = true;
        assert_eq!(
            copies(&config),
            [
                "ambient-admin-langfuse-secret",
                "ambient-admin-mlflow-observability-secret"
            ]
        );
        let mlflow = session_namespace_objects(&session, "team-a", &config)
            .into_iter()
            .find(|r| r.object["metadata"]["name"] == "ambient-admin-mlflow-observability-secret")
            .unwrap();
        assert_eq!(
            mlflow.object["metadata"]["annotations"]["vteam.ambient-code/copied-from"],
            "ambient-code/ambient-admin-mlflow-observability-secret"
        );
        assert!(
            mlflow.notes.iter().any(|n| n.contains("best effort")),
            "{:?}",
            mlflow.notes
        );
    }
}
