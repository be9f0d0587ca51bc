//! `bench operator`: the operator's scale benchmark.
//!
//! Per family and size N, a `devcluster serve` process (with the simulators the family needs)
//! and an `agentic-operator run` process are started; the bench installs the CRDs and
//! prerequisites, creates N custom resources in one burst and waits until all have settled.
//! It reports the time to settle, the operator's API requests and writes per object (from the
//! dev cluster's request accounting), the operator's peak RSS and CPU seconds (from `/proc`),
//! the writes the operator issues when it relists after an idle period, and the operator's
//! write rate during the burst as a fraction of the server's raw write rate, measured with a
//! burst of as many plain creates as the operator issued writes.
//!
//! One module per family says what the family creates, what "settled" means and which
//! prerequisites it needs: [`sessions`], [`evaluations`], [`labs`].
//!
//! The dev cluster's accounting is keyed by verb and resource, not by client. The bench's
//! own requests are counted by the bench and subtracted. The simulators of every family run
//! as a separate `devcluster simulate` process behind a counting proxy ([`crate::proxy`]):
//! they write resources the operator writes too (pods the scheduler binds by patching
//! `spec.nodeName`, claims, Applications, Secrets), so only counting their requests tells
//! the two apart ([`attribute_measured`]). The rest is the operator's.

pub mod evaluations;
pub mod labs;
pub mod sessions;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use devcluster::StatsSnapshot;
use http::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::BenchError;
use crate::accounting;
use crate::http::Conn;
use crate::machine::{LoadAverage, MachineFacts};
use crate::process::{ChildProcess, SpawnSpec};
use crate::procfs::{Sampler, Usage};
use crate::proxy::CountingProxy;
use crate::report::{Better, Envelope, Table, TargetCheck, build_profile, now_utc};

/// Namespace the benchmarked custom resources live in.
pub const NAMESPACE: &str = "bench";

/// A controller family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// `AgenticSession`s, settled when `status.phase` is `Running`.
    Sessions,
    /// Evaluation `Experiment`s (`testbench.agentic-layer.ai`), settled when `Ready` and
    /// every generated object is listed.
    Evaluations,
    /// Lab `Experiment`s (`experiments.illm.io`) of two targets, settled when `Complete`.
    Labs,
}

impl Family {
    /// Every family, in the order `--family all` runs them.
    pub const ALL: [Self; 3] = [Self::Sessions, Self::Evaluations, Self::Labs];

    /// Name used by `--controllers` and in results.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sessions => "sessions",
            Self::Evaluations => "evaluations",
            Self::Labs => "labs",
        }
    }

    /// Simulators the family needs.
    pub fn simulators(self) -> &'static str {
        match self {
            Self::Sessions => sessions::SIMULATORS,
            Self::Evaluations => evaluations::SIMULATORS,
            Self::Labs => labs::SIMULATORS,
        }
    }

    /// Burst sizes when `--sizes` is not given.
    pub fn default_sizes(self) -> Vec<usize> {
        match self {
            Self::Sessions | Self::Evaluations => vec![100, 1000, 10_000],
            Self::Labs => vec![100, 1000],
        }
    }

    /// API path of the family's custom resources in [`NAMESPACE`].
    pub fn collection(self) -> String {
        match self {
            Self::Sessions => sessions::collection(),
            Self::Evaluations => evaluations::collection(),
            Self::Labs => labs::collection(),
        }
    }

    /// Accounting resource of the family's custom resources.
    pub fn resource(self) -> &'static str {
        match self {
            Self::Sessions => sessions::RESOURCE,
            Self::Evaluations => evaluations::RESOURCE,
            Self::Labs => labs::RESOURCE,
        }
    }

    /// The `i`th custom resource of a burst.
    pub fn object(self, i: usize) -> Value {
        match self {
            Self::Sessions => sessions::object(i),
            Self::Evaluations => evaluations::object(i),
            Self::Labs => labs::object(i),
        }
    }

    /// Whether a stored custom resource has settled.
    pub fn settled(self, object: &Value) -> bool {
        match self {
            Self::Sessions => sessions::settled(object),
            Self::Evaluations => evaluations::settled(object),
            Self::Labs => labs::settled(object),
        }
    }

    /// Whether a stored custom resource reached a terminal failure (it will never settle).
    pub fn failed(self, object: &Value) -> bool {
        match self {
            Self::Sessions | Self::Evaluations => false,
            Self::Labs => labs::failed(object),
        }
    }
}

/// Requests of one party in a phase, split by verb.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Requests {
    /// All requests.
    pub total: u64,
    /// Write requests (create, update, patch, delete, deletecollection).
    pub writes: u64,
    /// Per verb (`create`, `patch`, `get`, ...), all resources.
    pub by_verb: BTreeMap<String, u64>,
    /// Per `"<verb> <resource>"`.
    pub by_key: BTreeMap<String, u64>,
}

impl Requests {
    fn add(&mut self, key: &str, count: u64) {
        if count == 0 {
            return;
        }
        let verb = key.split(' ').next().unwrap_or(key).to_string();
        self.total += count;
        if devcluster::ops::is_write(&verb) {
            self.writes += count;
        }
        *self.by_verb.entry(verb).or_default() += count;
        *self.by_key.entry(key.to_string()).or_default() += count;
    }
}

/// A phase's requests attributed to the operator and to the simulators; `bench` holds what
/// the bench itself issued (already subtracted from the operator's share).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Attributed {
    /// The operator's requests.
    pub operator: Requests,
    /// The simulators' requests, counted by the proxy in front of them.
    pub simulators: Requests,
    /// The bench's own requests.
    pub bench: Requests,
}

/// Splits an accounting delta by party when the simulators' requests were counted apart
/// (`simulators`, by key, from [`crate::proxy::CountingProxy`]): the bench's and the
/// simulators' counts are subtracted, reads and writes alike, and the rest is the operator's.
pub fn attribute_measured(
    delta: &StatsSnapshot,
    bench: &BTreeMap<String, u64>,
    simulators: &BTreeMap<String, u64>,
) -> Attributed {
    let mut out = Attributed::default();
    for (key, s) in &delta.requests {
        let own = bench.get(key).copied().unwrap_or_default().min(s.count);
        out.bench.add(key, own);
        let sim = simulators
            .get(key)
            .copied()
            .unwrap_or_default()
            .min(s.count - own);
        out.simulators.add(key, sim);
        out.operator.add(key, s.count - own - sim);
    }
    out
}

/// Parameters of a run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Families to measure.
    pub families: Vec<Family>,
    /// Burst sizes; `None` runs each family's [`Family::default_sizes`].
    pub sizes: Option<Vec<usize>>,
    /// Concurrent connections of the creating burst (and of the raw burst).
    pub concurrency: usize,
    /// Seconds to wait for the burst to settle, per 1,000 objects (at least 120 s).
    pub settle_timeout_per_1000_s: u64,
    /// Seconds of quiet before and after the forced relist.
    pub idle_s: u64,
    /// The `devcluster` binary.
    pub server_bin: PathBuf,
    /// The `agentic-operator` binary.
    pub operator_bin: PathBuf,
    /// Directory for kubeconfigs and logs.
    pub work_dir: PathBuf,
    /// The operator's log filter (`RUST_LOG`), e.g. `warn` or `info,kube=debug`.
    pub operator_log: String,
}

/// Checks an `--operator-log` filter: a level (`error`, `warn`, `info`, `debug`, `trace`,
/// `off`) or comma-separated `target=level` directives; returns it unchanged.
pub fn parse_log_filter(filter: &str) -> Result<String, String> {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    let bad = |d: &str| {
        format!(
            "--operator-log: {d:?} is not a log directive; use a level ({}) or \
             TARGET=LEVEL, comma-separated",
            LEVELS.join(", ")
        )
    };
    if filter.trim().is_empty() {
        return Err(bad(filter));
    }
    for d in filter.split(',') {
        let (target, level) = match d.split_once('=') {
            Some((t, l)) => (Some(t), l),
            None => (None, d),
        };
        let target_ok = target.is_none_or(|t| {
            !t.is_empty()
                && t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | ':' | '-'))
        });
        if !target_ok || !LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
            return Err(bad(d));
        }
    }
    Ok(filter.to_string())
}

/// What one family at one size measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    /// The family.
    pub family: Family,
    /// Objects created.
    pub objects: usize,
    /// Seconds from the first create to all objects settled.
    pub settle_s: f64,
    /// Objects settled per second.
    pub settled_per_s: f64,
    /// Seconds the burst of creates itself took.
    pub create_burst_s: f64,
    /// Requests from the first create until settled.
    pub burst: Attributed,
    /// Operator requests per object.
    pub operator_requests_per_object: f64,
    /// Operator writes per object.
    pub operator_writes_per_object: f64,
    /// Operator CPU and memory from the first create until settled.
    pub operator_usage: Usage,
    /// Operator memory after the idle relist (`VmRSS`, MiB).
    pub operator_rss_after_idle_mib: f64,
    /// The kernel's lifetime peak of the operator's memory (`VmHWM`, MiB) read after the idle
    /// relist: the larger of the burst's peak and the relist's.
    #[serde(default)]
    pub operator_peak_rss_with_relist_mib: f64,
    /// Requests in the idle period after watches were cut and resource versions expired.
    pub idle: Attributed,
    /// Requests from a restarted operator over the settled set: from its start until it has
    /// reconciled every object, plus one idle wait.
    #[serde(default)]
    pub restart: Attributed,
    /// The restarted operator's CPU and memory over the same period.
    #[serde(default)]
    pub restart_usage: Usage,
    /// Seconds from starting the operator again until it had reconciled every object.
    #[serde(default)]
    pub restart_reconciled_s: f64,
    /// Creates of the raw burst: as many as the operator issued writes during the burst.
    #[serde(default)]
    pub raw_writes: u64,
    /// Raw write rate of the same server: `raw_writes` config map creates over the same
    /// number of connections, per s (the raw write ceiling).
    pub raw_creates_per_s: f64,
    /// `settled_per_s / raw_creates_per_s` (information).
    pub fraction_of_raw: f64,
    /// The operator's write rate during the burst (writes over the settle time) over
    /// `raw_creates_per_s`; the throughput target is checked on this.
    pub operator_write_rate_fraction_of_raw: f64,
    /// The dev cluster process (the API server alone) from the first create until settled.
    pub server_usage: Usage,
    /// The separate simulators process from the first create until settled
    /// (`server_usage` covers the API server alone).
    #[serde(default)]
    pub simulators_usage: Usage,
    /// The keys the server spent most handling time on during the burst (all clients),
    /// busiest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub server_time: Vec<crate::accounting::ServerVerb>,
}

/// The `top` keys of `s` by total handling time (count × mean), busiest first.
pub fn busiest_by_time(s: &StatsSnapshot, top: usize) -> Vec<crate::accounting::ServerVerb> {
    let mut v = accounting::summarize(s);
    #[allow(clippy::cast_precision_loss)]
    v.sort_by(|a, b| {
        (b.mean_ms * b.count as f64)
            .total_cmp(&(a.mean_ms * a.count as f64))
            .then_with(|| a.key.cmp(&b.key))
    });
    v.truncate(top);
    v
}

/// The result file's `results`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Results {
    /// Concurrent connections of the bursts.
    pub concurrency: usize,
    /// Seconds of each idle wait.
    pub idle_s: u64,
    /// One entry per family and size that settled.
    pub runs: Vec<RunResult>,
    /// Runs that did not settle (or failed otherwise), with the reason.
    #[serde(default)]
    pub failures: Vec<Failure>,
}

/// A family and size that did not produce a result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    /// The family.
    pub family: Family,
    /// Objects created.
    pub objects: usize,
    /// What went wrong (e.g. the settle deadline passed, with how many had settled).
    pub error: String,
}

/// The result file.
pub type Report = Envelope<Results>;

/// Count of the bench's own requests by accounting key.
#[derive(Debug, Default)]
struct Own(std::sync::Mutex<BTreeMap<String, u64>>);

impl Own {
    fn add(&self, key: &str, n: u64) {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(key.to_string())
            .or_default() += n;
    }
    fn take(&self) -> BTreeMap<String, u64> {
        std::mem::take(
            &mut *self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}

fn bench_err(detail: impl std::fmt::Display) -> BenchError {
    BenchError::Config {
        field: "operator".into(),
        detail: detail.to_string(),
    }
}

/// The server's accounting and the simulators' proxied requests over the same interval.
///
/// The proxy counts a request once the server has answered it, so taking the proxy's counts
/// first and the server's snapshot second never attributes to the simulators a request the
/// snapshot lacks. A simulator request answered between the two would be attributed to the
/// operator instead; the pair is therefore re-read until no simulator request was answered
/// between the two reads (the simulators are quiet once everything has settled).
async fn consistent_counts(
    conn: &mut Conn,
    proxy: &CountingProxy,
) -> Result<(StatsSnapshot, BTreeMap<String, u64>), BenchError> {
    let mut simulators = proxy.take();
    let mut attempts = 0;
    loop {
        let stats = accounting::fetch(conn).await?;
        let late = proxy.take();
        attempts += 1;
        let quiet = late.is_empty();
        for (key, count) in late {
            *simulators.entry(key).or_default() += count;
        }
        if quiet || attempts >= 50 {
            return Ok((stats, simulators));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn free_port() -> Result<u16, BenchError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| bench_err(format!("no free port: {e}")))
}

async fn post(conn: &mut Conn, path: &str, body: &Value) -> Result<(), BenchError> {
    let (status, bytes) = conn
        .call(Method::POST, path, Some(Bytes::from(body.to_string())))
        .await?;
    if status == 201 || status == 200 || status == 409 {
        Ok(())
    } else {
        Err(BenchError::Status {
            method: "POST".into(),
            path: path.into(),
            status,
            expected: 201,
            body: String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned(),
        })
    }
}

/// The documents of a multi-document YAML stream (`what` names it in errors), skipping
/// empty ones.
pub fn yaml_documents(what: &str, text: &str) -> Result<Vec<Value>, BenchError> {
    let mut docs = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(text) {
        let v = Value::deserialize(doc).map_err(|e| BenchError::Decode {
            what: what.into(),
            detail: e.to_string(),
        })?;
        if !v.is_null() {
            docs.push(v);
        }
    }
    Ok(docs)
}

/// The operator's CRDs, from `agentic-operator crd`.
fn operator_crds(operator_bin: &PathBuf) -> Result<Vec<Value>, BenchError> {
    let out = std::process::Command::new(operator_bin)
        .arg("crd")
        .output()
        .map_err(|e| BenchError::Spawn {
            program: operator_bin.display().to_string(),
            detail: format!("crd: {e}"),
        })?;
    yaml_documents(
        "agentic-operator crd",
        &String::from_utf8_lossy(&out.stdout),
    )
}

/// Installs CRDs and waits until every path of `probes` answers 200.
async fn install(
    conn: &mut Conn,
    crds: &[Value],
    probes: &[&str],
    deadline: Duration,
) -> Result<(), BenchError> {
    for crd in crds {
        post(
            conn,
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
            crd,
        )
        .await?;
    }
    let start = Instant::now();
    for probe in probes {
        wait_served(conn, probe, start, deadline).await?;
    }
    Ok(())
}

/// Waits until `probe` answers 200, at most until `deadline` after `start`.
async fn wait_served(
    conn: &mut Conn,
    probe: &str,
    start: Instant,
    deadline: Duration,
) -> Result<(), BenchError> {
    loop {
        let (status, _) = conn.call(Method::GET, probe, None).await?;
        if status == 200 {
            return Ok(());
        }
        if start.elapsed() > deadline {
            return Err(BenchError::Timeout {
                phase: "CRD install".into(),
                seconds: deadline.as_secs(),
                detail: format!("{probe} answers {status}"),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Base64 (standard alphabet, padded).
pub fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(A[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Serves an admission webhook answering each `AdmissionReview` with `answer` over plain HTTP
/// on a free port; returns the address.
async fn start_webhook(
    answer: fn(&Value) -> Value,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), BenchError> {
    use http_body_util::{BodyExt, Full};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| bench_err(format!("webhook listener: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| bench_err(format!("webhook listener: {e}")))?;
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    |req: http::Request<hyper::body::Incoming>| async move {
                        let body = req
                            .into_body()
                            .collect()
                            .await
                            .map(http_body_util::Collected::to_bytes)
                            .unwrap_or_default();
                        let review: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                        let answer = answer(&review).to_string();
                        let mut resp = http::Response::new(Full::new(Bytes::from(answer)));
                        resp.headers_mut().insert(
                            http::header::CONTENT_TYPE,
                            http::HeaderValue::from_static("application/json"),
                        );
                        Ok::<_, std::convert::Infallible>(resp)
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    Ok((addr, task))
}

/// Creates the family's prerequisites (`webhook`: the address of the bench's admission
/// webhook, for the families that use one).
async fn prerequisites(
    family: Family,
    conn: &mut Conn,
    cfg: &Config,
    webhook: Option<SocketAddr>,
) -> Result<(), BenchError> {
    let crds = operator_crds(&cfg.operator_bin)?;
    match family {
        Family::Sessions => sessions::prerequisites(conn, &crds, webhook).await,
        Family::Evaluations => evaluations::prerequisites(conn, &crds).await,
        Family::Labs => labs::prerequisites(conn, &crds, webhook).await,
    }
}

/// The admission webhook answer of the families that script objects through one.
fn webhook_answer(family: Family) -> Option<fn(&Value) -> Value> {
    match family {
        Family::Sessions => Some(sessions::script_runner_pod),
        Family::Evaluations => None,
        Family::Labs => Some(labs::zero_delay),
    }
}

/// Creates `objects` in one burst over `concurrency` connections; returns the elapsed time.
async fn burst(
    addr: SocketAddr,
    path: &str,
    objects: Vec<Value>,
    concurrency: usize,
) -> Result<Duration, BenchError> {
    let queue = Arc::new(std::sync::Mutex::new(objects));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency.max(1) {
        let queue = queue.clone();
        let path = path.to_string();
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::connect(addr).await?;
            loop {
                let next = queue
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .pop();
                let Some(obj) = next else {
                    return Ok::<(), BenchError>(());
                };
                conn.call_expect(Method::POST, &path, Some(Bytes::from(obj.to_string())), 201)
                    .await?;
            }
        }));
    }
    for t in tasks {
        t.await
            .map_err(|e| bench_err(format!("burst task: {e}")))??;
    }
    Ok(start.elapsed())
}

/// What a list of the burst's objects found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Progress {
    total: usize,
    settled: usize,
    failed: usize,
}

/// Lists the collection and counts settled and failed objects.
async fn count_settled(family: Family, conn: &mut Conn) -> Result<Progress, BenchError> {
    let body = conn
        .call_expect(Method::GET, &family.collection(), None, 200)
        .await?;
    let list: Value = serde_json::from_slice(&body).map_err(|e| BenchError::Decode {
        what: "list".into(),
        detail: e.to_string(),
    })?;
    let items = list["items"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    Ok(Progress {
        total: items.len(),
        settled: items.iter().filter(|o| family.settled(o)).count(),
        failed: items.iter().filter(|o| family.failed(o)).count(),
    })
}

/// Measures one family at one size.
#[allow(clippy::too_many_lines)]
pub async fn run_one(family: Family, n: usize, cfg: &Config) -> Result<RunResult, BenchError> {
    let dir = cfg.work_dir.join(format!("{}-{n}", family.name()));
    std::fs::create_dir_all(&dir).map_err(|e| bench_err(format!("{}: {e}", dir.display())))?;
    let kubeconfig = dir.join("kubeconfig");
    let server_spec = SpawnSpec {
        program: cfg.server_bin.clone(),
        args: vec![
            "serve".into(),
            "--addr".into(),
            "127.0.0.1:0".into(),
            "--kubeconfig".into(),
            kubeconfig.display().to_string(),
            "--simulators".into(),
            "none".into(),
        ],
        env: vec![("RUST_LOG".into(), "warn".into())],
        log: Some(dir.join("devcluster.log")),
    };
    let (server, addr) =
        ChildProcess::spawn(&server_spec, "ready ", Duration::from_mins(1)).await?;
    let addr: SocketAddr = addr
        .parse()
        .map_err(|e| bench_err(format!("ready line {addr:?}: {e}")))?;
    let mut conn = Conn::connect(addr).await?;
    let (webhook, webhook_task) = match webhook_answer(family) {
        Some(answer) => {
            let (a, t) = start_webhook(answer).await?;
            (Some(a), Some(t))
        }
        None => (None, None),
    };
    prerequisites(family, &mut conn, cfg, webhook).await?;
    let (simulators, proxy) = start_simulators(family, cfg, &dir, &kubeconfig, addr).await?;
    if family == Family::Evaluations {
        evaluations::wait_agent(&mut conn, Duration::from_mins(1)).await?;
    }

    let (mut operator, _) = start_operator(family, cfg, &dir, &kubeconfig, "operator.log").await?;
    // Let the informers finish their first lists before the burst.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let own = Own::default();
    let key = family.resource();
    accounting::reset(&mut conn).await?;
    proxy.take();
    let sampler = Sampler::start(operator.pid(), Duration::from_millis(100))?;
    let server_sampler = Sampler::start(server.pid(), Duration::from_millis(500))?;
    let sim_sampler = Sampler::start(simulators.pid(), Duration::from_millis(500))?;
    let start = Instant::now();
    let objects: Vec<Value> = (0..n).map(|i| family.object(i)).collect();
    let create_burst = burst(addr, &family.collection(), objects, cfg.concurrency).await?;
    own.add(&format!("create {key}"), n as u64);

    let timeout =
        Duration::from_secs((cfg.settle_timeout_per_1000_s * (n as u64).div_ceil(1000)).max(120));
    let mut poll = Conn::connect(addr).await?;
    let settle = loop {
        let p = count_settled(family, &mut poll).await?;
        own.add(&format!("list {key}"), 1);
        if p.total == n && p.settled == n {
            break start.elapsed();
        }
        if p.failed > 0 {
            return Err(bench_err(format!(
                "{} of {n} failed ({} settled); see the objects' status.message",
                p.failed, p.settled
            )));
        }
        if start.elapsed() > timeout {
            return Err(BenchError::Timeout {
                phase: format!("{} N={n} settle", family.name()),
                seconds: timeout.as_secs(),
                detail: format!("{} of {n} settled", p.settled),
            });
        }
        if !operator.is_running() {
            return Err(bench_err("the operator exited during the burst"));
        }
        tokio::time::sleep(poll_interval(n)).await;
    };
    let usage = sampler.finish()?;
    let server_usage = server_sampler.finish()?;
    let simulators_usage = sim_sampler.finish()?;
    let (burst_stats, burst_sims) = consistent_counts(&mut conn, &proxy).await?;
    let server_time = busiest_by_time(&burst_stats, 8);
    let burst_attr = attribute_measured(&burst_stats, &own.take(), &burst_sims);

    // Idle: quiet, reset, force a relist, quiet again.
    tokio::time::sleep(Duration::from_secs(cfg.idle_s)).await;
    accounting::reset(&mut conn).await?;
    proxy.take();
    conn.call_expect(Method::POST, "/devcluster/faults/expire", None, 200)
        .await?;
    conn.call_expect(Method::POST, "/devcluster/faults/cut-watches", None, 200)
        .await?;
    tokio::time::sleep(Duration::from_secs(cfg.idle_s)).await;
    let (idle_stats, idle_sims) = consistent_counts(&mut conn, &proxy).await?;
    let idle_attr = attribute_measured(&idle_stats, &BTreeMap::new(), &idle_sims);
    let after_idle = crate::procfs::ProcStatus::read(operator.pid())?;

    // Restart: a new operator over the settled set (a rollout, a failover) lists everything
    // and reconciles every object once.
    let _ = operator.stop(Duration::from_secs(5)).await;
    accounting::reset(&mut conn).await?;
    proxy.take();
    let restart_start = Instant::now();
    let (restarted, metrics_port) =
        start_operator(family, cfg, &dir, &kubeconfig, "operator-restarted.log").await?;
    operator = restarted;
    let restart_sampler = Sampler::start(operator.pid(), Duration::from_millis(100))?;
    wait_reconciles(metrics_port, n, timeout, &mut operator).await?;
    let restart_reconciled_s = restart_start.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(cfg.idle_s)).await;
    let restart_usage = restart_sampler.finish()?;
    let (restart_stats, restart_sims) = consistent_counts(&mut conn, &proxy).await?;
    let restart_attr = attribute_measured(&restart_stats, &BTreeMap::new(), &restart_sims);

    // Stop the operator and the simulators before the raw burst so that they do not compete
    // for CPU.
    let _ = operator.stop(Duration::from_secs(5)).await;
    let _ = simulators.stop(Duration::from_secs(5)).await;
    drop(proxy);
    // The raw ceiling: as many plain creates as the operator issued writes during the burst.
    let raw_writes = usize::try_from(burst_attr.operator.writes)
        .unwrap_or(usize::MAX)
        .max(1);
    let raw: Vec<Value> = (0..raw_writes)
        .map(|i| {
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": format!("raw-{i:06}"), "namespace": NAMESPACE},
                   "data": {"k": "v"}})
        })
        .collect();
    let raw_elapsed = burst(
        addr,
        &format!("/api/v1/namespaces/{NAMESPACE}/configmaps"),
        raw,
        cfg.concurrency,
    )
    .await?;
    drop(conn);
    drop(poll);
    if let Some(t) = webhook_task {
        t.abort();
    }
    let _ = server.stop(Duration::from_secs(5)).await;

    let settle_s = settle.as_secs_f64();
    #[allow(clippy::cast_precision_loss)]
    let nf = n as f64;
    let settled_per_s = if settle_s > 0.0 { nf / settle_s } else { 0.0 };
    #[allow(clippy::cast_precision_loss)]
    let raw_per_s = raw_writes as f64 / raw_elapsed.as_secs_f64().max(1e-9);
    #[allow(clippy::cast_precision_loss)]
    let (req, wr) = (
        burst_attr.operator.total as f64 / nf.max(1.0),
        burst_attr.operator.writes as f64 / nf.max(1.0),
    );
    #[allow(clippy::cast_precision_loss)]
    let (rss_after_idle_mib, peak_with_relist_mib) = (
        after_idle.vm_rss_kib as f64 / 1024.0,
        after_idle.vm_hwm_kib as f64 / 1024.0,
    );
    Ok(RunResult {
        family,
        objects: n,
        settle_s,
        settled_per_s,
        create_burst_s: create_burst.as_secs_f64(),
        burst: burst_attr,
        operator_requests_per_object: req,
        operator_writes_per_object: wr,
        operator_usage: usage,
        operator_rss_after_idle_mib: rss_after_idle_mib,
        operator_peak_rss_with_relist_mib: peak_with_relist_mib,
        idle: idle_attr,
        restart: restart_attr,
        restart_usage,
        restart_reconciled_s,
        raw_writes: raw_writes as u64,
        raw_creates_per_s: raw_per_s,
        fraction_of_raw: if raw_per_s > 0.0 {
            settled_per_s / raw_per_s
        } else {
            0.0
        },
        operator_write_rate_fraction_of_raw: if raw_per_s > 0.0 && settle_s > 0.0 {
            wr * nf / settle_s / raw_per_s
        } else {
            0.0
        },
        server_usage,
        simulators_usage,
        server_time,
    })
}

/// The operator's environment: its kubeconfig, the log filter `log` and the family's
/// settings.
fn operator_env(
    family: Family,
    dir: &std::path::Path,
    kubeconfig: &std::path::Path,
    log: &str,
) -> Result<Vec<(String, String)>, BenchError> {
    let mut env = vec![
        ("KUBECONFIG".into(), kubeconfig.display().to_string()),
        ("RUST_LOG".into(), log.into()),
    ];
    if family == Family::Labs {
        env.extend(labs::operator_env(dir)?);
    }
    Ok(env)
}

/// Starts `devcluster simulate` with the family's simulators against the server at `addr`
/// through a [`CountingProxy`] (its kubeconfig is `kubeconfig` with the proxy as server).
async fn start_simulators(
    family: Family,
    cfg: &Config,
    dir: &std::path::Path,
    kubeconfig: &std::path::Path,
    addr: SocketAddr,
) -> Result<(ChildProcess, CountingProxy), BenchError> {
    let proxy = CountingProxy::start(addr).await?;
    let text = std::fs::read_to_string(kubeconfig)
        .map_err(|e| bench_err(format!("{}: {e}", kubeconfig.display())))?;
    let server = format!("http://{addr}");
    if !text.contains(&server) {
        return Err(bench_err(format!(
            "{} does not name the server {server}",
            kubeconfig.display()
        )));
    }
    let proxied = dir.join("kubeconfig-simulators");
    std::fs::write(
        &proxied,
        text.replace(&server, &format!("http://{}", proxy.addr())),
    )
    .map_err(|e| bench_err(format!("{}: {e}", proxied.display())))?;
    let spec = SpawnSpec {
        program: "sh".into(),
        args: vec![
            "-c".into(),
            "echo ready; exec \"$@\"".into(),
            "sh".into(),
            cfg.server_bin.display().to_string(),
            "simulate".into(),
            "--kubeconfig".into(),
            proxied.display().to_string(),
            "--simulators".into(),
            family.simulators().into(),
        ],
        env: vec![("RUST_LOG".into(), "warn".into())],
        log: Some(dir.join("simulators.log")),
    };
    let (process, _) = ChildProcess::spawn(&spec, "ready", Duration::from_secs(30)).await?;
    Ok((process, proxy))
}

/// Time between two lists of the burst's objects: a list of N objects costs the server
/// O(N), so larger bursts are polled less often (250 ms up to 1,000 objects, then 1 s per
/// further 2,000) to keep the bench's own reads a small part of the server's work.
pub fn poll_interval(n: usize) -> Duration {
    let extra = n.saturating_sub(1000) as u64 / 2;
    Duration::from_millis(250 + extra)
}

/// Attempts at starting the operator before giving up.
const OPERATOR_START_ATTEMPTS: u32 = 3;

/// Starts the operator on free loopback ports for metrics and probes and waits until it is
/// ready. A free port is found by binding port 0 and releasing it, so another process can
/// take it before the operator binds it; the operator then exits at once, and the start is
/// tried again with other ports.
async fn start_operator(
    family: Family,
    cfg: &Config,
    dir: &Path,
    kubeconfig: &Path,
    log: &str,
) -> Result<(ChildProcess, u16), BenchError> {
    with_retries(OPERATOR_START_ATTEMPTS, |_| async {
        let (metrics, health) = (free_port()?, free_port()?);
        let operator_spec = SpawnSpec {
            program: "sh".into(),
            args: vec![
                "-c".into(),
                "echo ready; exec \"$@\"".into(),
                "sh".into(),
                cfg.operator_bin.display().to_string(),
                "run".into(),
                "--controllers".into(),
                family.name().into(),
                format!("--metrics-bind-address=127.0.0.1:{metrics}"),
                format!("--health-probe-bind-address=127.0.0.1:{health}"),
                "--leader-elect=false".into(),
                "--webhook-bind-address=0".into(),
            ],
            env: operator_env(family, dir, kubeconfig, &cfg.operator_log)?,
            log: Some(dir.join(log)),
        };
        let (mut operator, _) =
            ChildProcess::spawn(&operator_spec, "ready", Duration::from_secs(30)).await?;
        Ok(match wait_ready(health, &mut operator).await {
            Ok(()) => Attempt::Started((operator, metrics)),
            Err(e) if !operator.is_running() => Attempt::Exited(e),
            Err(e) => Attempt::Failed(e),
        })
    })
    .await
}

/// How one attempt at starting a process ended.
#[derive(Debug)]
enum Attempt<T> {
    /// It is ready.
    Started(T),
    /// It exited before it was ready (a port taken meanwhile): worth another attempt.
    Exited(BenchError),
    /// It runs but did not become ready: not retried.
    Failed(BenchError),
}

/// Runs `start` (given the attempt number, from 1) until it starts, at most `attempts` times;
/// only an [`Attempt::Exited`] is retried. An error of `start` itself ends at once.
async fn with_retries<T, F, Fut>(attempts: u32, mut start: F) -> Result<T, BenchError>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<Attempt<T>, BenchError>>,
{
    let mut attempt = 1;
    loop {
        match start(attempt).await? {
            Attempt::Started(started) => return Ok(started),
            Attempt::Exited(e) if attempt < attempts => {
                eprintln!(
                    "  the operator exited before it was ready (attempt {attempt}: {e}); \
                     starting it again on other ports"
                );
                attempt += 1;
            }
            Attempt::Exited(e) | Attempt::Failed(e) => return Err(e),
        }
    }
}

async fn wait_ready(port: u16, operator: &mut ChildProcess) -> Result<(), BenchError> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let start = Instant::now();
    loop {
        if let Ok(mut c) = Conn::connect(addr).await
            && let Ok((200, _)) = c.call(Method::GET, "/readyz", None).await
        {
            return Ok(());
        }
        if !operator.is_running() {
            return Err(bench_err(
                "the operator exited before it was ready (see its log)",
            ));
        }
        if start.elapsed() > Duration::from_mins(1) {
            return Err(BenchError::Timeout {
                phase: "operator readiness".into(),
                seconds: 60,
                detail: format!("127.0.0.1:{port}/readyz"),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The sum of `controller_runtime_reconcile_total` over every controller and result in a
/// Prometheus text exposition.
fn reconciles_in(metrics: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("controller_runtime_reconcile_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Waits until the operator whose metrics listen on `port` has reconciled at least `n` times.
async fn wait_reconciles(
    port: u16,
    n: usize,
    timeout: Duration,
    operator: &mut ChildProcess,
) -> Result<(), BenchError> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let start = Instant::now();
    #[allow(clippy::cast_precision_loss)]
    let want = n as f64;
    let mut seen = 0.0;
    loop {
        if let Ok(mut c) = Conn::connect(addr).await
            && let Ok((200, body)) = c.call(Method::GET, "/metrics", None).await
        {
            seen = reconciles_in(&String::from_utf8_lossy(&body));
            if seen >= want {
                return Ok(());
            }
        }
        if !operator.is_running() {
            return Err(bench_err("the restarted operator exited (see its log)"));
        }
        if start.elapsed() > timeout {
            return Err(BenchError::Timeout {
                phase: "restart".into(),
                seconds: timeout.as_secs(),
                detail: format!("{seen} of {n} reconciles"),
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Runs every family at every size, one after another.
pub async fn run(cfg: &Config) -> Result<Report, BenchError> {
    let machine = MachineFacts::collect()?;
    let started_at = now_utc();
    let mut runs = Vec::new();
    let mut failures = Vec::new();
    for &family in &cfg.families {
        let sizes = cfg.sizes.clone().unwrap_or_else(|| family.default_sizes());
        for n in sizes {
            eprintln!("operator bench: {} N={n}", family.name());
            let r = match run_one(family, n, cfg).await {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("  failed: {e}");
                    failures.push(Failure {
                        family,
                        objects: n,
                        error: e.to_string(),
                    });
                    continue;
                }
            };
            eprintln!(
                "  settled in {:.2} s, {:.2} operator writes/object, peak RSS {:.1} MiB, idle writes {}",
                r.settle_s,
                r.operator_writes_per_object,
                r.operator_usage.rss_max_mib,
                r.idle.operator.writes
            );
            runs.push(r);
        }
    }
    let targets = targets(&runs);
    Ok(Envelope {
        schema: "bench.operator/v1".into(),
        started_at,
        finished_at: now_utc(),
        bench_build: build_profile().into(),
        machine,
        load_average_at_end: LoadAverage::now()?,
        results: Results {
            concurrency: cfg.concurrency,
            idle_s: cfg.idle_s,
            runs,
            failures,
        },
        targets,
    })
}

/// The targets: sessions at the largest size settle with operator RSS below 64 MiB (checked
/// only when 10,000 sessions were run), the operator's write rate during the burst at least
/// half the raw write rate measured with as many writes ([`RunResult::raw_writes`]), and no
/// operator writes after an idle relist (each run).
pub fn targets(runs: &[RunResult]) -> Vec<TargetCheck> {
    let mut out = Vec::new();
    for r in runs {
        let mode = format!("{} N={}", r.family.name(), r.objects);
        if r.family == Family::Sessions && r.objects >= 10_000 {
            out.push(TargetCheck::new(
                "operator_peak_rss",
                &mode,
                "MiB",
                Better::Lower,
                64.0,
                r.operator_usage.rss_max_mib,
            ));
        }
        out.push(TargetCheck::new(
            "fraction_of_raw_write_rate",
            &mode,
            "ratio",
            Better::Higher,
            0.5,
            r.operator_write_rate_fraction_of_raw,
        ));
        #[allow(clippy::cast_precision_loss)]
        let idle = r.idle.operator.writes as f64;
        out.push(TargetCheck::new(
            "idle_relist_writes",
            &mode,
            "writes",
            Better::Lower,
            0.5,
            idle,
        ));
        #[allow(clippy::cast_precision_loss)]
        let restart = r.restart.operator.writes as f64;
        out.push(TargetCheck::new(
            "restart_writes",
            &mode,
            "writes",
            Better::Lower,
            0.5,
            restart,
        ));
    }
    out
}

/// Appends each run's busiest server keys by handling time.
fn render_server_time(s: &mut String, report: &Report) {
    s.push_str("\nserver handling time by key (burst, all clients, busiest first):\n");
    for r in &report.results.runs {
        #[allow(clippy::cast_precision_loss)]
        let keys: Vec<String> = r
            .server_time
            .iter()
            .take(4)
            .map(|v| {
                format!(
                    "{} {}x{:.2}ms={:.1}s",
                    v.key,
                    v.count,
                    v.mean_ms,
                    v.mean_ms * v.count as f64 / 1000.0
                )
            })
            .collect();
        let _ = writeln!(
            s,
            "  {} N={}: {}",
            r.family.name(),
            r.objects,
            keys.join(", ")
        );
    }
}

/// The console table.
pub fn render(report: &Report) -> String {
    let mut t = Table::new(&[
        "family",
        "N",
        "settle s",
        "settled/s",
        "raw writes",
        "raw/s",
        "frac",
        "write frac",
        "op req/obj",
        "op writes/obj",
        "sim writes",
        "peak RSS MiB",
        "RSS after relist",
        "peak with relist",
        "CPU s",
        "server CPU s",
        "sim CPU s",
        "idle op writes",
        "restart s",
        "restart peak RSS",
        "restart op writes",
    ]);
    for r in &report.results.runs {
        t.row(vec![
            r.family.name().into(),
            r.objects.to_string(),
            format!("{:.2}", r.settle_s),
            format!("{:.0}", r.settled_per_s),
            r.raw_writes.to_string(),
            format!("{:.0}", r.raw_creates_per_s),
            format!("{:.3}", r.fraction_of_raw),
            format!("{:.3}", r.operator_write_rate_fraction_of_raw),
            format!("{:.2}", r.operator_requests_per_object),
            format!("{:.2}", r.operator_writes_per_object),
            r.burst.simulators.writes.to_string(),
            format!("{:.1}", r.operator_usage.rss_max_mib),
            format!("{:.1}", r.operator_rss_after_idle_mib),
            format!("{:.1}", r.operator_peak_rss_with_relist_mib),
            format!("{:.2}", r.operator_usage.cpu_s),
            format!("{:.2}", r.server_usage.cpu_s),
            format!("{:.2}", r.simulators_usage.cpu_s),
            r.idle.operator.writes.to_string(),
            format!("{:.2}", r.restart_reconciled_s),
            format!(
                "{:.1}",
                r.restart_usage
                    .rss_max_mib
                    .max(r.restart_usage.rss_peak_lifetime_mib)
            ),
            r.restart.operator.writes.to_string(),
        ]);
    }
    let mut s = t.render();
    s.push_str("\noperator writes by key (burst):\n");
    for r in &report.results.runs {
        let keys: Vec<String> = r
            .burst
            .operator
            .by_key
            .iter()
            .filter(|(k, _)| devcluster::ops::is_write(k.split(' ').next().unwrap_or("")))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let _ = writeln!(
            s,
            "  {} N={}: {}",
            r.family.name(),
            r.objects,
            keys.join(", ")
        );
    }
    render_server_time(&mut s, report);
    for f in &report.results.failures {
        let _ = writeln!(s, "FAILED {} N={}: {}", f.family.name(), f.objects, f.error);
    }
    s.push_str("\ntargets:\n");
    for c in &report.targets {
        let _ = writeln!(
            s,
            "  {:<28} {:<20} {:>10.3} {} (target {} {}): {}",
            c.name,
            c.mode,
            c.value,
            c.unit,
            if c.better == Better::Higher {
                ">="
            } else {
                "<"
            },
            c.target,
            if c.met { "met" } else { "NOT met" }
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconciles_are_summed_over_controllers_and_results() {
        let text = "# HELP controller_runtime_reconcile_total Reconciles.\n\
            # TYPE controller_runtime_reconcile_total counter\n\
            controller_runtime_reconcile_total{controller=\"agenticsession\",result=\"success\"} 9998\n\
            controller_runtime_reconcile_total{controller=\"agenticsession\",result=\"error\"} 2\n\
            controller_runtime_reconcile_total{controller=\"projectsettings\",result=\"success\"} 1\n\
            controller_runtime_reconcile_errors_total{controller=\"agenticsession\"} 2\n\
            controller_runtime_reconcile_total{controller=\"x\",result=\"success\"} garbage\n";
        assert!((reconciles_in(text) - 10_001.0).abs() < 1e-9);
        assert!(
            reconciles_in("").abs() < 1e-9,
            "no metrics yet: nothing reconciled"
        );
    }
    use devcluster::VerbStats;

    /// Runs [`with_retries`] over a script of attempt outcomes; returns its result and the
    /// number of attempts made.
    fn retried(attempts: u32, script: &[&str]) -> (Result<u32, String>, u32) {
        let made = std::cell::Cell::new(0);
        let result = futures::executor::block_on(with_retries(attempts, |attempt| {
            made.set(attempt);
            let outcome = script[attempt as usize - 1];
            async move {
                match outcome {
                    "started" => Ok(Attempt::Started(attempt)),
                    "exited" => Ok(Attempt::Exited(bench_err("exited"))),
                    "failed" => Ok(Attempt::Failed(bench_err("not ready"))),
                    _ => Err(bench_err("spawn failed")),
                }
            }
        }));
        (result.map_err(|e| e.to_string()), made.get())
    }

    #[test]
    fn a_start_is_retried_only_after_the_process_exited() {
        // Another process took a port twice: the third attempt starts.
        let (result, made) = retried(3, &["exited", "exited", "started"]);
        assert_eq!((result, made), (Ok(3), 3));
        // Out of attempts: the last exit is the error.
        let (result, made) = retried(2, &["exited", "exited", "started"]);
        assert!(result.is_err_and(|e| e.contains("exited")));
        assert_eq!(made, 2);
        // Running but never ready, or failing to spawn: no retry.
        let (result, made) = retried(3, &["failed", "started"]);
        assert!(result.is_err_and(|e| e.contains("not ready")));
        assert_eq!(made, 1);
        let (result, made) = retried(3, &["spawn", "started"]);
        assert!(result.is_err_and(|e| e.contains("spawn failed")));
        assert_eq!(made, 1);
    }

    #[test]
    fn larger_bursts_are_polled_less_often() {
        assert_eq!(poll_interval(100), Duration::from_millis(250));
        assert_eq!(poll_interval(1000), Duration::from_millis(250));
        assert_eq!(poll_interval(10_000), Duration::from_millis(4750));
    }

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }

    #[test]
    fn measured_attribution_subtracts_the_bench_and_the_simulators_counts() {
        let mut s = StatsSnapshot::default();
        for (k, c) in [
            ("create experiments.experiments.illm.io", 10),
            ("list experiments.experiments.illm.io", 6),
            ("patch experiments.experiments.illm.io/status", 40),
            // Written by both: the operator applies claims and Applications, Crossplane
            // adds its finalizer, Argo CD writes Application status on the object.
            ("patch vclusters.illm.io", 25),
            ("patch applications.argoproj.io", 50),
            ("create secrets", 10),
            ("patch secrets", 10),
            ("patch vclusters.illm.io/status", 10),
            ("watch vclusters.illm.io", 3),
        ] {
            s.requests.insert(
                k.into(),
                VerbStats {
                    count: c,
                    ..VerbStats::default()
                },
            );
        }
        let own = BTreeMap::from([
            ("create experiments.experiments.illm.io".to_string(), 10),
            ("list experiments.experiments.illm.io".to_string(), 5),
        ]);
        let sims = BTreeMap::from([
            ("patch vclusters.illm.io".to_string(), 10),
            ("patch applications.argoproj.io".to_string(), 20),
            ("create secrets".to_string(), 10),
            ("patch vclusters.illm.io/status".to_string(), 10),
            ("watch vclusters.illm.io".to_string(), 2),
            // More than the server saw (a request counted by the proxy but not yet
            // accounted): capped at what the server saw.
            ("get secrets".to_string(), 4),
        ]);
        let a = attribute_measured(&s, &own, &sims);
        assert_eq!(a.bench.total, 15);
        assert_eq!(a.simulators.writes, 50);
        assert_eq!(a.simulators.total, 52);
        assert!(!a.simulators.by_key.contains_key("get secrets"));
        assert_eq!(a.operator.by_key["patch vclusters.illm.io"], 15);
        assert_eq!(a.operator.by_key["patch applications.argoproj.io"], 30);
        assert_eq!(a.operator.by_key["patch secrets"], 10);
        assert!(!a.operator.by_key.contains_key("create secrets"));
        assert!(
            !a.operator
                .by_key
                .contains_key("patch vclusters.illm.io/status")
        );
        assert_eq!(a.operator.by_key["list experiments.experiments.illm.io"], 1);
        assert_eq!(a.operator.by_key["watch vclusters.illm.io"], 1);
        // 40 status + 15 claim applies + 30 Application applies + 10 Secret applies.
        assert_eq!(a.operator.writes, 95);
        assert_eq!(a.operator.total, 97);
        let total: u64 = s.requests.values().map(|v| v.count).sum();
        assert_eq!(a.operator.total + a.simulators.total + a.bench.total, total);
    }

    #[test]
    fn busiest_keys_are_ranked_by_total_handling_time() {
        let mut s = StatsSnapshot::default();
        for (k, count, micros) in [
            ("list secrets", 10, 50_000),
            ("patch secrets", 1_000, 100_000),
            ("get secrets", 5, 1_000),
        ] {
            s.requests.insert(
                k.into(),
                VerbStats {
                    count,
                    total_micros: micros,
                    ..VerbStats::default()
                },
            );
        }
        let b = busiest_by_time(&s, 2);
        let keys: Vec<&str> = b.iter().map(|v| v.key.as_str()).collect();
        assert_eq!(keys, ["patch secrets", "list secrets"]);
    }

    #[test]
    fn families_names_sizes_and_simulators() {
        assert_eq!(
            Family::ALL.map(Family::name),
            ["sessions", "evaluations", "labs"]
        );
        assert_eq!(Family::Labs.default_sizes(), [100, 1000]);
        assert_eq!(Family::Sessions.default_sizes(), [100, 1000, 10_000]);
        assert_eq!(Family::Sessions.simulators(), "scheduler,kubelet,jobs");
        assert_eq!(
            Family::Labs.simulators(),
            "crossplane,argocd,argo-workflows"
        );
        assert_eq!(Family::Evaluations.simulators(), "agent-runtime");
        for f in Family::ALL {
            let o = f.object(1);
            assert_eq!(o["metadata"]["namespace"], NAMESPACE, "{}", f.name());
            assert!(
                f.collection().ends_with(&format!(
                    "/namespaces/{NAMESPACE}/{}",
                    f.resource().split('.').next().unwrap()
                )),
                "{}",
                f.name()
            );
            assert!(!f.settled(&o), "{} settles without status", f.name());
        }
    }

    #[test]
    fn sessions_pod_writes_of_the_scheduler_are_the_simulators() {
        // The scheduler binds runner pods by patching `spec.nodeName` and the kubelet writes
        // their status; the operator only deletes pods. Only the proxy's counts tell a
        // `patch pods` of the scheduler from one of the operator.
        let mut s = StatsSnapshot::default();
        for (k, c) in [
            ("create agenticsessions.vteam.ambient-code", 12),
            ("list agenticsessions.vteam.ambient-code", 5),
            ("patch agenticsessions.vteam.ambient-code/status", 20),
            ("create jobs.batch", 10),
            ("create pods", 10),
            ("patch pods", 10),
            ("patch pods/status", 30),
            ("delete pods", 1),
            ("watch pods", 2),
        ] {
            s.requests.insert(
                k.into(),
                VerbStats {
                    count: c,
                    ..VerbStats::default()
                },
            );
        }
        let own = BTreeMap::from([
            ("create agenticsessions.vteam.ambient-code".to_string(), 10),
            ("list agenticsessions.vteam.ambient-code".to_string(), 4),
        ]);
        let sims = BTreeMap::from([
            ("create pods".to_string(), 10),
            ("patch pods".to_string(), 10),
            ("patch pods/status".to_string(), 30),
            ("watch pods".to_string(), 1),
        ]);
        let a = attribute_measured(&s, &own, &sims);
        assert_eq!(a.bench.total, 14);
        assert_eq!(a.bench.writes, 10);
        assert_eq!(a.simulators.writes, 50);
        assert_eq!(a.simulators.by_key["patch pods"], 10);
        assert!(!a.operator.by_key.contains_key("patch pods"));
        assert!(!a.operator.by_key.contains_key("create pods"));
        // 2 creates the bench did not make, 20 status patches, 10 Jobs, 1 pod deletion.
        assert_eq!(a.operator.writes, 33);
        assert_eq!(a.operator.by_verb["create"], 12);
        assert_eq!(a.operator.by_verb["list"], 1);
        assert_eq!(a.operator.by_verb["watch"], 1);
        assert_eq!(a.operator.total, 35);
    }

    #[test]
    fn operator_log_filters() {
        for ok in [
            "warn",
            "INFO",
            "off",
            "info,kube=debug",
            "agentic_operator::sessions=trace",
        ] {
            assert_eq!(parse_log_filter(ok).as_deref(), Ok(ok), "{ok}");
        }
        // Empty, unknown levels, a directive without a target and a target with spaces are
        // refused with the option's name and the allowed levels.
        for bad in [
            "",
            " ",
            "loud",
            "info,kube=loud",
            "=debug",
            "a b=info",
            "info,",
        ] {
            let e = parse_log_filter(bad).unwrap_err();
            assert!(
                e.contains("--operator-log") && e.contains("warn, info"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn targets_and_result_shape() {
        let run = RunResult {
            family: Family::Sessions,
            objects: 10_000,
            settle_s: 10.0,
            settled_per_s: 1000.0,
            create_burst_s: 2.0,
            burst: Attributed::default(),
            operator_requests_per_object: 3.0,
            operator_writes_per_object: 2.0,
            operator_usage: Usage {
                rss_max_mib: 80.0,
                ..Usage::default()
            },
            operator_rss_after_idle_mib: 70.0,
            operator_peak_rss_with_relist_mib: 90.0,
            idle: Attributed::default(),
            restart: Attributed::default(),
            restart_usage: Usage::default(),
            restart_reconciled_s: 3.0,
            raw_writes: 20_000,
            raw_creates_per_s: 4000.0,
            fraction_of_raw: 0.25,
            operator_write_rate_fraction_of_raw: 0.4,
            server_usage: Usage::default(),
            simulators_usage: Usage::default(),
            server_time: Vec::new(),
        };
        let t = targets(std::slice::from_ref(&run));
        assert_eq!(t.len(), 4);
        assert!(!t[0].met, "80 MiB is over 64 MiB");
        assert_eq!(t[1].name, "fraction_of_raw_write_rate");
        assert!(
            (t[1].value - 0.4).abs() < 1e-9,
            "checked on the write-rate fraction, not on settled/s"
        );
        assert!(!t[1].met, "0.4 is under half");
        assert!(t[2].met, "no idle writes");
        assert_eq!(t[3].name, "restart_writes");
        assert!(t[3].met, "no writes after the restart");
        let mut noisy = run.clone();
        noisy.restart.operator.writes = 3;
        assert!(
            !targets(std::slice::from_ref(&noisy))[3].met,
            "writes after a restart miss the target"
        );
        let mut fast = run.clone();
        fast.operator_write_rate_fraction_of_raw = 0.6;
        assert!(
            targets(std::slice::from_ref(&fast))[1].met,
            "0.6 of the raw write rate meets the target even though frac is 0.25"
        );
        let v = serde_json::to_value(&run).unwrap();
        assert_eq!(v["family"], "sessions");
        assert_eq!(v["raw_writes"], 20_000);
        assert_eq!(v["operator_usage"]["rss_max_mib"], 80.0);
        assert_eq!(v["operator_peak_rss_with_relist_mib"], 90.0);
        let back: RunResult = serde_json::from_value(v).unwrap();
        assert_eq!(back, run);
    }
}
