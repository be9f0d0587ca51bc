//! The `agentic-operator` binary: parses the command line and runs the manager, prints CRDs
//! or RBAC, or runs one scheduled-session trigger (`session-trigger`).

use std::process::ExitCode;

use agentic_operator::runtime::{
    config::{Cli, Command, Environment, Settings},
    logging,
    manager::Manager,
};
use clap::Parser;

/// jemalloc instead of the C library's allocator: with glibc's the resident set of a
/// 10,000-session burst varied between builds from 58 to 85 MiB at the same live heap
/// (freed memory kept in its arenas), with jemalloc it stays at about 56 MiB and the CPU per
/// write is lower; musl's allocator, in the container image, is slow with many threads.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(code) = agentic_operator::rbac::command(&args) {
        return code;
    }
    if let Some(code) = agentic_operator::sessions::session::trigger::command(&args) {
        return code;
    }
    let cli = Cli::parse();
    match cli.into_command() {
        Command::Crd(args) => crd(args.out_dir.as_deref()),
        #[cfg(feature = "dev")]
        Command::Dev(args) => agentic_operator::dev::command(args),
        Command::Render(args) => agentic_operator::render::command(&args),
        Command::Run(args) => {
            let env = Environment::process();
            let dev_mode = std::env::var("DEV_MODE")
                .is_ok_and(|v| agentic_operator::runtime::config::parse_bool(&v));
            logging::init(dev_mode);
            logging::install_panic_hook();
            let settings = match Settings::resolve(&args, &env) {
                Ok(settings) => settings,
                Err(error) => {
                    tracing::error!("invalid configuration: {error}");
                    return ExitCode::from(2);
                }
            };
            // One explicit TLS provider for the whole process (kube and any other rustls user).
            if rustls::crypto::ring::default_provider()
                .install_default()
                .is_err()
            {
                tracing::debug!("a rustls crypto provider was already installed");
            }
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(error) => {
                    tracing::error!("cannot start the async runtime: {error}");
                    return ExitCode::FAILURE;
                }
            };
            tracing::info!(
                version = env!("CARGO_PKG_VERSION"),
                max_concurrent_reconciles = settings.max_concurrent_reconciles,
                leader_elect = settings.leader_election.is_some(),
                legacy_watch = settings.legacy_watch,
                namespace = %settings.namespace,
                "starting agentic-operator"
            );
            let webhook = agentic_operator::webhook::WebhookOptions::from_settings(&settings);
            let manager = Manager::new(settings, agentic_operator::families());
            match runtime.block_on(agentic_operator::webhook::run_with_webhook(
                manager, webhook,
            )) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    tracing::error!("{error}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn crd(out_dir: Option<&std::path::Path>) -> ExitCode {
    match out_dir {
        None => match agentic_operator::crds_yaml() {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("error: {error}");
                ExitCode::FAILURE
            }
        },
        Some(dir) => match agentic_operator::write_crds(dir) {
            Ok(paths) => {
                for path in paths {
                    println!("{}", path.display());
                }
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("error: {error}");
                ExitCode::FAILURE
            }
        },
    }
}
