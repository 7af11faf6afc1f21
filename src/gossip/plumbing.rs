//! The core's helpers: turning foca's accumulated effects into outputs, timers, seeded random
//! choices, and a look at a foca packet before foca sees it.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use foca::{Codec, Header, OwnedNotification, PostcardCodec, State, Timer, TimerToken};
use rand_pcg::rand_core::Rng;

use super::core::{Core, Pending, max_transmissions, ms};
use super::wire::{self, Datagram};
use super::{NodeId, Output, Replica};

impl<R: Replica> Core<R> {
    /// Turns what foca accumulated into outputs. `check` names members that may have become
    /// Suspect (foca has no notification for Alive ⇄ Suspect, so we look them up).
    pub(super) fn pump(&mut self, check: BTreeSet<String>) {
        self.pump_with(check, false);
    }

    /// `pump`, for a caller that already knows the membership changed.
    pub(super) fn pump_with(&mut self, mut check: BTreeSet<String>, mut changed: bool) {
        let now = self.now;
        let mut gossiped = false;
        let mut own = BTreeSet::new();
        loop {
            let mut urgent = false;
            while let Some((to, data)) = self.rt.to_send() {
                self.note_own_header(&data);
                let bytes = wire::encode_datagram(&Datagram::Swim(&data));
                self.out.push(Output::Datagram { to: to.addr, bytes });
            }
            while let Some((after, timer)) = self.rt.to_schedule() {
                if let Timer::ChangeSuspectToDown { member_id, .. } = &timer {
                    check.insert(member_id.name.clone());
                    own.insert(member_id.name.clone());
                }
                if let Some(t) = token(&timer) {
                    self.swim_token = Some(t);
                }
                self.schedule(after, Pending::Swim { due: now.saturating_add(ms(after)), timer });
            }
            while let Some(n) = self.rt.to_notify() {
                urgent |= matches!(n, OwnedNotification::MemberDown(_));
                match n {
                    OwnedNotification::MemberDown(id) => {
                        if self.book.has_left(&id) {
                            tracing::info!(node = %id.name, generation = id.generation, "node left the cluster (clean stop)");
                        } else {
                            tracing::warn!(node = %id.name, generation = id.generation, "node declared down (stopped answering)");
                        }
                        self.book.learn(&id);
                        self.book.touch(&id.name, now);
                        changed = true;
                    }
                    OwnedNotification::MemberUp(id) | OwnedNotification::Rename(_, id) => {
                        self.book.learn(&id);
                        self.book.touch(&id.name, now);
                        changed = true;
                    }
                    OwnedNotification::Rejoin(id) => {
                        tracing::info!(renewal = id.renewal, "declared down while alive; rejoined with a renewed identity");
                    }
                    // After our own leave this is expected; otherwise it is worth a warning.
                    OwnedNotification::Defunct if self.left => tracing::info!("left the cluster"),
                    OwnedNotification::Defunct => tracing::warn!("declared down and cannot rejoin"),
                    other => tracing::debug!(?other, "membership"),
                }
            }
            if !check.is_empty() || !self.book.suspects.is_empty() {
                let (moved, entered) = self.book.refresh(self.swim.iter_membership_state(), &check, now);
                urgent |= moved;
                changed |= moved;
                check.clear();
                self.suspicion_timers(entered, &own);
            }
            // Failure news (Suspect, Down, refuted suspicion) is passed on at once instead of
            // waiting for the next gossip round: each hop costs a network latency, not 200 ms.
            // Two rounds of foca's 3 random members: an epidemic where every node forwards once
            // to 6 misses ~e^-6 of the cluster (3 would miss ~6 %, left to the 200 ms rounds).
            if urgent && !gossiped && !self.left {
                gossiped = true;
                for _ in 0..2 {
                    if self.swim.gossip(&mut self.rt).is_err() {
                        self.stats.swim_errors += 1;
                    }
                }
                continue;
            }
            break;
        }
        if changed {
            self.out.push(Output::MembersChanged);
            self.retune();
        }
    }

    /// foca starts the Suspect → Down timer only on the node whose probe failed; if that node's
    /// Down announcement is lost (or it dies) the others keep the member Suspect until their own
    /// round-robin probe reaches it. As in the SWIM paper, every node that hears of a suspicion
    /// runs the timer too: foca's own `ChangeSuspectToDown`, which does nothing if the member
    /// refuted meanwhile (higher incarnation) or if foca reset its timers (token changed).
    fn suspicion_timers(&mut self, entered: Vec<(NodeId, foca::Incarnation)>, own: &BTreeSet<String>) {
        let Some(token) = self.swim_token else { return };
        let after = self.swim_cfg.suspect_to_down_after;
        for (member_id, incarnation) in entered.into_iter().filter(|(id, _)| !own.contains(&id.name)) {
            let timer = Timer::ChangeSuspectToDown { member_id, incarnation, token };
            self.schedule(after, Pending::Swim { due: self.now.saturating_add(ms(after)), timer });
        }
    }

    /// Updates foca's retransmit limit to the cluster size (allowed at runtime, unlike timings).
    fn retune(&mut self) {
        let mt = max_transmissions(self.swim.num_members() + 1);
        if mt != self.swim_cfg.max_transmissions {
            self.swim_cfg.max_transmissions = mt;
            if self.swim.set_config(self.swim_cfg.clone()).is_err() {
                self.stats.swim_errors += 1;
            }
        }
    }

    pub(super) fn schedule(&mut self, after: Duration, p: Pending) {
        let id = self.next_timer;
        self.next_timer += 1;
        self.timers.insert(id, p);
        self.out.push(Output::Timer { after, id });
    }

    /// A uniform delay in (0, d].
    pub(super) fn jitter(&mut self, d: Duration) -> Duration {
        Duration::from_millis(1 + self.below(ms(d).max(1)))
    }

    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.rng.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// `k` distinct indices out of `0..n` (Floyd's algorithm: O(k), no O(n) buffer).
    pub(super) fn sample(&mut self, n: usize, k: usize) -> Vec<usize> {
        let mut chosen = BTreeSet::new();
        for j in n.saturating_sub(k)..n {
            let t = self.below(j as u64 + 1) as usize;
            if !chosen.insert(t) {
                chosen.insert(j);
            }
        }
        chosen.into_iter().collect()
    }

    /// Addresses of up to `k` random active members other than `exclude`.
    /// Up to `k` random active members (not `exclude`): address and name.
    pub(super) fn pick_alive(&mut self, k: usize, exclude: Option<&str>) -> Vec<(SocketAddr, String)> {
        let n = self.swim.num_members();
        let idx: BTreeSet<usize> = self.sample(n, k + usize::from(exclude.is_some())).into_iter().collect();
        let mut out: Vec<(SocketAddr, String)> = self
            .swim
            .iter_members()
            .enumerate()
            .filter(|(i, m)| idx.contains(i) && Some(m.id().name.as_str()) != exclude)
            .map(|(_, m)| (m.id().addr, m.id().name.clone()))
            .collect();
        out.truncate(k);
        out
    }
}

fn token(t: &Timer<NodeId>) -> Option<TimerToken> {
    match t {
        Timer::ProbeRandomMember(t) | Timer::PeriodicAnnounce(t) | Timer::PeriodicAnnounceDown(t) | Timer::PeriodicGossip(t) => Some(*t),
        Timer::SendIndirectProbe { token, .. } | Timer::ChangeSuspectToDown { token, .. } => Some(*token),
        Timer::RemoveDown(_) => None,
    }
}

/// Reads a foca packet's sender and the members its updates call Suspect, without touching
/// foca's state (the sender check must come before foca sees the packet). None = undecodable.
pub(super) fn peek_swim(pkt: &[u8]) -> Option<(String, BTreeSet<String>)> {
    let mut codec = PostcardCodec;
    let mut buf = pkt;
    let header: Header<NodeId> = codec.decode_header(&mut buf).ok()?;
    let mut suspects = BTreeSet::new();
    if buf.len() >= 2 && header.message != foca::Message::Broadcast {
        let n = u16::from_be_bytes([buf[0], buf[1]]);
        buf = &buf[2..];
        for _ in 0..n {
            let Ok(m) = Codec::<NodeId>::decode_member(&mut codec, &mut buf) else { break };
            if m.state() == State::Suspect {
                suspects.insert(m.id().name.clone());
            }
        }
    }
    Some((header.src.name, suspects))
}
