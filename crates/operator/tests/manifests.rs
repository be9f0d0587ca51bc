//! Checks of the install manifests: every kustomization under `config/` builds,
//! `dist/install.yaml` matches `kubectl kustomize config/default`, the rendered Deployment has
//! the required security settings, resources, probes and webhook wiring, the samples match
//! `examples/`, and the Grafana dashboard only queries documented metrics.
//!
//! Needs `kubectl` (with its built-in kustomize) on `PATH`, or its path in `KUBECTL`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const REGENERATE: &str = "kubectl kustomize config/default > dist/install.yaml";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(rel: &str) -> String {
    let path = root().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Runs `kubectl kustomize DIR` (DIR relative to the repository root) and returns its output.
fn kustomize(dir: &str) -> String {
    let kubectl = std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".to_owned());
    let output = match Command::new(&kubectl)
        .arg("kustomize")
        .arg(dir)
        .current_dir(root())
        .output()
    {
        Ok(output) => output,
        Err(e) => panic!(
            "cannot run `{kubectl} kustomize {dir}` ({e}): these tests need kubectl (v1.27 or \
             newer, with built-in kustomize v5) on PATH, or its path in the KUBECTL variable"
        ),
    };
    assert!(
        output.status.success(),
        "`kubectl kustomize {dir}` failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("kustomize output is UTF-8")
}

fn documents(yaml: &str) -> Vec<Value> {
    let mut docs = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(yaml) {
        let value: Value = serde::Deserialize::deserialize(doc).expect("valid YAML document");
        if !value.is_null() {
            docs.push(value);
        }
    }
    docs
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in the rendered manifests"))
}

fn rendered_default() -> Vec<Value> {
    documents(&kustomize("config/default"))
}

fn manager_container(deployment: &Value) -> &Value {
    deployment["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers")
        .iter()
        .find(|c| c["name"] == "manager")
        .expect("a container named manager")
}

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// Every directory under `config/` that holds a `kustomization.yaml`.
fn kustomization_dirs(dir: &Path, out: &mut Vec<String>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("readable directory")
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            kustomization_dirs(&path, out);
        } else if path.file_name().is_some_and(|n| n == "kustomization.yaml") {
            let rel = path
                .parent()
                .expect("parent")
                .strip_prefix(root())
                .expect("under the repository")
                .to_string_lossy()
                .into_owned();
            out.push(rel);
        }
    }
}

#[test]
fn every_kustomization_under_config_builds() {
    let mut dirs = Vec::new();
    kustomization_dirs(&root().join("config"), &mut dirs);
    for expected in [
        "config/crd",
        "config/rbac",
        "config/manager",
        "config/webhook",
        "config/prometheus",
        "config/samples",
        "config/default",
    ] {
        assert!(
            dirs.iter().any(|d| d == expected),
            "{expected}/kustomization.yaml is missing"
        );
    }
    for dir in &dirs {
        let docs = documents(&kustomize(dir));
        assert!(!docs.is_empty(), "{dir} renders no objects");
    }
}

#[test]
fn dist_install_yaml_is_current() {
    let rendered = kustomize("config/default");
    let checked_in = std::fs::read_to_string(root().join("dist/install.yaml")).unwrap_or_default();
    assert!(
        rendered == checked_in,
        "dist/install.yaml is stale or missing; regenerate it with `{REGENERATE}`"
    );
}

#[test]
fn crd_kustomization_lists_every_generated_base() {
    let mut bases: BTreeSet<String> = std::fs::read_dir(root().join("config/crd/bases"))
        .expect("config/crd/bases")
        .map(|e| format!("bases/{}", e.expect("entry").file_name().to_string_lossy()))
        .filter(|n| is_yaml(n))
        .collect();
    let kustomization: Value =
        serde_yaml::from_str(&read("config/crd/kustomization.yaml")).expect("kustomization");
    let listed: BTreeSet<String> = strings(&kustomization["resources"])
        .into_iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        listed,
        std::mem::take(&mut bases),
        "config/crd/kustomization.yaml resources"
    );

    let docs = rendered_default();
    let crds = docs
        .iter()
        .filter(|d| d["kind"] == "CustomResourceDefinition")
        .count();
    assert_eq!(crds, listed.len(), "every CRD reaches the install");
}

#[test]
fn deployment_is_locked_down_and_sized() {
    let docs = rendered_default();
    let deployment = find(&docs, "Deployment", "agentic-operator");
    assert_eq!(deployment["metadata"]["namespace"], "ambient-code");
    let spec = &deployment["spec"];
    assert_eq!(spec["replicas"], 2, "two replicas for high availability");
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "agentic-operator");
    let sa = find(&docs, "ServiceAccount", "agentic-operator");
    assert_eq!(sa["metadata"]["namespace"], "ambient-code");
    assert!(
        pod["terminationGracePeriodSeconds"]
            .as_i64()
            .expect("grace period")
            >= 35,
        "shutdown needs 30 s for in-flight reconciles plus the Lease release"
    );
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );

    let spread = pod["topologySpreadConstraints"]
        .as_array()
        .expect("topology spread");
    assert!(
        spread
            .iter()
            .any(|c| c["topologyKey"] == "kubernetes.io/hostname"
                && c["labelSelector"]["matchLabels"]["app.kubernetes.io/name"]
                    == "agentic-operator"),
        "replicas spread over nodes"
    );

    let c = manager_container(deployment);
    let sc = &c["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["runAsUser"], 65532);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(strings(&sc["capabilities"]["drop"]), ["ALL"]);
    assert!(
        sc["capabilities"]["add"].is_null(),
        "no capability is added"
    );
    assert_ne!(sc["privileged"], true);
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");

    let res = &c["resources"];
    assert_eq!(res["requests"]["cpu"], "10m");
    assert_eq!(res["requests"]["memory"], "64Mi");
    assert_eq!(res["limits"]["cpu"], "500m");
    assert_eq!(res["limits"]["memory"], "128Mi");

    let args = strings(&c["args"]);
    for arg in [
        "--leader-elect",
        "--metrics-bind-address=:8080",
        "--health-probe-bind-address=:8081",
    ] {
        assert!(args.contains(&arg), "args {args:?} lack {arg}");
    }

    let ports = c["ports"].as_array().expect("ports");
    let port = |name: &str| {
        ports
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no container port {name}"))["containerPort"]
            .clone()
    };
    assert_eq!(port("metrics"), 8080);
    assert_eq!(port("health"), 8081);
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        let get = &c[probe]["httpGet"];
        assert_eq!(get["path"], path, "{probe}");
        assert!(
            get["port"] == "health" || get["port"] == 8081,
            "{probe} uses the health port"
        );
    }

    let env = c["env"].as_array().expect("env");
    for (name, field) in [
        ("POD_NAME", "metadata.name"),
        ("NAMESPACE", "metadata.namespace"),
    ] {
        let var = env
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no {name}"));
        assert_eq!(var["valueFrom"]["fieldRef"]["fieldPath"], field, "{name}");
    }
}

#[test]
fn metrics_service_and_monitor_reach_the_pods() {
    let docs = rendered_default();
    let deployment = find(&docs, "Deployment", "agentic-operator");
    let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
    let service = find(&docs, "Service", "agentic-operator-metrics");
    let selector = service["spec"]["selector"].as_object().expect("selector");
    assert!(!selector.is_empty());
    for (key, value) in selector {
        assert_eq!(&pod_labels[key], value, "metrics Service selector {key}");
    }
    let port = &service["spec"]["ports"][0];
    assert_eq!(port["name"], "metrics");
    assert_eq!(port["targetPort"], "metrics");

    let monitor_docs = documents(&kustomize("config/prometheus"));
    let monitor = find(&monitor_docs, "ServiceMonitor", "agentic-operator-metrics");
    let wanted = monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .expect("matchLabels");
    for (key, value) in wanted {
        assert_eq!(
            &service["metadata"]["labels"][key], value,
            "ServiceMonitor selects {key}"
        );
    }
    // Only the metrics Service matches, not the webhook Service.
    let matching = docs
        .iter()
        .filter(|d| d["kind"] == "Service")
        .filter(|s| wanted.iter().all(|(k, v)| &s["metadata"]["labels"][k] == v))
        .count();
    assert_eq!(
        matching, 1,
        "the ServiceMonitor selects exactly the metrics Service"
    );
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "metrics");
    // The sessions metrics' own `namespace` label (the session's) must survive the scrape.
    assert_eq!(monitor["spec"]["endpoints"][0]["honorLabels"], true);
    assert_eq!(
        strings(&monitor["spec"]["namespaceSelector"]["matchNames"]),
        ["ambient-code"]
    );
}

#[test]
fn deployment_carries_everything_the_webhook_patch_declares() {
    let docs = rendered_default();
    let deployment = find(&docs, "Deployment", "agentic-operator");
    let c = manager_container(deployment);
    let patch: Value =
        serde_yaml::from_str(&read("config/webhook/manager_webhook_patch.yaml")).expect("patch");
    let patch_pod = &patch["spec"]["template"]["spec"];
    let patch_c = &patch_pod["containers"][0];
    assert_eq!(
        patch_c["name"], "manager",
        "the patch targets the manager container"
    );

    let args = strings(&c["args"]);
    for arg in strings(&patch_c["args"]) {
        assert!(args.contains(&arg), "rendered args {args:?} lack {arg}");
    }
    let contains_all = |have: &Value, want: &Value, what: &str| {
        let have = have.as_array().unwrap_or_else(|| panic!("rendered {what}"));
        for item in want.as_array().unwrap_or_else(|| panic!("patch {what}")) {
            assert!(have.contains(item), "rendered {what} lack {item}");
        }
    };
    contains_all(&c["ports"], &patch_c["ports"], "ports");
    contains_all(&c["volumeMounts"], &patch_c["volumeMounts"], "volumeMounts");
    contains_all(
        &deployment["spec"]["template"]["spec"]["volumes"],
        &patch_pod["volumes"],
        "volumes",
    );

    // The webhook Service routes to these pods.
    let service = find(&docs, "Service", "agentic-operator-webhook");
    let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
    for (key, value) in service["spec"]["selector"].as_object().expect("selector") {
        assert_eq!(&pod_labels[key], value, "webhook Service selector {key}");
    }
}

#[test]
fn namespaced_objects_share_the_operator_namespace() {
    let docs = rendered_default();
    let namespaces: Vec<_> = docs.iter().filter(|d| d["kind"] == "Namespace").collect();
    assert_eq!(namespaces.len(), 1);
    assert_eq!(namespaces[0]["metadata"]["name"], "ambient-code");
    let cluster_scoped = [
        "Namespace",
        "CustomResourceDefinition",
        "ClusterRole",
        "ClusterRoleBinding",
        "ValidatingWebhookConfiguration",
    ];
    for doc in &docs {
        let kind = doc["kind"].as_str().expect("kind");
        if !cluster_scoped.contains(&kind) {
            assert_eq!(
                doc["metadata"]["namespace"], "ambient-code",
                "{kind} {} namespace",
                doc["metadata"]["name"]
            );
        }
    }
}

fn is_yaml(name: &str) -> bool {
    Path::new(name)
        .extension()
        .is_some_and(|ext| ext.eq_ignore_ascii_case("yaml"))
}

/// Every `*.yaml` under `dir`, relative to it, sorted.
fn yaml_files(dir: &Path, prefix: &str, out: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).expect("readable directory") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let rel = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}/{name}")
        };
        if path.is_dir() {
            yaml_files(&path, &rel, out);
        } else if is_yaml(&name) {
            out.insert(rel);
        }
    }
}

#[test]
fn samples_are_copies_of_the_examples() {
    let fix = "regenerate them with `sh config/samples/sync.sh`";
    let mut examples = BTreeSet::new();
    yaml_files(&root().join("examples"), "", &mut examples);
    assert!(!examples.is_empty(), "examples/ holds YAML files");
    let mut samples = BTreeSet::new();
    yaml_files(&root().join("config/samples"), "", &mut samples);
    samples.remove("kustomization.yaml");
    assert_eq!(
        samples, examples,
        "config/samples does not mirror examples/; {fix}"
    );
    for file in &examples {
        assert!(
            read(&format!("examples/{file}")) == read(&format!("config/samples/{file}")),
            "config/samples/{file} differs from examples/{file}; {fix}"
        );
    }
    let kustomization: Value =
        serde_yaml::from_str(&read("config/samples/kustomization.yaml")).expect("kustomization");
    let listed: BTreeSet<String> = strings(&kustomization["resources"])
        .into_iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        listed, examples,
        "config/samples/kustomization.yaml resources; {fix}"
    );
}

#[test]
fn dockerfile_builds_a_nonroot_static_image() {
    let dockerfile = read("Dockerfile");
    let lines: Vec<&str> = dockerfile.lines().map(str::trim).collect();
    let froms = lines.iter().filter(|l| l.starts_with("FROM ")).count();
    assert!(froms >= 2, "multi-stage build");
    assert!(
        lines.iter().any(|l| l.starts_with("FROM rust:")),
        "builds in the official Rust image"
    );
    let last_from = lines
        .iter()
        .rev()
        .find(|l| l.starts_with("FROM "))
        .expect("FROM");
    assert!(
        last_from.contains("distroless") && last_from.contains("nonroot"),
        "{last_from}"
    );
    assert!(
        lines
            .iter()
            .any(|l| *l == "USER 65532:65532" || *l == "USER 65532")
    );
    assert!(lines.contains(&r#"ENTRYPOINT ["/agentic-operator"]"#));
    // The ambient-code backend's scheduled-session CronJobs run `./operator session-trigger`
    // with the operator image and no working directory of their own: the final stage must
    // work in /app and ship /app/operator (a link to the binary, copied with the tree).
    let final_stage = &lines[lines
        .iter()
        .rposition(|l| l.starts_with("FROM "))
        .expect("FROM")..];
    assert!(final_stage.contains(&"WORKDIR /app"), "{final_stage:?}");
    assert!(
        final_stage.contains(&"COPY --from=build /out/ /"),
        "{final_stage:?}"
    );
    assert!(
        dockerfile.contains("ln -s /agentic-operator /out/app/operator"),
        "/app/operator links to the binary"
    );
    assert!(dockerfile.contains("--locked"), "builds from Cargo.lock");

    // A default feature set (for local development) must stay out of the image.
    let cargo: toml_like::Features = toml_like::features(&read("crates/operator/Cargo.toml"));
    if cargo.has_default {
        assert!(
            dockerfile.contains("--no-default-features"),
            "the image leaves out default features"
        );
    }
    assert!(
        read(".dockerignore").lines().any(|l| l.trim() == "target/"),
        ".dockerignore target/"
    );
}

/// Just enough of Cargo.toml to see whether a `[features]` table declares `default`.
mod toml_like {
    pub struct Features {
        pub has_default: bool,
    }

    pub fn features(text: &str) -> Features {
        let mut in_features = false;
        let mut has_default = false;
        for line in text.lines().map(str::trim) {
            if line.starts_with('[') {
                in_features = line == "[features]";
            } else if in_features
                && line
                    .split('=')
                    .next()
                    .is_some_and(|k| k.trim() == "default")
            {
                has_default = true;
            }
        }
        Features { has_default }
    }
}

/// Metric names a `PromQL` expression reads (label names, functions, keywords and Grafana
/// variables left out; `_bucket`, `_sum` and `_count` series map to their histogram).
fn promql_metrics(expr: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut out = BTreeSet::new();
    let mut i = 0;
    // Nesting of `{...}` (label matchers) and `[...]` (ranges): no metric names inside.
    let mut nesting = 0_i32;
    let mut after_grouping = false;
    while i < chars.len() {
        let ch = chars[i];
        match ch {
            '"' | '\'' | '`' => i = skip_quoted(&chars, i),
            '{' | '[' => {
                nesting += 1;
                i += 1;
            }
            '}' | ']' => {
                nesting -= 1;
                i += 1;
            }
            '$' => i = word_end(&chars, i + 1),
            '(' if after_grouping => {
                // The label list of by/without/on/ignoring/group_*.
                while i < chars.len() && chars[i] != ')' {
                    i += 1;
                }
                i += 1;
                after_grouping = false;
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let end = word_end(&chars, i);
                let word: String = chars[i..end].iter().collect();
                let is_call = chars[end..].iter().find(|c| !c.is_whitespace()) == Some(&'(');
                match word_kind(&word) {
                    WordKind::Grouping => after_grouping = true,
                    WordKind::Name if nesting == 0 && !is_call => {
                        let base = ["_bucket", "_sum", "_count"]
                            .iter()
                            .find_map(|s| word.strip_suffix(s))
                            .unwrap_or(&word);
                        out.insert(base.to_owned());
                    }
                    WordKind::Other | WordKind::Name => {}
                }
                i = end;
            }
            c if c.is_ascii_digit() => {
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    out
}

/// What a bare word in `PromQL` is.
enum WordKind {
    /// `by`, `without`, `on`, `ignoring`, `group_left`, `group_right`: a label list follows.
    Grouping,
    /// Aggregations, binary keywords and `offset`.
    Other,
    /// A metric name, unless it turns out to be a function call.
    Name,
}

fn word_kind(word: &str) -> WordKind {
    const GROUPING: [&str; 6] = [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    const OTHER: [&str; 18] = [
        "sum",
        "min",
        "max",
        "avg",
        "count",
        "stddev",
        "stdvar",
        "topk",
        "bottomk",
        "quantile",
        "count_values",
        "group",
        "limitk",
        "and",
        "or",
        "unless",
        "bool",
        "offset",
    ];
    if GROUPING.contains(&word) {
        WordKind::Grouping
    } else if OTHER.contains(&word) {
        WordKind::Other
    } else {
        WordKind::Name
    }
}

/// Index just past the identifier starting at `i`.
fn word_end(chars: &[char], mut i: usize) -> usize {
    while i < chars.len()
        && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
    {
        i += 1;
    }
    i
}

/// Index just past the string literal whose opening quote is at `i`.
fn skip_quoted(chars: &[char], mut i: usize) -> usize {
    let quote = chars[i];
    i += 1;
    while i < chars.len() && chars[i] != quote {
        if chars[i] == '\\' {
            i += 1;
        }
        i += 1;
    }
    i + 1
}

fn collect_exprs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                if key == "expr" {
                    if let Some(s) = v.as_str() {
                        out.push(s.to_owned());
                    }
                } else {
                    collect_exprs(v, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}

#[test]
fn promql_metric_extraction() {
    let got = promql_metrics(
        r#"histogram_quantile(0.95, sum by (le, controller) (rate(controller_runtime_reconcile_time_seconds_bucket{controller=~"$controller"}[$__rate_interval]))) / on (x) group_left (y) leader_election_master_status"#,
    );
    let want: BTreeSet<String> = [
        "controller_runtime_reconcile_time_seconds",
        "leader_election_master_status",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert_eq!(got, want);
}

#[test]
fn grafana_dashboard_queries_only_documented_metrics() {
    let dashboard: Value = serde_json::from_str(&read("docs/grafana/agentic-operator.json"))
        .expect("docs/grafana/agentic-operator.json is valid JSON");
    assert!(dashboard["title"].is_string(), "dashboard title");
    assert!(
        dashboard["panels"]
            .as_array()
            .is_some_and(|p| !p.is_empty()),
        "dashboard panels"
    );
    let mut exprs = Vec::new();
    collect_exprs(&dashboard, &mut exprs);
    assert!(
        exprs.len() >= 6,
        "the dashboard queries the operator ({} queries)",
        exprs.len()
    );

    let doc = read("docs/metrics.md");
    let documented = |name: &str| doc.contains(&format!("`{name}`"));
    let mut queried = BTreeSet::new();
    for expr in &exprs {
        queried.extend(promql_metrics(expr));
    }
    assert!(!queried.is_empty());
    let missing: Vec<_> = queried.iter().filter(|m| !documented(m)).collect();
    assert!(
        missing.is_empty(),
        "queried by the dashboard but not in docs/metrics.md: {missing:?}"
    );
    // Every selector, in the panels and in the variables' `label_values`, is limited to the
    // chosen `$job`: another controller-runtime operator scraped by the same Prometheus
    // exports the same `controller_runtime_*` names.
    let variables: Vec<String> = dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["name"] != "job")
        .filter_map(|v| v["query"]["query"].as_str().map(str::to_owned))
        .collect();
    assert!(
        dashboard["templating"]["list"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["name"] == "job"),
        "a $job variable listing the operator's jobs"
    );
    for expr in exprs.iter().chain(&variables) {
        let mut checked = 0;
        let mut rest = expr.as_str();
        while let Some(at) = rest.find(|c: char| c.is_ascii_lowercase()) {
            let word_len = rest[at..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len() - at);
            let (word, after) = (&rest[at..at + word_len], &rest[at + word_len..]);
            if METRIC_PREFIXES.iter().any(|p| word.starts_with(p)) {
                assert!(
                    after.starts_with("{job=~\"$job\""),
                    "{word} without job=~\"$job\" in {expr}"
                );
                checked += 1;
            }
            rest = after;
        }
        assert!(
            checked > 0 || !expr.contains('('),
            "no operator metric found in {expr}"
        );
    }
}

/// How the operator's metric names begin.
const METRIC_PREFIXES: [&str; 7] = [
    "controller_runtime_",
    "workqueue_",
    "leader_election_",
    "process_",
    "ambient_",
    "evaluations_",
    "labs_",
];

/// Every string literal in the operator's sources that looks like one of its metric names.
fn registered_metric_names(dir: &Path, out: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).expect("readable directory") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            registered_metric_names(&path, out);
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("source file");
        for literal in text.split('"').skip(1).step_by(2) {
            let plausible = literal
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if plausible && METRIC_PREFIXES.iter().any(|p| literal.starts_with(p)) {
                out.insert(literal.to_owned());
            }
        }
    }
}

#[test]
fn metrics_doc_lists_every_registered_metric() {
    let mut names = BTreeSet::new();
    registered_metric_names(&root().join("crates/operator/src"), &mut names);
    for expected in [
        "controller_runtime_reconcile",
        "workqueue_depth",
        "process_open_fds",
    ] {
        assert!(names.contains(expected), "the scan finds {expected}");
    }
    let doc = read("docs/metrics.md");
    let missing: Vec<_> = names
        .iter()
        .filter(|n| {
            !doc.contains(&format!("| `{n}` |")) && !doc.contains(&format!("| `{n}_total` |"))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "metrics registered in crates/operator/src but missing from the tables in docs/metrics.md: {missing:?}"
    );
}
