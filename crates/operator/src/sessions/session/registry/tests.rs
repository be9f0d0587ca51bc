//! Tests of the registry file's parsing, the resolution of an entry and the file cache.

use super::*;
use crate::sessions::session::config::RunnerResources;

const REGISTRY: &str = r#"[
  {"id": "claude-agent-sdk", "displayName": "Claude Code", "framework": "claude-agent-sdk",
   "container": {"image": "runner:1", "port": 8001,
                 "env": {"RUNNER_TYPE": "claude-agent-sdk", "RUNNER_STATE_DIR": ".claude"},
                 "resources": {"requests": {"cpu": "500m", "memory": "512Mi"},
                               "limits": {"cpu": "2", "memory": "4Gi"}}},
   "sandbox": {"stateDir": ".claude", "stateSyncImage": "sync:1", "persistence": "s3",
               "workspaceSize": "10Gi", "terminationGracePeriod": 60,
               "seed": {"cloneRepos": true, "hydrateState": true}},
   "auth": {"requiredSecretKeys": ["ANTHROPIC_API_KEY"], "secretKeyLogic": "any", "vertexSupported": true},
   "defaultModel": "claude-sonnet-4-5", "featureGate": ""},
  {"id": "lightweight", "container": {"image": "light:1", "port": 9090,
     "resources": {"requests": {"cpu": "lots", "gpu": "1"}}},
   "sandbox": {"persistence": "none", "workspaceSize": "big", "seed": {"hydrateState": true}}}
]"#;

#[test]
fn entries_parse_and_resolve_against_the_defaults() {
    let entries = parse(REGISTRY).unwrap();
    assert_eq!(entries.len(), 2);
    let claude = RunnerProfile::from_entry(&entries[0]);
    assert_eq!(claude.image.as_deref(), Some("runner:1"));
    assert_eq!(claude.env["RUNNER_STATE_DIR"], ".claude");
    assert_eq!(claude.limits["memory"], "4Gi");
    assert_eq!(claude.state_dir.as_deref(), Some(".claude"));
    assert_eq!(claude.state_sync_image.as_deref(), Some("sync:1"));
    assert_eq!(claude.state_sync, Some(true));
    assert!(claude.init && claude.workspace);
    assert_eq!(claude.termination_grace, 60);
    assert!(claude.problems.is_empty(), "{:?}", claude.problems);

    // Every unusable value is named; the pod keeps what init-hydrate needs.
    let light = RunnerProfile::from_entry(&entries[1]);
    assert_eq!(light.state_sync, Some(false));
    assert!(light.init, "hydrateState alone still seeds");
    assert!(light.workspace, "init-hydrate always gets its workspace");
    assert_eq!(light.workspace_size, DEFAULT_WORKSPACE_SIZE);
    assert!(light.requests.is_empty());
    let problems = light.problems.join("\n");
    for needle in [
        "runner type \"lightweight\": sandbox.workspaceSize: \"big\" is not a resource quantity; 10Gi is used",
        "runner type \"lightweight\": container.port: 9090 is not used; runners listen on 8001",
        "runner type \"lightweight\": container.resources.requests.cpu: \"lots\" is not a resource quantity",
        "runner type \"lightweight\": container.resources.requests.gpu: not used; allowed keys: cpu, memory",
    ] {
        assert!(problems.contains(needle), "{needle}\nin:\n{problems}");
    }

    // Nothing to seed and nothing to sync: no workspace at all.
    let bare = RunnerProfile::from_entry(&RunnerType {
        id: "bare".into(),
        sandbox: SandboxSpec {
            persistence: "none".into(),
            ..SandboxSpec::default()
        },
        ..RunnerType::default()
    });
    assert!(!bare.init && !bare.workspace);
    assert_eq!(bare.state_sync, Some(false));

    // The built-in runner leaves state sync to the operator settings.
    let default = RunnerProfile::default();
    assert_eq!(default.state_sync, None);
    assert!(default.init && default.workspace);

    assert!(
        parse("{}")
            .unwrap_err()
            .contains("not a JSON list of runner types")
    );
}

#[test]
fn registry_resources_override_per_key_and_never_invert_a_pair() {
    let base = RunnerResources::default();
    let mut profile = RunnerProfile::default();
    let (same, problems) = profile.resources(&base);
    assert_eq!(same, base);
    assert!(problems.is_empty());

    profile.limits.insert("memory".into(), "4Gi".into());
    profile.requests.insert("cpu".into(), "1".into());
    let (merged, problems) = profile.resources(&base);
    assert_eq!(merged.memory_limit, "4Gi");
    assert_eq!(merged.cpu_request, "1");
    assert_eq!(merged.cpu_limit, base.cpu_limit);
    assert!(problems.is_empty(), "{problems:?}");

    profile.requests.insert("memory".into(), "16Gi".into());
    let (merged, problems) = profile.resources(&base);
    assert_eq!(merged.memory_request, base.memory_request);
    assert_eq!(merged.memory_limit, base.memory_limit);
    assert_eq!(problems.len(), 1);
    assert!(
        problems[0].contains("memory request 16Gi is above its limit 4Gi"),
        "{problems:?}"
    );
}

#[test]
fn the_session_asks_by_runner_type() {
    assert_eq!(runner_type(None), DEFAULT_RUNNER_TYPE);
    let env = BTreeMap::from([("RUNNER_TYPE".to_owned(), " gemini-cli ".to_owned())]);
    assert_eq!(runner_type(Some(&env)), "gemini-cli");
    let blank = BTreeMap::from([("RUNNER_TYPE".to_owned(), String::new())]);
    assert_eq!(runner_type(Some(&blank)), DEFAULT_RUNNER_TYPE);
}

#[test]
fn the_file_is_optional_cached_and_a_bad_one_keeps_the_last_entries() {
    let dir = std::env::temp_dir().join(format!("registry-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("agent-registry.json");
    let _ = std::fs::remove_file(&path);

    let registry = Registry::with_refresh(&path, Duration::ZERO);
    assert_eq!(registry.resolve("claude-agent-sdk"), Resolution::NoRegistry);
    assert_eq!(
        registry.resolve("claude-agent-sdk").profile(),
        RunnerProfile::default()
    );

    std::fs::write(&path, REGISTRY).unwrap();
    assert!(matches!(
        registry.resolve("claude-agent-sdk"),
        Resolution::Found(p) if p.image.as_deref() == Some("runner:1")
    ));
    assert_eq!(
        registry.resolve("codex"),
        Resolution::Unknown(vec!["claude-agent-sdk".into(), "lightweight".into()])
    );

    // A file that stops parsing keeps the entries read before.
    std::fs::write(&path, "[{").unwrap();
    assert!(matches!(
        registry.resolve("lightweight"),
        Resolution::Found(_)
    ));

    // Within the refresh interval the file is not read again.
    let cached = Registry::with_refresh(&path, Duration::from_hours(1));
    std::fs::write(&path, "[]").unwrap();
    assert_eq!(cached.resolve("x"), Resolution::Unknown(vec![]));
    std::fs::write(&path, REGISTRY).unwrap();
    assert_eq!(cached.resolve("x"), Resolution::Unknown(vec![]));
    std::fs::remove_dir_all(&dir).unwrap();
}
