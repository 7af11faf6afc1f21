//! The composition root: opens the store, restores the catalog, applies the config, binds the
//! admin API, DNS and alias listeners, and runs until SIGTERM/SIGINT. Mode changes the wiring,
//! never the code of a subsystem.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, AdminState, NodeInfo};
use crate::catalog::{Body, Catalog, CatalogError, Key, Namespace, Origin, VipRange};
use crate::config::{Config, DEFAULT_NAMESPACE, Mode, Problem};
use crate::dns::{DnsResponder, HostsBlock, NameTable, system_upstreams};
use crate::policy::Builtin;
use crate::proxy::{Proxy, ProxyParts};
use crate::store::{Store, StoreError};
use crate::telemetry::Stats;

/// How long open connections may finish after shutdown begins.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

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
}

/// Writes what the config declares through the same path as the API, and retires records that a
/// previous config declared but this one no longer does.
fn apply_config(catalog: &Catalog, config: &Config) -> Result<(), NodeError> {
    let mut problems = Vec::new();
    let mut desired = HashSet::new();
    let defines = config.node.mode != Mode::Proxy;
    if defines && !catalog.snapshot().namespaces.contains_key(DEFAULT_NAMESPACE) {
        let ns = Namespace { name: DEFAULT_NAMESPACE.into(), description: "created by weft".into() };
        catalog.write(Body::Namespace(ns), Origin::Api)?;
    }
    let mut put = |at: &crate::config::Origin, body: Body| {
        desired.insert(body.key());
        if let Err(e) = catalog.write(body, Origin::Config) {
            problems.push(Problem { at: at.clone(), message: e.to_string() });
        }
    };
    if defines {
        for n in &config.namespaces {
            put(&n.at, Body::Namespace(n.value.clone()));
        }
        for s in &config.services {
            put(&s.at, Body::Service(s.value.clone()));
        }
    }
    for e in &config.endpoints {
        put(&e.at, Body::Endpoint(e.value.to_endpoint(&config.node)));
    }
    if !problems.is_empty() {
        return Err(NodeError::Config(problems));
    }
    let mut stale: Vec<Key> = catalog.config_owned().into_iter().filter(|k| !desired.contains(k)).collect();
    // Children before parents: endpoints, then services, then namespaces.
    stale.sort_by_key(|k| match k {
        Key::Endpoint(..) => 0,
        Key::Service(..) => 1,
        Key::Namespace(..) => 2,
    });
    for key in stale {
        match catalog.delete(&key) {
            Ok(()) => tracing::info!(%key, "removed: no longer in the config"),
            Err(e) => tracing::warn!(%key, error = %e, "left in place although no longer in the config"),
        }
    }
    Ok(())
}

pub async fn run(config: Config) -> Result<(), NodeError> {
    let data_dir: PathBuf = config.node.data_dir();
    let store = Store::open(&data_dir)?;
    let vip_range = VipRange::parse(&config.dns.vip_cidr)
        .map_err(|e| CatalogError::Invalid { field: "dns.vip_cidr".into(), message: e })?;
    let catalog = Arc::new(Catalog::open(store, &config.node.name, vip_range)?);
    apply_config(&catalog, &config)?;

    let shutdown = CancellationToken::new();
    let stats = Arc::new(Stats::default());
    let table = Arc::new(ArcSwap::from_pointee(Default::default()));
    let listener_errors = Arc::new(Mutex::new(Default::default()));
    let names: NameTable = Arc::new(ArcSwap::from_pointee(Default::default()));
    let mode = config.node.mode;

    let admin_listener = admin::bind(config.admin.listen).await.map_err(|source| NodeError::Admin { addr: config.admin.listen, source })?;
    let admin_addr = admin_listener.local_addr().unwrap_or(config.admin.listen);

    let mut tasks = tokio::task::JoinSet::new();
    let mut dns_addr = None;
    if mode.runs_proxy() && config.dns.enabled {
        let upstream = config.dns.upstream.clone().unwrap_or_else(|| system_upstreams(config.dns.listen));
        let dns = DnsResponder::bind(config.dns.listen, upstream, config.dns.ttl, names.clone()).await?;
        dns_addr = Some(dns.local_addr());
        let stop = shutdown.clone();
        tasks.spawn(async move {
            if let Err(e) = dns.run(stop).await {
                tracing::error!(error = %e, "DNS responder stopped");
            }
        });
    }
    let hosts_file = config.dns.hosts_file.clone().filter(|_| mode.runs_proxy());
    if mode.runs_proxy() {
        let clients: HashSet<String> = config.clients.iter().map(|c| c.value.namespace.clone()).collect();
        let mut proxy = Proxy::new(ProxyParts {
            policy: Arc::new(Builtin::default()),
            stats: stats.clone(),
            table: table.clone(),
            zone: config.node.zone.clone(),
            clients,
            names: names.clone(),
            hosts: hosts_file.clone().map(HostsBlock::new),
            errors: listener_errors.clone(),
            shutdown: shutdown.clone(),
        });
        let rx = catalog.subscribe();
        // Listeners are bound before the node reports ready.
        proxy.apply(&catalog.snapshot()).await;
        tasks.spawn(proxy.run(rx, SHUTDOWN_GRACE));
    }

    let generation = catalog.next_generation()?;
    let info = NodeInfo {
        name: config.node.name.clone(),
        mode,
        generation,
        zone: config.node.zone.clone(),
        admin: admin_addr,
        dns: dns_addr,
        hosts_file: hosts_file.clone(),
        data_dir: data_dir.clone(),
        version: env!("CARGO_PKG_VERSION"),
    };
    let state = Arc::new(AdminState { catalog: catalog.clone(), stats, table, listener_errors, info, started: std::time::Instant::now() });
    let stop = shutdown.clone();
    tasks.spawn(async move {
        if let Err(e) = admin::serve(admin_listener, state, stop).await {
            tracing::error!(error = %e, "admin API stopped");
        }
    });

    let dns_note = dns_addr.map(|a| format!(", DNS on {a}")).unwrap_or_default();
    let hosts_note = hosts_file.map(|p| format!(", aliases in {}", p.display())).unwrap_or_default();
    eprintln!(
        "weft ready: {} node `{}` (generation {generation}); admin API and dashboard at http://{admin_addr}/{dns_note}{hosts_note}; data in {}",
        mode.as_str(),
        config.node.name,
        data_dir.display()
    );

    wait_for_signal().await.map_err(NodeError::Signals)?;
    tracing::info!("shutting down");
    shutdown.cancel();
    while tasks.join_next().await.is_some() {}
    // Dropping the last catalog handle closes the store cleanly.
    drop(catalog);
    eprintln!("weft stopped");
    Ok(())
}

async fn wait_for_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
