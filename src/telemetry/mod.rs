//! The telemetry registry: lock-free counters and log-linear histograms per service and endpoint,
//! node-wide figures of the mesh (gossip, QUIC peers, DNS) and named counters of plugins. Every
//! subsystem records into handles it got from here; one [`Snapshot`] of it is what the admin API,
//! the dashboard, `weft stats`, Prometheus' `/metrics` and the OTLP exporter read (the names and
//! kinds they publish are in [`families`], listed in docs/metrics.md).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use serde::Serialize;

pub mod access;
pub mod families;
mod histogram;
mod live;
mod node;
pub mod otlp;
mod otlp_http;
pub mod prom;
mod snapshot;
pub use node::{DnsAnswer, MeshFigures, NodeReport, NodeStats, PeerFigures};
pub use snapshot::Snapshot;
pub use histogram::{BOUNDS_US, BUCKETS, Histogram, LazyHistogram, SUB_BUCKETS, Snapshot as HistogramSnapshot, bucket_of};
pub use live::{Ejection, EjectionRule, Liveness, PeakEwma, REFUSAL_HOLD, now_us, us_at};

/// Why a request or connection failed, for counting (and later for retry and ejection decisions).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    NoEndpoint,
    Connect,
    Timeout,
    Upstream,
    Downstream,
    /// The service does not admit the caller (`crate::authz`).
    Denied,
}

#[derive(Default, Debug)]
pub struct ServiceStats {
    pub active_connections: AtomicI64,
    pub new_connections: AtomicU64,
    /// Bytes from clients into the proxy, and back out to them.
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub requests: AtomicU64,
    pub grpc_requests: AtomicU64,
    /// Responses by class 1xx..5xx (index 1..=5); index 0 counts anything else.
    pub responses: [AtomicU64; 6],
    pub retries: AtomicU64,
    /// Retries by what the failed try ran into, in [`RETRY_REASONS`] order.
    pub retry_reasons: [AtomicU64; 6],
    /// Retries the policy wanted but the retry budget refused.
    pub retry_budget_exhausted: AtomicU64,
    /// Endpoints ejected by passive outlier detection (each ejection counts once).
    pub ejections: AtomicU64,
    /// Changes of health found by this node's active checks of its own endpoints.
    pub health_transitions: AtomicU64,
    pub no_endpoint: AtomicU64,
    pub connect_failures: AtomicU64,
    pub timeouts: AtomicU64,
    pub upstream_errors: AtomicU64,
    pub downstream_errors: AtomicU64,
    /// Requests (or TCP connections) refused because the service does not admit this node.
    pub denied: AtomicU64,
    /// Client-side latency, from request arrival to response headers sent, by request method
    /// ([`METHODS`] index) and the response's status class (index as in `responses`).
    pub latency: [[LazyHistogram; 6]; 8],
    /// gRPC calls, from arrival to the status (trailers), by `grpc-status` (0–16; 17: none or
    /// not a code).
    pub grpc_latency: [LazyHistogram; 18],
}

/// The index of a status code's class in `responses` and `latency`.
#[inline]
pub fn status_class(status: u16) -> usize {
    let class = (status / 100) as usize;
    if (1..=5).contains(&class) { class } else { 0 }
}

/// Request methods as `http.request.method` names them (semantic conventions: a known set,
/// anything else `_OTHER`), in `latency` order.
pub const METHODS: [&str; 8] = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "_OTHER"];

#[inline]
pub fn method_index(method: &str) -> usize {
    match method {
        "GET" => 0,
        "HEAD" => 1,
        "POST" => 2,
        "PUT" => 3,
        "DELETE" => 4,
        "PATCH" => 5,
        "OPTIONS" => 6,
        _ => 7,
    }
}

/// Status class names, in `responses` / `latency` order.
pub const STATUS_CLASSES: [&str; 6] = ["other", "1xx", "2xx", "3xx", "4xx", "5xx"];

/// Why a retry happened; the names match the policy's outcomes (and the WIT world's).
pub const RETRY_REASONS: [&str; 6] = ["connect-failed", "refused", "reset", "timeout", "status", "grpc-status"];

/// Counts a client connection as active while it lives (also when its task is cancelled).
pub struct ConnectionGuard(Arc<ServiceStats>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.active_connections.fetch_sub(1, Relaxed);
    }
}

impl ServiceStats {
    pub fn open_connection(self: &Arc<Self>) -> ConnectionGuard {
        self.new_connections.fetch_add(1, Relaxed);
        self.active_connections.fetch_add(1, Relaxed);
        ConnectionGuard(self.clone())
    }

    /// A request (`method`: a [`method_index`]) answered with `status` after `took`: counted by
    /// class and timed.
    #[inline]
    pub fn finish(&self, method: usize, status: u16, took: std::time::Duration) {
        let class = status_class(status);
        self.responses[class].fetch_add(1, Relaxed);
        self.latency[method.min(7)][class].record(took);
    }

    /// A gRPC call ended with `grpc-status` `code` (None: none, or not a number) after `took`.
    pub fn grpc_done(&self, code: Option<u32>, took: std::time::Duration) {
        let i = code.filter(|c| *c <= 16).map_or(17, |c| c as usize);
        self.grpc_latency[i].record(took);
    }

    /// Every method's and class's latency together.
    pub fn latency_snapshot(&self) -> HistogramSnapshot {
        let mut all = HistogramSnapshot::default();
        for h in self.latency.iter().flatten().filter_map(LazyHistogram::snapshot) {
            all.add(&h);
        }
        all
    }

    pub fn failure(&self, kind: FailureKind) {
        let c = match kind {
            FailureKind::NoEndpoint => &self.no_endpoint,
            FailureKind::Connect => &self.connect_failures,
            FailureKind::Timeout => &self.timeouts,
            FailureKind::Upstream => &self.upstream_errors,
            FailureKind::Downstream => &self.downstream_errors,
            FailureKind::Denied => &self.denied,
        };
        c.fetch_add(1, Relaxed);
    }
}

#[derive(Default, Debug)]
pub struct EndpointStats {
    /// Requests (or TCP connections) to this endpoint that have not finished yet.
    pub in_flight: std::sync::atomic::AtomicU32,
    /// RequestCountPerTarget and TargetResponseTime in ECS terms.
    pub requests: AtomicU64,
    pub failures: AtomicU64,
    pub connections: AtomicU64,
    /// Times this node's outlier detection ejected it.
    pub ejections: AtomicU64,
    /// Streams relayed to it from other hosts (on the node that owns it): the traffic this node
    /// carries for callers elsewhere, which its own services' figures do not see.
    pub relayed_streams: AtomicU64,
    /// Relayed requests dropped unexecuted because they reached this node after their caller's
    /// deadline (target side; `transport::relay`).
    pub relay_late: AtomicU64,
    /// Relayed connections refused because the service does not admit the calling node (target
    /// side; `crate::authz`).
    pub relay_denied: AtomicU64,
    /// Bytes relayed to it and back (target side, on the node that owns it): TargetProcessedBytes.
    pub relayed_bytes_in: AtomicU64,
    pub relayed_bytes_out: AtomicU64,
    /// Target side, HTTP/1.1 relayed from other hosts: responses by status class (as
    /// `ServiceStats::responses`) and request-to-response-head time (`proxy::h1::tap`).
    pub served: [AtomicU64; 6],
    pub served_time: Histogram,
    pub response_time: Histogram,
    /// Latency estimate and outlier record, read when choosing an endpoint.
    pub load: PeakEwma,
    pub ejection: Ejection,
    /// When it last answered and whether its last connect failed outright.
    pub liveness: Liveness,
    /// Whether the last routing table had it routable (healthy, reachable, not draining).
    pub routable: std::sync::atomic::AtomicBool,
}

type ServiceKey = (String, String);
type EndpointKey = (String, String, String);

/// The registry of all figures; handles are looked up once per routing-table rebuild, never per request.
#[derive(Default)]
pub struct Registry {
    services: Mutex<BTreeMap<ServiceKey, Arc<ServiceStats>>>,
    endpoints: Mutex<BTreeMap<EndpointKey, Arc<EndpointStats>>>,
    /// Node-wide figures: gossip, QUIC peers, DNS, the exporter's own.
    pub node: NodeStats,
    plugins: Mutex<BTreeMap<PluginKey, Arc<AtomicU64>>>,
    /// The access log's own figures (records written, dropped, sampled out).
    pub access: Arc<access::AccessFigures>,
}

/// The name the rest of the code has used for the registry.
pub type Stats = Registry;

/// A plugin's counter: plugin name, counter name, attributes (sorted by key).
type PluginKey = (String, String, Vec<(String, String)>);

/// A plugin's named counter as read in a snapshot.
#[derive(Clone, Debug, Serialize)]
pub struct PluginCounter {
    pub plugin: String,
    pub name: String,
    pub attributes: Vec<(String, String)>,
    pub value: u64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Registry {
    /// The counter `name` of `plugin` with `attributes` (the registration point of the plugin
    /// host): look it up once and keep the handle; adding to it is one relaxed atomic add.
    pub fn plugin_counter(&self, plugin: &str, name: &str, attributes: &[(&str, &str)]) -> Arc<AtomicU64> {
        let mut attrs: Vec<(String, String)> = attributes.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        attrs.sort();
        lock(&self.plugins).entry((plugin.into(), name.into(), attrs)).or_default().clone()
    }

    /// Forgets a plugin's counters (the plugin was removed).
    pub fn drop_plugin(&self, plugin: &str) {
        lock(&self.plugins).retain(|(p, _, _), _| p != plugin);
    }

    /// Drops the series of services and endpoints that no longer exist: `services` and
    /// `endpoints` are what the catalog still has, each in ascending order (as the series are
    /// kept), so one merge walk decides, with no allocation per series.
    pub fn retain<'a>(&self, services: impl Iterator<Item = (&'a str, &'a str)>, endpoints: impl Iterator<Item = (&'a str, &'a str, &'a str)>) {
        let mut live = services.peekable();
        lock(&self.services).retain(|(ns, svc), _| {
            let key = (ns.as_str(), svc.as_str());
            while live.next_if(|k| *k < key).is_some() {}
            live.peek() == Some(&key)
        });
        let mut live = endpoints.peekable();
        lock(&self.endpoints).retain(|(ns, svc, id), _| {
            let key = (ns.as_str(), svc.as_str(), id.as_str());
            while live.next_if(|k| *k < key).is_some() {}
            live.peek() == Some(&key)
        });
    }

    fn plugin_report(&self) -> Vec<PluginCounter> {
        lock(&self.plugins)
            .iter()
            .map(|((plugin, name, attributes), v)| PluginCounter { plugin: plugin.clone(), name: name.clone(), attributes: attributes.clone(), value: v.load(Relaxed) })
            .collect()
    }

    pub fn service(&self, ns: &str, svc: &str) -> Arc<ServiceStats> {
        lock(&self.services).entry((ns.into(), svc.into())).or_default().clone()
    }

    pub fn endpoint(&self, ns: &str, svc: &str, id: &str) -> Arc<EndpointStats> {
        lock(&self.endpoints).entry((ns.into(), svc.into(), id.into())).or_default().clone()
    }

    /// Every service's figures, each with its endpoints'. `node` of an endpoint is left empty:
    /// the figures do not know where an endpoint runs, the caller fills it in from the catalog.
    pub fn report(&self) -> Vec<ServiceReport> {
        let endpoints = lock(&self.endpoints);
        lock(&self.services)
            .iter()
            .map(|((ns, svc), s)| {
                let endpoints: Vec<EndpointReport> = endpoints
                    .range((ns.clone(), svc.clone(), String::new())..)
                    .take_while(|((n, s2, _), _)| n == ns && s2 == svc)
                    .map(|((_, _, id), e)| endpoint_report(id, e))
                    .collect();
                service_report(ns, svc, s, endpoints)
            })
            .collect()
    }
}

fn endpoint_report(id: &str, e: &EndpointStats) -> EndpointReport {
    let rt = e.response_time.snapshot();
    EndpointReport {
        relayed_bytes_in: e.relayed_bytes_in.load(Relaxed),
        relayed_bytes_out: e.relayed_bytes_out.load(Relaxed),
        served: STATUS_CLASSES.iter().zip(&e.served).map(|(k, v)| (k.to_string(), v.load(Relaxed))).filter(|(_, v)| *v > 0).collect(),
        served_time: e.served_time.snapshot(),
        routable: e.routable.load(Relaxed),
        id: id.to_string(),
        node: String::new(),
        requests: e.requests.load(Relaxed),
        connections: e.connections.load(Relaxed),
        failures: e.failures.load(Relaxed),
        ejections: e.ejections.load(Relaxed),
        relayed_streams: e.relayed_streams.load(Relaxed),
        relay_late: e.relay_late.load(Relaxed),
        relay_denied: e.relay_denied.load(Relaxed),
        in_flight: e.in_flight.load(Relaxed),
        ejected: e.ejection.ejected(now_us()),
        ewma_latency_us: e.load.estimate_us().map(|c| c.round() as u64),
        response_time_p50_us: rt.quantile_us(0.5),
        response_time_p99_us: rt.quantile_us(0.99),
        response_time: rt,
    }
}

fn service_report(ns: &str, svc: &str, s: &ServiceStats, endpoints: Vec<EndpointReport>) -> ServiceReport {
    let latency = s.latency_snapshot();
    ServiceReport {
        namespace: ns.to_string(),
        service: svc.to_string(),
        active_connections: s.active_connections.load(Relaxed),
        new_connections: s.new_connections.load(Relaxed),
        bytes_in: s.bytes_in.load(Relaxed),
        bytes_out: s.bytes_out.load(Relaxed),
        requests: s.requests.load(Relaxed),
        grpc_requests: s.grpc_requests.load(Relaxed),
        responses: STATUS_CLASSES
            .iter()
            .zip(&s.responses)
            .map(|(k, v)| (k.to_string(), v.load(Relaxed)))
            .filter(|(_, v)| *v > 0)
            .collect(),
        retries: s.retries.load(Relaxed),
        retry_reasons: RETRY_REASONS
            .iter()
            .zip(&s.retry_reasons)
            .map(|(k, v)| (k.to_string(), v.load(Relaxed)))
            .filter(|(_, v)| *v > 0)
            .collect(),
        retry_budget_exhausted: s.retry_budget_exhausted.load(Relaxed),
        ejections: s.ejections.load(Relaxed),
        health_transitions: s.health_transitions.load(Relaxed),
        no_endpoint: s.no_endpoint.load(Relaxed),
        connect_failures: s.connect_failures.load(Relaxed),
        timeouts: s.timeouts.load(Relaxed),
        upstream_errors: s.upstream_errors.load(Relaxed),
        downstream_errors: s.downstream_errors.load(Relaxed),
        denied: s.denied.load(Relaxed),
        latency_p50_us: latency.quantile_us(0.5),
        latency_p99_us: latency.quantile_us(0.99),
        relayed_streams: endpoints.iter().map(|e| e.relayed_streams).sum(),
        endpoints,
        latency_by: s.latency.iter().enumerate().flat_map(|(m, row)| row.iter().enumerate().filter_map(move |(c, h)| Some((m, c, h.snapshot()?)))).collect(),
        grpc_latency: s.grpc_latency.iter().enumerate().filter_map(|(code, h)| Some((code, h.snapshot()?))).collect(),
    }
}

#[derive(Serialize)]
pub struct ServiceReport {
    pub namespace: String,
    pub service: String,
    pub active_connections: i64,
    pub new_connections: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub requests: u64,
    pub grpc_requests: u64,
    pub responses: BTreeMap<String, u64>,
    pub retries: u64,
    pub retry_reasons: BTreeMap<String, u64>,
    pub retry_budget_exhausted: u64,
    pub ejections: u64,
    pub health_transitions: u64,
    pub no_endpoint: u64,
    pub connect_failures: u64,
    pub timeouts: u64,
    pub upstream_errors: u64,
    pub downstream_errors: u64,
    pub denied: u64,
    pub latency_p50_us: Option<u64>,
    pub latency_p99_us: Option<u64>,
    /// Streams relayed to this node's endpoints of the service from other hosts.
    pub relayed_streams: u64,
    pub endpoints: Vec<EndpointReport>,
    /// The latency histograms that have samples, by (method index, status class index), for
    /// exporters (not in the JSON).
    #[serde(skip)]
    pub latency_by: Vec<(usize, usize, HistogramSnapshot)>,
    /// gRPC call durations by status code index (17: none), for exporters.
    #[serde(skip)]
    pub grpc_latency: Vec<(usize, HistogramSnapshot)>,
}

#[derive(Serialize)]
pub struct EndpointReport {
    pub id: String,
    /// The node that runs it, from the catalog (empty when it is no longer registered).
    pub node: String,
    pub requests: u64,
    pub connections: u64,
    pub failures: u64,
    pub ejections: u64,
    pub relayed_streams: u64,
    pub relay_late: u64,
    pub relay_denied: u64,
    pub relayed_bytes_in: u64,
    pub relayed_bytes_out: u64,
    /// Target side: responses of this node's endpoint to HTTP/1.1 requests relayed from other
    /// hosts, by status class.
    pub served: BTreeMap<String, u64>,
    #[serde(skip)]
    pub served_time: HistogramSnapshot,
    /// Whether the last routing table had it routable (healthy, reachable, not draining).
    pub routable: bool,
    pub in_flight: u32,
    pub ejected: bool,
    pub ewma_latency_us: Option<u64>,
    pub response_time_p50_us: Option<u64>,
    pub response_time_p99_us: Option<u64>,
    /// TargetResponseTime's histogram, for exporters (not in the JSON).
    #[serde(skip)]
    pub response_time: HistogramSnapshot,
}

#[cfg(test)]
mod tests {
    #[test]
    fn retain_keeps_exactly_the_series_still_listed() {
        let r = super::Registry::default();
        for (ns, svc) in [("a", "x"), ("b", "y"), ("b", "z"), ("c", "x")] {
            r.service(ns, svc);
            for id in ["1", "2", "10"] {
                r.endpoint(ns, svc, id);
            }
        }
        r.retain([("a", "x"), ("b", "z"), ("d", "q")].into_iter(), [("a", "x", "10"), ("b", "y", "2"), ("b", "z", "1"), ("b", "z", "2")].into_iter());
        let report = r.report();
        let kept: Vec<(String, Vec<String>)> = report.iter().map(|s| (format!("{}/{}", s.namespace, s.service), s.endpoints.iter().map(|e| e.id.clone()).collect())).collect();
        let want = |s: &str, ids: &[&str]| (s.to_string(), ids.iter().map(|i| i.to_string()).collect::<Vec<_>>());
        assert_eq!(kept, vec![want("a/x", &["10"]), want("b/z", &["1", "2"])]);
    }
}
