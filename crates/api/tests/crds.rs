//! Tests of the CRD types and their generated schemas: sample round trips, structural
//! schemas, what the API server would accept, prune or reject, CEL rules, printer columns
//! and names.

// Helpers of this test crate fail loudly on malformed fixtures.
#![allow(clippy::expect_used, clippy::panic)]

mod common;

use agentic_api::{crds, evaluations, labs, sessions};
use common::samples;
use common::{bound_violations, diff, node, schema_of, set, undeclared_fields, yaml};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use serde::{Serialize, de::DeserializeOwned};
use serde_json::{Value, json};

/// Which CRD a sample belongs to.
#[derive(Clone, Copy, Debug)]
enum Kind {
    AgenticSession,
    ProjectSettings,
    EvalExperiment,
    LabExperiment,
    LabComponent,
}

impl Kind {
    fn crd(self) -> CustomResourceDefinition {
        match self {
            Kind::AgenticSession => sessions::AgenticSession::crd(),
            Kind::ProjectSettings => sessions::ProjectSettings::crd(),
            Kind::EvalExperiment => evaluations::Experiment::crd(),
            Kind::LabExperiment => labs::Experiment::crd(),
            Kind::LabComponent => labs::Component::crd(),
        }
    }

    fn schema(self) -> Value {
        schema_of(&self.crd())
    }

    /// Deserializes into the typed kind and serializes back.
    fn typed_roundtrip(self, obj: &Value) -> Result<Value, serde_json::Error> {
        fn go<K: DeserializeOwned + Serialize>(obj: &Value) -> Result<Value, serde_json::Error> {
            let typed: K = serde_json::from_value(obj.clone())?;
            serde_json::to_value(&typed)
        }
        match self {
            Kind::AgenticSession => go::<sessions::AgenticSession>(obj),
            Kind::ProjectSettings => go::<sessions::ProjectSettings>(obj),
            Kind::EvalExperiment => go::<evaluations::Experiment>(obj),
            Kind::LabExperiment => go::<labs::Experiment>(obj),
            Kind::LabComponent => go::<labs::Component>(obj),
        }
    }
}

const SAMPLES: &[(&str, Kind, &str)] = &[
    (
        "agentic session",
        Kind::AgenticSession,
        samples::AGENTIC_SESSION,
    ),
    (
        "minimal agentic session",
        Kind::AgenticSession,
        samples::AGENTIC_SESSION_MINIMAL,
    ),
    (
        "project settings",
        Kind::ProjectSettings,
        samples::PROJECT_SETTINGS,
    ),
    (
        "evaluation V1 dataset",
        Kind::EvalExperiment,
        samples::EVAL_V1_DATASET,
    ),
    (
        "evaluation V1 scenarios",
        Kind::EvalExperiment,
        samples::EVAL_V1_SCENARIOS,
    ),
    ("evaluation V2", Kind::EvalExperiment, samples::EVAL_V2),
    ("evaluation V5", Kind::EvalExperiment, samples::EVAL_V5),
    (
        "lab experiment",
        Kind::LabExperiment,
        samples::LAB_EXPERIMENT,
    ),
    ("lab component", Kind::LabComponent, samples::LAB_COMPONENT),
];

fn admit(kind: Kind, obj: &Value) -> Result<crd_validation::Admitted, crd_validation::FieldErrors> {
    let schema = crd_validation::Schema::new(&kind.schema()).expect("schema compiles");
    let mut obj = obj.clone();
    schema.admit(&mut obj, None)
}

fn cel_errors(kind: Kind, obj: &Value) -> String {
    match kube::core::cel::Validator::new().validate(&kind.schema(), obj, None) {
        Ok(()) => String::new(),
        Err(errors) => errors.to_string(),
    }
}

// ---------------------------------------------------------------------------------------
// Round trips
// ---------------------------------------------------------------------------------------

/// Every sample deserializes into its typed kind and serializes back to exactly the same
/// document: nothing lost (no unknown field dropped by the types) and nothing added
/// (no `null`s, no defaults filled in client-side).
#[test]
fn samples_roundtrip_without_losing_or_adding_fields() {
    for (name, kind, text) in SAMPLES {
        let original = yaml(text);
        let back = kind
            .typed_roundtrip(&original)
            .unwrap_or_else(|e| panic!("{name}: does not deserialize: {e}"));
        if let Some(d) = diff(&original, &back, "") {
            panic!("{name}: round trip changed the document at {d}");
        }
    }
}

/// The samples carry the values the references show, read through the typed API.
#[test]
fn typed_views_of_samples() {
    let session: sessions::AgenticSession =
        serde_yaml::from_str(samples::AGENTIC_SESSION).expect("session");
    let status = session.status.as_ref().expect("status");
    assert_eq!(status.phase, Some(sessions::SessionPhase::Running));
    let repos = session.spec.repos.as_ref().expect("repos");
    assert_eq!(repos[0].branch_or_default(), "develop");
    assert_eq!(repos[1].branch_or_default(), sessions::DEFAULT_BRANCH);
    let custom = session
        .spec
        .mcp_servers
        .as_ref()
        .and_then(|m| m.custom.as_ref());
    assert_eq!(custom.expect("custom")["jira"]["timeoutSeconds"], json!(30));

    let eval: evaluations::Experiment =
        serde_yaml::from_str(samples::EVAL_V1_SCENARIOS).expect("eval");
    let metrics = eval.spec.scenarios.as_ref().expect("scenarios")[0].steps[0]
        .metrics
        .clone()
        .expect("metrics");
    // A threshold of 0 stays 0 (upstream turned it into "unset").
    assert_eq!(metrics[2].threshold, Some(0.0));
    assert_eq!(
        eval.spec
            .trigger
            .as_ref()
            .and_then(|t| t.concurrency_policy),
        Some(evaluations::ConcurrencyPolicy::Forbid)
    );

    let v5: evaluations::Experiment = serde_yaml::from_str(samples::EVAL_V5).expect("v5");
    let inline = v5.spec.dataset.as_ref().and_then(|d| d.inline.as_ref());
    assert_eq!(
        inline.expect("inline").scenarios[0].name,
        "Weather in Paris"
    );
    assert_eq!(v5.spec.env.as_ref().map(Vec::len), Some(3));

    let lab: labs::Experiment = serde_yaml::from_str(samples::LAB_EXPERIMENT).expect("lab");
    assert_eq!(lab.spec.series.as_deref(), Some("gateways"));
    assert_eq!(lab.spec.targets[0].cluster.type_, labs::ClusterType::Gke);
    assert!(
        lab.spec
            .analyzer_config
            .as_ref()
            .expect("analyzer")
            .sections
            .contains(&labs::AnalyzerSection::Glossary)
    );
    let lab_status = lab.status.as_ref().expect("status");
    assert_eq!(lab_status.phase, Some(labs::ExperimentPhase::Complete));
    assert_eq!(lab_status.publish_pr_number, Some(42));
}

// ---------------------------------------------------------------------------------------
// Schema shape
// ---------------------------------------------------------------------------------------

/// Every generated schema is structural, as the API server requires for `apiextensions/v1`.
#[test]
fn every_schema_is_structural() {
    for crd in crds::all() {
        let problems = crd_validation::structural_problems(&schema_of(&crd));
        assert!(
            problems.is_empty(),
            "{} is not structural: {problems:#?}",
            crd.metadata.name.unwrap_or_default()
        );
        crd_validation::Schema::new(&schema_of(&crd)).expect("schema compiles");
    }
}

/// Free-form data is kept exactly where it lives, and nowhere else.
#[test]
fn preserve_unknown_fields_only_on_free_form_data() {
    fn collect(schema: &Value, path: &str, out: &mut Vec<String>) {
        if schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
            out.push(path.to_owned());
        }
        if let Some(props) = schema.get("properties").and_then(Value::as_object) {
            for (k, v) in props {
                collect(v, &format!("{path}.{k}"), out);
            }
        }
        if let Some(items) = schema.get("items") {
            collect(items, &format!("{path}[]"), out);
        }
        if let Some(extra) = schema.get("additionalProperties").filter(|v| v.is_object()) {
            collect(extra, &format!("{path}{{}}"), out);
        }
    }
    let expect: &[(Kind, &[&str])] = &[
        (Kind::AgenticSession, &[".spec.mcpServers.custom{}"]),
        (Kind::ProjectSettings, &[".spec.mcpServers.custom{}"]),
        (
            Kind::EvalExperiment,
            &[
                ".spec.dataset.inline.scenarios[].steps[].customValues",
                ".spec.dataset.inline.scenarios[].steps[].metrics[].parameters",
                ".spec.dataset.inline.scenarios[].steps[].reference.toolCalls[].args",
                ".spec.scenarios[].steps[].customValues",
                ".spec.scenarios[].steps[].metrics[].parameters",
                ".spec.scenarios[].steps[].reference.toolCalls[].args",
            ],
        ),
        (Kind::LabExperiment, &[]),
        (Kind::LabComponent, &[]),
    ];
    for (kind, paths) in expect {
        let mut found = Vec::new();
        collect(&kind.schema(), "", &mut found);
        found.sort();
        assert_eq!(&found, paths, "{kind:?}");
    }
}

/// Every sample's fields are declared, so the API server prunes nothing from them
/// (in particular the newer evaluation fields and the lab YAML-only fields survive).
#[test]
fn samples_have_no_undeclared_fields() {
    for (name, kind, text) in SAMPLES {
        let obj = yaml(text);
        let mut undeclared = Vec::new();
        undeclared_fields(&kind.schema(), &obj, "", &mut undeclared);
        assert!(
            undeclared.is_empty(),
            "{name}: would be pruned: {undeclared:?}"
        );
    }
}

/// Every sample passes the schema (independent bounds check, CEL rules, and full admission
/// with pruning), and admission prunes nothing.
#[test]
fn samples_are_admitted() {
    for (name, kind, text) in SAMPLES {
        let obj = yaml(text);
        let mut violations = Vec::new();
        bound_violations(&kind.schema(), &obj, "", &mut violations);
        assert!(violations.is_empty(), "{name}: {violations:?}");
        assert_eq!(cel_errors(*kind, &obj), "", "{name}: CEL");
        let admitted = admit(*kind, &obj).unwrap_or_else(|e| panic!("{name}: rejected: {e}"));
        assert!(
            admitted.pruned.is_empty(),
            "{name}: pruned {:?}",
            admitted.pruned
        );
    }
}

/// Schema defaults as the references list them.
#[test]
fn schema_defaults() {
    let session = Kind::AgenticSession.schema();
    assert_eq!(
        node(&session, "spec.repos[].branch")["default"],
        json!("main")
    );
    assert_eq!(
        node(&session, "spec.repos[].autoPush")["default"],
        json!(false)
    );
    assert_eq!(
        node(&session, "spec.llmSettings.model")["default"],
        json!("claude-sonnet-4-6")
    );
    assert_eq!(
        node(&session, "spec.llmSettings.temperature")["default"],
        json!(0.7)
    );
    assert_eq!(
        node(&session, "spec.llmSettings.maxTokens")["default"],
        json!(4000)
    );
    assert_eq!(node(&session, "spec.timeout")["default"], json!(300));
    assert_eq!(
        node(&session, "spec.activeWorkflow.branch")["default"],
        json!("main")
    );
    assert_eq!(node(&session, "status.phase")["default"], json!("Pending"));
    let settings = Kind::ProjectSettings.schema();
    assert_eq!(
        node(&settings, "spec.inactivityTimeoutSeconds")["default"],
        json!(86_400)
    );
    let eval = Kind::EvalExperiment.schema();
    assert_eq!(node(&eval, "spec.defaultThreshold")["default"], json!(0.9));
    assert!(
        node(&eval, "spec.dataset.inline.defaultThreshold")
            .get("default")
            .is_none()
    );
    assert!(
        node(&eval, "spec.scenarios[].steps[].metrics[].threshold")
            .get("default")
            .is_none()
    );
    let lab = Kind::LabExperiment.schema();
    assert_eq!(node(&lab, "spec.ttlDays")["default"], json!(1));
    assert_eq!(
        node(&lab, "spec.metrics[].type")["default"],
        json!("instant")
    );
    assert_eq!(
        node(&lab, "spec.qualityGate.enabled")["default"],
        json!(true)
    );
    assert_eq!(
        node(&lab, "spec.qualityGate.maxIterations")["default"],
        json!(3)
    );
    assert_eq!(
        node(&lab, "spec.qualityGate.recollectDelaySeconds")["default"],
        json!(120)
    );
    let component = Kind::LabComponent.schema();
    assert_eq!(
        node(&component, "spec.sources[].targetRevision")["default"],
        json!("HEAD")
    );
    assert_eq!(
        node(&component, "spec.parameters[].type")["default"],
        json!("string")
    );
    assert_eq!(
        node(&component, "spec.observability.metricsPath")["default"],
        json!("/metrics")
    );
}

/// The lab `status.phase` enum is declared once (upstream repeats it in an `allOf`).
#[test]
fn lab_phase_enum_declared_once() {
    let s = Kind::LabExperiment.schema();
    let phase = node(&s, "status.phase");
    assert!(phase.get("allOf").is_none());
    assert_eq!(
        phase["enum"],
        json!([
            "Pending",
            "Provisioning",
            "Ready",
            "Running",
            "Complete",
            "Failed"
        ])
    );
}

// ---------------------------------------------------------------------------------------
// Names, scope, subresources, printer columns
// ---------------------------------------------------------------------------------------

fn columns(crd: &CustomResourceDefinition) -> Vec<(String, String, String, i32)> {
    crd.spec.versions[0]
        .additional_printer_columns
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|c| (c.name, c.type_, c.json_path, c.priority.unwrap_or(0)))
        .collect()
}

fn col(name: &str, ty: &str, path: &str, priority: i32) -> (String, String, String, i32) {
    (name.into(), ty.into(), path.into(), priority)
}

#[test]
fn names_scope_and_status_subresource() {
    let expect = [
        (
            Kind::AgenticSession,
            "agenticsessions.vteam.ambient-code",
            "Namespaced",
            vec!["as"],
        ),
        (
            Kind::ProjectSettings,
            "projectsettings.vteam.ambient-code",
            "Namespaced",
            vec!["ps"],
        ),
        (
            Kind::EvalExperiment,
            "experiments.testbench.agentic-layer.ai",
            "Namespaced",
            vec!["exp"],
        ),
        (
            Kind::LabExperiment,
            "experiments.experiments.illm.io",
            "Namespaced",
            vec![],
        ),
        (
            Kind::LabComponent,
            "components.experiments.illm.io",
            "Cluster",
            vec![],
        ),
    ];
    for (kind, name, scope, short) in expect {
        let crd = kind.crd();
        assert_eq!(crd.metadata.name.as_deref(), Some(name));
        assert_eq!(crd.spec.scope, scope, "{name}");
        assert_eq!(
            crd.spec.names.short_names.clone().unwrap_or_default(),
            short,
            "{name}"
        );
        let version = &crd.spec.versions[0];
        assert_eq!(version.name, "v1alpha1");
        assert!(version.served && version.storage);
        assert!(
            version
                .subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some(),
            "{name} has a status subresource"
        );
    }
}

#[test]
fn printer_columns() {
    assert_eq!(
        columns(&Kind::EvalExperiment.crd()),
        vec![
            col("Agent", "string", ".spec.agentRef.name", 0),
            col(
                "Status",
                "string",
                r#".status.conditions[?(@.type=="Ready")].status"#,
                0
            ),
            col("Age", "date", ".metadata.creationTimestamp", 0),
        ]
    );
    assert_eq!(
        columns(&Kind::LabExperiment.crd()),
        vec![
            col("Phase", "string", ".status.phase", 0),
            col("Targets", "string", ".spec.targets[*].name", 0),
            col("Workflow", "string", ".status.workflowStatus.phase", 0),
            col("Published", "boolean", ".status.published", 0),
            col("Cleaned", "boolean", ".status.resourcesCleaned", 0),
            col("Analysis", "string", ".status.analysisPhase", 0),
            col("Review", "string", ".status.reviewPhase", 0),
            col("Results", "string", ".status.resultsURL", 1),
            col("Age", "date", ".metadata.creationTimestamp", 0),
        ]
    );
    // Upstream's `Sources` column is an integer over `.spec.sources[*]`; ours lists the repos.
    assert_eq!(
        columns(&Kind::LabComponent.crd()),
        vec![
            col("Type", "string", ".spec.type", 0),
            col("Sources", "string", ".spec.sources[*].repoURL", 0),
            col("Age", "date", ".metadata.creationTimestamp", 0),
        ]
    );
    // Upstream shows only Age for ProjectSettings; Ready, Reason and Bindings are additions.
    assert_eq!(
        columns(&Kind::ProjectSettings.crd()),
        vec![
            col(
                "Ready",
                "string",
                r#".status.conditions[?(@.type=="Ready")].status"#,
                0
            ),
            col(
                "Reason",
                "string",
                r#".status.conditions[?(@.type=="Ready")].reason"#,
                0
            ),
            col("Bindings", "integer", ".status.groupBindingsCreated", 1),
            col("Age", "date", ".metadata.creationTimestamp", 0),
        ]
    );
    // Upstream has none for AgenticSession; these are additions.
    assert_eq!(
        columns(&Kind::AgenticSession.crd()),
        vec![
            col("Phase", "string", ".status.phase", 0),
            col(
                "Reason",
                "string",
                r#".status.conditions[?(@.type=="Ready")].reason"#,
                1
            ),
            col("Display Name", "string", ".spec.displayName", 0),
            col("Model", "string", ".spec.llmSettings.model", 1),
            col("Started", "date", ".status.startTime", 1),
            col("Age", "date", ".metadata.creationTimestamp", 0),
        ]
    );
}

#[test]
fn crds_all_is_stable_and_complete() {
    let names: Vec<String> = crds::all()
        .iter()
        .map(|c| c.metadata.name.clone().unwrap_or_default())
        .collect();
    assert_eq!(
        names,
        [
            "components.experiments.illm.io",
            "experiments.experiments.illm.io",
            "experiments.testbench.agentic-layer.ai",
            "agenticsessions.vteam.ambient-code",
            "projectsettings.vteam.ambient-code",
        ]
    );
    let files: Vec<String> = crds::all().iter().map(crds::file_name).collect();
    assert_eq!(files[2], "testbench.agentic-layer.ai_experiments.yaml");
    let all = crds::all_to_yaml().expect("yaml");
    assert_eq!(all.matches("---\n").count(), 5);
    let docs: Vec<CustomResourceDefinition> = all
        .split("---\n")
        .filter(|d| !d.trim().is_empty())
        .map(|d| serde_yaml::from_str(d).expect("each document is a CRD"))
        .collect();
    assert_eq!(docs, crds::all());
}

#[test]
fn write_all_writes_one_file_per_crd() {
    let dir = std::env::temp_dir().join(format!("agentic-api-crds-{}", std::process::id()));
    crds::write_all(&dir).expect("write");
    for crd in crds::all() {
        let text = std::fs::read_to_string(dir.join(crds::file_name(&crd))).expect("file");
        assert_eq!(text, crds::to_yaml(&crd).expect("yaml"));
    }
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

// ---------------------------------------------------------------------------------------
// Bad input
// ---------------------------------------------------------------------------------------

/// What the API server does with a bad object.
#[derive(Debug)]
enum Outcome {
    /// Rejected by an `OpenAPI` keyword (type, required, enum, minimum, maximum, minItems);
    /// the error names this field. Also checked with the independent bounds check.
    Bounds(&'static str),
    /// Rejected by an `OpenAPI` keyword the independent check does not cover (pattern,
    /// list-map key uniqueness); the error names this field.
    Rejected(&'static str),
    /// Rejected by a CEL rule with this message.
    Cel(&'static str),
    /// Accepted, with this field pruned.
    Pruned(&'static str),
}

struct Bad {
    what: &'static str,
    kind: Kind,
    base: &'static str,
    /// Whether deserializing into the typed kind fails too (required fields, enums, types).
    typed_rejects: bool,
    edits: &'static [(&'static str, &'static str)],
    outcome: Outcome,
}

fn apply_edits(base: &str, edits: &[(&str, &str)]) -> Value {
    let mut obj = yaml(base);
    for (path, value) in edits {
        set(
            &mut obj,
            path,
            serde_json::from_str(value).expect("edit value is JSON"),
        );
    }
    obj
}

// AgenticSession: unknown spec fields (e.g. the backend-only `resourceOverrides`) are pruned,
// not rejected; a negative `inactivityTimeout`, a repo without `url`, a phase outside the
// enum or a wrongly typed field is rejected with the field's path.
//
// ProjectSettings: any name but `projectsettings` is rejected by the CEL rule; a missing
// `groupAccess`, an unknown role or a negative timeout is rejected by the schema.
//
// Evaluation Experiment: `dataset` with `scenarios`, or neither, is rejected by a CEL rule;
// a dataset naming more or less than one source is rejected by a CEL rule; thresholds
// outside 0..1, empty `steps`, a missing `agentRef`, an unknown concurrency policy or
// non-object `args` are rejected by the schema; a malformed cron is rejected by its pattern.
//
// Lab Experiment: a missing `targets` or `workflow`, an unknown cluster type, an empty
// `analyzerConfig.sections`, `ttlDays` over 365 or `maxIterations` over 5 is rejected by
// the schema; a metric name that is not snake case is rejected by its pattern; two targets
// with the same name are rejected as duplicates.
//
// Component: a missing or unknown `type`, a source without `repoURL` or a Helm parameter
// without `value` is rejected by the schema.
const BAD: &[Bad] = &[
    Bad {
        what: "backend-only spec field",
        typed_rejects: false,
        kind: Kind::AgenticSession,
        base: samples::AGENTIC_SESSION_MINIMAL,
        edits: &[("spec.resourceOverrides", r#"{"cpu":"2"}"#)],
        outcome: Outcome::Pruned("spec.resourceOverrides"),
    },
    Bad {
        what: "negative inactivity timeout",
        typed_rejects: false,
        kind: Kind::AgenticSession,
        base: samples::AGENTIC_SESSION_MINIMAL,
        edits: &[("spec.inactivityTimeout", "-1")],
        outcome: Outcome::Bounds("spec.inactivityTimeout"),
    },
    Bad {
        what: "repo without url",
        typed_rejects: true,
        kind: Kind::AgenticSession,
        base: samples::AGENTIC_SESSION,
        edits: &[("spec.repos[1]", r#"{"branch":"main"}"#)],
        outcome: Outcome::Bounds("spec.repos[1].url"),
    },
    Bad {
        what: "phase outside the enum",
        typed_rejects: true,
        kind: Kind::AgenticSession,
        base: samples::AGENTIC_SESSION,
        edits: &[("status.phase", r#""Error""#)],
        outcome: Outcome::Bounds("status.phase"),
    },
    Bad {
        what: "timeout as text",
        typed_rejects: true,
        kind: Kind::AgenticSession,
        base: samples::AGENTIC_SESSION_MINIMAL,
        edits: &[("spec.timeout", r#""five minutes""#)],
        outcome: Outcome::Bounds("spec.timeout"),
    },
    Bad {
        what: "condition status outside True/False/Unknown",
        typed_rejects: false,
        kind: Kind::AgenticSession,
        base: samples::AGENTIC_SESSION,
        edits: &[("status.conditions[0].status", r#""Yes""#)],
        outcome: Outcome::Bounds("status.conditions[0].status"),
    },
    Bad {
        what: "project settings with another name",
        typed_rejects: false,
        kind: Kind::ProjectSettings,
        base: samples::PROJECT_SETTINGS,
        edits: &[("metadata.name", r#""settings""#)],
        outcome: Outcome::Cel("ProjectSettings must be named 'projectsettings'"),
    },
    Bad {
        what: "project settings without groupAccess",
        typed_rejects: true,
        kind: Kind::ProjectSettings,
        base: samples::PROJECT_SETTINGS,
        edits: &[("spec.groupAccess", "null")],
        outcome: Outcome::Bounds("spec.groupAccess"),
    },
    Bad {
        what: "unknown group role",
        typed_rejects: true,
        kind: Kind::ProjectSettings,
        base: samples::PROJECT_SETTINGS,
        edits: &[("spec.groupAccess[0].role", r#""owner""#)],
        outcome: Outcome::Bounds("spec.groupAccess[0].role"),
    },
    Bad {
        what: "negative project inactivity timeout",
        typed_rejects: false,
        kind: Kind::ProjectSettings,
        base: samples::PROJECT_SETTINGS,
        edits: &[("spec.inactivityTimeoutSeconds", "-5")],
        outcome: Outcome::Bounds("spec.inactivityTimeoutSeconds"),
    },
    Bad {
        what: "dataset and scenarios",
        typed_rejects: false,
        kind: Kind::EvalExperiment,
        base: samples::EVAL_V1_SCENARIOS,
        edits: &[("spec.dataset", r#"{"url":"https://example.com/d.json"}"#)],
        outcome: Outcome::Cel("dataset and scenarios are mutually exclusive"),
    },
    Bad {
        what: "neither dataset nor scenarios",
        typed_rejects: false,
        kind: Kind::EvalExperiment,
        base: samples::EVAL_V1_DATASET,
        edits: &[("spec.dataset", "null")],
        outcome: Outcome::Cel("one of dataset or scenarios must be set"),
    },
    Bad {
        what: "dataset with two sources",
        typed_rejects: false,
        kind: Kind::EvalExperiment,
        base: samples::EVAL_V1_DATASET,
        edits: &[("spec.dataset.url", r#""https://example.com/d.json""#)],
        outcome: Outcome::Cel("exactly one of s3, url, or inline must be set"),
    },
    Bad {
        what: "empty dataset",
        typed_rejects: false,
        kind: Kind::EvalExperiment,
        base: samples::EVAL_V1_DATASET,
        edits: &[("spec.dataset", "{}")],
        outcome: Outcome::Cel("exactly one of s3, url, or inline must be set"),
    },
    Bad {
        what: "defaultThreshold above 1",
        typed_rejects: false,
        kind: Kind::EvalExperiment,
        base: samples::EVAL_V1_DATASET,
        edits: &[("spec.defaultThreshold", "1.5")],
        outcome: Outcome::Bounds("spec.defaultThreshold"),
    },
    Bad {
        what: "negative metric threshold",
        typed_rejects: false,
        kind: Kind::EvalExperiment,
        base: samples::EVAL_V1_SCENARIOS,
        edits: &[("spec.scenarios[0].steps[0].metrics[1].threshold", "-0.1")],
        outcome: Outcome::Bounds("spec.scenarios[0].steps[0].metrics[1].threshold"),
    },
    Bad {
        what: "inline defaultThreshold above 1",
        typed_rejects: false,
        kind: Kind::EvalExperiment,
        base: samples::EVAL_V5,
        edits: &[("spec.dataset.inline.defaultThreshold", "2")],
        outcome: Outcome::Bounds("spec.dataset.inline.defaultThreshold"),
    },
    Bad {
        what: "scenario without steps",
        typed_rejects: false,
        kind: Kind::EvalExperiment,
        base: samples::EVAL_V1_SCENARIOS,
        edits: &[("spec.scenarios[1].steps", "[]")],
        outcome: Outcome::Bounds("spec.scenarios[1].steps"),
    },
    Bad {
        what: "empty scenarios list",
        typed_rejects: false,
        kind: Kind::EvalExperiment,
        base: samples::EVAL_V2,
        edits: &[("spec.scenarios", "[]")],
        outcome: Outcome::Bounds("spec.scenarios"),
    },
    Bad {
        what: "missing agentRef",
        typed_rejects: true,
        kind: Kind::EvalExperiment,
        base: samples::EVAL_V1_DATASET,
        edits: &[("spec.agentRef", "null")],
        outcome: Outcome::Bounds("spec.agentRef"),
    },
    Bad {
        what: "unknown concurrency policy",
        typed_rejects: true,
        kind: Kind::EvalExperiment,
        base: samples::EVAL_V1_SCENARIOS,
        edits: &[("spec.trigger.concurrencyPolicy", r#""Sometimes""#)],
        outcome: Outcome::Bounds("spec.trigger.concurrencyPolicy"),
    },
    Bad {
        what: "tool call args that are not an object",
        typed_rejects: true,
        kind: Kind::EvalExperiment,
        base: samples::EVAL_V1_SCENARIOS,
        edits: &[(
            "spec.scenarios[0].steps[0].reference.toolCalls[0].args",
            r#""city=New York""#,
        )],
        outcome: Outcome::Bounds("spec.scenarios[0].steps[0].reference.toolCalls[0].args"),
    },
    Bad {
        what: "cron that is not five fields",
        typed_rejects: false,
        kind: Kind::EvalExperiment,
        base: samples::EVAL_V5,
        edits: &[("spec.schedule.cron", r#""daily""#)],
        outcome: Outcome::Rejected("spec.schedule.cron"),
    },
    Bad {
        what: "lab experiment without targets",
        typed_rejects: true,
        kind: Kind::LabExperiment,
        base: samples::LAB_EXPERIMENT,
        edits: &[("spec.targets", "null")],
        outcome: Outcome::Bounds("spec.targets"),
    },
    Bad {
        what: "lab experiment without workflow",
        typed_rejects: true,
        kind: Kind::LabExperiment,
        base: samples::LAB_EXPERIMENT,
        edits: &[("spec.workflow", "null")],
        outcome: Outcome::Bounds("spec.workflow"),
    },
    Bad {
        what: "unknown cluster type",
        typed_rejects: true,
        kind: Kind::LabExperiment,
        base: samples::LAB_EXPERIMENT,
        edits: &[("spec.targets[0].cluster.type", r#""eks""#)],
        outcome: Outcome::Bounds("spec.targets[0].cluster.type"),
    },
    Bad {
        what: "empty analyzer sections",
        typed_rejects: false,
        kind: Kind::LabExperiment,
        base: samples::LAB_EXPERIMENT,
        edits: &[("spec.analyzerConfig.sections", "[]")],
        outcome: Outcome::Bounds("spec.analyzerConfig.sections"),
    },
    Bad {
        what: "ttlDays over a year",
        typed_rejects: false,
        kind: Kind::LabExperiment,
        base: samples::LAB_EXPERIMENT,
        edits: &[("spec.ttlDays", "400")],
        outcome: Outcome::Bounds("spec.ttlDays"),
    },
    Bad {
        what: "too many quality-gate iterations",
        typed_rejects: false,
        kind: Kind::LabExperiment,
        base: samples::LAB_EXPERIMENT,
        edits: &[("spec.qualityGate.maxIterations", "9")],
        outcome: Outcome::Bounds("spec.qualityGate.maxIterations"),
    },
    Bad {
        what: "metric name not in snake case",
        typed_rejects: false,
        kind: Kind::LabExperiment,
        base: samples::LAB_EXPERIMENT,
        edits: &[("spec.metrics[0].name", r#""P99-Latency""#)],
        outcome: Outcome::Rejected("spec.metrics[0].name"),
    },
    Bad {
        what: "two targets with one name",
        typed_rejects: false,
        kind: Kind::LabExperiment,
        base: samples::LAB_EXPERIMENT,
        edits: &[("spec.targets[1].name", r#""app""#)],
        outcome: Outcome::Rejected("spec.targets[1]"),
    },
    Bad {
        what: "component without type",
        typed_rejects: true,
        kind: Kind::LabComponent,
        base: samples::LAB_COMPONENT,
        edits: &[("spec.type", "null")],
        outcome: Outcome::Bounds("spec.type"),
    },
    Bad {
        what: "unknown component type",
        typed_rejects: true,
        kind: Kind::LabComponent,
        base: samples::LAB_COMPONENT,
        edits: &[("spec.type", r#""library""#)],
        outcome: Outcome::Bounds("spec.type"),
    },
    Bad {
        what: "source without repoURL",
        typed_rejects: true,
        kind: Kind::LabComponent,
        base: samples::LAB_COMPONENT,
        edits: &[("spec.sources[1]", r#"{"path":"manifests"}"#)],
        outcome: Outcome::Bounds("spec.sources[1].repoURL"),
    },
    Bad {
        what: "helm parameter without value",
        typed_rejects: true,
        kind: Kind::LabComponent,
        base: samples::LAB_COMPONENT,
        edits: &[(
            "spec.sources[0].helm.parameters[0]",
            r#"{"name":"replicas"}"#,
        )],
        outcome: Outcome::Bounds("spec.sources[0].helm.parameters[0].value"),
    },
];

/// Each bad object is handled the way its `Outcome` says, both by the independent checks
/// (bounds, undeclared fields, kube's client-side CEL) and by full admission.
#[test]
fn bad_input_is_rejected_or_pruned() {
    let mut failures = Vec::new();
    for bad in BAD {
        let obj = apply_edits(bad.base, bad.edits);
        let schema = bad.kind.schema();
        let admitted = admit(bad.kind, &obj);
        let problem = match &bad.outcome {
            Outcome::Bounds(field) => {
                let mut violations = Vec::new();
                bound_violations(&schema, &obj, "", &mut violations);
                if violations.iter().any(|v| v.starts_with(field)) {
                    match admitted {
                        Ok(_) => Some("admitted".to_owned()),
                        Err(e) if !e.to_string().contains(field) => {
                            Some(format!("error does not name {field}: {e}"))
                        }
                        Err(_) => None,
                    }
                } else {
                    Some(format!("bounds check missed {field}: {violations:?}"))
                }
            }
            Outcome::Rejected(field) => match admitted {
                Ok(_) => Some("admitted".to_owned()),
                Err(e) if !e.to_string().contains(field) => {
                    Some(format!("error does not name {field}: {e}"))
                }
                Err(_) => None,
            },
            Outcome::Cel(message) => {
                let cel = cel_errors(bad.kind, &obj);
                if cel.contains(message) {
                    match admitted {
                        Ok(_) => Some("admitted".to_owned()),
                        Err(e) if !e.to_string().contains(message) => {
                            Some(format!("error lacks {message:?}: {e}"))
                        }
                        Err(_) => None,
                    }
                } else {
                    Some(format!(
                        "client-side CEL did not report {message:?}: {cel:?}"
                    ))
                }
            }
            Outcome::Pruned(field) => {
                let mut undeclared = Vec::new();
                undeclared_fields(&schema, &obj, "", &mut undeclared);
                if undeclared == [*field] {
                    match admitted {
                        Ok(a) if a.pruned.iter().any(|p| p.contains(field)) => None,
                        Ok(a) => Some(format!("pruned {:?}", a.pruned)),
                        Err(e) => Some(format!("rejected: {e}")),
                    }
                } else {
                    Some(format!("undeclared fields {undeclared:?}"))
                }
            }
        };
        if let Some(problem) = problem {
            failures.push(format!("{} ({:?}): {problem}", bad.what, bad.kind));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The typed API refuses what the schema requires, so a controller never sees it; and
/// accepts what only the API server's bounds or rules catch.
#[test]
fn typed_deserialization_of_bad_input() {
    for bad in BAD {
        let obj = apply_edits(bad.base, bad.edits);
        assert_eq!(
            bad.kind.typed_roundtrip(&obj).is_err(),
            bad.typed_rejects,
            "{}: typed deserialization",
            bad.what
        );
    }
}

// ---------------------------------------------------------------------------------------
// CEL through the typed API
// ---------------------------------------------------------------------------------------

/// `validate_cel()` (kube's client-side CEL) on typed objects: the evaluation rules and
/// the `ProjectSettings` singleton rule.
#[test]
fn typed_cel_validation() {
    let mut eval: evaluations::Experiment =
        serde_yaml::from_str(samples::EVAL_V1_SCENARIOS).expect("eval");
    eval.validate_cel().expect("valid sample passes");
    eval.spec.dataset = Some(evaluations::DatasetSource {
        url: Some("https://example.com/dataset.json".into()),
        ..Default::default()
    });
    let err = eval
        .validate_cel()
        .expect_err("dataset + scenarios")
        .to_string();
    assert!(
        err.contains("dataset and scenarios are mutually exclusive"),
        "{err}"
    );
    eval.spec.scenarios = None;
    eval.validate_cel().expect("dataset alone passes");
    eval.spec.dataset = None;
    let err = eval.validate_cel().expect_err("neither").to_string();
    assert!(
        err.contains("one of dataset or scenarios must be set"),
        "{err}"
    );

    let mut ps: sessions::ProjectSettings =
        serde_yaml::from_str(samples::PROJECT_SETTINGS).expect("ps");
    ps.validate_cel().expect("named projectsettings passes");
    ps.metadata.name = Some("team-settings".into());
    let err = ps.validate_cel().expect_err("wrong name").to_string();
    assert!(err.contains("must be named 'projectsettings'"), "{err}");

    let lab: labs::Experiment = serde_yaml::from_str(samples::LAB_EXPERIMENT).expect("lab");
    lab.validate_cel().expect("lab sample passes");
    let session: sessions::AgenticSession =
        serde_yaml::from_str(samples::AGENTIC_SESSION).expect("session");
    session.validate_cel().expect("session sample passes");
}

/// A lab experiment without `targets` cannot even be read into the typed API.
#[test]
fn lab_experiment_without_targets_is_refused_by_the_types() {
    let mut obj = yaml(samples::LAB_EXPERIMENT);
    set(&mut obj, "spec.targets", Value::Null);
    let err = serde_json::from_value::<labs::Experiment>(obj)
        .expect_err("targets is required")
        .to_string();
    assert!(err.contains("targets"), "{err}");
}

/// Phase and other enums parse from and print as their wire values.
#[test]
fn enum_text_roundtrip() {
    for phase in sessions::SessionPhase::ALL {
        assert_eq!(
            phase.to_string().parse::<sessions::SessionPhase>(),
            Ok(*phase)
        );
    }
    for phase in labs::ExperimentPhase::ALL {
        assert_eq!(phase.as_str().parse::<labs::ExperimentPhase>(), Ok(*phase));
    }
    assert_eq!(
        "approved".parse::<labs::ReviewDecision>(),
        Ok(labs::ReviewDecision::Approved)
    );
    let err = "Paused"
        .parse::<sessions::DesiredPhase>()
        .expect_err("unknown");
    assert_eq!(
        err.to_string(),
        "ambient-code.io/desired-phase: unknown value \"Paused\"; allowed: Running, Stopped"
    );
    assert!(sessions::SessionPhase::Failed.is_terminal());
    assert!(!sessions::SessionPhase::Stopping.is_terminal());
    assert_eq!(
        sessions::SessionPhase::default(),
        sessions::SessionPhase::Pending
    );
}

/// Every CEL rule compiles, uses only variables available to CRD rules, and stays within
/// the API server's cost budget (an over-budget rule makes the API server refuse the CRD).
#[test]
fn cel_rules_compile_and_fit_the_cost_budget() {
    use kube::core::cel::{ScopeContext, analyze_rule, compile_schema};

    fn walk(schema: &Value, path: &str, out: &mut Vec<String>, count: &mut usize) {
        if let Some(rules) = schema
            .get("x-kubernetes-validations")
            .and_then(Value::as_array)
        {
            let compiled = compile_schema(schema);
            if compiled.has_errors() {
                out.push(format!("{path}: {:?}", compiled.compilation_errors()));
            }
            for rule in rules.iter().filter_map(|r| r["rule"].as_str()) {
                *count += 1;
                let warnings = analyze_rule(rule, &compiled, ScopeContext::CrdValidation);
                if !warnings.is_empty() {
                    out.push(format!("{path}: {rule}: {warnings:?}"));
                }
            }
        }
        if let Some(props) = schema.get("properties").and_then(Value::as_object) {
            for (key, value) in props {
                walk(value, &format!("{path}.{key}"), out, count);
            }
        }
        if let Some(items) = schema.get("items") {
            walk(items, &format!("{path}[]"), out, count);
        }
    }
    let mut problems = Vec::new();
    let mut count = 0;
    for crd in crds::all() {
        walk(&schema_of(&crd), "", &mut problems, &mut count);
    }
    assert!(problems.is_empty(), "{problems:#?}");
    // ProjectSettings name, evaluation spec (2) and dataset (1).
    assert_eq!(count, 4);
}
