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
pub use builtin::Builtin;

/// What a hook knows about the request. Borrowed, so the built-in path allocates nothing.
#[derive(Clone, Copy, Debug)]
pub struct RequestInfo<'a> {
    pub namespace: &'a str,
    pub service: &'a str,
    /// Empty for TCP connections.
    pub method: &'a str,
    pub authority: &'a str,
    pub path: &'a str,
    pub headers: Headers<'a>,
    /// 1 for the first try.
    pub attempt: u32,
    pub idempotent: bool,
    pub source_zone: &'a str,
    /// The service's retry settings, for the built-in `should_retry` (not shown to plugins).
    pub retry: &'a RetryConfig,
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
                fields.iter().find(|(n, _)| buf[n.clone()].eq_ignore_ascii_case(name.as_bytes())).map(|(_, v)| &buf[v.clone()])
            }
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
    /// Live figures of this endpoint, kept across routing-table rebuilds (in-flight requests,
    /// response times) — what a load-aware `pick_endpoint` reads.
    pub stats: Arc<EndpointStats>,
}

impl Target {
    pub fn in_flight(&self) -> u32 {
        self.stats.in_flight.load(Relaxed)
    }

    /// Passive outlier detection has taken it out of rotation for now.
    pub fn ejected(&self, now_us: u64) -> bool {
        self.stats.ejection.ejected(now_us)
    }

    /// The peak-EWMA latency estimate in µs as of `now_us`, `None` before the first response.
    pub fn latency_us_at(&self, now_us: u64) -> Option<f64> {
        self.stats.load.estimate_at(now_us)
    }
}

/// The endpoints a hook may choose from, minus those this request already tried.
pub struct Candidates<'a> {
    pub targets: &'a [Arc<Target>],
    pub excluded: &'a [u32],
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

    /// Healthy, not ejected and not tried yet: the endpoints a request should go to.
    pub fn eligible(&self, i: usize) -> bool {
        self.untried(i) && self.targets[i].healthy && !self.targets[i].ejected(self.now_us)
    }
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

pub trait Policy: Send + Sync {
    /// Another service of the same namespace to send this request to (e.g. a canary), or `None`.
    fn route(&self, req: &RequestInfo<'_>) -> Option<String>;
    /// Whether [`Policy::route`] may ever answer; when not, the data path skips describing the
    /// request to it.
    fn routes(&self) -> bool {
        true
    }
    /// Whether any hook looks at a request's authority, path or headers; when not, the data path
    /// leaves them empty instead of describing every request (the built-in policy does not).
    fn reads_requests(&self) -> bool {
        true
    }
    /// Index of the chosen target, or `None` when no candidate is acceptable.
    fn pick_endpoint(&self, req: &RequestInfo<'_>, candidates: &Candidates<'_>) -> Option<u32>;
    fn should_retry(&self, req: &RequestInfo<'_>, outcome: Outcome, elapsed: Duration) -> RetryDecision;
}
