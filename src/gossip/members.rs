//! What the core remembers about peers beside foca's member table: the latest identity seen per
//! name (roles for the authority check, addresses for replies), when each member's state last
//! changed, and which members are currently suspect (foca does not notify Alive ⇄ Suspect).

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;

use foca::{Incarnation, Member, State};

use super::{MemberState, MemberView, Millis, NodeId, Role};

#[derive(Default)]
pub(super) struct Book {
    /// Never forgotten (bounded by distinct names): a record written by a registry that has since
    /// left must still pass the authority check on nodes that knew the registry.
    known: HashMap<String, NodeId>,
    since: HashMap<String, Millis>,
    pub suspects: BTreeSet<String>,
    /// Identities that said goodbye, as (generation, renewal): shown `left` while foca holds
    /// that identity (a restart brings a newer one, which is not).
    left: HashMap<String, (u64, u32)>,
}

impl Book {
    /// Remembers `id` unless a newer identity with that name is already known.
    pub fn learn(&mut self, id: &NodeId) {
        match self.known.get_mut(&id.name) {
            Some(k) if (k.generation, k.renewal) > (id.generation, id.renewal) => {}
            Some(k) => *k = id.clone(),
            None => {
                self.known.insert(id.name.clone(), id.clone());
            }
        }
    }

    pub fn role(&self, name: &str) -> Option<Role> {
        self.known.get(name).map(|k| k.role)
    }

    pub fn addr(&self, name: &str) -> Option<SocketAddr> {
        self.known.get(name).map(|k| k.addr)
    }

    /// Notes that `id` left the cluster cleanly.
    pub fn leave(&mut self, id: &NodeId) {
        self.left.insert(id.name.clone(), (id.generation, id.renewal));
    }

    pub fn has_left(&self, id: &NodeId) -> bool {
        self.left.get(&id.name) == Some(&(id.generation, id.renewal))
    }

    pub fn touch(&mut self, name: &str, now: Millis) {
        self.since.insert(name.to_string(), now);
    }

    /// Reconciles the suspect set with foca's table for `names` (and current suspects).
    /// Returns whether any member entered or left Suspect, and those that entered it.
    pub fn refresh<'a>(
        &mut self,
        table: impl Iterator<Item = &'a Member<NodeId>>,
        names: &BTreeSet<String>,
        now: Millis,
    ) -> (bool, Vec<(NodeId, Incarnation)>) {
        let mut changed = false;
        let mut entered = Vec::new();
        let mut still = BTreeSet::new();
        let mut found = 0;
        for m in table {
            let name = &m.id().name;
            let was = self.suspects.contains(name);
            if !was && !names.contains(name) {
                continue;
            }
            found += usize::from(was);
            let is = m.state() == State::Suspect;
            if is {
                still.insert(name.clone());
                if !was {
                    entered.push((m.id().clone(), m.incarnation()));
                }
            }
            if is != was {
                self.touch(name, now);
                changed = true;
            }
        }
        // A suspect missing from the table was removed: that is a change too.
        changed |= found < self.suspects.len();
        self.suspects = still;
        (changed, entered)
    }

    pub fn view(&self, m: &Member<NodeId>) -> MemberView {
        let id = m.id();
        MemberView {
            name: id.name.clone(),
            generation: id.generation,
            addr: id.addr,
            role: id.role,
            // A goodbye is believed at once, even before foca's own Down arrives.
            state: match m.state() {
                _ if self.has_left(id) => MemberState::Left,
                State::Alive => MemberState::Alive,
                State::Suspect => MemberState::Suspect,
                State::Down => MemberState::Down,
            },
            since: self.since.get(&id.name).copied().unwrap_or(0),
            renewal: id.renewal,
            incarnation: m.incarnation(),
            admin: id.admin,
        }
    }
}

pub(super) fn member_of(v: &MemberView) -> Member<NodeId> {
    let mut id = NodeId::new(v.name.clone(), v.generation, v.addr, v.role).with_admin(v.admin);
    id.renewal = v.renewal;
    // A persisted suspicion is stale: restored as Alive, the probes will judge again (restoring
    // it as Suspect would declare a live member down, since it never hears of the suspicion).
    let state = match v.state {
        MemberState::Alive | MemberState::Suspect => State::Alive,
        MemberState::Down | MemberState::Left => State::Down,
    };
    Member::new(id, v.incarnation, state)
}
