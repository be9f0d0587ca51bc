//! `devcluster serve`: runs the in-memory Kubernetes API server until SIGINT or SIGTERM.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Command line.
#[derive(Debug, Parser)]
#[command(
    name = "devcluster",
    about = "In-memory Kubernetes API server for tests and local runs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the API (plain HTTP, or HTTPS with --tls) until interrupted.
    Serve {
        /// Listen address, e.g. 127.0.0.1:6443 (port 0 picks a free port).
        #[arg(long, default_value = "127.0.0.1:0")]
        addr: SocketAddr,
        /// Where to write a kubeconfig for kubectl and clients.
        #[arg(long)]
        kubeconfig: Option<PathBuf>,
        /// Do not call the webhooks registered in webhook configurations.
        #[arg(long)]
        no_admission_webhooks: bool,
        /// Route webhook calls for a service to a local address:
        /// NAMESPACE/NAME[:PORT]=HOST:PORT (repeatable).
        #[arg(
            long = "webhook-service",
            value_name = "NAMESPACE/NAME[:PORT]=HOST:PORT"
        )]
        webhook_services: Vec<devcluster::admission::ServiceMapping>,
        /// Serve HTTPS with a CA and serving certificate generated at start-up (the CA goes
        /// into the kubeconfig).
        #[arg(long)]
        tls: bool,
        /// Turn off authentication and RBAC: every request runs as the admin.
        #[arg(long)]
        no_rbac: bool,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            addr,
            kubeconfig,
            no_admission_webhooks,
            webhook_services,
            tls,
            no_rbac,
        } => {
            let mut b = devcluster::DevCluster::builder()
                .addr(addr)
                .tls(tls)
                .rbac(!no_rbac)
                .admission_webhooks(!no_admission_webhooks);
            for m in webhook_services {
                b = b.webhook_service(m);
            }
            if let Some(k) = kubeconfig {
                b = b.kubeconfig_path(k);
            }
            let cluster = match b.start().await {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("devcluster: {e}");
                    return std::process::ExitCode::FAILURE;
                }
            };
            let mut out = std::io::stdout();
            let _ = writeln!(out, "ready {}", cluster.addr());
            let _ = out.flush();
            eprintln!("kubeconfig: {}", cluster.kubeconfig_path().display());
            wait_for_signal().await;
            cluster.shutdown().await;
            std::process::ExitCode::SUCCESS
        }
    }
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
