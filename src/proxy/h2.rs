//! HTTP/2 (h2c, prior knowledge) listeners for `http2` and `grpc` services, on hyper: each
//! request is routed, given an endpoint by the policy, and forwarded over the endpoint's shared
//! HTTP/2 connection with bodies streaming both ways and trailers intact, so gRPC status survives.

use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use super::sock::Sock;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::body::{InFlight, ProxyBody, UpstreamBody, strip_hop_by_hop};
use super::error::ProxyError;
use super::io::{Activity, Gate, Metered};
use super::table::{ServiceRoute, Settings};
use super::HttpListener;
use super::attempt::{self, Attempts};
use super::pipeline::{self, Codec, Tried};
use super::pool::{H2, Pools};
use crate::catalog::RetryConfig;
use super::replay::{Replay, UpBody};
use super::h1::try_limit;
use crate::catalog::Protocol;
use crate::policy::{GRPC_UNAVAILABLE, Headers, Outcome, RequestInfo, Target};

pub async fn serve(stream: Sock, peer: Option<std::net::SocketAddr>, l: Arc<HttpListener>, shutdown: CancellationToken) {
    let route = l.slot.load_full();
    let stats = route.stats.clone();
    let _connection = stats.open_connection();
    let _ = stream.set_nodelay(true);
    // For the access log: known since the accept, so a connection already open when a service
    // turns its log on is logged with it too.
    let downstream = peer;
    let activity = Activity::new();
    let io = TokioIo::new(Metered::new(stream, activity.clone(), Some(stats.clone())));
    let act = activity.clone();
    let svc = service_fn(move |req| handle(l.clone(), act.clone(), downstream, req));
    let idle = route.idle_timeout.unwrap_or(Duration::MAX);
    // Runs until done, or until told to wind down (idle or shutdown): then GOAWAY, and requests
    // in flight still finish.
    let conn = http2::Builder::new(TokioExecutor::new()).timer(TokioTimer::new()).serve_connection(io, svc);
    let mut conn = pin!(conn);
    // The connection future wakes for every frame; the idle watchdog and the shutdown waiter are
    // looked at only when their own wakers fire (as on the HTTP/1.1 path).
    let (mut idle, mut cancelled) = (pin!(activity.idle(idle)), pin!(shutdown.cancelled()));
    let (idle_gate, shutdown_gate) = (Gate::new(), Gate::new());
    let mut closing = false;
    // After a graceful shutdown the connection runs on until the requests in flight are done.
    let ended = std::future::poll_fn(|cx| loop {
        if let Poll::Ready(r) = conn.as_mut().poll(cx) {
            return Poll::Ready(r);
        }
        if closing || (idle_gate.poll(idle.as_mut(), cx).is_pending() && shutdown_gate.poll(cancelled.as_mut(), cx).is_pending()) {
            return Poll::Pending;
        }
        closing = true;
        conn.as_mut().graceful_shutdown();
    })
    .await;
    if let Err(e) = ended {
        tracing::debug!(error = %e, "client connection ended with an error");
    }
}

async fn handle(l: Arc<HttpListener>, activity: Arc<Activity>, downstream: Option<std::net::SocketAddr>, req: Request<Incoming>) -> Result<Response<ProxyBody>, Infallible> {
    let start = Instant::now();
    let _busy = activity.begin();
    let mut route = l.slot.load_full();
    let grpc = route.protocol == Protocol::Grpc;
    let authority = req.uri().authority().map(|a| a.as_str().to_string()).or_else(|| {
        req.headers().get(http::header::HOST).and_then(|h| h.to_str().ok()).map(str::to_string)
    });
    let authority = authority.unwrap_or_default();
    let (mut parts, body) = req.into_parts();
    let method = crate::telemetry::method_index(parts.method.as_str());
    let mut refused = None;
    if route.policy.routes() {
        match attempt::routed(&l.shared, &route, &Headers::Map(&parts.headers), || request_info(&route, route.defaults(), &parts, &authority, &l.shared.zone)) {
            Ok(Some(r)) => route = r,
            Ok(None) => {}
            Err(e) => refused = Some(e),
        }
    }
    let stats = route.stats.clone();
    stats.requests.fetch_add(1, Relaxed);
    if grpc {
        stats.grpc_requests.fetch_add(1, Relaxed);
    }
    let begun = if route.access.is_some() { super::access::begin_h2(&route, &mut parts, downstream) } else { None };
    let bytes_in = if begun.is_some() { content_length(&parts.headers) } else { 0 };
    let req = Request::from_parts(parts, body);
    let forwarded = match refused {
        Some(e) => Err(e),
        None => forward(&l, &route, &authority, req).await,
    };
    let mut upstream = None;
    let mut flags = "-";
    let resp = match forwarded {
        Ok((r, up)) => {
            upstream = begun.is_some().then_some(up);
            r
        }
        Err(e) => {
            flags = e.code();
            // Endpoint failures were counted try by try where they happened.
            if e.side() != super::Side::Upstream {
                stats.failure(e.kind());
            }
            tracing::debug!(service = %route.label(), error = %e, side = ?e.side(), "request failed");
            error_response(&e, grpc)
        }
    };
    stats.finish(method, resp.status().as_u16(), start.elapsed());
    let resp = if grpc { grpc_status_clock(resp, stats, start) } else { resp };
    if let Some(b) = begun {
        // Per-stream byte counts are not kept: the declared lengths stand for them.
        let bytes_out = http_body::Body::size_hint(resp.body()).exact().unwrap_or(0);
        let protocol = if grpc { "gRPC" } else { "HTTP/2" };
        super::access::finish(b, protocol, start, super::access::Ended { status: resp.status().as_u16(), flags, bytes_in, bytes_out, upstream });
    }
    Ok(resp)
}

/// A gRPC call's duration is recorded with its status: at once when the head carries it (a
/// trailers-only answer, or weft's own error), else when the trailers pass.
fn grpc_status_clock(mut resp: Response<ProxyBody>, stats: Arc<crate::telemetry::ServiceStats>, start: Instant) -> Response<ProxyBody> {
    let clock = super::body::GrpcClock { stats, start };
    let in_head = resp.headers().contains_key("grpc-status");
    match resp.body_mut() {
        ProxyBody::Upstream(u) if !in_head => u.grpc = Some(clock),
        _ => clock.done(Some(resp.headers())),
    }
    resp
}

fn content_length(h: &http::HeaderMap) -> u64 {
    h.get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse().ok()).unwrap_or(0)
}

/// The response, the endpoint that gave it and the tries it took.
type Forwarded = (Response<ProxyBody>, (Arc<Target>, u32));

async fn forward(l: &HttpListener, route: &ServiceRoute, authority: &str, req: Request<Incoming>) -> Result<Forwarded, ProxyError> {
    let (mut parts, body) = req.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    parts.version = http::Version::HTTP_2;
    let replay = Replay::default();
    let unsent = Some(replay.tee(body));
    let settings = if route.rules.is_empty() { route.defaults() } else { route.settings(parts.method.as_str(), parts.uri.path(), |n| parts.headers.get(n).map(|v| v.as_bytes())) };
    let info = request_info(route, settings, &parts, authority, &l.shared.zone);
    let idempotent = info.idempotent;
    let begun = Instant::now();
    let mut attempts = Attempts::new(route, info, begun);
    let mut codec = Codec2 { answer: None, pools: &l.shared.pools, route, parts: &parts, replay: &replay, unsent, retry: settings.retry, deadline: settings.request_timeout.map(|t| begun + t), idempotent };
    let target = pipeline::run(&mut attempts, &mut codec).await?;
    let tries = attempts.info.attempt;
    codec.answer.map(|r| (r, (target, tries))).ok_or_else(|| attempts.error())
}

/// The HTTP/2 and gRPC codec under the request pipeline: one stream per try on a shared
/// connection, the body streamed to the first endpoint while a copy is kept for a retry.
struct Codec2<'a> {
    /// The last try's answer.
    answer: Option<Response<ProxyBody>>,
    pools: &'a Pools,
    route: &'a ServiceRoute,
    parts: &'a http::request::Parts,
    replay: &'a Replay,
    /// A body not sent yet: the first try's, or one hyper handed back unsent.
    unsent: Option<UpBody>,
    retry: &'a RetryConfig,
    deadline: Option<Instant>,
    /// A request that must not run late goes to another host on a connection of its own whose
    /// relay stream carries its deadline (`transport::relay`), as HTTP/1.1's does.
    idempotent: bool,
}

impl Codec for Codec2<'_> {
    type Conn = H2;
    const COUNTS_REQUESTS: bool = true;

    async fn connect(&mut self, t: &Arc<Target>, _now: Instant) -> Result<H2, ProxyError> {
        self.conn_for(t).await
    }

    async fn reconnect(&mut self, t: &Arc<Target>, old: Option<H2>) -> Result<H2, ProxyError> {
        if let Some(old) = old {
            self.pools.forget_h2(t, &old);
        }
        self.conn_for(t).await
    }

    async fn send(&mut self, t: &Arc<Target>, mut conn: H2, in_flight: InFlight, attempts: &Attempts<'_>) -> Tried<H2> {
        let Some(body) = self.unsent.take().or_else(|| self.replay.again()) else {
            // Only a replayable request is tried again, so its body is always there.
            return Tried::Failed { error: ProxyError::Downstream("the request body is no longer there for another try".into()), outcome: Outcome::Reset, replayable: false };
        };
        let addr = t.address;
        let sent = Instant::now();
        let limit = try_limit(self.retry, self.deadline);
        let answer = conn.send.try_send_request(rebuild(self.parts, body));
        match watched(limit, answer, &mut conn.gone).await {
            Sent::Answer(Ok(resp)) => {
                let at = Instant::now();
                let grpc_status = resp.headers().get("grpc-status").and_then(|v| v.to_str().ok()?.parse::<u32>().ok());
                let unavailable = grpc_status == Some(GRPC_UNAVAILABLE);
                let ok = resp.status().as_u16() < 500 && !unavailable;
                let retry_on = match (resp.status().as_u16(), unavailable) {
                    (_, true) => Some((Outcome::GrpcStatus(GRPC_UNAVAILABLE), self.replay.ready())),
                    // Every error status goes to should-retry (the built-in hook retries only a
                    // 503; a plugin may retry a 429).
                    (s, _) if s >= 400 => Some((Outcome::Status(s), self.replay.ready())),
                    _ => None,
                };
                let (mut parts, body) = resp.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                let body = ProxyBody::Upstream(UpstreamBody { inner: body, _in_flight: in_flight, grpc: None });
                self.answer = Some(Response::from_parts(parts, body));
                Tried::Answered { ok, timing: Some((at - sent, at)), retry_on }
            }
            Sent::TimedOut => Tried::Failed { error: ProxyError::RequestTimeout { addr, after: limit }, outcome: Outcome::Timeout, replayable: self.replay.ready() },
            Sent::Lost => {
                // The endpoint may have run it: it goes again over a new connection to the same
                // endpoint only if repeating it is harmless; otherwise the retry policy decides.
                tracing::debug!(%addr, "an HTTP/2 connection ended without answering a request");
                let error = ProxyError::UpstreamIo { addr, source: std::io::Error::other("the HTTP/2 connection ended without answering the request") };
                if attempts.info.idempotent && self.replay.ready() {
                    Tried::SameAgain { error, outcome: Outcome::Reset, conn: Some(conn) }
                } else {
                    Tried::Failed { error, outcome: Outcome::Reset, replayable: self.replay.ready() }
                }
            }
            Sent::Answer(Err(mut e)) => {
                // hyper hands back a request it never sent (a refused stream, or one cut by a
                // GOAWAY: RFC 9113 §8.7 says unprocessed): it goes on untouched.
                let returned = e.take_message();
                let error = ProxyError::Upstream { addr, source: e.into_error() };
                match returned {
                    Some(r) => {
                        self.unsent = Some(r.into_body());
                        Tried::SameAgain { error, outcome: Outcome::Refused, conn: Some(conn) }
                    }
                    None => {
                        let outcome = match &error {
                            ProxyError::Upstream { source, .. } => classify(source),
                            _ => Outcome::Reset,
                        };
                        // A stream the endpoint refused (REFUSED_STREAM) was not processed
                        // either: again over a new connection, if the body can be sent again.
                        if outcome == Outcome::Refused && self.replay.ready() {
                            Tried::SameAgain { error, outcome, conn: Some(conn) }
                        } else {
                            Tried::Failed { error, outcome, replayable: self.replay.ready() }
                        }
                    }
                }
            }
        }
    }
}

impl Codec2<'_> {
    /// The shared connection to `t`, or one of its own for a request that must not run late on
    /// another host.
    async fn conn_for(&self, t: &Target) -> Result<H2, ProxyError> {
        if !self.idempotent && t.via.is_some() {
            let limit = try_limit(self.retry, self.deadline);
            if limit < Duration::MAX / 2 {
                let deadline_ms = crate::transport::relay::unix_ms().saturating_add(limit.as_millis() as u64);
                return self.pools.h2_single(self.route, t, self.route.connect_timeout, deadline_ms).await;
            }
        }
        self.pools.h2(self.route, t, self.route.connect_timeout).await
    }
}

/// How one try on an HTTP/2 connection ended.
enum Sent<T> {
    Answer(T),
    TimedOut,
    /// The connection ended for good and the stream was never answered nor failed.
    Lost,
}

/// After an HTTP/2 connection has ended (its bytes dropped), every stream on it has been told;
/// one still waiting this much later never will be. Seen with nginx recycling connections under
/// load: a handful of streams per thousand recycles waited out the whole request timeout.
const LOST_GRACE: Duration = Duration::from_millis(250);

/// `answer` within `limit`, unless the connection it went out on ends without answering it.
async fn watched<F: Future>(limit: Duration, answer: F, gone: &mut watch::Receiver<()>) -> Sent<F::Output> {
    let lost = async {
        // Nothing is ever sent: this returns when the sender (the connection's bytes) is dropped.
        let _ = gone.changed().await;
        tokio::time::sleep(LOST_GRACE).await;
    };
    tokio::select! {
        biased;
        r = tokio::time::timeout(limit, answer) => r.map_or(Sent::TimedOut, Sent::Answer),
        () = lost => Sent::Lost,
    }
}

/// A refused stream (REFUSED_STREAM, or cut off by a GOAWAY) was not processed by the endpoint
/// (RFC 9113 §8.7), so any request may go elsewhere; other stream errors may come after it ran.
fn classify(e: &hyper::Error) -> Outcome {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(h2) = s.downcast_ref::<h2::Error>() {
            if h2.reason() == Some(h2::Reason::REFUSED_STREAM) || (h2.is_go_away() && h2.is_remote()) {
                return Outcome::Refused;
            }
            break;
        }
        source = s.source();
    }
    Outcome::Reset
}

fn rebuild(parts: &http::request::Parts, body: UpBody) -> Request<UpBody> {
    let mut req = Request::new(body);
    *req.method_mut() = parts.method.clone();
    *req.uri_mut() = parts.uri.clone();
    *req.version_mut() = parts.version;
    *req.headers_mut() = parts.headers.clone();
    req
}

fn request_info<'a>(route: &'a ServiceRoute, settings: Settings<'a>, req: &'a http::request::Parts, authority: &'a str, zone: &'a str) -> RequestInfo<'a> {
    RequestInfo {
        namespace: &route.namespace,
        service: &route.service,
        method: req.method.as_str(),
        authority: authority.into(),
        path: req.uri.path().into(),
        headers: Headers::Map(&req.headers),
        attempt: 1,
        idempotent: settings.idempotent.unwrap_or_else(|| req.method.is_idempotent()),
        source_zone: zone,
        retry: settings.retry,
    }
}

/// A response weft made itself, marked so nobody mistakes it for the application's. gRPC clients
/// get a trailers-only gRPC status, which their libraries turn into a proper error.
fn error_response(e: &ProxyError, grpc: bool) -> Response<ProxyBody> {
    let msg = format!("weft: {e}");
    let mut resp = if grpc {
        let code = match e.status() {
            StatusCode::GATEWAY_TIMEOUT => "4",
            StatusCode::FORBIDDEN => "7", // PERMISSION_DENIED
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A try whose connection has ended is given up `LOST_GRACE` later, not at its timeout; an
    /// answer that comes first wins.
    #[tokio::test]
    async fn a_stream_on_an_ended_connection_is_lost_not_timed_out() {
        let (ended, mut gone) = watch::channel(());
        drop(ended);
        let start = Instant::now();
        let r = watched(Duration::from_secs(15), std::future::pending::<()>(), &mut gone).await;
        assert!(matches!(r, Sent::Lost));
        assert!(start.elapsed() >= LOST_GRACE && start.elapsed() < Duration::from_secs(5), "{:?}", start.elapsed());
        let (_open, mut alive) = watch::channel(());
        assert!(matches!(watched(Duration::from_secs(15), async { 7 }, &mut alive).await, Sent::Answer(7)));
        assert!(matches!(watched(Duration::from_millis(50), std::future::pending::<()>(), &mut alive).await, Sent::TimedOut));
    }
}
