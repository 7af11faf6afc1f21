//! The catalog: every namespace, service and endpoint as a versioned record. All writers (config,
//! admin API, CLI through the API, and later gossip) go through [`Catalog::write`] or
//! [`Catalog::merge`]; each committed change is persisted and then published as an immutable
//! [`Snapshot`] that the routing table, DNS and discovery read without locks.

mod discover;
mod hlc;
mod snapshot;
mod types;
pub mod validate;
mod vip;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

pub use discover::{DiscoverQuery, DiscoverResult, HealthFilter, discover};
pub use hlc::Hlc;
pub use snapshot::Snapshot;
pub use types::*;
pub use vip::VipRange;

use crate::store::{Batch, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("`{field}` {message}")]
    Invalid { field: String, message: String },
    #[error("{0} does not exist")]
    NotFound(Key),
    #[error("{0}")]
    Conflict(String),
    #[error("{key} is still in use: {detail}")]
    InUse { key: Key, detail: String },
    #[error("no free VIP left in {0} for alias `{1}`")]
    VipsExhausted(VipRange, String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

struct State {
    records: BTreeMap<Key, Record>,
    vips: BTreeMap<String, Ipv4Addr>,
    clock: Hlc,
    seq: u64,
}

pub struct Catalog {
    state: Mutex<State>,
    store: Store,
    node: String,
    vip_range: VipRange,
    tx: watch::Sender<Arc<Snapshot>>,
}

impl Catalog {
    /// Restores the catalog from the store; the first snapshot is ready before anything listens.
    pub fn open(store: Store, node: &str, vip_range: VipRange) -> Result<Catalog, CatalogError> {
        let loaded = store.load()?;
        let last = loaded.records.iter().map(|r| r.version.hlc).max().unwrap_or(0);
        let records = loaded.records.into_iter().map(|r| (r.key.clone(), r)).collect();
        let state = State { records, vips: loaded.vips, clock: Hlc::new(last), seq: 0 };
        let (tx, _) = watch::channel(Arc::new(Snapshot::build(&state.records, &state.vips, 0)));
        Ok(Catalog { state: Mutex::new(state), store, node: node.to_string(), vip_range, tx })
    }

    /// Starts a new incarnation of this node: called once per start, after every listener is
    /// bound, so a start that fails does not consume a generation.
    pub fn next_generation(&self) -> Result<u64, CatalogError> {
        Ok(self.store.next_generation()?)
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.tx.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.tx.subscribe()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a half-applied write: records change only
        // after the store commit succeeds, so the state is still consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn live<'a>(state: &'a State, key: &Key) -> Option<&'a Body> {
        state.records.get(key).and_then(|r| r.body.as_ref())
    }

    /// Creates or replaces one record after checking it against the rest of the catalog.
    pub fn write(&self, body: Body, origin: Origin) -> Result<Body, CatalogError> {
        self.write_with(body, origin, false)
    }

    /// Creates a record that must not exist yet (Cloud Map's CreateService / CreateNamespace).
    pub fn create(&self, body: Body, origin: Origin) -> Result<Body, CatalogError> {
        self.write_with(body, origin, true)
    }

    fn write_with(&self, mut body: Body, origin: Origin, create_only: bool) -> Result<Body, CatalogError> {
        let mut state = self.lock();
        if create_only && Self::live(&state, &body.key()).is_some() {
            return Err(CatalogError::Conflict(format!("{} already exists", body.key())));
        }
        let mut new_vips = Vec::new();
        match &mut body {
            Body::Namespace(ns) => validate::namespace(ns)?,
            Body::Service(svc) => {
                validate::service(svc)?;
                if Self::live(&state, &Key::Namespace(svc.namespace.clone())).is_none() {
                    return Err(CatalogError::NotFound(Key::Namespace(svc.namespace.clone())));
                }
                self.check_aliases(&state, svc)?;
                let mut taken = state.vips.clone();
                for a in &svc.aliases {
                    if !taken.contains_key(&a.dns_name) {
                        let ip = self
                            .vip_range
                            .allocate(&taken)
                            .ok_or_else(|| CatalogError::VipsExhausted(self.vip_range, a.dns_name.clone()))?;
                        taken.insert(a.dns_name.clone(), ip);
                        new_vips.push((a.dns_name.clone(), ip));
                    }
                }
            }
            Body::Endpoint(ep) => {
                validate::endpoint(ep)?;
                if ep.node.is_empty() {
                    ep.node = self.node.clone();
                }
                let svc = Key::Service(ep.namespace.clone(), ep.service.clone());
                if Self::live(&state, &svc).is_none() {
                    return Err(CatalogError::NotFound(svc));
                }
            }
        }
        let key = body.key();
        let hlc = state.clock.now();
        let previous = state.records.get(&key);
        if previous.and_then(|r| r.body.as_ref()) == Some(&body) && previous.map(|r| r.origin) == Some(origin) && new_vips.is_empty() {
            return Ok(body);
        }
        let registered = match (&body, previous.and_then(|r| r.body.as_ref())) {
            // A health-only change keeps the registration clock, so the discovery revision holds.
            (Body::Endpoint(new), Some(Body::Endpoint(old))) if Self::same_registration(new, old) => {
                previous.map(|r| r.registered).unwrap_or(hlc)
            }
            _ => hlc,
        };
        let record = Record { key: key.clone(), body: Some(body.clone()), version: Version { hlc, writer: self.node.clone() }, origin, registered };
        let vip_refs = new_vips.iter().map(|(n, ip)| (n.as_str(), *ip)).collect();
        self.store.commit(&Batch { records: vec![&record], vips: vip_refs })?;
        state.vips.extend(new_vips);
        state.records.insert(key, record);
        self.publish(&mut state);
        Ok(body)
    }

    fn same_registration(a: &Endpoint, b: &Endpoint) -> bool {
        a.address == b.address && a.zone == b.zone && a.attributes == b.attributes && a.node == b.node
    }

    /// An alias (name + port) belongs to one service; two services sharing it would make the
    /// listener's target ambiguous.
    fn check_aliases(&self, state: &State, svc: &Service) -> Result<(), CatalogError> {
        let me = Key::Service(svc.namespace.clone(), svc.name.clone());
        for r in state.records.values() {
            let Some(Body::Service(other)) = &r.body else { continue };
            if r.key == me {
                continue;
            }
            if let Some(a) = other.aliases.iter().find(|a| svc.aliases.contains(a)) {
                return Err(CatalogError::Conflict(format!(
                    "alias {}:{} is already used by service {}/{}",
                    a.dns_name, a.port, other.namespace, other.name
                )));
            }
        }
        Ok(())
    }

    /// Deletes a record, leaving a tombstone that replicates and survives restarts.
    pub fn delete(&self, key: &Key) -> Result<(), CatalogError> {
        let mut state = self.lock();
        if Self::live(&state, key).is_none() {
            return Err(CatalogError::NotFound(key.clone()));
        }
        let children: Vec<String> = state
            .records
            .iter()
            .filter(|(_, r)| r.body.is_some())
            .filter_map(|(k, _)| match (key, k) {
                (Key::Namespace(n), Key::Service(sn, s)) if n == sn => Some(format!("service {s}")),
                (Key::Service(n, s), Key::Endpoint(en, es, id)) if n == en && s == es => Some(format!("endpoint {id}")),
                _ => None,
            })
            .take(5)
            .collect();
        if !children.is_empty() {
            return Err(CatalogError::InUse { key: key.clone(), detail: format!("delete {} first", children.join(", ")) });
        }
        let hlc = state.clock.now();
        let origin = state.records.get(key).map(|r| r.origin).unwrap_or_default();
        let record = Record { key: key.clone(), body: None, version: Version { hlc, writer: self.node.clone() }, origin, registered: hlc };
        self.store.commit(&Batch { records: vec![&record], vips: vec![] })?;
        state.records.insert(key.clone(), record);
        self.publish(&mut state);
        Ok(())
    }

    /// Merges a record from another replica: the higher version wins, so every replica that has
    /// seen the same records holds the same state whatever the order they arrived in.
    pub fn merge(&self, mut record: Record) -> Result<bool, CatalogError> {
        let mut state = self.lock();
        state.clock.observe(record.version.hlc);
        if state.records.get(&record.key).is_some_and(|r| r.version >= record.version) {
            return Ok(false);
        }
        record.origin = Origin::Remote;
        self.store.commit(&Batch { records: vec![&record], vips: vec![] })?;
        state.records.insert(record.key.clone(), record);
        self.publish(&mut state);
        Ok(true)
    }

    /// Keys of live records the config file wrote, to retire those it no longer lists.
    pub fn config_owned(&self) -> Vec<Key> {
        let state = self.lock();
        state.records.values().filter(|r| r.body.is_some() && r.origin == Origin::Config).map(|r| r.key.clone()).collect()
    }

    pub fn vip_of(&self, dns_name: &str) -> Option<Ipv4Addr> {
        self.lock().vips.get(dns_name).copied()
    }

    fn publish(&self, state: &mut State) {
        state.seq += 1;
        let snap = Snapshot::build(&state.records, &state.vips, state.seq);
        self.tx.send_replace(Arc::new(snap));
    }
}

#[cfg(test)]
mod tests;
