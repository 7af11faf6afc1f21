//! Upstream connections per endpoint address: idle HTTP/1.1 connections (plain sockets, with
//! their read buffers) for reuse, one shared HTTP/2 connection per endpoint. Connecting is our step (not a client library's), so a connect
//! failure is known to have sent nothing and the request can go to another endpoint untouched.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::time::Instant;

use super::conn::{Conn, Dest, dest, dial};
use super::error::ProxyError;
use super::goaway::Sniffed;
use super::table::ServiceRoute;
use crate::policy::Target;
use crate::transport::Transport;

pub type H2Send = http2::SendRequest<super::replay::UpBody>;

/// An endpoint's shared HTTP/2 connection: the handle to send on, whether the endpoint has sent
/// it a GOAWAY, and a receiver that learns when it has ended for good.
#[derive(Clone)]
pub struct H2 {
    pub send: H2Send,
    going_away: Arc<AtomicBool>,
    pub gone: tokio::sync::watch::Receiver<()>,
}

/// Idle connections kept per endpoint; beyond this they are closed when returned.
const MAX_IDLE_PER_ENDPOINT: usize = 256;
/// Idle connections older than this are dropped on checkout, well before typical server
/// keep-alive timeouts (nginx 75 s, Node 5 s are the short ones — hence small).
pub const IDLE_LIFETIME: Duration = Duration::from_secs(4);

/// An HTTP/1.1 upstream connection and the bytes read from it but not yet forwarded.
pub struct Upstream {
    pub stream: Conn,
    pub buf: BytesMut,
    /// Taken from the pool: it may have been closed by the peer a moment ago.
    pub reused: bool,
    /// Made for one request (a relay stream carrying that request's deadline): never pooled.
    pub single_use: bool,
}

impl Upstream {
    /// This idle connection for another request, unless the peer closed it meanwhile (a closed
    /// or misbehaving peer shows up as readable).
    pub fn reuse(mut self) -> Option<Upstream> {
        (!self.stream.is_stale()).then(|| {
            self.reused = true;
            self
        })
    }
}

/// Pool keys are endpoint addresses from the catalog, never from clients, so an unkeyed hash
/// is safe; SipHash over an address pair was ~3 % of the per-request instructions.
#[derive(Default)]
struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
    fn write_u8(&mut self, n: u8) {
        self.write_u64(n.into());
    }
    fn write_u16(&mut self, n: u16) {
        self.write_u64(n.into());
    }
    fn write_u32(&mut self, n: u32) {
        self.write_u64(n.into());
    }
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

type ByAddr<V> = HashMap<Dest, V, BuildHasherDefault<AddrHasher>>;

pub struct Pools {
    /// Idle connections in expiry order, each with the time it expires.
    h1: Mutex<ByAddr<Vec<(Upstream, Instant)>>>,
    h2: Mutex<ByAddr<H2>>,
    /// The HTTP/2 connection being made to each endpoint.
    h2_dials: Mutex<ByAddr<Arc<H2Dial>>>,
    /// The mesh, for endpoints on other hosts; `None` on a single-host node.
    mesh: Option<Arc<Transport>>,
}

/// One new HTTP/2 connection at a time per endpoint: requests that find none usable wait for the
/// one being made instead of each making its own. An endpoint that recycles its connection
/// (nginx's `keepalive_requests`) with 40 streams in flight refuses most of them, and each used
/// to dial anew: ~900 connections for 3,000 requests in a one-second test, ~90 now.
#[derive(Default)]
struct H2Dial {
    /// Held while connecting; what the last failed attempt said, and when it ended.
    failed: tokio::sync::Mutex<Option<(Instant, String)>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn handshake_error(addr: std::net::SocketAddr, e: hyper::Error) -> ProxyError {
    // The handshake sends no request bytes, so it fails like a connect does.
    ProxyError::Connect { addr, source: std::io::Error::other(e) }
}

impl Pools {
    pub fn new(mesh: Option<Arc<Transport>>) -> Arc<Pools> {
        Arc::new(Pools { h1: Mutex::default(), h2: Mutex::default(), h2_dials: Mutex::default(), mesh })
    }

    /// The mesh transport, when this node has one.
    pub fn mesh(&self) -> Option<&Arc<Transport>> {
        self.mesh.as_ref()
    }

    /// A new connection to a target, direct or over the mesh.
    pub async fn connect(&self, route: &ServiceRoute, t: &Target, timeout: Duration) -> Result<Conn, ProxyError> {
        dial(self.mesh.as_ref(), route, t, timeout, None).await
    }

    /// A new connection. Boxed: connecting (over the mesh, with a timeout) is a large future,
    /// and inline it would make every request's future that large, and every move of it (each
    /// `.await` of an enclosing one) a copy of that size.
    /// `deadline_ms`: see [`dial`]; a connection made with one serves that request only.
    pub fn fresh_h1<'a>(&'a self, route: &'a ServiceRoute, t: &'a Target, deadline_ms: Option<u64>) -> Pin<Box<dyn Future<Output = Result<Upstream, ProxyError>> + Send + 'a>> {
        Box::pin(async move {
            let stream = dial(self.mesh.as_ref(), route, t, route.connect_timeout, deadline_ms).await?;
            Ok(Upstream { stream, buf: BytesMut::with_capacity(16 * 1024), reused: false, single_use: deadline_ms.is_some() && t.via.is_some() })
        })
    }

    /// An idle connection to `addr` that is still open; `now`: a recent clock reading.
    pub fn idle_h1(&self, addr: Dest, now: Instant) -> Option<Upstream> {
        let mut idle = lock(&self.h1);
        let list = idle.get_mut(&addr)?;
        while let Some((up, expires)) = list.pop() {
            if now >= expires {
                // Everything below is older still.
                list.clear();
                break;
            }
            if let Some(up) = up.reuse() {
                return Some(up);
            }
        }
        None
    }

    /// Returns a connection whose exchange ended cleanly, ready for the next request until
    /// `expires` (its last use plus [`IDLE_LIFETIME`]).
    pub fn checkin_h1(&self, addr: Dest, mut up: Upstream, expires: Instant) {
        up.buf.clear();
        let now = expires - IDLE_LIFETIME;
        let mut idle = lock(&self.h1);
        let list = idle.entry(addr).or_default();
        // Checkout takes the newest first, so under steady load old sockets would sit at the
        // front forever: drop the expired ones here (the list is in expiry order).
        let expired = list.partition_point(|(_, e)| *e <= now);
        list.drain(..expired);
        if list.len() < MAX_IDLE_PER_ENDPOINT {
            // In expiry order, which checkout and the pruning above rely on: a connection a client
            // held until it left comes back with the expiry of its last use, older than others.
            let at = list.partition_point(|(_, e)| *e <= expires);
            list.insert(at, (up, expires));
        }
    }

    /// Closes idle sockets past their lifetime everywhere, including endpoints no longer in use.
    pub fn sweep(&self) {
        let now = Instant::now();
        let mut idle = lock(&self.h1);
        idle.retain(|_, list| {
            list.retain(|(_, expires)| *expires > now);
            !list.is_empty()
        });
        lock(&self.h2).retain(|_, c| !c.send.is_closed());
        lock(&self.h2_dials).retain(|_, d| Arc::strong_count(d) > 1);
    }

    /// Drops `conn`, the endpoint's shared HTTP/2 connection, from the pool (it is going away);
    /// streams still open on it finish, the next request gets a new one. A newer connection
    /// that has taken its place meanwhile stays.
    pub fn forget_h2(&self, t: &Target, conn: &H2) {
        let mut h2 = lock(&self.h2);
        let key = dest(t);
        if h2.get(&key).is_some_and(|c| Arc::ptr_eq(&c.going_away, &conn.going_away)) {
            h2.remove(&key);
        }
    }

    /// The endpoint's shared HTTP/2 connection, made on first use and remade once it closes.
    pub async fn h2(&self, route: &ServiceRoute, t: &Target, timeout: Duration) -> Result<H2, ProxyError> {
        let key = dest(t);
        if let Some(c) = self.shared_h2(&key) {
            return Ok(c);
        }
        let dial = lock(&self.h2_dials).entry(key).or_default().clone();
        let asked = Instant::now();
        let mut failed = dial.failed.lock().await;
        // Made while this request waited, or failed while it waited: either answers it too.
        if let Some(c) = self.shared_h2(&key) {
            return Ok(c);
        }
        if let Some((_, why)) = failed.as_ref().filter(|(at, _)| *at >= asked) {
            return Err(ProxyError::Connect { addr: t.address, source: std::io::Error::other(format!("{why} (the attempt this request waited for)")) });
        }
        let made = self.new_h2(route, t, timeout, None).await;
        match &made {
            Ok(c) => {
                lock(&self.h2).insert(key, c.clone());
            }
            Err(e) => *failed = Some((Instant::now(), e.to_string())),
        }
        made
    }

    /// A connection of its own for one request that must not run late (see `dial`), to an
    /// endpoint on another host: its relay stream carries the request's deadline. Never shared.
    pub async fn h2_single(&self, route: &ServiceRoute, t: &Target, timeout: Duration, deadline_ms: u64) -> Result<H2, ProxyError> {
        self.new_h2(route, t, timeout, Some(deadline_ms)).await
    }

    /// The endpoint's connection, unless it closed or the endpoint is sending it away.
    fn shared_h2(&self, key: &Dest) -> Option<H2> {
        lock(&self.h2).get(key).filter(|c| !c.send.is_closed() && !c.going_away.load(Relaxed)).cloned()
    }

    async fn new_h2(&self, route: &ServiceRoute, t: &Target, timeout: Duration, deadline_ms: Option<u64>) -> Result<H2, ProxyError> {
        let addr = t.address;
        let io = Sniffed::new(dial(self.mesh.as_ref(), route, t, timeout, deadline_ms).await?);
        let (going_away, gone) = (io.going_away.clone(), io.gone());
        let io = TokioIo::new(io);
        let (send, conn) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .keep_alive_interval(Duration::from_secs(30))
            .handshake(io)
            .await
            .map_err(|e| handshake_error(addr, e))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%addr, error = %e, "upstream http/2 connection ended");
            }
        });
        Ok(H2 { send, going_away, gone })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An open connection, and its server side (kept, so the connection stays open).
    async fn idle_conn(l: &tokio::net::TcpListener) -> (Upstream, tokio::net::TcpStream) {
        let stream = crate::proxy::sock::Sock::connect(l.local_addr().unwrap()).await.unwrap();
        let (server, _) = l.accept().await.unwrap();
        (Upstream { stream: Conn::Tcp(stream), buf: BytesMut::new(), reused: false, single_use: false }, server)
    }

    /// A connection a client held until it left comes back with the expiry of its last use:
    /// it must not sit above younger ones, or checkout would meet it first, find it expired and
    /// drop the younger ones below it too.
    #[tokio::test]
    async fn checkin_keeps_expiry_order() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: Dest = (l.local_addr().unwrap(), None);
        let pools = Pools::new(None);
        let now = Instant::now();
        let ((young, _a), (old, _b)) = (idle_conn(&l).await, idle_conn(&l).await);
        pools.checkin_h1(addr, young, now + Duration::from_secs(4));
        pools.checkin_h1(addr, old, now + Duration::from_secs(1));
        let later = now + Duration::from_secs(2);
        assert!(pools.idle_h1(addr, later).is_some_and(|up| up.reused), "the younger connection was dropped with the expired one");
        assert!(pools.idle_h1(addr, later).is_none());
    }
}
