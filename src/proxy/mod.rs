//! The data plane: turns catalog snapshots into a routing table, keeps one listener per alias
//! (`VIP:port`) in step with it, and publishes alias names to DNS and the hosts file.

mod attempt;
mod body;
mod budget;
mod conn;
pub mod error;
mod goaway;
mod h1;
mod http;
mod io;
mod pool;
mod replay;
pub mod table;
mod tcp;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use error::{ProxyError, Side};
pub use table::{ListenerSpec, Peer, PeerState, Peers, RoutingTable, ServiceRoute};

use crate::catalog::{Protocol, Snapshot};
use crate::dns::{HostsBlock, NameTable};
use crate::policy::Policy;
use crate::telemetry::Stats;
use pool::Pools;
use table::TableBuilder;

/// What every listener and connection of this node shares.
pub struct Shared {
    pub policy: Arc<dyn Policy>,
    pools: Arc<Pools>,
    pub table: Arc<ArcSwap<RoutingTable>>,
    pub zone: String,
    /// Cancelled when the node begins to drain: responses then ask clients to reconnect.
    pub draining: CancellationToken,
    /// Set once `draining` is cancelled. Every HTTP/1.1 response asks; the token's own check
    /// takes a lock all connections share.
    stopping: AtomicBool,
}

impl Shared {
    /// The node is draining (see `draining`).
    pub fn stopping(&self) -> bool {
        self.stopping.load(Relaxed)
    }
}

/// What one HTTP listener's connections share.
pub struct HttpListener {
    pub slot: Arc<ArcSwap<ServiceRoute>>,
    pub shared: Arc<Shared>,
}

enum Listener {
    Http1(Arc<HttpListener>),
    Http2(Arc<HttpListener>),
    Tcp(Arc<tcp::TcpListener>),
}

struct Running {
    spec: ListenerSpec,
    slot: Arc<ArcSwap<ServiceRoute>>,
    stop: CancellationToken,
}

/// Listener state for the admin API: bound, or why not.
pub type ListenerErrors = Arc<Mutex<BTreeMap<SocketAddr, String>>>;

pub struct Proxy {
    shared: Arc<Shared>,
    stats: Arc<Stats>,
    builder: TableBuilder,
    clients: HashSet<String>,
    running: HashMap<SocketAddr, Running>,
    names: NameTable,
    hosts: Option<HostsBlock>,
    errors: ListenerErrors,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    me: String,
    peers: watch::Receiver<Peers>,
}

pub struct ProxyParts {
    pub policy: Arc<dyn Policy>,
    pub stats: Arc<Stats>,
    pub table: Arc<ArcSwap<RoutingTable>>,
    pub zone: String,
    pub clients: HashSet<String>,
    pub names: NameTable,
    pub hosts: Option<HostsBlock>,
    pub errors: ListenerErrors,
    pub shutdown: CancellationToken,
    /// The mesh transport, when this node is part of a multi-host mesh.
    pub mesh: Option<Arc<crate::transport::Transport>>,
    /// This node's name, and the other nodes of the mesh as membership sees them.
    pub me: String,
    pub peers: watch::Receiver<Peers>,
}

impl Proxy {
    pub fn new(p: ProxyParts) -> Proxy {
        let shared = Arc::new(Shared { policy: p.policy, pools: Pools::new(p.mesh), table: p.table, zone: p.zone, draining: p.shutdown.clone(), stopping: AtomicBool::new(false) });
        Proxy {
            shared,
            stats: p.stats,
            builder: TableBuilder::default(),
            clients: p.clients,
            running: HashMap::new(),
            names: p.names,
            hosts: p.hosts,
            errors: p.errors,
            tracker: TaskTracker::new(),
            shutdown: p.shutdown,
            me: p.me,
            peers: p.peers,
        }
    }

    /// Brings the routing table, listeners and names in line with a snapshot.
    pub async fn apply(&mut self, snap: &Snapshot) {
        let peers = self.peers.borrow_and_update().clone();
        let table = Arc::new(self.builder.build(snap, &self.stats, &self.clients, &self.me, &peers));
        self.shared.table.store(table.clone());
        // Stop listeners whose alias went away or changed protocol (their connections finish).
        self.running.retain(|addr, r| {
            let keep = table.listeners.get(addr).is_some_and(|s| s.protocol == r.spec.protocol);
            if !keep {
                r.stop.cancel();
            }
            keep
        });
        let mut errors = BTreeMap::new();
        for (addr, spec) in &table.listeners {
            let Some(route) = table.services.get(&spec.service) else { continue };
            if let Some(r) = self.running.get_mut(addr) {
                r.slot.store(route.clone());
                r.spec = spec.clone();
                continue;
            }
            match tokio::net::TcpListener::bind(addr).await {
                Ok(l) => self.start(l, *addr, spec.clone(), route.clone()),
                Err(e) => {
                    tracing::error!(%addr, alias = %spec.dns_name, error = %e, "cannot bind alias listener");
                    errors.insert(*addr, format!("cannot bind {addr}: {e}"));
                }
            }
        }
        *self.errors.lock().unwrap_or_else(|p| p.into_inner()) = errors;
        self.names.store(Arc::new(table.names.clone()));
        if let Some(hosts) = self.hosts.clone() {
            // The write fsyncs; keep it off the runtime's worker threads. Awaiting it keeps
            // successive rewrites in order.
            let entries: Vec<_> = table.names.iter().map(|(n, ip)| (n.clone(), *ip)).collect();
            match tokio::task::spawn_blocking(move || hosts.write(&entries)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "cannot update the hosts file"),
                Err(e) => tracing::error!(error = %e, "hosts file update task failed"),
            }
        }
    }

    fn start(&mut self, listener: tokio::net::TcpListener, addr: SocketAddr, spec: ListenerSpec, route: Arc<ServiceRoute>) {
        tracing::info!(%addr, alias = %spec.dns_name, protocol = %spec.protocol, service = %route.label(), "listening");
        let slot = Arc::new(ArcSwap::new(route));
        let http = || Arc::new(HttpListener { slot: slot.clone(), shared: self.shared.clone() });
        let kind = match spec.protocol {
            Protocol::Http => Listener::Http1(http()),
            Protocol::Http2 | Protocol::Grpc => Listener::Http2(http()),
            Protocol::Tcp => Listener::Tcp(Arc::new(tcp::TcpListener { slot: slot.clone(), shared: self.shared.clone() })),
        };
        let stop = CancellationToken::new();
        let (tracker, shutdown, stop2) = (self.tracker.clone(), self.shutdown.clone(), stop.clone());
        self.tracker.spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = stop2.cancelled() => break,
                    _ = shutdown.cancelled() => break,
                    r = listener.accept() => r,
                };
                match (accepted, &kind) {
                    (Ok((s, _)), Listener::Http1(l)) => {
                        tracker.spawn(h1::serve(s, l.clone(), shutdown.clone()));
                    }
                    (Ok((s, _)), Listener::Http2(l)) => {
                        tracker.spawn(http::serve(s, l.clone(), shutdown.clone()));
                    }
                    (Ok((s, _)), Listener::Tcp(l)) => {
                        tracker.spawn(tcp::serve(s, l.clone()));
                    }
                    (Err(e), _) => {
                        // Usually out of file descriptors: back off instead of spinning.
                        tracing::warn!(%addr, error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        });
        self.running.insert(addr, Running { spec, slot, stop });
    }

    /// Follows the catalog until shutdown, then closes listeners, waits up to `grace` for open
    /// connections and removes the hosts block.
    pub async fn run(mut self, mut rx: watch::Receiver<Arc<Snapshot>>, grace: Duration) {
        let mut retry = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => {
                    self.shared.stopping.store(true, Relaxed);
                    break;
                }
                r = rx.changed() => {
                    if r.is_err() { break; }
                    let snap = rx.borrow_and_update().clone();
                    self.apply(&snap).await;
                }
                // A node went down or came back: its endpoints leave or rejoin the table now.
                Ok(()) = self.peers.changed() => {
                    let snap = rx.borrow().clone();
                    self.apply(&snap).await;
                }
                // Aliases whose port was taken get another chance without a catalog change, and
                // idle upstream sockets past their lifetime are closed.
                _ = retry.tick() => {
                    self.shared.pools.sweep();
                    if !self.errors.lock().unwrap_or_else(|p| p.into_inner()).is_empty() {
                        let snap = rx.borrow().clone();
                        self.apply(&snap).await;
                    }
                }
            }
        }
        for r in self.running.values() {
            r.stop.cancel();
        }
        self.tracker.close();
        if tokio::time::timeout(grace, self.tracker.wait()).await.is_err() {
            tracing::warn!("connections still open after {grace:?}; closing them");
        }
        if let Some(hosts) = self.hosts.clone() {
            match tokio::task::spawn_blocking(move || hosts.remove()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "cannot remove the managed block from the hosts file"),
                Err(e) => tracing::error!(error = %e, "hosts file cleanup task failed"),
            }
        }
    }
}
