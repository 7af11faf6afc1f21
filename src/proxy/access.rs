//! The access log's records for HTTP/2, gRPC and TCP (HTTP/1.1 keeps its own in `h1/log.rs`,
//! as it reads raw heads). Only services whose log is on get here.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::time::Instant;

use crate::policy::Target;
use crate::telemetry::access::{Record, ServiceLog, unix_us};

use super::table::ServiceRoute;

/// A request or connection being logged: what is known when it begins.
pub(super) struct Begun {
    log: ServiceLog,
    method: String,
    path: String,
    request_id: Option<String>,
    traceparent: Option<String>,
    downstream: Option<SocketAddr>,
}

/// How it ended.
pub(super) struct Ended {
    pub status: u16,
    pub flags: &'static str,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub upstream: Option<(Arc<Target>, u32)>,
}

/// An HTTP/2 or gRPC request; adds an `x-request-id` when it has none (and the log says so).
pub(super) fn begin_h2(route: &ServiceRoute, parts: &mut http::request::Parts, downstream: Option<SocketAddr>) -> Option<Begun> {
    let log = route.access.as_ref().filter(|l| l.log.wants())?;
    let text = |n: &str| parts.headers.get(n).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let mut request_id = text("x-request-id");
    let traceparent = text("traceparent");
    if request_id.is_none() && log.log.request_id {
        let id = crate::telemetry::access::new_request_id();
        if let Ok(v) = http::HeaderValue::from_str(&id) {
            parts.headers.insert("x-request-id", v);
        }
        request_id = Some(id);
    }
    Some(Begun { log: log.clone(), method: parts.method.as_str().to_string(), path: parts.uri.path().to_string(), request_id, traceparent, downstream })
}

/// A TCP connection.
pub(super) fn begin_tcp(route: &ServiceRoute, downstream: Option<std::net::SocketAddr>) -> Option<Begun> {
    let log = route.access.as_ref().filter(|l| l.log.wants())?;
    Some(Begun { log: log.clone(), method: String::new(), path: String::new(), request_id: None, traceparent: None, downstream })
}

pub(super) fn finish(b: Begun, protocol: &'static str, start: Instant, e: Ended) {
    let (upstream, attempts) = match e.upstream {
        Some((t, n)) => (Some((t.id.clone(), t.node.clone(), t.address)), n),
        None => (None, 0),
    };
    b.log.log.log(Record {
        start_us: unix_us(start),
        duration: start.elapsed(),
        protocol,
        namespace: b.log.namespace.clone(),
        service: b.log.service.clone(),
        method: b.method,
        path: b.path,
        status: e.status,
        flags: e.flags,
        bytes_in: e.bytes_in,
        bytes_out: e.bytes_out,
        upstream,
        attempts,
        request_id: b.request_id,
        traceparent: b.traceparent,
        downstream: b.downstream,
    });
}
