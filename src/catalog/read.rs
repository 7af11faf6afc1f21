//! Reads of the records as held, tombstones included: what the gossip core, health checks and
//! the node's start-up read directly (everything else reads a [`super::Snapshot`]).

use std::net::Ipv4Addr;

use super::{Body, Catalog, Endpoint, Key, Origin, Record, Version};

impl Catalog {
    /// Runs `f` over every record held, tombstones included (for gossip digests), under the
    /// lock and without copying them; with the [`Catalog::change_count`] they are at.
    pub fn with_records_counted<T>(&self, f: impl FnOnce(std::collections::btree_map::Values<'_, Key, Record>) -> T) -> (u64, T) {
        let state = self.lock();
        (state.seq, f(state.records.values()))
    }

    /// A number that changes whenever any record does (not across restarts).
    pub fn change_count(&self) -> u64 {
        self.lock().seq
    }

    /// Every record whose version was written by `writer`, above clock `above`.
    pub fn records_by(&self, writer: &str, above: u64) -> Vec<Record> {
        self.lock().records.values().filter(|r| r.version.writer == writer && r.version.hlc > above).cloned().collect()
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
