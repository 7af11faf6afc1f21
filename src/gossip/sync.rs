//! Anti-entropy: compare per-writer summaries and work out which records the other side lacks.

use super::{Digest, WriterSummary, summarize};
use crate::catalog::Record;

/// [`offer`] over all of `replica`: what a peer that may see every namespace is offered.
#[cfg(test)]
pub fn offer<R: super::Replica>(replica: &R, mine: &Digest, theirs: &Digest, eager: bool) -> Offer {
    offer_from(&|w| replica.records_by(w, 0), mine, theirs, eager)
}

/// What to send back for one digest.
#[derive(Debug, Default, PartialEq)]
pub struct Offer {
    /// Records the other side lacks (or may lack: after a gap we resend a writer's whole set and
    /// let last-writer-wins drop what it already has).
    pub records: Vec<Record>,
    /// My summaries for the writers where I may lack something.
    pub need: Digest,
}

/// Answers the digest `theirs`, over every writer either side knows. `eager` is for answering a
/// `need` list: the other side said it may lack these writers, so a gap is resolved by sending
/// everything even when its max is ahead of mine. `all_by(writer)`: every record of that writer
/// the other side may see, `mine` summarising the same set (`scope`).
pub fn offer_from(all_by: &dyn Fn(&str) -> Vec<Record>, mine: &Digest, theirs: &Digest, eager: bool) -> Offer {
    let mut out = Offer::default();
    let empty = WriterSummary::default();
    let writers: std::collections::BTreeSet<&String> =
        if eager { theirs.keys().collect() } else { mine.keys().chain(theirs.keys()).collect() };
    for w in writers {
        let my = mine.get(w).unwrap_or(&empty);
        let th = theirs.get(w).unwrap_or(&empty);
        if my == th {
            continue;
        }
        if th.max_hlc > my.max_hlc {
            // They hold something newer than anything of mine: I lack at least that.
            if !eager {
                out.need.insert(w.clone(), *my);
            } else if my.count > 0 {
                out.records.extend(all_by(w));
            }
            continue;
        }
        let all = all_by(w);
        let below = summarize(all.iter().filter(|r| r.version.hlc <= th.max_hlc)).remove(w.as_str()).unwrap_or_default();
        if (below.count, below.hash) == (th.count, th.hash) {
            // Their set is exactly my set up to their max: they lack my records above it.
            out.records.extend(all.into_iter().filter(|r| r.version.hlc > th.max_hlc));
        } else {
            // A gap somewhere (on either side): send all of this writer's records, and ask for
            // theirs unless this already is the answer to their ask.
            out.records.extend(all);
            if !eager {
                out.need.insert(w.clone(), *my);
            }
        }
    }
    out
}
