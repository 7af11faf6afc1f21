//! Upstream connections per endpoint address: idle HTTP/1.1 connections for reuse, one shared
//! HTTP/2 connection per endpoint. Connecting is our step (not a client library's), so a connect
//! failure is known to have sent nothing and the request can go to another endpoint untouched.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::error::ProxyError;

pub type H1 = http1::SendRequest<Incoming>;
pub type H2 = http2::SendRequest<Incoming>;

/// Idle connections kept per endpoint; beyond this they are closed when returned.
const MAX_IDLE_PER_ENDPOINT: usize = 256;
/// Idle connections older than this are dropped on checkout, well before typical server
/// keep-alive timeouts (nginx 75 s, Node 5 s are the short ones — hence small).
const IDLE_LIFETIME: Duration = Duration::from_secs(4);

#[derive(Default)]
pub struct Pools {
    h1: Mutex<HashMap<SocketAddr, Vec<(H1, Instant)>>>,
    h2: Mutex<HashMap<SocketAddr, H2>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub async fn connect_tcp(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, ProxyError> {
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Err(_) => Err(ProxyError::ConnectTimeout { addr, after: timeout }),
        Ok(Err(source)) => Err(ProxyError::Connect { addr, source }),
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Ok(s)
        }
    }
}

fn handshake_error(addr: SocketAddr, e: hyper::Error) -> ProxyError {
    // The handshake sends no request bytes, so it fails like a connect does.
    ProxyError::Connect { addr, source: std::io::Error::other(e) }
}

impl Pools {
    pub fn new() -> Arc<Pools> {
        Arc::new(Pools::default())
    }

    /// A ready idle connection or a new one. Connections that are not ready yet (hyper flags
    /// readiness a moment after a response ends) stay parked for the next caller.
    pub async fn h1(&self, addr: SocketAddr, timeout: Duration) -> Result<H1, ProxyError> {
        {
            let mut idle = lock(&self.h1);
            if let Some(list) = idle.get_mut(&addr) {
                let now = Instant::now();
                list.retain(|(c, since)| !c.is_closed() && now.duration_since(*since) < IDLE_LIFETIME);
                if let Some(i) = list.iter().rposition(|(c, _)| c.is_ready()) {
                    return Ok(list.swap_remove(i).0);
                }
            }
        }
        let io = TokioIo::new(connect_tcp(addr, timeout).await?);
        let (send, conn) = http1::Builder::new().handshake(io).await.map_err(|e| handshake_error(addr, e))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%addr, error = %e, "upstream http/1.1 connection ended");
            }
        });
        Ok(send)
    }

    /// Returns a connection whose response has been read completely.
    pub fn checkin_h1(&self, addr: SocketAddr, conn: H1) {
        if !conn.is_closed() {
            self.park(addr, conn);
        }
    }

    fn park(&self, addr: SocketAddr, conn: H1) {
        let mut idle = lock(&self.h1);
        let list = idle.entry(addr).or_default();
        if list.len() < MAX_IDLE_PER_ENDPOINT {
            list.push((conn, Instant::now()));
        }
    }

    /// The endpoint's shared HTTP/2 connection, made on first use and remade once it closes.
    pub async fn h2(&self, addr: SocketAddr, timeout: Duration) -> Result<H2, ProxyError> {
        if let Some(c) = lock(&self.h2).get(&addr).filter(|c| !c.is_closed()) {
            return Ok(c.clone());
        }
        let io = TokioIo::new(connect_tcp(addr, timeout).await?);
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
        lock(&self.h2).insert(addr, send.clone());
        Ok(send)
    }
}
