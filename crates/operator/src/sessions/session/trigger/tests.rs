//! Tests of the trigger's settings, names, new sessions and decisions.

use super::*;
use agentic_api::sessions::AgenticSessionStatus;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
    move |k: &str| {
        pairs
            .iter()
            .find(|(name, _)| *name == k)
            .map(|(_, v)| (*v).to_owned())
    }
}

const GOOD: &[(&str, &str)] = &[
    (
        "SESSION_TEMPLATE",
        r#"{"initialPrompt":"Summarise yesterday's issues","displayName":"Daily Triage: Team A!"}"#,
    ),
    ("PROJECT_NAMESPACE", "team-a"),
    ("SCHEDULED_SESSION_NAME", "daily-triage"),
];

#[test]
fn settings_are_read_and_bad_ones_name_the_variable() {
    let c = TriggerConfig::from_lookup(env(GOOD)).unwrap();
    assert_eq!(c.namespace, "team-a");
    assert_eq!(c.schedule, "daily-triage");
    assert!(!c.reuse);
    assert_eq!(
        c.template.initial_prompt.as_deref(),
        Some("Summarise yesterday's issues")
    );

    let missing = TriggerConfig::from_lookup(env(&[("PROJECT_NAMESPACE", "team-a")])).unwrap_err();
    assert_eq!(missing.variable, "SESSION_TEMPLATE");
    assert!(
        missing
            .to_string()
            .starts_with("SESSION_TEMPLATE: required"),
        "{missing}"
    );

    let bad_json = TriggerConfig::from_lookup(env(&[
        ("SESSION_TEMPLATE", "{not json"),
        ("PROJECT_NAMESPACE", "team-a"),
        ("SCHEDULED_SESSION_NAME", "s"),
    ]))
    .unwrap_err();
    assert_eq!(bad_json.variable, "SESSION_TEMPLATE");
    assert!(bad_json.message.contains("JSON"), "{bad_json}");

    let wrong_type = TriggerConfig::from_lookup(env(&[
        ("SESSION_TEMPLATE", r#"{"timeout":"soon"}"#),
        ("PROJECT_NAMESPACE", "team-a"),
        ("SCHEDULED_SESSION_NAME", "s"),
    ]))
    .unwrap_err();
    assert_eq!(wrong_type.variable, "SESSION_TEMPLATE");

    let no_ns = TriggerConfig::from_lookup(env(&[
        ("SESSION_TEMPLATE", "{}"),
        ("SCHEDULED_SESSION_NAME", "s"),
    ]))
    .unwrap_err();
    assert_eq!(no_ns.variable, "PROJECT_NAMESPACE");

    let no_schedule = TriggerConfig::from_lookup(env(&[
        ("SESSION_TEMPLATE", "{}"),
        ("PROJECT_NAMESPACE", "team-a"),
    ]))
    .unwrap_err();
    assert_eq!(no_schedule.variable, "SCHEDULED_SESSION_NAME");

    let reuse = TriggerConfig::from_lookup(env(&[
        ("SESSION_TEMPLATE", "{}"),
        ("PROJECT_NAMESPACE", "team-a"),
        ("SCHEDULED_SESSION_NAME", "s"),
        ("REUSE_LAST_SESSION", "true"),
    ]))
    .unwrap();
    assert!(reuse.reuse);
    let bad_reuse = TriggerConfig::from_lookup(env(&[
        ("SESSION_TEMPLATE", "{}"),
        ("PROJECT_NAMESPACE", "team-a"),
        ("SCHEDULED_SESSION_NAME", "s"),
        ("REUSE_LAST_SESSION", "sometimes"),
    ]))
    .unwrap_err();
    assert_eq!(bad_reuse.variable, "REUSE_LAST_SESSION");
    assert!(
        bad_reuse.to_string().contains("1, true or yes"),
        "{bad_reuse}"
    );
}

#[test]
fn the_backend_is_found_from_its_namespace_or_url() {
    let c = TriggerConfig::from_lookup(env(GOOD)).unwrap();
    assert_eq!(
        c.backend.address,
        "backend-service.ambient-code.svc.cluster.local:8080"
    );
    assert_eq!(
        c.backend.run_path("team-a", "s-1"),
        "/api/projects/team-a/agentic-sessions/s-1/agui/run"
    );
    assert_eq!(c.token_file, PathBuf::from(SERVICE_ACCOUNT_TOKEN_FILE));

    let with = |extra: &'static [(&'static str, &'static str)]| {
        let mut all = GOOD.to_vec();
        all.extend_from_slice(extra);
        let all: &'static [(&'static str, &'static str)] = Box::leak(all.into_boxed_slice());
        TriggerConfig::from_lookup(env(all))
    };
    let ns = with(&[("BACKEND_NAMESPACE", "vteam")]).unwrap();
    assert_eq!(
        ns.backend.address,
        "backend-service.vteam.svc.cluster.local:8080"
    );
    let bad_ns = with(&[("BACKEND_NAMESPACE", "Team_A")]).unwrap_err();
    assert_eq!(bad_ns.variable, "BACKEND_NAMESPACE");
    assert!(bad_ns.message.contains("DNS label"), "{bad_ns}");

    // The URL wins over the namespace; the port defaults to 80; a trailing '/' is dropped.
    let url = with(&[
        ("BACKEND_NAMESPACE", "vteam"),
        ("BACKEND_API_URL", "http://127.0.0.1:9000/api/"),
    ])
    .unwrap();
    assert_eq!(
        url.backend,
        BackendApi {
            address: "127.0.0.1:9000".into(),
            prefix: "/api".into()
        }
    );
    assert_eq!(
        BackendApi::from_url("http://backend").unwrap(),
        BackendApi {
            address: "backend:80".into(),
            prefix: String::new()
        }
    );
    for (bad, needle) in [
        ("https://backend/api", "not an http:// URL"),
        ("backend:8080/api", "not an http:// URL"),
        ("http:///api", "no usable host"),
        ("http://backend:http/api", "bad port"),
        ("http://backend:99999/api", "bad port"),
    ] {
        let err = BackendApi::from_url(bad).unwrap_err();
        assert!(err.contains(needle), "{bad}: {err}");
    }
    let bad_url = with(&[("BACKEND_API_URL", "https://backend/api")]).unwrap_err();
    assert_eq!(bad_url.variable, "BACKEND_API_URL");
}

#[test]
fn the_follow_up_is_one_user_message_on_the_sessions_thread() {
    let now: Timestamp = "2026-11-23T06:00:00Z".parse().unwrap();
    assert_eq!(
        follow_up_input("s-2", "Triage new issues", now),
        serde_json::json!({
            "threadId": "s-2",
            "runId": format!("scheduled-{}", now.as_second()),
            "messages": [{
                "id": format!("scheduled-msg-{}", now.as_nanosecond()),
                "role": "user",
                "content": "Triage new issues",
            }],
        })
    );
}

#[test]
fn names_are_safe_and_short_enough_for_the_service() {
    assert_eq!(
        sanitize_name("Daily Triage: Team A!"),
        "daily-triage-team-a"
    );
    assert_eq!(sanitize_name("--x__y--"), "x-y");
    assert_eq!(sanitize_name("!!!"), "scheduled");
    let long = sanitize_name(&"ab-".repeat(40));
    assert!(
        long.len() <= NAME_PREFIX_MAX && !long.ends_with('-'),
        "{long}"
    );
    let c = TriggerConfig::from_lookup(env(GOOD)).unwrap();
    let name = session_name(&c, 1_795_000_000);
    assert_eq!(name, "daily-triage-team-a-1795000000");
    let worst = format!("{}-{}", "a".repeat(NAME_PREFIX_MAX), i64::from(u32::MAX));
    assert!(crate::sessions::session::names::check(&worst).is_ok());
}

#[test]
fn new_sessions_carry_the_template_and_the_schedule_labels() {
    let c = TriggerConfig::from_lookup(env(GOOD)).unwrap();
    let s = new_session(&c, 1_795_000_000);
    assert_eq!(s.metadata.namespace.as_deref(), Some("team-a"));
    assert_eq!(s.spec, c.template);
    let labels = s.metadata.labels.unwrap();
    assert_eq!(labels[api::LABEL_SCHEDULED_SESSION_NAME], "daily-triage");
    assert_eq!(labels[api::LABEL_SCHEDULED_RUN], "true");
    let no_display = TriggerConfig {
        template: AgenticSessionSpec::default(),
        ..c
    };
    assert_eq!(session_name(&no_display, 7), "daily-triage-7");
}

fn existing(name: &str, created: &str, phase: Option<SessionPhase>) -> AgenticSession {
    let mut s = AgenticSession::new(name, AgenticSessionSpec::default());
    s.metadata.creation_timestamp = Some(Time(created.parse().unwrap()));
    s.status = Some(AgenticSessionStatus {
        phase,
        ..AgenticSessionStatus::default()
    });
    s
}

#[test]
fn decisions_follow_the_last_session() {
    let old = existing("s-1", "2026-11-20T00:00:00Z", Some(SessionPhase::Running));
    assert_eq!(
        decide(false, true, std::slice::from_ref(&old)),
        Decision::Create
    );
    assert_eq!(decide(true, true, &[]), Decision::Create);
    for (phase, expected) in [
        (
            Some(SessionPhase::Completed),
            Decision::Restart("s-2".into()),
        ),
        (Some(SessionPhase::Stopped), Decision::Restart("s-2".into())),
        (Some(SessionPhase::Failed), Decision::Create),
        (
            Some(SessionPhase::Running),
            Decision::FollowUp("s-2".into()),
        ),
        (Some(SessionPhase::Creating), Decision::Skip("s-2".into())),
        (Some(SessionPhase::Stopping), Decision::Skip("s-2".into())),
        (Some(SessionPhase::Pending), Decision::Skip("s-2".into())),
        (None, Decision::Skip("s-2".into())),
    ] {
        let newest = existing("s-2", "2026-11-22T00:00:00Z", phase);
        assert_eq!(
            decide(true, true, &[newest, old.clone()]),
            expected,
            "{phase:?}"
        );
    }
    // A running session with no prompt to send is left alone.
    let running = existing("s-2", "2026-11-22T00:00:00Z", Some(SessionPhase::Running));
    assert_eq!(
        decide(true, false, &[running, old]),
        Decision::Skip("s-2".into())
    );
    let blank = AgenticSessionSpec {
        initial_prompt: Some("  ".into()),
        ..AgenticSessionSpec::default()
    };
    assert!(prompt(&blank).is_none());
}

#[test]
fn a_restart_requests_a_start_with_the_prompt() {
    let mut s = existing("s-2", "2026-11-22T00:00:00Z", Some(SessionPhase::Completed));
    s.spec.initial_prompt = Some("old".into());
    let template = AgenticSessionSpec {
        initial_prompt: Some("new".into()),
        ..AgenticSessionSpec::default()
    };
    let now: Timestamp = "2026-11-23T06:00:00Z".parse().unwrap();
    restart_request(&mut s, &template, now);
    let a = s.annotations();
    assert_eq!(a[api::ANNOTATION_DESIRED_PHASE], "Running");
    assert_eq!(
        a[api::ANNOTATION_START_REQUESTED_AT],
        "2026-11-23T06:00:00Z"
    );
    assert_eq!(a[api::ANNOTATION_FORCE_EXECUTE_PROMPT], "true");
    assert_eq!(s.spec.initial_prompt.as_deref(), Some("new"));
}

#[test]
fn other_command_lines_are_not_the_trigger() {
    assert!(command(&["run".into()]).is_none());
    assert!(command(&[]).is_none());
}
