//! An upstream connection: a TCP socket to an endpoint on this host, or a QUIC stream to the weft
//! of the endpoint's host (`transport::relay`), which splices it to that endpoint. Everything above
//! (HTTP/1.1, HTTP/2, gRPC, TCP) runs unchanged over either.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use super::sock::Sock;

use super::error::ProxyError;
use super::table::ServiceRoute;
use crate::policy::Target;
use crate::transport::relay::{self, RelayError, RelayStream};
use crate::transport::{RelayRequest, Transport};

pub enum Conn {
    Tcp(Sock),
    Relay(Box<RelayStream>),
}

/// Where a pooled connection goes: the endpoint, and the node that relays to it if remote (two
/// hosts may both have an endpoint at 127.0.0.1:8080).
pub type Dest = (SocketAddr, Option<SocketAddr>);

pub fn dest(t: &Target) -> Dest {
    (t.address, t.via)
}

pub async fn connect_tcp(addr: SocketAddr, timeout: Duration) -> Result<Sock, ProxyError> {
    match tokio::time::timeout(timeout, Sock::connect(addr)).await {
        Err(_) => Err(ProxyError::ConnectTimeout { addr, after: timeout }),
        Ok(Err(source)) => Err(ProxyError::Connect { addr, source }),
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Ok(s)
        }
    }
}

/// Connects to a target: directly when it is on this host, over the mesh when not. Either way a
/// failure here means nothing of the request was sent, so it is safe to try another endpoint.
/// `deadline_ms`: when the caller gives up on the one request the connection is for (Unix ms),
/// for the far side to drop it after (`RelayRequest::deadline_ms`); ignored for a local endpoint.
pub async fn dial(mesh: Option<&Arc<Transport>>, route: &ServiceRoute, t: &Target, timeout: Duration, deadline_ms: Option<u64>) -> Result<Conn, ProxyError> {
    let (Some(via), Some(mesh)) = (t.via, mesh) else {
        return connect_tcp(t.address, timeout).await.map(Conn::Tcp);
    };
    let req = RelayRequest { namespace: route.namespace.clone(), service: route.service.clone(), endpoint: t.id.clone(), deadline_ms };
    let addr = t.address;
    match tokio::time::timeout(timeout, mesh.open_relay(via, &t.node, &req)).await {
        Err(_) => Err(ProxyError::ConnectTimeout { addr, after: timeout }),
        Ok(Ok(s)) => Ok(Conn::Relay(Box::new(s))),
        Ok(Err(RelayError::Refused(relay::Status::Denied))) => {
            Err(ProxyError::Denied { service: route.label(), caller: format!("node {}", mesh.name()), by: format!("node {}", t.node) })
        }
        Ok(Err(e)) => {
            let message = match e {
                RelayError::Refused(status) => format!("via node {} ({via}): {status}", t.node),
                other => format!("via node {} ({via}): {other}", t.node),
            };
            Err(ProxyError::Connect { addr, source: io::Error::other(message) })
        }
    }
}

impl Conn {
    /// True when the peer closed or sent something unasked while the connection sat idle. Never
    /// blocks: tokio clears readiness after a short read, so a quiet socket costs no syscall.
    pub fn is_stale(&mut self) -> bool {
        match self {
            Conn::Tcp(s) => {
                let mut probe = [0u8; 1];
                !matches!(s.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
            Conn::Relay(s) => s.is_stale(),
        }
    }

    /// Borrowed read and write halves, so a request body can flow up while the response head is
    /// read.
    pub fn split(&mut self) -> (ReadHalf<'_>, WriteHalf<'_>) {
        match self {
            Conn::Tcp(s) => (ReadHalf::Tcp(&*s), WriteHalf::Tcp(&*s)),
            Conn::Relay(s) => (ReadHalf::Relay(&mut s.recv), WriteHalf::Relay(&mut s.send)),
        }
    }
}

pub enum ReadHalf<'a> {
    Tcp(&'a Sock),
    Relay(&'a mut quinn::RecvStream),
}

pub enum WriteHalf<'a> {
    Tcp(&'a Sock),
    Relay(&'a mut quinn::SendStream),
}

macro_rules! delegate_read {
    ($t:ty, $($v:ident),+) => {
        impl AsyncRead for $t {
            fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
                match self.get_mut() { $( Self::$v(s) => Pin::new(s).poll_read(cx, buf), )+ }
            }
        }
    };
}

macro_rules! delegate_write {
    ($t:ty, $($v:ident),+) => {
        impl AsyncWrite for $t {
            fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
                match self.get_mut() { $( Self::$v(s) => AsyncWrite::poll_write(Pin::new(s), cx, buf), )+ }
            }
            fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                match self.get_mut() { $( Self::$v(s) => AsyncWrite::poll_flush(Pin::new(s), cx), )+ }
            }
            fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                match self.get_mut() { $( Self::$v(s) => AsyncWrite::poll_shutdown(Pin::new(s), cx), )+ }
            }
            fn poll_write_vectored(self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
                match self.get_mut() { $( Self::$v(s) => AsyncWrite::poll_write_vectored(Pin::new(s), cx, bufs), )+ }
            }
            fn is_write_vectored(&self) -> bool {
                match self { $( Self::$v(s) => s.is_write_vectored(), )+ }
            }
        }
    };
}

delegate_read!(Conn, Tcp, Relay);
delegate_write!(Conn, Tcp, Relay);
delegate_read!(ReadHalf<'_>, Tcp, Relay);
delegate_write!(WriteHalf<'_>, Tcp, Relay);
