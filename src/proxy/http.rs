//! HTTP/2 (h2c, prior knowledge) listeners for `http2` and `grpc` services, on hyper: each
//! request is routed, given an endpoint by the policy, and forwarded over the endpoint's shared
//! HTTP/2 connection with bodies streaming both ways and trailers intact, so gRPC status survives.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::body::{InFlight, ProxyBody, UpstreamBody, strip_hop_by_hop};
use super::error::ProxyError;
use super::io::{Activity, Metered};
use super::table::ServiceRoute;
use super::{HttpListener, connect_with_retries};
use crate::catalog::Protocol;
use crate::policy::{Headers, RequestInfo, Target};

pub async fn serve(stream: TcpStream, l: Arc<HttpListener>, shutdown: CancellationToken) {
    let route = l.slot.load_full();
    let stats = route.stats.clone();
    let _connection = stats.open_connection();
    let _ = stream.set_nodelay(true);
    let activity = Activity::new();
    let io = TokioIo::new(Metered::new(stream, activity.clone(), Some(stats.clone())));
    let act = activity.clone();
    let svc = service_fn(move |req| handle(l.clone(), act.clone(), req));
    let idle = route.idle_timeout.unwrap_or(Duration::MAX);
    // Runs until done, or until told to wind down (idle or shutdown): then GOAWAY, and requests
    // in flight still finish.
    let conn = http2::Builder::new(TokioExecutor::new()).timer(TokioTimer::new()).serve_connection(io, svc);
    tokio::pin!(conn);
    let mut closing = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "client connection ended with an error");
                }
                break;
            }
            _ = activity.idle(idle), if !closing => { closing = true; conn.as_mut().graceful_shutdown(); }
            _ = shutdown.cancelled(), if !closing => { closing = true; conn.as_mut().graceful_shutdown(); }
        }
    }
}

async fn handle(l: Arc<HttpListener>, activity: Arc<Activity>, req: Request<Incoming>) -> Result<Response<ProxyBody>, Infallible> {
    let start = Instant::now();
    let _busy = activity.begin();
    let mut route = l.slot.load_full();
    let grpc = route.protocol == Protocol::Grpc;
    let authority = req.uri().authority().map(|a| a.as_str().to_string()).or_else(|| {
        req.headers().get(http::header::HOST).and_then(|h| h.to_str().ok()).map(str::to_string)
    });
    let authority = authority.unwrap_or_default();
    let info = request_info(&route, &req, &authority, &l.shared.zone);
    if let Some(alt) = l.shared.policy.route(&info)
        && let Some(r) = l.shared.table.load().services.get(&(route.namespace.clone(), alt)) {
            route = r.clone();
        }
    let stats = route.stats.clone();
    stats.requests.fetch_add(1, Relaxed);
    if grpc {
        stats.grpc_requests.fetch_add(1, Relaxed);
    }
    let resp = match forward(&l, &route, &authority, req).await {
        Ok(r) => r,
        Err(e) => {
            // Failed connects were counted attempt by attempt where they happened.
            if !e.retryable() {
                stats.failure(e.kind());
            }
            tracing::debug!(service = %route.label(), error = %e, side = ?e.side(), "request failed");
            error_response(&e, grpc)
        }
    };
    stats.response(resp.status().as_u16());
    stats.latency.record(start.elapsed());
    Ok(resp)
}

async fn forward(l: &HttpListener, route: &ServiceRoute, authority: &str, req: Request<Incoming>) -> Result<Response<ProxyBody>, ProxyError> {
    let info = request_info(route, &req, authority, &l.shared.zone);
    let pools = &l.shared.pools;
    let (target, mut conn) = connect_with_retries(&l.shared, route, info, |t: Arc<Target>| async move { pools.h2(route, &t, route.connect_timeout).await }).await?;
    let (mut parts, body) = req.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    let addr = target.address;
    target.stats.requests.fetch_add(1, Relaxed);
    let in_flight = InFlight::new(target.clone());
    let sent = Instant::now();
    let timeout = route.request_timeout.unwrap_or(Duration::MAX);
    let timed_out = || ProxyError::RequestTimeout { addr, after: timeout };
    parts.version = http::Version::HTTP_2;
    let resp = tokio::time::timeout(timeout, conn.send_request(Request::from_parts(parts, body))).await.map_err(|_| timed_out())?;
    let resp = resp.map_err(|source| {
        target.stats.failures.fetch_add(1, Relaxed);
        ProxyError::Upstream { addr, source }
    })?;
    target.stats.response_time.record(sent.elapsed());
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    let body = ProxyBody::Upstream(UpstreamBody { inner: body, _in_flight: in_flight });
    Ok(Response::from_parts(parts, body))
}

fn request_info<'a>(route: &'a ServiceRoute, req: &'a Request<Incoming>, authority: &'a str, zone: &'a str) -> RequestInfo<'a> {
    RequestInfo {
        namespace: &route.namespace,
        service: &route.service,
        method: req.method().as_str(),
        authority,
        path: req.uri().path(),
        headers: Headers::Map(req.headers()),
        attempt: 1,
        idempotent: req.method().is_idempotent(),
        source_zone: zone,
    }
}

/// A response weft made itself, marked so nobody mistakes it for the application's. gRPC clients
/// get a trailers-only gRPC status, which their libraries turn into a proper error.
fn error_response(e: &ProxyError, grpc: bool) -> Response<ProxyBody> {
    let msg = format!("weft: {e}");
    let mut resp = if grpc {
        let code = match e.status() {
            StatusCode::GATEWAY_TIMEOUT => "4",
            _ => "14",
        };
        let mut r = Response::new(ProxyBody::empty());
        let h = r.headers_mut();
        h.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        h.insert("grpc-status", HeaderValue::from_static(code));
        if let Ok(v) = HeaderValue::from_str(&msg.replace(|c: char| !c.is_ascii() || c.is_ascii_control(), " ")) {
            h.insert("grpc-message", v);
        }
        r
    } else {
        let mut r = Response::new(ProxyBody::text(msg + "\n"));
        *r.status_mut() = e.status();
        r.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
        r
    };
    resp.headers_mut().insert("x-weft-error", HeaderValue::from_static(e.code()));
    resp
}
