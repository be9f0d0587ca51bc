//! `bench`: runs a speed benchmark suite, prints a table and writes a JSON result file.
//!
//! `bench devcluster` measures the in-memory API server, `bench operator` the operator's
//! scale; see `docs/benchmarks.md`.

use std::path::PathBuf;
use std::process::ExitCode;

use bench::process::{build_release_binary, release_binary};
use bench::report::write_json;
use bench::suites::devcluster::{self, Config, Mode, ServerOptions};
use bench::suites::operator;
use clap::{Parser, Subcommand, ValueEnum};

/// Command line.
#[derive(Debug, Parser)]
#[command(name = "bench", about = "Speed benchmarks for the dev cluster")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where to run the dev cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Modes {
    /// Both, the separate process first.
    Both,
    /// Only as a separate `devcluster serve` process.
    Process,
    /// Only inside the bench process.
    InProcess,
}

/// Suites.
#[derive(Debug, Subcommand)]
enum Command {
    /// Write throughput and latency, watch fan-out and list times of the dev cluster.
    Devcluster {
        /// Where the server runs.
        #[arg(long, value_enum, default_value = "both")]
        mode: Modes,
        /// Measured creates (config maps).
        #[arg(long, default_value_t = Config::default().writes)]
        writes: usize,
        /// Unmeasured creates before the measured ones.
        #[arg(long, default_value_t = Config::default().warmup)]
        warmup: usize,
        /// Concurrent writers, one kept-alive connection each.
        #[arg(long, default_value_t = Config::default().concurrency)]
        concurrency: usize,
        /// Watch streams in the watch phase.
        #[arg(long, default_value_t = Config::default().watchers)]
        watchers: usize,
        /// Creates made while the watchers listen.
        #[arg(long, default_value_t = Config::default().watch_writes)]
        watch_writes: usize,
        /// Objects in the listed namespace.
        #[arg(long, default_value_t = Config::default().list_objects)]
        list_objects: usize,
        /// Timed lists of each kind (unpaged and paged).
        #[arg(long, default_value_t = Config::default().list_runs)]
        list_runs: usize,
        /// `limit` of the paged lists.
        #[arg(long, default_value_t = Config::default().page_size)]
        page_size: usize,
        /// Bytes of filler data in each config map.
        #[arg(long, default_value_t = Config::default().payload_bytes)]
        payload_bytes: usize,
        /// Times to run every mode (modes alternate); targets use the median.
        #[arg(long, default_value_t = Config::default().rounds)]
        rounds: usize,
        /// Deadline of each phase, in seconds.
        #[arg(long = "phase-timeout", default_value_t = Config::default().phase_timeout_s)]
        phase_timeout_s: u64,
        /// The `devcluster` binary for process mode. Without it, `cargo build --release -p
        /// devcluster` runs first and `target/release/devcluster` is used.
        #[arg(long)]
        server_bin: Option<PathBuf>,
        /// Use `target/release/devcluster` as it is, without running cargo build first.
        #[arg(long)]
        no_build: bool,
        /// An extra argument for `devcluster serve` in process mode, e.g.
        /// `--server-arg=--no-rbac` (repeatable).
        #[arg(long = "server-arg", allow_hyphen_values = true)]
        server_args: Vec<String>,
        /// Where to write the JSON results.
        #[arg(long, default_value = "target/bench/devcluster.json")]
        output: PathBuf,
        /// Where the server process's stderr goes.
        #[arg(long, default_value = "target/bench/devcluster-server.log")]
        server_log: PathBuf,
    },
    /// Scale of the operator: time to settle a burst of N custom resources, API requests
    /// and writes per object, memory and CPU, writes after an idle relist.
    Operator {
        /// Family to measure.
        #[arg(long, value_enum, default_value = "sessions")]
        family: FamilyArg,
        /// Burst sizes, comma-separated (default: 100,1000,10000; 100,1000 for labs).
        #[arg(long, value_delimiter = ',')]
        sizes: Option<Vec<usize>>,
        /// Concurrent connections of the creating bursts.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        /// Seconds to wait for a burst to settle, per 1,000 objects (at least 120 s).
        #[arg(long, default_value_t = 120)]
        settle_timeout_per_1000: u64,
        /// Seconds of each quiet wait around the forced relist.
        #[arg(long, default_value_t = 5)]
        idle: u64,
        /// Use the release binaries as they are, without running cargo build first.
        #[arg(long)]
        no_build: bool,
        /// The `devcluster` binary (default: `target/release/devcluster`).
        #[arg(long)]
        server_bin: Option<PathBuf>,
        /// The `agentic-operator` binary (default: `target/release/agentic-operator`).
        #[arg(long)]
        operator_bin: Option<PathBuf>,
        /// Where to write the JSON results.
        #[arg(long, default_value = "target/bench/operator.json")]
        output: PathBuf,
        /// Directory for kubeconfigs and the processes' logs.
        #[arg(long, default_value = "target/bench/operator")]
        work_dir: PathBuf,
        /// The operator's log filter (its `RUST_LOG`; the log is `<work-dir>/<family>-<N>/
        /// operator.log`): a level or comma-separated TARGET=LEVEL directives.
        #[arg(long, value_name = "LEVEL", default_value = "warn",
              value_parser = operator::parse_log_filter)]
        operator_log: String,
    },
}

/// Controller families of `bench operator`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum FamilyArg {
    /// `AgenticSession`s.
    Sessions,
    /// Evaluation `Experiment`s (`testbench.agentic-layer.ai`).
    Evaluations,
    /// Lab `Experiment`s (`experiments.illm.io`).
    Labs,
    /// Every family, one after another.
    All,
}

/// Resolves a binary: the given path, the release binary as it is, or a fresh release build.
fn binary(
    given: Option<PathBuf>,
    no_build: bool,
    package: &str,
    bin: &str,
) -> Result<PathBuf, String> {
    match (given, no_build) {
        (Some(p), _) => Ok(p),
        (None, true) => Ok(release_binary(bin)),
        (None, false) => {
            eprintln!("building: cargo build --release -p {package}");
            build_release_binary(package, bin).map_err(|e| e.to_string())
        }
    }
}

/// `bench operator`.
async fn operator_suite(cfg: operator::Config, output: &std::path::Path) -> ExitCode {
    let report = match operator::run(&cfg).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    print!("{}", operator::render(&report));
    if let Err(e) = write_json(output, &report) {
        eprintln!("bench: {e}");
        return ExitCode::FAILURE;
    }
    println!("\nresults: {}", output.display());
    ExitCode::SUCCESS
}

#[tokio::main]
#[allow(clippy::too_many_lines)] // one arm per suite
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Operator {
            family,
            sizes,
            concurrency,
            settle_timeout_per_1000,
            idle,
            no_build,
            server_bin,
            operator_bin,
            output,
            work_dir,
            operator_log,
        } => {
            let families = match family {
                FamilyArg::Sessions => vec![operator::Family::Sessions],
                FamilyArg::Evaluations => vec![operator::Family::Evaluations],
                FamilyArg::Labs => vec![operator::Family::Labs],
                FamilyArg::All => operator::Family::ALL.to_vec(),
            };
            let bins = binary(server_bin, no_build, "devcluster", "devcluster").and_then(|s| {
                binary(
                    operator_bin,
                    no_build,
                    "agentic-operator",
                    "agentic-operator",
                )
                .map(|o| (s, o))
            });
            let (server_bin, operator_bin) = match bins {
                Ok(b) => b,
                Err(e) => {
                    eprintln!("bench: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let cfg = operator::Config {
                families,
                sizes,
                concurrency,
                settle_timeout_per_1000_s: settle_timeout_per_1000,
                idle_s: idle,
                server_bin,
                operator_bin,
                work_dir,
                operator_log,
            };
            operator_suite(cfg, &output).await
        }
        Command::Devcluster {
            mode,
            writes,
            warmup,
            concurrency,
            watchers,
            watch_writes,
            list_objects,
            list_runs,
            page_size,
            payload_bytes,
            phase_timeout_s,
            rounds,
            server_bin,
            no_build,
            server_args,
            output,
            server_log,
        } => {
            let cfg = Config {
                writes,
                warmup,
                concurrency,
                watchers,
                watch_writes,
                list_objects,
                list_runs,
                page_size,
                payload_bytes,
                phase_timeout_s,
                rounds,
            };
            let modes: &[Mode] = match mode {
                Modes::Both => &[Mode::Process, Mode::InProcess],
                Modes::Process => &[Mode::Process],
                Modes::InProcess => &[Mode::InProcess],
            };
            if cfg!(debug_assertions) {
                eprintln!(
                    "warning: bench was built without optimizations; in-process numbers are meaningless (use --release)"
                );
            }
            let binary = if modes.contains(&Mode::Process) {
                match (server_bin, no_build) {
                    (Some(p), _) => Some(p),
                    (None, true) => Some(release_binary("devcluster")),
                    (None, false) => {
                        eprintln!("building: cargo build --release -p devcluster");
                        match build_release_binary("devcluster", "devcluster") {
                            Ok(p) => Some(p),
                            Err(e) => {
                                eprintln!("bench: {e}");
                                return ExitCode::FAILURE;
                            }
                        }
                    }
                }
            } else {
                None
            };
            let server = ServerOptions {
                binary,
                extra_args: server_args,
                log: Some(server_log),
            };
            let report = match devcluster::run(&cfg, modes, &server).await {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("bench: {e}");
                    return ExitCode::FAILURE;
                }
            };
            print!("{}", devcluster::render(&report));
            if let Err(e) = write_json(&output, &report) {
                eprintln!("bench: {e}");
                return ExitCode::FAILURE;
            }
            println!("\nresults: {}", output.display());
            ExitCode::SUCCESS
        }
    }
}
