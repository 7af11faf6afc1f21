//! Anti-entropy: compare per-writer summaries and work out which records the other side lacks.
//!
//! A summary (count, XOR hash, max clock) tells "equal", "you lack my records above your max"
//! and "there is a gap somewhere". While a burst of writes is being pushed, the pulling side
//! usually has a gap (a delta still in flight), and with the summary alone the answer was the
//! writer's whole set: 5,000 records resent, decoded and checked on both sides for each pull.
//! So a summary also carries marks — the summary of the records up to the clock of the 16th,
//! 128th, 1,024th and 8,192nd newest — and an answer resends what lies above the highest point
//! both sides agree on.

use std::collections::HashMap;

use super::{Digest, Grants, Mark, Replica, WriterSummary};
use crate::catalog::Record;

/// Where marks go: at the first clock below this many of a writer's newest records. Each mark
/// bounds a resend to about its depth; only a gap deeper than the last resends the whole set.
pub const MARK_DEPTHS: [u64; 4] = [16, 128, 1024, 8192];

/// The marks of `writer`'s records, whose totals are `totals`.
pub fn marks<R: Replica>(replica: &R, writer: &str, grants: &Grants, totals: &WriterSummary) -> Vec<Mark> {
    let mut out = Vec::new();
    if totals.count <= MARK_DEPTHS[0] {
        return out;
    }
    let (mut seen, mut seen_hash, mut prev, mut next) = (0u64, 0u64, u64::MAX, 0usize);
    replica.walk_newest(writer, grants, &mut |hlc, hash| {
        if hlc < prev && seen >= MARK_DEPTHS[next] {
            // Every record above `hlc` has been seen: the rest are those up to it.
            out.push(Mark { hlc, count: totals.count - seen, hash: totals.hash ^ seen_hash });
            next += 1;
            if next == MARK_DEPTHS.len() || totals.count <= MARK_DEPTHS[next] {
                return false;
            }
        }
        seen += 1;
        seen_hash ^= hash;
        prev = hlc;
        true
    });
    out
}

/// Marks by the totals they were worked out for: a writer's marks are a function of its set of
/// records, which its (max, count, hash) identifies, so a quiet writer's are worked out once.
#[derive(Default)]
pub struct MarkCache(HashMap<(u64, u64, u64), (String, Vec<Mark>)>);

impl MarkCache {
    const MAX: usize = 4096;

    /// My digest for a node with `grants`: totals and marks.
    pub fn digest<R: Replica>(&mut self, replica: &R, grants: &Grants) -> Digest {
        let mut d = replica.totals(grants);
        for (w, s) in d.iter_mut() {
            let key = (s.max_hlc, s.count, s.hash);
            if let Some((writer, m)) = self.0.get(&key)
                && writer == w
            {
                s.marks = m.clone();
                continue;
            }
            s.marks = marks(replica, w, grants, s);
            if self.0.len() >= Self::MAX {
                self.0.clear();
            }
            self.0.insert(key, (w.clone(), s.marks.clone()));
        }
        d
    }
}

/// What to send back for one digest.
#[derive(Debug, Default, PartialEq)]
pub struct Offer {
    /// Records the other side lacks (or may lack: after a gap we resend a writer's records above
    /// the highest mark we agree on, and let last-writer-wins drop what it already has).
    pub records: Vec<Record>,
    /// My summaries for the writers where I may lack something.
    pub need: Digest,
}

/// Answers the digest `theirs`, over every writer either side knows. `eager` is for answering a
/// `need` list: the other side said it may lack these writers, so a gap is resolved by sending
/// even when its max is ahead of mine. `mine` summarises what a node with `grants` may see.
pub fn offer<R: Replica>(replica: &R, grants: &Grants, mine: &Digest, theirs: &Digest, eager: bool) -> Offer {
    let mut out = Offer::default();
    let empty = WriterSummary::default();
    let writers: std::collections::BTreeSet<&String> =
        if eager { theirs.keys().collect() } else { mine.keys().chain(theirs.keys()).collect() };
    for w in writers {
        let my = mine.get(w).unwrap_or(&empty);
        let th = theirs.get(w).unwrap_or(&empty);
        if my.same(th) {
            continue;
        }
        if th.max_hlc > my.max_hlc && !eager {
            // They hold something newer than anything of mine: I lack at least that.
            out.need.insert(w.clone(), my.clone());
            continue;
        }
        if my.count == 0 {
            continue;
        }
        let agreed = agreed(replica, w, grants, my, th);
        // Agreeing below their max: their set is exactly mine up to it, so they lack only what
        // is above. Anywhere lower (or nowhere), they may also hold what I lack.
        if agreed != Some(th.max_hlc) && !eager {
            out.need.insert(w.clone(), my.clone());
        }
        out.records.extend(replica.records_by(w, agreed.unwrap_or(0), grants));
    }
    out
}

/// The highest of their max and their marks at which my records of `writer` up to that clock
/// are the same as theirs (count and hash), walking mine from the newest only as far as needed.
fn agreed<R: Replica>(replica: &R, writer: &str, grants: &Grants, my: &WriterSummary, th: &WriterSummary) -> Option<u64> {
    // Their points, strictly descending (a peer's marks are input: skip any out of order).
    let mut points = vec![Mark { hlc: th.max_hlc, count: th.count, hash: th.hash }];
    for m in &th.marks {
        if m.hlc < points[points.len() - 1].hlc {
            points.push(*m);
        }
    }
    let (mut seen, mut seen_hash, mut i, mut found) = (0u64, 0u64, 0usize, None);
    // Mine up to `p` is everything not seen yet, once the walk is at or below `p`.
    let settle = |seen: u64, seen_hash: u64, upto: Option<u64>, i: &mut usize| {
        while *i < points.len() && upto.is_none_or(|h| points[*i].hlc >= h) {
            let p = points[*i];
            if (my.count.wrapping_sub(seen), my.hash ^ seen_hash) == (p.count, p.hash) {
                return Some(p.hlc);
            }
            *i += 1;
        }
        None
    };
    replica.walk_newest(writer, grants, &mut |hlc, hash| {
        found = settle(seen, seen_hash, Some(hlc), &mut i);
        if found.is_some() || i == points.len() {
            return false;
        }
        seen += 1;
        seen_hash ^= hash;
        true
    });
    if found.is_none() && i < points.len() {
        // The walk went past my oldest record: what is left of mine up to each point is nothing.
        found = settle(seen, seen_hash, None, &mut i);
    }
    found
}
