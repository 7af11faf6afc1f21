//! A node's own view must not outvote the nodes that could see (Lifeguard's local health and
//! refutation ideas, on top of foca).
//!
//! A soak of five nodes showed it: a node whose link went down for 5-15 s suspected everyone, and
//! 1 s later declared them all down. When its link came back those verdicts spread; the healthy
//! nodes accepted them, closed their connections to each other (requests in flight failed) and
//! every "dead" node renewed its identity — a registry that was never impaired renewed 6 times in
//! 180 s. `tests/gossip_heal.rs` reproduces it in the simulator.
//!
//! Three rules, each cheap:
//! - **Quiet means me, not them.** A node that has heard from no peer at all for
//!   [`Core::quiet_after`] is more likely cut off itself than looking at a dead cluster, so it
//!   holds its Suspect → Down timers (up to [`GossipConfig::isolation_patience`], so a node left
//!   alone by real deaths still declares them, later). When contact comes back it gives every
//!   suspicion a full `suspect_to_down` to be refuted before acting on it. The rule needs two or
//!   more peers: with one, "no peer speaks" and "that peer is gone" are the same observation, and
//!   holding would only delay a two-node mesh's verdict by the whole patience (`tests/mesh_vpc.rs`
//!   caught it: a partition of two VPCs went unnoticed for 20 s).
//! - **Tell the suspect.** foca refutes a suspicion only when the suspect hears of it, and the
//!   cut-off node spent its updates' transmissions on a dead link. So when a member this node
//!   holds Suspect talks to it, the node tells that member directly (a foca packet carrying that
//!   one update), and the member refutes at once.
//! - **A verdict does not cut live traffic.** The driver closes the connection to a member
//!   declared down only when this node has not heard from it lately itself ([`Core::quiet`]).
//!
//! [`GossipConfig::isolation_patience`]: super::GossipConfig::isolation_patience

use std::time::Duration;

use foca::{Codec, Header, Member, Message, PostcardCodec, State, Timer};

use super::core::{Core, Pending, ms};
use super::wire::{self, Datagram};
use super::{Millis, Output, Replica};

/// What the core tracks for these rules.
#[derive(Default)]
pub(super) struct LocalHealth {
    /// When each peer last sent us anything that passed the sender check.
    heard: std::collections::HashMap<String, Millis>,
    /// When any peer last did.
    heard_any: Option<Millis>,
    /// When contact resumed after a quiet spell (or first began).
    back_at: Millis,
    /// When this node first held a Down timer back in the current quiet spell.
    holding_since: Option<Millis>,
    /// When each suspect was last told of its suspicion.
    told: std::collections::HashMap<String, Millis>,
    /// Our own incarnation, read from the headers of the packets foca sends (foca keeps it
    /// private); None until foca has sent one.
    pub own_incarnation: Option<foca::Incarnation>,
}

impl<R: Replica> Core<R> {
    /// How long without a word from any peer before this node doubts itself.
    pub(super) fn quiet_after(&self) -> Millis {
        ms(self.cfg.suspect_to_down + self.cfg.probe_period)
    }

    /// A datagram or message from `peer` passed the sender check. (The caller then tells it of
    /// a suspicion we hold, once the datagram's own updates are applied: it may refute.)
    pub(super) fn heard_from(&mut self, peer: &str) {
        let now = self.now;
        let h = &mut self.health;
        if h.heard_any.is_none_or(|t| now.saturating_sub(t) > ms(self.cfg.suspect_to_down + self.cfg.probe_period)) {
            h.back_at = now;
            h.holding_since = None;
        }
        h.heard_any = Some(now);
        match h.heard.get_mut(peer) {
            Some(t) => *t = now,
            None => {
                h.heard.insert(peer.to_string(), now);
            }
        }
    }

    /// True when this node has not heard from `peer` itself within [`Core::quiet_after`]: only
    /// then may a Down verdict close the connection to it.
    pub fn quiet(&self, peer: &str) -> bool {
        self.health.heard.get(peer).is_none_or(|t| self.now.saturating_sub(*t) > self.quiet_after())
    }

    /// Whether Suspect → Down timers may go to foca now (see the module docs).
    fn may_declare_down(&mut self) -> bool {
        let now = self.now;
        let quiet = self.quiet_after();
        // foca's active members (alive or suspect), not counting this node.
        let peers = self.swim.num_members();
        let h = &mut self.health;
        let cut_off = h.heard_any.is_none_or(|t| now.saturating_sub(t) > quiet);
        if cut_off && peers < 2 {
            return true;
        }
        if cut_off {
            let since = *h.holding_since.get_or_insert(now);
            return now.saturating_sub(since) >= ms(self.cfg.isolation_patience);
        }
        // Back in contact: every suspicion gets a full window to be refuted first.
        now.saturating_sub(h.back_at) >= ms(self.cfg.suspect_to_down)
    }

    /// Takes the Suspect → Down timers out of `batch` when this node may not act on them now,
    /// and asks for them again one probe period later (foca ignores one whose member refuted
    /// meanwhile).
    pub(super) fn hold_down_timers(&mut self, batch: &mut Vec<Timer<super::NodeId>>) {
        if !batch.iter().any(|t| matches!(t, Timer::ChangeSuspectToDown { .. })) || self.may_declare_down() {
            return;
        }
        let again = self.cfg.probe_period;
        let (held, rest): (Vec<_>, Vec<_>) = std::mem::take(batch).into_iter().partition(|t| matches!(t, Timer::ChangeSuspectToDown { .. }));
        *batch = rest;
        for timer in held {
            self.stats.downs_held += 1;
            self.schedule(again, Pending::Swim { due: self.now.saturating_add(ms(again)), timer });
        }
    }

    /// Notes our incarnation from a packet foca is sending.
    pub(super) fn note_own_header(&mut self, pkt: &[u8]) {
        let mut buf = pkt;
        if let Ok(h) = Codec::<super::NodeId>::decode_header(&mut PostcardCodec, &mut buf) {
            self.health.own_incarnation = Some(h.src_incarnation);
        }
    }

    /// `peer` just talked to us: if we hold it Suspect, tell it (at most once a probe period),
    /// in a foca packet from us to it that carries that one update, so it refutes now.
    pub(super) fn tell_suspect(&mut self, peer: &str) {
        if !self.book.suspects.contains(peer) {
            return;
        }
        let (now, every) = (self.now, ms(self.cfg.probe_period));
        if self.health.told.get(peer).is_some_and(|t| now.saturating_sub(*t) < every) {
            return;
        }
        let Some(incarnation) = self.health.own_incarnation else { return };
        let Some(m) = self.swim.iter_membership_state().find(|m| m.id().name == peer && m.state() == State::Suspect) else { return };
        let (to, update) = (m.id().clone(), Member::new(m.id().clone(), m.incarnation(), State::Suspect));
        let header = Header { src: self.swim.identity().clone(), src_incarnation: incarnation, dst: to.clone(), message: Message::Gossip };
        let mut pkt = Vec::with_capacity(256);
        let mut codec = PostcardCodec;
        if codec.encode_header(&header, &mut pkt).is_err() {
            return;
        }
        pkt.extend_from_slice(&1u16.to_be_bytes());
        if codec.encode_member(&update, &mut pkt).is_err() {
            return;
        }
        self.health.told.insert(peer.to_string(), now);
        self.stats.suspects_told += 1;
        tracing::debug!(peer, "told a member we suspect of the suspicion, so it can refute it");
        self.out.push(Output::Datagram { to: to.addr, bytes: wire::encode_datagram(&Datagram::Swim(&pkt)) });
    }
}

/// The default for [`GossipConfig::isolation_patience`](super::GossipConfig::isolation_patience).
pub(super) const ISOLATION_PATIENCE: Duration = Duration::from_secs(20);
