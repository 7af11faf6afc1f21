//! The records held, by writer and clock: per-writer totals kept as records change, and a walk
//! from a writer's newest record down, for anti-entropy (`crate::gossip`'s digests and offers).
//!
//! Anti-entropy compares per-writer summaries (count, XOR of [`record_hash`], max clock) four
//! times a second. Summarising every record for each pull cost 2.5 ms with 5,000 records on the
//! gossip task, and an offer that met a gap cloned a writer's whole record set — O(catalog) on
//! the runtime thread of a one-CPU node while a burst of writes arrives, which is exactly when
//! pulls find gaps (`benches/catalog_writes.sh`). Kept here, a summary costs O(writers ×
//! namespaces) and an offer O(records it sends).

use std::collections::{BTreeMap, BTreeSet};

use super::{Key, Record};

/// The namespaces a reader may see (`None`: every namespace). Plugins belong to none: every
/// reader sees them.
pub type Scope<'a> = Option<&'a BTreeSet<String>>;

fn in_scope(namespace: Option<&str>, scope: Scope) -> bool {
    match (namespace, scope) {
        (Some(ns), Some(set)) => set.contains(ns),
        _ => true,
    }
}

/// One writer's records as a reader sees them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub max_hlc: u64,
    pub count: u64,
    /// XOR of [`record_hash`] over the records: order-free, and one record in or out flips it.
    pub hash: u64,
}

/// Count and hash of a set of records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Tally {
    count: u64,
    hash: u64,
}

impl Tally {
    fn flip(&mut self, hash: u64, added: bool) {
        if added {
            self.count += 1;
        } else {
            self.count -= 1;
        }
        self.hash ^= hash;
    }
}

#[derive(Debug, Default)]
struct Writer {
    by_namespace: BTreeMap<String, Tally>,
    plugins: Tally,
    /// Every record of this writer by clock, with its hash. A writer's clock is unique per
    /// write, so a clock holds one key but for records a hostile or buggy writer reused it for.
    by_hlc: BTreeMap<u64, Vec<(Key, u64)>>,
}

impl Writer {
    fn tally(&mut self, namespace: Option<&str>) -> &mut Tally {
        match namespace {
            None => &mut self.plugins,
            Some(ns) => {
                if !self.by_namespace.contains_key(ns) {
                    self.by_namespace.insert(ns.to_string(), Tally::default());
                }
                self.by_namespace.get_mut(ns).expect("inserted above")
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.by_hlc.is_empty()
    }
}

/// Per-writer totals and clock order of the records held, tombstones included.
#[derive(Debug, Default)]
pub struct WriterIndex {
    writers: BTreeMap<String, Writer>,
}

impl WriterIndex {
    pub fn build<'a>(records: impl Iterator<Item = &'a Record>) -> WriterIndex {
        let mut index = WriterIndex::default();
        for r in records {
            index.insert(r);
        }
        index
    }

    /// Notes `new` replacing `old` (if any) at the same key.
    pub fn replace(&mut self, old: Option<&Record>, new: &Record) {
        if let Some(old) = old {
            self.remove(old);
        }
        self.insert(new);
    }

    fn insert(&mut self, r: &Record) {
        let hash = record_hash(r);
        let writer = match self.writers.get_mut(&r.version.writer) {
            Some(w) => w,
            None => self.writers.entry(r.version.writer.clone()).or_default(),
        };
        writer.tally(r.key.namespace()).flip(hash, true);
        writer.by_hlc.entry(r.version.hlc).or_default().push((r.key.clone(), hash));
    }

    fn remove(&mut self, r: &Record) {
        let Some(writer) = self.writers.get_mut(&r.version.writer) else { return };
        let Some(at) = writer.by_hlc.get_mut(&r.version.hlc) else { return };
        let Some(i) = at.iter().position(|(k, _)| *k == r.key) else { return };
        let (_, hash) = at.swap_remove(i);
        if at.is_empty() {
            writer.by_hlc.remove(&r.version.hlc);
        }
        let namespace = r.key.namespace();
        writer.tally(namespace).flip(hash, false);
        if let Some(ns) = namespace
            && writer.by_namespace.get(ns).is_some_and(|t| t.count == 0)
        {
            writer.by_namespace.remove(ns);
        }
        if writer.is_empty() {
            self.writers.remove(&r.version.writer);
        }
    }

    /// Per writer, the totals of the records a reader with `scope` sees (writers it sees none of
    /// are left out).
    pub fn totals(&self, scope: Scope) -> BTreeMap<String, Totals> {
        let mut out = BTreeMap::new();
        for (name, w) in &self.writers {
            let mut t = w.plugins;
            for (ns, tally) in &w.by_namespace {
                if in_scope(Some(ns), scope) {
                    t.count += tally.count;
                    t.hash ^= tally.hash;
                }
            }
            if t.count == 0 {
                continue;
            }
            let mut max_hlc = 0;
            Self::walk(w, scope, &mut |hlc, _| {
                max_hlc = hlc;
                false
            });
            out.insert(name.clone(), Totals { max_hlc, count: t.count, hash: t.hash });
        }
        out
    }

    /// Calls `visit(hlc, record_hash)` for `writer`'s records that `scope` sees, newest first,
    /// until it returns false.
    pub fn walk_newest(&self, writer: &str, scope: Scope, visit: &mut dyn FnMut(u64, u64) -> bool) {
        if let Some(w) = self.writers.get(writer) {
            Self::walk(w, scope, visit);
        }
    }

    fn walk(w: &Writer, scope: Scope, visit: &mut dyn FnMut(u64, u64) -> bool) {
        for (hlc, at) in w.by_hlc.iter().rev() {
            for (key, hash) in at {
                if in_scope(key.namespace(), scope) && !visit(*hlc, *hash) {
                    return;
                }
            }
        }
    }

    /// Keys of `writer`'s records above clock `above` that `scope` sees.
    pub fn keys_above(&self, writer: &str, above: u64, scope: Scope) -> Vec<&Key> {
        let Some(w) = self.writers.get(writer) else { return Vec::new() };
        let Some(from) = above.checked_add(1) else { return Vec::new() };
        w.by_hlc.range(from..).flat_map(|(_, at)| at.iter()).map(|(k, _)| k).filter(|k| in_scope(k.namespace(), scope)).collect()
    }
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
