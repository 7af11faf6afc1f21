//! An immutable view of the live catalog, rebuilt after every committed change.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use super::{Body, Endpoint, Key, Namespace, PluginRecord, Record, Service};

type ServiceKey = (String, String);

#[derive(Debug, Default)]
pub struct Snapshot {
    /// Increases with every published change; lets readers skip work when nothing moved.
    pub seq: u64,
    pub namespaces: BTreeMap<String, Namespace>,
    pub services: BTreeMap<ServiceKey, Service>,
    /// Live endpoints per service, sorted by id.
    pub endpoints: BTreeMap<ServiceKey, Vec<Endpoint>>,
    /// Cloud Map's InstancesRevision per service.
    pub revisions: BTreeMap<ServiceKey, u64>,
    /// VIPs of the dns names that live services use as aliases.
    pub vips: BTreeMap<String, Ipv4Addr>,
    /// Plugins carried by the mesh, by name (their bytes are shared, not copied).
    pub plugins: BTreeMap<String, PluginRecord>,
    /// Aliases two services claim (two registries wrote them concurrently; a local write is
    /// refused instead), and who got each.
    pub alias_conflicts: Vec<AliasConflict>,
}

/// An alias (name:port) claimed by more than one service. It goes to the service first in
/// (namespace, name) order — the same answer on every node whatever order the records arrived
/// in, and stable across updates of either service; the others lose it in this snapshot (no
/// listener binds it for them) until the conflict is resolved by renaming or deleting.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct AliasConflict {
    pub alias: String,
    pub owner: String,
    pub refused: Vec<String>,
}

impl Drop for Snapshot {
    /// A large snapshot is freed on a background thread: its last reference often goes on the
    /// runtime's thread (`crate::background::drop_later`).
    fn drop(&mut self) {
        if self.services.len() + self.endpoints.len() < 64 {
            return;
        }
        let maps = (
            std::mem::take(&mut self.namespaces),
            std::mem::take(&mut self.services),
            std::mem::take(&mut self.endpoints),
            std::mem::take(&mut self.revisions),
            std::mem::take(&mut self.vips),
            std::mem::take(&mut self.plugins),
            std::mem::take(&mut self.alias_conflicts),
        );
        crate::background::drop_later(maps);
    }
}

impl Snapshot {
    pub fn build(records: &BTreeMap<Key, Record>, vips: &BTreeMap<String, Ipv4Addr>, seq: u64) -> Snapshot {
        let mut s = Snapshot::default();
        s.seq = seq;
        for r in records.values() {
            if let Key::Endpoint(ns, svc, _) = &r.key {
                let rev = s.revisions.entry((ns.clone(), svc.clone())).or_default();
                *rev = (*rev).max(r.registered);
            }
            match &r.body {
                None => {}
                Some(Body::Namespace(n)) => {
                    s.namespaces.insert(n.name.clone(), n.clone());
                }
                Some(Body::Service(svc)) => {
                    for a in &svc.aliases {
                        if let Some(ip) = vips.get(&a.dns_name) {
                            s.vips.insert(a.dns_name.clone(), *ip);
                        }
                    }
                    s.services.insert((svc.namespace.clone(), svc.name.clone()), svc.clone());
                }
                Some(Body::Endpoint(e)) => {
                    s.endpoints.entry((e.namespace.clone(), e.service.clone())).or_default().push(e.clone());
                }
                Some(Body::Plugin(p)) => {
                    s.plugins.insert(p.name.clone(), p.clone());
                }
            }
        }
        // Endpoints of a deleted service (possible only through replication races) are not served.
        s.endpoints.retain(|k, _| s.services.contains_key(k));
        s.settle_aliases();
        s
    }

    /// Gives each alias claimed twice to one service (see [`AliasConflict`]).
    fn settle_aliases(&mut self) {
        let mut owner: BTreeMap<(String, u16), &ServiceKey> = BTreeMap::new();
        let mut lost: Vec<(ServiceKey, (String, u16))> = Vec::new();
        for (key, svc) in &self.services {
            for a in &svc.aliases {
                let alias = (a.dns_name.clone(), a.port);
                match owner.entry(alias) {
                    std::collections::btree_map::Entry::Occupied(taken) => lost.push((key.clone(), taken.key().clone())),
                    std::collections::btree_map::Entry::Vacant(free) => {
                        free.insert(key);
                    }
                }
            }
        }
        let name = |k: &ServiceKey| format!("{}/{}", k.0, k.1);
        let mut conflicts: BTreeMap<(String, u16), AliasConflict> = BTreeMap::new();
        for (key, alias) in &lost {
            let c = conflicts.entry(alias.clone()).or_insert_with(|| AliasConflict { alias: format!("{}:{}", alias.0, alias.1), owner: name(owner[alias]), refused: Vec::new() });
            c.refused.push(name(key));
        }
        for (key, alias) in lost {
            if let Some(svc) = self.services.get_mut(&key) {
                svc.aliases.retain(|a| (a.dns_name.as_str(), a.port) != (alias.0.as_str(), alias.1));
            }
        }
        self.alias_conflicts = conflicts.into_values().collect();
    }

    pub fn endpoints_of(&self, namespace: &str, service: &str) -> &[Endpoint] {
        self.endpoints.get(&(namespace.to_string(), service.to_string())).map(Vec::as_slice).unwrap_or(&[])
    }
}
