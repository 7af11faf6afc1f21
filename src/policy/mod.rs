//! The policy seam: three hooks called at fixed phases of every request, shaped like the WIT world
//! a WebAssembly plugin will export (`route`, `pick-endpoint`, `should-retry`). The built-in policy
//! implements them in Rust; a plugin will replace any one of them and fall back to these defaults.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use crate::catalog::{LbKind, RetryConfig};
use crate::telemetry::EndpointStats;

mod builtin;
mod decision;
mod service;
pub mod texts;
pub use builtin::Builtin;
pub use decision::{Counter, Kept, MAX_WANTED, Pick, PickDecision, Reuse, Reused, RouteDecision};
pub use service::{HookFailed, Hooks, NoPlugins, Plugin, PluginSource, PolicyRefused, ServicePolicy, route_by_rules};

/// What a hook knows about the request. Borrowed, so the built-in path allocates nothing.
#[derive(Clone, Copy, Debug)]
pub struct RequestInfo<'a> {
    pub namespace: &'a str,
    pub service: &'a str,
    /// Empty for TCP connections.
    pub method: &'a str,
    pub authority: RawText<'a>,
    pub path: RawText<'a>,
    pub headers: Headers<'a>,
    /// 1 for the first try.
    pub attempt: u32,
    pub idempotent: bool,
    pub source_zone: &'a str,
    /// The service's retry settings, for the built-in `should_retry` (not shown to plugins).
    pub retry: &'a RetryConfig,
}

/// Request text (authority, path) as the request head holds it, checked as UTF-8 only when read:
/// most requests' hooks never read it (an answer kept by header, the built-in hooks), and the
/// eager check was ~160 of the ~850 instructions a kept route added to an HTTP/1.1 request
/// (callgrind, benches/plugin.sh). Not UTF-8 reads as "".
#[derive(Clone, Copy, Debug, Default)]
pub struct RawText<'a>(pub &'a [u8]);

impl<'a> RawText<'a> {
    pub fn as_str(&self) -> &'a str {
        std::str::from_utf8(self.0).unwrap_or("")
    }
}

impl<'a> From<&'a str> for RawText<'a> {
    fn from(s: &'a str) -> Self {
        RawText(s.as_bytes())
    }
}

/// Request headers as the data plane holds them: hyper's map (HTTP/2) or field positions in the
/// raw HTTP/1.1 head, so neither path copies headers just to show them to a hook.
#[derive(Clone, Copy, Debug)]
pub enum Headers<'a> {
    None,
    Map(&'a http::HeaderMap),
    Raw { buf: &'a [u8], fields: &'a [(std::ops::Range<usize>, std::ops::Range<usize>)] },
}

impl<'a> Headers<'a> {
    /// The first value of a header, by case-insensitive name.
    pub fn get(&self, name: &str) -> Option<&'a [u8]> {
        match *self {
            Headers::None => None,
            Headers::Map(m) => m.get(name).map(|v| v.as_bytes()),
            Headers::Raw { buf, fields } => {
                // The exact bytes first: clients mostly send the case the hook asks for, and a
                // comparison byte by byte ignoring case was ~160 instructions a found header (callgrind).
                let same = |n: &[u8]| n == name.as_bytes() || n.eq_ignore_ascii_case(name.as_bytes());
                fields.iter().find(|(n, _)| same(&buf[n.clone()])).map(|(_, v)| &buf[v.clone()])
            }
        }
    }

    /// The first value of a header a plugin named in its manifest.
    pub fn wanted(&self, w: &WantedHeader) -> Option<&'a [u8]> {
        match (*self, &w.name) {
            (Headers::Map(m), Some(n)) => m.get(n).map(|v| v.as_bytes()),
            // Not a valid field name: no request carries it.
            (Headers::Map(_), None) => None,
            _ => self.get(&w.text),
        }
    }

    /// Every header as (name, value) pairs, for a plugin's `list<tuple<string, string>>`.
    pub fn pairs(&self) -> Vec<(String, String)> {
        let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        match *self {
            Headers::None => Vec::new(),
            Headers::Map(m) => m.iter().map(|(k, v)| (k.as_str().to_string(), s(v.as_bytes()))).collect(),
            Headers::Raw { buf, fields } => fields.iter().map(|(n, v)| (s(&buf[n.clone()]).to_ascii_lowercase(), s(&buf[v.clone()]))).collect(),
        }
    }
}

/// A header a plugin's answers depend on (its manifest's `wanted-headers`), lowercase, and parsed
/// once as an `http` name: looking an HTTP/2 request's header up by text parsed the name every
/// time, ~440 instructions per kept answer.
#[derive(Clone, Debug)]
pub struct WantedHeader {
    pub text: String,
    name: Option<http::HeaderName>,
}

impl WantedHeader {
    pub fn new(text: &str) -> WantedHeader {
        let text = text.to_ascii_lowercase();
        WantedHeader { name: http::HeaderName::from_bytes(text.as_bytes()).ok(), text }
    }
}

/// One endpoint as the data plane sees it: fixed facts plus live load.
#[derive(Debug)]
pub struct Target {
    /// Position in the service's candidate list; what `pick_endpoint` returns.
    pub index: u32,
    pub id: String,
    pub node: String,
    pub zone: String,
    pub address: SocketAddr,
    /// For an endpoint on another host: the gossip address of its node, which relays to it.
    pub via: Option<SocketAddr>,
    pub attributes: BTreeMap<String, String>,
    pub healthy: bool,
    /// Registered but not checked yet (UNKNOWN): it has never shown it can serve.
    pub unchecked: bool,
    /// Live figures of this endpoint, kept across routing-table rebuilds (in-flight requests,
    /// response times) — what a load-aware `pick_endpoint` reads.
    pub stats: Arc<EndpointStats>,
    /// Its names as text ids, for plugins (made on first use).
    pub texts: texts::TargetTexts,
}

impl Target {
    pub fn in_flight(&self) -> u32 {
        self.stats.in_flight.load(Relaxed)
    }

    /// Passive outlier detection has taken it out of rotation for now.
    pub fn ejected(&self, now_us: u64) -> bool {
        self.stats.ejection.ejected(now_us)
    }

    /// Its last connect from this node failed outright and it has not answered since (see
    /// [`crate::telemetry::Liveness`]).
    pub fn refusing(&self, now_us: u64) -> bool {
        self.stats.liveness.refusing(now_us)
    }

    /// The peak-EWMA latency estimate in µs as of `now_us`, `None` before the first response.
    pub fn latency_us_at(&self, now_us: u64) -> Option<f64> {
        self.stats.load.estimate_at(now_us)
    }
}

/// The endpoints a hook may choose from, minus those this request already tried.
pub struct Candidates<'a> {
    pub targets: &'a [Arc<Target>],
    /// Tried by this request and not to be tried again: the request may have reached them, or
    /// they refused the connection.
    pub excluded: &'a [u32],
    /// Tried by this request, but the connect timed out: nothing was sent, and a live endpoint
    /// under load may drop a SYN, so they may be tried again after the others.
    pub timed_out: &'a [u32],
    /// Per-service round-robin position, kept across routing-table rebuilds.
    pub cursor: &'a AtomicUsize,
    /// The service's load-balancing setting.
    pub lb: LbKind,
    /// The time of the choice ([`crate::telemetry::now_us`]), read once per pick.
    pub now_us: u64,
}

impl Candidates<'_> {
    /// Not tried yet by this request.
    pub fn untried(&self, i: usize) -> bool {
        self.targets.get(i).is_some_and(|t| !self.excluded.contains(&t.index))
    }

    /// Healthy, answering, not ejected and not tried yet: the endpoints a request should go to.
    pub fn eligible(&self, i: usize) -> bool {
        self.rank(i) == Some(Rank::Available)
    }

    /// How good a choice endpoint `i` is for this request; `None` when it may not be chosen.
    pub fn rank(&self, i: usize) -> Option<Rank> {
        let t = self.targets.get(i)?;
        if self.excluded.contains(&t.index) {
            return None;
        }
        let now = self.now_us;
        Some(if t.refusing(now) {
            Rank::Refusing
        } else if t.ejected(now) {
            Rank::Ejected
        } else if t.unchecked {
            Rank::Unchecked
        } else if !t.healthy {
            Rank::Unhealthy
        } else if self.timed_out.contains(&t.index) {
            Rank::TimedOut
        } else {
            Rank::Available
        })
    }
}

/// Endpoints by how likely a request sent to them is to succeed, best first. A request goes to
/// the best rank present; within it the zone preference and the balancer choose.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rank {
    /// Healthy, answering, not ejected, not tried.
    Available,
    /// Healthy, but its connect timed out for this request already (a dropped SYN, maybe).
    TimedOut,
    /// Failing its health checks, draining, or on a node that missed its probes: detection may
    /// be wrong (panic mode), and it served before.
    Unhealthy,
    /// Never checked: it has not shown it can serve at all.
    Unchecked,
    /// Ejected by this node's outlier detection: it failed real requests in a row.
    Ejected,
    /// Its connect failed outright: a request sent there fails for certain.
    Refusing,
}

/// How an attempt ended, as `should_retry` sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// No connection: nothing was sent.
    ConnectFailed,
    /// The endpoint refused the request before processing it (HTTP/2 REFUSED_STREAM or GOAWAY).
    Refused,
    /// The connection broke after the request went out.
    Reset,
    Timeout,
    Status(u16),
    GrpcStatus(u32),
}

impl Outcome {
    /// Whether the application may have processed the request: then only an idempotent request
    /// may be sent again.
    pub fn may_have_reached_app(self) -> bool {
        !matches!(self, Outcome::ConnectFailed | Outcome::Refused)
    }
}

/// gRPC's UNAVAILABLE status: the server asks the caller to try again.
pub const GRPC_UNAVAILABLE: u32 = 14;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryDecision {
    GiveUp,
    Retry { backoff_ms: u32 },
}

/// The endpoint-choice and retry hooks, as the built-in policy implements them (a plugin's
/// counterparts are [`Plugin`]; [`ServicePolicy`] puts the two together per service).
pub trait Policy: Send + Sync {
    /// Index of the chosen target, or `None` when no candidate is acceptable.
    fn pick_endpoint(&self, req: &RequestInfo<'_>, candidates: &Candidates<'_>) -> Option<u32>;
    fn should_retry(&self, req: &RequestInfo<'_>, outcome: Outcome, elapsed: Duration) -> RetryDecision;
}
