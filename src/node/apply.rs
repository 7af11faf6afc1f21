//! The config's side of a node's catalog: what a config file declares is written through the
//! catalog's one write path at start and on SIGHUP (endpoints with host names resolved), records a
//! config no longer declares are retired, and the node's own endpoints are drained and undrained
//! around a restart.

use super::*;

/// Marks this node's live endpoints draining, remembering which ones it changed.
pub(super) fn drain_own_endpoints(catalog: &Catalog) -> usize {
    let snap = catalog.snapshot();
    let keys: Vec<Key> = snap
        .endpoints
        .values()
        .flatten()
        .filter(|e| e.node == catalog.node() && !e.draining)
        .map(|e| Key::Endpoint(e.namespace.clone(), e.service.clone(), e.id.clone()))
        .collect();
    if let Ok(blob) = serde_json::to_vec(&keys)
        && let Err(e) = catalog.save_blob(DRAINED_BLOB, &blob) {
            tracing::warn!(error = %e, "cannot remember the drained endpoints; they stay draining after a restart");
        }
    let mut n = 0;
    for key in &keys {
        match catalog.update_endpoint(key, |e| e.draining = true) {
            Ok(_) => n += 1,
            Err(e) => tracing::warn!(endpoint = %key, error = %e, "cannot mark draining"),
        }
    }
    n
}

/// Puts back into service the endpoints the previous shutdown drained (an operator's own
/// `weft endpoint drain` stays).
pub(super) fn undrain_after_restart(catalog: &Catalog) {
    let Ok(Some(blob)) = catalog.load_blob(DRAINED_BLOB) else { return };
    let keys: Vec<Key> = serde_json::from_slice(&blob).unwrap_or_default();
    for key in &keys {
        if let Err(e) = catalog.update_endpoint(key, |e| e.draining = false) {
            tracing::debug!(endpoint = %key, error = %e, "drained endpoint not restored");
        }
    }
    let _ = catalog.save_blob(DRAINED_BLOB, b"[]");
}


/// The addresses of the config's endpoints, in order, host names resolved (on the blocking pool);
/// a host that does not resolve is a problem at its entry.
pub(super) async fn resolve_config_addresses(config: &Config) -> Result<Vec<SocketAddr>, NodeError> {
    let mut addresses = Vec::with_capacity(config.endpoints.len());
    let mut problems = Vec::new();
    for e in &config.endpoints {
        match e.value.address.resolve().await {
            Ok(a) => addresses.push(a),
            Err(err) => {
                let v = &e.value;
                problems.push(Problem { at: e.at.clone(), message: format!("endpoint `{}/{}/{}`: `address`: {err}", v.namespace, v.service, v.id) });
            }
        }
    }
    if problems.is_empty() { Ok(addresses) } else { Err(NodeError::Config(problems)) }
}

/// Writes what the config declares through the same path as the API (endpoints at `addresses`,
/// from [`resolve_config_addresses`]), and retires records that a previous config declared but
/// this one no longer does.
pub(super) fn apply_config(catalog: &Catalog, config: &Config, addresses: &[SocketAddr]) -> Result<Vec<Endpoint>, NodeError> {
    let in_mesh = config.tls_files().is_some();
    let mut pending = Vec::new();
    let mut problems = Vec::new();
    let mut desired = HashSet::new();
    let defines = config.node.mode != Mode::Proxy;
    // Not on a registry whose certificate names other namespaces only.
    let granted_default = catalog.check_writable(&Key::Namespace(DEFAULT_NAMESPACE.into())).is_ok();
    if defines && granted_default && !catalog.snapshot().namespaces.contains_key(DEFAULT_NAMESPACE) {
        let ns = Namespace { name: DEFAULT_NAMESPACE.into(), description: "created by weft".into() };
        catalog.write(Body::Namespace(ns), Origin::Api)?;
    }
    let mut put = |at: &crate::config::Origin, body: Body| {
        desired.insert(body.key());
        match catalog.write(body.clone(), Origin::Config) {
            // In a mesh the service may be defined by a registry we have not heard from yet.
            Err(CatalogError::NotFound(Key::Service(..))) if in_mesh => {
                if let Body::Endpoint(ep) = body {
                    pending.push(ep);
                }
            }
            Err(e) => problems.push(Problem { at: at.clone(), message: e.to_string() }),
            Ok(_) => {}
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
    for (e, address) in config.endpoints.iter().zip(addresses) {
        let mut ep = e.value.to_endpoint(&config.node, *address);
        // Draining is not a config setting: an operator's drain survives a reload (and a
        // restart; the drain of a shutdown is undone by `undrain_after_restart`).
        let key = Key::Endpoint(ep.namespace.clone(), ep.service.clone(), ep.id.clone());
        if let Some(crate::catalog::Record { body: Some(Body::Endpoint(old)), .. }) = catalog.record(&key) {
            ep.draining = old.draining;
        }
        put(&e.at, Body::Endpoint(ep));
    }
    if !problems.is_empty() {
        return Err(NodeError::Config(problems));
    }
    let mut stale: Vec<Key> = catalog.config_owned().into_iter().filter(|k| !desired.contains(k)).collect();
    // Children before parents: endpoints, then services, then namespaces.
    stale.sort_by_key(|k| match k {
        Key::Endpoint(..) => 0,
        Key::Service(..) => 1,
        Key::Namespace(..) | Key::Plugin(_) => 2,
    });
    for key in stale {
        match catalog.delete(&key) {
            Ok(()) => tracing::info!(%key, "removed: no longer in the config"),
            Err(e) => tracing::warn!(%key, error = %e, "left in place although no longer in the config"),
        }
    }
    for ep in &pending {
        tracing::warn!(endpoint = %ep.id, service = %format!("{}/{}", ep.namespace, ep.service), "service not known yet; the endpoint registers once a registry's definition arrives");
    }
    Ok(pending)
}

/// Retires endpoints this data dir registered under another node name (`[node] name` changed,
/// or another config used this data dir before). Nothing would ever check, drain or re-assert
/// them again — that is the work of a node of that name, and this node may not write them — so
/// they would stay listed as they last were. Same rule as for records a config no longer
/// declares: the data dir follows the config that runs now (ARCHITECTURE.md).
pub(super) fn retire_former_names(catalog: &Catalog) {
    let former = catalog.endpoints_of_former_names();
    if former.is_empty() {
        return;
    }
    let names: std::collections::BTreeSet<&str> = former.iter().map(|e| e.node.as_str()).collect();
    let names = names.into_iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ");
    tracing::warn!(
        "this data dir was used by node {names}; it now runs as `{}`: removing the {} endpoint(s) registered under the old name (register them again here if they still run, or start with the old `[node] name` to keep them)",
        catalog.node(),
        former.len()
    );
    for e in former {
        let key = Key::Endpoint(e.namespace.clone(), e.service.clone(), e.id.clone());
        match catalog.delete(&key) {
            Ok(()) => tracing::info!(%key, node = %e.node, address = %e.address, "removed: registered by this data dir under its former node name"),
            Err(err) => tracing::warn!(%key, error = %err, "cannot remove an endpoint of the former node name"),
        }
    }
}

/// Registers config endpoints that waited for their service's definition to replicate here.
pub(super) async fn register_pending(catalog: Arc<Catalog>, mut pending: Vec<Endpoint>, shutdown: CancellationToken) {
    let mut rx = catalog.subscribe();
    while !pending.is_empty() {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            r = rx.changed() => if r.is_err() { return },
        }
        pending.retain(|ep| match catalog.write(Body::Endpoint(ep.clone()), Origin::Config) {
            Ok(_) => {
                tracing::info!(endpoint = %ep.id, "registered now that its service is known");
                false
            }
            Err(CatalogError::NotFound(_)) => true,
            Err(e) => {
                tracing::error!(endpoint = %ep.id, error = %e, "cannot register config endpoint");
                false
            }
        });
    }
}

