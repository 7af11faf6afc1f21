//! HTTP/1.1 listeners, proxied at the message level: heads are parsed in place and written on
//! with the hop-by-hop fields removed, bodies are forwarded as they came (chunk framing included)
//! with only their ends located. Nothing is re-encoded, which is what lets one core keep up with
//! HAProxy (BENCHMARKS.md); hyper still carries HTTP/2 and gRPC.

mod body;
pub(crate) mod chunked;
pub(crate) mod head;
mod log;
pub(crate) mod scan;
pub mod tap;
mod tries;

pub(super) use tries::try_limit;

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use self::body::copy_body;
use self::head::{BodyKind, Head, HeadError, reserve};
use super::error::ProxyError;
use super::io::{Activity, Deadline, Gate, Metered};
use super::pool::{Pools, Upstream};
use super::sock::Sock;
use super::table::{ServiceRoute, Settings};
use super::HttpListener;
use super::attempt;
use super::body::InFlight;
use crate::policy::{Headers, RawText, RequestInfo, Target};

type Client = Metered<Sock>;

/// What happens to the client connection after an exchange.
#[derive(PartialEq, Eq)]
enum Next {
    KeepAlive,
    Close,
}

pub async fn serve(stream: Sock, peer: Option<std::net::SocketAddr>, l: Arc<HttpListener>, shutdown: CancellationToken) {
    let route = l.slot.load_full();
    let _connection = route.stats.open_connection();
    let _ = stream.set_nodelay(true);
    let activity = Activity::new();
    let mut client = Metered::new(stream, activity.clone(), Some(route.stats.clone()));
    let idle = route.idle_timeout.unwrap_or(Duration::MAX);
    let mut sc = Scratch { timer: Deadline::new(), out: Vec::with_capacity(1024), held: None, peer };
    // The requests come first on every wake; the idle watchdog is looked at only when its timer
    // fires.
    super::io::until(requests(&l, &mut client, &activity, &shutdown, &mut sc), activity.idle(idle)).await;
    // The client is gone: its upstream connection can serve others, if it is young enough.
    if let Some(h) = sc.held.take()
        && Instant::now() < h.expires
    {
        l.shared.pools.checkin_h1(super::conn::dest(&h.target), h.up, h.expires);
    }
}

/// Once a request has begun, its whole head must arrive within this (hyper's default too): a
/// client dripping header bytes cannot hold a connection and its buffer forever.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);

async fn requests(l: &HttpListener, client: &mut Client, activity: &Arc<Activity>, shutdown: &CancellationToken, sc: &mut Scratch) {
    let mut buf = BytesMut::with_capacity(16 * 1024);
    // One waiter for the connection's life: making and dropping one per request registered with
    // the token's shared list each time.
    let cancelled = shutdown.cancelled();
    tokio::pin!(cancelled);
    let shutdown_gate = Gate::new();
    loop {
        let mut head_deadline = None;
        let mut searched: usize = 0;
        let head = loop {
            // Parse only once the end of a head may be in the buffer, so a head sent in many
            // small pieces is not parsed again from the start for every piece.
            // The usual request arrives whole and alone: its end is the buffer's end.
            let from = searched.saturating_sub(3);
            let complete = buf.ends_with(b"\n\r\n")
                || buf.len() > head::MAX_HEAD
                || buf[from..].windows(2).any(|w| w == b"\n\n" || w == b"\n\r");
            searched = buf.len();
            match if complete { Head::request(&buf) } else { Ok(None) } {
                Ok(Some(h)) => break h,
                Ok(None) => {}
                Err(e) => {
                    let status = if e == HeadError::TooLarge { 431 } else { 400 };
                    let _ = write_error(client, status, "bad-request", &format!("weft: {e}"), true).await;
                    return;
                }
            }
            reserve(&mut buf);
            // Between requests a shutdown ends the connection; inside one it waits its turn.
            let read = if buf.is_empty() {
                match shutdown_gate.until(client.read_buf(&mut buf), cancelled.as_mut()).await {
                    Some(r) => r,
                    None => return,
                }
            } else {
                // Only heads that span several reads arm a timer; most arrive in one.
                let deadline = *head_deadline.get_or_insert_with(|| Instant::now() + HEAD_TIMEOUT);
                match tokio::time::timeout_at(deadline, client.read_buf(&mut buf)).await {
                    Ok(r) => r,
                    Err(_) => {
                        let _ = write_error(client, 408, "request-timeout", "weft: request head not received in time", true).await;
                        return;
                    }
                }
            };
            if !matches!(read, Ok(n) if n > 0) {
                return;
            }
        };
        // The response said whether the connection stays. If a drain began after it was written,
        // the next response says close. Closing now would cut the request the client may
        // already be sending on a connection it was told to keep.
        if exchange(l, client, &mut buf, head, activity, sc).await == Next::Close {
            return;
        }
        // A large head or small body once must not pin its buffer for the connection's life.
        if sc.out.capacity() > 16 * 1024 {
            sc.out = Vec::new();
        }
    }
}

/// Routes one request, forwards it and its response, and records the figures.
async fn exchange(l: &HttpListener, client: &mut Client, buf: &mut BytesMut, head: Head, activity: &Arc<Activity>, sc: &mut Scratch) -> Next {
    // The one clock reading the request's bookkeeping starts from (deadlines, pool ages, the
    // first try's timing); clock reads were a few percent of the per-request CPU.
    let start = Instant::now();
    let mut route = l.slot.load_full();
    let mut refused = None;
    // The route phase runs only for services whose policy may send requests elsewhere.
    if route.policy.routes() {
        let headers = Headers::Raw { buf: &buf[..], fields: &head.fields };
        match attempt::routed(&l.shared, &route, &headers, || request_info(&route, route.defaults(), &head, &buf[..], &l.shared.zone, true)) {
            Ok(Some(r)) => route = r,
            Ok(None) => {}
            Err(e) => refused = Some(e),
        }
    }
    let stats = route.stats.clone();
    stats.requests.fetch_add(1, Relaxed);
    let method = crate::telemetry::method_index(head.method(&buf[..]));
    // Route rules are matched only for services that have them: the usual request skips this.
    let settings = if route.rules.is_empty() {
        route.defaults()
    } else {
        let headers = Headers::Raw { buf: &buf[..], fields: &head.fields };
        route.settings(head.method(&buf[..]), RawText(path_of(head.target.get(&buf[..]))).as_str(), |n| headers.get(n))
    };
    // The access log takes what it needs from the head now: it leaves the buffer when sent.
    let pending = if route.access.is_some() { log::begin(&route, &head, &buf[..], client, sc.peer) } else { None };
    let added = pending.as_ref().and_then(|p| p.added.as_deref());
    let x = Exchange { l, route: &route, settings, start, added: added.as_slice(), logged: pending.is_some() };
    let result = match refused {
        Some(e) => Err((e, None)),
        None => forward(x, client, buf, &head, activity, sc).await,
    };
    let mut done = None;
    let logged: (u16, &str, log::Upstream);
    let next = match result {
        Ok((status, next, at, upstream)) => {
            done = Some(at);
            logged = (status, "-", upstream);
            next
        }
        Err((e, answered)) => {
            // Endpoint failures were counted try by try where they happened.
            if e.side() != super::Side::Upstream {
                stats.failure(e.kind());
            }
            tracing::debug!(service = %route.label(), error = %e, side = ?e.side(), "request failed");
            match answered {
                // The response had started; the client can only be told by closing.
                Some(status) => {
                    logged = (status, e.code(), None);
                    Next::Close
                }
                None => {
                    logged = (e.status().as_u16(), e.code(), None);
                    // Unread request body bytes would be taken for the next request: close then.
                    let close = head.close || head.body != BodyKind::Empty;
                    let written = write_error(client, e.status().as_u16(), e.code(), &format!("weft: {e}"), close).await;
                    if close || written.is_err() { Next::Close } else { Next::KeepAlive }
                }
            }
        }
    };
    let done = done.unwrap_or_else(Instant::now);
    stats.finish(method, logged.0, done - start);
    if let Some(p) = pending {
        log::finish(p, client, buf.len(), (start, done), logged.0, logged.1, logged.2);
    }
    next
}

/// The request as the policy hooks see it; `full`: with authority, path and headers (only when a
/// hook reads them: turning them into strings was ~3 % of a request's instructions).
fn request_info<'a>(route: &'a ServiceRoute, settings: Settings<'a>, head: &'a Head, buf: &'a [u8], zone: &'a str, full: bool) -> RequestInfo<'a> {
    let method = head.method(buf);
    let (authority, path, headers) = if full {
        (RawText(head.host(buf).unwrap_or(b"")), RawText(path_of(head.target.get(buf))), Headers::Raw { buf, fields: &head.fields })
    } else {
        (RawText::default(), RawText::default(), Headers::None)
    };
    RequestInfo {
        namespace: &route.namespace,
        service: &route.service,
        method,
        authority,
        path,
        headers,
        attempt: 1,
        idempotent: settings.idempotent.unwrap_or_else(|| head::idempotent(method)),
        source_zone: zone,
        retry: settings.retry,
    }
}

/// A request target without its query.
fn path_of(target: &[u8]) -> &[u8] {
    target.iter().position(|b| *b == b'?').map_or(target, |q| &target[..q])
}

/// What a connection keeps from one request to the next, so that each does not allocate its own
/// head buffer or arm its own timer.
struct Scratch {
    timer: Deadline,
    /// The head being written onward (with a small body after it).
    out: Vec<u8>,
    /// The upstream connection of the last exchange, kept for the next request while it goes to
    /// the same endpoint (as HAProxy keeps a server connection with its client): the pool's
    /// shared lock and map are then not touched at all. Returned to the pool when another
    /// endpoint's connection replaces it and when the client leaves.
    held: Option<Held>,
    /// The client's address, as the accept gave it (for the access log).
    peer: Option<std::net::SocketAddr>,
}

struct Held {
    target: Arc<Target>,
    up: Upstream,
    /// When it is too old to reuse (the pool's idle lifetime, from when it was last used).
    expires: Instant,
}

impl Scratch {
    /// A connection to `t` ready at once: the held one or an idle one from the pool (`None`: a
    /// new one is needed). A request that must not run late (`deadline_ms`) to an endpoint on
    /// another host gets a relay stream of its own that carries its deadline, never a pooled one.
    /// Not a future that holds the connection: moving that future into the request's was a
    /// `memcpy` call per request (callgrind).
    fn ready(&mut self, pools: &Pools, t: &Arc<Target>, now: Instant, deadline_ms: Option<u64>) -> Option<Upstream> {
        if deadline_ms.is_some() {
            return None;
        }
        self.take_held(t, now).or_else(|| pools.idle_h1(super::conn::dest(t), now))
    }

    /// The held connection, when it goes to `t`'s address, is young enough and still open.
    fn take_held(&mut self, t: &Arc<Target>, now: Instant) -> Option<Upstream> {
        let same = |h: &Held| Arc::ptr_eq(&h.target, t) || super::conn::dest(&h.target) == super::conn::dest(t);
        if !self.held.as_ref().is_some_and(same) {
            return None;
        }
        let h = self.held.take()?;
        (now < h.expires).then_some(h.up)?.reuse()
    }
}

/// Error plus, when the client had already been sent a response head, its status.
type Failed = (ProxyError, Option<u16>);

/// The status sent, what to do with the client connection, and when the response was done.
type Delivered = (u16, Next, Instant, log::Upstream);

/// What every step of one request shares: where it came in, where it goes, when it began.
#[derive(Clone, Copy)]
struct Exchange<'a> {
    l: &'a HttpListener,
    route: &'a ServiceRoute,
    /// The settings of the request's route rule, or the service's.
    settings: Settings<'a>,
    start: Instant,
    /// Fields added to the request on its way (an `x-request-id` for the access log).
    added: &'a [&'a str],
    /// The request goes to the access log (which wants the endpoint and the tries).
    logged: bool,
}

impl Exchange<'_> {
    /// The request timeout's deadline.
    fn deadline(&self) -> Option<Instant> {
        self.settings.request_timeout.map(|t| self.start + t)
    }
}

/// Request bodies up to this size are read before the first try and kept, so the request can go
/// to another endpoint after a try that may have reached the first. Larger and chunked bodies
/// stream through and are retried only when connecting fails (nothing was sent then).
const REPLAY_LIMIT: u64 = 64 * 1024;

fn replay_len(head: &Head) -> Option<usize> {
    match head.body {
        BodyKind::Empty => Some(0),
        // A client that sent `Expect: 100-continue` waits for the endpoint before sending the body.
        BodyKind::Length(n) if n <= REPLAY_LIMIT && !head.expect_continue => Some(n as usize),
        _ => None,
    }
}

/// A try that got a response head, ready to be delivered to the client.
struct Answer {
    target: Arc<Target>,
    up: Upstream,
    resp: Head,
    /// The whole request body went out (false when the endpoint answered early).
    body_done: bool,
    _in_flight: InFlight,
    /// Tries it took (set once the pipeline is done).
    attempts: u32,
}

async fn forward(x: Exchange<'_>, client: &mut Client, buf: &mut BytesMut, head: &Head, activity: &Arc<Activity>, sc: &mut Scratch) -> Result<Delivered, Failed> {
    // While the response head is awaited nothing may move for a long time (the request timeout
    // governs that wait); bodies and tunnels that stall fall to the idle timeout.
    let busy = activity.begin();
    // The answer stays here, where the try made it, until it is delivered and its connection
    // is kept (or dropped).
    let mut slot = None;
    let answer = match replay_len(head) {
        Some(n) => {
            if n > 0 {
                let limit = x.settings.request_timeout.unwrap_or(HEAD_TIMEOUT).min(HEAD_TIMEOUT);
                read_to(client, buf, head.len + n, limit).await.map_err(|e| (e, None))?;
            }
            let r = tries::replayable(x, client, buf, head, n, sc, &mut slot).await;
            buf.advance(head.len + n);
            r
        }
        None => tries::streaming(x, client, buf, head, sc, &mut slot).await,
    };
    let answer = answer.map_err(|e| (e, None))?;
    drop(busy);
    let (delivered, reusable) = deliver(x, client, buf, head, answer, &mut sc.out).await?;
    if reusable && let Some(Answer { target, up, .. }) = slot {
        if let Some(h) = sc.held.replace(Held { target, up, expires: delivered.2 + super::pool::IDLE_LIFETIME }) {
            x.l.shared.pools.checkin_h1(super::conn::dest(&h.target), h.up, h.expires);
        }
    }
    Ok(delivered)
}

/// Reads from the client until `buf` holds `want` bytes (a head and its whole small body).
async fn read_to(client: &mut Client, buf: &mut BytesMut, want: usize, limit: Duration) -> Result<(), ProxyError> {
    let deadline = Instant::now() + limit;
    while buf.len() < want {
        match tokio::time::timeout_at(deadline, fill(client, buf)).await {
            Ok(Ok(n)) if n > 0 => {}
            Ok(Ok(_)) => return Err(ProxyError::Downstream("client closed before sending the whole body".into())),
            Ok(Err(e)) => return Err(ProxyError::Downstream(e.to_string())),
            Err(_) => return Err(ProxyError::BodyTimeout(limit)),
        }
    }
    Ok(())
}

/// Sends the response head and body to the client; says whether the client connection stays,
/// and whether the upstream one may serve another request.
async fn deliver(x: Exchange<'_>, client: &mut Client, buf: &mut BytesMut, head: &Head, a: &mut Answer, out: &mut Vec<u8>) -> Result<(Delivered, bool), Failed> {
    let Exchange { l, route, .. } = x;
    let Answer { target, up, resp, body_done, attempts, .. } = a;
    let (resp, body_done) = (&*resp, *body_done);
    let logged = x.logged.then(|| (target.clone(), *attempts));
    let addr = target.address;
    let upstream_failed = |e: ProxyError| {
        route.stats.failure(e.kind());
        attempt::record(route, target, false, None);
        e
    };
    if resp.status == 101 && !head.upgrade {
        let e = ProxyError::BadResponse { addr, detail: "101 Switching Protocols to a request that asked for no upgrade".into() };
        return Err((upstream_failed(e), None));
    }
    let upgraded = resp.status == 101;
    // A draining node tells its clients to reconnect (to a node that is staying).
    let keep_client = body_done && !head.close && resp.body != BodyKind::UntilClose && !upgraded && !l.shared.stopping();
    let mut extra: Vec<&str> = Vec::new();
    if !keep_client && !upgraded {
        extra.push("connection: close");
    } else if head.minor == 0 && keep_client {
        extra.push("connection: keep-alive");
    }
    out.clear();
    resp.write_to(&up.buf, out, false, &extra);
    up.buf.advance(resp.len);
    let status = resp.status;
    if upgraded {
        client.write_all(out).await.map_err(|e| (ProxyError::Downstream(e.to_string()), Some(status)))?;
        tunnel(client, buf, up).await;
        return Ok(((status, Next::Close, Instant::now(), logged), false));
    }
    let copied = copy_body(resp.body, &mut up.buf, &mut up.stream, client, out).await;
    copied.map_err(|e| {
        let e = e.into_proxy(addr);
        let e = if e.side() == super::Side::Upstream { upstream_failed(e) } else { e };
        (e, Some(status))
    })?;
    // One reading for the pool's age of the connection and the request's latency.
    let done = Instant::now();
    let reusable = body_done && !resp.close && resp.body != BodyKind::UntilClose && up.buf.is_empty() && !up.single_use;
    Ok(((status, if keep_client { Next::KeepAlive } else { Next::Close }, done, logged), reusable))
}

/// After `101 Switching Protocols`: bytes both ways until either side closes.
async fn tunnel(client: &mut Client, buf: &mut BytesMut, up: &mut Upstream) {
    if !up.buf.is_empty() && client.write_all(&up.buf).await.is_err() {
        return;
    }
    if !buf.is_empty() && up.stream.write_all(buf).await.is_err() {
        return;
    }
    buf.clear();
    let _ = tokio::io::copy_bidirectional(client, &mut up.stream).await;
}

async fn write_error<W: AsyncWrite + Unpin>(w: &mut W, status: u16, code: &str, message: &str, close: bool) -> std::io::Result<()> {
    let reason = http::StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("Error");
    let body = format!("{message}\n");
    let conn = if close { "close" } else { "keep-alive" };
    let text = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain; charset=utf-8\r\nx-weft-error: {code}\r\ncontent-length: {}\r\nconnection: {conn}\r\n\r\n{body}",
        body.len()
    );
    w.write_all(text.as_bytes()).await
}

/// Reads more bytes into `buf`; `Ok(0)` is end of stream.
async fn fill<R: AsyncRead + Unpin>(r: &mut R, buf: &mut BytesMut) -> std::io::Result<usize> {
    reserve(buf);
    r.read_buf(buf).await
}
