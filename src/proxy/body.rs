//! Bodies the proxy sends back to clients, and header hygiene between hops.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http::header::{CONNECTION, HeaderName, TE, TRANSFER_ENCODING, UPGRADE};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use crate::policy::Target;
use crate::telemetry::ServiceStats;

/// Counts a request as in flight on an endpoint until its response body is done or dropped.
pub struct InFlight(Arc<Target>);

impl InFlight {
    pub fn new(t: Arc<Target>) -> InFlight {
        t.stats.in_flight.fetch_add(1, Relaxed);
        InFlight(t)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.stats.in_flight.fetch_sub(1, Relaxed);
    }
}

/// An upstream (HTTP/2) response body; the request counts as in flight until it is done.
pub struct UpstreamBody {
    pub inner: Incoming,
    pub _in_flight: InFlight,
    /// For a gRPC call: times it to the status its trailers carry.
    pub grpc: Option<GrpcClock>,
}

/// Times a gRPC call to its `grpc-status` (which arrives in the trailers, after the body).
pub struct GrpcClock {
    pub stats: Arc<ServiceStats>,
    pub start: tokio::time::Instant,
}

impl GrpcClock {
    pub fn done(self, fields: Option<&HeaderMap>) {
        let code = fields.and_then(|t| t.get("grpc-status")).and_then(|v| v.to_str().ok()?.parse().ok());
        self.stats.grpc_done(code, self.start.elapsed());
    }
}

impl UpstreamBody {
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        if let Some(clock) = self.grpc.take() {
            match &r {
                Poll::Ready(Some(Ok(f))) if f.is_trailers() => clock.done(f.trailers_ref()),
                Poll::Ready(None | Some(Err(_))) => clock.done(None),
                _ => self.grpc = Some(clock),
            }
        }
        r
    }
}

pub enum ProxyBody {
    Upstream(UpstreamBody),
    Full(Option<Bytes>),
}

impl ProxyBody {
    pub fn text(s: String) -> ProxyBody {
        ProxyBody::Full(Some(Bytes::from(s)))
    }
    pub fn empty() -> ProxyBody {
        ProxyBody::Full(None)
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            ProxyBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            ProxyBody::Upstream(u) => u.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Full(b) => b.is_none(),
            ProxyBody::Upstream(u) => u.inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            ProxyBody::Full(None) => SizeHint::with_exact(0),
            ProxyBody::Upstream(u) => u.inner.size_hint(),
        }
    }
}

const HOP_BY_HOP: [&str; 5] = ["keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization", "trailer"];

/// Removes headers that describe one connection, not the message (RFC 9110 §7.6.1), including
/// any the `Connection` header names. `te: trailers` survives: gRPC needs it end to end.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named {
        headers.remove(n);
    }
    headers.remove(CONNECTION);
    headers.remove(TRANSFER_ENCODING);
    headers.remove(UPGRADE);
    for n in HOP_BY_HOP {
        headers.remove(n);
    }
    if headers.get(TE).is_some_and(|v| v.as_bytes() != b"trailers") {
        headers.remove(TE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_connection_scoped_headers() {
        let mut h = HeaderMap::new();
        h.insert(CONNECTION, "keep-alive, x-private".parse().unwrap());
        h.insert("x-private", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert(TE, "trailers".parse().unwrap());
        h.insert("x-keep", "1".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 2);
        assert!(h.contains_key(TE) && h.contains_key("x-keep"));
    }
}
