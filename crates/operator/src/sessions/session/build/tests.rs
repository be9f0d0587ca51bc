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
