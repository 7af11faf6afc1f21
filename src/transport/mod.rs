//! Everything between nodes goes over one QUIC endpoint (one UDP port, mutual TLS against the
//! cluster CA): SWIM as datagrams, gossip messages on uni streams, and the cross-host data path on
//! bi streams (`relay`). Connections are cached per peer address and remade when lost.

pub mod pki;
pub mod relay;
pub mod tls;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use bytes::Bytes;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

pub use relay::{LocalEndpoint, LocalEndpoints, RelayRequest, RelayStream};
pub use tls::{TlsError, TlsFiles};

/// One gossip message carried on a uni stream may be large (a full anti-entropy answer) but not
/// unbounded: a peer cannot make us buffer more than this.
const MAX_MESSAGE: usize = 64 << 20;
/// Uni-stream kind byte: a gossip message follows.
const KIND_GOSSIP: u8 = 1;

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot bind the gossip port {addr} (UDP): {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("cannot reach node at {addr}: {message}")]
    Connect { addr: SocketAddr, message: String },
    #[error("connection to {addr} lost: {message}")]
    Lost { addr: SocketAddr, message: String },
}

/// What arrives from authenticated peers for the gossip task. `peer` is the node name the
/// peer's certificate proves.
#[derive(Debug)]
pub enum Incoming {
    Datagram { peer: String, from: SocketAddr, bytes: Bytes },
    /// `grants`: the namespaces the peer's certificate names (`crate::gossip::Grants`).
    Message { peer: String, from: SocketAddr, bytes: Bytes, grants: crate::gossip::Grants },
}

/// One peer's QUIC path, as [`Transport::path`] reads it.
pub struct PathFigures {
    pub rtt: Duration,
    pub lost_packets: u64,
    pub sent_packets: u64,
}

/// Counters for the admin API: what was refused or thrown away, and why.
#[derive(Debug, Default)]
pub struct TransportStats {
    /// Incoming handshakes refused by TLS: a certificate not of the cluster CA, expired, or a
    /// protocol mismatch. The counter that should flag an attack, so nothing else goes here.
    pub handshakes_rejected: AtomicU64,
    /// Incoming handshakes that never completed (the peer went quiet: frozen, cut off, gone).
    pub handshakes_timed_out: AtomicU64,
    /// Incoming handshakes the peer or this node abandoned for other reasons (reset, closed,
    /// shutting down): what a partition's heal and a restart produce.
    pub handshakes_aborted: AtomicU64,
    /// Our dials whose TLS handshake failed (the peer's certificate, or ours to the peer): the
    /// client side of a failed mesh mTLS negotiation. Timeouts and unreachable peers are not.
    pub handshakes_failed: AtomicU64,
    pub bad_streams: AtomicU64,
    pub dropped_datagrams: AtomicU64,
    pub relayed_streams: AtomicU64,
    /// Relayed streams open right now; a draining node waits for them to finish.
    pub active_relays: std::sync::atomic::AtomicI64,
}

/// What we hold for one peer address: its connection, the dial in flight, or when the last dial
/// failed (senders to a dead peer then fail fast for [`RETRY_AFTER`] instead of each starting a
/// handshake).
#[derive(Default)]
struct Peer {
    conn: Option<quinn::Connection>,
    /// The node name `conn`'s certificate proves.
    name: String,
    /// Present while a dial runs. Waiters subscribe to it; they wake when the dial ends (the
    /// sender is dropped) or when the peer's own connection to us arrives first ([`Transport::adopt`]).
    dialing: Option<watch::Sender<()>>,
    failed: Option<(std::time::Instant, String)>,
}

impl Peer {
    fn live(&self) -> Option<&quinn::Connection> {
        self.conn.as_ref().filter(|c| c.close_reason().is_none())
    }
}

const RETRY_AFTER: Duration = Duration::from_secs(1);

pub struct Transport {
    endpoint: quinn::Endpoint,
    client: ArcSwap<quinn::ClientConfig>,
    files: TlsFiles,
    name: String,
    /// This node as its certificate names it; replaced when the certificate is reloaded.
    identity: ArcSwap<crate::authz::Identity>,
    conns: Mutex<HashMap<SocketAddr, Peer>>,
    incoming: mpsc::Sender<Incoming>,
    local: Arc<dyn LocalEndpoints>,
    pub stats: TransportStats,
    shutdown: CancellationToken,
    /// notAfter of this node's certificate as last loaded (Unix seconds; 0: unknown).
    cert_expires: AtomicU64,
    /// The runtime the transport was bound on (the data plane's), where all its tasks run —
    /// relays, stream readers, dials — whichever runtime's task sends (the gossip task may run
    /// on the control plane's: `node::control`).
    runtime: tokio::runtime::Handle,
}

/// Random 8-byte connection ids that any process of this node accepts as plausibly its own.
/// quinn's default generator tags ids with a per-process key, so a restarted node would silently
/// drop packets for its previous process's connections instead of answering them with the
/// stateless reset (keyed by the node's private key, see `tls::Configs::reset_secret`) that
/// makes the peer drop that connection and dial again.
struct RandomCids;

impl quinn::ConnectionIdGenerator for RandomCids {
    fn generate_cid(&mut self) -> quinn::ConnectionId {
        quinn::ConnectionId::new(&rand::random::<[u8; 8]>())
    }
    fn cid_len(&self) -> usize {
        8
    }
    fn cid_lifetime(&self) -> Option<Duration> {
        None
    }
}

fn transport_config() -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    // Keep-alive well inside the idle timeout, so a quiet but healthy peer never looks dead and
    // a dead one is noticed in seconds (SWIM decides membership; this only frees resources).
    t.keep_alive_interval(Some(Duration::from_secs(2)));
    t.max_idle_timeout(Some(Duration::from_secs(10).try_into().expect("small duration")));
    // Each bi stream is one upstream connection of the data path; uni streams are short-lived
    // gossip messages.
    t.max_concurrent_bidi_streams(1024u32.into());
    t.max_concurrent_uni_streams(256u32.into());
    t.datagram_receive_buffer_size(Some(4 << 20));
    Arc::new(t)
}

/// The QUIC side of [`tls::Configs`].
struct Quic {
    server: quinn::ServerConfig,
    client: quinn::ClientConfig,
    name: String,
    identity: crate::authz::Identity,
    reset_secret: [u8; 32],
    expires: Option<u64>,
}

fn quic_configs(files: &TlsFiles) -> Result<Quic, TlsError> {
    let c = tls::load(files)?;
    let bad = |e: quinn::crypto::rustls::NoInitialCipherSuite| TlsError::Verifier(e.to_string());
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(QuicServerConfig::try_from(c.server).map_err(bad)?));
    server.transport_config(transport_config());
    let mut client = quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(c.client).map_err(bad)?));
    client.transport_config(transport_config());
    Ok(Quic { server, client, name: c.name, identity: c.identity, reset_secret: c.reset_secret, expires: c.expires })
}

/// Days before its certificate expires that a node starts warning (log, `weft status`).
pub const EXPIRY_WARNING_DAYS: u64 = 30;

/// Where a certificate that expires at `at` (Unix seconds) stands now: whole days left
/// (negative once expired) and, within [`EXPIRY_WARNING_DAYS`], what to tell the operator. The
/// one place the log, `weft status` and the API take it from.
pub fn cert_expiry(at: u64) -> (i64, Option<String>) {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days_left = (at as i64 - now as i64).div_euclid(86_400);
    let warning = (at < now + EXPIRY_WARNING_DAYS * 86_400).then(|| {
        if at <= now {
            "expired: issue a new certificate (`weft ca issue`)".to_string()
        } else {
            format!("expires in {days_left} days: issue a new certificate (`weft ca issue`); the node reloads it by itself")
        }
    });
    (days_left, warning)
}

/// Logs the warning of [`cert_expiry`], if any.
fn warn_expiry(files: &TlsFiles, expires: Option<u64>) {
    if let Some((_, Some(w))) = expires.map(cert_expiry) {
        tracing::warn!(cert = %files.cert.display(), "this node's certificate {w}");
    }
}

impl Transport {
    /// Binds the UDP port and starts accepting. The certificate's node name must be this node's
    /// name: the cluster knows nodes by the names their certificates prove.
    pub fn bind(
        listen: SocketAddr,
        files: TlsFiles,
        node_name: &str,
        local: Arc<dyn LocalEndpoints>,
        shutdown: CancellationToken,
    ) -> Result<(Arc<Transport>, mpsc::Receiver<Incoming>), TransportError> {
        let Quic { server, client, name, identity, reset_secret, expires } = quic_configs(&files)?;
        tls::expect_node(&files, &name, node_name)?;
        warn_expiry(&files, expires);
        let bind_err = |source| TransportError::Bind { addr: listen, source };
        let socket = std::net::UdpSocket::bind(listen).map_err(bind_err)?;
        let reset_key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &reset_secret);
        let mut config = quinn::EndpointConfig::new(Arc::new(reset_key));
        config.cid_generator(|| Box::new(RandomCids));
        let endpoint = quinn::Endpoint::new(config, Some(server), socket, Arc::new(quinn::TokioRuntime)).map_err(bind_err)?;
        let (tx, rx) = mpsc::channel(4096);
        let t = Arc::new(Transport {
            endpoint,
            client: ArcSwap::from_pointee(client),
            files,
            name,
            identity: ArcSwap::from_pointee(identity),
            conns: Mutex::new(HashMap::new()),
            incoming: tx,
            local,
            stats: TransportStats::default(),
            shutdown,
            cert_expires: AtomicU64::new(expires.unwrap_or(0)),
            runtime: tokio::runtime::Handle::current(),
        });
        t.runtime.spawn(t.clone().accept_loop());
        t.runtime.spawn(t.clone().watch_certificates());
        Ok((t, rx))
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.endpoint.local_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// This node's identity (name and grants) from its certificate as last loaded.
    pub fn identity(&self) -> Arc<crate::authz::Identity> {
        self.identity.load_full()
    }

    /// When this node's certificate expires (Unix seconds), as last loaded.
    pub fn cert_expires(&self) -> Option<u64> {
        Some(self.cert_expires.load(Relaxed)).filter(|t| *t > 0)
    }

    async fn accept_loop(self: Arc<Self>) {
        loop {
            let incoming = tokio::select! {
                _ = self.shutdown.cancelled() => break,
                i = self.endpoint.accept() => match i { Some(i) => i, None => break },
            };
            let me = self.clone();
            self.runtime.spawn(async move {
                let from = incoming.remote_address();
                match incoming.await {
                    Ok(conn) => {
                        if let Some(name) = me.serve(conn.clone()) {
                            me.adopt(&conn, &name);
                        }
                    }
                    Err(e) => me.count_failed_accept(from, &e),
                }
            });
        }
        self.endpoint.close(0u32.into(), b"shutting down");
    }

    /// Counts and logs an incoming handshake that failed, by what it was: only a TLS refusal
    /// (alerts are QUIC crypto errors 0x100-0x1ff) is a trust failure; a timeout or an abort is
    /// what a frozen, cut-off or restarting peer causes, and after a heal there are many.
    fn count_failed_accept(&self, from: SocketAddr, e: &quinn::ConnectionError) {
        match e {
            e if is_tls_failure(e) => {
                self.stats.handshakes_rejected.fetch_add(1, Relaxed);
                tracing::warn!(%from, error = %e, "refused a node connection in the TLS handshake (a certificate not of the cluster CA, expired, or a version mismatch)");
            }
            quinn::ConnectionError::TimedOut => {
                self.stats.handshakes_timed_out.fetch_add(1, Relaxed);
                tracing::debug!(%from, "a node connection's handshake timed out");
            }
            e => {
                self.stats.handshakes_aborted.fetch_add(1, Relaxed);
                tracing::debug!(%from, error = %e, "a node connection's handshake was abandoned");
            }
        }
    }

    /// Runs the receive side of a connection, whichever end opened it. Returns the node name
    /// the peer's certificate proves; a connection without one is closed.
    fn serve(self: &Arc<Self>, conn: quinn::Connection) -> Option<String> {
        let Some(identity) = tls::peer_identity(&conn) else {
            conn.close(1u32.into(), b"certificate names no node");
            return None;
        };
        let (peer, identity) = (identity.node.clone(), Arc::new(identity));
        tracing::debug!(%peer, addr = %conn.remote_address(), "node connection up");
        let (me, c, p) = (self.clone(), conn.clone(), peer.clone());
        self.runtime.spawn(async move {
            while let Ok(bytes) = c.read_datagram().await {
                let msg = Incoming::Datagram { peer: p.clone(), from: c.remote_address(), bytes };
                // SWIM tolerates loss; a full queue must not stall the connection.
                if me.incoming.try_send(msg).is_err() {
                    me.stats.dropped_datagrams.fetch_add(1, Relaxed);
                }
            }
        });
        let (me, c, p) = (self.clone(), conn.clone(), peer.clone());
        let grants: crate::gossip::Grants = identity.namespaces.clone().map(Arc::new);
        self.runtime.spawn(async move {
            while let Ok(recv) = c.accept_uni().await {
                let (me, p, from, g) = (me.clone(), p.clone(), c.remote_address(), grants.clone());
                // On the transport's runtime already: this loop runs there.
                tokio::spawn(async move { me.read_message(recv, p, from, g).await });
            }
        });
        let me = self.clone();
        self.runtime.spawn(async move {
            while let Ok((send, recv)) = conn.accept_bi().await {
                me.stats.relayed_streams.fetch_add(1, Relaxed);
                me.stats.active_relays.fetch_add(1, Relaxed);
                let (me, local, caller) = (me.clone(), me.local.clone(), identity.clone());
                tokio::spawn(async move {
                    relay::serve(send, recv, local, &caller).await;
                    me.stats.active_relays.fetch_sub(1, Relaxed);
                });
            }
        });
        Some(peer)
    }

    async fn read_message(&self, mut recv: quinn::RecvStream, peer: String, from: SocketAddr, grants: crate::gossip::Grants) {
        let bytes = match recv.read_to_end(MAX_MESSAGE).await {
            Ok(b) => b,
            Err(e) => {
                self.stats.bad_streams.fetch_add(1, Relaxed);
                tracing::debug!(%peer, error = %e, "gossip stream failed");
                return;
            }
        };
        match bytes.split_first() {
            Some((&KIND_GOSSIP, rest)) => {
                let _ = self.incoming.send(Incoming::Message { peer, from, bytes: Bytes::copy_from_slice(rest), grants }).await;
            }
            _ => {
                self.stats.bad_streams.fetch_add(1, Relaxed);
                tracing::warn!(%peer, "dropped a stream of unknown kind");
            }
        }
    }

    /// The cached connection to a peer, or a new one. `expect` is the node name when known: the
    /// peer's certificate must then carry it.
    ///
    /// The handshake runs in a task of its own that every caller for this address waits on. A
    /// caller that gives up (the data path's 1 s connect timeout) therefore does not abort it: a
    /// handshake whose first packet was lost (the peer was still restarting) needs one
    /// retransmission, about a second, and aborting it at that point would make every dial fail
    /// the same way for as long as the peer is slow to answer.
    pub async fn connection(self: &Arc<Self>, addr: SocketAddr, expect: Option<&str>) -> Result<quinn::Connection, TransportError> {
        loop {
            let mut woken = {
                let mut conns = self.lock();
                let peer = conns.entry(addr).or_default();
                if let Some(c) = peer.live() {
                    // A node restarted under another name at the same address is not the one
                    // the caller means; its traffic must not go there.
                    return match expect {
                        Some(node) if node != peer.name => {
                            Err(TransportError::Connect { addr, message: format!("the node there is now `{}`, not `{node}`", peer.name) })
                        }
                        _ => Ok(c.clone()),
                    };
                }
                if let Some((at, why)) = peer.failed.as_ref().filter(|(at, _)| at.elapsed() < RETRY_AFTER) {
                    let message = format!("{why} ({} ms ago)", at.elapsed().as_millis());
                    return Err(TransportError::Connect { addr, message });
                }
                match &peer.dialing {
                    Some(tx) => tx.subscribe(),
                    None => {
                        let (tx, rx) = watch::channel(());
                        peer.dialing = Some(tx);
                        self.runtime.spawn(self.clone().dial(addr, expect.map(str::to_string)));
                        rx
                    }
                }
            };
            // Err means the dial ended (its sender is gone); either way look again.
            let _ = woken.changed().await;
        }
    }

    async fn dial(self: Arc<Self>, addr: SocketAddr, expect: Option<String>) {
        let client = (**self.client.load()).clone();
        let result = async {
            let connecting = self.endpoint.connect_with(client, addr, expect.as_deref().unwrap_or(tls::ANY_NODE)).map_err(|e| e.to_string())?;
            match tokio::time::timeout(Duration::from_secs(5), connecting).await {
                Err(_) => Err("handshake timed out".to_string()),
                Ok(r) => r.map_err(|e| {
                    if is_tls_failure(&e) {
                        self.stats.handshakes_failed.fetch_add(1, Relaxed);
                    }
                    e.to_string()
                }),
            }
        }
        .await;
        let result = result.and_then(|conn| match self.serve(conn.clone()) {
            Some(name) => Ok((conn, name)),
            None => Err("its certificate names no node".to_string()),
        });
        let mut conns = self.lock();
        let peer = conns.entry(addr).or_default();
        // Dropping the sender wakes the waiters; they find the outcome below once we unlock.
        peer.dialing = None;
        match result {
            // The peer's own connection may have been adopted meanwhile; keep that one (this one
            // is served all the same, so whatever the peer sends on it still arrives).
            Ok((conn, name)) if peer.live().is_none() => *peer = Peer { conn: Some(conn), name, dialing: None, failed: None },
            Ok(_) => peer.failed = None,
            Err(why) if peer.live().is_none() => {
                tracing::debug!(%addr, error = %why, "cannot reach node");
                peer.failed = Some((std::time::Instant::now(), why));
            }
            Err(_) => {}
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, Peer>> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Fire and forget: a datagram to a peer, connecting first if needed (off the caller's task).
    pub fn send_datagram(self: &Arc<Self>, addr: SocketAddr, bytes: Bytes) {
        if let Some(c) = self.cached(addr) {
            if c.send_datagram(bytes).is_err() {
                self.stats.dropped_datagrams.fetch_add(1, Relaxed);
            }
            return;
        }
        let me = self.clone();
        self.runtime.spawn(async move {
            match me.connection(addr, None).await {
                Ok(c) => {
                    let _ = c.send_datagram(bytes);
                }
                Err(e) => tracing::debug!(error = %e, "datagram not sent"),
            }
        });
    }

    /// Sends one gossip message on its own uni stream; `finish` makes sure it is delivered whole
    /// even if we close right after.
    pub fn send_message(self: &Arc<Self>, addr: SocketAddr, bytes: Bytes) {
        let me = self.clone();
        self.runtime.spawn(async move {
            let result = async {
                let c = me.connection(addr, None).await?;
                let lost = |e: &dyn std::fmt::Display| TransportError::Lost { addr, message: e.to_string() };
                let mut s = c.open_uni().await.map_err(|e| lost(&e))?;
                s.write_all(&[KIND_GOSSIP]).await.map_err(|e| lost(&e))?;
                s.write_all(&bytes).await.map_err(|e| lost(&e))?;
                s.finish().map_err(|e| lost(&e))?;
                let _ = s.stopped().await;
                Ok::<_, TransportError>(())
            };
            if let Err(e) = result.await {
                tracing::debug!(error = %e, "gossip message not sent");
            }
        });
    }

    /// Uses a connection a peer opened to us for our own sends too when we hold none to its
    /// address, so a pair of nodes usually shares one connection instead of dialling two. Callers
    /// waiting on our own dial to that address take it at once.
    fn adopt(&self, conn: &quinn::Connection, name: &str) {
        let mut conns = self.lock();
        let peer = conns.entry(conn.remote_address()).or_default();
        if peer.live().is_none() {
            peer.conn = Some(conn.clone());
            peer.name = name.to_string();
            peer.failed = None;
            if let Some(tx) = &peer.dialing {
                tx.send_replace(());
            }
        }
    }

    fn cached(&self, addr: SocketAddr) -> Option<quinn::Connection> {
        self.lock().get(&addr)?.live().cloned()
    }

    /// Closes the connection to a peer that membership declared down, so streams waiting on it
    /// (requests relayed to a frozen host) fail now and are retried elsewhere, instead of
    /// hanging until the idle timeout.
    pub fn disconnect(&self, addr: SocketAddr) {
        if let Some(c) = self.cached(addr) {
            tracing::info!(%addr, "closing the connection to a node declared down");
            c.close(2u32.into(), b"declared down");
        }
    }

    /// Smoothed round-trip time to a peer we hold a connection to.
    pub fn rtt(&self, addr: SocketAddr) -> Option<Duration> {
        self.cached(addr).map(|c| c.rtt())
    }

    /// The QUIC path to a peer we hold a connection to: RTT and packet counts.
    pub fn path(&self, addr: SocketAddr) -> Option<PathFigures> {
        self.cached(addr).map(|c| {
            let s = c.stats();
            PathFigures { rtt: c.rtt(), lost_packets: s.path.lost_packets, sent_packets: s.path.sent_packets }
        })
    }

    /// Opens a data-path stream to `node` (at `addr`) for one of its endpoints.
    pub async fn open_relay(self: &Arc<Self>, addr: SocketAddr, node: &str, req: &RelayRequest) -> Result<RelayStream, relay::RelayError> {
        let conn = self.connection(addr, Some(node)).await.map_err(relay::RelayError::Transport)?;
        relay::open(&conn, req).await
    }

    /// Re-reads the certificate files when they change, so a rotated certificate or CA takes
    /// effect without a restart; a bad new file is logged and the old configuration kept.
    async fn watch_certificates(self: Arc<Self>) {
        let stamp = |f: &TlsFiles| -> Vec<Option<SystemTime>> {
            [&f.ca, &f.cert, &f.key].iter().map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok()).collect()
        };
        let mut last = stamp(&self.files);
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let now = stamp(&self.files);
            if now == last {
                continue;
            }
            last = now;
            match quic_configs(&self.files) {
                Ok(q) if q.name != self.name => {
                    tracing::error!(cert = %self.files.cert.display(), name = %q.name, "new certificate is for another node; keeping the old one");
                }
                Ok(q) => {
                    if *self.identity.load_full() != q.identity {
                        tracing::warn!(identity = %q.identity, "the new certificate grants other namespaces or groups; routing follows once the catalog next changes");
                    }
                    self.identity.store(Arc::new(q.identity));
                    self.endpoint.set_server_config(Some(q.server));
                    self.client.store(Arc::new(q.client));
                    self.cert_expires.store(q.expires.unwrap_or(0), Relaxed);
                    tracing::info!("reloaded TLS certificates");
                    warn_expiry(&self.files, q.expires);
                }
                Err(e) => tracing::error!(error = %e, "cannot reload TLS certificates; keeping the old ones"),
            }
        }
    }
}

#[cfg(test)]
mod tests;

/// A connection attempt that failed in the TLS handshake: QUIC carries TLS alerts as the crypto
/// error codes 0x100–0x1ff (RFC 9001 §4.8), raised here or sent by the peer.
fn is_tls_failure(e: &quinn::ConnectionError) -> bool {
    let crypto = |code: quinn::TransportErrorCode| (0x100..0x200).contains(&u64::from(code));
    match e {
        quinn::ConnectionError::TransportError(t) => crypto(t.code),
        quinn::ConnectionError::ConnectionClosed(c) => crypto(c.error_code),
        _ => false,
    }
}
