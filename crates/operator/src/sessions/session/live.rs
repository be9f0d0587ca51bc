//! Spec changes while a session is `Running`: changes of `spec.repos` and
//! `spec.activeWorkflow` are pushed to the runner over HTTP (its Service
//! `session-<name>:8001`, header `X-Ambient-Session-Token` with the session's `agui-token`)
//! and recorded in `status.reconciledRepos` / `status.reconciledWorkflow`.
//!
//! | change | request |
//! |---|---|
//! | a repository added, or its branch changed | `POST /repos/add` `{url, branch, name}` |
//! | a repository removed | `POST /repos/remove` `{name}` |
//! | `activeWorkflow` set or changed | `POST /workflow` `{gitUrl, branch, path}` |
//!
//! The runner receives the spec of its start through its environment (`REPOS_JSON`,
//! `ACTIVE_WORKFLOW_*`); the Job records that spec's generation (annotation
//! `ambient-code.io/spec-generation`), so a runner started with the current spec only gets
//! the status recorded, never a request. Only successful requests are recorded: a failed one
//! is retried on a later reconcile.

use std::{collections::BTreeMap, time::Duration};

use agentic_api::sessions::{
    self as api, AgenticSession, ReconciledRepo, ReconciledWorkflow, RepoStatus, WorkflowStatus,
};
use jiff::Timestamp;
use k8s_openapi::{
    api::{batch::v1::Job, core::v1::Secret},
    apimachinery::pkg::apis::meta::v1::Time,
};
use kube::{
    Api, Client, ResourceExt,
    api::{Patch, PatchParams},
};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{build::AGUI_PORT, error::SessionError, names};

/// Job annotation: the session `metadata.generation` whose spec the runner was started with.
pub const ANNOTATION_SPEC_GENERATION: &str = "ambient-code.io/spec-generation";
/// Header carrying the session's `agui-token` on every operator → runner request.
pub const TOKEN_HEADER: &str = "X-Ambient-Session-Token";
/// How long one request to the runner may take (connect, send and answer).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// When to try again after a request failed.
pub const RETRY_AFTER: Duration = Duration::from_secs(15);

/// One request to the runner.
#[derive(Debug, Clone, PartialEq)]
pub struct RunnerCall {
    /// Path, e.g. `/repos/add`.
    pub path: &'static str,
    /// JSON body.
    pub body: Value,
}

/// What must be sent to bring the runner from `status` to `spec`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// Repositories to add (or switch to another branch): `(url, branch, name)`.
    pub add: Vec<(String, String, String)>,
    /// Names of repositories to remove.
    pub remove: Vec<String>,
    /// The workflow to set: `(gitUrl, branch, path)`.
    pub workflow: Option<(String, String, String)>,
}

impl Plan {
    /// Whether nothing needs to be sent.
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.remove.is_empty() && self.workflow.is_none()
    }

    /// The requests, removals first.
    pub fn calls(&self) -> Vec<RunnerCall> {
        let mut calls: Vec<RunnerCall> = self
            .remove
            .iter()
            .map(|name| RunnerCall {
                path: "/repos/remove",
                body: json!({"name": name}),
            })
            .collect();
        calls.extend(self.add.iter().map(|(url, branch, name)| RunnerCall {
            path: "/repos/add",
            body: json!({"url": url, "branch": branch, "name": name}),
        }));
        if let Some((git_url, branch, path)) = &self.workflow {
            calls.push(RunnerCall {
                path: "/workflow",
                body: json!({"gitUrl": git_url, "branch": branch, "path": path}),
            });
        }
        calls
    }
}

/// The workspace directory name of a repository: the last segment of its URL without
/// `.git` (`https://github.com/org/webapp.git` → `webapp`).
pub fn repo_name(url: &str) -> String {
    let trimmed = url.trim().trim_end_matches('/');
    let last = trimmed.rsplit(['/', ':']).next().unwrap_or(trimmed);
    last.strip_suffix(".git").unwrap_or(last).to_owned()
}

fn desired_repos(session: &AgenticSession) -> BTreeMap<String, (String, String)> {
    session
        .spec
        .repos
        .iter()
        .flatten()
        .map(|r| {
            (
                repo_name(&r.url),
                (r.url.clone(), r.branch_or_default().to_owned()),
            )
        })
        .collect()
}

fn desired_workflow(session: &AgenticSession) -> Option<(String, String, String)> {
    let w = session.spec.active_workflow.as_ref()?;
    let url = w.git_url.clone().filter(|u| !u.is_empty())?;
    Some((
        url,
        w.branch
            .clone()
            .unwrap_or_else(|| api::DEFAULT_BRANCH.to_owned()),
        w.path.clone().unwrap_or_default(),
    ))
}

/// Compares the spec with what `status` records as applied.
pub fn plan(session: &AgenticSession) -> Plan {
    let status = session.status.clone().unwrap_or_default();
    let applied: BTreeMap<String, (Option<String>, Option<String>)> = status
        .reconciled_repos
        .iter()
        .flatten()
        .filter_map(|r| {
            let name = r.name.clone().or_else(|| r.url.as_deref().map(repo_name))?;
            Some((
                name,
                (
                    r.url.clone(),
                    r.current_active_branch.clone().or_else(|| r.branch.clone()),
                ),
            ))
        })
        .collect();
    let desired = desired_repos(session);
    let mut out = Plan::default();
    for (name, (url, branch)) in &desired {
        let same = applied.get(name).is_some_and(|(u, b)| {
            u.as_deref() == Some(url.as_str()) && b.as_deref() == Some(branch.as_str())
        });
        if !same {
            out.add.push((url.clone(), branch.clone(), name.clone()));
        }
    }
    out.remove = applied
        .keys()
        .filter(|name| !desired.contains_key(*name))
        .cloned()
        .collect();
    if let Some(w) = desired_workflow(session) {
        let applied = status.reconciled_workflow.as_ref().map(|r| {
            (
                r.git_url.clone().unwrap_or_default(),
                r.branch.clone().unwrap_or_default(),
                r.path.clone().unwrap_or_default(),
            )
        });
        if applied.as_ref() != Some(&w) {
            out.workflow = Some(w);
        }
    }
    out
}

fn reconciled_repo(url: &str, branch: &str, name: &str, now: Timestamp) -> ReconciledRepo {
    ReconciledRepo {
        url: Some(url.to_owned()),
        branch: Some(branch.to_owned()),
        current_active_branch: Some(branch.to_owned()),
        name: Some(name.to_owned()),
        status: Some(RepoStatus::Ready),
        cloned_at: Some(Time(now)),
        ..ReconciledRepo::default()
    }
}

/// The status to record when the runner has everything of `plan` whose request succeeded
/// (`done[i]` for `plan.calls()[i]`): previously applied repositories minus the removed ones,
/// plus the added ones; the workflow if it was set.
pub fn applied_status(
    session: &AgenticSession,
    plan: &Plan,
    done: &[bool],
    now: Timestamp,
) -> Value {
    let status = session.status.clone().unwrap_or_default();
    let mut repos: Vec<ReconciledRepo> = status.reconciled_repos.clone().unwrap_or_default();
    let mut i = 0;
    for name in &plan.remove {
        if done.get(i).copied().unwrap_or(false) {
            repos.retain(|r| r.name.as_deref() != Some(name.as_str()));
        }
        i += 1;
    }
    for (url, branch, name) in &plan.add {
        if done.get(i).copied().unwrap_or(false) {
            repos.retain(|r| r.name.as_deref() != Some(name.as_str()));
            repos.push(reconciled_repo(url, branch, name, now));
        }
        i += 1;
    }
    let mut patch = json!({"reconciledRepos": repos});
    if let Some((git_url, branch, path)) = &plan.workflow
        && done.get(i).copied().unwrap_or(false)
    {
        patch["reconciledWorkflow"] = json!(ReconciledWorkflow {
            git_url: Some(git_url.clone()),
            branch: Some(branch.clone()),
            path: Some(path.clone()),
            status: Some(WorkflowStatus::Active),
            applied_at: Some(Time(now)),
        });
    }
    patch
}

/// The status recording the whole current spec as applied (the runner was started with it).
pub fn baseline_status(session: &AgenticSession, now: Timestamp) -> Value {
    let repos: Vec<ReconciledRepo> = desired_repos(session)
        .iter()
        .map(|(name, (url, branch))| reconciled_repo(url, branch, name, now))
        .collect();
    let workflow = desired_workflow(session).map(|(git_url, branch, path)| ReconciledWorkflow {
        git_url: Some(git_url),
        branch: Some(branch),
        path: Some(path),
        status: Some(WorkflowStatus::Active),
        applied_at: Some(Time(now)),
    });
    json!({"reconciledRepos": repos, "reconciledWorkflow": workflow})
}

/// Why a JSON POST (to a runner, or to the backend from `session-trigger`) failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// No answer within [`REQUEST_TIMEOUT`].
    #[error("POST {path} to {address}: no answer within {timeout:?}")]
    Timeout {
        /// Runner address.
        address: String,
        /// Request path.
        path: String,
        /// The limit.
        timeout: Duration,
    },
    /// Connecting, sending or reading failed.
    #[error("POST {path} to {address}: {source}")]
    Io {
        /// Runner address.
        address: String,
        /// Request path.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The peer answered with a status other than 2xx.
    #[error("POST {path} to {address}: answered {status}: {body}")]
    Status {
        /// Runner address.
        address: String,
        /// Request path.
        path: String,
        /// HTTP status code (0 when the answer was not HTTP).
        status: u16,
        /// Start of the answer's body.
        body: String,
    },
}

/// Sends one JSON POST to the runner at `address` (`host:port`) with the session token, over
/// plain HTTP/1.1, and waits at most `timeout` for the answer. Succeeds on a 2xx status.
pub async fn post(
    address: &str,
    token: &str,
    call: &RunnerCall,
    timeout: Duration,
) -> Result<(), CallError> {
    post_json(
        address,
        call.path,
        (TOKEN_HEADER, token),
        &call.body,
        timeout,
    )
    .await
}

/// Sends `body` as one JSON POST to `path` at `address` (`host:port`) with the extra `header`
/// (name, value), over plain HTTP/1.1, and waits at most `timeout` for the answer. Succeeds
/// on a 2xx status; any other is an error carrying the start of the answer's body.
pub async fn post_json(
    address: &str,
    path: &str,
    header: (&str, &str),
    body: &Value,
    timeout: Duration,
) -> Result<(), CallError> {
    let io = |source| CallError::Io {
        address: address.to_owned(),
        path: path.to_owned(),
        source,
    };
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(address).await.map_err(io)?;
        let body = body.to_string();
        let host = address.split(':').next().unwrap_or(address);
        let (name, value) = header;
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n{name}: {value}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await.map_err(io)?;
        let mut answer = Vec::new();
        stream
            .take(64 * 1024)
            .read_to_end(&mut answer)
            .await
            .map_err(io)?;
        Ok::<_, CallError>(answer)
    };
    let answer = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| CallError::Timeout {
            address: address.to_owned(),
            path: path.to_owned(),
            timeout,
        })??;
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .lines()
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse::<u16>().ok())
        .unwrap_or(0);
    if (200..300).contains(&status) {
        return Ok(());
    }
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .chars()
        .take(200)
        .collect();
    Err(CallError::Status {
        address: address.to_owned(),
        path: path.to_owned(),
        status,
        body,
    })
}

/// The in-cluster address of the runner of `session`.
pub fn runner_address(session: &AgenticSession) -> String {
    format!(
        "{}.{}.svc.cluster.local:{AGUI_PORT}",
        names::service(&session.name_any()),
        session.namespace().unwrap_or_default()
    )
}

async fn patch_status(
    client: &Client,
    session: &AgenticSession,
    status: Value,
) -> Result<(), SessionError> {
    let ns = session.namespace().unwrap_or_default();
    let name = session.name_any();
    let api: Api<AgenticSession> = Api::namespaced(client.clone(), &ns);
    api.patch_status(
        &name,
        &PatchParams::default(),
        &Patch::Merge(&json!({"status": status})),
    )
    .await
    .map_err(|e| SessionError::kube(format!("record applied repos/workflow of {ns}/{name}"), e))?;
    Ok(())
}

async fn agui_token(client: &Client, session: &AgenticSession) -> Result<String, SessionError> {
    let ns = session.namespace().unwrap_or_default();
    let secret_name = session
        .annotations()
        .get(api::ANNOTATION_RUNNER_TOKEN_SECRET)
        .cloned()
        .unwrap_or_else(|| names::token_secret(&session.name_any()));
    let secret = Api::<Secret>::namespaced(client.clone(), &ns)
        .get(&secret_name)
        .await
        .map_err(|e| SessionError::kube(format!("read Secret {ns}/{secret_name}"), e))?;
    Ok(secret
        .data
        .as_ref()
        .and_then(|d| d.get("agui-token"))
        .map(|t| String::from_utf8_lossy(&t.0).into_owned())
        .unwrap_or_default())
}

/// For a `Running` session: pushes changed `repos` / `activeWorkflow` to the runner at
/// `address` (the Service, see [`runner_address`]) and records what was applied. Returns when
/// to look again (after a failed request), or `None` when everything is applied. Failed
/// requests are logged and retried; only reading the token or writing the status can fail
/// the reconcile.
pub async fn ensure_runner_spec(
    client: &Client,
    session: &AgenticSession,
    address: &str,
    now: Timestamp,
) -> Result<Option<Duration>, SessionError> {
    let plan = plan(session);
    if plan.is_empty() {
        return Ok(None);
    }
    let ns = session.namespace().unwrap_or_default();
    let name = session.name_any();
    // A runner started with the current spec has it already: record it, send nothing.
    let jobs: Api<Job> = Api::namespaced(client.clone(), &ns);
    let started_with = jobs
        .get_metadata_opt(&names::job(&name))
        .await
        .map_err(|e| SessionError::kube(format!("get Job {ns}/{}", names::job(&name)), e))?
        .and_then(|j| j.annotations().get(ANNOTATION_SPEC_GENERATION).cloned());
    let generation = session.metadata.generation.map(|g| g.to_string());
    if started_with.is_some() && started_with == generation {
        patch_status(client, session, baseline_status(session, now)).await?;
        return Ok(None);
    }
    let token = agui_token(client, session).await?;
    let calls = plan.calls();
    let mut done = Vec::with_capacity(calls.len());
    let mut failed = false;
    for call in &calls {
        match post(address, &token, call, REQUEST_TIMEOUT).await {
            Ok(()) => done.push(true),
            Err(error) => {
                tracing::warn!(%error, "runner did not take the spec change; retrying later");
                failed = true;
                done.push(false);
            }
        }
    }
    if done.iter().any(|d| *d) {
        patch_status(client, session, applied_status(session, &plan, &done, now)).await?;
    }
    Ok(failed.then_some(RETRY_AFTER))
}

#[cfg(test)]
mod tests;
