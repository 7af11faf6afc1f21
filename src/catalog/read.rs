//! Reads of the records as held, tombstones included: what the gossip core, health checks and
//! the node's start-up read directly (everything else reads a [`super::Snapshot`]).

use std::net::Ipv4Addr;

use super::{Body, Catalog, Endpoint, Key, Origin, Record, Scope, Totals, Version};

impl Catalog {
    /// Per writer, the totals of the records held that `scope` sees, tombstones included (the
    /// gossip digest; kept as records change, see `index.rs`).
    pub fn writer_totals(&self, scope: Scope) -> std::collections::BTreeMap<String, Totals> {
        self.lock().index.totals(scope)
    }

    /// Calls `visit(hlc, record_hash)` over `writer`'s records that `scope` sees, newest first,
    /// until it returns false (under the catalog's lock: keep `visit` short).
    pub fn walk_newest(&self, writer: &str, scope: Scope, visit: &mut dyn FnMut(u64, u64) -> bool) {
        self.lock().index.walk_newest(writer, scope, visit)
    }

    /// Every record written by `writer` above clock `above` that `scope` sees.
    pub fn records_by(&self, writer: &str, above: u64, scope: Scope) -> Vec<Record> {
        let state = self.lock();
        state.index.keys_above(writer, above, scope).into_iter().filter_map(|k| state.records.get(k).cloned()).collect()
    }

    /// Whether the record at `key` is at `version` or newer here.
    pub fn holds(&self, key: &Key, version: &Version) -> bool {
        self.lock().records.get(key).is_some_and(|r| r.version >= *version)
    }

    /// One record as held, tombstone included.
    pub fn record(&self, key: &Key) -> Option<Record> {
        self.lock().records.get(key).cloned()
    }

    /// Live endpoints written here (not replicated) but owned by another node name: what this
    /// data dir registered under the name its node had before a rename.
    pub fn endpoints_of_former_names(&self) -> Vec<Endpoint> {
        let state = self.lock();
        state
            .records
            .values()
            .filter(|r| r.origin != Origin::Remote)
            .filter_map(|r| match &r.body {
                Some(Body::Endpoint(e)) if e.node != self.node => Some(e.clone()),
                _ => None,
            })
            .collect()
    }

    /// Keys of live records the config file wrote, to retire those it no longer lists.
    pub fn config_owned(&self) -> Vec<Key> {
        let state = self.lock();
        state.records.values().filter(|r| r.body.is_some() && r.origin == Origin::Config).map(|r| r.key.clone()).collect()
    }

    pub fn vip_of(&self, dns_name: &str) -> Option<Ipv4Addr> {
        self.lock().vips.get(dns_name).copied()
    }
}
