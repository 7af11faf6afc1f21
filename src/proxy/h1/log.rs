//! The HTTP/1.1 side of the access log: what is taken from a request before it is forwarded (its
//! head leaves the buffer then), and the record made when it is done. Only services whose
//! access log is on get here; the usual request pays one branch on `route.access`.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::head::Head;
use super::Client;
use crate::policy::{Headers, Target};
use crate::proxy::table::ServiceRoute;
use crate::telemetry::access::{Record, ServiceLog, unix_us};

/// A request being logged.
pub(super) struct Pending {
    log: ServiceLog,
    method: String,
    path: String,
    request_id: Option<String>,
    traceparent: Option<String>,
    /// `x-request-id: …` to add to the request on its way (it had none).
    pub added: Option<String>,
    read: u64,
    written: u64,
    downstream: Option<std::net::SocketAddr>,
}

/// What the answered try leaves for the log: the endpoint and how many tries it took.
pub(super) type Upstream = Option<(Arc<Target>, u32)>;

pub(super) fn begin(route: &ServiceRoute, head: &Head, buf: &[u8], client: &Client, downstream: Option<std::net::SocketAddr>) -> Option<Pending> {
    let log = route.access.as_ref().filter(|l| l.log.wants())?;
    let headers = Headers::Raw { buf, fields: &head.fields };
    let text = |n| headers.get(n).map(|v| String::from_utf8_lossy(v).into_owned());
    let mut request_id = text("x-request-id");
    let mut added = None;
    if request_id.is_none() && log.log.request_id {
        let id = crate::telemetry::access::new_request_id();
        added = Some(format!("x-request-id: {id}"));
        request_id = Some(id);
    }
    // The head (and whatever followed it) was read already: it counts from where the buffer
    // begins.
    let (read, written) = client.counted();
    let read = read - buf.len() as u64;
    Some(Pending {
        log: log.clone(),
        method: head.method(buf).to_string(),
        path: head.target(buf).to_string(),
        request_id,
        traceparent: text("traceparent"),
        added,
        read,
        written,
        downstream,
    })
}

/// The record of a finished request. `status` 0: the client got no response. `unread`: bytes
/// read from the client that belong to the next request.
pub(super) fn finish(p: Pending, client: &Client, unread: usize, at: (Instant, Instant), status: u16, flags: &'static str, upstream: Upstream) {
    let (start, done) = at;
    let (read, written) = client.counted();
    let read = read.saturating_sub(unread as u64);
    let (upstream, attempts) = match upstream {
        Some((t, n)) => (Some((t.id.clone(), t.node.clone(), t.address)), n),
        None => (None, 0),
    };
    p.log.log.log(Record {
        start_us: unix_us(start),
        duration: done.checked_duration_since(start).unwrap_or(Duration::ZERO),
        protocol: "HTTP/1.1",
        namespace: p.log.namespace.clone(),
        service: p.log.service.clone(),
        method: p.method,
        path: p.path,
        status,
        flags,
        bytes_in: read.saturating_sub(p.read),
        bytes_out: written - p.written,
        upstream,
        attempts,
        request_id: p.request_id,
        traceparent: p.traceparent,
        downstream: p.downstream,
    });
}
