//! What the core needs from the record store, and the per-writer summary anti-entropy compares.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Grants, Role, visible};
pub use crate::catalog::record_hash;
use crate::catalog::{Key, Origin, Record, Version};

/// Per writer: enough to tell "equal", "you lack my records above your max" and "there is a gap
/// somewhere". A max-hlc-only digest misses gaps: deltas arrive out of order, so a node can hold a
/// writer's hlc 10 without its hlc 8 on another key.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriterSummary {
    pub max_hlc: u64,
    pub count: u64,
    /// XOR of [`record_hash`] over the records: order-free, and one record in or out flips it.
    pub hash: u64,
    /// Summaries of the records up to a few clocks below `max_hlc`, newest first (`sync::marks`):
    /// where a gap is, so that an answer resends what lies above the highest mark both sides
    /// agree on instead of the writer's whole set.
    pub marks: Vec<Mark>,
}

/// The count and hash of a writer's records with `version.hlc <= hlc`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    pub hlc: u64,
    pub count: u64,
    pub hash: u64,
}

impl WriterSummary {
    pub fn add(&mut self, r: &Record) {
        self.max_hlc = self.max_hlc.max(r.version.hlc);
        self.count += 1;
        self.hash ^= record_hash(r);
    }

    /// Same records (the marks are a function of them).
    pub fn same(&self, other: &WriterSummary) -> bool {
        (self.max_hlc, self.count, self.hash) == (other.max_hlc, other.count, other.hash)
    }
}

pub type Digest = BTreeMap<String, WriterSummary>;

/// The reference summary (no marks), which every [`Replica::totals`] must equal bit for bit.
pub fn summarize<'a>(records: impl Iterator<Item = &'a Record>) -> Digest {
    let mut d = Digest::new();
    for r in records {
        d.entry(r.version.writer.clone()).or_default().add(r);
    }
    d
}

/// The record store as the gossip core sees it (the catalog in production, [`MemReplica`] in
/// tests and the simulator). `grants`: the namespaces of the node the answer is for.
pub trait Replica {
    /// Per-writer totals of the records held that `grants` sees, live and tombstones, without
    /// marks: `summarize` over them.
    fn totals(&self, grants: &Grants) -> Digest;
    /// Calls `visit(hlc, record_hash)` over `writer`'s records that `grants` sees, newest first,
    /// until it returns false.
    fn walk_newest(&self, writer: &str, grants: &Grants, visit: &mut dyn FnMut(u64, u64) -> bool);
    /// Every record whose `version.writer == writer` and `version.hlc > above` that `grants` sees.
    fn records_by(&self, writer: &str, above: u64, grants: &Grants) -> Vec<Record>;
    /// Merges last-writer-wins and returns the records that were NEW here (they get forwarded);
    /// replays and older versions return nothing. The core has already applied the authority
    /// rules it can check alone ([`super::admit`]); one is left to the replica because only it
    /// knows the record being replaced: an endpoint tombstone from a writer that does not write
    /// definitions (`authority(writer)`) is accepted only if the record it replaces has the same
    /// `version.writer` (or there is none yet: a late joiner must still converge).
    fn merge(&mut self, records: Vec<Record>, authority: &dyn Fn(&str) -> Option<Role>) -> Vec<Record>;
    /// Whether a record at `key` with this version or a newer one is held already (a replay or
    /// an anti-entropy resend, which `merge` would drop): lets the core skip checks that cost.
    fn holds(&self, key: &Key, version: &Version) -> bool;
}

/// An in-memory replica: the simulator's and unit tests' store, and the reference behaviour for
/// the catalog's implementation.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MemReplica {
    pub records: BTreeMap<Key, Record>,
}

impl MemReplica {
    /// A local write (this node is the writer): kept if newer, like the catalog's `write`.
    pub fn put(&mut self, r: Record) -> bool {
        if self.records.get(&r.key).is_some_and(|old| old.version >= r.version) {
            return false;
        }
        self.records.insert(r.key.clone(), r);
        true
    }

    pub fn get(&self, key: &Key) -> Option<&Record> {
        self.records.get(key)
    }

    /// Every record, as a node that may see every namespace summarises them.
    pub fn digest(&self) -> Digest {
        summarize(self.records.values())
    }
}

impl Replica for MemReplica {
    fn totals(&self, grants: &Grants) -> Digest {
        summarize(self.records.values().filter(|r| visible(r, grants)))
    }

    fn walk_newest(&self, writer: &str, grants: &Grants, visit: &mut dyn FnMut(u64, u64) -> bool) {
        let mut mine: Vec<&Record> = self.records.values().filter(|r| r.version.writer == writer && visible(r, grants)).collect();
        mine.sort_by_key(|r| std::cmp::Reverse(r.version.hlc));
        for r in mine {
            if !visit(r.version.hlc, record_hash(r)) {
                return;
            }
        }
    }

    fn records_by(&self, writer: &str, above: u64, grants: &Grants) -> Vec<Record> {
        self.records.values().filter(|r| r.version.writer == writer && r.version.hlc > above && visible(r, grants)).cloned().collect()
    }

    fn holds(&self, key: &Key, version: &Version) -> bool {
        self.records.get(key).is_some_and(|r| r.version >= *version)
    }

    fn merge(&mut self, records: Vec<Record>, authority: &dyn Fn(&str) -> Option<Role>) -> Vec<Record> {
        let mut new = Vec::new();
        for mut r in records {
            let old = self.records.get(&r.key);
            if old.is_some_and(|o| o.version >= r.version) {
                continue;
            }
            if !super::may_replace(&r, old, authority) {
                continue;
            }
            r.origin = Origin::Remote;
            self.records.insert(r.key.clone(), r.clone());
            new.push(r);
        }
        new
    }
}
