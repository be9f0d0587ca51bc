//! `agentic-operator session-trigger`: one run of a scheduled session, started by the
//! backend's `CronJob` (`ServiceAccount` `ambient-session-trigger`, the operator image).
//!
//! Settings come from the environment:
//!
//! | variable | meaning |
//! |---|---|
//! | `SESSION_TEMPLATE` | the `AgenticSession` spec, as JSON (required) |
//! | `PROJECT_NAMESPACE` | the project namespace to create the session in (required) |
//! | `SCHEDULED_SESSION_NAME` | the schedule's name (required; labels every session it makes) |
//! | `REUSE_LAST_SESSION` | `true`: restart the schedule's last session instead of creating one (default `false`) |
//! | `BACKEND_NAMESPACE` | namespace of the backend's `backend-service` (default `ambient-code`) |
//! | `BACKEND_API_URL` | the backend's API base URL, `http://…/api` (default from `BACKEND_NAMESPACE`) |
//!
//! Each run creates `<name>-<unix seconds>`, where `<name>` is the template's `displayName`
//! (else the schedule's name) made safe for object names and cut to 40 characters, labelled
//! `ambient-code.io/scheduled-session-name=<schedule>` and `ambient-code.io/scheduled-run=true`.
//! With reuse on, the schedule's newest session is restarted when it is `Stopped` or
//! `Completed` (annotations `desired-phase=Running`, `start-requested-at`,
//! `force-execute-prompt=true` and the template's `initialPrompt`); when it is `Running`, the
//! template's prompt is sent to it as a new AG-UI run through the backend (POST
//! `<BACKEND_API_URL>/projects/<ns>/agentic-sessions/<name>/agui/run` with the pod's
//! `ServiceAccount` token), and without a prompt the run is skipped; when it is still starting
//! or stopping (`Pending`, `Creating`, `Stopping`) the run is skipped; otherwise (`Failed`,
//! or no session yet) a new session is created.

use std::{collections::BTreeMap, path::PathBuf, process::ExitCode, time::Duration};

use agentic_api::sessions::{self as api, AgenticSession, AgenticSessionSpec, SessionPhase};
use jiff::Timestamp;
use kube::{
    Api, Client, ResourceExt,
    api::{ListParams, PostParams},
};

/// Longest name prefix before `-<unix seconds>` (keeps `session-<name>` within 63 characters).
pub const NAME_PREFIX_MAX: usize = 40;
/// How often a restart is retried after a write conflict.
const CONFLICT_RETRIES: usize = 5;
/// Namespace of the backend when `BACKEND_NAMESPACE` is not set.
pub const DEFAULT_BACKEND_NAMESPACE: &str = "ambient-code";
/// The `ServiceAccount` token the backend call authenticates with.
pub const SERVICE_ACCOUNT_TOKEN_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";
/// Longest wait for the backend's answer to a follow-up prompt.
pub const BACKEND_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the backend's API is: `address` (`host:port`) and the path its routes start with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendApi {
    /// `host:port` to connect to.
    pub address: String,
    /// Path prefix of the API routes (`/api`), without a trailing `/`.
    pub prefix: String,
}

impl BackendApi {
    /// The in-cluster `backend-service` of namespace `namespace`, as upstream's runner reaches it.
    pub fn in_namespace(namespace: &str) -> Self {
        Self {
            address: format!("backend-service.{namespace}.svc.cluster.local:8080"),
            prefix: "/api".to_owned(),
        }
    }

    /// Reads an `http://host[:port][/path]` URL (port 80 when left out).
    pub fn from_url(url: &str) -> Result<Self, String> {
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            format!("{url:?} is not an http:// URL; allowed: http://host[:port][/path], e.g. http://backend-service.ambient-code.svc.cluster.local:8080/api")
        })?;
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        if authority.is_empty() || authority.contains(['@', '?', '#']) {
            return Err(format!(
                "{url:?} has no usable host; allowed: http://host[:port][/path]"
            ));
        }
        let address = match authority.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                authority.to_owned()
            }
            Some(_) => {
                return Err(format!(
                    "{url:?} has a bad port; allowed: http://host[:port][/path] with a port from 0 to 65535"
                ));
            }
            None => format!("{authority}:80"),
        };
        let path = path.trim_end_matches('/');
        Ok(Self {
            address,
            prefix: if path.is_empty() {
                String::new()
            } else {
                format!("/{path}")
            },
        })
    }

    /// The AG-UI run route of session `name` in namespace `namespace`.
    pub fn run_path(&self, namespace: &str, name: &str) -> String {
        format!(
            "{}/projects/{namespace}/agentic-sessions/{name}/agui/run",
            self.prefix
        )
    }
}

/// What the trigger reads from its environment.
#[derive(Debug, Clone, PartialEq)]
pub struct TriggerConfig {
    /// `SESSION_TEMPLATE`.
    pub template: AgenticSessionSpec,
    /// `PROJECT_NAMESPACE`.
    pub namespace: String,
    /// `SCHEDULED_SESSION_NAME`.
    pub schedule: String,
    /// `REUSE_LAST_SESSION`.
    pub reuse: bool,
    /// `BACKEND_API_URL`, else the `backend-service` of `BACKEND_NAMESPACE`.
    pub backend: BackendApi,
    /// The `ServiceAccount` token file ([`SERVICE_ACCOUNT_TOKEN_FILE`]).
    pub token_file: PathBuf,
}

/// A trigger setting that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable}: {message}")]
pub struct TriggerConfigError {
    /// The variable at fault.
    pub variable: &'static str,
    /// What is wrong and what is allowed.
    pub message: String,
}

impl TriggerConfig {
    /// Reads the settings from `lookup` (the process environment in production).
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, TriggerConfigError> {
        let required = |variable: &'static str, what: &str| {
            lookup(variable)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
                .ok_or_else(|| TriggerConfigError {
                    variable,
                    message: format!("required: {what}"),
                })
        };
        let raw = required("SESSION_TEMPLATE", "the AgenticSession spec as JSON")?;
        let template = serde_json::from_str(&raw).map_err(|e| TriggerConfigError {
            variable: "SESSION_TEMPLATE",
            message: format!("not an AgenticSession spec in JSON: {e}"),
        })?;
        let namespace = required("PROJECT_NAMESPACE", "the project namespace")?;
        let schedule = required("SCHEDULED_SESSION_NAME", "the scheduled session's name")?;
        if schedule.len() > super::names::DNS_LABEL_MAX {
            return Err(TriggerConfigError {
                variable: "SCHEDULED_SESSION_NAME",
                message: format!(
                    "{schedule:?} has {} characters; a label value allows at most {}",
                    schedule.len(),
                    super::names::DNS_LABEL_MAX
                ),
            });
        }
        let reuse = match lookup("REUSE_LAST_SESSION") {
            None => false,
            Some(v) => super::config::parse_switch("REUSE_LAST_SESSION", &v).map_err(|e| {
                TriggerConfigError {
                    variable: "REUSE_LAST_SESSION",
                    message: e.message,
                }
            })?,
        };
        let backend = backend_api(&lookup)?;
        Ok(Self {
            template,
            namespace,
            schedule,
            reuse,
            backend,
            token_file: PathBuf::from(SERVICE_ACCOUNT_TOKEN_FILE),
        })
    }
}

/// The backend's API from `BACKEND_API_URL`, else from `BACKEND_NAMESPACE` (default
/// [`DEFAULT_BACKEND_NAMESPACE`]).
fn backend_api(lookup: &impl Fn(&str) -> Option<String>) -> Result<BackendApi, TriggerConfigError> {
    let set = |variable: &str| {
        lookup(variable)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    if let Some(url) = set("BACKEND_API_URL") {
        return BackendApi::from_url(&url).map_err(|message| TriggerConfigError {
            variable: "BACKEND_API_URL",
            message,
        });
    }
    let ns = set("BACKEND_NAMESPACE").unwrap_or_else(|| DEFAULT_BACKEND_NAMESPACE.to_owned());
    if !crate::runtime::names::is_dns_label(&ns) {
        return Err(TriggerConfigError {
            variable: "BACKEND_NAMESPACE",
            message: format!(
                "{ns:?} is not a namespace name; allowed: a lowercase DNS label (a-z, 0-9, '-'; at most 63 characters)"
            ),
        });
    }
    Ok(BackendApi::in_namespace(&ns))
}

/// Makes `name` usable as the start of an object name: lower case, runs of anything other
/// than `a-z`/`0-9` become one `-`, no leading or trailing `-`, at most [`NAME_PREFIX_MAX`]
/// characters; `scheduled` when nothing is left.
pub fn sanitize_name(name: &str) -> String {
    let mut out = String::new();
    for c in name.to_lowercase().chars() {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let mut out: String = out
        .trim_matches('-')
        .chars()
        .take(NAME_PREFIX_MAX)
        .collect();
    while out.ends_with('-') {
        out.pop();
    }
    if out.is_empty() {
        "scheduled".to_owned()
    } else {
        out
    }
}

/// The name of the session a run at `unix_seconds` creates.
pub fn session_name(config: &TriggerConfig, unix_seconds: i64) -> String {
    let base = config
        .template
        .display_name
        .as_deref()
        .filter(|d| !d.trim().is_empty())
        .unwrap_or(&config.schedule);
    format!("{}-{unix_seconds}", sanitize_name(base))
}

/// The session a run at `unix_seconds` creates.
pub fn new_session(config: &TriggerConfig, unix_seconds: i64) -> AgenticSession {
    let mut session =
        AgenticSession::new(&session_name(config, unix_seconds), config.template.clone());
    session.metadata.namespace = Some(config.namespace.clone());
    session.metadata.labels = Some(BTreeMap::from([
        (
            api::LABEL_SCHEDULED_SESSION_NAME.to_owned(),
            config.schedule.clone(),
        ),
        (api::LABEL_SCHEDULED_RUN.to_owned(), "true".to_owned()),
    ]));
    session
}

/// What one trigger run does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Create a new session.
    Create,
    /// Restart this finished session with the template's prompt.
    Restart(String),
    /// Send the template's prompt to this running session.
    FollowUp(String),
    /// The schedule's last session is still active: do nothing.
    Skip(String),
}

/// Decides from the schedule's sessions (any order) whether to create, restart, send the
/// prompt (`has_prompt`: the template has one) or skip.
pub fn decide(reuse: bool, has_prompt: bool, sessions: &[AgenticSession]) -> Decision {
    if !reuse {
        return Decision::Create;
    }
    let Some(last) = sessions
        .iter()
        .max_by_key(|s| (s.creation_timestamp().map(|t| t.0), s.name_any()))
    else {
        return Decision::Create;
    };
    match last.status.as_ref().and_then(|s| s.phase) {
        Some(SessionPhase::Stopped | SessionPhase::Completed) => Decision::Restart(last.name_any()),
        Some(SessionPhase::Failed) => Decision::Create,
        Some(SessionPhase::Running) if has_prompt => Decision::FollowUp(last.name_any()),
        None
        | Some(
            SessionPhase::Pending
            | SessionPhase::Creating
            | SessionPhase::Running
            | SessionPhase::Stopping,
        ) => Decision::Skip(last.name_any()),
    }
}

/// Turns `session` into a start request with the template's prompt (the change written on
/// restart).
pub fn restart_request(
    session: &mut AgenticSession,
    template: &AgenticSessionSpec,
    now: Timestamp,
) {
    let annotations = session.annotations_mut();
    annotations.insert(
        api::ANNOTATION_DESIRED_PHASE.to_owned(),
        "Running".to_owned(),
    );
    annotations.insert(
        api::ANNOTATION_START_REQUESTED_AT.to_owned(),
        now.to_string(),
    );
    annotations.insert(
        api::ANNOTATION_FORCE_EXECUTE_PROMPT.to_owned(),
        "true".to_owned(),
    );
    if template.initial_prompt.is_some() {
        session
            .spec
            .initial_prompt
            .clone_from(&template.initial_prompt);
    }
}

/// The AG-UI run input that gives session `name` the prompt `prompt` at `now`: the thread is
/// the session, one user message.
pub fn follow_up_input(name: &str, prompt: &str, now: Timestamp) -> serde_json::Value {
    serde_json::json!({
        "threadId": name,
        "runId": format!("scheduled-{}", now.as_second()),
        "messages": [{
            "id": format!("scheduled-msg-{}", now.as_nanosecond()),
            "role": "user",
            "content": prompt,
        }],
    })
}

/// The template's prompt, when it has one worth sending.
fn prompt(template: &AgenticSessionSpec) -> Option<&str> {
    template
        .initial_prompt
        .as_deref()
        .filter(|p| !p.trim().is_empty())
}

/// Why a trigger run failed.
#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    /// The `ServiceAccount` token for the backend call cannot be read.
    #[error("read the ServiceAccount token {path}: {source}")]
    Token {
        /// The token file.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The backend did not take the follow-up prompt.
    #[error("send the prompt to running AgenticSession {session} through the backend: {source}")]
    Backend {
        /// `namespace/name` of the session.
        session: String,
        /// The failed request.
        #[source]
        source: super::live::CallError,
    },
    /// An API request failed.
    #[error("{action} failed: {source}")]
    Kube {
        /// What was being done.
        action: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
}

fn kube_err(action: String) -> impl FnOnce(kube::Error) -> TriggerError {
    move |source| TriggerError::Kube { action, source }
}

/// One trigger run against `client` at `now`; returns what was done, as a sentence.
pub async fn run(
    client: &Client,
    config: &TriggerConfig,
    now: Timestamp,
) -> Result<String, TriggerError> {
    let ns = &config.namespace;
    let api: Api<AgenticSession> = Api::namespaced(client.clone(), ns);
    let existing = if config.reuse {
        api.list(&ListParams::default().labels(&format!(
            "{}={}",
            api::LABEL_SCHEDULED_SESSION_NAME,
            config.schedule
        )))
        .await
        .map_err(kube_err(format!(
            "list the sessions of schedule {}",
            config.schedule
        )))?
        .items
    } else {
        Vec::new()
    };
    match decide(config.reuse, prompt(&config.template).is_some(), &existing) {
        Decision::Create => {
            let session = new_session(config, now.as_second());
            let created = api
                .create(&PostParams::default(), &session)
                .await
                .map_err(kube_err(format!(
                    "create AgenticSession {ns}/{}",
                    session.name_any()
                )))?;
            Ok(format!(
                "created AgenticSession {ns}/{}",
                created.name_any()
            ))
        }
        Decision::Skip(name) => Ok(format!(
            "AgenticSession {ns}/{name} of this schedule is still active; nothing to do"
        )),
        Decision::FollowUp(name) => {
            let text = prompt(&config.template).unwrap_or_default();
            send_follow_up(config, &name, text, now).await?;
            Ok(format!(
                "sent the prompt to running AgenticSession {ns}/{name}"
            ))
        }
        Decision::Restart(name) => {
            let mut attempt = 0;
            loop {
                attempt += 1;
                let mut session = api
                    .get(&name)
                    .await
                    .map_err(kube_err(format!("get AgenticSession {ns}/{name}")))?;
                restart_request(&mut session, &config.template, now);
                match api.replace(&name, &PostParams::default(), &session).await {
                    Ok(_) => return Ok(format!("restarted AgenticSession {ns}/{name}")),
                    Err(kube::Error::Api(s)) if s.code == 409 && attempt < CONFLICT_RETRIES => {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    Err(e) => {
                        return Err(kube_err(format!("restart AgenticSession {ns}/{name}"))(e));
                    }
                }
            }
        }
    }
}

/// POSTs `text` as a new AG-UI run of session `name` to the backend, authenticated with the
/// token in `config.token_file`.
async fn send_follow_up(
    config: &TriggerConfig,
    name: &str,
    text: &str,
    now: Timestamp,
) -> Result<(), TriggerError> {
    let token_file = &config.token_file;
    let token = tokio::fs::read_to_string(token_file)
        .await
        .map_err(|source| TriggerError::Token {
            path: token_file.display().to_string(),
            source,
        })?;
    let bearer = format!("Bearer {}", token.trim());
    super::live::post_json(
        &config.backend.address,
        &config.backend.run_path(&config.namespace, name),
        ("Authorization", &bearer),
        &follow_up_input(name, text, now),
        BACKEND_TIMEOUT,
    )
    .await
    .map_err(|source| TriggerError::Backend {
        session: format!("{}/{name}", config.namespace),
        source,
    })
}

/// Runs `session-trigger` when `args` (without the program name) start with it: reads the
/// settings, runs once and returns the exit code (0 done, 1 failed, 2 bad settings). `None`
/// for any other command line.
pub fn command(args: &[String]) -> Option<ExitCode> {
    if args.first().map(String::as_str) != Some("session-trigger") {
        return None;
    }
    if args.iter().skip(1).any(|a| a == "-h" || a == "--help") {
        println!("{HELP}");
        return Some(ExitCode::SUCCESS);
    }
    crate::runtime::logging::init(false);
    let config = match TriggerConfig::from_lookup(|k| std::env::var(k).ok()) {
        Ok(config) => config,
        Err(error) => {
            tracing::error!("invalid configuration: {error}");
            return Some(ExitCode::from(2));
        }
    };
    if rustls::crypto::ring::default_provider()
        .install_default()
        .is_err()
    {
        tracing::debug!("a rustls crypto provider was already installed");
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!("cannot start the async runtime: {error}");
            return Some(ExitCode::FAILURE);
        }
    };
    let outcome = runtime.block_on(async {
        let client = Client::try_default().await.map_err(|e| e.to_string())?;
        run(&client, &config, Timestamp::now())
            .await
            .map_err(|e| e.to_string())
    });
    Some(match outcome {
        Ok(done) => {
            tracing::info!(schedule = %config.schedule, "{done}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            tracing::error!(schedule = %config.schedule, "{error}");
            ExitCode::FAILURE
        }
    })
}

/// Help text of `session-trigger`.
pub const HELP: &str = "\
agentic-operator session-trigger: start one run of a scheduled session (for CronJobs)

Environment:
  SESSION_TEMPLATE        AgenticSession spec as JSON (required)
  PROJECT_NAMESPACE       namespace to create the session in (required)
  SCHEDULED_SESSION_NAME  name of the schedule (required)
  REUSE_LAST_SESSION      true: restart the schedule's last finished session, or send the
                          prompt to it while it runs (default false)
  BACKEND_NAMESPACE       namespace of the backend's backend-service (default ambient-code)
  BACKEND_API_URL         the backend's API base URL (default
                          http://backend-service.<BACKEND_NAMESPACE>.svc.cluster.local:8080/api)";

#[cfg(test)]
mod tests;
