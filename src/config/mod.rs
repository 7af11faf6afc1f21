//! Configuration: TOML, one file or a directory of `*.toml` files merged in lexical order. Sections
//! mirror subsystems. Every problem is reported as `file:line:col: message`, and all of them at
//! once, so an operator fixes a file in one pass.

mod telemetry;
pub use telemetry::{ExportSettings, Protocol as OtlpProtocol, TelemetryConfig, resolve as resolve_telemetry};
pub(crate) mod load;
mod locate;
mod validate;

pub use validate::parse_seed;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::catalog::{Endpoint, EndpointAddress, Health, Namespace, Service};

pub use load::{check, load};

/// sysexits' EX_CONFIG: what `weft validate` and `weft run` exit with on a bad configuration.
pub const EXIT_CONFIG: u8 = 78;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Catalog authority: accepts writes and serves discovery.
    Registry,
    /// Data plane: registers local endpoints and proxies traffic.
    Proxy,
    /// Both in one process.
    #[default]
    Combined,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Registry => "registry",
            Mode::Proxy => "proxy",
            Mode::Combined => "combined",
        }
    }
    pub fn runs_proxy(self) -> bool {
        self != Mode::Registry
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// Stable node id; defaults to the host name.
    pub name: String,
    pub mode: Mode,
    /// Where the store lives; defaults to `$XDG_STATE_HOME/weft` (or `~/.local/state/weft`).
    pub data_dir: Option<PathBuf>,
    pub zone: String,
    /// On SIGTERM: how long requests in flight and open connections may take to finish after
    /// this node's endpoints are marked draining (ECS's default, 20 s).
    pub drain_timeout_s: u64,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig { name: default_node_name(), mode: Mode::Combined, data_dir: None, zone: String::new(), drain_timeout_s: 20 }
    }
}

fn default_node_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "weft".to_string())
}

impl NodeConfig {
    pub fn data_dir(&self) -> PathBuf {
        if let Some(d) = &self.data_dir {
            return d.clone();
        }
        if let Some(d) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
            return PathBuf::from(d).join("weft");
        }
        match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
            Some(h) => PathBuf::from(h).join(".local/state/weft"),
            None => PathBuf::from("/var/lib/weft"),
        }
    }
}

pub const DEFAULT_ADMIN: &str = "127.0.0.1:9901";

/// The namespace every registry and combined node has, so a first service needs no setup.
pub const DEFAULT_NAMESPACE: &str = "default";

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    /// A file holding the bearer token that requests from anywhere but loopback must carry
    /// (`Authorization: Bearer …`). Required when `listen` is not a loopback address.
    pub token_file: Option<PathBuf>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig { listen: DEFAULT_ADMIN.parse().expect("valid default"), token_file: None }
    }
}

/// The admin token in `path`: its first line, trimmed; at least 16 characters.
pub fn read_admin_token(path: &std::path::Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let token = text.lines().next().unwrap_or("").trim().to_string();
    if token.len() < 16 {
        return Err(format!("{}: the token is {} characters long; use at least 16 (e.g. `openssl rand -hex 32 > {}`)", path.display(), token.len(), path.display()));
    }
    Ok(token)
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnsConfig {
    /// Run the embedded DNS responder.
    pub enabled: bool,
    pub listen: SocketAddr,
    /// Keep a managed block of alias names in this hosts file (what ECS does with /etc/hosts).
    pub hosts_file: Option<PathBuf>,
    /// Forwarders for names that are not aliases; defaults to the system's resolv.conf.
    pub upstream: Option<Vec<SocketAddr>>,
    pub vip_cidr: String,
    /// TTL of alias answers; short, since aliases can move.
    pub ttl: u32,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            enabled: true,
            listen: "127.0.0.1:5353".parse().expect("valid default"),
            hosts_file: None,
            upstream: None,
            vip_cidr: "127.255.0.0/16".into(),
            ttl: 5,
        }
    }
}

/// The cluster CA and this node's certificate (`weft ca init`, `weft ca issue`). Setting them
/// turns on the multi-host mesh: every connection between nodes is mutual TLS against the CA.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

pub const DEFAULT_GOSSIP_PORT: u16 = 7946;

/// Node-to-node traffic: one UDP port (QUIC) for membership, replication and the data path.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GossipConfig {
    /// UDP address to bind.
    pub listen: SocketAddr,
    /// The address other nodes reach this one at, when it differs from `listen` (NAT, a
    /// wildcard bind). Defaults to `listen`, or, for a wildcard bind, the local address that
    /// routes to the first `join` seed.
    pub advertise: Option<SocketAddr>,
    /// Seeds (`host:port`, port defaults to 7946) to announce to at start; any live node will do.
    pub join: Vec<String>,
    /// How long a node declared down stays listed (in `weft members`) before it is forgotten.
    pub remove_down_after_s: u64,
    /// How long a down node's endpoints stay in the catalog (without traffic) before a registry
    /// removes them; a node that comes back in time keeps them.
    pub endpoint_grace_s: u64,
}

impl Default for GossipConfig {
    fn default() -> Self {
        GossipConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], DEFAULT_GOSSIP_PORT)),
            advertise: None,
            join: Vec::new(),
            remove_down_after_s: 60,
            endpoint_grace_s: 60,
        }
    }
}

/// An endpoint as a config file declares it: always owned by this node, health from checks.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    pub namespace: String,
    pub service: String,
    pub id: String,
    /// `IP:PORT` or `HOST:PORT`; a host is resolved when the node registers the endpoint.
    pub address: EndpointAddress,
    #[serde(default)]
    pub zone: String,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

impl EndpointConfig {
    /// The record this node registers, at `address` (the configured one, resolved).
    pub fn to_endpoint(&self, node: &NodeConfig, address: SocketAddr) -> Endpoint {
        Endpoint {
            namespace: self.namespace.clone(),
            service: self.service.clone(),
            id: self.id.clone(),
            node: node.name.clone(),
            address,
            zone: if self.zone.is_empty() { node.zone.clone() } else { self.zone.clone() },
            attributes: self.attributes.clone(),
            health: Health::Healthy,
            draining: false,
        }
    }
}

/// A namespace this host calls into (ECS "client"); when any are listed, only their aliases get
/// listeners and names here.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    pub namespace: String,
}

/// Where an entry came from, for error messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub path: Arc<PathBuf>,
    pub line: usize,
    pub col: usize,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.path.display(), self.line, self.col)
    }
}

#[derive(Clone, Debug)]
pub struct Located<T> {
    pub at: Origin,
    pub value: T,
}

#[derive(Clone, Debug, Default)]
pub struct Config {
    pub node: NodeConfig,
    pub admin: AdminConfig,
    pub dns: DnsConfig,
    pub tls: TlsConfig,
    pub gossip: GossipConfig,
    pub telemetry: TelemetryConfig,
    pub access_log: crate::telemetry::access::AccessLogConfig,
    /// True when the files have a `[gossip]` table (it then needs `[tls]`).
    pub gossip_set: bool,
    pub namespaces: Vec<Located<Namespace>>,
    pub services: Vec<Located<Service>>,
    pub endpoints: Vec<Located<EndpointConfig>>,
    pub clients: Vec<Located<ClientConfig>>,
    pub plugins: Vec<Located<crate::plugin::PluginSpec>>,
    /// The files read, in merge order.
    pub files: Vec<PathBuf>,
}

/// One problem in one place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub at: Origin,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.at, self.message)
    }
}

/// A configuration `weft validate` found fit to run, with what it should still tell the operator.
#[derive(Debug)]
pub struct Checked {
    pub config: Config,
    pub warnings: Vec<Problem>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} is a directory with no .toml files")]
    EmptyDir { path: PathBuf },
    #[error("{}", .0.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
}

impl Config {
    /// The `[[plugin]]` entries, as the plugin host takes them.
    pub fn plugin_specs(&self) -> Vec<crate::plugin::PluginSpec> {
        self.plugins.iter().map(|p| p.value.clone()).collect()
    }

    /// The TLS files when the multi-host mesh is configured.
    pub fn tls_files(&self) -> Option<crate::transport::TlsFiles> {
        let t = &self.tls;
        Some(crate::transport::TlsFiles { ca: t.ca.clone()?, cert: t.cert.clone()?, key: t.key.clone()? })
    }

    /// The configuration `weft run` uses with no file: a combined node on loopback.
    pub fn default_for(path: Option<&Path>) -> Result<Config, ConfigError> {
        match path {
            Some(p) => load(p),
            None => Ok(Config::default()),
        }
    }
}

#[cfg(test)]
mod tests;
