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
}

impl Snapshot {
    pub fn build(records: &BTreeMap<Key, Record>, vips: &BTreeMap<String, Ipv4Addr>, seq: u64) -> Snapshot {
        let mut s = Snapshot { seq, ..Snapshot::default() };
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
        s
    }

    pub fn endpoints_of(&self, namespace: &str, service: &str) -> &[Endpoint] {
        self.endpoints.get(&(namespace.to_string(), service.to_string())).map(Vec::as_slice).unwrap_or(&[])
    }
}
