//! `devcluster serve`: runs the in-memory Kubernetes API server until SIGINT or SIGTERM.
//! `devcluster simulate`: runs the simulated scheduler, kubelet and workload controllers
//! against another API server.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// jemalloc instead of the C library's allocator: under a burst both `serve` and `simulate`
/// spent a quarter of their CPU in glibc's malloc and free and a tenth in the kernel zeroing
/// pages the allocator had returned and asked for again.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
        /// into the kubeconfig). Without it, requests carrying no credentials run as the
        /// admin, because kubectl sends none to an http:// server.
        #[arg(long)]
        tls: bool,
        /// Turn off authentication and RBAC: every request runs as the admin.
        #[arg(long)]
        no_rbac: bool,
        /// Simulators to run in-process: `all`, `none` or a list of scheduler, kubelet,
        /// jobs, deployments, agent-runtime, crossplane, argocd, argo-workflows.
        #[arg(long, value_name = "LIST", default_value = "all")]
        simulators: devcluster::simulators::Simulators,
        /// Run no simulator (same as `--simulators none`).
        #[arg(long)]
        no_simulators: bool,
        /// Name of the fake node pods are bound to.
        #[arg(long, default_value = devcluster::simulators::DEFAULT_NODE_NAME)]
        node_name: String,
        /// Delay of the crossplane, argocd and argo-workflows simulators for objects without
        /// a delay annotation (default 0.1).
        #[arg(long, value_name = "SECONDS", value_parser = devcluster::simulators::parse_sim_delay)]
        sim_delay_seconds: Option<std::time::Duration>,
    },
    /// Run the simulators against an API server until interrupted.
    Simulate {
        /// Kubeconfig of the target cluster (default: $KUBECONFIG, ~/.kube/config or
        /// in-cluster).
        #[arg(long)]
        kubeconfig: Option<PathBuf>,
        /// Simulators to run: `all` or a list of scheduler, kubelet, jobs, deployments,
        /// agent-runtime, crossplane, argocd, argo-workflows.
        #[arg(long, value_name = "LIST", default_value = "all")]
        simulators: devcluster::simulators::Simulators,
        /// Name of the fake node pods are bound to.
        #[arg(long, default_value = devcluster::simulators::DEFAULT_NODE_NAME)]
        node_name: String,
        /// Delay of the crossplane, argocd and argo-workflows simulators for objects without
        /// a delay annotation (default 0.1).
        #[arg(long, value_name = "SECONDS", value_parser = devcluster::simulators::parse_sim_delay)]
        sim_delay_seconds: Option<std::time::Duration>,
    },
}

/// `simulators` with `--node-name` and `--sim-delay-seconds` applied.
fn configured(
    simulators: devcluster::simulators::Simulators,
    node_name: String,
    sim_delay: Option<std::time::Duration>,
) -> devcluster::simulators::Simulators {
    let timing = simulators.timing.clone();
    let timing = match sim_delay {
        Some(delay) => timing.with_sim_delay(delay),
        None => timing,
    };
    simulators.node_name(node_name).timing(timing)
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
            simulators,
            no_simulators,
            node_name,
            sim_delay_seconds,
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
            if !no_simulators {
                b = b.with_simulators(configured(simulators, node_name, sim_delay_seconds));
            }
            let cluster = match b.start().await {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("devcluster: {e}");
                    return std::process::ExitCode::FAILURE;
                }
            };
            if !tls && let Some(auth) = cluster.auth() {
                // kubectl sends no credentials to an http:// server: keep the admin
                // kubeconfig working (tokens are still checked).
                auth.set_credentialless_admin(true);
            }
            let mut out = std::io::stdout();
            let _ = writeln!(out, "ready {}", cluster.addr());
            let _ = out.flush();
            eprintln!("kubeconfig: {}", cluster.kubeconfig_path().display());
            wait_for_signal().await;
            cluster.shutdown().await;
            std::process::ExitCode::SUCCESS
        }
        Command::Simulate {
            kubeconfig,
            simulators,
            node_name,
            sim_delay_seconds,
        } => {
            let client = match devcluster::simulators::connect(kubeconfig.as_deref()).await {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("devcluster: {e}");
                    return std::process::ExitCode::FAILURE;
                }
            };
            let simulators = configured(simulators, node_name, sim_delay_seconds);
            let mut out = std::io::stdout();
            let _ = writeln!(out, "simulating {simulators}");
            let _ = out.flush();
            tokio::select! {
                () = simulators.run(client) => {}
                () = wait_for_signal() => {}
            }
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
