//! Result files and console tables: the common envelope of a result file, target checks,
//! a plain-text table renderer, and writing JSON to disk.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::BenchError;
use crate::machine::{LoadAverage, MachineFacts};

/// Whether larger or smaller values are better for a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Better {
    /// The value must be at least the target.
    Higher,
    /// The value must be below the target.
    Lower,
}

/// One measured number compared with its target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetCheck {
    /// What is measured, e.g. `writes_per_second`.
    pub name: String,
    /// Where it was measured, e.g. `process` or `in-process`.
    pub mode: String,
    /// Unit of `target` and `value`.
    pub unit: String,
    /// Direction of the comparison.
    pub better: Better,
    /// The target.
    pub target: f64,
    /// The measured value.
    pub value: f64,
    /// Whether the value meets the target (`>=` for higher, `<` for lower).
    pub met: bool,
    /// The individual measurements `value` summarises (e.g. one per round), if several.
    #[serde(default)]
    pub samples: Vec<f64>,
}

impl TargetCheck {
    /// Compares `value` with `target`.
    pub fn new(
        name: &str,
        mode: &str,
        unit: &str,
        better: Better,
        target: f64,
        value: f64,
    ) -> Self {
        let met = match better {
            Better::Higher => value >= target,
            Better::Lower => value < target,
        };
        Self {
            name: name.into(),
            mode: mode.into(),
            unit: unit.into(),
            better,
            target,
            value,
            met,
            samples: Vec::new(),
        }
    }
}

/// The part every result file shares; `results` is the suite's own shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope<T> {
    /// Identifies the file format, e.g. `bench.devcluster/v1`.
    pub schema: String,
    /// When the run started (RFC 3339, UTC).
    pub started_at: String,
    /// When the run ended (RFC 3339, UTC).
    pub finished_at: String,
    /// `release` or `debug`: how the bench binary itself was compiled.
    pub bench_build: String,
    /// The machine.
    pub machine: MachineFacts,
    /// Load average when the run ended.
    pub load_average_at_end: LoadAverage,
    /// The suite's parameters and measurements.
    pub results: T,
    /// Each target and whether it was met.
    pub targets: Vec<TargetCheck>,
}

/// The current time, RFC 3339 in UTC with seconds.
pub fn now_utc() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// How the running binary was compiled.
pub fn build_profile() -> &'static str {
    if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    }
}

/// Writes `value` as pretty JSON, creating parent directories.
pub fn write_json(path: &Path, value: &impl Serialize) -> Result<(), BenchError> {
    let err = |source| BenchError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let mut text =
        serde_json::to_string_pretty(value).map_err(|e| err(std::io::Error::other(e)))?;
    text.push('\n');
    std::fs::write(path, text).map_err(err)
}

/// A plain-text table with a header row; columns after the first are right-aligned.
#[derive(Debug, Clone, Default)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers.
    pub fn new(headers: &[&str]) -> Self {
        Self {
            headers: headers.iter().map(|h| (*h).to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; missing cells are blank, extra cells are dropped.
    pub fn row(&mut self, cells: Vec<String>) {
        let mut cells = cells;
        cells.resize(self.headers.len(), String::new());
        self.rows.push(cells);
    }

    /// Renders the table with a separator under the header.
    pub fn render(&self) -> String {
        let widths: Vec<usize> = (0..self.headers.len())
            .map(|i| {
                self.rows
                    .iter()
                    .map(|r| r[i].chars().count())
                    .chain([self.headers[i].chars().count()])
                    .max()
                    .unwrap_or_default()
            })
            .collect();
        let line = |cells: &[String]| {
            let parts: Vec<String> = cells
                .iter()
                .zip(&widths)
                .enumerate()
                .map(|(i, (c, w))| {
                    if i == 0 {
                        format!("{c:<w$}")
                    } else {
                        format!("{c:>w$}")
                    }
                })
                .collect();
            parts.join("  ").trim_end().to_string()
        };
        let mut out = line(&self.headers);
        out.push('\n');
        out.push_str(
            &widths
                .iter()
                .map(|w| "-".repeat(*w))
                .collect::<Vec<_>>()
                .join("  "),
        );
        out.push('\n');
        for r in &self.rows {
            out.push_str(&line(r));
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_directions() {
        let t = TargetCheck::new("w", "process", "1/s", Better::Higher, 20_000.0, 20_000.0);
        assert!(t.met);
        assert!(!TargetCheck::new("w", "p", "1/s", Better::Higher, 20_000.0, 19_999.9).met);
        assert!(TargetCheck::new("l", "p", "ms", Better::Lower, 50.0, 49.9).met);
        assert!(!TargetCheck::new("l", "p", "ms", Better::Lower, 50.0, 50.0).met);
        let v = serde_json::to_value(&t).unwrap();
        assert_eq!(v["better"], "higher");
        assert_eq!(v["met"], true);
    }

    #[test]
    fn renders_aligned_table() {
        let mut t = Table::new(&["metric", "value"]);
        t.row(vec!["writes/s".into(), "21000".into()]);
        t.row(vec!["p99 ms".into()]);
        let text = t.render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "metric    value");
        assert_eq!(lines[1], "--------  -----");
        assert_eq!(lines[2], "writes/s  21000");
        assert_eq!(lines[3], "p99 ms");
    }

    #[test]
    fn writes_json_file() {
        let dir = std::env::temp_dir().join(format!("bench-report-test-{}", std::process::id()));
        let path = dir.join("nested").join("out.json");
        write_json(&path, &serde_json::json!({"a": 1})).unwrap();
        let back: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(back["a"], 1);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(now_utc().ends_with('Z'));
    }
}
