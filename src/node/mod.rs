//! The composition root: opens the store, restores the catalog, applies the config, binds the
//! mesh transport, admin API, DNS and alias listeners, and runs until SIGTERM/SIGINT (SIGHUP
//! reloads the config). Mode changes the wiring, never the code of a subsystem.

mod apply;
mod control;
mod handover;
mod mesh;
mod notify;
mod reload;
mod telemetry;

pub use reload::ConfigLoader;
use apply::*;

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, AdminState, NodeInfo};
use crate::catalog::{Body, Catalog, CatalogError, Endpoint, Key, Namespace, Origin, VipRange};
use crate::config::{Config, DEFAULT_NAMESPACE, Mode, Problem};
use crate::dns::{DnsResponder, HostsBlock, NameTable, system_upstreams};
use crate::gossip::{Core, GossipConfig, MemberState, MemberView, NodeId, Role};
use crate::proxy::Peers;
use crate::proxy::h1::tap::TapLog;
use crate::transport::{LocalEndpoint, LocalEndpoints, RelayRequest, Transport};
use crate::proxy::{DrainPlan, Proxy, ProxyParts};
use crate::store::{Store, StoreError};
use crate::telemetry::Stats;

/// After marking its endpoints draining, a node in a mesh keeps accepting this long so every
/// peer hears of it before the listeners close (replication p99 is ~0.15 s at 50 nodes).
const DRAIN_PROPAGATION: Duration = Duration::from_secs(1);

/// The blob naming the endpoints a shutdown drained, so the next start puts them back.
const DRAINED_BLOB: &str = "drained-at-shutdown";

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("configuration does not fit the catalog:\n{}", .0.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n"))]
    Config(Vec<Problem>),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("cannot listen for the admin API on {addr}: {source}")]
    Admin { addr: SocketAddr, source: std::io::Error },
    #[error("DNS responder: {0}")]
    Dns(#[from] crate::dns::DnsError),
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error(transparent)]
    Transport(#[from] crate::transport::TransportError),
    #[error("admin API over TLS: {0}")]
    AdminTls(crate::transport::TlsError),
    #[error("[gossip] {0}")]
    Gossip(String),
    #[error("[access_log] {0}")]
    AccessLog(#[from] crate::telemetry::access::AccessLogError),
    #[error("{0}")]
    Handover(String),
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
    Plugins(Vec<crate::plugin::PluginError>),
    #[error("telemetry: {0}")]
    Telemetry(String),
}

/// This node's own endpoints, for the relay side of the cross-host data path.
struct OwnEndpoints {
    catalog: Arc<Catalog>,
    stats: Arc<Stats>,
    /// The routing table, for a service's access log (the proxy manager owns the writer).
    table: Arc<ArcSwap<crate::proxy::RoutingTable>>,
}

impl LocalEndpoints for OwnEndpoints {
    fn resolve(&self, req: &RelayRequest, caller: &crate::authz::Identity) -> Option<LocalEndpoint> {
        // The published snapshot: building one here, per relayed stream, during a burst of
        // writes cost O(catalog) each on a runtime thread. An endpoint registered in the last
        // 100 ms may not be found yet; the caller then tries another (status NotHere).
        let snap = self.catalog.latest();
        let svc = snap.services.get(&(req.namespace.clone(), req.service.clone()))?;
        let ep = snap.endpoints_of(&req.namespace, &req.service).iter().find(|e| e.id == req.endpoint && e.node == self.catalog.node())?;
        let http1 = svc.protocol == crate::catalog::Protocol::Http;
        let route = self.table.load().services.get(&(req.namespace.clone(), req.service.clone())).cloned();
        let log = route.and_then(|r| r.access.clone()).filter(|_| http1).map(|log| TapLog { log, endpoint: ep.id.clone(), node: ep.node.clone(), address: ep.address });
        Some(LocalEndpoint {
            address: ep.address,
            connect_timeout: Duration::from_millis(svc.timeouts.connect_ms()),
            stats: self.stats.endpoint(&ep.namespace, &ep.service, &ep.id),
            http1,
            log,
            permits: crate::authz::permits(&svc.namespace, svc.allow.as_ref(), caller),
        })
    }
}

/// The mesh part of a node, when `[tls]` is configured.
struct Mesh {
    transport: Arc<Transport>,
    advertise: SocketAddr,
    peers: watch::Receiver<Peers>,
    view: watch::Receiver<crate::admin::MeshView>,
}

async fn resolve_seeds(config: &Config) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for seed in &config.gossip.join {
        let Ok((host, port)) = crate::config::parse_seed(seed) else { continue };
        match tokio::net::lookup_host((host.as_str(), port)).await {
            Ok(addrs) => out.extend(addrs),
            Err(e) => tracing::warn!(%seed, error = %e, "cannot resolve seed"),
        }
    }
    out
}

/// Where peers reach us: `advertise`, else a specific `listen` address, else the local address
/// that routes to the first seed (right for hosts in different networks without NAT).
fn advertise_addr(config: &Config, bound: SocketAddr, seeds: &[SocketAddr]) -> Result<SocketAddr, NodeError> {
    if let Some(a) = config.gossip.advertise {
        return Ok(a);
    }
    if !bound.ip().is_unspecified() {
        return Ok(bound);
    }
    let via_seed = seeds.first().and_then(|seed| {
        let probe = std::net::UdpSocket::bind((if seed.is_ipv4() { "0.0.0.0" } else { "::" }, 0)).ok()?;
        probe.connect(seed).ok()?;
        probe.local_addr().ok()
    });
    match via_seed {
        Some(local) => Ok(SocketAddr::new(local.ip(), bound.port())),
        None => Err(NodeError::Gossip(format!(
            "`listen` is a wildcard ({bound}) and there is no seed to route to: set `advertise` to the address other nodes reach this one at"
        ))),
    }
}

fn me_view(me: &NodeId) -> MemberView {
    MemberView { name: me.name.clone(), generation: me.generation, addr: me.addr, role: me.role, state: MemberState::Alive, since: 0, renewal: 0, incarnation: 0, admin: me.admin }
}

/// The admin address other nodes name when they send a user here: the bound address, with a
/// wildcard IP replaced by the advertised gossip IP (the one peers reach this host at).
fn advertised_admin(admin: SocketAddr, gossip: SocketAddr) -> SocketAddr {
    if admin.ip().is_unspecified() { SocketAddr::new(gossip.ip(), admin.port()) } else { admin }
}

fn role_of(mode: Mode) -> Role {
    match mode {
        Mode::Registry => Role::Registry,
        Mode::Proxy => Role::Proxy,
        Mode::Combined => Role::Combined,
    }
}

/// How `weft run` starts a node besides its configuration.
#[derive(Default)]
pub struct Launch {
    /// Reads the configuration again on SIGHUP (`None`: started without a file, so a SIGHUP
    /// changes nothing).
    pub reload: Option<ConfigLoader>,
    /// Take the listening sockets and the store of the weft running on the same data dir
    /// (`weft run --takeover`, see `handover`).
    pub takeover: bool,
}

/// Opens the store; after a takeover the old process may take a moment to let go of it.
async fn open_store(data_dir: &std::path::Path, takeover: bool) -> Result<Store, NodeError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(if takeover { 5 } else { 0 });
    loop {
        match Store::open(data_dir) {
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::debug!(error = %e, "store not free yet");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            r => return Ok(r?),
        }
    }
}

/// Runs a node until SIGTERM or SIGINT (SIGHUP reloads the configuration), or until a new
/// process takes it over.
pub async fn run(config: Config, launch: Launch) -> Result<(), NodeError> {
    // First, so a signal during startup is not fatal: SIGHUP's default action kills the process.
    let mut signals = Signals::new().map_err(NodeError::Signals)?;
    let data_dir: PathBuf = config.node.data_dir();
    let mut inherited = HashMap::new();
    // In a mesh the QUIC port is held by every upstream connection to another host; it cannot
    // be handed over yet, and the new process could not bind it.
    let single_host = config.tls_files().is_none();
    if launch.takeover && !single_host {
        return Err(NodeError::Handover("--takeover works for single-host nodes (no [tls]) for now: a mesh node's QUIC port cannot be handed over yet; restart it instead".into()));
    }
    if launch.takeover {
        let dir = data_dir.clone();
        inherited = tokio::task::spawn_blocking(move || handover::take_over(&dir)).await.map_err(|e| NodeError::Handover(e.to_string()))?.map_err(NodeError::Handover)?;
        tracing::info!(listeners = inherited.len(), "took over the listening sockets of the running process");
    }
    let store = open_store(&data_dir, launch.takeover).await?;
    let mut handovers = if single_host {
        handover::listen(&data_dir)
            .inspect_err(|e| tracing::warn!(error = %e, "no handover socket in the data dir; `weft run --takeover` cannot replace this process"))
            .ok()
    } else {
        None
    };
    let vip_range = VipRange::parse(&config.dns.vip_cidr)
        .map_err(|e| CatalogError::Invalid { field: "dns.vip_cidr".into(), message: e })?;
    let catalog = Arc::new(Catalog::open(store, &config.node.name, vip_range)?);
    let mode = config.node.mode;
    if mode == Mode::Proxy {
        catalog.set_read_only(Vec::new());
    }
    // The namespaces this node may write in are those its certificate names (`crate::authz`); a
    // certificate that cannot be read fails the start further on, with its own error.
    if let Some(files) = config.tls_files()
        && let Ok(c) = crate::transport::tls::load(&files)
    {
        catalog.set_granted_namespaces(c.identity.namespaces);
    }
    let addresses = resolve_config_addresses(&config).await?;
    let pending = apply_config(&catalog, &config, &addresses)?;
    retire_former_names(&catalog);
    undrain_after_restart(&catalog);

    let shutdown = CancellationToken::new();
    let stats = Arc::new(Stats::default());
    // Plugins load before any listener: a service that names one serves with it from the first
    // request. Compiling blocks, so it runs off the runtime's threads.
    let plugins = crate::plugin::PluginHost::new(Some(&data_dir), Some(stats.clone()));
    let (host, specs) = (plugins.clone(), config.plugin_specs());
    let refused = tokio::task::spawn_blocking(move || host.configure(&specs)).await.unwrap_or_default();
    if !refused.is_empty() {
        return Err(NodeError::Plugins(refused));
    }
    // Mesh plugins from the stored catalog too, so a node restarted with no registry reachable
    // serves with them from its first request. One refused here is logged, not fatal: the
    // operator of this host did not choose it.
    let (host, snap) = (plugins.clone(), catalog.snapshot());
    let used = crate::plugin::mesh::used_by_services(&snap, mode.runs_proxy());
    for e in tokio::task::spawn_blocking(move || host.sync_mesh(&snap.plugins, &used)).await.unwrap_or_default() {
        tracing::error!(error = %e, "mesh plugin refused on this node");
    }

    let exporter = telemetry::start_export(&config, &catalog, &stats)?;
    let table = Arc::new(ArcSwap::from_pointee(Default::default()));
    let listener_errors = Arc::new(Mutex::new(Default::default()));
    let listener_fds: crate::proxy::ListenerFds = Default::default();
    let names: NameTable = Arc::new(ArcSwap::from_pointee(Default::default()));
    let mut tasks = tokio::task::JoinSet::new();
    // Gossip, health checks, the admin API and the plugin watchers (see `control`).
    let control = control::ControlPlane::start();
    let ctl = control.handle();

    // The mesh first: its port is bound and its membership restored before any listener, so
    // routes to other hosts work from the first request (static stability after a restart).
    let mut mesh = None;
    let mut mesh_core = None;
    let transport_stop = CancellationToken::new();
    if let Some(files) = config.tls_files() {
        let own = Arc::new(OwnEndpoints { catalog: catalog.clone(), stats: stats.clone(), table: table.clone() });
        // The transport stops after the gossip task has said goodbye (not with everything else),
        // so the leave reaches the peers and they show this node `left`, not `down`.
        let (transport, incoming) = Transport::bind(config.gossip.listen, files, &config.node.name, own, transport_stop.clone())?;
        let seeds = resolve_seeds(&config).await;
        let advertise = advertise_addr(&config, transport.local_addr(), &seeds)?;
        let (peers_tx, peers) = watch::channel(Some(Arc::new(Default::default())));
        let (view_tx, view) = watch::channel(Default::default());
        mesh = Some(Mesh { transport: transport.clone(), advertise, peers, view });
        mesh_core = Some((transport, incoming, seeds, peers_tx, view_tx));
    }
    let peers = mesh.as_ref().map(|m| m.peers.clone()).unwrap_or_else(|| watch::channel(None).1);

    let admin_listener = admin::bind(config.admin.listen).await.map_err(|source| NodeError::Admin { addr: config.admin.listen, source })?;
    let admin_addr = admin_listener.local_addr().unwrap_or(config.admin.listen);
    let admin_tls = config.tls_files().map(admin::AdminTls::load).transpose().map_err(NodeError::AdminTls)?;

    let mut dns_addr = None;
    if mode.runs_proxy() && config.dns.enabled {
        let upstream = config.dns.upstream.clone().unwrap_or_else(|| system_upstreams(config.dns.listen));
        let dns = DnsResponder::bind(config.dns.listen, upstream, config.dns.ttl, names.clone()).await?.count_into(stats.clone());
        dns_addr = Some(dns.local_addr());
        let stop = shutdown.clone();
        tasks.spawn(async move {
            if let Err(e) = dns.run(stop).await {
                tracing::error!(error = %e, "DNS responder stopped");
            }
        });
    }

    let generation = catalog.next_generation()?;
    if let (Some((transport, incoming, seeds, peers_tx, view_tx)), Some(m)) = (mesh_core, &mesh) {
        let me = NodeId::new(config.node.name.clone(), generation, m.advertise, role_of(mode)).with_admin(Some(advertised_admin(admin_addr, m.advertise)));
        let gossip = GossipConfig { remove_down_after: Duration::from_secs(config.gossip.remove_down_after_s), ..GossipConfig::default() };
        let seed = rand::random::<u64>();
        let start = tokio::time::Instant::now();
        let mut core = Core::new(me.clone(), gossip, mesh::CatalogReplica { catalog: catalog.clone(), stats: stats.clone() }, seed, 0);
        core.restore(mesh::restore_members(&catalog), 0);
        core.set_own_grants(transport.identity().namespaces.clone().map(Arc::new));
        let parts = mesh::MeshParts {
            me: me_view(&me),
            core,
            transport,
            incoming,
            catalog: catalog.clone(),
            seeds,
            peers: peers_tx,
            view: view_tx,
            start,
            endpoint_grace: Duration::from_secs(config.gossip.endpoint_grace_s),
            shutdown: shutdown.clone(),
            transport_stop: transport_stop.clone(),
            stats: stats.clone(),
        };
        mesh::publish_initial(&parts);
        tasks.spawn_on(mesh::run(parts), ctl);
    }
    let (clients_tx, clients_rx) = watch::channel(reload::clients_of(&config));
    let mut reloader = reload::Reloader::new(launch.reload, config.clone(), clients_tx, plugins.clone());
    tasks.spawn_on(crate::plugin::watch::run(plugins.clone(), shutdown.clone()), ctl);
    tasks.spawn_on(crate::plugin::mesh::run(plugins.clone(), catalog.subscribe(), mode.runs_proxy(), shutdown.clone()), ctl);
    if !pending.is_empty() {
        reloader.track_pending(tasks.spawn(register_pending(catalog.clone(), pending, shutdown.clone())));
    }

    tasks.spawn_on(crate::health::run(catalog.clone(), stats.clone(), shutdown.clone()), ctl);

    // The data plane stops on its own: on SIGTERM it drains before the rest shuts down.
    let (drain_tx, drain_rx) = watch::channel(None);
    let mut proxy_task = None;
    let hosts_file = config.dns.hosts_file.clone().filter(|_| mode.runs_proxy());
    if mode.runs_proxy() {
        // With `[access_log] enabled` the writer starts now, so a file that cannot be opened stops
        // the node; otherwise the proxy starts it when a service first asks for a log.
        let mut access = None;
        if config.access_log.enabled {
            let (cfg, figures) = (config.access_log.clone(), stats.access.clone());
            let started = tokio::task::spawn_blocking(move || crate::telemetry::access::AccessLog::start(&cfg, figures)).await;
            access = Some(started.map_err(|e| NodeError::AccessLog(crate::telemetry::access::AccessLogError::Thread(std::io::Error::other(e.to_string()))))??);
        }
        let mut proxy = Proxy::new(ProxyParts {
            access,
            access_config: config.access_log.clone(),
            plugins: plugins.clone(),
            plugins_changed: plugins.subscribe(),
            stats: stats.clone(),
            table: table.clone(),
            zone: config.node.zone.clone(),
            clients: clients_rx,
            names: names.clone(),
            hosts: hosts_file.clone().map(HostsBlock::new),
            errors: listener_errors.clone(),
            fds: listener_fds.clone(),
            inherited: std::mem::take(&mut inherited),
            drain: drain_rx,
            mesh: mesh.as_ref().map(|m| m.transport.clone()),
            me: config.node.name.clone(),
            peers,
        });
        let rx = catalog.subscribe();
        // Listeners are bound before the node reports ready.
        proxy.apply(&catalog.snapshot()).await;
        proxy_task = Some(tokio::spawn(proxy.run(rx)));
    }

    let info = NodeInfo {
        name: config.node.name.clone(),
        mode,
        generation,
        zone: config.node.zone.clone(),
        admin: admin_addr,
        dns: dns_addr,
        hosts_file: hosts_file.clone(),
        gossip: mesh.as_ref().map(|m| m.advertise),
        data_dir: data_dir.clone(),
        version: crate::cli::VERSION,
    };
    let state = Arc::new(AdminState {
        catalog: catalog.clone(),
        stats: stats.clone(),
        table,
        listener_errors,
        info,
        started: std::time::Instant::now(),
        mesh: mesh.as_ref().map(|m| m.view.clone()),
        plugins: plugins.clone(),
        // Checked by the config's validation; unreadable since then means no non-loopback access.
        token: config.admin.token_file.as_deref().and_then(|p| crate::config::read_admin_token(p).ok()),
    });
    tasks.spawn_on(telemetry::retain_series(catalog.clone(), stats.clone(), shutdown.clone()), ctl);
    let stop = shutdown.clone();
    // Bound here so a taken port fails the start; registered with the control plane's reactor.
    let admin_listener = admin_listener.into_std().map_err(|source| NodeError::Admin { addr: admin_addr, source })?;
    tasks.spawn_on(
        async move {
            let served = match tokio::net::TcpListener::from_std(admin_listener) {
                Ok(l) => admin::serve(l, state, admin_tls, stop).await,
                Err(e) => Err(e),
            };
            if let Err(e) = served {
                tracing::error!(error = %e, "admin API stopped");
            }
        },
        ctl,
    );

    let dns_note = dns_addr.map(|a| format!(", DNS on {a}")).unwrap_or_default();
    let hosts_note = hosts_file.map(|p| format!(", aliases in {}", p.display())).unwrap_or_default();
    let mesh_note = mesh.as_ref().map(|m| format!(", mesh on {} (UDP, advertised as {})", m.transport.local_addr(), m.advertise)).unwrap_or_default();
    eprintln!(
        "weft ready: {} node `{}` (generation {generation}); admin API and dashboard at http://{admin_addr}/{dns_note}{hosts_note}{mesh_note}; data in {}",
        mode.as_str(),
        config.node.name,
        data_dir.display()
    );
    notify::ready(&format!("{} node {} serving {} services", mode.as_str(), config.node.name, catalog.snapshot().services.len()));
    if let Some(every) = notify::watchdog_interval() {
        tasks.spawn(notify::watchdog(every, shutdown.clone()));
    }

    let handed = loop {
        tokio::select! {
            s = signals.next() => match s {
                Signal::Reload => reloader.reload(&catalog, &mut tasks, &shutdown).await,
                Signal::Stop => break None,
            },
            Some(req) = handover::next_request(&mut handovers) => {
                if let Some(conn) = handover::offer(req, &listener_fds).await {
                    break Some(conn);
                }
            }
        }
    };
    let drain_timeout = Duration::from_secs(reloader.current.node.drain_timeout_s);
    notify::stopping(if handed.is_some() { "handed over to a new process; finishing open connections" } else { "draining" });
    if let Some(conn) = handed {
        // The new process accepts on the same sockets from now on; this one finishes its open
        // connections, and its endpoints stay in service: the new process serves them.
        drain_tx.send_replace(Some(DrainPlan::handed_over(drain_timeout)));
        shutdown.cancel();
        while tasks.join_next().await.is_some() {}
        telemetry::stop_export(exporter).await;
        drop(mesh);
        // The store closes with the last catalog handle; the new process waits for it.
        if let Err(c) = Arc::try_unwrap(catalog) {
            tracing::warn!(handles = Arc::strong_count(&c), "the store is still held; the new process waits for it");
        }
        handover::release(conn).await;
        if let Some(p) = proxy_task {
            let _ = tokio::time::timeout(drain_timeout + Duration::from_secs(2), p).await;
        }
        let _ = writeln!(std::io::stderr(), "weft handed its listeners to a new process; stopped");
        return Ok(());
    }
    drain(catalog.clone(), mesh.as_ref(), &drain_tx, proxy_task, drain_timeout, &mut signals).await;
    tracing::info!("shutting down");
    shutdown.cancel();
    while tasks.join_next().await.is_some() {}
    telemetry::stop_export(exporter).await;
    drop(mesh);
    // Dropping the last catalog handle closes the store cleanly.
    drop(catalog);
    // Not eprintln!, which panics when stderr is gone (the terminal of `weft run &` closed).
    let _ = writeln!(std::io::stderr(), "weft stopped");
    Ok(())
}

#[derive(Debug, PartialEq, Eq)]
enum Signal {
    /// SIGTERM or SIGINT.
    Stop,
    /// SIGHUP.
    Reload,
}

/// SIGTERM and SIGINT stop (a second one cuts a drain short); SIGHUP reloads the config.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals { term: signal(SignalKind::terminate())?, int: signal(SignalKind::interrupt())?, hup: signal(SignalKind::hangup())? })
    }

    async fn next(&mut self) -> Signal {
        tokio::select! {
            _ = self.term.recv() => Signal::Stop,
            _ = self.int.recv() => Signal::Stop,
            _ = self.hup.recv() => Signal::Reload,
        }
    }

    /// The next stop signal; a SIGHUP meanwhile is noted and ignored.
    async fn stop(&mut self) {
        while self.next().await == Signal::Reload {
            tracing::warn!("SIGHUP ignored: the node is stopping");
        }
    }
}

/// The graceful part of a shutdown. The endpoints are marked draining, so peers stop choosing
/// them. The proxy keeps its listeners open through the drain window (`DrainPlan`): at least a
/// moment for the drain to reach every peer, and at most three quarters of `timeout`, but only
/// while client connections are open. Requests in flight, open connections and streams that
/// other nodes relayed here then finish, within `timeout` in all.
async fn drain(catalog: Arc<Catalog>, mesh: Option<&Mesh>, plan: &watch::Sender<Option<DrainPlan>>, mut proxy: Option<tokio::task::JoinHandle<()>>, timeout: Duration, signals: &mut Signals) {
    let deadline = tokio::time::Instant::now() + timeout;
    // Durable writes: off the runtime (the proxy is still serving on it).
    let n = tokio::task::spawn_blocking(move || drain_own_endpoints(&catalog)).await.unwrap_or(0);
    let hold = if mesh.is_some() && n > 0 { DRAIN_PROPAGATION } else { Duration::ZERO };
    plan.send_replace(Some(DrainPlan::new(timeout, hold)));
    tracing::info!(endpoints = n, timeout_s = timeout.as_secs(), "draining: endpoints marked, finishing work in flight");
    let work = async {
        if let Some(p) = proxy.as_mut() {
            let _ = p.await;
        }
        if let Some(m) = mesh {
            while m.transport.stats.active_relays.load(std::sync::atomic::Ordering::Relaxed) > 0 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    tokio::select! {
        _ = work => tracing::info!("drained"),
        _ = tokio::time::sleep_until(deadline) => tracing::warn!("drain timeout reached; closing what is still open"),
        _ = signals.stop() => tracing::warn!("second signal: not waiting for the drain"),
    }
    // The proxy's own wait ends at the same deadline (now, after a second signal); it then
    // removes the hosts file block.
    plan.send_replace(Some(DrainPlan::now()));
    if let Some(p) = proxy.filter(|p| !p.is_finished()) {
        let _ = tokio::time::timeout(Duration::from_secs(2), p).await;
    }
}
