//! The data plane: turns catalog snapshots into a routing table, keeps one listener per alias
//! (`VIP:port`) in step with it, and publishes alias names to DNS and the hosts file.

mod access;
mod attempt;
mod body;
mod budget;
mod conn;
mod drain;
pub mod error;
mod goaway;
pub mod h1;
mod h2;
mod io;
mod pipeline;
mod pool;
mod rebuild;
mod replay;
pub(crate) mod sock;
pub mod table;
mod tcp;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use drain::{DRAIN_IDLE, DRAIN_QUIET, DrainPlan};
pub use error::{ProxyError, Side};
pub use table::{ListenerSpec, Peer, PeerState, Peers, RoutingTable, ServiceRoute};

use crate::catalog::{Protocol, Snapshot};
use crate::dns::{HostsBlock, NameTable};
use crate::policy::PluginSource;
use crate::telemetry::Stats;
use pool::Pools;
use rebuild::{Build, TableWorker};
use table::TableBuilder;

/// What every listener and connection of this node shares.
pub struct Shared {
    pools: Arc<Pools>,
    pub table: Arc<ArcSwap<RoutingTable>>,
    pub zone: String,
    /// Cancelled when the node begins to drain: responses then ask clients to reconnect.
    pub draining: CancellationToken,
    /// Set once `draining` is cancelled. Every HTTP/1.1 response asks; the token's own check
    /// takes a lock all connections share.
    stopping: AtomicBool,
    /// Connections accepted since the drain began, to tell a quiet node from a busy one.
    accepted_late: AtomicU64,
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

#[derive(Clone)]
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

/// A duplicate of every alias listening socket, for handing them to a new process
/// (`weft run --takeover`).
pub type ListenerFds = Arc<Mutex<BTreeMap<SocketAddr, std::os::fd::OwnedFd>>>;

pub struct Proxy {
    shared: Arc<Shared>,
    stats: Arc<Stats>,
    builder: TableWorker,
    clients: HashSet<String>,
    running: HashMap<SocketAddr, Running>,
    names: NameTable,
    hosts: Option<HostsBlock>,
    errors: ListenerErrors,
    fds: ListenerFds,
    /// Listening sockets a previous process handed over, used instead of binding anew.
    inherited: HashMap<SocketAddr, std::net::TcpListener>,
    /// The accept loops (and the timer of a drain).
    tracker: TaskTracker,
    /// The client connections: the drain window ends early once there are none.
    conns: TaskTracker,
    /// The node's drain, once it begins.
    drain: watch::Receiver<Option<DrainPlan>>,
    /// The stop token of connections accepted before the drain: it fires `DRAIN_IDLE` into it.
    early_stop: CancellationToken,
    /// Fires when the drain window ends: the accept loops stop.
    window_end: CancellationToken,
    me: String,
    peers: watch::Receiver<Peers>,
    /// The `[[client]]` namespaces, which a config reload may change.
    clients_rx: watch::Receiver<HashSet<String>>,
    plugins: Arc<dyn PluginSource>,
    plugins_changed: watch::Receiver<u64>,
    access_config: crate::telemetry::access::AccessLogConfig,
}

/// What the proxy manager waits for.
enum Event {
    Snapshot,
    Tick,
    Clients,
    Drain,
    WindowOver,
}

pub struct ProxyParts {
    /// Where services' policy plugins are found, and a signal that bumps when one is loaded,
    /// replaced or removed (the table is rebuilt then, so services pick up the new version).
    pub plugins: Arc<dyn PluginSource>,
    pub plugins_changed: watch::Receiver<u64>,
    pub stats: Arc<Stats>,
    pub table: Arc<ArcSwap<RoutingTable>>,
    pub zone: String,
    /// The `[[client]]` namespaces (only their aliases get listeners when any are listed).
    pub clients: watch::Receiver<HashSet<String>>,
    pub names: NameTable,
    pub hosts: Option<HostsBlock>,
    pub errors: ListenerErrors,
    pub fds: ListenerFds,
    /// Listening sockets handed over by the process this one replaces.
    pub inherited: HashMap<SocketAddr, std::net::TcpListener>,
    /// Set by the node when it begins to drain.
    pub drain: watch::Receiver<Option<DrainPlan>>,
    /// The mesh transport, when this node is part of a multi-host mesh.
    pub mesh: Option<Arc<crate::transport::Transport>>,
    /// This node's name, and the other nodes of the mesh as membership sees them.
    pub me: String,
    pub peers: watch::Receiver<Peers>,
    /// The node's access log writer, when it runs (started at once when `[access_log] enabled`).
    pub access: Option<Arc<crate::telemetry::access::AccessLog>>,
    /// `[access_log]`: the writer starts when a service first wants it.
    pub access_config: crate::telemetry::access::AccessLogConfig,
}

/// Set by `WEFT_TEST_SKIP_CALLER_AUTHZ=1`: this node then sends requests to services that do not
/// admit it, as a tampered node would, so tests can show the endpoint's node refusing them
/// (`tests/authz.rs`). It opens nothing: the endpoint's node checks every relayed connection.
pub static SKIP_CALLER_AUTHZ: AtomicBool = AtomicBool::new(false);

impl Proxy {
    pub fn new(p: ProxyParts) -> Proxy {
        if std::env::var_os("WEFT_TEST_SKIP_CALLER_AUTHZ").is_some_and(|v| v == "1") {
            tracing::warn!("WEFT_TEST_SKIP_CALLER_AUTHZ=1: this node does not check services' allow lists before sending (endpoint nodes still do)");
            SKIP_CALLER_AUTHZ.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let shared = Arc::new(Shared { pools: Pools::new(p.mesh), table: p.table, zone: p.zone, draining: CancellationToken::new(), stopping: AtomicBool::new(false), accepted_late: AtomicU64::new(0) });
        let mut clients_rx = p.clients;
        let clients = clients_rx.borrow_and_update().clone();
        Proxy {
            shared,
            stats: p.stats,
            builder: TableWorker::start(TableBuilder::with_access(p.access)),
            clients,
            running: HashMap::new(),
            names: p.names,
            hosts: p.hosts,
            errors: p.errors,
            fds: p.fds,
            inherited: p.inherited,
            tracker: TaskTracker::new(),
            conns: TaskTracker::new(),
            drain: p.drain,
            early_stop: CancellationToken::new(),
            window_end: CancellationToken::new(),
            me: p.me,
            peers: p.peers,
            clients_rx,
            plugins: p.plugins,
            plugins_changed: p.plugins_changed,
            access_config: p.access_config,
        }
    }

    /// Starts the access log writer once a service wants it. Not before: a thread of its own
    /// makes the process multi-threaded, which puts every `send` and `recv` of a one-CPU node on
    /// glibc's slower cancellable path (BENCHMARKS.md). The file is opened off the runtime.
    async fn start_access_log(&mut self, snap: &Snapshot) {
        let enabled = self.access_config.enabled;
        if self.builder.access.is_some() || !snap.services.values().any(|s| s.access_log.unwrap_or(enabled)) {
            return;
        }
        let (cfg, figures) = (self.access_config.clone(), self.stats.access.clone());
        match tokio::task::spawn_blocking(move || crate::telemetry::access::AccessLog::start(&cfg, figures)).await {
            Ok(Ok(log)) => self.builder.access = Some(log),
            Ok(Err(e)) => tracing::error!(error = %e, "access log not started; requests are not logged"),
            Err(e) => tracing::error!(error = %e, "access log not started"),
        }
    }

    /// Brings the routing table, listeners and names in line with a snapshot.
    pub async fn apply(&mut self, snap: &Arc<Snapshot>) {
        self.start_access_log(snap).await;
        let peers = self.peers.borrow_and_update().clone();
        // Read each time: a reloaded certificate may grant other namespaces or groups.
        let me = match self.shared.pools.mesh() {
            Some(t) => t.identity(),
            None => Arc::new(crate::authz::Identity::cluster_wide(&self.me)),
        };
        let job = Build { snap: snap.clone(), stats: self.stats.clone(), clients: self.clients.clone(), me, peers, plugins: self.plugins.clone() };
        let Some(table) = self.builder.build(job).await else { return };
        let table = Arc::new(table);
        let old = self.shared.table.swap(table.clone());
        // Stop listeners whose alias went away or changed protocol (their connections finish).
        let fds = self.fds.clone();
        self.running.retain(|addr, r| {
            let keep = table.listeners.get(addr).is_some_and(|s| s.protocol == r.spec.protocol);
            if !keep {
                r.stop.cancel();
                lock(&fds).remove(addr);
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
            let bound = match self.inherited.remove(addr) {
                Some(l) => sock::SockListener::new(l),
                // tokio's bind sets what a listener wants (SO_REUSEADDR, a 1,024 backlog).
                None => tokio::net::TcpListener::bind(addr).await.and_then(|l| sock::SockListener::new(l.into_std()?)),
            };
            match bound {
                Ok(l) => self.start(l, *addr, spec.clone(), route.clone()),
                Err(e) => {
                    tracing::error!(%addr, alias = %spec.dns_name, error = %e, "cannot bind alias listener");
                    errors.insert(*addr, format!("cannot bind {addr}: {e}"));
                }
            }
        }
        *self.errors.lock().unwrap_or_else(|p| p.into_inner()) = errors;
        // Sockets handed over for aliases this configuration no longer has.
        for (addr, _) in self.inherited.drain() {
            tracing::info!(%addr, "closing a listening socket handed over for an alias that is gone");
        }
        self.names.store(Arc::new(table.names.clone()));
        self.builder.retire(old);
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

    fn start(&mut self, listener: sock::SockListener, addr: SocketAddr, spec: ListenerSpec, route: Arc<ServiceRoute>) {
        use std::os::fd::AsFd;
        match listener.as_fd().try_clone_to_owned() {
            Ok(fd) => {
                lock(&self.fds).insert(addr, fd);
            }
            Err(e) => tracing::warn!(%addr, error = %e, "cannot keep a handle of the listening socket; a takeover will bind it anew"),
        }
        tracing::info!(%addr, alias = %spec.dns_name, protocol = %spec.protocol, service = %route.label(), "listening");
        let slot = Arc::new(ArcSwap::new(route));
        let http = || Arc::new(HttpListener { slot: slot.clone(), shared: self.shared.clone() });
        let kind = match spec.protocol {
            Protocol::Http => Listener::Http1(http()),
            Protocol::Http2 | Protocol::Grpc => Listener::Http2(http()),
            Protocol::Tcp => Listener::Tcp(Arc::new(tcp::TcpListener { slot: slot.clone(), shared: self.shared.clone() })),
        };
        let stop = CancellationToken::new();
        let (conns, early, window_end, stop2, shared) = (self.conns.clone(), self.early_stop.clone(), self.window_end.clone(), stop.clone(), self.shared.clone());
        self.tracker.spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = stop2.cancelled() => break,
                    // The end of the drain window: from now on the port refuses.
                    _ = window_end.cancelled() => break,
                    r = listener.accept() => r,
                };
                let (s, peer) = match accepted {
                    Ok(s) => s,
                    Err(e) => {
                        // Usually out of file descriptors: back off instead of spinning.
                        tracing::warn!(%addr, error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                if shared.stopping() {
                    shared.accepted_late.fetch_add(1, Relaxed);
                    conns.spawn(drain::serve_late(s, peer, kind.clone()));
                    continue;
                }
                match &kind {
                    Listener::Http1(l) => conns.spawn(h1::serve(s, peer, l.clone(), early.clone())),
                    Listener::Http2(l) => conns.spawn(h2::serve(s, peer, l.clone(), early.clone())),
                    Listener::Tcp(l) => conns.spawn(tcp::serve(s, peer, l.clone())),
                };
            }
        });
        self.running.insert(addr, Running { spec, slot, stop });
    }

    /// Follows the catalog until the node drains, keeps the listeners open through the drain
    /// window (following the catalog still), then closes them, waits for the open connections
    /// until the drain's deadline and removes the hosts block.
    pub async fn run(mut self, mut rx: watch::Receiver<Arc<Snapshot>>) {
        let mut retry = tokio::time::interval(Duration::from_secs(5));
        let mut plan: Option<DrainPlan> = None;
        loop {
            // Only the waits race; what an event does is never cut short by another one.
            let event = tokio::select! {
                r = rx.changed() => if r.is_err() { Event::Drain } else { Event::Snapshot },
                // A node went down or came back: its endpoints leave or rejoin the table now.
                Ok(()) = self.peers.changed() => Event::Snapshot,
                // A plugin was loaded, replaced or removed: services pick up its new version.
                Ok(()) = self.plugins_changed.changed() => Event::Snapshot,
                Ok(()) = self.clients_rx.changed() => Event::Clients,
                // Aliases whose port was taken get another chance without a catalog change, and
                // idle upstream sockets past their lifetime are closed.
                _ = retry.tick() => Event::Tick,
                _ = self.drain.changed() => Event::Drain,
                _ = window_over(plan, &self.conns, &self.shared), if plan.is_some() => Event::WindowOver,
            };
            match event {
                Event::Snapshot => {
                    let snap = rx.borrow_and_update().clone();
                    self.apply(&snap).await;
                }
                Event::Clients => {
                    self.clients = self.clients_rx.borrow_and_update().clone();
                    let snap = rx.borrow().clone();
                    self.apply(&snap).await;
                }
                Event::Tick => {
                    self.shared.pools.sweep();
                    if !self.errors.lock().unwrap_or_else(|p| p.into_inner()).is_empty() {
                        let snap = rx.borrow().clone();
                        self.apply(&snap).await;
                    }
                }
                // A closed channel (the node is gone) ends everything at once.
                Event::Drain => {
                    let next = self.drain.borrow_and_update().unwrap_or_else(DrainPlan::now);
                    if plan.is_none() {
                        self.begin_drain(&next);
                    }
                    plan = Some(next);
                }
                Event::WindowOver => break,
            }
        }
        self.close(plan.unwrap_or_else(DrainPlan::now)).await;
    }

    /// The drain begins: every HTTP/1.1 response from now on says `Connection: close`, and open
    /// connections that wait for a request get `DRAIN_IDLE` for it. The listeners stay open.
    fn begin_drain(&mut self, plan: &DrainPlan) {
        self.shared.stopping.store(true, Relaxed);
        self.shared.draining.cancel();
        // Closed, `wait` returns as soon as no connection is left (new ones may still come).
        self.conns.close();
        let early = self.early_stop.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(DRAIN_IDLE) => early.cancel(),
                _ = early.cancelled() => {}
            }
        });
        let window = plan.close_by.saturating_duration_since(tokio::time::Instant::now());
        tracing::info!(connections = self.conns.len(), "draining: listeners stay open (every connection is asked to close) until the node has been without connections for {DRAIN_QUIET:?}, for up to {window:?}");
    }

    /// The end of the drain window: listeners close, connections finish until the deadline, then
    /// the hosts block goes.
    async fn close(mut self, mut plan: DrainPlan) {
        let handed_over = plan.handed_over;
        // The accept loops stop. The connections' own stop tokens keep their timers: cutting an
        // idle connection now would cut the request its client may be sending (99 of them when
        // a takeover did so under 100 clients).
        self.window_end.cancel();
        for r in self.running.values() {
            r.stop.cancel();
        }
        self.tracker.close();
        self.conns.close();
        tracing::info!(connections = self.conns.len(), "listeners closed; open connections finish");
        let (tracker, conns) = (self.tracker.clone(), self.conns.clone());
        let mut all_done = std::pin::pin!(async move { tokio::join!(tracker.wait(), conns.wait()) });
        loop {
            tokio::select! {
                _ = all_done.as_mut() => break,
                _ = tokio::time::sleep_until(plan.deadline) => {
                    tracing::warn!(connections = self.conns.len(), "connections still open at the drain deadline; closing them");
                    break;
                }
                // A second signal moves the deadline to now.
                r = self.drain.changed() => match r {
                    Ok(()) => plan = self.drain.borrow_and_update().unwrap_or_else(DrainPlan::now),
                    Err(_) => plan = DrainPlan::now(),
                },
            }
        }
        lock(&self.fds).clear();
        // After a handover the new process keeps the block up to date.
        if let Some(hosts) = self.hosts.clone().filter(|_| !handed_over) {
            match tokio::task::spawn_blocking(move || hosts.remove()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "cannot remove the managed block from the hosts file"),
                Err(e) => tracing::error!(error = %e, "hosts file cleanup task failed"),
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Resolves when the drain window is over: at `close_by`, or earlier, once `hold_until` has
/// passed and no client connection has been open or accepted for `DRAIN_QUIET`.
async fn window_over(plan: Option<DrainPlan>, conns: &TaskTracker, shared: &Shared) {
    let Some(plan) = plan else { return std::future::pending().await };
    let quiet = async {
        tokio::time::sleep_until(plan.hold_until).await;
        loop {
            // The tracker was closed when the drain began: `wait` returns whenever it is empty.
            conns.wait().await;
            let seen = shared.accepted_late.load(Relaxed);
            tokio::time::sleep(DRAIN_QUIET).await;
            if shared.accepted_late.load(Relaxed) == seen && conns.is_empty() {
                return;
            }
        }
    };
    tokio::select! {
        _ = tokio::time::sleep_until(plan.close_by) => {}
        _ = quiet => {}
    }
}
