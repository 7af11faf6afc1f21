//! The records of the catalog: Cloud Map's vocabulary (namespace, service, endpoint) kept on purpose.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::plugin::PluginRecord;
use super::rules::RouteRule;
use super::settings::{HealthCheck, LbKind, OutlierConfig, RetryConfig, is_default};

/// The application protocol of a service; it decides how the proxy carries its traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Http,
    Http2,
    Grpc,
    Tcp,
}

impl Protocol {
    pub fn is_http(self) -> bool {
        self != Protocol::Tcp
    }
    /// HTTP/2 on both sides (h2c prior knowledge), so trailers and multiplexing survive.
    pub fn is_h2(self) -> bool {
        matches!(self, Protocol::Http2 | Protocol::Grpc)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Http2 => "http2",
            Protocol::Grpc => "grpc",
            Protocol::Tcp => "tcp",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name and port that clients dial; each dns name gets one VIP, each (name, port) one listener.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Alias {
    pub dns_name: String,
    pub port: u16,
}

/// Per-service timeouts; `None` means the default for the service's protocol.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_ms: Option<u64>,
    /// Time allowed until the upstream's response headers arrive; 0 disables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_s: Option<u64>,
    /// A connection with no traffic (and, for HTTP, no request in flight) this long is closed; 0 disables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_s: Option<u64>,
}

/// Two seconds: Linux resends an unanswered SYN after 1 s (a live endpoint whose listen backlog is
/// full drops SYNs), so 1 s turned every dropped SYN into a failed connect; 2 s lets the first
/// resend land. ARCHITECTURE.md, "Zero dropped requests".
pub const DEFAULT_CONNECT_MS: u64 = 2_000;
pub const DEFAULT_REQUEST_S: u64 = 15;
pub const DEFAULT_IDLE_HTTP_S: u64 = 300;
pub const DEFAULT_IDLE_TCP_S: u64 = 3_600;

impl Timeouts {
    pub fn connect_ms(&self) -> u64 {
        self.connect_ms.unwrap_or(DEFAULT_CONNECT_MS)
    }
    pub fn request_s(&self, p: Protocol) -> u64 {
        if p == Protocol::Tcp { 0 } else { self.request_s.unwrap_or(DEFAULT_REQUEST_S) }
    }
    pub fn idle_s(&self, p: Protocol) -> u64 {
        let default = if p == Protocol::Tcp { DEFAULT_IDLE_TCP_S } else { DEFAULT_IDLE_HTTP_S };
        self.idle_s.unwrap_or(default)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Namespace {
    pub name: String,
    #[serde(default)]
    pub description: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    pub namespace: String,
    pub name: String,
    #[serde(default)]
    pub protocol: Protocol,
    #[serde(default)]
    pub aliases: Vec<Alias>,
    #[serde(default)]
    pub timeouts: Timeouts,
    #[serde(default, skip_serializing_if = "is_default")]
    pub lb: LbKind,
    #[serde(default, skip_serializing_if = "is_default")]
    pub health_check: HealthCheck,
    #[serde(default, skip_serializing_if = "is_default")]
    pub retry: RetryConfig,
    #[serde(default, skip_serializing_if = "is_default")]
    pub outlier: OutlierConfig,
    /// Per-route settings, matched in order on method and path; the first match applies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<RouteRule>,
    /// The policy plugin (`[[plugin]] name`) whose hooks replace the built-in ones it exports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// Whether its requests go to the node's access log; absent: the node's `[access_log]
    /// enabled` decides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_log: Option<bool>,
    /// Which callers may reach it (`crate::authz`); absent: those of its own namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow: Option<crate::authz::Allow>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "UPPERCASE")]
pub enum Health {
    /// Cloud Map treats an instance without a health check as healthy; so do we.
    #[default]
    Healthy,
    Unhealthy,
    Unknown,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Healthy => "HEALTHY",
            Health::Unhealthy => "UNHEALTHY",
            Health::Unknown => "UNKNOWN",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    pub namespace: String,
    pub service: String,
    pub id: String,
    /// The node that owns this endpoint: only it writes the record.
    #[serde(default)]
    pub node: String,
    pub address: SocketAddr,
    #[serde(default)]
    pub zone: String,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    #[serde(default)]
    pub health: Health,
    #[serde(default)]
    pub draining: bool,
}

impl Endpoint {
    /// Endpoints the data plane may send new traffic to: healthy (an UNKNOWN one has not passed
    /// its first check yet) and not draining.
    pub fn routable(&self) -> bool {
        !self.draining && self.health == Health::Healthy
    }
}

/// Where a record lives in the catalog. Names are restricted to `[A-Za-z0-9_.-]`, so `/` separates.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Key {
    Namespace(String),
    Service(String, String),
    Endpoint(String, String, String),
    /// A policy plugin carried by the mesh (`weft plugin push`).
    Plugin(String),
}

impl Key {
    /// The namespace the record belongs to; plugins belong to none.
    pub fn namespace(&self) -> Option<&str> {
        match self {
            Key::Namespace(n) | Key::Service(n, _) | Key::Endpoint(n, ..) => Some(n),
            Key::Plugin(_) => None,
        }
    }

    pub fn encode(&self) -> String {
        let mut s = String::new();
        let _ = self.write_encoded(&mut s);
        s
    }

    /// Writes [`Key::encode`]'s text to `w` without building a `String` (the gossip digest hashes
    /// every record's key this way: one allocation per record made a digest of 5,000 records
    /// cost about twice as much).
    pub fn write_encoded(&self, w: &mut impl fmt::Write) -> fmt::Result {
        match self {
            Key::Namespace(n) => write!(w, "ns/{n}"),
            Key::Service(n, s) => write!(w, "svc/{n}/{s}"),
            Key::Endpoint(n, s, e) => write!(w, "ep/{n}/{s}/{e}"),
            Key::Plugin(n) => write!(w, "plugin/{n}"),
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Namespace(n) => write!(f, "namespace {n}"),
            Key::Service(n, s) => write!(f, "service {n}/{s}"),
            Key::Endpoint(n, s, e) => write!(f, "endpoint {n}/{s}/{e}"),
            Key::Plugin(n) => write!(f, "plugin {n}"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Body {
    Namespace(Namespace),
    Service(Service),
    Endpoint(Endpoint),
    Plugin(PluginRecord),
}

impl Body {
    pub fn key(&self) -> Key {
        match self {
            Body::Namespace(n) => Key::Namespace(n.name.clone()),
            Body::Service(s) => Key::Service(s.namespace.clone(), s.name.clone()),
            Body::Endpoint(e) => Key::Endpoint(e.namespace.clone(), e.service.clone(), e.id.clone()),
            Body::Plugin(p) => Key::Plugin(p.name.clone()),
        }
    }
}

/// A record's version: hybrid logical clock then writer, so concurrent writes order the same way on
/// every replica and merge last-writer-wins without coordination.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Version {
    pub hlc: u64,
    pub writer: String,
}

/// Who wrote a record locally; config-owned records are removed when they leave the config.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    Config,
    #[default]
    Api,
    Remote,
}

/// One versioned catalog entry. `body == None` is a tombstone: deletions replicate like writes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub key: Key,
    pub body: Option<Body>,
    pub version: Version,
    #[serde(default)]
    pub origin: Origin,
    /// For endpoints: the clock of the last registration or deregistration, which is what Cloud
    /// Map's InstancesRevision follows (health changes leave it alone).
    #[serde(default)]
    pub registered: u64,
}
