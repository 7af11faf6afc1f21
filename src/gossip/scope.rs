//! Namespaces in replication (`crate::authz`): a node's certificate names the namespaces it
//! belongs to, and records of any other namespace neither come from it nor go to it.
//!
//! - **Who may say what.** A record of namespace N is merged only from a peer whose certificate
//!   names N (or every namespace): a registry issued for `shop` cannot define a service in
//!   `pay`, and a proxy issued for `shop` cannot register an endpoint there. An honest relay
//!   holds only the namespaces it belongs to, so relayed records pass the same check.
//! - **Who may learn what.** This node merges only records of its own namespaces, and sends a
//!   peer only records of the peer's — the deltas it pushes and the anti-entropy digests and
//!   offers, which are worked out over the records the peer may see, so a scoped node's smaller
//!   set does not look like a gap to be resent every round.
//!
//! A peer's namespaces are learned from the certificate of the connection its messages arrive
//! on ([`super::Input::Message`]). Until a peer has sent this node anything, its namespaces are
//! unknown and a delta pushed to it is not filtered (its own check refuses what it may not hold);
//! a peer answers or pulls within an anti-entropy period, after which nothing else goes to it.
//! Plugins belong to no namespace: every node may hold them.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use super::{Core, Digest, Replica};
use crate::catalog::Record;

/// The namespaces a node belongs to; `None`: every namespace (a cluster-wide certificate).
pub type Grants = Option<Arc<BTreeSet<String>>>;

/// What the core knows of namespaces: its own grants and those of the peers it heard from.
#[derive(Default)]
pub(super) struct Scopes {
    pub own: Grants,
    pub peers: HashMap<String, Grants>,
}

/// Whether a node with `grants` may hold `r`.
pub fn visible(r: &Record, grants: &Grants) -> bool {
    match (r.key.namespace(), grants) {
        (Some(ns), Some(set)) => set.contains(ns),
        _ => true,
    }
}

impl<R: Replica> Core<R> {
    /// Limits this node to the namespaces its certificate names (`None`: every namespace).
    pub fn set_own_grants(&mut self, grants: Grants) {
        self.scopes.own = grants;
    }

    pub(super) fn grants_of(&self, peer: &str) -> Grants {
        self.scopes.peers.get(peer).cloned().flatten()
    }

    /// Notes the namespaces `peer`'s certificate names, from a message it sent.
    pub(super) fn note_grants(&mut self, peer: &str, grants: &Grants) {
        if self.scopes.peers.get(peer) != Some(grants) {
            self.scopes.peers.insert(peer.to_string(), grants.clone());
        }
    }

    /// Drops, and counts, the records `sender` may not send or this node may not hold.
    pub(super) fn in_scope(&mut self, records: Vec<Record>, sender: &Grants) -> Vec<Record> {
        let total = records.len();
        let own = self.scopes.own.clone();
        let kept: Vec<Record> = records.into_iter().filter(|r| visible(r, sender) && visible(r, &own)).collect();
        let refused = (total - kept.len()) as u64;
        if refused > 0 {
            self.stats.out_of_scope_records += refused;
            tracing::warn!(refused, "refused records of namespaces the sender's certificate or this node's does not name");
        }
        kept
    }

    /// My per-writer summary over the records a node with `grants` may see, with marks.
    pub(super) fn digest_for(&mut self, grants: &Grants) -> Digest {
        self.marks.digest(&self.replica, grants)
    }
}
