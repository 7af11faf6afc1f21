//! The published instruments: one table of names, kinds, units and attributes, and the one
//! function that turns a [`Snapshot`] into their points. Prometheus' `/metrics` and the OTLP
//! exporter both publish exactly this (docs/metrics.md lists it with the ECS metric each maps to).

use std::collections::BTreeMap;

use super::{HistogramSnapshot, METHODS, RETRY_REASONS, STATUS_CLASSES, Snapshot};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Monotonic, cumulative.
    Counter,
    /// Goes up and down, cumulative (OTel up-down counter, Prometheus gauge).
    UpDown,
    Gauge,
    /// Explicit-bucket histogram in seconds, bounds from [`HistogramSnapshot::bounds_s`].
    Histogram,
}

pub struct Family {
    pub name: &'static str,
    pub kind: Kind,
    /// UCUM, as OTLP wants it.
    pub unit: &'static str,
    pub help: &'static str,
}

#[derive(Clone, Debug)]
pub enum Value {
    U64(u64),
    I64(i64),
    F64(f64),
    Histogram(HistogramSnapshot),
}

#[derive(Clone, Debug)]
pub struct Point {
    pub attributes: Vec<(String, String)>,
    pub value: Value,
}

macro_rules! families {
    ($($id:ident = $name:literal, $kind:ident, $unit:literal, $help:literal;)*) => {
        $(pub const $id: &str = $name;)*
        pub static FAMILIES: &[Family] = &[$(Family { name: $name, kind: Kind::$kind, unit: $unit, help: $help }),*];
    };
}

families! {
    CONNECTIONS_ACTIVE = "weft.connections.active", UpDown, "{connection}", "Client connections open to the service's listeners (ActiveConnectionCount)";
    CONNECTIONS_NEW = "weft.connections.new", Counter, "{connection}", "Client connections accepted (NewConnectionCount)";
    BYTES = "weft.bytes", Counter, "By", "Bytes through the proxy from clients (receive) and back to them (transmit) (ProcessedBytes)";
    REQUESTS = "weft.requests", Counter, "{request}", "Requests (HTTP/1.1, HTTP/2, gRPC) (RequestCount)";
    GRPC_REQUESTS = "weft.grpc.requests", Counter, "{request}", "gRPC requests (GrpcRequestCount)";
    RESPONSES = "weft.responses", Counter, "{response}", "Responses by status class (HTTPCode_Target_2XX..5XX_Count)";
    SERVER_DURATION = "http.server.request.duration", Histogram, "s", "Request arrival at the proxy to response head sent, by method and status class";
    GRPC_DURATION = "rpc.server.call.duration", Histogram, "s", "gRPC calls: arrival at the proxy to their status (trailers), by grpc-status";
    RETRIES = "weft.retries", Counter, "{retry}", "Retries by what the failed try ran into";
    BUDGET_REFUSALS = "weft.retry_budget.refusals", Counter, "{retry}", "Retries the policy wanted and the retry budget refused";
    EJECTIONS = "weft.outlier.ejections", Counter, "{ejection}", "Endpoints ejected by passive outlier detection";
    HEALTH_TRANSITIONS = "weft.health.transitions", Counter, "{transition}", "Changes of health found by this node's active checks";
    FAILURES = "weft.request.failures", Counter, "{request}", "Requests that failed in the proxy, by error type";
    ENDPOINTS = "weft.endpoints", Gauge, "{endpoint}", "Endpoints per service by state (routable = healthy) (RequestCountPerTarget's divisor)";
    TARGET_REQUESTS = "weft.target.requests", Counter, "{request}", "Requests sent to one endpoint (RequestCountPerTarget)";
    TARGET_FAILURES = "weft.target.failures", Counter, "{request}", "Tries to one endpoint that failed";
    TARGET_CONNECTIONS = "weft.target.connections", Counter, "{connection}", "Connections opened to one endpoint";
    TARGET_IN_FLIGHT = "weft.target.in_flight", Gauge, "{request}", "Requests to one endpoint not finished yet";
    TARGET_EJECTED = "weft.target.ejected", Gauge, "1", "1 while this node holds the endpoint ejected";
    CLIENT_DURATION = "http.client.request.duration", Histogram, "s", "Request sent to the endpoint to its response head (TargetResponseTime)";
    TARGET_RELAYED = "weft.target.relayed_streams", Counter, "{stream}", "Streams relayed to this node's endpoint from other hosts (target side)";
    TARGET_RELAY_LATE = "weft.target.relay_late", Counter, "{request}", "Relayed requests dropped unexecuted: they reached this node after their caller's deadline (target side)";
    TARGET_RELAY_DENIED = "weft.target.relay_denied", Counter, "{connection}", "Relayed connections refused: the service does not admit the calling node (target side)";
    TARGET_BYTES = "weft.target.bytes", Counter, "By", "Bytes relayed to this node's endpoint (transmit) and back (receive) (TargetProcessedBytes)";
    TARGET_SERVED = "weft.target.served", Counter, "{response}", "Target side: responses of this node's endpoint to HTTP/1.1 requests relayed from other hosts, by status class (HTTPCode_Target_2XX..5XX_Count, RequestCountPerTarget)";
    TARGET_SERVED_DURATION = "weft.target.served.duration", Histogram, "s", "Target side: relayed request head written to this node's endpoint to its response head (TargetResponseTime)";
    CERT_EXPIRY = "weft.tls.certificate.remaining", Gauge, "s", "Time until this node's mesh certificate expires (alert below 30 days; weft status and the log warn then)";
    TLS_ERRORS = "weft.tls.negotiation.errors", Counter, "{handshake}", "Failed mesh mTLS handshakes, client or target side (Client/TargetTLSNegotiationErrorCount)";
    MEMBERS = "weft.gossip.members", Gauge, "{node}", "Mesh members by state, this node included";
    GOSSIP_EVENTS = "weft.gossip.events", Counter, "{event}", "Gossip and transport events by kind";
    REPLICATION_LAG = "weft.gossip.replication.lag", Gauge, "s", "Write on its node to merge here, for the last record merged from a peer";
    ALIAS_CONFLICTS = "weft.catalog.alias_conflicts", Gauge, "{alias}", "Aliases claimed by more than one service (two registries wrote them concurrently)";
    QUIC_RTT = "weft.quic.rtt", Gauge, "s", "Round-trip time of the QUIC path to a peer";
    QUIC_LOST = "weft.quic.lost_packets", Counter, "{packet}", "Packets lost on the QUIC path to a peer";
    RELAYS_ACTIVE = "weft.relays.active", UpDown, "{stream}", "Relayed streams open on this node (target side)";
    DNS_QUERIES = "weft.dns.queries", Counter, "{query}", "DNS queries by answer";
    EXPORTS = "weft.telemetry.exports", Counter, "{export}", "OTLP exports by outcome";
    PLUGIN_COUNTER = "weft.plugin.counter", Counter, "1", "Named counters of plugins";
}

pub fn family(name: &str) -> &'static Family {
    FAMILIES.iter().find(|f| f.name == name).expect("a listed family")
}

type Points = BTreeMap<&'static str, Vec<Point>>;

fn attrs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn push(out: &mut Points, name: &'static str, attributes: Vec<(String, String)>, value: Value) {
    out.entry(name).or_default().push(Point { attributes, value });
}

fn with(base: &[(String, String)], key: &str, value: &str) -> Vec<(String, String)> {
    let mut a = base.to_vec();
    a.push((key.to_string(), value.to_string()));
    a
}

/// Every family's points in `snap`, by family name. Zero-valued per-reason counters are left
/// out until they count something; the series a family always has (requests, 2xx…) are kept.
pub fn collect(snap: &Snapshot) -> Points {
    let mut out = Points::new();
    for s in &snap.services {
        services(&mut out, s);
    }
    node(&mut out, snap);
    for p in &snap.plugins {
        let mut a = attrs(&[("weft.plugin", &p.plugin), ("weft.counter", &p.name)]);
        a.extend(p.attributes.iter().cloned());
        push(&mut out, PLUGIN_COUNTER, a, Value::U64(p.value));
    }
    out
}

fn services(out: &mut Points, s: &super::ServiceReport) {
    use Value::*;
    let base = attrs(&[("weft.namespace", &s.namespace), ("weft.service", &s.service)]);
    push(out, CONNECTIONS_ACTIVE, base.clone(), I64(s.active_connections));
    push(out, CONNECTIONS_NEW, base.clone(), U64(s.new_connections));
    push(out, BYTES, with(&base, "network.io.direction", "receive"), U64(s.bytes_in));
    push(out, BYTES, with(&base, "network.io.direction", "transmit"), U64(s.bytes_out));
    push(out, REQUESTS, base.clone(), U64(s.requests));
    push(out, GRPC_REQUESTS, base.clone(), U64(s.grpc_requests));
    for (i, class) in STATUS_CLASSES.iter().enumerate() {
        let n = s.responses.get(*class).copied().unwrap_or(0);
        if n > 0 || (2..=5).contains(&i) {
            push(out, RESPONSES, with(&base, "http.response.status_class", class), U64(n));
        }
    }
    for (m, c, h) in &s.latency_by {
        let mut a = with(&base, "http.request.method", METHODS[*m]);
        a.push(("http.response.status_class".into(), STATUS_CLASSES[*c].into()));
        push(out, SERVER_DURATION, a, Histogram(h.clone()));
    }
    for (code, h) in &s.grpc_latency {
        let code = if *code <= 16 { code.to_string() } else { "none".into() };
        push(out, GRPC_DURATION, with(&base, "rpc.grpc.status_code", &code), Histogram(h.clone()));
    }
    for reason in RETRY_REASONS {
        if let Some(n) = s.retry_reasons.get(reason) {
            push(out, RETRIES, with(&base, "weft.retry.reason", reason), U64(*n));
        }
    }
    push(out, BUDGET_REFUSALS, base.clone(), U64(s.retry_budget_exhausted));
    push(out, EJECTIONS, base.clone(), U64(s.ejections));
    push(out, HEALTH_TRANSITIONS, base.clone(), U64(s.health_transitions));
    for (kind, n) in [("no-endpoint", s.no_endpoint), ("connect", s.connect_failures), ("timeout", s.timeouts), ("upstream", s.upstream_errors), ("downstream", s.downstream_errors), ("denied", s.denied)] {
        if n > 0 {
            push(out, FAILURES, with(&base, "error.type", kind), U64(n));
        }
    }
    let healthy = s.endpoints.iter().filter(|e| e.routable).count() as f64;
    push(out, ENDPOINTS, with(&base, "weft.endpoint.state", "healthy"), F64(healthy));
    push(out, ENDPOINTS, with(&base, "weft.endpoint.state", "unhealthy"), F64(s.endpoints.len() as f64 - healthy));
    for e in &s.endpoints {
        let mut ep = with(&base, "weft.endpoint", &e.id);
        ep.push(("weft.endpoint.node".into(), e.node.clone()));
        push(out, TARGET_REQUESTS, ep.clone(), U64(e.requests));
        push(out, TARGET_FAILURES, ep.clone(), U64(e.failures));
        push(out, TARGET_CONNECTIONS, ep.clone(), U64(e.connections));
        push(out, TARGET_IN_FLIGHT, ep.clone(), F64(e.in_flight as f64));
        push(out, TARGET_EJECTED, ep.clone(), F64(if e.ejected { 1.0 } else { 0.0 }));
        if e.response_time.count() > 0 {
            push(out, CLIENT_DURATION, ep.clone(), Histogram(e.response_time.clone()));
        }
        if e.relay_late > 0 {
            push(out, TARGET_RELAY_LATE, ep.clone(), U64(e.relay_late));
        }
        if e.relay_denied > 0 {
            push(out, TARGET_RELAY_DENIED, ep.clone(), U64(e.relay_denied));
        }
        if e.relayed_streams > 0 {
            push(out, TARGET_RELAYED, ep.clone(), U64(e.relayed_streams));
            push(out, TARGET_BYTES, with(&ep, "network.io.direction", "transmit"), U64(e.relayed_bytes_in));
            push(out, TARGET_BYTES, with(&ep, "network.io.direction", "receive"), U64(e.relayed_bytes_out));
        }
        for (class, n) in &e.served {
            push(out, TARGET_SERVED, with(&ep, "http.response.status_class", class), U64(*n));
        }
        if e.served_time.count() > 0 {
            push(out, TARGET_SERVED_DURATION, ep.clone(), Histogram(e.served_time.clone()));
        }
    }
}

fn node(out: &mut Points, snap: &Snapshot) {
    use Value::*;
    let n = &snap.node;
    for (answer, count) in &n.dns_answers {
        if *count > 0 {
            push(out, DNS_QUERIES, attrs(&[("weft.dns.answer", answer)]), U64(*count));
        }
    }
    push(out, EXPORTS, attrs(&[("outcome", "ok")]), U64(n.exports.saturating_sub(n.export_failures)));
    push(out, EXPORTS, attrs(&[("outcome", "failed")]), U64(n.export_failures));
    let Some(m) = &n.mesh else { return };
    push(out, TLS_ERRORS, attrs(&[("weft.tls.side", "target")]), U64(m.tls_errors_target));
    push(out, TLS_ERRORS, attrs(&[("weft.tls.side", "client")]), U64(m.tls_errors_client));
    if let Some(left) = m.cert_remaining_s {
        push(out, CERT_EXPIRY, Vec::new(), F64(left));
    }
    for (state, count) in &m.members {
        push(out, MEMBERS, attrs(&[("weft.member.state", state)]), F64(*count as f64));
    }
    for (event, count) in &m.events {
        push(out, GOSSIP_EVENTS, attrs(&[("weft.gossip.event", event)]), U64(*count));
    }
    if let Some(lag) = m.replication_lag_s {
        push(out, REPLICATION_LAG, Vec::new(), F64(lag));
    }
    for (peer, p) in &m.peers {
        if let Some(rtt) = p.rtt_s {
            push(out, QUIC_RTT, attrs(&[("weft.peer", peer)]), F64(rtt));
        }
        push(out, QUIC_LOST, attrs(&[("weft.peer", peer)]), U64(p.lost_packets));
    }
    push(out, RELAYS_ACTIVE, Vec::new(), I64(m.active_relays));
    push(out, ALIAS_CONFLICTS, Vec::new(), F64(m.alias_conflicts as f64));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_collected_point_belongs_to_a_listed_family_of_its_kind() {
        let r = super::super::Registry::default();
        let s = r.service("ns", "a");
        s.requests.fetch_add(3, std::sync::atomic::Ordering::Relaxed);
        s.finish(0, 503, std::time::Duration::from_micros(700));
        r.endpoint("ns", "a", "e1").response_time.record(std::time::Duration::from_micros(300));
        r.plugin_counter("p", "hits", &[("k", "v")]).fetch_add(2, std::sync::atomic::Ordering::Relaxed);
        let points = collect(&r.snapshot());
        for (name, list) in &points {
            let f = family(name);
            for p in list {
                let ok = matches!((f.kind, &p.value), (Kind::Counter, Value::U64(_)) | (Kind::UpDown, Value::I64(_)) | (Kind::Gauge, Value::F64(_)) | (Kind::Histogram, Value::Histogram(_)));
                assert!(ok, "{name} has a point of the wrong kind");
            }
        }
        let h = &points[SERVER_DURATION];
        assert_eq!(h.len(), 1);
        assert!(h[0].attributes.contains(&("http.response.status_class".into(), "5xx".into())));
        assert_eq!(points[PLUGIN_COUNTER][0].attributes.len(), 3);
    }
}
