//! Command line, environment and the resolved [`Settings`] every controller reads.
//!
//! Flags are parsed with clap. Environment variables are read through an injected lookup
//! function (see [`Settings::resolve`]) so that precedence rules can be tested without touching
//! the process environment.

use std::{
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    path::PathBuf,
    time::Duration,
};

use clap::{ArgAction, Args, Parser, Subcommand};

/// Default runner image for agent sessions (`AMBIENT_CODE_RUNNER_IMAGE`).
pub const DEFAULT_RUNNER_IMAGE: &str = "quay.io/ambient_code/vteam_claude_runner:latest";

/// Default name of the leader-election Lease (`--leader-election-id`).
pub const DEFAULT_LEADER_ELECTION_ID: &str = "agentic-operator-leader";

/// Default `--webhook-cert-dir` (where the webhook's TLS Secret is mounted).
pub const DEFAULT_WEBHOOK_CERT_DIR: &str = "/tmp/k8s-webhook-server/serving-certs";

/// Where Kubernetes mounts the namespace of the pod's service account.
pub const IN_CLUSTER_NAMESPACE_FILE: &str =
    "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// The controller families this binary knows, in the order they are started.
pub const KNOWN_FAMILIES: [&str; 3] = ["sessions", "evaluations", "labs"];

/// The environment variables `run` reads, shown at the end of `--help`.
pub const ENV_HELP: &str = "\
Environment:
  MAX_CONCURRENT_RECONCILES  overrides --max-concurrent-reconciles when > 0
  DEV_MODE                   true: human-readable logs instead of JSON [default: false]
  NAMESPACE                  the operator's namespace [default: in-cluster namespace, else default]
  BACKEND_NAMESPACE          the backend API namespace [default: NAMESPACE]
  AMBIENT_CODE_RUNNER_IMAGE  runner image for sessions [default: quay.io/ambient_code/vteam_claude_runner:latest]
  POD_NAME, HOSTNAME         this replica's name in Events and in the leader-election identity
  LABS_CONFIG_FILE           labs configuration file, used when --labs-config is not given
  LABS_PROVISIONING_TIMEOUT_SECONDS
                             labs provisioning timeout, used when --labs-provisioning-timeout is not given
  RUST_LOG                   log filter [default: info]
  KUBECONFIG                 kubeconfig path; in a pod the service account is used";

/// Top-level command line of `agentic-operator`.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "agentic-operator",
    version,
    about = "Kubernetes controllers for AI-agent sessions, evaluations and labs",
    args_conflicts_with_subcommands = true,
    after_help = ENV_HELP
)]
pub struct Cli {
    /// What to do; `run` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Flags of `run`, accepted without the subcommand name.
    #[command(flatten)]
    pub run: RunArgs,
}

impl Cli {
    /// The subcommand to execute, with `run` as the default.
    pub fn into_command(self) -> Command {
        self.command.unwrap_or(Command::Run(self.run))
    }
}

/// Subcommands of `agentic-operator`.
#[derive(Debug, Clone, Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once at start-up; boxing buys nothing
pub enum Command {
    /// Run the controllers (the default).
    #[command(after_help = ENV_HELP)]
    Run(RunArgs),
    /// Print every `CustomResourceDefinition` as YAML, or write one file per CRD.
    Crd(CrdArgs),
    /// Run everything locally: an in-memory API server with simulators, the operator and the
    /// examples.
    #[cfg(feature = "dev")]
    Dev(crate::dev::DevArgs),
    /// Print the objects the operator would create for the custom resources in files.
    Render(crate::render::RenderArgs),
}

/// Flags of `agentic-operator crd`.
#[derive(Debug, Clone, Args)]
pub struct CrdArgs {
    /// Write one `<group>_<plural>.yaml` file per CRD into this directory instead of printing
    /// one multi-document stream to stdout.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
}

/// Flags of `agentic-operator run`.
///
/// Environment variables (read by [`Settings::resolve`], not by clap): `MAX_CONCURRENT_RECONCILES`,
/// `DEV_MODE`, `NAMESPACE`, `BACKEND_NAMESPACE`, `AMBIENT_CODE_RUNNER_IMAGE`, `POD_NAME`,
/// `HOSTNAME`.
#[derive(Debug, Clone, Args)]
#[allow(clippy::struct_excessive_bools)]
pub struct RunArgs {
    /// Maximum number of objects each controller reconciles in parallel. The environment
    /// variable `MAX_CONCURRENT_RECONCILES` overrides this flag when it holds a number > 0.
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub max_concurrent_reconciles: u16,

    /// Address the Prometheus /metrics endpoint listens on (":8080" = all interfaces,
    /// "0" = disabled).
    #[arg(long, default_value = ":8080", value_name = "ADDR")]
    pub metrics_bind_address: String,

    /// Address the /healthz and /readyz probes listen on (":8081" = all interfaces,
    /// "0" = disabled).
    #[arg(long, default_value = ":8081", value_name = "ADDR")]
    pub health_probe_bind_address: String,

    /// Enable leader election so that only one replica reconciles (for HA deployments).
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_value_t = false,
          default_missing_value = "true", value_name = "BOOL")]
    pub leader_elect: bool,

    /// Name of the coordination.k8s.io Lease used for leader election.
    #[arg(long, default_value = DEFAULT_LEADER_ELECTION_ID, value_name = "NAME")]
    pub leader_election_id: String,

    /// Namespace of the leader-election Lease. Default: $NAMESPACE, else the pod's own
    /// namespace (in cluster), else "default".
    #[arg(long, value_name = "NAMESPACE")]
    pub leader_election_namespace: Option<String>,

    /// How long a Lease stays valid after its last renewal; standbys take over after it.
    #[arg(long, default_value = "15s", value_parser = parse_duration, value_name = "DURATION")]
    pub lease_duration: Duration,

    /// How long the leader keeps retrying a failed renewal before it gives up and exits.
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub renew_deadline: Duration,

    /// Interval between attempts to acquire or renew the Lease.
    #[arg(long, default_value = "2s", value_parser = parse_duration, value_name = "DURATION")]
    pub retry_period: Duration,

    /// Debugging mode: reconcile objects one at a time straight from the watch, without the
    /// work queue, concurrency or retry backoff.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_value_t = false,
          default_missing_value = "true", value_name = "BOOL")]
    pub legacy_watch: bool,

    /// Comma-separated controller families to run (sessions, evaluations, labs). Default:
    /// every family whose CRDs are installed.
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub controllers: Option<Vec<String>>,

    /// Deadline for one reconcile; a reconcile still running after it is cancelled and
    /// retried with backoff. "0" disables the deadline.
    #[arg(long, default_value = "5m", value_parser = parse_duration, value_name = "DURATION")]
    pub reconcile_timeout: Duration,

    /// Longest wait before retrying an object whose reconciles keep failing (the per-object
    /// backoff starts at 5 ms and doubles up to this; controller-runtime's limit is 1000 s).
    #[arg(long, default_value = "1000s", value_parser = parse_duration, value_name = "DURATION")]
    pub max_retry_backoff: Duration,

    /// Namespace Testkube watches (normally "testkube"): evaluation Experiments' workflows and
    /// triggers are created there. Default: each Experiment's own namespace.
    #[arg(long, value_name = "NAMESPACE")]
    pub testkube_namespace: Option<String>,

    /// Address the validating admission webhook listens on over HTTPS ("0" = disabled).
    #[arg(long, default_value = ":9443", value_name = "ADDR")]
    pub webhook_bind_address: String,

    /// Directory holding the webhook's tls.crt and tls.key (a mounted TLS Secret); reloaded
    /// when the files change.
    #[arg(long, default_value = DEFAULT_WEBHOOK_CERT_DIR, value_name = "DIR")]
    pub webhook_cert_dir: PathBuf,

    /// labs: YAML file with the cluster-type mappings, namespaces and deadlines (docs/labs.md),
    /// laid over the shipped defaults. Default: `$LABS_CONFIG_FILE`, else the defaults.
    #[arg(long, value_name = "FILE")]
    pub labs_config: Option<PathBuf>,

    /// labs: how long a cluster claim may take to become Ready before its target fails.
    /// Default: `$LABS_PROVISIONING_TIMEOUT_SECONDS`, else the configuration file, else 20m.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub labs_provisioning_timeout: Option<Duration>,

    /// Client-side limit on requests per second to the API server, shared by every controller
    /// ("0" = no limit: the API server's priority and fairness protects it).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub kube_api_qps: u32,

    /// Requests that may go out at once above --kube-api-qps after a quiet spell. Default:
    /// the same as --kube-api-qps.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub kube_api_burst: u32,
}

impl Default for RunArgs {
    fn default() -> Self {
        Self {
            max_concurrent_reconciles: 10,
            metrics_bind_address: ":8080".into(),
            health_probe_bind_address: ":8081".into(),
            leader_elect: false,
            leader_election_id: DEFAULT_LEADER_ELECTION_ID.into(),
            leader_election_namespace: None,
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
            legacy_watch: false,
            controllers: None,
            reconcile_timeout: Duration::from_mins(5),
            max_retry_backoff: Duration::from_secs(1000),
            testkube_namespace: None,
            webhook_bind_address: ":9443".into(),
            webhook_cert_dir: PathBuf::from(DEFAULT_WEBHOOK_CERT_DIR),
            labs_config: None,
            labs_provisioning_timeout: None,
            kube_api_qps: 0,
            kube_api_burst: 0,
        }
    }
}

/// A listen address for one of the HTTP servers, or the server switched off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindAddress {
    /// `"0"`: the server is not started.
    Disabled,
    /// Listen on this socket address.
    Listen(SocketAddr),
}

impl BindAddress {
    /// Parses a controller-runtime style address: `":8080"` (all interfaces), `"host:port"`,
    /// `"[::1]:8080"`, `"localhost:8080"`, or `"0"` to disable.
    pub fn parse(flag: &'static str, value: &str) -> Result<Self, ConfigError> {
        let invalid = || ConfigError::InvalidBindAddress {
            flag,
            value: value.to_owned(),
        };
        let trimmed = value.trim();
        if trimmed == "0" {
            return Ok(Self::Disabled);
        }
        if let Some(port) = trimmed.strip_prefix(':') {
            let port: u16 = port.parse().map_err(|_| invalid())?;
            return Ok(Self::Listen(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::UNSPECIFIED,
                port,
            ))));
        }
        if let Some(port) = trimmed.strip_prefix("localhost:") {
            let port: u16 = port.parse().map_err(|_| invalid())?;
            return Ok(Self::Listen(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::LOCALHOST,
                port,
            ))));
        }
        trimmed.parse().map(Self::Listen).map_err(|_| invalid())
    }
}

/// Leader-election settings, present only when `--leader-elect` is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderElectionSettings {
    /// Name of the Lease object.
    pub lease_name: String,
    /// Namespace of the Lease object.
    pub namespace: String,
    /// This replica's identity, written into `spec.holderIdentity`.
    pub identity: String,
    /// `--lease-duration`.
    pub lease_duration: Duration,
    /// `--renew-deadline`.
    pub renew_deadline: Duration,
    /// `--retry-period`.
    pub retry_period: Duration,
}

/// Everything the runtime and the families read, after flags and environment are combined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Per-controller reconcile concurrency (flag, overridden by `MAX_CONCURRENT_RECONCILES`).
    pub max_concurrent_reconciles: u16,
    /// Where `/metrics` is served.
    pub metrics_address: BindAddress,
    /// Where `/healthz` and `/readyz` are served.
    pub probe_address: BindAddress,
    /// `Some` when leader election is enabled.
    pub leader_election: Option<LeaderElectionSettings>,
    /// Sequential watch-and-reconcile mode without the work queue.
    pub legacy_watch: bool,
    /// Families requested with `--controllers`; `None` means "every installed family".
    pub controllers: Option<Vec<String>>,
    /// Per-reconcile deadline; `None` when disabled with `--reconcile-timeout=0`.
    pub reconcile_timeout: Option<Duration>,
    /// Longest per-object retry delay (`--max-retry-backoff`).
    pub max_retry_backoff: Duration,
    /// `--testkube-namespace`, `None` when unset or empty.
    pub testkube_namespace: Option<String>,
    /// Where the admission webhook is served (`--webhook-bind-address`).
    pub webhook_address: BindAddress,
    /// `--webhook-cert-dir`.
    pub webhook_cert_dir: PathBuf,
    /// `DEV_MODE=true`: human-readable logs instead of JSON.
    pub dev_mode: bool,
    /// The operator's namespace (`NAMESPACE`, else the in-cluster namespace, else `default`).
    pub namespace: String,
    /// The backend API namespace (`BACKEND_NAMESPACE`, defaults to [`Settings::namespace`]).
    pub backend_namespace: String,
    /// Runner image for sessions (`AMBIENT_CODE_RUNNER_IMAGE`).
    pub runner_image: String,
    /// This replica's name: `POD_NAME`, else `HOSTNAME` (in a pod: the pod name). Used as the
    /// Events' `reportingInstance`.
    pub instance: String,
    /// This replica's leader-election identity: [`Settings::instance`] plus a random suffix, so
    /// a restarted pod with the same name is a new candidate.
    pub identity: String,
    /// The labs family's configuration sources.
    pub labs: LabsSettings,
    /// Client-side request rate limit (`--kube-api-qps`, `--kube-api-burst`); `None`: none.
    pub api_rate: Option<ApiRate>,
}

/// A client-side limit on requests to the API server: on average `qps` per second, with up to
/// `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiRate {
    /// Requests per second on average.
    pub qps: u32,
    /// Requests allowed at once.
    pub burst: u32,
}

impl ApiRate {
    /// `burst` requests per window of `burst / qps` seconds: `qps` on average, never more
    /// than `burst` at once.
    pub fn window(self) -> (u64, Duration) {
        (
            u64::from(self.burst),
            Duration::from_secs_f64(f64::from(self.burst) / f64::from(self.qps.max(1))),
        )
    }

    fn resolve(qps: u32, burst: u32) -> Result<Option<Self>, ConfigError> {
        match (qps, burst) {
            (0, 0) => Ok(None),
            (0, _) => Err(ConfigError::BurstWithoutQps { burst }),
            (qps, 0) => Ok(Some(Self { qps, burst: qps })),
            (qps, burst) => Ok(Some(Self { qps, burst })),
        }
    }
}

/// Where the labs family's configuration comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabsSettings {
    /// Configuration file: `--labs-config`, else `LABS_CONFIG_FILE`.
    pub config: Option<PathBuf>,
    /// Provisioning timeout: `--labs-provisioning-timeout`, else
    /// `LABS_PROVISIONING_TIMEOUT_SECONDS`; `None` leaves the file's value or the default.
    pub provisioning_timeout: Option<Duration>,
}

/// Invalid flag or environment values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A bind address that is neither `0`, `:port` nor `host:port`.
    #[error(
        "--{flag}={value:?} is not a valid address: use \":PORT\" for all interfaces, \"HOST:PORT\", or \"0\" to disable"
    )]
    InvalidBindAddress {
        /// The flag name without dashes.
        flag: &'static str,
        /// The rejected value.
        value: String,
    },
    /// A family name in `--controllers` that this binary does not know.
    #[error("--controllers contains {name:?}: allowed families are sessions, evaluations, labs")]
    UnknownFamily {
        /// The rejected name.
        name: String,
    },
    /// Lease timings that cannot work together.
    #[error(
        "leader election timings are inconsistent: need --lease-duration ({lease:?}) > --renew-deadline ({renew:?}) > --retry-period ({retry:?}) > 0"
    )]
    LeaseTimings {
        /// `--lease-duration`.
        lease: Duration,
        /// `--renew-deadline`.
        renew: Duration,
        /// `--retry-period`.
        retry: Duration,
    },
    /// `--kube-api-burst` without a rate to refill it.
    #[error(
        "--kube-api-burst={burst} needs --kube-api-qps above 0 (or set both to 0 for no limit)"
    )]
    BurstWithoutQps {
        /// The rejected burst.
        burst: u32,
    },
    /// `--max-concurrent-reconciles=0` with no usable environment override.
    #[error("--max-concurrent-reconciles must be at least 1")]
    ZeroConcurrency,
    /// `--max-retry-backoff` below the first retry delay.
    #[error("--max-retry-backoff={value:?} is too short: use 5ms or more (default 1000s)")]
    RetryBackoff {
        /// The rejected value.
        value: Duration,
    },
    /// A labs provisioning timeout that is zero or not a number of seconds.
    #[error(
        "{source_name}={value:?} is not a valid provisioning timeout: use a duration above zero (flag: e.g. 20m; environment: whole seconds, e.g. 1200)"
    )]
    LabsProvisioningTimeout {
        /// `--labs-provisioning-timeout` or `LABS_PROVISIONING_TIMEOUT_SECONDS`.
        source_name: &'static str,
        /// The rejected value.
        value: String,
    },
}

type Lookup = Box<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Source of values that come from outside the command line.
///
/// [`Environment::process`] reads the real environment and the in-cluster namespace file;
/// tests build one from a map.
pub struct Environment {
    lookup: Lookup,
    in_cluster_namespace: Option<String>,
    random_suffix: String,
}

impl std::fmt::Debug for Environment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Environment")
            .field("in_cluster_namespace", &self.in_cluster_namespace)
            .finish_non_exhaustive()
    }
}

impl Environment {
    /// The process environment plus the service-account namespace file, if mounted.
    pub fn process() -> Self {
        let in_cluster_namespace = std::fs::read_to_string(IN_CLUSTER_NAMESPACE_FILE)
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty());
        Self {
            lookup: Box::new(|key| {
                std::env::var(key).ok().or_else(|| {
                    // Not every shell exports HOSTNAME; the kernel always knows it.
                    (key == "HOSTNAME")
                        .then(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
                        .flatten()
                        .map(|h| h.trim().to_owned())
                })
            }),
            in_cluster_namespace,
            random_suffix: format!("{:08x}", rand::random::<u32>()),
        }
    }

    /// A fixed environment (for tests and embedding): `vars` as variables, an optional
    /// in-cluster namespace, and a fixed identity suffix.
    pub fn fixed<I, K, V>(vars: I, in_cluster_namespace: Option<&str>) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let map: std::collections::HashMap<String, String> = vars
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        Self {
            lookup: Box::new(move |key| map.get(key).cloned()),
            in_cluster_namespace: in_cluster_namespace.map(str::to_owned),
            random_suffix: "00000000".into(),
        }
    }

    fn var(&self, key: &str) -> Option<String> {
        (self.lookup)(key).filter(|v| !v.trim().is_empty())
    }
}

impl Settings {
    /// Combines flags and environment. Precedence: `MAX_CONCURRENT_RECONCILES` (when it parses
    /// to a number > 0) over `--max-concurrent-reconciles`; `--leader-election-namespace` over
    /// `NAMESPACE` over the in-cluster namespace over `default`.
    pub fn resolve(args: &RunArgs, env: &Environment) -> Result<Self, ConfigError> {
        let max_concurrent_reconciles = env
            .var("MAX_CONCURRENT_RECONCILES")
            .and_then(|v| v.trim().parse::<u16>().ok())
            .filter(|n| *n > 0)
            .unwrap_or(args.max_concurrent_reconciles);
        let max_retry_backoff = max_retry_backoff(args)?;
        if max_concurrent_reconciles == 0 {
            return Err(ConfigError::ZeroConcurrency);
        }
        let metrics_address =
            BindAddress::parse("metrics-bind-address", &args.metrics_bind_address)?;
        let probe_address =
            BindAddress::parse("health-probe-bind-address", &args.health_probe_bind_address)?;

        let namespace = env
            .var("NAMESPACE")
            .or_else(|| env.in_cluster_namespace.clone())
            .unwrap_or_else(|| "default".to_owned());
        let backend_namespace = env
            .var("BACKEND_NAMESPACE")
            .unwrap_or_else(|| namespace.clone());
        let runner_image = env
            .var("AMBIENT_CODE_RUNNER_IMAGE")
            .unwrap_or_else(|| DEFAULT_RUNNER_IMAGE.to_owned());
        let dev_mode = env.var("DEV_MODE").is_some_and(|v| parse_bool(&v));
        let host = env
            .var("POD_NAME")
            .or_else(|| env.var("HOSTNAME"))
            .unwrap_or_else(|| "agentic-operator".to_owned());
        let identity = format!("{host}_{}", env.random_suffix);
        let controllers = requested_families(args)?;

        let leader_election = if args.leader_elect {
            let (lease, renew, retry) =
                (args.lease_duration, args.renew_deadline, args.retry_period);
            if retry.is_zero() || renew <= retry || lease <= renew {
                return Err(ConfigError::LeaseTimings {
                    lease,
                    renew,
                    retry,
                });
            }
            Some(LeaderElectionSettings {
                lease_name: args.leader_election_id.clone(),
                namespace: args
                    .leader_election_namespace
                    .clone()
                    .filter(|n| !n.trim().is_empty())
                    .unwrap_or_else(|| namespace.clone()),
                identity: identity.clone(),
                lease_duration: lease,
                renew_deadline: renew,
                retry_period: retry,
            })
        } else {
            None
        };

        Ok(Self {
            max_concurrent_reconciles,
            metrics_address,
            probe_address,
            leader_election,
            legacy_watch: args.legacy_watch,
            controllers,
            reconcile_timeout: Some(args.reconcile_timeout).filter(|d| !d.is_zero()),
            max_retry_backoff,
            testkube_namespace: args
                .testkube_namespace
                .as_deref()
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(str::to_owned),
            webhook_address: BindAddress::parse(
                "webhook-bind-address",
                &args.webhook_bind_address,
            )?,
            webhook_cert_dir: args.webhook_cert_dir.clone(),
            dev_mode,
            namespace,
            backend_namespace,
            runner_image,
            instance: host,
            identity,
            labs: labs_settings(args, env)?,
            api_rate: ApiRate::resolve(args.kube_api_qps, args.kube_api_burst)?,
        })
    }
}

/// The families `--controllers` names (lowercased, without blanks or repeats); `None` when
/// the flag is not given.
fn requested_families(args: &RunArgs) -> Result<Option<Vec<String>>, ConfigError> {
    let Some(list) = &args.controllers else {
        return Ok(None);
    };
    let mut names = Vec::new();
    for raw in list {
        let name = raw.trim().to_ascii_lowercase();
        if name.is_empty() {
            continue;
        }
        if !KNOWN_FAMILIES.contains(&name.as_str()) {
            return Err(ConfigError::UnknownFamily { name: raw.clone() });
        }
        if !names.contains(&name) {
            names.push(name);
        }
    }
    Ok(Some(names))
}

/// `--max-retry-backoff`, which must not be shorter than the first retry delay (5 ms).
fn max_retry_backoff(args: &RunArgs) -> Result<Duration, ConfigError> {
    if args.max_retry_backoff < super::backoff::BackoffPolicy::default().base {
        return Err(ConfigError::RetryBackoff {
            value: args.max_retry_backoff,
        });
    }
    Ok(args.max_retry_backoff)
}

/// `--labs-config` over `LABS_CONFIG_FILE`, and `--labs-provisioning-timeout` over
/// `LABS_PROVISIONING_TIMEOUT_SECONDS` (whole seconds); zero or unparsable timeouts are errors.
fn labs_settings(args: &RunArgs, env: &Environment) -> Result<LabsSettings, ConfigError> {
    let labs_config = args.labs_config.clone().or_else(|| {
        env.var("LABS_CONFIG_FILE")
            .filter(|v| !v.trim().is_empty())
            .map(PathBuf::from)
    });
    let labs_provisioning_timeout = match args.labs_provisioning_timeout {
        Some(d) if d.is_zero() => {
            return Err(ConfigError::LabsProvisioningTimeout {
                source_name: "--labs-provisioning-timeout",
                value: "0".into(),
            });
        }
        Some(d) => Some(d),
        None => match env.var("LABS_PROVISIONING_TIMEOUT_SECONDS") {
            None => None,
            Some(raw) => match raw.trim().parse::<u64>() {
                Ok(secs) if secs > 0 => Some(Duration::from_secs(secs)),
                _ => {
                    return Err(ConfigError::LabsProvisioningTimeout {
                        source_name: "LABS_PROVISIONING_TIMEOUT_SECONDS",
                        value: raw,
                    });
                }
            },
        },
    };
    Ok(LabsSettings {
        config: labs_config,
        provisioning_timeout: labs_provisioning_timeout,
    })
}

/// Accepts the boolean spellings Go's `strconv.ParseBool` accepts (`1`, `t`, `true`, ...).
pub fn parse_bool(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "1" | "t" | "true" | "y" | "yes" | "on"
    )
}

/// Parses a Go-style duration such as `15s`, `1m30s`, `500ms`, `2h` or a bare `0`.
pub fn parse_duration(value: &str) -> Result<Duration, String> {
    let text = value.trim();
    let err = || {
        format!("{value:?} is not a duration: use a number with a unit, e.g. 500ms, 15s, 1m30s, 2h")
    };
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    if text.is_empty() {
        return Err(err());
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(err)?;
        if digits == 0 {
            return Err(err());
        }
        let number: f64 = rest[..digits].parse().map_err(|_| err())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds_per_unit = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(err()),
        };
        rest = &rest[unit_len..];
        total += Duration::try_from_secs_f64(number * seconds_per_unit).map_err(|_| err())?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Command {
        Cli::try_parse_from(std::iter::once("agentic-operator").chain(args.iter().copied()))
            .unwrap()
            .into_command()
    }

    fn run_args(args: &[&str]) -> RunArgs {
        match parse(args) {
            Command::Run(run) => run,
            _ => panic!("expected run"),
        }
    }

    fn no_env() -> Environment {
        Environment::fixed(Vec::<(String, String)>::new(), None)
    }

    #[test]
    fn defaults_match_upstream() {
        let args = run_args(&[]);
        let settings = Settings::resolve(&args, &no_env()).unwrap();
        assert_eq!(settings.max_concurrent_reconciles, 10);
        assert_eq!(
            settings.metrics_address,
            BindAddress::Listen("0.0.0.0:8080".parse().unwrap())
        );
        assert_eq!(
            settings.probe_address,
            BindAddress::Listen("0.0.0.0:8081".parse().unwrap())
        );
        assert_eq!(settings.leader_election, None);
        assert!(!settings.legacy_watch);
        assert_eq!(settings.controllers, None);
        assert_eq!(settings.reconcile_timeout, Some(Duration::from_mins(5)));
        assert!(!settings.dev_mode);
        assert_eq!(settings.namespace, "default");
        assert_eq!(settings.backend_namespace, "default");
        assert_eq!(settings.runner_image, DEFAULT_RUNNER_IMAGE);
        assert_eq!(settings.instance, "agentic-operator");
        assert_eq!(settings.identity, "agentic-operator_00000000");
    }

    #[test]
    fn labs_flags_win_over_the_environment() {
        let env = Environment::fixed(
            [
                ("LABS_CONFIG_FILE", "/env/labs.yaml"),
                ("LABS_PROVISIONING_TIMEOUT_SECONDS", "90"),
            ],
            None,
        );
        let s = Settings::resolve(&run_args(&[]), &env).unwrap();
        assert_eq!(s.labs.config, Some(PathBuf::from("/env/labs.yaml")));
        assert_eq!(s.labs.provisioning_timeout, Some(Duration::from_secs(90)));
        let args = run_args(&[
            "--labs-config",
            "/flag/labs.yaml",
            "--labs-provisioning-timeout",
            "5m",
        ]);
        let s = Settings::resolve(&args, &env).unwrap();
        assert_eq!(s.labs.config, Some(PathBuf::from("/flag/labs.yaml")));
        assert_eq!(s.labs.provisioning_timeout, Some(Duration::from_mins(5)));
        let s = Settings::resolve(&run_args(&[]), &no_env()).unwrap();
        assert_eq!(s.labs, LabsSettings::default());
        // Bad values name their source.
        let err = Settings::resolve(&run_args(&["--labs-provisioning-timeout", "0"]), &no_env())
            .unwrap_err();
        assert!(
            err.to_string().contains("--labs-provisioning-timeout"),
            "{err}"
        );
        let env = Environment::fixed([("LABS_PROVISIONING_TIMEOUT_SECONDS", "20m")], None);
        let err = Settings::resolve(&run_args(&[]), &env).unwrap_err();
        assert!(
            err.to_string()
                .contains("LABS_PROVISIONING_TIMEOUT_SECONDS=\"20m\""),
            "{err}"
        );
        assert!(
            Cli::try_parse_from(["agentic-operator", "--labs-provisioning-timeout", "soon"])
                .is_err()
        );
    }

    #[test]
    fn identity_from_pod_name_or_hostname() {
        let env = Environment::fixed([("POD_NAME", "op-7d9f"), ("HOSTNAME", "host")], None);
        let settings = Settings::resolve(&run_args(&[]), &env).unwrap();
        assert_eq!(settings.instance, "op-7d9f");
        assert_eq!(settings.identity, "op-7d9f_00000000");
        let env = Environment::fixed([("HOSTNAME", "host")], None);
        assert_eq!(
            Settings::resolve(&run_args(&[]), &env).unwrap().instance,
            "host"
        );
    }

    #[test]
    fn run_is_the_default_subcommand() {
        let explicit = run_args(&["run", "--max-concurrent-reconciles", "3"]);
        let implicit = run_args(&["--max-concurrent-reconciles=3"]);
        assert_eq!(explicit.max_concurrent_reconciles, 3);
        assert_eq!(implicit.max_concurrent_reconciles, 3);
    }

    #[test]
    fn crd_subcommand_takes_out_dir() {
        match parse(&["crd", "--out-dir", "config/crd/bases"]) {
            Command::Crd(crd) => assert_eq!(crd.out_dir, Some(PathBuf::from("config/crd/bases"))),
            _ => panic!("expected crd"),
        }
        match parse(&["crd"]) {
            Command::Crd(crd) => assert_eq!(crd.out_dir, None),
            _ => panic!("expected crd"),
        }
    }

    #[test]
    fn env_override_of_max_concurrent_reconciles() {
        let args = run_args(&["--max-concurrent-reconciles=4"]);
        let cases: &[(Option<&str>, u16)] = &[
            (None, 4),
            (Some("20"), 20),
            (Some("0"), 4),
            (Some("-3"), 4),
            (Some("many"), 4),
            (Some(""), 4),
            (Some(" 7 "), 7),
        ];
        for (value, expected) in cases {
            let env = match value {
                Some(v) => Environment::fixed([("MAX_CONCURRENT_RECONCILES", *v)], None),
                None => no_env(),
            };
            let settings = Settings::resolve(&args, &env).unwrap();
            assert_eq!(
                settings.max_concurrent_reconciles, *expected,
                "MAX_CONCURRENT_RECONCILES={value:?}"
            );
        }
    }

    #[test]
    fn max_retry_backoff_sets_the_controllers_backoff_limit() {
        let settings = Settings::resolve(&run_args(&[]), &no_env()).unwrap();
        assert_eq!(settings.max_retry_backoff, Duration::from_secs(1000));
        let settings =
            Settings::resolve(&run_args(&["--max-retry-backoff=30s"]), &no_env()).unwrap();
        assert_eq!(settings.max_retry_backoff, Duration::from_secs(30));
        // Shorter than the first retry delay: refused, naming the flag and the minimum.
        let err = Settings::resolve(&run_args(&["--max-retry-backoff=0"]), &no_env()).unwrap_err();
        assert_eq!(
            err,
            ConfigError::RetryBackoff {
                value: Duration::ZERO
            }
        );
        assert!(
            err.to_string().contains("--max-retry-backoff") && err.to_string().contains("5ms"),
            "{err}"
        );
    }

    #[test]
    fn zero_concurrency_without_override_is_rejected() {
        let args = run_args(&["--max-concurrent-reconciles=0"]);
        assert_eq!(
            Settings::resolve(&args, &no_env()),
            Err(ConfigError::ZeroConcurrency)
        );
        let env = Environment::fixed([("MAX_CONCURRENT_RECONCILES", "2")], None);
        assert_eq!(
            Settings::resolve(&args, &env)
                .unwrap()
                .max_concurrent_reconciles,
            2
        );
    }

    #[test]
    fn leader_election_namespace_precedence() {
        let elect = run_args(&["--leader-elect"]);
        let cases: &[(Option<&str>, Option<&str>, &RunArgs, &str)] = &[
            (None, None, &elect, "default"),
            (None, Some("in-cluster"), &elect, "in-cluster"),
            (Some("from-env"), Some("in-cluster"), &elect, "from-env"),
        ];
        for (env_ns, file_ns, args, expected) in cases {
            let env = Environment::fixed(
                env_ns
                    .map(|ns| ("NAMESPACE", ns))
                    .into_iter()
                    .collect::<Vec<_>>(),
                *file_ns,
            );
            let settings = Settings::resolve(args, &env).unwrap();
            assert_eq!(settings.leader_election.unwrap().namespace, *expected);
        }
        let flag = run_args(&["--leader-elect=true", "--leader-election-namespace", "ops"]);
        let env = Environment::fixed([("NAMESPACE", "from-env")], Some("in-cluster"));
        let le = Settings::resolve(&flag, &env)
            .unwrap()
            .leader_election
            .unwrap();
        assert_eq!(le.namespace, "ops");
        assert_eq!(le.lease_name, DEFAULT_LEADER_ELECTION_ID);
        assert_eq!(le.lease_duration, Duration::from_secs(15));
        assert_eq!(le.renew_deadline, Duration::from_secs(10));
        assert_eq!(le.retry_period, Duration::from_secs(2));
    }

    #[test]
    fn go_style_boolean_flags() {
        assert!(run_args(&["--leader-elect"]).leader_elect);
        assert!(run_args(&["--leader-elect=true"]).leader_elect);
        assert!(!run_args(&["--leader-elect=false"]).leader_elect);
        assert!(run_args(&["--legacy-watch"]).legacy_watch);
        assert!(!run_args(&[]).legacy_watch);
    }

    #[test]
    fn namespaces_and_image_from_env() {
        let env = Environment::fixed(
            [
                ("NAMESPACE", "ambient"),
                ("AMBIENT_CODE_RUNNER_IMAGE", "example.com/runner:1"),
                ("DEV_MODE", "true"),
            ],
            Some("ignored"),
        );
        let settings = Settings::resolve(&run_args(&[]), &env).unwrap();
        assert_eq!(settings.namespace, "ambient");
        assert_eq!(settings.backend_namespace, "ambient");
        assert_eq!(settings.runner_image, "example.com/runner:1");
        assert!(settings.dev_mode);

        let env = Environment::fixed([("NAMESPACE", "a"), ("BACKEND_NAMESPACE", "b")], None);
        let settings = Settings::resolve(&run_args(&[]), &env).unwrap();
        assert_eq!(settings.backend_namespace, "b");

        let env = Environment::fixed([("DEV_MODE", "false")], None);
        assert!(!Settings::resolve(&run_args(&[]), &env).unwrap().dev_mode);
    }

    #[test]
    fn controllers_list_is_validated() {
        let args = run_args(&["--controllers", "sessions,labs,sessions"]);
        let settings = Settings::resolve(&args, &no_env()).unwrap();
        assert_eq!(
            settings.controllers,
            Some(vec!["sessions".to_owned(), "labs".to_owned()])
        );
        let args = run_args(&["--controllers=sessions,bogus"]);
        assert_eq!(
            Settings::resolve(&args, &no_env()),
            Err(ConfigError::UnknownFamily {
                name: "bogus".into()
            })
        );
    }

    #[test]
    fn bind_addresses() {
        let cases: &[(&str, Option<BindAddress>)] = &[
            ("0", Some(BindAddress::Disabled)),
            (
                ":9090",
                Some(BindAddress::Listen("0.0.0.0:9090".parse().unwrap())),
            ),
            (
                "127.0.0.1:80",
                Some(BindAddress::Listen("127.0.0.1:80".parse().unwrap())),
            ),
            (
                "[::1]:80",
                Some(BindAddress::Listen("[::1]:80".parse().unwrap())),
            ),
            (
                "localhost:81",
                Some(BindAddress::Listen("127.0.0.1:81".parse().unwrap())),
            ),
            (":http", None),
            ("8080", None),
            ("", None),
        ];
        for (value, expected) in cases {
            assert_eq!(
                BindAddress::parse("metrics-bind-address", value).ok(),
                *expected,
                "{value:?}"
            );
        }
        let msg = BindAddress::parse("metrics-bind-address", "8080")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("--metrics-bind-address"), "{msg}");
    }

    #[test]
    fn lease_timings_must_be_ordered() {
        let args = run_args(&[
            "--leader-elect",
            "--lease-duration=5s",
            "--renew-deadline=10s",
        ]);
        assert!(matches!(
            Settings::resolve(&args, &no_env()),
            Err(ConfigError::LeaseTimings { .. })
        ));
    }

    #[test]
    fn durations() {
        let cases: &[(&str, Option<Duration>)] = &[
            ("15s", Some(Duration::from_secs(15))),
            ("1m30s", Some(Duration::from_secs(90))),
            ("500ms", Some(Duration::from_millis(500))),
            ("2h", Some(Duration::from_hours(2))),
            ("1.5s", Some(Duration::from_millis(1500))),
            ("0", Some(Duration::ZERO)),
            ("15", None),
            ("s", None),
            ("", None),
            ("10x", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_duration(text).ok(), *expected, "{text:?}");
        }
        let args = run_args(&["--reconcile-timeout=0"]);
        assert_eq!(
            Settings::resolve(&args, &no_env())
                .unwrap()
                .reconcile_timeout,
            None
        );
    }

    #[test]
    fn api_rate_flags() {
        let resolve = |qps, burst| {
            let args = RunArgs {
                kube_api_qps: qps,
                kube_api_burst: burst,
                ..RunArgs::default()
            };
            Settings::resolve(&args, &Environment::fixed([("POD_NAME", "p")], None))
                .map(|s| s.api_rate)
        };
        assert_eq!(resolve(0, 0), Ok(None), "no limit by default");
        assert_eq!(resolve(20, 0), Ok(Some(ApiRate { qps: 20, burst: 20 })));
        assert_eq!(resolve(20, 30), Ok(Some(ApiRate { qps: 20, burst: 30 })));
        let err = resolve(0, 30).unwrap_err();
        assert_eq!(err, ConfigError::BurstWithoutQps { burst: 30 });
        assert!(
            err.to_string()
                .contains("--kube-api-burst=30 needs --kube-api-qps")
        );
        assert_eq!(
            ApiRate { qps: 20, burst: 30 }.window(),
            (30, Duration::from_millis(1500))
        );
    }

    #[test]
    fn defaults_of_derive_and_default_impl_agree() {
        let parsed = run_args(&[]);
        let manual = RunArgs::default();
        assert_eq!(format!("{parsed:?}"), format!("{manual:?}"));
    }
}
