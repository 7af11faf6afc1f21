//! What the core needs from the record store, and the per-writer summary anti-entropy compares.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Role;
use crate::catalog::{Key, Origin, Record, Version};

/// Per writer: enough to tell "equal", "you lack my records above your max" and "there is a gap
/// somewhere". A max-hlc-only digest misses gaps: deltas arrive out of order, so a node can hold a
/// writer's hlc 10 without its hlc 8 on another key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriterSummary {
    pub max_hlc: u64,
    pub count: u64,
    /// XOR of [`record_hash`] over the records: order-free, and one record in or out flips it.
    pub hash: u64,
}

impl WriterSummary {
    pub fn add(&mut self, r: &Record) {
        self.max_hlc = self.max_hlc.max(r.version.hlc);
        self.count += 1;
        self.hash ^= record_hash(r);
    }
}

pub type Digest = BTreeMap<String, WriterSummary>;

/// The one summary function every [`Replica`] uses, so two implementations agree bit for bit.
pub fn summarize<'a>(records: impl Iterator<Item = &'a Record>) -> Digest {
    let mut d = Digest::new();
    for r in records {
        d.entry(r.version.writer.clone()).or_default().add(r);
    }
    d
}

/// A stable hash of (key, hlc): FNV-1a then a SplitMix64 finalizer (so XORs of many stay
/// uniform). Hand-written because std's hasher is not guaranteed stable across Rust releases and
/// nodes may run different builds.
pub fn record_hash(r: &Record) -> u64 {
    let mut fnv = Fnv(0xcbf2_9ce4_8422_2325);
    let _ = r.key.write_encoded(&mut fnv);
    fnv.bytes(&[0xff]);
    fnv.bytes(&r.version.hlc.to_le_bytes());
    let mut h = fnv.0;
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// FNV-1a over the bytes written to it.
struct Fnv(u64);

impl Fnv {
    fn bytes(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

impl std::fmt::Write for Fnv {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.bytes(s.as_bytes());
        Ok(())
    }
}

/// The record store as the gossip core sees it (the catalog in production, [`MemReplica`] in
/// tests and the simulator).
pub trait Replica {
    /// Per-writer summary of every record held, live and tombstones: `summarize(all records)`.
    fn digest(&self) -> Digest;
    /// Every record whose `version.writer == writer` and `version.hlc > above`.
    fn records_by(&self, writer: &str, above: u64) -> Vec<Record>;
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
}

impl Replica for MemReplica {
    fn digest(&self) -> Digest {
        summarize(self.records.values())
    }

    fn records_by(&self, writer: &str, above: u64) -> Vec<Record> {
        self.records.values().filter(|r| r.version.writer == writer && r.version.hlc > above).cloned().collect()
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
