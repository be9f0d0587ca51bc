//! Progress of the examples: what each tracked object is expected to settle in, its current
//! row (kind, namespace, name, phase, conditions), and the table printed on the terminal.

use std::{
    fmt::Write as _,
    io::Write,
    sync::atomic::{AtomicBool, Ordering},
};

use kube::{
    Api, Client, ResourceExt,
    api::{DynamicObject, Patch, PatchParams},
    discovery::ApiResource,
};
use serde_json::{Value, json};

/// The state an example object is expected to settle in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expectation {
    /// `status.phase` equals this value.
    Phase(&'static str),
    /// An `AgenticSession` that is stopped by dev mode once it runs; settles `Stopped`.
    StoppedOnceRunning,
    /// The `Ready` condition is `True`.
    Ready,
}

impl Expectation {
    /// A short description ("phase Completed", "Ready=True").
    pub fn label(self) -> String {
        match self {
            Self::Phase(p) => format!("phase {p}"),
            Self::StoppedOnceRunning => "phase Stopped".into(),
            Self::Ready => "Ready=True".into(),
        }
    }
}

/// Whether `object` is an interactive `AgenticSession` (`spec.timeout: 0`), which dev mode
/// stops once its runner runs.
pub fn stops_when_running(object: &Value) -> bool {
    object["kind"] == "AgenticSession" && object["spec"]["timeout"].as_i64() == Some(0)
}

/// The expected settled state of an applied object, `None` for objects that are not followed.
pub fn expectation(object: &Value) -> Option<Expectation> {
    let api_version = object["apiVersion"].as_str().unwrap_or_default();
    let group = api_version.split_once('/').map_or("", |(g, _)| g);
    match (group, object["kind"].as_str().unwrap_or_default()) {
        (agentic_api::sessions::GROUP, "AgenticSession") => Some(if stops_when_running(object) {
            Expectation::StoppedOnceRunning
        } else {
            Expectation::Phase("Completed")
        }),
        (agentic_api::evaluations::GROUP, "Experiment") => Some(Expectation::Ready),
        (agentic_api::labs::GROUP, "Experiment") => Some(Expectation::Phase("Complete")),
        _ => None,
    }
}

/// An applied object whose progress is followed.
#[derive(Debug)]
pub struct Tracked {
    /// Its resource.
    pub resource: ApiResource,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// What it should settle in.
    pub expect: Expectation,
    stop_sent: AtomicBool,
}

/// One line of the progress table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Family of the object (`sessions`, `evaluations`, `labs`): two families have an
    /// `Experiment`.
    pub family: String,
    /// Kind of the object.
    pub kind: String,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// `status.phase`, or `-`.
    pub phase: String,
    /// `Type=Status` of each condition, comma-separated.
    pub conditions: String,
    /// Whether it reached its expected state.
    pub settled: bool,
    /// Whether it reached a final state other than the expected one.
    pub failed: bool,
    /// The expected state.
    pub expected: String,
}

impl Row {
    /// `kind namespace/name: phase (conditions)`.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "{} {} {}/{}: phase {}",
            self.family, self.kind, self.namespace, self.name, self.phase
        );
        if !self.conditions.is_empty() {
            let _ = write!(s, " ({})", self.conditions);
        }
        if !self.settled {
            let _ = write!(s, ", expected {}", self.expected);
        }
        s
    }
}

/// The family an API group belongs to.
pub fn family_of(group: &str) -> &'static str {
    match group {
        agentic_api::sessions::GROUP => "sessions",
        agentic_api::evaluations::GROUP => "evaluations",
        agentic_api::labs::GROUP => "labs",
        _ => "-",
    }
}

fn condition_status<'a>(object: &'a Value, type_: &str) -> Option<&'a str> {
    object["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)?["status"]
        .as_str()
}

impl Tracked {
    /// Follows `stored` when it is one of the kinds with an expected settled state.
    pub fn for_object(resource: &ApiResource, stored: &DynamicObject) -> Option<Self> {
        let value = serde_json::to_value(stored).ok()?;
        let mut with_type = value;
        with_type["apiVersion"] = json!(resource.api_version);
        with_type["kind"] = json!(resource.kind);
        let expect = expectation(&with_type)?;
        Some(Self {
            resource: resource.clone(),
            namespace: stored.namespace().unwrap_or_default(),
            name: stored.name_any(),
            expect,
            stop_sent: AtomicBool::new(false),
        })
    }

    /// Reads the object and returns its row; asks an interactive session to stop once it runs.
    pub async fn observe(&self, client: &Client) -> Row {
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), &self.namespace, &self.resource);
        let object = match api.get_opt(&self.name).await {
            Ok(Some(o)) => serde_json::to_value(&o).unwrap_or(Value::Null),
            Ok(None) => json!({"status": {"phase": "(deleted)"}}),
            Err(e) => json!({"status": {"phase": format!("(error: {e})")}}),
        };
        let phase = object["status"]["phase"].as_str().unwrap_or("-").to_owned();
        let conditions = object["status"]["conditions"]
            .as_array()
            .map(|cs| {
                cs.iter()
                    .map(|c| {
                        format!(
                            "{}={}",
                            c["type"].as_str().unwrap_or("?"),
                            c["status"].as_str().unwrap_or("?")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default();
        let (settled, failed) = match self.expect {
            Expectation::Phase(p) => (
                phase == p,
                phase == "Failed" || (phase == "Stopped" && p != "Stopped"),
            ),
            Expectation::StoppedOnceRunning => {
                if phase == "Running" && !self.stop_sent.load(Ordering::SeqCst) {
                    let patch = json!({"metadata": {"annotations": {
                        agentic_api::sessions::ANNOTATION_DESIRED_PHASE: "Stopped"
                    }}});
                    if api
                        .patch(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await
                        .is_ok()
                    {
                        self.stop_sent.store(true, Ordering::SeqCst);
                    }
                }
                (
                    phase == "Stopped",
                    phase == "Failed" || phase == "Completed",
                )
            }
            Expectation::Ready => (condition_status(&object, "Ready") == Some("True"), false),
        };
        Row {
            family: family_of(&self.resource.group).to_owned(),
            kind: self.resource.kind.clone(),
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            phase,
            conditions,
            settled,
            failed,
            expected: self.expect.label(),
        }
    }
}

/// Renders rows as an aligned table.
pub fn table(rows: &[Row]) -> Vec<String> {
    const COLUMNS: usize = 6;
    let header = ["FAMILY", "KIND", "NAMESPACE", "NAME", "PHASE", "CONDITIONS"];
    let cells: Vec<[String; COLUMNS]> = rows
        .iter()
        .map(|r| {
            [
                r.family.clone(),
                r.kind.clone(),
                r.namespace.clone(),
                r.name.clone(),
                if r.settled {
                    format!("{} \u{2713}", r.phase)
                } else {
                    r.phase.clone()
                },
                r.conditions.clone(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cols: [&str; COLUMNS]| {
        let mut s = String::new();
        for (c, w) in cols.iter().zip(widths) {
            s.push_str(c);
            s.push_str(&" ".repeat(w - c.chars().count() + 2));
        }
        s.trim_end().to_owned()
    };
    let mut out = vec![line(header)];
    for row in &cells {
        out.push(line([&row[0], &row[1], &row[2], &row[3], &row[4], &row[5]]));
    }
    out
}

/// Shows progress: on a terminal, the screen is cleared and redrawn (the preamble, then the
/// table), which stays correct when long lines wrap; otherwise one line per change.
#[derive(Debug)]
pub struct Display {
    terminal: bool,
    preamble: Vec<String>,
    last: Vec<Row>,
}

impl Display {
    /// A display for a terminal (`true`) or a pipe/file; `preamble` is printed above the
    /// table on every redraw.
    pub fn new(terminal: bool, preamble: Vec<String>) -> Self {
        Self {
            terminal,
            preamble,
            last: Vec::new(),
        }
    }

    /// Shows `rows` if anything changed.
    pub fn show(&mut self, rows: &[Row]) {
        if rows == self.last.as_slice() {
            return;
        }
        let mut out = std::io::stdout().lock();
        if self.terminal {
            // Cursor home, clear the screen.
            let _ = write!(out, "\x1b[H\x1b[2J");
            for line in self.preamble.iter().chain(table(rows).iter()) {
                let _ = writeln!(out, "{line}");
            }
        } else {
            for row in rows {
                if !self.last.contains(row) {
                    let _ = writeln!(out, "{}", row.describe());
                }
            }
        }
        let _ = out.flush();
        self.last = rows.to_vec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, phase: &str, settled: bool) -> Row {
        Row {
            family: "sessions".into(),
            kind: "AgenticSession".into(),
            namespace: "team-a".into(),
            name: name.into(),
            phase: phase.into(),
            conditions: "Ready=True".into(),
            settled,
            failed: false,
            expected: "phase Completed".into(),
        }
    }

    #[test]
    fn table_aligns_columns() {
        let lines = table(&[
            row("a", "Running", false),
            row("longer-name", "Completed", true),
        ]);
        assert_eq!(lines.len(), 3);
        let col = lines[0].find("PHASE").unwrap();
        assert_eq!(lines[1].find("Running").unwrap(), col);
        assert_eq!(lines[2].find("Completed ✓").unwrap(), col);
    }

    #[test]
    fn expectations_of_each_family() {
        let session = |timeout: i64| {
            json!({"apiVersion": "vteam.ambient-code/v1alpha1", "kind": "AgenticSession",
                   "spec": {"timeout": timeout}})
        };
        assert_eq!(
            expectation(&session(600)),
            Some(Expectation::Phase("Completed"))
        );
        assert_eq!(
            expectation(&session(0)),
            Some(Expectation::StoppedOnceRunning)
        );
        assert_eq!(
            expectation(
                &json!({"apiVersion": "testbench.agentic-layer.ai/v1alpha1", "kind": "Experiment"})
            ),
            Some(Expectation::Ready)
        );
        assert_eq!(
            expectation(
                &json!({"apiVersion": "experiments.illm.io/v1alpha1", "kind": "Experiment"})
            ),
            Some(Expectation::Phase("Complete"))
        );
        assert_eq!(
            expectation(&json!({"apiVersion": "v1", "kind": "Namespace"})),
            None
        );
    }
}
