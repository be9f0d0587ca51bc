//! `bench devcluster`: write throughput and latency, watch fan-out and large lists of the
//! in-memory API server, with the server in its own process and in the bench's process.
//!
//! Every phase uses `ConfigMap` objects in a namespace of its own:
//! - writes: `writes` creates from `concurrency` workers, each with one kept-alive HTTP/1.1
//!   connection, after `warmup` unmeasured creates;
//! - watch: `watchers` watch streams on one namespace, then `watch_writes` creates there;
//!   delivered events / (last delivery − first write);
//! - list: `list_objects` objects, then `list_runs` full unpaged lists and as many paged ones.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;
use http_body_util::BodyExt;
use k8s_openapi::api::core::v1::ConfigMap;
use serde::{Deserialize, Serialize};

use crate::BenchError;
use crate::accounting::{self, ServerVerb};
use crate::http::{Conn, EventCounts, EventScanner};
use crate::machine::{LoadAverage, MachineFacts};
use crate::process::{ChildProcess, SpawnSpec};
use crate::procfs::{Sampler, Usage};
use crate::report::{Better, Envelope, Table, TargetCheck, build_profile, now_utc};
use crate::stats::{LatencySummary, median, ms, rate};

/// Schema name of the result file.
pub const SCHEMA: &str = "bench.devcluster/v1";
/// What issues the requests.
pub const CLIENT: &str =
    "hyper 1 HTTP/1.1 client, one kept-alive connection per worker (no kube::Client)";
/// Target: simple writes per second.
pub const TARGET_WRITES_PER_S: f64 = 20_000.0;
/// Target: watch events delivered per second.
pub const TARGET_WATCH_EVENTS_PER_S: f64 = 100_000.0;
/// Target: median time of an unpaged list of 10,000 objects, in ms.
pub const TARGET_LIST_MS: f64 = 50.0;

const NS_WARMUP: &str = "bench-warmup";
const NS_WRITES: &str = "bench-writes";
const NS_WATCH: &str = "bench-watch";
const NS_LIST: &str = "bench-list";
const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// Where the server runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// The `devcluster serve` binary, in its own process.
    Process,
    /// `DevCluster::start()` inside the bench process, sharing its runtime.
    InProcess,
}

impl Mode {
    /// Name used in tables and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Self::Process => "process",
            Self::InProcess => "in-process",
        }
    }
}

/// Parameters of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// Measured creates in the write phase.
    pub writes: usize,
    /// Unmeasured creates before the write phase.
    pub warmup: usize,
    /// Concurrent workers (connections) issuing writes.
    pub concurrency: usize,
    /// Watch streams in the watch phase.
    pub watchers: usize,
    /// Creates made while the watchers listen.
    pub watch_writes: usize,
    /// Objects stored before the list phase.
    pub list_objects: usize,
    /// Timed lists of each kind (unpaged, paged).
    pub list_runs: usize,
    /// `limit` of the paged lists.
    pub page_size: usize,
    /// Bytes of filler in each `ConfigMap`'s data.
    pub payload_bytes: usize,
    /// Deadline of each phase in seconds.
    pub phase_timeout_s: u64,
    /// Times every mode is run (alternating modes); targets use the median.
    pub rounds: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            writes: 50_000,
            warmup: 2_000,
            concurrency: 32,
            watchers: 50,
            watch_writes: 5_000,
            list_objects: 10_000,
            list_runs: 9,
            page_size: 500,
            payload_bytes: 64,
            phase_timeout_s: 300,
            rounds: 1,
        }
    }
}

impl Config {
    /// Checks the parameters; the error names the flag and what is allowed.
    pub fn validate(&self) -> Result<(), BenchError> {
        let positive = [
            ("--writes", self.writes),
            ("--concurrency", self.concurrency),
            ("--watchers", self.watchers),
            ("--watch-writes", self.watch_writes),
            ("--list-objects", self.list_objects),
            ("--list-runs", self.list_runs),
            ("--page-size", self.page_size),
            ("--rounds", self.rounds),
        ];
        for (field, v) in positive {
            if v == 0 {
                return Err(BenchError::Config {
                    field: field.into(),
                    detail: "must be at least 1".into(),
                });
            }
        }
        if self.concurrency > 1024 {
            return Err(BenchError::Config {
                field: "--concurrency".into(),
                detail: format!("must be at most 1024, got {}", self.concurrency),
            });
        }
        if self.watchers > 1024 {
            return Err(BenchError::Config {
                field: "--watchers".into(),
                detail: format!("must be at most 1024, got {}", self.watchers),
            });
        }
        if self.phase_timeout_s == 0 {
            return Err(BenchError::Config {
                field: "--phase-timeout".into(),
                detail: "must be at least 1 second".into(),
            });
        }
        Ok(())
    }

    fn deadline(&self) -> Duration {
        Duration::from_secs(self.phase_timeout_s)
    }
}

/// Results of a pool of creates.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WriteResult {
    /// Creates issued.
    pub requested: usize,
    /// Answered 201.
    pub ok: u64,
    /// Answered otherwise (or failed at the transport).
    pub failed: u64,
    /// The first failure, if any.
    pub first_error: Option<String>,
    /// Concurrent workers.
    pub concurrency: usize,
    /// From the release of the workers to the last response, in seconds.
    pub elapsed_s: f64,
    /// Successful creates per second.
    pub per_second: f64,
    /// Client-observed latency (request sent to full response read).
    pub latency: LatencySummary,
}

/// The write phase.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WritePhase {
    /// Creates and their timing.
    pub result: WriteResult,
    /// The server's accounting for the phase.
    pub server: Vec<ServerVerb>,
    /// CPU and memory of the server process (process mode only).
    pub server_process: Option<Usage>,
    /// CPU and memory of the bench process (includes the server in in-process mode).
    pub bench_process: Usage,
}

/// The watch phase.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WatchPhase {
    /// Watch streams.
    pub watchers: usize,
    /// Creates made while watching.
    pub writes: WriteResult,
    /// `watchers × successful creates`.
    pub expected_events: u64,
    /// ADDED events received by all watchers together.
    pub delivered_events: u64,
    /// Every line received, by type.
    pub counts: EventCounts,
    /// Watchers that received every expected event.
    pub watchers_complete: usize,
    /// Watch streams the server ended before all events arrived.
    pub streams_ended_early: usize,
    /// Fewest events any watcher received.
    pub min_per_watcher: u64,
    /// From the first write to the last delivery, in seconds.
    pub first_write_to_last_delivery_s: f64,
    /// `delivered_events / first_write_to_last_delivery_s`.
    pub events_per_second: f64,
    /// The server's accounting for the phase.
    pub server: Vec<ServerVerb>,
    /// CPU and memory of the server process (process mode only).
    pub server_process: Option<Usage>,
    /// CPU and memory of the bench process.
    pub bench_process: Usage,
}

/// Timings of repeated requests, in ms.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    /// Median.
    pub median_ms: f64,
    /// Fastest.
    pub min_ms: f64,
    /// Slowest.
    pub max_ms: f64,
    /// Every run, in order.
    pub samples_ms: Vec<f64>,
}

impl Timings {
    fn of(samples: Vec<f64>) -> Self {
        Self {
            median_ms: median(&samples).unwrap_or_default(),
            min_ms: samples.iter().copied().fold(f64::INFINITY, f64::min),
            max_ms: samples.iter().copied().fold(0.0, f64::max),
            samples_ms: samples,
        }
    }
}

/// The list phase.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ListPhase {
    /// Objects stored in the listed namespace.
    pub objects: usize,
    /// The creates that stored them (a second write measurement).
    pub fill: WriteResult,
    /// Items each unpaged list returned (checked against `objects`).
    pub items_per_list: usize,
    /// Size of one unpaged list response in bytes.
    pub response_bytes: usize,
    /// Unpaged list: request sent to the last body byte received.
    pub unpaged: Timings,
    /// Decoding one unpaged response into `serde_json::Value` on the client (not part of
    /// `unpaged`; what a client that parses the list generically would add).
    pub client_decode: Timings,
    /// Decoding one unpaged response into typed `k8s_openapi` `ConfigMap` objects, as
    /// `kube::Api::list` does (not part of `unpaged`).
    pub client_typed_decode: Timings,
    /// `limit` of the paged lists.
    pub page_size: usize,
    /// Pages per paged list.
    pub pages: usize,
    /// Paged list: all pages, following `continue` tokens (each page's JSON is parsed to
    /// find the token).
    pub paged: Timings,
    /// The server's accounting for the timed lists.
    pub server: Vec<ServerVerb>,
}

/// Everything measured against one server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    /// Where the server ran.
    pub mode: Mode,
    /// Which round (from 1) this run was.
    pub round: usize,
    /// What issued the requests.
    pub client: String,
    /// The server's pid (process mode).
    pub server_pid: Option<u32>,
    /// Load average when this run started.
    pub load_average_start: LoadAverage,
    /// Load average when this run ended.
    pub load_average_end: LoadAverage,
    /// Write phase.
    pub writes: WritePhase,
    /// Watch phase.
    pub watch: WatchPhase,
    /// List phase.
    pub list: ListPhase,
}

/// The suite-specific part of the result file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Results {
    /// Parameters.
    pub config: Config,
    /// The server binary (process mode).
    pub server_binary: Option<String>,
    /// Extra arguments given to `devcluster serve`.
    pub server_args: Vec<String>,
    /// One entry per mode, in the order run.
    pub runs: Vec<RunResult>,
}

/// The whole result file.
pub type Report = Envelope<Results>;

/// A server to benchmark: its address and, for a child process, its pid.
pub struct Server {
    addr: SocketAddr,
    token: Option<String>,
    scratch: Option<PathBuf>,
    pid: Option<u32>,
    child: Option<ChildProcess>,
    in_process: Option<devcluster::DevCluster>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.addr)
            .field("pid", &self.pid)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Starts `devcluster serve` from `binary` with its default settings plus `extra_args`,
    /// logging its stderr to `log`; requests carry the admin token from its kubeconfig.
    pub async fn spawn(
        binary: &std::path::Path,
        extra_args: &[String],
        log: Option<PathBuf>,
    ) -> Result<Self, BenchError> {
        let scratch = std::env::temp_dir().join(format!("bench-devcluster-{}", std::process::id()));
        let kubeconfig = scratch.join("kubeconfig");
        let spec = SpawnSpec {
            program: binary.to_path_buf(),
            args: vec![
                "serve".into(),
                "--addr".into(),
                "127.0.0.1:0".into(),
                "--kubeconfig".into(),
                kubeconfig.display().to_string(),
            ]
            .into_iter()
            .chain(extra_args.iter().cloned())
            .collect(),
            env: Vec::new(),
            log,
        };
        let (child, rest) = ChildProcess::spawn(&spec, "ready ", Duration::from_mins(1)).await?;
        let addr: SocketAddr = rest.parse().map_err(|e| BenchError::Spawn {
            program: binary.display().to_string(),
            detail: format!("ready line address {rest:?} is not host:port: {e}"),
        })?;
        let token = read_kubeconfig_token(&kubeconfig)?;
        Ok(Self {
            addr,
            token,
            scratch: Some(scratch),
            pid: Some(child.pid()),
            child: Some(child),
            in_process: None,
        })
    }

    /// Starts a server inside this process with the request path `devcluster serve` has by
    /// default (authentication and RBAC, admission webhooks; no simulators).
    pub async fn in_process() -> Result<Self, BenchError> {
        let dc = devcluster::DevCluster::builder()
            .rbac(true)
            .admission_webhooks(true)
            .start()
            .await?;
        let token = read_kubeconfig_token(dc.kubeconfig_path())?;
        Ok(Self {
            addr: dc.addr(),
            token,
            scratch: None,
            pid: None,
            child: None,
            in_process: Some(dc),
        })
    }

    /// The listen address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A new connection that sends the server's admin token.
    pub async fn connect(&self) -> Result<Conn, BenchError> {
        connect(self.addr, self.token.as_deref()).await
    }

    /// The child's pid (process mode).
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// Stops the server.
    pub async fn stop(mut self) -> Result<(), BenchError> {
        if let Some(dc) = self.in_process.take() {
            dc.shutdown().await;
        }
        match self.child.take() {
            Some(c) => c.stop(Duration::from_secs(10)).await.map(drop),
            None => Ok(()),
        }
    }
}

impl Drop for Server {
    /// A server dropped without [`Server::stop`] (a failed run) is killed (the child process
    /// is killed on drop) and its scratch directory removed.
    fn drop(&mut self) {
        if let Some(dir) = &self.scratch {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

async fn connect(addr: SocketAddr, token: Option<&str>) -> Result<Conn, BenchError> {
    let c = Conn::connect(addr).await?;
    Ok(match token {
        Some(t) => c.with_token(t),
        None => c,
    })
}

/// The bearer token of the first user in a kubeconfig's text (`token: ...`), if any.
pub fn kubeconfig_token(text: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let v = l.trim_start().strip_prefix("token:")?.trim();
        let v = v.trim_matches(|c| c == '"' || c == '\'');
        (!v.is_empty()).then(|| v.to_string())
    })
}

fn read_kubeconfig_token(path: &std::path::Path) -> Result<Option<String>, BenchError> {
    std::fs::read_to_string(path)
        .map(|t| kubeconfig_token(&t))
        .map_err(|source| BenchError::Proc {
            path: path.to_path_buf(),
            source,
        })
}

fn configmap_body(name: &str, payload: &str) -> Bytes {
    Bytes::from(format!(
        r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{name}","labels":{{"app.kubernetes.io/part-of":"bench"}}}},"data":{{"payload":"{payload}"}}}}"#
    ))
}

async fn create_namespace(conn: &mut Conn, ns: &str) -> Result<(), BenchError> {
    let body = Bytes::from(format!(
        r#"{{"apiVersion":"v1","kind":"Namespace","metadata":{{"name":"{ns}"}}}}"#
    ));
    let (status, bytes) = conn
        .call(Method::POST, "/api/v1/namespaces", Some(body))
        .await?;
    match status {
        201 | 409 => Ok(()),
        s => Err(BenchError::Status {
            method: "POST".into(),
            path: "/api/v1/namespaces".into(),
            status: s,
            expected: 201,
            body: String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned(),
        }),
    }
}

/// A batch of `ConfigMap` creates issued by a pool of workers.
#[derive(Debug, Clone)]
pub struct CreateBatch {
    /// The server.
    pub addr: SocketAddr,
    /// Bearer token to send, if the server needs one.
    pub token: Option<String>,
    /// Namespace to create in (must exist).
    pub namespace: String,
    /// Objects are named `<prefix>-<index>`.
    pub prefix: String,
    /// Number of creates.
    pub count: usize,
    /// Workers, each with its own kept-alive connection (opened before the clock starts).
    pub concurrency: usize,
    /// Bytes of filler data per object.
    pub payload_bytes: usize,
    /// Give up after this long.
    pub deadline: Duration,
}

impl CreateBatch {
    fn new(server: &Server, namespace: &str, prefix: &str, count: usize, cfg: &Config) -> Self {
        Self {
            addr: server.addr,
            token: server.token.clone(),
            namespace: namespace.into(),
            prefix: prefix.into(),
            count,
            concurrency: cfg.concurrency,
            payload_bytes: cfg.payload_bytes,
            deadline: cfg.deadline(),
        }
    }

    /// Issues the creates and measures them.
    pub async fn run(&self) -> Result<WriteResult, BenchError> {
        self.run_timed().await.map(|(r, _)| r)
    }

    /// [`Self::run`], also returning when the clock started (the workers were released).
    async fn run_timed(&self) -> Result<(WriteResult, Instant), BenchError> {
        let n = self.count;
        let workers = self.concurrency.min(n).max(1);
        let mut conns = Vec::with_capacity(workers);
        for _ in 0..workers {
            conns.push(connect(self.addr, self.token.as_deref()).await?);
        }
        let next = Arc::new(AtomicUsize::new(0));
        let path: Arc<str> = format!("/api/v1/namespaces/{}/configmaps", self.namespace).into();
        let prefix: Arc<str> = self.prefix.as_str().into();
        let payload: Arc<str> = "x".repeat(self.payload_bytes).into();
        let start = Instant::now();
        let mut tasks = Vec::with_capacity(workers);
        for conn in conns {
            tasks.push(tokio::spawn(create_worker(
                conn,
                next.clone(),
                n,
                path.clone(),
                prefix.clone(),
                payload.clone(),
            )));
        }
        let joined = tokio::time::timeout(self.deadline, futures::future::join_all(tasks))
            .await
            .map_err(|_| BenchError::Timeout {
                phase: format!("creates in {}", self.namespace),
                seconds: self.deadline.as_secs(),
                detail: format!("{} of {n} issued", next.load(Ordering::Relaxed).min(n)),
            })?;
        let elapsed = start.elapsed();
        let mut r = WriteResult {
            requested: n,
            concurrency: workers,
            ..WriteResult::default()
        };
        let mut all = Vec::with_capacity(n);
        for j in joined {
            let w = j.map_err(|e| BenchError::Http {
                method: "POST".into(),
                path: path.to_string(),
                detail: format!("worker failed: {e}"),
            })?;
            all.extend(w.latencies_us);
            r.ok += w.ok;
            r.failed += w.failed;
            if r.first_error.is_none() {
                r.first_error = w.first_error;
            }
        }
        r.elapsed_s = elapsed.as_secs_f64();
        r.per_second = rate(r.ok, elapsed);
        r.latency = LatencySummary::from_micros(&all);
        Ok((r, start))
    }
}

/// What one create worker did.
struct WorkerOutcome {
    latencies_us: Vec<u64>,
    ok: u64,
    failed: u64,
    first_error: Option<String>,
}

async fn create_worker(
    mut conn: Conn,
    next: Arc<AtomicUsize>,
    total: usize,
    path: Arc<str>,
    prefix: Arc<str>,
    payload: Arc<str>,
) -> WorkerOutcome {
    let mut out = WorkerOutcome {
        latencies_us: Vec::new(),
        ok: 0,
        failed: 0,
        first_error: None,
    };
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= total {
            break;
        }
        let body = configmap_body(&format!("{prefix}-{i}"), &payload);
        let t = Instant::now();
        let r = conn.call(Method::POST, &path, Some(body)).await;
        out.latencies_us
            .push(u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX));
        match r {
            Ok((201, _)) => out.ok += 1,
            Ok((status, b)) => {
                out.failed += 1;
                out.first_error.get_or_insert_with(|| {
                    format!(
                        "status {status}: {}",
                        String::from_utf8_lossy(&b[..b.len().min(200)])
                    )
                });
            }
            Err(e) => {
                out.failed += 1;
                out.first_error.get_or_insert_with(|| e.to_string());
                // The connection is unusable; stop this worker.
                break;
            }
        }
    }
    out
}
/// Samples the server process (if any) and the bench process over a phase.
struct PhaseUsage {
    server: Option<Sampler>,
    bench: Sampler,
}

impl PhaseUsage {
    fn start(server_pid: Option<u32>) -> Result<Self, BenchError> {
        Ok(Self {
            server: server_pid
                .map(|p| Sampler::start(p, SAMPLE_EVERY))
                .transpose()?,
            bench: Sampler::start(std::process::id(), SAMPLE_EVERY)?,
        })
    }

    fn finish(self) -> Result<(Option<Usage>, Usage), BenchError> {
        Ok((
            self.server.map(Sampler::finish).transpose()?,
            self.bench.finish()?,
        ))
    }
}

async fn write_phase(
    server: &Server,
    admin: &mut Conn,
    cfg: &Config,
) -> Result<WritePhase, BenchError> {
    if cfg.warmup > 0 {
        CreateBatch::new(server, NS_WARMUP, "warm", cfg.warmup, cfg)
            .run()
            .await?;
    }
    accounting::reset(admin).await?;
    let usage = PhaseUsage::start(server.pid())?;
    let result = CreateBatch::new(server, NS_WRITES, "w", cfg.writes, cfg)
        .run()
        .await?;
    let (server_process, bench_process) = usage.finish()?;
    let stats = accounting::fetch(admin).await?;
    Ok(WritePhase {
        result,
        server: accounting::summarize(&stats),
        server_process,
        bench_process,
    })
}

#[derive(Deserialize)]
struct ListMeta {
    #[serde(rename = "resourceVersion", default)]
    resource_version: String,
    #[serde(rename = "continue", default)]
    continue_token: Option<String>,
}

#[derive(Deserialize)]
struct ListHead {
    metadata: ListMeta,
    #[serde(default)]
    items: Vec<serde::de::IgnoredAny>,
}

fn parse_list(what: &str, body: &[u8]) -> Result<ListHead, BenchError> {
    serde_json::from_slice(body).map_err(|e| BenchError::Decode {
        what: what.to_string(),
        detail: e.to_string(),
    })
}

/// What one watch stream received.
#[derive(Debug, Default)]
struct WatcherOutcome {
    counts: EventCounts,
    last_delivery: Option<Instant>,
    ended_early: bool,
}

async fn read_watch(
    resp: http::Response<hyper::body::Incoming>,
    mut want: tokio::sync::watch::Receiver<Option<u64>>,
    until: tokio::time::Instant,
) -> WatcherOutcome {
    let mut out = WatcherOutcome::default();
    let mut scanner = EventScanner::default();
    let mut body = resp.into_body();
    let mut want_open = true;
    loop {
        if let Some(target) = *want.borrow()
            && out.counts.added >= target
        {
            return out;
        }
        tokio::select! {
            frame = body.frame() => {
                let Some(Ok(frame)) = frame else {
                    out.ended_early = true;
                    return out;
                };
                if let Some(data) = frame.data_ref()
                    && scanner.feed(data) > 0
                {
                    out.last_delivery = Some(Instant::now());
                    out.counts = scanner.counts();
                }
            }
            r = want.changed(), if want_open => want_open = r.is_ok(),
            () = tokio::time::sleep_until(until) => return out,
        }
    }
}

async fn watch_phase(
    server: &Server,
    admin: &mut Conn,
    cfg: &Config,
) -> Result<WatchPhase, BenchError> {
    let list_path = format!("/api/v1/namespaces/{NS_WATCH}/configmaps");
    let body = admin
        .call_expect(Method::GET, &list_path, None, 200)
        .await?;
    let rv = parse_list(&list_path, &body)?.metadata.resource_version;
    let watch_path = format!("{list_path}?watch=true&resourceVersion={rv}&timeoutSeconds=3600");
    // The number of events each watcher waits for, known once the writes are done.
    let (want_tx, want) = tokio::sync::watch::channel(None::<u64>);
    let until = tokio::time::Instant::now() + cfg.deadline();
    let mut readers = Vec::with_capacity(cfg.watchers);
    for _ in 0..cfg.watchers {
        let mut conn = server.connect().await?;
        let resp = conn.send(Method::GET, &watch_path, None).await?;
        if resp.status() != 200 {
            return Err(BenchError::Status {
                method: "GET".into(),
                path: watch_path,
                status: resp.status().as_u16(),
                expected: 200,
                body: String::new(),
            });
        }
        let want = want.clone();
        readers.push(tokio::spawn(async move {
            let out = read_watch(resp, want, until).await;
            drop(conn);
            out
        }));
    }
    accounting::reset(admin).await?;
    let usage = PhaseUsage::start(server.pid())?;
    let (writes, first_write) = CreateBatch::new(server, NS_WATCH, "e", cfg.watch_writes, cfg)
        .run_timed()
        .await?;
    want_tx.send_replace(Some(writes.ok));
    let outcomes = futures::future::join_all(readers).await;
    let (server_process, bench_process) = usage.finish()?;
    let stats = accounting::fetch(admin).await?;
    let mut phase = WatchPhase {
        watchers: cfg.watchers,
        expected_events: writes.ok * cfg.watchers as u64,
        writes,
        min_per_watcher: u64::MAX,
        server: accounting::summarize(&stats),
        server_process,
        bench_process,
        ..WatchPhase::default()
    };
    let mut last = first_write;
    for o in outcomes {
        let o = o.map_err(|e| BenchError::Http {
            method: "GET".into(),
            path: watch_path.clone(),
            detail: format!("watch reader failed: {e}"),
        })?;
        phase.counts.add(&o.counts);
        phase.min_per_watcher = phase.min_per_watcher.min(o.counts.added);
        if o.counts.added >= phase.writes.ok {
            phase.watchers_complete += 1;
        } else if o.ended_early {
            phase.streams_ended_early += 1;
        }
        if let Some(t) = o.last_delivery {
            last = last.max(t);
        }
    }
    if phase.min_per_watcher == u64::MAX {
        phase.min_per_watcher = 0;
    }
    phase.delivered_events = phase.counts.added;
    let span = last.saturating_duration_since(first_write);
    phase.first_write_to_last_delivery_s = span.as_secs_f64();
    phase.events_per_second = rate(phase.delivered_events, span);
    Ok(phase)
}

async fn list_phase(
    server: &Server,
    admin: &mut Conn,
    cfg: &Config,
) -> Result<ListPhase, BenchError> {
    let fill = CreateBatch::new(server, NS_LIST, "l", cfg.list_objects, cfg)
        .run()
        .await?;
    let path = format!("/api/v1/namespaces/{NS_LIST}/configmaps");
    let mut conn = server.connect().await?;
    // One untimed list to warm the connection and allocator.
    let warm = conn.call_expect(Method::GET, &path, None, 200).await?;
    let items = parse_list(&path, &warm)?.items.len();
    accounting::reset(admin).await?;
    let mut unpaged = Vec::with_capacity(cfg.list_runs);
    let mut decode = Vec::with_capacity(cfg.list_runs);
    let mut typed = Vec::with_capacity(cfg.list_runs);
    let mut response_bytes = 0;
    for _ in 0..cfg.list_runs {
        let t = Instant::now();
        let body = conn.call_expect(Method::GET, &path, None, 200).await?;
        unpaged.push(ms(t.elapsed()));
        response_bytes = body.len();
        let t = Instant::now();
        let v: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| BenchError::Decode {
                what: path.clone(),
                detail: e.to_string(),
            })?;
        decode.push(ms(t.elapsed()));
        let n = v["items"].as_array().map_or(0, Vec::len);
        drop(v);
        let t = Instant::now();
        let list: k8s_openapi::List<ConfigMap> =
            serde_json::from_slice(&body).map_err(|e| BenchError::Decode {
                what: path.clone(),
                detail: format!("not a ConfigMapList: {e}"),
            })?;
        typed.push(ms(t.elapsed()));
        if n != items || list.items.len() != items {
            return Err(BenchError::Decode {
                what: path.clone(),
                detail: format!("an unpaged list returned {n} items, the first one {items}"),
            });
        }
    }
    let mut paged = Vec::with_capacity(cfg.list_runs);
    let mut page_count = 0;
    for _ in 0..cfg.list_runs {
        let t = Instant::now();
        let mut token: Option<String> = None;
        let mut seen = 0;
        page_count = 0;
        loop {
            let p = match &token {
                None => format!("{path}?limit={}", cfg.page_size),
                Some(c) => format!("{path}?limit={}&continue={c}", cfg.page_size),
            };
            let body = conn.call_expect(Method::GET, &p, None, 200).await?;
            let head = parse_list(&p, &body)?;
            seen += head.items.len();
            page_count += 1;
            match head.metadata.continue_token.filter(|c| !c.is_empty()) {
                Some(c) => token = Some(c),
                None => break,
            }
        }
        paged.push(ms(t.elapsed()));
        if seen != items {
            return Err(BenchError::Decode {
                what: path.clone(),
                detail: format!("a paged list returned {seen} items, the unpaged one {items}"),
            });
        }
    }
    let stats = accounting::fetch(admin).await?;
    Ok(ListPhase {
        objects: cfg.list_objects,
        fill,
        items_per_list: items,
        response_bytes,
        unpaged: Timings::of(unpaged),
        client_decode: Timings::of(decode),
        client_typed_decode: Timings::of(typed),
        page_size: cfg.page_size,
        pages: page_count,
        paged: Timings::of(paged),
        server: accounting::summarize(&stats),
    })
}

/// Runs every phase against a started server, then stops it.
pub async fn run_against(
    server: Server,
    mode: Mode,
    cfg: &Config,
) -> Result<RunResult, BenchError> {
    cfg.validate()?;
    let load_start = LoadAverage::now()?;
    let mut admin = server.connect().await?;
    for ns in [NS_WARMUP, NS_WRITES, NS_WATCH, NS_LIST] {
        create_namespace(&mut admin, ns).await?;
    }
    let writes = write_phase(&server, &mut admin, cfg).await?;
    let watch = watch_phase(&server, &mut admin, cfg).await?;
    let list = list_phase(&server, &mut admin, cfg).await?;
    let server_pid = server.pid();
    drop(admin);
    server.stop().await?;
    Ok(RunResult {
        mode,
        round: 1,
        client: CLIENT.into(),
        server_pid,
        load_average_start: load_start,
        load_average_end: LoadAverage::now()?,
        writes,
        watch,
        list,
    })
}

/// Starts the server for `mode` and runs every phase against it.
pub async fn run_mode(
    mode: Mode,
    cfg: &Config,
    server: &ServerOptions,
) -> Result<RunResult, BenchError> {
    let server = match mode {
        Mode::Process => {
            let bin = server.binary.as_deref().ok_or_else(|| BenchError::Config {
                field: "--server-bin".into(),
                detail: "process mode needs the devcluster binary".into(),
            })?;
            Server::spawn(bin, &server.extra_args, server.log.clone()).await?
        }
        Mode::InProcess => Server::in_process().await?,
    };
    run_against(server, mode, cfg).await
}

/// A target: name, unit, direction, threshold and how to read the value from a run.
type Metric = (
    &'static str,
    &'static str,
    Better,
    f64,
    fn(&RunResult) -> f64,
);

/// The targets, checked once per mode against the median over that mode's rounds.
pub fn check_targets(runs: &[RunResult]) -> Vec<TargetCheck> {
    let mut modes: Vec<Mode> = Vec::new();
    for r in runs {
        if !modes.contains(&r.mode) {
            modes.push(r.mode);
        }
    }
    let metrics: [Metric; 3] = [
        (
            "writes_per_second",
            "creates/s",
            Better::Higher,
            TARGET_WRITES_PER_S,
            |r| r.writes.result.per_second,
        ),
        (
            "watch_events_per_second",
            "events/s",
            Better::Higher,
            TARGET_WATCH_EVENTS_PER_S,
            |r| r.watch.events_per_second,
        ),
        (
            "list_10000_unpaged_median_ms",
            "ms",
            Better::Lower,
            TARGET_LIST_MS,
            |r| r.list.unpaged.median_ms,
        ),
    ];
    let mut out = Vec::new();
    for mode in modes {
        for (name, unit, better, target, value) in metrics {
            let samples: Vec<f64> = runs.iter().filter(|r| r.mode == mode).map(value).collect();
            let v = median(&samples).unwrap_or_default();
            let mut c = TargetCheck::new(name, mode.name(), unit, better, target, v);
            c.samples = samples;
            out.push(c);
        }
    }
    out
}

/// How to start the server in process mode.
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    /// The `devcluster` binary.
    pub binary: Option<PathBuf>,
    /// Arguments added after `serve --addr 127.0.0.1:0 --kubeconfig <tmp>`.
    pub extra_args: Vec<String>,
    /// Where its stderr goes.
    pub log: Option<PathBuf>,
}

/// Runs the suite in each of `modes` and assembles the result file.
pub async fn run(
    cfg: &Config,
    modes: &[Mode],
    server: &ServerOptions,
) -> Result<Report, BenchError> {
    cfg.validate()?;
    let machine = MachineFacts::collect()?;
    let started_at = now_utc();
    let mut runs = Vec::with_capacity(modes.len() * cfg.rounds);
    for round in 1..=cfg.rounds {
        for &mode in modes {
            let mut r = run_mode(mode, cfg, server).await?;
            r.round = round;
            runs.push(r);
        }
    }
    let targets = check_targets(&runs);
    Ok(Envelope {
        schema: SCHEMA.into(),
        started_at,
        finished_at: now_utc(),
        bench_build: build_profile().into(),
        machine,
        load_average_at_end: LoadAverage::now()?,
        results: Results {
            config: cfg.clone(),
            server_binary: server.binary.as_ref().map(|p| p.display().to_string()),
            server_args: server.extra_args.clone(),
            runs,
        },
        targets,
    })
}

fn f0(v: f64) -> String {
    format!("{v:.0}")
}

fn f2(v: f64) -> String {
    format!("{v:.2}")
}

fn per_unit_us(u: Option<&Usage>, units: u64) -> String {
    match u {
        #[allow(clippy::cast_precision_loss)]
        Some(u) if units > 0 => format!("{:.1}", u.cpu_s * 1e6 / units as f64),
        _ => "-".into(),
    }
}

fn cpu(u: Option<&Usage>) -> String {
    u.map_or_else(|| "-".into(), |u| format!("{:.2}", u.cores))
}

/// One table row: label and how to read the cell from a run.
type Row = (&'static str, fn(&RunResult) -> String);

fn server_mean(verbs: &[ServerVerb], key: &str) -> String {
    verbs
        .iter()
        .find(|v| v.key == key)
        .map_or_else(|| "-".into(), |v| f2(v.mean_ms))
}

fn write_rows() -> Vec<Row> {
    vec![
        ("load average at run start", |r| {
            r.load_average_start.to_string()
        }),
        ("writes: creates/s", |r| f0(r.writes.result.per_second)),
        ("writes: ok / failed", |r| {
            format!("{} / {}", r.writes.result.ok, r.writes.result.failed)
        }),
        ("writes: latency p50 ms", |r| {
            f2(r.writes.result.latency.p50_ms)
        }),
        ("writes: latency p99 ms", |r| {
            f2(r.writes.result.latency.p99_ms)
        }),
        ("writes: server mean handling ms", |r| {
            server_mean(&r.writes.server, "create configmaps")
        }),
        ("writes: server cores busy", |r| {
            cpu(r.writes.server_process.as_ref())
        }),
        ("writes: server CPU us per create", |r| {
            per_unit_us(r.writes.server_process.as_ref(), r.writes.result.ok)
        }),
        ("writes: bench cores busy", |r| {
            f2(r.writes.bench_process.cores)
        }),
    ]
}

fn watch_rows() -> Vec<Row> {
    vec![
        ("watch: events/s delivered", |r| {
            f0(r.watch.events_per_second)
        }),
        ("watch: delivered / expected", |r| {
            format!("{} / {}", r.watch.delivered_events, r.watch.expected_events)
        }),
        ("watch: watchers complete", |r| {
            format!("{} / {}", r.watch.watchers_complete, r.watch.watchers)
        }),
        ("watch: creates/s while watched", |r| {
            f0(r.watch.writes.per_second)
        }),
        ("watch: server cores busy", |r| {
            cpu(r.watch.server_process.as_ref())
        }),
        ("watch: server CPU us per event", |r| {
            per_unit_us(r.watch.server_process.as_ref(), r.watch.delivered_events)
        }),
        ("watch: bench cores busy", |r| {
            f2(r.watch.bench_process.cores)
        }),
    ]
}

fn list_rows() -> Vec<Row> {
    vec![
        ("list: unpaged median ms", |r| f2(r.list.unpaged.median_ms)),
        ("list: unpaged min / max ms", |r| {
            format!(
                "{} / {}",
                f2(r.list.unpaged.min_ms),
                f2(r.list.unpaged.max_ms)
            )
        }),
        ("list: items, MiB per response", |r| {
            #[allow(clippy::cast_precision_loss)]
            let mib = r.list.response_bytes as f64 / 1_048_576.0;
            format!("{}, {mib:.1}", r.list.items_per_list)
        }),
        ("list: server mean handling ms", |r| {
            server_mean(&r.list.server, "list configmaps")
        }),
        ("list: client decode to Value, median ms", |r| {
            f2(r.list.client_decode.median_ms)
        }),
        ("list: client typed decode, median ms", |r| {
            f2(r.list.client_typed_decode.median_ms)
        }),
        ("list: paged median ms", |r| {
            format!("{} ({} pages)", f2(r.list.paged.median_ms), r.list.pages)
        }),
        ("list: fill creates/s", |r| f0(r.list.fill.per_second)),
    ]
}

/// The console summary: machine, one column per mode, and the targets.
pub fn render(report: &Report) -> String {
    let m = &report.machine;
    let mut out = format!(
        "machine: {} cores, {}, {} MiB, kernel {}; load at start {}, at end {}; bench build {}\nclient: {CLIENT}\n\n",
        m.nproc,
        m.cpu_model,
        m.mem_total_mib,
        m.kernel,
        m.load_average_at_start,
        report.load_average_at_end,
        report.bench_build,
    );
    let runs = &report.results.runs;
    let rounds = runs.iter().map(|r| r.round).max().unwrap_or(1);
    let mut headers = vec!["metric".to_string()];
    headers.extend(runs.iter().map(|r| {
        if rounds > 1 {
            format!("{} #{}", r.mode.name(), r.round)
        } else {
            r.mode.name().to_string()
        }
    }));
    let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
    let mut t = Table::new(&headers);
    for (label, cell) in write_rows()
        .into_iter()
        .chain(watch_rows())
        .chain(list_rows())
    {
        let mut cells = vec![label.to_string()];
        cells.extend(runs.iter().map(cell));
        t.row(cells);
    }
    out.push_str(&t.render());
    out.push('\n');
    out.push_str(&render_targets(&report.targets));
    out
}

/// The targets table.
pub fn render_targets(targets: &[TargetCheck]) -> String {
    let mut tt = Table::new(&["target", "mode", "value", "target", "met"]);
    for c in targets {
        let cmp = match c.better {
            Better::Higher => ">=",
            Better::Lower => "<",
        };
        tt.row(vec![
            c.name.clone(),
            c.mode.clone(),
            format!("{:.1} {}", c.value, c.unit),
            format!("{cmp} {}", c.target),
            if c.met { "yes".into() } else { "NO".into() },
        ]);
    }
    tt.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_run(mode: Mode, writes_per_s: f64, events_per_s: f64, list_ms: f64) -> RunResult {
        RunResult {
            mode,
            round: 1,
            client: CLIENT.into(),
            server_pid: None,
            load_average_start: LoadAverage::default(),
            load_average_end: LoadAverage::default(),
            writes: WritePhase {
                result: WriteResult {
                    per_second: writes_per_s,
                    ..WriteResult::default()
                },
                ..WritePhase::default()
            },
            watch: WatchPhase {
                events_per_second: events_per_s,
                ..WatchPhase::default()
            },
            list: ListPhase {
                unpaged: Timings::of(vec![list_ms]),
                ..ListPhase::default()
            },
        }
    }

    #[test]
    fn config_validation_names_the_flag() {
        assert!(Config::default().validate().is_ok());
        let e = Config {
            watchers: 0,
            ..Config::default()
        }
        .validate()
        .unwrap_err();
        assert!(e.to_string().starts_with("--watchers:"), "{e}");
        let e = Config {
            concurrency: 5000,
            ..Config::default()
        }
        .validate()
        .unwrap_err();
        assert!(e.to_string().contains("at most 1024"), "{e}");
    }

    #[test]
    fn token_from_kubeconfig() {
        let kc = "apiVersion: v1\nkind: Config\nusers:\n- name: admin\n  user:\n    token: devcluster-admin-token\n";
        assert_eq!(
            kubeconfig_token(kc).as_deref(),
            Some("devcluster-admin-token")
        );
        assert_eq!(
            kubeconfig_token("users:\n- user:\n    token: \"abc\"\n").as_deref(),
            Some("abc")
        );
        assert_eq!(kubeconfig_token("users:\n- user:\n    username: x\n"), None);
    }

    #[test]
    fn timings_median_min_max() {
        let t = Timings::of(vec![30.0, 10.0, 20.0, 40.0]);
        assert!((t.median_ms - 25.0).abs() < 1e-9);
        assert!((t.min_ms - 10.0).abs() < 1e-9);
        assert!((t.max_ms - 40.0).abs() < 1e-9);
        assert_eq!(t.samples_ms, vec![30.0, 10.0, 20.0, 40.0]);
    }

    #[test]
    fn targets_per_mode() {
        let runs = [
            sample_run(Mode::Process, 25_000.0, 90_000.0, 40.0),
            sample_run(Mode::InProcess, 15_000.0, 150_000.0, 60.0),
        ];
        let t = check_targets(&runs);
        let met: Vec<(String, String, bool)> = t
            .iter()
            .map(|c| (c.name.clone(), c.mode.clone(), c.met))
            .collect();
        assert_eq!(
            met,
            vec![
                ("writes_per_second".into(), "process".into(), true),
                ("watch_events_per_second".into(), "process".into(), false),
                (
                    "list_10000_unpaged_median_ms".into(),
                    "process".into(),
                    true
                ),
                ("writes_per_second".into(), "in-process".into(), false),
                ("watch_events_per_second".into(), "in-process".into(), true),
                (
                    "list_10000_unpaged_median_ms".into(),
                    "in-process".into(),
                    false
                ),
            ]
        );
    }

    #[test]
    fn targets_use_the_median_of_rounds() {
        let runs = [
            sample_run(Mode::Process, 10_000.0, 90_000.0, 40.0),
            sample_run(Mode::Process, 30_000.0, 200_000.0, 60.0),
            sample_run(Mode::Process, 25_000.0, 80_000.0, 70.0),
        ];
        let t = check_targets(&runs);
        assert_eq!(t.len(), 3);
        assert!((t[0].value - 25_000.0).abs() < 1e-9);
        assert_eq!(t[0].samples, vec![10_000.0, 30_000.0, 25_000.0]);
        assert!(t[0].met);
        assert!((t[1].value - 90_000.0).abs() < 1e-9);
        assert!(!t[1].met);
        assert!((t[2].value - 60.0).abs() < 1e-9);
        assert!(!t[2].met);
    }

    #[test]
    fn result_json_shape() {
        let runs = vec![sample_run(Mode::Process, 25_000.0, 120_000.0, 12.0)];
        let report = Report {
            schema: SCHEMA.into(),
            started_at: "2026-01-01T00:00:00Z".into(),
            finished_at: "2026-01-01T00:01:00Z".into(),
            bench_build: "release".into(),
            machine: MachineFacts {
                nproc: 2,
                cpu_model: "cpu".into(),
                ..MachineFacts::default()
            },
            load_average_at_end: LoadAverage::default(),
            targets: check_targets(&runs),
            results: Results {
                config: Config::default(),
                server_binary: Some("/x/devcluster".into()),
                server_args: vec!["--no-simulators".into()],
                runs,
            },
        };
        let v = serde_json::to_value(&report).unwrap();
        assert_eq!(v["schema"], "bench.devcluster/v1");
        assert_eq!(v["machine"]["nproc"], 2);
        for key in ["one", "five", "fifteen"] {
            assert!(v["machine"]["load_average_at_start"][key].is_number());
        }
        assert_eq!(v["results"]["config"]["writes"], 50_000);
        let run = &v["results"]["runs"][0];
        assert_eq!(run["mode"], "process");
        assert_eq!(run["writes"]["result"]["per_second"], 25_000.0);
        for key in ["p50_ms", "p99_ms", "count"] {
            assert!(run["writes"]["result"]["latency"][key].is_number(), "{key}");
        }
        assert!(run["watch"]["events_per_second"].is_number());
        assert!(run["watch"]["counts"]["added"].is_number());
        assert!(run["list"]["unpaged"]["median_ms"].is_number());
        assert!(run["list"]["paged"]["samples_ms"].is_array());
        assert!(run["writes"]["server_process"].is_null());
        assert_eq!(v["targets"].as_array().unwrap().len(), 3);
        assert_eq!(v["targets"][0]["met"], true);
        let back: Report = serde_json::from_value(v).unwrap();
        assert_eq!(back, report);
        let text = render(&back);
        assert!(text.contains("writes: creates/s"));
        assert!(text.contains("25000"));
    }
}
