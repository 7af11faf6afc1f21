//! The cross-host data path. A caller whose chosen endpoint lives on another host opens a QUIC bi
//! stream to that host's weft, names the endpoint in a short preface, and gets one status byte
//! back once the far side has connected to it; from then on the stream is that TCP connection.
//! So a stream stands in for a socket: the caller runs its HTTP/1.1, HTTP/2, gRPC or TCP code
//! over it unchanged (per-request retries and endpoint choice stay with the caller, and every
//! header, trailer and status is the endpoint's own), and the far side only splices bytes —
//! reading along HTTP/1.1 to count its responses (`proxy::h1::tap`), never changing them.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Poll};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

use super::TransportError;
use crate::proxy::h1::tap::{Tap, TapLog};
use crate::telemetry::EndpointStats;

/// Bi-stream kind byte: a data-path preface follows.
const KIND_RELAY: u8 = 2;
const MAX_PREFACE: usize = 1024;
/// A caller that opens a stream and says nothing is not allowed to hold it.
const PREFACE_TIMEOUT: Duration = Duration::from_secs(5);

/// Which endpoint a data-path stream is for, and until when its caller waits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayRequest {
    pub namespace: String,
    pub service: String,
    pub endpoint: String,
    /// When the caller gives up on the one request this stream carries (Unix ms), for a request
    /// that must not run late: a non-idempotent one. The far side forwards no byte of it after
    /// this, so a request held up in transit (its node frozen, a link down) is not executed
    /// after its caller answered an error and perhaps retried it. Wall clocks, so the hosts'
    /// clocks must agree (NTP); a skew moves the cut-off by as much. Sent after the postcard
    /// body, where a node of an earlier version ignores it.
    #[serde(skip)]
    pub deadline_ms: Option<u64>,
}

impl RelayRequest {
    pub fn encode(&self) -> Result<Vec<u8>, postcard::Error> {
        let mut body = postcard::to_stdvec(self)?;
        if let Some(d) = self.deadline_ms {
            body.extend_from_slice(&d.to_be_bytes());
        }
        Ok(body)
    }

    pub fn decode(body: &[u8]) -> Option<RelayRequest> {
        let (mut req, rest) = postcard::take_from_bytes::<RelayRequest>(body).ok()?;
        req.deadline_ms = match rest.len() {
            0 => None,
            8 => Some(u64::from_be_bytes(rest.try_into().ok()?)),
            _ => return None,
        };
        Some(req)
    }

    fn late(&self) -> bool {
        self.deadline_ms.is_some_and(|d| unix_ms() > d)
    }
}

pub fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The far side's answer, one byte on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Status {
    Ok = 0,
    /// No such endpoint on this node (gone, or never ours).
    NotHere = 1,
    ConnectFailed = 2,
    ConnectTimeout = 3,
    BadPreface = 4,
    /// The request's deadline had passed when its stream arrived: not forwarded.
    Late = 5,
    /// The service does not admit the caller (`crate::authz`).
    Denied = 6,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Ok => "connected",
            Status::NotHere => "no such endpoint on that node",
            Status::ConnectFailed => "it could not connect to the endpoint",
            Status::ConnectTimeout => "its connect to the endpoint timed out",
            Status::BadPreface => "it could not read our request",
            Status::Late => "the request's deadline had passed when it arrived",
            Status::Denied => "the service does not admit this caller",
        })
    }
}

impl Status {
    fn from_byte(b: u8) -> Option<Status> {
        [Status::Ok, Status::NotHere, Status::ConnectFailed, Status::ConnectTimeout, Status::BadPreface, Status::Late, Status::Denied].into_iter().find(|s| *s as u8 == b)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(transparent)]
    Transport(TransportError),
    #[error("stream to the endpoint's node failed: {0}")]
    Stream(String),
    #[error("the endpoint's node refused: {0}")]
    Refused(Status),
}

/// One of the node's own endpoints, as the relay reaches it.
pub struct LocalEndpoint {
    pub address: SocketAddr,
    pub connect_timeout: Duration,
    /// The figures recorded target-side.
    pub stats: Arc<EndpointStats>,
    /// Its service speaks HTTP/1.1: the relay reads along to count responses (`proxy::h1::tap`).
    pub http1: bool,
    /// The service's access log, when it is on (HTTP/1.1 only).
    pub log: Option<TapLog>,
    /// Whether the service admits the caller (`crate::authz::permits`).
    pub permits: bool,
}

/// The node's own endpoints, as the relay may reach them.
pub trait LocalEndpoints: Send + Sync {
    /// `caller`: the node at the other end, as its certificate names it.
    fn resolve(&self, req: &RelayRequest, caller: &crate::authz::Identity) -> Option<LocalEndpoint>;
}

/// One data-path stream, readable and writable like a socket; shutdown finishes the send half.
pub struct RelayStream {
    pub send: quinn::SendStream,
    pub recv: quinn::RecvStream,
}

impl AsyncRead for RelayStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().recv).poll_read(cx, buf)
    }
}

impl AsyncWrite for RelayStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        AsyncWrite::poll_write(Pin::new(&mut self.get_mut().send), cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        AsyncWrite::poll_flush(Pin::new(&mut self.get_mut().send), cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        AsyncWrite::poll_shutdown(Pin::new(&mut self.get_mut().send), cx)
    }
}

impl RelayStream {
    /// True when the far side already closed or sent something unasked: not safe to reuse for a
    /// new request. Never waits.
    pub fn is_stale(&mut self) -> bool {
        let mut probe = [0u8; 1];
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut buf = ReadBuf::new(&mut probe);
        !matches!(Pin::new(&mut self.recv).poll_read(&mut cx, &mut buf), Poll::Pending)
    }
}

/// The endpoint's side of a relayed connection. Bytes coming back from the endpoint mean it is
/// answering real traffic, which its health checks take into account (`health`): the callers
/// are on other nodes, so this is the only place the owning node sees that traffic succeed.
struct Answering {
    tcp: tokio::net::TcpStream,
    stats: Arc<EndpointStats>,
    tap: Option<Tap>,
    /// Set at the endpoint's first byte back: the request was delivered in time, so the caller's
    /// deadline no longer applies (an HTTP/2 caller sends window updates while it reads a long
    /// answer).
    answered: Arc<std::sync::atomic::AtomicBool>,
}

impl AsyncRead for Answering {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.tcp).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.answered.store(true, Relaxed);
            this.stats.liveness.alive(crate::telemetry::now_us());
            this.stats.relayed_bytes_out.fetch_add((buf.filled().len() - before) as u64, Relaxed);
            if let Some(tap) = this.tap.as_mut() {
                tap.from_endpoint(&buf.filled()[before..]);
            }
        }
        r
    }
}

impl AsyncWrite for Answering {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.tcp).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            this.stats.relayed_bytes_in.fetch_add(n as u64, Relaxed);
            if let Some(tap) = this.tap.as_mut() {
                tap.to_endpoint(&buf[..n]);
            }
        }
        r
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

/// The caller's side of a relayed connection, as the far side reads it: bytes that arrive after
/// the caller's deadline, before the endpoint answered anything, end the connection instead of
/// reaching the endpoint (its connection is dropped, so a request cut short is not executed).
struct Calling {
    stream: RelayStream,
    deadline_ms: Option<u64>,
    stats: Arc<EndpointStats>,
    answered: Arc<std::sync::atomic::AtomicBool>,
}

impl AsyncRead for Calling {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.stream).poll_read(cx, buf);
        if let (Poll::Ready(Ok(())), Some(d)) = (&r, this.deadline_ms)
            && buf.filled().len() > before
            && !this.answered.load(Relaxed)
            && unix_ms() > d
        {
            buf.set_filled(before);
            this.stats.relay_late.fetch_add(1, Relaxed);
            tracing::info!("cut a relayed request whose bytes arrived after its caller's deadline");
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "the caller's deadline passed")));
        }
        r
    }
}

impl AsyncWrite for Calling {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// Caller side: opens the stream, sends the preface, waits for the far side's connect.
pub async fn open(conn: &quinn::Connection, req: &RelayRequest) -> Result<RelayStream, RelayError> {
    let err = |e: &dyn std::fmt::Display| RelayError::Stream(e.to_string());
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| err(&e))?;
    let body = req.encode().map_err(|e| err(&e))?;
    let mut preface = Vec::with_capacity(3 + body.len());
    preface.push(KIND_RELAY);
    preface.extend_from_slice(&(body.len() as u16).to_be_bytes());
    preface.extend_from_slice(&body);
    send.write_all(&preface).await.map_err(|e| err(&e))?;
    let mut status = [0u8; 1];
    recv.read_exact(&mut status).await.map_err(|e| err(&e))?;
    match Status::from_byte(status[0]) {
        Some(Status::Ok) => Ok(RelayStream { send, recv }),
        Some(s) => Err(RelayError::Refused(s)),
        None => Err(RelayError::Stream(format!("unknown status byte {}", status[0]))),
    }
}

/// The length of the preface body that follows a stream's first three bytes (kind, then a
/// big-endian u16), or `None` for a stream that is no relay preface or one too long to take.
/// Apart from reading, so the fuzz targets run the same check (`crate::fuzzing`).
pub(crate) fn preface_len(head: [u8; 3]) -> Option<usize> {
    let len = u16::from_be_bytes([head[1], head[2]]) as usize;
    (head[0] == KIND_RELAY && len <= MAX_PREFACE).then_some(len)
}

async fn read_preface(recv: &mut quinn::RecvStream) -> Option<RelayRequest> {
    let mut head = [0u8; 3];
    recv.read_exact(&mut head).await.ok()?;
    let len = preface_len(head)?;
    let mut body = vec![0u8; len];
    recv.read_exact(&mut body).await.ok()?;
    RelayRequest::decode(&body)
}

/// Far side: connects to the named local endpoint and splices. Only this node's own endpoints
/// can be named, so an authenticated peer cannot use a node as an open relay.
pub async fn serve(mut send: quinn::SendStream, mut recv: quinn::RecvStream, local: Arc<dyn LocalEndpoints>, caller: &crate::authz::Identity) {
    let peer = caller.node.as_str();
    let req = match tokio::time::timeout(PREFACE_TIMEOUT, read_preface(&mut recv)).await {
        Ok(Some(r)) => r,
        _ => {
            tracing::warn!(%peer, "dropped a data-path stream with a bad preface");
            let _ = send.write_all(&[Status::BadPreface as u8]).await;
            let _ = send.finish();
            return;
        }
    };
    let Some(LocalEndpoint { address: addr, connect_timeout: timeout, stats, http1, log, permits }) = local.resolve(&req, caller) else {
        let _ = send.write_all(&[Status::NotHere as u8]).await;
        let _ = send.finish();
        return;
    };
    if !permits {
        stats.relay_denied.fetch_add(1, Relaxed);
        tracing::info!(%caller, service = %format_args!("{}/{}", req.namespace, req.service), "refused a relayed connection: the service does not admit the caller");
        let _ = send.write_all(&[Status::Denied as u8]).await;
        let _ = send.finish();
        return;
    }
    if req.late() {
        stats.relay_late.fetch_add(1, Relaxed);
        tracing::info!(%peer, %addr, "dropped a relayed request that arrived after its caller's deadline");
        let _ = send.write_all(&[Status::Late as u8]).await;
        let _ = send.finish();
        return;
    }
    let tcp = match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            stats.failures.fetch_add(1, Relaxed);
            tracing::debug!(%peer, %addr, error = %e, "relay connect failed");
            let _ = send.write_all(&[Status::ConnectFailed as u8]).await;
            let _ = send.finish();
            return;
        }
        Err(_) => {
            stats.failures.fetch_add(1, Relaxed);
            let _ = send.write_all(&[Status::ConnectTimeout as u8]).await;
            let _ = send.finish();
            return;
        }
    };
    let _ = tcp.set_nodelay(true);
    stats.connections.fetch_add(1, Relaxed);
    stats.liveness.alive(crate::telemetry::now_us());
    stats.relayed_streams.fetch_add(1, Relaxed);
    if send.write_all(&[Status::Ok as u8]).await.is_err() {
        return;
    }
    let answered = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut stream = Calling { stream: RelayStream { send, recv }, deadline_ms: req.deadline_ms, stats: stats.clone(), answered: answered.clone() };
    let tap = http1.then(|| Tap::new(stats.clone(), log));
    let mut tcp = Answering { tcp, stats, tap, answered };
    if let Err(e) = tokio::io::copy_bidirectional_with_sizes(&mut stream, &mut tcp, 32 * 1024, 32 * 1024).await {
        tracing::debug!(%peer, %addr, error = %e, "relayed connection ended with an error");
    }
    let _ = stream.stream.shutdown().await;
}
