//! The policy seam: three hooks called at fixed phases of every request, shaped like the WIT world
//! a WebAssembly plugin will export (`route`, `pick-endpoint`, `should-retry`). The built-in policy
//! implements them in Rust; a plugin will replace any one of them and fall back to these defaults.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use crate::telemetry::EndpointStats;

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
}

/// The endpoints a hook may choose from, minus those this request already tried.
pub struct Candidates<'a> {
    pub targets: &'a [Arc<Target>],
    pub excluded: &'a [u32],
    /// Per-service round-robin position, kept across routing-table rebuilds.
    pub cursor: &'a AtomicUsize,
}

impl Candidates<'_> {
    pub fn eligible(&self, i: usize) -> bool {
        self.targets.get(i).is_some_and(|t| t.healthy && !self.excluded.contains(&t.index))
    }
}

/// How an attempt ended, as `should_retry` sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    ConnectFailed,
    Reset,
    Timeout,
    Status(u16),
    GrpcStatus(u32),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryDecision {
    GiveUp,
    Retry { backoff_ms: u32 },
}

pub trait Policy: Send + Sync {
    /// Another service of the same namespace to send this request to (e.g. a canary), or `None`.
    fn route(&self, req: &RequestInfo<'_>) -> Option<String>;
    /// Index of the chosen target, or `None` when no candidate is acceptable.
    fn pick_endpoint(&self, req: &RequestInfo<'_>, candidates: &Candidates<'_>) -> Option<u32>;
    fn should_retry(&self, req: &RequestInfo<'_>, outcome: Outcome, elapsed: Duration) -> RetryDecision;
}

/// The defaults: round robin over healthy endpoints, and retries on connect failure only — a
/// request that never reached an endpoint is always safe to send elsewhere.
#[derive(Debug, Clone)]
pub struct Builtin {
    pub max_retries: u32,
}

impl Default for Builtin {
    fn default() -> Self {
        Builtin { max_retries: 2 }
    }
}

impl Policy for Builtin {
    fn route(&self, _req: &RequestInfo<'_>) -> Option<String> {
        None
    }

    fn pick_endpoint(&self, _req: &RequestInfo<'_>, c: &Candidates<'_>) -> Option<u32> {
        let n = c.targets.len();
        if n == 0 {
            return None;
        }
        let start = c.cursor.fetch_add(1, Relaxed);
        let order = || (0..n).map(|k| (start + k) % n);
        // Healthy first; when none is left, any endpoint not tried yet (like Cloud Map's
        // HEALTHY_OR_ELSE_ALL and Envoy's panic mode): a suspect node or a failing health check
        // may be wrong, while an empty choice is a certain failure.
        order()
            .find(|&i| c.eligible(i))
            .or_else(|| order().find(|&i| !c.excluded.contains(&c.targets[i].index)))
            .map(|i| c.targets[i].index)
    }

    fn should_retry(&self, req: &RequestInfo<'_>, outcome: Outcome, _elapsed: Duration) -> RetryDecision {
        match outcome {
            Outcome::ConnectFailed if req.attempt <= self.max_retries => RetryDecision::Retry { backoff_ms: 0 },
            _ => RetryDecision::GiveUp,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(i: u32, healthy: bool) -> Arc<Target> {
        Arc::new(Target {
            index: i,
            id: format!("e{i}"),
            node: "n".into(),
            zone: String::new(),
            address: "127.0.0.1:1".parse().unwrap(),
            via: None,
            attributes: BTreeMap::new(),
            healthy,
            stats: Default::default(),
        })
    }

    fn req(attempt: u32) -> RequestInfo<'static> {
        RequestInfo { namespace: "n", service: "s", method: "GET", authority: "a", path: "/", headers: Headers::None, attempt, idempotent: true, source_zone: "" }
    }

    #[test]
    fn round_robin_skips_unhealthy_and_tried() {
        let targets = vec![target(0, true), target(1, false), target(2, true)];
        let cursor = AtomicUsize::new(0);
        let p = Builtin::default();
        let picks: Vec<_> = (0..4)
            .map(|_| p.pick_endpoint(&req(1), &Candidates { targets: &targets, excluded: &[], cursor: &cursor }).unwrap())
            .collect();
        assert_eq!(picks, vec![0, 2, 2, 0]);
        let only = Candidates { targets: &targets, excluded: &[0, 2], cursor: &cursor };
        assert_eq!(p.pick_endpoint(&req(2), &only), Some(1), "an unhealthy endpoint beats none");
        let none = Candidates { targets: &targets, excluded: &[0, 1, 2], cursor: &cursor };
        assert_eq!(p.pick_endpoint(&req(3), &none), None);
    }

    #[test]
    fn retries_connect_failures_twice() {
        let p = Builtin::default();
        assert_eq!(p.should_retry(&req(1), Outcome::ConnectFailed, Duration::ZERO), RetryDecision::Retry { backoff_ms: 0 });
        assert_eq!(p.should_retry(&req(3), Outcome::ConnectFailed, Duration::ZERO), RetryDecision::GiveUp);
        assert_eq!(p.should_retry(&req(1), Outcome::Status(503), Duration::ZERO), RetryDecision::GiveUp);
    }
}
