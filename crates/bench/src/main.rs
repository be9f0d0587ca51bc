//! `bench`: runs a speed benchmark suite, prints a table and writes a JSON result file.
//!
//! `bench devcluster` measures the in-memory API server; see `docs/benchmarks.md`.

use std::path::PathBuf;
use std::process::ExitCode;

use bench::process::{build_release_binary, release_binary};
use bench::report::write_json;
use bench::suites::devcluster::{self, Config, Mode, ServerOptions};
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
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
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
