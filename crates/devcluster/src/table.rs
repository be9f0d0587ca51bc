//! `meta.k8s.io/v1` Table rendering for `kubectl get`: CRD `additionalPrinterColumns`
//! (evaluated with a small `JSONPath` subset) and fixed columns for built-in kinds.

use serde_json::{Value, json};

use crate::registry::ResourceDef;
use crate::server::meta_only;
use crate::store::Obj;

/// Evaluates the `JSONPath` subset printer columns use: `.a.b`, `[N]`, `[*]`, and
/// `[?(@.k=="v")]`. Returns every matching value.
pub fn jsonpath(v: &Value, path: &str) -> Vec<Value> {
    let p = path.trim().trim_start_matches('{').trim_end_matches('}');
    let p = p.strip_prefix('$').unwrap_or(p);
    let mut cur = vec![v.clone()];
    let mut rest = p;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            let field = &r[..end];
            rest = &r[end..];
            if field.is_empty() {
                continue;
            }
            cur = cur.iter().filter_map(|x| x.get(field).cloned()).collect();
        } else if let Some(r) = rest.strip_prefix('[') {
            let Some(end) = r.find(']') else {
                return Vec::new();
            };
            let inner = &r[..end];
            rest = &r[end + 1..];
            cur = cur.iter().flat_map(|x| select(x, inner)).collect();
        } else {
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            let field = &rest[..end];
            rest = &rest[end..];
            cur = cur.iter().filter_map(|x| x.get(field).cloned()).collect();
        }
    }
    cur
}

fn select(x: &Value, inner: &str) -> Vec<Value> {
    let Some(arr) = x.as_array() else {
        return Vec::new();
    };
    if inner == "*" {
        return arr.clone();
    }
    if let Ok(i) = inner.parse::<i64>() {
        let len = i64::try_from(arr.len()).unwrap_or(i64::MAX);
        let idx = if i < 0 { len + i } else { i };
        return usize::try_from(idx)
            .ok()
            .and_then(|i| arr.get(i))
            .cloned()
            .into_iter()
            .collect();
    }
    if let Some(f) = inner.strip_prefix("?(").and_then(|s| s.strip_suffix(')')) {
        let (lhs, rhs, neg) = if let Some((l, r)) = f.split_once("!=") {
            (l, r, true)
        } else if let Some((l, r)) = f.split_once("==") {
            (l, r, false)
        } else {
            return Vec::new();
        };
        let lhs = lhs.trim().trim_start_matches('@');
        let want = rhs.trim().trim_matches(|c| c == '"' || c == '\'');
        return arr
            .iter()
            .filter(|item| {
                let got = jsonpath(item, lhs);
                let hit = got.iter().any(|g| match g {
                    Value::String(s) => s == want,
                    other => *other == want,
                });
                hit != neg
            })
            .cloned()
            .collect();
    }
    Vec::new()
}

/// Age in kubectl's short human format (`45s`, `5m10s`, `3h`, `2d4h`).
pub fn human_age(ts: &str) -> String {
    let Ok(t) = ts.parse::<jiff::Timestamp>() else {
        return "<unknown>".into();
    };
    let secs = (jiff::Timestamp::now().as_second() - t.as_second()).max(0);
    let (m, h, d) = (secs / 60, secs / 3600, secs / 86400);
    if secs < 120 {
        format!("{secs}s")
    } else if m < 10 {
        if secs % 60 == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{}s", secs % 60)
        }
    } else if h < 3 {
        format!("{m}m")
    } else if h < 8 {
        format!("{h}h{}m", m % 60)
    } else if h < 48 {
        format!("{h}h")
    } else if d < 8 {
        format!("{d}d{}h", h % 24)
    } else {
        format!("{d}d")
    }
}

fn col(name: &str, ty: &str, format: &str, desc: &str, priority: i64) -> Value {
    json!({"name": name, "type": ty, "format": format, "description": desc, "priority": priority})
}

fn name_col() -> Value {
    col(
        "Name",
        "string",
        "name",
        "Name must be unique within a namespace.",
        0,
    )
}

fn age_col() -> Value {
    col(
        "Age",
        "string",
        "",
        "CreationTimestamp is a timestamp representing the server time when this object was created.",
        0,
    )
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn count(v: &Value) -> usize {
    v.as_object().map_or(0, serde_json::Map::len)
}

type Cells = Box<dyn Fn(&Value) -> Vec<Value>>;

#[allow(clippy::too_many_lines)]
fn builtin_columns(def: &ResourceDef) -> (Vec<Value>, Cells) {
    let age = |v: &Value| {
        json!(human_age(
            v["metadata"]["creationTimestamp"]
                .as_str()
                .unwrap_or_default()
        ))
    };
    let name = |v: &Value| json!(s(&v["metadata"]["name"]));
    match (def.group.as_str(), def.plural.as_str()) {
        ("", "pods") => (
            vec![
                name_col(),
                col(
                    "Ready",
                    "string",
                    "",
                    "The aggregate readiness state of this pod.",
                    0,
                ),
                col(
                    "Status",
                    "string",
                    "",
                    "The aggregate status of the containers in this pod.",
                    0,
                ),
                col(
                    "Restarts",
                    "string",
                    "",
                    "The number of times the containers in this pod have been restarted.",
                    0,
                ),
                age_col(),
            ],
            Box::new(move |v| {
                let total = v["spec"]["containers"].as_array().map_or(0, Vec::len);
                let ready = v["status"]["containerStatuses"].as_array().map_or(0, |a| {
                    a.iter().filter(|c| c["ready"] == json!(true)).count()
                });
                let restarts: i64 = v["status"]["containerStatuses"].as_array().map_or(0, |a| {
                    a.iter().filter_map(|c| c["restartCount"].as_i64()).sum()
                });
                vec![
                    name(v),
                    json!(format!("{ready}/{total}")),
                    json!(s(&v["status"]["phase"])),
                    json!(restarts.to_string()),
                    age(v),
                ]
            }),
        ),
        ("apps", "deployments") => (
            vec![
                name_col(),
                col(
                    "Ready",
                    "string",
                    "",
                    "Number of the pod with ready state",
                    0,
                ),
                col(
                    "Up-to-date",
                    "string",
                    "",
                    "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
                    0,
                ),
                col(
                    "Available",
                    "string",
                    "",
                    "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
                    0,
                ),
                age_col(),
            ],
            Box::new(move |v| {
                let st = &v["status"];
                vec![
                    name(v),
                    json!(format!(
                        "{}/{}",
                        st["readyReplicas"].as_i64().unwrap_or(0),
                        v["spec"]["replicas"].as_i64().unwrap_or(0)
                    )),
                    json!(st["updatedReplicas"].as_i64().unwrap_or(0)),
                    json!(st["availableReplicas"].as_i64().unwrap_or(0)),
                    age(v),
                ]
            }),
        ),
        ("batch", "jobs") => (
            vec![
                name_col(),
                col(
                    "Completions",
                    "string",
                    "",
                    "The desired number of successfully finished pods the job should be run with.",
                    0,
                ),
                age_col(),
            ],
            Box::new(move |v| {
                vec![
                    name(v),
                    json!(format!(
                        "{}/{}",
                        v["status"]["succeeded"].as_i64().unwrap_or(0),
                        v["spec"]["completions"].as_i64().unwrap_or(1)
                    )),
                    age(v),
                ]
            }),
        ),
        ("", "configmaps") => (
            vec![
                name_col(),
                col("Data", "integer", "", "Number of data entries.", 0),
                age_col(),
            ],
            Box::new(move |v| {
                vec![
                    name(v),
                    json!(count(&v["data"]) + count(&v["binaryData"])),
                    age(v),
                ]
            }),
        ),
        ("", "secrets") => (
            vec![
                name_col(),
                col("Type", "string", "", "The type of the secret.", 0),
                col("Data", "integer", "", "Number of data entries.", 0),
                age_col(),
            ],
            Box::new(move |v| {
                vec![
                    name(v),
                    json!(s(&v["type"])),
                    json!(count(&v["data"]) + count(&v["stringData"])),
                    age(v),
                ]
            }),
        ),
        ("", "namespaces") => (
            vec![
                name_col(),
                col("Status", "string", "", "The status of the namespace", 0),
                age_col(),
            ],
            Box::new(move |v| vec![name(v), json!(s(&v["status"]["phase"])), age(v)]),
        ),
        ("", "services") => (
            vec![
                name_col(),
                col("Type", "string", "", "The type of the service.", 0),
                col(
                    "Cluster-IP",
                    "string",
                    "",
                    "The cluster IP of the service.",
                    0,
                ),
                col("Ports", "string", "", "The ports of the service.", 0),
                age_col(),
            ],
            Box::new(move |v| {
                let ports: Vec<String> = v["spec"]["ports"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|p| {
                                format!("{}/{}", p["port"], p["protocol"].as_str().unwrap_or("TCP"))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                vec![
                    name(v),
                    json!(s(&v["spec"]["type"])),
                    json!(s(&v["spec"]["clusterIP"])),
                    json!(if ports.is_empty() {
                        "<none>".to_string()
                    } else {
                        ports.join(",")
                    }),
                    age(v),
                ]
            }),
        ),
        ("" | "events.k8s.io", "events") => (
            vec![
                col(
                    "Last Seen",
                    "string",
                    "",
                    "Time since the event was last seen.",
                    0,
                ),
                col("Type", "string", "", "The type of the event.", 0),
                col("Reason", "string", "", "Why the event happened.", 0),
                col("Object", "string", "", "The object the event is about.", 0),
                col("Message", "string", "", "A human-readable description.", 0),
            ],
            Box::new(move |v| {
                let seen = [
                    &v["lastTimestamp"],
                    &v["series"]["lastObservedTime"],
                    &v["eventTime"],
                    &v["metadata"]["creationTimestamp"],
                ]
                .into_iter()
                .find_map(|t| t.as_str().filter(|s| !s.is_empty()))
                .unwrap_or_default();
                let about = if v["regarding"].is_object() {
                    &v["regarding"]
                } else {
                    &v["involvedObject"]
                };
                let message = if v["note"].is_string() {
                    &v["note"]
                } else {
                    &v["message"]
                };
                vec![
                    json!(human_age(seen)),
                    json!(s(&v["type"])),
                    json!(s(&v["reason"])),
                    json!(format!(
                        "{}/{}",
                        s(&about["kind"]).to_lowercase(),
                        s(&about["name"])
                    )),
                    json!(s(message)),
                ]
            }),
        ),
        ("apiextensions.k8s.io", "customresourcedefinitions") => (
            vec![name_col(), col("Created At", "date", "", "", 0)],
            Box::new(move |v| vec![name(v), json!(s(&v["metadata"]["creationTimestamp"]))]),
        ),
        _ => (
            vec![name_col(), age_col()],
            Box::new(move |v| vec![name(v), age(v)]),
        ),
    }
}

fn crd_columns(def: &ResourceDef, printer: &[Value]) -> (Vec<Value>, Cells) {
    let _ = def;
    let mut cols = vec![name_col()];
    for c in printer {
        cols.push(col(
            c["name"].as_str().unwrap_or_default(),
            c["type"].as_str().unwrap_or("string"),
            c["format"].as_str().unwrap_or_default(),
            c["description"].as_str().unwrap_or_default(),
            c["priority"].as_i64().unwrap_or(0),
        ));
    }
    let printer = printer.to_vec();
    (
        cols,
        Box::new(move |v| {
            let mut cells = vec![json!(s(&v["metadata"]["name"]))];
            for c in &printer {
                let found = jsonpath(v, c["jsonPath"].as_str().unwrap_or_default());
                let ty = c["type"].as_str().unwrap_or("string");
                let cell = match (ty, found.as_slice()) {
                    (_, []) => Value::Null,
                    ("date", [one, ..]) => json!(human_age(one.as_str().unwrap_or_default())),
                    ("integer" | "number" | "boolean", [one]) => one.clone(),
                    (_, many) => json!(many.iter().map(s).collect::<Vec<_>>().join(",")),
                };
                cells.push(cell);
            }
            cells
        }),
    )
}

/// A Table of `objs`; `include` is `None`, `Metadata` or `Object` (the row object form).
pub fn table(def: &ResourceDef, objs: &[&Obj], rv: Option<u64>, include: &str) -> Value {
    let (cols, cells) = match def.crd.as_ref() {
        Some(c) if !c.printer_columns.is_empty() => crd_columns(def, &c.printer_columns),
        _ => builtin_columns(def),
    };
    let rows: Vec<Value> = objs
        .iter()
        .map(|o| {
            let mut r = json!({"cells": cells(&o.value)});
            match include {
                "None" => {}
                "Object" => r["object"] = o.value.clone(),
                _ => r["object"] = meta_only(&o.value),
            }
            r
        })
        .collect();
    let mut meta = json!({});
    if let Some(rv) = rv {
        meta["resourceVersion"] = json!(rv.to_string());
    }
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": meta,
        "columnDefinitions": cols,
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonpath_subset() {
        let v = json!({"spec": {"items": [{"n": "a"}, {"n": "b"}]}, "status": {"conditions": [
            {"type": "Ready", "status": "True"}, {"type": "Other", "status": "False"}]}});
        assert_eq!(
            jsonpath(&v, ".spec.items[*].n"),
            vec![json!("a"), json!("b")]
        );
        assert_eq!(jsonpath(&v, ".spec.items[1].n"), vec![json!("b")]);
        assert_eq!(
            jsonpath(&v, ".status.conditions[?(@.type==\"Ready\")].status"),
            vec![json!("True")]
        );
        assert!(jsonpath(&v, ".spec.missing").is_empty());
    }

    #[test]
    fn event_columns() {
        let def = crate::registry::builtin_resources()
            .into_iter()
            .find(|d| d.group == "events.k8s.io")
            .unwrap();
        let o = crate::store::Obj::new(
            json!({"metadata": {"name": "e", "creationTimestamp": "2020-01-01T00:00:00Z"},
                   "type": "Normal", "reason": "Created", "note": "made it",
                   "regarding": {"kind": "Widget", "name": "w"}}),
            1,
        );
        let t = table(&def, &[&o], None, "None");
        assert_eq!(t["columnDefinitions"].as_array().unwrap().len(), 5);
        let cells = &t["rows"][0]["cells"];
        assert_eq!(cells[1], "Normal");
        assert_eq!(cells[3], "widget/w");
        assert_eq!(cells[4], "made it");
    }

    #[test]
    fn ages() {
        let t = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(90);
        assert_eq!(human_age(&t.to_string()), "90s");
    }
}
