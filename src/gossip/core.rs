//! The gossip state machine: foca for membership, our own deltas and anti-entropy for records.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::num::{NonZeroU8, NonZeroUsize};
use std::time::Duration;

use foca::{AccumulatingRuntime, Config, Foca, NoCustomBroadcast, PeriodicParams, PostcardCodec, State, Timer};
use rand_pcg::Pcg64Mcg;
use rand_pcg::rand_core::SeedableRng;

use super::members::{Book, member_of};
use super::plumbing::peek_swim;
use super::wire::{self, DATAGRAM_OVERHEAD, Datagram};
use super::{CoreStats, GossipConfig, Input, MemberView, Millis, NodeId, Output, Replica, TimerId};

pub(super) type Swim = Foca<NodeId, PostcardCodec, Pcg64Mcg, NoCustomBroadcast>;

pub(super) enum Pending {
    Swim { due: Millis, timer: Timer<NodeId> },
    AntiEntropy,
    Announce,
}

pub struct Core<R: Replica> {
    pub(super) cfg: GossipConfig,
    pub(super) swim_cfg: Config,
    pub(super) swim: Swim,
    pub(super) rt: AccumulatingRuntime<NodeId>,
    pub(super) replica: R,
    pub(super) rng: Pcg64Mcg,
    pub(super) now: Millis,
    pub(super) out: Vec<Output>,
    pub(super) timers: BTreeMap<TimerId, Pending>,
    pub(super) next_timer: TimerId,
    /// Join addresses, with the name of the node that answered there once known.
    pub(super) seeds: BTreeMap<SocketAddr, Option<String>>,
    pub(super) book: Book,
    pub(super) stats: CoreStats,
    pub(super) left: bool,
    /// foca's current timer token, from the timers it submits (see `suspicion_timers`).
    pub(super) swim_token: Option<foca::TimerToken>,
    pub(super) health: super::local_health::LocalHealth,
    pub(super) scopes: super::scope::Scopes,
    /// Digest marks of writers whose records have not changed (`sync::MarkCache`).
    pub(super) marks: super::sync::MarkCache,
}

pub(super) fn ms(d: Duration) -> Millis {
    d.as_millis().try_into().unwrap_or(Millis::MAX)
}

fn swim_config(c: &GossipConfig) -> Config {
    let every = |frequency, n| Some(PeriodicParams { frequency, num_members: NonZeroUsize::new(n).unwrap_or(NonZeroUsize::MIN) });
    Config {
        probe_period: c.probe_period,
        probe_rtt: c.probe_rtt,
        num_indirect_probes: NonZeroUsize::new(3).unwrap_or(NonZeroUsize::MIN),
        max_transmissions: max_transmissions(1),
        suspect_to_down_after: c.suspect_to_down,
        remove_down_after: Some(c.remove_down_after),
        max_packet_size: NonZeroUsize::new(c.max_datagram.saturating_sub(DATAGRAM_OVERHEAD)).unwrap_or(NonZeroUsize::MIN),
        notify_down_members: true,
        periodic_announce: every(c.periodic_announce, 1),
        periodic_announce_to_down_members: every(c.periodic_announce, 2),
        periodic_gossip: every(c.swim_gossip_every, 3),
    }
}

/// memberlist's retransmit limit, 4·⌈log10(n+1)⌉: enough for an update to reach everyone w.h.p.
pub(super) fn max_transmissions(members: usize) -> NonZeroU8 {
    let (mut digits, mut p) = (0u32, 1usize);
    while p < members.saturating_add(1) {
        p = p.saturating_mul(10);
        digits += 1;
    }
    NonZeroU8::new((4 * digits.max(1)).min(255) as u8).unwrap_or(NonZeroU8::MIN)
}

impl<R: Replica> Core<R> {
    pub fn new(me: NodeId, config: GossipConfig, replica: R, rng_seed: u64, now: Millis) -> Self {
        let swim_cfg = swim_config(&config);
        let swim = Foca::new(me.clone(), swim_cfg.clone(), Pcg64Mcg::seed_from_u64(rng_seed), PostcardCodec);
        let mut book = Book::default();
        book.learn(&me);
        let mut core = Core {
            rng: Pcg64Mcg::seed_from_u64(rng_seed ^ 0x9e37_79b9_7f4a_7c15),
            cfg: config,
            swim_cfg,
            swim,
            rt: AccumulatingRuntime::new(),
            replica,
            now,
            out: Vec::new(),
            timers: BTreeMap::new(),
            next_timer: 1,
            seeds: BTreeMap::new(),
            book,
            stats: CoreStats::default(),
            left: false,
            swim_token: None,
            health: Default::default(),
            scopes: Default::default(),
            marks: Default::default(),
        };
        // Random first offsets, so nodes started together do not pull in lockstep.
        let ae = core.jitter(core.cfg.anti_entropy_every);
        core.schedule(ae, Pending::AntiEntropy);
        let an = core.jitter(core.cfg.periodic_announce);
        core.schedule(an, Pending::Announce);
        core
    }

    /// Re-applies members persisted by a previous run and announces to a few of them.
    pub fn restore(&mut self, members: Vec<MemberView>, now: Millis) {
        self.now = now;
        let me = self.swim.identity().name.clone();
        let mut alive = Vec::new();
        let mut updates = Vec::new();
        for v in members.iter().filter(|v| v.name != me) {
            let m = member_of(v);
            self.book.learn(m.id());
            // `since` of the old run is in another run's clock: restart it from now.
            self.book.touch(&v.name, now);
            if v.state == super::MemberState::Left {
                self.book.leave(m.id());
            }
            if m.state() != State::Down {
                alive.push(m.id().clone());
            }
            updates.push(m);
        }
        // Not re-broadcast: the cluster knows at least as much as our old state.
        if self.swim.apply_many(updates.into_iter(), false, &mut self.rt).is_err() {
            self.stats.swim_errors += 1;
        }
        for i in self.sample(alive.len(), self.cfg.restore_announce) {
            let _ = self.swim.announce(alive[i].clone(), &mut self.rt);
        }
        self.pump(BTreeSet::new());
    }

    pub fn handle(&mut self, input: Input, now: Millis) {
        self.now = now;
        if self.left {
            return;
        }
        match input {
            Input::Datagram { peer, from, bytes } => self.on_datagram(&peer, from, &bytes),
            Input::Message { peer, from, bytes, grants } => self.on_message(&peer, from, &bytes, &grants),
            Input::Timer(id) => self.on_timer(id),
            Input::LocalChange(records) => {
                if !records.is_empty() {
                    let sent = self.spread(records, None);
                    self.stats.deltas_sent += sent;
                }
            }
            Input::Join(addrs) => {
                for a in addrs {
                    self.seeds.entry(a).or_default();
                    self.hello(a);
                }
            }
            Input::Leave => {
                let bye = wire::encode_datagram(&Datagram::Bye(self.swim.identity().clone()));
                let active: Vec<SocketAddr> = self.swim.iter_members().map(|m| m.id().addr).collect();
                for to in active {
                    self.out.push(Output::Datagram { to, bytes: bye.clone() });
                }
                // Set first: foca reports itself defunct while we pump, and that is expected now.
                self.left = true;
                let _ = self.swim.leave_cluster(&mut self.rt);
                self.pump(BTreeSet::new());
            }
        }
    }

    pub fn drain(&mut self) -> Vec<Output> {
        std::mem::take(&mut self.out)
    }

    /// Every peer foca knows (never this node), Down ones included until removed.
    pub fn members(&self) -> Vec<MemberView> {
        self.swim.iter_membership_state().map(|m| self.book.view(m)).collect()
    }

    pub fn member(&self, name: &str) -> Option<MemberView> {
        self.swim.iter_membership_state().find(|m| m.id().name == name).map(|m| self.book.view(m))
    }

    /// This node's current identity (renewed after a false Down).
    pub fn identity(&self) -> &NodeId {
        self.swim.identity()
    }

    pub fn replica(&self) -> &R {
        &self.replica
    }

    pub fn replica_mut(&mut self) -> &mut R {
        &mut self.replica
    }

    pub fn into_replica(self) -> R {
        self.replica
    }

    pub fn stats(&self) -> &CoreStats {
        &self.stats
    }

    fn on_datagram(&mut self, peer: &str, from: SocketAddr, bytes: &[u8]) {
        let d = match wire::decode_datagram(bytes) {
            Ok(d) => d,
            Err(e) => {
                tracing::debug!(peer, %from, error = %e, "bad gossip datagram");
                self.stats.bad_datagrams += 1;
                return;
            }
        };
        let (claimed, suspects) = match &d {
            Datagram::Hello(id) | Datagram::Welcome(id) | Datagram::Bye(id) => (id.name.clone(), BTreeSet::new()),
            Datagram::Swim(pkt) => match peek_swim(pkt) {
                Some(p) => p,
                None => {
                    self.stats.bad_datagrams += 1;
                    return;
                }
            },
        };
        if claimed != peer {
            tracing::warn!(peer, claimed, %from, "datagram claims another sender; dropped");
            self.stats.impersonations += 1;
            return;
        }
        if claimed == self.swim.identity().name {
            return;
        }
        self.heard_from(peer);
        match d {
            Datagram::Swim(pkt) => {
                if self.swim.handle_data(pkt, &mut self.rt).is_err() {
                    self.stats.bad_datagrams += 1;
                }
            }
            Datagram::Hello(id) => {
                // Answer where the Hello came from (it got through, NAT or not).
                self.book.learn(&id);
                let welcome = wire::encode_datagram(&Datagram::Welcome(self.swim.identity().clone()));
                self.out.push(Output::Datagram { to: from, bytes: welcome });
            }
            Datagram::Welcome(id) => {
                self.book.learn(&id);
                if let Some(name) = self.seeds.get_mut(&from) {
                    *name = Some(id.name.clone());
                }
                let _ = self.swim.announce(id, &mut self.rt);
            }
            Datagram::Bye(id) => {
                // Down at once (not after the failure detector's ~2 s), and shown as `left`.
                // An older identity's goodbye (the node restarted since) loses foca's conflict.
                self.book.leave(&id);
                self.book.touch(&id.name, self.now);
                // foca logs the change to Down (plumbing); if its own Down came first, say it here.
                let known_down = self.swim.iter_membership_state().any(|m| m.id() == &id && m.state() == State::Down);
                if known_down {
                    tracing::info!(node = %id.name, generation = id.generation, "node left the cluster (clean stop)");
                }
                if self.swim.apply_many(std::iter::once(foca::Member::down(id)), false, &mut self.rt).is_err() {
                    self.stats.swim_errors += 1;
                }
                self.pump_with(suspects, true);
                return;
            }
        }
        self.pump(suspects);
        self.tell_suspect(peer);
    }

    fn on_timer(&mut self, id: TimerId) {
        let Some(pending) = self.timers.remove(&id) else { return };
        match pending {
            Pending::Swim { timer, .. } => {
                // foca wants timers that come due together handled in `Timer: Ord` order; take
                // every due one now (their own `Input::Timer` will find nothing later).
                let now = self.now;
                let due: Vec<TimerId> =
                    self.timers.iter().filter(|(_, p)| matches!(p, Pending::Swim { due, .. } if *due <= now)).map(|(id, _)| *id).collect();
                let mut batch = vec![timer];
                for id in due {
                    if let Some(Pending::Swim { timer, .. }) = self.timers.remove(&id) {
                        batch.push(timer);
                    }
                }
                batch.sort();
                self.hold_down_timers(&mut batch);
                let before = self.swim.iter_membership_state().len();
                for t in batch {
                    if self.swim.handle_timer(t, &mut self.rt).is_err() {
                        self.stats.swim_errors += 1;
                    }
                }
                let removed = self.swim.iter_membership_state().len() != before;
                self.pump_with(BTreeSet::new(), removed);
            }
            Pending::AntiEntropy => {
                self.pull();
                self.schedule(self.cfg.anti_entropy_every, Pending::AntiEntropy);
            }
            Pending::Announce => {
                self.announce_round();
                self.schedule(self.cfg.periodic_announce, Pending::Announce);
            }
        }
    }

    /// Our part of healing partitions: foca announces to active and down members only while it
    /// has an active member, and forgets down members after `remove_down_after`. Seeds not in
    /// the cluster get a Hello; an isolated node announces to the members it still remembers.
    fn announce_round(&mut self) {
        let me = self.swim.identity();
        let mut addrs: BTreeSet<SocketAddr> = self.swim.iter_members().map(|m| m.id().addr).collect();
        let mut names: BTreeSet<&str> = self.swim.iter_members().map(|m| m.id().name.as_str()).collect();
        addrs.insert(me.addr);
        names.insert(&me.name);
        let lost: Vec<SocketAddr> = self
            .seeds
            .iter()
            .filter(|(a, name)| !addrs.contains(*a) && !name.as_deref().is_some_and(|n| names.contains(n)))
            .map(|(a, _)| *a)
            .collect();
        for s in lost {
            self.hello(s);
        }
        if self.swim.num_members() == 0 {
            let down: Vec<NodeId> = self.swim.iter_membership_state().map(|m| m.id().clone()).collect();
            for i in self.sample(down.len(), 3) {
                let _ = self.swim.announce(down[i].clone(), &mut self.rt);
            }
            self.pump(BTreeSet::new());
        }
    }

    fn hello(&mut self, to: SocketAddr) {
        let bytes = wire::encode_datagram(&Datagram::Hello(self.swim.identity().clone()));
        self.out.push(Output::Datagram { to, bytes });
    }
}
