//! The Prometheus registry and the metrics every controller records.
//!
//! Names follow controller-runtime so that existing dashboards and alerts keep working.
//! Families register their own domain metrics into the same registry through
//! [`Metrics::register`]. Process metrics are read from `/proc/self` at scrape time.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric},
    metrics::{
        MetricType,
        counter::{ConstCounter, Counter},
        family::Family,
        gauge::{ConstGauge, Gauge},
        histogram::Histogram,
    },
    registry::Registry,
};

/// Content type of [`Metrics::encode`] output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// controller-runtime's buckets for `controller_runtime_reconcile_time_seconds`.
pub const RECONCILE_TIME_BUCKETS: [f64; 40] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9,
    1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 15.0, 20.0,
    25.0, 30.0, 40.0, 50.0, 60.0,
];

/// Label set `{controller}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    /// Controller name.
    pub controller: String,
}

/// Label set `{controller, result}`; result is `success`, `error`, `requeue` or `requeue_after`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// Controller name.
    pub controller: String,
    /// Outcome of the reconcile.
    pub result: String,
}

/// Label set `{name, controller}` of the work-queue metrics: both the controller name, as
/// controller-runtime sets them (dashboards select by either).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    /// Queue name (the controller name).
    pub name: String,
    /// Controller name.
    pub controller: String,
}

/// Label set `{name}` of `leader_election_master_status` (the Lease name).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LeaseLabels {
    /// Lease name.
    pub name: String,
}

fn reconcile_time_histogram() -> Histogram {
    Histogram::new(RECONCILE_TIME_BUCKETS)
}

/// controller-runtime's work-queue duration buckets: 10 ns to 1,000 s, by factors of 10.
fn work_duration_histogram() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        1e-8, 10.0, 12,
    ))
}

/// When each reconcile in flight started, per controller (registered controllers have an
/// entry, possibly empty), for the unfinished-work gauges computed at scrape time.
#[derive(Debug, Default)]
struct InFlight {
    next: AtomicU64,
    started: Mutex<BTreeMap<String, BTreeMap<u64, Instant>>>,
}

impl InFlight {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, BTreeMap<u64, Instant>>> {
        self.started.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Encodes `workqueue_unfinished_work_seconds` (the summed age of the reconciles in flight)
/// and `workqueue_longest_running_processor_seconds` (the oldest one's age) per controller.
#[derive(Debug)]
struct InFlightCollector(Arc<InFlight>);

impl Collector for InFlightCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let now = Instant::now();
        let ages: Vec<(QueueLabels, f64, f64)> = self
            .0
            .lock()
            .iter()
            .map(|(name, started)| {
                let ages = started
                    .values()
                    .map(|at| now.duration_since(*at).as_secs_f64());
                let (sum, longest) = ages.fold((0.0, 0.0_f64), |(s, l), a| (s + a, l.max(a)));
                (ControllerMetrics::queue(name), sum, longest)
            })
            .collect();
        for (metric, help, pick) in [
            (
                "workqueue_unfinished_work_seconds",
                "Seconds of work in progress not yet observed by work_duration: the summed age of the reconciles in flight",
                0,
            ),
            (
                "workqueue_longest_running_processor_seconds",
                "Age in seconds of the longest-running reconcile in flight",
                1,
            ),
        ] {
            let mut family = encoder.encode_descriptor(metric, help, None, MetricType::Gauge)?;
            for (labels, sum, longest) in &ages {
                let value = if pick == 0 { *sum } else { *longest };
                ConstGauge::new(value).encode(family.encode_family(labels)?)?;
            }
        }
        Ok(())
    }
}

/// A reconcile in progress: counted in `controller_runtime_active_workers` and the
/// unfinished-work gauges until dropped.
#[derive(Debug)]
pub struct WorkInProgress {
    active: Gauge,
    in_flight: Arc<InFlight>,
    name: String,
    id: u64,
}

impl Drop for WorkInProgress {
    fn drop(&mut self) {
        self.active.dec();
        if let Some(started) = self.in_flight.lock().get_mut(&self.name) {
            started.remove(&self.id);
        }
    }
}

/// Outcome of one reconcile, as counted in `controller_runtime_reconcile_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReconcileResult {
    /// Finished, waits for the next change.
    Success,
    /// Finished and asked to run again after a delay.
    RequeueAfter,
    /// Failed (error, panic or deadline).
    Error,
}

impl ReconcileResult {
    /// The label value controller-runtime uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::RequeueAfter => "requeue_after",
            Self::Error => "error",
        }
    }
}

/// Handles to the runtime's own metric families. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ControllerMetrics {
    reconcile_total: Family<ResultLabels, Counter>,
    reconcile_errors: Family<ControllerLabels, Counter>,
    terminal_errors: Family<ControllerLabels, Counter>,
    reconcile_panics: Family<ControllerLabels, Counter>,
    reconcile_timeouts: Family<ControllerLabels, Counter>,
    reconcile_time: Family<ControllerLabels, Histogram, fn() -> Histogram>,
    active_workers: Family<ControllerLabels, Gauge>,
    max_concurrent: Family<ControllerLabels, Gauge>,
    queue_depth: Family<QueueLabels, Gauge>,
    queue_retries: Family<QueueLabels, Counter>,
    work_duration: Family<QueueLabels, Histogram, fn() -> Histogram>,
    in_flight: Arc<InFlight>,
    leader_status: Family<LeaseLabels, Gauge>,
}

impl ControllerMetrics {
    fn new(registry: &mut Registry) -> Self {
        let m = Self {
            reconcile_total: Family::default(),
            reconcile_errors: Family::default(),
            terminal_errors: Family::default(),
            reconcile_panics: Family::default(),
            reconcile_timeouts: Family::default(),
            reconcile_time: Family::new_with_constructor(reconcile_time_histogram),
            active_workers: Family::default(),
            max_concurrent: Family::default(),
            queue_depth: Family::default(),
            queue_retries: Family::default(),
            work_duration: Family::new_with_constructor(work_duration_histogram),
            in_flight: Arc::default(),
            leader_status: Family::default(),
        };
        registry.register(
            "controller_runtime_reconcile",
            "Total number of reconciliations per controller",
            m.reconcile_total.clone(),
        );
        registry.register(
            "controller_runtime_reconcile_errors",
            "Total number of reconciliation errors per controller",
            m.reconcile_errors.clone(),
        );
        registry.register(
            "controller_runtime_terminal_reconcile_errors",
            "Total number of reconciliation errors that wait for a change instead of retrying",
            m.terminal_errors.clone(),
        );
        registry.register(
            "controller_runtime_reconcile_panics",
            "Total number of reconciliation panics per controller",
            m.reconcile_panics.clone(),
        );
        registry.register(
            "controller_runtime_reconcile_timeouts",
            "Total number of reconciliations cancelled by the reconcile deadline",
            m.reconcile_timeouts.clone(),
        );
        registry.register(
            "controller_runtime_reconcile_time_seconds",
            "Length of time per reconciliation per controller",
            m.reconcile_time.clone(),
        );
        registry.register(
            "controller_runtime_active_workers",
            "Number of currently used workers per controller",
            m.active_workers.clone(),
        );
        registry.register(
            "controller_runtime_max_concurrent_reconciles",
            "Maximum number of concurrent reconciles per controller",
            m.max_concurrent.clone(),
        );
        registry.register(
            "workqueue_depth",
            "Number of objects waiting for a retry after a failed reconcile",
            m.queue_depth.clone(),
        );
        registry.register(
            "workqueue_retries",
            "Total number of retries scheduled by the per-object backoff",
            m.queue_retries.clone(),
        );
        registry.register(
            "workqueue_work_duration_seconds",
            "How long processing an item from the work queue takes: one reconcile, in seconds",
            m.work_duration.clone(),
        );
        registry.register_collector(Box::new(InFlightCollector(m.in_flight.clone())));
        registry.register(
            "leader_election_master_status",
            "1 while this replica holds the leader-election Lease named by the label, else 0",
            m.leader_status.clone(),
        );
        m
    }

    fn controller(name: &str) -> ControllerLabels {
        ControllerLabels {
            controller: name.to_owned(),
        }
    }

    fn queue(name: &str) -> QueueLabels {
        QueueLabels {
            name: name.to_owned(),
            controller: name.to_owned(),
        }
    }

    /// Makes a controller's series visible at zero before its first reconcile, and records its
    /// concurrency limit.
    pub fn register_controller(&self, name: &str, max_concurrent: u16) {
        let labels = Self::controller(name);
        // `requeue` (controller-runtime's immediate requeue) stays 0: kube has no such
        // outcome. It is created so that queries written for controller-runtime find it.
        for result in [
            ReconcileResult::Success.as_str(),
            ReconcileResult::RequeueAfter.as_str(),
            ReconcileResult::Error.as_str(),
            "requeue",
        ] {
            drop(self.reconcile_total.get_or_create(&ResultLabels {
                controller: name.to_owned(),
                result: result.to_owned(),
            }));
        }
        drop(self.reconcile_errors.get_or_create(&labels));
        drop(self.terminal_errors.get_or_create(&labels));
        drop(self.reconcile_panics.get_or_create(&labels));
        drop(self.reconcile_timeouts.get_or_create(&labels));
        drop(self.reconcile_time.get_or_create(&labels));
        drop(self.active_workers.get_or_create(&labels));
        self.max_concurrent
            .get_or_create(&labels)
            .set(i64::from(max_concurrent));
        drop(self.queue_depth.get_or_create(&Self::queue(name)));
        drop(self.queue_retries.get_or_create(&Self::queue(name)));
        drop(self.work_duration.get_or_create(&Self::queue(name)));
        self.in_flight.lock().entry(name.to_owned()).or_default();
    }

    /// Marks a reconcile of controller `name` as started; it counts as in progress until the
    /// returned guard is dropped.
    pub fn start_work(&self, name: &str) -> WorkInProgress {
        let active = self.active_workers(name);
        active.inc();
        let id = self.in_flight.next.fetch_add(1, Ordering::Relaxed);
        self.in_flight
            .lock()
            .entry(name.to_owned())
            .or_default()
            .insert(id, Instant::now());
        WorkInProgress {
            active,
            in_flight: self.in_flight.clone(),
            name: name.to_owned(),
            id,
        }
    }

    /// Counts one finished reconcile and its duration.
    pub fn observe_reconcile(&self, name: &str, result: ReconcileResult, elapsed: Duration) {
        self.reconcile_total
            .get_or_create(&ResultLabels {
                controller: name.to_owned(),
                result: result.as_str().to_owned(),
            })
            .inc();
        self.reconcile_time
            .get_or_create(&Self::controller(name))
            .observe(elapsed.as_secs_f64());
        self.work_duration
            .get_or_create(&Self::queue(name))
            .observe(elapsed.as_secs_f64());
        if result == ReconcileResult::Error {
            self.reconcile_errors
                .get_or_create(&Self::controller(name))
                .inc();
        }
    }

    /// Counts a reconcile that panicked.
    pub fn inc_panics(&self, name: &str) {
        self.reconcile_panics
            .get_or_create(&Self::controller(name))
            .inc();
    }

    /// Counts a reconcile cancelled by the deadline.
    pub fn inc_timeouts(&self, name: &str) {
        self.reconcile_timeouts
            .get_or_create(&Self::controller(name))
            .inc();
    }

    /// Counts an error that waits for a change instead of retrying.
    pub fn inc_terminal_errors(&self, name: &str) {
        self.terminal_errors
            .get_or_create(&Self::controller(name))
            .inc();
    }

    /// Counts a retry scheduled by the backoff.
    pub fn inc_retries(&self, name: &str) {
        self.queue_retries.get_or_create(&Self::queue(name)).inc();
    }

    /// Sets the number of objects waiting for a retry.
    pub fn set_queue_depth(&self, name: &str, depth: usize) {
        self.queue_depth
            .get_or_create(&Self::queue(name))
            .set(i64::try_from(depth).unwrap_or(i64::MAX));
    }

    /// The `controller_runtime_active_workers` gauge of a controller.
    pub fn active_workers(&self, name: &str) -> Gauge {
        self.active_workers
            .get_or_create(&Self::controller(name))
            .clone()
    }

    /// Sets `leader_election_master_status{name}`.
    pub fn set_leader(&self, lease_name: &str, leader: bool) {
        self.leader_status
            .get_or_create(&LeaseLabels {
                name: lease_name.to_owned(),
            })
            .set(i64::from(leader));
    }
}

/// The process-wide registry plus the runtime's metric handles. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Arc<Mutex<Registry>>,
    controllers: ControllerMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with the controller-runtime metrics and the process collector.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let controllers = ControllerMetrics::new(&mut registry);
        registry.register_collector(Box::new(ProcessCollector));
        Self {
            registry: Arc::new(Mutex::new(registry)),
            controllers,
        }
    }

    /// The runtime's controller and work-queue metrics.
    pub fn controllers(&self) -> &ControllerMetrics {
        &self.controllers
    }

    /// Runs `f` with the registry, to register a family's own metrics, e.g.
    /// `metrics.register(|r| r.register("ambient_sessions", "Sessions created", counter.clone()))`.
    pub fn register<T>(&self, f: impl FnOnce(&mut Registry) -> T) -> T {
        let mut registry = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut registry)
    }

    /// Renders every metric in the text exposition format (`OpenMetrics` flavour).
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let registry = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry)?;
        Ok(out)
    }
}

/// Process metrics read from `/proc/self` on every scrape (Linux only; elsewhere it emits
/// nothing but `process_start_time_seconds`).
#[derive(Debug, Clone, Copy)]
pub struct ProcessCollector;

/// Clock ticks per second used by `/proc/<pid>/stat` (`USER_HZ`, 100 on every Linux ABI).
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;

/// A snapshot of the process metrics.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ProcessStats {
    /// Resident set size in bytes.
    pub resident_memory_bytes: Option<u64>,
    /// Virtual memory size in bytes.
    pub virtual_memory_bytes: Option<u64>,
    /// User plus system CPU time in seconds.
    pub cpu_seconds: Option<f64>,
    /// Process start, seconds since the Unix epoch.
    pub start_time_seconds: Option<f64>,
    /// Open file descriptors.
    pub open_fds: Option<u64>,
    /// Soft limit on open file descriptors.
    pub max_fds: Option<u64>,
}

impl ProcessStats {
    /// Reads the current process's statistics from `/proc`.
    pub fn read() -> Self {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        let boot = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
        let open_fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|d| d.count() as u64);
        let mut parsed = Self::parse(&status, &stat, &boot, &limits);
        parsed.open_fds = open_fds;
        parsed
    }

    /// Parses the contents of `/proc/self/status`, `/proc/self/stat`, `/proc/stat` and
    /// `/proc/self/limits`.
    pub fn parse(status: &str, stat: &str, boot: &str, limits: &str) -> Self {
        let kb_field = |name: &str| {
            status.lines().find_map(|line| {
                let rest = line.strip_prefix(name)?.strip_prefix(':')?;
                let kb: u64 = rest.split_whitespace().next()?.parse().ok()?;
                Some(kb * 1024)
            })
        };
        // Fields after the parenthesised command name; index 0 is field 3 ("state").
        let after_comm: Vec<&str> = stat
            .rfind(')')
            .map(|i| stat[i + 1..].split_whitespace().collect())
            .unwrap_or_default();
        let field = |n: usize| after_comm.get(n - 3).and_then(|v| v.parse::<u64>().ok());
        #[allow(clippy::cast_precision_loss)]
        let cpu_seconds = match (field(14), field(15)) {
            (Some(utime), Some(stime)) => Some((utime + stime) as f64 / CLOCK_TICKS_PER_SECOND),
            _ => None,
        };
        let btime = boot.lines().find_map(|line| {
            line.strip_prefix("btime ")
                .and_then(|v| v.trim().parse::<u64>().ok())
        });
        #[allow(clippy::cast_precision_loss)]
        let start_time_seconds = match (btime, field(22)) {
            (Some(btime), Some(ticks)) => {
                Some(btime as f64 + ticks as f64 / CLOCK_TICKS_PER_SECOND)
            }
            _ => None,
        };
        let max_fds = limits.lines().find_map(|line| {
            let rest = line.strip_prefix("Max open files")?;
            rest.split_whitespace().next()?.parse().ok()
        });
        Self {
            resident_memory_bytes: kb_field("VmRSS"),
            virtual_memory_bytes: kb_field("VmSize"),
            cpu_seconds,
            start_time_seconds,
            open_fds: None,
            max_fds,
        }
    }
}

fn encode_gauge<N>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: Option<N>,
) -> Result<(), std::fmt::Error>
where
    ConstGauge<N>: EncodeMetric,
{
    if let Some(value) = value {
        let metric = ConstGauge::new(value);
        let metric_encoder = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
        metric.encode(metric_encoder)?;
    }
    Ok(())
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = ProcessStats::read();
        if let Some(cpu) = stats.cpu_seconds {
            let metric = ConstCounter::new(cpu);
            let metric_encoder = encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds",
                None,
                MetricType::Counter,
            )?;
            metric.encode(metric_encoder)?;
        }
        encode_gauge(
            &mut encoder,
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            stats.resident_memory_bytes,
        )?;
        encode_gauge(
            &mut encoder,
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes",
            stats.virtual_memory_bytes,
        )?;
        encode_gauge(
            &mut encoder,
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds",
            stats.start_time_seconds,
        )?;
        encode_gauge(
            &mut encoder,
            "process_open_fds",
            "Number of open file descriptors",
            stats.open_fds,
        )?;
        encode_gauge(
            &mut encoder,
            "process_max_fds",
            "Maximum number of open file descriptors",
            stats.max_fds,
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_files() {
        let status = "Name:\tagentic\nVmSize:\t  2048 kB\nVmRSS:\t    1024 kB\n";
        let stat = "42 (agentic op) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 1000 0 0";
        let boot = "cpu  1 2 3\nbtime 1700000000\n";
        let limits = "Limit                     Soft Limit           Hard Limit           Units\nMax open files            1048576              1048576              files\n";
        let parsed = ProcessStats::parse(status, stat, boot, limits);
        assert_eq!(parsed.resident_memory_bytes, Some(1024 * 1024));
        assert_eq!(parsed.virtual_memory_bytes, Some(2048 * 1024));
        assert_eq!(parsed.cpu_seconds, Some(3.0));
        assert_eq!(parsed.start_time_seconds, Some(1_700_000_010.0));
        assert_eq!(parsed.max_fds, Some(1_048_576));
    }

    #[test]
    fn garbage_proc_files_give_no_values() {
        let stats = ProcessStats::parse("", "nonsense", "", "");
        assert_eq!(stats, ProcessStats::default());
    }

    #[test]
    fn encodes_controller_runtime_names() {
        let metrics = Metrics::new();
        metrics.controllers().register_controller("demo", 4);
        metrics.controllers().observe_reconcile(
            "demo",
            ReconcileResult::Error,
            Duration::from_millis(3),
        );
        let text = metrics.encode().unwrap();
        assert!(
            text.contains(
                "controller_runtime_reconcile_total{controller=\"demo\",result=\"error\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("controller_runtime_reconcile_errors_total{controller=\"demo\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("controller_runtime_max_concurrent_reconciles{controller=\"demo\"} 4"),
            "{text}"
        );
        assert!(text.contains("controller_runtime_reconcile_time_seconds_bucket{le=\"0.005\",controller=\"demo\"} 1"), "{text}");
    }
}
