//! Plugins carried by the mesh: the catalog's `plugin` records (pushed to a registry with
//! `weft plugin push`, replicated and persisted like services) loaded on the nodes that proxy a
//! service naming them.
//!
//! A node compiles a mesh plugin only when one of its services uses it (a registry proxies nothing,
//! so it only stores and replicates). A `[[plugin]]` of the same name in the node's own config
//! wins: the operator of a host can always pin a local version. The record's bytes were checked
//! against their sha256 before they reached the catalog (`catalog::check_plugin`); a component
//! that does not compile or does not match the WIT here is refused like a bad file, named by
//! plugin and hash, and any version already loaded keeps serving.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{Origin, PluginError, PluginHost, PluginSpec, Slot};
use crate::catalog::{PluginRecord, Snapshot};

/// The runtime limits a mesh record asks for, as a spec (it has no file).
fn spec_of(r: &PluginRecord) -> PluginSpec {
    PluginSpec { name: r.name.clone(), path: PathBuf::new(), config: r.config.clone(), fuel: r.fuel, memory_mb: r.memory_mb, fail: r.fail }
}

/// Everything the mesh plugins' state on this node depends on; a sync runs only when it changes
/// (the catalog publishes a snapshot on every health change, which must not recompile anything).
#[derive(Debug, Default, PartialEq)]
struct Fingerprint {
    records: Vec<(String, String, PluginSpec)>,
    used: BTreeSet<String>,
    local: BTreeSet<String>,
}

/// The plugin names services of the catalog use (none on a node that proxies nothing).
pub fn used_by_services(snap: &Snapshot, proxies: bool) -> BTreeSet<String> {
    if !proxies {
        return BTreeSet::new();
    }
    snap.services.values().filter_map(|s| s.policy.clone()).filter(|p| snap.plugins.contains_key(p)).collect()
}

impl PluginHost {
    /// Brings the mesh plugins in line with the catalog's records: a used one is loaded (from the
    /// artifact cache after a restart), an unused one is kept as a record only, one whose record
    /// is gone is unloaded. Blocking: compiles. Returns the refusals.
    pub fn sync_mesh(&self, records: &BTreeMap<String, PluginRecord>, used: &BTreeSet<String>) -> Vec<PluginError> {
        self.forget_mesh(|name| !records.contains_key(name));
        let mut errors = Vec::new();
        for (name, record) in records {
            if self.is_local(name) {
                tracing::warn!(plugin = %name, sha256 = %&record.sha256[..12], "a plugin of this name is configured in this node's file; the mesh's version is not used here");
                continue;
            }
            let spec = spec_of(record);
            let idle = !used.contains(name);
            let result = if idle {
                self.swap_if_present(name);
                Ok(())
            } else {
                let file = format!("mesh plugin `{name}` (sha256 {}…)", &record.sha256[..12]);
                self.install(spec.clone(), &record.component, &file)
            };
            let slot = Slot { spec, origin: Origin::Mesh, stamp: None, last_refusal: result.as_ref().err().map(|e| e.to_string()), idle };
            self.slots.lock().unwrap_or_else(|e| e.into_inner()).insert(name.clone(), slot);
            errors.extend(result.err());
        }
        errors
    }

    fn is_local(&self, name: &str) -> bool {
        self.slots.lock().unwrap_or_else(|e| e.into_inner()).get(name).is_some_and(|s| matches!(s.origin, Origin::File(_)))
    }

    /// Names of plugins configured from files on this node.
    fn local_names(&self) -> BTreeSet<String> {
        let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.iter().filter(|(_, s)| matches!(s.origin, Origin::File(_))).map(|(n, _)| n.clone()).collect()
    }

    /// Unloads and forgets the mesh plugins `gone` says are gone.
    fn forget_mesh(&self, gone: impl Fn(&str) -> bool) {
        let removed: Vec<String> = {
            let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            let names: Vec<String> = slots.iter().filter(|(n, s)| s.origin == Origin::Mesh && gone(n)).map(|(n, _)| n.clone()).collect();
            for n in &names {
                slots.remove(n);
            }
            names
        };
        for name in removed {
            tracing::info!(plugin = %name, "mesh plugin deleted from the catalog: unloaded");
            self.swap_if_present(&name);
        }
    }

    /// Unloads `name` if a version of it is live.
    fn swap_if_present(&self, name: &str) {
        if self.live.load().contains_key(name) {
            self.swap(|m| {
                m.remove(name);
            });
            if let Some(r) = &self.registry {
                r.drop_plugin(name);
            }
        }
    }

    fn fingerprint(&self, snap: &Snapshot, proxies: bool) -> Fingerprint {
        Fingerprint {
            records: snap.plugins.values().map(|r| (r.name.clone(), r.sha256.clone(), spec_of(r))).collect(),
            used: used_by_services(snap, proxies),
            local: self.local_names(),
        }
    }
}

/// Keeps the mesh plugins in line with the catalog until `stop`. Wakes on every catalog snapshot
/// and every plugin swap (a `[[plugin]]` removed from the file lets the mesh's version in), syncs
/// only when the fingerprint moved, and compiles off the runtime threads.
pub async fn run(host: Arc<PluginHost>, mut catalog: watch::Receiver<Arc<Snapshot>>, proxies: bool, stop: CancellationToken) {
    let mut swapped = host.subscribe();
    let mut last = None;
    loop {
        let snap = catalog.borrow_and_update().clone();
        let now = host.fingerprint(&snap, proxies);
        if last.as_ref() != Some(&now) {
            let (h, used) = (host.clone(), now.used.clone());
            let errors = tokio::task::spawn_blocking(move || h.sync_mesh(&snap.plugins, &used)).await.unwrap_or_default();
            for e in errors {
                tracing::error!(error = %e, "mesh plugin refused on this node; the previous version (if any) keeps serving");
            }
            last = Some(now);
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            r = catalog.changed() => if r.is_err() { return },
            _ = swapped.changed() => {}
        }
    }
}
