//! The catalog: every namespace, service and endpoint as a versioned record. All writers (config,
//! admin API, CLI through the API, and later gossip) go through [`Catalog::write`] or
//! [`Catalog::merge`]; each committed change is persisted and then published as an immutable
//! [`Snapshot`] that the routing table, DNS and discovery read without locks.

mod address;
mod discover;
mod hlc;
mod index;
mod plugin;
mod publish;
mod read;
pub mod rules;
mod settings;
mod snapshot;
mod types;
pub mod validate;
mod vip;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, watch};

pub use address::{AddressError, EndpointAddress};
pub use discover::{DiscoverQuery, DiscoverResult, HealthFilter, discover};
pub use hlc::Hlc;
pub use index::{Scope, Totals, record_hash};
pub use plugin::{Fail, MAX_COMPONENT_BYTES, PluginRecord, base64_component, check as check_plugin, check_limits as check_plugin_limits, sha256_hex};
pub use rules::{RetryOverride, RouteRule};
pub use settings::{CheckKind, HealthCheck, LbKind, OutlierConfig, RetryConfig};
pub use snapshot::{AliasConflict, Snapshot};
pub use types::*;
pub use vip::VipRange;

use crate::store::{Batch, Store, StoreError, Ticket};
use publish::Publisher;

/// How a local write treats what is already there.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Create or replace (a registration).
    Write,
    /// Create only.
    Create,
    /// Change fields of an existing record (health, draining); no registration rules.
    Update,
}

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
    #[error("this is a proxy node: {what} are defined on a registry node; {registries}")]
    ReadOnly { what: &'static str, registries: String },
    #[error("this node's certificate does not name namespace `{namespace}` ({granted}): a node registers and defines only in the namespaces its certificate names (`weft ca issue --namespace {namespace}`)")]
    NotGranted { namespace: String, granted: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

struct State {
    records: BTreeMap<Key, Record>,
    vips: BTreeMap<String, Ipv4Addr>,
    clock: Hlc,
    /// Counts changes; a snapshot carries the count it was built at.
    seq: u64,
    /// Records changed since the publisher last copied them, and whether the VIPs did (see
    /// [`Publisher`]).
    changed: std::collections::BTreeSet<Key>,
    vips_changed: bool,
    /// The records by writer and clock, for anti-entropy (`read.rs`).
    index: index::WriterIndex,
}

impl State {
    /// The one way a record goes in: the index and the publisher's change list follow.
    fn put(&mut self, record: Record) {
        self.index.replace(self.records.get(&record.key), &record);
        self.changed.insert(record.key.clone());
        self.records.insert(record.key.clone(), record);
    }
}

pub struct Catalog {
    state: Arc<Mutex<State>>,
    store: Store,
    node: String,
    vip_range: VipRange,
    tx: Arc<watch::Sender<Arc<Snapshot>>>,
    publisher: Arc<Publisher>,
    publisher_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Records this node writes itself, for the gossip task to push to peers.
    local: Mutex<Option<mpsc::UnboundedSender<Record>>>,
    /// Replicated records committed without waiting for the disk, not flushed yet.
    unflushed: std::sync::atomic::AtomicBool,
    /// Set on proxy nodes: where namespaces and services are written instead (shown in errors).
    read_only: Mutex<Option<Vec<String>>>,
    /// The namespaces this node's certificate names (`crate::authz`): the only ones it writes
    /// in. `None`: every namespace.
    granted: Mutex<Option<std::collections::BTreeSet<String>>>,
}

impl Drop for Catalog {
    fn drop(&mut self) {
        self.publisher.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.publisher.poke();
        if let Some(t) = self.publisher_thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = t.join();
        }
    }
}

impl Catalog {
    /// Restores the catalog from the store; the first snapshot is ready before anything listens.
    pub fn open(store: Store, node: &str, vip_range: VipRange) -> Result<Catalog, CatalogError> {
        let loaded = store.load()?;
        let last = loaded.records.iter().map(|r| r.version.hlc).max().unwrap_or(0);
        let records: BTreeMap<Key, Record> = loaded.records.into_iter().map(|r| (r.key.clone(), r)).collect();
        let index = index::WriterIndex::build(records.values());
        let state = State { records, vips: loaded.vips, clock: Hlc::new(last), seq: 0, changed: Default::default(), vips_changed: false, index };
        let (tx, _) = watch::channel(Arc::new(Snapshot::build(&state.records, &state.vips, 0)));
        let (state, tx) = (Arc::new(Mutex::new(state)), Arc::new(tx));
        let publisher = Arc::new(Publisher { poked: Mutex::new(false), wake: std::sync::Condvar::new(), stop: Default::default() });
        let (p, st, t) = (publisher.clone(), state.clone(), tx.clone());
        let thread = std::thread::Builder::new()
            .name("weft-catalog-publish".into())
            .spawn(move || {
                crate::background::lower_this_thread("weft-catalog-publish");
                p.run(&st, &t)
            })
            .map_err(|e| CatalogError::Conflict(format!("cannot start the catalog's publisher thread: {e}")))?;
        Ok(Catalog {
            state,
            store,
            node: node.to_string(),
            vip_range,
            tx,
            publisher,
            publisher_thread: Mutex::new(Some(thread)),
            local: Mutex::new(None),
            read_only: Mutex::new(None),
            granted: Mutex::new(None),
            unflushed: Default::default(),
        })
    }

    /// Every record this node writes from now on, in commit order.
    pub fn local_changes(&self) -> mpsc::UnboundedReceiver<Record> {
        let (tx, rx) = mpsc::unbounded_channel();
        *self.local.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx);
        rx
    }

    fn announce(&self, record: &Record) {
        if let Some(tx) = self.local.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            let _ = tx.send(record.clone());
        }
    }

    /// Makes namespaces and services read-only here (a proxy node); `registries` are named in the
    /// error a write attempt gets.
    pub fn set_read_only(&self, registries: Vec<String>) {
        *self.read_only.lock().unwrap_or_else(|p| p.into_inner()) = Some(registries);
    }

    /// Limits this node's own writes to the namespaces its certificate names (`None`: every one).
    pub fn set_granted_namespaces(&self, granted: Option<std::collections::BTreeSet<String>>) {
        *self.granted.lock().unwrap_or_else(|p| p.into_inner()) = granted;
    }

    /// Keeps the registry list in write errors current (only on read-only nodes).
    pub fn update_registries(&self, registries: Vec<String>) {
        let mut ro = self.read_only.lock().unwrap_or_else(|p| p.into_inner());
        if ro.is_some() {
            *ro = Some(registries);
        }
    }

    /// Saves and waits for the disk (a blocking call).
    pub fn save_blob(&self, name: &str, value: &[u8]) -> Result<(), CatalogError> {
        Ok(self.store.save_blob(name, value)?)
    }

    /// Queues a blob for the disk without waiting, for runtime threads.
    pub fn save_blob_background(&self, name: &str, value: &[u8]) {
        self.store.save_blob_background(name, value);
    }

    pub fn load_blob(&self, name: &str) -> Result<Option<Vec<u8>>, CatalogError> {
        Ok(self.store.load_blob(name)?)
    }

    /// Whether this node may write `key`: in a namespace its certificate names, and on a proxy
    /// node only its endpoints (definitions are read-only there).
    pub fn check_writable(&self, key: &Key) -> Result<(), CatalogError> {
        let namespace = match key {
            Key::Namespace(n) | Key::Service(n, _) | Key::Endpoint(n, ..) => Some(n),
            Key::Plugin(_) => None,
        };
        if let (Some(ns), Some(granted)) = (namespace, self.granted.lock().unwrap_or_else(|p| p.into_inner()).as_ref())
            && !granted.contains(ns)
        {
            let names = granted.iter().map(String::as_str).collect::<Vec<_>>().join(", ");
            return Err(CatalogError::NotGranted { namespace: ns.clone(), granted: format!("it names {names}") });
        }
        let what = match key {
            Key::Namespace(_) => "namespaces",
            Key::Service(..) => "services",
            Key::Plugin(_) => "plugins",
            Key::Endpoint(..) => return Ok(()),
        };
        match self.read_only.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            None => Ok(()),
            Some(r) if r.is_empty() => Err(CatalogError::ReadOnly { what, registries: "none is reachable right now".into() }),
            Some(r) if r.len() == 1 => Err(CatalogError::ReadOnly { what, registries: format!("write to {}", r[0]) }),
            Some(r) => Err(CatalogError::ReadOnly { what, registries: format!("write to one of {}", r.join(", ")) }),
        }
    }

    /// Starts a new incarnation of this node: called once per start, after every listener is
    /// bound, so a start that fails does not consume a generation.
    pub fn next_generation(&self) -> Result<u64, CatalogError> {
        Ok(self.store.next_generation()?)
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    /// The current snapshot, this caller's own latest write included (built now if the
    /// publisher has not sent it yet).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        let published = self.tx.borrow().clone();
        let state = self.lock();
        if published.seq >= state.seq {
            return published;
        }
        let snap = Arc::new(Snapshot::build(&state.records, &state.vips, state.seq));
        drop(state);
        publish::offer(&self.tx, snap.clone());
        snap
    }

    /// The last published snapshot, at most the publisher's interval (100 ms) behind: for readers that need
    /// not see their own write, so they never build one (on a runtime thread, a build costs
    /// O(catalog)).
    pub fn latest(&self) -> Arc<Snapshot> {
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
    /// Returns once the record is on disk: call it from a blocking thread (the admin API and the
    /// config do), or use [`Catalog::write_background`] on a runtime thread.
    pub fn write(&self, body: Body, origin: Origin) -> Result<Body, CatalogError> {
        self.write_with(body, origin, Mode::Write, true)
    }

    /// [`Catalog::write`] without waiting for the disk (the write is published at once and
    /// committed by the store's writer in order): for runtime threads.
    pub fn write_background(&self, body: Body, origin: Origin) -> Result<Body, CatalogError> {
        self.write_with(body, origin, Mode::Write, false)
    }

    /// Creates a record that must not exist yet (Cloud Map's CreateService / CreateNamespace).
    pub fn create(&self, body: Body, origin: Origin) -> Result<Body, CatalogError> {
        self.write_with(body, origin, Mode::Create, true)
    }

    /// Changes this node's own endpoint in place (draining), keeping its origin; returns the
    /// endpoint as written, once on disk (a blocking call).
    pub fn update_endpoint(&self, key: &Key, change: impl FnOnce(&mut Endpoint)) -> Result<Endpoint, CatalogError> {
        self.update_endpoint_with(key, change, true)
    }

    /// [`Catalog::update_endpoint`] without waiting for the disk: health results, from runtime
    /// threads (a restart checks health again anyway).
    pub fn update_endpoint_background(&self, key: &Key, change: impl FnOnce(&mut Endpoint)) -> Result<Endpoint, CatalogError> {
        self.update_endpoint_with(key, change, false)
    }

    fn update_endpoint_with(&self, key: &Key, change: impl FnOnce(&mut Endpoint), wait: bool) -> Result<Endpoint, CatalogError> {
        let (mut ep, origin) = {
            let state = self.lock();
            match state.records.get(key) {
                Some(Record { body: Some(Body::Endpoint(ep)), origin, .. }) => (ep.clone(), *origin),
                _ => return Err(CatalogError::NotFound(key.clone())),
            }
        };
        change(&mut ep);
        match self.write_with(Body::Endpoint(ep), origin, Mode::Update, wait)? {
            Body::Endpoint(ep) => Ok(ep),
            _ => unreachable!("an endpoint write returns the endpoint"),
        }
    }

    /// The change is published under the lock and queued for the disk in the same order; the
    /// wait for the disk (`wait`) comes after the lock is released, so no other write, merge or
    /// health update ever waits behind an fsync.
    fn write_with(&self, body: Body, origin: Origin, mode: Mode, wait: bool) -> Result<Body, CatalogError> {
        self.check_writable(&body.key())?;
        let (body, ticket) = self.write_locked(&mut self.lock(), body, origin, mode)?;
        if wait {
            ticket.wait()?;
        }
        Ok(body)
    }

    /// Changes a service's definition starting from what it is now, under the write lock, so no
    /// other write can land between the read and the write (the admin API's PATCH). The
    /// namespace and name cannot change.
    pub fn update_service(&self, namespace: &str, name: &str, change: impl FnOnce(&Service) -> Result<Service, CatalogError>) -> Result<Service, CatalogError> {
        let key = Key::Service(namespace.to_string(), name.to_string());
        self.check_writable(&key)?;
        let mut state = self.lock();
        let Some(Body::Service(current)) = Self::live(&state, &key).cloned() else {
            return Err(CatalogError::NotFound(key));
        };
        let new = change(&current)?;
        if new.namespace != namespace || new.name != name {
            return Err(CatalogError::Invalid {
                field: if new.name != name { "name" } else { "namespace" }.into(),
                message: format!("cannot change: {key} keeps its name (create the new service, move its endpoints, delete this one)"),
            });
        }
        let (written, ticket) = self.write_locked(&mut state, Body::Service(new), Origin::Api, Mode::Write)?;
        drop(state);
        ticket.wait()?;
        match written {
            Body::Service(s) => Ok(s),
            _ => unreachable!("a service write returns the service"),
        }
    }

    fn write_locked(&self, state: &mut State, mut body: Body, origin: Origin, mode: Mode) -> Result<(Body, Ticket), CatalogError> {
        if mode == Mode::Create && Self::live(state, &body.key()).is_some() {
            return Err(CatalogError::Conflict(format!("{} already exists", body.key())));
        }
        let mut new_vips = Vec::new();
        match &mut body {
            Body::Namespace(ns) => validate::namespace(ns)?,
            Body::Plugin(p) => plugin::check(p)?,
            Body::Service(svc) => {
                validate::service(svc)?;
                if Self::live(state, &Key::Namespace(svc.namespace.clone())).is_none() {
                    return Err(CatalogError::NotFound(Key::Namespace(svc.namespace.clone())));
                }
                self.check_aliases(state, svc)?;
                new_vips = self.allocate_vips(&state.vips, svc)?;
            }
            Body::Endpoint(ep) => {
                validate::endpoint(ep)?;
                // A node writes only its own endpoints: peers reject any other (a record's writer
                // must be the endpoint's node), so refuse here with a clear message instead.
                if ep.node.is_empty() {
                    ep.node = self.node.clone();
                } else if ep.node != self.node {
                    return Err(CatalogError::Invalid {
                        field: "node".into(),
                        message: format!("is `{}`, but endpoints are registered on the node that owns them (this is `{}`)", ep.node, self.node),
                    });
                }
                let svc = Key::Service(ep.namespace.clone(), ep.service.clone());
                let Some(Body::Service(def)) = Self::live(state, &svc) else {
                    return Err(CatalogError::NotFound(svc));
                };
                // With an active check, health is the check's to say: a new registration starts
                // UNKNOWN and gets no traffic until it passes; a repeated one keeps what the
                // check found.
                if mode != Mode::Update && def.health_check.kind != CheckKind::None {
                    ep.health = match Self::live(state, &Key::Endpoint(ep.namespace.clone(), ep.service.clone(), ep.id.clone())) {
                        Some(Body::Endpoint(old)) if Self::same_registration(ep, old) => old.health,
                        _ => Health::Unknown,
                    };
                }
            }
        }
        let key = body.key();
        let hlc = state.clock.now();
        let previous = state.records.get(&key);
        if previous.and_then(|r| r.body.as_ref()) == Some(&body) && previous.map(|r| r.origin) == Some(origin) && new_vips.is_empty() {
            return Ok((body, Ticket::done()));
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
        let ticket = self.store.enqueue(&Batch { records: vec![&record], vips: vip_refs });
        state.vips_changed |= !new_vips.is_empty();
        state.vips.extend(new_vips);
        self.announce(&record);
        state.put(record);
        self.publish(state);
        Ok((body, ticket))
    }

    /// VIPs for the service's alias names that have none yet. VIPs are this host's business: each
    /// node allocates its own for services it learns from peers too.
    fn allocate_vips(&self, vips: &BTreeMap<String, Ipv4Addr>, svc: &Service) -> Result<Vec<(String, Ipv4Addr)>, CatalogError> {
        let mut taken = vips.clone();
        let mut new_vips = Vec::new();
        for a in &svc.aliases {
            if !taken.contains_key(&a.dns_name) {
                let ip = self.vip_range.allocate(&taken).ok_or_else(|| CatalogError::VipsExhausted(self.vip_range, a.dns_name.clone()))?;
                taken.insert(a.dns_name.clone(), ip);
                new_vips.push((a.dns_name.clone(), ip));
            }
        }
        Ok(new_vips)
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
    /// Deletes and waits for the disk (a blocking call, as [`Catalog::write`]).
    pub fn delete(&self, key: &Key) -> Result<(), CatalogError> {
        self.delete_with(key)?.wait()?;
        Ok(())
    }

    /// [`Catalog::delete`] without waiting for the disk, for runtime threads.
    pub fn delete_background(&self, key: &Key) -> Result<(), CatalogError> {
        self.delete_with(key).map(drop)
    }

    fn delete_with(&self, key: &Key) -> Result<Ticket, CatalogError> {
        self.check_writable(key)?;
        let mut state = self.lock();
        if Self::live(&state, key).is_none() {
            return Err(CatalogError::NotFound(key.clone()));
        }
        let children: Vec<String> = state
            .records
            .iter()
            .filter_map(|(k, r)| match (key, k, r.body.as_ref()?) {
                (Key::Namespace(n), Key::Service(sn, s), _) if n == sn => Some(format!("delete service {s}")),
                (Key::Service(n, s), Key::Endpoint(en, es, id), _) if n == en && s == es => Some(format!("delete endpoint {id}")),
                // A service that names a plugin would lose its policy: change it first.
                (Key::Plugin(p), _, Body::Service(svc)) if svc.policy.as_ref() == Some(p) => {
                    Some(format!("set another policy on service {}/{}", svc.namespace, svc.name))
                }
                _ => None,
            })
            .take(5)
            .collect();
        if !children.is_empty() {
            return Err(CatalogError::InUse { key: key.clone(), detail: format!("{} first", children.join(", ")) });
        }
        let hlc = state.clock.now();
        let origin = state.records.get(key).map(|r| r.origin).unwrap_or_default();
        let record = Record { key: key.clone(), body: None, version: Version { hlc, writer: self.node.clone() }, origin, registered: hlc };
        let ticket = self.store.enqueue(&Batch { records: vec![&record], vips: vec![] });
        self.announce(&record);
        state.put(record);
        self.publish(&mut state);
        Ok(ticket)
    }

    /// Merges one record from another replica: the higher version wins, so every replica that
    /// has seen the same records holds the same state whatever the order they arrived in.
    pub fn merge(&self, record: Record) -> Result<bool, CatalogError> {
        Ok(!self.merge_many(vec![record], |_, _| true)?.is_empty())
    }

    /// Merges a batch from peers in one commit. `accept` sees each record with the one it would
    /// replace and may refuse it (authority rules). Returns the records that were new here.
    pub fn merge_many(&self, records: Vec<Record>, accept: impl Fn(&Record, Option<&Record>) -> bool) -> Result<Vec<Record>, CatalogError> {
        let mut state = self.lock();
        let mut fresh: Vec<Record> = Vec::new();
        let mut new_vips = Vec::new();
        for mut record in records {
            if !state.clock.observe(record.version.hlc) {
                tracing::warn!(key = %record.key, writer = %record.version.writer, "refused a record versioned more than 5 minutes ahead of this host's clock (check NTP on the writer)");
                continue;
            }
            let current = state.records.get(&record.key);
            let newer_here = fresh.iter().rev().find(|r| r.key == record.key).map(|r| &r.version);
            if current.is_some_and(|r| r.version >= record.version) || newer_here.is_some_and(|v| *v >= record.version) {
                continue;
            }
            if !accept(&record, current) {
                continue;
            }
            // Most replicated services have their VIPs already (or no aliases): copying the VIP
            // map for each was O(catalog) per record on the gossip task.
            let needs_vip = |svc: &Service| svc.aliases.iter().any(|a| !state.vips.contains_key(&a.dns_name) && !new_vips.iter().any(|(n, _)| *n == a.dns_name));
            if let Some(Body::Service(svc)) = &record.body
                && needs_vip(svc)
            {
                let mut vips = state.vips.clone();
                vips.extend(new_vips.iter().cloned());
                match self.allocate_vips(&vips, svc) {
                    Ok(v) => new_vips.extend(v),
                    Err(e) => tracing::error!(key = %record.key, error = %e, "no VIP for a replicated service's alias"),
                }
            }
            record.origin = Origin::Remote;
            fresh.push(record);
        }
        if fresh.is_empty() {
            return Ok(fresh);
        }
        let vip_refs = new_vips.iter().map(|(n, ip)| (n.as_str(), *ip)).collect();
        self.store.commit_background(&Batch { records: fresh.iter().collect(), vips: vip_refs });
        self.unflushed.store(true, std::sync::atomic::Ordering::Relaxed);
        state.vips_changed |= !new_vips.is_empty();
        state.vips.extend(new_vips);
        for r in &fresh {
            state.put(r.clone());
        }
        self.publish(&mut state);
        Ok(fresh)
    }

    /// Makes replicated records durable (called about once a second, off the gossip task).
    pub fn flush(&self) -> Result<(), CatalogError> {
        if self.unflushed.swap(false, std::sync::atomic::Ordering::Relaxed) {
            self.store.flush()?;
        }
        Ok(())
    }

    fn publish(&self, state: &mut State) {
        state.seq += 1;
        self.publisher.poke();
    }
}

#[cfg(test)]
mod tests;
