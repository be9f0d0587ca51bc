//! Pure validation of an evaluation `Experiment` spec, on its JSON form, for what the CRD
//! schema cannot check (or what older CRDs still installed in a cluster do not check).
//!
//! The controller runs it before building anything (an invalid spec gets a condition and
//! waits for a change); the validating webhook runs it on admission.

use agentic_api::evaluations::DEFAULT_THRESHOLD;
use serde_json::Value;

use crate::runtime::names;

/// Testkube's `TestTrigger` event names accepted in `spec.trigger.event` (compared lower-cased).
pub const TESTKUBE_EVENTS: [&str; 9] = [
    "created",
    "modified",
    "deleted",
    "deployment-scale-update",
    "deployment-image-update",
    "deployment-env-update",
    "deployment-containers-modified",
    "deployment-generation-modified",
    "deployment-resource-modified",
];

/// One rejected field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// JSON path of the field, e.g. `spec.scenarios[0].steps[1].metrics[0].threshold`.
    pub field: String,
    /// What is wrong and what is allowed.
    pub message: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Joins field errors into one message.
pub fn join(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// What validation found: errors reject the object, warnings are shown to the user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Findings {
    /// Rejected fields.
    pub errors: Vec<FieldError>,
    /// Accepted but probably not what the user meant.
    pub warnings: Vec<String>,
}

fn err(errors: &mut Vec<FieldError>, field: impl Into<String>, message: impl Into<String>) {
    errors.push(FieldError {
        field: field.into(),
        message: message.into(),
    });
}

fn check_threshold(errors: &mut Vec<FieldError>, field: &str, value: Option<&Value>) {
    let Some(value) = value else { return };
    if value.is_null() {
        return;
    }
    match value.as_f64() {
        Some(n) if (0.0..=1.0).contains(&n) => {}
        _ => err(
            errors,
            field,
            format!("must be a number between 0 and 1, got {value}"),
        ),
    }
}

fn check_object(errors: &mut Vec<FieldError>, field: &str, value: Option<&Value>) {
    match value {
        None | Some(Value::Null | Value::Object(_)) => {}
        Some(other) => err(
            errors,
            field,
            format!("must be an object (key: value pairs), got {other}"),
        ),
    }
}

fn check_scenarios(errors: &mut Vec<FieldError>, prefix: &str, scenarios: &Value) {
    let Some(scenarios) = scenarios.as_array() else {
        err(errors, prefix, "must be a list of scenarios");
        return;
    };
    if scenarios.is_empty() {
        err(errors, prefix, "must contain at least one scenario");
    }
    for (i, scenario) in scenarios.iter().enumerate() {
        let at = format!("{prefix}[{i}]");
        if scenario
            .get("name")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            err(errors, format!("{at}.name"), "is required");
        }
        let steps = scenario.get("steps").and_then(Value::as_array);
        if steps.is_none_or(Vec::is_empty) {
            err(
                errors,
                format!("{at}.steps"),
                "must contain at least one step",
            );
        }
        for (j, step) in steps.into_iter().flatten().enumerate() {
            let at = format!("{at}.steps[{j}]");
            if step.get("input").and_then(Value::as_str).is_none() {
                err(errors, format!("{at}.input"), "is required");
            }
            check_object(
                errors,
                &format!("{at}.customValues"),
                step.get("customValues"),
            );
            let calls = step
                .pointer("/reference/toolCalls")
                .and_then(Value::as_array);
            for (k, call) in calls.into_iter().flatten().enumerate() {
                check_object(
                    errors,
                    &format!("{at}.reference.toolCalls[{k}].args"),
                    call.get("args"),
                );
            }
            let metrics = step.get("metrics").and_then(Value::as_array);
            for (k, metric) in metrics.into_iter().flatten().enumerate() {
                let at = format!("{at}.metrics[{k}]");
                check_threshold(errors, &format!("{at}.threshold"), metric.get("threshold"));
                check_object(
                    errors,
                    &format!("{at}.parameters"),
                    metric.get("parameters"),
                );
            }
        }
    }
}

fn present(spec: &Value, key: &str) -> bool {
    spec.get(key).is_some_and(|v| !v.is_null())
}

fn check_dataset(
    errors: &mut Vec<FieldError>,
    warnings: &mut Vec<String>,
    spec: &Value,
    dataset: &Value,
) {
    let sources = ["s3", "url", "inline"]
        .iter()
        .filter(|k| dataset.get(**k).is_some_and(|v| !v.is_null()))
        .count();
    if sources != 1 {
        err(
            errors,
            "spec.dataset",
            format!(
                "exactly one of spec.dataset.s3, spec.dataset.url or spec.dataset.inline must be set, found {sources}"
            ),
        );
    }
    if let Some(s3) = dataset.get("s3").filter(|v| !v.is_null()) {
        for key in ["bucket", "key"] {
            if s3
                .get(key)
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                err(errors, format!("spec.dataset.s3.{key}"), "is required");
            }
        }
    }
    if let Some(url) = dataset.get("url").filter(|v| !v.is_null()) {
        let ok = url
            .as_str()
            .is_some_and(|u| u.starts_with("http://") || u.starts_with("https://"));
        if !ok {
            err(
                errors,
                "spec.dataset.url",
                format!("must be an http:// or https:// URL, got {url}"),
            );
        }
    }
    if let Some(inline) = dataset.get("inline").filter(|v| !v.is_null()) {
        check_threshold(
            errors,
            "spec.dataset.inline.defaultThreshold",
            inline.get("defaultThreshold"),
        );
        check_scenarios(
            errors,
            "spec.dataset.inline.scenarios",
            inline.get("scenarios").unwrap_or(&Value::Null),
        );
    } else {
        let judge = spec.get("llmAsAJudgeModel").and_then(Value::as_str);
        let threshold = spec.get("defaultThreshold").and_then(Value::as_f64);
        if judge.is_some()
            || threshold.is_some_and(|t| (t - DEFAULT_THRESHOLD).abs() > f64::EPSILON)
        {
            warnings.push(
                    "spec.llmAsAJudgeModel and spec.defaultThreshold are not applied in dataset mode: the downloaded dataset's own llm_as_a_judge_model and default_threshold are used".to_owned(),
                );
        }
    }
}

fn check_trigger(errors: &mut Vec<FieldError>, spec: &Value) {
    if let Some(event) = spec.pointer("/trigger/event").filter(|v| !v.is_null()) {
        let lowered = event.as_str().map(str::to_ascii_lowercase);
        if !lowered
            .as_deref()
            .is_some_and(|e| TESTKUBE_EVENTS.contains(&e))
        {
            err(
                errors,
                "spec.trigger.event",
                format!(
                    "{event} is not a Testkube trigger event; allowed: {}",
                    TESTKUBE_EVENTS.join(", ")
                ),
            );
        }
    }
    if let Some(policy) = spec
        .pointer("/trigger/concurrencyPolicy")
        .filter(|v| !v.is_null())
        && !policy
            .as_str()
            .is_some_and(|p| ["Allow", "Forbid", "Replace"].contains(&p))
    {
        err(
            errors,
            "spec.trigger.concurrencyPolicy",
            format!("{policy} is not allowed; use Allow, Forbid or Replace"),
        );
    }
}

/// The five fields of a cron expression: name, smallest and largest value, and the names
/// the field also accepts (their position plus the smallest value is their number).
const CRON_FIELDS: [(&str, u32, u32, &[&str]); 5] = [
    ("minute", 0, 59, &[]),
    ("hour", 0, 23, &[]),
    ("day of month", 1, 31, &[]),
    (
        "month",
        1,
        12,
        &[
            "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
        ],
    ),
    (
        "day of week",
        0,
        7,
        &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"],
    ),
];

/// One value of a cron field: a number in range or one of the field's names.
fn cron_value(text: &str, min: u32, max: u32, names: &[&str]) -> Option<u32> {
    if let Ok(n) = text.parse::<u32>() {
        return (min..=max).contains(&n).then_some(n);
    }
    let upper = text.to_ascii_uppercase();
    names
        .iter()
        .position(|n| *n == upper)
        .and_then(|i| u32::try_from(i).ok())
        .map(|i| i + min)
}

/// Why one comma-separated item of a cron field (`*`, `N`, `A-B`, each optionally `/STEP`)
/// is not valid, if it is not.
fn cron_item_problem(
    item: &str,
    (field, min, max, names): (&str, u32, u32, &[&str]),
) -> Option<String> {
    let allowed = if names.is_empty() {
        format!("{min}-{max}")
    } else {
        format!("{min}-{max} or {}-{}", names[0], names[names.len() - 1])
    };
    let (range, step) = match item.split_once('/') {
        Some((range, step)) => (range, Some(step)),
        None => (item, None),
    };
    if let Some(step) = step
        && step.parse::<u32>().map_or(true, |s| s == 0)
    {
        return Some(format!(
            "{field}: step {step:?} in {item:?} must be a number of 1 or more"
        ));
    }
    if range == "*" {
        return None;
    }
    let (low, high) = range.split_once('-').unwrap_or((range, range));
    match (
        cron_value(low, min, max, names),
        cron_value(high, min, max, names),
    ) {
        (Some(a), Some(b)) if a <= b => None,
        (Some(_), Some(_)) => Some(format!("{field}: range {range:?} runs backwards")),
        _ => Some(format!(
            "{field}: {item:?} is not allowed; use *, a value {allowed}, a range A-B, a list A,B and an optional /STEP"
        )),
    }
}

fn check_schedule(errors: &mut Vec<FieldError>, spec: &Value) {
    let Some(cron) = spec.pointer("/schedule/cron").and_then(Value::as_str) else {
        return;
    };
    let fields: Vec<&str> = cron.split_whitespace().collect();
    if fields.len() != CRON_FIELDS.len() {
        err(
            errors,
            "spec.schedule.cron",
            format!(
                "{cron:?} has {} fields; a cron expression has five: minute hour day-of-month month day-of-week",
                fields.len()
            ),
        );
        return;
    }
    for (text, field) in fields.iter().zip(CRON_FIELDS) {
        if let Some(problem) = text
            .split(',')
            .find_map(|item| cron_item_problem(item, field))
        {
            err(errors, "spec.schedule.cron", problem);
        }
    }
}

/// Validates an `Experiment` spec given as JSON.
pub fn validate_spec(spec: &Value) -> Findings {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();

    match spec.pointer("/agentRef/name").and_then(Value::as_str) {
        None | Some("") => err(&mut errors, "spec.agentRef.name", "is required"),
        Some(name) if !names::is_dns_subdomain(name) => err(
            &mut errors,
            "spec.agentRef.name",
            format!(
                "{name:?} cannot name an Agent: use lowercase letters, digits, '-' and '.', starting and ending with a letter or digit"
            ),
        ),
        Some(_) => {}
    }
    if let Some(namespace) = spec
        .pointer("/agentRef/namespace")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty() && !names::is_dns_label(n))
    {
        err(
            &mut errors,
            "spec.agentRef.namespace",
            format!(
                "{namespace:?} cannot name a namespace: use at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit"
            ),
        );
    }
    if let Some(endpoint) = spec
        .get("otlpEndpoint")
        .and_then(Value::as_str)
        .filter(|e| !e.is_empty() && !e.starts_with("http://") && !e.starts_with("https://"))
    {
        err(
            &mut errors,
            "spec.otlpEndpoint",
            format!(
                "must be an http:// or https:// URL (OTEL_EXPORTER_OTLP_ENDPOINT), got {endpoint}"
            ),
        );
    }

    let has_dataset = present(spec, "dataset");
    let has_scenarios = present(spec, "scenarios");
    match (has_dataset, has_scenarios) {
        (true, true) => err(
            &mut errors,
            "spec.dataset",
            "spec.dataset and spec.scenarios are mutually exclusive; set only one of them",
        ),
        (false, false) => err(
            &mut errors,
            "spec",
            "one of spec.dataset or spec.scenarios must be set; without either the workflow has nothing to run",
        ),
        _ => {}
    }

    check_threshold(
        &mut errors,
        "spec.defaultThreshold",
        spec.get("defaultThreshold"),
    );
    if let Some(scenarios) = spec.get("scenarios").filter(|v| !v.is_null()) {
        check_scenarios(&mut errors, "spec.scenarios", scenarios);
    }

    if let Some(dataset) = spec.get("dataset").filter(|v| !v.is_null()) {
        check_dataset(&mut errors, &mut warnings, spec, dataset);
    }
    check_trigger(&mut errors, spec);
    check_schedule(&mut errors, spec);

    Findings { errors, warnings }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schedule_errors(cron: &str) -> Vec<String> {
        let mut errors = Vec::new();
        check_schedule(&mut errors, &json!({"schedule": {"cron": cron}}));
        errors.into_iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn references_and_endpoints_must_be_usable() {
        let base = |extra: Value| {
            let mut spec = json!({"agentRef": {"name": "weather-agent"}, "dataset": {"url": "https://x/d.json"}});
            for (k, v) in extra.as_object().unwrap() {
                spec[k] = v.clone();
            }
            validate_spec(&spec)
                .errors
                .into_iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(base(json!({})), Vec::<String>::new());
        assert_eq!(
            base(
                json!({"agentRef": {"name": "agents.v2", "namespace": "team-a"},
                        "otlpEndpoint": "http://otel:4318"})
            ),
            Vec::<String>::new()
        );
        let bad_name = base(json!({"agentRef": {"name": "Weather_Agent"}}));
        assert!(
            bad_name.len() == 1
                && bad_name[0]
                    .starts_with("spec.agentRef.name: \"Weather_Agent\" cannot name an Agent"),
            "{bad_name:?}"
        );
        let bad_ns = base(json!({"agentRef": {"name": "a", "namespace": "team.a"}}));
        assert!(
            bad_ns.len() == 1 && bad_ns[0].starts_with("spec.agentRef.namespace: \"team.a\""),
            "{bad_ns:?}"
        );
        let bad_endpoint = base(json!({"otlpEndpoint": "otel:4317"}));
        assert_eq!(
            bad_endpoint,
            [
                "spec.otlpEndpoint: must be an http:// or https:// URL (OTEL_EXPORTER_OTLP_ENDPOINT), got otel:4317"
            ]
        );
    }

    #[test]
    fn cron_expressions_are_checked_field_by_field() {
        for good in [
            "0 2 * * *",
            "*/15 * * * 1-5",
            "0 0 1,15 * *",
            "30 6 * JAN-MAR mon",
            "0 0 * * 7",
            "5-55/10 0-23/2 1-31 1-12 0-6",
        ] {
            assert_eq!(schedule_errors(good), Vec::<String>::new(), "{good}");
        }
        let cases = [
            (
                "99 * * * *",
                "minute: \"99\" is not allowed; use *, a value 0-59",
            ),
            (
                "0 24 * * *",
                "hour: \"24\" is not allowed; use *, a value 0-23",
            ),
            (
                "0 0 0 * *",
                "day of month: \"0\" is not allowed; use *, a value 1-31",
            ),
            (
                "0 0 * 13 *",
                "month: \"13\" is not allowed; use *, a value 1-12 or JAN-DEC",
            ),
            (
                "0 0 * * FUN",
                "day of week: \"FUN\" is not allowed; use *, a value 0-7 or SUN-SAT",
            ),
            (
                "*/0 * * * *",
                "minute: step \"0\" in \"*/0\" must be a number of 1 or more",
            ),
            ("0 5-1 * * *", "hour: range \"5-1\" runs backwards"),
            ("0 2 * *", "has 4 fields; a cron expression has five"),
        ];
        for (cron, expected) in cases {
            let errors = schedule_errors(cron);
            assert!(
                errors.len() == 1
                    && errors[0].starts_with("spec.schedule.cron: ")
                    && errors[0].contains(expected),
                "{cron}: {errors:?}"
            );
        }
    }

    fn scenarios() -> Value {
        json!([{"name": "s", "steps": [{"input": "hi"}]}])
    }

    fn fields(spec: &Value) -> Vec<String> {
        validate_spec(spec)
            .errors
            .into_iter()
            .map(|e| e.field)
            .collect()
    }

    #[test]
    fn table() {
        let cases: Vec<(&str, Value, Vec<&str>)> = vec![
            (
                "valid scenarios",
                json!({"agentRef": {"name": "a"}, "scenarios": scenarios()}),
                vec![],
            ),
            (
                "valid s3",
                json!({"agentRef": {"name": "a"}, "dataset": {"s3": {"bucket": "b", "key": "k.json"}}}),
                vec![],
            ),
            (
                "valid url",
                json!({"agentRef": {"name": "a"}, "dataset": {"url": "https://x/d.json"}}),
                vec![],
            ),
            (
                "both",
                json!({"agentRef": {"name": "a"}, "scenarios": scenarios(), "dataset": {"url": "https://x"}}),
                vec!["spec.dataset"],
            ),
            ("neither", json!({"agentRef": {"name": "a"}}), vec!["spec"]),
            (
                "no agent",
                json!({"agentRef": {}, "scenarios": scenarios()}),
                vec!["spec.agentRef.name"],
            ),
            (
                "default threshold above 1",
                json!({"agentRef": {"name": "a"}, "defaultThreshold": 1.5, "scenarios": scenarios()}),
                vec!["spec.defaultThreshold"],
            ),
            (
                "negative metric threshold",
                json!({"agentRef": {"name": "a"}, "scenarios": [{"name": "s", "steps": [{"input": "i", "metrics": [{"metricName": "m", "threshold": -0.1}]}]}]}),
                vec!["spec.scenarios[0].steps[0].metrics[0].threshold"],
            ),
            (
                "zero thresholds are fine",
                json!({"agentRef": {"name": "a"}, "defaultThreshold": 0, "scenarios": [{"name": "s", "steps": [{"input": "i", "metrics": [{"metricName": "m", "threshold": 0}]}]}]}),
                vec![],
            ),
            (
                "args not an object",
                json!({"agentRef": {"name": "a"}, "scenarios": [{"name": "s", "steps": [{"input": "i", "reference": {"toolCalls": [{"name": "t", "args": "city=NY"}]}}]}]}),
                vec!["spec.scenarios[0].steps[0].reference.toolCalls[0].args"],
            ),
            (
                "parameters not an object",
                json!({"agentRef": {"name": "a"}, "scenarios": [{"name": "s", "steps": [{"input": "i", "metrics": [{"metricName": "m", "parameters": [1]}]}]}]}),
                vec!["spec.scenarios[0].steps[0].metrics[0].parameters"],
            ),
            (
                "customValues not an object",
                json!({"agentRef": {"name": "a"}, "scenarios": [{"name": "s", "steps": [{"input": "i", "customValues": 3}]}]}),
                vec!["spec.scenarios[0].steps[0].customValues"],
            ),
            (
                "empty steps",
                json!({"agentRef": {"name": "a"}, "scenarios": [{"name": "s", "steps": []}]}),
                vec!["spec.scenarios[0].steps"],
            ),
            (
                "two dataset sources",
                json!({"agentRef": {"name": "a"}, "dataset": {"url": "https://x", "s3": {"bucket": "b", "key": "k"}}}),
                vec!["spec.dataset"],
            ),
            (
                "url scheme",
                json!({"agentRef": {"name": "a"}, "dataset": {"url": "ftp://x"}}),
                vec!["spec.dataset.url"],
            ),
            (
                "invalid trigger event",
                json!({"agentRef": {"name": "a"}, "scenarios": scenarios(), "trigger": {"enabled": true, "event": "on_push"}}),
                vec!["spec.trigger.event"],
            ),
            (
                "valid trigger event in any case",
                json!({"agentRef": {"name": "a"}, "scenarios": scenarios(), "trigger": {"enabled": true, "event": "Modified", "concurrencyPolicy": "Forbid"}}),
                vec![],
            ),
            (
                "bad policy",
                json!({"agentRef": {"name": "a"}, "scenarios": scenarios(), "trigger": {"concurrencyPolicy": "allow"}}),
                vec!["spec.trigger.concurrencyPolicy"],
            ),
            (
                "inline dataset threshold",
                json!({"agentRef": {"name": "a"}, "dataset": {"inline": {"defaultThreshold": 2, "scenarios": scenarios()}}}),
                vec!["spec.dataset.inline.defaultThreshold"],
            ),
        ];
        for (name, spec, expected) in cases {
            assert_eq!(fields(&spec), expected, "{name}");
        }
    }

    #[test]
    fn messages_name_the_field_and_the_rule() {
        let found = validate_spec(
            &json!({"agentRef": {"name": "a"}, "defaultThreshold": 2, "scenarios": scenarios()}),
        );
        let text = join(&found.errors);
        assert!(text.contains("spec.defaultThreshold"), "{text}");
        assert!(text.contains("between 0 and 1"), "{text}");
    }

    /// Upstream silently ignored the judge settings in dataset mode.
    #[test]
    fn dataset_mode_warns_about_ignored_judge_settings() {
        let found = validate_spec(
            &json!({"agentRef": {"name": "a"}, "llmAsAJudgeModel": "gpt-4o", "defaultThreshold": 0.9, "dataset": {"url": "https://x/d.json"}}),
        );
        assert!(found.errors.is_empty());
        assert_eq!(found.warnings.len(), 1);
        assert!(found.warnings[0].contains("spec.llmAsAJudgeModel"));
        let quiet = validate_spec(
            &json!({"agentRef": {"name": "a"}, "defaultThreshold": 0.9, "dataset": {"url": "https://x/d.json"}}),
        );
        assert!(quiet.warnings.is_empty());
    }
}
