//! How the admin API takes connections. One port serves both plain HTTP and HTTPS: the first byte
//! of a connection tells them apart (a TLS ClientHello starts with 0x16, an HTTP method with a
//! letter), so the loopback CLI, systemd checks and scripts keep using plain HTTP while callers
//! from other hosts can authenticate with a certificate of the cluster CA. Every stage has a
//! deadline, so a slow or silent client holds a connection slot for seconds, not forever, and the
//! number of connections is capped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower_service::Service;

use crate::transport::{TlsFiles, tls};

/// From accept to a complete TLS handshake (or the first byte of plain HTTP).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// From the first byte of a request head to its end (hyper's header read timeout).
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections open at once; more wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 256;
/// How often a rotated certificate is looked for, as the mesh transport does.
const RELOAD_EVERY: Duration = Duration::from_secs(5);

/// The name a caller's certificate proves (a node of the cluster CA), when it showed one.
#[derive(Clone, Debug)]
pub struct CallerCert(pub String);

/// The admin API's HTTPS configuration, re-read when the `[tls]` files change.
pub struct AdminTls {
    files: TlsFiles,
    config: ArcSwap<rustls::ServerConfig>,
}

impl AdminTls {
    pub fn load(files: TlsFiles) -> Result<Arc<AdminTls>, tls::TlsError> {
        let config = ArcSwap::from_pointee(tls::admin_server(&files)?);
        Ok(Arc::new(AdminTls { files, config }))
    }

    /// Polls the files' modification times off the runtime threads and swaps in a new config
    /// when they change; a bad new file is logged and the old config kept.
    async fn watch(self: Arc<Self>, shutdown: CancellationToken) {
        let stamp = |f: &TlsFiles| -> Vec<Option<SystemTime>> { [&f.ca, &f.cert, &f.key].iter().map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok()).collect() };
        let files = self.files.clone();
        let mut last = tokio::task::spawn_blocking(move || stamp(&files)).await.unwrap_or_default();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(RELOAD_EVERY) => {}
            }
            let files = self.files.clone();
            let Ok(now) = tokio::task::spawn_blocking(move || stamp(&files)).await else { continue };
            if now == last {
                continue;
            }
            last = now;
            let files = self.files.clone();
            let Ok(fresh) = tokio::task::spawn_blocking(move || tls::admin_server(&files)).await else { continue };
            match fresh {
                Ok(c) => {
                    self.config.store(Arc::new(c));
                    tracing::info!("admin API: reloaded TLS certificates");
                }
                Err(e) => tracing::error!(error = %e, "admin API: cannot reload TLS certificates; keeping the old ones"),
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum ConnError {
    #[error("no request within {0:?}")]
    Silent(Duration),
    #[error("TLS handshake: {0}")]
    Handshake(std::io::Error),
    #[error("a TLS client, but this node has no [tls] files to answer it with")]
    NoTls,
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
}

/// Serves `app` on `listener` until `shutdown`, then lets open requests finish (up to 5 s).
pub async fn serve(listener: TcpListener, app: Router, tls: Option<Arc<AdminTls>>, shutdown: CancellationToken) -> std::io::Result<()> {
    if let Some(t) = &tls {
        tokio::spawn(t.clone().watch(shutdown.clone()));
    }
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let graceful = GracefulShutdown::new();
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else { break };
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                // Out of file descriptors and the like: wait instead of spinning.
                Err(e) => {
                    tracing::warn!(error = %e, "admin API: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let (app, tls, watcher) = (app.clone(), tls.clone(), graceful.watcher());
        tokio::spawn(async move {
            if let Err(e) = connection(stream, peer, app, tls, watcher).await {
                tracing::debug!(%peer, error = %e, "admin API connection ended");
            }
            drop(slot);
        });
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), graceful.shutdown()).await;
    Ok(())
}

async fn connection(stream: TcpStream, peer: SocketAddr, app: Router, tls: Option<Arc<AdminTls>>, watcher: Watcher) -> Result<(), ConnError> {
    let _ = stream.set_nodelay(true);
    let mut first = [0u8; 1];
    let n = tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.peek(&mut first)).await.map_err(|_| ConnError::Silent(HANDSHAKE_TIMEOUT))??;
    if n == 0 || first[0] != 0x16 {
        return http(stream, peer, None, app, watcher).await;
    }
    let tls = tls.ok_or(ConnError::NoTls)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.config.load_full());
    // A certificate that does not chain to the cluster CA fails here, before any request.
    let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::info!(%peer, error = %e, "admin API: TLS handshake refused");
            return Err(ConnError::Handshake(e));
        }
        Err(_) => return Err(ConnError::Silent(HANDSHAKE_TIMEOUT)),
    };
    let caller = stream.get_ref().1.peer_certificates().and_then(|c| c.first()).and_then(tls::node_name).map(CallerCert);
    http(stream, peer, caller, app, watcher).await
}

async fn http<I>(io: I, peer: SocketAddr, caller: Option<CallerCert>, app: Router, watcher: Watcher) -> Result<(), ConnError>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        if let Some(c) = &caller {
            req.extensions_mut().insert(c.clone());
        }
        app.clone().call(req)
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .serve_connection(TokioIo::new(io), service);
    watcher.watch(conn).await?;
    Ok(())
}
