//! Reading a process's CPU time and memory from `/proc/<pid>/stat` and `/proc/<pid>/status`,
//! and sampling them over a benchmark phase.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::BenchError;

/// Reads a file under `/proc` as text.
pub fn read_proc(path: impl AsRef<Path>) -> Result<String, BenchError> {
    let path = path.as_ref();
    std::fs::read_to_string(path).map_err(|source| BenchError::Proc {
        path: path.to_path_buf(),
        source,
    })
}

/// The fields of `/proc/<pid>/stat` the benchmarks use (see proc(5)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcStat {
    /// Process state character (`R`, `S`, `Z`, ...).
    pub state: char,
    /// User-mode CPU time in clock ticks (field 14).
    pub utime_ticks: u64,
    /// Kernel-mode CPU time in clock ticks (field 15).
    pub stime_ticks: u64,
    /// Number of threads (field 20).
    pub num_threads: u64,
    /// Resident set size in pages (field 24).
    pub rss_pages: u64,
}

impl ProcStat {
    /// Parses the text of `/proc/<pid>/stat`. The command name (field 2) is in parentheses
    /// and may itself contain spaces and parentheses, so fields are counted from the last `)`.
    pub fn parse(text: &str) -> Result<Self, BenchError> {
        let bad = |detail: String| BenchError::ProcFormat {
            what: "/proc/<pid>/stat".into(),
            detail,
        };
        let close = text
            .rfind(')')
            .ok_or_else(|| bad("no ')' after the command name".into()))?;
        // Fields from 3 (state) on.
        let rest: Vec<&str> = text[close + 1..].split_whitespace().collect();
        let field = |n: usize| -> Result<&str, BenchError> {
            rest.get(n - 3)
                .copied()
                .ok_or_else(|| bad(format!("field {n} is missing")))
        };
        let num = |n: usize| -> Result<u64, BenchError> {
            let f = field(n)?;
            f.parse::<u64>()
                .map_err(|e| bad(format!("field {n} ({f:?}) is not a number: {e}")))
        };
        Ok(Self {
            state: field(3)?.chars().next().unwrap_or('?'),
            utime_ticks: num(14)?,
            stime_ticks: num(15)?,
            num_threads: num(20)?,
            rss_pages: num(24)?,
        })
    }

    /// Reads `/proc/<pid>/stat`.
    pub fn read(pid: u32) -> Result<Self, BenchError> {
        Self::parse(&read_proc(format!("/proc/{pid}/stat"))?)
    }

    /// User plus kernel CPU time.
    pub fn cpu_ticks(&self) -> u64 {
        self.utime_ticks + self.stime_ticks
    }
}

/// The memory fields of `/proc/<pid>/status`, in KiB.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcStatus {
    /// Current resident set size (`VmRSS`).
    pub vm_rss_kib: u64,
    /// Peak resident set size (`VmHWM`).
    pub vm_hwm_kib: u64,
    /// Number of threads (`Threads`).
    pub threads: u64,
}

impl ProcStatus {
    /// Parses the text of `/proc/<pid>/status`; missing fields read as zero (kernel threads
    /// have no `VmRSS`), a present but malformed field is an error.
    pub fn parse(text: &str) -> Result<Self, BenchError> {
        let mut s = Self::default();
        for line in text.lines() {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let slot = match key {
                "VmRSS" => &mut s.vm_rss_kib,
                "VmHWM" => &mut s.vm_hwm_kib,
                "Threads" => &mut s.threads,
                _ => continue,
            };
            let first = value.split_whitespace().next().unwrap_or_default();
            *slot = first.parse().map_err(|e| BenchError::ProcFormat {
                what: format!("/proc/<pid>/status {key}"),
                detail: format!("{first:?} is not a number: {e}"),
            })?;
        }
        Ok(s)
    }

    /// Reads `/proc/<pid>/status`.
    pub fn read(pid: u32) -> Result<Self, BenchError> {
        Self::parse(&read_proc(format!("/proc/{pid}/status"))?)
    }
}

/// Clock ticks per second for `/proc` CPU times (`getconf CLK_TCK`; 100 if that fails, which
/// is the fixed `USER_HZ` of Linux on common architectures).
pub fn clock_ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<u64>().ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}

/// One reading of a process's CPU time and memory.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// When it was taken.
    pub at: Instant,
    /// From `/proc/<pid>/stat`.
    pub stat: ProcStat,
    /// From `/proc/<pid>/status`.
    pub status: ProcStatus,
}

impl Sample {
    /// Reads both files of `pid` now.
    pub fn take(pid: u32) -> Result<Self, BenchError> {
        Ok(Self {
            at: Instant::now(),
            stat: ProcStat::read(pid)?,
            status: ProcStatus::read(pid)?,
        })
    }
}

/// CPU and memory use of a process over an interval.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// Wall-clock length of the interval in seconds.
    pub wall_s: f64,
    /// CPU seconds (user plus kernel) used in the interval.
    pub cpu_s: f64,
    /// `cpu_s / wall_s`: 1.0 means one core fully busy.
    pub cores: f64,
    /// Resident set size at the end, in MiB.
    pub rss_end_mib: f64,
    /// Largest resident set size seen by the sampler in the interval, in MiB (at least the
    /// start and end readings).
    pub rss_max_mib: f64,
    /// The kernel's peak resident set size of the process's whole life so far (`VmHWM`).
    pub rss_peak_lifetime_mib: f64,
}

#[allow(clippy::cast_precision_loss)]
fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

impl Usage {
    /// Usage between two samples (plus any samples taken in between for the RSS maximum).
    pub fn between(start: &Sample, end: &Sample, between: &[Sample], ticks_per_s: u64) -> Self {
        let wall = end.at.saturating_duration_since(start.at).as_secs_f64();
        let ticks = end.stat.cpu_ticks().saturating_sub(start.stat.cpu_ticks());
        #[allow(clippy::cast_precision_loss)]
        let cpu = ticks as f64 / ticks_per_s.max(1) as f64;
        let max_rss = between
            .iter()
            .chain([start, end])
            .map(|s| s.status.vm_rss_kib)
            .max()
            .unwrap_or_default();
        Self {
            wall_s: wall,
            cpu_s: cpu,
            cores: if wall > 0.0 { cpu / wall } else { 0.0 },
            rss_end_mib: mib(end.status.vm_rss_kib),
            rss_max_mib: mib(max_rss),
            rss_peak_lifetime_mib: mib(end.status.vm_hwm_kib),
        }
    }
}

/// Samples a process in the background at a fixed interval until [`Sampler::finish`].
#[derive(Debug)]
pub struct Sampler {
    pid: u32,
    ticks: u64,
    start: Sample,
    samples: Arc<Mutex<Vec<Sample>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    /// Takes a first sample of `pid` now and keeps sampling every `every`.
    pub fn start(pid: u32, every: Duration) -> Result<Self, BenchError> {
        let start = Sample::take(pid)?;
        let samples = Arc::new(Mutex::new(Vec::new()));
        let sink = samples.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                match Sample::take(pid) {
                    Ok(s) => sink
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push(s),
                    Err(_) => return,
                }
            }
        });
        Ok(Self {
            pid,
            ticks: clock_ticks_per_second(),
            start,
            samples,
            task,
        })
    }

    /// Stops sampling and returns the usage from the start until now.
    pub fn finish(self) -> Result<Usage, BenchError> {
        self.task.abort();
        let end = Sample::take(self.pid)?;
        let between = self
            .samples
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        Ok(Usage::between(&self.start, &end, &between, self.ticks))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "4242 (dev cluster) (x)) S 1 4242 4242 0 -1 4194560 1200 0 0 0 250 75 0 0 20 0 7 0 12345 1073741824 5120 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";

    #[test]
    fn parses_stat_with_awkward_command_name() {
        let s = ProcStat::parse(STAT).unwrap();
        assert_eq!(s.state, 'S');
        assert_eq!(s.utime_ticks, 250);
        assert_eq!(s.stime_ticks, 75);
        assert_eq!(s.cpu_ticks(), 325);
        assert_eq!(s.num_threads, 7);
        assert_eq!(s.rss_pages, 5120);
    }

    #[test]
    fn rejects_malformed_stat() {
        assert!(ProcStat::parse("4242 no parenthesis S 1").is_err());
        assert!(ProcStat::parse("4242 (x) S 1 2 3").is_err());
        let bad = STAT.replace(" 250 ", " x ");
        assert!(ProcStat::parse(&bad).is_err());
    }

    #[test]
    fn parses_status() {
        let text = "Name:\tdevcluster\nState:\tS (sleeping)\nVmHWM:\t   40960 kB\nVmRSS:\t   20480 kB\nThreads:\t3\n";
        let s = ProcStatus::parse(text).unwrap();
        assert_eq!(
            s,
            ProcStatus {
                vm_rss_kib: 20480,
                vm_hwm_kib: 40960,
                threads: 3
            }
        );
        assert_eq!(
            ProcStatus::parse("Name:\tkthreadd\n").unwrap(),
            ProcStatus::default()
        );
        assert!(ProcStatus::parse("VmRSS:\t lots kB\n").is_err());
    }

    #[test]
    fn usage_between_samples() {
        let t0 = Instant::now();
        let mk = |ms: u64, ticks: u64, rss: u64, hwm: u64| Sample {
            at: t0 + Duration::from_millis(ms),
            stat: ProcStat {
                utime_ticks: ticks,
                ..ProcStat::default()
            },
            status: ProcStatus {
                vm_rss_kib: rss,
                vm_hwm_kib: hwm,
                threads: 1,
            },
        };
        let a = mk(0, 100, 1024, 1024);
        let mid = mk(1000, 150, 4096, 4096);
        let b = mk(2000, 250, 2048, 4096);
        let u = Usage::between(&a, &b, &[mid], 100);
        assert!((u.wall_s - 2.0).abs() < 1e-9);
        assert!((u.cpu_s - 1.5).abs() < 1e-9);
        assert!((u.cores - 0.75).abs() < 1e-9);
        assert!((u.rss_end_mib - 2.0).abs() < 1e-9);
        assert!((u.rss_max_mib - 4.0).abs() < 1e-9);
        assert!((u.rss_peak_lifetime_mib - 4.0).abs() < 1e-9);
    }

    #[test]
    fn reads_own_process() {
        let pid = std::process::id();
        let st = ProcStat::read(pid).unwrap();
        assert!(st.num_threads >= 1);
        let status = ProcStatus::read(pid).unwrap();
        assert!(status.vm_rss_kib > 0);
        assert!(clock_ticks_per_second() > 0);
    }
}
