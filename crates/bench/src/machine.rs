//! Facts about the machine a benchmark ran on, so its numbers can be judged: core count,
//! CPU model, memory, kernel and load average.

use serde::{Deserialize, Serialize};

use crate::BenchError;
use crate::procfs::read_proc;

/// The 1, 5 and 15 minute load averages from `/proc/loadavg`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LoadAverage {
    /// Over the last minute.
    pub one: f64,
    /// Over the last five minutes.
    pub five: f64,
    /// Over the last fifteen minutes.
    pub fifteen: f64,
}

impl LoadAverage {
    /// Parses the text of `/proc/loadavg` (`"0.81 0.93 0.74 2/345 6789"`).
    pub fn parse(text: &str) -> Result<Self, BenchError> {
        let bad = |detail: String| BenchError::ProcFormat {
            what: "/proc/loadavg".into(),
            detail,
        };
        let mut it = text.split_whitespace().map(|f| {
            f.parse::<f64>()
                .map_err(|e| bad(format!("field {f:?} is not a number: {e}")))
        });
        let mut next = |name: &str| {
            it.next()
                .unwrap_or_else(|| Err(bad(format!("the {name} average is missing"))))
        };
        Ok(Self {
            one: next("1-minute")?,
            five: next("5-minute")?,
            fifteen: next("15-minute")?,
        })
    }

    /// Reads `/proc/loadavg` now.
    pub fn now() -> Result<Self, BenchError> {
        Self::parse(&read_proc("/proc/loadavg")?)
    }
}

impl std::fmt::Display for LoadAverage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.2} {:.2} {:.2}", self.one, self.five, self.fifteen)
    }
}

/// The first `model name` in the text of `/proc/cpuinfo`.
pub fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == "model name").then(|| v.trim().to_string())
    })
}

/// `MemTotal` in KiB from the text of `/proc/meminfo`.
pub fn mem_total_kib(meminfo: &str) -> Option<u64> {
    meminfo.lines().find_map(|l| {
        let rest = l.strip_prefix("MemTotal:")?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// What a result file records about the machine.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MachineFacts {
    /// Cores available to this process.
    pub nproc: usize,
    /// CPU model name, or `"unknown"`.
    pub cpu_model: String,
    /// Total memory in MiB (0 if unknown).
    pub mem_total_mib: u64,
    /// Kernel release, or `"unknown"`.
    pub kernel: String,
    /// Load average when the benchmark started.
    pub load_average_at_start: LoadAverage,
}

impl MachineFacts {
    /// Collects the facts now.
    pub fn collect() -> Result<Self, BenchError> {
        let nproc = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        let cpu = read_proc("/proc/cpuinfo")
            .ok()
            .and_then(|t| cpu_model(&t))
            .unwrap_or_else(|| "unknown".into());
        let mem = read_proc("/proc/meminfo")
            .ok()
            .and_then(|t| mem_total_kib(&t))
            .unwrap_or_default()
            / 1024;
        let kernel = read_proc("/proc/sys/kernel/osrelease")
            .map_or_else(|_| "unknown".into(), |s| s.trim().to_string());
        Ok(Self {
            nproc,
            cpu_model: cpu,
            mem_total_mib: mem,
            kernel,
            load_average_at_start: LoadAverage::now()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_loadavg() {
        let l = LoadAverage::parse("0.81 0.93 0.74 2/345 6789\n").unwrap();
        assert!((l.one - 0.81).abs() < 1e-9);
        assert!((l.five - 0.93).abs() < 1e-9);
        assert!((l.fifteen - 0.74).abs() < 1e-9);
        assert_eq!(l.to_string(), "0.81 0.93 0.74");
        assert!(LoadAverage::parse("0.81 x 0.74").is_err());
        assert!(LoadAverage::parse("0.81").is_err());
    }

    #[test]
    fn parses_cpuinfo_and_meminfo() {
        let cpuinfo = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) CPU @ 2.80GHz\nflags\t\t: fpu\n\nprocessor\t: 1\nmodel name\t: other\n";
        assert_eq!(
            cpu_model(cpuinfo).as_deref(),
            Some("Intel(R) Xeon(R) CPU @ 2.80GHz")
        );
        assert_eq!(cpu_model("processor: 0\n"), None);
        let meminfo = "MemTotal:        8144512 kB\nMemFree:  100 kB\n";
        assert_eq!(mem_total_kib(meminfo), Some(8_144_512));
        assert_eq!(mem_total_kib("MemFree: 1 kB\n"), None);
    }

    #[test]
    fn collects_on_linux() {
        let f = MachineFacts::collect().unwrap();
        assert!(f.nproc >= 1);
        assert!(f.load_average_at_start.one >= 0.0);
    }
}
