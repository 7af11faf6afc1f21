//! The `weft` command line. `run` and `validate` work on config files; every other command is a
//! client of a running node's admin API, found through the same config file (or `--admin`).

mod client;
mod import;
mod commands;
mod output;
mod parse;
mod plugin;
mod run;
mod top;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::catalog::{HealthFilter, Protocol};
use crate::config::{self, Config, EXIT_CONFIG, Mode};
pub use output::Format;
pub use parse::command;
use output::say;
pub use plugin::{PluginCmd, PushArgs};

/// `weft --version`: the release and the commit it was built from.
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("WEFT_GIT_COMMIT"), ")");

#[derive(Parser, Debug)]
#[command(name = "weft", version = VERSION, about = "Service-connect mesh and service registry in one binary")]
pub struct Cli {
    /// Config file or directory of *.toml files (merged in lexical order).
    #[arg(short = 'c', long, global = true, env = "WEFT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Client commands: admin API address of the node to talk to (default: WEFT_ADMIN, else [admin]
    /// listen of the config, else 127.0.0.1:9901); may also follow the command.
    #[arg(long, value_name = "ADDR")]
    pub admin: Option<SocketAddr>,
    /// Client commands: the admin API's bearer token, for a node reached beyond loopback
    /// (default: WEFT_ADMIN_TOKEN_FILE, else [admin] token_file of the config); may also follow
    /// the command.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Client commands: output format; may also follow the command.
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a node (combined mode on loopback when no config is given).
    Run(RunArgs),
    /// Check a config file or directory; exits 78 when it is invalid.
    Validate {
        /// File or directory; defaults to -c.
        path: Option<PathBuf>,
    },
    /// Show the node's state.
    Status,
    /// Manage namespaces.
    #[command(subcommand)]
    Namespace(NamespaceCmd),
    /// Manage services.
    #[command(subcommand)]
    Service(ServiceCmd),
    /// Manage endpoints (instances) owned by this node.
    #[command(subcommand)]
    Endpoint(EndpointCmd),
    /// Find the instances of a service (Cloud Map DiscoverInstances).
    Discover(DiscoverArgs),
    /// Show alias listeners: name, VIP:port, service.
    Routes,
    /// Show traffic figures per service.
    Stats,
    /// A live view of every service: req/s, success rate, latency, connections; q quits.
    Top {
        /// Redraw every this many milliseconds.
        #[arg(long, default_value_t = 1000)]
        interval_ms: u64,
        #[arg(long, value_enum, default_value = "rps")]
        sort: top::SortBy,
        /// Stop after this many redraws (0: until q).
        #[arg(long, default_value_t = 0)]
        iterations: u64,
    },
    /// Show the mesh's nodes: state, address, generation, role and round-trip time.
    Members,
    /// The cluster certificate authority: make it, and sign node certificates.
    #[command(subcommand)]
    Ca(CaCmd),
    /// Policy plugins (WebAssembly components): check one, list what the node runs, reload one,
    /// push one to the mesh.
    #[command(subcommand)]
    Plugin(PluginCmd),
    /// Turn existing configuration into weft TOML.
    #[command(subcommand)]
    Import(ImportCmd),
    /// Print the manual page (roff): `weft man | man -l -`.
    Man,
    /// Print a completion script for a shell: `source <(weft completions bash)`.
    Completions { shell: clap_complete::Shell },
}

#[derive(Subcommand, Debug)]
pub enum ImportCmd {
    /// ECS Service Connect: service-connect configuration JSON (bare or in a create-service
    /// input), task definitions, describe-services output, CloudFormation templates (JSON or
    /// YAML), in any mix. Prints the TOML (or writes DIR/weft.toml); what has no weft equivalent is warned
    /// about with its file and JSON path.
    Ecs {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Write DIR/weft.toml (checked like `weft validate`) instead of printing it.
        #[arg(long = "out-dir", value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
pub enum CaCmd {
    /// Create the cluster CA (ca.pem, ca-key.pem).
    Init {
        /// Where the CA lives (default: the node's data dir + /pki).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// A name for the cluster, shown in the CA certificate.
        #[arg(long, default_value = "weft")]
        cluster: String,
        /// Replace an existing CA.
        #[arg(long)]
        force: bool,
    },
    /// Sign a certificate for one node (NODE.pem, NODE-key.pem).
    Issue {
        #[arg(long)]
        node: String,
        /// Where the CA lives (ca.pem, ca-key.pem; default: the node's data dir + /pki).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Where to write the node's files (default: the CA dir).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Extra subject alternative name (DNS name or IP address); repeat for several.
        #[arg(long = "san")]
        sans: Vec<String>,
        /// A namespace the node belongs to (may register in, learn, and call by default); repeat
        /// for several. None: every namespace.
        #[arg(long = "namespace")]
        namespaces: Vec<String>,
        /// A client group of the node, for services' `allow.groups`; repeat for several.
        #[arg(long = "group")]
        groups: Vec<String>,
        #[arg(long, default_value_t = 365)]
        days: u32,
    },
}

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// registry, proxy or combined (overrides [node] mode).
    #[arg(long, value_enum)]
    pub mode: Option<Mode>,
    /// Where the store lives (overrides [node] data_dir).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Where the admin API listens (overrides [admin] listen).
    #[arg(long = "listen-admin")]
    pub listen_admin: Option<SocketAddr>,
    /// Where the DNS responder listens (overrides [dns] listen).
    #[arg(long = "listen-dns")]
    pub listen_dns: Option<SocketAddr>,
    /// Run without the DNS responder (overrides [dns] enabled).
    #[arg(long = "no-dns")]
    pub no_dns: bool,
    /// Replace the weft running with the same data dir without refusing a connection: take
    /// over its alias listening sockets (a binary upgrade; the old process finishes its open
    /// connections and exits).
    #[arg(long)]
    pub takeover: bool,
}

#[derive(Subcommand, Debug)]
pub enum NamespaceCmd {
    /// Create a namespace (fails if it exists).
    Create {
        name: String,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Delete an empty namespace.
    Delete { name: String },
    /// List namespaces.
    List,
    /// Show one namespace and its services.
    Describe { name: String },
}

#[derive(Args, Debug, Clone)]
pub struct ServiceRef {
    /// Namespace of the service.
    #[arg(long, short = 'n', default_value = "default")]
    pub namespace: String,
}

/// A service's settings, as `create` and `update` take them. `create` uses the default of every
/// setting not given; `update` changes only the settings given.
#[derive(Args, Debug)]
pub struct ServiceSpec {
    /// Service name (Cloud Map's discovery name).
    pub name: String,
    #[command(flatten)]
    pub ns: ServiceRef,
    /// Application protocol (default http).
    #[arg(long, value_enum)]
    pub protocol: Option<ProtocolArg>,
    /// Client alias DNS_NAME:PORT that applications dial; repeat for several (on update, the
    /// aliases given replace the list).
    #[arg(long = "alias")]
    pub aliases: Vec<String>,
    /// Connect timeout in milliseconds (default 2000).
    #[arg(long)]
    pub connect_timeout_ms: Option<u64>,
    /// Seconds until the response head must arrive (default 15; HTTP kinds only; 0 disables).
    #[arg(long)]
    pub request_timeout: Option<u64>,
    /// Seconds of silence before a connection is closed (default 300, tcp 3600; 0 disables).
    #[arg(long)]
    pub idle_timeout: Option<u64>,
    /// Load balancing (default p2c: power of two choices over latency × load).
    #[arg(long, value_enum)]
    pub lb: Option<crate::catalog::LbKind>,
    /// Send its requests to the node's access log (true/false; default: `[access_log] enabled`).
    #[arg(long)]
    pub access_log: Option<bool>,
    /// Admit callers that belong to this namespace; repeat for several. Any --allow-* replaces
    /// the default (callers of the service's own namespace) with the list given.
    #[arg(long = "allow-namespace")]
    pub allow_namespaces: Vec<String>,
    /// Admit callers whose node name matches this glob (`web-*`); repeat for several.
    #[arg(long = "allow-node")]
    pub allow_nodes: Vec<String>,
    /// Admit callers whose certificate names this group; repeat for several.
    #[arg(long = "allow-group")]
    pub allow_groups: Vec<String>,
    /// Active health check run by each endpoint's node (default tcp).
    #[arg(long, value_enum)]
    pub check: Option<crate::catalog::CheckKind>,
    /// Path the http check GETs (default /).
    #[arg(long)]
    pub check_path: Option<String>,
    /// Milliseconds between checks (default 5000).
    #[arg(long)]
    pub check_interval_ms: Option<u64>,
    /// Retries per request, each on another endpoint (default 2).
    #[arg(long)]
    pub retries: Option<u32>,
    /// Also retry POST/PATCH requests that may have reached the application
    /// (`--retry-non-idempotent=false` turns it off again).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub retry_non_idempotent: Option<bool>,
    /// The policy plugin (`[[plugin]] name`) whose hooks replace the built-in ones it exports
    /// (`--set policy=null` goes back to the built-in policy).
    #[arg(long)]
    pub policy: Option<String>,
    /// Any other setting, as in the config file and the API: `--set outlier.consecutive_failures=3`,
    /// `--set health_check.timeout_ms=2000`; the value is read as JSON when it parses (numbers,
    /// booleans, lists, `null` = back to the default), else as a string. Repeat for several.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// A route rule, `METHODS PATH [key=value …]`, e.g. `GET /api/vote/* idempotent=false`
    /// (PATH: `*` one segment, `**` any, or `prefix:/api/`; keys: idempotent, max_retries,
    /// per_try_timeout_ms, backoff_base_ms, backoff_max_ms, request_s). Repeat for several, in
    /// match order: the first that matches a request applies. Replaces the service's rules.
    #[arg(long = "rule", value_name = "RULE")]
    pub rules: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum ServiceCmd {
    /// Create a service (fails if it exists; see `update`).
    Create(ServiceSpec),
    /// Change a service's settings: only those given change, the rest stay as they are.
    Update(ServiceSpec),
    /// Delete a service that has no endpoints left.
    Delete {
        name: String,
        #[command(flatten)]
        ns: ServiceRef,
    },
    /// List services.
    List {
        /// Only this namespace.
        #[arg(long, short = 'n')]
        namespace: Option<String>,
    },
    /// Show one service: every setting, its aliases with their VIPs, and its endpoint counts.
    Describe {
        name: String,
        #[command(flatten)]
        ns: ServiceRef,
    },
}

#[derive(Subcommand, Debug)]
pub enum EndpointCmd {
    /// Register an instance on this node (replaces an earlier registration with the same id).
    Create {
        /// Instance id, unique within the service.
        id: String,
        /// Service the instance belongs to.
        #[arg(long, short = 's')]
        service: String,
        #[command(flatten)]
        ns: ServiceRef,
        /// IP:PORT or HOST:PORT the instance listens on (a host is resolved once, by the node, at registration).
        #[arg(long)]
        address: crate::catalog::EndpointAddress,
        /// Zone of the instance (default: the node's zone).
        #[arg(long, default_value = "")]
        zone: String,
        /// Attribute KEY=VALUE; repeat for several.
        #[arg(long = "attr")]
        attributes: Vec<String>,
        /// Health to register with, for services without an active check (`health_check.kind =
        /// "none"`); with a check, a new endpoint starts UNKNOWN and the check decides.
        #[arg(long, value_enum)]
        health: Option<EndpointHealthArg>,
    },
    /// Stop sending new requests to an instance of this node; requests in flight finish.
    Drain {
        id: String,
        #[arg(long, short = 's')]
        service: String,
        #[command(flatten)]
        ns: ServiceRef,
    },
    /// Put a drained instance back into service.
    Undrain {
        id: String,
        #[arg(long, short = 's')]
        service: String,
        #[command(flatten)]
        ns: ServiceRef,
    },
    /// Deregister an instance.
    Delete {
        id: String,
        #[arg(long, short = 's')]
        service: String,
        #[command(flatten)]
        ns: ServiceRef,
    },
    /// List instances.
    List {
        #[arg(long, short = 'n')]
        namespace: Option<String>,
        #[arg(long, short = 's')]
        service: Option<String>,
    },
    /// Show one instance.
    Describe {
        id: String,
        #[arg(long, short = 's')]
        service: String,
        #[command(flatten)]
        ns: ServiceRef,
    },
}

#[derive(Args, Debug)]
pub struct DiscoverArgs {
    pub service: String,
    #[command(flatten)]
    pub ns: ServiceRef,
    /// Attribute KEY=VALUE every instance must match; repeat for several.
    #[arg(long = "query")]
    pub query: Vec<String>,
    /// Attribute KEY=VALUE preferred when some instance matches; repeat for several.
    #[arg(long = "optional")]
    pub optional: Vec<String>,
    /// Which instances by health.
    #[arg(long, value_enum, default_value_t = HealthArg::Healthy)]
    pub health: HealthArg,
    /// At most this many instances (1-1000, default 100).
    #[arg(long)]
    pub max: Option<usize>,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum ProtocolArg {
    Http,
    Http2,
    Grpc,
    Tcp,
}

impl From<ProtocolArg> for Protocol {
    fn from(p: ProtocolArg) -> Protocol {
        match p {
            ProtocolArg::Http => Protocol::Http,
            ProtocolArg::Http2 => Protocol::Http2,
            ProtocolArg::Grpc => Protocol::Grpc,
            ProtocolArg::Tcp => Protocol::Tcp,
        }
    }
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
#[value(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EndpointHealthArg {
    Healthy,
    Unhealthy,
    Unknown,
}

impl From<EndpointHealthArg> for crate::catalog::Health {
    fn from(h: EndpointHealthArg) -> Self {
        match h {
            EndpointHealthArg::Healthy => Self::Healthy,
            EndpointHealthArg::Unhealthy => Self::Unhealthy,
            EndpointHealthArg::Unknown => Self::Unknown,
        }
    }
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
#[value(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum HealthArg {
    Healthy,
    Unhealthy,
    All,
    HealthyOrElseAll,
}

impl From<HealthArg> for HealthFilter {
    fn from(h: HealthArg) -> HealthFilter {
        match h {
            HealthArg::Healthy => HealthFilter::Healthy,
            HealthArg::Unhealthy => HealthFilter::Unhealthy,
            HealthArg::All => HealthFilter::All,
            HealthArg::HealthyOrElseAll => HealthFilter::HealthyOrElseAll,
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WEFT_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}

fn load_or_exit(path: Option<&std::path::Path>) -> Result<Config, ExitCode> {
    Config::default_for(path).map_err(|e| {
        eprintln!("{e}");
        ExitCode::from(EXIT_CONFIG)
    })
}

pub fn main() -> ExitCode {
    let cli = match parse::parse() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    match &cli.command {
        Command::Run(args) => run::run(&cli, args),
        Command::Validate { path } => {
            let Some(path) = path.as_ref().or(cli.config.as_ref()) else {
                eprintln!("weft validate: give a config file or directory (or -c)");
                return ExitCode::from(64);
            };
            match config::check(path) {
                Ok(config::Checked { config: c, warnings }) => {
                    for w in &warnings {
                        eprintln!("warning: {w}");
                    }
                    say(format!("OK: {} ({} namespaces, {} services, {} endpoints)", path.display(), c.namespaces.len(), c.services.len(), c.endpoints.len()));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::from(EXIT_CONFIG)
                }
            }
        }
        Command::Ca(cmd) => ca(&cli, cmd),
        Command::Import(ImportCmd::Ecs { files, out_dir }) => import::ecs(files, out_dir.as_deref()),
        Command::Man => output::man(),
        Command::Completions { shell } => output::completions(*shell),
        Command::Plugin(PluginCmd::Check { file, plugin_config: config }) => {
            // The plugin's own log lines (a bad configuration, say) explain a refusal.
            init_logging();
            plugin::check(file, config)
        }
        _ => commands::client_command(&cli),
    }
}

fn ca(cli: &Cli, cmd: &CaCmd) -> ExitCode {
    use crate::transport::pki;
    let default_dir = |dir: &Option<PathBuf>| -> Result<PathBuf, ExitCode> {
        if let Some(d) = dir {
            return Ok(d.clone());
        }
        Ok(load_or_exit(cli.config.as_deref())?.node.data_dir().join("pki"))
    };
    let result = match cmd {
        CaCmd::Init { dir, cluster, force } => {
            let dir = match default_dir(dir) {
                Ok(d) => d,
                Err(code) => return code,
            };
            pki::ca_init(&dir, cluster, *force).map(|p| format!("cluster CA created: {} (its key is {}; keep it off the nodes)", p.display(), dir.join(pki::CA_KEY).display()))
        }
        CaCmd::Issue { node, dir, out, sans, namespaces, groups, days } => {
            let dir = match default_dir(dir) {
                Ok(d) => d,
                Err(code) => return code,
            };
            let out = out.clone().unwrap_or_else(|| dir.clone());
            let grants = pki::Grants { namespaces: namespaces.clone(), groups: groups.clone() };
            let mut scope = match namespaces.as_slice() {
                [] => "every namespace".to_string(),
                [one] => format!("namespace {one}"),
                many => format!("namespaces {}", many.join(", ")),
            };
            if !groups.is_empty() {
                scope.push_str(&format!("; group{} {}", if groups.len() == 1 { "" } else { "s" }, groups.join(", ")));
            }
            pki::ca_issue(&dir, &out, node, sans, &grants, *days).map(|i| match &i.ca {
                Some(ca) => format!("certificate for node {node} ({scope}): {} (key {}, CA {}: the node's [tls] bundle), valid {days} days", i.cert.display(), i.key.display(), ca.display()),
                None => format!("certificate for node {node} ({scope}): {} (key {}), valid {days} days", i.cert.display(), i.key.display()),
            })
        }
    };
    match result {
        Ok(msg) => {
            say(msg.to_string());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

