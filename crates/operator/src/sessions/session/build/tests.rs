//! Builder tests: YAML snapshots of every generated object (checked in under `snapshots/`;
//! `UPDATE_SNAPSHOTS=1` rewrites them), environment precedence, resume and timeout rules.

use super::*;
use agentic_api::sessions::{AgenticSessionSpec, LlmSettings, SessionRepo, UserContext};

fn session() -> AgenticSession {
    let mut s = AgenticSession::new(
        "fix-login",
        AgenticSessionSpec {
            initial_prompt: Some("Fix the login redirect".into()),
            repos: Some(vec![SessionRepo {
                url: "https://github.com/example/webapp.git".into(),
                branch: Some("develop".into()),
                auto_push: Some(true),
            }]),
            llm_settings: Some(LlmSettings {
                model: Some("claude-sonnet-4-6".into()),
                temperature: Some(0.7),
                max_tokens: Some(4000),
            }),
            user_context: Some(UserContext {
                user_id: Some("u-42".into()),
                display_name: Some("Ada".into()),
                groups: None,
            }),
            timeout: Some(600),
            environment_variables: Some(BTreeMap::from([
                ("LLM_MODEL".into(), "claude-opus".into()),
                ("AGUI_TOKEN".into(), "overridden?".into()),
                ("USE_VERTEX".into(), "1".into()),
                ("EXTRA".into(), "x".into()),
            ])),
            ..AgenticSessionSpec::default()
        },
    );
    s.metadata.namespace = Some("team-a".into());
    s.metadata.uid = Some("0b5e9c1e-0000-4000-8000-000000000001".into());
    s
}

fn config() -> SessionConfig {
    SessionConfig::defaults(
        "quay.io/ambient_code/vteam_claude_runner:latest",
        "ambient-code",
    )
}

fn inputs(config: &SessionConfig) -> RunInputs<'_> {
    RunInputs {
        config,
        run_id: "2026-11-23T06:00:00Z".into(),
        resume: false,
        project_mcp: None,
        storage: Storage::default(),
        runner: crate::sessions::session::registry::RunnerProfile::default(),
        model_vertex_id: None,
    }
}

fn snapshot<T: serde::Serialize>(name: &str, object: &T) {
    let actual = serde_yaml::to_string(object).unwrap();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/sessions/session/build/snapshots")
        .join(format!("{name}.yaml"));
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, &actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_SNAPSHOTS=1)", path.display()));
    assert_eq!(actual, expected, "snapshot {name} differs");
}

fn env_of<'a>(c: &'a Container, name: &str) -> Option<&'a EnvVar> {
    c.env.as_ref().unwrap().iter().find(|e| e.name == name)
}

#[test]
fn job_snapshot() {
    let config = config();
    snapshot("job", &job(&session(), &inputs(&config)));
}

#[test]
fn job_with_state_sync_snapshot() {
    let mut config = config();
    config.state_sync = true;
    config.pod_fs_group = Some(1000);
    let mut i = inputs(&config);
    i.resume = true;
    snapshot("job-state-sync-resume", &job(&session(), &i));
}

#[test]
fn service_and_credentials_snapshots() {
    let s = session();
    let config = config();
    let mut j = job(&s, &inputs(&config));
    j.metadata.uid = Some("job-uid".into());
    snapshot("service", &service(&s, job_owner(&j)));
    snapshot("serviceaccount", &service_account(&s));
    snapshot("role", &role(&s));
    snapshot("rolebinding", &role_binding(&s));
    snapshot(
        "token-secret",
        &token_secret(
            &s,
            "k8s-token-value",
            "agui-token-value",
            "2026-11-23T06:00:00Z",
        ),
    );
}

#[test]
fn owner_reference_uses_the_served_version() {
    let o = owner(&session()).unwrap();
    assert_eq!(o.api_version, "vteam.ambient-code/v1alpha1");
    assert_eq!(o.kind, "AgenticSession");
    assert_eq!(o.controller, Some(true));
    assert_eq!(o.block_owner_deletion, Some(true));
}

#[test]
fn user_env_precedence() {
    let config = config();
    let j = job(&session(), &inputs(&config));
    let pod = j.spec.unwrap().template.spec.unwrap();
    let runner = &pod.containers[0];
    assert_eq!(runner.name, "ambient-code-runner");
    // A plain value is replaced by the user's.
    assert_eq!(
        env_of(runner, "LLM_MODEL").unwrap().value.as_deref(),
        Some("claude-opus")
    );
    // A valueFrom entry is never replaced.
    let agui = env_of(runner, "AGUI_TOKEN").unwrap();
    assert!(agui.value.is_none() && agui.value_from.is_some());
    // The Vertex switches are protected.
    assert_eq!(
        env_of(runner, "USE_VERTEX").unwrap().value.as_deref(),
        Some("0")
    );
    // New names are appended.
    assert_eq!(env_of(runner, "EXTRA").unwrap().value.as_deref(), Some("x"));
    // Init containers only get names they do not have.
    let init = &pod.init_containers.unwrap()[0];
    assert_eq!(env_of(init, "EXTRA").unwrap().value.as_deref(), Some("x"));
    assert_eq!(
        env_of(init, "LLM_MODEL").unwrap().value.as_deref(),
        Some("claude-opus")
    );
    assert!(env_of(init, "BOT_TOKEN").unwrap().value_from.is_some());
}

#[test]
fn prompt_model_repos_and_identity_env() {
    let config = config();
    let env = runner_env(&session(), &inputs(&config));
    let get = |n: &str| {
        env.iter()
            .find(|e| e.name == n)
            .and_then(|e| e.value.clone())
    };
    assert_eq!(
        get("INITIAL_PROMPT").as_deref(),
        Some("Fix the login redirect")
    );
    assert_eq!(get("LLM_TEMPERATURE").as_deref(), Some("0.70"));
    assert_eq!(get("LLM_MAX_TOKENS").as_deref(), Some("4000"));
    assert_eq!(get("AGENTIC_SESSION_NAME").as_deref(), Some("fix-login"));
    assert_eq!(get("AGENTIC_SESSION_NAMESPACE").as_deref(), Some("team-a"));
    assert_eq!(get("TIMEOUT").as_deref(), Some("600"));
    let repos: serde_json::Value = serde_json::from_str(&get("REPOS_JSON").unwrap()).unwrap();
    assert_eq!(repos[0]["url"], "https://github.com/example/webapp.git");
    assert_eq!(repos[0]["branch"], "develop");
    assert_eq!(get("IS_RESUME"), None);
}

#[test]
fn resume_env_only_after_the_runner_ran() {
    let config = config();
    let mut i = inputs(&config);
    i.resume = true;
    let mut s = session();
    let env = runner_env(&s, &i);
    assert!(env.iter().any(|e| e.name == "IS_RESUME"));
    s.metadata.annotations = Some(BTreeMap::from([(
        ANNOTATION_FORCE_EXECUTE_PROMPT.to_owned(),
        "true".to_owned(),
    )]));
    let env = runner_env(&s, &i);
    assert!(!env.iter().any(|e| e.name == "IS_RESUME"));
}

#[test]
fn parent_session_from_annotation_or_env_never_self() {
    let config = config();
    let mut s = session();
    s.spec
        .environment_variables
        .get_or_insert_default()
        .insert("PARENT_SESSION_ID".into(), "from-env".into());
    let parent = |s: &AgenticSession| {
        runner_env(s, &inputs(&config))
            .into_iter()
            .find(|e| e.name == "PARENT_SESSION_ID")
            .and_then(|e| e.value)
    };
    assert_eq!(parent(&s).as_deref(), Some("from-env"));
    s.metadata.annotations = Some(BTreeMap::from([(
        ANNOTATION_PARENT_SESSION_ID.to_owned(),
        "fix-login".to_owned(),
    )]));
    assert_eq!(parent(&s), None, "a session is never its own parent");
}

#[test]
fn timeout_is_the_job_deadline() {
    let config = config();
    let mut s = session();
    let deadline = |s: &AgenticSession| {
        job(s, &inputs(&config))
            .spec
            .unwrap()
            .active_deadline_seconds
    };
    assert_eq!(deadline(&s), Some(600));
    s.spec.timeout = None;
    assert_eq!(deadline(&s), Some(300));
    s.spec.timeout = Some(0);
    assert_eq!(deadline(&s), None);
}

#[test]
fn timeout_enforcement_off_builds_no_deadline() {
    let mut config = config();
    config.enforce_timeout = false;
    let mut s = session();
    for timeout in [Some(600), None, Some(0), Some(1)] {
        s.spec.timeout = timeout;
        let job = job(&s, &inputs(&config));
        assert_eq!(
            job.spec.as_ref().unwrap().active_deadline_seconds,
            None,
            "timeout {timeout:?} with enforcement off"
        );
        // The runner still learns the timeout, as upstream passes it.
        let pod = job.spec.unwrap().template.spec.unwrap();
        let expected = timeout.unwrap_or(300).to_string();
        assert_eq!(
            env_of(&pod.containers[0], "TIMEOUT")
                .unwrap()
                .value
                .as_deref(),
            Some(expected.as_str())
        );
    }
}

#[test]
fn runner_resources_come_from_the_operator_settings() {
    let resources = |config: &SessionConfig| {
        let pod = pod_template(&session(), &inputs(config)).spec.unwrap();
        let r = pod.containers[0].resources.clone().unwrap();
        let pick = |m: Option<BTreeMap<String, Quantity>>| {
            let m = m.unwrap();
            (m["cpu"].0.clone(), m["memory"].0.clone())
        };
        (pick(r.requests), pick(r.limits))
    };
    assert_eq!(
        resources(&config()),
        (
            ("500m".to_owned(), "512Mi".to_owned()),
            ("2000m".to_owned(), "8Gi".to_owned())
        ),
        "defaults"
    );
    let mut custom = config();
    custom.runner_resources = SessionConfig::from_lookup("img", "b", |k| match k {
        "RUNNER_MEMORY_LIMIT" => Some("16Gi".into()),
        "RUNNER_CPU_REQUEST" => Some("1".into()),
        _ => None,
    })
    .unwrap()
    .runner_resources;
    assert_eq!(
        resources(&custom),
        (
            ("1".to_owned(), "512Mi".to_owned()),
            ("2000m".to_owned(), "16Gi".to_owned())
        ),
        "each variable overrides only its own value"
    );
    let mut sync = custom.clone();
    sync.state_sync = true;
    let pod = pod_template(&session(), &inputs(&sync)).spec.unwrap();
    let sidecar = pod.containers[1].resources.clone().unwrap();
    assert_eq!(
        sidecar.limits.unwrap()["memory"].0,
        "1Gi",
        "the state-sync sidecar keeps its own resources"
    );
}

fn vertex_config() -> SessionConfig {
    let mut c = config();
    c.vertex = Some(VertexConfig {
        project_id: "my-project".into(),
        region: "us-east5".into(),
        credentials_path: "/app/vertex/ambient-code-key.json".into(),
    });
    c.require_runner_secrets = false;
    c
}

#[test]
fn vertex_job_snapshot() {
    let config = vertex_config();
    let j = job(&session(), &inputs(&config));
    snapshot("job-vertex", &j);
    let runner = &j.spec.unwrap().template.spec.unwrap().containers[0];
    assert_eq!(
        env_of(runner, "USE_VERTEX").unwrap().value.as_deref(),
        Some("1")
    );
    assert_eq!(
        env_of(runner, "CLAUDE_CODE_USE_VERTEX")
            .unwrap()
            .value
            .as_deref(),
        Some("1")
    );
    assert_eq!(
        env_of(runner, "GOOGLE_APPLICATION_CREDENTIALS")
            .unwrap()
            .value
            .as_deref(),
        Some("/app/vertex/ambient-code-key.json")
    );
    let from: Vec<_> = runner
        .env_from
        .iter()
        .flatten()
        .filter_map(|e| e.secret_ref.as_ref().map(|s| s.name.as_str()))
        .collect();
    assert_eq!(
        from,
        [INTEGRATION_SECRETS],
        "no API keys Secret in Vertex AI mode"
    );
}

#[test]
fn observability_env_and_session_identity_snapshot() {
    use crate::sessions::session::{copied, extras::wants_session_identity};
    let mut config = config();
    config.langfuse = true;
    config.mlflow = true;
    let mut s = session();
    // The user cannot replace a variable read from a copied Secret.
    s.spec
        .environment_variables
        .as_mut()
        .unwrap()
        .insert("LANGFUSE_HOST".into(), "https://elsewhere".into());
    let mut template = pod_template(&s, &inputs(&config));
    let plain = template.clone();
    let spec = plain.spec.as_ref().unwrap();
    assert_eq!(spec.service_account_name, None, "namespace default SA");
    assert_eq!(spec.automount_service_account_token, Some(false));
    with_session_service_account(&mut template, "fix-login");
    snapshot("pod-observability-session-identity", &template);
    let spec = template.spec.unwrap();
    assert_eq!(
        spec.service_account_name.as_deref(),
        Some("ambient-session-fix-login")
    );
    assert_eq!(spec.automount_service_account_token, Some(true));
    let runner = &spec.containers[0];
    for (names, secret) in [
        (&LANGFUSE_ENV, LANGFUSE_SECRET),
        (&MLFLOW_ENV, MLFLOW_SECRET),
    ] {
        for name in names {
            let var = env_of(runner, name).unwrap_or_else(|| panic!("{name} missing"));
            assert_eq!(var.value, None, "{name} is a reference, not a value");
            let r = var
                .value_from
                .as_ref()
                .unwrap()
                .secret_key_ref
                .as_ref()
                .unwrap();
            assert_eq!((r.name.as_str(), r.key.as_str()), (secret, *name));
            assert_eq!(r.optional, Some(true), "{name} is optional");
        }
    }
    // Off by default: no reference to the copies at all.
    let off = config_off_env();
    assert!(off.iter().all(|e| !e.name.starts_with("LANGFUSE_")
        && !e.name.starts_with("MLFLOW_")
        && e.name != "OBSERVABILITY_BACKENDS"));
    // Only MLFLOW_TRACKING_AUTH kubernetes or kubernetes-namespaced of the MLflow Secret asks
    // for the session identity; other values, other Secrets and a missing key do not.
    let with_auth = |secret: copied::CopiedSecret, auth: Option<&str>| {
        let data = auth.map(|a| {
            BTreeMap::from([(
                "MLFLOW_TRACKING_AUTH".to_owned(),
                ByteString(a.as_bytes().to_vec()),
            )])
        });
        wants_session_identity(&[(
            secret,
            Secret {
                data,
                ..Secret::default()
            },
        )])
    };
    assert!(with_auth(copied::MLFLOW, Some("kubernetes")));
    assert!(with_auth(copied::MLFLOW, Some("kubernetes-namespaced\n")));
    assert!(!with_auth(copied::MLFLOW, Some("basic")));
    assert!(!with_auth(copied::MLFLOW, Some("Kubernetes-everywhere")));
    assert!(!with_auth(copied::MLFLOW, None));
    assert!(!with_auth(copied::LANGFUSE, Some("kubernetes")));
    assert!(!wants_session_identity(&[]));
}

fn config_off_env() -> Vec<EnvVar> {
    let config = config();
    runner_env(&session(), &inputs(&config))
}

#[test]
fn vertex_off_keeps_the_switches_off_even_against_user_env() {
    let config = config();
    let j = job(&session(), &inputs(&config));
    let runner = &j.spec.unwrap().template.spec.unwrap().containers[0];
    // The session sets USE_VERTEX=1 in spec.environmentVariables; it is never applied.
    assert_eq!(
        env_of(runner, "USE_VERTEX").unwrap().value.as_deref(),
        Some("0")
    );
    assert!(env_of(runner, "GOOGLE_APPLICATION_CREDENTIALS").is_none());
}

#[test]
fn job_records_the_spec_generation() {
    let config = config();
    let mut s = session();
    s.metadata.generation = Some(7);
    let j = job(&s, &inputs(&config));
    assert_eq!(
        j.metadata.annotations.unwrap()[crate::sessions::session::live::ANNOTATION_SPEC_GENERATION],
        "7"
    );
}

#[test]
fn network_policy_snapshot() {
    use crate::sessions::session::network;
    let p = network::network_policy("team-a", "ambient-code");
    snapshot("networkpolicy", &p);
    assert!(
        p.metadata.owner_references.is_none(),
        "shared by the namespace; no owner"
    );
    let mut edited = p.clone();
    assert!(network::up_to_date(&edited, &p));
    edited
        .metadata
        .labels
        .as_mut()
        .unwrap()
        .insert("extra".into(), "kept".into());
    assert!(network::up_to_date(&edited, &p), "extra labels are fine");
    edited.spec.as_mut().unwrap().ingress = None;
    assert!(
        !network::up_to_date(&edited, &p),
        "a changed spec is reapplied"
    );
    assert!(!network::up_to_date(
        &network::network_policy("team-a", "other-backend"),
        &p
    ));
}

#[test]
fn trusted_ca_snapshot() {
    use crate::sessions::session::trusted_ca;
    use k8s_openapi::api::core::v1::ConfigMap;
    let mut config = config();
    config.state_sync = true;
    let mut template = pod_template(&session(), &inputs(&config));
    trusted_ca::with_trusted_ca(&mut template);
    let once = template.clone();
    trusted_ca::with_trusted_ca(&mut template);
    assert_eq!(once, template, "applying twice changes nothing");
    snapshot("pod-trusted-ca", &template);
    let spec = template.spec.unwrap();
    for c in spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
    {
        let mount = c
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| m.name == trusted_ca::TRUSTED_CA_BUNDLE)
            .unwrap_or_else(|| panic!("{} has no CA mount", c.name));
        assert_eq!(mount.mount_path, "/etc/pki/tls/certs/ca-bundle.crt");
        assert_eq!(mount.sub_path.as_deref(), Some("ca-bundle.crt"));
    }
    let cm = |data: &[(&str, &str)]| ConfigMap {
        data: Some(
            data.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        ),
        ..ConfigMap::default()
    };
    assert!(trusted_ca::usable(&cm(&[(
        "ca-bundle.crt",
        "-----BEGIN CERTIFICATE-----"
    )])));
    assert!(
        !trusted_ca::usable(&cm(&[("other.crt", "x")])),
        "missing key: not mounted"
    );
    assert!(
        !trusted_ca::usable(&cm(&[("ca-bundle.crt", "")])),
        "empty bundle: not mounted"
    );
}

#[test]
fn vertex_secret_copy_snapshot_and_owners() {
    use crate::sessions::session::copied as vertex;
    let mut source = Secret {
        metadata: ObjectMeta {
            name: Some("ambient-vertex".into()),
            namespace: Some("ambient-code".into()),
            resource_version: Some("9".into()),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([(
            "ambient-code-key.json".to_owned(),
            ByteString(b"{\"type\":\"service_account\"}".to_vec()),
        )])),
        ..Secret::default()
    };
    let s = session();
    let copy = vertex::copied_secret(&source, "team-a", vertex::add_owner(&[], &s));
    snapshot("vertex-secret-copy", &copy);
    let owners = copy.metadata.owner_references.clone().unwrap();
    assert_eq!(owners[0].controller, Some(true));

    // A second session joins as a non-controller owner; joining twice changes nothing.
    let mut other = session();
    other.metadata.name = Some("other".into());
    other.metadata.uid = Some("0b5e9c1e-0000-4000-8000-000000000002".into());
    let both = vertex::add_owner(&owners, &other);
    assert_eq!(both.len(), 2);
    assert_eq!(both[1].controller, None);
    assert_eq!(vertex::add_owner(&both, &other), both);

    // An up-to-date copy needs no write; a changed source is a data patch that also drops
    // keys removed from the source, conditional on the copy's resourceVersion.
    let mut stored = copy.clone();
    stored.metadata.resource_version = Some("41".into());
    assert_eq!(vertex::sync_patch(&stored, &copy), None);
    source.data = Some(BTreeMap::from([(
        "new-key.json".to_owned(),
        ByteString(b"{}".to_vec()),
    )]));
    let desired = vertex::copied_secret(&source, "team-a", owners);
    let patch = vertex::sync_patch(&stored, &desired).unwrap();
    assert_eq!(patch["metadata"]["resourceVersion"], "41");
    assert_eq!(
        patch["data"]["ambient-code-key.json"],
        serde_json::Value::Null
    );
    assert_eq!(patch["data"]["new-key.json"], "e30=");
    assert!(patch["metadata"].get("ownerReferences").is_none());
}

#[test]
fn mcp_servers_reach_the_runner_as_json_objects() {
    let config = config();
    let value_of = |env: &[EnvVar], name: &str| {
        env.iter()
            .find(|e| e.name == name)
            .and_then(|e| e.value.clone())
    };
    // Unset: neither variable.
    let env = runner_env(&session(), &inputs(&config));
    assert_eq!(value_of(&env, "CUSTOM_MCP_SERVERS"), None);
    assert_eq!(value_of(&env, "PROJECT_MCP_SERVERS"), None);

    // The session's object is passed whole: `disabled` alone still reaches the runner.
    let mut s = session();
    s.spec.mcp_servers = Some(McpServers {
        custom: None,
        disabled: Some(vec!["github".into()]),
    });
    let env = runner_env(&s, &inputs(&config));
    let custom: serde_json::Value =
        serde_json::from_str(&value_of(&env, "CUSTOM_MCP_SERVERS").unwrap()).unwrap();
    assert_eq!(custom, serde_json::json!({"disabled": ["github"]}));

    s.spec.mcp_servers = Some(McpServers {
        custom: Some(BTreeMap::from([(
            "docs".to_owned(),
            serde_json::json!({"command": "mcp-docs", "args": ["--read-only"]}),
        )])),
        disabled: Some(vec!["github".into()]),
    });
    let project = McpServers {
        custom: None,
        disabled: Some(vec!["jira".into()]),
    };
    let mut i = inputs(&config);
    i.project_mcp = Some(&project);
    let env = runner_env(&s, &i);
    let custom: serde_json::Value =
        serde_json::from_str(&value_of(&env, "CUSTOM_MCP_SERVERS").unwrap()).unwrap();
    assert_eq!(
        custom,
        serde_json::json!({
            "custom": {"docs": {"command": "mcp-docs", "args": ["--read-only"]}},
            "disabled": ["github"]
        })
    );
    let project: serde_json::Value =
        serde_json::from_str(&value_of(&env, "PROJECT_MCP_SERVERS").unwrap()).unwrap();
    assert_eq!(project, serde_json::json!({"disabled": ["jira"]}));
}

#[test]
fn storage_mode_custom_only_when_the_project_says_so() {
    assert!(is_custom_storage(Some("custom")));
    assert!(is_custom_storage(Some(" custom\n")));
    for other in [
        None,
        Some(""),
        Some("shared"),
        Some("Custom"),
        Some("minio"),
    ] {
        assert!(!is_custom_storage(other), "{other:?}");
    }
    let debug = format!(
        "{:?}",
        S3Credentials {
            access_key: "minio".into(),
            secret_key: "minio123".into()
        }
    );
    assert!(!debug.contains("minio123"), "{debug}");
}

#[test]
fn mcp_settings_reach_the_runner_only_when_set() {
    let mut config = config();
    let names = |env: &[EnvVar]| {
        env.iter()
            .filter(|e| e.name.contains("MCP") || e.name.starts_with("GOOGLE_OAUTH"))
            .map(|e| format!("{}={}", e.name, e.value.clone().unwrap_or_default()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(&runner_env(&session(), &inputs(&config))),
        ["GOOGLE_MCP_CREDENTIALS_DIR=/workspace/.google_workspace_mcp/credentials"]
    );
    config.mcp = super::super::config::McpSettings {
        config_file: Some("/app/.mcp.json".into()),
        google_client_id: Some("id".into()),
        google_client_secret: None,
        google_redirect_uri: Some("https://ambient.example.com/oauth2callback".into()),
    };
    assert_eq!(
        names(&runner_env(&session(), &inputs(&config))),
        [
            "GOOGLE_MCP_CREDENTIALS_DIR=/workspace/.google_workspace_mcp/credentials",
            "MCP_CONFIG_FILE=/app/.mcp.json",
            "GOOGLE_OAUTH_CLIENT_ID=id",
            "GOOGLE_OAUTH_REDIRECT_URI=https://ambient.example.com/oauth2callback",
        ]
    );
}

/// The runner container gets upstream's `postStart` hook, which creates the directory named by
/// `GOOGLE_MCP_CREDENTIALS_DIR` and never fails, and every container drops all capabilities
/// and privilege escalation.
#[test]
fn runner_hook_makes_the_google_credentials_directory_and_containers_are_restricted() {
    let config = config();
    let mut config_sync = config.clone();
    config_sync.state_sync = true;
    let template = pod_template(&session(), &inputs(&config_sync));
    let spec = template.spec.unwrap();
    let runner = &spec.containers[0];
    let dir = env_of(runner, "GOOGLE_MCP_CREDENTIALS_DIR")
        .and_then(|e| e.value.clone())
        .unwrap();
    let command = runner
        .lifecycle
        .as_ref()
        .and_then(|l| l.post_start.as_ref())
        .and_then(|h| h.exec.as_ref())
        .and_then(|e| e.command.clone())
        .unwrap();
    assert_eq!(command[..2], ["/bin/sh", "-c"]);
    assert!(
        command[2].starts_with(&format!("mkdir -p {dir} && cp -f ")),
        "{command:?}"
    );
    assert!(command[2].ends_with("|| true"), "{command:?}");
    let containers: Vec<&Container> = spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
        .collect();
    assert_eq!(containers.len(), 3);
    for c in containers {
        let security = c.security_context.as_ref().unwrap();
        assert_eq!(
            security.allow_privilege_escalation,
            Some(false),
            "{}",
            c.name
        );
        assert_eq!(
            security.capabilities.as_ref().and_then(|c| c.drop.clone()),
            Some(vec!["ALL".to_owned()]),
            "{}",
            c.name
        );
    }
}
